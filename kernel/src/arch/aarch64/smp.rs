//! Secondary CPU bring-up with PSCI CPU_ON.
//!
//! The boot CPU gives each secondary a `SecondaryBoot` record (read by `secondary_entry` in boot.S
//! with the MMU off, so it is cleaned to the point of coherency first) and a 16 KiB stack from the
//! frame allocator. The secondary enables its MMU with the kernel's tables, then runs
//! `secondary_main` with its Keel CPU index.

use super::{cpu, gic, kspace, psci, timer};
use crate::mm::frame::FRAMES;
use crate::mm::layout::{PAGE_SIZE, phys_to_virt};
use crate::percpu::{self, MAX_CPUS};
use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{MAIR_EL1, Readable, SCTLR_EL1, TCR_EL1, VBAR_EL1, Writeable};
use core::cell::UnsafeCell;
use keel_platform::dtb::Cpu;

const STACK_FRAMES: usize = 4;

/// Read by boot.S `secondary_entry`; field order is part of that contract.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SecondaryBoot {
    ttbr0: u64,
    ttbr1: u64,
    tcr: u64,
    mair: u64,
    sctlr: u64,
    stack_top: u64,
    cpu_index: u64,
    entry: u64,
}

#[repr(C, align(64))]
struct BootRecords(UnsafeCell<[SecondaryBoot; MAX_CPUS]>);
// SAFETY: the boot CPU writes record i only before starting CPU i; CPU i only reads it.
unsafe impl Sync for BootRecords {}
static RECORDS: BootRecords = BootRecords(UnsafeCell::new([SecondaryBoot {
    ttbr0: 0, ttbr1: 0, tcr: 0, mair: 0, sctlr: 0, stack_top: 0, cpu_index: 0, entry: 0,
}; MAX_CPUS]));

/// Starts every CPU in `cpus` except this one; returns how many came online (including this one).
/// A CPU that fails to start is logged and skipped.
pub fn start_secondaries(cpus: &[Cpu], timeout_ticks: u64) -> usize {
    let me = cpu::mpidr();
    let mut next_index = 1;
    for target in cpus.iter().filter(|c| c.mpidr != me) {
        if next_index >= MAX_CPUS {
            log::warn!("more than {MAX_CPUS} cpus in the DTB; ignoring mpidr {:#x} and the rest", target.mpidr);
            break;
        }
        let index = next_index;
        next_index += 1;
        let Some(stack) = FRAMES.lock().alloc(STACK_FRAMES) else {
            log::error!("cpu{index} (mpidr {:#x}): no memory for its stack; leaving it off", target.mpidr);
            continue;
        };
        let record = SecondaryBoot {
            ttbr0: kspace::boot_ttbr0(),
            ttbr1: kspace::current_ttbr1(),
            tcr: TCR_EL1.get(),
            mair: MAIR_EL1.get(),
            sctlr: SCTLR_EL1.get(),
            stack_top: phys_to_virt(stack) + STACK_FRAMES as u64 * PAGE_SIZE,
            cpu_index: index as u64,
            entry: secondary_main as *const () as u64,
        };
        let slot = record_ptr(index);
        // SAFETY: CPU `index` is not running yet, so nobody else reads or writes its record.
        unsafe { slot.write(record) };
        clean_to_poc(slot as u64, core::mem::size_of::<SecondaryBoot>());
        let record_pa = kspace::kimage_virt_to_phys(slot as u64);
        if let Err(e) = psci::cpu_on(target.mpidr, kspace::secondary_entry_pa(), record_pa) {
            log::error!("cpu{index} (mpidr {:#x}): PSCI CPU_ON failed with {}; leaving it off", target.mpidr, e.0);
            FRAMES.lock().free(stack, STACK_FRAMES);
            continue;
        }
        let deadline = cpu::counter() + timeout_ticks;
        while !percpu::get(index).is_online() && cpu::counter() < deadline {
            core::hint::spin_loop();
        }
        if !percpu::get(index).is_online() {
            log::error!("cpu{index} (mpidr {:#x}) did not come online in {timeout_ticks} ticks", target.mpidr);
        }
    }
    percpu::online_count()
}

fn record_ptr(index: usize) -> *mut SecondaryBoot {
    // Index is < MAX_CPUS (checked by the caller).
    (RECORDS.0.get() as *mut SecondaryBoot).wrapping_add(index)
}

fn clean_to_poc(va: u64, len: usize) {
    let mut line = va & !63;
    while line < va + len as u64 {
        // SAFETY: cleaning a cache line of mapped kernel data changes no memory contents.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) line, options(nostack)) };
        line += 64;
    }
    barrier::dsb(barrier::SY);
}

static GIC_WINDOWS: spin::Once<&'static [(usize, usize)]> = spin::Once::new();

/// Records the redistributor windows for secondaries (before starting them).
pub fn set_redistributor_windows(windows: &'static [(usize, usize)]) {
    GIC_WINDOWS.call_once(|| windows);
}

extern "C" fn secondary_main(index: usize) -> ! {
    VBAR_EL1.set(kspace::vectors());
    barrier::isb(barrier::SY);
    cpu::set_cpu_id(index);
    kspace::disable_identity_map();
    // SAFETY: the boot CPU wrote this record before starting us and never touches it again.
    let stack_top = unsafe { (*record_ptr(index)).stack_top };
    super::user::set_stack_top(index, stack_top);
    let mpidr = cpu::mpidr();
    let windows = GIC_WINDOWS.get().copied().unwrap_or(&[]);
    if !gic::init_cpu(index, mpidr, windows) {
        log::error!("cpu{index} (mpidr {mpidr:#x}): no GIC redistributor matches; stopping it");
        percpu::mark_online(index, mpidr);
        super::exception::stop_this_cpu(index);
    }
    super::virt::init_cpu(index);
    timer::start_tick(index, timer::tick_intid());
    percpu::mark_online(index, mpidr);
    log::debug!("cpu{index} (mpidr {mpidr:#x}) online");
    cpu::irq_enable();
    loop {
        cpu::wait_for_interrupt();
        crate::scenario::secondary_woke(index);
        if super::user::started() {
            super::user::enter_user_space(index);
        }
    }
}
