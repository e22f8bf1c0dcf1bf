//! Segmentation and checksum offload: what a NIC would do with a frame
//! that carries a virtio-net header, done in software.
//!
//! A TAP opened with `IFF_VNET_HDR` and offloads (`TUNSETOFFLOAD`) hands
//! over, after a [`VirtioNetHdr`], frames of up to 64 KiB whose TCP or UDP
//! payload still has to be cut into wire-sized segments (GSO), and frames
//! whose checksum is left for the device to complete. This module turns
//! them into ordinary frames that fit a network's MTU, as the kernel's own
//! software fallback (`skb_gso_segment`, `skb_checksum_help`) would.
//!
//! The module is four layers, each on the one before:
//!
//! - `checksum`: Internet checksum arithmetic (RFC 1071), wide sums folded
//!   at the end.
//! - `wire`: typed views of the IPv4, IPv6, TCP and UDP headers (getters,
//!   and setters on mutable buffers), in smoltcp's style; its module doc
//!   says why not smoltcp's own.
//! - `virtio`: the 10-byte `struct virtio_net_hdr` and the
//!   12-byte `struct virtio_net_hdr_mrg_rxbuf` ([`HdrLayout`]), read from
//!   and written to bytes, little-endian (virtio 1.0; a TAP uses it after
//!   `TUNSETVNETLE`, and host order is little-endian anyway on x86).
//! - `gso`: what is done with a frame and its header: [`Segments`], the
//!   queue of wire frames one frame stands for, written one at a time into
//!   the caller's buffers; [`segment`], the same through a callback;
//!   [`complete_checksum`], the `NEEDS_CSUM` work on one frame; [`check`],
//!   whether a frame would be cut, without the work: what a sender asks
//!   before it writes a frame with offloads into a network, so that every
//!   port, with offloads or without, can receive it.
//!
//! Pure functions, no I/O, no `unsafe`.
//!
//! Invariants:
//! - No input panics: every length, offset and field is checked before it
//!   is used; a frame the header or the frame itself contradicts is an
//!   [`OffloadError`] that says what does not add up.
//! - [`segment`] and [`Segments::start`] check everything before anything
//!   is emitted: on `Err`, nothing was (nothing waits); on `Ok(n)`, exactly
//!   `n` frames are, none larger than the MTU given.
//! - Nothing on the data path allocates: [`Segments`] holds no bytes (the
//!   caller keeps the frame and gives the buffers), and [`segment`] reuses
//!   the buffer it is given.
//! - Segments are what the kernel makes of the same frame: IPv4 total
//!   length, ID (the first segment keeps the frame's ID, each next one adds
//!   one) and header checksum; IPv6 payload length; TCP sequence numbers,
//!   FIN and PSH only on the last segment, CWR only on the first; UDP
//!   length; full TCP/UDP checksums over the pseudo-header (a UDP checksum
//!   that comes out as zero is sent as `0xffff`).
//!
//! What is refused, on purpose: legacy UFO (`GSO_UDP`, IP fragmentation of
//! one UDP datagram, which Linux no longer generates), IPv4 options,
//! IPv6 extension headers, stacked 802.1Q tags (one tag is fine), and
//! IPv4 or IPv6 jumbograms (total length 0).

mod checksum;
mod gso;
mod virtio;
mod wire;

pub use checksum::ones_complement_sum;
pub use gso::{check, complete_checksum, segment, Segments, MAX_GSO_FRAME};
pub use virtio::{
    Gso, HdrLayout, VirtioNetHdr, F_DATA_VALID, F_NEEDS_CSUM, F_RSC_INFO, GSO_ECN, GSO_NONE,
    GSO_TCPV4, GSO_TCPV6, GSO_UDP, GSO_UDP_L4,
};

