//! Process spawn, exit and wait: the measuring thread asks the process manager (init) to spawn
//! `/bin/ktest exit` (the ktest binary in a mode that returns 0 at once) and waits for it with
//! `process_wait`. The sample runs from the counter read before the SPAWN call to the one after
//! `process_wait` returns: the IPC to init, init finding the ELF in the initrd, creating the
//! process, address space and memory objects, loading the segments, the startup block and the
//! first thread; the child's runtime start-up, argument parsing and exit; the kernel tearing the
//! process down and waking the waiter. Instructions on every CPU count.
//!
//! Samples are 2 million instructions apart (an untimed busy wait; a sleep would let every CPU go
//! idle, and idle time under icount costs host time): the child's exit also wakes init's supervisor
//! thread, which takes init's process-list lock (a spin lock) to forget the child. A SPAWN
//! arriving meanwhile can spin on that lock until a tick preempts the holder, adding up to tens
//! of millions of instructions to a sample; that is a fault of init's locking, reported apart
//! (docs/PERFORMANCE.md), not the spawn path this benchmark measures.

use crate::services::Procmgr;
use alloc::vec::Vec;
use keel_rt::{Error, sys};

/// The untimed pause before each spawn, in counter ticks.
const SETTLE_TICKS: u64 = 2_000_000;

/// `warmup` untimed spawns, then `samples` timed ones; the cost of each timed one.
pub fn spawn_exit_wait(pm: &mut Procmgr, warmup: u64, samples: u64) -> Result<Vec<u64>, Error> {
    let mut costs = Vec::with_capacity(samples as usize);
    for i in 0..warmup + samples {
        // The pause is no part of the spawn: `make profile` leaves it out of its window.
        let profiling = option_env!("KEEL_PROFILE") == Some("process_spawn_exit_wait");
        if profiling {
            sys::profile_mark(false);
        }
        let settled = sys::counter() + SETTLE_TICKS;
        while sys::counter() < settled {
            core::hint::spin_loop();
        }
        if profiling {
            sys::profile_mark(true);
        }
        let start = sys::counter();
        let child = pm.spawn_ktest(&["exit"])?;
        let code = sys::process_wait(child.process);
        let end = sys::counter();
        let _ = sys::cap_delete(child.process);
        if code? != 0 {
            return Err(Error::BadState);
        }
        if i >= warmup {
            costs.push(end.wrapping_sub(start));
        }
    }
    Ok(costs)
}
