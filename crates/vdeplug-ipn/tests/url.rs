//! Property tests of the `ipn://` URL parser, run reproducibly (a fixed
//! seed, and the regressions in `proptest-regressions/url.txt` first) or,
//! with `IPN_SOAK` set, as a soak (see `ipn_test_support::properties`).
//!
//! Beyond "no panic": a URL written from random options, each spelled by
//! any name of the option table (`url::option_names`) or a prefix that
//! names only it, its value in any form the syntax allows, in any order,
//! quoted, escaped and `%XX`-encoded at random, parses to exactly those
//! options, and the network configuration and VLAN membership they give
//! are what the options say.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use ipn::ethernet::{Vlan, VlanSet};
use ipn_test_support::properties::{proptest_config_saving_to, PROPTEST_SEED};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestError, TestRunner};
use vdeplug_ipn::url::{option_names, parse, Options, Url};

proptest! {
    #![proptest_config(ipn_test_support::proptest_config!("url", 256))]

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

    /// What parses means what it says: random options, written as a URL
    /// in any of the ways the syntax allows, parse back to themselves.
    #[test]
    fn a_url_written_from_options_parses_back_to_them(
        meant in meant(),
        choices in proptest::collection::vec(any::<u8>(), 256),
    ) {
        let text = write_url(&meant, &mut Chooser::new(&choices));
        let url = parse(&text).map_err(|e| {
            TestCaseError::fail(format!("{} refused: {e}", String::from_utf8_lossy(&text)))
        })?;
        let expected = meant.url();
        prop_assert_eq!(&url, &expected, "{}", String::from_utf8_lossy(&text));
        check_meaning(&meant, &url.options)?;
    }
}

// ----- what a URL means ------------------------------------------------------

/// The VLAN part of the options.
#[derive(Debug, Clone)]
enum Membership {
    Transparent,
    Access(u16),
    /// Ranges as (first, how many more), and the native VLAN.
    Trunk(Vec<(u16, u16)>, Option<u16>),
}

/// Options as meant, before they are written.
#[derive(Debug, Clone)]
struct Meant {
    path: Vec<u8>,
    ports: Option<u32>,
    mtu: Option<u32>,
    ring: Option<u32>,
    lossless: Option<bool>,
    mode: Option<u32>,
    group: Option<String>,
    switch: Option<bool>,
    membership: Membership,
}

