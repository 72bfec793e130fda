//! shell: the interactive command line. It reads lines from the console service (found through
//! namesrv), decodes them ([`command`]) and runs them ([`exec`]) against the process manager and
//! the kernel ([`live`]); file commands ([`files`]) go to the file service. Startup caps:
//! `procmgr`, `namesrv`.
//!
//! The shell never reads the UART itself and never kills anything on its own: Ctrl-C is the
//! console's business (it kills the foreground program the shell names, and ends a pending
//! READ_LINE, after which the shell prints a fresh prompt). If the console dies, the shell waits
//! for init to restart it and reconnects.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod command;
pub mod exec;
pub mod files;
pub mod live;
pub mod ps;

use alloc::string::String;
use core::fmt::Write;
use keel_rt::startup::Startup;
use keel_rt::{print, println, sys};
use live::{LiveSystem, ReadLine};

/// The prompt.
pub const PROMPT: &str = "keel> ";
/// Attempts to reach a console that stopped answering before the shell gives up (and init
/// restarts it), and the pause before each.
const CONSOLE_RETRIES: u32 = 100;
const CONSOLE_RETRY_PAUSE_NS: u64 = 100_000_000;
/// How often `vm run --wait` looks whether its VM has stopped (between, it waits for Ctrl-C).
const VM_WAIT_SLICE_NS: u64 = 50_000_000;
/// How long the first prompt waits for the disk's mount: 30 s in 20 ms steps.
const MOUNT_WAIT_ATTEMPTS: u32 = 1500;
const MOUNT_WAIT_PAUSE_NS: u64 = 20_000_000;

/// Decodes and runs one line; what to print.
pub fn handle_line<S: exec::System>(system: &mut S, line: &str) -> String {
    let mut out = String::new();
    match command::parse(line) {
        Ok(cmd) => exec::execute(system, &cmd, &mut out),
        Err(e) => {
            let _ = writeln!(out, "{e}");
        }
    }
    out
}

pub fn main(startup: &Startup) -> i32 {
    let (Some(procmgr), Some(namesrv)) = (startup.cap("procmgr"), startup.cap("namesrv")) else {
        println!("shell: the startup block lacks the 'procmgr' or 'namesrv' capability");
        return 2;
    };
    let mut system = match LiveSystem::connect(procmgr, namesrv, startup.cap("resmgr")) {
        Ok(s) => s,
        Err(e) => {
            println!("shell: cannot find the console: {e}");
            return 1;
        }
    };
    wait_for_disk();
    // One line for `make bench` (boot to shell prompt): the counter when the first prompt goes out.
    println!("shell: first prompt at {} ticks", keel_rt::sys::counter());
    loop {
        print!("{PROMPT}");
        match system.read_line() {
            Ok(ReadLine::Line(line)) => {
                keel_rt::io::write_str(&handle_line(&mut system, &line));
                if let Some(id) = system.attached.take() {
                    attach(&mut system, id);
                }
                if let Some((id, timeout_secs)) = system.waiting.take() {
                    wait_vm(&mut system, id, timeout_secs);
                }
            }
            Ok(ReadLine::Interrupted) => {}
            Ok(ReadLine::TooLong(typed)) => {
                println!("shell: line too long ({typed} bytes; at most {}): not run", keel_rt::proto::console::MAX_LINE);
            }
            Err(e) => {
                println!("\nshell: lost the console ({e}); waiting for it");
                if !reconnect(&mut system) {
                    println!("shell: the console did not come back");
                    return 1;
                }
            }
        }
    }
}

/// Attached to VM `id`'s console: each line typed goes to the guest (with a carriage return, as a
/// terminal's Enter), Ctrl-C goes to the guest as ^C, and `~.` alone on a line detaches. Ends when
/// the VM has stopped.
fn attach(system: &mut LiveSystem, id: u64) {
    use exec::System;
    let id = alloc::format!("{id}");
    loop {
        let text = match system.read_line() {
            Ok(ReadLine::Line(line)) if line.trim() == "~." => {
                let _ = system.vm(&["detach".into(), id.clone()]);
                println!("[detached from vm {id}]");
                return;
            }
            Ok(ReadLine::Line(line)) => alloc::format!("{line}\r"),
            Ok(ReadLine::Interrupted) => String::from("\x03"),
            Ok(ReadLine::TooLong(typed)) => {
                println!("[line too long ({typed} bytes; at most {}): not sent to vm {id}]", keel_rt::proto::console::MAX_LINE);
                continue;
            }
            Err(_) => return,
        };
        match system.vm(&["input".into(), id.clone(), text]) {
            Ok(reply) if reply.is_empty() => {}
            Ok(reply) => {
                print!("{reply}");
                return;
            }
            Err(e) => {
                println!("vm: {e}");
                return;
            }
        }
    }
}

