//! The bytes of `PATH/shm`: every structure another process can see.
//!
//! Layout version 5. The file is, in order:
//!
//! ```text
//! Header                      one page, written once by the creator
//! PortEntry  x max_ports      one per port slot (state, pid, counters, ...)
//! cursor     x max_ports^2    lossless only: cursor[reader][sender], u64
//! pending    x max_ports      one bitmap per reader: which senders may
//!                               have frames for it (see `pending`)
//! VlanEntry  x max_ports      each port's 802.1Q membership, and the
//!                               addresses it sends from (switch mode)
//! ring       x max_ports      one transmit ring per port slot:
//!   Descriptor x ring_slots     frame number, position, length, destination
//!   data       ring_bytes       the frames' bytes, back to back
//! ```
//!
//! Frames are variable length: a ring holds up to `ring_slots` frames and
//! `ring_bytes` bytes of them, so memory grows with the traffic a ring must
//! buffer, not with the MTU (see `ring`).
//!
//! Invariants:
//! - Every field is an atomic, padding included, because any field may be
//!   read by one process while another writes it; plain loads of racing
//!   memory would be undefined behaviour even when the value is later
//!   discarded. The types that satisfy this implement the sealed
//!   [`SharedPlain`], and only they can be reached in the mapping.
//! - Every structure is `#[repr(C)]` with its size asserted at compile time:
//!   the layout is an on-disk format shared by every build of ipn that
//!   reports the same [`LAYOUT_VERSION`].
//! - Offsets and sizes are *computed* from the validated header parameters
//!   (see [`Geometry`]); offsets stored in the header are only compared
//!   against the computed ones, never trusted.
//! - Each word has one writer (the port that owns the slot), except the
//!   `state` word (compare-and-swap with a generation number), `armed`
//!   (the owner sets it, senders swap it off), `rings` (senders add) and
//!   the pending bitmaps (senders set bits, the owner takes them).

use crate::sync::{AtomicU32, AtomicU64};

/// First eight bytes of every ipn shared file.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IPNnet\0\x01");
/// Bumped on every incompatible change of this file's layout; the test
/// `layout_version_is_pinned_to_the_sizes_and_offsets` fails until it is.
/// (2: port entries grew from 256 to 320 bytes; padding became atomic.
/// 3: variable-length frames in byte rings; pending-sender bitmaps.
/// 4: VLAN tags in descriptors and each port's VLAN membership.
/// 5: virtio-net headers (offloads) before frames that carry one.)
pub const LAYOUT_VERSION: u32 = 5;

/// Size of the header region; the port table starts here.
pub const HEADER_SIZE: u64 = 4096;
/// Size of a ring descriptor.
pub const DESCRIPTOR_SIZE: u64 = 32;
/// Frames start at multiples of this in a ring's data.
pub const FRAME_ALIGN: u64 = 8;

/// Header flag: the sender waits for the slowest live reader.
pub const FLAG_LOSSLESS: u32 = 1;

/// Smallest and largest accepted parameters. They bound every computation
/// on header values, so that a scribbled header cannot overflow the size
/// arithmetic.
pub const MIN_MTU: u32 = 64;
pub const MAX_MTU: u32 = 65535;
pub const MAX_PORTS: u32 = 4096;
pub const MIN_RING_SLOTS: u32 = 2;
pub const MAX_RING_SLOTS: u32 = 1 << 16;
#[cfg(not(loom))]
pub const MIN_RING_BYTES: u64 = 4096;
/// The model checker explores every access: its rings are tiny.
#[cfg(loom)]
pub const MIN_RING_BYTES: u64 = 64;
pub const MAX_RING_BYTES: u64 = 1 << 30;
/// Upper bound of the whole file: 64 GiB.
pub const MAX_TOTAL_SIZE: u64 = 64 << 30;

