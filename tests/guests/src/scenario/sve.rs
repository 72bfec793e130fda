//! `guest=sve`: the Scalable Vector Extension is the guest's own (Arm ARM DDI 0487: B1.2.2 "SVE
//! registers", and the ZCR_EL1 register description):
//!
//! - if ID_AA64PFR0_EL1.SVE says there is none, an SVE instruction is UNDEFINED;
//! - the vector length follows ZCR_EL1.LEN: never longer than asked for, a multiple of 128 bits,
//!   at most 2048 bits, never shorter when more is asked for (ZCR_EL1, "Constraining the vector
//!   length");
//! - the Z, P and FFR registers the guest has not written yet read as zero (nothing another
//!   context left in them);
//! - a write to a V register through an Advanced SIMD instruction sets the rest of its Z register
//!   to zero ("Effect of SVE on SIMD&FP registers");
//! - a pattern written to every Z, P and FFR register survives 100 exits each by `hvc`, by MMIO
//!   to the VM monitor (a full switch to the host and back) and by WFI with a timer, and
//!   ZCR_EL1 keeps its value.

use super::Outcome;
use crate::arch::{mmio, trap};
use crate::machine::UART_BASE;
use crate::runtime::Guest;
use crate::{psci, timer, wait};

/// Most bytes in one Z register (2048 bits).
const MAX_VL: usize = 256;
const ROUNDS: u32 = 100;

/// Z0-Z31, P0-P15 and FFR as stored with `str ... mul vl`, for any vector length.
struct SveImage {
    z: [u8; 32 * MAX_VL],
    p: [u8; 16 * MAX_VL / 8],
    ffr: [u8; MAX_VL / 8],
}

static mut SAVED: SveImage = SveImage { z: [0; 32 * MAX_VL], p: [0; 16 * MAX_VL / 8], ffr: [0; MAX_VL / 8] };
static ZERO: SveImage = SveImage { z: [0; 32 * MAX_VL], p: [0; 16 * MAX_VL / 8], ffr: [0; MAX_VL / 8] };
static mut PATTERN: SveImage = SveImage { z: [0; 32 * MAX_VL], p: [0; 16 * MAX_VL / 8], ffr: [0; MAX_VL / 8] };

fn enable_sve() {
    // SAFETY: CPACR_EL1.FPEN and ZEN = 0b11: FP/SIMD and SVE not trapped at EL1 and EL0.
    unsafe {
        let cpacr = read_sysreg!("cpacr_el1");
        write_sysreg!("cpacr_el1", cpacr | (3 << 20) | (3 << 16));
    }
    crate::arch::isb();
}

fn set_len(len: u64) {
    // SAFETY: ZCR_EL1.LEN asks for a vector length of (LEN + 1) x 128 bits.
    unsafe { core::arch::asm!(".arch_extension sve", "msr zcr_el1, {}", "isb", in(reg) len, options(nostack)) }
}

fn zcr() -> u64 {
    // SAFETY: reading ZCR_EL1 has no side effects.
    unsafe {
        let v: u64;
        core::arch::asm!(".arch_extension sve", "mrs {}, zcr_el1", out(reg) v, options(nostack, nomem));
        v
    }
}

/// The current vector length in bytes.
fn vl() -> usize {
    let bytes: u64;
    // SAFETY: RDVL only reads the vector length.
    unsafe { core::arch::asm!(".arch_extension sve", "rdvl {}, #1", out(reg) bytes, options(nomem, nostack)) };
    bytes as usize
}

fn store(img: *mut SveImage) {
    // SAFETY: `img` holds 32 Z registers, 16 P registers and FFR at up to 2048 bits; p0 is
    // stored before FFR passes through it, and reloaded after.
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
            "rdffr p0.b", "str p0, [{f}]", "ldr p0, [{p}, #0, mul vl]",
            z = in(reg) core::ptr::addr_of_mut!((*img).z), p = in(reg) core::ptr::addr_of_mut!((*img).p),
            f = in(reg) core::ptr::addr_of_mut!((*img).ffr),
            options(nostack),
        )
    };
}

fn load(img: *const SveImage) {
    // SAFETY: loads what `store` layout holds, FFR first (through p0).
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
            z = in(reg) core::ptr::addr_of!((*img).z), p = in(reg) core::ptr::addr_of!((*img).p),
            f = in(reg) core::ptr::addr_of!((*img).ffr),
            options(nostack),
        )
    };
}

/// The first `vl`-sized part of each register of `a` and `b` differ: where, if anywhere.
fn first_difference(a: &SveImage, b: &SveImage, vl: usize) -> Option<(&'static str, usize)> {
    for r in 0..32 {
        if a.z[r * vl..(r + 1) * vl] != b.z[r * vl..(r + 1) * vl] {
            return Some(("z", r));
        }
    }
    let pl = vl / 8;
    for r in 0..16 {
        if a.p[r * pl..(r + 1) * pl] != b.p[r * pl..(r + 1) * pl] {
            return Some(("p", r));
        }
    }
    (a.ffr[..pl] != b.ffr[..pl]).then_some(("ffr", 0))
}

