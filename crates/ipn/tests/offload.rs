//! `ipn::offload` against random input: well-formed GSO frames of every
//! kind become segments that a receiver would accept and that carry the
//! same bytes; random bytes, random headers and damaged frames give `Ok` or
//! an error, never a panic, and nothing is emitted before an error.
//!
//! Checksums are verified here by a function of this file (RFC 1071's
//! reference loop), not by the module's own.
//!
//! By default the property tests run a fixed seed (after replaying any
//! failure found before, from `crates/ipn/proptest-regressions/offload.txt`);
//! `IPN_SOAK=1` gives random seeds and many more cases (`scripts/soak.sh`;
//! see `common::properties`).

mod common;

use ipn::offload::{
    complete_checksum, segment, OffloadError, VirtioNetHdr, F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN,
    GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4,
};
use ipn_test_support::checksum::reference_fold;
use proptest::prelude::*;

/// A well-formed GSO frame, as a sender with offloads makes it.
#[derive(Debug, Clone)]
struct Spec {
    vlan: Option<u16>,
    v6: bool,
    udp: bool,
    /// 32-bit words of TCP options (0 to 10).
    tcp_option_words: u8,
    payload: Vec<u8>,
    gso_size: u16,
    ip_id: u16,
    seq: u32,
    /// TCP flags (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    tcp_flags: u8,
    needs_csum: bool,
    ecn: bool,
    /// MTU above the largest segment.
    mtu_slack: u16,
}

/// Offsets of a frame built from a [`Spec`].
struct Offsets {
    l3: usize,
    l4: usize,
    payload: usize,
}

fn offsets(spec: &Spec) -> Offsets {
    let l3 = if spec.vlan.is_some() { 18 } else { 14 };
    let l4 = l3 + if spec.v6 { 40 } else { 20 };
    let l4_len = if spec.udp {
        8
    } else {
        20 + 4 * usize::from(spec.tcp_option_words)
    };
    Offsets {
        l3,
        l4,
        payload: l4 + l4_len,
    }
}

/// The frame and header a sender with offloads would hand over for `spec`;
/// the L4 checksum field holds the pseudo-header sum, as Linux leaves it.
fn build(spec: &Spec) -> (VirtioNetHdr, Vec<u8>) {
    let o = offsets(spec);
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    if let Some(vid) = spec.vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    let l4_total = o.payload - o.l4 + spec.payload.len();
    let proto = if spec.udp { 17 } else { 6 };
    if spec.v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0x02, 0, 0]);
        f.extend_from_slice(&(l4_total as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0x02]);
        f.extend_from_slice(&((20 + l4_total) as u16).to_be_bytes());
        f.extend_from_slice(&spec.ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    }
    if spec.udp {
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35]);
        f.extend_from_slice(&(l4_total as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    } else {
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        f.extend_from_slice(&spec.seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x10, 0]);
        f.extend_from_slice(&[(5 + spec.tcp_option_words) << 4, spec.tcp_flags]);
        f.extend_from_slice(&[0x01, 0x00, 0, 0, 0, 0]);
        // NOPs, then whatever: segmentation copies options as they are.
        f.extend((0..4 * spec.tcp_option_words).map(|i| if i < 2 { 1 } else { i }));
    }
    assert_eq!(f.len(), o.payload);
    f.extend_from_slice(&spec.payload);
    let check_at = o.l4 + if spec.udp { 6 } else { 16 };
    let partial = reference_fold(&[&pseudo_header(&f, &o, spec.v6, proto, l4_total)]);
    f[check_at..check_at + 2].copy_from_slice(&partial.to_be_bytes());
    let gso_type = match (spec.udp, spec.v6) {
        (true, _) => GSO_UDP_L4,
        (false, false) => GSO_TCPV4,
        (false, true) => GSO_TCPV6,
    } | if spec.ecn && !spec.udp { GSO_ECN } else { 0 };
    let hdr = VirtioNetHdr {
        flags: if spec.needs_csum { F_NEEDS_CSUM } else { 0 },
        gso_type,
        hdr_len: o.payload as u16,
        gso_size: spec.gso_size,
        csum_start: o.l4 as u16,
        csum_offset: if spec.udp { 6 } else { 16 },
        num_buffers: 0,
    };
    (hdr, f)
}

