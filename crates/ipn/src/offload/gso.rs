//! What is done with a frame and its virtio-net header: cut into the wire
//! frames it stands for (GSO), its checksum completed (`NEEDS_CSUM`), or
//! passed as it is. [`Segments`] is the queue every cutter uses (a port
//! without offloads, a TAP, a packet socket, a vhost-user guest without
//! them); [`segment`] drives it through a callback.
//!
//! Invariants:
//! - [`plan`] checks everything (flags, type, lengths, each header, the
//!   MTU) before a byte is written: a queue holds only frames that cut
//!   cleanly.
//! - Nothing here allocates. [`Segments`] is a plan and a cursor: the
//!   caller keeps the frame and passes it to each pop, with the buffer the
//!   next wire frame is written into. A segment's headers are built on the
//!   stack (at most [`MAX_HEADERS`] bytes), its checksum summed over those
//!   and the payload where it lies in the frame, and only then is it
//!   written out.

use super::checksum;
use super::virtio::{Gso, VirtioNetHdr, F_DATA_VALID, F_NEEDS_CSUM};
use super::wire::{
    is_ipv6_extension, Ipv4, Ipv6, Tcp, Udp, IPV4_HEADER, IPV6_HEADER, PROTO_TCP, PROTO_UDP,
    TCP_CHECKSUM, TCP_CWR, TCP_FIN, TCP_HEADER, TCP_PSH, UDP_CHECKSUM, UDP_HEADER,
};
use super::OffloadError;
use crate::ethernet::{Frame, HEADER_LEN, TAG_LEN};

/// The largest frame a GSO header can describe: an 802.1Q-tagged Ethernet
/// header, a 40-byte IPv6 header and a payload length of 65535 (IPv4's
/// total length, which counts its header, allows less). A buffer this
/// large receives any frame from a TAP with offloads.
pub const MAX_GSO_FRAME: usize = HEADER_LEN + TAG_LEN + IPV6_HEADER + 65535;

/// The longest headers a segment repeats: a tagged Ethernet header, IPv6
/// (IPv4 without options is shorter) and TCP with 40 bytes of options.
const MAX_HEADERS: usize = HEADER_LEN + TAG_LEN + IPV6_HEADER + 60;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Completes a checksum left to the device (`F_NEEDS_CSUM`): sums the
/// bytes from `csum_start` to the end of `frame`, the field at `csum_start
/// + csum_offset` included (it holds the pseudo-header's sum), and stores
/// the result there, as `skb_checksum_help` does (a result of zero is
/// stored as `0xffff`, the same number in ones' complement).
pub fn complete_checksum(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), OffloadError> {
    let at = checksum_at(frame.len(), csum_start, csum_offset)?;
    // at + 2 <= len and at >= csum_start: both ranges are in bounds.
    let check = completed(&frame[csum_start..]);
    frame[at..at + 2].copy_from_slice(&check.to_be_bytes());
    Ok(())
}

/// The checksum that completes `bytes` (whose field holds the
/// pseudo-header's sum); zero goes out as `0xffff`.
fn completed(bytes: &[u8]) -> u16 {
    match checksum::finish(checksum::add(bytes, 0)) {
        0 => 0xffff,
        c => c,
    }
}

/// Where the checksum to complete lies in a frame of `len` bytes: its
/// offset, or why it is not in the frame.
fn checksum_at(len: usize, csum_start: usize, csum_offset: usize) -> Result<usize, OffloadError> {
    csum_start
        .checked_add(csum_offset)
        .filter(|at| at.saturating_add(2) <= len)
        .ok_or(OffloadError::ChecksumOutOfRange {
            start: csum_start,
            offset: csum_offset,
            frame: len,
        })
}

/// Checks that [`segment`] would turn `frame`, with `hdr`, into frames of
/// at most `mtu` bytes, without making them; returns how many it would
/// make. A frame without GSO larger than `mtu` is [`OffloadError::TooBig`],
/// as is a GSO frame whose largest segment would be. Costs a look at the
/// headers only: a sender calls it for every frame with offloads, so that
/// what it writes into the network every port can receive.
pub fn check(hdr: &VirtioNetHdr, frame: &[u8], mtu: usize) -> Result<usize, OffloadError> {
    plan(hdr, frame, mtu).map(|plan| plan.count())
}

/// Turns `frame`, which came with `hdr`, into frames of at most `mtu`
/// bytes (Ethernet header included, as ipn counts a network's MTU) and
/// hands each to `emit`, in order; returns how many it emitted.
///
/// - No GSO, no NEEDS_CSUM: the frame as it is (not copied).
/// - No GSO, NEEDS_CSUM: the frame with its checksum completed
///   ([`complete_checksum`]), in `buf`.
/// - GSO (TCPV4, TCPV6, each with or without ECN; UDP_L4): the payload
///   after the TCP/UDP header cut into `gso_size` pieces, each with a copy
///   of the headers, fixed as the module doc says, one after the other in
///   `buf`. A frame whose payload fits in one segment gives one frame,
///   checksums complete.
///
/// `buf` grows to the largest frame made if it is shorter: a caller that
/// keeps it allocates once. Everything is checked first: on `Err`, `emit`
/// was not called.
pub fn segment(
    hdr: &VirtioNetHdr,
    frame: &[u8],
    mtu: usize,
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let mut queue = Segments::new();
    let count = queue.start(hdr, frame, mtu)?;
    if let Some(Plan::Whole { csum: None }) = queue.plan {
        emit(frame);
        return Ok(1);
    }
    let largest = queue.plan.map_or(0, |plan| plan.largest(frame.len()));
    if buf.len() < largest {
        buf.resize(largest, 0);
    }
    while let Some(len) = queue.pop_into(frame, buf) {
        emit(&buf[..len]);
    }
    Ok(count)
}

