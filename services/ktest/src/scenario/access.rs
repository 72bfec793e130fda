//! `access`: rights over other processes and the console come from capabilities, not from
//! holding procmgr's or the console's endpoint.
//!
//! ktest (started by init with the shell's rights) spawns a sleeper, then an unprivileged child
//! (`access-child <sleeper pid>`, SPAWN_UNPRIVILEGED). The child must be refused: KILL of the
//! sleeper (its sibling) and of a service, POWER_OFF, CONSOLE_CONTROL, SET_FOREGROUND over the
//! console connection namesrv gives; it has no control capability; it may kill a sleeper it
//! spawned itself; and a program it SPAWNs gets no privileges either (`no-privileges`). Back in
//! the parent: the sibling still runs, the parent may take console control and set the
//! foreground, and may kill the sibling.

use super::{SEC, namesrv, procmgr, wait_exit};
use crate::check::Checks;
use crate::services::{Namesrv, Procmgr, parse_ps};
use alloc::format;
use alloc::string::ToString;
use keel_rt::ipc::{self, Client};
use keel_rt::proto::{console, procmgr as pm_proto};
use keel_rt::startup::Startup;
use keel_rt::{Error, sys};

/// SET_FOREGROUND over `conn`.
fn set_foreground(conn: keel_rt::Slot, pid: u64) -> Result<(), Error> {
    let r = Client::new(conn).call(console::SET_FOREGROUND, [pid, 0, 0, 0])?;
    ipc::status(&r).map(|_| ())
}

/// The checks every unprivileged process must pass: no control capability, no power-off, no
/// console control, no foreground over namesrv's console connection, no kill of a service.
fn unprivileged_checks(c: &mut Checks, pm: &mut Procmgr, ns: &Namesrv, startup: &Startup) {
    c.check(startup.cap("control").is_none(), || "an unprivileged program was given the control capability".to_string());
    c.expect_err("procmgr CONSOLE_CONTROL (unprivileged)", pm.console_control(), Error::NoRights);
    // Refused before anything is done: a pass here means the machine stays on.
    c.expect_err("procmgr POWER_OFF (unprivileged)", pm.call(pm_proto::POWER_OFF, [0; 4]), Error::NoRights);
    if let Some(conn) = c.expect_ok("namesrv LOOKUP console", ns.lookup("console")) {
        c.expect_err("console SET_FOREGROUND over namesrv's connection", set_foreground(conn, 0), Error::NoRights);
        let _ = sys::cap_delete(conn);
    }
    let ps = pm.ps_text().map_err(|e| format!("{e:?}")).and_then(|t| parse_ps(&t));
    match ps.as_ref().ok().and_then(|ps| ps.iter().find(|p| p.is_program("console")).map(|p| p.pid)) {
        Some(console_pid) => {
            c.expect_err(format_args!("procmgr KILL {console_pid} (the console service)"), pm.kill(console_pid), Error::NoRights);
        }
        None => c.fail(format_args!("no console in the process list: {ps:?}")),
    }
    // The cgroup files: readable, but limits and groups are the administrators' (a program in
    // a group must not lift its own limit). The file service asks procmgr who we are.
    use keel_rt::errno::Errno;
    use keel_rt::fs;
    let refused = |r: Result<(), Errno>| r == Err(Errno::Acces);
    let opened = fs::open("/sys/fs/cgroup/cgroup.subtree_control", fs::flags::O_WRONLY | fs::flags::O_TRUNC, 0);
    if let Ok(fd) = opened {
        let _ = fs::close(fd);
    }
    c.check(refused(opened.map(|_| ())), || format!("an unprivileged program opened a cgroup file for writing: {opened:?}"));
    let made = fs::mkdir("/sys/fs/cgroup/escape", 0o755);
    c.check(refused(made), || format!("an unprivileged program made a cgroup: {made:?}"));
    let listed = fs::read_dir("/sys/fs/cgroup").map(|d| d.iter().any(|e| e.name == "cgroup.procs"));
    c.check(listed == Ok(true), || format!("an unprivileged program cannot read the cgroup files: {listed:?}"));
}