/// The pseudo-header of the segment `seg` (or the frame), for an L4 length.
fn pseudo_header(seg: &[u8], o: &Offsets, v6: bool, proto: u8, l4_len: usize) -> Vec<u8> {
    let mut p = if v6 {
        seg[o.l3 + 8..o.l3 + 40].to_vec()
    } else {
        seg[o.l3 + 12..o.l3 + 20].to_vec()
    };
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(l4_len as u16).to_be_bytes());
    p
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Segments `spec`'s frame and checks every segment as a receiver would,
/// and against the frame it came from.
fn segments_are_valid_and_carry_the_payload(spec: Spec) {
    let (hdr, frame) = build(&spec);
    let o = offsets(&spec);
    let gso = usize::from(spec.gso_size);
    let largest = o.payload + spec.payload.len().min(gso);
    let mtu = largest + usize::from(spec.mtu_slack);
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let n = segment(&hdr, &frame, mtu, &mut Vec::new(), |s| {
        segs.push(s.to_vec())
    })
    .unwrap_or_else(|e| panic!("a well-formed frame was refused: {e}"));
    assert_eq!(n, segs.len());
    assert_eq!(n, spec.payload.len().div_ceil(gso).max(1));
    assert_eq!(
        segment(&hdr, &frame, largest - 1, &mut Vec::new(), |_| panic!(
            "emitted"
        )),
        Err(OffloadError::TooBig {
            what: if n > 1 { "segment" } else { "frame" },
            len: largest,
            mtu: largest - 1
        })
    );

    let proto = if spec.udp { 17 } else { 6 };
    let mut carried = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == n;
        assert!(seg.len() <= mtu, "segment {i}: {} > {mtu}", seg.len());
        assert_eq!(seg[..o.l3], frame[..o.l3], "Ethernet header and tag");
        let l4_len = seg.len() - o.l4;
        if spec.v6 {
            assert_eq!(usize::from(be16(seg, o.l3 + 4)), l4_len, "payload length");
            assert_eq!(seg[o.l3..o.l3 + 4], frame[o.l3..o.l3 + 4]);
            assert_eq!(seg[o.l3 + 6..o.l4], frame[o.l3 + 6..o.l4]);
        } else {
            let ip = &seg[o.l3..o.l4];
            assert_eq!(
                reference_fold(&[ip]),
                0xffff,
                "segment {i}: IPv4 header checksum"
            );
            assert_eq!(usize::from(be16(ip, 2)), seg.len() - o.l3, "total length");
            assert_eq!(be16(ip, 4), spec.ip_id.wrapping_add(i as u16), "ID");
            assert_eq!(ip[..2], frame[o.l3..o.l3 + 2]);
            assert_eq!(ip[6..10], frame[o.l3 + 6..o.l3 + 10]);
            assert_eq!(ip[12..], frame[o.l3 + 12..o.l4]);
        }
        let pseudo = pseudo_header(seg, &o, spec.v6, proto, l4_len);
        let sum = reference_fold(&[&pseudo[..], &seg[o.l4..]]);
        assert_eq!(sum, 0xffff, "segment {i}: L4 checksum");
        let l4 = &seg[o.l4..];
        if spec.udp {
            assert_eq!(usize::from(be16(l4, 4)), l4_len, "UDP length");
            assert_ne!(be16(l4, 6), 0, "a UDP checksum of 0 means none");
            assert_eq!(l4[..4], frame[o.l4..o.l4 + 4]);
        } else {
            let seq = spec.seq.wrapping_add((i * gso) as u32);
            assert_eq!(be32(l4, 4), seq, "segment {i}: sequence number");
            let mut flags = spec.tcp_flags;
            if !last {
                flags &= !0x09; // FIN, PSH
            }
            if i > 0 {
                flags &= !0x80; // CWR
            }
            assert_eq!(l4[13], flags, "segment {i} of {n}: flags");
            let header = o.payload - o.l4;
            assert_eq!(l4[..4], frame[o.l4..o.l4 + 4]);
            assert_eq!(l4[8..13], frame[o.l4 + 8..o.l4 + 13]);
            assert_eq!(l4[14..16], frame[o.l4 + 14..o.l4 + 16]);
            assert_eq!(l4[18..header], frame[o.l4 + 18..o.payload], "options");
        }
        carried.extend_from_slice(&seg[o.payload..]);
        if !last {
            assert_eq!(seg.len() - o.payload, gso, "only the last may be short");
        }
    }
    assert_eq!(
        carried, spec.payload,
        "the segments carry the frame's payload"
    );
}

/// One change to a well-formed frame or its header.
#[derive(Debug, Clone)]
enum Damage {
    /// Byte `at % len` becomes `value`.
    Byte { at: usize, value: u8 },
    /// The frame is cut to `len % (len + 1)` bytes.
    Cut { len: usize },
    /// `extra` bytes are added at the end.
    Grow { extra: Vec<u8> },
    /// A header field is replaced: 0 flags, 1 gso_type, 2 hdr_len,
    /// 3 gso_size, 4 csum_start, 5 csum_offset.
    Field { which: u8, value: u16 },
}

