//! Decoding of the Exception Syndrome Register (ESR_ELx) into names a person can read.
//!
//! Pure functions over the register value; used by the unexpected-exception report and, later,
//! by trap dispatch. Knows the exception classes of Armv8/9-A (Arm ARM D24.2.40).

/// Exception class: ESR bits 31:26.
pub fn exception_class(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// Instruction-specific syndrome: ESR bits 24:0.
pub fn iss(esr: u64) -> u32 {
    (esr & 0x1ff_ffff) as u32
}

/// The Arm ARM name of an exception class.
pub fn class_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        0x01 => "trapped WFI/WFE",
        0x03 => "trapped MCR/MRC (cp15)",
        0x04 => "trapped MCRR/MRRC (cp15)",
        0x05 => "trapped MCR/MRC (cp14)",
        0x06 => "trapped LDC/STC",
        0x07 => "trapped SVE/SIMD/FP access",
        0x0a => "trapped LD64B/ST64B",
        0x0c => "trapped MRRC (cp14)",
        0x0d => "branch target exception",
        0x0e => "illegal execution state",
        0x11 => "SVC (AArch32)",
        0x12 => "HVC (AArch32)",
        0x13 => "SMC (AArch32)",
        0x15 => "SVC (AArch64)",
        0x16 => "HVC (AArch64)",
        0x17 => "SMC (AArch64)",
        0x18 => "trapped MSR/MRS/system instruction",
        0x19 => "trapped SVE access",
        0x1a => "trapped ERET",
        0x1c => "pointer authentication failure",
        0x20 => "instruction abort from a lower EL",
        0x21 => "instruction abort from the same EL",
        0x22 => "PC alignment fault",
        0x24 => "data abort from a lower EL",
        0x25 => "data abort from the same EL",
        0x26 => "SP alignment fault",
        0x28 => "trapped floating-point exception (AArch32)",
        0x2c => "trapped floating-point exception (AArch64)",
        0x2f => "SError interrupt",
        0x30 => "breakpoint from a lower EL",
        0x31 => "breakpoint from the same EL",
        0x32 => "software step from a lower EL",
        0x33 => "software step from the same EL",
        0x34 => "watchpoint from a lower EL",
        0x35 => "watchpoint from the same EL",
        0x38 => "BKPT (AArch32)",
        0x3c => "BRK (AArch64)",
        _ => "reserved exception class",
    }
}

/// For instruction and data aborts: the fault status code (ISS bits 5:0) as words.
pub fn fault_status_name(iss: u32) -> &'static str {
    match iss & 0x3f {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x08..=0x0b => "access flag fault",
        0x0c..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x21 => "alignment fault",
        0x30 => "TLB conflict abort",
        _ => "other fault",
    }
}

/// Whether an abort's ISS says the access was a write (WnR, bit 6). Meaningful for data aborts only.
pub fn is_write(iss: u32) -> bool {
    iss & (1 << 6) != 0
}

/// Whether the exception class is an instruction or data abort (either EL).
pub fn is_abort(ec: u8) -> bool {
    matches!(ec, 0x20 | 0x21 | 0x24 | 0x25)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_data_abort_from_same_el_with_translation_fault_on_write() {
        // EC=0x25, IL=1, WnR=1, DFSC=0b000101 (level 1 translation fault)
        let esr = (0x25u64 << 26) | (1 << 25) | (1 << 6) | 0x05;
        assert_eq!(exception_class(esr), 0x25);
        assert_eq!(class_name(exception_class(esr)), "data abort from the same EL");
        assert!(is_abort(exception_class(esr)));
        assert_eq!(fault_status_name(iss(esr)), "translation fault");
        assert!(is_write(iss(esr)));
    }

    #[test]
    fn names_svc_hvc_brk_and_unknown_classes() {
        assert_eq!(class_name(0x15), "SVC (AArch64)");
        assert_eq!(class_name(0x16), "HVC (AArch64)");
        assert_eq!(class_name(0x3c), "BRK (AArch64)");
        assert_eq!(class_name(0x00), "unknown reason");
        assert_eq!(class_name(0x3f), "reserved exception class");
        assert!(!is_abort(0x15));
    }

    #[test]
    fn permission_fault_read_is_not_a_write() {
        let esr = (0x24u64 << 26) | 0x0f;
        assert_eq!(fault_status_name(iss(esr)), "permission fault");
        assert!(!is_write(iss(esr)));
    }
}
