//! The receiving half of the endpoint ([`VxlanReceiver`]): datagrams from
//! the remotes to the network. A datagram is a frame only if it is a
//! VXLAN datagram for our VNI; its source address is learned behind the
//! remote it came from. With offloads, one `recvmmsg` takes GRO batches
//! and consecutive TCP segments are joined ([`crate::gro`]).
//!
//! It owns its counters ([`RxState`]) and posts a copy of them to the
//! shared part at most every [`POST_EVERY`], where the sending half's
//! thread reads them to publish the endpoint's counters; it learns into
//! the shared forwarding table.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use ipn::ethernet::Frame;
use quinn_udp::{RecvMeta, UdpSockRef};

use super::remotes::{fdb_key, RemoteKind, RemoteStats, Remotes};
use super::{canonical, lock, parse, Rejected, Shared, VxlanStats, HEADER_LEN};
use crate::gro::Coalescer;
use crate::LinkReceiver;

/// Bad datagrams skipped in one `recv` before returning to the caller.
const SKIP_LIMIT: usize = 256;
/// Receive buffers of one `recvmmsg` with offloads, each room for one
/// GRO batch (at most 64 KiB).
const RX_SLOTS: usize = 8;
const RX_SLOT: usize = 65536;
/// Longest the counters the receiving half posts may lag.
pub(super) const POST_EVERY: Duration = Duration::from_millis(100);

/// What only the receiving half touches.
#[derive(Debug)]
pub(super) struct RxState {
    /// Its counters: `received`, `malformed`, `other_vni`, `recv_errors`,
    /// `recv_calls`, `joined`.
    pub(super) stats: VxlanStats,
    /// Its counters per remote.
    pub(super) remotes: Remotes,
    /// The buffers of one `recvmmsg`, made on first use.
    slots: Vec<u8>,
    gro: Coalescer,
    /// When the counters were last posted ([`VxlanReceiver::post`]).
    posted: Option<Instant>,
}

impl RxState {
    pub(super) fn new(flood: &[SocketAddr]) -> RxState {
        RxState {
            stats: VxlanStats::default(),
            remotes: Remotes::new(flood),
            slots: Vec::new(),
            gro: Coalescer::default(),
            posted: None,
        }
    }
}

/// The receiving half of a [`super::Vxlan`] ([`super::Vxlan::split`]):
/// gives frames from the remotes, on a thread of its own if need be.
#[derive(Debug)]
pub struct VxlanReceiver<'a> {
    pub(super) shared: &'a Shared,
    pub(super) rx: &'a mut RxState,
}

