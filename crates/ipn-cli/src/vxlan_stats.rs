//! The per-remote counters `ipn vxlan` publishes and `ipn status` shows:
//! the file's format ([`Published`], JSON, written about once a second
//! through [`ipn::Publisher`] as `PATH/stats.N`), its strict reading
//! ([`read`]), and how `status` shows it (a table per port, a `vxlan`
//! object per port in `--json`).
//!
//! The file is a member's input to whoever runs `ipn status`, often root
//! (see docs/THREAT-MODEL.md). `ipn::Network::published` refuses anything
//! but a regular file of at most 1 MiB and follows no link; here it must
//! parse as exactly this format (unknown fields refused, addresses parsed
//! as socket addresses, MACs as six bytes), name the port it is read for
//! and the pid that port's slot records, and be fresh ([`STALE_AFTER`]).
//! Anything else is shown as "unavailable" with the reason, and every
//! reason is escaped on output ([`crate::escape`]) since it may quote what
//! the file held. A well-formed file from a member can still tell
//! untruths, as a member can scribble the shared file's counters.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipn::ethernet::Mac;
use ipn::{Network, PortState, PortStatus};
use ipn_attach::vxlan::{RemoteKind, RemoteReport, VxlanSender, MAX_VNI};
use serde::{Deserialize, Serialize};

use crate::escape;
use crate::vlan::mac_text;

/// The format written; a reader refuses others.
pub const FORMAT: u32 = 1;
/// How often `ipn vxlan` publishes.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Counters older than this are not shown: the process is stopped, hung
/// or gone.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// What `ipn vxlan` publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// [`FORMAT`].
    pub format: u32,
    /// The port it is for.
    pub port: u32,
    /// The process that wrote it (the port slot's pid).
    pub pid: u32,
    /// When, in milliseconds since the Unix epoch.
    pub updated_ms: u64,
    pub vni: u32,
    /// The socket's address.
    pub local: SocketAddr,
    /// UDP GSO and GRO in use.
    pub offload: bool,
    /// Receive errors the socket reported (ICMP errors...), of no remote.
    pub recv_errors: u64,
    pub remotes: Vec<Remote>,
}

/// One remote's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    /// `None` for the remotes counted together beyond the table's room.
    pub remote: Option<SocketAddr>,
    pub kind: Kind,
    /// The MTU of the path there, as last probed.
    pub path_mtu: Option<u32>,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    pub drops: Drops,
    /// The addresses learned behind it.
    pub addresses: Vec<Address>,
}

/// [`RemoteKind`], as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Remote,
    Group,
    Learned,
    Unconfigured,
    Other,
}

impl Kind {
    fn of(kind: RemoteKind) -> Kind {
        match kind {
            RemoteKind::Configured => Kind::Remote,
            RemoteKind::Group => Kind::Group,
            RemoteKind::Learned => Kind::Learned,
            RemoteKind::Unconfigured => Kind::Unconfigured,
            RemoteKind::Other => Kind::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Remote => "remote",
            Kind::Group => "group",
            Kind::Learned => "learned",
            Kind::Unconfigured => "unconfigured",
            Kind::Other => "other",
        }
    }
}

/// Datagrams dropped, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drops {
    /// Not sent: over the path's MTU.
    pub oversized: u64,
    /// Not sent: refused by the system for another reason.
    pub send_error: u64,
    /// Received too short, without the I flag, or truncated.
    pub bad_header: u64,
    /// Received for another VNI.
    pub other_vni: u64,
}

/// A learned address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub vlan: Option<u16>,
    pub mac: Mac,
}

/// Milliseconds since the Unix epoch.
fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Published {
    /// What `link`, bridged to port `port` of this process, has to say now.
    pub fn of(link: &VxlanSender<'_>, port: u32, vni: u32) -> anyhow::Result<Published> {
        let stats = link.stats();
        Ok(Published {
            format: FORMAT,
            port,
            pid: std::process::id(),
            updated_ms: unix_ms(SystemTime::now()),
            vni,
            local: link.local_addr()?,
            offload: link.offloading(),
            recv_errors: stats.recv_errors,
            remotes: link.remotes().iter().map(remote).collect(),
        })
    }
}

fn remote(r: &RemoteReport) -> Remote {
    let s = &r.stats;
    Remote {
        remote: r.addr,
        kind: Kind::of(r.kind),
        path_mtu: r.path_mtu,
        tx_datagrams: s.tx_datagrams,
        tx_bytes: s.tx_bytes,
        rx_datagrams: s.rx_datagrams,
        rx_bytes: s.rx_bytes,
        drops: Drops {
            oversized: s.oversized,
            send_error: s.send_errors,
            bad_header: s.bad_header,
            other_vni: s.other_vni,
        },
        addresses: r
            .addresses
            .iter()
            .map(|&(vlan, mac)| Address { vlan, mac })
            .collect(),
    }
}

/// What `ipn status` knows of a vxlan port's counters: the counters and
/// how old they are, or why they are not shown.
pub type View = Result<(Published, Duration), String>;

