//! `ipn`: create, inspect and use ipn networks from the shell.
//!
//! Modules: `admin` (create, status, rm), `pubsub` (pub, sub), `escape`
//! (frames as text lines safe for a terminal), `stream` (frames on
//! stdin/stdout), `dump` (pcap captures), `signals` (leaving cleanly on
//! SIGINT/SIGTERM), `attach` (tap, grab: host interfaces), `vhost` (a VM's
//! NIC through vhost-user), `vxlan` (VXLAN tunnel endpoint), `vlan` (the
//! 802.1Q options of every command that joins), `bench` (runs the
//! `ipn-bench` binary), `top` (a live full-screen view).

mod admin;
mod attach;
mod bench;
mod busypoll;
mod dump;
mod escape;
mod limits;
mod prometheus;
mod pubsub;
mod signals;
mod stream;
mod top;
mod vhost;
mod vlan;
mod vxlan;
mod vxlan_stats;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  ipn create /tmp/net                      a 64-port lossy hub, MTU 1514
  ipn create /tmp/net --mtu 9000 --lossless --mode 0750 --group vm
  ipn sub /tmp/net &                       print every frame as a line
  seq 10 | ipn pub /tmp/net                publish ten frames: 1, 2, ... 10
  ipn status /tmp/net                      who is joined, counters, drops
  ipn status /tmp/net --json | jq .ports
  ipn top /tmp/net                         a live view, every second (q quits)
  ipn status /tmp/net --prometheus > /var/lib/prometheus/node-exporter/ipn.prom
  vde_plug vde:///tmp/sw | ipn pub --raw /tmp/net
  ipn dump /tmp/net | tcpdump -r - -n -e   watch the frames with tcpdump
  ipn tap /tmp/net --name tap0 --up        the host joins through TAP tap0
  ipn grab /tmp/net eth1                   eth1's wire joins the network
  ipn vhost-user /tmp/net --socket /tmp/vm1.sock   a QEMU VM's NIC, through vhost-user
  ipn vxlan /tmp/net --vni 42 --remote 192.0.2.7   join another host's network
  ipn create /tmp/lan --switch             a learning switch instead of a hub
  ipn tap /tmp/lan --name tap10 --vlan 10  an access port of VLAN 10 (untagged)
  ipn tap /tmp/lan --name trk --trunk 10,20 --native 1   a trunk (tagged)
  ipn rm /tmp/net
  source <(ipn completions bash)           completion (the package installs it)

Every command that joins (tap, grab, vxlan, vhost-user, pub, sub, dump) takes --vlan N
(access port), or --trunk LIST [--native N] (trunk); without them a port
is transparent: every frame as on the wire, tagged or not.

A network is a directory; its mode and group say who may join.
Exit status: 0 success, 1 error, 130 after SIGINT, 143 after SIGTERM.
See ipn(1) for the details.";

