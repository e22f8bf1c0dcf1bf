//! `ipn status --prometheus`: a network's counters in Prometheus' text
//! exposition format (version 0.0.4), e.g. for node_exporter's textfile
//! collector.
//!
//! Invariants:
//! - every metric family appears once, its `# HELP` and `# TYPE` lines
//!   first, then all its samples, so parsers that want families whole
//!   (promtool, prometheus_client) accept it;
//! - every sample carries `network="PATH"`, so several networks' files can
//!   sit side by side in one collector directory; port samples add
//!   `port="N"`; the port's process, state, VLANs and description are
//!   labels of `ipn_port_info` only (an info metric), so a description
//!   change does not start a new series for every counter;
//! - label values are escaped as the format says (`\\`, `\"`, `\n`), so
//!   a member's description cannot break the file, and whatever else could
//!   drive or fool a terminal that shows it is escaped as `crate::escape`
//!   says.

use std::fmt::Write;

use ipn::{PortStatus, Status};

use crate::vlan::membership_text;

/// The whole exposition for `status`.
pub fn exposition(status: &Status) -> String {
    let mut out = String::new();
    let network = format!(
        "network=\"{}\"",
        label_value(&status.path.to_string_lossy())
    );
    let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
        family(out, name, "gauge", help, [(network.clone(), value)]);
    };
    family(
        &mut out,
        "ipn_network_info",
        "gauge",
        "The network, always 1; its protocol and flow control as labels.",
        [(
            format!(
                "{network},protocol=\"{}\",lossless=\"{}\"",
                status.protocol.name(),
                status.lossless
            ),
            1,
        )],
    );
    gauge(
        &mut out,
        "ipn_network_mtu_bytes",
        "Largest frame the network carries.",
        status.mtu.into(),
    );
    gauge(
        &mut out,
        "ipn_network_port_slots",
        "Most ports joined at once.",
        status.max_ports.into(),
    );
    gauge(
        &mut out,
        "ipn_network_memory_bytes",
        "Size of the network's shared file.",
        status.memory,
    );
    gauge(
        &mut out,
        "ipn_network_readers",
        "Live ports that receive.",
        status.membership.readers.into(),
    );
    gauge(
        &mut out,
        "ipn_network_writers",
        "Live ports that send.",
        status.membership.writers.into(),
    );
    let port_labels = |p: &PortStatus| format!("{network},port=\"{}\"", p.index);
    family(
        &mut out,
        "ipn_port_info",
        "gauge",
        "A port slot in use, always 1; its process, state, VLAN membership and description as labels.",
        status.ports.iter().map(|p| {
            (
                format!(
                    "{},pid=\"{}\",state=\"{}\",vlan=\"{}\",description=\"{}\"",
                    port_labels(p),
                    p.pid,
                    p.state.name(),
                    label_value(&membership_text(&p.vlan)),
                    label_value(&p.description)
                ),
                1,
            )
        }),
    );
    let counters: [Counter; 6] = [
        (
            "ipn_port_tx_frames_total",
            "Frames the port sent since it joined.",
            |p| p.tx_frames,
        ),
        (
            "ipn_port_tx_bytes_total",
            "Bytes the port sent since it joined.",
            |p| p.tx_bytes,
        ),
        (
            "ipn_port_rx_frames_total",
            "Frames the port received since it joined.",
            |p| p.rx_frames,
        ),
        (
            "ipn_port_rx_bytes_total",
            "Bytes the port received since it joined.",
            |p| p.rx_bytes,
        ),
        (
            "ipn_port_rx_dropped_total",
            "Frames the port lost because it read too slowly (lossy networks).",
            |p| p.rx_dropped,
        ),
        (
            "ipn_port_tx_dropped_total",
            "Frames the port sent that were not of its VLANs, dropped.",
            |p| p.tx_dropped,
        ),
    ];
    for (name, help, value) in counters {
        let samples = status.ports.iter().map(|p| (port_labels(p), value(p)));
        family(&mut out, name, "counter", help, samples);
    }
    family(
        &mut out,
        "ipn_port_learned_addresses",
        "gauge",
        "Source addresses a switch network learned behind the port (at most 16; 0 on a hub).",
        status
            .ports
            .iter()
            .map(|p| (port_labels(p), p.addresses.len() as u64)),
    );
    out
}

/// A port counter: its name, its help, how to read it.
type Counter = (&'static str, &'static str, fn(&PortStatus) -> u64);

/// One metric family: its help and type, then a sample per (labels, value).
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// `text` as a label value: backslash, double quote and newline escaped
/// as the format says, and what else must not reach a terminal as the
/// text `\u{HHHH}` (`escape::prometheus_label`).
fn label_value(text: &str) -> String {
    crate::escape::prometheus_label(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_what_would_end_them() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label_value("tap0 (é)"), "tap0 (é)");
    }

    #[test]
    fn each_family_has_help_and_type_once_before_its_samples() {
        let status = Status {
            path: "/tmp/x\"y".into(),
            protocol: ipn::Protocol::Hub,
            max_ports: 4,
            mtu: 1514,
            ring_slots: 256,
            ring_bytes: 1 << 18,
            memory: 1 << 20,
            lossless: true,
            membership: Default::default(),
            ports: vec![],
        };
        let text = exposition(&status);
        assert!(
            text.contains("ipn_network_mtu_bytes{network=\"/tmp/x\\\"y\"} 1514\n"),
            "{text}"
        );
        let types = text
            .lines()
            .filter(|l| l.starts_with("# TYPE ipn_port_tx_frames_total "))
            .count();
        assert_eq!(types, 1, "{text}");
    }
}
