//! `ipn dump`, run as a separate process, its captures read by the real
//! tcpdump (which must be installed: scripts/deps.sh lists it).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{run, stderr, stdout, Bg, Net};
use nix::sys::signal::{kill, Signal};

/// How long a dump or tcpdump process may take to end.
const LONG: Duration = Duration::from_secs(20);

/// `ipn dump` exited with `code` and its summary line starts with `summary`.
fn assert_ended(out: &Output, code: i32, summary: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    assert!(stderr(out).starts_with(summary), "{}", stderr(out));
}

/// `tcpdump ARGS`; fails the test, saying what to do, if tcpdump is missing.
fn tcpdump() -> Command {
    match Command::new("tcpdump").arg("--version").output() {
        Ok(out) if out.status.success() => Command::new("tcpdump"),
        Ok(out) => panic!("`tcpdump --version` failed: {}", stderr(&out)),
        Err(e) => panic!(
            "these tests need tcpdump ({e}): install it (apt-get install tcpdump; \
             scripts/deps.sh installs everything the tests use)"
        ),
    }
}

/// Starts `ipn dump ARGS` in the background.
fn spawn_dump(args: &[&str]) -> Bg {
    let mut all = vec!["dump"];
    all.extend_from_slice(args);
    Bg::spawn(&all)
}

/// Starts `ipn dump PATH -w FILE --count COUNT --timeout 20 EXTRA` and
/// waits until it has joined the network as a reader.
fn capture_to(net: &Net, file: &Path, count: &str, extra: &[&str]) -> Bg {
    let mut args = vec![
        net.p(),
        "-w",
        file.to_str().unwrap(),
        "--count",
        count,
        "--timeout",
        "20",
    ];
    args.extend_from_slice(extra);
    let dump = spawn_dump(&args);
    net.wait_for_readers(1);
    dump
}

/// Fails the test unless `packets` are `sent`, byte for byte, in order.
#[track_caller]
fn assert_carries(packets: &[Dumped], sent: &[Vec<u8>]) {
    assert_eq!(packets.len(), sent.len(), "{packets:#?}");
    for (packet, sent) in packets.iter().zip(sent) {
        assert_eq!(&packet.bytes, sent, "{}", packet.line);
    }
}

/// An Ethernet frame: destination, source, ethertype, payload.
fn frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const BROADCAST: [u8; 6] = [0xff; 6];
const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
/// IEEE 802 local experimental ethertype: tcpdump does not decode it.
const EXPERIMENTAL: u16 = 0x88b5;

/// One packet as `tcpdump -n -e -xx` prints it: the summary line and the
/// captured bytes.
#[derive(Debug)]
struct Dumped {
    line: String,
    bytes: Vec<u8>,
}

/// Reads `file` with `tcpdump -r FILE -n -e -xx EXTRA`; panics unless tcpdump
/// succeeds.
fn tcpdump_read(file: &str, extra: &[&str]) -> (Vec<Dumped>, String) {
    let out = tcpdump()
        .args(["-r", file, "-n", "-e", "-xx"])
        .args(extra)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "tcpdump -r {file} failed: {err}");
    (parse_tcpdump(&stdout(&out)), err)
}

fn parse_tcpdump(text: &str) -> Vec<Dumped> {
    let mut packets: Vec<Dumped> = Vec::new();
    for line in text.lines() {
        if let Some(hex) = line.trim_start().strip_prefix("0x") {
            let (_, rest) = hex.split_once(':').expect("offset: bytes");
            let packet = packets.last_mut().expect("hex after a summary line");
            // "  ffff ffff ..." then, with -X, an ASCII column after two spaces.
            let groups = rest.trim_start().split("  ").next().unwrap();
            for group in groups.split_whitespace() {
                for i in (0..group.len()).step_by(2) {
                    packet
                        .bytes
                        .push(u8::from_str_radix(&group[i..i + 2], 16).unwrap());
                }
            }
        } else if !line.trim().is_empty() {
            packets.push(Dumped {
                line: line.to_string(),
                bytes: Vec::new(),
            });
        }
    }
    packets
}

