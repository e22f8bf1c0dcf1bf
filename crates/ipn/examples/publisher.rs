//! Publishes numbered messages on an ipn network: the "publish" half of
//! publish/subscribe without a server.
//!
//! ```text
//! cargo run -p ipn --example publisher -- /tmp/news --count 10 --interval-ms 500
//! cargo run -p ipn --example subscriber -- /tmp/news      # in other terminals
//! ```
//!
//! The network is created if there is none (a lossy hub: a slow subscriber
//! loses messages, and never slows the publisher). With `--lossless` a new
//! network waits for its slowest subscriber instead.

use std::process::ExitCode;
use std::time::Duration;

use ipn::{Config, JoinOptions, Port};

const USAGE: &str = "\
usage: publisher PATH [--count N] [--interval-ms MS] [--lossless] [--text TEXT]

Joins (creating if needed) the ipn network at PATH and sends N messages
(default 10), one every MS milliseconds (default 200), each the text
(default \"hello\") followed by its number. Subscribers that join later get
only what is sent after they joined.";

struct Args {
    path: String,
    count: u64,
    interval: Duration,
    lossless: bool,
    text: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut parsed = Args {
        path: String::new(),
        count: 10,
        interval: Duration::from_millis(200),
        lossless: false,
        text: "hello".into(),
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--count" => {
                parsed.count = value("--count")?
                    .parse()
                    .map_err(|e| format!("--count: {e}"))?
            }
            "--interval-ms" => {
                let ms = value("--interval-ms")?
                    .parse()
                    .map_err(|e| format!("--interval-ms: {e}"))?;
                parsed.interval = Duration::from_millis(ms);
            }
            "--text" => parsed.text = value("--text")?,
            "--lossless" => parsed.lossless = true,
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
            eprintln!("publisher: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match publish(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("publisher: {e}");
            ExitCode::FAILURE
        }
    }
}

fn publish(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
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
    };
    let mut port = Port::join_or_create(&args.path, &config, &options)?;
    let status = port.status();
    println!(
        "publishing on {} (port {}, {} subscriber(s) now, mtu {})",
        args.path,
        port.index(),
        status.membership.readers,
        port.mtu()
    );
    for n in 0..args.count {
        let message = format!("{} {n}", args.text);
        // Blocks only on a lossless network whose slowest reader is full.
        port.send(message.as_bytes())?;
        println!("sent: {message}");
        if n + 1 < args.count {
            std::thread::sleep(args.interval);
        }
    }
    Ok(())
}
