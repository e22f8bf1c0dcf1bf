//! A port: one process's (or one thread's) place on a network.
//!
//! Sending writes the frame into the port's own ring and rings the doorbell
//! of every reader that went to sleep. Receiving scans the rings of the
//! other ports, round-robin, from a private cursor per sender.
//!
//! Sleeping without losing a wake-up (the `armed` handshake):
//!
//! ```text
//! reader (found nothing)              sender
//!   armed = 1                           write frame, head += 1
//!   fence(SeqCst)                       fence(SeqCst)
//!   look at the rings again             if swap(armed, 0) == 1: ring
//! ```
//!
//! Either the reader's second look sees the frame, or the sender sees
//! `armed == 1` and rings; both may happen, never neither. The doorbell's
//! datagram stays in the socket until an empty receive drains it, so the fd
//! is readable while frames wait (level-triggered), and at most one extra
//! wake-up follows the last frame. `rings` counts doorbells, so an empty
//! receive knows without a system call whether there is anything to drain.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{Config, JoinOptions, Protocol};
use crate::doorbell::Doorbell;
use crate::error::{OpenError, RecvError, SendError};
use crate::files;
use crate::liveness;
use crate::membership::{self, Membership};
use crate::network::{open_shared, status_of, Network, Status};
use crate::ring::{self, Read};
use crate::shm::layout::*;
use crate::shm::SharedFile;
use crate::switch::MacTable;
use crate::sync::{fence, Ordering};

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
    /// Lossless: we may send while `head < space_limit` without looking.
    space_limit: u64,
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
        let path = path.as_ref();
        let file = files::open_shm(path, true)?;
        let shm = open_shared(path, file, true)?;
        Port::attach(path, shm, options)
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
                Err(OpenError::NotANetwork { .. })
                    if path.is_dir() && !files::shm_path(path).exists() => {}
                other => return other,
            }
            match Network::create(path, config) {
                Ok(_) | Err(OpenError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Port::join(path, options)
    }

    fn attach(path: &Path, shm: SharedFile, options: &JoinOptions) -> Result<Port, OpenError> {
        let index = claim_slot(&shm, path)?;
        let entry = shm.port(index);
        let generation = membership::generation(entry.state.load(Ordering::Acquire))
            .wrapping_add(1)
            & (u64::MAX >> 8);
        entry.state.store(
            membership::word(generation, STATE_JOINING),
            Ordering::SeqCst,
        );
        let bell = match Doorbell::bind(path, index) {
            Ok(bell) => bell,
            Err(e) => {
                entry
                    .state
                    .store(membership::word(generation, STATE_FREE), Ordering::SeqCst);
                return Err(files::io_error(&path.join(files::bell_name(index)), e));
            }
        };
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
            path: path.into(),
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
            space_limit: 0,
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
        self.space_limit = 0;
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

    fn sweep_dead(&mut self) {
        if membership::sweep_dead(&self.shm, Some(self.index)) > 0 {
            membership::wake_all(&self.shm, &mut self.bell, self.index);
        }
    }

    // ----- sending ----------------------------------------------------

    /// Sends a frame. On a lossless network waits until every live reader
    /// has room (never for a port that died or stopped reading).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.send_until(frame, Wait::Forever)
    }

    /// Sends a frame without waiting: on a lossless network a full reader
    /// gives [`SendError::WouldBlock`].
    pub fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.send_until(frame, Wait::Never)
    }

    /// Sends a frame, waiting at most `timeout` for room (lossless).
    pub fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_until(frame, Wait::Until(Instant::now() + timeout))
    }

    fn send_until(&mut self, frame: &[u8], wait: Wait) -> Result<(), SendError> {
        if self.caps & CAP_WRITE == 0 {
            return Err(SendError::NotWriting);
        }
        let mtu = self.shm.geometry().mtu;
        if frame.len() > mtu as usize {
            return Err(SendError::TooBig {
                len: frame.len(),
                mtu,
            });
        }
        if frame.is_empty() {
            return Err(SendError::Empty);
        }
        self.check_membership();
        if self.shm.geometry().lossless() && self.head >= self.space_limit {
            self.wait_for_space(wait)?;
        }
        let dst = match &self.switch {
            Some(table) => table.destination(&self.shm, frame),
            None => DST_ALL,
        };
        ring::write_frame(&self.shm, self.index, self.head, frame, dst);
        self.head = self.head.wrapping_add(1);
        self.counters.tx_frames = self.counters.tx_frames.wrapping_add(1);
        self.counters.tx_bytes = self.counters.tx_bytes.wrapping_add(frame.len() as u64);
        let entry = self.shm.port(self.index);
        entry
            .tx_frames
            .store(self.counters.tx_frames, Ordering::Relaxed);
        entry
            .tx_bytes
            .store(self.counters.tx_bytes, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // A reader that joined since our last look must be woken too.
        self.check_membership();
        if dst != DST_ALL && !self.shm.geometry().lossless() {
            // Only the addressee reads it. (Lossless: every reader must
            // still step over it, or its cursor would hold us back.)
            membership::wake(&self.shm, &mut self.bell, dst);
            return Ok(());
        }
        for i in 0..self.readers.len() {
            membership::wake(&self.shm, &mut self.bell, self.readers[i]);
        }
        Ok(())
    }

    /// Lossless: the lowest frame number some live reader still needs,
    /// plus the ring size, is how far we may write.
    fn compute_space_limit(&self) -> u64 {
        let slots = u64::from(self.shm.geometry().ring_slots);
        let mut limit = u64::MAX;
        for &reader in &self.readers {
            let entry = self.shm.port(reader);
            let word = entry.state.load(Ordering::Acquire);
            if membership::state(word) != STATE_ACTIVE
                || entry.caps.load(Ordering::Acquire) & CAP_READ == 0
            {
                continue;
            }
            let cursor = self
                .shm
                .cursor(reader, self.index)
                .load(Ordering::Acquire)
                .max(self.join_head)
                .min(self.head);
            limit = limit.min(cursor.saturating_add(slots));
        }
        limit
    }

    fn wait_for_space(&mut self, wait: Wait) -> Result<(), SendError> {
        let mut spins = 0u32;
        let mut next_death_check = Instant::now() + DEATH_CHECK_INTERVAL;
        loop {
            self.check_membership();
            self.space_limit = self.compute_space_limit();
            if self.head < self.space_limit {
                return Ok(());
            }
            match wait {
                Wait::Never => return Err(SendError::WouldBlock),
                Wait::Until(deadline) if Instant::now() >= deadline => {
                    return Err(SendError::TimedOut)
                }
                _ => {}
            }
            // Readers are making progress on other cores or need ours.
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else if spins < 256 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
            if Instant::now() >= next_death_check {
                self.sweep_dead();
                next_death_check = Instant::now() + DEATH_CHECK_INTERVAL;
            }
        }
    }

    // ----- receiving --------------------------------------------------

    /// Receives one frame without waiting: [`RecvError::WouldBlock`] if
    /// none is waiting. Frames longer than `buf` are truncated; a buffer of
    /// [`Port::mtu`] bytes never truncates. Returns the bytes copied.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        loop {
            if let Message::Frame(len) = self.try_recv_message(buf)? {
                return Ok(len);
            }
        }
    }

    /// [`Port::try_recv`] for callers that were just told by `poll` (or
    /// epoll, or QEMU's main loop) that the fd is readable: when nothing is
    /// waiting it also clears doorbells it could not account for (say, from
    /// a sender killed mid-ring), so the fd never stays readable while
    /// nothing waits. Before concluding that nothing waits, it yields the
    /// processor a few times, as [`Port::recv`] does before sleeping, so a
    /// streaming sender wakes this reader once per batch, not per frame.
    pub fn try_recv_after_poll(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.armed = false;
        match self.try_recv_message(buf) {
            Ok(Message::Frame(len)) => return Ok(len),
            Ok(Message::Membership(_)) | Err(RecvError::WouldBlock) => {}
            Err(e) => return Err(e),
        }
        if let Some(Message::Frame(len)) = self.yield_for_frames(buf) {
            return Ok(len);
        }
        self.try_recv(buf)
    }

    /// Yields the processor a few times, looking for a frame or event.
    fn yield_for_frames(&mut self, buf: &mut [u8]) -> Option<Message> {
        for _ in 0..YIELDS_BEFORE_SLEEP {
            std::thread::yield_now();
            if let Some(message) = self.poll_once(buf) {
                return Some(message);
            }
        }
        None
    }

    /// Receives one frame, waiting as long as it takes.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        loop {
            if let Message::Frame(len) = self.recv_message(buf, None)? {
                return Ok(len);
            }
        }
    }

    /// Receives one frame, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Message::Frame(len) = self.recv_message(buf, Some(left))? {
                return Ok(len);
            }
        }
    }

    /// Receives a frame or a membership event without waiting.
    pub fn try_recv_message(&mut self, buf: &mut [u8]) -> Result<Message, RecvError> {
        if self.caps & CAP_READ == 0 {
            return Err(RecvError::NotReading);
        }
        if let Some(message) = self.poll_once(buf) {
            return Ok(message);
        }
        if self.prepare_to_sleep() {
            // Look again after arming: a frame sent before the sender could
            // see `armed` is found here (see module docs).
            if let Some(message) = self.poll_once(buf) {
                self.disarm_after_finding();
                return Ok(message);
            }
        }
        Err(RecvError::WouldBlock)
    }

    /// Receives a frame or membership event, waiting at most `timeout`
    /// (`None`: forever).
    pub fn recv_message(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<Message, RecvError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // Before arming the doorbell, give a busy sender the processor a few
        // times: a streaming reader then wakes once per batch of frames
        // instead of making the sender ring for every frame.
        if self.caps & CAP_READ != 0 {
            if let Some(message) = self.poll_once(buf) {
                return Ok(message);
            }
            if let Some(message) = self.yield_for_frames(buf) {
                return Ok(message);
            }
        }
        loop {
            match self.try_recv_message(buf) {
                Err(RecvError::WouldBlock) => {}
                other => return other,
            }
            let mut wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if wait == Some(Duration::ZERO) {
                return Err(RecvError::TimedOut);
            }
            if self.events {
                wait = Some(wait.map_or(DEATH_CHECK_INTERVAL, |w| w.min(DEATH_CHECK_INTERVAL)));
            }
            self.publish_cursors();
            if self.wait_readable(wait)? {
                // Readable: the next empty receive must drain, even if the
                // doorbell came from a ringer that died before counting it.
                self.armed = false;
            } else if self.events {
                self.sweep_dead();
            }
        }
    }

    /// Waits for the doorbell; `Ok(true)` if the fd became readable.
    fn wait_readable(&self, wait: Option<Duration>) -> Result<bool, RecvError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let timeout = match wait {
            None => PollTimeout::NONE,
            Some(w) => {
                // Round up so a sub-millisecond wait does not spin.
                let ms = w.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(self.bell.fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(RecvError::Io(e.into())),
        }
    }

    /// One pass: a pending membership event, else one frame.
    fn poll_once(&mut self, buf: &mut [u8]) -> Option<Message> {
        self.check_membership();
        if self.event_pending && !self.frames_before_event() {
            if let Some(len) = self.read_any(buf) {
                return Some(Message::Frame(len));
            }
        }
        if self.event_pending {
            self.event_pending = false;
            return Some(Message::Membership(self.membership));
        }
        self.read_any(buf).map(Message::Frame)
    }

    /// Whether every frame sent before the pending event was read.
    fn frames_before_event(&self) -> bool {
        self.event_barrier
            .iter()
            .all(|&(sender, head)| (self.cursors[sender as usize].wrapping_sub(head) as i64) >= 0)
    }

    /// Reads the next frame from the senders, round-robin.
    fn read_any(&mut self, buf: &mut [u8]) -> Option<usize> {
        let count = self.senders.len();
        let lossless = self.shm.geometry().lossless();
        for k in 0..count {
            let i = (self.next_sender + k) % count;
            let sender = self.senders[i];
            let cursor = &mut self.cursors[sender as usize];
            loop {
                let me = self.switch.is_some().then_some(self.index);
                let read = ring::read_frame_for(&self.shm, sender, cursor, buf, me);
                if lossless && read != Read::Empty {
                    self.shm
                        .cursor(self.index, sender)
                        .store(*cursor, Ordering::Release);
                }
                match read {
                    Read::Frame { len, .. } => {
                        self.next_sender = i + 1;
                        if let (Some(table), Some(source)) = (&mut self.switch, buf.get(6..12)) {
                            let mut mac = [0u8; 6];
                            mac.copy_from_slice(source);
                            table.learn(&self.shm, mac, sender);
                        }
                        self.count_received(len);
                        return Some(len.min(buf.len()));
                    }
                    Read::Lapped { skipped } => {
                        // Saturating: a scribbled head can claim any loss.
                        self.counters.rx_dropped = self.counters.rx_dropped.saturating_add(skipped);
                        self.shm
                            .port(self.index)
                            .rx_dropped
                            .store(self.counters.rx_dropped, Ordering::Relaxed);
                    }
                    Read::NotForUs { source } => {
                        if let Some(table) = &mut self.switch {
                            table.learn(&self.shm, source, sender);
                        }
                    }
                    Read::Empty => break,
                }
            }
        }
        None
    }

    fn count_received(&mut self, len: usize) {
        self.counters.rx_frames = self.counters.rx_frames.wrapping_add(1);
        self.counters.rx_bytes = self.counters.rx_bytes.wrapping_add(len as u64);
        let entry = self.shm.port(self.index);
        entry
            .rx_frames
            .store(self.counters.rx_frames, Ordering::Relaxed);
        entry
            .rx_bytes
            .store(self.counters.rx_bytes, Ordering::Relaxed);
    }

    /// Found nothing: drain stale doorbells and arm. Returns whether we
    /// armed anew (then the caller must look at the rings once more).
    fn prepare_to_sleep(&mut self) -> bool {
        let entry = self.shm.port(self.index);
        let rings = entry.rings.load(Ordering::Acquire);
        if self.armed && entry.armed.load(Ordering::Acquire) == 1 && rings == self.seen_rings {
            return false; // Already armed, no doorbell since: nothing to do.
        }
        // While armed, every doorbell was counted after it was sent, so the
        // count says how many to drain; after a readable fd we had not
        // accounted for (`armed == false`), drain all.
        let expected = self.armed.then(|| rings.wrapping_sub(self.seen_rings));
        self.seen_rings = rings;
        self.bell.drain(expected);
        self.publish_cursors();
        membership::arm(entry);
        self.armed = true;
        true
    }

    /// Found a frame right after arming: nobody may ring for it, so keep
    /// the fd readable ourselves until an empty receive drains it.
    fn disarm_after_finding(&mut self) {
        let entry = self.shm.port(self.index);
        if membership::disarm(entry) {
            self.bell.ring(self.index);
            entry.rings.fetch_add(1, Ordering::Release);
        }
        self.armed = false;
    }
}

#[derive(Debug, Clone, Copy)]
enum Wait {
    Never,
    Until(Instant),
    Forever,
}

/// Takes a free port slot: first one marked free or dead, else one whose
/// owner died without anybody noticing yet. The lock decides.
fn claim_slot(shm: &SharedFile, path: &Path) -> Result<u32, OpenError> {
    let max_ports = shm.geometry().max_ports;
    for want_unclaimed in [true, false] {
        for index in 0..max_ports {
            let word = shm.port(index).state.load(Ordering::Acquire);
            if membership::claims_alive(word) == want_unclaimed {
                continue;
            }
            match liveness::try_lock(shm.file(), index) {
                Ok(true) => return Ok(index),
                Ok(false) => {}
                Err(e) => return Err(files::io_error(&files::shm_path(path), e)),
            }
        }
    }
    Err(OpenError::Full {
        path: path.into(),
        max_ports,
    })
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
