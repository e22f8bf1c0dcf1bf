//! Property tests of the `ipn://` URL parser, run reproducibly (a fixed
//! seed, and the regressions in `proptest-regressions/url.txt` first) or,
//! with `IPN_SOAK` set, as a soak (see `common::proptest_config`).

mod common;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngSeed, TestRunner};
use vdeplug_ipn::url::parse;

proptest! {
    #![proptest_config(common::proptest_config("url"))]

    /// Whatever a program passes as a URL, parsing gives a URL or an
    /// error, never a panic (the FFI layer catches panics, but a panic
    /// would still be a bug).
    #[test]
    fn any_bytes_parse_or_give_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    /// URL-shaped input, with brackets, slashes, quotes and escapes.
    #[test]
    fn url_shaped_input_parses_or_gives_an_error(text in "/[a-z/]{0,12}(\\[[a-z=0-9/'\"%\\\\]{0,30}\\]?)?") {
        if let Ok(url) = parse(text.as_bytes()) {
            let _ = url.options.config();
        }
    }
}

/// The cases a runner with this configuration generates first.
fn first_cases(config: ProptestConfig) -> Vec<Vec<u8>> {
    let mut runner = TestRunner::new(config);
    let strategy = proptest::collection::vec(any::<u8>(), 0..64);
    (0..32)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

#[test]
fn property_tests_are_reproducible_unless_soaking() {
    let config = common::proptest_config("url");
    let persistence = format!("{:?}", config.failure_persistence);
    assert!(
        persistence.contains("proptest-regressions/url.txt"),
        "{persistence}"
    );
    let regressions = concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/url.txt");
    assert!(
        std::path::Path::new(regressions).is_file(),
        "{regressions} is committed"
    );
    if std::env::var_os("IPN_SOAK").is_some() {
        assert_eq!(config.rng_seed, RngSeed::Random);
        return;
    }
    assert_eq!(config.rng_seed, RngSeed::Fixed(common::PROPTEST_SEED));
    assert_eq!(
        first_cases(common::proptest_config("url")),
        first_cases(common::proptest_config("url")),
        "two runs try the same cases"
    );
}
