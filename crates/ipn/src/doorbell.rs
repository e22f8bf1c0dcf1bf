//! Doorbells: how a sender wakes a port that went to sleep.
//!
//! Each port binds an `AF_UNIX` datagram socket at `PATH/bell.N`; that
//! socket is the port's pollable fd. A sender rings port N by sending one
//! empty datagram to it, which makes the fd readable. Frames never travel
//! through the socket; it only carries "look at the rings".
//!
//! Names in the network directory can be swapped by any member (see
//! `files`), so neither binding nor connecting uses them as paths: a port
//! binds its socket inside a private staging directory, sets its mode and
//! group there, and renames it into place; a sender opens `bell.N` with
//! `O_PATH | O_NOFOLLOW`, checks it is a socket, and connects through
//! `/proc/self/fd/D`, which names exactly that inode. A link planted at
//! `bell.N` is never followed, and these paths are always short enough for
//! a socket address.
//!
//! Ringing is one `send()` on a socket `connect()`ed to the reader's bell,
//! kept per reader (up to [`MAX_CONNECTED`] of them): a `sendto()` with a
//! path would make the kernel walk the path on every doorbell. A connected
//! socket whose peer was replaced (the slot was reclaimed and its bell bound
//! anew) fails with `ECONNREFUSED`; it is then connected again, once.
//!
//! Ringing is a [`Ringer`], apart from the bound socket ([`Doorbell`]), so
//! that a port's sending half rings others with its own while its
//! receiving half (which owns the doorbell, and rings only itself or, after
//! a sweep for dead ports, everyone) may run on another thread. The two
//! share the directory's descriptor and the unbound socket.
//!
//! Other errors while ringing are ignored on purpose: the only receivers
//! that can refuse a doorbell are dead ports, which have nothing to wake.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::socket::{
    bind, connect, recv, send, sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType,
    UnixAddr,
};

use crate::files::{self, NetDir, PlaceError};

/// Most readers a port keeps a connected socket for; beyond that it rings
/// with `sendto()`, to bound the descriptors a port holds.
pub const MAX_CONNECTED: usize = 256;

/// Longest a drain waits for doorbells that were counted but are not
/// queued yet (see [`Doorbell::drain_queued`]): a ringer counts, then
/// sends, a microsecond later unless it loses its CPU in between. Past
/// this the doorbell is left to land on its own, and the fd is readable
/// once for nothing; a ringer that died between the two never sends.
pub const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_micros(100);

/// A port's bound socket (its pollable fd), and a [`Ringer`] of its own.
pub struct Doorbell {
    /// Bound socket: this port's pollable fd.
    socket: OwnedFd,
    /// The network directory.
    dir: Arc<NetDir>,
    /// Our socket's name, and `(dev, ino)` of the socket file we bound, so
    /// that leaving removes our socket and nothing a member put there.
    own_name: String,
    own_identity: (u64, u64),
    /// Rings for the receiving side: this port itself, or everyone.
    ringer: Ringer,
    /// The socket's receive timeout as last set (`SO_RCVTIMEO`), so that
    /// waits with the same timeout set it once.
    receive_timeout: std::cell::Cell<Option<std::time::Duration>>,
}

/// Rings other ports' doorbells (or our own).
pub struct Ringer {
    /// Unbound socket used to ring ports we keep no connection to: one per
    /// port, shared by its ringers (a `sendto` needs no state of its own),
    /// so that the split costs no descriptor.
    unbound: Arc<OwnedFd>,
    /// The network directory.
    dir: Arc<NetDir>,
    connected: HashMap<u32, OwnedFd>,
    /// Slot state words of the readers at the last `keep_connected`.
    occupants: HashMap<u32, u64>,
}

impl std::fmt::Debug for Ringer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ringer")
            .field("dir", &self.dir.path())
            .field("connected", &self.connected.len())
            .finish()
    }
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbell")
            .field("dir", &self.dir.path())
            .field("name", &self.own_name)
            .finish()
    }
}

