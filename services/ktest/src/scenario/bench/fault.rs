//! Page fault on anonymous memory, first touch: fresh anonymous memory objects are mapped
//! read-write and the first write to each of their pages is timed on its own. The sample runs from
//! the counter read before the store to the one after it: the store, the data abort, the
//! kernel's fault handling (find the region, allocate and zero a frame, map it), the return, the
//! store again, and the counter read itself (an `isb` and an `mrs`).

use alloc::vec::Vec;
use keel_rt::abi::{PAGE_SIZE, slots};
use keel_rt::{Error, mmio, sys, vm};

/// Pages touched, untimed, in a separate object before the timed ones.
const WARMUP_PAGES: u64 = 16;
/// Pages per memory object. Unmapping is far from linear in the size today (64 pages: ~52
/// thousand instructions; 1,024 pages: ~9 billion counter ticks), so the pages come in objects
/// of this size, each unmapped before the next.
const CHUNK_PAGES: u64 = 64;

/// Touches `pages` fresh pages and returns the cost of each first write.
pub fn first_touch(pages: u64) -> Result<Vec<u64>, Error> {
    touch(WARMUP_PAGES)?;
    let mut costs = Vec::with_capacity(pages as usize);
    let mut left = pages;
    while left > 0 {
        let n = left.min(CHUNK_PAGES);
        costs.extend(touch(n)?);
        left -= n;
    }
    Ok(costs)
}

fn touch(pages: u64) -> Result<Vec<u64>, Error> {
    let size = pages * PAGE_SIZE;
    let (va, pmo) = vm::map_anonymous(size)?;
    let mut costs = Vec::with_capacity(pages as usize);
    for i in 0..pages {
        let addr = va + i * PAGE_SIZE;
        let start = sys::counter();
        // A volatile store through the runtime's register-write helper: ktest has no unsafe code,
        // and the mapping is ours, read-write, and live until the unmap below.
        mmio::write32(addr, i as u32 + 1);
        let end = sys::counter();
        costs.push(end.wrapping_sub(start));
    }
    // Check that the stores landed in the memory object.
    let mut word = [0u8; 4];
    sys::pmo_read(pmo, (pages - 1) * PAGE_SIZE, &mut word)?;
    let landed = u32::from_le_bytes(word) == pages as u32;
    let unmapped = sys::vmspace_unmap(slots::SELF_VMSPACE, va, size);
    let _ = sys::cap_delete(pmo);
    unmapped?;
    if !landed {
        return Err(Error::BadState);
    }
    Ok(costs)
}