/// The creator's parameters, at the start of the file.
#[repr(C)]
pub struct Header {
    // Line 0.
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub protocol: AtomicU32,
    pub max_ports: AtomicU32,
    pub mtu: AtomicU32,
    pub ring_slots: AtomicU32,
    pub flags: AtomicU32,
    pub port_entry_size: AtomicU32,
    pub descriptor_size: AtomicU32,
    pub ring_bytes: AtomicU64,
    pub port_table_offset: AtomicU64,
    pub cursor_table_offset: AtomicU64,
    // Line 1.
    pub pending_table_offset: AtomicU64,
    pub vlan_table_offset: AtomicU64,
    pub rings_offset: AtomicU64,
    pub ring_stride: AtomicU64,
    pub total_size: AtomicU64,
    _pad0: [AtomicU64; 3],
    // Line 2.
    /// Bumped by every join, leave, shutdown and detected death, so that a
    /// port re-reads the port table only when membership changed.
    pub membership_epoch: AtomicU64,
    _pad1: [AtomicU64; 7],
}
#[cfg(not(loom))] // loom's atomics are larger than the real ones.
const _: () = assert!(std::mem::size_of::<Header>() == 192);

/// Port slot states (low byte of [`PortEntry::state`]).
pub const STATE_FREE: u64 = 0;
pub const STATE_JOINING: u64 = 1;
pub const STATE_ACTIVE: u64 = 2;
/// Found dead (its lock was free) by another port; reclaimable.
pub const STATE_DEAD: u64 = 3;

/// `caps` bits: what a port still does.
pub const CAP_READ: u32 = 1;
pub const CAP_WRITE: u32 = 2;

/// Length of a port description, in bytes (UTF-8, NUL padded).
pub const DESCRIPTION_LEN: usize = 64;

/// One port slot of the port table. Five cache lines, so that the words
/// written per frame (`head`, counters) never share a line with the words
/// other ports poll (`state`, `armed`).
#[repr(C)]
pub struct PortEntry {
    // Line 0: identity, written at join/leave/shutdown.
    /// `generation << 8 | state`.
    pub state: AtomicU64,
    pub pid: AtomicU32,
    pub caps: AtomicU32,
    /// Value of `head` when this port became active: where a reader that
    /// discovers the port later starts reading its ring.
    pub join_head: AtomicU64,
    _pad0: [AtomicU64; 5],
    // Line 1
    pub description: [AtomicU64; DESCRIPTION_LEN / 8],
    // Line 2: written by the owner for every frame it sends.
    /// Number of the next frame this port will send.
    pub head: AtomicU64,
    /// Bytes of its ring written, or about to be written, so far: a reader
    /// that copied bytes at position `p` knows they were intact if, after
    /// copying, `byte_reserve - p <= ring_bytes` (see `ring`).
    pub byte_reserve: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Frames this port sent that did not belong to its VLANs.
    pub tx_dropped: AtomicU64,
    _pad2: [AtomicU64; 3],
    // Line 3: the sleep handshake, read by every sender after every frame.
    /// 1 while the owner sleeps and wants a doorbell; a sender that swaps
    /// it to 0 must ring.
    pub armed: AtomicU32,
    _pad3: AtomicU32,
    /// Number of doorbells rung, added by senders just before each ring.
    pub rings: AtomicU64,
    _pad4: [AtomicU64; 6],
    // Line 4: receive counters, written by the owner for every frame (kept
    // off line 3 so senders polling `armed` do not miss in cache).
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub rx_dropped: AtomicU64,
    _pad5: [AtomicU64; 5],
}
#[cfg(not(loom))] // loom's atomics are larger than the real ones.
const _: () = assert!(std::mem::size_of::<PortEntry>() == 320);

/// One frame of a ring: which frame, where its bytes are, how many, and
/// for whom. A seqlock: `seq` says which frame it describes and whether
/// that frame is complete.
#[repr(C)]
pub struct Descriptor {
    /// 0: never written; `2n + 1`: frame `n` being written; `2n + 2`:
    /// frame `n` complete.
    pub seq: AtomicU64,
    /// Byte position of the frame in the ring (a multiple of
    /// [`FRAME_ALIGN`], counted from the ring's first byte ever written;
    /// taken modulo `ring_bytes` to index the data).
    pub pos: AtomicU64,
    /// Length of the frame as stored: without its 802.1Q tag.
    pub len: AtomicU32,
    /// Destination port in switch mode; [`DST_ALL`] floods.
    pub dst: AtomicU32,
    /// The frame's 802.1Q tag, taken out of its bytes: [`TAGGED`] | TCI,
    /// or 0 for an untagged frame.
    pub tag: AtomicU32,
    /// [`WITH_VNET_HDR`]: a virtio-net header (GSO, checksum offload)
    /// stands in the [`VNET_HDR_SPACE`] bytes before the frame's bytes,
    /// and the frame may be up to `offload::MAX_GSO_FRAME` bytes long.
    pub offload: AtomicU32,
}
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Descriptor>() as u64 == DESCRIPTOR_SIZE);

