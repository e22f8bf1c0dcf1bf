//! Bad input: paths that are not networks, shared files that are
//! truncated, of another layout version, or garbage, give clear errors
//! naming the path, never a panic or a hang. A property test scribbles on
//! the shared file at random, before opening it and while ports are
//! joined: joining, sending, receiving and status only ever return `Ok` or
//! an error.
//!
//! Not tested, by design (DESIGN.md, trust model): a file truncated *after*
//! it was mapped makes later accesses fault with SIGBUS.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use common::{frame, within, TestNet, Watchdog};
use ipn::{Config, JoinOptions, Message, Network, OpenError, Port, Shutdown};
use proptest::prelude::*;

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

// Offsets in the shared file, derived from the layout itself.
use ipn::raw_layout::{
    DESCRIPTOR_OFFLOAD, DESCRIPTOR_POS, DESCRIPTOR_SIZE, DESCRIPTOR_TAG, DESCRIPTOR_TAGGED,
    DESCRIPTOR_WITH_VNET_HDR, ENTRY_ARMED, ENTRY_HEAD, ENTRY_RINGS, HEADER_CURSOR_TABLE_OFFSET,
    HEADER_MTU as MTU, HEADER_PENDING_TABLE_OFFSET, HEADER_PROTOCOL as PROTOCOL,
    HEADER_RINGS_OFFSET as RINGS_OFFSET, HEADER_RING_STRIDE, HEADER_VERSION as VERSION,
    PORT_ENTRY_SIZE as PORT_ENTRY, PORT_ENTRY_WORDS, PORT_TABLE,
};

fn patch(file: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(file).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn read_u64(file: &Path, offset: u64) -> u64 {
    let f = std::fs::File::open(file).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, offset).unwrap();
    u64::from_le_bytes(b)
}

/// Every way of opening the network at `path`, each within 2 s: joining,
/// joining or creating, and opening for status. Returns the join error.
/// A network with default settings, a port that sends and one that reads.
fn sender_and_reader(name: &str) -> (TestNet, Port, Port) {
    let net = TestNet::create(name, &Config::default());
    let sender = Port::join(net.path(), &JoinOptions::described("sender")).unwrap();
    let reader = Port::join(net.path(), &JoinOptions::described("reader")).unwrap();
    (net, sender, reader)
}

/// Offset in the shared file of the word at `field` of `port`'s entry.
fn entry_word(port: &Port, field: u64) -> u64 {
    PORT_TABLE + u64::from(port.index()) * PORT_ENTRY + field
}

fn open_all_ways(path: &Path) -> OpenError {
    let p = path.to_owned();
    within("opening a bad network", Duration::from_secs(2), move || {
        let join = Port::join(&p, &JoinOptions::default()).expect_err("joined a bad network");
        let open = Network::open(&p).expect_err("opened a bad network");
        assert_eq!(
            std::mem::discriminant(&join),
            std::mem::discriminant(&open),
            "join: {join}; open: {open}"
        );
        join
    })
}

fn assert_names(e: &OpenError, path: &Path) {
    let text = e.to_string();
    assert!(
        text.contains(path.to_str().unwrap()),
        "error does not name {}: {text}",
        path.display()
    );
}

fn not_a_network(path: &Path, reason_contains: &str) {
    match open_all_ways(path) {
        e @ OpenError::NotANetwork { .. } => {
            assert_names(&e, path);
            assert!(
                e.to_string().contains(reason_contains),
                "expected `{reason_contains}` in: {e}"
            );
        }
        other => panic!("{}: expected NotANetwork, got {other:?}", path.display()),
    }
}

#[test]
fn missing_path_is_not_found_naming_the_path() {
    let net = TestNet::empty("missing");
    match open_all_ways(net.path()) {
        e @ OpenError::NotFound { .. } => assert_names(&e, net.path()),
        other => panic!("{other:?}"),
    }
    // Below a missing directory too.
    let deeper = net.path().join("a/b");
    assert!(matches!(open_all_ways(&deeper), OpenError::NotFound { .. }));
}

