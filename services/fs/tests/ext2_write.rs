//! Writes with our ext2, then e2fsck -fn must find nothing and debugfs must read the same bytes.

mod ext2_common;

use ext2_common::*;
use keel_fs::Errno;
use keel_fs::ext2::Ext2;
use keel_fs::node::{FileSystem, Ino, Kind, NewNode};
use std::collections::BTreeMap;

/// The expected contents of every regular file, by path.
type Model = BTreeMap<String, Vec<u8>>;

fn write_model(fs: &mut Ext2, model: &mut Model, path: &str, offset: u64, data: &[u8]) {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let d = resolve(fs, dir).unwrap();
    write_file(fs, d, name, offset, data);
    let f = model.entry(path.to_string()).or_default();
    let end = offset as usize + data.len();
    if f.len() < end {
        f.resize(end, 0);
    }
    f[offset as usize..end].copy_from_slice(data);
}

fn check_model(fs: &mut Ext2, model: &Model) {
    for (path, want) in model {
        let ino = resolve(fs, path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(read_all(fs, ino) == *want, "our read of {path} differs");
    }
}

fn nlink(fs: &mut Ext2, path: &str) -> u32 {
    let ino = resolve(fs, path).unwrap();
    fs.getattr(ino).unwrap().nlink
}

fn write_tree(block_size: u32, kib: u64) {
    let test = format!("write-{block_size}");
    let image = TempPath::new(&test, ".img");
    mkfs(&image.0, kib, block_size, &[], None);
    let (mut fs, disk) = mount_rw(&image.0);
    let bs = block_size as usize;
    let apb = bs / 4;
    let root = fs.root();
    let mut model = Model::new();

    let d1 = fs.create(root, "d1", Kind::Dir, WHO).unwrap();
    let d2 = fs.create(d1, "d2", Kind::Dir, WHO).unwrap();
    fs.create(root, "gone-dir", Kind::Dir, WHO).unwrap();
    assert_eq!(nlink(&mut fs, "d1"), 3);
    write_model(&mut fs, &mut model, "small", 0, b"hello, ext2");
    write_model(
        &mut fs,
        &mut model,
        "d1/indirect",
        0,
        &pattern(20 * bs + 17, 1),
    );
    write_model(
        &mut fs,
        &mut model,
        "d1/d2/double",
        0,
        &pattern((12 + apb + 10) * bs, 2),
    );
    // Overwrite across a block boundary, and append after a hole.
    write_model(
        &mut fs,
        &mut model,
        "d1/d2/double",
        (12 * bs - 100) as u64,
        &pattern(3 * bs, 3),
    );
    write_model(
        &mut fs,
        &mut model,
        "small",
        3 * bs as u64 + 5,
        b"after a hole",
    );
    // Truncate down then up: the regrown part reads as zeros.
    let ind = resolve(&mut fs, "d1/indirect").unwrap();
    fs.truncate(ind, 5000).unwrap();
    fs.truncate(ind, 30 * bs as u64).unwrap();
    let m = model.get_mut("d1/indirect").unwrap();
    m.truncate(5000);
    m.resize(30 * bs, 0);
    let dbl = resolve(&mut fs, "d1/d2/double").unwrap();
    let blocks_before = fs.getattr(dbl).unwrap().blocks;
    fs.truncate(dbl, 13 * bs as u64 - 1).unwrap();
    model.get_mut("d1/d2/double").unwrap().truncate(13 * bs - 1);
    let blocks_after = fs.getattr(dbl).unwrap().blocks;
    // 13 data blocks and one indirect block stay.
    assert_eq!(blocks_after, 14 * bs as u64 / 512, "was {blocks_before}");

    // Symlinks, fast and slow.
    fs.symlink(d1, "fast", "d2/double", WHO).unwrap();
    let slow_target = "s".repeat(300.min(bs - 1));
    fs.symlink(d1, "slow", &slow_target, WHO).unwrap();
    let l = resolve(&mut fs, "d1/slow").unwrap();
    assert_eq!(fs.readlink(l).unwrap(), slow_target);

    // Hard links, unlink, rmdir.
    let small = resolve(&mut fs, "small").unwrap();
    fs.link(d2, "small-link", small).unwrap();
    model.insert("d1/d2/small-link".into(), model["small"].clone());
    assert_eq!(fs.getattr(small).unwrap().nlink, 2);
    write_model(&mut fs, &mut model, "victim", 0, &pattern(40 * bs, 4));
    let free_before = fs.statfs().unwrap().free_blocks;
    let gone = fs.unlink(root, "victim").unwrap().expect("last link");
    model.remove("victim");
    fs.evict(gone).unwrap();
    assert!(fs.statfs().unwrap().free_blocks >= free_before + 40);
    assert_eq!(fs.unlink(root, "d1"), Err(Errno::IsDir));
    assert_eq!(fs.rmdir(root, "d1"), Err(Errno::NotEmpty));
    let gd = fs.rmdir(root, "gone-dir").unwrap().unwrap();
    fs.evict(gd).unwrap();
    assert_eq!(fs.lookup(root, "gone-dir"), Err(Errno::NoEnt));

    // Renames: within a directory, across, replacing a file, replacing an empty directory, and
    // moving a directory (its '..' and both parents' link counts).
    fs.rename(root, "small", root, "small2").unwrap();
    let s = model.remove("small").unwrap();
    model.insert("small2".into(), s);
    write_model(&mut fs, &mut model, "d1/mover", 0, &pattern(3000, 5));
    fs.rename(d1, "mover", d2, "moved").unwrap();
    let s = model.remove("d1/mover").unwrap();
    model.insert("d1/d2/moved".into(), s);
    write_model(&mut fs, &mut model, "replaced", 0, &pattern(2 * bs, 6));
    let r = fs
        .rename(d2, "moved", root, "replaced")
        .unwrap()
        .expect("replaced file loses its last link");
    fs.evict(r).unwrap();
    let s = model.remove("d1/d2/moved").unwrap();
    model.insert("replaced".into(), s);
    // Renaming onto another name of the same inode does nothing.
    assert_eq!(fs.rename(root, "small2", d2, "small-link").unwrap(), None);
    assert_eq!(nlink(&mut fs, "small2"), 2);
    fs.create(root, "empty-target", Kind::Dir, WHO).unwrap();
    let root_links = nlink(&mut fs, "");
    let r = fs
        .rename(d1, "d2", root, "empty-target")
        .unwrap()
        .expect("replaced directory");
    fs.evict(r).unwrap();
    assert_eq!(
        nlink(&mut fs, ""),
        root_links,
        "root: loses empty-target's '..', gains d2's"
    );
    assert_eq!(nlink(&mut fs, "d1"), 2);
    let moved: Model = model
        .iter()
        .filter(|(k, _)| k.starts_with("d1/d2/"))
        .map(|(k, v)| (k.replacen("d1/d2/", "empty-target/", 1), v.clone()))
        .collect();
    model.retain(|k, _| !k.starts_with("d1/d2/"));
    model.extend(moved);
    let et = resolve(&mut fs, "empty-target").unwrap();
    assert_eq!(fs.lookup(et, "double"), Ok(dbl));
    fs.create(root, "full", Kind::Dir, WHO).unwrap();
    assert_eq!(
        fs.rename(root, "full", root, "empty-target"),
        Err(Errno::NotEmpty)
    );
    assert_eq!(fs.rename(root, "replaced", root, "full"), Err(Errno::IsDir));
    assert_eq!(
        fs.rename(root, "full", root, "replaced"),
        Err(Errno::NotDir)
    );

    // A sparse file reaching the triple-indirect blocks (1 KiB blocks only: 64 MiB).
    if bs == 1024 {
        let off = ((12 + apb + apb * apb + 5) * bs) as u64;
        write_model(&mut fs, &mut model, "sparse", off, b"far away");
        write_model(&mut fs, &mut model, "sparse", 7, b"near");
    }
    check_model(&mut fs, &model);
    unmount_to(fs, &disk, &image.0);
    assert_fsck_clean(&image.0);
    for (path, want) in &model {
        let got = debugfs(&image.0, &format!("cat /{path}"));
        assert!(
            got == *want,
            "debugfs cat /{path}: {} bytes, want {}",
            got.len(),
            want.len()
        );
    }
    let (mut fs, _disk) = mount_rw(&image.0);
    check_model(&mut fs, &model);
    let l = resolve(&mut fs, "d1/fast").unwrap();
    assert_eq!(fs.readlink(l).unwrap(), "d2/double");
}

#[test]
fn write_tree_1k() {
    write_tree(1024, 8192);
}

#[test]
fn write_tree_2k() {
    write_tree(2048, 8192);
}

#[test]
fn write_tree_4k() {
    write_tree(4096, 16384);
}

#[test]
fn directory_with_thousands_of_entries() {
    let image = TempPath::new("bigdir", ".img");
    mkfs(&image.0, 8192, 1024, &["-N", "4096"], None);
    let (mut fs, disk) = mount_rw(&image.0);
    let root = fs.root();
    let d = fs.create(root, "many", Kind::Dir, WHO).unwrap();
    let n = 3000;
    let mut inos = Vec::new();
    for i in 0..n {
        inos.push(
            fs.create(
                d,
                &format!("file-with-a-longish-name-{i:05}"),
                Kind::File,
                WHO,
            )
            .unwrap(),
        );
    }
    assert_eq!(fs.readdir(d).unwrap().len(), n);
    for (i, ino) in inos.iter().enumerate() {
        assert_eq!(
            fs.lookup(d, &format!("file-with-a-longish-name-{i:05}")),
            Ok(*ino)
        );
    }
    for i in (0..n).step_by(2) {
        let gone = fs
            .unlink(d, &format!("file-with-a-longish-name-{i:05}"))
            .unwrap()
            .unwrap();
        fs.evict(gone).unwrap();
    }
    let left = fs.readdir(d).unwrap();
    let bad: Vec<_> = left
        .iter()
        .filter(|e| !e.name.ends_with(['1', '3', '5', '7', '9']))
        .map(|e| e.name.clone())
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    let mut names: Vec<_> = left.iter().map(|e| e.name.clone()).collect();
    names.sort();
    let dups: Vec<_> = names
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0].clone())
        .collect();
    assert!(
        dups.is_empty(),
        "{} dups {:?}",
        dups.len(),
        &dups[..dups.len().min(10)]
    );
    assert_eq!(left.len(), n / 2);
    assert!(
        left.iter()
            .all(|e| e.name.ends_with(['1', '3', '5', '7', '9']))
    );
    // The freed space is reused.
    for i in 0..100 {
        fs.create(d, &format!("again-{i}"), Kind::File, WHO)
            .unwrap();
    }
    unmount_to(fs, &disk, &image.0);
    assert_fsck_clean(&image.0);
    let ls = String::from_utf8(debugfs(&image.0, "ls -l /many")).unwrap();
    // (debugfs also lists a cleared first entry of a block, with inode 0.)
    let live = ls.lines().filter(|l| {
        l.contains("file-with-a-longish-name-") && l.split_whitespace().next() != Some("0")
    });
    assert_eq!(live.count(), n / 2);
}

