//! QEMU scenarios for Keel's virtio devices: each device of a VM is served by its own backend
//! process (`/bin/vdev`), reached by the kernel's ioevents and the monitor's forwarded register
//! accesses. The tiny test guest's driver (tests/guests, `guest=virtio*`) checks what a guest
//! sees; the tests check what the user sees (`vm stat`, `ps`, the monitor's notices).

use keel_tests::Boot;

/// The row `vm stat` prints for a device: its numbers, after the device's name.
fn device_row<'a>(log: &'a str, device: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.starts_with(device)).last().map(|l| l.split_whitespace().collect()).unwrap_or_default()
}

#[test]
fn an_entropy_device_serves_a_guest_and_refuses_a_hostile_one_beside_it() {
    let run = Boot::scenario("")
        .commands(&[
            "vm run bad --kernel /guest/test.Image --append guest=virtio-hostile --rng",
            "vm run good --kernel /guest/test.Image --append guest=virtio --rng --wait",
            "vm run good2 --kernel /guest/test.Image --append guest=virtio --rng --wait",
        ])
        .commands_after("vm 1 (bad) exited", &["vm console 1", "vm stat 1", "vm run none --kernel /guest/test.Image --append guest=virtio --wait", "mem", "poweroff"])
        .timeout(300)
        .run();
    run.expect("guest: virtio: slot 0 at 0xa000000: device 4, version 2")
        .expect("vm 2 exited: system-off")
        .expect("vm 3 exited: system-off")
        .expect("guest: virtio-hostile: buffer outside RAM: device needs reset")
        .expect("guest: virtio-hostile: descriptor loop: device needs reset")
        .expect("guest: virtio-hostile: available index jump: device needs reset")
        .expect("guest: virtio-hostile: queue outside RAM: device needs reset")
        .expect("guest: virtio-hostile: PASS (9 kinds of bad input refused; then 64 random bytes)")
        .expect("guest: virtio: FAIL no entropy device (virtio device ID 4) on any slot")
        .expect_absent("vdev: ")
        .expect_absent("panicked")
        .expect_clean_poweroff();
    if run.log.matches("guest: virtio: PASS (64 random bytes from slot 0)").count() != 2 {
        run.fail("the two healthy guests did not both get their random bytes");
    }
    // The hostile guest's device: 7 malformed rings (each a reset), 7 good requests.
    let row = device_row(&run.log, "virtio-rng@0");
    if row.get(1..3) != Some(&["7", "448"][..]) || row.get(5) != Some(&"7") {
        run.fail(&format!("vm stat 1's device row is {row:?}, want 7 requests, 448 bytes, 7 errors"));
    }
    // Every backend ended with its VM: no backend process, VM or ioevent is left.
    for gone in ["vms                0", "vm-ioevents        0", "vm-irq-lines       0"] {
        run.expect(gone);
    }
}

#[test]
fn a_killed_backend_fails_its_device_and_nothing_else() {
    let run = Boot::scenario("")
        .commands(&["vm run loop --kernel /guest/test.Image --append guest=virtio-loop --rng --attach"])
        .then_next("guest: virtio-loop: serving requests", |_| "~.\n".to_string())
        .commands(&["ps"])
        .command_from(|log| {
            let pid = log.lines().rev().find(|l| l.contains("vdev-rng")).and_then(|l| l.split_whitespace().next()).unwrap_or("none");
            format!("kill {pid}")
        })
        .commands_after("vm 1 (loop) exited: system-off", &["vm console 1", "vm stat 1", "vm run again --kernel /guest/test.Image --append guest=virtio --rng --wait", "ps", "poweroff"])
        .timeout(300)
        .run();
    run.expect("vdev-rng         running")
        .expect("the virtio-rng backend (pid")
        .expect("is gone (peer died): the device now reports DEVICE_NEEDS_RESET")
        .expect("guest: virtio-loop: PASS (the device reports DEVICE_NEEDS_RESET after")
        .expect("backend gone")
        .expect("guest: virtio: PASS (64 random bytes from slot 0)")
        .expect("vm 2 exited: system-off")
        .expect_clean_poweroff();
    // The last `ps` lists no backend: the second VM's ended with it.
    let last_ps = run.log.rsplit("keel> ps").next().unwrap_or("");
    if last_ps.contains("vdev-rng") {
        run.fail("a backend process outlived its VM");
    }
}

/// Debian's Linux with an entropy device: its /init loads the virtio modules (the device tree
/// lists a virtio-mmio transport), the virtio-rng driver binds, and /dev/hwrng gives bytes.
#[test]
fn debian_linux_reads_its_hwrng_from_a_keel_backend() {
    let run = Boot::scenario("")
        .commands(&["vm run linux-check --rng --wait", "vm stat 1", "poweroff"])
        .timeout(600)
        .run();
    run.expect("guest: virtio: ")
        .expect("modules loaded")
        .expect("guest: hwrng: virtio_rng.0: 128 bytes")
        .expect("guest: checks passed")
        .expect("vm 1 exited: system-off")
        .expect_absent("insmod: can't insert")
        .expect_clean_poweroff();
    let row = device_row(&run.log, "virtio-rng@0");
    let requests: u64 = row.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    let bytes: u64 = row.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    if requests == 0 || bytes < 128 {
        run.fail(&format!("vm stat 1's device row {row:?} shows fewer requests or bytes than the guest read"));
    }
}
