//! `Tap`, for real: TAP interfaces in network namespaces made for each
//! test, with the kernel's own stack on the other side.
//!
//! - Without offloads a TAP gives and takes whole frames without a header,
//!   as it always did, also when a previous user of a persistent TAP left
//!   offloads on it.
//! - With offloads the kernel hands over, after a virtio-net header, UDP
//!   and TCP frames of up to 64 KiB with checksums left to complete;
//!   `ipn::offload::segment` makes wire frames of them that the kernel's
//!   receiving side, tcpdump and this file's own checksum code accept,
//!   carrying the byte stream intact; a header and frame sent the other way
//!   reach a socket.
//!
//! These tests need root (namespaces, TAPs), iproute2 and tcpdump; without
//! them they fail, saying what is missing: they never skip. Addresses are
//! in 10.213.0.0/16, 10.214.0.0/16 and fd00:213::/32, inside namespaces the
//! tests create; nothing leaves them. Everything a test makes is removed
//! when it ends, also when it fails.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{check_frame, mac_of, stream_byte, tcp_in_csum_errors, tcpdump_checks, Checked, Pcap};
use ipn::offload::{
    segment, HdrLayout, VirtioNetHdr, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6,
    GSO_UDP_L4, MAX_GSO_FRAME,
};
use ipn_attach::tap::{Offloads, Tap, TapError, TapOptions};
use ipn_attach::Link;
use ipn_test_support::netns::{add_address, ifname, link_up, must_in, static_neighbour};
use ipn_test_support::{in_netns, must, require_root, tag, Lab};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt::UdpGsoSegment};

/// How long a test waits for what normally takes milliseconds.
const LONG: Duration = Duration::from_secs(10);

/// The neighbour the namespaces send to: nobody answers, a static entry
/// saves the ARP/ND round.
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x21, 0x3f];

const OFFLOAD: TapOptions = TapOptions { offload: true };

