//! One vdeplug connection: a joined [`ipn::Port`] with the semantics
//! libvdeplug's callers expect, in safe Rust. The C ABI in `ffi` is only
//! a thin shell around [`Conn`].
//!
//! Contract with the callers (QEMU's `net/vde.c`, `vde_plug`, UML, plain
//! C), from libvdeplug(3): "vde_recv returns the length of the packet
//! received. It should never be less then 14 bytes (the length of an
//! ethernet header). It returns -1 in case of error, it may return 1 to
//! notify that a packet has been received but it must be dropped".
//!
//! - `recv` never blocks. It returns a frame of at least 14 bytes
//!   ([`Received::Frame`]), or something `vde_recv` reports as **1**, never
//!   0 ([`Received::vde_recv_value`]): [`Received::NoFrame`], a wake-up
//!   that brought nothing for this port (a port joined or left, a switch
//!   frame addressed to another port, the one extra doorbell after the
//!   last frame, or no wake-up at all), or [`Received::Runt`], a frame
//!   shorter than an Ethernet header (a raw ipn port may send one),
//!   consumed, dropped and counted ([`Conn::runts`]).
//! - Why 1: 0 is outside the contract, and a caller that takes the
//!   contract literally sees a closed connection (UML's `vde_user_read`
//!   turns 0 into `-ENOTCONN`). 1 is the contract's "received but must be
//!   dropped", and what vdeplug4's own `hub://` and `switch://` return in
//!   the same cases (a connection request, a frame forwarded to another
//!   node, a runt). `vde_plug` forwards only results `>= 14` and quits
//!   only on `< 0`. QEMU's `net/vde.c` hands any result `> 0` to the
//!   guest's NIC, which thus gets a 1-byte frame: before returning 1 the
//!   first 14 bytes of the buffer (as many as fit) are zeroed, so that
//!   frame goes to 00:00:00:00:00:00 from 00:00:00:00:00:00, which NIC
//!   address filters drop unless the guest is promiscuous (and then its
//!   stack drops it: too short, or no protocol).
//! - The data fd is the port's doorbell: readable while frames wait, and
//!   at most once more after the last one (the `recv` that finds nothing
//!   drains it).
//! - `send` never blocks on a lossy network. On a lossless one it waits
//!   for the slowest live reader unless `MSG_DONTWAIT` is given (then
//!   `EAGAIN`); a reader that died is not waited for. A frame over the
//!   MTU is `EMSGSIZE`, never a silent drop.
//! - One connection may be used by several threads at once (libvdeplug
//!   does not forbid it; a program may receive on one thread and send on
//!   another). The port is behind a lock held for one non-blocking step
//!   at a time: a lossless `send` waits for room *between* attempts, with
//!   the lock released, so it never holds up a `recv` (which could be the
//!   very thing that lets the network make room).
//! - Errors are errno values; nothing on the data path prints.

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipn::{JoinOptions, OpenError, Port, RecvError, SendError};

use crate::url;

/// Why opening failed: the errno for `vde_open` and the message printed
/// to stderr once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFailure {
    /// The errno `vde_open` fails with.
    pub errno: i32,
    /// The message for people, naming the URL and the fix.
    pub message: String,
}

/// The shortest frame `vde_recv` may return: an Ethernet header.
pub const ETH_HEADER: usize = ipn::ethernet::HEADER_LEN;

/// What `vde_recv` returns "to notify that a packet has been received but
/// it must be dropped" (libvdeplug(3)); here also for a wake-up that
/// brought no frame.
pub const DROPPED: usize = 1;

/// What one [`Conn::recv`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A frame: this many bytes, at least [`ETH_HEADER`], were copied.
    Frame(usize),
    /// Nothing for this port: a wake-up for a port joining or leaving, for
    /// a switch frame addressed to another port, the extra doorbell after
    /// the last frame, or nothing at all.
    NoFrame,
    /// A frame shorter than an Ethernet header (this many bytes copied),
    /// or cut that short by the caller's buffer: dropped and counted.
    Runt(usize),
}

