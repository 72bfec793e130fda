//! Decoding a guest MMIO access (offset and size) before any register is looked at.
//!
//! An access is 1, 2, 4 or 8 bytes, naturally aligned, inside its frame; anything else is an
//! error the kernel turns into an abort for the guest. Each register then states which of
//! those sizes it accepts ([`Access::require`]).

use super::VGicError;

/// Bit set of access sizes in bytes: bit `n` = `n` bytes.
pub(super) type Sizes = u16;

/// 32-bit access only (most GIC registers).
pub(super) const WORD: Sizes = 1 << 4;
/// Byte or word access (IPRIORITYR, ITARGETSR, SPENDSGIR ...).
pub(super) const BYTE_OR_WORD: Sizes = 1 << 1 | 1 << 4;
/// Word or doubleword access (IROUTER, GICR_TYPER and other 64-bit registers).
pub(super) const WORD_OR_DOUBLE: Sizes = 1 << 4 | 1 << 8;
/// Any valid access (reserved space, RAZ/WI).
pub(super) const ANY: Sizes = 1 << 1 | 1 << 2 | 1 << 4 | 1 << 8;

/// A guest access that is well-formed for a frame of some length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Access {
    /// Byte offset from the frame base.
    pub offset: u64,
    /// Access size in bytes: 1, 2, 4 or 8.
    pub size: u8,
}

impl Access {
    /// Checks that `size` is 1, 2, 4 or 8, `offset` is aligned to it, and the access lies inside
    /// a frame of `frame_len` bytes.
    pub fn decode(offset: u64, size: u8, frame_len: u64) -> Result<Access, VGicError> {
        if !matches!(size, 1 | 2 | 4 | 8) || !offset.is_multiple_of(u64::from(size)) {
            return Err(VGicError::BadAccess);
        }
        if offset >= frame_len || frame_len - offset < u64::from(size) {
            return Err(VGicError::OutOfRange);
        }
        Ok(Access { offset, size })
    }

    /// Fails with [`VGicError::BadAccess`] unless the access size is in `sizes`.
    pub fn require(self, sizes: Sizes) -> Result<Access, VGicError> {
        if sizes & (1 << self.size) != 0 { Ok(self) } else { Err(VGicError::BadAccess) }
    }
}

/// Which part of a 64-bit register (GICD_IROUTER, GICR_TYPER) a word or doubleword access
/// covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Whole,
    Low,
    High,
}

impl Part {
    /// The part an access of `size` bytes at `offset` covers (offset 4 within the register =
    /// the high half).
    pub fn of(access: Access) -> Part {
        match (access.size, access.offset % 8) {
            (8, _) => Part::Whole,
            (_, 0) => Part::Low,
            _ => Part::High,
        }
    }

    /// Reads this part of `register`.
    pub fn read(self, register: u64) -> u64 {
        match self {
            Part::Whole => register,
            Part::Low => register & 0xFFFF_FFFF,
            Part::High => register >> 32,
        }
    }

    /// `register` with this part replaced by `value`.
    pub fn write(self, register: u64, value: u64) -> u64 {
        match self {
            Part::Whole => value,
            Part::Low => (register & !0xFFFF_FFFF) | (value & 0xFFFF_FFFF),
            Part::High => (register & 0xFFFF_FFFF) | (value << 32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_alignment_and_bounds() {
        assert!(Access::decode(0, 4, 0x10000).is_ok());
        assert_eq!(Access::decode(2, 4, 0x10000), Err(VGicError::BadAccess));
        assert_eq!(Access::decode(0, 3, 0x10000), Err(VGicError::BadAccess));
        assert_eq!(Access::decode(0, 16, 0x10000), Err(VGicError::BadAccess));
        assert_eq!(Access::decode(0x10000, 4, 0x10000), Err(VGicError::OutOfRange));
        assert_eq!(Access::decode(u64::MAX - 7, 8, 0x10000), Err(VGicError::OutOfRange));
        let a = Access::decode(8, 8, 0x10000).expect("aligned doubleword inside the frame");
        assert!(a.require(WORD_OR_DOUBLE).is_ok());
        assert_eq!(a.require(WORD), Err(VGicError::BadAccess));
    }
}
