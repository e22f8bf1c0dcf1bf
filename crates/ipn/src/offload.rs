//! Segmentation and checksum offload: what a NIC would do with a frame
//! that carries a virtio-net header, done in software.
//!
//! A TAP opened with `IFF_VNET_HDR` and offloads (`TUNSETOFFLOAD`) hands
//! over, after a [`VirtioNetHdr`], frames of up to 64 KiB whose TCP or UDP
//! payload still has to be cut into wire-sized segments (GSO), and frames
//! whose checksum is left for the device to complete. This module turns
//! them into ordinary frames that fit a network's MTU, as the kernel's own
//! software fallback (`skb_gso_segment`, `skb_checksum_help`) would:
//!
//! - [`VirtioNetHdr`]: the 10-byte `struct virtio_net_hdr` and the 12-byte
//!   `struct virtio_net_hdr_mrg_rxbuf` ([`HdrLayout`]), read from and
//!   written to bytes, little-endian (virtio 1.0; a TAP uses it after
//!   `TUNSETVNETLE`, and host order is little-endian anyway on x86).
//! - [`segment`]: one frame and its header in, wire frames out, through a
//!   callback.
//! - [`complete_checksum`]: the `NEEDS_CSUM` work on one frame.
//! - [`check`]: whether [`segment`] would succeed, without the work: what
//!   a sender asks before it writes a frame with offloads into a network,
//!   so that every port, with offloads or without, can receive it.
//!
//! Pure functions, no I/O, no `unsafe`.
//!
//! Invariants:
//! - No input panics: every length, offset and field is checked before it
//!   is used; a frame the header or the frame itself contradicts is an
//!   [`OffloadError`] that says what does not add up.
//! - [`segment`] checks everything before it emits anything: on `Err`,
//!   nothing was emitted; on `Ok(n)`, exactly `n` frames were, none larger
//!   than the MTU it was given.
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

use crate::ethernet::{Frame, HEADER_LEN};

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start +
/// csum_offset` holds only the pseudo-header's sum; complete it over the
/// bytes from `csum_start` to the end of the frame.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the sender checked the checksum already.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_F_RSC_INFO`: receive-side coalescing counts in the
/// `csum_*` fields (only with `VIRTIO_NET_F_RSC_EXT`; never from a TAP).
pub const F_RSC_INFO: u8 = 4;

/// `VIRTIO_NET_HDR_GSO_NONE`: not a GSO frame.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: TCP over IPv4, cut into `gso_size` payloads.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: legacy UFO (refused, see the module doc).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: TCP over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP (IPv4 or IPv6) cut into datagrams of
/// `gso_size` payload bytes each (USO, `UDP_SEGMENT`).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`, or-ed into a TCP type: the frame has CWR set.
pub const GSO_ECN: u8 = 0x80;

/// The largest frame a GSO header can describe: an 802.1Q-tagged Ethernet
/// header, a 40-byte IPv6 header and a payload length of 65535 (IPv4's
/// total length, which counts its header, allows less). A buffer this
/// large receives any frame from a TAP with offloads.
pub const MAX_GSO_FRAME: usize = HEADER_LEN + TAG + IPV6_HEADER + 65535;

const TAG: usize = crate::ethernet::TAG_LEN;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// Offset of the checksum in a TCP / UDP header.
const TCP_CHECK: usize = 16;
const UDP_CHECK: usize = 6;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

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

/// The two forms of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HdrLayout {
    /// `struct virtio_net_hdr`, 10 bytes (a TAP's default).
    #[default]
    Basic,
    /// `struct virtio_net_hdr_mrg_rxbuf` (= `virtio_net_hdr_v1`), 12
    /// bytes: the basic header and `num_buffers`.
    MrgRxbuf,
}

impl HdrLayout {
    /// The form's size in bytes: 10 or 12.
    pub const fn size(self) -> usize {
        match self {
            HdrLayout::Basic => 10,
            HdrLayout::MrgRxbuf => 12,
        }
    }

    /// The form of `len` bytes, if it is one.
    pub const fn from_len(len: usize) -> Option<HdrLayout> {
        match len {
            10 => Some(HdrLayout::Basic),
            12 => Some(HdrLayout::MrgRxbuf),
            _ => None,
        }
    }
}

