//! `guest=timers`: the EL1 virtual and physical timers behave as the Arm ARM says (DDI 0487,
//! D12 "The Generic Timer in AArch64 state"), each checked the same way:
//!
//! - TimerValue reads (CVAL - count)[31:0] as a signed down-count (D12.2.4, "TimerValue view");
//! - a TimerValue write sets CVAL to count + the sign-extended value, negative values included
//!   (D12.2.4);
//! - ISTATUS shows the condition (count >= CVAL) whether or not IMASK masks the interrupt,
//!   including CVAL = 0 (always met) and CVAL = 2^64 - 1 (never met) (D12.2.4, CNT*_CTL.ISTATUS);
//! - the interrupt is pending at the GIC exactly while the timer is enabled, unmasked and its
//!   condition holds: it goes away when the timer is masked, disabled or given a later CVAL
//!   (D12.2.4: "the timer asserts its interrupt ... only when ... ENABLE is 1, IMASK is 0 and
//!   ISTATUS is 1"; the timer interrupts are level-sensitive PPIs, D12.9);
//! - a timer switched off while its interrupt was pending but disabled at the GIC is not
//!   delivered when the GIC enables it again (the line is low by then);
//! - a handler that leaves the timer asserting takes the interrupt again after each EOI (level);
//! - in WFI, an expiring timer wakes the CPU, not before its CVAL;
//! - the virtual and physical counters differ by a fixed offset (CNTVOFF) across exits, and
//!   neither goes backwards (D12.1.2, D12.2.2).

use super::Outcome;
use crate::timer::{ENABLE, IMASK, ISTATUS, Timer};
use crate::runtime::Guest;
use crate::{arch, gic, percpu, psci, timer};
use core::sync::atomic::Ordering::SeqCst;

/// How long a pending state may take to follow the timer (the GIC's propagation; under a
/// hypervisor, an exit). Generous: the host may be loaded.
const SETTLE_MS: u64 = 100;
/// A WFI wake-up may be this late (the host's scheduling, under load).
const WFI_LATE_MS: u64 = 200;
/// Interrupts taken back to back in the level check.
const STORM: u64 = 3;

pub fn run(_guest: &Guest) -> Outcome {
    ensure!(timer::frequency() != 0, "CNTFRQ_EL0 is 0");
    gic::init_distributor()?;
    gic::init_this_cpu()?;
    let cpu = percpu::this();
    cpu.timer_interval.store(0, SeqCst);
    cpu.timer_rearms_left.store(0, SeqCst);
    let mut checks = 0u32;
    let mut failed = 0u32;
    let mut record = |name: crate::text::Text, result: Result<(), crate::text::Text>| {
        let name = name.as_str();
        checks += 1;
        match result {
            Ok(()) => say!("timers: {name}: ok"),
            Err(why) => {
                failed += 1;
                say!("timers: {name}: FAILED: {why}");
            }
        }
    };
    for t in Timer::ALL {
        let n = t.name();
        record(name(n, "TVAL reads CVAL - count"), tval_reads(t));
        record(name(n, "TVAL writes set CVAL"), tval_writes(t));
        record(name(n, "ISTATUS shows the condition, masked or not"), istatus(t));
        record(name(n, "pending exactly while enabled, unmasked and met"), pending_follows(t));
        record(name(n, "switched off while pending: never delivered"), no_stale_interrupt(t));
        record(name(n, "still asserting after EOI: taken again"), level_reasserts(t));
        record(name(n, "wakes WFI at CVAL"), wakes_wfi(t));
        t.set_ctl(0);
        gic::disable_private(t.intid());
    }
    record(crate::text::Text::format(format_args!("counters: fixed offset, never backwards")), counters());
    ensure!(failed == 0, "{failed} of {checks} timer checks failed");
    super::note(format_args!("({checks} checks)"))
}

fn name(timer: &str, check: &str) -> crate::text::Text {
    crate::text::Text::format(format_args!("{timer}: {check}"))
}

type Check = Result<(), crate::text::Text>;

macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(crate::text::Text::format(format_args!($($arg)*)));
        }
    };
}

