//! The device: a virtio-net data path between one guest's queues and the
//! port, run by vhost-user-backend's worker thread.
//!
//! Queue 0 is the guest's receive queue, queue 1 its transmit queue. The
//! worker's epoll set holds, besides the queues' kick eventfds, the port's
//! fd ([`PORT_EVENT`]), an eventfd the device writes to come back to work it
//! left for fairness ([`AGAIN_EVENT`]), and a timer for a send that found a
//! lossless network full ([`RETRY_EVENT`]).
//!
//! Invariants:
//! - A frame read from the port is delivered to the guest, or kept (at
//!   most one, with the segments cut from it) until the guest posts
//!   receive buffers: while one is kept the port's fd is out of the epoll
//!   set ("paused"), so a level-triggered readable fd cannot spin, and the
//!   receive queue's notifications are on so that the guest's next buffers
//!   kick us. When the receive queue is not running (no driver yet, a
//!   reset) frames are read and dropped, never left to block a lossless
//!   network.
//! - Every chain taken from a queue is given back to the guest as used
//!   before the handler returns, except chains put back untouched (not
//!   enough room for a frame, a full lossless network): nothing is in
//!   flight when the frontend asks for a queue's base (`GET_VRING_BASE`)
//!   or the backend dies.
//! - Nothing the guest or the network sends ends the worker: a bad chain
//!   or header is counted and skipped; guest memory that cannot be read or
//!   written is a broken guest, reported to the main thread
//!   ([`Shared::broken`]), which closes the connection.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipn::offload::{self, HdrLayout, Segments, VirtioNetHdr, F_DATA_VALID, MAX_GSO_FRAME};
use ipn::{Port, RecvError, SendError};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackendMut, VringEpollHandler, VringMutex, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_MRG_RXBUF,
};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestAddressSpace, GuestMemory, GuestMemoryAtomic,
    GuestMemoryMmap, Permissions,
};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

/// Guest memory as the backend sees it.
pub(crate) type Mem = GuestMemoryAtomic<GuestMemoryMmap>;
/// One queue.
pub(crate) type Vring = VringMutex<Mem>;
/// The backend as vhost-user-backend holds it: shared by the request
/// thread and the worker, one at a time.
pub(crate) type Backend = Arc<Mutex<NetBackend>>;
/// The worker's event loop.
pub(crate) type Worker = VringEpollHandler<Backend>;

/// The guest's receive queue.
const RX_QUEUE: u16 = 0;
/// The guest's transmit queue.
const TX_QUEUE: u16 = 1;
/// Queues: one pair (no multiqueue, no control queue).
pub(crate) const NUM_QUEUES: usize = 2;
/// The port's fd is readable. (Event numbers up to [`NUM_QUEUES`] are the
/// library's: the queues, then its own exit / queue-enabled events.)
pub(crate) const PORT_EVENT: u16 = NUM_QUEUES as u16 + 1;
/// Work left for fairness is waiting.
pub(crate) const AGAIN_EVENT: u16 = NUM_QUEUES as u16 + 2;
/// Time to try a send again into a lossless network that was full.
pub(crate) const RETRY_EVENT: u16 = NUM_QUEUES as u16 + 3;
/// Time to look again at the guest's receive buffers (see [`RX_STALL`]).
pub(crate) const RX_TIMER_EVENT: u16 = NUM_QUEUES as u16 + 4;

/// Largest queue the guest may ask for (QEMU's default is 256).
const MAX_QUEUE_SIZE: usize = 1024;
/// Most frames moved in one direction before the other gets a turn.
const BATCH: usize = 256;

/// Most of the guest's frames written into the network before its sleeping
/// readers are told.
const ANNOUNCE_EVERY: usize = 32;
/// How long a send into a full lossless network waits before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(1);
/// How often, while a lossless network stays full, we look for dead
/// readers (whom nobody need wait for).
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// How soon a frame that did not fit the receive buffers the guest had
/// posted is tried again, when the guest posted some but not enough (it
/// is not kicked for buffers it already posted).
const RX_RETRY: Duration = Duration::from_millis(1);
/// Longest a frame waits for the guest's receive buffers. Past it the
/// guest is stalled: what waits is dropped and counted, and frames from
/// the network are dropped while the guest posts none, as a NIC whose
/// receive ring is full drops them. A guest that stopped reading (hung,
/// paused, hostile) so holds a lossless network up for at most this long.
const RX_STALL: Duration = Duration::from_secs(2);
/// The virtio-net header of the port's frames (`struct virtio_net_hdr`).
const PORT_HDR: usize = 10;

const fn bit(b: u32) -> u64 {
    1 << b
}

/// The virtio features offered: virtio 1.0, mergeable receive buffers,
/// checksum offload and TSO (with ECN) both ways, event index and indirect
/// descriptors. Not UFO or USO: QEMU 7.2 does not pass USO through, and
/// legacy UFO is what `ipn::offload` refuses.
///
/// Not `VHOST_USER_F_PROTOCOL_FEATURES` either: QEMU 7.2 sends
/// `SET_VRING_ENABLE` without that bit in its `SET_FEATURES`, which
/// vhost-user-backend refuses ("inactive feature"), and the connection
/// fails. Without it the queues run from `SET_FEATURES` on, and none of
/// the protocol features (multiqueue, reply-ack, inflight tracking...)
/// is needed by one queue pair.
pub(crate) const FEATURES: u64 = bit(VIRTIO_F_VERSION_1)
    | bit(VIRTIO_NET_F_MRG_RXBUF)
    | bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_ECN)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_ECN)
    | bit(VIRTIO_RING_F_EVENT_IDX)
    | bit(VIRTIO_RING_F_INDIRECT_DESC)
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// What [`Backend`]s of successive connections share with the main
/// thread: the port and the counters.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// `None` once the main thread took it back to leave the network.
    pub(crate) port: Mutex<Option<Port>>,
    pub(crate) counters: Counters,
    /// Why the guest's device cannot go on (guest memory unusable); the
    /// main thread closes the connection.
    pub(crate) broken: Mutex<Option<String>>,
    /// Why the port cannot go on (the network was damaged); the main
    /// thread stops.
    pub(crate) fatal: Mutex<Option<String>>,
}