/// What a header asks for, decoded from `gso_type` by [`VirtioNetHdr::gso`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gso {
    /// No segmentation.
    None,
    /// TCP over IPv4; `ecn`: the frame has CWR set (keep it on the first
    /// segment only).
    TcpV4 {
        /// The ECN bit of `gso_type`.
        ecn: bool,
    },
    /// TCP over IPv6.
    TcpV6 {
        /// The ECN bit of `gso_type`.
        ecn: bool,
    },
    /// UDP over IPv4 or IPv6 (USO).
    UdpL4,
}

/// A virtio-net header (`struct virtio_net_hdr`, and `num_buffers` of the
/// 12-byte form). The fields are the raw values; [`VirtioNetHdr::gso`]
/// decodes the type, [`segment`] checks the rest against the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtioNetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`, optionally `| GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers (Ethernet + IP + TCP/UDP); a hint only (Linux
    /// reports the length of the skb's linear part here).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed bytes start (with `F_NEEDS_CSUM`).
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum goes.
    pub csum_offset: u16,
    /// Buffers a merged receive used (12-byte form only; 0 in the 10-byte
    /// form; a TAP neither reads nor writes it).
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// Reads a header in `layout`'s form from the start of `bytes`.
    pub fn parse(bytes: &[u8], layout: HdrLayout) -> Result<VirtioNetHdr, OffloadError> {
        let need = layout.size();
        let Some(b) = bytes.get(..need) else {
            return Err(OffloadError::ShortHeader {
                have: bytes.len(),
                need,
            });
        };
        let word = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        Ok(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
            num_buffers: match layout {
                HdrLayout::Basic => 0,
                HdrLayout::MrgRxbuf => word(10),
            },
        })
    }

    /// Reads a header in `layout`'s form and returns it with the frame
    /// that follows it.
    pub fn split(bytes: &[u8], layout: HdrLayout) -> Result<(VirtioNetHdr, &[u8]), OffloadError> {
        let hdr = VirtioNetHdr::parse(bytes, layout)?;
        Ok((hdr, bytes.get(layout.size()..).unwrap_or_default()))
    }

    /// Writes the header in `layout`'s form at the start of `out`; returns
    /// the bytes written (10 or 12).
    pub fn write(&self, out: &mut [u8], layout: HdrLayout) -> Result<usize, OffloadError> {
        let need = layout.size();
        let have = out.len();
        let Some(out) = out.get_mut(..need) else {
            return Err(OffloadError::ShortBuffer { have, need });
        };
        out.copy_from_slice(&self.to_bytes()[..need]);
        Ok(need)
    }

    /// Moves the offsets into the frame (`hdr_len`, `csum_start`) by
    /// `delta` bytes, when an 802.1Q tag is taken out of the frame (-4) or
    /// put back (+4). Offsets that are 0 (unused) stay 0; none goes below 0.
    pub fn shift_offsets(&mut self, delta: i32) {
        let shift = |v: u16| {
            if v == 0 {
                0
            } else {
                (i32::from(v) + delta).clamp(0, i32::from(u16::MAX)) as u16
            }
        };
        self.hdr_len = shift(self.hdr_len);
        if self.needs_csum() {
            self.csum_start = shift(self.csum_start);
        }
    }

    /// Whether the header asks nothing: no segmentation, no checksum to
    /// complete (a frame with such a header is a plain frame).
    pub fn is_plain(&self) -> bool {
        !self.is_gso() && !self.needs_csum()
    }

    /// The header in the 12-byte form; its first 10 bytes are the 10-byte
    /// form.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        b
    }

    /// Whether the frame is to be segmented (`gso_type` is not NONE).
    pub fn is_gso(&self) -> bool {
        self.gso_type != GSO_NONE
    }

    /// Whether the frame's checksum is left to complete (`F_NEEDS_CSUM`).
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// Whether the sender vouches for the checksum (`F_DATA_VALID`).
    pub fn data_valid(&self) -> bool {
        self.flags & F_DATA_VALID != 0
    }

    /// The segmentation asked for, checked: a known type, ECN only on TCP,
    /// a segment size for every GSO type. Legacy UFO is refused.
    pub fn gso(&self) -> Result<Gso, OffloadError> {
        let ecn = self.gso_type & GSO_ECN != 0;
        let gso = match self.gso_type & !GSO_ECN {
            // ECN on NONE: the kernel refuses it too (virtio_net_hdr_to_skb).
            GSO_NONE if !ecn => return Ok(Gso::None),
            GSO_TCPV4 => Gso::TcpV4 { ecn },
            GSO_TCPV6 => Gso::TcpV6 { ecn },
            GSO_UDP_L4 if ecn => return Err(OffloadError::EcnWithoutTcp(self.gso_type)),
            GSO_UDP_L4 => Gso::UdpL4,
            GSO_UDP => return Err(OffloadError::UfoUnsupported),
            _ => return Err(OffloadError::UnknownGsoType(self.gso_type)),
        };
        if self.gso_size == 0 {
            return Err(OffloadError::ZeroGsoSize(self.gso_type));
        }
        Ok(gso)
    }
}

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
    let sum = fold(sum_be_words(&frame[csum_start..], 0));
    let check = match !sum {
        0 => 0xffff,
        c => c,
    };
    frame[at..at + 2].copy_from_slice(&check.to_be_bytes());
    Ok(())
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
    plan(hdr, frame, mtu).map(|plan| match plan {
        Plan::Whole => 1,
        Plan::Cut { count, .. } => count,
    })
}

