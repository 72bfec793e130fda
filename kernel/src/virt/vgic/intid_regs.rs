//! Register families with one field per interrupt, which GICD (for SPIs) and each GICR
//! SGI_base frame (for that vCPU's SGIs and PPIs) lay out the same way: IGROUPR,
//! IS/ICENABLER, IS/ICPENDR, IS/ICACTIVER (one bit each), IPRIORITYR (one byte each) and ICFGR
//! (two bits each).
//!
//! Callers decode the access first and pass the first INTID a register covers; fields of
//! interrupts that do not exist read as zero and ignore writes. SGIs are always edge-triggered
//! (their ICFGR field is read-only).

use super::{Kicks, PPI_BASE, VGic};

/// A register family with one bit per interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BitReg {
    /// IGROUPR: 1 = Group 1.
    Group,
    /// ISENABLER: reads enabled, writing 1 enables.
    SetEnable,
    /// ICENABLER: reads enabled, writing 1 disables.
    ClearEnable,
    /// ISPENDR: reads pending, writing 1 latches pending.
    SetPending,
    /// ICPENDR: reads pending, writing 1 clears the latch.
    ClearPending,
    /// ISACTIVER: reads active, writing 1 activates.
    SetActive,
    /// ICACTIVER: reads active, writing 1 deactivates.
    ClearActive,
}

impl BitReg {
    /// The family whose 0x80-byte block starts at `offset & !0x7F` (same offsets in GICD and
    /// SGI_base), and the word index within the block.
    pub fn at(offset: u64) -> Option<(BitReg, u32)> {
        let family = match offset & !0x7F {
            0x080 => BitReg::Group,
            0x100 => BitReg::SetEnable,
            0x180 => BitReg::ClearEnable,
            0x200 => BitReg::SetPending,
            0x280 => BitReg::ClearPending,
            0x300 => BitReg::SetActive,
            0x380 => BitReg::ClearActive,
            _ => return None,
        };
        Some((family, ((offset & 0x7F) / 4) as u32))
    }
}

impl VGic {
    /// The 32 bits of `reg` for INTIDs `first..first + 32`, as seen from `vcpu`.
    pub(super) fn read_bits(&self, vcpu: usize, reg: BitReg, first: u32) -> u32 {
        let mut value = 0;
        for bit in 0..32 {
            let Some(r) = self.irq_ref(vcpu, first + bit) else { continue };
            let irq = self.irq(r);
            let set = match reg {
                BitReg::Group => irq.group1,
                BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
                BitReg::SetPending | BitReg::ClearPending => irq.is_pending(),
                BitReg::SetActive | BitReg::ClearActive => irq.active,
            };
            value |= u32::from(set) << bit;
        }
        value
    }

    /// Writes `value` to `reg` for INTIDs `first..first + 32`, as seen from `vcpu`.
    pub(super) fn write_bits(&mut self, vcpu: usize, reg: BitReg, first: u32, value: u32) -> Kicks {
        let mut kicks = Kicks::NONE;
        for bit in 0..32 {
            let one = value & (1 << bit) != 0;
            if !one && reg != BitReg::Group {
                continue; // writing 0 to a set/clear register does nothing
            }
            let Some(r) = self.irq_ref(vcpu, first + bit) else { continue };
            kicks |= self.update(r, |irq| match reg {
                BitReg::Group => irq.group1 = one,
                BitReg::SetEnable => irq.enabled = true,
                BitReg::ClearEnable => irq.enabled = false,
                BitReg::SetPending => irq.pend(),
                BitReg::ClearPending => irq.unpend(),
                BitReg::SetActive => irq.active = true,
                BitReg::ClearActive => irq.active = false,
            });
        }
        kicks
    }

    /// IPRIORITYR bytes for INTIDs `first..first + count`, little-endian.
    pub(super) fn read_priorities(&self, vcpu: usize, first: u32, count: u8) -> u64 {
        let mut value = 0;
        for i in 0..u32::from(count) {
            if let Some(r) = self.irq_ref(vcpu, first + i) {
                value |= u64::from(self.irq(r).priority) << (8 * i);
            }
        }
        value
    }

    /// Writes IPRIORITYR bytes for INTIDs `first..first + count` from `value`, little-endian.
    pub(super) fn write_priorities(&mut self, vcpu: usize, first: u32, count: u8, value: u64) -> Kicks {
        let mut kicks = Kicks::NONE;
        for i in 0..u32::from(count) {
            let Some(r) = self.irq_ref(vcpu, first + i) else { continue };
            let priority = (value >> (8 * i)) as u8;
            kicks |= self.update(r, |irq| irq.set_priority(priority));
        }
        kicks
    }

    /// ICFGR for INTIDs `first..first + 16`: bit `2i + 1` set = edge-triggered.
    pub(super) fn read_config(&self, vcpu: usize, first: u32) -> u32 {
        let mut value = 0;
        for i in 0..16 {
            if let Some(r) = self.irq_ref(vcpu, first + i) {
                value |= u32::from(self.irq(r).edge) << (2 * i + 1);
            }
        }
        value
    }

    /// Writes ICFGR for INTIDs `first..first + 16`; SGI fields are read-only (edge).
    pub(super) fn write_config(&mut self, vcpu: usize, first: u32, value: u32) -> Kicks {
        let mut kicks = Kicks::NONE;
        for i in 0..16 {
            let intid = first + i;
            if intid < PPI_BASE {
                continue;
            }
            let Some(r) = self.irq_ref(vcpu, intid) else { continue };
            let edge = value & (1 << (2 * i + 1)) != 0;
            kicks |= self.update(r, |irq| irq.edge = edge);
        }
        kicks
    }
}
