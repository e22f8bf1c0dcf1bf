//! `ipn.Port`: a joined port, used from any Python thread.
//!
//! The library's [`ipn::Port`] takes `&mut self`, so one thread at a time
//! may use it. Here it lives in a [`Slot`], behind a mutex that a call
//! holds from start to end (its [`Checkout`]), waits included. A call
//! takes the mutex with the GIL held when it is free, and waits for it
//! with the GIL released when another thread has it (PyO3's
//! `lock_py_attached`): a thread holding the GIL never blocks on one that
//! holds the port and waits for the GIL.
//!
//! Waiting calls wait in slices of [`SLICE`]: between slices they look at
//! Python's signals (so Ctrl-C interrupts a `recv()` that waits forever)
//! and at whether another thread closed the port.
//!
//! A receive that waits does not hold the port while it waits: it sleeps
//! in `poll` on a duplicate of the port's fd (readable once a frame comes,
//! as for `selectors`), and takes the port again to receive. A send from
//! another thread therefore goes out while a `recv()` waits, as a request
//! must while its thread waits for the answer. A send that waits for room
//! on a lossless network holds the port for at most [`HOLD`] at a time,
//! and lets other threads have it in between.
//!
//! Calls first do what they can without waiting with the GIL held (a
//! send on a lossy network, or on a lossless one with room; a receive of
//! a frame that is waiting, and the rest of a `recv_many` batch), and
//! release it only to wait: releasing and taking it back would cost more
//! than the call (about 100 ns of a 230 ns `recv()`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipn::{JoinOptions, RecvError, SendError, Shutdown};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::buffer::Writable;
use crate::errors::{closed, recv_error, send_error};
use crate::snapshot::status_dict;

/// Longest a call waits without looking at signals and at `close()`.
const SLICE: Duration = Duration::from_millis(100);
/// Longest a send that waits for room holds the port at a time: between
/// two such waits other threads may use it (say, for the receive that
/// the room depends on).
const HOLD: Duration = Duration::from_millis(10);
/// How often a send that waits for room looks for dead readers, so as
/// to stop waiting for them (`Port::sweep_dead`).
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// A joined port and its scratch buffer.
struct Inner {
    port: ipn::Port,
    /// One frame: `Port::max_frame` bytes, so nothing is truncated.
    buf: Vec<u8>,
}

impl Inner {
    fn new(port: ipn::Port) -> Inner {
        let max = port.max_frame();
        Inner {
            port,
            buf: vec![0; max],
        }
    }
}

/// Where the port is kept between calls.
struct Slot {
    /// The port; `None` once closed.
    port: Mutex<Option<Inner>>,
    closed: AtomicBool,
}

impl Slot {
    /// Takes the mutex: at once if it is free, else waiting for it with
    /// the GIL released.
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Option<Inner>> {
        // A panic while it was held (a bug) may have left the port halfway
        // through a call, as it may leave any port whose call panics: it
        // is as usable as after that call, so a poisoned lock is as good.
        self.port
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// The port, held by one call: the slot's mutex, locked with the port in
/// it.
struct Checkout<'a> {
    guard: MutexGuard<'a, Option<Inner>>,
}

impl Checkout<'_> {
    fn get(&mut self) -> &mut Inner {
        self.guard
            .as_mut()
            .expect("a checkout is made only of a slot that holds its port")
    }
}

/// When a wait given as `timeout=` seconds ends.
#[derive(Clone, Copy)]
enum Deadline {
    Now,
    At(Instant),
    Never,
}

impl Deadline {
    fn from_timeout(timeout: Option<f64>) -> PyResult<Deadline> {
        match timeout {
            None => Ok(Deadline::Never),
            Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(format!(
                "timeout must be None (wait as long as it takes) or seconds >= 0, not {t}"
            ))),
            Some(0.0) => Ok(Deadline::Now),
            Some(t) => Ok(Duration::try_from_secs_f64(t)
                .ok()
                .and_then(|d| Instant::now().checked_add(d))
                .map_or(Deadline::Never, Deadline::At)),
        }
    }

    /// How long the next slice of a wait may be; `None` once it is over.
    fn next_slice(self) -> Option<Duration> {
        match self {
            Deadline::Now => None,
            Deadline::Never => Some(SLICE),
            Deadline::At(at) => {
                let left = at.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(SLICE))
            }
        }
    }
}

