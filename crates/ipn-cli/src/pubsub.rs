//! `ipn pub` and `ipn sub`: frames from standard input onto a network, and
//! from a network onto standard output.
//!
//! Both own their `Port` and return from their loop on SIGINT/SIGTERM (see
//! `signals`), on end of input, or when standard output is closed, so the
//! port is always dropped: its slot is released and its doorbell socket
//! removed before the process exits.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use ipn::ethernet::{Frame, Vlan};
use ipn::{Config, JoinOptions, Message, Port, RecvError, SendError};

use crate::busypoll::BusyPollArgs;
use crate::escape;
use crate::limits::{self, Limits};
use crate::signals::{self, TICK};
use crate::stream::{self, Input, Next};
use crate::vlan::{self, VlanArgs};
use crate::Outcome;

#[derive(Args, Debug)]
pub struct PubArgs {
    /// The network
    pub path: PathBuf,
    /// Read vde_plug stream records (2-byte big-endian length, then the frame) instead of lines
    #[arg(long)]
    pub raw: bool,
    /// Description shown by `ipn status`
    #[arg(long, short, value_name = "TEXT", default_value = "ipn pub")]
    pub description: String,
    /// Create the network with default settings if there is none at PATH
    #[arg(long)]
    pub create: bool,
    #[command(flatten)]
    pub vlan: VlanArgs,
}

#[derive(Args, Debug)]
pub struct SubArgs {
    /// The network
    pub path: PathBuf,
    /// Print each frame as one line of hexadecimal bytes
    #[arg(long, conflicts_with = "raw")]
    pub hex: bool,
    /// Write vde_plug stream records (2-byte big-endian length, then the frame)
    #[arg(long)]
    pub raw: bool,
    /// Exit after receiving N frames
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Exit after SECS seconds; an error if --count frames did not all arrive by then
    #[arg(long, short, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Also print reader/writer count changes as `# readers=R writers=W` (on stderr with --raw)
    #[arg(long)]
    pub events: bool,
    /// Description shown by `ipn status`
    #[arg(long, short, value_name = "TEXT", default_value = "ipn sub")]
    pub description: String,
    /// Create the network with default settings if there is none at PATH
    #[arg(long)]
    pub create: bool,
    #[command(flatten)]
    pub vlan: VlanArgs,
    #[command(flatten)]
    pub receive: BusyPollArgs,
}

fn join(path: &PathBuf, create: bool, options: &JoinOptions) -> anyhow::Result<Port> {
    let port = if create {
        Port::join_or_create(path, &Config::default(), options)?
    } else {
        Port::join(path, options)?
    };
    Ok(port)
}

pub fn publish(args: &PubArgs) -> anyhow::Result<Outcome> {
    signals::install()?;
    let options = JoinOptions {
        description: args.description.clone(),
        read: false,
        write: true,
        vlan: args.vlan.membership(),
        ..Default::default()
    };
    let mut port = join(&args.path, args.create, &options)?;
    let outcome = send_input(args, &mut port);
    let dropped = vlan::tx_dropped(&port);
    if dropped > 0 {
        eprintln!(
            "ipn pub: {dropped} frames were not in the port's VLANs ({}) and were dropped",
            vlan::membership_text(port.vlan())
        );
    }
    outcome
}

/// Most lines (or records) sent before the subscribers are told, when the
/// input keeps coming: bounds how long a burst's first line waits for a
/// sleeping subscriber.
const ANNOUNCE_EVERY: u64 = 32;

