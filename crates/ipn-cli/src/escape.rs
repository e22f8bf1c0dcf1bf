//! How every command shows what members wrote: frames (`ipn sub`), port
//! descriptions (`ipn status` as a table, as JSON, as Prometheus metrics,
//! `ipn top`). This module is the one place that decides it.
//!
//! A member is any process of the network's group, and whoever runs
//! `ipn status` is often root: a member's bytes are not to be trusted with
//! a terminal. An escape sequence (ESC, or CSI as the one C1 character
//! U+009B) could recolour or rewrite the screen; a newline or U+2028 could
//! end the line early and forge what follows (an event line `# readers=R
//! writers=W` with `--events`, a table row); a bidirectional override
//! (U+202E) could show text in another order than it is; a zero-width
//! character (U+200B) could make two descriptions look alike.
//!
//! [`must_escape`] says which characters never pass as they are: control
//! characters (C0, DEL, C1), line and paragraph separators, bidirectional
//! and zero-width formatting characters. Each output escapes them in its
//! own syntax, so that what it says can be read back:
//! - terminal text ([`frame_line`], [`text`]): `\\` a backslash, `\n` `\r`
//!   `\t`, `\xHH` any other ASCII control or byte not part of valid UTF-8,
//!   `\u{HHHH}` any other character [`must_escape`] names; [`frame_line`]
//!   also writes a leading `#` as `\#` (only event lines begin with `#`).
//!   Printable text, non-ASCII UTF-8 included, is kept as it is;
//! - JSON ([`json_pretty`]): `\uXXXX` (UTF-16), which every JSON reader
//!   decodes back to the character: the data is unchanged, and no raw
//!   control reaches a terminal that shows the document;
//! - Prometheus label values ([`prometheus_label`]): the format's own `\\`
//!   `\"` `\n`, and, as the format has no other escape, the text `\u{HHHH}`
//!   for the others (its backslash escaped).
//!
//! Invariants: the output of each holds no character [`must_escape`]
//! names, and is valid UTF-8; that of [`frame_line`] and [`text`] is one
//! line, and every `\` in it starts an escape, so the bytes can be
//! recovered from it.

use std::fmt::Write;
use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

/// Whether `c` never reaches an output as it is: a control character (C0,
/// DEL, C1), or a character a terminal does not show but that changes how
/// the text reads (see [`is_invisible_format`]).
pub fn must_escape(c: char) -> bool {
    c.is_control() || is_invisible_format(c)
}

/// Appends `frame`, escaped as the module says, to `line` (no newline).
pub fn frame_line(frame: &[u8], line: &mut String) {
    for chunk in frame.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(c, line.is_empty(), line);
        }
        for byte in chunk.invalid() {
            let _ = write!(line, "\\x{byte:02x}");
        }
    }
}

/// Member-written text (a port's description) as terminal text: escaped
/// as [`frame_line`] escapes a frame, a leading `#` kept.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_char(c, false, &mut out);
    }
    out
}

/// Appends `c`, escaped if it must be; `first` when it starts a line of
/// `ipn sub` (where only event lines begin with `#`).
fn push_char(c: char, first: bool, line: &mut String) {
    match c {
        '\\' => line.push_str("\\\\"),
        '\n' => line.push_str("\\n"),
        '\r' => line.push_str("\\r"),
        '\t' => line.push_str("\\t"),
        '#' if first => line.push_str("\\#"),
        c if c.is_ascii_control() => {
            let _ = write!(line, "\\x{:02x}", c as u32);
        }
        c if must_escape(c) => push_unicode(c, line),
        c => line.push(c),
    }
}

/// Appends `c` as the text `\u{HHHH}`.
fn push_unicode(c: char, out: &mut String) {
    let _ = write!(out, "\\u{{{:x}}}", c as u32);
}

/// `text` as a Prometheus label value (what goes between its double
/// quotes): the format's escapes for backslash, double quote and newline,
/// so that a reader gets those back; every other character
/// [`must_escape`] names as the text `\u{HHHH}`, its backslash escaped
/// (the format has no such escape of its own).
pub fn prometheus_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if must_escape(c) => {
                out.push('\\');
                push_unicode(c, &mut out);
            }
            c => out.push(c),
        }
    }
    out
}

/// `value` as pretty-printed JSON in which every character
/// [`must_escape`] names is a `\uXXXX` escape. (serde_json escapes only C0
/// controls, `"` and `\`, and passes DEL, C1 controls, U+2028 or U+202E
/// raw.)
pub fn json_pretty(value: &impl Serialize) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut out, SafeJson(PrettyFormatter::new()));
    value.serialize(&mut serializer)?;
    // serde_json writes UTF-8, and our escapes are ASCII.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// serde_json's pretty formatter, with the contents of strings escaped as
/// [`json_pretty`] says.
struct SafeJson<'a>(PrettyFormatter<'a>);

