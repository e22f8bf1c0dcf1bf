//! The Python binding of ipn: the extension module `ipn._ipn`, which the
//! pure-Python package `ipn` (python/ipn) re-exports with its asyncio
//! helpers. Python's names and defaults are those of the `ipn` command
//! (`ipn create --ports ... --mtu ...`), its errors the built-in exceptions
//! (`errors`), `status()` the dict of `ipn status --json` (`status`), and
//! a port usable from any thread with the GIL released while it waits
//! (`port`).

mod buffer;
mod errors;
mod port;
mod snapshot;

use std::path::PathBuf;

use ipn::{Config, JoinOptions, Network, Protocol};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use errors::open_error;
use port::PyPort;

/// A group given by name or number, as `ipn create --group` takes it.
#[derive(FromPyObject)]
enum Group {
    Number(u32),
    Name(String),
}

impl Group {
    fn gid(&self) -> PyResult<u32> {
        match self {
            Group::Number(gid) => Ok(*gid),
            Group::Name(name) => ipn::group_id(name).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "unknown group '{name}'; give a group name from /etc/group or a number"
                ))
            }),
        }
    }
}

/// The configuration `create()` and `join(create=True)` take.
#[allow(clippy::too_many_arguments)] // Python's keyword arguments, one each.
fn config(
    ports: u32,
    mtu: u32,
    ring: Option<u32>,
    ring_bytes: Option<u64>,
    lossless: bool,
    switch: bool,
    mode: u32,
    group: Option<Group>,
) -> PyResult<Config> {
    Ok(Config {
        protocol: if switch {
            Protocol::Switch
        } else {
            Protocol::Hub
        },
        max_ports: ports,
        mtu,
        ring_slots: ring,
        ring_bytes,
        lossless,
        mode,
        group: group.as_ref().map(Group::gid).transpose()?,
    })
}

/// Creates a network at `path` (a new directory, or an empty one of
/// yours), as `ipn create` does: `ports` port slots, frames of up to `mtu`
/// bytes, `ring` frames and `ring_bytes` bytes buffered per sender
/// (None: 256 frames, or one per KiB of the ring's bytes if more; 256 KiB,
/// or four frames if more), senders that wait for slow
/// readers if `lossless`, a learning switch instead of a hub if `switch`,
/// permission bits `mode` and owning `group` (name or number).
///
/// FileExistsError if a network is there; ValueError for an impossible
/// configuration.
#[pyfunction]
#[pyo3(signature = (path, *, ports=64, mtu=1514, ring=None, ring_bytes=None, lossless=false, switch=false, mode=0o770, group=None))]
#[allow(clippy::too_many_arguments)] // Python's keyword arguments, one each.
fn create(
    py: Python<'_>,
    path: PathBuf,
    ports: u32,
    mtu: u32,
    ring: Option<u32>,
    ring_bytes: Option<u64>,
    lossless: bool,
    switch: bool,
    mode: u32,
    group: Option<Group>,
) -> PyResult<()> {
    let config = config(ports, mtu, ring, ring_bytes, lossless, switch, mode, group)?;
    py.detach(|| Network::create(&path, &config).map(drop))
        .map_err(open_error)
}

/// Removes the network at `path`, as `ipn rm` does. Refuses (OSError,
/// errno EBUSY) while ports are joined, unless `force`.
#[pyfunction]
#[pyo3(signature = (path, force=false))]
fn remove(py: Python<'_>, path: PathBuf, force: bool) -> PyResult<()> {
    py.detach(|| Network::remove(&path, force))
        .map_err(open_error)
}

/// A snapshot of the network at `path` and every port in it: the dict
/// `ipn status --json` prints (format_version 1), with the same keys
/// (each port's `vxlan` is None: `ipn status` reads those counters).
/// Needs read permission only.
#[pyfunction]
fn status<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let status = py
        .detach(|| Network::open(&path).map(|network| network.status()))
        .map_err(open_error)?;
    snapshot::status_dict(py, &status)
}

/// Joins the network at `path` as a new port and returns it. `description`
/// is what `ipn status` shows for it; a port that does not `read` is never
/// waited for by lossless senders; one that does not `write` only
/// listens. `busy_poll` (seconds, at most 0.1), like Linux's
/// SO_BUSY_POLL: a receive that finds nothing keeps looking that long
/// before it sleeps, for the lowest latency at the cost of CPU. With
/// `create`, a network is first created if there is none, with the other
/// arguments as `create()` takes them.
///
/// FileNotFoundError if there is no network, PermissionError (naming the
/// group to ask to join) if you may not join it.
#[pyfunction]
#[pyo3(signature = (path, *, description=String::new(), read=true, write=true, busy_poll=0.0, create=false, ports=64, mtu=1514, ring=None, ring_bytes=None, lossless=false, switch=false, mode=0o770, group=None))]
#[allow(clippy::too_many_arguments)] // Python's keyword arguments, one each.
fn join(
    py: Python<'_>,
    path: PathBuf,
    description: String,
    read: bool,
    write: bool,
    busy_poll: f64,
    create: bool,
    ports: u32,
    mtu: u32,
    ring: Option<u32>,
    ring_bytes: Option<u64>,
    lossless: bool,
    switch: bool,
    mode: u32,
    group: Option<Group>,
) -> PyResult<PyPort> {
    let busy_poll = std::time::Duration::try_from_secs_f64(busy_poll).map_err(|_| {
        PyValueError::new_err(format!(
            "busy_poll must be seconds >= 0 (at most 0.1), not {busy_poll}"
        ))
    })?;
    let options = JoinOptions {
        description,
        read,
        write,
        busy_poll,
        ..JoinOptions::default()
    };
    let config = create
        .then(|| config(ports, mtu, ring, ring_bytes, lossless, switch, mode, group))
        .transpose()?;
    port::join(py, path, options, config)
}

/// Inter Process Networking: shared-memory Ethernet networks that
/// processes join by path (the extension module; use the `ipn` package).
#[pymodule]
fn _ipn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("LAYOUT_VERSION", ipn::LAYOUT_VERSION)?;
    m.add_class::<PyPort>()?;
    m.add_function(wrap_pyfunction!(create, m)?)?;
    m.add_function(wrap_pyfunction!(remove, m)?)?;
    m.add_function(wrap_pyfunction!(status, m)?)?;
    m.add_function(wrap_pyfunction!(join, m)?)?;
    Ok(())
}
