//! Delivery semantics of a hub, across processes: every frame a port sends
//! reaches every other reading port and never the sender, in order per
//! sender; write-only and read-only ports; oversize and empty frames are
//! refused and nothing is sent.

mod common;

use std::time::Duration;

use common::frame::{self, Tracker};
use common::peer::Peer;
use common::TestNet;
use ipn::{Config, JoinOptions, Port, RecvError, SendError};

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

const SHORT: Duration = Duration::from_millis(200);
const LONG: Duration = Duration::from_secs(10);

fn script_peer(net: &TestNet, mode: &str, description: &str) -> (Peer, u32) {
    let mut peer = Peer::spawn("script", &[]);
    peer.expect_word("ready", LONG);
    let index = peer.ok(&format!("join {} {mode} {description}", net.arg()));
    (peer, index.parse().unwrap())
}

fn tags_and_seqs(answer: &str) -> Vec<(u32, u64)> {
    answer
        .split_whitespace()
        .map(|w| {
            let (t, s) = w.split_once(':').unwrap();
            (t.parse().unwrap(), s.parse().unwrap())
        })
        .collect()
}

#[test]
fn every_frame_reaches_every_other_reading_port_never_the_sender() {
    let net = TestNet::create("every-frame", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("parent")).unwrap();
    let (mut a, _) = script_peer(&net, "rw", "a");
    let (mut b, _) = script_peer(&net, "rw", "b");
    let (mut c, _) = script_peer(&net, "rw", "c");
    a.ok("tag 1");
    b.ok("tag 2");

    // Peer a sends; b, c and this process receive all of it, in order.
    a.ok("send 50 100");
    for peer in [&mut b, &mut c] {
        let got = tags_and_seqs(&peer.ok("recv 50 2000"));
        assert_eq!(got, (0..50).map(|s| (1, s)).collect::<Vec<_>>());
    }
    let mut buf = [0u8; 1514];
    for seq in 0..50 {
        let n = me.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(frame::check(&buf[..n]).unwrap(), (1, seq));
    }
    // ... and a does not receive its own frames.
    assert_eq!(
        a.command("recv 1 200", LONG),
        Err("after 0 frames: timed out waiting for a frame".into())
    );

    // Same from another sender.
    b.ok("send 20 1514");
    for peer in [&mut a, &mut c] {
        let got = tags_and_seqs(&peer.ok("recv 20 2000"));
        assert_eq!(got, (0..20).map(|s| (2, s)).collect::<Vec<_>>());
    }
    for seq in 0..20 {
        let n = me.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(frame::check(&buf[..n]).unwrap(), (2, seq));
    }
    assert!(b.command("recv 1 200", LONG).is_err());

    // And from this process to the peers.
    for seq in 0..10 {
        me.send(&frame::make(7, seq, 64)).unwrap();
    }
    for peer in [&mut a, &mut b, &mut c] {
        let got = tags_and_seqs(&peer.ok("recv 10 2000"));
        assert_eq!(got, (0..10).map(|s| (7, s)).collect::<Vec<_>>());
    }
    assert!(matches!(me.try_recv(&mut buf), Err(RecvError::WouldBlock)));
    for peer in [a, b, c] {
        peer.finish();
    }
}

/// Three sender processes blast at once into two receiver processes; each
/// receiver checks every frame's content and that each sender's frames come
/// in order with none missing (lossless, so nothing may be dropped).
#[test]
fn senders_interleave_but_each_senders_order_is_kept() {
    let config = Config {
        lossless: true,
        ring_slots: Some(64),
        ..Config::default()
    };
    let net = TestNet::create("interleave", &config);
    let count = 3000u64;
    let mut receivers: Vec<Peer> = (0..2)
        .map(|_| {
            let count = count.to_string();
            Peer::spawn("recv-verify", &[&net.arg(), "1,2,3", &count, "1", "0", "0"])
        })
        .collect();
    for r in &mut receivers {
        r.expect_word("ready", LONG);
    }
    let mut senders: Vec<Peer> = (1..=3)
        .map(|tag: u32| {
            let (tag, count) = (tag.to_string(), count.to_string());
            Peer::spawn("send-seq", &[&net.arg(), &tag, &count, "1514", "w"])
        })
        .collect();
    for s in &mut senders {
        s.expect_word("ready", LONG);
    }
    for s in &mut senders {
        s.tell("go");
    }
    for s in &mut senders {
        s.expect_word("done", Duration::from_secs(30));
    }
    for r in &mut receivers {
        let done = r.expect_word("done", Duration::from_secs(30));
        let v: Vec<u64> = done.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(
            v,
            vec![3 * count, 0, 3 * count, 0],
            "received gaps rx_frames rx_dropped"
        );
    }
    for p in receivers.into_iter().chain(senders) {
        p.finish();
    }
}

