//! Offloads across a network: a port that takes offloads sends and
//! receives a virtio-net header before every frame (as a TAP with
//! IFF_VNET_HDR); its GSO frames reach other offload ports whole, and every
//! other port gets the wire frames they stand for, cut and checksummed in
//! software.

mod common;

use std::time::Duration;

use common::TestNet;
use ipn::ethernet::{Tci, Vlan, VlanSet};
use ipn::offload::{HdrLayout, VirtioNetHdr, F_NEEDS_CSUM, GSO_TCPV4};
use ipn::{Config, JoinOptions, Network, Port, RecvError, SendError};
use ipn_test_support::checksum::{internet_checksum, reference_fold};

const SHORT: Duration = Duration::from_millis(100);

fn join(net: &TestNet, name: &str, offload: bool, vlan: Vlan) -> Port {
    Port::join(
        net.path(),
        &JoinOptions {
            description: name.into(),
            offload,
            vlan,
            ..JoinOptions::default()
        },
    )
    .unwrap()
}

/// A TCPv4 segment of `payload` bytes as a TCP stack hands it to a NIC
/// with TSO: one frame, headers once, checksum left to complete
/// (pseudo-header sum in place), and the header that says so.
fn tso_frame(payload: usize, vid: Option<u16>) -> (VirtioNetHdr, Vec<u8>) {
    let mut f = Vec::new();
    f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
    if let Some(vid) = vid {
        f.extend_from_slice(&Tci::for_vlan(vid).to_bytes());
    }
    let ip = f.len() + 2;
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = 20 + 20 + payload;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    let ip_sum = internet_checksum(&[&f[ip..ip + 20]]);
    f[ip + 10..ip + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let tcp = f.len();
    f.extend_from_slice(&[
        0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend((0..payload).map(|i| (i % 251) as u8));
    // The pseudo-header's sum (of a segment-sized length is what Linux
    // leaves; segment() recomputes per segment anyway).
    let hdr = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: (tcp + 20) as u16,
        gso_size: 1448,
        csum_start: tcp as u16,
        csum_offset: 16,
        num_buffers: 0,
    };
    (hdr, f)
}

/// Checks a wire TCPv4 frame (untagged, or tagged if `tagged`): IP header
/// and TCP checksums valid; returns the TCP payload.
fn verify_wire(frame: &[u8], tagged: bool) -> Vec<u8> {
    let ip = if tagged { 18 } else { 14 };
    assert_eq!(
        internet_checksum(&[&frame[ip..ip + 20]]),
        0,
        "IPv4 header checksum"
    );
    let total = usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]));
    assert_eq!(frame.len(), ip + total, "IPv4 total length");
    let tcp = &frame[ip + 20..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&frame[ip + 12..ip + 20]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    assert_eq!(internet_checksum(&[&pseudo, tcp]), 0, "TCP checksum");
    tcp[20..].to_vec()
}

fn with_hdr(hdr: &VirtioNetHdr, frame: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 10];
    hdr.write(&mut out, HdrLayout::Basic).unwrap();
    out.extend_from_slice(frame);
    out
}

