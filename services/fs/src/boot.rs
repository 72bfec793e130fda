//! The root file system at boot: a tmpfs holding the initrd's files.
//!
//! Regular files borrow their bytes from the initrd mapping (no copy until written); directories
//! missing from the archive are made on the way (`guest/linux/Image` makes `guest` and
//! `guest/linux`); symlinks keep their targets. Entries with unsafe names (`..`, empty parts)
//! are skipped, not trusted.

use crate::node::{FileSystem, Ino, Kind, NewNode};
use crate::tmpfs::Tmpfs;
use keel_formats::cpio::Archive;
use keel_rt::errno::Errno;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// What was copied in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Populated {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub skipped: usize,
}

/// Adds every entry of the cpio `archive` to `fs` (owned by root).
pub fn populate(fs: &mut Tmpfs, archive: &'static [u8]) -> Result<Populated, Errno> {
    let archive = Archive::new(archive).map_err(|_| Errno::Inval)?;
    let mut done = Populated::default();
    for entry in archive.entries() {
        let Ok(entry) = entry else {
            return Err(Errno::Inval);
        };
        let parts: alloc::vec::Vec<&str> = entry
            .name
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let Some((name, dirs)) = parts.split_last() else {
            continue;
        };
        if parts.iter().any(|p| *p == "..") {
            done.skipped += 1;
            continue;
        }
        let mut dir = fs.root();
        for d in dirs {
            dir = mkdir(fs, dir, d, 0o755, &mut done)?;
        }
        let perm = (entry.mode & 0o7777) as u16;
        let new = NewNode {
            perm,
            uid: 0,
            gid: 0,
        };
        let r = match entry.mode & S_IFMT {
            S_IFDIR => mkdir(fs, dir, name, perm, &mut done).map(|_| ()),
            S_IFREG => fs
                .add_static(dir, name, entry.data, new)
                .map(|_| done.files += 1),
            S_IFLNK => match core::str::from_utf8(entry.data) {
                Ok(target) => fs
                    .symlink(dir, name, target, new)
                    .map(|_| done.symlinks += 1),
                Err(_) => Err(Errno::Inval),
            },
            _ => Err(Errno::Inval),
        };
        if r.is_err() {
            done.skipped += 1;
        }
    }
    Ok(done)
}

/// The directories of `path` (relative to the root, `sys/fs/cgroup`), made where missing
/// (root-owned, 0755): a mount point the initrd need not hold. The last one's inode.
pub fn make_dirs(fs: &mut Tmpfs, path: &str) -> Result<Ino, Errno> {
    let mut dir = fs.root();
    let mut done = Populated::default();
    for name in path.split('/').filter(|p| !p.is_empty()) {
        dir = mkdir(fs, dir, name, 0o755, &mut done)?;
    }
    Ok(dir)
}

/// The directory `name` in `dir`, made if missing.
fn mkdir(
    fs: &mut Tmpfs,
    dir: Ino,
    name: &str,
    perm: u16,
    done: &mut Populated,
) -> Result<Ino, Errno> {
    match fs.lookup(dir, name) {
        Ok(ino) => Ok(ino),
        Err(Errno::NoEnt) => {
            done.dirs += 1;
            fs.create(
                dir,
                name,
                Kind::Dir,
                NewNode {
                    perm,
                    uid: 0,
                    gid: 0,
                },
            )
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_formats::cpio::write_newc;

    #[test]
    fn archives_become_trees_and_bad_names_are_skipped() {
        let bytes = write_newc(&[
            ("bin", 0o40755, b""),
            ("bin/sh", 0o100755, b"ELF"),
            ("guest/linux/Image", 0o100644, b"kernel"),
            ("lib", 0o120777, b"/bin"),
            ("../escape", 0o100644, b"x"),
        ]);
        let bytes: &'static [u8] = alloc::boxed::Box::leak(bytes.into_boxed_slice());
        let mut fs = Tmpfs::new(1 << 20, 100);
        let done = populate(&mut fs, bytes).unwrap();
        assert_eq!(
            done,
            Populated {
                files: 2,
                dirs: 3,
                symlinks: 1,
                skipped: 1
            }
        );
        let root = fs.root();
        let guest = fs.lookup(root, "guest").unwrap();
        let linux = fs.lookup(guest, "linux").unwrap();
        let img = fs.lookup(linux, "Image").unwrap();
        let mut b = [0u8; 6];
        fs.read(img, 0, &mut b).unwrap();
        assert_eq!(&b, b"kernel");
        let bin = fs.lookup(fs.root(), "bin").unwrap();
        let sh = fs.lookup(bin, "sh").unwrap();
        assert_eq!(fs.getattr(sh).unwrap().perm, 0o755);
        assert!(populate(&mut Tmpfs::new(1, 1), b"garbage").is_err());
    }

    #[test]
    fn mount_points_are_made_beside_what_is_there() {
        let bytes = write_newc(&[("sys/kernel", 0o40700, b"")]);
        let bytes: &'static [u8] = alloc::boxed::Box::leak(bytes.into_boxed_slice());
        let mut fs = Tmpfs::new(1 << 20, 100);
        populate(&mut fs, bytes).unwrap();
        let cg = make_dirs(&mut fs, "sys/fs/cgroup").unwrap();
        let sys = fs.lookup(fs.root(), "sys").unwrap();
        assert!(
            fs.lookup(sys, "kernel").is_ok(),
            "the initrd's /sys is kept"
        );
        let sysfs = fs.lookup(sys, "fs").unwrap();
        assert_eq!(fs.lookup(sysfs, "cgroup").unwrap(), cg);
        let a = fs.getattr(cg).unwrap();
        assert_eq!((a.kind, a.perm, a.uid), (Kind::Dir, 0o755, 0));
        assert_eq!(
            make_dirs(&mut fs, "/sys/fs/cgroup/").unwrap(),
            cg,
            "made once"
        );
    }
}