pub const DST_ALL: u32 = u32::MAX;
/// Bit of [`Descriptor::tag`] that says the frame is tagged.
pub const TAGGED: u32 = 1 << 16;
/// Bit of [`Descriptor::offload`]: a virtio-net header precedes the frame.
pub const WITH_VNET_HDR: u32 = 1;
/// Bytes a virtio-net header takes in a ring, before its frame (the
/// 10-byte header, rounded to the frame alignment).
pub const VNET_HDR_SPACE: u64 = 16;

/// `VlanEntry::mode` values.
pub const VLAN_TRANSPARENT: u32 = 0;
pub const VLAN_ACCESS: u32 = 1;
pub const VLAN_TRUNK: u32 = 2;
/// Most source addresses a port publishes (switch mode).
pub const PUBLISHED_ADDRESSES: usize = 16;

/// A port's 802.1Q membership and, in switch mode, the addresses it sends
/// from, for `ipn status`. Written by the owner only; nobody routes by it
/// (each port keeps its own membership privately), so a scribble misleads
/// only `status`.
#[repr(C)]
pub struct VlanEntry {
    /// `VLAN_TRANSPARENT`, `VLAN_ACCESS` or `VLAN_TRUNK`.
    pub mode: AtomicU32,
    /// The access VLAN, or the trunk's native VLAN (0: none).
    pub vid: AtomicU32,
    /// How many of `addresses` are set (at most [`PUBLISHED_ADDRESSES`];
    /// the newest replaces the oldest beyond that).
    pub address_count: AtomicU64,
    _pad0: [AtomicU64; 6],
    /// The trunk's VLANs: bit `v % 64` of word `v / 64`.
    pub trunk: [AtomicU64; 64],
    /// `vid << 48 | mac` of each (VLAN, source address) sent from, with
    /// `vid` 0xffff for untagged frames.
    pub addresses: [AtomicU64; PUBLISHED_ADDRESSES],
}
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<VlanEntry>() == 704);

#[cfg_attr(loom, allow(dead_code))] // the loom build maps nothing
mod sealed {
    pub trait Sealed {}
}

/// Plain words that another process may write at any moment: the only
/// types `SharedFile` hands out references to inside the mapping.
///
/// # Safety
///
/// Implement only for `#[repr(C)]` types made of nothing but atomics,
/// padding included (no implicit padding either: the size assertions above
/// equal the sum of the fields), so that every bit pattern is a valid value,
/// no byte is ever accessed non-atomically, and any alignment the type
/// needs is at most 8. Sealed: no other module can add a type.
#[cfg_attr(loom, allow(dead_code))]
pub unsafe trait SharedPlain: sealed::Sealed {}

macro_rules! shared_plain {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        // SAFETY: each of these is `#[repr(C)]`, built only of `AtomicU32`
        // and `AtomicU64` (arrays included), with its size asserted equal
        // to the sum of its fields; atomics are valid for any bit pattern.
        unsafe impl SharedPlain for $t {}
    )*};
}
shared_plain!(Header, PortEntry, Descriptor, VlanEntry, AtomicU64, AtomicU32);

/// All-zero structures, as in a freshly sized file, for the in-memory
/// backend of the loom model checker: loom's atomics cannot be cast from
/// memory, they must be constructed.
#[cfg(loom)]
#[cfg_attr(not(test), allow(dead_code))] // used by loom_tests only
mod zeroed {
    use super::*;

    fn z64() -> AtomicU64 {
        AtomicU64::new(0)
    }

    fn z32() -> AtomicU32 {
        AtomicU32::new(0)
    }

