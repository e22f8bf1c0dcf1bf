//! `ipn tap` and `ipn grab`, for real: TAP interfaces and veth pairs in
//! network namespaces made for each test, pinging each other through an
//! ipn network.
//!
//! These tests need root (namespaces, TAPs, veths) and iproute2, ping and
//! iperf3; without them they fail, saying what is missing: they never skip.
//! Addresses are in 10.210.0.0/16 and 10.211.0.0/16, inside namespaces
//! the tests create; nothing leaves them. Every namespace, interface and
//! process is removed when a test ends, also when it fails.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    ipn, must, ping, ports, run, run_program, text, Attached, Net, StalledNet, BIN, LONG,
};
use ipn_test_support::netns::{ifname, must_in, static_neighbour};
use ipn_test_support::{require_root, Lab};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Root and the tools the tap/grab tests use, or a failure saying so.
fn require_root_and_tools() {
    require_root(
        "the tap/grab tests create network namespaces, TAP and veth interfaces",
        &["ip", "ping", "iperf3", "setpriv"],
    );
}

/// The interface's MTU as `ip -j` reports it in `ns`.
fn mtu_in(ns: &str, ifname: &str) -> u64 {
    let out = must("ip", &["-n", ns, "-j", "link", "show", ifname]);
    let json: Value = serde_json::from_str(&out).unwrap();
    json[0]["mtu"].as_u64().expect("mtu in ip -j output")
}

/// `N` from the summary's "N frames into the network".
fn frames_into_network(said: &str) -> u64 {
    let line = said
        .lines()
        .find(|l| l.contains(" left "))
        .unwrap_or_else(|| panic!("no summary line in {said:?}"));
    let head = &line[..line.find(" frames into the network").expect(line)];
    head.rsplit(' ').next().unwrap().parse().expect(line)
}

#[test]
fn two_namespaces_ping_each_other_through_taps_on_one_network() {
    require_root_and_tools();
    let net = Net::created("taps", &[]);
    let mut lab = Lab::default();
    let ns1 = lab.netns("ipn-tap1-");
    let ns2 = lab.netns("ipn-tap2-");
    let (a, b) = (ifname("ipta"), ifname("iptb"));

    let tap_a = Attached::start(&["tap", net.p(), "--name", &a]);
    let tap_b = Attached::start(&["tap", net.p(), "--name", &b]);
    // The TAPs keep working after moving: their fds stay with ipn.
    lab.place(&a, &ns1, "10.210.0.1/24");
    lab.place(&b, &ns2, "10.210.0.2/24");
    let status = net.status_json();
    let descriptions: Vec<&str> = ports(&status)
        .iter()
        .filter_map(|p| p["description"].as_str())
        .collect();
    assert!(
        descriptions.contains(&format!("tap {a}").as_str()),
        "{status:#}"
    );

    let said = ping(&ns1, &["-c", "3", "-i", "0.2", "-W", "2", "10.210.0.2"]);
    eprintln!("[tap] ping {ns1} -> {ns2} through ipn: {said}");
    assert!(said.contains("3 received"), "{said}");

    // Throughput: reported, not asserted.
    let bps = iperf_tcp(&mut lab, &ns1, &ns2, "10.210.0.2", &[]);
    eprintln!(
        "[tap] iperf3 TCP {ns1} -> {ns2} through ipn (two TAPs): {:.0} Mbit/s",
        bps / 1e6
    );
    assert!(bps > 0.0);

    for (tap, name) in [(tap_a, &a), (tap_b, &b)] {
        let (status, said) = tap.stop();
        assert_eq!(status.code(), Some(130), "{said}");
        assert!(said.contains(&format!("tap {name} left")), "{said}");
        assert!(frames_into_network(&said) > 0, "{said}");
    }
    // A TAP made by ipn goes with it, wherever it was.
    let gone = run_program("ip", &["-n", &ns1, "link", "show", &a]);
    assert!(!gone.status.success(), "{a} outlived ipn tap");
}