#[test]
fn tcpdump_reads_the_capture_with_its_macs_ethertypes_and_bytes() {
    let net = Net::created("file", &[]);
    let pcap = net.file("pcap");
    let dump = capture_to(&net, &pcap, "3", &[]);
    let port = &net.ports()[0];
    assert_eq!(port["description"], "ipn dump");
    assert_eq!(port["writing"], false);
    let frames = vec![
        frame(BROADCAST, A, EXPERIMENTAL, b"ipn dump test frame one"),
        frame(B, A, EXPERIMENTAL, &[0x5a; 100]),
        frame(A, B, 0x0806, &[0u8; 28]),
    ];
    net.publish(&frames);
    let out = dump.finish(LONG);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "3 frames captured, 0 dropped by ipn (reader too slow, or undeliverable)\n"
    );
    assert!(net.ports().is_empty(), "dump left its port behind");

    let (packets, err) = tcpdump_read(pcap.to_str().unwrap(), &[]);
    assert!(err.contains("link-type EN10MB (Ethernet)"), "{err}");
    assert_carries(&packets, &frames);
    assert!(
        packets[0].line.contains(
            "02:00:00:00:00:0a > ff:ff:ff:ff:ff:ff, ethertype Unknown (0x88b5), length 37"
        ),
        "{packets:#?}"
    );
    assert!(
        packets[1].line.contains(
            "02:00:00:00:00:0a > 02:00:00:00:00:0b, ethertype Unknown (0x88b5), length 114"
        ),
        "{packets:#?}"
    );
    assert!(
        packets[2]
            .line
            .contains("02:00:00:00:00:0b > 02:00:00:00:00:0a, ethertype ARP (0x0806), length 42"),
        "{packets:#?}"
    );
}

#[test]
fn snaplen_keeps_the_first_bytes_and_records_the_original_length() {
    let net = Net::created("snaplen", &[]);
    let pcap = net.file("pcap");
    let dump = capture_to(&net, &pcap, "1", &["--snaplen", "20", "--nano"]);
    // An IPv4 header cut off after 6 of its 20 bytes.
    let mut ip = vec![
        0x45, 0, 0, 80, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ip.resize(80, 0);
    let sent = frame(B, A, 0x0800, &ip);
    net.publish(std::slice::from_ref(&sent));
    let out = dump.finish(LONG);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let (packets, err) = tcpdump_read(pcap.to_str().unwrap(), &[]);
    assert!(err.contains("snapshot length 20"), "{err}");
    assert_eq!(packets.len(), 1, "{packets:#?}");
    let line = &packets[0].line;
    assert!(
        line.contains("ethertype IPv4 (0x0800), length 94"),
        "{line}"
    );
    assert!(
        line.contains("[|ip]"),
        "tcpdump shows no truncation: {line}"
    );
    assert_eq!(packets[0].bytes, sent[..20]);

    // And in the file itself: nanosecond magic, caplen 20, original 94.
    let bytes = std::fs::read(&pcap).unwrap();
    let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0xa1b2_3c4d, "nanosecond pcap magic");
    assert_eq!(u32_at(16), 20, "global snaplen");
    assert_eq!(u32_at(20), 1, "LINKTYPE_ETHERNET");
    assert!(u32_at(28) < 1_000_000_000, "nanoseconds");
    assert_eq!((u32_at(32), u32_at(36)), (20, 94), "caplen, len");
    assert_eq!(bytes.len(), 24 + 16 + 20);
}

#[test]
fn sigint_leaves_a_complete_capture_and_no_port() {
    let net = Net::created("sigint", &[]);
    let pcap = net.file("pcap");
    let dump = spawn_dump(&[net.p(), "-w", pcap.to_str().unwrap()]);
    net.wait_for_readers(1);
    let frames: Vec<Vec<u8>> = (0..5u8)
        .map(|i| frame(BROADCAST, A, EXPERIMENTAL, &[i; 46]))
        .collect();
    net.publish(&frames);
    net.wait_for("the dump port receive 5 frames", |s| {
        s["ports"][0]["rx_frames"].as_u64() == Some(5)
    });
    kill(dump.pid(), Signal::SIGINT).unwrap();
    let out = dump.finish(LONG);
    assert_ended(&out, 130, "5 frames captured, 0 dropped");
    let status = net.status_json();
    assert!(status["ports"].as_array().unwrap().is_empty(), "{status:#}");
    assert_eq!(status["readers"], 0);

    let (packets, _) = tcpdump_read(pcap.to_str().unwrap(), &[]);
    assert_carries(&packets, &frames);
}

