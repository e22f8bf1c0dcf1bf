//! Receiving: read the other rings round-robin; when they are empty, arm
//! the doorbell and sleep on it.
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

use std::time::{Duration, Instant};

use super::{Message, Port, DEATH_CHECK_INTERVAL, YIELDS_BEFORE_SLEEP};

/// Longest a blocking receive sleeps before looking at the rings again,
/// even without a doorbell.
const LONGEST_SLEEP: Duration = Duration::from_secs(1);
use crate::error::RecvError;
use crate::membership;
use crate::ring::{self, Read};
use crate::shm::layout::*;
use crate::sync::Ordering;

/// Most reads of one sender's ring that may return no frame in one call:
/// a consistent ring holds at most `ring_slots` frames to step over, plus
/// one jump forward when lapped.
fn steps_per_sender(ring_slots: u32) -> u32 {
    ring_slots.saturating_mul(4).saturating_add(64)
}

impl Port {
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
        if self.caps & CAP_READ == 0 {
            return Err(RecvError::NotReading);
        }
        self.check_damage()
            .map_err(|path| RecvError::Damaged { path })?;
        // Look, then yield and look again, all before arming: arming first
        // would make the sender ring for the very frames we wait for.
        while let Some(message) = self.poll_once(buf) {
            if let Message::Frame(len) = message {
                return Ok(len);
            }
        }
        if let Some(Message::Frame(len)) = self.yield_for_frames(buf) {
            return Ok(len);
        }
        // Nothing: drain every doorbell, counted or not, arm, look once more.
        self.armed = false;
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
        self.check_damage()
            .map_err(|path| RecvError::Damaged { path })?;
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
            self.check_damage()
                .map_err(|path| RecvError::Damaged { path })?;
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
            // Never sleep unboundedly: a member may scribble our `armed`
            // word so that no sender rings; we then find the frames late,
            // not never.
            let longest = if self.events {
                DEATH_CHECK_INTERVAL
            } else {
                LONGEST_SLEEP
            };
            wait = Some(wait.map_or(longest, |w| w.min(longest)));
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
    ///
    /// Bounded whatever the shared file says: each sender gets at most
    /// [`steps_per_sender`] reads that return no frame (lapped, or a frame
    /// for another port) per call. A consistent ring never needs that many;
    /// if a scribbled one does, the port rings its own doorbell so that it
    /// looks again instead of sleeping on frames it did not reach.
    fn read_any(&mut self, buf: &mut [u8]) -> Option<usize> {
        let count = self.senders.len();
        let lossless = self.shm.geometry().lossless();
        let budget = steps_per_sender(self.shm.geometry().ring_slots);
        for k in 0..count {
            let i = (self.next_sender + k) % count;
            let sender = self.senders[i];
            let cursor = &mut self.cursors[sender as usize];
            let mut steps = 0;
            loop {
                if steps == budget {
                    self.bell.ring(self.index);
                    break;
                }
                steps += 1;
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
