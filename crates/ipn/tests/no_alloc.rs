//! Nothing on the data path allocates: sending and receiving plain frames,
//! frames with offloads that reach a port with offloads whole and a port
//! without them as checksummed segments (`offload::Segments`), and
//! `offload::segment` into a reused buffer. A counting global allocator
//! counts this thread's allocations; after a warm-up (buffers grow to
//! their size once), a few thousand frames each way must not add one.
//!
//! The allocator is `ipn_test_support::alloc::Counting`.

mod common;

use common::TestNet;
use ipn::offload::{self, HdrLayout, Segments, VirtioNetHdr, F_NEEDS_CSUM, GSO_TCPV4};
use ipn::{Config, JoinOptions, Port};
use ipn_test_support::alloc::{allocations_in, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A TCPv4 frame with `payload` bytes for TSO, and its header.
fn tso_frame(payload: usize) -> (VirtioNetHdr, Vec<u8>) {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = (40 + payload) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[0x30, 0x39, 0, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18]);
    f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    f.extend((0..payload).map(|i| i as u8));
    let hdr = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    (hdr, f)
}

fn join(net: &TestNet, name: &str, offload: bool) -> Port {
    let options = JoinOptions {
        offload,
        ..JoinOptions::described(name)
    };
    Port::join(net.path(), &options).unwrap()
}

#[test]
fn sending_receiving_and_cutting_frames_allocates_nothing_once_warm() {
    let net = TestNet::create("no-alloc", &Config::default());
    let mut plain_tx = join(&net, "plain-tx", false);
    let mut plain_rx = join(&net, "plain-rx", false);
    let mut vnet_tx = join(&net, "vnet-tx", true);
    let mut vnet_rx = join(&net, "vnet-rx", true);

    let (hdr, frame) = tso_frame(6000);
    let segments = 6000usize.div_ceil(1448);
    let mut with_hdr = vec![0u8; 10];
    hdr.write(&mut with_hdr, HdrLayout::Basic).unwrap();
    with_hdr.extend_from_slice(&frame);
    let plain_frame = [0x5au8; 60];
    let mut buf = vec![0u8; vnet_rx.max_frame()];
    let mut cut_buf = Vec::new();
    let mut queue = Segments::new();

    let mut round = |check: bool| {
        // A plain frame: every other port gets it (the offload ports with
        // an empty header).
        plain_tx.send(&plain_frame).unwrap();
        for port in [&mut plain_rx, &mut vnet_tx, &mut vnet_rx] {
            let n = port.try_recv(&mut buf).unwrap();
            if check {
                assert_eq!(&buf[n - 60..n], &plain_frame[..]);
            }
        }
        // A TSO frame: whole to the other offload port, as segments to
        // the plain ones.
        vnet_tx.send(&with_hdr).unwrap();
        let n = vnet_rx.try_recv(&mut buf).unwrap();
        assert_eq!(n, with_hdr.len());
        for port in [&mut plain_tx, &mut plain_rx] {
            for _ in 0..segments {
                let n = port.try_recv(&mut buf).unwrap();
                assert!(n <= 1514);
            }
        }
        // The same cut by hand, both ways.
        let made = offload::segment(&hdr, &frame, 1514, &mut cut_buf, |s| {
            std::hint::black_box(s);
        });
        assert_eq!(made, Ok(segments));
        queue.start(&hdr, &frame, 1514).unwrap();
        while let Some(len) = queue.pop_into(&frame, &mut buf) {
            assert!(len <= 1514);
        }
    };
    for _ in 0..100 {
        round(true);
    }
    let allocations = allocations_in(|| {
        for _ in 0..3000 {
            round(false);
        }
    });
    assert_eq!(
        allocations, 0,
        "3000 rounds of plain and TSO frames (each sent, received and cut) allocated"
    );
    // The counter counts: one allocation is seen.
    assert_eq!(allocations_in(|| drop(std::hint::black_box(vec![1u8]))), 1);
}