fn receive_all(port: &mut Port) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; port.max_frame()];
    let mut got = Vec::new();
    loop {
        match port.recv_timeout(&mut buf, SHORT) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(RecvError::TimedOut) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_gso_frame_reaches_offload_ports_whole_and_others_as_checksummed_segments() {
    let config = Config {
        lossless: true,
        ..Config::default()
    };
    let net = TestNet::create("offload-ports", &config);
    let mut sender = join(&net, "tap", true, Vlan::Transparent);
    let mut vm = join(&net, "vhost", true, Vlan::Transparent);
    let mut dump = join(&net, "dump", false, Vlan::Transparent);
    let (hdr, frame) = tso_frame(20_000, None);
    sender.send(&with_hdr(&hdr, &frame)).unwrap();

    let whole = receive_all(&mut vm);
    assert_eq!(whole.len(), 1, "one GSO frame for the offload port");
    let (got_hdr, got_frame) = VirtioNetHdr::split(&whole[0], HdrLayout::Basic).unwrap();
    assert_eq!((got_hdr, got_frame), (hdr, &frame[..]));

    let segments = receive_all(&mut dump);
    assert_eq!(segments.len(), 20_000usize.div_ceil(1448));
    let mut payload = Vec::new();
    for s in &segments {
        assert!(s.len() <= 1514, "a segment of {} bytes", s.len());
        payload.extend(verify_wire(s, false));
    }
    assert_eq!(payload, frame[54..], "the byte stream, whole and in order");
}

#[test]
fn offload_frames_keep_their_vlan_and_header_offsets_across_tags() {
    let net = TestNet::create("offload-vlan", &Config::default());
    let trunk = Vlan::Trunk {
        vlans: [10u16].into_iter().collect::<VlanSet>(),
        native: None,
    };
    let mut sender = join(&net, "trunk", true, trunk);
    let mut access = join(&net, "access10", true, Vlan::Access(10));
    let mut plain = join(&net, "transparent", false, Vlan::Transparent);
    let mut other = join(&net, "access20", false, Vlan::Access(20));
    let (hdr, frame) = tso_frame(4_000, Some(10));
    sender.send(&with_hdr(&hdr, &frame)).unwrap();

    // The access port gets it untagged, its header's offsets 4 bytes less.
    let got = receive_all(&mut access);
    assert_eq!(got.len(), 1);
    let (h, f) = VirtioNetHdr::split(&got[0], HdrLayout::Basic).unwrap();
    assert_eq!(h.csum_start, hdr.csum_start - 4);
    assert_eq!(&f[..12], &frame[..12]);
    assert_eq!(&f[12..], &frame[16..]);
    // The transparent port without offloads gets tagged wire frames.
    let segments = receive_all(&mut plain);
    assert_eq!(segments.len(), 4_000usize.div_ceil(1448));
    let payload: Vec<u8> = segments.iter().flat_map(|s| verify_wire(s, true)).collect();
    assert_eq!(payload, frame[58..]);
    assert!(receive_all(&mut other).is_empty(), "never across VLANs");
}

#[test]
fn a_gso_frame_larger_than_half_the_ring_is_cut_by_its_sender() {
    let config = Config {
        ring_bytes: Some(16 << 10),
        lossless: true,
        ..Config::default()
    };
    let net = TestNet::create("offload-small-ring", &config);
    let mut sender = join(&net, "tap", true, Vlan::Transparent);
    let mut vm = join(&net, "vm", true, Vlan::Transparent);
    let (hdr, frame) = tso_frame(30_000, None);
    let count = 30_000usize.div_ceil(1448);
    // The 21 segments are twice the ring: the reader reads as they come.
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; vm.max_frame()];
        (0..count)
            .map(|_| {
                let n = vm.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
                buf[..n].to_vec()
            })
            .collect::<Vec<_>>()
    });
    sender.send(&with_hdr(&hdr, &frame)).unwrap();
    let got = reader.join().unwrap();
    let payload: Vec<u8> = got
        .iter()
        .flat_map(|f| {
            let (h, wire) = VirtioNetHdr::split(f, HdrLayout::Basic).unwrap();
            assert!(h.is_plain(), "already cut: no offload left");
            verify_wire(wire, false)
        })
        .collect();
    assert_eq!(payload, frame[54..]);
}

#[test]
fn a_header_that_does_not_describe_its_frame_is_refused_at_send() {
    let net = TestNet::create("offload-bad", &Config::default());
    let mut sender = join(&net, "tap", true, Vlan::Transparent);
    let (mut hdr, frame) = tso_frame(3_000, None);
    hdr.gso_type = 9;
    let e = sender.send(&with_hdr(&hdr, &frame)).unwrap_err();
    assert!(e.to_string().contains("virtio-net header"), "{e}");
    assert!(sender.send(&[0u8; 5]).is_err(), "shorter than a header");
}

