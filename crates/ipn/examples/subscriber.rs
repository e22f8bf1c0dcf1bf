//! Subscribes to an ipn network and prints what arrives: the "subscribe"
//! half of publish/subscribe without a server (see `publisher.rs`).
//!
//! ```text
//! cargo run -p ipn --example subscriber -- /tmp/news --count 5
//! ```
//!
//! It also reports when publishers and subscribers come and go (membership
//! events), including ones that were killed, and at the end how many
//! messages it missed because it read too slowly (lossy networks).

use std::process::ExitCode;
use std::time::Duration;

use ipn::{Config, JoinOptions, Message, Port, RecvError};

const USAGE: &str = "\
usage: subscriber PATH [--count N] [--timeout-ms MS]

Joins (creating if needed) the ipn network at PATH as a read-only port and
prints every message until N messages arrived (default: no limit) or none
came for MS milliseconds (default: wait forever).";

struct Args {
    path: String,
    count: Option<u64>,
    timeout: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        path: String::new(),
        count: None,
        timeout: None,
    };
    let mut path = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--count" => {
                parsed.count = Some(
                    value("--count")?
                        .parse()
                        .map_err(|e| format!("--count: {e}"))?,
                )
            }
            "--timeout-ms" => {
                let ms = value("--timeout-ms")?
                    .parse()
                    .map_err(|e| format!("--timeout-ms: {e}"))?;
                parsed.timeout = Some(Duration::from_millis(ms));
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other if path.is_none() => path = Some(other.to_owned()),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    parsed.path = path.ok_or("missing PATH")?;
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("subscriber: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match subscribe(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("subscriber: {e}");
            ExitCode::FAILURE
        }
    }
}

fn subscribe(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let options = JoinOptions {
        description: format!("subscriber pid {}", std::process::id()),
        read: true,
        write: false,
    };
    let mut port = Port::join_or_create(&args.path, &Config::default(), &options)?;
    port.set_membership_events(true);
    println!("subscribed to {} (port {})", args.path, port.index());
    // A buffer of the network's MTU never truncates a frame.
    let mut buf = vec![0u8; port.mtu() as usize];
    let mut received = 0u64;
    while args.count.is_none_or(|n| received < n) {
        match port.recv_message(&mut buf, args.timeout) {
            Ok(Message::Frame(len)) => {
                received += 1;
                println!("{}", String::from_utf8_lossy(&buf[..len]));
            }
            Ok(Message::Membership(m)) => {
                println!("-- now {} reader(s), {} writer(s)", m.readers, m.writers);
            }
            Err(RecvError::TimedOut) => {
                println!("-- nothing for {:?}; stopping", args.timeout.unwrap());
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