/// D12.2.4: TVAL reads (CVAL - count)[31:0], read as signed.
fn tval_reads(t: Timer) -> Check {
    // 1 s: far enough that a loaded host's delay between the writes and the read cannot use
    // it up, near enough for TVAL's 31 bits at 1 GHz.
    let ahead = timer::ms(1000);
    t.set_ctl(ENABLE | IMASK);
    let before = t.count();
    t.set_cval(before + ahead);
    let tval = t.tval() as u32 as i32 as i64;
    let after = t.count();
    check!(tval > 0 && tval <= ahead as i64, "CVAL = count + {ahead}: TVAL reads {tval}");
    check!(tval >= ahead as i64 - (after - before) as i64, "TVAL {tval} is more than the time between the reads below {ahead}");
    // Past CVAL: TVAL goes negative.
    t.set_cval(before - ahead);
    let tval = t.tval() as u32 as i32 as i64;
    check!(tval <= -(ahead as i64), "CVAL = count - {ahead}: TVAL reads {tval}, not at most -{ahead}");
    t.set_ctl(0);
    Ok(())
}

/// D12.2.4: writing TVAL sets CVAL = count + SignExtend(TVAL[31:0]).
fn tval_writes(t: Timer) -> Check {
    let ahead = timer::ms(1);
    t.set_ctl(ENABLE | IMASK);
    for value in [ahead as i64, -1000i64] {
        let before = t.count();
        t.set_tval(value as u64 & 0xffff_ffff);
        let after = t.count();
        let cval = t.cval();
        let lo = before.wrapping_add(value as u64);
        let hi = after.wrapping_add(value as u64);
        check!(cval.wrapping_sub(lo) <= hi.wrapping_sub(lo), "TVAL = {value}: CVAL {cval:#x} outside count + {value} ({lo:#x}..={hi:#x})");
        if value < 0 {
            check!(t.ctl() & ISTATUS != 0, "TVAL = {value}: the condition is met but ISTATUS is 0");
        }
    }
    t.set_ctl(0);
    Ok(())
}

/// CNT*_CTL.ISTATUS: the condition, whether IMASK is set or not.
fn istatus(t: Timer) -> Check {
    for ctl in [ENABLE | IMASK, ENABLE] {
        let masked = ctl & IMASK != 0;
        // Interrupts stay masked at the CPU: with IMASK clear the interrupt is asserted.
        arch::mask_irqs();
        t.set_ctl(ctl);
        for (cval, met) in [(0u64, true), (u64::MAX, false), (t.count() - 1, true), (t.count() + timer::ms(1000), false)] {
            t.set_cval(cval);
            let status = t.ctl() & ISTATUS != 0;
            if status != met {
                t.set_ctl(0);
                arch::unmask_irqs();
                return Err(crate::text::Text::format(format_args!(
                    "IMASK {masked}, CVAL {cval:#x}: ISTATUS {status}, want {met}"
                )));
            }
        }
        t.set_ctl(0);
        arch::unmask_irqs();
    }
    Ok(())
}

/// Polls GICR_ISPENDR0 until the timer's interrupt is `pending`; whether it got there.
fn settles(t: Timer, pending: bool) -> bool {
    let deadline = timer::now() + timer::ms(SETTLE_MS);
    loop {
        if gic::private_pending(t.intid()) == pending {
            return true;
        }
        if timer::now() > deadline {
            return false;
        }
    }
}

/// The interrupt is pending only while ENABLE = 1, IMASK = 0 and ISTATUS = 1 (level).
fn pending_follows(t: Timer) -> Check {
    arch::mask_irqs();
    gic::enable_private(t.intid());
    let result = (|| {
        t.set_cval(t.count() - 1);
        t.set_ctl(ENABLE);
        check!(settles(t, true), "enabled, unmasked and expired: not pending within {SETTLE_MS} ms");
        t.set_ctl(ENABLE | IMASK);
        check!(settles(t, false), "masked (IMASK = 1): still pending after {SETTLE_MS} ms");
        t.set_ctl(ENABLE);
        check!(settles(t, true), "unmasked again: not pending within {SETTLE_MS} ms");
        t.set_cval(t.count() + timer::ms(10_000));
        check!(settles(t, false), "CVAL moved 10 s ahead: still pending after {SETTLE_MS} ms");
        t.set_cval(t.count() - 1);
        check!(settles(t, true), "CVAL moved back into the past: not pending within {SETTLE_MS} ms");
        t.set_ctl(0);
        check!(settles(t, false), "disabled (ENABLE = 0): still pending after {SETTLE_MS} ms");
        Ok(())
    })();
    t.set_ctl(0);
    gic::disable_private(t.intid());
    arch::unmask_irqs();
    result
}

