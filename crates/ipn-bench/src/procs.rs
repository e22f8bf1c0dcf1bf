//! The worker processes of one case: this very binary started as
//! `ipn-bench worker ROLE ...`, their stdout read line by line, killed
//! and reaped when dropped.
//!
//! Invariants: no worker outlives the case that started it (dropping
//! [`Children`] kills what is left; workers also die with their parent,
//! see `worker`); a line is only ever taken by the `expect_lines` call
//! that asked for it, whatever order the workers speak in.

use std::io::BufRead;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::worker::{Role, WorkerSpec};

/// A line from child `usize`, or `None` at its end of output.
type Line = (usize, Option<String>);

/// Every child of the current case. Dropping it kills and reaps them all.
pub struct Children {
    children: Vec<(String, Child, Option<ChildStdin>)>,
    lines_tx: Sender<Line>,
    lines: Receiver<Line>,
    /// Lines read but not asked for yet, per child.
    pending: Vec<std::collections::VecDeque<Option<String>>>,
    interrupted: Arc<AtomicBool>,
}

impl Children {
    pub fn new(interrupted: Arc<AtomicBool>) -> Children {
        let (lines_tx, lines) = channel();
        Children {
            children: Vec::new(),
            lines_tx,
            lines,
            pending: Vec::new(),
            interrupted,
        }
    }

    /// Starts `ipn-bench worker ...`; returns its number.
    pub fn spawn(&mut self, name: String, spec: &WorkerSpec) -> Result<usize> {
        let exe = std::env::current_exe().context("finding the ipn-bench binary")?;
        let mut command = Command::new(&exe);
        if matches!(spec.role, Role::VdeSend | Role::VdeRecv) {
            // libvdeplug finds ipn's plugin next to this binary (a build
            // tree's target/release), else where the package put it.
            let mut path = std::ffi::OsString::new();
            if let Some(dir) = exe.parent() {
                path.push(dir);
            }
            if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
                path.push(":");
                path.push(old);
            }
            command.env("LD_LIBRARY_PATH", path);
        }
        let mut child = command
            .args(spec.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting bench worker {name}"))?;
        let id = self.children.len();
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let tx = self.lines_tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => {
                        if tx.send((id, Some(line))).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send((id, None));
        });
        self.children.push((name, child, stdin));
        self.pending.push(Default::default());
        Ok(id)
    }

    pub fn name(&self, id: usize) -> &str {
        &self.children[id].0
    }

    /// Waits for one line from each child in `ids`, in any order; each line
    /// must start with `word`. Returns them indexed like `ids`.
    pub fn expect_lines(
        &mut self,
        ids: &[usize],
        word: &str,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Option<String>> = vec![None; ids.len()];
        while got.iter().any(Option::is_none) {
            if self.interrupted.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let missing: Vec<&str> = ids
                    .iter()
                    .zip(&got)
                    .filter(|(_, g)| g.is_none())
                    .map(|(&id, _)| self.name(id))
                    .collect();
                bail!(
                    "timed out after {:?} waiting for '{word}' from {}",
                    timeout,
                    missing.join(", ")
                );
            }
            let ready = ids
                .iter()
                .zip(&got)
                .find(|(&id, g)| g.is_none() && !self.pending[id].is_empty())
                .map(|(&id, _)| id);
            let (id, line) = match ready {
                Some(id) => (id, self.pending[id].pop_front().unwrap()),
                None => {
                    match self
                        .lines
                        .recv_timeout(left.min(Duration::from_millis(100)))
                    {
                        Ok((id, line)) => self.pending[id].push_back(line),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => bail!("bench workers vanished"),
                    }
                    continue;
                }
            };
            let slot = ids.iter().position(|&i| i == id).unwrap();
            let line = line.ok_or_else(|| {
                anyhow!(
                    "bench worker {} exited before saying '{word}'",
                    self.name(id)
                )
            })?;
            if !line.starts_with(word) {
                bail!(
                    "bench worker {} said {line:?}, expected '{word}'",
                    self.name(id)
                );
            }
            if got[slot].is_some() {
                bail!("bench worker {} said '{word}' twice", self.name(id));
            }
            got[slot] = Some(line);
        }
        Ok(got.into_iter().map(Option::unwrap).collect())
    }

    /// Closes every child's stdin (senders leave then) and waits for all to
    /// exit successfully.
    pub fn finish(mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for (_, _, stdin) in &mut self.children {
            stdin.take();
        }
        for (name, child, _) in &mut self.children {
            loop {
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        bail!("bench worker {name} failed: {status}");
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("bench worker {name} did not exit");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child, stdin) in &mut self.children {
            stdin.take();
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Blocks SIGINT and SIGTERM in this process and sets the returned flag
/// when one arrives, so that the bench can stop, kill its children and
/// remove its files. Children restore the defaults (see `worker`).
pub fn watch_signals() -> Result<Arc<AtomicBool>> {
    use nix::sys::signal::{SigSet, Signal};
    let flag = Arc::new(AtomicBool::new(false));
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    let seen = flag.clone();
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            seen.store(true, Ordering::SeqCst);
        }
    });
    Ok(flag)
}
