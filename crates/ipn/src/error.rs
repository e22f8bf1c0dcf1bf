//! Error types, one per kind of operation, each saying what went wrong,
//! with which path, and what to do about it.
//!
//! In the variants, `path` is always the network's path as the caller gave
//! it (or the file inside it that failed).
#![allow(missing_docs)] // fields are named for what they hold; see the module doc.

use std::io;
use std::path::PathBuf;

use crate::shm::layout::GeometryError;
use crate::shm::Invalid;

/// Why a network could not be created, joined or opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Nothing at the path.
    #[error("{path}: no such network; create it with `ipn create {path}`", path = .path.display())]
    NotFound { path: PathBuf },
    /// Something is at the path, but it is not a usable ipn network.
    #[error("{path}: not a usable ipn network: {reason}", path = .path.display())]
    NotANetwork { path: PathBuf, reason: String },
    /// `create` on a path that already holds a network (or other files).
    #[error("{path}: already exists; join it, or remove it with `ipn rm {path}`", path = .path.display())]
    AlreadyExists { path: PathBuf },
    /// The kernel refused access; `hint` says which mode/group would let one in.
    #[error("{path}: permission denied ({hint})", path = .path.display())]
    PermissionDenied { path: PathBuf, hint: String },
    /// Every port slot is taken; `detail` says by whom (joined ports,
    /// processes holding slots without joining, unusable doorbell names).
    #[error("{path}: network full: all {max_ports} ports are in use{detail}; wait for a port to leave, or create the network with more `--ports`", path = .path.display())]
    Full {
        path: PathBuf,
        max_ports: u32,
        detail: String,
    },
    /// `rm` of a network with live ports, without force.
    #[error("{path}: {live} port(s) still joined; stop them first or use --force", path = .path.display())]
    Busy { path: PathBuf, live: usize },
    /// The requested configuration is impossible.
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    /// The file system cannot hold the shared file (full, or too small:
    /// a size-limited tmpfs or a container's /dev/shm).
    #[error("{path}: no space for the network's shared file ({source}); the file system is full or too small (a size-limited tmpfs or /dev/shm?): free space, create the network elsewhere, or make it smaller (fewer --ports, a smaller --mtu or --ring)", path = .path.display())]
    NoSpace { path: PathBuf, source: io::Error },
    /// Any other system error, with the file it concerned.
    #[error("{path}: {source}", path = .path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl OpenError {
    /// The errno that best says why: what the C faces (the vdeplug plugin,
    /// `libipn`) set, so that `strerror` agrees with the message.
    pub fn errno(&self) -> i32 {
        match self {
            OpenError::NotFound { .. } => libc::ENOENT,
            OpenError::NotANetwork { .. } => libc::EINVAL,
            OpenError::AlreadyExists { .. } => libc::EEXIST,
            OpenError::PermissionDenied { .. } => libc::EACCES,
            OpenError::Full { .. } => libc::EUSERS,
            OpenError::Busy { .. } => libc::EBUSY,
            OpenError::InvalidConfig(_) => libc::EINVAL,
            OpenError::NoSpace { .. } => libc::ENOSPC,
            OpenError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

/// Why a frame was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The frame is larger than the network's MTU; it was not sent.
    #[error("frame of {len} bytes exceeds the network MTU of {mtu} bytes")]
    TooBig { len: usize, mtu: u32 },
    /// The frame is empty; Ethernet has no empty frames.
    #[error("empty frame")]
    Empty,
    /// Lossless network, non-blocking send: a live reader has no room yet.
    #[error("a reader has no room yet (lossless network); try again")]
    WouldBlock,
    /// Lossless network, send with a timeout that expired.
    #[error("timed out waiting for a reader to make room")]
    TimedOut,
    /// This port was shut down for writing or joined read-only.
    #[error("this port does not write (shut down or joined read-only)")]
    NotWriting,
    /// The network's shared file was truncated (or could not be backed)
    /// under this port; the port cannot be used any more.
    #[error("{}", damaged_message(.path))]
    Damaged { path: PathBuf },
    /// A port that takes offloads sent a virtio-net header that does not
    /// describe its frame.
    #[error("bad virtio-net header: {0}")]
    Offload(crate::offload::OffloadError),
}

/// Why no frame was received.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// Non-blocking receive and nothing is waiting.
    #[error("no frame waiting")]
    WouldBlock,
    /// Receive with a timeout that expired.
    #[error("timed out waiting for a frame")]
    TimedOut,
    /// This port was shut down for reading or joined write-only.
    #[error("this port does not read (shut down or joined write-only)")]
    NotReading,
    /// Waiting on the doorbell failed.
    #[error("waiting for frames: {0}")]
    Io(#[from] io::Error),
    /// The network's shared file was truncated (or could not be backed)
    /// under this port; the port cannot be used any more.
    #[error("{}", damaged_message(.path))]
    Damaged { path: PathBuf },
}

fn damaged_message(path: &std::path::Path) -> String {
    format!(
        "{}: the network is damaged: its shared file was truncated (or the file system could \
         not back it) while in use; leave it, then remove and create it again \
         (`ipn rm --force {}`, `ipn create ...`)",
        path.display(),
        path.display()
    )
}

pub(crate) fn describe_invalid(invalid: &Invalid) -> String {
    match invalid {
        Invalid::Truncated { size, needed } => format!(
            "shared file truncated ({size} bytes, needs {needed}); remove it with `ipn rm --force` and create it again"
        ),
        Invalid::NotAnIpnFile => "the shared file has no ipn header (not an ipn network, or corrupted)".into(),
        Invalid::Version(v) => format!(
            "made by an ipn with layout version {v}, this one reads version {}; use the matching ipn or recreate the network",
            crate::shm::layout::LAYOUT_VERSION
        ),
        Invalid::Parameters(e) => format!("header parameters out of range ({})", describe_geometry(e)),
        Invalid::Inconsistent(field) => format!("header is inconsistent ({field}); the file is corrupted"),
    }
}

pub(crate) fn describe_geometry(e: &GeometryError) -> String {
    use crate::shm::layout::*;
    match e {
        GeometryError::Ports(n) => format!("ports {n} not in 1..={MAX_PORTS}"),
        GeometryError::Mtu(n) => format!("mtu {n} not in {MIN_MTU}..={MAX_MTU}"),
        GeometryError::RingSlots(n) => format!(
            "ring depth {n} is not a power of two in {MIN_RING_SLOTS}..={MAX_RING_SLOTS}"
        ),
        GeometryError::RingBytes { bytes, least } => format!(
            "ring of {bytes} bytes: give a power of two from {least} (two frames of the MTU) to {MAX_RING_BYTES}"
        ),
        GeometryError::TooLarge(size) => format!(
            "shared file would be {size} bytes, over the {MAX_TOTAL_SIZE} limit; lower ports, ring frames or ring bytes"
        ),
    }
}
