//! What a network is made with ([`Config`]) and how a port joins it
//! ([`JoinOptions`]).

use crate::error::{describe_geometry, OpenError};
use crate::ethernet::Vlan;
use crate::shm::layout::{Geometry, FLAG_LOSSLESS};

/// How frames are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Every frame reaches every other reading port, like an Ethernet hub.
    #[default]
    Hub,
    /// A learning switch: a unicast frame to an address that was seen
    /// sending from some port reaches only that port; broadcast, multicast
    /// and unknown destinations reach every port.
    Switch,
}

impl Protocol {
    pub(crate) fn code(self) -> u32 {
        match self {
            Protocol::Hub => 0,
            Protocol::Switch => 1,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Protocol> {
        match code {
            0 => Some(Protocol::Hub),
            1 => Some(Protocol::Switch),
            _ => None,
        }
    }

    /// The name used on command lines and in status output.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Hub => "hub",
            Protocol::Switch => "switch",
        }
    }
}

/// Parameters of a new network. `Config::default()` is a 64-port lossy hub
/// with a 1514-byte MTU (an Ethernet frame without FCS), buffering up to
/// 256 frames and 256 KiB per sender, mode 0770.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How frames are delivered.
    pub protocol: Protocol,
    /// Most ports that can be joined at once (1..=4096).
    pub max_ports: u32,
    /// Largest frame, in bytes (64..=65535).
    pub mtu: u32,
    /// Frames buffered per sender; a power of two (2..=65536). `None`:
    /// 256, or one per KiB of the ring's bytes if that is more (4096 for
    /// 4 MiB), so that a ring made larger holds more small frames too.
    pub ring_slots: Option<u32>,
    /// Bytes of frames buffered per sender; a power of two, at least two
    /// frames of `mtu` bytes, at most 1 GiB. `None`: 256 KiB, or four
    /// frames of `mtu` bytes if that is more. Frames take only their own
    /// length (rounded up to 8 bytes), so memory follows this, not the MTU.
    pub ring_bytes: Option<u64>,
    /// Senders wait for the slowest live reader instead of overwriting.
    pub lossless: bool,
    /// Permission bits of the network directory; its files get the same
    /// read/write bits.
    pub mode: u32,
    /// Group owning the network (a gid), if not the creator's.
    pub group: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            protocol: Protocol::Hub,
            max_ports: 64,
            mtu: 1514,
            ring_slots: None,
            ring_bytes: None,
            lossless: false,
            mode: 0o770,
            group: None,
        }
    }
}

impl Config {
    /// The mode the network directory gets: [`Config::mode`], made sticky
    /// (as /tmp) when others than the owner may write to it, so that
    /// members can remove or rename only their own files in it.
    pub fn directory_mode(&self) -> u32 {
        crate::files::dir_mode(self.mode)
    }

    pub(crate) fn geometry(&self) -> Result<Geometry, OpenError> {
        if self.mode & !0o7777 != 0 {
            return Err(OpenError::InvalidConfig(format!(
                "mode {:o} is not a permission mode",
                self.mode
            )));
        }
        if self.mode & 0o700 != 0o700 {
            return Err(OpenError::InvalidConfig(format!(
                "mode {:04o} would lock the owner out; give the owner rwx (0700)",
                self.mode
            )));
        }
        let flags = if self.lossless { FLAG_LOSSLESS } else { 0 };
        let ring_bytes = self
            .ring_bytes
            .unwrap_or_else(|| Geometry::default_ring_bytes(self.mtu));
        let ring_slots = self
            .ring_slots
            .unwrap_or_else(|| Geometry::default_ring_slots(ring_bytes));
        Geometry::compute(
            self.protocol.code(),
            self.max_ports,
            self.mtu,
            ring_slots,
            ring_bytes,
            flags,
        )
        .map_err(|e| OpenError::InvalidConfig(describe_geometry(&e)))
    }
}

/// How a port joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOptions {
    /// Shown by `ipn status` (at most 64 bytes are kept).
    pub description: String,
    /// Receive frames (false: a write-only port, never waited for).
    pub read: bool,
    /// Send frames.
    pub write: bool,
    /// 802.1Q membership: transparent (the default), access or trunk.
    pub vlan: Vlan,
    /// Take offloads: every frame sent and received is preceded by a
    /// 10-byte virtio-net header (as on a TAP with `IFF_VNET_HDR`), and may
    /// be a GSO frame of up to 64 KiB or have its checksum left to complete.
    /// Such frames reach other offload ports whole; ports without offloads
    /// get the wire frames they stand for, cut and checksummed in software.
    pub offload: bool,
    /// Busy polling, as Linux's `SO_BUSY_POLL`: a receive that finds
    /// nothing keeps looking this long before it sleeps, every time, for
    /// the lowest latency at any rate, at the cost of up to this much CPU
    /// per receive. Zero (the default): look ahead only while frames come
    /// closer together than a wake-up costs, within 10 % of a CPU (see
    /// the receive path's pacing).
    pub busy_poll: std::time::Duration,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            description: String::new(),
            read: true,
            write: true,
            vlan: Vlan::Transparent,
            offload: false,
            busy_poll: std::time::Duration::ZERO,
        }
    }
}

impl JoinOptions {
    /// The longest [`JoinOptions::busy_poll`]: 100 ms.
    pub const MAX_BUSY_POLL: std::time::Duration = std::time::Duration::from_millis(100);

    /// Checks what the port's own options ask for: its VLAN membership,
    /// and a busy poll of at most [`JoinOptions::MAX_BUSY_POLL`].
    #[cfg_attr(loom, allow(dead_code))] // joining is not modelled
    pub(crate) fn validate(&self) -> Result<(), OpenError> {
        self.vlan.validate().map_err(OpenError::InvalidConfig)?;
        if self.busy_poll > Self::MAX_BUSY_POLL {
            return Err(OpenError::InvalidConfig(format!(
                "busy poll of {:?} asked: at most {:?} (it is spent spinning on every \
                 receive that finds nothing)",
                self.busy_poll,
                Self::MAX_BUSY_POLL
            )));
        }
        Ok(())
    }

    /// Read-write port with a description.
    pub fn described(description: impl Into<String>) -> Self {
        JoinOptions {
            description: description.into(),
            ..Default::default()
        }
    }
}
