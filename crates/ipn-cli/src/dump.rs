//! `ipn dump`: capture a network's frames as a pcap file that tcpdump,
//! Wireshark and every libpcap program read.
//!
//! The command joins read-only, writes the pcap global header at once
//! (LINKTYPE_ETHERNET, microsecond or, with `--nano`, nanosecond
//! timestamps), then one record per frame, stamped with the time it was
//! received. The pcap encoding is the `pcap-file` crate's.
//!
//! Output is a file (`-w FILE`) or standard output (`-w -`, or no `-w` when
//! standard output is not a terminal); a binary capture is never written to
//! a terminal. FILE is created or truncated, but never through a symbolic
//! link: one planted there would make us truncate what it points to. Output that is not a regular file (a pipe, a socket, a FIFO)
//! is flushed after every frame, so `ipn dump NET | tcpdump -r -` shows
//! frames as they come; a regular file is flushed whenever the network goes
//! idle and at least every [`TICK`]. Like `sub`, the loop returns on
//! SIGINT/SIGTERM, `--count`, `--timeout` or a closed pipe, so the capture
//! is always complete and the port is always dropped (its slot released).

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use ipn::{JoinOptions, Port, RecvError};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

use crate::busypoll::BusyPollArgs;
use crate::limits::{Limits, Next};
use crate::signals::{self, TICK};
use crate::vlan::VlanArgs;
use crate::Outcome;

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The network
    pub path: PathBuf,
    /// Write the capture to FILE (replaced if it exists; refused if it is a symbolic link), or
    /// to standard output with `-w -` [default: standard output if it is not a terminal]
    #[arg(long = "write", short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Exit after capturing N frames
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Exit after SECS seconds; an error if --count frames did not all arrive by then
    #[arg(long, short, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Keep at most BYTES of each frame (its original length is still recorded)
    #[arg(long, short = 's', value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..))]
    pub snaplen: Option<u32>,
    /// Nanosecond timestamps instead of microseconds (pcap magic a1b23c4d)
    #[arg(long)]
    pub nano: bool,
    /// Description shown by `ipn status`
    #[arg(long, short, value_name = "TEXT", default_value = "ipn dump")]
    pub description: String,
    #[command(flatten)]
    pub vlan: VlanArgs,
    #[command(flatten)]
    pub receive: BusyPollArgs,
}

/// The buffered output, shared between the [`PcapWriter`] (which encodes
/// into it) and the [`Sink`] (which flushes and polls it: `PcapWriter`
/// gives no access to its writer).
#[derive(Clone)]
struct Shared(Rc<RefCell<BufWriter<File>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// Where the capture goes.
struct Sink {
    writer: PcapWriter<Shared>,
    out: Shared,
    /// What to call it in messages.
    name: String,
    /// Flush after every frame (anything but a regular file).
    live: bool,
    /// Whether it is our standard output (whose reader may go away).
    stdout: bool,
    /// Frames written since the last flush.
    pending: bool,
    last_flush: Instant,
}

/// The opened output, before the pcap header is written.
struct Target {
    file: File,
    name: String,
    live: bool,
    stdout: bool,
}

impl Target {
    /// Opens `path`, or standard output for `None` (which
    /// [`refuse_terminal`] has checked).
    fn open(path: Option<&Path>) -> anyhow::Result<Target> {
        let Some(path) = path else {
            // A duplicate of descriptor 1, so that the capture goes through
            // our own buffer, not std's line buffering.
            let fd = io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .context("duplicating standard output")?;
            return Ok(Target::new(File::from(fd), "standard output".into(), true));
        };
        let file = open_capture_file(path)?;
        Ok(Target::new(file, path.display().to_string(), false))
    }

    fn new(file: File, name: String, stdout: bool) -> Target {
        let live = !file.metadata().is_ok_and(|m| m.file_type().is_file());
        Target {
            file,
            name,
            live,
            stdout,
        }
    }
}

impl Sink {
    /// Writes the global header and sends it out at once, so that a reader
    /// (`tcpdump -r -`) starts.
    fn new(target: Target, header: PcapHeader) -> anyhow::Result<Sink> {
        let name = target.name;
        let out = Shared(Rc::new(RefCell::new(BufWriter::new(target.file))));
        let writer = PcapWriter::with_header(out.clone(), header)
            .map_err(|e| anyhow::anyhow!("writing the capture header to {name}: {e}"))?;
        let mut sink = Sink {
            writer,
            out,
            name,
            live: target.live,
            stdout: target.stdout,
            pending: true,
            last_flush: Instant::now(),
        };
        sink.flush()?;
        Ok(sink)
    }

    /// Writes one frame; `false` when the reader of our pipe went away.
    fn frame(&mut self, packet: &PcapPacket) -> anyhow::Result<bool> {
        match self.writer.write_packet(packet) {
            Ok(_) => {}
            Err(PcapError::IoError(e)) => return self.io_result(Err(e)),
            Err(e) => bail!("writing a frame to {}: {e}", self.name),
        }
        self.pending = true;
        if self.live || self.last_flush.elapsed() >= TICK {
            return self.flush();
        }
        Ok(true)
    }

    /// Flushes what is buffered; `false` when the reader went away.
    fn flush(&mut self) -> anyhow::Result<bool> {
        self.last_flush = Instant::now();
        if !self.pending {
            return Ok(true);
        }
        self.pending = false;
        let result = self.out.flush();
        self.io_result(result)
    }

    fn io_result(&self, result: io::Result<()>) -> anyhow::Result<bool> {
        match result {
            Ok(()) => Ok(true),
            // `| tcpdump -c 5`, `| head -c`: the reader had enough.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e).context(format!("writing the capture to {}", self.name)),
        }
    }

    /// Whether our output is a pipe whose reader has gone (poll reports
    /// POLLERR on its write end), so that the command ends even when no
    /// further frame comes.
    fn reader_gone(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        if !self.stdout || !self.live {
            return false;
        }
        let out = self.out.0.borrow();
        let mut fds = [PollFd::new(out.get_ref().as_fd(), PollFlags::empty())];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR))
    }
}

