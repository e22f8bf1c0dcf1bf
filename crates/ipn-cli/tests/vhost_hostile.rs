//! `ipn vhost-user` against a hostile guest: a vhost-user frontend that
//! speaks the protocol over the socket, as QEMU does, and writes into the
//! guest memory and rings whatever a root user inside a VM could.
//!
//! What each test proves: the guest may break its own device (the
//! connection is closed, saying why), but the backend keeps listening and
//! serves the next frontend, answers SIGTERM within a second, never reads
//! outside guest memory, and never holds up a lossless network for long.
//! A well-behaved frontend moving frames both ways comes first, so that
//! the hostile cases cannot pass by the harness doing nothing.
//!
//! The guest's memory is a memfd shared with the backend; the split
//! queues are laid out in it by hand (`Guest`), as a driver would.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use ipn::{JoinOptions, Port};
use ipn_test_support::require_root;
use nix::sys::signal::Signal;
use vhost::vhost_user::Frontend;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// The guest's receive and transmit queues.
const RX: usize = 0;
const TX: usize = 1;
/// Entries per queue.
const QUEUE_SIZE: u16 = 256;
/// Guest memory: the two queues' rings, then buffers.
const MEM_SIZE: u64 = 1 << 20;
const BUFFERS: u64 = 0x10000;
/// Where the frontend says the guest's memory is in its own address
/// space (vring addresses are given in it).
const UVA: u64 = 0x7f00_0000_0000;
/// virtio feature bits.
const VERSION_1: u64 = 1 << 32;
const EVENT_IDX: u64 = 1 << 29;
const INDIRECT_DESC: u64 = 1 << 28;
/// Descriptor flags.
const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;
/// The guest's virtio-net header (virtio 1.0).
const HDR: usize = 12;

/// The backend answering a signal: the bound the issue sets.
const SIGNAL_LIMIT: Duration = Duration::from_secs(1);

/// Where queue `q`'s descriptor table, avail and used rings are.
fn desc_table(q: usize) -> u64 {
    q as u64 * 0x4000
}
fn avail_ring(q: usize) -> u64 {
    desc_table(q) + 0x1000
}
fn used_ring(q: usize) -> u64 {
    desc_table(q) + 0x2000
}

