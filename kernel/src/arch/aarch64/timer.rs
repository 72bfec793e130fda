//! The EL2 physical timer (CNTHP): the kernel's periodic tick, and the wake-up of the earliest
//! sleeper between ticks.
//!
//! Under VHE the CNTP_* register names reach CNTHP_*_EL2 at EL2, so this uses them. The guest's
//! EL1 timers (CNTV, CNTP through the *_EL02 names) are left alone for guests.
//!
//! Each CPU keeps the counter value of its next tick; the comparator holds the earlier of that
//! and the deadline the kernel asked for ([`wake_by`], [`rearm`]). So a sleeper (a thread in
//! `sleep` or a timed wait, a vCPU in WFI with its timer armed) wakes at its deadline, not at
//! the first tick after it, and the tick itself stays periodic: the scheduler's time slices count
//! ticks, never early wake-ups.

use aarch64_cpu::registers::{CNTP_CTL_EL0, CNTP_CVAL_EL0, Readable, Writeable};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::percpu::MAX_CPUS;

/// Ticks per second.
pub const HZ: u64 = 100;

static TICK_INTID: AtomicU32 = AtomicU32::new(u32::MAX);
static PERIOD: AtomicU64 = AtomicU64::new(0);
/// Counter value of each CPU's next tick (each entry written only by its CPU).
static NEXT_TICK: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The sleeper deadline each CPU is armed for (`u64::MAX`: none; written only by its CPU).
static WAKE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];

/// The interrupt ID of the tick (the DTB's EL2 physical timer PPI).
pub fn tick_intid() -> u32 {
    TICK_INTID.load(Ordering::Relaxed)
}

/// Starts the periodic tick on this CPU with interrupt `intid` (the same on every CPU).
pub fn start_tick(cpu: usize, intid: u32) {
    TICK_INTID.store(intid, Ordering::Relaxed);
    let period = (super::cpu::counter_freq() / HZ).max(1);
    PERIOD.store(period, Ordering::Relaxed);
    let next = super::cpu::counter() + period;
    NEXT_TICK[cpu].store(next, Ordering::Relaxed);
    CNTP_CVAL_EL0.set(next);
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::SET + CNTP_CTL_EL0::IMASK::CLEAR);
    super::gic::enable_private(cpu, intid);
}

/// What a timer interrupt on a CPU was for.
#[derive(Clone, Copy, Debug)]
pub struct Fired {
    /// The periodic tick was due (the next one is now set).
    pub tick: bool,
    /// The sleeper deadline this CPU was armed for came (it is armed for none now).
    pub deadline: bool,
}

/// The timer fired on `cpu`: what for. The tick is set forward drift-free, skipping periods
/// already missed. The comparator is left as it is: the caller re-arms it with [`rearm`].
pub fn fired(cpu: usize) -> Fired {
    let now = super::cpu::counter();
    let next = NEXT_TICK[cpu].load(Ordering::Relaxed);
    let tick = now >= next;
    if tick {
        let period = PERIOD.load(Ordering::Relaxed);
        let mut after = next + period;
        if after <= now {
            after = now + period;
        }
        NEXT_TICK[cpu].store(after, Ordering::Relaxed);
    }
    let deadline = now >= WAKE[cpu].load(Ordering::Relaxed);
    if deadline {
        WAKE[cpu].store(u64::MAX, Ordering::Relaxed);
    }
    Fired { tick, deadline }
}

/// Arms `cpu`'s comparator for its next tick or its sleeper deadline, whichever is first;
/// `take` (the earliest deadline left, after a deadline fired here) becomes this CPU's too.
///
/// Which CPU wakes which sleeper: the one that added it arms for it ([`wake_by`]), and a CPU
/// whose deadline came takes on the earliest one left. So every sleeper always has a CPU armed
/// at or before its deadline, and usually exactly one CPU takes the interrupt (a sleeper woken
/// early leaves one spurious interrupt, which passes the earliest deadline on).
pub fn rearm(cpu: usize, take: Option<u64>) {
    if let Some(d) = take {
        WAKE[cpu].fetch_min(d, Ordering::Relaxed);
    }
    let next = NEXT_TICK[cpu].load(Ordering::Relaxed);
    CNTP_CVAL_EL0.set(next.min(WAKE[cpu].load(Ordering::Relaxed)));
}

/// Makes `cpu`'s (this CPU's) timer fire no later than `deadline` (a counter value).
pub fn wake_by(cpu: usize, deadline: u64) {
    WAKE[cpu].fetch_min(deadline, Ordering::Relaxed);
    if deadline < CNTP_CVAL_EL0.get() {
        CNTP_CVAL_EL0.set(deadline);
    }
}
