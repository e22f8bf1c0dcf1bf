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

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::BorrowedFd;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ipn::ethernet;
use quinn_udp::{UdpSockRef, UdpSocketState};

use crate::sys::udp as sys;
use crate::{Link, LinkReceiver, LinkSender};

mod recv;
mod remotes;
mod send;
#[cfg(test)]
mod tests;

pub use recv::VxlanReceiver;
pub use remotes::{Oversized, RemoteKind, RemoteReport, RemoteStats};
pub use send::VxlanSender;

use recv::RxState;
use remotes::{Fdb, Remotes};
use send::TxState;

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
pub(super) const UDP_HEADER: usize = 8;

/// The I flag: the VNI field is valid.
const FLAG_I: u8 = 0x08;
/// Bytes of socket buffer asked for each way.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

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

impl VxlanStats {
    /// Adds `other`'s counts (each half counts its own).
    fn add(&mut self, other: &VxlanStats) {
        self.received += other.received;
        self.malformed += other.malformed;
        self.other_vni += other.other_vni;
        self.sent += other.sent;
        self.oversized += other.oversized;
        self.send_errors += other.send_errors;
        self.recv_errors += other.recv_errors;
        self.unicast += other.unicast;
        self.send_calls += other.send_calls;
        self.recv_calls += other.recv_calls;
        self.joined += other.joined;
    }
}

/// A VXLAN tunnel endpoint: a [`Link`] whose frames travel in UDP.
///
/// Its two directions share only the socket, the configuration, the
/// forwarding table (under a lock: filled on receive, looked up on send)
/// and the receiving half's posted counters; each has its own state and
/// counters otherwise, so that [`Vxlan::split`] gives two halves that
/// work on two threads, as [`ipn::Port::split`] does for the port.
#[derive(Debug)]
pub struct Vxlan {
    shared: Shared,
    tx: TxState,
    rx: RxState,
}

/// What both halves read.
#[derive(Debug)]
struct Shared {
    socket: UdpSocket,
    /// quinn-udp's view of the socket: GSO and GRO support.
    udp: UdpSocketState,
    vni: u32,
    /// Where flooded frames go: the remotes, or the group, in the order
    /// given.
    flood: Vec<SocketAddr>,
    /// Whether any source may be learned (multicast), or only `flood`'s.
    learn_any: bool,
    learning: bool,
    /// The VXLAN port, where learned VTEPs are sent to.
    port: u16,
    description: String,
    /// The local address asked for, and the group's interface: where
    /// path MTUs are probed from.
    local: Option<IpAddr>,
    multicast_if: Option<(Ipv4Addr, u32)>,
    /// GSO and GRO in use (asked for and available).
    offload: bool,
    /// Where each (VLAN, MAC) was last seen from.
    fdb: Mutex<Fdb>,
    /// The receiving half's counters, as it last posted them.
    rx_posted: Mutex<(VxlanStats, Remotes)>,
}

/// Takes `mutex` even if a thread panicked holding it: what it guards
/// (counters, a cache of addresses) stays usable whatever was half done.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
        let remotes = Remotes::new(&flood);
        let mut vxlan = Vxlan {
            tx: TxState::new(&flood),
            rx: RxState::new(&flood),
            shared: Shared {
                socket,
                udp,
                vni: config.vni,
                flood,
                learn_any: config.group.is_some(),
                learning: config.learning,
                port: config.port,
                description,
                local: config.local,
                multicast_if,
                offload,
                fdb: Mutex::new(Fdb::default()),
                rx_posted: Mutex::new((VxlanStats::default(), remotes)),
            },
        };
        vxlan.sender().refresh();
        Ok(vxlan)
    }

    /// The endpoint's two halves, to send on one thread and receive on
    /// another (`std::thread::scope`, or [`crate::bridge_split`]). Each is
    /// `Send`. The receiving half posts its counters at most every 100 ms
    /// of [`LinkReceiver::check`]; the sending half reports them with its
    /// own ([`VxlanSender::remotes`]).
    pub fn split(&mut self) -> (VxlanSender<'_>, VxlanReceiver<'_>) {
        (
            VxlanSender {
                shared: &self.shared,
                tx: &mut self.tx,
            },
            VxlanReceiver {
                shared: &self.shared,
                rx: &mut self.rx,
            },
        )
    }

    /// The sending half, for one call.
    fn sender(&mut self) -> VxlanSender<'_> {
        self.split().0
    }

    /// The receiving half, for one call.
    fn receiver(&mut self) -> VxlanReceiver<'_> {
        self.split().1
    }

    /// Probes the MTU of the path to every remote we send to again
    /// ([`VxlanSender::refresh`]).
    pub fn refresh(&mut self) {
        self.sender().refresh();
    }

    /// Every remote's counters and the addresses learned behind it: the
    /// configured remotes and the group in the order given, then the
    /// others by address, then what was counted together beyond
    /// [`MAX_REMOTES`] (if anything was).
    pub fn remotes(&self) -> Vec<RemoteReport> {
        self.shared.report(&self.tx.remotes, &self.rx.remotes)
    }

    /// Frames refused as too big since the last call, if any
    /// ([`VxlanSender::take_oversized`]).
    pub fn take_oversized(&mut self) -> Option<Oversized> {
        self.sender().take_oversized()
    }

    /// Whether UDP GSO and GRO are in use.
    pub fn offloading(&self) -> bool {
        self.shared.offload
    }

    /// The local address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    /// What was received, dropped and sent so far.
    pub fn stats(&self) -> VxlanStats {
        let mut stats = self.tx.stats;
        stats.add(&self.rx.stats);
        stats
    }
}

impl Shared {
    /// The report of [`Vxlan::remotes`] from each direction's counters.
    fn report(&self, sent: &Remotes, received: &Remotes) -> Vec<RemoteReport> {
        remotes::report(&self.flood, sent, received, &lock(&self.fdb))
    }
}

impl VxlanSender<'_> {
    /// [`Vxlan::remotes`], with the receiving half's counters as it last
    /// posted them (at most 100 ms old while the bridge runs).
    pub fn remotes(&self) -> Vec<RemoteReport> {
        let posted = lock(&self.shared.rx_posted);
        self.shared.report(&self.tx.remotes, &posted.1)
    }

    /// [`Vxlan::stats`], with the receiving half's counters as it last
    /// posted them.
    pub fn stats(&self) -> VxlanStats {
        let mut stats = self.tx.stats;
        stats.add(&lock(&self.shared.rx_posted).0);
        stats
    }

    /// [`Vxlan::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    /// [`Vxlan::offloading`].
    pub fn offloading(&self) -> bool {
        self.shared.offload
    }

    /// What the endpoint is, for messages.
    pub fn describe(&self) -> String {
        self.shared.description.clone()
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
        self.shared.description.clone()
    }

    fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.shared.socket.as_fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        LinkReceiver::recv(&mut self.receiver(), buf)
    }

    fn offloads(&self) -> bool {
        self.shared.offload
    }

    fn recv_vnet(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        LinkReceiver::recv_vnet(&mut self.receiver(), buf)
    }

    fn send_vnet(&mut self, buf: &[u8]) -> io::Result<()> {
        LinkSender::send_vnet(&mut self.sender(), buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        LinkSender::flush(&mut self.sender())
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        LinkSender::send(&mut self.sender(), frame)
    }
}
