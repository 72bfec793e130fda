//! The GICv3 as the host kernel uses it: distributor and per-CPU redistributor set-up, the
//! system-register CPU interface, interrupt dispatch and SGIs (IPIs).
//!
//! Every interrupt is Non-secure Group 1. Priorities are all equal, so interrupts never preempt
//! each other inside the kernel (IRQs stay masked in handlers anyway).

use super::sysreg::{icc_bpr1_el1, icc_ctlr_el1, icc_eoir1_el1, icc_iar1_el1, icc_igrpen1_el1, icc_pmr_el1, icc_sgi1r_el1, icc_sre_el2};
use crate::percpu::{self, MAX_CPUS};
use aarch64_cpu::asm::barrier;
use keel_platform::gicv3::{Distributor, Redistributor, Trigger};
use spin::Once;

/// SGI used to interrupt another CPU (reschedule/test IPI).
pub const SGI_IPI: u32 = 0;
/// INTIDs at or above this are special (1020..1023: spurious and friends).
const INTID_SPECIAL: u32 = 1020;

static DISTRIBUTOR: Once<Distributor> = Once::new();
static REDISTRIBUTORS: [Once<Redistributor>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Brings up the distributor at virtual address `gicd_va` (boot CPU, once).
pub fn init_distributor(gicd_va: usize) {
    DISTRIBUTOR.call_once(|| {
        // SAFETY: kspace mapped the DTB's GICD frame at `gicd_va` as Device memory for good, and
        // `call_once` makes this the only Distributor.
        let d = unsafe { Distributor::new(gicd_va) };
        d.init();
        d
    });
}

/// Number of interrupt IDs the distributor implements.
pub fn num_intids() -> u32 {
    DISTRIBUTOR.get().map_or(0, |d| d.num_intids())
}

/// Finds and wakes this CPU's redistributor in one of `regions` (virtual base, size) and enables
/// the CPU interface. Returns false when no redistributor matches this CPU's affinity.
pub fn init_cpu(cpu: usize, mpidr: u64, regions: &[(usize, usize)]) -> bool {
    let found = regions.iter().find_map(|&(va, size)| {
        // SAFETY: each region was mapped by kspace as Device memory for good, with its DTB size.
        unsafe { Redistributor::find(va, size, mpidr) }
    });
    let Some(redist) = found else { return false };
    redist.init();
    REDISTRIBUTORS[cpu].call_once(|| redist);

    // System-register interface at EL2, and allow EL1 (guests) to use it too.
    icc_sre_el2::write(icc_sre_el2::read() | 0b1001);
    barrier::isb(barrier::SY);
    icc_pmr_el1::write(0xff);
    icc_bpr1_el1::write(0);
    icc_ctlr_el1::write(0); // EOImode 0: EOIR both drops priority and deactivates
    icc_igrpen1_el1::write(1);
    barrier::isb(barrier::SY);
    enable_private(cpu, SGI_IPI);
    true
}

/// Enables an SGI or PPI on `cpu` (must be this CPU's redistributor or one not yet running).
pub fn enable_private(cpu: usize, intid: u32) {
    if let Some(r) = REDISTRIBUTORS[cpu].get() {
        r.enable_private(intid);
    }
}

/// Disables an SGI or PPI on `cpu`.
pub fn disable_private(cpu: usize, intid: u32) {
    if let Some(r) = REDISTRIBUTORS[cpu].get() {
        r.disable_private(intid);
    }
}

/// Routes SPI `intid` to the CPU with affinity `mpidr` and enables it.
pub fn enable_spi(intid: u32, trigger: Trigger, mpidr: u64) {
    if let Some(d) = DISTRIBUTOR.get() {
        d.enable_spi(intid, trigger, mpidr);
    }
}

/// Trigger types of the device interrupts user space may claim (from the DTB), by INTID.
static DEVICE_TRIGGERS: crate::hal::Mutex<alloc::collections::BTreeMap<u32, Trigger>> = crate::hal::Mutex::new(alloc::collections::BTreeMap::new());

/// Records a device interrupt user space may claim, with its trigger type.
pub fn register_device_irq(intid: u32, trigger: Trigger) {
    DEVICE_TRIGGERS.lock().insert(intid, trigger);
}

/// Enables a claimed device SPI, routed to the boot CPU.
pub fn enable_device_irq(intid: u32) {
    let trigger = DEVICE_TRIGGERS.lock().get(&intid).copied().unwrap_or(Trigger::Level);
    enable_spi(intid, trigger, percpu::get(0).mpidr());
}

/// Unmasks a device SPI configured earlier by `enable_device_irq` (an acknowledgement).
pub fn unmask_device_irq(intid: u32) {
    if let Some(d) = DISTRIBUTOR.get() {
        d.unmask_spi(intid);
    }
}

/// Masks a device SPI (until user space acknowledges it).
pub fn mask_device_irq(intid: u32) {
    if let Some(d) = DISTRIBUTOR.get() {
        d.disable_spi(intid);
    }
}

/// Sends SGI `intid` to the CPU with affinity `mpidr`.
pub fn send_sgi(mpidr: u64, intid: u32) {
    let aff0 = mpidr & 0xff;
    let value = (1u64 << (aff0 % 16))           // target list (one bit within the range)
        | ((mpidr >> 8) & 0xff) << 16           // Aff1
        | (u64::from(intid) & 0xf) << 24        // INTID
        | ((mpidr >> 16) & 0xff) << 32          // Aff2
        | (aff0 / 16) << 44                     // range selector
        | ((mpidr >> 32) & 0xff) << 48; // Aff3
    barrier::dsb(barrier::ISHST);
    icc_sgi1r_el1::write(value);
    barrier::isb(barrier::SY);
}

/// The highest-priority pending interrupt on this CPU, acknowledged (it becomes active); None
/// when nothing is pending.
pub fn acknowledge() -> Option<u32> {
    let intid = (icc_iar1_el1::read() & 0xff_ffff) as u32;
    (intid < INTID_SPECIAL).then_some(intid)
}

/// Ends an acknowledged interrupt (priority drop and deactivation).
pub fn end(intid: u32) {
    icc_eoir1_el1::write(u64::from(intid));
}
