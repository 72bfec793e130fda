//! `sysfuzz[:<calls>]`: a child makes `calls` (default 20,000) random system calls from a fixed
//! seed (crate::sysfuzz); the kernel must not panic (the QEMU test fails on a panic line), the
//! child must finish, and once it has exited the kernel's object census must be what it was
//! before: every count of live objects equal, free frames and free kernel heap within one page.
//! A short warm-up run first lets every heap involved (init's record of its children, ours)
//! reach its size.

use super::{MS, SEC, procmgr, wait_exit};
use crate::check::Checks;
use crate::services::Procmgr;
use alloc::format;
use alloc::string::{String, ToString};
use keel_rt::startup::Startup;
use keel_rt::sys::{self, Census};
use keel_rt::println;

const DEFAULT_CALLS: u64 = 20_000;
const SEED: u64 = 0x5eed_f022;
const WARMUP_CALLS: u64 = 600;

/// Runs one child to its end; whether it exited with 0.
fn run_child(c: &mut Checks, pm: &mut Procmgr, seed: u64, calls: u64) -> bool {
    let (s, n) = (seed.to_string(), calls.to_string());
    let Some(child) = c.expect_ok("procmgr SPAWN ktest sysfuzz-child", pm.spawn_ktest(&["sysfuzz-child", &s, &n])) else {
        return false;
    };
    // About 20 us a call under TCG; give it plenty.
    let timeout = (60 + calls / 1000) * SEC;
    let code = wait_exit(child.process, timeout);
    let _ = sys::cap_delete(child.process);
    c.expect_eq(format_args!("exit code of sysfuzz-child {seed} {calls}"), code, Ok(0))
}

/// The census once two reads in a row agree (other services may be finishing something).
pub(super) fn settled_census() -> Result<Census, keel_rt::Error> {
    let mut last = sys::census()?;
    for _ in 0..20 {
        sys::sleep_ns(50 * MS);
        let now = sys::census()?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

pub(super) fn describe(c: &Census) -> String {
    let mut s = format!(
        "frames free {}, in pmos {}, in page tables {}, kernel {}; heap pages {}, free {}",
        c.frames_free,
        c.pmo_frames,
        c.table_frames,
        c.kernel_frames(),
        c.heap_pages,
        c.heap_free_pages
    );
    for (name, n) in c.objects() {
        s.push_str(&format!(", {name} {n}"));
    }
    s
}

/// How many frames the processes alive before and after may have gained meanwhile: a
/// long-lived service's heap or page tables reaching a page they never touched before (init's
/// table of children is longer when exits are handled late on a loaded host). More is a leak in
/// a service, and fails like one.
pub const PROCESS_GROWTH_LIMIT: u64 = 64;

/// Failed checks (as messages) of `after` against `before`: every object count equal, the
/// frames the kernel holds itself equal (a frame leaked by the kernel is neither free nor in a
/// PMO or a page table), the processes' frames grown by at most [`PROCESS_GROWTH_LIMIT`], and
/// the kernel heap's free pages within one page.
pub fn compare(before: &Census, after: &Census) -> alloc::vec::Vec<String> {
    let mut out = alloc::vec::Vec::new();
    for ((name, b), (_, a)) in before.objects().iter().zip(after.objects().iter()) {
        if a != b {
            out.push(format!("{name}: {b} before, {a} after"));
        }
    }
    let (b, a) = (before.kernel_frames(), after.kernel_frames());
    if a != b {
        out.push(format!(
            "frames the kernel holds (neither free nor in a pmo or page table): {b} before, {a} after ({} {})",
            a.abs_diff(b),
            if a > b { "more: leaked or heap grown" } else { "fewer" }
        ));
    }
    let (b, a) = (before.process_frames(), after.process_frames());
    if a > b + PROCESS_GROWTH_LIMIT {
        out.push(format!(
            "frames in processes' memory and page tables: {b} before, {a} after (grew by more than {PROCESS_GROWTH_LIMIT})"
        ));
    }
    let (b, a) = (before.heap_free_pages, after.heap_free_pages);
    if a.abs_diff(b) > 1 {
        out.push(format!("free kernel heap pages: {b} before, {a} after (more than one page apart)"));
    }
    out
}

/// How long (in 20 ms steps) a census scenario waits for fs to finish mounting.
const MOUNT_WAIT_ATTEMPTS: u32 = 1500;

/// Waits until the system has finished starting, before a census scenario takes its first
/// census: fs's search for its disk (it gives up after a while when there is none) and the
/// file session this process then holds create objects and kernel memory of their own, which a
/// census taken meanwhile would count against the scenario (seen under load: 4 heap pages in
/// sysfuzz; 2 threads, 2 PMOs, a connection and 7 caps in leaks).
pub(super) fn wait_for_system() {
    let _ = keel_rt::fs::wait_for_mounts(MOUNT_WAIT_ATTEMPTS, 20 * MS);
}

pub fn run(startup: &Startup, count: Option<u64>) -> i32 {
    let calls = count.unwrap_or(DEFAULT_CALLS);
    let mut c = Checks::new("sysfuzz");
    let Some(mut pm) = procmgr(&mut c, startup) else { return c.finish("") };
    wait_for_system();
    if !run_child(&mut c, &mut pm, SEED ^ 1, WARMUP_CALLS) {
        return c.finish("");
    }
    let _ = pm.ps_text();
    let Some(before) = c.expect_ok("census before", settled_census()) else { return c.finish("") };
    println!("ktest: sysfuzz: census before: {}", describe(&before));
    let start = sys::counter();
    let finished = run_child(&mut c, &mut pm, SEED, calls);
    let ticks = sys::counter().wrapping_sub(start);
    // init drops its record (and cap) of an exited child at the next PS.
    let _ = pm.ps_text();
    let mut after = settled_census();
    for _ in 0..20 {
        if after.as_ref().is_ok_and(|a| compare(&before, a).is_empty()) {
            break;
        }
        sys::sleep_ns(100 * MS);
        let _ = pm.ps_text();
        after = settled_census();
    }
    let Some(after) = c.expect_ok("census after", after) else { return c.finish("") };
    println!("ktest: sysfuzz: census after:  {}", describe(&after));
    let diffs = compare(&before, &after);
    for d in &diffs {
        c.fail(format_args!("census after the fuzzer exited: {d}"));
    }
    if diffs.is_empty() {
        c.pass();
    }
    let secs = ticks / sys::counter_freq().max(1);
    c.finish(format!(
        "{calls} random system calls from seed {SEED:#x} in {secs} s{}; census before and after match",
        if finished { "" } else { " (the child failed)" }
    ))
}
