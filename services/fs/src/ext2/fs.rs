//! [`FileSystem`] for [`Ext2`]: the node operations on top of inodes, block maps, directories and
//! allocation.
//!
//! Each operation checks its arguments and the inodes it reads, then changes the image in an
//! order that keeps it consistent if it stops half-way with an error: a new inode is written
//! before the entry naming it, an entry is added before another is removed, and allocations are
//! undone when a later step fails.

use super::Ext2;
use super::cache::{BlockKind, NameOrder};
use super::dir::kind_of_type;
use super::inode::{FAST_SYMLINK_MAX, Inode, LINK_MAX, ROOT_INO};
use super::le::{put_u32, u32_at};
use super::superblock::ro_compat;
use crate::node::{Attr, DirEntry, FileSystem, Ino, Kind, NAME_MAX, NewNode, SetAttr, StatFs};
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::errno::Errno;

/// The magic number of an extended attribute block.
const XATTR_MAGIC: u32 = 0xEA02_0000;
/// Bytes of a file read from the disk at once when a read misses the cache (one block-service
/// request: its bulk buffer).
const READ_AHEAD: usize = 64 * 1024;
/// The largest size without the `large_file` feature.
const SMALL_FILE_MAX: u64 = 0x7fff_ffff;

fn check_name(name: &str) -> Result<&[u8], Errno> {
    crate::node::check_name(name).map(|()| name.as_bytes())
}

