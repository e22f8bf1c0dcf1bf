//! `ipn vxlan`: joins a network to remote hosts over standard VXLAN
//! (RFC 7348), through `ipn_attach::vxlan`.
//!
//! Owns its `Port` and its UDP socket; returns on SIGINT/SIGTERM (the
//! bridge asks for the flag at least every 100 ms, also while a send into a
//! lossless network waits for a reader that does not read), so the port is
//! dropped and its slot released before the process exits. Prints one line when it
//! starts and a summary of what it moved and dropped when it stops.
//!
//! While it runs ([`Reporting`]): publishes its per-remote counters for
//! `ipn status` about once a second (`vxlan_stats`, through
//! `ipn::Publisher`), probes the paths' MTUs again as often, and warns
//! when frames are too big for the underlay: at once the first time, then
//! at most once a minute, with how many since.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use ipn::{Config, JoinOptions, Port, Publisher};
use ipn_attach::vxlan::{Vxlan, VxlanConfig, VxlanSender, IANA_PORT, MAX_VNI};
use ipn_attach::{bridge_split, Link, LinkSender};

use crate::busypoll::BusyPollArgs;
use crate::signals;
use crate::vlan::{self, VlanArgs};
use crate::vxlan_stats::{self, Published};
use crate::Outcome;

