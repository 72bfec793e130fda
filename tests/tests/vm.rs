//! QEMU scenarios for virtual machines: the tiny test guests (tests/guests) and Debian's arm64
//! Linux (scripts/mkguest.sh) run under Keel through the shell's `vm` command, as a user would.
//! Each guest prints `guest: <scenario>: PASS` only when its own checks held; the tests look for
//! that line, the monitor's exit report, and a Keel that still answers afterwards.

use keel_tests::{Boot, number_before, output_of};

/// `vm run` for the tiny guest with `scenario`, waiting for it.
fn tiny(scenario: &str, vcpus: u32) -> String {
    format!("vm run {scenario} --kernel /guest/test.Image --append guest={scenario} --vcpus {vcpus} --wait\n")
}

#[test]
fn tiny_guests_pass_their_checks_one_after_another() {
    let mut input = String::new();
    for (s, vcpus) in [("hvc", 1), ("mmio", 1), ("abort", 1), ("timer", 1), ("wfi", 1), ("smp", 4), ("sgi", 2)] {
        input.push_str(&tiny(s, vcpus));
    }
    input.push_str("vm list\npoweroff\n");
    let run = Boot::scenario("").input(&input).timeout(300).run();
    run.expect("guest: hvc: Keel vendor test call 0xc6000001(0x1234) = 0x1235")
        .expect("guest: hvc: PASS")
        .expect("guest: mmio: PASS")
        .expect("guest: abort: PASS")
        .expect("guest: timer: PASS")
        .expect("guest: wfi: PASS")
        .expect("guest: cpu 3 up")
        .expect("guest: smp: PASS")
        .expect("guest: sgi: PASS")
        .expect("vm 7 exited: system-off")
        .expect("7    sgi                  2      256  exited: system-off")
        .expect_absent("guest: panic")
        .expect_clean_poweroff();
}

#[test]
fn a_hostile_guest_and_a_crashed_guest_leave_keel_healthy() {
    let input = format!(
        "vm run crash --kernel /guest/test.Image --append guest=crash\n{}vm stat 2\nvm stop 1\n{}vm list\npoweroff\n",
        tiny("hostile", 2),
        tiny("hvc", 1)
    );
    let run = Boot::scenario("").input(&input).timeout(300).run();
    run.expect("vm 1 started (crash, 1 vcpus, 256 MiB)")
        .expect("guest: hostile: PASS after 100000 operations")
        .expect("vm 2 exited: system-off")
        .expect("vm 1: stopping")
        .expect("guest: hvc: PASS")
        .expect("vm 3 exited: system-off")
        .expect("1    crash                1      256  stopped")
        .expect_clean_poweroff();
    // The hostile guest's exits were counted and the injected faults show.
    let undef = run.lines_starting("undef-injected").first().map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0));
    if !undef.is_some_and(|n| n > 1000) {
        run.fail("vm stat shows no injected UNDEFINED exceptions for the hostile guest");
    }
}

/// `make fuzz` (scripts/fuzz.sh --hostile N): the hostile guest for KEEL_HOSTILE_OPS operations
/// (1,000,000 there): random MMIO to every region, HVC/SMC numbers, system-register accesses and
/// stage-2 faults; Keel stays healthy, counts the exits, and answers afterwards.
#[test]
#[ignore = "fuzz scale: scripts/fuzz.sh runs it"]
fn a_hostile_guest_at_fuzz_scale_leaves_keel_healthy() {
    let ops: u64 = std::env::var("KEEL_HOSTILE_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let start = format!("vm run hostile --kernel /guest/test.Image --append \"guest=hostile guest.ops={ops}\" --vcpus 2 --wait");
    // About 10 us an operation under TCG on a loaded machine. Prompt by prompt: the echo of
    // `echo keel   still   runs` is not the line checked.
    let run = Boot::scenario("")
        .commands(&[&start, "vm stat 1", "echo keel   still   runs", "poweroff"])
        .timeout(300 + ops / 10_000)
        .run();
    run.expect(&format!("guest: hostile: {ops} operations from seed"))
        .expect(&format!("guest: hostile: PASS after {ops} operations"))
        .expect("vm 1 exited: system-off")
        .expect("keel still runs")
        .expect_absent("PANIC")
        .expect_clean_poweroff();
    let undef = run.lines_starting("undef-injected").first().map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0));
    if !undef.is_some_and(|n| n > ops / 100) {
        run.fail("vm stat shows too few injected UNDEFINED exceptions for the hostile guest");
    }
}

