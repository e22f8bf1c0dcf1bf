//! A split port (`Port::split`): its sending half on one thread and its
//! receiving half on another, against a real second port that sends and
//! receives at the same time, in hub and switch mode, lossy and lossless.
//! In switch mode the receiving half learns the peer's address and the
//! sending half, on the other thread, unicasts to it: a third port that
//! only reads sees none of those frames.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

mod common;

use common::{TestNet, Watchdog};
use ipn::{Config, JoinOptions, Port, PortReceiver, PortSender, Protocol, RecvError, SendError};

/// Frames each way.
const FRAMES: u32 = 5000;
/// Longest wait for any one frame: a generous cap, not a timing claim.
const PATIENCE: Duration = Duration::from_secs(10);

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
const BROADCAST: [u8; 6] = [0xff; 6];

fn frame(dst: [u8; 6], src: [u8; 6], seq: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f.extend_from_slice(&seq.to_le_bytes());
    f.resize(60, 0x5a);
    f
}

/// Source address and sequence number of a frame made by [`frame`].
fn parse(f: &[u8]) -> ([u8; 6], u32) {
    assert_eq!(f.len(), 60, "a frame of the wrong length: {f:?}");
    let src = f[6..12].try_into().unwrap();
    (src, u32::from_le_bytes(f[14..18].try_into().unwrap()))
}

/// Receives frames from `from` in order until the last of [`FRAMES`] (or,
/// lossy, until the frame numbered last): returns how many arrived.
fn receive_in_order(
    mut next: impl FnMut(&mut [u8]) -> Result<usize, RecvError>,
    from: [u8; 6],
    what: &str,
) -> u32 {
    let mut buf = [0u8; 1518];
    let mut expected = 0u32;
    let mut received = 0u32;
    while expected < FRAMES {
        let n = next(&mut buf)
            .unwrap_or_else(|e| panic!("{what}: waiting for frame {expected} of {FRAMES}: {e}"));
        let (src, seq) = parse(&buf[..n]);
        if src != from {
            continue; // the other side's hello
        }
        assert!(
            seq >= expected,
            "{what}: frame {seq} after frame {}: out of order or twice",
            expected - 1
        );
        expected = seq + 1;
        received += 1;
    }
    received
}

fn assert_send<T: Send>(_: &T) {}

/// The sending half's thread: once the receiving half has heard the
/// peer's hello (so that, in switch mode, the peer's address is learned),
/// sends [`FRAMES`] frames to it.
fn send_from_a(mut tx: PortSender<'_>, learned: mpsc::Receiver<()>) {
    learned
        .recv_timeout(PATIENCE)
        .expect("the receiving half never heard the peer's hello");
    for seq in 0..FRAMES {
        tx.send(&frame(MAC_B, MAC_A, seq))
            .unwrap_or_else(|e| panic!("a sending frame {seq}: {e}"));
    }
}

/// The receiving half's thread: the peer's hello, then its frames.
fn receive_at_a(mut rx: PortReceiver<'_>, learned: mpsc::Sender<()>) -> u32 {
    let mut buf = [0u8; 1518];
    let n = rx
        .recv_timeout(&mut buf, PATIENCE)
        .expect("a's receiving half: no hello from b");
    assert_eq!(parse(&buf[..n]), (MAC_B, u32::MAX), "b's hello first");
    learned.send(()).unwrap();
    receive_in_order(|buf| rx.recv_timeout(buf, PATIENCE), MAC_B, "a")
}

/// The second port, whole, on its own thread: sends [`FRAMES`] frames to
/// a and receives a's, interleaved without blocking (a lossless send must
/// not wait while frames for us pile up).
fn run_b(b: &mut Port) -> u32 {
    let mut buf = [0u8; 1518];
    let (mut sent, mut expected, mut received) = (0u32, 0u32, 0u32);
    let deadline = std::time::Instant::now() + PATIENCE * 6;
    while sent < FRAMES || expected < FRAMES {
        assert!(
            std::time::Instant::now() < deadline,
            "b: stuck at {sent} sent, {received} received"
        );
        if sent < FRAMES {
            match b.try_send(&frame(MAC_A, MAC_B, sent)) {
                Ok(()) => sent += 1,
                Err(SendError::WouldBlock) => {}
                Err(e) => panic!("b sending frame {sent}: {e}"),
            }
        }
        match b.try_recv(&mut buf) {
            Ok(n) => {
                let (src, seq) = parse(&buf[..n]);
                assert_eq!(src, MAC_A, "b got a frame not from a");
                assert!(seq >= expected, "b: frame {seq} out of order");
                expected = seq + 1;
                received += 1;
            }
            Err(RecvError::WouldBlock) => std::thread::yield_now(),
            Err(e) => panic!("b receiving: {e}"),
        }
    }
    received
}

