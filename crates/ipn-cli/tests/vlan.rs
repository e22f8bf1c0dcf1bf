//! 802.1Q VLANs from the command line, with the real kernel: network
//! namespaces joined through `ipn tap --vlan N` (access ports) to two
//! networks, hubs or switches, joined by a trunk (`ipn tap --trunk`, a
//! kernel bridge and veth pair, `ipn grab --trunk`); `ipn dump` captures
//! read by tcpdump; `ipn sub --vlan` and `--trunk`; `ipn pub --vlan`; the
//! options' checks on every command.
//!
//! The tests that make namespaces need root, iproute2, ping and tcpdump;
//! without them they fail saying what is missing, never skip. Addresses
//! are in 10.212.0.0/16, inside namespaces the tests create.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{
    must, ping, ping_fails, port_described, ports, run, run_program, run_with_input, stderr,
    stdout, Attached, Bg, Net, LONG,
};
use ipn_test_support::netns::ifname;
use ipn_test_support::{require_root, Lab};
use nix::sys::signal::{kill, Signal};
use serde_json::{json, Value};

fn require_root_and_tools() {
    require_root(
        "the VLAN tests create network namespaces, TAP, veth and VLAN interfaces",
        &["ip", "ping", "tcpdump"],
    );
}

/// The MAC address of `ifname` in `ns`.
fn mac_of(ns: &str, ifname: &str) -> String {
    let out = must("ip", &["-n", ns, "-j", "link", "show", ifname]);
    let json: Value = serde_json::from_str(&out).unwrap();
    json[0]["address"].as_str().expect("address").to_string()
}

/// SIGINT to a background `ipn dump`, which then completes its capture.
fn stop_dump(dump: Bg) -> Output {
    kill(dump.pid(), Signal::SIGINT).unwrap();
    let out = dump.finish(LONG);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    out
}

/// `tcpdump -e -n -r FILE`: one line per frame.
fn tcpdump_lines(file: &std::path::Path) -> String {
    let out = run_program("tcpdump", &["-e", "-n", "-r", file.to_str().unwrap()]);
    assert!(out.status.success(), "tcpdump: {}", stderr(&out));
    stdout(&out)
}