/// Sends every line or record of standard input.
fn send_input(args: &PubArgs, port: &mut Port) -> anyhow::Result<Outcome> {
    let mtu = port.mtu() as usize;
    // A tagged frame may be 4 bytes over the MTU, which counts the frame
    // without its tag: the port decides.
    let longest = port.max_frame();
    let ethernet_only = *port.vlan() != Vlan::Transparent;
    let what = if args.raw { "record" } else { "line" };
    let mut input = Input::new(io::stdin());
    let mut number: u64 = 0;
    // Lines that arrive together go out as one batch: each sleeping
    // subscriber is woken once for them, when the input has no more for
    // now (or every ANNOUNCE_EVERY lines), not once per line.
    let mut batch = port.batch();
    loop {
        let next = if args.raw {
            input.next_record(longest, &mut || batch.flush())
        } else {
            input.next_line(longest, &mut || batch.flush())
        }
        .context("reading standard input")?;
        number += 1;
        let frame = match next {
            Next::Frame(range) => input.bytes(range),
            Next::End => return Ok(Outcome::Done),
            Next::Signal(signal) => return Ok(Outcome::Signal(signal)),
            Next::TooLong(len) => bail!(
                "{what} {number}: {len} bytes, over the MTU of {mtu} bytes of {} \
                 ({longest} with an 802.1Q tag); shorten it or create the network with a \
                 larger --mtu",
                args.path.display()
            ),
            Next::Truncated {
                expected: 2,
                got: 1,
            } => bail!("record {number}: standard input ended inside its 2-byte length header"),
            Next::Truncated { expected, got } => {
                bail!("record {number}: standard input ended after {got} of its {expected} bytes")
            }
        };
        if frame.is_empty() {
            continue; // An empty line: there are no empty frames.
        }
        if ethernet_only && Frame::new_checked(frame).is_none() {
            bail!(
                "{what} {number}: {} bytes is not an Ethernet frame (at least 14 bytes: \
                 addresses and EtherType, 18 with an 802.1Q tag), and only Ethernet frames \
                 have a VLAN; without --vlan/--trunk any bytes are a frame",
                frame.len()
            );
        }
        loop {
            match batch.send_timeout(frame, TICK) {
                Ok(()) => {
                    if number.is_multiple_of(ANNOUNCE_EVERY) {
                        batch.flush();
                    }
                    break;
                }
                Err(SendError::TimedOut | SendError::WouldBlock) => {
                    if let Some(signal) = signals::caught() {
                        return Ok(Outcome::Signal(signal));
                    }
                }
                Err(SendError::TooBig { len, mtu }) => bail!(
                    "{what} {number}: {len} bytes, over the MTU of {mtu} bytes of {} \
                     (an 802.1Q tag does not count)",
                    args.path.display()
                ),
                Err(e) => return Err(e).context(format!("{what} {number}")),
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Format {
    Text,
    Hex,
    Raw,
}

/// Writes frames and events to standard output.
struct Output {
    out: io::StdoutLock<'static>,
    format: Format,
    /// The bytes written for one frame.
    line: Vec<u8>,
    /// A frame as escaped text (`Format::Text`).
    text: String,
}

impl Output {
    fn frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.line.clear();
        match self.format {
            Format::Raw => stream::write_record(&mut self.line, frame)?,
            Format::Text => {
                self.text.clear();
                escape::frame_line(frame, &mut self.text);
                self.line.extend_from_slice(self.text.as_bytes());
                self.line.push(b'\n');
            }
            Format::Hex => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                for (i, byte) in frame.iter().enumerate() {
                    if i > 0 {
                        self.line.push(b' ');
                    }
                    self.line.push(DIGITS[usize::from(byte >> 4)]);
                    self.line.push(DIGITS[usize::from(byte & 15)]);
                }
                self.line.push(b'\n');
            }
        }
        self.out.write_all(&self.line)?;
        self.out.flush()
    }

    fn event(&mut self, readers: u32, writers: u32) -> io::Result<()> {
        let text = format!("# readers={readers} writers={writers}\n");
        match self.format {
            // Standard output carries only records.
            Format::Raw => io::stderr().write_all(text.as_bytes()),
            _ => {
                self.out.write_all(text.as_bytes())?;
                self.out.flush()
            }
        }
    }

    /// Whether standard output is a pipe whose reader has gone (poll
    /// reports POLLERR on such a write end), so that `ipn sub | head -1`
    /// ends even when no further frame comes.
    fn reader_gone(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.out.as_fd(), PollFlags::empty())];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR))
    }
}

/// What writing to standard output did.
fn written(result: io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        // The reader went away (`| head`): leave quietly.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to standard output"),
    }
}

pub fn subscribe(args: &SubArgs) -> anyhow::Result<Outcome> {
    signals::install()?;
    let limits = Limits::start(args.count, args.timeout, &args.path)?;
    let options = JoinOptions {
        description: args.description.clone(),
        read: true,
        write: false,
        vlan: args.vlan.membership(),
        busy_poll: args.receive.duration(),
        ..Default::default()
    };
    let mut port = join(&args.path, args.create, &options)?;
    port.set_membership_events(args.events);
    let mut out = Output {
        out: io::stdout().lock(),
        format: if args.raw {
            Format::Raw
        } else if args.hex {
            Format::Hex
        } else {
            Format::Text
        },
        line: Vec::new(),
        text: String::new(),
    };
    if args.events {
        let m = port.membership();
        if !written(out.event(m.readers, m.writers))? {
            return Ok(Outcome::Done);
        }
    }
    // Tagged frames are up to 4 bytes longer than the MTU.
    let mut buf = vec![0u8; port.max_frame()];
    let mut received: u64 = 0;
    loop {
        let wait = match limits.next(received, "received")? {
            limits::Next::Wait(wait) => wait,
            limits::Next::Stop(outcome) => return Ok(outcome),
        };
        let ok = match port.recv_message(&mut buf, Some(wait)) {
            Ok(Message::Frame(len)) => {
                received += 1;
                written(out.frame(&buf[..len]))?
            }
            Ok(Message::Membership(m)) => written(out.event(m.readers, m.writers))?,
            Err(RecvError::TimedOut | RecvError::WouldBlock) => !out.reader_gone(),
            Err(e) => return Err(e).context(format!("receiving from {}", args.path.display())),
        };
        if !ok {
            return Ok(Outcome::Done);
        }
    }
}
