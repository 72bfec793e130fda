//! The state of one virtual interrupt, as the distributor or a redistributor holds it.
//!
//! An [`Irq`] is plain data: configuration (enable, group, priority, trigger), the input line,
//! the pending latch, the active bit, and which list register (if any) currently holds a copy.
//! It knows nothing of vCPUs or routing; [`super::VGic`] decides where it is delivered.
//!
//! Pending has two sources, as in the GIC architecture: the latch (set by an edge, an SGI or a
//! write to ISPENDR; cleared when the guest acknowledges the interrupt or by ICPENDR) and, for a
//! level-sensitive interrupt only, the input line. So a level interrupt whose line is still high
//! after the guest deactivated it is pending again without anyone re-raising it.
//!
//! Invariants:
//! - `priority` only has the implemented bits ([`PRIORITY_MASK`]) set;
//! - `repend` implies `latch` and that an LR holds the interrupt pending (`lr.holds_pending`):
//!   it records an edge that arrived after the LR copy was made, which the guest's acknowledge
//!   of that copy must not consume.

/// The priority bits the model implements: the top five, like the virtual CPU interface's
/// minimum (ICH_VTR_EL2.PRIbits = 4) and like KVM. IPRIORITYR reads back with the low three
/// bits clear.
pub const PRIORITY_MASK: u8 = 0xF8;

/// Where a list register copy of an interrupt lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LrSlot {
    /// The vCPU whose list registers hold it.
    pub vcpu: usize,
    /// The list register index (below [`super::lr::MAX_LIST_REGS`]).
    pub index: usize,
    /// The list register's state, as last written or read back, includes pending.
    pub holds_pending: bool,
}

/// One interrupt's architectural state plus its list-register residency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Irq {
    /// ISENABLER / ICENABLER.
    pub enabled: bool,
    /// IGROUPR: true = Group 1 (what Linux uses), false = Group 0.
    pub group1: bool,
    /// ICFGR: true = edge-triggered, false = level-sensitive. SGIs are always edge.
    pub edge: bool,
    /// IPRIORITYR, masked to [`PRIORITY_MASK`]; lower value = higher priority.
    pub priority: u8,
    /// The pending latch (edge, SGI, ISPENDR).
    pub latch: bool,
    /// The latch was set again while an LR held this interrupt pending (see module docs).
    pub repend: bool,
    /// The input line as a device backend last drove it.
    pub line: bool,
    /// Active: the guest acknowledged it and has not deactivated it yet.
    pub active: bool,
    /// The list register holding a copy of it, if any.
    pub lr: Option<LrSlot>,
}

impl Irq {
    const RESET: Irq = Irq {
        enabled: false,
        // GICv3 guests that never write IGROUPR get Group 1, as under KVM.
        group1: true,
        edge: false,
        priority: 0,
        latch: false,
        repend: false,
        line: false,
        active: false,
        lr: None,
    };

    /// A software-generated interrupt at reset: edge-triggered and enabled (as KVM does; Linux
    /// enables SGIs itself anyway).
    pub const fn sgi() -> Irq {
        Irq { edge: true, enabled: true, ..Irq::RESET }
    }

    /// A private peripheral interrupt at reset: level-sensitive, disabled.
    pub const fn ppi() -> Irq {
        Irq::RESET
    }

    /// A shared peripheral interrupt at reset: level-sensitive, disabled.
    pub const fn spi() -> Irq {
        Irq::RESET
    }

    /// Level-sensitive (the complement of `edge`).
    pub const fn is_level(&self) -> bool {
        !self.edge
    }

    /// Pending: latched, or level-sensitive with the line high.
    pub const fn is_pending(&self) -> bool {
        self.latch || (self.is_level() && self.line)
    }

    /// Latches pending (an edge, an SGI, ISPENDR). If an LR already holds it pending, notes that
    /// this is a new event the guest's acknowledge of that copy must not consume.
    pub fn pend(&mut self) {
        self.latch = true;
        if self.lr.is_some_and(|slot| slot.holds_pending) {
            self.repend = true;
        }
    }

    /// Clears the latch (ICPENDR). A level interrupt whose line is high stays pending.
    pub fn unpend(&mut self) {
        self.latch = false;
        self.repend = false;
    }

    /// Drives the input line. For an edge-triggered interrupt a rising edge latches pending;
    /// for a level-sensitive one the line itself is the pending state.
    pub fn set_line(&mut self, level: bool) {
        if self.edge && level && !self.line {
            self.pend();
        }
        self.line = level;
    }

    /// Sets the priority, keeping only the implemented bits.
    pub fn set_priority(&mut self, priority: u8) {
        self.priority = priority & PRIORITY_MASK;
    }

    /// The guest acknowledged the LR copy (pending consumed, now active): the latch keeps only
    /// events that arrived after the copy was made.
    pub fn acknowledge(&mut self) {
        self.latch = self.repend;
        self.repend = false;
    }
}

/// Names one interrupt of a VM. Only [`super::VGic::irq_ref`] makes one, after checking that
/// the vCPU and INTID exist, so holding an `IrqRef` means it can be looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IrqRef {
    /// An SGI (0..16) or PPI (16..32) of one vCPU.
    Private { vcpu: usize, intid: u32 },
    /// An SPI (32..32+nr_spis).
    Spi { intid: u32 },
}

impl IrqRef {
    /// The interrupt's INTID.
    pub const fn intid(self) -> u32 {
        match self {
            IrqRef::Private { intid, .. } | IrqRef::Spi { intid } => intid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_pending_follows_line_and_latch() {
        let mut irq = Irq::spi();
        assert!(!irq.is_pending());
        irq.set_line(true);
        assert!(irq.is_pending() && !irq.latch);
        irq.set_line(false);
        assert!(!irq.is_pending());
        irq.pend();
        irq.set_line(false);
        assert!(irq.is_pending(), "ISPENDR latch survives a low line");
    }

    #[test]
    fn edge_latches_on_rising_edge_only() {
        let mut irq = Irq::spi();
        irq.edge = true;
        irq.set_line(true);
        assert!(irq.latch);
        irq.unpend();
        irq.set_line(true);
        assert!(!irq.is_pending(), "a line held high is not a new edge");
        irq.set_line(false);
        assert!(!irq.is_pending());
    }

    #[test]
    fn repend_only_when_lr_holds_pending() {
        let mut irq = Irq::sgi();
        irq.pend();
        assert!(!irq.repend);
        irq.lr = Some(LrSlot { vcpu: 0, index: 0, holds_pending: true });
        irq.pend();
        assert!(irq.repend);
        irq.acknowledge();
        assert!(irq.latch && !irq.repend, "the second edge survives the acknowledge");
        irq.acknowledge();
        assert!(!irq.latch);
    }

    #[test]
    fn priority_keeps_implemented_bits() {
        let mut irq = Irq::ppi();
        irq.set_priority(0xFF);
        assert_eq!(irq.priority, 0xF8);
    }
}
