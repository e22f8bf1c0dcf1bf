//! How `ipn sub` shows a frame as text: one line that a terminal displays
//! as it is, whatever the frame holds.
//!
//! A frame comes from any process on the network, so its bytes are not
//! to be trusted with a terminal: an escape sequence could recolour or
//! rewrite the screen, a newline could end the line early and forge what
//! follows (an event line `# readers=R writers=W` with `--events`).
//!
//! Invariants of [`frame_line`]'s output:
//! - it holds no control character (C0, DEL, C1), no line or paragraph
//!   separator and no bidirectional or zero-width formatting character,
//!   and is valid UTF-8, so it is exactly one line, shown as written;
//! - it never begins with `#`, which only event lines do;
//! - it is unambiguous: every `\` in it starts an escape, so the frame's
//!   bytes can be recovered from it:
//!   `\\` a backslash, `\n` `\r` `\t`, `\xHH` any other byte that is a
//!   control character or not part of valid UTF-8, `\u{HHHH}` a Unicode
//!   control or invisible formatting character, `\#` a leading `#`.
//!
//! Printable text, including non-ASCII UTF-8, is kept as it is.

#![deny(unsafe_code)]

use std::fmt::Write;

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

/// Appends `c`, escaped if it must be; `first` when it starts the line.
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
        c if c.is_control() || is_invisible_format(c) => {
            let _ = write!(line, "\\u{{{:x}}}", c as u32);
        }
        c => line.push(c),
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

    #[test]
    fn every_byte_value_gives_one_line_without_controls() {
        let all: Vec<u8> = (0..=255).collect();
        for frame in [&all[..], &all[1..], &all[128..]] {
            let out = line(frame);
            assert!(!out.chars().any(|c| c.is_control()), "{out:?}");
            assert!(!out.starts_with('#'));
        }
    }
}
