//! The guest physical memory map every Keel guest gets: a fixed board modelled on QEMU's `virt`
//! machine (GICv3, PL011 at `0x0900_0000`, virtio-mmio slots at `0x0A00_0000`, RAM from
//! `0x4000_0000`), so guest kernels built for QEMU boot unchanged.
//!
//! This module owns only constants and address arithmetic; it never decides anything about a
//! particular guest. Invariants: no two device windows overlap, every device window lies below
//! [`RAM_BASE`], and the largest RAM ([`RAM_MAX_SIZE`]) ends below 2^40 (a 40-bit IPA space).
//! Interrupts are given as INTIDs (SPI `n` is INTID `32 + n`, PPI `n` is INTID `16 + n`), and
//! as the DT specifier numbers (`*_SPI`, `*_PPI`) where the device tree needs them.

/// Guest page size the layout is aligned to (the stage-2 granule).
pub const PAGE_SIZE: u64 = 0x1000;

/// Most vCPUs a guest may have (also bounds the redistributor window).
pub const MAX_VCPUS: u32 = 8;

/// First byte of guest RAM.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Largest guest RAM: 4 GiB, so RAM ends at or below `0x1_4000_0000`.
pub const RAM_MAX_SIZE: u64 = 0x1_0000_0000;

/// GICv3 distributor (GICD) frame.
pub const GICD_BASE: u64 = 0x0800_0000;
/// Size of the GICD frame.
pub const GICD_SIZE: u64 = 0x1_0000;
/// First redistributor (GICR) frame; vCPU `i`'s is at `GICR_BASE + i * GICR_STRIDE`.
pub const GICR_BASE: u64 = 0x080A_0000;
/// Size of one vCPU's redistributor (RD_base and SGI_base frames, 64 KiB each).
pub const GICR_STRIDE: u64 = 0x2_0000;

/// PL011 UART registers.
pub const UART_BASE: u64 = 0x0900_0000;
/// Size of the PL011 window.
pub const UART_SIZE: u64 = 0x1000;
/// The UART's SPI number in the device tree.
pub const UART_SPI: u32 = 1;
/// The UART's INTID (level-sensitive, active high).
pub const UART_INTID: u32 = 32 + UART_SPI;

/// First virtio-mmio transport; slot `n` is at `VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_STRIDE`.
pub const VIRTIO_MMIO_BASE: u64 = 0x0A00_0000;
/// Size of one virtio-mmio transport.
pub const VIRTIO_MMIO_STRIDE: u64 = 0x200;
/// Number of virtio-mmio slots.
pub const VIRTIO_MMIO_SLOTS: u32 = 32;
/// SPI number of slot 0; slot `n` uses SPI `VIRTIO_MMIO_FIRST_SPI + n` (edge-triggered).
pub const VIRTIO_MMIO_FIRST_SPI: u32 = 16;

/// PPI of the GIC virtualization maintenance interrupt (INTID 25).
pub const MAINTENANCE_PPI: u32 = 9;
/// The PMU's overflow interrupt (PPI 7 = INTID 23, level-sensitive).
pub const PMU_PPI: u32 = 7;
/// Secure EL1 physical timer PPI (INTID 29).
pub const TIMER_SEC_PHYS_PPI: u32 = 13;
/// Non-secure EL1 physical timer PPI (INTID 30).
pub const TIMER_PHYS_PPI: u32 = 14;
/// EL1 virtual timer PPI (INTID 27).
pub const TIMER_VIRT_PPI: u32 = 11;
/// EL2 physical timer PPI (INTID 26).
pub const TIMER_HYP_PPI: u32 = 10;

/// A range of guest physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRange {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl GuestRange {
    /// One past the last byte, or `None` if the range wraps past the top of the address space.
    pub fn end(&self) -> Option<u64> {
        self.start.checked_add(self.len)
    }

    /// Whether `self` lies entirely inside `outer` (false if either wraps).
    pub fn is_inside(&self, outer: &GuestRange) -> bool {
        match (self.end(), outer.end()) {
            (Some(end), Some(outer_end)) => self.start >= outer.start && end <= outer_end,
            _ => false,
        }
    }

    /// Whether the two ranges share a byte (empty ranges overlap nothing).
    pub fn overlaps(&self, other: &GuestRange) -> bool {
        let (Some(end), Some(other_end)) = (self.end(), other.end()) else {
            return true;
        };
        self.len != 0 && other.len != 0 && self.start < other_end && other.start < end
    }
}

/// Guest RAM of `size` bytes at [`RAM_BASE`].
pub const fn ram(size: u64) -> GuestRange {
    GuestRange {
        start: RAM_BASE,
        len: size,
    }
}

/// The redistributor window for `vcpus` vCPUs (one [`GICR_STRIDE`] each).
pub const fn gicr(vcpus: u32) -> GuestRange {
    GuestRange {
        start: GICR_BASE,
        len: GICR_STRIDE * vcpus as u64,
    }
}

/// The registers of virtio-mmio slot `slot`, or `None` past the last slot.
pub const fn virtio_mmio(slot: u32) -> Option<GuestRange> {
    if slot >= VIRTIO_MMIO_SLOTS {
        return None;
    }
    Some(GuestRange {
        start: VIRTIO_MMIO_BASE + slot as u64 * VIRTIO_MMIO_STRIDE,
        len: VIRTIO_MMIO_STRIDE,
    })
}

/// INTID of virtio-mmio slot `slot` (for slots below [`VIRTIO_MMIO_SLOTS`]).
pub const fn virtio_mmio_intid(slot: u32) -> u32 {
    32 + VIRTIO_MMIO_FIRST_SPI + slot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_windows_do_not_overlap_and_lie_below_ram() {
        let mut windows = alloc::vec![
            GuestRange {
                start: GICD_BASE,
                len: GICD_SIZE
            },
            gicr(MAX_VCPUS),
            GuestRange {
                start: UART_BASE,
                len: UART_SIZE
            },
        ];
        windows.extend((0..VIRTIO_MMIO_SLOTS).filter_map(virtio_mmio));
        for (i, a) in windows.iter().enumerate() {
            assert!(
                a.end().is_some_and(|end| end <= RAM_BASE),
                "{a:?} reaches RAM"
            );
            for b in windows.iter().skip(i + 1) {
                assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
            }
        }
        const { assert!(RAM_BASE + RAM_MAX_SIZE <= 1 << 40) };
    }

    #[test]
    fn virtio_slots_follow_qemu_virt() {
        assert_eq!(virtio_mmio(0).map(|r| r.start), Some(0x0A00_0000));
        assert_eq!(virtio_mmio(31).map(|r| r.start), Some(0x0A00_3E00));
        assert_eq!(virtio_mmio(32), None);
        assert_eq!(virtio_mmio_intid(0), 48);
        assert_eq!(virtio_mmio_intid(31), 79);
    }

    #[test]
    fn ranges_compare_without_overflow() {
        let top = GuestRange {
            start: u64::MAX - 1,
            len: 4,
        };
        assert_eq!(top.end(), None);
        assert!(!top.is_inside(&ram(RAM_MAX_SIZE)));
        let a = GuestRange {
            start: 0x1000,
            len: 0x1000,
        };
        let b = GuestRange {
            start: 0x2000,
            len: 0x1000,
        };
        assert!(!a.overlaps(&b));
        assert!(a.overlaps(&GuestRange {
            start: 0x1fff,
            len: 1
        }));
        assert!(!a.overlaps(&GuestRange {
            start: 0x1800,
            len: 0
        }));
    }
}
