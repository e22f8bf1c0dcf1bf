//! Which cases a run measures, and in which order.
//!
//! Every ipn figure has its AF_UNIX peer measured right before it in the
//! same run (one AF_UNIX case serves the lossy and the lossless ipn case
//! of the same size, fan-out and reader pattern), so that a machine that
//! slows down mid-run moves both sides of a ratio.
//!
//! - Throughput: 64 and 1500 B, 1 and 4 receivers, each reader pattern
//!   (`--readers`), ipn lossy and lossless against AF_UNIX.
//! - Latency: a paced sender (`--rate`) to 4 poll-pattern receivers, and
//!   to 1 receiver of each pattern; 64 and 1500 B; lossy networks.
//! - Idle sweep (`--idle-sweep`, instead of the above): 64 B 1->1 in the
//!   poll pattern, lossy and lossless, with N idle ports joined, for each
//!   N; every network of the sweep has the same number of ports, so only
//!   the joined ports change.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};

use crate::procs::watch_signals;
use crate::report;
use crate::runner::{Case, Outcome, Runner, Transport};
use crate::worker::Reader;

/// The options of a run (`ipn-bench [OPTIONS]`, `ipn bench [OPTIONS]`).
#[derive(clap::Args, Debug)]
pub struct SuiteArgs {
    /// Seconds per throughput case
    #[arg(long, default_value_t = 1.5)]
    pub seconds: f64,
    /// Seconds per latency case
    #[arg(long, default_value_t = 2.0)]
    pub latency_seconds: f64,
    /// Latency cases: frames per second the paced sender sends
    #[arg(long, default_value_t = 20_000)]
    pub rate: u32,
    /// Latency cases: the paced sender spins this many microseconds before each deadline, after sleeping
    #[arg(long, default_value_t = 5)]
    pub spin_us: u64,
    /// Reader patterns to measure, in this order (the first is the headline table)
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Reader::Poll, Reader::Sleep, Reader::Busy])]
    pub readers: Vec<Reader>,
    /// Join this many write-only ports that never send to every ipn network, before its receivers
    #[arg(long, default_value_t = 0)]
    pub idle_ports: u32,
    /// Instead of the other cases: 64 B 1->1 in the poll pattern with each number of idle ports joined
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        num_args = 0..=1,
        default_missing_values = ["0", "16", "64", "256", "1024"],
        conflicts_with = "idle_ports"
    )]
    pub idle_sweep: Option<Vec<u32>>,
    /// Frames buffered per sender in the ipn networks (power of two)
    #[arg(long, default_value_t = 256)]
    pub ring: u32,
    /// Short runs (0.2 s per case), for CI
    #[arg(long)]
    pub quick: bool,
    /// Print the results as JSON instead of tables
    #[arg(long)]
    pub json: bool,
    /// Run only the cases whose name contains this text (e.g. "latency", "1500 B 1->4", "poll reader")
    #[arg(long)]
    pub filter: Option<String>,
    /// Instead of the other cases: the rate sweep, each rate in frames/s (0: flat out), for ipn, ipn busy-poll, ipn's blocking recv, ipn:// and vde_switch through libvdeplug, and AF_UNIX
    #[arg(
        long,
        value_name = "RATE,RATE,...",
        value_delimiter = ',',
        num_args = 0..=1,
        default_missing_values = crate::sweep::DEFAULT_RATES,
        conflicts_with_all = ["idle_sweep", "idle_ports"]
    )]
    pub sweep: Option<Vec<u32>>,
    /// Rate sweep: the fan-outs to measure
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_values_t = [1u32, 4])]
    pub sweep_receivers: Vec<u32>,
    /// Rate sweep: the transports to measure (all by default; ratios are
    /// to AF_UNIX, so keep `unix` for them)
    #[arg(
        long,
        value_name = "PEER,PEER,...",
        value_delimiter = ',',
        default_values = ["ipn", "ipn-busy-poll", "ipn-recv", "plugin", "vde-switch", "unix"]
    )]
    pub sweep_peers: Vec<crate::sweep::Peer>,
    /// Rate sweep: frame size in bytes, Ethernet header included
    #[arg(long, default_value_t = 64)]
    pub sweep_size: usize,
    /// Rate sweep: the busy poll of the "ipn busy-poll" receivers, in microseconds
    #[arg(long, default_value_t = 50)]
    pub busy_poll_us: u64,
    /// Rate sweep: also draw CPU per frame and p99 against rate into this SVG file
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

impl SuiteArgs {
    /// Seconds per throughput case and per latency case.
    pub fn durations(&self) -> (f64, f64) {
        if self.quick {
            (0.2, 0.2)
        } else {
            (self.seconds, self.latency_seconds)
        }
    }

    pub fn interval_ns(&self) -> u64 {
        1_000_000_000 / u64::from(self.rate.max(1))
    }
}

