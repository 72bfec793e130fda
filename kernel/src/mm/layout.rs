//! The kernel's virtual address layout (TTBR1_EL2, 48-bit, 4 KiB granule).
//!
//! ```text
//! 0xFFFF_0000_0000_0000  direct map: physical address + DIRECT_MAP_BASE (RAM only, RW, never executable)
//! 0xFFFF_FE00_0000_0000  device MMIO window, handed out in order (Device-nGnRE, RW, never executable)
//! 0xFFFF_FF80_0000_0000  the kernel image as linked (text RX, rodata R, data/bss RW)
//! ```
//! User processes own the lower half (TTBR0_EL2, EL0).

/// Base of the linear map of all RAM.
pub const DIRECT_MAP_BASE: u64 = 0xFFFF_0000_0000_0000;
/// Size of the direct map window (enough for 1 TiB of physical addresses).
pub const DIRECT_MAP_SIZE: u64 = 1 << 40;
/// Base of the device MMIO window.
pub const MMIO_BASE: u64 = 0xFFFF_FE00_0000_0000;
/// Size of the device MMIO window.
pub const MMIO_SIZE: u64 = 1 << 39;
/// Where the kernel image is linked (must match linker.ld).
pub const KIMAGE_VBASE: u64 = 0xFFFF_FF80_0000_0000;
/// Bytes in a page (and a frame).
pub const PAGE_SIZE: u64 = 4096;

/// The direct-map virtual address of physical address `pa`.
pub const fn phys_to_virt(pa: u64) -> u64 {
    pa + DIRECT_MAP_BASE
}

/// The physical address behind a direct-map virtual address, if `va` is one.
pub const fn direct_virt_to_phys(va: u64) -> Option<u64> {
    if va >= DIRECT_MAP_BASE && va < DIRECT_MAP_BASE + DIRECT_MAP_SIZE { Some(va - DIRECT_MAP_BASE) } else { None }
}

/// Rounds `x` down to a multiple of `align` (a power of two).
pub const fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

/// Rounds `x` up to a multiple of `align` (a power of two); saturates at the top.
pub const fn align_up(x: u64, align: u64) -> u64 {
    match x.checked_add(align - 1) {
        Some(v) => v & !(align - 1),
        None => align_down(u64::MAX, align),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_map_round_trips_and_rejects_other_addresses() {
        assert_eq!(direct_virt_to_phys(phys_to_virt(0x4000_1000)), Some(0x4000_1000));
        assert_eq!(direct_virt_to_phys(KIMAGE_VBASE), None);
        assert_eq!(direct_virt_to_phys(0x1000), None);
    }

    #[test]
    fn regions_do_not_overlap() {
        assert!(DIRECT_MAP_BASE + DIRECT_MAP_SIZE <= MMIO_BASE);
        assert!(MMIO_BASE + MMIO_SIZE <= KIMAGE_VBASE);
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_up(0x1001, 0x1000), 0x2000);
        assert_eq!(align_up(0x1000, 0x1000), 0x1000);
        assert_eq!(align_down(0x1fff, 0x1000), 0x1000);
        assert_eq!(align_up(u64::MAX - 5, 0x1000), u64::MAX & !0xfff);
    }
}
