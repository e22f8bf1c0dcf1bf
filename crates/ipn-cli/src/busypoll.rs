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

use std::time::Duration;

use clap::Args;

/// The receive options of a command that joins a network.
#[derive(Args, Debug, Clone, Default)]
pub struct BusyPollArgs {
    /// Busy-poll: after finding no frame, keep looking US microseconds (0 to 100000) before sleeping, like SO_BUSY_POLL: lowest latency, up to US of CPU per receive (default: look ahead only while frames come closer together than a wake-up costs)
    #[arg(long, value_name = "US", value_parser = ipn::values::busy_poll)]
    pub busy_poll: Option<Duration>,
}

impl BusyPollArgs {
    /// What `JoinOptions::busy_poll` gets: zero when not given.
    pub fn duration(&self) -> Duration {
        self.busy_poll.unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        busy: BusyPollArgs,
    }

    fn parse(args: &[&str]) -> Result<Duration, String> {
        Cli::try_parse_from(["test"].iter().chain(args))
            .map(|cli| cli.busy.duration())
            .map_err(|e| e.to_string())
    }

    /// `ipn::values::busy_poll` reads the option; a refusal names it.
    #[test]
    fn microseconds_up_to_the_library_limit_or_an_error_naming_the_option() {
        assert_eq!(parse(&[]), Ok(Duration::ZERO));
        assert_eq!(parse(&["--busy-poll", "50"]), Ok(Duration::from_micros(50)));
        assert_eq!(
            parse(&["--busy-poll", "100000"]),
            Ok(ipn::JoinOptions::MAX_BUSY_POLL)
        );
        for bad in ["", "-1", "100001", "5ms", "x"] {
            let e = parse(&[&format!("--busy-poll={bad}")]).unwrap_err();
            assert!(e.contains("--busy-poll"), "{bad}: {e}");
            assert!(e.contains("0 (off) to 100000"), "{bad}: {e}");
        }
    }
}
