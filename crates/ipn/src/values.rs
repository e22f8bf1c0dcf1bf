//! The text of the values a person gives ipn: one parser per value, used
//! by the `ipn` command line and the `ipn://` URL of the vdeplug plugin
//! alike, so a value that one accepts the other accepts too, and means
//! the same.
//!
//! | value         | grammar                                              | examples               |
//! |---------------|------------------------------------------------------|------------------------|
//! | [`mode`]      | octal digits, optionally after `0o`, at most `7777`  | `0770`, `660`, `0o750` |
//! | [`vlan_id`]   | decimal, 1 to 4094                                   | `10`, `4094`           |
//! | [`vlan_list`] | IDs and ranges `A-B`, separated by `:` or `,`        | `10:20:100-110`, `1,5-7` |
//! | [`count`]     | a [number](#numbers) that fits in 32 bits            | `1500`, `0x800`, `9k`  |
//! | [`byte_size`] | a [number](#numbers) that fits in 64 bits            | `262144`, `256K`, `1MiB` |
//! | [`busy_poll`] | decimal microseconds, 0 (off) to 100000              | `50`                   |
//!
//! # Numbers
//!
//! Decimal digits, or `0x` / `0X` and hex digits, then optionally a binary
//! multiplier: `K` (×1024), `M` (×1024²) or `G` (×1024³), in either case,
//! which may be followed by `B`, `i` or `iB` (`256K`, `256KiB`, `256kb`).
//! A size in bytes may also end in a lone `B` (`1500B`). Hex digits are
//! read first, so `0x1B` is 27, never 1 byte.
//!
//! # Invariants
//!
//! - Whitespace around a value, and around each item of a VLAN list, is
//!   ignored (the command line always did); whitespace inside a number or
//!   between two IDs is an error (`10 20` is neither 10, 20 nor 1020).
//! - A number may start with one `+` (`+10`), as Rust's own number
//!   parsing, which read most of these values before, allows; never `-`.
//! - No value is ever truncated or wrapped: a number too big for its type
//!   is an error, as is an ID out of range.
//! - Every error ([`ValueError`]) names the text, the value it is not, and
//!   what to write instead.
//!
//! The accepted forms are the union of what the command line and the URL
//! accepted when they parsed separately (the URL's hex and `k`/`m`, the
//! command line's `0o`, `G`, `KiB` and whitespace), so no command line
//! or URL that worked stops working.

use std::fmt;
use std::time::Duration;

use crate::ethernet::{VlanSet, VLAN_MAX, VLAN_MIN};

/// The kind of value a text was meant to be: what [`ValueError`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// Permission bits, octal ([`mode`]).
    Mode,
    /// An 802.1Q VLAN ID ([`vlan_id`]).
    VlanId,
    /// A list of VLAN IDs and ranges ([`vlan_list`]).
    VlanList,
    /// A number of things ([`count`]).
    Count,
    /// A number of bytes ([`byte_size`]).
    ByteSize,
    /// Busy-poll microseconds ([`busy_poll`]).
    BusyPoll,
}

impl Value {
    /// The value as a noun phrase: "a VLAN ID".
    pub fn name(self) -> &'static str {
        match self {
            Value::Mode => "a permission mode",
            Value::VlanId => "a VLAN ID",
            Value::VlanList => "a VLAN list",
            Value::Count => "a number",
            Value::ByteSize => "a size in bytes",
            Value::BusyPoll => "a busy-poll time",
        }
    }

    /// What to write instead of a text that is not this value.
    pub fn expected(self) -> &'static str {
        match self {
            Value::Mode => "expected octal permissions up to 7777, such as 0770, 660 or 0o750",
            Value::VlanId => "expected a VLAN ID from 1 to 4094",
            Value::VlanList => {
                "expected VLAN IDs from 1 to 4094 separated by ':' or ',', ranges with '-', \
                 e.g. 10:20:100-110 or 10,20,100-110"
            }
            Value::Count => {
                "expected a number such as 1500, 0x800 or 9k (k, M, G: binary multiples), \
                 below 4Gi"
            }
            Value::ByteSize => {
                "expected a size such as 262144, 256K or 1M (K, M, G: binary multiples)"
            }
            Value::BusyPoll => "expected microseconds from 0 (off) to 100000, e.g. 50",
        }
    }
}