/// The wire frames one frame with a virtio-net header stands for, waiting
/// to be written, one at a time, into the caller's buffers.
///
/// It holds no bytes: [`Segments::start`] checks the frame and remembers
/// how to cut it; each [`Segments::pop_into`] is given the same frame
/// again (or a buffer that begins with it) and a buffer to write the next
/// wire frame into. So nothing is allocated, and a frame that passes as it
/// is (no GSO) is copied once, into the caller's buffer.
#[derive(Debug, Clone, Default)]
pub struct Segments {
    /// How the frame is cut; `None` when nothing waits.
    plan: Option<Plan>,
    /// The length of the frame [`Segments::start`] was given.
    frame_len: usize,
    /// The next frame to write, of `plan.count()`.
    next: usize,
}

impl Segments {
    /// An empty queue.
    pub const fn new() -> Segments {
        Segments {
            plan: None,
            frame_len: 0,
            next: 0,
        }
    }

    /// Replaces what waits with the wire frames `frame` (with `hdr`)
    /// stands for, each at most `mtu` bytes; returns how many. On error
    /// nothing waits.
    pub fn start(
        &mut self,
        hdr: &VirtioNetHdr,
        frame: &[u8],
        mtu: usize,
    ) -> Result<usize, OffloadError> {
        self.clear();
        let plan = plan(hdr, frame, mtu)?;
        self.plan = Some(plan);
        self.frame_len = frame.len();
        Ok(plan.count())
    }

    /// How many frames wait.
    pub fn len(&self) -> usize {
        self.plan.map_or(0, |plan| plan.count() - self.next)
    }

    /// Whether no frame waits.
    pub fn is_empty(&self) -> bool {
        self.plan.is_none()
    }

    /// Drops what waits.
    pub fn clear(&mut self) {
        self.plan = None;
        self.next = 0;
    }

    /// Writes the next waiting frame into `out` without taking it from
    /// the queue: its first `out.len()` bytes if it is longer. Returns the
    /// frame's whole length, or `None` when nothing waits or `frame` is
    /// shorter than the frame [`Segments::start`] was given.
    pub fn peek_into(&self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        let plan = self.plan?;
        let frame = frame.get(..self.frame_len)?;
        Some(match plan {
            Plan::Whole { csum } => write_whole(frame, csum, out),
            Plan::Cut {
                headers,
                gso_size,
                count,
                ..
            } => headers.write_segment(frame, self.next, count, gso_size, out),
        })
    }

    /// Takes the next waiting frame from the queue, unwritten.
    pub fn skip(&mut self) {
        self.next += 1;
        if self.next >= self.plan.map_or(0, |plan| plan.count()) {
            self.clear();
        }
    }

    /// [`Segments::peek_into`], and takes the frame from the queue. A
    /// `frame` shorter than the one the queue was started with empties it.
    pub fn pop_into(&mut self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        let len = self.peek_into(frame, out);
        match len {
            Some(_) => self.skip(),
            None => self.clear(),
        }
        len
    }
}

/// How a frame is cut, everything checked.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// No GSO: the frame as it is; with `csum`, `(csum_start, where the
    /// field is)`, its checksum completed.
    Whole { csum: Option<(usize, usize)> },
    /// GSO: `count` segments of at most `gso_size` payload bytes after the
    /// headers `headers` describes.
    Cut {
        headers: Headers,
        gso_size: usize,
        count: usize,
        /// Bytes of the largest segment.
        largest: usize,
    },
}

impl Plan {
    fn count(&self) -> usize {
        match self {
            Plan::Whole { .. } => 1,
            Plan::Cut { count, .. } => *count,
        }
    }

    /// The longest frame made from a frame of `frame_len` bytes.
    fn largest(&self, frame_len: usize) -> usize {
        match self {
            Plan::Whole { .. } => frame_len,
            Plan::Cut { largest, .. } => *largest,
        }
    }
}

/// Writes `frame` into `out` (as much as fits), its checksum completed if
/// `csum` says where; returns the frame's length.
fn write_whole(frame: &[u8], csum: Option<(usize, usize)>, out: &mut [u8]) -> usize {
    let n = frame.len().min(out.len());
    out[..n].copy_from_slice(&frame[..n]);
    if let Some((start, at)) = csum {
        // Checked by `plan`: start <= at and at + 2 <= frame.len().
        if at + 2 <= n {
            out[at..at + 2].copy_from_slice(&completed(&frame[start..]).to_be_bytes());
        }
    }
    frame.len()
}