impl VxlanReceiver<'_> {
    /// The VTEP a datagram from `from` came from: a configured remote of
    /// that address, or the address at the VXLAN port.
    fn vtep_of(&self, from: SocketAddr) -> (SocketAddr, RemoteKind) {
        let shared = self.shared;
        match shared.flood.iter().find(|r| r.ip() == from.ip()) {
            Some(remote) => (*remote, RemoteKind::Configured),
            // A VTEP sends from any source port (the kernel hashes flows
            // over a range) and listens on the VXLAN port.
            None if shared.learn_any => {
                (SocketAddr::new(from.ip(), shared.port), RemoteKind::Learned)
            }
            None => (
                SocketAddr::new(from.ip(), shared.port),
                RemoteKind::Unconfigured,
            ),
        }
    }

    /// Copies the counters where the sending half's thread reads them.
    pub fn post(&mut self) {
        *lock(&self.shared.rx_posted) = (self.rx.stats, self.rx.remotes.clone());
        self.rx.posted = Some(Instant::now());
    }

    /// Learns that the source of `frame` is behind `vtep`.
    fn learn(&self, frame: &Frame<'_>, vtep: SocketAddr, kind: RemoteKind) {
        lock(&self.shared.fdb).learn(fdb_key(frame, frame.src()), vtep, kind);
    }

    /// Receives what waits (one `recvmmsg`, GRO batches in it), joining
    /// TCP segments; false if nothing waited.
    fn receive_batch(&mut self) -> io::Result<bool> {
        let mut slots = std::mem::take(&mut self.rx.slots);
        if slots.is_empty() {
            slots = vec![0; RX_SLOTS * RX_SLOT];
        }
        let received = self.receive_into(&mut slots);
        self.rx.slots = slots;
        received
    }

    fn receive_into(&mut self, slots: &mut [u8]) -> io::Result<bool> {
        let mut meta = [RecvMeta::default(); RX_SLOTS];
        let n = {
            let mut chunks = slots.chunks_mut(RX_SLOT);
            let mut iovs: [IoSliceMut<'_>; RX_SLOTS] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            let (socket, udp) = (&self.shared.socket, &self.shared.udp);
            loop {
                match udp.recv(UdpSockRef::from(socket), &mut iovs, &mut meta) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        // An ICMP error for an earlier send, and the like.
                        self.rx.stats.recv_errors += 1;
                        return Ok(true);
                    }
                }
            }
        };
        self.rx.stats.recv_calls += 1;
        let vni = self.shared.vni;
        let mut last_learned: Option<(ipn::ethernet::Mac, SocketAddr)> = None;
        for (i, m) in meta.iter().enumerate().take(n) {
            let slot = i * RX_SLOT;
            let data_end = slot + m.len.min(RX_SLOT);
            let stride = m.stride.max(1);
            let from = canonical(m.addr);
            let (vtep, kind) = self.vtep_of(from);
            let mut got = RemoteStats::default();
            let mut at = slot;
            while at < data_end {
                let end = (at + stride).min(data_end);
                let datagram = &slots[at..end];
                at = end;
                let frame = match parse(datagram, vni) {
                    Ok(frame) => frame,
                    Err(Rejected::OtherVni(_)) => {
                        got.other_vni += 1;
                        continue;
                    }
                    Err(Rejected::TooShort | Rejected::NoVni) => {
                        got.bad_header += 1;
                        continue;
                    }
                };
                got.rx_datagrams += 1;
                got.rx_bytes += datagram.len() as u64;
                if self.shared.learning {
                    if let Some(view) = Frame::new_checked(frame) {
                        // A stream's segments share a source: learn once.
                        if last_learned != Some((view.src(), from)) {
                            last_learned = Some((view.src(), from));
                            self.learn(&view, vtep, kind);
                        }
                    }
                }
                self.rx.gro.push(frame);
            }
            let stats = &mut self.rx.stats;
            stats.received += got.rx_datagrams;
            stats.malformed += got.bad_header;
            stats.other_vni += got.other_vni;
            self.rx.remotes.stats(vtep, kind).add(&got);
        }
        self.rx.gro.finish();
        self.rx.stats.joined = self.rx.gro.joined();
        Ok(true)
    }

    /// One datagram, one system call: without offloads.
    fn recv_one(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        for _ in 0..SKIP_LIMIT {
            let (len, from) = match self.shared.socket.recv_from(buf) {
                Ok(got) => {
                    self.rx.stats.recv_calls += 1;
                    got
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // An ICMP error for an earlier send, and the like: about
                    // the network, not a reason to stop.
                    self.rx.stats.recv_errors += 1;
                    continue;
                }
            };
            let (vtep, kind) = self.vtep_of(canonical(from));
            let parsed = if len == buf.len() {
                // Possibly truncated: the buffer is smaller than the datagram.
                Err(Rejected::TooShort)
            } else {
                parse(&buf[..len], self.shared.vni)
            };
            let remote = self.rx.remotes.stats(vtep, kind);
            let stats = &mut self.rx.stats;
            let frame = match parsed {
                Ok(frame) => frame,
                Err(Rejected::OtherVni(_)) => {
                    remote.other_vni += 1;
                    stats.other_vni += 1;
                    continue;
                }
                Err(Rejected::TooShort | Rejected::NoVni) => {
                    remote.bad_header += 1;
                    stats.malformed += 1;
                    continue;
                }
            };
            remote.rx_datagrams += 1;
            remote.rx_bytes += len as u64;
            stats.received += 1;
            let frame_len = frame.len();
            if self.shared.learning {
                // A tagged frame cut short has no VLAN to learn it in.
                if let Some(view) = Frame::new_checked(frame) {
                    self.learn(&view, vtep, kind);
                }
            }
            buf.copy_within(HEADER_LEN..len, 0);
            return Ok(Some(frame_len));
        }
        Ok(None)
    }
}

impl LinkReceiver for VxlanReceiver<'_> {
    fn describe(&self) -> String {
        self.shared.description.clone()
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.shared.socket.as_fd()
    }

    fn offloads(&self) -> bool {
        self.shared.offload
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.recv_one(buf)
    }

    fn recv_vnet(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        for _ in 0..SKIP_LIMIT {
            if let Some(len) = self.rx.gro.pop_into(buf) {
                return Ok(Some(len));
            }
            if !self.receive_batch()? {
                return Ok(None);
            }
        }
        Ok(None)
    }

    fn check(&mut self) -> io::Result<()> {
        if self.rx.posted.is_none_or(|at| at.elapsed() >= POST_EVERY) {
            self.post();
        }
        Ok(())
    }
}