    impl Header {
        pub fn zeroed() -> Header {
            Header {
                magic: z64(),
                version: z32(),
                protocol: z32(),
                max_ports: z32(),
                mtu: z32(),
                ring_slots: z32(),
                flags: z32(),
                port_entry_size: z32(),
                descriptor_size: z32(),
                ring_bytes: z64(),
                port_table_offset: z64(),
                cursor_table_offset: z64(),
                pending_table_offset: z64(),
                vlan_table_offset: z64(),
                rings_offset: z64(),
                ring_stride: z64(),
                total_size: z64(),
                _pad0: std::array::from_fn(|_| z64()),
                membership_epoch: z64(),
                _pad1: std::array::from_fn(|_| z64()),
            }
        }
    }

    impl PortEntry {
        pub fn zeroed() -> PortEntry {
            PortEntry {
                state: z64(),
                pid: z32(),
                caps: z32(),
                join_head: z64(),
                _pad0: std::array::from_fn(|_| z64()),
                description: std::array::from_fn(|_| z64()),
                head: z64(),
                byte_reserve: z64(),
                tx_frames: z64(),
                tx_bytes: z64(),
                tx_dropped: z64(),
                _pad2: std::array::from_fn(|_| z64()),
                armed: z32(),
                _pad3: z32(),
                rings: z64(),
                _pad4: std::array::from_fn(|_| z64()),
                rx_frames: z64(),
                rx_bytes: z64(),
                rx_dropped: z64(),
                _pad5: std::array::from_fn(|_| z64()),
            }
        }
    }

    impl Descriptor {
        pub fn zeroed() -> Descriptor {
            Descriptor {
                seq: z64(),
                pos: z64(),
                len: z32(),
                dst: z32(),
                tag: z32(),
                offload: z32(),
            }
        }
    }

    impl VlanEntry {
        pub fn zeroed() -> VlanEntry {
            VlanEntry {
                mode: z32(),
                vid: z32(),
                address_count: z64(),
                _pad0: std::array::from_fn(|_| z64()),
                trunk: std::array::from_fn(|_| z64()),
                addresses: std::array::from_fn(|_| z64()),
            }
        }
    }
}

/// Sequence word of a descriptor while frame `n` is being written.
pub const fn seq_writing(n: u64) -> u64 {
    n.wrapping_mul(2).wrapping_add(1)
}

/// Sequence word of a descriptor once frame `n` is complete.
pub const fn seq_done(n: u64) -> u64 {
    n.wrapping_mul(2).wrapping_add(2)
}

/// Where everything is, computed from the (validated) parameters. Every
/// process computes the same values from the same parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub protocol: u32,
    pub max_ports: u32,
    pub mtu: u32,
    pub ring_slots: u32,
    pub ring_bytes: u64,
    pub flags: u32,
    pub port_table_offset: u64,
    pub cursor_table_offset: u64,
    pub pending_table_offset: u64,
    /// Bytes of one reader's pending bitmap (a whole number of cache lines).
    pub pending_stride: u64,
    pub vlan_table_offset: u64,
    pub rings_offset: u64,
    /// Bytes from one port's ring to the next: descriptors, then data.
    pub ring_stride: u64,
    /// Offset of the data within a ring (after the descriptors, page aligned).
    pub ring_data_offset: u64,
    pub total_size: u64,
}

/// Why a set of parameters cannot describe a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeometryError {
    Ports(u32),
    Mtu(u32),
    RingSlots(u32),
    /// Not a power of two in range, or not room for two largest frames.
    RingBytes {
        bytes: u64,
        least: u64,
    },
    TooLarge(u64),
}

impl Geometry {
    /// The smallest ring that holds two frames of `mtu` bytes (so that a
    /// sender can always make progress), and a page.
    pub fn least_ring_bytes(mtu: u32) -> u64 {
        (2 * round_up(u64::from(mtu), FRAME_ALIGN))
            .next_power_of_two()
            .max(MIN_RING_BYTES)
    }

    /// The ring size a network gets when none is asked for: 256 KiB, or
    /// four frames of `mtu` bytes if that is more.
    pub fn default_ring_bytes(mtu: u32) -> u64 {
        (4 * round_up(u64::from(mtu), FRAME_ALIGN))
            .next_power_of_two()
            .max(256 << 10)
    }

