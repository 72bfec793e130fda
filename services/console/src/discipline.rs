//! The line discipline: turns received bytes into edited lines, the echo a terminal should show,
//! and interrupts. Pure (no system calls), so every editing rule is tested on the host.
//!
//! Rules:
//! - printable bytes (0x20..0x7e) and well-formed UTF-8 characters are appended and echoed; a
//!   multi-byte character is held back until its last byte arrives, then appended and echoed
//!   whole;
//! - a byte that cannot be (part of) a well-formed UTF-8 character (a stray continuation byte,
//!   0xc0, 0xc1, 0xf5..=0xff, a lead byte followed by anything but its continuation, an overlong
//!   form, a surrogate, a code point above U+10FFFF) becomes U+FFFD: each maximal invalid
//!   subpart is one U+FFFD, as `String::from_utf8_lossy` and UTF-8 terminals show it (see
//!   [`REPLACEMENT`] for why it is replaced rather than dropped);
//! - backspace (0x08) or DEL (0x7f) erases the last character (a whole UTF-8 sequence), echoing
//!   `"\x08 \x08"`; a character still unfinished is erased without echo (nothing was shown for
//!   it); with nothing to erase it does nothing; Ctrl-U erases the whole line;
//! - CR or LF ends the line (echo `"\n"`); LF right after CR is the same end of line (CRLF);
//! - Ctrl-C discards the line being edited, echoes `"^C\n"` and reports [`Input::Interrupt`];
//! - ANSI escape sequences (arrow keys: `ESC [ A`, `ESC O P` ...) are swallowed whole;
//! - other control bytes (Ctrl-D, tab, NUL ...) are ignored;
//! - any byte but a continuation that fits, backspace, DEL, Ctrl-U and Ctrl-C ends an unfinished
//!   character first, as U+FFFD (so a line end never drops what was typed);
//! - a line holds at most [`MAX_LINE`] bytes: a character that does not fit whole is refused
//!   whole and echoed as a bell (0x07) so the typist hears it. A line that lost bytes this way
//!   is not handed on when it ends: the reader gets [`Input::TooLong`] with the length that was
//!   typed (the bytes in the line, a U+FFFD counting 3, plus the bytes refused), so a pasted or
//!   piped command is never run cut short; erasing anything (backspace, Ctrl-U) after a refusal
//!   accepts the line as shown.
//!
//! Invariants: the line is always valid UTF-8 (an unfinished character is held aside until it
//! is complete or replaced) and never longer than [`MAX_LINE`]; the echo shows exactly what
//! enters the line, so every echo chunk is valid UTF-8 too.

use alloc::vec::Vec;

/// Most bytes in one line.
pub const MAX_LINE: usize = keel_rt::proto::console::MAX_LINE;

/// What an invalid byte (or maximal invalid subpart) becomes: U+FFFD REPLACEMENT CHARACTER.
///
/// Replaced, not dropped: dropping would silently turn what was typed into another, valid,
/// command (`rm a\xe9b` from a Latin-1 terminal would run `rm ab`), and the typist would see
/// nothing where a key was pressed. With U+FFFD the line shows that something unreadable was
/// typed, backspace erases it as one character, and the command fails visibly instead of acting
/// on the wrong name. It is also what a UTF-8 terminal draws for such bytes and what the shell's
/// `from_utf8_lossy` made of them before this rule.
pub const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

const BELL: u8 = 0x07;
const BACKSPACE: u8 = 0x08;
const CTRL_C: u8 = 0x03;
const CTRL_U: u8 = 0x15;
const ESC: u8 = 0x1b;
const DEL: u8 = 0x7f;

/// What a byte completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A finished line, without its line end. Valid UTF-8.
    Line(Vec<u8>),
    /// Ctrl-C: the line being edited was discarded.
    Interrupt,
    /// A line longer than [`MAX_LINE`] ended; it was discarded. The bytes typed in it.
    TooLong(usize),
}

/// Where we are inside an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// After `ESC [`: parameters until a final byte 0x40..0x7e.
    Csi,
    /// After `ESC O`: one more byte.
    Ss3,
}

