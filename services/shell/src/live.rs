//! The shell's [`System`] over Keel: the process manager and console connections, and the
//! kernel calls. Also finding the console through namesrv and reading lines from it.

use crate::exec::System;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::ipc::{self, Client};
use keel_rt::reconnect::{Retry, ServiceClient};
use keel_rt::errno::Errno;
use keel_rt::fs;
use keel_rt::proto::{console, procmgr};
use keel_rt::{Error, Slot, sys};

/// Lookups of `console` before giving up (it may start after the shell), and the pause between.
const LOOKUP_ATTEMPTS: u32 = 100;
const LOOKUP_PAUSE_NS: u64 = 50_000_000;

/// What READ_LINE gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadLine {
    Line(String),
    /// Ctrl-C was typed instead.
    Interrupted,
    /// A line too long for the console was typed (this many bytes) and discarded.
    TooLong(u64),
}

/// A started program: our capability to its process.
pub struct Process(Slot);

/// Keel as the shell sees it.
pub struct LiveSystem {
    procmgr: Client,
    namesrv: Client,
    console: Client,
    /// The VM monitor, looked up on first use and again whenever it restarted.
    vmm: ServiceClient,
    /// The switch service (`net`).
    net: ServiceClient,
    /// The cgroup service, if init gave us its connection.
    resmgr: Option<Client>,
    /// `vmm.generation()` when the user was last told about a restart.
    vmm_generation: u64,
    /// The VM whose console the last `vm` command attached to.
    pub attached: Option<u64>,
    /// The VM the last `vm run --wait` waits for, and its timeout in seconds (0: none).
    pub waiting: Option<(u64, u64)>,
    files: LiveFiles,
}

/// The file service, through `keel_rt::fs`.
pub struct LiveFiles;

impl crate::files::Files for LiveFiles {
    fn open(&mut self, path: &str, flags: u32, mode: u16) -> Result<fs::Fd, Errno> {
        fs::open(path, flags, mode)
    }
    fn close(&mut self, fd: fs::Fd) -> Result<(), Errno> {
        fs::close(fd)
    }
    fn read(&mut self, fd: fs::Fd, buf: &mut [u8]) -> Result<usize, Errno> {
        fs::read(fd, buf)
    }
    fn write(&mut self, fd: fs::Fd, data: &[u8]) -> Result<usize, Errno> {
        fs::write(fd, data)
    }
    fn stat(&mut self, path: &str) -> Result<fs::Stat, Errno> {
        fs::stat(path)
    }
    fn lstat(&mut self, path: &str) -> Result<fs::Stat, Errno> {
        fs::lstat(path)
    }
    fn read_dir(&mut self, path: &str) -> Result<Vec<fs::DirEntry>, Errno> {
        fs::read_dir(path)
    }
    fn mkdir(&mut self, path: &str, mode: u16) -> Result<(), Errno> {
        fs::mkdir(path, mode)
    }
    fn rmdir(&mut self, path: &str) -> Result<(), Errno> {
        fs::rmdir(path)
    }
    fn unlink(&mut self, path: &str) -> Result<(), Errno> {
        fs::unlink(path)
    }
    fn truncate(&mut self, path: &str, size: u64) -> Result<(), Errno> {
        fs::truncate(path, size)
    }
    fn rename(&mut self, old: &str, new: &str) -> Result<(), Errno> {
        fs::rename(old, new)
    }
    fn symlink(&mut self, target: &str, path: &str) -> Result<(), Errno> {
        fs::symlink(target, path)
    }
    fn link(&mut self, old: &str, new: &str) -> Result<(), Errno> {
        fs::link(old, new)
    }
    fn readlink(&mut self, path: &str) -> Result<String, Errno> {
        fs::readlink(path)
    }
    fn statfs(&mut self, path: &str) -> Result<fs::StatFs, Errno> {
        fs::statfs(path)
    }
    fn mounts(&mut self) -> Result<String, Errno> {
        fs::mounts()
    }
    fn mount(&mut self, device: &str, path: &str, read_only: bool, size: u64) -> Result<(), Errno> {
        if device == "tmpfs" {
            return fs::mount_tmpfs(path, size, read_only);
        }
        fs::mount(device, path, read_only)
    }
    fn unmount(&mut self, path: &str) -> Result<(), Errno> {
        fs::unmount(path)
    }
    fn sync(&mut self) -> Result<(), Errno> {
        fs::sync()
    }
    fn chdir(&mut self, path: &str) -> Result<(), Errno> {
        fs::chdir(path)
    }
    fn getcwd(&mut self) -> String {
        fs::getcwd()
    }
    fn absolute(&mut self, path: &str) -> String {
        fs::absolute(path)
    }
}

