//! `restart`: init restarts a service that dies. The name service is killed through the process
//! manager; within 10 s a new `namesrv` with another pid must be running, and it must serve our
//! existing name-service capability (init owns the connection, so it outlives each namesrv): a
//! name registered afterwards can be looked up.

use super::{MS, namesrv, procmgr};
use crate::check::Checks;
use crate::services::{PsEntry, parse_ps};
use alloc::format;
use alloc::vec::Vec;
use keel_rt::abi::ObjectKind;
use keel_rt::startup::Startup;
use keel_rt::sys;

const SERVICE: &str = "namesrv";
const TIMEOUT_MS: u64 = 10_000;
const POLL_MS: u64 = 50;

fn alive_service(ps: &[PsEntry]) -> Vec<&PsEntry> {
    ps.iter().filter(|p| p.is_program(SERVICE) && p.is_running()).collect()
}

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("restart");
    let (Some(mut pm), Some(ns)) = (procmgr(&mut c, startup), namesrv(&mut c, startup)) else { return c.finish("") };
    let ps = match pm.ps_text().map(|t| parse_ps(&t)) {
        Ok(Ok(ps)) => ps,
        other => {
            c.fail(format_args!("procmgr PS: {other:?}"));
            return c.finish("");
        }
    };
    let old = match alive_service(&ps).as_slice() {
        [one] => one.pid,
        found => {
            c.fail(format_args!("procmgr PS: expected one running {SERVICE}, found {found:?}"));
            return c.finish("");
        }
    };
    c.expect_ok(format_args!("procmgr KILL {SERVICE} (pid {old})"), pm.kill(old));
    let start = sys::counter();
    let mut waited = 0;
    let new = loop {
        let ps = pm.ps_text().ok().and_then(|t| parse_ps(&t).ok()).unwrap_or_default();
        if let Some(p) = alive_service(&ps).into_iter().find(|p| p.pid != old) {
            break Some(p.pid);
        }
        if waited >= TIMEOUT_MS {
            break None;
        }
        sys::sleep_ns(POLL_MS * MS);
        waited += POLL_MS;
    };
    let ticks = sys::counter().wrapping_sub(start);
    let Some(new) = new else {
        c.fail(format_args!("no new {SERVICE} running {TIMEOUT_MS} ms after killing pid {old}"));
        return c.finish("");
    };
    c.pass();
    // init owns the name service's connection and hands it to each namesrv it starts, so our
    // capability reaches the new one: a name registered now can be looked up.
    match sys::conn_create() {
        Ok(conn) => {
            c.expect_ok("namesrv REGISTER ktest-restart (new namesrv)", ns.register("ktest-restart", conn));
            match ns.lookup("ktest-restart") {
                Ok(found) => {
                    c.expect_eq(
                        "kind of the capability LOOKUP ktest-restart returned",
                        sys::cap_info(found).map(|i| i.0),
                        Ok(ObjectKind::Connection as u64),
                    );
                    let _ = sys::cap_delete(found);
                }
                Err(e) => c.fail(format_args!("namesrv LOOKUP ktest-restart (new namesrv): {e:?}")),
            }
            let _ = sys::cap_delete(conn);
        }
        Err(e) => c.fail(format_args!("conn_create: {e:?}")),
    }
    let ms = ticks / (sys::counter_freq() / 1000).max(1);
    c.finish(format!("{SERVICE} pid {old} killed, restarted as pid {new} within {ms} ms"))
}
