//! The superblock, the feature flags, the group descriptors, and the [`Layout`]: the geometry
//! derived from them once at mount, validated, plus the map of metadata blocks (superblock
//! copies, descriptor tables, bitmaps, inode tables) that file data must never land in.
//!
//! Only the primary superblock and descriptor table are ever written; backups are left as they
//! are (e2fsck compares only fields that never change here).

use super::MountError;
use super::le::{put_u16, put_u32, u16_at, u32_at};
use crate::block::BlockDevice;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use keel_rt::errno::Errno;

pub(super) const SB_OFFSET: u64 = 1024;
pub(super) const SB_SIZE: usize = 1024;
pub(super) const DESC_SIZE: usize = 32;
const MAGIC: u16 = 0xEF53;
const STATE_VALID: u16 = 1;
const MAX_BLOCK_LOG: u32 = 2; // 4 KiB

/// `s_feature_compat` bits.
pub(super) mod compat {
    pub const HAS_JOURNAL: u32 = 0x4;
    pub const RESIZE_INODE: u32 = 0x10;
    pub const SPARSE_SUPER2: u32 = 0x200;
}

/// `s_feature_incompat` bits.
pub(super) mod incompat {
    pub const FILETYPE: u32 = 0x2;
    pub const FLEX_BG: u32 = 0x200;
    pub const SUPPORTED: u32 = FILETYPE | FLEX_BG;
    pub const NAMES: &[(u32, &str)] = &[
        (0x1, "compression"),
        (0x4, "needs_recovery"),
        (0x8, "journal_dev"),
        (0x10, "meta_bg"),
        (0x40, "extents"),
        (0x80, "64bit"),
        (0x100, "mmp"),
        (0x400, "ea_inode"),
        (0x1000, "dirdata"),
        (0x2000, "metadata_csum_seed"),
        (0x4000, "large_dir"),
        (0x8000, "inline_data"),
        (0x10000, "encrypt"),
        (0x20000, "casefold"),
    ];
}

/// `s_feature_ro_compat` bits.
pub(super) mod ro_compat {
    pub const SPARSE_SUPER: u32 = 0x1;
    pub const LARGE_FILE: u32 = 0x2;
    pub const EXTRA_ISIZE: u32 = 0x40;
    /// What a read-write mount keeps correct.
    pub const WRITABLE: u32 = SPARSE_SUPER | LARGE_FILE | EXTRA_ISIZE;
}

/// The superblock's bytes; the fields that change (state, counts, times, flags) are patched in.
pub(super) struct Superblock {
    raw: Vec<u8>,
}

impl Superblock {
    fn u32(&self, at: usize) -> u32 {
        u32_at(&self.raw, at)
    }
    fn u16(&self, at: usize) -> u16 {
        u16_at(&self.raw, at)
    }
    fn rev(&self) -> u32 {
        self.u32(76)
    }
    pub fn compat(&self) -> u32 {
        if self.rev() == 0 { 0 } else { self.u32(92) }
    }
    pub fn incompat(&self) -> u32 {
        if self.rev() == 0 { 0 } else { self.u32(96) }
    }
    pub fn ro_compat(&self) -> u32 {
        if self.rev() == 0 { 0 } else { self.u32(100) }
    }
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Sets a read-only-compatible feature (only `large_file`, on a revision 1 file system).
    pub fn set_ro_compat(&mut self, bit: u32) -> Result<(), Errno> {
        if self.rev() == 0 {
            return Err(Errno::FBig);
        }
        let v = self.u32(100) | bit;
        put_u32(&mut self.raw, 100, v);
        Ok(())
    }

    /// Whether the last read-write mount ended with an unmount (EXT2_VALID_FS set).
    pub fn was_clean(&self) -> bool {
        self.u16(58) & STATE_VALID != 0
    }

    /// A read-write mount: not clean until unmount, one more mount, mount time.
    pub fn mark_mounted(&mut self, now: u64) {
        let state = self.u16(58) & !STATE_VALID;
        put_u16(&mut self.raw, 58, state);
        let count = self.u16(52).wrapping_add(1);
        put_u16(&mut self.raw, 52, count);
        put_u32(&mut self.raw, 44, now as u32);
    }

    pub fn mark_clean(&mut self, now: u64) {
        let state = self.u16(58) | STATE_VALID;
        put_u16(&mut self.raw, 58, state);
        put_u32(&mut self.raw, 48, now as u32);
    }

    pub fn set_wtime(&mut self, now: u64) {
        put_u32(&mut self.raw, 48, now as u32);
    }

    pub fn set_free_counts(&mut self, blocks: u64, inodes: u64) {
        put_u32(&mut self.raw, 12, blocks as u32);
        put_u32(&mut self.raw, 16, inodes as u32);
    }
}

/// One group descriptor (32 bytes; fields this code does not use are kept as they are).
#[derive(Clone)]
pub(super) struct GroupDesc {
    raw: [u8; DESC_SIZE],
}

