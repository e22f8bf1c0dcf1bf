//! System tests: the plugin loaded by the real libvdeplug programs —
//! `vde_plug` (vdeplug4), `vde_switch` (vde2), a C client built with `cc
//! -lvdeplug`, and QEMU — with an ipn [`Port`] on the other side where
//! the test needs to see the frames.
//!
//! Nothing is skipped (see `common`): the plugin is found by libvdeplug
//! through `LD_LIBRARY_PATH`, or `VDEPLUGIN_PATH` in one test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{command, readers, scratch, url, wait_for, Guard, VdeSwitch};
use ipn::{Config, JoinOptions, Network, Port};
use ipn_test_support::require_tools;

/// An Ethernet frame: broadcast, source MAC 02:00:00:00:00:`src`,
/// ethertype 0x88b5, then `len - 14` bytes derived from `seq`.
fn frame(src: u8, seq: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, src, 0x88, 0xb5]);
    f.extend((14..len).map(|i| (i as u8).wrapping_add(seq)));
    f
}

// ----- vde_plug stream ends -------------------------------------------

/// A `vde_plug URL...` process: frames written to `stdin` in vdeplug's
/// stream format (2-byte big-endian length, then the frame) enter the
/// network; frames from the network come out on its stdout, collected by
/// a thread into `frames`.
struct StreamPlug {
    guard: Guard,
    stdin: ChildStdin,
    frames: Receiver<Vec<u8>>,
}

impl StreamPlug {
    fn spawn(urls: &[&str]) -> StreamPlug {
        require_tools(&["vde_plug"]);
        let mut child = command("vde_plug")
            .args(urls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn vde_plug");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, frames) = channel();
        std::thread::spawn(move || loop {
            let mut header = [0u8; 2];
            if stdout.read_exact(&mut header).is_err() {
                return;
            }
            let mut f = vec![0u8; u16::from_be_bytes(header) as usize];
            if stdout.read_exact(&mut f).is_err() || tx.send(f).is_err() {
                return;
            }
        });
        StreamPlug {
            guard: Guard(child),
            stdin,
            frames,
        }
    }

    fn write(&mut self, frame: &[u8]) {
        let mut msg = (frame.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(frame);
        self.stdin.write_all(&msg).expect("write to vde_plug");
        self.stdin.flush().unwrap();
    }

    /// The next frame from `src` (others, e.g. a switch's own, skipped).
    fn expect_from(&self, src: u8, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.frames.recv_timeout(left) {
                Ok(f) if f.len() >= 12 && f[6..12] == [0x02, 0, 0, 0, 0, src] => return f,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no frame from source {src:#x} within {timeout:?}")
                }
                Err(RecvTimeoutError::Disconnected) => panic!("vde_plug exited"),
            }
        }
    }
}

/// The next frame on `port` from `src`, within `timeout`.
fn port_expect_from(port: &mut Port, src: u8, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match port.recv_timeout(&mut buf, left) {
            Ok(n) if n >= 12 && buf[6..12] == [0x02, 0, 0, 0, 0, src] => return buf[..n].to_vec(),
            Ok(_) => {}
            Err(e) => panic!("no frame from source {src:#x} within {timeout:?}: {e}"),
        }
    }
}

// ----- tests ----------------------------------------------------------

#[test]
fn vde_plug_to_vde_plug_frames_arrive_intact() {
    let net = scratch("plugs");
    let u = url(&net);
    let mut a = StreamPlug::spawn(&[&u]);
    wait_for("first vde_plug to join", Duration::from_secs(5), || {
        readers(&net) == 1
    });
    let mut b = StreamPlug::spawn(&[&u]);
    wait_for("second vde_plug to join", Duration::from_secs(5), || {
        readers(&net) == 2
    });

    for seq in 0..5 {
        let f = frame(0xa, seq, 60 + seq as usize * 300);
        a.write(&f);
        assert_eq!(b.expect_from(0xa, Duration::from_secs(5)), f);
    }
    let f = frame(0xb, 9, 1514);
    b.write(&f);
    assert_eq!(a.expect_from(0xb, Duration::from_secs(5)), f);

    // The description libvdeplug built from vde_plug's is the port's.
    let status = Network::open(&net).unwrap().status();
    assert!(
        status
            .ports
            .iter()
            .filter(|p| p.description.starts_with("vdeplug:"))
            .count()
            == 2,
        "descriptions: {:?}",
        status.ports
    );
    drop((a, b));
    wait_for("both plugs to leave", Duration::from_secs(5), || {
        readers(&net) == 0
    });
    Network::remove(&net, false).unwrap();
}

