//! ext2 (revision 0 and 1, 1-4 KiB blocks) on a [`BlockDevice`], read-write.
//!
//! The on-disk image is untrusted input: every value read from it (block and inode numbers,
//! directory record lengths, sizes, group geometry) is checked before use, and an inconsistent
//! image gives `Errno::Corrupt`, never a panic, an unbounded allocation or a hang. Every block goes
//! through one bounded write-back [`cache`](cache::BlockCache) that knows file data from metadata,
//! so write-back is ordered: data, flush, metadata, flush.
//!
//! Files, one job each:
//! - `superblock`: the superblock, feature flags, group descriptors and the map of metadata blocks;
//! - `inode`: the on-disk inode and where it lives;
//! - `bmap`: logical-to-physical block mapping (direct, indirect, double, triple) and truncation;
//! - `dir`: directory blocks (entries, `rec_len` splitting and merging);
//! - `bitmap`: block and inode bitmaps, free counts, group choice;
//! - `cache`: the block cache;
//! - `fs`: the [`FileSystem`](crate::node::FileSystem) implementation;
//! - `check`: [`check::exercise`], the fuzzing entry point.
//!
//! Supported: the `filetype`, `sparse_super`, `sparse_super2`, `large_file`, `dir_index` (read as
//! linear directories; the index flag is cleared on change), `resize_inode` (reserved blocks are
//! never touched), `ext_attr` (attributes are ignored, the block's reference is dropped on free)
//! and `flex_bg` features. `has_journal` (ext3) mounts read-only; other unknown read-only-compatible
//! features also mount read-only only; unknown incompatible features refuse to mount.
//!
//! Mount lifecycle: [`Ext2::mount`] marks a read-write file system not clean on disk (and counts
//! the mount); [`Ext2::unmount`] frees inodes whose last name went away, writes everything back,
//! marks the file system clean and returns the device.

mod bitmap;
mod bmap;
mod cache;
pub mod check;
mod consistency;
mod dir;
mod fs;
mod inode;
mod superblock;

use crate::block::BlockDevice;
use ::alloc::boxed::Box;
use ::alloc::collections::{BTreeMap, BTreeSet};
use ::alloc::string::String;
use ::alloc::vec::Vec;
use core::fmt;
use keel_rt::errno::Errno;

use cache::BlockCache;
use superblock::{GroupDesc, Layout, Superblock};

/// Mount options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// Refuse every change (a read-only device mounts read-only whatever this says).
    pub read_only: bool,
    /// Blocks the cache holds (at least 16); dirty blocks are written back when it is full.
    pub cache_blocks: usize,
    /// The time of the mount, seconds since the epoch (the superblock's mount time).
    pub now: u64,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            read_only: false,
            cache_blocks: 256,
            now: 0,
        }
    }
}

/// Why a mount failed: the error code and a sentence for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountError {
    pub errno: Errno,
    pub reason: String,
}

impl MountError {
    fn new(errno: Errno, reason: impl Into<String>) -> Self {
        Self {
            errno,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ext2: {} ({})", self.reason, self.errno.name())
    }
}

impl From<MountError> for Errno {
    fn from(e: MountError) -> Errno {
        e.errno
    }
}

/// A mounted ext2 file system.
pub struct Ext2 {
    cache: BlockCache,
    layout: Layout,
    sb: Superblock,
    groups: Vec<GroupDesc>,
    read_only: bool,
    /// Why a read-write mount was made read-only, if it was (see `consistency`).
    degraded: Option<String>,
    /// The group free counts a mount after an unclean end set from the bitmaps, if any.
    recounted: Option<String>,
    now: u64,
    /// The superblock or a group descriptor changed since they were last put in the cache.
    sb_dirty: bool,
    /// Inodes whose link count reached zero and that `evict` has not freed yet.
    orphans: BTreeSet<u32>,
    /// Blocks freed since the last write-back (still marked in use on disk and in the bitmap).
    pending_blocks: BTreeSet<u64>,
    /// Inodes freed since the last write-back, and whether each was a directory.
    pending_inodes: BTreeMap<u32, bool>,
}

impl Ext2 {
    /// Mounts the ext2 file system on `dev`. Fails with `Inval` (unsupported features or
    /// revision), `Corrupt` (inconsistent superblock or group descriptors) or `Io`.
    pub fn mount(dev: Box<dyn BlockDevice>, opts: MountOptions) -> Result<Ext2, MountError> {
        let mut dev = dev;
        let (sb, layout, groups) = superblock::load(dev.as_mut())?;
        let read_only = opts.read_only || dev.read_only();
        if !read_only && let Some(why) = superblock::read_write_refusal(&sb) {
            return Err(MountError::new(Errno::RoFs, why));
        }
        let cache = BlockCache::new(dev, layout.block_size, opts.cache_blocks);
        let mut fs = Ext2 {
            cache,
            layout,
            sb,
            groups,
            read_only,
            degraded: None,
            recounted: None,
            now: opts.now,
            sb_dirty: false,
            orphans: BTreeSet::new(),
            pending_blocks: BTreeSet::new(),
            pending_inodes: BTreeMap::new(),
        };
        if !read_only {
            if !fs.sb.was_clean() {
                fs.recounted = fs
                    .recount_free()
                    .map_err(|e| MountError::new(e, "cannot read the bitmaps"))?;
            }
            if let Some(why) = fs
                .inconsistency()
                .map_err(|e| MountError::new(e, "cannot read the bitmaps and inode tables"))?
            {
                fs.read_only = true;
                fs.degraded = Some(why);
                return Ok(fs);
            }
            fs.sb.mark_mounted(opts.now);
            fs.sb_dirty = true;
            fs.write_super()
                .map_err(|e| MountError::new(e, "cannot write the superblock"))?;
            fs.cache
                .write_back()
                .map_err(|e| MountError::new(e, "cannot write the superblock"))?;
        }
        Ok(fs)
    }

