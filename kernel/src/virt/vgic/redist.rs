//! GICR emulation: the guest's accesses to one vCPU's redistributor frames, RD_base (control,
//! identification, GICR_WAKER) and SGI_base at +0x1_0000 (that vCPU's SGIs and PPIs).
//!
//! As in the distributor, an access is decoded into a [`GicrReg`] before it is performed; the
//! LPI registers (no LPIs here), IGRPMODR0 and NSACR (one security state), and reserved
//! offsets are RAZ/WI. Any vCPU may access any vCPU's frames (Linux reads every GICR_TYPER to
//! find its own); SGI/PPI registers always act on the frames' owner, the `target`.

use super::access::{ANY, Access, BYTE_OR_WORD, Part, WORD, WORD_OR_DOUBLE};
use super::dist::{IIDR, PIDR2};
use super::intid_regs::BitReg;
use super::{GICR_SGI_BASE, GICR_STRIDE, Kicks, VGic, VGicError};

const TYPER_LAST: u64 = 1 << 4;
const WAKER_PROCESSOR_SLEEP: u64 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u64 = 1 << 2;

/// A decoded access to one vCPU's redistributor frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GicrReg {
    Ctlr,
    Iidr,
    /// GICR_TYPER: the whole register or one 32-bit half.
    Typer(Part),
    Waker,
    Pidr2,
    /// IGROUPR0, IS/ICENABLER0, IS/ICPENDR0, IS/ICACTIVER0.
    Bits(BitReg),
    /// IPRIORITYR bytes for INTIDs `first..first + count`.
    Priority {
        first: u32,
        count: u8,
    },
    /// ICFGR0 (`first` 0, SGIs, read-only) or ICFGR1 (`first` 16, PPIs).
    Config {
        first: u32,
    },
    RazWi,
}

impl GicrReg {
    fn decode(offset: u64, size: u8) -> Result<GicrReg, VGicError> {
        let access = Access::decode(offset, size, GICR_STRIDE)?;
        if offset >= GICR_SGI_BASE {
            return Self::decode_sgi_base(access, offset - GICR_SGI_BASE);
        }
        let reg = match offset {
            0x0000 => access.require(WORD).map(|_| GicrReg::Ctlr)?,
            0x0004 => access.require(WORD).map(|_| GicrReg::Iidr)?,
            0x0008 => access.require(WORD_OR_DOUBLE).map(|a| GicrReg::Typer(Part::of(a)))?,
            0x000C => access.require(WORD).map(|a| GicrReg::Typer(Part::of(a)))?,
            0x0014 => access.require(WORD).map(|_| GicrReg::Waker)?,
            0xFFD0..0x1_0000 => {
                access.require(WORD)?;
                if offset == 0xFFE8 { GicrReg::Pidr2 } else { GicrReg::RazWi }
            }
            // STATUSR, the LPI registers (PROPBASER, PENDBASER, ...) and reserved space.
            _ => access.require(ANY).map(|_| GicrReg::RazWi)?,
        };
        Ok(reg)
    }

    fn decode_sgi_base(access: Access, offset: u64) -> Result<GicrReg, VGicError> {
        let reg = match offset {
            0x0080..0x0400 => {
                access.require(WORD)?;
                match BitReg::at(offset) {
                    // Only word 0 exists: no extended PPI range.
                    Some((reg, 0)) => GicrReg::Bits(reg),
                    _ => GicrReg::RazWi,
                }
            }
            0x0400..0x0420 => {
                access.require(BYTE_OR_WORD)?;
                GicrReg::Priority { first: (offset - 0x0400) as u32, count: access.size }
            }
            0x0C00 | 0x0C04 => {
                access.require(WORD)?;
                GicrReg::Config { first: (offset - 0x0C00) as u32 * 4 }
            }
            0x0D00 | 0x0E00 => access.require(WORD).map(|_| GicrReg::RazWi)?, // IGRPMODR0, NSACR
            _ => access.require(ANY).map(|_| GicrReg::RazWi)?,
        };
        Ok(reg)
    }
}

impl VGic {
    /// Emulates a read by vCPU `vcpu` of `size` bytes at `offset` in vCPU `target`'s
    /// redistributor frames (`offset` < [`GICR_STRIDE`]).
    pub fn redist_read(&self, vcpu: usize, target: usize, offset: u64, size: u8) -> Result<u64, VGicError> {
        if vcpu >= self.vcpus.len() || target >= self.vcpus.len() {
            return Err(VGicError::OutOfRange);
        }
        let value = match GicrReg::decode(offset, size)? {
            GicrReg::Ctlr | GicrReg::RazWi => 0,
            GicrReg::Iidr => IIDR,
            GicrReg::Typer(part) => part.read(self.gicr_typer(target)),
            GicrReg::Waker => {
                if self.vcpus[target].processor_sleep {
                    WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
                } else {
                    0
                }
            }
            GicrReg::Pidr2 => PIDR2,
            GicrReg::Bits(reg) => u64::from(self.read_bits(target, reg, 0)),
            GicrReg::Priority { first, count } => self.read_priorities(target, first, count),
            GicrReg::Config { first } => u64::from(self.read_config(target, first)),
        };
        Ok(value)
    }

    /// Emulates a write by vCPU `vcpu` of `size` bytes of `value` at `offset` in vCPU
    /// `target`'s redistributor frames. Returns the vCPUs to kick.
    pub fn redist_write(
        &mut self,
        vcpu: usize,
        target: usize,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Kicks, VGicError> {
        if vcpu >= self.vcpus.len() || target >= self.vcpus.len() {
            return Err(VGicError::OutOfRange);
        }
        let kicks = match GicrReg::decode(offset, size)? {
            GicrReg::Ctlr | GicrReg::Iidr | GicrReg::Typer(_) | GicrReg::Pidr2 | GicrReg::RazWi => Kicks::NONE,
            GicrReg::Waker => {
                // Sleep is recorded for the guest to read back; it does not gate delivery.
                self.vcpus[target].processor_sleep = value & WAKER_PROCESSOR_SLEEP != 0;
                Kicks::NONE
            }
            GicrReg::Bits(reg) => self.write_bits(target, reg, 0, value as u32),
            GicrReg::Priority { first, count } => self.write_priorities(target, first, count, value),
            GicrReg::Config { first } => self.write_config(target, first, value as u32),
        };
        Ok(kicks)
    }

    /// GICR_TYPER of vCPU `target`: affinity 0.0.0.`target`, processor number `target`, Last on
    /// the last vCPU; no physical or virtual LPIs, no DirectLPI.
    fn gicr_typer(&self, target: usize) -> u64 {
        let mut typer = (target as u64) << 32 | (target as u64) << 8;
        if target + 1 == self.vcpus.len() {
            typer |= TYPER_LAST;
        }
        typer
    }
}
