//! What 802.1Q VLANs cost: 64-byte unicast frames between 2 of 4 ports,
//! on a hub and on a switch, without and with VLANs, in one run.
//!
//! ```text
//! cargo run --release -p ipn-bench --example vlan_bench
//! cargo run --release -p ipn-bench --example vlan_bench -- --seconds 2 --rounds 9
//! ```
//!
//! In each case a network of 4 ports: A sends unicast frames to B; C and D
//! are joined and read, as idle VMs do. On a hub, C and D receive every
//! frame; on a switch they step over them (A learned B's address from B's
//! first frame). With VLANs A and B are access ports of VLAN 10, C of VLAN
//! 20, D a trunk of VLANs 10 and 20: every frame is tagged on the way in,
//! checked against each reader's VLANs and untagged on the way out, and
//! the switch learns per VLAN. Without, every port is transparent. With
//! `--c-vlan 10`, C is in VLAN 10 too: every frame then goes where it goes
//! without VLANs, and only the filtering differs.
//!
//! Two measures, each case's figure the median over `--rounds` rounds in
//! which the cases run in turn:
//!
//! - **data path** (`one thread`): the four ports in one thread, A sending
//!   64 frames, then B, C and D reading what waits, again and again; frames
//!   per second of the thread's CPU time (system calls included). No
//!   scheduler in the way, and other processes' load does not count: the
//!   inverse of the CPU the whole network spends per frame, and what VLAN
//!   filtering adds to it.
//! - **processes**: every port its own process (this program run again
//!   with `--child`), as VMs are; lossless, so the sender is paced by the
//!   slowest reader and nothing is lost; frames/s B received. With 4 busy
//!   processes on few CPUs, this one measures the scheduler as much as
//!   ipn: a reader that only steps over frames (C and D on a switch, C in
//!   VLAN 20 on a hub) sleeps between bursts and must be woken and
//!   scheduled before a lossless sender may go on.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use ipn::ethernet::{Frame, Vlan, VlanSet};
use ipn::{Config, JoinOptions, Network, Port, Protocol, RecvError};

#[derive(Parser, Debug)]
#[command(
    name = "vlan_bench",
    about = "What VLANs cost: 64 B unicast between 2 of 4 ports"
)]
struct Args {
    /// Seconds the sender sends in each case
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Rounds over every case; each case's figure is its median
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Frame size in bytes (at least 24)
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// C's VLAN in the VLAN cases: 20 (it then steps over A's frames), or
    /// 10 (it receives them, as without VLANs: the frames go where they
    /// go without VLANs, and only the filtering differs)
    #[arg(long, default_value_t = 20)]
    c_vlan: u16,
    /// Run only this case: hub, "hub + VLANs", switch or "switch + VLANs"
    #[arg(long)]
    only: Option<String>,
    /// Skip the processes; measure the data path only
    #[arg(long)]
    data_path_only: bool,
    /// Hidden: run as one port of a case (a, b, c or d)
    #[arg(long, hide = true)]
    child: Option<String>,
    #[arg(long, hide = true)]
    path: Option<PathBuf>,
    #[arg(long, hide = true)]
    vlans: bool,
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
/// Payload marks, after the EtherType.
const HELLO: u8 = 1;
const DATA: u8 = 2;
const STOP: u8 = 3;

fn frame(dst: [u8; 6], src: [u8; 6], mark: u8, size: usize) -> Vec<u8> {
    let mut f = vec![0u8; size];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14] = mark;
    f
}

/// The mark of a frame as a port received it (untagged at access ports,
/// as is at transparent ones).
fn mark(bytes: &[u8]) -> Option<u8> {
    let view = Frame::new_checked(bytes)?;
    let (_, rest) = view.untagged_parts();
    let payload = if view.tag().is_some() {
        &rest[2..]
    } else {
        &bytes[14..]
    };
    payload.first().copied()
}

fn membership(role: &str, vlans: bool, c_vlan: u16) -> Vlan {
    if !vlans {
        return Vlan::Transparent;
    }
    match role {
        "a" | "b" => Vlan::Access(10),
        "c" => Vlan::Access(c_vlan),
        _ => Vlan::Trunk {
            vlans: [10, 20].into_iter().collect::<VlanSet>(),
            native: None,
        },
    }
}

