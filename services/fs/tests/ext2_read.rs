//! ext2 images made by mke2fs -d on the host read back byte for byte; mount refusals.

mod ext2_common;

use ext2_common::*;
use keel_fs::Errno;
use keel_fs::ext2::{Ext2, MountOptions};
use keel_fs::node::{FileSystem, Kind};
use std::collections::BTreeSet;
use std::path::Path;

/// Sizes around the 1 KiB-block boundaries: 12 direct blocks, then 256 single-indirect ones.
const SIZES: &[usize] = &[
    0,
    1,
    1000,
    1024,
    12 * 1024,
    12 * 1024 + 1,
    100_000,
    268 * 1024,
    268 * 1024 + 5,
    400_000,
];

/// Populates a host directory with files, nested directories, symlinks and a hard link.
fn populate(root: &Path) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    for (i, &size) in SIZES.iter().enumerate() {
        std::fs::write(root.join(format!("f{size}")), pattern(size, i as u64 + 1)).unwrap();
    }
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep file\n").unwrap();
    std::fs::write(root.join("a/mid"), pattern(5000, 99)).unwrap();
    std::os::unix::fs::symlink("a/b/c/deep.txt", root.join("fast-link")).unwrap();
    std::os::unix::fs::symlink("x".repeat(200), root.join("slow-link")).unwrap();
    std::fs::hard_link(root.join("a/mid"), root.join("hard")).unwrap();
}

/// Compares the host tree under `host` with the directory `dir` of the mounted file system.
fn compare(fs: &mut Ext2, host: &Path, dir: u64) -> usize {
    let mut checked = 0;
    let ours: BTreeSet<String> = fs
        .readdir(dir)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    let mut theirs: BTreeSet<String> = std::fs::read_dir(host)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let is_root = dir == fs.root();
    if is_root {
        theirs.insert("lost+found".into());
    }
    assert_eq!(ours, theirs, "entries of {}", host.display());
    for name in theirs.iter().filter(|n| *n != "lost+found" || !is_root) {
        let p = host.join(name);
        let ino = fs.lookup(dir, name).unwrap();
        let attr = fs.getattr(ino).unwrap();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.file_type().is_symlink() {
            assert_eq!(attr.kind, Kind::Symlink);
            let target = std::fs::read_link(&p)
                .unwrap()
                .into_os_string()
                .into_string()
                .unwrap();
            assert_eq!(fs.readlink(ino).unwrap(), target, "{}", p.display());
        } else if meta.is_dir() {
            assert_eq!(attr.kind, Kind::Dir);
            checked += compare(fs, &p, ino);
        } else {
            assert_eq!(attr.kind, Kind::File);
            assert_eq!(attr.size, meta.len());
            assert!(
                read_all(fs, ino) == std::fs::read(&p).unwrap(),
                "contents of {}",
                p.display()
            );
        }
        checked += 1;
    }
    checked
}

