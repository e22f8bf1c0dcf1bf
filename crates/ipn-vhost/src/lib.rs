//! A vhost-user net backend that is one port of an ipn network: a QEMU
//! VM's virtio-net NIC, served from outside QEMU, on the network.
//!
//! ```text
//! QEMU ──vhost-user socket──> serve ──(worker thread)── guest queues
//!                                        │  virtio-net hdr + frame
//!                                        └── Port (offloads) ── network
//! ```
//!
//! One process per VM, as `ipn tap` is one per TAP: no central process.
//! QEMU shares the guest's memory (`memory-backend-memfd,share=on`) and
//! hands over the queues; the backend moves frames between them and a
//! [`Port`] joined with offloads (`JoinOptions::offload`), on the rust-vmm
//! crates (`vhost-user-backend`, `virtio-queue`, `vm-memory`).
//!
//! - Guest transmit: each chain is the guest's 12-byte header
//!   (`virtio_net_hdr_mrg_rxbuf`) and a frame of up to 64 KiB (TSO); the
//!   port takes the first 10 bytes of that header and the frame. Other
//!   offload ports get GSO frames whole; the network cuts them for the
//!   rest.
//! - Guest receive: each frame from the port (10-byte header + frame) goes
//!   into as many receive buffers as it takes (mergeable buffers,
//!   `num_buffers`), and the guest is signalled as its event index asks.
//!   A frame whose offloads the guest did not negotiate is cut and
//!   checksummed here first (`ipn::offload::Segments`).
//! - The port's fd is one more event source of the backend's worker
//!   thread (`VringEpollHandler::register_listener`); see `backend` for
//!   the data path and its invariants.
//!
//! Two ways to meet QEMU: [`serve`] listens on a socket QEMU connects to
//! (`-chardev socket,path=SOCK,reconnect=1`, libvirt's `mode='client'`);
//! [`serve_connecting`] connects to a socket QEMU listens on
//! (`-chardev socket,path=SOCK,server=on,wait=off`, libvirt's
//! `mode='server'`), retrying until it listens and again whenever the
//! connection drops, so that a restarted backend or a restarted QEMU
//! simply finds the other again.
//!
//! [`serve`] owns the socket and the port for the process's life. Each
//! connection gets a fresh device (QEMU sets everything up again when it
//! connects, including after the backend restarted: `reconnect=1`); a
//! guest reset stops and restarts the queues within one. Between
//! connections frames from the network are read and dropped, never left to
//! hold up a lossless network. A second frontend while one is connected
//! is refused. [`serve`] returns within [`TICK`] of `stop` saying so.

mod backend;
mod shim;
pub mod socket;

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipn::{Port, RecvError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use backend::{lock, NetBackend, Shared};
pub use socket::{SocketError, VhostSocket};

/// Longest [`serve`] goes without asking `stop`.
pub const TICK: Duration = Duration::from_millis(100);

/// Most frames dropped in one go while no guest is connected.
const DRAIN_BATCH: usize = 256;

/// What a [`serve`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames the guest sent into the network.
    pub to_network: u64,
    /// Frames (or segments) from the network put into the guest's buffers.
    pub to_guest: u64,
    /// Frames from the network dropped while no guest was there to take
    /// them (not connected, driver not started, device reset).
    pub no_guest: u64,
    /// Frames from the guest the network refused (over its MTU, a header
    /// it cannot follow, an empty or unreadable chain).
    pub refused_by_network: u64,
    /// Frames from the network the guest could not take (a buffer too
    /// small, a frame that could not be cut for it).
    pub refused_by_guest: u64,
    /// Frontend connections served.
    pub connections: u64,
}

/// What [`serve`] tells its caller as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A frontend (QEMU) connected.
    Connected,
    /// The frontend went away, or was sent away: why, if not simply
    /// because it closed the connection.
    Disconnected(Option<String>),
    /// A second frontend connected while one is served, and was closed.
    RefusedSecond,
    /// Connecting to the frontend's socket failed for a reason other
    /// than its not listening yet (said once per reason; retried).
    CannotConnect(String),
}

