//! Sending: write the frame into our own ring, mark it pending for the
//! readers it is for, then wake the readers that sleep. On a lossless
//! network, first wait until every live reading port has room (never for a
//! port that died or stopped reading).
//!
//! A [`Batch`] defers the last two steps: frames sent through it are
//! marked pending and their readers woken once, when the batch ends (or
//! before it waits for room), so that a reader that sleeps while the batch
//! is written is rung once for all of it, not once per frame it missed.
//!
//! All of it is [`Tx`]'s: the sending half of a port, which reads the
//! port's [`Common`] part and (switch mode) looks destinations up in the
//! table the receiving half fills. [`Port`]'s and [`PortSender`]'s send
//! methods hand the frame to it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{Common, Context, Port, PortSender, Table, DEATH_CHECK_INTERVAL};
use crate::error::SendError;
use crate::ethernet::{self, Ingress, Mac, Vlan};
use crate::membership;
use crate::offload::{self, HdrLayout, VirtioNetHdr};
use crate::pending;
use crate::ring::TxRing;
use crate::shm::layout::*;
use crate::switch::{self, VlanKey};
use crate::sync::{fence, Ordering};
use crate::wake::{self, PortRinger, Ring};

/// The sending half of a port: its ring and everything only sending uses.
#[derive(Debug)]
pub(super) struct Tx {
    /// Rings the readers we wrote for (and, after a membership change of
    /// ours or a dead port found, everyone).
    pub(super) ringer: PortRinger,
    /// Membership epoch of `readers`.
    epoch: u64,
    /// Live reading ports other than us: whom a frame is for.
    readers: Vec<u32>,
    ring: TxRing,
    /// Our ring's head when we joined: frames before it are not ours.
    join_head: u64,
    /// Lossless: frames and bytes we may still send without looking at the
    /// readers' cursors again.
    room_frames: u64,
    room_bytes: u64,
    frames: u64,
    bytes: u64,
    /// Frames not sent: outside our VLANs.
    dropped: u64,
    /// Where a tagged frame is put together without its tag.
    scratch: Vec<u8>,
    /// Where a frame with offloads too large for the ring is cut, one
    /// wire frame at a time, before it is sent.
    cut_buf: Vec<u8>,
    /// Switch mode: the (VLAN, source address) pairs we published for
    /// `status`.
    published: HashSet<(VlanKey, Mac)>,
    /// Frames written and not yet announced to their readers: a batch's.
    unannounced: Unannounced,
}

/// Frames written that no reader has been told of yet (a [`Batch`]'s),
/// and whom they must wake.
#[derive(Debug, Default)]
struct Unannounced {
    /// Frames were written since the last announcement.
    written: bool,
    /// One of them was for every reader.
    everyone: bool,
    /// Otherwise, the readers they were for (switch mode, unicast).
    addressees: Vec<u32>,
}

impl Unannounced {
    /// Notes a frame for `dst` (or everyone: [`DST_ALL`]).
    fn note(&mut self, dst: u32) {
        self.written = true;
        if dst == DST_ALL {
            self.everyone = true;
        } else if !self.everyone && !self.addressees.contains(&dst) {
            self.addressees.push(dst);
        }
    }

    fn clear(&mut self) {
        self.written = false;
        self.everyone = false;
        self.addressees.clear();
    }
}

/// A batch of sends ([`Port::batch`], [`PortSender::batch`]): the send
/// methods of [`Port`], except that the frames' readers are woken once,
/// when the batch is dropped, rather than after each frame. A reader that
/// falls asleep while the batch is written is then rung once, not again
/// for every frame after it. A batch that has to wait for room on a
/// lossless network wakes the readers first (they must read to make
/// room), as does a send that finds no room and returns
/// [`SendError::WouldBlock`].
///
/// Frames written in a batch are in the ring at once, and a reader that
/// is looking may take them before the batch ends; only a reader asleep
/// waits for the end. So keep a batch as short as the frames at hand: a
/// caller that sends a frame and then waits for something else (a timer,
/// its input) ends the batch first.
#[derive(Debug)]
pub struct Batch<'a> {
    tx: &'a mut Tx,
    cx: Context<'a>,
}