/// A timer that fired while its interrupt was disabled at the GIC, then was switched off, is
/// not delivered when the GIC enables it again.
fn no_stale_interrupt(t: Timer) -> Check {
    gic::disable_private(t.intid());
    arch::unmask_irqs();
    let before = t.irqs();
    t.set_cval(t.count() - 1);
    t.set_ctl(ENABLE);
    let result = (|| {
        check!(settles(t, true), "expired with the GIC's enable clear: not pending within {SETTLE_MS} ms");
        t.set_ctl(0);
        gic::enable_private(t.intid());
        // The interrupt would be taken at once; wait a while for one that comes late.
        let deadline = timer::now() + timer::ms(5);
        while timer::now() < deadline {
            arch::wfe();
        }
        let taken = t.irqs() - before;
        check!(taken == 0, "switched off before the GIC enabled it: {taken} interrupt(s) delivered anyway");
        Ok(())
    })();
    t.set_ctl(0);
    gic::disable_private(t.intid());
    result
}

/// A handler that EOIs without quieting the timer takes the interrupt again (level-sensitive).
fn level_reasserts(t: Timer) -> Check {
    let cpu = percpu::this();
    arch::mask_irqs();
    gic::enable_private(t.intid());
    let before = t.irqs();
    cpu.timer_storm_left.store(STORM, SeqCst);
    t.set_cval(t.count() - 1);
    t.set_ctl(ENABLE);
    let deadline = timer::now() + timer::ms(SETTLE_MS * 10);
    loop {
        if t.irqs() - before >= STORM || timer::now() > deadline {
            break;
        }
        arch::wfi();
        arch::unmask_irqs();
        arch::mask_irqs();
    }
    let taken = t.irqs() - before;
    cpu.timer_storm_left.store(0, SeqCst);
    t.set_ctl(0);
    gic::disable_private(t.intid());
    arch::unmask_irqs();
    check!(taken >= STORM, "the handler left the timer asserting and EOI'd: {taken} interrupt(s), want {STORM}");
    Ok(())
}

/// WFI with the timer armed 2 ms ahead: woken by its interrupt, not before CVAL.
fn wakes_wfi(t: Timer) -> Check {
    arch::mask_irqs();
    gic::enable_private(t.intid());
    let before = t.irqs();
    let start = t.count();
    let cval = start + timer::ms(2);
    t.set_cval(cval);
    t.set_ctl(ENABLE);
    let deadline = timer::now() + timer::ms(WFI_LATE_MS + 2);
    let mut woke_at = 0;
    loop {
        if t.irqs() != before {
            break;
        }
        if timer::now() > deadline {
            break;
        }
        arch::wfi();
        // The interrupt, if it woke the CPU, is taken here.
        arch::unmask_irqs();
        woke_at = t.count();
        arch::mask_irqs();
    }
    let taken = t.irqs() - before;
    t.set_ctl(0);
    gic::disable_private(t.intid());
    arch::unmask_irqs();
    check!(taken == 1, "armed 2 ms ahead: {taken} interrupts within {WFI_LATE_MS} ms of CVAL");
    check!(woke_at >= cval, "the interrupt came {} ticks before CVAL", cval - woke_at);
    say!("timers: {}: woke {} us after CVAL", t.name(), timer::to_us(woke_at - cval));
    Ok(())
}

/// CNTPCT - CNTVCT is one fixed offset: each sample (virtual, physical, virtual) bounds it,
/// and every sample's bounds must overlap. Samples straddle exits (a PSCI call each).
fn counters() -> Check {
    // The offset as a signed difference (0 on plain QEMU, where p - v2 may be just below it).
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    let (mut last_v, mut last_p) = (0u64, 0u64);
    for i in 0..200 {
        let v1 = Timer::Virtual.count();
        let p = Timer::Physical.count();
        let v2 = Timer::Virtual.count();
        check!(v1 >= last_v && v2 >= v1 && p >= last_p, "sample {i}: a counter went backwards");
        // v1 <= p - offset <= v2, so p - v2 <= offset <= p - v1.
        lo = lo.max(p.wrapping_sub(v2) as i64);
        hi = hi.min(p.wrapping_sub(v1) as i64);
        check!(lo <= hi, "sample {i}: CNTPCT - CNTVCT moved (no single offset fits every sample)");
        last_v = v2;
        last_p = p;
        let _ = psci::version();
    }
    say!("timers: CNTPCT - CNTVCT is between {lo} and {hi} ticks in every sample");
    Ok(())
}