/// One line of the report: an ipn case and its AF_UNIX peer.
#[derive(Debug)]
pub struct Row {
    /// Unique, and what `--filter` matches.
    pub name: String,
    /// `throughput`, `latency` or `idle_sweep`.
    pub kind: &'static str,
    pub size: usize,
    pub receivers: u32,
    pub lossless: bool,
    pub reader: Reader,
    pub idle_ports: u32,
    pub ipn: Outcome,
    pub unix: Outcome,
}

impl Row {
    /// ipn's frames/s over AF_UNIX's (not for latency rows).
    pub fn ratio(&self) -> Option<f64> {
        let unix = self.unix.frames_per_s();
        (self.kind != "latency" && unix > 0.0).then(|| self.ipn.frames_per_s() / unix)
    }
}

pub fn run(args: &SuiteArgs) -> Result<()> {
    let (seconds, latency_seconds) = args.durations();
    if !(seconds > 0.0 && latency_seconds > 0.0) {
        bail!("--seconds and --latency-seconds must be positive");
    }
    if args.rate == 0 || args.rate > 1_000_000 {
        bail!("--rate must be 1 to 1000000 frames/s");
    }
    if args.readers.is_empty() {
        bail!("--readers needs at least one of poll, sleep, busy");
    }
    let load = report::load_average();
    let interrupted = watch_signals()?;
    let dir = TempDir::new()?;
    let mut runner = Runner {
        dir: &dir.0,
        ring: args.ring,
        spin_ns: args.spin_us * 1000,
        interrupted: &interrupted,
        counter: 0,
    };
    if let Some(rates) = &args.sweep {
        return rate_sweep(args, rates, &load, &mut runner, &interrupted, &dir);
    }
    let result = match &args.idle_sweep {
        Some(counts) => idle_sweep(args, counts, &mut runner),
        None => main_cases(args, &mut runner),
    };
    if interrupted.load(Ordering::SeqCst) {
        bail!(
            "interrupted; bench workers stopped, {} removed",
            dir.0.display()
        );
    }
    let rows = result?;
    if args.json {
        report::print_json(args, &load, &rows)
    } else {
        report::print_tables(args, &load, &rows);
        Ok(())
    }
}

fn rate_sweep(
    args: &SuiteArgs,
    rates: &[u32],
    load: &str,
    runner: &mut Runner,
    interrupted: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    dir: &TempDir,
) -> Result<()> {
    if rates.iter().any(|&r| r > 10_000_000) {
        bail!("--sweep: rates go up to 10000000 frames/s (0: flat out)");
    }
    if args.sweep_receivers.is_empty() || args.sweep_receivers.iter().any(|&n| n == 0 || n > 16) {
        bail!("--sweep-receivers: 1 to 16 receivers each");
    }
    if args.sweep_size < crate::worker::STAMPED || args.sweep_size > 1514 {
        bail!(
            "--sweep-size: {} to 1514 bytes (an Ethernet header, a sequence number and a stamp)",
            crate::worker::STAMPED
        );
    }
    if args.busy_poll_us > ipn::JoinOptions::MAX_BUSY_POLL.as_micros() as u64 {
        bail!("--busy-poll-us: at most 100000");
    }
    let show = |what: &str| progress(args, what);
    let result = crate::sweep::run(args, rates, runner, &show);
    show("");
    if interrupted.load(Ordering::SeqCst) {
        bail!(
            "interrupted; bench workers stopped, {} removed",
            dir.0.display()
        );
    }
    let (points, notes) = result?;
    if let Some(path) = &args.plot {
        let title = format!(
            "ipn bench --sweep, {} B frames (load average before the run {load})",
            args.sweep_size
        );
        std::fs::write(
            path,
            crate::plot::svg(&points, &args.sweep_receivers, &title),
        )
        .with_context(|| format!("writing the plot to {}", path.display()))?;
    }
    if args.json {
        let out = serde_json::json!({
            "machine": report::machine(load),
            "sweep": crate::sweep::to_json(args, &points, &notes),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        crate::sweep::print_tables(args, load, &points, &notes);
        if let Some(path) = &args.plot {
            println!();
            println!("Plot: {}", path.display());
        }
    }
    Ok(())
}

/// Progress on a terminal's standard error, erased as it goes.
fn progress(args: &SuiteArgs, what: &str) {
    if !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprint!("\r\x1b[K{what}");
    }
}

fn wanted(args: &SuiteArgs, name: &str) -> bool {
    args.filter
        .as_ref()
        .is_none_or(|f| name.contains(f.as_str()))
}

fn mode(lossless: bool) -> &'static str {
    if lossless {
        "lossless"
    } else {
        "lossy"
    }
}