/// The counters port `port` published, checked (see the module doc):
/// `None` if the port published none, or is not active.
pub fn read(network: &Network, port: &PortStatus, now: SystemTime) -> Option<View> {
    if port.state != PortState::Active {
        return None;
    }
    let name = ipn::published_name(port.index);
    let bytes = match network.published(port.index) {
        Ok(None) => return None,
        Ok(Some(bytes)) => bytes,
        Err(e) => return Some(Err(e.to_string())),
    };
    Some(
        serde_json::from_slice::<Published>(&bytes)
            .map_err(|e| format!("{name} is not counters `ipn vxlan` writes ({e})"))
            .and_then(|p| check(p, port, &name, now)),
    )
}

/// Refuses counters that are not this port's process's, or not fresh, or
/// out of range.
fn check(p: Published, port: &PortStatus, name: &str, now: SystemTime) -> View {
    if p.format != FORMAT {
        return Err(format!("{name} has format {}, not {FORMAT}", p.format));
    }
    if p.port != port.index || p.pid != port.pid {
        return Err(format!(
            "{name} is stale: written by pid {} for port {}, and port {} is pid {} now",
            p.pid, p.port, port.index, port.pid
        ));
    }
    if p.vni > MAX_VNI {
        return Err(format!("{name} gives VNI {}, over 24 bits", p.vni));
    }
    if let Some(r) = p
        .remotes
        .iter()
        .find(|r| (r.kind == Kind::Other) != r.remote.is_none())
    {
        return Err(format!(
            "{name} has a {} entry {:?}",
            r.kind.name(),
            r.remote
        ));
    }
    if let Some(a) = p
        .remotes
        .iter()
        .flat_map(|r| &r.addresses)
        .find(|a| a.vlan.is_some_and(|v| v > 0x0fff))
    {
        return Err(format!("{name} has VLAN {:?}, over 12 bits", a.vlan));
    }
    let now_ms = unix_ms(now);
    let stale_ms = STALE_AFTER.as_millis() as u64;
    if p.updated_ms > now_ms.saturating_add(stale_ms) {
        return Err(format!("{name} is dated in the future"));
    }
    let age = Duration::from_millis(now_ms.saturating_sub(p.updated_ms));
    if age > STALE_AFTER {
        return Err(format!(
            "{name} is stale: not updated for {} s (is pid {} stopped?)",
            age.as_secs(),
            p.pid
        ));
    }
    Ok((p, age))
}

