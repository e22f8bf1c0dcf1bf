//! Typed views of the IPv4, IPv6, TCP and UDP headers, in smoltcp's style:
//! a view wraps a buffer (`T: AsRef<[u8]>`), has getters, and setters when
//! the buffer is mutable (`T: AsMut<[u8]>`); field offsets are named once,
//! in each view's `field` module.
//!
//! Why not smoltcp's own `wire` views: measured on the segmenter's work
//! (a 64 KiB TCPv4 frame cut into 46 segments, headers fixed and both
//! checksums filled), smoltcp 0.12's `Ipv4Packet`/`TcpPacket` with
//! `fill_checksum` took 1.1 to 1.3 times as long as this module (its
//! checksum adds 16-bit words one at a time, ours four bytes at a time
//! in vector adds); its `check_len` says only that a packet is malformed,
//! where [`super::OffloadError`] must say which field and by how much;
//! and it would add five crates to `ipn`'s dependencies.
//!
//! Invariants: `new_unchecked` does no check; every caller checks the
//! buffer's length against the header's minimum first (`gso::Headers`
//! does, with an error that says what is short). The getters and setters
//! then never index out of bounds. Multi-byte fields are big-endian.

use super::checksum;

/// An IPv4 header (without options: `gso` refuses them).
#[derive(Debug)]
pub(crate) struct Ipv4<T>(T);

mod ipv4 {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    /// Source and destination, together: what a pseudo-header sums.
    pub const ADDRESSES: std::ops::Range<usize> = 12..20;
    pub const HEADER_LEN: usize = 20;
}

/// The length of an IPv4 header without options.
pub(crate) const IPV4_HEADER: usize = ipv4::HEADER_LEN;

