//! A port: one process's (or one thread's) place on a network.
//!
//! Sending writes the frame into the port's own ring and rings the doorbell
//! of every reader that went to sleep (`send`). Receiving scans the rings of
//! the other ports, round-robin, from a private cursor per ring, and sleeps
//! on the doorbell when there is nothing (`recv`). This file holds what both
//! sides share: joining, leaving, and the view of who else is there, rebuilt
//! whenever the network's membership epoch changes.

mod recv;
mod send;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, JoinOptions, Protocol};
use crate::doorbell::Doorbell;
use crate::error::OpenError;
use crate::files::{self, NetDir, PlaceError};
use crate::liveness;
use crate::membership::{self, Membership};
use crate::network::{open_shared, status_of, Network, Status};
use crate::shm::layout::*;
use crate::shm::SharedFile;
use crate::switch::MacTable;
use crate::sync::Ordering;

/// What a receive can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A frame of this many bytes was copied into the buffer.
    Frame(usize),
    /// The number of readers or writers changed (only after
    /// [`Port::set_membership_events`]).
    Membership(Membership),
}

/// Which direction [`Port::shutdown`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Stop receiving: senders no longer wait for or wake this port.
    Read,
    /// Stop sending.
    Write,
    /// Both: the port stays joined but does nothing.
    Both,
}

/// How many times a blocking receive yields the processor, looking for
/// frames, before it arms the doorbell and sleeps.
const YIELDS_BEFORE_SLEEP: u32 = 4;

/// How often a waiting port checks for dead peers.
const DEATH_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A joined port. Dropping it leaves the network.
#[derive(Debug)]
pub struct Port {
    path: PathBuf,
    shm: SharedFile,
    index: u32,
    bell: Doorbell,
    caps: u32,
    /// Membership epoch our lists were built from.
    epoch: u64,
    membership: Membership,
    events: bool,
    event_pending: bool,
    /// Heads of the rings when the pending event was noticed: frames sent
    /// before a membership change are delivered before the event.
    event_barrier: Vec<(u32, u64)>,
    // Send side.
    head: u64,
    join_head: u64,
    readers: Vec<u32>,
    /// Lossless: frames we may still send without looking at the readers'
    /// cursors again.
    room: u64,
    // Receive side.
    /// Next frame wanted from each slot's ring, for every slot: rings are
    /// continuous across the slot's occupants, so `cursor..head` is exactly
    /// what was sent there since we joined, even by a port that has left.
    cursors: Vec<u64>,
    /// Slots worth scanning: live writers, and rings with frames unread.
    senders: Vec<u32>,
    next_sender: usize,
    armed: bool,
    seen_rings: u64,
    counters: Counters,
    /// Switch mode: where each learned address lives.
    switch: Option<MacTable>,
}

#[derive(Debug, Default)]
struct Counters {
    tx_frames: u64,
    tx_bytes: u64,
    rx_frames: u64,
    rx_bytes: u64,
    rx_dropped: u64,
}

impl Port {
    /// Joins the existing network at `path`.
    pub fn join(path: impl AsRef<Path>, options: &JoinOptions) -> Result<Port, OpenError> {
        let dir = NetDir::open(path.as_ref())?;
        let file = dir.open_shm(true)?;
        let shm = open_shared(dir.path(), file, true)?;
        Port::attach(dir, shm, options)
    }

