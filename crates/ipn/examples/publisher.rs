//! Publish/subscribe without a server, the "publish" half: join (or create)
//! an ipn network by path as a write-only port and send numbered messages.
//!
//! ```text
//! cargo run --example subscriber -- /tmp/news              # in other terminals
//! cargo run --example publisher -- /tmp/news --count 10 --interval-ms 500
//! ```
//!
//! The network is created if there is none: a lossy hub, where a slow
//! subscriber loses messages and never slows the publisher. With
//! `--lossless` a new network waits for its slowest subscriber instead.
//! Subscribers that join later get only what is sent after they joined.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ipn::{Config, JoinOptions, Port};

/// Send numbered messages to everyone on an ipn network.
///
/// Joins the network at PATH (creating it if needed) and sends N messages,
/// each TEXT followed by its number. Subscribers that join later get only
/// what is sent after they joined.
#[derive(Parser)]
#[command(
    name = "publisher",
    after_help = "Example:\n  \
        cargo run --example subscriber -- /tmp/news &\n  \
        cargo run --example publisher -- /tmp/news --count 5 --text tick"
)]
struct Args {
    /// Network to join: a directory path, created if there is none
    path: PathBuf,
    /// Number of messages to send
    #[arg(long, value_name = "N", default_value_t = 10)]
    count: u64,
    /// Pause between two messages, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 200)]
    interval_ms: u64,
    /// If the network is created, make it lossless: it waits for its
    /// slowest subscriber instead of letting it lose messages
    #[arg(long)]
    lossless: bool,
    /// Text of each message, followed by its number
    #[arg(long, default_value = "hello", allow_hyphen_values = true)]
    text: String,
}

fn main() -> ExitCode {
    if let Err(e) = publish(&Args::parse()) {
        eprintln!("publisher: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn publish(args: &Args) -> Result<(), Box<dyn Error>> {
    let config = Config {
        lossless: args.lossless,
        ..Config::default()
    };
    // A publisher only writes: it is never counted as a reader, and on a
    // lossless network nobody waits for it.
    let options = JoinOptions {
        description: format!("publisher pid {}", std::process::id()),
        read: false,
        write: true,
        ..Default::default()
    };
    let mut port = Port::join_or_create(&args.path, &config, &options)?;
    println!(
        "publishing on {} (port {}, {} subscriber(s) now, mtu {})",
        args.path.display(),
        port.index(),
        port.status().membership.readers,
        port.mtu()
    );
    for n in 0..args.count {
        let message = format!("{} {n}", args.text);
        // Blocks only on a lossless network whose slowest reader is full.
        port.send(message.as_bytes())?;
        println!("sent: {message}");
        if n + 1 < args.count {
            std::thread::sleep(Duration::from_millis(args.interval_ms));
        }
    }
    Ok(())
}
