//! The endpoint against a second one on the loopback, and its pieces.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipn::ethernet::Tci;

use super::*;

/// Sends `frame` and what was gathered with it: the bridge flushes
/// whenever the network has nothing more.
fn send_now(link: &mut Vxlan, frame: &[u8]) {
    link.send(frame).unwrap();
    link.flush().unwrap();
}

fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental EtherType
    f.extend_from_slice(payload);
    f
}

#[test]
fn header_is_i_flag_then_24_bit_vni_with_reserved_zeros() {
    let mut h = [0xffu8; 8];
    write_header(0x12_3456, &mut h);
    assert_eq!(h, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
}

#[test]
fn parse_rejects_short_unflagged_and_other_vni_datagrams() {
    let mut d = vec![0u8; HEADER_LEN];
    write_header(42, &mut d);
    d.extend_from_slice(&frame([0xff; 6], [2, 0, 0, 0, 0, 1], b"hi"));
    assert_eq!(parse(&d, 42), Ok(&d[HEADER_LEN..]));
    assert_eq!(parse(&d, 43), Err(Rejected::OtherVni(42)));
    assert_eq!(parse(&d[..HEADER_LEN + 13], 42), Err(Rejected::TooShort));
    assert_eq!(parse(&[], 42), Err(Rejected::TooShort));
    let mut unflagged = d.clone();
    unflagged[0] = 0;
    assert_eq!(parse(&unflagged, 42), Err(Rejected::NoVni));
    // Reserved bits are ignored on receipt.
    let mut reserved = d.clone();
    reserved[1] = 0xff;
    reserved[7] = 0xff;
    assert!(parse(&reserved, 42).is_ok());
}

#[test]
fn open_refuses_a_vni_over_24_bits_and_no_destination() {
    let mut c = VxlanConfig::new(MAX_VNI + 1);
    c.remotes.push("127.0.0.1:1".parse().unwrap());
    assert!(matches!(Vxlan::open(&c), Err(VxlanError::BadVni(_))));
    let c = VxlanConfig::new(1);
    assert!(matches!(Vxlan::open(&c), Err(VxlanError::NoDestination)));
}

fn pair(vni: u32) -> (Vxlan, Vxlan) {
    pair_on(vni, IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn pair_on(vni: u32, ip: IpAddr) -> (Vxlan, Vxlan) {
    // Bind b on a free port first, then a pointing at it, then point b back.
    let mut cb = VxlanConfig::new(vni);
    cb.local = Some(ip);
    cb.port = 0;
    cb.remotes.push(SocketAddr::new(ip, 9));
    let mut b = Vxlan::open(&cb).unwrap();
    let mut ca = cb.clone();
    ca.remotes = vec![b.local_addr().unwrap()];
    let a = Vxlan::open(&ca).unwrap();
    b.shared.flood = vec![a.local_addr().unwrap()];
    (a, b)
}

fn recv_wait(link: &mut Vxlan, buf: &mut [u8]) -> Option<usize> {
    for _ in 0..200 {
        if let Some(n) = link.recv(buf).unwrap() {
            return Some(n);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn frames_cross_between_two_endpoints_and_bad_datagrams_are_counted() {
    let (mut a, mut b) = pair(42);
    let f = frame([0xff; 6], [2, 0, 0, 0, 0, 0xa], b"hello");
    send_now(&mut a, &f);
    let mut buf = vec![0u8; 65536];
    let n = recv_wait(&mut b, &mut buf).expect("frame arrives");
    assert_eq!(&buf[..n], &f[..]);

    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = b.local_addr().unwrap();
    raw.send_to(b"garbage", to).unwrap();
    let mut other = vec![0u8; HEADER_LEN];
    write_header(43, &mut other);
    other.extend_from_slice(&f);
    raw.send_to(&other, to).unwrap();
    let mut unflagged = other.clone();
    unflagged[0] = 0;
    raw.send_to(&unflagged, to).unwrap();
    send_now(&mut a, &f);
    let n = recv_wait(&mut b, &mut buf).expect("the good frame after the bad ones");
    assert_eq!(&buf[..n], &f[..]);
    let s = b.stats();
    assert_eq!((s.received, s.malformed, s.other_vni), (2, 2, 1));
}

#[test]
fn frames_cross_over_ipv6() {
    let (mut a, mut b) = pair_on(5, IpAddr::V6(Ipv6Addr::LOCALHOST));
    let f = frame([2, 0, 0, 0, 0, 0xb], [2, 0, 0, 0, 0, 0xa], b"over v6");
    send_now(&mut a, &f);
    let mut buf = vec![0u8; 65536];
    let n = recv_wait(&mut b, &mut buf).expect("frame arrives over ::1");
    assert_eq!(&buf[..n], &f[..]);
    assert!(a.describe().contains("[::1]:"), "{}", a.describe());
}

#[test]
fn unicast_to_a_learned_mac_goes_to_its_remote_only() {
    let (mut a, mut b) = pair(7);
    let mac_b = [2, 0, 0, 0, 0, 0xb];
    // Without learning: flooded (to one remote, still counted as flood).
    send_now(&mut b, &frame([0xff; 6], mac_b, b"arp"));
    let mut buf = vec![0u8; 65536];
    recv_wait(&mut a, &mut buf).unwrap();
    // `a` has now learned mac_b behind b; add a second remote to see it
    // is not used.
    let decoy = UdpSocket::bind("127.0.0.1:0").unwrap();
    decoy.set_nonblocking(true).unwrap();
    a.shared.flood.push(decoy.local_addr().unwrap());
    send_now(&mut a, &frame(mac_b, [2, 0, 0, 0, 0, 0xa], b"to b"));
    recv_wait(&mut b, &mut buf).expect("unicast reaches b");
    assert_eq!(a.stats().unicast, 1);
    std::thread::sleep(Duration::from_millis(50));
    assert!(decoy.recv_from(&mut buf).is_err(), "decoy got a copy");
    // A broadcast still goes to both.
    send_now(&mut a, &frame([0xff; 6], [2, 0, 0, 0, 0, 0xa], b"all"));
    std::thread::sleep(Duration::from_millis(50));
    assert!(decoy.recv_from(&mut buf).is_ok(), "decoy missed a flood");
}

#[test]
fn each_remote_counts_its_datagrams_bytes_drops_and_learned_addresses() {
    let (mut a, mut b) = pair(9);
    let to_b = b.local_addr().unwrap();
    let mac_a = [2, 0, 0, 0, 0, 0xa];
    let f = frame([0xff; 6], mac_a, b"counted");
    send_now(&mut a, &f);
    send_now(&mut a, &f);
    let mut buf = vec![0u8; 65536];
    recv_wait(&mut b, &mut buf).unwrap();
    recv_wait(&mut b, &mut buf).unwrap();
    let datagram = (HEADER_LEN + f.len()) as u64;
    let sent = a.remotes();
    assert_eq!(sent[0].addr, Some(to_b));
    assert_eq!(sent[0].kind, RemoteKind::Configured);
    assert_eq!(
        (sent[0].stats.tx_datagrams, sent[0].stats.tx_bytes),
        (2, 2 * datagram)
    );
    assert!(sent[0].path_mtu.is_some(), "lo's MTU probed: {sent:?}");
    // b heard from a, and learned a's address behind it.
    let from_a = b
        .remotes()
        .into_iter()
        .find(|r| r.addr == Some(a.local_addr().unwrap()))
        .expect("a is among b's remotes");
    assert_eq!(
        (from_a.stats.rx_datagrams, from_a.stats.rx_bytes),
        (2, 2 * datagram)
    );
    assert_eq!(from_a.addresses, vec![(None, mac_a)]);

    // Too big for any IPv4 packet: refused, counted, reported once.
    let huge = frame([0xff; 6], mac_a, &vec![0u8; 65500]);
    send_now(&mut a, &huge);
    send_now(&mut a, &huge);
    let r = &a.remotes()[0];
    assert_eq!((r.stats.oversized, r.stats.tx_datagrams), (2, 2));
    assert_eq!(a.stats().oversized, 2);
    assert_eq!(a.stats().send_errors, 0);
    let warning = a.take_oversized().expect("reported").to_string();
    assert!(
        warning.contains(&format!("a {}-byte frame to {to_b}", huge.len()))
            && warning.contains("2 such datagrams")
            && warning.contains("less 50"),
        "{warning}"
    );
    assert_eq!(a.take_oversized(), None);
}

#[test]
fn the_warning_names_the_sizes_and_the_inner_mtu_to_set() {
    let o = Oversized {
        to: "10.1.1.2:4789".parse().unwrap(),
        datagram: 1514 + HEADER_LEN,
        path_mtu: Some(1500),
        count: 1,
    };
    assert_eq!(
        o.to_string(),
        "a 1514-byte frame to 10.1.1.2:4789 makes a 1550-byte IPv4 packet, over the \
         underlay's MTU of 1500 on the way there: not sent, and counted as oversized \
         (`ipn status`). Set the MTU of the network's interfaces (TAPs, VMs) to 1450 at \
         most (the underlay's 1500 less 50 for VXLAN over IPv4), or raise the \
         underlay's MTU to 1550"
    );
    let v6 = Oversized {
        to: "[fd00::2]:4789".parse().unwrap(),
        ..o
    };
    assert_eq!(v6.inner_mtu(), Some(1430));
    assert!(v6.to_string().contains("1570-byte IPv6 packet"), "{v6}");
}

fn tagged(dst: [u8; 6], src: [u8; 6], vid: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(dst, src, payload);
    f.splice(12..12, Tci::for_vlan(vid).to_bytes());
    f
}

#[test]
fn addresses_are_learned_per_vlan() {
    let (mut a, mut b) = pair(8);
    let mac_b = [2, 0, 0, 0, 0, 0xb];
    let mut buf = vec![0u8; 65536];
    send_now(&mut b, &tagged([0xff; 6], mac_b, 10, b"arp in 10"));
    let n = recv_wait(&mut a, &mut buf).unwrap();
    assert_eq!(&buf[12..16], &Tci::for_vlan(10).to_bytes(), "tag kept");
    assert_eq!(n, 14 + 4 + 9);
    let decoy = UdpSocket::bind("127.0.0.1:0").unwrap();
    decoy.set_nonblocking(true).unwrap();
    a.shared.flood.push(decoy.local_addr().unwrap());
    // Learned in VLAN 10: unicast there goes to b alone...
    send_now(
        &mut a,
        &tagged(mac_b, [2, 0, 0, 0, 0, 0xa], 10, b"to b in 10"),
    );
    recv_wait(&mut b, &mut buf).expect("unicast reaches b");
    assert_eq!(a.stats().unicast, 1);
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        decoy.recv_from(&mut buf).is_err(),
        "decoy got VLAN 10's unicast"
    );
    // ...while the same address in VLAN 20, or untagged, is unknown.
    for f in [
        tagged(mac_b, [2, 0, 0, 0, 0, 0xa], 20, b"to b in 20"),
        frame(mac_b, [2, 0, 0, 0, 0, 0xa], b"untagged"),
    ] {
        send_now(&mut a, &f);
        std::thread::sleep(Duration::from_millis(50));
        assert!(decoy.recv_from(&mut buf).is_ok(), "not flooded: {f:?}");
    }
    assert_eq!(a.stats().unicast, 1);
}

/// Frames each way in the split test.
const EACH_WAY: u32 = 2000;
/// Frames a sender may be ahead of its receiver: well within a loopback
/// socket's buffer, so that a receiver not scheduled for a while loses
/// nothing.
const AHEAD: u32 = 64;

fn numbered(src: [u8; 6], seq: u32) -> Vec<u8> {
    frame([0xff; 6], src, &seq.to_le_bytes())
}

/// Waits until `counter` is within [`AHEAD`] of `seq`, doing `meanwhile`.
fn keep_within(counter: &AtomicU32, seq: u32, mut meanwhile: impl FnMut()) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while counter.load(Ordering::Relaxed) + AHEAD < seq {
        assert!(
            Instant::now() < deadline,
            "the receiver stalled at {counter:?} of {seq}"
        );
        meanwhile();
        std::thread::sleep(Duration::from_micros(100));
    }
}

#[test]
fn a_split_endpoint_sends_on_one_thread_and_receives_on_another() {
    let (mut a, mut b) = pair(11);
    let (mac_a, mac_b) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
    let (got_by_a, got_by_b) = (AtomicU32::new(0), AtomicU32::new(0));
    let (mut sender, mut receiver) = a.split();
    std::thread::scope(|scope| {
        let sending = scope.spawn(|| {
            for seq in 0..EACH_WAY {
                keep_within(&got_by_b, seq, || {});
                LinkSender::send(&mut sender, &numbered(mac_a, seq)).unwrap();
                LinkSender::flush(&mut sender).unwrap();
            }
            sender
        });
        let receiving = scope.spawn(|| {
            let mut buf = vec![0u8; 65536];
            let deadline = Instant::now() + Duration::from_secs(20);
            while got_by_a.load(Ordering::Relaxed) < EACH_WAY && Instant::now() < deadline {
                match LinkReceiver::recv(&mut receiver, &mut buf).unwrap() {
                    Some(n) => {
                        assert_eq!((n, &buf[6..12]), (18, &mac_b[..]), "a frame from b");
                        got_by_a.fetch_add(1, Ordering::Relaxed);
                    }
                    None => std::thread::sleep(Duration::from_micros(100)),
                }
            }
            receiver.post();
        });
        // b, whole, on this thread: sends its frames and takes a's.
        let mut buf = vec![0u8; 65536];
        let mut drain = |b: &mut Vxlan| {
            while let Some(n) = b.recv(&mut buf).unwrap() {
                assert_eq!((n, &buf[6..12]), (18, &mac_a[..]), "a frame from a");
                got_by_b.fetch_add(1, Ordering::Relaxed);
            }
        };
        for seq in 0..EACH_WAY {
            keep_within(&got_by_a, seq, || drain(&mut b));
            send_now(&mut b, &numbered(mac_b, seq));
            drain(&mut b);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while got_by_b.load(Ordering::Relaxed) < EACH_WAY && Instant::now() < deadline {
            drain(&mut b);
            std::thread::sleep(Duration::from_micros(100));
        }
        let sender = sending.join().unwrap();
        receiving.join().unwrap();
        // The sending half reports both directions: its own counts, and
        // the receiving half's as posted.
        let to_b = &sender.remotes()[0];
        assert_eq!(to_b.stats.tx_datagrams, u64::from(EACH_WAY));
        assert_eq!(to_b.stats.rx_datagrams, u64::from(EACH_WAY));
        assert_eq!(
            to_b.addresses,
            vec![(None, mac_b)],
            "learned on the other thread"
        );
    });
    let both = (got_by_a.into_inner(), got_by_b.into_inner());
    assert_eq!(both, (EACH_WAY, EACH_WAY), "frames received by a and by b");
    let s = a.stats();
    assert_eq!(
        (s.sent, s.received),
        (u64::from(EACH_WAY), u64::from(EACH_WAY))
    );
}
