//! Software GRO for TCP: consecutive segments of one TCP flow, as they
//! come out of a tunnel one datagram each, joined back into one TSO frame
//! with a virtio-net header, so that ports with offloads (TAPs, vhost-user
//! VMs) take a stream in frames of up to 64 KiB instead of one per MTU.
//! The rules are the kernel's (`tcp_gro_receive`) and wireguard-go's
//! (`tun/offload_linux.go`):
//!
//! - only plain TCP over IPv4 (no IP options, DF set, not a fragment) or
//!   IPv6 (TCP right after the fixed header), untagged, with a valid
//!   IPv4 header checksum and TCP checksum (a bad segment is passed on as
//!   it is, for the receiver to drop: never hidden under a fresh sum);
//! - a segment joins the frame being built when it has the same Ethernet
//!   header, addresses, ports, TOS/traffic class, TTL/hop limit,
//!   acknowledgement, window and options, follows it in sequence, carries
//!   data, has only ACK (and PSH) set, and is no longer than the first
//!   (every segment but the last is `gso_size` bytes); a PSH or a shorter
//!   segment ends the frame;
//! - the frame is at most 65535 bytes of IP packet.
//!
//! A joined frame gets its IP length (and IPv4 header checksum) fixed,
//! the pseudo-header's sum in its TCP checksum field, and the header
//! `NEEDS_CSUM | TCPV4/TCPV6, gso_size, csum_start, csum_offset 16`, as a
//! TSO frame from a TAP would have. A frame of one segment, or one that
//! could not be joined, gets an empty header and stays as it came.
//!
//! Frames are kept in one buffer, reused: no allocation once it has
//! grown to a batch's size.

use std::collections::VecDeque;
use std::ops::Range;

use ipn::offload::{self, HdrLayout, VirtioNetHdr};

/// Bytes of the virtio-net header before each frame (the port's layout).
pub const VNET_HDR: usize = 10;
const ETH: usize = 14;
const IPV4: usize = 20;
const IPV6: usize = 40;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const PROTO_TCP: u8 = 6;
/// Largest IP packet a frame may carry.
const MAX_IP: usize = 65535;

/// A TCP segment's place in its frame.
#[derive(Debug, Clone, Copy)]
struct Segment {
    v6: bool,
    /// Length of the IP header.
    l3: usize,
    /// Length of the TCP header.
    l4: usize,
    /// End of the IP packet (before any Ethernet padding).
    end: usize,
    seq: u32,
    flags: u8,
}

impl Segment {
    fn payload(&self) -> usize {
        self.end - ETH - self.l3 - self.l4
    }
    fn tcp(&self) -> usize {
        ETH + self.l3
    }
    fn data(&self) -> usize {
        self.tcp() + self.l4
    }
}

/// Reads `frame` as a segment that may be joined, checksums checked.
fn parse(frame: &[u8]) -> Option<Segment> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (v6, l3, end) = match ethertype {
        0x0800 => {
            let ip = frame.get(ETH..ETH + IPV4)?;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let fragment = u16::from_be_bytes([ip[6], ip[7]]);
            // Version 4, no options, TCP, DF and nothing else in the
            // fragment field.
            if ip[0] != 0x45 || ip[9] != PROTO_TCP || fragment != 0x4000 || total < IPV4 {
                return None;
            }
            if offload::ones_complement_sum(&[ip]) != 0xffff {
                return None;
            }
            (false, IPV4, ETH + total)
        }
        0x86dd => {
            let ip = frame.get(ETH..ETH + IPV6)?;
            if ip[0] >> 4 != 6 || ip[6] != PROTO_TCP {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            (true, IPV6, ETH + IPV6 + payload)
        }
        _ => return None,
    };
    if end > frame.len() {
        return None;
    }
    let tcp = frame.get(ETH + l3..end)?;
    let l4 = usize::from(*tcp.get(12)? >> 4) * 4;
    if l4 < 20 || l4 > tcp.len() {
        return None;
    }
    let seg = Segment {
        v6,
        l3,
        l4,
        end,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags: tcp[13],
    };
    if seg.payload() == 0 || seg.flags & !(TCP_ACK | TCP_PSH) != 0 || seg.flags & TCP_ACK == 0 {
        return None;
    }
    if tcp_sum(frame, &seg, tcp) != 0xffff {
        return None;
    }
    Some(seg)
}