/// A port joined to a network: sends frames to every other port, receives
/// theirs.
///
/// Made by `ipn.join()`. A context manager: leaving the `with` block (or
/// `close()`) leaves the network; so does the object going away.
/// `fileno()` is readable while frames wait, for `selectors`, `select`
/// and asyncio's `loop.add_reader`.
///
/// A port may be used from several threads; its calls then take turns,
/// and a call that waits lets the others use the port meanwhile: one
/// thread may wait for frames while another sends, or send while another
/// waits for room. Every call that waits releases the GIL.
#[pyclass(module = "ipn", name = "Port", frozen)]
pub struct PyPort {
    slot: Slot,
    fd: i32,
    /// A duplicate of the port's fd, for a receive to wait on without the
    /// port. Closed with this object, not by `close()`, so that a wait in
    /// progress never polls a number reused by another file.
    waiter: OwnedFd,
    index: u32,
    mtu: u32,
    max_frame: usize,
    lossless: bool,
    path: PathBuf,
}

/// What a port is, not its state: the state is behind the slot's lock.
impl std::fmt::Debug for PyPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyPort")
            .field("path", &self.path)
            .field("index", &self.index)
            .field("fd", &self.fd)
            .field("mtu", &self.mtu)
            .field("lossless", &self.lossless)
            .finish_non_exhaustive()
    }
}

impl PyPort {
    pub fn new(port: ipn::Port) -> io::Result<PyPort> {
        Ok(PyPort {
            fd: port.as_raw_fd(),
            waiter: port.as_fd().try_clone_to_owned()?,
            index: port.index(),
            mtu: port.mtu(),
            max_frame: port.max_frame(),
            lossless: port.lossless(),
            path: port.path().to_path_buf(),
            slot: Slot {
                port: Mutex::new(Some(Inner::new(port))),
                closed: AtomicBool::new(false),
            },
        })
    }

    fn is_closed(&self) -> bool {
        self.slot.closed.load(Ordering::Acquire)
    }

