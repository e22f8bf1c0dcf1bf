//! The worker processes of `ipn-bench`: one sender, one receiver, or the
//! holder of a case's idle ports, over ipn or over plain AF_UNIX datagram
//! sockets. Started by the parent as `ipn-bench worker ROLE ...`.
//!
//! Protocol with the parent, one line each on stdout:
//!
//! - `ready` once joined / bound (receivers), joined (sender), or holding
//!   every idle port (idle);
//! - sender: `sent COUNT ELAPSED_NS CPU_NS`, and when paced, `pace
//!   MISSED LATE_P50_NS LATE_P99_NS LATE_MAX_NS` (see `pace`);
//! - receiver: `recv COUNT ELAPSED_NS CPU_NS POLL_TIMEOUTS`, then, in
//!   latency mode, `lat NS NS ...` with every one-way latency it measured.
//!   ELAPSED and CPU cover the same window: from the first frame to STOP.
//!
//! Senders and the idle holder stay joined until the parent closes their
//! standard input, so that a lapped lossy reader still finds STOP in the
//! ring and the idle ports stay for the whole case.
//!
//! A frame is an Ethernet broadcast (so that vde_switch floods it and
//! learns one address), then its sequence number (bytes 14..22; `STOP`
//! ends the run) and the sender's CLOCK_MONOTONIC time in nanoseconds
//! (bytes 22..30).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};

use crate::measure::{cpu_ns, now_ns, percentile};
use crate::pace::Pacer;

/// Sequence number of the frame that ends a run.
pub const STOP: u64 = u64::MAX;

/// What a worker process is.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Joins the network write-only and sends.
    IpnSend,
    /// Joins the network read-only and receives in the `--reader` pattern.
    IpnRecv,
    /// Joins `--ports` write-only ports that never send, and holds them.
    IpnIdle,
    /// `sendto()`s every receiver's socket in turn, blocking.
    UnixSend,
    /// Binds its socket and receives in the `--reader` pattern.
    UnixRecv,
    /// Opens `--url` with libvdeplug and `vde_send`s.
    VdeSend,
    /// Opens `--url` with libvdeplug; polls its datafd, then one
    /// `vde_recv` per readiness (QEMU's vde backend, `vde_plug`).
    VdeRecv,
}

/// How a receiver waits for frames.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// `poll()` the fd for POLLIN, then exactly one receive per readiness
    /// (ipn: `Port::try_recv_after_poll`; AF_UNIX: `recv`): QEMU's and
    /// vde_plug's pattern.
    Poll,
    /// A blocking receive (ipn: `Port::recv`; AF_UNIX: `recv`).
    Sleep,
    /// Spins on a non-blocking receive (ipn: `Port::try_recv`; AF_UNIX:
    /// `recv(MSG_DONTWAIT)`).
    Busy,
}

impl Reader {
    pub fn name(self) -> &'static str {
        match self {
            Reader::Poll => "poll",
            Reader::Sleep => "sleep",
            Reader::Busy => "busy",
        }
    }
}

/// Parameters of one worker: its command line, built by the parent with
/// [`WorkerSpec::to_args`] and parsed back by clap.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerSpec {
    /// What this process is
    #[arg(value_enum)]
    pub role: Role,
    /// Process id of the ipn-bench that started it: the worker dies with it
    #[arg(long)]
    pub parent: u32,
    /// The case's network (ipn) or socket directory (AF_UNIX)
    #[arg(long)]
    pub path: PathBuf,
    /// Frame size in bytes (at least 16: sequence number and stamp)
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Receivers in the case (the AF_UNIX sender sends to each)
    #[arg(long, default_value_t = 1)]
    pub receivers: u32,
    /// This receiver's number
    #[arg(long, default_value_t = 0)]
    pub index: u32,
    /// How a receiver waits for frames
    #[arg(long, value_enum, default_value_t = Reader::Sleep)]
    pub reader: Reader,
    /// How long the sender sends
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// 0: send flat out; else one frame every this many nanoseconds
    #[arg(long, default_value_t = 0)]
    pub interval_ns: u64,
    /// Paced sender: spin this long before each deadline (see `pace`)
    #[arg(long, default_value_t = 5_000)]
    pub spin_ns: u64,
    /// Idle ports to join and hold (role ipn-idle)
    #[arg(long, default_value_t = 0)]
    pub ports: u32,
    /// ipn receivers: JoinOptions::busy_poll, in microseconds (0: off)
    #[arg(long, default_value_t = 0)]
    pub busy_poll_us: u64,
    /// vde roles: the vdeplug URL to open
    #[arg(long, default_value = "")]
    pub url: String,
}