/// A guest that single-steps through exits, and leaves every breakpoint and watchpoint armed on
/// host addresses (all ELs) with MDSCR_EL1.SS/KDE/MDE set while it exits to the monitor, to
/// Keel and to WFI 400 times, must not reach the host: before, its step state stayed live and
/// killed the monitor and every service with "software step from a lower EL". A second VM runs
/// beside it, a third after it, and the shell still works.
#[test]
fn a_guest_debugging_itself_keeps_its_debug_state_away_from_the_host() {
    let run = Boot::scenario("")
        .commands(&[
            "vm run timer --kernel /guest/test.Image --append guest=timer",
            "vm run debug --kernel /guest/test.Image --append guest=debug --vcpus 2 --wait",
            "vm run timer --kernel /guest/test.Image --append guest=timer --wait",
            "echo keel   still   runs",
            "poweroff",
        ])
        .timeout(300)
        .run();
    run.expect("guest: debug: 6 breakpoints each fired once")
        .expect("guest: debug: software step: 7 steps in order")
        .expect("guest: debug: 100 rounds of MMIO, hvc, WFI and stage-2-fault exits")
        .expect("guest: debug: PASS")
        .expect("vm 2 exited: system-off")
        .expect("guest: timer: PASS")
        .expect("vm 3 exited: system-off")
        .expect("keel still runs")
        .expect_absent("software step from")
        .expect_absent("breakpoint from")
        .expect_absent("watchpoint from")
        .expect_absent("restarting it")
        .expect_absent("PANIC")
        .expect_clean_poweroff();
}

/// The guest's EL1 virtual and physical timers as the Arm ARM says (tests/guests timers.rs:
/// TVAL, ISTATUS, level-sensitive interrupts that drop when the timer is masked, switched off
/// or moved on, WFI wake-ups, counter offsets), with another VM's timer busy beside it. Before,
/// the physical timer was UNDEFINED to guests and a timer switched off while its interrupt was
/// pending still delivered it.
#[test]
fn guest_timers_behave_as_the_architecture_says() {
    let run = Boot::scenario("")
        .commands(&[
            "vm run timer --kernel /guest/test.Image --append guest=timer",
            "vm run timers --kernel /guest/test.Image --append guest=timers --wait",
            "echo keel   still   runs",
            "poweroff",
        ])
        .timeout(300)
        .run();
    run.expect("guest: timers: virtual: switched off while pending: never delivered: ok")
        .expect("guest: timers: physical: pending exactly while enabled, unmasked and met: ok")
        .expect("guest: timers: PASS")
        .expect("vm 2 exited: system-off")
        .expect("keel still runs")
        .expect_absent("FAILED")
        .expect_absent("PANIC")
        .expect_clean_poweroff();
}

/// The guest's own PMUv3 (tests/guests pmu.rs: counters, event types, filtering, overflow at
/// 32 and 64 bits, the overflow interrupt), while a hostile guest beside it writes random
/// values to its own PMU registers among every other system register: nothing of one VM's PMU
/// reaches the other. Before, the PMU was hidden and its registers UNDEFINED.
#[test]
fn a_guest_has_its_own_pmu_beside_a_hostile_one() {
    let run = Boot::scenario("")
        .commands(&[
            "vm run hostile --kernel /guest/test.Image --append \"guest=hostile guest.ops=300000\" --vcpus 2",
            "vm run pmu --kernel /guest/test.Image --append guest=pmu --wait",
            "echo keel   still   runs",
            "poweroff",
        ])
        .timeout(300)
        .run();
    run.expect("guest: pmu: every counter, event type and filter reads back what was written: ok")
        .expect("guest: pmu: an overflow interrupt is taken once and not after the flag is cleared: ok")
        .expect("guest: pmu: PASS")
        .expect("vm 2 exited: system-off")
        .expect("keel still runs")
        .expect_absent("FAILED")
        .expect_absent("PANIC")
        .expect_absent("restarting it")
        .expect_clean_poweroff();
}

