//! A port: one process's (or one thread's) place on a network.
//!
//! Sending writes the frame into the port's own ring, marks it pending for
//! every reader and rings the doorbell of those that went to sleep
//! (`send`). Receiving reads the rings of the senders marked pending for
//! it, round-robin, from a private cursor per ring, keeps looking for a
//! while when frames are due (`pace`), and sleeps on the doorbell when
//! there is nothing (`recv`). Joining a network's files is `join`. This
//! file holds what both directions share: taking up a slot in shared
//! memory, leaving it, and the parts of the port both read.
//!
//! # Who owns what
//!
//! The two directions are two types, so that the borrow checker, not a
//! convention, keeps them apart:
//!
//! - [`Tx`] (`send.rs`): our ring, the lossless room, the readers a frame
//!   is for (its own membership view), the scratch and cut buffers, the
//!   addresses published for `status`, and a ringer to wake readers with.
//! - [`Rx`] (`recv.rs`): the doorbell (our pollable fd, which also rings
//!   ourselves), the cursors, the scan set, the pace, the counts and the
//!   membership events (its own membership view).
//! - [`Common`], read by both, changed only with the whole port in hand
//!   (`shutdown`): path, mapping, slot, caps, VLANs, offloads.
//! - The switch table: learned on receive, looked up on send, so the one
//!   piece of mutable state both use. A whole port hands it to a direction
//!   as `&mut` (no lock taken: `Mutex::get_mut`); a split one as the
//!   `Mutex`, which each frame's learning or look-up takes.
//!
//! Each direction keeps its own view of the membership, rebuilt when the
//! network's membership epoch moves: the sender needs the readers and
//! recomputes its lossless room; the receiver looks once at every ring
//! that may hold frames, recounts, and raises the event. Neither depends on
//! the other having looked. What the receiver does for lossless senders
//! (publishing its cursors) and what either does after finding dead ports
//! (waking everyone) goes through shared memory and its own bell, as it
//! would between two processes. In shared memory the halves write
//! different words: the sender our ring, head, `tx_*` counters and
//! published addresses, and other ports' pending bits, `armed` and
//! `rings`; the receiver our cursors, and our own pending bitmap, `armed`,
//! `rings` and `rx_*` counters. A word our port alone writes is written by
//! one of its halves alone: a split port keeps the single-writer rule of
//! `docs/DESIGN.md`.
//!
//! [`Port`] is both halves with their send and receive methods as thin
//! delegations; [`Port::split`] hands them out as a [`PortSender`] and a
//! [`PortReceiver`], each `Send`, for two threads. Under the loom model
//! checker the same code runs over an in-memory network with a counting
//! bell (`wake::LoomBell`) instead of sockets; only `join` is left out.
//! (The split itself has no loom model: loom has no scoped threads, and the
//! halves borrow the port.)

#[cfg(not(loom))]
mod join;
mod pace;
mod recv;
mod send;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::config::{JoinOptions, Protocol};
use crate::ethernet::Vlan;
use crate::membership::{self, Membership};
use crate::network::{status_of, Status};
use crate::ring::TxRing;
use crate::shm::layout::*;
use crate::shm::SharedFile;
use crate::switch::MacTable;
use crate::sync::{Mutex, Ordering};
use crate::wake::{self, Bell, PortBell, PortRinger};
use recv::Rx;
pub use send::Batch;
use send::Tx;

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
    common: Common,
    tx: Tx,
    rx: Rx,
    /// Switch mode: behind which port each address lives. Learned on
    /// receive, looked up on send: the one piece of mutable state both
    /// halves use, behind a lock that only a split port takes.
    switch: Option<Mutex<MacTable>>,
}

/// What both halves of a port read: who and where it is, what it does.
/// Fixed while the port is split (only [`Port::shutdown`], which takes the
/// whole port, changes `caps`).
#[derive(Debug)]
struct Common {
    path: PathBuf,
    shm: Arc<SharedFile>,
    index: u32,
    /// `CAP_READ | CAP_WRITE`: what this port still does.
    caps: u32,
    /// 802.1Q membership: which frames we send into which VLAN, and
    /// receive.
    vlan: Vlan,
    /// Whether this port takes offloads: its frames, both ways, are a
    /// virtio-net header and a frame (up to `offload::MAX_GSO_FRAME`), as on
    /// a TAP opened with `IFF_VNET_HDR`.
    offload: bool,
}

/// One half's way to the switch table: the table itself while the port is
/// whole (no lock taken), its lock while the port is split.
#[derive(Debug)]
enum Table<'a> {
    Whole(&'a mut MacTable),
    Split(&'a Mutex<MacTable>),
}

/// What a half borrows from its port while it works: the common part, and
/// in switch mode the table.
#[derive(Debug)]
struct Context<'a> {
    port: &'a Common,
    switch: Option<Table<'a>>,
}

