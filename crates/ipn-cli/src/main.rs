//! `ipn`: create, inspect and use ipn networks from the shell.

mod bench;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "ipn", version, about = "Inter Process Networking: serverless shared-memory Ethernet networks joined by path")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure ipn against AF_UNIX fan-out (frames/s, latency)
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
    };
    if let Err(e) = result {
        eprintln!("ipn: {e:#}");
        std::process::exit(1);
    }
}
