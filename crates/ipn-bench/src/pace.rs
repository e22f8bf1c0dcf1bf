//! The paced sender's clock: one frame every `interval` nanoseconds, on a
//! grid of absolute deadlines (`start + k * interval`), so the rate does
//! not drift however late one send is.
//!
//! How it waits for a deadline:
//!
//! 1. the worker's timer slack is 1 ns (`PR_SET_TIMERSLACK`; the default
//!    50 us would stretch every sleep by up to a whole 50 us interval);
//! 2. it sleeps with `clock_nanosleep(TIMER_ABSTIME)` until `overshoot +
//!    spin` before the deadline, where `overshoot` tracks the median of
//!    how late such sleeps woke it so far (a few to tens of microseconds
//!    on a VM): [`OVERSHOOT_STEP`] up after a sleep that overshot the
//!    estimate, as much down after one that did not, so one long
//!    preemption does not make every later wait spin longer;
//! 3. it spins on `clock_gettime` for the rest: about `spin` when the
//!    sleep overshoots by its median, so a sender at 20 000 frames/s
//!    spins some 10 % of a CPU, not the half that spinning from the
//!    previous send would take.
//!
//! A deadline missed by more than a whole interval (the sender was
//! preempted) is skipped, not made up with a burst: a burst would queue
//! frames behind each other and measure the queue, not the path. Every
//! send's lateness and the skipped deadlines are kept for the report.

use nix::sys::time::TimeSpec;
use nix::time::{clock_nanosleep, ClockId, ClockNanosleepFlags};

use crate::measure::now_ns;

/// How much one sleep moves the overshoot estimate, in ns.
const OVERSHOOT_STEP: u64 = 250;

/// See the module docs.
#[derive(Debug)]
pub struct Pacer {
    interval: u64,
    spin: u64,
    next: u64,
    /// Estimated median of how late `clock_nanosleep` wakes, in ns.
    overshoot: u64,
    /// How late each send was after its deadline, in ns.
    pub late: Vec<u64>,
    /// Deadlines skipped because the sender was more than an interval late.
    pub missed: u64,
}

impl Pacer {
    /// A grid starting at `start`.
    pub fn new(start: u64, interval: u64, spin: u64) -> Pacer {
        Pacer {
            interval: interval.max(1),
            spin,
            next: start,
            overshoot: 0,
            late: Vec::new(),
            missed: 0,
        }
    }

    /// Waits for the next deadline; returns the time it got there.
    pub fn wait(&mut self) -> u64 {
        let deadline = self.next;
        let mut now = now_ns();
        let wake = deadline.saturating_sub(self.overshoot + self.spin);
        if now < wake {
            sleep_until(wake);
            now = now_ns();
            // The estimate only decides when to start spinning: never
            // more than half an interval early.
            self.overshoot = if now - wake > self.overshoot {
                (self.overshoot + OVERSHOOT_STEP).min(self.interval / 2)
            } else {
                self.overshoot.saturating_sub(OVERSHOOT_STEP)
            };
        }
        while now < deadline {
            std::hint::spin_loop();
            now = now_ns();
        }
        self.late.push(now - deadline);
        let behind = (now - deadline) / self.interval;
        self.missed += behind;
        self.next = deadline + (behind + 1) * self.interval;
        now
    }
}

/// Sleeps until CLOCK_MONOTONIC reaches `ns`.
fn sleep_until(ns: u64) {
    let at = TimeSpec::new((ns / 1_000_000_000) as _, (ns % 1_000_000_000) as _);
    let _ = clock_nanosleep(
        ClockId::CLOCK_MONOTONIC,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &at,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_sends_keep_the_rate_without_bursts() {
        let _ = nix::sys::prctl::set_timerslack(1);
        let interval = 100_000;
        let start = now_ns();
        let mut pacer = Pacer::new(start, interval, 5_000);
        let mut times = Vec::new();
        for _ in 0..200 {
            times.push(pacer.wait());
        }
        // At most one send per slot of the grid: a late send is not
        // made up with a burst.
        let slot = |t: u64| (t - start) / interval;
        for (k, pair) in times.windows(2).enumerate() {
            assert!(
                slot(pair[1]) > slot(pair[0]),
                "sends {k} and {} share a slot",
                k + 1
            );
        }
        let slots = (times[199] - start) / interval;
        assert_eq!(slots, 199 + pacer.missed, "grid slots = sends + skipped");
        assert_eq!(pacer.late.len(), 200);
    }
}