impl Port {
    /// Sends a frame. On a lossless network waits until every live reader
    /// has room (never for a port that died or stopped reading).
    #[inline]
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.sender().send(frame)
    }

    /// Sends a frame without waiting: on a lossless network a full reader
    /// gives [`SendError::WouldBlock`].
    #[inline]
    pub fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.sender().try_send(frame)
    }

    /// Sends a frame, waiting at most `timeout` for room (lossless).
    #[inline]
    pub fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.sender().send_timeout(frame, timeout)
    }

    /// Starts a [`Batch`] of sends, which wakes each sleeping reader once,
    /// when it ends.
    #[inline]
    pub fn batch(&mut self) -> Batch<'_> {
        let PortSender { tx, cx } = self.sender();
        Batch::new(tx, cx)
    }

    /// Marks the ports whose process died (their slot lock is free) as
    /// dead, so that lossless senders stop waiting for them, and wakes the
    /// others to see it. `send` does this itself while it waits for room;
    /// a caller that waits in a loop of its own around `try_send` calls it
    /// every 100 ms or so.
    pub fn sweep_dead(&mut self) {
        self.sender().sweep_dead();
    }
}

impl PortSender<'_> {
    /// [`Port::send`].
    #[inline]
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.tx
            .send_until(&mut self.cx, frame, Wait::Forever, Announce::Now)
    }

    /// [`Port::try_send`].
    #[inline]
    pub fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.tx
            .send_until(&mut self.cx, frame, Wait::Never, Announce::Now)
    }

    /// [`Port::send_timeout`].
    #[inline]
    pub fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.tx
            .send_until(&mut self.cx, frame, Wait::For(timeout), Announce::Now)
    }

    /// [`Port::sweep_dead`].
    pub fn sweep_dead(&mut self) {
        self.tx.sweep_dead(self.cx.port);
    }

    /// [`Port::batch`].
    #[inline]
    pub fn batch(&mut self) -> Batch<'_> {
        let cx = Context {
            port: self.cx.port,
            switch: self.cx.switch.as_mut().map(Table::reborrow),
        };
        Batch::new(&mut *self.tx, cx)
    }
}

impl<'a> Batch<'a> {
    fn new(tx: &'a mut Tx, cx: Context<'a>) -> Batch<'a> {
        Batch { tx, cx }
    }

    /// [`Port::send`], in the batch.
    #[inline]
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.tx
            .send_until(&mut self.cx, frame, Wait::Forever, Announce::AtEnd)
    }

    /// [`Port::try_send`], in the batch.
    #[inline]
    pub fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.tx
            .send_until(&mut self.cx, frame, Wait::Never, Announce::AtEnd)
    }

    /// [`Port::send_timeout`], in the batch.
    #[inline]
    pub fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.tx
            .send_until(&mut self.cx, frame, Wait::For(timeout), Announce::AtEnd)
    }

    /// Tells the readers of the frames sent so far, as the batch's end
    /// would, and goes on: for a long batch whose first frames should not
    /// wait for its last.
    pub fn flush(&mut self) {
        self.tx.announce(self.cx.port);
    }
}

impl Drop for Batch<'_> {
    /// Ends the batch: marks its frames pending and wakes their readers.
    fn drop(&mut self) {
        self.tx.announce(self.cx.port);
    }
}

impl Tx {
    /// The sending half of a port whose ring, continued from the slot's
    /// last occupant, is `ring`.
    pub(super) fn new(ringer: PortRinger, ring: TxRing) -> Tx {
        Tx {
            ringer,
            epoch: 0,
            readers: Vec::new(),
            join_head: ring.head(),
            ring,
            room_frames: 0,
            room_bytes: 0,
            frames: 0,
            bytes: 0,
            dropped: 0,
            scratch: Vec::new(),
            cut_buf: Vec::new(),
            published: HashSet::new(),
            unannounced: Unannounced::default(),
        }
    }

