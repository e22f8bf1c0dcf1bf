//! The child processes of `ipn bench`: one sender or one receiver each,
//! over ipn or over plain AF_UNIX datagram sockets.
//!
//! Protocol with the parent, one line each on stdout:
//!
//! - `ready` once joined / bound (receivers) or joined (sender);
//! - sender: `sent COUNT ELAPSED_NS`;
//! - receiver: `recv COUNT ELAPSED_NS` then, in latency mode, one line
//!   `lat NS NS ...` with every one-way latency it measured.
//!
//! A frame carries its sequence number (bytes 0..8, `STOP` ends the run) and
//! the sender's CLOCK_MONOTONIC time in nanoseconds (bytes 8..16).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::time::{clock_gettime, ClockId};

use super::BenchArgs;

/// Sequence number of the frame that ends a run.
pub const STOP: u64 = u64::MAX;

/// CLOCK_MONOTONIC in nanoseconds: comparable between processes.
pub fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn stamp(frame: &mut [u8], seq: u64, ns: u64) {
    frame[..8].copy_from_slice(&seq.to_le_bytes());
    frame[8..16].copy_from_slice(&ns.to_le_bytes());
}

fn unstamp(frame: &[u8]) -> (u64, u64) {
    let seq = u64::from_le_bytes(frame[..8].try_into().unwrap());
    let ns = u64::from_le_bytes(frame[8..16].try_into().unwrap());
    (seq, ns)
}

/// Name of AF_UNIX receiver `i`'s socket in the case directory.
pub fn unix_socket_path(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("r{i}.sock"))
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Dies with the parent: a bench child must never outlive `ipn bench`.
fn tie_to_parent(parent: u32) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    // The parent may have died before the line above took effect.
    if std::os::unix::process::parent_id() != parent {
        bail!("parent {parent} is gone");
    }
    // The parent blocks SIGINT/SIGTERM to handle them in one thread; the
    // mask is inherited through exec, so restore the defaults here.
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGINT);
    set.add(nix::sys::signal::Signal::SIGTERM);
    set.thread_unblock()?;
    Ok(())
}

/// Parameters of one child, passed as hidden `--w-*` arguments.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub role: String,
    pub path: PathBuf,
    pub size: usize,
    pub receivers: u32,
    pub index: u32,
    pub busy: bool,
    pub seconds: f64,
    /// 0: send as fast as possible; else one frame every this many ns.
    pub interval_ns: u64,
}

impl WorkerSpec {
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "bench".into(),
            "--worker".into(),
            self.role.clone(),
            "--w-parent".into(),
            std::process::id().to_string(),
            "--w-path".into(),
            self.path.display().to_string(),
            "--w-size".into(),
            self.size.to_string(),
            "--w-receivers".into(),
            self.receivers.to_string(),
            "--w-index".into(),
            self.index.to_string(),
            "--w-mode".into(),
            if self.busy { "busy" } else { "sleep" }.into(),
            "--w-seconds".into(),
            self.seconds.to_string(),
            "--w-interval-ns".into(),
            self.interval_ns.to_string(),
        ]
    }

    fn from_args(args: &BenchArgs, role: &str) -> Result<WorkerSpec> {
        Ok(WorkerSpec {
            role: role.into(),
            path: args.w_path.clone().context("--w-path missing")?,
            size: args.w_size.max(16),
            receivers: args.w_receivers,
            index: args.w_index,
            busy: args.w_mode == "busy",
            seconds: args.w_seconds,
            interval_ns: args.w_interval_ns,
        })
    }
}

/// Entry point of a child (`ipn bench --worker ROLE ...`).
pub fn run_worker(args: &BenchArgs, role: &str) -> Result<()> {
    tie_to_parent(args.w_parent)?;
    // Sleeps of a few microseconds (the paced sender) must not be
    // stretched by the default 50 us timer slack.
    let _ = nix::sys::prctl::set_timerslack(1);
    let spec = WorkerSpec::from_args(args, role)?;
    match role {
        "ipn-send" => ipn_send(&spec),
        "ipn-recv" => ipn_recv(&spec),
        "unix-send" => unix_send(&spec),
        "unix-recv" => unix_recv(&spec),
        other => bail!("unknown bench worker role {other:?}"),
    }
}

/// Sleeps until CLOCK_MONOTONIC reaches `ns`.
fn sleep_until(ns: u64) {
    use nix::sys::time::TimeSpec;
    use nix::time::{clock_nanosleep, ClockNanosleepFlags};
    let at = TimeSpec::new((ns / 1_000_000_000) as _, (ns % 1_000_000_000) as _);
    let _ = clock_nanosleep(
        ClockId::CLOCK_MONOTONIC,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &at,
    );
}

