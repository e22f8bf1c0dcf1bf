//! Transmit rings: how one sender hands variable-length frames to any
//! number of readers.
//!
//! Every port owns one ring and is its only writer. A ring is
//! `ring_slots` descriptors and `ring_bytes` bytes of data. Frame number
//! `n` is described by descriptor `n % ring_slots`; its bytes follow the
//! previous frame's in the data (at a multiple of 8, wrapping around at the
//! end), so a 64-byte frame takes 64 bytes, not an MTU. Positions are
//! counted in bytes since the ring's first frame and never wrap in
//! practice (u64); the data index is the position modulo `ring_bytes`.
//!
//! Two seqlocks keep a reader from delivering a torn frame:
//!
//! ```text
//! writer:  desc.seq = 2n+1; byte_reserve = end of frame n; fence(Release)
//!          bytes; desc.pos, len, dst; desc.seq = 2n+2 (Release); head = n+1
//! reader:  s1 = desc.seq (Acquire); pos, len, dst; copy bytes; fence(Acquire)
//!          the copy is frame n iff s1 == desc.seq == 2n+2
//!          and byte_reserve - pos <= ring_bytes (no byte was overwritten)
//! ```
//!
//! The descriptor's sequence word says the descriptor describes frame n;
//! the writer's `byte_reserve`, raised before any byte is overwritten, says
//! whether the bytes it points to still hold that frame: a reader that saw
//! any byte of a later frame also sees the reserve that announced it.
//!
//! A reader keeps its own cursor (the next frame number it wants) per
//! sender. If the descriptor already describes a later frame, the reader
//! was lapped: it jumps forward to half a ring behind the writer and counts
//! what it skipped as drops. A frame whose bytes were overwritten (the ring
//! holds fewer large frames than descriptors) is skipped and counted too.
//! In a lossless network the sender never overwrites what a live reader has
//! not read (it waits, see `port::send`), so lapping there means only that
//! the reader joined or was found dead mid-stream.
//!
//! Everything read here may have been scribbled on by another process:
//! lengths are checked against the MTU (only a frame whose virtio-net
//! header says GSO may be longer), positions against the alignment,
//! position and sequence arithmetic wraps, and data indexes are taken
//! modulo the ring.

use crate::ethernet::{Egress, Frame, Mac, Tci, Vlan, ADDRESSES_LEN, HEADER_LEN, TAG_LEN};
use crate::offload::{HdrLayout, VirtioNetHdr, MAX_GSO_FRAME};
use crate::shm::layout::{
    round_up, seq_done, seq_writing, DST_ALL, FRAME_ALIGN, TAGGED, VNET_HDR_SPACE, WITH_VNET_HDR,
};
use crate::shm::SharedFile;
use crate::sync::{fence, AtomicU64, Ordering};

/// The writing side of a port's own ring: where the next frame goes, and
/// where each frame still in the ring starts (for lossless room).
#[derive(Debug)]
pub struct TxRing {
    /// Number of the next frame.
    head: u64,
    /// Position of the next frame's first byte.
    byte_head: u64,
    /// Position of frame `n` at `n % ring_slots`, for the frames still in
    /// the ring. Ours alone: never read back from shared memory.
    positions: Vec<u64>,
}

impl TxRing {
    /// Continues the ring of slot `index` where its previous occupant left
    /// it (readers' cursors for a slot run on across occupants). Any value
    /// works: all ring arithmetic is modulo 2^64, and a byte position that
    /// is not a multiple of 8 is rounded up.
    pub fn resume(shm: &SharedFile, index: u32) -> TxRing {
        let entry = shm.port(index);
        let head = entry.head.load(Ordering::Acquire);
        let reserve = entry.byte_reserve.load(Ordering::Acquire);
        let byte_head = reserve.wrapping_add(FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1);
        TxRing {
            head,
            byte_head,
            positions: vec![byte_head; shm.geometry().ring_slots as usize],
        }
    }

    /// Number of the next frame.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Bytes of the ring a frame of `len` bytes takes, with a virtio-net
    /// header before it if `with_hdr`.
    pub fn footprint(len: usize, with_hdr: bool) -> u64 {
        round_up(len as u64, FRAME_ALIGN) + if with_hdr { VNET_HDR_SPACE } else { 0 }
    }

