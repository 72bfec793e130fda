//! Notification signal to wake-up: a waiter thread blocks in `notif_wait` on the CPU under test;
//! the measuring thread reads the counter and calls `notif_signal`; the woken waiter reads the
//! counter as soon as its `notif_wait` returns. The sample is the difference: the signal call,
//! the wake-up (an IPI when the waiter is on another CPU) and the switch into the waiter.
//!
//! The waiter then signals an acknowledgement notification and the measuring thread waits for
//! it before the next round, so the measuring thread is blocked (not spinning, which would count
//! its own instructions) while the waiter wakes.

use crate::worker::{self, cpu_mask};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use keel_rt::{Error, Slot, sys};

/// How long the measuring thread waits for one acknowledgement before giving up.
const ACK_TIMEOUT_NS: u64 = 5_000_000_000;

/// `warmup` untimed rounds, then `samples` timed ones, with the waiter pinned to `waiter_cpu`;
/// the cost of each timed round.
pub fn signal_to_wake(waiter_cpu: u32, warmup: u64, samples: u64) -> Result<Vec<u64>, Error> {
    let go = sys::notif_create()?;
    let ack = match sys::notif_create() {
        Ok(n) => n,
        Err(e) => {
            let _ = sys::cap_delete(go);
            return Err(e);
        }
    };
    let r = rounds(go, ack, waiter_cpu, warmup, samples);
    let _ = sys::cap_delete(go);
    let _ = sys::cap_delete(ack);
    r
}

fn rounds(go: Slot, ack: Slot, waiter_cpu: u32, warmup: u64, samples: u64) -> Result<Vec<u64>, Error> {
    let rounds = warmup + samples;
    let woke_at = Arc::new(AtomicU64::new(0));
    let waiter = {
        let woke_at = woke_at.clone();
        worker::start(cpu_mask(waiter_cpu), move || -> Result<(), Error> {
            for _ in 0..rounds {
                sys::notif_wait(go, 0)?;
                woke_at.store(sys::counter(), Ordering::Release);
                sys::notif_signal(ack, 1)?;
            }
            Ok(())
        })?
    };
    let mut costs = Vec::with_capacity(samples as usize);
    for i in 0..rounds {
        let start = sys::counter();
        sys::notif_signal(go, 1)?;
        sys::notif_wait(ack, ACK_TIMEOUT_NS)?;
        let end = woke_at.load(Ordering::Acquire);
        if i >= warmup {
            costs.push(end.wrapping_sub(start));
        }
    }
    waiter.join(ACK_TIMEOUT_NS)??;
    Ok(costs)
}
