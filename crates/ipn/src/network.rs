//! A network as a whole: creating it, opening it to look at, removing it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::config::{Config, Protocol};
use crate::error::{describe_invalid, OpenError};
use crate::files;
use crate::membership::{self, Membership};
use crate::shm::layout::*;
use crate::shm::SharedFile;

/// A handle on a network directory, for creating, inspecting and removing
/// it. Joining is done with [`crate::Port::join`].
#[derive(Debug)]
pub struct Network {
    path: PathBuf,
    shm: SharedFile,
}

/// State of one port slot, as seen by [`Network::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    /// Claimed, not yet announced (a join in progress).
    Joining,
    /// Joined and alive.
    Active,
    /// Its process died; the slot will be reused by the next joiner.
    Dead,
}

impl PortState {
    /// The name shown by `ipn status`.
    pub fn name(self) -> &'static str {
        match self {
            PortState::Joining => "joining",
            PortState::Active => "active",
            PortState::Dead => "dead",
        }
    }
}

/// One port in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    /// Port number (slot in the port table).
    pub index: u32,
    /// Process that joined it (in the joiner's PID namespace).
    pub pid: u32,
    /// What the joiner said it is.
    pub description: String,
    /// Joining, active, or dead (reclaimable).
    pub state: PortState,
    /// Active and receiving (not joined write-only, not shut down).
    pub reading: bool,
    /// Active and sending.
    pub writing: bool,
    /// Frames sent since this port joined.
    pub tx_frames: u64,
    /// Bytes sent since this port joined.
    pub tx_bytes: u64,
    /// Frames received since this port joined.
    pub rx_frames: u64,
    /// Bytes received since this port joined.
    pub rx_bytes: u64,
    /// Frames this port missed because it read too slowly (lossy).
    pub rx_dropped: u64,
}

/// A snapshot of a network and every port in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The network's path.
    pub path: PathBuf,
    /// How frames are delivered.
    pub protocol: Protocol,
    /// Port slots (most ports joined at once).
    pub max_ports: u32,
    /// Largest frame, in bytes.
    pub mtu: u32,
    /// Frames buffered per sender.
    pub ring_slots: u32,
    /// Whether senders wait for slow readers.
    pub lossless: bool,
    /// Live readers and writers.
    pub membership: Membership,
    /// Ports that are joining, active, or dead and not yet reclaimed.
    pub ports: Vec<PortStatus>,
}

impl Network {
    /// Creates a network at `path` (a new directory). Fails with
    /// [`OpenError::AlreadyExists`] if a network is already there.
    pub fn create(path: impl AsRef<Path>, config: &Config) -> Result<Network, OpenError> {
        let path = path.as_ref();
        let geometry = config.geometry()?;
        files::create_dir(path, config.mode, config.group)?;
        // Build the file under a private name and link it into place only
        // when complete: a joiner never sees a half-made network, and of
        // two concurrent creators exactly one link succeeds.
        let temp = path.join(format!(".shm.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let file = files::create_new_file(&temp, files::file_mode(config.mode))?;
        let result = (|| {
            files::set_group(&temp, config.group)?;
            let shm =
                SharedFile::initialize(file, geometry).map_err(|e| files::io_error(&temp, e))?;
            std::fs::hard_link(&temp, files::shm_path(path)).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => OpenError::AlreadyExists { path: path.into() },
                _ => files::io_error(path, e),
            })?;
            Ok(shm)
        })();
        let _ = std::fs::remove_file(&temp);
        Ok(Network {
            path: path.into(),
            shm: result?,
        })
    }

    /// Opens an existing network to inspect it. Needs only read permission;
    /// with write permission it also marks dead ports as dead.
    pub fn open(path: impl AsRef<Path>) -> Result<Network, OpenError> {
        let path = path.as_ref();
        let file = match files::open_shm(path, true) {
            Err(OpenError::PermissionDenied { .. }) => files::open_shm(path, false)?,
            other => other?,
        };
        let writable = file_is_writable(&file);
        let shm = open_shared(path, file, writable)?;
        Ok(Network {
            path: path.into(),
            shm,
        })
    }

