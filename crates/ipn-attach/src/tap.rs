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
//! ## Offloads
//!
//! [`Tap::open_with`] with [`TapOptions::offload`] also asks for
//! `IFF_VNET_HDR`: every frame, both ways, then follows a 10-byte
//! virtio-net header ([`ipn::offload::VirtioNetHdr`], little-endian:
//! `TUNSETVNETLE`), and the kernel is told (`TUNSETOFFLOAD`) that we take
//! frames with checksums left to complete and TCP frames of up to 64 KiB
//! to segment (TSO over IPv4 and IPv6, with ECN), and UDP ones (USO) where
//! the kernel knows them. [`Tap::offloads`] says what it accepted.
//! [`Tap::recv_with_hdr`] and [`Tap::send_with_hdr`] move a header and a
//! frame; [`ipn::offload::Segments`] makes wire frames of them.
//!
//! Without offloads (the default, and [`Tap::open`]) frames come and go
//! without a header, as always. Offloads are a setting of the device, not
//! of the open file: a persistent TAP keeps those of whoever had it last,
//! and would go on sending 64 KiB frames with unfinished checksums. So
//! opening without offloads clears them (`TUNSETOFFLOAD 0`).
//!
//! A TAP with offloads is still a correct [`Link`]: [`Link::recv`]
//! segments and checksums what the kernel hands over and gives the frames
//! one by one (while some are left, [`Link::fd`] is an always-readable
//! eventfd, so that a caller that polls first comes back for them);
//! [`Link::send`] sends a frame with an empty header.
//!
//! The ioctls, which need `unsafe`, are in `sys::tun` (private).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::ops::BitOr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

use ipn::offload::{HdrLayout, Segments, VirtioNetHdr, MAX_GSO_FRAME};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::sys::tun as sys;
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

/// How to open a TAP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapOptions {
    /// Virtio-net headers and offloads (see the module doc). Off: frames
    /// without headers, checksums complete, none larger than the MTU.
    pub offload: bool,
}

/// Offloads of a TAP: the `TUN_F_*` bits of `TUNSETOFFLOAD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads(pub u32);

impl Offloads {
    /// None: the kernel completes checksums and segments itself.
    pub const NONE: Offloads = Offloads(0);
    /// `TUN_F_CSUM`: frames may come with checksums to complete.
    pub const CSUM: Offloads = Offloads(libc::TUN_F_CSUM);
    /// `TUN_F_TSO4`: TCP over IPv4 may come unsegmented.
    pub const TSO4: Offloads = Offloads(libc::TUN_F_TSO4);
    /// `TUN_F_TSO6`: TCP over IPv6 may come unsegmented.
    pub const TSO6: Offloads = Offloads(libc::TUN_F_TSO6);
    /// `TUN_F_TSO_ECN`: ... also with CWR set (`GSO_ECN`).
    pub const TSO_ECN: Offloads = Offloads(libc::TUN_F_TSO_ECN);
    /// `TUN_F_UFO`: legacy UDP fragmentation offload (never asked for).
    pub const UFO: Offloads = Offloads(libc::TUN_F_UFO);
    /// `TUN_F_USO4`: UDP over IPv4 may come unsegmented (Linux 6.2).
    pub const USO4: Offloads = Offloads(libc::TUN_F_USO4);
    /// `TUN_F_USO6`: UDP over IPv6 may come unsegmented (Linux 6.2).
    pub const USO6: Offloads = Offloads(libc::TUN_F_USO6);

    /// What [`TapOptions::offload`] asks for: checksums, TSO (with ECN),
    /// USO. Kernels before 6.2 refuse USO; then it is asked without.
    pub const WANTED: Offloads = Offloads(
        Offloads::CSUM.0
            | Offloads::TSO4.0
            | Offloads::TSO6.0
            | Offloads::TSO_ECN.0
            | Offloads::USO4.0
            | Offloads::USO6.0,
    );

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: Offloads) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for Offloads {
    type Output = Offloads;
    fn bitor(self, other: Offloads) -> Offloads {
        Offloads(self.0 | other.0)
    }
}

/// A TAP interface, open and attached: a [`Link`].
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    /// With `IFF_VNET_HDR`: the header's form, the offloads, and what
    /// [`Link::recv`] cut and has not given yet.
    vnet: Option<Vnet>,
}

/// The state of a TAP with virtio-net headers.
#[derive(Debug)]
struct Vnet {
    layout: HdrLayout,
    offloads: Offloads,
    /// For [`Link::recv`]: one frame as read, `MAX_GSO_FRAME` bytes.
    read_buf: Vec<u8>,
    /// For [`Link::recv`]: the wire frames the frame in `read_buf` stands
    /// for, not yet given (`read_buf` is not read into while one waits).
    segments: Segments,
    /// Always readable (an eventfd holding 1): [`Link::fd`] while segments
    /// are ready, so that a caller that polls before each `recv` comes
    /// back for them although the kernel has nothing more.
    ready_fd: EventFd,
    /// Frames [`Link::recv`] dropped: refused by `segment`, or a segment
    /// larger than the caller's buffer.
    dropped: u64,
}