/// Two ipn networks, "switches" 1 and 2 (both hubs, or both switches),
/// joined by a trunk over a real kernel wire, and six namespaces:
///
/// ```text
///  A 10.212.10.1  --vlan 10 \                                    / --vlan 10  X 10.212.10.4
///  B 10.212.10.2  --vlan 10  > net 1 --trunk 10,20: TAP trk    |   net 2         (and 10.212.10.5 on Y)
///  C 10.212.20.3  --vlan 20 /   (and 10.212.10.3 on C)  |      \ --vlan 20  Y 10.212.20.4
///                                     namespace W: bridge trk + vw  --veth-- vg: ipn grab --trunk 10,20
/// ```
///
/// The trunk's frames leave `ipn tap --trunk` tagged, cross the kernel
/// (a TAP, a bridge, a veth pair, which carry the tags aside, as VLAN
/// offload) and enter net 2 through `ipn grab --trunk`, which puts them
/// back. (This host's kernel has no 802.1Q: no VLAN devices; the QEMU
/// system test, scripts/system/vm-vlan.sh, has a guest kernel's.)
///
/// C and Y each have an address in VLAN 10's subnet too, so that only the
/// VLANs keep VLAN 10's hosts from reaching them. Then: pings within a
/// VLAN pass, on one network and across the trunk; across VLANs they
/// fail; untagged frames on the trunk wire are dropped and counted by
/// both trunk ports; a transparent capture shows the tags to tcpdump, a
/// `--vlan 20` capture only VLAN 20, untagged; `ipn status` shows each
/// port's membership and drops and, on a switch, the addresses each port
/// sent from, per VLAN.
fn trunked_networks(protocol: &str) {
    require_root_and_tools();
    let p = &protocol[..1];
    let create: &[&str] = if protocol == "switch" {
        &["--switch"]
    } else {
        &[]
    };
    let net = Net::created(&format!("vlan-1-{protocol}"), create);
    let net2 = Net::created(&format!("vlan-2-{protocol}"), create);
    let pcap_all = net.file("all.pcap");
    let pcap_20 = net.file("vlan20.pcap");
    let mut lab = Lab::default();
    let name = |role: &str| ifname(&format!("iv{p}{role}"));
    let ns = |lab: &mut Lab, role: &str| lab.netns(&format!("ipn-v{p}{role}-"));
    let [ns_a, ns_b, ns_c, ns_w, ns_x, ns_y] =
        ["a", "b", "c", "w", "x", "y"].map(|role| ns(&mut lab, role));
    let [tap_a, tap_b, tap_c, trk, tap_x, tap_y, vw, vg] =
        ["a", "b", "c", "t", "x", "y", "w", "g"].map(name);

    // Captures first, so they see every frame.
    let dump_all = Bg::spawn(&[
        "dump",
        net.p(),
        "-w",
        pcap_all.to_str().unwrap(),
        "-d",
        "all",
    ]);
    let dump_20 = Bg::spawn(&[
        "dump",
        net.p(),
        "-w",
        pcap_20.to_str().unwrap(),
        "--vlan",
        "20",
        "-d",
        "vlan 20",
    ]);
    net.wait_for_readers(2);

    // The wire: in W, a bridge of the trunk's TAP and a veth, whose other
    // end (in the host's namespace, no address, no IPv6) is grabbed.
    must(
        "ip",
        &["link", "add", &vw, "type", "veth", "peer", "name", &vg],
    );
    lab.links.push(vg.clone());
    must(
        "sysctl",
        &["-q", "-w", &format!("net.ipv6.conf.{vg}.disable_ipv6=1")],
    );
    must("ip", &["link", "set", &vg, "up"]);
    must("ip", &["link", "set", &vw, "netns", &ns_w]);
    must(
        "ip",
        &[
            "-n",
            &ns_w,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        ],
    );

    let access = |net: &Net, ifname: &str, vid: &str| {
        Attached::start(&["tap", net.p(), "--name", ifname, "--vlan", vid])
    };
    let attached = [
        access(&net, &tap_a, "10"),
        access(&net, &tap_b, "10"),
        access(&net, &tap_c, "20"),
        Attached::start(&["tap", net.p(), "--name", &trk, "--trunk", "10,20"]),
        Attached::start(&["grab", net2.p(), &vg, "--trunk", "10,20"]),
        access(&net2, &tap_x, "10"),
        access(&net2, &tap_y, "20"),
    ];
    assert!(
        attached[0].joined.contains("(access 10)"),
        "{}",
        attached[0].joined
    );
    assert!(
        attached[3].joined.contains("(trunk 10,20)"),
        "{}",
        attached[3].joined
    );
    must("ip", &["link", "set", &trk, "netns", &ns_w]);
    for ifname in [trk.as_str(), vw.as_str()] {
        must("ip", &["-n", &ns_w, "link", "set", ifname, "master", "br0"]);
        must("ip", &["-n", &ns_w, "link", "set", ifname, "up"]);
    }
    // The bridge's own address is on the trunk wire untagged: in no VLAN.
    must(
        "ip",
        &["-n", &ns_w, "addr", "add", "10.212.99.1/24", "dev", "br0"],
    );
    must("ip", &["-n", &ns_w, "link", "set", "br0", "up"]);
    lab.place(&tap_a, &ns_a, "10.212.10.1/24");
    lab.place(&tap_b, &ns_b, "10.212.10.2/24");
    lab.place(&tap_c, &ns_c, "10.212.20.3/24");
    must(
        "ip",
        &["-n", &ns_c, "addr", "add", "10.212.10.3/24", "dev", &tap_c],
    );
    lab.place(&tap_x, &ns_x, "10.212.10.4/24");
    lab.place(&tap_y, &ns_y, "10.212.20.4/24");
    must(
        "ip",
        &["-n", &ns_y, "addr", "add", "10.212.10.5/24", "dev", &tap_y],
    );

    let ok = |from: &str, to: &str| {
        let said = ping(from, &["-c", "2", "-i", "0.2", "-W", "2", to]);
        assert!(said.contains("2 received"), "{from} -> {to}: {said}");
        eprintln!("[vlan {protocol}] {from} -> {to}: {said}");
    };
    let never = |from: &str, to: &str| {
        ping_fails(from, &["-c", "2", "-i", "0.2", "-W", "1", to]);
        eprintln!("[vlan {protocol}] {from} -> {to}: no reply, as it must be");
    };
    // Same VLAN, one network.
    ok(&ns_a, "10.212.10.2");
    // Across VLANs: C has 10.212.10.3 on its interface, but is in VLAN 20.
    never(&ns_a, "10.212.10.3");
    never(&ns_b, "10.212.10.3");
    never(&ns_c, "10.212.10.1");
    // Over the trunk, in VLAN 10 and in VLAN 20, both ways.
    ok(&ns_a, "10.212.10.4");
    ok(&ns_b, "10.212.10.4");
    ok(&ns_c, "10.212.20.4");
    ok(&ns_y, "10.212.20.3");
    ok(&ns_x, "10.212.10.2");
    // Full-size frames: 1500-byte IP packets (not fragmented) are
    // 1514-byte frames at the access ports and 1518 tagged on the trunk,
    // 4 bytes over the MTU, which counts a frame without its tag.
    for (from, to) in [(&ns_a, "10.212.10.4"), (&ns_y, "10.212.20.3")] {
        let said = ping(
            from,
            &[
                "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1472", to,
            ],
        );
        assert!(said.contains("2 received"), "{from} -> {to}: {said}");
        eprintln!("[vlan {protocol}] {from} -> {to}, 1500-byte packets: {said}");
    }
    // Over the trunk too, VLAN 10 never reaches VLAN 20's 10.212.10.5.
    never(&ns_a, "10.212.10.5");
    never(&ns_x, "10.212.10.5");
    // Untagged frames on the trunk wire (the bridge's ARP for a neighbour
    // of its untagged address) belong to no VLAN of the trunks: dropped by
    // both, and counted.
    never(&ns_w, "10.212.99.9");

    // Status: memberships, the trunks' drops, addresses per VLAN.
    let status = net.status_json();
    let status2 = net2.status_json();
    let port = |status: &Value, description: &str| {
        port_described(status, description)
            .unwrap_or_else(|| panic!("no port {description}: {status:#}"))
            .clone()
    };
    let tap = |ifname: &str| {
        let d = format!("tap {ifname}");
        port_described(&status, &d)
            .or_else(|| port_described(&status2, &d))
            .unwrap_or_else(|| panic!("no port {d}: {status:#} {status2:#}"))
            .clone()
    };
    let grab = port(&status2, &format!("grab {vg}"));
    assert_eq!(tap(&tap_a)["vlan"], json!({"mode": "access", "vlan": 10}));
    assert_eq!(tap(&tap_y)["vlan"], json!({"mode": "access", "vlan": 20}));
    let trunk_json = json!({"mode": "trunk", "vlans": [10, 20], "native": null});
    assert_eq!(tap(&trk)["vlan"], trunk_json);
    assert_eq!(grab["vlan"], trunk_json);
    assert_eq!(port(&status, "all")["vlan"], json!({"mode": "transparent"}));
    let trunk_dropped = tap(&trk)["tx_dropped"].as_u64().unwrap();
    assert!(trunk_dropped >= 1, "the bridge's untagged ARPs: {status:#}");
    assert!(grab["tx_dropped"].as_u64().unwrap() >= 1, "{status2:#}");
    assert_eq!(tap(&tap_a)["tx_dropped"], 0, "{status:#}");
    let table = stdout(&run(&["status", net.p()]));
    eprintln!("[vlan {protocol}] ipn status of network 1:\n{table}");
    let row = |ifname: &str| {
        table
            .lines()
            .find(|l| l.ends_with(&format!("tap {ifname}")))
            .unwrap_or_else(|| panic!("no row for {ifname}: {table}"))
            .to_string()
    };
    assert!(table.contains("RX DROPPED  TX DROPPED  VLAN"), "{table}");
    assert!(row(&tap_a).contains("access 10"), "{table}");
    assert!(
        row(&trk).contains(&format!(" {trunk_dropped}  trunk 10,20  ")),
        "{table}"
    );
    let (mac_a, mac_c) = (mac_of(&ns_a, &tap_a), mac_of(&ns_c, &tap_c));
    let (mac_x, mac_y) = (mac_of(&ns_x, &tap_x), mac_of(&ns_y, &tap_y));
    if protocol == "switch" {
        let has = |port: &Value, vlan: u16, mac: &str| {
            port["addresses"]
                .as_array()
                .unwrap()
                .contains(&json!({"vlan": vlan, "mac": mac}))
        };
        assert!(has(&tap(&tap_a), 10, &mac_a), "{status:#}");
        // Network 1 learned X and Y behind its trunk, each in its VLAN;
        // network 2 learned A and C behind its grabbed trunk.
        assert!(has(&tap(&trk), 10, &mac_x), "{status:#}");
        assert!(has(&tap(&trk), 20, &mac_y), "{status:#}");
        assert!(!has(&tap(&trk), 10, &mac_y), "{status:#}");
        assert!(has(&grab, 10, &mac_a), "{status2:#}");
        assert!(has(&grab, 20, &mac_c), "{status2:#}");
        assert!(table.contains("addresses the switch learned"), "{table}");
        let index = tap(&trk)["port"].as_u64().unwrap().to_string();
        for (vlan, mac) in [("10", &mac_x), ("20", &mac_y)] {
            assert!(
                table.lines().any(|l| {
                    let cells: Vec<&str> = l.split_whitespace().collect();
                    cells == [index.as_str(), vlan, mac.as_str()]
                }),
                "no row for port {index}, VLAN {vlan}, {mac}: {table}"
            );
        }
    } else {
        for p in ports(&status).iter().chain(ports(&status2)) {
            assert_eq!(p["addresses"], json!([]), "{status:#}");
        }
        assert!(!table.contains("addresses the switch learned"), "{table}");
    }

    // The captures, read by tcpdump.
    stop_dump(dump_all);
    stop_dump(dump_20);
    let all = tcpdump_lines(&pcap_all);
    let only_20 = tcpdump_lines(&pcap_20);
    assert!(all.contains("vlan 10,"), "{all}");
    assert!(all.contains("vlan 20,"), "{all}");
    assert!(
        all.contains("who-has 10.212.10.3 tell 10.212.10.1"),
        "{all}"
    );
    assert!(only_20.contains("10.212.20.4"), "{only_20}");
    assert!(!only_20.contains("802.1Q"), "VLAN 20 untagged: {only_20}");
    // A's ARP requests (VLAN 10) are not in it; C's (VLAN 20) for A are.
    assert!(!only_20.contains(&mac_a), "VLAN 10 leaked: {only_20}");
    assert!(
        !only_20.contains("tell 10.212.10.1"),
        "VLAN 10 leaked: {only_20}"
    );
    assert!(
        only_20.contains("who-has 10.212.10.1 tell 10.212.10.3"),
        "{only_20}"
    );
    eprintln!(
        "[vlan {protocol}] transparent capture: {} frames, VLAN 20 capture: {}",
        all.lines().count(),
        only_20.lines().count()
    );

    for attachment in attached {
        let (status, said) = attachment.stop();
        assert_eq!(status.code(), Some(130), "{said}");
        if said.contains("(trunk 10,20)") {
            assert!(said.contains("not in its VLANs (trunk 10,20)"), "{said}");
        }
    }
}

