//! `tap`: a TAP interface, the host's way into a network.
//!
//! [`Tap::open`] opens `/dev/net/tun` and asks for a TAP interface
//! (`IFF_TAP | IFF_NO_PI`: whole Ethernet frames, no packet-information
//! header), either a new one or an existing persistent one of that name.
//! The fd is non-blocking; each `read` gives one frame, each `write` takes
//! one. A TAP made here lives as long as its fd: it disappears when the
//! process exits, wherever it was moved (another network namespace, say).
//!
//! Link settings (up, MTU) go through the `ip` tool of iproute2, never
//! hand-written netlink ([`set_link`]).
//!
//! The only `unsafe` is the `TUNSETIFF` ioctl, in the `sys` submodule.

#![deny(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

use crate::Link;

/// Where the kernel's TUN/TAP clone device lives.
pub const TUN_DEVICE: &str = "/dev/net/tun";

/// Longest interface name, in bytes (`IFNAMSIZ` minus the NUL).
pub const MAX_NAME: usize = libc::IFNAMSIZ - 1;

/// Why a TAP could not be opened, each naming the interface.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name does not fit or is not a valid interface name.
    #[error("tap {name:?}: invalid interface name: {why}")]
    BadName {
        /// The name asked for.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// `/dev/net/tun` is missing.
    #[error(
        "tap {name}: {TUN_DEVICE} does not exist; load the tun module (`modprobe tun`) \
         or create the device (`mknod {TUN_DEVICE} c 10 200`)"
    )]
    NoDevice {
        /// The interface asked for.
        name: String,
    },
    /// Not allowed: opening the device or creating/attaching the TAP.
    #[error(
        "tap {name}: permission denied ({what}); creating a TAP interface needs \
         CAP_NET_ADMIN: run as root, or `setcap cap_net_admin+ep` the ipn binary, or have \
         root make a persistent TAP for you (`ip tuntap add mode tap user $USER name {name}`) \
         and make {TUN_DEVICE} accessible to you"
    )]
    PermissionDenied {
        /// The interface asked for.
        name: String,
        /// Which step was refused.
        what: String,
    },
    /// The TAP exists and another process has it open.
    #[error(
        "tap {name}: busy: another process has this TAP interface open; stop it, \
         or choose another --name"
    )]
    Busy {
        /// The interface asked for.
        name: String,
    },
    /// An interface of that name exists but cannot be attached as a TAP.
    #[error(
        "tap {name}: an interface of this name exists and is not a TAP the kernel lets us \
         attach to (a TUN, a multi-queue or packet-info TAP, or not a TUN/TAP at all); \
         choose another --name"
    )]
    NotATap {
        /// The interface asked for.
        name: String,
    },
    /// Anything else the system said.
    #[error("tap {name}: {what}: {source}")]
    Io {
        /// The interface asked for.
        name: String,
        /// The step that failed.
        what: String,
        /// What the system said.
        source: io::Error,
    },
}

