//! `--vlan`, `--trunk`, `--native`: a port's 802.1Q membership on the
//! command line, shared by every command that joins a network (`tap`,
//! `grab`, `vxlan`, `pub`, `sub`, `dump`), and the membership as text, as
//! `ipn status` shows it.
//!
//! No option: the port is transparent (every frame as on the wire, tagged
//! or not), as before VLANs existed. `--vlan N`: an access port of VLAN N.
//! `--trunk LIST`: a trunk of the VLANs in LIST, tagged; `--native N` adds
//! one VLAN carried untagged. clap refuses `--vlan` with `--trunk`, and
//! `--native` without `--trunk`; IDs and lists are read by
//! [`ipn::values`] (the `ipn://` URL's grammar: `10:20` or `10,20`,
//! ranges `100-110`, IDs 1 to 4094) when the command line is parsed, and
//! the error names the option.

use clap::Args;
use ipn::ethernet::{Vlan, VlanSet};
use ipn::values;

/// The VLAN options of a command that joins a network.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "802.1Q VLAN (default: transparent, every frame as on the wire)")]
pub struct VlanArgs {
    /// Access port of VLAN N (1 to 4094): frames leave and arrive untagged, and only VLAN N's arrive
    #[arg(long, value_name = "N", value_parser = values::vlan_id, conflicts_with = "trunk")]
    pub vlan: Option<u16>,
    /// Trunk of the VLANs in LIST, e.g. 10,20 or 10:20:100-110 (IDs 1 to 4094): their frames leave and arrive tagged, others are dropped
    #[arg(long, value_name = "LIST", value_parser = values::vlan_list)]
    pub trunk: Option<VlanSet>,
    /// With --trunk: VLAN N (1 to 4094) travels untagged on the trunk (its native VLAN)
    #[arg(long, value_name = "N", value_parser = values::vlan_id, requires = "trunk", conflicts_with = "vlan")]
    pub native: Option<u16>,
}

impl VlanArgs {
    /// The membership the options ask for.
    pub fn membership(&self) -> Vlan {
        match (&self.vlan, &self.trunk) {
            (Some(vid), _) => Vlan::Access(*vid),
            (None, Some(vlans)) => Vlan::Trunk {
                vlans: vlans.clone(),
                native: self.native,
            },
            (None, None) => Vlan::Transparent,
        }
    }
}

/// A set as a list with ranges: `10,20,100-110`.
pub fn list_text(set: &VlanSet) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(u16, u16)> = None;
    for vid in set.iter() {
        run = match run {
            Some((from, to)) if vid == to + 1 => Some((from, vid)),
            Some(done) => {
                parts.push(range_text(done));
                Some((vid, vid))
            }
            None => Some((vid, vid)),
        };
    }
    if let Some(done) = run {
        parts.push(range_text(done));
    }
    parts.join(",")
}

fn range_text((from, to): (u16, u16)) -> String {
    if from == to {
        from.to_string()
    } else {
        format!("{from}-{to}")
    }
}

/// A membership as `ipn status` shows it: `transparent`, `access 10`,
/// `trunk 10,20`, `trunk 10,20 native 1`.
pub fn membership_text(vlan: &Vlan) -> String {
    match vlan {
        Vlan::Transparent => "transparent".into(),
        Vlan::Access(vid) => format!("access {vid}"),
        Vlan::Trunk { vlans, native } => {
            let mut text = format!("trunk {}", list_text(vlans));
            if let Some(native) = native {
                text += &format!(" native {native}");
            }
            text
        }
    }
}

/// ` (access 10)` after a port's number in a command's start line;
/// nothing for a transparent port.
pub fn joined_as(port: &ipn::Port) -> String {
    match port.vlan() {
        Vlan::Transparent => String::new(),
        vlan => format!(" ({})", membership_text(vlan)),
    }
}

