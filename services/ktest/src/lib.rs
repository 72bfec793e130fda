//! ktest: the kernel test program. init runs `/bin/ktest <scenario>` in scenario mode; each
//! scenario drives the kernel through its system calls and checks every result end to end,
//! printing `ktest: <scenario>: ok (<details>)` and exiting 0, or one `ktest: <scenario>: FAILED:
//! <what>` line per failed check and exiting 1.
//!
//! The same binary also provides the helper processes the scenarios spawn through the process
//! manager (`ipc-server`, `sleeper`, `crash-*`, see [`server`]), so one program in the initrd
//! covers every test. It holds no `unsafe`: deliberate faults come from `keel_rt::fault`, and
//! malformed system calls go through `keel_rt::sys::raw::syscall`.
//!
//! Everything that does not need a kernel (argument parsing, the echo protocol's reply function,
//! statistics, the process list parser) is unit-tested on the host.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod args;
pub mod check;
pub mod echo;
pub mod scenario;
pub mod server;
pub mod services;
pub mod stats;
pub mod sysfuzz;
pub mod worker;

use args::Mode;
use keel_rt::println;
use keel_rt::startup::Startup;

/// Exit code of a scenario that failed (a server mode that cannot start uses it too).
pub const EXIT_FAILED: i32 = 1;

/// Runs the scenario or server mode named by the arguments; the process exit code.
pub fn main(startup: &Startup) -> i32 {
    match args::parse(&startup.args) {
        Ok(Mode::Scenario(s)) => scenario::run(s, None, startup),
        Ok(Mode::Counted(s, n)) => scenario::run(s, Some(n), startup),
        Ok(Mode::Server(m)) => server::run(m, startup),
        Err(e) => {
            println!("ktest: {e}");
            println!("ktest: usage: ktest <{}>", args::usage());
            2
        }
    }
}