    /// Index of frame `n` in `positions`: `n % ring_slots`, a power of
    /// two (the geometry checks), by mask, not a division per frame.
    fn slot(&self, n: u64) -> usize {
        (n & (self.positions.len() as u64 - 1)) as usize
    }

    /// Bytes between where frame `n` (at most a ring behind the head)
    /// starts and where the next frame will; frames before our time count
    /// as starting at the first byte we wrote.
    pub fn bytes_since(&self, n: u64) -> u64 {
        let slots = self.positions.len() as u64;
        if self.head.wrapping_sub(n) > slots || n == self.head {
            return 0;
        }
        self.byte_head.wrapping_sub(self.positions[self.slot(n)])
    }

    /// Writes the next frame (`frame.len() <= mtu`, or with a header up to
    /// `MAX_GSO_FRAME`, checked by the caller, as is, in a lossless network,
    /// that every reader has the room), its 802.1Q tag (taken out of
    /// `frame`, which is stored untagged) in the descriptor, and its
    /// virtio-net header, if any, just before its bytes.
    pub fn write(
        &mut self,
        shm: &SharedFile,
        sender: u32,
        frame: &[u8],
        dst: u32,
        tag: Option<Tci>,
        hdr: Option<&VirtioNetHdr>,
    ) {
        let n = self.head;
        let start = self.byte_head;
        let pos = start.wrapping_add(if hdr.is_some() { VNET_HDR_SPACE } else { 0 });
        let end = start.wrapping_add(Self::footprint(frame.len(), hdr.is_some()));
        let entry = shm.port(sender);
        let desc = shm.descriptor(sender, n);
        desc.seq.store(seq_writing(n), Ordering::Relaxed);
        entry.byte_reserve.store(end, Ordering::Relaxed);
        fence(Ordering::Release);
        let data = shm.ring_data(sender);
        if let Some(hdr) = hdr {
            let mut space = [0u8; VNET_HDR_SPACE as usize];
            space[..12].copy_from_slice(&hdr.to_bytes());
            store_bytes(data, start, &space);
        }
        store_bytes(data, pos, frame);
        desc.pos.store(pos, Ordering::Relaxed);
        desc.len.store(frame.len() as u32, Ordering::Relaxed);
        desc.dst.store(dst, Ordering::Relaxed);
        desc.tag.store(
            tag.map_or(0, |t| TAGGED | u32::from(t.0)),
            Ordering::Relaxed,
        );
        desc.offload.store(
            if hdr.is_some() { WITH_VNET_HDR } else { 0 },
            Ordering::Relaxed,
        );
        desc.seq.store(seq_done(n), Ordering::Release);
        entry.head.store(n.wrapping_add(1), Ordering::Release);
        let slot = self.slot(n);
        self.positions[slot] = start;
        self.head = n.wrapping_add(1);
        self.byte_head = end;
    }
}

/// Result of trying to read the frame at a reader's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A frame of `len` bytes as delivered (of which `min(len, buf.len())`
    /// were copied), in VLAN `tag` on the network, with its virtio-net
    /// header if it has one (offsets counted in the frame as delivered).
    Frame {
        len: usize,
        tag: Option<Tci>,
        /// Delivered with its tag in its bytes (`len` counts it).
        tagged: bool,
        hdr: Option<VirtioNetHdr>,
        /// The frame went into the reader's `gso_buf`, not `buf`: it has a
        /// header and the reader does not take offloads (see [`Filter`]).
        in_gso_buf: bool,
    },
    /// The sender has not written that frame yet.
    Empty,
    /// The sender overwrote it: the cursor moved forward by `skipped`.
    Lapped { skipped: u64 },
    /// A frame for another port (switch mode) or another VLAN: only its
    /// Ethernet source address was read, so the reader can learn where it
    /// lives.
    NotForUs { source: Mac, tag: Option<Tci> },
    /// A frame for us larger than the MTU without being GSO: no sender
    /// writes one (`port::send` refuses it), a member scribbling on the
    /// descriptor can. The cursor moved past it; it is not delivered.
    OverMtu,
}

/// Which frames a reader takes: all, or (switch mode) those addressed to
/// `me` or flooded; and by its VLAN membership, with or without their tag.
/// A reader that does not take `offload`s gets frames with a virtio-net
/// header in its `gso_buf`, whole, to segment them.
#[derive(Debug, Clone, Copy)]
pub struct Filter<'a> {
    pub me: Option<u32>,
    pub vlan: &'a Vlan,
    pub offload: bool,
}

