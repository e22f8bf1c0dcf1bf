//! Sending: write the frame into our own ring, then wake the readers that
//! sleep. On a lossless network, first wait until every live reading port
//! has room (never for a port that died or stopped reading).

use std::time::{Duration, Instant};

use super::{Port, DEATH_CHECK_INTERVAL};
use crate::error::SendError;
use crate::membership;
use crate::ring;
use crate::shm::layout::*;
use crate::sync::{fence, Ordering};

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
        let lossless = self.shm.geometry().lossless();
        if lossless && self.room == 0 {
            self.wait_for_space(wait)?;
        }
        let dst = match &self.switch {
            Some(table) => table.destination(&self.shm, frame),
            None => DST_ALL,
        };
        ring::write_frame(&self.shm, self.index, self.head, frame, dst);
        self.head = self.head.wrapping_add(1);
        if lossless {
            self.room -= 1;
        }
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

    /// Lossless: how many frames we may send before the slowest live
    /// reader would be lapped. All arithmetic is modulo 2^64 on distances
    /// from our head, so any head value (even one a previous occupant of
    /// the slot scribbled, say 2^64 - 3) works as well as any other.
    fn compute_room(&self) -> u64 {
        let slots = u64::from(self.shm.geometry().ring_slots);
        let since_join = self.head.wrapping_sub(self.join_head);
        let mut room = slots;
        for &reader in &self.readers {
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
            let unread = self.head.wrapping_sub(cursor);
            let lag = unread.min(since_join);
            if (unread as i64) < 0 || lag > slots {
                // No consistent cursor is ahead of our head or more than a
                // ring behind: it was scribbled on. Not waiting for it costs
                // that reader frames (counted as lapped), never a hang; the
                // reader republishes its cursors before sleeping.
                continue;
            }
            room = room.min(slots - lag);
        }
        room
    }

    fn wait_for_space(&mut self, wait: Wait) -> Result<(), SendError> {
        let mut spins = 0u32;
        let mut next_death_check = Instant::now() + DEATH_CHECK_INTERVAL;
        loop {
            self.check_damage()
                .map_err(|path| SendError::Damaged { path })?;
            self.check_membership();
            self.room = self.compute_room();
            if self.room > 0 {
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