    /// Takes the port for one call: at once if no other thread has it,
    /// else waiting for it with the GIL released.
    fn checkout(&self, py: Python<'_>) -> PyResult<Checkout<'_>> {
        if self.is_closed() {
            return Err(closed());
        }
        let guard = self.slot.lock(py);
        // Closed while we waited for it.
        if guard.is_none() {
            return Err(closed());
        }
        Ok(Checkout { guard })
    }

    /// Between two slices of a wait: a signal handler's exception (say,
    /// KeyboardInterrupt), or `close()` from another thread, ends it.
    fn between_slices(&self, py: Python<'_>) -> PyResult<()> {
        py.check_signals()?;
        if self.is_closed() {
            return Err(closed());
        }
        Ok(())
    }

    /// Receives one frame into the port's `buf[..len]`, and returns the
    /// port with it: a frame that is waiting with the GIL held (releasing
    /// and retaking it would cost more than the receive), else waiting
    /// with the GIL released and the port free for other threads (module
    /// docs).
    fn receive(
        &self,
        py: Python<'_>,
        len: usize,
        deadline: Deadline,
    ) -> PyResult<(Checkout<'_>, usize)> {
        let mut co = self.checkout(py)?;
        let inner = co.get();
        let buf = &mut inner.buf[..len];
        let first = match deadline {
            // Finding nothing, it arms the doorbell: the fd then sleeps
            // until a frame comes.
            Deadline::Now => inner.port.try_recv(buf),
            // The same, for a caller that waits next: finding nothing it
            // first looks on while frames come closer together than a
            // wake-up costs (the port's pace, as a blocking receive does);
            // taking the last frame it arms at once, so that a wait after
            // it sleeps till the next one.
            _ => inner.port.try_recv_after_poll(buf),
        };
        match first {
            Ok(n) => return Ok((co, n)),
            Err(RecvError::WouldBlock) if !matches!(deadline, Deadline::Now) => {}
            Err(e) => return Err(recv_error(e)),
        }
        drop(co);
        loop {
            let Some(wait) = deadline.next_slice() else {
                return Err(recv_error(RecvError::TimedOut));
            };
            let readable = py.detach(|| wait_readable(self.waiter.as_fd(), wait))?;
            self.between_slices(py)?;
            let mut co = self.checkout(py)?;
            let inner = co.get();
            let buf = &mut inner.buf[..len];
            // Readable: one receive per readiness, as QEMU's pattern. A
            // slice's end: a receive that also looks at who joined or
            // died. Either, finding nothing (another thread's receive took
            // it), arms again.
            let got = if readable {
                inner.port.try_recv_after_poll(buf)
            } else {
                inner.port.try_recv(buf)
            };
            match got {
                Ok(n) => return Ok((co, n)),
                Err(RecvError::WouldBlock) => {}
                Err(e) => return Err(recv_error(e)),
            }
        }
    }

    /// Offers `frame`, which is the port's own `buf[..len]` if `frame` is
    /// `None`, to `batch`: sent at once if it can be, else after waiting
    /// for room with the GIL released, for at most [`HOLD`].
    fn transmit(
        &self,
        py: Python<'_>,
        batch: &mut ipn::Batch<'_>,
        buf: &mut [u8],
        frame: Option<&[u8]>,
        len: usize,
        deadline: Deadline,
    ) -> PyResult<Offer> {
        let first = match frame {
            Some(frame) => batch.try_send(frame),
            None => batch.try_send(&buf[..len]),
        };
        match first {
            Ok(()) => return Ok(Offer::Sent),
            Err(SendError::WouldBlock) if !matches!(deadline, Deadline::Now) => {}
            Err(e) => return Err(send_error(e)),
        }
        let Some(wait) = deadline.next_slice() else {
            return Err(send_error(SendError::TimedOut));
        };
        // A lossless network with a reader that has no room: wait for it,
        // from our own copy of the frame (the caller's needs the GIL).
        if let Some(frame) = frame {
            buf[..frame.len()].copy_from_slice(frame);
        }
        let len = frame.map_or(len, <[u8]>::len);
        match py.detach(|| batch.send_timeout(&buf[..len], wait.min(HOLD))) {
            Ok(()) => Ok(Offer::Sent),
            Err(SendError::TimedOut) => Ok(Offer::NoRoomYet),
            Err(e) => Err(send_error(e)),
        }
    }

    /// Offers one bytes-like object to `batch` ([`PyPort::transmit`]).
    fn send_one(
        &self,
        py: Python<'_>,
        batch: &mut ipn::Batch<'_>,
        buf: &mut [u8],
        frame: &Bound<'_, PyAny>,
        deadline: Deadline,
    ) -> PyResult<Offer> {
        if let Ok(bytes) = frame.cast::<PyBytes>() {
            return self.transmit(py, batch, buf, Some(bytes.as_bytes()), 0, deadline);
        }
        let buffer = frame_buffer(frame)?;
        let len = buffer.len_bytes();
        if len > buf.len() {
            return Err(send_error(SendError::TooBig { len, mtu: self.mtu }));
        }
        buffer.copy_to_slice(py, &mut buf[..len])?;
        self.transmit(py, batch, buf, None, len, deadline)
    }

    /// Sends every frame of `frames`, in order, in one batch while none
    /// has to wait for room; one that has to holds the port for at most
    /// [`HOLD`] at a time, and the batch starts again after it. Returns
    /// how many were sent, also with the error that stopped it.
    fn send_all<'py>(
        &self,
        py: Python<'py>,
        mut frames: impl Iterator<Item = PyResult<Bound<'py, PyAny>>>,
        deadline: Deadline,
    ) -> Result<usize, (PyErr, usize)> {
        let mut sent = 0;
        // A frame that found no room yet, to offer again.
        let mut waiting: Option<Bound<'py, PyAny>> = None;
        let mut next_sweep = None;
        loop {
            let mut co = self.checkout(py).map_err(|e| (e, sent))?;
            let Inner { port, buf } = co.get();
            if next_sweep.is_some_and(|at| Instant::now() >= at) {
                port.sweep_dead();
                next_sweep = None;
            }
            let mut batch = port.batch();
            loop {
                let frame = match waiting.take().map(Ok).or_else(|| frames.next()) {
                    None => return Ok(sent),
                    Some(frame) => frame.map_err(|e| (e, sent))?,
                };
                match self.send_one(py, &mut batch, buf, &frame, deadline) {
                    Ok(Offer::Sent) => sent += 1,
                    Ok(Offer::NoRoomYet) => {
                        waiting = Some(frame);
                        break;
                    }
                    Err(e) => return Err((e, sent)),
                }
            }
            // The batch ends here (its frames announced), and the port is
            // free for other threads till the next offer.
            drop(batch);
            drop(co);
            next_sweep.get_or_insert_with(|| Instant::now() + SWEEP_INTERVAL);
            self.between_slices(py).map_err(|e| (e, sent))?;
        }
    }
}

/// What became of a frame offered to a send.
enum Offer {
    Sent,
    /// No room before [`HOLD`] (nor the deadline) was over: offer it again
    /// after letting other threads have the port.
    NoRoomYet,
}