    /// Frees unlinked inodes, writes everything back, marks the file system clean, and returns
    /// the device. On an error the device is lost with the file system (the image stays as
    /// consistent as the last completed write-back).
    pub fn unmount(mut self) -> Result<Box<dyn BlockDevice>, Errno> {
        self.finish()?;
        Ok(self.cache.into_device())
    }

    /// What unmounting does to the medium (the file system must not be used afterwards): frees
    /// unlinked inodes, writes everything back, marks the superblock clean, flushes.
    pub(crate) fn finish(&mut self) -> Result<(), Errno> {
        if !self.read_only {
            let orphans: Vec<u32> = self.orphans.iter().copied().collect();
            for ino in orphans {
                self.free_inode_and_blocks(ino)?;
            }
            // Everything else is on the medium before the superblock says "clean".
            self.sync_all()?;
            self.sb.mark_clean(self.now);
            self.sb_dirty = true;
            self.sync_all()?;
        }
        Ok(())
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> usize {
        self.layout.block_size
    }

    /// True when mounted read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Why a read-write mount was made read-only (bitmaps or free counts that disagree), if it
    /// was: writing to such a file system would hand out live inodes or blocks again.
    pub fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }

    /// The free counts this mount recomputed because the file system had not been unmounted
    /// cleanly (what changed), if any.
    pub fn recounted(&self) -> Option<&str> {
        self.recounted.as_deref()
    }

    fn ensure_writable(&self) -> Result<(), Errno> {
        if self.read_only {
            Err(Errno::RoFs)
        } else {
            Ok(())
        }
    }

    /// Puts the superblock and the group descriptors (primary copies) into the cache.
    fn write_super(&mut self) -> Result<(), Errno> {
        if !self.sb_dirty || self.read_only {
            return Ok(());
        }
        self.sb
            .set_free_counts(self.free_blocks_total(), self.free_inodes_total());
        self.sb.set_wtime(self.now);
        let bs = self.layout.block_size as u64;
        let sb_block = superblock::SB_OFFSET / bs;
        let sb_off = (superblock::SB_OFFSET % bs) as usize;
        let raw = self.sb.raw().to_vec();
        let buf = self.cache.write(sb_block, cache::BlockKind::Meta)?;
        buf[sb_off..sb_off + raw.len()].copy_from_slice(&raw);
        let per_block = self.layout.block_size / superblock::DESC_SIZE;
        for (i, chunk) in self.groups.chunks(per_block).enumerate() {
            let blk = self.layout.gdt_start + i as u64;
            let buf = self.cache.write(blk, cache::BlockKind::Meta)?;
            for (j, gd) in chunk.iter().enumerate() {
                let at = j * superblock::DESC_SIZE;
                buf[at..at + superblock::DESC_SIZE].copy_from_slice(gd.raw());
            }
        }
        self.sb_dirty = false;
        Ok(())
    }

    fn free_blocks_total(&self) -> u64 {
        self.groups.iter().map(|g| g.free_blocks() as u64).sum()
    }

    fn free_inodes_total(&self) -> u64 {
        self.groups.iter().map(|g| g.free_inodes() as u64).sum()
    }

    /// Writes back every dirty block in order (data, flush, metadata, flush).
    fn sync_all(&mut self) -> Result<(), Errno> {
        if self.read_only {
            return Ok(());
        }
        self.commit_frees()?;
        self.write_super()?;
        self.cache.write_back()
    }
}

/// Little-endian field access on byte buffers whose length the caller has checked.
pub(crate) mod le {
    pub fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }
    pub fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
    pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}