#[test]
fn tap_mtu_follows_a_jumbo_network() {
    require_root_and_tools();
    let net = Net::created("jumbo", &["--mtu", "9014"]);
    let mut lab = Lab::default();
    let ns1 = lab.netns("ipn-jmb1-");
    let ns2 = lab.netns("ipn-jmb2-");
    let (a, b) = (ifname("ipja"), ifname("ipjb"));
    let _tap_a = Attached::start(&["tap", net.p(), "--name", &a, "--up"]);
    let _tap_b = Attached::start(&["tap", net.p(), "--name", &b]);
    lab.place(&a, &ns1, "10.210.1.1/24");
    lab.place(&b, &ns2, "10.210.1.2/24");
    assert_eq!(mtu_in(&ns1, &a), 9000);
    assert_eq!(mtu_in(&ns2, &b), 9000);
    // 8972 bytes of ICMP payload + 28 of headers = 9000, not fragmented.
    let said = ping(
        &ns1,
        &[
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "8972",
            "10.210.1.2",
        ],
    );
    eprintln!("[tap] jumbo ping (9000-byte IP packets) through ipn: {said}");
}

#[test]
fn tap_attaches_to_a_persistent_tap_and_a_second_one_is_told_it_is_busy() {
    require_root_and_tools();
    let net = Net::created("persist", &[]);
    let mut lab = Lab::default();
    let name = ifname("ippt");
    must("ip", &["tuntap", "add", "mode", "tap", "name", &name]);
    lab.links.push(name.clone());
    let first = Attached::start(&["tap", net.p(), "--name", &name, "--up"]);
    let second = run(&["tap", net.p(), "--name", &name]);
    assert_eq!(second.status.code(), Some(1));
    let said = text(&second.stderr);
    assert!(said.contains(&name) && said.contains("busy"), "{said}");
    let (status, said) = first.stop();
    assert_eq!(status.code(), Some(130), "{said}");
    // Persistent: it outlives ipn tap.
    must("ip", &["link", "show", &name]);
}

#[test]
fn tap_deleted_under_ipn_tap_ends_it_with_a_clear_error() {
    require_root_and_tools();
    let net = Net::created("deleted", &[]);
    let name = ifname("ipdt");
    let tap = Attached::start(&["tap", net.p(), "--name", &name, "--up"]);
    must("ip", &["link", "del", &name]);
    let (status, said) = tap.wait(LONG);
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "ipn: tap {name}: the interface was deleted; left {}",
            net.p()
        )),
        "{said}"
    );
}

/// A veth pair `BASE_A`+pid – `BASE_B`+pid: the first end, in the host's
/// namespace, up, with no address and no IPv6 (it carries only what ipn
/// sends), for `ipn grab`; the second in `ns` with `addr`.
fn grabbed_veth(
    lab: &mut Lab,
    base_a: &str,
    base_b: &str,
    ns: &str,
    addr: &str,
) -> (String, String) {
    let (va, vb) = (ifname(base_a), ifname(base_b));
    lab.veth(&va, &vb);
    must(
        "sysctl",
        &["-q", "-w", &format!("net.ipv6.conf.{va}.disable_ipv6=1")],
    );
    must("ip", &["link", "set", &va, "up"]);
    lab.place(&vb, ns, addr);
    (va, vb)
}

/// `ipn grab` of a veth whose far end is in namespace G at `SUBNET.2/24`
/// and `ipn tap` with its TAP in namespace T at `SUBNET.1/24`, on one
/// network.
struct GrabAndTap {
    ns_g: String,
    ns_t: String,
    /// The grabbed end of the veth (host namespace) and the far end (in G).
    va: String,
    vb: String,
    grab: Attached,
    tap: Attached,
}

/// Sets up a [`GrabAndTap`]; `x` makes its interface names (`ipXa`,
/// `ipXb`, `ipXt`) and `name` its namespaces' unique in this test binary.
fn grab_and_tap(lab: &mut Lab, net: &Net, name: &str, x: &str, subnet: &str) -> GrabAndTap {
    let ns_g = lab.netns(&format!("ipn-{name}g-"));
    let ns_t = lab.netns(&format!("ipn-{name}t-"));
    let (va, vb) = grabbed_veth(
        lab,
        &format!("ip{x}a"),
        &format!("ip{x}b"),
        &ns_g,
        &format!("{subnet}.2/24"),
    );
    let tap_name = ifname(&format!("ip{x}t"));
    let grab = Attached::start(&["grab", net.p(), &va]);
    let tap = Attached::start(&["tap", net.p(), "--name", &tap_name]);
    lab.place(&tap_name, &ns_t, &format!("{subnet}.1/24"));
    GrabAndTap {
        ns_g,
        ns_t,
        va,
        vb,
        grab,
        tap,
    }
}

