//! The SMCCC conduits: `hvc #0` (how this guest reaches PSCI and the VM monitor) and `smc #0`
//! (only the `hostile` scenario uses it). Function ID in w0, arguments in x1..x3, result in x0;
//! x4..x17 may be clobbered (SMCCC 1.0 allows it).

/// Makes an SMCCC call through `hvc #0`.
///
/// # Safety
/// The call may do anything the hypervisor implements for `id`: switch this CPU or the system
/// off, or start another CPU at `args[1]`. The caller must be ready for that.
pub unsafe fn hvc(id: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut x0 = u64::from(id);
    // SAFETY: the caller accepts the call's effects; the asm clobbers only what SMCCC allows.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") x0,
            inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    x0
}

/// Makes an SMCCC call through `smc #0`.
///
/// # Safety
/// As for [`hvc`].
pub unsafe fn smc(id: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut x0 = u64::from(id);
    // SAFETY: the caller accepts the call's effects; the asm clobbers only what SMCCC allows.
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") x0,
            inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    x0
}
