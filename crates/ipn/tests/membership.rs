//! Membership: reader and writer counts in `status()`, who is joined (pid,
//! description, counters), and membership events on join, leave, shutdown
//! and death of a peer process (`kill -9`, reported within 1 s).

mod common;

use std::time::{Duration, Instant};

use common::peer::Peer;
use common::TestNet;
use ipn::{Config, JoinOptions, Membership, Message, Network, Port, PortState, RecvError};

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

const LONG: Duration = Duration::from_secs(10);

fn joined_peer(net: &TestNet, mode: &str, description: &str) -> Peer {
    let mut peer = Peer::spawn("script", &[]);
    peer.expect_word("ready", LONG);
    peer.ok(&format!("join {} {mode} {description}", net.arg()));
    peer
}

fn counts(readers: u32, writers: u32) -> Membership {
    Membership { readers, writers }
}

/// The next membership event, skipping nothing: a frame or a timeout
/// fails the test.
fn next_event(port: &mut Port, timeout: Duration) -> Membership {
    let mut buf = [0u8; 1514];
    match port.recv_message(&mut buf, Some(timeout)) {
        Ok(Message::Membership(m)) => m,
        other => panic!("expected a membership event, got {other:?}"),
    }
}

fn assert_no_event(port: &mut Port) {
    let mut buf = [0u8; 1514];
    match port.recv_message(&mut buf, Some(Duration::from_millis(150))) {
        Err(RecvError::TimedOut) => {}
        other => panic!("expected nothing, got {other:?}"),
    }
}

#[test]
fn status_counts_readers_and_writers_across_processes() {
    let net = TestNet::create("counts", &Config::default());
    let mut rw = joined_peer(&net, "rw", "both");
    let reader = joined_peer(&net, "r", "reader");
    let writer = joined_peer(&net, "w", "writer");
    let network = Network::open(net.path()).unwrap();
    let status = network.status();
    assert_eq!(status.membership, counts(2, 2), "{status:?}");
    assert_eq!(status.ports.len(), 3);
    for (peer, description, reading, writing) in [
        (&rw, "both", true, true),
        (&reader, "reader", true, false),
        (&writer, "writer", false, true),
    ] {
        let p = status
            .ports
            .iter()
            .find(|p| p.description == description)
            .unwrap_or_else(|| panic!("{description} not in {status:?}"));
        assert_eq!(p.pid, peer.pid() as u32, "{p:?}");
        assert_eq!((p.reading, p.writing), (reading, writing), "{p:?}");
        assert_eq!(p.state, PortState::Active);
    }

    rw.ok("shutdown write");
    assert_eq!(network.status().membership, counts(2, 1));
    rw.ok("shutdown read");
    assert_eq!(network.status().membership, counts(1, 1));
    reader.finish();
    assert_eq!(network.status().membership, counts(0, 1));
    let status = network.status();
    assert_eq!(
        status.ports.len(),
        2,
        "a port that left is not listed: {status:?}"
    );
    writer.finish();
    rw.finish();
    assert_eq!(network.status().membership, counts(0, 0));
    assert!(network.status().ports.is_empty());
}