impl WorkerSpec {
    /// The command line that starts this worker, after the program name.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "worker".into(),
            name_of(self.role),
            "--parent".into(),
            std::process::id().to_string(),
            "--path".into(),
            self.path.display().to_string(),
            "--size".into(),
            self.size.to_string(),
            "--receivers".into(),
            self.receivers.to_string(),
            "--index".into(),
            self.index.to_string(),
            "--reader".into(),
            name_of(self.reader),
            "--seconds".into(),
            self.seconds.to_string(),
            "--interval-ns".into(),
            self.interval_ns.to_string(),
            "--spin-ns".into(),
            self.spin_ns.to_string(),
            "--ports".into(),
            self.ports.to_string(),
            "--busy-poll-us".into(),
            self.busy_poll_us.to_string(),
            "--url".into(),
            self.url.clone(),
        ]
    }
}

/// The command-line name of a value.
fn name_of(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .expect("no skipped variants")
        .get_name()
        .to_string()
}

/// Entry point of `ipn-bench worker ...`.
pub fn run(spec: &WorkerSpec) -> Result<()> {
    tie_to_parent(spec.parent)?;
    // Sleeps of a few microseconds (the paced sender) must not be
    // stretched by the default 50 us timer slack.
    let _ = nix::sys::prctl::set_timerslack(1);
    let mut spec = spec.clone();
    spec.size = spec.size.max(STAMPED);
    match spec.role {
        Role::IpnSend => ipn_send(&spec),
        Role::IpnRecv => ipn_recv(&spec),
        Role::IpnIdle => ipn_idle(&spec),
        Role::UnixSend => unix_send(&spec),
        Role::UnixRecv => unix_recv(&spec),
        Role::VdeSend => vde_send(&spec),
        Role::VdeRecv => vde_recv(&spec),
    }
}

/// Name of AF_UNIX receiver `i`'s socket in the case directory.
fn unix_socket_path(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("r{i}.sock"))
}

/// Where the sequence number starts: after an Ethernet header.
const SEQ_AT: usize = 14;
/// Bytes a frame needs: the header, the sequence number, the stamp.
pub const STAMPED: usize = SEQ_AT + 16;

/// An Ethernet broadcast header from a locally administered address, type
/// 0x88b5 (local experimental).
fn ethernet_header(frame: &mut [u8]) {
    frame[..6].fill(0xff);
    frame[6..12].copy_from_slice(&[0x02, 0x00, 0x00, 0x00, 0xbe, 0x01]);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
}

fn stamp(frame: &mut [u8], seq: u64, ns: u64) {
    frame[SEQ_AT..SEQ_AT + 8].copy_from_slice(&seq.to_le_bytes());
    frame[SEQ_AT + 8..SEQ_AT + 16].copy_from_slice(&ns.to_le_bytes());
}

fn unstamp(frame: &[u8]) -> (u64, u64) {
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&frame[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    (word(SEQ_AT), word(SEQ_AT + 8))
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Dies with the parent: a worker must never outlive its `ipn-bench`.
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

/// Blocks until the parent closes our stdin (or dies: then the kernel
/// kills us, see [`tie_to_parent`]).
fn wait_for_parent_eof() {
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
}

/// Sends for `spec.seconds`, paced or flat out, calling `send` per frame;
/// then the STOP frame. Reports `sent` (and `pace`) on stdout.
fn send_loop(spec: &WorkerSpec, mut send: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut frame = vec![0u8; spec.size];
    for (i, b) in frame.iter_mut().enumerate().skip(STAMPED) {
        *b = i as u8;
    }
    ethernet_header(&mut frame);
    let cpu_start = cpu_ns();
    let start = now_ns();
    let end = start + (spec.seconds * 1e9) as u64;
    let mut pacer =
        (spec.interval_ns > 0).then(|| Pacer::new(start, spec.interval_ns, spec.spin_ns));
    let mut seq = 0u64;
    loop {
        // The stamp latency is measured from: a paced frame's deadline
        // (see `pace`), else the time of the send.
        let (due, now) = match &mut pacer {
            Some(pacer) => pacer.wait(),
            None => {
                let now = now_ns();
                (now, now)
            }
        };
        // A sender still behind at the end stops too: what the transport
        // did not carry by then is not made up after it.
        if due >= end || now >= end {
            break;
        }
        stamp(&mut frame, seq, due);
        send(&frame)?;
        seq += 1;
    }
    let elapsed = now_ns() - start;
    let cpu = cpu_ns() - cpu_start;
    stamp(&mut frame, STOP, now_ns());
    send(&frame)?;
    say(&format!("sent {seq} {elapsed} {cpu}"))?;
    if let Some(mut pacer) = pacer {
        pacer.late.sort_unstable();
        let at = |p| percentile(&pacer.late, p).unwrap_or(0);
        say(&format!(
            "pace {} {} {} {}",
            pacer.late_sends,
            at(0.5),
            at(0.99),
            at(1.0)
        ))?;
    }
    linger_repeating_stop(&frame, send);
    Ok(())
}

/// Stays until the parent closes our stdin (it has every receiver's
/// report then), sending STOP again every [`STOP_REPEAT_MS`]: a lossy
/// transport may drop the first one (a vde_switch port whose queue is full
/// refuses it; an AF_UNIX receiver's buffer may be full), and a receiver
/// must not wait for a STOP that never comes. Later STOPs go to receivers
/// that are gone, so their errors mean nothing.
fn linger_repeating_stop(stop: &[u8], mut send: impl FnMut(&[u8]) -> Result<()>) {
    let stdin = std::io::stdin();
    let mut sink = [0u8; 256];
    loop {
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(STOP_REPEAT_MS)) {
            Ok(0) => {
                let _ = send(stop);
            }
            Err(nix::errno::Errno::EINTR) => {}
            // Readable: end of file (the parent sends nothing), or an error.
            _ => match std::io::Read::read(&mut stdin.lock(), &mut sink) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                _ => return,
            },
        }
    }
}