#[derive(Parser, Debug)]
#[command(
    name = "ipn",
    version,
    about = "Inter Process Networking: serverless shared-memory Ethernet networks joined by path",
    long_about = "Inter Process Networking: serverless shared-memory Ethernet networks joined by path.\n\n\
        A network is a directory in the file system. Any process allowed to open it joins \
        as a port, and every frame one port sends reaches every other reading port, as on \
        an Ethernet hub (or, created with --switch, a learning switch). There is no daemon: \
        the network stays when its last member leaves. Virtual machines join with the URL \
        ipn:///PATH through the vdeplug plugin; the host joins with `ipn tap`, a real \
        interface with `ipn grab`, other hosts with `ipn vxlan`.",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a network at PATH (a new directory)
    #[command(
        long_about = "Create a network at PATH (a new directory, or an existing empty one). \
            The options fix its size and behaviour for its whole life; unset ones take the \
            defaults shown. Prints one line describing what was created.",
        after_help = "Examples:\n  ipn create /tmp/net\n  ipn create /srv/lan --ports 16 --mtu 9000 --mode 0770 --group kvm\n  ipn create /tmp/bus --lossless --ring 1024"
    )]
    Create(admin::CreateArgs),
    /// Show a network's parameters and every port with its counters
    #[command(
        long_about = "Show a network's parameters, its reader and writer counts, and one row \
            per port: number, process id, state (joining, active, dead), whether it reads \
            and writes, its counters (frames and bytes sent and received, frames it lost \
            (read too slowly, or undeliverable: over the MTU), frames it sent that were not of its VLANs), its \
            802.1Q membership (transparent, access N, trunk LIST [native N]) and its \
            description. Ports whose process died are shown as dead until the next joiner \
            reuses their slot. On a switch network a second table lists, per port and VLAN, \
            the source addresses the port has sent from (its last 16): the switch's address \
            table, as vde_switch's port/print and hash/print show it.",
        after_long_help = admin::JSON_HELP
    )]
    Status(admin::StatusArgs),
    /// A live full-screen view of a network: rates per port, drops, VLANs, addresses
    #[command(
        long_about = "Show the network at PATH on the whole terminal, read again every \
            --interval seconds (default 1): per port its process, state, frames and bytes per \
            second sent and received over the last interval, frames dropped (received too \
            slowly; sent outside its VLANs), 802.1Q membership and description (escaped as \
            `ipn sub` escapes frames: members write it); above them the whole network's \
            rates. On a switch network a second table lists the addresses the switch learned, \
            those behind the ports that sent the most frames first (the switch counts per \
            port, not per address). q, Esc or Ctrl-C quits; the terminal is restored however \
            it ends (also SIGINT, SIGTERM, SIGHUP). Needs a terminal: for scripts and \
            monitoring use `ipn status --json` or `--prometheus`.",
        after_help = "Examples:\n  ipn top /tmp/net\n  ipn top /tmp/lan --interval 0.5"
    )]
    Top(top::TopArgs),
    /// Remove a network (refuses while ports are joined, unless --force)
    #[command(
        long_about = "Remove the network at PATH: its shared file, doorbell sockets and \
            directory. Refuses while live ports are joined, unless --force; ports still \
            joined then keep working on the unlinked file, alone.",
        after_help = "Example:\n  ipn rm /tmp/net && ipn create /tmp/net --lossless"
    )]
    Rm(admin::RmArgs),
    /// Publish: send each line (or --raw record) of standard input as a frame
    #[command(
        name = "pub",
        long_about = "Join PATH as a write-only port and send one frame per line of standard \
            input (the line without its newline; empty lines are skipped, since there are \
            no empty frames). With --raw, standard input is the vde_plug stream format \
            instead: each frame a 2-byte big-endian length, then that many bytes. On a \
            lossless network a send waits until every live reader has room. Lines that \
            arrive together are sent as one batch: a sleeping subscriber is woken once for \
            them, as soon as standard input has no more for now (and at least every 32 \
            lines). A line or record longer than the network's MTU stops with an error \
            naming it.",
        after_help = "Examples:\n  seq 1000 | ipn pub /tmp/net\n  tail -f /var/log/syslog | ipn pub --create /tmp/log\n  vde_plug vde:///tmp/sw | ipn pub --raw /tmp/net\n  vde_plug vde:///tmp/sw | ipn pub --raw /tmp/lan --vlan 10    its frames join VLAN 10"
    )]
    Pub(pubsub::PubArgs),
    /// Subscribe: print every frame received as one escaped line (or --hex, --raw)
    #[command(
        long_about = "Join PATH as a read-only port and write every frame it receives to \
            standard output: by default as one line of text, with --hex as a line of \
            hexadecimal bytes, with --raw in the vde_plug stream format (2-byte big-endian \
            length, then the frame, unchanged). A frame comes from any process on the \
            network, so a text line never carries what a terminal would act on: printable \
            text (UTF-8 included) is shown as it is, and every other byte is escaped: \
            \\n \\r \\t, \\\\ for a backslash, \\xHH for another control byte \
            (ESC is \\x1b, DEL \\x7f) or a byte that is not valid UTF-8, \\u{HHHH} for \
            a Unicode control or invisible formatting character (bidi overrides, line \
            separators), and a leading # is written \\#. So one frame is always one \
            line, and only event lines (--events) begin with #. Output is flushed after \
            every frame. A port receives what is sent after it joined. Stops after \
            --count frames, after --timeout seconds, at SIGINT/SIGTERM, or when standard \
            output is closed (e.g. `| head`).",
        after_help = "Examples:\n  ipn sub /tmp/net\n  ipn sub /tmp/net --count 1 --timeout 5\n  ipn sub /tmp/net --events --hex\n  ipn sub --raw /tmp/net | vde_plug vde:///tmp/sw\n  ipn sub /tmp/lan --vlan 10 --hex        VLAN 10's frames only, untagged\n\nA frame 'a<TAB>b<ESC>[31m<LF># x' prints as the line: a\\tb\\x1b[31m\\n# x"
    )]
    Sub(pubsub::SubArgs),
    /// Capture every frame as a pcap file for tcpdump or Wireshark
    #[command(
        long_about = "Join PATH as a read-only port and write every frame it receives as a \
            pcap capture (link type Ethernet, microsecond timestamps, or nanosecond with \
            --nano; each frame stamped when received) to FILE with -w FILE, or to standard \
            output with -w - (the default when standard output is not a terminal: a binary \
            capture is never written to a terminal). FILE is created or replaced, but \
            never through a symbolic link: give the real path. Output other than a regular \
            file is flushed after every frame, so a pipe into `tcpdump -r -` shows frames live. \
            With --snaplen only the first BYTES of each frame are kept, its original length \
            is still recorded. Stops after --count frames, after --timeout seconds, at \
            SIGINT/SIGTERM, or when the reader of standard output goes away, always leaving \
            a complete capture; then prints on standard error how many frames were captured \
            and how many the port lost (read too slowly, or undeliverable: over the MTU).",
        after_help = "Examples:\n  ipn dump /tmp/net -w /tmp/net.pcap\n  ipn dump /tmp/net | tcpdump -r - -n -e\n  ipn dump /tmp/net -w - --snaplen 64 | wireshark -k -i -\n  ipn dump /tmp/net -w first10.pcap --count 10 --timeout 60\n  ipn dump /tmp/lan | tcpdump -r - -n -e vlan 10    tags as on the wire (transparent)\n  ipn dump /tmp/lan --vlan 20 -w vlan20.pcap       VLAN 20 only, untagged"
    )]
    Dump(dump::DumpArgs),
    /// Join remote hosts' networks over standard VXLAN (RFC 7348), e.g. a kernel vxlan device
    #[command(
        long_about = "Join PATH as a port and bridge it to a VXLAN tunnel (RFC 7348): a UDP \
            socket on --local:--port (default every address, port 4789, the IANA port). Every \
            frame from the network is sent, after an 8-byte VXLAN header carrying --vni, to \
            each --remote (head-end replication), or to the --group multicast group joined \
            on --dev; a unicast frame for a MAC learned behind one remote goes to that one \
            only (--no-learning: always to all). Datagrams received with the right VNI enter \
            the network; malformed ones and those for another VNI are counted and dropped. \
            Interoperates with Linux kernel vxlan devices: create them with `dstport 4789` \
            (the kernel's default is 8472) and give their lower device 50 bytes of MTU \
            headroom (70 over IPv6): the outer packet is 20 (IPv4) + 8 (UDP) + 8 (VXLAN) \
            bytes plus the frame. Prints a line when it starts and a summary when it stops \
            (SIGINT/SIGTERM).",
        after_help = "Examples:\n  ipn vxlan /tmp/net --vni 42 --remote 10.1.1.2 --local 10.1.1.1\n  ipn vxlan /tmp/net --vni 42 --remote 10.1.1.2 --remote 10.1.1.3:8472\n  ipn vxlan /tmp/net --vni 42 --group 239.1.1.1 --dev eth0\n  ipn vxlan /tmp/lan --vni 43 --remote 10.1.1.2 --vlan 10     VLAN 10, untagged in the tunnel\n\nThe matching kernel device on host 10.1.1.2:\n  ip link add vx0 type vxlan id 42 remote 10.1.1.1 local 10.1.1.2 dstport 4789 dev eth0"
    )]
    Vxlan(vxlan::VxlanArgs),
    /// Join the host through a TAP interface (needs CAP_NET_ADMIN)
    #[command(
        long_about = "Open /dev/net/tun and create the TAP interface IFNAME (default ipn%d: \
            the kernel picks the number), or attach to the existing persistent TAP of that \
            name, join PATH as a port described `tap IFNAME`, and bridge the two until \
            SIGINT/SIGTERM: every frame the host sends through IFNAME enters the network, \
            every frame of the network comes out of IFNAME. When the network's MTU is not \
            the default 1514, the interface's MTU is set to it minus the 14-byte Ethernet \
            header (`ip link set dev IFNAME mtu N`), so jumbo networks work; --up sets the \
            link up. A TAP made here disappears when the command stops, even after being \
            moved to another network namespace (`ip link set IFNAME netns NS`). Prints the \
            interface's name and port on standard error when it starts, and a summary \
            (frames each way, frames refused) when it stops. Frames over the network's MTU \
            are counted and dropped.",
        after_help = "Examples:\n  ipn tap /tmp/net --name tap0 --up && ip addr add 10.0.0.1/24 dev tap0\n  ipn tap /tmp/net &                        creates ipn0, ipn1, ...\n  ip tuntap add mode tap user alice name tap7 && ipn tap /tmp/net --name tap7\n  ip link set tap0 netns ns1                move it; the bridge goes on\n  ipn tap /tmp/lan --name tap10 --vlan 10   the host in VLAN 10 (untagged on tap10)\n  ipn tap /tmp/lan --name trk --trunk 10,20 && ip link add link trk name trk.10 type vlan id 10"
    )]
    Tap(attach::TapArgs),
    /// Bridge an existing interface (e.g. eth1) to the network through AF_PACKET
    #[command(
        long_about = "Open an AF_PACKET raw socket bound to IFNAME for every protocol, join \
            PATH as a port described `grab IFNAME`, and bridge the two until SIGINT/SIGTERM: \
            frames arriving on IFNAME enter the network, frames of the network leave through \
            IFNAME. 802.1Q tags the interface's driver took out of received frames are put \
            back. Frames seen leaving IFNAME (sent by the host or by another program) are \
            not taken in, so the host's own traffic on IFNAME does not reach the network: \
            the host joins through `ipn tap`. --promisc adds a promiscuous membership to the socket (frames \
            for any MAC arrive); the kernel drops it when the socket closes, even after \
            kill -9, so nothing is left to restore. Frames over the network's MTU are counted \
            and dropped: turn off receive offloads on IFNAME (`ethtool -K IFNAME gro off \
            lro off`) so that the kernel does not merge frames beyond it. Needs CAP_NET_RAW \
            (--promisc too: the membership is the packet socket's).",
        after_help = "Examples:\n  ipn grab /tmp/net eth1 --promisc\n  ip link add vA type veth peer name vB && ip link set vA up && ipn grab /tmp/net vA\n  ipn grab /tmp/lan eth1 --trunk 10,20 --native 1     eth1 is a trunk: tags as on its wire"
    )]
    Grab(attach::GrabArgs),
    /// Be a QEMU VM's virtio-net NIC on the network, through vhost-user
    #[command(
        name = "vhost-user",
        long_about = "Listen on the Unix socket SOCK as a vhost-user net backend, join PATH as \
            a port described `vhost-user SOCK` (with offloads), and serve the VM that connects: \
            every frame its virtio-net NIC sends enters the network, every frame of the network \
            goes into its receive buffers. One process per VM, with no central process. The \
            guest negotiates virtio 1.0, mergeable receive buffers, checksum offload and TSO \
            (IPv4, IPv6, ECN) both ways: its 64 KiB TCP frames cross the network whole to \
            other ports with offloads (TAPs, other vhost-user VMs) and are cut in software for \
            the others. When QEMU goes away (the VM stopped, or the backend restarted and QEMU \
            reconnects with reconnect=1) the socket is listened to again; frames from the \
            network meanwhile are dropped. A socket another process listens on is refused; a \
            stale one (its backend died) is replaced; anything else at SOCK is left alone. \
            The socket takes the network's group and mode (who may join may connect), \
            whatever the umask. With --connect SOCK instead, QEMU listens (-chardev \
            socket,server=on,wait=off; libvirt's mode='server') and the backend connects, \
            trying every 100 ms until it listens and again whenever the connection drops, so \
            a restarted backend or QEMU needs nothing else. A guest that breaks its device \
            (inconsistent rings) has its connection closed, with the reason; one that posts \
            no receive buffers for 2 s has its frames dropped and counted. \
            SIGINT/SIGTERM: leaves the network, removes the socket, prints a summary. QEMU \
            needs the guest's memory shared (memory-backend-memfd,share=on); under TCG, QEMU \
            7.2 needs vectors=0 on the device.",
        after_help = "Example:\n  ipn vhost-user /tmp/net --socket /tmp/vm1.sock --create &\n  qemu-system-x86_64 ... -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \\\n    -chardev socket,id=c0,path=/tmp/vm1.sock,reconnect=1 -netdev vhost-user,id=n0,chardev=c0 \\\n    -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56\n  ipn vhost-user /tmp/net --connect /tmp/vm1.sock &        QEMU listens: -chardev socket,id=c0,path=/tmp/vm1.sock,server=on,wait=off"
    )]
    VhostUser(vhost::VhostArgs),
    /// Measure ipn against AF_UNIX fan-out: runs ipn-bench (see ipn bench --help)
    Bench(bench::BenchArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, ...)
    #[command(
        long_about = "Print the completion script for SHELL, generated from this command's own \
            definition, so it always matches it. The Debian package installs them where each \
            shell looks: /usr/share/bash-completion/completions/ipn, \
            /usr/share/zsh/vendor-completions/_ipn, /usr/share/fish/vendor_completions.d/ipn.fish.",
        after_help = "Examples:\n  source <(ipn completions bash)\n  ipn completions zsh > ~/.zfunc/_ipn\n  ipn completions fish > ~/.config/fish/completions/ipn.fish"
    )]
    Completions(CompletionsArgs),
}

