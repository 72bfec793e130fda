//! The in-kernel vGICv3: a software GICv3 distributor and redistributors for one VM, with
//! virtual interrupts delivered through the hardware's `ICH_LR<n>_EL2` list registers.
//!
//! [`VGic`] owns every interrupt's state (enable, group, priority, trigger, line, pending,
//! active, routing) and the record of which interrupt sits in which list register. It emulates
//! the guest's MMIO accesses to GICD ([`VGic::dist_read`], [`VGic::dist_write`]) and to each
//! vCPU's GICR frames ([`VGic::redist_read`], [`VGic::redist_write`]), takes interrupts from
//! device backends ([`VGic::set_spi_level`], [`VGic::trigger_spi_edge`],
//! [`VGic::set_ppi_level`]) and from guest SGI writes ([`VGic::send_sgi`]), and fills and reads
//! back list registers ([`VGic::flush`], [`VGic::sync`]). It is pure logic: it never touches a
//! system register, never allocates after [`VGic::new`], and never panics on guest input (a
//! bad access is an `Err`, reserved registers read as zero and ignore writes).
//!
//! The guest sees a GICv3 with one security state (GICD_CTLR.DS = 1), affinity routing always
//! on, 10 INTID bits, no LPIs/ITS, vCPU `i` at affinity 0.0.0.`i`, laid out like QEMU's `virt`
//! board ([`GICD_BASE`], [`GICR_BASE`]). The kernel passes offsets from the frame bases.
//!
//! # The arch layer's part
//!
//! With one [`LrFile`] per vCPU (created with ICH_VTR_EL2.ListRegs + 1 list registers):
//! - when the vCPU is loaded on a CPU (whose list registers the last put left zero):
//!   `lrs.hardware_cleared()`;
//! - before entering the guest: `flush(vcpu, &mut lrs)`; then write `ICH_LR<n>_EL2` from
//!   `lrs.values()` for the bits of `lrs.to_write()` (the live list registers and those live at
//!   the last write, which must now be cleared) and set ICH_HCR_EL2 to En | (UIE if
//!   `lrs.underflow`). (`in_use`, `was_in_use` and `take_dirty` say the same from the flush's
//!   side: what is live, and what the last flush changed.)
//! - after every exit: read `ICH_LR<n>_EL2` into `lrs.values_mut()` for the bits of
//!   [`LrFile::live`], then always `sync(vcpu, &mut lrs)`;
//! - level-sensitive interrupts go in with the EOI bit, so the guest deactivating one raises
//!   the maintenance interrupt (ICH_MISR_EL2.EOI); UIE raises it when the list registers drain
//!   while interrupts wait. Either way the exit plus `sync` plus `flush` is all it needs (the
//!   maintenance interrupt is PPI 25 on the host and must be enabled there);
//! - the guest's ICC_SGI1R_EL1 writes trap (HCR_EL2.IMO) and go to `send_sgi`;
//! - every returned [`Kicks`], and [`SyncReport::kicks`], names vCPUs to wake or IPI.
//!
//! Between `flush` and `sync` the hardware owns what is in the list registers; the model sees
//! the guest's acknowledges and deactivations only at `sync`, and after `sync` it is
//! authoritative again (ISPENDR/ISACTIVER reads include what was in the list registers).
//! Changes to an interrupt held in a running vCPU's list registers kick that vCPU.
//!
//! Invariants (the first two checked after every step of the randomized test, the third by its
//! check that a `flush` without underflow leaves nothing deliverable outside the list registers):
//! - an interrupt is in at most one list register of one vCPU, and its `Irq::lr` names
//!   exactly the list register whose record names it;
//! - a vCPU's live list registers are below its hardware count;
//! - `needs_flush` is set for a vCPU whenever something that may change its list registers
//!   changed since its last `flush`, so a `flush` with the flag clear may do nothing.
#![forbid(unsafe_code)]

mod access;
mod delivery;
mod dist;
mod inject;
mod intid_regs;
mod irq;
mod kicks;
mod lr;
mod redist;

#[cfg(test)]
mod tests;

use alloc::vec::Vec;

