//! `ipn vxlan` against the Linux kernel's vxlan, for real: two network
//! namespaces are two hosts joined by a veth pair; host B has a kernel
//! vxlan device, host A runs `ipn vxlan`, and an ipn port (a small ARP and
//! ICMP echo responder in this test) answers B's pings through the tunnel.
//!
//! Needs root (namespaces, veth, vxlan), `ip`, `ping` and `bash`. A test
//! that cannot run fails, saying why; it never passes by skipping.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{must, ping, ping_fails, run, stderr, stdout, Attached, Net, Paused, StalledNet};
use ipn::{JoinOptions, Port, RecvError};
use ipn_test_support::checksum::internet_checksum;
use ipn_test_support::netns::{add_address, link_up, must_in};
use ipn_test_support::{require_root, Lab};
use nix::sys::signal::Signal;

/// The reply to an ARP request for `ip`, or to an ICMP echo request to
/// `ip`, as host `mac`; `None` for every other frame.
fn answer(frame: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Option<Vec<u8>> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let body = &frame[14..];
    let mut reply = Vec::with_capacity(frame.len());
    reply.extend_from_slice(&frame[6..12]); // to the sender
    reply.extend_from_slice(&mac);
    reply.extend_from_slice(&frame[12..14]);
    match ethertype {
        0x0806 => {
            // ARP: Ethernet/IPv4 request for `ip`.
            if body.len() < 28 || body[..8] != [0, 1, 8, 0, 6, 4, 0, 1] || body[24..28] != ip {
                return None;
            }
            reply.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
            reply.extend_from_slice(&mac);
            reply.extend_from_slice(&ip);
            reply.extend_from_slice(&body[8..18]); // requester's MAC and IP
            Some(reply)
        }
        0x0800 => {
            let ihl = usize::from(*body.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*body.get(2)?, *body.get(3)?]));
            if body[0] >> 4 != 4 || ihl < 20 || total < ihl + 8 || total > body.len() {
                return None;
            }
            if body[9] != 1 || body[16..20] != ip || body[ihl] != 8 {
                return None; // not ICMP echo request to us
            }
            let mut ip_packet = body[..total].to_vec();
            ip_packet.copy_within(12..16, 16); // destination := source
            ip_packet[12..16].copy_from_slice(&ip);
            ip_packet[8] = 64; // TTL
            ip_packet[10..12].fill(0);
            let sum = internet_checksum(&[&ip_packet[..ihl]]);
            ip_packet[10..12].copy_from_slice(&sum.to_be_bytes());
            let icmp = &mut ip_packet[ihl..];
            icmp[0] = 0; // echo reply
            icmp[2..4].fill(0);
            let sum = internet_checksum(&[icmp]);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            reply.extend_from_slice(&ip_packet);
            Some(reply)
        }
        _ => None,
    }
}

