//! `quota`: the kernel's quotas as a process manager and its children meet them.
//!
//! - A process limit: a `bomb` child in a quota of 50 processes spawns sleepers through the process
//!   manager (children start in their parent's quota) until a spawn fails; it started exactly 49
//!   (50 with itself), the failure is `Limit`, and the counts return to 0.
//! - A memory limit: a `hog` child in an 8 MiB quota touching 32 MiB is killed (`EXIT_OOM`) and
//!   counted as an `oom_kill`; meanwhile this process, outside the quota, maps and touches 16 MiB
//!   untouched by it; afterwards the quota holds no memory. With the limit lifted the same hog
//!   runs to the end.
//! - A process moved into a quota and back; bad calls (wrong kinds, missing rights, a resource
//!   that does not exist, a tree deeper than the kernel keeps).

use super::{SEC, procmgr, wait_exit};
use crate::check::Checks;
use crate::services::{KTEST_PATH, Procmgr};
use keel_rt::abi::quota::{CPU_WEIGHT, MAX_DEPTH, MEMORY, NO_LIMIT, PROCESSES, QuotaStat, THREADS};
use keel_rt::abi::{EXIT_OOM, PAGE_SIZE, PmoKind, rights, slots};
use keel_rt::startup::Startup;
use keel_rt::vm::SharedMemory;
use keel_rt::{Error, Slot, println, sys};

const MIB: u64 = 1 << 20;
/// The bomb's group's process limit (the bomb itself is one of them).
const BOMB_LIMIT: u64 = 50;

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("quota");
    let Some(mut pm) = procmgr(&mut c, startup) else { return c.finish("") };
    let Some(root) = startup.cap("quota") else {
        c.fail("no 'quota' capability in the startup block");
        return c.finish("");
    };
    process_limit(&mut c, &mut pm, root);
    memory_limit(&mut c, &mut pm, root);
    moves_and_bad_calls(&mut c, &mut pm, root);
    c.finish("process limit, OOM kill, moves, bad calls")
}

fn stat(c: &mut Checks, quota: Slot, resource: u64) -> QuotaStat {
    c.expect_ok(format_args!("quota_stat(resource {resource})"), sys::quota_stat(quota, resource)).unwrap_or_default()
}

fn usage(quota: Slot, resource: u64) -> Result<u64, Error> {
    sys::quota_stat(quota, resource).map(|s| s.usage)
}

/// Deletes our cap to `process`, and prunes init's records of exited children (they hold the
/// processes' records, charged to their quota).
fn forget(pm: &mut Procmgr, process: Slot) {
    let _ = sys::cap_delete(process);
    let _ = pm.ps_text();
}

/// The memory charged to `quota` once every service has let go of what it kept for the quota's
/// dead processes (init's records, found by a PS; a service's copy of a client's process cap and
/// bulk buffer, dropped when its reaper notices the client exited: soon, but not at once), or
/// what is still charged after 20 s.
fn settled_memory(pm: &mut Procmgr, quota: Slot) -> Result<u64, Error> {
    let deadline = sys::counter() + 20 * sys::counter_freq();
    loop {
        let _ = pm.ps_text();
        let used = usage(quota, MEMORY)?;
        if used == 0 || sys::counter() > deadline {
            return Ok(used);
        }
        sys::sleep_ns(10_000_000);
    }
}

fn process_limit(c: &mut Checks, pm: &mut Procmgr, root: Slot) {
    let Some(q) = c.expect_ok("quota_create(root)", sys::quota_create(root)) else { return };
    c.expect_ok("quota_set(processes 50)", sys::quota_set(q, PROCESSES, BOMB_LIMIT));
    let Some(bomb) = c.expect_ok("SPAWN bomb in the quota", pm.spawn_in(q, KTEST_PATH, &["bomb"])) else { return };
    c.expect_eq("processes the bomb started before its spawn failed with Limit", wait_exit(bomb.process, 120 * SEC), Ok(BOMB_LIMIT as i64 - 1));
    forget(pm, bomb.process);
    let p = stat(c, q, PROCESSES);
    c.check(p.peak == BOMB_LIMIT && p.refused >= 1 && p.usage == 0, || alloc::format!("processes: peak 50, refused >= 1, 0 now; got {p:?}"));
    c.expect_eq("threads in the quota after the bomb", usage(q, THREADS), Ok(0));
    c.expect_eq("memory charged to the quota once the bomb is gone", settled_memory(pm, q), Ok(0));
    let m = stat(c, q, MEMORY);
    c.check(m.peak > 0, || alloc::format!("memory: charged while it ran; got {m:?}"));
    let _ = sys::cap_delete(q);
}

