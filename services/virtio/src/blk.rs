//! The block device (virtio 1.2, section 5.2): one request queue; each request is a chain of a
//! 16-byte device-readable header (type, reserved, sector), the data (device-readable for a
//! write, device-writable for a read) and one device-writable status byte at the very end.
//!
//! Requests are served one after the other against a [`Storage`], each write reaching the
//! storage before its request completes, so a FLUSH (which flushes the storage before it
//! completes) makes every write completed before it durable: the ordering the spec promises and
//! a journaling file system in the guest relies on. A malformed request (no status byte, a
//! header too short, data not in whole sectors, past the end of the disk) completes with
//! `IOERR` (or, without a status byte, with nothing written) and is counted; it does not
//! fail the device. Only a malformed ring does.

use crate::mem::GuestMemory;
use crate::mmio::{Device, Transport};
use crate::queue::{Chain, QueueError};

/// Virtio device ID of a block device.
pub const DEVICE_ID: u32 = 2;
/// The size of its one queue.
pub const QUEUE_SIZE: u16 = 128;
/// Bytes in a sector (the unit of `sector` and of the capacity).
pub const SECTOR: u64 = 512;
/// Most data segments in one request (`seg_max`: the chain minus header and status).
pub const SEG_MAX: u32 = (QUEUE_SIZE as u32) - 2;

/// Feature bits (virtio 1.2, 5.2.3).
pub mod feature {
    /// `seg_max` in the configuration is valid.
    pub const SEG_MAX: u64 = 1 << 2;
    /// The device is read-only.
    pub const RO: u64 = 1 << 5;
    /// `blk_size` in the configuration is valid.
    pub const BLK_SIZE: u64 = 1 << 6;
    /// The FLUSH command exists.
    pub const FLUSH: u64 = 1 << 9;
}

/// Request types.
pub mod request {
    /// Read sectors.
    pub const IN: u32 = 0;
    /// Write sectors.
    pub const OUT: u32 = 1;
    /// Make completed writes durable.
    pub const FLUSH: u32 = 4;
    /// The device's ID string (20 bytes).
    pub const GET_ID: u32 = 8;
}

/// Request status bytes.
pub mod status {
    /// Done.
    pub const OK: u8 = 0;
    /// The request failed (or was malformed, or wrote to a read-only disk).
    pub const IOERR: u8 = 1;
    /// The request type is not supported.
    pub const UNSUPP: u8 = 2;
}

/// The storage behind a disk: a file, a block device, memory in tests.
pub trait Storage {
    /// Reads `out.len()` bytes at byte `offset`.
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError>;
    /// Writes `data` at byte `offset`.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError>;
    /// Makes every write so far durable.
    fn flush(&mut self) -> Result<(), StorageError>;
}

/// The storage could not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageError;

/// The device model: its size, whether it is read-only, and its ID string.
pub struct Blk {
    /// Size in sectors.
    pub capacity: u64,
    /// Writes are refused and `RO` is offered.
    pub read_only: bool,
    /// GET_ID's answer (NUL-padded; a full 20 bytes has no NUL).
    pub id: [u8; 20],
}

impl Device for Blk {
    fn id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        feature::SEG_MAX | feature::BLK_SIZE | feature::FLUSH | if self.read_only { feature::RO } else { 0 }
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }
    /// capacity (le64) at 0, size_max (le32) at 8 (0: none), seg_max (le32) at 12, geometry at
    /// 16 (0), blk_size (le32) at 20; the rest 0.
    fn read_config(&self, offset: u64, out: &mut [u8]) {
        let mut config = [0u8; 24];
        config[0..8].copy_from_slice(&self.capacity.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        for (i, b) in out.iter_mut().enumerate() {
            *b = usize::try_from(offset).ok().and_then(|o| o.checked_add(i)).and_then(|at| config.get(at)).copied().unwrap_or(0);
        }
    }
}

