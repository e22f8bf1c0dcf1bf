//! Publish/subscribe without a server, the "subscribe" half: join (or
//! create) an ipn network by path as a read-only port and print every
//! message that arrives (see `publisher.rs` for the other half).
//!
//! ```text
//! cargo run --example subscriber -- /tmp/news
//! cargo run --example subscriber -- /tmp/news --count 5 --timeout-ms 3000
//! ```
//!
//! It also reports when publishers and subscribers come and go (membership
//! events), including ones that were killed, and at the end how many
//! messages it missed because it read too slowly (lossy networks).

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ipn::{Config, JoinOptions, Message, Port, RecvError};

/// Print the messages sent on an ipn network, and who joins and leaves.
///
/// Joins the network at PATH (creating it if needed) as a read-only port and
/// prints every message until N messages arrived or none came for MS
/// milliseconds; without those options it runs until interrupted.
#[derive(Parser)]
#[command(
    name = "subscriber",
    after_help = "Example:\n  \
        cargo run --example subscriber -- /tmp/news --timeout-ms 5000 &\n  \
        cargo run --example publisher -- /tmp/news --count 3"
)]
struct Args {
    /// Network to join: a directory path, created if there is none
    path: PathBuf,
    /// Stop after N messages [default: no limit]
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop when no message came for MS milliseconds [default: wait forever]
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

fn main() -> ExitCode {
    if let Err(e) = subscribe(&Args::parse()) {
        eprintln!("subscriber: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn subscribe(args: &Args) -> Result<(), Box<dyn Error>> {
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let options = JoinOptions {
        description: format!("subscriber pid {}", std::process::id()),
        read: true,
        write: false,
        ..Default::default()
    };
    let mut port = Port::join_or_create(&args.path, &Config::default(), &options)?;
    port.set_membership_events(true);
    println!(
        "subscribed to {} (port {})",
        args.path.display(),
        port.index()
    );
    // A buffer of the network's MTU never truncates a frame.
    let mut buf = vec![0u8; port.mtu() as usize];
    let mut received = 0u64;
    while args.count.is_none_or(|n| received < n) {
        match port.recv_message(&mut buf, timeout) {
            Ok(Message::Frame(len)) => {
                received += 1;
                println!("{}", String::from_utf8_lossy(&buf[..len]));
            }
            Ok(Message::Membership(m)) => {
                println!("-- now {} reader(s), {} writer(s)", m.readers, m.writers);
            }
            Err(RecvError::TimedOut) => {
                println!("-- nothing for {:?}; stopping", timeout.unwrap());
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let status = port.status();
    let me = status.ports.iter().find(|p| p.index == port.index());
    let missed = me.map_or(0, |p| p.rx_dropped);
    println!("-- received {received} message(s), missed {missed}");
    Ok(())
}
