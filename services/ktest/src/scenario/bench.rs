//! `bench` and `bench-quick`: the kernel's hot paths measured with the virtual counter. Under
//! `-icount shift=0,align=off,sleep=off` the counter advances once per instruction executed by
//! any CPU, so every figure is a path length in instructions, the same on every host.
//!
//! Each benchmark runs on a thread pinned to CPU 0 (its partner, when it has one, on CPU 0 or 1),
//! warms up, then takes many samples; a sample is either one operation timed on its own or a
//! batch of operations divided by the batch size. One line per benchmark,
//! `bench: <name> <min> <median> <max> instructions`, is the machine-readable output
//! (`scripts/bench.py` reads it; docs/PERFORMANCE.md says where each one starts and ends).
//! `bench-quick` runs the same code with few iterations so that `make test` keeps it working.

mod cgroup;
mod doorbell;
mod fault;
mod fs;
mod guest;
mod notif;
mod spawn;
mod switch;
mod vmswitch;

use super::{EchoProcess, SEC, namesrv, procmgr, start_echo_server};
use crate::check::Checks;
use crate::echo;
use crate::services::Procmgr;
use crate::stats::{Summary, time_batches};
use crate::worker::{self, cpu_mask};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::abi::ipc::CapList;
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, println, sys};

/// The measuring thread always runs on CPU 0; a cross-CPU partner on CPU 1.
const CLIENT_CPU: u32 = 0;
const OTHER_CPU: u32 = 1;

/// How many iterations: the full run (`bench`) or the quick one (`bench-quick`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Full,
    Quick,
}

/// Iteration counts of one run.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Untimed iterations before the batched benchmarks (null syscall, IPC, context switch).
    warmup: u64,
    batches: u64,
    per_batch: u64,
    /// Timed round trips of the notification benchmarks (after `warmup / 10` untimed ones).
    notif_samples: u64,
    /// Pages first-touched in the page-fault benchmark.
    fault_pages: u64,
    /// Processes spawned and waited for (after `spawn_warmup` untimed ones).
    spawn_warmup: u64,
    spawn_samples: u64,
    /// MiB written and read sequentially, files created, and passes of each file benchmark.
    fs_mib: usize,
    fs_files: usize,
    fs_samples: usize,
    /// Untimed and timed operations of each cgroup file benchmark.
    cgroup: cgroup::Counts,
}

impl Size {
    fn plan(self) -> Plan {
        match self {
            Size::Full => Plan {
                warmup: 1000,
                batches: 100,
                per_batch: 100,
                notif_samples: 1000,
                fault_pages: 1024,
                spawn_warmup: 2,
                spawn_samples: 20,
                fs_mib: 16,
                fs_files: 1000,
                fs_samples: 3,
                cgroup: cgroup::Counts { warmup: 20, samples: 500 },
            },
            Size::Quick => Plan {
                warmup: 100,
                batches: 10,
                per_batch: 10,
                notif_samples: 50,
                fault_pages: 64,
                spawn_warmup: 1,
                spawn_samples: 3,
                fs_mib: 1,
                fs_files: 50,
                fs_samples: 1,
                cgroup: cgroup::Counts { warmup: 2, samples: 10 },
            },
        }
    }

    fn scenario(self) -> &'static str {
        match self {
            Size::Full => "bench",
            Size::Quick => "bench-quick",
        }
    }
}

/// Waits (at most 30 s) until the file service has mounted the disk (or given up on it): the
/// mount reads the whole disk's bitmaps on the same CPUs, and a benchmark that ran beside it
/// would time the mount too (the context switch's partner then missed most of its turns).
fn settle() {
    const POLL_NS: u64 = 20_000_000;
    for _ in 0..1500 {
        match keel_rt::fs::pending_mounts() {
            Ok(0) => return,
            // Still mounting, or the file service is not up yet.
            Ok(_) | Err(_) => sys::sleep_ns(POLL_NS),
        }
    }
    println!("ktest: bench: the file service's start-up mounts are still pending after 30 s; measuring anyway");
}