/// Where frontends come from.
enum Frontends<'a> {
    /// They connect to our socket.
    Listen(&'a VhostSocket),
    /// We connect to theirs.
    Connect(&'a Path),
}

/// Why [`serve`] stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    /// Setting up a connection's device failed (threads, epoll, eventfd).
    #[error("vhost-user: setting up the device: {0}")]
    Setup(String),
    /// poll(2) failed.
    #[error("poll: {0}")]
    Poll(io::Error),
    /// The port cannot go on: the network's shared file was damaged, say.
    #[error("network port: {0}")]
    Network(String),
    /// Receiving while no guest is connected failed.
    #[error("network port: {0}")]
    Port(#[from] RecvError),
}

/// Serves `socket`'s frontends with `port` until `stop` returns true
/// (asked at least every [`TICK`]); then leaves the network (drops the
/// port) and removes the socket. `report` hears of connections.
///
/// SIGINT and SIGTERM are blocked in the threads this starts, so that they
/// reach the caller's thread (whose handler can then make `stop` true).
pub fn serve(
    port: Port,
    socket: VhostSocket,
    stop: &dyn Fn() -> bool,
    report: &mut dyn FnMut(Event),
) -> Result<Stats, VhostError> {
    let shared = Arc::new(Shared {
        port: Mutex::new(Some(port)),
        ..Shared::default()
    });
    let mut connections = 0;
    let result = run(
        &shared,
        Frontends::Listen(&socket),
        stop,
        report,
        &mut connections,
    );
    // Leave the network before the socket goes: the port first.
    drop(lock(&shared.port).take());
    drop(socket);
    result?;
    Ok(stats(&shared, connections))
}

/// Serves the frontend listening at `path` with `port` until `stop`
/// returns true (asked at least every [`TICK`]): connects, and connects
/// again whenever the connection ends, trying every [`TICK`] while
/// nobody listens there. Frames from the network are dropped while no
/// frontend is connected. Then leaves the network. SIGINT and SIGTERM as
/// for [`serve`].
pub fn serve_connecting(
    port: Port,
    path: &Path,
    stop: &dyn Fn() -> bool,
    report: &mut dyn FnMut(Event),
) -> Result<Stats, VhostError> {
    let shared = Arc::new(Shared {
        port: Mutex::new(Some(port)),
        ..Shared::default()
    });
    let mut connections = 0;
    let result = run(
        &shared,
        Frontends::Connect(path),
        stop,
        report,
        &mut connections,
    );
    drop(lock(&shared.port).take());
    result?;
    Ok(stats(&shared, connections))
}

fn stats(shared: &Shared, connections: u64) -> Stats {
    let c = &shared.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    Stats {
        to_network: get(&c.to_network),
        to_guest: get(&c.to_guest),
        no_guest: get(&c.no_guest),
        refused_by_network: get(&c.refused_by_network),
        refused_by_guest: get(&c.refused_by_guest),
        connections,
    }
}

fn run(
    shared: &Arc<Shared>,
    frontends: Frontends,
    stop: &dyn Fn() -> bool,
    report: &mut dyn FnMut(Event),
    connections: &mut u64,
) -> Result<(), VhostError> {
    let mut buf = vec![0u8; ipn::offload::MAX_GSO_FRAME + 16];
    let mut last_failure = None;
    loop {
        if let Some(why) = lock(&shared.fatal).take() {
            return Err(VhostError::Network(why));
        }
        let qemu = match frontends {
            Frontends::Listen(socket) => {
                if !wait_for_frontend(shared, Some(socket), stop, &mut buf)? {
                    return Ok(());
                }
                match socket.listener().accept() {
                    Ok((qemu, _)) => qemu,
                    Err(e) => {
                        report(Event::Disconnected(Some(format!(
                            "accepting the frontend: {e}"
                        ))));
                        continue;
                    }
                }
            }
            Frontends::Connect(path) => match UnixStream::connect(path) {
                Ok(qemu) => {
                    last_failure = None;
                    qemu
                }
                Err(e) => {
                    // Not there yet, or not listening yet: try again.
                    let waiting = matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    );
                    let why = format!("{}: {e}", path.display());
                    if !waiting && last_failure.as_ref() != Some(&why) {
                        report(Event::CannotConnect(why.clone()));
                        last_failure = Some(why);
                    }
                    if !wait_for_frontend(shared, None, stop, &mut buf)? {
                        return Ok(());
                    }
                    continue;
                }
            },
        };
        *connections += 1;
        let listening = match frontends {
            Frontends::Listen(socket) => Some(socket),
            Frontends::Connect(_) => None,
        };
        let why = connection(shared, qemu, listening, stop, report, *connections)?;
        report(Event::Disconnected(why));
        if stop() {
            return Ok(());
        }
    }
}

