//! `spawnkill`: 1,000 processes spawned and killed leave the free frame count exactly where it
//! was. Half are killed through their process capability, half through the process manager's
//! KILL; each is waited for and its capability deleted.
//!
//! init keeps a record (and a capability) of every child it spawned until a PS request prunes
//! the exited ones, so the loop asks for PS every [`PRUNE_EVERY`] rounds and before each
//! measurement: init's heap then stays within the size the warm-up already reached.

use super::{MS, SEC, procmgr, wait_exit};
use crate::check::Checks;
use crate::services::Procmgr;
use alloc::format;
use keel_rt::startup::Startup;
use keel_rt::{Error, sys};

const ROUNDS: u64 = 1000;
/// Rounds before the measurement, so that every heap involved has grown to its steady size.
const WARMUP: u64 = 2 * PRUNE_EVERY;
/// Rounds between two PS requests.
const PRUNE_EVERY: u64 = 20;

/// Spawns a sleeper and kills it (through its cap when `by_cap`, else through procmgr KILL).
fn spawn_and_kill(pm: &mut Procmgr, by_cap: bool) -> Result<(), (&'static str, Error)> {
    let child = pm.spawn_ktest(&["sleeper"]).map_err(|e| ("procmgr SPAWN sleeper", e))?;
    let killed = if by_cap {
        sys::process_kill(child.process).map_err(|e| ("process_kill", e))
    } else {
        pm.kill(child.pid).map_err(|e| ("procmgr KILL", e))
    };
    let code = killed.and_then(|()| wait_exit(child.process, 10 * SEC).map_err(|e| ("wait for the killed sleeper", e)));
    let _ = sys::cap_delete(child.process);
    match code? {
        keel_rt::abi::EXIT_KILLED => Ok(()),
        other => Err(("exit code of the killed sleeper", Error::from_code(other).unwrap_or(Error::Invalid))),
    }
}

fn free_frames() -> u64 {
    sys::mem_info().map_or(0, |(_, free)| free)
}

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("spawnkill");
    let Some(mut pm) = procmgr(&mut c, startup) else { return c.finish("") };
    for i in 0..WARMUP {
        if i % PRUNE_EVERY == 0 {
            let _ = pm.ps_text();
        }
        if let Err((what, e)) = spawn_and_kill(&mut pm, i % 2 == 0) {
            c.fail(format_args!("warm-up round {i}: {what}: {e:?}"));
            return c.finish("");
        }
    }
    sys::sleep_ns(100 * MS);
    c.expect_ok("procmgr PS before the measurement", pm.ps_text());
    let before = free_frames();
    let start = sys::counter();
    let mut done = 0;
    for i in 0..ROUNDS {
        if i % PRUNE_EVERY == 0 {
            let _ = pm.ps_text();
        }
        match spawn_and_kill(&mut pm, i % 2 == 0) {
            Ok(()) => done += 1,
            Err((what, e)) => {
                c.fail(format_args!("round {i}: {what}: {e:?}"));
                break;
            }
        }
    }
    let ticks = sys::counter().wrapping_sub(start);
    c.expect_eq("processes spawned and killed", done, ROUNDS);
    // Let the process manager finish its bookkeeping of the last exits; give it up to 2 s.
    sys::sleep_ns(100 * MS);
    c.expect_ok("procmgr PS after the rounds", pm.ps_text());
    let mut after = free_frames();
    for _ in 0..20 {
        if after == before {
            break;
        }
        sys::sleep_ns(100 * MS);
        after = free_frames();
    }
    keel_rt::println!(
        "ktest: spawnkill: free frames before {before}, after {after} ({done} processes in {ticks} ticks)"
    );
    if after != before {
        c.fail(format_args!(
            "free frames: {before} before {done} spawn/kill rounds, {after} after ({} frames {})",
            before.abs_diff(after),
            if after < before { "leaked" } else { "gained" }
        ));
    } else {
        c.pass();
    }
    c.finish(format!("{done} processes spawned and killed; free frames before {before}, after {after}"))
}