/// How often a sender repeats STOP while it waits for the parent.
const STOP_REPEAT_MS: u16 = 10;

/// What a receiver in the poll pattern saw of its fd: polls that timed
/// out (a second without readiness), and readiness that brought no frame
/// (the one receive after it found nothing: what the fd should never do).
#[derive(Default)]
struct PollStats {
    timeouts: std::cell::Cell<u64>,
    empty: std::cell::Cell<u64>,
}

impl PollStats {
    /// QEMU's pattern, first half: waits at most a second for `fd` to be
    /// readable; `false` (counted) if it was not.
    fn wait(&self, fd: BorrowedFd<'_>) -> Result<bool> {
        let readable = wait_readable(fd)?;
        if !readable {
            self.timeouts.set(self.timeouts.get() + 1);
        }
        Ok(readable)
    }

    /// Second half: what the one receive after readiness got (`None`, a
    /// readiness for nothing, is counted).
    fn received(&self, got: Result<Option<usize>>) -> Result<Option<usize>> {
        if matches!(got, Ok(None)) {
            self.empty.set(self.empty.get() + 1);
        }
        got
    }
}

/// Receives until STOP; `recv` returns the length of one frame, or None
/// if it came back without one. Reports on stdout.
fn recv_loop(
    spec: &WorkerSpec,
    polls: &PollStats,
    mut recv: impl FnMut(&mut [u8]) -> Result<Option<usize>>,
) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    let latency = spec.interval_ns > 0;
    let mut samples: Vec<u64> = Vec::new();
    let mut count = 0u64;
    let mut first = 0u64;
    let mut cpu_first = 0u64;
    loop {
        let Some(len) = recv(&mut buf)? else {
            std::hint::spin_loop();
            continue;
        };
        if len < STAMPED {
            bail!("received a {len}-byte frame, not a bench frame");
        }
        let (seq, sent) = unstamp(&buf);
        // The clock costs tens of nanoseconds, as much as a whole receive
        // in some patterns: read it only when a number needs it.
        let now = if latency || count == 0 || seq == STOP {
            now_ns()
        } else {
            0
        };
        if seq == STOP {
            let (elapsed, cpu) = if count > 0 {
                (now - first, cpu_ns() - cpu_first)
            } else {
                (0, 0)
            };
            say(&format!(
                "recv {count} {elapsed} {cpu} {} {}",
                polls.timeouts.get(),
                polls.empty.get()
            ))?;
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
            cpu_first = cpu_ns();
        }
        count += 1;
        if latency {
            samples.push(now.saturating_sub(sent));
        }
    }
}

/// Waits at most a second for `fd` to be readable; `Ok(false)` if it was
/// not (timeout, or a signal).
fn wait_readable(fd: BorrowedFd<'_>) -> Result<bool> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(1000u16)) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => Ok(false),
        Ok(_) => {
            let revents = fds[0].revents().unwrap_or(PollFlags::empty());
            if !revents.contains(PollFlags::POLLIN) {
                bail!("poll: the fd reports {revents:?}, not POLLIN");
            }
            Ok(true)
        }
        Err(e) => Err(e).context("poll"),
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
    // Stays joined until the parent has everyone's report: a lossy reader
    // that was lapped still finds STOP in our ring.
    send_loop(spec, |frame| Ok(port.send(frame)?))
}