#[test]
fn read_only_port_cannot_send_and_write_only_port_cannot_receive() {
    let net = TestNet::create("ro-wo", &Config::default());
    let read_only = JoinOptions {
        description: "ro".into(),
        read: true,
        write: false,
        ..Default::default()
    };
    let write_only = JoinOptions {
        description: "wo".into(),
        read: false,
        write: true,
        ..Default::default()
    };
    let mut ro = Port::join(net.path(), &read_only).unwrap();
    let mut wo = Port::join(net.path(), &write_only).unwrap();
    let mut buf = [0u8; 1514];
    assert!(matches!(ro.send(b"x"), Err(SendError::NotWriting)));
    assert!(matches!(ro.try_send(b"x"), Err(SendError::NotWriting)));
    assert!(matches!(wo.try_recv(&mut buf), Err(RecvError::NotReading)));
    assert!(matches!(
        wo.recv_timeout(&mut buf, SHORT),
        Err(RecvError::NotReading)
    ));

    // A write-only peer process reaches the read-only port and a peer
    // reader; the write-only port never receives what the peer reader sends.
    let (mut writer, _) = script_peer(&net, "w", "peer-wo");
    let (mut reader, _) = script_peer(&net, "r", "peer-ro");
    writer.ok("tag 5");
    writer.ok("send 3 200");
    for seq in 0..3 {
        let n = ro.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(frame::check(&buf[..n]).unwrap(), (5, seq));
    }
    assert_eq!(tags_and_seqs(&reader.ok("recv 3 2000")).len(), 3);
    assert!(
        reader.command("send 1 100", LONG).is_err(),
        "a read-only peer sent"
    );
    assert!(
        writer.command("recv 1 100", LONG).is_err(),
        "a write-only peer received"
    );

    let status = ro.status();
    assert_eq!(status.membership.readers, 2, "{status:?}");
    assert_eq!(status.membership.writers, 2, "{status:?}");
    for p in &status.ports {
        let expect_read = p.description.ends_with("ro");
        assert_eq!(p.reading, expect_read, "{p:?}");
        assert_eq!(p.writing, !expect_read, "{p:?}");
    }
    writer.finish();
    reader.finish();
}

#[test]
fn frame_over_the_mtu_is_refused_and_nothing_is_sent() {
    let net = TestNet::create("mtu", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("sender")).unwrap();
    let (mut reader, _) = script_peer(&net, "r", "reader");
    assert_eq!(me.mtu(), 1514);
    for result in [
        me.send(&[0u8; 1515]),
        me.try_send(&[0u8; 1515]),
        me.send_timeout(&[0u8; 65536], SHORT),
    ] {
        match result {
            Err(SendError::TooBig { len, mtu: 1514 }) if len >= 1515 => {}
            other => panic!("oversize frame: {other:?}"),
        }
    }
    let status = me.status();
    let mine = status.ports.iter().find(|p| p.index == me.index()).unwrap();
    assert_eq!(
        (mine.tx_frames, mine.tx_bytes),
        (0, 0),
        "nothing counted as sent"
    );
    assert!(
        reader.command("recv 1 200", LONG).is_err(),
        "an oversize frame arrived"
    );

    // Exactly the MTU goes through, intact.
    me.send(&frame::make(9, 0, 1514)).unwrap();
    assert_eq!(tags_and_seqs(&reader.ok("recv 1 2000")), vec![(9, 0)]);
    reader.finish();

    // Jumbo frames on a network made for them.
    let jumbo = TestNet::create(
        "mtu-jumbo",
        &Config {
            mtu: 9000,
            ring_slots: Some(8),
            ..Config::default()
        },
    );
    let mut a = Port::join(jumbo.path(), &JoinOptions::default()).unwrap();
    let mut b = Port::join(jumbo.path(), &JoinOptions::default()).unwrap();
    assert!(matches!(
        a.send(&[1u8; 9001]),
        Err(SendError::TooBig {
            len: 9001,
            mtu: 9000
        })
    ));
    a.send(&frame::make(1, 0, 9000)).unwrap();
    let mut buf = vec![0u8; 9000];
    let n = b.recv_timeout(&mut buf, LONG).unwrap();
    assert_eq!(n, 9000);
    assert_eq!(frame::check(&buf[..n]).unwrap(), (1, 0));
    assert!(matches!(b.try_recv(&mut buf), Err(RecvError::WouldBlock)));
}

#[test]
fn empty_frame_is_refused() {
    let net = TestNet::create("empty", &Config::default());
    let mut a = Port::join(net.path(), &JoinOptions::default()).unwrap();
    let mut b = Port::join(net.path(), &JoinOptions::default()).unwrap();
    assert!(matches!(a.send(&[]), Err(SendError::Empty)));
    assert!(matches!(a.try_send(&[]), Err(SendError::Empty)));
    assert!(matches!(a.send_timeout(&[], SHORT), Err(SendError::Empty)));
    let mut buf = [0u8; 1514];
    assert!(matches!(b.try_recv(&mut buf), Err(RecvError::WouldBlock)));
    assert_eq!(a.status().ports.iter().map(|p| p.tx_frames).sum::<u64>(), 0);
}