pub use inject::SgiRequest;
pub use irq::PRIORITY_MASK;
use irq::{Irq, IrqRef};
pub use kicks::Kicks;
use lr::LrBook;
pub use lr::{ListReg, LrFile, LrState, MAX_LIST_REGS, SyncReport};

/// Guest physical address of the distributor frame.
pub const GICD_BASE: u64 = 0x0800_0000;
/// Size of the distributor frame.
pub const GICD_SIZE: u64 = 0x1_0000;
/// Guest physical address of vCPU 0's redistributor frames.
pub const GICR_BASE: u64 = 0x080A_0000;
/// Bytes per vCPU in the redistributor region: the RD_base frame, then the SGI_base frame.
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Offset of the SGI_base frame within a vCPU's redistributor frames.
pub const GICR_SGI_BASE: u64 = 0x1_0000;

/// Most vCPUs a VM's vGIC serves.
pub const MAX_VCPUS: usize = 8;
/// SPIs a VM gets by default: INTIDs 32..96.
pub const DEFAULT_NR_SPIS: u32 = 64;
/// Most SPIs: INTIDs up to 991 (GICD_TYPER.ITLinesNumber = 30; 1020.. are special INTIDs).
pub const MAX_NR_SPIS: u32 = 960;

/// The first SPI's INTID.
pub const SPI_BASE: u32 = 32;
/// The first PPI's INTID.
pub const PPI_BASE: u32 = 16;
/// The EL1 virtual timer's PPI (level-sensitive).
pub const VIRTUAL_TIMER_PPI: u32 = 27;

/// Size of the redistributor region for `nr_vcpus` vCPUs.
pub const fn gicr_size(nr_vcpus: usize) -> u64 {
    nr_vcpus as u64 * GICR_STRIDE
}

/// What can go wrong in the vGIC. Guest-caused errors ask the kernel to inject an abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VGicError {
    /// An MMIO access of a size or alignment the register does not support.
    BadAccess,
    /// An offset beyond the frame, or a vCPU or INTID the VM does not have.
    OutOfRange,
    /// A configuration the vGIC cannot build (vCPU count, SPI count, list-register count).
    BadConfig,
}

/// One vCPU's private part: its redistributor (SGIs, PPIs, GICR_WAKER) and its list registers.
#[derive(Clone, Debug)]
struct VCpuGic {
    /// INTIDs 0..32: SGIs then PPIs.
    private: [Irq; 32],
    /// A bit per INTID of `private` that may be pending, active or in a list register: every
    /// change goes through [`VGic::irq_mut`], which sets the bit; scans clear it once idle.
    busy: u32,
    /// GICR_WAKER.ProcessorSleep (ChildrenAsleep reads the same).
    processor_sleep: bool,
    lrs: LrBook,
}

/// One shared peripheral interrupt and its GICD_IROUTER.
#[derive(Clone, Debug)]
struct Spi {
    irq: Irq,
    /// `GICD_IROUTER<n>` as the guest wrote it (RES0 bits clear).
    router: u64,
    /// The vCPU `router` selects, if it exists.
    target: Option<usize>,
}

/// The writable bits of `GICD_IROUTER<n>`: Aff0..Aff2, Interrupt_Routing_Mode, Aff3.
const ROUTER_MASK: u64 = 0x0000_00FF_80FF_FFFF;
const ROUTER_IRM: u64 = 1 << 31;

/// The virtual GICv3 of one VM. See the module docs.
#[derive(Clone, Debug)]
pub struct VGic {
    vcpus: Vec<VCpuGic>,
    spis: Vec<Spi>,
    /// The same as `VCpuGic::busy` for the SPIs (bit n of word w: SPI_BASE + 64 w + n).
    spis_busy: [u64; SPI_BUSY_WORDS],
    /// Bit w is set iff `spis_busy[w]` is not 0: the flush visits only those words.
    spis_busy_words: u32,
    /// GICD_CTLR.EnableGrp0.
    group0_enabled: bool,
    /// GICD_CTLR.EnableGrp1 (EnableGrp1NS; one security state).
    group1_enabled: bool,
}

