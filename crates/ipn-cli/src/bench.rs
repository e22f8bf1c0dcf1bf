//! `ipn bench`: ipn against plain AF_UNIX datagram fan-out, in one run.
//!
//! Every sender and receiver is a separate process: this binary re-executed
//! as `ipn bench --worker ROLE ...` (hidden arguments, see `worker`). For
//! each case the parent starts the receivers, waits for each to say `ready`,
//! then starts the sender; the sender ends the run with a STOP frame and
//! every process reports its counts on stdout.
//!
//! - Throughput: the sender sends flat out for `--seconds`; receivers block
//!   in `recv` (ipn: woken by the doorbell; AF_UNIX: in the kernel). The
//!   AF_UNIX sender `sendto()`s every receiver in turn with blocking sends,
//!   so it is lossless too. frames/s is frames *received* per second per
//!   receiver (mean over the receivers), so a lossy run cannot look fast by
//!   dropping.
//! - Latency: one receiver, the sender paced to one frame every
//!   `--interval-us`; the receiver subtracts the CLOCK_MONOTONIC stamp in
//!   the frame from its own clock. `busy`: the receiver spins on
//!   `try_recv` (AF_UNIX: `recv(MSG_DONTWAIT)`); `sleep`: it blocks.

mod procs;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use procs::Children;
use worker::WorkerSpec;

#[derive(clap::Args, Debug)]
#[command(
    long_about = "Measure ipn against plain AF_UNIX datagram fan-out (the sender sendto()s \
        every receiver), in one run, with every sender and receiver a separate process: \
        frames/s for 64- and 1500-byte frames to 1 and 4 receivers, lossy and lossless, \
        frames lost per receiver, and one-way latency (p50, p99) with a busy (spinning) \
        and a sleeping (blocking) reader.",
    after_help = "Examples:\n  ipn bench\n  ipn bench --quick --json\n  ipn bench --seconds 3 --ring 1024"
)]
pub struct BenchArgs {
    /// Seconds per throughput case
    #[arg(long, default_value_t = 1.5)]
    pub seconds: f64,
    /// Seconds per latency case
    #[arg(long, default_value_t = 1.0)]
    pub latency_seconds: f64,
    /// Paced sender interval for latency cases, in microseconds
    #[arg(long, default_value_t = 30)]
    pub interval_us: u64,
    /// Frames buffered per sender in the ipn networks (power of two)
    #[arg(long, default_value_t = 256)]
    pub ring: u32,
    /// Short runs (0.2 s per case), for CI
    #[arg(long)]
    pub quick: bool,
    /// Print the results as JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Run only the cases whose name contains this text (e.g. "latency", "1500 B 1->4")
    #[arg(long)]
    pub filter: Option<String>,

    // Hidden: how the bench runs its child processes.
    #[arg(long, hide = true)]
    pub worker: Option<String>,
    #[arg(long, hide = true, default_value_t = 0)]
    pub w_parent: u32,
    #[arg(long, hide = true)]
    pub w_path: Option<PathBuf>,
    #[arg(long, hide = true, default_value_t = 64)]
    pub w_size: usize,
    #[arg(long, hide = true, default_value_t = 1)]
    pub w_receivers: u32,
    #[arg(long, hide = true, default_value_t = 0)]
    pub w_index: u32,
    #[arg(long, hide = true, default_value = "sleep")]
    pub w_mode: String,
    #[arg(long, hide = true, default_value_t = 1.0)]
    pub w_seconds: f64,
    #[arg(long, hide = true, default_value_t = 0)]
    pub w_interval_ns: u64,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(role) = &args.worker {
        return worker::run_worker(args, role);
    }
    if !(args.seconds > 0.0 && args.latency_seconds > 0.0) {
        bail!("--seconds and --latency-seconds must be positive");
    }
    if args.interval_us == 0 {
        bail!("--interval-us must be at least 1");
    }
    let interrupted = procs::watch_signals()?;
    let dir = TempDir::new()?;
    let result = run_all(args, &dir.0, &interrupted);
    if interrupted.load(Ordering::SeqCst) {
        bail!(
            "interrupted; bench workers stopped, {} removed",
            dir.0.display()
        );
    }
    result
}