/// A port that only reads (so that lossless senders wait for it too),
/// counting the frames from a it is given, until `stop`.
fn count_at_c(c: &mut Port, stop: &AtomicBool) -> u32 {
    let mut buf = [0u8; 1518];
    let mut from_a = 0;
    while !stop.load(Ordering::Acquire) {
        match c.recv_timeout(&mut buf, Duration::from_millis(20)) {
            Ok(n) if parse(&buf[..n]).0 == MAC_A => from_a += 1,
            Ok(_) | Err(RecvError::TimedOut) => {}
            Err(e) => panic!("c receiving: {e}"),
        }
    }
    // What was sent before `stop` and not read yet.
    while let Ok(n) = c.try_recv(&mut buf) {
        from_a += u32::from(parse(&buf[..n]).0 == MAC_A);
    }
    from_a
}

fn both_directions_on_two_threads(protocol: Protocol, lossless: bool) {
    let name = format!("split-{protocol:?}-{lossless}").to_lowercase();
    let _watchdog = Watchdog::new(&name, Duration::from_secs(120));
    let config = Config {
        protocol,
        lossless,
        ..Config::default()
    };
    let net = TestNet::create(&name, &config);
    let join = |name| Port::join(net.path(), &JoinOptions::described(name)).unwrap();
    let (mut a, mut b, mut c) = (join("a"), join("b"), join("c"));
    b.send(&frame(BROADCAST, MAC_B, u32::MAX)).unwrap();
    let stop = AtomicBool::new(false);
    let (a_received, b_received, c_from_a) = std::thread::scope(|s| {
        let (tx, rx) = a.split();
        assert_send(&tx);
        assert_send(&rx);
        let (learned_tx, learned_rx) = mpsc::channel();
        let sender = s.spawn(move || send_from_a(tx, learned_rx));
        let receiver = s.spawn(move || receive_at_a(rx, learned_tx));
        let peer = s.spawn(|| run_b(&mut b));
        let reader = s.spawn(|| count_at_c(&mut c, &stop));
        sender.join().unwrap();
        let a_received = receiver.join().unwrap();
        let b_received = peer.join().unwrap();
        stop.store(true, Ordering::Release);
        (a_received, b_received, reader.join().unwrap())
    });
    if lossless {
        assert_eq!(a_received, FRAMES, "a lost frames on a lossless network");
        assert_eq!(b_received, FRAMES, "b lost frames on a lossless network");
    } else {
        // Lossy: what did not arrive was counted as lost.
        let status = a.status();
        let dropped = |index| {
            let port = status.ports.iter().find(|p| p.index == index).unwrap();
            port.rx_dropped as u32
        };
        assert_eq!(
            a_received + dropped(a.index()),
            FRAMES,
            "a: frames vanished"
        );
        assert_eq!(
            b_received + dropped(b.index()),
            FRAMES,
            "b: frames vanished"
        );
    }
    match protocol {
        // The receiving half learned b; the sending half sent to b alone.
        Protocol::Switch => assert_eq!(c_from_a, 0, "c got a's unicast frames"),
        Protocol::Hub if lossless => assert_eq!(c_from_a, FRAMES, "c missed a's frames"),
        Protocol::Hub => assert!(c_from_a > 0, "c got none of a's frames"),
    }
    // The port is whole again, and works as one.
    a.send(&frame(MAC_B, MAC_A, FRAMES)).unwrap();
    let mut buf = [0u8; 1518];
    let n = b.recv_timeout(&mut buf, PATIENCE).unwrap();
    assert_eq!(parse(&buf[..n]), (MAC_A, FRAMES));
}

#[test]
fn hub_lossless() {
    both_directions_on_two_threads(Protocol::Hub, true);
}

#[test]
fn hub_lossy() {
    both_directions_on_two_threads(Protocol::Hub, false);
}

#[test]
fn switch_lossless() {
    both_directions_on_two_threads(Protocol::Switch, true);
}

#[test]
fn switch_lossy() {
    both_directions_on_two_threads(Protocol::Switch, false);
}
