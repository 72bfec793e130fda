//! `cgroup2`: the cgroup v2 files at `/sys/fs/cgroup`, forwarded to resmgr, which owns the tree.
//!
//! This file system keeps no cgroup state of its own, only inode numbers ([`inodes`]) and the
//! text of a file being read; every answer comes from resmgr ([`resmgr`]):
//! - a group is a directory: readdir is `ls PATH` (its control files, and its child groups as
//!   directories), lookup checks a name against that listing, mkdir is `mkdir PATH`, rmdir is
//!   `rmdir PATH`;
//! - a control file is read with `cat PATH FILE` (fetched again at every read at offset 0, so
//!   each `cat` sees current values) and written with `set PATH FILE VALUE`, each write one
//!   value, its trailing newline dropped; truncating one does nothing (`echo 5 > pids.max`
//!   opens with O_TRUNC);
//! - creating a regular file is EACCES; unlink, rename, symlink, link, chmod and chown are EPERM
//!   (as Linux's cgroup2 answers them);
//! - attributes: root-owned, directories 0755, files 0644 (0444 for those cgroup v2 names
//!   read-only), size 0 as Linux shows: a value's length is only known by reading it, and it
//!   may change before the read anyway.
//!
//! Every operation on a group or file asks resmgr (getattr too), so an inode of a group that
//! resmgr no longer has answers ENOENT, whoever removed it. Without resmgr (no capability,
//! or a call that failed) operations answer EIO, except on the root directory's attributes, so
//! walking through the mount point and listing the mounts never need resmgr.
//!
//! It must never be called by resmgr (resmgr calls no other service): the file service waits
//! for resmgr's answer while holding its own lock.

pub mod inodes;
pub mod resmgr;
#[cfg(test)]
mod tests;

use crate::node::{Attr, DirEntry, FileSystem, Ino, Kind, NAME_MAX, NewNode, SetAttr, StatFs};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use inodes::{Inodes, Node, ROOT, child_path};
use keel_rt::errno::Errno;
use resmgr::{Listed, Resmgr, parse_listing, reads_only, value_of};

/// Files whose text is kept between reads (for reads past offset 0); past this many the kept
/// texts are dropped (a reader that stopped early leaves one behind).
const KEPT_TEXTS: usize = 64;

/// The cgroup2 file system.
pub struct CgroupFs {
    resmgr: Option<Box<dyn Resmgr>>,
    inodes: Inodes,
    /// The text each file gave at its last read at offset 0, until read to its end.
    texts: BTreeMap<Ino, Vec<u8>>,
    now: u64,
    /// Whether the last call to resmgr was answered (to log the change once, not every call).
    answering: bool,
}

impl CgroupFs {
    /// A cgroup2 file system over `resmgr` (None: every group operation answers EIO), mounted
    /// at `now` (seconds since the epoch: the root's timestamps).
    pub fn new(resmgr: Option<Box<dyn Resmgr>>, now: u64) -> Self {
        CgroupFs {
            resmgr,
            inodes: Inodes::new(now),
            texts: BTreeMap::new(),
            now,
            answering: true,
        }
    }

    fn ask(&mut self, words: &[&str]) -> Result<String, Errno> {
        let r = resmgr::run(self.resmgr.as_deref_mut(), words);
        let answered = r != Err(Errno::Io);
        if answered != self.answering && self.resmgr.is_some() {
            self.answering = answered;
            if answered {
                keel_rt::println!("fs: cgroup2: resmgr answers again");
            } else {
                keel_rt::println!(
                    "fs: cgroup2: resmgr did not answer `{}`; /sys/fs/cgroup answers EIO until it does",
                    words.first().copied().unwrap_or("")
                );
            }
        }
        r
    }

    /// The entries of `group`, as resmgr lists them now. A group resmgr does not have is
    /// forgotten, with what is below it.
    fn listing(&mut self, group: &str) -> Result<Vec<Listed>, Errno> {
        match self.ask(&["ls", group]) {
            Ok(text) => Ok(parse_listing(&text)),
            Err(Errno::NoEnt) => {
                self.inodes.forget_group(group);
                Err(Errno::NoEnt)
            }
            Err(e) => Err(e),
        }
    }

    fn node(&self, ino: Ino) -> Result<Node, Errno> {
        self.inodes.node(ino).cloned().ok_or(Errno::NoEnt)
    }

    /// The group `ino` is (`NotDir` for a file).
    fn group(&self, ino: Ino) -> Result<String, Errno> {
        match self.node(ino)? {
            Node::Group(g) => Ok(g),
            Node::File(..) => Err(Errno::NotDir),
        }
    }

    /// The group and name of the file `ino` is (`IsDir` for a group).
    fn file(&self, ino: Ino) -> Result<(String, String), Errno> {
        match self.node(ino)? {
            Node::File(g, f) => Ok((g, f)),
            Node::Group(_) => Err(Errno::IsDir),
        }
    }

    fn node_of(group: &str, e: &Listed) -> Node {
        match e.kind {
            Kind::Dir => Node::Group(child_path(group, &e.name)),
            _ => Node::File(String::from(group), e.name.clone()),
        }
    }

    fn attr(&self, ino: Ino, kind: Kind, perm: u16, nlink: u32) -> Attr {
        let t = self.inodes.seen(ino);
        Attr {
            ino,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            size: 0,
            blocks: 0,
            atime: t,
            mtime: t,
            ctime: t,
        }
    }
}

impl FileSystem for CgroupFs {
    /// Limits are the administrators' (procmgr's ADMIN right: the shell, ktest): a program the
    /// shell runs in a group must not lift its own `memory.max`.
    fn admin_only(&self) -> bool {
        true
    }

