//! Helpers shared by the `ipn` command's integration tests: running the
//! binary and other programs, reading what they said, and guards for what
//! a test makes.
//!
//! - [`Net`]: a network path (and files next to it) unique to the test;
//! - [`Bg`]: a background process;
//! - [`Attached`]: a running `ipn tap`/`grab`/`vxlan`, its standard error
//!   read line by line;
//! - `Lab` (from `ipn_test_support`, with `require_root`, `must`...):
//!   network namespaces, interfaces and helper processes;
//! - [`Paused`]: a process stopped with SIGSTOP, resumed when dropped;
//! - [`StalledNet`]: a lossless network whose only reader is paused;
//! - [`tmux::Tmux`]: a program in a real terminal, its screen read back.
//!
//! Invariants:
//! - Everything a test makes is owned by a guard whose `Drop` removes it,
//!   so it goes also when the test panics. The guard exists before the
//!   thing is made, so a half-made thing is removed too; `Drop` never
//!   panics (a panic while unwinding would abort the test binary).
//! - Paths and interface names hold the test process's id, so a leftover of
//!   a killed run never collides with the next run; within one test binary
//!   each test passes its own name.
//! - A test that cannot run (not root, a tool missing) fails saying what
//!   to do: nothing here ever skips a test.

#![allow(dead_code)] // each test file uses a part of this module

pub mod tmux;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use ipn_test_support::remove_anything;
pub use ipn_test_support::{must, run as run_program, text};

/// The `ipn` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ipn");

/// How long a test waits for what normally takes milliseconds (a port to
/// join, a process to stop) before failing.
pub const LONG: Duration = Duration::from_secs(10);

/// A command running the `ipn` binary under test.
pub fn ipn() -> Command {
    Command::new(BIN)
}

/// Runs `ipn ARGS` to completion, with nothing on standard input.
pub fn run(args: &[&str]) -> Output {
    run_program(BIN, args)
}

