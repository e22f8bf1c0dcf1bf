//! Whether a receiver that found nothing keeps looking before it sleeps
//! (the look-ahead), and for how long.
//!
//! Sleeping costs the receiver a wake-up when the next frame comes: the
//! doorbell's system calls and a trip through the scheduler, about
//! [`WAKE_COST`] of its CPU. Looking costs the time spent looking. So by
//! default a receiver looks ahead only when it pays:
//!
//! - only while the recent gaps between frames (an exponentially weighted
//!   mean; bursts measured while awake: see below) are shorter than a
//!   wake-up costs: then the next frame is due before sleeping would even
//!   have paid for itself; at lower rates it sleeps at once, and a frame
//!   costs what it costs AF_UNIX, one wake-up;
//! - for about two gaps, never longer than [`WAKE_COST`];
//! - a look-ahead that found nothing makes the receiver skip the next
//!   one, two, four... up to [`MAX_SKIP`] chances to look ahead; one that
//!   found a frame clears that;
//! - within a budget: looking may cost at most [`SPIN_SHARE`] of a CPU
//!   above what sleeping would have cost. The budget earns that share of
//!   the time that passes, plus [`WAKE_COST`] for each look-ahead that
//!   found a frame (the wake-up it saved), and pays for every look-ahead
//!   with the time it took; it never banks more than [`MAX_BUDGET`]. An
//!   empty budget means sleeping.
//!
//! Busy polling ([`crate::JoinOptions::busy_poll`], like Linux's
//! `SO_BUSY_POLL`) is the opt-in for latency: look for that long every
//! time, whatever it costs.
//!
//! The clock is read once per empty look, not per frame: frames are
//! counted, and the gap is the time between two empty looks divided by the
//! frames received in between, less the time the receiver slept in
//! between if it then found several frames: frames then come in bursts (a
//! sender scheduled in slices, on a machine with more runnable processes
//! than CPUs; a lossless sender waiting for room), and the next one is due
//! as soon as those came while the receiver was awake, not after the pause
//! before them. A receiver woken for a single frame counts all the time
//! (its time awake says nothing of when the next comes): at low rates it
//! keeps sleeping at once. (Counting the time awake alone there made
//! receivers of a 100 000 frames/s stream on a busy machine look ahead,
//! yield the CPU for tens of microseconds, and find the next frame late:
//! a p50 latency of 12-63 µs instead of 1.5-1.7 µs in `ipn bench --sweep`.)
//! Under the model checker (`cfg(loom)`) the receiver never looks ahead:
//! wall-clock time is not modelled.
//!
//! Times are [`Moment`]s, nanoseconds of the monotonic clock in a `u64`:
//! the pace reads the clock after every frame a receiver takes last, and
//! `Instant`'s reading and subtracting (seconds and nanoseconds apart)
//! cost about a hundred instructions more each time.

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A reading of the monotonic clock (`CLOCK_MONOTONIC`, as `Instant`'s),
/// in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(u64);

impl Moment {
    /// Now. (The monotonic clock cannot fail to be read on Linux; if it
    /// somehow did, the pace would see no time pass, and sleep.)
    #[inline]
    pub fn now() -> Moment {
        use nix::time::{clock_gettime, ClockId};
        clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(Moment(0), |t| {
            Moment(
                (t.tv_sec() as u64)
                    .wrapping_mul(1_000_000_000)
                    .wrapping_add(t.tv_nsec() as u64),
            )
        })
    }

    /// Nanoseconds from `earlier` to `self`, zero if `earlier` is later.
    #[inline]
    pub fn nanos_since(self, earlier: Moment) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Moment {
    type Output = Moment;
    fn add(self, d: Duration) -> Moment {
        Moment(self.0.saturating_add(nanos(d)))
    }
}

impl AddAssign<Duration> for Moment {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub for Moment {
    type Output = Duration;
    /// The time from `earlier` to `self` (zero if `earlier` is later).
    fn sub(self, earlier: Moment) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier))
    }
}

/// What a wake-up costs a sleeping receiver in CPU time, about: the
/// per-frame CPU of an AF_UNIX datagram receiver woken for each frame.
/// On the quiet 2-vCPU machine of BENCHMARKS.md that is 2.3-2.6 µs at 5 000
/// and 100 000 frames/s (ipn's own sleeping receiver: 3.2 µs); under load
/// it is 9-12 µs, but a receiver that looks ahead as if wake-ups were that
/// dear spins through every gap of a 100 000 frames/s stream on a quiet
/// machine (7.3 µs of CPU a frame against AF_UNIX's 2.6). Gaps shorter
/// than this make looking ahead cheaper than sleeping.
pub const WAKE_COST: Duration = Duration::from_micros(4);
/// Share of a CPU looking ahead may cost above what sleeping would have.
pub const SPIN_SHARE: u32 = 10; // percent
/// Most budget banked, so that a long quiet spell does not pay for a long
/// burst of spinning.
pub const MAX_BUDGET: Duration = Duration::from_micros(500);
/// Most look-ahead chances skipped after look-aheads that found nothing.
pub const MAX_SKIP: u32 = 64;

