//! Parsing the part of an `ipn://` URL that follows the scheme:
//! `PATH[OPTION/OPTION=VALUE/...]`.
//!
//! The syntax is vdeplug4's `vde_parsepathparms` (libvdeplug_mod), so an
//! `ipn://` URL is written like a `vde://` or `hub://` one:
//!
//! - the path ends at the first unquoted `[`; the options end at the last
//!   unquoted `]` (anything after it is ignored, as vdeplug4 does);
//! - options are separated by unquoted `/`; `KEY` or `KEY=VALUE`; empty
//!   options are skipped;
//! - `'...'` and `"..."` quote, `\` escapes one character, `%XX` is a byte
//!   in hex, in the path and in the options alike;
//! - a key may be abbreviated to any prefix of its name (`lossl`, `mt`),
//!   as vdeplug4 allows. Unlike vdeplug4, which takes the first name in
//!   its table, a prefix must name exactly one option: an ambiguous one
//!   (`m`: `mtu` or `mode`) is an error listing the options. A prefix of
//!   two names of one option (`gr`: `group`, `grp`) names that option.
//!   The option applied is always the one the prefix resolved to (`Key`
//!   is matched, never the text as typed).
//!
//! What differs on purpose: unknown keys, malformed values and keys of
//! features that do not exist yet (`port`) are errors with a message
//! saying what to write instead, never silently ignored.
//!
//! Values are read by [`ipn::values`], the grammar the `ipn` command line
//! uses too: `ports`, `mtu` and `ring` are counts (`1500`, `0x800`,
//! `9k`), `mode` is octal (`0770`, `0o770`), `vlan` and `native` are
//! VLAN IDs, `trunk` a VLAN list, `busypoll` microseconds.
//!
//! 802.1Q membership of the port: `vlan=N` (an access port of VLAN N),
//! `trunk=LIST` (a trunk of the VLANs in LIST) with `native=N` (VLAN N
//! untagged on it); none: transparent. IDs go from 1 to 4094. A LIST
//! separates its IDs with `:` and gives ranges with `-`:
//! `trunk=10:20:100-110`. Not `,`: QEMU's command line splits on commas
//! (they would have to be doubled there) and User-Mode Linux's on commas
//! too, with no way to escape them. `:` needs no quoting in a shell,
//! in vdeplug4's syntax, on QEMU's or on UML's command line. `,` is
//! accepted as well where it can be written (`vde_plug`, C programs).
//!
//! Receiving: `busypoll=US` makes the port keep looking for frames for US
//! microseconds (0 to 100000) after finding none, every time, before it
//! sleeps, like Linux's `SO_BUSY_POLL`: the lowest latency at any rate,
//! for up to US of CPU per receive. Without it the port looks ahead only
//! while frames come closer together than a wake-up costs.
//!
//! This module only parses; it touches no file. [`Options::config`] turns
//! the options into the [`ipn::Config`] a missing network is created with;
//! [`Options::membership`] gives the port's VLAN membership.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use ipn::ethernet::{Vlan, VlanSet};
use ipn::values::{self, ValueError};

/// A parsed `ipn://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The network's path.
    pub path: PathBuf,
    /// The options, as given.
    pub options: Options,
}

/// Options of an `ipn://` URL. `None`: not given (the default applies when
/// creating, and nothing is checked when joining).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `ports=N`: most ports on a new network.
    pub ports: Option<u32>,
    /// `mtu=N`: largest frame on a new network.
    pub mtu: Option<u32>,
    /// `ring=N`: frames buffered per sender on a new network.
    pub ring: Option<u32>,
    /// `lossless` / `lossy`.
    pub lossless: Option<bool>,
    /// `mode=OCTAL`: permissions of a new network.
    pub mode: Option<u32>,
    /// `group=NAME|GID`: group of a new network, as given.
    pub group: Option<String>,
    /// `hub` / `switch`: the protocol of a new network.
    pub protocol: Option<ipn::Protocol>,
    /// `vlan=N`: this port is an access port of VLAN N.
    pub vlan: Option<u16>,
    /// `trunk=LIST`: this port is a trunk of these VLANs.
    pub trunk: Option<VlanSet>,
    /// `native=N` (with `trunk`): VLAN N travels untagged on the trunk.
    pub native: Option<u16>,
    /// `busypoll=US`: this port busy-polls for US microseconds before it
    /// sleeps (`ipn::JoinOptions::busy_poll`).
    pub busy_poll_us: Option<u32>,
}