/// Runs `ipn ARGS` with `input` on standard input.
pub fn run_with_input(args: &[&str], input: &[u8]) -> Output {
    let mut child = ipn()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running ipn");
    // The command may exit before reading (e.g. on an error): ignore EPIPE.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

/// What `output` printed on standard output, as text.
pub fn stdout(output: &Output) -> String {
    text(&output.stdout)
}

/// What `output` printed on standard error, as text.
pub fn stderr(output: &Output) -> String {
    text(&output.stderr)
}

/// One frame in the vde_plug stream format: a 2-byte big-endian length,
/// then the frame.
pub fn record(frame: &[u8]) -> Vec<u8> {
    let mut r = (frame.len() as u16).to_be_bytes().to_vec();
    r.extend_from_slice(frame);
    r
}

/// The `ports` array of `ipn status --json`.
#[track_caller]
pub fn ports(status: &Value) -> &Vec<Value> {
    status["ports"].as_array().expect("ports is an array")
}

/// A network path unique to this test and process, and the files next to
/// it that the test asked for with [`Net::file`]; all removed on drop.
pub struct Net {
    pub path: PathBuf,
    files: RefCell<Vec<PathBuf>>,
}

impl Net {
    /// The path for test `name`, with nothing at it (a leftover of an
    /// earlier run is removed).
    pub fn new(name: &str) -> Net {
        let path = std::env::temp_dir().join(format!("ipn-cli-test-{name}-{}", std::process::id()));
        remove_anything(&path);
        Net {
            path,
            files: RefCell::new(Vec::new()),
        }
    }

    /// A network made by `ipn create PATH EXTRA`.
    #[track_caller]
    pub fn created(name: &str, extra: &[&str]) -> Net {
        let net = Net::new(name);
        let mut args = vec!["create", net.p()];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "create failed: {}", stderr(&out));
        net
    }

    pub fn p(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The path `PATH.name` next to the network, removed with it.
    pub fn file(&self, name: &str) -> PathBuf {
        let file = PathBuf::from(format!("{}.{name}", self.p()));
        remove_anything(&file);
        self.files.borrow_mut().push(file.clone());
        file
    }

    /// `ipn status PATH --json`, which must succeed.
    #[track_caller]
    pub fn status_json(&self) -> Value {
        let out = run(&["status", self.p(), "--json"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    /// The ports `ipn status --json` lists.
    pub fn ports(&self) -> Vec<Value> {
        ports(&self.status_json()).clone()
    }

    /// Waits until `check` holds for `ipn status --json`; fails the test
    /// after [`LONG`], naming `what` it waited for.
    #[track_caller]
    pub fn wait_for(&self, what: &str, check: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + LONG;
        loop {
            let status = self.status_json();
            if check(&status) {
                return;
            }
            assert!(Instant::now() < deadline, "never saw {what}: {status:#}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the network has exactly `readers` readers.
    #[track_caller]
    pub fn wait_for_readers(&self, readers: u64) {
        self.wait_for(&format!("{readers} readers"), |s| {
            s["readers"].as_u64() == Some(readers)
        });
    }

    /// Sends `frames` through `ipn pub --raw`, which must succeed.
    #[track_caller]
    pub fn publish(&self, frames: &[Vec<u8>]) {
        let records: Vec<u8> = frames.iter().flat_map(|f| record(f)).collect();
        let out = run_with_input(&["pub", "--raw", self.p()], &records);
        assert!(out.status.success(), "pub failed: {}", stderr(&out));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Ports still joined keep the unlinked file; `rm --force` also
        // removes their doorbell sockets.
        let _ = ipn().args(["rm", "--force", self.p()]).output();
        remove_anything(&self.path);
        for file in self.files.borrow().iter() {
            remove_anything(file);
        }
    }
}

/// A background process, killed if the test ends before it does.
pub struct Bg(Option<Child>);

impl Bg {
    /// Starts `ipn ARGS`, standard input empty, its output captured.
    pub fn spawn(args: &[&str]) -> Bg {
        let child = ipn()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running ipn");
        Bg(Some(child))
    }

    /// Takes charge of a process started otherwise.
    pub fn adopt(child: Child) -> Bg {
        Bg(Some(child))
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.0.as_ref().unwrap().id() as i32)
    }

    /// Waits at most `limit` for the process to end; fails the test, with
    /// what it said, if it does not.
    #[track_caller]
    pub fn finish(mut self, limit: Duration) -> Output {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + limit;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "did not exit within {limit:?}; stdout {:?} stderr {:?}",
                    stdout(&out),
                    stderr(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().unwrap()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SIGKILL ends a stopped (SIGSTOP) process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process stopped with SIGSTOP: alive, so its port stays live (a
/// lossless sender waits for it), but reading nothing, as if hung.
/// Resumed with SIGCONT on drop.
pub struct Paused(Pid);

impl Paused {
    /// Stops `pid` and waits until the kernel shows it stopped.
    #[track_caller]
    pub fn stop(pid: Pid) -> Paused {
        let paused = Paused(pid);
        kill(pid, Signal::SIGSTOP).unwrap();
        let deadline = Instant::now() + LONG;
        while process_state(pid) != Some('T') {
            assert!(Instant::now() < deadline, "{pid} never stopped");
            std::thread::sleep(Duration::from_millis(5));
        }
        paused
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// A lossless network with rings of [`StalledNet::RING`] frames whose one
/// reader, an `ipn sub`, is paused: a port sending into it blocks after
/// that many frames, in a lossless send, until the reader resumes or dies.
/// On drop the reader resumes, is killed, and the network is removed.
pub struct StalledNet {
    // Dropped in this order.
    paused: Paused,
    reader: Bg,
    pub net: Net,
}

impl StalledNet {
    /// Frames a sender gets through before it blocks.
    pub const RING: u64 = 16;

    #[track_caller]
    pub fn new(name: &str) -> StalledNet {
        let ring = StalledNet::RING.to_string();
        let net = Net::created(name, &["--lossless", "--ring", &ring]);
        let reader = Bg::spawn(&["sub", net.p(), "--description", "paused reader"]);
        net.wait_for_readers(1);
        StalledNet {
            paused: Paused::stop(reader.pid()),
            reader,
            net,
        }
    }

    pub fn p(&self) -> &str {
        self.net.p()
    }

    /// Waits until the port described `description` has sent
    /// [`StalledNet::RING`] frames, then checks that it sends no more for
    /// 300 ms: it is blocked in a send.
    #[track_caller]
    pub fn wait_for_blocked_sender(&self, description: &str) {
        let sent = |s: &Value| port_described(s, description).map(|p| p["tx_frames"].clone());
        self.net
            .wait_for(&format!("{description} fill the ring"), |s| {
                sent(s) == Some(StalledNet::RING.into())
            });
        std::thread::sleep(Duration::from_millis(300));
        let status = self.net.status_json();
        assert_eq!(
            sent(&status),
            Some(StalledNet::RING.into()),
            "{description} was not blocked: {status:#}"
        );
    }

    /// Asserts that the paused reader's port is the only one left.
    #[track_caller]
    pub fn assert_only_the_reader_is_left(&self) {
        let status = self.net.status_json();
        let left = ports(&status);
        assert_eq!(left.len(), 1, "{status:#}");
        assert_eq!(left[0]["pid"], self.reader.pid().as_raw(), "{status:#}");
        assert_eq!(left[0]["state"], "active", "{status:#}");
    }
}

/// The state letter of `/proc/PID/stat` (R, S, T...), if the process exists.
fn process_state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The port of `ipn status --json` with this description, if any.
pub fn port_described<'a>(status: &'a Value, description: &str) -> Option<&'a Value> {
    ports(status)
        .iter()
        .find(|p| p["description"] == description)
}

/// A running `ipn tap`, `ipn grab` or `ipn vxlan`, its standard error read
/// line by line (by a thread, so that waiting for a line has a deadline).
pub struct Attached {
    child: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
    /// The line it printed when it joined the network.
    pub joined: String,
}

impl Attached {
    /// Starts `ipn ARGS` and waits for its "joined ...; Ctrl-C to stop" line.
    #[track_caller]
    pub fn start(args: &[&str]) -> Attached {
        let mut command = ipn();
        command.args(args);
        Attached::spawn(command)
    }

    /// Starts `ipn ARGS` in network namespace `ns` (`ip netns exec`, which
    /// execs ipn: the process is ipn itself) and waits for its start line.
    #[track_caller]
    pub fn start_in(ns: &str, args: &[&str]) -> Attached {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, BIN]).args(args);
        Attached::spawn(command)
    }

    /// Runs `script` with `sh -c`; it must end by exec'ing ipn, so that
    /// the process is ipn itself. Waits for ipn's start line.
    #[track_caller]
    pub fn start_shell(script: &str) -> Attached {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        Attached::spawn(command)
    }

    #[track_caller]
    fn spawn(mut command: Command) -> Attached {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running ipn");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut attached = Attached {
            child: Some(child),
            lines,
            seen: Vec::new(),
            joined: String::new(),
        };
        attached.joined = attached.wait_for("joined");
        assert!(
            attached.joined.contains("Ctrl-C to stop"),
            "{}",
            attached.joined
        );
        attached
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// Waits for a line of standard error containing `word`.
    #[track_caller]
    pub fn wait_for(&mut self, word: &str) -> String {
        let deadline = Instant::now() + LONG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(word) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {word:?} from ipn; it said: {:?}; exit: {:?}",
                    self.seen,
                    self.child.as_mut().unwrap().try_wait()
                ),
            }
        }
    }

    /// SIGINT, then the exit status and everything it said.
    #[track_caller]
    pub fn stop(self) -> (ExitStatus, String) {
        self.signal_and_wait(Signal::SIGINT, LONG)
    }

    /// Sends `signal`, then the exit status and everything it said; fails
    /// the test unless it exits within `limit` of the signal.
    #[track_caller]
    pub fn signal_and_wait(self, signal: Signal, limit: Duration) -> (ExitStatus, String) {
        let sent = Instant::now();
        kill(self.pid(), signal).unwrap();
        let ended = self.wait(limit);
        eprintln!("[ipn] {signal} to exit: {:?}", sent.elapsed());
        ended
    }

    /// The exit status and everything it said, once it exits; fails the
    /// test if that takes longer than `limit`.
    #[track_caller]
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ipn did not stop within {limit:?}: {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader thread ends at EOF: collect the rest.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `ip netns exec NS ping ARGS`, which must succeed; returns its summary
/// lines (packets transmitted and received, round-trip times).
#[track_caller]
pub fn ping(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["netns", "exec", ns, "ping"];
    all.extend_from_slice(args);
    let out = run_program("ip", &all);
    let said = text(&out.stdout);
    assert!(
        out.status.success(),
        "ping {} from {ns} failed: {said}{}",
        args.join(" "),
        text(&out.stderr)
    );
    said.lines()
        .filter(|l| l.contains("packets transmitted") || l.starts_with("rtt"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `ip netns exec NS ping ARGS`, which must fail for want of replies (exit
/// status 1, nothing received), not for another reason (exit status 2: a
/// bad address, no route). Give it a short `-W`: it waits that long.
#[track_caller]
pub fn ping_fails(ns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", ns, "ping"];
    all.extend_from_slice(args);
    let out = run_program("ip", &all);
    let said = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "ping {} from {ns} was to fail for want of replies: {said}{}",
        args.join(" "),
        text(&out.stderr)
    );
    assert!(said.contains(" 0 received"), "{said}");
}
