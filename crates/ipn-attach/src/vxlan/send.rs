//! The sending half of the endpoint ([`VxlanSender`]): frames from the
//! network to the remotes. A frame goes to the remote its destination was
//! learned behind, or to every remote (and the group); datagrams to one
//! remote are gathered back to back for one `sendmsg` with `UDP_SEGMENT`
//! (see the module doc of [`super`]).
//!
//! It owns its counters ([`TxState`]) and reads the rest from the shared
//! part ([`Shared`]): the socket, the configuration and the forwarding
//! table, which it only looks up.

use std::io;
use std::net::SocketAddr;

use ipn::ethernet::{self, Frame};
use ipn::offload::{self, HdrLayout, VirtioNetHdr};
use quinn_udp::{Transmit, UdpSockRef};

use super::remotes::{fdb_key, RemoteKind, Remotes};
use super::{lock, write_header, Oversized, Shared, VxlanStats, HEADER_LEN};
use crate::sys::udp as sys;
use crate::LinkSender;

/// What only the sending half touches.
#[derive(Debug)]
pub(super) struct TxState {
    /// Its counters: `sent`, `oversized`, `send_errors`, `unicast`,
    /// `send_calls`.
    pub(super) stats: VxlanStats,
    /// Its counters per remote, and each path's MTU.
    pub(super) remotes: Remotes,
    /// Frames refused as too big, not yet reported.
    oversized: Option<Oversized>,
    /// One datagram being made, without offloads.
    out: Vec<u8>,
    /// Datagrams gathered for one GSO send.
    batch: Batch,
    /// Where a frame goes, reused.
    destinations: Vec<SocketAddr>,
    /// Where [`LinkSender::send_vnet`] cuts a frame with offloads, one
    /// wire frame at a time; kept, so that no frame allocates.
    cut_buf: Vec<u8>,
}

/// Datagrams gathered for one send: back to back, all `stride` bytes but
/// the last.
#[derive(Debug, Default)]
struct Batch {
    buf: Vec<u8>,
    to: Option<SocketAddr>,
    stride: usize,
    count: usize,
    /// The last datagram was shorter, or over `limit`: nothing more may
    /// follow it.
    closed: bool,
    /// The largest datagram the path to `to` takes (see
    /// [`Remotes::payload_limit`]).
    limit: usize,
}

impl TxState {
    pub(super) fn new(flood: &[SocketAddr]) -> TxState {
        TxState {
            stats: VxlanStats::default(),
            remotes: Remotes::new(flood),
            oversized: None,
            out: Vec::with_capacity(HEADER_LEN + 65536),
            batch: Batch::default(),
            destinations: Vec::new(),
            cut_buf: Vec::new(),
        }
    }
}

/// The sending half of a [`super::Vxlan`] ([`super::Vxlan::split`]): takes
/// frames from the network, on a thread of its own if need be.
#[derive(Debug)]
pub struct VxlanSender<'a> {
    pub(super) shared: &'a Shared,
    pub(super) tx: &'a mut TxState,
}

