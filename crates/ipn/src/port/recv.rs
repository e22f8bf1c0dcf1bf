//! Receiving: read the rings of the senders that may have frames for us
//! (`pending`), round-robin; when they are empty, keep looking for a while
//! only if that pays (`pace`: frames closer together than a wake-up costs,
//! within a CPU budget, or busy polling opted in), then arm the doorbell
//! and sleep on it (`wake`).
//!
//! A blocking receive sleeps in one blocking `recv` of the doorbell
//! socket, which takes the doorbell as it wakes (one system call per
//! wake-up, as a blocking AF_UNIX `recv`).
//!
//! The fd is readable exactly while frames wait. The doorbell's datagram
//! stays in the socket until the receiver drains it: a receive after `poll`
//! ([`Port::try_recv_after_poll`]) also looks, after taking a frame,
//! whether another one waits, and if none does it drains and arms right
//! away, so that the caller's next `poll` sleeps instead of returning for
//! nothing. The exceptions, each at most one readiness: a look-ahead the
//! pace decided on keeps the fd readable (the next receive looks for its
//! frame); in switch mode a frame for another port looks like a waiting
//! frame; a doorbell nobody counted (our own, for a ring we could not
//! finish reading; or one a misbehaving member sent); a doorbell whose
//! ringer lost its CPU between counting and sending it for longer than a
//! drain waits for it ([`crate::doorbell::IN_FLIGHT_WAIT`]); a sender that
//! checks `armed` after the frame it rings for was taken (the handshake
//! lets both sides act). `rings` counts doorbells, so draining takes one
//! `recv` per doorbell, none to find out there are no more. A ringer
//! counts before it rings (see `wake`): a receiver woken by a doorbell
//! finds it counted, even when it runs before its ringer's `send` has
//! returned; a receiver that drains a doorbell counted, or owed by a claim
//! it saw, but not yet sent waits for it ([`Doorbells`]).
//!
//! All of it is [`Rx`]'s: the receiving half of a port, which owns the
//! doorbell (the pollable fd), the cursors, the pace and the membership
//! events, reads the port's [`Common`] part, and (switch mode) fills the
//! table the sending half looks destinations up in. [`Port`]'s and
//! [`PortReceiver`]'s receive methods hand the buffer to it.

use std::time::{Duration, Instant};

use super::pace::{self, Moment};
use super::{Common, Context, Message, Port, PortReceiver, DEATH_CHECK_INTERVAL, VNET_HDR_LEN};
use crate::error::RecvError;
use crate::ethernet::TAG_LEN;
use crate::membership::{self, Membership};
use crate::offload::{self, HdrLayout};
use crate::pending::{self, ScanSet};
use crate::ring::{self, Read};
use crate::shm::layout::*;
use crate::shm::SharedFile;
use crate::switch;
use crate::sync::Ordering;
use crate::wake::{self, Bell, PortBell, Ring, Woken};

/// Longest a blocking receive sleeps before looking at the rings again,
/// even without a doorbell: a member may scribble our `armed` word so that
/// no sender rings, and we then find the frames late, not never.
const LONGEST_SLEEP: Duration = Duration::from_secs(1);

/// A lossless receiver that keeps receiving republishes every cursor (to
/// heal one a peer scribbled on) at least every this many sleeps.
const HEAL_EVERY: u32 = 16;

/// Most reads of one sender's ring that may return no frame in one call:
/// a consistent ring holds at most `ring_slots` frames to step over, plus
/// one jump forward when lapped.
fn steps_per_sender(ring_slots: u32) -> u32 {
    ring_slots.saturating_mul(4).saturating_add(64)
}

