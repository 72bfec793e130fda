//! Guest memory as a backend sees it: byte ranges of guest physical addresses, every access
//! checked to lie inside the RAM the backend was given.
//!
//! Keel's backends map the guest RAM PMOs they are given by capability into their own address
//! space; [`Ram`] is that mapping seen as a slice (or, in tests, a plain vector).

use core::fmt;

/// An access to guest memory outside the guest's RAM (or wrapping around the address space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemError {
    /// Guest physical address of the access.
    pub addr: u64,
    /// Its length in bytes.
    pub len: u64,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes at guest address {:#x} are outside guest RAM", self.len, self.addr)
    }
}

/// Reads and writes of guest physical memory.
pub trait GuestMemory {
    /// Copies `out.len()` bytes from guest address `addr`.
    fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), MemError>;
    /// Copies `data` to guest address `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError>;
    /// Whether `len` bytes at `addr` are all guest RAM.
    fn contains(&self, addr: u64, len: u64) -> bool;

    /// A little-endian 16-bit value at `addr`.
    fn read_u16(&self, addr: u64) -> Result<u16, MemError> {
        let mut b = [0; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// A little-endian 32-bit value at `addr`.
    fn read_u32(&self, addr: u64) -> Result<u32, MemError> {
        let mut b = [0; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// A little-endian 64-bit value at `addr`.
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Writes a little-endian 16-bit value.
    fn write_u16(&mut self, addr: u64, v: u16) -> Result<(), MemError> {
        self.write(addr, &v.to_le_bytes())
    }
    /// Writes a little-endian 32-bit value.
    fn write_u32(&mut self, addr: u64, v: u32) -> Result<(), MemError> {
        self.write(addr, &v.to_le_bytes())
    }
}

/// One contiguous range of guest RAM starting at guest address `base`, held as bytes.
pub struct Ram<B> {
    base: u64,
    bytes: B,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Ram<B> {
    /// Guest RAM at `base`, its contents `bytes`.
    pub fn new(base: u64, bytes: B) -> Self {
        Self { base, bytes }
    }

    /// The guest address of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The bytes behind it.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// The range of `self.bytes` holding `len` bytes at guest address `addr`, if all are RAM.
    fn range(&self, addr: u64, len: u64) -> Option<core::ops::Range<usize>> {
        let start = addr.checked_sub(self.base)?;
        let end = start.checked_add(len)?;
        (end <= self.bytes.as_ref().len() as u64).then_some(start as usize..end as usize)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> GuestMemory for Ram<B> {
    fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), MemError> {
        let r = self.range(addr, out.len() as u64).ok_or(MemError { addr, len: out.len() as u64 })?;
        out.copy_from_slice(&self.bytes.as_ref()[r]);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let r = self.range(addr, data.len() as u64).ok_or(MemError { addr, len: data.len() as u64 })?;
        self.bytes.as_mut()[r].copy_from_slice(data);
        Ok(())
    }

    fn contains(&self, addr: u64, len: u64) -> bool {
        self.range(addr, len).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_inside_ram_work_and_the_rest_are_refused() {
        let mut ram = Ram::new(0x4000_0000, vec![0u8; 4096]);
        ram.write_u32(0x4000_0ffc, 0xdead_beef).unwrap();
        assert_eq!(ram.read_u32(0x4000_0ffc), Ok(0xdead_beef));
        assert_eq!(ram.read_u32(0x4000_0ffd), Err(MemError { addr: 0x4000_0ffd, len: 4 }), "one byte past the end");
        assert_eq!(ram.read_u16(0x3fff_ffff), Err(MemError { addr: 0x3fff_ffff, len: 2 }), "one byte before the start");
        assert!(ram.write(u64::MAX - 1, &[1, 2, 3]).is_err(), "wrapping past the top");
        assert!(ram.contains(0x4000_0000, 4096));
        assert!(!ram.contains(0x4000_0000, 4097));
        assert!(ram.contains(0x4000_1000, 0), "an empty range at the end");
        assert!(!ram.contains(u64::MAX, 2));
    }
}
