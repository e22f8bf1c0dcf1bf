//! What a run prints: tables (throughput, latency), or the same as JSON
//! with every per-receiver number.

use anyhow::Result;
use serde_json::{json, Value};

use crate::runner::Outcome;
use crate::suite::{Row, SuiteArgs};

/// `/proc/loadavg`'s three load averages, read before the run.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine(load: &str) -> Value {
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

pub fn print_tables(args: &SuiteArgs, load: &str, rows: &[Row]) {
    let m = machine(load);
    let (seconds, latency_seconds) = args.durations();
    println!(
        "ipn bench: {} CPUs ({}), kernel {}, load average before the run {load}; ring {} slots; \
         {seconds} s per throughput case, {latency_seconds} s per latency case (one frame every \
         {} us)",
        m["cpus"],
        m["cpu"].as_str().unwrap_or(""),
        m["kernel"].as_str().unwrap_or(""),
        args.ring,
        args.interval_us
    );
    println!();
    println!(
        "Throughput (frames/s received per receiver; receivers block in recv; AF_UNIX sends \
         block, so it is lossless):"
    );
    println!(
        "{:<24} {:>12} {:>12} {:>7} {:>18} {:>12}",
        "case", "ipn", "AF_UNIX", "ratio", "ipn loss", "AF_UNIX loss"
    );
    for r in rows.iter().filter(|r| r.kind == "throughput") {
        println!(
            "{:<24} {:>12} {:>12} {:>7} {:>18} {:>12}",
            r.name,
            rate(r.ipn.frames_per_s()),
            rate(r.unix.frames_per_s()),
            r.ratio().map_or("-".into(), |x| format!("{x:.2}x")),
            loss(&r.ipn),
            loss(&r.unix),
        );
    }
    println!();
    println!(
        "One-way latency in us (paced sender, 1 receiver; busy: spins on try_recv / \
         recv(MSG_DONTWAIT), sleep: blocks):"
    );
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
