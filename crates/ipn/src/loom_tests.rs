//! Model checking of the concurrency core with loom, on the real code.
//!
//! Built only with `RUSTFLAGS="--cfg loom"`. In that build the atomics of
//! the whole crate are loom's (see `sync`), the shared file is held in
//! memory (`SharedFile::in_memory`), and a port's bell is a count of
//! wake-ups per port (`wake::LoomBell`) instead of a socket. Everything
//! else is the code that runs: `Port::try_send` (ring write, pending bits,
//! the sender's fence, waking), `Port::try_recv` and
//! `Port::try_recv_after_poll` (pending bits, ring reads,
//! switch filtering, draining, arming, the look after arming, disarming),
//! lossless room. Loom runs each test under every interleaving it can
//! reach, and with every value a relaxed or acquire load may return under
//! the C++ memory model (within `LOOM_MAX_PREEMPTIONS` forced thread
//! switches, 2 unless set). Checked:
//!
//! - no lost wake-up: a reader that found nothing and would sleep was rung
//!   (exactly once per arming, with one or two senders), and then finds
//!   the frame; a reader that found the frame after arming keeps its fd
//!   readable once, never twice;
//! - readable exactly while frames wait: a reader in QEMU's pattern
//!   (`Port::try_recv_after_poll`), which drains and arms after taking a
//!   frame when nothing else waits, leaves one wake-up queued while a
//!   frame waits and none when none does (the look-ahead, which depends
//!   on wall-clock time, is off under loom), also when the doorbell wakes
//!   it before its ringer has run another instruction;
//! - the ring's seqlocks never deliver a torn frame, even when large frames
//!   wrap around the ring's bytes and overwrite older ones while a reader
//!   copies them: every frame received is whole, frames arrive in order,
//!   and every frame is received or counted as dropped;
//! - lossless flow control: the sender never overwrites a frame, or bytes
//!   of one, that the reader has not finished reading; a sender waiting
//!   for room goes on when the reader it waits for dies while another
//!   joins, and the newcomer loses nothing sent after it joined;
//! - switch mode: a unicast frame reaches its addressee (or its doorbell),
//!   never another port;
//! - batches (`Port::batch`): the frames of a batch ring a sleeping reader
//!   once, at the batch's end, never zero times; a lossless batch that runs
//!   out of room wakes its readers before it waits, so they make room.
//!
//! What breaking the core does here is shown by scripts/loom-mutations.sh
//! (run by scripts/test.sh): each of its mutations — the sleeper's or the
//! sender's SeqCst fence removed, the seqlock's Release store, Release
//! fence or Acquire fence weakened or removed, a sender that counts dead
//! readers — makes these models fail, and the script fails if one does
//! not.
//!
//! Limits: loom explores interleavings of whole operations, so it never
//! lets a load read a store that executes later (load buffering). The
//! lossless cursor is exactly such a guard: the reader copies a frame's
//! bytes and then publishes its cursor (Release); the sender loads the
//! cursor (Acquire) and then overwrites those bytes. Weakening either to
//! `Relaxed` would let the reader's copy see the later overwrite on real
//! hardware, but loom cannot produce that execution: both mutations were
//! tried and pass. No model here can catch them; they rest on the
//! argument above. Wall-clock waits are not modelled: the tests use the
//! non-blocking calls (`try_send`, `try_recv`), which is where every
//! atomic of the data path is touched, and death is modelled as its
//! effect on the shared file (the slot marked dead), not as a lock.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p
//! ipn --release --lib loom` (scripts/test.sh does).

use loom::sync::Arc;
use loom::thread;

use crate::config::{JoinOptions, Protocol};
use crate::error::{RecvError, SendError};
use crate::membership;
use crate::port::Port;
use crate::shm::layout::{Geometry, FLAG_LOSSLESS, MIN_MTU};
use crate::shm::SharedFile;
use crate::sync::{AtomicU64, Ordering};
use crate::wake::LoomBell;

/// Default bound on forced preemptions per execution.
const PREEMPTIONS: usize = 2;

fn model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTIONS);
    }
    builder.check(test);
}

/// A network of three ports held in memory, and the wake-ups queued at
/// each port's bell.
struct Net {
    /// A std `Arc`, as in `Port` (its count is not part of the protocol).
    shm: std::sync::Arc<SharedFile>,
    queued: Arc<Vec<AtomicU64>>,
}

