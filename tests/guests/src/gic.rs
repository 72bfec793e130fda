//! A minimal GICv3 driver over the guest machine's fixed distributor and redistributor
//! addresses, using the system-register CPU interface (ICC_*_EL1). Everything is group 1
//! non-secure; SGIs and PPIs get priority 0xa0, below the 0xff priority mask.
//!
//! The distributor is set up once by the primary; each CPU wakes its own redistributor and
//! programs its own CPU interface. Nothing here is enabled until a scenario asks for it, so the
//! scenarios that do not need interrupts do not depend on the vGIC.

use crate::arch::mmio;
use crate::machine::{GICD_BASE, GICR_BASE, GICR_STRIDE, MAX_CPUS};
use crate::percpu::{self, bump};
use crate::text::Text;
use core::sync::atomic::Ordering::SeqCst;

const GICD_CTLR: u64 = 0x0000;
const GICD_CTLR_RWP: u32 = 1 << 31;
/// Affinity routing (ARE / ARE_NS, bit 4) and group 1 non-secure enabled (bit 1).
const GICD_CTLR_ARE_GRP1NS: u32 = 0x12;

const GICR_CTLR: u64 = 0x0000;
const GICR_CTLR_RWP: u32 = 1 << 3;
const GICR_TYPER: u64 = 0x0008;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER: u64 = 0x0014;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// SGI_base: the second 64 KiB frame of a redistributor.
const SGI_FRAME: u64 = 0x1_0000;
const GICR_IGROUPR0: u64 = SGI_FRAME + 0x0080;
const GICR_ISENABLER0: u64 = SGI_FRAME + 0x0100;
const GICR_ICENABLER0: u64 = SGI_FRAME + 0x0180;
const GICR_ISPENDR0: u64 = SGI_FRAME + 0x0200;
const GICR_ICPENDR0: u64 = SGI_FRAME + 0x0280;
const GICR_IPRIORITYR: u64 = SGI_FRAME + 0x0400;

/// The PMU overflow interrupt: PPI 7, INTID 23, the PPI the GICv3 architecture recommends for it
/// (Arm ARM D13.3.1) and the one QEMU's `virt` gives in its DTB. Level-sensitive.
pub const PMU_INTID: u32 = 23;

/// Priority of every SGI and PPI.
const PRIORITY: u32 = 0xa0;
/// Register polls before the driver gives up waiting for RWP or ChildrenAsleep.
const POLLS: u32 = 1_000_000;
/// INTIDs from 1020 up are special (1023: nothing pending).
const FIRST_SPECIAL_INTID: u32 = 1020;

fn poll_clear(addr: u64, mask: u32) -> bool {
    // SAFETY: the GIC status registers polled here have no read side effects.
    (0..POLLS).any(|_| unsafe { mmio::read32(addr) } & mask == 0)
}

/// Enables the distributor: affinity routing, group 1 non-secure. Primary CPU, once.
pub fn init_distributor() -> Result<(), Text> {
    // SAFETY: GICD_CTLR belongs to the guest's distributor; ARE is set before the group enable
    // as the GICv3 specification requires.
    unsafe { mmio::write32(GICD_BASE + GICD_CTLR, 0x10) };
    if !poll_clear(GICD_BASE + GICD_CTLR, GICD_CTLR_RWP) {
        return Err(Text::format(format_args!("GICD_CTLR.RWP never cleared")));
    }
    // SAFETY: as above.
    unsafe { mmio::write32(GICD_BASE + GICD_CTLR, GICD_CTLR_ARE_GRP1NS) };
    if !poll_clear(GICD_BASE + GICD_CTLR, GICD_CTLR_RWP) {
        return Err(Text::format(format_args!("GICD_CTLR.RWP never cleared")));
    }
    Ok(())
}

