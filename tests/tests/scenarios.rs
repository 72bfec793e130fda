//! QEMU scenarios of the microkernel run by the user-space test program `/bin/ktest` (started by
//! init with `scenario=<name>`; init powers off when it exits). Each prints
//! `ktest: <name>: ok (...)` or `ktest: <name>: FAILED: ...` lines.

use keel_tests::{Boot, Run};

// The benchmarks run in tests/tests/bench.rs (scripts/bench.py --quick).

fn scenario(name: &str, timeout_secs: u64) -> Run {
    let run = Boot::scenario(name).timeout(timeout_secs).run();
    run.expect_absent(&format!("ktest: {name}: FAILED"))
        .expect(&format!("ktest: {name}: ok ("))
        .expect(&format!("init: scenario {name} finished with code 0"))
        .expect_clean_poweroff();
    run
}

#[test]
fn every_syscall_with_bad_input_returns_its_documented_error() {
    // Every number but process_exit (which ends the process) is made, counted by keel_rt::sys::tally.
    scenario("syscalls", 300).expect("checks; 57 of 58 call numbers made (process_exit ends it)");
}

#[test]
fn ipc_on_four_cpus_with_every_word_checked_and_a_dead_server_failing_calls() {
    let run = scenario("ipc", 900);
    run.expect("400000 calls from 4 CPUs verified").expect("held and later calls to the killed server: PeerDied");
}

#[test]
fn capabilities_travel_in_calls_and_replies_only_with_grant() {
    scenario("captransfer", 300).expect("no-GRANT cap refused");
}

#[test]
fn crashing_programs_are_killed_and_the_system_keeps_running() {
    scenario("crash", 300).expect("exit codes: crash-null -11, crash-undef -11, crash-stack -11; system still running");
}

#[test]
fn spawning_and_killing_a_thousand_processes_leaks_no_memory() {
    let run = scenario("spawnkill", 600);
    let line = run.lines_starting("ktest: spawnkill: ok").first().copied().unwrap_or("").to_string();
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .filter_map(|w| w.parse().ok())
        .collect();
    // "1000 processes ...; kernel-held frames before B, after A"
    match numbers.as_slice() {
        [1000, before, after] if before == after && *before > 0 => {}
        _ => run.fail(&format!("want 1000 processes and equal kernel-held frames before/after, got {line:?}")),
    }
}

/// 100 VM create/run/destroy cycles and 1,000 process spawn/exit cycles (`make fuzz` runs ten
/// times as many: scenario `leaks:1000`).
#[test]
fn vm_and_process_cycles_leave_the_kernel_census_where_it_started() {
    scenario("leaks", 600)
        .expect("ktest: leaks: ok: 100 VM create/run/destroy cycles: every object count and the kernel's own frames equal, heap within a page")
        .expect("ktest: leaks: ok: 1000 process spawn/exit cycles: every object count and the kernel's own frames equal, heap within a page")
        .expect("ktest: leaks: ok (100 VM cycles, 1000 process cycles; census unchanged)");
}

#[test]
fn init_restarts_a_killed_service() {
    scenario("restart", 300);
}

#[test]
fn twenty_thousand_random_syscalls_leave_the_kernel_census_as_it_was() {
    let run = scenario("sysfuzz", 300);
    run.expect("ktest: sysfuzz-child: 20000 calls from seed").expect("census before and after match");
    // IPC with caps in both directions is part of it: calls answered by the child's own server.
    let line = run.lines_starting("ktest: sysfuzz-child: 20000 calls").first().copied().unwrap_or("").to_string();
    let answered = keel_tests::number_before(&line, "IPC calls answered").unwrap_or(0);
    let caps = keel_tests::number_before(&line, "caps").unwrap_or(0);
    if answered < 100 || caps < 100 {
        run.fail(&format!("the fuzzer made {answered} IPC calls that were answered and got {caps} caps back (want 100 or more of each)"));
    }
}

#[test]
fn an_unprivileged_process_cannot_kill_power_off_or_take_the_console() {
    let run = scenario("access", 300);
    run.expect("ktest: access-child: ok (refused: kill of a sibling and of a service, power-off, console control, foreground)")
        .expect("ktest: no-privileges: ok")
        .expect("ktest: ns-child: ok (pid 1 sees its own namespace only)");
}

#[test]
fn quotas_stop_a_spawn_loop_at_its_limit_and_oom_kill_a_hog_in_its_group_only() {
    scenario("quota", 600);
}

#[test]
fn cpu_quotas_hold_a_spinner_to_its_bandwidth_and_share_a_cpu_by_weight() {
    // Under icount: time is instructions, so the shares do not move with the host's load.
    let name = "cpuquota";
    let run = keel_tests::Boot::scenario(name).icount().timeout(900).run();
    run.expect_absent(&format!("ktest: {name}: FAILED"))
        .expect(&format!("ktest: {name}: ok ("))
        .expect(&format!("init: scenario {name} finished with code 0"))
        .expect_clean_poweroff();
}
