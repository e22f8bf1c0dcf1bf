//! `--busy-poll US`: opt-in busy polling for the commands that join a
//! network and receive (`tap`, `grab`, `vxlan`, `vhost-user`, `sub`,
//! `dump`), as `busypoll=US` in an `ipn://` URL and
//! `JoinOptions::busy_poll` in the library.
//!
//! Without it a port sleeps as soon as it finds nothing, unless frames
//! come closer together than a wake-up costs (then it looks ahead briefly,
//! within 10 % of a CPU). With it, every receive that finds nothing keeps
//! looking for US microseconds first, like Linux's `SO_BUSY_POLL`: the
//! lowest latency at any rate, paid for with up to US of CPU per receive.

#![deny(unsafe_code)]

use std::time::Duration;

use clap::Args;
use ipn::JoinOptions;

/// The receive options of a command that joins a network.
#[derive(Args, Debug, Clone, Default)]
pub struct BusyPollArgs {
    /// Busy-poll: after finding no frame, keep looking US microseconds (0 to 100000) before sleeping, like SO_BUSY_POLL: lowest latency, up to US of CPU per receive (default: look ahead only while frames come closer together than a wake-up costs)
    #[arg(long, value_name = "US", value_parser = parse_busy_poll)]
    pub busy_poll: Option<Duration>,
}

impl BusyPollArgs {
    /// What `JoinOptions::busy_poll` gets: zero when not given.
    pub fn duration(&self) -> Duration {
        self.busy_poll.unwrap_or(Duration::ZERO)
    }
}

/// Microseconds, 0 to `JoinOptions::MAX_BUSY_POLL`.
fn parse_busy_poll(text: &str) -> Result<Duration, String> {
    let most = JoinOptions::MAX_BUSY_POLL.as_micros();
    text.trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_micros)
        .filter(|d| d.as_micros() <= most)
        .ok_or_else(|| {
            format!("'{text}' is not a busy poll: give microseconds from 0 (off) to {most}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_up_to_the_library_limit() {
        assert_eq!(parse_busy_poll("50"), Ok(Duration::from_micros(50)));
        assert_eq!(parse_busy_poll("0"), Ok(Duration::ZERO));
        assert_eq!(parse_busy_poll("100000"), Ok(JoinOptions::MAX_BUSY_POLL));
        for bad in ["", "-1", "100001", "5ms", "x"] {
            let e = parse_busy_poll(bad).unwrap_err();
            assert!(e.contains("0 (off) to 100000"), "{bad}: {e}");
        }
    }
}
