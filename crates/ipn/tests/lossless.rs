//! Lossless networks: the sender waits (`send`) or is told to wait
//! (`try_send` gives `WouldBlock`) until every live reading port has room,
//! so nothing is lost; but it never waits for a port that shut down
//! reading, left, or died (a killed reader releases the sender within 1 s).

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::frame;
use common::peer::Peer;
use common::TestNet;
use ipn::{Config, JoinOptions, Port, SendError};

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

const LONG: Duration = Duration::from_secs(30);

fn lossless(ring_slots: u32) -> Config {
    Config {
        lossless: true,
        ring_slots: Some(ring_slots),
        ..Config::default()
    }
}

fn write_only(description: &str) -> JoinOptions {
    JoinOptions {
        description: description.into(),
        read: false,
        write: true,
        ..Default::default()
    }
}

fn script_reader(net: &TestNet, description: &str) -> Peer {
    let mut peer = Peer::spawn("script", &[]);
    peer.expect_word("ready", LONG);
    peer.ok(&format!("join {} r {description}", net.arg()));
    peer
}

/// Fills the ring of `sender` (nobody reads): `slots` frames go out
/// without waiting, the next one would block.
fn fill_ring(sender: &mut Port, slots: u64) {
    for seq in 0..slots {
        sender
            .try_send(&frame::make(1, seq, 100))
            .unwrap_or_else(|e| panic!("frame {seq} of an empty ring: {e}"));
    }
    assert!(matches!(
        sender.try_send(&frame::make(1, slots, 100)),
        Err(SendError::WouldBlock)
    ));
}

/// Starts a blocking send of one more frame on another thread; the
/// channel yields when it returned, and with what.
fn blocked_send(mut sender: Port, seq: u64) -> mpsc::Receiver<(Instant, Result<(), String>, Port)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = sender
            .send_timeout(&frame::make(1, seq, 100), Duration::from_secs(10))
            .map_err(|e| e.to_string());
        let _ = tx.send((Instant::now(), result, sender));
    });
    // It must really be waiting.
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the send did not wait for a full reader"
    );
    rx
}

/// One sender process, 20 000 frames of varied length through a 64-frame
/// ring, to three reader processes (one of them slow), each checking the
/// sequence number and content of every frame: zero loss.
#[test]
fn lossless_delivers_every_frame_to_three_reader_processes() {
    let net = TestNet::create("lossless-3", &lossless(64));
    common::peer::lossless_stream(&net.arg(), 20_000, &[(0, 0), (0, 0), (500, 2000)], LONG);
}

#[test]
fn lossless_try_send_would_block_until_every_reader_has_room() {
    let net = TestNet::create("lossless-wouldblock", &lossless(8));
    let mut a = script_reader(&net, "a");
    let mut b = script_reader(&net, "b");
    let mut sender = Port::join(net.path(), &write_only("sender")).unwrap();
    fill_ring(&mut sender, 8);

    let start = Instant::now();
    assert!(matches!(
        sender.send_timeout(&frame::make(1, 8, 100), Duration::from_millis(100)),
        Err(SendError::TimedOut)
    ));
    let waited = start.elapsed();
    // At least the time asked for; the cap only catches a wait that
    // ignored the timeout (a busy CPU may add a time slice or two).
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(10),
        "send_timeout(100 ms) returned after {waited:?}"
    );

    // One reader making room is not enough: the other is still full.
    a.ok("recv 1 2000");
    assert!(matches!(
        sender.try_send(&frame::make(1, 8, 100)),
        Err(SendError::WouldBlock)
    ));
    b.ok("recv 1 2000");
    sender.try_send(&frame::make(1, 8, 100)).unwrap();
    assert!(matches!(
        sender.try_send(&frame::make(1, 9, 100)),
        Err(SendError::WouldBlock)
    ));
    // Nothing was lost or reordered for either reader.
    for r in [&mut a, &mut b] {
        let got = r.ok("recv 8 2000");
        let expected: Vec<String> = (1..9).map(|s| format!("1:{s}")).collect();
        assert_eq!(got, expected.join(" "));
    }
    a.finish();
    b.finish();
}

#[test]
fn lossless_blocking_send_resumes_when_the_reader_reads() {
    let net = TestNet::create("lossless-resume", &lossless(4));
    let mut reader = script_reader(&net, "reader");
    let mut sender = Port::join(net.path(), &write_only("sender")).unwrap();
    fill_ring(&mut sender, 4);
    let done = blocked_send(sender, 4);
    let read_at = Instant::now();
    reader.ok("recv 1 2000");
    let (at, result, _sender) = done
        .recv_timeout(Duration::from_secs(5))
        .expect("send resumed");
    result.unwrap();
    // It resumed because of the read: it had waited 300 ms before it
    // (blocked_send) and its own timeout is 10 s away.
    let latency = at.saturating_duration_since(read_at);
    eprintln!("resumed {latency:?} after the read");
    assert!(
        latency < Duration::from_secs(5),
        "resumed {latency:?} after the read"
    );
    assert_eq!(reader.ok("recv 4 2000"), "1:1 1:2 1:3 1:4");
    reader.finish();
}

