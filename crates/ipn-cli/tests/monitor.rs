//! Watching a network: `ipn top` in a real terminal (tmux: started, keys
//! sent, the screen read back) and `ipn status --prometheus` read by
//! Prometheus' own tools (`promtool check metrics`, and the Python
//! client's parser for the label values).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{ipn, run, stderr, stdout, Bg, Net, BIN, LONG};

/// A frame as a line for `ipn pub`: destination 'abcdef' (a group
/// address), source 42:42:43:44:45:46 (unicast, so a switch learns it).
const LINE: &str = "abcdefBBCDEFxx a frame from the test\n";
const SOURCE: &str = "42:42:43:44:45:46";

/// `ipn pub NET ARGS` fed a line every 20 ms until it is dropped.
fn publisher(net: &Net, args: &[&str]) -> Bg {
    let mut child = ipn()
        .args(["pub", net.p()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running ipn pub");
    let mut input = child.stdin.take().unwrap();
    // Ends when the process is killed (EPIPE).
    std::thread::spawn(move || {
        while input.write_all(LINE.as_bytes()).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Bg::adopt(child)
}

/// The shell line a pane runs: `ipn top NET`, then its exit status and
/// the terminal's modes (`stty -a`) once it has ended.
fn top_then_report(net: &Net) -> String {
    format!(
        "'{BIN}' top '{}'; echo \"top exited $?\"; stty -a | tr '\\n' ' '; echo; exec sleep 600",
        net.p()
    )
}

/// After `ipn top` ended: its exit status is `status`, the alternate
/// screen is gone, and the terminal is back in cooked mode with echo.
#[track_caller]
fn assert_ended_and_restored(tmux: &Tmux, status: i32) {
    let screen = tmux.wait_for(&[&format!("top exited {status}"), "speed"], LONG);
    assert!(
        !tmux.alternate_screen(),
        "still on the alternate screen:\n{screen}"
    );
    let modes = screen
        .lines()
        .skip_while(|l| !l.contains("top exited"))
        .collect::<Vec<_>>()
        .join(" ");
    for mode in [" icanon", " echo ", " isig", " icrnl", " opost"] {
        assert!(
            modes.contains(mode),
            "terminal mode{mode} not restored: {modes}"
        );
    }
    assert!(
        !screen.contains("ipn top /"),
        "top's screen left behind:\n{screen}"
    );
}

#[test]
fn top_shows_rates_vlans_escaped_descriptions_and_addresses_then_quits_on_q() {
    let net = Net::created("top-q", &["--switch"]);
    let _sub = Bg::spawn(&["sub", net.p(), "--vlan", "10", "-d", "listener"]);
    let publisher = publisher(&net, &["--vlan", "10", "-d", "evil\x1b[2J\x1b[31mred"]);
    net.wait_for("the publisher's address learned", |s| {
        s["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["addresses"].to_string().contains(SOURCE))
    });
    let tmux = Tmux::start("top-q", &top_then_report(&net));
    let pid = publisher.pid().to_string();
    let screen = tmux.wait_for(
        &[
            &format!("ipn top {}: lossy switch", net.p()),
            "access 10",
            "listener",
            // The escape sequences in the description are shown, not run.
            "evil\\x1b[2J\\x1b[31mred",
            &pid,
            SOURCE,
        ],
        LONG,
    );
    assert!(tmux.alternate_screen(), "top is not full-screen:\n{screen}");
    // The publisher's row: about 50 frames/s of 37 bytes, once two
    // readings were taken.
    let deadline = Instant::now() + LONG;
    let row = loop {
        let screen = tmux.screen();
        let row = screen
            .lines()
            .find(|l| l.contains(&pid))
            .unwrap_or("")
            .to_string();
        let tx_rate: f64 = row
            .split_whitespace()
            .nth(3) // "│PORT" PID STATE TX-FR/S ...
            .and_then(|w| w.parse().ok())
            .unwrap_or(0.0);
        if tx_rate > 5.0 {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "no sending rate on the publisher's row:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(row.contains("active"), "{row}\n{screen}");
    tmux.send("q");
    assert_ended_and_restored(&tmux, 0);
}

/// The pid of `ipn top` in `tmux`'s pane: the pane's shell's only child.
fn top_pid(tmux: &Tmux) -> i32 {
    let shell: i32 = tmux
        .must(&["display-message", "-p", "#{pane_pid}"])
        .trim()
        .parse()
        .unwrap();
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    children
        .split_whitespace()
        .next()
        .expect("top runs")
        .parse()
        .unwrap()
}

#[test]
fn top_quits_on_ctrl_c_and_on_sigterm_restoring_the_terminal_each_time() {
    let net = Net::created("top-c", &[]);
    let _sub = Bg::spawn(&["sub", net.p(), "-d", "watched"]);
    net.wait_for_readers(1);

    let tmux = Tmux::start("top-c", &top_then_report(&net));
    tmux.wait_for(&["watched", "lossy hub"], LONG);
    tmux.send("C-c");
    assert_ended_and_restored(&tmux, 0);

    // SIGTERM: the shell's only child is `ipn top`.
    let tmux = Tmux::start("top-t", &top_then_report(&net));
    tmux.wait_for(&["watched"], LONG);
    let top = top_pid(&tmux);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(top),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_ended_and_restored(&tmux, 143);
}

/// A terminal that goes away (its tmux killed, its window closed) ends
/// `ipn top`: it must not stay behind, spinning on a terminal nobody has.
#[test]
fn top_ends_when_its_terminal_goes_away() {
    let net = Net::created("top-h", &[]);
    let tmux = Tmux::start("top-h", &top_then_report(&net));
    tmux.wait_for(&["lossy hub"], LONG);
    let top = top_pid(&tmux);
    // The shell ignores the hang-up (sh -c waiting for its child is not
    // interactive); tmux gone, only the terminal's end tells `ipn top`.
    drop(tmux);
    let deadline = std::time::Instant::now() + LONG;
    while std::path::Path::new(&format!("/proc/{top}")).exists()
        && std::fs::read_to_string(format!("/proc/{top}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "ipn top (pid {top}) still runs after its terminal went away"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn top_refuses_to_run_without_a_terminal_and_names_the_alternatives() {
    let net = Net::created("top-noterm", &[]);
    let out = run(&["top", net.p()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--prometheus"), "{}", stderr(&out));
    let missing = run(&["top", "/nonexistent/ipn-net"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
}

#[test]
fn prometheus_output_passes_promtool_and_parses_back_with_the_ports_labels() {
    let net = Net::created("prom", &["--switch"]);
    let description = "a \"quoted\" back\\slash\nand a newline";
    let _sub = Bg::spawn(&["sub", net.p(), "--trunk", "10,20", "-d", description]);
    let _publisher = publisher(&net, &["--vlan", "10", "-d", "ipn pub"]);
    net.wait_for("frames received", |s| {
        s["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["rx_frames"].as_u64() > Some(2))
    });
    let out = run(&["status", net.p(), "--prometheus"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);

    // promtool: the format and Prometheus' naming rules (lint).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (Debian package prometheus; scripts/deps.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{text}",
        stdout(&checked),
        stderr(&checked)
    );

    // The Python client's parser: the values and labels come back as sent.
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.setdefault(s.name, []).append({"labels": s.labels, "value": s.value, "type": family.type})
print(json.dumps(out))
"#;
    let mut python = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running /usr/bin/python3 (scripts/deps.sh installs python3-prometheus-client)");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let parsed = python.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "parser: {}\n{text}",
        stderr(&parsed)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();

    let status = net.status_json();
    for port in status["ports"].as_array().unwrap() {
        let index = port["port"].to_string();
        let info = parsed["ipn_port_info"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["labels"]["port"].as_str() == Some(&index))
            .unwrap_or_else(|| panic!("no ipn_port_info for port {index}:\n{text}"));
        assert_eq!(info["labels"]["network"], net.p());
        assert_eq!(info["labels"]["description"], port["description"]);
        assert_eq!(info["labels"]["pid"], port["pid"].to_string());
        // Counters are read a moment apart from --json: never fewer.
        let sent = parsed["ipn_port_tx_frames_total"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["labels"]["port"].as_str() == Some(&index))
            .unwrap();
        assert_eq!(sent["type"], "counter");
        assert!(sent["value"].as_f64().unwrap() <= port["tx_frames"].as_f64().unwrap());
    }
    let descriptions: Vec<&str> = parsed["ipn_port_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["labels"]["description"].as_str())
        .collect();
    assert!(descriptions.contains(&description), "{descriptions:?}");
    let vlans: Vec<&str> = parsed["ipn_port_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["labels"]["vlan"].as_str())
        .collect();
    assert!(
        vlans.contains(&"access 10") && vlans.contains(&"trunk 10,20"),
        "{vlans:?}"
    );
    assert!(
        parsed["ipn_port_learned_addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["value"].as_f64() == Some(1.0)),
        "{text}"
    );
    // --json and --prometheus are one or the other.
    assert!(!run(&["status", net.p(), "--json", "--prometheus"])
        .status
        .success());
}
