//! Physical memory objects: anonymous (zero-filled pages allocated on first touch), contiguous
//! (allocated at once; DMA-able) and device (a range of MMIO registers).
//!
//! A PMO's frames are freed when its last reference (capability or mapping) goes. Every frame it
//! allocates is charged to its quota (`object/quota.rs`), whoever's access caused it.

use super::Id;
use super::quota::{alloc_frames, free_frames, free_pages};
use crate::hal;
use alloc::collections::BTreeMap;
use keel_abi::{Error, PAGE_SIZE};

#[derive(Debug)]
pub enum Backing {
    /// Page index -> frame.
    Anonymous { pages: BTreeMap<u64, u64> },
    /// `frames` (a power of two as allocated) starting at `base`.
    Contiguous { base: u64, frames: usize },
    /// A fixed physical range at `base`, not owned (never freed): device registers, or RAM the
    /// kernel lends read-only such as the initrd.
    Phys { base: u64, device: bool },
}

pub struct Pmo {
    pub size: u64,
    pub backing: Backing,
    /// The quota its frames are charged to (its record is not charged).
    pub quota: Id,
    /// Pages charged to another quota: the quota of whoever touched them first when this
    /// object's own quota had no room (see [`Pmo::frame_for`]). Usually empty.
    foreign: BTreeMap<u64, Id>,
    /// References: caps plus mappings.
    pub refs: u32,
}

impl Drop for Pmo {
    /// The object no longer holds its quota (see [`Pmo::new`]).
    fn drop(&mut self) {
        super::quota::QUOTAS.lock().leave(self.quota);
    }
}

impl Pmo {
    /// Every memory object holds its quota as a member does, so the quota outlives it: a page
    /// allocated long after the quota's last capability went is still charged to a live quota.
    fn new(size: u64, backing: Backing, quota: Id) -> Self {
        super::quota::QUOTAS.lock().join(quota);
        Self { size, backing, quota, foreign: BTreeMap::new(), refs: 0 }
    }

    /// Anonymous memory whose pages are charged to `quota` as they are allocated.
    pub fn anonymous(size: u64, quota: Id) -> Self {
        Self::new(size, Backing::Anonymous { pages: BTreeMap::new() }, quota)
    }

    /// Allocates `size` bytes of zeroed contiguous frames, charged to `quota`.
    pub fn contiguous(size: u64, quota: Id) -> Result<Self, Error> {
        let frames = size.div_ceil(PAGE_SIZE) as usize;
        let base = alloc_frames(quota, frames)?;
        for i in 0..frames.next_power_of_two() {
            hal::zero_frame(base + i as u64 * PAGE_SIZE);
        }
        Ok(Self::new(size, Backing::Contiguous { base, frames }, quota))
    }

    /// Device registers (no RAM, nothing charged).
    pub fn device(base: u64, size: u64, quota: Id) -> Self {
        Self::new(size, Backing::Phys { base, device: true }, quota)
    }

    /// A view of RAM the PMO does not own (the initrd; nothing charged).
    pub fn borrowed_ram(base: u64, size: u64, quota: Id) -> Self {
        Self::new(size, Backing::Phys { base, device: false }, quota)
    }

    /// The frame backing page `index`, allocating a zeroed one for anonymous memory when `alloc`.
    pub fn frame(&mut self, index: u64, alloc: bool) -> Result<Option<u64>, Error> {
        self.frame_charged(index, alloc, None)
    }

    /// [`Self::frame`] for a demand fault by a process (or VM) charged to `toucher`: a new page
    /// is charged to this object's quota, or, when that has no room and the toucher is someone
    /// else, to the toucher's. So a client whose group is full cannot make a service that maps
    /// the client's buffer die for want of memory: the service pays for the page it touched,
    /// and is refused only when its own group is full.
    pub fn frame_for(&mut self, index: u64, toucher: Id) -> Result<Option<u64>, Error> {
        self.frame_charged(index, true, Some(toucher).filter(|&t| t != self.quota))
    }

    fn frame_charged(&mut self, index: u64, alloc: bool, fallback: Option<Id>) -> Result<Option<u64>, Error> {
        if index >= self.size.div_ceil(PAGE_SIZE) {
            return Err(Error::Invalid);
        }
        match &mut self.backing {
            Backing::Anonymous { pages } => {
                if let Some(&pa) = pages.get(&index) {
                    return Ok(Some(pa));
                }
                if !alloc {
                    return Ok(None);
                }
                let pa = match (alloc_frames(self.quota, 1), fallback) {
                    (Ok(pa), _) => pa,
                    (Err(Error::NoMemory), Some(toucher)) => {
                        let pa = alloc_frames(toucher, 1)?;
                        self.foreign.insert(index, toucher);
                        pa
                    }
                    (Err(e), _) => return Err(e),
                };
                hal::zero_frame(pa);
                pages.insert(index, pa);
                Ok(Some(pa))
            }
            Backing::Contiguous { base, .. } | Backing::Phys { base, .. } => Ok(Some(*base + index * PAGE_SIZE)),
        }
    }

    /// Whether mappings of this PMO use device memory attributes.
    pub fn is_device(&self) -> bool {
        matches!(self.backing, Backing::Phys { device: true, .. })
    }