/// Counters, as in [`crate::Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) to_network: AtomicU64,
    pub(crate) to_guest: AtomicU64,
    pub(crate) no_guest: AtomicU64,
    pub(crate) refused_by_network: AtomicU64,
    pub(crate) refused_by_guest: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Locks `m`, poisoned or not: every piece of state behind our mutexes is
/// consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the guest negotiated.
#[derive(Debug, Clone, Copy, Default)]
struct Acked(u64);

impl Acked {
    fn has(self, feature: u32) -> bool {
        self.0 & bit(feature) != 0
    }

    /// The header before each frame in the guest's buffers: 12 bytes with
    /// virtio 1.0 or mergeable buffers, else the legacy 10.
    fn hdr_layout(self) -> HdrLayout {
        if self.has(VIRTIO_F_VERSION_1) || self.has(VIRTIO_NET_F_MRG_RXBUF) {
            HdrLayout::MrgRxbuf
        } else {
            HdrLayout::Basic
        }
    }

    /// Whether the guest takes a frame with this header as it is; if not,
    /// it gets the wire frames it stands for.
    fn takes(self, hdr: &VirtioNetHdr) -> bool {
        if hdr.needs_csum() && !self.has(VIRTIO_NET_F_GUEST_CSUM) {
            return false;
        }
        let gso = hdr.gso_type & !offload::GSO_ECN;
        let ecn = hdr.gso_type & offload::GSO_ECN != 0;
        let kind = match gso {
            offload::GSO_NONE => return !ecn,
            offload::GSO_TCPV4 => self.has(VIRTIO_NET_F_GUEST_TSO4),
            offload::GSO_TCPV6 => self.has(VIRTIO_NET_F_GUEST_TSO6),
            _ => false,
        };
        kind && (!ecn || self.has(VIRTIO_NET_F_GUEST_ECN))
    }
}

/// The device of one connection.
pub(crate) struct NetBackend {
    shared: Arc<Shared>,
    mem: Mem,
    acked: Acked,
    event_idx: bool,
    /// The worker's event loop, to take the port's fd out of it and put it
    /// back; set after the daemon is made, cleared when the connection
    /// ends (it holds us: a cycle until then).
    worker: Option<Arc<Worker>>,
    port_fd: RawFd,
    port_mtu: usize,
    again: EventFd,
    again_rx: bool,
    again_tx: bool,
    retry: TimerFd,
    rx_timer: TimerFd,
    /// The guest broke the device (see [`NetBackend::broken`]): no queue
    /// is looked at again on this connection.
    stopped: std::sync::atomic::AtomicBool,
    rx: Rx,
    tx: Tx,
}

/// The receive side's state.
#[derive(Default)]
struct Rx {
    /// One frame from the port: header and frame.
    buf: Vec<u8>,
    /// `buf[..len]` waits for the guest's buffers.
    whole: Option<usize>,
    /// Wire frames cut from the frame in `buf`, which the guest cannot
    /// take whole, waiting (`buf` is not read into while one waits).
    segments: Segments,
    /// Where the next of them is written before it goes to the guest.
    segment_buf: Vec<u8>,
    /// The receive chains one frame is written into, kept between frames.
    chains: RxChains,
    /// The port's fd is out of the epoll set until the guest posts buffers.
    paused: bool,
    /// Since when frames have waited for the guest's buffers.
    waiting_since: Option<Instant>,
    /// The guest posted no buffers for [`RX_STALL`]: frames that do not
    /// fit are dropped until it posts some.
    stalled: bool,
}

/// The transmit side's state.
#[derive(Default)]
struct Tx {
    /// One chain's bytes: the guest's header and frame.
    buf: Vec<u8>,
    /// Since when a lossless network has had no room for us.
    blocked_since: Option<Instant>,
    last_sweep: Option<Instant>,
}

/// What became of one frame offered to the guest.
enum Delivery {
    /// In the guest's buffers.
    Written,
    /// Not enough buffers: nothing was taken from the queue.
    NoRoom,
    /// Refused for good (a buffer too small without mergeable buffers, a
    /// bad chain): counted.
    Dropped,
}

