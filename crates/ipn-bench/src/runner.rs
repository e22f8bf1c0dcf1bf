//! One case: make its network (or, for AF_UNIX, a directory for the
//! receivers' sockets), start the workers in order (idle ports, then the
//! receivers, each `ready` before the sender starts), collect their
//! reports into an [`Outcome`], remove what was made.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::measure::percentile;
use crate::procs::Children;
use crate::worker::{Reader, Role, WorkerSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// An ipn network, through the library.
    Ipn,
    /// AF_UNIX datagram sockets, one per receiver.
    Unix,
    /// An ipn network through libvdeplug and ipn's plugin (`ipn://PATH`).
    Plugin,
    /// vde_switch's socket directory, through libvdeplug (`vde://PATH`).
    VdeSwitch(PathBuf),
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Case {
    pub transport: Transport,
    pub size: usize,
    pub receivers: u32,
    pub lossless: bool,
    pub reader: Reader,
    pub seconds: f64,
    /// 0: throughput (flat out); else latency, one frame every this many ns.
    pub interval_ns: u64,
    /// Write-only ports that never send, joined before the receivers (ipn).
    pub idle_ports: u32,
    /// Ports of the network (ipn); 0: 8, or enough for the case.
    pub max_ports: u32,
    /// ipn receivers' busy poll, in microseconds (0: the default pacing).
    pub busy_poll_us: u64,
}

impl Case {
    fn network_ports(&self) -> u32 {
        let needed = self.receivers + 1 + self.idle_ports;
        if self.max_ports > 0 {
            self.max_ports.max(needed)
        } else {
            needed.max(8)
        }
    }
}

/// How the paced sender kept to its deadlines (see `pace`).
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Sends more than an interval after their deadline.
    pub late_sends: u64,
    pub late_p50_ns: u64,
    pub late_p99_ns: u64,
    pub late_max_ns: u64,
}

/// What one case measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sent: u64,
    pub sender_ns: u64,
    pub sender_cpu_ns: u64,
    pub pacing: Option<Pacing>,
    /// Per receiver: frames, then the window from its first frame to STOP
    /// and the CPU time it used in that window.
    pub received: Vec<u64>,
    pub rx_elapsed_ns: Vec<u64>,
    pub rx_cpu_ns: Vec<u64>,
    /// Per receiver: polls that timed out (a second without readiness).
    pub poll_timeouts: Vec<u64>,
    /// Per receiver: readiness whose one receive found no frame.
    pub empty_wakeups: Vec<u64>,
    /// Every latency sample of every receiver, sorted.
    pub latencies: Vec<u64>,
}

impl Outcome {
    pub fn loss(&self) -> Vec<u64> {
        self.received
            .iter()
            .map(|&r| self.sent.saturating_sub(r))
            .collect()
    }

    pub fn total_loss(&self) -> u64 {
        self.loss().iter().sum()
    }

    /// Frames received per second per receiver, mean over the receivers
    /// (one that received nothing counts as 0).
    pub fn frames_per_s(&self) -> f64 {
        let n = self.received.len().max(1) as f64;
        let rates = self.received.iter().zip(&self.rx_elapsed_ns);
        rates
            .filter(|&(_, &elapsed)| elapsed > 0)
            .map(|(&r, &elapsed)| r as f64 * 1e9 / elapsed as f64)
            .sum::<f64>()
            / n
    }

    /// Receiver CPU time per frame delivered, ns, mean over the receivers
    /// that received frames.
    pub fn rx_cpu_per_frame_ns(&self) -> Option<f64> {
        self.mean_over_receivers(|r, _, cpu| cpu as f64 / r as f64)
    }

    /// Receiver CPU time as a share of its run (1.0: a whole CPU), mean
    /// over the receivers that received frames.
    pub fn rx_cpu_share(&self) -> Option<f64> {
        self.mean_over_receivers(|_, elapsed, cpu| cpu as f64 / elapsed as f64)
    }

    fn mean_over_receivers(&self, f: impl Fn(u64, u64, u64) -> f64) -> Option<f64> {
        let values: Vec<f64> = (0..self.received.len())
            .filter(|&i| self.received[i] > 0 && self.rx_elapsed_ns[i] > 0)
            .map(|i| f(self.received[i], self.rx_elapsed_ns[i], self.rx_cpu_ns[i]))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }

    pub fn percentile(&self, p: f64) -> Option<u64> {
        percentile(&self.latencies, p)
    }

    pub fn to_json(&self) -> Value {
        let pacing = self.pacing.map(|p| {
            json!({
                "late_sends": p.late_sends,
                "late_p50_ns": p.late_p50_ns,
                "late_p99_ns": p.late_p99_ns,
                "late_max_ns": p.late_max_ns,
            })
        });
        json!({
            "sent": self.sent,
            "sender_seconds": self.sender_ns as f64 / 1e9,
            "sent_per_s": self.sent as f64 * 1e9 / self.sender_ns.max(1) as f64,
            "sender_cpu_ns": self.sender_cpu_ns,
            "pacing": pacing,
            "received": self.received,
            "loss": self.loss(),
            "frames_per_s": self.frames_per_s(),
            "rx_elapsed_ns": self.rx_elapsed_ns,
            "rx_cpu_ns": self.rx_cpu_ns,
            "rx_cpu_ns_per_frame": self.rx_cpu_per_frame_ns(),
            "rx_cpu_percent": self.rx_cpu_share().map(|s| s * 100.0),
            "poll_timeouts": self.poll_timeouts,
            "empty_wakeups": self.empty_wakeups,
            "latency_samples": self.latencies.len(),
            "p50_ns": self.percentile(0.50),
            "p99_ns": self.percentile(0.99),
            "p999_ns": self.percentile(0.999),
        })
    }
}

