//! `ipn vhost-user`: a QEMU VM's virtio-net NIC as a port of a network,
//! through `ipn_vhost`: a vhost-user backend listening on a socket.
//!
//! The port comes first, joined with offloads and described `vhost-user
//! SOCK`; then the socket (its errors name the path: in use, not a
//! socket, no such directory), with the network's group and mode, so that
//! who may connect is who may join. Serves until SIGINT/SIGTERM (asked every
//! 100 ms), then leaves the network and removes the socket. One line on
//! standard error when it starts, one per frontend connecting and leaving,
//! and a summary when it stops.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ipn::{Config, JoinOptions, Port};
use ipn_vhost::{Event, Stats, VhostSocket};

use crate::busypoll::BusyPollArgs;
use crate::signals;
use crate::vlan::{self, VlanArgs};
use crate::Outcome;

#[derive(Args, Debug)]
pub struct VhostArgs {
    /// The network
    pub path: PathBuf,
    /// The vhost-user socket to listen on, which QEMU connects to
    /// (-chardev socket,path=SOCK,reconnect=1)
    #[arg(long, value_name = "SOCK", required_unless_present = "connect")]
    pub socket: Option<PathBuf>,
    /// Connect to the vhost-user socket QEMU listens on instead
    /// (-chardev socket,path=SOCK,server=on,wait=off), again whenever the
    /// connection drops
    #[arg(long, value_name = "SOCK", conflicts_with = "socket")]
    pub connect: Option<PathBuf>,
    /// Create the network with default settings if there is none at PATH
    #[arg(long)]
    pub create: bool,
    #[command(flatten)]
    pub vlan: VlanArgs,
    #[command(flatten)]
    pub receive: BusyPollArgs,
}

pub fn run(args: &VhostArgs) -> anyhow::Result<Outcome> {
    signals::install()?;
    let (sock, connecting) = match (&args.socket, &args.connect) {
        (_, Some(sock)) => (sock, true),
        (Some(sock), None) => (sock, false),
        (None, None) => anyhow::bail!("vhost-user: give --socket SOCK or --connect SOCK"),
    };
    let what = format!("vhost-user {}", sock.display());
    let options = JoinOptions {
        offload: true,
        vlan: args.vlan.membership(),
        busy_poll: args.receive.duration(),
        ..JoinOptions::described(what.clone())
    };
    let port = if args.create {
        Port::join_or_create(&args.path, &Config::default(), &options)?
    } else {
        Port::join(&args.path, &options)?
    };
    let socket = if connecting {
        None
    } else {
        // Who may be the VM's NIC is who may join: the socket takes the
        // network's group and mode.
        let access = port.access().with_context(|| {
            format!(
                "{}: reading the network's owner and mode",
                args.path.display()
            )
        })?;
        Some(VhostSocket::bind(sock, access)?)
    };
    eprintln!(
        "ipn: {what} joined {} as port {}{}; {}; Ctrl-C to stop",
        args.path.display(),
        port.index(),
        vlan::joined_as(&port),
        if connecting {
            "connecting to QEMU's socket"
        } else {
            "waiting for QEMU"
        }
    );
    let mut report = |event: Event| match event {
        Event::Connected => eprintln!("ipn: {what}: QEMU connected"),
        Event::Disconnected(None) => {
            eprintln!("ipn: {what}: QEMU disconnected; waiting for it again")
        }
        Event::Disconnected(Some(why)) => eprintln!("ipn: {what}: QEMU disconnected: {why}"),
        Event::CannotConnect(why) => {
            eprintln!("ipn: {what}: cannot connect (trying again): {why}")
        }
        Event::RefusedSecond => eprintln!(
            "ipn: {what}: refused a second frontend: one VM per socket (start another \
             `ipn vhost-user` for another VM)"
        ),
    };
    let stop = || signals::caught().is_some();
    let stats = match socket {
        Some(socket) => ipn_vhost::serve(port, socket, &stop, &mut report),
        None => ipn_vhost::serve_connecting(port, sock, &stop, &mut report),
    }
    .with_context(|| format!("{what}; left {}", args.path.display()))?;
    eprintln!(
        "ipn: {what} left {}: {}",
        args.path.display(),
        summary(&stats)
    );
    Ok(match signals::caught() {
        Some(signal) => Outcome::Signal(signal),
        None => Outcome::Done,
    })
}

fn summary(stats: &Stats) -> String {
    format!(
        "{} frames from the guest into the network, {} to the guest, {} dropped with no \
         guest to take them; refused: {} by the network, {} by the guest; {} connections",
        stats.to_network,
        stats.to_guest,
        stats.no_guest,
        stats.refused_by_network,
        stats.refused_by_guest,
        stats.connections
    )
}
