//! The mapped shared file: the only module of ipn with `unsafe` code.
//!
//! [`SharedFile`] owns one `MAP_SHARED` mapping of `PATH/shm` and hands out
//! shared references to the atomics inside it ([`layout`]). It guarantees:
//!
//! - the mapping covers [`Geometry::total_size`] bytes, and the geometry was
//!   computed by this process from header values that passed [`validate`];
//!   it is never re-read from the file, so a peer scribbling on the header
//!   later cannot move any offset;
//! - every reference it returns lies inside the mapping, is aligned for its
//!   type, and refers only to atomics, so concurrent access from other
//!   processes is never a data race in the Rust memory model (the tables
//!   every frame touches, ports, cursors, pending bitmaps and rings, are
//!   checked once, when mapped, so that an access is a slice index: see
//!   `Tables`; the header and VLAN entries at each access);
//! - the mapping outlives every reference (they borrow `&self`).
//!
//! - the file's blocks are allocated when it is created, so a file system
//!   too small for it fails then, with an error, not at a later page fault;
//! - a member truncating the file after it was mapped cannot kill us: the
//!   SIGBUS of an access beyond the end is confined to the mapping
//!   ([`sigbus`]), which then reads zeros and reports itself
//!   [`SharedFile::damaged`]; a file that is already truncated when it is
//!   opened is refused.
//!
//! Built with `--cfg loom` (model checking, see `loom_tests`), the same
//! accessors return references into constructed loom atomics held in
//! ordinary vectors ([`SharedFile::in_memory`]) instead of into a mapping:
//! loom's atomics carry model state and cannot be cast from raw memory.
//! The mapping code does not exist in that build.

#![allow(unsafe_code)]

pub mod layout;
#[cfg(not(loom))]
mod sigbus;

use std::fs::File;
#[cfg(not(loom))]
use std::os::fd::AsFd;
#[cfg(not(loom))]
use std::ptr::NonNull;

use crate::sync::{AtomicU64, Ordering};

use layout::*;

/// Why a file is not a usable ipn network.
#[cfg_attr(loom, allow(dead_code))] // nothing is opened in the loom build
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Shorter than the header, or than the size its header announces.
    Truncated { size: u64, needed: u64 },
    /// The first bytes are not ipn's magic number.
    NotAnIpnFile,
    /// Made by a build of ipn with another layout.
    Version(u32),
    /// Header parameters out of range.
    Parameters(GeometryError),
    /// Header offsets disagree with those its parameters imply.
    Inconsistent(&'static str),
}

/// A mapped, validated network file.
pub struct SharedFile {
    #[cfg(not(loom))]
    file: File,
    #[cfg(not(loom))]
    base: NonNull<u8>,
    /// Registered with the SIGBUS handler while mapped.
    #[cfg(not(loom))]
    registration: Option<sigbus::Registration>,
    /// How many entries of the tables every frame touches are inside the
    /// mapping, checked once when mapped (none for a header-only mapping).
    #[cfg(not(loom))]
    tables: Tables,
    #[cfg(loom)]
    memory: InMemory,
    geometry: Geometry,
    writable: bool,
}

/// The lengths of the tables every frame touches, as mapped: each was
/// checked once, when the file was mapped, to lie inside the mapping and to
/// be aligned for its type, so that an access after that is a slice index
/// (one comparison) instead of an offset computed and checked again. A
/// table that does not fit (a header-only mapping's) has length zero: an
/// access to it panics, as any index out of range.
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy, Default)]
struct Tables {
    /// Port entries at `port_table_offset`.
    ports: usize,
    /// Words at `cursor_table_offset`: `max_ports` per reader (lossless).
    cursor_words: usize,
    /// Words at `pending_table_offset`: `pending_stride / 8` per reader.
    pending_words: usize,
    /// Rings at `rings_offset`, `ring_stride` apart: each `ring_slots`
    /// descriptors, then `ring_words` data words at `ring_data_offset`.
    rings: usize,
}