/// A datagram socket for ringing: never blocks.
fn datagram_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// The port's own socket: blocking, so that a sleeping receive waits in
/// one `recv` that also takes the doorbell (see `wait`); every other
/// receive on it passes `MSG_DONTWAIT`.
fn bell_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

impl Doorbell {
    /// Binds the doorbell of port `index` in network directory `dir`,
    /// replacing a stale socket (or anything else) left at its name, if we
    /// may: the caller holds the slot's lock, so no live port owns that
    /// name. [`PlaceError::Occupied`]: a file we may not remove holds it.
    pub fn bind(dir: &NetDir, index: u32) -> Result<Doorbell, PlaceError> {
        let dir = dir.try_clone().map_err(PlaceError::Io)?;
        let own_name = files::bell_name(index);
        let staging = dir.make_staging().map_err(PlaceError::Io)?;
        let bound = (|| -> io::Result<(OwnedFd, (u64, u64))> {
            let socket = bell_socket()?;
            let address = UnixAddr::new(&files::proc_path(staging.fd()).join(&own_name))?;
            bind(socket.as_raw_fd(), &address)?;
            // Senders need write permission on the socket: the directory's
            // read/write bits and group, as for `shm`.
            let dir_stat = dir.stat()?;
            staging.set_mode_and_group(
                &own_name,
                files::file_mode(dir_stat.st_mode),
                dir_stat.st_gid,
            )?;
            Ok((socket, staging.identity(&own_name)?))
        })();
        let placed = match bound {
            Ok(bound) => dir.move_into_place(&staging, &own_name).map(|()| bound),
            Err(e) => Err(PlaceError::Io(e)),
        };
        dir.remove_staging(staging);
        let (socket, own_identity) = placed?;
        let dir = Arc::new(dir);
        Ok(Doorbell {
            socket,
            ringer: Ringer {
                unbound: Arc::new(datagram_socket().map_err(PlaceError::Io)?),
                dir: Arc::clone(&dir),
                connected: HashMap::new(),
                occupants: HashMap::new(),
            },
            dir,
            own_name,
            own_identity,
            receive_timeout: std::cell::Cell::new(None),
        })
    }

    /// Another ringer into the same network, for a port's sending side:
    /// its own connections, the same directory and unbound socket.
    pub fn ringer(&self) -> Ringer {
        Ringer {
            unbound: Arc::clone(&self.ringer.unbound),
            dir: Arc::clone(&self.dir),
            connected: HashMap::new(),
            occupants: HashMap::new(),
        }
    }

    /// Consumes waiting doorbells so the fd stops being readable: `expected`
    /// of them if known, else all of them (until none is queued).
    ///
    /// `expected` counts doorbells whose ringers counted them, and a ringer
    /// counts before it sends: a doorbell may be counted and not queued
    /// yet. The drain then waits for it, at most [`IN_FLIGHT_WAIT`], in
    /// `ppoll` (which leaves the CPU to a ringer that lost it): drained
    /// now, it will not make the fd readable later with nothing to read.
    fn drain_queued(&self, expected: Option<u64>) -> u64 {
        let mut byte = [0u8; 1];
        let fd = self.socket.as_raw_fd();
        let mut take = || recv(fd, &mut byte, MsgFlags::MSG_DONTWAIT).is_ok();
        let mut drained = 0u64;
        while expected != Some(drained) && take() {
            drained += 1;
        }
        let Some(expected) = expected.filter(|&n| drained < n) else {
            return drained;
        };
        // Short of the count: the clock is read only now, not on every
        // drain that found what it expected.
        let deadline = std::time::Instant::now() + IN_FLIGHT_WAIT;
        while drained < expected {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            // Timed out, interrupted or failed: leave the rest to land.
            if left.is_zero() || !matches!(ppoll(&mut fds, Some(left.into()), None), Ok(1..)) {
                break;
            }
            while drained < expected && take() {
                drained += 1;
            }
        }
        drained
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Removes the socket's name, if it is still our socket (the fd stays
    /// usable until dropped).
    fn unlink_name(&self) {
        let (dev, ino) = self.own_identity;
        self.dir.remove_if_same(&self.own_name, dev, ino);
    }
}

impl Ringer {
    /// The address of port `index`'s socket, and the descriptor that makes
    /// that address mean exactly the socket found at `bell.N` now (it must
    /// stay open while the address is used).
    fn address(&self, index: u32) -> io::Result<(UnixAddr, OwnedFd)> {
        let target = self.dir.open_socket(&files::bell_name(index))?;
        let address = UnixAddr::new(&files::proc_path(target.as_fd()))?;
        Ok((address, target))
    }