/// A network is opened only by its real path: a symbolic link (dangling,
/// or to a real network) is refused, saying so, so that no link can
/// redirect a process into another directory.
#[test]
fn symbolic_link_to_a_network_is_refused_saying_it_is_a_link() {
    let link = TestNet::empty("link");
    std::os::unix::fs::symlink("/nonexistent-ipn-target", link.path()).unwrap();
    not_a_network(link.path(), "symbolic link");
    std::fs::remove_file(link.path()).unwrap();
    let real = TestNet::create("link-target", &Config::default());
    std::os::unix::fs::symlink(real.path(), link.path()).unwrap();
    not_a_network(link.path(), "symbolic link");
    std::fs::remove_file(link.path()).unwrap();
}

#[test]
fn directory_that_is_not_a_network_is_refused_naming_the_path() {
    let net = TestNet::empty("plain-dir");
    std::fs::create_dir(net.path()).unwrap();
    not_a_network(net.path(), "shm");
    std::fs::write(net.path().join("other"), b"x").unwrap();
    not_a_network(net.path(), "shm");
}

#[test]
fn plain_file_is_refused_naming_the_path() {
    let net = TestNet::empty("plain-file");
    std::fs::write(net.path(), b"not a network").unwrap();
    not_a_network(net.path(), "not a directory");
}

#[test]
fn network_of_another_layout_version_is_refused() {
    let net = TestNet::create("version", &Config::default());
    patch(&net.shm(), VERSION, &999u32.to_le_bytes());
    not_a_network(net.path(), "version 999");
}

#[test]
fn truncated_shared_file_is_refused() {
    let net = TestNet::create("truncated", &Config::default());
    let full = std::fs::metadata(net.shm()).unwrap().len();
    for size in [full - 1, full / 2, 4096, 100, 0] {
        let f = OpenOptions::new().write(true).open(net.shm()).unwrap();
        f.set_len(size).unwrap();
        not_a_network(net.path(), "truncated");
    }
}

#[test]
fn shared_file_of_random_garbage_is_refused() {
    let net = TestNet::create("garbage", &Config::default());
    let len = std::fs::metadata(net.shm()).unwrap().len() as usize;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(net.shm(), &garbage).unwrap();
    not_a_network(net.path(), "no ipn header");
}

#[test]
fn header_out_of_range_or_inconsistent_is_refused() {
    let net = TestNet::create("header", &Config::default());
    let shm = net.shm();
    let good_mtu = 1514u32.to_le_bytes();
    patch(&shm, MTU, &10u32.to_le_bytes());
    not_a_network(net.path(), "out of range");
    patch(&shm, MTU, &good_mtu);
    let rings = read_u64(&shm, RINGS_OFFSET);
    patch(&shm, RINGS_OFFSET, &(rings + 64).to_le_bytes());
    not_a_network(net.path(), "inconsistent");
    patch(&shm, RINGS_OFFSET, &rings.to_le_bytes());
    patch(&shm, PROTOCOL, &7u32.to_le_bytes());
    not_a_network(net.path(), "protocol");
    patch(&shm, PROTOCOL, &0u32.to_le_bytes());
    // Restored: usable again.
    drop(Port::join(net.path(), &JoinOptions::default()).unwrap());
}

