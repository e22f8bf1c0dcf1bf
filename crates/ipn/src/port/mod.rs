//! A port: one process's (or one thread's) place on a network.
//!
//! Sending writes the frame into the port's own ring, marks it pending for
//! every reader and rings the doorbell of those that went to sleep
//! (`send`). Receiving reads the rings of the senders marked pending for
//! it, round-robin, from a private cursor per ring, keeps looking for a
//! while when frames are due (`pace`), and sleeps on the doorbell when
//! there is nothing (`recv`). Joining a network's files is `join`. This
//! file holds what all of them share: taking up a slot in shared memory,
//! leaving it, and the view of who else is there, rebuilt whenever the
//! network's membership epoch changes.
//!
//! A port's state is split by who uses it: [`View`] (membership), [`Tx`]
//! (sending), [`Rx`] (receiving), [`Events`] (membership events for the
//! receiver), and the switch table. Under the loom model checker the same
//! code runs over an in-memory network with a counting bell
//! (`wake::LoomBell`) instead of sockets; only `join` is left out.

#[cfg(not(loom))]
mod join;
mod pace;
mod recv;
mod send;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{JoinOptions, Protocol};
use crate::ethernet::Vlan;
use crate::membership::{self, Membership};
use crate::network::{status_of, Status};
use crate::pending::ScanSet;
use crate::ring::TxRing;
use crate::shm::layout::*;
use crate::shm::SharedFile;
use crate::switch::MacTable;
use crate::sync::Ordering;
use crate::wake::{self, Bell, PortBell};

/// What a receive can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A frame of this many bytes was copied into the buffer.
    Frame(usize),
    /// The number of readers or writers changed (only after
    /// [`Port::set_membership_events`]).
    Membership(Membership),
}

/// Which direction [`Port::shutdown`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Stop receiving: senders no longer wait for or wake this port.
    Read,
    /// Stop sending.
    Write,
    /// Both: the port stays joined but does nothing.
    Both,
}

/// Bytes of the virtio-net header before every frame of a port that takes
/// offloads (`struct virtio_net_hdr`, as a TAP with `IFF_VNET_HDR`).
pub const VNET_HDR_LEN: usize = 10;

/// How often a waiting port checks for dead peers.
const DEATH_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// A joined port. Dropping it leaves the network.
#[derive(Debug)]
pub struct Port {
    path: PathBuf,
    shm: Arc<SharedFile>,
    index: u32,
    bell: PortBell,
    /// `CAP_READ | CAP_WRITE`: what this port still does.
    caps: u32,
    view: View,
    tx: Tx,
    rx: Rx,
    events: Events,
    /// Switch mode: where each learned address lives, and the (VLAN,
    /// source address) pairs we published for `status`.
    switch: Option<Switching>,
    /// 802.1Q membership: which frames we send into which VLAN, and
    /// receive.
    vlan: Vlan,
    /// Where a tagged frame is put together without its tag.
    scratch: Vec<u8>,
    /// Where a frame with offloads too large for the ring is cut, one
    /// wire frame at a time, before it is sent.
    cut_buf: Vec<u8>,
    /// Whether this port takes offloads: its frames, both ways, are a
    /// virtio-net header and a frame (up to `offload::MAX_GSO_FRAME`), as on
    /// a TAP opened with `IFF_VNET_HDR`.
    offload: bool,
}

/// Switch mode's private state.
#[derive(Debug, Default)]
struct Switching {
    table: MacTable,
    published: std::collections::HashSet<(u16, crate::ethernet::Mac)>,
}

/// Who else is there, as of membership epoch `epoch`.
#[derive(Debug, Default)]
struct View {
    epoch: u64,
    membership: Membership,
    /// Live reading ports other than us: whom a frame is for.
    readers: Vec<u32>,
}

/// The sending side.
#[derive(Debug)]
struct Tx {
    ring: TxRing,
    /// Our ring's head when we joined: frames before it are not ours.
    join_head: u64,
    /// Lossless: frames and bytes we may still send without looking at the
    /// readers' cursors again.
    room_frames: u64,
    room_bytes: u64,
    frames: u64,
    bytes: u64,
    /// Frames not sent: outside our VLANs.
    dropped: u64,
}