impl NetBackend {
    /// The device for a new connection, sharing `shared`'s port.
    pub(crate) fn new(shared: Arc<Shared>, mem: Mem) -> io::Result<NetBackend> {
        let (port_fd, port_mtu) = {
            let port = lock(&shared.port);
            let port = port
                .as_ref()
                .ok_or_else(|| io::Error::other("the port has left the network"))?;
            (port.as_raw_fd(), port.mtu() as usize)
        };
        let again = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let timer = || {
            TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK,
            )
        };
        let (retry, rx_timer) = (timer()?, timer()?);
        Ok(NetBackend {
            shared,
            mem,
            acked: Acked::default(),
            event_idx: false,
            worker: None,
            port_fd,
            port_mtu,
            again,
            again_rx: false,
            again_tx: false,
            retry,
            rx_timer,
            stopped: std::sync::atomic::AtomicBool::new(false),
            rx: Rx {
                buf: vec![0; PORT_HDR + MAX_GSO_FRAME],
                ..Rx::default()
            },
            tx: Tx {
                // A chain longer than this is refused: the guest's header
                // and the largest GSO frame.
                buf: vec![0; HdrLayout::MrgRxbuf.size() + MAX_GSO_FRAME],
                ..Tx::default()
            },
        })
    }

    /// Puts the device's own fds into `worker`'s epoll set and keeps it.
    pub(crate) fn attach(&mut self, worker: Arc<Worker>) -> io::Result<()> {
        worker.register_listener(self.port_fd, EventSet::IN, u64::from(PORT_EVENT))?;
        worker.register_listener(
            self.again.as_fd().as_raw_fd(),
            EventSet::IN,
            u64::from(AGAIN_EVENT),
        )?;
        worker.register_listener(
            self.retry.as_fd().as_raw_fd(),
            EventSet::IN,
            u64::from(RETRY_EVENT),
        )?;
        worker.register_listener(
            self.rx_timer.as_fd().as_raw_fd(),
            EventSet::IN,
            u64::from(RX_TIMER_EVENT),
        )?;
        self.worker = Some(worker);
        Ok(())
    }

    /// Forgets the worker (the end of the connection).
    pub(crate) fn detach(&mut self) {
        self.worker = None;
    }

    /// Drops what waits for the guest and takes the port back into the
    /// epoll set: the receive queue stopped.
    fn rx_stopped(&mut self) {
        self.rx.whole = None;
        self.rx.segments.clear();
        self.rx.waiting_since = None;
        self.rx.stalled = false;
        self.resume_port();
    }

    fn resume_port(&mut self) {
        if !self.rx.paused {
            return;
        }
        if let Some(worker) = &self.worker {
            if let Err(e) =
                worker.register_listener(self.port_fd, EventSet::IN, u64::from(PORT_EVENT))
            {
                if e.kind() != io::ErrorKind::AlreadyExists {
                    self.broken(format!("epoll: putting the port back: {e}"));
                    return;
                }
            }
        }
        self.rx.paused = false;
    }

    fn pause_port(&mut self) {
        if self.rx.paused {
            return;
        }
        if let Some(worker) = &self.worker {
            if let Err(e) =
                worker.unregister_listener(self.port_fd, EventSet::IN, u64::from(PORT_EVENT))
            {
                self.broken(format!("epoll: taking the port out: {e}"));
                return;
            }
        }
        self.rx.paused = true;
    }

    /// The guest broke the device: its rings are inconsistent or its
    /// memory unusable. Like a device that sets DEVICE_NEEDS_RESET, it
    /// stops: no queue is looked at again, and the main thread closes the
    /// connection (saying why, once) and listens again.
    fn broken(&self, why: String) {
        self.stopped.store(true, Ordering::Relaxed);
        let mut broken = lock(&self.shared.broken);
        if broken.is_none() {
            *broken = Some(why);
        }
    }

    fn fatal(&self, why: String) {
        let mut fatal = lock(&self.shared.fatal);
        if fatal.is_none() {
            *fatal = Some(why);
        }
    }

    /// Comes back to unfinished work through [`AGAIN_EVENT`].
    fn come_back(&mut self, rx: bool, tx: bool) {
        self.again_rx |= rx;
        self.again_tx |= tx;
        if let Err(e) = self.again.write(1) {
            self.broken(format!("eventfd: {e}"));
        }
    }

    // ----- guest -> network ----------------------------------------------

    /// Sends the guest's frames into the network: each chain is the
    /// guest's header and a frame; the port takes the 10-byte header
    /// before the frame.
    fn process_tx(&mut self, vring: &Vring) {
        let shared = Arc::clone(&self.shared);
        let mut port = lock(&shared.port);
        let Some(port) = port.as_mut() else {
            return;
        };
        let mem = self.mem.memory();
        let mut state = vring.get_mut();
        if !(state.get_queue().ready() && state.is_enabled()) {
            return;
        }
        let guest_hdr = self.acked.hdr_layout().size();
        let mut sent = 0;
        let mut used = false;
        let mut blocked = false;
        let mut result = Ok(());
        // One batch: the network's sleeping readers are woken once for the
        // chains taken here (and every ANNOUNCE_EVERY), not for each.
        let mut batch = port.batch();
        // Each round after the first follows a re-enabled notification
        // that said more chains wait, and must take at least one: a guest
        // whose avail index promises chains that cannot be taken would
        // otherwise keep this loop going forever. With every round taking
        // a chain and at most BATCH chains, the loop is bounded.
        'queue: for round in 0..=BATCH {
            if self.event_idx {
                result = state.disable_notification();
                if result.is_err() {
                    break;
                }
            }
            let mut taken = 0;
            loop {
                let chain = match pop_chain(&mut state, &mem) {
                    Ok(Some(chain)) => chain,
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(e);
                        break 'queue;
                    }
                };
                taken += 1;
                if sent == BATCH {
                    state.get_queue_mut().go_to_previous_position();
                    self.come_back(false, true);
                    break 'queue;
                }
                let head = chain.head_index();
                let len = read_chain(chain, &mem, &mut self.tx.buf);
                let outcome = match len {
                    Some(len) if len >= guest_hdr => {
                        // The port's header is the first 10 bytes of the
                        // guest's: move them next to the frame.
                        let at = guest_hdr - PORT_HDR;
                        self.tx.buf.copy_within(..PORT_HDR, at);
                        batch.try_send(&self.tx.buf[at..len])
                    }
                    _ => Err(SendError::Empty),
                };
                match outcome {
                    Ok(()) => {
                        Counters::add(&self.shared.counters.to_network);
                        self.tx.blocked_since = None;
                    }
                    Err(SendError::WouldBlock) => {
                        // A full lossless network: the chain waits in the
                        // queue, and we try again shortly.
                        state.get_queue_mut().go_to_previous_position();
                        blocked = true;
                        break 'queue;
                    }
                    Err(SendError::Damaged { path }) => {
                        self.fatal(format!(
                            "{}: the network's shared file was damaged",
                            path.display()
                        ));
                    }
                    Err(SendError::NotWriting) => {}
                    Err(_) => Counters::add(&self.shared.counters.refused_by_network),
                }
                result = state.add_used(head, 0);
                if result.is_err() {
                    break 'queue;
                }
                used = true;
                sent += 1;
                if sent % ANNOUNCE_EVERY == 0 {
                    batch.flush();
                }
            }
            if round > 0 && taken == 0 {
                result = Err(virtio_queue::Error::InvalidAvailRingIndex);
                break;
            }
            if !self.event_idx {
                break;
            }
            match state.enable_notification() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        drop(batch);
        if blocked {
            self.tx_blocked(port);
        }
        if let Err(e) = result {
            self.broken(format!("transmit queue: {e}"));
            return;
        }
        if used {
            self.notify(&mut state, "transmit");
        }
    }

    /// Arms the retry timer, and every [`SWEEP_EVERY`] looks for dead
    /// readers we might be waiting for.
    fn tx_blocked(&mut self, port: &mut Port) {
        let now = Instant::now();
        let since = *self.tx.blocked_since.get_or_insert(now);
        let last = self.tx.last_sweep.unwrap_or(since);
        if now.duration_since(last) >= SWEEP_EVERY {
            port.sweep_dead();
            self.tx.last_sweep = Some(now);
        }
        let after = Expiration::OneShot(TimeSpec::from_duration(RETRY_AFTER));
        if let Err(e) = self.retry.set(after, TimerSetTimeFlags::empty()) {
            self.broken(format!("timerfd: {e}"));
        }
    }

    // ----- network -> guest ----------------------------------------------

    /// Moves frames from the port into the guest's receive queue, up to
    /// [`BATCH`], or until the guest has no room (then pauses).
    fn process_port(&mut self, vring: &Vring, after_poll: bool) {
        let shared = Arc::clone(&self.shared);
        let mut port = lock(&shared.port);
        let Some(port) = port.as_mut() else {
            return;
        };
        let running = {
            let state = vring.get_ref();
            state.get_queue().ready() && state.is_enabled()
        };
        if !running {
            // No driver: read and drop, as a NIC whose link is down.
            self.rx.whole = None;
            self.rx.segments.clear();
        } else if self.rx.paused {
            // A readiness seen before we paused.
            return;
        }
        let mut used = false;
        if running && !self.deliver_waiting(vring, &mut used) && !self.no_room(vring, used) {
            return;
        }
        for i in 0..BATCH {
            let received = if i == 0 && after_poll {
                port.try_recv_after_poll(&mut self.rx.buf)
            } else {
                port.try_recv(&mut self.rx.buf)
            };
            match received {
                Ok(len) if running => self.rx.whole = Some(len),
                Ok(_) => {
                    Counters::add(&self.shared.counters.no_guest);
                    continue;
                }
                Err(RecvError::WouldBlock) => {
                    self.notify_rx(vring, used);
                    return;
                }
                Err(RecvError::Damaged { path }) => {
                    self.fatal(format!(
                        "{}: the network's shared file was damaged",
                        path.display()
                    ));
                    return;
                }
                Err(e) => {
                    self.fatal(format!("receiving from the network: {e}"));
                    return;
                }
            }
            if !self.deliver_waiting(vring, &mut used) && !self.no_room(vring, used) {
                return;
            }
        }
        self.come_back(true, false);
        self.notify_rx(vring, used);
    }

    /// The guest has no room for what waits: true to go on reading the
    /// port (a stalled guest: what waits is dropped), false if waiting
    /// for the guest's buffers.
    fn no_room(&mut self, vring: &Vring, used: bool) -> bool {
        if self.rx.stalled {
            self.drop_waiting();
            return true;
        }
        self.wait_for_buffers(vring, used);
        false
    }

    /// The guest has no room for what waits: take the port out of the
    /// epoll set and ask the guest to kick when it posts buffers; look
    /// again in [`RX_RETRY`] if it posted some that were not enough, and
    /// give up on it after [`RX_STALL`].
    fn wait_for_buffers(&mut self, vring: &Vring, used: bool) {
        let now = Instant::now();
        let since = *self.rx.waiting_since.get_or_insert(now);
        let waited = now.duration_since(since);
        if waited >= RX_STALL {
            self.rx_stall();
            self.notify_rx(vring, used);
            return;
        }
        self.pause_port();
        let more = vring.get_mut().enable_notification();
        let after = match more {
            Ok(true) => RX_RETRY,
            Ok(false) => RX_STALL - waited,
            Err(e) => {
                self.broken(format!("receive queue: {e}"));
                return;
            }
        };
        let after = Expiration::OneShot(TimeSpec::from_duration(after));
        if let Err(e) = self.rx_timer.set(after, TimerSetTimeFlags::empty()) {
            self.broken(format!("timerfd: {e}"));
        }
        self.notify_rx(vring, used);
    }

    /// Drops and counts the frame and segments that wait for the guest.
    fn drop_waiting(&mut self) {
        let waiting = usize::from(self.rx.whole.is_some()) + self.rx.segments.len();
        for _ in 0..waiting {
            Counters::add(&self.shared.counters.refused_by_guest);
        }
        self.rx.whole = None;
        self.rx.segments.clear();
    }

    /// The guest took no frame for [`RX_STALL`]: drop what waits and let
    /// the network's frames through to be dropped until it posts buffers.
    fn rx_stall(&mut self) {
        self.drop_waiting();
        self.rx.waiting_since = None;
        self.rx.stalled = true;
        self.resume_port();
        self.come_back(true, false);
    }

    /// The guest posted receive buffers (a kick, or the queue was just
    /// enabled), or it is time to look again: deliver what waits and take
    /// the port back.
    fn rx_kicked(&mut self, vring: &Vring) {
        self.rx.stalled = false;
        self.rx_retry(vring);
    }

    /// Tries again to deliver what waits for the guest's buffers.
    fn rx_retry(&mut self, vring: &Vring) {
        if !self.rx.paused {
            return;
        }
        if self.event_idx {
            if let Err(e) = vring.get_mut().disable_notification() {
                self.broken(format!("receive queue: {e}"));
                return;
            }
        }
        let mut used = false;
        if self.deliver_waiting(vring, &mut used) {
            self.resume_port();
            // Frames may have come while the port was out of the set
            // without making its fd readable again (no doorbell for a
            // reader that has not looked): look now.
            self.come_back(true, false);
            self.notify_rx(vring, used);
        } else {
            self.wait_for_buffers(vring, used);
        }
    }

    /// Delivers the frame and segments that wait; false if the guest ran
    /// out of room (what is left still waits).
    fn deliver_waiting(&mut self, vring: &Vring, used: &mut bool) -> bool {
        if let Some(len) = self.rx.whole {
            let Ok((hdr, frame)) = VirtioNetHdr::split(&self.rx.buf[..len], HdrLayout::Basic)
            else {
                self.rx.whole = None;
                Counters::add(&self.shared.counters.refused_by_guest);
                return true;
            };
            if self.acked.takes(&hdr) {
                match write_rx(
                    vring,
                    &self.mem,
                    self.acked,
                    &hdr,
                    frame,
                    &mut self.rx.chains,
                ) {
                    Ok(Delivery::NoRoom) => return false,
                    Ok(Delivery::Written) => {
                        *used = true;
                        Counters::add(&self.shared.counters.to_guest);
                    }
                    Ok(Delivery::Dropped) => Counters::add(&self.shared.counters.refused_by_guest),
                    Err(e) => {
                        self.broken(format!("receive queue: {e}"));
                        self.rx.whole = None;
                        return true;
                    }
                }
            } else {
                // Cut for a guest without these offloads, as the network
                // does for ports without them.
                let tagged =
                    ipn::ethernet::Frame::new_checked(frame).is_some_and(|f| f.tag().is_some());
                let mtu = self.port_mtu + if tagged { ipn::ethernet::TAG_LEN } else { 0 };
                let frame = &self.rx.buf[PORT_HDR..len];
                if self.rx.segments.start(&hdr, frame, mtu).is_err() {
                    Counters::add(&self.shared.counters.refused_by_guest);
                }
                if self.rx.segment_buf.len() < mtu {
                    self.rx.segment_buf.resize(mtu, 0);
                }
            }
            self.rx.whole = None;
        }
        while !self.rx.segments.is_empty() {
            let plain = VirtioNetHdr::default();
            let Rx {
                buf,
                segments,
                segment_buf,
                chains,
                ..
            } = &mut self.rx;
            let Some(len) = segments.peek_into(&buf[PORT_HDR..], segment_buf) else {
                segments.clear();
                break;
            };
            let segment = &segment_buf[..len.min(segment_buf.len())];
            match write_rx(vring, &self.mem, self.acked, &plain, segment, chains) {
                Ok(Delivery::NoRoom) => return false,
                Ok(Delivery::Written) => {
                    *used = true;
                    Counters::add(&self.shared.counters.to_guest);
                }
                Ok(Delivery::Dropped) => Counters::add(&self.shared.counters.refused_by_guest),
                Err(e) => {
                    self.broken(format!("receive queue: {e}"));
                    self.rx.segments.clear();
                    return true;
                }
            }
            self.rx.segments.skip();
        }
        self.rx.waiting_since = None;
        true
    }

    fn notify_rx(&mut self, vring: &Vring, used: bool) {
        if used {
            self.notify(&mut vring.get_mut(), "receive");
        }
    }

    /// Signals the guest that a queue has used buffers, if it wants to be
    /// told (event index).
    fn notify(&self, state: &mut vhost_user_backend::VringState<Mem>, queue: &str) {
        match state.needs_notification() {
            Ok(false) => {}
            Ok(true) => {
                if let Err(e) = state.signal_used_queue() {
                    self.broken(format!("{queue} queue: signalling the guest: {e}"));
                }
            }
            Err(e) => self.broken(format!("{queue} queue: {e}")),
        }
    }
}