#[test]
fn shared_file_that_is_not_a_regular_file_never_hangs() {
    // A FIFO (opening one can block), a directory, and /dev/zero.
    let net = TestNet::empty("special");
    std::fs::create_dir(net.path()).unwrap();
    nix::unistd::mkfifo(&net.shm(), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let e = open_all_ways(net.path());
    assert_names(&e, net.path());
    std::fs::remove_file(net.shm()).unwrap();
    std::fs::create_dir(net.shm()).unwrap();
    let e = open_all_ways(net.path());
    assert_names(&e, net.path());
    std::fs::remove_dir(net.shm()).unwrap();
    std::os::unix::fs::symlink("/dev/zero", net.shm()).unwrap();
    let e = open_all_ways(net.path());
    assert_names(&e, net.path());
}

#[test]
fn creating_over_an_existing_network_or_file_is_refused_naming_the_path() {
    let net = TestNet::create("exists", &Config::default());
    match Network::create(net.path(), &Config::default()) {
        Err(e @ OpenError::AlreadyExists { .. }) => assert_names(&e, net.path()),
        other => panic!("{other:?}"),
    }
    let file = TestNet::empty("exists-file");
    std::fs::write(file.path(), b"x").unwrap();
    assert!(Network::create(file.path(), &Config::default()).is_err());
}

#[test]
fn impossible_configurations_are_refused() {
    let net = TestNet::empty("bad-config");
    for config in [
        Config {
            mtu: 70_000,
            ..Config::default()
        },
        Config {
            mtu: 10,
            ..Config::default()
        },
        Config {
            max_ports: 0,
            ..Config::default()
        },
        Config {
            ring_slots: Some(100),
            ..Config::default()
        },
        Config {
            mode: 0o070,
            ..Config::default()
        },
        Config {
            mode: 0o170_777,
            ..Config::default()
        },
    ] {
        match Network::create(net.path(), &config) {
            Err(OpenError::InvalidConfig(_)) => {}
            other => panic!("{config:?}: {other:?}"),
        }
        assert!(
            !net.path().exists(),
            "a refused create left {}",
            net.path().display()
        );
    }
}

/// A reader whose sender's ring head is scribbled on, so that it appears
/// lapped by almost 2^63 frames, several times: the reader must go on
/// (counting something), not panic.
#[test]
fn scribbled_ring_head_never_panics_a_reader() {
    let config = Config {
        max_ports: 2,
        ring_slots: Some(8),
        ..Config::default()
    };
    let net = TestNet::create("scribbled-head", &config);
    let shm = net.shm();
    let sender = Port::join(net.path(), &JoinOptions::described("a")).unwrap();
    let mut reader = Port::join(net.path(), &JoinOptions::described("b")).unwrap();
    assert_eq!((sender.index(), reader.index()), (0, 1));
    let rings = read_u64(&shm, RINGS_OFFSET);
    // The sequence word of the descriptor of frame n in port 0's ring.
    let slot_seq = |n: u64| rings + (n & 7) * DESCRIPTOR_SIZE;
    let seq_done = |n: u64| n.wrapping_mul(2).wrapping_add(2);
    let mut cursor = 0u64; // the reader's cursor in the sender's ring
    let mut buf = [0u8; 1514];
    for _round in 0..4 {
        let target = cursor.wrapping_add((1 << 63) - 1);
        // The descriptor at the cursor holds a later frame, the head says the
        // oldest frame left is `target`, and that one is being written.
        patch(
            &shm,
            slot_seq(cursor),
            &seq_done(cursor.wrapping_add(8)).to_le_bytes(),
        );
        patch(
            &shm,
            slot_seq(target),
            &seq_done(target).wrapping_sub(1).to_le_bytes(),
        );
        let head = target.wrapping_add(7);
        patch(&shm, PORT_TABLE + ENTRY_HEAD, &head.to_le_bytes());
        let _ = reader.try_recv(&mut buf);
        let _ = reader.status();
        cursor = target;
    }
    drop(sender);
}

/// A lossless reader's published cursor is scribbled back to 0 after it
/// read everything: the sender now believes the reader is full. The
/// reader is alive and keeps calling `recv`, so the network must heal (the
/// reader republishes where it is) instead of blocking the sender forever.
#[test]
fn lossless_sender_recovers_from_a_scribbled_reader_cursor() {
    let config = Config {
        max_ports: 3,
        ring_slots: Some(8),
        lossless: true,
        ..Config::default()
    };
    let net = TestNet::create("scribbled-cursor", &config);
    let mut sender = Port::join(net.path(), &JoinOptions::described("a")).unwrap();
    let mut reader = Port::join(net.path(), &JoinOptions::described("b")).unwrap();
    assert_eq!((sender.index(), reader.index()), (0, 1));
    let mut buf = [0u8; 1514];
    for i in 0..20u8 {
        sender
            .send_timeout(&[i; 64], Duration::from_secs(2))
            .unwrap();
        reader
            .recv_timeout(&mut buf, Duration::from_secs(2))
            .unwrap();
    }
    let cursors = read_u64(&net.shm(), HEADER_CURSOR_TABLE_OFFSET);
    let entry = cursors + 3 * 8; // cursor[reader 1][sender 0], 3 ports per row
    assert_eq!(read_u64(&net.shm(), entry), 20);
    patch(&net.shm(), entry, &0u64.to_le_bytes());
    // Someone joins: the sender forgets the room it knew of and looks again.
    let _newcomer = Port::join(
        net.path(),
        &JoinOptions {
            description: "c".into(),
            read: false,
            write: true,
            ..Default::default()
        },
    )
    .unwrap();
    // The reader goes on waiting for frames, as a live reader does.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut got = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if reader
                .recv_timeout(&mut buf, Duration::from_millis(10))
                .is_ok()
            {
                got += 1;
            }
        }
        got
    });
    // (8 frames: the sender may still have room it computed before.)
    let result = (0..8).try_for_each(|_| sender.send_timeout(&[99; 64], Duration::from_secs(2)));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let got = thread.join().unwrap();
    result.unwrap_or_else(|e| {
        panic!("sender blocked for good by one scribbled cursor word: {e} (reader got {got})")
    });
}