#[test]
fn status_counts_frames_and_bytes_per_port() {
    let net = TestNet::create("counters", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    let mut peer = joined_peer(&net, "rw", "peer");
    peer.ok("send 5 100");
    let mut buf = [0u8; 1514];
    for _ in 0..5 {
        assert_eq!(me.recv_timeout(&mut buf, LONG).unwrap(), 100);
    }
    me.send(&common::frame::make(0, 0, 60)).unwrap();
    peer.ok("recv 1 2000");
    let status = me.status();
    let mine = status.ports.iter().find(|p| p.description == "me").unwrap();
    let theirs = status
        .ports
        .iter()
        .find(|p| p.description == "peer")
        .unwrap();
    assert_eq!(
        (mine.tx_frames, mine.tx_bytes, mine.rx_frames, mine.rx_bytes),
        (1, 60, 5, 500)
    );
    assert_eq!(
        (
            theirs.tx_frames,
            theirs.tx_bytes,
            theirs.rx_frames,
            theirs.rx_bytes
        ),
        (5, 500, 1, 60)
    );
    assert_eq!(mine.pid, std::process::id());
    assert_eq!(me.membership(), counts(2, 2));
    peer.finish();
}

#[test]
fn membership_events_report_join_leave_and_shutdown() {
    let net = TestNet::create("events", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    me.set_membership_events(true);
    assert_no_event(&mut me);

    let mut a = joined_peer(&net, "rw", "a");
    assert_eq!(next_event(&mut me, LONG), counts(2, 2), "join of a");
    a.ok("shutdown read");
    assert_eq!(next_event(&mut me, LONG), counts(1, 2), "a stops reading");
    a.ok("shutdown write");
    assert_eq!(next_event(&mut me, LONG), counts(1, 1), "a stops writing");
    let b = joined_peer(&net, "r", "b");
    assert_eq!(next_event(&mut me, LONG), counts(2, 1), "join of b");
    b.finish();
    assert_eq!(next_event(&mut me, LONG), counts(1, 1), "b leaves");
    a.finish(); // a neither reads nor writes any more: no change
    assert_no_event(&mut me);

    // Frames still arrive as frames among the events.
    let mut c = joined_peer(&net, "w", "c");
    assert_eq!(next_event(&mut me, LONG), counts(1, 2), "join of c");
    c.ok("send 1 64");
    let mut buf = [0u8; 1514];
    assert_eq!(
        me.recv_message(&mut buf, Some(LONG)).unwrap(),
        Message::Frame(64)
    );
    c.finish();
    assert_eq!(next_event(&mut me, LONG), counts(1, 1), "c leaves");
}

#[test]
fn membership_events_are_off_unless_asked_for() {
    let net = TestNet::create("no-events", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    let mut peer = joined_peer(&net, "rw", "peer");
    peer.ok("send 1 64");
    let mut buf = [0u8; 1514];
    assert_eq!(
        me.recv_message(&mut buf, Some(LONG)).unwrap(),
        Message::Frame(64)
    );
    peer.finish();
    assert!(matches!(
        me.recv_message(&mut buf, Some(Duration::from_millis(150))),
        Err(RecvError::TimedOut)
    ));
}

/// A peer process killed with SIGKILL is reported by a membership event
/// (ports look for dead peers every 100 ms while they wait: the time is
/// printed, and judged only against a generous cap), and `status()` no
/// longer counts it.
#[test]
fn membership_event_reports_peer_killed() {
    let net = TestNet::create("death", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    me.set_membership_events(true);
    let mut worst = Duration::ZERO;
    for round in 0..3 {
        let mut victim = joined_peer(&net, "rw", "victim");
        assert_eq!(
            next_event(&mut me, LONG),
            counts(2, 2),
            "round {round}: join"
        );
        let killed_at = Instant::now();
        victim.kill();
        let event = next_event(&mut me, Duration::from_secs(10));
        let took = killed_at.elapsed();
        assert_eq!(event, counts(1, 1), "round {round}: death");
        worst = worst.max(took);
        let status = me.status();
        assert_eq!(status.membership, counts(1, 1));
        assert!(status
            .ports
            .iter()
            .all(|p| p.description != "victim" || p.state == PortState::Dead));
    }
    eprintln!("death reported after at most {worst:?}");
    assert!(
        worst < Duration::from_secs(5),
        "death reported after {worst:?}"
    );
}

/// The same events, seen by a peer process about this one.
#[test]
fn peer_process_sees_membership_events_about_others() {
    let net = TestNet::create("events-peer", &Config::default());
    let mut watcher = joined_peer(&net, "r", "watcher");
    watcher.ok("events on");
    let me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    assert_eq!(watcher.ok("message 5000"), "membership 2 1");
    drop(me);
    assert_eq!(watcher.ok("message 5000"), "membership 1 0");
    let mut victim = joined_peer(&net, "w", "victim");
    assert_eq!(watcher.ok("message 5000"), "membership 1 1");
    victim.kill();
    let start = Instant::now();
    assert_eq!(watcher.ok("message 5000"), "membership 1 0");
    let took = start.elapsed();
    eprintln!("the watcher saw the death after {took:?}");
    assert!(took < Duration::from_secs(5), "death seen after {took:?}");
    watcher.finish();
}