#[cfg(not(loom))]
impl Tables {
    /// The tables of `g` that fit in a mapping of `g.total_size` bytes.
    fn of(g: &Geometry) -> Tables {
        let fits = |offset: u64, count: u64, size: usize, align: usize| -> usize {
            let end = count
                .checked_mul(size as u64)
                .and_then(|bytes| offset.checked_add(bytes));
            let inside = end.is_some_and(|end| end <= g.total_size);
            if inside && offset.is_multiple_of(align as u64) {
                usize::try_from(count).unwrap_or(0)
            } else {
                0
            }
        };
        let ports = u64::from(g.max_ports);
        let cursors = if g.lossless() { ports * ports } else { 0 };
        Tables {
            ports: fits(
                g.port_table_offset,
                ports,
                std::mem::size_of::<PortEntry>(),
                std::mem::align_of::<PortEntry>(),
            ),
            cursor_words: fits(g.cursor_table_offset, cursors, 8, 8),
            pending_words: fits(g.pending_table_offset, ports * (g.pending_stride / 8), 8, 8),
            rings: if Self::ring_fits(g) {
                fits(g.rings_offset, ports, g.ring_stride as usize, 8)
            } else {
                0
            },
        }
    }

    /// Whether one ring's descriptors and data fit in its stride, aligned.
    fn ring_fits(g: &Geometry) -> bool {
        let descriptors = u64::from(g.ring_slots) * DESCRIPTOR_SIZE;
        g.ring_slots > 0
            && descriptors <= g.ring_data_offset
            && (g.ring_words() as u64)
                .checked_mul(8)
                .and_then(|bytes| g.ring_data_offset.checked_add(bytes))
                .is_some_and(|end| end <= g.ring_stride)
            && g.ring_stride.is_multiple_of(8)
            && g.ring_data_offset.is_multiple_of(8)
            && std::mem::align_of::<Descriptor>() <= 8
    }
}

/// The loom build's stand-in for the mapping: the same structures,
/// constructed (all zero, as in a fresh file) instead of mapped.
#[cfg(loom)]
struct InMemory {
    header: Header,
    ports: Vec<PortEntry>,
    cursors: Vec<AtomicU64>,
    /// `pending_words` words per reader, reader after reader.
    pending: Vec<AtomicU64>,
    vlans: Vec<VlanEntry>,
    /// `ring_slots` descriptors per port, ring after ring.
    descriptors: Vec<Descriptor>,
    /// `ring_words` data words per port, ring after ring.
    data: Vec<AtomicU64>,
}

#[cfg(not(loom))]
// SAFETY: the mapping is plain shared memory accessed only through atomics
// (see module docs); the pointer is not tied to the creating thread.
unsafe impl Send for SharedFile {}
#[cfg(not(loom))]
// SAFETY: as above; `&SharedFile` only ever yields `&Atomic*`, which are Sync.
unsafe impl Sync for SharedFile {}

impl std::fmt::Debug for SharedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedFile")
            .field("geometry", &self.geometry)
            .field("writable", &self.writable)
            .finish()
    }
}

impl SharedFile {
    /// The parameters and offsets, as validated when opened.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Whether the mapping may be written (read-only opens serve `status`).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether the file was truncated (or could not be backed) under us:
    /// part of the mapping now reads zeros, and the network is unusable.
    pub fn damaged(&self) -> bool {
        #[cfg(not(loom))]
        return self.registration.as_ref().is_some_and(|r| r.damaged());
        #[cfg(loom)]
        return false;
    }
}