/// `access-child <sibling pid>`: run unprivileged by the scenario.
pub fn child(sibling: u64, startup: &Startup) -> i32 {
    let mut c = Checks::new("access-child");
    let (Some(mut pm), Some(ns)) = (procmgr(&mut c, startup), namesrv(&mut c, startup)) else { return c.finish("") };
    unprivileged_checks(&mut c, &mut pm, &ns, startup);
    c.expect_err(format_args!("procmgr KILL {sibling} (a sibling)"), pm.kill(sibling), Error::NoRights);
    c.expect_err("procmgr KILL of a pid nobody has", pm.kill(u64::MAX >> 1), Error::NotFound);
    // Its own child: a sleeper, which it may kill.
    if let Some(own) = c.expect_ok("procmgr SPAWN ktest sleeper (by the unprivileged child)", pm.spawn_ktest(&["sleeper"])) {
        c.expect_ok(format_args!("procmgr KILL {} (its own child)", own.pid), pm.kill(own.pid));
        c.expect_eq("exit code of its killed sleeper", wait_exit(own.process, 10 * SEC), Ok(keel_rt::abi::EXIT_KILLED));
        let _ = sys::cap_delete(own.process);
    }
    // A program it spawns, even without asking for no privileges, gets none.
    if let Some(p) = c.expect_ok("procmgr SPAWN ktest no-privileges", pm.spawn_ktest(&["no-privileges"])) {
        c.expect_eq("exit code of no-privileges", wait_exit(p.process, 30 * SEC), Ok(0));
        let _ = sys::cap_delete(p.process);
    }
    c.finish("refused: kill of a sibling and of a service, power-off, console control, foreground")
}

/// `no-privileges`: a program an unprivileged one spawned.
pub fn no_privileges(startup: &Startup) -> i32 {
    let mut c = Checks::new("no-privileges");
    let (Some(mut pm), Some(ns)) = (procmgr(&mut c, startup), namesrv(&mut c, startup)) else { return c.finish("") };
    unprivileged_checks(&mut c, &mut pm, &ns, startup);
    c.finish("")
}

