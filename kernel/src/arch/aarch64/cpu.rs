//! This CPU: its number, affinity, counter, interrupt mask, and waiting.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, CurrentEL, DAIF, MPIDR_EL1, Readable, TPIDR_EL2, Writeable};
use core::sync::atomic::{AtomicBool, Ordering};

/// Set once the boot CPU knows it runs at EL2 with VHE (TPIDR_EL2 is then usable).
static AT_EL2: AtomicBool = AtomicBool::new(false);

/// Records that Keel runs at EL2, so per-CPU state lives in TPIDR_EL2.
pub fn mark_el2() {
    AT_EL2.store(true, Ordering::Relaxed);
}

/// The exception level this code runs at (1 only on the refusal path).
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// This CPU's index in Keel's CPU table (0 = the boot CPU).
#[inline]
pub fn cpu_id() -> usize {
    if AT_EL2.load(Ordering::Relaxed) { TPIDR_EL2.get() as usize } else { 0 }
}

/// Records this CPU's index (called once per CPU at bring-up).
pub fn set_cpu_id(id: usize) {
    TPIDR_EL2.set(id as u64);
}

/// This CPU's affinity (MPIDR_EL1 Aff3..Aff0, other bits cleared).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// The physical counter (CNTPCT_EL0), read after an ISB so it is not taken early.
#[inline]
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// Counter frequency in Hz.
pub fn counter_freq() -> u64 {
    CNTFRQ_EL0.get()
}

/// Masks IRQs and returns the previous DAIF for [`irq_restore`]. Only I changes: debug
/// exceptions, SError and FIQ keep their masks (writing DAIF whole would unmask D, and a step
/// or breakpoint left enabled could then fire at EL2).
#[inline]
pub fn irq_save() -> u64 {
    let daif = DAIF.get();
    // SAFETY: sets PSTATE.I only; no memory effect beyond ordering with the critical section.
    unsafe { core::arch::asm!("msr daifset, #2", options(nostack, preserves_flags)) };
    daif
}

/// Restores the interrupt mask saved by [`irq_save`].
#[inline]
pub fn irq_restore(daif: u64) {
    DAIF.set(daif);
}

/// Unmasks IRQs (and SError).
pub fn irq_enable() {
    DAIF.write(DAIF::D::Masked + DAIF::A::Unmasked + DAIF::I::Unmasked + DAIF::F::Masked);
}

/// Waits for an interrupt (returns when one is pending, even if masked).
#[inline]
pub fn wait_for_interrupt() {
    aarch64_cpu::asm::wfi();
}

/// Stops this CPU for good: interrupts masked, waiting forever.
pub fn halt() -> ! {
    irq_save();
    loop {
        aarch64_cpu::asm::wfe();
    }
}

/// Reads a u64 at a kernel virtual address, for tests that must fault on purpose.
pub fn read_kernel_address(va: u64) -> u64 {
    // SAFETY: used only by the `exception` scenario on an address that is unmapped: the load
    // faults, and the fault handler stops this CPU before any value is used.
    unsafe { core::ptr::read_volatile(va as *const u64) }
}
