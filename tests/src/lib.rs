//! Support for the QEMU scenario tests in `tests/tests/`: boot a Keel image in QEMU with a
//! scenario on the kernel command line, collect the serial log, and check it.
//!
//! The image comes from `KEEL_IMAGE` (set by `make test`), the emulator from `QEMU` (default
//! `qemu-system-aarch64`). Each boot is one QEMU process with its own timeout; a failed check
//! panics with the reason and the last lines of the serial log.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

/// Input typed once a line containing `trigger` has appeared (and `ready`, if given, holds),
/// computed from the log so far; with `after_previous`, only the log after the previous stage
/// fired counts.
#[derive(Clone)]
struct Stage {
    trigger: String,
    text: Arc<dyn Fn(&str) -> String + Send + Sync>,
    after_previous: bool,
    /// A condition outside the log (a file on the host), polled every [`READY_POLL`].
    ready: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

/// How often a stage's `ready` condition is looked at again.
const READY_POLL: Duration = Duration::from_millis(200);

/// Lines of serial log shown when a check fails.
const TAIL_LINES: usize = 40;

/// One QEMU boot to be made.
#[derive(Clone)]
pub struct Boot {
    name: String,
    machine: String,
    cpu: String,
    smp: u32,
    mem: String,
    append: String,
    extra: Vec<String>,
    initrd: bool,
    input: Vec<u8>,
    stages: Vec<Stage>,
    timeout: Duration,
}

impl Boot {
    /// The reference machine (DESIGN.md) with `scenario=<scenario>` on the command line;
    /// an empty scenario boots with no scenario at all.
    pub fn scenario(scenario: &str) -> Self {
        Self {
            name: if scenario.is_empty() { "default".into() } else { scenario.into() },
            machine: "virt,virtualization=on,gic-version=3,iommu=smmuv3".into(),
            cpu: "max".into(),
            smp: 4,
            mem: "2G".into(),
            append: if scenario.is_empty() { String::new() } else { format!("scenario={scenario}") },
            extra: vec!["-global".into(), "arm-smmuv3.stage=2".into()],
            initrd: true,
            input: Vec::new(),
            stages: Vec::new(),
            timeout: Duration::from_secs(120),
        }
    }

    pub fn machine(mut self, machine: &str) -> Self {
        self.machine = machine.into();
        self
    }

    pub fn cpu(mut self, cpu: &str) -> Self {
        self.cpu = cpu.into();
        self
    }

    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n;
        self
    }

    pub fn mem(mut self, mem: &str) -> Self {
        self.mem = mem.into();
        self
    }

    /// Adds words to the kernel command line.
    pub fn append(mut self, words: &str) -> Self {
        if !self.append.is_empty() {
            self.append.push(' ');
        }
        self.append.push_str(words);
        self
    }

    /// Text typed on the serial console from the start (QEMU holds it until the guest reads).
    pub fn input(mut self, text: &str) -> Self {
        self.input = text.as_bytes().to_vec();
        self
    }

    /// Once the log shows `trigger`, types what `text` makes of the log so far.
    pub fn then(mut self, trigger: &str, text: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.stages.push(Stage { trigger: trigger.to_string(), text: Arc::new(text), after_previous: false, ready: None });
        self
    }