/// Waits for a frontend to connect to `socket` (with none: for one
/// [`TICK`]), dropping what the network sends meanwhile; false if `stop`
/// said so first.
fn wait_for_frontend(
    shared: &Shared,
    socket: Option<&VhostSocket>,
    stop: &dyn Fn() -> bool,
    buf: &mut [u8],
) -> Result<bool, VhostError> {
    let started = std::time::Instant::now();
    loop {
        if socket.is_none() && started.elapsed() >= TICK {
            return Ok(!stop());
        }
        if stop() {
            return Ok(false);
        }
        let (listener_ready, port_ready) = {
            let port = lock(&shared.port);
            let Some(port) = port.as_ref() else {
                return Ok(false);
            };
            let port_fd = PollFd::new(port.as_fd(), PollFlags::POLLIN);
            let mut fds = match socket {
                Some(socket) => vec![
                    port_fd,
                    PollFd::new(socket.listener().as_fd(), PollFlags::POLLIN),
                ],
                None => vec![port_fd],
            };
            let left = TICK.saturating_sub(started.elapsed());
            let wait = if socket.is_some() { TICK } else { left };
            let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(VhostError::Poll(e.into())),
            }
            let ready = |fd: &PollFd| {
                fd.revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
            };
            (fds.get(1).is_some_and(ready), ready(&fds[0]))
        };
        if port_ready {
            drain(shared, buf)?;
        }
        if listener_ready {
            return Ok(true);
        }
    }
}

