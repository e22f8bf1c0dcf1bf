//! What a member of a network's group can NOT do to root (or anyone else)
//! through the network directory, which every member may write: every
//! name in it can be swapped for a link, a FIFO, a directory or another
//! file at any moment. Each test runs the attack as a real unprivileged
//! member (setpriv) against ports and networks of root, as `ipn tap` or
//! QEMU would be.
//!
//! Most tests take the sticky bit off the directory first (its owner may,
//! and networks made by older ipn lack it), so that they prove the file
//! operations themselves safe, not only the sticky bit.
//!
//! Needs root (a real user and group); CI runs as root.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::member::TestUser;
use common::{unique_path, TestNet};
use ipn::{Config, JoinOptions, Network, OpenError, Port, PortState};

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

const LONG: Duration = Duration::from_secs(10);

/// A network of root's, group-writable by the test user's network group.
fn group_network(name: &str, user: &TestUser) -> TestNet {
    TestNet::create(
        name,
        &Config {
            group: Some(user.net_gid),
            mode: 0o770,
            ..Config::default()
        },
    )
}

/// Takes the sticky bit off a network directory (its owner may).
fn unstick(net: &TestNet) {
    std::fs::set_permissions(net.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
}

/// A root-only file outside every network, and its mode, group and text.
struct Secret {
    path: PathBuf,
}

impl Secret {
    fn new(name: &str) -> Secret {
        let path = unique_path(name);
        std::fs::write(&path, b"root only").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        Secret { path }
    }

    fn assert_untouched(&self) {
        let meta = std::fs::metadata(&self.path).unwrap();
        assert_eq!(
            meta.mode() & 0o7777,
            0o600,
            "mode of {}",
            self.path.display()
        );
        assert_eq!(meta.gid(), 0, "group of {}", self.path.display());
        assert_eq!(meta.uid(), 0, "owner of {}", self.path.display());
        assert_eq!(std::fs::read(&self.path).unwrap(), b"root only");
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A background attacker loop, killed when dropped.
struct Attacker(Child);

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the attacker has made `path` a symbolic link at least once.
fn wait_for_link(path: &Path) {
    let made = common::wait_until(LONG, || {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
    });
    assert!(made.is_some(), "the attacker never made {}", path.display());
}

fn shell_ok(user: &TestUser, script: &str) {
    let out = user.shell(script);
    assert!(
        out.status.success(),
        "as the member: `{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn member_swapping_doorbell_names_for_links_never_changes_a_file_outside() {
    let user = TestUser::get();
    let net = group_network("swap-bells", &user);
    unstick(&net);
    let secret = Secret::new("swap-bells-secret");
    // Every doorbell name, again and again, becomes a link to the secret,
    // while root joins and leaves.
    let mut attacker = user.peer(true);
    attacker.ok(&format!(
        "swap-links {} bell. 4 {} 60",
        net.arg(),
        secret.path.display()
    ));
    wait_for_link(&net.path().join("bell.3"));
    let mut joined = 0;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(60);
    while (joined < 400 || start.elapsed() < Duration::from_secs(2)) && Instant::now() < deadline {
        let a = Port::join(net.path(), &JoinOptions::described("root a"));
        let b = Port::join(net.path(), &JoinOptions::described("root b"));
        if let (Ok(mut a), Ok(mut b)) = (a, b) {
            a.send(&[1u8; 60]).unwrap();
            let mut buf = [0u8; 1514];
            let _ = b.recv_timeout(&mut buf, Duration::from_millis(100));
            joined += 1;
        }
        secret.assert_untouched();
    }
    assert!(joined >= 400, "root joined only {joined} times in a minute");
    secret.assert_untouched();
    drop(attacker);
}

#[test]
fn member_removing_shm_cannot_race_roots_recreation_into_a_file_outside() {
    let user = TestUser::get();
    let net = group_network("recreate", &user);
    unstick(&net);
    let secret = Secret::new("recreate-secret");
    // The member deletes shm again and again, and plants links to the
    // secret at the temporary names it can guess, while root joins with
    // join-or-create, which makes the network anew when shm is gone and
    // the directory is empty (the planted links make it not empty, so
    // each round the member takes them away and waits a little, leaving
    // root the room to make it anew, and deletes what root made). The
    // script logs each deletion of a shm and each link it planted.
    let log = unique_path("recreate-attacker.log");
    let _log_guard = RemoveOnDrop(log.clone());
    let mut attacker = Attacker(user.spawn_shell(
        &format!(
            "while :; do \
               if [ -e {dir}/shm ] && rm -f {dir}/shm; then echo deleted; fi; \
               for n in .shm.tmp .shm.0.tmp shm.tmp; do \
                 ln -sfn {secret} {dir}/$n && [ -L {dir}/$n ] && echo planted; \
               done; \
               rm -f {dir}/.shm.tmp {dir}/.shm.0.tmp {dir}/shm.tmp; \
               sleep 0.005; \
             done",
            dir = net.arg(),
            secret = secret.path.display()
        ),
        &log,
    ));
    // The attack is under way before root starts: the shm the network was
    // made with is gone, and links were planted.
    let before = wait_for_attack(&log, 1, 1);
    // Root joins at least 200 times, and until the member has deleted 10
    // of the networks root made anew (only root makes a shm, so every
    // deletion after those counted before root started is one of root's).
    let mut made = 0;
    let mut tries = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while (tries < 200 || made < 10 || attack_count(&log).deleted < before.deleted + 10)
        && Instant::now() < deadline
    {
        tries += 1;
        // Making the network anew makes the directory sticky again, which
        // would end the attack (the member may then no longer delete
        // root's shm): take the bit off each time, so that the file
        // operations themselves are what is tested.
        unstick(&net);
        match Port::join_or_create(
            net.path(),
            &Config::default(),
            &JoinOptions::described("root"),
        ) {
            Ok(_) => made += 1,
            // Refused because of what the member put there, or raced: an
            // error naming the network, never a file outside it touched.
            Err(e) => assert!(e.to_string().contains(&net.arg()), "{e}"),
        }
        secret.assert_untouched();
    }
    let after = attack_count(&log);
    eprintln!(
        "root got in {made} times out of {tries}; meanwhile the member deleted {} shm files \
         root had made anew and planted {} links",
        after.deleted - before.deleted,
        after.planted - before.planted
    );
    assert!(made > 0, "root never got in");
    assert!(
        after.deleted > before.deleted && after.planted > before.planted,
        "the race never ran: the member deleted none of root's new shm files or planted no \
         link while root joined ({before:?} before, {after:?} after)"
    );
    assert!(
        attacker.0.try_wait().unwrap().is_none(),
        "the attacker's loop ended early: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    secret.assert_untouched();
}

/// What the attacker's script has done so far, from its log.
#[derive(Debug, Clone, Copy)]
struct AttackCount {
    deleted: usize,
    planted: usize,
}

/// Waits until the attacker's log shows at least `deleted` deletions of
/// shm and `planted` planted links; returns the counts then.
fn wait_for_attack(log: &Path, deleted: usize, planted: usize) -> AttackCount {
    let mut count = attack_count(log);
    let done = common::wait_until(LONG, || {
        count = attack_count(log);
        count.deleted >= deleted && count.planted >= planted
    });
    assert!(
        done.is_some(),
        "the attacker deleted shm {} times and planted {} links, expected at least {deleted} \
         and {planted}; its log:\n{}",
        count.deleted,
        count.planted,
        std::fs::read_to_string(log).unwrap_or_default()
    );
    count
}

/// What the attacker's log says it has done so far.
fn attack_count(log: &Path) -> AttackCount {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    AttackCount {
        deleted: text.lines().filter(|l| *l == "deleted").count(),
        planted: text.lines().filter(|l| *l == "planted").count(),
    }
}

/// A file removed when this guard drops.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn member_replacing_shm_with_a_link_to_a_private_network_gets_nothing_from_root() {
    let user = TestUser::get();
    let private = TestNet::create(
        "private",
        &Config {
            mode: 0o700,
            ..Config::default()
        },
    );
    let mut private_reader = Port::join(private.path(), &JoinOptions::described("root")).unwrap();
    let net = group_network("shm-link", &user);
    unstick(&net);
    shell_ok(
        &user,
        &format!(
            "rm -f {dir}/shm && ln -s {private}/shm {dir}/shm",
            dir = net.arg(),
            private = private.arg()
        ),
    );
    for result in [
        Port::join(net.path(), &JoinOptions::described("root pub")),
        Port::join_or_create(
            net.path(),
            &Config::default(),
            &JoinOptions::described("root pub"),
        ),
    ] {
        match result {
            Err(e @ OpenError::NotANetwork { .. }) => {
                assert!(e.to_string().contains("symbolic link"), "{e}")
            }
            Err(other) => panic!("expected a refusal naming the link, got {other}"),
            Ok(mut port) => {
                port.send(&[7u8; 60]).unwrap();
                panic!("root joined through a link planted by a member")
            }
        }
    }
    let mut buf = [0u8; 1514];
    assert!(private_reader.try_recv(&mut buf).is_err());
    let status = Network::open(private.path()).unwrap().status();
    assert_eq!(status.ports.len(), 1, "only root's own port: {status:?}");
}

#[test]
fn fifo_planted_as_shm_never_hangs_status_join_or_rm() {
    let user = TestUser::get();
    let net = group_network("shm-fifo", &user);
    unstick(&net);
    shell_ok(
        &user,
        &format!("rm -f {dir}/shm && mkfifo {dir}/shm", dir = net.arg()),
    );
    let path = net.path().to_owned();
    common::within("opening a network whose shm is a FIFO", LONG, move || {
        for e in [
            Network::open(&path).map(|_| ()).unwrap_err(),
            Port::join(&path, &JoinOptions::default())
                .map(|_| ())
                .unwrap_err(),
        ] {
            assert!(e.to_string().contains("FIFO"), "{e}");
        }
        Network::remove(&path, true).unwrap();
    });
    assert!(!net.path().exists());
}

#[test]
fn create_refuses_a_directory_someone_else_prepared() {
    let user = TestUser::get();
    // A parent every user may write to, as /tmp (sticky).
    let parent = unique_path("prepared");
    let _ = std::fs::remove_dir_all(&parent);
    std::fs::create_dir(&parent).unwrap();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let _cleanup = TestNet {
        path: parent.clone(),
    };
    let theirs = parent.join("theirs");
    shell_ok(&user, &format!("mkdir -m 0777 {}", theirs.display()));
    for result in [
        Network::create(&theirs, &Config::default()).map(|_| ()),
        Port::join_or_create(&theirs, &Config::default(), &JoinOptions::default()).map(|_| ()),
    ] {
        let e = result.expect_err("root adopted a directory another user made");
        assert!(e.to_string().contains("belongs to ipn-test-user"), "{e}");
    }
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);

    // Root's own, but not empty: refused too.
    let full = parent.join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("notes"), b"x").unwrap();
    let e = Network::create(&full, &Config::default()).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");

    // A link to a directory: refused, saying it is a link.
    let link = parent.join("link");
    std::os::unix::fs::symlink(&full, &link).unwrap();
    let e = Network::create(&link, &Config::default()).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(!full.join("shm").exists());

    // Root's own and empty (an administrator prepared it): adopted.
    let empty = parent.join("empty");
    std::fs::create_dir(&empty).unwrap();
    Network::create(&empty, &Config::default()).unwrap();
}

/// The evil socket: a datagram socket outside the network, which a member
/// would like root's doorbells to reach.
fn evil_socket(name: &str) -> (std::os::unix::net::UnixDatagram, PathBuf) {
    let path = unique_path(name);
    let _ = std::fs::remove_file(&path);
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket.set_nonblocking(true).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    (socket, path)
}

#[test]
fn member_pointing_its_doorbell_at_another_socket_never_gets_roots_doorbells_there() {
    let user = TestUser::get();
    let net = group_network("bell-link", &user);
    let (evil, evil_path) = evil_socket("evil.sock");
    let mut member = user.peer(true);
    let index = member.ok(&format!("join {} rw member", net.arg()));
    // The member's own doorbell name (it may replace its own files even in
    // the sticky directory) now points at the evil socket.
    shell_ok(
        &user,
        &format!(
            "rm -f {dir}/bell.{index} && ln -s {evil} {dir}/bell.{index}",
            dir = net.arg(),
            evil = evil_path.display()
        ),
    );
    // Root joins (waking everyone) and sends to the sleeping member.
    let mut root = Port::join(net.path(), &JoinOptions::described("root")).unwrap();
    for _ in 0..10 {
        root.send(&[3u8; 60]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(root);
    let mut buf = [0u8; 16];
    assert!(
        evil.recv(&mut buf).is_err(),
        "a doorbell of root's reached a socket outside the network"
    );
    let _ = std::fs::remove_file(&evil_path);
    member.finish();
}

#[test]
fn slots_locked_without_joining_are_shown_in_status_and_named_when_full() {
    let user = TestUser::get();
    let net = TestNet::create(
        "held",
        &Config {
            group: Some(user.net_gid),
            max_ports: 4,
            ..Config::default()
        },
    );
    let mut member = user.peer(true);
    member.ok(&format!("lock-slots {} 0 3", net.arg()));
    let mut root = Port::join(net.path(), &JoinOptions::described("root")).unwrap();
    assert_eq!(root.index(), 3, "the only slot nobody holds");
    match Port::join(net.path(), &JoinOptions::described("one too many")) {
        Err(e @ OpenError::Full { .. }) => {
            let text = e.to_string();
            assert!(text.contains("1 joined"), "{text}");
            assert!(
                text.contains(&format!("3 locked without joining by pid {}", member.pid())),
                "{text}"
            );
        }
        other => panic!("expected a full network, got {other:?}"),
    }
    let status = Network::open(net.path()).unwrap().status();
    let held: Vec<(u32, u32)> = status
        .ports
        .iter()
        .filter(|p| p.state == PortState::Held)
        .map(|p| (p.index, p.pid))
        .collect();
    let pid = member.pid() as u32;
    assert_eq!(held, vec![(0, pid), (1, pid), (2, pid)], "{status:?}");
    root.send(&[1u8; 60]).unwrap();
    member.finish();
}

/// Makes `dir/name` a non-empty directory, as the member, with a link to
/// `decoy` inside (which removing the planted directory must not follow).
fn plant_directory(user: &TestUser, dir: &Path, name: &str, decoy: &Path) {
    shell_ok(
        user,
        &format!(
            "mkdir -p {d}/{name}/deeper && touch {d}/{name}/deeper/file && \
             ln -s {decoy} {d}/{name}/link",
            d = dir.display(),
            decoy = decoy.display()
        ),
    );
}

#[test]
fn directories_planted_at_doorbell_names_block_neither_joins_nor_rm() {
    let user = TestUser::get();
    let net = group_network("planted", &user);
    let decoy = TestNet::empty("planted-decoy");
    std::fs::create_dir(decoy.path()).unwrap();
    std::fs::write(decoy.path().join("keep"), b"keep").unwrap();
    // At a free slot's doorbell name, before anyone joins: root takes that
    // slot anyway (the directory is moved out of the way and removed,
    // links inside it untouched).
    plant_directory(&user, net.path(), "bell.0", decoy.path());
    let root = Port::join(net.path(), &JoinOptions::described("root")).unwrap();
    assert_eq!(root.index(), 0);
    assert!(std::fs::symlink_metadata(net.path().join("bell.0"))
        .unwrap()
        .file_type()
        .is_socket());
    assert!(decoy.path().join("keep").exists());

    // Root's own directory at the next name: the member may not remove it
    // (sticky directory), so its join passes that slot over.
    std::fs::create_dir_all(net.path().join("bell.1/x")).unwrap();
    let mut member = user.peer(true);
    let index: u32 = member
        .ok(&format!("join {} rw member", net.arg()))
        .parse()
        .unwrap();
    assert_eq!(index, 2, "slot 1's name is root's directory");
    member.finish();

    // rm --force removes all of it, planted directories included.
    plant_directory(&user, net.path(), "bell.3", decoy.path());
    drop(root);
    Network::remove(net.path(), true).unwrap();
    assert!(!net.path().exists());
    assert!(decoy.path().join("keep").exists());
}