/// A descriptor chain the guest made available.
type Chain = virtio_queue::DescriptorChain<vm_memory::GuestMemoryLoadGuard<GuestMemoryMmap>>;

/// The next chain the guest made available, `None` if there is none, or
/// an error if the guest's ring is inconsistent (an avail index more than
/// a ring ahead of ours, a ring outside its memory). virtio-queue's
/// `pop_descriptor_chain` reads both as "none", which made a guest able
/// to promise chains that never come, forever.
fn pop_chain(
    state: &mut vhost_user_backend::VringState<Mem>,
    mem: &vm_memory::GuestMemoryLoadGuard<GuestMemoryMmap>,
) -> Result<Option<Chain>, virtio_queue::Error> {
    Ok(state.get_queue_mut().iter(mem.clone())?.next())
}

/// Reads the device-readable buffers of `chain` (every one up to the first
/// writable, as virtio-queue's `Reader` takes them) into `buf`, back to
/// back; their total length, or `None` if one lies outside the guest's
/// memory or together they do not fit in `buf`. Reads guest memory
/// directly: `Reader` would allocate its list of buffers on every chain.
fn read_chain(chain: Chain, mem: &GuestMemoryMmap, buf: &mut [u8]) -> Option<usize> {
    let mut len = 0usize;
    for desc in chain.readable() {
        let end = len
            .checked_add(desc.len() as usize)
            .filter(|&end| end <= buf.len())?;
        mem.read_slice(&mut buf[len..end], desc.addr()).ok()?;
        len = end;
    }
    Some(len)
}