/// The receiving side.
#[derive(Debug)]
struct Rx {
    /// Next frame wanted from each slot's ring, for every slot: rings are
    /// continuous across the slot's occupants, so `cursor..head` is exactly
    /// what was sent there since we joined, even by a port that has left.
    cursors: Vec<u64>,
    /// Senders whose rings are worth reading (see `pending`).
    scan: ScanSet,
    next_sender: u32,
    /// Whether we asked for a doorbell and every doorbell since is counted.
    armed: bool,
    seen_rings: u64,
    pace: pace::Pace,
    /// A look-ahead decided after the last frame: when it started, and
    /// until when the next receive keeps looking.
    look_ahead: Option<(std::time::Instant, std::time::Instant)>,
    frames: u64,
    bytes: u64,
    dropped: u64,
    /// A frame with a header, read whole to be cut for us.
    gso_buf: Vec<u8>,
    /// The wire frames cut from it, still to be received: `gso_buf` is
    /// not read into while one waits.
    segments: crate::offload::Segments,
}

/// Membership events for the receiver.
#[derive(Debug, Default)]
struct Events {
    enabled: bool,
    pending: bool,
    /// Heads of the rings when the pending event was noticed: frames sent
    /// before a membership change are delivered before the event.
    barrier: Vec<(u32, u64)>,
}

impl Port {
    /// Takes up slot `index` of `shm`, which the caller has claimed (its
    /// lock is ours, or, under loom, nobody else's), with `bell` bound:
    /// writes who we are, starts reading at every ring's head, and
    /// announces us.
    fn activate(
        path: &Path,
        shm: Arc<SharedFile>,
        index: u32,
        bell: PortBell,
        options: &JoinOptions,
    ) -> Port {
        let entry = shm.port(index);
        let generation = membership::generation(entry.state.load(Ordering::Acquire))
            .wrapping_add(1)
            & (u64::MAX >> 8);
        entry.state.store(
            membership::word(generation, STATE_JOINING),
            Ordering::SeqCst,
        );
        let caps = (u32::from(options.read) * CAP_READ) | (u32::from(options.write) * CAP_WRITE);
        let r = Ordering::Relaxed;
        entry.pid.store(std::process::id(), r);
        entry.caps.store(caps, r);
        membership::write_description(entry, &options.description);
        membership::write_vlan(&shm, index, &options.vlan);
        for counter in [
            &entry.tx_frames,
            &entry.tx_bytes,
            &entry.tx_dropped,
            &entry.rx_frames,
            &entry.rx_bytes,
            &entry.rx_dropped,
        ] {
            counter.store(0, r);
        }
        // Nothing pending for us yet: whatever a previous occupant left.
        for word in shm.pending(index) {
            word.store(0, Ordering::Relaxed);
        }
        // Armed from the start: the fd must become readable with the first
        // frame even for a user that only ever receives after poll says so.
        entry.armed.store(1, Ordering::SeqCst);
        let ring = TxRing::resume(&shm, index);
        entry.join_head.store(ring.head(), r);
        let g = *shm.geometry();
        let mut port = Port {
            path: path.into(),
            index,
            caps,
            view: View::default(),
            tx: Tx {
                join_head: ring.head(),
                ring,
                room_frames: 0,
                room_bytes: 0,
                frames: 0,
                bytes: 0,
                dropped: 0,
            },
            rx: Rx {
                cursors: Vec::new(),
                scan: ScanSet::new(g.max_ports),
                next_sender: 0,
                armed: true,
                seen_rings: entry.rings.load(Ordering::Acquire),
                pace: pace::Pace::new(options.busy_poll),
                look_ahead: None,
                frames: 0,
                bytes: 0,
                dropped: 0,
                gso_buf: Vec::new(),
                segments: crate::offload::Segments::new(),
            },
            events: Events::default(),
            switch: (Protocol::from_code(g.protocol) == Some(Protocol::Switch))
                .then(Switching::default),
            vlan: options.vlan.clone(),
            scratch: Vec::new(),
            cut_buf: Vec::new(),
            offload: options.offload,
            bell,
            shm,
        };
        port.start_cursors();
        let entry = port.shm.port(index);
        entry
            .state
            .store(membership::word(generation, STATE_ACTIVE), Ordering::SeqCst);
        port.shm
            .header()
            .membership_epoch
            .fetch_add(1, Ordering::SeqCst);
        wake::wake_all(&port.shm, &mut port.bell, index);
        port.refresh_membership();
        port.events.pending = false;
        port
    }

