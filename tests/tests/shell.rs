//! QEMU scenarios for the user-space system: init, namesrv, console and the shell, driven through
//! the serial console as a user would (input piped in from the start).
//!
//! With input typed ahead, the console's echo of the next command may land between the shell's
//! prompt and a command's output (as on any terminal), so checks look for a command's output
//! alone — one write, never split — made distinct from the echo of what was typed.

use keel_tests::{Boot, output_of};

#[test]
fn piped_ps_lists_every_process_and_poweroff_exits_cleanly() {
    let run = Boot::scenario("").input("ps\npoweroff\n").run();
    run.expect("console: ready (uart 0x9000000 irq 33)")
        .expect("  PID NAME             STATE           MEM  CGROUP")
        .expect("process 3 asked to power off")
        .expect_clean_poweroff();
    for name in ["init", "namesrv", "console", "shell"] {
        let found = run.log.lines().filter_map(keel_tests::ps_row).any(|r| r.name == name && r.state == "running" && r.cgroup == Some("/"));
        if !found {
            run.fail(&format!("ps has no running {name} line with a pid, its memory and its cgroup (/)"));
        }
    }
}

#[test]
fn shell_commands_and_their_errors() {
    let run = Boot::scenario("")
        .input("help\necho hello   keel\nmem\nuptime\nbogus\nkill\nkill abc\nkill 99999\nrun\nrun nosuch\npoweroff\n")
        .run();
    run.expect(&format!("{:<28} list the commands", "help"))
        .expect(&format!("{:<28} power the machine off", "poweroff"))
        .expect(&format!("{:<28} print files", "cat <file...>"))
        .expect("hello keel") // the echo shows "hello   keel"
        .expect("total    ")
        .expect("free     ")
        .expect("kernel objects:")
        .expect("bogus: unknown command (try help)")
        .expect("kill: usage: kill <pid>")
        .expect("kill: abc is not a pid")
        .expect("kill: no process 99999")
        .expect("run: usage: run [--cgroup PATH] [--ns pid] <program> [args...]")
        .expect("run: nosuch: no such program")
        .expect_clean_poweroff();
    // The census counts the running system: init, namesrv, console, fs, shell at least.
    let processes = run.log.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix("processes")?;
        rest.split_whitespace().next()?.parse::<u64>().ok()
    });
    if !processes.is_some_and(|n| (5..100).contains(&n)) {
        run.fail(&format!("mem: want a processes count of 5..100 under kernel objects, got {processes:?}"));
    }
    if !run_has_uptime(&run) {
        run.fail("no `up <seconds> s` line from uptime");
    }
}

/// Whether some line holds `up <n>.<nn> s` (uptime's output).
fn run_has_uptime(run: &keel_tests::Run) -> bool {
    run.log.lines().any(|l| {
        l.match_indices("up ").any(|(i, _)| {
            let rest = &l[i + 3..];
            let num: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            num.contains('.') && rest[num.len()..].starts_with(" s")
        })
    })
}

#[test]
fn a_crashing_program_is_killed_and_the_system_keeps_running() {
    Boot::scenario("")
        .input("run ktest crash-null\nrun ktest crash-undef\nrun ktest crash-stack\necho still   here\npoweroff\n")
        .run()
        .expect("(ktest): read at 0x0: nothing mapped there (data abort from a lower EL, translation fault)")
        .expect("(ktest): undefined instruction (ESR 0x2000000)")
        .expect("(ktest): write at 0x3ffffbf")
        .expect("ktest crashed")
        .expect("still here") // the echo shows "still   here"
        .expect_clean_poweroff();
}

/// The pid of the running process named `name` in the last `ps` table of `log`. Only the first
/// three columns are needed: the log may end in the middle of the line.
fn pid_of(log: &str, name: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 3 && f[1] == name && f[2] == "running").then(|| f[0].parse().ok()).flatten()
    })
}

