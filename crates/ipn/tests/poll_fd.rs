//! The pollable fd (`Port::as_raw_fd`): not readable while nothing waits,
//! readable within milliseconds after another process sends, readable as
//! long as frames wait (level-triggered), and not readable again once the
//! frames were received and one more `try_recv` said `WouldBlock` (at most
//! one spurious readiness after the last frame). A reader driven only by
//! `poll` never misses a wake-up.

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use common::frame::{self, Tracker};
use common::peer::Peer;
use common::TestNet;
use ipn::{Config, JoinOptions, Port, RecvError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

const LONG: Duration = Duration::from_secs(10);

/// Whether the port's fd is readable within `ms` milliseconds, using only
/// the raw fd as a C user (QEMU's main loop, libvdeplug) would.
fn readable(port: &Port, ms: u16) -> bool {
    // The raw fd a C user gets is the one `as_fd` lends here.
    let fd = port.as_fd();
    assert_eq!(fd.as_raw_fd(), port.as_raw_fd());
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(ms)).expect("poll");
    n == 1
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
}

fn peer(net: &TestNet) -> Peer {
    let mut peer = Peer::spawn("script", &[]);
    peer.expect_word("ready", LONG);
    peer.ok(&format!("join {} rw sender", net.arg()));
    peer
}

/// After the peer's join (which may ring this port once), empties the
/// port: returns how many `WouldBlock`s it took for the fd to go quiet.
fn settle(port: &mut Port) -> usize {
    let mut buf = [0u8; 1514];
    let mut spurious = 0;
    while readable(port, 0) {
        match port.try_recv(&mut buf) {
            Err(RecvError::WouldBlock) => spurious += 1,
            other => panic!("nothing was sent, yet try_recv gave {other:?}"),
        }
        assert!(spurious <= 1, "fd stays readable with nothing to read");
    }
    spurious
}

