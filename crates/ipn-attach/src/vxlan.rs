//! `vxlan`: a VXLAN tunnel endpoint (RFC 7348), so that ipn networks on
//! different hosts are one Ethernet segment, and so that an ipn network and
//! a Linux kernel `vxlan` device (or Open vSwitch, or a hardware VTEP) are.
//!
//! Owns one UDP socket (default `0.0.0.0:4789`, the IANA port). Every frame
//! is carried in one datagram: the 8-byte VXLAN header (flags `0x08`, the
//! I bit; 24-bit VNI; the other bits zero), then the Ethernet frame.
//!
//! - Sending: a frame goes to every configured remote (head-end
//!   replication, as the kernel does with `bridge fdb append
//!   00:00:00:00:00:00 dst IP`), or to the multicast group; unless its
//!   destination MAC was learned behind one remote, then only there.
//!   Addresses are learned per VLAN (the frame's 802.1Q tag, if any), as
//!   the network's switch learns them: a MAC behind one remote in VLAN 10
//!   says nothing of the same MAC in VLAN 20. Addresses and tags are read
//!   through [`ipn::ethernet::Frame`].
//! - Receiving: a datagram is a frame only if its I bit is set, its VNI is
//!   ours and it holds at least an Ethernet header. Anything else is
//!   counted ([`VxlanStats`]) and dropped; what comes from the network
//!   never stops the endpoint.
//!
//! Sizes: the outer IPv4 packet is 20 (IP) + 8 (UDP) + 8 (VXLAN) + the
//! frame, so a kernel vxlan device needs 50 bytes of headroom below its
//! lower device's MTU (70 over IPv6): Linux sets a vxlan device's MTU to
//! the lower device's minus 50 for that reason. Datagrams are never
//! fragmented (don't-fragment set, `IP_PMTUDISC_DO`): one larger than the
//! path's MTU is refused by the kernel, counted as `oversized` for its
//! remote, and reported ([`Vxlan::take_oversized`], whose text names the
//! sizes and the MTU to set inside). A GSO run never holds a datagram
//! over the path's MTU as last probed ([`Vxlan::refresh`]): the kernel
//! would refuse the whole run, and quinn-udp would take that for a lack
//! of GSO and stop using it.
//!
//! Counters per remote ([`Vxlan::remotes`]): each configured remote and
//! the group, and each VTEP heard from (at most [`MAX_REMOTES`] in all,
//! the rest counted together): datagrams and bytes each way, drops by
//! reason, and the addresses learned behind it.
//!
//! Offloads (on unless [`VxlanConfig::offload`] is off, and where the
//! kernel has UDP GSO and GRO, Linux 4.18 and 5.0): the endpoint is a
//! [`Link`] with offloads, so its port takes TSO frames of up to 64 KiB
//! whole, with their virtio-net header.
//! - Sending: a TSO frame is cut here into wire segments (the network's
//!   own segmenter, checksums completed), each put after its VXLAN header,
//!   back to back, every datagram but the last the same size, and handed
//!   to the kernel in one `sendmsg` with `UDP_SEGMENT`; frames without GSO
//!   are gathered the same way while they go to the same remote with the
//!   same size, and sent when the bridge has no more ([`Link::flush`]).
//! - Receiving: with `UDP_GRO` one `recvmsg` returns many datagrams of one
//!   sender; consecutive TCP segments of one flow in them are joined back
//!   into one TSO frame ([`crate::gro`]) so that ports with offloads take
//!   a stream in 64 KiB frames; ports without get wire frames, cut by the
//!   network as from any port with offloads.
//!
//! The socket side (cmsgs, GSO/GRO probing and fallbacks) is `quinn-udp`.
//!
//! The Linux kernel's vxlan uses UDP port 8472 when created without
//! `dstport`; create kernel devices with `dstport 4789` to talk to this
//! endpoint's default, or pass `port: 8472` here.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::CString;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use ipn::ethernet::{self, Frame, Mac, Tci};
use ipn::offload::{self, HdrLayout, VirtioNetHdr};
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};

use crate::gro::Coalescer;
use crate::sys::udp as sys;
use crate::Link;

/// The IANA-assigned VXLAN UDP port.
pub const IANA_PORT: u16 = 4789;
/// The port the Linux kernel's vxlan uses when created without `dstport`.
pub const LINUX_DEFAULT_PORT: u16 = 8472;
/// Bytes of the VXLAN header before the frame.
pub const HEADER_LEN: usize = 8;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// Headroom a kernel vxlan device over IPv4 needs below its lower device's
/// MTU: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet header (14).
pub const IPV4_HEADROOM: usize = 50;
/// The same over IPv6 (outer header of 40 bytes).
pub const IPV6_HEADROOM: usize = 70;
/// Remotes counted each on their own: the configured ones and the group,
/// then VTEPs heard from while there is room; the rest are counted
/// together, so that datagrams from forged sources cannot grow the table.
pub const MAX_REMOTES: usize = 256;
/// Bytes of a UDP header.
const UDP_HEADER: usize = 8;

/// The I flag: the VNI field is valid.
const FLAG_I: u8 = 0x08;
/// Learned addresses kept at most (like the kernel's fdb, bounded).
const FDB_CAPACITY: usize = 4096;
/// A learned address not heard from for this long is forgotten (the
/// kernel's default ageing time).
const FDB_AGEING: Duration = Duration::from_secs(300);
/// Bad datagrams skipped in one `recv` before returning to the caller.
const SKIP_LIMIT: usize = 256;
/// Receive buffers of one `recvmmsg` with offloads, each room for one
/// GRO batch (at most 64 KiB).
const RX_SLOTS: usize = 8;
/// Bytes of socket buffer asked for each way.
const SOCKET_BUFFER: libc::c_int = 4 << 20;
const RX_SLOT: usize = 65536;

/// Writes the VXLAN header for `vni` into the first [`HEADER_LEN`] bytes
/// of `out`.
///
/// # Panics
/// If `out` is shorter than [`HEADER_LEN`].
pub fn write_header(vni: u32, out: &mut [u8]) {
    let vni = vni & MAX_VNI;
    out[..HEADER_LEN].copy_from_slice(&[
        FLAG_I,
        0,
        0,
        0,
        (vni >> 16) as u8,
        (vni >> 8) as u8,
        vni as u8,
        0,
    ]);
}

/// Why a received datagram is not a frame for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Shorter than a VXLAN header plus an Ethernet header.
    TooShort,
    /// The I flag is not set: the VNI field is not valid.
    NoVni,
    /// A valid datagram for another VXLAN network.
    OtherVni(u32),
}