#[test]
fn write_dash_streams_each_frame_down_the_pipe_as_it_arrives() {
    let net = Net::created("pipe", &[]);
    let mut dump = spawn_dump(&[net.p(), "-w", "-"]);
    let mut stdout = dump.child().stdout.take().unwrap();
    // The global header comes at once, before any frame.
    let mut header = [0u8; 24];
    stdout.read_exact(&mut header).unwrap();
    let magic = u32::from_ne_bytes(header[..4].try_into().unwrap());
    assert_eq!(magic, 0xa1b2_c3d4, "microsecond pcap magic: {header:02x?}");
    assert_eq!(u16::from_ne_bytes([header[4], header[5]]), 2, "version 2.4");
    // Snapshot length: whole frames, the MTU plus an 802.1Q tag.
    assert_eq!(u32::from_ne_bytes(header[16..20].try_into().unwrap()), 1518);
    net.wait_for_readers(1);
    // Each frame is readable while dump keeps running.
    for i in 0..3u8 {
        let sent = frame(B, A, EXPERIMENTAL, &[i; 50]);
        net.publish(std::slice::from_ref(&sent));
        let mut record = vec![0u8; 16 + sent.len()];
        stdout.read_exact(&mut record).unwrap();
        let caplen = u32::from_ne_bytes(record[8..12].try_into().unwrap());
        let len = u32::from_ne_bytes(record[12..16].try_into().unwrap());
        assert_eq!((caplen, len), (64, 64));
        assert_eq!(record[16..], sent[..]);
    }
    kill(dump.pid(), Signal::SIGTERM).unwrap();
    let out = dump.finish(LONG);
    assert_ended(&out, 143, "3 frames captured");
    assert!(net.ports().is_empty());
}

#[test]
fn piped_into_tcpdump_shows_frames_live_and_ends_when_tcpdump_does() {
    let net = Net::created("live", &[]);
    let mut dump = spawn_dump(&[net.p()]); // no -w: standard output is a pipe
    let pipe = dump.child().stdout.take().unwrap();
    let tcpdump = tcpdump()
        .args(["-r", "-", "-n", "-e", "-xx", "-l", "-c", "2"])
        .stdin(pipe)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tcpdump = Bg::adopt(tcpdump);
    net.wait_for_readers(1);
    let frames = vec![
        frame(BROADCAST, A, EXPERIMENTAL, b"live one"),
        frame(B, A, EXPERIMENTAL, b"live two"),
    ];
    // tcpdump (line-buffered with -l) prints the first frame before the
    // second is even sent: dump flushed it down the pipe.
    net.publish(&frames[..1]);
    let mut printed = BufReader::new(tcpdump.child().stdout.take().unwrap());
    let mut text = String::new();
    while !text.contains("0x0010:") {
        let before = text.len();
        printed.read_line(&mut text).unwrap();
        assert!(text.len() > before, "tcpdump ended early: {text}");
    }
    net.publish(&frames[1..]);
    printed.read_to_string(&mut text).unwrap();
    let out = tcpdump.finish(LONG);
    assert!(out.status.success(), "tcpdump: {}", stderr(&out));
    let packets = parse_tcpdump(&text);
    assert_carries(&packets, &frames);
    // tcpdump -c 2 exited: dump notices its reader is gone and leaves.
    let out = dump.finish(LONG);
    assert_ended(&out, 0, "2 frames captured");
    assert!(net.ports().is_empty());
}

