//! Directories: a list of blocks of variable-length entries (inode, `rec_len`, name length, file
//! type, name). An entry never crosses a block; inserting splits an entry's slack, deleting merges
//! the entry into the previous one in its block (or clears the inode of a block's first entry).
//!
//! Every entry is checked when a block is parsed (record length at least the name's, a multiple
//! of four, within the block; the inode in range), and a directory's size must be whole mapped
//! blocks, so a walk over a directory is bounded by its size. Changing an indexed (`dir_index`)
//! directory clears its index flag: the linear entries stay valid.

use super::Ext2;
use super::cache::BlockKind;
use super::inode::{INDEX_FL, Inode};
use super::le::{put_u16, put_u32, u16_at, u32_at};
use crate::node::Kind;
use alloc::vec::Vec;
use keel_rt::errno::Errno;

const HEADER: usize = 8;
const MIN_REC_LEN: usize = 12;

/// Bytes an entry with a name of `name_len` bytes needs.
pub(super) fn rec_size(name_len: usize) -> usize {
    (HEADER + name_len + 3) & !3
}

/// The directory-entry file type of `kind`.
pub(super) fn file_type(kind: Kind) -> u8 {
    match kind {
        Kind::File => 1,
        Kind::Dir => 2,
        Kind::Symlink => 7,
        Kind::Other => 0,
    }
}

/// The kind a directory-entry file type names, if it names one this code distinguishes.
pub(super) fn kind_of_type(t: u8) -> Option<Kind> {
    match t {
        1 => Some(Kind::File),
        2 => Some(Kind::Dir),
        7 => Some(Kind::Symlink),
        3..=6 => Some(Kind::Other),
        _ => None,
    }
}

/// One checked entry of a directory block.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub off: usize,
    pub ino: u32,
    pub rec_len: usize,
    pub name_len: usize,
    pub ftype: u8,
}

impl Entry {
    pub fn name<'b>(&self, block: &'b [u8]) -> &'b [u8] {
        &block[self.off + HEADER..self.off + HEADER + self.name_len]
    }
}

/// The entries of one directory block, each checked.
pub(super) fn parse_block(buf: &[u8], inodes_count: u64) -> Result<Vec<Entry>, Errno> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        if off + HEADER > buf.len() {
            return Err(Errno::Corrupt);
        }
        let ino = u32_at(buf, off);
        let rec_len = u16_at(buf, off + 4) as usize;
        let name_len = buf[off + 6] as usize;
        let ftype = buf[off + 7];
        let bad_len =
            rec_len < MIN_REC_LEN || !rec_len.is_multiple_of(4) || off + rec_len > buf.len();
        if bad_len
            || rec_size(name_len) > rec_len
            || ino as u64 > inodes_count
            || (ino != 0 && name_len == 0)
        {
            return Err(Errno::Corrupt);
        }
        out.push(Entry {
            off,
            ino,
            rec_len,
            name_len,
            ftype,
        });
        off += rec_len;
    }
    Ok(out)
}

fn put_entry(buf: &mut [u8], off: usize, rec_len: usize, ino: u32, name: &[u8], ftype: u8) {
    put_u32(buf, off, ino);
    put_u16(buf, off + 4, rec_len as u16);
    buf[off + 6] = name.len() as u8;
    buf[off + 7] = ftype;
    buf[off + HEADER..off + HEADER + name.len()].copy_from_slice(name);
}

/// Where a name was found.
pub(super) struct Found {
    pub blk: u64,
    pub entry: Entry,
    /// The entry before it in the same block.
    pub prev: Option<Entry>,
}

impl Ext2 {
    /// The number of blocks of directory `dir`: whole blocks, no more than it has allocated.
    fn dir_blocks(&self, dir: &Inode) -> Result<u64, Errno> {
        let bs = self.layout.block_size as u64;
        let size = dir.size();
        let allocated = dir.sectors() as u64 / (bs / 512);
        if !size.is_multiple_of(bs) || size / bs > allocated || size / bs > self.layout.blocks_count
        {
            return Err(Errno::Corrupt);
        }
        Ok(size / bs)
    }

    /// Block `i` of directory `dir` (a hole is corrupt) and its parsed entries.
    fn dir_block(&mut self, dir: &Inode, i: u64) -> Result<(u64, Vec<u8>, Vec<Entry>), Errno> {
        let blk = self.bmap(dir, i)?.ok_or(Errno::Corrupt)?;
        let buf = self.cache.read(blk)?.to_vec();
        let entries = parse_block(&buf, self.layout.inodes_count)?;
        Ok((blk, buf, entries))
    }

    fn ftype_byte(&self, kind: Kind) -> u8 {
        if self.layout.filetype {
            file_type(kind)
        } else {
            0
        }
    }

    pub(super) fn find_entry(&mut self, dir: &Inode, name: &[u8]) -> Result<Option<Found>, Errno> {
        for i in 0..self.dir_blocks(dir)? {
            let (blk, buf, entries) = self.dir_block(dir, i)?;
            let mut prev = None;
            for e in entries {
                if e.ino != 0 && e.name(&buf) == name {
                    return Ok(Some(Found {
                        blk,
                        entry: e,
                        prev,
                    }));
                }
                prev = Some(e);
            }
        }
        Ok(None)
    }