impl Net {
    /// `ring_slots` descriptors and the smallest ring of bytes for the
    /// smallest MTU (two frames of 64 bytes: 128 bytes).
    fn new(protocol: Protocol, ring_slots: u32, flags: u32) -> Net {
        let geometry = Geometry::compute(
            protocol_code(protocol),
            3,
            MIN_MTU,
            ring_slots,
            Geometry::least_ring_bytes(MIN_MTU),
            flags,
        )
        .expect("geometry");
        Net {
            shm: std::sync::Arc::new(SharedFile::in_memory(geometry)),
            queued: Arc::new((0..3).map(|_| AtomicU64::new(0)).collect()),
        }
    }

    /// Port `index`, reading and writing, joined now.
    fn port(&self, index: u32) -> Port {
        let bell = LoomBell {
            me: index,
            queued: self.queued.clone(),
        };
        Port::in_memory(
            self.shm.clone(),
            index,
            bell,
            &JoinOptions::described("loom"),
        )
    }

    /// Wake-ups waiting at port `index`'s bell.
    fn queued(&self, index: u32) -> u64 {
        self.queued[index as usize].load(Ordering::SeqCst)
    }
}

fn protocol_code(protocol: Protocol) -> u32 {
    match protocol {
        Protocol::Hub => 0,
        Protocol::Switch => 1,
    }
}

/// Frame `n`: every byte `n + 1` (never 0, the value of unwritten memory),
/// `len` bytes long.
fn frame(n: u8, len: usize) -> Vec<u8> {
    vec![n + 1; len]
}

/// Which frame `bytes` is, if it is a whole frame made by [`frame`] with
/// length `len_of(n)`.
fn whole_frame(bytes: &[u8], len_of: impl Fn(u8) -> usize) -> u8 {
    let n = bytes[0].wrapping_sub(1);
    assert_eq!(bytes.len(), len_of(n), "length of frame {n}");
    assert!(
        bytes.iter().all(|&b| b == n + 1),
        "torn frame {n}: {bytes:?}"
    );
    n
}

const A: u32 = 0;
const B: u32 = 1;
const READER: u32 = 2;

/// Sends frame 0 (20 bytes) from port A and has the reader take it, so
/// that the reader starts what follows neither armed nor fresh. Returns
/// the reader and the sender.
fn reader_past_frame_0(net: &Net, buf: &mut [u8]) -> (Port, Port) {
    let mut reader = net.port(READER);
    let mut sender = net.port(A);
    sender.try_send(&frame(0, 20)).unwrap();
    assert_eq!(reader.try_recv(buf).ok(), Some(20));
    (reader, sender)
}

/// Sends frame 1 (20 bytes) from `sender`, on a thread of its own.
fn send_frame_1(mut sender: Port) -> thread::JoinHandle<Port> {
    thread::spawn(move || {
        sender.try_send(&frame(1, 20)).unwrap();
        sender
    })
}

/// The reader has read one frame (so it starts neither armed nor fresh),
/// then a sender sends while the reader looks, finds nothing, arms and
/// looks again.
#[test]
fn loom_no_lost_wakeup() {
    model(|| {
        let net = Net::new(Protocol::Hub, 4, 0);
        let mut buf = [0u8; 64];
        let (mut reader, sender) = reader_past_frame_0(&net, &mut buf);
        let sending = send_frame_1(sender);
        let first = reader.try_recv(&mut buf);
        let _sender = sending.join().unwrap();
        match first {
            Ok(len) => {
                whole_frame(&buf[..len], |_| 20);
                assert!(net.queued(READER) <= 1, "fd readable more than once");
            }
            Err(RecvError::WouldBlock) => {
                assert_eq!(net.queued(READER), 1, "lost wake-up: no doorbell");
                let len = reader.try_recv(&mut buf).expect("woken, finds the frame");
                assert_eq!(whole_frame(&buf[..len], |_| 20), 1);
            }
            Err(e) => panic!("{e}"),
        }
    });
}