/// A member wrote 2^64 - 3 into every slot's `head` and left. Joiners
/// continue those rings, so every distance must be taken modulo 2^64: a
/// lossless sender must neither wait forever (alone, or with a reader) nor
/// lose or reorder a frame as its head wraps around.
#[test]
fn poisoned_heads_left_by_a_member_never_stall_a_lossless_sender() {
    let config = Config {
        max_ports: 4,
        ring_slots: Some(8),
        lossless: true,
        ..Config::default()
    };
    let net = TestNet::create("poisoned-heads", &config);
    for port in 0..4 {
        let head = PORT_TABLE + port * PORT_ENTRY + ENTRY_HEAD;
        patch(&net.shm(), head, &(u64::MAX - 2).to_le_bytes());
    }
    let _watchdog = Watchdog::new("poisoned heads", Duration::from_secs(30));
    let mut sender = Port::join(net.path(), &JoinOptions::described("sender")).unwrap();
    for seq in 0..20 {
        sender
            .send_timeout(&frame::make(1, seq, 100), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("alone, frame {seq}: {e}"));
    }
    let mut reader = Port::join(net.path(), &JoinOptions::described("reader")).unwrap();
    let mut buf = [0u8; 1514];
    for seq in 20..60 {
        sender
            .send_timeout(&frame::make(1, seq, 100), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("with a reader, frame {seq}: {e}"));
        let n = reader
            .recv_timeout(&mut buf, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("reader, frame {seq}: {e}"));
        assert_eq!(frame::check(&buf[..n]).unwrap(), (1, seq));
    }
    // Ring full of unread frames: the sender waits (and says so), no more.
    for seq in 60..68 {
        sender.try_send(&frame::make(1, seq, 100)).unwrap();
    }
    assert!(matches!(
        sender.try_send(&frame::make(1, 68, 100)),
        Err(ipn::SendError::WouldBlock)
    ));
}

/// A member clears a sleeping reader's `armed` word, so that no sender
/// rings its doorbell: a blocking receive still finds the frame, late (it
/// looks again at least every second), never hangs.
#[test]
fn a_scribbled_armed_word_delays_a_blocking_reader_but_never_deafens_it() {
    use std::os::fd::AsFd;
    let (net, mut sender, mut reader) = sender_and_reader("scribbled-armed");
    let armed = entry_word(&reader, ENTRY_ARMED);
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let receiving = std::thread::spawn(move || {
        tid_tx.send(common::thread_id()).unwrap();
        let mut buf = [0u8; 1514];
        let started = std::time::Instant::now();
        let got = reader.recv(&mut buf).map(|n| buf[..n].to_vec());
        (got, started.elapsed(), reader)
    });
    // The reader sleeps on its doorbell, armed: what the scribble undoes.
    common::wait_until_asleep_in_poll(tid_rx.recv().unwrap(), Duration::from_secs(10));
    assert_eq!(
        read_u64(&net.shm(), armed) as u32,
        1,
        "the reader sleeps unarmed"
    );
    patch(&net.shm(), armed, &0u32.to_le_bytes());
    sender.send(b"are you there?").unwrap();
    let (got, took, reader) = within(
        "a reader with a scribbled armed word",
        Duration::from_secs(20),
        move || receiving.join().unwrap(),
    );
    assert_eq!(got.unwrap(), b"are you there?");
    eprintln!("found after {took:?}");
    // Found by looking again, not woken: no doorbell waits in its socket
    // (one that rang would stay there until an empty receive drains it).
    assert!(
        !common::readable_now(reader.as_fd()),
        "a doorbell rang for a reader whose armed word was cleared"
    );
}

