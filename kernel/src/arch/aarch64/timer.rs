//! The EL2 physical timer (CNTHP) as the kernel's periodic tick.
//!
//! Under VHE the CNTP_* register names reach CNTHP_*_EL2 at EL2, so this uses them. The guest's
//! EL1 timers (CNTV, CNTP through the *_EL02 names) are left alone for guests.

use aarch64_cpu::registers::{CNTP_CTL_EL0, CNTP_CVAL_EL0, Readable, Writeable};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Ticks per second.
pub const HZ: u64 = 100;

static TICK_INTID: AtomicU32 = AtomicU32::new(u32::MAX);
static PERIOD: AtomicU64 = AtomicU64::new(0);

/// The interrupt ID of the tick (the DTB's EL2 physical timer PPI).
pub fn tick_intid() -> u32 {
    TICK_INTID.load(Ordering::Relaxed)
}

/// Starts the periodic tick on this CPU with interrupt `intid` (the same on every CPU).
pub fn start_tick(cpu: usize, intid: u32) {
    TICK_INTID.store(intid, Ordering::Relaxed);
    let period = (super::cpu::counter_freq() / HZ).max(1);
    PERIOD.store(period, Ordering::Relaxed);
    CNTP_CVAL_EL0.set(super::cpu::counter() + period);
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::SET + CNTP_CTL_EL0::IMASK::CLEAR);
    super::gic::enable_private(cpu, intid);
}

/// Re-arms the timer for the next period (drift-free; skips periods already missed).
pub fn handle_tick() {
    let period = PERIOD.load(Ordering::Relaxed);
    let now = super::cpu::counter();
    let mut next = CNTP_CVAL_EL0.get() + period;
    if next <= now {
        next = now + period;
    }
    CNTP_CVAL_EL0.set(next);
}