/// The status of a reply, as a plain result.
fn status(r: &ipc::Received) -> Result<(), Error> {
    ipc::status(r).map(|_| ())
}

/// Looks `name` up with namesrv, retrying while it is not registered yet.
fn lookup(namesrv: &Client, name: &str) -> Result<Slot, Error> {
    keel_rt::ipc::lookup(namesrv.slot(), name, LOOKUP_ATTEMPTS, LOOKUP_PAUSE_NS)
}

/// The console's control connection (the one that may set the foreground), from procmgr, retrying
/// while the console has not registered yet; a shell without the admin right gets namesrv's
/// ordinary connection (it reads lines, but Ctrl-C cannot reach what it runs).
fn console_control(procmgr: &Client, namesrv: &Client) -> Result<Slot, Error> {
    for _ in 0..LOOKUP_ATTEMPTS {
        let r = procmgr.call(procmgr::CONSOLE_CONTROL, [0; 4])?;
        match ipc::status(&r) {
            Ok(_) => return r.caps.slots().next().ok_or(Error::Invalid),
            Err(Error::NotFound) => sys::sleep_ns(LOOKUP_PAUSE_NS),
            Err(Error::NoRights) => return lookup(namesrv, "console"),
            Err(e) => return Err(e),
        }
    }
    Err(Error::NotFound)
}

impl LiveSystem {
    /// Connects to the console (its control connection, from procmgr).
    pub fn connect(procmgr: Slot, namesrv: Slot, resmgr: Option<Slot>) -> Result<Self, Error> {
        let (procmgr, namesrv) = (Client::new(procmgr), Client::new(namesrv));
        let console = Client::new(console_control(&procmgr, &namesrv)?);
        let vmm = ServiceClient::new(namesrv.slot(), "vmm");
        let net = ServiceClient::new(namesrv.slot(), "net");
        let resmgr = resmgr.map(Client::new);
        Ok(Self { procmgr, namesrv, console, vmm, net, resmgr, vmm_generation: 0, attached: None, waiting: None, files: LiveFiles })
    }

