//! SVE for guests: the Z, P and FFR registers and ZCR_EL1 are a guest's own, at a vector length
//! Keel chooses (ZCR_EL2, at most [`GUEST_MAX_VQ`] quadwords), and never live while anything else
//! runs.
//!
//! SVE traps (CPTR_EL2.ZEN = 0, which with E2H = 1 has the CPACR layout) until a vCPU's first SVE
//! instruction or ZCR_EL1 access; that trap makes SVE live for the vCPU from then on, with its
//! Z registers holding its V registers zero-extended and every predicate and FFR clear. From
//! then on the vCPU's SVE state is restored with it (after its FP/SIMD state, which it
//! supersedes) and saved when it is put; after a save every Z, P and FFR register is zeroed and
//! SVE traps again, so nothing of it is left for a host thread or another VM. Host threads never
//! get SVE (their SVE instructions trap and are fatal to them).

use super::sysreg::cptr_el2;
use crate::hal::{FpState, GuestContext, SveRegs};
use aarch64_cpu::asm::barrier;
use core::sync::atomic::{AtomicU32, Ordering};

/// The longest vector a guest gets: 4 quadwords (512 bits), or less if the CPU has less.
pub const GUEST_MAX_VQ: u32 = 4;
/// CPTR_EL2 (E2H layout) ZEN, bits 17:16: 0b11 = SVE not trapped at EL2, EL1 or EL0.
const CPTR_ZEN: u64 = 0b11 << 16;

/// The guests' vector length in quadwords (0: the CPU has no SVE).
static GUEST_VQ: AtomicU32 = AtomicU32::new(0);

/// Finds the CPU's longest vector (SVE enabled at EL2 for a moment) and sets the guests' length.
pub fn init_cpu() {
    use aarch64_cpu::registers::{ID_AA64PFR0_EL1, Readable};
    if (ID_AA64PFR0_EL1.get() >> 32) & 0xf == 0 {
        return;
    }
    let saved = cptr_el2::read();
    cptr_el2::write(saved | CPTR_ZEN);
    zcr_write(15);
    barrier::isb(barrier::SY);
    let bytes: u64;
    // SAFETY: RDVL only reads the current vector length; SVE is enabled at EL2 just above.
    unsafe { core::arch::asm!(".arch_extension sve", "rdvl {}, #1", out(reg) bytes, options(nomem, nostack)) };
    cptr_el2::write(saved);
    barrier::isb(barrier::SY);
    let vq = ((bytes / 16) as u32).clamp(1, GUEST_MAX_VQ);
    GUEST_VQ.store(vq, Ordering::Relaxed);
}

/// The guests' vector length in quadwords; 0 without SVE.
pub fn guest_vq() -> u32 {
    GUEST_VQ.load(Ordering::Relaxed)
}

fn zcr_write(len: u64) {
    // SAFETY: ZCR_EL2 only limits the vector length of EL2 and below.
    unsafe { core::arch::asm!("msr S3_4_C1_C2_0, {}", in(reg) len, options(nostack)) };
}

fn zcr_el12_read() -> u64 {
    let v: u64;
    // SAFETY: reading the guest's ZCR_EL1 (through its E2H alias) has no side effects.
    unsafe { core::arch::asm!("mrs {}, S3_5_C1_C2_0", out(reg) v, options(nomem, nostack)) };
    v
}

fn zcr_el12_write(v: u64) {
    // SAFETY: the guest's own ZCR_EL1, while its vCPU is loaded.
    unsafe { core::arch::asm!("msr S3_5_C1_C2_0, {}", in(reg) v, options(nostack)) };
}

/// SVE on at EL2 and below, at the guests' vector length.
fn enable() {
    cptr_el2::write(cptr_el2::read() | CPTR_ZEN);
    zcr_write(u64::from(guest_vq().saturating_sub(1)));
    barrier::isb(barrier::SY);
}

/// SVE traps again (for the host, and for the next vCPU until it shows it uses SVE).
fn disable() {
    cptr_el2::write(cptr_el2::read() & !CPTR_ZEN);
    barrier::isb(barrier::SY);
}