/// The sending half of a split port ([`Port::split`]): the send methods of
/// [`Port`], usable on one thread while the [`PortReceiver`] receives on
/// another.
#[derive(Debug)]
pub struct PortSender<'a> {
    tx: &'a mut Tx,
    cx: Context<'a>,
}

/// The receiving half of a split port ([`Port::split`]): the receive
/// methods of [`Port`], and the port's pollable fd.
#[derive(Debug)]
pub struct PortReceiver<'a> {
    rx: &'a mut Rx,
    cx: Context<'a>,
}

impl<'a> Table<'a> {
    #[inline]
    fn whole(lock: &'a mut Mutex<MacTable>) -> Table<'a> {
        Table::Whole(lock.get_mut().unwrap_or_else(PoisonError::into_inner))
    }

    /// The same way, for a shorter borrow.
    #[inline]
    fn reborrow(&mut self) -> Table<'_> {
        match self {
            Table::Whole(table) => Table::Whole(table),
            Table::Split(lock) => Table::Split(lock),
        }
    }

    /// Runs `f` on the table, under its lock if the port is split. A
    /// poisoned lock is taken all the same: the table is a cache that
    /// every entry of is checked before use. Inlined: on a whole port this
    /// is the table itself, on the path of every frame.
    #[inline(always)]
    fn with<R>(&mut self, f: impl FnOnce(&mut MacTable) -> R) -> R {
        match self {
            Table::Whole(table) => f(table),
            Table::Split(lock) => f(&mut lock.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }
}

impl Common {
    /// The membership epoch: it moves with every join, leave, death and
    /// shutdown.
    #[inline]
    fn epoch(&self) -> u64 {
        self.shm.header().membership_epoch.load(Ordering::Acquire)
    }

    /// Live reading ports other than us, each with its slot's state word
    /// (which names the occupant): whom frames are for, and whom we ring.
    fn live_readers(&self) -> Vec<(u32, u64)> {
        (0..self.shm.geometry().max_ports)
            .filter(|&index| index != self.index)
            .filter_map(|index| {
                let entry = self.shm.port(index);
                let word = entry.state.load(Ordering::Acquire);
                let caps = entry.caps.load(Ordering::Acquire);
                (membership::state(word) == STATE_ACTIVE && caps & CAP_READ != 0)
                    .then_some((index, word))
            })
            .collect()
    }

    /// See [`Port::max_frame`].
    fn max_frame(&self) -> usize {
        if self.offload {
            VNET_HDR_LEN + crate::offload::MAX_GSO_FRAME
        } else {
            self.shm.geometry().mtu as usize + crate::ethernet::TAG_LEN
        }
    }
    /// `Err(path)` once the shared file was truncated under us (see
    /// `shm::sigbus`): every later operation fails with that.
    #[inline]
    fn check_damage(&self) -> Result<(), PathBuf> {
        if self.shm.damaged() {
            Err(self.path.clone())
        } else {
            Ok(())
        }
    }
}

impl Port {
    /// Takes up slot `index` of `shm`, which the caller has claimed (its
    /// lock is ours, or, under loom, nobody else's), with `bell` bound and
    /// `ringer` to ring others with: writes who we are, starts reading at
    /// every ring's head, and announces us.
    fn activate(
        path: &Path,
        shm: Arc<SharedFile>,
        index: u32,
        bell: PortBell,
        ringer: PortRinger,
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
        let switch = (Protocol::from_code(shm.geometry().protocol) == Some(Protocol::Switch))
            .then(|| Mutex::new(MacTable::default()));
        let common = Common {
            path: path.into(),
            shm,
            index,
            caps,
            vlan: options.vlan.clone(),
            offload: options.offload,
        };
        let tx = Tx::new(ringer, ring);
        let rx = Rx::new(&common, bell, options.busy_poll);
        let mut port = Port {
            common,
            tx,
            rx,
            switch,
        };
        let shm = &port.common.shm;
        shm.port(index)
            .state
            .store(membership::word(generation, STATE_ACTIVE), Ordering::SeqCst);
        shm.header().membership_epoch.fetch_add(1, Ordering::SeqCst);
        wake::wake_all(shm, &mut port.tx.ringer, index);
        port.tx.refresh_membership(&port.common);
        let mut receiver = port.receiver();
        receiver.rx.refresh_membership(&mut receiver.cx);
        port.rx.events.pending = false;
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
        let ringer = bell.ringer();
        Port::activate(Path::new("(in memory)"), shm, index, bell, ringer, options)
    }

    /// The sending half, for one call of a send method.
    #[inline]
    fn sender(&mut self) -> PortSender<'_> {
        PortSender {
            tx: &mut self.tx,
            cx: Context {
                port: &self.common,
                switch: self.switch.as_mut().map(Table::whole),
            },
        }
    }

    /// The receiving half, for one call of a receive method.
    #[inline]
    fn receiver(&mut self) -> PortReceiver<'_> {
        PortReceiver {
            rx: &mut self.rx,
            cx: Context {
                port: &self.common,
                switch: self.switch.as_mut().map(Table::whole),
            },
        }
    }