impl Ext2 {
    /// The start of unlink and rmdir: the checked name, the directory and the inode it names
    /// (names are about to be removed: see `NameOrder`).
    fn removal<'n>(&mut self, dir: Ino, name: &'n str) -> Result<(&'n [u8], Inode, Inode), Errno> {
        self.ensure_writable()?;
        self.cache.begin(NameOrder::Removing)?;
        let name = check_name(name)?;
        let dir = self.ino_arg(dir)?;
        let parent = self.live_dir(dir)?;
        let found = self.find_entry(&parent, name)?.ok_or(Errno::NoEnt)?;
        let child = self.read_live_inode(found.entry.ino)?;
        Ok((name, parent, child))
    }

    /// A directory in use; `NotDir` when `ino` is something else.
    fn live_dir(&mut self, ino: u32) -> Result<Inode, Errno> {
        let inode = self.read_live_inode(ino)?;
        if !inode.is_dir() {
            return Err(Errno::NotDir);
        }
        Ok(inode)
    }

    /// A directory that may get new entries: in use and still linked (not removed while open).
    fn parent_dir(&mut self, ino: u32) -> Result<Inode, Errno> {
        let dir = self.live_dir(ino)?;
        if dir.links() == 0 {
            return Err(Errno::NoEnt);
        }
        Ok(dir)
    }

    fn attr(&self, inode: &Inode) -> Attr {
        Attr {
            ino: inode.ino as Ino,
            kind: inode.kind(),
            perm: inode.mode() & 0o7777,
            nlink: inode.links() as u32,
            uid: inode.uid(),
            gid: inode.gid(),
            size: inode.size(),
            blocks: inode.sectors() as u64,
            atime: inode.atime(),
            mtime: inode.mtime(),
            ctime: inode.ctime(),
        }
    }

    /// The largest file size.
    fn max_file_size(&self) -> u64 {
        let by_map = self.max_file_blocks() * self.layout.block_size as u64;
        // i_blocks counts 512-byte units in 32 bits.
        by_map.min((u32::MAX as u64) * 512)
    }

    /// Checks that a file may grow to `end` bytes, turning `large_file` on if it needs it.
    fn allow_size(&mut self, end: u64) -> Result<(), Errno> {
        if end > self.max_file_size() {
            return Err(Errno::FBig);
        }
        if end > SMALL_FILE_MAX && self.sb.ro_compat() & ro_compat::LARGE_FILE == 0 {
            self.sb.set_ro_compat(ro_compat::LARGE_FILE)?;
            self.sb_dirty = true;
        }
        Ok(())
    }

    /// A new inode's common fields.
    fn new_inode(&self, ino: u32, mode: u16, new: NewNode) -> Inode {
        let mut inode = Inode::empty(ino, self.layout.inode_size);
        inode.set_mode(mode);
        inode.set_uid(new.uid);
        inode.set_gid(new.gid);
        inode.set_atime(self.now);
        inode.set_mtime(self.now);
        inode.set_ctime(self.now);
        inode.set_links(1);
        if self.layout.inode_size > 128 {
            inode.set_extra_isize(32.min(self.layout.inode_size as u16 - 128));
        }
        inode
    }

    /// Undoes an inode allocation whose inode was not yet named anywhere.
    fn undo_inode(&mut self, inode: &mut Inode, dir: bool) -> Result<(), Errno> {
        inode.set_links(0);
        inode.set_dtime(self.now);
        self.write_inode(inode)?;
        self.free_inode_bit(inode.ino, dir)
    }

    /// Links a new inode (already written) into `parent` as `name`, undoing it on failure.
    fn name_new_inode(
        &mut self,
        parent: &mut Inode,
        name: &[u8],
        inode: &mut Inode,
        blk: Option<u64>,
    ) -> Result<(), Errno> {
        let kind = inode.kind();
        if let Err(e) = self.add_entry(parent, name, inode.ino, kind) {
            if let Some(b) = blk {
                self.free_block(b)?;
            }
            self.undo_inode(inode, kind == Kind::Dir)?;
            return Err(e);
        }
        Ok(())
    }

    /// Drops `inode`'s reference to its extended attribute block.
    fn drop_xattr_block(&mut self, inode: &mut Inode) -> Result<(), Errno> {
        let b = self.layout.check_data_block(inode.file_acl() as u64)?;
        let buf = self.cache.read(b)?;
        if u32_at(buf, 0) != XATTR_MAGIC {
            return Err(Errno::Corrupt);
        }
        let refs = u32_at(buf, 4);
        if refs > 1 {
            put_u32(self.cache.write(b, BlockKind::Meta)?, 4, refs - 1);
        } else {
            self.release(inode, b)?;
        }
        inode.set_file_acl(0);
        Ok(())
    }

    /// Frees inode `ino` (no links left): its blocks, attribute block and bitmap bit.
    pub(super) fn free_inode_and_blocks(&mut self, ino: u32) -> Result<(), Errno> {
        let mut inode = self.read_inode(ino)?;
        if inode.has_block_map(self.layout.block_size) {
            let freed = self.free_blocks_from(&mut inode, 0);
            if freed.is_err() {
                self.write_inode(&inode)?;
                return freed;
            }
        }
        if inode.file_acl() != 0 {
            self.drop_xattr_block(&mut inode)?;
        }
        inode.set_size(0);
        inode.set_dtime(self.now);
        self.write_inode(&inode)?;
        self.free_inode_bit(ino, inode.is_dir())?;
        self.orphans.remove(&ino);
        Ok(())
    }

    /// Records that `inode` lost its last link; the inode if so.
    fn maybe_orphan(&mut self, inode: &Inode) -> Option<Ino> {
        if inode.links() == 0 {
            self.orphans.insert(inode.ino);
            Some(inode.ino as Ino)
        } else {
            None
        }
    }

    fn write_data(&mut self, inode: &mut Inode, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let bs = self.layout.block_size as u64;
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let within = (pos % bs) as usize;
            let n = (bs as usize - within).min(data.len() - done);
            let (b, new) = self.bmap_alloc(inode, pos / bs)?;
            let buf = if new || n == bs as usize {
                self.cache.fresh(b, BlockKind::Data)?
            } else {
                self.cache.write(b, BlockKind::Data)?
            };
            buf[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
            if pos + n as u64 > inode.size() {
                inode.set_size(pos + n as u64);
            }
        }
        Ok(())
    }
}

