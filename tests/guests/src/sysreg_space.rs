//! The system-register encodings the `hostile` scenario reads and writes at random. `build.rs`
//! includes this file too and turns each list into a table of two-instruction stubs
//! (`mrs x0, <enc>; ret` or `msr <enc>, x0; ret`), so the guest never needs self-modifying code.
//!
//! Reads cover the whole MRS space of op0 = 2 (debug/trace) and op0 = 3. Writes are restricted to
//! registers the guest itself does not depend on: IMPLEMENTATION DEFINED space (op0 = 3, CRn = 11
//! or 15), the debug and trace space (op0 = 2, op1 = 0, 1, 3, 4), the PMU's counter and
//! control registers, the EL1 physical timer (the guest only uses the virtual one) and ZCR_EL1
//! (the guest uses no SVE). The guest runs with PSTATE.D set, so no random debug setting can raise a
//! debug exception at EL1. Plain data: no hardware access, usable on the host and in build.rs.
// The guest itself only needs the counts; the encodings are for build.rs and the host tests.
#![cfg_attr(not(test), allow(dead_code))]

/// One system-register encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// 2 or 3.
    pub op0: u32,
    /// 0..=7.
    pub op1: u32,
    /// 0..=15.
    pub crn: u32,
    /// 0..=15.
    pub crm: u32,
    /// 0..=7.
    pub op2: u32,
}

impl Encoding {
    fn fields(&self) -> u32 {
        (self.op0 << 19) | (self.op1 << 16) | (self.crn << 12) | (self.crm << 8) | (self.op2 << 5)
    }

    /// `mrs x0, S<op0>_<op1>_C<crn>_C<crm>_<op2>`.
    pub fn mrs_x0(&self) -> u32 {
        0xd520_0000 | self.fields()
    }

    /// `msr S<op0>_<op1>_C<crn>_C<crm>_<op2>, x0`.
    pub fn msr_x0(&self) -> u32 {
        0xd500_0000 | self.fields()
    }
}

/// `ret`.
pub const RET: u32 = 0xd65f_03c0;

/// Bytes per stub (an access and a `ret`).
pub const STUB_SIZE: usize = 8;

/// Number of read stubs: every op0 ∈ {2, 3} encoding.
pub const READ_COUNT: usize = 2 * 8 * 16 * 16 * 8;

/// The `index`th read encoding.
pub fn read_encoding(index: usize) -> Option<Encoding> {
    if index >= READ_COUNT {
        return None;
    }
    let i = index as u32;
    Some(Encoding {
        op0: 2 + (i >> 14),
        op1: (i >> 11) & 7,
        crn: (i >> 7) & 15,
        crm: (i >> 3) & 15,
        op2: i & 7,
    })
}

/// A block of write encodings: op0, the op1 values, the CRn values, CRm range, op2 range.
struct WriteBlock {
    op0: u32,
    op1: &'static [u32],
    crn: &'static [u32],
    crm: (u32, u32),
    op2: (u32, u32),
}

impl WriteBlock {
    const fn len(&self) -> usize {
        self.op1.len()
            * self.crn.len()
            * (self.crm.1 - self.crm.0 + 1) as usize
            * (self.op2.1 - self.op2.0 + 1) as usize
    }

    fn get(&self, index: usize) -> Encoding {
        let op2s = (self.op2.1 - self.op2.0 + 1) as usize;
        let crms = (self.crm.1 - self.crm.0 + 1) as usize;
        let op2 = self.op2.0 + (index % op2s) as u32;
        let rest = index / op2s;
        let crm = self.crm.0 + (rest % crms) as u32;
        let rest = rest / crms;
        let crn = self.crn[rest % self.crn.len()];
        let op1 = self.op1[rest / self.crn.len()];
        Encoding {
            op0: self.op0,
            op1,
            crn,
            crm,
            op2,
        }
    }
}

const ALL_OP1: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7];
const ALL_CRN: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