/// A text that is not the value it was given as. `Display`: the message
/// for people, naming the text, the value and what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// The value the text was meant to be.
    pub value: Value,
    /// The text, as given.
    pub text: String,
    /// In a list, the item that is wrong and why (`'5000' is out of range`).
    pub detail: Option<String>,
}

impl ValueError {
    fn new(value: Value, text: &str) -> ValueError {
        ValueError {
            value,
            text: text.to_owned(),
            detail: None,
        }
    }

    /// What to write instead ([`Value::expected`]).
    pub fn expected(&self) -> &'static str {
        self.value.expected()
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' is not {}", self.text, self.value.name())?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        write!(f, ": {}", self.value.expected())
    }
}

impl std::error::Error for ValueError {}

/// Permission bits: octal digits, optionally after `0o`, at most `0o7777`.
pub fn mode(text: &str) -> Result<u32, ValueError> {
    let bad = || ValueError::new(Value::Mode, text);
    let trimmed = unsigned(text);
    let digits = trimmed
        .strip_prefix("0o")
        .or_else(|| trimmed.strip_prefix("0O"))
        .unwrap_or(trimmed);
    let octal = !digits.is_empty() && digits.bytes().all(|b| matches!(b, b'0'..=b'7'));
    // Leading zeros are free (0770, 00770); past them, four digits at most.
    if !octal || digits.trim_start_matches('0').len() > 4 {
        return Err(bad());
    }
    u32::from_str_radix(digits, 8).map_err(|_| bad())
}

/// An 802.1Q VLAN ID, 1 to 4094, in decimal.
pub fn vlan_id(text: &str) -> Result<u16, ValueError> {
    decimal_vid(unsigned(text)).ok_or_else(|| ValueError::new(Value::VlanId, text))
}

/// `text` without the whitespace around it and one leading `+`.
fn unsigned(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('+').unwrap_or(text)
}

fn decimal_vid(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>()
        .ok()
        .filter(|vid| (VLAN_MIN..=VLAN_MAX).contains(vid))
}

/// A list of VLAN IDs and ranges, `10:20:100-110` or `10,20,100-110`
/// (`:` needs no quoting on QEMU's or UML's command line, where `,`
/// separates options). Empty items are skipped; the list must name at
/// least one VLAN.
pub fn vlan_list(text: &str) -> Result<VlanSet, ValueError> {
    let bad = |detail: Option<String>| ValueError {
        detail,
        ..ValueError::new(Value::VlanList, text)
    };
    let mut set = VlanSet::new();
    for item in text.split([':', ',']).map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let (from, to) = item.split_once('-').unwrap_or((item, item));
        let id = |t: &str| {
            decimal_vid(unsigned(t))
                .ok_or_else(|| bad(Some(format!("'{}' is not a VLAN ID", t.trim()))))
        };
        let (from, to) = (id(from)?, id(to)?);
        if from > to {
            return Err(bad(Some(format!("'{item}' is an empty range"))));
        }
        for vid in from..=to {
            set.insert(vid);
        }
    }
    if set.iter().next().is_none() {
        return Err(bad(Some("it names no VLAN".into())));
    }
    Ok(set)
}

/// A count: a [number](self#numbers) that fits in a `u32`.
pub fn count(text: &str) -> Result<u32, ValueError> {
    number(text)
        .filter(|&(_, unit)| !unit.bytes_only)
        .and_then(|(n, _)| u32::try_from(n).ok())
        .ok_or_else(|| ValueError::new(Value::Count, text))
}

/// A size in bytes: a [number](self#numbers) that fits in a `u64`.
pub fn byte_size(text: &str) -> Result<u64, ValueError> {
    number(text)
        .map(|(n, _)| n)
        .ok_or_else(|| ValueError::new(Value::ByteSize, text))
}

