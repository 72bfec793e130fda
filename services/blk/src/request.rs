//! virtio-blk requests on the wire (virtio 1.2 §5.2.6): the 16-byte header the device reads, the
//! status byte it writes, and where both and the data buffer sit in the driver's DMA region.

use keel_rt::errno::Errno;

/// Bytes per sector: the unit of every virtio-blk request, whatever the disk's block size.
pub const SECTOR: usize = 512;
/// Most data bytes in one device request (and in one IPC READ/WRITE: the bulk buffer).
pub const DATA_MAX: usize = keel_rt::proto::blk::MAX_SECTORS as usize * SECTOR;

/// Request types the driver sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RequestType {
    /// Read sectors from the disk.
    In = 0,
    /// Write sectors to the disk.
    Out = 1,
    /// Make completed writes durable.
    Flush = 4,
}

/// Status byte values.
pub const STATUS_OK: u8 = 0;
pub const STATUS_IOERR: u8 = 1;
pub const STATUS_UNSUPP: u8 = 2;
/// What the driver puts in the status byte before submitting: a device that completes a
/// request without writing its status leaves this, and the request fails.
pub const STATUS_UNWRITTEN: u8 = 0xff;

/// The header as four little-endian words: type, reserved, sector (low, high).
pub fn header_words(kind: RequestType, sector: u64) -> [u32; 4] {
    [kind as u32, 0, sector as u32, (sector >> 32) as u32]
}

/// What a completed request's status byte means for the caller.
pub fn status_result(status: u8) -> Result<(), Errno> {
    match status {
        STATUS_OK => Ok(()),
        // IOERR, UNSUPP, or a value no device may write (including our STATUS_UNWRITTEN).
        _ => Err(Errno::Io),
    }
}

/// Places in the DMA region, by byte offset. The queue area fits the largest queue the driver
/// sets up ([`crate::device::QUEUE_SIZE_MAX`] entries, legacy layout with 4 KiB alignment).
pub mod dma_layout {
    use super::DATA_MAX;

    pub const QUEUE: usize = 0;
    pub const QUEUE_BYTES: usize = 8192;
    pub const HEADER: usize = QUEUE + QUEUE_BYTES;
    pub const STATUS: usize = HEADER + 16;
    /// Page aligned, so a read or write is one physically contiguous buffer.
    pub const DATA: usize = HEADER + 4096;
    /// Bytes the region needs.
    pub const TOTAL: usize = DATA + DATA_MAX;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_encode_type_and_64_bit_sector() {
        assert_eq!(header_words(RequestType::In, 7), [0, 0, 7, 0]);
        assert_eq!(header_words(RequestType::Out, 0x1_2345_6789), [1, 0, 0x2345_6789, 1]);
        assert_eq!(header_words(RequestType::Flush, 0), [4, 0, 0, 0]);
    }

    #[test]
    fn only_status_ok_is_success() {
        assert_eq!(status_result(STATUS_OK), Ok(()));
        for s in [STATUS_IOERR, STATUS_UNSUPP, STATUS_UNWRITTEN, 3] {
            assert_eq!(status_result(s), Err(Errno::Io));
        }
    }

    #[test]
    fn the_queue_area_holds_the_largest_queue() {
        let l = crate::virtqueue::QueueLayout::new(crate::device::QUEUE_SIZE_MAX, 4096).unwrap();
        assert!(l.total <= dma_layout::QUEUE_BYTES);
        assert_eq!(dma_layout::DATA % 4096, 0);
        assert_eq!(DATA_MAX, 64 * 1024);
    }
}