const WRITE_BLOCKS: &[WriteBlock] = &[
    // Debug (op1 0: breakpoints, watchpoints, MDSCR, OS lock; 3: DCC; 4: DBGVCR32_EL2) and
    // trace (op1 1).
    WriteBlock {
        op0: 2,
        op1: &[0, 1, 3, 4],
        crn: ALL_CRN,
        crm: (0, 15),
        op2: (0, 7),
    },
    // IMPLEMENTATION DEFINED space.
    WriteBlock {
        op0: 3,
        op1: ALL_OP1,
        crn: &[11, 15],
        crm: (0, 15),
        op2: (0, 7),
    },
    // PMU control: PMCR_EL0 .. PMOVSSET_EL0 (op1 3, CRn 9, CRm 12..14).
    WriteBlock {
        op0: 3,
        op1: &[3],
        crn: &[9],
        crm: (12, 14),
        op2: (0, 7),
    },
    // PMINTENSET_EL1, PMINTENCLR_EL1.
    WriteBlock {
        op0: 3,
        op1: &[0],
        crn: &[9],
        crm: (14, 14),
        op2: (1, 2),
    },
    // PMEVCNTR<n>_EL0, PMEVTYPER<n>_EL0, PMCCFILTR_EL0.
    WriteBlock {
        op0: 3,
        op1: &[3],
        crn: &[14],
        crm: (8, 15),
        op2: (0, 7),
    },
    // CNTP_TVAL_EL0, CNTP_CTL_EL0, CNTP_CVAL_EL0: the EL1 physical timer.
    WriteBlock {
        op0: 3,
        op1: &[3],
        crn: &[14],
        crm: (2, 2),
        op2: (0, 2),
    },
    // ZCR_EL1: the SVE vector length (its first access makes SVE live for the vCPU).
    WriteBlock {
        op0: 3,
        op1: &[0],
        crn: &[1],
        crm: (2, 2),
        op2: (0, 0),
    },
];

/// Number of write stubs.
pub const WRITE_COUNT: usize = {
    let mut total = 0;
    let mut i = 0;
    while i < WRITE_BLOCKS.len() {
        total += WRITE_BLOCKS[i].len();
        i += 1;
    }
    total
};

/// The `index`th write encoding.
pub fn write_encoding(mut index: usize) -> Option<Encoding> {
    for block in WRITE_BLOCKS {
        if index < block.len() {
            return Some(block.get(index));
        }
        index -= block.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instruction_words() {
        // mrs x0, midr_el1 / msr tpidr_el0, x0 / mrs x0, mdscr_el1 (checked against an assembler).
        let midr = Encoding {
            op0: 3,
            op1: 0,
            crn: 0,
            crm: 0,
            op2: 0,
        };
        assert_eq!(midr.mrs_x0(), 0xd538_0000);
        let tpidr_el0 = Encoding {
            op0: 3,
            op1: 3,
            crn: 13,
            crm: 0,
            op2: 2,
        };
        assert_eq!(tpidr_el0.msr_x0(), 0xd51b_d040);
        let mdscr = Encoding {
            op0: 2,
            op1: 0,
            crn: 0,
            crm: 2,
            op2: 2,
        };
        assert_eq!(mdscr.mrs_x0(), 0xd530_0240);
    }

    #[test]
    fn read_space_is_every_encoding_once() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..READ_COUNT {
            let e = read_encoding(i).expect("in range");
            assert!(e.op0 == 2 || e.op0 == 3);
            assert!(seen.insert(e.mrs_x0()));
        }
        assert_eq!(seen.len(), READ_COUNT);
        assert_eq!(read_encoding(READ_COUNT), None);
    }

    #[test]
    fn writes_never_touch_registers_the_guest_runs_on() {
        let protected = [
            (3, 0, 1, 0, 0),   // SCTLR_EL1
            (3, 0, 1, 0, 2),   // CPACR_EL1
            (3, 0, 12, 0, 0),  // VBAR_EL1
            (3, 0, 2, 0, 0),   // TTBR0_EL1
            (3, 0, 4, 0, 0),   // SPSR_EL1
            (3, 0, 4, 0, 1),   // ELR_EL1
            (3, 0, 4, 1, 0),   // SP_EL0
            (3, 3, 4, 2, 1),   // DAIF
            (3, 0, 13, 0, 4),  // TPIDR_EL1 (the CPU index)
            (3, 0, 14, 1, 0),  // CNTKCTL_EL1
            (3, 3, 14, 3, 1),  // CNTV_CTL_EL0
            (3, 3, 14, 3, 2),  // CNTV_CVAL_EL0
            (3, 0, 12, 12, 7), // ICC_IGRPEN1_EL1
            (3, 0, 4, 6, 0),   // ICC_PMR_EL1
            (3, 0, 9, 10, 0),  // PMBLIMITR_EL1 (SPE would write memory)
            (3, 0, 9, 11, 0),  // TRBLIMITR_EL1 (TRBE would write memory)
        ];
        let mut seen = std::collections::HashSet::new();
        for i in 0..WRITE_COUNT {
            let e = write_encoding(i).expect("in range");
            let t = (e.op0, e.op1, e.crn, e.crm, e.op2);
            assert!(!protected.contains(&t), "write table holds {t:?}");
            assert!(
                e.op0 == 2
                    || e.crn == 11
                    || e.crn == 15
                    || e.crn == 9
                    || (e.crn == 14 && e.crm >= 8)
                    || (e.op1 == 3 && e.crn == 14 && e.crm == 2)
                    || (e.op1 == 0 && e.crn == 1 && e.crm == 2 && e.op2 == 0),
                "{t:?} is outside the allowed write space"
            );
            assert!(seen.insert(e.msr_x0()), "{t:?} twice");
        }
        assert_eq!(write_encoding(WRITE_COUNT), None);
    }
}
