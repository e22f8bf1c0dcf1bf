//! Peer processes: this test binary, run again in a "peer role".
//!
//! The parent spawns `current_exe() --exact peer_process_entry
//! --nocapture` with the role in the environment. The peer talks back with
//! lines `@ipn-peer ...` on its stdout (everything else libtest prints is
//! ignored) and takes commands, one per line, on its stdin. Every blocking
//! call on either side has a timeout, and a peer exits by itself after
//! [`PEER_LIFETIME`] whatever happens, so an orphan never lingers.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipn::{Config, JoinOptions, Message, OpenError, Port, RecvError, SendError, Shutdown};

use super::frame::{self, Tracker};

/// Environment variable naming the role of a peer process.
pub const ROLE_ENV: &str = "IPN_TEST_PEER";
/// Environment variable with the role's arguments, separated by newlines.
pub const ARGS_ENV: &str = "IPN_TEST_PEER_ARGS";
/// Name of the test every test file defines as the peer entry point.
pub const ENTRY_TEST: &str = "peer_process_entry";
/// Prefix of the lines a peer says to its parent.
pub const TAG: &str = "@ipn-peer ";
/// A peer exits on its own after this long.
pub const PEER_LIFETIME: Duration = Duration::from_secs(90);

// ----- parent side ------------------------------------------------------

/// A running peer process. Dropping it kills it.
#[derive(Debug)]
pub struct Peer {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Peer {
    /// Spawns a peer running `role` with `args`.
    pub fn spawn(role: &str, args: &[&str]) -> Peer {
        let exe = std::env::current_exe().expect("current test executable");
        Peer::spawn_via(&[], &exe, role, args)
    }

