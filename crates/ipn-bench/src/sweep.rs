//! The rate sweep (`--sweep`): what a receiver costs, and how late its
//! frames are, at every rate from 100 frames/s to flat out, for ipn and
//! its peers, all in one run.
//!
//! For each rate (paced with absolute deadlines, see `pace`; 0 is flat
//! out) and each fan-out (1 and 4 receivers), these run back to back, so
//! a ratio compares cases of the same minute:
//!
//! - `ipn`: the library in QEMU's pattern (`poll`, then one
//!   `Port::try_recv_after_poll`), default options;
//! - `ipn busy-poll`: the same with `JoinOptions::busy_poll`;
//! - `ipn recv`: a blocking `Port::recv` (what `ipn sub` does);
//! - `ipn://`: ipn's plugin through libvdeplug, `poll` then one `vde_recv`
//!   (QEMU's vde backend, `vde_plug`), sent to with `vde_send`;
//! - `vde_switch`: vde2's switch through libvdeplug, the same client code;
//! - `AF_UNIX`: a datagram socket per receiver, `poll` then one `recv`.
//!
//! ipn networks are lossless (a sender waits for its slowest reader), as
//! AF_UNIX's blocking `sendto` is; vde_switch drops what does not fit its
//! queues, and the loss is shown. The sweep prints one markdown table per
//! fan-out and, with `--plot FILE`, draws receiver CPU per frame and p99
//! latency against rate, one line per transport (`plot`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::runner::{Case, Outcome, Runner, Transport};
use crate::suite::SuiteArgs;
use crate::worker::Reader;

/// The rates of `--sweep` without a list; 0 is flat out.
pub const DEFAULT_RATES: [&str; 7] = ["100", "1000", "5000", "20000", "100000", "1000000", "0"];

/// Frames a paced case should carry at least, for its percentiles.
const MIN_FRAMES: f64 = 300.0;
/// Longest a paced case runs to get them.
const MAX_SECONDS: f64 = 3.0;

/// One transport of the sweep (`--sweep-peers` names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// ipn in QEMU's pattern, default options
    Ipn,
    /// the same, with busy polling opted in (`--busy-poll-us`)
    IpnBusyPoll,
    /// ipn's blocking receive
    IpnRecv,
    /// ipn's plugin through libvdeplug (`ipn://`)
    Plugin,
    /// vde2's vde_switch through libvdeplug
    VdeSwitch,
    /// AF_UNIX datagram sockets
    Unix,
}

impl Peer {
    pub const ALL: [Peer; 6] = [
        Peer::Ipn,
        Peer::IpnBusyPoll,
        Peer::IpnRecv,
        Peer::Plugin,
        Peer::VdeSwitch,
        Peer::Unix,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Peer::Ipn => "ipn",
            Peer::IpnBusyPoll => "ipn busy-poll",
            Peer::IpnRecv => "ipn recv",
            Peer::Plugin => "ipn://",
            Peer::VdeSwitch => "vde_switch",
            Peer::Unix => "AF_UNIX",
        }
    }

    /// The plot's colour for this transport.
    pub fn colour(self) -> &'static str {
        match self {
            Peer::Ipn => "#1f77b4",
            Peer::IpnBusyPoll => "#9467bd",
            Peer::IpnRecv => "#17becf",
            Peer::Plugin => "#2ca02c",
            Peer::VdeSwitch => "#d62728",
            Peer::Unix => "#7f7f7f",
        }
    }
}

/// One case of the sweep: a transport at a rate and fan-out, and what it
/// measured (or why it could not run).
#[derive(Debug)]
pub struct Point {
    pub rate: u32,
    pub receivers: u32,
    pub peer: Peer,
    pub outcome: Result<Outcome, String>,
}

impl Point {
    pub fn cpu_per_frame_ns(&self) -> Option<f64> {
        self.outcome.as_ref().ok()?.rx_cpu_per_frame_ns()
    }

    pub fn p99_ns(&self) -> Option<u64> {
        let o = self.outcome.as_ref().ok()?;
        (self.rate > 0).then(|| o.percentile(0.99)).flatten()
    }
}

/// A vde_switch for the run, stopped when dropped.
struct VdeSwitch {
    dir: PathBuf,
    pid: Option<i32>,
}