    /// Like [`then_next`](Self::then_next), and also waits until `ready()` holds: for an effect
    /// seen from the host (data on the disk image), looked at every 200 ms until the timeout.
    pub fn then_when(
        mut self,
        trigger: &str,
        ready: impl Fn() -> bool + Send + Sync + 'static,
        text: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Self {
        self.stages.push(Stage { trigger: trigger.to_string(), text: Arc::new(text), after_previous: true, ready: Some(Arc::new(ready)) });
        self
    }

    /// Like [`then`](Self::then), but `trigger` must appear after the point where the previous
    /// stage fired (for a line a restarted service prints a second time).
    pub fn then_next(mut self, trigger: &str, text: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.stages.push(Stage { trigger: trigger.to_string(), text: Arc::new(text), after_previous: true, ready: None });
        self
    }

    /// Types each of `lines` at a fresh shell prompt, one after the other: no type-ahead, so the
    /// console's echo of the next line never lands inside a command's output.
    pub fn commands(mut self, lines: &[&str]) -> Self {
        for line in lines {
            let typed = format!("{line}\n");
            self = self.then_next("keel> ", move |_| typed.clone());
        }
        self
    }

    /// Types at the next fresh prompt the line `text(log)` gives (the log so far: for a pid that
    /// `ps` printed), after the previous stage.
    pub fn command_from(self, text: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.then_next("keel> ", move |log| format!("{}\n", text(log)))
    }

    /// Once `trigger` appears after the previous stage (a restarted service's line), types
    /// `lines` prompt by prompt. A marker line goes first: the prompt the shell printed before
    /// `trigger` must not count as the one after it.
    pub fn commands_after(self, trigger: &str, lines: &[&str]) -> Self {
        self.then_next(trigger, |_| "echo prompt   after\n".to_string()).then_next("prompt after", |_| String::new()).commands(lines)
    }

    /// Runs under `-icount shift=0,align=off,sleep=off`: the counter then counts instructions.
    pub fn icount(mut self) -> Self {
        self.extra.push("-icount".into());
        self.extra.push("shift=0,align=off,sleep=off".into());
        self
    }

    /// A longer timeout for heavy scenarios.
    pub fn timeout(mut self, secs: u64) -> Self {
        self.timeout = Duration::from_secs(secs);
        self
    }

    /// Attaches the disk image at `path` as a virtio-blk device on virtio-mmio (raw format,
    /// writeback cache: data Keel flushed is in the file when QEMU exits).
    pub fn drive(mut self, path: &str) -> Self {
        let n = self.extra.iter().filter(|a| a.starts_with("virtio-blk-device")).count();
        self.extra.push("-drive".into());
        self.extra.push(format!("file={path},format=raw,if=none,id=disk{n},cache=writeback"));
        self.extra.push("-device".into());
        self.extra.push(format!("virtio-blk-device,drive=disk{n}"));
        self
    }

    /// Attaches a virtio-net device on virtio-mmio with QEMU network backend `backend` (a
    /// `-netdev` value without its id: `user,restrict=on`, `dgram,...`); Keel's `nic` service
    /// makes it the uplink of switch sw0.
    pub fn netdev(mut self, backend: &str) -> Self {
        self.extra.push("-netdev".into());
        self.extra.push(format!("{backend},id=net0"));
        self.extra.push("-device".into());
        self.extra.push("virtio-net-device,netdev=net0".into());
        self
    }

    /// Boots without the initrd (no user space).
    pub fn without_initrd(mut self) -> Self {
        self.initrd = false;
        self
    }

    /// The QEMU command line this boot uses (without the program name).
    pub fn args(&self, image: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "-machine", &self.machine, "-cpu", &self.cpu, "-smp", &self.smp.to_string(), "-m", &self.mem,
            "-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot",
            "-kernel", image, "-append", &self.append,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.initrd {
            if let Ok(initrd) = std::env::var("KEEL_INITRD") {
                args.push("-initrd".into());
                args.push(initrd);
            }
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Boots and waits for QEMU to exit or the timeout to pass.
    pub fn run(&self) -> Run {
        let image = std::env::var("KEEL_IMAGE")
            .expect("KEEL_IMAGE is not set: run the QEMU tests with `make test` (it builds the image first)");
        assert!(std::path::Path::new(&image).exists(), "KEEL_IMAGE {image} does not exist: run `make test`");
        let qemu = std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into());
        let interactive = !self.input.is_empty() || !self.stages.is_empty();
        let child = Command::new(&qemu)
            .args(self.args(&image))
            .stdin(if interactive { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {qemu}: {e} (run `make deps`)"));
        watch(&self.name, child, self.input.clone(), self.stages.clone(), self.timeout, false)
    }
}

/// Runs `command` (QEMU, or a command that runs QEMU such as `make run`) as one boot: `input`
/// typed from the start, the serial log read from its stdout until it exits or `timeout` passes.
/// The command gets a process group of its own, so a timeout kills QEMU too, not only `make`.
pub fn run_command(name: &str, mut command: Command, input: &str, timeout: Duration) -> Run {
    use std::os::unix::process::CommandExt;
    let child = command
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    watch(name, child, input.as_bytes().to_vec(), Vec::new(), timeout, true)
}

/// Collects what a started boot prints, types its input, and waits for it to end.
/// `group`: the child leads a process group, killed whole on a timeout.
fn watch(
    name: &str,
    mut child: std::process::Child,
    input: Vec<u8>,
    stages: Vec<Stage>,
    timeout: Duration,
    group: bool,
) -> Run {
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // The serial log so far, and a signal for the input writer when it grows or ends.
    let shared = Arc::new((Mutex::new((Vec::<u8>::new(), false)), Condvar::new()));
    let (tx, rx) = mpsc::channel();
    let reader = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                let n = stdout.read(&mut chunk).unwrap_or(0);
                let (lock, cvar) = &*shared;
                let mut g = lock.lock().unwrap();
                if n == 0 {
                    g.1 = true;
                    cvar.notify_all();
                    break;
                }
                g.0.extend_from_slice(&chunk[..n]);
                cvar.notify_all();
            }
            let _ = tx.send(());
        })
    };
    if let Some(mut stdin) = child.stdin.take() {
        let shared = shared.clone();
        // QEMU reads the input only as the guest drains its UART; the pipe stays open (EOF on
        // the serial line is not a power-off).
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
            let _ = stdin.flush();
            let mut fired_at = 0;
            for Stage { trigger, text, after_previous, ready } in stages {
                let (lock, cvar) = &*shared;
                let mut g = lock.lock().unwrap();
                loop {
                    let log = String::from_utf8_lossy(&g.0).replace('\r', "");
                    let from = if after_previous { fired_at.min(log.len()) } else { 0 };
                    let found = log.get(from..).and_then(|rest| rest.find(&trigger));
                    if let Some(at) = found.filter(|_| ready.as_ref().is_none_or(|r| r())) {
                        fired_at = from + at + trigger.len();
                        let typed = text(&log);
                        drop(g);
                        let _ = stdin.write_all(typed.as_bytes());
                        let _ = stdin.flush();
                        break;
                    }
                    if g.1 {
                        return;
                    }
                    g = match (&ready, found) {
                        // Seen in the log but not ready yet: look again soon.
                        (Some(_), Some(_)) => cvar.wait_timeout(g, READY_POLL).unwrap().0,
                        _ => cvar.wait(g).unwrap(),
                    };
                }
            }
            std::thread::park();
        });
    }
    let err_reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    // The reader finishes when QEMU closes the serial pipe, i.e. when it exits.
    let timed_out = rx.recv_timeout(timeout).is_err();
    if timed_out {
        if group {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
        }
        let _ = child.kill();
    }
    let status = child.wait().ok();
    let _ = reader.join();
    let log = String::from_utf8_lossy(&shared.0.lock().unwrap().0).replace('\r', "");
    let stderr = err_reader.join().unwrap_or_default();
    Run { name: name.to_string(), log, stderr, status, timed_out, timeout }
}