/// The receiving half of a port: the doorbell, the cursors, and
/// everything only receiving uses.
#[derive(Debug)]
pub(super) struct Rx {
    /// The doorbell senders ring: the port's pollable fd. Rings this port
    /// itself, or everyone after a dead port was found.
    pub(super) bell: PortBell,
    /// Membership epoch of `membership` and of the scan set's last
    /// refresh.
    epoch: u64,
    /// The reader and writer counts.
    membership: Membership,
    /// Next frame wanted from each slot's ring, for every slot: rings are
    /// continuous across the slot's occupants, so `cursor..head` is exactly
    /// what was sent there since we joined, even by a port that has left.
    cursors: Vec<u64>,
    /// Senders whose rings are worth reading (see `pending`).
    scan: ScanSet,
    next_sender: u32,
    /// What we know of the doorbells queued at our socket.
    doorbells: Doorbells,
    /// The `rings` count up to which doorbells are drained (or taken, or
    /// owed by a claim and drained before their count showed).
    seen_rings: u64,
    /// The last drain came up short even after waiting: the next one takes
    /// all that are queued, whatever the count says.
    drain_all_next: bool,
    pace: pace::Pace,
    /// A look-ahead decided after the last frame: when it started, and
    /// until when the next receive keeps looking.
    look_ahead: Option<(Moment, Moment)>,
    frames: u64,
    /// `frames` when we last armed, and how many times we armed since we
    /// last published every cursor (see `heal_cursors`).
    frames_at_arm: u64,
    arms_since_heal: u32,
    bytes: u64,
    dropped: u64,
    /// A frame with a header, read whole to be cut for us.
    gso_buf: Vec<u8>,
    /// The wire frames cut from it, still to be received: `gso_buf` is
    /// not read into while one waits.
    segments: offload::Segments,
    pub(super) events: Events,
}

/// What a receiver knows of the doorbells queued at its socket, for the
/// next drain (`prepare_to_sleep`). Wakers count a doorbell before they
/// send it; a drain waits, briefly, for doorbells counted but not yet
/// queued (`Bell::drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doorbells {
    /// We armed: every doorbell since is counted. If a waker claimed the
    /// arming (`armed` is 0 now), it owes one, counted or about to be.
    Armed,
    /// A waker claimed our arming as we found its frame ourselves: its
    /// doorbell is ours to drain, whether or not its count shows yet.
    Claimed,
    /// Every doorbell is counted, and none owed beyond the count.
    Counted,
    /// The fd was readable for doorbells we may not have counted: the next
    /// drain takes all that are queued.
    Unknown,
}

/// Membership events for the receiver.
#[derive(Debug, Default)]
pub(super) struct Events {
    pub(super) enabled: bool,
    pub(super) pending: bool,
    /// Heads of the rings when the pending event was noticed: frames sent
    /// before a membership change are delivered before the event.
    barrier: Vec<(u32, u64)>,
}

impl Port {
    /// Receives one frame without waiting: [`RecvError::WouldBlock`] if
    /// none is waiting. Frames longer than `buf` are truncated; a buffer of
    /// [`Port::max_frame`] bytes never truncates. Returns the bytes copied.
    #[inline]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.receiver().try_recv(buf)
    }

    /// [`Port::try_recv`] for callers that were just told by `poll` (or
    /// epoll, or QEMU's main loop) that the fd is readable, and call it
    /// once per readiness. It takes one frame, and leaves the fd readable
    /// exactly while more frames wait: when none does, it drains the
    /// doorbell and arms before returning, so the next `poll` sleeps. When
    /// nothing is waiting, it keeps looking only as the pace says (module
    /// docs), and before giving up it clears doorbells it could not account
    /// for (say, from a sender killed mid-ring), so the fd never stays
    /// readable while nothing waits.
    #[inline]
    pub fn try_recv_after_poll(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.receiver().try_recv_after_poll(buf)
    }

    /// [`Port::try_recv`] for callers that, finding nothing, go on to wait
    /// with [`Port::recv`] or [`Port::recv_timeout`] (say, after releasing
    /// a lock they hold only while not waiting): it takes a frame that is
    /// waiting, and finding none it leaves everything as it was: it neither
    /// arms the doorbell (senders would ring for the frames the wait then
    /// looks ahead for) nor looks ahead itself, nor reads the clock. Not
    /// for callers that sleep in `poll` after it: only a receive that
    /// found nothing after arming makes the fd sleep.
    #[inline]
    pub fn try_recv_before_wait(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.receiver().try_recv_before_wait(buf)
    }

    /// Receives one frame, waiting as long as it takes.
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.receiver().recv(buf)
    }

    /// Receives one frame, waiting at most `timeout`.
    #[inline]
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        self.receiver().recv_timeout(buf, timeout)
    }

    /// Receives a frame or a membership event without waiting.
    #[inline]
    pub fn try_recv_message(&mut self, buf: &mut [u8]) -> Result<Message, RecvError> {
        self.receiver().try_recv_message(buf)
    }

    /// Receives a frame or membership event, waiting at most `timeout`
    /// (`None`: forever).
    #[inline]
    pub fn recv_message(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<Message, RecvError> {
        self.receiver().recv_message(buf, timeout)
    }
}

