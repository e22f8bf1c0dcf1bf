//! Attachments: how frames enter and leave an ipn network other than
//! through its ports' own programs.
//!
//! - `tap`: a TAP interface, the host's way into a network;
//! - `grab`: an existing interface (say `eth1`), through `AF_PACKET`, so
//!   the virtual network reaches the wire;
//! - `vxlan`: a VXLAN tunnel endpoint (RFC 7348), to join networks on other
//!   hosts, interoperable with Linux kernel vxlan devices.
//!
//! Each is a [`Link`]: something with a pollable fd that gives and takes
//! Ethernet frames. [`bridge`] joins a [`Link`] to a [`ipn::Port`] and
//! moves frames both ways until told to stop. There is still no server: the
//! bridging process is one more port, and the network works without it.
//!
//! The bridge never waits longer than [`STOP_CHECK`] without asking its
//! caller whether to stop: not on either fd, and not in a send into a
//! lossless network, which waits for the slowest live reader, and so, for
//! a reader that is alive but not reading (stopped, hung), forever.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use ipn::{Batch, Port, PortReceiver, PortSender, RecvError, SendError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

pub mod grab;
pub mod gro;
mod sys;
pub mod tap;
pub mod vxlan;

/// A source and sink of Ethernet frames with a pollable fd.
pub trait Link {
    /// What it is, for messages: `tap ipn0`, `vxlan vni 42 to 10.1.1.2`.
    fn describe(&self) -> String;
    /// Readable when [`Link::recv`] has a frame to give.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Gives one waiting frame without blocking; `Ok(None)` if none waits.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Takes one frame. An error is about this frame only (too big for the
    /// link, link down...); the bridge counts it and goes on.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Called by the bridge on every wake-up (at least every 100 ms),
    /// readable or not: an error ends the bridge as a [`Link::recv`] error
    /// does. For links whose fd may fall silent when they are gone
    /// (a grabbed interface deleted while down). Cheap by default.
    fn check(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Whether the link carries a virtio-net header before each frame
    /// (a TAP with offloads). The bridge then needs a port that takes
    /// offloads, and moves header and frame together with
    /// [`Link::recv_vnet`] and [`Link::send_vnet`]: GSO frames cross whole.
    fn offloads(&self) -> bool {
        false
    }
    /// [`Link::recv`] with the virtio-net header before the frame.
    fn recv_vnet(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.recv(buf)
    }
    /// [`Link::send`] with the virtio-net header before the frame.
    fn send_vnet(&mut self, buf: &[u8]) -> io::Result<()> {
        self.send(buf)
    }
    /// Sends what [`Link::send`] gathered (a link may hold frames to send
    /// several in one system call): the bridge calls it whenever the
    /// network has no more frames for now. Errors are the link's to count.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The half of a link that takes frames, for [`bridge_split`]: what
/// [`Link`] has for sending.
pub trait LinkSender {
    /// [`Link::offloads`].
    fn offloads(&self) -> bool {
        false
    }
    /// [`Link::send`].
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// [`Link::send_vnet`].
    fn send_vnet(&mut self, buf: &[u8]) -> io::Result<()> {
        self.send(buf)
    }
    /// [`Link::flush`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// [`Link::check`], on the sending half's thread.
    fn check(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The half of a link that gives frames, for [`bridge_split`]: what
/// [`Link`] has for receiving.
pub trait LinkReceiver {
    /// [`Link::describe`].
    fn describe(&self) -> String;
    /// [`Link::fd`].
    fn fd(&self) -> BorrowedFd<'_>;
    /// [`Link::offloads`].
    fn offloads(&self) -> bool {
        false
    }
    /// [`Link::recv`].
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// [`Link::recv_vnet`].
    fn recv_vnet(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.recv(buf)
    }
    /// [`Link::check`], on the receiving half's thread.
    fn check(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A whole [`Link`] as either half, for the one thread of [`bridge`].
struct Whole<'a>(&'a mut dyn Link);

impl LinkSender for Whole<'_> {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.0.send(frame)
    }
    fn send_vnet(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.send_vnet(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl LinkReceiver for Whole<'_> {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.fd()
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.0.recv(buf)
    }
    fn recv_vnet(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.0.recv_vnet(buf)
    }
}

/// Where a bridge takes frames from the network: a whole [`Port`], or its
/// receiving half.
trait NetworkReceiver {
    fn try_recv_after_poll(&mut self, buf: &mut [u8]) -> Result<usize, RecvError>;
    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError>;
}

/// Where a bridge puts frames into the network: a whole [`Port`], or its
/// sending half; in batches, so that the network's sleeping readers are
/// woken once for the frames of one burst from the link.
trait NetworkSender {
    fn batch(&mut self) -> Batch<'_>;
}

impl NetworkReceiver for Port {
    fn try_recv_after_poll(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        Port::try_recv_after_poll(self, buf)
    }
    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        Port::try_recv(self, buf)
    }
}

impl NetworkReceiver for PortReceiver<'_> {
    fn try_recv_after_poll(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        PortReceiver::try_recv_after_poll(self, buf)
    }
    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        PortReceiver::try_recv(self, buf)
    }
}

impl NetworkSender for Port {
    fn batch(&mut self) -> Batch<'_> {
        Port::batch(self)
    }
}

