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
//! Ringing is one `send()` on a socket `connect()`ed to the reader's bell,
//! kept per reader (up to [`MAX_CONNECTED`] of them): a `sendto()` with a
//! path would make the kernel walk the path on every doorbell. A connected
//! socket whose peer was replaced (the slot was reclaimed and its bell bound
//! anew) fails with `ECONNREFUSED`; it is then connected again, once.
//!
//! Other errors while ringing are ignored on purpose: the only receivers
//! that can refuse a doorbell are dead ports, which have nothing to wake.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    bind, connect, recv, send, sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType,
    UnixAddr,
};

use crate::files;

/// Most readers a port keeps a connected socket for; beyond that it rings
/// with `sendto()`, to bound the descriptors a port holds.
pub const MAX_CONNECTED: usize = 256;

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
    connected: HashMap<u32, OwnedFd>,
    /// Slot state words of the readers at the last `keep_connected`.
    occupants: HashMap<u32, u64>,
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
            connected: HashMap::new(),
            occupants: HashMap::new(),
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
        for _attempt in 0..2 {
            match self.connection(index) {
                Some(fd) => match send(fd, &[], MsgFlags::MSG_DONTWAIT) {
                    Err(nix::errno::Errno::ECONNREFUSED) | Err(nix::errno::Errno::ENOTCONN) => {
                        // The bell was bound anew by a new owner: reconnect.
                        self.connected.remove(&index);
                    }
                    _ => return,
                },
                None => {
                    if let Ok(address) = self.address(index) {
                        let _ = sendto(
                            self.ringer.as_raw_fd(),
                            &[],
                            &address,
                            MsgFlags::MSG_DONTWAIT,
                        );
                    }
                    return;
                }
            }
        }
    }

    /// The connected socket for port `index`, connecting it if needed.
    fn connection(&mut self, index: u32) -> Option<RawFd> {
        if let Some(fd) = self.connected.get(&index) {
            return Some(fd.as_raw_fd());
        }
        if self.connected.len() >= MAX_CONNECTED {
            return None;
        }
        let address = self.address(index).ok()?;
        let fd = datagram_socket().ok()?;
        connect(fd.as_raw_fd(), &address).ok()?;
        let raw = fd.as_raw_fd();
        self.connected.insert(index, fd);
        Some(raw)
    }

    /// Closes the connections to ports that are no longer readers, or whose
    /// slot changed occupant (`readers` pairs a port with its slot's state
    /// word, which names the occupant). A connection to a replaced occupant
    /// could still "work" if the old socket lived on in a forked child, and
    /// the new occupant would never be woken.
    pub fn keep_connected(&mut self, readers: &[(u32, u64)]) {
        let before = std::mem::take(&mut self.occupants);
        self.occupants = readers.iter().copied().collect();
        let occupants = &self.occupants;
        self.connected.retain(|index, _| {
            occupants
                .get(index)
                .is_some_and(|now| before.get(index) == Some(now))
        });
    }

    /// Consumes waiting doorbells so the fd stops being readable: `expected`
    /// of them if known (each was counted after it was sent, so it is
    /// already queued), else all of them.
    pub fn drain(&self, expected: Option<u64>) {
        let mut byte = [0u8; 1];
        let mut drained = 0u64;
        while expected != Some(drained)
            && recv(self.socket.as_raw_fd(), &mut byte, MsgFlags::MSG_DONTWAIT).is_ok()
        {
            drained += 1;
        }
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