/// The checksum-offload frame of `len` bytes (`vid`: 802.1Q-tagged) that a
/// port with offloads sends with NEEDS_CSUM and no GSO: one TCPv4 segment
/// (a TSO frame cut to `len`, its header saying "complete the checksum").
fn csum_frame(len: usize, vid: Option<u16>) -> (VirtioNetHdr, Vec<u8>) {
    let (mut hdr, frame) = tso_frame(len, vid);
    let mut frame = frame[..len].to_vec();
    let ip = if vid.is_some() { 18 } else { 14 };
    let total = (len - ip) as u16;
    frame[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
    frame[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
    let ip_sum = internet_checksum(&[&frame[ip..ip + 20]]);
    frame[ip + 10..ip + 12].copy_from_slice(&ip_sum.to_be_bytes());
    // The pseudo-header's sum, folded, where the device completes it.
    let tcp = ip + 20;
    let tcp_len = (len - tcp) as u16;
    let pseudo = reference_fold(&[&frame[ip + 12..tcp], &[0, 6], &tcp_len.to_be_bytes()]);
    frame[tcp + 16..tcp + 18].copy_from_slice(&pseudo.to_be_bytes());
    hdr.gso_type = ipn::offload::GSO_NONE;
    hdr.gso_size = 0;
    (hdr, frame)
}

/// A port with offloads sends no frame without GSO larger than the MTU
/// (plus 4 if tagged), exactly as a port without offloads: a NEEDS_CSUM
/// header does not make a 3000- or 65000-byte frame a wire frame.
#[test]
fn a_frame_without_gso_over_the_mtu_is_refused_at_send_as_without_offloads() {
    let net = TestNet::create("offload-over-mtu", &Config::default());
    let mut sender = join(&net, "tap", true, Vlan::Transparent);
    let mut plain = join(&net, "dump", false, Vlan::Transparent);
    let mut vm = join(&net, "vm", true, Vlan::Transparent);
    for (len, vid) in [(1515, None), (3000, None), (65_000, None), (1519, Some(10))] {
        let (hdr, frame) = csum_frame(len, vid);
        match sender.send(&with_hdr(&hdr, &frame)) {
            Err(SendError::TooBig {
                len: got,
                mtu: 1514,
            }) => assert_eq!(got, len),
            other => panic!("{len} bytes (tag {vid:?}) with NEEDS_CSUM: {other:?}"),
        }
    }
    // At the MTU, with or without a tag, they go, checksum completed for
    // the port without offloads.
    for (len, vid) in [(1514, None), (1518, Some(10))] {
        let (hdr, frame) = csum_frame(len, vid);
        sender.send(&with_hdr(&hdr, &frame)).unwrap();
    }
    let got = receive_all(&mut plain);
    let lens: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(lens, [1514, 1518], "only the frames within the MTU");
    verify_wire(&got[0], false);
    verify_wire(&got[1], true);
    let whole: Vec<usize> = receive_all(&mut vm).iter().map(Vec::len).collect();
    assert_eq!(whole, [10 + 1514, 10 + 1518]);
}

/// A GSO frame stands for frames within the MTU: one whose segments
/// (`gso_size` after its headers) would be larger is refused at send.
#[test]
fn a_gso_frame_whose_segments_exceed_the_mtu_is_refused_at_send() {
    let net = TestNet::create("offload-big-segments", &Config::default());
    let mut sender = join(&net, "tap", true, Vlan::Transparent);
    let mut plain = join(&net, "dump", false, Vlan::Transparent);
    let (mut hdr, frame) = tso_frame(20_000, None);
    hdr.gso_size = 1461; // 54 bytes of headers + 1461 = 1515
    let e = sender.send(&with_hdr(&hdr, &frame)).unwrap_err();
    assert!(
        e.to_string()
            .contains("segment of 1515 bytes exceeds the MTU of 1514"),
        "{e}"
    );
    // Tagged, the segments may be 4 bytes longer, no more.
    let (mut hdr, frame) = tso_frame(20_000, Some(10));
    hdr.gso_size = 1461; // 58 + 1461 = 1519
    assert!(sender.send(&with_hdr(&hdr, &frame)).is_err());
    hdr.gso_size = 1460;
    sender.send(&with_hdr(&hdr, &frame)).unwrap();
    let got = receive_all(&mut plain);
    assert_eq!(got.len(), 20_000usize.div_ceil(1460));
    assert!(got.iter().all(|s| s.len() <= 1518));
}

/// Where a port's frames lie in the shared file.
struct RingFile {
    shm: std::path::PathBuf,
    ring: u64,
    data: u64,
    data_bytes: u64,
    slots: u64,
}

impl RingFile {
    fn of(net: &TestNet, port: &Port) -> RingFile {
        use ipn::raw_layout::*;
        let read = |at: u64, n: usize| -> u64 {
            let mut b = [0u8; 8];
            std::os::unix::fs::FileExt::read_exact_at(
                &std::fs::File::open(net.shm()).unwrap(),
                &mut b[..n],
                at,
            )
            .unwrap();
            u64::from_le_bytes(b)
        };
        let slots = read(HEADER_RING_SLOTS, 4);
        let ring =
            read(HEADER_RINGS_OFFSET, 8) + u64::from(port.index()) * read(HEADER_RING_STRIDE, 8);
        RingFile {
            shm: net.shm(),
            ring,
            data: ring + ring_data_offset(slots),
            data_bytes: read(HEADER_RING_BYTES, 8),
            slots,
        }
    }

    /// Where frame `n`'s virtio-net header lies in the file.
    fn header_of(&self, n: u64) -> u64 {
        use ipn::raw_layout::*;
        let desc = self.ring + (n % self.slots) * DESCRIPTOR_SIZE;
        let mut b = [0u8; 8];
        let file = std::fs::File::open(&self.shm).unwrap();
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut b, desc + DESCRIPTOR_POS).unwrap();
        let pos = u64::from_le_bytes(b) - VNET_HDR_SPACE;
        self.data + pos % self.data_bytes
    }

    /// Writes `hdr` over frame `n`'s header, as any member can.
    fn rewrite_header(&self, n: u64, hdr: &VirtioNetHdr) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.shm)
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &hdr.to_bytes()[..10], self.header_of(n))
            .unwrap();
    }
}