/// A port on `path` that answers ARP and ping for `ip` until dropped.
struct Responder {
    stop: Arc<AtomicBool>,
    replies: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(path: &str, mac: [u8; 6], ip: [u8; 4]) -> Responder {
        let mut port = Port::join(path, &JoinOptions::described("test responder")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), replies.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                match port.recv_timeout(&mut buf, Duration::from_millis(100)) {
                    Ok(len) => {
                        if let Some(reply) = answer(&buf[..len], mac, ip) {
                            // Counted before it leaves: once the pinger has
                            // its reply, the count must already show it.
                            r.fetch_add(1, Ordering::Relaxed);
                            port.send(&reply).unwrap();
                        }
                    }
                    Err(RecvError::TimedOut | RecvError::WouldBlock) => {}
                    Err(e) => panic!("responder: {e}"),
                }
            }
        });
        Responder {
            stop,
            replies,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts `ipn vxlan ARGS` in namespace `ns`; returns once it printed its
/// start line.
fn start_vxlan(ns: &str, args: &[&str]) -> Attached {
    let mut all = vec!["vxlan"];
    all.extend_from_slice(args);
    Attached::start_in(ns, &all)
}

/// Sends SIGINT, expects exit status 130 within 5 s, returns the summary line.
fn interrupt(vxlan: Attached) -> String {
    let (status, said) = vxlan.signal_and_wait(Signal::SIGINT, Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "status {status}; stderr: {said}");
    summary_line(&said)
}

/// [`interrupt`], after which the start and summary lines are printed and
/// the summary must say that nothing was too big or failed to send.
fn interrupt_without_errors(vxlan: Attached) -> String {
    let start = vxlan.joined.clone();
    let summary = interrupt(vxlan);
    eprintln!("{start}\n{summary}");
    assert!(
        summary.contains("(0 over the underlay's MTU, 0 send errors)"),
        "{summary}"
    );
    summary
}

/// The summary line `ipn vxlan` prints when it stops.
fn summary_line(said: &str) -> String {
    said.lines()
        .find(|l| l.contains("frames in from remote VTEPs"))
        .unwrap_or_else(|| panic!("no summary line in {said:?}"))
        .to_string()
}

/// Two hosts: A (10.220.0.1) and B (10.220.0.2) on a veth pair.
fn two_hosts(tag: &str) -> (Lab, String, String) {
    require_root(
        "the vxlan tests create network namespaces and kernel vxlan devices",
        &["ip", "ping", "bash"],
    );
    let mut lab = Lab::default();
    let a = lab.netns(&format!("ipnvx{tag}A"));
    let b = lab.netns(&format!("ipnvx{tag}B"));
    must(
        "ip",
        &[
            "link", "add", "vethA", "netns", &a, "type", "veth", "peer", "name", "vethB", "netns",
            &b,
        ],
    );
    for (n, dev, addr) in [
        (&a, "vethA", "10.220.0.1/24"),
        (&b, "vethB", "10.220.0.2/24"),
    ] {
        add_address(n, dev, addr);
        link_up(n, dev);
    }
    (lab, a, b)
}

/// Sends `times` UDP datagrams made of `bytes` (printf escapes) from `ns`
/// to port 4789 of `to`, in one process.
fn send_udp(ns: &str, to: &str, bytes: &str, times: u32) {
    let script = format!("for i in $(seq {times}); do printf '{bytes}' >/dev/udp/{to}/4789; done");
    must_in(ns, "bash", &["-c", &script]);
}

/// `ipn vxlan PATH EXTRA` on host A (`ns`): VNI 42, unicast to host B.
fn vxlan_to_b(ns: &str, path: &str, extra: &[&str]) -> Attached {
    let mut args = vec![
        path,
        "--vni",
        "42",
        "--remote",
        "10.220.0.2",
        "--local",
        "10.220.0.1",
    ];
    args.extend_from_slice(extra);
    start_vxlan(ns, &args)
}

/// Host A's side of a test with the kernel vxlan host B: the network
/// `name`, on it a responder for 10.221.0.1 (the address B pings), and
/// `ipn vxlan` to B.
fn responding_network(a: &str, name: &str) -> (Net, Responder, Attached) {
    let net = Net::created(name, &[]);
    let responder = Responder::start(net.p(), [2, 0, 0, 0xee, 0, 1], [10, 221, 0, 1]);
    let vxlan = vxlan_to_b(a, net.p(), &[]);
    (net, responder, vxlan)
}

/// A kernel vxlan device `vx0` in `ns`: VNI 42, `how` (`ip link add ...
/// type vxlan id 42 HOW`), address `addr`, up.
fn vxlan_device(ns: &str, how: &[&str], addr: &str) {
    let mut args = vec!["-n", ns, "link", "add", "vx0", "type", "vxlan", "id", "42"];
    args.extend_from_slice(how);
    must("ip", &args);
    add_address(ns, "vx0", addr);
    link_up(ns, "vx0");
}

/// Host B's kernel vxlan device `vx0`: VNI 42, unicast to host A on the
/// IANA port, address 10.221.0.2/24, up.
fn kernel_vxlan_device(b: &str) {
    vxlan_device(
        b,
        &[
            "remote",
            "10.220.0.1",
            "local",
            "10.220.0.2",
            "dstport",
            "4789",
            "dev",
            "vethB",
        ],
        "10.221.0.2/24",
    );
}

/// `ipn tap PATH --name NAME --up` in namespace `ns`, the TAP given the
/// MTU `mtu` if any and the address `addr`.
fn tap_host(ns: &str, path: &str, name: &str, mtu: Option<&str>, addr: &str) -> Attached {
    let tap = Attached::start_in(ns, &["tap", path, "--name", name, "--up"]);
    assert!(
        tap.joined.contains(name),
        "ipn tap did not start: {}",
        tap.joined
    );
    if let Some(mtu) = mtu {
        must("ip", &["-n", ns, "link", "set", name, "mtu", mtu]);
    }
    add_address(ns, name, addr);
    tap
}

/// iperf3 from `ns` to `server` (`-R`: the other way), at most 200 Mbit/s
/// for 2 s: the bytes received.
fn iperf_bytes(ns: &str, server: &str, reverse: bool) -> u64 {
    let mut args = vec!["-c", server, "-t", "2", "-b", "200M", "-J"];
    if reverse {
        args.push("-R");
    }
    let report: serde_json::Value = serde_json::from_str(&must_in(ns, "iperf3", &args)).unwrap();
    report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0)
}

