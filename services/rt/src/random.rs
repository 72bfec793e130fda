//! Random numbers from the CPU: FEAT_RNG's RNDR register, when the CPU has it
//! (`sys::cpu_features().rndr()`; reading it on a CPU without it is an undefined instruction).

/// A 64-bit random number from RNDR, or None when the CPU could not give one in a reasonable
/// time (RNDR sets the Z flag instead; the architecture allows that and says to try again).
/// Only call it when `sys::cpu_features()` says RNDR exists.
pub fn rndr() -> Option<u64> {
    for _ in 0..16 {
        if let Some(v) = rndr_once() {
            return Some(v);
        }
    }
    None
}

#[cfg(target_arch = "aarch64")]
fn rndr_once() -> Option<u64> {
    let value: u64;
    let failed: u64;
    // SAFETY: reads a system register and the flags; no memory is touched. The caller has
    // checked that the CPU implements RNDR (s3_3_c2_c4_0).
    unsafe {
        core::arch::asm!(
            "mrs {v}, s3_3_c2_c4_0",
            "cset {f}, eq",
            v = out(reg) value,
            f = out(reg) failed,
            options(nomem, nostack),
        );
    }
    (failed == 0).then_some(value)
}

#[cfg(not(target_arch = "aarch64"))]
fn rndr_once() -> Option<u64> {
    None
}
