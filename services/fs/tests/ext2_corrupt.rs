//! Corrupt images: a deterministic corpus made from a real mke2fs image. Mounting, walking and
//! changing each must end in errors, never a panic or a hang (each case runs under a watchdog).

mod ext2_common;

use ext2_common::*;
use keel_fs::ext2::check::exercise;
use keel_fs::ext2::{Ext2, MountOptions};
use keel_fs::node::{FileSystem, Kind};
use std::sync::mpsc;
use std::time::Duration;

const WATCHDOG: Duration = Duration::from_secs(20);

/// The base image: 1 KiB blocks, files up to double-indirect, nested directories, symlinks.
fn base_image(name: &str) -> Vec<u8> {
    let host = TempPath::new(name, "-dir");
    let image = TempPath::new(name, ".img");
    std::fs::create_dir_all(host.0.join("a/b/c")).unwrap();
    std::fs::write(host.0.join("small"), b"small").unwrap();
    std::fs::write(host.0.join("a/ind"), pattern(40 * 1024, 1)).unwrap();
    std::fs::write(host.0.join("a/b/dind"), pattern(300 * 1024, 2)).unwrap();
    std::fs::write(host.0.join("a/b/c/leaf"), b"leaf").unwrap();
    std::os::unix::fs::symlink("a/b/c/leaf", host.0.join("fast")).unwrap();
    std::os::unix::fs::symlink("y".repeat(120), host.0.join("slow")).unwrap();
    mkfs(&image.0, 1024, 1024, &["-N", "64"], Some(&host.0));
    std::fs::read(&image.0).unwrap()
}