#[test]
fn a_capture_file_in_a_missing_directory_is_a_clear_error() {
    let net = Net::created("missingdir", &[]);
    let dir = net.file("missing");
    let file = dir.join("capture.pcap");
    let out = run(&["dump", net.p(), "-w", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("ipn: "), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(
        err.contains(&format!("directory {} does not exist", dir.display())),
        "{err}"
    );
    assert!(net.ports().is_empty(), "a port was left behind");
}

#[test]
fn a_symbolic_link_as_capture_file_is_refused_and_what_it_points_to_is_untouched() {
    let net = Net::created("symlink", &[]);
    let precious = net.file("precious");
    std::fs::write(&precious, b"not a capture: must survive").unwrap();
    let nowhere = net.file("nowhere");
    for (link, target) in [
        (net.file("link"), &precious),
        (net.file("dangling"), &nowhere),
    ] {
        std::os::unix::fs::symlink(target, &link).unwrap();
        let link_arg = link.to_str().unwrap();
        let out = run(&[
            "dump",
            net.p(),
            "-w",
            link_arg,
            "--count",
            "1",
            "--timeout",
            "5",
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("ipn: "), "{err}");
        assert!(err.contains(link_arg), "{err}");
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(err.contains("will not follow it"), "{err}");
        assert!(err.contains("give the real path"), "{err}");
        assert!(net.ports().is_empty(), "a port was left behind");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    }
    assert_eq!(
        std::fs::read(&precious).unwrap(),
        b"not a capture: must survive"
    );
    assert!(
        !nowhere.exists(),
        "dump created the file a dangling link names"
    );
}

#[test]
fn an_existing_capture_file_is_replaced_by_the_new_capture() {
    let net = Net::created("replace", &[]);
    let pcap = net.file("pcap");
    std::fs::write(&pcap, vec![0x55; 10_000]).unwrap();
    let dump = capture_to(&net, &pcap, "1", &[]);
    let sent = frame(BROADCAST, A, EXPERIMENTAL, b"into an old file");
    net.publish(std::slice::from_ref(&sent));
    assert_ended(&dump.finish(LONG), 0, "1 frames captured");
    let (packets, _) = tcpdump_read(pcap.to_str().unwrap(), &[]);
    assert_carries(&packets, std::slice::from_ref(&sent));
    let size = std::fs::metadata(&pcap).unwrap().len() as usize;
    assert_eq!(
        size,
        24 + 16 + sent.len(),
        "the old bytes were not all replaced"
    );
}

#[test]
fn a_fifo_as_capture_file_streams_to_its_reader() {
    let net = Net::created("fifo", &[]);
    let fifo = net.file("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The reader first: opening a FIFO to write waits for one.
    let tcpdump = tcpdump()
        .args(["-r", fifo.to_str().unwrap(), "-n", "-e", "-xx"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tcpdump = Bg::adopt(tcpdump);
    let dump = capture_to(&net, &fifo, "2", &[]);
    let frames = vec![
        frame(BROADCAST, A, EXPERIMENTAL, b"through a fifo"),
        frame(B, A, EXPERIMENTAL, &[7; 60]),
    ];
    net.publish(&frames);
    assert_ended(&dump.finish(LONG), 0, "2 frames captured");
    let out = tcpdump.finish(LONG);
    assert!(out.status.success(), "tcpdump: {}", stderr(&out));
    let packets = parse_tcpdump(&stdout(&out));
    assert_carries(&packets, &frames);
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn timeout_without_the_counted_frames_is_an_error_but_the_file_is_complete() {
    let net = Net::created("timeout", &[]);
    let pcap = net.file("pcap");
    let out = run(&[
        "dump",
        net.p(),
        "-w",
        pcap.to_str().unwrap(),
        "--count",
        "1",
        "--timeout",
        "0.3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("0 frames captured"), "{err}");
    assert!(err.contains("captured 0 of 1 frames"), "{err}");
    let (packets, _) = tcpdump_read(pcap.to_str().unwrap(), &[]);
    assert!(packets.is_empty());
}

#[test]
fn help_lists_dump_and_explains_its_options() {
    let out = run(&["--help"]);
    assert!(stdout(&out).contains("dump"));
    let out = run(&["dump", "--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for word in [
        "--write",
        "--snaplen",
        "--count",
        "--nano",
        "tcpdump -r -",
        "terminal",
    ] {
        assert!(help.contains(word), "{word:?} missing from dump --help");
    }
}

/// The (captured, original) lengths of the records of a pcap file.
fn record_lengths(bytes: &[u8]) -> Vec<(u32, u32)> {
    let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= bytes.len() {
        let (caplen, len) = (u32_at(at + 8), u32_at(at + 12));
        out.push((caplen, len));
        at += 16 + caplen as usize;
    }
    out
}

/// A port with offloads cannot make `ipn dump` see a frame over the MTU
/// (a NEEDS_CSUM header without GSO does not lift the MTU): the capture
/// holds every frame whole, its recorded original length its true length.
#[test]
fn a_capture_never_holds_a_frame_over_the_mtu_from_a_port_with_offloads() {
    use ipn::offload::{HdrLayout, VirtioNetHdr, F_NEEDS_CSUM};
    let net = Net::created("over-mtu", &[]);
    let pcap = net.file("pcap");
    let dump = capture_to(&net, &pcap, "2", &[]);
    let mut tap = ipn::Port::join(
        std::path::Path::new(net.p()),
        &ipn::JoinOptions {
            description: "tap with offloads".into(),
            offload: true,
            ..Default::default()
        },
    )
    .unwrap();
    let with_csum = |len: usize| {
        let hdr = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VirtioNetHdr::default()
        };
        let mut out = vec![0u8; 10];
        hdr.write(&mut out, HdrLayout::Basic).unwrap();
        out.extend(frame(B, A, EXPERIMENTAL, &vec![7u8; len - 14]));
        out
    };
    let sent: Vec<_> = [3000, 65_000, 1514, 60]
        .into_iter()
        .map(|len| (len, tap.send(&with_csum(len))))
        .collect();
    let out = dump.finish(LONG);
    assert_ended(&out, 0, "2 frames captured, 0 dropped");
    let bytes = std::fs::read(&pcap).unwrap();
    assert_eq!(
        record_lengths(&bytes),
        [(1514, 1514), (60, 60)],
        "(captured, original) lengths; sent: {sent:?}"
    );
    for (len, result) in sent {
        match result {
            Err(ipn::SendError::TooBig { .. }) if len > 1514 => {}
            Ok(()) if len <= 1514 => {}
            other => panic!("{len} bytes: {other:?}"),
        }
    }
}
