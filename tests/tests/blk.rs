//! QEMU scenarios of the virtio-blk driver (services/blk) through ktest's `blk` scenario: data
//! written through `blk0` must be in the disk image on the host afterwards, at the offsets the
//! scenario wrote; the modern transport and a read-only second disk work too; and without a disk
//! the service says so and exits 0. The scenario writes only the scratch images made here (they
//! carry its label in sector 1); on a disk with a file system that fs mounted it writes nothing
//! and checks that blk refuses it as a second writer.

use keel_tests::Boot;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECTOR: usize = 512;
/// blk::MAX_SECTORS (keel_rt::proto).
const MAX_SECTORS: u64 = 128;
const DISK_BYTES: u64 = 8 << 20;

/// The pattern services/ktest/src/scenario/blk.rs writes (`pattern_byte`).
fn pattern_byte(sector: u64, i: usize) -> u8 {
    (sector as u8).wrapping_mul(31) ^ (i as u8).wrapping_add((sector >> 8) as u8) ^ ((i >> 8) as u8) ^ 0xa5
}

/// The label that marks a scratch disk, in sector 1 (`SCRATCH_LABEL`, `SCRATCH_SECTOR`).
const SCRATCH_LABEL: &[u8] = b"KEEL-BLK-TEST-SCRATCH-DISK: the blk test may overwrite this disk\n";
const SCRATCH_SECTOR: usize = 1;

/// The ranges it writes (`ranges`).
fn ranges(capacity: u64) -> [(u64, u64); 4] {
    [(0, 1), (capacity / 2, MAX_SECTORS), (capacity - 1, 1), (capacity / 3, 3)]
}

/// A fresh file of `bytes` zeros in a directory of its own; removed on drop.
struct TempImage {
    dir: PathBuf,
    path: PathBuf,
}

impl TempImage {
    /// An empty directory of its own for `name`'s image.
    fn dir(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("keel-blk-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the image directory");
        let path = dir.join(format!("{name}.img"));
        (dir, path)
    }

    /// A scratch disk: zeros with the scenario's label in sector 1.
    fn new(name: &str, bytes: u64) -> Self {
        let image = Self::zeros(name, bytes);
        let mut disk = std::fs::read(&image.path).expect("read the new image");
        disk[SCRATCH_SECTOR * SECTOR..][..SCRATCH_LABEL.len()].copy_from_slice(SCRATCH_LABEL);
        std::fs::write(&image.path, disk).expect("label the scratch image");
        image
    }

    /// `bytes` zeros, no label.
    fn zeros(name: &str, bytes: u64) -> Self {
        let (dir, path) = Self::dir(name);
        let file = std::fs::File::create(&path).expect("create the disk image");
        file.set_len(bytes).expect("size the disk image");
        Self { dir, path }
    }

    /// A user's disk: an ext2 file system made by the host's mke2fs, no label.
    fn ext2(name: &str, bytes: u64) -> Self {
        let (dir, path) = Self::dir(name);
        let mke2fs = "/usr/sbin/mke2fs";
        assert!(std::path::Path::new(mke2fs).exists(), "{mke2fs} is missing: `make deps` installs e2fsprogs");
        let status = Command::new(mke2fs)
            .args(["-q", "-t", "ext2", "-b", "1024"])
            .arg(&path)
            .arg(format!("{}k", bytes / 1024))
            .status()
            .expect("cannot run mke2fs");
        assert!(status.success(), "mke2fs failed");
        Self { dir, path }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("temporary paths are UTF-8")
    }

