//! What a run prints: tables (one throughput table per reader pattern, the
//! first the headline; the latency table; the idle-port sweep), or the
//! same as JSON with every per-receiver number.

use anyhow::Result;
use serde_json::{json, Value};

use crate::runner::Outcome;
use crate::suite::{Row, SuiteArgs};
use crate::worker::Reader;

/// `/proc/loadavg`'s three load averages, read before the run.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn machine(load: &str) -> Value {
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
    json!({ "cpus": cpus, "cpu": cpu, "kernel": kernel, "load_before": load })
}

pub fn print_json(args: &SuiteArgs, load: &str, rows: &[Row]) -> Result<()> {
    let (seconds, latency_seconds) = args.durations();
    let cases: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "kind": r.kind,
                "frame_bytes": r.size,
                "receivers": r.receivers,
                "lossless": r.lossless,
                "reader": r.reader.name(),
                "idle_ports": r.idle_ports,
                "ipn": r.ipn.to_json(),
                "af_unix": r.unix.to_json(),
                "ratio": r.ratio(),
            })
        })
        .collect();
    let out = json!({
        "machine": machine(load),
        "settings": {
            "seconds": seconds,
            "latency_seconds": latency_seconds,
            "rate": args.rate,
            "interval_ns": args.interval_ns(),
            "spin_us": args.spin_us,
            "ring_slots": args.ring,
            "readers": args.readers.iter().map(|r| r.name()).collect::<Vec<_>>(),
            "idle_ports": args.idle_ports,
            "idle_sweep": args.idle_sweep,
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

/// A receiver's CPU per frame and share of its run: `812 ns  97%`.
fn cpu(o: &Outcome) -> String {
    let per_frame = match o.rx_cpu_per_frame_ns() {
        None => "-".to_string(),
        Some(ns) if ns < 1000.0 => format!("{ns:.0} ns"),
        Some(ns) => format!("{:.1} us", ns / 1000.0),
    };
    let share = o
        .rx_cpu_share()
        .map_or("-".to_string(), |s| format!("{:.0}%", s * 100.0));
    format!("{per_frame:>8} {share:>4}")
}

fn pattern(reader: Reader) -> &'static str {
    match reader {
        Reader::Poll => {
            "poll() the fd for POLLIN, then exactly one receive per readiness \
             (ipn: Port::try_recv_after_poll; AF_UNIX: recv), as QEMU's vde backend and vde_plug do"
        }
        Reader::Sleep => {
            "a blocking receive (ipn: Port::recv, woken by the doorbell; AF_UNIX: recv)"
        }
        Reader::Busy => {
            "spinning on a non-blocking receive (ipn: Port::try_recv; \
             AF_UNIX: recv(MSG_DONTWAIT)): a CPU per reader"
        }
    }
}

pub fn print_tables(args: &SuiteArgs, load: &str, rows: &[Row]) {
    let m = machine(load);
    let (seconds, latency_seconds) = args.durations();
    let durations = if args.idle_sweep.is_some() {
        format!("{seconds} s per case")
    } else {
        format!("{seconds} s per throughput case, {latency_seconds} s per latency case")
    };
    println!(
        "ipn bench: {} CPUs ({}), kernel {}, load average before the run {load}; ring {} slots; \
         {durations}",
        m["cpus"],
        m["cpu"].as_str().unwrap_or(""),
        m["kernel"].as_str().unwrap_or(""),
        args.ring,
    );
    if args.idle_ports > 0 {
        println!(
            "Every ipn network also has {} idle ports joined (write-only, never sending).",
            args.idle_ports
        );
    }
    println!(
        "frames/s: received per second per receiver (mean). loss: sent - received, summed over \
         receivers (AF_UNIX sends block: lossless). rx CPU: each receiver's user+system CPU time \
         per frame delivered, and as a share of its run (100% = one CPU), mean over receivers."
    );
    for (i, &reader) in args.readers.iter().enumerate() {
        throughput_table(rows, reader, i == 0);
    }
    latency_table(args, rows);
    sweep_table(rows);
}

fn throughput_table(rows: &[Row], reader: Reader, headline: bool) {
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.kind == "throughput" && r.reader == reader)
        .collect();
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "Throughput, {} reader{}: {}",
        reader.name(),
        if headline { " (headline)" } else { "" },
        pattern(reader)
    );
    println!(
        "{:<20} {:>9} {:>9} {:>8} {:>17} {:>9} {:>13} {:>14}",
        "case", "ipn", "AF_UNIX", "ratio", "ipn loss", "unix loss", "ipn rx CPU", "AF_UNIX rx CPU"
    );
    for r in rows {
        println!(
            "{:<20} {:>9} {:>9} {:>8} {:>17} {:>9} {:>13} {:>14}",
            format!("{} B 1->{} {}", r.size, r.receivers, mode(r.lossless)),
            rate(r.ipn.frames_per_s()),
            rate(r.unix.frames_per_s()),
            r.ratio().map_or("-".into(), |x| format!("{x:.2}x")),
            loss(&r.ipn),
            loss(&r.unix),
            cpu(&r.ipn),
            cpu(&r.unix),
        );
    }
}