/// The bench's scratch directory; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let base = std::env::temp_dir();
        for n in 0..100u32 {
            let path = base.join(format!("ipn-bench.{}.{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        bail!("could not create a scratch directory in {}", base.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Ipn,
    Unix,
}

#[derive(Debug, Clone)]
struct Case {
    transport: Transport,
    size: usize,
    receivers: u32,
    lossless: bool,
    busy: bool,
    seconds: f64,
    /// 0: throughput; else latency with this pacing.
    interval_ns: u64,
}

/// What one case measured.
#[derive(Debug, Clone)]
struct Outcome {
    sent: u64,
    sender_ns: u64,
    received: Vec<u64>,
    /// Mean over receivers of received / (first frame .. STOP).
    frames_per_s: f64,
    latencies: Vec<u64>,
}

impl Outcome {
    fn loss(&self) -> Vec<u64> {
        self.received
            .iter()
            .map(|&r| self.sent.saturating_sub(r))
            .collect()
    }

    fn total_loss(&self) -> u64 {
        self.loss().iter().sum()
    }

    fn percentile(&self, p: f64) -> Option<u64> {
        if self.latencies.is_empty() {
            return None;
        }
        let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1);
        Some(self.latencies[i])
    }

    fn to_json(&self) -> Value {
        json!({
            "sent": self.sent,
            "sender_seconds": self.sender_ns as f64 / 1e9,
            "sent_per_s": self.sent as f64 * 1e9 / self.sender_ns.max(1) as f64,
            "received": self.received,
            "loss": self.loss(),
            "frames_per_s": self.frames_per_s,
            "latency_samples": self.latencies.len(),
            "p50_ns": self.percentile(0.50),
            "p99_ns": self.percentile(0.99),
        })
    }
}

struct Runner<'a> {
    dir: &'a Path,
    ring: u32,
    interrupted: &'a Arc<AtomicBool>,
    counter: u32,
}

impl Runner<'_> {
    fn run_case(&mut self, case: &Case) -> Result<Outcome> {
        self.counter += 1;
        let path = self.dir.join(format!("case{}", self.counter));
        match case.transport {
            Transport::Ipn => {
                let config = ipn::Config {
                    lossless: case.lossless,
                    ring_slots: self.ring,
                    max_ports: 8,
                    mode: 0o700,
                    mtu: 1514.max(case.size as u32),
                    ..ipn::Config::default()
                };
                ipn::Network::create(&path, &config)
                    .with_context(|| format!("creating network {}", path.display()))?;
            }
            Transport::Unix => std::fs::create_dir(&path)
                .with_context(|| format!("creating {}", path.display()))?,
        }
        let (send_role, recv_role) = match case.transport {
            Transport::Ipn => ("ipn-send", "ipn-recv"),
            Transport::Unix => ("unix-send", "unix-recv"),
        };
        let spec = |role: &str, index: u32| WorkerSpec {
            role: role.into(),
            path: path.clone(),
            size: case.size,
            receivers: case.receivers,
            index,
            busy: case.busy,
            seconds: case.seconds,
            interval_ns: case.interval_ns,
        };
        let mut children = Children::new(self.interrupted.clone());
        let mut receivers = Vec::new();
        for i in 0..case.receivers {
            receivers.push(children.spawn(format!("{recv_role} {i}"), &spec(recv_role, i))?);
        }
        let start_timeout = Duration::from_secs(10);
        children.expect_lines(&receivers, "ready", start_timeout)?;
        let sender = children.spawn(send_role.into(), &spec(send_role, 0))?;
        children.expect_lines(&[sender], "ready", start_timeout)?;
        let run_timeout = Duration::from_secs_f64(case.seconds * 4.0 + 20.0);
        let sent_line = children.expect_lines(&[sender], "sent", run_timeout)?;
        let sent_fields = fields(&sent_line[0], 2)?;
        let recv_lines = children.expect_lines(&receivers, "recv", run_timeout)?;
        let mut received = Vec::new();
        let mut rate_sum = 0.0;
        for line in &recv_lines {
            let f = fields(line, 2)?;
            received.push(f[0]);
            if f[1] > 0 {
                rate_sum += f[0] as f64 * 1e9 / f[1] as f64;
            }
        }
        let mut latencies = Vec::new();
        if case.interval_ns > 0 {
            for line in children.expect_lines(&receivers, "lat", run_timeout)? {
                for word in line.split_whitespace().skip(1) {
                    latencies.push(word.parse::<u64>().context("bad latency sample")?);
                }
            }
            latencies.sort_unstable();
        }
        children.finish(Duration::from_secs(10))?;
        if case.transport == Transport::Ipn {
            let _ = ipn::Network::remove(&path, true);
        } else {
            let _ = std::fs::remove_dir_all(&path);
        }
        Ok(Outcome {
            sent: sent_fields[0],
            sender_ns: sent_fields[1],
            received,
            frames_per_s: rate_sum / f64::from(case.receivers),
            latencies,
        })
    }
}

