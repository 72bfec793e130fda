//! What the receive thread and the server thread share: the line discipline, the queue of
//! finished lines, the foreground program and whether a reader waits. Pure; the threads lock it
//! (see `service`) and do their system calls outside the lock.
//!
//! Rules:
//! - finished lines queue up (at most [`MAX_QUEUED_LINES`]; when full, new lines are dropped and
//!   the oldest kept, so type-ahead before the shell is ready is not lost and stays in order);
//! - Ctrl-C reaches a reader only if one is waiting at that moment (a reader that comes later does
//!   not see a stale interrupt); it asks to kill the foreground program if one is set;
//! - a waiting reader sees a pending interrupt before queued lines.

use crate::discipline::{Input, LineDiscipline};
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Most finished lines kept for readers.
pub const MAX_QUEUED_LINES: usize = 64;

/// What a READ_LINE returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    Line(Vec<u8>),
    Interrupted,
}

/// What the receive thread must do after feeding bytes (outside the lock).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Bytes to echo.
    pub echo: Vec<u8>,
    /// A line finished or an interrupt is pending: wake the reader.
    pub wake_reader: bool,
    /// Ctrl-C with this foreground program set: ask the process manager to kill it.
    pub kill: Option<u64>,
}

/// The console's shared state.
#[derive(Debug, Default)]
pub struct ConsoleState {
    discipline: LineDiscipline,
    lines: VecDeque<Vec<u8>>,
    /// Lines dropped because the queue was full.
    pub dropped_lines: u64,
    foreground: u64,
    reader_waiting: bool,
    interrupted: bool,
}

impl ConsoleState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds received bytes through the line discipline.
    pub fn receive(&mut self, bytes: &[u8]) -> Effects {
        let mut fx = Effects::default();
        for &b in bytes {
            match self.discipline.feed(b, &mut fx.echo) {
                Some(Input::Line(line)) => {
                    if self.lines.len() < MAX_QUEUED_LINES {
                        self.lines.push_back(line);
                        fx.wake_reader = true;
                    } else {
                        self.dropped_lines += 1;
                    }
                }
                Some(Input::Interrupt) => {
                    if self.reader_waiting {
                        self.interrupted = true;
                        fx.wake_reader = true;
                    }
                    if self.foreground != 0 {
                        fx.kill = Some(self.foreground);
                    }
                }
                None => {}
            }
        }
        fx
    }

    /// A reader asks for input: what it gets now, or None (it is then marked waiting until it
    /// gets something).
    pub fn take_for_reader(&mut self) -> Option<ReadResult> {
        let result = if core::mem::take(&mut self.interrupted) {
            Some(ReadResult::Interrupted)
        } else {
            self.lines.pop_front().map(ReadResult::Line)
        };
        self.reader_waiting = result.is_none();
        result
    }

    /// Sets the foreground program (0 = none).
    pub fn set_foreground(&mut self, pid: u64) {
        self.foreground = pid;
    }

    pub fn foreground(&self) -> u64 {
        self.foreground
    }

    pub fn queued_lines(&self) -> usize {
        self.lines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> ReadResult {
        ReadResult::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_typed_before_any_reader_are_kept_in_order() {
        let mut s = ConsoleState::new();
        let fx = s.receive(b"help\nps\npoweroff\n");
        assert!(fx.wake_reader);
        assert_eq!(fx.echo, b"help\nps\npoweroff\n");
        assert_eq!(s.take_for_reader(), Some(line("help")));
        assert_eq!(s.take_for_reader(), Some(line("ps")));
        assert_eq!(s.take_for_reader(), Some(line("poweroff")));
        assert_eq!(s.take_for_reader(), None);
    }

    #[test]
    fn a_full_queue_keeps_the_oldest_lines_and_counts_the_dropped() {
        let mut s = ConsoleState::new();
        for i in 0..MAX_QUEUED_LINES + 3 {
            s.receive(alloc::format!("{i}\n").as_bytes());
        }
        assert_eq!(s.queued_lines(), MAX_QUEUED_LINES);
        assert_eq!(s.dropped_lines, 3);
        assert_eq!(s.take_for_reader(), Some(line("0")));
        let fx = s.receive(b"late\n");
        assert!(fx.wake_reader, "a freed slot takes the next line");
    }

    #[test]
    fn ctrl_c_wakes_a_waiting_reader_with_an_interrupt() {
        let mut s = ConsoleState::new();
        assert_eq!(s.take_for_reader(), None);
        let fx = s.receive(b"par\x03");
        assert!(fx.wake_reader);
        assert_eq!(fx.kill, None);
        assert_eq!(s.take_for_reader(), Some(ReadResult::Interrupted));
        assert_eq!(s.take_for_reader(), None, "the partial line was discarded");
    }

    #[test]
    fn ctrl_c_with_no_reader_waiting_is_not_remembered() {
        let mut s = ConsoleState::new();
        let fx = s.receive(b"\x03");
        assert!(!fx.wake_reader);
        s.receive(b"ls\n");
        assert_eq!(s.take_for_reader(), Some(line("ls")));
    }

    #[test]
    fn a_reader_that_got_a_line_is_no_longer_waiting() {
        let mut s = ConsoleState::new();
        assert_eq!(s.take_for_reader(), None);
        s.receive(b"a\n");
        assert_eq!(s.take_for_reader(), Some(line("a")));
        assert!(!s.receive(b"\x03").wake_reader);
    }

    #[test]
    fn ctrl_c_asks_to_kill_the_foreground_program_until_it_is_cleared() {
        let mut s = ConsoleState::new();
        s.set_foreground(7);
        assert_eq!(s.receive(b"\x03").kill, Some(7));
        s.set_foreground(0);
        assert_eq!(s.receive(b"\x03").kill, None);
    }

    #[test]
    fn an_interrupt_is_seen_before_lines_queued_while_waiting() {
        let mut s = ConsoleState::new();
        assert_eq!(s.take_for_reader(), None);
        s.receive(b"x\n\x03");
        assert_eq!(s.take_for_reader(), Some(ReadResult::Interrupted));
        assert_eq!(s.take_for_reader(), Some(line("x")));
    }
}
