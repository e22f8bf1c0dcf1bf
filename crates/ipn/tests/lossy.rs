//! Lossy networks (the default): a slow or stalled reader never slows the
//! sender, and what it missed is counted exactly in its `rx_dropped`.

mod common;

use std::time::{Duration, Instant};

use common::frame;
use common::peer::Peer;
use common::TestNet;
use ipn::{Config, JoinOptions, Network, Port};

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

const LONG: Duration = Duration::from_secs(30);

fn blast(port: &mut Port, count: u64) -> Duration {
    let frame = frame::make(1, 0, 1514);
    let start = Instant::now();
    for seq in 0..count {
        port.try_send(&frame)
            .unwrap_or_else(|e| panic!("lossy try_send of frame {seq}: {e}"));
    }
    start.elapsed()
}

/// A reader process that never reads does not hold the sender back:
/// `try_send` never refuses, and the sender's time for the same frames
/// stays of the same order as with no reader at all (the cap is generous:
/// the two runs may see different loads on two busy CPUs; the cost of
/// readers is measured in BENCHMARKS.md).
#[test]
fn lossy_slow_reader_never_slows_the_sender() {
    let net = TestNet::create("lossy-stalled", &Config::default());
    let mut sender = Port::join(
        net.path(),
        &JoinOptions {
            description: "sender".into(),
            read: false,
            write: true,
            ..Default::default()
        },
    )
    .unwrap();
    let count = 20_000;
    blast(&mut sender, count); // warm up
    let alone = blast(&mut sender, count);

    let mut stalled = Peer::spawn("script", &[]);
    stalled.expect_word("ready", LONG);
    stalled.ok(&format!("join {} r stalled", net.arg()));
    let with_reader = blast(&mut sender, count);
    eprintln!("{count} frames: {alone:?} alone, {with_reader:?} with a stalled reader");
    assert!(
        with_reader < alone * 10 + Duration::from_secs(2),
        "a stalled reader slowed the sender: {with_reader:?} vs {alone:?} alone"
    );
    // The stalled reader lost all but (at most) one ring of frames, and
    // every loss is counted.
    let status = sender.status();
    let reader = status
        .ports
        .iter()
        .find(|p| p.description == "stalled")
        .unwrap();
    assert_eq!(reader.rx_frames, 0);
    stalled.finish();
}

/// A sender process sends 40 000 frames to three reader processes: one
/// reads as fast as it can, one sleeps now and then, one does not read at
/// all until the sender is done. For each, sent == received + dropped,
/// exactly, and the drops it saw as gaps in the sequence numbers are the
/// drops `status()` reports.
#[test]
fn lossy_reader_accounting_is_exact_sent_equals_received_plus_dropped() {
    let net = TestNet::create("lossy-accounting", &Config::default());
    let count = 40_000u64;
    let n = count.to_string();
    let path = net.arg();
    let mut fast = Peer::spawn("recv-verify", &[&path, "1", &n, "0", "0", "0"]);
    let mut slow = Peer::spawn("recv-verify", &[&path, "1", &n, "0", "50", "300"]);
    let mut stalled = Peer::spawn("recv-verify", &[&path, "1", &n, "0", "0", "0", "hold"]);
    for r in [&mut fast, &mut slow, &mut stalled] {
        r.expect_word("ready", LONG);
    }
    let mut sender = Peer::spawn("send-seq", &[&path, "1", &n, "1514", "w"]);
    sender.expect_word("ready", LONG);
    sender.tell("go");
    let done = sender.expect_word("done", LONG);
    let micros: u64 = done.split(' ').nth(1).unwrap().parse().unwrap();
    eprintln!("sender: {count} frames in {} ms", micros / 1000);
    // The sender's own count, while it is still joined.
    let status = Network::open(net.path()).unwrap().status();
    let tx = status
        .ports
        .iter()
        .find(|p| p.description == "send-seq 1")
        .unwrap();
    assert_eq!(tx.tx_frames, count);
    stalled.tell("go");

    let mut dropped = Vec::new();
    for (name, r) in [
        ("fast", &mut fast),
        ("slow", &mut slow),
        ("stalled", &mut stalled),
    ] {
        let done = r.expect_word("done", LONG);
        let v: Vec<u64> = done.split(' ').map(|x| x.parse().unwrap()).collect();
        let (received, gaps, rx_frames, rx_dropped) = (v[0], v[1], v[2], v[3]);
        eprintln!("{name}: received {received}, dropped {rx_dropped}");
        assert_eq!(received + gaps, count, "{name}: received + gaps");
        assert_eq!(rx_frames, received, "{name}: rx_frames in status");
        assert_eq!(rx_dropped, gaps, "{name}: rx_dropped in status");
        dropped.push(rx_dropped);
    }
    assert!(dropped[1] > 0, "the slow reader should have lost frames");
    assert!(
        count - dropped[2] <= 256,
        "the stalled reader can get at most one ring (256) of frames, got {}",
        count - dropped[2]
    );
    for p in [fast, slow, stalled, sender] {
        p.finish();
    }
}

/// Counting holds across several senders at once, each counted apart.
#[test]
fn lossy_accounting_is_exact_with_several_senders() {
    let net = TestNet::create(
        "lossy-multi",
        &Config {
            ring_slots: Some(32),
            ..Config::default()
        },
    );
    let count = 10_000u64;
    let n = count.to_string();
    let path = net.arg();
    let mut reader = Peer::spawn("recv-verify", &[&path, "1,2", &n, "0", "20", "200"]);
    reader.expect_word("ready", LONG);
    let mut senders: Vec<Peer> = ["1", "2"]
        .iter()
        .map(|tag| Peer::spawn("send-seq", &[&path, tag, &n, "200", "w"]))
        .collect();
    for s in &mut senders {
        s.expect_word("ready", LONG);
    }
    for s in &mut senders {
        s.tell("go");
    }
    let done = reader.expect_word("done", LONG);
    let v: Vec<u64> = done.split(' ').map(|x| x.parse().unwrap()).collect();
    assert_eq!(v[0] + v[1], 2 * count, "received + gaps");
    assert_eq!(
        (v[2], v[3]),
        (v[0], v[1]),
        "status agrees with what was seen"
    );
    reader.finish();
    for s in senders {
        s.finish();
    }
}