/// The `vxlan` field of a port in `ipn status --json`.
pub fn json(view: &View) -> serde_json::Value {
    let (p, age) = match view {
        Err(reason) => return serde_json::json!({"available": false, "reason": reason}),
        Ok(fresh) => fresh,
    };
    let remotes: Vec<_> = p
        .remotes
        .iter()
        .map(|r| {
            serde_json::json!({
                "remote": r.remote.map(|a| a.to_string()),
                "kind": r.kind.name(),
                "path_mtu": r.path_mtu,
                "tx_datagrams": r.tx_datagrams,
                "tx_bytes": r.tx_bytes,
                "rx_datagrams": r.rx_datagrams,
                "rx_bytes": r.rx_bytes,
                "drops": {
                    "oversized": r.drops.oversized,
                    "send_error": r.drops.send_error,
                    "bad_header": r.drops.bad_header,
                    "other_vni": r.drops.other_vni,
                },
                "learned": r.addresses.len(),
                "addresses": r
                    .addresses
                    .iter()
                    .map(|a| serde_json::json!({"vlan": a.vlan, "mac": mac_text(&a.mac)}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "available": true,
        "vni": p.vni,
        "local": p.local.to_string(),
        "offload": p.offload,
        "age_ms": age.as_millis() as u64,
        "recv_errors": p.recv_errors,
        "remotes": remotes,
    })
}

/// The table of port `index`'s remotes for `ipn status`, or the line
/// saying why there is none.
pub fn table(out: &mut String, index: u32, view: &View) {
    use std::fmt::Write;
    let (p, age) = match view {
        Err(reason) => {
            let _ = writeln!(
                out,
                "\nvxlan port {index}: per-remote counters unavailable: {}",
                escape::text(reason)
            );
            return;
        }
        Ok(fresh) => fresh,
    };
    let _ = writeln!(
        out,
        "\nvxlan port {index}: vni {}, {}, offloads {}, {} receive errors; {:.1} s ago:",
        p.vni,
        p.local,
        if p.offload { "on" } else { "off" },
        p.recv_errors,
        age.as_secs_f64()
    );
    let header = [
        "REMOTE",
        "KIND",
        "PATH MTU",
        "TX DGRAMS",
        "TX BYTES",
        "RX DGRAMS",
        "RX BYTES",
        "OVERSIZED",
        "SEND ERRORS",
        "BAD HEADER",
        "OTHER VNI",
        "LEARNED",
    ];
    let rows: Vec<[String; 12]> = p
        .remotes
        .iter()
        .map(|r| {
            [
                r.remote
                    .map_or_else(|| "(the rest)".to_string(), |a| a.to_string()),
                r.kind.name().to_string(),
                r.path_mtu
                    .map_or_else(|| "?".to_string(), |m| m.to_string()),
                r.tx_datagrams.to_string(),
                r.tx_bytes.to_string(),
                r.rx_datagrams.to_string(),
                r.rx_bytes.to_string(),
                r.drops.oversized.to_string(),
                r.drops.send_error.to_string(),
                r.drops.bad_header.to_string(),
                r.drops.other_vni.to_string(),
                r.addresses.len().to_string(),
            ]
        })
        .collect();
    let mut numeric = [true; 12];
    numeric[0] = false;
    numeric[1] = false;
    crate::admin::table(out, &header, &rows, &numeric);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(index: u32, pid: u32) -> PortStatus {
        PortStatus {
            index,
            pid,
            description: "vxlan vni 42".into(),
            state: PortState::Active,
            reading: true,
            writing: true,
            vlan: ipn::ethernet::Vlan::Transparent,
            addresses: Vec::new(),
            tx_frames: 0,
            tx_bytes: 0,
            rx_frames: 0,
            rx_bytes: 0,
            rx_dropped: 0,
            tx_dropped: 0,
        }
    }

    fn sample(now: SystemTime) -> Published {
        Published {
            format: FORMAT,
            port: 3,
            pid: 1234,
            updated_ms: unix_ms(now) - 400,
            vni: 42,
            local: "10.1.1.1:4789".parse().unwrap(),
            offload: true,
            recv_errors: 0,
            remotes: vec![Remote {
                remote: Some("10.1.1.2:4789".parse().unwrap()),
                kind: Kind::Remote,
                path_mtu: Some(1500),
                tx_datagrams: 5,
                tx_bytes: 500,
                rx_datagrams: 6,
                rx_bytes: 600,
                drops: Drops {
                    oversized: 2,
                    send_error: 0,
                    bad_header: 1,
                    other_vni: 0,
                },
                addresses: vec![Address {
                    vlan: None,
                    mac: [2, 0, 0, 0, 0, 1],
                }],
            }],
        }
    }

    #[test]
    fn what_is_written_reads_back_and_shows_in_json_and_a_table() {
        let now = SystemTime::now();
        let p = sample(now);
        let bytes = serde_json::to_vec(&p).unwrap();
        let back: Published = serde_json::from_slice(&bytes).unwrap();
        let view = check(back, &port(3, 1234), "stats.3", now);
        assert_eq!(view.as_ref().map(|(p, _)| p), Ok(&p));
        let json = json(&view);
        assert_eq!(json["available"], true);
        let r = &json["remotes"][0];
        assert_eq!(r["remote"], "10.1.1.2:4789");
        assert_eq!(r["drops"]["oversized"], 2);
        assert_eq!(r["learned"], 1);
        assert_eq!(
            r["addresses"],
            serde_json::json!([{"vlan": null, "mac": "02:00:00:00:00:01"}])
        );
        let mut out = String::new();
        table(&mut out, 3, &view);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].starts_with("vxlan port 3: vni 42, 10.1.1.1:4789, offloads on"));
        assert!(
            lines[2].starts_with("REMOTE         KIND    PATH MTU"),
            "{out}"
        );
        assert!(
            lines[3].starts_with("10.1.1.2:4789  remote      1500"),
            "{out}"
        );
        assert!(lines[3].ends_with("1"), "{out}");
    }

    #[test]
    fn others_stale_future_and_foreign_counters_are_refused_with_the_reason() {
        let now = SystemTime::now();
        let refused =
            |p: Published, port: PortStatus| check(p, &port, "stats.3", now).expect_err("refused");
        let e = refused(sample(now), port(3, 99));
        assert!(e.contains("stale: written by pid 1234 for port 3"), "{e}");
        let mut old = sample(now);
        old.updated_ms -= 60_000;
        let e = refused(old, port(3, 1234));
        assert!(e.contains("not updated for 60 s"), "{e}");
        let mut future = sample(now);
        future.updated_ms += 3_600_000;
        assert!(refused(future, port(3, 1234)).contains("future"));
        let mut other = sample(now);
        other.remotes[0].kind = Kind::Other;
        assert!(refused(other, port(3, 1234)).contains("other entry"));
        // Unknown fields, and strings where addresses go, do not parse.
        let mut value = serde_json::to_value(sample(now)).unwrap();
        value["extra"] = 1.into();
        assert!(serde_json::from_value::<Published>(value).is_err());
        let mut value = serde_json::to_value(sample(now)).unwrap();
        value["remotes"][0]["remote"] = "\u{1b}[2J".into();
        assert!(serde_json::from_value::<Published>(value).is_err());
    }

    #[test]
    fn a_reason_quoting_the_file_is_escaped_in_the_table() {
        let view: View = Err("unknown field `\u{1b}[2J\u{202e}`".into());
        let mut out = String::new();
        table(&mut out, 1, &view);
        assert!(out.contains(r"\x1b[2J\u{202e}"), "{out}");
        assert!(!out.chars().any(|c| c != '\n' && escape::must_escape(c)));
    }
}