/// A member raises a poll-pattern reader's doorbell count, by a little
/// (doorbells that will never come: the reader's next drain waits for
/// them, at most `IN_FLIGHT_WAIT`, and the one after takes what is
/// queued) or by a lot (no count a waker could make: it drains all),
/// before every frame. The reader still gets every frame, promptly, and
/// once the frames stop, one empty receive leaves its fd quiet.
#[test]
fn a_scribbled_doorbell_count_never_stalls_or_deafens_a_poll_reader() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let (net, mut sender, mut reader) = sender_and_reader("scribbled-rings");
    let rings = entry_word(&reader, ENTRY_RINGS);
    let mut buf = [0u8; 1514];
    let _ = reader.try_recv(&mut buf);
    let frames = 200u64;
    let started = std::time::Instant::now();
    for n in 0..frames {
        let count = read_u64(&net.shm(), rings);
        let raised = count.wrapping_add(if n % 2 == 0 { 3 } else { 1 << 40 });
        patch(&net.shm(), rings, &raised.to_le_bytes());
        sender.send(&n.to_le_bytes()).unwrap();
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        assert_eq!(
            poll(&mut fds, PollTimeout::from(5000u16)).expect("poll"),
            1,
            "frame {n} never made the fd readable"
        );
        match reader.try_recv_after_poll(&mut buf) {
            Ok(8) => assert_eq!(buf[..8], n.to_le_bytes(), "frame {n}"),
            other => panic!("frame {n}: readable, yet {other:?}"),
        }
    }
    let took = started.elapsed();
    eprintln!("{frames} frames with scribbled counts in {took:?}");
    // A wait of 100 us at most every other frame, and the rest: far less
    // than a second (a stall of a poll timeout or more would show).
    assert!(
        took < Duration::from_secs(2),
        "{took:?} for {frames} frames"
    );
    if common::readable_now(reader.as_fd()) {
        assert!(matches!(
            reader.try_recv_after_poll(&mut buf),
            Err(ipn::RecvError::WouldBlock)
        ));
    }
    assert!(
        !common::readable_now(reader.as_fd()),
        "the fd stays readable with nothing to read"
    );
}

// ----- property test: random scribbles ---------------------------------

// The variants by their bare names, as the Debug form of a failing case
// (printed by scripts/soak.sh as a regression test) spells them.
#[allow(unused_imports)]
use Spot::*;

/// Where to scribble.
#[derive(Debug, Clone)]
enum Spot {
    /// Anywhere in the header page.
    Header(u64),
    /// A word of a port table entry.
    PortWord { port: u64, word: u64 },
    /// The cursor table (lossless) or what follows the port table.
    AfterPortTable(u64),
    /// A word of a ring descriptor (seq, pos, len and dst, flags).
    Descriptor { port: u64, slot: u64, word: u64 },
    /// A frame's descriptor made to say the frame is 802.1Q-tagged (and,
    /// if `hdr`, has a virtio-net header), at the position the scribble's
    /// value gives, rounded down to the frame alignment: the paths a
    /// reader takes for tagged frames and headers, at any position.
    Frame { port: u64, slot: u64, hdr: bool },
    /// Anywhere in the file.
    Anywhere(u64),
}

#[derive(Debug, Clone)]
struct Scribble {
    spot: Spot,
    value: u64,
    /// Write one byte instead of a whole word.
    byte: bool,
}

