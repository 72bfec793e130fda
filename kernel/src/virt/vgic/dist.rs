//! GICD emulation: the guest's accesses to the distributor frame.
//!
//! Each access is decoded into a [`GicdReg`] (checking size, alignment and frame bounds) and
//! only then performed. Under affinity routing the distributor's fields for SGIs and PPIs
//! (INTIDs 0..32) are RAZ/WI, as are those of SPIs the VM does not have, reserved offsets,
//! the GICv2 legacy registers (ITARGETSR, SGIR, C/SPENDSGIR), NSACR and, with one security
//! state (DS = 1), IGRPMODR. A read never changes state.

use super::access::{ANY, Access, BYTE_OR_WORD, Part, WORD, WORD_OR_DOUBLE};
use super::intid_regs::BitReg;
use super::{GICD_SIZE, Kicks, ROUTER_MASK, SPI_BASE, VGic, VGicError};

const CTLR_ENABLE_GRP0: u64 = 1 << 0;
const CTLR_ENABLE_GRP1: u64 = 1 << 1;
const CTLR_ARE: u64 = 1 << 4;
const CTLR_DS: u64 = 1 << 6;

/// GICD_TYPER.IDbits: 10 INTID bits, encoded as bits - 1.
const TYPER_IDBITS: u64 = 9 << 19;

/// GICD_IIDR and GICR_IIDR: ProductID 'K' (Keel), Arm's JEP106 implementer code, revision 0.
pub(super) const IIDR: u64 = (0x4B << 24) | 0x43B;
/// GICD_PIDR2 and GICR_PIDR2: ArchRev 3 (GICv3) in bits \[7:4\], JEP106 bits 0xB.
pub(super) const PIDR2: u64 = 0x3B;

/// Offset of `GICD_IROUTER<0>`; SPI `n`'s router is at `IROUTER + 8n`.
const IROUTER: u64 = 0x6000;

/// A decoded GICD access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GicdReg {
    Ctlr,
    Typer,
    Iidr,
    Typer2,
    Pidr2,
    /// A one-bit-per-interrupt register covering INTIDs `first..first + 32`.
    Bits {
        reg: BitReg,
        first: u32,
    },
    /// IPRIORITYR bytes for INTIDs `first..first + count`.
    Priority {
        first: u32,
        count: u8,
    },
    /// ICFGR for INTIDs `first..first + 16`.
    Config {
        first: u32,
    },
    /// `GICD_IROUTER<intid>`: the whole register or one 32-bit half.
    Router {
        intid: u32,
        part: Part,
    },
    /// Reads as zero, ignores writes.
    RazWi,
}

impl GicdReg {
    /// Decodes an access at `offset` of `size` bytes for a distributor with `nr_irqs` INTIDs.
    // Inlined into its two callers: a guest's vGIC read is a fast exit (`vgic_dist_read`).
    #[inline(always)]
    fn decode(offset: u64, size: u8, nr_irqs: u32) -> Result<GicdReg, VGicError> {
        let access = Access::decode(offset, size, GICD_SIZE)?;
        // Registers of SGIs/PPIs (RAZ/WI under affinity routing) and of absent SPIs.
        let spi_or_razwi = |first: u32, reg: GicdReg| {
            if (SPI_BASE..nr_irqs).contains(&first) { reg } else { GicdReg::RazWi }
        };
        let reg = match offset {
            0x0000 => access.require(WORD).map(|_| GicdReg::Ctlr)?,
            0x0004 => access.require(WORD).map(|_| GicdReg::Typer)?,
            0x0008 => access.require(WORD).map(|_| GicdReg::Iidr)?,
            0x000C => access.require(WORD).map(|_| GicdReg::Typer2)?,
            0x0080..0x0400 => {
                access.require(WORD)?;
                let (reg, word) = BitReg::at(offset).ok_or(VGicError::BadAccess)?;
                let first = word * 32;
                spi_or_razwi(first, GicdReg::Bits { reg, first })
            }
            0x0400..0x0800 => {
                access.require(BYTE_OR_WORD)?;
                let first = (offset - 0x0400) as u32;
                spi_or_razwi(first, GicdReg::Priority { first, count: size })
            }
            0x0800..0x0C00 => access.require(BYTE_OR_WORD).map(|_| GicdReg::RazWi)?, // ITARGETSR
            0x0C00..0x0D00 => {
                access.require(WORD)?;
                let first = (offset - 0x0C00) as u32 * 4;
                spi_or_razwi(first, GicdReg::Config { first })
            }
            0x0D00..0x0F00 => access.require(WORD).map(|_| GicdReg::RazWi)?, // IGRPMODR, NSACR
            0x0F00 => access.require(WORD).map(|_| GicdReg::RazWi)?,         // SGIR
            0x0F10..0x0F30 => access.require(BYTE_OR_WORD).map(|_| GicdReg::RazWi)?, // C/SPENDSGIR
            IROUTER..0x8000 => {
                access.require(WORD_OR_DOUBLE)?;
                let intid = ((offset - IROUTER) / 8) as u32;
                spi_or_razwi(intid, GicdReg::Router { intid, part: Part::of(access) })
            }
            0xFFD0..0x1_0000 => {
                access.require(WORD)?;
                if offset == 0xFFE8 { GicdReg::Pidr2 } else { GicdReg::RazWi }
            }
            _ => access.require(ANY).map(|_| GicdReg::RazWi)?,
        };
        Ok(reg)
    }
}