#[test]
fn killing_a_service_makes_init_restart_it_and_the_shell_reconnects() {
    let run = Boot::scenario("")
        .input("ps\n")
        .then("console          running", |log| format!("kill {}\n", pid_of(log, "console").unwrap_or(0)))
        .then("; restarting it in ", |_| "ps\npoweroff\n".to_string())
        .run();
    run.expect("exited with code -9; restarting it in 100 ms").expect_clean_poweroff();
    let readies = run.log.matches("console: ready (uart 0x9000000 irq 33)").count();
    if readies != 2 {
        run.fail(&format!("the console started {readies} times, want 2 (first boot and restart)"));
    }
    // The first ps comes before the restart's report (the echo of `kill` may be split by a prompt).
    let first = run.log.split("exited with code -9").next().and_then(|head| pid_of(head, "console"));
    let last = pid_of(&run.log, "console");
    if first.is_none() || first == last {
        run.fail(&format!("the console's pid did not change across the restart ({first:?} -> {last:?})"));
    }
}

#[test]
fn a_line_over_the_console_limit_is_refused_whole_and_said_so() {
    // 2,000 bytes of `echo long-AAAA...`: cut at 1,024 it would still run, as a different command.
    let long = format!("echo long-{}", "A".repeat(1990));
    let run = Boot::scenario("").commands(&[&long, "echo after-$((0))-long", "poweroff"]).run();
    run.expect(&format!("shell: line too long ({} bytes; at most 1024): not run", long.len()))
        .expect_clean_poweroff();
    if run.log.lines().any(|l| l.starts_with("long-AAAA")) {
        run.fail("part of the long line was run");
    }
    // The next line is whole and runs: its output, not the console's echo of it.
    if !run.log.lines().any(|l| l.trim_end().ends_with("after-$((0))-long") && !l.contains("echo")) {
        run.fail("the line after the long one did not run");
    }
}

#[test]
fn cgroups_from_the_shell_limit_memory_and_processes_of_what_runs_in_them() {
    let run = Boot::scenario("")
        .commands(&[
            "cgroup mkdir /jobs",
            "cgroup set /jobs memory.max 8M",
            "cgroup cat /jobs memory.max",
            "run --cgroup /jobs ktest hog 32",
            "cgroup cat /jobs memory.events",
            "run --cgroup /jobs ktest hog 4",
            "echo hog   4 done",
            "cgroup set /jobs pids.max 0",
            "run --cgroup /jobs ktest exit",
            "cgroup cat /jobs pids.events",
            "cgroup set /jobs memory.max 12Q",
            "cgroup mkdir /jobs/a/b",
            "cgroup stat",
            "cgroup rmdir /jobs",
            "cgroup cat /jobs memory.max",
            // A fork bomb in a group of 50 processes: it starts exactly 49 more, is refused,
            // kills them and exits with the count; the group is empty again and the shell answers.
            "cgroup mkdir /bomb",
            "cgroup set /bomb pids.max 50",
            "run --cgroup /bomb ktest bomb",
            "cgroup cat /bomb pids.current",
            "echo still   answering",
            "poweroff",
        ])
        .run();
    run.expect("8388608")
        .expect("ktest was killed: out of memory")
        .expect("oom_kill 1")
        .expect("hog 4 done")
        .expect("run: ktest: cgroup /jobs has no room (over a quota limit)")
        .expect("cgroup: \"12Q\" is not a number or max")
        .expect("cgroup: /jobs/a: no such group")
        .expect("GROUP                     MEMORY")
        .expect("cgroup: /jobs: no such group")
        .expect("ktest exited with code 49")
        .expect("still answering")
        .expect_clean_poweroff();
    // What a command printed: the log from its echo to the next prompt.
    let output = |command: &str| -> String {
        let log = &run.log;
        let Some(at) = log.find(command) else { run.fail(&format!("{command:?} was never typed")) };
        let rest = &log[at + command.len()..];
        rest[..rest.find("keel> ").unwrap_or(rest.len())].to_string()
    };
    let hog = output("run --cgroup /jobs ktest hog 4");
    if hog.contains("was killed") || hog.contains("exited with") {
        run.fail(&format!("the 4 MiB hog did not run to its end under an 8 MiB limit: {hog:?}"));
    }
    let events = output("cgroup cat /jobs pids.events");
    if events.trim() != "max 1" {
        run.fail(&format!("pids.events after one refused spawn: {events:?}"));
    }
    let bombed = output("cgroup cat /bomb pids.current");
    if bombed.trim() != "0" {
        run.fail(&format!("pids.current of /bomb after the bomb: {bombed:?} (want 0)"));
    }
}

