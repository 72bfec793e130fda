//! What the receive thread and the server thread share: the line discipline, the queue of
//! finished lines, the foreground program and whether a reader waits. Pure; the threads lock it
//! (see `service`) and do their system calls outside the lock.
//!
//! Rules:
//! - finished lines queue up, in order, so type-ahead before the shell is ready is not lost; at
//!   [`MAX_QUEUED_LINES`] the queue is full and input is throttled, not dropped: bytes already
//!   received wait unprocessed (unechoed) in a backlog, and the receive thread stops reading the
//!   UART ([`ConsoleState::is_full`]) until a reader takes a line, so the rest waits in the UART
//!   (or the emulator's character backend) — flow control rather than loss;
//! - Ctrl-C discards type-ahead (queued lines nobody read yet, as a tty does on SIGINT), reaches
//!   a reader only if one is waiting at that moment (a reader that comes later does not see a
//!   stale interrupt), and asks to kill the foreground program if one is set;
//! - so a reader sees input in the order it was typed: an interrupt, then lines typed after it.

use crate::discipline::{Input, LineDiscipline};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use keel_rt::proto::console::FOREGROUND_STARTING;

/// Most finished lines kept for readers.
pub const MAX_QUEUED_LINES: usize = 64;

/// What a READ_LINE returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    Line(Vec<u8>),
    Interrupted,
    /// A line over the discipline's limit was typed (this many bytes) and discarded.
    TooLong(usize),
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
    /// Finished lines (and too-long ones, in their place) nobody read yet.
    lines: VecDeque<ReadResult>,
    /// Received bytes not fed to the discipline yet because the queue is full (at most one
    /// drain's worth: the receive thread stops reading while the queue is full).
    backlog: VecDeque<u8>,
    foreground: u64,
    /// A Ctrl-C came while the foreground program was still starting (its pid not yet set).
    interrupt_while_starting: bool,
    reader_waiting: bool,
    interrupted: bool,
}

