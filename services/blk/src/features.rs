//! Feature negotiation (virtio 1.2 §2.2, §5.2.3): which of the device's offered features this
//! driver accepts. Everything not listed in [`WANTED`] is refused, so the device behaves as the
//! plain split-ring, one-queue block device the driver is written for.

use crate::regs::TransportVersion;

/// Feature bit numbers.
pub mod bit {
    /// `size_max` in the config space: most bytes in one data segment.
    pub const BLK_SIZE_MAX: u32 = 1;
    /// `seg_max`: most data segments in one request.
    pub const BLK_SEG_MAX: u32 = 2;
    /// The disk is read-only.
    pub const BLK_RO: u32 = 5;
    /// `blk_size`: the disk's logical block size (informational; requests stay in 512-byte sectors).
    pub const BLK_BLK_SIZE: u32 = 6;
    /// FLUSH requests (the device may cache writes).
    pub const BLK_FLUSH: u32 = 9;
    /// The modern (virtio 1.x) interface; required on a version-2 transport.
    pub const VERSION_1: u32 = 32;
}

const fn f(bit: u32) -> u64 {
    1 << bit
}

/// The block features this driver can use.
pub const WANTED: u64 =
    f(bit::BLK_SIZE_MAX) | f(bit::BLK_SEG_MAX) | f(bit::BLK_RO) | f(bit::BLK_BLK_SIZE) | f(bit::BLK_FLUSH);

/// Why a device's features cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureError {
    /// A version-2 transport whose device does not offer VERSION_1 (a transitional device the
    /// driver would have to drive as legacy through a modern transport; the spec forbids it).
    NoVersion1,
}

/// The accepted features, as a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features(pub u64);

impl Features {
    pub fn has(self, bit: u32) -> bool {
        self.0 & f(bit) != 0
    }
}

/// Picks the features to accept from what the device `offered`. A legacy transport has only
/// the low 32 bits (and no VERSION_1).
pub fn negotiate(offered: u64, version: TransportVersion) -> Result<Features, FeatureError> {
    match version {
        TransportVersion::Legacy => Ok(Features(offered & WANTED & 0xffff_ffff)),
        TransportVersion::Modern => {
            if offered & f(bit::VERSION_1) == 0 {
                return Err(FeatureError::NoVersion1);
            }
            Ok(Features(offered & (WANTED | f(bit::VERSION_1))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What QEMU's virtio-blk offers: SEG_MAX, GEOMETRY, BLK_SIZE, TOPOLOGY, FLUSH, CONFIG_WCE,
    /// DISCARD, WRITE_ZEROES, plus ring features and VERSION_1 on a modern transport.
    const QEMU: u64 = f(2) | f(4) | f(6) | f(10) | f(9) | f(11) | f(13) | f(14) | f(24) | f(27) | f(28) | f(29);

    #[test]
    fn a_legacy_device_gets_only_the_wanted_block_features() {
        let got = negotiate(QEMU, TransportVersion::Legacy).unwrap();
        assert_eq!(got.0, f(bit::BLK_SEG_MAX) | f(bit::BLK_BLK_SIZE) | f(bit::BLK_FLUSH));
        assert!(got.has(bit::BLK_FLUSH));
        assert!(!got.has(bit::BLK_RO));
    }

    #[test]
    fn a_modern_device_must_offer_version_1_and_keeps_it() {
        assert_eq!(negotiate(QEMU, TransportVersion::Modern), Err(FeatureError::NoVersion1));
        let got = negotiate(QEMU | f(bit::VERSION_1) | f(33) | f(34), TransportVersion::Modern).unwrap();
        assert_eq!(got.0, f(bit::BLK_SEG_MAX) | f(bit::BLK_BLK_SIZE) | f(bit::BLK_FLUSH) | f(bit::VERSION_1));
    }

    #[test]
    fn read_only_and_size_limits_are_accepted_when_offered() {
        let offered = f(bit::BLK_RO) | f(bit::BLK_SIZE_MAX) | f(bit::BLK_SEG_MAX);
        assert_eq!(negotiate(offered, TransportVersion::Legacy).unwrap().0, offered);
        assert_eq!(negotiate(0, TransportVersion::Legacy).unwrap().0, 0);
    }
}