impl VGic {
    /// A vGIC for `nr_vcpus` vCPUs (1..=[`MAX_VCPUS`]) and `nr_spis` SPIs (a multiple of 32,
    /// at most [`MAX_NR_SPIS`]), in its reset state: everything disabled and idle, Group 1,
    /// SPIs level-sensitive and routed to vCPU 0.
    pub fn new(nr_vcpus: usize, nr_spis: u32) -> Result<VGic, VGicError> {
        if nr_vcpus == 0 || nr_vcpus > MAX_VCPUS || !nr_spis.is_multiple_of(32) || nr_spis > MAX_NR_SPIS {
            return Err(VGicError::BadConfig);
        }
        let mut private = [Irq::ppi(); 32];
        for sgi in &mut private[..PPI_BASE as usize] {
            *sgi = Irq::sgi();
        }
        let vcpu = VCpuGic { private, busy: 0, processor_sleep: true, lrs: LrBook::new() };
        let spi = Spi { irq: Irq::spi(), router: 0, target: Some(0) };
        Ok(VGic {
            vcpus: alloc::vec![vcpu; nr_vcpus],
            spis: alloc::vec![spi; nr_spis as usize],
            spis_busy: [0; SPI_BUSY_WORDS],
            spis_busy_words: 0,
            group0_enabled: false,
            group1_enabled: false,
        })
    }

    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> usize {
        self.vcpus.len()
    }

    /// Number of SPIs.
    pub fn nr_spis(&self) -> u32 {
        self.spis.len() as u32
    }

    /// One past the highest implemented INTID.
    fn nr_irqs(&self) -> u32 {
        SPI_BASE + self.nr_spis()
    }

    /// Names interrupt `intid` as seen from `vcpu` (whose SGIs/PPIs INTIDs below 32 mean), if
    /// both exist.
    fn irq_ref(&self, vcpu: usize, intid: u32) -> Option<IrqRef> {
        if intid < SPI_BASE {
            (vcpu < self.vcpus.len()).then_some(IrqRef::Private { vcpu, intid })
        } else {
            (intid < self.nr_irqs()).then_some(IrqRef::Spi { intid })
        }
    }

    fn irq(&self, r: IrqRef) -> &Irq {
        match r {
            IrqRef::Private { vcpu, intid } => &self.vcpus[vcpu].private[intid as usize],
            IrqRef::Spi { intid } => &self.spis[(intid - SPI_BASE) as usize].irq,
        }
    }

    /// The interrupt, to change: it is marked busy (see `VCpuGic::busy`).
    fn irq_mut(&mut self, r: IrqRef) -> &mut Irq {
        match r {
            IrqRef::Private { vcpu, intid } => {
                let v = &mut self.vcpus[vcpu];
                v.busy |= 1 << intid;
                &mut v.private[intid as usize]
            }
            IrqRef::Spi { intid } => {
                let n = (intid - SPI_BASE) as usize;
                self.spis_busy[n / 64] |= 1 << (n % 64);
                self.spis_busy_words |= 1 << (n / 64);
                &mut self.spis[n].irq
            }
        }
    }

    /// Clears the busy bit of every interrupt `vcpu` can receive that is idle: not pending, not
    /// active, in no list register (nothing can change that without [`VGic::irq_mut`]).
    fn prune_busy(&mut self, vcpu: usize) {
        let idle = |irq: &Irq| !irq.is_pending() && !irq.active && irq.lr.is_none();
        let v = &mut self.vcpus[vcpu];
        for intid in bits32(v.busy) {
            if idle(&v.private[intid]) {
                v.busy &= !(1 << intid);
            }
        }
        for w in bits32(self.spis_busy_words) {
            for n in bits64(self.spis_busy[w]) {
                let spi = &self.spis[w * 64 + n];
                if spi.target == Some(vcpu) && idle(&spi.irq) {
                    self.spis_busy[w] &= !(1 << n);
                }
            }
            if self.spis_busy[w] == 0 {
                self.spis_busy_words &= !(1 << w);
            }
        }
    }