/// What serving the queue did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests completed (whatever their status).
    pub requests: u64,
    /// Bytes read from or written to the storage.
    pub bytes: u64,
    /// Requests that completed with a status other than OK.
    pub errors: u64,
    /// Whether the driver wants an interrupt for them.
    pub interrupt: bool,
}

/// Bytes moved per storage call.
const CHUNK: usize = 16 * 1024;

/// Serves every available request of the block queue against `storage`. A malformed queue is an
/// error and the transport needs a reset.
pub fn serve(t: &mut Transport<Blk>, mem: &mut impl GuestMemory, storage: &mut (impl Storage + ?Sized)) -> Result<Served, QueueError> {
    let mut served = Served::default();
    while let Some(chain) = t.pop(0, mem)? {
        let (status, written, moved) = one(&t.device, &chain, mem, storage)?;
        served.bytes += moved;
        served.errors += u64::from(status != Some(status::OK));
        served.interrupt |= t.complete(0, mem, chain.head, written)?;
        served.requests += 1;
    }
    Ok(served)
}

/// One request: (its status, None if it has no status byte; the bytes written into the chain;
/// the bytes moved to or from the storage). Guest memory errors cannot happen (the chain was
/// checked to lie in RAM) but are passed on if they do.
fn one(dev: &Blk, chain: &Chain, mem: &mut impl GuestMemory, storage: &mut (impl Storage + ?Sized)) -> Result<(Option<u8>, u32, u64), QueueError> {
    let writable = chain.writable_len();
    if writable == 0 {
        // Nowhere to put a status: nothing can be said about it.
        return Ok((None, 0, 0));
    }
    let status_at = writable - 1;
    let mut header = [0u8; 16];
    let (status, data_written, moved) = if chain.read_at(mem, 0, &mut header)? < header.len() {
        (status::IOERR, 0, 0)
    } else {
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or([0; 8]));
        match kind {
            request::IN => transfer(dev, chain, mem, storage, sector, false)?,
            request::OUT => transfer(dev, chain, mem, storage, sector, true)?,
            request::FLUSH => (if storage.flush().is_ok() { status::OK } else { status::IOERR }, 0, 0),
            request::GET_ID => {
                let n = status_at.min(dev.id.len() as u64) as usize;
                let done = chain.write_at(mem, 0, &dev.id[..n])?;
                (status::OK, done as u64, 0)
            }
            _ => (status::UNSUPP, 0, 0),
        }
    };
    chain.write_at(mem, status_at, &[status])?;
    Ok((Some(status), (data_written + 1) as u32, moved))
}

/// A read (`write` false) or write of the chain's data at `sector`: (status, bytes written into
/// the chain, bytes moved).
fn transfer(dev: &Blk, chain: &Chain, mem: &mut impl GuestMemory, storage: &mut (impl Storage + ?Sized), sector: u64, write: bool) -> Result<(u8, u64, u64), QueueError> {
    // The data: for a write, the readable bytes after the header; for a read, the writable
    // bytes before the status byte.
    let len = if write { chain.readable_len().saturating_sub(16) } else { chain.writable_len() - 1 };
    let end = sector.checked_mul(SECTOR).and_then(|start| start.checked_add(len));
    let inside = end.is_some_and(|end| end <= dev.capacity.saturating_mul(SECTOR));
    if len % SECTOR != 0 || !inside || (write && dev.read_only) {
        return Ok((status::IOERR, 0, 0));
    }
    let start = sector * SECTOR;
    let mut buf = [0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        let ok = if write {
            chain.read_at(mem, 16 + done, &mut buf[..n])?;
            storage.write(start + done, &buf[..n]).is_ok()
        } else {
            let ok = storage.read(start + done, &mut buf[..n]).is_ok();
            if ok {
                chain.write_at(mem, done, &buf[..n])?;
            }
            ok
        };
        if !ok {
            return Ok((status::IOERR, if write { 0 } else { done }, done));
        }
        done += n as u64;
    }
    Ok((status::OK, if write { 0 } else { len }, len))
}
