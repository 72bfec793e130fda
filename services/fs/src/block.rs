//! Block devices: what a disk file system reads and writes.
//!
//! Under Keel the device is the virtio-blk driver service reached by IPC ([`RemoteDisk`]); on
//! the host it is a byte vector ([`MemDisk`]) or an image file (in the tests).
//!
//! [`RemoteDisk`] survives a restart of the block service: every request (READ, WRITE, FLUSH) is
//! idempotent — writing the same sectors twice leaves them as writing once — so a request in
//! flight when `blk` dies is sent again to the restarted one (`keel_rt::reconnect`), and the
//! file system above never sees the restart. Nothing acknowledged is lost: a WRITE `blk`
//! answered has reached the device (whose contents outlive the driver), and the dirty blocks
//! not yet written live in the file service's cache, which did not die. After a reconnection
//! the disk's size is checked again: a different disk under the same name is an I/O error.

use alloc::vec::Vec;
use keel_rt::errno::Errno;
use keel_rt::proto::{self, blk};
use keel_rt::reconnect::{Retry, ServiceClient};
use keel_rt::{Error, Slot};

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
        Self {
            bytes,
            flushes: 0,
            writes: 0,
            read_only: false,
        }
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

/// A disk served by the block service (`blk0` ...), found again when it restarts.
pub struct RemoteDisk {
    client: ServiceClient,
    bytes: u64,
    read_only: bool,
    max_bytes: usize,
    /// The client's generation when the size was last checked.
    checked: u64,
}

fn transport(device: &str, e: Error) -> Errno {
    keel_rt::println!("fs: block device {device} unreachable: {e}");
    Errno::Io
}

impl RemoteDisk {
    /// Finds `device` (looking it up `attempts` times, `pause_ns` apart, while it has not
    /// registered) and asks its size.
    pub fn open(
        namesrv: Slot,
        device: &str,
        attempts: u32,
        pause_ns: u64,
    ) -> Result<RemoteDisk, Errno> {
        let slot =
            keel_rt::ipc::lookup(namesrv, device, attempts, pause_ns).map_err(|_| Errno::NoEnt)?;
        let mut client = ServiceClient::from_slot(namesrv, device, slot);
        let (sectors, read_only, max) = Self::info(&mut client)?;
        Ok(RemoteDisk {
            client,
            bytes: sectors.checked_mul(SECTOR_SIZE).ok_or(Errno::Io)?,
            read_only,
            max_bytes: (max * SECTOR_SIZE) as usize,
            checked: 0,
        })
    }

    /// Opens the disk for writing: from now on blk refuses every other client's writes (EBUSY
    /// if another already writes it), until this disk is dropped or fs exits.
    pub fn claim_for_writing(&mut self) -> Result<(), Errno> {
        let r = self
            .client
            .call_bulk(Retry::Idempotent, blk::OPEN_WRITE, [0; 3], &[]);
        let (r, _) = r.map_err(|e| transport(self.client.name(), e))?;
        proto::errno_status(&r).map(|_| ())
    }

    /// (sectors, read-only, most sectors per request).
    fn info(client: &mut ServiceClient) -> Result<(u64, bool, u64), Errno> {
        let r = client
            .call(Retry::Idempotent, blk::INFO, [0; 4])
            .map_err(|e| transport(client.name(), e))?;
        let info = proto::errno_status(&r)?;
        Ok((
            info.data[0],
            info.data[1] & blk::READ_ONLY != 0,
            info.data[2].clamp(1, blk::MAX_SECTORS),
        ))
    }

    /// After the block service restarted: still the same disk?
    fn check_same_disk(&mut self) -> Result<(), Errno> {
        if self.client.generation() == self.checked {
            return Ok(());
        }
        let (sectors, read_only, max) = Self::info(&mut self.client)?;
        self.checked = self.client.generation();
        if sectors.checked_mul(SECTOR_SIZE) != Some(self.bytes) {
            keel_rt::println!(
                "fs: {} came back with another size; refusing it",
                self.client.name()
            );
            return Err(Errno::Io);
        }
        keel_rt::println!(
            "fs: reconnected to {} after the block service restarted",
            self.client.name()
        );
        self.read_only = read_only;
        self.max_bytes = (max * SECTOR_SIZE) as usize;
        Ok(())
    }

    /// One bulk request, sent again to a restarted block service if it died meanwhile.
    fn request(&mut self, label: u64, words: [u64; 3], payload: &[u8]) -> Result<Vec<u8>, Errno> {
        let r = self
            .client
            .call_bulk(Retry::Idempotent, label, words, payload);
        self.check_same_disk()?;
        let (r, data) = r.map_err(|e| transport(self.client.name(), e))?;
        proto::errno_status(&r)?;
        Ok(data)
    }
}

impl Drop for RemoteDisk {
    fn drop(&mut self) {
        // Another client may write the disk now (nothing happens if this one did not).
        let _ = self.client.call(Retry::Idempotent, blk::RELEASE, [0; 4]);
    }
}

impl BlockDevice for RemoteDisk {
    fn size(&self) -> u64 {
        self.bytes
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        check_range(self.bytes, offset, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(self.max_bytes);
            let sector = (offset + done as u64) / SECTOR_SIZE;
            let data = self.request(blk::READ, [sector, n as u64 / SECTOR_SIZE, 0], &[])?;
            if data.len() != n {
                return Err(Errno::Io);
            }
            buf[done..done + n].copy_from_slice(&data);
            done += n;
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if self.read_only {
            return Err(Errno::RoFs);
        }
        check_range(self.bytes, offset, data.len())?;
        let mut done = 0;
        while done < data.len() {
            let n = (data.len() - done).min(self.max_bytes);
            let sector = (offset + done as u64) / SECTOR_SIZE;
            self.request(blk::WRITE, [sector, 0, 0], &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Errno> {
        let r = self.client.call(Retry::Idempotent, blk::FLUSH, [0; 4]);
        self.check_same_disk()?;
        proto::errno_status(&r.map_err(|e| transport(self.client.name(), e))?).map(|_| ())
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
