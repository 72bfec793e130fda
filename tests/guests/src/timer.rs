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
/// The EL1 physical timer's PPI.
pub const PTIMER_INTID: u32 = 30;

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
    if storm(Timer::Virtual) {
        return;
    }
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

/// In a storm (`PerCpu::timer_storm_left` > 0) the handler leaves `timer` asserting, so its
/// level-sensitive interrupt is taken again after the EOI; the last one switches it off. True
/// while the storm goes on.
fn storm(timer: Timer) -> bool {
    let cpu = percpu::this();
    let left = cpu.timer_storm_left.load(SeqCst);
    if left == 0 {
        return false;
    }
    cpu.timer_storm_left.store(left - 1, SeqCst);
    if left == 1 {
        timer.set_ctl(0);
    }
    true
}

/// The physical timer's interrupt: counted; outside a storm the timer is switched off.
pub fn handle_physical_interrupt() {
    bump(&percpu::this().ptimer_irqs);
    if !storm(Timer::Physical) {
        Timer::Physical.set_ctl(0);
    }
}

/// One of the two EL1 timers, through its own registers (Arm ARM D12.8, CNTV_* and CNTP_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    Virtual,
    Physical,
}

/// CNT*_CTL bits.
pub const ENABLE: u64 = 1 << 0;
pub const IMASK: u64 = 1 << 1;
pub const ISTATUS: u64 = 1 << 2;

impl Timer {
    pub const ALL: [Timer; 2] = [Timer::Virtual, Timer::Physical];

    pub fn name(self) -> &'static str {
        match self {
            Timer::Virtual => "virtual",
            Timer::Physical => "physical",
        }
    }

    pub fn intid(self) -> u32 {
        match self {
            Timer::Virtual => VTIMER_INTID,
            Timer::Physical => PTIMER_INTID,
        }
    }

    /// The counter this timer compares against (CNTVCT_EL0 or CNTPCT_EL0), read after an ISB.
    pub fn count(self) -> u64 {
        // SAFETY: a barrier, then a counter read without side effects.
        unsafe {
            core::arch::asm!("isb", options(nostack, preserves_flags));
            match self {
                Timer::Virtual => read_sysreg!("cntvct_el0"),
                Timer::Physical => read_sysreg!("cntpct_el0"),
            }
        }
    }

    pub fn ctl(self) -> u64 {
        // SAFETY: reading a timer's control register has no side effects.
        unsafe {
            match self {
                Timer::Virtual => read_sysreg!("cntv_ctl_el0"),
                Timer::Physical => read_sysreg!("cntp_ctl_el0"),
            }
        }
    }

    pub fn set_ctl(self, value: u64) {
        // SAFETY: the timers belong to this CPU and the scenario using them.
        unsafe {
            match self {
                Timer::Virtual => write_sysreg!("cntv_ctl_el0", value),
                Timer::Physical => write_sysreg!("cntp_ctl_el0", value),
            }
        }
        crate::arch::isb();
    }

    pub fn cval(self) -> u64 {
        // SAFETY: reading a timer's compare value has no side effects.
        unsafe {
            match self {
                Timer::Virtual => read_sysreg!("cntv_cval_el0"),
                Timer::Physical => read_sysreg!("cntp_cval_el0"),
            }
        }
    }

    pub fn set_cval(self, value: u64) {
        // SAFETY: as `set_ctl`.
        unsafe {
            match self {
                Timer::Virtual => write_sysreg!("cntv_cval_el0", value),
                Timer::Physical => write_sysreg!("cntp_cval_el0", value),
            }
        }
        crate::arch::isb();
    }

    /// TVAL as read: (CVAL - count)[31:0].
    pub fn tval(self) -> u64 {
        // SAFETY: reading a timer's TimerValue view has no side effects.
        unsafe {
            match self {
                Timer::Virtual => read_sysreg!("cntv_tval_el0"),
                Timer::Physical => read_sysreg!("cntp_tval_el0"),
            }
        }
    }

    /// Writes TVAL: CVAL becomes count + sign-extended `value[31:0]`.
    pub fn set_tval(self, value: u64) {
        // SAFETY: as `set_ctl`.
        unsafe {
            match self {
                Timer::Virtual => write_sysreg!("cntv_tval_el0", value),
                Timer::Physical => write_sysreg!("cntp_tval_el0", value),
            }
        }
        crate::arch::isb();
    }

    /// Interrupts of this timer the handler counted on this CPU.
    pub fn irqs(self) -> u64 {
        let cpu = percpu::this();
        match self {
            Timer::Virtual => cpu.timer_irqs.load(SeqCst),
            Timer::Physical => cpu.ptimer_irqs.load(SeqCst),
        }
    }
}
