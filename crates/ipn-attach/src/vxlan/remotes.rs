//! What the endpoint knows of its remotes: counters per remote
//! ([`Remotes`], one table per direction, so that each half of a split
//! endpoint counts without a lock), the forwarding table of learned
//! addresses ([`Fdb`], shared by both halves), and the report that joins
//! them ([`report`]).
//!
//! Bounds, since datagrams from forged sources can name any address: at
//! most [`MAX_REMOTES`] remotes counted each on their own per direction,
//! the rest together; at most [`FDB_CAPACITY`] learned addresses.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipn::ethernet::{self, Frame, Mac, Tci};

use super::{HEADER_LEN, IPV4_HEADROOM, IPV6_HEADROOM, MAX_REMOTES, UDP_HEADER};

/// Learned addresses kept at most (like the kernel's fdb, bounded).
const FDB_CAPACITY: usize = 4096;
/// A learned address not heard from for this long is forgotten (the
/// kernel's default ageing time).
const FDB_AGEING: Duration = Duration::from_secs(300);

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
    pub(super) fn add(&mut self, other: &RemoteStats) {
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

/// One remote's counters and learned addresses ([`Vxlan::remotes`](super::Vxlan::remotes)).
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
/// ([`Vxlan::take_oversized`](super::Vxlan::take_oversized)); its `Display` is the warning to print,
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

/// One direction's counters per remote (see [`MAX_REMOTES`]).
#[derive(Debug, Default, Clone)]
pub(super) struct Remotes {
    table: HashMap<SocketAddr, Remote>,
    /// Everything beyond the table's room.
    other: RemoteStats,
}

#[derive(Debug, Clone, Copy)]
struct Remote {
    kind: RemoteKind,
    /// Probed by the sending half only.
    path_mtu: Option<u32>,
    stats: RemoteStats,
}

impl Remotes {
    /// A table with the configured remotes and the group (`flood`) in it.
    pub(super) fn new(flood: &[SocketAddr]) -> Remotes {
        let mut remotes = Remotes::default();
        for &remote in flood {
            let kind = if remote.ip().is_multicast() {
                RemoteKind::Group
            } else {
                RemoteKind::Configured
            };
            remotes.stats(remote, kind);
        }
        remotes
    }

    /// The counters of `addr`, made as a `kind` if there is room.
    pub(super) fn stats(&mut self, addr: SocketAddr, kind: RemoteKind) -> &mut RemoteStats {
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

    /// Records the MTU of the path to `addr` (if it is in the table).
    pub(super) fn set_path_mtu(&mut self, addr: SocketAddr, mtu: Option<u32>) {
        if let Some(remote) = self.table.get_mut(&addr) {
            remote.path_mtu = mtu;
        }
    }

    /// The remotes whose path MTU is worth probing: all that we may send
    /// to.
    pub(super) fn probed(&self) -> Vec<SocketAddr> {
        self.table
            .iter()
            .filter(|(_, r)| r.kind != RemoteKind::Unconfigured)
            .map(|(addr, _)| *addr)
            .collect()
    }

    /// The largest datagram (UDP payload) the path to `to` takes, as last
    /// probed; unbounded if not known.
    pub(super) fn payload_limit(&self, to: SocketAddr) -> usize {
        let outer = UDP_HEADER + if to.is_ipv4() { 20 } else { 40 };
        match self.table.get(&to).and_then(|r| r.path_mtu) {
            Some(mtu) => (mtu as usize).saturating_sub(outer),
            None => usize::MAX,
        }
    }
}

/// What the forwarding table is keyed by: the frame's VLAN (`None`:
/// untagged) and an address.
pub(super) type FdbKey = (Option<u16>, Mac);

/// The key of `frame`'s destination or source address.
pub(super) fn fdb_key(frame: &Frame<'_>, mac: Mac) -> FdbKey {
    (frame.tag().map(Tci::vid), mac)
}

/// Where each (VLAN, MAC) was last seen from, and when: filled by the
/// receiving half, looked up by the sending half.
#[derive(Debug, Default)]
pub(super) struct Fdb {
    table: HashMap<FdbKey, (SocketAddr, Instant)>,
}

impl Fdb {
    /// The remote a unicast MAC was learned behind (in that VLAN), if
    /// still fresh.
    pub(super) fn learned(&mut self, key: FdbKey) -> Option<SocketAddr> {
        match self.table.get(&key) {
            Some(&(vtep, seen)) if seen.elapsed() < FDB_AGEING => Some(vtep),
            Some(_) => {
                self.table.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers that `key`'s address is behind `vtep`, a remote of kind
    /// `kind`.
    pub(super) fn learn(&mut self, key: FdbKey, vtep: SocketAddr, kind: RemoteKind) {
        let (_, mac) = key;
        if ethernet::is_group(&mac) || mac == [0; 6] {
            return; // Group or null source: not an address of anyone.
        }
        if kind == RemoteKind::Unconfigured {
            return; // Only configured remotes may draw our unicast to them.
        }
        if self.table.len() >= FDB_CAPACITY && !self.table.contains_key(&key) {
            self.table
                .retain(|_, (_, seen)| seen.elapsed() < FDB_AGEING);
            if self.table.len() >= FDB_CAPACITY {
                return; // Full of live entries: flooding still works.
            }
        }
        self.table.insert(key, (vtep, Instant::now()));
    }

    /// The fresh addresses behind each remote.
    fn behind(&self) -> HashMap<SocketAddr, Vec<(Option<u16>, Mac)>> {
        let mut behind: HashMap<SocketAddr, Vec<(Option<u16>, Mac)>> = HashMap::new();
        for (&(vlan, mac), &(vtep, seen)) in &self.table {
            if seen.elapsed() < FDB_AGEING {
                behind.entry(vtep).or_default().push((vlan, mac));
            }
        }
        behind
    }
}

/// Every remote's counters, both directions added, and the addresses
/// learned behind it: the configured remotes and the group (`flood`) in
/// the order given, then the others by address, then what was counted
/// together beyond [`MAX_REMOTES`] (if anything was). Its kind is what
/// the receiving half found it to be; its path MTU, what the sending half
/// probed.
pub(super) fn report(
    flood: &[SocketAddr],
    sent: &Remotes,
    received: &Remotes,
    fdb: &Fdb,
) -> Vec<RemoteReport> {
    let mut behind = fdb.behind();
    let mut others: Vec<SocketAddr> = sent
        .table
        .keys()
        .chain(received.table.keys())
        .filter(|a| !flood.contains(a))
        .copied()
        .collect();
    others.sort();
    others.dedup();
    let mut reports: Vec<RemoteReport> = flood
        .iter()
        .chain(&others)
        .filter_map(|addr| {
            let (tx, rx) = (sent.table.get(addr), received.table.get(addr));
            let kind = rx.or(tx)?.kind;
            let mut stats = RemoteStats::default();
            for remote in tx.iter().chain(&rx) {
                stats.add(&remote.stats);
            }
            let mut addresses = behind.remove(addr).unwrap_or_default();
            addresses.sort();
            Some(RemoteReport {
                addr: Some(*addr),
                kind,
                path_mtu: tx.and_then(|r| r.path_mtu),
                stats,
                addresses,
            })
        })
        .collect();
    let mut rest: Vec<_> = behind.into_values().flatten().collect();
    let mut other = sent.other;
    other.add(&received.other);
    if other != RemoteStats::default() || !rest.is_empty() {
        rest.sort();
        reports.push(RemoteReport {
            addr: None,
            kind: RemoteKind::Other,
            path_mtu: None,
            stats: other,
            addresses: rest,
        });
    }
    reports
}
