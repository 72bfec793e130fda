//! `bench`: the cost of a null system call and of an IPC call+reply between two processes, on one
//! CPU and across two, measured with the virtual counter (under `-icount shift=0` one tick per
//! instruction). 100 batches of 100 iterations after 1,000 warm-up iterations; each batch gives
//! one per-iteration figure, and the line shows their min, median and max.

use super::{EchoProcess, SEC, namesrv, procmgr, start_echo_server};
use crate::check::Checks;
use crate::echo;
use crate::stats::{Summary, time_batches};
use crate::worker::{self, cpu_mask};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::abi::ipc::CapList;
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, println, sys};

const WARMUP: u64 = 1000;
const BATCHES: u64 = 100;
const PER_BATCH: u64 = 100;
/// The client always runs on CPU 0.
const CLIENT_CPU: u32 = 0;

fn null_syscalls() -> Result<Vec<u64>, Error> {
    time_batches(sys::counter, WARMUP, BATCHES, PER_BATCH, sys::null)
}

fn ipc_calls(conn: Slot, badge: u64) -> Result<Vec<u64>, Error> {
    let msg = echo::request(0, 1);
    let want = echo::reply_to(&msg, badge);
    let r = sys::ipc_call(conn, &msg, CapList::EMPTY)?;
    if r.msg != want {
        return Err(Error::Invalid);
    }
    time_batches(sys::counter, WARMUP, BATCHES, PER_BATCH, || sys::ipc_call(conn, &msg, CapList::EMPTY).map(|_| ()))
}

/// Runs `f` on the client CPU and summarises its per-iteration costs.
fn measure(
    c: &mut Checks,
    what: &str,
    f: impl FnOnce() -> Result<Vec<u64>, Error> + Send + 'static,
) -> Option<Summary> {
    let w = c.expect_ok(format_args!("{what}: start the client thread"), worker::start(cpu_mask(CLIENT_CPU), f))?;
    let costs = c.expect_ok(format_args!("{what}: client thread"), w.join(300 * SEC))?;
    let costs = c.expect_ok(format_args!("{what}: timed calls"), costs)?;
    let s = Summary::of(&costs);
    c.check(s.is_some(), || format!("{what}: no samples"));
    s
}

fn ipc_bench(c: &mut Checks, server: Option<EchoProcess>, what: &str) -> Option<Summary> {
    let server = server?;
    let (conn, badge) = (server.conn, sys::cap_info(server.conn).map(|i| i.2).unwrap_or(0));
    let s = measure(c, what, move || ipc_calls(conn, badge));
    server.kill(c);
    server.release();
    s
}

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("bench");
    let mut lines: Vec<(&str, Summary)> = Vec::new();
    if let Some(s) = measure(&mut c, "null_syscall", null_syscalls) {
        lines.push(("null_syscall", s));
    }
    if let (Some(mut pm), Some(ns)) = (procmgr(&mut c, startup), namesrv(&mut c, startup)) {
        let same = start_echo_server(&mut c, &mut pm, &ns, "ktest-bench-same", &[CLIENT_CPU]);
        if let Some(s) = ipc_bench(&mut c, same, "ipc_call_reply_same_cpu") {
            lines.push(("ipc_call_reply_same_cpu", s));
        }
        let cross = start_echo_server(&mut c, &mut pm, &ns, "ktest-bench-cross", &[CLIENT_CPU + 1]);
        if let Some(s) = ipc_bench(&mut c, cross, "ipc_call_reply_cross_cpu") {
            lines.push(("ipc_call_reply_cross_cpu", s));
        }
    }
    for (name, s) in &lines {
        println!("bench: {name} {s} instructions");
    }
    let details: Vec<String> = lines.iter().map(|(n, s)| format!("{n} median {}", s.median)).collect();
    c.finish(details.join(", "))
}