impl VdeSwitch {
    fn start(scratch: &Path) -> Result<VdeSwitch> {
        let dir = scratch.join("vde_switch");
        let pidfile = scratch.join("vde_switch.pid");
        let status = Command::new("vde_switch")
            .arg("-d")
            .arg("-s")
            .arg(&dir)
            .arg("-p")
            .arg(&pidfile)
            .status()
            .context("starting vde_switch (install vde-switch / vde2)")?;
        if !status.success() {
            bail!("vde_switch -d -s {} failed: {status}", dir.display());
        }
        let started = Instant::now();
        loop {
            let pid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            if let (Some(pid), true) = (pid, dir.join("ctl").exists()) {
                return Ok(VdeSwitch {
                    dir,
                    pid: Some(pid),
                });
            }
            if started.elapsed() > Duration::from_secs(5) {
                bail!("vde_switch did not come up in {}", dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for VdeSwitch {
    /// SIGTERM, then SIGKILL if it is still there after 500 ms: a
    /// daemonized vde_switch (`-d`) keeps SIGTERM blocked in some states
    /// and was left running after every sweep.
    fn drop(&mut self) {
        let Some(pid) = self.pid.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_millis(500);
        // Not our child (it daemonized): gone when signal 0 fails.
        while nix::sys::signal::kill(pid, None).is_ok() {
            if Instant::now() > deadline {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Seconds a case at `rate` runs.
fn seconds_for(rate: u32, seconds: f64) -> f64 {
    if rate == 0 {
        seconds
    } else {
        seconds.max((MIN_FRAMES / f64::from(rate)).min(MAX_SECONDS))
    }
}

/// Runs the sweep; returns every point, in the order measured.
pub fn run(
    args: &SuiteArgs,
    rates: &[u32],
    runner: &mut Runner,
    progress: &dyn Fn(&str),
) -> Result<(Vec<Point>, Vec<String>)> {
    let (seconds, _) = args.durations();
    let mut notes = Vec::new();
    let wanted = |peer: Peer| args.sweep_peers.contains(&peer);
    let vde = (wanted(Peer::Plugin) || wanted(Peer::VdeSwitch))
        && match crate::vdeplug::available() {
            Ok(()) => true,
            Err(e) => {
                notes.push(format!("no ipn:// or vde_switch rows: {e:#}"));
                false
            }
        };
    let switch = if vde && wanted(Peer::VdeSwitch) {
        match VdeSwitch::start(runner.dir) {
            Ok(s) => Some(s),
            Err(e) => {
                notes.push(format!("no vde_switch rows: {e:#}"));
                None
            }
        }
    } else {
        None
    };
    let mut points = Vec::new();
    for &receivers in &args.sweep_receivers {
        for &rate in rates {
            for peer in Peer::ALL.into_iter().filter(|&p| wanted(p)) {
                let transport = match peer {
                    Peer::Ipn | Peer::IpnBusyPoll | Peer::IpnRecv => Transport::Ipn,
                    Peer::Unix => Transport::Unix,
                    Peer::Plugin if vde => Transport::Plugin,
                    Peer::VdeSwitch => match &switch {
                        Some(s) => Transport::VdeSwitch(s.dir.clone()),
                        None => continue,
                    },
                    Peer::Plugin => continue,
                };
                let case = Case {
                    transport,
                    size: args.sweep_size,
                    receivers,
                    lossless: true,
                    reader: if peer == Peer::IpnRecv {
                        Reader::Sleep
                    } else {
                        Reader::Poll
                    },
                    seconds: seconds_for(rate, seconds),
                    interval_ns: if rate == 0 {
                        0
                    } else {
                        1_000_000_000 / u64::from(rate)
                    },
                    idle_ports: 0,
                    max_ports: 0,
                    busy_poll_us: if peer == Peer::IpnBusyPoll {
                        args.busy_poll_us
                    } else {
                        0
                    },
                };
                progress(&format!(
                    "{} {} 1->{receivers}",
                    peer.label(),
                    rate_name(rate)
                ));
                let outcome = runner.run_case(&case).map_err(|e| format!("{e:#}"));
                points.push(Point {
                    rate,
                    receivers,
                    peer,
                    outcome,
                });
            }
        }
    }
    Ok((points, notes))
}

pub fn rate_name(rate: u32) -> String {
    match rate {
        0 => "flat out".into(),
        r if r >= 1_000_000 && r % 1_000_000 == 0 => format!("{} M/s", r / 1_000_000),
        r if r >= 1000 && r % 1000 == 0 => format!("{} k/s", r / 1000),
        r => format!("{r}/s"),
    }
}

fn us(ns: Option<u64>) -> String {
    ns.map_or("-".into(), |ns| format!("{:.1}", ns as f64 / 1000.0))
}

fn cpu_us(ns: Option<f64>) -> String {
    ns.map_or("-".into(), |ns| format!("{:.2}", ns / 1000.0))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// The sweep as markdown: one table per fan-out.
pub fn print_tables(args: &SuiteArgs, load: &str, points: &[Point], notes: &[String]) {
    let (seconds, _) = args.durations();
    println!(
        "ipn bench --sweep: {} B frames; paced cases run max({seconds} s, {MIN_FRAMES} frames) \
         up to {MAX_SECONDS} s, flat out {seconds} s; ipn networks lossless; busy-poll {} us; \
         load average before the run {load}",
        args.sweep_size, args.busy_poll_us
    );
    for note in notes {
        println!("note: {note}");
    }
    println!(
        "rx CPU/frame: each receiver's user+system CPU per frame it received (mean over \
         receivers), in us; CPU %: share of one CPU over its run; empty wake-ups: per 100 \
         frames, readiness whose one receive found no frame (the poll pattern; ipn recv does \
         not poll); latency one-way, us, from each frame's deadline; sender late p99: how late \
         the paced sender itself was for its deadlines (its share of the latency: the same \
         for every transport but for what the transport makes it wait); x AF_UNIX, x \
         vde_switch: CPU per frame over theirs at the same rate."
    );
    for &receivers in &args.sweep_receivers {
        println!();
        println!("Receivers: {receivers}");
        println!();
        println!(
            "| rate | transport | delivered/s per receiver | loss | rx CPU/frame us | CPU % | \
             empty wake-ups | p50 us | p99 us | p99.9 us | sender late p99 us | x AF_UNIX | \
             x vde_switch |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut rates: Vec<u32> = points
            .iter()
            .filter(|p| p.receivers == receivers)
            .map(|p| p.rate)
            .collect();
        rates.dedup();
        for rate in rates {
            let at: Vec<&Point> = points
                .iter()
                .filter(|p| p.receivers == receivers && p.rate == rate)
                .collect();
            let peer_cpu = |peer: Peer| {
                at.iter()
                    .find(|p| p.peer == peer)
                    .and_then(|p| p.cpu_per_frame_ns())
            };
            for p in &at {
                match &p.outcome {
                    Err(e) => println!(
                        "| {} | {} | failed: {} |  |  |  |  |  |  |  |  |  |  |",
                        rate_name(rate),
                        p.peer.label(),
                        e.replace('|', "/")
                    ),
                    Ok(o) => {
                        let lost = o.total_loss();
                        let all = o.sent * o.received.len() as u64;
                        let latency = |q| if rate > 0 { o.percentile(q) } else { None };
                        println!(
                            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                            rate_name(rate),
                            p.peer.label(),
                            o.frames_per_s(),
                            if lost == 0 {
                                "0".to_string()
                            } else {
                                format!("{:.1}%", lost as f64 * 100.0 / all.max(1) as f64)
                            },
                            cpu_us(o.rx_cpu_per_frame_ns()),
                            o.rx_cpu_share()
                                .map_or("-".into(), |s| format!("{:.1}", s * 100.0)),
                            empty_wakeups(p.peer, o),
                            us(latency(0.5)),
                            us(latency(0.99)),
                            us(latency(0.999)),
                            us(o.pacing.map(|p| p.late_p99_ns)),
                            ratio(o.rx_cpu_per_frame_ns(), peer_cpu(Peer::Unix)),
                            ratio(o.rx_cpu_per_frame_ns(), peer_cpu(Peer::VdeSwitch)),
                        );
                    }
                }
            }
        }
    }
}

/// The sweep as JSON.
pub fn to_json(args: &SuiteArgs, points: &[Point], notes: &[String]) -> serde_json::Value {
    let cases: Vec<_> = points
        .iter()
        .map(|p| {
            json!({
                "rate": p.rate,
                "receivers": p.receivers,
                "transport": p.peer.label(),
                "outcome": match &p.outcome {
                    Ok(o) => o.to_json(),
                    Err(e) => json!({ "error": e }),
                },
            })
        })
        .collect();
    json!({
        "frame_bytes": args.sweep_size,
        "busy_poll_us": args.busy_poll_us,
        "notes": notes,
        "cases": cases,
    })
}

/// Readiness that brought no frame, per 100 frames received ("-" for a
/// reader that does not poll).
fn empty_wakeups(peer: Peer, o: &Outcome) -> String {
    if peer == Peer::IpnRecv {
        return "-".into();
    }
    let frames: u64 = o.received.iter().sum();
    let empty: u64 = o.empty_wakeups.iter().sum();
    format!("{:.1}", empty as f64 * 100.0 / frames.max(1) as f64)
}
