//! Everything that is an AArch64 instruction: boot and exception entry (assembly), system
//! registers, MMIO accessors, the SMCCC conduits, and the barrier and wait instructions. The rest
//! of the guest calls these wrappers; only scenario probes that exist to test one particular
//! instruction form (a sign-extending load, a load pair, a branch into a hole) carry their own
//! `asm!`.
//!
//! The guest runs at EL1 with the MMU off, so every data access is Device-nGnRnE: accesses must be
//! aligned (the target is built with `+strict-align`) and the guest never uses exclusives or
//! atomic read-modify-write instructions, whose behaviour on Device memory is IMPLEMENTATION
//! DEFINED. Shared state is only ever loaded and stored (`ldar`/`stlr`).

#[macro_use]
pub mod sysreg;
pub mod boot;
pub mod call;
pub mod mmio;
pub mod trap;

use crate::machine::MAX_CPUS;

/// This CPU's index (MPIDR_EL1.Aff0), which boot stored in TPIDR_EL1.
pub fn cpu_index() -> usize {
    // SAFETY: reading TPIDR_EL1 has no side effects.
    let index = unsafe { read_sysreg!("tpidr_el1") } as usize;
    // Boot parks every CPU whose Aff0 is MAX_CPUS or more before it reaches Rust.
    assert!(
        index < MAX_CPUS,
        "TPIDR_EL1 holds a CPU index below MAX_CPUS"
    );
    index
}

/// The exception level the CPU runs at (CurrentEL.EL).
pub fn current_el() -> u64 {
    // SAFETY: reading CurrentEL has no side effects.
    (unsafe { read_sysreg!("CurrentEL") } >> 2) & 3
}

/// MPIDR_EL1.
pub fn mpidr() -> u64 {
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { read_sysreg!("mpidr_el1") }
}

/// Waits for an interrupt (or returns spuriously).
pub fn wfi() {
    // SAFETY: WFI only suspends execution until a wake-up event.
    unsafe { core::arch::asm!("wfi", options(nostack, preserves_flags)) }
}

/// Waits for an event (or returns spuriously).
pub fn wfe() {
    // SAFETY: WFE only suspends execution until a wake-up event.
    unsafe { core::arch::asm!("wfe", options(nostack, preserves_flags)) }
}

/// Signals an event to every CPU, after all earlier memory accesses are visible.
pub fn sev() {
    // SAFETY: a barrier and an event signal have no other effects.
    unsafe { core::arch::asm!("dsb sy", "sev", options(nostack, preserves_flags)) }
}

/// Instruction synchronization barrier.
pub fn isb() {
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) }
}

/// Opens (`true`) or closes the profiling window of scripts/profile/keel-prof.c: `hint #0x7e` /
/// `hint #0x7f`, no-ops to the CPU.
#[inline(always)]
pub fn profile_mark(open: bool) {
    // SAFETY: unallocated hint instructions execute as NOPs.
    unsafe {
        if open {
            core::arch::asm!("hint #0x7e", options(nomem, nostack, preserves_flags));
        } else {
            core::arch::asm!("hint #0x7f", options(nomem, nostack, preserves_flags));
        }
    }
}

/// Masks IRQs (PSTATE.I = 1).
pub fn mask_irqs() {
    // SAFETY: masking IRQs only delays their delivery.
    unsafe { core::arch::asm!("msr daifset, #2", options(nostack, preserves_flags)) }
}

/// Unmasks IRQs (PSTATE.I = 0); a pending one is taken before this returns.
pub fn unmask_irqs() {
    // SAFETY: the vector table is installed before any CPU reaches Rust.
    unsafe { core::arch::asm!("msr daifclr, #2", "isb", options(nostack, preserves_flags)) }
}

/// Unmasks SError interrupts (PSTATE.A = 0) so an injected virtual SError is taken and counted.
pub fn unmask_serror() {
    // SAFETY: the vector table is installed before any CPU reaches Rust.
    unsafe { core::arch::asm!("msr daifclr, #4", "isb", options(nostack, preserves_flags)) }
}