/// Every Z, P and FFR register zero (SVE enabled).
fn zero_all() {
    // SAFETY: only SVE registers change; the caller enabled SVE and saved what it needs.
    unsafe {
        core::arch::asm!(
            ".arch_extension sve",
            "mov z0.d, #0", "mov z1.d, #0", "mov z2.d, #0", "mov z3.d, #0", "mov z4.d, #0", "mov z5.d, #0", "mov z6.d, #0", "mov z7.d, #0",
            "mov z8.d, #0", "mov z9.d, #0", "mov z10.d, #0", "mov z11.d, #0", "mov z12.d, #0", "mov z13.d, #0", "mov z14.d, #0", "mov z15.d, #0",
            "mov z16.d, #0", "mov z17.d, #0", "mov z18.d, #0", "mov z19.d, #0", "mov z20.d, #0", "mov z21.d, #0", "mov z22.d, #0", "mov z23.d, #0",
            "mov z24.d, #0", "mov z25.d, #0", "mov z26.d, #0", "mov z27.d, #0", "mov z28.d, #0", "mov z29.d, #0", "mov z30.d, #0", "mov z31.d, #0",
            "pfalse p0.b", "wrffr p0.b",
            "pfalse p1.b", "pfalse p2.b", "pfalse p3.b", "pfalse p4.b", "pfalse p5.b", "pfalse p6.b", "pfalse p7.b", "pfalse p8.b",
            "pfalse p9.b", "pfalse p10.b", "pfalse p11.b", "pfalse p12.b", "pfalse p13.b", "pfalse p14.b", "pfalse p15.b",
            options(nostack, nomem),
        )
    };
}

/// The trapped first SVE use of the loaded vCPU: SVE becomes live for it, its Z registers its V
/// registers zero-extended (`fp` is where its live FP/SIMD state is saved for the purpose),
/// predicates and FFR clear, ZCR_EL1 at the longest length. False if the CPU has no SVE or the
/// vCPU has SVE live already (the access is then UNDEFINED for the guest).
pub fn first_use(c: &mut GuestContext, fp: &mut FpState) -> bool {
    if guest_vq() == 0 || c.sve_used {
        return false;
    }
    super::fp::fp_save(fp);
    enable();
    zero_all();
    super::fp::fp_restore(fp);
    zcr_el12_write(u64::from(guest_vq() - 1));
    barrier::isb(barrier::SY);
    c.sve_used = true;
    true
}

/// Loads a vCPU that uses SVE (after its FP/SIMD state).
pub fn load(c: &GuestContext) {
    enable();
    restore_regs(&c.sve);
    zcr_el12_write(c.sve.zcr);
}

/// Saves a vCPU that uses SVE, zeroes every SVE register and makes SVE trap again.
pub fn put(c: &mut GuestContext) {
    c.sve.zcr = zcr_el12_read();
    save_regs(&mut c.sve);
    zero_all();
    disable();
}

fn save_regs(s: &mut SveRegs) {
    // SAFETY: stores Z0-Z31 (VL bytes each), P0-P15 and FFR (VL/8 bytes each) into `s`, sized
    // for GUEST_MAX_VQ; the vector length is the guests' (at most that), set by `enable`.
    unsafe {
        core::arch::asm!(
            ".arch_extension sve",
            "str z0, [{z}, #0, mul vl]", "str z1, [{z}, #1, mul vl]", "str z2, [{z}, #2, mul vl]", "str z3, [{z}, #3, mul vl]",
            "str z4, [{z}, #4, mul vl]", "str z5, [{z}, #5, mul vl]", "str z6, [{z}, #6, mul vl]", "str z7, [{z}, #7, mul vl]",
            "str z8, [{z}, #8, mul vl]", "str z9, [{z}, #9, mul vl]", "str z10, [{z}, #10, mul vl]", "str z11, [{z}, #11, mul vl]",
            "str z12, [{z}, #12, mul vl]", "str z13, [{z}, #13, mul vl]", "str z14, [{z}, #14, mul vl]", "str z15, [{z}, #15, mul vl]",
            "str z16, [{z}, #16, mul vl]", "str z17, [{z}, #17, mul vl]", "str z18, [{z}, #18, mul vl]", "str z19, [{z}, #19, mul vl]",
            "str z20, [{z}, #20, mul vl]", "str z21, [{z}, #21, mul vl]", "str z22, [{z}, #22, mul vl]", "str z23, [{z}, #23, mul vl]",
            "str z24, [{z}, #24, mul vl]", "str z25, [{z}, #25, mul vl]", "str z26, [{z}, #26, mul vl]", "str z27, [{z}, #27, mul vl]",
            "str z28, [{z}, #28, mul vl]", "str z29, [{z}, #29, mul vl]", "str z30, [{z}, #30, mul vl]", "str z31, [{z}, #31, mul vl]",
            "str p0, [{p}, #0, mul vl]", "str p1, [{p}, #1, mul vl]", "str p2, [{p}, #2, mul vl]", "str p3, [{p}, #3, mul vl]",
            "str p4, [{p}, #4, mul vl]", "str p5, [{p}, #5, mul vl]", "str p6, [{p}, #6, mul vl]", "str p7, [{p}, #7, mul vl]",
            "str p8, [{p}, #8, mul vl]", "str p9, [{p}, #9, mul vl]", "str p10, [{p}, #10, mul vl]", "str p11, [{p}, #11, mul vl]",
            "str p12, [{p}, #12, mul vl]", "str p13, [{p}, #13, mul vl]", "str p14, [{p}, #14, mul vl]", "str p15, [{p}, #15, mul vl]",
            "rdffr p0.b", "str p0, [{f}]",
            z = in(reg) s.z.as_mut_ptr(), p = in(reg) s.p.as_mut_ptr(), f = in(reg) s.ffr.as_mut_ptr(),
            options(nostack),
        )
    };
}