    /// Wakes port `index` (which may be this port itself).
    fn ring_port(&mut self, index: u32) {
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
                    if let Ok((address, _target)) = self.address(index) {
                        let _ = sendto(
                            self.unbound.as_raw_fd(),
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
        let (address, _target) = self.address(index).ok()?;
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
    fn keep_connected_to(&mut self, readers: &[(u32, u64)]) {
        let before = std::mem::take(&mut self.occupants);
        self.occupants = readers.iter().copied().collect();
        let occupants = &self.occupants;
        self.connected.retain(|index, _| {
            occupants
                .get(index)
                .is_some_and(|now| before.get(index) == Some(now))
        });
    }
}

impl crate::wake::Ring for Ringer {
    fn ring(&mut self, index: u32) {
        self.ring_port(index);
    }

    fn keep_connected(&mut self, readers: &[(u32, u64)]) {
        self.keep_connected_to(readers);
    }
}

impl crate::wake::Ring for Doorbell {
    fn ring(&mut self, index: u32) {
        self.ringer.ring_port(index);
    }

    fn keep_connected(&mut self, readers: &[(u32, u64)]) {
        self.ringer.keep_connected_to(readers);
    }
}

impl crate::wake::Bell for Doorbell {
    fn drain(&self, expected: Option<u64>) -> u64 {
        self.drain_queued(expected)
    }

    /// One blocking `recv` of the doorbell, with `SO_RCVTIMEO` as the
    /// timeout. A timeout of a millisecond or more is cut to whole
    /// milliseconds (the caller waits again for the rest): a caller that
    /// waits towards a deadline again and again (as `ipn sub` does, 100 ms
    /// at a time) then sets the socket's timeout once, not before every
    /// wait. A zero timeout means forever to the kernel: the shortest wait
    /// is a microsecond.
    fn wait(&self, timeout: Option<std::time::Duration>) -> io::Result<crate::wake::Woken> {
        use crate::wake::Woken;
        use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
        use nix::sys::time::TimeVal;
        use std::time::Duration;
        let timeout = timeout.map(|t| {
            if t >= Duration::from_millis(1) {
                Duration::from_millis(t.as_millis().min(u128::from(u64::MAX)) as u64)
            } else {
                t.max(Duration::from_micros(1))
            }
        });
        if self.receive_timeout.get() != timeout {
            let tv = timeout.map_or(TimeVal::new(0, 0), |t| {
                TimeVal::new(
                    t.as_secs().min(i64::MAX as u64) as _,
                    t.subsec_micros() as _,
                )
            });
            setsockopt(&self.socket, ReceiveTimeout, &tv)?;
            self.receive_timeout.set(timeout);
        }
        let mut byte = [0u8; 1];
        match recv(self.socket.as_raw_fd(), &mut byte, MsgFlags::empty()) {
            Ok(_) => Ok(Woken::TookOne),
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => Ok(Woken::TimedOut),
            Err(e) => Err(e.into()),
        }
    }

    fn unlink(&self) {
        self.unlink_name();
    }
}