/// A scratch directory for one test's files (disk images), removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    /// A fresh directory named after the test binary's process and `name`.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("keel-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot make a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one boot printed and how it ended.
#[derive(Debug)]
pub struct Run {
    name: String,
    pub log: String,
    pub stderr: String,
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    timeout: Duration,
}

impl Run {
    /// Fails the test with `why` and the end of the serial log.
    pub fn fail(&self, why: &str) -> ! {
        let lines: Vec<&str> = self.log.lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        let ending = if self.timed_out {
            format!("QEMU was killed after the {:?} timeout", self.timeout)
        } else {
            format!("QEMU exited with {:?}", self.status)
        };
        panic!(
            "scenario '{}': {why}\n{ending}\n--- last {} lines of the serial log ---\n{tail}\n--- QEMU stderr ---\n{}",
            self.name,
            TAIL_LINES.min(lines.len()),
            self.stderr.trim()
        );
    }

    /// The log holds a line containing `needle`.
    pub fn expect(&self, needle: &str) -> &Self {
        if !self.log.lines().any(|l| l.contains(needle)) {
            self.fail(&format!("no line contains {needle:?}"));
        }
        self
    }

    /// No line contains `needle`.
    pub fn expect_absent(&self, needle: &str) -> &Self {
        if let Some(line) = self.log.lines().find(|l| l.contains(needle)) {
            self.fail(&format!("unexpected line: {line:?}"));
        }
        self
    }

