//! Waking a port that went to sleep: the `armed` handshake, and the bell
//! that carries the wake-up.
//!
//! ```text
//! reader (found nothing)              sender
//!   armed = 1                           write frame, head += 1
//!   fence(SeqCst)                       fence(SeqCst)
//!   look at the rings again             if swap(armed, 0) == 1: ring
//! ```
//!
//! Either the reader's second look sees the frame, or the sender sees
//! `armed == 1` and rings; both may happen, never neither. Exactly one
//! waker wins the swap, so a sleeping port gets one doorbell per sleep.
//! The waker adds one to the port's `rings` count, and only then rings,
//! so that the port knows, without a system call, how many doorbells to
//! drain: the receiver a doorbell wakes often runs before its waker's
//! `send` has returned. A doorbell may thus be counted and not queued yet
//! (the drain waits for it, briefly), and a claim the receiver saw may be
//! neither (it owes one doorbell all the same): see `Doorbells` in
//! `port/recv.rs`.
//!
//! The bell itself is behind [`Bell`]: in normal builds the port's socket
//! doorbell ([`crate::doorbell::Doorbell`]), whose fd is the port's
//! pollable fd; under the loom model checker ([`LoomBell`]) a count of
//! datagrams per port, so that the model checker runs the real send and
//! receive code with only the socket replaced.

use std::io;
use std::time::Duration;

use crate::shm::layout::PortEntry;
use crate::shm::SharedFile;
use crate::sync::{fence, Ordering};

/// What waking others needs: ringing their doorbells.
pub trait Ring {
    /// Wakes port `index` (which may be this port itself): one datagram.
    fn ring(&mut self, index: u32);
    /// The ports we ring now, each with its slot's state word (which names
    /// the occupant), so that connections to departed occupants go.
    fn keep_connected(&mut self, readers: &[(u32, u64)]);
}

/// What sleeping needs: the port's own doorbell (which rings too: itself,
/// or everyone after finding a dead port).
pub trait Bell: Ring {
    /// Consumes waiting wake-ups: `expected` of them if known (each is
    /// counted just before it is rung: one still on its way is waited for,
    /// briefly), else all that are queued. Returns how many it consumed.
    fn drain(&self, expected: Option<u64>) -> u64;
    /// Waits until woken or `timeout` (`None`: forever).
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Woken>;
    /// Leaving: removes what others use to reach us.
    fn unlink(&self);
}

/// How a [`Bell::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// Nothing came (or a signal interrupted the wait).
    TimedOut,
    /// A wake-up waits, still queued.
    Readable,
    /// The wait took one wake-up off the queue itself (a blocking receive
    /// of the doorbell: one system call where `poll` and a drain take two).
    TookOne,
}

/// The bell ports use: the socket doorbell, or the model checker's count.
#[cfg(not(loom))]
pub type PortBell = crate::doorbell::Doorbell;
#[cfg(loom)]
pub type PortBell = LoomBell;

/// What a port's sending side rings with: a socket ringer of its own, or
/// the model checker's count.
#[cfg(not(loom))]
pub type PortRinger = crate::doorbell::Ringer;
#[cfg(loom)]
pub type PortRinger = LoomBell;

/// The sleeper's half: ask for a doorbell, then a full fence, after which
/// the caller must look at the rings once more before sleeping.
#[inline]
pub fn arm(entry: &PortEntry) {
    entry.armed.store(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
}

/// Takes back a request for a doorbell; `true` if it was still pending,
/// i.e. no waker claimed it and nobody will ring for it.
#[inline]
pub fn disarm(entry: &PortEntry) -> bool {
    entry.armed.swap(0, Ordering::AcqRel) == 1
}

/// The waker's half: whether the caller must ring `entry`'s doorbell,
/// i.e. the port is armed and this caller won the swap that disarms it.
/// The plain load first keeps the common case (not armed) from taking the
/// cache line exclusively.
#[inline]
pub fn claim_wake(entry: &PortEntry) -> bool {
    entry.armed.load(Ordering::Relaxed) == 1 && entry.armed.swap(0, Ordering::AcqRel) == 1
}

/// Rings port `index` if it sleeps. The caller issued a SeqCst fence after
/// writing what the port should find.
pub fn wake(shm: &SharedFile, bell: &mut impl Ring, index: u32) {
    let entry = shm.port(index);
    if claim_wake(entry) {
        entry.rings.fetch_add(1, Ordering::Release);
        bell.ring(index);
    }
}

/// Wakes every sleeping port (other than `me`), after a membership change.
pub fn wake_all(shm: &SharedFile, bell: &mut impl Ring, me: u32) {
    fence(Ordering::SeqCst);
    for index in 0..shm.geometry().max_ports {
        if index != me {
            wake(shm, bell, index);
        }
    }
}

/// The model checker's bell: a count of queued wake-ups per port, shared
/// by every port of a test network.
#[cfg(loom)]
#[derive(Debug, Clone)]
pub struct LoomBell {
    /// This port.
    pub me: u32,
    /// Wake-ups queued at each port's "socket".
    pub queued: loom::sync::Arc<Vec<crate::sync::AtomicU64>>,
}

#[cfg(loom)]
impl LoomBell {
    /// A ringer for the port's sending side: the same counts.
    pub fn ringer(&self) -> LoomBell {
        self.clone()
    }
}

#[cfg(loom)]
impl Ring for LoomBell {
    fn ring(&mut self, index: u32) {
        self.queued[index as usize].fetch_add(1, Ordering::SeqCst);
    }

    fn keep_connected(&mut self, _readers: &[(u32, u64)]) {}
}

#[cfg(loom)]
impl Bell for LoomBell {
    fn drain(&self, expected: Option<u64>) -> u64 {
        let queued = &self.queued[self.me as usize];
        match expected {
            None => queued.swap(0, Ordering::SeqCst),
            Some(n) => {
                // The socket bell waits (briefly) for wake-ups counted but
                // not yet queued; here their ringers always get to ring,
                // so wait for them. A count of wake-ups that will never
                // come (one drained uncounted) spins here until loom gives
                // up on the model: a drain that would wait for nothing.
                while queued.load(Ordering::SeqCst) < n {
                    loom::thread::yield_now();
                }
                queued.fetch_sub(n, Ordering::SeqCst);
                n
            }
        }
    }

    fn wait(&self, _timeout: Option<Duration>) -> io::Result<Woken> {
        Ok(
            if self.queued[self.me as usize].load(Ordering::SeqCst) > 0 {
                Woken::Readable
            } else {
                Woken::TimedOut
            },
        )
    }

    fn unlink(&self) {}
}