/// The recent pace of arrivals, and what looking ahead has cost.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Opt-in busy polling: look this long every time (zero: off).
    busy_poll_ns: u64,
    /// When we last found nothing.
    last_empty: Option<Moment>,
    /// Frames received since.
    frames_since: u32,
    /// Time spent asleep since, in nanoseconds.
    asleep_ns: u64,
    /// Mean gap between frames (exponentially weighted), in nanoseconds.
    gap_ns: u64,
    /// What looking ahead may still spend, in nanoseconds.
    budget_ns: u64,
    /// Chances to look ahead still to skip, and how many the next miss
    /// makes us skip.
    skip: u32,
    backoff: u32,
}

impl Pace {
    /// A receiver that has seen no frame yet; `busy_poll` as
    /// [`crate::JoinOptions::busy_poll`].
    pub fn new(busy_poll: Duration) -> Pace {
        Pace {
            busy_poll_ns: nanos(busy_poll),
            last_empty: None,
            frames_since: 0,
            asleep_ns: 0,
            gap_ns: u64::MAX,
            budget_ns: 0,
            skip: 0,
            backoff: 1,
        }
    }

    /// A frame arrived.
    #[inline]
    pub fn frame(&mut self) {
        self.frames_since = self.frames_since.saturating_add(1);
    }

    /// The receiver slept this long, waiting for a doorbell.
    #[inline]
    pub fn slept(&mut self, d: Duration) {
        self.asleep_ns = self.asleep_ns.saturating_add(nanos(d));
    }

    /// The receive found nothing at `now`: until when to keep looking
    /// (`None`: sleep now). The caller reports what came of it with
    /// [`Pace::looked`].
    pub fn keep_looking_until(&mut self, now: Moment) -> Option<Moment> {
        self.observe_empty(now);
        if cfg!(loom) {
            return None;
        }
        if self.busy_poll_ns != 0 {
            return Some(Moment(now.0.saturating_add(self.busy_poll_ns)));
        }
        if self.gap_ns >= nanos(WAKE_COST) {
            return None;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        // Two gaps: the next frame is due within one. Not a partial look
        // on a thin budget: it would miss, and only cost.
        let look = (self.gap_ns * 2).clamp(1_000, nanos(WAKE_COST));
        (look <= self.budget_ns).then(|| Moment(now.0.saturating_add(look)))
    }

    /// A look-ahead that started at `started` ended at `now`, having
    /// found a frame or not.
    pub fn looked(&mut self, started: Moment, now: Moment, found: bool) {
        if self.busy_poll_ns != 0 {
            return;
        }
        let spent = now.nanos_since(started);
        self.budget_ns = self.budget_ns.saturating_sub(spent);
        if found {
            self.earn(nanos(WAKE_COST));
            self.skip = 0;
            self.backoff = 1;
        } else {
            self.skip = self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_SKIP);
        }
    }

    /// Updates the gap estimate and the budget at an empty look.
    fn observe_empty(&mut self, now: Moment) {
        if let Some(last) = self.last_empty {
            let elapsed = now.nanos_since(last);
            self.earn(elapsed / 100 * u64::from(SPIN_SHARE));
            if self.frames_since > 0 {
                let gap = self.burst_time(elapsed) / u64::from(self.frames_since);
                self.gap_ns = if self.gap_ns == u64::MAX {
                    gap
                } else {
                    (self.gap_ns.saturating_mul(3).saturating_add(gap)) / 4
                };
            } else if self.gap_ns != u64::MAX {
                // Nothing since the last empty look: the stream is drying
                // up, by at least that long.
                self.gap_ns = self.gap_ns.max(elapsed);
            }
        }
        self.last_empty = Some(now);
        self.frames_since = 0;
        self.asleep_ns = 0;
    }

    /// The part of `elapsed` (since the last empty look) over which the
    /// frames since came: all of it, less the time asleep if the receiver
    /// found several frames (module docs).
    fn burst_time(&self, elapsed: u64) -> u64 {
        if self.frames_since > 1 {
            elapsed.saturating_sub(self.asleep_ns)
        } else {
            elapsed
        }
    }

    fn earn(&mut self, ns: u64) {
        self.budget_ns = self.budget_ns.saturating_add(ns).min(nanos(MAX_BUDGET));
    }

    /// The mean gap between recent frames (`None`: no stream seen yet).
    #[cfg(test)]
    fn gap(&self) -> Option<Duration> {
        (self.gap_ns != u64::MAX).then(|| Duration::from_nanos(self.gap_ns))
    }
}