impl NetworkSender for PortSender<'_> {
    fn batch(&mut self) -> Batch<'_> {
        PortSender::batch(self)
    }
}

/// What a [`bridge`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Frames from the link sent into the network.
    pub to_network: u64,
    /// Frames from the network handed to the link.
    pub from_network: u64,
    /// Frames from the network the link refused (e.g. over its MTU).
    pub link_refused: u64,
    /// Frames from the link the network refused (over its MTU, or with a
    /// virtio-net header that does not describe them).
    pub network_refused: u64,
}

/// Why a bridge stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Reading from the link failed for good.
    #[error("{link}: {source}")]
    Link {
        /// The link's description.
        link: String,
        /// What the system said.
        source: io::Error,
    },
    /// Waiting on the port failed.
    #[error("network port: {0}")]
    Port(#[from] RecvError),
    /// poll(2) failed.
    #[error("poll: {0}")]
    Poll(io::Error),
    /// The second thread of [`bridge_split`] could not start, or died.
    #[error("bridge thread: {0}")]
    Thread(io::Error),
}

/// Most frames moved in one direction before looking at the other.
const BATCH: usize = 256;

/// Most frames from the link written into the network before its sleeping
/// readers are told (at a microsecond or two per frame read from a TAP or
/// socket, about 50 µs).
const ANNOUNCE_EVERY: usize = 32;

/// Bytes of the bridge's buffer at least: any datagram a VXLAN socket
/// takes, any frame a TAP or a grabbed interface gives (their MTU is at
/// most 65535), and room for a grabbed frame's 802.1Q tag put back.
pub const LINK_BUFFER: usize = 65536 + ipn::ethernet::TAG_LEN;

/// Longest the bridge waits (for either side, or for room in a lossless
/// network) before asking its caller whether to stop.
pub const STOP_CHECK: Duration = Duration::from_millis(100);

/// Moves frames between `port` and `link` until `stop` returns true, on
/// this thread. It is asked at least every [`STOP_CHECK`], also while a
/// frame from the link waits for room in a lossless network: that frame
/// is then dropped, and the bridge returns the totals so far.
pub fn bridge(
    port: &mut Port,
    link: &mut dyn Link,
    stop: &dyn Fn() -> bool,
) -> Result<BridgeStats, BridgeError> {
    let mut stats = BridgeStats::default();
    // Both ways through one buffer: a frame of the network, tag included
    // (`max_frame`), never truncated; and whatever a link gives.
    let mut buf = vec![0u8; port.max_frame().max(LINK_BUFFER)];
    // Headers and frames cross together when both sides take offloads.
    let vnet = port.offload() && link.offloads();
    while !stop() {
        let [port_ready, link_ready] = wait([port.as_fd(), link.fd()])?;
        if port_ready {
            network_to_link(port, &mut Whole(link), &mut buf, &mut stats, vnet)?;
        }
        if link_ready {
            link_to_network(port, &mut Whole(link), &mut buf, &mut stats, stop, vnet)?;
        }
        link.check().map_err(|source| BridgeError::Link {
            link: link.describe(),
            source,
        })?;
    }
    Ok(stats)
}

