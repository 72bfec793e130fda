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

// ---- Virtualization (EL2) and a guest's EL1 state through the VHE *_EL12 aliases. Generic
// encodings, so the assembler needs no feature flags. Only `arch::aarch64::virt` uses them.
sysreg!(/// Hypervisor configuration.
    hcr_el2, "hcr_el2", rw);
sysreg!(/// Stage-2 translation table base and VMID.
    vttbr_el2, "S3_4_C2_C1_0", rw);
sysreg!(/// Stage-2 translation control.
    vtcr_el2, "S3_4_C2_C1_2", rw);
sysreg!(/// The MPIDR a guest reads.
    vmpidr_el2, "S3_4_C0_C0_5", rw);
sysreg!(/// The MIDR a guest reads.
    vpidr_el2, "S3_4_C0_C0_0", rw);
sysreg!(/// Virtual counter offset.
    cntvoff_el2, "S3_4_C14_C0_3", rw);
sysreg!(/// Faulting IPA of a stage-2 abort (bits 51:12 in 43:4).
    hpfar_el2, "S3_4_C6_C0_4", rw);
sysreg!(/// Exception syndrome at EL2.
    esr_el2, "S3_4_C5_C2_0", rw);
sysreg!(/// Fault address at EL2.
    far_el2, "S3_4_C6_C0_0", rw);
sysreg!(/// GIC virtual CPU interface control.
    ich_hcr_el2, "S3_4_C12_C11_0", rw);
sysreg!(/// GIC virtualization type (number of list registers in bits 4:0, minus one).
    ich_vtr_el2, "S3_4_C12_C11_1", rw);
sysreg!(/// The guest's view of the GIC CPU interface (priority mask, group enables...).
    ich_vmcr_el2, "S3_4_C12_C11_7", rw);
sysreg!(/// Group 0 active priorities.
    ich_ap0r0_el2, "S3_4_C12_C8_0", rw);
sysreg!(/// Group 1 active priorities.
    ich_ap1r0_el2, "S3_4_C12_C9_0", rw);
sysreg!(sctlr_el12, "S3_5_C1_C0_0", rw);
sysreg!(cpacr_el12, "S3_5_C1_C0_2", rw);
sysreg!(ttbr0_el12, "S3_5_C2_C0_0", rw);
sysreg!(ttbr1_el12, "S3_5_C2_C0_1", rw);
sysreg!(tcr_el12, "S3_5_C2_C0_2", rw);
sysreg!(spsr_el12, "S3_5_C4_C0_0", rw);
sysreg!(elr_el12, "S3_5_C4_C0_1", rw);
sysreg!(afsr0_el12, "S3_5_C5_C1_0", rw);
sysreg!(afsr1_el12, "S3_5_C5_C1_1", rw);
sysreg!(esr_el12, "S3_5_C5_C2_0", rw);
sysreg!(far_el12, "S3_5_C6_C0_0", rw);
sysreg!(mair_el12, "S3_5_C10_C2_0", rw);
sysreg!(amair_el12, "S3_5_C10_C3_0", rw);
sysreg!(vbar_el12, "S3_5_C12_C0_0", rw);
sysreg!(contextidr_el12, "S3_5_C13_C0_1", rw);
sysreg!(cntkctl_el12, "S3_5_C14_C1_0", rw);
sysreg!(cntv_ctl_el02, "S3_5_C14_C3_1", rw);
sysreg!(cntv_cval_el02, "S3_5_C14_C3_2", rw);
sysreg!(cntp_ctl_el02, "S3_5_C14_C2_1", rw);
sysreg!(cntp_cval_el02, "S3_5_C14_C2_2", rw);
sysreg!(/// Not redirected by VHE: the guest's own.
    sp_el1, "S3_4_C4_C1_0", rw);
sysreg!(tpidr_el1, "S3_0_C13_C0_4", rw);
sysreg!(tpidr_el0, "S3_3_C13_C0_2", rw);
sysreg!(tpidrro_el0, "S3_3_C13_C0_3", rw);
sysreg!(par_el1, "S3_0_C7_C4_0", rw);
sysreg!(csselr_el1, "S3_2_C0_C0_0", rw);
sysreg!(mdscr_el1, "S2_0_C0_C2_2", rw);
sysreg!(/// OS Lock Access (write 1 locks, 0 unlocks).
    oslar_el1, "S2_0_C1_C0_4", rw);
sysreg!(/// OS Lock Status (OSLK is bit 1).
    oslsr_el1, "S2_0_C1_C1_4", rw);
sysreg!(/// Debug and PMU traps and ownership for EL1 and EL0.
    mdcr_el2, "mdcr_el2", rw);
sysreg!(/// PMU control (N, the event counter count, in bits 15:11).
    pmcr_el0, "pmcr_el0", rw);
sysreg!(/// CPTR_EL2 (with E2H = 1 in the CPACR_EL1 layout: ZEN 17:16, FPEN 21:20).
    cptr_el2, "cptr_el2", rw);
sysreg!(pmcntenset_el0, "S3_3_C9_C12_1", rw);
sysreg!(pmcntenclr_el0, "S3_3_C9_C12_2", rw);
sysreg!(pmovsclr_el0, "S3_3_C9_C12_3", rw);
sysreg!(pmselr_el0, "S3_3_C9_C12_5", rw);
sysreg!(pmccntr_el0, "S3_3_C9_C13_0", rw);
sysreg!(pmuserenr_el0, "S3_3_C9_C14_0", rw);
sysreg!(pmintenset_el1, "S3_0_C9_C14_1", rw);
sysreg!(pmintenclr_el1, "S3_0_C9_C14_2", rw);
sysreg!(pmovsset_el0, "S3_3_C9_C14_3", rw);
sysreg!(pmccfiltr_el0, "S3_3_C14_C15_7", rw);
sysreg!(id_aa64dfr0_el1, "id_aa64dfr0_el1", rw);
sysreg!(apiakeylo_el1, "S3_0_C2_C1_0", rw);
sysreg!(apiakeyhi_el1, "S3_0_C2_C1_1", rw);
sysreg!(apibkeylo_el1, "S3_0_C2_C1_2", rw);
sysreg!(apibkeyhi_el1, "S3_0_C2_C1_3", rw);
sysreg!(apdakeylo_el1, "S3_0_C2_C2_0", rw);
sysreg!(apdakeyhi_el1, "S3_0_C2_C2_1", rw);
sysreg!(apdbkeylo_el1, "S3_0_C2_C2_2", rw);
sysreg!(apdbkeyhi_el1, "S3_0_C2_C2_3", rw);
sysreg!(apgakeylo_el1, "S3_0_C2_C3_0", rw);
sysreg!(apgakeyhi_el1, "S3_0_C2_C3_1", rw);
