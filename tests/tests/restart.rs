//! QEMU scenarios: a service killed from the shell (`kill <pid>`) in the middle of work with
//! files comes back (init restarts it), its clients find it again, and nothing that was
//! acknowledged is lost: a file written and `sync`ed before the kill reads back whole after,
//! on the guest and, after power-off, on the host (debugfs), with an image e2fsck finds clean.
//!
//! Commands are typed prompt by prompt (`Boot::commands`): the console echoes what is typed as it
//! arrives, so a line typed ahead would land inside the output of the command before it. A
//! point a stage waits for is printed by a command whose output differs from its echo
//! (`echo mark   one` prints `mark one`).

use keel_tests::{Boot, Run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch disk image removed when dropped.
struct ScratchDisk {
    dir: PathBuf,
    image: PathBuf,
}

impl ScratchDisk {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("keel-restart-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot make a scratch directory");
        let image = dir.join("disk.img");
        let status = Command::new(tool("mke2fs")).args(["-q", "-t", "ext2", "-b", "1024"]).arg(&image).arg("16M").status().expect("cannot run mke2fs");
        assert!(status.success(), "mke2fs failed");
        ScratchDisk { dir, image }
    }

    fn path(&self) -> &str {
        self.image.to_str().expect("scratch path is UTF-8")
    }
}

impl Drop for ScratchDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tool(name: &str) -> String {
    let path = format!("/usr/sbin/{name}");
    assert!(Path::new(&path).exists(), "{path} is missing: `make deps` installs e2fsprogs");
    path
}

