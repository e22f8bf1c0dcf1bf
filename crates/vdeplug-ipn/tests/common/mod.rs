//! Helpers shared by this crate's integration tests: the plugin as
//! libvdeplug finds it, the C clients built against `-lvdeplug`, scratch
//! paths, and waiting with a deadline. The helpers every crate's tests
//! share (root, tools, the property tests' configuration) are in
//! `ipn_test_support`.
//!
//! Nothing is skipped: a missing tool or plugin fails the test with a
//! message saying what to install or build. The plugin is the
//! `libvdeplug_ipn.so` cargo built in the test's `deps/` directory
//! (`cargo test -p vdeplug-ipn` builds it first, the crate being an rlib
//! too), found by libvdeplug through `LD_LIBRARY_PATH` ([`command`]).

#![allow(dead_code)] // each test file uses a part of this module

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ipn::Network;

/// A directory holding only `libvdeplug_ipn.so`: a copy of the one cargo
/// built for this test run (in `deps/`, next to the test binary).
pub fn plugin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let deps = exe
            .parent()
            .expect("test binary lives in target/<profile>/deps");
        let lib = deps.join("libvdeplug_ipn.so");
        assert!(
            lib.exists(),
            "{} is missing: build it with `cargo build -p vdeplug-ipn`",
            lib.display()
        );
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vdeplug-plugin");
        std::fs::create_dir_all(&dir).unwrap();
        // Copy to a temporary name and rename, so no process ever maps a
        // half-written file (test binaries run at the same time).
        let tmp = dir.join(format!("libvdeplug_ipn.so.{}", std::process::id()));
        std::fs::copy(&lib, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("libvdeplug_ipn.so")).unwrap();
        dir
    })
    .clone()
}

/// A command with the plugin on libvdeplug's search path, the way a user
/// tries it without installing: `LD_LIBRARY_PATH=DIR` (libvdeplug's last
/// resort is a plain `dlopen("libvdeplug_ipn.so")`). Unlike
/// `VDEPLUGIN_PATH=DIR`, this keeps the system plugins (`vde://`) found.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    let mut dirs = vec![plugin_dir()];
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&old));
    }
    cmd.env("LD_LIBRARY_PATH", std::env::join_paths(dirs).unwrap());
    cmd.env_remove("VDEPLUGIN_PATH");
    cmd
}

/// Builds `tests/c/NAME.c` with `cc -lvdeplug -pthread` once per test
/// binary (tests run in parallel) and returns the executable.
pub fn c_client(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, exe)) = built.iter().find(|(n, _)| n == name) {
        return exe.clone();
    }
    ipn_test_support::require_tools(&["cc"]);
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.c"));
    // Per test binary: two binaries building the same name at once must
    // not write one file.
    let exe =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-lvdeplug")
        .status()
        .expect("run cc");
    assert!(
        status.success(),
        "compiling {} failed (is libvdeplug-dev installed?)",
        src.display()
    );
    built.push((name.to_owned(), exe.clone()));
    exe
}

/// A fresh path for a test's network or switch.
pub fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("vdeplug-sys-{name}-{}", std::process::id()));
    let _ = Network::remove(&path, true);
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// A [`scratch`] path for a network, removed when dropped, whether the
/// test passed or not.
pub struct ScratchNet(PathBuf);

impl ScratchNet {
    pub fn new(name: &str) -> ScratchNet {
        ScratchNet(scratch(name))
    }
}

impl std::ops::Deref for ScratchNet {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchNet {
    fn drop(&mut self) {
        let _ = Network::remove(&self.0, true);
    }
}

/// A daemonized `vde_switch` at a [`scratch`] path: killed by its pid
/// file, and its files removed, on drop, whatever the test did.
pub struct VdeSwitch {
    /// The switch's directory (what `vde://PATH` names).
    pub path: PathBuf,
    pidfile: PathBuf,
    rc: PathBuf,
}

impl VdeSwitch {
    /// Starts `vde_switch -d -s PATH -p PATH.pid`, with `-f PATH.rc`
    /// holding the commands `rc` if given, and waits for its control
    /// socket.
    pub fn start(name: &str, rc: Option<&str>) -> VdeSwitch {
        ipn_test_support::require_tools(&["vde_switch"]);
        let path = scratch(name);
        let switch = VdeSwitch {
            pidfile: path.with_extension("pid"),
            rc: path.with_extension("rc"),
            path,
        };
        let mut command = Command::new("vde_switch");
        command
            .args(["-d", "-s"])
            .arg(&switch.path)
            .arg("-p")
            .arg(&switch.pidfile);
        if let Some(rc) = rc {
            std::fs::write(&switch.rc, rc).unwrap();
            command.arg("-f").arg(&switch.rc);
        }
        let status = command.status().expect("run vde_switch");
        assert!(status.success(), "vde_switch failed to start");
        wait_for(
            "the switch's control socket",
            Duration::from_secs(5),
            || switch.path.join("ctl").exists() && switch.pidfile.exists(),
        );
        switch
    }
}

impl Drop for VdeSwitch {
    fn drop(&mut self) {
        // The switch daemonized: its pid is all there is to kill it by.
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
        let _ = std::fs::remove_file(&self.pidfile);
        let _ = std::fs::remove_dir_all(&self.path);
        let _ = std::fs::remove_file(&self.rc);
    }
}

/// The `ipn://` URL of `path`.
pub fn url(path: &Path) -> String {
    format!("ipn://{}", path.display())
}

/// Waits up to `timeout` for `cond`; panics with `what` if it never holds.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Number of live reading ports on the network at `path` (0 if absent).
pub fn readers(path: &Path) -> u32 {
    Network::open(path)
        .map(|n| n.status().membership.readers)
        .unwrap_or(0)
}

/// Kills the child when dropped, so a failing test leaves no process.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `timeout` for `child` to exit; kills it and panics with
/// `what` if it does not.
pub fn wait_exit(child: &mut Child, what: &str, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
