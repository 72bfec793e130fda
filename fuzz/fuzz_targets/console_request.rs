//! The console's input and requests (`keel_console::state::ConsoleState` and its line
//! discipline): bytes from the UART interleaved with READ_LINE (normal or INTERRUPT_ONLY), a
//! READ_LINE that timed out, and SET_FOREGROUND, in the calls `services/console/src/service.rs`
//! makes for them. (The request words themselves are decoded inline in `service::handle` and
//! `service::read_line`, next to their system calls; this is the pure state they drive.)
//!
//! Checked against a model of the rules `state.rs` and `discipline.rs` document: lines reach a
//! reader in the order typed; Ctrl-C discards type-ahead, reaches a reader only if one is waiting
//! and names the foreground program to kill; input is throttled, not dropped, while the queue is
//! full; a line is at most MAX_LINE bytes with no control bytes in it; the echo never carries a
//! control byte but LF, BEL and backspace (escape sequences are swallowed, not echoed); every
//! line is valid UTF-8 (invalid bytes become U+FFFD), and so is every echo (characters are
//! echoed whole, as they enter the line).
//!
//! Input: operations until the input ends (at most 256): `0..=3 len bytes[len]` receive,
//! `4` READ_LINE, `5` READ_LINE INTERRUPT_ONLY, `6` READ_LINE timed out, `7 pid` SET_FOREGROUND
//! (the operation is its byte modulo 8).
#![no_main]

use keel_rt::proto::console::FOREGROUND_STARTING;
use keel_console::discipline::{Input, LineDiscipline, MAX_LINE};
use keel_console::state::{ConsoleState, MAX_QUEUED_LINES, ReadResult};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;

/// What the documented rules say the state holds.
#[derive(Default)]
struct Model {
    discipline: LineDiscipline,
    lines: VecDeque<ReadResult>,
    reader_waiting: bool,
    interrupted: bool,
    foreground: u64,
    /// A Ctrl-C came while the foreground program was starting.
    interrupt_while_starting: bool,
}

impl Model {
    /// A reader takes what there is (`interrupt_only`: Ctrl-C alone); it waits if nothing.
    fn take(&mut self, interrupt_only: bool) -> Option<ReadResult> {
        let r = if std::mem::take(&mut self.interrupted) {
            Some(ReadResult::Interrupted)
        } else if interrupt_only {
            None
        } else {
            self.lines.pop_front()
        };
        self.reader_waiting = r.is_none();
        r
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = input.split_at(n.min(input.len()));
    *input = tail;
    head
}

fn byte(input: &mut &[u8]) -> u8 {
    take(input, 1).first().copied().unwrap_or(0)
}

/// A line the discipline hands on: within MAX_LINE, free of control bytes, valid UTF-8.
fn check_line(line: &[u8]) {
    assert!(line.len() <= MAX_LINE, "a {}-byte line", line.len());
    assert!(!line.iter().any(|&b| b < 0x20 || b == 0x7f), "control byte in line {line:?}");
    assert!(std::str::from_utf8(line).is_ok(), "line not UTF-8: {line:x?}");
}

fn check_result(r: &ReadResult) {
    match r {
        ReadResult::Line(line) => check_line(line),
        ReadResult::TooLong(typed) => assert!(*typed > 0, "a too-long line of no bytes"),
        ReadResult::Interrupted => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mut state = ConsoleState::new();
    let mut model = Model::default();
    // Every byte received, and how many of them the model has fed to its discipline.
    let mut received: Vec<u8> = Vec::new();
    let mut fed = 0;
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        match byte(&mut input) % 8 {
            0..=3 => {
                let n = byte(&mut input) as usize;
                let bytes = take(&mut input, n);
                received.extend_from_slice(bytes);
                let fx = state.receive(bytes);
                // The state consumed all but its backlog, and keeps a backlog only when full.
                let consumed = received.len() - state.backlog_len();
                assert!(consumed >= fed, "the backlog grew back over consumed bytes");
                assert!(consumed == received.len() || state.is_full(), "bytes held back with room in the queue");
                let (mut echo, mut wake, mut kill) = (Vec::new(), false, None);
                for &b in &received[fed..consumed] {
                    match model.discipline.feed(b, &mut echo) {
                        Some(Input::Line(line)) => {
                            model.lines.push_back(ReadResult::Line(line));
                            wake = true;
                        }
                        Some(Input::TooLong(typed)) => {
                            model.lines.push_back(ReadResult::TooLong(typed));
                            wake = true;
                        }
                        Some(Input::Interrupt) => {
                            model.lines.clear();
                            if model.reader_waiting {
                                model.interrupted = true;
                                wake = true;
                            }
                            if model.foreground == FOREGROUND_STARTING {
                                model.interrupt_while_starting = true;
                            } else if model.foreground != 0 {
                                kill = Some(model.foreground);
                            }
                        }
                        None => {}
                    }
                }
                fed = consumed;
                assert_eq!(fx.echo, echo, "echo of {:?}", &received[..consumed]);
                assert_eq!(fx.wake_reader, wake, "reader woken");
                assert_eq!(fx.kill, kill, "kill request");
                for &b in &fx.echo {
                    assert!(b >= 0x20 && b != 0x7f || matches!(b, b'\n' | 0x07 | 0x08), "echoed control byte {b:#x}");
                }
                assert!(std::str::from_utf8(&fx.echo).is_ok(), "echo not UTF-8: {:x?}", fx.echo);
            }
            op @ (4 | 5) => {
                let got = if op == 4 { state.take_for_reader() } else { state.take_interrupt() };
                if let Some(r) = &got {
                    check_result(r);
                }
                assert_eq!(got, model.take(op == 5), "READ_LINE{}", if op == 5 { " INTERRUPT_ONLY" } else { "" });
            }
            6 => {
                state.reader_timed_out();
                model.reader_waiting = true;
            }
            _ => {
                // 255: a program is starting (its pid not known yet).
                let pid = match byte(&mut input) {
                    255 => FOREGROUND_STARTING,
                    b => b as u64,
                };
                let kill = state.set_foreground(pid);
                let interrupted = std::mem::take(&mut model.interrupt_while_starting) && model.foreground == FOREGROUND_STARTING;
                let want = (interrupted && pid != 0 && pid != FOREGROUND_STARTING).then_some(pid);
                assert_eq!(kill, want, "kill on SET_FOREGROUND {pid:#x}");
                model.foreground = pid;
                assert_eq!(state.foreground(), pid);
            }
        }
        assert!(state.queued_lines() <= MAX_QUEUED_LINES, "{} lines queued", state.queued_lines());
        assert_eq!(state.queued_lines(), model.lines.len(), "queued lines");
        assert_eq!(state.is_full(), model.lines.len() >= MAX_QUEUED_LINES);
    }
});
