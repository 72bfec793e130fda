//! The block map: a file's logical block to its physical block through `i_block` (12 direct
//! slots, then single, double and triple indirect blocks), allocation on write, and freeing on
//! truncation.
//!
//! Every pointer read from disk is checked to be a data block before it is followed or freed;
//! the depth is at most three, and freeing a block twice is `Corrupt`, so a corrupt map (a loop,
//! shared blocks) ends in an error, not a hang.

use super::Ext2;
use super::cache::BlockKind;
use super::inode::Inode;
use super::le::{put_u32, u32_at};
use alloc::vec::Vec;
use keel_rt::errno::Errno;

const N_DIRECT: u64 = 12;

/// Where a logical block's pointer lives: the `i_block` slot, then the index in each indirect
/// block on the way down (`depth` of them).
struct MapPath {
    slot: usize,
    depth: usize,
    index: [u64; 3],
}

impl Ext2 {
    /// Logical blocks a file may have.
    pub(super) fn max_file_blocks(&self) -> u64 {
        let apb = self.layout.ptrs_per_block();
        N_DIRECT + apb + apb * apb + apb * apb * apb
    }

    fn map_path(&self, lblk: u64) -> Result<MapPath, Errno> {
        let apb = self.layout.ptrs_per_block();
        if lblk < N_DIRECT {
            return Ok(MapPath {
                slot: lblk as usize,
                depth: 0,
                index: [0; 3],
            });
        }
        let mut l = lblk - N_DIRECT;
        if l < apb {
            return Ok(MapPath {
                slot: 12,
                depth: 1,
                index: [l, 0, 0],
            });
        }
        l -= apb;
        if l < apb * apb {
            return Ok(MapPath {
                slot: 13,
                depth: 2,
                index: [l / apb, l % apb, 0],
            });
        }
        l -= apb * apb;
        if l < apb * apb * apb {
            return Ok(MapPath {
                slot: 14,
                depth: 3,
                index: [l / (apb * apb), (l / apb) % apb, l % apb],
            });
        }
        Err(Errno::FBig)
    }

    /// The physical block of logical block `lblk`, `None` for a hole.
    pub(super) fn bmap(&mut self, inode: &Inode, lblk: u64) -> Result<Option<u64>, Errno> {
        let path = self.map_path(lblk)?;
        let mut b = inode.block(path.slot) as u64;
        for &i in &path.index[..path.depth] {
            if b == 0 {
                return Ok(None);
            }
            self.layout.check_data_block(b)?;
            b = u32_at(self.cache.read(b)?, i as usize * 4) as u64;
        }
        if b == 0 {
            return Ok(None);
        }
        Ok(Some(self.layout.check_data_block(b)?))
    }

    /// Allocates a block owned by `inode` (counted in its `i_blocks`).
    fn alloc_owned(&mut self, inode: &mut Inode) -> Result<u64, Errno> {
        let per_block = (self.layout.block_size / 512) as u32;
        let sectors = inode.sectors().checked_add(per_block).ok_or(Errno::FBig)?;
        let goal = (inode.ino as u64 - 1) / self.layout.inodes_per_group;
        let b = self.alloc_block(goal)?;
        inode.set_sectors(sectors);
        Ok(b)
    }

    /// Frees a block owned by `inode`.
    pub(super) fn release(&mut self, inode: &mut Inode, b: u64) -> Result<(), Errno> {
        self.free_block(b)?;
        let per_block = (self.layout.block_size / 512) as u32;
        inode.set_sectors(inode.sectors().saturating_sub(per_block));
        Ok(())
    }

    /// The physical block of `lblk`, allocating it and any missing indirect blocks; true when
    /// the data block is new (the caller fills it: its cache slot is not loaded). On an error
    /// `inode` may have changed (indirect blocks added) and must still be written.
    pub(super) fn bmap_alloc(
        &mut self,
        inode: &mut Inode,
        lblk: u64,
    ) -> Result<(u64, bool), Errno> {
        let path = self.map_path(lblk)?;
        let mut b = inode.block(path.slot) as u64;
        let mut new = false;
        if b == 0 {
            b = self.alloc_owned(inode)?;
            inode.set_block(path.slot, b as u32);
            new = true;
            if path.depth > 0 {
                self.cache.fresh(b, BlockKind::Meta)?;
            }
        } else {
            self.layout.check_data_block(b)?;
        }
        for (level, &i) in path.index[..path.depth].iter().enumerate() {
            let parent = b;
            b = u32_at(self.cache.read(parent)?, i as usize * 4) as u64;
            if b == 0 {
                b = self.alloc_owned(inode)?;
                put_u32(
                    self.cache.write(parent, BlockKind::Meta)?,
                    i as usize * 4,
                    b as u32,
                );
                new = true;
                if level + 1 < path.depth {
                    self.cache.fresh(b, BlockKind::Meta)?;
                }
            } else {
                self.layout.check_data_block(b)?;
                new = false;
            }
        }
        Ok((b, new))
    }

    /// Frees every block of `inode` from logical block `first` on, and the indirect blocks that
    /// become empty. The caller writes the inode.
    pub(super) fn free_blocks_from(&mut self, inode: &mut Inode, first: u64) -> Result<(), Errno> {
        for i in first.min(N_DIRECT)..N_DIRECT {
            let b = inode.block(i as usize) as u64;
            if b != 0 {
                self.release(inode, b)?;
                inode.set_block(i as usize, 0);
            }
        }
        let apb = self.layout.ptrs_per_block();
        let mut base = N_DIRECT;
        let mut span = 1u64;
        for (slot, depth) in [(12usize, 1u32), (13, 2), (14, 3)] {
            span *= apb;
            let root = inode.block(slot) as u64;
            if root != 0 && first < base + span {
                self.layout.check_data_block(root)?;
                if self.free_tree(inode, root, depth, first.saturating_sub(base))? {
                    self.release(inode, root)?;
                    inode.set_block(slot, 0);
                }
            }
            base += span;
        }
        Ok(())
    }

    /// Frees the blocks under indirect block `blk` (`depth` levels above the data) from relative
    /// logical block `from` on; true when `blk` no longer points anywhere (the caller frees it).
    fn free_tree(
        &mut self,
        inode: &mut Inode,
        blk: u64,
        depth: u32,
        from: u64,
    ) -> Result<bool, Errno> {
        let apb = self.layout.ptrs_per_block();
        let mut ptrs: Vec<u32> = self
            .cache
            .read(blk)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let span = apb.pow(depth - 1);
        let mut all_zero = true;
        let mut changed = false;
        for i in 0..apb {
            let p = ptrs[i as usize] as u64;
            if p == 0 {
                continue;
            }
            let lo = i * span;
            if lo + span <= from {
                all_zero = false;
                continue;
            }
            self.layout.check_data_block(p)?;
            let free_it =
                depth == 1 || self.free_tree(inode, p, depth - 1, from.saturating_sub(lo))?;
            if free_it {
                self.release(inode, p)?;
                ptrs[i as usize] = 0;
                changed = true;
            } else {
                all_zero = false;
            }
        }
        if changed && !all_zero {
            let buf = self.cache.write(blk, BlockKind::Meta)?;
            for (i, p) in ptrs.iter().enumerate() {
                put_u32(buf, i * 4, *p);
            }
        }
        Ok(all_zero)
    }
}