/// A well-formed frame, damaged, and an MTU.
#[derive(Debug, Clone)]
struct Damaged {
    spec: Spec,
    damage: Vec<Damage>,
    mtu: usize,
}

/// Segmentation of anything: `Ok(n)` with `n` frames emitted, none over the
/// MTU, or an error with nothing emitted. Never a panic.
fn ok_or_error_never_a_panic(hdr: &VirtioNetHdr, frame: &[u8], mtu: usize) {
    let mut emitted = 0;
    let result = segment(hdr, frame, mtu, &mut Vec::new(), |s| {
        assert!(
            s.len() <= mtu,
            "emitted {} bytes over the MTU {mtu}",
            s.len()
        );
        emitted += 1;
    });
    match result {
        Ok(n) => assert_eq!(n, emitted),
        Err(e) => {
            assert_eq!(emitted, 0, "emitted before refusing: {e}");
            assert!(!e.to_string().is_empty());
        }
    }
}

fn damaged_frames_give_ok_or_errors(case: Damaged) {
    let (mut hdr, mut frame) = build(&case.spec);
    for damage in &case.damage {
        match damage {
            Damage::Byte { at, value } if !frame.is_empty() => {
                let at = at % frame.len();
                frame[at] = *value;
            }
            Damage::Byte { .. } => {}
            Damage::Cut { len } => frame.truncate(len % (frame.len() + 1)),
            Damage::Grow { extra } => frame.extend_from_slice(extra),
            Damage::Field { which, value } => match which % 6 {
                0 => hdr.flags = *value as u8,
                1 => hdr.gso_type = *value as u8,
                2 => hdr.hdr_len = *value,
                3 => hdr.gso_size = *value,
                4 => hdr.csum_start = *value,
                _ => hdr.csum_offset = *value,
            },
        }
    }
    ok_or_error_never_a_panic(&hdr, &frame, case.mtu);
}

/// Random bytes, a random header, a random MTU.
#[derive(Debug, Clone)]
struct Noise {
    hdr: [u8; 12],
    frame: Vec<u8>,
    mtu: usize,
}

fn noise_gives_ok_or_errors(case: Noise) {
    let hdr = VirtioNetHdr::parse(&case.hdr, ipn::offload::HdrLayout::MrgRxbuf).unwrap();
    ok_or_error_never_a_panic(&hdr, &case.frame, case.mtu);
}

/// Random bytes and a random checksum place.
#[derive(Debug, Clone)]
struct Csum {
    frame: Vec<u8>,
    start: usize,
    offset: usize,
}

fn completed_checksums_verify(case: Csum) {
    let mut frame = case.frame.clone();
    let end = case.start.saturating_add(case.offset).saturating_add(2);
    if end <= frame.len() {
        frame[case.start + case.offset] = 0;
        frame[case.start + case.offset + 1] = 0;
    }
    match complete_checksum(&mut frame, case.start, case.offset) {
        Ok(()) => {
            assert!(end <= frame.len());
            // An Internet checksum sits on a word boundary of the bytes it
            // covers (every protocol's does); at an odd offset the kernel,
            // and this module, still store it, but it verifies nothing.
            if case.offset.is_multiple_of(2) {
                assert_eq!(reference_fold(&[&frame[case.start..]]), 0xffff);
            }
            let at = case.start + case.offset;
            assert_ne!(be16(&frame, at), 0, "0 is sent as 0xffff");
            frame[at..at + 2].copy_from_slice(&case.frame[at..at + 2]);
            assert_eq!(frame[..at], case.frame[..at], "only the checksum changes");
            assert_eq!(frame[at + 2..], case.frame[at + 2..]);
        }
        Err(e) => {
            assert!(end > frame.len(), "{e}");
            assert_eq!(frame, case.frame, "changed on error");
        }
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            proptest::option::of(0u16..4096),
            any::<bool>(),
            any::<bool>(),
            0u8..=10,
        ),
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..9000),
            1 => proptest::collection::vec(any::<u8>(), 60000..=65400),
        ],
        prop_oneof![1u16..16, 500u16..1500, 1u16..=65535],
        (any::<u16>(), any::<u32>(), any::<u8>()),
        (any::<bool>(), any::<bool>(), 0u16..100),
    )
        .prop_map(
            |((vlan, v6, udp, words), mut payload, gso_size, (ip_id, seq, tcp_flags), rest)| {
                let (needs_csum, ecn, mtu_slack) = rest;
                // IPv4's total length counts its header; keep every
                // kind within the 16-bit length fields.
                payload.truncate(65535 - 20 - 60);
                let gso_size = if payload.len() / usize::from(gso_size) > 4000 {
                    gso_size.max(64) // at most a few thousand segments a case
                } else {
                    gso_size
                };
                Spec {
                    vlan,
                    v6,
                    udp,
                    tcp_option_words: if udp { 0 } else { words },
                    payload,
                    gso_size,
                    ip_id,
                    seq,
                    tcp_flags,
                    needs_csum,
                    ecn,
                    mtu_slack,
                }
            },
        )
}

