//! `ipn bench` runs the `ipn-bench` binary found next to `ipn` (or on
//! PATH) with its arguments unchanged, and says what to build when there
//! is none. The benchmark itself is tested in `crates/ipn-bench`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use common::{stderr, stdout, Net, BIN};

/// One test at a time: an executable written while another thread forks
/// can be inherited open for writing, and exec then fails (ETXTBSY).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A directory holding a copy of the `ipn` binary under test, removed
/// when dropped; `ipn bench` run from there finds only what is next to it.
struct Lonely {
    net: Net,
    _turn: MutexGuard<'static, ()>,
}

impl Lonely {
    fn new(name: &str) -> Lonely {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let net = Net::new(name);
        std::fs::create_dir(&net.path).unwrap();
        std::fs::copy(BIN, net.path.join("ipn")).unwrap();
        Lonely { net, _turn: turn }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.net.path.join(name)
    }

    /// `ipn bench ARGS` from the copy, with an empty PATH.
    fn bench(&self, args: &[&str]) -> Output {
        let empty = self.file("empty");
        let _ = std::fs::create_dir(&empty);
        Command::new(self.file("ipn"))
            .arg("bench")
            .args(args)
            .env("PATH", &empty)
            .output()
            .expect("running the copy of ipn")
    }
}

#[test]
fn bench_without_ipn_bench_names_what_to_build() {
    let dir = Lonely::new("bench-missing");
    let out = dir.bench(&["--quick"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cargo build --release -p ipn-bench"),
        "the error does not say what to build: {err}"
    );
    assert!(
        err.contains(dir.net.p()),
        "the error does not say where it looked: {err}"
    );
}

#[test]
fn bench_passes_every_argument_to_ipn_bench_next_to_ipn() {
    let dir = Lonely::new("bench-passes");
    let fake = dir.file("ipn-bench");
    std::fs::write(&fake, "#!/bin/sh\nprintf '[%s]\\n' \"$@\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.bench(&["--help", "--quick", "--filter", "64 B 1->4", "-x"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "[--help]\n[--quick]\n[--filter]\n[64 B 1->4]\n[-x]\n"
    );
}