impl GroupDesc {
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
    pub fn block_bitmap(&self) -> u64 {
        u32_at(&self.raw, 0) as u64
    }
    pub fn inode_bitmap(&self) -> u64 {
        u32_at(&self.raw, 4) as u64
    }
    pub fn inode_table(&self) -> u64 {
        u32_at(&self.raw, 8) as u64
    }
    pub fn free_blocks(&self) -> u16 {
        u16_at(&self.raw, 12)
    }
    pub fn free_inodes(&self) -> u16 {
        u16_at(&self.raw, 14)
    }
    pub fn used_dirs(&self) -> u16 {
        u16_at(&self.raw, 16)
    }
    pub fn set_free_blocks(&mut self, v: u16) {
        put_u16(&mut self.raw, 12, v)
    }
    pub fn set_free_inodes(&mut self, v: u16) {
        put_u16(&mut self.raw, 14, v)
    }
    pub fn set_used_dirs(&mut self, v: u16) {
        put_u16(&mut self.raw, 16, v)
    }
}

/// The geometry, validated at mount, and the metadata map.
pub(super) struct Layout {
    pub block_size: usize,
    pub blocks_count: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub inodes_per_group: u64,
    pub inodes_count: u64,
    pub inode_size: usize,
    pub first_ino: u64,
    pub groups: u64,
    pub gdt_start: u64,
    /// Directory entries carry the file type.
    pub filetype: bool,
    /// Sorted, disjoint `[start, end)` ranges of metadata blocks.
    meta: Vec<(u64, u64)>,
}

impl Layout {
    /// The metadata blocks, as sorted disjoint `[start, end)` ranges.
    pub fn meta_ranges(&self) -> &[(u64, u64)] {
        &self.meta
    }

    pub fn is_meta(&self, b: u64) -> bool {
        let i = self.meta.partition_point(|r| r.1 <= b);
        i < self.meta.len() && self.meta[i].0 <= b
    }

    /// `b` if it may hold file data or an indirect or directory block; `Corrupt` otherwise.
    pub fn check_data_block(&self, b: u64) -> Result<u64, Errno> {
        if b < self.first_data_block || b >= self.blocks_count || self.is_meta(b) {
            return Err(Errno::Corrupt);
        }
        Ok(b)
    }

    pub fn group_of_block(&self, b: u64) -> u64 {
        (b - self.first_data_block) / self.blocks_per_group
    }

    pub fn group_first_block(&self, g: u64) -> u64 {
        self.first_data_block + g * self.blocks_per_group
    }

    /// Blocks in group `g` (the last group may be short).
    pub fn group_blocks(&self, g: u64) -> u64 {
        let first = self.group_first_block(g);
        (self.blocks_count - first).min(self.blocks_per_group)
    }

    /// Addresses in one indirect block.
    pub fn ptrs_per_block(&self) -> u64 {
        self.block_size as u64 / 4
    }
}

fn corrupt(reason: &str) -> MountError {
    MountError::new(Errno::Corrupt, reason)
}

fn group_has_super(sb: &Superblock, g: u64) -> bool {
    if g == 0 {
        return true;
    }
    if sb.compat() & compat::SPARSE_SUPER2 != 0 {
        return g == sb.u32(0x24C) as u64 || g == sb.u32(0x250) as u64;
    }
    if sb.ro_compat() & ro_compat::SPARSE_SUPER == 0 {
        return true;
    }
    g == 1 || is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7)
}