fn main_cases(args: &SuiteArgs, runner: &mut Runner) -> Result<Vec<Row>> {
    let (seconds, latency_seconds) = args.durations();
    let mut rows = Vec::new();
    for size in [64usize, 1500] {
        for receivers in [1u32, 4] {
            for &reader in &args.readers {
                let name = |lossless: bool| {
                    format!(
                        "{size} B 1->{receivers} {}, {} reader",
                        mode(lossless),
                        reader.name()
                    )
                };
                let modes: Vec<bool> = [false, true]
                    .into_iter()
                    .filter(|&l| wanted(args, &name(l)))
                    .collect();
                if modes.is_empty() {
                    continue;
                }
                let base = Case {
                    transport: Transport::Unix,
                    size,
                    receivers,
                    lossless: true,
                    reader,
                    seconds,
                    interval_ns: 0,
                    idle_ports: args.idle_ports,
                    max_ports: 0,
                    busy_poll_us: 0,
                };
                progress(args, &format!("AF_UNIX {}", name(true)));
                let unix = runner.run_case(&base)?;
                for lossless in modes {
                    progress(args, &format!("ipn {}", name(lossless)));
                    let ipn = runner.run_case(&Case {
                        transport: Transport::Ipn,
                        lossless,
                        ..base.clone()
                    })?;
                    rows.push(Row {
                        name: name(lossless),
                        kind: "throughput",
                        size,
                        receivers,
                        lossless,
                        reader,
                        idle_ports: args.idle_ports,
                        ipn,
                        unix: unix.clone(),
                    });
                }
            }
        }
    }
    // Latency: the fan-out in the real pattern first, then one receiver
    // in each pattern.
    let mut latency_cases = Vec::new();
    if args.readers.contains(&Reader::Poll) {
        latency_cases.push((4u32, Reader::Poll));
    }
    for &reader in &args.readers {
        latency_cases.push((1, reader));
    }
    for size in [64usize, 1500] {
        for &(receivers, reader) in &latency_cases {
            let name = format!("{size} B 1->{receivers} latency, {} reader", reader.name());
            if !wanted(args, &name) {
                continue;
            }
            let case = Case {
                transport: Transport::Unix,
                size,
                receivers,
                lossless: false,
                reader,
                seconds: latency_seconds,
                interval_ns: args.interval_ns(),
                idle_ports: args.idle_ports,
                max_ports: 0,
                busy_poll_us: 0,
            };
            progress(args, &format!("AF_UNIX {name}"));
            let unix = runner.run_case(&case)?;
            progress(args, &format!("ipn {name}"));
            let ipn = runner.run_case(&Case {
                transport: Transport::Ipn,
                ..case
            })?;
            rows.push(Row {
                name,
                kind: "latency",
                size,
                receivers,
                lossless: false,
                reader,
                idle_ports: args.idle_ports,
                ipn,
                unix,
            });
        }
    }
    progress(args, "");
    Ok(rows)
}

fn idle_sweep(args: &SuiteArgs, counts: &[u32], runner: &mut Runner) -> Result<Vec<Row>> {
    let (seconds, _) = args.durations();
    let most = counts.iter().copied().max().unwrap_or(0);
    // Sender, receiver, idle ports: the same network size for every N.
    let max_ports = most + 2;
    if max_ports > 4096 {
        bail!("--idle-sweep: at most 4094 idle ports (a network has at most 4096 ports)");
    }
    let base = Case {
        transport: Transport::Unix,
        size: 64,
        receivers: 1,
        lossless: true,
        reader: Reader::Poll,
        seconds,
        interval_ns: 0,
        idle_ports: 0,
        max_ports,
        busy_poll_us: 0,
    };
    let name = |lossless: bool, n: u32| {
        format!("64 B 1->1 {}, poll reader, {n} idle ports", mode(lossless))
    };
    let mut unix: Option<Outcome> = None;
    let mut rows = Vec::new();
    for &n in counts {
        for lossless in [false, true] {
            if !wanted(args, &name(lossless, n)) {
                continue;
            }
            let peer = match &unix {
                Some(u) => u.clone(),
                None => {
                    progress(args, "AF_UNIX 64 B 1->1, poll reader");
                    let u = runner.run_case(&base)?;
                    unix = Some(u.clone());
                    u
                }
            };
            progress(args, &format!("ipn {}", name(lossless, n)));
            let ipn = runner.run_case(&Case {
                transport: Transport::Ipn,
                lossless,
                idle_ports: n,
                ..base.clone()
            })?;
            rows.push(Row {
                name: name(lossless, n),
                kind: "idle_sweep",
                size: 64,
                receivers: 1,
                lossless,
                reader: Reader::Poll,
                idle_ports: n,
                ipn,
                unix: peer,
            });
        }
    }
    progress(args, "");
    Ok(rows)
}

/// The run's scratch directory; removed on drop.
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