impl Received {
    /// What `vde_recv` returns: the frame's length, or [`DROPPED`] (1),
    /// never 0 (see the module docs).
    pub fn vde_recv_value(self) -> usize {
        match self {
            Received::Frame(len) => len,
            Received::NoFrame | Received::Runt(_) => DROPPED,
        }
    }
}

/// Between the attempts of a waiting lossless send, as in the core's own
/// wait: a spin hint for the first attempts, then yielding the processor
/// (a reader may need this core to make room), then sleeping
/// [`WAIT_STEP`].
const SPINS_BEFORE_YIELDING: u32 = 64;
const ATTEMPTS_BEFORE_SLEEPING: u32 = 256;
const WAIT_STEP: Duration = Duration::from_micros(50);

/// How often a waiting lossless send looks for dead readers (as the
/// core's own wait does).
const DEATH_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A joined port. Shared by every thread using the connection.
#[derive(Debug)]
pub struct Conn {
    /// Locked for one non-blocking step at a time, never while waiting;
    /// uncontended, a lock costs one atomic operation.
    port: Mutex<Port>,
    /// Fixed when joining, read without the lock.
    datafd: RawFd,
    mtu: u32,
    lossless: bool,
    runts: AtomicU64,
}

/// What the caller of `vde_open` may pass in `struct vde_open_args`.
#[derive(Debug, Clone, Default)]
pub struct OpenArgs {
    /// Requested port number (0: any).
    pub port: i32,
}

impl Conn {
    /// Joins (creating if needed) the network named by `args`, the text
    /// after `ipn://`. `descr` becomes the port's description.
    pub fn open(args: &[u8], descr: &str, open_args: &OpenArgs) -> Result<Conn, OpenFailure> {
        let shown = format!("ipn://{}", String::from_utf8_lossy(args));
        let fail = |errno: i32, what: &dyn std::fmt::Display| OpenFailure {
            errno,
            message: format!("{shown}: {what}"),
        };
        let parsed = url::parse(args).map_err(|e| {
            let errno = match e {
                url::UrlError::NotSupportedYet(..) => libc::EOPNOTSUPP,
                _ => libc::EINVAL,
            };
            fail(errno, &e)
        })?;
        if open_args.port != 0 {
            return Err(fail(
                libc::EOPNOTSUPP,
                &format!(
                    "port {} requested: choosing a port number is not supported yet; \
                     ipn gives each opener a free port (leave port unset)",
                    open_args.port
                ),
            ));
        }
        let config = parsed
            .options
            .config()
            .map_err(|e| fail(libc::EINVAL, &e))?;
        let join = JoinOptions {
            vlan: parsed.options.membership(),
            busy_poll: parsed.options.busy_poll(),
            ..JoinOptions::described(descr)
        };
        let port = Port::join_or_create(&parsed.path, &config, &join)
            .map_err(|e| fail(open_errno(&e), &e))?;
        let mismatches = parsed.options.mismatches(&port.status());
        if !mismatches.is_empty() {
            let list: Vec<String> = mismatches
                .iter()
                .map(|(name, asked, actual)| format!("{name}: asked {asked}, network has {actual}"))
                .collect();
            return Err(fail(
                libc::EINVAL,
                &format!(
                    "the network exists with other settings ({}); options only apply when \
                     creating it: drop them, or remove the network (`ipn rm`) first",
                    list.join("; ")
                ),
            ));
        }
        Ok(Conn {
            datafd: port.as_raw_fd(),
            mtu: port.mtu(),
            lossless: port.lossless(),
            port: Mutex::new(port),
            runts: AtomicU64::new(0),
        })
    }

