//! Crash safety, for real: processes are killed with SIGKILL in the middle
//! of sending, receiving and joining, again and again, on a network with
//! only 4 port slots (so every new joiner must reclaim a dead one). After
//! each kill the surviving pair still exchanges frames without stalling,
//! no torn frame is ever delivered, the dead are reported dead, and the
//! next victims get in.

mod common;

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::frame;
use common::peer::Peer;
use common::{TestNet, Watchdog};
use ipn::{Config, JoinOptions, Membership, Network, OpenError, Port, PortState, RecvError};

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

const LONG: Duration = Duration::from_secs(10);
/// No single call of a survivor may take longer than this.
const STALL: Duration = Duration::from_secs(1);

enum Cmd {
    Probe(u64),
    Stop,
}

#[derive(Debug)]
enum Event {
    Sent(u64, Result<(), String>),
    GotProbe(u64),
    Failed(String),
}

/// A surviving port, run on its own thread: it reads all the time
/// (checking every frame it gets), and on command sends a probe frame
/// tagged `tag` to its partner, which tags its probes `partner`.
struct Survivor {
    name: &'static str,
    commands: Sender<Cmd>,
    events: Receiver<Event>,
    /// Events that arrived while waiting for another one.
    early: std::cell::RefCell<Vec<Event>>,
    thread: Option<JoinHandle<()>>,
}

impl Survivor {
    fn start(path: &std::path::Path, name: &'static str, tag: u32, partner: u32) -> Survivor {
        let mut port = Port::join(path, &JoinOptions::described(name)).unwrap();
        let (commands, cmd_rx) = mpsc::channel();
        let (ev_tx, events) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1514];
            let fail = |e: String| {
                let _ = ev_tx.send(Event::Failed(e));
            };
            loop {
                match cmd_rx.try_recv() {
                    Ok(Cmd::Probe(seq)) => {
                        let start = Instant::now();
                        let result = port
                            .send_timeout(&frame::make(tag, seq, 64), Duration::from_secs(3))
                            .map_err(|e| e.to_string());
                        if start.elapsed() > STALL {
                            fail(format!(
                                "{name}: sending probe {seq} took {:?}",
                                start.elapsed()
                            ));
                        }
                        let _ = ev_tx.send(Event::Sent(seq, result));
                    }
                    Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
                let start = Instant::now();
                match port.recv_timeout(&mut buf, Duration::from_millis(5)) {
                    Ok(n) => match frame::check(&buf[..n]) {
                        Ok((t, seq)) if t == partner => {
                            let _ = ev_tx.send(Event::GotProbe(seq));
                        }
                        Ok(_) => {}
                        Err(e) => fail(format!("{name}: torn or corrupt frame delivered: {e}")),
                    },
                    Err(RecvError::TimedOut) => {}
                    Err(e) => fail(format!("{name}: recv: {e}")),
                }
                if start.elapsed() > STALL {
                    fail(format!(
                        "{name}: recv_timeout(5 ms) took {:?}",
                        start.elapsed()
                    ));
                }
            }
        });
        Survivor {
            name,
            commands,
            events,
            early: Default::default(),
            thread: Some(thread),
        }
    }

    /// Waits for `want` (`sent` or `got`) of probe `seq`, keeping other
    /// events for later, failing on anything that went wrong meanwhile.
    fn expect(&self, want: &str, seq: u64) {
        let matches = |event: &Event| match event {
            Event::Failed(e) => panic!("{e}"),
            Event::Sent(s, result) if want == "sent" && *s == seq => {
                if let Err(e) = result {
                    panic!("{}: probe {seq}: {e}", self.name);
                }
                true
            }
            Event::GotProbe(s) => want == "got" && *s == seq,
            _ => false,
        };
        let mut early = self.early.borrow_mut();
        if let Some(at) = early.iter().position(matches) {
            early.remove(at);
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if matches(&event) => return,
                Ok(event) => early.push(event),
                Err(_) => panic!("{}: no `{want} {seq}` within 5 s (stalled)", self.name),
            }
        }
    }
}