fn require_root_and_tools() {
    require_root(
        "the TAP tests create network namespaces and TAP interfaces",
        &["ip", "tcpdump"],
    );
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = must("uname", &["-r"]);
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// Gives `ifname` in `ns` the addresses `10.213.N.1/24` and
/// `fd00:213:N::1/64` (no duplicate address detection), sets it up, and
/// makes `.2` / `::2` a static neighbour at [`PEER_MAC`].
fn configure(ns: &str, ifname: &str, n: u8) -> (String, String) {
    let (v4, v6) = (format!("10.213.{n}.2"), format!("fd00:213:{n}::2"));
    add_address(ns, ifname, &format!("10.213.{n}.1/24"));
    add_address(ns, ifname, &format!("fd00:213:{n}::1/64"));
    link_up(ns, ifname);
    for addr in [&v4, &v6] {
        static_neighbour(ns, ifname, addr, "02:00:00:00:21:3f");
    }
    (v4, v6)
}

/// One UDP datagram of `len` stream bytes to `to` port 9, sent from `ns`
/// with `UDP_SEGMENT` = `gso_size` if given (the kernel then cuts it into
/// datagrams of `gso_size` bytes, or hands the TAP one frame to cut).
fn send_udp(ns: &str, to: &str, len: usize, gso_size: Option<u16>) {
    send_udp_to_port(ns, to, 9, len, gso_size);
}

fn send_udp_to_port(ns: &str, to: &str, port: u16, len: usize, gso_size: Option<u16>) {
    let to: SocketAddr = if to.contains(':') {
        format!("[{to}]:{port}")
    } else {
        format!("{to}:{port}")
    }
    .parse()
    .unwrap();
    in_netns(ns, || {
        let bind = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
        let socket = UdpSocket::bind(bind).unwrap();
        if let Some(size) = gso_size {
            setsockopt(&socket, UdpGsoSegment, &i32::from(size)).unwrap();
        }
        let data: Vec<u8> = (0..len as u64).map(stream_byte).collect();
        socket.send_to(&data, to).unwrap();
    });
}

/// Reads frames from `tap` until `enough` says so, or fails after [`LONG`].
/// Frames other than UDP to port 9 (router solicitations, MLD...) are left
/// out.
#[track_caller]
fn read_udp_frames(
    tap: &mut Tap,
    via_link: bool,
    enough: impl Fn(&[(VirtioNetHdr, Vec<u8>)]) -> bool,
) -> Vec<(VirtioNetHdr, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; MAX_GSO_FRAME];
    let deadline = Instant::now() + LONG;
    while !enough(&got) {
        assert!(Instant::now() < deadline, "only {} frames came", got.len());
        let mut fds = [PollFd::new(tap.fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(100u16)).unwrap();
        let received = if via_link {
            Link::recv(tap, &mut buf[..1514])
                .unwrap()
                .map(|len| (VirtioNetHdr::default(), len))
        } else {
            tap.recv_with_hdr(&mut buf).unwrap()
        };
        let Some((hdr, len)) = received else {
            continue;
        };
        let frame = &buf[..len];
        if is_udp_to_port_9(frame) {
            got.push((hdr, frame.to_vec()));
        }
    }
    got
}

fn is_udp_to_port_9(f: &[u8]) -> bool {
    is_udp_to_port(f, 9)
}

fn is_udp_to_port(f: &[u8], port: u16) -> bool {
    let l4 = match f.get(12..14) {
        Some([0x08, 0x00]) if f.get(23) == Some(&17) => 34,
        Some([0x86, 0xdd]) if f.get(20) == Some(&17) => 54,
        _ => return false,
    };
    f.get(l4 + 2..l4 + 4) == Some(&port.to_be_bytes()[..])
}

/// Sends small datagrams to port 10 until one comes out of `tap`: a
/// persistent TAP gets its carrier when it is opened, and the kernel
/// drops what it sends until it has noticed (linkwatch, up to a second
/// later). Latecomers go to port 10, which the tests leave out.
#[track_caller]
fn wait_until_frames_pass(tap: &mut Tap, ns: &str, to: &str) {
    let mut buf = vec![0u8; MAX_GSO_FRAME];
    let deadline = Instant::now() + LONG;
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing sent in {ns} came out of the TAP"
        );
        send_udp_to_port(ns, to, 10, 1, None);
        let probe_deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < probe_deadline {
            let mut fds = [PollFd::new(tap.fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(20u16)).unwrap();
            while let Some((_, len)) = tap.recv_with_hdr(&mut buf).unwrap() {
                if is_udp_to_port(&buf[..len], 10) {
                    return;
                }
            }
        }
    }
}

/// A fresh namespace `NS_BASE`+pid in `lab` holding the TAP `IF_BASE`+pid,
/// opened from inside it with `options`: (namespace, interface, TAP).
#[track_caller]
fn tap_in_netns(
    lab: &mut Lab,
    ns_base: &str,
    if_base: &str,
    options: TapOptions,
) -> (String, String, Tap) {
    let ns = lab.netns(ns_base);
    let name = ifname(if_base);
    let tap = in_netns(&ns, || Tap::open_with(&name, options)).unwrap();
    (ns, name, tap)
}

/// The frames of `got`, without their headers.
fn frames_of(got: Vec<(VirtioNetHdr, Vec<u8>)>) -> Vec<Vec<u8>> {
    got.into_iter().map(|(_, f)| f).collect()
}

/// Fills in the checksum of the IPv4 header (no options) of Ethernet
/// frame `f`, computed by this file's reference code.
fn set_ipv4_checksum(f: &mut [u8]) {
    f[24..26].copy_from_slice(&[0, 0]);
    let check = !common::reference_fold(&[&f[14..34]]);
    f[24..26].copy_from_slice(&check.to_be_bytes());
}

/// Checks that `frames` are UDP datagrams of `size` bytes (the last one
/// shorter) with correct checksums, to [`PEER_MAC`], carrying the stream
/// bytes `0..total` between them.
#[track_caller]
fn check_datagrams(frames: &[Vec<u8>], size: usize, total: usize) {
    let mut carried = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let c = check_frame(f)
            .unwrap_or_else(|e| panic!("datagram {i}: {e}"))
            .expect("UDP");
        assert_eq!(&f[..6], &PEER_MAC[..]);
        let payload = &f[c.payload..];
        assert!(payload.len() == size || i + 1 == frames.len());
        carried.extend_from_slice(payload);
    }
    let want: Vec<u8> = (0..total as u64).map(stream_byte).collect();
    assert!(carried == want, "the datagrams do not carry the bytes sent");
}

