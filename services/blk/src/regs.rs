//! The virtio-mmio transport's register block (virtio 1.2 §4.2.2 for version 2, §4.2.4 for the
//! legacy version 1) as offsets into one 0x200-byte slot, and the status and interrupt bits.
//!
//! This module only names registers; it never touches a device. Access goes through the
//! [`Registers`] trait so the driver logic runs against the fake device on the host and against
//! `keel_rt::mmio` on Keel (`crate::hw`). Every register is 32 bits wide.

/// Register offsets inside one transport slot. "v1" marks legacy-only registers, "v2" modern-only.
pub mod reg {
    pub const MAGIC: u32 = 0x000;
    pub const VERSION: u32 = 0x004;
    pub const DEVICE_ID: u32 = 0x008;
    pub const VENDOR_ID: u32 = 0x00c;
    /// v1: HostFeatures.
    pub const DEVICE_FEATURES: u32 = 0x010;
    /// v1: HostFeaturesSel.
    pub const DEVICE_FEATURES_SEL: u32 = 0x014;
    /// v1: GuestFeatures.
    pub const DRIVER_FEATURES: u32 = 0x020;
    /// v1: GuestFeaturesSel.
    pub const DRIVER_FEATURES_SEL: u32 = 0x024;
    /// v1 only.
    pub const GUEST_PAGE_SIZE: u32 = 0x028;
    pub const QUEUE_SEL: u32 = 0x030;
    pub const QUEUE_NUM_MAX: u32 = 0x034;
    pub const QUEUE_NUM: u32 = 0x038;
    /// v1 only.
    pub const QUEUE_ALIGN: u32 = 0x03c;
    /// v1 only: the queue's physical page number (0 = not in use).
    pub const QUEUE_PFN: u32 = 0x040;
    /// v2 only.
    pub const QUEUE_READY: u32 = 0x044;
    pub const QUEUE_NOTIFY: u32 = 0x050;
    pub const INTERRUPT_STATUS: u32 = 0x060;
    pub const INTERRUPT_ACK: u32 = 0x064;
    pub const STATUS: u32 = 0x070;
    /// v2 only: the three rings' physical addresses.
    pub const QUEUE_DESC_LOW: u32 = 0x080;
    pub const QUEUE_DESC_HIGH: u32 = 0x084;
    pub const QUEUE_DRIVER_LOW: u32 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u32 = 0x094;
    pub const QUEUE_DEVICE_LOW: u32 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u32 = 0x0a4;
    /// v2 only: changes whenever the device changes its configuration space.
    pub const CONFIG_GENERATION: u32 = 0x0fc;
    /// Start of the device-specific configuration space.
    pub const CONFIG: u32 = 0x100;
}

/// "virt" in little-endian: every virtio-mmio transport starts with it.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// Device ID of a block device (0 = an empty transport slot).
pub const DEVICE_ID_BLOCK: u32 = 2;
/// Bytes per transport slot.
pub const SLOT_SIZE: u64 = 0x200;

/// Device status bits (§2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    pub const FAILED: u32 = 128;
}

/// InterruptStatus / InterruptACK bits.
pub mod interrupt {
    /// The device used a buffer.
    pub const USED_BUFFER: u32 = 1;
    /// The device changed its configuration (or needs a reset).
    pub const CONFIG_CHANGE: u32 = 2;
}

/// Offsets in the virtio-blk configuration space (§5.2.4), relative to [`reg::CONFIG`].
pub mod blk_config {
    pub const CAPACITY: u32 = 0x00;
    pub const SIZE_MAX: u32 = 0x08;
    pub const SEG_MAX: u32 = 0x0c;
    pub const BLK_SIZE: u32 = 0x14;
}

/// One transport slot's registers: 32-bit reads and writes at an offset from [`reg`].
pub trait Registers {
    fn read(&self, offset: u32) -> u32;
    fn write(&self, offset: u32, value: u32);
}

/// The transport interface version a slot reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportVersion {
    /// Version 1: GuestPageSize, QueuePFN, QueueAlign; no FEATURES_OK.
    Legacy,
    /// Version 2: ring addresses in QueueDesc/Driver/Device, QueueReady, FEATURES_OK, VERSION_1.
    Modern,
}

impl TransportVersion {
    /// The number the Version register holds.
    pub fn number(self) -> u32 {
        match self {
            Self::Legacy => 1,
            Self::Modern => 2,
        }
    }
}

/// The features the device in `regs` offers: both words on a modern transport, the low one on a
/// legacy transport (which has no more).
pub fn offered_features(regs: &impl Registers, modern: bool) -> u64 {
    regs.write(reg::DEVICE_FEATURES_SEL, 0);
    let mut offered = u64::from(regs.read(reg::DEVICE_FEATURES));
    if modern {
        regs.write(reg::DEVICE_FEATURES_SEL, 1);
        offered |= u64::from(regs.read(reg::DEVICE_FEATURES)) << 32;
    }
    offered
}

/// Tells the device the driver takes `features`; on a modern transport then sets FEATURES_OK
/// (on top of `status`) and checks the device kept it, on a legacy one gives the page size
/// (`page`). The status written, or `None` when the device refused the features.
pub fn accept_features(regs: &impl Registers, modern: bool, features: u64, mut dev_status: u32, page: u32) -> Option<u32> {
    regs.write(reg::DRIVER_FEATURES_SEL, 0);
    regs.write(reg::DRIVER_FEATURES, features as u32);
    if modern {
        regs.write(reg::DRIVER_FEATURES_SEL, 1);
        regs.write(reg::DRIVER_FEATURES, (features >> 32) as u32);
        dev_status |= status::FEATURES_OK;
        regs.write(reg::STATUS, dev_status);
        if regs.read(reg::STATUS) & status::FEATURES_OK == 0 {
            return None;
        }
    } else {
        regs.write(reg::GUEST_PAGE_SIZE, page);
    }
    Some(dev_status)
}