/// A binary capture is never written to a terminal.
fn refuse_terminal() -> anyhow::Result<()> {
    if io::stdout().is_terminal() {
        bail!(
            "refusing to write a binary pcap capture to a terminal; \
             give -w FILE, or pipe it into a reader: ipn dump PATH | tcpdump -r - -n"
        );
    }
    Ok(())
}

/// Opens `path` to write a capture, creating it or truncating it (a
/// FIFO is not truncated: it has nothing to truncate). Not through a
/// symbolic link (`O_NOFOLLOW`): one planted at `path` would make us
/// truncate whatever it points to. Neither does it become our controlling
/// terminal (`O_NOCTTY`), nor leak into children (`O_CLOEXEC`).
fn open_capture_file(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| create_error(path, e))
}

/// A clear error for a capture file that cannot be created.
fn create_error(path: &Path, e: io::Error) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        if let Ok(target) = std::fs::read_link(path) {
            return anyhow::anyhow!(
                "cannot write capture file {}: it is a symbolic link (to {}), and ipn will \
                 not follow it, so as not to overwrite what it points to; give the real path \
                 instead (or -w - for standard output)",
                path.display(),
                target.display()
            );
        }
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match e.kind() {
        io::ErrorKind::NotFound => anyhow::anyhow!(
            "cannot create capture file {}: directory {} does not exist",
            path.display(),
            dir.display()
        ),
        io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot create capture file {}: permission denied; choose a directory you may write, \
             e.g. -w /tmp/capture.pcap",
            path.display()
        ),
        _ => {
            anyhow::Error::new(e).context(format!("cannot create capture file {}", path.display()))
        }
    }
}

pub fn dump(args: &DumpArgs) -> anyhow::Result<Outcome> {
    signals::install()?;
    let limits = Limits::start(args.count, args.timeout, &args.path)?;
    let file = args.write.as_deref().filter(|p| *p != Path::new("-"));
    if file.is_none() {
        refuse_terminal()?;
    }
    let options = JoinOptions {
        description: args.description.clone(),
        read: true,
        write: false,
        vlan: args.vlan.membership(),
        busy_poll: args.receive.duration(),
        ..Default::default()
    };
    let mut port = Port::join(&args.path, &options)?;
    // Only now, so that a missing network leaves no empty file behind.
    let target = Target::open(file)?;
    // Whole frames: the MTU, plus an 802.1Q tag.
    let longest = u32::try_from(port.max_frame()).unwrap_or(u32::MAX);
    let snaplen = args.snaplen.unwrap_or(longest);
    let header = PcapHeader {
        snaplen,
        datalink: DataLink::ETHERNET,
        ts_resolution: if args.nano {
            TsResolution::NanoSecond
        } else {
            TsResolution::MicroSecond
        },
        endianness: Endianness::native(),
        ..PcapHeader::default()
    };
    let mut sink = Sink::new(target, header)?;
    let mut captured = 0;
    let result = capture(&limits, &mut port, &mut sink, &mut captured);
    // Finish the file whatever happened; a closed pipe is no error.
    let flushed = sink.flush();
    let dropped = port
        .status()
        .ports
        .iter()
        .find(|p| p.index == port.index())
        .map_or(0, |p| p.rx_dropped);
    drop(port);
    eprintln!(
        "{captured} frames captured, {dropped} dropped by ipn (reader too slow, or undeliverable)"
    );
    let outcome = result?;
    flushed?;
    Ok(outcome)
}

/// Receives and records frames until something says stop.
fn capture(
    limits: &Limits,
    port: &mut Port,
    sink: &mut Sink,
    captured: &mut u64,
) -> anyhow::Result<Outcome> {
    let snaplen = sink.writer.snaplen() as usize;
    let mut buf = vec![0u8; port.max_frame()];
    loop {
        let wait = match limits.next(*captured, "captured")? {
            Next::Wait(wait) => wait,
            Next::Stop(outcome) => return Ok(outcome),
        };
        let ok = match port.recv_timeout(&mut buf, wait) {
            Ok(len) => {
                let timestamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let packet = PcapPacket::new(timestamp, len as u32, &buf[..len.min(snaplen)]);
                let written = sink.frame(&packet)?;
                *captured += u64::from(written);
                written
            }
            // Idle: the file catches up, and a vanished pipe reader ends us.
            Err(RecvError::TimedOut | RecvError::WouldBlock) => {
                sink.flush()? && !sink.reader_gone()
            }
            Err(e) => return Err(e).context(format!("receiving from {}", port.path().display())),
        };
        if !ok {
            return Ok(Outcome::Done);
        }
    }
}