/// The promiscuity count of `ifname` (host namespace), from `ip -d -j`.
fn promiscuity(ifname: &str) -> u64 {
    let flags = must("ip", &["-d", "-j", "link", "show", ifname]);
    let flags: Value = serde_json::from_str(&flags).unwrap();
    flags[0]["promiscuity"]
        .as_u64()
        .unwrap_or_else(|| panic!("no promiscuity in {flags:#}"))
}

/// TCP (iperf3, `extra` arguments such as `-R`) from namespace `client`
/// to an iperf3 server in `server` at `ip`: the received bits per second.
/// Retried while the server is not listening yet; fails the test if no
/// run completes.
fn iperf_tcp(lab: &mut Lab, client: &str, server: &str, ip: &str, extra: &[&str]) -> f64 {
    // Not `-1`: a failed attempt must not take the server down.
    lab.spawn_in(server, "iperf3", &["-s", "-B", ip]);
    let mut last = String::new();
    for _ in 0..30 {
        let mut args = vec![
            "netns",
            "exec",
            client,
            "iperf3",
            "-c",
            ip,
            "-t",
            "2",
            "--connect-timeout",
            "1000",
            "-J",
        ];
        args.extend_from_slice(extra);
        let out = run_program("ip", &args);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(bps) = report["end"]["sum_received"]["bits_per_second"].as_f64() {
            if out.status.success() {
                return bps;
            }
        }
        last = format!("{}{}", text(&out.stdout), text(&out.stderr));
        std::thread::sleep(Duration::from_millis(200)); // server not listening yet
    }
    panic!("iperf3 {client} -> {ip} never completed a test: {last}")
}

/// A TAP with offloads hands the network 64 KiB GSO frames with checksums
/// left to complete; a grabbed veth hands it the same from its GRO. TCP
/// must cross both ways (a grab without headers got oversize frames and
/// wrong checksums, and TCP stalled).
#[test]
fn tcp_crosses_between_an_offloading_tap_and_a_grabbed_veth_both_ways() {
    require_root_and_tools();
    let net = Net::created("grab-tcp", &[]);
    let mut lab = Lab::default();
    // Bound, not `..`: the grab and the tap run until the test ends.
    let GrabAndTap {
        ns_g,
        ns_t,
        grab: _grab,
        tap: _tap,
        ..
    } = grab_and_tap(&mut lab, &net, "gtcp", "w", "10.212.0");
    let said = ping(&ns_t, &["-c", "2", "-i", "0.2", "-W", "2", "10.212.0.2"]);
    assert!(said.contains("2 received"), "{said}");
    let up = iperf_tcp(&mut lab, &ns_t, &ns_g, "10.212.0.2", &[]);
    let down = iperf_tcp(&mut lab, &ns_t, &ns_g, "10.212.0.2", &["-R"]);
    eprintln!(
        "[grab] TCP tap -> grab {:.0} Mbit/s, grab -> tap {:.0} Mbit/s",
        up / 1e6,
        down / 1e6
    );
    assert!(up > 0.0 && down > 0.0);
}

