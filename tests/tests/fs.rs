//! QEMU scenarios for the file service: the root tmpfs, ext2 on a virtio-blk disk made by the
//! host's mke2fs, and what survives a reboot (checked with the host's e2fsck and debugfs).

use keel_tests::{Boot, Scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

fn e2fs_tool(name: &str) -> String {
    let path = format!("/usr/sbin/{name}");
    assert!(Path::new(&path).exists(), "{path} is missing: `make deps` installs e2fsprogs");
    path
}

/// `e2fsck -fn`: must find nothing to fix.
fn assert_clean(image: &Path, when: &str) {
    let out = Command::new(e2fs_tool("e2fsck")).arg("-fn").arg(image).output().expect("cannot run e2fsck");
    assert!(
        out.status.success(),
        "e2fsck -fn {when} found problems (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A file's bytes as the host's debugfs reads them from the image.
fn debugfs_cat(image: &Path, path: &str) -> Vec<u8> {
    let out = Command::new(e2fs_tool("debugfs")).arg("-R").arg(format!("cat {path}")).arg(image).output().expect("cannot run debugfs");
    assert!(out.status.success(), "debugfs cat {path} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn files_written_under_disk_survive_a_reboot_and_the_image_stays_clean() {
    let scratch = Scratch::new("reboot");
    let seed = scratch.0.join("seed");
    std::fs::create_dir_all(seed.join("notes")).unwrap();
    std::fs::write(seed.join("notes/from-host.txt"), "written on the host\n").unwrap();
    let image = scratch.0.join("disk.img");
    // 1 KiB blocks: the 400 KiB guest image copied below needs indirect and double-indirect blocks.
    let status = Command::new(e2fs_tool("mke2fs"))
        .args(["-q", "-t", "ext2", "-b", "1024", "-d"])
        .arg(&seed)
        .arg(&image)
        .arg("32M")
        .status()
        .expect("cannot run mke2fs");
    assert!(status.success(), "mke2fs failed");
    let disk = image.to_str().unwrap().to_string();

    // Typed prompt by prompt (the first prompt waits for the disk's mount): no type-ahead, so
    // no echo of a typed line lands inside a listing that is checked line by line.
    let first = Boot::scenario("")
        .drive(&disk)
        .commands(&[
            "cat /disk/notes/from-host.txt",
            "mkdir /disk/docs",
            "echo first line > /disk/docs/a.txt",
            "echo second line >> /disk/docs/a.txt",
            "cp /guest/test.Image /disk/docs/guest.img",
            "ln -s docs/a.txt /disk/link",
            "mkdir /disk/gone",
            "rmdir /disk/gone",
            "echo moving > /disk/tmpfile",
            "mv /disk/tmpfile /disk/docs/renamed",
            "sync",
            "poweroff",
        ])
        .timeout(180)
        .run();
    first.expect("fs: mounted blk0 (ext2) on /disk").expect("written on the host").expect_clean_poweroff();
    first.expect_absent("cat: ").expect_absent("mkdir: ").expect_absent("cp: ").expect_absent("mv: ");
    assert_clean(&image, "after the first boot");
    // The initrd's /guest/test.Image is built next to it (target/guests/).
    let initrd = PathBuf::from(std::env::var("KEEL_INITRD").expect("KEEL_INITRD is not set: run `make test`"));
    let guest = std::fs::read(initrd.parent().unwrap().join("guests/test.Image")).expect("target/guests/test.Image is missing");
    assert!(debugfs_cat(&image, "/docs/guest.img") == guest, "the copied guest image differs on disk");
    assert_eq!(debugfs_cat(&image, "/docs/a.txt"), b"first line\nsecond line\n");
    assert_eq!(debugfs_cat(&image, "/docs/renamed"), b"moving\n");

    let second = Boot::scenario("")
        .drive(&disk)
        .commands(&["cat /disk/link", "ls /disk/docs", "stat /disk/docs/guest.img", "rm /disk/docs/renamed", "ls /disk/gone", "poweroff"])
        .timeout(180)
        .run();
    second.expect("first line").expect("second line").expect(&format!("  Size: {}", guest.len()));
    for name in ["a.txt", "guest.img", "renamed"] {
        if !has_line(&second, name) {
            second.fail(&format!("ls /disk/docs does not list {name}"));
        }
    }
    second
        .expect("ls: /disk/gone: no such file or directory")
        .expect_clean_poweroff();
    assert_clean(&image, "after the second boot");
    let listing = Command::new(e2fs_tool("debugfs")).args(["-R", "ls /docs"]).arg(&image).output().unwrap();
    assert!(!String::from_utf8_lossy(&listing.stdout).contains("renamed"), "rm on the second boot did not reach the disk");
}

#[test]
fn without_a_disk_the_root_tmpfs_still_serves_files_and_errors_are_clear() {
    // Typed prompt by prompt (the first prompt comes once fs knows there is no disk).
    let run = Boot::scenario("")
        .commands(&[
                "mount",
                "mkdir /tmp/a",
                "echo in memory > /tmp/a/f",
                "cat /tmp/a/f",
                "cat /tmp/nope",
                "rmdir /tmp",
                "mkdir /tmp/x/y",
                "rm /tmp/a",
                "mv /tmp/a /tmp/a/b",
                "cd /tmp/a",
                "pwd",
                "ls -l",
                "mount blk7 /mnt",
                "poweroff",
        ])
        .run();
    run.expect("rootfs on / type tmpfs (rw)")
        .expect("in memory")
        .expect("cat: /tmp/nope: no such file or directory")
        .expect("rmdir: /tmp: directory not empty")
        .expect("mkdir: /tmp/x/y: no such file or directory")
        .expect("rm: /tmp/a: is a directory")
        .expect("mv: /tmp/a: invalid argument")

        .expect("-rw-r--r--   1     0     0        10 ")
        .expect("mount: blk7: no such file or directory")
        .expect_clean_poweroff();
    if !has_line(&run, "/tmp/a") {
        run.fail("pwd did not print /tmp/a");
    }
}

/// Whether the shell printed `text` as a line of its own (after any prompts).
fn has_line(run: &keel_tests::Run, text: &str) -> bool {
    run.log.lines().any(|l| l.trim_start_matches("keel> ").trim_end() == text)
}

#[test]
fn programs_use_the_file_api_on_tmpfs_and_ext2() {
    let scratch = Scratch::new("api");
    let image = scratch.0.join("disk.img");
    let status = Command::new(e2fs_tool("mke2fs")).args(["-q", "-t", "ext2", "-b", "1024"]).arg(&image).arg("32M").status().unwrap();
    assert!(status.success(), "mke2fs failed");
    let run = Boot::scenario("fs").drive(image.to_str().unwrap()).timeout(240).run();
    run.expect("ktest: fs: ok").expect("tmpfs and ext2 on /disk").expect_clean_poweroff();
    assert_clean(&image, "after the fs scenario");
}

/// Whether the initrd the tests boot holds the Linux guest's kernel (31 MiB: the big file the
/// tmpfs tests copy).
fn initrd_has_linux_image() -> bool {
    let initrd = std::env::var("KEEL_INITRD").expect("KEEL_INITRD is not set: run the QEMU tests with `make test`");
    let bytes = std::fs::read(&initrd).unwrap_or_else(|e| panic!("cannot read {initrd}: {e}"));
    bytes.windows(18).any(|w| w == b"guest/linux/Image\0")
}

#[test]
fn big_copies_into_tmpfs_end_in_enospc_not_a_file_service_crash() {
    // The case: a 31 MiB copy into /tmp killed fs (one 32 MiB allocation failed).
    assert!(initrd_has_linux_image(), "the initrd has no guest/linux/Image (make test builds the guest into it)");
    let run = Boot::scenario("")
        .timeout(300)
        .commands(&[
            "cp /guest/linux/Image /tmp/one",
            "cp /guest/linux/Image /tmp/two",
            "cp /guest/linux/Image /tmp/three",
            "rm /tmp/three",
            "echo still   here > /tmp/small",
            "cat /tmp/small",
            "ls -l /tmp",
            "mkdir /tmp/m",
            "mount tmpfs /tmp/m 8M",
            "cp /guest/linux/Image /tmp/m/big",
            "df",
            "umount /tmp/m",
            "mount tmpfs /tmp/m 999G",
            "mount tmpfs /tmp/m 12Q",
            "poweroff",
        ])
        .run();
    run.expect("cp: /tmp/three: no space left on device")
        .expect("still here")
        .expect("-rw-r--r--   1     0     0  32956352 ")
        .expect("cp: /tmp/m/big: no space left on device")
        .expect("tmpfs              8192       8192          0 100%  /tmp/m")
        .expect("mount: tmpfs: out of memory")
        .expect("mount: 12Q: not a size (bytes, or a number with K, M or G)")
        .expect_absent("restarting it")
        .expect_absent("panic")
        .expect_clean_poweroff();
    assert_eq!(run.log.matches("  32956352 ").count(), 2, "ls -l /tmp should show both whole copies");
}
