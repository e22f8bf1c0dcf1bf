//! Switch mode: a unicast frame to a learned address reaches only the port
//! it was learned from; broadcast, multicast and unknown destinations flood.

use std::time::Duration;

mod common;

use common::TestNet;
use ipn::{Config, JoinOptions, Network, Port, Protocol, RecvError};

/// A switch network, removed when the guard drops (even after a panic).
fn network(name: &str, lossless: bool) -> TestNet {
    let config = Config {
        protocol: Protocol::Switch,
        lossless,
        ..Config::default()
    };
    TestNet::create(&format!("switch-{name}"), &config)
}

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f.resize(60, tag);
    f
}

const BROADCAST: [u8; 6] = [0xff; 6];

fn expect(port: &mut Port, tag: u8) {
    let mut buf = [0u8; 1514];
    let n = port
        .recv_timeout(&mut buf, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("port {} expected frame {tag}: {e}", port.index()));
    assert_eq!(n, 60);
    assert_eq!(buf[14], tag, "port {} got the wrong frame", port.index());
}

fn expect_nothing(port: &mut Port) {
    let mut buf = [0u8; 1514];
    match port.try_recv(&mut buf) {
        Err(RecvError::WouldBlock) => {}
        other => panic!(
            "port {} should have received nothing, got {other:?}",
            port.index()
        ),
    }
}

fn join(path: &std::path::Path, name: &str) -> Port {
    Port::join(path, &JoinOptions::described(name)).unwrap()
}

#[test]
fn unicast_to_a_learned_address_reaches_only_its_port() {
    let net = network("unicast", false);
    let path = net.path().to_owned();
    let (mut a, mut b, mut c) = (join(&path, "a"), join(&path, "b"), join(&path, "c"));
    // a announces itself with a broadcast: everyone receives it and learns a.
    a.send(&frame(BROADCAST, mac(1), 1)).unwrap();
    expect(&mut b, 1);
    expect(&mut c, 1);
    // b answers a by unicast: only a receives it.
    b.send(&frame(mac(1), mac(2), 2)).unwrap();
    expect(&mut a, 2);
    expect_nothing(&mut c);
    // c learned b's address from that frame although it was not for c.
    c.send(&frame(mac(2), mac(3), 3)).unwrap();
    expect(&mut b, 3);
    expect_nothing(&mut a);
    assert_eq!(
        c.status().ports.iter().map(|p| p.rx_dropped).sum::<u64>(),
        0
    );
    drop((a, b, c));
    Network::remove(&path, false).unwrap();
}

#[test]
fn unknown_and_multicast_destinations_flood() {
    let net = network("flood", false);
    let path = net.path().to_owned();
    let (mut a, mut b, mut c) = (join(&path, "a"), join(&path, "b"), join(&path, "c"));
    a.send(&frame(mac(9), mac(1), 1)).unwrap(); // nobody has sent from mac 9
    expect(&mut b, 1);
    expect(&mut c, 1);
    let multicast = [0x01, 0x00, 0x5e, 0, 0, 1];
    b.send(&frame(multicast, mac(2), 2)).unwrap();
    expect(&mut a, 2);
    expect(&mut c, 2);
    expect_nothing(&mut b);
    drop((a, b, c));
    Network::remove(&path, false).unwrap();
}

#[test]
fn address_of_a_port_that_left_floods_again() {
    let net = network("left", false);
    let path = net.path().to_owned();
    let (mut a, mut b, mut c) = (join(&path, "a"), join(&path, "b"), join(&path, "c"));
    a.send(&frame(BROADCAST, mac(1), 1)).unwrap();
    expect(&mut b, 1);
    expect(&mut c, 1);
    drop(a);
    // A newcomer may take a's slot; b must not send a's traffic to it.
    let mut d = join(&path, "d");
    b.send(&frame(mac(1), mac(2), 2)).unwrap();
    expect(&mut c, 2);
    expect(&mut d, 2);
    drop((b, c, d));
    Network::remove(&path, false).unwrap();
}

#[test]
fn lossless_switch_delivers_unicast_without_stalling_on_bystanders() {
    let net = network("lossless", true);
    let path = net.path().to_owned();
    let (mut a, mut b, mut c) = (join(&path, "a"), join(&path, "b"), join(&path, "c"));
    a.send(&frame(BROADCAST, mac(1), 1)).unwrap();
    expect(&mut b, 1);
    expect(&mut c, 1);
    // Far more than a ring of unicast frames: c never receives any, but it
    // is a live reader and must step over them, or b would stall.
    let receiver = std::thread::spawn(move || {
        for _ in 0..2000 {
            expect(&mut a, 7);
        }
        a
    });
    let bystander = std::thread::spawn(move || {
        let mut buf = [0u8; 1514];
        let got = c.recv_timeout(&mut buf, Duration::from_millis(1500));
        assert!(matches!(got, Err(RecvError::TimedOut)), "c got {got:?}");
        c
    });
    for _ in 0..2000 {
        b.send_timeout(&frame(mac(1), mac(2), 7), Duration::from_secs(2))
            .unwrap();
    }
    let a = receiver.join().unwrap();
    let c = bystander.join().unwrap();
    drop((a, b, c));
    Network::remove(&path, false).unwrap();
}