    /// The vCPU the interrupt is delivered to: its own for SGIs/PPIs, the routed one for SPIs
    /// (none while GICD_IROUTER names a vCPU that does not exist).
    fn target(&self, r: IrqRef) -> Option<usize> {
        match r {
            IrqRef::Private { vcpu, .. } => Some(vcpu),
            IrqRef::Spi { intid } => self.spis[(intid - SPI_BASE) as usize].target,
        }
    }

    /// The vCPU a GICD_IROUTER value selects: vCPU 0 for "any" (1 of N), else the vCPU whose
    /// affinity matches, if there is one.
    fn route_target(&self, router: u64) -> Option<usize> {
        if router & ROUTER_IRM != 0 {
            return Some(0);
        }
        let aff0 = (router & 0xFF) as usize;
        let upper = router & 0x0000_00FF_00FF_FF00;
        (upper == 0 && aff0 < self.vcpus.len()).then_some(aff0)
    }

    /// GICD_CTLR enables the interrupt's group.
    fn group_enabled(&self, group1: bool) -> bool {
        if group1 { self.group1_enabled } else { self.group0_enabled }
    }

    /// The interrupt would be signalled to its target's CPU interface: pending, enabled, its
    /// group enabled, and not active (an active interrupt's pending part waits for its
    /// deactivation).
    fn signalable(&self, irq: &Irq) -> bool {
        irq.is_pending() && irq.enabled && !irq.active && self.group_enabled(irq.group1)
    }

    /// Applies `change` to one interrupt, then marks the vCPUs whose list registers it may
    /// affect for a `flush`, and returns the vCPUs to kick: its target if it became
    /// signalable, and the vCPU whose list registers hold it if it changed at all.
    fn update(&mut self, r: IrqRef, change: impl FnOnce(&mut Irq)) -> Kicks {
        let before = *self.irq(r);
        let mut after = before;
        change(&mut after);
        if after == before {
            return Kicks::NONE;
        }
        *self.irq_mut(r) = after;
        let mut kicks = Kicks::NONE;
        if let Some(target) = self.target(r) {
            self.vcpus[target].lrs.needs_flush = true;
            if self.signalable(&after) && !self.signalable(&before) {
                kicks.add(target);
            }
        }
        if let Some(slot) = after.lr {
            self.vcpus[slot.vcpu].lrs.needs_flush = true;
            kicks.add(slot.vcpu);
        }
        kicks
    }

    /// After a change that may affect every vCPU (GICD_CTLR): marks all for a `flush` and
    /// kicks those with something deliverable.
    fn update_all(&mut self) -> Kicks {
        let mut kicks = Kicks::NONE;
        for vcpu in 0..self.vcpus.len() {
            self.vcpus[vcpu].lrs.needs_flush = true;
            if self.vcpus[vcpu].lrs.live != 0 || self.has_deliverable(vcpu) {
                kicks.add(vcpu);
            }
        }
        kicks
    }

    /// The interrupts a vCPU can receive that may be pending or active (the busy ones), in
    /// INTID order: its SGIs and PPIs, then the SPIs routed to it. Idle ones cannot be
    /// delivered, so a scan for delivery skips them.
    fn irqs_for(&self, vcpu: usize) -> impl Iterator<Item = IrqRef> + '_ {
        let private = bits32(self.vcpus[vcpu].busy).map(move |intid| IrqRef::Private { vcpu, intid: intid as u32 });
        let shared = bits32(self.spis_busy_words)
            .flat_map(move |w| bits64(self.spis_busy[w]).map(move |n| w * 64 + n))
            .filter(move |&n| self.spis[n].target == Some(vcpu))
            .map(|n| IrqRef::Spi { intid: SPI_BASE + n as u32 });
        private.chain(shared)
    }
}

/// Words of `VGic::spis_busy`.
const SPI_BUSY_WORDS: usize = MAX_NR_SPIS.div_ceil(64) as usize;
const _: () = assert!(SPI_BUSY_WORDS <= 32, "spis_busy_words has a bit per word");

/// The set bits of `mask`, lowest first.
fn bits32(mask: u32) -> impl Iterator<Item = usize> {
    bits64(u64::from(mask))
}

/// The set bits of `mask`, lowest first.
pub(super) fn bits64(mut mask: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let n = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(n)
    })
}