    /// The network's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Largest frame accepted, in bytes.
    pub fn mtu(&self) -> u32 {
        self.shm.geometry().mtu
    }

    /// A snapshot of every port. Ports whose process died are reported
    /// (and, with write permission, marked) dead.
    pub fn status(&self) -> Status {
        membership::sweep_dead(&self.shm, None);
        status_of(&self.path, &self.shm)
    }

    /// Removes the network's files and directory. Refuses while live ports
    /// are joined, unless `force`.
    pub fn remove(path: impl AsRef<Path>, force: bool) -> Result<(), OpenError> {
        let path = path.as_ref();
        match Network::open(path) {
            Ok(network) => {
                let live = network
                    .status()
                    .ports
                    .iter()
                    .filter(|p| p.state != PortState::Dead)
                    .count();
                if live > 0 && !force {
                    return Err(OpenError::Busy {
                        path: path.into(),
                        live,
                    });
                }
            }
            Err(OpenError::NotFound { .. }) => {
                return Err(OpenError::NotFound { path: path.into() })
            }
            Err(e) if !force => return Err(e),
            Err(_) => {}
        }
        let entries = std::fs::read_dir(path).map_err(|e| files::io_error(path, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name == files::SHM_NAME
                || name.starts_with(files::BELL_PREFIX)
                || (name.starts_with(".shm.") && name.ends_with(".tmp"));
            if ours {
                std::fs::remove_file(entry.path())
                    .map_err(|e| files::io_error(&entry.path(), e))?;
            }
        }
        std::fs::remove_dir(path).map_err(|e| files::io_error(path, e))
    }
}

fn file_is_writable(file: &std::fs::File) -> bool {
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_GETFL)
        .map(|flags| flags & libc::O_ACCMODE == libc::O_RDWR)
        .unwrap_or(false)
}

/// Maps and validates `PATH/shm`, turning problems into errors that name
/// the path.
pub(crate) fn open_shared(
    path: &Path,
    file: std::fs::File,
    writable: bool,
) -> Result<SharedFile, OpenError> {
    let shm = SharedFile::open(file, writable).map_err(|e| match e {
        Ok(invalid) => OpenError::NotANetwork {
            path: path.into(),
            reason: describe_invalid(&invalid),
        },
        Err(io) => files::io_error(path, io),
    })?;
    if Protocol::from_code(shm.geometry().protocol).is_none() {
        return Err(OpenError::NotANetwork {
            path: path.into(),
            reason: format!(
                "unknown protocol number {}; it was made by a newer ipn",
                shm.geometry().protocol
            ),
        });
    }
    Ok(shm)
}

pub(crate) fn status_of(path: &Path, shm: &SharedFile) -> Status {
    let g = shm.geometry();
    let mut ports = Vec::new();
    for index in 0..g.max_ports {
        let entry = shm.port(index);
        let word = entry.state.load(Ordering::Acquire);
        let state = match membership::state(word) {
            STATE_JOINING => PortState::Joining,
            STATE_ACTIVE => PortState::Active,
            STATE_DEAD => PortState::Dead,
            _ => continue,
        };
        let caps = entry.caps.load(Ordering::Relaxed);
        let r = Ordering::Relaxed;
        ports.push(PortStatus {
            index,
            pid: entry.pid.load(r),
            description: membership::read_description(entry),
            state,
            reading: caps & CAP_READ != 0 && state == PortState::Active,
            writing: caps & CAP_WRITE != 0 && state == PortState::Active,
            tx_frames: entry.tx_frames.load(r),
            tx_bytes: entry.tx_bytes.load(r),
            rx_frames: entry.rx_frames.load(r),
            rx_bytes: entry.rx_bytes.load(r),
            rx_dropped: entry.rx_dropped.load(r),
        });
    }
    Status {
        path: path.into(),
        protocol: Protocol::from_code(g.protocol).unwrap_or_default(),
        max_ports: g.max_ports,
        mtu: g.mtu,
        ring_slots: g.ring_slots,
        lossless: g.lossless(),
        membership: membership::counts(shm),
        ports,
    }
}
