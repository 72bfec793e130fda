//! Physical frame allocation: which RAM is free, and a buddy allocator over it.
//!
//! At boot the free RAM is the DTB's memory banks minus everything reserved (the kernel image,
//! the DTB itself, the initrd, `/memreserve/` and `/reserved-memory`), shrunk inward to whole
//! pages. [`FrameAllocator`] hands out naturally aligned power-of-two runs of frames and keeps
//! counts for the boot report and leak checks. It never hands out a frame twice and never one
//! outside the ranges it was given.

use keel_platform::bounded::BoundedVec;
use keel_platform::dtb::Region;

use super::layout::{PAGE_SIZE, align_down, align_up};

/// At most this many disjoint free ranges are tracked at boot.
pub const MAX_FREE_RANGES: usize = 64;

/// Why the free-RAM computation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// More disjoint free ranges than [`MAX_FREE_RANGES`].
    TooManyRanges,
}

/// Free, page-aligned ranges: `memory` minus every `reserved` region (in any order, possibly
/// overlapping each other or lying outside memory).
pub fn free_ranges(memory: &[Region], reserved: &[Region]) -> Result<BoundedVec<Region, MAX_FREE_RANGES>, FrameError> {
    let mut out = BoundedVec::new();
    for bank in memory {
        let mut start = align_up(bank.base, PAGE_SIZE);
        let end = align_down(bank.base.saturating_add(bank.size), PAGE_SIZE);
        while start < end {
            // The reserved region that begins first among those overlapping [start, end).
            let next = reserved
                .iter()
                .filter(|r| r.size > 0 && r.base < end && r.base.saturating_add(r.size) > start)
                .min_by_key(|r| r.base);
            match next {
                None => {
                    out.push(Region { base: start, size: end - start }).map_err(|_| FrameError::TooManyRanges)?;
                    break;
                }
                Some(r) => {
                    let hole_start = align_down(r.base, PAGE_SIZE).max(start);
                    if hole_start > start {
                        out.push(Region { base: start, size: hole_start - start })
                            .map_err(|_| FrameError::TooManyRanges)?;
                    }
                    start = align_up(r.base.saturating_add(r.size), PAGE_SIZE).max(start);
                }
            }
        }
    }
    Ok(out)
}

/// The machine's frame allocator, filled at boot.
pub static FRAMES: crate::hal::Mutex<FrameAllocator> = crate::hal::Mutex::new(FrameAllocator::new());

/// A buddy allocator over physical frames, with counts.
pub struct FrameAllocator {
    buddy: buddy_system_allocator::FrameAllocator<32>,
    total_frames: usize,
    free_frames: usize,
}

impl FrameAllocator {
    pub const fn new() -> Self {
        Self { buddy: buddy_system_allocator::FrameAllocator::new(), total_frames: 0, free_frames: 0 }
    }

    /// Adds the whole pages of `region` to the pool.
    pub fn add_region(&mut self, region: Region) {
        let start = align_up(region.base, PAGE_SIZE) / PAGE_SIZE;
        let end = align_down(region.base.saturating_add(region.size), PAGE_SIZE) / PAGE_SIZE;
        if end > start {
            self.buddy.add_frame(start as usize, end as usize);
            self.total_frames += (end - start) as usize;
            self.free_frames += (end - start) as usize;
        }
    }

    /// `count` contiguous frames, aligned to `count` rounded up to a power of two; their physical address.
    /// An armed failure injection ([`crate::failpoint`]) makes it return `None`.
    pub fn alloc(&mut self, count: usize) -> Option<u64> {
        if crate::failpoint::hit() {
            return None;
        }
        let frame = self.buddy.alloc(count)?;
        self.free_frames -= count.next_power_of_two();
        Some(frame as u64 * PAGE_SIZE)
    }

    /// Gives back `count` frames at `pa` that [`alloc`](Self::alloc) returned for the same `count`.
    pub fn free(&mut self, pa: u64, count: usize) {
        self.buddy.dealloc((pa / PAGE_SIZE) as usize, count);
        self.free_frames += count.next_power_of_two();
    }

    /// Frames handed to the allocator.
    pub fn total_frames(&self) -> usize {
        self.total_frames
    }

    /// Frames not currently allocated.
    pub fn free_frames(&self) -> usize {
        self.free_frames
    }
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: u64, size: u64) -> Region {
        Region { base, size }
    }

    #[test]
    fn carves_kernel_dtb_and_initrd_out_of_one_bank() {
        let mem = [r(0x4000_0000, 0x8000_0000)];
        let reserved = [
            r(0x4020_0000, 0x30_0000),  // kernel image
            r(0x4000_0000, 0x10_0000),  // DTB at the start of RAM
            r(0x4800_0000, 0x12_3456),  // initrd, not page sized
        ];
        let free = free_ranges(&mem, &reserved).unwrap();
        assert_eq!(
            free.as_slice(),
            &[
                r(0x4010_0000, 0x10_0000),
                r(0x4050_0000, 0x4800_0000 - 0x4050_0000),
                r(0x4812_4000, 0xC000_0000 - 0x4812_4000),
            ]
        );
    }

    #[test]
    fn overlapping_and_outside_reservations_and_unaligned_banks() {
        let mem = [r(0x1000_0800, 0x10_0000), r(0x8000_0000, 0x1_0000)];
        let reserved = [r(0x1000_2000, 0x3000), r(0x1000_3000, 0x4000), r(0x9000_0000, 0x1000), r(0x8000_0000, 0x1_0000)];
        let free = free_ranges(&mem, &reserved).unwrap();
        // bank 1 starts at 0x1000_1000 after rounding and ends at 0x1010_0000 (0x1010_0800 rounded down)
        assert_eq!(free.as_slice(), &[r(0x1000_1000, 0x1000), r(0x1000_7000, 0x1010_0000 - 0x1000_7000)]);
    }

    #[test]
    fn a_zero_sized_reservation_is_ignored() {
        let free = free_ranges(&[r(0x4000_0000, 0x4000)], &[r(0x4000_1000, 0)]).unwrap();
        assert_eq!(free.as_slice(), &[r(0x4000_0000, 0x4000)]);
    }

    #[test]
    fn too_many_fragments_is_an_error_not_a_panic() {
        let mem = [r(0, (MAX_FREE_RANGES as u64 + 2) * 0x2000)];
        let reserved: Vec<Region> = (0..MAX_FREE_RANGES as u64 + 1).map(|i| r(i * 0x2000 + 0x1000, 0x1000)).collect();
        assert_eq!(free_ranges(&mem, &reserved).unwrap_err(), FrameError::TooManyRanges);
    }

    #[test]
    fn allocator_counts_and_reuses_frames() {
        let mut fa = FrameAllocator::new();
        fa.add_region(r(0x4000_0000, 0x10_0000));
        assert_eq!(fa.total_frames(), 256);
        let a = fa.alloc(1).unwrap();
        let b = fa.alloc(4).unwrap();
        assert_ne!(a, b);
        assert_eq!(b % (4 * PAGE_SIZE), 0);
        assert!((0x4000_0000..0x4010_0000).contains(&a));
        assert_eq!(fa.free_frames(), 256 - 5);
        fa.free(b, 4);
        fa.free(a, 1);
        assert_eq!(fa.free_frames(), 256);
        // everything can be handed out again as one run
        assert_eq!(fa.alloc(256), Some(0x4000_0000));
        assert_eq!(fa.alloc(1), None);
    }
}