    /// The port, for one step. A panic in an earlier step (caught at the
    /// C boundary) leaves it poisoned: every later call fails with `EIO`.
    fn port(&self) -> Result<MutexGuard<'_, Port>, i32> {
        self.port.lock().map_err(|_| libc::EIO)
    }

    /// Receives one frame into `buf` without waiting. A frame longer than
    /// `buf` is truncated to it. Unless it returns a frame, the first
    /// [`ETH_HEADER`] bytes of `buf` (as many as fit) are zeroed, for
    /// callers that use the 1 `vde_recv` then returns as a frame length.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Received, i32> {
        let result = self.port()?.try_recv_after_poll(buf);
        let received = match result {
            Ok(len) if len >= ETH_HEADER => return Ok(Received::Frame(len)),
            Ok(len) => {
                self.runts.fetch_add(1, Ordering::Relaxed);
                Received::Runt(len)
            }
            Err(RecvError::WouldBlock | RecvError::TimedOut) => Received::NoFrame,
            Err(RecvError::NotReading) => return Err(libc::EBADF),
            Err(RecvError::Io(e)) => return Err(e.raw_os_error().unwrap_or(libc::EIO)),
            Err(RecvError::Damaged { .. }) => return Err(libc::ENETDOWN),
        };
        let header = buf.len().min(ETH_HEADER);
        buf[..header].fill(0);
        Ok(received)
    }

    /// How many runts [`Conn::recv`] dropped: frames shorter than an
    /// Ethernet header, which libvdeplug(3) callers must never be given.
    pub fn runts(&self) -> u64 {
        self.runts.load(Ordering::Relaxed)
    }

    /// Sends one frame; returns its length. On a lossless network without
    /// room it waits, unless `dont_wait` (then `EAGAIN`).
    pub fn send(&self, frame: &[u8], dont_wait: bool) -> Result<usize, i32> {
        // A statement of its own: the lock is released at its end.
        let first = self.port()?.try_send(frame);
        let result = match first {
            Err(SendError::WouldBlock) if self.lossless && !dont_wait => {
                self.send_when_there_is_room(frame)?
            }
            result => result,
        };
        match result {
            Ok(()) => Ok(frame.len()),
            Err(SendError::TooBig { .. }) => Err(libc::EMSGSIZE),
            Err(SendError::Empty) => Err(libc::EINVAL),
            Err(SendError::WouldBlock) | Err(SendError::TimedOut) => Err(libc::EAGAIN),
            Err(SendError::NotWriting) => Err(libc::EBADF),
            Err(SendError::Damaged { .. }) => Err(libc::ENETDOWN),
            // Plugin ports never take offloads: no header is parsed.
            Err(SendError::Offload(_)) => Err(libc::EINVAL),
        }
    }

    /// Lossless, no room: tries again until there is, with the port
    /// released between attempts, so that other threads' `recv` and
    /// `send` go on (see [`SPINS_BEFORE_YIELDING`] for the pauses).
    /// Every [`DEATH_CHECK_INTERVAL`] it looks for readers that died,
    /// which are then no longer waited for.
    fn send_when_there_is_room(&self, frame: &[u8]) -> Result<Result<(), SendError>, i32> {
        let mut attempts = 0u32;
        let mut next_death_check = Instant::now() + DEATH_CHECK_INTERVAL;
        loop {
            if attempts < SPINS_BEFORE_YIELDING {
                std::hint::spin_loop();
            } else if attempts < ATTEMPTS_BEFORE_SLEEPING {
                std::thread::yield_now();
            } else {
                std::thread::sleep(WAIT_STEP);
            }
            attempts = attempts.saturating_add(1);
            let mut port = self.port()?;
            if Instant::now() >= next_death_check {
                // Readers that died are marked dead, and the next attempt
                // stops waiting for them. (The core does this inside its
                // own waiting `send`, which cannot release our lock.)
                port.sweep_dead();
                next_death_check = Instant::now() + DEATH_CHECK_INTERVAL;
            }
            match port.try_send(frame) {
                Err(SendError::WouldBlock) => {}
                result => return Ok(result),
            }
        }
    }

    /// The fd to poll for incoming frames.
    pub fn datafd(&self) -> RawFd {
        self.datafd
    }

    /// The network's MTU.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }
}

