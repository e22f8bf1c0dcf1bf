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
//! the lower device's minus 50 for that reason. Larger datagrams are
//! fragmented by IP, which works but costs.
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

use std::collections::HashMap;
use std::ffi::CString;
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
    /// Datagrams the system refused to send (too big, no route...).
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
    /// The last datagram was shorter: nothing more may follow it.
    closed: bool,
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
        // quinn-udp sets don't-fragment; a tunnel fragments what does not
        // fit its underlay, as the kernel's vxlan does.
        sys::allow_fragments(&socket, bind_ip.is_ipv6()).map_err(socket_err("IP_MTU_DISCOVER"))?;
        let offload = config.offload && udp.max_gso_segments() > 1 && udp.gro_segments() > 1;
        // Room for bursts while we are not scheduled: a tunnel's datagrams
        // come as fast as the kernel on the other side sends them. Beyond
        // net.core.rmem_max only with CAP_NET_ADMIN; best effort.
        sys::grow_buffers(&socket, SOCKET_BUFFER);
        let mut description = format!("vxlan vni {}", config.vni);
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
        Ok(Vxlan {
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
            udp,
            offload,
            batch: Batch::default(),
            destinations: Vec::new(),
            cut_buf: Vec::new(),
            rx: Rx::default(),
        })
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
        let b = &mut self.batch;
        if b.count == 0 {
            b.buf.clear();
            b.to = Some(to);
            b.stride = len;
            b.closed = false;
        }
        let at = b.buf.len();
        b.buf.resize(at + HEADER_LEN, 0);
        write_header(self.vni, &mut b.buf[at..]);
        b.buf.extend_from_slice(frame);
        b.count += 1;
        b.closed = len < b.stride;
    }

    /// Sends the datagrams gathered: one `sendmsg`, with `UDP_SEGMENT`
    /// when there are several. If the kernel refuses the batch (a segment
    /// over the route's MTU cannot be fragmented with GSO), each datagram
    /// goes on its own.
    fn flush_batch(&mut self) {
        let b = &mut self.batch;
        let (Some(to), count) = (b.to, b.count) else {
            return;
        };
        if count == 0 {
            return;
        }
        b.count = 0;
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: &b.buf,
            segment_size: (count > 1).then_some(b.stride),
            src_ip: None,
        };
        self.stats.send_calls += 1;
        match self.udp.try_send(UdpSockRef::from(&self.socket), &transmit) {
            Ok(()) => self.stats.sent += count as u64,
            Err(_) if count > 1 => {
                for datagram in b.buf.chunks(b.stride) {
                    self.stats.send_calls += 1;
                    match self.socket.send_to(datagram, to) {
                        Ok(_) => self.stats.sent += 1,
                        Err(_) => self.stats.send_errors += 1,
                    }
                }
            }
            Err(_) => self.stats.send_errors += 1,
        }
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
            let mut at = slot;
            while at < data_end {
                let end = (at + stride).min(data_end);
                let frame = match parse(&slots[at..end], self.vni) {
                    Ok(frame) => frame,
                    Err(Rejected::OtherVni(_)) => {
                        self.stats.other_vni += 1;
                        at = end;
                        continue;
                    }
                    Err(Rejected::TooShort | Rejected::NoVni) => {
                        self.stats.malformed += 1;
                        at = end;
                        continue;
                    }
                };
                self.stats.received += 1;
                if self.learning {
                    if let Some(view) = Frame::new_checked(frame) {
                        // A stream's segments share a source: learn once.
                        if last_learned != Some((view.src(), from)) {
                            let key = fdb_key(&view, view.src());
                            last_learned = Some((view.src(), from));
                            self.learn(key, from);
                        }
                    }
                }
                self.rx.gro.push(frame);
                at = end;
            }
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

    fn learn(&mut self, key: FdbKey, from: SocketAddr) {
        let (_, mac) = key;
        if ethernet::is_group(&mac) || mac == [0; 6] {
            return; // Group or null source: not an address of anyone.
        }
        // A VTEP sends from any source port (the kernel hashes flows over
        // a range) and listens on the VXLAN port: remember where to send.
        let vtep = match self.flood.iter().find(|r| r.ip() == from.ip()) {
            Some(remote) => *remote,
            None if self.learn_any => SocketAddr::new(from.ip(), self.port),
            // Only configured remotes may draw our unicast to them.
            None => return,
        };
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
                self.stats.sent += 1;
                Ok(())
            }
            Err(e) => {
                self.stats.send_errors += 1;
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
            if len == buf.len() {
                // Possibly truncated: the buffer is smaller than the datagram.
                self.stats.malformed += 1;
                continue;
            }
            let frame = match parse(&buf[..len], self.vni) {
                Ok(frame) => frame,
                Err(Rejected::OtherVni(_)) => {
                    self.stats.other_vni += 1;
                    continue;
                }
                Err(Rejected::TooShort | Rejected::NoVni) => {
                    self.stats.malformed += 1;
                    continue;
                }
            };
            self.stats.received += 1;
            let frame_len = frame.len();
            if self.learning {
                // A tagged frame cut short has no VLAN to learn it in.
                if let Some(view) = Frame::new_checked(frame) {
                    self.learn(fdb_key(&view, view.src()), canonical(from));
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
