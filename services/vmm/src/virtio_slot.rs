//! The virtio-mmio slots no device sits in. Keel's guest board copies QEMU's `virt`, where all
//! 32 virtio-mmio transports exist whether or not a device is plugged in; guests written for
//! that board probe a slot and expect it to say "no device", not to fault. An empty slot reads
//! as QEMU's transport with no backend does (hw/virtio/virtio-mmio.c): the magic value, the
//! version and the vendor ID, with DeviceID 0 ("no device", virtio 1.2 section 4.2.2) and every
//! other register 0; writes are ignored.

/// MagicValue: "virt" read as a little-endian word.
pub const MAGIC: u32 = 0x7472_6976;
/// Version 2: the non-legacy register layout (the one Keel's devices will use).
pub const VERSION: u32 = 2;
/// VendorID: "KEEL" read as a little-endian word.
pub const VENDOR: u32 = 0x4c45_454b;

/// Register offsets that read as non-zero.
const MAGIC_VALUE: u64 = 0x000;
const VERSION_REG: u64 = 0x004;
const VENDOR_ID: u64 = 0x00c;

const DEVICE_ID: u64 = 0x008;
const INTERRUPT_STATUS: u64 = 0x060;
const STATUS: u64 = 0x070;

/// Status bit DEVICE_NEEDS_RESET (virtio 1.2, section 2.1).
pub const NEEDS_RESET: u32 = 0x40;
/// InterruptStatus bit: the configuration (here: the device status) changed.
pub const CONFIG_CHANGE: u32 = 2;

/// What a guest load of `size` bytes at `offset` into an empty slot returns (the register
/// containing the offset, shifted and cut to the access, as a little-endian device answers
/// a narrow load).
pub fn read(offset: u64, size: u8) -> u64 {
    narrow(offset, size, &|reg| match reg {
        MAGIC_VALUE => MAGIC,
        VERSION_REG => VERSION,
        VENDOR_ID => VENDOR,
        _ => 0,
    })
}

/// What a load from the slot of a device whose backend is gone returns: the device is still
/// there (its ID), it needs a reset (Status `DEVICE_NEEDS_RESET`) and says so by a
/// configuration-change interrupt; every queue register reads 0, so a driver sees no queue.
pub fn read_failed(offset: u64, size: u8, device_id: u32) -> u64 {
    narrow(offset, size, &|reg| match reg {
        DEVICE_ID => device_id,
        STATUS => NEEDS_RESET,
        INTERRUPT_STATUS => CONFIG_CHANGE,
        _ => read(reg, 4) as u32,
    })
}

/// The bytes of a `size`-byte load at `offset` from registers `word` gives.
fn narrow(offset: u64, size: u8, word: &dyn Fn(u64) -> u32) -> u64 {
    let shifted = u64::from(word(offset & !3)) >> ((offset & 3) * 8);
    match size {
        1 => shifted & 0xff,
        2 => shifted & 0xffff,
        4 => shifted & 0xffff_ffff,
        // A 64-bit load takes the next register as its upper half.
        _ if offset & 7 == 0 => shifted | narrow(offset + 4, 4, word) << 32,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_slot_says_no_device() {
        assert_eq!(read(0x000, 4), u64::from(MAGIC));
        assert_eq!(read(0x004, 4), 2);
        assert_eq!(read(0x008, 4), 0, "DeviceID 0: no device");
        assert_eq!(read(0x00c, 4), u64::from(VENDOR));
        assert_eq!(read(0x070, 4), 0, "Status");
        assert_eq!(read(0x1fc, 4), 0);
    }

    #[test]
    fn narrow_and_wide_loads() {
        assert_eq!(read(0x000, 1), u64::from(b'v'));
        assert_eq!(read(0x001, 1), u64::from(b'i'));
        assert_eq!(read(0x002, 2), 0x7472);
        assert_eq!(read(0x000, 8), u64::from(MAGIC) | 2 << 32);
        assert_eq!(read(0x008, 8), u64::from(VENDOR) << 32);
    }

    #[test]
    fn a_device_whose_backend_died_needs_a_reset() {
        assert_eq!(read_failed(0x000, 4, 4), u64::from(MAGIC));
        assert_eq!(read_failed(0x008, 4, 4), 4, "still an entropy device");
        assert_eq!(read_failed(0x070, 4, 4), u64::from(NEEDS_RESET));
        assert_eq!(read_failed(0x060, 4, 4), u64::from(CONFIG_CHANGE));
        assert_eq!(read_failed(0x034, 4, 4), 0, "QueueNumMax 0: no queue");
        assert_eq!(read_failed(0x008, 8, 2), 2 | u64::from(VENDOR) << 32);
    }
}
