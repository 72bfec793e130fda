//! The kernel's hardware interface (see `crate::hal`) on AArch64 at EL2 with VHE.

use super::{console, cpu, gic, psci};
pub use super::virt::{
    guest_debug_load, guest_exception, guest_fault_address, guest_id_reg, guest_load, guest_lr_count, guest_lrs_read, guest_lrs_write, guest_put,
    guest_pmu_asserts, guest_pmu_load, guest_ppi_hold, guest_timer, stage2_limits, tlb_flush_vmid,
};
pub use super::fp::{fp_restore, fp_save};
pub use super::sve::first_use as guest_sve_first_use;
use crate::hal::UserRegs;
use crate::mm::layout::phys_to_virt;
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{TTBR0_EL1, Writeable};
use core::sync::atomic::{AtomicU64, Ordering};

/// Physical address of an empty level-0 table: TTBR0 points here when no user space runs.
static EMPTY_TTBR0: AtomicU64 = AtomicU64::new(0);

/// Records the empty table used while a CPU runs no user thread.
pub fn set_empty_user_table(pa: u64) {
    EMPTY_TTBR0.store(pa, Ordering::Relaxed);
}

/// Zeroes a frame with `dc zva` (one instruction per block, 64 bytes on the reference CPU) when
/// DCZID_EL0 allows it and its block divides the page, else with `memset`.
pub fn zero_frame(pa: u64) {
    let va = phys_to_virt(pa);
    let dczid: u64;
    // SAFETY: reading an ID register.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    let block = 4u64 << (dczid & 0xf);
    if dczid & 0x10 != 0 || !(16..=1024).contains(&block) {
        // SAFETY: `pa` is a RAM frame the caller owns (from the frame allocator); the direct
        // map covers all RAM with RW Normal memory.
        unsafe { core::ptr::write_bytes(va as *mut u8, 0, 4096) };
        return;
    }
    let mut p = va;
    let end = p + 4096;
    while p < end {
        // SAFETY: as above; each block lies within the page (the page is block-aligned since the
        // block size is a power of two no larger than 4 KiB).
        unsafe {
            core::arch::asm!(
                "dc zva, {p}", "add {p}, {p}, {b}", "dc zva, {p}", "add {p}, {p}, {b}",
                "dc zva, {p}", "add {p}, {p}, {b}", "dc zva, {p}", "add {p}, {p}, {b}",
                p = inout(reg) p, b = in(reg) block, options(nostack, preserves_flags),
            )
        };
    }
}

pub fn copy_to_phys(pa: u64, bytes: &[u8]) {
    // SAFETY: the caller owns [pa, pa+len) (a frame of a PMO it holds, checked by the PMO code),
    // which is RAM mapped RW in the direct map; the source is a kernel buffer that cannot overlap.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), phys_to_virt(pa) as *mut u8, bytes.len()) };
}

pub fn copy_from_phys(pa: u64, out: &mut [u8]) {
    // SAFETY: as for `copy_to_phys`, reading.
    unsafe { core::ptr::copy_nonoverlapping(phys_to_virt(pa) as *const u8, out.as_mut_ptr(), out.len()) };
}

/// Copies `len` bytes of RAM from `src` to `dst` (physical addresses; the ranges may overlap).
pub fn copy_phys(dst: u64, src: u64, len: usize) {
    // SAFETY: the caller owns [dst, dst+len) (a frame of a PMO it holds) and may read
    // [src, src+len) (a page of a user buffer it checked); both are RAM, mapped RW in the direct
    // map. `copy` allows the two to overlap (a user buffer mapped from the object written).
    unsafe { core::ptr::copy(phys_to_virt(src) as *const u8, phys_to_virt(dst) as *mut u8, len) };
}

pub fn phys_table(pa: u64) -> &'static mut [u64; 512] {
    // SAFETY: `pa` is a page-table frame of a user address space; those are only touched under the
    // big kernel lock, so this is the only live reference.
    unsafe { &mut *(phys_to_virt(pa) as *mut [u64; 512]) }
}

pub fn tlb_flush_asid(asid: u16) {
    barrier::dsb(barrier::ISHST);
    // SAFETY: TLB maintenance only; broadcast to every CPU (inner shareable).
    unsafe { core::arch::asm!("tlbi aside1is, {}", "dsb ish", "isb", in(reg) u64::from(asid) << 48, options(nostack)) };
}

pub fn tlb_flush_page(asid: u16, va: u64) {
    barrier::dsb(barrier::ISHST);
    let operand = (u64::from(asid) << 48) | ((va >> 12) & 0xFFF_FFFF_FFFF);
    // SAFETY: TLB maintenance only; broadcast to every CPU (inner shareable).
    unsafe { core::arch::asm!("tlbi vae1is, {}", "dsb ish", "isb", in(reg) operand, options(nostack)) };
}

