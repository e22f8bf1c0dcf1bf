//! Sending: write the frame into our own ring, mark it pending for the
//! readers it is for, then wake the readers that sleep. On a lossless
//! network, first wait until every live reading port has room (never for a
//! port that died or stopped reading).

use std::time::{Duration, Instant};

use super::{Port, DEATH_CHECK_INTERVAL};
use crate::error::SendError;
use crate::ethernet::{self, Ingress, Vlan};
use crate::membership;
use crate::offload::{self, HdrLayout, VirtioNetHdr};
use crate::pending;
use crate::ring::TxRing;
use crate::shm::layout::*;
use crate::switch;
use crate::sync::{fence, Ordering};
use crate::wake;

impl Port {
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
        self.check_damage()
            .map_err(|path| SendError::Damaged { path })?;
        if !self.offload {
            return self.send_frame(frame, None, wait);
        }
        let (hdr, frame) =
            VirtioNetHdr::split(frame, HdrLayout::Basic).map_err(SendError::Offload)?;
        if hdr.is_plain() {
            return self.send_frame(frame, None, wait);
        }
        // Every port must be able to take it: one without offloads gets
        // the frames it stands for, none larger than the MTU (+ its tag).
        // What could not be cut so is refused here, as a frame over the
        // MTU is without offloads.
        let mtu = self.shm.geometry().mtu as usize;
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
        let ring_bytes = self.shm.geometry().ring_bytes;
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
                sent = self.send_frame(&buf[..len], None, wait);
                if sent.is_err() {
                    break;
                }
            }
            self.cut_buf = buf;
            sent?;
            return Ok(());
        }
        self.send_frame(frame, Some(hdr), wait)
    }

    /// Sends `frame` (with `hdr`, if it asks for offloads) as the port's
    /// membership and the network's limits say.
    fn send_frame(
        &mut self,
        frame: &[u8],
        mut hdr: Option<VirtioNetHdr>,
        wait: Wait,
    ) -> Result<(), SendError> {
        if frame.is_empty() {
            return Err(SendError::Empty);
        }
        // The tag travels in the descriptor; the MTU limits the rest (a
        // GSO frame stands for frames within it, checked by the caller).
        let view = ethernet::Frame::new_checked(frame);
        let given_tag = view.and_then(|v| v.tag());
        let stored_len = frame.len() - given_tag.map_or(0, |_| ethernet::TAG_LEN);
        let mtu = self.shm.geometry().mtu;
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
        if view.is_none() && self.vlan != Vlan::Transparent {
            self.count_dropped();
            return Ok(());
        }
        let tag = match self.vlan.ingress(given_tag) {
            Ingress::Accept(tag) => tag,
            Ingress::Drop => {
                self.count_dropped();
                return Ok(());
            }
        };
        self.check_membership();
        let lossless = self.shm.geometry().lossless();
        let footprint = TxRing::footprint(stored_len, hdr.is_some());
        if lossless && (self.tx.room_frames == 0 || self.tx.room_bytes < footprint) {
            self.wait_for_room(footprint, wait)?;
        }
        let dst = match (&mut self.switch, view) {
            (Some(switching), Some(view)) => {
                let vlan = switch::vlan_key(tag);
                if switching.published.insert((vlan, view.src())) {
                    membership::publish_address(&self.shm, self.index, vlan, view.src());
                }
                switching.table.destination(&self.shm, vlan, &view.dst())
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
        self.tx
            .ring
            .write(&self.shm, self.index, stored, dst, tag, hdr.as_ref());
        if lossless {
            self.tx.room_frames -= 1;
            self.tx.room_bytes -= footprint;
        }
        // Bytes as the port gave them, its tag included: what a receiver
        // counts is the frame as it is handed over, tag included too.
        self.count_sent(frame.len());
        fence(Ordering::SeqCst);
        // A reader that joined since our last look must be told too.
        self.check_membership();
        for &reader in &self.view.readers {
            pending::mark(&self.shm, reader, self.index);
        }
        if dst != DST_ALL && !lossless {
            // Only the addressee reads it. (Lossless: every reader must
            // still step over it, or its cursor would hold us back.)
            wake::wake(&self.shm, &mut self.bell, dst);
            return Ok(());
        }
        for i in 0..self.view.readers.len() {
            wake::wake(&self.shm, &mut self.bell, self.view.readers[i]);
        }
        Ok(())
    }

    fn count_dropped(&mut self) {
        self.tx.dropped = self.tx.dropped.wrapping_add(1);
        self.shm
            .port(self.index)
            .tx_dropped
            .store(self.tx.dropped, Ordering::Relaxed);
    }

    fn count_sent(&mut self, len: usize) {
        self.tx.frames = self.tx.frames.wrapping_add(1);
        self.tx.bytes = self.tx.bytes.wrapping_add(len as u64);
        let entry = self.shm.port(self.index);
        entry.tx_frames.store(self.tx.frames, Ordering::Relaxed);
        entry.tx_bytes.store(self.tx.bytes, Ordering::Relaxed);
    }

    /// Lossless: how many frames, and bytes, we may send before the
    /// slowest live reader would be lapped. All arithmetic is modulo 2^64
    /// on distances from our head, so any head value (even one a previous
    /// occupant of the slot scribbled, say 2^64 - 3) works as well as any
    /// other.
    fn compute_room(&self) -> (u64, u64) {
        let g = self.shm.geometry();
        let slots = u64::from(g.ring_slots);
        let head = self.tx.ring.head();
        let since_join = head.wrapping_sub(self.tx.join_head);
        let (mut frames, mut bytes) = (slots, g.ring_bytes);
        for &reader in &self.view.readers {
            let entry = self.shm.port(reader);
            let word = entry.state.load(Ordering::Acquire);
            if membership::state(word) != STATE_ACTIVE
                || entry.caps.load(Ordering::Acquire) & CAP_READ == 0
            {
                continue;
            }
            let cursor = self.shm.cursor(reader, self.index).load(Ordering::Acquire);
            // Frames of ours this reader has not read. A cursor from before
            // we joined (the previous occupant's frames) counts as our join.
            let unread = head.wrapping_sub(cursor);
            let lag = unread.min(since_join);
            if (unread as i64) < 0 || lag > slots {
                // No consistent cursor is ahead of our head or more than a
                // ring behind: it was scribbled on. Not waiting for it costs
                // that reader frames (counted as lapped), never a hang; the
                // reader republishes its cursors before sleeping.
                continue;
            }
            frames = frames.min(slots - lag);
            let oldest = head.wrapping_sub(lag);
            bytes = bytes.min(
                g.ring_bytes
                    .saturating_sub(self.tx.ring.bytes_since(oldest)),
            );
        }
        (frames, bytes)
    }

    fn wait_for_room(&mut self, footprint: u64, wait: Wait) -> Result<(), SendError> {
        let mut spins = 0u32;
        let mut next_death_check = Instant::now() + DEATH_CHECK_INTERVAL;
        loop {
            self.check_damage()
                .map_err(|path| SendError::Damaged { path })?;
            self.check_membership();
            (self.tx.room_frames, self.tx.room_bytes) = self.compute_room();
            if self.tx.room_frames > 0 && self.tx.room_bytes >= footprint {
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
}

#[derive(Debug, Clone, Copy)]
enum Wait {
    Never,
    Until(Instant),
    Forever,
}
