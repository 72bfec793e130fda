//! tmpfs: a file system in memory.
//!
//! Inodes live in a map by number; a directory is a sorted map of names. Its size is bounded (the
//! `capacity` in bytes of file data and symlink targets, and an inode limit) so a runaway writer
//! gets `NoSpc` instead of taking the service's memory. Everything is lost at power-off; `sync`
//! and `fsync` have nothing to do.
//!
//! Files may also borrow read-only bytes that outlive the file system ([`Tmpfs::add_static`]:
//! the initrd's files): they cost no capacity until the first write copies them.

use crate::chunks::Chunks;
use crate::node::{
    Attr, DirEntry, FileSystem, Ino, Kind, NAME_MAX, NewNode, SetAttr, StatFs, check_name,
};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use keel_rt::errno::Errno;

/// The unit `statfs` counts in.
const BLOCK: u64 = 4096;
const ROOT: Ino = 1;

enum Data {
    File(Chunks),
    /// A file whose bytes are borrowed until it is first changed.
    Static(&'static [u8]),
    Dir(BTreeMap<String, Ino>),
    Symlink(String),
}

struct Node {
    attr: Attr,
    data: Data,
}

impl Node {
    fn bytes(&self) -> u64 {
        match &self.data {
            Data::File(c) => c.len(),
            Data::Static(b) => b.len() as u64,
            Data::Symlink(s) => s.len() as u64,
            Data::Dir(_) => 0,
        }
    }

    /// Capacity this node is charged for.
    fn charged(&self) -> u64 {
        match &self.data {
            Data::Static(_) => 0,
            _ => self.bytes(),
        }
    }
}

/// A tmpfs instance.
pub struct Tmpfs {
    nodes: BTreeMap<Ino, Node>,
    next_ino: Ino,
    /// Bytes of file data and symlink targets in use, and the most allowed.
    used: u64,
    capacity: u64,
    max_inodes: u64,
    now: u64,
}

impl Tmpfs {
    /// An empty tmpfs holding at most `capacity` bytes and `max_inodes` inodes; the root
    /// directory is owned by root with mode 0755.
    pub fn new(capacity: u64, max_inodes: u64) -> Self {
        let mut fs = Tmpfs {
            nodes: BTreeMap::new(),
            next_ino: ROOT,
            used: 0,
            capacity,
            max_inodes: max_inodes.max(1),
            now: 0,
        };
        let root = fs.new_attr(
            Kind::Dir,
            NewNode {
                perm: 0o755,
                uid: 0,
                gid: 0,
            },
        );
        fs.nodes.insert(
            ROOT,
            Node {
                attr: Attr { nlink: 2, ..root },
                data: Data::Dir(BTreeMap::new()),
            },
        );
        fs
    }

    /// Adds a file at `dir/name` whose contents are `bytes` (not copied, not charged to the
    /// capacity until written).
    pub fn add_static(
        &mut self,
        dir: Ino,
        name: &str,
        bytes: &'static [u8],
        new: NewNode,
    ) -> Result<Ino, Errno> {
        self.make(dir, name, Kind::File, new, Data::Static(bytes))
    }

    /// Turns a borrowed file into an owned one (charging its size), so it can change.
    fn own(&mut self, ino: Ino) -> Result<(), Errno> {
        let bytes = match &self.node(ino)?.data {
            Data::Static(b) => *b,
            Data::File(_) => return Ok(()),
            Data::Dir(_) => return Err(Errno::IsDir),
            Data::Symlink(_) => return Err(Errno::Inval),
        };
        self.reserve(bytes.len() as u64)?;
        match Chunks::from_slice(bytes) {
            Ok(c) => {
                self.node_mut(ino)?.data = Data::File(c);
                Ok(())
            }
            Err(e) => {
                self.used -= bytes.len() as u64;
                Err(e)
            }
        }
    }

    fn new_attr(&mut self, kind: Kind, new: NewNode) -> Attr {
        let ino = self.next_ino;
        self.next_ino += 1;
        Attr {
            ino,
            kind,
            perm: new.perm & 0o7777,
            nlink: 1,
            uid: new.uid,
            gid: new.gid,
            size: 0,
            blocks: 0,
            atime: self.now,
            mtime: self.now,
            ctime: self.now,
        }
    }

    fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::NoEnt)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::NoEnt)
    }

    fn dir(&self, ino: Ino) -> Result<&BTreeMap<String, Ino>, Errno> {
        match &self.node(ino)?.data {
            Data::Dir(d) => Ok(d),
            _ => Err(Errno::NotDir),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut BTreeMap<String, Ino>, Errno> {
        match &mut self.node_mut(ino)?.data {
            Data::Dir(d) => Ok(d),
            _ => Err(Errno::NotDir),
        }
    }

    /// Reserves `more` bytes of capacity.
    fn reserve(&mut self, more: u64) -> Result<(), Errno> {
        match self.used.checked_add(more) {
            Some(n) if n <= self.capacity => {
                self.used = n;
                Ok(())
            }
            _ => Err(Errno::NoSpc),
        }
    }

    fn touch(&mut self, ino: Ino) {
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.attr.mtime = now;
            n.attr.ctime = now;
        }
    }

    /// Adds `name -> ino` to `dir`, which must not have it.
    fn add_entry(&mut self, dir: Ino, name: &str, ino: Ino) -> Result<(), Errno> {
        check_name(name)?;
        let d = self.dir_mut(dir)?;
        if d.contains_key(name) {
            return Err(Errno::Exist);
        }
        d.insert(name.to_string(), ino);
        self.touch(dir);
        Ok(())
    }

    /// A new inode with `data`, linked as `dir/name`.
    fn make(
        &mut self,
        dir: Ino,
        name: &str,
        kind: Kind,
        new: NewNode,
        data: Data,
    ) -> Result<Ino, Errno> {
        check_name(name)?;
        if self.dir(dir)?.contains_key(name) {
            return Err(Errno::Exist);
        }
        if self.nodes.len() as u64 >= self.max_inodes {
            return Err(Errno::NoSpc);
        }
        let mut attr = self.new_attr(kind, new);
        let bytes = match &data {
            Data::Symlink(s) => s.len() as u64,
            _ => 0,
        };
        self.reserve(bytes)?;
        attr.size = bytes;
        if kind == Kind::Dir {
            attr.nlink = 2;
        }
        let ino = attr.ino;
        self.nodes.insert(ino, Node { attr, data });
        self.add_entry(dir, name, ino)?;
        if kind == Kind::Dir {
            self.node_mut(dir)?.attr.nlink += 1;
        }
        Ok(ino)
    }

    /// Drops one link of `ino` (a directory loses both of its own); Some(ino) when none remain.
    fn drop_link(&mut self, ino: Ino) -> Result<Option<Ino>, Errno> {
        let now = self.now;
        let n = self.node_mut(ino)?;
        n.attr.ctime = now;
        n.attr.nlink = if n.attr.kind == Kind::Dir {
            0
        } else {
            n.attr.nlink.saturating_sub(1)
        };
        Ok((n.attr.nlink == 0).then_some(ino))
    }
}

fn blocks_of(bytes: u64) -> u64 {
    bytes.div_ceil(BLOCK) * (BLOCK / 512)
}

