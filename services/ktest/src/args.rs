//! The command line: `ktest <scenario>` or `ktest <server mode> [arguments]`.
//!
//! The creator may or may not pass the program path as the first argument, so a leading argument
//! that names the program (`/bin/ktest`, `ktest`) is skipped.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// The scenarios init runs (`scenario=<name>` on the kernel command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Syscalls,
    Ipc,
    CapTransfer,
    Crash,
    SpawnKill,
    Restart,
    Bench,
    /// The benchmarks with few iterations (so `make test` runs them without taking long).
    BenchQuick,
    /// The virtio-blk driver through its IPC protocol.
    Blk,
    /// The file service through the libc-like client.
    Fs,
    /// Random system calls from a seeded generator in a child process; the census after matches.
    SysFuzz,
    /// Rights over processes and the console come from capabilities.
    Access,
    /// VM create/run/destroy and process spawn/exit loops; the kernel's pools end where they began.
    Leaks,
    /// Quotas: a process limit stops a spawn loop, a memory limit OOM-kills a hog, bad calls.
    Quota,
    /// CPU quotas: a spinner under `cpu.max` 20 ms per 100 ms gets 20% of a CPU; two spinners on
    /// one CPU with weights 100 and 300 share it 1:3 (run under icount).
    CpuQuota,
}

impl Scenario {
    pub const ALL: [Scenario; 15] = [
        Scenario::Syscalls,
        Scenario::Ipc,
        Scenario::CapTransfer,
        Scenario::Crash,
        Scenario::SpawnKill,
        Scenario::Restart,
        Scenario::Bench,
        Scenario::BenchQuick,
        Scenario::Blk,
        Scenario::Fs,
        Scenario::SysFuzz,
        Scenario::Access,
        Scenario::Leaks,
        Scenario::Quota,
        Scenario::CpuQuota,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Syscalls => "syscalls",
            Scenario::Ipc => "ipc",
            Scenario::CapTransfer => "captransfer",
            Scenario::Crash => "crash",
            Scenario::SpawnKill => "spawnkill",
            Scenario::Restart => "restart",
            Scenario::Bench => "bench",
            Scenario::BenchQuick => "bench-quick",
            Scenario::Blk => "blk",
            Scenario::Fs => "fs",
            Scenario::SysFuzz => "sysfuzz",
            Scenario::Access => "access",
            Scenario::Leaks => "leaks",
            Scenario::Quota => "quota",
            Scenario::CpuQuota => "cpuquota",
        }
    }
}

/// A deliberate fault a `crash-*` child commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    NullRead,
    UndefinedInstruction,
    StackOverflow,
}

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::NullRead, Fault::UndefinedInstruction, Fault::StackOverflow];

    /// The server-mode argument that commits this fault.
    pub fn mode_name(self) -> &'static str {
        match self {
            Fault::NullRead => "crash-null",
            Fault::UndefinedInstruction => "crash-undef",
            Fault::StackOverflow => "crash-stack",
        }
    }
}

/// The echo server: registers its connection as `name` and serves with one thread per CPU in
/// `cpus` (each pinned to its CPU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoServer {
    pub name: String,
    pub cpus: Vec<u32>,
}

/// The helper processes scenarios spawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMode {
    Echo(EchoServer),
    /// Sleeps until killed.
    Sleeper,
    /// Opens two files under /tmp, keeps them open and sleeps until killed (the file service
    /// must free the session when it dies).
    HoldFiles,
    /// Exits with 0 at once (the program the spawn benchmark starts).
    Exit,
    Crash(Fault),
    /// Makes `calls` random system calls from generator seed `seed`, then exits 0.
    SysFuzzChild { seed: u64, calls: u64 },
    /// The `access` scenario's unprivileged child: `<sibling pid>` is a process it must not kill.
    AccessChild { sibling: u64 },
    /// Checks it was given no privileges (spawned by an unprivileged process), exits 0 if so.
    NoPrivileges,
    /// The `access` scenario's child in a new pid namespace: checks what it sees, leaves a
    /// sleeper behind and exits with the sleeper's kernel pid (or a failure).
    NsChild,
    /// Kills the named service while a copy into /disk runs (`kill-during-copy:<service>`, started by init).
    KillDuringCopy(String),
    /// Spawns sleepers through the process manager until a spawn fails, kills and waits for
    /// them, and exits with how many it started (`-1000 - error code` if the failure was not
    /// `Limit`).
    Bomb,
    /// Maps `mib` MiB of anonymous memory and writes to every page; exits 0 if it got them all.
    Hog { mib: u64 },
    /// Writes a file of `kib` KiB at `path` (made or cut first) and exits 0 leaving it there: a
    /// client the file service keeps memory for.
    Fill { path: String, kib: u64 },
    /// Spins until killed, on one thread pinned to CPU `cpu` (any CPU if None).
    Spin { cpu: Option<u32> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Scenario(Scenario),
    /// `<scenario>:<count>`: a scenario with its iteration count given (for `make fuzz`).
    Counted(Scenario, u64),
    Server(ServerMode),
}