/// A reader process that stopped reading is killed while the sender is
/// blocked on it; the sender goes on (it looks for dead readers every
/// 100 ms while it waits: the time is printed, and judged only against a
/// cap far from the 10 s the send would otherwise wait).
#[test]
fn lossless_sender_stops_waiting_for_killed_reader() {
    let net = TestNet::create("lossless-killed", &lossless(8));
    let mut victim = script_reader(&net, "victim");
    let mut survivor = script_reader(&net, "survivor");
    let mut sender = Port::join(net.path(), &write_only("sender")).unwrap();
    fill_ring(&mut sender, 8);
    survivor.ok("recv 8 2000"); // only the victim is full now
    let done = blocked_send(sender, 8);
    let killed_at = Instant::now();
    victim.kill();
    let (at, result, mut sender) = done
        .recv_timeout(Duration::from_secs(5))
        .expect("the sender is still blocked 5 s after its reader was killed");
    result.unwrap();
    let unblock = at.saturating_duration_since(killed_at);
    eprintln!("sender unblocked {unblock:?} after the reader was killed");
    assert!(
        unblock < Duration::from_secs(5),
        "unblocked only after {unblock:?}"
    );

    // It goes on at full speed, still waiting for the live reader only.
    survivor.ok("recv 1 2000");
    // The survivor has read up to frame 8: frames 9..=16 fit in its ring.
    for seq in 9..17 {
        sender
            .send_timeout(&frame::make(1, seq, 100), Duration::from_secs(1))
            .unwrap();
    }
    assert!(matches!(
        sender.try_send(&frame::make(1, 17, 100)),
        Err(SendError::WouldBlock)
    ));
    let dead = sender.status();
    assert!(
        dead.ports
            .iter()
            .all(|p| p.description != "victim" || p.state == ipn::PortState::Dead),
        "{dead:?}"
    );
    survivor.finish();
}

/// A reader killed before the sender even started: its slot still looks
/// active, and the sender must find out by itself.
#[test]
fn lossless_sender_skips_dead_reader() {
    let net = TestNet::create("lossless-dead", &lossless(8));
    let mut victim = script_reader(&net, "victim");
    let mut sender = Port::join(net.path(), &write_only("sender")).unwrap();
    victim.kill();
    // Its 8-frame ring takes frames 0..8; the send of frame 8 must wait,
    // and finds the reader dead; from then on it is skipped, so 91 more
    // frames go without any waiting at all (try_send).
    for seq in 0..8 {
        sender.try_send(&frame::make(1, seq, 100)).unwrap();
    }
    sender
        .send_timeout(&frame::make(1, 8, 100), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("frame 8, the reader's ring full: {e}"));
    for seq in 9..100 {
        sender
            .try_send(&frame::make(1, seq, 100))
            .unwrap_or_else(|e| panic!("frame {seq}, past a dead reader: {e}"));
    }
}

#[test]
fn lossless_sender_stops_waiting_for_reader_that_shut_down_reading() {
    let net = TestNet::create("lossless-shutdown", &lossless(8));
    let mut reader = script_reader(&net, "reader");
    let mut sender = Port::join(net.path(), &write_only("sender")).unwrap();
    fill_ring(&mut sender, 8);
    let done = blocked_send(sender, 8);
    let at_shutdown = Instant::now();
    reader.ok("shutdown read");
    let (at, result, mut sender) = done
        .recv_timeout(Duration::from_secs(5))
        .expect("unblocked");
    result.unwrap();
    let unblock = at.saturating_duration_since(at_shutdown);
    eprintln!("sender unblocked {unblock:?} after the reader shut down reading");
    assert!(
        unblock < Duration::from_secs(5),
        "unblocked only after {unblock:?}"
    );
    for seq in 9..100 {
        sender.try_send(&frame::make(1, seq, 100)).unwrap();
    }
    reader.finish();
}

#[test]
fn lossless_sender_stops_waiting_for_reader_that_left() {
    let net = TestNet::create("lossless-left", &lossless(8));
    let reader = script_reader(&net, "reader");
    let mut sender = Port::join(net.path(), &write_only("sender")).unwrap();
    fill_ring(&mut sender, 8);
    let done = blocked_send(sender, 8);
    let at_leave = Instant::now();
    reader.finish();
    let (at, result, _) = done
        .recv_timeout(Duration::from_secs(5))
        .expect("unblocked");
    result.unwrap();
    let unblock = at.saturating_duration_since(at_leave);
    eprintln!("sender unblocked {unblock:?} after the reader left");
    assert!(
        unblock < Duration::from_secs(5),
        "unblocked only after {unblock:?}"
    );
}

#[test]
fn lossless_sender_does_not_wait_for_write_only_ports() {
    let net = TestNet::create("lossless-wo", &lossless(8));
    let mut other = Peer::spawn("script", &[]);
    other.expect_word("ready", LONG);
    other.ok(&format!("join {} w other-writer", net.arg()));
    let mut sender = Port::join(net.path(), &write_only("sender")).unwrap();
    for seq in 0..100 {
        sender.try_send(&frame::make(1, seq, 100)).unwrap();
    }
    other.finish();
}
