//! The test guests' checks are the architecture's, not Keel's: each scenario the Keel VM tests
//! run (tests/tests/vm.rs) must also pass on plain QEMU, the guest entered at EL1 with no
//! hypervisor (`-machine virt,gic-version=3 -cpu max`, `guest.plain`: the README in
//! tests/guests lists what plain QEMU answers differently). A check that fails here is wrong
//! about the Arm architecture; one that passes here and fails under Keel is a Keel bug.
//!
//! The guest Image is the one `make test` packs into the initrd: `target/guests/test.Image`
//! beside `KEEL_INITRD`.

use keel_tests::run_command;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn guest_image() -> PathBuf {
    let initrd = std::env::var("KEEL_INITRD")
        .expect("KEEL_INITRD is not set: run the QEMU tests with `make test` (it builds the test guest first)");
    let image = PathBuf::from(initrd).parent().expect("KEEL_INITRD has a directory").join("guests/test.Image");
    assert!(image.exists(), "{} is missing: `make test-guest` builds it", image.display());
    image
}

/// Runs `guest=<scenario>` on plain QEMU with `cpus` CPUs and checks its PASS line.
fn plain(scenario: &str, cpus: u32) {
    plain_with(scenario, cpus, &[]);
}

/// The same with more QEMU arguments (devices).
fn plain_with(scenario: &str, cpus: u32, extra: &[&str]) {
    let qemu = std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into());
    let mut cmd = Command::new(qemu);
    cmd.args(["-machine", "virt,gic-version=3", "-cpu", "max", "-m", "128M", "-nographic", "-no-reboot"])
        .args(["-smp", &cpus.to_string()])
        .args(extra)
        .arg("-kernel")
        .arg(guest_image())
        .args(["-append", &format!("guest={scenario} guest.plain")]);
    let run = run_command(&format!("plain QEMU guest={scenario}"), cmd, "", Duration::from_secs(120));
    run.expect(&format!("guest: {scenario}: PASS")).expect_absent(&format!("guest: {scenario}: FAIL"));
}

#[test]
fn hvc_passes_on_plain_qemu() {
    plain("hvc", 1);
}

#[test]
fn mmio_passes_on_plain_qemu() {
    plain("mmio", 1);
}

#[test]
fn abort_passes_on_plain_qemu() {
    plain("abort", 1);
}

#[test]
fn timer_passes_on_plain_qemu() {
    plain("timer", 1);
}

#[test]
fn bench_passes_on_plain_qemu() {
    plain("bench", 2);
}

#[test]
fn switch_passes_on_plain_qemu() {
    plain("switch", 2);
}

#[test]
fn sve_passes_on_plain_qemu() {
    plain("sve", 1);
}

#[test]
fn timers_pass_on_plain_qemu() {
    plain("timers", 1);
}

#[test]
fn wfi_passes_on_plain_qemu() {
    plain("wfi", 1);
}

#[test]
fn smp_passes_on_plain_qemu() {
    plain("smp", 4);
}

#[test]
fn sgi_passes_on_plain_qemu() {
    plain("sgi", 2);
}

#[test]
fn debug_passes_on_plain_qemu() {
    plain("debug", 2);
}

#[test]
fn pmu_passes_on_plain_qemu() {
    plain("pmu", 1);
}

/// The tiny guest's virtio driver against QEMU's own entropy device (modern transport): the
/// driver Keel's virtio backends are tested with (tests/tests/virtio.rs) is right about the spec.
#[test]
fn virtio_passes_on_plain_qemu_with_its_entropy_device() {
    plain_with("virtio", 1, &["-device", "virtio-rng-device", "-global", "virtio-mmio.force-legacy=false"]);
}
