//! Pending bits: which senders may have frames for a reader, so that a
//! receive looks only at those rings, whatever the number of joined ports.
//!
//! Each reader has a bitmap in shared memory (`shm::pending`), bit `s` for
//! sender `s`. A sender sets the bit, after writing a frame, if it is not
//! set already (a load, and in the steady state nothing more). The reader
//! keeps a private set of senders to scan: every bit it has seen set since
//! it last went to sleep. Only when it is about to sleep does it take the
//! bitmap back to zero (one swap per word), and then it must look once more
//! at every sender it took, after arming its doorbell:
//!
//! ```text
//! sender                                 reader (about to sleep)
//!   write frame; fence(SeqCst)             taken = swap(bits, 0)
//!   if bit clear:                          armed = 1; fence(SeqCst)
//!     fetch_or(bit); fence(SeqCst)         scan taken | bits
//!   if swap(armed, 0) == 1: ring
//! ```
//!
//! A sender that found its bit still set wrote its frame before the
//! reader's swap, so the reader's scan of the senders it took sees the
//! frame; a sender that found it clear sets it, and then either the reader
//! sees the bit in its last look, or the sender sees `armed` and rings
//! (see `wake`). That second case needs the sender's second fence: without
//! it, the set bit and the reader's `armed` are two stores each side
//! loads the other's of, and the C++ memory model lets both loads miss
//! (loom found it: `loom_no_lost_wakeup_for_a_new_writer`). It costs one
//! fence per reader sleep, not per frame: the bit stays set until the
//! reader sleeps again. The loom tests check this with the real send and receive
//! code.
//!
//! Bits are only hints: a scribbled bitmap makes a reader scan more rings,
//! or fewer until its next wake-up (a blocking receive wakes at least every
//! second and then scans every live writer). The last word of a bitmap
//! has bits for ports the network does not have: a reader never takes
//! those (a [`ScanSet`] holds only ports below `max_ports`).

use crate::shm::SharedFile;
use crate::sync::Ordering;

/// Word and mask of port `index`'s bit.
fn bit(index: u32) -> (usize, u64) {
    ((index / 64) as usize, 1u64 << (index % 64))
}

/// Sender's half: says to `reader` that `sender` wrote a frame. The
/// caller issued a SeqCst fence after writing it. Returns whether the bit
/// was clear and is now set: then the caller must issue a second SeqCst
/// fence before it looks at the reader's `armed` word, or the reader's
/// look after arming and the sender's look at `armed` may both miss (the
/// store-buffering pattern: each side stores, then loads what the other
/// stored; only a fence between on both sides forbids both loads missing).
#[inline]
pub fn mark(shm: &SharedFile, reader: u32, sender: u32) -> bool {
    let (word, mask) = bit(sender);
    match shm.pending(reader).get(word) {
        Some(w) if w.load(Ordering::Relaxed) & mask == 0 => {
            w.fetch_or(mask, Ordering::SeqCst);
            true
        }
        _ => false,
    }
}

/// Whether `sender`'s bit is set in `reader`'s shared bitmap. A sender
/// whose bit is clear sets it with its next frame, so a reader that found
/// its ring empty may stop scanning it until then.
#[inline]
pub fn is_marked(shm: &SharedFile, reader: u32, sender: u32) -> bool {
    let (word, mask) = bit(sender);
    shm.pending(reader)
        .get(word)
        .is_some_and(|w| w.load(Ordering::Acquire) & mask != 0)
}

/// A reader's private set of senders to scan: only ports below the
/// network's `max_ports`, whatever the shared bitmap says.
#[derive(Debug, Clone, Default)]
pub struct ScanSet {
    words: Vec<u64>,
    /// The bits of the last word that are ports (all ones if 64 are).
    last_word_ports: u64,
}

impl ScanSet {
    /// An empty set for a network of `max_ports` ports.
    pub fn new(max_ports: u32) -> ScanSet {
        let in_last = max_ports % 64;
        ScanSet {
            words: vec![0; max_ports.div_ceil(64) as usize],
            last_word_ports: if in_last == 0 {
                u64::MAX
            } else {
                (1u64 << in_last) - 1
            },
        }
    }

    /// Adds `index` (if it is a port of the network).
    pub fn insert(&mut self, index: u32) {
        let (word, mask) = bit(index);
        if let Some(w) = self.words.get_mut(word) {
            *w |= mask;
        }
        self.drop_beyond_last_port();
    }

    /// Clears the bits of the last word that are no port.
    fn drop_beyond_last_port(&mut self) {
        if let Some(last) = self.words.last_mut() {
            *last &= self.last_word_ports;
        }
    }

    /// Removes `index`.
    pub fn remove(&mut self, index: u32) {
        let (word, mask) = bit(index);
        if let Some(w) = self.words.get_mut(word) {
            *w &= !mask;
        }
    }