impl ConsoleState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds received bytes (after any backlog) through the line discipline, until the queue is
    /// full; `receive(&[])` feeds the backlog after a reader made room.
    pub fn receive(&mut self, bytes: &[u8]) -> Effects {
        self.backlog.extend(bytes);
        let mut fx = Effects::default();
        while !self.is_full() {
            let Some(b) = self.backlog.pop_front() else { break };
            match self.discipline.feed(b, &mut fx.echo) {
                Some(Input::Line(line)) => {
                    self.lines.push_back(ReadResult::Line(line));
                    fx.wake_reader = true;
                }
                Some(Input::TooLong(typed)) => {
                    self.lines.push_back(ReadResult::TooLong(typed));
                    fx.wake_reader = true;
                }
                Some(Input::Interrupt) => {
                    self.lines.clear();
                    if self.reader_waiting {
                        self.interrupted = true;
                        fx.wake_reader = true;
                    }
                    if self.foreground == FOREGROUND_STARTING {
                        self.interrupt_while_starting = true;
                    } else if self.foreground != 0 {
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
            self.lines.pop_front()
        };
        self.reader_waiting = result.is_none();
        result
    }

    /// Like [`ConsoleState::take_for_reader`] for a reader that waits only for Ctrl-C (the
    /// shell while a program or VM runs): finished lines stay queued for later.
    pub fn take_interrupt(&mut self) -> Option<ReadResult> {
        let result = core::mem::take(&mut self.interrupted).then_some(ReadResult::Interrupted);
        self.reader_waiting = result.is_none();
        result
    }

    /// A waiting reader went away (its process ended): nobody waits now.
    pub fn reader_gone(&mut self) {
        self.reader_waiting = false;
    }

    /// A waiting reader's time ran out. It stays marked waiting, so a Ctrl-C that comes before
    /// its next call is kept for that call rather than lost in the gap.
    pub fn reader_timed_out(&mut self) {
        self.reader_waiting = true;
    }

    /// Sets the foreground program (0 = none; `FOREGROUND_STARTING` while one starts). Returns
    /// the program to kill now: the one just named, if Ctrl-C came while it was starting.
    pub fn set_foreground(&mut self, pid: u64) -> Option<u64> {
        let interrupted = core::mem::take(&mut self.interrupt_while_starting) && self.foreground == FOREGROUND_STARTING;
        self.foreground = pid;
        (interrupted && pid != 0 && pid != FOREGROUND_STARTING).then_some(pid)
    }

    pub fn foreground(&self) -> u64 {
        self.foreground
    }

    pub fn queued_lines(&self) -> usize {
        self.lines.len()
    }

    /// The line queue is full: stop reading input until a reader takes a line.
    pub fn is_full(&self) -> bool {
        self.lines.len() >= MAX_QUEUED_LINES
    }

    /// Bytes received but not processed yet.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
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
    fn a_full_queue_holds_further_input_unechoed_until_a_reader_makes_room() {
        let mut s = ConsoleState::new();
        let typed: alloc::string::String = (0..MAX_QUEUED_LINES + 2).map(|i| alloc::format!("{i}\n")).collect();
        let fx = s.receive(typed.as_bytes());
        assert!(s.is_full());
        assert_eq!(s.queued_lines(), MAX_QUEUED_LINES);
        assert_eq!(s.backlog_len(), "64\n65\n".len());
        assert!(!fx.echo.ends_with(b"64\n"), "held bytes are not echoed yet");
        assert_eq!(s.take_for_reader(), Some(line("0")));
        let fx = s.receive(&[]);
        assert_eq!(fx.echo, b"64\n", "one line fits, then the queue is full again");
        assert!(s.is_full());
        for i in 1..=MAX_QUEUED_LINES {
            assert_eq!(s.take_for_reader(), Some(line(&alloc::format!("{i}"))));
        }
        s.receive(&[]);
        assert_eq!(s.take_for_reader(), Some(line("65")), "nothing was lost or reordered");
        assert_eq!(s.take_for_reader(), None);
    }

    #[test]
    fn ctrl_c_in_the_backlog_empties_the_queue_and_input_flows_again() {
        let mut s = ConsoleState::new();
        let mut typed: alloc::vec::Vec<u8> = (0..MAX_QUEUED_LINES).flat_map(|_| *b"x\n").collect();
        typed.extend_from_slice(b"\x03ls\n");
        s.receive(&typed);
        assert!(s.is_full());
        s.take_for_reader();
        s.receive(&[]);
        assert_eq!(s.queued_lines(), 1, "Ctrl-C discarded the type-ahead; ls follows it");
        assert_eq!(s.take_for_reader(), Some(line("ls")));
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
    fn a_zero_length_interrupt_wait_arms_the_console_for_the_next_ctrl_c() {
        // What the shell does before `vm run --wait`: the VM may print, and the user press
        // Ctrl-C, before the shell's first real wait.
        let mut s = ConsoleState::new();
        s.receive(b"vm run x --wait\n");
        assert_eq!(s.take_for_reader(), Some(line("vm run x --wait")));
        assert_eq!(s.take_interrupt(), None);
        s.reader_timed_out();
        assert!(s.receive(b"\x03").wake_reader);
        assert_eq!(s.take_interrupt(), Some(ReadResult::Interrupted));
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
    fn a_ctrl_c_while_the_program_starts_kills_it_once_its_pid_is_known() {
        let mut s = ConsoleState::new();
        s.set_foreground(FOREGROUND_STARTING);
        assert_eq!(s.receive(b"\x03").kill, None, "no pid to kill yet");
        assert_eq!(s.set_foreground(9), Some(9));
        s.set_foreground(0);
        // Without a Ctrl-C, or when the start failed, nobody is killed.
        s.set_foreground(FOREGROUND_STARTING);
        assert_eq!(s.set_foreground(10), None);
        s.set_foreground(FOREGROUND_STARTING);
        s.receive(b"\x03");
        assert_eq!(s.set_foreground(0), None);
        assert_eq!(s.set_foreground(11), None, "a Ctrl-C is kept for one start only");
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
    fn an_interrupt_waiter_leaves_lines_queued_and_a_ctrl_c_between_its_calls_is_kept() {
        let mut s = ConsoleState::new();
        assert_eq!(s.take_interrupt(), None);
        s.receive(b"ls\n");
        assert_eq!(s.take_interrupt(), None, "a line is not an interrupt");
        assert_eq!(s.queued_lines(), 1);
        // The wait timed out; Ctrl-C comes before the next call and is not lost.
        s.reader_timed_out();
        let fx = s.receive(b"\x03");
        assert!(fx.wake_reader);
        assert_eq!(s.take_interrupt(), Some(ReadResult::Interrupted));
        assert_eq!(s.queued_lines(), 0, "Ctrl-C discards type-ahead");
        s.receive(b"pwd\n");
        assert_eq!(s.take_for_reader(), Some(line("pwd")));
    }

    #[test]
    fn ctrl_c_discards_lines_typed_ahead() {
        let mut s = ConsoleState::new();
        s.receive(b"a\nb\n\x03");
        assert_eq!(s.queued_lines(), 0);
        assert_eq!(s.take_for_reader(), None);
    }

    #[test]
    fn lines_typed_after_ctrl_c_reach_the_reader_after_the_interrupt() {
        let mut s = ConsoleState::new();
        assert_eq!(s.take_for_reader(), None);
        s.receive(b"x\n\x03y\n");
        assert_eq!(s.take_for_reader(), Some(ReadResult::Interrupted));
        assert_eq!(s.take_for_reader(), Some(line("y")));
        assert_eq!(s.take_for_reader(), None);
    }
}
