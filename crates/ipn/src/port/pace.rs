//! How long a receiver keeps looking for frames before it goes to sleep.
//!
//! Waking a sleeping reader costs a doorbell (a system call for the
//! sender) and a scheduler wake-up for the reader, 30-40 µs on a small
//! VM: more than the gap between two frames of a busy stream. So a
//! receiver that finds nothing while frames have been arriving keeps
//! looking, yielding the processor between looks (on a machine with fewer
//! cores than processes, the sender may be the one waiting for it), for a
//! while that follows the recent gaps between frames: a few gaps, at least
//! [`MIN_SPIN`], at most [`MAX_SPIN`]. When the gaps grow longer than
//! [`MAX_SPIN`] (a quiet network), it sleeps at once: an idle port costs
//! nothing.
//!
//! The clock is read once per empty look, not per frame: frames are
//! counted, and the gap is the time between two empty looks divided by the
//! frames received in between.

use std::time::{Duration, Instant};

/// Keep looking at least this long while a stream is on.
pub const MIN_SPIN: Duration = Duration::from_micros(50);
/// Never keep looking longer than this; gaps longer than this mean the
/// stream is off.
pub const MAX_SPIN: Duration = Duration::from_micros(200);

/// The recent pace of arrivals.
#[derive(Debug, Clone, Default)]
pub struct Pace {
    /// When we last found nothing.
    last_empty: Option<Instant>,
    /// Frames received since.
    frames_since: u32,
    /// Mean gap between frames (exponentially weighted), in nanoseconds.
    gap_ns: u64,
}

impl Pace {
    /// A frame arrived.
    #[inline]
    pub fn frame(&mut self) {
        self.frames_since = self.frames_since.saturating_add(1);
    }

    /// The receive found nothing: until when to keep looking (`None`:
    /// sleep now).
    pub fn keep_looking_until(&mut self) -> Option<Instant> {
        let now = Instant::now();
        if let Some(last) = self.last_empty {
            let elapsed = now
                .duration_since(last)
                .as_nanos()
                .min(u128::from(u64::MAX)) as u64;
            if self.frames_since > 0 {
                let gap = elapsed / u64::from(self.frames_since);
                self.gap_ns = self.gap_ns.saturating_mul(3).saturating_add(gap) / 4;
            } else {
                // Nothing since the last empty look: the stream is drying
                // up, by at least that long.
                self.gap_ns = self.gap_ns.max(elapsed);
            }
        }
        let streaming = self.last_empty.is_some() && self.frames_since > 0;
        self.last_empty = Some(now);
        self.frames_since = 0;
        let gap = Duration::from_nanos(self.gap_ns);
        if !streaming || gap > MAX_SPIN {
            return None;
        }
        Some(now + (gap * 4).clamp(MIN_SPIN, MAX_SPIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_longer_only_while_frames_keep_coming() {
        let mut pace = Pace::default();
        assert_eq!(pace.keep_looking_until(), None, "no history: sleep");
        for _ in 0..100 {
            pace.frame();
        }
        let until = pace.keep_looking_until().expect("a stream: keep looking");
        let wait = until.saturating_duration_since(Instant::now());
        assert!(wait <= MAX_SPIN, "{wait:?}");
        // Nothing came: the next empty look sleeps at once.
        std::thread::sleep(MAX_SPIN * 2);
        assert_eq!(pace.keep_looking_until(), None);
    }
}
