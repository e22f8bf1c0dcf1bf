//! The `ipn` binary, run as separate processes the way users and scripts
//! run it.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{ipn, ports, record, run, run_with_input, stderr, stdout, Bg, Net, LONG};
use nix::sys::signal::{kill, Signal};

/// Fails the test unless `out` is a failure with exit status 1 saying
/// every one of `words` on standard error; returns what it said there.
#[track_caller]
fn assert_fails_saying(out: &Output, words: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for word in words {
        assert!(err.contains(word), "{word:?} missing from {err:?}");
    }
    err
}

/// Fails the test unless each of `commands` (given `x\n` on standard
/// input) fails with exit status 1, an `ipn: ` message saying every one of
/// `words`, and no panic; returns their outputs.
#[track_caller]
fn assert_each_fails_saying(commands: &[Vec<&str>], words: &[&str]) -> Vec<Output> {
    let mut outputs = Vec::new();
    for args in commands {
        let out = run_with_input(args, b"x\n");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("ipn: "), "{args:?}: {err}");
        for word in words {
            assert!(err.contains(word), "{args:?}: {word:?} missing from {err}");
        }
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        outputs.push(out);
    }
    outputs
}

/// Starts `ipn sub PATH SUB_ARGS` (which must end by itself: `--count`),
/// waits until it reads, runs `ipn pub PUB_ARGS PATH` with `input`, which
/// must succeed, and returns what the sub did once it exited successfully.
#[track_caller]
fn through_sub(net: &Net, sub_args: &[&str], pub_args: &[&str], input: &[u8]) -> Output {
    let mut args = vec!["sub", net.p()];
    args.extend_from_slice(sub_args);
    let sub = Bg::spawn(&args);
    net.wait_for_readers(1);
    let mut args = vec!["pub"];
    args.extend_from_slice(pub_args);
    args.push(net.p());
    let out = run_with_input(&args, input);
    assert!(out.status.success(), "pub: {}", stderr(&out));
    let out = sub.finish(LONG);
    assert!(out.status.success(), "sub: {}", stderr(&out));
    out
}