/// Checks `hdr` and `frame` against each other and `mtu`, and says how to
/// cut the frame (see [`segment`]).
fn plan(hdr: &VirtioNetHdr, frame: &[u8], mtu: usize) -> Result<Plan, OffloadError> {
    let unknown = hdr.flags & !(F_NEEDS_CSUM | F_DATA_VALID);
    if unknown != 0 {
        return Err(OffloadError::UnknownFlags(unknown));
    }
    let gso = hdr.gso()?;
    if usize::from(hdr.hdr_len) > frame.len() {
        return Err(OffloadError::HdrLenBeyondFrame {
            hdr_len: hdr.hdr_len,
            frame: frame.len(),
        });
    }
    // With ECN or without, CWR stays on the first segment only, as in
    // Linux's tcp_gso_segment: the bit only says that the frame has it.
    let proto = match gso {
        Gso::None => {
            if frame.len() > mtu {
                return Err(OffloadError::TooBig {
                    what: "frame",
                    len: frame.len(),
                    mtu,
                });
            }
            let csum = if hdr.needs_csum() {
                let start = usize::from(hdr.csum_start);
                let at = checksum_at(frame.len(), start, usize::from(hdr.csum_offset))?;
                Some((start, at))
            } else {
                None
            };
            return Ok(Plan::Whole { csum });
        }
        Gso::TcpV4 { .. } => L4::Tcp(Ip::V4),
        Gso::TcpV6 { .. } => L4::Tcp(Ip::V6),
        Gso::UdpL4 => L4::Udp,
    };
    let headers = Headers::parse(frame, proto)?;
    if hdr.needs_csum() {
        let (want_offset, proto) = match headers.udp {
            false => (TCP_CHECKSUM, "TCP"),
            true => (UDP_CHECKSUM, "UDP"),
        };
        if usize::from(hdr.csum_start) != headers.l4 || usize::from(hdr.csum_offset) != want_offset
        {
            return Err(OffloadError::ChecksumElsewhere {
                start: hdr.csum_start,
                offset: hdr.csum_offset,
                proto,
                want_start: headers.l4,
                want_offset,
            });
        }
    }
    let gso_size = usize::from(hdr.gso_size);
    let payload = frame.len() - headers.payload;
    let largest = headers.payload + payload.min(gso_size);
    if largest > mtu {
        return Err(OffloadError::TooBig {
            what: if payload > gso_size {
                "segment"
            } else {
                "frame"
            },
            len: largest,
            mtu,
        });
    }
    Ok(Plan::Cut {
        headers,
        gso_size,
        count: payload.div_ceil(gso_size).max(1),
        largest,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ip {
    V4,
    V6,
}

/// What `gso_type` says the frame carries.
#[derive(Debug, Clone, Copy)]
enum L4 {
    /// TCP over this IP version.
    Tcp(Ip),
    /// UDP over either.
    Udp,
}

impl L4 {
    fn name(self) -> &'static str {
        match self {
            L4::Tcp(Ip::V4) => "TCPV4",
            L4::Tcp(Ip::V6) => "TCPV6",
            L4::Udp => "UDP_L4",
        }
    }
}

/// Where a GSO frame's headers are, checked against its length.
#[derive(Debug, Clone, Copy)]
struct Headers {
    /// Offset of the IP header.
    l3: usize,
    ip: Ip,
    /// Offset of the TCP or UDP header.
    l4: usize,
    udp: bool,
    /// Offset of the payload (end of the TCP or UDP header): the length
    /// of the headers, at most [`MAX_HEADERS`].
    payload: usize,
}

impl Headers {
    fn parse(frame: &[u8], want: L4) -> Result<Headers, OffloadError> {
        let view = Frame::new_checked(frame).ok_or_else(|| match frame.len() {
            len if len < HEADER_LEN => OffloadError::Truncated {
                what: "Ethernet header",
                missing: HEADER_LEN - len,
            },
            len => OffloadError::Truncated {
                what: "802.1Q tag",
                missing: (HEADER_LEN + TAG_LEN).saturating_sub(len),
            },
        })?;
        let l3 = HEADER_LEN + if view.tag().is_some() { TAG_LEN } else { 0 };
        let (ip, l4, proto) = match view.ethertype() {
            ETHERTYPE_IPV4 => {
                let (l4, proto) = ipv4(frame, l3)?;
                (Ip::V4, l4, proto)
            }
            ETHERTYPE_IPV6 => {
                let (l4, proto) = ipv6(frame, l3)?;
                (Ip::V6, l4, proto)
            }
            other => return Err(OffloadError::UnsupportedEthertype(other)),
        };
        let udp = match (want, ip, proto) {
            (L4::Tcp(v), ip, PROTO_TCP) if v == ip => false,
            (L4::Udp, _, PROTO_UDP) => true,
            (L4::Tcp(v), ip, _) if v != ip => {
                return Err(OffloadError::GsoTypeMismatch {
                    gso: want.name(),
                    found: match ip {
                        Ip::V4 => "IPv4".into(),
                        Ip::V6 => "IPv6".into(),
                    },
                })
            }
            (_, _, proto) => {
                return Err(OffloadError::GsoTypeMismatch {
                    gso: want.name(),
                    found: format!("IP protocol {proto}"),
                })
            }
        };
        let l4_len = if udp {
            UDP_HEADER
        } else {
            need(frame, l4, TCP_HEADER, "TCP header")?;
            let len = Tcp::new_unchecked(&frame[l4..]).header_len();
            if len < TCP_HEADER {
                return Err(OffloadError::BadTcpHeaderLength(len));
            }
            len
        };
        need(
            frame,
            l4,
            l4_len,
            if udp { "UDP header" } else { "TCP header" },
        )?;
        Ok(Headers {
            l3,
            ip,
            l4,
            udp,
            payload: l4 + l4_len,
        })
    }

    /// Writes segment `i` of `count` of `frame` into `out` (as much as
    /// fits); returns the segment's length.
    fn write_segment(
        &self,
        frame: &[u8],
        i: usize,
        count: usize,
        gso_size: usize,
        out: &mut [u8],
    ) -> usize {
        let len = self.payload;
        let start = len
            .saturating_add(i.saturating_mul(gso_size))
            .min(frame.len());
        let end = start.saturating_add(gso_size).min(frame.len());
        let piece = &frame[start..end];
        let mut headers = [0u8; MAX_HEADERS];
        let headers = &mut headers[..len];
        headers.copy_from_slice(&frame[..len]);
        self.fix(headers, piece, i, count, gso_size);
        let seg_len = len + piece.len();
        let n = seg_len.min(out.len());
        let in_headers = len.min(n);
        out[..in_headers].copy_from_slice(&headers[..in_headers]);
        out[in_headers..n].copy_from_slice(&piece[..n - in_headers]);
        seg_len
    }

    /// Fixes `headers` (a copy of the frame's) for segment `i` of `count`,
    /// which carries `piece` of the payload.
    fn fix(&self, headers: &mut [u8], piece: &[u8], i: usize, count: usize, gso_size: usize) {
        let seg_len = headers.len() + piece.len();
        // Segments are never longer than the frame, whose lengths were
        // checked to fit their 16-bit fields.
        let l4_len = seg_len - self.l4;
        let (ip, l4) = headers[self.l3..].split_at_mut(self.l4 - self.l3);
        let pseudo = match self.ip {
            Ip::V4 => {
                let mut ip = Ipv4::new_unchecked(ip);
                ip.set_total_len((seg_len - self.l3) as u16);
                ip.set_ident(ip.ident().wrapping_add(i as u16));
                ip.fill_checksum();
                checksum::pseudo_header(ip.addresses(), self.protocol(), l4_len)
            }
            Ip::V6 => {
                let mut ip = Ipv6::new_unchecked(ip);
                ip.set_payload_len(l4_len as u16);
                checksum::pseudo_header(ip.addresses(), self.protocol(), l4_len)
            }
        };
        if self.udp {
            let mut udp = Udp::new_unchecked(&mut *l4);
            udp.set_len(l4_len as u16);
            udp.set_checksum(0);
            // The header's length is even: the sums chain.
            let check = completed_over(l4, piece, pseudo);
            Udp::new_unchecked(l4).set_checksum(check);
        } else {
            let mut tcp = Tcp::new_unchecked(&mut *l4);
            tcp.set_seq(tcp.seq().wrapping_add((i * gso_size) as u32));
            if i + 1 < count {
                tcp.clear_flags(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                tcp.clear_flags(TCP_CWR);
            }
            tcp.set_checksum(0);
            let check = checksum::finish(checksum::add(piece, checksum::add(l4, pseudo)));
            Tcp::new_unchecked(l4).set_checksum(check);
        }
    }

    fn protocol(&self) -> u8 {
        if self.udp {
            PROTO_UDP
        } else {
            PROTO_TCP
        }
    }
}

/// A UDP checksum over `header` and `payload` after `pseudo`: zero, which
/// would mean "no checksum", goes out as `0xffff`.
fn completed_over(header: &[u8], payload: &[u8], pseudo: u64) -> u16 {
    match checksum::finish(checksum::add(payload, checksum::add(header, pseudo))) {
        0 => 0xffff,
        c => c,
    }
}

/// Checks the IPv4 header at `l3`; returns where the L4 header starts and
/// the protocol.
fn ipv4(frame: &[u8], l3: usize) -> Result<(usize, u8), OffloadError> {
    need(frame, l3, IPV4_HEADER, "IPv4 header")?;
    let bytes = &frame[l3..];
    let ip = Ipv4::new_unchecked(bytes);
    if ip.version() != 4 {
        return Err(OffloadError::BadIpVersion {
            ethertype: "IPv4",
            version: ip.version(),
        });
    }
    let ihl = ip.header_len();
    if ihl < IPV4_HEADER {
        return Err(OffloadError::BadIpv4HeaderLength(ihl));
    }
    if ihl > IPV4_HEADER {
        return Err(OffloadError::Ipv4Options(ihl));
    }
    if ip.is_fragment() {
        return Err(OffloadError::Ipv4Fragment);
    }
    let total = usize::from(ip.total_len());
    if total != bytes.len() {
        return Err(OffloadError::LengthMismatch {
            what: "IPv4 total length",
            says: total,
            actual: bytes.len(),
        });
    }
    Ok((l3 + ihl, ip.protocol()))
}

/// Checks the IPv6 header at `l3`; returns where the L4 header starts and
/// the next header.
fn ipv6(frame: &[u8], l3: usize) -> Result<(usize, u8), OffloadError> {
    need(frame, l3, IPV6_HEADER, "IPv6 header")?;
    let bytes = &frame[l3..];
    let ip = Ipv6::new_unchecked(bytes);
    if ip.version() != 6 {
        return Err(OffloadError::BadIpVersion {
            ethertype: "IPv6",
            version: ip.version(),
        });
    }
    let next = ip.next_header();
    if is_ipv6_extension(next) {
        return Err(OffloadError::Ipv6ExtensionHeader(next));
    }
    let payload = usize::from(ip.payload_len());
    if payload != bytes.len() - IPV6_HEADER {
        return Err(OffloadError::LengthMismatch {
            what: "IPv6 payload length",
            says: payload,
            actual: bytes.len() - IPV6_HEADER,
        });
    }
    Ok((l3 + IPV6_HEADER, next))
}

/// Checks that `frame` holds `len` bytes from `at`.
fn need(frame: &[u8], at: usize, len: usize, what: &'static str) -> Result<(), OffloadError> {
    let end = at.saturating_add(len);
    if end > frame.len() {
        return Err(OffloadError::Truncated {
            what,
            missing: end - frame.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::checksum::tests::reference_sum;
    use crate::offload::test_util::hex;
    use crate::offload::{
        F_DATA_VALID, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4,
    };

    fn get16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn put16(b: &mut [u8], at: usize, value: u16) {
        b[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    fn segments(hdr: &VirtioNetHdr, frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let n = segment(hdr, frame, mtu, &mut Vec::new(), |s| out.push(s.to_vec())).unwrap();
        assert_eq!(n, out.len());
        out
    }

    fn refused(hdr: &VirtioNetHdr, frame: &[u8], mtu: usize) -> OffloadError {
        let mut emitted = 0;
        let err = segment(hdr, frame, mtu, &mut Vec::new(), |_| emitted += 1).unwrap_err();
        assert_eq!(emitted, 0, "emitted before refusing: {err}");
        err
    }

    fn tcp4_gso(size: u16) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 54,
            gso_size: size,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        }
    }

    /// TCP over IPv4, 10 payload bytes "abcdefghij", flags CWR PSH ACK FIN,
    /// ID 0x1c46, seq 0x100, the checksum field holding the pseudo-header
    /// sum as Linux leaves it for the device (0x1427, for 30 bytes).
    const TCP4: &str = "
        020000000002 020000000001 0800
        4500 0032 1c46 4000 4006 0000 0a000001 0a000002
        9c40 1451 00000100 00000200 5099 ffff 1427 0000
        6162636465666768696a";

    #[test]
    fn needs_csum_without_gso_completes_the_checksum_in_place() {
        // UDP over IPv4, 4 payload bytes; the field holds the pseudo-header
        // sum (10.0.0.1 > 10.0.0.2, proto 17, length 12): 0x1420.
        let mut frame = hex("020000000002 020000000001 0800
             4500 0020 0001 4000 4011 26ca 0a000001 0a000002
             3039 0035 000c 1420 74657374");
        let hdr = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VirtioNetHdr::default()
        };
        let out = segments(&hdr, &frame, 1514);
        assert_eq!(out.len(), 1);
        // Known value, also what tcpdump -vv calls "udp sum ok".
        assert_eq!(get16(&out[0], 40), 0xd38b);
        complete_checksum(&mut frame, 34, 6).unwrap();
        assert_eq!(frame, out[0]);
        let pseudo = hex("0a000001 0a000002 0011 000c");
        assert_eq!(reference_sum(&[&pseudo, &frame[34..]]), 0xffff);

        for (start, offset) in [
            (45, 0),
            (44, 1),
            (0, 45),
            (47, 0),
            (usize::MAX, 2),
            (2, usize::MAX),
        ] {
            assert!(matches!(
                complete_checksum(&mut frame.clone(), start, offset),
                Err(OffloadError::ChecksumOutOfRange { .. })
            ));
        }
        assert_eq!(frame.len(), 46);
        complete_checksum(&mut frame, 44, 0).unwrap(); // the last two bytes
    }

    #[test]
    fn tcpv4_frame_is_cut_as_the_kernel_cuts_it() {
        let frame = hex(TCP4);
        let segs = segments(&tcp4_gso(4), &frame, 1514);
        // Known-good segments: lengths, IDs, header checksums, sequence
        // numbers, flags (CWR first only, PSH and FIN last only), TCP
        // checksums; tcpdump -vv finds every checksum correct.
        let want = [
            "020000000002 020000000001 0800
             4500 002c 1c46 4000 4006 0a84 0a000001 0a000002
             9c40 1451 00000100 00000200 5090 ffff 22f6 0000 61626364",
            "020000000002 020000000001 0800
             4500 002c 1c47 4000 4006 0a83 0a000001 0a000002
             9c40 1451 00000104 00000200 5010 ffff 1b6a 0000 65666768",
            "020000000002 020000000001 0800
             4500 002a 1c48 4000 4006 0a84 0a000001 0a000002
             9c40 1451 00000108 00000200 5019 ffff 7ec3 0000 696a",
        ];
        assert_eq!(segs.len(), 3);
        for (seg, want) in segs.iter().zip(want) {
            assert_eq!(seg, &hex(want), "\n got {}", dump(seg));
            assert_eq!(reference_sum(&[&seg[14..34]]), 0xffff);
            let len = (seg.len() - 34) as u16;
            let pseudo = [&seg[26..34], &[0, 6], &len.to_be_bytes()[..]].concat();
            assert_eq!(reference_sum(&[&pseudo, &seg[34..]]), 0xffff);
        }
        // The same without NEEDS_CSUM, and with any old value in the
        // checksum fields: the same segments.
        let mut scribbled = frame.clone();
        put16(&mut scribbled, 24, 0xdead);
        put16(&mut scribbled, 50, 0xbeef);
        let hdr = VirtioNetHdr {
            flags: 0,
            ..tcp4_gso(4)
        };
        assert_eq!(segments(&hdr, &scribbled, 1514), segs);
        // ECN in gso_type changes nothing: CWR was on the first one only.
        let ecn = VirtioNetHdr {
            gso_type: GSO_TCPV4 | GSO_ECN,
            ..tcp4_gso(4)
        };
        assert_eq!(segments(&ecn, &frame, 1514), segs);
    }

    fn dump(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn tagged_tcpv6_frame_is_cut_behind_its_tag() {
        // VLAN 5, TCP over IPv6 (fd00::1 > fd00::2), 7 payload bytes, seq
        // 0xfffffffe (wraps), flags PSH ACK.
        let frame = hex("020000000002 020000000001 8100 0005 86dd
             6000 0000 001b 0640 fd000000000000000000000000000001 fd000000000000000000000000000002
             c350 0050 fffffffe 00000001 5018 0100 0000 0000
             31323334353637");
        let hdr = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 78,
            gso_size: 3,
            csum_start: 58,
            csum_offset: 16,
            num_buffers: 0,
        };
        let segs = segments(&hdr, &frame, 81);
        let want = [
            "020000000002 020000000001 8100 0005 86dd
             6000 0000 0017 0640 fd000000000000000000000000000001 fd000000000000000000000000000002
             c350 0050 fffffffe 00000001 5010 0100 8cfa 0000 313233",
            "020000000002 020000000001 8100 0005 86dd
             6000 0000 0017 0640 fd000000000000000000000000000001 fd000000000000000000000000000002
             c350 0050 00000001 00000001 5010 0100 86f5 0000 343536",
            "020000000002 020000000001 8100 0005 86dd
             6000 0000 0015 0640 fd000000000000000000000000000001 fd000000000000000000000000000002
             c350 0050 00000004 00000001 5018 0100 ba21 0000 37",
        ];
        assert_eq!(segs.len(), 3);
        for (seg, want) in segs.iter().zip(want) {
            assert_eq!(seg, &hex(want), "\n got {}", dump(seg));
            let len = (seg.len() - 58) as u32;
            let pseudo = [&seg[26..58], &len.to_be_bytes()[..], &[0, 0, 0, 6]].concat();
            assert_eq!(reference_sum(&[&pseudo, &seg[58..]]), 0xffff);
        }
        // 81 bytes is the largest segment exactly; one less is too little.
        assert_eq!(
            refused(&hdr, &frame, 80),
            OffloadError::TooBig {
                what: "segment",
                len: 81,
                mtu: 80
            }
        );
    }

    #[test]
    fn udp_l4_frame_becomes_datagrams_with_their_own_lengths_and_checksums() {
        // UDP over IPv4, 5 payload bytes in datagrams of 2.
        let frame = hex("020000000002 020000000001 0800
             4500 0021 abcd 4000 4011 0000 0a000001 0a000002
             3039 0035 000d 0000 6865 6c6c 6f");
        let hdr = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: 42,
            gso_size: 2,
            csum_start: 34,
            csum_offset: 6,
            num_buffers: 0,
        };
        let segs = segments(&hdr, &frame, 1514);
        let want = [
            "020000000002 020000000001 0800
             4500 001e abcd 4000 4011 7aff 0a000001 0a000002
             3039 0035 000a 5304 6865",
            "020000000002 020000000001 0800
             4500 001e abce 4000 4011 7afe 0a000001 0a000002
             3039 0035 000a 4efd 6c6c",
            "020000000002 020000000001 0800
             4500 001d abcf 4000 4011 7afe 0a000001 0a000002
             3039 0035 0009 4c6b 6f",
        ];
        assert_eq!(segs.len(), 3);
        for (seg, want) in segs.iter().zip(want) {
            assert_eq!(seg, &hex(want), "\n got {}", dump(seg));
        }
    }

    #[test]
    fn a_udp_checksum_of_zero_is_sent_as_ffff() {
        // Payload chosen so that the sum is 0xffff: the checksum computes
        // as 0, which for UDP means "none"; it must go out as 0xffff.
        let mut frame = hex("020000000002 020000000001 0800
             4500 001e 0001 4000 4011 0000 0a000001 0a000002
             3039 0035 000a 0000 0000");
        let pseudo = hex("0a000001 0a000002 0011 000a");
        let rest = !reference_sum(&[&pseudo, &frame[34..]]);
        put16(&mut frame, 42, rest);
        let hdr = VirtioNetHdr {
            gso_type: GSO_UDP_L4,
            gso_size: 1000,
            ..VirtioNetHdr::default()
        };
        let segs = segments(&hdr, &frame, 1514);
        assert_eq!(get16(&segs[0], 40), 0xffff);
        assert_eq!(reference_sum(&[&pseudo, &segs[0][34..]]), 0xffff);
    }

    #[test]
    fn a_gso_frame_that_fits_one_segment_gets_its_checksums_only() {
        let frame = hex(TCP4);
        let segs = segments(&tcp4_gso(10), &frame, 1514);
        assert_eq!(segs.len(), 1);
        let mut want = frame.clone();
        put16(&mut want, 24, 0x0a7e); // IPv4 header checksum
        put16(&mut want, 50, 0xecad); // TCP checksum
        assert_eq!(dump(&segs[0]), dump(&want));
        assert_eq!(segments(&tcp4_gso(60000), &frame, 64), segs);
        // A frame of headers only (a pure ACK with a GSO header).
        let ack = hex(&TCP4[..TCP4.len() - "6162636465666768696a".len()]);
        let mut ack_frame = ack.clone();
        put16(&mut ack_frame, 16, 40);
        assert_eq!(segments(&tcp4_gso(4), &ack_frame, 1514).len(), 1);
    }

    #[test]
    fn the_queue_writes_what_segment_emits_one_at_a_time_truncated_to_the_buffer() {
        let frame = hex(TCP4);
        let want = segments(&tcp4_gso(4), &frame, 1514);
        let mut queue = Segments::new();
        assert!(queue.is_empty() && queue.pop_into(&frame, &mut [0; 64]).is_none());
        assert_eq!(queue.start(&tcp4_gso(4), &frame, 1514), Ok(3));
        assert_eq!(queue.len(), 3);
        let mut out = [0u8; 100];
        // Peeking writes without taking; a short buffer gets the start.
        assert_eq!(queue.peek_into(&frame, &mut out), Some(want[0].len()));
        assert_eq!(&out[..want[0].len()], &want[0][..]);
        let mut short = [0u8; 20];
        assert_eq!(queue.pop_into(&frame, &mut short), Some(want[0].len()));
        assert_eq!(&short[..], &want[0][..20]);
        // The frame may lie at the start of a longer buffer.
        let mut longer = frame.clone();
        longer.extend_from_slice(&[0xee; 7]);
        for seg in &want[1..] {
            let len = queue.pop_into(&longer, &mut out).unwrap();
            assert_eq!(&out[..len], &seg[..]);
        }
        assert!(queue.is_empty() && queue.pop_into(&frame, &mut out).is_none());
        // A frame shorter than the one started with empties the queue.
        queue.start(&tcp4_gso(4), &frame, 1514).unwrap();
        assert_eq!(queue.pop_into(&frame[..40], &mut out), None);
        assert!(queue.is_empty());
        // A refused frame leaves nothing waiting.
        queue.start(&tcp4_gso(4), &frame, 1514).unwrap();
        assert!(queue.start(&tcp4_gso(4), &frame, 40).is_err());
        assert!(queue.is_empty());
        // Whole frames with a checksum to complete: completed in `out`.
        let hdr = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VirtioNetHdr::default()
        };
        let mut whole = frame.clone();
        complete_checksum(&mut whole, 34, 16).unwrap();
        assert_eq!(queue.start(&hdr, &frame, 1514), Ok(1));
        let len = queue.pop_into(&frame, &mut out).unwrap();
        assert_eq!(&out[..len], &whole[..]);
        assert!(queue.is_empty());
    }

    #[test]
    fn plain_frames_pass_untouched_unless_too_big() {
        let frame = hex(TCP4);
        let plain = VirtioNetHdr::default();
        assert_eq!(segments(&plain, &frame, 64), vec![frame.clone()]);
        assert_eq!(segments(&plain, &[1, 2, 3], 64), vec![vec![1, 2, 3]]);
        let valid = VirtioNetHdr {
            flags: F_DATA_VALID,
            ..plain
        };
        assert_eq!(segments(&valid, &frame, 64), vec![frame.clone()]);
        assert_eq!(
            refused(&plain, &frame, 63),
            OffloadError::TooBig {
                what: "frame",
                len: 64,
                mtu: 63
            }
        );
    }

    #[test]
    fn malformed_frames_and_headers_are_refused_with_what_is_wrong() {
        let frame = hex(TCP4);
        let gso = tcp4_gso(4);
        let patched = |at: usize, bytes: &[u8]| {
            let mut f = frame.clone();
            f[at..at + bytes.len()].copy_from_slice(bytes);
            f
        };
        let cases: Vec<(VirtioNetHdr, Vec<u8>, OffloadError, &str)> = vec![
            (
                VirtioNetHdr { flags: 0x05, ..gso },
                frame.clone(),
                OffloadError::UnknownFlags(4),
                "unknown flag bits 0x04",
            ),
            (
                VirtioNetHdr { gso_type: 9, ..gso },
                frame.clone(),
                OffloadError::UnknownGsoType(9),
                "unknown gso_type 0x09",
            ),
            (
                VirtioNetHdr { hdr_len: 65, ..gso },
                frame.clone(),
                OffloadError::HdrLenBeyondFrame {
                    hdr_len: 65,
                    frame: 64,
                },
                "hdr_len 65 is beyond the end of the 64-byte frame",
            ),
            (
                VirtioNetHdr {
                    csum_offset: 6,
                    ..gso
                },
                frame.clone(),
                OffloadError::ChecksumElsewhere {
                    start: 34,
                    offset: 6,
                    proto: "TCP",
                    want_start: 34,
                    want_offset: 16,
                },
                "do not point at the TCP checksum",
            ),
            (
                VirtioNetHdr {
                    csum_start: 40,
                    ..gso
                },
                frame.clone(),
                OffloadError::ChecksumElsewhere {
                    start: 40,
                    offset: 16,
                    proto: "TCP",
                    want_start: 34,
                    want_offset: 16,
                },
                "csum_start 40",
            ),
            (
                VirtioNetHdr { hdr_len: 0, ..gso },
                frame[..13].to_vec(),
                OffloadError::Truncated {
                    what: "Ethernet header",
                    missing: 1,
                },
                "Ethernet header",
            ),
            (
                VirtioNetHdr { hdr_len: 0, ..gso },
                patched(12, &[0x81, 0])[..16].to_vec(),
                OffloadError::Truncated {
                    what: "802.1Q tag",
                    missing: 2,
                },
                "802.1Q tag",
            ),
            (
                gso,
                patched(12, &[0x88, 0xa8]),
                OffloadError::UnsupportedEthertype(0x88a8),
                "EtherType 0x88a8",
            ),
            (
                gso,
                patched(12, &[0x86, 0xdd]),
                OffloadError::BadIpVersion {
                    ethertype: "IPv6",
                    version: 4,
                },
                "IPv6 frame whose IP header says version 4",
            ),
            (
                gso,
                patched(14, &[0x65]),
                OffloadError::BadIpVersion {
                    ethertype: "IPv4",
                    version: 6,
                },
                "version 6",
            ),
            (
                gso,
                patched(14, &[0x44]),
                OffloadError::BadIpv4HeaderLength(16),
                "below the minimum of 20",
            ),
            (
                gso,
                patched(14, &[0x46]),
                OffloadError::Ipv4Options(24),
                "IPv4 options are not supported",
            ),
            (
                gso,
                patched(20, &[0x20, 0]),
                OffloadError::Ipv4Fragment,
                "fragment",
            ),
            (
                gso,
                patched(20, &[0, 8]),
                OffloadError::Ipv4Fragment,
                "fragment",
            ),
            (
                gso,
                patched(16, &[0, 0x33]),
                OffloadError::LengthMismatch {
                    what: "IPv4 total length",
                    says: 51,
                    actual: 50,
                },
                "IPv4 total length says 51 bytes, but the frame holds 50",
            ),
            (
                gso,
                patched(16, &[0, 0]),
                OffloadError::LengthMismatch {
                    what: "IPv4 total length",
                    says: 0,
                    actual: 50,
                },
                "says 0 bytes",
            ),
            (
                gso,
                patched(23, &[17]),
                OffloadError::GsoTypeMismatch {
                    gso: "TCPV4",
                    found: "IP protocol 17".into(),
                },
                "gso_type TCPV4 but the frame carries IP protocol 17",
            ),
            (
                VirtioNetHdr {
                    gso_type: GSO_TCPV6,
                    ..gso
                },
                frame.clone(),
                OffloadError::GsoTypeMismatch {
                    gso: "TCPV6",
                    found: "IPv4".into(),
                },
                "TCPV6 but the frame carries IPv4",
            ),
            (
                gso,
                patched(46, &[0x40]),
                OffloadError::BadTcpHeaderLength(16),
                "below the minimum of 20",
            ),
            (
                gso,
                patched(46, &[0xf0]),
                OffloadError::Truncated {
                    what: "TCP header",
                    missing: 30,
                },
                "TCP header: the frame ends 30 bytes short",
            ),
            (
                VirtioNetHdr { hdr_len: 0, ..gso },
                frame[..40].to_vec(),
                OffloadError::LengthMismatch {
                    what: "IPv4 total length",
                    says: 50,
                    actual: 26,
                },
                "says 50 bytes, but the frame holds 26",
            ),
            (
                VirtioNetHdr { hdr_len: 0, ..gso },
                frame[..30].to_vec(),
                OffloadError::Truncated {
                    what: "IPv4 header",
                    missing: 4,
                },
                "IPv4 header: the frame ends 4 bytes short",
            ),
            (
                VirtioNetHdr { hdr_len: 0, ..gso },
                [&frame[..12], &[0x86, 0xdd, 0x60][..]].concat(),
                OffloadError::Truncated {
                    what: "IPv6 header",
                    missing: 39,
                },
                "IPv6 header",
            ),
            (
                VirtioNetHdr {
                    gso_type: GSO_UDP,
                    ..gso
                },
                frame.clone(),
                OffloadError::UfoUnsupported,
                "legacy UFO",
            ),
            (
                VirtioNetHdr { gso_size: 0, ..gso },
                frame.clone(),
                OffloadError::ZeroGsoSize(1),
                "gso_size 0",
            ),
            (
                gso,
                frame.clone(),
                OffloadError::TooBig {
                    what: "segment",
                    len: 58,
                    mtu: 57,
                },
                "segment of 58 bytes exceeds the MTU of 57 bytes",
            ),
        ];
        for (hdr, frame, want, words) in cases {
            let mtu = if words.contains("MTU of 57") {
                57
            } else {
                1514
            };
            let err = refused(&hdr, &frame, mtu);
            assert_eq!(err, want);
            assert!(err.to_string().contains(words), "{err:?}: {err}");
        }

        // IPv6: extension headers and lengths.
        let v6 = hex("020000000002 020000000001 86dd
             6000 0000 001c 0040 fd000000000000000000000000000001 fd000000000000000000000000000002
             0600 0000 0000 0000
             c350 0050 00000001 00000001 5018 0100 0000 0000");
        let hdr = VirtioNetHdr {
            gso_type: GSO_TCPV6,
            gso_size: 100,
            ..VirtioNetHdr::default()
        };
        let err = refused(&hdr, &v6, 1514);
        assert_eq!(err, OffloadError::Ipv6ExtensionHeader(0));
        assert!(
            err.to_string()
                .contains("extension headers are not supported"),
            "{err}"
        );
        let mut short = v6.clone();
        short[20] = 6; // TCP right away, but the payload length still counts the 8 bytes
        short.truncate(v6.len() - 1);
        assert_eq!(
            refused(&hdr, &short, 1514),
            OffloadError::LengthMismatch {
                what: "IPv6 payload length",
                says: 28,
                actual: 27
            }
        );
        let mut udp = v6.clone();
        udp[20] = 17;
        assert_eq!(
            refused(&hdr, &udp, 1514),
            OffloadError::GsoTypeMismatch {
                gso: "TCPV6",
                found: "IP protocol 17".into()
            }
        );
    }
}
