//! Test frames: `tag: u32 | seq: u64 | len: u32 | filler`, all little
//! endian. The filler depends on tag, seq and position, so a torn or
//! mixed-up frame is detected, not only a lost one.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Smallest test frame: the header fields.
pub const MIN_LEN: usize = 16;

/// The filler of frame `tag:seq` from byte `MIN_LEN` on: bytes counting up
/// from a start that depends on tag and seq. Taken from a table, so that
/// making and checking a frame are a copy and a compare even in debug
/// builds.
fn filler(tag: u32, seq: u64, len: usize) -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    let table = TABLE.get_or_init(|| (0..65536 + 512).map(|i| i as u8).collect());
    let start = (u64::from(tag).wrapping_mul(31) ^ seq.wrapping_mul(7)) as u8 as usize + MIN_LEN;
    &table[start..start + len - MIN_LEN]
}

/// Frame number `seq` of sender `tag`, `len` bytes long (at least
/// [`MIN_LEN`]).
pub fn make(tag: u32, seq: u64, len: usize) -> Vec<u8> {
    let len = len.max(MIN_LEN);
    let mut frame = vec![0u8; len];
    frame[0..4].copy_from_slice(&tag.to_le_bytes());
    frame[4..12].copy_from_slice(&seq.to_le_bytes());
    frame[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    frame[MIN_LEN..].copy_from_slice(filler(tag, seq, len));
    frame
}

/// A length between [`MIN_LEN`] and `max` that varies with `seq`, so that
/// runs cover short, odd and long frames.
pub fn varied_len(seq: u64, max: usize) -> usize {
    let span = (max - MIN_LEN + 1) as u64;
    MIN_LEN + (seq.wrapping_mul(2_654_435_761) % span) as usize
}

/// Parses and checks a received frame: `(tag, seq)`.
pub fn check(frame: &[u8]) -> Result<(u32, u64), String> {
    if frame.len() < MIN_LEN {
        return Err(format!("frame of {} bytes is too short", frame.len()));
    }
    let tag = u32::from_le_bytes(frame[0..4].try_into().unwrap());
    let seq = u64::from_le_bytes(frame[4..12].try_into().unwrap());
    let len = u32::from_le_bytes(frame[12..16].try_into().unwrap()) as usize;
    if len != frame.len() {
        return Err(format!(
            "frame {tag}:{seq} says {len} bytes, arrived with {}",
            frame.len()
        ));
    }
    let expected = filler(tag, seq, len);
    if frame[MIN_LEN..] != *expected {
        let i = MIN_LEN
            + frame[MIN_LEN..]
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
        return Err(format!("frame {tag}:{seq} corrupted at byte {i}"));
    }
    Ok((tag, seq))
}

/// Per-sender order and loss bookkeeping of one receiver.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Next expected sequence number per sender tag.
    next: HashMap<u32, u64>,
    pub received: u64,
    /// Frames skipped over (sequence gaps).
    pub gaps: u64,
}

impl Tracker {
    /// Records a frame. Sequence numbers start at 0; a gap is counted,
    /// going backwards or repeating is an error. With `lossless` a gap is
    /// an error too.
    pub fn record(&mut self, frame: &[u8], lossless: bool) -> Result<(u32, u64), String> {
        let (tag, seq) = check(frame)?;
        let next = self.next.entry(tag).or_insert(0);
        if seq < *next {
            return Err(format!(
                "sender {tag}: frame {seq} arrived after frame {} (out of order or repeated)",
                *next - 1
            ));
        }
        if seq > *next {
            if lossless {
                return Err(format!(
                    "sender {tag}: frames {}..{seq} lost on a lossless network",
                    *next
                ));
            }
            self.gaps += seq - *next;
        }
        *next = seq + 1;
        self.received += 1;
        Ok((tag, seq))
    }

    /// Next expected sequence number of sender `tag`.
    pub fn next(&self, tag: u32) -> u64 {
        self.next.get(&tag).copied().unwrap_or(0)
    }
}