#[test]
fn pollable_fd_is_not_readable_when_nothing_waits() {
    let net = TestNet::create("poll-idle", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    assert!(
        !readable(&me, 0),
        "readable right after joining an empty network"
    );
    let mut buf = [0u8; 1514];
    assert!(matches!(me.try_recv(&mut buf), Err(RecvError::WouldBlock)));
    assert!(!readable(&me, 50));
    let sender = peer(&net);
    settle(&mut me);
    assert!(!readable(&me, 100), "readable with a silent peer");
    sender.finish();
}

/// 50 rounds: a peer process sends one frame; the fd becomes readable
/// (only a doorbell makes it so); after the frame and one `WouldBlock` it
/// is quiet. How fast is measured and printed, not judged: on two busy
/// CPUs a wake-up may wait for a time slice (speed is BENCHMARKS.md's).
#[test]
fn pollable_fd_becomes_readable_after_another_process_sends() {
    let net = TestNet::create("poll-latency", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    let mut sender = peer(&net);
    sender.ok("tag 1");
    settle(&mut me);
    let mut buf = [0u8; 1514];
    let mut latencies = Vec::new();
    for seq in 0..50 {
        assert!(!readable(&me, 0), "round {seq}: readable before the send");
        let start = Instant::now();
        sender.tell("send 1 64");
        assert!(
            readable(&me, 10_000),
            "round {seq}: not readable 10 s after a send"
        );
        latencies.push(start.elapsed());
        assert_eq!(sender.expect(LONG), "ok 1");
        let n = me.try_recv(&mut buf).expect("a frame after readiness");
        assert_eq!(frame::check(&buf[..n]).unwrap(), (1, seq));
        assert!(matches!(me.try_recv(&mut buf), Err(RecvError::WouldBlock)));
        assert!(!readable(&me, 0), "round {seq}: readable after WouldBlock");
    }
    latencies.sort();
    let (median, worst) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    eprintln!("send -> readable (includes the command pipe): median {median:?}, worst {worst:?}");
    sender.finish();
}

#[test]
fn pollable_fd_stays_readable_while_frames_wait_and_stops_after_wouldblock() {
    let net = TestNet::create("poll-level", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    let mut sender = peer(&net);
    sender.ok("tag 1");
    settle(&mut me);
    let mut buf = [0u8; 1514];
    for round in 0..20u64 {
        sender.ok("send 5 100");
        assert!(readable(&me, 1000), "round {round}: not readable");
        for _ in 0..2 {
            me.try_recv(&mut buf).unwrap();
        }
        assert!(
            readable(&me, 0),
            "round {round}: 3 frames wait, yet not readable"
        );
        for _ in 0..3 {
            me.try_recv(&mut buf).unwrap();
        }
        // All read: at most one spurious readiness, then quiet.
        let spurious = settle(&mut me);
        assert!(spurious <= 1, "round {round}");
        assert!(
            !readable(&me, 20),
            "round {round}: readable after WouldBlock"
        );
    }
    sender.finish();
}

/// QEMU's pattern, `poll` then one `try_recv_after_poll`: the fd is
/// readable exactly while frames wait. After the last waiting frame is
/// taken the fd is quiet at once (no readiness that brings nothing), while
/// more wait it stays readable. Rounds are 2 ms apart, so that even in
/// bursts frames come further apart on average than a wake-up costs, and
/// the receiver never looks ahead (which would keep the fd readable for
/// the frame it expects).
#[test]
fn after_poll_the_fd_is_readable_exactly_while_frames_wait() {
    let net = TestNet::create("poll-exact", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    let mut sender = peer(&net);
    sender.ok("tag 1");
    settle(&mut me);
    let mut buf = [0u8; 1514];
    for round in 0..50u64 {
        std::thread::sleep(Duration::from_millis(2));
        let burst = 1 + round % 3;
        sender.ok(&format!("send {burst} 100"));
        for left in (0..burst).rev() {
            assert!(
                readable(&me, 2000),
                "round {round}: {} wait, not readable",
                left + 1
            );
            match me.try_recv_after_poll(&mut buf) {
                Ok(100) => {}
                other => panic!("round {round}: readable, yet {other:?}"),
            }
            assert_eq!(
                readable(&me, 0),
                left > 0,
                "round {round}: {left} frames wait after the receive"
            );
        }
    }
    sender.finish();
}

/// A reader that waits only with `poll` on the fd, and reads with
/// `try_recv` until `WouldBlock`, receives every one of 5 000 frames of a
/// lossless sender process that keeps filling a 16-frame ring: every time
/// it goes back to `poll`, the next frame wakes it.
#[test]
fn poll_driven_reader_never_misses_a_wakeup() {
    let net = TestNet::create(
        "poll-driven",
        &Config {
            lossless: true,
            ring_slots: Some(16),
            ..Config::default()
        },
    );
    let mut me = Port::join(
        net.path(),
        &JoinOptions {
            description: "poller".into(),
            read: true,
            write: false,
            ..Default::default()
        },
    )
    .unwrap();
    let count = 5000u64;
    let n = count.to_string();
    let mut sender = Peer::spawn("send-seq", &[&net.arg(), "1", &n, "600", "w"]);
    sender.expect_word("ready", LONG);
    sender.tell("go");
    let mut tracker = Tracker::default();
    let mut buf = [0u8; 1514];
    let mut sleeps = 0;
    while tracker.received < count {
        assert!(
            readable(&me, 2000),
            "frames {}.. never woke the poller (lost wake-up)",
            tracker.received
        );
        sleeps += 1;
        loop {
            match me.try_recv(&mut buf) {
                Ok(n) => {
                    tracker.record(&buf[..n], true).unwrap();
                }
                Err(RecvError::WouldBlock) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    eprintln!("{count} frames in {sleeps} poll wake-ups");
    sender.expect_word("done", LONG);
    assert!(!readable(&me, 50));
    sender.finish();
}

/// `try_recv_before_wait`, for callers that wait with `recv_timeout` when
/// it finds nothing (the Python binding, which holds its interpreter lock
/// only while not waiting): it takes the frames that wait, in order, and
/// finding none it leaves the doorbell as it was: a readable fd stays
/// readable (not drained), a quiet one quiet; a `recv_timeout` after it
/// gets the frame another process sends meanwhile.
#[test]
fn try_recv_before_wait_leaves_the_doorbell_as_it_was() {
    let net = TestNet::create("poll-before-wait", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    let mut sender = peer(&net);
    sender.ok("tag 1");
    let mut buf = [0u8; 1514];
    let mut seq = 0;
    for round in 0..20 {
        // A receive that finds nothing arms the doorbell: a send rings it.
        assert!(matches!(me.try_recv(&mut buf), Err(RecvError::WouldBlock)));
        settle(&mut me);
        assert!(matches!(
            me.try_recv_before_wait(&mut buf),
            Err(RecvError::WouldBlock)
        ));
        assert!(
            !readable(&me, 0),
            "round {round}: readable with nothing sent"
        );
        sender.ok("send 3 100");
        assert!(readable(&me, 1000), "round {round}: 3 frames, not readable");
        for _ in 0..3 {
            let n = me.try_recv_before_wait(&mut buf).unwrap();
            assert_eq!(frame::check(&buf[..n]).unwrap(), (1, seq));
            seq += 1;
        }
        assert!(matches!(
            me.try_recv_before_wait(&mut buf),
            Err(RecvError::WouldBlock)
        ));
        assert!(
            readable(&me, 0),
            "round {round}: the doorbell was drained by a receive that does not arm"
        );
        sender.tell("send 1 100");
        let n = me.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(frame::check(&buf[..n]).unwrap(), (1, seq));
        seq += 1;
        assert_eq!(sender.expect(LONG), "ok 1");
    }
    sender.finish();
}

/// A batch (`Port::batch`) wakes a sleeping reader once, when it ends:
/// while it is open the reader's fd stays quiet, after it the fd is
/// readable, every frame of the batch waits, and once they are read (and
/// one `WouldBlock`) the fd is quiet again.
#[test]
fn a_batch_rings_a_sleeping_reader_once_at_its_end() {
    let net = TestNet::create("poll-batch", &Config::default());
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    let mut sender = Port::join(net.path(), &JoinOptions::described("sender")).unwrap();
    settle(&mut me);
    let mut buf = [0u8; 1514];
    for round in 0..20u8 {
        assert!(
            !readable(&me, 0),
            "round {round}: readable before the batch"
        );
        let mut batch = sender.batch();
        for n in 0..10u8 {
            batch.send(&[round, n, 0, 0, 0, 0, 0, 0]).unwrap();
        }
        assert!(
            !readable(&me, 0),
            "round {round}: rung before the batch ended"
        );
        drop(batch);
        assert!(readable(&me, 1000), "round {round}: not rung at the end");
        for n in 0..10u8 {
            let len = me.try_recv(&mut buf).expect("a frame of the batch");
            assert_eq!(&buf[..2], &[round, n][..], "round {round}");
            assert_eq!(len, 8);
        }
        assert_eq!(
            settle(&mut me),
            1,
            "round {round}: one WouldBlock, then quiet"
        );
    }
}

/// Lossless, a batch ten times longer than the ring, to a reader blocked
/// in `recv` on another thread: the batch tells the reader of its frames
/// before each wait for room, so the reader makes room and gets every
/// frame, in order (a batch that waited unannounced would hang here).
#[test]
fn a_lossless_batch_longer_than_the_ring_reaches_a_blocked_reader() {
    let config = Config {
        lossless: true,
        ring_slots: Some(8),
        ..Config::default()
    };
    let net = TestNet::create("poll-batch-lossless", &config);
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    let mut sender = Port::join(net.path(), &JoinOptions::described("sender")).unwrap();
    settle(&mut me);
    const FRAMES: u32 = 80;
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 1514];
        for n in 0..FRAMES {
            let len = me
                .recv_timeout(&mut buf, LONG)
                .unwrap_or_else(|e| panic!("frame {n}: {e}"));
            assert_eq!(&buf[..len], &n.to_be_bytes()[..]);
        }
    });
    let mut batch = sender.batch();
    for n in 0..FRAMES {
        batch
            .send_timeout(&n.to_be_bytes(), LONG)
            .unwrap_or_else(|e| panic!("frame {n}: {e}"));
    }
    drop(batch);
    reader.join().unwrap();
}
