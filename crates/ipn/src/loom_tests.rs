//! Model checking of the concurrency core with loom.
//!
//! Built only with `RUSTFLAGS="--cfg loom"`. In that build the atomics of
//! `shm`, `ring` and `membership` are loom's (see `sync`) and the shared
//! file is held in memory (`SharedFile::in_memory`), so the tests below run
//! the real `ring::write_frame` / `ring::read_frame` and the real halves of
//! the sleep handshake (`membership::arm`, `disarm`, `claim_wake`) under
//! every interleaving loom explores, and with every value a relaxed or
//! acquire load may return under the C++ memory model (within a bound of
//! `LOOM_MAX_PREEMPTIONS` forced thread switches, 3 unless set). Checked:
//!
//! - the ring seqlock never delivers a torn frame: every frame received has
//!   the length, destination and bytes of one frame as written; frames
//!   arrive in order; every frame is either received or counted as skipped
//!   by a lap, and a lap never skips a frame that was not written;
//! - the armed handshake loses no wake-up: a reader that found nothing,
//!   armed and looked again either sees the frame or gets exactly one
//!   doorbell; with two senders still exactly one; a reader that finds the
//!   frame on its second look leaves its fd readable (one doorbell, its own
//!   or a sender's), never two;
//! - lossless flow control: a sender that waits for the reader's published
//!   cursor never overwrites a frame the reader has not finished copying.
//!
//! Sockets are not modelled: a doorbell is the `rings` count the real code
//! adds after each ring. The fence that `Port::send_until` issues between
//! writing the frame and waking readers, and the cursor publication of
//! `Port::read_any` / check of `Port::compute_space_limit`, are repeated
//! here line for line (they sit inside methods that need sockets).
//!
//! Limits: loom explores interleavings of whole operations, so it never
//! lets a load read a store that executes later (load buffering). The
//! `Acquire` of the lossless cursor check guards exactly against that, so
//! weakening it to `Relaxed` goes unnoticed here. Each of these breakages
//! does make a test fail (tried by hand): dropping either fence of the
//! seqlock, its second sequence check, or the `Release` of `seq_done`;
//! dropping the fence of `arm` or the sender's fence; turning `disarm`'s
//! swap into a load and a store. Bounds: 3 frames through a 2-slot ring
//! (4 frames take minutes, not seconds).
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p
//! ipn --release --lib loom` (scripts/test.sh does).

use loom::sync::Arc;
use loom::thread;

use crate::membership;
use crate::ring::{self, Read};
use crate::shm::layout::{Geometry, DST_ALL, FLAG_LOSSLESS, MIN_MTU};
use crate::shm::SharedFile;
use crate::sync::{fence, Ordering};

/// Default bound on forced preemptions per execution.
const PREEMPTIONS: usize = 3;

fn model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTIONS);
    }
    builder.check(test);
}

/// Three ports (0 and 1 send, 2 reads) with two-slot rings of 64 bytes.
fn network(flags: u32) -> Arc<SharedFile> {
    let geometry = Geometry::compute(0, 3, MIN_MTU, 2, flags).expect("geometry");
    Arc::new(SharedFile::in_memory(geometry))
}

/// Frame `n` of a test: lengths that end mid-word and span one or two
/// words, every byte `n + 1` (never 0, the value of unwritten memory).
fn frame(n: u64) -> Vec<u8> {
    const LENGTHS: [usize; 4] = [5, 12, 8, 16];
    vec![n as u8 + 1; LENGTHS[n as usize % LENGTHS.len()]]
}

/// Checks that a frame read at cursor `n` is exactly frame `n`.
fn assert_frame(n: u64, read: Read, buf: &[u8]) {
    let expected = frame(n);
    let Read::Frame { len, dst } = read else {
        panic!("not a frame: {read:?}");
    };
    assert_eq!(len, expected.len(), "length of frame {n}");
    assert_eq!(dst, n as u32, "destination of frame {n}");
    assert_eq!(&buf[..len], &expected[..], "bytes of frame {n} (torn)");
}

const SENDER: u32 = 0;
const SENDER_2: u32 = 1;
const READER: u32 = 2;

/// A writer laps a slow reader in a two-slot ring: whatever the reader
/// gets is whole, in order, and accounted for.
#[test]
fn loom_ring_seqlock_delivers_whole_frames_or_counts_laps() {
    const FRAMES: u64 = 3;
    model(|| {
        let shm = network(0);
        let writer = {
            let shm = shm.clone();
            thread::spawn(move || {
                for n in 0..FRAMES {
                    ring::write_frame(&shm, SENDER, n, &frame(n), n as u32);
                }
            })
        };
        let (mut cursor, mut received, mut skipped_total) = (0u64, 0u64, 0u64);
        let mut buf = [0u8; MIN_MTU as usize];
        while cursor < FRAMES {
            let n = cursor;
            let read = ring::read_frame(&shm, SENDER, &mut cursor, &mut buf);
            match read {
                Read::Frame { .. } => {
                    assert_frame(n, read, &buf);
                    assert_eq!(cursor, n + 1);
                    received += 1;
                }
                Read::Lapped { skipped } => {
                    assert!(skipped >= 1);
                    assert_eq!(cursor, n + skipped);
                    skipped_total += skipped;
                }
                Read::Empty => {
                    assert_eq!(cursor, n);
                    thread::yield_now();
                }
                Read::NotForUs { .. } => panic!("an accept-all read skipped a frame"),
            }
            assert!(cursor <= FRAMES, "a lap skipped frames never written");
        }
        writer.join().unwrap();
        assert_eq!(received + skipped_total, FRAMES);
    });
}