/// The mapping (every build but the loom one).
#[cfg(not(loom))]
impl SharedFile {
    /// Sizes `file` for `geometry`, allocating its blocks, maps it and
    /// writes the header. The file must be new and not yet visible to other
    /// processes. A file system that cannot hold it fails here (`ENOSPC`),
    /// not with a SIGBUS when a page is first written.
    pub fn initialize(file: File, geometry: Geometry) -> std::io::Result<SharedFile> {
        let len =
            i64::try_from(geometry.total_size).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        match nix::fcntl::posix_fallocate(&file, 0, len) {
            Ok(()) => {}
            // A file system that cannot allocate ahead: size it sparse.
            Err(nix::errno::Errno::EOPNOTSUPP) => file.set_len(geometry.total_size)?,
            Err(e) => return Err(e.into()),
        }
        let shared = Self::map(file, geometry, true)?;
        let h = shared.header();
        let r = Ordering::Relaxed;
        h.version.store(LAYOUT_VERSION, r);
        h.protocol.store(geometry.protocol, r);
        h.max_ports.store(geometry.max_ports, r);
        h.mtu.store(geometry.mtu, r);
        h.ring_slots.store(geometry.ring_slots, r);
        h.ring_bytes.store(geometry.ring_bytes, r);
        h.flags.store(geometry.flags, r);
        h.port_entry_size
            .store(std::mem::size_of::<PortEntry>() as u32, r);
        h.descriptor_size.store(DESCRIPTOR_SIZE as u32, r);
        h.port_table_offset.store(geometry.port_table_offset, r);
        h.cursor_table_offset.store(geometry.cursor_table_offset, r);
        h.pending_table_offset
            .store(geometry.pending_table_offset, r);
        h.vlan_table_offset.store(geometry.vlan_table_offset, r);
        h.rings_offset.store(geometry.rings_offset, r);
        h.ring_stride.store(geometry.ring_stride, r);
        h.total_size.store(geometry.total_size, r);
        // Magic last: a reader of a half-written file sees "not ipn".
        h.magic.store(MAGIC, Ordering::Release);
        Ok(shared)
    }

    /// Maps an existing network file after validating its header.
    /// `Err(Ok(invalid))` is a file that is not a good network,
    /// `Err(Err(io))` a failure of the system.
    pub fn open(file: File, writable: bool) -> Result<SharedFile, Result<Invalid, std::io::Error>> {
        let size = file.metadata().map_err(Err)?.len();
        if size < HEADER_SIZE {
            return Err(Ok(Invalid::Truncated {
                size,
                needed: HEADER_SIZE,
            }));
        }
        let header_geometry = Geometry {
            total_size: HEADER_SIZE,
            ..Geometry::compute(0, 1, MIN_MTU, MIN_RING_SLOTS, MIN_RING_BYTES, 0)
                .expect("minimal geometry")
        };
        let header_only = Self::map(file, header_geometry, false).map_err(Err)?;
        let geometry = validate(header_only.header(), size).map_err(Ok)?;
        let file = header_only.into_file();
        Self::map(file, geometry, writable).map_err(Err)
    }