    /// Rebuilds the reader list if the membership epoch moved.
    #[inline]
    fn check_membership(&mut self, port: &Common) {
        if port.epoch() != self.epoch {
            self.refresh_membership(port);
        }
    }

    /// Rebuilds the reader list from the port table; the room we had is
    /// computed again with the new readers.
    pub(super) fn refresh_membership(&mut self, port: &Common) {
        self.epoch = port.epoch();
        let occupants = port.live_readers();
        self.ringer.keep_connected(&occupants);
        self.readers = occupants.iter().map(|&(index, _)| index).collect();
        self.room_frames = 0;
        self.room_bytes = 0;
    }

    /// See [`Port::sweep_dead`].
    pub(super) fn sweep_dead(&mut self, port: &Common) {
        if membership::sweep_dead(&port.shm, Some(port.index)) > 0 {
            wake::wake_all(&port.shm, &mut self.ringer, port.index);
        }
    }

    fn send_until(
        &mut self,
        cx: &mut Context<'_>,
        frame: &[u8],
        wait: Wait,
        announce: Announce,
    ) -> Result<(), SendError> {
        let port = cx.port;
        if port.caps & CAP_WRITE == 0 {
            return Err(SendError::NotWriting);
        }
        port.check_damage()
            .map_err(|path| SendError::Damaged { path })?;
        if !port.offload {
            return self.send_frame(cx, frame, None, wait, announce);
        }
        let (hdr, frame) =
            VirtioNetHdr::split(frame, HdrLayout::Basic).map_err(SendError::Offload)?;
        if hdr.is_plain() {
            return self.send_frame(cx, frame, None, wait, announce);
        }
        // Every port must be able to take it: one without offloads gets
        // the frames it stands for, none larger than the MTU (+ its tag).
        // What could not be cut so is refused here, as a frame over the
        // MTU is without offloads.
        let mtu = port.shm.geometry().mtu as usize;
        let tagged = ethernet::Frame::new_checked(frame).and_then(|v| v.tag());
        let wire_mtu = mtu + tagged.map_or(0, |_| ethernet::TAG_LEN);
        offload::check(&hdr, frame, wire_mtu).map_err(|e| match e {
            offload::OffloadError::TooBig { .. } if !hdr.is_gso() => SendError::TooBig {
                len: frame.len(),
                mtu: mtu as u32,
            },
            e => SendError::Offload(e),
        })?;
        // A frame with its header must fit twice in the ring, or a lossless
        // sender could never make room for it: cut it here instead.
        let ring_bytes = port.shm.geometry().ring_bytes;
        if TxRing::footprint(frame.len(), true) > ring_bytes / 2 {
            let mut segments = offload::Segments::new();
            segments
                .start(&hdr, frame, wire_mtu)
                .map_err(SendError::Offload)?;
            // Kept between sends: no allocation once it has grown.
            let mut buf = std::mem::take(&mut self.cut_buf);
            buf.resize(wire_mtu, 0);
            let mut sent = Ok(());
            while let Some(len) = segments.pop_into(frame, &mut buf) {
                sent = self.send_frame(cx, &buf[..len], None, wait, announce);
                if sent.is_err() {
                    break;
                }
            }
            self.cut_buf = buf;
            sent?;
            return Ok(());
        }
        self.send_frame(cx, frame, Some(hdr), wait, announce)
    }