#[test]
fn a_tap_without_offloads_gives_whole_checked_frames_without_a_header() {
    require_root_and_tools();
    let mut lab = Lab::default();
    let (ns, name, mut tap) = tap_in_netns(&mut lab, "ipnoP", "ipop", TapOptions::default());
    assert_eq!(tap.vnet_hdr(), None);
    assert_eq!(tap.offloads(), Offloads::NONE);
    let (v4, v6) = configure(&ns, &name, 1);

    // The kernel cuts a UDP_SEGMENT send itself: 10 frames of 1042 bytes,
    // checksums complete, no header before them.
    for (to, header) in [(&v4, 42), (&v6, 62)] {
        send_udp(&ns, to, 10_000, Some(1000));
        let got = read_udp_frames(&mut tap, false, |g| g.len() >= 10);
        assert!(got.iter().all(|(hdr, _)| *hdr == VirtioNetHdr::default()));
        let frames = frames_of(got);
        assert!(
            frames.iter().all(|f| f.len() == header + 1000),
            "{:?}",
            frames.iter().map(Vec::len).collect::<Vec<_>>()
        );
        check_datagrams(&frames, 1000, 10_000);
    }
    // Nothing to send a header to.
    let gso = VirtioNetHdr {
        gso_type: GSO_UDP_L4,
        gso_size: 100,
        ..VirtioNetHdr::default()
    };
    let err = tap.send_with_hdr(&gso, &[0; 60]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("without offloads"), "{err}");
}

#[test]
fn a_tap_with_offloads_negotiates_them_and_gso_frames_arrive_with_their_header() {
    offloads_carry_udp_and_small_frames(kernel_at_least(6, 2));
}

/// Set (to anything) in the process [`kernel_without_uso_is_not_asked_for_it`]
/// runs under `tests/c/kernel_without_uso.c`.
const WITHOUT_USO: &str = "IPN_TEST_KERNEL_WITHOUT_USO";

/// On a kernel whose TAP driver has no USO (before 6.2), a TAP with
/// offloads gets the others and UDP arrives segmented by the kernel. Run
/// on any kernel: the test runs itself again under a seccomp filter that
/// refuses TUNSETOFFLOAD with the USO bits with EINVAL, as such a kernel
/// does (tests/c/kernel_without_uso.c), and checks there that `Tap` fell
/// back, and which way the frames came.
#[test]
fn kernel_without_uso_is_not_asked_for_it() {
    if std::env::var_os(WITHOUT_USO).is_some() {
        // The run under the filter.
        offloads_carry_udp_and_small_frames(false);
        return;
    }
    require_root_and_tools();
    let wrapper = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel_without_uso");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/kernel_without_uso.c");
    let cc = std::process::Command::new("cc")
        .args(["-Wall", "-Werror", "-O", "-o"])
        .arg(&wrapper)
        .arg(source)
        .output()
        .expect("running cc (scripts/deps.sh installs gcc and libc6-dev)");
    assert!(
        cc.status.success(),
        "cc {source}: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = std::process::Command::new(&wrapper)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kernel_without_uso_is_not_asked_for_it",
            "--nocapture",
        ])
        .env(WITHOUT_USO, "1")
        .output()
        .expect("running the test under kernel_without_uso");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "failed under kernel_without_uso:\n{said}"
    );
    for line in said.lines().filter(|l| l.starts_with("[tap]")) {
        say(&format!("{line} (under kernel_without_uso)"));
    }
    assert!(
        said.contains("1 passed") && said.contains("UDP branch: without USO"),
        "the run under kernel_without_uso did not take the branch without USO"
    );
}