    /// A port on an in-memory network, for the model checker: slot `index`
    /// is taken as is, and `bell` counts the wake-ups.
    #[cfg(loom)]
    pub(crate) fn in_memory(
        shm: Arc<SharedFile>,
        index: u32,
        bell: PortBell,
        options: &JoinOptions,
    ) -> Port {
        Port::activate(Path::new("(in memory)"), shm, index, bell, options)
    }

    /// A new reader starts at every ring's current head: it receives what
    /// is sent from now on.
    fn start_cursors(&mut self) {
        self.rx.cursors = (0..self.shm.geometry().max_ports)
            .map(|index| self.shm.port(index).head.load(Ordering::Acquire))
            .collect();
        self.publish_cursors();
    }

    /// Lossless: tells the senders how far we have read. Normally done per
    /// frame; done for every ring when joining and before sleeping, so that a
    /// cursor word scribbled on by a peer heals instead of blocking a sender.
    fn publish_cursors(&self) {
        if !self.shm.geometry().lossless() {
            return;
        }
        for (index, &cursor) in self.rx.cursors.iter().enumerate() {
            let index = index as u32;
            let published = self.shm.cursor(self.index, index);
            if index != self.index && published.load(Ordering::Relaxed) != cursor {
                published.store(cursor, Ordering::Release);
            }
        }
    }

    /// This port's number (its slot in the port table).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The network's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shared file this port mapped (for `published`, which checks
    /// that a directory opened again is still this network's).
    #[cfg(not(loom))]
    pub(crate) fn shm_file(&self) -> &std::fs::File {
        self.shm.file()
    }

    /// Largest frame the network carries, in bytes, not counting an
    /// 802.1Q tag: a tagged frame may be 4 bytes longer.
    pub fn mtu(&self) -> u32 {
        self.shm.geometry().mtu
    }

    /// Largest frame a receive can return: the MTU plus an 802.1Q tag, or
    /// on a port that takes offloads a virtio-net header and a frame of up
    /// to `offload::MAX_GSO_FRAME` bytes. A buffer this long never
    /// truncates.
    pub fn max_frame(&self) -> usize {
        if self.offload {
            VNET_HDR_LEN + crate::offload::MAX_GSO_FRAME
        } else {
            self.shm.geometry().mtu as usize + crate::ethernet::TAG_LEN
        }
    }

    /// Who may use the network: the owner, group and permission bits of
    /// its shared file (the directory's mode without the search and
    /// sticky bits), read from the descriptor this port holds. Files a
    /// port makes on the network's behalf elsewhere (a vhost-user socket)
    /// take these, so that whoever may join may use them, and nobody else.
    pub fn access(&self) -> std::io::Result<crate::network::Access> {
        use std::os::unix::fs::MetadataExt;
        let meta = self.shm.file().metadata()?;
        Ok(crate::network::Access {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o666,
        })
    }

    /// Whether this port takes offloads (see [`JoinOptions::offload`]).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// This port's 802.1Q membership.
    pub fn vlan(&self) -> &Vlan {
        &self.vlan
    }

    /// Whether senders wait for slow readers on this network.
    pub fn lossless(&self) -> bool {
        self.shm.geometry().lossless()
    }

    /// Current reader and writer counts.
    pub fn membership(&mut self) -> Membership {
        self.check_membership();
        self.view.membership
    }

    /// Ask for [`Message::Membership`] from [`Port::try_recv_message`] and
    /// [`Port::recv_message`] whenever the reader or writer count changes.
    /// While waiting in `recv_message`, the port also looks for dead peers
    /// every 100 ms so that deaths are reported promptly.
    pub fn set_membership_events(&mut self, enabled: bool) {
        self.events.enabled = enabled;
    }

    /// A snapshot of the whole network.
    pub fn status(&self) -> Status {
        membership::sweep_dead(&self.shm, Some(self.index));
        status_of(&self.path, &self.shm)
    }