/// Reads and drops what waits for the port (no guest to give it to).
fn drain(shared: &Shared, buf: &mut [u8]) -> Result<(), VhostError> {
    let mut port = lock(&shared.port);
    let Some(port) = port.as_mut() else {
        return Ok(());
    };
    for i in 0..DRAIN_BATCH {
        let received = if i == 0 {
            port.try_recv_after_poll(buf)
        } else {
            port.try_recv(buf)
        };
        match received {
            Ok(_) => {
                shared
                    .counters
                    .no_guest
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(RecvError::WouldBlock) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Serves one frontend: a fresh device and daemon, until the frontend
/// goes, `stop` says so, or the device breaks. Returns why it ended when
/// not simply because the frontend closed the connection.
///
/// QEMU's connection is accepted here and passed to the daemon through
/// `shim` over a private socket (in a directory only we may enter,
/// removed once connected).
fn connection(
    shared: &Arc<Shared>,
    qemu: UnixStream,
    listening: Option<&VhostSocket>,
    stop: &dyn Fn() -> bool,
    report: &mut dyn FnMut(Event),
    number: u64,
) -> Result<Option<String>, VhostError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| VhostError::Setup(format!("{what}: {e}"));
    // In a directory of our own (mode 0700): nobody but us (and root)
    // can connect to it before we do.
    let private = nix::unistd::mkdtemp(&std::env::temp_dir().join("ipn-vhost-user.XXXXXX"))
        .map_err(|e| setup("a private directory for the handler's socket", &e))?;
    let address = private.join(format!("handler.{number}"));
    let bound = UnixListener::bind(&address);
    let to_handler = bound.as_ref().ok().map(|_| UnixStream::connect(&address));
    let _ = std::fs::remove_file(&address);
    let _ = std::fs::remove_dir(&private);
    let mut inner = Listener::from(bound.map_err(|e| setup("the handler's socket", &e))?);
    let to_handler = match to_handler {
        Some(Ok(stream)) => stream,
        Some(Err(e)) => return Err(setup("connecting to the handler's socket", &e)),
        None => return Err(VhostError::Setup("the handler's socket".into())),
    };
    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
    let device = NetBackend::new(Arc::clone(shared), mem.clone())
        .map_err(|e| setup("the device's event fds", &e))?;
    let backend = Arc::new(Mutex::new(device));
    let mut daemon = without_signals(|| {
        VhostUserDaemon::new("ipn-vhost-user".into(), Arc::clone(&backend), mem)
    })
    .map_err(|e| setup("starting the worker thread", &e))?;
    let workers = daemon.get_epoll_handlers();
    let worker = workers
        .first()
        .ok_or_else(|| VhostError::Setup("no worker thread".into()))?;
    lock(&backend)
        .attach(Arc::clone(worker))
        .map_err(|e| setup("adding the port to the worker's epoll set", &e))?;
    let started = without_signals(|| daemon.start(&mut inner));
    drop(inner);
    let ended = match started {
        Err(e) => Some(format!("starting the request handler: {e}")),
        Ok(()) => {
            report(Event::Connected);
            serve_connection(
                shared,
                listening,
                &mut daemon,
                &qemu,
                &to_handler,
                stop,
                report,
            )
        }
    };
    for worker in &workers {
        worker.send_exit_event();
    }
    lock(&backend).detach();
    Ok(ended)
}

/// Passes messages between QEMU and the daemon and waits for the
/// connection to end, while refusing second frontends and asking `stop`
/// every [`TICK`].
fn serve_connection(
    shared: &Shared,
    listening: Option<&VhostSocket>,
    daemon: &mut VhostUserDaemon<backend::Backend>,
    qemu: &UnixStream,
    to_handler: &UnixStream,
    stop: &dyn Fn() -> bool,
    report: &mut dyn FnMut(Event),
) -> Option<String> {
    let shutdown = daemon.shutdown_handle();
    let mut closing: Option<String> = None;
    let mut refused = false;
    let (result, requests, replies) = std::thread::scope(|scope| {
        let (done, finished) = mpsc::channel();
        let (waiter, requests, replies) = without_signals(|| {
            (
                scope.spawn(move || {
                    let result = daemon.wait();
                    let _ = done.send(());
                    result
                }),
                scope.spawn(|| shim::frontend_to_backend(qemu, to_handler)),
                scope.spawn(|| shim::backend_to_frontend(to_handler, qemu)),
            )
        });
        loop {
            match finished.recv_timeout(TICK) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if listening.is_some_and(refuse_second) && !refused {
                // Once per connection: a second QEMU with reconnect=1
                // tries every second.
                refused = true;
                report(Event::RefusedSecond);
            }
            if closing.is_some() {
                continue;
            }
            let why = if stop() {
                Some("stopping".to_string())
            } else if let Some(why) = lock(&shared.broken).take() {
                Some(format!("the device broke: {why}"))
            } else {
                lock(&shared.fatal).clone()
            };
            if let Some(why) = why {
                closing = Some(why);
                if let Some(shutdown) = &shutdown {
                    shutdown.shutdown();
                }
            }
        }
        // The daemon is done: end both directions of the shim.
        let _ = qemu.shutdown(std::net::Shutdown::Both);
        let _ = to_handler.shutdown(std::net::Shutdown::Both);
        (waiter.join(), requests.join(), replies.join())
    });
    let results = [requests, replies];
    let shim_error = |refused_only: bool| {
        results.iter().find_map(|r| match r {
            Ok(Err(e)) if refused_only && e.kind() != io::ErrorKind::InvalidData => None,
            Ok(Err(e)) if e.kind() != io::ErrorKind::NotConnected => Some(e.to_string()),
            _ => None,
        })
    };
    match (closing, result) {
        (Some(why), _) => Some(why),
        // A message the shim refused (a memory table outside its file)
        // ends the daemon as a disconnection would: say why.
        (None, _) if shim_error(true).is_some() => {
            shim_error(true).map(|e| format!("refused a message: {e}"))
        }
        (None, Ok(Ok(()))) => shim_error(false).map(|e| format!("passing messages: {e}")),
        // QEMU closed the connection (it stopped, or was stopped).
        (
            None,
            Ok(Err(vhost_user_backend::Error::HandleRequest(
                vhost::vhost_user::Error::Disconnected | vhost::vhost_user::Error::PartialMessage,
            ))),
        ) => None,
        (None, Ok(Err(e))) => Some(e.to_string()),
        (None, Err(_)) => Some("the connection's thread panicked".into()),
    }
}

/// Accepts and closes a frontend waiting on the socket, if there is one.
fn refuse_second(socket: &VhostSocket) -> bool {
    let listener = socket.listener();
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
        return false;
    }
    // Readable: accept does not block.
    listener.accept().is_ok()
}

/// Runs `f` (which starts threads) with SIGINT and SIGTERM blocked, so
/// that the threads it starts inherit the mask and the signals go to the
/// caller's thread.
fn without_signals<T>(f: impl FnOnce() -> T) -> T {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let mut old = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).is_ok();
    let result = f();
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    result
}
