//! `ipn-bench`: ipn against plain AF_UNIX datagram fan-out, in one run,
//! every sender and receiver a process of its own. `ipn bench` runs this
//! binary with the same arguments.
//!
//! Modules, in the order a run goes through them:
//!
//! - `suite`: which cases a run measures (throughput in three reader
//!   patterns, paced latency, receive cost against idle ports) and in
//!   which order, peers next to each other;
//! - `runner`: one case: the network (or socket directory), the worker
//!   processes, their reports;
//! - `procs`: the worker processes of a case, their stdout read line by
//!   line, killed when dropped;
//! - `worker`: what runs inside a worker (`ipn-bench worker ROLE ...`): one
//!   sender, one receiver, or the holder of the idle ports;
//! - `sweep`: the rate sweep (`--sweep`): ipn, its plugin, vde_switch and
//!   AF_UNIX from 100 frames/s to flat out, and `plot`, its SVG;
//! - `vdeplug`: libvdeplug, loaded at run time, for the sweep's peers;
//! - `pace`: the paced sender's clock (absolute deadlines, sleep then spin);
//! - `measure`: clocks, CPU time, percentiles;
//! - `report`: the tables and the JSON.

mod measure;
mod pace;
mod plot;
mod procs;
mod report;
mod runner;
mod suite;
mod sweep;
mod vdeplug;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  ipn-bench                              everything, ~2 minutes (also: ipn bench)
  ipn-bench --quick --json               0.2 s per case, machine-readable
  ipn-bench --filter 'poll reader'       only the poll-pattern cases
  ipn-bench --filter latency --rate 50000
  ipn-bench --readers poll,sleep         two of the three patterns
  ipn-bench --idle-sweep                 receive cost with 0..1024 idle ports joined
  ipn-bench --idle-ports 64 --filter '64 B 1->1'
  ipn-bench --sweep --plot sweep.svg     receiver CPU and latency from 100 frames/s to flat out,
                                         ipn against vde_switch and AF_UNIX (~2.5 minutes)
  ipn-bench --sweep 5000,20000 --sweep-receivers 1

Reader patterns (each throughput table is one pattern; the first is the headline):
  poll   poll() the port's fd for POLLIN, then exactly one receive
         (Port::try_recv_after_poll; AF_UNIX: one recv) per readiness:
         what QEMU's vde backend and vde_plug do
  sleep  a blocking receive (Port::recv; AF_UNIX: recv)
  busy   spin on a non-blocking receive (Port::try_recv;
         AF_UNIX: recv(MSG_DONTWAIT)): a CPU per reader

Every figure is measured against its AF_UNIX peer in the same run: read
the ratios, not the absolute numbers.";

#[derive(Parser, Debug)]
#[command(
    name = "ipn-bench",
    version,
    about = "Measure ipn against AF_UNIX datagram fan-out, one process per peer (also run as `ipn bench`)",
    long_about = "Measure ipn against plain AF_UNIX datagram fan-out (the sender sendto()s \
        every receiver), in one run, with every sender and receiver a process of its own.\n\n\
        Throughput: 64- and 1500-byte frames to 1 and 4 receivers, ipn lossy and lossless, \
        in three reader patterns (poll, sleep, busy; see below); frames/s received per \
        receiver, frames lost, and each receiver's CPU time (user + system, getrusage) per \
        delivered frame and as a share of the run.\n\n\
        Latency: a paced sender (--rate frames/s, absolute deadlines: it sleeps with \
        clock_nanosleep, 1 ns timer slack, until shortly before each deadline and spins \
        the last microseconds) to 4 poll-pattern receivers, and to 1 receiver of each \
        pattern; one-way latency p50, p99, p99.9 from each frame's deadline (a CLOCK_MONOTONIC \
        stamp in the frame) to its receive: a sender that falls behind, preempted or blocked \
        in a send, sends the frames it owes at once, each with its own deadline, so a \
        transport's stall counts for every frame it delays.\n\n\
        --idle-ports and --idle-sweep join write-only ports that never send, as `ipn pub` \
        waiting on its standard input does, all held by one helper process, to show what \
        a receive costs as ports join.",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    suite: suite::SuiteArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One process of a case: a sender, a receiver or the idle ports (ipn-bench starts these itself)
    Worker(worker::WorkerSpec),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Worker(args)) => worker::run(args),
        None => suite::run(&cli.suite),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipn-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