/// A frame from the guest's MAC, of `len` bytes, its payload `fill`.
fn frame(len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![fill; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// A guest: its memory (a memfd), a frontend connection, the queues'
/// eventfds, and what it made available so far.
struct Guest {
    file: File,
    mem: GuestMemoryMmap,
    frontend: Frontend,
    kicks: [EventFd; 2],
    calls: [EventFd; 2],
    avail: [u16; 2],
}

fn memfd(size: u64) -> File {
    let fd =
        nix::sys::memfd::memfd_create(c"ipn-test-guest", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .expect("memfd_create");
    let file = File::from(fd);
    file.set_len(size).unwrap();
    file
}

impl Guest {
    /// Connects to the backend's socket (as QEMU with reconnect=1 does,
    /// retrying while it is not there yet).
    #[track_caller]
    fn connect(socket: &Path) -> Guest {
        let deadline = Instant::now() + LONG;
        let frontend = loop {
            match Frontend::connect(socket, 2) {
                Ok(frontend) => break frontend,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("connecting to {}: {e}", socket.display()),
            }
        };
        Guest::with(frontend)
    }

    /// A guest whose frontend is `frontend`.
    fn with(frontend: Frontend) -> Guest {
        let file = memfd(MEM_SIZE);
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            MEM_SIZE as usize,
            Some(FileOffset::new(file.try_clone().unwrap(), 0)),
        )])
        .expect("mapping the guest's memory");
        let eventfd = || EventFd::new(libc::EFD_NONBLOCK).unwrap();
        Guest {
            file,
            mem,
            frontend,
            kicks: [eventfd(), eventfd()],
            calls: [eventfd(), eventfd()],
            avail: [0, 0],
        }
    }

    /// The frontend's side of the set-up, up to the memory table.
    fn negotiate(&self, features: u64) {
        self.frontend.set_owner().expect("SET_OWNER");
        let offered = self.frontend.get_features().expect("GET_FEATURES");
        assert_eq!(
            offered & features,
            features,
            "features offered: {offered:#x}"
        );
        self.frontend.set_features(features).expect("SET_FEATURES");
    }

    /// The memory table: all of guest memory, at `mmap_offset` of the memfd.
    fn set_memory(&self, mmap_offset: u64) -> Result<(), vhost::Error> {
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM_SIZE,
            userspace_addr: UVA,
            mmap_offset,
            mmap_handle: self.file.as_raw_fd(),
        };
        self.frontend.set_mem_table(&[region]).map(|_| ())
    }

    /// Hands queue `q` (of `size` entries) over to the backend; without
    /// VHOST_USER_F_PROTOCOL_FEATURES it runs from the kick fd on.
    fn start_queue(&self, q: usize, size: u16) -> Result<(), vhost::Error> {
        self.frontend.set_vring_num(q, size)?;
        let config = VringConfigData {
            queue_max_size: QUEUE_SIZE,
            queue_size: size,
            flags: 0,
            desc_table_addr: UVA + desc_table(q),
            used_ring_addr: UVA + used_ring(q),
            avail_ring_addr: UVA + avail_ring(q),
            log_addr: None,
        };
        self.frontend.set_vring_addr(q, &config)?;
        self.frontend.set_vring_base(q, 0)?;
        self.frontend.set_vring_call(q, &self.calls[q])?;
        self.frontend.set_vring_kick(q, &self.kicks[q])
    }

    /// A guest as Linux's virtio-net driver sets it up: virtio 1.0, event
    /// index, indirect descriptors, both queues of 256.
    #[track_caller]
    fn up(socket: &Path) -> Guest {
        Guest::connect(socket).set_up()
    }

    #[track_caller]
    fn set_up(self) -> Guest {
        let guest = self;
        guest.negotiate(VERSION_1 | EVENT_IDX | INDIRECT_DESC);
        guest.set_memory(0).expect("SET_MEM_TABLE");
        for q in [RX, TX] {
            guest
                .start_queue(q, QUEUE_SIZE)
                .expect("the queue's set-up");
        }
        guest
    }

    fn write_desc(&self, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&d, GuestAddress(at)).unwrap();
    }

    /// Descriptor `i` of queue `q`.
    fn desc(&self, q: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.write_desc(desc_table(q) + 16 * u64::from(i), addr, len, flags, next);
    }

    /// Puts chain `head` in queue `q`'s avail ring and publishes it.
    fn make_available(&mut self, q: usize, head: u16) {
        let slot = u64::from(self.avail[q] % QUEUE_SIZE);
        self.mem
            .write_obj(head.to_le(), GuestAddress(avail_ring(q) + 4 + 2 * slot))
            .unwrap();
        self.avail[q] = self.avail[q].wrapping_add(1);
        self.set_avail_idx(q, self.avail[q]);
    }

    fn set_avail_idx(&self, q: usize, idx: u16) {
        self.mem
            .write_obj(idx.to_le(), GuestAddress(avail_ring(q) + 2))
            .unwrap();
    }

    fn kick(&self, q: usize) {
        self.kicks[q].write(1).unwrap();
    }

    fn used_idx(&self, q: usize) -> u16 {
        u16::from_le(self.mem.read_obj(GuestAddress(used_ring(q) + 2)).unwrap())
    }

    /// Waits until queue `q`'s used index reaches `idx`.
    #[track_caller]
    fn wait_used(&self, q: usize, idx: u16) {
        let deadline = Instant::now() + LONG;
        while self.used_idx(q) != idx {
            assert!(
                Instant::now() < deadline,
                "queue {q}: used index {} never reached {idx}",
                self.used_idx(q)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `frame` from the guest: one readable descriptor, the header
    /// and the frame, at buffer `slot`.
    fn transmit(&mut self, slot: u16, frame: &[u8]) {
        let at = BUFFERS + u64::from(slot) * 0x1000;
        self.mem.write_slice(&[0; HDR], GuestAddress(at)).unwrap();
        self.mem
            .write_slice(frame, GuestAddress(at + HDR as u64))
            .unwrap();
        self.desc(TX, slot, at, (HDR + frame.len()) as u32, 0, 0);
        self.make_available(TX, slot);
        self.kick(TX);
    }

    /// Posts a 4 KiB receive buffer at slot `slot` (of the RX area).
    fn post_rx(&mut self, slot: u16) -> u64 {
        let at = BUFFERS + 0x80000 + u64::from(slot) * 0x1000;
        self.desc(RX, slot, at, 0x1000, WRITE, 0);
        self.make_available(RX, slot);
        self.kick(RX);
        at
    }
}

/// A backend and the network it serves.
struct Setup {
    net: Net,
    socket: PathBuf,
    backend: Attached,
}

impl Setup {
    #[track_caller]
    fn new(name: &str, create: &[&str]) -> Setup {
        let net = Net::created(name, create);
        let socket = net.file("vhost.sock");
        let backend =
            Attached::start(&["vhost-user", net.p(), "--socket", socket.to_str().unwrap()]);
        Setup {
            net,
            socket,
            backend,
        }
    }

    fn port(&self) -> Port {
        Port::join(&self.net.path, &JoinOptions::described("test peer")).expect("joining")
    }

    /// A guest set up as Linux's driver does, whose queues the backend
    /// is known to run: a frame it sent reached `peer` (the backend takes
    /// the set-up messages in order, the receive queue first; frames from
    /// the network before a queue runs are dropped, as by a NIC whose
    /// link is down).
    #[track_caller]
    fn running_guest(&mut self, peer: &mut Port) -> Guest {
        let mut guest = Guest::up(&self.socket);
        self.backend.wait_for("QEMU connected");
        let sent = frame(60, 0x5a);
        guest.transmit(0, &sent);
        let mut buf = vec![0u8; 2048];
        let len = peer
            .recv_timeout(&mut buf, LONG)
            .expect("the guest's frame reaches the network");
        assert_eq!(&buf[..len], &sent[..]);
        guest.wait_used(TX, 1);
        guest
    }

    /// A well-behaved guest connects and sends a frame that `peer`
    /// receives: the backend serves.
    #[track_caller]
    fn serves_a_new_guest(&mut self, peer: &mut Port) {
        drop(self.running_guest(peer));
        self.backend.wait_for("QEMU disconnected");
    }

    /// SIGTERM ends the backend within [`SIGNAL_LIMIT`], cleanly.
    #[track_caller]
    fn terminate(self) -> String {
        let (status, said) = self.backend.signal_and_wait(Signal::SIGTERM, SIGNAL_LIMIT);
        assert!(
            status.code() == Some(143) || status.signal() == Some(15) || status.success(),
            "{status:?}: {said}"
        );
        assert!(!self.socket.exists(), "the socket is removed");
        said
    }
}

#[test]
fn a_well_behaved_guest_moves_frames_both_ways() {
    require_root("the backend's socket takes the network's owner", &[]);
    let mut setup = Setup::new("vh-good", &[]);
    let mut peer = setup.port();
    let mut guest = Guest::up(&setup.socket);
    setup.backend.wait_for("QEMU connected");
    // Guest -> network.
    let sent = frame(100, 0x11);
    guest.transmit(0, &sent);
    let mut buf = vec![0u8; 2048];
    let len = peer
        .recv_timeout(&mut buf, LONG)
        .expect("a frame from the guest");
    assert_eq!(&buf[..len], &sent[..]);
    guest.wait_used(TX, 1);
    // Network -> guest: one receive buffer, a frame into it after the
    // 12-byte header.
    let at = guest.post_rx(0);
    let back = frame(80, 0x22);
    peer.send(&back).unwrap();
    guest.wait_used(RX, 1);
    let mut got = vec![0u8; HDR + back.len()];
    guest.mem.read_slice(&mut got, GuestAddress(at)).unwrap();
    assert_eq!(&got[HDR..], &back[..], "the frame, after the header");
    drop(guest);
    setup.backend.wait_for("QEMU disconnected");
    setup.serves_a_new_guest(&mut peer);
    setup.terminate();
}

#[test]
fn a_guest_whose_avail_index_runs_ahead_breaks_only_its_own_device() {
    require_root("the backend's socket takes the network's owner", &[]);
    // Lossless: a stuck backend would hold every sender up.
    let mut setup = Setup::new("vh-ahead", &["--lossless"]);
    let mut peer = setup.port();
    for q in [TX, RX] {
        let guest = setup.running_guest(&mut peer);
        // 1000 chains promised on a ring of 256.
        guest.set_avail_idx(q, guest.avail[q].wrapping_add(1000));
        guest.kick(q);
        if q == RX {
            // The receive queue is looked at when a frame comes.
            peer.send(&frame(60, 1)).unwrap();
        }
        let line = setup.backend.wait_for("QEMU disconnected");
        assert!(
            line.contains("the device broke") && line.contains("queue"),
            "the reason is said: {line}"
        );
        drop(guest);
    }
    // The network still flows: a lossless sender is not held up by the
    // backend (it reads and drops while no guest is there), its only
    // other reader.
    drop(peer);
    let mut sender = setup.port();
    for i in 0..2000u32 {
        let mut f = frame(60, 3);
        f[14..18].copy_from_slice(&i.to_le_bytes());
        sender
            .send_timeout(&f, LONG)
            .expect("a lossless send is not held up by the backend");
    }
    drop(sender);
    let mut peer = setup.port();
    setup.serves_a_new_guest(&mut peer);
    setup.terminate();
}

#[test]
fn hostile_rings_cost_the_guest_its_frames_not_the_backend_its_life() {
    require_root("the backend's socket takes the network's owner", &[]);
    let mut setup = Setup::new("vh-rings", &[]);
    let mut peer = setup.port();
    // Each: a bad transmit chain. The frame is refused (the chain comes
    // back used) or the device breaks; either way the next guest is served.
    type Scenario = (&'static str, fn(&mut Guest));
    let scenarios: [Scenario; 5] = [
        ("a descriptor loop", |g| {
            g.desc(TX, 0, BUFFERS, 64, NEXT, 1);
            g.desc(TX, 1, BUFFERS, 64, NEXT, 0);
            g.make_available(TX, 0);
        }),
        ("an address outside the memory table", |g| {
            g.desc(TX, 0, 1 << 40, 1500, 0, 0);
            g.make_available(TX, 0);
        }),
        ("a buffer running past the end of guest memory", |g| {
            g.desc(TX, 0, MEM_SIZE - 16, 4096, 0, 0);
            g.make_available(TX, 0);
        }),
        ("a giant indirect table", |g| {
            g.desc(TX, 0, BUFFERS, 1 << 30, INDIRECT, 0);
            g.make_available(TX, 0);
        }),
        ("a head index past the ring", |g| {
            g.make_available(TX, QUEUE_SIZE + 7);
        }),
    ];
    for (what, bad) in scenarios {
        eprintln!("[test] {what}");
        let mut guest = Guest::up(&setup.socket);
        setup.backend.wait_for("QEMU connected");
        bad(&mut guest);
        guest.kick(TX);
        // Handled: the chain comes back used, or the connection ends.
        let deadline = Instant::now() + LONG;
        while guest.used_idx(TX) != 1 {
            if guest.frontend.get_features().is_err() {
                break;
            }
            assert!(Instant::now() < deadline, "{what}: never handled");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            peer.try_recv(&mut [0u8; 2048]).is_err(),
            "{what}: nothing reached the network"
        );
        drop(guest);
        setup.backend.wait_for("QEMU disconnected");
        setup.serves_a_new_guest(&mut peer);
    }
    // A loop inside an indirect table is cut at the table's length (the
    // descriptors it can hold): bounded work, and a frame no longer than
    // what the table describes, if any.
    let mut guest = Guest::up(&setup.socket);
    setup.backend.wait_for("QEMU connected");
    let table = BUFFERS + 0x8000;
    guest.write_desc(table, BUFFERS, 40, NEXT, 1);
    guest.write_desc(table + 16, BUFFERS + 0x100, 64, NEXT, 0);
    guest.desc(TX, 0, table, 32, INDIRECT, 0);
    guest.make_available(TX, 0);
    guest.kick(TX);
    guest.wait_used(TX, 1);
    let mut buf = [0u8; 2048];
    if let Ok(len) = peer.recv_timeout(&mut buf, Duration::from_millis(200)) {
        assert!(
            len <= 40 + 64 - HDR,
            "an indirect loop gave a {len}-byte frame"
        );
    }
    drop(guest);
    setup.backend.wait_for("QEMU disconnected");
    setup.serves_a_new_guest(&mut peer);
    setup.terminate();
}

#[test]
fn hostile_messages_end_the_connection_and_the_backend_listens_again() {
    require_root("the backend's socket takes the network's owner", &[]);
    let mut setup = Setup::new("vh-messages", &[]);
    let mut peer = setup.port();

    // A memory table whose region lies past the end of its memfd: mapped
    // as asked, the first access would be a SIGBUS.
    let guest = Guest::connect(&setup.socket);
    setup.backend.wait_for("QEMU connected");
    guest.negotiate(VERSION_1 | EVENT_IDX);
    let _ = guest.set_memory(MEM_SIZE * 4);
    let line = setup.backend.wait_for("QEMU disconnected");
    assert!(line.contains("outside"), "the refusal is explained: {line}");
    drop(guest);
    setup.serves_a_new_guest(&mut peer);

    // Absurd ring sizes: zero, more than the backend takes, not a power
    // of two.
    for size in [0u16, 32768, 3] {
        let guest = Guest::connect(&setup.socket);
        setup.backend.wait_for("QEMU connected");
        guest.negotiate(VERSION_1 | EVENT_IDX);
        guest.set_memory(0).unwrap();
        let _ = guest.start_queue(TX, size);
        drop(guest);
        setup.backend.wait_for("QEMU disconnected");
        setup.serves_a_new_guest(&mut peer);
    }

    // A frontend that disconnects in the middle of a message.
    let mut half = UnixStream::connect(&setup.socket).unwrap();
    setup.backend.wait_for("QEMU connected");
    half.write_all(&[1, 0, 0, 0, 1, 0]).unwrap();
    drop(half);
    setup.backend.wait_for("QEMU disconnected");
    setup.serves_a_new_guest(&mut peer);
    setup.terminate();
}

#[test]
fn a_guest_that_takes_nothing_holds_a_lossless_network_up_only_briefly() {
    require_root("the backend's socket takes the network's owner", &[]);
    let mut setup = Setup::new("vh-stall", &["--lossless"]);
    let mut peer = setup.port();
    // Connected, queues running, and not one receive buffer, ever.
    let guest = setup.running_guest(&mut peer);
    // Another reader, reading all along.
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut received = 0;
        while peer.recv_timeout(&mut buf, LONG).is_ok() {
            received += 1;
            if received == 3000 {
                break;
            }
        }
        received
    });
    let mut sender = setup.port();
    let started = Instant::now();
    for i in 0..3000u32 {
        let mut f = frame(60, 4);
        f[14..18].copy_from_slice(&i.to_le_bytes());
        sender
            .send_timeout(&f, LONG)
            .expect("the stalled guest holds the network up for seconds at most");
    }
    let took = started.elapsed();
    eprintln!("[test] 3000 lossless frames past a stalled guest in {took:?}");
    // A lower bound: the backend held the frames for the guest as long
    // as it promises (2 s), before dropping them.
    assert!(
        took >= Duration::from_millis(1900),
        "the guest was given its time: {took:?}"
    );
    assert_eq!(
        reader.join().unwrap(),
        3000,
        "the other reader lost nothing"
    );
    drop(guest);
    setup.backend.wait_for("QEMU disconnected");
    let said = setup.terminate();
    assert!(
        counted(&said, "by the guest") > 0,
        "the guest's drops are counted: {said}"
    );
}

#[test]
fn sigterm_ends_the_backend_within_a_second_in_every_state() {
    require_root("the backend's socket takes the network's owner", &[]);
    // Waiting for a frontend.
    Setup::new("vh-term-wait", &[]).terminate();
    // Connected, mid-handshake (no memory table yet).
    let mut setup = Setup::new("vh-term-handshake", &[]);
    let guest = Guest::connect(&setup.socket);
    setup.backend.wait_for("QEMU connected");
    guest.negotiate(VERSION_1);
    setup.terminate();
    drop(guest);
    // Running, with a frame waiting for receive buffers that never come.
    let mut setup = Setup::new("vh-term-running", &["--lossless"]);
    let mut peer = setup.port();
    let guest = setup.running_guest(&mut peer);
    peer.send(&frame(60, 9)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    setup.terminate();
    drop(guest);
    // After the guest broke its device.
    let mut setup = Setup::new("vh-term-broken", &[]);
    let guest = Guest::up(&setup.socket);
    setup.backend.wait_for("QEMU connected");
    guest.set_avail_idx(TX, 1000);
    guest.kick(TX);
    setup.backend.wait_for("QEMU disconnected");
    setup.terminate();
    drop(guest);
}

#[test]
fn the_socket_admits_whoever_may_join_whatever_the_umask() {
    require_root(
        "uses setpriv to connect as another user",
        &["setpriv", "perl"],
    );
    let net = Net::created("vh-mode", &["--mode", "0770"]);
    let socket = net.file("vhost.sock");
    // Umask 000 for the backend only, through the shell (which execs it).
    let backend = Attached::start_shell(&format!(
        "umask 000; exec {} vhost-user {} --socket {}",
        BIN,
        net.p(),
        socket.display()
    ));
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    let shm = std::fs::metadata(net.path.join("shm")).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o660,
        "the network's mode, not 0777"
    );
    assert_eq!(meta.gid(), shm.gid(), "the network's group");
    // Someone outside the network's group cannot connect.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "perl",
            "-MSocket",
            "-e",
        ])
        .arg(
            "socket(my $s, PF_UNIX, SOCK_STREAM, 0) or exit 4; \
             connect($s, pack_sockaddr_un($ARGV[0])) and exit 0; exit($!{EACCES} ? 3 : 5)",
        )
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "refused: {}", stderr(&out));
    let (status, said) = backend.signal_and_wait(Signal::SIGTERM, SIGNAL_LIMIT);
    assert!(
        status.code() == Some(143) || status.signal() == Some(15),
        "{status:?} {said}"
    );
}

