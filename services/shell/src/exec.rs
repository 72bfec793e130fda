//! Running a decoded [`Command`] against a [`System`]: the operations the shell needs from the
//! rest of Keel (process manager, console, kernel), as a trait so the executor is tested on the
//! host against a fake. Output goes to a `String` the caller prints in one piece.

use crate::command::{COMMANDS, Command};
use crate::ps;
use alloc::string::String;
use core::fmt::Write;
use keel_rt::Error;
use keel_rt::abi::{EXIT_FAULT, EXIT_KILLED, EXIT_OOM};
use keel_rt::proto::console::FOREGROUND_STARTING;

/// Bytes per physical frame.
const FRAME_BYTES: u64 = keel_rt::abi::PAGE_SIZE;

/// What the shell does to the system.
pub trait System {
    /// A started program the shell can wait for.
    type Process;
    /// The process manager's PS payload.
    fn ps(&mut self) -> Result<alloc::vec::Vec<u8>, Error>;
    fn kill(&mut self, pid: u64) -> Result<(), Error>;
    /// Starts `path` with `args`, sharing our console, in cgroup `cgroup` (None: ours): (pid,
    /// process).
    fn spawn(&mut self, path: &str, args: &[String], cgroup: Option<&str>, new_pid_ns: bool) -> Result<(u64, Self::Process), Error>;
    /// Tells the console which program Ctrl-C kills (0 = none).
    fn set_foreground(&mut self, pid: u64) -> Result<(), Error>;
    /// Waits for the program to end; its exit code.
    fn wait(&mut self, process: &Self::Process) -> Result<i64, Error>;
    /// Lets go of a finished program.
    fn release(&mut self, process: Self::Process);
    /// The kernel's memory pools and object census.
    fn mem_info(&mut self) -> Result<keel_rt::sys::Census, Error>;
    /// (counter ticks since boot, ticks per second).
    fn clock(&mut self) -> (u64, u64);
    /// Returns only if the machine did not power off.
    fn power_off(&mut self) -> Result<(), Error>;
    /// Runs a `vm` command in the VM monitor; the text it prints.
    fn vm(&mut self, args: &[String]) -> Result<String, Error>;
    /// Runs a `net` command in the switch service; the text it prints.
    fn net(&mut self, args: &[String]) -> Result<String, Error>;
    /// Runs a `cgroup` command in resmgr: the text it prints, or the message of its failure.
    fn cgroup(&mut self, _args: &[String]) -> Result<String, String> {
        Err("the cgroup service is not available".into())
    }
    /// The file service.
    fn files(&mut self) -> &mut dyn crate::files::Files;
}

/// How a program ended, as the shell reports it (None: exit code 0, nothing to say).
pub fn exit_report(program: &str, code: i64) -> Option<String> {
    match code {
        0 => None,
        EXIT_KILLED => Some(alloc::format!("{program} was killed")),
        EXIT_OOM => Some(alloc::format!("{program} was killed: out of memory (its quota's or the machine's)")),
        EXIT_FAULT => Some(alloc::format!("{program} crashed")),
        n => Some(alloc::format!("{program} exited with code {n}")),
    }
}

/// `frames` as MiB with one decimal (rounded down).
fn mib(frames: u64) -> String {
    let tenths = (u128::from(frames) * u128::from(FRAME_BYTES) * 10 / (1 << 20)) as u64;
    alloc::format!("{}.{}", tenths / 10, tenths % 10)
}

