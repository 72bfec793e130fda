//! QEMU scenarios for the foundation: boot at EL2, SMP, timer, IPIs, fault reports, refusals.

use keel_tests::{Boot, number_before};

#[test]
fn default_boot_prints_the_report_and_powers_off_cleanly() {
    let run = Boot::scenario("").input("poweroff\n").run();
    run.expect("keel: Keel ")
        .expect("keel: cpus: 4 online of 4 in the device tree")
        .expect("keel: memory: 2048 MiB RAM in 1 bank(s)")
        .expect("keel: devices: pl011 @ 0x9000000 (intid 33)")
        .expect("keel: devices: SMMUv3 @ 0x9050000")
        .expect("keel: devices: PCIe ECAM @ 0x4010000000")
        .expect("keel: devices: 32 virtio-mmio slot(s)")
        .expect("keel: boot took ")
        .expect("keel: ready: 4 cpus online, ")
        .expect("keel: initrd: ")
        .expect_clean_poweroff();
}

#[test]
fn without_an_initrd_keel_says_there_is_no_user_space() {
    Boot::scenario("")
        .without_initrd()
        .run()
        .expect("keel: initrd: none")
        .expect("keel: no initrd, so no user space to start; powering off")
        .expect_clean_poweroff();
}

#[test]
fn every_cpu_comes_online_ticks_and_exchanges_ipis() {
    let run = Boot::scenario("smp").run();
    run.expect("keel: ready: 4 cpus online").expect("smp: ok: 4 cpus online").expect_clean_poweroff();
    let cpus = run.lines_starting("smp: cpu");
    if cpus.len() != 4 {
        run.fail(&format!("expected 4 per-cpu lines, found {}", cpus.len()));
    }
    for (i, line) in cpus.iter().enumerate() {
        if !line.starts_with(&format!("smp: cpu{i} mpidr {i:#x}: online")) {
            run.fail(&format!("cpu{i} line is {line:?}"));
        }
        let ticks = number_before(line, " ticks").unwrap_or(0);
        let ipis = number_before(line, " ipis received").unwrap_or(0);
        if ticks < 3 || ipis < 1 {
            run.fail(&format!("cpu{i}: {ticks} ticks and {ipis} IPIs; want at least 3 and 1"));
        }
    }
}

#[test]
fn cpus_and_memory_follow_the_device_tree() {
    Boot::scenario("smp")
        .smp(2)
        .mem("512M")
        .run()
        .expect("keel: cpus: 2 online of 2 in the device tree")
        .expect("keel: memory: 512 MiB RAM in 1 bank(s)")
        .expect("keel: ready: 2 cpus online")
        .expect("smp: ok: 2 cpus online")
        .expect_clean_poweroff();
}

#[test]
fn log_level_from_the_command_line_shows_debug_lines() {
    let run = Boot::scenario("").append("loglevel=debug").input("poweroff\n").run();
    run.expect("cpu1 DEBUG cpu1 (mpidr 0x1) online").expect_clean_poweroff();
    let quiet = Boot::scenario("").input("poweroff\n").run();
    quiet.expect_absent(" DEBUG ").expect_clean_poweroff();
}

#[test]
fn every_log_level_works_and_an_unknown_one_is_refused() {
    // trace: refused system calls are logged (boot has some: lookups that wait and time out).
    let trace = Boot::scenario("").append("loglevel=trace").input("poweroff\n").run();
    trace.expect(" TRACE process ").expect(" DEBUG ").expect_clean_poweroff();
    // error: the INFO and WARN lines are gone.
    let error = Boot::scenario("").append("loglevel=error").input("poweroff\n").run();
    error.expect_absent(" INFO ").expect_absent("asked to power off").expect("keel: ready:").expect_clean_poweroff();
    let loud = Boot::scenario("").append("loglevel=loud").input("poweroff\n").run();
    loud.expect("loglevel=loud is not a level (off, error, warn, info, debug, trace); logging at info")
        .expect(" INFO  starting user space")
        .expect_clean_poweroff();
}

#[test]
fn entered_at_el1_keel_refuses_with_a_clear_message() {
    Boot::scenario("")
        .machine("virt,gic-version=3")
        .run()
        .expect("keel: cannot run: entered at EL1, but Keel is a hypervisor and must start at EL2")
        .expect_absent("keel: ready")
        .expect_clean_poweroff();
}

#[test]
fn cpu_without_vhe_is_refused_with_a_clear_message() {
    Boot::scenario("")
        .cpu("cortex-a57")
        .run()
        .expect("keel: cannot run: this CPU has no VHE")
        .expect_absent("keel: ready")
        .expect_clean_poweroff();
}

#[test]
fn a_kernel_fault_is_decoded_and_stops_only_that_cpu() {
    Boot::scenario("exception")
        .smp(2)
        .run()
        .expect(
            "cpu1 ERROR unexpected exception from kernel: data abort from the same EL (read, translation fault; \
             ESR 0x96000004), FAR 0xfffffd0000000000, ELR 0xffffff80",
        )
        .expect("exception: cpu1 stopped after its report; cpu0 still running")
        .expect("keel: powering off")
        .expect_clean_poweroff();
}

#[test]
fn a_fault_on_the_last_running_cpu_powers_the_machine_off() {
    Boot::scenario("exception")
        .smp(1)
        .run()
        .expect("cpu0 ERROR unexpected exception from kernel: data abort from the same EL")
        .expect("keel: every cpu has stopped; powering off");
}

#[test]
fn a_panic_prints_its_location_and_powers_off() {
    let run = Boot::scenario("panic").run();
    run.expect("keel: PANIC on cpu0 at kernel/src/scenario.rs:")
        .expect("scenario panic: this panic was requested on the kernel command line")
        .expect("keel: powering off after panic");
    if run.timed_out {
        run.fail("the panic did not power the machine off");
    }
}

#[test]
fn an_unknown_scenario_is_named_and_fails() {
    Boot::scenario("no-such-thing")
        .run()
        .expect("ktest: unknown scenario or mode 'no-such-thing'")
        .expect("init: scenario no-such-thing finished with code 2")
        .expect_clean_poweroff();
}