/// Why a URL was refused. `Display` is the message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// `ipn://` with no path.
    NoPath,
    /// A key that is no option of ours.
    UnknownOption(String),
    /// A prefix that abbreviates more than one option (their names).
    Ambiguous(String, Vec<&'static str>),
    /// A key given without the value it needs, or a flag given a value.
    BadValue {
        /// The option, by its first name.
        key: &'static str,
        /// The value as given (empty when none was).
        value: String,
        /// What to write instead.
        expected: &'static str,
    },
    /// A key of a feature ipn does not have yet.
    NotSupportedYet(&'static str, &'static str),
    /// Both `lossless` and `lossy`, `hub` and `switch`, `vlan` and `trunk`.
    Conflict(&'static str, &'static str),
    /// An option given without the one it goes with (`native` without
    /// `trunk`).
    Requires(&'static str, &'static str),
}

/// An option of the URL, whichever of its names or their prefixes it was
/// given by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Ports,
    Mtu,
    Ring,
    Lossless,
    Lossy,
    Mode,
    Group,
    Hub,
    Switch,
    Vlan,
    Trunk,
    Native,
    BusyPoll,
    Port,
}

/// Every name of every option, the option it names, and how the messages
/// show it ("": recognised only to be refused precisely, not listed).
const KEYS: &[(&str, Key, &str)] = &[
    ("ports", Key::Ports, "ports=N"),
    ("mtu", Key::Mtu, "mtu=N"),
    ("ring", Key::Ring, "ring=N"),
    ("lossless", Key::Lossless, "lossless"),
    ("lossy", Key::Lossy, "lossy"),
    ("mode", Key::Mode, "mode=OCTAL"),
    ("group", Key::Group, "group=NAME"),
    ("grp", Key::Group, "grp=NAME"),
    ("hub", Key::Hub, "hub"),
    ("switch", Key::Switch, "switch"),
    ("vlan", Key::Vlan, "vlan=N"),
    ("trunk", Key::Trunk, "trunk=N:N-N"),
    ("native", Key::Native, "native=N"),
    ("busypoll", Key::BusyPoll, "busypoll=US"),
    ("port", Key::Port, ""),
];

/// Every name an option may be given by, each with the option's first
/// name (`("grp", "group")`), in the order of the table the parser reads:
/// what a URL may spell, for the tests that write URLs from it.
pub fn option_names() -> impl Iterator<Item = (&'static str, &'static str)> {
    KEYS.iter().map(|&(name, key, _)| {
        let first = KEYS
            .iter()
            .find(|&&(_, k, _)| k == key)
            .map_or(name, |&(first, _, _)| first);
        (name, first)
    })
}

fn known_list() -> String {
    KEYS.iter()
        .filter(|(_, _, shown)| !shown.is_empty())
        .map(|(_, _, shown)| *shown)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::NoPath => write!(
                f,
                "no network path; write ipn:///path/to/net (three slashes for an absolute path)"
            ),
            UrlError::UnknownOption(key) => write!(
                f,
                "unknown option '{key}'; the options are {}",
                known_list()
            ),
            UrlError::Ambiguous(key, candidates) => write!(
                f,
                "option '{key}' is ambiguous: it could be {}; the options are {}",
                candidates.join(" or "),
                known_list()
            ),
            UrlError::BadValue {
                key,
                value,
                expected,
            } => write!(f, "option {key}: bad value '{value}': {expected}"),
            UrlError::NotSupportedYet(key, what) => {
                write!(f, "option '{key}' is not supported yet: {what}")
            }
            UrlError::Conflict(a, b) => write!(f, "options '{a}' and '{b}' contradict each other"),
            UrlError::Requires(a, b) => write!(f, "option '{a}' goes with '{b}', which is missing"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Reads the next token of `input` from `start` up to an unquoted,
/// unescaped `delim`, decoding quotes, escapes and `%XX`. Returns the
/// token and where the next one starts (`None`: the input ended).
fn next_token(input: &[u8], start: usize, delim: u8) -> (Vec<u8>, Option<usize>) {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        Plain,
        Single,
        Double,
        Escape,
    }
    let mut out = Vec::new();
    let mut state = St::Plain;
    let mut i = start;
    while let Some(&c) = input.get(i) {
        match state {
            St::Plain => match c {
                b'\'' => state = St::Single,
                b'"' => state = St::Double,
                b'\\' => state = St::Escape,
                _ if c == delim => return (out, Some(i + 1)),
                b'%' => match (hex(input.get(i + 1)), hex(input.get(i + 2))) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    _ => out.push(c),
                },
                _ => out.push(c),
            },
            St::Single if c == b'\'' => state = St::Plain,
            St::Double if c == b'"' => state = St::Plain,
            St::Single | St::Double => out.push(c),
            St::Escape => {
                out.push(c);
                state = St::Plain;
            }
        }
        i += 1;
    }
    (out, None)
}