/// The sum of a TCP segment with its pseudo-header (0xffff if its
/// checksum is right).
fn tcp_sum(frame: &[u8], seg: &Segment, tcp: &[u8]) -> u16 {
    let len = tcp.len() as u32;
    if seg.v6 {
        let addrs = &frame[ETH + 8..ETH + 40];
        let mut pseudo = [0u8; 8];
        pseudo[..4].copy_from_slice(&len.to_be_bytes());
        pseudo[7] = PROTO_TCP;
        offload::ones_complement_sum(&[addrs, &pseudo, tcp])
    } else {
        let addrs = &frame[ETH + 12..ETH + 20];
        let pseudo = [0, PROTO_TCP, (len >> 8) as u8, len as u8];
        offload::ones_complement_sum(&[addrs, &pseudo, tcp])
    }
}

/// The frame being built.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Where its header starts in the buffer.
    start: usize,
    first: Segment,
    /// Segments joined so far.
    count: usize,
    /// The sequence number the next segment must have.
    next_seq: u32,
    /// No segment may join any more (PSH, or a short one).
    closed: bool,
    /// Bytes of IP packet so far.
    ip_len: usize,
}

/// Joins frames into TSO frames; see the module doc.
#[derive(Debug, Default)]
pub struct Coalescer {
    buf: Vec<u8>,
    ready: VecDeque<Range<usize>>,
    open: Option<Open>,
    /// Frames that were joined into another, so far.
    joined: u64,
}

impl Coalescer {
    /// An empty coalescer.
    pub fn new() -> Coalescer {
        Coalescer::default()
    }

    /// Frames joined into others so far (a frame of ten segments counts
    /// nine).
    pub fn joined(&self) -> u64 {
        self.joined
    }