    /// Joins the network at `path`, creating it with `config` first if
    /// there is none. Safe against concurrent creators.
    pub fn join_or_create(
        path: impl AsRef<Path>,
        config: &Config,
        options: &JoinOptions,
    ) -> Result<Port, OpenError> {
        let path = path.as_ref();
        for _ in 0..3 {
            match Port::join(path, options) {
                Err(OpenError::NotFound { .. }) => {}
                // A directory without `shm`: `create` decides whether it
                // may become a network (empty and ours) or says why not.
                Err(OpenError::NotANetwork { .. }) if has_no_shm(path) => {}
                other => return other,
            }
            match Network::create(path, config) {
                Ok(_) | Err(OpenError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Port::join(path, options)
    }

    fn attach(dir: NetDir, shm: SharedFile, options: &JoinOptions) -> Result<Port, OpenError> {
        let (index, bell) = claim_slot(&shm, &dir)?;
        let entry = shm.port(index);
        let generation = membership::generation(entry.state.load(Ordering::Acquire))
            .wrapping_add(1)
            & (u64::MAX >> 8);
        entry.state.store(
            membership::word(generation, STATE_JOINING),
            Ordering::SeqCst,
        );
        let caps = (u32::from(options.read) * CAP_READ) | (u32::from(options.write) * CAP_WRITE);
        let r = Ordering::Relaxed;
        entry.pid.store(std::process::id(), r);
        entry.caps.store(caps, r);
        membership::write_description(entry, &options.description);
        for counter in [
            &entry.tx_frames,
            &entry.tx_bytes,
            &entry.rx_frames,
            &entry.rx_bytes,
            &entry.rx_dropped,
        ] {
            counter.store(0, r);
        }
        // Armed from the start: the fd must become readable with the first
        // frame even for a user that only ever receives after poll says so.
        entry.armed.store(1, Ordering::SeqCst);
        let head = entry.head.load(Ordering::Acquire);
        entry.join_head.store(head, r);
        let mut port = Port {
            path: dir.path().into(),
            index,
            bell,
            caps,
            epoch: 0,
            membership: Membership::default(),
            events: false,
            event_pending: false,
            event_barrier: Vec::new(),
            head,
            join_head: head,
            readers: Vec::new(),
            room: 0,
            cursors: Vec::new(),
            senders: Vec::new(),
            next_sender: 0,
            armed: true,
            seen_rings: entry.rings.load(Ordering::Acquire),
            counters: Counters::default(),
            switch: (Protocol::from_code(shm.geometry().protocol) == Some(Protocol::Switch))
                .then(MacTable::default),
            shm,
        };
        port.start_cursors();
        let entry = port.shm.port(index);
        entry
            .state
            .store(membership::word(generation, STATE_ACTIVE), Ordering::SeqCst);
        port.shm
            .header()
            .membership_epoch
            .fetch_add(1, Ordering::SeqCst);
        membership::wake_all(&port.shm, &mut port.bell, index);
        port.refresh_membership();
        port.event_pending = false;
        Ok(port)
    }

    /// A new reader starts at every ring's current head: it receives what
    /// is sent from now on.
    fn start_cursors(&mut self) {
        self.cursors = (0..self.shm.geometry().max_ports)
            .map(|index| self.shm.port(index).head.load(Ordering::Acquire))
            .collect();
        self.publish_cursors();
    }

    /// Lossless: tells the senders how far we have read. Normally done per
    /// frame; done for every ring when joining and before sleeping, so that a
    /// cursor word scribbled on by a peer heals instead of blocking a sender.
    fn publish_cursors(&self) {
        if !self.shm.geometry().lossless() {
            return;
        }
        for (index, &cursor) in self.cursors.iter().enumerate() {
            let index = index as u32;
            let published = self.shm.cursor(self.index, index);
            if index != self.index && published.load(Ordering::Relaxed) != cursor {
                published.store(cursor, Ordering::Release);
            }
        }
    }

    /// This port's number (its slot in the port table).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The network's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Largest frame the network carries, in bytes.
    pub fn mtu(&self) -> u32 {
        self.shm.geometry().mtu
    }

    /// Whether senders wait for slow readers on this network.
    pub fn lossless(&self) -> bool {
        self.shm.geometry().lossless()
    }

    /// Current reader and writer counts.
    pub fn membership(&mut self) -> Membership {
        self.check_membership();
        self.membership
    }

    /// Ask for [`Message::Membership`] from [`Port::try_recv_message`] and
    /// [`Port::recv_message`] whenever the reader or writer count changes.
    /// While waiting in `recv_message`, the port also looks for dead peers
    /// every 100 ms so that deaths are reported promptly.
    pub fn set_membership_events(&mut self, enabled: bool) {
        self.events = enabled;
    }

    /// A snapshot of the whole network.
    pub fn status(&self) -> Status {
        membership::sweep_dead(&self.shm, Some(self.index));
        status_of(&self.path, &self.shm)
    }

    /// Stops reading, writing or both. Other ports see the counts change;
    /// lossless senders stop waiting for a port that no longer reads.
    pub fn shutdown(&mut self, how: Shutdown) {
        let stop = match how {
            Shutdown::Read => CAP_READ,
            Shutdown::Write => CAP_WRITE,
            Shutdown::Both => CAP_READ | CAP_WRITE,
        };
        self.caps &= !stop;
        self.shm
            .port(self.index)
            .caps
            .store(self.caps, Ordering::SeqCst);
        self.announce_membership_change();
    }

    fn announce_membership_change(&mut self) {
        self.shm
            .header()
            .membership_epoch
            .fetch_add(1, Ordering::SeqCst);
        membership::wake_all(&self.shm, &mut self.bell, self.index);
    }

    /// `Err(path)` once the shared file was truncated under us (see
    /// `shm::sigbus`): every later operation fails with that.
    fn check_damage(&self) -> Result<(), PathBuf> {
        if self.shm.damaged() {
            Err(self.path.clone())
        } else {
            Ok(())
        }
    }

    // ----- membership -------------------------------------------------

    fn check_membership(&mut self) {
        if self.shm.header().membership_epoch.load(Ordering::Acquire) != self.epoch {
            self.refresh_membership();
        }
    }

    /// Rebuilds the reader and sender lists from the port table.
    fn refresh_membership(&mut self) {
        self.epoch = self.shm.header().membership_epoch.load(Ordering::Acquire);
        let mut readers = Vec::new();
        let mut occupants = Vec::new();
        let mut senders = Vec::new();
        for index in 0..self.shm.geometry().max_ports {
            if index == self.index {
                continue;
            }
            let entry = self.shm.port(index);
            let word = entry.state.load(Ordering::Acquire);
            let caps = entry.caps.load(Ordering::Acquire);
            let active = membership::state(word) == STATE_ACTIVE;
            if active && caps & CAP_READ != 0 {
                readers.push(index);
                occupants.push((index, word));
            }
            let alive_writer = membership::claims_alive(word) && caps & CAP_WRITE != 0;
            let unread = entry.head.load(Ordering::Acquire) != self.cursors[index as usize];
            if alive_writer || unread {
                senders.push(index);
            }
        }
        self.bell.keep_connected(&occupants);
        if let Some(table) = &mut self.switch {
            table.forget_departed(&self.shm);
        }
        self.readers = readers;
        self.senders = senders;
        self.room = 0;
        let counts = membership::counts(&self.shm);
        if counts != self.membership {
            self.membership = counts;
            self.event_pending = self.events;
            if self.events {
                self.event_barrier = self
                    .senders
                    .iter()
                    .map(|&s| (s, self.shm.port(s).head.load(Ordering::Acquire)))
                    .collect();
            }
        }
    }

    /// Marks the ports whose process died (their slot lock is free) as
    /// dead, so that lossless senders stop waiting for them, and wakes the
    /// others to see it. `send` does this itself while it waits for room;
    /// a caller that waits in a loop of its own around `try_send` calls it
    /// every 100 ms or so.
    pub fn sweep_dead(&mut self) {
        if membership::sweep_dead(&self.shm, Some(self.index)) > 0 {
            membership::wake_all(&self.shm, &mut self.bell, self.index);
        }
    }
}

/// Whether `path` is a directory without a `shm` (as one left by a
/// creator that died before finishing).
fn has_no_shm(path: &Path) -> bool {
    NetDir::open(path)
        .and_then(|dir| dir.names())
        .is_ok_and(|names| !names.iter().any(|n| n == files::SHM_NAME))
}

/// Takes a free port slot and binds its doorbell: first a slot marked free
/// or dead, else one whose owner died without anybody noticing yet. The
/// lock decides who gets a slot; a slot whose doorbell name is held by a
/// file we may not replace (another member's, in the sticky directory) is
/// passed over.
fn claim_slot(shm: &SharedFile, dir: &NetDir) -> Result<(u32, Doorbell), OpenError> {
    let max_ports = shm.geometry().max_ports;
    let shm_error = |e| files::io_error(&dir.display_path(files::SHM_NAME), e);
    let mut occupied = Vec::new();
    for want_unclaimed in [true, false] {
        for index in 0..max_ports {
            let word = shm.port(index).state.load(Ordering::Acquire);
            if membership::claims_alive(word) == want_unclaimed {
                continue;
            }
            if !liveness::try_lock(shm.file(), index).map_err(shm_error)? {
                continue;
            }
            match Doorbell::bind(dir, index) {
                Ok(bell) => return Ok((index, bell)),
                Err(PlaceError::Occupied) => {
                    liveness::unlock(shm.file(), index).map_err(shm_error)?;
                    occupied.push(index);
                }
                Err(PlaceError::Io(e)) => {
                    let _ = liveness::unlock(shm.file(), index);
                    return Err(files::io_error(
                        &dir.display_path(&files::bell_name(index)),
                        e,
                    ));
                }
            }
        }
    }
    Err(OpenError::Full {
        path: dir.path().into(),
        max_ports,
        detail: why_full(shm, &occupied),
    })
}

/// Says who holds the slots of a full network: joined ports, processes
/// that took slot locks without joining, doorbell names we may not use.
fn why_full(shm: &SharedFile, occupied: &[u32]) -> String {
    let max_ports = shm.geometry().max_ports;
    let joined = (0..max_ports)
        .filter(|&i| membership::claims_alive(shm.port(i).state.load(Ordering::Acquire)))
        .count();
    let mut parts = vec![format!("{joined} joined")];
    let unjoined: Vec<u32> = (0..max_ports)
        .filter(|&i| {
            !membership::claims_alive(shm.port(i).state.load(Ordering::Acquire))
                && !occupied.contains(&i)
                && liveness::is_held(shm.file(), i).unwrap_or(false)
        })
        .collect();
    if !unjoined.is_empty() {
        let holders = liveness::holders(shm.file(), max_ports);
        let mut pids: Vec<u32> = holders
            .iter()
            .filter(|(slot, _)| unjoined.contains(slot))
            .map(|&(_, pid)| pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        let who = if pids.is_empty() {
            "by processes you cannot see".to_string()
        } else {
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            format!("by pid {}", list.join(", "))
        };
        parts.push(format!(
            "{} locked without joining {who} (`ipn status` lists them)",
            unjoined.len()
        ));
    }
    if !occupied.is_empty() {
        let names: Vec<String> = occupied.iter().map(|&i| files::bell_name(i)).collect();
        parts.push(format!(
            "{} unusable by you: their doorbell names ({}) are held by files you may not \
             replace (the network's owner or root can remove them)",
            occupied.len(),
            names.join(", ")
        ));
    }
    format!(" ({})", parts.join("; "))
}

impl Drop for Port {
    fn drop(&mut self) {
        self.bell.unlink();
        let entry = self.shm.port(self.index);
        let generation = membership::generation(entry.state.load(Ordering::Acquire));
        entry.caps.store(0, Ordering::Relaxed);
        entry
            .state
            .store(membership::word(generation, STATE_FREE), Ordering::SeqCst);
        self.announce_membership_change();
        // The slot lock goes with the file when `shm` drops.
    }
}

impl AsRawFd for Port {
    /// The doorbell socket: readable while frames wait for this port.
    fn as_raw_fd(&self) -> RawFd {
        self.bell.raw_fd()
    }
}

impl AsFd for Port {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.bell.fd()
    }
}