    /// Spawns a peer through a wrapper command (e.g. `setpriv ... --`),
    /// running the test executable `exe`.
    pub fn spawn_via(wrapper: &[String], exe: &Path, role: &str, args: &[&str]) -> Peer {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        command
            .args([
                "--exact",
                ENTRY_TEST,
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(ROLE_ENV, role)
            .env(ARGS_ENV, args.join("\n"))
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let name = format!("{role}({})", args.join(" "));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning peer {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find(TAG) {
                    if tx.send(line[at + TAG.len()..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Peer {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the peer wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next line the peer says, waiting at most `timeout`.
    pub fn expect(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "peer {}: said nothing within {timeout:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait(Duration::from_secs(5));
                std::thread::sleep(Duration::from_millis(50)); // let stderr arrive
                panic!(
                    "peer {} exited ({status:?}) without saying more; stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
        }
    }

    /// The next line, which must start with `word`; returns the rest.
    pub fn expect_word(&mut self, word: &str, timeout: Duration) -> String {
        let line = self.expect(timeout);
        match line.strip_prefix(word) {
            Some(rest) => rest.trim().to_owned(),
            None => panic!(
                "peer {}: expected `{word} ...`, got `{line}`; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// Writes one command line to the peer.
    pub fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("peer stdin open");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("peer {}: writing `{line}`: {e}", self.name));
    }

    /// Sends a script command and returns the peer's answer: `Ok(rest)`
    /// for `ok rest`, `Err(rest)` for `err rest`.
    pub fn command(&mut self, line: &str, timeout: Duration) -> Result<String, String> {
        self.tell(line);
        let answer = self.expect(timeout);
        if let Some(rest) = answer.strip_prefix("ok") {
            Ok(rest.trim().to_owned())
        } else if let Some(rest) = answer.strip_prefix("err") {
            Err(rest.trim().to_owned())
        } else {
            panic!("peer {}: `{line}` answered `{answer}`", self.name)
        }
    }

    /// A script command that must succeed (10 s at most).
    pub fn ok(&mut self, line: &str) -> String {
        self.command(line, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("peer {}: `{line}` failed: {e}", self.name))
    }

    /// `kill -9`, then reaps the process.
    pub fn kill(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Tells the peer to exit and checks that it did, successfully.
    pub fn finish(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "exit");
        }
        match self.wait(Duration::from_secs(10)) {
            Some(status) if status.success() => {}
            other => {
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "peer {} ended with {other:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// One `send-seq` process sends `count` frames of 16 to 1514 bytes to
/// network `path`, read by one `recv-verify` process per entry of `slow`
/// (`(every, micros)`: it pauses `micros` every `every` frames; `(0, 0)`:
/// never), each checking every frame's sequence number and bytes. Asserts
/// that every reader got every frame, with no gap and no drop.
pub fn lossless_stream(path: &str, count: u64, slow: &[(u32, u32)], limit: Duration) {
    let n = count.to_string();
    let mut readers: Vec<Peer> = slow
        .iter()
        .map(|(every, micros)| {
            let (every, micros) = (every.to_string(), micros.to_string());
            Peer::spawn("recv-verify", &[path, "1", &n, "1", &every, &micros])
        })
        .collect();
    for r in &mut readers {
        r.expect_word("ready", limit);
    }
    let mut sender = Peer::spawn("send-seq", &[path, "1", &n, "1514", "w"]);
    sender.expect_word("ready", limit);
    sender.tell("go");
    sender.expect_word("done", limit);
    for r in &mut readers {
        let done = r.expect_word("done", limit);
        let v: Vec<u64> = done.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(
            v,
            vec![count, 0, count, 0],
            "received gaps rx_frames rx_dropped"
        );
    }
    for p in readers.into_iter().chain([sender]) {
        p.finish();
    }
}

// ----- peer side --------------------------------------------------------

/// Runs the peer role named in the environment, if any, and exits; returns
/// at once in a normal test run.
pub fn run_if_peer() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    std::thread::spawn(|| {
        std::thread::sleep(PEER_LIFETIME);
        eprintln!("peer: lived {PEER_LIFETIME:?}; exiting");
        std::process::exit(3);
    });
    let args = std::env::var(ARGS_ENV).unwrap_or_default();
    let args: Vec<&str> = args.split('\n').filter(|a| !a.is_empty()).collect();
    match role.as_str() {
        "script" => script(),
        "blast" => blast(&args),
        "drain" => drain(&args),
        "send-seq" => send_seq(&args),
        "recv-verify" => recv_verify(&args),
        "stream" => stream(&args),
        other => panic!("unknown peer role {other}"),
    }
    std::process::exit(0);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{TAG}{line}");
    let _ = out.flush();
}

/// Reads one command line from the parent; `None` at end of input.
fn read_command() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

/// Waits for `word` from the parent; exits at end of input.
fn wait_for(word: &str) {
    loop {
        match read_command() {
            Some(line) if line == word => return,
            Some(_) => {}
            None => std::process::exit(0),
        }
    }
}

fn options(mode: &str, description: &str) -> JoinOptions {
    JoinOptions {
        description: description.to_owned(),
        read: mode.contains('r'),
        write: mode.contains('w'),
        ..Default::default()
    }
}

/// A short name for an error variant, then its message.
pub fn open_error_text(e: &OpenError) -> String {
    let kind = match e {
        OpenError::NotFound { .. } => "NotFound",
        OpenError::NotANetwork { .. } => "NotANetwork",
        OpenError::AlreadyExists { .. } => "AlreadyExists",
        OpenError::PermissionDenied { .. } => "PermissionDenied",
        OpenError::Full { .. } => "Full",
        OpenError::Busy { .. } => "Busy",
        OpenError::InvalidConfig(_) => "InvalidConfig",
        OpenError::NoSpace { .. } => "NoSpace",
        OpenError::Io { .. } => "Io",
    };
    format!("{kind} {e}")
}

fn join(path: &str, mode: &str, description: &str) -> Port {
    Port::join(path, &options(mode, description))
        .unwrap_or_else(|e| panic!("peer joining {path}: {e}"))
}

/// Interactive peer: one command per stdin line, one answer per command.
///
/// `join PATH r|w|rw DESC`, `tag N`, `events on|off`, `send COUNT LEN`,
/// `try-send LEN`, `recv COUNT TIMEOUT_MS`, `message TIMEOUT_MS`,
/// `shutdown read|write|both`, `status`, `leave`, `exit`.
fn script() {
    let mut port: Option<Port> = None;
    // Shared files opened by `lock-slots`, kept open so their locks stay.
    let mut held: Vec<std::fs::File> = Vec::new();
    let mut tag = std::process::id();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 65536];
    say("ready");
    while let Some(line) = read_command() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match (words.as_slice(), port.as_mut()) {
            (["exit"], _) => break,
            (["join" | "join-or-create", path, mode, description], _) => {
                let joined = if words[0] == "join" {
                    Port::join(path, &options(mode, description))
                } else {
                    Port::join_or_create(path, &Config::default(), &options(mode, description))
                };
                match joined {
                    Ok(p) => {
                        let index = p.index();
                        port = Some(p);
                        format!("ok {index}")
                    }
                    Err(e) => format!("err {}", open_error_text(&e)),
                }
            }
            (["lock-slots", path, from, to], _) => lock_slots(path, from, to, &mut held),
            (["swap-links", dir, prefix, count, target, seconds], _) => {
                swap_links(dir, prefix, count, target, seconds)
            }
            (["tag", n], _) => {
                tag = n.parse().unwrap();
                "ok".into()
            }
            (["leave"], _) => {
                port = None;
                "ok".into()
            }
            (_, None) => "err not joined".into(),
            (["events", on], Some(p)) => {
                p.set_membership_events(*on == "on");
                "ok".into()
            }
            (["send", count, len], Some(p)) => {
                let count: u64 = count.parse().unwrap();
                let len: usize = len.parse().unwrap();
                let mut result = format!("ok {count}");
                for _ in 0..count {
                    let f = frame::make(tag, seq, len);
                    if let Err(e) = p.send_timeout(&f, Duration::from_secs(10)) {
                        result = format!("err after {seq}: {e}");
                        break;
                    }
                    seq += 1;
                }
                result
            }
            (["try-send", len], Some(p)) => {
                match p.try_send(&frame::make(tag, seq, len.parse().unwrap())) {
                    Ok(()) => {
                        seq += 1;
                        "ok".into()
                    }
                    Err(SendError::WouldBlock) => "err WouldBlock".into(),
                    Err(e) => format!("err {e}"),
                }
            }
            (["recv", count, ms], Some(p)) => {
                let count: usize = count.parse().unwrap();
                let timeout = Duration::from_millis(ms.parse().unwrap());
                let mut got = Vec::new();
                let mut error = None;
                while got.len() < count {
                    match p.recv_timeout(&mut buf, timeout) {
                        Ok(n) => match frame::check(&buf[..n]) {
                            Ok((t, s)) => got.push(format!("{t}:{s}")),
                            Err(e) => {
                                error = Some(e);
                                break;
                            }
                        },
                        Err(e) => {
                            error = Some(format!("after {} frames: {e}", got.len()));
                            break;
                        }
                    }
                }
                match error {
                    None => format!("ok {}", got.join(" ")),
                    Some(e) => format!("err {e}"),
                }
            }
            (["message", ms], Some(p)) => {
                let timeout = Duration::from_millis(ms.parse().unwrap());
                match p.recv_message(&mut buf, Some(timeout)) {
                    Ok(Message::Frame(n)) => match frame::check(&buf[..n]) {
                        Ok((t, s)) => format!("ok frame {t}:{s}"),
                        Err(e) => format!("err {e}"),
                    },
                    Ok(Message::Membership(m)) => {
                        format!("ok membership {} {}", m.readers, m.writers)
                    }
                    Err(RecvError::TimedOut) => "err TimedOut".into(),
                    Err(e) => format!("err {e}"),
                }
            }
            (["shutdown", how], Some(p)) => {
                p.shutdown(match *how {
                    "read" => Shutdown::Read,
                    "write" => Shutdown::Write,
                    _ => Shutdown::Both,
                });
                "ok".into()
            }
            (["status"], Some(p)) => {
                let s = p.status();
                format!(
                    "ok {} {} {}",
                    s.membership.readers,
                    s.membership.writers,
                    s.ports.len()
                )
            }
            _ => format!("err unknown command `{line}`"),
        };
        say(&answer);
    }
}

/// `blast PATH MODE`: sends frames as fast as it can, forever (until
/// killed). Says `running` once some frames went out.
fn blast(args: &[&str]) {
    let mut port = join(args[0], args[1], "blast");
    let tag = std::process::id();
    let mut said = false;
    for seq in 0u64.. {
        let f = frame::make(tag, seq, frame::varied_len(seq, 1514));
        match port.send_timeout(&f, Duration::from_millis(50)) {
            Ok(()) | Err(SendError::TimedOut) => {}
            Err(e) => panic!("blast: {e}"),
        }
        if !said && seq >= 16 {
            say("running");
            said = true;
        }
        let mut buf = [0u8; 1514];
        if port.lossless() && args[1].contains('r') {
            while port.try_recv(&mut buf).is_ok() {}
        }
    }
}

/// `lock-slots PATH FROM TO`: takes the liveness locks of slots
/// `FROM..TO` of the network at PATH without joining (what a member may do
/// to keep others out), and holds them until the peer exits.
fn lock_slots(path: &str, from: &str, to: &str, held: &mut Vec<std::fs::File>) -> String {
    let shm = std::path::Path::new(path).join("shm");
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&shm)
    {
        Ok(file) => file,
        Err(e) => return format!("err {}: {e}", shm.display()),
    };
    let (from, to): (u64, u64) = (from.parse().unwrap(), to.parse().unwrap());
    for index in from..to {
        let lock = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: (ipn::raw_layout::LOCK_BASE + index) as libc::off_t,
            l_len: 1,
            l_pid: 0,
        };
        if let Err(e) = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_OFD_SETLK(&lock)) {
            return format!("err slot {index}: {e}");
        }
    }
    held.push(file);
    "ok".into()
}

/// `swap-links DIR PREFIX COUNT TARGET SECONDS`: for SECONDS, in the
/// background, makes `DIR/PREFIX0` .. `DIR/PREFIX{COUNT-1}` symbolic links
/// to TARGET again and again, each replaced atomically (a link made under
/// a private name, renamed over the name): the fastest way a member has to
/// swap names under another process.
fn swap_links(dir: &str, prefix: &str, count: &str, target: &str, seconds: &str) -> String {
    let dir = std::path::PathBuf::from(dir);
    let (prefix, target) = (prefix.to_owned(), std::path::PathBuf::from(target));
    let count: u32 = count.parse().unwrap();
    let until = Instant::now() + Duration::from_secs(seconds.parse().unwrap());
    std::thread::spawn(move || {
        let scratch = dir.join(format!(".swap.{}", std::process::id()));
        while Instant::now() < until {
            for i in 0..count {
                let _ = std::fs::remove_file(&scratch);
                if std::os::unix::fs::symlink(&target, &scratch).is_ok() {
                    let _ = std::fs::rename(&scratch, dir.join(format!("{prefix}{i}")));
                }
            }
        }
        let _ = std::fs::remove_file(&scratch);
    });
    "ok".into()
}

/// `stream PATH`: joins, then sends frames and receives what waits, until
/// an operation fails; says `running` once frames flowed, then
/// `error MESSAGE` with the first error, and exits normally.
fn stream(args: &[&str]) {
    let mut port = join(args[0], "rw", "stream");
    let mut buf = [0u8; 1514];
    let tag = std::process::id();
    for seq in 0u64.. {
        let sent = port
            .send(&frame::make(tag, seq, 200))
            .map_err(|e| e.to_string());
        let received = match port.try_recv(&mut buf) {
            Ok(_) | Err(RecvError::WouldBlock) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent.and(received) {
            say(&format!("error {e}"));
            return;
        }
        if seq == 100 {
            say("running");
        }
    }
}

/// `drain PATH MODE`: receives forever (until killed). Says `running`
/// once joined.
fn drain(args: &[&str]) {
    let mut port = join(args[0], args[1], "drain");
    say("running");
    let mut buf = [0u8; 65536];
    loop {
        match port.recv_timeout(&mut buf, Duration::from_millis(20)) {
            Ok(n) => {
                frame::check(&buf[..n]).unwrap();
            }
            Err(RecvError::TimedOut) => {}
            Err(e) => panic!("drain: {e}"),
        }
    }
}

/// `send-seq PATH TAG COUNT MAXLEN MODE`: joins, says `ready INDEX`,
/// waits for `go`, sends frames `TAG:0..COUNT` of varied lengths (waiting
/// up to 20 s per frame), says `done COUNT MICROS`, waits for `exit`.
fn send_seq(args: &[&str]) {
    let tag: u32 = args[1].parse().unwrap();
    let count: u64 = args[2].parse().unwrap();
    let max_len: usize = args[3].parse().unwrap();
    let mut port = join(args[0], args[4], &format!("send-seq {tag}"));
    say(&format!("ready {}", port.index()));
    wait_for("go");
    let start = Instant::now();
    for seq in 0..count {
        let f = frame::make(tag, seq, frame::varied_len(seq, max_len));
        if let Err(e) = port.send_timeout(&f, Duration::from_secs(20)) {
            say(&format!("failed at {seq}: {e}"));
            panic!("send-seq: frame {seq}: {e}");
        }
    }
    say(&format!("done {count} {}", start.elapsed().as_micros()));
    wait_for("exit");
}

/// `recv-verify PATH TAGS COUNT LOSSLESS SLOW_EVERY SLOW_US`: joins
/// read-only, says `ready INDEX`, receives until every sender in TAGS
/// (comma separated) delivered its frame `COUNT - 1`, checking every frame
/// and the per-sender order (and, if LOSSLESS is 1, that nothing is
/// missing). Every SLOW_EVERY frames it sleeps SLOW_US microseconds (0: never).
/// With a seventh argument `hold`, it waits for `go` before reading at all.
/// Then says `done RECEIVED GAPS RX_FRAMES RX_DROPPED` (the last two from
/// `status()`), and waits for `exit`.
fn recv_verify(args: &[&str]) {
    let tags: Vec<u32> = args[1].split(',').map(|t| t.parse().unwrap()).collect();
    let count: u64 = args[2].parse().unwrap();
    let lossless = args[3] == "1";
    let slow_every: u64 = args[4].parse().unwrap();
    let slow = Duration::from_micros(args[5].parse().unwrap());
    let mut port = join(args[0], "r", "recv-verify");
    say(&format!("ready {}", port.index()));
    if args.get(6) == Some(&"hold") {
        wait_for("go");
    }
    let mut tracker = Tracker::default();
    let mut buf = vec![0u8; port.mtu() as usize];
    let deadline = Instant::now() + Duration::from_secs(40);
    while tags.iter().any(|&t| tracker.next(t) < count) {
        assert!(
            Instant::now() < deadline,
            "recv-verify: timed out; got {} frames, next expected {:?}",
            tracker.received,
            tags.iter().map(|&t| tracker.next(t)).collect::<Vec<_>>()
        );
        match port.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(n) => {
                if let Err(e) = tracker.record(&buf[..n], lossless) {
                    say(&format!("bad {e}"));
                    panic!("recv-verify: {e}");
                }
                if slow_every > 0 && tracker.received % slow_every == 0 {
                    std::thread::sleep(slow);
                }
            }
            Err(RecvError::TimedOut) => {}
            Err(e) => panic!("recv-verify: {e}"),
        }
    }
    let status = port.status();
    let me = status
        .ports
        .iter()
        .find(|p| p.index == port.index())
        .expect("own port in status");
    say(&format!(
        "done {} {} {} {}",
        tracker.received, tracker.gaps, me.rx_frames, me.rx_dropped
    ));
    wait_for("exit");
}

/// Where the test executable is (for peers run through a wrapper).
pub fn current_exe() -> PathBuf {
    std::env::current_exe().expect("current test executable")
}
