//! 802.1Q VLANs: access, trunk and transparent ports, on hub and switch
//! networks. Frames never cross VLANs; access ports see their VLAN
//! untagged, trunks see theirs tagged (the native one untagged),
//! transparent ports see every frame as on the wire; learning is per VLAN;
//! `status` shows each port's membership and, on a switch, the addresses
//! it sends from.

mod common;

use std::time::Duration;

use common::TestNet;
use ipn::ethernet::{Frame, Tci, Vlan, VlanSet};
use ipn::{Config, JoinOptions, Network, OpenError, Port, Protocol, RecvError};

const SHORT: Duration = Duration::from_millis(50);

fn join(net: &TestNet, name: &str, vlan: Vlan) -> Port {
    Port::join(
        net.path(),
        &JoinOptions {
            description: name.into(),
            vlan,
            ..JoinOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn trunk(vlans: &[u16], native: Option<u16>) -> Vlan {
    Vlan::Trunk {
        vlans: vlans.iter().copied().collect::<VlanSet>(),
        native,
    }
}

/// An Ethernet frame from `src` to `dst`, tagged with `vid` if given,
/// carrying `payload`.
fn ethernet(dst: [u8; 6], src: [u8; 6], vid: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(vid) = vid {
        f.extend_from_slice(&Tci::for_vlan(vid).to_bytes());
    }
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const BCAST: [u8; 6] = [0xff; 6];

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

/// What `port` receives now: each frame's tag (if any) and payload.
fn received(port: &mut Port) -> Vec<(Option<u16>, Vec<u8>)> {
    let mut buf = vec![0u8; port.max_frame()];
    let mut got = Vec::new();
    loop {
        match port.recv_timeout(&mut buf, SHORT) {
            Ok(n) => {
                let frame = Frame::new_checked(&buf[..n]).expect("an Ethernet frame");
                let header = 14 + frame.tag().map_or(0, |_| 4);
                got.push((frame.tag().map(Tci::vid), buf[header..n].to_vec()));
            }
            Err(RecvError::TimedOut) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Runs `test` on a fresh network `NAME-PROTOCOL` of each protocol.
fn on_each_protocol(name: &str, test: impl Fn(&TestNet, Protocol)) {
    for protocol in [Protocol::Hub, Protocol::Switch] {
        let net = TestNet::create(
            &format!("{name}-{}", protocol.name()),
            &Config {
                protocol,
                ..Config::default()
            },
        );
        test(&net, protocol);
    }
}

#[test]
fn access_ports_of_one_vlan_talk_untagged_and_never_hear_another_vlan() {
    on_each_protocol("vlan-access", |net, protocol| {
        let mut a10 = join(net, "a10", Vlan::Access(10));
        let mut b10 = join(net, "b10", Vlan::Access(10));
        let mut c20 = join(net, "c20", Vlan::Access(20));
        let mut tap = join(net, "transparent", Vlan::Transparent);
        let mut t = join(net, "trunk", trunk(&[10, 20], Some(1)));
        a10.send(&ethernet(BCAST, mac(1), None, b"to ten")).unwrap();
        c20.send(&ethernet(BCAST, mac(3), None, b"to twenty"))
            .unwrap();
        assert_eq!(received(&mut b10), vec![(None, b"to ten".to_vec())]);
        assert_eq!(received(&mut a10), vec![], "a10 hears nothing of VLAN 20");
        assert_eq!(received(&mut c20), vec![], "c20 hears nothing of VLAN 10");
        // The transparent port and the trunk see both, tagged.
        let both = vec![
            (Some(10), b"to ten".to_vec()),
            (Some(20), b"to twenty".to_vec()),
        ];
        assert_eq!(received(&mut tap), both, "{}", protocol.name());
        assert_eq!(received(&mut t), both, "{}", protocol.name());
    });
}

#[test]
fn a_trunk_sends_into_its_vlans_its_native_vlan_untagged_and_drops_the_rest() {
    on_each_protocol("vlan-trunk", |net, _| {
        let mut t = join(net, "trunk", trunk(&[10, 20], Some(1)));
        let mut a10 = join(net, "a10", Vlan::Access(10));
        let mut a1 = join(net, "a1", Vlan::Access(1));
        let mut a30 = join(net, "a30", Vlan::Access(30));
        t.send(&ethernet(BCAST, mac(9), Some(10), b"tagged 10"))
            .unwrap();
        t.send(&ethernet(BCAST, mac(9), None, b"native")).unwrap();
        t.send(&ethernet(BCAST, mac(9), Some(30), b"not mine"))
            .unwrap();
        assert_eq!(received(&mut a10), vec![(None, b"tagged 10".to_vec())]);
        assert_eq!(received(&mut a1), vec![(None, b"native".to_vec())]);
        assert_eq!(received(&mut a30), vec![], "VLAN 30 is not the trunk's");
        // The native VLAN arrives untagged at the trunk too.
        a1.send(&ethernet(BCAST, mac(5), None, b"from native"))
            .unwrap();
        assert_eq!(received(&mut t), vec![(None, b"from native".to_vec())]);
        // An access port's tagged frame is dropped; both drops are counted.
        a10.send(&ethernet(BCAST, mac(2), Some(10), b"tagged at access"))
            .unwrap();
        assert_eq!(received(&mut t), vec![]);
        let status = Network::open(net.path()).unwrap().status();
        let dropped = |name: &str| {
            status
                .ports
                .iter()
                .find(|p| p.description == name)
                .unwrap()
                .tx_dropped
        };
        assert_eq!((dropped("trunk"), dropped("a10")), (1, 1));
    });
}

#[test]
fn vlan_4094_and_priority_bits_survive_a_transparent_round_trip() {
    let net = TestNet::create("vlan-ids", &Config::default());
    let mut a = join(&net, "a", Vlan::Transparent);
    let mut b = join(&net, "b", Vlan::Transparent);
    let mut frame = ethernet(BCAST, mac(1), Some(4094), b"x");
    frame[14] |= 0xa0; // priority 5
    a.send(&frame).unwrap();
    let mut buf = vec![0u8; b.max_frame()];
    let n = b.recv_timeout(&mut buf, SHORT).unwrap();
    assert_eq!(&buf[..n], &frame[..], "byte for byte, tag included");
    // The MTU counts the frame without its tag.
    let full = ethernet(BCAST, mac(1), Some(7), &[0u8; 1500]);
    assert_eq!(full.len(), 1518);
    a.send(&full).unwrap();
    assert_eq!(b.recv_timeout(&mut buf, SHORT).unwrap(), 1518);
}

#[test]
fn switch_learning_is_per_vlan() {
    let net = TestNet::create(
        "vlan-learning",
        &Config {
            protocol: Protocol::Switch,
            ..Config::default()
        },
    );
    // The same address behind different ports in VLANs 10 and 20.
    let mut x10 = join(&net, "x10", Vlan::Access(10));
    let mut x20 = join(&net, "x20", Vlan::Access(20));
    let mut t = join(&net, "trunk", trunk(&[10, 20], None));
    let mut watcher10 = join(&net, "w10", Vlan::Access(10));
    x10.send(&ethernet(BCAST, mac(7), None, b"hello 10"))
        .unwrap();
    x20.send(&ethernet(BCAST, mac(7), None, b"hello 20"))
        .unwrap();
    assert_eq!(received(&mut t).len(), 2);
    assert_eq!(received(&mut watcher10).len(), 1);
    // The trunk's unicast to mac 7 in VLAN 20 reaches x20 only.
    t.send(&ethernet(mac(7), mac(9), Some(20), b"unicast 20"))
        .unwrap();
    assert_eq!(received(&mut x20), vec![(None, b"unicast 20".to_vec())]);
    assert_eq!(received(&mut x10), vec![]);
    assert_eq!(received(&mut watcher10), vec![]);
    let status = Network::open(net.path()).unwrap().status();
    let port = |name: &str| status.ports.iter().find(|p| p.description == name).unwrap();
    assert_eq!(port("x10").vlan, Vlan::Access(10));
    assert_eq!(port("x10").addresses, vec![(Some(10), mac(7))]);
    assert_eq!(port("x20").addresses, vec![(Some(20), mac(7))]);
    assert_eq!(port("trunk").addresses, vec![(Some(20), mac(9))]);
    assert_eq!(port("trunk").vlan, trunk(&[10, 20], None));
}

#[test]
fn vlan_ids_out_of_range_are_refused_at_join() {
    let net = TestNet::create("vlan-range", &Config::default());
    for vlan in [Vlan::Access(0), Vlan::Access(4095), trunk(&[], None)] {
        match Port::join(
            net.path(),
            &JoinOptions {
                vlan: vlan.clone(),
                ..JoinOptions::default()
            },
        ) {
            Err(e @ OpenError::InvalidConfig(_)) => {
                assert!(e.to_string().contains("VLAN"), "{e}")
            }
            other => panic!("{vlan:?}: {other:?}"),
        }
    }
}

/// A port in a VLAN sends Ethernet frames only: a frame too short for an
/// Ethernet header has no place for a tag, so it is dropped and counted,
/// never delivered padded with whatever a reader's buffer held.
#[test]
fn a_vlan_port_drops_and_counts_frames_shorter_than_an_ethernet_header() {
    let net = TestNet::create("vlan-runt", &Config::default());
    let mut a10 = join(&net, "a10", Vlan::Access(10));
    let mut watcher = join(&net, "watcher", Vlan::Transparent);
    a10.send(b"hello").unwrap();
    let mut buf = vec![0xaa; watcher.max_frame()];
    assert!(matches!(
        watcher.recv_timeout(&mut buf, SHORT),
        Err(RecvError::TimedOut)
    ));
    let status = Network::open(net.path()).unwrap().status();
    let a = status
        .ports
        .iter()
        .find(|p| p.description == "a10")
        .unwrap();
    assert_eq!(a.tx_dropped, 1);
}

/// A priority-tagged frame (VLAN ID 0, 802.1Q §6.9) from an access port
/// is that port's VLAN's, with its priority kept; a trunk's goes to its
/// native VLAN.
#[test]
fn a_priority_tagged_frame_belongs_to_the_access_ports_vlan() {
    on_each_protocol("vlan-priority", |net, _| {
        let mut a10 = join(net, "a10", Vlan::Access(10));
        let mut b10 = join(net, "b10", Vlan::Access(10));
        let mut c20 = join(net, "c20", Vlan::Access(20));
        let mut t = join(net, "trunk", trunk(&[10, 20], Some(1)));
        let mut a1 = join(net, "a1", Vlan::Access(1));
        let mut frame = ethernet(BCAST, mac(1), Some(0), b"priority 5");
        frame[14] |= 0xa0; // priority 5, VLAN ID 0
        a10.send(&frame).unwrap();
        assert_eq!(received(&mut b10), vec![(None, b"priority 5".to_vec())]);
        assert_eq!(received(&mut c20), vec![]);
        // The trunk sees it tagged with VLAN 10, the priority kept.
        let mut buf = vec![0u8; t.max_frame()];
        let n = t.recv_timeout(&mut buf, SHORT).unwrap();
        let tag = Frame::new_checked(&buf[..n]).unwrap().tag().unwrap();
        assert_eq!((tag.vid(), tag.0 >> 13), (10, 5));
        assert_eq!(&buf[18..n], b"priority 5");
        // A trunk's priority-tagged frame is of its native VLAN.
        t.send(&ethernet(BCAST, mac(9), Some(0), b"native"))
            .unwrap();
        assert_eq!(received(&mut a1), vec![(None, b"native".to_vec())]);
        let status = Network::open(net.path()).unwrap().status();
        assert!(status.ports.iter().all(|p| p.tx_dropped == 0), "{status:?}");
    });
}

/// Byte counters count a frame as the port handed it over or was handed
/// it: a tag the port sent or received is included, on both sides.
#[test]
fn byte_counters_count_a_tag_where_the_port_sees_one_sending_and_receiving() {
    let net = TestNet::create("vlan-bytes", &Config::default());
    let mut a = join(&net, "a", Vlan::Transparent);
    let mut b = join(&net, "b", Vlan::Transparent);
    let mut a10 = join(&net, "a10", Vlan::Access(10));
    let mut t = join(&net, "trunk", trunk(&[10], None));
    let tagged = ethernet(BCAST, mac(1), Some(10), &[7u8; 46]);
    assert_eq!(tagged.len(), 64);
    a.send(&tagged).unwrap();
    let mut buf = vec![0u8; b.max_frame()];
    assert_eq!(b.recv_timeout(&mut buf, SHORT).unwrap(), 64);
    assert_eq!(a10.recv_timeout(&mut buf, SHORT).unwrap(), 60);
    assert_eq!(t.recv_timeout(&mut buf, SHORT).unwrap(), 64);
    let bytes = |name: &str| {
        let status = Network::open(net.path()).unwrap().status();
        let p = status
            .ports
            .iter()
            .find(|p| p.description == name)
            .unwrap()
            .clone();
        (p.tx_bytes, p.rx_bytes)
    };
    assert_eq!(bytes("a"), (64, 0), "sent with its tag");
    assert_eq!(bytes("b"), (0, 64), "received with its tag");
    assert_eq!(bytes("a10"), (0, 60), "received untagged");
    assert_eq!(bytes("trunk"), (0, 64));
    // An access port sends untagged: 60 bytes; the trunk gets them tagged.
    a10.send(&ethernet(BCAST, mac(2), None, &[1u8; 46]))
        .unwrap();
    assert_eq!(t.recv_timeout(&mut buf, SHORT).unwrap(), 64);
    assert_eq!(bytes("a10"), (60, 60));
    assert_eq!(bytes("trunk"), (0, 128));
}
