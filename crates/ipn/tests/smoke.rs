//! The first things a network must do: a frame reaches every other port
//! and not its sender, frames sent before a leave arrive before the leave
//! event, and a reader slot's new occupant is woken.

mod common;

use common::TestNet;
use ipn::raw_layout::{ENTRY_ARMED, ENTRY_RINGS, PORT_ENTRY_SIZE, PORT_TABLE};
use ipn::{Config, JoinOptions, Network, Port};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// Reads every datagram waiting in a doorbell socket.
fn drain(socket: &std::os::fd::OwnedFd) {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 16];
    while recv(socket.as_raw_fd(), &mut byte, MsgFlags::MSG_DONTWAIT).is_ok() {}
}

fn read_u32(file: &Path, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    std::fs::File::open(file)
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    u32::from_le_bytes(b)
}

#[test]
fn frame_reaches_other_ports_not_sender() {
    let net = TestNet::empty("smoke");
    let path = net.path().to_owned();
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

#[test]
fn frames_sent_before_a_leave_arrive_before_the_leave_event() {
    use ipn::Message;
    let net = TestNet::empty("event-order");
    let path = net.path().to_owned();
    Network::create(&path, &Config::default()).unwrap();
    let mut sub = Port::join(&path, &JoinOptions::described("sub")).unwrap();
    sub.set_membership_events(true);
    let mut publisher = Port::join(&path, &JoinOptions::described("pub")).unwrap();
    let mut buf = [0u8; 1514];
    let joined = sub
        .recv_message(&mut buf, Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(
        joined,
        Message::Membership(ipn::Membership {
            readers: 2,
            writers: 2
        })
    );
    for i in 0..10u8 {
        publisher.send(&[i; 60]).unwrap();
    }
    drop(publisher);
    for i in 0..10u8 {
        let m = sub
            .recv_message(&mut buf, Some(Duration::from_secs(1)))
            .unwrap();
        assert_eq!(
            m,
            Message::Frame(60),
            "frame {i} must come before the leave event"
        );
        assert_eq!(buf[0], i);
    }
    let left = sub
        .recv_message(&mut buf, Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(
        left,
        Message::Membership(ipn::Membership {
            readers: 1,
            writers: 1
        })
    );
    drop(sub);
    Network::remove(&path, false).unwrap();
}

#[test]
fn new_occupant_of_a_reader_slot_is_woken_even_if_the_old_socket_lives_on() {
    use std::os::fd::AsFd;
    let net = TestNet::empty("reoccupied");
    let path = net.path().to_owned();
    let config = Config {
        max_ports: 2,
        ..Config::default()
    };
    Network::create(&path, &config).unwrap();
    let mut sender = Port::join(&path, &JoinOptions::described("sender")).unwrap();
    let mut old = Port::join(&path, &JoinOptions::described("old")).unwrap();
    let mut buf = [0u8; 1514];
    sender.send(b"first").unwrap(); // the sender now has a doorbell connection to `old`
    old.recv_timeout(&mut buf, Duration::from_secs(1)).unwrap();
    // As if `old` had forked a child that inherited its doorbell socket.
    let survivor = nix::unistd::dup(old.as_fd()).unwrap();
    drop(old);
    // The doorbell for "first" is still in it (a receive that found a frame
    // does not drain): take it, so that the socket shows any later one.
    drain(&survivor);
    let new = Port::join(&path, &JoinOptions::described("new")).unwrap();
    let entry = PORT_TABLE + u64::from(new.index()) * PORT_ENTRY_SIZE;
    let (armed, rings) = (entry + ENTRY_ARMED, entry + ENTRY_RINGS);
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        tid_tx.send(common::thread_id()).unwrap();
        let mut new = new;
        let mut buf = [0u8; 1514];
        let started = std::time::Instant::now();
        let n = new.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap();
        (buf[..n].to_vec(), started.elapsed(), new)
    });
    // `new` sleeps on its doorbell, armed.
    common::wait_until_asleep_in_poll(tid_rx.recv().unwrap(), Duration::from_secs(10));
    assert_eq!(
        read_u32(&path.join("shm"), armed),
        1,
        "`new` sleeps unarmed"
    );
    let rings_before = read_u32(&path.join("shm"), rings);
    sender.send(b"second").unwrap();
    let (frame, waited, new) = waiter.join().unwrap();
    assert_eq!(frame, b"second");
    eprintln!("`new` had the frame after {waited:?}");
    // Woken by a doorbell (its ringer counts it in `rings`; the blocking
    // receive took it from the socket), not found by looking again after a
    // timeout; and the old occupant's socket got none.
    assert_eq!(
        read_u32(&path.join("shm"), rings),
        rings_before + 1,
        "`new` was never rung: it found the frame by looking again, after {waited:?}"
    );
    assert!(
        !common::readable_now(survivor.as_fd()),
        "the sender rang the old occupant's socket"
    );
    drop(new);
    drop((sender, survivor));
    Network::remove(&path, false).unwrap();
}

/// A port that leaves gives its slot back at once: its slot lock (held by
/// the shared file's descriptor) and its mapping go with it. Joining and
/// leaving many more times than the network has ports, in one process,
/// never finds it full, and the process's mappings do not grow. (Here,
/// where no test spawns a process: a child holds a copy of every
/// descriptor from its fork to its exec, and with it the slot locks.)
#[test]
fn leaving_gives_the_slot_and_the_mapping_back() {
    let net = TestNet::create(
        "leave-gives-back",
        &Config {
            max_ports: 2,
            ..Config::default()
        },
    );
    let mappings = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.contains("leave-gives-back"))
            .count()
    };
    for round in 0..20 {
        let a = Port::join(net.path(), &JoinOptions::described("a"))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let b = Port::join(net.path(), &JoinOptions::described("b"))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(mappings(), 2, "round {round}: one mapping per joined port");
        drop((a, b));
        assert_eq!(mappings(), 0, "round {round}: mappings left behind");
    }
}