impl PortReceiver<'_> {
    /// [`Port::try_recv`].
    #[inline]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.rx.try_recv(&mut self.cx, buf)
    }

    /// [`Port::try_recv_after_poll`].
    #[inline]
    pub fn try_recv_after_poll(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.rx.try_recv_after_poll(&mut self.cx, buf)
    }

    /// [`Port::try_recv_before_wait`].
    #[inline]
    pub fn try_recv_before_wait(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.rx.try_recv_before_wait(&mut self.cx, buf)
    }

    /// [`Port::recv`].
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.rx.recv(&mut self.cx, buf)
    }

    /// [`Port::recv_timeout`].
    #[inline]
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        self.rx.recv_timeout(&mut self.cx, buf, timeout)
    }

    /// [`Port::try_recv_message`].
    #[inline]
    pub fn try_recv_message(&mut self, buf: &mut [u8]) -> Result<Message, RecvError> {
        self.rx.try_recv_message(&mut self.cx, buf)
    }

    /// [`Port::recv_message`].
    #[inline]
    pub fn recv_message(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<Message, RecvError> {
        self.rx.recv_message(&mut self.cx, buf, timeout)
    }

    /// [`Port::max_frame`]: a buffer this long never truncates.
    pub fn max_frame(&self) -> usize {
        self.cx.port.max_frame()
    }
}

#[cfg(not(loom))]
impl std::os::fd::AsFd for PortReceiver<'_> {
    /// The doorbell socket: readable while frames wait for this port.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.rx.bell.fd()
    }
}

#[cfg(not(loom))]
impl std::os::fd::AsRawFd for PortReceiver<'_> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.rx.bell.raw_fd()
    }
}

impl Rx {
    /// The receiving half of port `index` of `shm`: reads what is sent
    /// from now on (every ring's current head), armed, so that the fd
    /// becomes readable with the first frame.
    pub(super) fn new(port: &Common, bell: PortBell, busy_poll: Duration) -> Rx {
        let shm = &port.shm;
        let cursors = (0..shm.geometry().max_ports)
            .map(|index| shm.port(index).head.load(Ordering::Acquire))
            .collect();
        let rx = Rx {
            bell,
            epoch: 0,
            membership: Membership::default(),
            cursors,
            scan: ScanSet::new(shm.geometry().max_ports),
            next_sender: 0,
            doorbells: Doorbells::Armed,
            drain_all_next: false,
            seen_rings: shm.port(port.index).rings.load(Ordering::Acquire),
            pace: pace::Pace::new(busy_poll),
            look_ahead: None,
            frames: 0,
            frames_at_arm: 0,
            arms_since_heal: 0,
            bytes: 0,
            dropped: 0,
            gso_buf: Vec::new(),
            segments: offload::Segments::new(),
            events: Events::default(),
        };
        rx.publish_cursors(port);
        rx
    }

    /// Lossless: tells the senders how far we have read, for every ring.
    /// Each read publishes its own cursor (`read_from`), so this only heals
    /// a cursor word a peer scribbled on, which could block a sender: done
    /// when joining, after a wait that timed out, and when about to sleep
    /// after a wake-up that found nothing (a sender waiting for room rings
    /// with its frames) or every [`HEAL_EVERY`]th time. Before every sleep
    /// it was a quarter of the receive's instructions (callgrind: 645 of
    /// 2 214 for a receive after `poll`, 64 ports).
    fn publish_cursors(&self, port: &Common) {
        if !port.shm.geometry().lossless() {
            return;
        }
        let row = port.shm.cursors(port.index);
        for (index, (published, &cursor)) in row.iter().zip(&self.cursors).enumerate() {
            if index as u32 != port.index && published.load(Ordering::Relaxed) != cursor {
                published.store(cursor, Ordering::Release);
            }
        }
    }

    /// The reader and writer counts, as of now.
    pub(super) fn membership(&mut self, cx: &mut Context<'_>) -> Membership {
        self.check_membership(cx);
        self.membership
    }