fn memory_limit(c: &mut Checks, pm: &mut Procmgr, root: Slot) {
    let Some(q) = c.expect_ok("quota_create(root)", sys::quota_create(root)) else { return };
    c.expect_ok("quota_set(memory 8 MiB)", sys::quota_set(q, MEMORY, 8 * MIB));
    let Some(hog) = c.expect_ok("SPAWN hog 32 in the quota", pm.spawn_in(q, KTEST_PATH, &["hog", "32"])) else { return };
    // At the same time, outside the quota: 16 MiB touched page by page.
    let outside = touch(16 * MIB);
    c.expect_eq("16 MiB touched outside the quota while the hog runs", outside, Ok(()));
    c.expect_eq("the hog's end", wait_exit(hog.process, 120 * SEC), Ok(EXIT_OOM));
    forget(pm, hog.process);
    c.expect_eq("memory charged to the quota once the hog is gone", settled_memory(pm, q), Ok(0));
    let m = stat(c, q, MEMORY);
    c.check(m.oom_kills == 1 && m.refused >= 1 && m.peak <= 8 * MIB && m.peak > 4 * MIB, || {
        alloc::format!("memory: 1 oom kill, refused >= 1, 4 MiB < peak <= 8 MiB; got {m:?}")
    });
    c.expect_ok("quota_set(memory max)", sys::quota_set(q, MEMORY, NO_LIMIT));
    if let Some(hog) = c.expect_ok("SPAWN hog 32 without a limit", pm.spawn_in(q, KTEST_PATH, &["hog", "32"])) {
        c.expect_eq("the hog's end without a limit", wait_exit(hog.process, 120 * SEC), Ok(0));
        forget(pm, hog.process);
    }
    let _ = sys::cap_delete(q);
}

fn moves_and_bad_calls(c: &mut Checks, pm: &mut Procmgr, root: Slot) {
    let Some(q) = c.expect_ok("quota_create(root)", sys::quota_create(root)) else { return };
    // This process into q and back: its count goes with it.
    c.expect_ok("quota_move(q, self)", sys::quota_move(q, slots::SELF_PROCESS));
    c.expect_eq("processes in q with us in it", usage(q, PROCESSES), Ok(1));
    let threads = usage(q, THREADS);
    c.check(threads.is_ok_and(|n| n >= 1), || alloc::format!("our threads moved with us: {threads:?}"));
    c.expect_ok("quota_move(root, self)", sys::quota_move(root, slots::SELF_PROCESS));
    c.expect_eq("processes in q after moving back", usage(q, PROCESSES), Ok(0));
    c.expect_eq("threads in q after moving back", usage(q, THREADS), Ok(0));

    let Some(n) = c.expect_ok("notif_create", sys::notif_create()) else { return };
    c.expect_err("quota_set(a notification)", sys::quota_set(n, MEMORY, 1), Error::WrongType);
    c.expect_err("quota_set(resource 5)", sys::quota_set(q, CPU_WEIGHT + 1, 1), Error::Invalid);
    c.expect_err("quota_stat(resource 5)", sys::quota_stat(q, CPU_WEIGHT + 1), Error::Invalid);
    c.expect_err("quota_stat(resource 4: a weight is read with the CPU)", sys::quota_stat(q, CPU_WEIGHT), Error::Invalid);
    c.expect_err("quota_create(empty slot)", sys::quota_create(4000), Error::BadSlot);
    c.expect_err("quota_move(q, a notification)", sys::quota_move(q, n), Error::WrongType);
    c.expect_err("pmo_create billed to a notification", sys::pmo_create_for(PmoKind::Anonymous, PAGE_SIZE, n), Error::WrongType);
    c.expect_err("SPAWN in a notification", pm.spawn_in(n, KTEST_PATH, &["exit"]), Error::WrongType);
    if let Some(ro) = c.expect_ok("cap_copy(q, READ)", sys::cap_copy(q, None, rights::READ | rights::GRANT, 0)) {
        c.expect_eq("quota_stat with READ", sys::quota_stat(ro, MEMORY).map(|s| s.limit), Ok(NO_LIMIT));
        c.expect_err("quota_set with READ", sys::quota_set(ro, MEMORY, 1), Error::NoRights);
        c.expect_err("quota_create with READ", sys::quota_create(ro), Error::NoRights);
        c.expect_err("quota_move with READ", sys::quota_move(ro, slots::SELF_PROCESS), Error::NoRights);
        c.expect_err("SPAWN in a quota we may only read", pm.spawn_in(ro, KTEST_PATH, &["exit"]), Error::NoRights);
        let _ = sys::cap_delete(ro);
    }
    // A chain below q until the kernel refuses: q is at depth 1.
    let mut chain = alloc::vec![q];
    let refused = loop {
        match sys::quota_create(*chain.last().unwrap_or(&q)) {
            Ok(child) => chain.push(child),
            Err(e) => break e,
        }
        if chain.len() > 2 * MAX_DEPTH as usize {
            break Error::Invalid;
        }
    };
    c.expect_eq("quota_create below the deepest quota", refused, Error::Limit);
    c.expect_eq("quotas below q", chain.len() as u32 - 1, MAX_DEPTH - 1);
    for s in chain.into_iter().rev() {
        let _ = sys::cap_delete(s);
    }
    let _ = sys::cap_delete(n);
}

