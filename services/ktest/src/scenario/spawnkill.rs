//! `spawnkill`: 1,000 processes spawned and killed leave the kernel exactly where it was: every
//! object count, and the frames the kernel holds itself (neither free nor in a PMO or a page
//! table), equal (`sysfuzz::compare`). Half are killed through their process capability, half
//! through the process manager's KILL; each is waited for and its capability deleted.
//!
//! init keeps a record (and a capability) of every child it spawned until a PS request prunes
//! the exited ones, so the loop asks for PS every [`PRUNE_EVERY`] rounds and before each
//! measurement. A live service's heap that reaches a new page meanwhile (on a loaded host init
//! handles exits later and its table gets longer) is its own memory, not a kernel leak: it is
//! reported, and bounded by `sysfuzz::PROCESS_GROWTH_LIMIT`.

use super::leaks::census_after;
use super::sysfuzz::{compare, settled_census, wait_for_system};
use super::{SEC, procmgr, wait_exit};
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

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("spawnkill");
    let Some(mut pm) = procmgr(&mut c, startup) else { return c.finish("") };
    wait_for_system();
    for i in 0..WARMUP {
        if i % PRUNE_EVERY == 0 {
            let _ = pm.ps_text();
        }
        if let Err((what, e)) = spawn_and_kill(&mut pm, i % 2 == 0) {
            c.fail(format_args!("warm-up round {i}: {what}: {e:?}"));
            return c.finish("");
        }
    }
    c.expect_ok("procmgr PS before the measurement", pm.ps_text());
    let Some(before) = c.expect_ok("census before", settled_census()) else { return c.finish("") };
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
    let Some(after) = c.expect_ok("census after", census_after(&mut pm, &before)) else { return c.finish("") };
    let (kb, ka) = (before.kernel_frames(), after.kernel_frames());
    keel_rt::println!(
        "ktest: spawnkill: kernel-held frames before {kb}, after {ka}; free {} -> {}; processes' frames {} -> {} ({done} processes in {ticks} ticks)",
        before.frames_free,
        after.frames_free,
        before.process_frames(),
        after.process_frames(),
    );
    let diffs = compare(&before, &after);
    for d in &diffs {
        c.fail(format_args!("census after {done} spawn/kill rounds: {d}"));
    }
    if diffs.is_empty() {
        c.pass();
    }
    c.finish(format!("{done} processes spawned and killed; kernel-held frames before {kb}, after {ka}"))
}