#[test]
fn hubs_joined_by_a_trunk_keep_vlans_apart_and_carry_both_over_it() {
    trunked_networks("hub");
}

#[test]
fn switches_joined_by_a_trunk_keep_vlans_apart_and_carry_both_over_it() {
    trunked_networks("switch");
}

/// An Ethernet frame from 02:00:00:00:00:`src`, broadcast, tagged with
/// `vid` if given, EtherType 0x88b5, carrying `payload`.
fn frame(src: u8, vid: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, src]);
    if let Some(vid) = vid {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(payload);
    f
}

fn hex(frame: &[u8]) -> String {
    frame
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The lines an `ipn sub --hex` printed, sorted: frames from different
/// publishers may arrive in either order.
fn sorted_lines(out: &Output) -> Vec<String> {
    let mut lines: Vec<String> = stdout(out).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn a_vlan_sub_sees_only_its_vlan_untagged_and_a_trunk_sub_its_vlans_tagged() {
    let net = Net::created("vlan-sub", &["--switch"]);
    let sub10 = Bg::spawn(&["sub", net.p(), "--hex", "--vlan", "10", "-d", "sub10"]);
    let trunk = Bg::spawn(&[
        "sub",
        net.p(),
        "--hex",
        "--trunk",
        "10,20",
        "--native",
        "30",
        "-d",
        "trunk",
    ]);
    let all = Bg::spawn(&["sub", net.p(), "--hex", "-d", "all"]);
    net.wait_for_readers(3);

    // A transparent publisher: frames as they are, tagged or not.
    net.publish(&[
        frame(1, Some(10), b"ten"),
        frame(1, Some(20), b"twenty"),
        frame(1, None, b"untagged"),
        frame(1, Some(30), b"thirty"),
        frame(1, Some(40), b"forty"),
    ]);
    // An access publisher of VLAN 20: its untagged frame joins VLAN 20;
    // a tagged one is no frame of an access port: dropped, counted.
    let records: Vec<u8> = [frame(2, None, b"from 20"), frame(2, Some(10), b"sneaky")]
        .iter()
        .flat_map(|f| common::record(f))
        .collect();
    let out = run_with_input(&["pub", "--raw", net.p(), "--vlan", "20"], &records);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 frames were not in the port's VLANs (access 20)"),
        "{}",
        stderr(&out)
    );

    let rx = |s: &Value, d: &str| port_described(s, d).map(|p| p["rx_frames"].clone());
    let expected = [("sub10", 1), ("trunk", 4), ("all", 6)];
    net.wait_for("every subscriber's frames", |s| {
        expected.iter().all(|&(d, n)| rx(s, d) == Some(n.into()))
    });
    // Nothing more comes.
    std::thread::sleep(Duration::from_millis(300));
    let status = net.status_json();
    for (d, n) in expected {
        assert_eq!(rx(&status, d), Some(n.into()), "{status:#}");
    }
    let stop = |sub: Bg| {
        kill(sub.pid(), Signal::SIGINT).unwrap();
        sub.finish(LONG)
    };
    let mut want_10 = vec![hex(&frame(1, None, b"ten"))];
    want_10.sort();
    assert_eq!(sorted_lines(&stop(sub10)), want_10);
    // The trunk: its VLANs tagged, its native VLAN (30) untagged.
    let mut want_trunk = vec![
        hex(&frame(1, Some(10), b"ten")),
        hex(&frame(1, Some(20), b"twenty")),
        hex(&frame(1, None, b"thirty")),
        hex(&frame(2, Some(20), b"from 20")),
    ];
    want_trunk.sort();
    assert_eq!(sorted_lines(&stop(trunk)), want_trunk);
    // The transparent port: every frame as on the network.
    let mut want_all = vec![
        hex(&frame(1, Some(10), b"ten")),
        hex(&frame(1, Some(20), b"twenty")),
        hex(&frame(1, None, b"untagged")),
        hex(&frame(1, Some(30), b"thirty")),
        hex(&frame(1, Some(40), b"forty")),
        hex(&frame(2, Some(20), b"from 20")),
    ];
    want_all.sort();
    assert_eq!(sorted_lines(&stop(all)), want_all);
}

#[test]
fn pub_with_a_vlan_refuses_what_is_not_an_ethernet_frame() {
    let net = Net::created("vlan-pub", &[]);
    let out = run_with_input(&["pub", net.p(), "--vlan", "10"], b"hello\n");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("line 1: 5 bytes is not an Ethernet frame"),
        "{err}"
    );
    // Without a VLAN, any bytes are a frame, as always.
    let out = run_with_input(&["pub", net.p()], b"hello\n");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn vlan_options_are_checked_on_every_command_that_joins() {
    let net = Net::created("vlan-options", &[]);
    let commands: [&[&str]; 6] = [
        &["tap", net.p()],
        &["grab", net.p(), "lo"],
        &["vxlan", net.p(), "--vni", "1", "--remote", "127.0.0.1"],
        &["pub", net.p()],
        &["sub", net.p()],
        &["dump", net.p(), "-w", "-"],
    ];
    let bad: [(&[&str], &[&str]); 6] = [
        (&["--vlan", "0"], &["--vlan", "1 to 4094"]),
        (&["--vlan", "4095"], &["--vlan", "1 to 4094"]),
        (&["--trunk", "10,5000"], &["--trunk", "1 to 4094"]),
        (
            &["--trunk", "10", "--native", "9999"],
            &["--native", "1 to 4094"],
        ),
        (&["--vlan", "10", "--trunk", "20"], &["--vlan", "--trunk"]),
        (&["--native", "10"], &["--trunk"]),
    ];
    for command in commands {
        for (options, words) in bad {
            let mut args = command.to_vec();
            args.extend_from_slice(options);
            let out = run(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            for word in words {
                assert!(stderr(&out).contains(word), "{args:?}: {}", stderr(&out));
            }
        }
        let help = stdout(&run(&[command[0], "--help"]));
        for word in ["--vlan <N>", "--trunk <LIST>", "--native <N>", "802.1Q"] {
            assert!(help.contains(word), "{} --help: {help}", command[0]);
        }
    }
    // Nothing joined on the way.
    assert!(ports(&net.status_json()).is_empty());
    let help = stdout(&run(&["status", "--help"]));
    for field in ["tx_dropped", "vlan ", "\"trunk\"", "addresses"] {
        assert!(help.contains(field), "status --help lacks {field}: {help}");
    }
}