/// The reader's side of `Port::try_recv_message`: look, and if nothing,
/// arm (`prepare_to_sleep`), look again, and disarm if that found a frame
/// (`disarm_after_finding`). Returns (found on first look, found at all).
fn reader_look_arm_look(shm: &SharedFile, senders: &[u32]) -> (bool, bool) {
    let mut buf = [0u8; MIN_MTU as usize];
    let look = |buf: &mut [u8]| {
        senders.iter().any(|&sender| {
            let mut cursor = 0;
            matches!(
                ring::read_frame(shm, sender, &mut cursor, buf),
                Read::Frame { .. }
            )
        })
    };
    if look(&mut buf) {
        return (true, true);
    }
    let entry = shm.port(READER);
    membership::arm(entry);
    if look(&mut buf) {
        if membership::disarm(entry) {
            entry.rings.fetch_add(1, Ordering::Release); // rings itself
        }
        return (false, true);
    }
    (false, false) // would sleep in poll() until a doorbell
}

/// The sender's side of `Port::send_until` after writing a frame.
fn send_and_wake(shm: &SharedFile, sender: u32) {
    ring::write_frame(shm, sender, 0, &frame(0), DST_ALL);
    fence(Ordering::SeqCst);
    let entry = shm.port(READER);
    if membership::claim_wake(entry) {
        entry.rings.fetch_add(1, Ordering::Release); // after bell.ring()
    }
}

/// After the reader and the senders are done: the doorbells rung.
fn doorbells(shm: &SharedFile) -> u64 {
    let entry = shm.port(READER);
    assert_eq!(entry.armed.load(Ordering::Relaxed), 0, "left armed");
    entry.rings.load(Ordering::Relaxed)
}

#[test]
fn loom_armed_handshake_loses_no_wakeup() {
    model(|| {
        let shm = network(0);
        let sender = {
            let shm = shm.clone();
            thread::spawn(move || send_and_wake(&shm, SENDER))
        };
        let (first_look, found) = reader_look_arm_look(&shm, &[SENDER]);
        sender.join().unwrap();
        let rings = doorbells(&shm);
        if first_look {
            assert_eq!(rings, 0, "rung although the reader never armed");
        } else if found {
            assert_eq!(rings, 1, "found after arming: fd must stay readable once");
        } else {
            assert_eq!(rings, 1, "lost wake-up: slept on a frame, no doorbell");
        }
    });
}

#[test]
fn loom_armed_handshake_two_senders_ring_once() {
    model(|| {
        let shm = network(0);
        let senders: Vec<_> = [SENDER, SENDER_2]
            .into_iter()
            .map(|sender| {
                let shm = shm.clone();
                thread::spawn(move || send_and_wake(&shm, sender))
            })
            .collect();
        let (first_look, _) = reader_look_arm_look(&shm, &[SENDER, SENDER_2]);
        for sender in senders {
            sender.join().unwrap();
        }
        let rings = doorbells(&shm);
        assert_eq!(rings, u64::from(!first_look), "one doorbell per arming");
    });
}

/// Lossless: the sender writes frame `n` only once the reader's published
/// cursor says frame `n - ring_slots` was consumed; the reader publishes
/// after each read. The reader is never lapped and gets every frame whole.
#[test]
fn loom_lossless_sender_never_overwrites_unread_frame() {
    const FRAMES: u64 = 3;
    model(|| {
        let shm = network(FLAG_LOSSLESS);
        let slots = u64::from(shm.geometry().ring_slots);
        let writer = {
            let shm = shm.clone();
            thread::spawn(move || {
                for n in 0..FRAMES {
                    // compute_space_limit: cursor + ring_slots bounds the head.
                    while n >= shm.cursor(READER, SENDER).load(Ordering::Acquire) + slots {
                        thread::yield_now();
                    }
                    ring::write_frame(&shm, SENDER, n, &frame(n), n as u32);
                }
            })
        };
        let mut cursor = 0u64;
        let mut buf = [0u8; MIN_MTU as usize];
        while cursor < FRAMES {
            let n = cursor;
            let read = ring::read_frame(&shm, SENDER, &mut cursor, &mut buf);
            if read != Read::Empty {
                // read_any publishes the cursor after every non-empty read.
                shm.cursor(READER, SENDER).store(cursor, Ordering::Release);
            }
            match read {
                Read::Empty => thread::yield_now(),
                _ => assert_frame(n, read, &buf),
            }
        }
        writer.join().unwrap();
    });
}
