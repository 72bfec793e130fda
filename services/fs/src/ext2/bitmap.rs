//! Block and inode allocation: the bitmaps, the free counts in the group descriptors (the
//! superblock's totals are summed from them when it is written), and the choice of group.
//!
//! Never hands out a metadata block (a bitmap that claims one is free is `Corrupt`) or a reserved
//! inode; freeing something already free is `Corrupt` (which also bounds any walk that frees).
//!
//! Frees are deferred: a freed block or inode stays marked in use until the next write-back
//! commits it ([`Ext2::commit_frees`]), so nothing freed is reused before the structures that
//! pointed at it are on disk (a power cut can then leak it, never share it between two files).
//! An allocation that finds nothing free while frees are pending writes back and tries again.

use super::Ext2;
use super::cache::BlockKind;
use keel_rt::errno::Errno;

/// The first clear bit in `bits[start..count]`.
fn first_zero(bits: &[u8], start: u64, count: u64) -> Option<u64> {
    let mut i = start;
    while i < count {
        let byte = bits[(i / 8) as usize];
        if byte == 0xff && i.is_multiple_of(8) {
            i += 8;
            continue;
        }
        if byte & (1 << (i % 8)) == 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn bit_is_set(bits: &[u8], i: u64) -> bool {
    bits[(i / 8) as usize] & (1 << (i % 8)) != 0
}

fn set_bit(bits: &mut [u8], i: u64, on: bool) {
    let mask = 1u8 << (i % 8);
    if on {
        bits[(i / 8) as usize] |= mask;
    } else {
        bits[(i / 8) as usize] &= !mask;
    }
}

impl Ext2 {
    /// Allocates a block, trying group `goal` first; `NoSpc` when none is free.
    pub(super) fn alloc_block(&mut self, goal: u64) -> Result<u64, Errno> {
        match self.find_free_block(goal) {
            Err(Errno::NoSpc) if !self.pending_blocks.is_empty() => {
                self.sync_all()?;
                self.find_free_block(goal)
            }
            r => r,
        }
    }

    fn find_free_block(&mut self, goal: u64) -> Result<u64, Errno> {
        let n = self.layout.groups;
        for k in 0..n {
            let g = (goal % n + k) % n;
            if self.groups[g as usize].free_blocks() == 0 {
                continue;
            }
            let bitmap = self.groups[g as usize].block_bitmap();
            let count = self.layout.group_blocks(g);
            let Some(bit) = first_zero(self.cache.read(bitmap)?, 0, count) else {
                continue;
            };
            let b = self.layout.group_first_block(g) + bit;
            if self.layout.is_meta(b) {
                return Err(Errno::Corrupt);
            }
            set_bit(self.cache.write(bitmap, BlockKind::Meta)?, bit, true);
            let gd = &mut self.groups[g as usize];
            gd.set_free_blocks(gd.free_blocks() - 1);
            self.sb_dirty = true;
            return Ok(b);
        }
        Err(Errno::NoSpc)
    }

    /// Frees data (or indirect, directory, attribute) block `b`.
    pub(super) fn free_block(&mut self, b: u64) -> Result<(), Errno> {
        self.layout.check_data_block(b)?;
        let g = self.layout.group_of_block(b);
        let bit = b - self.layout.group_first_block(g);
        let bitmap = self.groups[g as usize].block_bitmap();
        if !bit_is_set(self.cache.read(bitmap)?, bit) || !self.pending_blocks.insert(b) {
            return Err(Errno::Corrupt);
        }
        self.cache.forget(b);
        Ok(())
    }

    /// Clears the bitmap bits of everything freed since the last write-back.
    pub(super) fn commit_frees(&mut self) -> Result<(), Errno> {
        for b in core::mem::take(&mut self.pending_blocks) {
            let g = self.layout.group_of_block(b);
            let bit = b - self.layout.group_first_block(g);
            let bitmap = self.groups[g as usize].block_bitmap();
            set_bit(self.cache.write(bitmap, BlockKind::Meta)?, bit, false);
            let gd = &mut self.groups[g as usize];
            gd.set_free_blocks(gd.free_blocks().saturating_add(1));
            self.sb_dirty = true;
        }
        let ipg = self.layout.inodes_per_group;
        for (ino, dir) in core::mem::take(&mut self.pending_inodes) {
            let index = ino as u64 - 1;
            let (g, bit) = (index / ipg, index % ipg);
            let bitmap = self.groups[g as usize].inode_bitmap();
            set_bit(self.cache.write(bitmap, BlockKind::Meta)?, bit, false);
            let gd = &mut self.groups[g as usize];
            gd.set_free_inodes(gd.free_inodes().saturating_add(1));
            if dir {
                gd.set_used_dirs(gd.used_dirs().saturating_sub(1));
            }
            self.sb_dirty = true;
        }
        Ok(())
    }

    /// The group for a new inode: a directory goes to a group with at least average free inodes
    /// and the most free blocks (spreading directories); a file near its parent.
    fn inode_group(&self, dir: bool, parent_group: u64) -> u64 {
        let n = self.layout.groups;
        if dir {
            let avg = self.free_inodes_total() / n;
            let best = (0..n)
                .filter(|&g| {
                    let gd = &self.groups[g as usize];
                    gd.free_inodes() > 0 && gd.free_inodes() as u64 >= avg
                })
                .max_by_key(|&g| (self.groups[g as usize].free_blocks(), core::cmp::Reverse(g)));
            if let Some(g) = best {
                return g;
            }
        }
        parent_group % n
    }

    /// Allocates an inode; `NoSpc` when none is free.
    pub(super) fn alloc_inode(&mut self, dir: bool, parent: u32) -> Result<u32, Errno> {
        match self.find_free_inode(dir, parent) {
            Err(Errno::NoSpc) if !self.pending_inodes.is_empty() => {
                self.sync_all()?;
                self.find_free_inode(dir, parent)
            }
            r => r,
        }
    }

    fn find_free_inode(&mut self, dir: bool, parent: u32) -> Result<u32, Errno> {
        let ipg = self.layout.inodes_per_group;
        let n = self.layout.groups;
        let start = self.inode_group(dir, (parent as u64).saturating_sub(1) / ipg);
        for k in 0..n {
            let g = (start + k) % n;
            if self.groups[g as usize].free_inodes() == 0 {
                continue;
            }
            let bitmap = self.groups[g as usize].inode_bitmap();
            // Reserved inodes (below s_first_ino) are never handed out, whatever the bitmap says.
            let from = (self.layout.first_ino - 1).saturating_sub(g * ipg).min(ipg);
            let Some(bit) = first_zero(self.cache.read(bitmap)?, from, ipg) else {
                continue;
            };
            set_bit(self.cache.write(bitmap, BlockKind::Meta)?, bit, true);
            let gd = &mut self.groups[g as usize];
            gd.set_free_inodes(gd.free_inodes() - 1);
            if dir {
                gd.set_used_dirs(gd.used_dirs().saturating_add(1));
            }
            self.sb_dirty = true;
            return Ok((g * ipg + bit + 1) as u32);
        }
        Err(Errno::NoSpc)
    }

    /// Frees inode `ino` (its bitmap bit is cleared at the next write-back).
    pub(super) fn free_inode_bit(&mut self, ino: u32, dir: bool) -> Result<(), Errno> {
        let ipg = self.layout.inodes_per_group;
        let index = (ino as u64).checked_sub(1).ok_or(Errno::Corrupt)?;
        let (g, bit) = (index / ipg, index % ipg);
        if g >= self.layout.groups {
            return Err(Errno::Corrupt);
        }
        let bitmap = self.groups[g as usize].inode_bitmap();
        if !bit_is_set(self.cache.read(bitmap)?, bit)
            || self.pending_inodes.insert(ino, dir).is_some()
        {
            return Err(Errno::Corrupt);
        }
        Ok(())
    }
}
