//! Bounded waiting. [`until`] sleeps in WFE (woken by SEV from other CPUs and by the counter
//! event stream); [`irq_until`] sleeps in WFI with IRQs masked around the check, so an interrupt
//! that arrives between the check and the WFI still wakes it (WFI wakes on a pending interrupt
//! even while PSTATE.I masks it; unmasking then takes it).

use crate::{arch, timer};

/// Waits until `done()` or `timeout` ticks pass; whether `done()` became true.
pub fn until(mut done: impl FnMut() -> bool, timeout: u64) -> bool {
    let deadline = timer::now().saturating_add(timeout);
    loop {
        if done() {
            return true;
        }
        if timer::now() > deadline {
            return false;
        }
        arch::wfe();
    }
}

/// Waits with WFI until `done()` (which an interrupt handler makes true) or `timeout` ticks pass.
/// With `watchdog`, the virtual timer is armed for the deadline so a lost interrupt cannot make
/// WFI sleep forever; the caller must not be using the timer then. IRQs are unmasked on return.
pub fn irq_until(mut done: impl FnMut() -> bool, timeout: u64, watchdog: bool) -> bool {
    let deadline = timer::now().saturating_add(timeout);
    if watchdog {
        timer::one_shot(timeout);
    }
    arch::mask_irqs();
    let ok = loop {
        if done() {
            break true;
        }
        if timer::now() > deadline {
            break false;
        }
        arch::wfi();
        arch::unmask_irqs();
        arch::mask_irqs();
    };
    arch::unmask_irqs();
    if watchdog {
        timer::stop();
    }
    ok
}