#[test]
fn vde_switch_bridged_to_ipn_passes_frames_both_ways() {
    let net = scratch("bridge-net");
    let switch = VdeSwitch::start("bridge-sw", None);
    let sw = &switch.path;

    let vde_url = format!("vde://{}", sw.display());
    let _bridge = StreamPlug::spawn(&[&vde_url, &url(&net)]);
    wait_for(
        "the bridge to join the ipn network",
        Duration::from_secs(5),
        || readers(&net) == 1,
    );
    let mut port = Port::join(&net, &JoinOptions::described("test")).unwrap();
    let mut end = StreamPlug::spawn(&[&vde_url]);

    // ipn -> switch. The switch end may connect after our first sends:
    // repeat until one arrives.
    let f = frame(0xc, 1, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        port.send(&f).unwrap();
        match end.frames.recv_timeout(Duration::from_millis(200)) {
            Ok(got) if got[6..12] == f[6..12] => break got,
            _ => assert!(
                Instant::now() < deadline,
                "ipn -> vde_switch: nothing arrived"
            ),
        }
    };
    assert_eq!(got, f);

    // switch -> ipn.
    for seq in 0..3 {
        let f = frame(0xd, seq, 1000);
        end.write(&f);
        assert_eq!(port_expect_from(&mut port, 0xd, Duration::from_secs(5)), f);
    }
    drop(port);
    drop(end);
}

/// A frame from 02:00:00:00:00:`src`, broadcast, tagged with `vid` if
/// given.
fn tagged_frame(src: u8, vid: Option<u16>, seq: u8) -> Vec<u8> {
    let mut f = frame(src, seq, 60);
    if let Some(vid) = vid {
        f.splice(12..12, ipn::ethernet::Tci::for_vlan(vid).to_bytes());
    }
    f
}

/// vde_switch, 802.1Q as vde2 does it, on the other end of an ipn trunk:
/// its port 1 is a tagged member of VLANs 10 and 20 and is bridged with
/// `vde_plug vde://SW[1] ipn://NET[trunk=10:20]`; its ports 2 and 3 are
/// untagged in VLANs 10 and 20. Frames of ipn's access ports reach the
/// switch's port of the same VLAN only, and the other way round; a
/// transparent ipn port sees them tagged on the network.
#[test]
fn vde_switch_vlans_meet_ipn_vlans_over_a_trunk_url() {
    let net = scratch("vlan-net");
    let switch = VdeSwitch::start(
        "vlan-sw",
        Some(
            "vlan/create 10\nvlan/create 20\nport/create 1\nport/create 2\nport/create 3\n\
             vlan/addport 10 1\nvlan/addport 20 1\nport/setvlan 2 10\nport/setvlan 3 20\n",
        ),
    );
    let sw = &switch.path;
    let port_url = |n: u32| format!("vde://{}[{n}]", sw.display());
    let _trunk = StreamPlug::spawn(&[&port_url(1), &format!("{}[trunk=10:20]", url(&net))]);
    wait_for("the trunk to join", Duration::from_secs(5), || {
        readers(&net) == 1
    });
    let status = Network::open(&net).unwrap().status();
    assert_eq!(
        status.ports[0].vlan,
        ipn::ethernet::Vlan::Trunk {
            vlans: [10, 20].into_iter().collect(),
            native: None
        }
    );
    let join = |name: &str, vlan| {
        Port::join(
            &net,
            &JoinOptions {
                vlan,
                ..JoinOptions::described(name)
            },
        )
        .unwrap()
    };
    let mut ipn10 = join("ipn 10", ipn::ethernet::Vlan::Access(10));
    let mut ipn20 = join("ipn 20", ipn::ethernet::Vlan::Access(20));
    let mut wire = join("wire", ipn::ethernet::Vlan::Transparent);
    let mut sw10 = StreamPlug::spawn(&[&port_url(2)]);
    let mut sw20 = StreamPlug::spawn(&[&port_url(3)]);

    // ipn VLAN 10 -> the switch's VLAN 10 port, untagged; repeated until
    // one arrives (the switch's ports may connect after our first sends).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = 0;
    let got = loop {
        seq += 1;
        ipn10.send(&tagged_frame(0xa, None, seq)).unwrap();
        match sw10.frames.recv_timeout(Duration::from_millis(200)) {
            Ok(got) if got[6..12] == [2, 0, 0, 0, 0, 0xa] => break got,
            _ => assert!(
                Instant::now() < deadline,
                "ipn VLAN 10 -> vde_switch: nothing"
            ),
        }
    };
    assert_eq!(
        got,
        tagged_frame(0xa, None, seq),
        "untagged at the switch's port"
    );
    // On the ipn network, the frame was tagged.
    let seen = port_expect_from(&mut wire, 0xa, Duration::from_secs(5));
    assert_eq!(seen, tagged_frame(0xa, Some(10), 1));
    // The switch's VLAN 20 port -> ipn VLAN 20 only.
    for seq in 0..3 {
        sw20.write(&tagged_frame(0xb, None, seq));
        assert_eq!(
            port_expect_from(&mut ipn20, 0xb, Duration::from_secs(5)),
            tagged_frame(0xb, None, seq)
        );
    }
    // And the switch's VLAN 10 port -> ipn VLAN 10.
    sw10.write(&tagged_frame(0xc, None, 7));
    assert_eq!(
        port_expect_from(&mut ipn10, 0xc, Duration::from_secs(5)),
        tagged_frame(0xc, None, 7)
    );
    // Nothing crossed: ipn 10 never saw 0xb, ipn 20 never 0xa or 0xc, the
    // switch's VLAN 20 port never 0xa.
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = vec![0u8; 2048];
    while let Ok(n) = ipn10.try_recv(&mut buf) {
        assert_ne!(buf[6..12], [2, 0, 0, 0, 0, 0xb], "{:02x?}", &buf[..n]);
    }
    while let Ok(n) = ipn20.try_recv(&mut buf) {
        assert_eq!(buf[6..12], [2, 0, 0, 0, 0, 0xb], "{:02x?}", &buf[..n]);
    }
    while let Ok(f) = sw20.frames.try_recv() {
        assert_ne!(f[6..12], [2, 0, 0, 0, 0, 0xa], "{f:02x?}");
    }
    drop((ipn10, ipn20, wire, sw10, sw20));
}