/// Runs `cmd`, appending what it prints to `out`.
pub fn execute<S: System>(sys: &mut S, cmd: &Command, out: &mut String) {
    match cmd {
        Command::Empty => {}
        Command::Help => {
            for (usage, what) in COMMANDS.iter().chain(crate::files::COMMANDS) {
                let _ = writeln!(out, "{usage:<28} {what}");
            }
        }
        Command::Echo(words) => {
            let _ = writeln!(out, "{}", words.join(" "));
        }
        Command::Ps => match sys.ps() {
            Ok(payload) => {
                let (rows, bad) = ps::parse_ps(&payload);
                // Each process's cgroup, when the cgroup service is there to name the quotas.
                let groups = sys.cgroup(&[String::from("ids")]).ok().map(|t| ps::parse_group_ids(&t));
                out.push_str(&ps::format_table(&rows, groups.as_ref()));
                if bad > 0 {
                    let _ = writeln!(out, "ps: skipped {bad} malformed lines from the process manager");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "ps: {e}");
            }
        },
        Command::Kill(pid) => match sys.kill(*pid) {
            Ok(()) => {}
            Err(Error::NotFound) => {
                let _ = writeln!(out, "kill: no process {pid}");
            }
            // The process manager refuses to kill itself: it supervises everything else.
            Err(Error::BadState) => {
                let _ = writeln!(out, "kill: pid {pid} is init and cannot be killed");
            }
            Err(Error::NoRights) => {
                let _ = writeln!(out, "kill: process {pid}: not allowed (it is not yours to kill)");
            }
            Err(e) => {
                let _ = writeln!(out, "kill: process {pid}: {e}");
            }
        },
        Command::Run { program, path, args, cgroup, new_pid_ns } => run(sys, program, path, args, cgroup.as_deref(), *new_pid_ns, out),
        Command::Mem => match sys.mem_info() {
            Ok(c) => {
                let (total, free) = (c.frames_total, c.frames_free);
                let used = total.saturating_sub(free);
                for (what, frames) in [("total", total), ("used", used), ("free", free)] {
                    let _ = writeln!(out, "{what:<5} {:>9} MiB {frames:>9} frames", mib(frames));
                }
                let _ = writeln!(
                    out,
                    "used by processes {} frames ({} in memory objects, {} in page tables), by the kernel {}",
                    c.process_frames(),
                    c.pmo_frames,
                    c.table_frames,
                    c.kernel_frames()
                );
                let _ = writeln!(out, "kernel heap {} pages, {} free", c.heap_pages, c.heap_free_pages);
                let _ = writeln!(out, "kernel objects:");
                for row in c.objects().chunks(4) {
                    let mut line = String::new();
                    for (name, n) in row {
                        let _ = write!(line, "  {name:<13} {n:>6}");
                    }
                    let _ = writeln!(out, "{}", line.trim_end());
                }
            }
            Err(e) => {
                let _ = writeln!(out, "mem: {e}");
            }
        },
        Command::Uptime => {
            let (ticks, freq) = sys.clock();
            if freq == 0 {
                let _ = writeln!(out, "uptime: the counter frequency is unknown");
            } else {
                let hundredths = (u128::from(ticks) * 100 / u128::from(freq)) as u64;
                let _ = writeln!(out, "up {}.{:02} s", hundredths / 100, hundredths % 100);
            }
        }
        Command::PowerOff => {
            let e = sys.power_off().err().unwrap_or(Error::BadState);
            let _ = writeln!(out, "poweroff: {e}");
        }
        Command::File { name, args } => crate::files::run(sys.files(), name, args, out),
        Command::Redirect { cmd, path, append } => {
            let mut text = String::new();
            execute(sys, cmd, &mut text);
            if let Err(e) = crate::files::write_output(sys.files(), path, &text, *append) {
                let _ = writeln!(out, "shell: {path}: {}", e.message());
            }
        }
        Command::Cgroup(args) => match sys.cgroup(args) {
            Ok(text) => out.push_str(&text),
            Err(message) => {
                let _ = writeln!(out, "cgroup: {message}");
            }
        },
        Command::Net(args) => match sys.net(args) {
            Ok(text) => out.push_str(&text),
            Err(Error::NotFound) => {
                let _ = writeln!(out, "net: the switch service is not running");
            }
            Err(e) => {
                let _ = writeln!(out, "net: {e}");
            }
        },
        Command::Vm(args) => match sys.vm(args) {
            Ok(text) => out.push_str(&text),
            Err(Error::NotFound) => {
                let _ = writeln!(out, "vm: the VM monitor is not running");
            }
            Err(e) => {
                let _ = writeln!(out, "vm: {e}");
            }
        },
    }
}

