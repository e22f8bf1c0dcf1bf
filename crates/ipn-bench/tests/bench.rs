//! `ipn-bench --quick --json` runs every case, prints well-formed JSON,
//! and its lossless cases lose nothing; so does the idle-port sweep. No
//! speed is asserted: machines are noisy.

use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

/// The benches share two CPUs with everything else: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `ipn-bench ARGS --quick --json` and returns its report.
fn bench(args: &[&str]) -> Value {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out: Output = Command::new(env!("CARGO_BIN_EXE_ipn-bench"))
        .args(args)
        .args(["--quick", "--json"])
        .output()
        .expect("running ipn-bench");
    assert!(
        out.status.success(),
        "ipn-bench {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("ipn-bench --json prints JSON");
    assert!(report["machine"]["cpus"].as_u64().unwrap_or(0) >= 1);
    report
}

fn count(cases: &[Value], kind: &str) -> usize {
    cases.iter().filter(|c| c["kind"] == kind).count()
}

/// What holds for every case: counts add up, lossless cases (and AF_UNIX,
/// whose sends block) lose nothing, receivers report their CPU time.
fn check_case(case: &Value) {
    let name = case["name"].as_str().expect("case name");
    let receivers = case["receivers"].as_u64().expect("receivers") as usize;
    for side in ["ipn", "af_unix"] {
        let result = &case[side];
        let sent = result["sent"].as_u64().expect("sent");
        assert!(sent > 0, "{name} {side}: nothing sent");
        let received = result["received"].as_array().expect("received");
        let loss = result["loss"].as_array().expect("loss");
        assert_eq!(received.len(), receivers, "{name} {side}");
        assert_eq!(loss.len(), receivers, "{name} {side}");
        for (r, l) in received.iter().zip(loss) {
            let (r, l) = (r.as_u64().unwrap(), l.as_u64().unwrap());
            assert_eq!(r + l, sent, "{name} {side}: received + lost != sent");
        }
        let lossless = case["lossless"] == true || side == "af_unix";
        if lossless {
            assert!(
                loss.iter().all(|l| l.as_u64() == Some(0)),
                "{name} {side}: a lossless case lost frames: {loss:?}"
            );
        }
        assert!(result["frames_per_s"].as_f64().is_some(), "{name} {side}");
        let cpu = result["rx_cpu_ns"].as_array().expect("rx_cpu_ns");
        assert_eq!(cpu.len(), receivers, "{name} {side}");
        if received.iter().any(|r| r.as_u64() > Some(1000)) {
            assert!(
                result["rx_cpu_ns_per_frame"].as_f64().is_some(),
                "{name} {side}: no CPU time per frame"
            );
        }
        if case["kind"] == "latency" {
            let p50 = result["p50_ns"].as_u64().expect("p50");
            let p99 = result["p99_ns"].as_u64().expect("p99");
            let p999 = result["p999_ns"].as_u64().expect("p99.9");
            assert!(p50 <= p99 && p99 <= p999, "{name} {side}");
            assert!(result["pacing"].is_object(), "{name} {side}: no pacing");
        }
    }
    if case["kind"] != "latency" {
        assert!(case["ratio"].as_f64().is_some(), "{name}: no ratio");
    }
}

#[test]
fn quick_json_bench_is_well_formed_and_lossless_cases_lose_nothing() {
    let report = bench(&[]);
    let cases = report["cases"].as_array().expect("a list of cases");
    // 64 and 1500 bytes, 1 and 4 receivers, lossy and lossless, in each of
    // the poll, sleep and busy reader patterns.
    assert_eq!(count(cases, "throughput"), 24);
    for reader in ["poll", "sleep", "busy"] {
        let n = cases
            .iter()
            .filter(|c| c["kind"] == "throughput" && c["reader"] == reader)
            .count();
        assert_eq!(n, 8, "{reader}");
    }
    // 64 and 1500 bytes: 4 poll readers, and 1 reader of each pattern.
    assert_eq!(count(cases, "latency"), 8);
    assert!(cases
        .iter()
        .any(|c| c["kind"] == "latency" && c["receivers"] == 4 && c["reader"] == "poll"));
    assert_eq!(report["settings"]["rate"], 20_000);
    for case in cases {
        check_case(case);
    }
}

#[test]
fn idle_port_sweep_joins_the_ports_and_lossless_cases_lose_nothing() {
    let report = bench(&["--idle-sweep", "0,16"]);
    let cases = report["cases"].as_array().expect("a list of cases");
    assert_eq!(cases.len(), 4, "0 and 16 idle ports, lossy and lossless");
    assert_eq!(count(cases, "idle_sweep"), 4);
    for (case, idle) in cases.iter().zip([0, 0, 16, 16]) {
        assert_eq!(case["idle_ports"], idle, "{}", case["name"]);
        assert_eq!(case["reader"], "poll");
        check_case(case);
    }
}

/// The rate sweep: every transport at every rate and fan-out asked for,
/// each case measured (ipn and ipn:// through libvdeplug and the plugin
/// built next to the bench, vde_switch through libvdeplug, AF_UNIX), the
/// lossless ones without loss, paced ones with latency percentiles; and
/// the plot, one line per transport.
#[test]
fn rate_sweep_measures_every_transport_and_draws_the_plot() {
    let plugin =
        std::path::Path::new(env!("CARGO_BIN_EXE_ipn-bench")).with_file_name("libvdeplug_ipn.so");
    assert!(
        plugin.exists(),
        "{} is missing: build the plugin first (cargo build -p vdeplug-ipn; \
         scripts/test.sh builds the whole workspace)",
        plugin.display()
    );
    let plot = std::env::temp_dir().join(format!("ipn-bench-sweep-{}.svg", std::process::id()));
    let plot_arg = plot.display().to_string();
    let report = bench(&[
        "--sweep",
        "5000,0",
        "--sweep-receivers",
        "1,2",
        "--plot",
        &plot_arg,
    ]);
    let sweep = &report["sweep"];
    assert_eq!(sweep["notes"].as_array().map(Vec::len), Some(0), "{sweep}");
    let cases = sweep["cases"].as_array().expect("sweep cases");
    let transports = [
        "ipn",
        "ipn busy-poll",
        "ipn recv",
        "ipn://",
        "vde_switch",
        "AF_UNIX",
    ];
    assert_eq!(cases.len(), 2 * 2 * transports.len());
    for case in cases {
        let what = format!(
            "{} at {} 1->{}",
            case["transport"], case["rate"], case["receivers"]
        );
        assert!(
            transports.contains(&case["transport"].as_str().unwrap_or("")),
            "{what}"
        );
        let outcome = &case["outcome"];
        assert!(outcome["error"].is_null(), "{what}: {}", outcome["error"]);
        let sent = outcome["sent"].as_u64().unwrap_or(0);
        assert!(sent > 0, "{what}: nothing sent");
        let received = outcome["received"].as_array().expect("received");
        assert_eq!(
            received.len() as u64,
            case["receivers"].as_u64().unwrap(),
            "{what}"
        );
        // vde_switch drops what does not fit its queues; the others wait.
        if case["transport"] != "vde_switch" {
            assert!(
                received.iter().all(|r| r.as_u64() == Some(sent)),
                "{what}: lost frames: {received:?} of {sent}"
            );
        }
        assert!(outcome["rx_cpu_ns_per_frame"].as_f64().is_some(), "{what}");
        if case["rate"] != 0 {
            assert!(outcome["p99_ns"].as_u64().is_some(), "{what}: no latency");
        }
    }
    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    let _ = std::fs::remove_file(&plot);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // Per panel (2 fan-outs x CPU and p99), one line per transport.
    assert_eq!(svg.matches("<polyline").count(), 4 * transports.len());
}