/// tests/c/vdeclient.c, built.
fn vdeclient() -> PathBuf {
    common::c_client("vdeclient")
}

#[test]
fn c_client_sees_the_vdeplug_contract() {
    let client = vdeclient();
    let net = scratch("cclient");
    // This one finds the plugin through VDEPLUGIN_PATH alone.
    let out = Command::new(&client)
        .env("VDEPLUGIN_PATH", common::plugin_dir())
        .env_remove("LD_LIBRARY_PATH")
        .arg("check")
        .arg(url(&net))
        .output()
        .expect("run vdeclient");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all passed"),
        "vdeclient check failed:\n{stdout}\n{stderr}"
    );
    // The errors for bad options went to stderr, saying what was wrong.
    assert!(stderr.contains("unknown option 'bogus'"), "{stderr}");
    assert!(stderr.contains("'port' is not supported yet"), "{stderr}");
    assert!(
        stderr.contains("option vlan: bad value '5000': expected a VLAN ID from 1 to 4094"),
        "{stderr}"
    );
    assert!(stderr.contains("'vlan' and 'trunk' contradict"), "{stderr}");
    assert!(stderr.contains("'native' goes with 'trunk'"), "{stderr}");
    assert!(stderr.contains("'hub' and 'switch' contradict"), "{stderr}");
    assert!(stderr.contains("option 'm' is ambiguous"), "{stderr}");
    // Both connections left.
    assert_eq!(readers(&net), 0);
    Network::remove(&net, false).unwrap();
}