/// The file benchmarks on the root tmpfs and on ext2 at /disk (`make bench` attaches a fresh
/// disk; without one the ext2 figures are missing and the script says so).
fn fs_benches(c: &mut Checks, ns: Option<Slot>, p: Plan, out: &mut Vec<(&'static str, Summary, &'static str)>) {
    let disk = ns.is_some_and(super::fs::disk_mounted);
    let mut targets = alloc::vec![("tmpfs", "/tmp")];
    if disk {
        targets.push(("ext2", "/disk"));
    }
    for (fs_name, dir) in targets {
        let file = format!("{dir}/bench.dat");
        match fs::sequential(&file, p.fs_mib, p.fs_samples) {
            Ok((w, r)) => {
                let (wn, rn) = if fs_name == "tmpfs" { ("fs_tmpfs_write_16m", "fs_tmpfs_read_16m") } else { ("fs_ext2_write_16m", "fs_ext2_read_16m") };
                for (name, v) in [(wn, w), (rn, r)] {
                    match Summary::of(&v) {
                        Some(s) => out.push((name, s, "instructions/KiB")),
                        None => c.fail(format_args!("{name}: no samples")),
                    }
                }
                c.pass();
            }
            Err(e) => c.fail(format_args!("{fs_name} sequential write/read: {e}")),
        }
        let name = if fs_name == "tmpfs" { "fs_tmpfs_create_stat_unlink" } else { "fs_ext2_create_stat_unlink" };
        match fs::create_stat_unlink(&format!("{dir}/bench-files"), p.fs_files, p.fs_samples) {
            Ok(v) => match Summary::of(&v) {
                Some(s) => out.push((name, s, "instructions/file")),
                None => c.fail(format_args!("{name}: no samples")),
            },
            Err(e) => c.fail(format_args!("{name}: {e}")),
        }
    }
}

