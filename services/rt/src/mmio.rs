//! Volatile access to device registers a driver mapped with `device_pmo` + `vm::map_pmo`.

/// Reads a 32-bit device register.
pub fn read32(addr: u64) -> u32 {
    // SAFETY: callers pass addresses inside a device mapping they made (Device memory, never
    // unmapped while the driver runs); the kernel kills the process on a bad address rather than
    // letting it touch anything else.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Writes a 32-bit device register.
pub fn write32(addr: u64, value: u32) {
    // SAFETY: as for `read32`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}