const fn nanos(d: Duration) -> u64 {
    let n = d.as_nanos();
    if n > u64::MAX as u128 {
        u64::MAX
    } else {
        n as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pace` frames every `gap`, with an empty look after each,
    /// starting at `t`; returns the time after the last one and the
    /// look-aheads it was offered.
    fn stream(pace: &mut Pace, mut t: Moment, gap: Duration, frames: u32) -> (Moment, u32) {
        let mut offered = 0;
        for _ in 0..frames {
            t += gap;
            pace.frame();
            if let Some(until) = pace.keep_looking_until(t) {
                offered += 1;
                // The next frame comes within the look-ahead: it paid.
                let found = until >= t + gap;
                let end = if found { t + gap } else { until };
                pace.looked(t, end, found);
            }
        }
        (t, offered)
    }

    #[test]
    fn sleeps_at_once_when_frames_are_further_apart_than_a_wake_up() {
        let mut pace = Pace::new(Duration::ZERO);
        let t = Moment::now();
        assert_eq!(pace.keep_looking_until(t), None, "no history: sleep");
        for gap_us in [20u64, 50, 200, 1000, 10_000] {
            let (_, offered) = stream(&mut pace, t, Duration::from_micros(gap_us), 1000);
            assert_eq!(offered, 0, "gap {gap_us} us: looked ahead");
        }
    }

    #[test]
    fn looks_ahead_on_a_fast_stream_and_it_pays() {
        let mut pace = Pace::new(Duration::ZERO);
        let t = Moment::now();
        let (_, offered) = stream(&mut pace, t, Duration::from_micros(2), 10_000);
        assert!(offered > 9_000, "offered {offered} of 10000");
        assert!(pace.gap().unwrap() <= Duration::from_micros(3));
    }

    #[test]
    fn looking_ahead_costs_at_most_its_share_above_sleeping() {
        // Gaps just under a wake-up, and every look-ahead misses (the
        // frame comes right after it gives up): the worst case.
        let mut pace = Pace::new(Duration::ZERO);
        let start = Moment::now();
        let gap = WAKE_COST - Duration::from_micros(1);
        pace.frame();
        pace.keep_looking_until(start);
        let mut t = start;
        let mut spent = Duration::ZERO;
        for _ in 0..100_000 {
            t += gap;
            pace.frame();
            if let Some(until) = pace.keep_looking_until(t) {
                spent += until - t;
                pace.looked(t, until, false);
            }
        }
        let elapsed = t - start;
        let share = spent.as_secs_f64() / elapsed.as_secs_f64();
        assert!(share <= 0.10, "looked ahead {share:.3} of the time");
    }

    #[test]
    fn a_quiet_network_stops_the_look_ahead() {
        let mut pace = Pace::new(Duration::ZERO);
        let (t, offered) = stream(&mut pace, Moment::now(), Duration::from_micros(2), 100);
        assert!(offered > 0);
        // Nothing comes for a millisecond: the next empty look sleeps.
        assert_eq!(pace.keep_looking_until(t + Duration::from_millis(1)), None);
    }

    #[test]
    fn a_burst_after_a_sleep_is_measured_by_the_time_awake() {
        // 32 frames 500 ns apart, then 200 µs asleep, again and again (a
        // sender scheduled in slices): the gap is the burst's, and the
        // receiver looks ahead at its end.
        let mut pace = Pace::new(Duration::ZERO);
        let mut t = Moment::now();
        let pause = Duration::from_micros(200);
        let mut offered = 0;
        pace.keep_looking_until(t);
        for _ in 0..50 {
            t += pause;
            pace.slept(pause);
            for _ in 0..32 {
                t += Duration::from_nanos(500);
                pace.frame();
            }
            if let Some(until) = pace.keep_looking_until(t) {
                offered += 1;
                pace.looked(t, until, true);
            }
        }
        assert!(pace.gap().unwrap() <= Duration::from_micros(1));
        assert!(offered > 40, "offered {offered} of 50");
    }

    #[test]
    fn a_single_frame_after_a_sleep_counts_the_sleep() {
        // One frame per wake-up, 50 µs apart: the receiver sleeps at once,
        // as at any rate below one frame per wake-up's cost.
        let mut pace = Pace::new(Duration::ZERO);
        let mut t = Moment::now();
        pace.keep_looking_until(t);
        for _ in 0..1000 {
            t += Duration::from_micros(50);
            pace.slept(Duration::from_micros(49));
            pace.frame();
            assert_eq!(pace.keep_looking_until(t), None);
        }
        assert!(pace.gap().unwrap() >= Duration::from_micros(40));
    }

    #[test]
    fn busy_poll_looks_every_time_for_as_long_as_asked() {
        let busy = Duration::from_micros(50);
        let mut pace = Pace::new(busy);
        let t = Moment::now();
        assert_eq!(pace.keep_looking_until(t), Some(t + busy));
        let (_, offered) = stream(&mut pace, t, Duration::from_millis(1), 10);
        assert_eq!(offered, 10);
    }
}