/// Waits at most `wait` for `fd` to be readable; whether it is. A signal
/// ends the wait early, as not readable: the caller looks at signals next.
fn wait_readable(fd: BorrowedFd<'_>, wait: Duration) -> PyResult<bool> {
    // Rounded up: a wait of 0.3 ms is not a look that does not wait.
    let ms = wait.as_micros().div_ceil(1000);
    let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    match poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], timeout) {
        Ok(n) => Ok(n > 0),
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(io::Error::from(e).into()),
    }
}

/// A bytes-like object's buffer, as bytes, contiguous.
fn frame_buffer(object: &Bound<'_, PyAny>) -> PyResult<PyBuffer<u8>> {
    let buffer = PyBuffer::<u8>::get(object).map_err(|_| {
        PyTypeError::new_err(format!(
            "a frame is a bytes-like object (bytes, bytearray, memoryview), not {}",
            object
                .get_type()
                .name()
                .map_or_else(|_| "that".into(), |n| n.to_string())
        ))
    })?;
    if !buffer.is_c_contiguous() {
        return Err(PyValueError::new_err(
            "a frame must be a contiguous buffer (copy it with bytes(...) first)",
        ));
    }
    Ok(buffer)
}

#[pymethods]
impl PyPort {
    /// Sends one frame (bytes, bytearray, memoryview: any bytes-like
    /// object of 1 to `mtu` bytes) to every other port.
    ///
    /// On a lossy network it never waits. On a lossless one it waits until
    /// every live reader has room: `timeout=None` as long as it takes,
    /// `timeout=0` not at all (BlockingIOError), else up to `timeout`
    /// seconds (TimeoutError). ValueError for an empty or oversized frame.
    #[pyo3(signature = (frame, timeout=None))]
    fn send(&self, py: Python<'_>, frame: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let deadline = Deadline::from_timeout(timeout)?;
        self.send_all(py, std::iter::once(Ok(frame.clone())), deadline)
            .map(drop)
            .map_err(|(e, _)| e)
    }

    /// Sends every frame of an iterable of bytes-like objects, in order,
    /// as `send()` each would, for a fraction of the cost per frame: a
    /// subscriber that sleeps is woken once, when the last frame is sent
    /// (or before a wait for room), not for every frame. Returns how many
    /// were sent. If one cannot be sent (too big, or no
    /// room before `timeout`), the exception raised has the count of the
    /// frames sent before it as its `frames_sent` attribute.
    #[pyo3(signature = (frames, timeout=None))]
    fn send_many(
        &self,
        py: Python<'_>,
        frames: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let deadline = Deadline::from_timeout(timeout)?;
        // One batch: each sleeping subscriber is woken once for all of
        // it (or before a wait for room), not again for every frame sent
        // after it fell asleep. Each frame straight from the caller's
        // object, with the GIL held (as the iteration needs it anyway),
        // released only to wait for room.
        self.send_all(py, frames.try_iter()?, deadline)
            .map_err(|(e, sent)| {
                let _ = e.value(py).setattr("frames_sent", sent);
                e
            })
    }

