//! PSCI and SMCCC calls through `hvc #0`, as typed functions. Results are signed (PSCI return
//! codes are negative).

use crate::arch::call::hvc;
use crate::smccc::*;

/// An SMCCC call that does not change any CPU's power state.
pub fn call(id: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    debug_assert!(
        !changes_power_state(id),
        "power-state calls have their own wrappers"
    );
    // SAFETY: the call changes no CPU's power state (checked by every caller's choice of ID).
    unsafe { hvc(id, a1, a2, a3) }
}

/// PSCI_VERSION.
pub fn version() -> u64 {
    call(PSCI_VERSION, 0, 0, 0)
}

/// PSCI_FEATURES(`function`).
pub fn features(function: u32) -> i64 {
    call(PSCI_FEATURES, u64::from(function), 0, 0) as i64
}

/// AFFINITY_INFO(`mpidr`, level 0).
pub fn affinity_info(mpidr: u64) -> i64 {
    call(PSCI_AFFINITY_INFO, mpidr, 0, 0) as i64
}

/// CPU_ON: starts `mpidr` at physical address `entry` with x0 = `context`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    // SAFETY: starting another CPU does not affect this one; the caller picks the entry point.
    unsafe { hvc(PSCI_CPU_ON, mpidr, entry, context) as i64 }
}

/// CPU_OFF: switches the calling CPU off; returns only the error if that failed.
pub fn cpu_off() -> i64 {
    // SAFETY: the caller is done with this CPU; a later CPU_ON restarts it at its entry point.
    unsafe { hvc(PSCI_CPU_OFF, 0, 0, 0) as i64 }
}

/// SYSTEM_OFF. If the hypervisor returns anyway, the CPU sleeps forever.
pub fn system_off() -> ! {
    // SAFETY: ending the whole guest is the point.
    unsafe {
        hvc(PSCI_SYSTEM_OFF, 0, 0, 0);
    }
    loop {
        crate::arch::wfi();
    }
}