/// The receive chains one frame is being written into: what [`write_rx`]
/// keeps between frames, so that no frame allocates (virtio-queue's
/// `Writer` allocates its list of buffers on every chain).
#[derive(Default)]
struct RxChains {
    /// Each chain with room, in order: its head, where its buffers end in
    /// `buffers`, and the bytes written into it.
    chains: Vec<(u16, usize, u32)>,
    /// The chains' device-writable buffers, in order: address and length.
    buffers: Vec<(GuestAddress, u32)>,
    /// Chains whose buffers are not all in the guest's memory: given back
    /// empty.
    empty: Vec<u16>,
}

impl RxChains {
    fn clear(&mut self) {
        self.chains.clear();
        self.buffers.clear();
        self.empty.clear();
    }

    /// Adds `chain`'s writable buffers (as virtio-queue's `Writer` takes
    /// them: every one from the first writable on, each checked to lie in
    /// guest memory); returns the room they make, or `None` (and adds
    /// nothing) if one is not in guest memory or their lengths overflow.
    fn add(&mut self, chain: Chain, mem: &GuestMemoryMmap) -> Option<usize> {
        let head = chain.head_index();
        let first = self.buffers.len();
        let mut room: usize = 0;
        for desc in chain.writable() {
            let fits = room.checked_add(desc.len() as usize);
            let in_memory = mem
                .get_slices(desc.addr(), desc.len() as usize, Permissions::Write)
                .is_ok_and(|mut slices| slices.all(|slice| slice.is_ok()));
            match fits {
                Some(total) if in_memory => room = total,
                _ => {
                    self.buffers.truncate(first);
                    self.empty.push(head);
                    return None;
                }
            }
            self.buffers.push((desc.addr(), desc.len()));
        }
        self.chains.push((head, self.buffers.len(), 0));
        Some(room)
    }
}