/// The frame inside `datagram`, if it is a VXLAN datagram for `vni`.
pub fn parse(datagram: &[u8], vni: u32) -> Result<&[u8], Rejected> {
    if datagram.len() < HEADER_LEN + ethernet::HEADER_LEN {
        return Err(Rejected::TooShort);
    }
    if datagram[0] & FLAG_I == 0 {
        return Err(Rejected::NoVni);
    }
    // Other flag and reserved bits are ignored on receipt (RFC 7348 5).
    let got = u32::from_be_bytes([0, datagram[4], datagram[5], datagram[6]]);
    if got != vni {
        return Err(Rejected::OtherVni(got));
    }
    Ok(&datagram[HEADER_LEN..])
}

/// How to set up a [`Vxlan`] endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    /// The VXLAN network identifier, 0 to [`MAX_VNI`].
    pub vni: u32,
    /// Address to bind; `None`: every address (`0.0.0.0`, or `[::]` when a
    /// remote is IPv6).
    pub local: Option<IpAddr>,
    /// UDP port to bind; remotes given without a port are reached there too.
    pub port: u16,
    /// Remote VTEPs every frame is sent to (head-end replication).
    pub remotes: Vec<SocketAddr>,
    /// Instead of (or besides) remotes: an IPv4 multicast group and the
    /// interface to join it on; frames are sent to the group.
    pub group: Option<(Ipv4Addr, String)>,
    /// Learn which remote each source MAC is behind, and send unicast
    /// frames there only.
    pub learning: bool,
    /// Use UDP GSO and GRO and take offload frames (see the module doc),
    /// where the kernel has them.
    pub offload: bool,
}

impl VxlanConfig {
    /// A configuration with the IANA port, learning on, and nothing else.
    pub fn new(vni: u32) -> VxlanConfig {
        VxlanConfig {
            vni,
            local: None,
            port: IANA_PORT,
            remotes: Vec::new(),
            group: None,
            learning: true,
            offload: true,
        }
    }
}

/// Why a [`Vxlan`] endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    /// The VNI does not fit in 24 bits.
    #[error("VNI {0} out of range: a VNI is 0 to 16777215")]
    BadVni(u32),
    /// Neither a remote nor a group: frames would go nowhere.
    #[error("no remote and no multicast group: give at least one remote VTEP")]
    NoDestination,
    /// The group is not an IPv4 multicast address.
    #[error("{0} is not an IPv4 multicast address (224.0.0.0/4)")]
    NotMulticast(Ipv4Addr),
    /// An IPv6 local address with an IPv4 group, or the like.
    #[error("cannot mix {0}")]
    Mixed(String),
    /// No interface of that name.
    #[error("interface {name}: no such interface")]
    NoInterface {
        /// The name given.
        name: String,
    },
    /// Binding the UDP socket failed.
    #[error("binding UDP {addr}: {source}{hint}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
        /// What to do about it (may be empty).
        hint: String,
    },
    /// Another socket setting failed.
    #[error("{what}: {source}")]
    Socket {
        /// Which setting.
        what: String,
        /// What the system said.
        source: io::Error,
    },
}

/// What a [`Vxlan`] endpoint saw and did, beyond the bridge's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VxlanStats {
    /// Datagrams received that carried a frame for our VNI.
    pub received: u64,
    /// Datagrams dropped: too short, or the I flag not set (or truncated).
    pub malformed: u64,
    /// Well-formed datagrams for another VNI, dropped.
    pub other_vni: u64,
    /// Datagrams sent (one frame flooded to three remotes is three).
    pub sent: u64,
    /// Datagrams not sent: larger than the path's MTU (`EMSGSIZE`).
    pub oversized: u64,
    /// Datagrams the system refused to send for other reasons (no
    /// route...).
    pub send_errors: u64,
    /// Receive errors reported by the socket (e.g. ICMP errors), skipped.
    pub recv_errors: u64,
    /// Unicast frames sent to one learned remote instead of all.
    pub unicast: u64,
    /// System calls that sent datagrams (fewer than `sent` with GSO).
    pub send_calls: u64,
    /// System calls that received datagrams (fewer than `received` with
    /// GRO).
    pub recv_calls: u64,
    /// TCP segments from remotes joined into a larger frame (software GRO).
    pub joined: u64,
}

/// What went to and came from one remote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Datagrams sent to it.
    pub tx_datagrams: u64,
    /// Their bytes (UDP payload: VXLAN header and frame).
    pub tx_bytes: u64,
    /// Datagrams from it that carried a frame for our VNI.
    pub rx_datagrams: u64,
    /// Their bytes (UDP payload).
    pub rx_bytes: u64,
    /// Datagrams not sent: larger than the path's MTU.
    pub oversized: u64,
    /// Datagrams the system refused to send for other reasons.
    pub send_errors: u64,
    /// Datagrams from it dropped: too short, no I flag, or truncated.
    pub bad_header: u64,
    /// Well-formed datagrams from it for another VNI, dropped.
    pub other_vni: u64,
}

impl RemoteStats {
    fn add(&mut self, other: &RemoteStats) {
        self.tx_datagrams += other.tx_datagrams;
        self.tx_bytes += other.tx_bytes;
        self.rx_datagrams += other.rx_datagrams;
        self.rx_bytes += other.rx_bytes;
        self.oversized += other.oversized;
        self.send_errors += other.send_errors;
        self.bad_header += other.bad_header;
        self.other_vni += other.other_vni;
    }
}

/// What a remote is to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemoteKind {
    /// Given as a remote (`--remote`): flooded frames go there.
    Configured,
    /// The multicast group flooded frames go to.
    Group,
    /// A VTEP heard from on the group: unicast to addresses learned
    /// behind it goes there.
    Learned,
    /// A sender that is not a configured remote (unicast mode): its frames
    /// are taken, nothing is sent to it.
    Unconfigured,
    /// Every remote beyond [`MAX_REMOTES`], counted together.
    Other,
}

impl RemoteKind {
    /// One word for it: `remote`, `group`, `learned`, `unconfigured`,
    /// `other`.
    pub fn name(self) -> &'static str {
        match self {
            RemoteKind::Configured => "remote",
            RemoteKind::Group => "group",
            RemoteKind::Learned => "learned",
            RemoteKind::Unconfigured => "unconfigured",
            RemoteKind::Other => "other",
        }
    }
}

/// One remote's counters and learned addresses ([`Vxlan::remotes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReport {
    /// Its address and VXLAN port; `None` for [`RemoteKind::Other`].
    pub addr: Option<SocketAddr>,
    /// What it is to us.
    pub kind: RemoteKind,
    /// The MTU of the path there, as last probed (`None`: not known).
    pub path_mtu: Option<u32>,
    /// What went there and came from there.
    pub stats: RemoteStats,
    /// The (VLAN, address) pairs learned behind it and still fresh.
    pub addresses: Vec<(Option<u16>, Mac)>,
}