impl Formatter for SafeJson<'_> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut from = 0;
        for (at, c) in fragment.char_indices() {
            if must_escape(c) {
                writer.write_all(&fragment.as_bytes()[from..at])?;
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                from = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[from..])
    }

    // The layout is the pretty formatter's.
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Characters a terminal does not show but that change how the line
/// reads: line and paragraph separators, bidirectional controls (which
/// reorder what follows), zero-width characters.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        // Arabic letter mark; zero-width space and joiners, LRM, RLM.
        '\u{061c}' | '\u{200b}'..='\u{200f}'
        // Line and paragraph separators, bidi embeddings and overrides.
        | '\u{2028}'..='\u{202e}'
        // Word joiner, invisible operators, bidi isolates.
        | '\u{2060}'..='\u{206f}'
        // Zero-width no-break space (BOM), interlinear annotations.
        | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(frame: &[u8]) -> String {
        let mut line = String::new();
        frame_line(frame, &mut line);
        line
    }

    #[test]
    fn printable_text_and_utf8_are_kept() {
        assert_eq!(line(b"hello, world ~!"), "hello, world ~!");
        assert_eq!(line("café ÿ 日本 🙂".as_bytes()), "café ÿ 日本 🙂");
        assert_eq!(line(b"a # not first"), "a # not first");
    }

    #[test]
    fn controls_backslash_and_a_leading_hash_are_escaped() {
        assert_eq!(line(b"a\nb\r\tc\\d"), r"a\nb\r\tc\\d");
        assert_eq!(line(b"\x1b[2J\x00\x07\x7f"), r"\x1b[2J\x00\x07\x7f");
        assert_eq!(line(b"# readers=1 writers=1"), r"\# readers=1 writers=1");
        assert_eq!(line(b"##"), r"\##");
    }

    #[test]
    fn invalid_utf8_is_escaped_byte_by_byte() {
        assert_eq!(line(b"a\xffb"), r"a\xffb");
        assert_eq!(line(b"\xc3"), r"\xc3");
        assert_eq!(line(b"\xe2\x82"), r"\xe2\x82");
        assert_eq!(line(b"\xc3\xa9\xc3"), r"é\xc3");
    }

    #[test]
    fn c1_controls_and_invisible_formatting_are_escaped() {
        // CSI as one C1 character, RLO, line separator, BOM.
        assert_eq!(line("\u{9b}31m".as_bytes()), r"\u{9b}31m");
        assert_eq!(line("x\u{202e}y".as_bytes()), r"x\u{202e}y");
        assert_eq!(line("\u{2028}".as_bytes()), r"\u{2028}");
        assert_eq!(line("\u{feff}".as_bytes()), r"\u{feff}");
    }

    /// Right-to-left override, line separator, zero-width space, CSI as
    /// one C1 character, DEL, a BOM; then text kept as it is.
    const HOSTILE: &str = "a\u{202e}b\u{2028}c\u{200b}d\u{9b}31m\u{7f}\u{feff}é🙂";

    #[test]
    fn member_text_is_escaped_alike_for_the_terminal_json_and_prometheus() {
        assert_eq!(
            text(HOSTILE),
            r"a\u{202e}b\u{2028}c\u{200b}d\u{9b}31m\x7f\u{feff}é🙂"
        );
        assert_eq!(text("# not an event\n"), r"# not an event\n");
        assert_eq!(
            prometheus_label(HOSTILE),
            r"a\\u{202e}b\\u{2028}c\\u{200b}d\\u{9b}31m\\u{7f}\\u{feff}é🙂"
        );
        assert_eq!(prometheus_label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        let json = json_pretty(&serde_json::json!({ "description": HOSTILE })).unwrap();
        assert_eq!(
            json,
            r#"{
  "description": "a\u202eb\u2028c\u200bd\u009b31m\u007f\ufeffé🙂"
}"#
        );
        // Read back, the JSON says exactly what the member wrote.
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["description"], HOSTILE);
        for out in [text(HOSTILE), prometheus_label(HOSTILE)] {
            assert!(!out.chars().any(must_escape), "{out:?}");
        }
        assert!(!json.chars().any(raw_in_json), "{json:?}");
    }

    #[test]
    fn json_keeps_serde_jsons_layout_and_its_own_escapes() {
        let value = serde_json::json!({"a": [1, "x\"\\\n\u{1}"], "b": {}, "c": [], "d": null});
        assert_eq!(
            json_pretty(&value).unwrap(),
            serde_json::to_string_pretty(&value).unwrap()
        );
    }

    #[test]
    fn every_byte_value_gives_one_line_without_controls() {
        let all: Vec<u8> = (0..=255).collect();
        for frame in [&all[..], &all[1..], &all[128..]] {
            let out = line(frame);
            assert!(!out.chars().any(|c| c.is_control()), "{out:?}");
            assert!(!out.starts_with('#'));
        }
    }

    #[test]
    fn every_character_that_must_be_escaped_is_escaped_in_every_output() {
        let all: String = (0..=0x10ffff).filter_map(char::from_u32).collect();
        let json = json_pretty(&serde_json::json!([&all])).unwrap();
        for out in [text(&all), prometheus_label(&all)] {
            assert!(!out.chars().any(must_escape));
        }
        assert!(!json.chars().any(raw_in_json));
    }

    /// A character of `must_escape` in pretty JSON other than the
    /// newlines of its layout.
    fn raw_in_json(c: char) -> bool {
        c != '\n' && must_escape(c)
    }
}