/// What is wrong with the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgError {
    Missing,
    Unknown(String),
    BadServerArgs(&'static str),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ArgError::Missing => f.write_str("no scenario given"),
            ArgError::Unknown(s) => write!(f, "unknown scenario or mode '{s}'"),
            ArgError::BadServerArgs(why) => write!(f, "{why}"),
        }
    }
}

/// CPUs with a server thread, at most this many (affinity masks are 64 bits).
pub const MAX_CPU: u32 = 63;

/// Parses a CPU list like `0,1,3`.
pub fn parse_cpus(s: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let cpu: u32 = part.trim().parse().ok()?;
        if cpu > MAX_CPU || cpus.contains(&cpu) {
            return None;
        }
        cpus.push(cpu);
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// Renders a CPU list for [`parse_cpus`].
pub fn render_cpus(cpus: &[u32]) -> String {
    cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

fn is_program_name(arg: &str) -> bool {
    arg == "ktest" || arg.ends_with("/ktest")
}

/// Decodes the arguments a ktest process was started with.
pub fn parse(args: &[String]) -> Result<Mode, ArgError> {
    let args = match args.first() {
        Some(a) if is_program_name(a) => &args[1..],
        _ => args,
    };
    let first = args.first().ok_or(ArgError::Missing)?;
    if let Some(s) = Scenario::ALL.iter().find(|s| s.name() == first) {
        return Ok(Mode::Scenario(*s));
    }
    if let Some((name, count)) = first.split_once(':') {
        if let (Some(s), Ok(n)) = (Scenario::ALL.iter().find(|s| s.name() == name), count.parse::<u64>()) {
            return Ok(Mode::Counted(*s, n));
        }
    }
    // `kill-during-copy:<service>` is how the kernel command line (one word) names it.
    if let Some(service) = first.strip_prefix("kill-during-copy:") {
        return Ok(Mode::Server(ServerMode::KillDuringCopy(service.to_string())));
    }
    if let Some(f) = Fault::ALL.iter().find(|f| f.mode_name() == first) {
        return Ok(Mode::Server(ServerMode::Crash(*f)));
    }
    match first.as_str() {
        "sleeper" => Ok(Mode::Server(ServerMode::Sleeper)),
        "hold-files" => Ok(Mode::Server(ServerMode::HoldFiles)),
        "exit" => Ok(Mode::Server(ServerMode::Exit)),
        "no-privileges" => Ok(Mode::Server(ServerMode::NoPrivileges)),
        "ns-child" => Ok(Mode::Server(ServerMode::NsChild)),
        "bomb" => Ok(Mode::Server(ServerMode::Bomb)),
        "spin" => match args.get(1).map(|a| a.parse::<u32>()) {
            None => Ok(Mode::Server(ServerMode::Spin { cpu: None })),
            Some(Ok(cpu)) if cpu <= MAX_CPU => Ok(Mode::Server(ServerMode::Spin { cpu: Some(cpu) })),
            Some(_) => Err(ArgError::BadServerArgs("spin takes [cpu] (0 to 63)")),
        },
        "hog" => match args.get(1).and_then(|a| a.parse::<u64>().ok()) {
            Some(mib) if (1..=4096).contains(&mib) => Ok(Mode::Server(ServerMode::Hog { mib })),
            _ => Err(ArgError::BadServerArgs("hog needs <MiB> (1 to 4096)")),
        },
        "fill" => match (args.get(1), args.get(2).and_then(|a| a.parse::<u64>().ok())) {
            (Some(path), Some(kib)) if path.starts_with('/') && (1..=1 << 20).contains(&kib) => Ok(Mode::Server(ServerMode::Fill { path: path.clone(), kib })),
            _ => Err(ArgError::BadServerArgs("fill needs <absolute path> <KiB> (1 to 1048576)")),
        },
        "access-child" => match args.get(1).and_then(|a| a.parse::<u64>().ok()) {
            Some(sibling) => Ok(Mode::Server(ServerMode::AccessChild { sibling })),
            None => Err(ArgError::BadServerArgs("access-child needs <sibling pid>")),
        },
        "kill-during-copy" => match args.get(1) {
            Some(service) => Ok(Mode::Server(ServerMode::KillDuringCopy(service.clone()))),
            None => Err(ArgError::BadServerArgs("kill-during-copy needs <service>")),
        },
        "sysfuzz-child" => {
            let num = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
            match (num(1), num(2)) {
                (Some(seed), Some(calls)) => Ok(Mode::Server(ServerMode::SysFuzzChild { seed, calls })),
                _ => Err(ArgError::BadServerArgs("sysfuzz-child needs <seed> <calls>")),
            }
        }
        "ipc-server" => {
            let name = args.get(1).ok_or(ArgError::BadServerArgs("ipc-server needs <name> [cpus]"))?;
            if keel_rt::proto::pack_name(name).is_err() {
                return Err(ArgError::BadServerArgs("ipc-server: the service name must be 1 to 32 bytes"));
            }
            let cpus = match args.get(2) {
                Some(c) => parse_cpus(c).ok_or(ArgError::BadServerArgs("ipc-server: bad CPU list"))?,
                None => alloc::vec![0],
            };
            Ok(Mode::Server(ServerMode::Echo(EchoServer { name: name.clone(), cpus })))
        }
        other => Err(ArgError::Unknown(other.to_string())),
    }
}

/// The accepted first arguments, `|`-separated.
pub fn usage() -> String {
    let mut names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
    names.extend(["ipc-server <name> <cpus>", "sleeper", "hold-files", "exit", "kill-during-copy:<service>", "bomb", "hog <MiB>", "fill <path> <KiB>", "spin [cpu]"]);
    names.extend(Fault::ALL.iter().map(|f| f.mode_name()));
    names.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scenario_names_parse_with_or_without_the_program_path() {
        for s in Scenario::ALL {
            assert_eq!(parse(&strings(&[s.name()])), Ok(Mode::Scenario(s)));
            assert_eq!(parse(&strings(&["/bin/ktest", s.name()])), Ok(Mode::Scenario(s)));
        }
        assert_eq!(parse(&strings(&["ktest", "ipc"])), Ok(Mode::Scenario(Scenario::Ipc)));
        assert_eq!(parse(&strings(&["sysfuzz:1000000"])), Ok(Mode::Counted(Scenario::SysFuzz, 1_000_000)));
        assert_eq!(parse(&strings(&["sysfuzz:x"])), Err(ArgError::Unknown("sysfuzz:x".into())));
        assert_eq!(
            parse(&strings(&["sysfuzz-child", "7", "20"])),
            Ok(Mode::Server(ServerMode::SysFuzzChild { seed: 7, calls: 20 }))
        );
    }

    #[test]
    fn server_modes_parse_with_their_arguments() {
        assert_eq!(parse(&strings(&["/bin/ktest", "sleeper"])), Ok(Mode::Server(ServerMode::Sleeper)));
        assert_eq!(parse(&strings(&["/bin/ktest", "exit"])), Ok(Mode::Server(ServerMode::Exit)));
        assert_eq!(
            parse(&strings(&["ktest", "kill-during-copy", "blk"])),
            Ok(Mode::Server(ServerMode::KillDuringCopy("blk".into())))
        );
        assert!(parse(&strings(&["kill-during-copy"])).is_err());
        assert_eq!(parse(&strings(&["kill-during-copy:fs"])), Ok(Mode::Server(ServerMode::KillDuringCopy("fs".into()))));
        assert_eq!(parse(&strings(&["bench-quick"])), Ok(Mode::Scenario(Scenario::BenchQuick)));
        assert_eq!(parse(&strings(&["crash-stack"])), Ok(Mode::Server(ServerMode::Crash(Fault::StackOverflow))));
        assert_eq!(
            parse(&strings(&["ipc-server", "ktest-echo", "0,1,2,3"])),
            Ok(Mode::Server(ServerMode::Echo(EchoServer { name: "ktest-echo".into(), cpus: vec![0, 1, 2, 3] })))
        );
        assert_eq!(
            parse(&strings(&["ipc-server", "b"])),
            Ok(Mode::Server(ServerMode::Echo(EchoServer { name: "b".into(), cpus: vec![0] })))
        );
    }

    #[test]
    fn bad_command_lines_are_errors() {
        assert_eq!(parse(&[]), Err(ArgError::Missing));
        assert_eq!(parse(&strings(&["/bin/ktest"])), Err(ArgError::Missing));
        assert_eq!(parse(&strings(&["nope"])), Err(ArgError::Unknown("nope".into())));
        assert!(matches!(parse(&strings(&["ipc-server"])), Err(ArgError::BadServerArgs(_))));
        assert!(matches!(parse(&strings(&["ipc-server", &"x".repeat(33)])), Err(ArgError::BadServerArgs(_))));
        assert!(matches!(parse(&strings(&["ipc-server", "a", "0,0"])), Err(ArgError::BadServerArgs(_))));
        assert!(matches!(parse(&strings(&["ipc-server", "a", "64"])), Err(ArgError::BadServerArgs(_))));
        assert!(matches!(parse(&strings(&["ipc-server", "a", ""])), Err(ArgError::BadServerArgs(_))));
    }

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(parse_cpus(&render_cpus(&[0, 2, 3])), Some(vec![0, 2, 3]));
        assert_eq!(parse_cpus("1"), Some(vec![1]));
        assert_eq!(parse_cpus("x"), None);
    }
}