    /// Whether a frame waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.open.is_none()
    }

    /// Takes `frame`: joined to the frame being built if it may be, else
    /// a frame of its own.
    pub fn push(&mut self, frame: &[u8]) {
        let seg = parse(frame);
        if let (Some(seg), Some(open)) = (seg, self.open) {
            if self.joins(&open, frame, &seg) {
                self.join(open, frame, seg);
                return;
            }
        }
        self.finish();
        let start = self.buf.len();
        self.buf.resize(start + VNET_HDR, 0);
        self.buf.extend_from_slice(frame);
        match seg {
            Some(seg) => {
                self.open = Some(Open {
                    start,
                    first: seg,
                    count: 1,
                    next_seq: seg.seq.wrapping_add(seg.payload() as u32),
                    closed: seg.flags & TCP_PSH != 0,
                    ip_len: seg.end - ETH,
                });
                // Ethernet padding is not part of the packet.
                self.buf.truncate(start + VNET_HDR + seg.end);
            }
            None => self.ready.push_back(start..self.buf.len()),
        }
    }

    fn joins(&self, open: &Open, frame: &[u8], seg: &Segment) -> bool {
        let first = &open.first;
        let at = open.start + VNET_HDR;
        let built = &self.buf[at..at + first.data()];
        if open.closed
            || seg.v6 != first.v6
            || seg.l4 != first.l4
            || seg.seq != open.next_seq
            || seg.payload() > first.payload()
            || open.ip_len + seg.payload() > MAX_IP
        {
            return false;
        }
        // Ethernet header; then the IP header's fields that must match.
        let same = |r: Range<usize>| built.get(r.clone()) == frame.get(r);
        let ip = ETH;
        let ip_same = if seg.v6 {
            same(ip..ip + 4) && same(ip + 6..ip + 40)
        } else {
            same(ip..ip + 2) && same(ip + 6..ip + 10) && same(ip + 12..ip + 20)
        };
        let tcp = first.tcp();
        let flags_window = |b: &[u8]| {
            let w = &b[tcp + 12..tcp + 16];
            [w[0], w[1] & !TCP_PSH, w[2], w[3]]
        };
        same(0..ETH)
            && ip_same
            && same(tcp..tcp + 4)
            && same(tcp + 8..tcp + 12)
            && flags_window(built) == flags_window(frame)
            && same(tcp + 20..tcp + first.l4)
    }

    fn join(&mut self, mut open: Open, frame: &[u8], seg: Segment) {
        self.buf.extend_from_slice(&frame[seg.data()..seg.end]);
        open.count += 1;
        open.next_seq = open.next_seq.wrapping_add(seg.payload() as u32);
        open.ip_len += seg.payload();
        if seg.flags & TCP_PSH != 0 {
            let at = open.start + VNET_HDR + open.first.tcp() + 13;
            self.buf[at] |= TCP_PSH;
            open.closed = true;
        }
        if seg.payload() < open.first.payload() {
            open.closed = true;
        }
        self.joined += 1;
        self.open = Some(open);
    }

    /// Ends the frame being built: its headers fixed, it waits to be
    /// taken.
    pub fn finish(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let end = self.buf.len();
        if open.count > 1 {
            self.fix(&open);
        }
        self.ready.push_back(open.start..end);
    }

    /// A joined frame's lengths, checksums and virtio-net header.
    fn fix(&mut self, open: &Open) {
        let first = open.first;
        let at = open.start + VNET_HDR;
        let frame = &mut self.buf[at..];
        let tcp_len = open.ip_len - first.l3;
        if first.v6 {
            frame[ETH + 4..ETH + 6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        } else {
            frame[ETH + 2..ETH + 4].copy_from_slice(&(open.ip_len as u16).to_be_bytes());
            frame[ETH + 10..ETH + 12].fill(0);
            let sum = !offload::ones_complement_sum(&[&frame[ETH..ETH + IPV4]]);
            frame[ETH + 10..ETH + 12].copy_from_slice(&sum.to_be_bytes());
        }
        // The pseudo-header's sum, not inverted: the rest is summed by
        // whoever completes the checksum (a NIC, the kernel, our
        // segmenter).
        let len = tcp_len as u32;
        let pseudo = if first.v6 {
            let mut p = [0u8; 8];
            p[..4].copy_from_slice(&len.to_be_bytes());
            p[7] = PROTO_TCP;
            offload::ones_complement_sum(&[&frame[ETH + 8..ETH + 40], &p])
        } else {
            let p = [0, PROTO_TCP, (len >> 8) as u8, len as u8];
            offload::ones_complement_sum(&[&frame[ETH + 12..ETH + 20], &p])
        };
        let check = first.tcp() + 16;
        frame[check..check + 2].copy_from_slice(&pseudo.to_be_bytes());
        let hdr = VirtioNetHdr {
            flags: offload::F_NEEDS_CSUM,
            gso_type: if first.v6 {
                offload::GSO_TCPV6
            } else {
                offload::GSO_TCPV4
            },
            hdr_len: first.data() as u16,
            gso_size: first.payload() as u16,
            csum_start: first.tcp() as u16,
            csum_offset: 16,
            ..VirtioNetHdr::default()
        };
        // The layout's size is VNET_HDR: cannot fail.
        let _ = hdr.write(&mut self.buf[open.start..at], HdrLayout::Basic);
    }

    /// Copies the next waiting frame, its virtio-net header first, into
    /// `out`; its length, or `None` if none waits (call [`finish`] after
    /// the last push of a batch). A frame longer than `out` is cut.
    ///
    /// [`finish`]: Coalescer::finish
    pub fn pop_into(&mut self, out: &mut [u8]) -> Option<usize> {
        let range = self.ready.pop_front()?;
        let len = range.len().min(out.len());
        out[..len].copy_from_slice(&self.buf[range.start..range.start + len]);
        if self.ready.is_empty() && self.open.is_none() {
            self.buf.clear();
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 segment with checksums right.
    fn segment(seq: u32, payload: &[u8], flags: u8) -> Vec<u8> {
        segment_with_id(seq, payload, flags, 0)
    }

    fn segment_with_id(seq: u32, payload: &[u8], flags: u8, id: u16) -> Vec<u8> {
        let mut f = vec![0u8; ETH + IPV4 + 20];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[8, 0]);
        let total = (IPV4 + 20 + payload.len()) as u16;
        let ip = &mut f[ETH..ETH + IPV4];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = PROTO_TCP;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let sum = !offload::ones_complement_sum(&[&f[ETH..ETH + IPV4]]);
        f[ETH + 10..ETH + 12].copy_from_slice(&sum.to_be_bytes());
        let t = ETH + IPV4;
        f[t..t + 4].copy_from_slice(&[0x1f, 0x90, 0xc0, 0x01]);
        f[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        f[t + 8..t + 12].copy_from_slice(&7u32.to_be_bytes());
        f[t + 12] = 5 << 4;
        f[t + 13] = flags;
        f[t + 14..t + 16].copy_from_slice(&512u16.to_be_bytes());
        f.extend_from_slice(payload);
        let len = (20 + payload.len()) as u32;
        let pseudo = [0, PROTO_TCP, (len >> 8) as u8, len as u8];
        let sum = !offload::ones_complement_sum(&[&f[ETH + 12..ETH + 20], &pseudo, &f[t..]]);
        f[t + 16..t + 18].copy_from_slice(&sum.to_be_bytes());
        f
    }

    fn drain(c: &mut Coalescer) -> Vec<Vec<u8>> {
        c.finish();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70000];
        while let Some(len) = c.pop_into(&mut buf) {
            out.push(buf[..len].to_vec());
        }
        out
    }

    #[test]
    fn consecutive_segments_become_one_tso_frame_that_the_segmenter_cuts_back() {
        let mut c = Coalescer::new();
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000]).collect();
        let mut seq = 1000;
        let mut originals = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let flags = if i == 4 { TCP_ACK | TCP_PSH } else { TCP_ACK };
            // Identifications counting up, as a TSO sender's do.
            let s = segment_with_id(seq, p, flags, 40 + i as u16);
            c.push(&s);
            originals.push(s);
            seq += p.len() as u32;
        }
        let out = drain(&mut c);
        assert_eq!(out.len(), 1, "one frame");
        let (hdr, frame) = VirtioNetHdr::split(&out[0], HdrLayout::Basic).unwrap();
        assert_eq!(hdr.gso_type, offload::GSO_TCPV4);
        assert_eq!(hdr.gso_size, 1000);
        assert_eq!(frame.len(), ETH + IPV4 + 20 + 5000);
        // Cut back by the network's own segmenter: the original segments.
        let mut cut = Vec::new();
        offload::segment(&hdr, frame, 1514, &mut Vec::new(), |s| cut.push(s.to_vec())).unwrap();
        assert_eq!(cut.len(), originals.len());
        for (i, (got, sent)) in cut.iter().zip(&originals).enumerate() {
            assert!(got == sent, "segment {i} differs from the original");
        }
        assert_eq!(c.joined(), 4);
    }

    #[test]
    fn gaps_flags_bad_checksums_and_other_frames_are_not_joined() {
        let mut c = Coalescer::new();
        let a = segment(1, &[1; 100], TCP_ACK);
        let gap = segment(500, &[2; 100], TCP_ACK);
        let mut bad = segment(600, &[3; 100], TCP_ACK);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let syn = segment(700, &[4; 100], 0x02);
        let arp = vec![0xffu8; 60];
        for f in [&a, &gap, &bad, &syn, &arp] {
            c.push(f);
        }
        let out = drain(&mut c);
        assert_eq!(out.len(), 5);
        for (got, sent) in out.iter().zip([&a, &gap, &bad, &syn, &arp]) {
            assert_eq!(&got[..VNET_HDR], &[0; VNET_HDR], "plain header");
            assert_eq!(&got[VNET_HDR..], &sent[..], "as it came");
        }
        assert_eq!(c.joined(), 0);
    }

    #[test]
    fn a_shorter_segment_ends_the_frame_and_a_longer_one_starts_another() {
        let mut c = Coalescer::new();
        c.push(&segment(0, &[0; 100], TCP_ACK));
        c.push(&segment(100, &[0; 50], TCP_ACK));
        c.push(&segment(150, &[0; 50], TCP_ACK));
        let out = drain(&mut c);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), VNET_HDR + ETH + IPV4 + 20 + 150);
        assert_eq!(out[1].len(), VNET_HDR + ETH + IPV4 + 20 + 50);
    }
}