    /// Finds the console again (after it restarted): Ok once the connection procmgr gives
    /// answers (its copy of the registration may still be the dead console's for a while).
    pub fn reconnect_console(&mut self) -> Result<(), Error> {
        let slot = console_control(&self.procmgr, &self.namesrv)?;
        let old = core::mem::replace(&mut self.console, Client::new(slot));
        let _ = sys::cap_delete(old.slot());
        match self.set_foreground(0) {
            // It answered (a shell without console control may not set the foreground).
            Ok(()) | Err(Error::NoRights) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The next line typed on the console.
    pub fn read_line(&mut self) -> Result<ReadLine, Error> {
        let (r, payload) = self.console.call_bulk(console::READ_LINE, [0; 3], &[])?;
        status(&r)?;
        match r.msg.data[0] {
            console::INTERRUPTED => return Ok(ReadLine::Interrupted),
            console::TOO_LONG => return Ok(ReadLine::TooLong(r.msg.data[1])),
            _ => {}
        }
        Ok(ReadLine::Line(String::from_utf8_lossy(&payload).into_owned()))
    }

    /// `cgroup move PATH PID`: the process manager (which holds every process) moves the process
    /// into the group's quota, which resmgr gives us.
    fn cgroup_move(&mut self, args: &[String]) -> Result<String, String> {
        let [group, pid] = args else { return Err("usage: cgroup move PATH PID".into()) };
        let pid: u64 = pid.parse().ok().filter(|&p| p > 0).ok_or_else(|| alloc::format!("{pid} is not a pid"))?;
        let moved = if group.trim_end_matches('/').is_empty() {
            // The root group's quota stays with init and resmgr: init moves the process there.
            self.procmgr.call(procmgr::MOVE, [pid, procmgr::MOVE_TO_ROOT, 0, 0])
        } else {
            let quota = self.group_quota(group).map_err(|e| match e {
                Error::NotFound => alloc::format!("{group}: no such group"),
                Error::BadState => alloc::format!("{group}: enables controllers for its children (cgroup.subtree_control), so it holds no processes"),
                e => alloc::format!("{group}: {e}"),
            })?;
            let moved = self.procmgr.call_with_caps(procmgr::MOVE, [pid, 0, 0, 0], &[quota]);
            let _ = sys::cap_delete(quota);
            moved
        };
        match moved.map_err(|e| alloc::format!("{e}")).and_then(|r| status(&r).map_err(|e| alloc::format!("{e}"))) {
            Ok(()) => Ok(String::new()),
            Err(e) if e == alloc::format!("{}", Error::NotFound) => Err(alloc::format!("no process {pid}")),
            Err(e) => Err(alloc::format!("{pid}: {e}")),
        }
    }

    /// The quota of cgroup `group` (from resmgr), to start a program in.
    fn group_quota(&mut self, group: &str) -> Result<Slot, Error> {
        let resmgr = self.resmgr.as_mut().ok_or(Error::NoRights)?;
        let (r, _) = keel_rt::proto::resmgr::call(resmgr, keel_rt::proto::resmgr::QUOTA, group.as_bytes())?;
        status(&r)?;
        r.caps.slots().next().ok_or(Error::NotFound)
    }

    /// Waits up to `timeout_ns` for Ctrl-C, leaving typed lines queued; true if it came.
    pub fn wait_for_interrupt(&mut self, timeout_ns: u64) -> Result<bool, Error> {
        let r = self.console.call(console::READ_LINE, [timeout_ns, console::INTERRUPT_ONLY, 0, 0])?;
        status(&r)?;
        Ok(r.msg.data[0] == console::INTERRUPTED)
    }
}

/// Whether a `vm` command may leave the shell waiting for the VM or attached to it.
fn stays_with_the_vm(args: &[String]) -> bool {
    args.first().is_some_and(|c| c == "console")
        || args.iter().any(|a| a == "--wait" || a == "--attach" || a == "--timeout" || a.starts_with("--timeout="))
}

/// Whether a `vm` command may be sent again to a restarted monitor: only those that only look.
fn vm_retry(args: &[String]) -> Retry {
    match args.first().map(String::as_str) {
        Some("list" | "stat" | "wait" | "console" | "help" | "info") | None => Retry::Idempotent,
        _ => Retry::Once,
    }
}

/// The SPAWN payload: the path, then the arguments, NUL-separated.
pub fn spawn_payload(path: &str, args: &[String]) -> Result<Vec<u8>, Error> {
    let mut payload = Vec::from(path.as_bytes());
    for a in args {
        payload.push(0);
        payload.extend_from_slice(a.as_bytes());
    }
    if path.contains('\0') || args.iter().any(|a| a.contains('\0')) {
        return Err(Error::Invalid);
    }
    Ok(payload)
}

impl System for LiveSystem {
    type Process = Process;

    fn ps(&mut self) -> Result<Vec<u8>, Error> {
        let (r, payload) = self.procmgr.call_bulk(procmgr::PS, [0; 3], &[])?;
        status(&r)?;
        Ok(payload)
    }

    fn kill(&mut self, pid: u64) -> Result<(), Error> {
        status(&self.procmgr.call(procmgr::KILL, [pid, 0, 0, 0])?)
    }

    fn spawn(&mut self, path: &str, args: &[String], cgroup: Option<&str>, new_pid_ns: bool) -> Result<(u64, Process), Error> {
        let payload = spawn_payload(path, args)?;
        // What the user runs gets no device capabilities and no rights over other processes.
        let flags = procmgr::SPAWN_INHERIT_CONSOLE | procmgr::SPAWN_UNPRIVILEGED | if new_pid_ns { procmgr::SPAWN_NEW_PID_NS } else { 0 };
        // The root group is where a program starts anyway (the shell's own group).
        let quota = match cgroup.filter(|g| !g.trim_end_matches('/').is_empty()) {
            Some(group) => Some(self.group_quota(group)?),
            None => None,
        };
        let spawned = self.procmgr.call_bulk_with_caps(procmgr::SPAWN, [flags, 0, 0], &payload, quota.as_slice());
        if let Some(q) = quota {
            let _ = sys::cap_delete(q);
        }
        let (r, _) = spawned?;
        status(&r)?;
        let pid = r.msg.data[0];
        let slot = r.caps.slots().next().ok_or(Error::Invalid)?;
        // Any further caps are not ours to keep.
        for extra in r.caps.slots().skip(1) {
            let _ = sys::cap_delete(extra);
        }
        Ok((pid, Process(slot)))
    }

    fn set_foreground(&mut self, pid: u64) -> Result<(), Error> {
        status(&self.console.call(console::SET_FOREGROUND, [pid, 0, 0, 0])?)
    }

    fn wait(&mut self, process: &Process) -> Result<i64, Error> {
        sys::process_wait(process.0)
    }

    fn release(&mut self, process: Process) {
        let _ = sys::cap_delete(process.0);
    }

    fn mem_info(&mut self) -> Result<keel_rt::sys::Census, Error> {
        sys::census()
    }

    fn clock(&mut self) -> (u64, u64) {
        (sys::counter(), sys::counter_freq())
    }

    fn power_off(&mut self) -> Result<(), Error> {
        status(&self.procmgr.call(procmgr::POWER_OFF, [0; 4])?)
    }

    fn files(&mut self) -> &mut dyn crate::files::Files {
        &mut self.files
    }

    fn cgroup(&mut self, args: &[String]) -> Result<String, String> {
        if args.first().is_some_and(|a| a == "move") {
            return self.cgroup_move(&args[1..]);
        }
        let Some(resmgr) = self.resmgr.as_mut() else { return Err("this shell was not given the cgroup service".into()) };
        let payload = args.join("\0");
        let (r, text) = keel_rt::proto::resmgr::call(resmgr, keel_rt::proto::resmgr::COMMAND, payload.as_bytes()).map_err(|e| alloc::format!("the cgroup service: {e}"))?;
        status(&r).map_err(|e| alloc::format!("the cgroup service: {e}"))?;
        let text = String::from_utf8_lossy(&text).into_owned();
        if r.msg.data[1] == 0 { Ok(text) } else { Err(text) }
    }

    fn net(&mut self, args: &[String]) -> Result<String, Error> {
        let payload = args.join("\0");
        let (r, text) = self.net.call_bulk(Retry::Idempotent, keel_rt::proto::net::COMMAND, [0; 3], payload.as_bytes())?;
        status(&r)?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    fn vm(&mut self, args: &[String]) -> Result<String, Error> {
        if stays_with_the_vm(args) {
            // The VM runs, and may print, before this call returns: a Ctrl-C typed on seeing its
            // first lines must reach `wait_vm`/`attach`. The console keeps a Ctrl-C only for a
            // reader it counts as waiting, which it does from this zero-length wait until the
            // next read (a Ctrl-C typed earlier is dropped here, as it belonged to no command).
            let _ = self.wait_for_interrupt(1);
        }
        let payload = args.join("\0");
        let r = self.vmm.call_bulk(vm_retry(args), keel_rt::proto::vmm::COMMAND, [0; 3], payload.as_bytes());
        // A restarted monitor starts with no VMs: the ones it ran died with it. Say so once.
        let mut out = String::new();
        if self.vmm.generation() != self.vmm_generation {
            self.vmm_generation = self.vmm.generation();
            out.push_str("vm: the VM monitor restarted; VMs it ran are in vm list (vm start <id> boots one again)\n");
        }
        let (r, text) = match r {
            Ok(r) => r,
            Err(Error::PeerDied) => {
                out.push_str("vm: the VM monitor died during this command; it may not have completed\n");
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        status(&r)?;
        if r.msg.data[0] != 0 {
            self.attached = Some(r.msg.data[0]);
        }
        if r.msg.data[1] != 0 {
            self.waiting = Some((r.msg.data[1], r.msg.data[2]));
        }
        out.push_str(&String::from_utf8_lossy(&text));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_that_wait_for_or_attach_to_a_vm_are_known() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(stays_with_the_vm(&words("run spin --kernel k --wait")));
        assert!(stays_with_the_vm(&words("run linux --attach")));
        assert!(stays_with_the_vm(&words("start 1 --timeout 2")));
        assert!(stays_with_the_vm(&words("console 1")));
        assert!(!stays_with_the_vm(&words("run linux")));
        assert!(!stays_with_the_vm(&words("list")));
        assert!(!stays_with_the_vm(&[]));
    }

    #[test]
    fn spawn_payload_is_the_path_then_nul_separated_arguments() {
        let args = [String::from("a"), String::from("b c")];
        assert_eq!(spawn_payload("/bin/x", &args).unwrap(), b"/bin/x\0a\0b c");
        assert_eq!(spawn_payload("/bin/x", &[]).unwrap(), b"/bin/x");
    }

    #[test]
    fn a_nul_in_an_argument_is_refused() {
        assert_eq!(spawn_payload("/bin/x", &[String::from("a\0b")]), Err(Error::Invalid));
    }
}