    #[inline]
    fn check_membership(&mut self, cx: &mut Context<'_>) {
        if cx.port.epoch() != self.epoch {
            self.refresh_membership(cx);
        }
    }

    /// Looks once at every ring that may hold frames for us (live writers,
    /// rings with frames unread): a sender that joined may have sent
    /// before it knew of us. Recounts the members (an event, if asked
    /// for), and forgets learned addresses of ports that left.
    pub(super) fn refresh_membership(&mut self, cx: &mut Context<'_>) {
        let port = cx.port;
        self.epoch = port.epoch();
        for index in 0..port.shm.geometry().max_ports {
            if index == port.index {
                continue;
            }
            let entry = port.shm.port(index);
            let word = entry.state.load(Ordering::Acquire);
            let caps = entry.caps.load(Ordering::Acquire);
            let alive_writer = membership::claims_alive(word) && caps & CAP_WRITE != 0;
            let unread = entry.head.load(Ordering::Acquire) != self.cursors[index as usize];
            if alive_writer || unread {
                self.scan.insert(index);
            }
        }
        self.bell.keep_connected(&port.live_readers());
        if let Some(table) = &mut cx.switch {
            table.with(|table| table.forget_departed(&port.shm));
        }
        let counts = membership::counts(&port.shm);
        if counts != self.membership {
            self.membership = counts;
            self.events.pending = self.events.enabled;
            if self.events.enabled {
                self.events.barrier = (0..port.shm.geometry().max_ports)
                    .filter(|&s| s != port.index)
                    .map(|s| (s, port.shm.port(s).head.load(Ordering::Acquire)))
                    .filter(|&(s, head)| head != self.cursors[s as usize])
                    .collect();
            }
        }
    }

    /// Marks dead ports as dead and wakes everyone to see it (as
    /// [`Port::sweep_dead`], with the doorbell's own ringer).
    fn sweep_dead(&mut self, port: &Common) {
        if membership::sweep_dead(&port.shm, Some(port.index)) > 0 {
            wake::wake_all(&port.shm, &mut self.bell, port.index);
        }
    }
}

/// Whether `port` may receive now: it joined to read, and the network
/// has not been found damaged.
#[inline]
fn readable(port: &Common) -> Result<(), RecvError> {
    if port.caps & CAP_READ == 0 {
        return Err(RecvError::NotReading);
    }
    port.check_damage()
        .map_err(|path| RecvError::Damaged { path })
}

impl Rx {
    /// See [`Port::try_recv`].
    pub(super) fn try_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Result<usize, RecvError> {
        loop {
            if let Message::Frame(len) = self.try_recv_message(cx, buf)? {
                return Ok(len);
            }
        }
    }