/// Installs a user address space in TTBR0_EL2 (root 0: none).
pub fn set_user_space(root: u64, asid: u16) {
    let ttbr = if root == 0 { EMPTY_TTBR0.load(Ordering::Relaxed) } else { root | (u64::from(asid) << 48) };
    TTBR0_EL1.set(ttbr);
    barrier::isb(barrier::SY);
}

/// `*dst = *src` for a register frame in 34 instructions: the compiler's `memcpy` for the
/// soft-float kernel moves a word per loop iteration (~170 instructions for 272 bytes), and a
/// frame is copied on every thread switch.
#[inline]
pub fn copy_regs(dst: &mut UserRegs, src: &UserRegs) {
    // SAFETY: both are valid, distinct (one is `&mut`) 272-byte frames; 8-byte aligned by type.
    unsafe {
        core::arch::asm!(
            "ldp {a}, {b}, [{s}, #0]", "stp {a}, {b}, [{d}, #0]", "ldp {a}, {b}, [{s}, #16]", "stp {a}, {b}, [{d}, #16]",
            "ldp {a}, {b}, [{s}, #32]", "stp {a}, {b}, [{d}, #32]", "ldp {a}, {b}, [{s}, #48]", "stp {a}, {b}, [{d}, #48]",
            "ldp {a}, {b}, [{s}, #64]", "stp {a}, {b}, [{d}, #64]", "ldp {a}, {b}, [{s}, #80]", "stp {a}, {b}, [{d}, #80]",
            "ldp {a}, {b}, [{s}, #96]", "stp {a}, {b}, [{d}, #96]", "ldp {a}, {b}, [{s}, #112]", "stp {a}, {b}, [{d}, #112]",
            "ldp {a}, {b}, [{s}, #128]", "stp {a}, {b}, [{d}, #128]", "ldp {a}, {b}, [{s}, #144]", "stp {a}, {b}, [{d}, #144]",
            "ldp {a}, {b}, [{s}, #160]", "stp {a}, {b}, [{d}, #160]", "ldp {a}, {b}, [{s}, #176]", "stp {a}, {b}, [{d}, #176]",
            "ldp {a}, {b}, [{s}, #192]", "stp {a}, {b}, [{d}, #192]", "ldp {a}, {b}, [{s}, #208]", "stp {a}, {b}, [{d}, #208]",
            "ldp {a}, {b}, [{s}, #224]", "stp {a}, {b}, [{d}, #224]", "ldp {a}, {b}, [{s}, #240]", "stp {a}, {b}, [{d}, #240]",
            "ldp {a}, {b}, [{s}, #256]", "stp {a}, {b}, [{d}, #256]",
            d = in(reg) dst as *mut UserRegs, s = in(reg) src as *const UserRegs, a = out(reg) _, b = out(reg) _,
            options(nostack, preserves_flags),
        )
    };
}

pub fn send_ipi(target: usize) {
    // Busy from now on for the all-idle accounting (it has work; its WFI returns soon).
    crate::sched::idle::ALL_IDLE.wake(target);
    let mpidr = crate::percpu::get(target).mpidr();
    gic::send_sgi(mpidr, gic::SGI_IPI);
}

pub fn irq_enable(intid: u32) {
    gic::enable_device_irq(intid);
}

pub fn irq_unmask(intid: u32) {
    gic::unmask_device_irq(intid);
}

pub fn irq_mask(intid: u32) {
    gic::mask_device_irq(intid);
}

pub fn console_write(bytes: &[u8]) {
    console::write_bytes(bytes);
}

pub fn power_off(reset: bool) {
    if reset {
        psci::system_reset();
    }
    psci::system_off();
}

pub fn now_ticks() -> u64 {
    cpu::counter()
}


pub fn ticks_per_second() -> u64 {
    cpu::counter_freq()
}

pub fn kernel_heap_free() -> usize {
    super::kspace::heap_free()
}

pub fn kernel_heap_total() -> usize {
    super::kspace::heap_total()
}

pub fn this_cpu() -> usize {
    cpu::cpu_id()
}

/// How a CPU waits on a spin lock: the `yield` hint, not `core::hint::spin_loop` (an `isb` on
/// AArch64). Under QEMU without MTTCG (always under `-icount`) one host thread runs every vCPU
/// in turn, each up to the next timer deadline; `yield` ends the spinning vCPU's turn so the
/// holder runs, while an `isb` spin keeps the turn: the holder then waits for the spinner's
/// whole slice (measured: a 10 ms stall with every CPU's interrupts masked, the timer tick
/// and every sleeper's wake-up tens of ms late). On hardware `yield` is a hint and costs nothing.
pub struct Relax;

impl spin::RelaxStrategy for Relax {
    #[inline(always)]
    fn relax() {
        // SAFETY: a hint instruction; no memory, stack or flags are touched.
        unsafe {
            core::arch::asm!("yield", options(nomem, nostack, preserves_flags));
        }
    }
}

/// Makes this CPU's timer interrupt come no later than `deadline` (counter ticks), for a
/// sleeper that must wake then.
pub fn timer_wake_by(deadline: u64) {
    super::timer::wake_by(cpu::cpu_id(), deadline);
}