    /// QEMU exited by itself with status 0 (PSCI SYSTEM_OFF), without a kernel panic.
    pub fn expect_clean_poweroff(&self) -> &Self {
        if self.timed_out {
            self.fail("QEMU did not exit (the machine did not power off)");
        }
        if !self.status.is_some_and(|s| s.success()) {
            self.fail("QEMU did not exit cleanly");
        }
        self.expect_absent("PANIC")
    }

    /// Lines starting with `prefix`.
    pub fn lines_starting(&self, prefix: &str) -> Vec<&str> {
        self.log.lines().filter(|l| l.starts_with(prefix)).collect()
    }
}

/// What the `nth` run of `command` printed: the log from its echo (the whole line) to the next
/// prompt.
pub fn output_of(log: &str, command: &str, nth: usize) -> Option<String> {
    let (at, _) = log.match_indices(command).filter(|(i, _)| log[i + command.len()..].starts_with(['\r', '\n'])).nth(nth)?;
    let rest = &log[at + command.len()..];
    Some(rest[..rest.find("keel> ").unwrap_or(rest.len())].to_string())
}

/// One line of the shell's `ps` table: `PID NAME STATE MEM KiB [CGROUP]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsRow<'a> {
    pub pid: u64,
    pub name: &'a str,
    pub state: &'a str,
    pub mem_kib: u64,
    /// The CGROUP column (the shell prints it when resmgr names the quotas).
    pub cgroup: Option<&'a str>,
}

/// `line` as a `ps` table line, if it is a whole one.
pub fn ps_row(line: &str) -> Option<PsRow<'_>> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if !(5..=6).contains(&f.len()) || f[4] != "KiB" {
        return None;
    }
    Some(PsRow { pid: f[0].parse().ok()?, name: f[1], state: f[2], mem_kib: f[3].parse().ok()?, cgroup: f.get(5).copied() })
}

/// The pid of the running process `name` in the last `ps` table of `log` that lists it.
pub fn ps_pid(log: &str, name: &str) -> Option<u64> {
    log.lines().filter_map(ps_row).filter(|r| r.name == name && r.state == "running").map(|r| r.pid).last()
}

/// The number right after `key` in `line` (e.g. `number_after("5 ticks", "")`), if any.
pub fn number_before(line: &str, word: &str) -> Option<u64> {
    let end = line.find(word)?;
    let digits: String = line[..end].trim_end().chars().rev().take_while(|c| c.is_ascii_digit()).collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_parse_with_and_without_the_cgroup_column() {
        assert_eq!(ps_row("   40 hog              running      64 KiB  /jobs/a").map(|r| (r.pid, r.cgroup)), Some((40, Some("/jobs/a"))));
        assert_eq!(ps_row("    1 init             running     512 KiB").map(|r| (r.name, r.mem_kib, r.cgroup)), Some(("init", 512, None)));
        assert_eq!(ps_row("  PID NAME             STATE           MEM  CGROUP"), None);
        assert_eq!(ps_row("    1 init             running     512"), None, "cut short");
        assert_eq!(ps_pid("    1 init running 5 KiB /\n    9 x running 5 KiB /\n    9 x exited(0) 5 KiB /\n   12 x running 5 KiB /a\n", "x"), Some(12));
    }

    #[test]
    fn number_before_a_word() {
        let line = "smp: cpu1 mpidr 0x1: online, 12 ticks, 3 ipis received";
        assert_eq!(number_before(line, " ticks"), Some(12));
        assert_eq!(number_before(line, " ipis"), Some(3));
        assert_eq!(number_before(line, " nothing"), None);
        assert_eq!(number_before("no digits ticks", " ticks"), None);
    }

    #[test]
    fn qemu_args_carry_the_scenario_and_machine() {
        let b = Boot::scenario("smp").smp(2).mem("512M").append("loglevel=debug");
        let args = b.args("/img");
        let joined = args.join(" ");
        assert!(joined.contains("-smp 2 -m 512M"));
        assert!(joined.contains("-append scenario=smp loglevel=debug"));
        assert!(joined.contains("-kernel /img"));
        assert_eq!(Boot::scenario("").args("/img").iter().position(|a| a == "-append").map(|i| args.len() > i), Some(true));
    }
}