    /// Stops reading, writing or both. Other ports see the counts change;
    /// lossless senders stop waiting for a port that no longer reads.
    pub fn shutdown(&mut self, how: Shutdown) {
        let stop = match how {
            Shutdown::Read => CAP_READ,
            Shutdown::Write => CAP_WRITE,
            Shutdown::Both => CAP_READ | CAP_WRITE,
        };
        self.caps &= !stop;
        self.shm
            .port(self.index)
            .caps
            .store(self.caps, Ordering::SeqCst);
        self.announce_membership_change();
    }

    fn announce_membership_change(&mut self) {
        self.shm
            .header()
            .membership_epoch
            .fetch_add(1, Ordering::SeqCst);
        wake::wake_all(&self.shm, &mut self.bell, self.index);
    }

    /// `Err(path)` once the shared file was truncated under us (see
    /// `shm::sigbus`): every later operation fails with that.
    fn check_damage(&self) -> Result<(), PathBuf> {
        if self.shm.damaged() {
            Err(self.path.clone())
        } else {
            Ok(())
        }
    }

    // ----- membership -------------------------------------------------

    fn check_membership(&mut self) {
        if self.shm.header().membership_epoch.load(Ordering::Acquire) != self.view.epoch {
            self.refresh_membership();
        }
    }

    /// Rebuilds the reader list from the port table, and looks once at
    /// every ring that may hold frames for us (live writers, rings with
    /// frames unread): a sender that joined may have sent before it knew
    /// of us.
    fn refresh_membership(&mut self) {
        self.view.epoch = self.shm.header().membership_epoch.load(Ordering::Acquire);
        let mut readers = Vec::new();
        let mut occupants = Vec::new();
        for index in 0..self.shm.geometry().max_ports {
            if index == self.index {
                continue;
            }
            let entry = self.shm.port(index);
            let word = entry.state.load(Ordering::Acquire);
            let caps = entry.caps.load(Ordering::Acquire);
            if membership::state(word) == STATE_ACTIVE && caps & CAP_READ != 0 {
                readers.push(index);
                occupants.push((index, word));
            }
            let alive_writer = membership::claims_alive(word) && caps & CAP_WRITE != 0;
            let unread = entry.head.load(Ordering::Acquire) != self.rx.cursors[index as usize];
            if alive_writer || unread {
                self.rx.scan.insert(index);
            }
        }
        self.bell.keep_connected(&occupants);
        if let Some(switching) = &mut self.switch {
            switching.table.forget_departed(&self.shm);
        }
        self.view.readers = readers;
        self.tx.room_frames = 0;
        self.tx.room_bytes = 0;
        let counts = membership::counts(&self.shm);
        if counts != self.view.membership {
            self.view.membership = counts;
            self.events.pending = self.events.enabled;
            if self.events.enabled {
                self.events.barrier = (0..self.shm.geometry().max_ports)
                    .filter(|&s| s != self.index)
                    .map(|s| (s, self.shm.port(s).head.load(Ordering::Acquire)))
                    .filter(|&(s, head)| head != self.rx.cursors[s as usize])
                    .collect();
            }
        }
    }

    /// Marks the ports whose process died (their slot lock is free) as
    /// dead, so that lossless senders stop waiting for them, and wakes the
    /// others to see it. `send` does this itself while it waits for room;
    /// a caller that waits in a loop of its own around `try_send` calls it
    /// every 100 ms or so.
    pub fn sweep_dead(&mut self) {
        if membership::sweep_dead(&self.shm, Some(self.index)) > 0 {
            wake::wake_all(&self.shm, &mut self.bell, self.index);
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.bell.unlink();
        let entry = self.shm.port(self.index);
        let generation = membership::generation(entry.state.load(Ordering::Acquire));
        entry.caps.store(0, Ordering::Relaxed);
        entry
            .state
            .store(membership::word(generation, STATE_FREE), Ordering::SeqCst);
        self.announce_membership_change();
        // The slot lock goes with the file when `shm` drops.
    }
}

#[cfg(not(loom))]
impl std::os::fd::AsRawFd for Port {
    /// The doorbell socket: readable while frames wait for this port.
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.bell.raw_fd()
    }
}

#[cfg(not(loom))]
impl std::os::fd::AsFd for Port {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.bell.fd()
    }
}