    /// Frames of RAM this PMO holds now.
    pub fn resident_frames(&self) -> usize {
        match &self.backing {
            Backing::Anonymous { pages } => pages.len(),
            Backing::Contiguous { frames, .. } => *frames,
            Backing::Phys { .. } => 0,
        }
    }

    /// Copies `bytes` into the object at `offset` (allocating pages as needed). All or nothing:
    /// every page is allocated before any byte is copied, and when one cannot be, the pages this
    /// call allocated are given back.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        self.prepare_write(offset, bytes.len())?;
        for (page, in_page, range) in pieces(offset, bytes.len()) {
            let pa = self.frame(page, false)?.ok_or(Error::NoMemory)?;
            hal::copy_to_phys(pa + in_page, &bytes[range]);
        }
        Ok(())
    }

    /// Copies RAM into the object at `offset`, in order: `sources` are (physical address,
    /// length) pieces, e.g. the pages of a user buffer the caller has checked and faulted in.
    /// All or nothing, as [`Self::write`]; no bounce buffer, and a page the write covers whole is
    /// not zeroed first.
    pub fn write_from_phys(&mut self, offset: u64, sources: &[(u64, usize)]) -> Result<(), Error> {
        let len = sources.iter().map(|&(_, n)| n).sum();
        self.prepare_write(offset, len)?;
        let mut at = offset;
        for &(src, n) in sources {
            for (page, in_page, range) in pieces(at, n) {
                let pa = self.frame(page, false)?.ok_or(Error::NoMemory)?;
                hal::copy_phys(pa + in_page, src + range.start as u64, range.len());
            }
            at += n as u64;
        }
        Ok(())
    }

    /// Checks a write of `len` bytes at `offset` and gives every page it touches a frame (all
    /// or none). A new frame is zeroed unless the write covers its page whole: the caller
    /// overwrites it before the kernel lock is dropped, so nobody sees its old contents.
    fn prepare_write(&mut self, offset: u64, len: usize) -> Result<(), Error> {
        self.check_range(offset, len as u64)?;
        let quota = self.quota;
        let Backing::Anonymous { pages } = &mut self.backing else { return Ok(()) };
        let mut added = alloc::vec::Vec::new();
        for (page, _, range) in pieces(offset, len) {
            if pages.contains_key(&page) {
                continue;
            }
            let pa = match alloc_frames(quota, 1) {
                Ok(pa) => pa,
                Err(e) => {
                    self.forget_pages(&added);
                    return Err(e);
                }
            };
            if range.len() as u64 != PAGE_SIZE {
                hal::zero_frame(pa);
            }
            pages.insert(page, pa);
            added.push(page);
        }
        Ok(())
    }

    /// Frees anonymous pages by index (undoing a failed write; nothing maps them yet).
    fn forget_pages(&mut self, indices: &[u64]) {
        if let Backing::Anonymous { pages } = &mut self.backing {
            for i in indices {
                if let Some(pa) = pages.remove(i) {
                    free_frames(self.quota, pa, 1);
                }
            }
        }
    }

    /// Copies from the object at `offset` into `out` (untouched anonymous pages read as zeros).
    pub fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        self.check_range(offset, out.len() as u64)?;
        for (page, in_page, range) in pieces(offset, out.len()) {
            match self.frame(page, false)? {
                Some(pa) => hal::copy_from_phys(pa + in_page, &mut out[range]),
                None => out[range].fill(0),
            }
        }
        Ok(())
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<(), Error> {
        if matches!(self.backing, Backing::Phys { .. }) {
            return Err(Error::Invalid);
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::Invalid),
        }
    }

    /// Gives every RAM frame back (called when the last reference goes).
    pub fn release(&mut self) {
        match &mut self.backing {
            Backing::Anonymous { pages } if self.foreign.is_empty() => free_pages(self.quota, core::mem::take(pages).into_values()),
            Backing::Anonymous { pages } => {
                for (index, pa) in core::mem::take(pages) {
                    free_frames(self.foreign.get(&index).copied().unwrap_or(self.quota), pa, 1);
                }
                self.foreign.clear();
            }
            Backing::Contiguous { base, frames } => {
                if *frames != 0 {
                    free_frames(self.quota, *base, *frames);
                }
                *frames = 0;
            }
            Backing::Phys { .. } => {}
        }
    }
}

/// Splits `len` bytes at object offset `offset` into per-page pieces: (page index, offset in the
/// page, range in the caller's buffer).
fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (u64, u64, core::ops::Range<usize>)> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let pos = offset + done as u64;
        let n = ((PAGE_SIZE - pos % PAGE_SIZE) as usize).min(len - done);
        let piece = (pos / PAGE_SIZE, pos % PAGE_SIZE, done..done + n);
        done += n;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_at_page_boundaries() {
        let p: Vec<_> = pieces(4090, 10).collect();
        assert_eq!(p, vec![(0, 4090, 0..6), (1, 0, 6..10)]);
        assert_eq!(pieces(0, 0).count(), 0);
        assert_eq!(pieces(8192, 4096).collect::<Vec<_>>(), vec![(2, 0, 0..4096)]);
    }
}