fn hex(c: Option<&u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Index of the last unquoted, unescaped `delim` in `input`.
fn last_unquoted(input: &[u8], delim: u8) -> Option<usize> {
    let (mut single, mut double, mut escape) = (false, false, false);
    let mut last = None;
    for (i, &c) in input.iter().enumerate() {
        if escape {
            escape = false;
        } else if single {
            single = c != b'\'';
        } else if double {
            double = c != b'"';
        } else {
            match c {
                b'\'' => single = true,
                b'"' => double = true,
                b'\\' => escape = true,
                _ if c == delim => last = Some(i),
                _ => {}
            }
        }
    }
    last
}

/// Splits `PATH[A/B=C]` into the decoded path and the decoded options.
fn split(args: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (path, rest) = next_token(args, 0, b'[');
    let mut options = Vec::new();
    if let Some(start) = rest {
        let inner = &args[start..];
        let inner = match last_unquoted(inner, b']') {
            Some(end) => &inner[..end],
            None => inner,
        };
        let mut pos = Some(0);
        while let Some(p) = pos {
            let (token, next) = next_token(inner, p, b'/');
            if !token.is_empty() {
                options.push(token);
            }
            pos = next;
        }
    }
    (path, options)
}

/// Finds the option `given` names: the one with that exact name, else the
/// only option with a name it is a prefix of.
fn resolve_key(given: &str) -> Result<Key, UrlError> {
    if let Some(&(_, key, _)) = KEYS.iter().find(|(name, _, _)| *name == given) {
        return Ok(key);
    }
    // The first name of each option the prefix matches.
    let mut candidates: Vec<(Key, &'static str)> = Vec::new();
    for &(name, key, _) in KEYS {
        if name.starts_with(given) && !candidates.iter().any(|&(k, _)| k == key) {
            candidates.push((key, name));
        }
    }
    match candidates.as_slice() {
        [] => Err(UrlError::UnknownOption(given.to_owned())),
        [(key, _)] => Ok(*key),
        _ => Err(UrlError::Ambiguous(
            given.to_owned(),
            candidates.iter().map(|&(_, name)| name).collect(),
        )),
    }
}

/// `value` read by the grammar of its kind of value ([`ipn::values`]),
/// the same as on the `ipn` command line; an error names `key`.
fn typed<T>(
    key: &'static str,
    value: Option<&str>,
    parse: fn(&str) -> Result<T, ValueError>,
) -> Result<T, UrlError> {
    let text = value.unwrap_or("");
    parse(text).map_err(|e| UrlError::BadValue {
        key,
        value: text.to_owned(),
        expected: e.expected(),
    })
}

/// `busypoll=US`: microseconds, 0 (off) to the most ipn allows.
fn parse_busy_poll(value: Option<&str>) -> Result<u32, UrlError> {
    let us = typed("busypoll", value, values::busy_poll)?.as_micros();
    // At most 100000: it fits.
    Ok(u32::try_from(us).unwrap_or(u32::MAX))
}

fn parse_flag(key: &'static str, value: Option<&str>) -> Result<bool, UrlError> {
    match value {
        None | Some("1" | "yes" | "true" | "on") => Ok(true),
        Some("0" | "no" | "false" | "off") => Ok(false),
        Some(other) => Err(UrlError::BadValue {
            key,
            value: other.to_owned(),
            expected: "a flag: give it alone, or =yes / =no",
        }),
    }
}

/// Parses what follows `ipn://`.
pub fn parse(args: &[u8]) -> Result<Url, UrlError> {
    let (path, raw_options) = split(args);
    if path.is_empty() {
        return Err(UrlError::NoPath);
    }
    let mut options = Options::default();
    let mut lossy_seen = false;
    let mut lossless_seen = false;
    for raw in raw_options {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (key, value) = match text.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (text.as_str(), None),
        };
        if key.is_empty() {
            return Err(UrlError::UnknownOption(text.clone()));
        }
        match resolve_key(key)? {
            Key::Ports => options.ports = Some(typed("ports", value, values::count)?),
            Key::Mtu => options.mtu = Some(typed("mtu", value, values::count)?),
            Key::Ring => options.ring = Some(typed("ring", value, values::count)?),
            Key::Lossless => {
                lossless_seen = true;
                options.lossless = Some(parse_flag("lossless", value)?);
            }
            Key::Lossy => {
                lossy_seen = true;
                options.lossless = Some(!parse_flag("lossy", value)?);
            }
            Key::Mode => options.mode = Some(typed("mode", value, values::mode)?),
            Key::Group => match value {
                Some(v) if !v.is_empty() => options.group = Some(v.to_owned()),
                _ => {
                    return Err(UrlError::BadValue {
                        key: "group",
                        value: String::new(),
                        expected: "expected a group name or number, e.g. group=kvm",
                    })
                }
            },
            resolved @ (Key::Hub | Key::Switch) => {
                let protocol = if resolved == Key::Hub {
                    ipn::Protocol::Hub
                } else {
                    ipn::Protocol::Switch
                };
                let name = protocol.name();
                if value.is_some() {
                    return Err(UrlError::BadValue {
                        key: name,
                        value: value.unwrap_or_default().to_owned(),
                        expected: "a flag: give it alone",
                    });
                }
                if options.protocol.is_some_and(|p| p != protocol) {
                    return Err(UrlError::Conflict("hub", "switch"));
                }
                options.protocol = Some(protocol);
            }
            Key::Vlan => options.vlan = Some(typed("vlan", value, values::vlan_id)?),
            Key::Trunk => options.trunk = Some(typed("trunk", value, values::vlan_list)?),
            Key::Native => options.native = Some(typed("native", value, values::vlan_id)?),
            Key::BusyPoll => options.busy_poll_us = Some(parse_busy_poll(value)?),
            Key::Port => {
                return Err(UrlError::NotSupportedYet(
                    "port",
                    "choosing a port number; ipn gives each opener a free port",
                ))
            }
        }
    }
    if lossy_seen && lossless_seen {
        return Err(UrlError::Conflict("lossless", "lossy"));
    }
    if options.vlan.is_some() && options.trunk.is_some() {
        return Err(UrlError::Conflict("vlan", "trunk"));
    }
    if options.native.is_some() && options.trunk.is_none() {
        return Err(UrlError::Requires("native", "trunk"));
    }
    Ok(Url {
        path: PathBuf::from(OsString::from_vec(path)),
        options,
    })
}

/// A group name or number that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownGroup(pub String);

impl fmt::Display for UnknownGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "option group: no group named '{}'", self.0)
    }
}