fn meant() -> impl Strategy<Value = Meant> {
    let membership = prop_oneof![
        Just(Membership::Transparent),
        (1u16..=4094).prop_map(Membership::Access),
        (
            proptest::collection::vec((1u16..=4094, 0u16..40), 1..5),
            proptest::option::of(1u16..=4094)
        )
            .prop_map(|(ranges, native)| Membership::Trunk(ranges, native)),
    ];
    let count = || proptest::option::of(any::<u32>());
    (
        proptest::collection::vec(1u8..=255, 1..24),
        (count(), count(), count()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(0u32..=0o7777),
        // Group names with every character the syntax gives a meaning to.
        proptest::option::of("[a-z0-9_=/\\[\\]'\"%\\\\ .-]{1,12}"),
        proptest::option::of(any::<bool>()),
        membership,
    )
        .prop_map(
            |(path, (ports, mtu, ring), lossless, mode, group, switch, membership)| Meant {
                path,
                ports,
                mtu,
                ring,
                lossless,
                mode,
                group,
                switch,
                membership,
            },
        )
}

impl Meant {
    fn vlans(&self) -> Option<VlanSet> {
        match &self.membership {
            Membership::Trunk(ranges, _) => Some(
                ranges
                    .iter()
                    .flat_map(|&(first, more)| first..=first.saturating_add(more).min(4094))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The URL the parser must give.
    fn url(&self) -> Url {
        let (vlan, native) = match &self.membership {
            Membership::Transparent => (None, None),
            Membership::Access(vid) => (Some(*vid), None),
            Membership::Trunk(_, native) => (None, *native),
        };
        Url {
            path: PathBuf::from(OsString::from_vec(self.path.clone())),
            options: Options {
                ports: self.ports,
                mtu: self.mtu,
                ring: self.ring,
                lossless: self.lossless,
                mode: self.mode,
                group: self.group.clone(),
                protocol: self.switch.map(|switch| {
                    if switch {
                        ipn::Protocol::Switch
                    } else {
                        ipn::Protocol::Hub
                    }
                }),
                vlan,
                trunk: self.vlans(),
                native,
                // The URLs written here never give busypoll (tested in
                // url.rs's own tests).
                busy_poll_us: None,
            },
        }
    }
}

/// The configuration and membership the parsed options give are the
/// meant ones, field by field (the defaults where nothing was given).
fn check_meaning(meant: &Meant, options: &Options) -> Result<(), TestCaseError> {
    let defaults = ipn::Config::default();
    if meant.group.is_none() {
        let config = options
            .config()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(config.max_ports, meant.ports.unwrap_or(defaults.max_ports));
        prop_assert_eq!(config.mtu, meant.mtu.unwrap_or(defaults.mtu));
        prop_assert_eq!(config.ring_slots, meant.ring.or(defaults.ring_slots));
        prop_assert_eq!(config.lossless, meant.lossless.unwrap_or(defaults.lossless));
        prop_assert_eq!(config.mode, meant.mode.unwrap_or(defaults.mode));
        prop_assert_eq!(config.group, None);
        let protocol = match meant.switch {
            Some(true) => ipn::Protocol::Switch,
            Some(false) => ipn::Protocol::Hub,
            None => defaults.protocol,
        };
        prop_assert_eq!(config.protocol, protocol);
    }
    let membership = match &meant.membership {
        Membership::Transparent => Vlan::Transparent,
        Membership::Access(vid) => Vlan::Access(*vid),
        Membership::Trunk(_, native) => Vlan::Trunk {
            vlans: meant.vlans().unwrap(),
            native: *native,
        },
    };
    prop_assert_eq!(options.membership(), membership);
    Ok(())
}

// ----- writing a URL -----------------------------------------------------------

/// Takes the random choices of one way of writing a URL.
struct Chooser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Chooser<'a> {
    fn new(bytes: &'a [u8]) -> Chooser<'a> {
        Chooser { bytes, at: 0 }
    }

    /// A number below `n` (0 once the choices run out).
    fn below(&mut self, n: usize) -> usize {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        usize::from(b) % n.max(1)
    }

    fn one<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }
}

/// The option `typed` names, by the rule of the option table: a name, or
/// a prefix of names of one option only.
fn resolves_to(typed: &str) -> Option<&'static str> {
    if let Some((_, first)) = option_names().find(|(name, _)| *name == typed) {
        return Some(first);
    }
    let mut options = option_names()
        .filter(|(name, _)| name.starts_with(typed))
        .map(|(_, first)| first);
    let first = options.next()?;
    options.all(|o| o == first).then_some(first)
}

/// Some spelling of `option`: one of its names from the table, or a
/// prefix of one that names it alone.
fn spell(option: &str, choose: &mut Chooser) -> String {
    let names: Vec<&str> = option_names()
        .filter(|(_, first)| *first == option)
        .map(|(name, _)| name)
        .collect();
    assert!(!names.is_empty(), "no option {option} in the table");
    let name = choose.one(&names);
    let spellings: Vec<&str> = (1..=name.len())
        .map(|len| &name[..len])
        .filter(|typed| resolves_to(typed) == Some(option))
        .collect();
    choose.one(&spellings).to_string()
}

/// A count as `ipn::values::count` reads it: decimal, hex, or with a
/// binary multiplier.
fn count(n: u32, choose: &mut Chooser) -> String {
    let mut forms = vec![n.to_string(), format!("0x{n:x}"), format!("0X{n:X}")];
    if n.is_multiple_of(1024) {
        forms.push(format!("{}k", n / 1024));
        forms.push(format!("{}K", n / 1024));
        forms.push(format!("{}KiB", n / 1024));
        forms.push(format!("0x{:x}k", n / 1024));
    }
    if n.is_multiple_of(1024 * 1024) {
        forms.push(format!("{}m", n / (1024 * 1024)));
        forms.push(format!("{}M", n / (1024 * 1024)));
    }
    if n.is_multiple_of(1024 * 1024 * 1024) {
        forms.push(format!("{}g", n / (1024 * 1024 * 1024)));
    }
    choose.one(&forms).clone()
}

/// A flag given `on`: the option alone, or with one of its values.
fn flag(key: String, on: bool, choose: &mut Chooser) -> String {
    let values: &[&str] = if on {
        &["", "=1", "=yes", "=true", "=on"]
    } else {
        &["=0", "=no", "=false", "=off"]
    };
    format!("{key}{}", choose.one(values))
}

/// The options of `meant` as `KEY=VALUE` texts, not yet encoded.
fn option_texts(meant: &Meant, choose: &mut Chooser) -> Vec<String> {
    let mut out = Vec::new();
    for (option, value) in [
        ("ports", meant.ports),
        ("mtu", meant.mtu),
        ("ring", meant.ring),
    ] {
        if let Some(n) = value {
            out.push(format!("{}={}", spell(option, choose), count(n, choose)));
        }
    }
    if let Some(lossless) = meant.lossless {
        // lossless=yes is lossy=no.
        out.push(if choose.below(2) == 0 {
            flag(spell("lossless", choose), lossless, choose)
        } else {
            flag(spell("lossy", choose), !lossless, choose)
        });
    }
    if let Some(mode) = meant.mode {
        let prefix = *choose.one(&["", "0", "0o"]);
        out.push(format!("{}={prefix}{mode:o}", spell("mode", choose)));
    }
    if let Some(group) = &meant.group {
        out.push(format!("{}={group}", spell("group", choose)));
    }
    if let Some(switch) = meant.switch {
        out.push(spell(if switch { "switch" } else { "hub" }, choose));
    }
    match &meant.membership {
        Membership::Transparent => {}
        Membership::Access(vid) => out.push(format!("{}={vid}", spell("vlan", choose))),
        Membership::Trunk(ranges, native) => {
            let separator = *choose.one(&[":", ","]);
            let list: Vec<String> = ranges
                .iter()
                .map(|&(first, more)| {
                    let last = first.saturating_add(more).min(4094);
                    if last == first && choose.below(2) == 0 {
                        first.to_string()
                    } else {
                        format!("{first}-{last}")
                    }
                })
                .collect();
            out.push(format!(
                "{}={}",
                spell("trunk", choose),
                list.join(separator)
            ));
            if let Some(native) = native {
                out.push(format!("{}={native}", spell("native", choose)));
            }
        }
    }
    // Any order.
    for i in (1..out.len()).rev() {
        let j = choose.below(i + 1);
        out.swap(i, j);
    }
    out
}

/// `bytes` written so that they decode to themselves: every byte in
/// `special` escaped, `%XX`-encoded or quoted, the others plain or, now
/// and then, encoded too.
fn encode(bytes: &[u8], special: &[u8], choose: &mut Chooser) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in bytes {
        let must = special.contains(&b);
        match choose.below(if must { 4 } else { 12 }) {
            0 => out.extend_from_slice(&[b'\\', b]),
            1 => out.extend_from_slice(format!("%{b:02x}").as_bytes()),
            2 if b != b'\'' => out.extend_from_slice(&[b'\'', b, b'\'']),
            3 if b != b'"' => out.extend_from_slice(&[b'"', b, b'"']),
            2 | 3 => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

/// `meant` written as what follows `ipn://`.
fn write_url(meant: &Meant, choose: &mut Chooser) -> Vec<u8> {
    let mut url = encode(&meant.path, b"['\"\\%", choose);
    let options = option_texts(meant, choose);
    if options.is_empty() && choose.below(2) == 0 {
        return url;
    }
    url.push(b'[');
    for text in options {
        // Empty options are skipped.
        let empty = choose.below(3);
        url.extend(std::iter::repeat_n(b'/', empty));
        url.extend(encode(text.as_bytes(), b"/[]'\"\\%", choose));
        url.push(b'/');
    }
    match choose.below(3) {
        0 => {}                                   // no closing bracket
        1 => url.push(b']'),                      // closed
        _ => url.extend_from_slice(b"]ignored0"), // anything after it is ignored
    }
    url
}

// ----- the configuration of the property tests --------------------------------

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
    let config = ipn_test_support::proptest_config!("url", 256);
    let persistence = format!("{:?}", config.failure_persistence);
    // This crate's file, not ipn-test-support's: the macro reads the
    // manifest directory of the crate that calls it.
    let regressions = concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/url.txt");
    assert!(persistence.contains(regressions), "{persistence}");
    assert!(
        std::path::Path::new(regressions).is_file(),
        "{regressions} is committed"
    );
    if std::env::var_os("IPN_SOAK").is_some() {
        assert_eq!(config.rng_seed, RngSeed::Random);
        return;
    }
    assert_eq!(config.rng_seed, RngSeed::Fixed(PROPTEST_SEED));
    assert_eq!(
        first_cases(ipn_test_support::proptest_config!("url", 256)),
        first_cases(ipn_test_support::proptest_config!("url", 256)),
        "two runs try the same cases"
    );
}

/// The persistence is real: a property that fails saves the failing
/// case's seed (a `cc` line) to the file the configuration names, and a
/// later run, even with another seed, tries that case first.
#[test]
fn a_failing_case_lands_in_the_regression_file_and_is_tried_first() {
    let file = std::env::temp_dir().join(format!(
        "ipn-test-{}-proptest-regressions.txt",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&file);
    let path = file.to_str().unwrap().to_owned();
    let strategy = 0u32..1_000_000;

    // A property false from 1000 up: found, shrunk to 1000, saved.
    let first_failure = std::cell::Cell::new(None);
    let mut runner = TestRunner::new(proptest_config_saving_to(path.clone(), 64));
    let result = runner.run(&strategy, |x| {
        if x >= 1000 && first_failure.get().is_none() {
            first_failure.set(Some(x));
        }
        prop_assert!(x < 1000);
        Ok(())
    });
    match result {
        Err(TestError::Fail(_, minimal)) => assert_eq!(minimal, 1000),
        other => panic!("the failing property passed: {other:?}"),
    }
    let saved = std::fs::read_to_string(&file).expect("the regression file was written");
    eprintln!("{}:\n{saved}", file.display());
    let line = saved
        .lines()
        .find(|l| l.starts_with("cc "))
        .unwrap_or_else(|| panic!("no `cc` line in {}:\n{saved}", file.display()));
    assert!(line.ends_with("# shrinks to 1000"), "{line}");

    // Another seed: the first case tried is the saved one, not a random one.
    let mut config = proptest_config_saving_to(path, 64);
    config.rng_seed = RngSeed::Fixed(!PROPTEST_SEED);
    let tried = std::cell::RefCell::new(Vec::new());
    let _ = TestRunner::new(config).run(&strategy, |x| {
        tried.borrow_mut().push(x);
        Ok(())
    });
    let tried = tried.into_inner();
    assert_eq!(
        tried.first().copied(),
        first_failure.get(),
        "tried first: {:?}",
        &tried[..tried.len().min(4)]
    );
    let _ = std::fs::remove_file(&file);
}