/// The first frame of a writer that just joined (so the reader's doorbell
/// was rung for the join, and the reader, finding its ring empty, stops
/// scanning it until its pending bit is set), sent while the reader looks,
/// arms and looks again: the sender sets the bit after its fence, so only
/// its check of `armed` being sequentially consistent makes the reader's
/// look or the sender's ring certain (found by the batch model below; the
/// relaxed check lost the wake-up under the C++ memory model).
#[test]
fn loom_no_lost_wakeup_for_a_new_writer() {
    model(|| {
        let net = Net::new(Protocol::Hub, 4, 0);
        let mut reader = net.port(READER);
        let sender = net.port(A);
        let mut buf = [0u8; 64];
        let sending = send_frame_1(sender);
        let first = reader.try_recv(&mut buf);
        let _sender = sending.join().unwrap();
        match first {
            Ok(len) => assert_eq!(whole_frame(&buf[..len], |_| 20), 1),
            Err(RecvError::WouldBlock) => {
                assert!(net.queued(READER) >= 1, "lost wake-up: no doorbell");
                let len = reader.try_recv(&mut buf).expect("woken, finds the frame");
                assert_eq!(whole_frame(&buf[..len], |_| 20), 1);
            }
            Err(e) => panic!("{e}"),
        }
    });
}

/// A reader in QEMU's pattern (poll, then one receive) takes the frame
/// that woke it while a second one is sent: after the receive, the fd is
/// readable exactly while a frame waits. Whether the reader saw the
/// second frame coming (and left its doorbell queued), armed and found it
/// (and rang itself), or armed before it was sent (and the sender rang),
/// one wake-up is queued, never none and never two; after the second
/// frame is taken, none is.
#[test]
fn loom_readable_exactly_while_frames_wait() {
    model(|| {
        let net = Net::new(Protocol::Hub, 4, 0);
        let mut reader = net.port(READER);
        let mut sender = net.port(A);
        let mut buf = [0u8; 64];
        // Joined armed: the first frame rings; poll would now say readable.
        sender.try_send(&frame(0, 20)).unwrap();
        assert_eq!(net.queued(READER), 1);
        let sending = send_frame_1(sender);
        let len = reader
            .try_recv_after_poll(&mut buf)
            .expect("the first frame");
        assert_eq!(whole_frame(&buf[..len], |_| 20), 0);
        let _sender = sending.join().unwrap();
        assert_eq!(
            net.queued(READER),
            1,
            "a frame waits: the fd must be readable, once"
        );
        let len = reader
            .try_recv_after_poll(&mut buf)
            .expect("the second frame");
        assert_eq!(whole_frame(&buf[..len], |_| 20), 1);
        assert_eq!(
            net.queued(READER),
            0,
            "nothing waits: the fd must not be readable"
        );
    });
}

/// A reader in QEMU's pattern asleep in `poll` (armed, nothing waiting)
/// wakes as soon as the doorbell is queued, which may be before its ringer
/// runs another instruction: a wake-up on the ringer's CPU preempts it.
/// The reader takes the frame and, with nothing else waiting, must drain
/// that doorbell: the fd is then quiet, not readable for nothing. The
/// claim on its arming owes it that doorbell whether or not the count
/// shows yet. (Draining by the count alone, a reader woken before a ringer
/// that counted after ringing drained none and left the fd readable: at
/// about half the frames of a 5 000 frames/s stream on a 2-CPU machine.)
#[test]
fn loom_poll_reader_woken_before_its_ringer_returns() {
    model(|| {
        let net = Net::new(Protocol::Hub, 4, 0);
        let mut reader = net.port(READER);
        let mut sender = net.port(A);
        let mut buf = [0u8; 64];
        sender.try_send(&frame(0, 20)).unwrap();
        assert_eq!(reader.try_recv_after_poll(&mut buf).ok(), Some(20));
        // Asleep: armed, the fd quiet.
        assert!(matches!(
            reader.try_recv(&mut buf),
            Err(RecvError::WouldBlock)
        ));
        assert_eq!(net.queued(READER), 0);
        let sending = send_frame_1(sender);
        // `poll`: returns once the doorbell is queued.
        while net.queued(READER) == 0 {
            thread::yield_now();
        }
        let len = reader
            .try_recv_after_poll(&mut buf)
            .expect("the frame that rang");
        assert_eq!(whole_frame(&buf[..len], |_| 20), 1);
        let _sender = sending.join().unwrap();
        assert_eq!(
            net.queued(READER),
            0,
            "nothing waits: the fd must not be readable"
        );
    });
}