impl Options {
    /// The port's 802.1Q membership: `vlan=N` an access port, `trunk=LIST`
    /// (and `native=N`) a trunk, neither transparent.
    pub fn membership(&self) -> Vlan {
        match (self.vlan, &self.trunk) {
            (Some(vid), _) => Vlan::Access(vid),
            (None, Some(vlans)) => Vlan::Trunk {
                vlans: vlans.clone(),
                native: self.native,
            },
            (None, None) => Vlan::Transparent,
        }
    }

    /// How long the port busy-polls before sleeping (zero: not given, the
    /// default pacing).
    pub fn busy_poll(&self) -> std::time::Duration {
        std::time::Duration::from_micros(u64::from(self.busy_poll_us.unwrap_or(0)))
    }

    /// The configuration a missing network is created with: the defaults
    /// of [`ipn::Config`], overridden by the options given.
    pub fn config(&self) -> Result<ipn::Config, UnknownGroup> {
        let mut config = ipn::Config::default();
        if let Some(ports) = self.ports {
            config.max_ports = ports;
        }
        if let Some(mtu) = self.mtu {
            config.mtu = mtu;
        }
        if let Some(ring) = self.ring {
            config.ring_slots = Some(ring);
        }
        if let Some(lossless) = self.lossless {
            config.lossless = lossless;
        }
        if let Some(mode) = self.mode {
            config.mode = mode;
        }
        if let Some(protocol) = self.protocol {
            config.protocol = protocol;
        }
        if let Some(group) = &self.group {
            config.group = Some(ipn::group_id(group).ok_or_else(|| UnknownGroup(group.clone()))?);
        }
        Ok(config)
    }

