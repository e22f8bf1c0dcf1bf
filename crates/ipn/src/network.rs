//! A network as a whole: creating it, opening it to look at, removing it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::config::{Config, Protocol};
use crate::error::{describe_invalid, OpenError};
use crate::ethernet::{Mac, Vlan};
use crate::files::{self, NetDir};
use crate::liveness;
use crate::membership::{self, Membership};
use crate::shm::layout::*;
use crate::shm::SharedFile;

/// A handle on a network directory, for creating, inspecting and removing
/// it. Joining is done with [`crate::Port::join`].
#[derive(Debug)]
pub struct Network {
    dir: NetDir,
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
    /// Not joined, but a process holds the slot's lock (it is joining
    /// right now, or it keeps the slot from others without joining).
    Held,
}

impl PortState {
    /// The name shown by `ipn status`.
    pub fn name(self) -> &'static str {
        match self {
            PortState::Joining => "joining",
            PortState::Active => "active",
            PortState::Dead => "dead",
            PortState::Held => "held",
        }
    }
}

/// One port in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    /// Port number (slot in the port table).
    pub index: u32,
    /// Process that joined it (in the joiner's PID namespace); for a
    /// [`PortState::Held`] slot, the process holding its lock, or 0 when it
    /// cannot be seen (another user's).
    pub pid: u32,
    /// What the joiner said it is.
    pub description: String,
    /// Joining, active, or dead (reclaimable).
    pub state: PortState,
    /// Active and receiving (not joined write-only, not shut down).
    pub reading: bool,
    /// Active and sending.
    pub writing: bool,
    /// 802.1Q membership, as the port published it.
    pub vlan: Vlan,
    /// Switch networks: the (VLAN, source address) pairs the port has sent
    /// from (its last 16), with `None` for untagged frames — what a
    /// switch's address table shows for that port.
    pub addresses: Vec<(Option<u16>, Mac)>,
    /// Frames sent since this port joined.
    pub tx_frames: u64,
    /// Bytes sent since this port joined.
    pub tx_bytes: u64,
    /// Frames received since this port joined.
    pub rx_frames: u64,
    /// Bytes received since this port joined.
    pub rx_bytes: u64,
    /// Frames this port lost: it read too slowly (lossy), or they could not
    /// be delivered (over the MTU, or with a virtio-net header that does
    /// not describe them: written by a misbehaving member).
    pub rx_dropped: u64,
    /// Frames this port sent that did not belong to its VLANs.
    pub tx_dropped: u64,
}

/// Who may use a network: see [`crate::Port::access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Owner of the network's shared file.
    pub uid: u32,
    /// Its group: the network's members.
    pub gid: u32,
    /// Its permission bits (read and write only).
    pub mode: u32,
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
    /// Bytes of frames buffered per sender.
    pub ring_bytes: u64,
    /// Size of the shared file: the memory the network uses.
    pub memory: u64,
    /// Whether senders wait for slow readers.
    pub lossless: bool,
    /// Live readers and writers.
    pub membership: Membership,
    /// Ports that are joining, active, or dead and not yet reclaimed.
    pub ports: Vec<PortStatus>,
}

impl Network {
    /// Creates a network at `path`: a new directory, or an empty one of the
    /// caller's. Fails with [`OpenError::AlreadyExists`] if a network is
    /// already there, and refuses a directory someone else made.
    pub fn create(path: impl AsRef<Path>, config: &Config) -> Result<Network, OpenError> {
        let path = path.as_ref();
        let geometry = config.geometry()?;
        let (dir, made) = NetDir::create(path, config.mode, config.group)?;
        match dir.create_shm(config.mode, config.group, |file| {
            SharedFile::initialize(file, geometry)
        }) {
            Ok(shm) => Ok(Network { dir, shm }),
            Err(e) => {
                if made {
                    // Leave nothing behind (say, no space for the file),
                    // but only an empty directory: a concurrent creator
                    // that won the race to link `shm` (we then fail with
                    // AlreadyExists) may already have ports in it.
                    drop(dir);
                    let _ = std::fs::remove_dir(path);
                }
                Err(e)
            }
        }
    }

