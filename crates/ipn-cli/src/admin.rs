//! `ipn create`, `ipn status`, `ipn rm`: managing networks.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use ipn::ethernet::Vlan;
use ipn::{values, Config, Network, PortState, PortStatus, Protocol, Status};

use crate::escape;
use crate::vlan::{mac_text, membership_text};
use crate::vxlan_stats;

/// Help for `ipn status --json`; the same text is in ipn(1).
pub const JSON_HELP: &str = "\
JSON output (--json), format_version 1. Fields are only ever added:
  format_version  1
  path            the network path (string)
  protocol        \"hub\" or \"switch\"
  lossless        true if senders wait for slow readers
  mtu             largest frame, bytes
  max_ports       port slots
  ring_slots      frames buffered per sender
  ring_bytes      bytes of frames buffered per sender
  memory          bytes of the shared file (the memory the network uses)
  readers         live ports that read
  writers         live ports that write
  ports           array, one object per joining, active, dead or held port:
    port          port number (its slot)
    pid           process id of its owner (held: of the process holding
                  the slot's lock, 0 if it cannot be seen)
    state         \"joining\", \"active\", \"dead\", or \"held\": not joined,
                  but locked by a process (joining right now, or keeping
                  the slot from others)
    reading       receives frames (bool)
    writing       sends frames (bool)
    description   text given when joining
    tx_frames, tx_bytes   sent
    rx_frames, rx_bytes   received
    rx_dropped    frames this port lost: it read too slowly (lossy), or they
                  could not be delivered (over the MTU, or a virtio-net
                  header that does not describe its frame)
    tx_dropped    frames the port sent that were not of its VLANs, dropped
    vlan          802.1Q membership, an object:
                    {\"mode\": \"transparent\"}: every frame as on the wire
                    {\"mode\": \"access\", \"vlan\": 10}: untagged, VLAN 10 only
                    {\"mode\": \"trunk\", \"vlans\": [10, 20], \"native\": 1}:
                    those VLANs tagged; native (or null) travels untagged
    addresses     switch networks: the source addresses the port has sent
                  from (its last 16), each {\"vlan\": 10, \"mac\":
                  \"52:54:00:12:34:56\"}, vlan null for untagged frames of a
                  transparent port; what a switch's address table holds for
                  the port. Always [] on a hub.
    vxlan         null, except for an `ipn vxlan` port: its counters per
                  remote, published about once a second, an object:
                    {\"available\": false, \"reason\": TEXT} when they
                    cannot be shown (stale, or not what ipn vxlan writes);
                    else available true, vni, local (address:port), offload
                    (UDP GSO/GRO in use), age_ms (how old), recv_errors,
                    remotes: array, one object per remote VTEP:
                      remote      \"IP:PORT\" (null: the rest, counted
                                  together beyond 256 remotes)
                      kind        \"remote\" (--remote), \"group\",
                                  \"learned\" (a VTEP heard on the group),
                                  \"unconfigured\" (a sender that is not a
                                  remote: taken from, never sent to), \"other\"
                      path_mtu    the underlay's MTU towards it, or null
                      tx_datagrams, tx_bytes, rx_datagrams, rx_bytes
                                  bytes are UDP payload (VXLAN header + frame)
                      drops       {\"oversized\": over the path's MTU, not
                                  sent; \"send_error\"; \"bad_header\";
                                  \"other_vni\"}, datagrams
                      learned     addresses learned behind it (a count)
                      addresses   [{\"vlan\": null, \"mac\": \"02:...\"}]

Examples:
  ipn status /tmp/net
  ipn status /tmp/net --json | jq '.ports[] | select(.rx_dropped > 0)'
  ipn status /tmp/lan --json | jq '.ports[] | {port, vlan, addresses}'
  ipn status /tmp/lan --json | jq '.ports[].vxlan.remotes[]? | {remote, drops}'";

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Where to create the network (a directory)
    pub path: PathBuf,
    /// Most ports joined at once (1..=4096)
    #[arg(long, value_name = "N", value_parser = values::count, default_value_t = Config::default().max_ports)]
    pub ports: u32,
    /// Largest frame in bytes (64..=65535)
    #[arg(long, value_name = "BYTES", value_parser = values::count, default_value_t = Config::default().mtu)]
    pub mtu: u32,
    /// Frames buffered per sender, a power of two (2..=65536)
    /// [default: 256, or one per KiB of --ring-bytes if more: 4096 for 4M]
    #[arg(long, value_name = "FRAMES", value_parser = values::count)]
    pub ring: Option<u32>,
    /// Bytes of frames buffered per sender, a power of two (e.g. 256K, 1M);
    /// at least two frames of the MTU. Frames take only their own length,
    /// so this, not the MTU, sets the memory a network uses
    /// [default: 256K, or four frames of the MTU if more]
    #[arg(long, value_name = "BYTES", value_parser = values::byte_size)]
    pub ring_bytes: Option<u64>,
    /// Senders wait for the slowest live reader instead of dropping its frames
    #[arg(long)]
    pub lossless: bool,
    /// A learning switch instead of a hub: unicast frames to a known address
    /// reach only the port that address sends from
    #[arg(long)]
    pub switch: bool,
    /// Permission bits (octal) of the directory; its files get the same read/write bits. A directory others may write to is also made sticky (0770 becomes 1770), so members can remove only their own files
    #[arg(long, value_name = "OCTAL", value_parser = values::mode, default_value = "0770")]
    pub mode: u32,
    /// Group owning the network (name or number); its members may join if --mode allows
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

/// `bytes` for people: 256 KiB, 16.3 MiB.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The network
    pub path: PathBuf,
    /// Print a JSON document instead of a table (fields: see --help)
    #[arg(long, conflicts_with = "prometheus")]
    pub json: bool,
    /// Print the counters in Prometheus' text format (for node_exporter's textfile collector)
    #[arg(long)]
    pub prometheus: bool,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// The network
    pub path: PathBuf,
    /// Remove it even while ports are joined, or if its shared file is damaged
    #[arg(long, short)]
    pub force: bool,
}

pub fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let group = match &args.group {
        None => None,
        Some(name) => match ipn::group_id(name) {
            Some(gid) => Some(gid),
            None => bail!("unknown group '{name}'; give a group name from /etc/group or a number"),
        },
    };
    let config = Config {
        max_ports: args.ports,
        mtu: args.mtu,
        ring_slots: args.ring,
        ring_bytes: args.ring_bytes,
        lossless: args.lossless,
        mode: args.mode,
        group,
        protocol: if args.switch {
            Protocol::Switch
        } else {
            Protocol::Hub
        },
    };
    let status = Network::create(&args.path, &config)?.status();
    let group = match (&args.group, group) {
        (Some(name), Some(gid)) if name.parse::<u32>().is_err() => {
            format!(", group {name} ({gid})")
        }
        (_, Some(gid)) => format!(", group {gid}"),
        _ => String::new(),
    };
    println!(
        "created {}: {} {}, {} ports, mtu {}, ring {} frames / {}, {} in all, mode {:04o}{group}",
        args.path.display(),
        if config.lossless { "lossless" } else { "lossy" },
        config.protocol.name(),
        config.max_ports,
        config.mtu,
        status.ring_slots,
        human(status.ring_bytes),
        human(status.memory),
        config.directory_mode(),
    );
    Ok(())
}

/// The vxlan ports' published counters, by port number.
type VxlanViews = Vec<(u32, vxlan_stats::View)>;

pub fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let network = Network::open(&args.path)?;
    let status = network.status();
    let now = std::time::SystemTime::now();
    let vxlan: VxlanViews = status
        .ports
        .iter()
        .filter_map(|p| vxlan_stats::read(&network, p, now).map(|view| (p.index, view)))
        .collect();
    let text = if args.json {
        let mut text = escape::json_pretty(&status_json(&status, &vxlan))
            .context("formatting the status as JSON")?;
        text.push('\n');
        text
    } else if args.prometheus {
        crate::prometheus::exposition(&status)
    } else {
        status_table(&status, &vxlan)
    };
    use std::io::Write;
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

pub fn rm(args: &RmArgs) -> anyhow::Result<()> {
    Network::remove(&args.path, args.force)?;
    Ok(())
}

fn status_json(status: &Status, vxlan: &VxlanViews) -> serde_json::Value {
    let ports: Vec<_> = status
        .ports
        .iter()
        .map(|p| {
            let published = vxlan
                .iter()
                .find(|(index, _)| *index == p.index)
                .map(|(_, view)| vxlan_stats::json(view));
            serde_json::json!({
                "port": p.index,
                "pid": p.pid,
                "state": p.state.name(),
                "reading": p.reading,
                "writing": p.writing,
                "description": p.description,
                "tx_frames": p.tx_frames,
                "tx_bytes": p.tx_bytes,
                "rx_frames": p.rx_frames,
                "rx_bytes": p.rx_bytes,
                "rx_dropped": p.rx_dropped,
                "tx_dropped": p.tx_dropped,
                "vlan": vlan_json(&p.vlan),
                "addresses": p
                    .addresses
                    .iter()
                    .map(|(vlan, mac)| serde_json::json!({"vlan": vlan, "mac": mac_text(mac)}))
                    .collect::<Vec<_>>(),
                "vxlan": published,
            })
        })
        .collect();
    serde_json::json!({
        "format_version": 1,
        "path": status.path.to_string_lossy(),
        "protocol": status.protocol.name(),
        "lossless": status.lossless,
        "mtu": status.mtu,
        "max_ports": status.max_ports,
        "ring_slots": status.ring_slots,
        "ring_bytes": status.ring_bytes,
        "memory": status.memory,
        "readers": status.membership.readers,
        "writers": status.membership.writers,
        "ports": ports,
    })
}

fn vlan_json(vlan: &Vlan) -> serde_json::Value {
    match vlan {
        Vlan::Transparent => serde_json::json!({"mode": "transparent"}),
        Vlan::Access(vid) => serde_json::json!({"mode": "access", "vlan": vid}),
        Vlan::Trunk { vlans, native } => serde_json::json!({
            "mode": "trunk",
            "vlans": vlans.iter().collect::<Vec<_>>(),
            "native": native,
        }),
    }
}

fn rw(p: &PortStatus) -> &'static str {
    match (p.reading, p.writing) {
        (true, true) => "rw",
        (true, false) => "r-",
        (false, true) => "-w",
        (false, false) => "--",
    }
}

fn status_table(status: &Status, vxlan: &VxlanViews) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let count = |state: PortState| status.ports.iter().filter(|p| p.state == state).count();
    let live = count(PortState::Active) + count(PortState::Joining);
    let (dead, held) = (count(PortState::Dead), count(PortState::Held));
    let _ = writeln!(
        out,
        "network {}: {} {}, mtu {}, ring {} frames / {}, {} port slots, {} in all",
        status.path.display(),
        if status.lossless { "lossless" } else { "lossy" },
        status.protocol.name(),
        status.mtu,
        status.ring_slots,
        human(status.ring_bytes),
        status.max_ports,
        human(status.memory),
    );
    let _ = writeln!(
        out,
        "ports: {live} joined{}{}; readers {}, writers {}",
        if dead > 0 {
            format!(", {dead} dead")
        } else {
            String::new()
        },
        if held > 0 {
            format!(", {held} held without joining")
        } else {
            String::new()
        },
        status.membership.readers,
        status.membership.writers,
    );
    if status.ports.is_empty() {
        return out;
    }
    let header = [
        "PORT",
        "PID",
        "STATE",
        "R/W",
        "TX FRAMES",
        "TX BYTES",
        "RX FRAMES",
        "RX BYTES",
        "RX DROPPED",
        "TX DROPPED",
        "VLAN",
        "DESCRIPTION",
    ];
    let rows: Vec<[String; 12]> = status
        .ports
        .iter()
        .map(|p| {
            [
                p.index.to_string(),
                match p.pid {
                    0 => "?".to_string(),
                    pid => pid.to_string(),
                },
                p.state.name().to_string(),
                rw(p).to_string(),
                p.tx_frames.to_string(),
                p.tx_bytes.to_string(),
                p.rx_frames.to_string(),
                p.rx_bytes.to_string(),
                p.rx_dropped.to_string(),
                p.tx_dropped.to_string(),
                membership_text(&p.vlan),
                escape::text(&p.description),
            ]
        })
        .collect();
    // Numbers right-aligned, words left-aligned; the description last and
    // unpadded.
    let numeric = [
        true, true, false, false, true, true, true, true, true, true, false, false,
    ];
    table(&mut out, &header, &rows, &numeric);
    if status.protocol == Protocol::Switch {
        addresses_table(&mut out, status);
    }
    for (index, view) in vxlan {
        vxlan_stats::table(&mut out, *index, view);
    }
    out
}

/// The addresses each port of a switch network has sent from, per VLAN,
/// as a switch's address table shows them (vde_switch's `hash/print`).
fn addresses_table(out: &mut String, status: &Status) {
    use std::fmt::Write;
    let mut rows: Vec<(u32, Option<u16>, String)> = status
        .ports
        .iter()
        .flat_map(|p| {
            p.addresses
                .iter()
                .map(move |(vlan, mac)| (p.index, *vlan, mac_text(mac)))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    rows.sort();
    let _ = writeln!(
        out,
        "\naddresses the switch learned (the last 16 each port sent from):"
    );
    let rows: Vec<[String; 3]> = rows
        .into_iter()
        .map(|(port, vlan, mac)| {
            [
                port.to_string(),
                vlan.map_or_else(|| "untagged".to_string(), |v| v.to_string()),
                mac,
            ]
        })
        .collect();
    table(
        out,
        &["PORT", "VLAN", "ADDRESS"],
        &rows,
        &[true, true, false],
    );
}

/// Writes `rows` under `header` in columns: numbers right-aligned, words
/// left-aligned, the last column unpadded.
pub(crate) fn table<const N: usize>(
    out: &mut String,
    header: &[&str; N],
    rows: &[[String; N]],
    numeric: &[bool; N],
) {
    use std::fmt::Write;
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let width = widths[i];
            if i == cells.len() - 1 {
                text.push_str(cell);
            } else if numeric[i] {
                let _ = write!(text, "{cell:>width$}");
            } else {
                let _ = write!(text, "{cell:<width$}");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(header);
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Create {
        #[command(flatten)]
        args: CreateArgs,
    }

    fn create_args(args: &[&str]) -> Result<CreateArgs, String> {
        use clap::Parser;
        let all = ["create", "/n"].iter().chain(args);
        Create::try_parse_from(all)
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    /// The numbers of `ipn create` take the grammar of `ipn::values` (the
    /// URL's too); a refusal names the option and what to write.
    #[test]
    fn create_reads_numbers_and_modes_by_the_shared_grammar() {
        let defaults = Config::default();
        let a = create_args(&[]).unwrap();
        assert_eq!(
            (a.ports, a.mtu, a.ring, a.ring_bytes, a.mode),
            (defaults.max_ports, defaults.mtu, None, None, 0o770)
        );
        for (args, expected) in [
            (
                &["--ports", "0x10"][..],
                (16, defaults.mtu, None, None, 0o770),
            ),
            (
                &["--mtu", "9k", "--ring", "1K"][..],
                (defaults.max_ports, 9216, Some(1024), None, 0o770),
            ),
            (
                &["--ring-bytes", "256K", "--mode", "0o750"][..],
                (
                    defaults.max_ports,
                    defaults.mtu,
                    None,
                    Some(256 << 10),
                    0o750,
                ),
            ),
            (
                &["--ring-bytes", "2GiB", "--mode", "2770"][..],
                (
                    defaults.max_ports,
                    defaults.mtu,
                    None,
                    Some(2 << 30),
                    0o2770,
                ),
            ),
            (
                &["--ring-bytes", "4096"][..],
                (defaults.max_ports, defaults.mtu, None, Some(4096), 0o770),
            ),
        ] {
            let a = create_args(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(
                (a.ports, a.mtu, a.ring, a.ring_bytes, a.mode),
                expected,
                "{args:?}"
            );
        }
        for (option, text, fix) in [
            ("--ports", "many", "such as 1500, 0x800 or 9k"),
            ("--mtu", "-1", "such as 1500, 0x800 or 9k"),
            ("--ring", "4294967296", "such as 1500, 0x800 or 9k"),
            ("--ring-bytes", "12Q", "such as 262144, 256K or 1M"),
            ("--ring-bytes", "K", "such as 262144, 256K or 1M"),
            ("--mode", "0888", "such as 0770"),
            ("--mode", "77777", "such as 0770"),
            ("--mode", "rw", "such as 0770"),
        ] {
            let e = create_args(&[&format!("{option}={text}")]).unwrap_err();
            assert!(
                e.contains(option) && e.contains(fix),
                "{option} {text}: {e}"
            );
            assert!(
                e.contains(&format!("'{text}' is not")),
                "{option} {text}: {e}"
            );
        }
    }

    #[test]
    fn sizes_print_for_people() {
        assert_eq!(human(256 << 10), "256 KiB");
        assert_eq!(human(17_000_000), "16.2 MiB");
        assert_eq!(human(100), "100 bytes");
    }

    fn port(index: u32, vlan: Vlan, addresses: Vec<(Option<u16>, [u8; 6])>) -> PortStatus {
        PortStatus {
            index,
            pid: 100 + index,
            description: format!("port {index}"),
            state: PortState::Active,
            reading: true,
            writing: true,
            vlan,
            addresses,
            tx_frames: 1,
            tx_bytes: 2,
            rx_frames: 3,
            rx_bytes: 4,
            rx_dropped: 5,
            tx_dropped: u64::from(index) * 10,
        }
    }

    fn switch_status() -> Status {
        let trunk = Vlan::Trunk {
            vlans: [10, 20, 21, 22].into_iter().collect(),
            native: Some(1),
        };
        Status {
            path: "/tmp/lan".into(),
            protocol: Protocol::Switch,
            max_ports: 64,
            mtu: 1514,
            ring_slots: 256,
            ring_bytes: 256 << 10,
            memory: 17 << 20,
            lossless: false,
            membership: Default::default(),
            ports: vec![
                port(0, Vlan::Transparent, vec![(None, [2, 0, 0, 0, 0, 0xaa])]),
                port(1, Vlan::Access(10), vec![(Some(10), [2, 0, 0, 0, 0, 1])]),
                port(
                    2,
                    trunk,
                    vec![
                        (Some(20), [2, 0, 0, 0, 0, 2]),
                        (Some(1), [2, 0, 0, 0, 0, 3]),
                    ],
                ),
            ],
        }
    }

    #[test]
    fn the_table_shows_memberships_drops_and_the_switchs_addresses_per_vlan() {
        let table = status_table(&switch_status(), &Vec::new());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            &lines[2..6],
            [
                concat!(
                    "PORT  PID  STATE   R/W  TX FRAMES  TX BYTES  RX FRAMES  RX BYTES  ",
                    "RX DROPPED  TX DROPPED  VLAN                     DESCRIPTION"
                ),
                concat!(
                    "   0  100  active  rw           1         2          3         4  ",
                    "         5           0  transparent              port 0"
                ),
                concat!(
                    "   1  101  active  rw           1         2          3         4  ",
                    "         5          10  access 10                port 1"
                ),
                concat!(
                    "   2  102  active  rw           1         2          3         4  ",
                    "         5          20  trunk 10,20-22 native 1  port 2"
                ),
            ],
            "{table}"
        );
        let addresses = &lines[7..];
        assert_eq!(
            addresses,
            [
                "addresses the switch learned (the last 16 each port sent from):",
                "PORT      VLAN  ADDRESS",
                "   0  untagged  02:00:00:00:00:aa",
                "   1        10  02:00:00:00:00:01",
                "   2         1  02:00:00:00:00:03",
                "   2        20  02:00:00:00:00:02",
            ],
            "{table}"
        );
        let mut hub = switch_status();
        hub.protocol = Protocol::Hub;
        assert!(!status_table(&hub, &Vec::new()).contains("addresses"));
    }

    #[test]
    fn the_json_has_each_ports_vlan_drops_and_addresses() {
        let json = status_json(&switch_status(), &Vec::new());
        let ports = json["ports"].as_array().unwrap();
        assert_eq!(ports[0]["vlan"], serde_json::json!({"mode": "transparent"}));
        assert_eq!(
            ports[1]["vlan"],
            serde_json::json!({"mode": "access", "vlan": 10})
        );
        assert_eq!(
            ports[2]["vlan"],
            serde_json::json!({"mode": "trunk", "vlans": [10, 20, 21, 22], "native": 1})
        );
        assert_eq!(ports[2]["tx_dropped"], 20);
        assert_eq!(
            ports[0]["addresses"],
            serde_json::json!([{"vlan": null, "mac": "02:00:00:00:00:aa"}])
        );
        assert_eq!(
            ports[2]["addresses"],
            serde_json::json!([
                {"vlan": 20, "mac": "02:00:00:00:00:02"},
                {"vlan": 1, "mac": "02:00:00:00:00:03"}
            ])
        );
        // Every field of a port is in the help.
        for key in ports[0].as_object().unwrap().keys() {
            assert!(
                JSON_HELP.contains(key.as_str()),
                "{key} missing from --help"
            );
        }
    }

    /// A member's description in the table and in the JSON: no character
    /// that drives or fools a terminal passes raw (RLO, line separator,
    /// zero-width space, C1 CSI, DEL, ESC, newline), and the JSON still
    /// says exactly what the member wrote.
    #[test]
    fn member_descriptions_are_escaped_in_the_table_and_the_json() {
        let hostile = "a\u{202e}b\u{2028}c\u{200b}d\u{9b}31m\u{7f}\x1b[2J\n";
        let mut status = switch_status();
        status.ports[0].description = hostile.into();
        let table = status_table(&status, &Vec::new());
        assert!(
            table.contains(r"a\u{202e}b\u{2028}c\u{200b}d\u{9b}31m\x7f\x1b[2J\n"),
            "{table}"
        );
        let json = escape::json_pretty(&status_json(&status, &Vec::new())).unwrap();
        assert!(
            json.contains(r#""a\u202eb\u2028c\u200bd\u009b31m\u007f\u001b[2J\n""#),
            "{json}"
        );
        for out in [&table, &json] {
            assert!(
                !out.chars().any(|c| c != '\n' && escape::must_escape(c)),
                "{out}"
            );
        }
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["ports"][0]["description"], hostile);
    }
}
