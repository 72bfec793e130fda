//! The README's first command, driven as a user drives it: `make run` with input piped in.
//!
//! Two runs of `make run` on one disk image: the first writes a file under /disk and powers off,
//! the second reads it back. This is the path the other QEMU tests do not take (they build their
//! own QEMU arguments), so it catches a Makefile that attaches no disk, or a disk that Keel does
//! not mount, or a file typed before the mount that lands in a tmpfs and is lost.
//!
//! `make test` has just built the image and the initrd, so the builds `make run` starts find
//! nothing to do; then the disk image is made by mke2fs when missing, and QEMU starts.

use keel_tests::{Run, run_command};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repo").to_path_buf()
}

/// One `make run` at a time: each rebuilds the initrd, and the tests of this file run in parallel.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `make run DISK=<disk>` (`""`: no disk) with `input` piped to the serial console.
fn make_run(name: &str, disk: &str, input: &str) -> Run {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut make = Command::new("make");
    make.current_dir(repo()).args(["--no-print-directory", "run"]).arg(format!("DISK={disk}"));
    if let Ok(qemu) = std::env::var("QEMU") {
        make.arg(format!("QEMU={qemu}"));
    }
    // Make's environment from `make test` (MAKEFLAGS, MAKELEVEL) would make this a sub-make.
    make.env_remove("MAKEFLAGS").env_remove("MAKELEVEL").env_remove("MFLAGS");
    run_command(name, make, input, Duration::from_secs(240))
}

#[test]
fn make_run_keeps_a_file_on_its_disk_across_two_runs() {
    let dir = repo().join("target/tests");
    std::fs::create_dir_all(&dir).expect("target/tests can be made");
    let disk = dir.join("make-run.img");
    let _ = std::fs::remove_file(&disk);
    let disk_arg = disk.display().to_string();

    // Typed at once, before the file system is up: nothing typed early may be lost.
    let first = make_run("make run (write)", &disk_arg, "echo kept across runs > /disk/kept.txt\nsync\npoweroff\n");
    first.expect_clean_poweroff();
    if !disk.exists() {
        first.fail("make run did not make the disk image it attaches");
    }
    first.expect("fs: mounted blk0 (ext2) on /disk").expect_absent("kept.txt:");

    let second = make_run("make run (read)", &disk_arg, "cat /disk/kept.txt\npoweroff\n");
    second.expect_clean_poweroff();
    second.expect("fs: mounted blk0 (ext2) on /disk");
    if !second.log.lines().any(|l| l.trim_end().ends_with("kept across runs") && !l.contains("echo")) {
        second.fail("the file written by the first `make run` did not read back");
    }
}

#[test]
fn make_run_without_a_disk_boots_to_the_shell() {
    let run = make_run("make run DISK=", "", "df\npoweroff\n");
    run.expect_clean_poweroff();
    run.expect("blk: no virtio-blk devices").expect("rootfs");
    if run.log.lines().any(|l| l.starts_with("blk0")) {
        run.fail("make run DISK= attached a disk");
    }
}