/// Frames not sent because their datagram was larger than the path's MTU
/// ([`Vxlan::take_oversized`]); its `Display` is the warning to print,
/// with the sizes and the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    /// Where the first of them was going.
    pub to: SocketAddr,
    /// Its UDP payload: VXLAN header and frame.
    pub datagram: usize,
    /// The path's MTU as the kernel knew it then (`None`: not known).
    pub path_mtu: Option<u32>,
    /// Datagrams refused as too big since the last report.
    pub count: u64,
}

impl Oversized {
    /// Bytes of the outer IP and UDP headers towards [`Oversized::to`].
    fn outer_headers(&self) -> usize {
        UDP_HEADER + if self.to.is_ipv4() { 20 } else { 40 }
    }

    /// The frame's length.
    pub fn frame_len(&self) -> usize {
        self.datagram.saturating_sub(HEADER_LEN)
    }

    /// The outer IP packet's length.
    pub fn packet_len(&self) -> usize {
        self.datagram + self.outer_headers()
    }

    /// The largest IP MTU inside the tunnel that fits the path: its MTU
    /// less [`IPV4_HEADROOM`] (or [`IPV6_HEADROOM`]).
    pub fn inner_mtu(&self) -> Option<usize> {
        let headroom = if self.to.is_ipv4() {
            IPV4_HEADROOM
        } else {
            IPV6_HEADROOM
        };
        self.path_mtu
            .map(|mtu| (mtu as usize).saturating_sub(headroom))
    }
}

impl fmt::Display for Oversized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (family, headroom) = if self.to.is_ipv4() {
            ("IPv4", IPV4_HEADROOM)
        } else {
            ("IPv6", IPV6_HEADROOM)
        };
        let (frame, packet) = (self.frame_len(), self.packet_len());
        write!(
            f,
            "a {frame}-byte frame to {} makes a {packet}-byte {family} packet, ",
            self.to
        )?;
        match (self.path_mtu, self.inner_mtu()) {
            (Some(mtu), Some(inner)) if packet > mtu as usize => write!(
                f,
                "over the underlay's MTU of {mtu} on the way there: not sent, and counted \
                 as oversized (`ipn status`){}. Set the MTU of the network's interfaces \
                 (TAPs, VMs) to {inner} at most (the underlay's {mtu} less {headroom} for \
                 VXLAN over {family}), or raise the underlay's MTU to {packet}",
                self.more()
            ),
            _ => write!(
                f,
                "which the kernel refused as too big (EMSGSIZE): not sent, and counted as \
                 oversized (`ipn status`){}. Set the MTU of the network's interfaces (TAPs, \
                 VMs) to the underlay's MTU less {headroom} (VXLAN over {family}) at most",
                self.more()
            ),
        }
    }
}

impl Oversized {
    fn more(&self) -> String {
        match self.count {
            0 | 1 => String::new(),
            n => format!("; {n} such datagrams since the last warning"),
        }
    }
}

/// Per-remote counters (see [`MAX_REMOTES`]).
#[derive(Debug, Default)]
struct Remotes {
    table: HashMap<SocketAddr, Remote>,
    /// The configured remotes and the group, in the order given.
    configured: Vec<SocketAddr>,
    /// Everything beyond the table's room.
    other: RemoteStats,
}

#[derive(Debug, Clone, Copy)]
struct Remote {
    kind: RemoteKind,
    path_mtu: Option<u32>,
    stats: RemoteStats,
}

impl Remotes {
    /// The counters of `addr`, made as a `kind` if there is room.
    fn stats(&mut self, addr: SocketAddr, kind: RemoteKind) -> &mut RemoteStats {
        let room = self.table.len() < MAX_REMOTES;
        match self.table.entry(addr) {
            Entry::Occupied(e) => &mut e.into_mut().stats,
            Entry::Vacant(v) if room => {
                &mut v
                    .insert(Remote {
                        kind,
                        path_mtu: None,
                        stats: RemoteStats::default(),
                    })
                    .stats
            }
            Entry::Vacant(_) => &mut self.other,
        }
    }

    /// The largest datagram (UDP payload) the path to `to` takes, as last
    /// probed; unbounded if not known.
    fn payload_limit(&self, to: SocketAddr) -> usize {
        let outer = UDP_HEADER + if to.is_ipv4() { 20 } else { 40 };
        match self.table.get(&to).and_then(|r| r.path_mtu) {
            Some(mtu) => (mtu as usize).saturating_sub(outer),
            None => usize::MAX,
        }
    }
}

/// What the forwarding table is keyed by: the frame's VLAN (`None`:
/// untagged) and an address.
type FdbKey = (Option<u16>, Mac);

/// The key of `frame`'s destination or source address.
fn fdb_key(frame: &Frame<'_>, mac: Mac) -> FdbKey {
    (frame.tag().map(Tci::vid), mac)
}

/// A VXLAN tunnel endpoint: a [`Link`] whose frames travel in UDP.
#[derive(Debug)]
pub struct Vxlan {
    socket: UdpSocket,
    vni: u32,
    /// Where flooded frames go: the remotes, or the group.
    flood: Vec<SocketAddr>,
    /// Whether any source may be learned (multicast), or only `flood`'s.
    learn_any: bool,
    learning: bool,
    /// The VXLAN port, where learned VTEPs are sent to.
    port: u16,
    /// Where each (VLAN, MAC) was last seen from, and when.
    fdb: HashMap<FdbKey, (SocketAddr, Instant)>,
    out: Vec<u8>,
    stats: VxlanStats,
    description: String,
    /// Counters per remote.
    remotes: Remotes,
    /// Frames refused as too big, not yet reported.
    oversized: Option<Oversized>,
    /// The local address asked for, and the group's interface: where
    /// path MTUs are probed from.
    local: Option<IpAddr>,
    multicast_if: Option<(Ipv4Addr, u32)>,
    /// quinn-udp's view of the socket: GSO and GRO support.
    udp: UdpSocketState,
    /// GSO and GRO in use (asked for and available).
    offload: bool,
    /// Datagrams gathered for one GSO send.
    batch: Batch,
    /// Where a frame goes, reused.
    destinations: Vec<SocketAddr>,
    /// Where [`Link::send_vnet`] cuts a frame with offloads, one wire
    /// frame at a time; kept, so that no frame allocates.
    cut_buf: Vec<u8>,
    rx: Rx,
}