/// Writes the guest's header (`hdr` with `num_buffers`) and `frame` into
/// receive chains: as many as it takes with mergeable buffers, else one.
/// Takes nothing from the queue unless the whole frame fits. `chains` is
/// scratch space, kept by the caller.
fn write_rx(
    vring: &Vring,
    mem: &Mem,
    acked: Acked,
    hdr: &VirtioNetHdr,
    frame: &[u8],
    chains: &mut RxChains,
) -> Result<Delivery, virtio_queue::Error> {
    let layout = acked.hdr_layout();
    let total = layout.size() + frame.len();
    let mergeable = acked.has(VIRTIO_NET_F_MRG_RXBUF);
    let mem = mem.memory();
    let mut state = vring.get_mut();
    let start = state.get_queue().next_avail();
    chains.clear();
    let mut room = 0;
    // A guest's chains may hold no room at all: at most a ring's worth
    // of them is looked at for one frame.
    let most = usize::from(state.get_queue().size());
    let mut looked = 0;
    while room < total && (mergeable || chains.chains.is_empty()) {
        let chain = match pop_chain(&mut state, &mem)? {
            Some(chain) if looked < most => chain,
            _ => {
                state.get_queue_mut().set_next_avail(start);
                return Ok(Delivery::NoRoom);
            }
        };
        looked += 1;
        // A chain without writable buffers in memory is given back empty
        // with the others, once the frame is written (until then nothing
        // is taken from the queue).
        room += chains.add(chain, &mem).unwrap_or(0);
    }
    if room < total {
        // One buffer, too small, without mergeable buffers: the frame
        // cannot be delivered; the buffer stays for the next one.
        state.get_queue_mut().set_next_avail(start);
        return Ok(Delivery::Dropped);
    }
    let mut hdr = *hdr;
    hdr.num_buffers = chains.chains.len() as u16;
    if !acked.has(VIRTIO_NET_F_GUEST_CSUM) {
        hdr.flags &= !F_DATA_VALID;
    }
    let hdr_bytes = hdr.to_bytes();
    let mut parts = [&hdr_bytes[..layout.size()], frame];
    let mut part = 0;
    let mut buffer = 0;
    for (_, end, written) in &mut chains.chains {
        for &(addr, len) in &chains.buffers[buffer..*end] {
            let mut at = 0;
            while part < parts.len() && at < len as usize {
                let n = parts[part].len().min(len as usize - at);
                let to = addr
                    .checked_add(at as u64)
                    .ok_or(virtio_queue::Error::InvalidChain)?;
                mem.write_slice(&parts[part][..n], to)
                    .map_err(|_| virtio_queue::Error::InvalidChain)?;
                at += n;
                *written += n as u32;
                parts[part] = &parts[part][n..];
                if parts[part].is_empty() {
                    part += 1;
                }
            }
        }
        buffer = *end;
    }
    for &(head, _, written) in &chains.chains {
        state.add_used(head, written)?;
    }
    for &head in &chains.empty {
        state.add_used(head, 0)?;
    }
    Ok(Delivery::Written)
}

