//! MMIO accessors. Every access is one `ldr*`/`str*` with a plain base register and no writeback,
//! so a trapping hypervisor always gets a valid syndrome (ESR.ISV = 1) — `read_volatile` could
//! be compiled to a post-indexed load. Loads take a sentinel that is returned unchanged when the
//! access faults and the trap handler skips it.

use crate::hostile_plan::Width;

/// Loads `width` bytes from `addr`, zero-extended; `sentinel` if the load is skipped after a
/// fault.
///
/// # Safety
/// `addr` must be aligned to `width` and reading it must have no effect the caller is not ready
/// for (a device register with read side effects, or an abort the caller catches).
pub unsafe fn load(addr: u64, width: Width, sentinel: u64) -> u64 {
    let mut value = sentinel;
    // SAFETY: per the caller's contract; the asm reads one location and writes one register.
    unsafe {
        match width {
            Width::B8 => {
                core::arch::asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) value, options(nostack))
            }
            Width::B16 => {
                core::arch::asm!("ldrh {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) value, options(nostack))
            }
            Width::B32 => {
                core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) value, options(nostack))
            }
            Width::B64 => {
                core::arch::asm!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) value, options(nostack))
            }
        }
    }
    // A skipped 8/16/32-bit load leaves the whole sentinel; a completed one zero-extends.
    value
}

/// Stores the low `width` bytes of `value` to `addr`.
///
/// # Safety
/// `addr` must be aligned to `width` and must not be guest RAM the program uses, nor a device
/// register whose change the caller is not ready for.
pub unsafe fn store(addr: u64, width: Width, value: u64) {
    // SAFETY: per the caller's contract; the asm writes one location.
    unsafe {
        match width {
            Width::B8 => {
                core::arch::asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            Width::B16 => {
                core::arch::asm!("strh {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            Width::B32 => {
                core::arch::asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
            Width::B64 => {
                core::arch::asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack))
            }
        }
    }
}

/// A 32-bit device register read.
///
/// # Safety
/// `addr` must be a 4-byte aligned device register whose read has no effect the caller is not
/// ready for.
pub unsafe fn read32(addr: u64) -> u32 {
    // SAFETY: per the caller's contract.
    unsafe { load(addr, Width::B32, 0) as u32 }
}

/// A 64-bit device register read.
///
/// # Safety
/// As for [`read32`], 8-byte aligned.
pub unsafe fn read64(addr: u64) -> u64 {
    // SAFETY: per the caller's contract.
    unsafe { load(addr, Width::B64, 0) }
}

/// A 64-bit device register write.
///
/// # Safety
/// `addr` must be an 8-byte aligned device register the caller owns.
pub unsafe fn write64(addr: u64, value: u64) {
    // SAFETY: per the caller's contract.
    unsafe { store(addr, Width::B64, value) }
}

/// A 32-bit device register write.
///
/// # Safety
/// `addr` must be a 4-byte aligned device register the caller owns.
pub unsafe fn write32(addr: u64, value: u32) {
    // SAFETY: per the caller's contract.
    unsafe { store(addr, Width::B32, u64::from(value)) }
}