#[test]
fn c_client_and_rust_port_exchange_frames_across_processes() {
    let client = vdeclient();
    let net = scratch("ccross");
    let mut port =
        Port::join_or_create(&net, &Config::default(), &JoinOptions::described("rust")).unwrap();
    let mut child = command(&client)
        .args(["recv", &url(&net), "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let sent: Vec<Vec<u8>> = (0..3)
        .map(|i| frame(0xe, i, 64 + 700 * i as usize))
        .collect();
    for f in &sent {
        port.send(f).unwrap();
    }
    for f in &sent {
        let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(lines.next().unwrap().unwrap(), hex);
    }
    assert!(child.wait().unwrap().success());

    let f = frame(0xf, 7, 333);
    let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
    let status = command(&client)
        .args(["send", &url(&net), &hex])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(port_expect_from(&mut port, 0xf, Duration::from_secs(5)), f);
    drop(port);
    Network::remove(&net, false).unwrap();
}

#[test]
fn killed_member_leaves_the_network_working() {
    let net = scratch("kill");
    let u = url(&net);
    let mut victim = StreamPlug::spawn(&[&u]);
    wait_for("the victim to join", Duration::from_secs(5), || {
        readers(&net) == 1
    });
    let mut a = Port::join(&net, &JoinOptions::described("a")).unwrap();
    let mut b = Port::join(&net, &JoinOptions::described("b")).unwrap();
    let f = frame(1, 0, 60);
    a.send(&f).unwrap();
    assert_eq!(victim.expect_from(1, Duration::from_secs(5)), f);
    assert_eq!(port_expect_from(&mut b, 1, Duration::from_secs(5)), f);

    victim.guard.0.kill().unwrap(); // SIGKILL
    victim.guard.0.wait().unwrap();

    // The others go on, and a newcomer joins and hears them.
    let f = frame(1, 1, 100);
    a.send(&f).unwrap();
    assert_eq!(port_expect_from(&mut b, 1, Duration::from_secs(5)), f);
    let newcomer = StreamPlug::spawn(&[&u]);
    wait_for("the newcomer to join", Duration::from_secs(5), || {
        readers(&net) == 3
    });
    let f = frame(1, 2, 100);
    a.send(&f).unwrap();
    assert_eq!(newcomer.expect_from(1, Duration::from_secs(5)), f);
    assert_eq!(port_expect_from(&mut b, 1, Duration::from_secs(5)), f);
    drop((newcomer, a, b));
    Network::remove(&net, true).unwrap();
}

#[test]
fn lossless_sender_is_freed_when_a_stuck_vm_is_killed() {
    require_tools(&["vde_plug"]);
    let net = scratch("lossless-kill");
    let u = format!("{}[lossless/ring=4]", url(&net));
    // A vde_plug whose stdout nobody reads: once the pipe is full it stops
    // reading the network, like a VM that hangs.
    let mut child = command("vde_plug")
        .arg(&u)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn vde_plug");
    let _unread_stdout = child.stdout.take();
    let _stdin = child.stdin.take();
    let mut stuck = Guard(child);
    wait_for("the stuck plug to join", Duration::from_secs(5), || {
        readers(&net) == 1
    });
    let mut sender = Port::join(&net, &JoinOptions::described("sender")).unwrap();
    assert!(sender.lossless());
    let mut sent = 0;
    let stalled = loop {
        match sender.send_timeout(&frame(2, sent as u8, 1500), Duration::from_millis(500)) {
            Ok(()) => sent += 1,
            Err(ipn::SendError::TimedOut) => break true,
            Err(e) => panic!("send: {e}"),
        }
        if sent > 10_000 {
            break false;
        }
    };
    assert!(
        stalled,
        "the stuck reader never held the lossless sender back"
    );
    // The pipe (64 KiB) and the ring (4 frames) hold about 48 frames.
    assert!(sent < 100, "sent {sent} frames past a stuck reader");

    stuck.0.kill().unwrap(); // SIGKILL
    stuck.0.wait().unwrap();
    sender
        .send_timeout(&frame(2, 0, 1500), Duration::from_secs(10))
        .expect("lossless sender still blocked 10 s after its reader was killed");
    drop(sender);
    Network::remove(&net, true).unwrap();
}

#[test]
fn qemu_nic_on_an_ipn_url_sends_its_dhcp_discover() {
    require_tools(&["qemu-system-x86_64"]);
    let net = scratch("qemu");
    let mut port =
        Port::join_or_create(&net, &Config::default(), &JoinOptions::described("watch")).unwrap();
    // No disk: the BIOS boots the e1000's iPXE ROM, which asks for DHCP.
    let mut qemu = command("qemu-system-x86_64");
    qemu.args([
        "-display",
        "none",
        "-serial",
        "none",
        "-monitor",
        "none",
        "-nodefaults",
        "-m",
        "128",
        "-boot",
        "n",
        "-device",
        "e1000,netdev=n0,mac=52:54:00:12:34:99",
        "-netdev",
    ])
    .arg(format!("vde,id=n0,sock={}", url(&net)))
    .stdin(Stdio::null());
    let _qemu = Guard(qemu.spawn().expect("spawn qemu"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = port
            .recv_timeout(&mut buf, left)
            .expect("no DHCP discover from the QEMU guest within 60 s");
        let f = &buf[..n];
        // IPv4, UDP, from port 68 to port 67, from the NIC's MAC.
        if n > 42
            && f[6..12] == [0x52, 0x54, 0, 0x12, 0x34, 0x99]
            && f[12..14] == [0x08, 0x00]
            && f[23] == 17
            && f[34..38] == [0, 68, 0, 67]
        {
            break;
        }
    }
    let status = port.status();
    assert!(
        status
            .ports
            .iter()
            .any(|p| p.description.starts_with("QEMU")),
        "descriptions: {:?}",
        status.ports
    );
    drop(port);
}
