//! `guest=wfi`: a single WFI with only the virtual timer armed (5 ms) must sleep until the timer
//! interrupt — a hypervisor that traps WFI must block the vCPU and wake it for the timer. Then
//! `sevl; wfe; wfe` with the timer armed and the event stream off: the first WFE consumes the
//! local event, the second must be woken (at the latest) by the timer interrupt, not hang.

use super::Outcome;
use crate::percpu;
use crate::runtime::Guest;
use crate::{arch, gic, timer};
use core::sync::atomic::Ordering::SeqCst;

const SLEEP_MS: u64 = 5;
/// How long after WFI returns the timer's interrupt may take to be taken.
const LATE_MS: u64 = 50;

pub fn run(_guest: &Guest) -> Outcome {
    gic::init_distributor()?;
    gic::init_this_cpu()?;
    gic::enable_private(timer::VTIMER_INTID);
    let cpu = percpu::this();

    // One WFI, with IRQs masked so that a timer that fires before the WFI (a loaded host can
    // take longer than 5 ms to get there) still ends it: a pending interrupt wakes WFI whether
    // PSTATE.I masks it or not (D1.6.2). Unmasking then takes it.
    arch::mask_irqs();
    let irqs = cpu.timer_irqs.load(SeqCst);
    let start = timer::now();
    timer::one_shot(timer::ms(SLEEP_MS));
    arch::wfi();
    let elapsed = timer::now() - start;
    // The timer's condition holds once WFI has returned; its interrupt reaches the CPU interface
    // within a finite time, not necessarily by the next instruction (under a hypervisor it is
    // injected after the vCPU resumes), so wait for it, bounded (IRQs unmasked on return).
    let arrived = crate::wait::irq_until(|| cpu.timer_irqs.load(SeqCst) != irqs, timer::ms(LATE_MS), false);
    let taken = cpu.timer_irqs.load(SeqCst) - irqs;
    say!(
        "wfi: WFI returned after {} us, {taken} timer interrupt(s) taken after it",
        timer::to_us(elapsed)
    );
    ensure!(
        arrived && taken == 1,
        "WFI returned after {} us and {taken} timer interrupts came within {LATE_MS} ms (armed for {SLEEP_MS} ms)",
        timer::to_us(elapsed)
    );
    ensure!(
        elapsed >= timer::ms(SLEEP_MS),
        "the timer interrupt came after {elapsed} ticks, before {SLEEP_MS} ms"
    );
    let wfi_us = timer::to_us(elapsed);

    // sevl; wfe; wfe — with no event stream, only the timer interrupt can end the second WFE
    // (or an implementation that treats WFE as a hint).
    timer::event_stream(false);
    let irqs = cpu.timer_irqs.load(SeqCst);
    let start = timer::now();
    timer::one_shot(timer::ms(SLEEP_MS));
    // SAFETY: event-register hints only.
    unsafe { core::arch::asm!("sevl", "wfe", "wfe", options(nostack, preserves_flags)) };
    let elapsed = timer::now() - start;
    // Let the timer fire if WFE returned early, so it is not left armed (WFI with IRQs masked,
    // as above, so one that fires before the WFI still wakes it).
    arch::mask_irqs();
    while cpu.timer_irqs.load(SeqCst) == irqs && timer::now() - start < timer::ms(100 * SLEEP_MS) {
        arch::wfi();
        arch::unmask_irqs();
        arch::mask_irqs();
    }
    arch::unmask_irqs();
    timer::stop();
    timer::event_stream(true);
    say!(
        "wfi: sevl; wfe; wfe returned after {} us ({})",
        timer::to_us(elapsed),
        if elapsed >= timer::ms(SLEEP_MS) {
            "woken by the timer"
        } else {
            "WFE returned early, allowed"
        }
    );
    super::note(format_args!("(WFI slept {wfi_us} us)"))
}