/// Starts `ipn pub PATH` with its standard input a pipe the caller
/// holds open (and writes lines to, or not).
fn pub_with_open_input(net: &Net) -> (Bg, std::process::ChildStdin) {
    let mut child = ipn()
        .args(["pub", net.p()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (Bg::adopt(child), stdin)
}

#[test]
fn create_prints_one_line_and_status_shows_parameters_as_table_and_json() {
    let net = Net::new("create");
    let out = run(&[
        "create",
        net.p(),
        "--ports",
        "8",
        "--mtu",
        "9000",
        "--ring",
        "64",
        "--lossless",
        "--mode",
        "0750",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert_eq!(line.lines().count(), 1, "{line}");
    for word in ["lossless", "8 ports", "mtu 9000", "ring 64", "0750"] {
        assert!(line.contains(word), "{word:?} missing from {line:?}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&net.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o750);

    let sub = Bg::spawn(&["sub", net.p(), "--description", "the-listener"]);
    net.wait_for_readers(1);

    let table = run(&["status", net.p()]);
    assert!(table.status.success(), "{}", stderr(&table));
    let table = stdout(&table);
    assert!(table.contains("lossless"), "{table}");
    assert!(table.contains("mtu 9000"), "{table}");
    assert!(table.contains("PORT"), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains("the-listener"))
        .unwrap_or_else(|| panic!("no row for the port: {table}"));
    assert!(row.contains("active"), "{row}");
    assert!(row.contains("r-"), "{row}");
    assert!(row.contains(&sub.pid().to_string()), "{row}");

    let json = net.status_json();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["protocol"], "hub");
    assert_eq!(json["lossless"], true);
    assert_eq!(json["mtu"], 9000);
    assert_eq!(json["max_ports"], 8);
    assert_eq!(json["ring_slots"], 64);
    assert_eq!(json["readers"], 1);
    assert_eq!(json["writers"], 0);
    assert_eq!(json["path"], net.p());
    let port = &ports(&json)[0];
    assert_eq!(port["pid"], sub.pid().as_raw());
    assert_eq!(port["state"], "active");
    assert_eq!(port["reading"], true);
    assert_eq!(port["writing"], false);
    assert_eq!(port["description"], "the-listener");
    for counter in [
        "tx_frames",
        "tx_bytes",
        "rx_frames",
        "rx_bytes",
        "rx_dropped",
        "tx_dropped",
    ] {
        assert_eq!(port[counter], 0, "{counter}");
    }
    assert_eq!(port["vlan"], serde_json::json!({"mode": "transparent"}));
    assert_eq!(port["addresses"], serde_json::json!([]), "a hub has none");
    assert!(row.contains("transparent"), "{row}");
}

#[test]
fn create_on_an_existing_network_fails_and_says_so() {
    let net = Net::created("exists", &[]);
    let err = assert_fails_saying(&run(&["create", net.p()]), &["already exists"]);
    assert!(err.starts_with("ipn: "), "{err}");
}

#[test]
fn create_rejects_an_unknown_group_and_a_bad_mode() {
    let net = Net::new("badcreate");
    let out = run(&["create", net.p(), "--group", "no-such-group-ipn-test"]);
    assert_fails_saying(&out, &["unknown group"]);
    let out = run(&["create", net.p(), "--mode", "0999"]);
    assert!(!out.status.success());
    let out = run(&["create", net.p(), "--mode", "0070"]);
    assert_fails_saying(&out, &["lock the owner out"]);
    assert!(!net.path.exists());
}

#[test]
fn rm_refuses_while_a_port_is_live_and_force_removes_anyway() {
    let net = Net::created("rm", &[]);
    let sub = Bg::spawn(&["sub", net.p()]);
    net.wait_for_readers(1);
    assert_fails_saying(&run(&["rm", net.p()]), &["still joined", "--force"]);
    assert!(net.path.join("shm").exists());

    let out = run(&["rm", "--force", net.p()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!net.path.exists());
    drop(sub);
}

#[test]
fn rm_of_an_idle_network_removes_it() {
    let net = Net::created("rmidle", &[]);
    let out = run(&["rm", net.p()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!net.path.exists());
}

#[test]
fn three_subscribers_each_receive_every_line_from_one_publisher() {
    let net = Net::created("fanout", &["--lossless"]);
    let subs: Vec<Bg> = (0..3)
        .map(|_| Bg::spawn(&["sub", net.p(), "--count", "100", "--timeout", "20"]))
        .collect();
    net.wait_for_readers(3);
    let input: String = (1..=100).map(|i| format!("line {i}\n")).collect();
    let out = run_with_input(&["pub", net.p()], input.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    for sub in subs {
        let out = sub.finish(LONG);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), input);
    }
    assert!(ports(&net.status_json()).is_empty());
}

#[test]
fn pub_skips_empty_lines_and_sends_a_last_line_without_newline() {
    let net = Net::created("lines", &["--lossless"]);
    let out = through_sub(
        &net,
        &["--count", "2", "--timeout", "20"],
        &[],
        b"first\n\n\nlast",
    );
    assert_eq!(stdout(&out), "first\nlast\n");
}

#[test]
fn sub_busy_poll_receives_and_a_busy_poll_over_100_ms_is_refused() {
    let net = Net::created("busypoll", &["--lossless"]);
    let out = through_sub(
        &net,
        &["--busy-poll", "200", "--count", "2", "--timeout", "20"],
        &[],
        b"one\ntwo\n",
    );
    assert_eq!(stdout(&out), "one\ntwo\n");
    let out = run(&["sub", net.p(), "--busy-poll", "100001", "--count", "1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--busy-poll") && stderr(&out).contains("0 (off) to 100000"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sub_hex_prints_one_line_of_hex_bytes_per_frame() {
    let net = Net::created("hex", &[]);
    let out = through_sub(
        &net,
        &["--hex", "--count", "2", "--timeout", "20"],
        &[],
        b"AB\n\xff\x00z\n",
    );
    assert_eq!(stdout(&out), "41 42\nff 00 7a\n");
}

#[test]
fn sub_text_escapes_invalid_utf8_byte_by_byte() {
    let net = Net::created("lossy-utf8", &[]);
    let out = through_sub(
        &net,
        &["--count", "1", "--timeout", "20"],
        &[],
        b"a\xffb\xc3\n",
    );
    assert_eq!(stdout(&out), "a\\xffb\\xc3\n");
}

#[test]
fn sub_text_shows_each_frame_as_one_escaped_line_that_cannot_pass_for_an_event() {
    let net = Net::created("escape", &[]);
    let sub = Bg::spawn(&[
        "sub",
        net.p(),
        "--events",
        "--count",
        "3",
        "--timeout",
        "20",
    ]);
    net.wait_for_readers(1);
    // Colours, a cursor move, a bell and a newline followed by a forged
    // event; a frame that is an event line; printable text kept as is.
    let forged = b"\x1b[31mred\x1b[0m\x1b[2A\x07\r\n# readers=9 writers=9".to_vec();
    let bare = b"# readers=8 writers=8".to_vec();
    let kept = "tab\there, back\\slash, DEL\x7f, caf\u{e9}, \u{202e}bidi"
        .as_bytes()
        .to_vec();
    let mut records = Vec::new();
    for frame in [&forged, &bare, &kept] {
        records.extend(record(frame));
    }
    let out = run_with_input(&["pub", "--raw", net.p()], &records);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sub.finish(LONG);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !out.stdout.contains(&0x1b),
        "an escape reached the output: {text:?}"
    );
    assert!(
        !out.stdout.contains(&b'\r'),
        "a CR reached the output: {text:?}"
    );
    let frames: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        frames,
        [
            r"\x1b[31mred\x1b[0m\x1b[2A\x07\r\n# readers=9 writers=9",
            r"\# readers=8 writers=8",
            r"tab\there, back\\slash, DEL\x7f, café, \u{202e}bidi",
        ],
        "{text}"
    );
    // Every line starting with # is a real event: this sub alone reads,
    // pub alone writes.
    for event in text.lines().filter(|l| l.starts_with('#')) {
        assert!(
            ["# readers=1 writers=0", "# readers=1 writers=1"].contains(&event),
            "{event:?} in {text}"
        );
    }
}

#[test]
fn pub_raw_and_sub_raw_carry_vde_stream_records_unchanged() {
    let net = Net::created("raw", &["--mtu", "1514"]);
    let frames: [Vec<u8>; 3] = [
        b"\n\nbinary\0with newlines\n".to_vec(),
        vec![0xab; 1514],
        (0..=255u8).collect(),
    ];
    let mut input = Vec::new();
    for frame in &frames {
        input.extend(record(frame));
        input.extend([0, 0]); // an empty record: skipped, as libvdestream does
    }
    let out = through_sub(
        &net,
        &["--raw", "--count", "3", "--timeout", "20"],
        &["--raw"],
        &input,
    );
    let expected: Vec<u8> = frames.iter().flat_map(|f| record(f)).collect();
    assert_eq!(out.stdout, expected);
}

#[test]
fn pub_raw_reports_a_truncated_record() {
    let net = Net::created("rawtrunc", &[]);
    let mut input = record(b"whole");
    input.extend([0, 10, 1, 2, 3]);
    let out = run_with_input(&["pub", "--raw", net.p()], &input);
    assert_fails_saying(&out, &["record 2", "3 of its 10 bytes"]);
}

#[test]
fn oversize_line_is_an_error_naming_the_line_and_both_sizes() {
    let net = Net::created("oversize", &["--mtu", "100"]);
    let input = format!("short\n{}\nnever sent\n", "x".repeat(150));
    let out = run_with_input(&["pub", net.p()], input.as_bytes());
    let err = assert_fails_saying(&out, &["line 2", "150 bytes", "MTU of 100 bytes"]);
    assert!(err.starts_with("ipn: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The publisher left: no port remains.
    assert!(ports(&net.status_json()).is_empty());
}

#[test]
fn oversize_raw_record_is_an_error_naming_the_record() {
    let net = Net::created("oversize-raw", &["--mtu", "64"]);
    let mut input = record(b"ok");
    input.extend(record(&[1; 65]));
    let out = run_with_input(&["pub", "--raw", net.p()], &input);
    assert_fails_saying(&out, &["record 2: 65 bytes", "MTU of 64 bytes"]);
}

#[test]
fn missing_network_is_a_clear_error_with_exit_status_1() {
    let net = Net::new("missing");
    let commands = [
        vec!["status", net.p()],
        vec!["status", net.p(), "--json"],
        vec!["sub", net.p()],
        vec!["pub", net.p()],
        vec!["rm", net.p()],
    ];
    let outputs = assert_each_fails_saying(&commands, &[net.p(), "no such network"]);
    for (args, out) in commands.iter().zip(outputs) {
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn garbage_shm_file_is_a_clear_error_not_a_panic() {
    let net = Net::new("garbage");
    std::fs::create_dir(&net.path).unwrap();
    let garbage: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(net.path.join("shm"), garbage).unwrap();
    assert_each_fails_saying(
        &[
            vec!["status", net.p()],
            vec!["sub", net.p()],
            vec!["pub", net.p()],
            vec!["rm", net.p()],
        ],
        &["not a usable ipn network"],
    );
    let out = run(&["rm", "--force", net.p()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!net.path.exists());
}

#[test]
fn sigint_makes_sub_leave_with_status_130_and_its_port_disappears() {
    let net = Net::created("sigint", &[]);
    let sub = Bg::spawn(&["sub", net.p()]);
    net.wait_for_readers(1);
    let index = ports(&net.status_json())[0]["port"].as_u64().unwrap();
    assert!(net.path.join(format!("bell.{index}")).exists());
    kill(sub.pid(), Signal::SIGINT).unwrap();
    let out = sub.finish(LONG);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let status = net.status_json();
    assert!(ports(&status).is_empty(), "{status:#}");
    assert_eq!(status["readers"], 0);
    assert!(!net.path.join(format!("bell.{index}")).exists());
}

/// `ipn pub` sends lines that arrive together as one batch: a line
/// followed by no more input (standard input open and silent) must still
/// ring a sleeping reader at once, not wait for the next line or the end.
/// The reader is a port of the library's whose fd becomes readable only
/// when a doorbell rings (a frame that is written but never announced
/// leaves it quiet, and the 10 s wait fails). Three rounds: a line,
/// silence, the fd is readable, the line is read.
#[test]
fn pub_rings_readers_for_a_line_while_its_input_stays_open_and_silent() {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Write;
    use std::os::fd::AsFd;
    let net = Net::created("pub-silent", &[]);
    let mut reader = ipn::Port::join(&net.path, &ipn::JoinOptions::described("reader")).unwrap();
    let (pub_, mut stdin) = pub_with_open_input(&net);
    net.wait_for("pub join", |s| s["writers"] == 2);
    let readable = |port: &ipn::Port, ms: u16| {
        let mut fds = [PollFd::new(port.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(ms)).unwrap() == 1
    };
    let mut buf = [0u8; 1514];
    // The pub's join may have rung us: settle until the fd is quiet (as
    // QEMU would: a receive after each readiness).
    while readable(&reader, 0) {
        let got = reader.try_recv_after_poll(&mut buf);
        assert!(matches!(got, Err(ipn::RecvError::WouldBlock)), "{got:?}");
    }
    for n in 1..=3u32 {
        writeln!(stdin, "line {n}").unwrap();
        stdin.flush().unwrap();
        assert!(
            readable(&reader, 10_000),
            "line {n}: the reader was never rung"
        );
        let len = reader.try_recv_after_poll(&mut buf).unwrap();
        assert_eq!(&buf[..len], format!("line {n}").as_bytes());
        // Quiet again after at most one receive that finds nothing.
        let mut spurious = 0;
        while readable(&reader, 0) {
            let got = reader.try_recv_after_poll(&mut buf);
            assert!(matches!(got, Err(ipn::RecvError::WouldBlock)), "{got:?}");
            spurious += 1;
            assert!(spurious <= 1, "line {n}: readable with nothing waiting");
        }
    }
    drop(stdin);
    let out = pub_.finish(LONG);
    assert!(out.status.success(), "pub: {}", stderr(&out));
}

#[test]
fn sigterm_makes_a_waiting_pub_leave_with_status_143() {
    let net = Net::created("sigterm", &[]);
    // Standard input stays open and empty: pub waits for lines.
    let (pub_, stdin) = pub_with_open_input(&net);
    net.wait_for("pub join", |s| s["writers"] == 1);
    kill(pub_.pid(), Signal::SIGTERM).unwrap();
    let out = pub_.finish(LONG);
    drop(stdin);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(ports(&net.status_json()).is_empty());
}

#[test]
fn status_shows_a_killed_sub_as_dead_or_gone() {
    let net = Net::created("kill9", &[]);
    let sub = Bg::spawn(&["sub", net.p()]);
    net.wait_for_readers(1);
    let pid = sub.pid();
    kill(pid, Signal::SIGKILL).unwrap();
    let _ = sub.finish(LONG);
    let status = net.status_json();
    assert_eq!(status["readers"], 0, "{status:#}");
    for port in ports(&status) {
        assert_eq!(port["state"], "dead", "{status:#}");
        assert_eq!(port["reading"], false);
    }
    let table = stdout(&run(&["status", net.p()]));
    if let Some(row) = table.lines().find(|l| l.contains(&pid.to_string())) {
        assert!(row.contains("dead"), "{table}");
    }
    // And the network keeps working for the others.
    let out = through_sub(
        &net,
        &["--count", "1", "--timeout", "20"],
        &[],
        b"still works\n",
    );
    assert_eq!(stdout(&out), "still works\n");
}

#[test]
fn sub_exits_quietly_when_the_reader_of_its_output_goes_away() {
    let net = Net::created("epipe", &[]);
    let mut sub = Bg::spawn(&["sub", net.p()]);
    net.wait_for_readers(1);
    run_with_input(&["pub", net.p()], b"one\n");
    let mut first = [0u8; 4];
    let out = sub.child().stdout.as_mut().unwrap();
    out.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"one\n");
    drop(sub.child().stdout.take()); // like `| head -1` exiting
    let out = sub.finish(LONG);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert!(ports(&net.status_json()).is_empty());
}

#[test]
fn sub_events_prints_reader_and_writer_counts_as_they_change() {
    let net = Net::created("events", &[]);
    let sub = Bg::spawn(&[
        "sub",
        net.p(),
        "--events",
        "--count",
        "1",
        "--timeout",
        "20",
    ]);
    net.wait_for_readers(1);
    let other = Bg::spawn(&["sub", net.p()]);
    net.wait_for_readers(2);
    run_with_input(&["pub", net.p()], b"hi\n");
    let out = stdout(&sub.finish(LONG));
    drop(other);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"# readers=1 writers=0"), "{out}");
    assert!(lines.contains(&"# readers=2 writers=0"), "{out}");
    assert!(lines.contains(&"hi"), "{out}");
}

#[test]
fn sub_timeout_without_the_counted_frames_is_an_error() {
    let net = Net::created("timeout", &[]);
    let started = Instant::now();
    let out = run(&["sub", net.p(), "--count", "1", "--timeout", "0.3"]);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_fails_saying(&out, &["received 0 of 1"]);
    // Without --count, a timeout is simply the end.
    let out = run(&["sub", net.p(), "--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ports(&net.status_json()).is_empty());
}

#[test]
fn pub_create_makes_the_network_if_missing() {
    let net = Net::new("pubcreate");
    let out = run_with_input(&["pub", "--create", net.p()], b"into the void\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let status = net.status_json();
    assert_eq!(status["mtu"], 1514);
    assert!(Path::new(&net.path).join("shm").exists());
}

#[test]
fn help_explains_every_command_with_examples() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for word in ["create", "status", "rm", "pub", "sub", "bench", "Examples:"] {
        assert!(help.contains(word), "{word:?} missing from --help");
    }
    let out = run(&["status", "--help"]);
    let help = stdout(&out);
    for field in ["format_version", "rx_dropped", "readers", "description"] {
        assert!(help.contains(field), "{field:?} missing from status --help");
    }
    let help = stdout(&run(&["sub", "--help"]));
    for escape in [
        r"\n",
        r"\\",
        r"\xHH",
        r"\x1b",
        r"\#",
        "one frame is always one line",
    ] {
        assert!(help.contains(escape), "{escape:?} missing from sub --help");
    }
}

#[test]
fn test_guards_remove_the_network_its_files_and_processes_even_when_a_test_panics() {
    let mut paths = None;
    let mut pid = None;
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let net = Net::created("guard", &[]);
        let file = net.file("pcap");
        std::fs::write(&file, b"capture").unwrap();
        let sub = Bg::spawn(&["sub", net.p()]);
        net.wait_for_readers(1);
        paths = Some((net.path.clone(), file));
        pid = Some(sub.pid());
        panic!("a failing test");
    }));
    assert!(panicked.is_err());
    let (net, file) = paths.expect("the test body ran");
    assert!(!net.exists(), "{} outlived its guard", net.display());
    assert!(!file.exists(), "{} outlived its guard", file.display());
    // Reaped, not only killed: the pid is gone.
    let gone = kill(pid.unwrap(), None);
    assert_eq!(
        gone,
        Err(nix::errno::Errno::ESRCH),
        "the sub outlived its guard"
    );
}

/// A member's description reaches whoever runs `ipn status` (often
/// root): neither the table, nor the JSON, nor the Prometheus text passes
/// a character that drives or fools a terminal raw (right-to-left
/// override, line separator, zero-width space, CSI as one C1 character,
/// DEL, ESC); the JSON still says exactly what the member wrote.
#[test]
fn status_never_shows_what_a_member_wrote_raw() {
    let net = Net::created("hostile-description", &[]);
    let hostile = "evil\u{202e}txt.exe\u{2028}x\u{200b}y\u{9b}31m\u{7f}\x1b[2J";
    let _sub = Bg::spawn(&["sub", net.p(), "-d", hostile]);
    net.wait_for_readers(1);
    let raw = [
        '\u{202e}', '\u{2028}', '\u{200b}', '\u{9b}', '\u{7f}', '\x1b',
    ];
    for args in [&[][..], &["--json"], &["--prometheus"]] {
        let mut all = vec!["status", net.p()];
        all.extend_from_slice(args);
        let out = run(&all);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        for c in raw {
            assert!(
                !text.contains(c),
                "status {args:?} shows {c:?} raw:\n{text}"
            );
        }
    }
    let table = stdout(&run(&["status", net.p()]));
    assert!(
        table.contains(r"evil\u{202e}txt.exe\u{2028}x\u{200b}y\u{9b}31m\x7f\x1b[2J"),
        "{table}"
    );
    let json = net.status_json();
    assert!(
        ports(&json).iter().any(|p| p["description"] == hostile),
        "the JSON, read back, says what the member wrote: {json}"
    );
}