#[test]
fn full_disk_gives_nospc_and_stays_consistent() {
    let image = TempPath::new("full", ".img");
    mkfs(&image.0, 1024, 1024, &["-N", "64"], None);
    let (mut fs, disk) = mount_rw(&image.0);
    let root = fs.root();
    let f = fs.create(root, "big", Kind::File, WHO).unwrap();
    let chunk = pattern(10_000, 7);
    let mut off = 0u64;
    let err = loop {
        match fs.write(f, off, &chunk) {
            Ok(n) => off += n as u64,
            Err(e) => break e,
        }
        assert!(off < 2 << 20, "a 1 MiB image never filled");
    };
    assert_eq!(err, Errno::NoSpc);
    let size = fs.getattr(f).unwrap().size;
    assert!(size >= off && size < off + chunk.len() as u64);
    assert_eq!(fs.statfs().unwrap().free_blocks, 0);
    assert_eq!(fs.create(root, "dir", Kind::Dir, WHO), Err(Errno::NoSpc));
    let data = read_all(&mut fs, f);
    assert!(data.chunks(chunk.len()).all(|c| c == &chunk[..c.len()]));
    unmount_to(fs, &disk, &image.0);
    assert_fsck_clean(&image.0);

    // Freeing space makes writes work again.
    let (mut fs, disk) = mount_rw(&image.0);
    let f = fs.lookup(root, "big").unwrap();
    fs.truncate(f, 100_000).unwrap();
    let g = write_file(&mut fs, root, "after", 0, &pattern(200_000, 8));
    assert_eq!(read_all(&mut fs, g), pattern(200_000, 8));
    // Inodes run out too.
    let mut made = 0;
    let err = loop {
        match fs.create(root, &format!("i{made}"), Kind::File, WHO) {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
        assert!(made < 100);
    };
    assert_eq!(err, Errno::NoSpc);
    assert_eq!(fs.statfs().unwrap().free_files, 0);
    assert_eq!(fs.symlink(root, "l", "t", WHO), Err(Errno::NoSpc));
    unmount_to(fs, &disk, &image.0);
    assert_fsck_clean(&image.0);
}

#[test]
fn indexed_directories_stay_valid_after_changes() {
    let host = TempPath::new("htree", "-dir");
    let image = TempPath::new("htree", ".img");
    std::fs::create_dir_all(host.0.join("idx")).unwrap();
    for i in 0..400 {
        std::fs::write(host.0.join(format!("idx/entry-number-{i}")), format!("{i}")).unwrap();
    }
    mkfs(&image.0, 4096, 1024, &[], Some(&host.0));
    // e2fsck -D builds the hash index.
    let (code, text) = fsck_with(&image.0, "-fyD");
    assert!(code <= 1, "{text}");
    let stat = String::from_utf8(debugfs(&image.0, "stat /idx")).unwrap();
    assert!(stat.contains("Flags: 0x1000"), "no hashed index: {stat}");
    let (mut fs, disk) = mount_rw(&image.0);
    let d = resolve(&mut fs, "idx").unwrap();
    assert_eq!(fs.readdir(d).unwrap().len(), 400);
    for i in (0..400).step_by(3) {
        let g = fs.unlink(d, &format!("entry-number-{i}")).unwrap().unwrap();
        fs.evict(g).unwrap();
    }
    for i in 0..50 {
        fs.create(d, &format!("new-{i}"), Kind::File, WHO).unwrap();
    }
    let f = fs.lookup(d, "entry-number-10").unwrap();
    assert_eq!(read_all(&mut fs, f), b"10");
    unmount_to(fs, &disk, &image.0);
    assert_fsck_clean(&image.0);
    let ls = String::from_utf8(debugfs(&image.0, "ls /idx")).unwrap();
    // debugfs lists `INODE (REC_LEN) NAME` triples, and also a removed entry that starts a
    // block: ext2 then clears its inode to 0 rather than merging it into a previous record.
    let words: Vec<&str> = ls.split_whitespace().collect();
    let live: Vec<&str> = words
        .windows(3)
        .filter(|w| w[1].starts_with('(') && w[1].ends_with(')') && w[0].parse::<u32>().is_ok_and(|i| i != 0))
        .map(|w| w[2])
        .collect();
    assert!(
        live.contains(&"new-49") && !live.contains(&"entry-number-9") && live.contains(&"entry-number-10"),
        "{ls}"
    );
}

#[test]
fn freeing_an_inode_drops_its_xattr_block() {
    let host = TempPath::new("xattr", "-dir");
    let image = TempPath::new("xattr", ".img");
    std::fs::create_dir_all(&host.0).unwrap();
    std::fs::write(host.0.join("a"), b"a").unwrap();
    std::fs::write(host.0.join("b"), b"b").unwrap();
    mkfs(&image.0, 2048, 1024, &["-I", "128"], Some(&host.0));
    for f in ["a", "b"] {
        let out = std::process::Command::new(tool("debugfs"))
            .args([
                "-w",
                "-R",
                &format!("ea_set /{f} user.note {}", "v".repeat(100)),
            ])
            .arg(&image.0)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    assert_fsck_clean(&image.0);
    let stat = String::from_utf8(debugfs(&image.0, "stat /a")).unwrap();
    assert!(
        stat.contains("File ACL: ") && !stat.contains("File ACL: 0"),
        "no attribute block: {stat}"
    );
    let (mut fs, disk) = mount_rw(&image.0);
    let root = fs.root();
    for f in ["a", "b"] {
        let g = fs.unlink(root, f).unwrap().unwrap();
        fs.evict(g).unwrap();
    }
    unmount_to(fs, &disk, &image.0);
    assert_fsck_clean(&image.0);
}

#[test]
fn names_and_kinds_are_checked() {
    let image = TempPath::new("names", ".img");
    mkfs(&image.0, 1024, 1024, &[], None);
    let (mut fs, disk) = mount_rw(&image.0);
    let root = fs.root();
    let who = NewNode {
        perm: 0o4755,
        uid: 70000,
        gid: 80000,
    };
    let f = fs.create(root, "f", Kind::File, who).unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!(
        (a.perm, a.uid, a.gid, a.nlink, a.size),
        (0o4755, 70000, 80000, 1, 0)
    );
    assert_eq!(fs.create(root, "f", Kind::File, WHO), Err(Errno::Exist));
    assert_eq!(
        fs.create(root, &"n".repeat(256), Kind::File, WHO),
        Err(Errno::NameTooLong)
    );
    assert!(fs.create(root, &"n".repeat(255), Kind::File, WHO).is_ok());
    assert_eq!(fs.create(root, "a/b", Kind::File, WHO), Err(Errno::Inval));
    assert_eq!(fs.create(root, "..", Kind::Dir, WHO), Err(Errno::Inval));
    assert_eq!(fs.create(f, "x", Kind::File, WHO), Err(Errno::NotDir));
    assert_eq!(fs.lookup(root, "nope"), Err(Errno::NoEnt));
    let lf: Ino = fs.lookup(root, "lost+found").unwrap();
    assert_eq!(fs.link(root, "dirlink", lf), Err(Errno::Perm));
    assert_eq!(fs.write(lf, 0, b"x"), Err(Errno::IsDir));
    assert_eq!(fs.getattr(1 << 40), Err(Errno::Inval));
    unmount_to(fs, &disk, &image.0);
    assert_fsck_clean(&image.0);
}

#[test]
fn files_past_2_gib_turn_large_file_on() {
    let image = TempPath::new("largefile", ".img");
    mkfs(&image.0, 4096, 4096, &[], None);
    let ro_compat = |b: &[u8]| u32::from_le_bytes(b[1024 + 100..1024 + 104].try_into().unwrap());
    // mke2fs always sets large_file nowadays: clear it in the primary superblock.
    let mut img = std::fs::read(&image.0).unwrap();
    let v = ro_compat(&img) & !2;
    img[1024 + 100..1024 + 104].copy_from_slice(&v.to_le_bytes());
    std::fs::write(&image.0, &img).unwrap();
    let (mut fs, disk) = mount_rw(&image.0);
    let root = fs.root();
    let off = 3u64 << 30;
    let f = write_file(&mut fs, root, "huge", off, b"beyond 2 GiB");
    assert_eq!(fs.getattr(f).unwrap().size, off + 12);
    let mut buf = [1u8; 16];
    assert_eq!(fs.read(f, off - 4, &mut buf).unwrap(), 16);
    assert_eq!(&buf, b"\0\0\0\0beyond 2 GiB");
    unmount_to(fs, &disk, &image.0);
    assert_ne!(
        ro_compat(&std::fs::read(&image.0).unwrap()) & 2,
        0,
        "large_file must be set"
    );
    assert_fsck_clean(&image.0);
    let stat = String::from_utf8(debugfs(&image.0, "stat /huge")).unwrap();
    assert!(stat.contains(&format!("Size: {}", off + 12)), "{stat}");
}

#[test]
fn removed_but_open_inodes_stay_readable_until_evicted() {
    let image = TempPath::new("orphan", ".img");
    mkfs(&image.0, 1024, 1024, &[], None);
    let (mut fs, disk) = mount_rw(&image.0);
    let root = fs.root();
    let data = pattern(50_000, 9);
    let f = write_file(&mut fs, root, "f", 0, &data);
    let d = fs.create(root, "d", Kind::Dir, WHO).unwrap();
    assert_eq!(fs.unlink(root, "f").unwrap(), Some(f));
    assert_eq!(fs.rmdir(root, "d").unwrap(), Some(d));
    assert_eq!(read_all(&mut fs, f), data);
    assert_eq!(fs.getattr(f).unwrap().nlink, 0);
    assert_eq!(fs.create(d, "x", Kind::File, WHO), Err(Errno::NoEnt));
    assert_eq!(fs.link(root, "back", f), Err(Errno::NoEnt));
    fs.write(f, 50_000, b"more").unwrap();
    // Unmount frees what the VFS did not evict.
    unmount_to(fs, &disk, &image.0);
    assert_fsck_clean(&image.0);
}

#[test]
fn flex_bg_and_sparse_super2_layouts() {
    for (name, features) in [
        ("flexbg", "flex_bg"),
        ("sparse2", "sparse_super2"),
        ("nosparse", "^sparse_super,^resize_inode"),
    ] {
        let image = TempPath::new(name, ".img");
        mkfs(&image.0, 16384, 1024, &["-O", features], None);
        let (mut fs, disk) = mount_rw(&image.0);
        let root = fs.root();
        let mut dirs = Vec::new();
        for i in 0..6 {
            dirs.push(fs.create(root, &format!("d{i}"), Kind::Dir, WHO).unwrap());
        }
        for (i, d) in dirs.iter().enumerate() {
            write_file(&mut fs, *d, "f", 0, &pattern(900_000, i as u64));
        }
        unmount_to(fs, &disk, &image.0);
        let (code, text) = fsck(&image.0);
        assert_eq!(code, 0, "{features}: {text}");
        assert!(
            debugfs(&image.0, "cat /d5/f") == pattern(900_000, 5),
            "{features}"
        );
    }
}

#[test]
fn needs_sync_says_when_there_is_something_to_write_back() {
    let image = TempPath::new("needs-sync", ".img");
    mkfs(&image.0, 2048, 1024, &[], None);
    let (mut fs, _disk) = mount_rw(&image.0);
    fs.sync().unwrap();
    assert!(
        !fs.needs_sync(),
        "a freshly synced mount has nothing to write"
    );
    let root = fs.root();
    let f = write_file(&mut fs, root, "f", 0, b"dirty");
    assert!(fs.needs_sync(), "a written file leaves dirty blocks");
    fs.sync().unwrap();
    assert!(!fs.needs_sync());
    fs.unlink(root, "f").unwrap();
    let _ = f;
    assert!(
        fs.needs_sync(),
        "an unlink leaves a directory block and a pending free"
    );
    fs.sync().unwrap();
    assert!(!fs.needs_sync());
}
