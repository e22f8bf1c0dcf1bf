//! `ipn bench --quick --json` runs, prints well-formed JSON, and its
//! lossless cases lose nothing. No speed is asserted: machines are noisy.

mod common;

use common::{ipn, stderr};

#[test]
fn quick_json_bench_is_well_formed_and_lossless_cases_lose_nothing() {
    let out = ipn()
        .args(["bench", "--quick", "--json"])
        .output()
        .expect("running ipn bench");
    assert!(
        out.status.success(),
        "ipn bench failed: {}\n{}",
        out.status,
        stderr(&out)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("ipn bench --json prints JSON");
    assert!(report["machine"]["cpus"].as_u64().unwrap_or(0) >= 1);
    let cases = report["cases"].as_array().expect("a list of cases");
    let count = |kind: &str| cases.iter().filter(|c| c["kind"] == kind).count();
    // 64 and 1500 bytes, 1 and 4 receivers, lossy and lossless.
    assert_eq!(count("throughput"), 8);
    // 64 and 1500 bytes, busy and sleeping reader.
    assert_eq!(count("latency"), 4);
    for case in cases {
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
            // AF_UNIX sends block, so AF_UNIX is always lossless.
            let lossless = case["lossless"] == true || side == "af_unix";
            if lossless {
                assert!(
                    loss.iter().all(|l| l.as_u64() == Some(0)),
                    "{name} {side}: a lossless case lost frames: {loss:?}"
                );
            }
            assert!(result["frames_per_s"].as_f64().is_some(), "{name} {side}");
            if case["kind"] == "latency" {
                let p50 = result["p50_ns"].as_u64().expect("p50");
                let p99 = result["p99_ns"].as_u64().expect("p99");
                assert!(p50 <= p99, "{name} {side}");
            }
        }
        if case["kind"] == "throughput" {
            assert!(case["ratio"].as_f64().is_some(), "{name}: no ratio");
        }
    }
}