/// The cgroup file benchmarks on the client CPU, over resmgr's connection and through the file
/// service (a group of their own, made and removed by them).
fn cgroup_benches(c: &mut Checks, resmgr: Option<Slot>, p: Plan, out: &mut Vec<(&'static str, Summary)>) {
    let Some(conn) = resmgr else {
        c.fail("no 'resmgr' capability in the startup block: no cgroup benchmarks");
        return;
    };
    let Some(measured) = on_client_cpu(c, "cgroup files", move || Ok(cgroup::measure(conn, p.cgroup))) else { return };
    match measured {
        Ok(costs) => {
            for (name, v) in cgroup::NAMES.into_iter().zip(costs) {
                match Summary::of(&v) {
                    Some(s) => out.push((name, s)),
                    None => c.fail(format_args!("{name}: no samples")),
                }
            }
            c.pass();
        }
        Err(e) => c.fail(format_args!("cgroup files: {e}")),
    }
}

fn ipc_calls(conn: Slot, badge: u64, p: Plan) -> Result<Vec<u64>, Error> {
    let msg = echo::request(0, 1);
    let want = echo::reply_to(&msg, badge);
    let r = sys::ipc_call(conn, &msg, CapList::EMPTY)?;
    if r.msg != want {
        return Err(Error::Invalid);
    }
    time_batches(sys::counter, p.warmup, p.batches, p.per_batch, || {
        sys::ipc_call(conn, &msg, CapList::EMPTY).map(|_| ())
    })
}

/// Runs `f` on a thread pinned to the client CPU and returns its result (a failed check if the
/// thread cannot start, does not finish within 300 s, or `f` fails).
fn on_client_cpu<T: Send + 'static>(
    c: &mut Checks,
    what: &str,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Option<T> {
    // `make profile BENCH=<what>` builds with KEEL_PROFILE set: the benchmark's whole run
    // (warm-up included) is the profiling window scripts/profile.py's QEMU plugin counts.
    let profile = option_env!("KEEL_PROFILE") == Some(what);
    if profile {
        sys::profile_mark(true);
    }
    let w = c.expect_ok(format_args!("{what}: start the client thread"), worker::start(cpu_mask(CLIENT_CPU), f));
    let r = w.and_then(|w| c.expect_ok(format_args!("{what}: client thread"), w.join(300 * SEC)));
    if profile {
        sys::profile_mark(false);
    }
    let r = r?;
    c.expect_ok(format_args!("{what}: timed operations"), r)
}

/// Runs `f` on the client CPU and summarises the per-operation costs it returns.
fn measure(
    c: &mut Checks,
    what: &str,
    f: impl FnOnce() -> Result<Vec<u64>, Error> + Send + 'static,
) -> Option<Summary> {
    let costs = on_client_cpu(c, what, f)?;
    let s = Summary::of(&costs);
    c.check(s.is_some(), || format!("{what}: no samples"));
    s
}

fn ipc_bench(c: &mut Checks, server: Option<EchoProcess>, what: &str, p: Plan) -> Option<Summary> {
    let server = server?;
    let (conn, badge) = (server.conn, sys::cap_info(server.conn).map(|i| i.2).unwrap_or(0));
    let s = measure(c, what, move || ipc_calls(conn, badge, p));
    server.kill(c);
    server.release();
    s
}

/// Spawns `ktest exit` through the process manager and waits for it, on the client CPU; the
/// process manager comes back with the costs.
fn spawn_bench(c: &mut Checks, pm: Procmgr, p: Plan) -> Option<Summary> {
    let (costs, _pm) = on_client_cpu(c, "process_spawn_exit_wait", move || {
        let mut pm = pm;
        let costs = spawn::spawn_exit_wait(&mut pm, p.spawn_warmup, p.spawn_samples)?;
        Ok((costs, pm))
    })?;
    let s = Summary::of(&costs);
    c.check(s.is_some(), || String::from("process_spawn_exit_wait: no samples"));
    s
}

pub fn run(startup: &Startup, size: Size) -> i32 {
    let p = size.plan();
    let mut c = Checks::new(size.scenario());
    settle();
    let mut lines: Vec<(&str, Summary)> = Vec::new();
    let mut record = |name: &'static str, s: Option<Summary>| {
        if let Some(s) = s {
            lines.push((name, s));
        }
    };
    record("null_syscall", measure(&mut c, "null_syscall", move || {
        time_batches(sys::counter, p.warmup, p.batches, p.per_batch, sys::null)
    }));
    record("context_switch", measure(&mut c, "context_switch", move || switch::yield_round_trips(CLIENT_CPU, p)));
    match startup.cap("control") {
        Some(control) => {
            for (name, two_vms) in [("vcpu_yield_round_trip_same_vm", false), ("vcpu_yield_round_trip_two_vms", true)] {
                record(name, measure(&mut c, name, move || vmswitch::yield_round_trips(control, CLIENT_CPU, two_vms)));
            }
            record("guest_ioevent_doorbell", measure(&mut c, "guest_ioevent_doorbell", move || doorbell::doorbell_stores(control)));
        }
        None => c.fail("no 'control' capability in the startup block: no VM benchmarks"),
    }
    let notif_warmup = p.warmup / 10;
    record("notif_signal_wake_same_cpu", measure(&mut c, "notif_signal_wake_same_cpu", move || {
        notif::signal_to_wake(CLIENT_CPU, notif_warmup, p.notif_samples)
    }));
    record("notif_signal_wake_cross_cpu", measure(&mut c, "notif_signal_wake_cross_cpu", move || {
        notif::signal_to_wake(OTHER_CPU, notif_warmup, p.notif_samples)
    }));
    record("page_fault_anon_first_touch", measure(&mut c, "page_fault_anon_first_touch", move || {
        fault::first_touch(p.fault_pages)
    }));
    if let (Some(mut pm), Some(ns)) = (procmgr(&mut c, startup), namesrv(&mut c, startup)) {
        let same = start_echo_server(&mut c, &mut pm, &ns, "ktest-bench-same", &[CLIENT_CPU]);
        record("ipc_call_reply_same_cpu", ipc_bench(&mut c, same, "ipc_call_reply_same_cpu", p));
        let cross = start_echo_server(&mut c, &mut pm, &ns, "ktest-bench-cross", &[OTHER_CPU]);
        record("ipc_call_reply_cross_cpu", ipc_bench(&mut c, cross, "ipc_call_reply_cross_cpu", p));
        record("process_spawn_exit_wait", spawn_bench(&mut c, pm, p));
    }
    cgroup_benches(&mut c, startup.cap("resmgr"), p, &mut lines);
    let mut per: Vec<(&str, Summary, &str)> = Vec::new();
    fs_benches(&mut c, startup.cap("namesrv"), p, &mut per);
    for (name, s) in &lines {
        println!("bench: {name} {s} instructions");
    }
    for (name, s, unit) in &per {
        println!("bench: {name} {s} {unit}");
    }
    let details: Vec<String> = lines
        .iter()
        .map(|(n, s)| format!("{n} median {}", s.median))
        .chain(per.iter().map(|(n, s, _)| format!("{n} median {}", s.median)))
        .collect();
    c.finish(details.join(", "))
}