/// Why a header could not be read or written, or a frame not segmented or
/// checksummed. Every message says which field or length is wrong and by
/// how much.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// Fewer bytes than the header's form needs.
    #[error("virtio-net header: {have} bytes, the {need}-byte form needs all of them")]
    ShortHeader {
        /// Bytes there were.
        have: usize,
        /// Bytes the form has.
        need: usize,
    },
    /// The output buffer cannot hold the header.
    #[error(
        "virtio-net header: an output buffer of {have} bytes cannot hold the {need}-byte form"
    )]
    ShortBuffer {
        /// Bytes of room.
        have: usize,
        /// Bytes the form has.
        need: usize,
    },
    /// Flag bits this module does not know (only NEEDS_CSUM and
    /// DATA_VALID come from a TAP).
    #[error(
        "virtio-net header: unknown flag bits {0:#04x} (known: NEEDS_CSUM 0x01, DATA_VALID 0x02)"
    )]
    UnknownFlags(u8),
    /// A `gso_type` that is none of NONE, TCPV4, TCPV6, UDP_L4 (each
    /// optionally with ECN).
    #[error("virtio-net header: unknown gso_type {0:#04x} (known: NONE 0, TCPV4 1, UDP 3, TCPV6 4, UDP_L4 5, each | ECN 0x80)")]
    UnknownGsoType(u8),
    /// Legacy UFO.
    #[error("virtio-net header: gso_type UDP (3, legacy UFO: one UDP datagram to be sent as IP fragments) is not supported; a TAP only sends it if TUN_F_UFO was negotiated, which ipn never does (it uses USO, gso_type UDP_L4)")]
    UfoUnsupported,
    /// The ECN bit on something that is not TCP.
    #[error("virtio-net header: gso_type {0:#04x} sets ECN on a non-TCP type")]
    EcnWithoutTcp(u8),
    /// A GSO type with `gso_size` 0.
    #[error("virtio-net header: gso_type {0:#04x} with gso_size 0: there is no segment size")]
    ZeroGsoSize(u8),
    /// `hdr_len` says the headers are longer than the whole frame.
    #[error("virtio-net header: hdr_len {hdr_len} is beyond the end of the {frame}-byte frame")]
    HdrLenBeyondFrame {
        /// The header's `hdr_len`.
        hdr_len: u16,
        /// The frame's length.
        frame: usize,
    },
    /// The checksum to complete lies outside the frame.
    #[error("checksum offload: csum_start {start} + csum_offset {offset} + 2 is beyond the end of the {frame}-byte frame")]
    ChecksumOutOfRange {
        /// `csum_start`.
        start: usize,
        /// `csum_offset`.
        offset: usize,
        /// The frame's length.
        frame: usize,
    },
    /// NEEDS_CSUM on a GSO frame points elsewhere than at the segmented
    /// protocol's checksum.
    #[error("checksum offload: csum_start {start}, csum_offset {offset} do not point at the {proto} checksum of this frame (csum_start {want_start}, csum_offset {want_offset})")]
    ChecksumElsewhere {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// "TCP" or "UDP".
        proto: &'static str,
        /// Where the L4 header starts.
        want_start: usize,
        /// Where its checksum is in it.
        want_offset: usize,
    },
    /// The frame is shorter than a header it must have.
    #[error("{what}: the frame ends {missing} bytes short of it")]
    Truncated {
        /// Which header ("Ethernet header", "IPv4 header", "TCP header"...).
        what: &'static str,
        /// How many bytes are missing.
        missing: usize,
    },
    /// A GSO frame that is neither IPv4 nor IPv6 (after at most one tag).
    #[error("GSO frame with EtherType {0:#06x}: only IPv4 (0x0800) and IPv6 (0x86dd) can be segmented, after at most one 802.1Q tag")]
    UnsupportedEthertype(u16),
    /// The IP header's version field contradicts its EtherType.
    #[error("{ethertype} frame whose IP header says version {version}")]
    BadIpVersion {
        /// "IPv4" or "IPv6", from the EtherType.
        ethertype: &'static str,
        /// The version nibble.
        version: u8,
    },
    /// IPv4 header length below 20 bytes.
    #[error("IPv4 header length {0} bytes (IHL {ihl}) is below the minimum of 20", ihl = .0 / 4)]
    BadIpv4HeaderLength(usize),
    /// IPv4 options (not supported: the kernel never uses them on TCP
    /// segments it offloads).
    #[error("IPv4 header of {0} bytes: IPv4 options are not supported in GSO frames")]
    Ipv4Options(usize),
    /// An IPv4 fragment cannot be segmented.
    #[error(
        "IPv4 fragment (fragment offset or more-fragments set): a fragment cannot be segmented"
    )]
    Ipv4Fragment,
    /// IPv6 with an extension header before the transport header.
    #[error("IPv6 next header {0}: IPv6 extension headers are not supported in GSO frames, only TCP (6) or UDP (17) right after the fixed header")]
    Ipv6ExtensionHeader(u8),
    /// The IP header's protocol is not what `gso_type` says.
    #[error("gso_type {gso} but the frame carries {found}")]
    GsoTypeMismatch {
        /// The GSO type ("TCPV4", "TCPV6", "UDP_L4").
        gso: &'static str,
        /// What the frame carries ("IPv6", "IP protocol 17"...).
        found: String,
    },
    /// A length field does not add up with the frame's length.
    #[error("{what} says {says} bytes, but the frame holds {actual}")]
    LengthMismatch {
        /// Which field ("IPv4 total length", "IPv6 payload length").
        what: &'static str,
        /// Its value.
        says: usize,
        /// What the frame holds from that header on.
        actual: usize,
    },
    /// TCP data offset below five words.
    #[error("TCP header length {0} bytes (data offset {doff}) is below the minimum of 20", doff = .0 / 4)]
    BadTcpHeaderLength(usize),
    /// A frame, or the segments it would make, larger than the MTU.
    #[error("{what} of {len} bytes exceeds the MTU of {mtu} bytes")]
    TooBig {
        /// "frame" or "segment".
        what: &'static str,
        /// Its length, Ethernet header included.
        len: usize,
        /// The MTU given, Ethernet header included.
        mtu: usize,
    },
}

#[cfg(test)]
mod test_util {
    /// Bytes from hex digits; anything else (spaces, newlines) is skipped.
    pub(crate) fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| (c as char).to_digit(16).unwrap() as u8)
            .collect();
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }
}