    /// See [`Port::try_recv_before_wait`].
    pub(super) fn try_recv_before_wait(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Result<usize, RecvError> {
        readable(cx.port)?;
        // Membership events are not for this caller: skip them, as
        // `try_recv` does.
        loop {
            match self.poll_once(cx, buf) {
                Some(Message::Frame(len)) => return Ok(len),
                Some(Message::Membership(_)) => {}
                None => return Err(RecvError::WouldBlock),
            }
        }
    }

    /// See [`Port::try_recv_after_poll`].
    pub(super) fn try_recv_after_poll(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Result<usize, RecvError> {
        let port = cx.port;
        readable(port)?;
        // Look, and keep looking, all before arming: arming first would
        // make the sender ring for the very frames we wait for.
        while let Some(message) = self.look_for_frames(cx, buf) {
            if let Message::Frame(len) = message {
                self.settle_readiness(cx);
                return Ok(len);
            }
        }
        // Nothing: drain every doorbell, counted or not, arm, look once more.
        self.doorbells = Doorbells::Unknown;
        let len = self.try_recv(cx, buf)?;
        self.settle_readiness(cx);
        Ok(len)
    }

    /// After taking a frame for a caller that polls: if nothing else
    /// waits, and the pace does not expect a frame before a wake-up would
    /// pay off, drain the doorbell and arm now, so that the fd is not
    /// readable for nothing. A frame that came just as we armed keeps the
    /// fd readable (`disarm_after_finding`).
    fn settle_readiness(&mut self, cx: &mut Context<'_>) {
        let port = cx.port;
        if self.frames_waiting(cx) {
            return;
        }
        let now = Moment::now();
        if let Some(until) = self.pace.keep_looking_until(now) {
            // The next receive (the fd is still readable) looks until then.
            self.look_ahead = Some((now, until));
            return;
        }
        if self.prepare_to_sleep(port) && self.frames_waiting(cx) {
            self.disarm_after_finding(port);
        }
    }

    /// Whether a frame or event may wait for us, without taking it: a
    /// sender we scan has a ring head past our cursor. In switch mode that
    /// frame may be for another port (then the next receive finds
    /// nothing and drains).
    fn frames_waiting(&mut self, cx: &mut Context<'_>) -> bool {
        let port = cx.port;
        self.check_membership(cx);
        if !self.segments.is_empty() || self.events.pending {
            return true;
        }
        let cursors = &self.cursors;
        self.scan.gather_any(&port.shm, port.index, |sender| {
            sender != port.index
                && cursors.get(sender as usize).is_some_and(|&cursor| {
                    port.shm.port(sender).head.load(Ordering::Acquire) != cursor
                })
        })
    }

    /// Looks for a frame (or event) now, and again, yielding the processor
    /// in between, for as long as the pace says one is due (a look-ahead
    /// decided when the last frame was taken, or now).
    fn look_for_frames(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Option<Message> {
        let decided = self.look_ahead.take();
        if let Some(message) = self.poll_once(cx, buf) {
            if let Some((started, _)) = decided {
                self.pace.looked(started, Moment::now(), true);
            }
            return Some(message);
        }
        let (started, until) = match decided {
            Some(look) => look,
            None => {
                let now = Moment::now();
                (now, self.pace.keep_looking_until(now)?)
            }
        };
        loop {
            std::thread::yield_now();
            let found = self.poll_once(cx, buf);
            let now = Moment::now();
            if found.is_some() || now >= until {
                self.pace.looked(started, now, found.is_some());
                return found;
            }
        }
    }

    /// See [`Port::recv`].
    pub(super) fn recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Result<usize, RecvError> {
        loop {
            if let Message::Frame(len) = self.recv_message(cx, buf, None)? {
                return Ok(len);
            }
        }
    }

    /// See [`Port::recv_timeout`].
    pub(super) fn recv_timeout(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Message::Frame(len) = self.recv_message(cx, buf, Some(left))? {
                return Ok(len);
            }
        }
    }

    /// See [`Port::try_recv_message`].
    pub(super) fn try_recv_message(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Result<Message, RecvError> {
        let port = cx.port;
        readable(port)?;
        if let Some(message) = self.poll_once(cx, buf) {
            return Ok(message);
        }
        if self.prepare_to_sleep(port) {
            // Look again after arming: a frame sent before the sender could
            // see `armed` is found here (see `wake` and `pending`).
            if let Some(message) = self.poll_once(cx, buf) {
                self.disarm_after_finding(port);
                return Ok(message);
            }
        }
        Err(RecvError::WouldBlock)
    }

    /// See [`Port::recv_message`].
    pub(super) fn recv_message(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<Message, RecvError> {
        let port = cx.port;
        let deadline = timeout.map(|t| Instant::now() + t);
        if port.caps & CAP_READ != 0 {
            port.check_damage()
                .map_err(|path| RecvError::Damaged { path })?;
            // Before arming the doorbell, keep looking while frames are
            // due: a streaming reader then wakes once per pause in the
            // stream instead of making the sender ring for every frame.
            if let Some(message) = self.look_for_frames(cx, buf) {
                return Ok(message);
            }
        }
        loop {
            match self.try_recv_message(cx, buf) {
                Err(RecvError::WouldBlock) => {}
                other => return other,
            }
            let mut wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if wait == Some(Duration::ZERO) {
                return Err(RecvError::TimedOut);
            }
            let longest = if self.events.enabled {
                DEATH_CHECK_INTERVAL
            } else {
                LONGEST_SLEEP
            };
            wait = Some(wait.map_or(longest, |w| w.min(longest)));
            let asleep = Moment::now();
            let woken = self.bell.wait(wait).map_err(RecvError::Io)?;
            self.pace.slept(Moment::now() - asleep);
            if woken == Woken::TookOne {
                // The wait took the doorbell of the claim on our arming:
                // one fewer to drain, none owed. If nobody counted it, our
                // count is one ahead and the next drain, seeing no sensible
                // count, drains all.
                self.seen_rings = self.seen_rings.wrapping_add(1);
                self.doorbells = Doorbells::Counted;
            } else if woken == Woken::Readable {
                // Readable: the next empty receive must drain, even if
                // nobody counted the doorbell.
                self.doorbells = Doorbells::Unknown;
            } else {
                // No doorbell: look at every live writer, whatever the
                // pending bits say (they may have been scribbled on), and
                // heal our published cursors.
                self.publish_cursors(port);
                self.refresh_membership(cx);
                if self.events.enabled {
                    self.sweep_dead(port);
                }
            }
        }
    }

    /// One pass: a pending membership event, else one frame (first those
    /// cut from a frame with offloads, then from the rings).
    fn poll_once(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Option<Message> {
        let port = cx.port;
        if !self.segments.is_empty() {
            if let Some(len) = self.segments.pop_into(&self.gso_buf, buf) {
                // Truncated to `buf`, as any frame is.
                let len = len.min(buf.len());
                self.count_received(port, len);
                return Some(Message::Frame(len));
            }
        }
        self.check_membership(cx);
        if self.events.pending && !self.frames_before_event() {
            if let Some(len) = self.read_any(cx, buf) {
                return Some(Message::Frame(len));
            }
        }
        if self.events.pending {
            self.events.pending = false;
            return Some(Message::Membership(self.membership));
        }
        self.read_any(cx, buf).map(Message::Frame)
    }

    /// Whether every frame sent before the pending event was read.
    fn frames_before_event(&self) -> bool {
        self.events
            .barrier
            .iter()
            .all(|&(sender, head)| (self.cursors[sender as usize].wrapping_sub(head) as i64) >= 0)
    }

    /// Reads the next frame from the senders that may have some for us,
    /// round-robin.
    ///
    /// Bounded whatever the shared file says: each sender gets at most
    /// [`steps_per_sender`] reads that return no frame (lapped, or a frame
    /// for another port) per call. A consistent ring never needs that many;
    /// if a scribbled one does, the port rings its own doorbell so that it
    /// looks again instead of sleeping on frames it did not reach.
    fn read_any(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Option<usize> {
        let port = cx.port;
        self.scan.gather(&port.shm, port.index);
        let budget = steps_per_sender(port.shm.geometry().ring_slots);
        // Once round the set from `start`: senders come in ascending order
        // until the walk wraps past the last port; it stops where it began,
        // or at a second wrap (every member left is below `start`).
        // (Counting the set first cost more than the rest of this.)
        let start = if (self.next_sender as usize) < self.cursors.len() {
            self.next_sender
        } else {
            0
        };
        let mut from = start;
        let mut wrapped = false;
        loop {
            let sender = self.scan.next_from(from)?;
            if sender < from {
                if wrapped {
                    return None;
                }
                wrapped = true;
            }
            if wrapped && sender >= start {
                return None;
            }
            from = sender.wrapping_add(1);
            if sender == port.index {
                continue;
            }
            if let Some(len) = self.read_from(cx, sender, budget, buf) {
                self.next_sender = from;
                return Some(len);
            }
            // Empty. Without its pending bit, the sender marks its next
            // frame: stop scanning it till then (idle writers cost nothing).
            if !pending::is_marked(&port.shm, port.index, sender) {
                self.scan.remove(sender);
            }
        }
    }

    /// Reads `sender`'s ring until a frame for us, or nothing, or `budget`
    /// reads without a frame.
    ///
    /// A plain frame (on a hub, to a port that takes no offloads: nothing
    /// to learn, no header to cut or write) is delivered here; everything
    /// else (switch mode learns each frame's source; frames with offloads;
    /// losses) is [`Rx::deliver_other`]'s, out of line, so that the plain
    /// path stays short. Not marked cold: switch-mode and offload ports
    /// take every frame through it.
    fn read_from(
        &mut self,
        cx: &mut Context<'_>,
        sender: u32,
        budget: u32,
        buf: &mut [u8],
    ) -> Option<usize> {
        let port = cx.port;
        let lossless = port.shm.geometry().lossless();
        let plain = cx.switch.is_none() && !port.offload;
        let filter = ring::Filter {
            me: cx.switch.is_some().then_some(port.index),
            vlan: &port.vlan,
            offload: port.offload,
        };
        // A port that takes offloads gets a header, then the frame.
        let header = if port.offload {
            VNET_HDR_LEN.min(buf.len())
        } else {
            0
        };
        for _ in 0..budget {
            let cursor = self.cursors.get_mut(sender as usize)?;
            let out = &mut buf[header..];
            let read =
                ring::read_frame_for(&port.shm, sender, cursor, out, &mut self.gso_buf, filter);
            if lossless && !matches!(read, Read::Empty) {
                port.shm
                    .cursor(port.index, sender)
                    .store(*cursor, Ordering::Release);
            }
            match read {
                Read::Frame {
                    len,
                    in_gso_buf: false,
                    ..
                } if plain => {
                    self.count_received(port, len);
                    return Some(len.min(buf.len()));
                }
                Read::Empty => return None,
                read => {
                    if let Some(len) = self.deliver_other(cx, sender, &read, header, buf) {
                        return Some(len);
                    }
                }
            }
        }
        self.bell.ring(port.index);
        None
    }

    /// What [`Rx::read_from`] does with a read other than a plain frame or
    /// nothing: learns where a frame's source lives (switch mode), cuts a
    /// frame with offloads into wire frames, writes the header for a port
    /// that takes offloads, counts what is lost. Returns the bytes of a
    /// frame delivered into `buf`, or `None` to read on.
    #[inline(never)]
    fn deliver_other(
        &mut self,
        cx: &mut Context<'_>,
        sender: u32,
        read: &Read,
        header: usize,
        buf: &mut [u8],
    ) -> Option<usize> {
        let port = cx.port;
        // Matched by reference: the header is read only where a port
        // with offloads uses it, not copied out of the result for every
        // frame (a copy that stalled on store forwarding).
        match read {
            &Read::Frame {
                len,
                tag,
                tagged,
                ref hdr,
                in_gso_buf,
            } => {
                // The longest wire frame this one may be, or stand for.
                let wire_mtu = port.shm.geometry().mtu as usize + if tagged { TAG_LEN } else { 0 };
                let frame: &[u8] = if in_gso_buf {
                    &self.gso_buf[..len]
                } else {
                    &buf[header..]
                };
                if let (Some(table), Some(source)) = (&mut cx.switch, frame.get(6..12)) {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(source);
                    let vlan = switch::vlan_key(tag);
                    table.with(|table| table.learn(&port.shm, vlan, mac, sender));
                }
                if in_gso_buf {
                    // Cut it into the wire frames it stands for.
                    let hdr = hdr.unwrap_or_default();
                    let (segments, frame) = (&mut self.segments, &self.gso_buf[..len]);
                    let cut = segments.start(&hdr, frame, wire_mtu);
                    let first = cut.ok().and_then(|_| segments.pop_into(frame, buf));
                    return match first.map(|n| n.min(buf.len())) {
                        Some(n) => {
                            self.count_received(port, n);
                            Some(n)
                        }
                        None => {
                            // A header that does not describe its
                            // frame: the frame cannot be delivered.
                            count_lost(&mut self.dropped, &port.shm, port.index, 1);
                            None
                        }
                    };
                }
                if port.offload {
                    let hdr = hdr.unwrap_or_default();
                    // A GSO frame whose segments would exceed the MTU
                    // (a sender refuses it; any member can write any
                    // descriptor) is not delivered. Checked when the
                    // buffer holds the whole frame.
                    let whole = buf.get(header..header + len);
                    if hdr.is_gso()
                        && whole.is_some_and(|f| offload::check(&hdr, f, wire_mtu).is_err())
                    {
                        count_lost(&mut self.dropped, &port.shm, port.index, 1);
                        return None;
                    }
                    let _ = hdr.write(&mut buf[..header], HdrLayout::Basic);
                }
                self.count_received(port, len);
                Some((header + len).min(buf.len()))
            }
            &Read::Lapped { skipped } => {
                count_lost(&mut self.dropped, &port.shm, port.index, skipped);
                None
            }
            Read::OverMtu => {
                count_lost(&mut self.dropped, &port.shm, port.index, 1);
                None
            }
            &Read::NotForUs { source, tag } => {
                // Frames are coming, if not for us: stay awake to step
                // over them (a lossless sender waits for our cursor).
                self.pace.frame();
                if let Some(table) = &mut cx.switch {
                    let vlan = switch::vlan_key(tag);
                    table.with(|table| table.learn(&port.shm, vlan, source, sender));
                }
                None
            }
            Read::Empty => None,
        }
    }

    fn count_received(&mut self, port: &Common, len: usize) {
        self.pace.frame();
        self.frames = self.frames.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(len as u64);
        let entry = port.shm.port(port.index);
        entry.rx_frames.store(self.frames, Ordering::Relaxed);
        entry.rx_bytes.store(self.bytes, Ordering::Relaxed);
    }

    /// Found nothing: drain stale doorbells, take the pending bits, and
    /// arm. Returns whether we armed anew (then the caller must look at the
    /// rings once more).
    fn prepare_to_sleep(&mut self, port: &Common) -> bool {
        let entry = port.shm.port(port.index);
        let rings = entry.rings.load(Ordering::Acquire);
        let claimed = match self.doorbells {
            _ if self.drain_all_next => false,
            Doorbells::Armed => {
                let still_armed = entry.armed.load(Ordering::Acquire) == 1;
                if still_armed && rings == self.seen_rings {
                    return false; // Already armed, no doorbell since: nothing to do.
                }
                !still_armed
            }
            Doorbells::Claimed => true,
            Doorbells::Counted | Doorbells::Unknown => false,
        };
        // Every doorbell is counted before it is sent, so the count says how
        // many to drain (one still on its way is waited for, briefly:
        // `Bell::drain`). A claim on our arming owes one more if its count
        // does not show yet (its waker swapped `armed`, then counts): drain
        // it now, and count it as seen. After a readable fd we could not
        // account for, the count if doorbells were counted since (one
        // nobody counted then keeps the fd readable, and the empty receive
        // that follows drains all), else all.
        let counted = rings.wrapping_sub(self.seen_rings);
        let expected = if counted > u64::from(u32::MAX) || self.drain_all_next {
            None // Not a count any waker made, or a drain came up short.
        } else if claimed {
            Some(counted.max(1))
        } else if counted == 0 && self.doorbells == Doorbells::Unknown {
            None
        } else {
            Some(counted)
        };
        let drained = self.bell.drain(expected);
        // Short even after waiting (a waker lost its CPU between counting
        // and sending, or died; or the count was scribbled on): the late
        // doorbell makes the fd readable once, and the receive that
        // follows drains all. Never wait for a count again.
        self.drain_all_next = expected.is_some_and(|n| drained < n);
        self.seen_rings = match expected {
            Some(n) if drained == n => self.seen_rings.wrapping_add(n),
            _ => rings,
        };
        self.heal_cursors(port);
        // Every sender we scan was just found empty: from now on, scan only
        // those that mark their bit again (they may have raced us: the look
        // after arming reads them).
        self.scan.take(&port.shm, port.index);
        wake::arm(entry);
        self.doorbells = Doorbells::Armed;
        true
    }

    /// About to sleep: republish every cursor if this wake-up found no
    /// frame, or every [`HEAL_EVERY`]th time (see `publish_cursors`).
    fn heal_cursors(&mut self, port: &Common) {
        self.arms_since_heal += 1;
        if self.frames == self.frames_at_arm || self.arms_since_heal >= HEAL_EVERY {
            self.publish_cursors(port);
            self.arms_since_heal = 0;
        }
        self.frames_at_arm = self.frames;
    }

    /// Found a frame right after arming: nobody may ring for it, so keep
    /// the fd readable ourselves until an empty receive drains it. If a
    /// waker claimed the arming first, it rings instead.
    fn disarm_after_finding(&mut self, port: &Common) {
        let entry = port.shm.port(port.index);
        self.doorbells = if wake::disarm(entry) {
            entry.rings.fetch_add(1, Ordering::Release);
            self.bell.ring(port.index);
            Doorbells::Counted
        } else {
            Doorbells::Claimed
        };
    }
}

/// Counts `frames` port `index` will never get (lapped, or undeliverable)
/// in `dropped` and its shared counter.
fn count_lost(dropped: &mut u64, shm: &SharedFile, index: u32, frames: u64) {
    // Saturating: a scribbled head can claim any loss.
    *dropped = dropped.saturating_add(frames);
    shm.port(index)
        .rx_dropped
        .store(*dropped, Ordering::Relaxed);
}
