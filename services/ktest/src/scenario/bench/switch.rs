//! Context switch: two threads pinned to one CPU at the same priority, each calling `yield` in a
//! loop, so every `yield` switches to the other thread. A timed iteration is one `yield` of the
//! measuring thread until it runs again: two switches (there and back), each made of a `yield`
//! system call, saving one thread's registers (FP/SIMD included) and restoring the other's. The
//! figure is half of that round trip: one switch.

use super::Plan;
use crate::stats::time_batches;
use crate::worker::{self, cpu_mask};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use keel_rt::{Error, sys};

/// How long to wait for the partner thread to stop.
const STOP_TIMEOUT_NS: u64 = 5_000_000_000;

/// Per-switch costs (half of each batch's per-iteration cost), with the partner on `cpu` (which
/// must be the CPU this thread is pinned to).
pub fn yield_round_trips(cpu: u32, p: Plan) -> Result<Vec<u64>, Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let partner_yields = Arc::new(AtomicU64::new(0));
    let partner = {
        let (stop, yields) = (stop.clone(), partner_yields.clone());
        worker::start(cpu_mask(cpu), move || {
            while !stop.load(Ordering::Relaxed) {
                sys::yield_now();
                yields.fetch_add(1, Ordering::Relaxed);
            }
        })?
    };
    let mut ours = 0u64;
    let costs = time_batches::<Error>(sys::counter, p.warmup, p.batches, p.per_batch, || {
        sys::yield_now();
        ours += 1;
        Ok(())
    });
    stop.store(true, Ordering::Relaxed);
    partner.join(STOP_TIMEOUT_NS)?;
    let costs = costs?;
    // Every yield of ours must have let the partner run (else this timed a lone yield). The
    // partner's count lags ours by one each time a higher-priority thread (a service woken on
    // this CPU) preempts the partner between its count and its yield: then ours resumes once
    // without the partner's yield. Allow 1% of such preemptions; a partner that did not run
    // (a lone yield) falls far below that.
    if partner_yields.load(Ordering::Relaxed) + 1 + ours / 100 < ours {
        return Err(Error::BadState);
    }
    Ok(costs.into_iter().map(|c| c / 2).collect())
}
