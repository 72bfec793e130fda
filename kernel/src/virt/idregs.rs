//! The CPU ID registers a guest reads (trapped with HCR_EL2.TID3): the host's values with every
//! feature Keel does not context-switch or virtualize hidden, so a guest never starts using
//! state another VM or the host would clobber (SME, MTE, AMU, MPAM, RAS, SPE, trace...).
//! The PMU (PMUv3, as the host has it) and SVE are the guest's own: switched with the vCPU.

/// The value a guest reads from ID register (op0 = 3, op1, CRn = 0, CRm, op2), given the host's.
pub fn sanitize(op1: u8, crm: u8, op2: u8, host: u64) -> u64 {
    if op1 != 0 {
        return 0;
    }
    match (crm, op2) {
        // ID_AA64PFR0_EL1: keep EL0/EL1 (AArch64 support), FP, AdvSIMD, GIC, SVE, CSV2, CSV3,
        // DIT; EL2 and EL3 read as not implemented; RAS, SEL2, MPAM, AMU, RME hidden.
        (4, 0) => host & 0xFF0F_000F_0FFF_00FF,
        // ID_AA64PFR1_EL1: keep BT and SSBS only (no MTE, SME, RAS_frac, MPAM_frac, NMI, GCS).
        (4, 1) => host & 0xFF,
        // ID_AA64ZFR0_EL1: the SVE features, as the host (SVE is switched per vCPU);
        // ID_AA64SMFR0_EL1 (SME) hidden.
        (4, 4) => host,
        (4, 5) => 0,
        // ID_AA64DFR0_EL1: DebugVer, PMUVer, BRPs, WRPs, CTX_CMPs; no trace, SPE, TraceFilt;
        // DoubleLock absent.
        (5, 0) => (host & 0xF0F0_FF0F) | (0xF << 36),
        (5, 1) => 0,
        // ID_AA64AFR0/1.
        (5, 4) | (5, 5) => 0,
        // ID_AA64ISAR0_EL1, ID_AA64ISAR1_EL1 (without LS64).
        (6, 0) => host,
        (6, 1) => host & !(0xF << 60),
        // ID_AA64ISAR2_EL1 without MOPS (needs HCRX_EL2 set-up).
        (6, 2) => host & !(0xF << 16),
        // ID_AA64MMFR0_EL1 with PARange no larger than the 48-bit IPA space Keel gives guests.
        (7, 0) => {
            let pa_range = (host & 0xF).min(0b0101);
            (host & !0xF) | pa_range
        }
        (7, 1) | (7, 2) | (7, 3) => host,
        // AArch32 ID registers (CRm 1..3) and the rest: as the host (RES0 on AArch64-only CPUs).
        (1..=3, _) => host,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_sve_sme_mte_spe() {
        let pfr0 = 0x1100_0011_1111_2222u64 | (1 << 32); // SVE = 1
        assert_eq!(sanitize(0, 4, 0, pfr0) >> 32 & 0xF, 1, "SVE is switched per vCPU");
        assert_eq!(sanitize(0, 4, 0, pfr0) & 0xF, 0x2); // EL0 AArch64 kept
        assert_eq!(sanitize(0, 4, 1, 0x0100_0211), 0x11);
        assert_eq!(sanitize(0, 4, 5, u64::MAX), 0, "no SME");
        assert_eq!(sanitize(0, 5, 0, 0x1_0000_0506) >> 8 & 0xF, 5, "PMUVer kept: the PMU is switched");
        assert_eq!(sanitize(0, 5, 0, 0x1_0000_0506) >> 32 & 0xF, 0, "no SPE");
        assert_eq!(sanitize(0, 5, 0, 0x6) & 0xF, 6);
    }

    #[test]
    fn pa_range_capped_at_48_bits() {
        assert_eq!(sanitize(0, 7, 0, 0x1126) & 0xF, 5);
        assert_eq!(sanitize(0, 7, 0, 0x1122) & 0xF, 2);
    }
}
