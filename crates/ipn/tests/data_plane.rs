//! The variable-length data plane: frames take their own length in a
//! sender's ring, not an MTU-sized slot, so memory follows the ring size;
//! frames of every length, up to 65535 bytes, cross whole and in order,
//! lossless ones even through a ring that holds only two of them.

mod common;

use std::time::Duration;

use common::frame;
use common::TestNet;
use ipn::{Config, JoinOptions, Network, OpenError, Port};

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

const LONG: Duration = Duration::from_secs(20);

#[test]
fn a_64_port_network_at_mtu_65535_fits_in_128_mib_and_carries_65535_byte_frames() {
    let config = Config {
        mtu: 65535,
        lossless: true,
        ..Config::default()
    };
    let net = TestNet::create("jumbo", &config);
    let size = std::fs::metadata(net.shm()).unwrap().len();
    assert!(size <= 128 << 20, "{size} bytes");
    let status = Network::open(net.path()).unwrap().status();
    assert_eq!(status.memory, size);
    assert_eq!((status.max_ports, status.mtu), (64, 65535));
    let mut a = Port::join(net.path(), &JoinOptions::described("a")).unwrap();
    let mut b = Port::join(net.path(), &JoinOptions::described("b")).unwrap();
    let mut buf = vec![0u8; 65535];
    // Largest and smallest frames, alternating, more than the ring holds.
    for seq in 0..40u64 {
        let len = if seq % 2 == 0 { 65535 } else { frame::MIN_LEN };
        a.send_timeout(&frame::make(1, seq, len), LONG).unwrap();
        let n = b.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(frame::check(&buf[..n]).unwrap(), (1, seq));
    }
}

#[test]
fn the_default_network_is_no_larger_than_with_mtu_sized_slots() {
    let net = TestNet::create("default-size", &Config::default());
    let size = std::fs::metadata(net.shm()).unwrap().len();
    // 64 ports x 256 slots of 1536 bytes: what fixed slots needed.
    assert!(size <= 64 * 256 * 1536, "{size} bytes");
    let status = Network::open(net.path()).unwrap().status();
    assert_eq!((status.ring_slots, status.ring_bytes), (256, 256 << 10));
}

#[test]
fn ring_bytes_out_of_range_is_refused_with_the_range() {
    let net = TestNet::empty("ring-bytes");
    for ring_bytes in [1000, 2048, 3 << 20] {
        let config = Config {
            ring_bytes: Some(ring_bytes),
            ..Config::default()
        };
        match Network::create(net.path(), &config) {
            Err(e @ OpenError::InvalidConfig(_)) => {
                assert!(e.to_string().contains("power of two from 4096"), "{e}")
            }
            other => panic!("ring of {ring_bytes} bytes: {other:?}"),
        }
    }
    let jumbo = Config {
        mtu: 9000,
        ring_bytes: Some(16384),
        ..Config::default()
    };
    let e = Network::create(net.path(), &jumbo).unwrap_err();
    assert!(
        e.to_string().contains("from 32768"),
        "two 9000-byte frames: {e}"
    );
}

/// Three reader processes, a sender of frames from 16 to 1514 bytes, a
/// lossless ring of 64 descriptors but only 4 KiB: the bytes, not the
/// descriptors, limit the sender, and every frame arrives, whole, in order.
#[test]
fn lossless_frames_of_every_length_cross_a_ring_limited_by_bytes() {
    let config = Config {
        lossless: true,
        ring_slots: Some(64),
        ring_bytes: Some(4096),
        ..Config::default()
    };
    let net = TestNet::create("bytes-limited", &config);
    common::peer::lossless_stream(&net.arg(), 5_000, &[(0, 0); 3], LONG);
}

/// A lossy reader that stops reading while large frames stream through a
/// small ring: when it reads again it gets whole frames only (those whose
/// bytes were overwritten are counted as dropped, never delivered torn),
/// and received + dropped accounts for every frame.
#[test]
fn a_lapped_lossy_reader_gets_whole_frames_and_counts_the_rest() {
    let config = Config {
        ring_slots: Some(256),
        ring_bytes: Some(8192),
        ..Config::default()
    };
    let net = TestNet::create("lapped-bytes", &config);
    let mut sender = Port::join(net.path(), &JoinOptions::described("sender")).unwrap();
    let mut reader = Port::join(net.path(), &JoinOptions::described("reader")).unwrap();
    let sent = 200u64;
    for seq in 0..sent {
        sender
            .send(&frame::make(1, seq, frame::varied_len(seq, 1514)))
            .unwrap();
    }
    let mut buf = [0u8; 1514];
    let mut received = 0u64;
    let mut last = None;
    while let Ok(n) = reader.try_recv(&mut buf) {
        let (_, seq) = frame::check(&buf[..n]).unwrap();
        assert!(last.is_none_or(|l| seq > l), "{seq} after {last:?}");
        last = Some(seq);
        received += 1;
    }
    let status = reader.status();
    let me = status
        .ports
        .iter()
        .find(|p| p.description == "reader")
        .unwrap();
    assert!(
        received > 0 && received < sent,
        "received {received} of {sent}"
    );
    assert_eq!(
        received + me.rx_dropped,
        sent,
        "every frame received or dropped"
    );
}