/// What [`segment`] does with a frame, everything checked.
enum Plan {
    /// No GSO: the frame as it is (checksum completed if asked).
    Whole,
    /// GSO: `count` segments of at most `gso_size` payload bytes after the
    /// headers `layout` describes.
    Cut {
        layout: Headers,
        gso_size: usize,
        count: usize,
        /// Bytes of the largest segment.
        largest: usize,
    },
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
            if hdr.needs_csum() {
                checksum_at(
                    frame.len(),
                    usize::from(hdr.csum_start),
                    usize::from(hdr.csum_offset),
                )?;
            }
            return Ok(Plan::Whole);
        }
        Gso::TcpV4 { .. } => L4::Tcp(Ip::V4),
        Gso::TcpV6 { .. } => L4::Tcp(Ip::V6),
        Gso::UdpL4 => L4::Udp,
    };
    let layout = Headers::parse(frame, proto)?;
    if hdr.needs_csum() {
        let (want_offset, proto) = match layout.udp {
            false => (TCP_CHECK, "TCP"),
            true => (UDP_CHECK, "UDP"),
        };
        if usize::from(hdr.csum_start) != layout.l4 || usize::from(hdr.csum_offset) != want_offset {
            return Err(OffloadError::ChecksumElsewhere {
                start: hdr.csum_start,
                offset: hdr.csum_offset,
                proto,
                want_start: layout.l4,
                want_offset,
            });
        }
    }
    let gso_size = usize::from(hdr.gso_size);
    let payload = frame.len() - layout.payload;
    let largest = layout.payload + payload.min(gso_size);
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
        layout,
        gso_size,
        count: payload.div_ceil(gso_size).max(1),
        largest,
    })
}

/// Turns `frame`, which came with `hdr`, into frames of at most `mtu`
/// bytes (Ethernet header included, as ipn counts a network's MTU) and
/// hands each to `emit`, in order; returns how many it emitted.
///
/// - No GSO, no NEEDS_CSUM: the frame as it is.
/// - No GSO, NEEDS_CSUM: the frame with its checksum completed
///   ([`complete_checksum`]).
/// - GSO (TCPV4, TCPV6, each with or without ECN; UDP_L4): the payload
///   after the TCP/UDP header cut into `gso_size` pieces, each with a copy
///   of the headers, fixed as the module doc says. A frame whose payload
///   fits in one segment gives one frame, checksums complete.
///
/// Everything is checked first: on `Err`, `emit` was not called.
pub fn segment(
    hdr: &VirtioNetHdr,
    frame: &[u8],
    mtu: usize,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let (layout, gso_size, count, largest) = match plan(hdr, frame, mtu)? {
        Plan::Whole => return whole(hdr, frame, emit),
        Plan::Cut {
            layout,
            gso_size,
            count,
            largest,
        } => (layout, gso_size, count, largest),
    };
    let (headers, payload) = frame.split_at(layout.payload);
    let mut buf = Vec::with_capacity(largest);
    let mut pieces = payload.chunks(gso_size);
    for i in 0..count {
        let piece = pieces.next().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(headers);
        buf.extend_from_slice(piece);
        layout.fix(&mut buf, i, count, gso_size);
        emit(&buf);
    }
    Ok(count)
}