    /// Every live entry of `dir` (`.` and `..` included): name, inode, file type byte.
    pub(super) fn list_dir(&mut self, dir: &Inode) -> Result<Vec<(Vec<u8>, u32, u8)>, Errno> {
        let mut out = Vec::new();
        for i in 0..self.dir_blocks(dir)? {
            let (_, buf, entries) = self.dir_block(dir, i)?;
            for e in entries.iter().filter(|e| e.ino != 0) {
                out.push((e.name(&buf).to_vec(), e.ino, e.ftype));
            }
        }
        Ok(out)
    }

    /// True when `dir` holds nothing but `.` and `..`.
    pub(super) fn dir_is_empty(&mut self, dir: &Inode) -> Result<bool, Errno> {
        for i in 0..self.dir_blocks(dir)? {
            let (_, buf, entries) = self.dir_block(dir, i)?;
            if entries
                .iter()
                .any(|e| e.ino != 0 && e.name(&buf) != b"." && e.name(&buf) != b"..")
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Marks `dir` changed (times; the hashed index is no longer valid) and writes it.
    fn dir_changed(&mut self, dir: &mut Inode) -> Result<(), Errno> {
        dir.set_flags(dir.flags() & !INDEX_FL);
        dir.set_mtime(self.now);
        dir.set_ctime(self.now);
        self.write_inode(dir)
    }

    /// Adds `name` → `ino` to `dir`, in a free slot or a new block.
    pub(super) fn add_entry(
        &mut self,
        dir: &mut Inode,
        name: &[u8],
        ino: u32,
        kind: Kind,
    ) -> Result<(), Errno> {
        let need = rec_size(name.len());
        let ftype = self.ftype_byte(kind);
        let blocks = self.dir_blocks(dir)?;
        for i in 0..blocks {
            let (blk, _, entries) = self.dir_block(dir, i)?;
            for e in entries {
                if e.ino == 0 && e.rec_len >= need {
                    put_entry(
                        self.cache.write(blk, BlockKind::Dir)?,
                        e.off,
                        e.rec_len,
                        ino,
                        name,
                        ftype,
                    );
                    return self.dir_changed(dir);
                }
                let used = rec_size(e.name_len);
                if e.ino != 0 && e.rec_len >= used + need {
                    let buf = self.cache.write(blk, BlockKind::Dir)?;
                    put_u16(buf, e.off + 4, used as u16);
                    put_entry(buf, e.off + used, e.rec_len - used, ino, name, ftype);
                    return self.dir_changed(dir);
                }
            }
        }
        let bs = self.layout.block_size;
        let new_size = dir.size() + bs as u64;
        if new_size > u32::MAX as u64 {
            return Err(Errno::FBig);
        }
        let blk = match self.bmap_alloc(dir, blocks) {
            Ok((blk, _)) => blk,
            Err(e) => {
                self.write_inode(dir)?;
                return Err(e);
            }
        };
        put_entry(
            self.cache.fresh(blk, BlockKind::Dir)?,
            0,
            bs,
            ino,
            name,
            ftype,
        );
        dir.set_size(new_size);
        self.dir_changed(dir)
    }

    /// Removes `name` from `dir`; its inode number.
    pub(super) fn remove_entry(&mut self, dir: &mut Inode, name: &[u8]) -> Result<u32, Errno> {
        let found = self.find_entry(dir, name)?.ok_or(Errno::NoEnt)?;
        let buf = self.cache.write(found.blk, BlockKind::Dir)?;
        match found.prev {
            Some(p) => put_u16(buf, p.off + 4, (p.rec_len + found.entry.rec_len) as u16),
            None => put_u32(buf, found.entry.off, 0),
        }
        self.dir_changed(dir)?;
        Ok(found.entry.ino)
    }

    /// Points the existing entry `name` of `dir` at `ino`.
    pub(super) fn retarget_entry(
        &mut self,
        dir: &mut Inode,
        name: &[u8],
        ino: u32,
        kind: Kind,
    ) -> Result<(), Errno> {
        let found = self.find_entry(dir, name)?.ok_or(Errno::Corrupt)?;
        let ftype = self.ftype_byte(kind);
        let buf = self.cache.write(found.blk, BlockKind::Dir)?;
        put_u32(buf, found.entry.off, ino);
        buf[found.entry.off + 7] = ftype;
        self.dir_changed(dir)
    }

    /// Writes the first block of new directory `ino` (`.` and `..`) into block `blk`.
    pub(super) fn init_dir_block(&mut self, blk: u64, ino: u32, parent: u32) -> Result<(), Errno> {
        let bs = self.layout.block_size;
        let ftype = self.ftype_byte(Kind::Dir);
        let buf = self.cache.fresh(blk, BlockKind::Dir)?;
        put_entry(buf, 0, MIN_REC_LEN, ino, b".", ftype);
        put_entry(buf, MIN_REC_LEN, bs - MIN_REC_LEN, parent, b"..", ftype);
        Ok(())
    }
}