/// Reads the frame at `*cursor` from `sender`'s ring into `buf`, advancing
/// the cursor past it (or past what was lost). A frame `filter` refuses is
/// not copied and gives [`Read::NotForUs`]. A frame delivered with its
/// 802.1Q tag gets the tag back in its bytes, 4 bytes longer.
pub fn read_frame_for(
    shm: &SharedFile,
    sender: u32,
    cursor: &mut u64,
    buf: &mut [u8],
    gso_buf: &mut Vec<u8>,
    filter: Filter<'_>,
) -> Read {
    let n = *cursor;
    let desc = shm.descriptor(sender, n);
    let before = desc.seq.load(Ordering::Acquire);
    if before != seq_done(n) {
        if is_before(before, seq_done(n)) {
            return Read::Empty;
        }
        return lapped(shm, sender, cursor);
    }
    let g = shm.geometry();
    let pos = desc.pos.load(Ordering::Relaxed);
    let len = desc.len.load(Ordering::Relaxed) as usize;
    let dst = desc.dst.load(Ordering::Relaxed);
    let tag_word = desc.tag.load(Ordering::Relaxed);
    let tag = (tag_word & TAGGED != 0).then_some(Tci(tag_word as u16));
    let with_hdr = desc.offload.load(Ordering::Relaxed) & WITH_VNET_HDR != 0;
    // Up to the MTU, or with a header up to the largest GSO frame (if the
    // header says GSO: checked below, once the header is read).
    let longest = if with_hdr {
        MAX_GSO_FRAME
    } else {
        g.mtu as usize
    };
    if len == 0 || len > longest || !pos.is_multiple_of(FRAME_ALIGN) {
        // No writer makes such a descriptor: scribbled. Skip the frame.
        return lapped(shm, sender, cursor);
    }
    let data = shm.ring_data(sender);
    let egress = filter.vlan.egress(tag);
    let for_us = egress != Egress::Skip && filter.me.is_none_or(|me| dst == DST_ALL || dst == me);
    let start = pos.wrapping_sub(if with_hdr { VNET_HDR_SPACE } else { 0 });
    let mut hdr_bytes = [0u8; VNET_HDR_SPACE as usize];
    if for_us && with_hdr {
        load_bytes(data, start, hdr_bytes.len(), &mut hdr_bytes);
    }
    let in_gso_buf = for_us && with_hdr && !filter.offload;
    let buf = if in_gso_buf {
        gso_buf.resize(len + TAG_LEN, 0);
        &mut gso_buf[..]
    } else {
        buf
    };
    // Enough for an Ethernet header with a tag.
    let mut header = [0u8; HEADER_LEN + TAG_LEN];
    let delivered = match (for_us, egress, tag) {
        (true, Egress::AsIs, Some(tci)) => {
            load_tagged(data, pos, len, tci, buf);
            len + TAG_LEN
        }
        (true, _, _) => {
            load_bytes(data, pos, len.min(buf.len()), buf);
            len
        }
        (false, _, _) => {
            load_bytes(data, pos, len.min(header.len()), &mut header);
            len
        }
    };
    fence(Ordering::Acquire);
    let intact = desc.seq.load(Ordering::Relaxed) == before
        && shm
            .port(sender)
            .byte_reserve
            .load(Ordering::Relaxed)
            .wrapping_sub(start)
            <= g.ring_bytes;
    if !intact {
        // Overwritten while we copied, or before: the lapped case.
        return lapped(shm, sender, cursor);
    }
    *cursor = n.wrapping_add(1);
    if for_us {
        let hdr = with_hdr
            .then(|| VirtioNetHdr::parse(&hdr_bytes, HdrLayout::Basic).ok())
            .flatten();
        // Only a GSO frame may be longer than the MTU: it stands for frames
        // within it (cut for readers without offloads, checked then).
        if len > g.mtu as usize && !hdr.is_some_and(|hdr| hdr.is_gso()) {
            return Read::OverMtu;
        }
        let hdr = hdr.map(|mut hdr| {
            if delivered > len {
                // The tag was put back: offsets move past it.
                hdr.shift_offsets(TAG_LEN as i32);
            }
            hdr
        });
        Read::Frame {
            len: delivered,
            tag,
            tagged: delivered > len,
            hdr,
            in_gso_buf,
        }
    } else {
        // A frame too short for an Ethernet header has no source to learn.
        let source =
            Frame::new_checked(&header[..len.min(header.len())]).map_or([0; 6], |f| f.src());
        Read::NotForUs { source, tag }
    }
}