impl Drop for Survivor {
    fn drop(&mut self) {
        let _ = self.commands.send(Cmd::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Tiny deterministic generator, so that a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn crash_loop(name: &str, lossless: bool, iterations: u64) {
    let _watchdog = Watchdog::new(name, Duration::from_secs(90));
    let config = Config {
        max_ports: 4,
        ring_slots: Some(32),
        lossless,
        ..Config::default()
    };
    let net = TestNet::create(name, &config);
    let a = Survivor::start(net.path(), "survivor-a", 101, 102);
    let b = Survivor::start(net.path(), "survivor-b", 102, 101);
    let network = Network::open(net.path()).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(lossless));
    let start = Instant::now();
    let path = net.arg();
    let (mut mid_join, mut mid_run) = (0, 0);
    for i in 0..iterations {
        let blaster_mode = if rng.below(2) == 0 { "w" } else { "rw" };
        let mut victims = vec![
            Peer::spawn("blast", &[&path, blaster_mode]),
            Peer::spawn("drain", &[&path, "r"]),
        ];
        if rng.below(5) == 0 {
            // Kill them while they start and join.
            std::thread::sleep(Duration::from_micros(rng.below(8000)));
            mid_join += 1;
        } else {
            for v in &mut victims {
                v.expect_word("running", LONG);
            }
            std::thread::sleep(Duration::from_micros(rng.below(15_000)));
            mid_run += 1;
        }
        if rng.below(2) == 0 {
            victims.reverse();
        }
        let pids: Vec<u32> = victims.iter().map(|v| v.pid() as u32).collect();
        for v in &mut victims {
            v.kill();
        }

        // Half the time the survivors find the dead by themselves; half
        // the time a status() has marked them first.
        let check_status = |when: &str| {
            let status = network.status();
            for p in &status.ports {
                if pids.contains(&p.pid) {
                    assert_eq!(
                        p.state,
                        PortState::Dead,
                        "iteration {i} ({when}): killed port still {p:?}"
                    );
                }
            }
            assert_eq!(
                status.membership,
                Membership {
                    readers: 2,
                    writers: 2
                },
                "iteration {i} ({when}): {status:?}"
            );
        };
        if i % 2 == 0 {
            check_status("before probing");
        }
        for s in [&a, &b] {
            s.commands.send(Cmd::Probe(i)).unwrap();
        }
        a.expect("sent", i);
        b.expect("sent", i);
        a.expect("got", i);
        b.expect("got", i);
        if i % 2 == 1 {
            check_status("after probing");
        }
    }
    let took = start.elapsed();
    eprintln!(
        "{name}: {iterations} rounds ({mid_join} killed while joining, {mid_run} while running) in {took:?}"
    );
    // The slots of the last victims are reclaimable too.
    let c = Port::join(net.path(), &JoinOptions::described("c")).unwrap();
    let d = Port::join(net.path(), &JoinOptions::described("d")).unwrap();
    assert!(matches!(
        Port::join(net.path(), &JoinOptions::described("e")),
        Err(OpenError::Full { max_ports: 4, .. })
    ));
    drop((c, d, a, b));
}

#[test]
fn network_survives_kill_9_mid_send_and_mid_receive_in_a_loop() {
    crash_loop("crash-lossy", false, 100);
}

#[test]
fn lossless_network_survives_kill_9_mid_send_and_mid_receive_in_a_loop() {
    crash_loop("crash-lossless", true, 100);
}

#[test]
fn network_whose_every_member_died_is_joinable_again() {
    let net = TestNet::create(
        "all-dead",
        &Config {
            max_ports: 4,
            ..Config::default()
        },
    );
    let mut peers: Vec<Peer> = (0..4)
        .map(|_| {
            let mut p = Peer::spawn("script", &[]);
            p.expect_word("ready", LONG);
            p.ok(&format!("join {} rw doomed", net.arg()));
            p.ok("send 3 100");
            p
        })
        .collect();
    for p in &mut peers {
        p.kill();
    }
    let status = Network::open(net.path()).unwrap().status();
    assert_eq!(status.ports.len(), 4);
    assert!(
        status.ports.iter().all(|p| p.state == PortState::Dead),
        "{status:?}"
    );
    assert_eq!(status.membership, Membership::default());

    let mut ports: Vec<Port> = (0..4)
        .map(|i| Port::join(net.path(), &JoinOptions::described(format!("new-{i}"))).unwrap())
        .collect();
    let mut buf = [0u8; 1514];
    // Drain what the dead sent before they died (their frames may still be
    // there for ports that joined at their slots; nothing else).
    for p in &mut ports {
        while p.try_recv(&mut buf).is_ok() {}
    }
    ports[0].send(&frame::make(1, 0, 100)).unwrap();
    for p in &mut ports[1..] {
        let n = p.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(frame::check(&buf[..n]).unwrap(), (1, 0));
    }
    let status = ports[0].status();
    assert!(status.ports.iter().all(|p| p.state == PortState::Active));
    assert_eq!(
        status.membership,
        Membership {
            readers: 4,
            writers: 4
        }
    );
}

#[test]
fn full_network_admits_a_new_port_as_soon_as_a_member_dies() {
    let net = TestNet::create(
        "full",
        &Config {
            max_ports: 2,
            ..Config::default()
        },
    );
    let mut peers: Vec<Peer> = (0..2)
        .map(|_| {
            let mut p = Peer::spawn("script", &[]);
            p.expect_word("ready", LONG);
            p.ok(&format!("join {} rw member", net.arg()));
            p
        })
        .collect();
    match Port::join(net.path(), &JoinOptions::default()) {
        Err(e @ OpenError::Full { max_ports: 2, .. }) => {
            assert!(e.to_string().contains(&net.arg()), "{e}");
        }
        other => panic!("joining a full network: {other:?}"),
    }
    peers[0].kill();
    // No sweep needed: the joiner finds the free lock itself.
    let mut me = Port::join(net.path(), &JoinOptions::described("me")).unwrap();
    peers[1].ok("send 1 100");
    let mut buf = [0u8; 1514];
    me.recv_timeout(&mut buf, LONG).unwrap();
    peers.pop().unwrap().finish();
}
