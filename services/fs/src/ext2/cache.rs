//! The block cache: a bounded set of blocks, each clean or dirty, dirty ones tagged as file data
//! or metadata. It owns the device.
//!
//! Write-back is always ordered and always of everything dirty: data blocks and newly allocated
//! blocks (nothing on disk points at them yet: fresh indirect and directory blocks), flush, the
//! other metadata blocks, flush. So a power cut leaves metadata that points only at blocks already
//! on the medium (e2fsck then has at most leaked blocks, counts and link counts to repair). When the cache is
//! full it drops the least recently used clean block; if every block is dirty it writes
//! everything back first. Callers pass block numbers they have checked against the block count.

use crate::block::BlockDevice;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use keel_rt::errno::Errno;

/// What a dirty block holds, which decides its write-back phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BlockKind {
    /// File contents (including a slow symlink's target).
    Data,
    /// Everything else: superblock, descriptors, bitmaps, inodes, indirect and directory blocks.
    Meta,
}

struct Slot {
    buf: Vec<u8>,
    dirty: Option<BlockKind>,
    /// Allocated since the last write-back: written in the first phase whatever its kind.
    new: bool,
    last_use: u64,
}

pub(super) struct BlockCache {
    dev: Box<dyn BlockDevice>,
    block_size: usize,
    capacity: usize,
    slots: BTreeMap<u64, Slot>,
    clock: u64,
}

/// The fewest blocks a cache holds: one operation touches at most a handful of blocks at once.
const MIN_BLOCKS: usize = 16;

impl BlockCache {
    pub fn new(dev: Box<dyn BlockDevice>, block_size: usize, capacity: usize) -> Self {
        Self { dev, block_size, capacity: capacity.max(MIN_BLOCKS), slots: BTreeMap::new(), clock: 0 }
    }

    pub fn into_device(self) -> Box<dyn BlockDevice> {
        self.dev
    }

    fn offset(&self, blk: u64) -> Result<u64, Errno> {
        blk.checked_mul(self.block_size as u64).ok_or(Errno::Corrupt)
    }

    /// The slot of `blk`, loaded (from the device, or zeroed when `read` is false) if absent.
    fn slot(&mut self, blk: u64, read: bool) -> Result<&mut Slot, Errno> {
        if !self.slots.contains_key(&blk) {
            self.make_room()?;
            let mut buf = vec![0u8; self.block_size];
            if read {
                let at = self.offset(blk)?;
                self.dev.read_at(at, &mut buf)?;
            }
            self.slots.insert(blk, Slot { buf, dirty: None, new: false, last_use: 0 });
        }
        self.clock += 1;
        let clock = self.clock;
        let slot = self.slots.get_mut(&blk).ok_or(Errno::Io)?;
        slot.last_use = clock;
        Ok(slot)
    }

    /// The contents of `blk`.
    pub fn read(&mut self, blk: u64) -> Result<&[u8], Errno> {
        Ok(&self.slot(blk, true)?.buf)
    }

    /// The contents of `blk` to change; the block becomes dirty as `kind`.
    pub fn write(&mut self, blk: u64, kind: BlockKind) -> Result<&mut [u8], Errno> {
        let slot = self.slot(blk, true)?;
        slot.dirty = Some(kind);
        Ok(&mut slot.buf)
    }

    /// A newly allocated block, zeroed without reading it, dirty as `kind`.
    pub fn fresh(&mut self, blk: u64, kind: BlockKind) -> Result<&mut [u8], Errno> {
        let slot = self.slot(blk, false)?;
        slot.buf.fill(0);
        slot.dirty = Some(kind);
        slot.new = true;
        Ok(&mut slot.buf)
    }

    /// Drops a block that was freed: its contents no longer matter.
    pub fn forget(&mut self, blk: u64) {
        self.slots.remove(&blk);
    }

    fn make_room(&mut self) -> Result<(), Errno> {
        if self.slots.len() < self.capacity {
            return Ok(());
        }
        if !self.slots.values().any(|s| s.dirty.is_none()) {
            self.write_back()?;
        }
        let victim =
            self.slots.iter().filter(|(_, s)| s.dirty.is_none()).min_by_key(|(_, s)| s.last_use).map(|(b, _)| *b);
        if let Some(b) = victim {
            self.slots.remove(&b);
        }
        Ok(())
    }

    /// Writes every dirty block back: data, flush, metadata, flush.
    pub fn write_back(&mut self) -> Result<(), Errno> {
        self.write_phase(BlockKind::Data)?;
        self.dev.flush()?;
        self.write_phase(BlockKind::Meta)?;
        self.dev.flush()
    }

    fn write_phase(&mut self, kind: BlockKind) -> Result<(), Errno> {
        let bs = self.block_size as u64;
        for (blk, slot) in self.slots.iter_mut() {
            let first_phase = slot.dirty == Some(BlockKind::Data) || (slot.dirty.is_some() && slot.new);
            let due = if kind == BlockKind::Data { first_phase } else { slot.dirty.is_some() };
            if due {
                let at = blk.checked_mul(bs).ok_or(Errno::Corrupt)?;
                self.dev.write_at(at, &slot.buf)?;
                slot.dirty = None;
                slot.new = false;
            }
        }
        Ok(())
    }
}