    fn map(file: File, geometry: Geometry, writable: bool) -> std::io::Result<SharedFile> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let len = usize::try_from(geometry.total_size)
            .ok()
            .and_then(std::num::NonZeroUsize::new)
            .ok_or(std::io::ErrorKind::InvalidInput)?;
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), so
        // it aliases no Rust object; it is unmapped only in Drop. Its content
        // is only ever accessed through atomics (module invariants).
        let base = unsafe { mmap(None, len, prot, MapFlags::MAP_SHARED, file.as_fd(), 0) }
            .map_err(std::io::Error::from)?;
        let mut shared = SharedFile {
            file,
            base: base.cast(),
            registration: None,
            tables: Tables::of(&geometry),
            geometry,
            writable,
        };
        // Registered before any access, so even validating a header that
        // is being truncated cannot kill us. (On failure, `shared` drops
        // and unmaps.)
        shared.registration = Some(sigbus::register(base.as_ptr() as usize, len.get())?);
        Ok(shared)
    }

    fn into_file(self) -> File {
        let mut this = std::mem::ManuallyDrop::new(self);
        this.unmap();
        // SAFETY: `this` is never used or dropped again, so moving the file
        // out of it leaves no double drop.
        unsafe { std::ptr::read(&this.file) }
    }

    fn unmap(&mut self) {
        // Unregistered first: once unmapped, the range may be reused by
        // another mapping, whose faults are not ours to handle.
        self.registration = None;
        // SAFETY: `base`/`total_size` are exactly the mapping made in `map`
        // (whose length fit in usize); called once, from Drop or
        // `into_file`, when no reference into the mapping can exist any
        // more (they all borrow `self`).
        let _ =
            unsafe { nix::sys::mman::munmap(self.base.cast(), self.geometry.total_size as usize) };
    }

    /// The underlying file (for the per-port locks).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// # Panics
    /// Never for an offset computed from the geometry; it is checked anyway.
    fn at<T: SharedPlain>(&self, offset: u64) -> &T {
        let size = std::mem::size_of::<T>() as u64;
        assert!(
            offset
                .checked_add(size)
                .is_some_and(|end| end <= self.geometry.total_size)
                && offset.is_multiple_of(std::mem::align_of::<T>() as u64),
            "shared memory access out of bounds"
        );
        // SAFETY: in bounds and aligned (asserted above; the mapping is
        // page aligned), the memory is mapped for the lifetime of `&self`,
        // and `T: SharedPlain` is made only of atomics (padding included),
        // which are valid for any bit pattern and may be shared between
        // threads and processes.
        unsafe { &*self.base.as_ptr().add(offset as usize).cast::<T>() }
    }

    pub fn header(&self) -> &Header {
        self.at(0)
    }

    /// The port table entry of slot `index` (`index < max_ports`).
    pub fn port(&self, index: u32) -> &PortEntry {
        &self.port_table()[index as usize]
    }

    /// The port table, as checked when mapped ([`Tables`]).
    fn port_table(&self) -> &[PortEntry] {
        // SAFETY: `tables.ports` entries at `port_table_offset` lie inside
        // the mapping and are aligned (checked by `Tables::of` when mapped;
        // the geometry never changes); `PortEntry: SharedPlain` is made only
        // of atomics, valid for any bit pattern and made for sharing. The
        // slice borrows `&self`, so the mapping outlives it.
        unsafe {
            std::slice::from_raw_parts(
                self.base
                    .as_ptr()
                    .add(self.geometry.port_table_offset as usize)
                    .cast::<PortEntry>(),
                self.tables.ports,
            )
        }
    }

    /// `count` words at `offset`.
    ///
    /// # Safety
    /// `offset..offset + 8 * count` lies inside the mapping and `offset` is
    /// a multiple of 8: a table `Tables::of` checked when mapped.
    unsafe fn table_words(&self, offset: u64, count: usize) -> &[AtomicU64] {
        // SAFETY: inside the mapping and aligned (the caller's promise; the
        // mapping is page aligned); `AtomicU64` is valid for any bit pattern
        // and made for sharing. The slice borrows `&self`, so the mapping
        // outlives it.
        unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(offset as usize).cast::<AtomicU64>(),
                count,
            )
        }
    }

    /// Lossless networks: how far `reader` has read `sender`'s ring.
    pub fn cursor(&self, reader: u32, sender: u32) -> &AtomicU64 {
        &self.cursors(reader)[sender as usize]
    }

    /// Lossless networks: how far `reader` has read each sender's ring,
    /// indexed by sender (one bounds check for a loop over all of them).
    pub fn cursors(&self, reader: u32) -> &[AtomicU64] {
        let g = &self.geometry;
        // SAFETY: the cursor table, checked when mapped (`Tables::of`).
        let table = unsafe { self.table_words(g.cursor_table_offset, self.tables.cursor_words) };
        let row = g.max_ports as usize;
        &table[reader as usize * row..][..row]
    }

    /// Port `index`'s VLAN membership and published addresses.
    pub fn vlan(&self, index: u32) -> &VlanEntry {
        let g = &self.geometry;
        assert!(index < g.max_ports, "port index out of range");
        self.at(g.vlan_table_offset + u64::from(index) * std::mem::size_of::<VlanEntry>() as u64)
    }

    /// Reader `reader`'s pending bitmap: bit `s` of word `s / 64` says
    /// sender `s` may have frames for it.
    pub fn pending(&self, reader: u32) -> &[AtomicU64] {
        let g = &self.geometry;
        // SAFETY: the pending table, checked when mapped (`Tables::of`).
        let table = unsafe { self.table_words(g.pending_table_offset, self.tables.pending_words) };
        let stride = (g.pending_stride / 8) as usize;
        &table[reader as usize * stride..][..g.pending_words()]
    }

    /// The descriptor of `sender`'s ring that holds frame number `seq`.
    pub fn descriptor(&self, sender: u32, seq: u64) -> &Descriptor {
        let g = &self.geometry;
        assert!(
            (sender as usize) < self.tables.rings,
            "sender index out of range"
        );
        // At most `ring_slots - 1`, whatever `seq` is.
        let index = seq & u64::from(g.ring_slots - 1);
        let offset = g.rings_offset + u64::from(sender) * g.ring_stride + index * DESCRIPTOR_SIZE;
        // SAFETY: ring `sender` lies inside the mapping and its
        // `ring_slots` descriptors within its stride, 8-aligned (checked by
        // `Tables::of` when mapped: `sender < tables.rings`), and
        // `index < ring_slots`; `Descriptor: SharedPlain` is made only of
        // atomics. The reference borrows `&self`, so the mapping outlives it.
        unsafe { &*self.base.as_ptr().add(offset as usize).cast::<Descriptor>() }
    }

    /// The data words of `sender`'s ring.
    pub fn ring_data(&self, sender: u32) -> &[AtomicU64] {
        let g = &self.geometry;
        assert!(
            (sender as usize) < self.tables.rings,
            "sender index out of range"
        );
        let offset = g.rings_offset + u64::from(sender) * g.ring_stride + g.ring_data_offset;
        // SAFETY: ring `sender` lies inside the mapping, its data words
        // within its stride, 8-aligned (checked when mapped, `Tables::of`).
        unsafe { self.table_words(offset, g.ring_words()) }
    }
}