/// Sends for `spec.seconds`, paced or flat out, calling `send` per frame;
/// then the STOP frame. Returns (frames sent, elapsed ns).
fn send_loop(spec: &WorkerSpec, mut send: impl FnMut(&[u8]) -> Result<()>) -> Result<(u64, u64)> {
    let mut frame = vec![0u8; spec.size];
    for (i, b) in frame.iter_mut().enumerate().skip(16) {
        *b = i as u8;
    }
    let start = now_ns();
    let end = start + (spec.seconds * 1e9) as u64;
    let mut seq = 0u64;
    let mut next = start;
    let mut now = start;
    loop {
        if spec.interval_ns > 0 {
            // Paced: sleep until the next send time (absolute, so no
            // drift), leaving the CPU to the receivers.
            if now < next {
                sleep_until(next);
                now = now_ns();
            }
            next += spec.interval_ns;
            if next < now {
                next = now + spec.interval_ns;
            }
        } else if seq & 63 == 0 {
            now = now_ns();
        }
        if now >= end {
            break;
        }
        stamp(&mut frame, seq, now_ns());
        send(&frame)?;
        seq += 1;
    }
    let elapsed = now_ns() - start;
    stamp(&mut frame, STOP, now_ns());
    send(&frame)?;
    Ok((seq, elapsed))
}

/// Receives until STOP; `recv` returns the length of one frame (or None if
/// nothing was there, in busy mode). Reports on stdout.
fn recv_loop(
    spec: &WorkerSpec,
    mut recv: impl FnMut(&mut [u8]) -> Result<Option<usize>>,
) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    let latency = spec.interval_ns > 0;
    let mut samples: Vec<u64> = Vec::new();
    let mut count = 0u64;
    let mut first = 0u64;
    loop {
        let Some(len) = recv(&mut buf)? else {
            std::hint::spin_loop();
            continue;
        };
        let now = now_ns();
        if len < 16 {
            bail!("received a {len}-byte frame, not a bench frame");
        }
        let (seq, sent) = unstamp(&buf);
        if seq == STOP {
            let elapsed = if count > 0 { now - first } else { 0 };
            say(&format!("recv {count} {elapsed}"))?;
            if latency {
                let mut line = String::with_capacity(samples.len() * 6 + 4);
                line.push_str("lat");
                for s in &samples {
                    line.push(' ');
                    line.push_str(&s.to_string());
                }
                say(&line)?;
            }
            return Ok(());
        }
        if count == 0 {
            first = now;
        }
        count += 1;
        if latency {
            samples.push(now.saturating_sub(sent));
        }
    }
}

fn ipn_send(spec: &WorkerSpec) -> Result<()> {
    let options = ipn::JoinOptions {
        description: "bench sender".into(),
        read: false,
        write: true,
        ..Default::default()
    };
    let mut port = ipn::Port::join(&spec.path, &options)
        .with_context(|| format!("joining {}", spec.path.display()))?;
    say("ready")?;
    let (sent, elapsed) = send_loop(spec, |frame| Ok(port.send(frame)?))?;
    say(&format!("sent {sent} {elapsed}"))?;
    // Stay joined until the parent has everyone's report: a lossy reader
    // that was lapped still finds STOP in our ring.
    wait_for_parent_eof();
    Ok(())
}

fn ipn_recv(spec: &WorkerSpec) -> Result<()> {
    let options = ipn::JoinOptions {
        description: format!("bench receiver {}", spec.index),
        read: true,
        write: false,
        ..Default::default()
    };
    let mut port = ipn::Port::join(&spec.path, &options)
        .with_context(|| format!("joining {}", spec.path.display()))?;
    say("ready")?;
    if spec.busy {
        recv_loop(spec, |buf| match port.try_recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(ipn::RecvError::WouldBlock) => Ok(None),
            Err(e) => Err(e.into()),
        })
    } else {
        recv_loop(spec, |buf| Ok(Some(port.recv(buf)?)))
    }
}

fn unix_send(spec: &WorkerSpec) -> Result<()> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addresses = (0..spec.receivers)
        .map(|i| UnixAddr::new(&unix_socket_path(&spec.path, i)))
        .collect::<nix::Result<Vec<_>>>()?;
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    say("ready")?;
    let (sent, elapsed) = send_loop(spec, |frame| {
        for address in &addresses {
            loop {
                match sendto(raw, frame, address, MsgFlags::empty()) {
                    Ok(_) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e).context("sendto"),
                }
            }
        }
        Ok(())
    })?;
    say(&format!("sent {sent} {elapsed}"))?;
    wait_for_parent_eof();
    Ok(())
}

fn unix_recv(spec: &WorkerSpec) -> Result<()> {
    let path = unix_socket_path(&spec.path, spec.index);
    let fd = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(&path)?)
        .with_context(|| format!("binding {}", path.display()))?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    say("ready")?;
    let flags = if spec.busy {
        MsgFlags::MSG_DONTWAIT
    } else {
        MsgFlags::empty()
    };
    recv_loop(spec, |buf| match recv(raw, buf, flags) {
        Ok(n) => Ok(Some(n)),
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => Ok(None),
        Err(e) => Err(e).context("recv"),
    })
}

/// Blocks until the parent closes our stdin (or dies), at most a minute.
fn wait_for_parent_eof() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(60));
}