fn spot() -> impl Strategy<Value = Spot> {
    prop_oneof![
        (0u64..192).prop_map(Spot::Header),
        (0u64..4, 0..PORT_ENTRY_WORDS).prop_map(|(port, word)| Spot::PortWord { port, word }),
        (0u64..256).prop_map(Spot::AfterPortTable),
        (0u64..4, 0u64..8, 0u64..4).prop_map(|(port, slot, word)| Spot::Descriptor {
            port,
            slot,
            word
        }),
        (0u64..4, 0u64..8, any::<bool>()).prop_map(|(port, slot, hdr)| Spot::Frame {
            port,
            slot,
            hdr
        }),
        any::<u64>().prop_map(Spot::Anywhere),
    ]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(1u64 << 63),
        0u64..64,
        (0u64..64).prop_map(|n| n * 2 + 2), // plausible sequence words
        // Positions at the top of the position space, where any addition
        // overflows unless it wraps.
        (1u64..64).prop_map(|n| 0u64.wrapping_sub(n * 8)),
        any::<u64>(),
    ]
}

fn scribbles() -> impl Strategy<Value = Vec<Scribble>> {
    prop::collection::vec(
        (spot(), value(), any::<bool>()).prop_map(|(spot, value, byte)| Scribble {
            spot,
            value,
            byte,
        }),
        1..12,
    )
}

const PROP_PORTS: u32 = 4;
const PROP_SLOTS: u32 = 8;
const PROP_MTU: u32 = 128;

/// Applies `scribbles` to the shared file whose rings start at `rings`
/// (read from the header before any scribbling).
fn apply(shm: &Path, rings: u64, scribbles: &[Scribble]) {
    let ring_stride = read_u64(shm, HEADER_RING_STRIDE);
    let f = OpenOptions::new().read(true).write(true).open(shm).unwrap();
    let len = f.metadata().unwrap().len();
    let port_table_end = PORT_TABLE + PORT_ENTRY * u64::from(PROP_PORTS);
    for s in scribbles {
        if let Spot::Frame { port, slot, hdr } = s.spot {
            // (The stride is read from a header that may be scribbled on.)
            let desc = port
                .checked_mul(ring_stride)
                .and_then(|ring| ring.checked_add(rings + slot * DESCRIPTOR_SIZE))
                .filter(|desc| desc.saturating_add(DESCRIPTOR_SIZE) <= len);
            if let Some(desc) = desc {
                let pos = s.value & !7;
                let tag = DESCRIPTOR_TAGGED | (s.value as u32 & 0xfff);
                let offload = if hdr { DESCRIPTOR_WITH_VNET_HDR } else { 0 };
                f.write_all_at(&pos.to_le_bytes(), desc + DESCRIPTOR_POS)
                    .unwrap();
                f.write_all_at(&tag.to_le_bytes(), desc + DESCRIPTOR_TAG)
                    .unwrap();
                f.write_all_at(&offload.to_le_bytes(), desc + DESCRIPTOR_OFFLOAD)
                    .unwrap();
            }
            continue;
        }
        let offset = match s.spot {
            Spot::Header(o) => o,
            Spot::PortWord { port, word } => PORT_TABLE + port * PORT_ENTRY + word * 8,
            Spot::AfterPortTable(o) => port_table_end + o * 8,
            Spot::Descriptor { port, slot, word } => rings
                .wrapping_add(port.wrapping_mul(ring_stride))
                .wrapping_add(slot * DESCRIPTOR_SIZE + word * 8),
            Spot::Anywhere(o) => o % len,
            Spot::Frame { .. } => unreachable!("written above"),
        };
        let bytes = s.value.to_le_bytes();
        let bytes = if s.byte { &bytes[..1] } else { &bytes[..] };
        if offset
            .checked_add(bytes.len() as u64)
            .is_some_and(|end| end <= len)
        {
            f.write_all_at(bytes, offset).unwrap();
        }
    }
}

/// Exercises a port with bounded calls only; any result is fine except a
/// panic (or a hang, caught by the watchdog).
fn exercise(port: &mut Port, rounds: usize) {
    let mut buf = [0u8; 256];
    port.set_membership_events(true);
    for i in 0..rounds {
        let _ = port.try_send(&[i as u8; 60]);
        let _ = port.send_timeout(&[i as u8; 100], Duration::from_millis(2));
        for _ in 0..64 {
            if port.try_recv(&mut buf).is_err() {
                break;
            }
        }
        let _ = port.recv_timeout(&mut buf, Duration::from_millis(1));
        let _ = port.recv_message(&mut buf, Some(Duration::from_millis(1)));
        let _ = port
            .try_recv_message(&mut buf)
            .map(|m| matches!(m, Message::Frame(_)));
        let _ = port.status();
        let _ = port.membership();
    }
}