impl<T: AsRef<[u8]>> Ipv4<T> {
    /// A view of `buffer`, which holds at least [`IPV4_HEADER`] bytes.
    pub(crate) fn new_unchecked(buffer: T) -> Ipv4<T> {
        Ipv4(buffer)
    }
    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }
    pub(crate) fn version(&self) -> u8 {
        self.b()[ipv4::VER_IHL] >> 4
    }
    /// The header's length in bytes (IHL × 4).
    pub(crate) fn header_len(&self) -> usize {
        usize::from(self.b()[ipv4::VER_IHL] & 0x0f) * 4
    }
    pub(crate) fn total_len(&self) -> u16 {
        get16(self.b(), ipv4::TOTAL_LEN)
    }
    pub(crate) fn ident(&self) -> u16 {
        get16(self.b(), ipv4::IDENT)
    }
    /// More-fragments or a fragment offset: the packet is a fragment.
    pub(crate) fn is_fragment(&self) -> bool {
        get16(self.b(), ipv4::FLAGS_FRAG) & 0x3fff != 0
    }
    pub(crate) fn protocol(&self) -> u8 {
        self.b()[ipv4::PROTOCOL]
    }
    pub(crate) fn addresses(&self) -> &[u8] {
        &self.b()[ipv4::ADDRESSES]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4<T> {
    pub(crate) fn set_total_len(&mut self, len: u16) {
        put16(self.0.as_mut(), ipv4::TOTAL_LEN, len);
    }
    pub(crate) fn set_ident(&mut self, ident: u16) {
        put16(self.0.as_mut(), ipv4::IDENT, ident);
    }
    /// Computes the header checksum over the header and stores it.
    pub(crate) fn fill_checksum(&mut self) {
        let len = self.header_len();
        let b = self.0.as_mut();
        put16(b, ipv4::CHECKSUM, 0);
        let check = checksum::finish(checksum::add(&b[..len], 0));
        put16(b, ipv4::CHECKSUM, check);
    }
}

/// An IPv6 fixed header.
#[derive(Debug)]
pub(crate) struct Ipv6<T>(T);

mod ipv6 {
    pub const VERSION: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const ADDRESSES: std::ops::Range<usize> = 8..40;
    pub const HEADER_LEN: usize = 40;
}

/// The length of the IPv6 fixed header.
pub(crate) const IPV6_HEADER: usize = ipv6::HEADER_LEN;

impl<T: AsRef<[u8]>> Ipv6<T> {
    /// A view of `buffer`, which holds at least [`IPV6_HEADER`] bytes.
    pub(crate) fn new_unchecked(buffer: T) -> Ipv6<T> {
        Ipv6(buffer)
    }
    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }
    pub(crate) fn version(&self) -> u8 {
        self.b()[ipv6::VERSION] >> 4
    }
    pub(crate) fn payload_len(&self) -> u16 {
        get16(self.b(), ipv6::PAYLOAD_LEN)
    }
    pub(crate) fn next_header(&self) -> u8 {
        self.b()[ipv6::NEXT_HEADER]
    }
    pub(crate) fn addresses(&self) -> &[u8] {
        &self.b()[ipv6::ADDRESSES]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6<T> {
    pub(crate) fn set_payload_len(&mut self, len: u16) {
        put16(self.0.as_mut(), ipv6::PAYLOAD_LEN, len);
    }
}

/// A TCP header.
#[derive(Debug)]
pub(crate) struct Tcp<T>(T);

mod tcp {
    pub const SEQ: usize = 4;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: usize = 16;
    pub const HEADER_LEN: usize = 20;
}

/// The length of a TCP header without options.
pub(crate) const TCP_HEADER: usize = tcp::HEADER_LEN;
/// Where a TCP header's checksum is, from its start.
pub(crate) const TCP_CHECKSUM: usize = tcp::CHECKSUM;
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_CWR: u8 = 0x80;

impl<T: AsRef<[u8]>> Tcp<T> {
    /// A view of `buffer`, which holds at least [`TCP_HEADER`] bytes.
    pub(crate) fn new_unchecked(buffer: T) -> Tcp<T> {
        Tcp(buffer)
    }
    /// The header's length in bytes (data offset × 4).
    pub(crate) fn header_len(&self) -> usize {
        usize::from(self.0.as_ref()[tcp::DATA_OFFSET] >> 4) * 4
    }
    pub(crate) fn seq(&self) -> u32 {
        let b = self.0.as_ref();
        u32::from_be_bytes([
            b[tcp::SEQ],
            b[tcp::SEQ + 1],
            b[tcp::SEQ + 2],
            b[tcp::SEQ + 3],
        ])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Tcp<T> {
    pub(crate) fn set_seq(&mut self, seq: u32) {
        self.0.as_mut()[tcp::SEQ..tcp::SEQ + 4].copy_from_slice(&seq.to_be_bytes());
    }
    /// Clears the flag bits in `mask` (`TCP_FIN | TCP_PSH`, `TCP_CWR`).
    pub(crate) fn clear_flags(&mut self, mask: u8) {
        self.0.as_mut()[tcp::FLAGS] &= !mask;
    }
    pub(crate) fn set_checksum(&mut self, check: u16) {
        put16(self.0.as_mut(), tcp::CHECKSUM, check);
    }
}

/// A UDP header.
#[derive(Debug)]
pub(crate) struct Udp<T>(T);

mod udp {
    pub const LEN: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const HEADER_LEN: usize = 8;
}

/// The length of a UDP header.
pub(crate) const UDP_HEADER: usize = udp::HEADER_LEN;
/// Where a UDP header's checksum is, from its start.
pub(crate) const UDP_CHECKSUM: usize = udp::CHECKSUM;

impl<T: AsRef<[u8]> + AsMut<[u8]>> Udp<T> {
    /// A view of `buffer`, which holds at least [`UDP_HEADER`] bytes.
    pub(crate) fn new_unchecked(buffer: T) -> Udp<T> {
        Udp(buffer)
    }
    pub(crate) fn set_len(&mut self, len: u16) {
        put16(self.0.as_mut(), udp::LEN, len);
    }
    pub(crate) fn set_checksum(&mut self, check: u16) {
        put16(self.0.as_mut(), udp::CHECKSUM, check);
    }
}

pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;

/// The IPv6 extension headers (RFC 8200 and the IANA list): hop-by-hop,
/// routing, fragment, ESP, AH, destination options, mobility, HIP, shim6,
/// and the two experimental numbers.
pub(crate) fn is_ipv6_extension(next: u8) -> bool {
    matches!(
        next,
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
    )
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, value: u16) {
    b[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
