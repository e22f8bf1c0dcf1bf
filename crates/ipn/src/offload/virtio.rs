//! The virtio-net header (`struct virtio_net_hdr`, virtio 1.0 §5.1.6):
//! its two forms ([`HdrLayout`]), its fields as a value
//! ([`VirtioNetHdr`]), read from and written to bytes little-endian, and
//! what its `gso_type` asks for ([`Gso`]).
//!
//! Invariants: reading never panics (a short buffer is
//! [`OffloadError::ShortHeader`]), writing never writes past the form's
//! size, and [`VirtioNetHdr::gso`] accepts only what [`super::gso`] can
//! do.

use super::OffloadError;

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
/// decodes the type, [`segment`](super::segment) checks the rest against the frame.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::test_util::hex;

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
}
