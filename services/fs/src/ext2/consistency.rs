//! The checks a read-write mount makes first: each group's bitmaps agree with its free counts,
//! every metadata block is marked in use, and no inode the inode table shows in use is marked
//! free. A file system that fails one would hand out live inodes or blocks a second time (a
//! zeroed inode bitmap makes every new file overwrite an old one), so it is mounted read-only
//! instead, with the first disagreement as the reason. The superblock's free totals are only a
//! summary, kept lazily by Linux: every superblock write recomputes them from the groups. After
//! a mount that did not end cleanly the group free counts are recomputed from the bitmaps first
//! ([`Ext2::recount_free`]); on a clean file system a count that disagrees is damage.
//!
//! This is not e2fsck: blocks that files point at are not walked (a block bitmap that loses a
//! data block's bit but keeps its counts consistent is not caught here).

use super::Ext2;
use alloc::format;
use alloc::string::String;
use keel_rt::errno::Errno;

fn ones(bits: &[u8], count: u64) -> u64 {
    let full = (count / 8) as usize;
    let mut n: u64 = bits[..full].iter().map(|b| b.count_ones() as u64).sum();
    for i in full as u64 * 8..count {
        n += ((bits[(i / 8) as usize] >> (i % 8)) & 1) as u64;
    }
    n
}

fn bit(bits: &[u8], i: u64) -> bool {
    bits[(i / 8) as usize] & (1 << (i % 8)) != 0
}

impl Ext2 {
    /// After a mount that did not end with an unmount (fs killed, power cut): the group free
    /// counts are summaries written in the same batch as the bitmaps, so a crash between the two
    /// leaves them disagreeing. They are set from the bitmaps, as `e2fsck -p` does; the bitmaps
    /// are what allocation trusts. What changed, one phrase per group, or `None` if nothing.
    pub(super) fn recount_free(&mut self) -> Result<Option<String>, Errno> {
        let ipg = self.layout.inodes_per_group;
        let mut changed: alloc::vec::Vec<String> = alloc::vec::Vec::new();
        for g in 0..self.layout.groups {
            let gd = self.groups[g as usize].clone();
            let count = self.layout.group_blocks(g);
            let blocks = count - ones(self.cache.read(gd.block_bitmap())?, count);
            let inodes = ipg - ones(self.cache.read(gd.inode_bitmap())?, ipg);
            let (Ok(blocks), Ok(inodes)) = (u16::try_from(blocks), u16::try_from(inodes)) else { return Err(Errno::Corrupt) };
            if blocks != gd.free_blocks() || inodes != gd.free_inodes() {
                changed.push(format!(
                    "group {g}: {} -> {blocks} free blocks, {} -> {inodes} free inodes",
                    gd.free_blocks(),
                    gd.free_inodes()
                ));
                let gd = &mut self.groups[g as usize];
                gd.set_free_blocks(blocks);
                gd.set_free_inodes(inodes);
                self.sb_dirty = true;
            }
        }
        Ok((!changed.is_empty()).then(|| changed.join("; ")))
    }

    /// The first disagreement between the bitmaps, the group free counts and the inode table, or
    /// `None` when there is none. `Io` if a block cannot be read.
    pub(super) fn inconsistency(&mut self) -> Result<Option<String>, Errno> {
        let ipg = self.layout.inodes_per_group;
        for g in 0..self.layout.groups {
            let gd = self.groups[g as usize].clone();
            let (first, count) = (
                self.layout.group_first_block(g),
                self.layout.group_blocks(g),
            );
            let bits = self.cache.read(gd.block_bitmap())?.to_vec();
            let free = count - ones(&bits, count);
            if free != gd.free_blocks() as u64 {
                return Ok(Some(format!(
                    "group {g}: its block bitmap has {free} free blocks, its descriptor says {}",
                    gd.free_blocks()
                )));
            }
            for &(start, end) in self.layout.meta_ranges() {
                for b in start.max(first)..end.min(first + count) {
                    if !bit(&bits, b - first) {
                        return Ok(Some(format!(
                            "block {b} holds metadata but is marked free in group {g}'s block bitmap"
                        )));
                    }
                }
            }
            let bits = self.cache.read(gd.inode_bitmap())?.to_vec();
            let free = ipg - ones(&bits, ipg);
            if free != gd.free_inodes() as u64 {
                return Ok(Some(format!(
                    "group {g}: its inode bitmap has {free} free inodes, its descriptor says {}",
                    gd.free_inodes()
                )));
            }
            for i in (0..ipg).filter(|&i| !bit(&bits, i)) {
                let ino = (g * ipg + i + 1) as u32;
                let inode = self.read_inode(ino)?;
                if inode.mode() != 0 && inode.links() > 0 {
                    return Ok(Some(format!(
                        "inode {ino} is in use ({} links) but marked free in group {g}'s inode bitmap",
                        inode.links()
                    )));
                }
            }
        }
        Ok(None)
    }
}