impl FileSystem for Ext2 {
    fn fs_type(&self) -> &'static str {
        "ext2"
    }

    fn root(&self) -> Ino {
        ROOT_INO as Ino
    }

    fn set_time(&mut self, now: u64) {
        self.now = now;
    }

    fn statfs(&mut self) -> Result<StatFs, Errno> {
        Ok(StatFs {
            block_size: self.layout.block_size as u32,
            blocks: self.layout.blocks_count,
            free_blocks: self.free_blocks_total() + self.pending_blocks.len() as u64,
            files: self.layout.inodes_count,
            free_files: self.free_inodes_total() + self.pending_inodes.len() as u64,
            name_max: NAME_MAX as u32,
        })
    }

    fn getattr(&mut self, ino: Ino) -> Result<Attr, Errno> {
        let ino = self.ino_arg(ino)?;
        let inode = self.read_live_inode(ino)?;
        Ok(self.attr(&inode))
    }

    fn setattr(&mut self, ino: Ino, set: &SetAttr) -> Result<Attr, Errno> {
        self.ensure_writable()?;
        let ino = self.ino_arg(ino)?;
        let mut inode = self.read_live_inode(ino)?;
        if let Some(p) = set.perm {
            inode.set_mode((inode.mode() & !0o7777) | (p & 0o7777));
        }
        if let Some(u) = set.uid {
            inode.set_uid(u);
        }
        if let Some(g) = set.gid {
            inode.set_gid(g);
        }
        if let Some(t) = set.atime {
            inode.set_atime(t);
        }
        if let Some(t) = set.mtime {
            inode.set_mtime(t);
        }
        inode.set_ctime(self.now);
        self.write_inode(&inode)?;
        Ok(self.attr(&inode))
    }

    fn lookup(&mut self, dir: Ino, name: &str) -> Result<Ino, Errno> {
        let dir = self.ino_arg(dir)?;
        let dir = self.live_dir(dir)?;
        let found = self
            .find_entry(&dir, name.as_bytes())?
            .ok_or(Errno::NoEnt)?;
        Ok(found.entry.ino as Ino)
    }

    fn readdir(&mut self, dir: Ino) -> Result<Vec<DirEntry>, Errno> {
        let dir = self.ino_arg(dir)?;
        let dir = self.live_dir(dir)?;
        let mut out = Vec::new();
        for (name, ino, ftype) in self.list_dir(&dir)? {
            if name == b"." || name == b".." {
                continue;
            }
            let typed = if self.layout.filetype {
                kind_of_type(ftype)
            } else {
                None
            };
            let kind = match typed {
                Some(k) => k,
                None => self.read_live_inode(ino)?.kind(),
            };
            out.push(DirEntry {
                name: String::from_utf8_lossy(&name).into_owned(),
                ino: ino as Ino,
                kind,
            });
        }
        Ok(out)
    }

    fn read(&mut self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let ino = self.ino_arg(ino)?;
        let inode = self.read_live_inode(ino)?;
        match inode.kind() {
            Kind::File => {}
            Kind::Dir => return Err(Errno::IsDir),
            _ => return Err(Errno::Inval),
        }
        let size = inode.size();
        if offset >= size {
            return Ok(0);
        }
        let len = (buf.len() as u64).min(size - offset) as usize;
        let bs = self.layout.block_size as u64;
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let within = (pos % bs) as usize;
            let n = (bs as usize - within).min(len - done);
            match self.bmap(&inode, pos / bs)? {
                Some(b) => {
                    if !self.cache.contains(b) {
                        // A miss: the file's blocks that follow it on the disk come in with it,
                        // in one device request (read-ahead, up to READ_AHEAD bytes).
                        let run = self.run_on_disk(&inode, pos / bs, b, size)?;
                        self.cache.read_run(b, run)?;
                    }
                    buf[done..done + n].copy_from_slice(&self.cache.read(b)?[within..within + n])
                }
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(len)
    }

    fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        self.ensure_writable()?;
        let ino = self.ino_arg(ino)?;
        let mut inode = self.read_live_inode(ino)?;
        match inode.kind() {
            Kind::File => {}
            Kind::Dir => return Err(Errno::IsDir),
            _ => return Err(Errno::Inval),
        }
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::FBig)?;
        self.allow_size(end)?;
        let result = self.write_data(&mut inode, offset, data);
        inode.set_mtime(self.now);
        inode.set_ctime(self.now);
        self.write_inode(&inode)?;
        result.map(|_| data.len())
    }

    fn truncate(&mut self, ino: Ino, size: u64) -> Result<(), Errno> {
        self.ensure_writable()?;
        let ino = self.ino_arg(ino)?;
        let mut inode = self.read_live_inode(ino)?;
        match inode.kind() {
            Kind::File => {}
            Kind::Dir => return Err(Errno::IsDir),
            _ => return Err(Errno::Inval),
        }
        self.allow_size(size)?;
        let bs = self.layout.block_size as u64;
        if size < inode.size() {
            let freed = self.free_blocks_from(&mut inode, size.div_ceil(bs));
            if freed.is_err() {
                self.write_inode(&inode)?;
                return freed;
            }
            // Zero the cut-off tail of the last block, so that growing the file reads zeros.
            if !size.is_multiple_of(bs)
                && let Some(b) = self.bmap(&inode, size / bs)?
            {
                self.cache.write(b, BlockKind::Data)?[(size % bs) as usize..].fill(0);
            }
        }
        inode.set_size(size);
        inode.set_mtime(self.now);
        inode.set_ctime(self.now);
        self.write_inode(&inode)
    }

    fn create(&mut self, dir: Ino, name: &str, kind: Kind, new: NewNode) -> Result<Ino, Errno> {
        self.ensure_writable()?;
        self.cache.begin(NameOrder::Adding)?;
        let name = check_name(name)?;
        let dir = self.ino_arg(dir)?;
        let mut parent = self.parent_dir(dir)?;
        if kind != Kind::File && kind != Kind::Dir {
            return Err(Errno::Inval);
        }
        if self.find_entry(&parent, name)?.is_some() {
            return Err(Errno::Exist);
        }
        let is_dir = kind == Kind::Dir;
        if is_dir && parent.links() >= LINK_MAX {
            return Err(Errno::MLink);
        }
        let ino = self.alloc_inode(is_dir, dir)?;
        let mut inode = self.new_inode(ino, kind.mode_bits() as u16 | (new.perm & 0o7777), new);
        let mut blk = None;
        if is_dir {
            let goal = (ino as u64 - 1) / self.layout.inodes_per_group;
            let b = match self.alloc_block(goal) {
                Ok(b) => b,
                Err(e) => {
                    self.undo_inode(&mut inode, true)?;
                    return Err(e);
                }
            };
            self.init_dir_block(b, ino, dir)?;
            inode.set_block(0, b as u32);
            inode.set_size(self.layout.block_size as u64);
            inode.set_sectors((self.layout.block_size / 512) as u32);
            inode.set_links(2);
            blk = Some(b);
        }
        self.write_inode(&inode)?;
        self.name_new_inode(&mut parent, name, &mut inode, blk)?;
        if is_dir {
            parent.set_links(parent.links() + 1);
            self.write_inode(&parent)?;
        }
        Ok(ino as Ino)
    }

    fn symlink(&mut self, dir: Ino, name: &str, target: &str, new: NewNode) -> Result<Ino, Errno> {
        self.ensure_writable()?;
        self.cache.begin(NameOrder::Adding)?;
        let name = check_name(name)?;
        let t = target.as_bytes();
        if t.is_empty() {
            return Err(Errno::NoEnt);
        }
        if t.contains(&0) {
            return Err(Errno::Inval);
        }
        if t.len() >= self.layout.block_size {
            return Err(Errno::NameTooLong);
        }
        let dir = self.ino_arg(dir)?;
        let mut parent = self.parent_dir(dir)?;
        if self.find_entry(&parent, name)?.is_some() {
            return Err(Errno::Exist);
        }
        let ino = self.alloc_inode(false, dir)?;
        let mut inode = self.new_inode(ino, Kind::Symlink.mode_bits() as u16 | 0o777, new);
        let mut blk = None;
        if t.len() <= FAST_SYMLINK_MAX {
            inode.block_bytes_mut()[..t.len()].copy_from_slice(t);
        } else {
            let goal = (ino as u64 - 1) / self.layout.inodes_per_group;
            let b = match self.alloc_block(goal) {
                Ok(b) => b,
                Err(e) => {
                    self.undo_inode(&mut inode, false)?;
                    return Err(e);
                }
            };
            self.cache.fresh(b, BlockKind::Data)?[..t.len()].copy_from_slice(t);
            inode.set_block(0, b as u32);
            inode.set_sectors((self.layout.block_size / 512) as u32);
            blk = Some(b);
        }
        inode.set_size(t.len() as u64);
        self.write_inode(&inode)?;
        self.name_new_inode(&mut parent, name, &mut inode, blk)?;
        Ok(ino as Ino)
    }

    fn readlink(&mut self, ino: Ino) -> Result<String, Errno> {
        let ino = self.ino_arg(ino)?;
        let inode = self.read_live_inode(ino)?;
        if inode.kind() != Kind::Symlink {
            return Err(Errno::Inval);
        }
        let size = inode.size();
        if size >= self.layout.block_size as u64 {
            return Err(Errno::Corrupt);
        }
        let size = size as usize;
        if inode.is_fast_symlink(self.layout.block_size) {
            return Ok(String::from_utf8_lossy(&inode.block_bytes()[..size]).into_owned());
        }
        let b = self.bmap(&inode, 0)?.ok_or(Errno::Corrupt)?;
        Ok(String::from_utf8_lossy(&self.cache.read(b)?[..size]).into_owned())
    }

    fn link(&mut self, dir: Ino, name: &str, ino: Ino) -> Result<(), Errno> {
        self.ensure_writable()?;
        self.cache.begin(NameOrder::Adding)?;
        let name = check_name(name)?;
        let dir = self.ino_arg(dir)?;
        let ino = self.ino_arg(ino)?;
        let mut parent = self.parent_dir(dir)?;
        let mut target = self.read_live_inode(ino)?;
        if target.is_dir() {
            return Err(Errno::Perm);
        }
        if target.links() == 0 {
            return Err(Errno::NoEnt);
        }
        if target.links() >= LINK_MAX {
            return Err(Errno::MLink);
        }
        if self.find_entry(&parent, name)?.is_some() {
            return Err(Errno::Exist);
        }
        self.add_entry(&mut parent, name, ino, target.kind())?;
        target.set_links(target.links() + 1);
        target.set_ctime(self.now);
        self.write_inode(&target)
    }

    fn unlink(&mut self, dir: Ino, name: &str) -> Result<Option<Ino>, Errno> {
        let (name, mut parent, mut child) = self.removal(dir, name)?;
        if child.is_dir() {
            return Err(Errno::IsDir);
        }
        self.remove_entry(&mut parent, name)?;
        child.set_links(child.links().saturating_sub(1));
        child.set_ctime(self.now);
        self.write_inode(&child)?;
        Ok(self.maybe_orphan(&child))
    }

    fn rmdir(&mut self, dir: Ino, name: &str) -> Result<Option<Ino>, Errno> {
        let (name, mut parent, mut child) = self.removal(dir, name)?;
        if !child.is_dir() {
            return Err(Errno::NotDir);
        }
        if child.ino == parent.ino || child.ino == ROOT_INO || !self.dir_is_empty(&child)? {
            return Err(Errno::NotEmpty);
        }
        self.remove_entry(&mut parent, name)?;
        child.set_links(0);
        child.set_ctime(self.now);
        self.write_inode(&child)?;
        parent.set_links(parent.links().saturating_sub(1).max(1));
        self.write_inode(&parent)?;
        Ok(self.maybe_orphan(&child))
    }

    fn rename(
        &mut self,
        from_dir: Ino,
        from: &str,
        to_dir: Ino,
        to: &str,
    ) -> Result<Option<Ino>, Errno> {
        self.ensure_writable()?;
        let from = check_name(from)?;
        let to = check_name(to)?;
        let from_dir = self.ino_arg(from_dir)?;
        let to_dir = self.ino_arg(to_dir)?;
        let fd = self.live_dir(from_dir)?;
        let td = self.parent_dir(to_dir)?;
        let src_ino = self.find_entry(&fd, from)?.ok_or(Errno::NoEnt)?.entry.ino;
        let src = self.read_live_inode(src_ino)?;
        let dst_ino = self.find_entry(&td, to)?.map(|f| f.entry.ino);
        if dst_ino == Some(src_ino) {
            return Ok(None);
        }
        let moves_dir = src.is_dir() && from_dir != to_dir;
        if src_ino == to_dir || src_ino == ROOT_INO {
            return Err(Errno::Inval);
        }
        if let Some(d) = dst_ino {
            let dst = self.read_live_inode(d)?;
            match (src.is_dir(), dst.is_dir()) {
                (true, false) => return Err(Errno::NotDir),
                (false, true) => return Err(Errno::IsDir),
                (true, true) if !self.dir_is_empty(&dst)? => return Err(Errno::NotEmpty),
                _ => {}
            }
        } else if moves_dir && td.links() >= LINK_MAX {
            return Err(Errno::MLink);
        }

        // Crash order (see `NameOrder`): a replaced inode dies before its entry is retargeted;
        // the new name reaches the disk before the old one goes. A failure leaves the old name.
        let mut replaced = None;
        if let Some(d) = dst_ino {
            self.cache.begin(NameOrder::Removing)?;
            let mut dst = self.read_inode(d)?;
            if dst.is_dir() {
                dst.set_links(0);
                let mut td = self.read_inode(to_dir)?;
                td.set_links(td.links().saturating_sub(1).max(1));
                self.write_inode(&td)?;
            } else {
                dst.set_links(dst.links().saturating_sub(1));
            }
            dst.set_ctime(self.now);
            self.write_inode(&dst)?;
            replaced = self.maybe_orphan(&dst);
        }
        self.cache.begin(NameOrder::Adding)?;
        let mut td = self.live_dir(to_dir)?;
        match dst_ino {
            Some(_) => self.retarget_entry(&mut td, to, src_ino, src.kind())?,
            None => self.add_entry(&mut td, to, src_ino, src.kind())?,
        }
        // (For a directory this leaves a window with two names, which e2fsck -p will not repair
        // alone; the other order leaves it unconnected, which it will not either. Without a
        // journal one of the two is unavoidable; this one undoes the move when repaired.)
        self.cache.begin(NameOrder::Removing)?;
        let mut fd = self.live_dir(from_dir)?;
        self.remove_entry(&mut fd, from)?;
        if moves_dir {
            let mut moved = self.read_inode(src_ino)?;
            self.retarget_entry(&mut moved, b"..", to_dir, Kind::Dir)?;
            let mut fd = self.read_inode(from_dir)?;
            fd.set_links(fd.links().saturating_sub(1).max(1));
            self.write_inode(&fd)?;
            let mut td = self.read_inode(to_dir)?;
            td.set_links(td.links().saturating_add(1));
            self.write_inode(&td)?;
        }
        let mut moved = self.read_inode(src_ino)?;
        moved.set_ctime(self.now);
        self.write_inode(&moved)?;
        Ok(replaced)
    }

    fn evict(&mut self, ino: Ino) -> Result<(), Errno> {
        self.ensure_writable()?;
        let ino = self.ino_arg(ino)?;
        if !self.orphans.contains(&ino) {
            return Ok(());
        }
        if self.read_inode(ino)?.links() != 0 {
            self.orphans.remove(&ino);
            return Ok(());
        }
        self.free_inode_and_blocks(ino)
    }

    fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        self.ino_arg(ino)?;
        self.sync_all()
    }

    fn sync(&mut self) -> Result<(), Errno> {
        self.sync_all()
    }

    fn needs_sync(&self) -> bool {
        !self.read_only
            && (self.sb_dirty
                || !self.pending_blocks.is_empty()
                || !self.pending_inodes.is_empty()
                || self.cache.has_dirty())
    }

    /// The VFS's last call (umount, power-off): the image is left clean.
    fn unmount(&mut self) -> Result<(), Errno> {
        self.finish()
    }
}

impl Ext2 {
    /// How many of the file's blocks from logical block `lbn` (at disk block `b`) follow one
    /// another on the disk, up to [`READ_AHEAD`] bytes' worth, the cache's run limit and the
    /// file's end; at least 1.
    fn run_on_disk(&mut self, inode: &Inode, lbn: u64, b: u64, size: u64) -> Result<usize, Errno> {
        let bs = self.layout.block_size as u64;
        let last = size.saturating_sub(1) / bs;
        let most = (READ_AHEAD / bs as usize).min(self.cache.run_limit()).max(1);
        let mut n = 1;
        while n < most && lbn + (n as u64) <= last {
            match self.bmap(inode, lbn + n as u64)? {
                Some(next) if next == b + n as u64 && !self.cache.contains(next) => n += 1,
                _ => break,
            }
        }
        Ok(n)
    }
}