#[test]
fn a_running_service_moves_between_cgroups_with_its_counts() {
    // A process's pid, from ps.
    fn pid_of(log: &str, name: &str) -> String {
        keel_tests::ps_pid(log, name).map(|p| p.to_string()).unwrap_or_default()
    }
    let pid_of_netsw = |log: &str| pid_of(log, "netsw");
    let run = Boot::scenario("")
        .commands(&["cgroup mkdir /svc", "ps"])
        .command_from(move |log| format!("cgroup move /svc {}", pid_of_netsw(log)))
        .commands(&["cgroup cat /svc pids.current", "echo moved   in"])
        .command_from(move |log| format!("cgroup move / {}", pid_of_netsw(log)))
        .commands(&[
            "cgroup cat /svc pids.current",
            "echo moved   out",
        ])
        .command_from(|log| format!("cgroup move /svc {}", pid_of(log, "init")))
        .commands(&[
            "cgroup move /nosuch 5",
            "cgroup move /svc 99999",
            "cgroup move /svc x",
            "poweroff",
        ])
        .run();
    run.expect("moved in")
        .expect("moved out")
        .expect(": bad state")
        .expect("cgroup: /nosuch: no such group")
        .expect("cgroup: no process 99999")
        .expect("cgroup: x is not a pid")
        .expect_clean_poweroff();
    let output = |command: &str, nth: usize| -> String {
        let log = &run.log;
        let Some((at, _)) = log.match_indices(command).nth(nth) else { run.fail(&format!("{command:?} was never typed")) };
        let rest = &log[at + command.len()..];
        rest[..rest.find("keel> ").unwrap_or(rest.len())].trim().to_string()
    };
    let (inside, after) = (output("cgroup cat /svc pids.current", 0), output("cgroup cat /svc pids.current", 1));
    if inside != "1" || after != "0" {
        run.fail(&format!("pids.current of /svc with netsw in it and after: {inside:?}, {after:?} (want 1, 0)"));
    }
}


/// The lines of a listing, sorted (the shell's `ls` sorts, resmgr's `ls` does not).
fn listing(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    v.sort();
    v
}