/// One port of a case: joins, says `ready`, waits for `go` on standard
/// input, plays its role, reports on standard output.
fn child(args: &Args, role: &str, path: &Path) -> Result<(), String> {
    let (seconds, size) = (args.seconds, args.size.max(24));
    let options = JoinOptions {
        vlan: membership(role, args.vlans, args.c_vlan),
        ..JoinOptions::described(format!("vlan_bench {role}"))
    };
    let mut port = Port::join(path, &options).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; port.max_frame()];
    match role {
        "a" => {
            // Learn B's address (switch), then send flat out.
            loop {
                match port.recv_timeout(&mut buf, Duration::from_secs(10)) {
                    Ok(n) if mark(&buf[..n]) == Some(HELLO) => break,
                    Ok(_) => {}
                    Err(e) => return Err(format!("a: no hello from b: {e}")),
                }
            }
            let data = frame(MAC_B, MAC_A, DATA, size);
            let start = Instant::now();
            let until = start + Duration::from_secs_f64(seconds);
            let mut sent: u64 = 0;
            while Instant::now() < until {
                for _ in 0..256 {
                    port.send(&data).map_err(|e| e.to_string())?;
                }
                sent += 256;
            }
            port.send(&frame(MAC_B, MAC_A, STOP, size))
                .map_err(|e| e.to_string())?;
            writeln!(out, "sent {sent} {}", start.elapsed().as_nanos())
                .map_err(|e| e.to_string())?;
        }
        "b" => {
            port.send(&frame([0xff; 6], MAC_B, HELLO, size))
                .map_err(|e| e.to_string())?;
            let mut received: u64 = 0;
            let mut first: Option<Instant> = None;
            loop {
                let n = port.recv(&mut buf).map_err(|e| e.to_string())?;
                match mark(&buf[..n]) {
                    Some(DATA) => {
                        first.get_or_insert_with(Instant::now);
                        received += 1;
                    }
                    Some(STOP) => break,
                    _ => {}
                }
            }
            let ns = first.map_or(0, |t| t.elapsed().as_nanos());
            writeln!(out, "recv {received} {ns}").map_err(|e| e.to_string())?;
        }
        _ => loop {
            // C and D read until the parent kills them.
            match port.recv(&mut buf) {
                Ok(_) | Err(RecvError::TimedOut) => {}
                Err(e) => return Err(e.to_string()),
            }
        },
    }
    out.flush().map_err(|e| e.to_string())
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(role: &str, path: &Path, args: &Args, vlans: bool) -> Proc {
        let exe = std::env::current_exe().expect("own path");
        let mut command = Command::new(exe);
        command
            .args(["--child", role, "--path"])
            .arg(path)
            .args(["--seconds", &args.seconds.to_string()])
            .args(["--size", &args.size.to_string()])
            .args(["--c-vlan", &args.c_vlan.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if vlans {
            command.arg("--vlans");
        }
        let mut child = command.spawn().expect("spawn a port");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Proc {
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("a line from a port");
        line
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Receives everything waiting at `port`; counts the DATA frames.
fn drain(port: &mut Port, buf: &mut [u8]) -> u64 {
    let mut data = 0;
    loop {
        match port.try_recv(buf) {
            Ok(n) => data += u64::from(mark(&buf[..n]) == Some(DATA)),
            Err(RecvError::WouldBlock) => return data,
            Err(e) => panic!("{e}"),
        }
    }
}

/// One case once in one thread: frames through the network per second of
/// this thread's CPU time.
fn data_path(args: &Args, protocol: Protocol, vlans: bool, round: usize) -> f64 {
    let path = std::env::temp_dir().join(format!(
        "ipn-vlan-bench-{}-{}-{}-{round}-thread",
        std::process::id(),
        protocol.name(),
        vlans
    ));
    let _ = Network::remove(&path, true);
    let config = Config {
        protocol,
        ..Config::default()
    };
    Network::create(&path, &config).expect("create the network");
    let join = |role: &str| {
        let options = JoinOptions {
            vlan: membership(role, vlans, args.c_vlan),
            ..JoinOptions::described(format!("vlan_bench {role}"))
        };
        Port::join(&path, &options).expect("join")
    };
    let (mut a, mut b, mut c, mut d) = (join("a"), join("b"), join("c"), join("d"));
    let mut buf = vec![0u8; a.max_frame()];
    let size = args.size.max(24);
    b.send(&frame([0xff; 6], MAC_B, HELLO, size)).unwrap();
    for port in [&mut a, &mut c, &mut d] {
        drain(port, &mut buf);
    }
    let data = frame(MAC_B, MAC_A, DATA, size);
    let start = Instant::now();
    let cpu_start = thread_cpu();
    let until = start + Duration::from_secs_f64(args.seconds);
    let (mut sent, mut received) = (0u64, 0u64);
    while Instant::now() < until {
        for _ in 0..64 {
            a.send(&data).unwrap();
        }
        sent += 64;
        received += drain(&mut b, &mut buf);
        drain(&mut c, &mut buf);
        drain(&mut d, &mut buf);
    }
    let cpu = (thread_cpu() - cpu_start).as_secs_f64();
    assert_eq!(sent, received, "B got every frame");
    drop((a, b, c, d));
    let _ = Network::remove(&path, true);
    received as f64 / cpu
}

/// The CPU time this thread has used: unlike the wall clock, it does not
/// count the time other processes of a busy machine took the CPU from us.
fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("CLOCK_THREAD_CPUTIME_ID");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// One case once: frames per second B received.
fn run_case(args: &Args, protocol: Protocol, vlans: bool, round: usize) -> f64 {
    let path = std::env::temp_dir().join(format!(
        "ipn-vlan-bench-{}-{}-{}-{round}",
        std::process::id(),
        protocol.name(),
        vlans
    ));
    let _ = Network::remove(&path, true);
    let config = Config {
        protocol,
        lossless: true,
        ..Config::default()
    };
    Network::create(&path, &config).expect("create the network");
    let mut procs: Vec<Proc> = ["a", "b", "c", "d"]
        .iter()
        .map(|role| Proc::spawn(role, &path, args, vlans))
        .collect();
    for p in &mut procs {
        assert_eq!(p.line().trim(), "ready");
    }
    for p in &mut procs {
        writeln!(p.stdin, "go").expect("go");
        p.stdin.flush().unwrap();
    }
    let sent = procs[0].line();
    let recv = procs[1].line();
    drop(procs);
    let _ = Network::remove(&path, true);
    let field = |line: &str, i: usize| -> f64 {
        line.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad report {line:?}"))
    };
    let (count, ns) = (field(&recv, 1), field(&recv, 2));
    assert_eq!(field(&sent, 1), count, "lossless: B got every frame A sent");
    count / (ns / 1e9)
}

/// One measure of one case in one round: frames/s.
type Measure = fn(&Args, Protocol, bool, usize) -> f64;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let (Some(role), Some(path)) = (&args.child, &args.path) {
        return match child(&args, role, path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vlan_bench {role}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cases: Vec<(&str, Protocol, bool)> = [
        ("hub", Protocol::Hub, false),
        ("hub + VLANs", Protocol::Hub, true),
        ("switch", Protocol::Switch, false),
        ("switch + VLANs", Protocol::Switch, true),
    ]
    .into_iter()
    .filter(|(name, _, _)| args.only.as_ref().is_none_or(|only| *name == only.as_str()))
    .collect();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "vlan_bench: {} B unicast A -> B, 4 ports (C, D reading; with VLANs A, B in 10, C in \
         {}, D a trunk of 10 and 20), {} s per case, {} rounds, {cpus} CPUs",
        args.size, args.c_vlan, args.seconds, args.rounds
    );
    let mut measures: Vec<(&str, Measure)> = vec![("data path, one thread", data_path)];
    if !args.data_path_only {
        measures.push(("processes, lossless", run_case));
    }
    let mut results: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); cases.len()]; measures.len()];
    for round in 0..args.rounds {
        for (m, (measure, run)) in measures.iter().enumerate() {
            for (i, &(_, protocol, vlans)) in cases.iter().enumerate() {
                results[m][i].push(run(&args, protocol, vlans, round));
            }
            let line: Vec<String> = cases
                .iter()
                .zip(&results[m])
                .map(|((name, _, _), r)| format!("{name} {:.2} M", r[round] / 1e6))
                .collect();
            println!("round {} {measure}: {}", round + 1, line.join(", "));
        }
    }
    let cost = |with: f64, without: f64| (1.0 - with / without) * 100.0;
    for ((measure, _), results) in measures.iter().zip(results) {
        let spread: Vec<(f64, f64)> = results
            .iter()
            .map(|r| {
                let (lo, hi) = r
                    .iter()
                    .fold((f64::MAX, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                (lo, hi)
            })
            .collect();
        let medians: Vec<f64> = results.into_iter().map(median).collect();
        let unit = if *measure == "data path, one thread" {
            "frames B received per CPU second"
        } else {
            "frames/s B received"
        };
        println!(
            "\n{measure}: {unit}, median (min..max) of {} rounds",
            args.rounds
        );
        for (((name, _, _), m), (lo, hi)) in cases.iter().zip(&medians).zip(&spread) {
            println!(
                "  {name:<16} {:>8.2} M  ({:.2}..{:.2})",
                m / 1e6,
                lo / 1e6,
                hi / 1e6
            );
        }
        if medians.len() == 4 {
            println!(
                "  VLANs cost {:.1} % on the hub, {:.1} % on the switch; the switch with VLANs \
                 runs at {:.2}x the hub",
                cost(medians[1], medians[0]),
                cost(medians[3], medians[2]),
                medians[3] / medians[0]
            );
        }
    }
    ExitCode::SUCCESS
}