/// Busy-poll microseconds, 0 (off) to [`JoinOptions::MAX_BUSY_POLL`]
/// (100000), in decimal.
///
/// [`JoinOptions::MAX_BUSY_POLL`]: crate::JoinOptions::MAX_BUSY_POLL
pub fn busy_poll(text: &str) -> Result<Duration, ValueError> {
    let digits = unsigned(text);
    Some(digits)
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u64>().ok())
        .map(Duration::from_micros)
        .filter(|&d| d <= crate::JoinOptions::MAX_BUSY_POLL)
        .ok_or_else(|| ValueError::new(Value::BusyPoll, text))
}

/// The suffix of a number: its multiplier, and whether it said "bytes"
/// without a multiplier (`1500B`), which only a size may.
#[derive(Clone, Copy)]
struct Unit {
    shift: u32,
    bytes_only: bool,
}

/// A [number](self#numbers), and the unit it was written with; `None`
/// when the text is no number or the number overflows a `u64`.
fn number(text: &str) -> Option<(u64, Unit)> {
    let text = unsigned(text);
    let (radix, rest) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (16, hex),
        None => (10, text),
    };
    let end = rest
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(rest.len());
    let (digits, suffix) = rest.split_at(end);
    if digits.is_empty() {
        return None;
    }
    let unit = unit(suffix)?;
    u64::from_str_radix(digits, radix)
        .ok()?
        .checked_mul(1u64.checked_shl(unit.shift)?)
        .map(|n| (n, unit))
}