/// Maps `size` bytes of anonymous memory and writes one byte to every page.
fn touch(size: u64) -> Result<(), Error> {
    let pmo = sys::pmo_create(PmoKind::Anonymous, size)?;
    let mem = SharedMemory::map(pmo, size);
    let _ = sys::cap_delete(pmo);
    let mem = mem?;
    for page in 0..size / PAGE_SIZE {
        mem.write(page * PAGE_SIZE, &[1]);
    }
    Ok(())
}

/// The `hog` helper: touches `mib` MiB (killed by the kernel if its quota has no room).
pub fn hog(mib: u64) -> i32 {
    match touch(mib * MIB) {
        Ok(()) => 0,
        Err(e) => {
            println!("ktest: hog: {e}");
            crate::EXIT_FAILED
        }
    }
}

/// The `fill` helper: a file of `kib` KiB at `path`, written 16 KiB at a time, left behind.
pub fn fill(path: &str, kib: u64) -> i32 {
    use keel_rt::fs;
    let fd = match fs::open(path, fs::flags::O_WRONLY | fs::flags::O_CREAT | fs::flags::O_TRUNC, 0o644) {
        Ok(fd) => fd,
        Err(e) => {
            println!("ktest: fill: {path}: {e}");
            return crate::EXIT_FAILED;
        }
    };
    let piece = [0x5au8; 16 * 1024];
    let mut left = kib * 1024;
    while left > 0 {
        let n = left.min(piece.len() as u64) as usize;
        if let Err(e) = fs::write(fd, &piece[..n]) {
            println!("ktest: fill: {path}: {e} after {} KiB", (kib * 1024 - left) / 1024);
            let _ = fs::close(fd);
            return crate::EXIT_FAILED;
        }
        left -= n as u64;
    }
    let _ = fs::close(fd);
    println!("ktest: fill: wrote {kib} KiB to {path}");
    0
}

/// The `bomb` helper: sleepers until a spawn fails; they are killed and waited for; how many.
pub fn bomb(startup: &Startup) -> i32 {
    let Some(mut pm) = Procmgr::from_startup(startup) else { return crate::EXIT_FAILED };
    let mut children = alloc::vec::Vec::new();
    let stop = loop {
        match pm.spawn(KTEST_PATH, &["sleeper"]) {
            Ok(child) => children.push(child),
            Err(e) => break e,
        }
        if children.len() > 1000 {
            break Error::Invalid;
        }
    };
    for child in &children {
        let _ = sys::process_kill(child.process);
        let _ = wait_exit(child.process, 60 * SEC);
        let _ = sys::cap_delete(child.process);
    }
    match stop {
        Error::Limit => children.len() as i32,
        e => -1000 - e as i64 as i32,
    }
}
