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
//! Every deadline gets its frame, however late: a sender that falls behind
//! (preempted, or blocked in a send because the transport's queue is
//! full) sends the frames it owes at once, each stamped with its own
//! deadline, and latency is measured from there. Skipping the missed
//! deadlines instead would leave out exactly the frames a stalled
//! transport delays: an AF_UNIX sender blocks as soon as 10 datagrams
//! wait (`net.unix.max_dgram_qlen`), and the frames due while it was
//! blocked would never exist, while a transport that queues them (an ipn
//! ring holds 256) would be charged for every one. A real source (a
//! guest's queue) does not stop producing while the network is slow.
//! Every send's lateness, and how many sends were more than an interval
//! late, are kept for the report.

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
    /// Sends more than an interval after their deadline.
    pub late_sends: u64,
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
            late_sends: 0,
        }
    }

    /// Waits for the next deadline, if it is still ahead; returns the
    /// deadline (when the frame sent now was due) and the time now.
    pub fn wait(&mut self) -> (u64, u64) {
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
        let late = now - deadline;
        self.late.push(late);
        if late > self.interval {
            self.late_sends += 1;
        }
        self.next = deadline + self.interval;
        (deadline, now)
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
    fn paced_sends_keep_the_rate_and_owe_every_deadline() {
        let _ = nix::sys::prctl::set_timerslack(1);
        let interval = 100_000;
        let start = now_ns();
        let mut pacer = Pacer::new(start, interval, 5_000);
        let mut due = Vec::new();
        for k in 0..200 {
            if k == 100 {
                // A stall of five intervals: the frames due meanwhile are
                // sent late, not skipped.
                std::thread::sleep(std::time::Duration::from_nanos(5 * interval));
            }
            let (deadline, now) = pacer.wait();
            assert!(now >= deadline, "send {k} before its deadline");
            due.push(deadline);
        }
        for (k, &deadline) in due.iter().enumerate() {
            assert_eq!(
                deadline,
                start + k as u64 * interval,
                "send {k} is due on the grid"
            );
        }
        assert!(pacer.late_sends >= 3, "the stall's sends count as late");
        assert_eq!(pacer.late.len(), 200);
    }
}