/// Prints `line` where `cargo test` shows it even for a test that passes
/// (straight to fd 2: the harness captures only `eprintln!`), so that a
/// test log says which branch ran.
fn say(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// A TAP with offloads: checksums and TSO always, USO exactly when
/// `uso` (the kernel has it); UDP datagrams of 10000 bytes in 1000-byte
/// segments arrive whole with USO, segmented by the kernel without, and
/// either way become the right wire frames; a small datagram comes with
/// its checksum to complete.
fn offloads_carry_udp_and_small_frames(uso_expected: bool) {
    require_root_and_tools();
    let t = tag();
    let mut lab = Lab::default();
    let (ns, name, mut tap) = tap_in_netns(&mut lab, "ipnoO", "ipoo", OFFLOAD);
    assert_eq!(tap.vnet_hdr(), Some(HdrLayout::Basic));
    let offloads = tap.offloads();
    let tso = Offloads::CSUM | Offloads::TSO4 | Offloads::TSO6 | Offloads::TSO_ECN;
    assert!(offloads.contains(tso), "{offloads:?}");
    assert!(!offloads.contains(Offloads::UFO), "{offloads:?}");
    let uso = Offloads::USO4 | Offloads::USO6;
    assert_eq!(
        offloads.contains(uso),
        uso_expected,
        "USO is in Linux from 6.2 (kernel {}), asked for only where it is: {offloads:?}",
        must("uname", &["-r"]).trim()
    );
    say(&format!(
        "[tap] offloads negotiated: {offloads:?}; UDP branch: {}",
        if offloads.contains(uso) {
            "with USO (the kernel hands over whole datagrams)"
        } else {
            "without USO (the kernel segments UDP itself)"
        }
    ));
    let (v4, v6) = configure(&ns, &name, 2);

    let mut pcap = Pcap::create(&std::env::temp_dir().join(format!("ipn-offload-{t}-udp.pcap")));
    for (to, l4) in [(&v4, 34usize), (&v6, 54)] {
        send_udp(&ns, to, 10_000, Some(1000));
        let got = read_udp_frames(&mut tap, false, |g| {
            g.iter().map(|(_, f)| f.len() - l4 - 8).sum::<usize>() >= 10_000
        });
        let mut segments = Vec::new();
        if offloads.contains(uso) {
            // One frame of 10000 payload bytes, its checksum to complete.
            let lengths: Vec<usize> = got.iter().map(|(_, f)| f.len()).collect();
            assert_eq!(
                lengths,
                [l4 + 8 + 10_000],
                "one frame for the whole datagram"
            );
            let (hdr, frame) = &got[0];
            assert_eq!(hdr.gso_type, GSO_UDP_L4);
            assert_eq!(hdr.gso_size, 1000);
            assert!(hdr.needs_csum());
            assert_eq!((usize::from(hdr.csum_start), hdr.csum_offset), (l4, 6));
            assert!(usize::from(hdr.hdr_len) <= frame.len());
            let n = segment(hdr, frame, 1514, &mut Vec::new(), |s| {
                segments.push(s.to_vec())
            })
            .unwrap();
            assert_eq!(n, 10);
        } else {
            for (hdr, frame) in &got {
                assert_eq!(hdr.gso_type, GSO_NONE);
                segment(hdr, frame, 1514, &mut Vec::new(), |s| {
                    segments.push(s.to_vec())
                })
                .unwrap();
            }
        }
        for s in &segments {
            pcap.write(s);
        }
        check_datagrams(&segments, 1000, 10_000);
    }

    // A small datagram: no GSO, the checksum left to complete.
    send_udp(&ns, &v4, 100, None);
    let got = read_udp_frames(&mut tap, false, |g| !g.is_empty());
    let (hdr, frame) = &got[0];
    assert_eq!((hdr.gso_type, hdr.flags), (GSO_NONE, F_NEEDS_CSUM));
    assert_eq!((hdr.csum_start, hdr.csum_offset), (34, 6));
    assert!(
        check_frame(frame).is_err(),
        "the checksum was complete already"
    );
    let mut whole = Vec::new();
    segment(hdr, frame, 1514, &mut Vec::new(), |s| {
        whole.push(s.to_vec())
    })
    .unwrap();
    check_datagrams(&whole, 100, 100);
    pcap.write(&whole[0]);
    assert_eq!(
        tcpdump_checks(&pcap.path),
        21,
        "tcpdump saw every checksum correct"
    );

    // The same TAP as a Link: segments one by one, checksums complete;
    // while segments are left, its fd is readable although the kernel
    // has nothing more.
    send_udp(&ns, &v6, 10_000, Some(1000));
    let got = read_udp_frames(&mut tap, true, |g| g.len() >= 3);
    assert_eq!(got.len(), 3);
    let mut fds = [PollFd::new(tap.fd(), PollFlags::POLLIN)];
    assert_eq!(
        poll(&mut fds, PollTimeout::ZERO).unwrap(),
        1,
        "segments are left: readable"
    );
    let rest = read_udp_frames(&mut tap, true, |g| g.len() >= 7);
    let frames: Vec<Vec<u8>> = got.into_iter().chain(rest).map(|(_, f)| f).collect();
    check_datagrams(&frames, 1000, 10_000);
    assert_eq!(tap.dropped(), 0);
}

#[test]
fn a_header_and_frame_sent_into_a_tap_with_offloads_reach_a_socket() {
    require_root_and_tools();
    let mut lab = Lab::default();
    let (ns, name, mut tap) = tap_in_netns(&mut lab, "ipnoS", "ipos", OFFLOAD);
    configure(&ns, &name, 3);
    let socket = in_netns(&ns, || UdpSocket::bind("10.213.3.1:7777")).unwrap();
    socket.set_read_timeout(Some(LONG)).unwrap();

    // One UDP frame of 5 x 500 bytes, from the "peer" to the socket, its
    // checksum left to complete: the kernel cuts and checks it.
    let payload: Vec<u8> = (0..2500u64).map(stream_byte).collect();
    let mut f = mac_of(&ns, &name).to_vec();
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0x00]);
    f.extend_from_slice(&(20u16 + 8 + 2500).to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 17, 0, 0]);
    f.extend_from_slice(&[10, 213, 3, 2, 10, 213, 3, 1]);
    set_ipv4_checksum(&mut f);
    f.extend_from_slice(&[0x30, 0x39, 0x1e, 0x61]); // 12345 -> 7777
    f.extend_from_slice(&(8u16 + 2500).to_be_bytes());
    let pseudo = [&f[26..34], &[0, 17][..], &(8u16 + 2500).to_be_bytes()[..]].concat();
    f.extend_from_slice(&common::reference_fold(&[&pseudo]).to_be_bytes());
    f.extend_from_slice(&payload);
    let hdr = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_UDP_L4,
        hdr_len: 42,
        gso_size: 500,
        csum_start: 34,
        csum_offset: 6,
        num_buffers: 0,
    };
    tap.send_with_hdr(&hdr, &f).unwrap();
    let mut buf = [0u8; 4096];
    for i in 0..5 {
        let (len, from) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(from, "10.213.3.2:12345".parse().unwrap());
        assert_eq!(
            &buf[..len],
            &payload[i * 500..(i + 1) * 500],
            "datagram {i}"
        );
    }
    // A header the kernel refuses is an error about that frame only.
    let bad = VirtioNetHdr {
        gso_type: 0x42,
        gso_size: 500,
        ..hdr
    };
    let err = tap.send_with_hdr(&bad, &f).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    // A plain frame through the Link (an empty header) arrives too.
    let mut plain = f[..42].to_vec();
    plain.extend_from_slice(b"plain");
    plain[16..18].copy_from_slice(&(20u16 + 8 + 5).to_be_bytes());
    set_ipv4_checksum(&mut plain);
    plain[38..40].copy_from_slice(&(8u16 + 5).to_be_bytes());
    plain[40..42].copy_from_slice(&[0, 0]); // no UDP checksum over IPv4
    Link::send(&mut tap, &plain).unwrap();
    let (len, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"plain");
}