impl VxlanSender<'_> {
    /// Probes the MTU of the path to every remote we send to again (a
    /// route or an ICMP "too big" may have changed it). Cheap: a few
    /// system calls per remote; call it about once a second.
    pub fn refresh(&mut self) {
        for addr in self.tx.remotes.probed() {
            let mtu = sys::path_mtu(addr, self.shared.local, self.shared.multicast_if).ok();
            self.tx.remotes.set_path_mtu(addr, mtu);
        }
    }

    /// Frames refused as too big since the last call, if any: the first
    /// of them and how many. Print it (it says what to do), at a rate of
    /// your choosing: they are counted meanwhile.
    pub fn take_oversized(&mut self) -> Option<Oversized> {
        self.tx.oversized.take()
    }

    /// Counts a datagram to `to` the system refused: as oversized (and
    /// to be reported) if it was too big.
    fn refused(&mut self, to: SocketAddr, datagram: usize, e: &io::Error) {
        let tx = &mut *self.tx;
        let stats = tx.remotes.stats(to, RemoteKind::Learned);
        if e.raw_os_error() != Some(libc::EMSGSIZE) {
            stats.send_errors += 1;
            tx.stats.send_errors += 1;
            return;
        }
        stats.oversized += 1;
        tx.stats.oversized += 1;
        if let Some(o) = &mut tx.oversized {
            o.count += 1;
            return;
        }
        let path_mtu = sys::path_mtu(to, self.shared.local, self.shared.multicast_if).ok();
        tx.remotes.set_path_mtu(to, path_mtu);
        tx.oversized = Some(Oversized {
            to,
            datagram,
            path_mtu,
            count: 1,
        });
    }

    /// Counts `count` datagrams of `bytes` in all sent to `to`.
    fn sent(&mut self, to: SocketAddr, count: usize, bytes: usize) {
        self.tx.stats.sent += count as u64;
        let stats = self.tx.remotes.stats(to, RemoteKind::Learned);
        stats.tx_datagrams += count as u64;
        stats.tx_bytes += bytes as u64;
    }

    /// Where `frame` goes: the remote its destination was learned behind,
    /// or every remote (and the group); into `self.tx.destinations`.
    fn route(&mut self, frame: &[u8]) {
        let unicast = match Frame::new_checked(frame) {
            Some(view) if self.shared.learning && !ethernet::is_group(&view.dst()) => {
                lock(&self.shared.fdb).learned(fdb_key(&view, view.dst()))
            }
            _ => None,
        };
        let destinations = &mut self.tx.destinations;
        destinations.clear();
        match unicast {
            Some(vtep) => {
                self.tx.stats.unicast += 1;
                destinations.push(vtep);
            }
            None => destinations.extend_from_slice(&self.shared.flood),
        }
    }

    /// Adds `frame`, after its VXLAN header, to the datagrams for `to`,
    /// sending what was gathered first if it cannot follow.
    fn gather(&mut self, to: SocketAddr, frame: &[u8]) {
        let len = HEADER_LEN + frame.len();
        let b = &self.tx.batch;
        let fits = b.to == Some(to)
            && !b.closed
            && b.count < self.shared.udp.max_gso_segments()
            && len <= b.stride
            && b.buf.len() + len <= 65535 - 8;
        if b.count > 0 && !fits {
            self.flush_batch();
        }
        if self.tx.batch.count == 0 {
            let limit = self.tx.remotes.payload_limit(to);
            let b = &mut self.tx.batch;
            b.buf.clear();
            b.to = Some(to);
            b.stride = len;
            b.closed = false;
            b.limit = limit;
        }
        let b = &mut self.tx.batch;
        let at = b.buf.len();
        b.buf.resize(at + HEADER_LEN, 0);
        write_header(self.shared.vni, &mut b.buf[at..]);
        b.buf.extend_from_slice(frame);
        b.count += 1;
        // A datagram over the path's MTU goes alone, to be refused and
        // counted: in a GSO run it would get the whole run refused.
        b.closed = len < b.stride || len > b.limit;
    }

    /// Sends the datagrams gathered: one `sendmsg`, with `UDP_SEGMENT`
    /// when there are several. If the kernel refuses the batch (say, the
    /// path's MTU fell below a segment since it was last probed), each
    /// datagram goes on its own, and those too big are counted as
    /// oversized.
    fn flush_batch(&mut self) {
        let (Some(to), count) = (self.tx.batch.to, self.tx.batch.count) else {
            return;
        };
        if count == 0 {
            return;
        }
        self.tx.batch.count = 0;
        let buf = std::mem::take(&mut self.tx.batch.buf);
        let stride = self.tx.batch.stride;
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: &buf,
            segment_size: (count > 1).then_some(stride),
            src_ip: None,
        };
        self.tx.stats.send_calls += 1;
        let socket = &self.shared.socket;
        match self
            .shared
            .udp
            .try_send(UdpSockRef::from(socket), &transmit)
        {
            Ok(()) => self.sent(to, count, buf.len()),
            Err(_) if count > 1 => {
                for datagram in buf.chunks(stride) {
                    self.tx.stats.send_calls += 1;
                    match socket.send_to(datagram, to) {
                        Ok(_) => self.sent(to, 1, datagram.len()),
                        Err(e) => self.refused(to, datagram.len(), &e),
                    }
                }
            }
            Err(e) => self.refused(to, buf.len(), &e),
        }
        self.tx.batch.buf = buf;
    }

    /// Sends the datagram in `self.tx.out` to `to`, one system call.
    fn send_one(&mut self, to: SocketAddr) -> io::Result<()> {
        self.tx.stats.send_calls += 1;
        let len = self.tx.out.len();
        match self.shared.socket.send_to(&self.tx.out, to) {
            Ok(_) => {
                self.sent(to, 1, len);
                Ok(())
            }
            Err(e) => {
                self.refused(to, len, &e);
                Err(e)
            }
        }
    }

    /// Without offloads: one datagram per remote, one system call each.
    fn send_each(&mut self, frame: &[u8]) -> io::Result<()> {
        let out = &mut self.tx.out;
        out.clear();
        out.resize(HEADER_LEN, 0);
        write_header(self.shared.vni, out);
        out.extend_from_slice(frame);
        self.route(frame);
        let destinations = std::mem::take(&mut self.tx.destinations);
        let mut result = Ok(());
        let mut any = false;
        for &to in &destinations {
            match self.send_one(to) {
                Ok(()) => any = true,
                Err(e) => result = Err(e),
            }
        }
        self.tx.destinations = destinations;
        // Refused only if no remote got it; the others are counted.
        if any {
            Ok(())
        } else {
            result
        }
    }
}

impl LinkSender for VxlanSender<'_> {
    fn offloads(&self) -> bool {
        self.shared.offload
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if !self.shared.offload {
            return self.send_each(frame);
        }
        self.route(frame);
        let destinations = std::mem::take(&mut self.tx.destinations);
        for &to in &destinations {
            self.gather(to, frame);
        }
        self.tx.destinations = destinations;
        Ok(())
    }

    fn send_vnet(&mut self, buf: &[u8]) -> io::Result<()> {
        let (hdr, frame) = VirtioNetHdr::split(buf, HdrLayout::Basic)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        self.route(frame);
        let destinations = std::mem::take(&mut self.tx.destinations);
        let mut cut_buf = std::mem::take(&mut self.tx.cut_buf);
        let mut result = Ok(());
        for &to in &destinations {
            // Cut (or the checksum completed) here: what the kernel sends
            // are wire frames.
            let cut = offload::segment(&hdr, frame, offload::MAX_GSO_FRAME, &mut cut_buf, |s| {
                self.gather(to, s)
            });
            if let Err(e) = cut {
                result = Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                break;
            }
        }
        self.tx.destinations = destinations;
        self.tx.cut_buf = cut_buf;
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_batch();
        Ok(())
    }
}
