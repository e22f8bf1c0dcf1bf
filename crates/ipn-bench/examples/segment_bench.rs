//! What cutting frames with offloads costs: the work a port without
//! offloads, a TAP, a packet socket or a vhost-user guest without them
//! does for each frame a sender with offloads wrote ([`ipn::offload`]).
//!
//! ```text
//! cargo run --release -p ipn-bench --example segment_bench
//! cargo run --release -p ipn-bench --example segment_bench -- 21   # rounds
//! ```
//!
//! Four cases, each in turn in every round, with the figure the median
//! over the rounds: a 64 KiB TCPv4 frame cut into 1448-byte segments (the
//! kernel's TSO frame), the same over IPv6, a 64 KiB UDP frame cut into
//! 1472-byte datagrams (USO), and a 1514-byte frame whose checksum is left
//! to complete. Each frame goes through `offload::segment` into one
//! reused buffer, as the receivers do. Time is the thread's CPU time, so
//! other processes' load does not count; printed per input frame, per
//! wire frame made, and as bytes of wire frames per second of CPU.

use std::time::Duration;

use ipn::offload::{
    segment, VirtioNetHdr, F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4,
};

/// A frame and its header, for one case.
struct Case {
    name: &'static str,
    hdr: VirtioNetHdr,
    frame: Vec<u8>,
}

fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn payload(f: &mut Vec<u8>, len: usize) {
    f.extend((0..len).map(|i| (i * 7 + 3) as u8));
}

fn tcp_header(f: &mut Vec<u8>) {
    f.extend_from_slice(&[0x9c, 0x40, 0x00, 0x50, 0, 0, 1, 0, 0, 0, 2, 0, 0x50, 0x18]);
    f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
}

fn ipv4(f: &mut Vec<u8>, l4_len: usize, proto: u8) {
    let total = (20 + l4_len) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[
        0x1c, 0x46, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
}

fn ipv6(f: &mut Vec<u8>, l4_len: usize, proto: u8) {
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(l4_len as u16).to_be_bytes());
    f.extend_from_slice(&[proto, 64]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
}

fn cases() -> Vec<Case> {
    let gso = |gso_type, gso_size, csum_start, csum_offset| VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type,
        hdr_len: 0,
        gso_size,
        csum_start,
        csum_offset,
        num_buffers: 0,
    };
    let mut tcp4 = ethernet(0x0800);
    let len = 65535 - 20 - 20;
    ipv4(&mut tcp4, 20 + len, 6);
    tcp_header(&mut tcp4);
    payload(&mut tcp4, len);
    let mut tcp6 = ethernet(0x86dd);
    let len = 65535 - 20;
    ipv6(&mut tcp6, 20 + len, 6);
    tcp_header(&mut tcp6);
    payload(&mut tcp6, len);
    let mut udp4 = ethernet(0x0800);
    let len = 65535 - 20 - 8;
    ipv4(&mut udp4, 8 + len, 17);
    udp4.extend_from_slice(&[0x30, 0x39, 0, 0x35, 0, 0, 0, 0]);
    payload(&mut udp4, len);
    let mut csum = ethernet(0x0800);
    let len = 1500 - 20 - 20;
    ipv4(&mut csum, 20 + len, 6);
    tcp_header(&mut csum);
    payload(&mut csum, len);
    vec![
        Case {
            name: "TCPv4 64 KiB / 1448",
            hdr: gso(GSO_TCPV4, 1448, 34, 16),
            frame: tcp4,
        },
        Case {
            name: "TCPv6 64 KiB / 1428",
            hdr: gso(GSO_TCPV6, 1428, 54, 16),
            frame: tcp6,
        },
        Case {
            name: "UDPv4 64 KiB / 1472",
            hdr: gso(GSO_UDP_L4, 1472, 34, 6),
            frame: udp4,
        },
        Case {
            name: "1514 B, NEEDS_CSUM",
            hdr: gso(GSO_NONE, 0, 34, 16),
            frame: csum,
        },
    ]
}

fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("CLOCK_THREAD_CPUTIME_ID");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// CPU time per input frame over `frames` frames; wire frames and bytes
/// made per input frame.
fn run(case: &Case, buf: &mut Vec<u8>, frames: usize) -> (Duration, usize, usize) {
    let (mut made, mut bytes) = (0, 0);
    let start = thread_cpu();
    for _ in 0..frames {
        segment(&case.hdr, &case.frame, 1514, buf, |s| {
            made += 1;
            bytes += s.len();
            std::hint::black_box(s);
        })
        .expect("a well-formed frame");
    }
    let spent = thread_cpu() - start;
    (spent / frames as u32, made / frames, bytes / frames)
}

fn main() {
    let rounds: usize = match std::env::args().nth(1) {
        None => 11,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("segment_bench: rounds must be a number, not {arg:?}");
            std::process::exit(2)
        }),
    };
    let cases = cases();
    let mut buf = Vec::new();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut shape = vec![(0, 0); cases.len()];
    for _ in 0..rounds {
        for (i, case) in cases.iter().enumerate() {
            // About 50 ms a case and round.
            let frames = if case.frame.len() > 2000 {
                2000
            } else {
                100_000
            };
            let (per_frame, made, bytes) = run(case, &mut buf, frames);
            times[i].push(per_frame);
            shape[i] = (made, bytes);
        }
    }
    println!(
        "{:<22} {:>10} {:>9} {:>12} {:>10}",
        "case", "ns/frame", "segments", "ns/segment", "Gbit/s"
    );
    for ((case, times), (made, bytes)) in cases.iter().zip(&mut times).zip(shape) {
        times.sort();
        let median = times[times.len() / 2].as_nanos() as f64;
        println!(
            "{:<22} {:>10.0} {:>9} {:>12.1} {:>10.2}",
            case.name,
            median,
            made,
            median / made as f64,
            bytes as f64 * 8.0 / median,
        );
    }
}