/// The frames `port` was given to send that did not belong to its VLANs,
/// and were dropped (its `tx_dropped`).
pub fn tx_dropped(port: &ipn::Port) -> u64 {
    port.status()
        .ports
        .iter()
        .find(|p| p.index == port.index())
        .map_or(0, |p| p.tx_dropped)
}

/// `; N not in its VLANs (access 10)` for a command's summary (see
/// [`tx_dropped`]); nothing for a transparent port, which drops none.
pub fn dropped_text(port: &ipn::Port) -> String {
    if *port.vlan() == Vlan::Transparent {
        return String::new();
    }
    format!(
        "; {} not in its VLANs ({})",
        tx_dropped(port),
        membership_text(port.vlan())
    )
}

/// A MAC address as `52:54:00:12:34:56`.
pub fn mac_text(mac: &ipn::ethernet::Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        vlan: VlanArgs,
    }

    fn parse(args: &[&str]) -> Result<Vlan, String> {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .map(|cli| cli.vlan.membership())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn no_option_is_transparent_vlan_is_access_trunk_is_a_trunk() {
        assert_eq!(parse(&[]), Ok(Vlan::Transparent));
        assert_eq!(parse(&["--vlan", "10"]), Ok(Vlan::Access(10)));
        assert_eq!(
            parse(&["--trunk", "10,20", "--native", "1"]),
            Ok(Vlan::Trunk {
                vlans: [10, 20].into_iter().collect(),
                native: Some(1)
            })
        );
        assert_eq!(
            parse(&["--trunk", "100-102"]),
            Ok(Vlan::Trunk {
                vlans: [100, 101, 102].into_iter().collect(),
                native: None
            })
        );
    }

    #[test]
    fn contradictions_and_bad_ids_are_refused_naming_the_option_and_the_range() {
        let e = parse(&["--vlan", "10", "--trunk", "20"]).unwrap_err();
        assert!(e.contains("--vlan") && e.contains("--trunk"), "{e}");
        let e = parse(&["--native", "1"]).unwrap_err();
        assert!(e.contains("--trunk"), "{e}");
        let e = parse(&["--vlan", "10", "--native", "1"]).unwrap_err();
        assert!(e.contains("--native") || e.contains("--trunk"), "{e}");
        for (args, option) in [
            (&["--vlan", "0"][..], "--vlan"),
            (&["--vlan", "4095"][..], "--vlan"),
            (&["--vlan", "ten"][..], "--vlan"),
            (&["--trunk", "10,5000"][..], "--trunk"),
            (&["--trunk", "0-3"][..], "--trunk"),
            (&["--trunk", "10", "--native", "4095"][..], "--native"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(option), "{args:?}: {e}");
            assert!(e.contains("1 to 4094"), "{args:?}: {e}");
        }
        assert!(parse(&["--trunk", "9-3"]).is_err());
        // The URL's separator works here too, and the item at fault is named.
        assert_eq!(
            parse(&["--trunk", "10:20"]),
            Ok(Vlan::Trunk {
                vlans: [10, 20].into_iter().collect(),
                native: None
            })
        );
        let e = parse(&["--trunk", "10:5000"]).unwrap_err();
        assert!(e.contains("'5000' is not a VLAN ID"), "{e}");
    }

    #[test]
    fn memberships_print_with_ranges() {
        let set: VlanSet = [1, 10, 11, 12, 20, 4094].into_iter().collect();
        assert_eq!(list_text(&set), "1,10-12,20,4094");
        assert_eq!(membership_text(&Vlan::Transparent), "transparent");
        assert_eq!(membership_text(&Vlan::Access(7)), "access 7");
        let trunk = Vlan::Trunk {
            vlans: set,
            native: Some(1),
        };
        assert_eq!(membership_text(&trunk), "trunk 1,10-12,20,4094 native 1");
        assert_eq!(
            mac_text(&[0x52, 0x54, 0, 0x12, 0x34, 0xab]),
            "52:54:00:12:34:ab"
        );
    }
}