/// Whether sequence word `a` comes before `b` (wrapping comparison).
fn is_before(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) < 0
}

fn lapped(shm: &SharedFile, sender: u32, cursor: &mut u64) -> Read {
    let head = shm.port(sender).head.load(Ordering::Acquire);
    let slots = u64::from(shm.geometry().ring_slots);
    // Resume half a ring behind the writer: resuming at the oldest frame
    // left would put the reader right where the writer writes next, to be
    // lapped again at once.
    let oldest = head.wrapping_sub((slots / 2).max(1));
    if is_before(*cursor, oldest) {
        let skipped = oldest.wrapping_sub(*cursor);
        *cursor = oldest;
        return Read::Lapped { skipped };
    }
    // The head says we are not behind but the frame is gone or bad: the
    // ring is inconsistent (scribbled, a writer died mid-frame, or its bytes
    // were overwritten by larger later frames). Step over the one frame so
    // the reader never spins on it, but never past the head: beyond it
    // there is nothing to read yet, whatever descriptors say.
    if is_before(*cursor, head) {
        *cursor = cursor.wrapping_add(1);
        Read::Lapped { skipped: 1 }
    } else {
        Read::Empty
    }
}

/// Index of the data word holding byte position `pos` (a multiple of 8);
/// the number of words is a power of two.
fn word_index(data: &[AtomicU64], pos: u64) -> usize {
    (pos / 8) as usize & (data.len() - 1)
}

/// Copies `frame` into the ring's data from byte position `pos`, wrapping
/// around at the end, with relaxed atomic stores.
fn store_bytes(data: &[AtomicU64], pos: u64, frame: &[u8]) {
    let mut index = word_index(data, pos);
    let mut chunks = frame.chunks_exact(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        data[index].store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        index = (index + 1) & (data.len() - 1);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut bytes = [0u8; 8];
        bytes[..rest.len()].copy_from_slice(rest);
        data[index].store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
    }
}

/// Copies a frame of `len` stored bytes into `buf` with its tag put back
/// after the addresses (as much as fits in `buf`).
fn load_tagged(data: &[AtomicU64], pos: u64, len: usize, tci: Tci, buf: &mut [u8]) {
    let addresses = ADDRESSES_LEN.min(len).min(buf.len());
    load_bytes(data, pos, addresses, buf);
    if buf.len() > ADDRESSES_LEN {
        let room = (buf.len() - ADDRESSES_LEN).min(TAG_LEN);
        buf[ADDRESSES_LEN..ADDRESSES_LEN + room].copy_from_slice(&tci.to_bytes()[..room]);
    }
    if let Some(rest) = buf.get_mut(ADDRESSES_LEN + TAG_LEN..) {
        let n = (len - addresses).min(rest.len());
        load_from(data, pos, addresses, &mut rest[..n]);
    }
}

/// Copies frame bytes `from..from + out.len()` (any offset) from the
/// frame at byte position `pos` into `out`.
fn load_from(data: &[AtomicU64], pos: u64, from: usize, out: &mut [u8]) {
    // Positions wrap (any value, the module doc): the sum too.
    let mut index = word_index(data, pos.wrapping_add((from / 8 * 8) as u64));
    let mut skip = from % 8;
    let mut done = 0;
    while done < out.len() {
        let bytes = data[index].load(Ordering::Relaxed).to_ne_bytes();
        let n = (8 - skip).min(out.len() - done);
        out[done..done + n].copy_from_slice(&bytes[skip..skip + n]);
        done += n;
        skip = 0;
        index = (index + 1) & (data.len() - 1);
    }
}

/// Copies `len` bytes from byte position `pos` of the ring's data into
/// `buf[..len]`, wrapping around at the end.
fn load_bytes(data: &[AtomicU64], pos: u64, len: usize, buf: &mut [u8]) {
    let mut index = word_index(data, pos);
    let mut chunks = buf[..len].chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&data[index].load(Ordering::Relaxed).to_ne_bytes());
        index = (index + 1) & (data.len() - 1);
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let bytes = data[index].load(Ordering::Relaxed).to_ne_bytes();
        let n = rest.len();
        rest.copy_from_slice(&bytes[..n]);
    }
}
