//! The EL2 physical timer (CNTHP) as the kernel's periodic tick, and as its alarm for the
//! earliest sleeper: the timer fires at the next period or at an earlier deadline that
//! [`wake_at`] asked for (a guest's timer due while its vCPU waits in WFI, a thread's sleep),
//! so a deadline is met when it comes, not at the next 10 ms tick.
//!
//! Under VHE the CNTP_* register names reach CNTHP_*_EL2 at EL2, so this uses them. The guest's
//! EL1 timers (CNTV, CNTP through the *_EL02 names) are left alone for guests.

use aarch64_cpu::registers::{CNTP_CTL_EL0, CNTP_CVAL_EL0, Readable, Writeable};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Ticks per second.
pub const HZ: u64 = 100;

static TICK_INTID: AtomicU32 = AtomicU32::new(u32::MAX);
static PERIOD: AtomicU64 = AtomicU64::new(0);
/// Per CPU: when its next periodic tick is due (the timer may be set earlier for a deadline).
static NEXT_TICK: [AtomicU64; crate::percpu::MAX_CPUS] = [const { AtomicU64::new(0) }; crate::percpu::MAX_CPUS];

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

/// The timer fired on this CPU: re-arms it for the next period (drift-free; skips periods
/// already missed). True if a period ended; false if it fired early, for a [`wake_at`] deadline.
pub fn handle_tick() -> bool {
    let cpu = super::cpu::cpu_id();
    let period = PERIOD.load(Ordering::Relaxed);
    let now = super::cpu::counter();
    let due = NEXT_TICK[cpu].load(Ordering::Relaxed);
    if now < due {
        CNTP_CVAL_EL0.set(due);
        return false;
    }
    let mut next = due + period;
    if next <= now {
        next = now + period;
    }
    NEXT_TICK[cpu].store(next, Ordering::Relaxed);
    CNTP_CVAL_EL0.set(next);
    true
}

/// Makes this CPU's timer fire at `deadline` (counter ticks) if that is before its next tick.
pub fn wake_at(deadline: u64) {
    if deadline < CNTP_CVAL_EL0.get() {
        CNTP_CVAL_EL0.set(deadline);
    }
}