fn read_tree(block_size: u32, inode_size: &str) {
    let test = format!("read-{block_size}-{inode_size}");
    let host = TempPath::new(&test, "-dir");
    let image = TempPath::new(&test, ".img");
    populate(&host.0);
    mkfs(
        &image.0,
        4096,
        block_size,
        &["-I", inode_size],
        Some(&host.0),
    );
    let disk = SharedDisk::from_file(&image.0);
    let mut fs = Ext2::mount(
        Box::new(disk),
        MountOptions {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    let root = fs.root();
    assert_eq!(compare(&mut fs, &host.0, root), 19);
    let mid = resolve(&mut fs, "a/mid").unwrap();
    assert_eq!(resolve(&mut fs, "hard").unwrap(), mid);
    assert_eq!(fs.getattr(mid).unwrap().nlink, 2);
    let a = resolve(&mut fs, "a").unwrap();
    assert_eq!(fs.getattr(a).unwrap().nlink, 3);
    // Reads at and past the end.
    let f = resolve(&mut fs, "f1000").unwrap();
    let mut buf = [0u8; 100];
    assert_eq!(fs.read(f, 950, &mut buf).unwrap(), 50);
    assert_eq!(fs.read(f, 1000, &mut buf).unwrap(), 0);
    assert_eq!(fs.read(f, 1 << 40, &mut buf).unwrap(), 0);
    let st = fs.statfs().unwrap();
    assert_eq!(st.block_size, block_size);
    assert!(st.free_blocks > 0 && st.free_blocks < st.blocks);
    fs.unmount().unwrap();
}

#[test]
fn reads_mke2fs_tree_1k() {
    read_tree(1024, "128");
}

#[test]
fn reads_mke2fs_tree_2k() {
    read_tree(2048, "256");
}

#[test]
fn reads_mke2fs_tree_4k() {
    read_tree(4096, "256");
}

#[test]
fn refuses_unsupported_features_and_journals_read_write() {
    let image = TempPath::new("features", ".img");
    let out = std::process::Command::new(tool("mke2fs"))
        .args(["-q", "-F", "-t", "ext4"])
        .arg(&image.0)
        .arg("4M")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = Ext2::mount(Box::new(SharedDisk::from_file(&image.0)), opts())
        .err()
        .expect("ext4 must not mount");
    assert_eq!(err.errno, Errno::Inval);
    assert!(err.reason.contains("extents"), "{}", err.reason);

    let out = std::process::Command::new(tool("mke2fs"))
        .args(["-q", "-F", "-t", "ext3"])
        .arg(&image.0)
        .arg("4M")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = Ext2::mount(Box::new(SharedDisk::from_file(&image.0)), opts())
        .err()
        .expect("ext3 must not mount read-write");
    assert_eq!(err.errno, Errno::RoFs);
    assert!(err.reason.contains("has_journal"), "{err}");
    let mut fs = Ext2::mount(
        Box::new(SharedDisk::from_file(&image.0)),
        MountOptions {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    assert!(
        fs.readdir(fs.root())
            .unwrap()
            .iter()
            .any(|e| e.name == "lost+found")
    );

    let err = Ext2::mount(Box::new(SharedDisk::new(vec![0; 8192])), opts())
        .err()
        .unwrap();
    assert_eq!(err.errno, Errno::Inval);
}

#[test]
fn read_only_mounts_refuse_writes() {
    let image = TempPath::new("readonly", ".img");
    mkfs(&image.0, 1024, 1024, &[], None);
    let before = std::fs::read(&image.0).unwrap();
    let mut disk = SharedDisk::from_file(&image.0);
    let mut fs = Ext2::mount(
        Box::new(disk.clone()),
        MountOptions {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    assert!(fs.is_read_only());
    let root = fs.root();
    assert_eq!(fs.create(root, "x", Kind::File, WHO), Err(Errno::RoFs));
    let lf = fs.lookup(root, "lost+found").unwrap();
    assert_eq!(fs.rmdir(root, "lost+found"), Err(Errno::RoFs));
    assert_eq!(fs.setattr(lf, &Default::default()).err(), Some(Errno::RoFs));
    fs.sync().unwrap();
    fs.unmount().unwrap();
    assert!(
        *disk.bytes.lock().unwrap() == before,
        "a read-only mount changed the image"
    );

    disk.read_only = true;
    let mut fs = Ext2::mount(Box::new(disk), opts()).unwrap();
    assert!(fs.is_read_only());
    assert_eq!(fs.symlink(root, "l", "t", WHO), Err(Errno::RoFs));
    fs.unmount().unwrap();
}

#[test]
fn mount_marks_not_clean_until_unmount() {
    let image = TempPath::new("state", ".img");
    mkfs(&image.0, 1024, 1024, &[], None);
    let state = |b: &[u8]| {
        (
            u16::from_le_bytes([b[1024 + 58], b[1024 + 59]]),
            u16::from_le_bytes([b[1024 + 52], b[1024 + 53]]),
        )
    };
    let before = state(&std::fs::read(&image.0).unwrap());
    assert_eq!(before.0 & 1, 1);
    let (fs, disk) = mount_rw(&image.0);
    let mounted = state(&disk.bytes.lock().unwrap());
    assert_eq!(
        mounted.0 & 1,
        0,
        "a read-write mount must clear the valid flag on disk"
    );
    assert_eq!(mounted.1, before.1 + 1);
    unmount_to(fs, &disk, &image.0);
    assert_eq!(state(&std::fs::read(&image.0).unwrap()).0 & 1, 1);
    assert_fsck_clean(&image.0);
}

#[test]
fn revision_0_images_mount_and_write() {
    let image = TempPath::new("rev0", ".img");
    mkfs(&image.0, 2048, 1024, &["-r", "0"], None);
    let (mut fs, disk) = mount_rw(&image.0);
    let root = fs.root();
    let d = fs.create(root, "dir", Kind::Dir, WHO).unwrap();
    let data = pattern(70_000, 5);
    let f = write_file(&mut fs, d, "file", 0, &data);
    assert_eq!(read_all(&mut fs, f), data);
    assert_eq!(fs.readdir(d).unwrap()[0].kind, Kind::File);
    unmount_to(fs, &disk, &image.0);
    assert_fsck_clean(&image.0);
    assert!(debugfs(&image.0, "cat /dir/file") == data);
}

/// A disk that counts the reads it is asked for.
struct CountingDisk(SharedDisk, std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl keel_fs::block::BlockDevice for CountingDisk {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.0.write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), Errno> {
        self.0.flush()
    }
}

/// A read that misses the cache brings the file's following blocks in with it, in one device
/// request per run of blocks that lie one after another on the disk (64 KiB at most): a 1 MiB
/// file read in 64 KiB pieces costs about 16 device reads, not 256. The bytes are the file's.
#[test]
fn sequential_reads_fetch_runs_of_blocks_in_one_request() {
    let host = TempPath::new("readahead", "-dir");
    let image = TempPath::new("readahead", ".img");
    std::fs::create_dir_all(&host.0).unwrap();
    let data = pattern(1 << 20, 7);
    std::fs::write(host.0.join("big"), &data).unwrap();
    mkfs(&image.0, 8192, 4096, &[], Some(&host.0));
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let disk = CountingDisk(SharedDisk::from_file(&image.0), reads.clone());
    let mut fs = Ext2::mount(Box::new(disk), MountOptions { read_only: true, ..opts() }).unwrap();
    let big = resolve(&mut fs, "big").unwrap();
    let before = reads.load(std::sync::atomic::Ordering::Relaxed);
    let mut got = vec![0u8; data.len()];
    for (i, chunk) in got.chunks_mut(64 * 1024).enumerate() {
        assert_eq!(fs.read(big, (i * 64 * 1024) as u64, chunk).unwrap(), chunk.len());
    }
    let n = reads.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(got == data, "the file read back differs");
    // 16 runs of 64 KiB, plus the indirect blocks (and the runs they interrupt).
    assert!((16..=24).contains(&n), "{n} device reads for 1 MiB");
}