#[derive(clap::Args, Debug)]
struct CompletionsArgs {
    /// The shell
    shell: clap_complete::Shell,
}

/// Writes the completion script for `shell` on standard output.
fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "ipn", &mut script);
    use std::io::Write;
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| anyhow::anyhow!("writing the completion script: {e}"))
}

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Finished its work (or its reader went away).
    Done,
    /// Stopped by this signal.
    Signal(i32),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(args) => admin::create(&args).map(|()| Outcome::Done),
        Command::Status(args) => admin::status(&args).map(|()| Outcome::Done),
        Command::Rm(args) => admin::rm(&args).map(|()| Outcome::Done),
        Command::Pub(args) => pubsub::publish(&args),
        Command::Sub(args) => pubsub::subscribe(&args),
        Command::Dump(args) => dump::dump(&args),
        Command::Vxlan(args) => vxlan::run(&args),
        Command::Tap(args) => attach::tap(&args),
        Command::Grab(args) => attach::grab(&args),
        Command::VhostUser(args) => vhost::run(&args),
        Command::Top(args) => top::run(&args),
        Command::Bench(args) => bench::run(&args).map(|()| Outcome::Done),
        Command::Completions(args) => completions(&args).map(|()| Outcome::Done),
    };
    // Every Port has been dropped by now: the commands own theirs.
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Signal(signal)) => ExitCode::from(128 + signal.clamp(0, 127) as u8),
        Err(e) => {
            eprintln!("ipn: {e:#}");
            ExitCode::FAILURE
        }
    }
}