struct Geometry {
    bs: usize,
    inode_size: usize,
    ipg: usize,
    gdt: usize,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn geometry(img: &[u8]) -> Geometry {
    let sb = &img[1024..2048];
    let bs = 1024usize << u32_at(sb, 24);
    Geometry {
        bs,
        inode_size: u16::from_le_bytes([sb[88], sb[89]]) as usize,
        ipg: u32_at(sb, 40) as usize,
        gdt: (u32_at(sb, 20) as usize + 1) * bs,
    }
}

/// The byte offset of inode `ino`.
fn inode_at(img: &[u8], ino: usize) -> usize {
    let g = geometry(img);
    let group = (ino - 1) / g.ipg;
    let table = u32_at(img, g.gdt + group * 32 + 8) as usize;
    table * g.bs + ((ino - 1) % g.ipg) * g.inode_size
}

/// The inode of a path, through our own (read-only) mount of the intact image.
fn ino_of(img: &[u8], path: &str) -> usize {
    let mut fs = Ext2::mount(
        Box::new(SharedDisk::new(img.to_vec())),
        MountOptions {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    resolve(&mut fs, path).unwrap() as usize
}

/// `i_block[slot]` of the inode at `path`.
fn block_slot(img: &[u8], path: &str, slot: usize) -> usize {
    u32_at(img, inode_at(img, ino_of(img, path)) + 40 + 4 * slot) as usize
}

fn put_u32(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Overwrites `n` random bytes in `[start, start + len)`.
fn scribble(img: &mut [u8], rng: &mut Rng, start: usize, len: usize, n: usize) {
    for _ in 0..n {
        let at = start + rng.below(len as u64) as usize;
        if at < img.len() {
            img[at] = rng.next() as u8;
        }
    }
}

/// The offset of the directory entry named `name` in the directory block at `blk_off`.
fn entry_at(img: &[u8], blk_off: usize, bs: usize, name: &[u8]) -> usize {
    let mut off = 0;
    while off < bs {
        let rec = u16::from_le_bytes([img[blk_off + off + 4], img[blk_off + off + 5]]) as usize;
        let nl = img[blk_off + off + 6] as usize;
        if &img[blk_off + off + 8..blk_off + off + 8 + nl] == name {
            return blk_off + off;
        }
        off += rec;
    }
    panic!("no entry {:?}", String::from_utf8_lossy(name));
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let base = base_image("corpus");
    let g = geometry(&base);
    let bs = g.bs;
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rng = Rng(0x5eed_ce11_0001);

    for len in [
        0,
        511,
        1024,
        2047,
        2048,
        3 * 1024,
        10 * 1024,
        base.len() / 2,
        base.len() - 1024,
        base.len() - 512,
    ] {
        cases.push((format!("truncated-{len}"), base[..len].to_vec()));
    }
    let root_inode = inode_at(&base, 2);
    let itable = root_inode - g.inode_size; // inode 1 starts the table
    let root_dir = block_slot(&base, "", 0) * bs;
    let b_dir = block_slot(&base, "a/b", 0) * bs;
    let ind = block_slot(&base, "a/b/dind", 12) * bs;
    let dind = block_slot(&base, "a/b/dind", 13) * bs;
    let regions = [
        ("superblock", 1024, 1024, 6),
        ("gdt", g.gdt, 64, 4),
        ("itable", itable, 32 * g.inode_size, 24),
        ("rootdir", root_dir, bs, 8),
        ("subdir", b_dir, bs, 8),
        ("ind", ind, bs, 16),
        ("dind", dind, bs, 16),
    ];
    for (name, start, len, n) in regions {
        for i in 0..12 {
            let mut img = base.clone();
            scribble(&mut img, &mut rng, start, len, n);
            cases.push((format!("random-{name}-{i}"), img));
        }
    }
    // Superblock fields at their limits.
    for (field, v) in [
        (0, 0u32),
        (4, u32::MAX),
        (20, 7),
        (24, 30),
        (32, 0),
        (32, 9),
        (40, 0),
        (40, u32::MAX),
        (84, 0),
        (84, u32::MAX),
    ] {
        let mut img = base.clone();
        put_u32(&mut img, 1024 + field, v);
        cases.push((format!("sb-field-{field}-{v:#x}"), img));
    }
    let mut img = base.clone();
    img[1024 + 88..1024 + 90].copy_from_slice(&3000u16.to_le_bytes());
    cases.push(("sb-inode-size-3000".into(), img));
    // Group descriptors pointing into the superblock, past the end, at each other.
    for (field, v) in [
        (0, 1u32),
        (4, 0),
        (8, 1_000_000),
        (8, 2),
        (0, u32_at(&base, g.gdt + 8)),
    ] {
        let mut img = base.clone();
        put_u32(&mut img, g.gdt + field, v);
        cases.push((format!("gd-field-{field}-{v}"), img));
    }
    // A directory cycle: a/b/c's entry points back at a (and another at the root).
    let a = ino_of(&base, "a") as u32;
    for (name, target) in [("cycle-to-a", a), ("cycle-to-root", 2)] {
        let mut img = base.clone();
        let e = entry_at(&img, b_dir, bs, b"c");
        put_u32(&mut img, e, target);
        cases.push((name.into(), img));
    }
    let mut img = base.clone();
    let e = entry_at(&img, root_dir, bs, b"a");
    put_u32(&mut img, e, 2);
    cases.push(("dir-entry-self".into(), img));
    // rec_len 0, rec_len past the block, name_len past rec_len, inode past the count.
    for (name, at, bytes) in [
        ("rec-len-0", 4, vec![0, 0]),
        ("rec-len-huge", 4, vec![0xfc, 0xff]),
        ("name-len-huge", 6, vec![0xff]),
        ("entry-ino-huge", 0, vec![0xff, 0xff, 0xff, 0x7f]),
    ] {
        let mut img = base.clone();
        let e = entry_at(&img, root_dir, bs, b"..");
        img[e + at..e + at + bytes.len()].copy_from_slice(&bytes);
        cases.push((name.into(), img));
    }
    // Inode fields: huge sizes, pointers past the end or into metadata, link counts, modes.
    let files = ["small", "a/ind", "a/b/dind", "a", "slow", "fast"];
    for path in files {
        let ino = inode_at(&base, ino_of(&base, path));
        let tweaks: [(&str, usize, u32); 9] = [
            ("size-huge", 4, u32::MAX),
            ("size-high", 108, u32::MAX),
            ("block0-past-end", 40, 0xffff_fff0),
            ("block0-superblock", 40, 1),
            ("block0-itable", 40, (itable / bs) as u32),
            ("ind-past-end", 40 + 48, 1 << 30),
            ("dind-self", 40 + 52, (dind / bs) as u32),
            ("links-0", 26, 0),
            ("mode-0", 0, 0),
        ];
        for (t, off, v) in tweaks {
            let mut img = base.clone();
            if t == "links-0" || t == "mode-0" {
                img[ino + off..ino + off + 2].copy_from_slice(&(v as u16).to_le_bytes());
            } else {
                put_u32(&mut img, ino + off, v);
            }
            cases.push((format!("inode-{path}-{t}"), img));
        }
    }
    // Indirect blocks full of garbage pointers, loops and repeats.
    for (name, fill) in [
        ("ind-all-ones", 0xffff_ffffu32),
        ("ind-self", (ind / bs) as u32),
        ("ind-root-dir", (root_dir / bs) as u32),
        ("ind-inode-table", (itable / bs) as u32),
    ] {
        let mut img = base.clone();
        for i in 0..bs / 4 {
            put_u32(&mut img, ind + 4 * i, fill);
        }
        cases.push((name.into(), img));
        let mut img = base.clone();
        for i in 0..bs / 4 {
            put_u32(&mut img, dind + 4 * i, fill);
        }
        cases.push((format!("d{name}"), img));
    }
    // Bitmaps claiming everything free (allocation would hit metadata).
    for (name, field) in [("block-bitmap-free", 0), ("inode-bitmap-free", 4)] {
        let mut img = base.clone();
        let bm = u32_at(&img, g.gdt + field) as usize * bs;
        img[bm..bm + bs].fill(0);
        cases.push((name.into(), img));
    }
    cases
}

/// Runs `f` in a thread; fails the test with `name` if it panics or outlives the watchdog.
fn watchdog<F: FnOnce() + Send + 'static>(name: &str, f: F) {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(()) => h.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("case {name}: panicked"),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("case {name}: hung (no answer in {WATCHDOG:?})")
        }
    }
}

/// A read-only mount and a full bounded walk, as a service would do.
fn plain_read(img: Vec<u8>) {
    let Ok(mut fs) = Ext2::mount(
        Box::new(SharedDisk::new(img)),
        MountOptions {
            read_only: true,
            cache_blocks: 32,
            now: 0,
        },
    ) else {
        return;
    };
    let mut dirs = vec![fs.root()];
    let mut seen = std::collections::BTreeSet::new();
    let mut buf = vec![0u8; 8192];
    while let Some(d) = dirs.pop() {
        if !seen.insert(d) {
            continue;
        }
        let Ok(entries) = fs.readdir(d) else { continue };
        for e in entries {
            let _ = fs.getattr(e.ino);
            match e.kind {
                Kind::Dir => dirs.push(e.ino),
                Kind::Symlink => drop(fs.readlink(e.ino)),
                _ => {
                    let mut off = 0;
                    while let Ok(n @ 1..) = fs.read(e.ino, off, &mut buf) {
                        off += n as u64;
                    }
                }
            }
        }
    }
    let _ = fs.statfs();
    let _ = fs.unmount();
}

#[test]
fn intact_image_is_walked_and_changed() {
    let base = base_image("intact");
    let r = exercise(&base);
    assert!(r.mounted && r.read_write && r.unmounted, "{r:?}");
    assert!(r.entries >= 9 && r.bytes_read >= 300_000, "{r:?}");
}

#[test]
fn corrupt_images_give_errors_not_panics_or_hangs() {
    let cases = corpus();
    assert!(cases.len() > 150, "corpus too small: {}", cases.len());
    for (name, img) in cases {
        let copy = img.clone();
        watchdog(&name, move || {
            exercise(&copy);
        });
        watchdog(&name, move || plain_read(img));
    }
}

/// Group 0's descriptor field at `field` (0 block bitmap, 4 inode bitmap, 12 free blocks u16).
fn group0(img: &[u8], field: usize) -> usize {
    let g = geometry(img);
    g.gdt + field
}

/// Mounts read-write and expects a read-only fallback whose reason contains `why`: existing
/// files still read, and nothing can be created or written.
fn assert_degraded(img: Vec<u8>, why: &str) {
    let mut fs = Ext2::mount(Box::new(SharedDisk::new(img)), opts()).expect("mount");
    let reason = fs
        .degraded()
        .unwrap_or_else(|| panic!("an inconsistent image ({why}) was mounted read-write"));
    assert!(
        reason.contains(why),
        "reason {reason:?} does not say {why:?}"
    );
    assert!(fs.is_read_only());
    let small = resolve(&mut fs, "small").unwrap();
    assert_eq!(read_all(&mut fs, small), b"small");
    let root = fs.root();
    assert_eq!(
        fs.create(root, "new", Kind::File, WHO).err(),
        Some(keel_fs::Errno::RoFs)
    );
    assert_eq!(fs.write(small, 0, b"x").err(), Some(keel_fs::Errno::RoFs));
}

#[test]
fn a_consistent_image_mounts_read_write() {
    let fs = Ext2::mount(Box::new(SharedDisk::new(base_image("consistent"))), opts()).unwrap();
    assert_eq!(fs.degraded(), None);
    assert!(!fs.is_read_only());
}

#[test]
fn a_zeroed_inode_bitmap_mounts_read_only() {
    let mut img = base_image("zero-ibitmap");
    let g = geometry(&img);
    let at = u32_at(&img, group0(&img, 4)) as usize * g.bs;
    img[at..at + g.bs].fill(0);
    assert_degraded(img, "inode bitmap");
}

#[test]
fn a_zeroed_block_bitmap_mounts_read_only() {
    let mut img = base_image("zero-bbitmap");
    let g = geometry(&img);
    let at = u32_at(&img, group0(&img, 0)) as usize * g.bs;
    img[at..at + g.bs].fill(0);
    assert_degraded(img, "block bitmap");
}

#[test]
fn a_live_inode_marked_free_mounts_read_only() {
    // The counts agree (one bit moved from a live inode to a free one), so only the inode
    // table shows it.
    let mut img = base_image("moved-ibit");
    let g = geometry(&img);
    let ino = ino_of(&img, "a/b/c/leaf");
    let bitmap = u32_at(&img, group0(&img, 4)) as usize * g.bs;
    let free = (0..g.ipg)
        .find(|&i| img[bitmap + i / 8] & (1 << (i % 8)) == 0)
        .unwrap();
    img[bitmap + free / 8] |= 1 << (free % 8);
    img[bitmap + (ino - 1) / 8] &= !(1 << ((ino - 1) % 8));
    assert_degraded(img, &format!("inode {ino} is in use"));
}

#[test]
fn a_wrong_group_free_count_mounts_read_only() {
    let mut img = base_image("gd-count");
    let at = group0(&img, 12);
    let n = u16::from_le_bytes([img[at], img[at + 1]]);
    img[at..at + 2].copy_from_slice(&(n + 5).to_le_bytes());
    assert_degraded(img, "free blocks");
}

#[test]
fn stale_superblock_totals_are_recomputed_not_refused() {
    let host = TempPath::new("sb-totals", ".img");
    let mut img = base_image("sb-totals");
    put_u32(&mut img, 1024 + 12, 3);
    put_u32(&mut img, 1024 + 16, 2);
    std::fs::write(&host.0, &img).unwrap();
    let (mut fs, disk) = mount_rw(&host.0);
    assert_eq!(fs.degraded(), None);
    let root = fs.root();
    write_file(&mut fs, root, "after", 0, b"written");
    unmount_to(fs, &disk, &host.0);
    assert_fsck_clean(&host.0);
}

/// Marks the image's superblock "not clean" (s_state without EXT2_VALID_FS), as a mount that
/// never ended with an unmount (fs killed, power cut) leaves it.
fn mark_unclean(img: &mut [u8]) {
    let at = 1024 + 58;
    let state = u16::from_le_bytes([img[at], img[at + 1]]) & !1;
    img[at..at + 2].copy_from_slice(&state.to_le_bytes());
}

#[test]
fn after_an_unclean_end_group_free_counts_are_set_from_the_bitmaps() {
    // fs killed between writing a group descriptor and its bitmap: the counts disagree with the
    // bitmaps, which are what allocation trusts. The mount fixes the counts (as e2fsck -p does)
    // and stays read-write; the image is clean after an unmount.
    let host = TempPath::new("unclean-count", ".img");
    let mut img = base_image("unclean-count");
    let at = group0(&img, 12);
    let n = u16::from_le_bytes([img[at], img[at + 1]]);
    img[at..at + 2].copy_from_slice(&(n - 32).to_le_bytes());
    mark_unclean(&mut img);
    std::fs::write(&host.0, &img).unwrap();
    let (mut fs, disk) = mount_rw(&host.0);
    assert_eq!(fs.degraded(), None);
    let what = fs.recounted().expect("the disagreeing count was not recomputed");
    assert!(what.contains(&format!("group 0: {} -> {n} free blocks", n - 32)), "{what}");
    let root = fs.root();
    write_file(&mut fs, root, "after", 0, b"written");
    unmount_to(fs, &disk, &host.0);
    assert_fsck_clean(&host.0);
}

#[test]
fn after_an_unclean_end_zeroed_bitmaps_still_mount_read_only() {
    // Recounting trusts the bitmaps; a zeroed one is damage all the same, caught by the checks
    // that follow (metadata or a live inode marked free).
    for (field, why) in [(0, "holds metadata but is marked free"), (4, "is in use")] {
        let mut img = base_image(&format!("unclean-zero-{field}"));
        let g = geometry(&img);
        let at = u32_at(&img, group0(&img, field)) as usize * g.bs;
        img[at..at + g.bs].fill(0);
        mark_unclean(&mut img);
        assert_degraded(img, why);
    }
}
