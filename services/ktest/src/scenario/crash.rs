//! `crash`: a process that reads address 0, runs an undefined instruction or overflows its stack
//! is killed by the kernel with `EXIT_FAULT`, and the system keeps running: the process manager
//! still answers, and a new process can be started and killed afterwards.

use super::{SEC, procmgr, wait_exit};
use crate::args::Fault;
use crate::check::Checks;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::startup::Startup;
use keel_rt::sys;

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("crash");
    let Some(mut pm) = procmgr(&mut c, startup) else { return c.finish("") };
    let mut seen = Vec::new();
    for f in Fault::ALL {
        let mode = f.mode_name();
        let Some(child) = c.expect_ok(format_args!("procmgr SPAWN /bin/ktest {mode}"), pm.spawn_ktest(&[mode])) else {
            continue;
        };
        let code = wait_exit(child.process, 20 * SEC);
        c.expect_eq(format_args!("exit code of {mode} (pid {})", child.pid), code, Ok(keel_rt::abi::EXIT_FAULT));
        if let Ok(i) = sys::process_info(child.process) {
            c.check(!i.running && i.threads == 0, || format!("process_info({mode}) after the fault: {i:?}"));
        }
        let _ = sys::cap_delete(child.process);
        seen.push(format!("{mode} {}", code.map_or(String::from("?"), |c| format!("{c}"))));
    }
    // Still alive: the process manager answers and a new child runs and can be killed.
    c.expect_ok("procmgr PS after the crashes", pm.ps_text());
    if let Some(child) = c.expect_ok("procmgr SPAWN /bin/ktest sleeper after the crashes", pm.spawn_ktest(&["sleeper"]))
    {
        sys::sleep_ns(20_000_000);
        c.expect_eq("sleeper still running after 20 ms", sys::process_info(child.process).map(|i| i.running), Ok(true));
        c.expect_ok("process_kill(sleeper)", sys::process_kill(child.process));
        c.expect_eq(
            "exit code of the killed sleeper",
            wait_exit(child.process, 10 * SEC),
            Ok(keel_rt::abi::EXIT_KILLED),
        );
        let _ = sys::cap_delete(child.process);
    }
    c.finish(format!("exit codes: {}; system still running", seen.join(", ")))
}
