//! System registers that `aarch64-cpu` does not provide, each wrapped once.
//!
//! The GICv3 CPU interface registers (ICC_*_EL1) are not redirected by VHE: at EL2 they reach the
//! physical CPU interface.

macro_rules! sysreg {
    ($(#[$doc:meta])* $name:ident, $asm:literal, rw) => {
        $(#[$doc])*
        pub mod $name {
            /// Reads the register.
            #[inline(always)]
            pub fn read() -> u64 {
                let v: u64;
                // SAFETY: reading this CPU-interface register has no side effect on memory.
                unsafe { core::arch::asm!(concat!("mrs {}, ", $asm), out(reg) v, options(nomem, nostack)) };
                v
            }
            /// Writes the register.
            #[inline(always)]
            pub fn write(v: u64) {
                // SAFETY: the callers in gic.rs own the CPU interface; the write touches no memory.
                unsafe { core::arch::asm!(concat!("msr ", $asm, ", {}"), in(reg) v, options(nostack)) };
            }
        }
    };
}

sysreg!(/// Interrupt priority mask.
    icc_pmr_el1, "icc_pmr_el1", rw);
sysreg!(/// Group 1 interrupt acknowledge (read) — reading acknowledges the highest pending interrupt.
    icc_iar1_el1, "icc_iar1_el1", rw);
sysreg!(/// Group 1 end of interrupt (write).
    icc_eoir1_el1, "icc_eoir1_el1", rw);
sysreg!(/// Group 1 SGI generation (write).
    icc_sgi1r_el1, "icc_sgi1r_el1", rw);
sysreg!(/// Group 1 interrupt enable.
    icc_igrpen1_el1, "icc_igrpen1_el1", rw);
sysreg!(/// Group 1 binary point.
    icc_bpr1_el1, "icc_bpr1_el1", rw);
sysreg!(/// CPU interface control.
    icc_ctlr_el1, "icc_ctlr_el1", rw);
sysreg!(/// System register enable at EL2 (SRE, Enable for lower ELs).
    icc_sre_el2, "icc_sre_el2", rw);
sysreg!(/// System register enable at EL1 (used by the EL1 refusal path only).
    icc_sre_el1, "icc_sre_el1", rw);