/// Finds this CPU's redistributor by GICR_TYPER.Affinity_Value.
fn find_redistributor(mpidr: u64) -> Option<u64> {
    let affinity = (mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 24;
    for i in 0..MAX_CPUS as u64 {
        let rd = GICR_BASE + i * GICR_STRIDE;
        // SAFETY: GICR_TYPER is read-only; frames are walked only up to the Last flag.
        let typer = unsafe { mmio::read64(rd + GICR_TYPER) };
        if typer >> 32 == affinity {
            return Some(rd);
        }
        if typer & GICR_TYPER_LAST != 0 {
            break;
        }
    }
    None
}

/// Sets up this CPU's redistributor and CPU interface: all SGIs/PPIs group 1, disabled, not
/// pending, priority 0xa0; ICC_SRE_EL1.SRE checked; PMR 0xff; group 1 enabled.
pub fn init_this_cpu() -> Result<(), Text> {
    let cpu = crate::arch::cpu_index();
    let Some(rd) = find_redistributor(crate::arch::mpidr()) else {
        return Err(Text::format(format_args!(
            "no redistributor has cpu {cpu}'s affinity"
        )));
    };
    // SAFETY: GICR_WAKER of this CPU's own redistributor.
    unsafe {
        let waker = mmio::read32(rd + GICR_WAKER);
        mmio::write32(rd + GICR_WAKER, waker & !WAKER_PROCESSOR_SLEEP);
    }
    if !poll_clear(rd + GICR_WAKER, WAKER_CHILDREN_ASLEEP) {
        return Err(Text::format(format_args!(
            "cpu {cpu}: GICR_WAKER.ChildrenAsleep never cleared"
        )));
    }
    // SAFETY: SGI/PPI configuration of this CPU's own redistributor.
    unsafe {
        mmio::write32(rd + GICR_ICENABLER0, u32::MAX);
        mmio::write32(rd + GICR_ICPENDR0, u32::MAX);
        mmio::write32(rd + GICR_IGROUPR0, u32::MAX);
        for word in 0..8 {
            mmio::write32(rd + GICR_IPRIORITYR + word * 4, PRIORITY * 0x0101_0101);
        }
    }
    if !poll_clear(rd + GICR_CTLR, GICR_CTLR_RWP) {
        return Err(Text::format(format_args!(
            "cpu {cpu}: GICR_CTLR.RWP never cleared"
        )));
    }
    // SAFETY: the CPU interface of this CPU: system-register access on, FIQ/IRQ bypass off.
    let sre = unsafe {
        write_sysreg!("icc_sre_el1", 0x7);
        crate::arch::isb();
        read_sysreg!("icc_sre_el1")
    };
    if sre & 1 == 0 {
        return Err(Text::format(format_args!(
            "cpu {cpu}: ICC_SRE_EL1.SRE reads 0 (system-register GIC interface disabled)"
        )));
    }
    // SAFETY: priority mask, binary point, EOI mode 0 and the group-1 enable of this CPU's own
    // interface; no interrupt is enabled yet.
    unsafe {
        write_sysreg!("icc_pmr_el1", 0xff);
        write_sysreg!("icc_bpr1_el1", 0);
        write_sysreg!("icc_ctlr_el1", 0);
        write_sysreg!("icc_igrpen1_el1", 1);
    }
    crate::arch::isb();
    percpu::this().redistributor.store(rd, SeqCst);
    Ok(())
}

/// Enables SGI or PPI `intid` (below 32) on this CPU.
pub fn enable_private(intid: u32) {
    let rd = percpu::this().redistributor.load(SeqCst);
    assert!(
        rd != 0 && intid < 32,
        "enable_private after init_this_cpu, for an SGI or PPI"
    );
    // SAFETY: ISENABLER0 of this CPU's own redistributor.
    unsafe { mmio::write32(rd + GICR_ISENABLER0, 1 << intid) };
}

/// Routes shared peripheral interrupt `intid` (32 and up) to this CPU as a group 1 interrupt of
/// the usual priority, keeps its trigger as the device tree gives it, and enables it.
pub fn enable_spi(intid: u32) {
    assert!((32..FIRST_SPECIAL_INTID).contains(&intid), "enable_spi for an SPI");
    let (word, bit) = (u64::from(intid / 32) * 4, 1u32 << (intid % 32));
    let mpidr = crate::arch::mpidr();
    let affinity = (mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 32;
    // SAFETY: distributor registers of this one SPI (IGROUPR, IPRIORITYR, IROUTER, ISENABLER);
    // read-modify-write of the group word, which only this CPU changes.
    unsafe {
        let group = mmio::read32(GICD_BASE + 0x0080 + word);
        mmio::write32(GICD_BASE + 0x0080 + word, group | bit);
        let pri = GICD_BASE + 0x0400 + u64::from(intid & !3);
        let shift = (intid % 4) * 8;
        let v = mmio::read32(pri);
        mmio::write32(pri, (v & !(0xff << shift)) | (PRIORITY << shift));
        mmio::write64(GICD_BASE + 0x6000 + 8 * u64::from(intid), affinity);
        mmio::write32(GICD_BASE + 0x0100 + word, bit);
    }
}

/// Disables SGI or PPI `intid` (below 32) on this CPU.
pub fn disable_private(intid: u32) {
    let rd = percpu::this().redistributor.load(SeqCst);
    assert!(
        rd != 0 && intid < 32,
        "disable_private after init_this_cpu, for an SGI or PPI"
    );
    // SAFETY: ICENABLER0 of this CPU's own redistributor.
    unsafe { mmio::write32(rd + GICR_ICENABLER0, 1 << intid) };
    poll_clear(rd + GICR_CTLR, GICR_CTLR_RWP);
}

/// Whether SGI or PPI `intid` (below 32) is pending on this CPU (GICR_ISPENDR0).
pub fn private_pending(intid: u32) -> bool {
    let rd = percpu::this().redistributor.load(SeqCst);
    assert!(
        rd != 0 && intid < 32,
        "private_pending after init_this_cpu, for an SGI or PPI"
    );
    // SAFETY: reading ISPENDR0 of this CPU's own redistributor has no side effects.
    let pending = unsafe { mmio::read32(rd + GICR_ISPENDR0) };
    pending & (1 << intid) != 0
}

/// Sends SGI `intid` (below 16) to the CPU with Aff0 = `target` (Aff1..3 = 0).
pub fn send_sgi(intid: u32, target: usize) {
    let value =
        (u64::from(intid & 0xf) << 24) | (1u64 << (target & 0xf)) | ((target as u64 >> 4) << 44);
    // SAFETY: ICC_SGI1R_EL1 generates a group-1 SGI; the target only counts it.
    unsafe { write_sysreg!("icc_sgi1r_el1", value) };
    crate::arch::isb();
}

/// The PMU overflow interrupt: clears the overflow flags it finds (which drops the
/// level-sensitive request, Arm ARM D13.3.1) and counts the interrupt.
fn handle_pmu_overflow() {
    let cpu = percpu::this();
    // SAFETY: only a PMU raises INTID 23, so PMOVSSET_EL0 and PMOVSCLR_EL0 exist; clearing the
    // flags that are set only ends the overflow the scenario that enabled INTID 23 caused.
    let flags = unsafe {
        let flags = read_sysreg!("pmovsset_el0");
        write_sysreg!("pmovsclr_el0", flags);
        flags
    };
    crate::arch::isb();
    cpu.pmu_overflow_flags.store(flags, SeqCst);
    bump(&cpu.pmu_irqs);
}

/// The IRQ vector: acknowledge, dispatch and end every pending interrupt.
pub fn handle_irq() {
    let cpu = percpu::this();
    loop {
        // SAFETY: reading ICC_IAR1_EL1 acknowledges the interrupt handled below.
        let intid = unsafe { read_sysreg!("icc_iar1_el1") } as u32 & 0xff_ffff;
        if intid >= FIRST_SPECIAL_INTID {
            break;
        }
        bump(&cpu.irq_count);
        match intid {
            crate::timer::VTIMER_INTID => crate::timer::handle_interrupt(),
            crate::timer::PTIMER_INTID => crate::timer::handle_physical_interrupt(),
            PMU_INTID => handle_pmu_overflow(),
            0..16 => bump(&cpu.sgi_count),
            _ => bump(&cpu.other_irqs),
        }
        // SAFETY: ends (priority drop and deactivation, EOImode 0) the interrupt acknowledged above.
        unsafe { write_sysreg!("icc_eoir1_el1", u64::from(intid)) };
    }
}