    /// The descriptors a ring gets when none are asked for: 256, or one
    /// per KiB of `ring_bytes` if that is more (at most the largest
    /// ring). A ring holds no more frames than it has descriptors: 4 MiB
    /// behind 256 of them would hold 256 frames of 64 bytes, 16 KiB, a
    /// third of a millisecond of a 64-byte flood, and a reader that lost
    /// its CPU for longer would be lapped.
    pub fn default_ring_slots(ring_bytes: u64) -> u32 {
        let per_kib = (ring_bytes >> 10).min(u64::from(MAX_RING_SLOTS)) as u32;
        // Rounded down to a power of two, so that a byte size that is not
        // one is refused for what it is, not for the count it gave.
        let per_kib = match per_kib.checked_ilog2() {
            Some(log) => 1 << log,
            None => 0,
        };
        per_kib.max(256)
    }

    pub fn compute(
        protocol: u32,
        max_ports: u32,
        mtu: u32,
        ring_slots: u32,
        ring_bytes: u64,
        flags: u32,
    ) -> Result<Geometry, GeometryError> {
        if max_ports == 0 || max_ports > MAX_PORTS {
            return Err(GeometryError::Ports(max_ports));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(GeometryError::Mtu(mtu));
        }
        if !(MIN_RING_SLOTS..=MAX_RING_SLOTS).contains(&ring_slots) || !ring_slots.is_power_of_two()
        {
            return Err(GeometryError::RingSlots(ring_slots));
        }
        let least = Self::least_ring_bytes(mtu);
        if !(least..=MAX_RING_BYTES).contains(&ring_bytes) || !ring_bytes.is_power_of_two() {
            return Err(GeometryError::RingBytes {
                bytes: ring_bytes,
                least,
            });
        }
        // All products below are of values bounded above, so they fit in
        // u64 by a wide margin (4096 * (2^21 + 2^30) < 2^43).
        let ports = u64::from(max_ports);
        let port_table_offset = HEADER_SIZE;
        let cursor_table_offset =
            port_table_offset + ports * std::mem::size_of::<PortEntry>() as u64;
        let cursor_table_size = if flags & FLAG_LOSSLESS != 0 {
            round_up(ports * ports * 8, 4096)
        } else {
            0
        };
        let pending_table_offset = round_up(cursor_table_offset + cursor_table_size, 4096);
        let pending_stride = round_up(ports.div_ceil(64) * 8, 64);
        let vlan_table_offset = round_up(pending_table_offset + ports * pending_stride, 64);
        let vlan_table_size = ports * std::mem::size_of::<VlanEntry>() as u64;
        let rings_offset = round_up(vlan_table_offset + vlan_table_size, 4096);
        let ring_data_offset = round_up(u64::from(ring_slots) * DESCRIPTOR_SIZE, 4096);
        let ring_stride = ring_data_offset + ring_bytes;
        let total_size = rings_offset + ports * ring_stride;
        if total_size > MAX_TOTAL_SIZE {
            return Err(GeometryError::TooLarge(total_size));
        }
        Ok(Geometry {
            protocol,
            max_ports,
            mtu,
            ring_slots,
            ring_bytes,
            flags,
            port_table_offset,
            cursor_table_offset,
            pending_table_offset,
            pending_stride,
            vlan_table_offset,
            rings_offset,
            ring_stride,
            ring_data_offset,
            total_size,
        })
    }

    pub fn lossless(&self) -> bool {
        self.flags & FLAG_LOSSLESS != 0
    }

    /// Number of `u64` data words in a ring.
    pub fn ring_words(&self) -> usize {
        (self.ring_bytes / 8) as usize
    }

    /// Number of `u64` words in a reader's pending bitmap that hold bits.
    pub fn pending_words(&self) -> usize {
        self.max_ports.div_ceil(64) as usize
    }
}

/// `value` rounded up to a multiple of `to`.
pub fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

/// Byte offsets inside the file, for tests that scribble on it and tools
/// that inspect it (re-exported, hidden, as `ipn::raw_layout`). Derived
/// from the structures, so they follow every change of the layout.
#[cfg(not(loom))]
#[allow(missing_docs)] // each name says which field it locates
pub mod offsets {
    use super::*;
    use std::mem::{offset_of, size_of};