    /// Receives one frame and returns it as bytes. Waits as long as it
    /// takes (`timeout=None`), not at all (`timeout=0`: BlockingIOError if
    /// nothing waits), or up to `timeout` seconds (TimeoutError).
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let deadline = Deadline::from_timeout(timeout)?;
        let (mut co, n) = self.receive(py, self.max_frame, deadline)?;
        Ok(PyBytes::new(py, &co.get().buf[..n]))
    }

    /// Receives one frame into a writable bytes-like object (bytearray,
    /// memoryview, array) without allocating, and returns its length. A
    /// frame longer than the buffer is truncated; one of `max_frame` bytes
    /// never is. Waits as `recv()` does.
    #[pyo3(signature = (buffer, timeout=None))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let deadline = Deadline::from_timeout(timeout)?;
        let target = Writable::new(frame_buffer(buffer)?)?;
        let len = target.len().min(self.max_frame);
        let (mut co, n) = self.receive(py, len, deadline)?;
        let n = target.write_start(py, &co.get().buf[..n]);
        Ok(n)
    }

    /// Receives up to `max_frames` frames and returns them as a list of
    /// bytes: waits for the first as `recv()` does, then takes what else
    /// is waiting without waiting. One call for many frames: what a busy
    /// subscriber reads with.
    #[pyo3(signature = (max_frames=64, timeout=None))]
    fn recv_many<'py>(
        &self,
        py: Python<'py>,
        max_frames: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        if max_frames == 0 {
            return Err(PyValueError::new_err("max_frames must be at least 1"));
        }
        let deadline = Deadline::from_timeout(timeout)?;
        let (mut co, n) = self.receive(py, self.max_frame, deadline)?;
        let inner = co.get();
        let frames = PyList::empty(py);
        frames.append(PyBytes::new(py, &inner.buf[..n]))?;
        // The rest with the GIL held, straight into bytes objects. An
        // error after the first frame ends the batch (the next call
        // raises it), so that no frame taken is lost.
        while frames.len() < max_frames {
            match inner.port.try_recv_before_wait(&mut inner.buf) {
                Ok(n) => frames.append(PyBytes::new(py, &inner.buf[..n]))?,
                Err(_) => break,
            }
        }
        Ok(frames)
    }

    /// The port's doorbell socket: readable while frames wait for this
    /// port, for `selectors`, `select.poll` and `loop.add_reader`. After it
    /// says readable, receive with `timeout=0` until BlockingIOError.
    fn fileno(&self) -> PyResult<i32> {
        if self.is_closed() {
            return Err(closed());
        }
        Ok(self.fd)
    }

    /// Leaves the network. Calls waiting in other threads end with
    /// ValueError; calling it again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.slot.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // A call in another thread gives the port back within a slice;
        // those that wait for it then find it gone. It leaves the network
        // as it is dropped, after the lock.
        let port = self.slot.lock(py).take();
        drop(port);
        Ok(())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.is_closed()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// Stops receiving ("read"), sending ("write") or both ("both"); the
    /// port stays joined. Lossless senders stop waiting for a port that
    /// no longer reads.
    fn shutdown(&self, py: Python<'_>, how: &str) -> PyResult<()> {
        let how = match how {
            "read" => Shutdown::Read,
            "write" => Shutdown::Write,
            "both" => Shutdown::Both,
            other => {
                return Err(PyValueError::new_err(format!(
                    "shutdown takes \"read\", \"write\" or \"both\", not {other:?}"
                )))
            }
        };
        self.checkout(py)?.get().port.shutdown(how);
        Ok(())
    }

    /// A snapshot of the whole network, the dict `ipn.status()` returns.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let status = self.checkout(py)?.get().port.status();
        status_dict(py, &status)
    }

    /// This port's number (its slot; `ipn status` shows it).
    #[getter]
    fn index(&self) -> u32 {
        self.index
    }

    /// Largest frame the network carries, in bytes (an 802.1Q tag may add 4).
    #[getter]
    fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Largest frame a receive can return: a buffer this long never truncates.
    #[getter]
    fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Whether senders wait for slow readers on this network.
    #[getter]
    fn lossless(&self) -> bool {
        self.lossless
    }

    /// The network's path.
    #[getter]
    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Live ports that read, this one included if it reads.
    #[getter]
    fn readers(&self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.checkout(py)?.get().port.membership().readers)
    }

    /// Live ports that write, this one included if it writes.
    #[getter]
    fn writers(&self, py: Python<'_>) -> PyResult<u32> {
        Ok(self.checkout(py)?.get().port.membership().writers)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// The next frame, waiting as long as it takes; the iteration ends
    /// when the port is closed (by another thread).
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        match self.recv(py, None) {
            Err(_) if self.is_closed() => Ok(None),
            other => other.map(Some),
        }
    }

    /// For asyncio: `async for frame in port.frames(): ...` receives frames
    /// as they come, waiting in the event loop (`loop.add_reader` on
    /// `fileno()`), never blocking it; up to `max_frames` are taken per
    /// wake-up.
    #[pyo3(signature = (max_frames=64))]
    fn frames<'py>(slf: &Bound<'py, Self>, max_frames: usize) -> PyResult<Bound<'py, PyAny>> {
        slf.py()
            .import("ipn._aio")?
            .call_method1("frames", (slf, max_frames))
    }

    /// For asyncio: `frame = await port.arecv()` receives one frame,
    /// waiting in the event loop.
    fn arecv<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py().import("ipn._aio")?.call_method1("recv", (slf,))
    }

    fn __repr__(&self) -> String {
        format!(
            "<ipn.Port {} on {} (mtu {}, {}){}>",
            self.index,
            self.path.display(),
            self.mtu,
            if self.lossless { "lossless" } else { "lossy" },
            if self.is_closed() { ", closed" } else { "" }
        )
    }
}

/// Joins the network at `path` (creating it first with `config` if asked).
pub fn join(
    py: Python<'_>,
    path: PathBuf,
    options: JoinOptions,
    create: Option<ipn::Config>,
) -> PyResult<PyPort> {
    let port = py
        .detach(|| match &create {
            Some(config) => ipn::Port::join_or_create(&path, config, &options),
            None => ipn::Port::join(&path, &options),
        })
        .map_err(crate::errors::open_error)?;
    Ok(PyPort::new(port)?)
}
