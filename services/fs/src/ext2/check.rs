//! The fuzzing entry point: mount an arbitrary image, walk it, change it, unmount it, with a
//! bounded amount of work. Every error is expected and ignored; a panic or a hang is the bug.
//!
//! The walk keeps a set of visited directories and caps the entries, bytes and depth it looks
//! at, so a corrupt image with a directory cycle ends.

use super::{Ext2, MountOptions};
use crate::block::MemDisk;
use crate::node::{FileSystem, Ino, Kind, NewNode, SetAttr};
use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;

/// Most directory entries the walk looks at.
const MAX_ENTRIES: usize = 4096;
/// Most file bytes the walk reads.
const MAX_BYTES: u64 = 4 << 20;
/// Most bytes read from one file.
const MAX_FILE_BYTES: u64 = 256 << 10;
const MAX_DEPTH: usize = 64;

/// What [`exercise`] managed to do (for tests: a valid image must be walked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exercise {
    pub mounted: bool,
    pub read_write: bool,
    pub entries: usize,
    pub bytes_read: u64,
    pub unmounted: bool,
}

/// Mounts `image` (read-write, or read-only if that is refused), walks the whole tree (stat,
/// read, readlink), tries a few changes, syncs and unmounts.
pub fn exercise(image: &[u8]) -> Exercise {
    let mut out = Exercise::default();
    let opts = MountOptions {
        read_only: false,
        cache_blocks: 64,
        now: 1_000_000,
    };
    let mut fs = match Ext2::mount(Box::new(MemDisk::new(image.to_vec())), opts) {
        Ok(fs) => fs,
        Err(_) => {
            let ro = MountOptions {
                read_only: true,
                ..opts
            };
            match Ext2::mount(Box::new(MemDisk::new(image.to_vec())), ro) {
                Ok(fs) => fs,
                Err(_) => return out,
            }
        }
    };
    out.mounted = true;
    out.read_write = !fs.is_read_only();
    walk(&mut fs, &mut out);
    if out.read_write {
        mutate(&mut fs);
        let _ = fs.statfs();
        walk(&mut fs, &mut Exercise::default());
    }
    out.unmounted = fs.unmount().is_ok();
    out
}

/// Visits every directory once (depth-first, bounded), stat'ing, reading and reading links.
fn walk(fs: &mut Ext2, out: &mut Exercise) {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<(Ino, usize)> = vec![(fs.root(), 0)];
    let mut buf = vec![0u8; 4096];
    while let Some((dir, depth)) = stack.pop() {
        if !seen.insert(dir) || depth > MAX_DEPTH {
            continue;
        }
        let _ = fs.getattr(dir);
        let Ok(entries) = fs.readdir(dir) else {
            continue;
        };
        for e in entries {
            if out.entries >= MAX_ENTRIES {
                return;
            }
            out.entries += 1;
            let _ = fs.lookup(dir, &e.name);
            let _ = fs.getattr(e.ino);
            match e.kind {
                Kind::Dir => stack.push((e.ino, depth + 1)),
                Kind::Symlink => {
                    let _ = fs.readlink(e.ino);
                }
                Kind::File => {
                    let mut off = 0u64;
                    while off < MAX_FILE_BYTES && out.bytes_read < MAX_BYTES {
                        match fs.read(e.ino, off, &mut buf) {
                            Ok(n) if n > 0 => {
                                off += n as u64;
                                out.bytes_read += n as u64;
                            }
                            _ => break,
                        }
                    }
                }
                Kind::Other => {}
            }
        }
    }
}

/// A few changes of every kind; errors ignored, returned inodes evicted.
fn mutate(fs: &mut Ext2) {
    let root = fs.root();
    let who = NewNode {
        perm: 0o644,
        uid: 1,
        gid: 1,
    };
    fs.set_time(2_000_000);
    let evict = |fs: &mut Ext2, r: Result<Option<Ino>, _>| {
        if let Ok(Some(ino)) = r {
            let _ = fs.evict(ino);
        }
    };
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 3) as u8).collect();
    if let Ok(f) = fs.create(root, "fuzz-file", Kind::File, who) {
        let _ = fs.write(f, 0, &data);
        let _ = fs.write(f, 300_000, &data[..100]);
        let _ = fs.truncate(f, 5000);
        let _ = fs.setattr(
            f,
            &SetAttr {
                perm: Some(0o600),
                ..SetAttr::default()
            },
        );
        let _ = fs.fsync(f);
        let _ = fs.link(root, "fuzz-link", f);
    }
    if let Ok(d) = fs.create(root, "fuzz-dir", Kind::Dir, who) {
        let _ = fs.create(d, "inner", Kind::File, who);
        let _ = fs.symlink(d, "fast", "target", who);
        let long = "t".repeat(100);
        let _ = fs.symlink(d, "slow", &long, who);
        let r = fs.rename(root, "fuzz-file", d, "moved");
        evict(fs, r);
        let r = fs.rename(d, "inner", root, "fuzz-link");
        evict(fs, r);
    }
    // Change whatever the image already holds, too.
    if let Ok(entries) = fs.readdir(root) {
        for e in entries.into_iter().take(8) {
            match e.kind {
                Kind::File => {
                    let _ = fs.write(e.ino, 1, b"x");
                    let _ = fs.truncate(e.ino, 0);
                    let r = fs.unlink(root, &e.name);
                    evict(fs, r);
                }
                Kind::Dir => {
                    let _ = fs.create(e.ino, "new", Kind::File, who);
                    let r = fs.rename(root, &e.name, root, "renamed-dir");
                    evict(fs, r);
                    let r = fs.rmdir(root, "renamed-dir");
                    evict(fs, r);
                }
                _ => {
                    let r = fs.unlink(root, &e.name);
                    evict(fs, r);
                }
            }
        }
    }
    let _ = fs.sync();
}