/// Opens the persistent TAP `name` that this process just closed. The
/// kernel detaches a TAP when the last reference to its file goes, and a
/// child that another test's thread is starting holds a copy of every fd
/// from fork to exec (close-on-exec closes it only then): for that long
/// the TAP is still attached and opening it says busy. So busy is waited
/// out here, for a generous while; any other error fails at once.
fn reopen(ns: &str, name: &str, options: TapOptions) -> Tap {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match in_netns(ns, || Tap::open_with(name, options)) {
            Err(TapError::Busy { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            result => return result.unwrap(),
        }
    }
}

#[test]
fn a_persistent_tap_left_with_offloads_gives_plain_frames_when_opened_without() {
    require_root_and_tools();
    let mut lab = Lab::default();
    let ns = lab.netns("ipnoR");
    let name = ifname("ipor");
    must(
        "ip",
        &["-n", &ns, "tuntap", "add", "mode", "tap", "name", &name],
    );
    let (v4, _) = configure(&ns, &name, 4);

    // A previous user turned offloads on and went away; they stay.
    let with = in_netns(&ns, || Tap::open_with(&name, OFFLOAD)).unwrap();
    assert!(with.offloads().contains(Offloads::TSO4));
    drop(with);

    let mut tap = reopen(&ns, &name, TapOptions::default());
    wait_until_frames_pass(&mut tap, &ns, &v4);
    send_udp(&ns, &v4, 10_000, Some(1000));
    let got = read_udp_frames(&mut tap, false, |g| {
        g.iter()
            .map(|(_, f)| f.len().saturating_sub(42))
            .sum::<usize>()
            >= 10_000
    });
    let frames = frames_of(got);
    let lengths: Vec<usize> = frames.iter().map(Vec::len).collect();
    assert!(
        lengths.iter().all(|&len| len == 1042),
        "frames of {lengths:?} bytes: the kernel still segments nothing for this TAP \
         (the offloads the previous user left were not cleared)"
    );
    check_datagrams(&frames, 1000, 10_000);
    drop(tap);

    // And the next user with offloads gets them back.
    let mut tap = reopen(&ns, &name, OFFLOAD);
    wait_until_frames_pass(&mut tap, &ns, &v4);
    send_udp(&ns, &v4, 100, None);
    let got = read_udp_frames(&mut tap, false, |g| !g.is_empty());
    assert!(got[0].0.needs_csum(), "{:?}", got[0].0);
}

/// What the user-space "wire" between the two TAPs saw.
#[derive(Debug, Default)]
struct WireStats {
    /// Frames from the offload TAP, and those with a GSO header.
    frames: u64,
    gso_frames: u64,
    /// ... with GSO_ECN.
    ecn_frames: u64,
    largest: usize,
    segments: u64,
    bad_segments: Vec<String>,
    /// Segments marked Congestion Experienced on the way.
    ce_marked: u64,
    /// Segments with CWR.
    cwr_segments: u64,
}

/// Moves frames between `offloaded` (the sender's TAP, with offloads) and
/// `plain` (the receiver's, without) until `stop`: frames from the sender
/// are cut with `segment` into frames of at most 1514 bytes, each checked
/// on the way, the first `keep` written to `pcap`; with `mark_ce`, every
/// 16th ECN-capable data segment is marked Congestion Experienced.
fn wire(
    offloaded: &mut Tap,
    plain: &mut Tap,
    stop: &AtomicBool,
    pcap: &mut Pcap,
    keep: u64,
    mark_ce: bool,
) -> WireStats {
    let mut stats = WireStats::default();
    let mut buf = vec![0u8; MAX_GSO_FRAME];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [
            PollFd::new(offloaded.fd(), PollFlags::POLLIN),
            PollFd::new(plain.fd(), PollFlags::POLLIN),
        ];
        poll(&mut fds, PollTimeout::from(50u16)).unwrap();
        while let Some((hdr, len)) = offloaded.recv_with_hdr(&mut buf).unwrap() {
            stats.frames += 1;
            stats.largest = stats.largest.max(len);
            if hdr.is_gso() {
                stats.gso_frames += 1;
                if hdr.gso_type & GSO_ECN != 0 {
                    stats.ecn_frames += 1;
                }
                assert!(
                    matches!(hdr.gso_type & !GSO_ECN, GSO_TCPV4 | GSO_TCPV6),
                    "{hdr:?}"
                );
            }
            let mut first = true;
            segment(&hdr, &buf[..len], 1514, &mut Vec::new(), |seg| {
                let mut seg = seg.to_vec();
                match check_frame(&seg) {
                    Err(e) => stats.bad_segments.push(e),
                    Ok(Some(c)) if c.proto == 6 => {
                        if seg[c.l4 + 13] & 0x80 != 0 {
                            stats.cwr_segments += 1;
                            if !first {
                                stats
                                    .bad_segments
                                    .push("CWR after the first segment".into());
                            }
                        }
                        if mark_ce
                            && seg.len() > c.payload
                            && (stats.segments % 16 == 5)
                            && mark_congestion(&mut seg, &c)
                        {
                            stats.ce_marked += 1;
                        }
                    }
                    Ok(_) => {}
                }
                first = false;
                stats.segments += 1;
                if stats.segments <= keep {
                    pcap.write(&seg);
                }
                // A full queue drops a frame, as a wire would; TCP resends.
                let _ = Link::send(plain, &seg);
            })
            .unwrap_or_else(|e| panic!("the kernel's frame was refused: {e}; {hdr:?}"));
        }
        while let Some(len) = Link::recv(plain, &mut buf).unwrap() {
            let _ = Link::send(offloaded, &buf[..len]);
        }
    }
    stats
}

