//! The one configuration of the project's property tests: one seed, one
//! place for the regressions, one way to soak.
//!
//! - Normally (`cargo test`, CI): the fixed seed [`PROPTEST_SEED`], so
//!   that every run tries the same cases and a failure comes back when
//!   run again, and the number of cases the test asks for.
//! - With `IPN_SOAK` set (`scripts/soak.sh`): a random seed each run and
//!   `IPN_SOAK_CASES` cases (100000 by default), to find what nobody has.
//!
//! Either way the seed of each failure is saved, as proptest's `cc` line,
//! to `proptest-regressions/NAME.txt` in the crate being tested (an
//! explicit path: proptest's default, next to the source file above the
//! nearest lib.rs, finds none for files in tests/), and the seeds in that
//! file are tried first on every run. The files are committed; commit
//! what a soak adds, with the fix. The crate being tested is the one that
//! calls [`proptest_config!`](crate::proptest_config): the macro reads
//! its `CARGO_MANIFEST_DIR` where it is called.

use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};

/// The seed of every property test run outside a soak.
pub const PROPTEST_SEED: u64 = 0x1b5e_ed00_c0ff_ee42;

/// The settings of the property tests saved as `NAME` (one regression
/// file per test file) in the calling crate's `proptest-regressions/`,
/// `CASES` cases per property outside a soak:
/// `#![proptest_config(ipn_test_support::proptest_config!("url", 256))]`.
#[macro_export]
macro_rules! proptest_config {
    ($name:expr, $cases:expr) => {
        $crate::properties::proptest_config_saving_to(
            $crate::properties::regression_file(env!("CARGO_MANIFEST_DIR"), $name),
            $cases,
        )
    };
}

/// `CRATE_DIR/proptest-regressions/NAME.txt`.
pub fn regression_file(crate_dir: &str, name: &str) -> String {
    format!("{crate_dir}/proptest-regressions/{name}.txt")
}

/// The property tests' settings (see the module), failures saved to
/// `path`, `cases` cases per property outside a soak.
pub fn proptest_config_saving_to(path: String, cases: u32) -> Config {
    let soak = std::env::var_os("IPN_SOAK").is_some();
    Config {
        cases: if soak {
            std::env::var("IPN_SOAK_CASES")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(100_000)
        } else {
            cases
        },
        rng_seed: if soak {
            RngSeed::Random
        } else {
            RngSeed::Fixed(PROPTEST_SEED)
        },
        // Leaked: proptest keeps the path for the whole run (a few bytes
        // per property).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(Box::leak(
            path.into_boxed_str(),
        )))),
        ..Config::default()
    }
}