/// Holds the first prompt until the file service has mounted the disk (or found there is none),
/// so no line typed early writes under /disk before the disk is there.
fn wait_for_disk() {
    match keel_rt::fs::wait_for_mounts(MOUNT_WAIT_ATTEMPTS, MOUNT_WAIT_PAUSE_NS) {
        Ok(true) => {}
        Ok(false) => println!("shell: /disk is still being mounted; until it is, /disk refuses files"),
        Err(e) => println!("shell: cannot ask the file service about /disk: {e}"),
    }
}

/// `vm run --wait`: until VM `id` stops, showing its output (the monitor writes it). Ctrl-C
/// returns to the prompt and leaves the VM running; after `timeout_secs` (0: never) the VM is
/// stopped. Lines typed meanwhile wait for the prompt, as with any running command.
fn wait_vm(system: &mut LiveSystem, id: u64, timeout_secs: u64) {
    use exec::System;
    let id_word = alloc::format!("{id}");
    let (start, freq) = (sys::counter(), sys::counter_freq().max(1));
    let mut timed_out = false;
    loop {
        match system.vm(&["wait".into(), id_word.clone()]) {
            Ok(end) if end.is_empty() => {}
            Ok(end) => {
                if timed_out {
                    println!("vm {id}: stopped after the {timeout_secs} s --timeout");
                }
                print!("{end}");
                return;
            }
            Err(e) => {
                println!("vm: {e}");
                return;
            }
        }
        if timeout_secs != 0 && !timed_out && sys::counter().wrapping_sub(start) / freq >= timeout_secs {
            timed_out = true;
            if let Err(e) = system.vm(&["stop".into(), id_word.clone()]) {
                println!("vm: cannot stop vm {id}: {e}");
                return;
            }
            continue;
        }
        match system.wait_for_interrupt(VM_WAIT_SLICE_NS) {
            Ok(false) => {}
            Ok(true) => {
                let _ = system.vm(&["detach".into(), id_word.clone()]);
                println!("[vm {id} keeps running in the background: vm console {id} shows it, vm stop {id} stops it]");
                return;
            }
            Err(e) => {
                println!("\nshell: lost the console ({e}) while waiting for vm {id}; it keeps running");
                return;
            }
        }
    }
}

/// Retries until a console answers again; false if none did.
fn reconnect(system: &mut LiveSystem) -> bool {
    for _ in 0..CONSOLE_RETRIES {
        sys::sleep_ns(CONSOLE_RETRY_PAUSE_NS);
        if system.reconnect_console().is_ok() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_rt::Error;

    /// A system nothing should be asked of.
    struct Untouched;

    impl exec::System for Untouched {
        type Process = ();
        fn ps(&mut self) -> Result<alloc::vec::Vec<u8>, Error> {
            unreachable!()
        }
        fn kill(&mut self, _: u64) -> Result<(), Error> {
            unreachable!()
        }
        fn spawn(&mut self, _: &str, _: &[String], _: Option<&str>, _: bool) -> Result<(u64, ()), Error> {
            unreachable!()
        }
        fn set_foreground(&mut self, _: u64) -> Result<(), Error> {
            unreachable!()
        }
        fn wait(&mut self, _: &()) -> Result<i64, Error> {
            unreachable!()
        }
        fn release(&mut self, _: ()) {}
        fn mem_info(&mut self) -> Result<keel_rt::sys::Census, Error> {
            unreachable!()
        }
        fn clock(&mut self) -> (u64, u64) {
            unreachable!()
        }
        fn power_off(&mut self) -> Result<(), Error> {
            unreachable!()
        }
        fn vm(&mut self, _: &[String]) -> Result<String, Error> {
            unreachable!()
        }
        fn net(&mut self, _: &[String]) -> Result<String, Error> {
            unreachable!()
        }
        fn files(&mut self) -> &mut dyn files::Files {
            unreachable!()
        }
    }

    #[test]
    fn an_empty_line_prints_nothing() {
        assert_eq!(handle_line(&mut Untouched, ""), "");
        assert_eq!(handle_line(&mut Untouched, "   "), "");
    }

    #[test]
    fn unknown_commands_and_usage_errors_print_one_line_and_touch_nothing() {
        assert_eq!(handle_line(&mut Untouched, "frob /"), "frob: unknown command (try help)\n");
        assert_eq!(handle_line(&mut Untouched, "kill abc"), "kill: abc is not a pid\n");
        assert_eq!(handle_line(&mut Untouched, "vm"), "vm: usage: vm run|start|list|stat|console|stop|rm ...\n");
    }
}
