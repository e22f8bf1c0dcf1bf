//! A shared file that cannot be backed never kills a member with SIGBUS:
//! a file system too small for the network fails at `create`, with an
//! error naming the path and the lack of space; a file truncated under
//! running members (by a member, who may write it) ends their operations
//! with an error naming the path, and `status` says how to recreate it.

mod common;

use std::fs::OpenOptions;
use std::process::Command;
use std::time::Duration;

use common::peer::Peer;
use common::{unique_path, TestNet};
use ipn::{Config, JoinOptions, Network, OpenError, Port};
use ipn_test_support::require_root;

/// Entry point of the peer processes this test binary spawns (see
/// `common::peer`); does nothing in a normal test run.
#[test]
fn peer_process_entry() {
    common::peer::run_if_peer();
}

const LONG: Duration = Duration::from_secs(10);

/// Two members streaming frames at each other; the file is truncated to
/// `size` under them. Each must end with the "damaged" error naming the
/// path, and exit normally: not killed by SIGBUS.
fn truncate_under_streaming_members(name: &str, size: u64) {
    let net = TestNet::create(name, &Config::default());
    let mut peers: Vec<Peer> = (0..2)
        .map(|_| Peer::spawn("stream", &[&net.arg()]))
        .collect();
    for peer in &mut peers {
        peer.expect_word("running", LONG);
    }
    OpenOptions::new()
        .write(true)
        .open(net.shm())
        .unwrap()
        .set_len(size)
        .unwrap();
    for peer in &mut peers {
        let error = peer.expect_word("error", LONG);
        assert!(
            error.contains("damaged") && error.contains(&net.arg()),
            "expected the damaged-network error naming {}, got: {error}",
            net.arg()
        );
        let status = peer.wait(LONG).expect("the peer exits after its error");
        assert!(
            status.success(),
            "peer ended with {status:?} (a signal means SIGBUS got through); stderr:\n{}",
            peer.stderr()
        );
    }
    match Network::open(net.path()) {
        Err(e @ OpenError::NotANetwork { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("truncated") && text.contains("create it again"),
                "{text}"
            );
        }
        other => panic!("status of a truncated network: {other:?}"),
    }
}

#[test]
fn truncating_shm_to_its_header_under_running_members_ends_them_with_an_error() {
    truncate_under_streaming_members("truncate-header", 4096);
}

#[test]
fn truncating_shm_to_nothing_under_running_members_ends_them_with_an_error() {
    truncate_under_streaming_members("truncate-empty", 0);
}

/// A 1 MiB tmpfs, mounted for the test and unmounted when dropped.
struct SmallTmpfs(std::path::PathBuf);

impl SmallTmpfs {
    fn mount(name: &str) -> SmallTmpfs {
        require_root("this test mounts a 1 MiB tmpfs", &["mount", "umount"]);
        let dir = unique_path(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a 1 MiB tmpfs on {}",
            dir.display()
        );
        SmallTmpfs(dir)
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn create_on_a_file_system_too_small_fails_naming_the_path_and_the_lack_of_space() {
    let fs = SmallTmpfs::mount("small-tmpfs");
    let path = fs.0.join("net");
    // The default network needs about 25 MB.
    match Network::create(&path, &Config::default()) {
        Err(e @ OpenError::NoSpace { .. }) => {
            let text = e.to_string();
            assert!(text.contains(path.to_str().unwrap()), "{text}");
            assert!(text.contains("no space"), "{text}");
        }
        other => panic!("create on a 1 MiB tmpfs: {other:?}"),
    }
    assert!(!path.exists(), "a failed create left {}", path.display());
    // One that fits is created with all its blocks, and works to the last
    // byte of every ring, with no SIGBUS.
    let small = Config {
        max_ports: 2,
        ring_slots: Some(16),
        ..Config::default()
    };
    Network::create(&path, &small).unwrap();
    let mut a = Port::join(&path, &JoinOptions::described("a")).unwrap();
    let mut b = Port::join(&path, &JoinOptions::described("b")).unwrap();
    let mut buf = [0u8; 1514];
    for i in 0..64u8 {
        a.send(&[i; 1514]).unwrap();
        assert_eq!(b.recv_timeout(&mut buf, LONG).unwrap(), 1514);
        assert_eq!(buf[1513], i);
    }
    drop((a, b));
    Network::remove(&path, true).unwrap();
}