/// [`bridge`] with each direction on a thread of its own: from the network
/// to the link on a new thread, through `sender`; from the link to the
/// network on this one, through `receiver`. The port is split
/// ([`Port::split`]) the same way, so that neither direction waits for
/// the other: a burst one way, or a send waiting for room in a lossless
/// network, does not hold up the other way. Both threads ask `stop` at
/// least every [`STOP_CHECK`]; when either ends with an error, the other
/// ends within as long, and the first error is returned.
pub fn bridge_split(
    port: &mut Port,
    sender: &mut (dyn LinkSender + Send),
    receiver: &mut (dyn LinkReceiver + Send),
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<BridgeStats, BridgeError> {
    let vnet = port.offload() && sender.offloads() && receiver.offloads();
    let size = port.max_frame().max(LINK_BUFFER);
    let name = receiver.describe();
    let (mut to_network, mut from_network) = port.split();
    let failed = AtomicBool::new(false);
    let ended = || failed.load(Ordering::Relaxed) || stop();
    let failing = |result: Result<BridgeStats, BridgeError>| {
        if result.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        result
    };
    let link_error = |source| BridgeError::Link {
        link: name.clone(),
        source,
    };
    std::thread::scope(|scope| {
        let outbound = std::thread::Builder::new()
            .name("network->link".into())
            .spawn_scoped(scope, || {
                failing((|| {
                    let mut stats = BridgeStats::default();
                    let mut buf = vec![0u8; size];
                    while !ended() {
                        let [ready] = wait([from_network.as_fd()])?;
                        if ready {
                            network_to_link(&mut from_network, sender, &mut buf, &mut stats, vnet)?;
                        }
                        sender.check().map_err(link_error)?;
                    }
                    Ok(stats)
                })())
            })
            .map_err(BridgeError::Thread)?;
        let inbound = failing((|| {
            let mut stats = BridgeStats::default();
            let mut buf = vec![0u8; size];
            while !ended() {
                let [ready] = wait([receiver.fd()])?;
                if ready {
                    link_to_network(
                        &mut to_network,
                        receiver,
                        &mut buf,
                        &mut stats,
                        &ended,
                        vnet,
                    )?;
                }
                receiver.check().map_err(link_error)?;
            }
            Ok(stats)
        })());
        let outbound = outbound
            .join()
            .unwrap_or(Err(BridgeError::Thread(io::Error::other(
                "the thread from the network to the link panicked",
            ))));
        let (inbound, outbound) = (inbound?, outbound?);
        Ok(BridgeStats {
            to_network: inbound.to_network,
            network_refused: inbound.network_refused,
            from_network: outbound.from_network,
            link_refused: outbound.link_refused,
        })
    })
}

/// Waits up to [`STOP_CHECK`] for any of `fds`; says which is readable.
fn wait<const N: usize>(fds: [BorrowedFd<'_>; N]) -> Result<[bool; N], BridgeError> {
    let mut polled = fds.map(|fd| PollFd::new(fd, PollFlags::POLLIN));
    let timeout = PollTimeout::try_from(STOP_CHECK).unwrap_or(PollTimeout::MAX);
    match poll(&mut polled, timeout) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok([false; N]),
        Err(e) => return Err(BridgeError::Poll(e.into())),
    }
    Ok(polled.map(|fd| {
        fd.revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
    }))
}

fn network_to_link(
    port: &mut impl NetworkReceiver,
    link: &mut dyn LinkSender,
    buf: &mut [u8],
    stats: &mut BridgeStats,
    vnet: bool,
) -> Result<(), BridgeError> {
    for i in 0..BATCH {
        let received = if i == 0 {
            port.try_recv_after_poll(buf)
        } else {
            port.try_recv(buf)
        };
        match received {
            Ok(len) => match if vnet {
                link.send_vnet(&buf[..len])
            } else {
                link.send(&buf[..len])
            } {
                Ok(()) => stats.from_network += 1,
                Err(_) => stats.link_refused += 1,
            },
            Err(RecvError::WouldBlock) => break,
            Err(e) => {
                let _ = link.flush();
                return Err(e.into());
            }
        }
    }
    let _ = link.flush();
    Ok(())
}

/// Moves up to [`BATCH`] frames from the link into the network; returns
/// early when `stop` says so while a send waits for room.
fn link_to_network(
    port: &mut impl NetworkSender,
    link: &mut dyn LinkReceiver,
    buf: &mut [u8],
    stats: &mut BridgeStats,
    stop: &dyn Fn() -> bool,
    vnet: bool,
) -> Result<(), BridgeError> {
    // Readers asleep are woken when the link has no more for now, or
    // every ANNOUNCE_EVERY frames: once per burst, and never long after
    // a frame was written.
    let mut batch = port.batch();
    for n in 1..=BATCH {
        let received = if vnet {
            link.recv_vnet(buf)
        } else {
            link.recv(buf)
        };
        let len = match received {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(source) => {
                return Err(BridgeError::Link {
                    link: link.describe(),
                    source,
                })
            }
        };
        match send_unless_stopped(&mut batch, &buf[..len], stop) {
            SendOutcome::Written => stats.to_network += 1,
            SendOutcome::Refused => stats.network_refused += 1,
            SendOutcome::Unsent => {}
            SendOutcome::Stopped => break,
        }
        if n % ANNOUNCE_EVERY == 0 {
            batch.flush();
        }
    }
    Ok(())
}

/// What became of a frame given to [`send_unless_stopped`].
enum SendOutcome {
    /// Written into the network.
    Written,
    /// Over the network's MTU, empty, or with a bad virtio-net header
    /// (a GSO frame whose segments would be over the MTU, among others).
    Refused,
    /// The port does not write: nothing to count.
    Unsent,
    /// `stop` said so while the send waited for room.
    Stopped,
}

/// Sends `frame`, waiting for room in a lossless network as long as it
/// takes, unless `stop` (asked every [`STOP_CHECK`]) says otherwise.
fn send_unless_stopped(port: &mut Batch<'_>, frame: &[u8], stop: &dyn Fn() -> bool) -> SendOutcome {
    loop {
        match port.send_timeout(frame, STOP_CHECK) {
            Ok(()) => return SendOutcome::Written,
            Err(SendError::TimedOut) if stop() => return SendOutcome::Stopped,
            Err(SendError::TimedOut) => continue,
            Err(SendError::TooBig { .. } | SendError::Empty | SendError::Offload(_)) => {
                return SendOutcome::Refused
            }
            Err(_) => return SendOutcome::Unsent,
        }
    }
}