/// A frame without GSO, checked by [`plan`]: as it is, or with its
/// checksum completed.
fn whole(
    hdr: &VirtioNetHdr,
    frame: &[u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    if hdr.needs_csum() {
        let mut copy = frame.to_vec();
        complete_checksum(
            &mut copy,
            usize::from(hdr.csum_start),
            usize::from(hdr.csum_offset),
        )?;
        emit(&copy);
    } else {
        emit(frame);
    }
    Ok(1)
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
    /// Offset of the payload (end of the TCP or UDP header).
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
                missing: (HEADER_LEN + TAG).saturating_sub(len),
            },
        })?;
        let l3 = HEADER_LEN + if view.tag().is_some() { TAG } else { 0 };
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
            let len = usize::from(frame[l4 + 12] >> 4) * 4;
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

    /// Fixes the headers of segment `i` of `count` in `seg` (the copied
    /// headers and the segment's payload).
    fn fix(&self, seg: &mut [u8], i: usize, count: usize, gso_size: usize) {
        let l3_len = seg.len() - self.l3;
        let l4_len = seg.len() - self.l4;
        // Segments are never longer than the frame, whose lengths were
        // checked to fit their 16-bit fields.
        match self.ip {
            Ip::V4 => {
                let ip = &mut seg[self.l3..self.l4];
                put16(ip, 2, l3_len as u16);
                let id = get16(ip, 4).wrapping_add(i as u16);
                put16(ip, 4, id);
                put16(ip, 10, 0);
                let check = !fold(sum_be_words(ip, 0));
                put16(ip, 10, check);
            }
            Ip::V6 => put16(&mut seg[self.l3..], 4, l4_len as u16),
        }
        let pseudo = self.pseudo_sum(seg, l4_len);
        let l4 = &mut seg[self.l4..];
        let check_at = if self.udp {
            put16(l4, 4, l4_len as u16);
            UDP_CHECK
        } else {
            let seq = get32(l4, 4).wrapping_add((i * gso_size) as u32);
            l4[4..8].copy_from_slice(&seq.to_be_bytes());
            if i + 1 < count {
                l4[13] &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                l4[13] &= !TCP_CWR;
            }
            TCP_CHECK
        };
        put16(l4, check_at, 0);
        let check = match !fold(sum_be_words(l4, pseudo)) {
            0 if self.udp => 0xffff,
            c => c,
        };
        put16(l4, check_at, check);
    }

    /// The pseudo-header's sum: addresses, protocol, L4 length.
    fn pseudo_sum(&self, seg: &[u8], l4_len: usize) -> u64 {
        let proto = u64::from(if self.udp { PROTO_UDP } else { PROTO_TCP });
        let addresses = match self.ip {
            Ip::V4 => &seg[self.l3 + 12..self.l3 + 20],
            Ip::V6 => &seg[self.l3 + 8..self.l3 + 40],
        };
        sum_be_words(addresses, proto + l4_len as u64)
    }
}