impl VGic {
    /// Emulates a guest read of `size` bytes at `offset` in GICD, by vCPU `vcpu`.
    pub fn dist_read(&self, vcpu: usize, offset: u64, size: u8) -> Result<u64, VGicError> {
        if vcpu >= self.vcpus.len() {
            return Err(VGicError::OutOfRange);
        }
        let value = match GicdReg::decode(offset, size, self.nr_irqs())? {
            GicdReg::Ctlr => {
                let mut ctlr = CTLR_ARE | CTLR_DS;
                if self.group0_enabled {
                    ctlr |= CTLR_ENABLE_GRP0;
                }
                if self.group1_enabled {
                    ctlr |= CTLR_ENABLE_GRP1;
                }
                ctlr
            }
            GicdReg::Typer => self.gicd_typer(),
            GicdReg::Iidr => IIDR,
            GicdReg::Typer2 | GicdReg::RazWi => 0,
            GicdReg::Pidr2 => PIDR2,
            GicdReg::Bits { reg, first } => u64::from(self.read_bits(vcpu, reg, first)),
            GicdReg::Priority { first, count } => self.read_priorities(vcpu, first, count),
            GicdReg::Config { first } => u64::from(self.read_config(vcpu, first)),
            GicdReg::Router { intid, part } => part.read(self.spis[(intid - SPI_BASE) as usize].router),
        };
        Ok(value)
    }

    /// Emulates a guest write of `size` bytes of `value` at `offset` in GICD, by vCPU `vcpu`.
    /// Returns the vCPUs to kick.
    pub fn dist_write(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) -> Result<Kicks, VGicError> {
        if vcpu >= self.vcpus.len() {
            return Err(VGicError::OutOfRange);
        }
        let kicks = match GicdReg::decode(offset, size, self.nr_irqs())? {
            GicdReg::Ctlr => {
                let group0 = value & CTLR_ENABLE_GRP0 != 0;
                let group1 = value & CTLR_ENABLE_GRP1 != 0;
                if (group0, group1) == (self.group0_enabled, self.group1_enabled) {
                    Kicks::NONE
                } else {
                    self.group0_enabled = group0;
                    self.group1_enabled = group1;
                    self.update_all()
                }
            }
            GicdReg::Typer | GicdReg::Iidr | GicdReg::Typer2 | GicdReg::Pidr2 | GicdReg::RazWi => Kicks::NONE,
            GicdReg::Bits { reg, first } => self.write_bits(vcpu, reg, first, value as u32),
            GicdReg::Priority { first, count } => self.write_priorities(vcpu, first, count, value),
            GicdReg::Config { first } => self.write_config(vcpu, first, value as u32),
            GicdReg::Router { intid, part } => {
                let router = part.write(self.spis[(intid - SPI_BASE) as usize].router, value);
                self.set_router(intid, router & ROUTER_MASK)
            }
        };
        Ok(kicks)
    }

    /// GICD_TYPER: ITLinesNumber, CPUNumber, IDbits; no LPIs, MBIS, security extension,
    /// Aff3 or range selector support.
    fn gicd_typer(&self) -> u64 {
        let it_lines = u64::from(self.nr_spis() / 32);
        let cpu_number = (self.vcpus.len() as u64 - 1) << 5;
        it_lines | cpu_number | TYPER_IDBITS
    }

    /// Sets SPI `intid`'s GICD_IROUTER. An interrupt already in some vCPU's list registers
    /// stays there until the guest is done with it (that vCPU is kicked to give it up early if
    /// it is only pending); the new target is kicked if the interrupt is deliverable.
    fn set_router(&mut self, intid: u32, router: u64) -> Kicks {
        let target = self.route_target(router);
        let spi = &mut self.spis[(intid - SPI_BASE) as usize];
        spi.router = router;
        if spi.target == target {
            return Kicks::NONE;
        }
        let old_target = spi.target;
        spi.target = target;
        let irq = spi.irq;
        let mut kicks = Kicks::NONE;
        for vcpu in [old_target, target].into_iter().flatten() {
            self.vcpus[vcpu].lrs.needs_flush = true;
        }
        if let Some(target) = target
            && self.signalable(&irq)
            && irq.lr.is_none()
        {
            kicks.add(target);
        }
        if let Some(slot) = irq.lr {
            self.vcpus[slot.vcpu].lrs.needs_flush = true;
            kicks.add(slot.vcpu);
        }
        kicks
    }
}
