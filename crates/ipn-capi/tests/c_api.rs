//! The C API from C, without installing anything: C programs are compiled
//! with `cc` against `include/ipn.h` and the `libipn.so` of this build,
//! and run.
//!
//! - `tests/c/capi.c` checks what `ipn.h` promises: the errno of each bad
//!   input (no network at the path, a NULL pointer, a frame over the MTU,
//!   an empty frame, a receive that times out, a lossless send without
//!   room, bad configurations and flags, a full network, a busy remove),
//!   frames and `poll` on `ipn_fd`, and the ABI rules of
//!   `struct ipn_config` (a smaller one refused, a larger one from a newer
//!   header accepted when its extra fields are zero, `E2BIG` if not);
//!   run as `nobody` against root's network, it gets `EACCES`.
//! - `examples/exchange.c`, the example the package ships, runs as it
//!   would for a user: two processes exchanging frames.
//!
//! Cargo does not build a cdylib-only crate's library for its integration
//! tests, so [`library_dir`] runs `cargo build -p ipn-capi` (same target
//! directory and profile; quick when it is up to date), then gives the
//! library its soname in a directory of its own. A missing C compiler
//! fails the test, saying what to install.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

/// A directory holding `libipn.so` and `libipn.so.0` (copies of this
/// build's library), for `-L` and `LD_LIBRARY_PATH`.
fn library_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // target/<profile>/deps/c_api-HASH
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in target/<profile>/deps");
        let target_dir = profile_dir.parent().expect("target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => panic!("no profile directory above {}", exe.display()),
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "ipn-capi", "--profile", profile])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(CRATE)
            .status()
            .expect("running cargo build -p ipn-capi");
        assert!(status.success(), "cargo build -p ipn-capi failed");
        let built = profile_dir.join("libipn.so");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libipn");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["libipn.so", "libipn.so.0"] {
            // Copy and rename: no process ever maps a half-written file.
            let tmp = dir.join(format!("{name}.{}", std::process::id()));
            std::fs::copy(&built, &tmp).unwrap();
            std::fs::rename(&tmp, dir.join(name)).unwrap();
        }
        dir
    })
    .clone()
}

/// Compiles `source` into `CARGO_TARGET_TMPDIR/NAME` with warnings as
/// errors, against `ipn.h` and this build's `libipn.so`.
fn compile(source: &str, name: &str) -> PathBuf {
    let lib = library_dir();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let result = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1"])
        .arg("-I")
        .arg(Path::new(CRATE).join("include"))
        .arg(Path::new(CRATE).join(source))
        .arg("-L")
        .arg(&lib)
        .args(["-lipn", "-o"])
        .arg(&out)
        .output()
        .expect("`cc` is not installed: install the Debian packages gcc and libc6-dev");
    assert!(
        result.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("LD_LIBRARY_PATH", library_dir())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// An empty scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ipn-capi-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn c_program_gets_the_errno_values_ipn_h_promises() {
    let program = compile("tests/c/capi.c", "capi");
    let scratch = Scratch::new("errno");
    let out = run(&program, &[scratch.path(), env!("CARGO_PKG_VERSION")]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("all ok"),
        "{}",
        show(&out)
    );
}

/// The network's mode keeps `nobody` out: `ipn_join` fails with `EACCES`
/// and says so. Needs root (CI runs as root); fails otherwise.
#[test]
fn c_program_of_an_outsider_gets_eacces() {
    ipn_test_support::require_root(
        "this test runs the C program as the user nobody",
        &["setpriv"],
    );
    let program = compile("tests/c/capi.c", "capi-outsider");
    // Copies nobody can reach, whatever the checkout's permissions.
    let scratch = Scratch::new("outsider");
    std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (from, name) in [
        (program, "capi"),
        (library_dir().join("libipn.so.0"), "libipn.so.0"),
    ] {
        std::fs::copy(from, scratch.0.join(name)).unwrap();
        std::fs::set_permissions(scratch.0.join(name), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let net = scratch.0.join("net");
    ipn_core::Network::create(&net, &ipn_core::Config::default()).unwrap(); // mode 0770, root's
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(scratch.0.join("capi"))
        .arg("--outsider")
        .arg(&net)
        .env("LD_LIBRARY_PATH", &scratch.0)
        .output()
        .expect("`setpriv` is not installed: install the Debian package util-linux");
    let _ = ipn_core::Network::remove(&net, true);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn the_shipped_example_exchanges_frames_between_two_processes() {
    let program = compile("examples/exchange.c", "exchange");
    let scratch = Scratch::new("example");
    let net = format!("{}/net", scratch.path());
    let out = run(&program, &[&net, "20"]);
    assert!(out.status.success(), "{}", show(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("20 of 20 pongs"), "{}", show(&out));
    assert!(
        !Path::new(&net).exists(),
        "the example removes the network it made"
    );
}

#[test]
fn the_library_has_its_soname_and_exports_only_the_api() {
    let lib = library_dir().join("libipn.so");
    let out = Command::new("readelf")
        .arg("-dW")
        .arg(&lib)
        .output()
        .expect("`readelf` is not installed: install the Debian package binutils");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(
        dynamic.contains("Library soname: [libipn.so.0]"),
        "{dynamic}"
    );
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("`nm` is not installed: install the Debian package binutils");
    let mut exported: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (_, kind, name) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "T").then(|| name.to_owned())
        })
        .collect();
    exported.sort();
    // Every function ipn.h declares, and nothing else.
    let header = std::fs::read_to_string(Path::new(CRATE).join("include/ipn.h")).unwrap();
    let mut declared: Vec<String> = header
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("ipn_"))
        .filter(|w| header.contains(&format!("{w}(")))
        .filter(|w| *w != "ipn_config_init") // static inline in the header
        .map(str::to_owned)
        .collect();
    declared.sort();
    declared.dedup();
    assert_eq!(exported, declared);
}

#[test]
fn the_pkg_config_file_has_this_version_and_links_libipn() {
    let pc = std::fs::read_to_string(Path::new(CRATE).join("ipn.pc")).unwrap();
    let version = format!("\nVersion: {}\n", env!("CARGO_PKG_VERSION"));
    assert!(pc.contains(&version), "ipn.pc must say{version}");
    assert!(pc.contains("\nName: ipn\n"), "{pc}");
    assert!(pc.contains("\nLibs: -L${libdir} -lipn\n"), "{pc}");
}