/// SVE is the guest's own (tests/guests sve.rs): Keel's 512-bit limit on the vector length,
/// registers that read as zero until written, and every Z, P and FFR register intact across
/// hvc, MMIO and WFI exits, in two VMs at once, each with its own random pattern. Before, SVE was
/// hidden and UNDEFINED.
#[test]
fn two_guests_each_keep_their_own_sve_registers() {
    let run = Boot::scenario("")
        .commands(&[
            "vm run sve --kernel /guest/test.Image --append guest=sve",
            "vm run sve --kernel /guest/test.Image --append guest=sve --wait",
        ])
        // Both VMs' ends (the first one's may come before or after the second's), then the
        // first one's console, typed at a prompt: typed while the second streams its output,
        // the console's echo would land inside one of its lines.
        .then_next("vm 2 exited", |_| String::new())
        .then("vm 1 (sve) exited", |_| "echo mark   one\n".to_string())
        .then_next("mark one", |_| String::new())
        .commands(&["vm console 1", "echo keel   still   runs", "poweroff"])
        .timeout(300)
        .run();
    let passes = run.log.lines().filter(|l| l.starts_with("guest: sve: PASS (512 bit vectors)")).count();
    if passes != 2 {
        run.fail(&format!("want both VMs' 'guest: sve: PASS (512 bit vectors)', got {passes}"));
    }
    run.expect("guest: sve: every z, p and ffr register intact")
        .expect("vm 2 exited: system-off")
        .expect("keel still runs")
        .expect_absent("FAIL")
        .expect_absent("PANIC")
        .expect_clean_poweroff();
}

#[test]
fn debian_linux_boots_with_two_vcpus_and_powers_off() {
    let run = Boot::scenario("")
        .commands(&["vm run linux-check --wait", "echo keel   still   runs", "poweroff"])
        .timeout(600)
        .run();
    run.expect("GICv3: CPU1: found redistributor 1")
        .expect("smp: Brought up 1 node, 2 CPUs")
        .expect("guest: cpus online: 2")
        .expect("guest: gic: GICv3")
        .expect("guest: arch_timer counting: yes")
        .expect("guest: checks passed")
        .expect("vm 1 exited: system-off")
        .expect("keel still runs")
        .expect_clean_poweroff();
}

/// `perf stat -e cycles,instructions` in the Debian guest (linux-perf-check: Debian's perf in the
/// initramfs, scripts/mkguest.sh) under icount: the instructions the guest's virtual PMU counted
/// for a CPU-bound shell loop are within 10% of the instructions icount says the whole machine
/// ran meanwhile (perf's elapsed nanoseconds; 1 ns = 1 instruction), and the cycle counter counts.
/// Without a working PMU, perf prints `<not supported>` and the guest a FAILED line.
#[test]
fn perf_stat_in_the_debian_guest_counts_what_icount_counts() {
    let run = Boot::scenario("").icount().commands(&["vm run linux-perf-check --wait", "poweroff"]).timeout(900).run();
    run.expect("hw perfevents: enabled with armv8_pmuv3").expect_absent("guest: perf: FAILED").expect("vm 1 exited: system-off");
    let line = run.lines_starting("guest: perf: ").first().copied().unwrap_or("").to_string();
    // "guest: perf: 20000 loops: instructions I cycles C elapsed-ns E"
    let (insns, cycles, ns) = (
        number_before(&line, "cycles").unwrap_or(0),
        number_before(&line, "elapsed-ns").unwrap_or(0),
        line.rsplit(' ').next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(0),
    );
    if insns < 100_000_000 || ns == 0 {
        run.fail(&format!("no plausible perf stat figures in '{line}' (instructions {insns}, elapsed {ns} ns)"));
    }
    let ratio = insns as f64 / ns as f64;
    if !(0.9..=1.1).contains(&ratio) {
        run.fail(&format!("perf counted {insns} instructions over {ns} ns of icount time: ratio {ratio:.3}, not within 10% of 1"));
    }
    if cycles == 0 {
        run.fail(&format!("perf counted no cycles: '{line}'"));
    }
    run.expect_clean_poweroff();
}

