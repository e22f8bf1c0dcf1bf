//! `ipn.status()` and `Port.status()`: a network's snapshot as the dict
//! `ipn status --json` prints (format_version 1), key for key, so that a
//! script may switch between the two freely. The tests compare them.
//!
//! One difference: a port's `vxlan` is always `None` here. The counters
//! an `ipn vxlan` port publishes about itself (`PATH/stats.N`) are checked
//! and read by `ipn status`, whose parser lives in the CLI.

use ipn::ethernet::{Mac, Vlan};
use ipn::{PortStatus, Status};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The JSON document's `format_version`.
const FORMAT_VERSION: u32 = 1;

/// The whole snapshot.
pub fn status_dict<'py>(py: Python<'py>, status: &Status) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("format_version", FORMAT_VERSION)?;
    d.set_item("path", status.path.to_string_lossy())?;
    d.set_item("protocol", status.protocol.name())?;
    d.set_item("lossless", status.lossless)?;
    d.set_item("mtu", status.mtu)?;
    d.set_item("max_ports", status.max_ports)?;
    d.set_item("ring_slots", status.ring_slots)?;
    d.set_item("ring_bytes", status.ring_bytes)?;
    d.set_item("memory", status.memory)?;
    d.set_item("readers", status.membership.readers)?;
    d.set_item("writers", status.membership.writers)?;
    let ports = PyList::empty(py);
    for port in &status.ports {
        ports.append(port_dict(py, port)?)?;
    }
    d.set_item("ports", ports)?;
    Ok(d)
}

fn port_dict<'py>(py: Python<'py>, p: &PortStatus) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("port", p.index)?;
    d.set_item("pid", p.pid)?;
    d.set_item("state", p.state.name())?;
    d.set_item("reading", p.reading)?;
    d.set_item("writing", p.writing)?;
    d.set_item("description", &p.description)?;
    d.set_item("tx_frames", p.tx_frames)?;
    d.set_item("tx_bytes", p.tx_bytes)?;
    d.set_item("rx_frames", p.rx_frames)?;
    d.set_item("rx_bytes", p.rx_bytes)?;
    d.set_item("rx_dropped", p.rx_dropped)?;
    d.set_item("tx_dropped", p.tx_dropped)?;
    d.set_item("vlan", vlan_dict(py, &p.vlan)?)?;
    let addresses = PyList::empty(py);
    for (vlan, mac) in &p.addresses {
        let a = PyDict::new(py);
        a.set_item("vlan", vlan)?;
        a.set_item("mac", mac_text(mac))?;
        addresses.append(a)?;
    }
    d.set_item("addresses", addresses)?;
    // Not read here: see the module doc.
    d.set_item("vxlan", py.None())?;
    Ok(d)
}

fn vlan_dict<'py>(py: Python<'py>, vlan: &Vlan) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match vlan {
        Vlan::Transparent => d.set_item("mode", "transparent")?,
        Vlan::Access(vid) => {
            d.set_item("mode", "access")?;
            d.set_item("vlan", vid)?;
        }
        Vlan::Trunk { vlans, native } => {
            d.set_item("mode", "trunk")?;
            d.set_item("vlans", vlans.iter().collect::<Vec<u16>>())?;
            d.set_item("native", native)?;
        }
    }
    Ok(d)
}

/// `52:54:00:12:34:56`, as `ipn status` writes addresses.
fn mac_text(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