/// A TAP interface, open and attached: a [`Link`].
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Opens `/dev/net/tun` and creates the TAP `name`, or attaches to the
    /// existing persistent TAP of that name. A `%d` in the name lets the
    /// kernel pick a number (`ipn%d` gives `ipn0`, `ipn1`...);
    /// [`Tap::name`] then says which.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        check_name(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_DEVICE)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => TapError::NoDevice { name: name.into() },
                io::ErrorKind::PermissionDenied => TapError::PermissionDenied {
                    name: name.into(),
                    what: format!("opening {TUN_DEVICE}"),
                },
                _ => TapError::Io {
                    name: name.into(),
                    what: format!("opening {TUN_DEVICE}"),
                    source,
                },
            })?;
        let chosen = sys::set_iff_tap(file.as_fd(), name).map_err(|source| {
            let name = name.to_string();
            match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => TapError::PermissionDenied {
                    name,
                    what: "TUNSETIFF".into(),
                },
                Some(libc::EBUSY) => TapError::Busy { name },
                Some(libc::EINVAL) => TapError::NotATap { name },
                _ => TapError::Io {
                    name,
                    what: "TUNSETIFF".into(),
                    source,
                },
            }
        })?;
        Ok(Tap { file, name: chosen })
    }

    /// The interface's name, as the kernel chose it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Link for Tap {
    fn describe(&self) -> String {
        format!("tap {}", self.name)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match self.file.read(buf) {
                Ok(len) => return Ok(Some(len)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        // One write, one frame; a TAP never takes part of one.
        self.file.write(frame).map(|_| ())
    }
}

/// Checks what the kernel would refuse, to say it better: length, `/`,
/// whitespace, `.` and `..` (as `dev_valid_name` does).
pub fn check_name(name: &str) -> Result<(), TapError> {
    let bad = |why: String| {
        Err(TapError::BadName {
            name: name.into(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty".into());
    }
    if name.len() > MAX_NAME {
        return bad(format!(
            "{} bytes long; Linux allows at most {MAX_NAME}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not allowed".into());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        return bad(format!("it contains {c:?}"));
    }
    Ok(())
}

/// What [`set_link`] changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkSettings {
    /// New MTU (the IP MTU, without the 14-byte Ethernet header).
    pub mtu: Option<u32>,
    /// Set the link up.
    pub up: bool,
}

/// The interface MTU that carries a network's largest frame: the network
/// MTU counts the 14-byte Ethernet header, the interface MTU does not.
/// `None` for the Linux default (network MTU 1514, interface MTU 1500).
pub fn interface_mtu(network_mtu: u32) -> Option<u32> {
    const HEADER: u32 = 14;
    (network_mtu != 1500 + HEADER).then(|| network_mtu.saturating_sub(HEADER))
}

/// Runs `ip link set dev NAME [mtu N] [up]` (iproute2): the project does
/// not hand-write netlink.
pub fn set_link(name: &str, settings: LinkSettings) -> io::Result<()> {
    if settings.mtu.is_none() && !settings.up {
        return Ok(());
    }
    let mut command = Command::new("ip");
    command.args(["link", "set", "dev", name]);
    if let Some(mtu) = settings.mtu {
        command.args(["mtu", &mtu.to_string()]);
    }
    if settings.up {
        command.arg("up");
    }
    let output = command.output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(e.kind(), "the `ip` command was not found; install iproute2")
        } else {
            e
        }
    })?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    Err(io::Error::other(format!(
        "`{}` failed: {}",
        shown(&command),
        said.trim()
    )))
}

fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The system calls that need `unsafe`.
#[allow(unsafe_code)]
mod sys {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd};

    // The kernel copies sizeof(struct ifreq) bytes in and out; libc's type
    // is that struct (40 bytes on 64-bit: 16 name bytes + a 24-byte union).
    #[cfg(target_pointer_width = "64")]
    const _: () = assert!(std::mem::size_of::<libc::ifreq>() == 40);
    const _: () = assert!(libc::IFNAMSIZ == 16);

    /// `ioctl(fd, TUNSETIFF, {name, IFF_TAP | IFF_NO_PI})`: makes `fd`
    /// (an open `/dev/net/tun`) the TAP `name`. Returns the name the kernel
    /// gave it (it expands `%d`).
    pub fn set_iff_tap(fd: BorrowedFd<'_>, name: &str) -> io::Result<String> {
        let bytes = name.as_bytes();
        if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: ifreq is plain old data (arrays, integers, a union of
        // those and pointers), so all-zeroes is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        // The name stays NUL-terminated: it is shorter than IFNAMSIZ and
        // the rest of the array is zero.
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: `fd` is open for the call's duration (BorrowedFd);
        // TUNSETIFF reads and writes exactly sizeof(struct ifreq) bytes at
        // the pointer, which is a live, exclusively borrowed libc::ifreq of
        // that size (asserted above); the name in it is NUL-terminated.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // The kernel wrote back a NUL-terminated name of at most
        // IFNAMSIZ - 1 bytes; stop at the first NUL, or at the end.
        let chosen: Vec<u8> = ifr
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(String::from_utf8_lossy(&chosen).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kernel_would_refuse_are_refused_first() {
        assert!(check_name("ipn%d").is_ok());
        assert!(check_name("abcdefghijklmno").is_ok());
        let long = check_name("abcdefghijklmnop").unwrap_err().to_string();
        assert!(long.contains("abcdefghijklmnop") && long.contains("16 bytes"));
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("..").is_err());
    }

    #[test]
    fn interface_mtu_drops_the_ethernet_header_unless_default() {
        assert_eq!(interface_mtu(1514), None);
        assert_eq!(interface_mtu(9014), Some(9000));
        assert_eq!(interface_mtu(1280), Some(1266));
    }
}