/// The other side of counting first: a reader that armed, found the frame
/// in its look after arming and could not disarm (the sender claimed the
/// doorbell) goes on to receive, finds nothing and drains, possibly before
/// the sender has counted or sent the doorbell it owes. The drain takes
/// that doorbell (waiting for it: the model's bell always gets it), never
/// waits for one that will not come (here it would spin until loom gives
/// up), and once the sender is done one receive that finds nothing leaves
/// the fd quiet. (Exactly quiet after the first is not a property of the
/// handshake: a sender may claim an arming made after its frame was taken.
/// The real-socket test `poll_driven_reader_never_misses_a_wakeup` checks
/// it in practice; it failed 7 runs of 8 when the drain did not wait.)
#[test]
fn loom_doorbell_counted_before_it_is_sent_is_drained() {
    model(|| {
        let net = Net::new(Protocol::Hub, 4, 0);
        let mut buf = [0u8; 64];
        let (mut reader, sender) = reader_past_frame_0(&net, &mut buf);
        let sending = send_frame_1(sender);
        let mut got = false;
        loop {
            match reader.try_recv(&mut buf) {
                Ok(len) => {
                    assert_eq!(whole_frame(&buf[..len], |_| 20), 1);
                    got = true;
                }
                Err(RecvError::WouldBlock) if got => break,
                // Asleep in `poll` until rung.
                Err(RecvError::WouldBlock) => {
                    while net.queued(READER) == 0 {
                        thread::yield_now();
                    }
                }
                Err(e) => panic!("{e}"),
            }
            assert!(net.queued(READER) <= 1, "fd readable more than once");
        }
        let _sender = sending.join().unwrap();
        assert!(matches!(
            reader.try_recv(&mut buf),
            Err(RecvError::WouldBlock)
        ));
        assert_eq!(
            net.queued(READER),
            0,
            "nothing waits: after an empty receive the fd must be quiet"
        );
    });
}

/// Two senders at once while the reader looks, arms and looks again: a
/// reader that would sleep is rung exactly once; one that found a frame
/// after arming keeps its fd readable at most once.
#[test]
fn loom_two_senders_ring_once() {
    model(|| {
        let net = Net::new(Protocol::Hub, 4, 0);
        let mut reader = net.port(READER);
        let mut a = net.port(A);
        let b = net.port(B);
        let mut buf = [0u8; 64];
        // The reader reads a frame, so it starts the race neither armed nor
        // with an unread doorbell count of zero.
        a.try_send(&frame(9, 8)).unwrap();
        assert_eq!(reader.try_recv(&mut buf).ok(), Some(8));
        let senders: Vec<_> = [(A, a), (B, b)]
            .into_iter()
            .map(|(index, mut port)| {
                thread::spawn(move || {
                    port.try_send(&frame(index as u8, 8)).unwrap();
                    port
                })
            })
            .collect();
        let first = reader.try_recv(&mut buf);
        let _ports: Vec<Port> = senders.into_iter().map(|s| s.join().unwrap()).collect();
        let mut got = 0;
        match first {
            Ok(len) => {
                whole_frame(&buf[..len], |_| 8);
                assert!(net.queued(READER) <= 1, "fd readable more than once");
                got += 1;
            }
            Err(RecvError::WouldBlock) => {
                assert_eq!(net.queued(READER), 1, "rung {} times", net.queued(READER));
            }
            Err(e) => panic!("{e}"),
        }
        while let Ok(len) = reader.try_recv(&mut buf) {
            whole_frame(&buf[..len], |_| 8);
            got += 1;
        }
        assert_eq!(got, 2);
    });
}

/// A batch of two frames sent while the reader looks, arms and looks
/// again: the batch announces its frames once, at its end. A reader that
/// would sleep is rung exactly once for both; one that found a frame
/// keeps its fd readable at most once; the reader gets both frames.
#[test]
fn loom_batch_rings_once_at_its_end() {
    model(|| {
        let net = Net::new(Protocol::Hub, 4, 0);
        let mut reader = net.port(READER);
        let mut sender = net.port(A);
        let mut buf = [0u8; 64];
        sender.try_send(&frame(9, 8)).unwrap();
        assert_eq!(reader.try_recv(&mut buf).ok(), Some(8));
        let sending = thread::spawn(move || {
            let mut batch = sender.batch();
            batch.try_send(&frame(0, 8)).unwrap();
            batch.try_send(&frame(1, 8)).unwrap();
            drop(batch);
            sender
        });
        let first = reader.try_recv(&mut buf);
        let _sender = sending.join().unwrap();
        let mut got = Vec::new();
        match first {
            Ok(len) => {
                got.push(whole_frame(&buf[..len], |_| 8));
                assert!(net.queued(READER) <= 1, "fd readable more than once");
            }
            Err(RecvError::WouldBlock) => {
                assert_eq!(net.queued(READER), 1, "rung {} times", net.queued(READER));
            }
            Err(e) => panic!("{e}"),
        }
        while let Ok(len) = reader.try_recv(&mut buf) {
            got.push(whole_frame(&buf[..len], |_| 8));
        }
        assert_eq!(got, [0, 1]);
    });
}