#[test]
fn two_linux_vms_and_four_tiny_guests_run_at_once() {
    let mut boot = Boot::scenario("")
        .input(concat!(
            "vm run linux-check\n",
            "vm run linux-check\n",
            "vm run hvc --kernel /guest/test.Image --append guest=hvc\n",
            "vm run timer --kernel /guest/test.Image --append guest=timer\n",
            "vm run sgi --kernel /guest/test.Image --append guest=sgi --vcpus 2\n",
            "vm run smp --kernel /guest/test.Image --append guest=smp --vcpus 3\n",
        ))
        .timeout(900);
    // Power off once all six have stopped, whatever their order.
    for (id, name) in [(3, "hvc"), (4, "timer"), (5, "sgi"), (6, "smp"), (1, "linux-check")] {
        boot = boot.then(&format!("vm {id} ({name}) exited: system-off"), |_| String::new());
    }
    // Then commands at a prompt, one by one (typed ahead, their echo could split an output
    // line); the mark's output line says the shell is at a prompt again.
    let boot = boot
        .then("vm 2 (linux-check) exited: system-off", |_| "echo mark   two\n".into())
        .then_next("mark two", |_| String::new())
        .commands(&["vm list", "vm console 2", "poweroff"]);
    let run = boot.run();
    run.expect("vm 1 (linux-check) exited: system-off")
        .expect("vm 2 (linux-check) exited: system-off")
        .expect("vm 3 (hvc) exited: system-off")
        .expect("vm 4 (timer) exited: system-off")
        .expect("vm 5 (sgi) exited: system-off")
        .expect("vm 6 (smp) exited: system-off")
        // VM 2's own console log, shown by `vm console`.
        .expect("guest: checks passed")
        .expect_clean_poweroff();
}

#[test]
fn attach_gives_a_busybox_shell_detach_and_reattach() {
    let run = Boot::scenario("")
        .input("vm run linux --attach\n")
        .then("linux:/# ", |_| "echo sum=$((40+2))\n".into())
        // Ctrl-C reaches the guest's foreground job: the shell has a controlling terminal.
        // (Without it, sleep would outlast the test's timeout.)
        // The mark comes from a background job a second after the foreground `sleep 1000` began,
        // so the Ctrl-C that follows it finds the sleep running.
        .then("sum=42", |_| "(sleep 1; echo mark-$((2+3))) & sleep 1000\n".into())
        .then("mark-5", |_| "\x03".into())
        .then("^C", |_| "echo after=$((6*7))\n".into())
        .then("after=42", |_| "~.\n".into())
        .then_next("[detached from vm 1]", |_| String::new())
        .commands(&["vm list", "vm console 1"])
        .then_next("[attached to vm 1", |_| "poweroff -f\n".into())
        .then("vm 1 (linux) exited: system-off", |_| "\n".into())
        .then("vm 1 exited: system-off", |_| "poweroff\n".into())
        .timeout(600)
        .run();
    run.expect("[vm 1 started and attached")
        .expect("sum=42")
        .expect("after=42")
        .expect("[detached from vm 1]")
        .expect("1    linux                2      256  running")
        .expect("vm 1 exited: system-off")
        .expect_clean_poweroff();
}

#[test]
fn wait_returns_on_ctrl_c_or_timeout_and_stopped_vms_can_be_removed() {
    const CRASH: &str = "--kernel /guest/test.Image --append guest=crash";
    const LOOPING: &str = "this guest now loops in exception entry";
    let run = Boot::scenario("")
        .input(&format!("vm run spin {CRASH} --wait\n"))
        // The guest never stops: Ctrl-C gives the prompt back and leaves it running.
        .then(LOOPING, |_| "\x03".into())
        // Then commands at a prompt, one by one (typed ahead, their echo could split an output
        // line), from the end of the line Ctrl-C makes the shell print.
        .then_next("vm stop 1 stops it]", |_| String::new())
        .commands(&["vm list", "vm rm 1", "vm stop 1", "vm stop 1", &format!("vm run spin2 {CRASH} --timeout 2")])
        .commands(&["vm list", "vm rm 1", "vm rm 2", "vm rm 9", "vm list", "poweroff"])
        .timeout(300)
        .run();
    run.expect("[vm 1 keeps running in the background: vm console 1 shows it, vm stop 1 stops it]")
        .expect("1    spin                 1      256  running")
        .expect("vm rm: vm 1 is running (vm stop 1 first)")
        .expect("vm 1: stopping")
        .expect("vm stop: vm 1 is not running (stopped)")
        .expect("vm 2 stopped")
        .expect("2    spin2                1      256  stopped")
        .expect("vm 1 removed")
        .expect("vm 2 removed")
        .expect("vm rm: no VM 9")
        .expect_clean_poweroff();
    // After both removals the last `vm list` is its header alone.
    let tail: Vec<&str> = run.log.lines().skip_while(|l| !l.contains("vm rm: no VM 9")).collect();
    if tail.iter().any(|l| l.starts_with("1    spin") || l.starts_with("2    spin2")) {
        run.fail("a removed VM is still listed");
    }
}

