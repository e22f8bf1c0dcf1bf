//! Helpers shared by the integration and unit tests of the workspace's
//! crates, so that each exists once:
//!
//! - [`require_root`] and [`require_tools`]: a test that needs root or a
//!   program fails, saying what to do, when it has not got them;
//! - [`run`], [`must`] and [`text`]: other programs run to completion;
//! - [`remove_anything`]: whatever a test left at a path, removed;
//! - [`netns`]: network namespaces, interfaces and helper processes
//!   ([`Lab`]), removed on drop, named uniquely per process ([`tag`]);
//! - [`properties`]: the one configuration of the property tests (fixed
//!   seed, committed regression files, soak), through [`proptest_config!`];
//! - [`alloc`]: a counting global allocator for the tests that check that
//!   a data path does not allocate;
//! - [`checksum`]: the Internet checksum by RFC 1071's reference loop, to
//!   check the library's checksums against.
//!
//! Invariants:
//! - Nothing here skips a test: what is missing is a loud failure naming
//!   the fix (CI runs as root with every tool that scripts/deps.sh
//!   installs).
//! - What a helper makes is owned by a guard whose `Drop` removes it, also
//!   when the test panics; `Drop` never panics.
//! - Names of namespaces and interfaces hold the process id, so that two
//!   test runs on one machine, or a leftover of a killed run, never
//!   collide; within one test binary each test passes its own base name.

pub mod alloc;
pub mod checksum;
pub mod netns;
pub mod properties;

pub use netns::{in_netns, tag, Lab};

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Fails the test unless it runs as root with every one of `tools`
/// installed; `why` says what the test does that needs root.
#[track_caller]
pub fn require_root(why: &str, tools: &[&str]) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{why}: run the tests as root (CI and scripts/test.sh do)"
    );
    require_tools(tools);
}

/// Fails the test unless every one of `tools` is a program on `PATH`.
#[track_caller]
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "`{tool}` is not installed; scripts/deps.sh installs it"
        );
    }
}

/// Runs `program ARGS` to completion, with nothing on standard input.
#[track_caller]
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("running {program}: {e}; scripts/deps.sh installs what the tests use")
        })
}

/// Runs `program ARGS`, which must succeed; returns its standard output.
#[track_caller]
pub fn must(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Bytes a program printed, as text (invalid UTF-8 replaced).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Removes whatever is at `path` (file, symbolic link or directory tree);
/// never panics, nothing there is fine.
pub fn remove_anything(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installed_tool_passes_and_a_missing_one_fails_saying_what_to_do() {
        require_tools(&["sh"]);
        let missing = std::panic::catch_unwind(|| require_tools(&["ipn-no-such-tool"]));
        let message = *missing.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(
            message,
            "`ipn-no-such-tool` is not installed; scripts/deps.sh installs it"
        );
    }

    #[test]
    fn must_returns_the_output_and_fails_with_what_the_program_said() {
        assert_eq!(must("sh", &["-c", "echo out"]), "out\n");
        let failed = std::panic::catch_unwind(|| must("sh", &["-c", "echo said >&2; exit 3"]));
        let message = *failed.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("said"), "{message}");
    }

    #[test]
    fn remove_anything_removes_a_file_a_tree_and_a_dangling_link() {
        let base = std::env::temp_dir().join(format!("ipn-test-support-{}", std::process::id()));
        remove_anything(&base);
        std::fs::create_dir_all(base.join("tree/deep")).unwrap();
        std::fs::write(base.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink(base.join("nowhere"), base.join("link")).unwrap();
        for name in ["tree", "file", "link", "never-was"] {
            let path = base.join(name);
            remove_anything(&path);
            assert!(std::fs::symlink_metadata(&path).is_err(), "{name} is left");
        }
        remove_anything(&base);
        assert!(!base.exists());
    }

    #[test]
    fn proptest_config_saves_to_the_calling_crates_regression_file() {
        let config = proptest_config!("example", 7);
        let persistence = format!("{:?}", config.failure_persistence);
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/example.txt"
        );
        assert!(persistence.contains(file), "{persistence}");
        if std::env::var_os("IPN_SOAK").is_none() {
            assert_eq!(config.cases, 7);
            assert_eq!(
                config.rng_seed,
                proptest::test_runner::RngSeed::Fixed(properties::PROPTEST_SEED)
            );
        }
    }
}
