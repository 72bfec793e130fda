//! Interrupts arriving from outside the guest's GIC registers: device backends driving SPI and
//! PPI lines (a virtio device, the PL011, the virtual timer) and the guest's SGI writes to
//! ICC_SGI1R_EL1, which trap to the kernel.
//!
//! A line is level-sensitive or edge-triggered as the guest configured it in ICFGR: a
//! level-sensitive interrupt is pending while its line is high; an edge-triggered one latches
//! pending on a rising edge. Each call returns the vCPUs to kick.

use super::{Kicks, PPI_BASE, SPI_BASE, VGic, VGicError};

const SGI1R_TARGET_LIST: u64 = 0xFFFF;
const SGI1R_AFF1_SHIFT: u32 = 16;
const SGI1R_INTID_SHIFT: u32 = 24;
const SGI1R_AFF2_SHIFT: u32 = 32;
const SGI1R_IRM: u64 = 1 << 40;
const SGI1R_RS_SHIFT: u32 = 44;
const SGI1R_AFF3_SHIFT: u32 = 48;

/// The vCPUs a decoded ICC_SGI1R_EL1 write targets, and the SGI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgiRequest {
    /// The SGI's INTID (0..16).
    pub intid: u32,
    /// Targeted vCPUs that exist.
    pub targets: Kicks,
}

impl SgiRequest {
    /// Decodes an ICC_SGI1R_EL1 value written by vCPU `from` in a VM of `nr_vcpus` vCPUs.
    /// IRM = 1 targets every vCPU but the sender. Otherwise the targets are Aff3.Aff2.Aff1 with
    /// Aff0 = RS * 16 + each TargetList bit; since vCPU `i` has affinity 0.0.0.`i`, only
    /// Aff3 = Aff2 = Aff1 = RS = 0 names vCPUs, and bits for absent vCPUs are ignored.
    pub fn decode(from: usize, nr_vcpus: usize, sgi1r: u64) -> SgiRequest {
        let intid = ((sgi1r >> SGI1R_INTID_SHIFT) & 0xF) as u32;
        let all = (1u16 << nr_vcpus) - 1;
        let targets = if sgi1r & SGI1R_IRM != 0 {
            all & !(1u16.checked_shl(from as u32).unwrap_or(0))
        } else {
            let aff1 = (sgi1r >> SGI1R_AFF1_SHIFT) & 0xFF;
            let aff2 = (sgi1r >> SGI1R_AFF2_SHIFT) & 0xFF;
            let aff3 = (sgi1r >> SGI1R_AFF3_SHIFT) & 0xFF;
            let rs = (sgi1r >> SGI1R_RS_SHIFT) & 0xF;
            if aff1 | aff2 | aff3 | rs == 0 { (sgi1r & SGI1R_TARGET_LIST) as u16 & all } else { 0 }
        };
        SgiRequest { intid, targets: Kicks::from_bits(targets as u8) }
    }
}

impl VGic {
    /// Drives SPI `intid`'s line (a device backend raising or lowering its interrupt).
    pub fn set_spi_level(&mut self, intid: u32, level: bool) -> Result<Kicks, VGicError> {
        let r = self.spi_ref(intid)?;
        Ok(self.update(r, |irq| irq.set_line(level)))
    }

    /// Latches SPI `intid` pending, as an edge on its line would (e.g. an MSI-like doorbell).
    pub fn trigger_spi_edge(&mut self, intid: u32) -> Result<Kicks, VGicError> {
        let r = self.spi_ref(intid)?;
        Ok(self.update(r, |irq| irq.pend()))
    }

    /// Drives PPI `intid` (16..32) of vCPU `vcpu`, e.g. the virtual timer's PPI 27.
    pub fn set_ppi_level(&mut self, vcpu: usize, intid: u32, level: bool) -> Result<Kicks, VGicError> {
        if !(PPI_BASE..SPI_BASE).contains(&intid) {
            return Err(VGicError::OutOfRange);
        }
        let r = self.irq_ref(vcpu, intid).ok_or(VGicError::OutOfRange)?;
        Ok(self.update(r, |irq| irq.set_line(level)))
    }

    /// vCPU `from` wrote `sgi1r` to ICC_SGI1R_EL1: latches the SGI pending on each target
    /// ([`SgiRequest::decode`]). Writes naming no existing vCPU do nothing.
    pub fn send_sgi(&mut self, from: usize, sgi1r: u64) -> Kicks {
        let request = SgiRequest::decode(from, self.vcpus.len(), sgi1r);
        let mut kicks = Kicks::NONE;
        for vcpu in request.targets.iter() {
            if let Some(r) = self.irq_ref(vcpu, request.intid) {
                kicks |= self.update(r, |irq| irq.pend());
            }
        }
        kicks
    }

    fn spi_ref(&self, intid: u32) -> Result<super::IrqRef, VGicError> {
        if intid < SPI_BASE {
            return Err(VGicError::OutOfRange);
        }
        self.irq_ref(0, intid).ok_or(VGicError::OutOfRange)
    }
}