    /// Opens an existing network to inspect it. Needs only read permission;
    /// with write permission it also marks dead ports as dead.
    pub fn open(path: impl AsRef<Path>) -> Result<Network, OpenError> {
        let dir = NetDir::open(path.as_ref())?;
        let file = match dir.open_shm(true) {
            Err(OpenError::PermissionDenied { .. }) => dir.open_shm(false)?,
            other => other?,
        };
        let writable = file_is_writable(&file);
        let shm = open_shared(dir.path(), file, writable)?;
        Ok(Network { dir, shm })
    }

    /// The network's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Largest frame accepted, in bytes.
    pub fn mtu(&self) -> u32 {
        self.shm.geometry().mtu
    }

    /// A snapshot of every port. Ports whose process died are reported
    /// (and, with write permission, marked) dead.
    pub fn status(&self) -> Status {
        membership::sweep_dead(&self.shm, None);
        status_of(self.dir.path(), &self.shm)
    }

    /// What port `index`'s program published about itself (`PATH/stats.N`,
    /// see [`crate::Publisher`]): `None` if nothing. Refuses anything but a
    /// regular file of at most [`crate::MAX_PUBLISHED`] bytes, and follows
    /// no link. The bytes are the program's: parse them strictly.
    #[cfg(not(loom))]
    pub fn published(&self, index: u32) -> Result<Option<Vec<u8>>, crate::PublishedError> {
        crate::published::read(&self.dir, index)
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
        // Through our own descriptor of the directory: what is removed is
        // in the directory we looked at, whatever a member swaps meanwhile.
        NetDir::open(path)?.remove_network()
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
    let mut held = Vec::new();
    for index in 0..g.max_ports {
        let entry = shm.port(index);
        let word = entry.state.load(Ordering::Acquire);
        let state = match membership::state(word) {
            STATE_JOINING => PortState::Joining,
            STATE_ACTIVE => PortState::Active,
            STATE_DEAD => PortState::Dead,
            _ => {
                if liveness::is_held(shm.file(), index).unwrap_or(false) {
                    held.push(index);
                }
                continue;
            }
        };
        let caps = entry.caps.load(Ordering::Relaxed);
        let r = Ordering::Relaxed;
        ports.push(PortStatus {
            index,
            pid: entry.pid.load(r),
            description: membership::read_description(entry),
            vlan: membership::read_vlan(shm, index),
            addresses: if g.protocol == Protocol::Switch.code() {
                membership::read_addresses(shm, index)
                    .into_iter()
                    .map(|(vlan, mac)| ((vlan != crate::switch::UNTAGGED).then_some(vlan), mac))
                    .collect()
            } else {
                Vec::new()
            },
            state,
            reading: caps & CAP_READ != 0 && state == PortState::Active,
            writing: caps & CAP_WRITE != 0 && state == PortState::Active,
            tx_frames: entry.tx_frames.load(r),
            tx_bytes: entry.tx_bytes.load(r),
            rx_frames: entry.rx_frames.load(r),
            rx_bytes: entry.rx_bytes.load(r),
            rx_dropped: entry.rx_dropped.load(r),
            tx_dropped: entry.tx_dropped.load(r),
        });
    }
    ports.extend(held_slots(shm, &held));
    ports.sort_by_key(|p| p.index);
    Status {
        path: path.into(),
        protocol: Protocol::from_code(g.protocol).unwrap_or_default(),
        max_ports: g.max_ports,
        mtu: g.mtu,
        ring_slots: g.ring_slots,
        ring_bytes: g.ring_bytes,
        memory: g.total_size,
        lossless: g.lossless(),
        membership: membership::counts(shm),
        ports,
    }
}

/// Slots that are locked but not joined, with the pid holding each lock
/// where it can be seen. Nothing of theirs in the port table is trusted.
fn held_slots(shm: &SharedFile, held: &[u32]) -> Vec<PortStatus> {
    if held.is_empty() {
        return Vec::new();
    }
    let holders = liveness::holders(shm.file(), shm.geometry().max_ports);
    held.iter()
        .map(|&index| PortStatus {
            index,
            pid: holders
                .iter()
                .find(|&&(slot, _)| slot == index)
                .map_or(0, |&(_, pid)| pid),
            description: String::new(),
            vlan: Vlan::Transparent,
            addresses: Vec::new(),
            state: PortState::Held,
            reading: false,
            writing: false,
            tx_frames: 0,
            tx_bytes: 0,
            rx_frames: 0,
            rx_bytes: 0,
            rx_dropped: 0,
            tx_dropped: 0,
        })
        .collect()
}
