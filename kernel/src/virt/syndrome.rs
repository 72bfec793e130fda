//! Guest exits, decoded from the syndrome the CPU reports at EL2 (ESR_EL2, FAR_EL2, HPFAR_EL2).
//!
//! Pure: the arch layer reads the three registers and calls [`decode`]; the kernel acts on the
//! [`GuestExit`]. A data abort whose syndrome is not valid (ISV = 0: load/store pairs, writeback,
//! SIMD) carries no access description; the kernel resolves it only when it is a RAM fault and
//! injects an abort otherwise, never guessing the access.

/// A guest load or store the CPU described (ISV = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    pub write: bool,
    /// The transfer register (31 = XZR).
    pub reg: u8,
    /// The load sign-extends (SSE).
    pub sign_extend: bool,
    /// The register is 64-bit (SF); a 32-bit destination is zero-extended past bit 31.
    pub sixty_four: bool,
}

/// Why the guest stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExit {
    Hvc,
    /// SMC (trapped with HCR_EL2.TSC); ELR points at the SMC itself.
    Smc,
    Wfi,
    Wfe,
    /// MSR/MRS to a trapped system register.
    Sysreg { op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, reg: u8, read: bool },
    /// A stage-2 data abort at `ipa`.
    DataAbort { ipa: u64, access: Option<MmioAccess>, write: bool, s1ptw: bool, fsc: u8 },
    /// A stage-2 instruction abort at `ipa`.
    InstructionAbort { ipa: u64, s1ptw: bool, fsc: u8 },
    /// An SVE instruction or ZCR_EL1 access trapped by CPTR_EL2.ZEN (EC 0x19).
    Sve,
    /// Anything else (the kernel injects UNDEFINED).
    Other { ec: u8 },
}

impl GuestExit {
    /// The fault is a translation fault (nothing mapped at stage 2 yet).
    pub fn is_translation(fsc: u8) -> bool {
        (0x04..=0x07).contains(&fsc)
    }

    /// The fault is a permission fault.
    pub fn is_permission(fsc: u8) -> bool {
        (0x0c..=0x0f).contains(&fsc)
    }
}

/// The faulting IPA from HPFAR_EL2 (FIPA, IPA bits 51:12, in bits 43:4) and FAR_EL2's page offset.
pub fn fault_ipa(hpfar: u64, far: u64) -> u64 {
    ((hpfar >> 4) & 0xff_ffff_ffff) << 12 | (far & 0xfff)
}

/// Decodes a synchronous exit.
pub fn decode(esr: u64, far: u64, hpfar: u64) -> GuestExit {
    let ec = ((esr >> 26) & 0x3f) as u8;
    let iss = esr & 0x1ff_ffff;
    match ec {
        0x01 => {
            if iss & 1 == 0 {
                GuestExit::Wfi
            } else {
                GuestExit::Wfe
            }
        }
        0x16 => GuestExit::Hvc,
        0x19 => GuestExit::Sve,
        0x17 => GuestExit::Smc,
        0x18 => GuestExit::Sysreg {
            op0: ((iss >> 20) & 3) as u8,
            op2: ((iss >> 17) & 7) as u8,
            op1: ((iss >> 14) & 7) as u8,
            crn: ((iss >> 10) & 0xf) as u8,
            reg: ((iss >> 5) & 0x1f) as u8,
            crm: ((iss >> 1) & 0xf) as u8,
            read: iss & 1 != 0,
        },
        0x24 => {
            let isv = iss & (1 << 24) != 0;
            let write = iss & (1 << 6) != 0;
            let access = isv.then(|| MmioAccess {
                size: 1 << ((iss >> 22) & 3),
                write,
                reg: ((iss >> 16) & 0x1f) as u8,
                sign_extend: iss & (1 << 21) != 0,
                sixty_four: iss & (1 << 15) != 0,
            });
            GuestExit::DataAbort { ipa: fault_ipa(hpfar, far), access, write, s1ptw: iss & (1 << 7) != 0, fsc: (iss & 0x3f) as u8 }
        }
        0x20 => GuestExit::InstructionAbort { ipa: fault_ipa(hpfar, far), s1ptw: iss & (1 << 7) != 0, fsc: (iss & 0x3f) as u8 },
        _ => GuestExit::Other { ec },
    }
}

/// The value a load of `size` bytes puts in its register: sign- or zero-extended, and cut to 32
/// bits for a W register.
pub fn load_value(raw: u64, a: MmioAccess) -> u64 {
    let bits = u32::from(a.size) * 8;
    let mut v = if bits >= 64 { raw } else { raw & ((1u64 << bits) - 1) };
    if a.sign_extend && bits < 64 && v & (1 << (bits - 1)) != 0 {
        v |= !0u64 << bits;
    }
    if !a.sixty_four {
        v &= 0xffff_ffff;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_abort_with_valid_syndrome() {
        // ldr w3, [x0] at IPA 0x0900_0018: EC 0x24, IL, ISV, SAS=2, SRT=3, DFSC translation L3.
        let esr = (0x24u64 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (3 << 16) | 0x07;
        let e = decode(esr, 0x0900_0018, (0x0900_0000 >> 12) << 4);
        assert_eq!(
            e,
            GuestExit::DataAbort {
                ipa: 0x0900_0018,
                access: Some(MmioAccess { size: 4, write: false, reg: 3, sign_extend: false, sixty_four: false }),
                write: false,
                s1ptw: false,
                fsc: 7
            }
        );
    }

    #[test]
    fn data_abort_without_syndrome_has_no_access() {
        let esr = (0x24u64 << 26) | (1 << 6) | 0x06;
        match decode(esr, 0x10, 0x1234 << 4) {
            GuestExit::DataAbort { ipa, access: None, write: true, .. } => assert_eq!(ipa, 0x1234_010),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn sysreg_fields() {
        // msr icc_sgi1r_el1, x5: op0 3, op1 0, CRn 12, CRm 11, op2 5, write.
        let iss = (3 << 20) | (5 << 17) | (0 << 14) | (12 << 10) | (5 << 5) | (11 << 1);
        assert_eq!(
            decode((0x18 << 26) | iss, 0, 0),
            GuestExit::Sysreg { op0: 3, op1: 0, crn: 12, crm: 11, op2: 5, reg: 5, read: false }
        );
    }

    #[test]
    fn wfi_wfe_hvc_smc_other() {
        assert_eq!(decode(0x01 << 26, 0, 0), GuestExit::Wfi);
        assert_eq!(decode((0x01 << 26) | 1, 0, 0), GuestExit::Wfe);
        assert_eq!(decode(0x16 << 26, 0, 0), GuestExit::Hvc);
        assert_eq!(decode(0x17 << 26, 0, 0), GuestExit::Smc);
        assert_eq!(decode(0x07 << 26, 0, 0), GuestExit::Other { ec: 7 });
    }

    #[test]
    fn load_extension() {
        let a = MmioAccess { size: 1, write: false, reg: 0, sign_extend: true, sixty_four: true };
        assert_eq!(load_value(0xf0, a), 0xffff_ffff_ffff_fff0);
        assert_eq!(load_value(0xf0, MmioAccess { sixty_four: false, ..a }), 0xffff_fff0);
        assert_eq!(load_value(0x1f0, MmioAccess { sign_extend: false, ..a }), 0xf0);
        assert_eq!(load_value(u64::MAX, MmioAccess { size: 8, ..a }), u64::MAX);
    }
}