/// `vm stop` on a VM that already ended by itself changes nothing and says how it ended (it
/// does not turn "exited" into "stopped"); `vm rm` then takes it off the list.
#[test]
fn stopping_a_vm_that_exited_by_itself_shows_its_state_and_rm_removes_it() {
    let run = Boot::scenario("")
        .commands(&[
            "vm run hvc --kernel /guest/test.Image --append guest=hvc --wait",
            "vm stop 1",
            "vm list",
            "vm rm 1",
            "vm list",
            "poweroff",
        ])
        .timeout(300)
        .run();
    run.expect("guest: hvc: PASS")
        .expect("vm 1 exited: system-off")
        .expect("vm stop: vm 1 is not running (exited: system-off)")
        .expect("1    hvc                  1      256  exited: system-off")
        .expect("vm 1 removed")
        .expect_absent("vm 1: stopping")
        .expect_absent("256  stopped")
        .expect_clean_poweroff();
    // In order: the stop refused, the list still showing the exit, the removal, and a last
    // `vm list` that is its header alone.
    let lines: Vec<&str> = run.log.lines().collect();
    let at = |from: usize, needle: &str| lines[from..].iter().position(|l| l.contains(needle)).map(|i| from + i);
    let Some(refused) = at(0, "vm stop: vm 1 is not running") else { run.fail("no refused stop") };
    if at(refused, "1    hvc                  1      256  exited: system-off").is_none() {
        run.fail("vm list after vm stop no longer shows vm 1 as exited: system-off");
    }
    let Some(removed) = at(refused, "vm 1 removed") else { run.fail("vm rm 1 did not follow the stop") };
    let Some(header) = at(removed, "id   name") else { run.fail("no vm list after vm rm 1") };
    if lines[header..].iter().any(|l| l.starts_with("1    hvc")) {
        run.fail("vm list still shows vm 1 after vm rm 1");
    }
}

/// A guest whose RAM Keel cannot back crashes, as the monitor defines it: the stage-2 fault has
/// no frame to map, the vCPU leaves with an abort exit, and `vm list` shows `crashed: vcpu N:
/// unresolvable abort ...`. Linux given 1 GiB on a 512 MiB machine fills its /tmp until that
/// happens. The VM's memory comes back: another guest runs afterwards and Keel powers off.
#[test]
fn a_guest_keel_runs_out_of_memory_for_is_listed_as_crashed() {
    let run = Boot::scenario("")
        .mem("512M")
        .input("vm run linux --mem 1G --attach\n")
        .then("linux:/# ", |_| "dd if=/dev/zero of=/tmp/fill bs=1M count=1000\n".into())
        .then("vm 1 (linux) crashed: ", |_| "\n".into())
        .commands(&["vm list", "vm run hvc --kernel /guest/test.Image --append guest=hvc --wait", "poweroff"])
        .timeout(600)
        .run();
    run.expect("vm 1 (linux) crashed: vcpu ")
        .expect("1    linux                2     1024  crashed: vcpu ")
        .expect("guest: hvc: PASS")
        .expect("vm 2 exited: system-off")
        .expect_absent("restarting it")
        .expect_clean_poweroff();
    let listed = run.log.lines().find(|l| l.starts_with("1    linux ")).unwrap_or_default();
    if !(listed.contains(": unresolvable abort at IPA 0x") && listed.ends_with("(out of memory)")) {
        run.fail(&format!("vm list does not give the crash's reason: {listed:?}"));
    }
}

/// The first line the shell printed after each time `command` was typed (a `cgroup cat`'s value).
fn answers(log: &str, command: &str) -> Vec<String> {
    (0..).map_while(|n| output_of(log, command, n)).map(|t| t.trim_start_matches(['\r', '\n']).lines().next().unwrap_or("").trim().to_string()).collect()
}

