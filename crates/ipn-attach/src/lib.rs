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

#![deny(missing_docs)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipn::{Port, RecvError, SendError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

pub mod grab;
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
    /// Frames from the link the network refused (over its MTU).
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
}

/// Most frames moved in one direction before looking at the other.
const BATCH: usize = 256;

/// Moves frames between `port` and `link` until `stop` is set (checked at
/// least every 100 ms). `progress` is called after every wake-up with the
/// totals so far.
pub fn bridge(
    port: &mut Port,
    link: &mut dyn Link,
    stop: &AtomicBool,
    mut progress: impl FnMut(&BridgeStats),
) -> Result<BridgeStats, BridgeError> {
    let mut stats = BridgeStats::default();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let (port_ready, link_ready) = wait(port, link)?;
        if port_ready {
            network_to_link(port, link, &mut buf, &mut stats)?;
        }
        if link_ready {
            link_to_network(port, link, &mut buf, &mut stats, stop)?;
        }
        link.check().map_err(|source| BridgeError::Link {
            link: link.describe(),
            source,
        })?;
        progress(&stats);
    }
    Ok(stats)
}

/// Waits up to 100 ms for either side; says which is readable.
fn wait(port: &Port, link: &dyn Link) -> Result<(bool, bool), BridgeError> {
    let mut fds = [
        PollFd::new(port.as_fd(), PollFlags::POLLIN),
        PollFd::new(link.fd(), PollFlags::POLLIN),
    ];
    match poll(&mut fds, PollTimeout::from(100u8)) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok((false, false)),
        Err(e) => return Err(BridgeError::Poll(e.into())),
    }
    let readable = |fd: &PollFd| {
        fd.revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
    };
    Ok((readable(&fds[0]), readable(&fds[1])))
}

fn network_to_link(
    port: &mut Port,
    link: &mut dyn Link,
    buf: &mut [u8],
    stats: &mut BridgeStats,
) -> Result<(), BridgeError> {
    for i in 0..BATCH {
        let received = if i == 0 {
            port.try_recv_after_poll(buf)
        } else {
            port.try_recv(buf)
        };
        match received {
            Ok(len) => match link.send(&buf[..len]) {
                Ok(()) => stats.from_network += 1,
                Err(_) => stats.link_refused += 1,
            },
            Err(RecvError::WouldBlock) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn link_to_network(
    port: &mut Port,
    link: &mut dyn Link,
    buf: &mut [u8],
    stats: &mut BridgeStats,
    stop: &AtomicBool,
) -> Result<(), BridgeError> {
    for _ in 0..BATCH {
        let len = match link.recv(buf) {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(source) => {
                return Err(BridgeError::Link {
                    link: link.describe(),
                    source,
                })
            }
        };
        // Lossless networks may make us wait; keep noticing `stop`.
        loop {
            match port.send_timeout(&buf[..len], Duration::from_millis(100)) {
                Ok(()) => stats.to_network += 1,
                Err(SendError::TimedOut) if !stop.load(Ordering::Relaxed) => continue,
                Err(SendError::TooBig { .. }) | Err(SendError::Empty) => stats.network_refused += 1,
                Err(_) => {}
            }
            break;
        }
    }
    Ok(())
}