fn ipn_recv(spec: &WorkerSpec) -> Result<()> {
    let options = ipn::JoinOptions {
        description: format!("bench receiver {}", spec.index),
        read: true,
        write: false,
        busy_poll: std::time::Duration::from_micros(spec.busy_poll_us),
        ..Default::default()
    };
    let mut port = ipn::Port::join(&spec.path, &options)
        .with_context(|| format!("joining {}", spec.path.display()))?;
    say("ready")?;
    let polls = PollStats::default();
    match spec.reader {
        Reader::Busy => recv_loop(spec, &polls, |buf| match port.try_recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(ipn::RecvError::WouldBlock) => Ok(None),
            Err(e) => Err(e.into()),
        }),
        Reader::Sleep => recv_loop(spec, &polls, |buf| Ok(Some(port.recv(buf)?))),
        // QEMU's vde backend: the main loop polls the fd; on POLLIN,
        // vde_to_qemu calls vde_recv exactly once.
        Reader::Poll => recv_loop(spec, &polls, |buf| {
            if !polls.wait(port.as_fd())? {
                return Ok(None);
            }
            polls.received(match port.try_recv_after_poll(buf) {
                Ok(n) => Ok(Some(n)),
                Err(ipn::RecvError::WouldBlock) => Ok(None),
                Err(e) => Err(e.into()),
            })
        }),
    }
}

/// Joins `spec.ports` write-only ports that never send (as `ipn pub`
/// waiting on its standard input), all in this one process, and holds
/// them until the parent is done.
fn ipn_idle(spec: &WorkerSpec) -> Result<()> {
    raise_fd_limit(spec.ports)?;
    let mut ports = Vec::with_capacity(spec.ports as usize);
    for i in 0..spec.ports {
        let options = ipn::JoinOptions {
            description: format!("bench idle port {i}"),
            read: false,
            write: true,
            ..Default::default()
        };
        let port = ipn::Port::join(&spec.path, &options).with_context(|| {
            format!(
                "joining idle port {} of {} to {}",
                i + 1,
                spec.ports,
                spec.path.display()
            )
        })?;
        ports.push(port);
    }
    say("ready")?;
    wait_for_parent_eof();
    drop(ports);
    Ok(())
}

/// Every port holds a few fds (doorbell socket, shared file); a thousand
/// ports need more than the usual soft limit of 1024.
fn raise_fd_limit(ports: u32) -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let needed = u64::from(ports) * 4 + 64;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        bail!(
            "{ports} idle ports need about {needed} open files; the hard limit is {hard} \
             (raise it with ulimit -Hn, or join fewer)"
        );
    }
    setrlimit(Resource::RLIMIT_NOFILE, needed, hard).context("raising RLIMIT_NOFILE")?;
    Ok(())
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
    let raw = fd.as_raw_fd();
    say("ready")?;
    send_loop(spec, |frame| {
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
    })
}

fn unix_recv(spec: &WorkerSpec) -> Result<()> {
    let path = unix_socket_path(&spec.path, spec.index);
    let fd = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(fd.as_raw_fd(), &UnixAddr::new(&path)?)
        .with_context(|| format!("binding {}", path.display()))?;
    let raw = fd.as_raw_fd();
    say("ready")?;
    let receive = |flags: MsgFlags, buf: &mut [u8]| match recv(raw, buf, flags) {
        Ok(n) => Ok(Some(n)),
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => Ok(None),
        Err(e) => Err(e).context("recv"),
    };
    let polls = PollStats::default();
    match spec.reader {
        Reader::Busy => recv_loop(spec, &polls, |buf| receive(MsgFlags::MSG_DONTWAIT, buf)),
        Reader::Sleep => recv_loop(spec, &polls, |buf| receive(MsgFlags::empty(), buf)),
        Reader::Poll => recv_loop(spec, &polls, |buf| {
            if !polls.wait(fd.as_fd())? {
                return Ok(None);
            }
            polls.received(receive(MsgFlags::MSG_DONTWAIT, buf))
        }),
    }
}

fn vde_send(spec: &WorkerSpec) -> Result<()> {
    let conn = crate::vdeplug::Conn::open(&spec.url, "bench sender")?;
    say("ready")?;
    send_loop(spec, |frame| {
        // A full vde_switch port queue refuses (EAGAIN): a lost frame,
        // counted as such by the receivers.
        let _ = conn.send(frame);
        Ok(())
    })
}

fn vde_recv(spec: &WorkerSpec) -> Result<()> {
    let conn = crate::vdeplug::Conn::open(&spec.url, &format!("bench receiver {}", spec.index))?;
    say("ready")?;
    let polls = PollStats::default();
    recv_loop(spec, &polls, |buf| {
        // QEMU's vde backend: poll the datafd; on POLLIN, one vde_recv.
        if !polls.wait(conn.datafd())? {
            return Ok(None);
        }
        polls.received(vde_recv_once(&conn, buf))
    })
}

/// One `vde_recv`: a frame, or `None` (nothing for us, or a runt).
fn vde_recv_once(conn: &crate::vdeplug::Conn, buf: &mut [u8]) -> Result<Option<usize>> {
    let n = conn.recv(buf);
    if n >= STAMPED as isize {
        return Ok(Some(n as usize));
    }
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
            return Err(e).context("vde_recv");
        }
    }
    Ok(None)
}