impl FileSystem for Tmpfs {
    fn fs_type(&self) -> &'static str {
        "tmpfs"
    }

    fn allocated(&self, ino: Ino) -> Option<u64> {
        match &self.nodes.get(&ino)?.data {
            Data::File(c) => Some(c.allocated()),
            // The initrd's bytes, mapped: nothing until a write copies them.
            Data::Static(_) => Some(0),
            _ => None,
        }
    }

    fn root(&self) -> Ino {
        ROOT
    }

    fn set_time(&mut self, now: u64) {
        self.now = now;
    }

    fn statfs(&mut self) -> Result<StatFs, Errno> {
        Ok(StatFs {
            block_size: BLOCK as u32,
            blocks: self.capacity / BLOCK,
            free_blocks: (self.capacity - self.used) / BLOCK,
            files: self.max_inodes,
            free_files: self.max_inodes.saturating_sub(self.nodes.len() as u64),
            name_max: NAME_MAX as u32,
        })
    }

    fn getattr(&mut self, ino: Ino) -> Result<Attr, Errno> {
        let n = self.node(ino)?;
        let size = n.bytes();
        Ok(Attr {
            size,
            blocks: blocks_of(size),
            ..n.attr.clone()
        })
    }

    fn setattr(&mut self, ino: Ino, set: &SetAttr) -> Result<Attr, Errno> {
        let now = self.now;
        let a = &mut self.node_mut(ino)?.attr;
        if let Some(p) = set.perm {
            a.perm = p & 0o7777;
        }
        if let Some(u) = set.uid {
            a.uid = u;
        }
        if let Some(g) = set.gid {
            a.gid = g;
        }
        if let Some(t) = set.atime {
            a.atime = t;
        }
        if let Some(t) = set.mtime {
            a.mtime = t;
        }
        a.ctime = now;
        self.getattr(ino)
    }

    fn lookup(&mut self, dir: Ino, name: &str) -> Result<Ino, Errno> {
        self.dir(dir)?.get(name).copied().ok_or(Errno::NoEnt)
    }

    fn readdir(&mut self, dir: Ino) -> Result<Vec<DirEntry>, Errno> {
        let d = self.dir(dir)?;
        Ok(d.iter()
            .map(|(name, &ino)| DirEntry {
                name: name.clone(),
                ino,
                kind: self.nodes.get(&ino).map_or(Kind::Other, |n| n.attr.kind),
            })
            .collect())
    }

    fn read(&mut self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let v: &[u8] = match &self.node(ino)?.data {
            Data::File(c) => return Ok(c.read(offset, buf)),
            Data::Static(b) => b,
            Data::Dir(_) => return Err(Errno::IsDir),
            Data::Symlink(_) => return Err(Errno::Inval),
        };
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= v.len() {
            return Ok(0);
        }
        let n = buf.len().min(v.len() - start);
        buf[..n].copy_from_slice(&v[start..start + n]);
        Ok(n)
    }

    fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        self.own(ino)?;
        let len = match &self.node(ino)?.data {
            Data::File(c) => c.len(),
            _ => return Err(Errno::IsDir),
        };
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::FBig)?;
        let grown = end.saturating_sub(len);
        self.reserve(grown)?;
        let now = self.now;
        let n = self.node_mut(ino)?;
        if let Data::File(c) = &mut n.data {
            if let Err(e) = c.write(offset, data) {
                self.used -= grown;
                return Err(e);
            }
        }
        n.attr.mtime = now;
        n.attr.ctime = now;
        Ok(data.len())
    }

    fn truncate(&mut self, ino: Ino, size: u64) -> Result<(), Errno> {
        self.own(ino)?;
        let len = match &self.node(ino)?.data {
            Data::File(c) => c.len(),
            _ => return Err(Errno::IsDir),
        };
        if size > len {
            self.reserve(size - len)?;
        } else {
            self.used -= len - size;
        }
        let now = self.now;
        let n = self.node_mut(ino)?;
        if let Data::File(c) = &mut n.data {
            c.truncate(size)?;
        }
        n.attr.mtime = now;
        n.attr.ctime = now;
        Ok(())
    }

    fn create(&mut self, dir: Ino, name: &str, kind: Kind, new: NewNode) -> Result<Ino, Errno> {
        let data = match kind {
            Kind::File => Data::File(Chunks::default()),
            Kind::Dir => Data::Dir(BTreeMap::new()),
            _ => return Err(Errno::Inval),
        };
        self.make(dir, name, kind, new, data)
    }

    fn symlink(&mut self, dir: Ino, name: &str, target: &str, new: NewNode) -> Result<Ino, Errno> {
        if target.is_empty() || target.len() > 4095 {
            return Err(Errno::Inval);
        }
        self.make(
            dir,
            name,
            Kind::Symlink,
            NewNode { perm: 0o777, ..new },
            Data::Symlink(target.to_string()),
        )
    }

    fn readlink(&mut self, ino: Ino) -> Result<String, Errno> {
        match &self.node(ino)?.data {
            Data::Symlink(s) => Ok(s.clone()),
            _ => Err(Errno::Inval),
        }
    }

    fn link(&mut self, dir: Ino, name: &str, ino: Ino) -> Result<(), Errno> {
        if self.node(ino)?.attr.kind == Kind::Dir {
            return Err(Errno::Perm);
        }
        if self.node(ino)?.attr.nlink == 0 {
            return Err(Errno::NoEnt);
        }
        self.add_entry(dir, name, ino)?;
        let now = self.now;
        let n = self.node_mut(ino)?;
        n.attr.nlink += 1;
        n.attr.ctime = now;
        Ok(())
    }

    fn unlink(&mut self, dir: Ino, name: &str) -> Result<Option<Ino>, Errno> {
        let ino = self.lookup(dir, name)?;
        if self.node(ino)?.attr.kind == Kind::Dir {
            return Err(Errno::IsDir);
        }
        self.dir_mut(dir)?.remove(name);
        self.touch(dir);
        self.drop_link(ino)
    }

    fn rmdir(&mut self, dir: Ino, name: &str) -> Result<Option<Ino>, Errno> {
        let ino = self.lookup(dir, name)?;
        if !self.dir(ino)?.is_empty() {
            return Err(Errno::NotEmpty);
        }
        self.dir_mut(dir)?.remove(name);
        self.touch(dir);
        let parent = self.node_mut(dir)?;
        parent.attr.nlink = parent.attr.nlink.saturating_sub(1);
        self.drop_link(ino)
    }

    fn rename(
        &mut self,
        from_dir: Ino,
        from: &str,
        to_dir: Ino,
        to: &str,
    ) -> Result<Option<Ino>, Errno> {
        check_name(to)?;
        let ino = self.lookup(from_dir, from)?;
        let is_dir = self.node(ino)?.attr.kind == Kind::Dir;
        let mut replaced = None;
        if let Some(&old) = self.dir(to_dir)?.get(to) {
            if old == ino {
                return Ok(None);
            }
            let old_dir = self.node(old)?.attr.kind == Kind::Dir;
            match (is_dir, old_dir) {
                (true, false) => return Err(Errno::NotDir),
                (false, true) => return Err(Errno::IsDir),
                (true, true) if !self.dir(old)?.is_empty() => return Err(Errno::NotEmpty),
                _ => {}
            }
            self.dir_mut(to_dir)?.remove(to);
            if old_dir {
                let p = self.node_mut(to_dir)?;
                p.attr.nlink = p.attr.nlink.saturating_sub(1);
            }
            replaced = self.drop_link(old)?;
        }
        self.dir_mut(from_dir)?.remove(from);
        self.dir_mut(to_dir)?.insert(to.to_string(), ino);
        if is_dir && from_dir != to_dir {
            let p = self.node_mut(from_dir)?;
            p.attr.nlink = p.attr.nlink.saturating_sub(1);
            self.node_mut(to_dir)?.attr.nlink += 1;
        }
        self.touch(from_dir);
        self.touch(to_dir);
        let now = self.now;
        self.node_mut(ino)?.attr.ctime = now;
        Ok(replaced)
    }

    fn evict(&mut self, ino: Ino) -> Result<(), Errno> {
        if ino == ROOT || self.node(ino)?.attr.nlink != 0 {
            return Err(Errno::Busy);
        }
        if let Some(n) = self.nodes.remove(&ino) {
            self.used -= n.charged();
        }
        Ok(())
    }

    fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        self.node(ino).map(|_| ())
    }

    fn sync(&mut self) -> Result<(), Errno> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_NEW: NewNode = NewNode {
        perm: 0o644,
        uid: 0,
        gid: 0,
    };

    #[test]
    fn files_grow_with_holes_and_truncate() {
        let mut fs = Tmpfs::new(1 << 20, 100);
        let f = fs.create(ROOT, "a", Kind::File, ROOT_NEW).unwrap();
        fs.write(f, 10, b"xy").unwrap();
        let mut b = [9u8; 16];
        assert_eq!(fs.read(f, 0, &mut b).unwrap(), 12);
        assert_eq!(&b[..12], b"\0\0\0\0\0\0\0\0\0\0xy");
        fs.truncate(f, 4).unwrap();
        assert_eq!(fs.getattr(f).unwrap().size, 4);
        assert_eq!(fs.read(f, 4, &mut b).unwrap(), 0);
        assert_eq!(fs.read(f, u64::MAX, &mut b).unwrap(), 0);
    }

    #[test]
    fn capacity_and_inode_limits_give_enospc_and_are_returned_on_evict() {
        let mut fs = Tmpfs::new(8192, 3);
        let f = fs.create(ROOT, "a", Kind::File, ROOT_NEW).unwrap();
        assert_eq!(fs.write(f, 0, &[1; 8193]), Err(Errno::NoSpc));
        fs.write(f, 0, &[1; 8192]).unwrap();
        assert_eq!(fs.statfs().unwrap().free_blocks, 0);
        fs.create(ROOT, "b", Kind::File, ROOT_NEW).unwrap();
        assert_eq!(
            fs.create(ROOT, "c", Kind::File, ROOT_NEW),
            Err(Errno::NoSpc)
        );
        assert_eq!(fs.unlink(ROOT, "a").unwrap(), Some(f));
        fs.evict(f).unwrap();
        assert_eq!(fs.statfs().unwrap().free_blocks, 2);
        fs.create(ROOT, "c", Kind::File, ROOT_NEW).unwrap();
    }

    #[test]
    fn directories_count_links_and_refuse_bad_removals() {
        let mut fs = Tmpfs::new(1 << 20, 100);
        let d = fs.create(ROOT, "d", Kind::Dir, ROOT_NEW).unwrap();
        assert_eq!(fs.getattr(ROOT).unwrap().nlink, 3);
        fs.create(d, "f", Kind::File, ROOT_NEW).unwrap();
        assert_eq!(fs.rmdir(ROOT, "d"), Err(Errno::NotEmpty));
        assert_eq!(fs.unlink(ROOT, "d"), Err(Errno::IsDir));
        assert_eq!(fs.rmdir(d, "f"), Err(Errno::NotDir));
        assert_eq!(
            fs.create(ROOT, "d", Kind::File, ROOT_NEW),
            Err(Errno::Exist)
        );
        assert_eq!(
            fs.create(ROOT, "..", Kind::File, ROOT_NEW),
            Err(Errno::Inval)
        );
        assert_eq!(
            fs.create(ROOT, &"x".repeat(256), Kind::File, ROOT_NEW),
            Err(Errno::NameTooLong)
        );
        fs.unlink(d, "f").unwrap();
        assert_eq!(fs.rmdir(ROOT, "d").unwrap(), Some(d));
        assert_eq!(fs.getattr(ROOT).unwrap().nlink, 2);
    }

    #[test]
    fn rename_replaces_moves_directories_and_keeps_hard_links() {
        let mut fs = Tmpfs::new(1 << 20, 100);
        let a = fs.create(ROOT, "a", Kind::Dir, ROOT_NEW).unwrap();
        let b = fs.create(ROOT, "b", Kind::Dir, ROOT_NEW).unwrap();
        let f = fs.create(a, "f", Kind::File, ROOT_NEW).unwrap();
        let g = fs.create(b, "g", Kind::File, ROOT_NEW).unwrap();
        fs.link(ROOT, "f2", f).unwrap();
        assert_eq!(fs.rename(a, "f", b, "g").unwrap(), Some(g));
        assert_eq!(fs.lookup(b, "g").unwrap(), f);
        assert_eq!(fs.lookup(a, "f"), Err(Errno::NoEnt));
        assert_eq!(fs.rename(ROOT, "f2", b, "g").unwrap(), None); // same inode: nothing happens
        let sub = fs.create(a, "sub", Kind::Dir, ROOT_NEW).unwrap();
        assert_eq!(fs.rename(a, "sub", b, "g"), Err(Errno::NotDir));
        fs.rename(a, "sub", b, "sub").unwrap();
        assert_eq!(fs.getattr(a).unwrap().nlink, 2);
        assert_eq!(fs.getattr(b).unwrap().nlink, 3);
        assert_eq!(fs.lookup(b, "sub").unwrap(), sub);
        let e = fs.create(ROOT, "e", Kind::Dir, ROOT_NEW).unwrap();
        assert_eq!(fs.rename(ROOT, "e", ROOT, "b"), Err(Errno::NotEmpty));
        assert_eq!(fs.rename(b, "sub", ROOT, "e").unwrap(), Some(e));
    }

    #[test]
    fn static_files_are_free_until_written() {
        static BYTES: [u8; 10000] = [5; 10000];
        let mut fs = Tmpfs::new(16384, 10);
        let f = fs.add_static(ROOT, "s", &BYTES, ROOT_NEW).unwrap();
        assert_eq!(fs.statfs().unwrap().free_blocks, 4);
        let mut b = [0; 4];
        assert_eq!(fs.read(f, 9998, &mut b).unwrap(), 2);
        fs.write(f, 0, b"x").unwrap();
        assert_eq!(fs.statfs().unwrap().free_blocks, 1);
        assert_eq!(fs.read(f, 0, &mut b).unwrap(), 4);
        assert_eq!(&b, b"x\x05\x05\x05");
        fs.unlink(ROOT, "s").unwrap();
        fs.evict(f).unwrap();
        assert_eq!(fs.statfs().unwrap().free_blocks, 4);
    }

    #[test]
    fn symlinks_keep_their_target() {
        let mut fs = Tmpfs::new(1 << 20, 100);
        let l = fs.symlink(ROOT, "l", "/some/where", ROOT_NEW).unwrap();
        assert_eq!(fs.readlink(l).unwrap(), "/some/where");
        let a = fs.getattr(l).unwrap();
        assert_eq!((a.kind, a.size, a.perm), (Kind::Symlink, 11, 0o777));
        assert_eq!(fs.symlink(ROOT, "m", "", ROOT_NEW), Err(Errno::Inval));
        let mut b = [0; 4];
        assert_eq!(fs.read(l, 0, &mut b), Err(Errno::Inval));
    }
}
