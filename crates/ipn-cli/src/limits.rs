//! When a receiving command (`sub`, `dump`) stops: after `--count` frames,
//! at its `--timeout`, or at SIGINT/SIGTERM. Every wait it is given is at
//! most [`TICK`], so a signal is noticed promptly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::signals::{self, TICK};
use crate::Outcome;

/// The `--count` and `--timeout` of a receiving command.
pub struct Limits {
    count: Option<u64>,
    timeout: f64,
    deadline: Option<Instant>,
    path: PathBuf,
}

/// What the command does next.
pub enum Next {
    /// Wait for a frame at most this long.
    Wait(Duration),
    /// Stop, for this reason.
    Stop(Outcome),
}

impl Limits {
    /// Starts the clock of `timeout` seconds (checked: 0 or more).
    pub fn start(count: Option<u64>, timeout: Option<f64>, path: &Path) -> anyhow::Result<Limits> {
        let deadline = match timeout {
            None => None,
            Some(secs) if secs.is_finite() && secs >= 0.0 => {
                Some(Instant::now() + Duration::from_secs_f64(secs.min(1e9)))
            }
            Some(secs) => bail!("--timeout {secs}: give a number of seconds, 0 or more"),
        };
        Ok(Limits {
            count,
            timeout: timeout.unwrap_or_default(),
            deadline,
            path: path.into(),
        })
    }

    /// After `done` frames: stop, or how long to wait for the next. Running
    /// out of time before `--count` frames is an error (`verb` says what was
    /// done with them: "received", "captured"); without `--count` it is the
    /// normal end.
    pub fn next(&self, done: u64, verb: &str) -> anyhow::Result<Next> {
        if self.count.is_some_and(|count| done >= count) {
            return Ok(Next::Stop(Outcome::Done));
        }
        if let Some(signal) = signals::caught() {
            return Ok(Next::Stop(Outcome::Signal(signal)));
        }
        let Some(deadline) = self.deadline else {
            return Ok(Next::Wait(TICK));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            return Ok(Next::Wait(left.min(TICK)));
        }
        match self.count {
            Some(count) => bail!(
                "timed out after {} s: {verb} {done} of {count} frames from {}",
                self.timeout,
                self.path.display()
            ),
            None => Ok(Next::Stop(Outcome::Done)),
        }
    }
}