fn small_spec() -> impl Strategy<Value = Spec> {
    spec().prop_map(|mut s| {
        s.payload.truncate(300);
        s
    })
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Damage::Byte { at, value }),
        1 => any::<usize>().prop_map(|len| Damage::Cut { len }),
        1 => proptest::collection::vec(any::<u8>(), 1..8).prop_map(|extra| Damage::Grow { extra }),
        2 => (any::<u8>(), prop_oneof![any::<u16>(), 0u16..100]).prop_map(|(which, value)| Damage::Field { which, value }),
    ]
}

fn header_bytes() -> impl Strategy<Value = [u8; 12]> {
    let gso_type = prop_oneof![
        Just(GSO_NONE),
        Just(GSO_TCPV4),
        Just(GSO_TCPV6),
        Just(GSO_UDP_L4),
        Just(GSO_UDP),
        Just(GSO_TCPV4 | GSO_ECN),
        any::<u8>(),
    ];
    let flags = prop_oneof![Just(0), Just(F_NEEDS_CSUM), Just(F_DATA_VALID), any::<u8>()];
    // Offsets and sizes: zero, small (inside a short frame), or anything.
    let number = || prop_oneof![Just(0u16), 0u16..80, any::<u16>()];
    (
        flags,
        gso_type,
        [number(), number(), number(), number(), number()],
    )
        .prop_map(|(flags, gso_type, numbers)| {
            let mut b = [0u8; 12];
            b[0] = flags;
            b[1] = gso_type;
            for (i, n) in numbers.iter().enumerate() {
                b[2 + 2 * i..4 + 2 * i].copy_from_slice(&n.to_le_bytes());
            }
            b
        })
}

proptest! {
    #![proptest_config(ipn_test_support::proptest_config!("offload", 300))]

    #[test]
    fn well_formed_gso_frames_become_valid_segments_that_carry_their_payload(case in spec()) {
        let _soak = common::soak_guard("segments_are_valid_and_carry_the_payload", &case);
        segments_are_valid_and_carry_the_payload(case);
    }

    #[test]
    fn damaged_gso_frames_give_ok_or_errors_never_a_panic(
        case in (small_spec(), proptest::collection::vec(damage(), 1..4), 0usize..2000)
            .prop_map(|(spec, damage, mtu)| Damaged { spec, damage, mtu })
    ) {
        let _soak = common::soak_guard("damaged_frames_give_ok_or_errors", &case);
        damaged_frames_give_ok_or_errors(case);
    }
}

proptest! {
    #![proptest_config(ipn_test_support::proptest_config!("offload", 3000))]

    #[test]
    fn random_bytes_and_headers_give_ok_or_errors_never_a_panic(
        case in (header_bytes(), proptest::collection::vec(any::<u8>(), 0..200), prop_oneof![0usize..200, Just(usize::MAX)])
            .prop_map(|(hdr, frame, mtu)| Noise { hdr, frame, mtu })
    ) {
        let _soak = common::soak_guard("noise_gives_ok_or_errors", &case);
        noise_gives_ok_or_errors(case);
    }

    #[test]
    fn completed_checksums_verify_and_bad_places_are_refused(
        case in (proptest::collection::vec(any::<u8>(), 0..300), prop_oneof![0usize..300, any::<usize>()], prop_oneof![0usize..300, any::<usize>()])
            .prop_map(|(frame, start, offset)| Csum { frame, start, offset })
    ) {
        let _soak = common::soak_guard("completed_checksums_verify", &case);
        completed_checksums_verify(case);
    }
}

#[test]
fn a_jumbo_frame_of_tcp_segments_with_the_largest_payload_is_cut_whole() {
    // The largest IPv4 TCP frame: total length 65535, 1448-byte segments.
    let spec = Spec {
        vlan: Some(7),
        v6: false,
        udp: false,
        tcp_option_words: 3,
        payload: (0..65535 - 20 - 32).map(|i| (i * 7 % 251) as u8).collect(),
        gso_size: 1448,
        ip_id: 0xfffe,
        seq: 0xffff_f000,
        tcp_flags: 0x99,
        needs_csum: true,
        ecn: true,
        mtu_slack: 0,
    };
    segments_are_valid_and_carry_the_payload(spec.clone());
    segments_are_valid_and_carry_the_payload(Spec {
        v6: true,
        payload: (0..65535 - 32).map(|i| (i * 13 % 241) as u8).collect(),
        ..spec
    });
}