fn run<S: System>(sys: &mut S, program: &str, path: &str, args: &[String], cgroup: Option<&str>, new_pid_ns: bool, out: &mut String) {
    // The console keeps a Ctrl-C typed while the program starts, for its pid.
    let _ = sys.set_foreground(FOREGROUND_STARTING);
    let (pid, process) = match sys.spawn(path, args, cgroup, new_pid_ns) {
        Ok(started) => started,
        Err(e) => {
            let _ = sys.set_foreground(0);
            if let (Some(group), Error::Limit | Error::NoMemory) = (cgroup, e) {
                let _ = writeln!(out, "run: {program}: cgroup {group} has no room ({e})");
            } else if let (Some(group), Error::BadState) = (cgroup, e) {
                let _ = writeln!(out, "run: {program}: cgroup {group} enables controllers for its children (cgroup.subtree_control), so it holds no processes: use a group below it");
            } else if e == Error::NotFound && cgroup.is_some() {
                let _ = writeln!(out, "run: {program}: no such program, or no cgroup {}", cgroup.unwrap_or(""));
            } else if e == Error::NotFound {
                let _ = writeln!(out, "run: {program}: no such program");
            } else {
                let _ = writeln!(out, "run: {program}: {e}");
            }
            return;
        }
    };
    // Without the console knowing, Ctrl-C cannot stop the program; it still runs.
    let _ = sys.set_foreground(pid);
    let result = sys.wait(&process);
    let _ = sys.set_foreground(0);
    sys.release(process);
    match result {
        Ok(code) => {
            if let Some(report) = exit_report(program, code) {
                let _ = writeln!(out, "{report}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "run: {program}: cannot wait for process {pid}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;
    use alloc::vec::Vec;

    /// A system that records what the shell asked of it.
    #[derive(Default)]
    struct FakeSystem {
        ps: Vec<u8>,
        live: Vec<u64>,
        exit_code: i64,
        calls: Vec<String>,
        released: Vec<u64>,
        mem: (u64, u64),
        clock: (u64, u64),
        files: crate::files::testfs::VfsFiles,
    }

    impl System for FakeSystem {
        type Process = u64;
        fn ps(&mut self) -> Result<Vec<u8>, Error> {
            Ok(self.ps.clone())
        }
        fn kill(&mut self, pid: u64) -> Result<(), Error> {
            self.calls.push(alloc::format!("kill {pid}"));
            match pid {
                3 => Err(Error::BadState),
                4 => Err(Error::NoRights),
                _ if self.live.contains(&pid) => Ok(()),
                _ => Err(Error::NotFound),
            }
        }
        fn spawn(&mut self, path: &str, args: &[String], _: Option<&str>, _: bool) -> Result<(u64, u64), Error> {
            self.calls.push(alloc::format!("spawn {path} {args:?}"));
            if path == "/bin/missing" { Err(Error::NotFound) } else { Ok((42, 900)) }
        }
        fn set_foreground(&mut self, pid: u64) -> Result<(), Error> {
            self.calls.push(alloc::format!("foreground {pid}"));
            Ok(())
        }
        fn wait(&mut self, process: &u64) -> Result<i64, Error> {
            self.calls.push(alloc::format!("wait {process}"));
            Ok(self.exit_code)
        }
        fn release(&mut self, process: u64) {
            self.released.push(process);
        }
        fn mem_info(&mut self) -> Result<keel_rt::sys::Census, Error> {
            Ok(keel_rt::sys::Census { frames_total: self.mem.0, frames_free: self.mem.1, heap_pages: 64, heap_free_pages: 60, processes: 9, caps: 321, pmo_frames: 2000, table_frames: 100, ..Default::default() })
        }
        fn clock(&mut self) -> (u64, u64) {
            self.clock
        }
        fn vm(&mut self, args: &[String]) -> Result<String, Error> {
            Ok(alloc::format!("vmm got {}\n", args.join(",")))
        }
        fn net(&mut self, args: &[String]) -> Result<String, Error> {
            if args.is_empty() { Err(Error::NotFound) } else { Ok(alloc::format!("netsw got {}\n", args.join(","))) }
        }

        fn files(&mut self) -> &mut dyn crate::files::Files {
            &mut self.files
        }

        fn power_off(&mut self) -> Result<(), Error> {
            Err(Error::NoRights)
        }
    }

    #[test]
    fn vm_commands_go_to_the_monitor_whole() {
        let mut sys = FakeSystem::default();
        assert_eq!(run_line(&mut sys, "vm run linux --wait"), "vmm got run,linux,--wait\n");
    }

    #[test]
    fn net_commands_go_to_the_switch_service_whole() {
        let mut sys = FakeSystem::default();
        assert_eq!(run_line(&mut sys, "net stat sw0"), "netsw got stat,sw0\n");
        assert_eq!(run_line(&mut sys, "net"), "net: the switch service is not running\n");
    }

    fn run_line(sys: &mut FakeSystem, line: &str) -> String {
        let mut out = String::new();
        execute(sys, &parse(line).unwrap(), &mut out);
        out
    }

    #[test]
    fn help_prints_one_line_per_command() {
        let out = run_line(&mut FakeSystem::default(), "help");
        assert_eq!(out.lines().count(), COMMANDS.len() + crate::files::COMMANDS.len());
        assert!(out.lines().any(|l| l.starts_with("kill <pid>") && l.ends_with("kill a process")));
    }

    #[test]
    fn echo_joins_its_words_with_single_spaces() {
        assert_eq!(run_line(&mut FakeSystem::default(), "echo  hello   'big  world'"), "hello big  world\n");
        assert_eq!(run_line(&mut FakeSystem::default(), "echo"), "\n");
    }

    #[test]
    fn ps_prints_the_process_table() {
        let mut sys = FakeSystem { ps: b"1\tinit\trunning\t512\n".to_vec(), ..Default::default() };
        assert_eq!(run_line(&mut sys, "ps"), "  PID NAME             STATE           MEM\n    1 init             running     512 KiB\n");
    }

    #[test]
    fn kill_of_a_missing_process_says_so() {
        let mut sys = FakeSystem { live: alloc::vec![5], ..Default::default() };
        assert_eq!(run_line(&mut sys, "kill 5"), "");
        assert_eq!(run_line(&mut sys, "kill 77"), "kill: no process 77\n");
        assert_eq!(run_line(&mut sys, "kill 3"), "kill: pid 3 is init and cannot be killed\n");
        assert_eq!(run_line(&mut sys, "kill 4"), "kill: process 4: not allowed (it is not yours to kill)\n");
    }

    #[test]
    fn run_sets_and_clears_the_foreground_around_the_wait_and_releases_the_process() {
        let mut sys = FakeSystem::default();
        assert_eq!(run_line(&mut sys, "run hello a b"), "");
        let starting = alloc::format!("foreground {FOREGROUND_STARTING}");
        assert_eq!(sys.calls, [starting.as_str(), "spawn /bin/hello [\"a\", \"b\"]", "foreground 42", "wait 900", "foreground 0"]);
        assert_eq!(sys.released, [900]);
    }

    #[test]
    fn run_reports_crashes_kills_and_nonzero_exit_codes() {
        let mut sys = FakeSystem { exit_code: EXIT_FAULT, ..Default::default() };
        assert_eq!(run_line(&mut sys, "run ktest crash"), "ktest crashed\n");
        sys.exit_code = EXIT_KILLED;
        assert_eq!(run_line(&mut sys, "run ktest spin"), "ktest was killed\n");
        sys.exit_code = 3;
        assert_eq!(run_line(&mut sys, "run ktest"), "ktest exited with code 3\n");
        sys.exit_code = -1;
        assert_eq!(run_line(&mut sys, "run ktest"), "ktest exited with code -1\n");
    }

    #[test]
    fn run_of_a_missing_program_leaves_no_foreground() {
        let mut sys = FakeSystem::default();
        assert_eq!(run_line(&mut sys, "run missing"), "run: missing: no such program\n");
        let starting = alloc::format!("foreground {FOREGROUND_STARTING}");
        assert_eq!(sys.calls, [starting.as_str(), "spawn /bin/missing []", "foreground 0"]);
    }

    #[test]
    fn mem_prints_total_used_free_in_mib_and_frames() {
        let mut sys = FakeSystem { mem: (524_288, 521_600), ..Default::default() };
        let out = run_line(&mut sys, "mem");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..3], ["total    2048.0 MiB    524288 frames", "used       10.5 MiB      2688 frames", "free     2037.5 MiB    521600 frames"]);
        assert_eq!(lines[3], "used by processes 2100 frames (2000 in memory objects, 100 in page tables), by the kernel 588");
        assert_eq!(lines[4], "kernel heap 64 pages, 60 free");
        assert_eq!(lines[5], "kernel objects:");
        assert_eq!(lines[6], "  processes          9  threads            0  vmspaces           0  pmos               0");
        assert!(lines[8].contains("caps             321"), "{out}");
        assert_eq!(lines.len(), 10, "{out}");
    }

    #[test]
    fn uptime_prints_seconds_with_two_decimals() {
        let mut sys = FakeSystem { clock: (62_500_000 * 12 + 62_500_000 / 4, 62_500_000), ..Default::default() };
        assert_eq!(run_line(&mut sys, "uptime"), "up 12.25 s\n");
        sys.clock = (5, 0);
        assert_eq!(run_line(&mut sys, "uptime"), "uptime: the counter frequency is unknown\n");
    }

    #[test]
    fn a_refused_poweroff_says_why() {
        assert_eq!(run_line(&mut FakeSystem::default(), "poweroff"), "poweroff: missing rights\n");
    }

    #[test]
    fn any_output_can_be_redirected_to_a_file() {
        let mut sys = FakeSystem::default();
        let mut out = String::new();
        execute(&mut sys, &parse("echo one > /f").unwrap(), &mut out);
        execute(&mut sys, &parse("echo two >> /f").unwrap(), &mut out);
        execute(&mut sys, &parse("ls / > /listing").unwrap(), &mut out);
        assert_eq!(out, "");
        execute(&mut sys, &parse("cat /f").unwrap(), &mut out);
        execute(&mut sys, &parse("cat /listing").unwrap(), &mut out);
        // The output is made before the file is opened: the listing does not list itself.
        assert_eq!(out, "one\ntwo\nf\n");
        out.clear();
        execute(&mut sys, &parse("echo x > /no/such/dir/f").unwrap(), &mut out);
        assert_eq!(out, "shell: /no/such/dir/f: no such file or directory\n");
    }
}