    fn fs_type(&self) -> &'static str {
        "cgroup2"
    }

    fn root(&self) -> Ino {
        ROOT
    }

    fn set_time(&mut self, now: u64) {
        self.now = now;
    }

    fn statfs(&mut self) -> Result<StatFs, Errno> {
        Ok(StatFs {
            block_size: 4096,
            blocks: 0,
            free_blocks: 0,
            files: 0,
            free_files: 0,
            name_max: NAME_MAX as u32,
        })
    }

    fn getattr(&mut self, ino: Ino) -> Result<Attr, Errno> {
        match self.node(ino)? {
            // The mount point's root answers without resmgr: walks and `mount` never wait.
            Node::Group(_) if ino == ROOT => Ok(self.attr(ino, Kind::Dir, 0o755, 2)),
            Node::Group(g) => {
                let groups = self
                    .listing(&g)?
                    .iter()
                    .filter(|e| e.kind == Kind::Dir)
                    .count();
                Ok(self.attr(ino, Kind::Dir, 0o755, 2 + groups as u32))
            }
            Node::File(g, f) => {
                if !self
                    .listing(&g)?
                    .iter()
                    .any(|e| e.name == f && e.kind == Kind::File)
                {
                    self.inodes.forget_child(&g, &f);
                    return Err(Errno::NoEnt);
                }
                let perm = if reads_only(&f) { 0o444 } else { 0o644 };
                Ok(self.attr(ino, Kind::File, perm, 1))
            }
        }
    }

    fn setattr(&mut self, _: Ino, _: &SetAttr) -> Result<Attr, Errno> {
        Err(Errno::Perm)
    }

    fn lookup(&mut self, dir: Ino, name: &str) -> Result<Ino, Errno> {
        let g = self.group(dir)?;
        let listed = self.listing(&g)?;
        match listed.iter().find(|e| e.name == name) {
            Some(e) => Ok(self.inodes.ino(Self::node_of(&g, e), self.now)),
            None => {
                self.inodes.forget_child(&g, name);
                Err(Errno::NoEnt)
            }
        }
    }

    fn readdir(&mut self, dir: Ino) -> Result<Vec<DirEntry>, Errno> {
        let g = self.group(dir)?;
        let listed = self.listing(&g)?;
        let nodes: Vec<Node> = listed.iter().map(|e| Self::node_of(&g, e)).collect();
        self.inodes.keep_children(&g, &nodes);
        let now = self.now;
        Ok(listed
            .into_iter()
            .zip(nodes)
            .map(|(e, n)| DirEntry {
                ino: self.inodes.ino(n, now),
                name: e.name,
                kind: e.kind,
            })
            .collect())
    }

    fn read(&mut self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let (g, f) = self.file(ino)?;
        if offset == 0 || !self.texts.contains_key(&ino) {
            let text = self.ask(&["cat", &g, &f])?;
            if self.texts.len() >= KEPT_TEXTS {
                self.texts.clear();
            }
            self.texts.insert(ino, text.into_bytes());
        }
        let text = self.texts.get(&ino).map_or(&[][..], Vec::as_slice);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(text.len());
        let n = buf.len().min(text.len() - start);
        buf[..n].copy_from_slice(&text[start..start + n]);
        if n == 0 {
            self.texts.remove(&ino);
        }
        Ok(n)
    }

    fn write(&mut self, ino: Ino, _offset: u64, data: &[u8]) -> Result<usize, Errno> {
        // Each write is one value, wherever the offset is (as Linux's cgroup files take them).
        let (g, f) = self.file(ino)?;
        let value = value_of(data)?;
        self.ask(&["set", &g, &f, value])?;
        self.texts.remove(&ino);
        Ok(data.len())
    }

    fn truncate(&mut self, ino: Ino, _size: u64) -> Result<(), Errno> {
        self.file(ino).map(|_| ())
    }

    fn create(&mut self, dir: Ino, name: &str, kind: Kind, _: NewNode) -> Result<Ino, Errno> {
        let g = self.group(dir)?;
        if kind != Kind::Dir {
            return Err(Errno::Acces);
        }
        let path = child_path(&g, name);
        self.ask(&["mkdir", &path])?;
        Ok(self.inodes.ino(Node::Group(path), self.now))
    }

    fn symlink(&mut self, _: Ino, _: &str, _: &str, _: NewNode) -> Result<Ino, Errno> {
        Err(Errno::Perm)
    }

    fn readlink(&mut self, _: Ino) -> Result<String, Errno> {
        Err(Errno::Inval)
    }

    fn link(&mut self, _: Ino, _: &str, _: Ino) -> Result<(), Errno> {
        Err(Errno::Perm)
    }

    fn unlink(&mut self, _: Ino, _: &str) -> Result<Option<Ino>, Errno> {
        Err(Errno::Perm)
    }

    fn rmdir(&mut self, dir: Ino, name: &str) -> Result<Option<Ino>, Errno> {
        let path = child_path(&self.group(dir)?, name);
        self.ask(&["rmdir", &path])?;
        // Its inode is forgotten now, so descriptors still open on it answer ENOENT; the VFS
        // has nothing to evict.
        self.inodes.forget_group(&path);
        Ok(None)
    }

    fn rename(&mut self, _: Ino, _: &str, _: Ino, _: &str) -> Result<Option<Ino>, Errno> {
        Err(Errno::Perm)
    }

    fn evict(&mut self, _: Ino) -> Result<(), Errno> {
        Ok(())
    }

    fn fsync(&mut self, _: Ino) -> Result<(), Errno> {
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Errno> {
        Ok(())
    }
}
