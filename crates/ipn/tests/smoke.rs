use ipn::{Config, JoinOptions, Network, Port};
use std::time::Duration;

fn tmp(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("ipn-test-{}-{}", name, std::process::id()));
    let _ = Network::remove(&p, true);
    p
}

#[test]
fn frame_reaches_other_ports_not_sender() {
    let path = tmp("smoke");
    Network::create(&path, &Config::default()).unwrap();
    let mut a = Port::join(&path, &JoinOptions::described("a")).unwrap();
    let mut b = Port::join(&path, &JoinOptions::described("b")).unwrap();
    let mut c = Port::join(&path, &JoinOptions::described("c")).unwrap();
    a.send(b"hello").unwrap();
    let mut buf = [0u8; 1514];
    let n = b.recv_timeout(&mut buf, Duration::from_secs(1)).unwrap();
    assert_eq!(&buf[..n], b"hello");
    let n = c.recv_timeout(&mut buf, Duration::from_secs(1)).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert!(matches!(
        a.try_recv(&mut buf),
        Err(ipn::RecvError::WouldBlock)
    ));
    let st = a.status();
    assert_eq!(st.membership.readers, 3);
    drop((a, b, c));
    Network::remove(&path, false).unwrap();
}