fn mode(lossless: bool) -> &'static str {
    if lossless {
        "lossless"
    } else {
        "lossy"
    }
}

fn latency_table(args: &SuiteArgs, rows: &[Row]) {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.kind == "latency").collect();
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "One-way latency in us, sender paced at {} frames/s (a frame every {:.1} us, absolute \
         deadlines), lossy networks: receiver's CLOCK_MONOTONIC after the receive - the frame's \
         deadline (a sender that fell behind sends the frames it owes at once, each with \
         its own deadline):",
        args.rate,
        args.interval_ns() as f64 / 1000.0
    );
    println!(
        "{:<20} {:>8} {:>7} {:>7} {:>13} {:>8} {:>7} {:>7} {:>13} {:>8} {:>8}",
        "case",
        "ipn p50",
        "p99",
        "p99.9",
        "ipn rx CPU",
        "unix p50",
        "p99",
        "p99.9",
        "unix rx CPU",
        "ipn loss",
        "unix loss"
    );
    for r in &rows {
        println!(
            "{:<20} {:>8} {:>7} {:>7} {:>13} {:>8} {:>7} {:>7} {:>13} {:>8} {:>8}",
            format!("{} B 1->{} {}", r.size, r.receivers, r.reader.name()),
            us(r.ipn.percentile(0.5)),
            us(r.ipn.percentile(0.99)),
            us(r.ipn.percentile(0.999)),
            cpu(&r.ipn),
            us(r.unix.percentile(0.5)),
            us(r.unix.percentile(0.99)),
            us(r.unix.percentile(0.999)),
            cpu(&r.unix),
            loss(&r.ipn),
            loss(&r.unix),
        );
    }
    // How well the senders kept to the grid, over every latency case.
    let outcomes = rows.iter().flat_map(|r| [&r.ipn, &r.unix]);
    let achieved: Vec<f64> = outcomes
        .clone()
        .map(|o| o.sent as f64 * 1e9 / o.sender_ns.max(1) as f64)
        .collect();
    let pacing: Vec<_> = outcomes.filter_map(|o| o.pacing).collect();
    let worst = |f: fn(&crate::runner::Pacing) -> u64| pacing.iter().map(f).max().unwrap_or(0);
    println!(
        "Pacing: achieved {:.0}..{:.0} frames/s; a send left its deadline late by at most \
         {:.1} us (p50), {:.1} us (p99), {:.1} us (max) in any case; {} sends more than an interval late in all",
        achieved.iter().copied().fold(f64::INFINITY, f64::min),
        achieved.iter().copied().fold(0.0, f64::max),
        worst(|p| p.late_p50_ns) as f64 / 1000.0,
        worst(|p| p.late_p99_ns) as f64 / 1000.0,
        worst(|p| p.late_max_ns) as f64 / 1000.0,
        pacing.iter().map(|p| p.late_sends).sum::<u64>(),
    );
}

fn sweep_table(rows: &[Row]) {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.kind == "idle_sweep").collect();
    let Some(first) = rows.first() else {
        return;
    };
    let mut counts: Vec<u32> = rows.iter().map(|r| r.idle_ports).collect();
    counts.dedup();
    println!();
    println!(
        "Receive cost vs idle ports joined: 64 B 1->1, poll reader; the idle ports are \
         write-only and never send (as `ipn pub` waiting on its input), all held by one process; \
         every network of the sweep has the same number of ports:"
    );
    println!(
        "{:>10} {:>13} {:>13} {:>16} {:>13} {:>17}",
        "idle ports", "lossy fr/s", "rx CPU", "lossless fr/s", "rx CPU", "lossless x unix"
    );
    for n in counts {
        let find = |lossless: bool| {
            rows.iter()
                .find(|r| r.idle_ports == n && r.lossless == lossless)
        };
        let fps = |r: Option<&&Row>| r.map_or("-".into(), |r| rate(r.ipn.frames_per_s()));
        let cpu_of = |r: Option<&&Row>| r.map_or("-".into(), |r| cpu(&r.ipn));
        let (lossy, lossless) = (find(false), find(true));
        println!(
            "{:>10} {:>13} {:>13} {:>16} {:>13} {:>17}",
            n,
            fps(lossy),
            cpu_of(lossy),
            fps(lossless),
            cpu_of(lossless),
            lossless
                .and_then(|r| r.ratio())
                .map_or("-".into(), |x| format!("{x:.2}x")),
        );
    }
    println!(
        "AF_UNIX, same pattern (no idle ports: nothing to join): {} frames/s, rx CPU {}",
        rate(first.unix.frames_per_s()),
        cpu(&first.unix).trim()
    );
}