/// Checks the IPv4 header at `l3`; returns where the L4 header starts and
/// the protocol.
fn ipv4(frame: &[u8], l3: usize) -> Result<(usize, u8), OffloadError> {
    need(frame, l3, IPV4_HEADER, "IPv4 header")?;
    let ip = &frame[l3..];
    let version = ip[0] >> 4;
    if version != 4 {
        return Err(OffloadError::BadIpVersion {
            ethertype: "IPv4",
            version,
        });
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < IPV4_HEADER {
        return Err(OffloadError::BadIpv4HeaderLength(ihl));
    }
    if ihl > IPV4_HEADER {
        return Err(OffloadError::Ipv4Options(ihl));
    }
    if get16(ip, 6) & 0x3fff != 0 {
        return Err(OffloadError::Ipv4Fragment);
    }
    let total = usize::from(get16(ip, 2));
    if total != ip.len() {
        return Err(OffloadError::LengthMismatch {
            what: "IPv4 total length",
            says: total,
            actual: ip.len(),
        });
    }
    Ok((l3 + ihl, ip[9]))
}

/// Checks the IPv6 header at `l3`; returns where the L4 header starts and
/// the next header.
fn ipv6(frame: &[u8], l3: usize) -> Result<(usize, u8), OffloadError> {
    need(frame, l3, IPV6_HEADER, "IPv6 header")?;
    let ip = &frame[l3..];
    let version = ip[0] >> 4;
    if version != 6 {
        return Err(OffloadError::BadIpVersion {
            ethertype: "IPv6",
            version,
        });
    }
    let next = ip[6];
    if is_ipv6_extension(next) {
        return Err(OffloadError::Ipv6ExtensionHeader(next));
    }
    let payload = usize::from(get16(ip, 4));
    if payload != ip.len() - IPV6_HEADER {
        return Err(OffloadError::LengthMismatch {
            what: "IPv6 payload length",
            says: payload,
            actual: ip.len() - IPV6_HEADER,
        });
    }
    Ok((l3 + IPV6_HEADER, next))
}

/// The IPv6 extension headers (RFC 8200 and the IANA list): hop-by-hop,
/// routing, fragment, ESP, AH, destination options, mobility, HIP, shim6,
/// and the two experimental numbers.
fn is_ipv6_extension(next: u8) -> bool {
    matches!(
        next,
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
    )
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

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put16(b: &mut [u8], at: usize, value: u16) {
    b[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// The ones' complement sum (RFC 1071) of `parts`, one after the other,
/// as big-endian 16-bit words, folded to 16 bits (not inverted). Every
/// part but the last must have an even length. A packet whose checksum
/// field is right sums, with its pseudo-header, to `0xffff`.
pub fn ones_complement_sum(parts: &[&[u8]]) -> u16 {
    fold(parts.iter().fold(0, |acc, part| sum_be_words(part, acc)))
}

/// Adds `bytes`, as big-endian 16-bit words (an odd last byte padded with
/// zero), to `acc` (below 2^40), without folding all the way: the result
/// is below 2^40 again, whatever the length.
fn sum_be_words(bytes: &[u8], acc: u64) -> u64 {
    // A block of 1 MiB sums to less than 2^18; fold the carries back in
    // after each, so that no length can overflow.
    bytes.chunks(1 << 20).fold(acc, |acc, block| {
        let sum = acc + sum_block(block);
        (sum & 0xffff_ffff) + (sum >> 32)
    })
}

/// The sum of a block of at most 1 MiB as big-endian 16-bit words.
fn sum_block(bytes: &[u8]) -> u64 {
    // Four bytes at a time in the host's byte order, which the compiler
    // turns into wide vector adds (three times faster than big-endian
    // loads on x86): a ones' complement sum of byte-swapped words is the
    // byte-swapped sum (RFC 1071, 2.(B)), so the folded result is swapped
    // back on a little-endian host.
    let mut native = 0u64;
    let mut wide = bytes.chunks_exact(4);
    for c in &mut wide {
        native += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
    }
    let folded = fold(native);
    let mut acc = u64::from(if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    });
    let mut words = wide.remainder().chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum into 16 bits, carries added back in.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum check of RFC 1071's reference loop, written apart from
    /// the module's: 16 bits at a time into 32, carries folded at the end.
    /// A correct header or segment sums to 0xffff.
    fn reference_sum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut sum: u32 = 0;
        for pair in bytes.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u32::from(b));
            sum += hi | lo;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| (c as char).to_digit(16).unwrap() as u8)
            .collect();
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    fn segments(hdr: &VirtioNetHdr, frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let n = segment(hdr, frame, mtu, |s| out.push(s.to_vec())).unwrap();
        assert_eq!(n, out.len());
        out
    }

    fn refused(hdr: &VirtioNetHdr, frame: &[u8], mtu: usize) -> OffloadError {
        let mut emitted = 0;
        let err = segment(hdr, frame, mtu, |_| emitted += 1).unwrap_err();
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
    fn headers_read_and_write_both_forms_little_endian() {
        let bytes = hex("01 81 3600 a805 2200 1000 0100");
        let hdr = VirtioNetHdr::parse(&bytes, HdrLayout::MrgRxbuf).unwrap();
        assert_eq!(
            hdr,
            VirtioNetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4 | GSO_ECN,
                hdr_len: 54,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
                num_buffers: 1,
            }
        );
        assert!(hdr.is_gso() && hdr.needs_csum() && !hdr.data_valid());
        assert_eq!(hdr.gso(), Ok(Gso::TcpV4 { ecn: true }));
        let basic = VirtioNetHdr::parse(&bytes, HdrLayout::Basic).unwrap();
        assert_eq!(basic.num_buffers, 0);
        assert_eq!(
            VirtioNetHdr {
                num_buffers: 0,
                ..hdr
            },
            basic
        );

        let mut out = [0xeeu8; 13];
        assert_eq!(hdr.write(&mut out, HdrLayout::MrgRxbuf), Ok(12));
        assert_eq!(&out[..12], &bytes[..]);
        assert_eq!(out[12], 0xee, "wrote past the header");
        let mut out = [0xeeu8; 12];
        assert_eq!(hdr.write(&mut out, HdrLayout::Basic), Ok(10));
        assert_eq!(&out[..10], &bytes[..10]);
        assert_eq!(&out[10..], &[0xee, 0xee]);

        let with_frame = [bytes.clone(), vec![7; 3]].concat();
        let (split, frame) = VirtioNetHdr::split(&with_frame, HdrLayout::MrgRxbuf).unwrap();
        assert_eq!((split, frame), (hdr, &[7u8, 7, 7][..]));
        assert_eq!(HdrLayout::from_len(10), Some(HdrLayout::Basic));
        assert_eq!(HdrLayout::from_len(12), Some(HdrLayout::MrgRxbuf));
        assert_eq!(HdrLayout::from_len(11), None);
    }

    #[test]
    fn short_headers_and_buffers_are_errors() {
        assert_eq!(
            VirtioNetHdr::parse(&[0; 11], HdrLayout::MrgRxbuf),
            Err(OffloadError::ShortHeader { have: 11, need: 12 })
        );
        assert_eq!(
            VirtioNetHdr::split(&[0; 9], HdrLayout::Basic).unwrap_err(),
            OffloadError::ShortHeader { have: 9, need: 10 }
        );
        let (hdr, rest) = VirtioNetHdr::split(&[0; 10], HdrLayout::Basic).unwrap();
        assert!(rest.is_empty() && !hdr.is_gso() && !hdr.needs_csum());
        let err = VirtioNetHdr::default().write(&mut [0; 10], HdrLayout::MrgRxbuf);
        assert_eq!(err, Err(OffloadError::ShortBuffer { have: 10, need: 12 }));
    }

    #[test]
    fn gso_types_decode_and_unknown_ones_are_refused() {
        let gso = |gso_type, gso_size| {
            VirtioNetHdr {
                gso_type,
                gso_size,
                ..VirtioNetHdr::default()
            }
            .gso()
        };
        assert_eq!(gso(GSO_NONE, 0), Ok(Gso::None));
        assert_eq!(gso(GSO_TCPV4, 1448), Ok(Gso::TcpV4 { ecn: false }));
        assert_eq!(gso(GSO_TCPV6 | GSO_ECN, 1428), Ok(Gso::TcpV6 { ecn: true }));
        assert_eq!(gso(GSO_UDP_L4, 1200), Ok(Gso::UdpL4));
        assert_eq!(gso(GSO_UDP, 1200), Err(OffloadError::UfoUnsupported));
        assert_eq!(
            gso(GSO_UDP_L4 | GSO_ECN, 1200),
            Err(OffloadError::EcnWithoutTcp(0x85))
        );
        assert_eq!(gso(GSO_ECN, 0), Err(OffloadError::UnknownGsoType(0x80)));
        assert_eq!(gso(2, 100), Err(OffloadError::UnknownGsoType(2)));
        assert_eq!(gso(0x46, 100), Err(OffloadError::UnknownGsoType(0x46)));
        assert_eq!(gso(GSO_TCPV4, 0), Err(OffloadError::ZeroGsoSize(1)));
        let ufo = gso(GSO_UDP, 1).unwrap_err().to_string();
        assert!(ufo.contains("UFO") && ufo.contains("UDP_L4"), "{ufo}");
    }

    #[test]
    fn checksums_match_known_values() {
        // RFC 1071, section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let rfc = hex("0001 f203 f4f5 f6f7");
        assert_eq!(fold(sum_be_words(&rfc, 0)), 0xddf2);
        // Every split, odd ones too, as long as the parts stay word-aligned.
        assert_eq!(
            fold(sum_be_words(&rfc[4..], sum_be_words(&rfc[..4], 0))),
            0xddf2
        );
        assert_eq!(
            fold(sum_be_words(&[0xab], 0)),
            0xab00,
            "an odd byte is the high half"
        );
        // The IPv4 header of the classic worked example: checksum b861.
        let mut ip = hex("4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7");
        assert_eq!(!fold(sum_be_words(&ip, 0)), 0xb861);
        put16(&mut ip, 10, 0xb861);
        assert_eq!(reference_sum(&[&ip]), 0xffff);
        // Long inputs fold their carries: 3 MiB of 0xff sums to 0xffff.
        assert_eq!(fold(sum_be_words(&vec![0xff; 3 << 20], 0)), 0xffff);
        assert_eq!(fold(sum_be_words(&[], 0)), 0);
    }

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