impl Tap {
    /// Opens `/dev/net/tun` and creates the TAP `name`, or attaches to the
    /// existing persistent TAP of that name. A `%d` in the name lets the
    /// kernel pick a number (`ipn%d` gives `ipn0`, `ipn1`...);
    /// [`Tap::name`] then says which. No offloads: the same as
    /// [`Tap::open_with`] and `TapOptions::default()`.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        Tap::open_with(name, TapOptions::default())
    }

    /// [`Tap::open`], with options: with `offload`, virtio-net headers and
    /// offloads (see the module doc); without, and on an existing
    /// persistent TAP, the offloads a previous user left are cleared.
    pub fn open_with(name: &str, options: TapOptions) -> Result<Tap, TapError> {
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
        let chosen = sys::set_iff_tap(file.as_fd(), name, options.offload).map_err(|source| {
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
        let io_error = |what: &str, source: io::Error| TapError::Io {
            name: chosen.clone(),
            what: what.into(),
            source,
        };
        let vnet = if options.offload {
            let layout = HdrLayout::Basic;
            sys::set_vnet_hdr_size(file.as_fd(), layout.size())
                .map_err(|e| io_error("TUNSETVNETHDRSZ", e))?;
            // Little-endian headers on any host (virtio 1.0); host order
            // is little-endian already on x86 and most others, where a
            // kernel too old for TUNSETVNETLE (before 4.1) is harmless.
            if let Err(e) = sys::set_vnet_le(file.as_fd()) {
                if cfg!(target_endian = "big") {
                    return Err(io_error("TUNSETVNETLE", e));
                }
            }
            let offloads = negotiate(file.as_fd()).map_err(|e| io_error("TUNSETOFFLOAD", e))?;
            let ready_fd =
                EventFd::from_value_and_flags(1, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                    .map_err(|e| io_error("eventfd", e.into()))?;
            Some(Vnet {
                layout,
                offloads,
                read_buf: Vec::new(),
                segments: Segments::new(),
                ready_fd,
                dropped: 0,
            })
        } else {
            sys::set_offload(file.as_fd(), Offloads::NONE)
                .map_err(|e| io_error("TUNSETOFFLOAD 0 (clearing the offloads a previous user of this persistent TAP left)", e))?;
            None
        };
        Ok(Tap {
            file,
            name: chosen,
            vnet,
        })
    }

    /// The interface's name, as the kernel chose it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offloads the kernel accepted; [`Offloads::NONE`] without
    /// [`TapOptions::offload`].
    pub fn offloads(&self) -> Offloads {
        self.vnet.as_ref().map_or(Offloads::NONE, |v| v.offloads)
    }

    /// The form of the virtio-net header before each frame, if there is
    /// one (with [`TapOptions::offload`]: the 10-byte form).
    pub fn vnet_hdr(&self) -> Option<HdrLayout> {
        self.vnet.as_ref().map(|v| v.layout)
    }

    /// Frames [`Link::recv`] dropped on a TAP with offloads: the kernel
    /// handed over a frame [`ipn::offload::segment`] refused (never
    /// expected), or a segment did not fit the caller's buffer. Counted
    /// rather than ending a bridge.
    pub fn dropped(&self) -> u64 {
        self.vnet.as_ref().map_or(0, |v| v.dropped)
    }

    /// Gives one waiting frame, without blocking, with its virtio-net
    /// header: `Ok(Some((header, len)))`, the frame in `buf[..len]`;
    /// `Ok(None)` if none waits. Without [`TapOptions::offload`] the header
    /// is empty (no GSO, checksums complete).
    ///
    /// With offloads a frame can be up to [`MAX_GSO_FRAME`] bytes, and a
    /// smaller `buf` is refused (`InvalidInput`) rather than have the
    /// kernel drop a frame that does not fit.
    pub fn recv_with_hdr(&mut self, buf: &mut [u8]) -> io::Result<Option<(VirtioNetHdr, usize)>> {
        let Some(vnet) = &self.vnet else {
            return Ok(Link::recv(self, buf)?.map(|len| (VirtioNetHdr::default(), len)));
        };
        if buf.len() < MAX_GSO_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tap {}: a receive buffer of {} bytes is too small for a frame with \
                     offloads (up to {MAX_GSO_FRAME} bytes)",
                    self.name,
                    buf.len()
                ),
            ));
        }
        read_frame(&self.file, &self.name, vnet.layout, buf)
    }

    /// Takes one frame with its virtio-net header: the kernel segments it
    /// or completes its checksum as the header says, and checks the header
    /// (an error is about this frame only).
    ///
    /// Without [`TapOptions::offload`] there is no header to send: a
    /// header that asks for anything (GSO, NEEDS_CSUM) is refused
    /// (`InvalidInput`); segment the frame first
    /// ([`ipn::offload::segment`]).
    pub fn send_with_hdr(&mut self, hdr: &VirtioNetHdr, frame: &[u8]) -> io::Result<()> {
        let Some(vnet) = &self.vnet else {
            if hdr.is_gso() || hdr.needs_csum() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "tap {} was opened without offloads: it takes no GSO frame or \
                         unfinished checksum; segment the frame first (ipn::offload::segment)",
                        self.name
                    ),
                ));
            }
            return Link::send(self, frame);
        };
        let bytes = hdr.to_bytes();
        let parts = [
            IoSlice::new(&bytes[..vnet.layout.size()]),
            IoSlice::new(frame),
        ];
        // One write, one frame; a TAP never takes part of one.
        self.file.write_vectored(&parts).map(|_| ())
    }
}