    /// Sends `frame` (with `hdr`, if it asks for offloads) as the port's
    /// membership and the network's limits say.
    fn send_frame(
        &mut self,
        cx: &mut Context<'_>,
        frame: &[u8],
        mut hdr: Option<VirtioNetHdr>,
        wait: Wait,
        announce: Announce,
    ) -> Result<(), SendError> {
        let port = cx.port;
        if frame.is_empty() {
            return Err(SendError::Empty);
        }
        // The tag travels in the descriptor; the MTU limits the rest (a
        // GSO frame stands for frames within it, checked by the caller).
        let view = ethernet::Frame::new_checked(frame);
        let given_tag = view.and_then(|v| v.tag());
        let stored_len = frame.len() - given_tag.map_or(0, |_| ethernet::TAG_LEN);
        let mtu = port.shm.geometry().mtu;
        let longest = match hdr {
            Some(hdr) if hdr.is_gso() => offload::MAX_GSO_FRAME,
            _ => mtu as usize,
        };
        if stored_len > longest {
            return Err(SendError::TooBig {
                len: frame.len(),
                mtu,
            });
        }
        if let (Some(hdr), Some(_)) = (&mut hdr, given_tag) {
            hdr.shift_offsets(-(ethernet::TAG_LEN as i32));
        }
        // A port in VLANs sends Ethernet frames only: a frame too short
        // for its header has no place for a tag.
        if view.is_none() && port.vlan != Vlan::Transparent {
            self.count_dropped(port);
            return Ok(());
        }
        let tag = match port.vlan.ingress(given_tag) {
            Ingress::Accept(tag) => tag,
            Ingress::Drop => {
                self.count_dropped(port);
                return Ok(());
            }
        };
        self.check_membership(port);
        let lossless = port.shm.geometry().lossless();
        let footprint = TxRing::footprint(stored_len, hdr.is_some());
        if lossless && (self.room_frames == 0 || self.room_bytes < footprint) {
            self.wait_for_room(port, footprint, wait)?;
        }
        let dst = match (&mut cx.switch, view) {
            (Some(table), Some(view)) => {
                let vlan = switch::vlan_key(tag);
                if self.published.insert((vlan, view.src())) {
                    membership::publish_address(&port.shm, port.index, vlan, view.src());
                }
                table.with(|table| table.destination(&port.shm, vlan, &view.dst()))
            }
            _ => DST_ALL,
        };
        let stored = match view {
            Some(view) if given_tag.is_some() => {
                let (addresses, rest) = view.untagged_parts();
                self.scratch.clear();
                self.scratch.extend_from_slice(addresses);
                self.scratch.extend_from_slice(rest);
                &self.scratch[..]
            }
            _ => frame,
        };
        self.ring
            .write(&port.shm, port.index, stored, dst, tag, hdr.as_ref());
        if lossless {
            self.room_frames -= 1;
            self.room_bytes -= footprint;
        }
        // Bytes as the port gave them, its tag included: what a receiver
        // counts is the frame as it is handed over, tag included too.
        self.count_sent(port, frame.len());
        // Only the addressee reads it. (Lossless: every reader must still
        // step over it, or its cursor would hold us back.)
        let wakes = if lossless { DST_ALL } else { dst };
        self.unannounced.note(wakes);
        if announce == Announce::Now {
            self.announce(port);
        }
        Ok(())
    }

    /// Tells the readers of the frames written since the last time: marks
    /// us pending for every reader, and wakes those the frames were for
    /// that sleep.
    fn announce(&mut self, port: &Common) {
        if !self.unannounced.written {
            return;
        }
        fence(Ordering::SeqCst);
        // A reader that joined since our last look must be told too.
        self.check_membership(port);
        let mut newly_marked = false;
        for &reader in &self.readers {
            newly_marked |= pending::mark(&port.shm, reader, port.index);
        }
        if newly_marked {
            // A bit set after our fence: fence again before looking at
            // `armed` (see `pending`).
            fence(Ordering::SeqCst);
        }
        if self.unannounced.everyone {
            for &reader in &self.readers {
                wake::wake(&port.shm, &mut self.ringer, reader);
            }
        } else {
            for &reader in &self.unannounced.addressees {
                wake::wake(&port.shm, &mut self.ringer, reader);
            }
        }
        self.unannounced.clear();
    }