/// `ns-child`: pid 1 of a new pid namespace. It sees itself as pid 1 and nothing outside; its
/// own child is pid 2; a pid outside is no process to it. It exits leaving that child running,
/// with the child's kernel pid as its exit code (the namespace's end must take the child too).
pub fn ns_child(startup: &Startup) -> i32 {
    let mut c = Checks::new("ns-child");
    let Some(mut pm) = procmgr(&mut c, startup) else { return c.finish("") };
    let pids = |pm: &mut Procmgr| pm.ps_text().ok().and_then(|t| parse_ps(&t).ok()).map(|ps| ps.iter().map(|p| p.pid).collect::<alloc::vec::Vec<u64>>());
    c.expect_eq("ps in a new pid namespace", pids(&mut pm), Some(alloc::vec![1]));
    let Some(sleeper) = c.expect_ok("SPAWN sleeper in the namespace", pm.spawn_ktest(&["sleeper"])) else { return c.finish("") };
    c.expect_eq("the namespace's second process's pid", sleeper.pid, 2);
    c.expect_eq("ps with the sleeper", pids(&mut pm), Some(alloc::vec![1, 2]));
    let me = sys::process_info(keel_rt::abi::slots::SELF_PROCESS).map(|i| i.pid).unwrap_or(0);
    c.expect_err(format_args!("KILL {me} (our own kernel pid: no such process here)"), pm.kill(me), Error::NotFound);
    let global = sys::process_info(sleeper.process).map(|i| i.pid).unwrap_or(0);
    match c.finish("pid 1 sees its own namespace only") {
        0 if global > 0 && global < i32::MAX as u64 => global as i32,
        _ => crate::EXIT_FAILED,
    }
}

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("access");
    let (Some(mut pm), Some(ns)) = (procmgr(&mut c, startup), namesrv(&mut c, startup)) else { return c.finish("") };
    // init starts the scenario beside the services: the console may not have registered yet, and
    // every check below is about a console that is up.
    match c.expect_ok("namesrv: the console registers", ns.wait_for("console", None, 60_000)) {
        Some(conn) => {
            let _ = sys::cap_delete(conn);
        }
        None => return c.finish(""),
    }
    let Some(sibling) = c.expect_ok("procmgr SPAWN ktest sleeper", pm.spawn_ktest(&["sleeper"])) else { return c.finish("") };
    let pid = sibling.pid.to_string();
    match c.expect_ok(
        "procmgr SPAWN ktest access-child (unprivileged)",
        pm.spawn_flags(crate::services::KTEST_PATH, &["access-child", &pid], pm_proto::SPAWN_UNPRIVILEGED),
    ) {
        Some(child) => {
            c.expect_eq("exit code of access-child", wait_exit(child.process, 60 * SEC), Ok(0));
            let _ = sys::cap_delete(child.process);
        }
        None => {}
    }
    c.check(sys::process_info(sibling.process).is_ok_and(|i| i.running), || "the sibling sleeper died".to_string());
    // The privileged side: console control works, namesrv's connection still cannot set it.
    if let Some(control) = c.expect_ok("procmgr CONSOLE_CONTROL (with the admin right)", pm.console_control()) {
        c.expect_ok("console SET_FOREGROUND over the control connection", set_foreground(control, sibling.pid));
        c.expect_ok("console SET_FOREGROUND 0 over the control connection", set_foreground(control, 0));
        let _ = sys::cap_delete(control);
    }
    c.expect_ok(format_args!("procmgr KILL {} (by its spawner)", sibling.pid), pm.kill(sibling.pid));
    c.expect_eq("exit code of the killed sleeper", wait_exit(sibling.process, 10 * SEC), Ok(keel_rt::abi::EXIT_KILLED));
    let _ = sys::cap_delete(sibling.process);
    pid_namespace(&mut c, &mut pm);
    c.finish("an unprivileged process could not kill, power off or set the console's foreground; a pid namespace saw itself only and went with its pid 1")
}

/// A child in a new pid namespace (`ns-child`); we see it and its child by kernel pids, and its
/// exit takes the rest of its namespace.
fn pid_namespace(c: &mut Checks, pm: &mut Procmgr) {
    let Some(child) = c.expect_ok("SPAWN ktest ns-child (new pid namespace)", pm.spawn_flags(crate::services::KTEST_PATH, &["ns-child"], pm_proto::SPAWN_NEW_PID_NS)) else { return };
    let global_pid = sys::process_info(child.process).map(|i| i.pid).ok();
    c.expect_eq("the spawner sees the namespace's pid 1 by its kernel pid", Some(child.pid), global_pid);
    let code = wait_exit(child.process, 60 * SEC);
    let _ = sys::cap_delete(child.process);
    let Ok(sleeper) = code.map(|c| c as u64).map_err(|e| format!("{e:?}")).and_then(|p| if p > 0 && p < i32::MAX as u64 { Ok(p) } else { Err(format!("exit code {p}")) }) else {
        c.fail(format_args!("ns-child failed: {code:?}"));
        return;
    };
    // procmgr kills the rest of the namespace when it learns of pid 1's exit.
    let running = |pm: &mut Procmgr| pm.ps_text().ok().and_then(|t| parse_ps(&t).ok()).is_none_or(|ps| ps.iter().any(|p| p.pid == sleeper && p.is_running()));
    let mut gone = false;
    for _ in 0..100 {
        if !running(pm) {
            gone = true;
            break;
        }
        sys::sleep_ns(100_000_000);
    }
    c.check(gone, || format!("the sleeper (pid {sleeper}) outlived its namespace's pid 1 by 10 s"));
}