/// Datagrams gathered for one send: back to back, all `stride` bytes but
/// the last.
#[derive(Debug, Default)]
struct Batch {
    buf: Vec<u8>,
    to: Option<SocketAddr>,
    stride: usize,
    count: usize,
    /// The last datagram was shorter, or over `limit`: nothing more may
    /// follow it.
    closed: bool,
    /// The largest datagram the path to `to` takes (see
    /// [`Remotes::payload_limit`]).
    limit: usize,
}

/// The receive side with offloads.
#[derive(Debug, Default)]
struct Rx {
    slots: Vec<u8>,
    gro: Coalescer,
}

impl Vxlan {
    /// Binds the UDP socket and, with a group, joins it.
    pub fn open(config: &VxlanConfig) -> Result<Vxlan, VxlanError> {
        if config.vni > MAX_VNI {
            return Err(VxlanError::BadVni(config.vni));
        }
        if config.remotes.is_empty() && config.group.is_none() {
            return Err(VxlanError::NoDestination);
        }
        let any_v6 = config.remotes.iter().any(SocketAddr::is_ipv6);
        let local = match config.local {
            Some(ip) => ip,
            None if any_v6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        if local.is_ipv4() && any_v6 {
            return Err(VxlanError::Mixed(format!(
                "an IPv4 local address ({local}) with IPv6 remotes"
            )));
        }
        let mut flood = config.remotes.clone();
        let mut bind_ip = local;
        if let Some((group, _)) = &config.group {
            if !group.is_multicast() {
                return Err(VxlanError::NotMulticast(*group));
            }
            if local.is_ipv6() {
                return Err(VxlanError::Mixed(format!(
                    "an IPv4 group ({group}) with an IPv6 local address or remotes"
                )));
            }
            // A socket bound to a unicast address does not receive what is
            // sent to the group: bind to every address, send from `local`'s
            // interface.
            bind_ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            flood.push(SocketAddr::new(IpAddr::V4(*group), config.port));
        }
        let addr = SocketAddr::new(bind_ip, config.port);
        let socket = UdpSocket::bind(addr).map_err(|source| {
            let hint = match source.kind() {
                io::ErrorKind::AddrInUse => format!(
                    "; is a kernel vxlan device with dstport {} (or another ipn vxlan) \
                     using it on this host? Use another --port",
                    config.port
                ),
                io::ErrorKind::AddrNotAvailable => {
                    "; --local must be an address of this host".to_string()
                }
                io::ErrorKind::PermissionDenied => {
                    "; ports below 1024 need root or CAP_NET_BIND_SERVICE".to_string()
                }
                _ => String::new(),
            };
            VxlanError::Bind { addr, source, hint }
        })?;
        let socket_err = |what: &str| {
            let what = what.to_string();
            move |source| VxlanError::Socket { what, source }
        };
        socket
            .set_nonblocking(true)
            .map_err(socket_err("non-blocking"))?;
        let udp = UdpSocketState::new(UdpSockRef::from(&socket))
            .map_err(socket_err("setting up the UDP socket"))?;
        // Never fragmented: a datagram over the path's MTU is refused,
        // counted and reported (see the module doc).
        sys::forbid_fragments(&socket, bind_ip.is_ipv6()).map_err(socket_err("IP_MTU_DISCOVER"))?;
        let offload = config.offload && udp.max_gso_segments() > 1 && udp.gro_segments() > 1;
        // Room for bursts while we are not scheduled: a tunnel's datagrams
        // come as fast as the kernel on the other side sends them. Beyond
        // net.core.rmem_max only with CAP_NET_ADMIN; best effort.
        sys::grow_buffers(&socket, SOCKET_BUFFER);
        let mut description = format!("vxlan vni {}", config.vni);
        let mut multicast_if = None;
        if let Some((group, dev)) = &config.group {
            let index = interface_index(dev)?;
            let interface = match config.local {
                Some(IpAddr::V4(ip)) => ip,
                _ => Ipv4Addr::UNSPECIFIED,
            };
            sys::join_group(&socket, *group, interface, index)
                .map_err(socket_err(&format!("joining {group} on {dev}")))?;
            sys::set_multicast_if(&socket, interface, index)
                .map_err(socket_err(&format!("sending to {group} through {dev}")))?;
            multicast_if = Some((interface, index));
            // Our own datagrams must not come back as frames from the wire.
            socket
                .set_multicast_loop_v4(false)
                .map_err(socket_err("IP_MULTICAST_LOOP"))?;
            description += &format!(" <-> group {group}:{} on {dev}", config.port);
        }
        if !config.remotes.is_empty() {
            let list: Vec<String> = config.remotes.iter().map(|r| r.to_string()).collect();
            description += &format!(" <-> {}", list.join(", "));
        }
        let mut remotes = Remotes::default();
        for &remote in &flood {
            let kind = if remote.ip().is_multicast() {
                RemoteKind::Group
            } else {
                RemoteKind::Configured
            };
            remotes.stats(remote, kind);
            remotes.configured.push(remote);
        }
        let mut vxlan = Vxlan {
            socket,
            vni: config.vni,
            flood,
            learn_any: config.group.is_some(),
            learning: config.learning,
            port: config.port,
            fdb: HashMap::new(),
            out: Vec::with_capacity(HEADER_LEN + 65536),
            stats: VxlanStats::default(),
            description,
            remotes,
            oversized: None,
            local: config.local,
            multicast_if,
            udp,
            offload,
            batch: Batch::default(),
            destinations: Vec::new(),
            cut_buf: Vec::new(),
            rx: Rx::default(),
        };
        vxlan.refresh();
        Ok(vxlan)
    }

    /// Probes the MTU of the path to every remote we send to again (a
    /// route or an ICMP "too big" may have changed it). Cheap: a few
    /// system calls per remote; call it about once a second.
    pub fn refresh(&mut self) {
        let (local, multicast_if) = (self.local, self.multicast_if);
        for (addr, remote) in self.remotes.table.iter_mut() {
            if remote.kind != RemoteKind::Unconfigured {
                remote.path_mtu = sys::path_mtu(*addr, local, multicast_if).ok();
            }
        }
    }

    /// Every remote's counters and the addresses learned behind it: the
    /// configured remotes and the group in the order given, then the
    /// others by address, then what was counted together beyond
    /// [`MAX_REMOTES`] (if anything was).
    pub fn remotes(&self) -> Vec<RemoteReport> {
        let mut behind: HashMap<SocketAddr, Vec<(Option<u16>, Mac)>> = HashMap::new();
        for (&(vlan, mac), &(vtep, seen)) in &self.fdb {
            if seen.elapsed() < FDB_AGEING {
                behind.entry(vtep).or_default().push((vlan, mac));
            }
        }
        let mut others: Vec<SocketAddr> = self
            .remotes
            .table
            .keys()
            .filter(|a| !self.remotes.configured.contains(a))
            .copied()
            .collect();
        others.sort();
        let mut reports: Vec<RemoteReport> = self
            .remotes
            .configured
            .iter()
            .chain(&others)
            .filter_map(|addr| {
                let remote = self.remotes.table.get(addr)?;
                let mut addresses = behind.remove(addr).unwrap_or_default();
                addresses.sort();
                Some(RemoteReport {
                    addr: Some(*addr),
                    kind: remote.kind,
                    path_mtu: remote.path_mtu,
                    stats: remote.stats,
                    addresses,
                })
            })
            .collect();
        let mut rest: Vec<_> = behind.into_values().flatten().collect();
        if self.remotes.other != RemoteStats::default() || !rest.is_empty() {
            rest.sort();
            reports.push(RemoteReport {
                addr: None,
                kind: RemoteKind::Other,
                path_mtu: None,
                stats: self.remotes.other,
                addresses: rest,
            });
        }
        reports
    }

    /// Frames refused as too big since the last call, if any: the first
    /// of them and how many. Print it (it says what to do), at a rate of
    /// your choosing: they are counted meanwhile.
    pub fn take_oversized(&mut self) -> Option<Oversized> {
        self.oversized.take()
    }

    /// The VTEP a datagram from `from` came from: a configured remote of
    /// that address, or the address at the VXLAN port.
    fn vtep_of(&self, from: SocketAddr) -> (SocketAddr, RemoteKind) {
        match self.flood.iter().find(|r| r.ip() == from.ip()) {
            Some(remote) => (*remote, RemoteKind::Configured),
            // A VTEP sends from any source port (the kernel hashes flows
            // over a range) and listens on the VXLAN port.
            None if self.learn_any => (SocketAddr::new(from.ip(), self.port), RemoteKind::Learned),
            None => (
                SocketAddr::new(from.ip(), self.port),
                RemoteKind::Unconfigured,
            ),
        }
    }

    /// Counts a datagram to `to` the system refused: as oversized (and
    /// to be reported) if it was too big.
    fn refused(&mut self, to: SocketAddr, datagram: usize, e: &io::Error) {
        let stats = self.remotes.stats(to, RemoteKind::Learned);
        if e.raw_os_error() != Some(libc::EMSGSIZE) {
            stats.send_errors += 1;
            self.stats.send_errors += 1;
            return;
        }
        stats.oversized += 1;
        self.stats.oversized += 1;
        if let Some(o) = &mut self.oversized {
            o.count += 1;
            return;
        }
        let path_mtu = sys::path_mtu(to, self.local, self.multicast_if).ok();
        if let Some(remote) = self.remotes.table.get_mut(&to) {
            remote.path_mtu = path_mtu;
        }
        self.oversized = Some(Oversized {
            to,
            datagram,
            path_mtu,
            count: 1,
        });
    }

    /// Counts `count` datagrams of `bytes` in all sent to `to`.
    fn sent(&mut self, to: SocketAddr, count: usize, bytes: usize) {
        self.stats.sent += count as u64;
        let stats = self.remotes.stats(to, RemoteKind::Learned);
        stats.tx_datagrams += count as u64;
        stats.tx_bytes += bytes as u64;
    }

    /// Whether UDP GSO and GRO are in use.
    pub fn offloading(&self) -> bool {
        self.offload
    }

    /// Where `frame` goes: the remote its destination was learned behind,
    /// or every remote (and the group); into `self.destinations`.
    fn route(&mut self, frame: &[u8]) {
        let unicast = match Frame::new_checked(frame) {
            Some(view) if self.learning && !ethernet::is_group(&view.dst()) => {
                self.learned(fdb_key(&view, view.dst()))
            }
            _ => None,
        };
        self.destinations.clear();
        match unicast {
            Some(vtep) => {
                self.stats.unicast += 1;
                self.destinations.push(vtep);
            }
            None => self.destinations.extend_from_slice(&self.flood),
        }
    }

    /// Adds `frame`, after its VXLAN header, to the datagrams for `to`,
    /// sending what was gathered first if it cannot follow.
    fn gather(&mut self, to: SocketAddr, frame: &[u8]) {
        let len = HEADER_LEN + frame.len();
        let b = &self.batch;
        let fits = b.to == Some(to)
            && !b.closed
            && b.count < self.udp.max_gso_segments()
            && len <= b.stride
            && b.buf.len() + len <= 65535 - 8;
        if b.count > 0 && !fits {
            self.flush_batch();
        }
        if self.batch.count == 0 {
            let limit = self.remotes.payload_limit(to);
            let b = &mut self.batch;
            b.buf.clear();
            b.to = Some(to);
            b.stride = len;
            b.closed = false;
            b.limit = limit;
        }
        let b = &mut self.batch;
        let at = b.buf.len();
        b.buf.resize(at + HEADER_LEN, 0);
        write_header(self.vni, &mut b.buf[at..]);
        b.buf.extend_from_slice(frame);
        b.count += 1;
        // A datagram over the path's MTU goes alone, to be refused and
        // counted: in a GSO run it would get the whole run refused.
        b.closed = len < b.stride || len > b.limit;
    }

    /// Sends the datagrams gathered: one `sendmsg`, with `UDP_SEGMENT`
    /// when there are several. If the kernel refuses the batch (say, the
    /// path's MTU fell below a segment since it was last probed), each
    /// datagram goes on its own, and those too big are counted as
    /// oversized.
    fn flush_batch(&mut self) {
        let (Some(to), count) = (self.batch.to, self.batch.count) else {
            return;
        };
        if count == 0 {
            return;
        }
        self.batch.count = 0;
        let buf = std::mem::take(&mut self.batch.buf);
        let stride = self.batch.stride;
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: &buf,
            segment_size: (count > 1).then_some(stride),
            src_ip: None,
        };
        self.stats.send_calls += 1;
        match self.udp.try_send(UdpSockRef::from(&self.socket), &transmit) {
            Ok(()) => self.sent(to, count, buf.len()),
            Err(_) if count > 1 => {
                for datagram in buf.chunks(stride) {
                    self.stats.send_calls += 1;
                    match self.socket.send_to(datagram, to) {
                        Ok(_) => self.sent(to, 1, datagram.len()),
                        Err(e) => self.refused(to, datagram.len(), &e),
                    }
                }
            }
            Err(e) => self.refused(to, buf.len(), &e),
        }
        self.batch.buf = buf;
    }

