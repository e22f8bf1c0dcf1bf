//! Doorbells: how a sender wakes a port that went to sleep.
//!
//! Each port binds an `AF_UNIX` datagram socket at `PATH/bell.N`; that
//! socket is the port's pollable fd. A sender rings port N by sending one
//! empty datagram to it, which makes the fd readable. Frames never travel
//! through the socket; it only carries "look at the rings".
//!
//! Socket addresses are limited to 107 bytes. When `PATH/bell.N` is longer,
//! the address goes through `/proc/self/fd/D/bell.N`, where `D` is a
//! descriptor of the network directory held by this process.
//!
//! Errors while ringing are ignored on purpose: the only receivers that can
//! refuse a doorbell are dead ports, which have nothing to wake.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};

use crate::files;

pub struct Doorbell {
    /// Bound socket: this port's pollable fd.
    socket: OwnedFd,
    /// Unbound socket used to ring other ports.
    ringer: OwnedFd,
    /// The network directory, for the long-path fallback.
    dir: File,
    dir_path: PathBuf,
    own_path: PathBuf,
    addresses: HashMap<u32, UnixAddr>,
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbell")
            .field("path", &self.own_path)
            .finish()
    }
}

fn datagram_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

impl Doorbell {
    /// Binds the doorbell of port `index` in network directory `dir_path`,
    /// replacing a stale socket left by a dead previous owner of the slot
    /// (the caller holds the slot's lock, so no live port owns that name).
    pub fn bind(dir_path: &Path, index: u32) -> io::Result<Doorbell> {
        let dir = File::open(dir_path)?;
        let mut bell = Doorbell {
            socket: datagram_socket()?,
            ringer: datagram_socket()?,
            dir,
            dir_path: dir_path.into(),
            own_path: dir_path.join(files::bell_name(index)),
            addresses: HashMap::new(),
        };
        match std::fs::remove_file(&bell.own_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let address = bell.address(index)?;
        bind(bell.socket.as_raw_fd(), &address)?;
        // Senders need write permission on the socket: give it the
        // directory's read/write bits and group, as for `shm`.
        let dir_meta = std::fs::metadata(dir_path)?;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::fs::set_permissions(
            &bell.own_path,
            std::fs::Permissions::from_mode(files::file_mode(dir_meta.mode())),
        )?;
        // Best effort: only the group owner's members can do this, and a
        // member who cannot still has the directory's "other" bits.
        let _ = std::os::unix::fs::chown(&bell.own_path, None, Some(dir_meta.gid()));
        Ok(bell)
    }

    fn address(&mut self, index: u32) -> io::Result<UnixAddr> {
        if let Some(address) = self.addresses.get(&index) {
            return Ok(*address);
        }
        let direct = self.dir_path.join(files::bell_name(index));
        let address = match UnixAddr::new(&direct) {
            Ok(address) => address,
            Err(_) => UnixAddr::new(&PathBuf::from(format!(
                "/proc/self/fd/{}/{}",
                self.dir.as_raw_fd(),
                files::bell_name(index)
            )))?,
        };
        self.addresses.insert(index, address);
        Ok(address)
    }

    /// Wakes port `index` (which may be this port itself).
    pub fn ring(&mut self, index: u32) {
        if let Ok(address) = self.address(index) {
            let _ = sendto(self.ringer.as_raw_fd(), &[], &address, MsgFlags::empty());
        }
    }

    /// Consumes every waiting doorbell, so the fd stops being readable.
    pub fn drain(&self) {
        let mut byte = [0u8; 1];
        while recv(self.socket.as_raw_fd(), &mut byte, MsgFlags::MSG_DONTWAIT).is_ok() {}
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Removes the socket name (the fd stays usable until dropped).
    pub fn unlink(&self) {
        let _ = std::fs::remove_file(&self.own_path);
    }
}
