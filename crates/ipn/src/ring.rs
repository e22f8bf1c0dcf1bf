//! Transmit rings: how one sender hands frames to any number of readers.
//!
//! Every port owns one ring of `ring_slots` slots and is its only writer.
//! Frame number `n` goes to slot `n % ring_slots`. Each slot is a seqlock:
//!
//! ```text
//! writer:  seq = 2n+1 (writing); fence(Release); len, dst, data; seq = 2n+2 (Release)
//! reader:  s1 = seq (Acquire); len, data; fence(Acquire); s2 = seq
//!          the copy is frame n iff s1 == s2 == 2n+2
//! ```
//!
//! A reader keeps its own cursor (the next frame number it wants) per
//! sender. If the slot already holds a later frame, the reader was lapped:
//! it jumps forward to half a ring behind the writer and counts what it
//! skipped as drops. In a lossless network the sender never laps a live
//! reader (it waits for the reader's published cursor), so lapping there
//! means only that the reader joined or was found dead mid-stream.
//!
//! Everything read here may have been scribbled on by another process:
//! lengths are clamped, sequence arithmetic wraps, and nothing indexes
//! memory with a value read from the ring.

use crate::shm::layout::{seq_done, seq_writing, DST_ALL};
use crate::shm::{SharedFile, Slot};
use crate::sync::{fence, AtomicU64, Ordering};

/// Writes frame number `seq` of `sender`'s ring. The caller has checked
/// `frame.len() <= mtu` and, in a lossless network, that every reader has
/// consumed frame `seq - ring_slots`.
pub fn write_frame(shm: &SharedFile, sender: u32, seq: u64, frame: &[u8], dst: u32) {
    let slot = shm.slot(sender, seq);
    slot.header.seq.store(seq_writing(seq), Ordering::Relaxed);
    fence(Ordering::Release);
    slot.header.len.store(frame.len() as u32, Ordering::Relaxed);
    slot.header.dst.store(dst, Ordering::Relaxed);
    store_bytes(slot.data, frame);
    slot.header.seq.store(seq_done(seq), Ordering::Release);
    shm.port(sender)
        .head
        .store(seq.wrapping_add(1), Ordering::Release);
}

/// Result of trying to read the frame at a reader's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A frame of `len` bytes (of which `min(len, buf.len())` were copied),
    /// addressed to `dst`.
    Frame { len: usize, dst: u32 },
    /// The sender has not written that frame yet.
    Empty,
    /// The sender overwrote it: the cursor moved forward by `skipped`.
    Lapped { skipped: u64 },
    /// A frame addressed to another port (switch mode): only its Ethernet
    /// source address was read, so the reader can learn where it lives.
    NotForUs { source: [u8; 6] },
}

/// Reads the frame at `*cursor` from `sender`'s ring into `buf`, advancing
/// the cursor past it (or past what was lost). Every frame is accepted.
#[cfg(all(loom, test))]
pub fn read_frame(shm: &SharedFile, sender: u32, cursor: &mut u64, buf: &mut [u8]) -> Read {
    read_frame_for(shm, sender, cursor, buf, None)
}

/// [`read_frame`] for port `me`: a frame addressed to another port (its
/// `dst` is neither `me` nor [`DST_ALL`]) is not copied and gives
/// [`Read::NotForUs`].
pub fn read_frame_for(
    shm: &SharedFile,
    sender: u32,
    cursor: &mut u64,
    buf: &mut [u8],
    me: Option<u32>,
) -> Read {
    let n = *cursor;
    let slot = shm.slot(sender, n);
    let before = slot.header.seq.load(Ordering::Acquire);
    if before == seq_done(n) {
        let len = slot.header.len.load(Ordering::Relaxed) as usize;
        let dst = slot.header.dst.load(Ordering::Relaxed);
        let len = len.min(shm.geometry().mtu as usize);
        let for_us = me.is_none_or(|me| dst == DST_ALL || dst == me);
        let mut header = [0u8; 16];
        if for_us {
            load_bytes(slot, len.min(buf.len()), buf);
        } else {
            load_bytes(slot, len.min(header.len()), &mut header);
        }
        fence(Ordering::Acquire);
        if slot.header.seq.load(Ordering::Relaxed) == before && !for_us {
            *cursor = n.wrapping_add(1);
            let mut source = [0u8; 6];
            source.copy_from_slice(&header[6..12]);
            return Read::NotForUs { source };
        }
        if slot.header.seq.load(Ordering::Relaxed) == before {
            *cursor = n.wrapping_add(1);
            return Read::Frame { len, dst };
        }
        // Overwritten while we copied: fall through to the lapped case.
    } else if is_before(before, seq_done(n)) {
        return Read::Empty;
    }
    lapped(shm, sender, cursor)
}

/// Whether sequence word `a` comes before `b` (wrapping comparison).
fn is_before(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) < 0
}

fn lapped(shm: &SharedFile, sender: u32, cursor: &mut u64) -> Read {
    let head = shm.port(sender).head.load(Ordering::Acquire);
    let slots = u64::from(shm.geometry().ring_slots);
    // Resume half a ring behind the writer: resuming at the oldest frame
    // left would put the reader right where the writer writes next, to be
    // lapped again at once.
    let oldest = head.wrapping_sub((slots / 2).max(1));
    if is_before(*cursor, oldest) {
        let skipped = oldest.wrapping_sub(*cursor);
        *cursor = oldest;
        return Read::Lapped { skipped };
    }
    // The head says we are not behind but the slot disagrees: the ring is
    // inconsistent (scribbled, or a writer died mid-frame). Step over the
    // one bad frame so the reader never spins on it, but never past the
    // head: beyond it there is nothing to read yet, whatever slots say.
    if is_before(*cursor, head) {
        *cursor = cursor.wrapping_add(1);
        Read::Lapped { skipped: 1 }
    } else {
        Read::Empty
    }
}

/// Copies `frame` into slot data words with relaxed atomic stores.
fn store_bytes(words: &[AtomicU64], frame: &[u8]) {
    let mut chunks = frame.chunks_exact(8);
    for (word, chunk) in words.iter().zip(&mut chunks) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut bytes = [0u8; 8];
        bytes[..rest.len()].copy_from_slice(rest);
        if let Some(word) = words.get(frame.len() / 8) {
            word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        }
    }
}

/// Copies the first `len` bytes of a slot's data into `buf[..len]`.
fn load_bytes(slot: Slot<'_>, len: usize, buf: &mut [u8]) {
    let out = &mut buf[..len];
    let mut chunks = out.chunks_exact_mut(8);
    for (word, chunk) in slot.data.iter().zip(&mut chunks) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        if let Some(word) = slot.data.get(len / 8) {
            let bytes = word.load(Ordering::Relaxed).to_ne_bytes();
            let n = rest.len();
            rest.copy_from_slice(&bytes[..n]);
        }
    }
}