/// Every length from 1 byte to the MTU, each byte checked: no length is
/// mangled by the word-wise copy in and out of the ring.
#[test]
fn frames_of_every_length_arrive_intact() {
    let net = TestNet::create(
        "lengths",
        &Config {
            mtu: 600,
            ..Config::default()
        },
    );
    let mut a = Port::join(net.path(), &JoinOptions::default()).unwrap();
    let mut b = Port::join(net.path(), &JoinOptions::default()).unwrap();
    let mut buf = vec![0xEEu8; 600];
    for len in 1..=600usize {
        let sent: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        a.send(&sent).unwrap();
        let n = b.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(n, len);
        assert_eq!(&buf[..n], &sent[..], "frame of {len} bytes");
    }
}

#[test]
fn short_buffer_gets_the_start_of_the_frame_and_the_bytes_copied() {
    let net = TestNet::create("short-buf", &Config::default());
    let mut a = Port::join(net.path(), &JoinOptions::default()).unwrap();
    let mut b = Port::join(net.path(), &JoinOptions::default()).unwrap();
    let sent: Vec<u8> = (0..100u8).collect();
    a.send(&sent).unwrap();
    let mut small = [0u8; 13];
    assert_eq!(b.recv_timeout(&mut small, LONG).unwrap(), 13);
    assert_eq!(&small[..], &sent[..13]);
    assert!(matches!(b.try_recv(&mut small), Err(RecvError::WouldBlock)));
}

#[test]
fn port_receives_only_frames_sent_after_it_joined() {
    let net = TestNet::create("late-join", &Config::default());
    let (mut sender, _) = script_peer(&net, "w", "sender");
    sender.ok("tag 3");
    sender.ok("send 5 64");
    let mut late = Port::join(net.path(), &JoinOptions::described("late")).unwrap();
    sender.ok("send 5 64");
    let mut buf = [0u8; 1514];
    let mut tracker = Tracker::default();
    let mut seqs = Vec::new();
    while let Ok(n) = late.recv_timeout(&mut buf, SHORT) {
        seqs.push(tracker.record(&buf[..n], false).unwrap().1);
    }
    assert_eq!(seqs, vec![5, 6, 7, 8, 9]);
    let status = late.status();
    let mine = status
        .ports
        .iter()
        .find(|p| p.index == late.index())
        .unwrap();
    assert_eq!(mine.rx_dropped, 0, "frames before joining are not drops");
    sender.finish();
}

/// A frame sent while a reader was joined reaches it even if the sender
/// leaves (or dies) before the reader gets to look: the frames are in the
/// ring, as on a hub the bits are on the wire.
#[test]
fn frames_sent_by_a_port_that_left_are_still_delivered() {
    let mut failures = Vec::new();
    for (how, lossless) in [
        ("leave", false),
        ("kill", false),
        ("leave", true),
        ("kill", true),
    ] {
        let net = TestNet::create(
            &format!("left-{how}-{lossless}"),
            &Config {
                lossless,
                ..Config::default()
            },
        );
        let mut reader = Port::join(net.path(), &JoinOptions::described("reader")).unwrap();
        let (mut sender, _) = script_peer(&net, "w", "sender");
        sender.ok("tag 4");
        sender.ok("send 10 100");
        if how == "leave" {
            sender.finish();
        } else {
            sender.kill();
        }
        let mut buf = [0u8; 1514];
        let mut seqs = Vec::new();
        while let Ok(n) = reader.recv_timeout(&mut buf, SHORT) {
            seqs.push(frame::check(&buf[..n]).unwrap().1);
        }
        if seqs != (0..10).collect::<Vec<_>>() {
            failures.push(format!(
                "sender did `{how}` (lossless: {lossless}): received {seqs:?} of 0..10, rx_dropped {}",
                reader.status().ports.iter().find(|p| p.index == reader.index()).unwrap().rx_dropped
            ));
        }
    }
    assert!(failures.is_empty(), "frames lost:\n{}", failures.join("\n"));
}

/// Many processes join-or-create the same new network at once (as QEMU
/// VMs started together do through the plugin): exactly one network is
/// made, every joiner gets in, and they all see each other. Found by the
/// VM test: the creator that lost the race removed the directory it had
/// made, with the winner's network and a joiner's doorbell in it.
#[test]
fn concurrent_join_or_create_makes_one_network_that_everyone_joins() {
    for round in 0..20 {
        let net = TestNet::empty(&format!("race-{round}"));
        let path = net.arg();
        let mut peers: Vec<Peer> = (0..4).map(|_| Peer::spawn("script", &[])).collect();
        for p in &mut peers {
            p.expect_word("ready", Duration::from_secs(10));
        }
        for p in &mut peers {
            p.tell(&format!("join-or-create {path} rw racer"));
        }
        for p in &mut peers {
            let answer = p.expect(Duration::from_secs(10));
            assert!(answer.starts_with("ok"), "round {round}: {answer}");
        }
        for p in &mut peers {
            assert_eq!(
                p.ok("status"),
                "4 4 4",
                "round {round}: readers writers ports"
            );
        }
        for p in peers {
            p.finish();
        }
    }
}