/// A multi-byte UTF-8 character whose last byte has not arrived yet.
#[derive(Clone, Copy, Debug, Default)]
struct Unfinished {
    bytes: [u8; 4],
    /// Bytes received (0: none pending).
    len: u8,
    /// Bytes the lead byte announced (2..=4).
    need: u8,
}

impl Unfinished {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Whether `b` may follow the bytes so far in a well-formed character (Unicode table 3-7:
    /// the second byte's range after E0, ED, F0 and F4 excludes overlong forms, surrogates and
    /// code points above U+10FFFF).
    fn accepts(&self, b: u8) -> bool {
        let range = match (self.len, self.bytes[0]) {
            (1, 0xe0) => 0xa0..=0xbf,
            (1, 0xed) => 0x80..=0x9f,
            (1, 0xf0) => 0x90..=0xbf,
            (1, 0xf4) => 0x80..=0x8f,
            _ => 0x80..=0xbf,
        };
        range.contains(&b)
    }
}

/// The line being edited.
#[derive(Debug)]
pub struct LineDiscipline {
    line: Vec<u8>,
    /// The previous byte was CR (an LF now is the second half of CRLF).
    after_cr: bool,
    escape: Escape,
    /// A character being received: not in `line`, not echoed yet.
    unfinished: Unfinished,
    /// Bytes of this line refused for want of room (since the last erase).
    refused: usize,
}

impl Default for LineDiscipline {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes in the well-formed UTF-8 character a byte starts: 1 for ASCII, 2..=4 for a lead byte,
/// 0 for a byte no character starts with (continuation, 0xc0, 0xc1 — always overlong — and
/// 0xf5..=0xff, beyond U+10FFFF).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

impl LineDiscipline {
    pub const fn new() -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            escape: Escape::None,
            unfinished: Unfinished { bytes: [0; 4], len: 0, need: 0 },
            refused: 0,
        }
    }

    /// The line being edited (without a character still unfinished).
    pub fn pending(&self) -> &[u8] {
        &self.line
    }

