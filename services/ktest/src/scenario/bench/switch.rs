//! Context switch: two threads pinned to one CPU at the same priority, each calling `yield` in a
//! loop, so every `yield` switches to the other thread. A timed iteration is one `yield` of the
//! measuring thread until it runs again: two switches (there and back), each made of a `yield`
//! system call, saving one thread's registers (FP/SIMD included) and restoring the other's. The
//! figure is half of that round trip: one switch.

use super::Plan;
use crate::worker::{self, cpu_mask};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use keel_rt::println;
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
    for _ in 0..p.warmup {
        sys::yield_now();
    }
    // A batch counts only if the partner ran once for each of our yields in it. In a batch with
    // fewer, something else had this CPU (a service woken here: the disk's mount, a write-back)
    // and the figure would time that, not a switch. A partner that never runs (a lone yield)
    // leaves no batch that counts.
    let mut costs = Vec::with_capacity(p.batches as usize);
    let mut disturbed = 0u64;
    for _ in 0..p.batches {
        let before = partner_yields.load(Ordering::Relaxed);
        let start = sys::counter();
        for _ in 0..p.per_batch {
            sys::yield_now();
        }
        let end = sys::counter();
        let ran = partner_yields.load(Ordering::Relaxed) - before;
        if ran + 1 >= p.per_batch {
            costs.push(end.wrapping_sub(start) / p.per_batch.max(1));
        } else {
            disturbed += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    partner.join(STOP_TIMEOUT_NS)?;
    if costs.len() < (p.batches as usize).div_ceil(2) {
        println!(
            "ktest: context_switch: the partner did not run once per yield in {disturbed} of {} batches",
            p.batches
        );
        return Err(Error::BadState);
    }
    Ok(costs.into_iter().map(|c| c / 2).collect())
}