#[test]
fn cgroup_files_in_sys_fs_cgroup_are_the_same_tree_as_the_cgroup_command() {
    const CG: &str = "/sys/fs/cgroup";
    let run = Boot::scenario("")
        .commands(&[
            "mount",
            "ls /sys/fs/cgroup",
            "mkdir /sys/fs/cgroup/jobs",
            "ls /sys/fs/cgroup",
            "cgroup ls /",
            "echo 20 > /sys/fs/cgroup/jobs/pids.max",
            "cat /sys/fs/cgroup/jobs/pids.max",
            "cgroup cat /jobs pids.max",
            "echo garbage > /sys/fs/cgroup/jobs/pids.max",
            "cat /sys/fs/cgroup/jobs/pids.max",
            "cat /sys/fs/cgroup/jobs/memory.current",
            // A group made by the command is a directory in the files, and holds its parent up.
            "cgroup mkdir /jobs/sub",
            "ls /sys/fs/cgroup/jobs",
            "rmdir /sys/fs/cgroup/jobs",
            "cgroup rmdir /jobs/sub",
            "rmdir /sys/fs/cgroup/jobs",
            "cgroup ls /",
            "ls /sys/fs/cgroup",
            "cat /sys/fs/cgroup/jobs/pids.max",
            "touch /sys/fs/cgroup/newfile",
            "poweroff",
        ])
        .run();
    run.expect("cgroup2 on /sys/fs/cgroup type cgroup2 (rw)")
        .expect("shell: /sys/fs/cgroup/jobs/pids.max: invalid argument")
        .expect("rmdir: /sys/fs/cgroup/jobs: device or resource busy")
        .expect("cat: /sys/fs/cgroup/jobs/pids.max: no such file or directory")
        .expect("touch: /sys/fs/cgroup/newfile: permission denied")
        .expect_clean_poweroff();
    let out = |command: &str, nth: usize| output_of(&run.log, command, nth).unwrap_or_else(|| run.fail(&format!("{command:?} (run {nth}) was never typed")));
    let before = listing(&out(&format!("ls {CG}"), 0));
    if !before.iter().any(|l| l == "memory.current") || !before.iter().any(|l| l == "cgroup.controllers") || before.iter().any(|l| l.ends_with('/')) {
        run.fail(&format!("ls {CG} at boot: want the root's files and no groups, got {before:?}"));
    }
    // One tree: the files list what resmgr lists, before and after.
    let (files, command) = (listing(&out(&format!("ls {CG}"), 1)), listing(&out("cgroup ls /", 0)));
    if files != command || !files.iter().any(|l| l == "jobs/") {
        run.fail(&format!("after mkdir: ls {CG} {files:?} and cgroup ls / {command:?} differ or lack jobs/"));
    }
    let (files, command) = (listing(&out(&format!("ls {CG}"), 2)), listing(&out("cgroup ls /", 1)));
    if files != command || files != before {
        run.fail(&format!("after rmdir: ls {CG} {files:?}, cgroup ls / {command:?}, at boot {before:?}"));
    }
    let max = |nth| out("cat /sys/fs/cgroup/jobs/pids.max", nth).trim().to_string();
    let command_max = out("cgroup cat /jobs pids.max", 0).trim().to_string();
    if max(0) != "20" || command_max != "20" || max(1) != "20" {
        run.fail(&format!("pids.max after echo 20: file {:?}, cgroup cat {command_max:?}; after echo garbage: {:?} (want 20 each)", max(0), max(1)));
    }
    let current = out("cat /sys/fs/cgroup/jobs/memory.current", 0);
    if current.trim().parse::<u64>().is_err() {
        run.fail(&format!("memory.current of an empty group is not a number: {current:?}"));
    }
    if !listing(&out("ls /sys/fs/cgroup/jobs", 0)).iter().any(|l| l == "sub/") {
        run.fail("a group made with `cgroup mkdir` is not a directory in the files");
    }
}

#[test]
fn cgroup_files_reach_a_restarted_resmgr() {
    fn pid_of_resmgr(log: &str) -> String {
        pid_of(log, "resmgr").map(|p| p.to_string()).unwrap_or_default()
    }
    let run = Boot::scenario("")
        // The shell uses resmgr before the restart too: its buffer is the old resmgr's.
        .commands(&["cgroup ls /", "mkdir /sys/fs/cgroup/before", "ps"])
        .command_from(|log| format!("kill {}", pid_of_resmgr(log)))
        .commands_after(
            "service resmgr",
            &[
                "ls /sys/fs/cgroup",
                "mkdir /sys/fs/cgroup/after",
                "echo 7 > /sys/fs/cgroup/after/pids.max",
                "cat /sys/fs/cgroup/after/pids.max",
                "cgroup ls /",
                "poweroff",
            ],
        )
        .run();
    run.expect("restarting it in").expect_absent("input/output error").expect_clean_poweroff();
    let out = |command: &str| output_of(&run.log, command, 0).unwrap_or_else(|| run.fail(&format!("{command:?} was never typed")));
    if out("cat /sys/fs/cgroup/after/pids.max").trim() != "7" {
        run.fail(&format!("pids.max of a group made after the restart: {:?} (want 7)", out("cat /sys/fs/cgroup/after/pids.max")));
    }
    let after = output_of(&run.log, "cgroup ls /", 1).unwrap_or_else(|| run.fail("cgroup ls / was not typed after the restart"));
    if !listing(&after).iter().any(|l| l == "after/") {
        run.fail("the group made through the files after the restart is not in resmgr's tree");
    }
}