/// The `n` numbers after the first word of a worker's report line.
fn fields(line: &str, n: usize) -> Result<Vec<u64>> {
    let values = line
        .split_whitespace()
        .skip(1)
        .take(n)
        .map(str::parse::<u64>)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad report line {line:?}"))?;
    if values.len() != n {
        bail!("bad report line {line:?}");
    }
    Ok(values)
}

/// One row of the report: an ipn case and its AF_UNIX counterpart.
struct Row {
    name: String,
    kind: &'static str,
    size: usize,
    receivers: u32,
    lossless: bool,
    reader: &'static str,
    ipn: Outcome,
    unix: Outcome,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        (self.kind == "throughput" && self.unix.frames_per_s > 0.0)
            .then(|| self.ipn.frames_per_s / self.unix.frames_per_s)
    }
}

fn run_all(args: &BenchArgs, dir: &Path, interrupted: &Arc<AtomicBool>) -> Result<()> {
    let (seconds, latency_seconds) = if args.quick {
        (0.2, 0.2)
    } else {
        (args.seconds, args.latency_seconds)
    };
    let mut runner = Runner {
        dir,
        ring: args.ring,
        interrupted,
        counter: 0,
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = |what: &str| {
        if tty && !args.json {
            eprint!("\r\x1b[K{what}");
        }
    };
    let wanted = |name: &str| match &args.filter {
        Some(f) => name.contains(f.as_str()),
        None => true,
    };
    let mut rows = Vec::new();
    for size in [64usize, 1500] {
        for receivers in [1u32, 4] {
            let base = Case {
                transport: Transport::Unix,
                size,
                receivers,
                lossless: true,
                busy: false,
                seconds,
                interval_ns: 0,
            };
            let name_of = |lossless: bool| {
                let mode = if lossless { "lossless" } else { "lossy" };
                format!("{size} B 1->{receivers} {mode}")
            };
            if !wanted(&name_of(false)) && !wanted(&name_of(true)) {
                continue;
            }
            progress(&format!("AF_UNIX {size} B 1->{receivers}"));
            let unix = runner.run_case(&base)?;
            for lossless in [false, true] {
                let name = name_of(lossless);
                if !wanted(&name) {
                    continue;
                }
                progress(&format!("ipn {name}"));
                let ipn = runner.run_case(&Case {
                    transport: Transport::Ipn,
                    lossless,
                    ..base.clone()
                })?;
                rows.push(Row {
                    name,
                    kind: "throughput",
                    size,
                    receivers,
                    lossless,
                    reader: "sleep",
                    ipn,
                    unix: unix.clone(),
                });
            }
        }
    }
    for size in [64usize, 1500] {
        for busy in [true, false] {
            let reader = if busy { "busy" } else { "sleep" };
            let case = Case {
                transport: Transport::Unix,
                size,
                receivers: 1,
                lossless: false,
                busy,
                seconds: latency_seconds,
                interval_ns: args.interval_us * 1000,
            };
            let name = format!("{size} B 1->1 latency, {reader} reader");
            if !wanted(&name) {
                continue;
            }
            progress(&format!("AF_UNIX {name}"));
            let unix = runner.run_case(&case)?;
            progress(&format!("ipn {name}"));
            let ipn = runner.run_case(&Case {
                transport: Transport::Ipn,
                ..case
            })?;
            rows.push(Row {
                name,
                kind: "latency",
                size,
                receivers: 1,
                lossless: false,
                reader,
                ipn,
                unix,
            });
        }
    }
    progress("");
    if args.json {
        print_json(args, seconds, latency_seconds, &rows)?;
    } else {
        print_table(args, seconds, latency_seconds, &rows);
    }
    Ok(())
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({ "cpus": cpus, "cpu": cpu, "kernel": kernel })
}

fn print_json(args: &BenchArgs, seconds: f64, latency_seconds: f64, rows: &[Row]) -> Result<()> {
    let cases: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "kind": r.kind,
                "frame_bytes": r.size,
                "receivers": r.receivers,
                "lossless": r.lossless,
                "reader": r.reader,
                "ipn": r.ipn.to_json(),
                "af_unix": r.unix.to_json(),
                "ratio": r.ratio(),
            })
        })
        .collect();
    let out = json!({
        "machine": machine(),
        "settings": {
            "seconds": seconds,
            "latency_seconds": latency_seconds,
            "interval_us": args.interval_us,
            "ring_slots": args.ring,
            "quick": args.quick,
        },
        "cases": cases,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else {
        format!("{:.1} k", x / 1e3)
    }
}

fn us(ns: Option<u64>) -> String {
    ns.map_or("-".into(), |ns| format!("{:.1}", ns as f64 / 1000.0))
}

fn loss(o: &Outcome) -> String {
    let total: u64 = o.sent * o.received.len() as u64;
    let lost = o.total_loss();
    if lost == 0 {
        "0".into()
    } else {
        format!("{lost} ({:.1}%)", lost as f64 * 100.0 / total.max(1) as f64)
    }
}

fn print_table(args: &BenchArgs, seconds: f64, latency_seconds: f64, rows: &[Row]) {
    let m = machine();
    println!(
        "ipn bench: {} CPUs ({}), kernel {}; ring {} slots; {seconds} s per throughput case, \
         {latency_seconds} s per latency case (one frame every {} us)",
        m["cpus"],
        m["cpu"].as_str().unwrap_or(""),
        m["kernel"].as_str().unwrap_or(""),
        args.ring,
        args.interval_us
    );
    println!();
    println!("Throughput (frames/s received per receiver; receivers block in recv; AF_UNIX sends block, so it is lossless):");
    println!(
        "{:<24} {:>12} {:>12} {:>7} {:>18} {:>12}",
        "case", "ipn", "AF_UNIX", "ratio", "ipn loss", "AF_UNIX loss"
    );
    for r in rows.iter().filter(|r| r.kind == "throughput") {
        println!(
            "{:<24} {:>12} {:>12} {:>7} {:>18} {:>12}",
            r.name,
            rate(r.ipn.frames_per_s),
            rate(r.unix.frames_per_s),
            r.ratio().map_or("-".into(), |x| format!("{x:.2}x")),
            loss(&r.ipn),
            loss(&r.unix),
        );
    }
    println!();
    println!("One-way latency in us (paced sender, 1 receiver; busy: spins on try_recv / recv(MSG_DONTWAIT), sleep: blocks):");
    println!(
        "{:<34} {:>9} {:>9} {:>11} {:>11} {:>8} {:>8}",
        "case", "ipn p50", "ipn p99", "AF_UNIX p50", "AF_UNIX p99", "ipn loss", "unix loss"
    );
    for r in rows.iter().filter(|r| r.kind == "latency") {
        println!(
            "{:<34} {:>9} {:>9} {:>11} {:>11} {:>8} {:>8}",
            r.name,
            us(r.ipn.percentile(0.5)),
            us(r.ipn.percentile(0.99)),
            us(r.unix.percentile(0.5)),
            us(r.unix.percentile(0.99)),
            loss(&r.ipn),
            loss(&r.unix),
        );
    }
}