    /// Panics (naming the sector and byte) unless the image holds the scenario's pattern.
    fn check_pattern(&self) {
        let disk = std::fs::read(&self.path).expect("read the disk image back");
        let capacity = disk.len() as u64 / SECTOR as u64;
        for (first, count) in ranges(capacity) {
            for sector in first..first + count {
                let at = sector as usize * SECTOR;
                if let Some(i) = (0..SECTOR).find(|&i| disk[at + i] != pattern_byte(sector, i)) {
                    panic!(
                        "disk image: sector {sector} byte {i} is {:#04x}, the scenario wrote {:#04x}",
                        disk[at + i],
                        pattern_byte(sector, i)
                    );
                }
            }
        }
        // Sectors the scenario did not write are still zero (nothing wrote at wrong offsets).
        let label = &disk[SCRATCH_SECTOR * SECTOR..][..SCRATCH_LABEL.len()];
        assert_eq!(label, SCRATCH_LABEL, "disk image: the scratch label in sector {SCRATCH_SECTOR} was overwritten");
        for sector in [2, capacity / 2 - 1, capacity / 2 + MAX_SECTORS, capacity - 2, capacity / 3 + 3] {
            let at = sector as usize * SECTOR;
            assert!(disk[at..at + SECTOR].iter().all(|&b| b == 0), "disk image: sector {sector} was written");
        }
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn expect_scenario_ok(run: &keel_tests::Run) {
    run.expect_absent("ktest: blk: FAILED")
        .expect_absent("panic")
        .expect("ktest: blk: ok (blk0: 16384 sectors, 133 sectors written and read back, 9 bad requests refused")
        .expect("init: scenario blk finished with code 0")
        .expect_clean_poweroff();
}

#[test]
fn data_written_through_blk0_reaches_the_disk_image() {
    let disk = TempImage::new("legacy", DISK_BYTES);
    let run = Boot::scenario("blk").drive(disk.path()).timeout(180).run();
    run.expect("blk: blk0 = virtio-blk at slot 31 (virtio-mmio v1), 16384 sectors (8 MiB), flush")
        .expect("ktest: blk: ok: wrote, flushed and read back sectors 0+1, 8192+128, 16383+1, 5461+3")
        .expect("ktest: blk: ok: blk0 carries the scratch label in sector 1: it may be written")
        .expect("ktest: blk: ok: one writer: a second client's OPEN_WRITE and WRITE get EBUSY, its READ works, RELEASE hands over")
        .expect("ktest: blk: ok: 9 malformed requests refused with their errno");
    expect_scenario_ok(&run);
    disk.check_pattern();
}

/// A disk with a file system (a user's /disk): fs mounts it, and the scenario writes nothing to
/// it; blk refuses it as a second writer while fs has it mounted.
#[test]
fn a_disk_fs_has_mounted_refuses_a_second_writer_and_is_not_written() {
    let disk = TempImage::ext2("user", DISK_BYTES);
    let before = std::fs::read(&disk.path).expect("read the image");
    let run = Boot::scenario("blk").drive(disk.path()).timeout(180).run();
    run.expect("fs: mounted blk0 (ext2) on /disk")
        .expect("ktest: blk: ok: blk0 is mounted by fs: another client's OPEN_WRITE and WRITE get EBUSY, its READ works")
        .expect("ktest: blk: ok (blk0: not a scratch disk, mounted by fs, not written)")
        .expect("init: scenario blk finished with code 0")
        .expect_absent("ktest: blk: FAILED")
        .expect_absent("panic")
        .expect_clean_poweroff();
    let after = std::fs::read(&disk.path).expect("read the image back");
    let capacity = after.len() as u64 / SECTOR as u64;
    // fs may update its superblock and group descriptors; the sectors the scenario writes on a
    // scratch disk are untouched (sector 0 and the middle of this empty file system).
    for (first, count) in ranges(capacity) {
        let range = first as usize * SECTOR..(first + count) as usize * SECTOR;
        assert!(after[range.clone()] == before[range], "sectors {first}+{count} of the user's disk were written");
    }
}

/// A disk with neither the scratch label nor a file system fs could mount: the scenario refuses
/// to write it and says why.
#[test]
fn an_unlabelled_disk_is_not_written() {
    let disk = TempImage::zeros("unlabelled", DISK_BYTES);
    let run = Boot::scenario("blk").drive(disk.path()).timeout(180).run();
    run.expect("ktest: blk: FAILED: blk0 has no scratch label in sector 1 and the file service has not mounted it")
        .expect("init: scenario blk finished with code")
        .expect_absent("panic")
        .expect_clean_poweroff();
    let after = std::fs::read(&disk.path).expect("read the image back");
    assert!(after.iter().all(|&b| b == 0), "the unlabelled disk was written");
}

#[test]
fn without_a_disk_the_driver_exits_quietly() {
    let run = Boot::scenario("blk").timeout(180).run();
    run.expect("blk: no virtio-blk devices")
        .expect("ktest: blk: ok (no disk)")
        .expect_absent("ktest: blk: FAILED")
        .expect_absent("panic")
        .expect_clean_poweroff();
    if !run.log.lines().any(|l| l.starts_with("init: service blk (pid ") && l.ends_with("exited with code 0")) {
        run.fail("no 'init: service blk (pid N) exited with code 0' line");
    }
}

/// The modern (version 2) transport with a read-only second disk. `Boot` has no way to add
/// arbitrary QEMU options, so this runs QEMU itself with `Boot`'s command line plus its own.
#[test]
fn the_modern_transport_and_a_read_only_second_disk_work() {
    let disk = TempImage::new("modern", DISK_BYTES);
    let ro = TempImage::zeros("readonly", 1 << 20);
    let image = std::env::var("KEEL_IMAGE").expect("KEEL_IMAGE is not set: run the QEMU tests with `make test`");
    let mut args = Boot::scenario("blk").drive(disk.path()).args(&image);
    args.extend(
        [
            "-global",
            "virtio-mmio.force-legacy=false",
            "-drive",
            &format!("file={},format=raw,if=none,id=disk1,readonly=on", ro.path()),
            "-device",
            "virtio-blk-device,drive=disk1",
        ]
        .map(String::from),
    );
    let (log, ok) = run_qemu(&args, Duration::from_secs(180));
    let fail = |why: &str| -> ! {
        let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("{why}\n--- end of the serial log ---\n{}", tail.join("\n"))
    };
    for needle in [
        "blk: blk0 = virtio-blk at slot 31 (virtio-mmio v2), 16384 sectors (8 MiB), flush",
        "blk: blk1 = virtio-blk at slot 30 (virtio-mmio v2), 2048 sectors (1 MiB), flush, read-only",
        "ktest: blk: ok: one writer: a second client's OPEN_WRITE and WRITE get EBUSY, its READ works, RELEASE hands over",
        "ktest: blk: ok: blk1: 2048 sectors, read-only: reads work, writes get EROFS",
        "ktest: blk: ok (blk0: 16384 sectors, 133 sectors written and read back, 9 bad requests refused; blk1: 2048 sectors, read-only)",
        "init: scenario blk finished with code 0",
    ] {
        if !log.lines().any(|l| l.contains(needle)) {
            fail(&format!("no line contains {needle:?}"));
        }
    }
    if log.contains("FAILED") || log.contains("panic") || log.contains("PANIC") {
        fail("a check failed or something panicked");
    }
    if !ok {
        fail("QEMU did not power off cleanly in time");
    }
    disk.check_pattern();
    let untouched = std::fs::read(&ro.path).expect("read the read-only image");
    assert!(untouched.iter().all(|&b| b == 0), "the read-only disk was written");
}

/// Runs QEMU with `args`; (serial log, whether it exited with status 0 before `timeout`).
fn run_qemu(args: &[String], timeout: Duration) -> (String, bool) {
    let qemu = std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into());
    let mut child = Command::new(&qemu)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {qemu}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for QEMU") {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = String::from_utf8_lossy(&reader.join().unwrap_or_default()).replace('\r', "");
    (log, status.is_some_and(|s| s.success()))
}