/// A group's MEMORY column in the `nth` `cgroup stat` table of `log`.
fn stat_memory(log: &str, nth: usize, group: &str) -> Option<u64> {
    let table = output_of(log, "cgroup stat", nth)?;
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&group)).then(|| f.get(1)?.parse().ok()).flatten()
    })
}

/// "The client pays": two groups, one whose program writes a 4 MiB file through the file
/// service, one holding an idle service. The busy group is charged the file's memory (after
/// its program has exited, until the file is removed) and the CPU time the file service spent
/// on its calls; the idle group's memory and CPU do not move; the file service, moved into a
/// group of its own first, stays flat; the root counts the memory once.
#[test]
fn a_client_pays_for_the_memory_and_time_the_file_service_spends_on_it() {
    let run = Boot::scenario("")
        .commands(&["cgroup mkdir /services", "cgroup mkdir /busy", "cgroup mkdir /idle", "ps"])
        .command_from(|log| format!("cgroup move /services {}", pid_of(log, "fs").unwrap_or(0)))
        .command_from(|log| format!("cgroup move /idle {}", pid_of(log, "netsw").unwrap_or(0)))
        .commands(&[
            "cgroup stat",
            "run --cgroup /busy ktest fill /tmp/busy 4096",
            "cgroup stat",
            "cgroup cat /busy cpu.stat",
            "cgroup cat /idle cpu.stat",
            "rm /tmp/busy",
            "cgroup stat",
            "cgroup rmdir /busy",
            "cgroup ls /",
            "poweroff",
        ])
        .timeout(180)
        .run();
    run.expect("ktest: fill: wrote 4096 KiB to /tmp/busy").expect_absent("no process").expect_clean_poweroff();
    let mem = |nth: usize, group: &str| stat_memory(&run.log, nth, group).unwrap_or_else(|| run.fail(&format!("no {group} in cgroup stat {nth}")));
    const FILE: u64 = 4 << 20;
    let (busy, idle, services, root) = (mem(1, "/busy"), mem(1, "/idle"), mem(1, "/services"), mem(1, "/"));
    if !(FILE..FILE + (64 << 10)).contains(&busy) {
        run.fail(&format!("/busy should be charged the 4 MiB file its program left (and no more than 64 KiB besides): {busy}"));
    }
    if idle != mem(0, "/idle") {
        run.fail("/idle's memory moved while another group used the file service");
    }
    if services > mem(0, "/services") + (64 << 10) {
        run.fail(&format!("the file service's own group grew with its client's file: {} -> {services}", mem(0, "/services")));
    }
    if root > mem(0, "/") + FILE + (1 << 20) {
        run.fail("the root should count the file's memory once");
    }
    // (The exited program's kernel records may still be there until procmgr lets go of it.)
    if mem(2, "/busy") >= 64 << 10 {
        run.fail("removing the file should give /busy its memory back");
    }
    let usage = |nth_group: &str| {
        output_of(&run.log, &format!("cgroup cat {nth_group} cpu.stat"), 0)
            .and_then(|t| t.lines().find_map(|l| l.trim().strip_prefix("usage_usec ").and_then(|v| v.parse::<u64>().ok())))
            .unwrap_or_else(|| run.fail(&format!("no usage_usec for {nth_group}")))
    };
    let (busy_cpu, idle_cpu) = (usage("/busy"), usage("/idle"));
    if busy_cpu == 0 || idle_cpu * 10 > busy_cpu {
        run.fail(&format!("/busy should be charged its calls' time ({busy_cpu} us), /idle next to nothing ({idle_cpu} us)"));
    }
    if output_of(&run.log, "cgroup ls /", 0).is_none_or(|t| t.contains("busy/")) {
        run.fail("/busy should be removable once its file is gone");
    }
}