/// `K`, `M`, `G` in either case, each alone or followed by `B`, `i` or
/// `iB`; or a lone `B`; or nothing.
fn unit(suffix: &str) -> Option<Unit> {
    let upper = suffix.to_ascii_uppercase();
    let (multiplier, tail) = match upper.as_bytes() {
        [] => {
            return Some(Unit {
                shift: 0,
                bytes_only: false,
            })
        }
        [b'B'] => {
            return Some(Unit {
                shift: 0,
                bytes_only: true,
            })
        }
        [first, tail @ ..] => (*first, tail),
    };
    let shift = match multiplier {
        b'K' => 10,
        b'M' => 20,
        b'G' => 30,
        _ => return None,
    };
    matches!(tail, [] | [b'B'] | [b'I'] | [b'I', b'B']).then_some(Unit {
        shift,
        bytes_only: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each text, and what it must give.
    fn accepts<T: PartialEq + fmt::Debug>(
        parse: fn(&str) -> Result<T, ValueError>,
        cases: &[(&str, T)],
    ) {
        for (text, expected) in cases {
            assert_eq!(parse(text).as_ref(), Ok(expected), "{text:?}");
        }
    }

    /// Each text is refused, with a message naming it, the value it is
    /// not, and the fix (the words given).
    fn refuses<T: fmt::Debug>(
        parse: fn(&str) -> Result<T, ValueError>,
        value: Value,
        fix: &str,
        texts: &[&str],
    ) {
        for text in texts {
            let e = parse(text).expect_err(text);
            assert_eq!(e.value, value, "{text:?}");
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("'{text}' is not {}", value.name())),
                "{text:?}: {message}"
            );
            assert!(message.contains(fix), "{text:?}: {message}");
        }
    }

    #[test]
    fn modes_are_octal_with_or_without_0o() {
        accepts(
            mode,
            &[
                ("0770", 0o770),
                ("770", 0o770),
                ("660", 0o660),
                ("0o750", 0o750),
                ("0O750", 0o750),
                ("1770", 0o1770),
                ("7777", 0o7777),
                ("07777", 0o7777),
                ("00770", 0o770),
                ("0", 0),
                ("0000", 0),
                ("0o0", 0),
                (" 0770 ", 0o770),
                ("+770", 0o770),
            ],
        );
        refuses(
            mode,
            Value::Mode,
            "such as 0770",
            &[
                "", "0o", "0980", "77777", "10000", "rwx", "0x770", "-770", "++770", "07 70",
                "+ 770",
            ],
        );
    }

    #[test]
    fn vlan_ids_go_from_1_to_4094() {
        accepts(
            vlan_id,
            &[
                ("1", 1),
                ("10", 10),
                ("4094", 4094),
                (" 10 ", 10),
                ("+10", 10),
            ],
        );
        refuses(
            vlan_id,
            Value::VlanId,
            "from 1 to 4094",
            &[
                "", "0", "4095", "65536", "ten", "++10", "-1", "1 0", "0x10", "+",
            ],
        );
    }

    #[test]
    fn vlan_lists_take_colons_commas_and_ranges() {
        let set = |ids: &[u16]| ids.iter().copied().collect::<VlanSet>();
        accepts(
            vlan_list,
            &[
                ("10", set(&[10])),
                ("10:20", set(&[10, 20])),
                ("10,20", set(&[10, 20])),
                ("10:20,30", set(&[10, 20, 30])),
                ("100-102", set(&[100, 101, 102])),
                ("1:5-7", set(&[1, 5, 6, 7])),
                ("10, 20", set(&[10, 20])),
                (" 10 - 12 ", set(&[10, 11, 12])),
                ("10,,20,", set(&[10, 20])),
                ("5-5", set(&[5])),
                ("+10:+20-+21", set(&[10, 20, 21])),
                ("1-4094", (1..=4094).collect()),
            ],
        );
        refuses(
            vlan_list,
            Value::VlanList,
            "e.g. 10:20:100-110",
            &[
                "", ",", "0", "10:5000", "0-3", "9-3", "10 20", "10;20", "x", "10-", "-10", "1-2-3",
            ],
        );
        // The item at fault is named.
        let e = vlan_list("10:5000").unwrap_err().to_string();
        assert!(e.contains("('5000' is not a VLAN ID)"), "{e}");
        let e = vlan_list("9-3").unwrap_err().to_string();
        assert!(e.contains("('9-3' is an empty range)"), "{e}");
    }

    #[test]
    fn counts_take_hex_and_binary_multipliers() {
        accepts(
            count,
            &[
                ("0", 0),
                ("1500", 1500),
                ("0x800", 0x800),
                ("0X1b", 27),
                ("0x1B", 27),
                ("9k", 9216),
                ("9K", 9216),
                ("9KiB", 9216),
                ("1m", 1 << 20),
                ("1M", 1 << 20),
                ("1G", 1 << 30),
                ("0x10k", 16 << 10),
                ("4294967295", u32::MAX),
                ("3g", 3 << 30),
                (" 64 ", 64),
                ("+64", 64),
            ],
        );
        refuses(
            count,
            Value::Count,
            "such as 1500, 0x800 or 9k",
            &[
                "",
                "k",
                "0x",
                "0xZZ",
                "12a",
                "-1",
                "++1",
                "+",
                "4294967296",
                "4g",
                "1.5k",
                "9kk",
                "9 k",
                "1T",
                "1500B",
            ],
        );
    }

    #[test]
    fn byte_sizes_take_the_same_numbers_into_64_bits() {
        accepts(
            byte_size,
            &[
                ("262144", 262144),
                ("256K", 256 << 10),
                ("256k", 256 << 10),
                ("256KB", 256 << 10),
                ("256KiB", 256 << 10),
                ("256kib", 256 << 10),
                ("1M", 1 << 20),
                ("1Mi", 1 << 20),
                ("4G", 4 << 30),
                ("1500B", 1500),
                ("0x40000", 0x40000),
                ("18446744073709551615", u64::MAX),
            ],
        );
        refuses(
            byte_size,
            Value::ByteSize,
            "such as 262144, 256K or 1M",
            &[
                "",
                "K",
                "256X",
                "256KBB",
                "256KIBB",
                "256BB",
                "18446744073709551616",
                "17179869184G",
                "-1",
                "1 M",
            ],
        );
    }

    #[test]
    fn busy_poll_is_microseconds_up_to_the_join_limit() {
        accepts(
            busy_poll,
            &[
                ("0", Duration::ZERO),
                ("50", Duration::from_micros(50)),
                (" 50 ", Duration::from_micros(50)),
                ("+50", Duration::from_micros(50)),
                ("100000", crate::JoinOptions::MAX_BUSY_POLL),
            ],
        );
        refuses(
            busy_poll,
            Value::BusyPoll,
            "0 (off) to 100000",
            &["", "-1", "100001", "5ms", "x", "++5", "0x10"],
        );
        // The message's bound is the library's.
        assert_eq!(crate::JoinOptions::MAX_BUSY_POLL.as_micros(), 100_000);
    }
}