    /// Adds the bits senders set in `reader`'s shared bitmap (they stay
    /// set there).
    pub fn gather(&mut self, shm: &SharedFile, reader: u32) {
        for (mine, shared) in self.words.iter_mut().zip(shm.pending(reader)) {
            *mine |= shared.load(Ordering::Acquire);
        }
        self.drop_beyond_last_port();
    }

    /// [`ScanSet::gather`], then whether `f` holds for a member (trying
    /// them in ascending order), in one pass over the words: after every
    /// frame a receive takes, it asks whether another one waits. Words
    /// after the member `f` holds for are not gathered yet: their bits stay
    /// set in the shared bitmap for the next gather.
    #[inline]
    pub fn gather_any(
        &mut self,
        shm: &SharedFile,
        reader: u32,
        mut f: impl FnMut(u32) -> bool,
    ) -> bool {
        let shared = shm.pending(reader);
        let last = self.words.len().wrapping_sub(1);
        let last_word_ports = self.last_word_ports;
        for (i, mine) in self.words.iter_mut().enumerate() {
            let mut word = *mine | shared.get(i).map_or(0, |w| w.load(Ordering::Acquire));
            if i == last {
                word &= last_word_ports;
            }
            *mine = word;
            while word != 0 {
                if f(i as u32 * 64 + word.trailing_zeros()) {
                    return true;
                }
                word &= word - 1;
            }
        }
        false
    }

    /// Before sleeping: the set becomes exactly the senders that set their
    /// bit since the last time (taken from the shared bitmap, which is left
    /// all zero). The caller arms, then scans this set and the bitmap once
    /// more (module docs).
    pub fn take(&mut self, shm: &SharedFile, reader: u32) {
        for (mine, shared) in self.words.iter_mut().zip(shm.pending(reader)) {
            *mine = if shared.load(Ordering::Relaxed) == 0 {
                0
            } else {
                shared.swap(0, Ordering::SeqCst)
            };
        }
        self.drop_beyond_last_port();
    }

    /// The members, in ascending order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let base = i as u32 * 64;
            std::iter::successors((word != 0).then_some(word), |&w| {
                let rest = w & (w - 1);
                (rest != 0).then_some(rest)
            })
            .map(move |w| base + w.trailing_zeros())
        })
    }

    /// How many senders are in the set.
    #[cfg(test)]
    pub fn len(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// The first sender in the set at or after `start`, wrapping around
    /// (so that scans can go round-robin and a busy sender cannot starve
    /// the others). Looks at whole words: cheap for any number of ports.
    /// No division: this runs several times per frame received, and a
    /// division by the word count (known only at run time) costs more than
    /// the rest of it.
    pub fn next_from(&self, start: u32) -> Option<u32> {
        let count = self.words.len();
        if count == 0 {
            return None;
        }
        let ports = count as u32 * 64;
        // Callers pass a port index or one past it: rarely out of range.
        let start = if start < ports { start } else { start % ports };
        let (mut index, _) = bit(start);
        let below_start = (1u64 << (start % 64)) - 1;
        for k in 0..=count {
            let mut word = self.words[index];
            if k == 0 {
                word &= !below_start;
            } else if k == count {
                word &= below_start;
            }
            if word != 0 {
                return Some(index as u32 * 64 + word.trailing_zeros());
            }
            index += 1;
            if index == count {
                index = 0;
            }
        }
        None
    }

    /// Whether the set is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(max_ports: u32, members: &[u32]) -> ScanSet {
        let mut s = ScanSet::new(max_ports);
        for &m in members {
            s.insert(m);
        }
        s
    }

    #[test]
    fn next_from_goes_round_robin_across_words() {
        let s = set(200, &[3, 70, 130, 199]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.next_from(0), Some(3));
        assert_eq!(s.next_from(4), Some(70));
        assert_eq!(s.next_from(70), Some(70));
        assert_eq!(s.next_from(71), Some(130));
        assert_eq!(s.next_from(131), Some(199));
        assert_eq!(s.next_from(200), Some(3), "wraps past the end");
        let one = set(64, &[5]);
        assert_eq!(one.next_from(6), Some(5), "wraps within one word");
        assert_eq!(set(64, &[]).next_from(9), None);
        assert_eq!(s.iter().collect::<Vec<_>>(), [3, 70, 130, 199]);
        assert_eq!(set(64, &[0, 63]).iter().collect::<Vec<_>>(), [0, 63]);
        assert_eq!(set(64, &[]).iter().count(), 0);
        assert!(set(64, &[]).is_empty());
    }

    #[test]
    fn bits_beyond_the_last_port_are_never_in_the_set() {
        let s = set(70, &[3, 69, 70, 127]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.next_from(4), Some(69));
        assert_eq!(s.next_from(70), Some(3), "70 and 127 are no ports");
        assert_eq!(set(128, &[127]).len(), 1);
    }
}