    fn count_dropped(&mut self, port: &Common) {
        self.dropped = self.dropped.wrapping_add(1);
        port.shm
            .port(port.index)
            .tx_dropped
            .store(self.dropped, Ordering::Relaxed);
    }

    fn count_sent(&mut self, port: &Common, len: usize) {
        self.frames = self.frames.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(len as u64);
        let entry = port.shm.port(port.index);
        entry.tx_frames.store(self.frames, Ordering::Relaxed);
        entry.tx_bytes.store(self.bytes, Ordering::Relaxed);
    }

    /// Lossless: how many frames, and bytes, we may send before the
    /// slowest live reader would be lapped. All arithmetic is modulo 2^64
    /// on distances from our head, so any head value (even one a previous
    /// occupant of the slot scribbled, say 2^64 - 3) works as well as any
    /// other.
    fn compute_room(&self, port: &Common) -> (u64, u64) {
        let g = port.shm.geometry();
        let slots = u64::from(g.ring_slots);
        let head = self.ring.head();
        let since_join = head.wrapping_sub(self.join_head);
        let (mut frames, mut bytes) = (slots, g.ring_bytes);
        for &reader in &self.readers {
            let entry = port.shm.port(reader);
            let word = entry.state.load(Ordering::Acquire);
            if membership::state(word) != STATE_ACTIVE
                || entry.caps.load(Ordering::Acquire) & CAP_READ == 0
            {
                continue;
            }
            let cursor = port.shm.cursor(reader, port.index).load(Ordering::Acquire);
            // Frames of ours this reader has not read. A cursor from before
            // we joined (the previous occupant's frames) counts as our join.
            let unread = head.wrapping_sub(cursor);
            let lag = unread.min(since_join);
            if (unread as i64) < 0 || lag > slots {
                // No consistent cursor is ahead of our head or more than a
                // ring behind: it was scribbled on. Not waiting for it costs
                // that reader frames (counted as lapped), never a hang; the
                // reader republishes its cursors now and then
                // (`Rx::publish_cursors`).
                continue;
            }
            frames = frames.min(slots - lag);
            let oldest = head.wrapping_sub(lag);
            bytes = bytes.min(g.ring_bytes.saturating_sub(self.ring.bytes_since(oldest)));
        }
        (frames, bytes)
    }

    fn wait_for_room(
        &mut self,
        port: &Common,
        footprint: u64,
        wait: Wait,
    ) -> Result<(), SendError> {
        let mut spins = 0u32;
        let now = Instant::now();
        let mut next_death_check = now + DEATH_CHECK_INTERVAL;
        // From the first wait on: a send with room reads no clock.
        let deadline = match wait {
            Wait::For(timeout) => Some(now + timeout),
            Wait::Never | Wait::Forever => None,
        };
        loop {
            port.check_damage()
                .map_err(|path| SendError::Damaged { path })?;
            self.check_membership(port);
            (self.room_frames, self.room_bytes) = self.compute_room(port);
            if self.room_frames > 0 && self.room_bytes >= footprint {
                return Ok(());
            }
            // Readers make room only once they know of our frames (a
            // batch's, so far unannounced), and so does a caller that
            // waits for them itself after `WouldBlock`.
            self.announce(port);
            match wait {
                Wait::Never => return Err(SendError::WouldBlock),
                Wait::For(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
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
                self.sweep_dead(port);
                next_death_check = Instant::now() + DEATH_CHECK_INTERVAL;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Wait {
    Never,
    /// At most this long, from when the send finds no room.
    For(Duration),
    Forever,
}

/// When a send tells the readers of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Announce {
    /// At once.
    Now,
    /// When the batch ends (or before a wait for room); a later send that
    /// announces tells of these frames too.
    AtEnd,
}