    pub const HEADER_SIZE: u64 = super::HEADER_SIZE;
    pub const HEADER_VERSION: u64 = offset_of!(Header, version) as u64;
    pub const HEADER_PROTOCOL: u64 = offset_of!(Header, protocol) as u64;
    pub const HEADER_MTU: u64 = offset_of!(Header, mtu) as u64;
    pub const HEADER_RING_SLOTS: u64 = offset_of!(Header, ring_slots) as u64;
    pub const HEADER_RING_BYTES: u64 = offset_of!(Header, ring_bytes) as u64;
    pub const HEADER_CURSOR_TABLE_OFFSET: u64 = offset_of!(Header, cursor_table_offset) as u64;
    pub const HEADER_PENDING_TABLE_OFFSET: u64 = offset_of!(Header, pending_table_offset) as u64;
    pub const HEADER_RINGS_OFFSET: u64 = offset_of!(Header, rings_offset) as u64;
    pub const HEADER_RING_STRIDE: u64 = offset_of!(Header, ring_stride) as u64;
    /// The port table starts right after the header page.
    pub const PORT_TABLE: u64 = super::HEADER_SIZE;
    pub const PORT_ENTRY_SIZE: u64 = size_of::<PortEntry>() as u64;
    pub const PORT_ENTRY_WORDS: u64 = PORT_ENTRY_SIZE / 8;
    pub const ENTRY_STATE: u64 = offset_of!(PortEntry, state) as u64;
    pub const ENTRY_HEAD: u64 = offset_of!(PortEntry, head) as u64;
    pub const ENTRY_BYTE_RESERVE: u64 = offset_of!(PortEntry, byte_reserve) as u64;
    pub const ENTRY_ARMED: u64 = offset_of!(PortEntry, armed) as u64;
    pub const ENTRY_RINGS: u64 = offset_of!(PortEntry, rings) as u64;
    pub const HEADER_VLAN_TABLE_OFFSET: u64 = offset_of!(Header, vlan_table_offset) as u64;
    pub const VLAN_ENTRY_SIZE: u64 = size_of::<VlanEntry>() as u64;
    pub const DESCRIPTOR_SIZE: u64 = super::DESCRIPTOR_SIZE;
    pub const DESCRIPTOR_POS: u64 = offset_of!(Descriptor, pos) as u64;
    pub const DESCRIPTOR_LEN: u64 = offset_of!(Descriptor, len) as u64;
    pub const DESCRIPTOR_TAG: u64 = offset_of!(Descriptor, tag) as u64;
    pub const DESCRIPTOR_OFFLOAD: u64 = offset_of!(Descriptor, offload) as u64;
    /// Bit of the descriptor's tag word: the frame is 802.1Q-tagged.
    pub const DESCRIPTOR_TAGGED: u32 = super::TAGGED;
    /// Bit of the descriptor's offload word: a virtio-net header precedes.
    pub const DESCRIPTOR_WITH_VNET_HDR: u32 = super::WITH_VNET_HDR;
    pub const VNET_HDR_SPACE: u64 = super::VNET_HDR_SPACE;
    /// Where a ring's data starts, from the ring's start, for `ring_slots`.
    pub fn ring_data_offset(ring_slots: u64) -> u64 {
        round_up(ring_slots * super::DESCRIPTOR_SIZE, 4096)
    }
    /// Where the per-slot liveness locks start (beyond the end of the file).
    pub const LOCK_BASE: u64 = crate::liveness::LOCK_BASE as u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_rejects_out_of_range_parameters() {
        let bytes = 256 << 10;
        assert_eq!(
            Geometry::compute(0, 0, 1514, 256, bytes, 0),
            Err(GeometryError::Ports(0))
        );
        assert_eq!(
            Geometry::compute(0, 8, 63, 256, bytes, 0),
            Err(GeometryError::Mtu(63))
        );
        assert_eq!(
            Geometry::compute(0, 8, 1514, 100, bytes, 0),
            Err(GeometryError::RingSlots(100))
        );
        assert_eq!(
            Geometry::compute(0, 8, 65535, 256, 65536, 0),
            Err(GeometryError::RingBytes {
                bytes: 65536,
                least: 131072
            })
        );
        assert!(matches!(
            Geometry::compute(0, 8, 1514, 256, 3 << 12, 0),
            Err(GeometryError::RingBytes { .. })
        ));
        assert!(matches!(
            Geometry::compute(0, 4096, 65535, 65536, MAX_RING_BYTES, 0),
            Err(GeometryError::TooLarge(_))
        ));
    }

