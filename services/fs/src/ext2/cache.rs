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
    /// Directory blocks (their order against inodes depends on the operations pending: see
    /// [`NameOrder`]).
    Dir,
    /// Everything else: superblock, descriptors, bitmaps, inodes, indirect blocks.
    Meta,
}

/// What the pending namespace changes do, which decides whether directory blocks go before or
/// after inodes. e2fsck -p clears a directory entry whose inode is unused, but stops at a live
/// inode that no entry names ("unattached inode"). So entries that appear (create, link, the new
/// name of a rename) must reach the disk before their inodes do, and entries that disappear
/// (unlink, rmdir, the old name of a rename) after their inodes have died. The two kinds are
/// never pending together: switching writes everything back first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NameOrder {
    /// Names are being added: directory blocks first.
    Adding,
    /// Names are being removed: inodes first.
    Removing,
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
    /// The namespace changes pending since the last write-back.
    order: Option<NameOrder>,
}

/// The fewest blocks a cache holds: one operation touches at most a handful of blocks at once.
const MIN_BLOCKS: usize = 16;

impl BlockCache {
    pub fn new(dev: Box<dyn BlockDevice>, block_size: usize, capacity: usize) -> Self {
        Self {
            dev,
            block_size,
            capacity: capacity.max(MIN_BLOCKS),
            slots: BTreeMap::new(),
            clock: 0,
            order: None,
        }
    }

    pub fn into_device(self) -> Box<dyn BlockDevice> {
        self.dev
    }

    fn offset(&self, blk: u64) -> Result<u64, Errno> {
        blk.checked_mul(self.block_size as u64)
            .ok_or(Errno::Corrupt)
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
            self.slots.insert(
                blk,
                Slot {
                    buf,
                    dirty: None,
                    new: false,
                    last_use: 0,
                },
            );
        }
        self.clock += 1;
        let clock = self.clock;
        let slot = self.slots.get_mut(&blk).ok_or(Errno::Io)?;
        slot.last_use = clock;
        Ok(slot)
    }

    /// Whether `blk` is in the cache.
    pub fn contains(&self, blk: u64) -> bool {
        self.slots.contains_key(&blk)
    }

    /// Most blocks [`BlockCache::read_run`] brings in at once: half the cache, so a run never
    /// pushes out what the operation reading it still needs.
    pub fn run_limit(&self) -> usize {
        self.capacity / 2
    }

    /// Reads blocks `first .. first + count` from the device in one request (the device splits
    /// what its requests cannot hold) and keeps those not cached already: a cached block, clean
    /// or dirty, is at least as new as the device's copy. Callers pass a run they have checked
    /// against the block count.
    pub fn read_run(&mut self, first: u64, count: usize) -> Result<(), Errno> {
        let count = count.min(self.run_limit());
        let mut buf = vec![0u8; count * self.block_size];
        let at = self.offset(first)?;
        self.dev.read_at(at, &mut buf)?;
        for (i, block) in buf.chunks(self.block_size).enumerate() {
            let blk = first + i as u64;
            if self.slots.contains_key(&blk) {
                continue;
            }
            self.make_room()?;
            self.clock += 1;
            self.slots.insert(blk, Slot { buf: block.to_vec(), dirty: None, new: false, last_use: self.clock });
        }
        Ok(())
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

    /// Makes room for one more block. When full, drops the least recently used eighth of the clean
    /// blocks at once (one scan serves many misses); if every block is dirty, writes everything
    /// back first.
    fn make_room(&mut self) -> Result<(), Errno> {
        if self.slots.len() < self.capacity {
            return Ok(());
        }
        if !self.slots.values().any(|s| s.dirty.is_none()) {
            self.write_back()?;
        }
        let mut clean: Vec<(u64, u64)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.dirty.is_none())
            .map(|(b, s)| (s.last_use, *b))
            .collect();
        let drop = (self.capacity / 8).clamp(1, clean.len().max(1));
        if drop < clean.len() {
            clean.select_nth_unstable(drop - 1);
        }
        for &(_, b) in clean.iter().take(drop) {
            self.slots.remove(&b);
        }
        Ok(())
    }

    /// Announces a namespace change of kind `op`: if changes of the other kind are pending,
    /// everything is written back first.
    pub fn begin(&mut self, op: NameOrder) -> Result<(), Errno> {
        if self.order.is_some_and(|o| o != op) && self.slots.values().any(|s| s.dirty.is_some()) {
            self.write_back()?;
        }
        self.order = Some(op);
        Ok(())
    }

    /// Whether any block is dirty.
    pub fn has_dirty(&self) -> bool {
        self.slots.values().any(|s| s.dirty.is_some())
    }

    /// Writes every dirty block back: data and new blocks, flush; then directory blocks and the
    /// other metadata in the order the pending namespace changes need, each followed by a flush.
    pub fn write_back(&mut self) -> Result<(), Errno> {
        let first = |s: &Slot| s.dirty == Some(BlockKind::Data) || (s.dirty.is_some() && s.new);
        let dirs = |s: &Slot| s.dirty == Some(BlockKind::Dir);
        let meta = |s: &Slot| s.dirty.is_some();
        self.write_phase(first)?;
        self.dev.flush()?;
        if self.order == Some(NameOrder::Removing) {
            self.write_phase(|s| s.dirty == Some(BlockKind::Meta))?;
            self.dev.flush()?;
            self.write_phase(meta)?;
        } else {
            if self.slots.values().any(dirs) {
                self.write_phase(dirs)?;
                self.dev.flush()?;
            }
            self.write_phase(meta)?;
        }
        self.order = None;
        self.dev.flush()
    }

    /// Writes the dirty blocks `due` picks, consecutive ones together (up to [`MAX_RUN_BYTES`]
    /// per device write: one request instead of one per block).
    fn write_phase(&mut self, due: impl Fn(&Slot) -> bool) -> Result<(), Errno> {
        let bs = self.block_size as u64;
        let max_run = (MAX_RUN_BYTES / self.block_size).max(1) as u64;
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = 0u64;
        let mut run_len = 0u64;
        for (&blk, slot) in self.slots.iter_mut() {
            if !due(slot) {
                continue;
            }
            if run_len > 0 && (blk != run_start + run_len || run_len == max_run) {
                let at = run_start.checked_mul(bs).ok_or(Errno::Corrupt)?;
                self.dev.write_at(at, &run)?;
                run.clear();
                run_len = 0;
            }
            if run_len == 0 {
                run_start = blk;
            }
            run.extend_from_slice(&slot.buf);
            run_len += 1;
            slot.dirty = None;
            slot.new = false;
        }
        if run_len > 0 {
            let at = run_start.checked_mul(bs).ok_or(Errno::Corrupt)?;
            self.dev.write_at(at, &run)?;
        }
        Ok(())
    }
}

/// The most bytes one write-back request carries.
const MAX_RUN_BYTES: usize = 256 * 1024;