/// Lossless, in one batch: three frames of 56 bytes through two
/// descriptors and 128 bytes, so the batch runs out of room before it
/// ends. The send that finds no room announces the batch's frames, so the
/// reader, which sleeps once it finds nothing, is rung, reads, and makes
/// room; it gets every frame, in order.
#[test]
fn loom_lossless_batch_wakes_readers_before_it_waits() {
    const FRAMES: u8 = 3;
    model(|| {
        let net = Net::new(Protocol::Hub, 2, FLAG_LOSSLESS);
        let mut reader = net.port(READER);
        let mut sender = net.port(A);
        let writer = thread::spawn(move || {
            let mut batch = sender.batch();
            for n in 0..FRAMES {
                loop {
                    match batch.try_send(&frame(n, 56)) {
                        Ok(()) => break,
                        Err(SendError::WouldBlock) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            drop(batch);
            sender
        });
        let mut buf = [0u8; 64];
        let mut next = 0u8;
        while next < FRAMES {
            match reader.try_recv(&mut buf) {
                Ok(len) => {
                    assert_eq!(whole_frame(&buf[..len], |_| 56), next);
                    next += 1;
                }
                // Asleep in `poll` until rung (the next receive drains
                // the doorbell): a frame it was not told of would hang
                // both sides here.
                Err(RecvError::WouldBlock) => {
                    while net.queued(READER) == 0 {
                        thread::yield_now();
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
        let _sender = writer.join().unwrap();
    });
}

/// Three frames of 56 bytes through a 128-byte ring with four
/// descriptors, while the reader reads: the third frame overwrites the
/// first one's bytes (wrapping around) while its descriptor still
/// describes it. Whatever the reader gets is whole and in order, and
/// every frame is received or counted as dropped.
#[test]
fn loom_wrapping_frames_are_whole_or_dropped() {
    const FRAMES: u8 = 3;
    model(|| {
        let net = Net::new(Protocol::Hub, 4, 0);
        let mut reader = net.port(READER);
        let mut sender = net.port(A);
        let writer = thread::spawn(move || {
            for n in 0..FRAMES {
                sender.try_send(&frame(n, 56)).unwrap();
            }
            sender
        });
        let mut buf = [0u8; 64];
        let mut next = 0u8;
        let mut received = 0u64;
        let dropped = |net: &Net| net.shm.port(READER).rx_dropped.load(Ordering::Relaxed);
        while received + dropped(&net) < u64::from(FRAMES) {
            match reader.try_recv(&mut buf) {
                Ok(len) => {
                    let n = whole_frame(&buf[..len], |_| 56);
                    assert!(n >= next, "frame {n} after {next}: out of order");
                    next = n + 1;
                    received += 1;
                }
                Err(RecvError::WouldBlock) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let _sender = writer.join().unwrap();
        assert_eq!(received + dropped(&net), u64::from(FRAMES));
    });
}

/// Lossless: three frames of 56 bytes through two descriptors and 128
/// bytes; the sender retries when it has no room. The reader gets every
/// frame, whole, in order, none dropped.
#[test]
fn loom_lossless_sender_never_overwrites_unread_frames() {
    const FRAMES: u8 = 3;
    model(|| {
        let net = Net::new(Protocol::Hub, 2, FLAG_LOSSLESS);
        let mut reader = net.port(READER);
        let mut sender = net.port(A);
        let writer = thread::spawn(move || {
            for n in 0..FRAMES {
                loop {
                    match sender.try_send(&frame(n, 56)) {
                        Ok(()) => break,
                        Err(SendError::WouldBlock) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            sender
        });
        let mut buf = [0u8; 64];
        let mut next = 0u8;
        while next < FRAMES {
            match reader.try_recv(&mut buf) {
                Ok(len) => {
                    assert_eq!(whole_frame(&buf[..len], |_| 56), next);
                    next += 1;
                }
                Err(RecvError::WouldBlock) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let _sender = writer.join().unwrap();
        assert_eq!(net.shm.port(READER).rx_dropped.load(Ordering::Relaxed), 0);
    });
}

/// Switch mode: port B has learned that `MAC_R` lives behind the reader
/// (it received the reader's broadcast); A's unicast to `MAC_R`, sent
/// while B and the reader look, reaches the reader (or rings it), and B
/// gets nothing.
#[test]
fn loom_switch_unicast_reaches_only_its_addressee() {
    const MAC_R: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    let ethernet = |dst: [u8; 6], src: [u8; 6]| {
        let mut f = vec![0u8; 20];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    };
    model(move || {
        let net = Net::new(Protocol::Switch, 4, 0);
        let mut reader = net.port(READER);
        let mut a = net.port(A);
        let mut b = net.port(B);
        let mut buf = [0u8; 64];
        reader.try_send(&ethernet([0xff; 6], MAC_R)).unwrap();
        for port in [&mut a, &mut b] {
            assert_eq!(port.try_recv(&mut buf).ok(), Some(20), "the broadcast");
        }
        let unicast = ethernet(MAC_R, MAC_A);
        let sending = thread::spawn(move || {
            a.try_send(&unicast).unwrap();
            a
        });
        let b_got = b.try_recv(&mut buf);
        let _a = sending.join().unwrap();
        assert!(
            matches!(b_got, Err(RecvError::WouldBlock)),
            "a unicast frame for the reader reached B"
        );
        assert!(matches!(b.try_recv(&mut buf), Err(RecvError::WouldBlock)));
        let len = reader.try_recv(&mut buf).expect("the addressee gets it");
        assert_eq!(&buf[..6], &MAC_R);
        assert_eq!(len, 20);
    });
}

/// Lossless, while a send waits for room: reader B, whose ring is full,
/// dies (its process is gone: nothing of the port runs any more, and a
/// sweep marks its slot dead, as `membership::sweep_dead` does once the
/// slot's lock is free), and a new reader joins at the same time. The
/// waiting send goes through (it stops waiting for the dead port, whatever
/// the join does to the membership meanwhile); the newcomer gets the frames
/// sent after it joined, whole and in order, none sent before, and loses
/// none, though the sender may not have known of it when it measured its
/// room.
#[test]
fn loom_lossless_send_waits_through_a_join_and_a_death() {
    model(|| {
        let net = Net::new(Protocol::Hub, 2, FLAG_LOSSLESS);
        let mut sender = net.port(A);
        let victim = net.port(B);
        for n in 0..2 {
            sender.try_send(&frame(n, 56)).unwrap();
        }
        assert!(matches!(
            sender.try_send(&frame(2, 56)),
            Err(SendError::WouldBlock)
        ));
        let shm = net.shm.clone();
        let dying = thread::spawn(move || {
            let old = shm.port(B).state.load(Ordering::Acquire);
            assert!(membership::mark_dead(&shm, B, old));
            shm.header().membership_epoch.fetch_add(1, Ordering::AcqRel);
        });
        let joining = {
            let net = Net {
                shm: net.shm.clone(),
                queued: net.queued.clone(),
            };
            thread::spawn(move || net.port(READER))
        };
        // Waits while B is full and alive, goes on once it is dead.
        loop {
            match sender.try_send(&frame(2, 56)) {
                Ok(()) => break,
                Err(SendError::WouldBlock) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let mut newcomer = joining.join().unwrap();
        // Frame 2 may or may not be the newcomer's: it has room for one more.
        sender.try_send(&frame(3, 56)).unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while let Ok(len) = newcomer.try_recv(&mut buf) {
            got.push(whole_frame(&buf[..len], |_| 56));
        }
        assert!(got == [3] || got == [2, 3], "the newcomer got {got:?}");
        let dropped = net.shm.port(READER).rx_dropped.load(Ordering::Relaxed);
        assert_eq!(dropped, 0, "a lossless reader lost frames");
        dying.join().unwrap();
        // Dropped (it leaves) only now: until here it was as if killed.
        drop(victim);
    });
}
