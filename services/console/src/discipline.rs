//! The line discipline: turns received bytes into edited lines, the echo a terminal should show,
//! and interrupts. Pure (no system calls), so every editing rule is tested on the host.
//!
//! Rules:
//! - printable bytes (0x20..0x7e, and UTF-8 sequences) are appended and echoed;
//! - backspace (0x08) or DEL (0x7f) erases the last character (a whole UTF-8 sequence), echoing
//!   `"\x08 \x08"`; with nothing to erase it does nothing; Ctrl-U erases the whole line;
//! - CR or LF ends the line (echo `"\n"`); LF right after CR is the same end of line (CRLF);
//! - Ctrl-C discards the line being edited, echoes `"^C\n"` and reports [`Input::Interrupt`];
//! - ANSI escape sequences (arrow keys: `ESC [ A`, `ESC O P` ...) are swallowed whole;
//! - other control bytes (Ctrl-D, tab, NUL ...) are ignored;
//! - a line holds at most [`MAX_LINE`] bytes: a byte that does not fit is refused and echoed as a
//!   bell (0x07) so the typist hears it; a UTF-8 sequence that would not fit whole is refused
//!   whole. A line that lost bytes this way is not handed on when it ends: the reader gets
//!   [`Input::TooLong`] with the length that was typed (so a pasted or piped command is never
//!   run cut short); erasing anything (backspace, Ctrl-U) after a refusal accepts the line as
//!   shown.
//!
//! Invariant: the line is always valid UTF-8 up to a possibly incomplete final sequence, and
//! never longer than [`MAX_LINE`].

use alloc::vec::Vec;

/// Most bytes in one line.
pub const MAX_LINE: usize = keel_rt::proto::console::MAX_LINE;

const BELL: u8 = 0x07;
const BACKSPACE: u8 = 0x08;
const CTRL_C: u8 = 0x03;
const CTRL_U: u8 = 0x15;
const ESC: u8 = 0x1b;
const DEL: u8 = 0x7f;

/// What a byte completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A finished line, without its line end.
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

/// The line being edited.
#[derive(Debug)]
pub struct LineDiscipline {
    line: Vec<u8>,
    /// The previous byte was CR (an LF now is the second half of CRLF).
    after_cr: bool,
    escape: Escape,
    /// Continuation bytes still to drop after a refused UTF-8 lead byte.
    refused_continuations: u8,
    /// Bytes of this line refused for want of room (since the last erase).
    refused: usize,
}

impl Default for LineDiscipline {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes in the UTF-8 sequence a lead byte starts (1 for ASCII; 0 for a continuation byte).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0x80..=0xbf => 0,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

impl LineDiscipline {
    pub const fn new() -> Self {
        Self { line: Vec::new(), after_cr: false, escape: Escape::None, refused_continuations: 0, refused: 0 }
    }

    /// The line being edited.
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
            b'\r' => {
                self.after_cr = true;
                Some(self.finish(echo))
            }
            b'\n' if after_cr => None,
            b'\n' => Some(self.finish(echo)),
            CTRL_C => {
                self.line.clear();
                self.refused_continuations = 0;
                self.refused = 0;
                echo.extend_from_slice(b"^C\n");
                Some(Input::Interrupt)
            }
            BACKSPACE | DEL => {
                self.erase_char(echo);
                None
            }
            CTRL_U => {
                while !self.line.is_empty() {
                    self.erase_char(echo);
                }
                None
            }
            ESC => {
                self.escape = Escape::Start;
                None
            }
            0x00..=0x1f => None,
            _ => {
                self.append(byte, echo);
                None
            }
        }
    }

    fn finish(&mut self, echo: &mut Vec<u8>) -> Input {
        echo.push(b'\n');
        self.refused_continuations = 0;
        let line = core::mem::take(&mut self.line);
        match core::mem::take(&mut self.refused) {
            0 => Input::Line(line),
            refused => Input::TooLong(line.len() + refused),
        }
    }

    fn erase_char(&mut self, echo: &mut Vec<u8>) {
        self.refused_continuations = 0;
        self.refused = 0;
        while let Some(b) = self.line.pop() {
            if !is_continuation(b) {
                echo.extend_from_slice(b"\x08 \x08");
                return;
            }
        }
    }

    fn append(&mut self, byte: u8, echo: &mut Vec<u8>) {
        if is_continuation(byte) {
            if self.refused_continuations > 0 {
                self.refused_continuations -= 1;
                self.refused += 1;
                return;
            }
            if self.line.len() < MAX_LINE {
                self.line.push(byte);
                echo.push(byte);
            } else {
                self.refused += 1;
            }
            return;
        }
        self.refused_continuations = 0;
        let need = sequence_len(byte);
        if self.line.len() + need > MAX_LINE {
            self.refused_continuations = (need - 1) as u8;
            self.refused += 1;
            echo.push(BELL);
            return;
        }
        self.line.push(byte);
        echo.push(byte);
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
}