pub fn run(_guest: &Guest) -> Outcome {
    // SAFETY: reading an ID register has no side effects.
    let pfr0 = unsafe { read_sysreg!("id_aa64pfr0_el1") };
    let sve = (pfr0 >> 32) & 0xf;
    say!("sve: ID_AA64PFR0_EL1 = {pfr0:#x}: SVE {sve}");
    if sve == 0 {
        enable_sve();
        let (_, caught) = trap::catching(vl);
        ensure!(caught.is_some_and(|c| c.esr >> 26 == trap::EC_UNKNOWN), "no SVE advertised, but RDVL did not take an UNDEFINED exception");
        return super::note(format_args!("(no SVE advertised: RDVL is UNDEFINED)"));
    }
    enable_sve();

    // Vector lengths: at most what LEN asks for, a multiple of 16 bytes, never shrinking.
    let mut last = 0;
    for len in 0..16u64 {
        set_len(len);
        let bytes = vl();
        ensure!(bytes % 16 == 0 && bytes >= 16 && bytes <= MAX_VL, "ZCR_EL1.LEN {len}: VL {bytes} bytes");
        ensure!(bytes <= (len as usize + 1) * 16, "ZCR_EL1.LEN {len} asks for {} bytes, VL is {bytes}", (len + 1) * 16);
        ensure!(bytes >= last, "ZCR_EL1.LEN {len}: VL {bytes} bytes, shorter than {last} for a smaller LEN");
        last = bytes;
    }
    let vl = last;
    say!("sve: vector length {} bits (longest ZCR_EL1.LEN allows)", vl * 8);

    // Nothing written yet: every register reads as zero.
    // SAFETY: one CPU runs this scenario; the statics are only touched here.
    let (saved, pattern) = unsafe { (&mut *core::ptr::addr_of_mut!(SAVED), &mut *core::ptr::addr_of_mut!(PATTERN)) };
    store(saved);
    let zero = &ZERO;
    if let Some((kind, r)) = first_difference(saved, zero, vl) {
        fail!("{kind}{r} is not zero before the guest wrote it: another context's data");
    }
    say!("sve: z0-z31, p0-p15 and ffr read as zero before the guest wrote them");

    // An Advanced SIMD write to V0 zeroes the rest of Z0.
    load(zero);
    // SAFETY: writes V0 (the low 128 bits of Z0), then stores Z0; only SVE/SIMD state changes.
    unsafe {
        core::arch::asm!(".arch_extension sve", ".arch_extension simd", "mov z0.b, #0x5a", "movi v0.16b, #0x3c", "str z0, [{z}]",
            z = in(reg) saved.z.as_mut_ptr(), options(nostack));
    }
    ensure!(saved.z[..16].iter().all(|&b| b == 0x3c), "after movi v0: Z0's low 128 bits are not V0");
    ensure!(saved.z[16..vl].iter().all(|&b| b == 0), "after movi v0: Z0 above bit 128 was not set to zero");
    say!("sve: an Advanced SIMD write to v0 zeroes z0 above bit 128");

    // A pattern in every register survives exits of every kind.
    let mut x = timer::now() | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    for b in pattern.z.iter_mut() {
        *b = next();
    }
    for b in pattern.p.iter_mut() {
        *b = next();
    }
    // FFR: predicate bits for byte elements, any pattern is a valid FFR value.
    for b in pattern.ffr.iter_mut() {
        *b = next();
    }
    set_len(15);
    let zcr_before = zcr();
    crate::gic::init_distributor()?;
    crate::gic::init_this_cpu()?;
    crate::gic::enable_private(timer::VTIMER_INTID);
    load(pattern);
    for _ in 0..ROUNDS {
        let _ = psci::version();
        // SAFETY: UARTFR is read-only without side effects.
        let _ = unsafe { mmio::read32(UART_BASE + 0x18) };
    }
    for _ in 0..10 {
        let until = timer::now() + timer::ms(1);
        wait::irq_until(|| timer::now() >= until, timer::ms(50), true);
    }
    store(saved);
    ensure!(zcr() == zcr_before, "ZCR_EL1 changed across exits: {zcr_before:#x} -> {:#x}", zcr());
    if let Some((kind, r)) = first_difference(saved, pattern, vl) {
        fail!("{kind}{r} changed across {ROUNDS} hvc and MMIO exits and 10 WFI waits");
    }
    say!("sve: every z, p and ffr register intact across {ROUNDS} hvc, {ROUNDS} MMIO exits and 10 WFI waits");
    load(zero);
    super::note(format_args!("({} bit vectors)", vl * 8))
}
