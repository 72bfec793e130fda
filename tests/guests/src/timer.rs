//! The EL1 virtual timer (CNTV_*, PPI 27) and the virtual counter.
//!
//! A CPU's timer runs in one of two modes, set from thread context while it is off: one-shot
//! (the interrupt handler switches it off) or periodic (the handler moves CNTV_CVAL on by the
//! interval until the re-arms run out, then switches it off). The handler counts interrupts in
//! `PerCpu::timer_irqs`. Also owns the counter event stream (CNTKCTL_EL1.EVNTEN), which wakes WFE
//! about every 100 µs so WFE-based waits can time out.

use crate::percpu::{self, bump};
use core::sync::atomic::Ordering::SeqCst;

/// The virtual timer's PPI.
pub const VTIMER_INTID: u32 = 27;

const CTL_ENABLE: u64 = 1 << 0;
/// Event stream: a WFE wake-up about every 100 µs.
const EVENT_STREAM_HZ: u64 = 10_000;

/// CNTFRQ_EL0: counter ticks per second.
pub fn frequency() -> u64 {
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { read_sysreg!("cntfrq_el0") }
}

/// CNTVCT_EL0, read after an ISB so it is not taken early.
pub fn now() -> u64 {
    // SAFETY: a barrier, then a counter read without side effects.
    unsafe {
        core::arch::asm!("isb", options(nostack, preserves_flags));
        read_sysreg!("cntvct_el0")
    }
}

/// Ticks in `ms` milliseconds.
pub fn ms(ms: u64) -> u64 {
    frequency() / 1000 * ms
}

/// Microseconds in `ticks`.
pub fn to_us(ticks: u64) -> u64 {
    let f = frequency().max(1);
    ticks.saturating_mul(1_000_000) / f
}

fn set_ctl(value: u64) {
    // SAFETY: CNTV_CTL_EL0 controls only this CPU's virtual timer, which this module owns.
    unsafe { write_sysreg!("cntv_ctl_el0", value) }
    crate::arch::isb();
}

fn set_cval(value: u64) {
    // SAFETY: CNTV_CVAL_EL0 belongs to this CPU's virtual timer, which this module owns.
    unsafe { write_sysreg!("cntv_cval_el0", value) }
}

fn cval() -> u64 {
    // SAFETY: reading CNTV_CVAL_EL0 has no side effects.
    unsafe { read_sysreg!("cntv_cval_el0") }
}

/// Switches this CPU's timer off.
pub fn stop() {
    set_ctl(0);
}

/// Fires once, `after` ticks from now.
pub fn one_shot(after: u64) {
    stop();
    let cpu = percpu::this();
    cpu.timer_interval.store(0, SeqCst);
    cpu.timer_rearms_left.store(0, SeqCst);
    set_cval(now().saturating_add(after));
    set_ctl(CTL_ENABLE);
}

/// Fires `count` times, every `interval` ticks, starting `interval` from `start`: the n-th
/// interrupt comes no earlier than `start + n * interval`.
pub fn periodic(start: u64, interval: u64, count: u64) {
    stop();
    let cpu = percpu::this();
    cpu.timer_interval.store(interval, SeqCst);
    cpu.timer_rearms_left.store(count.saturating_sub(1), SeqCst);
    set_cval(start.saturating_add(interval));
    set_ctl(CTL_ENABLE);
}

/// The interrupt: count it, then re-arm or switch off (the timer is level-triggered, so it must
/// not be left expired and enabled).
pub fn handle_interrupt() {
    let cpu = percpu::this();
    bump(&cpu.timer_irqs);
    let left = cpu.timer_rearms_left.load(SeqCst);
    let interval = cpu.timer_interval.load(SeqCst);
    if interval != 0 && left > 0 {
        cpu.timer_rearms_left.store(left - 1, SeqCst);
        set_cval(cval().saturating_add(interval));
    } else {
        stop();
    }
}

/// Turns the counter event stream on or off for this CPU.
pub fn event_stream(on: bool) {
    // The stream triggers when bit EVNTI of CNTVCT flips: every 2^(EVNTI+1) ticks.
    let period = (frequency() / EVENT_STREAM_HZ).max(2);
    let evnti = (63 - period.leading_zeros()).saturating_sub(1).min(15) as u64;
    let value = if on { (1 << 2) | (evnti << 4) } else { 0 };
    // SAFETY: CNTKCTL_EL1 here only sets the event stream (EL0 counter access stays disabled).
    unsafe { write_sysreg!("cntkctl_el1", value) }
    crate::arch::isb();
}
