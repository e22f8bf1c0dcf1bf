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
//! frame; a doorbell from a ringer that died before counting it. `rings`
//! counts doorbells, so draining takes one `recv` per doorbell, none to
//! find out there are no more.

use std::time::{Duration, Instant};

use super::{Message, Port, DEATH_CHECK_INTERVAL, VNET_HDR_LEN};
use crate::error::RecvError;
use crate::ethernet::TAG_LEN;
use crate::offload::{self, HdrLayout};
use crate::pending;
use crate::ring::{self, Read};
use crate::shm::layout::*;
use crate::shm::SharedFile;
use crate::switch;
use crate::sync::Ordering;
use crate::wake::{self, Bell, Woken};

/// Longest a blocking receive sleeps before looking at the rings again,
/// even without a doorbell: a member may scribble our `armed` word so that
/// no sender rings, and we then find the frames late, not never.
const LONGEST_SLEEP: Duration = Duration::from_secs(1);

/// Most reads of one sender's ring that may return no frame in one call:
/// a consistent ring holds at most `ring_slots` frames to step over, plus
/// one jump forward when lapped.
fn steps_per_sender(ring_slots: u32) -> u32 {
    ring_slots.saturating_mul(4).saturating_add(64)
}

impl Port {
    /// Receives one frame without waiting: [`RecvError::WouldBlock`] if
    /// none is waiting. Frames longer than `buf` are truncated; a buffer of
    /// [`Port::max_frame`] bytes never truncates. Returns the bytes copied.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        loop {
            if let Message::Frame(len) = self.try_recv_message(buf)? {
                return Ok(len);
            }
        }
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
    pub fn try_recv_after_poll(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        if self.caps & CAP_READ == 0 {
            return Err(RecvError::NotReading);
        }
        self.check_damage()
            .map_err(|path| RecvError::Damaged { path })?;
        // Look, and keep looking, all before arming: arming first would
        // make the sender ring for the very frames we wait for.
        while let Some(message) = self.look_for_frames(buf) {
            if let Message::Frame(len) = message {
                self.settle_readiness();
                return Ok(len);
            }
        }
        // Nothing: drain every doorbell, counted or not, arm, look once more.
        self.rx.armed = false;
        let len = self.try_recv(buf)?;
        self.settle_readiness();
        Ok(len)
    }

    /// After taking a frame for a caller that polls: if nothing else
    /// waits, and the pace does not expect a frame before a wake-up would
    /// pay off, drain the doorbell and arm now, so that the fd is not
    /// readable for nothing. A frame that came just as we armed keeps the
    /// fd readable (`disarm_after_finding`).
    fn settle_readiness(&mut self) {
        if self.frames_waiting() {
            return;
        }
        let now = Instant::now();
        if let Some(until) = self.rx.pace.keep_looking_until(now) {
            // The next receive (the fd is still readable) looks until then.
            self.rx.look_ahead = Some((now, until));
            return;
        }
        if self.prepare_to_sleep() && self.frames_waiting() {
            self.disarm_after_finding();
        }
    }

    /// Whether a frame or event may wait for us, without taking it: a
    /// sender we scan has a ring head past our cursor. In switch mode that
    /// frame may be for another port (then the next receive finds
    /// nothing and drains).
    fn frames_waiting(&mut self) -> bool {
        self.check_membership();
        if !self.rx.segments.is_empty() || self.events.pending {
            return true;
        }
        self.rx.scan.gather(&self.shm, self.index);
        let mut from = 0;
        for _ in 0..self.rx.scan.len() {
            let Some(sender) = self.rx.scan.next_from(from) else {
                return false;
            };
            from = sender.wrapping_add(1);
            if sender == self.index {
                continue;
            }
            let head = self.shm.port(sender).head.load(Ordering::Acquire);
            if head != self.rx.cursors[sender as usize] {
                return true;
            }
        }
        false
    }

    /// Looks for a frame (or event) now, and again, yielding the processor
    /// in between, for as long as the pace says one is due (a look-ahead
    /// decided when the last frame was taken, or now).
    fn look_for_frames(&mut self, buf: &mut [u8]) -> Option<Message> {
        let decided = self.rx.look_ahead.take();
        if let Some(message) = self.poll_once(buf) {
            if let Some((started, _)) = decided {
                self.rx.pace.looked(started, Instant::now(), true);
            }
            return Some(message);
        }
        let (started, until) = match decided {
            Some(look) => look,
            None => {
                let now = Instant::now();
                (now, self.rx.pace.keep_looking_until(now)?)
            }
        };
        loop {
            std::thread::yield_now();
            let found = self.poll_once(buf);
            let now = Instant::now();
            if found.is_some() || now >= until {
                self.rx.pace.looked(started, now, found.is_some());
                return found;
            }
        }
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
            // see `armed` is found here (see `wake` and `pending`).
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
        if self.caps & CAP_READ != 0 {
            self.check_damage()
                .map_err(|path| RecvError::Damaged { path })?;
            // Before arming the doorbell, keep looking while frames are
            // due: a streaming reader then wakes once per pause in the
            // stream instead of making the sender ring for every frame.
            if let Some(message) = self.look_for_frames(buf) {
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
            let longest = if self.events.enabled {
                DEATH_CHECK_INTERVAL
            } else {
                LONGEST_SLEEP
            };
            wait = Some(wait.map_or(longest, |w| w.min(longest)));
            self.publish_cursors();
            let woken = self.bell.wait(wait).map_err(RecvError::Io)?;
            if woken == Woken::TookOne {
                // The wait took the doorbell: one fewer to drain. If its
                // ringer died before counting it, the count is one ahead
                // and the next drain, seeing no sensible count, drains all.
                self.rx.seen_rings = self.rx.seen_rings.wrapping_add(1);
            } else if woken == Woken::Readable {
                // Readable: the next empty receive must drain, even if the
                // doorbell came from a ringer that died before counting it.
                self.rx.armed = false;
            } else {
                // No doorbell: look at every live writer, whatever the
                // pending bits say (they may have been scribbled on).
                self.refresh_membership();
                if self.events.enabled {
                    self.sweep_dead();
                }
            }
        }
    }

    /// One pass: a pending membership event, else one frame (first those
    /// cut from a frame with offloads, then from the rings).
    fn poll_once(&mut self, buf: &mut [u8]) -> Option<Message> {
        if let Some(len) = self.rx.segments.pop_into(&self.rx.gso_buf, buf) {
            // Truncated to `buf`, as any frame is.
            let len = len.min(buf.len());
            self.count_received(len);
            return Some(Message::Frame(len));
        }
        self.check_membership();
        if self.events.pending && !self.frames_before_event() {
            if let Some(len) = self.read_any(buf) {
                return Some(Message::Frame(len));
            }
        }
        if self.events.pending {
            self.events.pending = false;
            return Some(Message::Membership(self.view.membership));
        }
        self.read_any(buf).map(Message::Frame)
    }

    /// Whether every frame sent before the pending event was read.
    fn frames_before_event(&self) -> bool {
        self.events.barrier.iter().all(|&(sender, head)| {
            (self.rx.cursors[sender as usize].wrapping_sub(head) as i64) >= 0
        })
    }

    /// Reads the next frame from the senders that may have some for us,
    /// round-robin.
    ///
    /// Bounded whatever the shared file says: each sender gets at most
    /// [`steps_per_sender`] reads that return no frame (lapped, or a frame
    /// for another port) per call. A consistent ring never needs that many;
    /// if a scribbled one does, the port rings its own doorbell so that it
    /// looks again instead of sleeping on frames it did not reach.
    fn read_any(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.rx.scan.gather(&self.shm, self.index);
        let budget = steps_per_sender(self.shm.geometry().ring_slots);
        let mut from = self.rx.next_sender;
        for _ in 0..self.rx.scan.len() {
            let sender = self.rx.scan.next_from(from)?;
            from = sender.wrapping_add(1);
            if sender == self.index {
                continue;
            }
            if let Some(len) = self.read_from(sender, budget, buf) {
                self.rx.next_sender = from;
                return Some(len);
            }
            // Empty. Without its pending bit, the sender marks its next
            // frame: stop scanning it till then (idle writers cost nothing).
            if !pending::is_marked(&self.shm, self.index, sender) {
                self.rx.scan.remove(sender);
            }
        }
        None
    }

    /// Reads `sender`'s ring until a frame for us, or nothing, or `budget`
    /// reads without a frame.
    fn read_from(&mut self, sender: u32, budget: u32, buf: &mut [u8]) -> Option<usize> {
        let lossless = self.shm.geometry().lossless();
        let filter = ring::Filter {
            me: self.switch.is_some().then_some(self.index),
            vlan: &self.vlan,
            offload: self.offload,
        };
        // A port that takes offloads gets a header, then the frame.
        let header = if self.offload {
            VNET_HDR_LEN.min(buf.len())
        } else {
            0
        };
        for _ in 0..budget {
            let cursor = &mut self.rx.cursors[sender as usize];
            let out = &mut buf[header..];
            let read =
                ring::read_frame_for(&self.shm, sender, cursor, out, &mut self.rx.gso_buf, filter);
            if lossless && read != Read::Empty {
                self.shm
                    .cursor(self.index, sender)
                    .store(*cursor, Ordering::Release);
            }
            match read {
                Read::Frame {
                    len,
                    tag,
                    tagged,
                    hdr,
                    in_gso_buf,
                } => {
                    // The longest wire frame this one may be, or stand for.
                    let wire_mtu =
                        self.shm.geometry().mtu as usize + if tagged { TAG_LEN } else { 0 };
                    let frame: &[u8] = if in_gso_buf {
                        &self.rx.gso_buf[..len]
                    } else {
                        &buf[header..]
                    };
                    if let (Some(switching), Some(source)) = (&mut self.switch, frame.get(6..12)) {
                        let mut mac = [0u8; 6];
                        mac.copy_from_slice(source);
                        let vlan = switch::vlan_key(tag);
                        switching.table.learn(&self.shm, vlan, mac, sender);
                    }
                    if in_gso_buf {
                        // Cut it into the wire frames it stands for.
                        let hdr = hdr.unwrap_or_default();
                        let (segments, frame) = (&mut self.rx.segments, &self.rx.gso_buf[..len]);
                        let cut = segments.start(&hdr, frame, wire_mtu);
                        let first = cut.ok().and_then(|_| segments.pop_into(frame, buf));
                        match first.map(|n| n.min(buf.len())) {
                            Some(n) => {
                                self.count_received(n);
                                return Some(n);
                            }
                            None => {
                                // A header that does not describe its
                                // frame: the frame cannot be delivered.
                                count_lost(&mut self.rx.dropped, &self.shm, self.index, 1);
                                continue;
                            }
                        }
                    }
                    if self.offload {
                        let hdr = hdr.unwrap_or_default();
                        // A GSO frame whose segments would exceed the MTU
                        // (a sender refuses it; any member can write any
                        // descriptor) is not delivered. Checked when the
                        // buffer holds the whole frame.
                        let whole = buf.get(header..header + len);
                        if hdr.is_gso()
                            && whole.is_some_and(|f| offload::check(&hdr, f, wire_mtu).is_err())
                        {
                            count_lost(&mut self.rx.dropped, &self.shm, self.index, 1);
                            continue;
                        }
                        let _ = hdr.write(&mut buf[..header], HdrLayout::Basic);
                    }
                    self.count_received(len);
                    return Some((header + len).min(buf.len()));
                }
                Read::Lapped { skipped } => {
                    count_lost(&mut self.rx.dropped, &self.shm, self.index, skipped)
                }
                Read::OverMtu => count_lost(&mut self.rx.dropped, &self.shm, self.index, 1),
                Read::NotForUs { source, tag } => {
                    // Frames are coming, if not for us: stay awake to step
                    // over them (a lossless sender waits for our cursor).
                    self.rx.pace.frame();
                    if let Some(switching) = &mut self.switch {
                        let vlan = switch::vlan_key(tag);
                        switching.table.learn(&self.shm, vlan, source, sender);
                    }
                }
                Read::Empty => return None,
            }
        }
        self.bell.ring(self.index);
        None
    }

    fn count_received(&mut self, len: usize) {
        self.rx.pace.frame();
        self.rx.frames = self.rx.frames.wrapping_add(1);
        self.rx.bytes = self.rx.bytes.wrapping_add(len as u64);
        let entry = self.shm.port(self.index);
        entry.rx_frames.store(self.rx.frames, Ordering::Relaxed);
        entry.rx_bytes.store(self.rx.bytes, Ordering::Relaxed);
    }

    /// Found nothing: drain stale doorbells, take the pending bits, and
    /// arm. Returns whether we armed anew (then the caller must look at the
    /// rings once more).
    fn prepare_to_sleep(&mut self) -> bool {
        let entry = self.shm.port(self.index);
        let rings = entry.rings.load(Ordering::Acquire);
        if self.rx.armed && entry.armed.load(Ordering::Acquire) == 1 && rings == self.rx.seen_rings
        {
            return false; // Already armed, no doorbell since: nothing to do.
        }
        // While armed, every doorbell was counted after it was sent, so the
        // count says how many to drain. After a readable fd we had not
        // accounted for (`armed == false`) too, if doorbells were counted
        // since: a doorbell nobody counted (its ringer died) then keeps the
        // fd readable, and the empty receive that follows drains all.
        let counted = rings.wrapping_sub(self.rx.seen_rings);
        let sensible = counted <= u64::from(u32::MAX);
        let expected = ((self.rx.armed || counted > 0) && sensible).then_some(counted);
        self.rx.seen_rings = rings;
        self.bell.drain(expected);
        self.publish_cursors();
        // Every sender we scan was just found empty: from now on, scan only
        // those that mark their bit again (they may have raced us: the look
        // after arming reads them).
        self.rx.scan.take(&self.shm, self.index);
        wake::arm(entry);
        self.rx.armed = true;
        true
    }

    /// Found a frame right after arming: nobody may ring for it, so keep
    /// the fd readable ourselves until an empty receive drains it.
    fn disarm_after_finding(&mut self) {
        let entry = self.shm.port(self.index);
        if wake::disarm(entry) {
            self.bell.ring(self.index);
            entry.rings.fetch_add(1, Ordering::Release);
        }
        self.rx.armed = false;
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
