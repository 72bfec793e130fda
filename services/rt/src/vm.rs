//! This process's address space: where new mappings go, and mapping fresh memory.

use crate::sys;
use core::sync::atomic::{AtomicU64, Ordering};
use keel_abi::{Error, PAGE_SIZE, PmoKind, Slot, perm, slots};

/// Mappings made at run time go upward from here (programs link far below, stacks far above).
const DYNAMIC_BASE: u64 = 0x0000_0010_0000_0000;
static NEXT_VA: AtomicU64 = AtomicU64::new(DYNAMIC_BASE);

/// Reserves `size` bytes (rounded to pages, plus a guard page) of this process's address space.
pub fn reserve(size: u64) -> u64 {
    let size = size.next_multiple_of(PAGE_SIZE) + PAGE_SIZE;
    NEXT_VA.fetch_add(size, Ordering::Relaxed)
}

/// A fresh anonymous memory object mapped read-write here: (address, pmo slot).
pub fn map_anonymous(size: u64) -> Result<(u64, Slot), Error> {
    let size = size.next_multiple_of(PAGE_SIZE);
    let pmo = sys::pmo_create(PmoKind::Anonymous, size)?;
    let va = reserve(size);
    match sys::vmspace_map(slots::SELF_VMSPACE, pmo, va, size, 0, perm::READ | perm::WRITE) {
        Ok(()) => Ok((va, pmo)),
        Err(e) => {
            let _ = sys::cap_delete(pmo);
            Err(e)
        }
    }
}

/// Maps an existing memory object (`perms` from `keel_abi::perm`) here; its address.
pub fn map_pmo(pmo: Slot, size: u64, perms: u64) -> Result<u64, Error> {
    let size = size.next_multiple_of(PAGE_SIZE);
    let va = reserve(size);
    sys::vmspace_map(slots::SELF_VMSPACE, pmo, va, size, 0, perms)?;
    Ok(va)
}

/// Maps a memory object read-only here for good and returns its bytes.
pub fn map_readonly(pmo: Slot, size: u64) -> Result<&'static [u8], Error> {
    let va = map_pmo(pmo, size, perm::READ)?;
    // SAFETY: the mapping was just made, covers `size` bytes, is never unmapped (nothing in this
    // runtime unmaps it), and is read-only so no one writes through it.
    Ok(unsafe { core::slice::from_raw_parts(va as *const u8, size as usize) })
}

/// Memory this process shares with someone who writes it while we run (a guest's RAM mapped
/// into its device backend): bytes are copied in and out through the raw mapping, never
/// borrowed as Rust slices, so the compiler assumes nothing about what the other side does
/// between two accesses. Offsets are checked against the mapping's length.
pub struct SharedMemory {
    va: u64,
    len: u64,
}

impl SharedMemory {
    /// Maps `size` bytes of `pmo` read-write here for good.
    pub fn map(pmo: Slot, size: u64) -> Result<SharedMemory, Error> {
        let va = map_pmo(pmo, size, perm::READ | perm::WRITE)?;
        Ok(SharedMemory { va, len: size })
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `len` bytes at `offset` are inside.
    pub fn contains(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// Copies the bytes at `offset` into `out`; false (and nothing copied) if they are not all
    /// inside.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> bool {
        if !self.contains(offset, out.len() as u64) {
            return false;
        }
        // SAFETY: the range is inside the mapping, which lives as long as the process (nothing
        // unmaps it) and is readable; `out` is a distinct local buffer.
        unsafe { core::ptr::copy_nonoverlapping((self.va + offset) as *const u8, out.as_mut_ptr(), out.len()) };
        true
    }

    /// Copies `data` to `offset`; false (and nothing copied) if it does not all fit.
    pub fn write(&self, offset: u64, data: &[u8]) -> bool {
        if !self.contains(offset, data.len() as u64) {
            return false;
        }
        // SAFETY: as in `read`; the mapping is writable.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), (self.va + offset) as *mut u8, data.len()) };
        true
    }
}