fn restore_regs(s: &SveRegs) {
    // SAFETY: loads what `save_regs` stored, at the same vector length.
    unsafe {
        core::arch::asm!(
            ".arch_extension sve",
            "ldr p0, [{f}]", "wrffr p0.b",
            "ldr p0, [{p}, #0, mul vl]", "ldr p1, [{p}, #1, mul vl]", "ldr p2, [{p}, #2, mul vl]", "ldr p3, [{p}, #3, mul vl]",
            "ldr p4, [{p}, #4, mul vl]", "ldr p5, [{p}, #5, mul vl]", "ldr p6, [{p}, #6, mul vl]", "ldr p7, [{p}, #7, mul vl]",
            "ldr p8, [{p}, #8, mul vl]", "ldr p9, [{p}, #9, mul vl]", "ldr p10, [{p}, #10, mul vl]", "ldr p11, [{p}, #11, mul vl]",
            "ldr p12, [{p}, #12, mul vl]", "ldr p13, [{p}, #13, mul vl]", "ldr p14, [{p}, #14, mul vl]", "ldr p15, [{p}, #15, mul vl]",
            "ldr z0, [{z}, #0, mul vl]", "ldr z1, [{z}, #1, mul vl]", "ldr z2, [{z}, #2, mul vl]", "ldr z3, [{z}, #3, mul vl]",
            "ldr z4, [{z}, #4, mul vl]", "ldr z5, [{z}, #5, mul vl]", "ldr z6, [{z}, #6, mul vl]", "ldr z7, [{z}, #7, mul vl]",
            "ldr z8, [{z}, #8, mul vl]", "ldr z9, [{z}, #9, mul vl]", "ldr z10, [{z}, #10, mul vl]", "ldr z11, [{z}, #11, mul vl]",
            "ldr z12, [{z}, #12, mul vl]", "ldr z13, [{z}, #13, mul vl]", "ldr z14, [{z}, #14, mul vl]", "ldr z15, [{z}, #15, mul vl]",
            "ldr z16, [{z}, #16, mul vl]", "ldr z17, [{z}, #17, mul vl]", "ldr z18, [{z}, #18, mul vl]", "ldr z19, [{z}, #19, mul vl]",
            "ldr z20, [{z}, #20, mul vl]", "ldr z21, [{z}, #21, mul vl]", "ldr z22, [{z}, #22, mul vl]", "ldr z23, [{z}, #23, mul vl]",
            "ldr z24, [{z}, #24, mul vl]", "ldr z25, [{z}, #25, mul vl]", "ldr z26, [{z}, #26, mul vl]", "ldr z27, [{z}, #27, mul vl]",
            "ldr z28, [{z}, #28, mul vl]", "ldr z29, [{z}, #29, mul vl]", "ldr z30, [{z}, #30, mul vl]", "ldr z31, [{z}, #31, mul vl]",
            z = in(reg) s.z.as_ptr(), p = in(reg) s.p.as_ptr(), f = in(reg) s.ffr.as_ptr(),
            options(nostack),
        )
    };
}