#[test]
fn grab_bridges_a_veth_to_a_tap_without_looping_its_own_frames_back() {
    require_root_and_tools();
    let net = Net::created("grab", &[]);
    let mut lab = Lab::default();
    let GrabAndTap {
        ns_g,
        ns_t,
        va,
        vb,
        grab,
        tap: tapper,
    } = grab_and_tap(&mut lab, &net, "grab", "v", "10.211.0");

    let said = ping(&ns_t, &["-c", "3", "-i", "0.2", "-W", "2", "10.211.0.2"]);
    eprintln!("[grab] ping TAP -> ipn -> grab -> veth: {said}");
    assert!(said.contains("3 received"), "{said}");

    // Quiet for a moment: a loop would keep the counters climbing.
    let before = net.status_json();
    std::thread::sleep(Duration::from_millis(500));
    let after = net.status_json();
    let total = |s: &Value| -> u64 {
        ports(s)
            .iter()
            .map(|p| p["tx_frames"].as_u64().unwrap())
            .sum()
    };
    assert!(total(&after) < 100, "frame storm? {after:#}");
    assert!(
        total(&after) - total(&before) < 10,
        "frames still flowing after the ping: {before:#} {after:#}"
    );

    // The kernel never shows a packet socket the frames it sent itself,
    // but it does show it every other frame leaving the interface
    // (PACKET_OUTGOING): the host's, or another grab's. Those must not
    // enter the network. A second network grabs the same veth and sends
    // five frames out of it.
    let other = Net::created("grab-other", &[]);
    let grab2 = Attached::start(&["grab", other.p(), &va]);
    let mut publisher = ipn()
        .args(["pub", other.p()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ipn pub");
    {
        use std::io::Write;
        // "ffffff...": to 66:66:66:66:66:66 (multicast), EtherType
        // 0x6666: nsG drops them.
        let frame = "f".repeat(60);
        let mut stdin = publisher.stdin.take().unwrap();
        for _ in 0..5 {
            writeln!(stdin, "{frame}").unwrap();
        }
    }
    let out = publisher.wait_with_output().unwrap();
    assert!(out.status.success(), "ipn pub: {}", text(&out.stderr));
    let deadline = Instant::now() + LONG;
    while other.status_json()["ports"][0]["rx_frames"].as_u64() != Some(5) {
        assert!(Instant::now() < deadline, "grab 2 never got the 5 frames");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (status, said2) = grab2.stop();
    assert_eq!(status.code(), Some(130), "{said2}");
    assert!(said2.contains("5 out of it"), "{said2}");

    let (status, said) = grab.stop();
    assert_eq!(status.code(), Some(130), "{said}");
    // Every frame grab put into the network came from the wire: at most
    // what the far end of the veth sent.
    let stats = must("ip", &["-n", &ns_g, "-s", "-j", "link", "show", &vb]);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let vb_sent = stats[0]["stats64"]["tx"]["packets"].as_u64().unwrap();
    let into_network = frames_into_network(&said);
    eprintln!("[grab] {vb} sent {vb_sent} frames; grab took {into_network} into the network");
    assert!(into_network >= 3, "{said}");
    assert!(into_network <= vb_sent, "{said}");
    let skipped: u64 = said
        .lines()
        .find(|l| l.contains("seen leaving the interface were not taken"))
        .and_then(|l| l.split(": ").nth(2))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of outgoing frames skipped: {said}"));
    eprintln!("[grab] outgoing frames seen and skipped: {skipped}");
    assert!(skipped >= 5, "{said}");
    let (status, said) = tapper.stop();
    assert_eq!(status.code(), Some(130), "{said}");
}

#[test]
fn grab_of_an_interface_deleted_under_it_ends_with_a_clear_error() {
    require_root_and_tools();
    let net = Net::created("grabdel", &[]);
    // Up when deleted: the socket says ENETDOWN once. Down when deleted:
    // it says nothing, and grab must notice by itself.
    for up in [true, false] {
        let mut lab = Lab::default();
        let (va, vb) = (ifname("ipxa"), ifname("ipxb"));
        lab.veth(&va, &vb);
        if up {
            must("ip", &["link", "set", &va, "up"]);
            must("ip", &["link", "set", &vb, "up"]);
        }
        let grab = Attached::start(&["grab", net.p(), &va]);
        // A moment of bridging first, so the deletion lands mid-run.
        std::thread::sleep(Duration::from_millis(300));
        let deleted = Instant::now();
        must("ip", &["link", "del", &va]);
        let (status, said) = grab.wait(LONG);
        let took = deleted.elapsed();
        eprintln!(
            "[grab] {va} deleted while {}: grab ended after {took:?}",
            if up { "up" } else { "down" }
        );
        assert_eq!(status.code(), Some(1), "{said}");
        assert!(
            said.contains(&format!(
                "ipn: grab {va}: the interface was deleted; left {}",
                net.p()
            )),
            "{said}"
        );
        // A generous cap: the end must come from noticing the deletion,
        // not from the wait above giving up.
        assert!(took < Duration::from_secs(8), "took {took:?}: {said}");
    }
}

#[test]
fn grab_with_promisc_starts_and_stops() {
    require_root_and_tools();
    let net = Net::created("promisc", &[]);
    let mut lab = Lab::default();
    let (va, vb) = (ifname("ippa"), ifname("ippb"));
    lab.veth(&va, &vb);
    let grab = Attached::start(&["grab", net.p(), &va, "--promisc"]);
    assert!(promiscuity(&va) >= 1);
    let (status, said) = grab.stop();
    assert_eq!(status.code(), Some(130), "{said}");
    // The kernel took the membership back with the socket.
    assert_eq!(promiscuity(&va), 0);
}

#[test]
fn tap_on_a_missing_network_is_an_error_naming_it() {
    require_root_and_tools(); // else opening the TAP fails first
    let out = run(&["tap", "/nonexistent/ipn-net", "--name", "ipnmiss0"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains("/nonexistent/ipn-net: no such network; create it with"),
        "{said}"
    );
}

#[test]
fn grab_of_a_missing_interface_is_an_error_naming_it() {
    let net = Net::created("nosuchif", &[]);
    let out = run(&["grab", net.p(), "nosuchif0"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains("grab nosuchif0: no such network interface"),
        "{said}"
    );
    assert!(net.ports().is_empty());
}

#[test]
fn tap_with_a_name_too_long_says_so() {
    let net = Net::created("longname", &[]);
    let out = run(&["tap", net.p(), "--name", "averyverylongname"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains("averyverylongname") && said.contains("at most 15"),
        "{said}"
    );
}

#[test]
fn tap_without_cap_net_admin_says_what_it_needs() {
    require_root_and_tools();
    let net = Net::created("unpriv", &["--mode", "0777"]);
    let out = run_program(
        "setpriv",
        &[
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            BIN,
            "tap",
            net.p(),
            "--name",
            "ipnnobody0",
        ],
    );
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("tap ipnnobody0: permission denied") && said.contains("CAP_NET_ADMIN"),
        "{said}"
    );
}

/// Sends `count` UDP datagrams from namespace `ns` to `to`, port 9
/// (discard), in one process; datagrams the interface cannot queue are
/// dropped, not waited for.
fn udp_flood(ns: &str, to: &str, count: u32) {
    let script = format!("for i in $(seq {count}); do echo x >/dev/udp/{to}/9; done");
    must_in(ns, "bash", &["-c", &script]);
}

/// `attached` (described `what`) has sent [`StalledNet::RING`] frames into
/// `stalled` and waits in a lossless send: SIGTERM ends it within a
/// second, with status 143 and its summary, leaving only the reader.
#[track_caller]
fn sigterm_stops_it_within_a_second(attached: Attached, stalled: &StalledNet, what: &str) {
    stalled.wait_for_blocked_sender(what);
    let (status, said) = attached.signal_and_wait(Signal::SIGTERM, Duration::from_secs(1));
    assert_eq!(status.code(), Some(143), "{said}");
    assert!(
        said.contains(&format!(
            "ipn: {what} left {}: {} frames into the network",
            stalled.p(),
            StalledNet::RING
        )),
        "{said}"
    );
    stalled.assert_only_the_reader_is_left();
}

#[test]
fn sigterm_stops_tap_within_a_second_while_it_waits_on_a_paused_lossless_reader() {
    require_root_and_tools();
    let stalled = StalledNet::new("stalled-tap");
    let mut lab = Lab::default();
    let ns = lab.netns("ipn-stall-");
    let name = ifname("ipst");
    let tap = Attached::start(&["tap", stalled.p(), "--name", &name]);
    lab.place(&name, &ns, "10.212.0.1/24");
    // Frames out of the TAP without waiting for ARP: to a made-up neighbour.
    static_neighbour(&ns, &name, "10.212.0.2", "02:00:00:00:02:12");
    udp_flood(&ns, "10.212.0.2", 100);
    sigterm_stops_it_within_a_second(tap, &stalled, &format!("tap {name}"));
}

#[test]
fn sigterm_stops_grab_within_a_second_while_it_waits_on_a_paused_lossless_reader() {
    require_root_and_tools();
    let stalled = StalledNet::new("stalled-grab");
    let mut lab = Lab::default();
    let ns = lab.netns("ipn-stallg-");
    let (va, vb) = grabbed_veth(&mut lab, "ipsa", "ipsb", &ns, "10.212.1.2/24");
    let grab = Attached::start(&["grab", stalled.p(), &va]);
    // Frames to the grabbed end's own MAC, without waiting for ARP.
    let link: Value = serde_json::from_str(&must("ip", &["-j", "link", "show", &va])).unwrap();
    let mac = link[0]["address"].as_str().expect("a MAC in ip -j link");
    static_neighbour(&ns, &vb, "10.212.1.1", mac);
    udp_flood(&ns, "10.212.1.1", 100);
    sigterm_stops_it_within_a_second(grab, &stalled, &format!("grab {va}"));
}