#[test]
fn kernel_vxlan_host_pings_a_port_of_an_ipn_network_through_ipn_vxlan() {
    let (_lab, a, b) = two_hosts("k");
    // Host B: a kernel vxlan device, VNI 42, to host A on the IANA port.
    kernel_vxlan_device(&b);

    // Host A: an ipn network with a responder for 10.221.0.1, and ipn vxlan.
    let (_net, responder, vxlan) = responding_network(&a, "kernel");
    assert!(
        vxlan.joined.contains("vxlan vni 42 <-> 10.220.0.2:4789"),
        "{}",
        vxlan.joined
    );

    // From the kernel vxlan host.
    ping(&b, &["-c", "3", "-W", "2", "10.221.0.1"]);
    assert!(responder.replies.load(Ordering::Relaxed) >= 4); // ARP + 3 echoes

    // Bad input, from host B to ipn vxlan's port: another VNI (43) with a
    // well-formed frame, the I flag missing, and garbage.
    let frame = r"\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x09\x88\xb5hello";
    send_udp(
        &b,
        "10.220.0.1",
        &format!(r"\x08\x00\x00\x00\x00\x00\x2b\x00{frame}"),
        1,
    );
    send_udp(
        &b,
        "10.220.0.1",
        &format!(r"\x00\x00\x00\x00\x00\x00\x2a\x00{frame}"),
        1,
    );
    send_udp(&b, "10.220.0.1", "garbage", 1);
    // Still working after the bad datagrams.
    ping(&b, &["-c", "2", "-W", "2", "10.221.0.1"]);

    let summary = interrupt_without_errors(vxlan);
    assert!(summary.contains("2 malformed datagrams"), "{summary}");
    assert!(summary.contains("1 for another VNI"), "{summary}");
    drop(responder);
}

#[test]
fn kernel_vxlan_on_a_multicast_group_pings_through_ipn_vxlan_joined_to_the_group() {
    let (_lab, a, b) = two_hosts("g");
    vxlan_device(
        &b,
        &["group", "239.1.1.42", "dev", "vethB", "dstport", "4789"],
        "10.221.0.2/24",
    );

    let net = Net::created("group", &[]);
    let responder = Responder::start(net.p(), [2, 0, 0, 0xee, 0, 1], [10, 221, 0, 1]);
    let vxlan = start_vxlan(
        &a,
        &[
            net.p(),
            "--vni",
            "42",
            "--group",
            "239.1.1.42",
            "--dev",
            "vethA",
            // Every reply goes to the group: the kernel must take it there.
            "--no-learning",
        ],
    );
    assert!(
        vxlan
            .joined
            .contains("vxlan vni 42 <-> group 239.1.1.42:4789 on vethA"),
        "{}",
        vxlan.joined
    );
    // Over the multicast group.
    ping(&b, &["-c", "3", "-W", "2", "10.221.0.1"]);
    // Counted for the group (sent) and for host B, a VTEP heard on it
    // (received; nothing learned behind it with --no-learning).
    let port = vxlan_counters(&net, "the group and the VTEP heard on it", |v| {
        // Published every second: wait for the three echoes each way.
        v["remotes"].as_array().is_some_and(|r| {
            r.len() == 2
                && r[0]["tx_datagrams"].as_u64() >= Some(3)
                && r[1]["rx_datagrams"].as_u64() >= Some(3)
        })
    });
    let remotes = port["vxlan"]["remotes"].as_array().unwrap();
    assert_eq!(remotes[0]["remote"], "239.1.1.42:4789", "{remotes:#?}");
    assert_eq!(remotes[0]["kind"], "group");
    assert!(
        remotes[0]["tx_datagrams"].as_u64() >= Some(3),
        "{remotes:#?}"
    );
    assert_eq!(remotes[1]["remote"], "10.220.0.2:4789", "{remotes:#?}");
    assert_eq!(remotes[1]["kind"], "learned");
    assert!(
        remotes[1]["rx_datagrams"].as_u64() >= Some(3),
        "{remotes:#?}"
    );
    assert_eq!(remotes[1]["tx_datagrams"], 0, "{remotes:#?}");
    let summary = interrupt_without_errors(vxlan);
    assert!(summary.contains(" 0 unicast"), "{summary}");
    drop(responder);
}

/// Kernel to kernel through ipn: host B's kernel vxlan device, ipn vxlan
/// on host A, the ipn network, and `ipn tap` with its TAP in host C.
#[test]
fn kernel_vxlan_host_and_a_tap_host_ping_each_other_through_an_ipn_network() {
    let (mut lab, a, b) = two_hosts("t");
    let c = lab.netns("ipnvxtC");
    kernel_vxlan_device(&b);

    let net = Net::created("tap", &[]);
    let _tap = tap_host(&c, net.p(), "tapC", None, "10.221.0.1/24");

    let vxlan = vxlan_to_b(&a, net.p(), &[]);
    for (from, to, size) in [
        (&b, "10.221.0.1", "56"),
        (&c, "10.221.0.2", "56"),
        // 1428-byte IP packets: the kernel vxlan's whole MTU (1500 - 50 - 22
        // spare), in 1478-byte outer packets over the 1500-byte veth.
        (&b, "10.221.0.1", "1400"),
    ] {
        ping(from, &["-c", "2", "-W", "2", "-s", size, "-M", "do", to]);
    }
    interrupt_without_errors(vxlan);
}

