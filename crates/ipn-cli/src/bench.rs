//! `ipn bench`: runs the `ipn-bench` binary (crate `crates/ipn-bench`)
//! with the same arguments. The benchmark, its worker processes and its
//! options live there, out of the user's command; this is only the way in.
//!
//! The binary is looked for next to the running `ipn` (where cargo puts
//! both: `target/release/`), then on PATH.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Result};

/// The benchmark binary's name.
const BENCH: &str = "ipn-bench";

#[derive(clap::Args, Debug)]
#[command(
    disable_help_flag = true,
    long_about = "Run the ipn-bench binary with these arguments: ipn against plain AF_UNIX \
        datagram fan-out, one process per peer, throughput in three reader patterns (poll: \
        one receive per readiness of the fd, as QEMU does; sleep; busy), paced latency, \
        receive cost against idle ports. `ipn bench --help` shows ipn-bench's options. \
        Build it with `cargo build --release -p ipn-bench`."
)]
pub struct BenchArgs {
    /// Arguments for ipn-bench (`ipn bench --help` lists them)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

/// Replaces this process with `ipn-bench ARGS`; returns only on failure.
pub fn run(args: &BenchArgs) -> Result<()> {
    let here = std::env::current_exe().ok();
    let bench = find(here.as_deref(), std::env::var_os("PATH")).ok_or_else(|| {
        let next_to = here
            .as_deref()
            .and_then(Path::parent)
            .map_or("the ipn binary".into(), |d| d.display().to_string());
        anyhow!(
            "ipn bench runs the {BENCH} binary, which is neither in {next_to} nor on PATH; \
             build it with `cargo build --release -p {BENCH}` (it is put next to ipn)"
        )
    })?;
    let error = Command::new(&bench).args(&args.args).exec();
    Err(anyhow!("running {}: {error}", bench.display()))
}

/// `ipn-bench` next to `exe`, else the first on `path`.
fn find(exe: Option<&Path>, path: Option<OsString>) -> Option<PathBuf> {
    let beside = exe.and_then(Path::parent).map(|dir| dir.join(BENCH));
    let on_path = path
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(BENCH));
    beside.into_iter().chain(on_path).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