/// A small network and where its rings start.
fn fresh(name: &str, lossless: bool) -> (TestNet, u64) {
    let net = TestNet::create(
        name,
        &Config {
            max_ports: PROP_PORTS,
            ring_slots: Some(PROP_SLOTS),
            mtu: PROP_MTU,
            lossless,
            ..Config::default()
        },
    );
    let rings = read_u64(&net.shm(), RINGS_OFFSET);
    (net, rings)
}

/// A network scribbled on before anyone opens it (after some traffic).
#[derive(Debug, Clone)]
struct BeforeOpen {
    lossless: bool,
    traffic: usize,
    scribbles: Vec<Scribble>,
}

/// A network scribbled on while three ports are joined and exchanging
/// frames, and again after a newcomer joined.
#[derive(Debug, Clone)]
struct WhileJoined {
    lossless: bool,
    traffic: usize,
    scribbles: Vec<Scribble>,
    later: Vec<Scribble>,
}

fn scribbled_before_open(case: BeforeOpen) {
    let _watchdog = Watchdog::new(&format!("{case:?}"), Duration::from_secs(20));
    let (net, rings) = fresh("prop-before", case.lossless);
    {
        let mut a = Port::join(net.path(), &JoinOptions::default()).unwrap();
        let mut b = Port::join(net.path(), &JoinOptions::default()).unwrap();
        for i in 0..case.traffic {
            let _ = a.try_send(&[i as u8; 100]);
            let _ = b.try_send(&[i as u8; 30]);
        }
    }
    apply(&net.shm(), rings, &case.scribbles);
    if let Ok(network) = Network::open(net.path()) {
        let _ = network.status();
    }
    let mut ports: Vec<Port> = (0..3)
        .filter_map(|_| Port::join(net.path(), &JoinOptions::default()).ok())
        .collect();
    for p in &mut ports {
        exercise(p, 3);
    }
    if let Some(p) = ports.first_mut() {
        p.shutdown(Shutdown::Read);
        exercise(p, 1);
    }
}

fn scribbled_while_joined(case: WhileJoined) {
    let _watchdog = Watchdog::new(&format!("{case:?}"), Duration::from_secs(20));
    let (net, rings) = fresh("prop-joined", case.lossless);
    let mut ports: Vec<Port> = (0..3)
        .map(|i| Port::join(net.path(), &JoinOptions::described(format!("p{i}"))).unwrap())
        .collect();
    for i in 0..case.traffic {
        let _ = ports[i % 3].try_send(&[i as u8; 90]);
    }
    apply(&net.shm(), rings, &case.scribbles);
    for p in &mut ports {
        exercise(p, 2);
    }
    // A newcomer joins the scribbled network (or is refused).
    if let Ok(mut p) = Port::join(net.path(), &JoinOptions::default()) {
        exercise(&mut p, 2);
    }
    apply(&net.shm(), rings, &case.later);
    for p in &mut ports {
        exercise(p, 2);
    }
    if let Ok(network) = Network::open(net.path()) {
        let _ = network.status();
    }
}

fn before_open() -> impl Strategy<Value = BeforeOpen> {
    (any::<bool>(), 0usize..20, scribbles()).prop_map(|(lossless, traffic, scribbles)| BeforeOpen {
        lossless,
        traffic,
        scribbles,
    })
}

fn while_joined() -> impl Strategy<Value = WhileJoined> {
    (any::<bool>(), 0usize..20, scribbles(), scribbles()).prop_map(
        |(lossless, traffic, scribbles, later)| WhileJoined {
            lossless,
            traffic,
            scribbles,
            later,
        },
    )
}

proptest! {
    #![proptest_config(ipn_test_support::proptest_config!("bad_input", 100))]

    #[test]
    fn scribbled_shared_file_gives_ok_or_errors_when_opened(case in before_open()) {
        let _soak = common::soak_guard("scribbled_before_open", &case);
        scribbled_before_open(case);
    }

    #[test]
    fn scribbled_shared_file_gives_ok_or_errors_while_ports_are_joined(case in while_joined()) {
        let _soak = common::soak_guard("scribbled_while_joined", &case);
        scribbled_while_joined(case);
    }
}