impl VhostUserBackendMut for NetBackend {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        FEATURES
    }

    fn acked_features(&mut self, features: u64) {
        self.acked = Acked(features);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::empty()
    }

    fn reset_device(&mut self) {
        self.rx_stopped();
    }

    fn set_event_idx(&mut self, enabled: bool) {
        self.event_idx = enabled;
    }

    fn update_memory(&mut self, mem: Mem) -> io::Result<()> {
        self.mem = mem;
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn stop_vring(&mut self, queue_index: u32) -> io::Result<()> {
        if queue_index == u32::from(RX_QUEUE) {
            self.rx_stopped();
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        let (Some(rx), Some(tx)) = (
            vrings.get(usize::from(RX_QUEUE)),
            vrings.get(usize::from(TX_QUEUE)),
        ) else {
            return Ok(());
        };
        if self.stopped.load(Ordering::Relaxed) {
            // Broken: quiet every source of ours until the connection is
            // closed (level-triggered: a readable fd left alone would
            // wake the worker again at once).
            let _ = self.again.read();
            let _ = self.retry.wait();
            let _ = self.rx_timer.wait();
            self.pause_port();
            return Ok(());
        }
        match device_event {
            RX_QUEUE => self.rx_kicked(rx),
            TX_QUEUE => self.process_tx(tx),
            PORT_EVENT => self.process_port(rx, true),
            AGAIN_EVENT => {
                let _ = self.again.read();
                let (again_rx, again_tx) = (self.again_rx, self.again_tx);
                self.again_rx = false;
                self.again_tx = false;
                if again_tx {
                    self.process_tx(tx);
                }
                if again_rx && !self.rx.paused {
                    self.process_port(rx, false);
                }
            }
            RETRY_EVENT => {
                let _ = self.retry.wait();
                self.process_tx(tx);
            }
            RX_TIMER_EVENT => {
                let _ = self.rx_timer.wait();
                self.rx_retry(rx);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(bits: &[u32]) -> Acked {
        Acked(bits.iter().fold(0, |a, &b| a | bit(b)))
    }

    #[test]
    fn guest_takes_only_the_offloads_it_acked() {
        let all = Acked(FEATURES);
        let tso4 = VirtioNetHdr {
            flags: offload::F_NEEDS_CSUM,
            gso_type: offload::GSO_TCPV4,
            gso_size: 1448,
            ..VirtioNetHdr::default()
        };
        let tso6_ecn = VirtioNetHdr {
            gso_type: offload::GSO_TCPV6 | offload::GSO_ECN,
            ..tso4
        };
        let uso = VirtioNetHdr {
            gso_type: offload::GSO_UDP_L4,
            ..tso4
        };
        let csum_only = VirtioNetHdr {
            gso_type: offload::GSO_NONE,
            gso_size: 0,
            ..tso4
        };
        assert!(all.takes(&tso4) && all.takes(&tso6_ecn) && all.takes(&csum_only));
        assert!(!all.takes(&uso), "USO is never negotiated");
        assert!(all.takes(&VirtioNetHdr::default()));
        let csum = acked(&[VIRTIO_F_VERSION_1, VIRTIO_NET_F_GUEST_CSUM]);
        assert!(csum.takes(&csum_only) && !csum.takes(&tso4));
        let no_ecn = acked(&[VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO6]);
        assert!(!no_ecn.takes(&tso6_ecn));
        assert!(!Acked(0).takes(&csum_only));
        assert!(Acked(0).takes(&VirtioNetHdr::default()));
    }

    #[test]
    fn header_is_twelve_bytes_with_virtio_1_or_mergeable_buffers() {
        assert_eq!(acked(&[VIRTIO_F_VERSION_1]).hdr_layout().size(), 12);
        assert_eq!(acked(&[VIRTIO_NET_F_MRG_RXBUF]).hdr_layout().size(), 12);
        assert_eq!(Acked(0).hdr_layout().size(), 10);
    }

    #[test]
    fn offered_features_leave_out_what_the_data_path_cannot_do() {
        use virtio_bindings::virtio_config::VIRTIO_F_RING_PACKED;
        use virtio_bindings::virtio_net::{
            VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_MQ,
        };
        for missing in [
            VIRTIO_F_RING_PACKED,
            VIRTIO_NET_F_CTRL_VQ,
            VIRTIO_NET_F_MQ,
            VIRTIO_NET_F_GUEST_UFO,
            VIRTIO_NET_F_HOST_UFO,
        ] {
            assert_eq!(FEATURES & bit(missing), 0, "feature bit {missing}");
        }
    }
}

/// Neither direction allocates per frame: a counting global allocator
/// counts this thread's allocations while a few thousand frames go into a
/// receive queue, and come out of a transmit queue, laid out by hand in
/// guest memory as a driver would.
#[cfg(test)]
mod no_alloc {
    use super::*;
    use ipn_test_support::alloc::{allocations_in, Counting};

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    const QUEUE: u16 = 256;
    const DESC: u64 = 0x0;
    const AVAIL: u64 = 0x1000;
    const USED: u64 = 0x2000;
    const BUFFERS: u64 = 0x10000;
    const BUFFER: u32 = 2048;
    /// VIRTQ_DESC_F_WRITE.
    const WRITE: u16 = 2;

    /// A megabyte of guest memory and a ready queue of [`QUEUE`] entries
    /// laid out in it at [`DESC`], [`AVAIL`] and [`USED`].
    fn ready_queue() -> (GuestMemoryMmap, Mem, Vring) {
        let guest = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mem: Mem = GuestMemoryAtomic::new(guest.clone());
        let vring = Vring::new(mem.clone(), QUEUE).unwrap();
        vring.set_queue_size(QUEUE);
        vring.set_queue_info(DESC, AVAIL, USED).unwrap();
        vring.set_queue_ready(true);
        (guest, mem, vring)
    }

    /// Makes `count` one-buffer chains available, from avail index `next`.
    fn post(mem: &GuestMemoryMmap, next: &mut u16, count: u16) {
        for _ in 0..count {
            let slot = u64::from(*next % QUEUE);
            let desc = DESC + slot * 16;
            mem.write_obj(BUFFERS + slot * u64::from(BUFFER), GuestAddress(desc))
                .unwrap();
            mem.write_obj(BUFFER, GuestAddress(desc + 8)).unwrap();
            mem.write_obj(WRITE, GuestAddress(desc + 12)).unwrap();
            mem.write_obj(0u16, GuestAddress(desc + 14)).unwrap();
            mem.write_obj(slot as u16, GuestAddress(AVAIL + 4 + slot * 2))
                .unwrap();
            *next = next.wrapping_add(1);
        }
        mem.write_obj(*next, GuestAddress(AVAIL + 2)).unwrap();
    }

    /// VIRTQ_DESC_F_NEXT.
    const NEXT: u16 = 1;

    /// Makes `count` two-buffer transmit chains available from avail index
    /// `next`, as a Linux guest lays them out: the 12-byte header in one
    /// buffer, `frame` in the next. Chain `k` uses descriptors 2k and 2k+1.
    fn post_tx(mem: &GuestMemoryMmap, next: &mut u16, count: u16, frame: &[u8]) {
        for _ in 0..count {
            let slot = u64::from(*next % (QUEUE / 2));
            let (head, body) = (slot * 2, slot * 2 + 1);
            let at = BUFFERS + slot * u64::from(BUFFER);
            mem.write_slice(&[0u8; 12], GuestAddress(at)).unwrap();
            mem.write_slice(frame, GuestAddress(at + 12)).unwrap();
            for (desc, addr, len, flags, next_desc) in [
                (head, at, 12u32, NEXT, body as u16),
                (body, at + 12, frame.len() as u32, 0, 0),
            ] {
                let d = DESC + desc * 16;
                mem.write_obj(addr, GuestAddress(d)).unwrap();
                mem.write_obj(len, GuestAddress(d + 8)).unwrap();
                mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
                mem.write_obj(next_desc, GuestAddress(d + 14)).unwrap();
            }
            let ring_slot = u64::from(*next % QUEUE);
            mem.write_obj(head as u16, GuestAddress(AVAIL + 4 + ring_slot * 2))
                .unwrap();
            *next = next.wrapping_add(1);
        }
        mem.write_obj(*next, GuestAddress(AVAIL + 2)).unwrap();
    }

    #[test]
    fn reading_frames_from_the_transmit_queue_allocates_nothing_once_warm() {
        let (guest, mem, vring) = ready_queue();
        let frame: Vec<u8> = (0..1514u32).map(|i| i as u8).collect();
        let mut buf = vec![0u8; 12 + 1514];
        let mut next = 0u16;
        let mut round = |chains: u16, buf: &mut [u8]| {
            post_tx(&guest, &mut next, chains, &frame);
            let guard = mem.memory();
            let mut state = vring.get_mut();
            for _ in 0..chains {
                let chain = pop_chain(&mut state, &guard).unwrap().expect("a chain");
                let head = chain.head_index();
                assert_eq!(read_chain(chain, &guard, buf), Some(12 + 1514));
                assert_eq!(&buf[12..], &frame[..]);
                state.add_used(head, 0).unwrap();
            }
            assert!(
                pop_chain(&mut state, &guard).unwrap().is_none(),
                "all taken"
            );
        };
        round(QUEUE / 2, &mut buf);

        let allocations = allocations_in(|| {
            for _ in 0..40 {
                round(QUEUE / 2, &mut buf);
            }
        });
        assert_eq!(
            allocations, 0,
            "5120 frames read from the transmit queue allocated"
        );
    }

    #[test]
    fn a_transmit_chain_larger_than_the_buffer_or_outside_memory_is_refused() {
        let (guest, mem, vring) = ready_queue();
        let mut next = 0u16;
        post_tx(&guest, &mut next, 1, &[7u8; 1514]);
        // The frame's buffer now says it lies past the end of memory.
        guest
            .write_obj(1u64 << 40, GuestAddress(DESC + 16))
            .unwrap();
        post_tx(&guest, &mut next, 1, &[7u8; 1514]);
        let guard = mem.memory();
        let mut state = vring.get_mut();
        let mut small = [0u8; 1000];
        let mut big = [0u8; 2000];
        let outside = pop_chain(&mut state, &guard).unwrap().unwrap();
        assert_eq!(
            read_chain(outside, &guard, &mut big),
            None,
            "outside memory"
        );
        let too_big = pop_chain(&mut state, &guard).unwrap().unwrap();
        assert_eq!(
            read_chain(too_big, &guard, &mut small),
            None,
            "larger than the buffer"
        );
    }

    #[test]
    fn writing_frames_into_the_receive_queue_allocates_nothing_once_warm() {
        let (guest, mem, vring) = ready_queue();
        let acked = Acked(bit(VIRTIO_NET_F_MRG_RXBUF) | bit(VIRTIO_F_VERSION_1));
        let mut chains = RxChains::default();
        let frame = [0x5au8; 1514];
        let hdr = VirtioNetHdr::default();
        let mut next = 0u16;
        let mut round = |frames: u16| {
            post(&guest, &mut next, frames);
            for _ in 0..frames {
                let delivery = write_rx(&vring, &mem, acked, &hdr, &frame, &mut chains);
                assert!(matches!(delivery, Ok(Delivery::Written)));
            }
            let delivery = write_rx(&vring, &mem, acked, &hdr, &frame, &mut chains);
            assert!(matches!(delivery, Ok(Delivery::NoRoom)), "all taken");
        };
        round(QUEUE);
        // The last frame, header first, in the last buffer.
        let last = BUFFERS + u64::from(QUEUE - 1) * u64::from(BUFFER);
        let mut written = [0u8; 12 + 1514];
        guest.read_slice(&mut written, GuestAddress(last)).unwrap();
        assert_eq!(&written[12..], &frame[..]);
        assert_eq!(
            u16::from_le_bytes([written[10], written[11]]),
            1,
            "num_buffers"
        );

        let allocations = allocations_in(|| {
            for _ in 0..20 {
                round(QUEUE);
            }
        });
        assert_eq!(
            allocations, 0,
            "5120 frames written into the receive queue allocated"
        );
        // The counter counts: one allocation is seen.
        assert_eq!(allocations_in(|| drop(std::hint::black_box(vec![1u8]))), 1);
    }
}