/// Any member can write any descriptor and header: a GSO frame in the
/// ring made to say "no GSO", or to have segments over the MTU, is
/// received by no port (with offloads or without), and each counts it as
/// dropped, in what `status` shows.
#[test]
fn a_receiver_drops_and_counts_a_frame_over_the_mtu_that_a_member_wrote() {
    let net = TestNet::create("offload-scribbled-hdr", &Config::default());
    let mut sender = join(&net, "tap", true, Vlan::Transparent);
    let mut plain = join(&net, "dump", false, Vlan::Transparent);
    let mut vm = join(&net, "vm", true, Vlan::Transparent);
    let ring = RingFile::of(&net, &sender);
    let (hdr, frame) = tso_frame(20_000, None);
    // Frame 0: made plain (NEEDS_CSUM, no GSO) with its 20054 bytes.
    sender.send(&with_hdr(&hdr, &frame)).unwrap();
    let mut not_gso = hdr;
    not_gso.gso_type = ipn::offload::GSO_NONE;
    not_gso.gso_size = 0;
    ring.rewrite_header(0, &not_gso);
    // Frame 1: segments of 9000 bytes.
    sender.send(&with_hdr(&hdr, &frame)).unwrap();
    let mut jumbo = hdr;
    jumbo.gso_size = 9000;
    ring.rewrite_header(1, &jumbo);
    // Frame 2: as sent.
    sender.send(&with_hdr(&hdr, &frame)).unwrap();

    let got = receive_all(&mut plain);
    assert_eq!(got.len(), 20_000usize.div_ceil(1448), "frame 2's segments");
    assert!(
        got.iter().all(|s| s.len() <= 1514),
        "{:?}",
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let whole = receive_all(&mut vm);
    assert_eq!(whole.len(), 1, "frame 2 only");
    assert_eq!(whole[0].len(), 10 + frame.len());
    let status = Network::open(net.path()).unwrap().status();
    for port in [&plain, &vm] {
        let shown = status
            .ports
            .iter()
            .find(|p| p.index == port.index())
            .unwrap();
        assert_eq!(shown.rx_dropped, 2, "{}: {shown:?}", shown.description);
    }
}
