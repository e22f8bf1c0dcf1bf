//! Helpers shared by the integration tests.
//!
//! - [`TestNet`]: a network at a unique temporary path (test name + pid),
//!   removed when the guard drops.
//! - [`peer`]: other processes. A test spawns its own test binary again
//!   with `IPN_TEST_PEER` set; that process runs only the test
//!   `peer_process_entry`, which every test file defines and which calls
//!   [`peer::run_if_peer`]. No extra build step, and the peer runs exactly
//!   the library code under test.
//! - [`frame`]: frames that carry a sender tag and a sequence number, so
//!   that receivers can check order, loss and integrity.
//! - [`Watchdog`]: aborts the test binary if a test hangs, so that a hang
//!   is a failure with a message instead of a stuck CI run.
//! - [`wait_until_asleep_in_poll`] and [`readable_now`]: what a test may
//!   know of a blocking receive instead of sleeping and hoping: the thread
//!   sleeps in poll(2); a doorbell waits in the socket.

#![allow(dead_code)] // each test file uses a part of this module

pub mod frame;
pub mod member;
pub mod peer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipn::{Config, Network};
use ipn_test_support::remove_anything;

/// A unique path under the temp directory for test `name`.
pub fn unique_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ipn-test-{}-{name}", std::process::id()))
}

/// A network (or, for the bad-input tests, whatever the test puts there)
/// at a unique path, removed when this guard drops.
#[derive(Debug)]
pub struct TestNet {
    pub path: PathBuf,
}

impl TestNet {
    /// Creates a network at a fresh unique path for test `name`.
    pub fn create(name: &str, config: &Config) -> TestNet {
        let net = TestNet::empty(name);
        Network::create(&net.path, config)
            .unwrap_or_else(|e| panic!("creating {}: {e}", net.path.display()));
        net
    }

    /// A unique path with nothing at it yet.
    pub fn empty(name: &str) -> TestNet {
        let path = unique_path(name);
        remove_anything(&path);
        TestNet { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a string, for peer arguments.
    pub fn arg(&self) -> String {
        self.path.to_str().expect("utf-8 temp path").to_owned()
    }

    /// `PATH/shm`.
    pub fn shm(&self) -> PathBuf {
        self.path.join("shm")
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if Network::remove(&self.path, true).is_err() {
            remove_anything(&self.path);
        }
    }
}

/// Aborts the whole test process if it is not dropped within `limit`: a
/// hang becomes a loud failure naming what hung.
#[derive(Debug)]
pub struct Watchdog {
    done: Arc<AtomicBool>,
}

impl Watchdog {
    pub fn new(what: &str, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let what = what.to_owned();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if flag.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !flag.load(Ordering::Acquire) {
                // Straight to fd 2: the test harness captures `eprintln!`,
                // and that capture is lost when the process aborts.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "watchdog: {what} did not finish within {limit:?}: it hangs; aborting"
                );
                std::process::abort();
            }
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
}

/// Runs `f` on another thread and returns its result, failing the test if
/// it takes longer than `limit` (the thread is left behind).
pub fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(_) => panic!("{what} did not return within {limit:?}: it hangs"),
    }
}

/// Polls `cond` every millisecond until it holds or `limit` passes;
/// returns how long it took, or `None` on timeout.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The calling thread's id (as the kernel numbers it), for
/// [`wait_until_asleep_in_poll`].
pub fn thread_id() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Waits until thread `tid` of this process sleeps on a doorbell, in
/// poll(2) or in the blocking recv(2) a blocking receive waits in, and
/// fails the test if it does not within
/// `limit`. Read from /proc/self/task/TID: the state `S` (sleeping) and
/// the number of the system call it sleeps in. This proves a blocking
/// receive reached its wait, which a sleep of the test thread only hopes.
pub fn wait_until_asleep_in_poll(tid: i32, limit: Duration) {
    let task = format!("/proc/self/task/{tid}");
    let mut seen = String::new();
    let asleep = wait_until(limit, || {
        let state = std::fs::read_to_string(format!("{task}/stat")).unwrap_or_default();
        let syscall = std::fs::read_to_string(format!("{task}/syscall")).unwrap_or_default();
        seen = format!("stat: {state} syscall: {syscall}");
        // The state follows the command name, which is in parentheses.
        let sleeping = state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('S'));
        let number = syscall
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok());
        sleeping && number.is_some_and(|n: libc::c_long| DOORBELL_WAITS.contains(&n))
    });
    assert!(
        asleep.is_some(),
        "thread {tid} never slept on its doorbell within {limit:?}; last seen {seen}"
    );
}

/// The system calls poll(2) and recv(2) may be made with.
#[cfg(target_arch = "x86_64")]
const DOORBELL_WAITS: &[libc::c_long] = &[
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
];
#[cfg(not(target_arch = "x86_64"))]
const DOORBELL_WAITS: &[libc::c_long] = &[libc::SYS_ppoll, libc::SYS_recvfrom, libc::SYS_recvmsg];

/// Whether `fd` is readable now (a doorbell waits in the socket).
pub fn readable_now(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).expect("poll") == 1
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
}

/// In a soak run (`IPN_SOAK` set), a guard that, if the check it covers
/// panics, writes `case` as a ready-to-paste regression test calling
/// `check` to `target/soak/CHECK.rs`. Proptest shrinks a failure by running
/// smaller cases, so the file ends up holding the minimal one;
/// `scripts/soak.sh` prints it.
pub fn soak_guard<C: std::fmt::Debug>(check: &'static str, case: &C) -> SoakGuard {
    SoakGuard {
        check,
        case: std::env::var_os("IPN_SOAK").map(|_| format!("{case:#?}")),
    }
}

#[derive(Debug)]
pub struct SoakGuard {
    check: &'static str,
    case: Option<String>,
}

impl Drop for SoakGuard {
    fn drop(&mut self) {
        let Some(case) = &self.case else { return };
        if !std::thread::panicking() {
            return;
        }
        // Debug prints a Vec as `[..]`; the cases' Vec fields become vec![].
        let case = case.replace(": [", ": vec![").replace("\n", "\n    ");
        let test = format!(
            "#[test]\nfn regression_{check}_found_by_soak() {{\n    {check}({case});\n}}\n",
            check = self.check
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/soak");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{}.rs", self.check)), test);
    }
}