/// Least time between two warnings about oversized frames.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
pub struct VxlanArgs {
    /// The network
    pub path: PathBuf,
    /// VXLAN network identifier, 0 to 16777215 (the kernel's `id`)
    #[arg(long, value_name = "N")]
    pub vni: u32,
    /// Remote VTEP, IP or IP:PORT ([IPv6]:PORT); repeat for more: every frame goes to each
    #[arg(long, value_name = "IP[:PORT]", required_unless_present = "group")]
    pub remote: Vec<String>,
    /// Local address to bind and send from (default: every address)
    #[arg(long, value_name = "IP")]
    pub local: Option<IpAddr>,
    /// UDP port to listen on and send to (the kernel's `dstport`)
    #[arg(long, value_name = "PORT", default_value_t = IANA_PORT)]
    pub port: u16,
    /// IPv4 multicast group to send to and receive from, instead of remotes
    #[arg(
        long,
        value_name = "MCAST_IP",
        requires = "dev",
        conflicts_with = "remote"
    )]
    pub group: Option<Ipv4Addr>,
    /// Interface to join --group on (the kernel's `dev`)
    #[arg(long, value_name = "IFNAME", requires = "group")]
    pub dev: Option<String>,
    /// Always flood to every remote; do not learn which remote a MAC is behind
    #[arg(long)]
    pub no_learning: bool,
    /// Send and receive one datagram per system call, without UDP GSO/GRO
    /// and without offload frames (the path for kernels without them)
    #[arg(long)]
    pub no_offload: bool,
    /// Description shown by `ipn status` (default: vxlan vni N)
    #[arg(long, short, value_name = "TEXT")]
    pub description: Option<String>,
    /// Create the network with default settings if there is none at PATH
    #[arg(long)]
    pub create: bool,
    #[command(flatten)]
    pub vlan: VlanArgs,
    #[command(flatten)]
    pub receive: BusyPollArgs,
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`; a bare IP gets `port`.
fn parse_remote(text: &str, port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, port));
    }
    bail!("--remote {text}: give an IP address, IP:PORT or [IPv6]:PORT")
}

pub fn run(args: &VxlanArgs) -> anyhow::Result<Outcome> {
    signals::install()?;
    if args.vni > MAX_VNI {
        bail!("--vni {}: a VNI is 0 to {MAX_VNI} (24 bits)", args.vni);
    }
    let mut config = VxlanConfig::new(args.vni);
    config.local = args.local;
    config.port = args.port;
    config.learning = !args.no_learning;
    config.offload = !args.no_offload;
    for remote in &args.remote {
        config.remotes.push(parse_remote(remote, args.port)?);
    }
    if let (Some(group), Some(dev)) = (args.group, &args.dev) {
        config.group = Some((group, dev.clone()));
    }
    let mut link = Vxlan::open(&config)?;
    let options = JoinOptions {
        // TSO frames cross whole to the endpoint, which cuts them for UDP
        // GSO, and joined ones come back.
        offload: link.offloads(),
        vlan: args.vlan.membership(),
        busy_poll: args.receive.duration(),
        ..JoinOptions::described(
            args.description
                .clone()
                .unwrap_or_else(|| format!("vxlan vni {}", args.vni)),
        )
    };
    let mut port = if args.create {
        Port::join_or_create(&args.path, &Config::default(), &options)?
    } else {
        Port::join(&args.path, &options)?
    };
    let what = link.describe();
    let (sender, mut receiver) = link.split();
    let mut reporting = Reporting::new(sender, &port, args.vni);
    eprintln!(
        "ipn: {what} joined {} as port {}{}; Ctrl-C to stop",
        args.path.display(),
        port.index(),
        vlan::joined_as(&port)
    );
    // Each direction on a thread of its own (the sending half's reports
    // its counters too).
    let result = bridge_split(&mut port, &mut reporting, &mut receiver, &|| {
        signals::caught().is_some()
    });
    let v = link.stats();
    let summary = |b: &ipn_attach::BridgeStats| {
        format!(
            "ipn: {what}: {} frames in from remote VTEPs, {} out to them ({} datagrams \
             sent in {} system calls, {} received in {}, {} TCP segments joined; {} unicast \
             to a learned VTEP); dropped: {} malformed datagrams, {} for \
             another VNI, {} over the network's MTU, {} frames not sent ({} over the \
             underlay's MTU, {} send errors), {} receive errors",
            b.to_network,
            b.from_network,
            v.sent,
            v.send_calls,
            v.received,
            v.recv_calls,
            v.joined,
            v.unicast,
            v.malformed,
            v.other_vni,
            b.network_refused,
            b.link_refused,
            v.oversized,
            v.send_errors,
            v.recv_errors,
        )
    };
    let stats = result.with_context(|| format!("{what} on {}", args.path.display()))?;
    eprintln!("{}{}", summary(&stats), vlan::dropped_text(&port));
    Ok(match signals::caught() {
        Some(signal) => Outcome::Signal(signal),
        None => Outcome::Done,
    })
}

/// The endpoint's sending half, as the bridge sees it, and what it tells
/// the outside while the bridge runs (see the module doc); the bridge
/// calls [`LinkSender::check`] on its thread at least every 100 ms.
struct Reporting<'a> {
    link: VxlanSender<'a>,
    what: String,
    port: u32,
    vni: u32,
    /// `None` if the network directory could not be opened again.
    publisher: Option<Publisher>,
    /// Whether a failure to publish was said (once is enough).
    said_unpublished: bool,
    next_publish: Instant,
    last_warning: Option<Instant>,
}

impl<'a> Reporting<'a> {
    /// Starts reporting on `link`, bridged to `port`: publishes at once, so
    /// that `ipn status` shows the counters as soon as the start line is
    /// out.
    fn new(link: VxlanSender<'a>, port: &Port, vni: u32) -> Reporting<'a> {
        let what = link.describe();
        let mut said_unpublished = false;
        let publisher = Publisher::new(port)
            .inspect_err(|e| {
                eprintln!("ipn: {what}: `ipn status` will not show the counters per remote: {e}");
                said_unpublished = true;
            })
            .ok();
        let mut reporting = Reporting {
            link,
            what,
            port: port.index(),
            vni,
            publisher,
            said_unpublished,
            next_publish: Instant::now(),
            last_warning: None,
        };
        reporting.publish();
        reporting
    }

    /// Publishes the counters (a failure is said once, and retried).
    fn publish(&mut self) {
        self.next_publish = Instant::now() + vxlan_stats::INTERVAL;
        let Some(publisher) = &mut self.publisher else {
            return;
        };
        let published = Published::of(&self.link, self.port, self.vni)
            .and_then(|p| Ok(serde_json::to_vec(&p)?))
            .and_then(|bytes| Ok(publisher.publish(&bytes)?));
        match published {
            Ok(()) => self.said_unpublished = false,
            Err(e) if !self.said_unpublished => {
                eprintln!(
                    "ipn: {}: cannot publish the counters per remote for `ipn status` \
                     (trying again every second): {e:#}",
                    self.what
                );
                self.said_unpublished = true;
            }
            Err(_) => {}
        }
    }

    /// Warns about frames too big for the underlay: the first time at
    /// once, then at most every [`WARN_EVERY`] (the endpoint counts them
    /// meanwhile).
    fn warn(&mut self) {
        if self
            .last_warning
            .is_some_and(|at| at.elapsed() < WARN_EVERY)
        {
            return;
        }
        if let Some(oversized) = self.link.take_oversized() {
            eprintln!("ipn: {}: warning: {oversized}", self.what);
            self.last_warning = Some(Instant::now());
        }
    }
}

impl LinkSender for Reporting<'_> {
    fn offloads(&self) -> bool {
        self.link.offloads()
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.link.send(frame)
    }

    fn send_vnet(&mut self, buf: &[u8]) -> io::Result<()> {
        self.link.send_vnet(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.link.flush()
    }

    fn check(&mut self) -> io::Result<()> {
        self.warn();
        if Instant::now() >= self.next_publish {
            self.link.refresh();
            self.publish();
        }
        self.link.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_parse_with_and_without_port() {
        let p = |t| parse_remote(t, 4789).unwrap().to_string();
        assert_eq!(p("10.1.1.2"), "10.1.1.2:4789");
        assert_eq!(p("10.1.1.2:8472"), "10.1.1.2:8472");
        assert_eq!(p("fd00::2"), "[fd00::2]:4789");
        assert_eq!(p("[fd00::2]"), "[fd00::2]:4789");
        assert_eq!(p("[fd00::2]:5"), "[fd00::2]:5");
        assert!(parse_remote("host.example", 4789).is_err());
    }
}
