//! Clocks and statistics shared by the workers and the report.
//!
//! - [`now_ns`]: CLOCK_MONOTONIC, the one clock every process of a run
//!   shares, so a stamp taken by the sender is comparable with the
//!   receiver's clock;
//! - [`cpu_ns`]: the calling process's CPU time (user + system), from
//!   `getrusage(RUSAGE_SELF)`;
//! - [`percentile`]: nearest-rank on sorted samples.

use nix::sys::resource::{getrusage, UsageWho};
use nix::time::{clock_gettime, ClockId};

/// CLOCK_MONOTONIC in nanoseconds.
pub fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// CPU time this process used so far, user + system, in nanoseconds
/// (the kernel accounts it in microseconds at best).
pub fn cpu_ns() -> u64 {
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return 0;
    };
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    (micros(usage.user_time()) + micros(usage.system_time())) * 1000
}

/// The `p` quantile (0..=1) of `sorted`, nearest rank; `None` if empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), Some(500));
        assert_eq!(percentile(&v, 0.99), Some(990));
        assert_eq!(percentile(&v, 0.999), Some(999));
        assert_eq!(percentile(&v, 1.0), Some(1000));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_ns();
        let start = now_ns();
        while now_ns() - start < 30_000_000 {
            std::hint::spin_loop();
        }
        assert!(cpu_ns() > before, "30 ms of spinning used no CPU time");
    }
}