/// `echo PID > cgroup.procs` through the files moves a process, as `cgroup move` does; `ps` and
/// `cgroup.procs` then agree; a pid that names no process is ESRCH; writing it into the root's
/// `cgroup.procs` moves it back, and the emptied group can go.
#[test]
fn a_pid_written_to_cgroup_procs_moves_the_process() {
    let run = Boot::scenario("")
        .commands(&["mkdir /sys/fs/cgroup/jobs", "ps"])
        .command_from(|log| format!("echo {} > /sys/fs/cgroup/jobs/cgroup.procs", pid_of(log, "netsw").unwrap_or(0)))
        .commands(&["cat /sys/fs/cgroup/jobs/cgroup.procs", "ps", "echo 999999 > /sys/fs/cgroup/jobs/cgroup.procs"])
        .command_from(|log| format!("echo {} > /sys/fs/cgroup/cgroup.procs", pid_of(log, "netsw").unwrap_or(0)))
        .commands(&["cat /sys/fs/cgroup/jobs/cgroup.procs", "rmdir /sys/fs/cgroup/jobs", "ls /sys/fs/cgroup", "poweroff"])
        .run();
    run.expect("shell: /sys/fs/cgroup/jobs/cgroup.procs: no such process").expect_clean_poweroff();
    let netsw = pid_of(&run.log, "netsw").unwrap_or_else(|| run.fail("ps listed no netsw"));
    if output_of(&run.log, "cat /sys/fs/cgroup/jobs/cgroup.procs", 0).map(|t| t.trim().to_string()) != Some(netsw.to_string()) {
        run.fail("cgroup.procs should list the process written into it");
    }
    let in_jobs = run.log.lines().filter_map(keel_tests::ps_row).any(|r| r.name == "netsw" && r.cgroup == Some("/jobs"));
    if !in_jobs {
        run.fail("ps should show netsw in /jobs after the write");
    }
    if output_of(&run.log, "cat /sys/fs/cgroup/jobs/cgroup.procs", 1).is_none_or(|t| !t.trim().is_empty()) {
        run.fail("after the move back, /jobs should have no process");
    }
    if output_of(&run.log, "ls /sys/fs/cgroup", 0).is_none_or(|t| t.contains("jobs/")) {
        run.fail("the emptied group should have been removed");
    }
}

/// `run --ns pid PROGRAM` from the shell: the program is pid 1 of a new pid namespace (ktest's
/// `ns-child` checks that it sees only itself, that its child is pid 2 and that a pid outside
/// names nothing), and the shell refuses the namespaces Keel does not make.
#[test]
fn run_ns_pid_starts_a_program_as_pid_1_of_a_new_namespace() {
    let run = Boot::scenario("")
        .commands(&["run --ns pid ktest ns-child", "run ktest ns-child", "run --ns mount shell", "poweroff"])
        .timeout(120)
        .run();
    run.expect("ktest: ns-child: ok (pid 1 sees its own namespace only)")
        .expect("run: usage: run --ns pid: the only namespace Keel makes is pid")
        .expect_clean_poweroff();
    // Outside a new namespace the same program sees everything: its checks fail.
    if run.log.matches("ktest: ns-child: ok").count() != 1 || !run.log.contains("ktest: ns-child: FAILED") {
        run.fail("ns-child should pass in a new pid namespace and fail outside one");
    }
}