    /// Receives what waits (one `recvmmsg`, GRO batches in it), joining
    /// TCP segments; false if nothing waited.
    fn receive_batch(&mut self) -> io::Result<bool> {
        let mut slots = std::mem::take(&mut self.rx.slots);
        if slots.is_empty() {
            slots = vec![0; RX_SLOTS * RX_SLOT];
        }
        let received = self.receive_into(&mut slots);
        self.rx.slots = slots;
        received
    }

    fn receive_into(&mut self, slots: &mut [u8]) -> io::Result<bool> {
        let mut meta = [RecvMeta::default(); RX_SLOTS];
        let n = {
            let mut chunks = slots.chunks_mut(RX_SLOT);
            let mut iovs: [IoSliceMut<'_>; RX_SLOTS] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            loop {
                match self
                    .udp
                    .recv(UdpSockRef::from(&self.socket), &mut iovs, &mut meta)
                {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        // An ICMP error for an earlier send, and the like.
                        self.stats.recv_errors += 1;
                        return Ok(true);
                    }
                }
            }
        };
        self.stats.recv_calls += 1;
        let mut last_learned: Option<(Mac, SocketAddr)> = None;
        for (i, m) in meta.iter().enumerate().take(n) {
            let slot = i * RX_SLOT;
            let data_end = slot + m.len.min(RX_SLOT);
            let stride = m.stride.max(1);
            let from = canonical(m.addr);
            let (vtep, kind) = self.vtep_of(from);
            let mut got = RemoteStats::default();
            let mut at = slot;
            while at < data_end {
                let end = (at + stride).min(data_end);
                let frame = match parse(&slots[at..end], self.vni) {
                    Ok(frame) => frame,
                    Err(Rejected::OtherVni(_)) => {
                        got.other_vni += 1;
                        at = end;
                        continue;
                    }
                    Err(Rejected::TooShort | Rejected::NoVni) => {
                        got.bad_header += 1;
                        at = end;
                        continue;
                    }
                };
                got.rx_datagrams += 1;
                got.rx_bytes += (end - at) as u64;
                if self.learning {
                    if let Some(view) = Frame::new_checked(frame) {
                        // A stream's segments share a source: learn once.
                        if last_learned != Some((view.src(), from)) {
                            let key = fdb_key(&view, view.src());
                            last_learned = Some((view.src(), from));
                            self.learn(key, vtep, kind);
                        }
                    }
                }
                self.rx.gro.push(frame);
                at = end;
            }
            self.stats.received += got.rx_datagrams;
            self.stats.malformed += got.bad_header;
            self.stats.other_vni += got.other_vni;
            self.remotes.stats(vtep, kind).add(&got);
        }
        self.rx.gro.finish();
        self.stats.joined = self.rx.gro.joined();
        Ok(true)
    }

    /// The local address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// What was received, dropped and sent so far.
    pub fn stats(&self) -> VxlanStats {
        self.stats
    }

    /// The remote a unicast MAC was learned behind (in that VLAN), if
    /// still fresh.
    fn learned(&mut self, key: FdbKey) -> Option<SocketAddr> {
        match self.fdb.get(&key) {
            Some(&(vtep, seen)) if seen.elapsed() < FDB_AGEING => Some(vtep),
            Some(_) => {
                self.fdb.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers that `key`'s address is behind `vtep` ([`Vxlan::vtep_of`]).
    fn learn(&mut self, key: FdbKey, vtep: SocketAddr, kind: RemoteKind) {
        let (_, mac) = key;
        if ethernet::is_group(&mac) || mac == [0; 6] {
            return; // Group or null source: not an address of anyone.
        }
        if kind == RemoteKind::Unconfigured {
            return; // Only configured remotes may draw our unicast to them.
        }
        if self.fdb.len() >= FDB_CAPACITY && !self.fdb.contains_key(&key) {
            self.fdb.retain(|_, (_, seen)| seen.elapsed() < FDB_AGEING);
            if self.fdb.len() >= FDB_CAPACITY {
                return; // Full of live entries: flooding still works.
            }
        }
        self.fdb.insert(key, (vtep, Instant::now()));
    }

    fn send_one(&mut self, to: SocketAddr) -> io::Result<()> {
        self.stats.send_calls += 1;
        match self.socket.send_to(&self.out, to) {
            Ok(_) => {
                self.sent(to, 1, self.out.len());
                Ok(())
            }
            Err(e) => {
                self.refused(to, self.out.len(), &e);
                Err(e)
            }
        }
    }
}

/// An IPv4-mapped IPv6 source as the IPv4 address it is, so that remotes
/// given as IPv4 match on a dual-stack socket.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::new(IpAddr::V4(ip), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

fn interface_index(name: &str) -> Result<u32, VxlanError> {
    let no = || VxlanError::NoInterface {
        name: name.to_string(),
    };
    let c_name = CString::new(name).map_err(|_| no())?;
    match sys::if_nametoindex(&c_name) {
        0 => Err(no()),
        index => Ok(index),
    }
}

impl Link for Vxlan {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        for _ in 0..SKIP_LIMIT {
            let (len, from) = match self.socket.recv_from(buf) {
                Ok(got) => {
                    self.stats.recv_calls += 1;
                    got
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // An ICMP error for an earlier send, and the like: about
                    // the network, not a reason to stop.
                    self.stats.recv_errors += 1;
                    continue;
                }
            };
            let (vtep, kind) = self.vtep_of(canonical(from));
            let parsed = if len == buf.len() {
                // Possibly truncated: the buffer is smaller than the datagram.
                Err(Rejected::TooShort)
            } else {
                parse(&buf[..len], self.vni)
            };
            let remote = self.remotes.stats(vtep, kind);
            let frame = match parsed {
                Ok(frame) => frame,
                Err(Rejected::OtherVni(_)) => {
                    remote.other_vni += 1;
                    self.stats.other_vni += 1;
                    continue;
                }
                Err(Rejected::TooShort | Rejected::NoVni) => {
                    remote.bad_header += 1;
                    self.stats.malformed += 1;
                    continue;
                }
            };
            remote.rx_datagrams += 1;
            remote.rx_bytes += len as u64;
            self.stats.received += 1;
            let frame_len = frame.len();
            if self.learning {
                // A tagged frame cut short has no VLAN to learn it in.
                if let Some(view) = Frame::new_checked(frame) {
                    self.learn(fdb_key(&view, view.src()), vtep, kind);
                }
            }
            buf.copy_within(HEADER_LEN..len, 0);
            return Ok(Some(frame_len));
        }
        Ok(None)
    }

    fn offloads(&self) -> bool {
        self.offload
    }

    fn recv_vnet(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        for _ in 0..SKIP_LIMIT {
            if let Some(len) = self.rx.gro.pop_into(buf) {
                return Ok(Some(len));
            }
            if !self.receive_batch()? {
                return Ok(None);
            }
        }
        Ok(None)
    }

    fn send_vnet(&mut self, buf: &[u8]) -> io::Result<()> {
        let (hdr, frame) = VirtioNetHdr::split(buf, HdrLayout::Basic)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        self.route(frame);
        let destinations = std::mem::take(&mut self.destinations);
        let mut cut_buf = std::mem::take(&mut self.cut_buf);
        let mut result = Ok(());
        for &to in &destinations {
            // Cut (or the checksum completed) here: what the kernel sends
            // are wire frames.
            let cut = offload::segment(&hdr, frame, offload::MAX_GSO_FRAME, &mut cut_buf, |s| {
                self.gather(to, s)
            });
            if let Err(e) = cut {
                result = Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                break;
            }
        }
        self.destinations = destinations;
        self.cut_buf = cut_buf;
        result
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_batch();
        Ok(())
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.offload {
            self.route(frame);
            let destinations = std::mem::take(&mut self.destinations);
            for &to in &destinations {
                self.gather(to, frame);
            }
            self.destinations = destinations;
            return Ok(());
        }
        self.out.clear();
        self.out.resize(HEADER_LEN, 0);
        write_header(self.vni, &mut self.out);
        self.out.extend_from_slice(frame);
        let unicast = match Frame::new_checked(frame) {
            Some(view) if self.learning && !ethernet::is_group(&view.dst()) => {
                self.learned(fdb_key(&view, view.dst()))
            }
            _ => None,
        };
        if let Some(vtep) = unicast {
            self.stats.unicast += 1;
            return self.send_one(vtep);
        }
        let mut result = Ok(());
        let mut any = false;
        for i in 0..self.flood.len() {
            match self.send_one(self.flood[i]) {
                Ok(()) => any = true,
                Err(e) => result = Err(e),
            }
        }
        // Refused only if no remote got it; the others are counted.
        if any {
            Ok(())
        } else {
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `frame` and what was gathered with it: the bridge flushes
    /// whenever the network has nothing more.
    fn send_now(link: &mut Vxlan, frame: &[u8]) {
        link.send(frame).unwrap();
        link.flush().unwrap();
    }

    fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x88, 0xb5]); // local experimental EtherType
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn header_is_i_flag_then_24_bit_vni_with_reserved_zeros() {
        let mut h = [0xffu8; 8];
        write_header(0x12_3456, &mut h);
        assert_eq!(h, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    }

    #[test]
    fn parse_rejects_short_unflagged_and_other_vni_datagrams() {
        let mut d = vec![0u8; HEADER_LEN];
        write_header(42, &mut d);
        d.extend_from_slice(&frame([0xff; 6], [2, 0, 0, 0, 0, 1], b"hi"));
        assert_eq!(parse(&d, 42), Ok(&d[HEADER_LEN..]));
        assert_eq!(parse(&d, 43), Err(Rejected::OtherVni(42)));
        assert_eq!(parse(&d[..HEADER_LEN + 13], 42), Err(Rejected::TooShort));
        assert_eq!(parse(&[], 42), Err(Rejected::TooShort));
        let mut unflagged = d.clone();
        unflagged[0] = 0;
        assert_eq!(parse(&unflagged, 42), Err(Rejected::NoVni));
        // Reserved bits are ignored on receipt.
        let mut reserved = d.clone();
        reserved[1] = 0xff;
        reserved[7] = 0xff;
        assert!(parse(&reserved, 42).is_ok());
    }

    #[test]
    fn open_refuses_a_vni_over_24_bits_and_no_destination() {
        let mut c = VxlanConfig::new(MAX_VNI + 1);
        c.remotes.push("127.0.0.1:1".parse().unwrap());
        assert!(matches!(Vxlan::open(&c), Err(VxlanError::BadVni(_))));
        let c = VxlanConfig::new(1);
        assert!(matches!(Vxlan::open(&c), Err(VxlanError::NoDestination)));
    }

    fn pair(vni: u32) -> (Vxlan, Vxlan) {
        pair_on(vni, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn pair_on(vni: u32, ip: IpAddr) -> (Vxlan, Vxlan) {
        // Bind b on a free port first, then a pointing at it, then point b back.
        let mut cb = VxlanConfig::new(vni);
        cb.local = Some(ip);
        cb.port = 0;
        cb.remotes.push(SocketAddr::new(ip, 9));
        let mut b = Vxlan::open(&cb).unwrap();
        let mut ca = cb.clone();
        ca.remotes = vec![b.local_addr().unwrap()];
        let a = Vxlan::open(&ca).unwrap();
        b.flood = vec![a.local_addr().unwrap()];
        (a, b)
    }

    fn recv_wait(link: &mut Vxlan, buf: &mut [u8]) -> Option<usize> {
        for _ in 0..200 {
            if let Some(n) = link.recv(buf).unwrap() {
                return Some(n);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn frames_cross_between_two_endpoints_and_bad_datagrams_are_counted() {
        let (mut a, mut b) = pair(42);
        let f = frame([0xff; 6], [2, 0, 0, 0, 0, 0xa], b"hello");
        send_now(&mut a, &f);
        let mut buf = vec![0u8; 65536];
        let n = recv_wait(&mut b, &mut buf).expect("frame arrives");
        assert_eq!(&buf[..n], &f[..]);

        let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        raw.send_to(b"garbage", to).unwrap();
        let mut other = vec![0u8; HEADER_LEN];
        write_header(43, &mut other);
        other.extend_from_slice(&f);
        raw.send_to(&other, to).unwrap();
        let mut unflagged = other.clone();
        unflagged[0] = 0;
        raw.send_to(&unflagged, to).unwrap();
        send_now(&mut a, &f);
        let n = recv_wait(&mut b, &mut buf).expect("the good frame after the bad ones");
        assert_eq!(&buf[..n], &f[..]);
        let s = b.stats();
        assert_eq!((s.received, s.malformed, s.other_vni), (2, 2, 1));
    }

    #[test]
    fn frames_cross_over_ipv6() {
        let (mut a, mut b) = pair_on(5, IpAddr::V6(Ipv6Addr::LOCALHOST));
        let f = frame([2, 0, 0, 0, 0, 0xb], [2, 0, 0, 0, 0, 0xa], b"over v6");
        send_now(&mut a, &f);
        let mut buf = vec![0u8; 65536];
        let n = recv_wait(&mut b, &mut buf).expect("frame arrives over ::1");
        assert_eq!(&buf[..n], &f[..]);
        assert!(a.describe().contains("[::1]:"), "{}", a.describe());
    }

    #[test]
    fn unicast_to_a_learned_mac_goes_to_its_remote_only() {
        let (mut a, mut b) = pair(7);
        let mac_b = [2, 0, 0, 0, 0, 0xb];
        // Without learning: flooded (to one remote, still counted as flood).
        send_now(&mut b, &frame([0xff; 6], mac_b, b"arp"));
        let mut buf = vec![0u8; 65536];
        recv_wait(&mut a, &mut buf).unwrap();
        // `a` has now learned mac_b behind b; add a second remote to see it
        // is not used.
        let decoy = UdpSocket::bind("127.0.0.1:0").unwrap();
        decoy.set_nonblocking(true).unwrap();
        a.flood.push(decoy.local_addr().unwrap());
        send_now(&mut a, &frame(mac_b, [2, 0, 0, 0, 0, 0xa], b"to b"));
        recv_wait(&mut b, &mut buf).expect("unicast reaches b");
        assert_eq!(a.stats().unicast, 1);
        std::thread::sleep(Duration::from_millis(50));
        assert!(decoy.recv_from(&mut buf).is_err(), "decoy got a copy");
        // A broadcast still goes to both.
        send_now(&mut a, &frame([0xff; 6], [2, 0, 0, 0, 0, 0xa], b"all"));
        std::thread::sleep(Duration::from_millis(50));
        assert!(decoy.recv_from(&mut buf).is_ok(), "decoy missed a flood");
    }

    #[test]
    fn each_remote_counts_its_datagrams_bytes_drops_and_learned_addresses() {
        let (mut a, mut b) = pair(9);
        let to_b = b.local_addr().unwrap();
        let mac_a = [2, 0, 0, 0, 0, 0xa];
        let f = frame([0xff; 6], mac_a, b"counted");
        send_now(&mut a, &f);
        send_now(&mut a, &f);
        let mut buf = vec![0u8; 65536];
        recv_wait(&mut b, &mut buf).unwrap();
        recv_wait(&mut b, &mut buf).unwrap();
        let datagram = (HEADER_LEN + f.len()) as u64;
        let sent = a.remotes();
        assert_eq!(sent[0].addr, Some(to_b));
        assert_eq!(sent[0].kind, RemoteKind::Configured);
        assert_eq!(
            (sent[0].stats.tx_datagrams, sent[0].stats.tx_bytes),
            (2, 2 * datagram)
        );
        assert!(sent[0].path_mtu.is_some(), "lo's MTU probed: {sent:?}");
        // b heard from a, and learned a's address behind it.
        let from_a = b
            .remotes()
            .into_iter()
            .find(|r| r.addr == Some(a.local_addr().unwrap()))
            .expect("a is among b's remotes");
        assert_eq!(
            (from_a.stats.rx_datagrams, from_a.stats.rx_bytes),
            (2, 2 * datagram)
        );
        assert_eq!(from_a.addresses, vec![(None, mac_a)]);

        // Too big for any IPv4 packet: refused, counted, reported once.
        let huge = frame([0xff; 6], mac_a, &vec![0u8; 65500]);
        send_now(&mut a, &huge);
        send_now(&mut a, &huge);
        let r = &a.remotes()[0];
        assert_eq!((r.stats.oversized, r.stats.tx_datagrams), (2, 2));
        assert_eq!(a.stats().oversized, 2);
        assert_eq!(a.stats().send_errors, 0);
        let warning = a.take_oversized().expect("reported").to_string();
        assert!(
            warning.contains(&format!("a {}-byte frame to {to_b}", huge.len()))
                && warning.contains("2 such datagrams")
                && warning.contains("less 50"),
            "{warning}"
        );
        assert_eq!(a.take_oversized(), None);
    }

    #[test]
    fn the_warning_names_the_sizes_and_the_inner_mtu_to_set() {
        let o = Oversized {
            to: "10.1.1.2:4789".parse().unwrap(),
            datagram: 1514 + HEADER_LEN,
            path_mtu: Some(1500),
            count: 1,
        };
        assert_eq!(
            o.to_string(),
            "a 1514-byte frame to 10.1.1.2:4789 makes a 1550-byte IPv4 packet, over the \
             underlay's MTU of 1500 on the way there: not sent, and counted as oversized \
             (`ipn status`). Set the MTU of the network's interfaces (TAPs, VMs) to 1450 at \
             most (the underlay's 1500 less 50 for VXLAN over IPv4), or raise the \
             underlay's MTU to 1550"
        );
        let v6 = Oversized {
            to: "[fd00::2]:4789".parse().unwrap(),
            ..o
        };
        assert_eq!(v6.inner_mtu(), Some(1430));
        assert!(v6.to_string().contains("1570-byte IPv6 packet"), "{v6}");
    }

    fn tagged(dst: [u8; 6], src: [u8; 6], vid: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = frame(dst, src, payload);
        f.splice(12..12, Tci::for_vlan(vid).to_bytes());
        f
    }

    #[test]
    fn addresses_are_learned_per_vlan() {
        let (mut a, mut b) = pair(8);
        let mac_b = [2, 0, 0, 0, 0, 0xb];
        let mut buf = vec![0u8; 65536];
        send_now(&mut b, &tagged([0xff; 6], mac_b, 10, b"arp in 10"));
        let n = recv_wait(&mut a, &mut buf).unwrap();
        assert_eq!(&buf[12..16], &Tci::for_vlan(10).to_bytes(), "tag kept");
        assert_eq!(n, 14 + 4 + 9);
        let decoy = UdpSocket::bind("127.0.0.1:0").unwrap();
        decoy.set_nonblocking(true).unwrap();
        a.flood.push(decoy.local_addr().unwrap());
        // Learned in VLAN 10: unicast there goes to b alone...
        send_now(
            &mut a,
            &tagged(mac_b, [2, 0, 0, 0, 0, 0xa], 10, b"to b in 10"),
        );
        recv_wait(&mut b, &mut buf).expect("unicast reaches b");
        assert_eq!(a.stats().unicast, 1);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            decoy.recv_from(&mut buf).is_err(),
            "decoy got VLAN 10's unicast"
        );
        // ...while the same address in VLAN 20, or untagged, is unknown.
        for f in [
            tagged(mac_b, [2, 0, 0, 0, 0, 0xa], 20, b"to b in 20"),
            frame(mac_b, [2, 0, 0, 0, 0, 0xa], b"untagged"),
        ] {
            send_now(&mut a, &f);
            std::thread::sleep(Duration::from_millis(50));
            assert!(decoy.recv_from(&mut buf).is_ok(), "not flooded: {f:?}");
        }
        assert_eq!(a.stats().unicast, 1);
    }
}
