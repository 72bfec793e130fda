//! [`Text`]: a fixed-size, `fmt::Write`-able string for messages built without a heap (a
//! scenario's FAIL reason, a PASS note). Output that does not fit is cut at a character boundary
//! and marked with `...`; writing never fails and never panics.

use core::fmt;

/// Bytes a [`Text`] holds.
pub const TEXT_CAPACITY: usize = 200;

const ELLIPSIS: &str = "...";

/// A short message.
#[derive(Clone, Copy)]
pub struct Text {
    buf: [u8; TEXT_CAPACITY],
    len: usize,
    truncated: bool,
}

impl Text {
    /// The empty message.
    pub const fn new() -> Self {
        Text {
            buf: [0; TEXT_CAPACITY],
            len: 0,
            truncated: false,
        }
    }

    /// `args` rendered (and cut to fit).
    pub fn format(args: fmt::Arguments<'_>) -> Self {
        let mut text = Text::new();
        // Text's write_str never fails, so neither does write_fmt (unless a Display impl does).
        let _ = fmt::Write::write_fmt(&mut text, args);
        text
    }

    /// The message so far.
    pub fn as_str(&self) -> &str {
        // Only whole `str` prefixes cut at char boundaries are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("<invalid text>")
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::new()
    }
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let room = TEXT_CAPACITY - self.len;
        if s.len() <= room {
            self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        // Keep room for the ellipsis and cut on a char boundary.
        let mut keep = room.saturating_sub(ELLIPSIS.len());
        while keep > 0 && !s.is_char_boundary(keep) {
            keep -= 1;
        }
        self.buf[self.len..self.len + keep].copy_from_slice(&s.as_bytes()[..keep]);
        self.len += keep;
        let tail = ELLIPSIS.len().min(TEXT_CAPACITY - self.len);
        self.buf[self.len..self.len + tail].copy_from_slice(&ELLIPSIS.as_bytes()[..tail]);
        self.len += tail;
        self.truncated = true;
        Ok(())
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_are_kept_whole() {
        let t = Text::format(format_args!("PSCI_VERSION returned {:#x}", 0x10000));
        assert_eq!(t.as_str(), "PSCI_VERSION returned 0x10000");
    }

    #[test]
    fn long_messages_are_cut_and_marked() {
        let long = "x".repeat(TEXT_CAPACITY * 2);
        let t = Text::format(format_args!("{long}"));
        assert_eq!(t.as_str().len(), TEXT_CAPACITY);
        assert!(t.as_str().ends_with(ELLIPSIS));
    }

    #[test]
    fn cuts_never_split_a_character() {
        let long = "é".repeat(TEXT_CAPACITY);
        let t = Text::format(format_args!("a{long}"));
        assert!(t.as_str().ends_with(ELLIPSIS));
        assert!(t.as_str().len() <= TEXT_CAPACITY);
    }
}
