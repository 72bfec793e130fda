//! The block device model (`keel_virtio::blk`) behind the virtio-mmio transport, driven by a
//! guest that wrote its RAM and rings as it liked: serving never panics, never touches the disk
//! outside its capacity, never writes a read-only disk, and either completes requests or leaves
//! the device needing a reset.
//!
//! Input: byte 0 the queue size's log2 (mod 8), byte 1 flags (bit 0 read-only, bit 1 EVENT_IDX,
//! bit 2 INDIRECT_DESC), bytes 2-7 the descriptor table, available ring and used ring offsets
//! (in 16-, 2- and 4-byte units, little-endian u16); the rest is the guest's RAM at 0x4000_0000.
#![no_main]

use keel_virtio::blk::{self, Blk, Storage, StorageError};
use keel_virtio::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use keel_virtio::mem::Ram;
use keel_virtio::mmio::{Transport, reg, status};
use libfuzzer_sys::fuzz_target;

const BASE: u64 = 0x4000_0000;
const SECTORS: u64 = 64;

struct Disk {
    data: Vec<u8>,
    read_only: bool,
}

impl Storage for Disk {
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        let end = offset as usize + out.len();
        assert!(end <= self.data.len(), "read past the disk's end: {offset} + {}", out.len());
        out.copy_from_slice(&self.data[offset as usize..end]);
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        assert!(!self.read_only, "a read-only disk was written");
        let end = offset as usize + data.len();
        assert!(end <= self.data.len(), "write past the disk's end: {offset} + {}", data.len());
        self.data[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() < 8 {
        return;
    }
    let word = |i: usize| u64::from(u16::from_le_bytes([bytes[i], bytes[i + 1]]));
    let read_only = bytes[0] & 0x80 != 0 || bytes[1] & 1 != 0;
    let features = VERSION_1 | blk::feature::FLUSH | if bytes[1] & 2 != 0 { EVENT_IDX } else { 0 } | if bytes[1] & 4 != 0 { INDIRECT_DESC } else { 0 };
    let mut mem = Ram::new(BASE, bytes[8..].to_vec());
    let mut t = Transport::new(Blk { capacity: SECTORS, read_only, id: [b'k'; 20] });
    let mut disk = Disk { data: vec![0; (SECTORS * 512) as usize], read_only };
    let w = |t: &mut Transport<Blk>, mem: &Ram<Vec<u8>>, off: u64, v: u64| t.write(off, 4, v, mem);
    w(&mut t, &mem, reg::STATUS, u64::from(status::ACKNOWLEDGE | status::DRIVER));
    w(&mut t, &mem, reg::DRIVER_FEATURES_SEL, 0);
    w(&mut t, &mem, reg::DRIVER_FEATURES, features & 0xffff_ffff);
    w(&mut t, &mem, reg::DRIVER_FEATURES_SEL, 1);
    w(&mut t, &mem, reg::DRIVER_FEATURES, features >> 32);
    w(&mut t, &mem, reg::STATUS, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK));
    w(&mut t, &mem, reg::QUEUE_NUM, 1 << (bytes[0] % 8));
    for (low, v) in [(reg::QUEUE_DESC_LOW, BASE + 16 * word(2)), (reg::QUEUE_DRIVER_LOW, BASE + 2 * word(4)), (reg::QUEUE_DEVICE_LOW, BASE + 4 * word(6))] {
        w(&mut t, &mem, low, v & 0xffff_ffff);
        w(&mut t, &mem, low + 4, v >> 32);
    }
    w(&mut t, &mem, reg::QUEUE_READY, 1);
    w(&mut t, &mem, reg::STATUS, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK));
    for _ in 0..4 {
        match blk::serve(&mut t, &mut mem, &mut disk) {
            Ok(s) => assert!(s.errors <= s.requests),
            Err(_) => {
                assert_ne!(t.status() & status::NEEDS_RESET, 0, "a queue error leaves the device needing a reset");
                return;
            }
        }
    }
});
