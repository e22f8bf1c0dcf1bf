//! `ipn tap` and `ipn grab`: the host's interfaces on a network, through
//! `ipn_attach::tap` and `ipn_attach::grab`.
//!
//! Each owns its `Port` and its link, bridges them until SIGINT/SIGTERM
//! (the bridge asks for the flag at least every 100 ms, also while a send
//! into a lossless network waits for a reader that does not read), then
//! returns, so the port is dropped and its slot released before the
//! process exits.
//! Both print one line on standard error when they start and a summary of
//! what was moved and refused when they stop.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Args;
use ipn::{Config, JoinOptions, Port};
use ipn_attach::grab::Grab;
use ipn_attach::tap::{self, LinkSettings, Tap, TapOptions};
use ipn_attach::{bridge, BridgeError, BridgeStats, Link};

use crate::busypoll::BusyPollArgs;
use crate::signals;
use crate::vlan::{self, VlanArgs};
use crate::Outcome;

#[derive(Args, Debug)]
pub struct TapArgs {
    /// The network
    pub path: PathBuf,
    /// Interface name; an existing persistent TAP of this name is attached to, `%d` is a number the kernel picks
    #[arg(long, short, value_name = "IFNAME", default_value = "ipn%d")]
    pub name: String,
    /// Set the interface up (`ip link set dev IFNAME up`)
    #[arg(long)]
    pub up: bool,
    /// Create the network with default settings if there is none at PATH
    #[arg(long)]
    pub create: bool,
    /// Without offloads: the TAP gives and takes wire frames only (no
    /// virtio-net header, no 64 KiB GSO frames, every checksum complete),
    /// as ipn did before offloads. With them (the default), the kernel's
    /// GSO frames cross the network whole to ports that take offloads and
    /// are cut in software for the others.
    #[arg(long)]
    pub no_offload: bool,
    #[command(flatten)]
    pub vlan: VlanArgs,
    #[command(flatten)]
    pub receive: BusyPollArgs,
}

#[derive(Args, Debug)]
pub struct GrabArgs {
    /// The network
    pub path: PathBuf,
    /// The interface to grab (e.g. eth1)
    pub ifname: String,
    /// Receive every frame on the wire, not only those for the interface's own MAC, broadcast and multicast
    #[arg(long)]
    pub promisc: bool,
    /// Create the network with default settings if there is none at PATH
    #[arg(long)]
    pub create: bool,
    #[command(flatten)]
    pub vlan: VlanArgs,
    #[command(flatten)]
    pub receive: BusyPollArgs,
}

fn join(
    path: &Path,
    create: bool,
    description: String,
    offload: bool,
    vlan: &VlanArgs,
    receive: &BusyPollArgs,
) -> anyhow::Result<Port> {
    let options = JoinOptions {
        offload,
        vlan: vlan.membership(),
        busy_poll: receive.duration(),
        ..JoinOptions::described(description)
    };
    let port = if create {
        Port::join_or_create(path, &Config::default(), &options)?
    } else {
        Port::join(path, &options)?
    };
    Ok(port)
}

pub fn tap(args: &TapArgs) -> anyhow::Result<Outcome> {
    signals::install()?;
    // The TAP first: the kernel may pick its name, which the port's
    // description shows. If joining fails, the TAP goes with the process.
    let options = TapOptions {
        offload: !args.no_offload,
    };
    let mut tap = Tap::open_with(&args.name, options)?;
    let name = tap.name().to_string();
    let offload = Link::offloads(&tap);
    let mut port = join(
        &args.path,
        args.create,
        format!("tap {name}"),
        offload,
        &args.vlan,
        &args.receive,
    )?;
    let settings = LinkSettings {
        mtu: tap::interface_mtu(port.mtu()),
        up: args.up,
    };
    tap::set_link(&name, settings).with_context(|| match settings.mtu {
        Some(mtu) => format!(
            "tap {name}: setting MTU {mtu} (network MTU {} minus the 14-byte Ethernet header)",
            port.mtu()
        ),
        None => format!("tap {name}: setting the link up"),
    })?;
    run(&mut port, &mut tap, &args.path)
}

pub fn grab(args: &GrabArgs) -> anyhow::Result<Outcome> {
    signals::install()?;
    let mut grab = Grab::open(&args.ifname, args.promisc)?;
    let mut port = join(
        &args.path,
        args.create,
        format!("grab {}", args.ifname),
        Link::offloads(&grab),
        &args.vlan,
        &args.receive,
    )?;
    let outcome = run(&mut port, &mut grab, &args.path)?;
    if grab.outgoing_skipped() > 0 {
        eprintln!(
            "ipn: grab {}: {} frames seen leaving the interface were not taken into the network",
            args.ifname,
            grab.outgoing_skipped()
        );
    }
    Ok(outcome)
}

/// Bridges until a signal; prints the start line and the summary.
fn run(port: &mut Port, link: &mut dyn Link, path: &Path) -> anyhow::Result<Outcome> {
    let what = link.describe();
    eprintln!(
        "ipn: {what} joined {} as port {}{}; Ctrl-C to stop",
        path.display(),
        port.index(),
        vlan::joined_as(port)
    );
    let stats = bridge(port, link, &|| signals::caught().is_some()).map_err(|e| match e {
        // The TAP (EBADFD) or grabbed interface (ENODEV) was deleted
        // (`ip link del`) under us.
        BridgeError::Link { link, source }
            if matches!(source.raw_os_error(), Some(libc::EBADFD | libc::ENODEV)) =>
        {
            anyhow!("{link}: the interface was deleted; left {}", path.display())
        }
        // Display only: BridgeError's message already holds its source.
        other => anyhow!("{other}; left {}", path.display()),
    })?;
    eprintln!(
        "ipn: {what} left {}: {}{}",
        path.display(),
        summary(&stats),
        vlan::dropped_text(port)
    );
    Ok(match signals::caught() {
        Some(signal) => Outcome::Signal(signal),
        None => Outcome::Done,
    })
}

fn summary(stats: &BridgeStats) -> String {
    format!(
        "{} frames into the network, {} out of it; refused: {} by the interface, \
         {} by the network (over its MTU, or a bad virtio-net header)",
        stats.to_network, stats.from_network, stats.link_refused, stats.network_refused
    )
}
