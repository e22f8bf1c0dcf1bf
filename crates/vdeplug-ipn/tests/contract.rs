//! libvdeplug(3)'s contract, checked with C clients that take it
//! literally (`tests/c/contract.c`): `vde_recv` returns a frame of at
//! least 14 bytes, 1 for a packet received but dropped, or -1; a client
//! that reads 0 as a closed connection (UML does) must never see one.
//!
//! The clients load the plugin through libvdeplug, as QEMU does (see
//! `common`).

mod common;

use std::io::{BufRead, BufReader, Lines, Read};
use std::path::Path;
use std::process::{ChildStdout, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{c_client, command, readers, url, wait_exit, wait_for, Guard, ScratchNet};
use ipn::{JoinOptions, Port};

/// How many frames a stream test sends.
const FRAMES: u32 = 20_000;

/// The sender's source address in `contract.c`.
const SENDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x5e];

/// A `contract recv` process, joined (it said "ready").
struct StrictReceiver {
    guard: Guard,
    lines: Lines<BufReader<ChildStdout>>,
}

impl StrictReceiver {
    fn spawn(url: &str, count: u32) -> StrictReceiver {
        let mut child = command(c_client("contract"))
            .args(["recv", url, &count.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn contract recv");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().map(|l| l.unwrap_or_default());
        assert_eq!(
            first.as_deref(),
            Some("ready"),
            "contract recv did not join"
        );
        StrictReceiver {
            guard: Guard(child),
            lines,
        }
    }

    /// Waits for the receiver to end; its exit status and what it said.
    fn finish(mut self) -> (bool, String) {
        let status = wait_exit(
            &mut self.guard.0,
            "a strict receiver",
            Duration::from_secs(60),
        );
        let said: Vec<String> = self.lines.map_while(Result::ok).collect();
        (status.success(), said.join("\n"))
    }
}

/// Runs `contract send URL COUNT [TARGET]` to its end.
fn send(url: &str, count: u32, target: Option<&str>) {
    let mut args = vec!["send".to_owned(), url.to_owned(), count.to_string()];
    args.extend(target.map(str::to_owned));
    let mut child = command(c_client("contract"))
        .args(&args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn contract send");
    let status = wait_exit(&mut child, "contract send", Duration::from_secs(60));
    let mut said = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut said);
    assert!(status.success(), "contract send failed: {said}");
}

/// Ports joining and leaving `net` until `stop`: alternately read-write
/// (a lossless sender waits for it while it is there) and write-only.
/// Returns how many came and went.
fn churn(net: &Path, stop: Arc<AtomicBool>) -> JoinHandle<u32> {
    let net = net.to_owned();
    std::thread::spawn(move || {
        let mut cycles = 0;
        while !stop.load(Ordering::Relaxed) {
            let options = JoinOptions {
                description: "churn".into(),
                read: cycles % 2 == 0,
                write: true,
                ..Default::default()
            };
            let port = Port::join(&net, &options).expect("churn join");
            std::thread::sleep(Duration::from_millis(1));
            drop(port);
            std::thread::sleep(Duration::from_millis(1));
            cycles += 1;
        }
        cycles
    })
}

/// Every strict receiver ended well, having said so.
fn assert_all_received(receivers: Vec<StrictReceiver>, count: u32) {
    let results: Vec<(bool, String)> = receivers.into_iter().map(StrictReceiver::finish).collect();
    for (i, (ok, said)) in results.iter().enumerate() {
        eprintln!("receiver {i}: {said}");
        assert!(
            *ok && said.contains(&format!("received {count} broadcast frames")),
            "receiver {i} did not receive all {count} frames: {said}\n(all: {results:#?})"
        );
    }
}

#[test]
fn strict_receivers_get_every_frame_while_ports_join_and_leave() {
    let net = ScratchNet::new("strict-churn");
    let u = format!("{}[lossless]", url(&net));
    let receivers: Vec<StrictReceiver> =
        (0..4).map(|_| StrictReceiver::spawn(&u, FRAMES)).collect();
    wait_for("the receivers to join", Duration::from_secs(5), || {
        readers(&net) == 4
    });
    let stop = Arc::new(AtomicBool::new(false));
    let churner = churn(&net, stop.clone());
    send(&u, FRAMES, None);
    stop.store(true, Ordering::Relaxed);
    let cycles = churner.join().unwrap();
    assert_all_received(receivers, FRAMES);
    // The stream lasts over 0.6 s (pauses of 0.5 ms every 16 frames): ports
    // came and went many times during it.
    eprintln!("{cycles} ports joined and left during the stream");
    assert!(cycles >= 20, "only {cycles} ports joined and left");
    wait_for("the receivers to leave", Duration::from_secs(5), || {
        readers(&net) == 0
    });
}

#[test]
fn strict_receivers_get_every_broadcast_while_a_switch_sends_unicast_elsewhere() {
    let net = ScratchNet::new("strict-switch");
    let u = format!("{}[switch/lossless]", url(&net));
    let receivers: Vec<StrictReceiver> = (0..4)
        .map(|_| StrictReceiver::spawn(&u, FRAMES.div_ceil(2)))
        .collect();
    // The unicast target: a port that says hello until the sender learned
    // it (its first unicast arrives), and receives everything.
    let target_mac = [0x02, 0, 0, 0, 0, 0x7a];
    let mut target = Port::join(&*net, &JoinOptions::described("target")).unwrap();
    wait_for(
        "the receivers and the target",
        Duration::from_secs(5),
        || readers(&net) == 5,
    );
    let received = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let target_thread = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut hello = vec![0xff; 6];
            hello.extend_from_slice(&target_mac);
            hello.extend_from_slice(&[0x88, 0xb5]);
            hello.resize(60, 0);
            let mut buf = [0u8; 2048];
            let mut unicast = 0;
            while !stop.load(Ordering::Relaxed) {
                if unicast == 0 {
                    target.send(&hello).unwrap();
                }
                if let Ok(n) = target.recv_timeout(&mut buf, Duration::from_millis(20)) {
                    if n >= 14 && buf[6..12] == SENDER_MAC {
                        received.fetch_add(1, Ordering::Relaxed);
                        if buf[..6] == target_mac {
                            unicast += 1;
                        }
                    }
                }
            }
            unicast
        })
    };
    let target_text = target_mac.map(|b| format!("{b:02x}")).join(":");
    send(&u, FRAMES, Some(&target_text));
    assert_all_received(receivers, FRAMES.div_ceil(2));
    wait_for(
        "the target to receive every frame",
        Duration::from_secs(10),
        || received.load(Ordering::Relaxed) == FRAMES,
    );
    stop.store(true, Ordering::Relaxed);
    let unicast = target_thread.join().unwrap();
    assert_eq!(unicast, FRAMES / 2, "the target's unicast frames");
}

/// Runs `contract MODE URL`, a check that judges for itself, and asserts
/// that it passed; returns what it said.
fn run_check(mode: &str, url: &str) -> String {
    let mut child = command(c_client("contract"))
        .args([mode, url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn contract");
    let status = wait_exit(
        &mut child,
        &format!("contract {mode}"),
        Duration::from_secs(60),
    );
    let mut said = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut said);
    assert!(status.success(), "contract {mode}: {status}: {said}");
    eprintln!("contract {mode}: {said}");
    said
}

#[test]
fn a_blocked_lossless_send_does_not_hold_up_a_receive_on_the_same_connection() {
    let net = ScratchNet::new("blocked-send");
    run_check("blocked-send", &format!("{}[lossless/ring=8]", url(&net)));
}

#[test]
fn a_blocked_lossless_send_is_freed_when_its_reader_is_killed() {
    let net = ScratchNet::new("dead-reader");
    run_check("dead-reader", &format!("{}[lossless/ring=8]", url(&net)));
}