/// Runs cases one after another in a scratch directory.
pub struct Runner<'a> {
    pub dir: &'a Path,
    pub ring: u32,
    pub spin_ns: u64,
    pub interrupted: &'a Arc<AtomicBool>,
    pub counter: u32,
}

impl Runner<'_> {
    pub fn run_case(&mut self, case: &Case) -> Result<Outcome> {
        self.counter += 1;
        let path = self.dir.join(format!("case{}", self.counter));
        match &case.transport {
            Transport::Ipn | Transport::Plugin => {
                let config = ipn::Config {
                    lossless: case.lossless,
                    ring_slots: Some(self.ring),
                    max_ports: case.network_ports(),
                    mode: 0o700,
                    mtu: 1514.max(case.size as u32),
                    ..ipn::Config::default()
                };
                ipn::Network::create(&path, &config)
                    .with_context(|| format!("creating network {}", path.display()))?;
            }
            Transport::Unix => std::fs::create_dir(&path)
                .with_context(|| format!("creating {}", path.display()))?,
            Transport::VdeSwitch(_) => {}
        }
        let result = self.run_workers(case, &path);
        match &case.transport {
            Transport::Ipn | Transport::Plugin => {
                let _ = ipn::Network::remove(&path, true);
            }
            Transport::Unix => {
                let _ = std::fs::remove_dir_all(&path);
            }
            Transport::VdeSwitch(_) => {}
        }
        result
    }

    fn run_workers(&mut self, case: &Case, path: &Path) -> Result<Outcome> {
        let (send_role, recv_role) = match case.transport {
            Transport::Ipn => (Role::IpnSend, Role::IpnRecv),
            Transport::Unix => (Role::UnixSend, Role::UnixRecv),
            Transport::Plugin | Transport::VdeSwitch(_) => (Role::VdeSend, Role::VdeRecv),
        };
        let url = match &case.transport {
            Transport::Plugin => format!("ipn://{}", path.display()),
            Transport::VdeSwitch(switch) => format!("vde://{}", switch.display()),
            _ => String::new(),
        };
        let spec = |role: Role, index: u32| WorkerSpec {
            role,
            parent: std::process::id(),
            path: PathBuf::from(path),
            size: case.size,
            receivers: case.receivers,
            index,
            reader: case.reader,
            seconds: case.seconds,
            interval_ns: case.interval_ns,
            spin_ns: self.spin_ns,
            ports: case.idle_ports,
            busy_poll_us: case.busy_poll_us,
            url: url.clone(),
        };
        let mut children = Children::new(self.interrupted.clone());
        if case.transport == Transport::Ipn && case.idle_ports > 0 {
            let idle = children.spawn("idle ports".into(), &spec(Role::IpnIdle, 0))?;
            // A thousand joins take a while on a loaded machine.
            children.expect_lines(&[idle], "ready", Duration::from_secs(120))?;
        }
        let start_timeout = Duration::from_secs(10);
        let mut receivers = Vec::new();
        for i in 0..case.receivers {
            receivers.push(children.spawn(format!("receiver {i}"), &spec(recv_role, i))?);
        }
        children.expect_lines(&receivers, "ready", start_timeout)?;
        let sender = children.spawn("sender".into(), &spec(send_role, 0))?;
        children.expect_lines(&[sender], "ready", start_timeout)?;
        let run_timeout = Duration::from_secs_f64(case.seconds * 4.0 + 20.0);
        let sent = fields(
            &children.expect_lines(&[sender], "sent", run_timeout)?[0],
            3,
        )?;
        let pacing = if case.interval_ns > 0 {
            let f = fields(
                &children.expect_lines(&[sender], "pace", run_timeout)?[0],
                4,
            )?;
            Some(Pacing {
                late_sends: f[0],
                late_p50_ns: f[1],
                late_p99_ns: f[2],
                late_max_ns: f[3],
            })
        } else {
            None
        };
        let recv_lines = children
            .expect_lines(&receivers, "recv", run_timeout)
            .context(
                "a receiver never got the STOP frame (in the poll pattern: a lost wake-up?)",
            )?;
        let mut outcome = Outcome {
            sent: sent[0],
            sender_ns: sent[1],
            sender_cpu_ns: sent[2],
            pacing,
            received: Vec::new(),
            rx_elapsed_ns: Vec::new(),
            rx_cpu_ns: Vec::new(),
            poll_timeouts: Vec::new(),
            empty_wakeups: Vec::new(),
            latencies: Vec::new(),
        };
        for line in &recv_lines {
            let f = fields(line, 5)?;
            outcome.received.push(f[0]);
            outcome.rx_elapsed_ns.push(f[1]);
            outcome.rx_cpu_ns.push(f[2]);
            outcome.poll_timeouts.push(f[3]);
            outcome.empty_wakeups.push(f[4]);
        }
        if case.interval_ns > 0 {
            for line in children.expect_lines(&receivers, "lat", run_timeout)? {
                for word in line.split_whitespace().skip(1) {
                    outcome
                        .latencies
                        .push(word.parse::<u64>().context("bad latency sample")?);
                }
            }
            outcome.latencies.sort_unstable();
        }
        children.finish(Duration::from_secs(30))?;
        Ok(outcome)
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