#[cfg(not(loom))]
impl Drop for SharedFile {
    fn drop(&mut self) {
        self.unmap();
    }
}

/// The loom build: the same accessors, with the same bounds checks, over
/// constructed atomics. There is no file and no mapping.
#[cfg(loom)]
impl SharedFile {
    /// A fresh network of `geometry` held in memory, for model checking.
    /// Only its header parameters are written, as `initialize` would.
    #[cfg_attr(not(test), allow(dead_code))] // used by loom_tests only
    pub fn in_memory(geometry: Geometry) -> SharedFile {
        let g = &geometry;
        let ports = g.max_ports as usize;
        let cursors = if g.lossless() { ports * ports } else { 0 };
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let memory = InMemory {
            header: Header::zeroed(),
            ports: (0..ports).map(|_| PortEntry::zeroed()).collect(),
            cursors: zeros(cursors),
            pending: zeros(ports * g.pending_words()),
            vlans: (0..ports).map(|_| VlanEntry::zeroed()).collect(),
            descriptors: (0..ports * g.ring_slots as usize)
                .map(|_| Descriptor::zeroed())
                .collect(),
            data: zeros(ports * g.ring_words()),
        };
        let h = &memory.header;
        let r = Ordering::Relaxed;
        h.max_ports.store(g.max_ports, r);
        h.mtu.store(g.mtu, r);
        h.ring_slots.store(g.ring_slots, r);
        h.ring_bytes.store(g.ring_bytes, r);
        h.flags.store(g.flags, r);
        h.magic.store(MAGIC, r);
        SharedFile {
            memory,
            geometry,
            writable: true,
        }
    }

    /// Files cannot be mapped in the loom build.
    pub fn initialize(_file: File, _geometry: Geometry) -> std::io::Result<SharedFile> {
        Err(Self::no_files())
    }

    /// Files cannot be mapped in the loom build.
    pub fn open(
        _file: File,
        _writable: bool,
    ) -> Result<SharedFile, Result<Invalid, std::io::Error>> {
        Err(Err(Self::no_files()))
    }