/// `vm run --cgroup`: everything a VM uses is charged to its group — its guest RAM (the kernel
/// image written into it, more than 500 KiB), its stage-2 tables, its vCPU thread (count,
/// record and run time: the crash guest spins in exception entry), its device backend — and
/// given back when it stops. A group whose `memory.max` cannot hold the guest's RAM refuses
/// the start. `ps` shows the backend in the group, `cgroup.procs` lists it.
#[test]
fn a_vm_in_a_cgroup_is_charged_its_ram_threads_cpu_and_backends_and_gives_them_back() {
    let run = Boot::scenario("")
        .commands(&[
            "cgroup mkdir /vms",
            "cgroup set /vms memory.max 64M",
            "vm run spin --kernel /guest/test.Image --append guest=crash --cgroup /vms --rng",
            "vm run spin --kernel /guest/test.Image --append guest=crash --cgroup /nosuch",
            "cgroup set /vms memory.max 300M",
            "vm run spin --kernel /guest/test.Image --append guest=crash --cgroup /vms --rng",
            "cgroup cat /vms pids.current",
            "cgroup cat /vms threads.current",
            "cgroup cat /vms memory.current",
            "cgroup cat /vms cgroup.procs",
            "ps",
            "vm list",
            "cgroup cat /vms cpu.stat",
            "vm stop 1",
        ])
        .commands_after(
            "vm 1 (spin) stopped",
            &["cgroup cat /vms memory.current", "cgroup cat /vms threads.current", "cgroup cat /vms pids.current", "cgroup rmdir /vms", "cgroup ls /", "poweroff"],
        )
        .timeout(300)
        .run();
    run.expect("vm run: --cgroup /vms: guest RAM (256 MiB) does not fit: the group has room for 64 MiB more (its memory.max or a parent's)")
        .expect("vm run: --cgroup /nosuch: no such group (cgroup mkdir /nosuch makes it)")
        .expect("vm 1 started (spin, 1 vcpus, 256 MiB, cgroup /vms)")
        .expect("  (cgroup /vms)")
        .expect_absent("vm 2 started")
        .expect_clean_poweroff();
    let num = |s: &str| s.parse::<u64>().unwrap_or_else(|_| run.fail(&format!("{s:?} is not a number")));
    let pids = answers(&run.log, "cgroup cat /vms pids.current");
    let threads = answers(&run.log, "cgroup cat /vms threads.current");
    let memory = answers(&run.log, "cgroup cat /vms memory.current");
    if pids.len() != 2 || threads.len() != 2 || memory.len() != 2 {
        run.fail("each cgroup cat should have been answered twice");
    }
    if num(&pids[0]) != 1 || num(&threads[0]) < 2 {
        run.fail("while it runs, the group should hold the VM's backend (1 process) and its vCPU thread besides the backend's");
    }
    if num(&memory[0]) < 519_000 {
        run.fail("the guest RAM the kernel image was written into should be charged to the group");
    }
    if (num(&pids[1]), num(&threads[1]), num(&memory[1])) != (0, 0, 0) {
        run.fail("a stopped VM should give its group everything back");
    }
    let procs = answers(&run.log, "cgroup cat /vms cgroup.procs");
    let backend = run.log.lines().find(|l| l.contains("vdev-rng") && l.trim_end().ends_with("/vms"));
    match (procs.first(), backend) {
        (Some(pid), Some(line)) if line.split_whitespace().next() == Some(pid.as_str()) => {}
        _ => run.fail("ps should show the VM's backend in /vms, with the pid cgroup.procs lists"),
    }
    let usage = run.log.lines().find_map(|l| l.strip_prefix("usage_usec ")).map(num).unwrap_or(0);
    if usage == 0 {
        run.fail("the vCPU thread's run time should be charged to the group");
    }
    let after_ls = run.log.split("keel> cgroup ls /").nth(1).and_then(|t| t.split("keel> ").next()).unwrap_or("vms/");
    if answers(&run.log, "cgroup rmdir /vms").first().is_none_or(|l| !l.is_empty()) || after_ls.contains("vms/") {
        run.fail("the emptied group should be removed by rmdir, with nothing to say");
    }
}