/// Reads what one `read` gives (one frame, with its header if the TAP has
/// them); `None` when nothing is waiting.
fn read_whole(mut file: &File, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match file.read(buf) {
            Ok(len) => return Ok(Some(len)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads one header and frame from a TAP with headers, the frame into
/// `buf`.
fn read_frame(
    mut file: &File,
    name: &str,
    layout: HdrLayout,
    buf: &mut [u8],
) -> io::Result<Option<(VirtioNetHdr, usize)>> {
    let mut hdr = [0u8; 12];
    let hdr = &mut hdr[..layout.size()];
    let len = loop {
        let mut parts = [IoSliceMut::new(hdr), IoSliceMut::new(buf)];
        match file.read_vectored(&mut parts) {
            Ok(len) => break len,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    let header = VirtioNetHdr::parse(&hdr[..len.min(hdr.len())], layout).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("tap {name}: a read of {len} bytes: {e}"),
        )
    })?;
    Ok(Some((header, len - layout.size())))
}

/// Asks for [`Offloads::WANTED`], and without USO if the kernel refuses it
/// (EINVAL: before Linux 6.2); returns what was accepted.
fn negotiate(fd: BorrowedFd<'_>) -> io::Result<Offloads> {
    let wanted = Offloads::WANTED;
    match sys::set_offload(fd, wanted) {
        Ok(()) => Ok(wanted),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let without_uso = Offloads(wanted.0 & !(Offloads::USO4.0 | Offloads::USO6.0));
            sys::set_offload(fd, without_uso)?;
            Ok(without_uso)
        }
        Err(e) => Err(e),
    }
}

impl Link for Tap {
    fn describe(&self) -> String {
        format!("tap {}", self.name)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.vnet {
            Some(vnet) if !vnet.segments.is_empty() => vnet.ready_fd.as_fd(),
            _ => self.file.as_fd(),
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.vnet.is_some() {
            return self.recv_segmented(buf);
        }
        read_whole(&self.file, buf)
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.vnet.is_some() {
            return self.send_with_hdr(&VirtioNetHdr::default(), frame);
        }
        // One write, one frame; a TAP never takes part of one.
        self.file.write(frame).map(|_| ())
    }

    fn offloads(&self) -> bool {
        self.vnet
            .as_ref()
            .is_some_and(|vnet| vnet.layout == HdrLayout::Basic)
    }

    /// The kernel's header and frame as they are read: no copy, no
    /// segmenting (the port takes offloads).
    fn recv_vnet(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if !Link::offloads(self) {
            return self.recv(buf);
        }
        read_whole(&self.file, buf)
    }

    /// A header and frame written as they are: the kernel segments or
    /// completes the checksum as the header says.
    fn send_vnet(&mut self, buf: &[u8]) -> io::Result<()> {
        if !Link::offloads(self) {
            return self.send(buf);
        }
        // One write, one frame; a TAP never takes part of one.
        self.file.write(buf).map(|_| ())
    }
}

impl Tap {
    /// [`Link::recv`] with offloads: the next segment of the last frame
    /// read, or the next frame read, segmented (segments of at most
    /// `buf.len()` bytes) and checksummed.
    fn recv_segmented(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Tap { file, name, vnet } = self;
        let Some(vnet) = vnet else {
            return Ok(None);
        };
        loop {
            while let Some(len) = vnet.segments.pop_into(&vnet.read_buf, buf) {
                if len <= buf.len() {
                    return Ok(Some(len));
                }
                vnet.dropped += 1;
            }
            vnet.read_buf.resize(MAX_GSO_FRAME, 0);
            let Some((hdr, len)) = read_frame(file, name, vnet.layout, &mut vnet.read_buf)? else {
                return Ok(None);
            };
            let frame = &vnet.read_buf[..len];
            if vnet.segments.start(&hdr, frame, buf.len()).is_err() {
                vnet.dropped += 1;
            }
        }
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