/// The number before `what` in the backend's summary ("refused: N by
/// the network, M by the guest").
fn counted(said: &str, what: &str) -> u64 {
    let at = said
        .rfind(what)
        .unwrap_or_else(|| panic!("no {what:?} in {said}"));
    said[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no count before {what:?} in {said}"))
}

/// The backend connecting to a frontend that listens (QEMU's
/// `server=on`, libvirt's `mode='server'`): it waits for the socket to
/// appear, serves, and connects again after the frontend went away.
#[test]
fn connecting_to_a_listening_frontend_and_again_after_it_went() {
    require_root("the backend's socket takes the network's owner", &[]);
    let net = Net::created("vh-connect", &[]);
    let socket = net.file("qemu.sock");
    let mut backend =
        Attached::start(&["vhost-user", net.p(), "--connect", socket.to_str().unwrap()]);
    assert!(backend.joined.contains("connecting"), "{}", backend.joined);
    let mut peer = Port::join(&net.path, &JoinOptions::described("test peer")).unwrap();
    // Nobody listens yet: the backend keeps trying.
    std::thread::sleep(Duration::from_millis(300));
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    for round in 0..2 {
        let (stream, _) = listener.accept().expect("the backend connects");
        backend.wait_for("QEMU connected");
        let mut guest = Guest::with(Frontend::from_stream(stream, 2)).set_up();
        let sent = frame(60, round);
        guest.transmit(0, &sent);
        let mut buf = vec![0u8; 2048];
        let len = peer
            .recv_timeout(&mut buf, LONG)
            .expect("the guest's frame");
        assert_eq!(&buf[..len], &sent[..]);
        let at = guest.post_rx(0);
        let back = frame(70, 0x40 + round);
        peer.send(&back).unwrap();
        guest.wait_used(RX, 1);
        let mut got = vec![0u8; HDR + back.len()];
        guest.mem.read_slice(&mut got, GuestAddress(at)).unwrap();
        assert_eq!(&got[HDR..], &back[..]);
        // QEMU restarts (the connection drops): the backend connects again.
        drop(guest);
        backend.wait_for("QEMU disconnected");
    }
    // Nobody listening any more: SIGTERM still ends it within a second.
    drop(listener);
    std::fs::remove_file(&socket).unwrap();
    let (status, said) = backend.signal_and_wait(Signal::SIGTERM, SIGNAL_LIMIT);
    assert!(
        status.code() == Some(143) || status.signal() == Some(15),
        "{status:?} {said}"
    );
    // Two served; a third may have been made to the listener's backlog
    // before it closed.
    assert!(counted(&said, "connections") >= 2, "{said}");
}
