//! Memory shared with a device: the virtqueue rings, the request header and status, and the data
//! buffer, all in one physically contiguous region.
//!
//! The driver names places in the region by byte offset; [`DmaMemory`] turns an offset into an
//! access (volatile 32-bit words for the rings, bulk copies for sector data) and knows the
//! region's bus address, which is what the device is given. Offsets come from the driver's own
//! layout, never from the device.

use keel_rt::errno::Errno;

/// A physically contiguous region the device reads and writes by DMA.
pub trait DmaMemory {
    /// The bus (physical) address of offset 0: what descriptors and queue registers hold.
    fn bus_address(&self) -> u64;
    /// Bytes in the region.
    fn size(&self) -> usize;
    /// Reads the little-endian 32-bit word at `offset` (4-byte aligned).
    fn read32(&self, offset: usize) -> u32;
    /// Writes the little-endian 32-bit word at `offset` (4-byte aligned).
    fn write32(&self, offset: usize, value: u32);
    /// Copies `out.len()` bytes from `offset` (sector data the device wrote).
    fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), Errno>;
    /// Copies `bytes` to `offset` (sector data for the device to read).
    fn write_bytes(&self, offset: usize, bytes: &[u8]) -> Result<(), Errno>;
    /// Orders this side's earlier accesses to the region before later ones and before the next
    /// device register access (between filling a ring and notifying, and between reading the
    /// used index and the used elements).
    fn barrier(&self);
}