/// Sets the flag when dropped: the wire stops also when the test fails.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Accepts one connection, or fails after `limit`.
fn accept_within(listener: &TcpListener, limit: Duration) -> io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false)?;
                return Ok(conn);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Marks an ECN-capable IP packet Congestion Experienced (ECN bits 11);
/// says whether it was ECN-capable.
fn mark_congestion(seg: &mut [u8], c: &Checked) -> bool {
    if c.v6 {
        // Traffic class: the low nibble of byte 0, the high nibble of byte 1.
        let ecn_bits = 0x30;
        if seg[c.l3 + 1] & ecn_bits == 0 {
            return false;
        }
        seg[c.l3 + 1] |= ecn_bits;
    } else {
        if seg[c.l3 + 1] & 3 == 0 {
            return false;
        }
        seg[c.l3 + 1] |= 3;
        seg[c.l3 + 10..c.l3 + 12].copy_from_slice(&[0, 0]);
        let check = !common::reference_fold(&[&seg[c.l3..c.l3 + 20]]);
        seg[c.l3 + 10..c.l3 + 12].copy_from_slice(&check.to_be_bytes());
    }
    true
}

/// A TCP stream of `len` bytes from namespace A (behind a TAP with
/// offloads) to namespace B (behind a plain TAP), over IPv6 if `v6`, with
/// ECN and congestion marks if `ecn`, through [`wire`]. Checks everything
/// and returns what the wire saw.
fn tcp_stream_through_the_segmenter(name: &str, v6: bool, ecn: bool, len: u64) -> WireStats {
    require_root_and_tools();
    let t = tag();
    let mut lab = Lab::default();
    let (a, b) = (
        lab.netns(&format!("ipno{name}A")),
        lab.netns(&format!("ipno{name}B")),
    );
    let (ta, tb) = (
        ifname(&format!("ipo{name}a")),
        ifname(&format!("ipo{name}b")),
    );
    let mut tap_a = in_netns(&a, || Tap::open_with(&ta, OFFLOAD)).unwrap();
    let mut tap_b = in_netns(&b, || Tap::open(&tb)).unwrap();
    for (ns, ifname, host) in [(&a, &ta, 1), (&b, &tb, 2)] {
        add_address(ns, ifname, &format!("10.214.0.{host}/24"));
        add_address(ns, ifname, &format!("fd00:214::{host}/64"));
        link_up(ns, ifname);
        let ecn_mode = if ecn { "1" } else { "0" };
        must_in(
            ns,
            "sysctl",
            &["-q", "-w", &format!("net.ipv4.tcp_ecn={ecn_mode}")],
        );
    }
    let server_addr: SocketAddr = if v6 {
        "[fd00:214::2]:5001".parse().unwrap()
    } else {
        "10.214.0.2:5001".parse().unwrap()
    };
    let listener = in_netns(&b, || TcpListener::bind(server_addr)).unwrap();
    let stop = AtomicBool::new(false);
    let pcap_path = std::env::temp_dir().join(format!("ipn-offload-{t}-{name}.pcap"));
    let mut pcap = Pcap::create(&pcap_path);
    let keep = 3000;

    let (stats, received) = std::thread::scope(|scope| {
        // However this closure ends, the wire stops, so that the scope's
        // threads end too: every wait below has a deadline.
        let _stop = StopOnDrop(&stop);
        let wire = scope.spawn(|| wire(&mut tap_a, &mut tap_b, &stop, &mut pcap, keep, ecn));
        let server = scope.spawn(|| -> io::Result<(u64, Option<u64>)> {
            let mut conn = accept_within(&listener, LONG)?;
            conn.set_read_timeout(Some(LONG))?;
            let (mut total, mut first_wrong) = (0u64, None);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                for (i, &byte) in buf[..n].iter().enumerate() {
                    let at = total + i as u64;
                    if first_wrong.is_none() && byte != stream_byte(at) {
                        first_wrong = Some(at);
                    }
                }
                total += n as u64;
            }
            Ok((total, first_wrong))
        });
        let started = Instant::now();
        let mut client = in_netns(&a, || TcpStream::connect_timeout(&server_addr, LONG))
            .expect("connecting through the wire");
        client.set_write_timeout(Some(LONG)).unwrap();
        let data: Vec<u8> = (0..len).map(stream_byte).collect();
        for chunk in data.chunks(256 << 10) {
            client.write_all(chunk).unwrap_or_else(|e| {
                panic!("sending the stream stalled ({e}): the receiver takes nothing")
            });
        }
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let received = server.join().unwrap().expect("receiving the stream");
        eprintln!("[tap] {name}: {len} bytes in {:?}", started.elapsed());
        drop(client);
        stop.store(true, Ordering::Relaxed);
        (wire.join().unwrap(), received)
    });
    eprintln!("[tap] {name}: {stats:?}");
    assert_eq!(received, (len, None), "bytes received, first wrong byte");
    assert!(
        stats.bad_segments.is_empty(),
        "bad segments: {:?}",
        &stats.bad_segments[..stats.bad_segments.len().min(5)]
    );
    assert!(
        stats.gso_frames > 0,
        "the kernel sent no GSO frame: {stats:?}"
    );
    assert!(stats.largest > 16 << 10, "no frame over 16 KiB: {stats:?}");
    assert_eq!(
        tcp_in_csum_errors(&b),
        0,
        "the receiver found bad TCP checksums"
    );
    let correct = tcpdump_checks(&pcap_path);
    assert!(
        correct as u64 >= keep.min(stats.segments) * 9 / 10,
        "tcpdump verified only {correct} checksums"
    );
    stats
}

#[test]
fn a_tcp_stream_over_ipv4_cut_by_segment_arrives_whole() {
    tcp_stream_through_the_segmenter("T4", false, false, 24 << 20);
}

#[test]
fn a_tcp_stream_over_ipv6_cut_by_segment_arrives_whole() {
    tcp_stream_through_the_segmenter("T6", true, false, 24 << 20);
}

#[test]
fn tcp_with_ecn_keeps_cwr_on_the_first_segment_only() {
    for (name, v6) in [("E4", false), ("E6", true)] {
        let stats = tcp_stream_through_the_segmenter(name, v6, true, 24 << 20);
        assert!(
            stats.ce_marked > 0,
            "{name}: nothing was ECN-capable: {stats:?}"
        );
        assert!(
            stats.cwr_segments > 0,
            "{name}: the sender never answered with CWR: {stats:?}"
        );
        assert!(
            stats.ecn_frames > 0,
            "{name}: no GSO frame with ECN: {stats:?}"
        );
    }
}