// ----- regressions found by the property tests -----------------------------
//
// Each is a case a random run found, kept as it was printed (scripts/soak.sh
// prints new ones in this form).

/// A reader went round `Read::Lapped` forever: a scribbled head (port 1's)
/// and sequence words that always said "lapped" again. (Found with the
/// fixed-slot rings of layout version 2, where the descriptor words below
/// were slot headers; kept as a scribble of the same places.)
#[test]
fn regression_reader_lapped_forever_by_a_scribbled_head() {
    scribbled_before_open(BeforeOpen {
        lossless: false,
        traffic: 14,
        scribbles: vec![
            Scribble {
                spot: Spot::Anywhere(4960577996183314001),
                value: 1 << 63,
                byte: true,
            },
            Scribble {
                spot: Spot::Descriptor {
                    port: 1,
                    slot: 0,
                    word: 1,
                },
                value: 1 << 63,
                byte: false,
            },
            Scribble {
                spot: Spot::Descriptor {
                    port: 3,
                    slot: 4,
                    word: 1,
                },
                value: 11990285926018086582,
                byte: false,
            },
            Scribble {
                spot: Spot::Anywhere(3377777022870812011),
                value: 0,
                byte: false,
            },
            Scribble {
                spot: Spot::PortWord {
                    port: 1,
                    word: ENTRY_HEAD / 8,
                },
                value: 16367321619121388793,
                byte: false,
            },
        ],
    });
}

/// A tagged frame whose descriptor puts it at the very top of the position
/// space (`pos` = 2^64 - 8): copying its bytes after the put-back tag added
/// to the position, and a debug-build reader panicked with "attempt to add
/// with overflow" (release builds wrapped, as positions must).
#[test]
fn regression_tagged_frame_at_the_top_of_the_position_space() {
    // The tag and offload words share the descriptor's last 8 bytes.
    assert_eq!(DESCRIPTOR_TAG % 8, 0);
    let tagged_vlan_10 = u64::from(DESCRIPTOR_TAGGED | 10);
    scribbled_while_joined(WhileJoined {
        lossless: false,
        traffic: 3,
        scribbles: vec![
            Scribble {
                spot: Spot::Descriptor {
                    port: 0,
                    slot: 0,
                    word: DESCRIPTOR_POS / 8,
                },
                value: 0xffff_ffff_ffff_fff8,
                byte: false,
            },
            Scribble {
                spot: Spot::Descriptor {
                    port: 0,
                    slot: 0,
                    word: DESCRIPTOR_TAG / 8,
                },
                value: tagged_vlan_10,
                byte: false,
            },
        ],
        later: vec![],
    });
}

/// A reader's pending bitmap with bits set beyond the network's last port
/// (its last word has room for 64): the reader must not take them for
/// senders (an index out of range of every per-port table).
#[test]
fn pending_bits_beyond_the_last_port_are_not_senders() {
    let (net, _) = fresh("pending-beyond", false);
    let mut reader = Port::join(net.path(), &JoinOptions::default()).unwrap();
    let mut sender = Port::join(net.path(), &JoinOptions::default()).unwrap();
    let pending = read_u64(&net.shm(), HEADER_PENDING_TABLE_OFFSET);
    // One word per 64 ports, each reader's bitmap on its own cache line.
    let stride = 64;
    let mine = pending + u64::from(reader.index()) * stride;
    patch(&net.shm(), mine, &u64::MAX.to_le_bytes());
    let sent = frame::make(1, 0, 60);
    sender.send(&sent).unwrap();
    let mut buf = [0u8; 256];
    let n = reader
        .recv_timeout(&mut buf, Duration::from_secs(2))
        .unwrap();
    assert_eq!(&buf[..n], &sent[..]);
    patch(&net.shm(), mine, &u64::MAX.to_le_bytes());
    assert!(matches!(
        reader.try_recv(&mut buf),
        Err(ipn::RecvError::WouldBlock)
    ));
}