fn is_power_of(mut n: u64, base: u64) -> bool {
    while n > 1 && n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

/// Reads and validates the superblock and the group descriptors.
pub(super) fn load(
    dev: &mut dyn BlockDevice,
) -> Result<(Superblock, Layout, Vec<GroupDesc>), MountError> {
    if dev.size() < SB_OFFSET + SB_SIZE as u64 {
        return Err(corrupt("device smaller than a superblock"));
    }
    let mut raw = vec![0u8; SB_SIZE];
    dev.read_at(SB_OFFSET, &mut raw)
        .map_err(|e| MountError::new(e, "cannot read the superblock"))?;
    let sb = Superblock { raw };
    if sb.u16(56) != MAGIC {
        return Err(MountError::new(Errno::Inval, "no ext2 magic number"));
    }
    let rev = sb.rev();
    if rev > 1 {
        return Err(MountError::new(
            Errno::Inval,
            format!("unsupported revision {rev}"),
        ));
    }
    let unsupported = sb.incompat() & !incompat::SUPPORTED;
    if unsupported != 0 {
        let name = incompat::NAMES
            .iter()
            .find(|(bit, _)| unsupported & bit != 0)
            .map(|(_, n)| *n);
        let reason = match name {
            Some(n) => format!("unsupported incompat feature {n}"),
            None => format!("unsupported incompat features {unsupported:#x}"),
        };
        return Err(MountError::new(Errno::Inval, reason));
    }
    let log = sb.u32(24);
    if log > MAX_BLOCK_LOG {
        return Err(MountError::new(
            Errno::Inval,
            format!("unsupported block size 1024 << {log}"),
        ));
    }
    let block_size = 1024usize << log;
    let bs = block_size as u64;
    let blocks_count = sb.u32(4) as u64;
    let first_data_block = sb.u32(20) as u64;
    let bpg = sb.u32(32) as u64;
    let ipg = sb.u32(40) as u64;
    let inodes_count = sb.u32(0) as u64;
    if first_data_block != u64::from(block_size == 1024) {
        return Err(corrupt("first data block does not match the block size"));
    }
    if blocks_count <= first_data_block + 1 || blocks_count.saturating_mul(bs) > dev.size() {
        return Err(corrupt("block count out of range (truncated image?)"));
    }
    if bpg < 8 || !bpg.is_multiple_of(8) || bpg > bs * 8 || bpg > 65528 {
        return Err(corrupt("blocks per group out of range"));
    }
    let (inode_size, first_ino) = if rev == 0 {
        (128usize, 11u64)
    } else {
        (sb.u16(88) as usize, sb.u32(84) as u64)
    };
    if inode_size < 128 || inode_size > block_size || !inode_size.is_power_of_two() {
        return Err(corrupt("inode size out of range"));
    }
    let inodes_per_block = (block_size / inode_size) as u64;
    if ipg == 0 || ipg > bs * 8 || ipg > 65536 - inodes_per_block {
        return Err(corrupt("inodes per group out of range"));
    }
    let groups = (blocks_count - first_data_block).div_ceil(bpg);
    if groups.checked_mul(ipg) != Some(inodes_count) {
        return Err(corrupt("inode count does not match the groups"));
    }
    if first_ino < 3 || first_ino > inodes_count {
        return Err(corrupt("first inode out of range"));
    }
    let gdt_start = first_data_block + 1;
    let gdt_blocks = (groups * DESC_SIZE as u64).div_ceil(bs);
    let reserved_gdt = if sb.compat() & compat::RESIZE_INODE != 0 {
        sb.u16(206) as u64
    } else {
        0
    };
    if reserved_gdt > bs / 4 || gdt_start + gdt_blocks + reserved_gdt > blocks_count {
        return Err(corrupt("group descriptor table out of range"));
    }
    let itable_blocks = (ipg * inode_size as u64).div_ceil(bs);

    let mut table = vec![0u8; (gdt_blocks * bs) as usize];
    dev.read_at(gdt_start * bs, &mut table)
        .map_err(|e| MountError::new(e, "cannot read the group descriptors"))?;
    let mut groups_v = Vec::with_capacity(groups as usize);
    let mut meta: Vec<(u64, u64)> = Vec::new();
    if first_data_block > 0 {
        meta.push((0, first_data_block));
    }
    for g in 0..groups {
        let at = g as usize * DESC_SIZE;
        let mut raw = [0u8; DESC_SIZE];
        raw.copy_from_slice(&table[at..at + DESC_SIZE]);
        let gd = GroupDesc { raw };
        let first = first_data_block + g * bpg;
        let in_group = (blocks_count - first).min(bpg);
        if gd.free_blocks() as u64 > in_group
            || gd.free_inodes() as u64 > ipg
            || gd.used_dirs() as u64 > ipg
        {
            return Err(corrupt("group descriptor counts out of range"));
        }
        if group_has_super(&sb, g) {
            let end = first + 1 + gdt_blocks + reserved_gdt;
            if end > blocks_count {
                return Err(corrupt("superblock backup past the end"));
            }
            meta.push((first, end));
        }
        for (start, len) in [
            (gd.block_bitmap(), 1),
            (gd.inode_bitmap(), 1),
            (gd.inode_table(), itable_blocks),
        ] {
            if start < first_data_block || start + len > blocks_count {
                return Err(corrupt("group metadata block out of range"));
            }
            meta.push((start, start + len));
        }
        groups_v.push(gd);
    }
    meta.sort_unstable();
    if meta.windows(2).any(|w| w[0].1 > w[1].0) {
        return Err(corrupt("group metadata blocks overlap"));
    }
    let layout = Layout {
        block_size,
        blocks_count,
        first_data_block,
        blocks_per_group: bpg,
        inodes_per_group: ipg,
        inodes_count,
        inode_size,
        first_ino,
        groups,
        gdt_start,
        filetype: sb.incompat() & incompat::FILETYPE != 0,
        meta,
    };
    Ok((sb, layout, groups_v))
}

/// Why this file system may only be mounted read-only, if it may.
pub(super) fn read_write_refusal(sb: &Superblock) -> Option<alloc::string::String> {
    if sb.compat() & compat::HAS_JOURNAL != 0 {
        return Some("has_journal (ext3): mountable read-only only".into());
    }
    let ro = sb.ro_compat() & !ro_compat::WRITABLE;
    if ro != 0 {
        return Some(format!(
            "read-only compatible features {ro:#x} not supported for writing"
        ));
    }
    None
}
