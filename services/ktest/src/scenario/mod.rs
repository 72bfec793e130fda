//! The scenarios, one module each. Each returns the process exit code (0 when every check passed)
//! after printing its outcome line through [`crate::check::Checks`].

pub mod access;
mod bench;
mod blk;
mod captransfer;
pub mod cpuquota;
mod crash;
mod fs;
mod ipc;
pub mod killcopy;
mod leaks;
mod memops;
pub mod quota;
mod restart;
mod spawnkill;
mod syscalls;
mod sysfuzz;

use crate::args::Scenario;
use crate::check::Checks;
use crate::services::{Namesrv, Procmgr};
use keel_rt::startup::Startup;

pub fn run(s: Scenario, count: Option<u64>, startup: &Startup) -> i32 {
    match s {
        Scenario::Syscalls => syscalls::run(startup),
        Scenario::Ipc => ipc::run(startup),
        Scenario::CapTransfer => captransfer::run(startup),
        Scenario::Crash => crash::run(startup),
        Scenario::SpawnKill => spawnkill::run(startup),
        Scenario::Restart => restart::run(startup),
        Scenario::Bench => bench::run(startup, bench::Size::Full),
        Scenario::BenchQuick => bench::run(startup, bench::Size::Quick),
        Scenario::Blk => blk::run(startup),
        Scenario::Fs => fs::run(startup),
        Scenario::SysFuzz => sysfuzz::run(startup, count),
        Scenario::Access => access::run(startup),
        Scenario::Leaks => leaks::run(startup, count),
        Scenario::Quota => quota::run(startup),
        Scenario::CpuQuota => cpuquota::run(startup),
    }
}

/// The process manager, or a failed check saying it is missing.
fn procmgr(c: &mut Checks, startup: &Startup) -> Option<Procmgr> {
    let p = Procmgr::from_startup(startup);
    if p.is_none() {
        c.fail("no 'procmgr' capability in the startup block");
    }
    p
}

/// The name service, or a failed check saying it is missing.
fn namesrv(c: &mut Checks, startup: &Startup) -> Option<Namesrv> {
    let n = Namesrv::from_startup(startup);
    if n.is_none() {
        c.fail("no 'namesrv' capability in the startup block");
    }
    n
}

/// Nanoseconds in a millisecond and a second.
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// An echo server process started for a scenario, and our connection to it.
struct EchoProcess {
    name: &'static str,
    spawned: crate::services::Spawned,
    conn: keel_rt::Slot,
}

/// Spawns `ktest ipc-server <name> <cpus>` and waits (up to 10 s) until its name resolves.
fn start_echo_server(
    c: &mut Checks,
    pm: &mut Procmgr,
    ns: &Namesrv,
    name: &'static str,
    cpus: &[u32],
) -> Option<EchoProcess> {
    let cpus_arg = crate::args::render_cpus(cpus);
    let spawned = c.expect_ok(
        format_args!("procmgr SPAWN /bin/ktest ipc-server {name} {cpus_arg}"),
        pm.spawn_ktest(&["ipc-server", name, &cpus_arg]),
    )?;
    match ns.wait_for(name, Some(spawned.process), 10_000) {
        Ok(conn) => {
            c.pass();
            Some(EchoProcess { name, spawned, conn })
        }
        Err(e) => {
            let info = keel_rt::sys::process_info(spawned.process);
            c.fail(format_args!(
                "namesrv LOOKUP {name} (waited up to 10 s for the server to register): {e:?}; server: {info:?}"
            ));
            let _ = keel_rt::sys::process_kill(spawned.process);
            let _ = keel_rt::sys::cap_delete(spawned.process);
            None
        }
    }
}

impl EchoProcess {
    /// Kills the server through its process capability and checks it ended with EXIT_KILLED.
    fn kill(&self, c: &mut Checks) {
        let p = self.spawned.process;
        c.expect_ok(format_args!("process_kill({} server)", self.name), keel_rt::sys::process_kill(p));
        c.expect_eq(
            format_args!("exit code of the killed {} server", self.name),
            wait_exit(p, 10 * SEC),
            Ok(keel_rt::abi::EXIT_KILLED),
        );
    }

    fn release(self) {
        let _ = keel_rt::sys::cap_delete(self.conn);
        let _ = keel_rt::sys::cap_delete(self.spawned.process);
    }
}

/// Waits up to `timeout_ns` for a process to exit; its exit code (`TimedOut` if it did not).
fn wait_exit(process: keel_rt::Slot, timeout_ns: u64) -> Result<i64, keel_rt::Error> {
    use keel_rt::sys;
    let n = sys::notif_create()?;
    let r = sys::process_watch(process, n, 1)
        .and_then(|()| sys::notif_wait(n, timeout_ns))
        .and_then(|_| sys::process_wait(process));
    let _ = sys::cap_delete(n);
    r
}