/// `e2fsck -fn` finds nothing to fix.
fn assert_clean(image: &Path) {
    let out = Command::new(tool("e2fsck")).arg("-fn").arg(image).output().expect("cannot run e2fsck");
    assert!(
        out.status.success(),
        "e2fsck -fn found problems (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `e2fsck -fp` (preen: only the repairs that need no answer) exits 0 or 1 (nothing to fix, or
/// fixed).
fn assert_preen_fixable(image: &Path) {
    let out = Command::new(tool("e2fsck")).arg("-fp").arg(image).output().expect("cannot run e2fsck");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "e2fsck -fp could not repair the image without help (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A file's bytes as the host's debugfs reads them.
fn debugfs_cat(image: &Path, path: &str) -> Vec<u8> {
    let out = Command::new(tool("debugfs")).arg("-R").arg(format!("cat {path}")).arg(image).output().expect("cannot run debugfs");
    assert!(out.status.success(), "debugfs cat {path} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The pid `ps` showed last for the running process `name`.
fn pid_of(log: &str, name: &str) -> Option<u64> {
    keel_tests::ps_pid(log, name)
}

/// Lines typed as one input.
fn lines(ls: &[&str]) -> String {
    ls.iter().map(|l| format!("{l}\n")).collect()
}

/// `kill <pid of service>` from the last `ps`, or (no such process) a line the test fails on and
/// a power-off.
fn kill_line(log: &str, service: &str) -> String {
    match pid_of(log, service) {
        Some(pid) => format!("kill {pid}"),
        None => "echo no   pid\npoweroff".to_string(),
    }
}

/// The data written before the kill: long enough to span several disk blocks.
fn before_data() -> String {
    (0..200).map(|i| format!("{i:04}")).collect::<Vec<_>>().join("-")
}

/// Whether `cat` printed the synced file (a line holding its data that is not the typed echo).
fn printed_before_file(run: &Run) -> bool {
    let data = before_data();
    run.log.lines().any(|l| l.contains(&data) && !l.contains("echo "))
}

/// Boots with a scratch disk; writes and syncs /disk/before.txt, leaves /disk/dirty.txt written
/// but not synced, runs `before`, kills `service`, then runs `after` (which ends with
/// `poweroff`). The run and the disk image after power-off.
fn kill_mid_workload(service: &'static str, before: &'static [&'static str], after: &'static [&'static str]) -> (Run, ScratchDisk) {
    let disk = ScratchDisk::new(service);
    let write = format!("echo {} > /disk/before.txt", before_data());
    let mut first = vec![write.as_str(), "sync", "echo dirty data > /disk/dirty.txt"];
    first.extend_from_slice(before);
    first.push("ps");
    let run = Boot::scenario("")
        .drive(disk.path())
        .timeout(240)
        .commands(&first)
        .command_from(move |log| kill_line(log, service))
        .commands(after)
        .run();
    if std::env::var("KEEL_SHOW_LOG").is_ok() {
        eprintln!("{}", run.log);
    }
    run.expect_absent("no pid");
    (run, disk)
}

/// What every service's test checks after power-off: the synced file is whole on the disk.
fn synced_file_survived(run: &Run, disk: &ScratchDisk) {
    run.expect_clean_poweroff();
    assert_clean(&disk.image);
    let got = debugfs_cat(&disk.image, "/before.txt");
    assert_eq!(String::from_utf8_lossy(&got).trim_end(), before_data(), "the synced file differs on the disk");
}

#[test]
fn killing_blk_mid_workload_loses_nothing_and_fs_reconnects() {
    let (run, disk) = kill_mid_workload(
        "blk",
        &[],
        &["sync", "echo written after > /disk/after.txt", "sync", "cat /disk/after.txt", "poweroff"],
    );
    run.expect("exited with code -9; restarting it")
        .expect("fs: reconnected to blk0 after the block service restarted")
        .expect_absent("fs: block device blk0 unreachable");
    synced_file_survived(&run, &disk);
    // The dirty data fs held when blk died, and what was written after, reached the disk.
    assert_eq!(debugfs_cat(&disk.image, "/dirty.txt"), b"dirty data\n");
    assert_eq!(debugfs_cat(&disk.image, "/after.txt"), b"written after\n");
}

#[test]
fn killing_namesrv_keeps_every_name_and_the_disk_unmounts_clean() {
    let (run, disk) = kill_mid_workload(
        "namesrv",
        &[],
        &["vm list", "sync", "cat /disk/before.txt", "ps", "poweroff"],
    );
    run.expect("namesrv: restarted (generation 1);")
        .expect("registrations recovered from init")
        .expect_absent("the file service did not shut down cleanly")
        .expect_absent("vm: ");
    if !printed_before_file(&run) {
        run.fail("cat /disk/before.txt after the namesrv restart did not print the file");
    }
    synced_file_survived(&run, &disk);
    assert_eq!(debugfs_cat(&disk.image, "/dirty.txt"), b"dirty data\n");
}

#[test]
fn killing_fs_keeps_synced_files_and_the_shell_reconnects() {
    let disk = ScratchDisk::new("fs");
    let run = Boot::scenario("")
        .drive(disk.path())
        .timeout(240)
        .commands(&[&format!("echo {} > /disk/before.txt", before_data()), "sync", "ps"])
        .command_from(|log| kill_line(log, "fs"))
        .commands_after("fs: mounted blk0 (ext2) on /disk", &["cat /disk/before.txt", "echo after restart > /disk/after.txt", "sync", "poweroff"])
        .run();
    run.expect_absent("no pid").expect("service fs (pid").expect("exited with code -9; restarting it");
    if !printed_before_file(&run) {
        run.fail("cat /disk/before.txt after the fs restart did not print the file");
    }
    synced_file_survived(&run, &disk);
    assert_eq!(debugfs_cat(&disk.image, "/after.txt"), b"after restart\n");
}

/// What debugfs reads at `path` on a disk image QEMU is still writing, if it reads anything.
fn debugfs_try_cat(image: &Path, path: &str) -> Option<Vec<u8>> {
    let out = Command::new(tool("debugfs")).arg("-R").arg(format!("cat {path}")).arg(image).output().ok()?;
    out.status.success().then_some(out.stdout)
}

#[test]
fn data_nobody_synced_reaches_the_disk_within_seconds_and_outlives_an_fs_kill() {
    let disk = ScratchDisk::new("writeback");
    let image = disk.image.clone();
    let run = Boot::scenario("")
        .drive(disk.path())
        .timeout(240)
        .commands(&["echo never synced > /disk/late.txt", "ps"])
        // fs writes it back by itself (every 5 s); seen on the host's image, then fs is killed.
        .then_when(
            "keel> ",
            move || debugfs_try_cat(&image, "/late.txt").is_some_and(|d| d == b"never synced\n"),
            |log| format!("{}\n", kill_line(log, "fs")),
        )
        .commands_after("fs: mounted blk0 (ext2) on /disk", &["cat /disk/late.txt", "poweroff"])
        .run();
    run.expect_absent("no pid").expect("exited with code -9; restarting it").expect_clean_poweroff();
    if !run.log.lines().any(|l| l.trim_end() == "never synced") {
        run.fail("cat /disk/late.txt after the fs restart did not print the file fs wrote back on its own");
    }
    assert_clean(&disk.image);
}

#[test]
fn killing_vmm_is_reported_and_the_restarted_monitor_answers() {
    // The shell talks to the monitor before the kill, so it holds a connection that dies with it.
    let (run, disk) = kill_mid_workload(
        "vmm",
        &["vm list"],
        &["vm list", "vm list", "cat /disk/before.txt", "poweroff"],
    );
    run.expect("service vmm (pid")
        .expect("vm: the VM monitor restarted; VMs it ran are in vm list (vm start <id> boots one again)")
        .expect_absent("peer died");
    // Told once, not at every command.
    assert_eq!(run.log.matches("vm: the VM monitor restarted").count(), 1, "the restart was reported more than once");
    synced_file_survived(&run, &disk);
}

#[test]
fn a_restarted_vmm_keeps_the_vm_list_and_vm_start_boots_a_vm_again() {
    const HVC: &str = "--kernel /guest/test.Image --append guest=hvc";
    // The crash guest loops for ever in its exception entry: it is running when vmm dies.
    const SPIN: &str = "--kernel /guest/test.Image --append guest=crash";
    let run = Boot::scenario("")
        .timeout(240)
        .commands(&[&format!("vm run hvc {HVC} --wait"), &format!("vm run spin {SPIN}"), "ps"])
        .command_from(|log| kill_line(log, "vmm"))
        .commands_after(
            "vmm: restarted; 2 VMs in the list, 1 of them were running and are lost",
            &["vm list", "vm stat 2", "vm start 2 --kernel /other", "vm start 1 --wait", "vm start 1 --wait", "vm rm 2", "vm list", "poweroff"],
        )
        .run();
    run.expect_absent("no pid")
        .expect("service vmm (pid")
        .expect("vm: the VM monitor restarted; VMs it ran are in vm list (vm start <id> boots one again)")
        .expect("1    hvc                  1      256  exited: system-off")
        .expect("2    spin                 1      256  lost: the VM monitor restarted (vm start <id> boots it again)")
        .expect("vm stat: vm 2 ran under an earlier VM monitor; its counters were lost with it")
        .expect("vm start: --kernel given twice")
        .expect("guest: hvc: PASS")
        .expect("vm 2 removed")
        .expect_clean_poweroff();
    // Started again twice under the new monitor, keeping its id; the list then has vm 1 alone.
    assert_eq!(run.log.matches("vm 1 exited: system-off").count(), 3, "vm start 1 --wait did not run the guest twice");
    let tail: Vec<&str> = run.log.lines().skip_while(|l| !l.contains("vm 2 removed")).collect();
    if tail.iter().any(|l| l.starts_with("2    spin")) || !tail.iter().any(|l| l.starts_with("1    hvc")) {
        run.fail("after vm rm 2, vm list should show vm 1 alone");
    }
}

#[test]
fn killing_the_console_brings_the_shell_back_to_a_prompt() {
    // The shell notices, waits for the restarted console and reads lines from it again; the
    // input below is typed only once the new console is ready.
    let disk = ScratchDisk::new("console");
    let run = Boot::scenario("")
        .drive(disk.path())
        .timeout(240)
        .commands(&[&format!("echo {} > /disk/before.txt", before_data()), "sync", "ps"])
        .command_from(|log| kill_line(log, "console"))
        .commands_after("console: ready", &["cat /disk/before.txt", "echo mark   two", "poweroff"])
        .run();
    run.expect_absent("no pid").expect("service console (pid").expect("mark two");
    if !printed_before_file(&run) {
        run.fail("cat /disk/before.txt after the console restart did not print the file");
    }
    synced_file_survived(&run, &disk);
}

#[test]
fn init_cannot_be_killed_and_kill_says_why() {
    let run = Boot::scenario("")
        .commands(&["ps"])
        .command_from(|log| kill_line(log, "init"))
        .commands(&["ps", "poweroff"])
        .run();
    run.expect_absent("no pid").expect_clean_poweroff();
    let pid = pid_of(&run.log, "init").unwrap_or_else(|| run.fail("ps listed no init"));
    run.expect(&format!("kill: pid {pid} is init and cannot be killed")).expect_absent(&format!("kill: no process {pid}"));
}

#[test]
fn a_killed_clients_fs_session_and_open_files_are_freed() {
    let run = Boot::scenario("")
        .then("/disk is a directory of the root tmpfs", |_| lines(&["run ktest hold-files"]))
        // Ctrl-C: the console kills the foreground program through the process manager.
        .then("ktest: holding 2 files open", |_| "\x03".into())
        .then("fs: client ", |_| lines(&["echo mark   one", "poweroff"]))
        .timeout(120)
        .run();
    run.expect("ktest: holding 2 files open").expect("closed its session and 2 open files").expect("mark one").expect_clean_poweroff();
}

/// The file `ktest kill-during-copy` writes: chunk `i`'s byte `j` (services/ktest/src/scenario/killcopy.rs).
fn copy_pattern() -> Vec<u8> {
    const CHUNKS: u64 = 512;
    const CHUNK: usize = 1024;
    (0..CHUNKS).flat_map(|i| (0..CHUNK).map(move |j| (i.wrapping_mul(131).wrapping_add(j as u64).wrapping_mul(7) % 251) as u8)).collect()
}

/// `scenario=kill-during-copy:<service>` (ktest started by init): the service is killed while a thread
/// is writing a 512 KiB file to /disk, not between two commands; the copy finishes (for fs: after
/// a clear ECONNRESET/EBADF and a reopen), the file reads back whole in Keel and on the host.
fn kill_during_copy(service: &'static str) -> Run {
    let disk = ScratchDisk::new(&format!("copy-{service}"));
    let run = Boot::scenario(&format!("kill-during-copy:{service}")).drive(disk.path()).timeout(300).run();
    run.expect_absent("ktest: kill-during-copy: FAILED")
        .expect(&format!("ktest: kill-during-copy: ok ({service} pid "))
        .expect("512 KiB read back whole");
    run.expect_clean_poweroff();
    if service == "fs" {
        // Killing fs is a crash of the file system: what it leaves is what `e2fsck -p` repairs
        // without asking (ARCHITECTURE.md, crash order), such as a block it had marked in use
        // for a write that never reached an inode. The restarted fs recounts free blocks from
        // the bitmaps at mount, and powers off cleanly.
        assert_preen_fixable(&disk.image);
    }
    assert_clean(&disk.image);
    if debugfs_cat(&disk.image, "/copy.dat") != copy_pattern() {
        run.fail("/copy.dat on the disk image (host debugfs) differs from what the copy wrote");
    }
    run
}

#[test]
fn killing_blk_during_a_copy_loses_nothing_and_the_copy_sees_no_error() {
    kill_during_copy("blk").expect("the copy saw no error").expect("fs: reconnected to blk0 after the block service restarted");
}

#[test]
fn killing_fs_during_a_copy_gives_a_clear_error_and_the_rewritten_copy_is_whole() {
    kill_during_copy("fs").expect("the copy reopened the file after");
}

#[test]
fn killing_namesrv_during_a_copy_is_not_seen_by_the_copy() {
    kill_during_copy("namesrv").expect("the copy saw no error");
}