    /// Two builds that report the same layout version must agree on every
    /// byte: change a size or an offset here and this fails until
    /// `LAYOUT_VERSION` is bumped and the pin updated with it.
    #[test]
    #[cfg(not(loom))]
    fn layout_version_is_pinned_to_the_sizes_and_offsets() {
        use std::mem::{offset_of, size_of};
        let layout = [
            u64::from(LAYOUT_VERSION),
            HEADER_SIZE,
            size_of::<Header>() as u64,
            offset_of!(Header, ring_bytes) as u64,
            offset_of!(Header, pending_table_offset) as u64,
            offset_of!(Header, membership_epoch) as u64,
            size_of::<PortEntry>() as u64,
            offset_of!(PortEntry, description) as u64,
            offset_of!(PortEntry, head) as u64,
            offset_of!(PortEntry, byte_reserve) as u64,
            offset_of!(PortEntry, tx_dropped) as u64,
            offset_of!(PortEntry, armed) as u64,
            offset_of!(PortEntry, rx_frames) as u64,
            size_of::<Descriptor>() as u64,
            offset_of!(Descriptor, len) as u64,
            offset_of!(Descriptor, tag) as u64,
            offset_of!(Descriptor, offload) as u64,
            size_of::<VlanEntry>() as u64,
            offset_of!(VlanEntry, trunk) as u64,
            offset_of!(VlanEntry, addresses) as u64,
            FRAME_ALIGN,
        ];
        assert_eq!(
            layout,
            [
                5, 4096, 192, 40, 64, 128, 320, 64, 128, 136, 160, 192, 256, 32, 16, 24, 28, 704,
                64, 576, 8
            ],
            "the shared file's layout changed: bump LAYOUT_VERSION and update this pin with it"
        );
    }

    #[test]
    fn geometry_places_regions_in_order_and_aligned() {
        let g = Geometry::compute(0, 64, 1514, 256, 256 << 10, FLAG_LOSSLESS).unwrap();
        assert!(g.cursor_table_offset >= g.port_table_offset + 64 * 320);
        assert!(g.pending_table_offset >= g.cursor_table_offset + 64 * 64 * 8);
        assert!(g.vlan_table_offset >= g.pending_table_offset + 64 * g.pending_stride);
        assert!(g.rings_offset >= g.vlan_table_offset + 64 * 704);
        assert_eq!(g.pending_stride % 64, 0);
        assert_eq!(g.rings_offset % 4096, 0);
        assert_eq!(g.ring_stride % 4096, 0);
        assert_eq!(g.total_size, g.rings_offset + 64 * g.ring_stride);
    }

    /// Memory no longer grows with the MTU: a 64-port network at MTU 65535
    /// fits in 128 MiB, and the default network is no larger than with
    /// fixed MTU-sized slots.
    #[test]
    fn memory_follows_the_ring_not_the_mtu() {
        let jumbo =
            Geometry::compute(0, 64, 65535, 256, Geometry::default_ring_bytes(65535), 0).unwrap();
        assert!(jumbo.total_size <= 128 << 20, "{}", jumbo.total_size);
        let default =
            Geometry::compute(0, 64, 1514, 256, Geometry::default_ring_bytes(1514), 0).unwrap();
        let fixed_slots = 64 * 256 * round_up(16 + 1514, 64);
        assert!(default.total_size <= fixed_slots, "{}", default.total_size);
    }

    /// Without a count, a ring gets one descriptor per KiB of its bytes,
    /// never fewer than 256 nor more than the largest ring.
    #[test]
    fn ring_slots_follow_ring_bytes() {
        assert_eq!(Geometry::default_ring_slots(4096), 256);
        assert_eq!(Geometry::default_ring_slots(256 << 10), 256);
        assert_eq!(
            Geometry::default_ring_slots(Geometry::default_ring_bytes(1514)),
            256
        );
        assert_eq!(Geometry::default_ring_slots(4 << 20), 4096);
        assert_eq!(Geometry::default_ring_slots(1 << 30), MAX_RING_SLOTS);
        assert_eq!(Geometry::default_ring_slots(3 << 20), 2048);
    }
}
