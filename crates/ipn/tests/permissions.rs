//! Permissions are the network directory's mode and group, checked by the
//! kernel. A real unprivileged user who is not in the network's group gets
//! "permission denied" naming the path and the mode; a member of the group
//! gets in and exchanges frames with the others.
//!
//! This test needs root (it creates a system user and a group and runs a
//! peer process as that user). CI runs as root; elsewhere it fails saying so.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::frame;
use common::member::{TestUser, GROUP};
use common::TestNet;
use ipn::{Config, JoinOptions, Port};

const LONG: Duration = Duration::from_secs(10);

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

#[test]
fn join_is_denied_outside_the_group_and_allowed_inside_it() {
    let user = TestUser::get();

    // Mode 0770, group root: the user is neither owner nor member. The
    // directory is made sticky, since the group may write to it.
    let closed = TestNet::create("perm-closed", &Config::default());
    let mode = std::fs::metadata(closed.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o1770);
    let mut outsider = user.peer(false);
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
            group: Some(user.net_gid),
            mode: 0o770,
            ..Config::default()
        },
    );
    let mut me = Port::join(open.path(), &JoinOptions::described("root")).unwrap();
    let mut member = user.peer(true);
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
    let mut outsider = user.peer(false);
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
