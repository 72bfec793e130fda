//! The on-disk inode: field access on its raw bytes (fields this code does not know, such as the
//! extra space of large inodes, are kept as they are), and reading and writing it through the
//! block cache. An inode number is checked against the inode count before it is located.

use super::Ext2;
use super::cache::BlockKind;
use super::le::{put_u16, put_u32, u16_at, u32_at};
use crate::node::{Ino, Kind};
use alloc::vec;
use alloc::vec::Vec;
use keel_rt::errno::Errno;

pub(super) const ROOT_INO: u32 = 2;
/// `EXT2_INDEX_FL`: the directory has a hashed index (cleared when the directory changes).
pub(super) const INDEX_FL: u32 = 0x1000;
/// Most links an inode may have (`EXT2_LINK_MAX`).
pub(super) const LINK_MAX: u16 = 32000;
/// Bytes of a symlink target kept inside `i_block`.
pub(super) const FAST_SYMLINK_MAX: usize = 59;

const S_IFMT: u16 = 0o170000;

pub(super) struct Inode {
    pub ino: u32,
    raw: Vec<u8>,
}

impl Inode {
    /// A zeroed inode of `size` bytes.
    pub fn empty(ino: u32, size: usize) -> Inode {
        Inode {
            ino,
            raw: vec![0; size],
        }
    }

    pub fn mode(&self) -> u16 {
        u16_at(&self.raw, 0)
    }
    pub fn set_mode(&mut self, v: u16) {
        put_u16(&mut self.raw, 0, v)
    }
    pub fn kind(&self) -> Kind {
        match self.mode() & S_IFMT {
            0o100000 => Kind::File,
            0o040000 => Kind::Dir,
            0o120000 => Kind::Symlink,
            _ => Kind::Other,
        }
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == Kind::Dir
    }
    pub fn uid(&self) -> u32 {
        u16_at(&self.raw, 2) as u32 | (u16_at(&self.raw, 120) as u32) << 16
    }
    pub fn set_uid(&mut self, v: u32) {
        put_u16(&mut self.raw, 2, v as u16);
        put_u16(&mut self.raw, 120, (v >> 16) as u16);
    }
    pub fn gid(&self) -> u32 {
        u16_at(&self.raw, 24) as u32 | (u16_at(&self.raw, 122) as u32) << 16
    }
    pub fn set_gid(&mut self, v: u32) {
        put_u16(&mut self.raw, 24, v as u16);
        put_u16(&mut self.raw, 122, (v >> 16) as u16);
    }
    /// Bytes; for directories only the low 32 bits count (the high word is `i_dir_acl`).
    pub fn size(&self) -> u64 {
        let lo = u32_at(&self.raw, 4) as u64;
        if self.is_dir() {
            lo
        } else {
            lo | (u32_at(&self.raw, 108) as u64) << 32
        }
    }
    pub fn set_size(&mut self, v: u64) {
        put_u32(&mut self.raw, 4, v as u32);
        if !self.is_dir() {
            put_u32(&mut self.raw, 108, (v >> 32) as u32);
        }
    }
    pub fn atime(&self) -> u64 {
        u32_at(&self.raw, 8) as u64
    }
    pub fn ctime(&self) -> u64 {
        u32_at(&self.raw, 12) as u64
    }
    pub fn mtime(&self) -> u64 {
        u32_at(&self.raw, 16) as u64
    }
    pub fn set_atime(&mut self, t: u64) {
        put_u32(&mut self.raw, 8, t as u32)
    }
    pub fn set_ctime(&mut self, t: u64) {
        put_u32(&mut self.raw, 12, t as u32)
    }
    pub fn set_mtime(&mut self, t: u64) {
        put_u32(&mut self.raw, 16, t as u32)
    }
    pub fn set_dtime(&mut self, t: u64) {
        put_u32(&mut self.raw, 20, t as u32)
    }
    pub fn links(&self) -> u16 {
        u16_at(&self.raw, 26)
    }
    pub fn set_links(&mut self, v: u16) {
        put_u16(&mut self.raw, 26, v)
    }
    /// 512-byte units allocated (data, indirect and attribute blocks).
    pub fn sectors(&self) -> u32 {
        u32_at(&self.raw, 28)
    }
    pub fn set_sectors(&mut self, v: u32) {
        put_u32(&mut self.raw, 28, v)
    }
    pub fn flags(&self) -> u32 {
        u32_at(&self.raw, 32)
    }
    pub fn set_flags(&mut self, v: u32) {
        put_u32(&mut self.raw, 32, v)
    }
    pub fn block(&self, i: usize) -> u32 {
        u32_at(&self.raw, 40 + 4 * i)
    }
    pub fn set_block(&mut self, i: usize, v: u32) {
        put_u32(&mut self.raw, 40 + 4 * i, v)
    }
    /// The 60 bytes of `i_block` (a fast symlink's target).
    pub fn block_bytes(&self) -> &[u8] {
        &self.raw[40..100]
    }
    pub fn block_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[40..100]
    }
    /// The extended attribute block, 0 if none.
    pub fn file_acl(&self) -> u32 {
        u32_at(&self.raw, 104)
    }
    pub fn set_file_acl(&mut self, v: u32) {
        put_u32(&mut self.raw, 104, v)
    }
    pub fn set_extra_isize(&mut self, v: u16) {
        if self.raw.len() >= 132 {
            put_u16(&mut self.raw, 128, v)
        }
    }

    /// A symlink whose target lives in `i_block` (no data block besides an attribute block).
    pub fn is_fast_symlink(&self, block_size: usize) -> bool {
        let acl_sectors = if self.file_acl() != 0 {
            (block_size / 512) as u32
        } else {
            0
        };
        self.kind() == Kind::Symlink
            && self.sectors() == acl_sectors
            && self.size() <= FAST_SYMLINK_MAX as u64
    }

    /// True when `i_block` holds block numbers (not a fast symlink's target or a device number).
    pub fn has_block_map(&self, block_size: usize) -> bool {
        match self.kind() {
            Kind::File | Kind::Dir => true,
            Kind::Symlink => !self.is_fast_symlink(block_size),
            Kind::Other => false,
        }
    }
}