#[test]
fn sigterm_stops_ipn_vxlan_within_a_second_while_it_waits_on_a_paused_lossless_reader() {
    let (_lab, a, b) = two_hosts("s");
    let stalled = StalledNet::new("stalled-vxlan");
    let vxlan = vxlan_to_b(&a, stalled.p(), &[]);
    // Well-formed VXLAN datagrams (VNI 42) from host B, each a frame for
    // the network.
    let frame = r"\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x09\x88\xb5hello";
    send_udp(
        &b,
        "10.220.0.1",
        &format!(r"\x08\x00\x00\x00\x00\x00\x2a\x00{frame}"),
        100,
    );
    stalled.wait_for_blocked_sender("vxlan vni 42");

    let (status, said) = vxlan.signal_and_wait(Signal::SIGTERM, Duration::from_secs(1));
    assert_eq!(status.code(), Some(143), "{said}");
    let summary = summary_line(&said);
    assert!(
        summary.contains(&format!(
            "ipn: vxlan vni 42 <-> 10.220.0.2:4789: {} frames in from remote VTEPs",
            StalledNet::RING
        )),
        "{summary}"
    );
    stalled.assert_only_the_reader_is_left();
}

/// The number before `what` in a summary line ("... 12 TCP segments
/// joined ...").
fn count_before(summary: &str, what: &str) -> u64 {
    let at = summary
        .find(what)
        .unwrap_or_else(|| panic!("no {what:?} in {summary}"));
    summary[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no count before {what:?} in {summary}"))
}

/// TCP both ways between a kernel vxlan host (B) and a TAP host (C) whose
/// network `ipn vxlan` (on A) tunnels, with offloads (UDP GSO out, GRO
/// and TCP segments joined in) and without (`--no-offload`, a datagram
/// per system call). What is on the underlay is checked with tcpdump:
/// plain RFC 7348 with right checksums inside and out, no datagram over
/// the underlay's MTU, no IP fragment.
#[test]
fn tcp_crosses_both_ways_as_clean_wire_segments_with_and_without_offloads() {
    require_root("namespaces, TAP, vxlan", &["iperf3", "tcpdump", "ethtool"]);
    for offload in [true, false] {
        let (mut lab, a, b) = two_hosts(if offload { "o" } else { "n" });
        let c = lab.netns(&format!("ipnvx{}C", u8::from(offload)));
        kernel_vxlan_device(&b);
        // Over a veth there is no NIC to fill in the kernel's inner
        // checksums.
        must_in(&b, "ethtool", &["-K", "vx0", "tx", "off"]);
        // And on the underlay, so that the outer UDP checksums
        // are computed before the capture sees them (with offload they are
        // left to a NIC, and a veth capture shows them unfinished).
        must_in(&a, "ethtool", &["-K", "vethA", "tx", "off"]);
        must_in(&b, "ethtool", &["-K", "vethB", "tx", "off"]);
        let net = Net::created(
            if offload { "tcp-o" } else { "tcp-n" },
            &["--ring-bytes", "4M"],
        );
        let _tap = tap_host(&c, net.p(), "tapC", Some("1450"), "10.221.0.1/24");
        let no_offload: &[&str] = if offload { &[] } else { &["--no-offload"] };
        let vxlan = vxlan_to_b(&a, net.p(), no_offload);
        ping(&b, &["-c", "2", "-W", "2", "10.221.0.1"]);
        let capture = net.file("underlay.pcap");
        let mut tcpdump = std::process::Command::new("ip")
            .args([
                "netns", "exec", &b, "tcpdump", "-i", "vethB", "-s", "0", "-U", "-w",
            ])
            .arg(&capture)
            .args(["udp", "port", "4789"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        lab.spawn_in(&c, "iperf3", &["-s"]);
        std::thread::sleep(Duration::from_millis(300));
        for reverse in [false, true] {
            let bytes = iperf_bytes(&b, "10.221.0.1", reverse);
            eprintln!("offload {offload}, reverse {reverse}: {bytes} bytes");
            assert!(bytes > 10_000_000, "TCP through the tunnel: {bytes} bytes");
        }
        let summary = interrupt(vxlan);
        eprintln!("{summary}");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(tcpdump.id() as i32),
            Signal::SIGINT,
        );
        let _ = tcpdump.wait();
        let sent = count_before(&summary, "datagrams sent");
        let calls = count_before(&summary, "system calls");
        let joined = count_before(&summary, "TCP segments joined");
        if offload {
            assert!(
                calls * 4 < sent,
                "GSO: fewer system calls than datagrams: {summary}"
            );
            assert!(joined > 1000, "segments joined into TSO frames: {summary}");
        } else {
            assert_eq!(calls, sent, "a datagram per call: {summary}");
            assert_eq!(joined, 0, "{summary}");
        }
        let read = must(
            "tcpdump",
            &["-r", capture.to_str().unwrap(), "-n", "-vv", "--number"],
        );
        let lines: Vec<&str> = read.lines().collect();
        assert!(lines.len() > 1000, "captured {} lines", lines.len());
        for bad in [
            "incorrect",
            "bad udp cksum",
            "bad cksum",
            "frag ",
            "truncated",
        ] {
            if let Some(line) = lines.iter().find(|l| l.contains(bad)) {
                panic!("{bad:?} on the underlay: {line}");
            }
        }
        // Outer IPv4 lengths ("length N" right after the IP header fields).
        for line in lines.iter().filter(|l| l.contains("proto UDP")) {
            let len = line
                .split("length ")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0);
            assert!(len <= 1500, "a datagram over the underlay's MTU: {line}");
        }
    }
}

/// Three hosts on an IPv6 underlay (a bridge in a namespace of its own):
/// A and C each an ipn network with a TAP host and `ipn vxlan` to the two
/// others, B a kernel vxlan device flooding to both. Every pair pings,
/// TCP runs between the two ipn hosts both ways (GSO on one side, GRO and
/// joined segments on the other), and each endpoint learned where the
/// others' addresses are (unicast sent to one remote only).
#[test]
fn three_hosts_on_an_ipv6_underlay_two_ipn_one_kernel_learn_and_carry_tcp() {
    require_root("namespaces, TAP, vxlan", &["iperf3", "ethtool", "bridge"]);
    let mut lab = Lab::default();
    let u = lab.netns("ipnvx3U");
    must("ip", &["-n", &u, "link", "add", "br0", "type", "bridge"]);
    must("ip", &["-n", &u, "link", "set", "br0", "up"]);
    let hosts: Vec<String> = ["A", "B", "C"]
        .iter()
        .map(|h| lab.netns(&format!("ipnvx3{h}")))
        .collect();
    for (i, ns) in hosts.iter().enumerate() {
        let (inner, outer) = (format!("v{i}"), format!("u{i}"));
        must(
            "ip",
            &[
                "link", "add", &inner, "netns", ns, "type", "veth", "peer", "name", &outer,
                "netns", &u,
            ],
        );
        must(
            "ip",
            &["-n", &u, "link", "set", &outer, "master", "br0", "up"],
        );
        add_address(ns, &inner, &format!("fd00::{}/64", i + 1));
        link_up(ns, &inner);
    }
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);
    // B: the kernel's vxlan over IPv6, flooding to A and C.
    vxlan_device(
        b,
        &["local", "fd00::2", "dstport", "4789", "dev", "v1"],
        "10.222.0.2/24",
    );
    for dst in ["fd00::1", "fd00::3"] {
        must(
            "ip",
            &[
                "netns",
                "exec",
                b,
                "bridge",
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                "vx0",
                "dst",
                dst,
            ],
        );
    }
    must_in(b, "ethtool", &["-K", "vx0", "tx", "off"]);
    // A and C: an ipn network each, a TAP host, a tunnel to the others.
    let mut endpoints = Vec::new();
    let mut keep = Vec::new();
    let mut nets = Vec::new();
    for (ns, n, local, remotes) in [
        (a, "1", "fd00::1", ["fd00::2", "fd00::3"]),
        (c, "3", "fd00::3", ["fd00::1", "fd00::2"]),
    ] {
        let net = Net::created(&format!("three{n}"), &["--switch", "--ring-bytes", "4M"]);
        keep.push(tap_host(
            ns,
            net.p(),
            &format!("t{n}"),
            Some("1430"),
            &format!("10.222.0.{n}/24"),
        ));
        endpoints.push(start_vxlan(
            ns,
            &[
                net.p(),
                "--vni",
                "42",
                "--local",
                local,
                "--remote",
                remotes[0],
                "--remote",
                remotes[1],
            ],
        ));
        nets.push(net);
    }
    for (from, to) in [
        (a, "10.222.0.2"),
        (a, "10.222.0.3"),
        (b, "10.222.0.3"),
        (c, "10.222.0.1"),
    ] {
        ping(from, &["-c", "2", "-W", "3", to]);
    }
    lab.spawn_in(c, "iperf3", &["-s"]);
    std::thread::sleep(Duration::from_millis(400));
    for reverse in [false, true] {
        let bytes = iperf_bytes(a, "10.222.0.3", reverse);
        assert!(
            bytes > 10_000_000,
            "TCP A<->C, reverse {reverse}: {bytes} bytes"
        );
    }
    // Each endpoint counted both other hosts, and learned an address
    // behind each: the TAP host's of the other ipn network, vx0's of B.
    for (net, others) in nets
        .iter()
        .zip([["fd00::2", "fd00::3"], ["fd00::1", "fd00::2"]])
    {
        let port = vxlan_counters(net, "both remotes with an address learned", |v| {
            v["remotes"]
                .as_array()
                .is_some_and(|r| r.iter().all(|r| r["learned"].as_u64() >= Some(1)))
        });
        let remotes = port["vxlan"]["remotes"].as_array().unwrap();
        assert_eq!(remotes.len(), 2, "{remotes:#?}");
        for (r, ip) in remotes.iter().zip(others) {
            assert_eq!(r["remote"], format!("[{ip}]:4789"), "{r:#}");
            assert_eq!(r["path_mtu"], 1500, "{r:#}");
            assert!(r["tx_datagrams"].as_u64() > Some(0), "{r:#}");
            assert!(r["rx_datagrams"].as_u64() > Some(0), "{r:#}");
        }
    }
    for vxlan in endpoints {
        let summary = interrupt(vxlan);
        eprintln!("{summary}");
        assert!(count_before(&summary, "unicast") > 0, "learned: {summary}");
        assert!(
            count_before(&summary, "TCP segments joined") > 0,
            "{summary}"
        );
        assert!(
            summary.contains("(0 over the underlay's MTU, 0 send errors)"),
            "{summary}"
        );
    }
    drop(keep);
    drop(nets);
}