    /// The given options an existing network contradicts, as
    /// `(option, asked, actual)`. Mode and group are not compared: they
    /// are the directory's, and an administrator may change them.
    pub fn mismatches(&self, status: &ipn::Status) -> Vec<(&'static str, String, String)> {
        let mut out = Vec::new();
        let mut check = |name, asked: Option<String>, actual: String| {
            if let Some(asked) = asked {
                if asked != actual {
                    out.push((name, asked, actual));
                }
            }
        };
        check(
            "ports",
            self.ports.map(|v| v.to_string()),
            status.max_ports.to_string(),
        );
        check(
            "mtu",
            self.mtu.map(|v| v.to_string()),
            status.mtu.to_string(),
        );
        check(
            "ring",
            self.ring.map(|v| v.to_string()),
            status.ring_slots.to_string(),
        );
        let mode = |lossless: bool| if lossless { "lossless" } else { "lossy" }.to_owned();
        check("lossless", self.lossless.map(mode), mode(status.lossless));
        check(
            "protocol",
            self.protocol.map(|p| p.name().to_owned()),
            status.protocol.name().to_owned(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Url {
        parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> UrlError {
        parse(s.as_bytes()).expect_err(s)
    }

    #[test]
    fn plain_path_has_default_options() {
        let url = ok("/tmp/net");
        assert_eq!(url.path, PathBuf::from("/tmp/net"));
        assert_eq!(url.options, Options::default());
        assert_eq!(url.options.config().unwrap(), ipn::Config::default());
    }

    #[test]
    fn busypoll_takes_microseconds_up_to_100_ms() {
        assert_eq!(ok("/n[busypoll=50]").options.busy_poll_us, Some(50));
        assert_eq!(
            ok("/n[busy=100000]").options.busy_poll(),
            std::time::Duration::from_millis(100)
        );
        assert_eq!(ok("/n[b=0]").options.busy_poll(), std::time::Duration::ZERO);
        assert_eq!(ok("/n").options.busy_poll(), std::time::Duration::ZERO);
        for bad in [
            "/n[busypoll]",
            "/n[busypoll=]",
            "/n[busypoll=-1]",
            "/n[busypoll=1ms]",
        ] {
            assert!(
                matches!(
                    err(bad),
                    UrlError::BadValue {
                        key: "busypoll",
                        ..
                    }
                ),
                "{bad}"
            );
        }
        let e = err("/n[busypoll=100001]");
        assert!(e.to_string().contains("0 (off) to 100000"), "{e}");
    }

    #[test]
    fn relative_path_is_kept_relative() {
        assert_eq!(ok("net[]").path, PathBuf::from("net"));
    }

    #[test]
    fn all_options_parse() {
        let url = ok("/tmp/net[ports=32/lossless/mode=0750/mtu=9000/ring=1k/group=0/hub]");
        assert_eq!(url.path, PathBuf::from("/tmp/net"));
        let o = url.options;
        assert_eq!(o.ports, Some(32));
        assert_eq!(o.mtu, Some(9000));
        assert_eq!(o.ring, Some(1024));
        assert_eq!(o.lossless, Some(true));
        assert_eq!(o.mode, Some(0o750));
        assert_eq!(o.group.as_deref(), Some("0"));
        let c = o.config().unwrap();
        assert_eq!(
            (
                c.max_ports,
                c.mtu,
                c.ring_slots,
                c.lossless,
                c.mode,
                c.group
            ),
            (32, 9000, Some(1024), true, 0o750, Some(0))
        );
    }

    #[test]
    fn empty_options_and_trailing_text_are_ignored_like_vdeplug() {
        let url = ok("/tmp/net[/ports=8//]junk");
        assert_eq!(url.options.ports, Some(8));
    }

    #[test]
    fn missing_closing_bracket_takes_the_rest() {
        assert_eq!(ok("/tmp/net[mtu=2000").options.mtu, Some(2000));
    }

    #[test]
    fn quotes_escapes_and_percent_decode_in_path() {
        assert_eq!(ok("/tmp/'a[b'").path, PathBuf::from("/tmp/a[b"));
        assert_eq!(ok("/tmp/a\\[b").path, PathBuf::from("/tmp/a[b"));
        assert_eq!(ok("/tmp/a%20b").path, PathBuf::from("/tmp/a b"));
        assert_eq!(ok("/tmp/%zz").path, PathBuf::from("/tmp/%zz"));
        assert_eq!(ok("\"/tmp/x]y\"[mtu=1600]").path, PathBuf::from("/tmp/x]y"));
    }

    #[test]
    fn quoted_slash_stays_in_a_value() {
        let url = ok("/n[group='a/b']");
        assert_eq!(url.options.group.as_deref(), Some("a/b"));
    }

    #[test]
    fn unique_prefixes_abbreviate_keys() {
        let o = ok("/n[lossl/ri=4/mt=2000]").options;
        assert_eq!(
            (o.lossless, o.ring, o.mtu),
            (Some(true), Some(4), Some(2000))
        );
    }

    #[test]
    fn ambiguous_prefix_is_an_error_listing_the_options() {
        let e = err("/n[m=5]");
        assert_eq!(e, UrlError::Ambiguous("m".into(), vec!["mtu", "mode"]));
        let message = e.to_string();
        assert!(message.contains("'m' is ambiguous"), "{message}");
        assert!(message.contains("mtu or mode"), "{message}");
        assert!(
            message.contains("the options are ports=N, mtu=N"),
            "{message}"
        );
    }

    /// Every prefix of every option name either resolves to exactly one
    /// option, and then that option (and only it) is applied, or is
    /// ambiguous and refused. `[h]` and `[hu]` once made a switch: the
    /// key was compared as typed after resolving it.
    #[test]
    fn every_prefix_applies_the_one_option_it_resolves_to() {
        let set = |f: fn(&mut Options)| {
            let mut o = Options::default();
            f(&mut o);
            o
        };
        let options: &[(&str, Option<&str>, Options)] = &[
            ("ports", Some("8"), set(|o| o.ports = Some(8))),
            ("mtu", Some("2000"), set(|o| o.mtu = Some(2000))),
            ("ring", Some("4"), set(|o| o.ring = Some(4))),
            ("lossless", None, set(|o| o.lossless = Some(true))),
            ("lossy", None, set(|o| o.lossless = Some(false))),
            ("mode", Some("750"), set(|o| o.mode = Some(0o750))),
            ("group", Some("0"), set(|o| o.group = Some("0".into()))),
            // An alias: its prefixes `g`, `gr` name the same option.
            ("grp", Some("0"), set(|o| o.group = Some("0".into()))),
            ("hub", None, set(|o| o.protocol = Some(ipn::Protocol::Hub))),
            (
                "switch",
                None,
                set(|o| o.protocol = Some(ipn::Protocol::Switch)),
            ),
            ("vlan", Some("10"), set(|o| o.vlan = Some(10))),
            (
                "trunk",
                Some("10:20"),
                set(|o| o.trunk = Some([10, 20].into_iter().collect())),
            ),
        ];
        let ambiguous: &[(&str, &[&str])] = &[
            ("p", &["ports", "port"]),
            ("po", &["ports", "port"]),
            ("por", &["ports", "port"]),
            ("m", &["mtu", "mode"]),
            ("l", &["lossless", "lossy"]),
            ("lo", &["lossless", "lossy"]),
            ("los", &["lossless", "lossy"]),
            ("loss", &["lossless", "lossy"]),
        ];
        let mut checked = 0;
        for (name, value, expected) in options {
            for end in 1..=name.len() {
                let prefix = &name[..end];
                let text = match value {
                    Some(v) => format!("/n[{prefix}={v}]"),
                    None => format!("/n[{prefix}]"),
                };
                if prefix == "port" {
                    // The exact name of another option, refused for now.
                    assert!(matches!(err(&text), UrlError::NotSupportedYet(..)));
                    continue;
                }
                match ambiguous.iter().find(|(p, _)| p == &prefix) {
                    Some((_, candidates)) => assert_eq!(
                        err(&text),
                        UrlError::Ambiguous(prefix.into(), candidates.to_vec()),
                        "{text}"
                    ),
                    None => assert_eq!(&ok(&text).options, expected, "{text}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 54);
        // `native` needs `trunk`: each prefix of it, with one.
        for end in 1..="native".len() {
            let text = format!("/n[trunk=5/{}=1]", &"native"[..end]);
            assert_eq!(ok(&text).options.native, Some(1), "{text}");
        }
        // The cases of the bug report, spelled out.
        assert_eq!(ok("/n[hu]").options.protocol, Some(ipn::Protocol::Hub));
        assert_eq!(ok("/n[h]").options.protocol, Some(ipn::Protocol::Hub));
        assert_eq!(ok("/n[sw]").options.protocol, Some(ipn::Protocol::Switch));
        assert!(matches!(err("/n[hu/sw]"), UrlError::Conflict(..)));
    }

    #[test]
    fn unknown_option_is_an_error_naming_it() {
        let e = err("/n[colour=blue]");
        assert_eq!(e, UrlError::UnknownOption("colour".into()));
        assert!(e.to_string().contains("unknown option 'colour'"));
        assert!(e.to_string().contains("ports=N"));
    }

    #[test]
    fn bare_value_is_an_unknown_option() {
        // vde:// takes `[3]` as a port number; ipn has no such default.
        assert!(matches!(err("/n[3]"), UrlError::UnknownOption(_)));
    }

    #[test]
    fn port_is_not_supported_yet() {
        let e = err("/n[port=2]");
        assert!(matches!(e, UrlError::NotSupportedYet(..)));
        assert!(e.to_string().contains("not supported yet"), "{e}");
    }

    #[test]
    fn vlan_trunk_and_native_give_the_ports_membership() {
        assert_eq!(ok("/n").options.membership(), Vlan::Transparent);
        assert_eq!(ok("/n[vlan=10]").options.membership(), Vlan::Access(10));
        assert_eq!(ok("/n[vlan=4094]").options.membership(), Vlan::Access(4094));
        let trunk = |vlans: &[u16], native| Vlan::Trunk {
            vlans: vlans.iter().copied().collect(),
            native,
        };
        // ':' separates, '-' makes ranges; ',' works too where it can be
        // written; quotes and %XX as everywhere.
        for (url, vlans, native) in [
            ("/n[trunk=10:20]", &[10, 20][..], None),
            (
                "/n[trunk=10:20-22/native=1]",
                &[10, 20, 21, 22][..],
                Some(1),
            ),
            ("/n[native=7/trunk=5]", &[5][..], Some(7)),
            ("/n[trunk=10,20]", &[10, 20][..], None),
            ("/n[trunk='10:20']", &[10, 20][..], None),
            ("/n[trunk=10%3A20]", &[10, 20][..], None),
            ("/n[switch/trunk=1-3/mtu=9000]", &[1, 2, 3][..], None),
        ] {
            assert_eq!(ok(url).options.membership(), trunk(vlans, native), "{url}");
        }
        // Joining options, not the network's: never a mismatch.
        let o = ok("/n[vlan=10]").options;
        assert_eq!(o.config().unwrap(), ipn::Config::default());
    }

    #[test]
    fn vlan_ids_out_of_range_and_contradictions_are_refused() {
        for url in [
            "/n[vlan=0]",
            "/n[vlan=4095]",
            "/n[vlan=]",
            "/n[vlan]",
            "/n[vlan=ten]",
            "/n[trunk=10:5000]",
            "/n[trunk=0]",
            "/n[trunk=]",
            "/n[trunk=9-3]",
            "/n[trunk=10 20]",
            "/n[trunk=10/native=4095]",
        ] {
            let e = err(url);
            assert!(matches!(e, UrlError::BadValue { .. }), "{url}: {e:?}");
            assert!(e.to_string().contains("1 to 4094"), "{url}: {e}");
        }
        let e = err("/n[trunk=10:x]");
        assert!(e.to_string().contains("e.g. 10:20:100-110"), "{e}");
        assert_eq!(
            err("/n[vlan=10/trunk=20]"),
            UrlError::Conflict("vlan", "trunk")
        );
        assert_eq!(err("/n[native=1]"), UrlError::Requires("native", "trunk"));
        assert_eq!(
            err("/n[vlan=10/native=1]"),
            UrlError::Requires("native", "trunk")
        );
        assert!(err("/n[native=1]")
            .to_string()
            .contains("'native' goes with 'trunk'"));
    }

    #[test]
    fn switch_and_hub_choose_the_protocol() {
        assert_eq!(
            ok("/n[switch]").options.protocol,
            Some(ipn::Protocol::Switch)
        );
        assert_eq!(ok("/n[hub]").options.protocol, Some(ipn::Protocol::Hub));
        assert_eq!(ok("/n").options.protocol, None);
        assert!(matches!(err("/n[hub/switch]"), UrlError::Conflict(..)));
        let config = ok("/n[switch]").options.config().unwrap();
        assert_eq!(config.protocol, ipn::Protocol::Switch);
    }

    #[test]
    fn malformed_numbers_are_errors() {
        for url in [
            "/n[ports=]",
            "/n[ports]",
            "/n[mtu=12a]",
            "/n[mtu=-1]",
            "/n[mtu=99999999999]",
            "/n[ring=0xZZ]",
            "/n[mode=0980]",
            "/n[mode=77777]",
            "/n[mode]",
            "/n[lossless=maybe]",
            "/n[group=]",
            "/n[hub=1]",
        ] {
            assert!(matches!(err(url), UrlError::BadValue { .. }), "{url}");
        }
    }

    #[test]
    fn numbers_take_hex_and_suffixes() {
        let o = ok("/n[mtu=9k/ring=0x100/ports=1]").options;
        assert_eq!((o.mtu, o.ring, o.ports), (Some(9216), Some(256), Some(1)));
    }

    #[test]
    fn lossy_and_lossless_conflict() {
        assert!(matches!(err("/n[lossy/lossless]"), UrlError::Conflict(..)));
        assert_eq!(ok("/n[lossy]").options.lossless, Some(false));
        assert_eq!(ok("/n[lossless=no]").options.lossless, Some(false));
    }

    #[test]
    fn empty_path_is_an_error() {
        assert_eq!(err(""), UrlError::NoPath);
        assert_eq!(err("[mtu=2000]"), UrlError::NoPath);
    }

    #[test]
    fn unknown_group_is_reported() {
        let o = ok("/n[group=no-such-group-ipn-test]").options;
        assert!(o.config().is_err());
    }

    #[test]
    fn mismatches_name_the_given_options_only() {
        let status_of = |mtu, lossless| ipn::Status {
            path: "/n".into(),
            protocol: ipn::Protocol::Hub,
            max_ports: 64,
            mtu,
            ring_slots: 256,
            ring_bytes: 256 << 10,
            memory: 17 << 20,
            lossless,
            membership: Default::default(),
            ports: Vec::new(),
        };
        let o = ok("/n[mtu=9000/lossless]").options;
        assert!(o.mismatches(&status_of(9000, true)).is_empty());
        let m = o.mismatches(&status_of(1514, false));
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], ("mtu", "9000".into(), "1514".into()));
        assert!(ok("/n")
            .options
            .mismatches(&status_of(1514, true))
            .is_empty());
    }
}
