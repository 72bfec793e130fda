//! FP/SIMD registers of threads and vCPUs, saved and restored whole.

use crate::hal::FpState;

pub fn fp_save(fp: &mut FpState) {
    // SAFETY: stores the 32 SIMD registers and FPCR/FPSR into `fp` (528 bytes, 16-byte aligned
    // by its type). The kernel is built soft-float, so these registers hold user state only.
    unsafe {
        core::arch::asm!(
            ".arch_extension fp", ".arch_extension simd",
            "stp q0, q1, [{p}, #0]", "stp q2, q3, [{p}, #32]", "stp q4, q5, [{p}, #64]", "stp q6, q7, [{p}, #96]",
            "stp q8, q9, [{p}, #128]", "stp q10, q11, [{p}, #160]", "stp q12, q13, [{p}, #192]", "stp q14, q15, [{p}, #224]",
            "stp q16, q17, [{p}, #256]", "stp q18, q19, [{p}, #288]", "stp q20, q21, [{p}, #320]", "stp q22, q23, [{p}, #352]",
            "stp q24, q25, [{p}, #384]", "stp q26, q27, [{p}, #416]", "stp q28, q29, [{p}, #448]", "stp q30, q31, [{p}, #480]",
            "mrs {t}, fpcr", "str {t}, [{p}, #512]", "mrs {t}, fpsr", "str {t}, [{p}, #520]",
            p = in(reg) fp as *mut FpState, t = out(reg) _, options(nostack),
        )
    };
}

pub fn fp_restore(fp: &FpState) {
    // SAFETY: loads the registers `fp_save` stored; only user code reads them.
    unsafe {
        core::arch::asm!(
            ".arch_extension fp", ".arch_extension simd",
            "ldp q0, q1, [{p}, #0]", "ldp q2, q3, [{p}, #32]", "ldp q4, q5, [{p}, #64]", "ldp q6, q7, [{p}, #96]",
            "ldp q8, q9, [{p}, #128]", "ldp q10, q11, [{p}, #160]", "ldp q12, q13, [{p}, #192]", "ldp q14, q15, [{p}, #224]",
            "ldp q16, q17, [{p}, #256]", "ldp q18, q19, [{p}, #288]", "ldp q20, q21, [{p}, #320]", "ldp q22, q23, [{p}, #352]",
            "ldp q24, q25, [{p}, #384]", "ldp q26, q27, [{p}, #416]", "ldp q28, q29, [{p}, #448]", "ldp q30, q31, [{p}, #480]",
            "ldr {t}, [{p}, #512]", "msr fpcr, {t}", "ldr {t}, [{p}, #520]", "msr fpsr, {t}",
            p = in(reg) fp as *const FpState, t = out(reg) _, options(nostack),
        )
    };
}