    /// Feeds one received byte: appends what a terminal should echo to `echo`, and returns a
    /// finished line or an interrupt.
    pub fn feed(&mut self, byte: u8, echo: &mut Vec<u8>) -> Option<Input> {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        if self.escape != Escape::None {
            self.escape = match (self.escape, byte) {
                (Escape::Start, b'[') => Escape::Csi,
                (Escape::Start, b'O') => Escape::Ss3,
                (Escape::Csi, 0x20..=0x3f) => Escape::Csi,
                _ => Escape::None,
            };
            return None;
        }
        match byte {
            CTRL_C => {
                self.line.clear();
                self.unfinished.len = 0;
                self.refused = 0;
                echo.extend_from_slice(b"^C\n");
                return Some(Input::Interrupt);
            }
            BACKSPACE | DEL => {
                self.erase_char(echo);
                return None;
            }
            CTRL_U => {
                self.erase_char(echo);
                while !self.line.is_empty() {
                    self.erase_char(echo);
                }
                return None;
            }
            0x20..=0x7e | 0x80..=0xff => {
                self.append(byte, echo);
                return None;
            }
            _ => self.replace_unfinished(echo),
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                Some(self.finish(echo))
            }
            b'\n' if after_cr => None,
            b'\n' => Some(self.finish(echo)),
            ESC => {
                self.escape = Escape::Start;
                None
            }
            _ => None,
        }
    }

    fn finish(&mut self, echo: &mut Vec<u8>) -> Input {
        echo.push(b'\n');
        let line = core::mem::take(&mut self.line);
        match core::mem::take(&mut self.refused) {
            0 => Input::Line(line),
            refused => Input::TooLong(line.len() + refused),
        }
    }

    /// Erases the unfinished character if there is one (it was never echoed), else the last
    /// character of the line.
    fn erase_char(&mut self, echo: &mut Vec<u8>) {
        self.refused = 0;
        if self.unfinished.len > 0 {
            self.unfinished.len = 0;
            return;
        }
        while let Some(b) = self.line.pop() {
            if !is_continuation(b) {
                echo.extend_from_slice(b"\x08 \x08");
                return;
            }
        }
    }

    /// A printable ASCII byte or a byte 0x80..=0xff.
    fn append(&mut self, byte: u8, echo: &mut Vec<u8>) {
        if self.unfinished.len > 0 {
            if self.unfinished.accepts(byte) {
                let u = &mut self.unfinished;
                u.bytes[u.len as usize] = byte;
                u.len += 1;
                if u.len == u.need {
                    let done = core::mem::take(u);
                    self.put(done.as_slice(), done.len as usize, echo);
                }
                return;
            }
            // The character was cut off: it becomes U+FFFD, and `byte` starts afresh.
            self.replace_unfinished(echo);
        }
        match sequence_len(byte) {
            1 => self.put(&[byte], 1, echo),
            0 => self.put(REPLACEMENT, 1, echo),
            need => self.unfinished = Unfinished { bytes: [byte, 0, 0, 0], len: 1, need: need as u8 },
        }
    }

    /// Ends an unfinished character, if any, as one U+FFFD.
    fn replace_unfinished(&mut self, echo: &mut Vec<u8>) {
        let typed = core::mem::take(&mut self.unfinished).len as usize;
        if typed > 0 {
            self.put(REPLACEMENT, typed, echo);
        }
    }

    /// Appends one whole character (`typed`: the bytes received for it) and echoes it, or
    /// refuses it with a bell if it does not fit.
    fn put(&mut self, char_bytes: &[u8], typed: usize, echo: &mut Vec<u8>) {
        if self.line.len() + char_bytes.len() > MAX_LINE {
            self.refused += typed;
            echo.push(BELL);
            return;
        }
        self.line.extend_from_slice(char_bytes);
        echo.extend_from_slice(char_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes`; returns (echo, inputs).
    fn type_bytes(d: &mut LineDiscipline, bytes: &[u8]) -> (Vec<u8>, Vec<Input>) {
        let mut echo = Vec::new();
        let inputs = bytes.iter().filter_map(|&b| d.feed(b, &mut echo)).collect();
        (echo, inputs)
    }

    fn line(s: &str) -> Input {
        Input::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn printable_bytes_are_echoed_and_lf_ends_the_line() {
        let mut d = LineDiscipline::new();
        let (echo, inputs) = type_bytes(&mut d, b"ps -a\n");
        assert_eq!(echo, b"ps -a\n");
        assert_eq!(inputs, [line("ps -a")]);
        assert!(d.pending().is_empty());
    }

    #[test]
    fn crlf_is_one_end_of_line_but_cr_cr_is_two() {
        let mut d = LineDiscipline::new();
        let (echo, inputs) = type_bytes(&mut d, b"a\r\nb\r\r");
        assert_eq!(inputs, [line("a"), line("b"), line("")]);
        assert_eq!(echo, b"a\nb\n\n");
    }

    #[test]
    fn lf_not_after_cr_still_ends_a_line_and_lf_lf_gives_an_empty_line() {
        let mut d = LineDiscipline::new();
        let (_, inputs) = type_bytes(&mut d, b"x\n\n");
        assert_eq!(inputs, [line("x"), line("")]);
    }

    #[test]
    fn backspace_and_del_erase_one_char_with_rubout_echo() {
        let mut d = LineDiscipline::new();
        let (echo, inputs) = type_bytes(&mut d, b"lx\x08s\x7f\x7fps\r");
        assert_eq!(inputs, [line("ps")]);
        assert_eq!(echo, b"lx\x08 \x08s\x08 \x08\x08 \x08ps\n");
    }

    #[test]
    fn backspace_on_an_empty_line_echoes_nothing() {
        let mut d = LineDiscipline::new();
        let (echo, inputs) = type_bytes(&mut d, b"\x7f\x08");
        assert!(echo.is_empty());
        assert!(inputs.is_empty());
    }

    #[test]
    fn backspace_erases_a_whole_utf8_character() {
        let mut d = LineDiscipline::new();
        let (echo, inputs) = type_bytes(&mut d, "aé€\x7f\x7f\n".as_bytes());
        assert_eq!(inputs, [line("a")]);
        assert!(echo.ends_with(b"\x08 \x08\x08 \x08\n"));
    }

    #[test]
    fn ctrl_u_erases_the_whole_line() {
        let mut d = LineDiscipline::new();
        let (echo, inputs) = type_bytes(&mut d, b"ab\x15c\n");
        assert_eq!(inputs, [line("c")]);
        assert_eq!(echo, b"ab\x08 \x08\x08 \x08c\n");
    }

    #[test]
    fn ctrl_c_discards_the_line_echoes_caret_c_and_interrupts() {
        let mut d = LineDiscipline::new();
        let (echo, inputs) = type_bytes(&mut d, b"rm x\x03ls\n");
        assert_eq!(inputs, [Input::Interrupt, line("ls")]);
        assert_eq!(echo, b"rm x^C\nls\n");
    }

    #[test]
    fn ctrl_d_and_other_control_bytes_are_ignored() {
        let mut d = LineDiscipline::new();
        let (echo, inputs) = type_bytes(&mut d, b"\x04a\x04\t\x00b\n");
        assert_eq!(inputs, [line("ab")]);
        assert_eq!(echo, b"ab\n");
    }

    #[test]
    fn arrow_and_function_key_sequences_are_swallowed() {
        let mut d = LineDiscipline::new();
        let (echo, inputs) = type_bytes(&mut d, b"a\x1b[A\x1b[1;5C\x1bOPb\n");
        assert_eq!(inputs, [line("ab")]);
        assert_eq!(echo, b"ab\n");
    }

    #[test]
    fn a_full_line_refuses_more_bytes_with_a_bell_and_still_ends() {
        let mut d = LineDiscipline::new();
        let mut typed = alloc::vec![b'x'; MAX_LINE];
        typed.extend_from_slice(b"yz\n");
        let (echo, inputs) = type_bytes(&mut d, &typed);
        assert_eq!(inputs, [Input::TooLong(MAX_LINE + 2)], "a line cut short is not handed on");
        assert!(echo.ends_with(b"x\x07\x07\n"));
        // The next line is whole again.
        let (_, inputs) = type_bytes(&mut d, b"ls\n");
        assert_eq!(inputs, [Input::Line(b"ls".to_vec())]);
    }

    #[test]
    fn erasing_after_a_refusal_accepts_the_line_as_shown() {
        let mut d = LineDiscipline::new();
        let mut typed = alloc::vec![b'x'; MAX_LINE];
        typed.extend_from_slice(b"yz\x7f\n");
        let (_, inputs) = type_bytes(&mut d, &typed);
        assert_eq!(inputs, [Input::Line(alloc::vec![b'x'; MAX_LINE - 1])]);
    }

    #[test]
    fn a_full_line_accepts_backspace_then_one_more_byte() {
        let mut d = LineDiscipline::new();
        let mut typed = alloc::vec![b'x'; MAX_LINE];
        typed.extend_from_slice(b"\x7fy\n");
        let (_, inputs) = type_bytes(&mut d, &typed);
        let mut want = alloc::vec![b'x'; MAX_LINE - 1];
        want.push(b'y');
        assert_eq!(inputs, [Input::Line(want)]);
    }

    #[test]
    fn a_utf8_character_that_does_not_fit_whole_is_refused_whole() {
        let mut d = LineDiscipline::new();
        let mut typed = alloc::vec![b'x'; MAX_LINE - 1];
        typed.extend_from_slice("é".as_bytes());
        typed.push(b'\n');
        let (echo, inputs) = type_bytes(&mut d, &typed);
        assert_eq!(inputs, [Input::TooLong(MAX_LINE - 1 + 2)]);
        assert!(echo.ends_with(b"x\x07\n"));
    }

    /// Types `bytes` then LF on a fresh discipline; returns (echo, the one line handed on).
    fn one_line(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut d = LineDiscipline::new();
        let mut typed = bytes.to_vec();
        typed.push(b'\n');
        let (echo, inputs) = type_bytes(&mut d, &typed);
        match &inputs[..] {
            [Input::Line(l)] => (echo, l.clone()),
            other => panic!("{bytes:?} gave {other:?}"),
        }
    }

    #[test]
    fn a_stray_continuation_byte_becomes_u_fffd_in_the_line_and_the_echo() {
        let (echo, l) = one_line(b"a\x80b");
        assert_eq!(l, "a\u{fffd}b".as_bytes());
        assert_eq!(echo, "a\u{fffd}b\n".as_bytes());
    }

    #[test]
    fn bytes_no_character_starts_with_each_become_u_fffd() {
        for b in [0xc0, 0xc1, 0xf5, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff] {
            let (echo, l) = one_line(&[b'x', b, b'y']);
            assert_eq!(l, "x\u{fffd}y".as_bytes(), "byte {b:#x}");
            assert_eq!(echo, "x\u{fffd}y\n".as_bytes(), "byte {b:#x}");
        }
    }

    #[test]
    fn overlong_forms_surrogates_and_code_points_past_u_10ffff_are_replaced() {
        // '/' as two bytes, NUL as three, a surrogate, U+110000: each byte is its own invalid
        // subpart, so one U+FFFD each.
        for bad in [&b"\xc0\xaf"[..], b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"] {
            let (echo, l) = one_line(bad);
            let want = "\u{fffd}".repeat(bad.len());
            assert_eq!(l, want.as_bytes(), "{bad:x?}");
            assert_eq!(echo, [want.as_bytes(), b"\n"].concat(), "{bad:x?}");
        }
    }

    #[test]
    fn lines_are_what_from_utf8_lossy_makes_of_the_bytes_typed() {
        let cases: [&[u8]; 8] = [
            b"a\x80",
            b"\xe2\x82x",
            b"\xe2\x82\xac\xe2",
            b"\xf0\x9f\x98\x80\xf0\x9f\x98",
            b"\xc3\xc3\xa9",
            b"\xe0\xa0\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf",
            b"\xfe\xff\xbf\xc2",
            b"\xf1\x80\x80\xe1\x80\xc2\x80",
        ];
        for typed in cases {
            let (echo, l) = one_line(typed);
            let want = alloc::string::String::from_utf8_lossy(typed);
            assert_eq!(l, want.as_bytes(), "{typed:x?}");
            assert_eq!(echo, [want.as_bytes(), b"\n"].concat(), "{typed:x?}");
        }
    }

    #[test]
    fn a_character_is_echoed_only_once_it_is_whole() {
        let mut d = LineDiscipline::new();
        let mut echo = Vec::new();
        for &b in &"€".as_bytes()[..2] {
            assert_eq!(d.feed(b, &mut echo), None);
        }
        assert!(echo.is_empty(), "half a character echoed: {echo:x?}");
        assert!(d.pending().is_empty());
        d.feed("€".as_bytes()[2], &mut echo);
        assert_eq!(echo, "€".as_bytes());
        assert_eq!(d.pending(), "€".as_bytes());
    }

    #[test]
    fn a_line_end_or_control_byte_after_half_a_character_keeps_it_as_u_fffd() {
        let (echo, l) = one_line(b"rm a\xe2\x82");
        assert_eq!(l, "rm a\u{fffd}".as_bytes());
        assert_eq!(echo, "rm a\u{fffd}\n".as_bytes());
        let (echo, l) = one_line(b"a\xc3\tb");
        assert_eq!(l, "a\u{fffd}b".as_bytes());
        assert_eq!(echo, "a\u{fffd}b\n".as_bytes());
    }

    #[test]
    fn backspace_erases_half_a_character_without_echo_and_a_replacement_with_one_rubout() {
        let (echo, l) = one_line(b"ab\xe2\x82\x7f");
        assert_eq!(l, b"ab");
        assert_eq!(echo, b"ab\n", "nothing was shown for the half character, so nothing is rubbed out");
        let (echo, l) = one_line(b"a\x80\x7f");
        assert_eq!(l, b"a");
        assert_eq!(echo, "a\u{fffd}\x08 \x08\n".as_bytes());
    }

    #[test]
    fn a_replacement_that_does_not_fit_is_refused_with_a_bell() {
        let mut d = LineDiscipline::new();
        let mut typed = alloc::vec![b'x'; MAX_LINE - 2];
        typed.extend_from_slice(b"\xff\n");
        let (echo, inputs) = type_bytes(&mut d, &typed);
        assert_eq!(inputs, [Input::TooLong(MAX_LINE - 2 + 1)]);
        assert!(echo.ends_with(b"x\x07\n"));
    }
}