    fn no_files() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "built with --cfg loom: shared files are held in memory",
        )
    }

    /// # Panics
    /// Always: an in-memory network has no file, so no per-port locks.
    pub fn file(&self) -> &File {
        unimplemented!("built with --cfg loom: no file, no per-port locks")
    }

    pub fn header(&self) -> &Header {
        &self.memory.header
    }

    /// The port table entry of slot `index` (`index < max_ports`).
    pub fn port(&self, index: u32) -> &PortEntry {
        assert!(index < self.geometry.max_ports, "port index out of range");
        &self.memory.ports[index as usize]
    }

    /// Lossless networks: how far `reader` has read `sender`'s ring.
    pub fn cursor(&self, reader: u32, sender: u32) -> &AtomicU64 {
        let g = &self.geometry;
        assert!(g.lossless() && reader < g.max_ports && sender < g.max_ports);
        &self.memory.cursors[reader as usize * g.max_ports as usize + sender as usize]
    }

    /// Lossless networks: how far `reader` has read each sender's ring.
    pub fn cursors(&self, reader: u32) -> &[AtomicU64] {
        let g = &self.geometry;
        assert!(g.lossless() && reader < g.max_ports);
        let ports = g.max_ports as usize;
        &self.memory.cursors[reader as usize * ports..(reader as usize + 1) * ports]
    }

    /// Port `index`'s VLAN membership and published addresses.
    pub fn vlan(&self, index: u32) -> &VlanEntry {
        assert!(index < self.geometry.max_ports, "port index out of range");
        &self.memory.vlans[index as usize]
    }

    /// Reader `reader`'s pending bitmap.
    pub fn pending(&self, reader: u32) -> &[AtomicU64] {
        let g = &self.geometry;
        assert!(reader < g.max_ports, "reader index out of range");
        let words = g.pending_words();
        &self.memory.pending[reader as usize * words..(reader as usize + 1) * words]
    }

    /// The descriptor of `sender`'s ring that holds frame number `seq`.
    pub fn descriptor(&self, sender: u32, seq: u64) -> &Descriptor {
        let g = &self.geometry;
        assert!(sender < g.max_ports, "sender index out of range");
        let index = (seq & u64::from(g.ring_slots - 1)) as usize;
        &self.memory.descriptors[sender as usize * g.ring_slots as usize + index]
    }

    /// The data words of `sender`'s ring.
    pub fn ring_data(&self, sender: u32) -> &[AtomicU64] {
        let g = &self.geometry;
        assert!(sender < g.max_ports, "sender index out of range");
        let words = g.ring_words();
        &self.memory.data[sender as usize * words..(sender as usize + 1) * words]
    }
}

/// Checks a header read from a file of `file_size` bytes and computes the
/// geometry it describes.
#[cfg_attr(loom, allow(dead_code))] // nothing is opened in the loom build
pub fn validate(h: &Header, file_size: u64) -> Result<Geometry, Invalid> {
    let r = Ordering::Acquire;
    if h.magic.load(r) != MAGIC {
        return Err(Invalid::NotAnIpnFile);
    }
    let version = h.version.load(r);
    if version != LAYOUT_VERSION {
        return Err(Invalid::Version(version));
    }
    let g = Geometry::compute(
        h.protocol.load(r),
        h.max_ports.load(r),
        h.mtu.load(r),
        h.ring_slots.load(r),
        h.ring_bytes.load(r),
        h.flags.load(r),
    )
    .map_err(Invalid::Parameters)?;
    let checks: [(&'static str, u64, u64); 9] = [
        (
            "port entry size",
            u64::from(h.port_entry_size.load(r)),
            std::mem::size_of::<PortEntry>() as u64,
        ),
        (
            "descriptor size",
            u64::from(h.descriptor_size.load(r)),
            DESCRIPTOR_SIZE,
        ),
        (
            "pending table offset",
            h.pending_table_offset.load(r),
            g.pending_table_offset,
        ),
        ("ring stride", h.ring_stride.load(r), g.ring_stride),
        (
            "VLAN table offset",
            h.vlan_table_offset.load(r),
            g.vlan_table_offset,
        ),
        (
            "port table offset",
            h.port_table_offset.load(r),
            g.port_table_offset,
        ),
        (
            "cursor table offset",
            h.cursor_table_offset.load(r),
            g.cursor_table_offset,
        ),
        ("rings offset", h.rings_offset.load(r), g.rings_offset),
        ("total size", h.total_size.load(r), g.total_size),
    ];
    for (what, found, expected) in checks {
        if found != expected {
            return Err(Invalid::Inconsistent(what));
        }
    }
    if file_size < g.total_size {
        return Err(Invalid::Truncated {
            size: file_size,
            needed: g.total_size,
        });
    }
    Ok(g)
}
