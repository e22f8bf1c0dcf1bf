//! # ipn: Inter Process Networking
//!
//! A network is a path in the filesystem. Processes join it as *ports*, and
//! every frame one port sends reaches every other reading port, as on an
//! Ethernet hub. There is no server: the sender writes the frame into
//! shared memory (`PATH/shm`) and the readers read it from there; a reader
//! that sleeps is woken by one datagram on its doorbell socket
//! (`PATH/bell.N`), which is also the fd it can `poll`.
//!
//! ```no_run
//! use ipn::{Config, JoinOptions, Network, Port};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! Network::create("/tmp/net", &Config::default())?;
//! let mut a = Port::join("/tmp/net", &JoinOptions::described("a"))?;
//! let mut b = Port::join("/tmp/net", &JoinOptions::described("b"))?;
//! a.send(b"hello")?;
//! let mut buf = [0u8; 1514];
//! let n = b.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello");
//! # Ok(()) }
//! ```
//!
//! ## Layers
//!
//! From the bottom up; no module reaches up to a layer above it.
//!
//! - `sync`: the atomics, from one place (loom's in a model-checking
//!   build).
//! - `shm` (private): the mapped file, its layout and validation, SIGBUS
//!   confinement; the only module with `unsafe` code.
//! - `files`: the network directory, reached through one `O_NOFOLLOW`
//!   descriptor.
//! - [`ethernet`]: typed views of a frame (addresses, 802.1Q tag), read
//!   and written, and VLAN membership. [`offload`]: GSO and checksum
//!   offload done in software (checksum arithmetic, IP/TCP/UDP header
//!   views, the virtio-net header, [`offload::Segments`]). Both are pure:
//!   bytes in, bytes out.
//! - `ring`: the per-sender seqlock ring that carries frames; `pending`:
//!   which senders may have frames for a reader.
//! - `membership`, `liveness`, `wake`, `doorbell`: who is joined, who died
//!   (an OFD lock per port), the sleep/wake handshake and the socket that
//!   wakes a sleeper.
//! - `switch`: a port's private MAC table (switch mode).
//! - `config`, `error`: what networks and ports are made with, and what
//!   goes wrong.
//! - `port` ([`Port`]: joining, sending, receiving, pacing; split by
//!   [`Port::split`] into a [`PortSender`] and a [`PortReceiver`] for two
//!   threads) and `network` ([`Network`]: creating, inspecting, removing):
//!   the public API;
//!   `published` ([`Publisher`]): what a port's program says about itself
//!   for `status`, in a file of its own.
//! - `loom_tests`: the concurrency core under the model checker (only
//!   with `--cfg loom`).
//!
//! ## Semantics
//!
//! - Frames from one sender arrive in order; a port never receives its own.
//! - Lossy networks (default): a slow reader loses the oldest frames; the
//!   loss is counted in its `rx_dropped`. The sender never waits.
//! - Lossless networks: the sender waits until every live reading port has
//!   room. Ports that died or shut down reading are not waited for; a dead
//!   reader is noticed within about 100 ms.
//! - A process may die at any point; its slot is reclaimed by the next
//!   joiner, and nobody else stalls.

mod config;
#[cfg(not(loom))]
mod doorbell;
mod error;
pub mod ethernet;
mod files;
mod liveness;
mod membership;
mod network;
pub mod offload;
mod pending;
mod port;
#[cfg(not(loom))]
mod published;
mod ring;
mod shm;
mod switch;
mod sync;
pub mod values;
mod wake;

#[cfg(all(test, loom))]
mod loom_tests;

pub use config::{Config, JoinOptions, Protocol};
pub use error::{OpenError, RecvError, SendError};
pub use membership::Membership;
pub use network::{Access, Network, PortState, PortStatus, Status};
pub use port::{Batch, Message, Port, PortReceiver, PortSender, Shutdown};
#[cfg(not(loom))]
pub use published::{published_name, PublishedError, Publisher, MAX_PUBLISHED};

/// Looks a group up by name or number (for [`Config::group`]).
pub fn group_id(name: &str) -> Option<u32> {
    files::group_id(name)
}

/// Byte offsets inside a network's shared file, derived from its layout:
/// for tests that scribble on it. Not a stable interface; it changes with
/// [`LAYOUT_VERSION`].
#[doc(hidden)]
#[cfg(not(loom))]
pub mod raw_layout {
    pub use crate::shm::layout::offsets::*;
}

/// The layout version this build reads and writes.
pub const LAYOUT_VERSION: u32 = shm::layout::LAYOUT_VERSION;
