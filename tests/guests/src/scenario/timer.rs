//! `guest=timer`: the virtual timer (PPI 27) through the GIC, ten 1 ms periods, each interrupt
//! re-arming CNTV_CVAL; the CPU sleeps in WFI in between. The tenth interrupt cannot come before
//! 10 ms of virtual-counter time.

use super::Outcome;
use crate::percpu;
use crate::runtime::Guest;
use crate::{gic, timer, wait};
use core::sync::atomic::Ordering::SeqCst;

const PERIODS: u64 = 10;
const PERIOD_MS: u64 = 1;
/// Give up after this long (the WFI loop also wakes for each of the ten interrupts).
const TIMEOUT_MS: u64 = 5000;

pub fn run(_guest: &Guest) -> Outcome {
    let freq = timer::frequency();
    ensure!(freq != 0, "CNTFRQ_EL0 is 0");
    gic::init_distributor()?;
    gic::init_this_cpu()?;
    gic::enable_private(timer::VTIMER_INTID);

    let cpu = percpu::this();
    let before = cpu.timer_irqs.load(SeqCst);
    let interval = timer::ms(PERIOD_MS);
    let start = timer::now();
    timer::periodic(start, interval, PERIODS);
    let done = wait::irq_until(
        || cpu.timer_irqs.load(SeqCst) - before >= PERIODS,
        timer::ms(TIMEOUT_MS),
        false,
    );
    let elapsed = timer::now() - start;
    timer::stop();
    let taken = cpu.timer_irqs.load(SeqCst) - before;
    say!(
        "timer: {taken} interrupts in {} us (CNTFRQ {freq} Hz, period {interval} ticks)",
        timer::to_us(elapsed)
    );
    ensure!(
        done,
        "only {taken} of {PERIODS} timer interrupts within {TIMEOUT_MS} ms"
    );
    ensure!(
        elapsed >= PERIODS * interval,
        "{PERIODS} interrupts after {elapsed} ticks, before {PERIODS} x {interval}: the timer fired early"
    );
    super::note(format_args!(
        "({PERIODS} interrupts in {} us)",
        timer::to_us(elapsed)
    ))
}