/// The errno that best says why a network could not be joined.
/// Never `EPROTONOSUPPORT`: libvdeplug reads that as "no such plugin here"
/// and would go on looking for another `libvdeplug_ipn.so`.
pub fn open_errno(e: &OpenError) -> i32 {
    let errno = e.errno();
    if errno == libc::EPROTONOSUPPORT {
        libc::EIO
    } else {
        errno
    }
}

/// Prints an open failure to stderr (never panics, even without stderr).
pub fn report(failure: &OpenFailure) {
    let _ = writeln!(std::io::stderr(), "libvdeplug_ipn: {}", failure.message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("vdeplug-ipn-{name}-{}", std::process::id()));
        let _ = ipn::Network::remove(&p, true);
        p
    }

    fn open(url: &str) -> Result<Conn, OpenFailure> {
        Conn::open(url.as_bytes(), "test", &OpenArgs::default())
    }

    #[test]
    fn open_creates_and_frames_flow_both_ways() {
        let path = tmp("flow");
        let url = format!("{}[mtu=2000]", path.display());
        let a = open(&url).unwrap();
        let b = open(&url).unwrap();
        assert_eq!(a.mtu(), 2000);
        let mut buf = [0u8; 4096];
        assert_eq!(b.recv(&mut buf), Ok(Received::NoFrame), "nothing waits yet");
        assert_eq!(a.send(&[7u8; 60], false), Ok(60));
        assert_eq!(b.recv(&mut buf), Ok(Received::Frame(60)));
        assert_eq!(&buf[..60], &[7u8; 60]);
        assert_eq!(b.send(&[9u8; 1999], false), Ok(1999));
        assert_eq!(a.recv(&mut buf), Ok(Received::Frame(1999)));
        drop((a, b));
        ipn::Network::remove(&path, true).unwrap();
    }

    #[test]
    fn busypoll_keeps_an_empty_receive_looking_that_long() {
        let path = tmp("busypoll");
        let url = format!("{}[busypoll=3000]", path.display());
        let a = open(&url).unwrap();
        let mut buf = [0u8; 64];
        let start = Instant::now();
        assert_eq!(a.recv(&mut buf), Ok(Received::NoFrame));
        assert!(
            start.elapsed() >= Duration::from_millis(3),
            "returned after {:?}, before its 3 ms of busy polling",
            start.elapsed()
        );
        drop(a);
        let too_long = format!("{}[busypoll=100001]", path.display());
        let e = open(&too_long).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(e.message.contains("busypoll"), "{}", e.message);
        ipn::Network::remove(&path, true).unwrap();
    }

    #[test]
    fn a_wake_up_without_a_frame_is_1_never_0() {
        let path = tmp("nothing");
        let url = path.display().to_string();
        let a = open(&url).unwrap();
        let mut buf = [0xaau8; 64];
        // Another port joins and leaves: a wake-up, and no frame.
        drop(open(&url).unwrap());
        let received = a.recv(&mut buf).unwrap();
        assert_eq!(received, Received::NoFrame);
        assert_eq!(received.vde_recv_value(), 1);
        // A caller that delivers the 1 byte anyway (QEMU) delivers zeros.
        assert_eq!(buf[..14], [0; 14]);
        assert_eq!(buf[14..], [0xaa; 50], "nothing past the header is touched");
        assert_eq!(a.recv(&mut buf).unwrap().vde_recv_value(), 1);
        drop(a);
        ipn::Network::remove(&path, true).unwrap();
    }

    #[test]
    fn a_frame_shorter_than_an_ethernet_header_is_dropped_and_counted() {
        let path = tmp("runt");
        let conn = open(&path.display().to_string()).unwrap();
        let mut raw = Port::join(&path, &JoinOptions::described("raw")).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            conn.recv(&mut buf),
            Ok(Received::NoFrame),
            "the raw port's join"
        );
        for len in [1, 13] {
            raw.send(&vec![0x55; len]).unwrap();
            let received = conn.recv(&mut buf).unwrap();
            assert_eq!(received, Received::Runt(len));
            assert_eq!(received.vde_recv_value(), 1);
            assert_eq!(buf[..14], [0; 14]);
        }
        assert_eq!(conn.runts(), 2);
        raw.send(&[0x55; 14]).unwrap();
        assert_eq!(conn.recv(&mut buf), Ok(Received::Frame(14)));
        // A buffer too short for an Ethernet header cannot hold a frame.
        raw.send(&[0x55; 60]).unwrap();
        assert_eq!(conn.recv(&mut buf[..10]), Ok(Received::Runt(10)));
        assert_eq!(conn.runts(), 3);
        drop((conn, raw));
        ipn::Network::remove(&path, true).unwrap();
    }

    #[test]
    fn oversize_frame_is_emsgsize() {
        let path = tmp("big");
        let a = open(&path.display().to_string()).unwrap();
        assert_eq!(a.send(&[0u8; 1515], false), Err(libc::EMSGSIZE));
        assert_eq!(a.send(&[], false), Err(libc::EINVAL));
        drop(a);
        ipn::Network::remove(&path, true).unwrap();
    }

    #[test]
    fn lossless_full_reader_gives_eagain_with_dontwait() {
        let path = tmp("lossless");
        let url = format!("{}[lossless/ring=2]", path.display());
        let a = open(&url).unwrap();
        let _b = open(&url).unwrap();
        assert_eq!(a.send(&[1u8; 60], true), Ok(60));
        assert_eq!(a.send(&[1u8; 60], true), Ok(60));
        assert_eq!(a.send(&[1u8; 60], true), Err(libc::EAGAIN));
        drop((a, _b));
        ipn::Network::remove(&path, true).unwrap();
    }

    #[test]
    fn unknown_option_fails_with_einval_and_says_why() {
        let e = open("/tmp/whatever[bogus]").unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(
            e.message.contains("unknown option 'bogus'"),
            "{}",
            e.message
        );
        assert!(e.message.starts_with("ipn:///tmp/whatever[bogus]"));
    }

    #[test]
    fn an_option_prefix_creates_what_it_names() {
        let path = tmp("prefix");
        let a = open(&format!("{}[hu]", path.display())).unwrap();
        let status = ipn::Network::open(&path).unwrap().status();
        assert_eq!(status.protocol, ipn::Protocol::Hub);
        drop(a);
        ipn::Network::remove(&path, true).unwrap();

        let a = open(&format!("{}[sw/lossl]", path.display())).unwrap();
        let status = ipn::Network::open(&path).unwrap().status();
        assert_eq!(status.protocol, ipn::Protocol::Switch);
        assert!(status.lossless);
        drop(a);
        ipn::Network::remove(&path, true).unwrap();
    }

    #[test]
    fn ambiguous_option_is_einval_listing_the_options() {
        let path = tmp("ambiguous");
        let e = open(&format!("{}[m=5]", path.display())).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(e.message.contains("'m' is ambiguous"), "{}", e.message);
        assert!(
            e.message.contains("the options are ports=N"),
            "{}",
            e.message
        );
        assert!(!path.exists(), "nothing created on a refused open");
    }

    /// The frames `conn` receives now: their tags' VLAN IDs (if tagged)
    /// and their last byte.
    fn received(conn: &Conn) -> Vec<(Option<u16>, u8)> {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(Received::Frame(len)) = conn.recv(&mut buf) {
            let frame = ipn::ethernet::Frame::new_checked(&buf[..len]).unwrap();
            got.push((frame.tag().map(|t| t.vid()), buf[len - 1]));
        }
        got
    }

    fn ethernet(vid: Option<u16>, last: u8) -> Vec<u8> {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, last]);
        if let Some(vid) = vid {
            f.extend_from_slice(&ipn::ethernet::Tci::for_vlan(vid).to_bytes());
        }
        f.extend_from_slice(&[0x88, 0xb5, last]);
        f
    }

    #[test]
    fn vlan_and_trunk_options_make_access_and_trunk_ports() {
        let path = tmp("vlans");
        let p = path.display();
        let a10 = open(&format!("{p}[switch/vlan=10]")).unwrap();
        let b10 = open(&format!("{p}[vlan=10]")).unwrap();
        let c20 = open(&format!("{p}[vlan=20]")).unwrap();
        let trunk = open(&format!("{p}[trunk=10:20/native=1]")).unwrap();
        let status = ipn::Network::open(&path).unwrap().status();
        assert_eq!(status.protocol, ipn::Protocol::Switch);
        assert_eq!(status.ports[0].vlan, ipn::ethernet::Vlan::Access(10));
        assert_eq!(a10.send(&ethernet(None, 1), false), Ok(15));
        assert_eq!(received(&b10), vec![(None, 1)]);
        assert_eq!(received(&c20), vec![], "VLAN 20 hears nothing of 10");
        assert_eq!(received(&trunk), vec![(Some(10), 1)]);
        assert_eq!(trunk.send(&ethernet(Some(20), 2), false), Ok(19));
        assert_eq!(trunk.send(&ethernet(None, 3), false), Ok(15), "native: 1");
        assert_eq!(received(&c20), vec![(None, 2)]);
        assert_eq!(received(&a10), vec![]);
        // A tagged frame from an access port is dropped, not an error.
        assert_eq!(c20.send(&ethernet(Some(20), 4), false), Ok(19));
        assert_eq!(received(&trunk), vec![]);
        drop((a10, b10, c20, trunk));
        ipn::Network::remove(&path, true).unwrap();
    }

    #[test]
    fn bad_vlan_options_are_einval_and_create_nothing() {
        let path = tmp("badvlan");
        for options in [
            "[vlan=4095]",
            "[vlan=1/trunk=2]",
            "[native=3]",
            "[trunk=1:x]",
        ] {
            let e = open(&format!("{}{options}", path.display())).unwrap_err();
            assert_eq!(e.errno, libc::EINVAL, "{options}");
            assert!(!path.exists(), "nothing created on a refused open");
        }
    }

    #[test]
    fn port_is_eopnotsupp() {
        let path = tmp("portopt");
        let e = open(&format!("{}[port=2]", path.display())).unwrap_err();
        assert_eq!(e.errno, libc::EOPNOTSUPP);
        assert!(!path.exists(), "nothing created on a refused open");
    }

    #[test]
    fn requested_port_number_is_refused() {
        let path = tmp("portnum");
        let e = Conn::open(
            path.display().to_string().as_bytes(),
            "t",
            &OpenArgs { port: 3 },
        )
        .unwrap_err();
        assert_eq!(e.errno, libc::EOPNOTSUPP);
        assert!(!path.exists(), "nothing created on a refused open");
    }

    #[test]
    fn options_contradicting_an_existing_network_fail() {
        let path = tmp("mismatch");
        let a = open(&path.display().to_string()).unwrap();
        let e = open(&format!("{}[mtu=9000]", path.display())).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(
            e.message.contains("mtu: asked 9000, network has 1514"),
            "{}",
            e.message
        );
        drop(a);
        ipn::Network::remove(&path, true).unwrap();
    }

    #[test]
    fn impossible_config_is_einval() {
        let e = open("/tmp/vdeplug-ipn-never[mtu=10]").unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(e.message.contains("mtu"), "{}", e.message);
    }
}
