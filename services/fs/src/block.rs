//! Block devices: what a disk file system reads and writes.
//!
//! Under Keel the device is the virtio-blk driver service reached by IPC (`service.rs`); on the
//! host it is a byte vector ([`MemDisk`]) or an image file (in the tests).

use alloc::vec::Vec;
use keel_rt::errno::Errno;

/// The unit of a block device's addresses.
pub const SECTOR_SIZE: u64 = 512;

/// A disk: byte-addressed here, though devices transfer whole sectors; `offset` and the buffer
/// length are multiples of [`SECTOR_SIZE`].
pub trait BlockDevice: Send {
    /// Bytes on the device.
    fn size(&self) -> u64;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Writes `data` at `offset`. The write may sit in a volatile cache until [`flush`](Self::flush).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno>;
    /// Makes every completed write durable. Also a barrier: no later write reaches the medium before
    /// the earlier ones.
    fn flush(&mut self) -> Result<(), Errno>;
    /// True when writes are refused.
    fn read_only(&self) -> bool {
        false
    }
}

/// Checks an access against the device size and sector alignment.
pub fn check_range(size: u64, offset: u64, len: usize) -> Result<(), Errno> {
    let len = len as u64;
    if offset % SECTOR_SIZE != 0 || len % SECTOR_SIZE != 0 {
        return Err(Errno::Inval);
    }
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Errno::Io),
    }
}

/// A disk in memory.
#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    pub bytes: Vec<u8>,
    /// Flushes so far.
    pub flushes: u64,
    /// Sector writes so far.
    pub writes: u64,
    pub read_only: bool,
}

impl MemDisk {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, flushes: 0, writes: 0, read_only: false }
    }

    /// A zero-filled disk of `size` bytes.
    pub fn zeroed(size: usize) -> Self {
        Self::new(alloc::vec![0; size])
    }
}

impl BlockDevice for MemDisk {
    fn size(&self) -> u64 {
        self.bytes.len() as u64 / SECTOR_SIZE * SECTOR_SIZE
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        check_range(self.size(), offset, buf.len())?;
        let o = offset as usize;
        buf.copy_from_slice(&self.bytes[o..o + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if self.read_only {
            return Err(Errno::RoFs);
        }
        check_range(self.size(), offset, data.len())?;
        let o = offset as usize;
        self.bytes[o..o + data.len()].copy_from_slice(data);
        self.writes += data.len() as u64 / SECTOR_SIZE;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Errno> {
        self.flushes += 1;
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_disk_checks_alignment_and_bounds() {
        let mut d = MemDisk::zeroed(4096);
        let mut b = [0u8; 512];
        assert_eq!(d.read_at(1, &mut b), Err(Errno::Inval));
        assert_eq!(d.read_at(4096, &mut b), Err(Errno::Io));
        assert_eq!(d.read_at(u64::MAX - 511, &mut b), Err(Errno::Io)); // overflows
        d.write_at(512, &[7; 512]).unwrap();
        d.read_at(512, &mut b).unwrap();
        assert_eq!(b, [7; 512]);
        d.read_only = true;
        assert_eq!(d.write_at(0, &[0; 512]), Err(Errno::RoFs));
    }
}