/// The port of `ipn vxlan` in `ipn status --json`, once its counters per
/// remote are published and `check` holds for them (its `vxlan` object).
#[track_caller]
fn vxlan_counters(
    net: &Net,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let find = |s: &serde_json::Value| {
        common::ports(s)
            .iter()
            .find(|p| {
                p["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("vxlan vni"))
            })
            .cloned()
    };
    net.wait_for(what, |s| find(s).is_some_and(|p| check(&p["vxlan"])));
    find(&net.status_json()).unwrap()
}

/// The MAC address of `dev` in namespace `ns`.
fn mac_of(ns: &str, dev: &str) -> String {
    let out = must("ip", &["-n", ns, "-br", "link", "show", dev]);
    out.split_whitespace().nth(2).unwrap().to_string()
}

/// `ipn status` shows what went to and came from the kernel vxlan host,
/// consistent with the pings, the bad datagrams it sent, and the address
/// learned behind it; the JSON has every field the help names; the file
/// goes when ipn vxlan stops.
#[test]
fn status_shows_counters_per_remote_consistent_with_what_crossed() {
    let (_lab, a, b) = two_hosts("c");
    kernel_vxlan_device(&b);
    let (net, responder, vxlan) = responding_network(&a, "counters");
    // Published at once: the remote is there before anything crossed.
    let port = vxlan_counters(&net, "counters of the idle endpoint", |v| {
        v["available"] == true && v["remotes"][0]["tx_datagrams"] == 0
    });
    let index = port["port"].as_u64().unwrap();
    assert!(net.path.join(format!("stats.{index}")).is_file());

    const PINGS: u64 = 5;
    ping(
        &b,
        &[
            "-c",
            &PINGS.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            "10.221.0.1",
        ],
    );
    let frame = r"\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x09\x88\xb5hello";
    send_udp(
        &b,
        "10.220.0.1",
        &format!(r"\x08\x00\x00\x00\x00\x00\x2b\x00{frame}"),
        1,
    );
    send_udp(&b, "10.220.0.1", "garbage", 2);
    let port = vxlan_counters(&net, "the pings and bad datagrams counted", |v| {
        let r = &v["remotes"][0];
        r["drops"]["bad_header"] == 2
            && r["drops"]["other_vni"] == 1
            && r["tx_datagrams"].as_u64() >= Some(PINGS)
    });
    let v = &port["vxlan"];
    eprintln!("{v:#}");
    assert_eq!(v["vni"], 42);
    assert_eq!(v["local"], "10.220.0.1:4789");
    assert!(v["age_ms"].as_u64().unwrap() < 5000, "{v:#}");
    let remotes = v["remotes"].as_array().unwrap();
    assert_eq!(remotes.len(), 1, "{v:#}");
    let r = &remotes[0];
    assert_eq!(r["remote"], "10.220.0.2:4789");
    assert_eq!(r["kind"], "remote");
    assert_eq!(r["path_mtu"], 1500);
    // Each echo and its reply is one datagram of a 98-byte frame (56
    // bytes of data) and its VXLAN header; besides, an ARP exchange or
    // two, and from B what vx0 says by itself (IPv6 neighbour discovery,
    // MLD), which the responder does not answer.
    let (tx, rx) = (
        r["tx_datagrams"].as_u64().unwrap(),
        r["rx_datagrams"].as_u64().unwrap(),
    );
    assert!((PINGS..PINGS + 4).contains(&tx), "{r:#}");
    assert!((PINGS..PINGS + 20).contains(&rx), "{r:#}");
    assert!(r["tx_bytes"].as_u64().unwrap() >= PINGS * (8 + 98), "{r:#}");
    assert!(r["rx_bytes"].as_u64().unwrap() >= PINGS * (8 + 98), "{r:#}");
    assert!(r["tx_bytes"].as_u64().unwrap() <= tx * (8 + 98), "{r:#}");
    assert_eq!(r["drops"]["oversized"], 0);
    assert_eq!(r["drops"]["send_error"], 0);
    // Learned behind it: vx0's address, and the bad datagrams' frame
    // source was not learned (they were dropped).
    let vx0 = mac_of(&b, "vx0");
    assert_eq!(
        r["addresses"],
        serde_json::json!([{"vlan": null, "mac": vx0}]),
        "{r:#}"
    );
    assert_eq!(r["learned"], 1);
    // The shape: every key, as the help says.
    let help = stdout(&run(&["status", "--help"]));
    for key in v
        .as_object()
        .unwrap()
        .keys()
        .chain(r.as_object().unwrap().keys())
    {
        assert!(
            help.contains(key.as_str()),
            "{key} missing from status --help"
        );
    }
    let mut keys: Vec<_> = r.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "addresses",
            "drops",
            "kind",
            "learned",
            "path_mtu",
            "remote",
            "rx_bytes",
            "rx_datagrams",
            "tx_bytes",
            "tx_datagrams"
        ]
    );
    // The table.
    let table = stdout(&run(&["status", net.p()]));
    eprintln!("{table}");
    assert!(
        table.contains(&format!("vxlan port {index}: vni 42, 10.220.0.1:4789")),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("10.220.0.2:4789"))
        .unwrap_or_else(|| panic!("no row for the remote: {table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1..3], ["remote", "1500"], "{row}");
    assert_eq!(cells.last(), Some(&"1"), "{row}");

    interrupt(vxlan);
    assert!(
        !net.path.join(format!("stats.{index}")).exists(),
        "the counters are removed when ipn vxlan stops"
    );
    drop(responder);
}

/// Underlay too small for the network's frames (a route of MTU 1400
/// from host A): replies over it are not sent, not fragmented; ipn vxlan
/// says so with the sizes and the MTU to set, and counts them for the
/// remote; smaller frames still cross.
#[test]
fn frames_too_big_for_the_underlay_are_counted_and_warned_about_not_fragmented() {
    let (_lab, a, b) = two_hosts("m");
    kernel_vxlan_device(&b);
    must(
        "ip",
        &[
            "-n",
            &a,
            "route",
            "add",
            "10.220.0.2/32",
            "dev",
            "vethA",
            "mtu",
            "1400",
        ],
    );
    let (net, responder, mut vxlan) = responding_network(&a, "oversized");
    ping(&b, &["-c", "2", "-W", "2", "10.221.0.1"]);
    // 1400 bytes of data: a 1442-byte frame each way. B's 1478-byte
    // packets fit its 1500-byte link; A's replies do not fit 1400.
    ping_fails(
        &b,
        &[
            "-c",
            "3",
            "-i",
            "0.3",
            "-W",
            "1",
            "-s",
            "1400",
            "10.221.0.1",
        ],
    );
    let warning = vxlan.wait_for("warning");
    eprintln!("{warning}");
    assert!(
        warning.contains(
            "a 1442-byte frame to 10.220.0.2:4789 makes a 1478-byte IPv4 packet, over the \
             underlay's MTU of 1400 on the way there: not sent, and counted as oversized"
        ) && warning.contains("to 1350 at most"),
        "{warning}"
    );
    let port = vxlan_counters(&net, "three oversized replies", |v| {
        v["remotes"][0]["drops"]["oversized"] == 3
    });
    let r = &port["vxlan"]["remotes"][0];
    assert_eq!(r["path_mtu"], 1400, "{r:#}");
    assert_eq!(r["drops"]["send_error"], 0, "{r:#}");
    // Frames that fit still cross.
    ping(&b, &["-c", "2", "-W", "2", "-s", "1300", "10.221.0.1"]);
    let summary = interrupt(vxlan);
    assert!(
        summary.contains("(3 over the underlay's MTU, 0 send errors)"),
        "{summary}"
    );
    assert_eq!(
        summary.matches("warning").count(),
        0,
        "the summary is not a warning: {summary}"
    );
    drop(responder);
}

/// What a member may put at `stats.N` while ipn vxlan is stopped (so it
/// does not replace it): a link to a secret, garbage with escape
/// sequences, a huge file, a FIFO, a directory, another pid's counters,
/// stale counters. `ipn status` (table and JSON) follows nothing, opens no
/// FIFO, reads no more than 1 MiB, panics not, lets no control character
/// through, and says the counters are unavailable and why. Resumed,
/// ipn vxlan replaces whatever is there; killed, its counters are not
/// shown.
#[test]
fn planted_counters_are_not_followed_trusted_or_shown_raw() {
    let (_lab, a, b) = two_hosts("h");
    kernel_vxlan_device(&b);
    let net = Net::created("hostile", &[]);
    let vxlan = start_vxlan(&a, &[net.p(), "--vni", "42", "--remote", "10.220.0.2"]);
    let port = vxlan_counters(&net, "counters", |v| v["available"] == true);
    let index = port["port"].as_u64().unwrap();
    let stats = net.path.join(format!("stats.{index}"));
    let secret = net.file("secret");
    std::fs::write(&secret, "SECRET\n").unwrap();
    let paused = Paused::stop(vxlan.pid());
    let valid: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    let mut other_pid = valid.clone();
    other_pid["pid"] = 1.into();
    let plant = |what: &str| {
        let _ = std::fs::remove_file(&stats);
        let _ = std::fs::remove_dir_all(&stats);
        match what {
            "link" => std::os::unix::fs::symlink(&secret, &stats).unwrap(),
            "garbage" => std::fs::write(&stats, r#"{"\u001b[2J\u202e": 1}"#).unwrap(),
            "huge" => std::fs::File::create(&stats)
                .unwrap()
                .set_len(2 << 20)
                .unwrap(),
            "fifo" => nix::unistd::mkfifo(&stats, nix::sys::stat::Mode::S_IRWXU).unwrap(),
            "directory" => std::fs::create_dir(&stats).unwrap(),
            "other pid" => std::fs::write(&stats, other_pid.to_string()).unwrap(),
            _ => unreachable!(),
        }
    };
    for (what, reason) in [
        (
            "link",
            "is a symbolic link, not the regular file a port publishes; not followed",
        ),
        ("garbage", "is not counters `ipn vxlan` writes"),
        (
            "huge",
            "is 2097152 bytes, more than the 1048576 a port publishes; not read",
        ),
        ("fifo", "is a FIFO"),
        ("directory", "is a directory"),
        ("other pid", "is stale: written by pid 1 for port"),
    ] {
        plant(what);
        let started = std::time::Instant::now();
        let json = run(&["status", net.p(), "--json"]);
        let table = run(&["status", net.p()]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: status hung"
        );
        for out in [&json, &table] {
            assert!(out.status.success(), "{what}: {}", stderr(out));
            let text = stdout(out);
            assert!(!text.contains("SECRET"), "{what}: {text}");
            assert!(
                !text
                    .chars()
                    .any(|c| c != '\n' && (c.is_control() || c == '\u{202e}')),
                "{what}: raw control characters: {text:?}"
            );
        }
        let status: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let v = &common::ports(&status)
            .iter()
            .find(|p| p["port"] == index)
            .unwrap()["vxlan"];
        assert_eq!(v["available"], false, "{what}: {v:#}");
        let said = v["reason"].as_str().unwrap();
        assert!(said.contains(reason), "{what}: {said}");
        let table = stdout(&table);
        assert!(
            table.contains(&format!(
                "vxlan port {index}: per-remote counters unavailable: "
            )) && table.contains(reason),
            "{what}: {table}"
        );
        if what == "garbage" {
            assert!(table.contains(r"\x1b[2J\u{202e}"), "{table}");
        }
    }
    // Its own counters, left unchanged for more than 5 s: stale.
    plant("directory");
    std::fs::remove_dir(&stats).unwrap();
    std::fs::write(&stats, valid.to_string()).unwrap();
    vxlan_counters(&net, "stale counters", |v| {
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("is stale: not updated for"))
    });
    // Resumed over a planted directory: replaced within a second or two.
    std::fs::remove_file(&stats).unwrap();
    plant("directory");
    std::fs::write(stats.join("inside"), "x").unwrap();
    drop(paused);
    vxlan_counters(&net, "counters published again", |v| v["available"] == true);
    assert!(stats.is_file());
    // Killed: the file stays, but the port is dead and nothing is shown.
    nix::sys::signal::kill(vxlan.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = vxlan.wait(Duration::from_secs(5));
    net.wait_for("the killed endpoint's port dead or gone", |s| {
        common::ports(s)
            .iter()
            .find(|p| p["port"] == index)
            .is_none_or(|p| p["state"] == "dead" && p["vxlan"].is_null())
    });
    assert!(stats.is_file(), "left by the killed process");
    // `ipn rm` knows the name for one of its own.
    let out = run(&["rm", net.p()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!net.path.exists());
}