    /// The port's two halves, to send on one thread and receive on
    /// another (`std::thread::scope`): each is `Send`, and each has the
    /// methods of its direction. The halves share only what both read (the
    /// network, our slot, VLANs, offloads) and, in switch mode, the table
    /// of learned addresses, which the receiver fills and the sender looks
    /// up under a lock. Everything else (membership view, lossless room,
    /// cursors, doorbell, membership events) each half keeps for itself.
    pub fn split(&mut self) -> (PortSender<'_>, PortReceiver<'_>) {
        let sender = PortSender {
            tx: &mut self.tx,
            cx: Context {
                port: &self.common,
                switch: self.switch.as_ref().map(Table::Split),
            },
        };
        let receiver = PortReceiver {
            rx: &mut self.rx,
            cx: Context {
                port: &self.common,
                switch: self.switch.as_ref().map(Table::Split),
            },
        };
        (sender, receiver)
    }

    /// This port's number (its slot in the port table).
    pub fn index(&self) -> u32 {
        self.common.index
    }

    /// The network's path.
    pub fn path(&self) -> &Path {
        &self.common.path
    }

    /// The shared file this port mapped (for `published`, which checks
    /// that a directory opened again is still this network's).
    #[cfg(not(loom))]
    pub(crate) fn shm_file(&self) -> &std::fs::File {
        self.common.shm.file()
    }

    /// Largest frame the network carries, in bytes, not counting an
    /// 802.1Q tag: a tagged frame may be 4 bytes longer.
    pub fn mtu(&self) -> u32 {
        self.common.shm.geometry().mtu
    }

    /// Largest frame a receive can return: the MTU plus an 802.1Q tag, or
    /// on a port that takes offloads a virtio-net header and a frame of up
    /// to `offload::MAX_GSO_FRAME` bytes. A buffer this long never
    /// truncates.
    pub fn max_frame(&self) -> usize {
        self.common.max_frame()
    }

    /// Who may use the network: the owner, group and permission bits of
    /// its shared file (the directory's mode without the search and
    /// sticky bits), read from the descriptor this port holds. Files a
    /// port makes on the network's behalf elsewhere (a vhost-user socket)
    /// take these, so that whoever may join may use them, and nobody else.
    pub fn access(&self) -> std::io::Result<crate::network::Access> {
        use std::os::unix::fs::MetadataExt;
        let meta = self.common.shm.file().metadata()?;
        Ok(crate::network::Access {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o666,
        })
    }

    /// Whether this port takes offloads (see [`JoinOptions::offload`]).
    pub fn offload(&self) -> bool {
        self.common.offload
    }

    /// This port's 802.1Q membership.
    pub fn vlan(&self) -> &Vlan {
        &self.common.vlan
    }

    /// Whether senders wait for slow readers on this network.
    pub fn lossless(&self) -> bool {
        self.common.shm.geometry().lossless()
    }

    /// Current reader and writer counts.
    pub fn membership(&mut self) -> Membership {
        let mut receiver = self.receiver();
        receiver.rx.membership(&mut receiver.cx)
    }

    /// Ask for [`Message::Membership`] from [`Port::try_recv_message`] and
    /// [`Port::recv_message`] whenever the reader or writer count changes.
    /// While waiting in `recv_message`, the port also looks for dead peers
    /// every 100 ms so that deaths are reported promptly.
    pub fn set_membership_events(&mut self, enabled: bool) {
        self.rx.events.enabled = enabled;
    }

    /// A snapshot of the whole network.
    pub fn status(&self) -> Status {
        let common = &self.common;
        membership::sweep_dead(&common.shm, Some(common.index));
        status_of(&common.path, &common.shm)
    }

    /// Stops reading, writing or both. Other ports see the counts change;
    /// lossless senders stop waiting for a port that no longer reads.
    pub fn shutdown(&mut self, how: Shutdown) {
        let stop = match how {
            Shutdown::Read => CAP_READ,
            Shutdown::Write => CAP_WRITE,
            Shutdown::Both => CAP_READ | CAP_WRITE,
        };
        let common = &mut self.common;
        common.caps &= !stop;
        common
            .shm
            .port(common.index)
            .caps
            .store(common.caps, Ordering::SeqCst);
        self.announce_membership_change();
    }

    fn announce_membership_change(&mut self) {
        let common = &self.common;
        common
            .shm
            .header()
            .membership_epoch
            .fetch_add(1, Ordering::SeqCst);
        wake::wake_all(&common.shm, &mut self.tx.ringer, common.index);
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.rx.bell.unlink();
        let entry = self.common.shm.port(self.common.index);
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
        self.rx.bell.raw_fd()
    }
}

#[cfg(not(loom))]
impl std::os::fd::AsFd for Port {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.rx.bell.fd()
    }
}
