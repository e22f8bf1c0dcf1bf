//! Permissions are the network directory's mode and group, checked by the
//! kernel. A real unprivileged user who is not in the network's group gets
//! "permission denied" naming the path and the mode; a member of the group
//! gets in and exchanges frames with the others.
//!
//! This test needs root (it creates a system user and a group and runs a
//! peer process as that user). CI runs as root; elsewhere it fails saying so.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::frame;
use common::peer::Peer;
use common::{unique_path, TestNet};
use ipn::{Config, JoinOptions, Port};

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

const USER: &str = "ipn-test-user";
const GROUP: &str = "ipn-test-net";
const LONG: Duration = Duration::from_secs(10);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it creates the user {USER} and the group {GROUP} and \
         joins a network as that user (CI runs as root); run it as root"
    );
}

/// The test user's uid and primary gid, and the network group's gid,
/// creating them if needed (the user is not a member of the group).
fn user_and_group() -> (u32, u32, u32) {
    use nix::unistd::{Group, User};
    if Group::from_name(GROUP).unwrap().is_none() {
        let _ = Command::new("groupadd").args(["--system", GROUP]).status();
    }
    if User::from_name(USER).unwrap().is_none() {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .status();
    }
    let user = User::from_name(USER)
        .unwrap()
        .unwrap_or_else(|| panic!("could not create user {USER}"));
    let group = Group::from_name(GROUP)
        .unwrap()
        .unwrap_or_else(|| panic!("could not create group {GROUP}"));
    assert!(
        !group.mem.iter().any(|m| m == USER),
        "{USER} must not be a member of {GROUP}"
    );
    (user.uid.as_raw(), user.gid.as_raw(), group.gid.as_raw())
}

/// A copy of this test binary that the unprivileged user can run (the
/// build directory may not be reachable for it).
struct ExeCopy(PathBuf);

impl ExeCopy {
    fn new() -> ExeCopy {
        let dir = unique_path("exe");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.join("peer");
        std::fs::copy(common::peer::current_exe(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        ExeCopy(exe)
    }
}

impl Drop for ExeCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

/// A script peer running as `uid`/`gid` with exactly `groups`.
fn peer_as(exe: &ExeCopy, uid: u32, gid: u32, groups: Option<u32>) -> Peer {
    let mut wrapper = vec![
        "setpriv".to_owned(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
    ];
    wrapper.push(match groups {
        Some(g) => format!("--groups={g}"),
        None => "--clear-groups".to_owned(),
    });
    wrapper.push("--".to_owned());
    let mut peer = Peer::spawn_via(&wrapper, &exe.0, "script", &[]);
    peer.expect_word("ready", LONG);
    peer
}

#[test]
fn join_is_denied_outside_the_group_and_allowed_inside_it() {
    require_root();
    let (uid, gid, net_gid) = user_and_group();
    let exe = ExeCopy::new();

    // Mode 0770, group root: the user is neither owner nor member. The
    // directory is made sticky, since the group may write to it.
    let closed = TestNet::create("perm-closed", &Config::default());
    let mode = std::fs::metadata(closed.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o1770);
    let mut outsider = peer_as(&exe, uid, gid, None);
    let answer = outsider
        .command(&format!("join {} rw outsider", closed.arg()), LONG)
        .expect_err("an outsider joined a 0770 network");
    assert!(
        answer.starts_with("PermissionDenied"),
        "expected PermissionDenied, got: {answer}"
    );
    assert!(
        answer.contains(&closed.arg()),
        "the error must name the path: {answer}"
    );
    assert!(answer.contains("permission denied"), "{answer}");
    assert!(
        answer.contains("1770"),
        "the error must say the mode: {answer}"
    );
    outsider.finish();
    eprintln!("outsider was told: {answer}");

    // Mode 0770, group ipn-test-net: a member gets in.
    let open = TestNet::create(
        "perm-group",
        &Config {
            group: Some(net_gid),
            mode: 0o770,
            ..Config::default()
        },
    );
    let mut me = Port::join(open.path(), &JoinOptions::described("root")).unwrap();
    let mut member = peer_as(&exe, uid, gid, Some(net_gid));
    member.ok(&format!("join {} rw member", open.arg()));
    member.ok("tag 6");
    member.ok("send 3 200");
    let mut buf = [0u8; 1514];
    for seq in 0..3 {
        let n = me.recv_timeout(&mut buf, LONG).unwrap();
        assert_eq!(frame::check(&buf[..n]).unwrap(), (6, seq));
    }
    me.send(&frame::make(1, 0, 100)).unwrap();
    assert_eq!(member.ok("recv 1 5000"), "1:0");
    let status = me.status();
    let theirs = status
        .ports
        .iter()
        .find(|p| p.description == "member")
        .unwrap();
    assert_eq!(theirs.pid, member.pid() as u32, "the member's own pid");

    // The outsider is still refused from this one.
    let mut outsider = peer_as(&exe, uid, gid, None);
    let answer = outsider
        .command(&format!("join {} rw outsider", open.arg()), LONG)
        .expect_err("an outsider joined a group network");
    assert!(answer.starts_with("PermissionDenied"), "{answer}");
    assert!(
        answer.contains(GROUP),
        "the hint names the group to join: {answer}"
    );
    outsider.finish();
    member.finish();
}