impl Ext2 {
    /// `ino` as an inode number of this file system, `Inval` if out of range.
    pub(super) fn ino_arg(&self, ino: Ino) -> Result<u32, Errno> {
        if ino == 0 || ino > self.layout.inodes_count {
            return Err(Errno::Inval);
        }
        Ok(ino as u32)
    }

    /// The block and byte offset of inode `ino` (in range).
    fn inode_location(&self, ino: u32) -> Result<(u64, usize), Errno> {
        if ino == 0 || ino as u64 > self.layout.inodes_count {
            return Err(Errno::Corrupt);
        }
        let index = (ino - 1) as u64;
        let group = index / self.layout.inodes_per_group;
        let within = (index % self.layout.inodes_per_group) * self.layout.inode_size as u64;
        let table = self.groups[group as usize].inode_table();
        let bs = self.layout.block_size as u64;
        Ok((table + within / bs, (within % bs) as usize))
    }

    pub(super) fn read_inode(&mut self, ino: u32) -> Result<Inode, Errno> {
        let (blk, off) = self.inode_location(ino)?;
        let size = self.layout.inode_size;
        let buf = self.cache.read(blk)?;
        Ok(Inode {
            ino,
            raw: buf[off..off + size].to_vec(),
        })
    }

    /// Reads an inode that must be in use (a mode and, unless unlinked and still open, links).
    pub(super) fn read_live_inode(&mut self, ino: u32) -> Result<Inode, Errno> {
        let inode = self.read_inode(ino)?;
        if inode.mode() == 0 || (inode.links() == 0 && !self.orphans.contains(&ino)) {
            return Err(Errno::Corrupt);
        }
        Ok(inode)
    }

    pub(super) fn write_inode(&mut self, inode: &Inode) -> Result<(), Errno> {
        let (blk, off) = self.inode_location(inode.ino)?;
        let buf = self.cache.write(blk, BlockKind::Meta)?;
        buf[off..off + inode.raw.len()].copy_from_slice(&inode.raw);
        Ok(())
    }
}
