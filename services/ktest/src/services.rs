//! Clients of the services ktest uses: the process manager (init) to spawn, kill and list
//! processes, and the name service to publish and find the echo server.
//!
//! Failures come back as the kernel's or the server's `Error` (a reply label that is a negative
//! error code), so a scenario can say which call failed and how.

use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::ipc::{self, Client};
use keel_rt::proto::{namesrv, pack_name, procmgr};
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, sys};

/// The ktest binary in the initrd (spawned for every helper process).
pub const KTEST_PATH: &str = "/bin/ktest";

/// A process spawned through the process manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spawned {
    pub pid: u64,
    /// Our capability to it (READ | WAIT | MANAGE).
    pub process: Slot,
}

/// The SPAWN payload: the program path, then its arguments, NUL-separated.
pub fn spawn_payload(path: &str, args: &[&str]) -> Vec<u8> {
    let mut out = Vec::from(path.as_bytes());
    for a in args {
        out.push(0);
        out.extend_from_slice(a.as_bytes());
    }
    out
}

/// One line of the process list.
pub use keel_rt::proto::procmgr::PsLine as PsEntry;

/// Parses the PS payload; a line that does not parse is an error naming it.
pub fn parse_ps(text: &str) -> Result<Vec<PsEntry>, String> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| PsEntry::parse(l).ok_or_else(|| alloc::format!("bad process list line {l:?}"))).collect()
}

/// The process manager, through the `procmgr` capability.
pub struct Procmgr {
    client: Client,
}

impl Procmgr {
    pub fn from_startup(startup: &Startup) -> Option<Self> {
        startup.cap("procmgr").map(|s| Self { client: Client::new(s) })
    }

    /// Spawns `path` with `args`.
    pub fn spawn(&mut self, path: &str, args: &[&str]) -> Result<Spawned, Error> {
        self.spawn_flags(path, args, 0)
    }

    /// Spawns `path` with `args` and SPAWN flags (`procmgr::SPAWN_UNPRIVILEGED`).
    pub fn spawn_flags(&mut self, path: &str, args: &[&str], flags: u64) -> Result<Spawned, Error> {
        self.spawn_with_caps(path, args, flags, &[])
    }

    /// Spawns `path` with `args` in quota `quota` (a slot with MANAGE and GRANT).
    pub fn spawn_in(&mut self, quota: Slot, path: &str, args: &[&str]) -> Result<Spawned, Error> {
        self.spawn_with_caps(path, args, 0, &[quota])
    }

    /// SPAWN carrying `caps`.
    pub fn spawn_with_caps(&mut self, path: &str, args: &[&str], flags: u64, caps: &[Slot]) -> Result<Spawned, Error> {
        let (r, _) = self.client.call_bulk_with_caps(procmgr::SPAWN, [flags, 0, 0], &spawn_payload(path, args), caps)?;
        let caps: Vec<Slot> = r.caps.slots().collect();
        let status = ipc::status(&r).map(|m| m.data[0]);
        match (status, caps.first()) {
            (Ok(pid), Some(&process)) => {
                for &extra in &caps[1..] {
                    let _ = sys::cap_delete(extra);
                }
                Ok(Spawned { pid, process })
            }
            (Ok(_), None) => Err(Error::NotFound),
            (Err(e), _) => {
                for c in caps {
                    let _ = sys::cap_delete(c);
                }
                Err(e)
            }
        }
    }

    /// Spawns the ktest binary in another mode.
    pub fn spawn_ktest(&mut self, args: &[&str]) -> Result<Spawned, Error> {
        self.spawn(KTEST_PATH, args)
    }

    pub fn kill(&mut self, pid: u64) -> Result<(), Error> {
        let r = self.client.call(procmgr::KILL, [pid, 0, 0, 0])?;
        ipc::status(&r).map(|_| ())
    }

    /// A call with no payload and no caps expected back; its reply data.
    pub fn call(&mut self, label: u64, data: [u64; 4]) -> Result<[u64; 4], Error> {
        let r = self.client.call(label, data)?;
        for c in r.caps.slots() {
            let _ = sys::cap_delete(c);
        }
        ipc::status(&r).map(|m| m.data)
    }

    /// CONSOLE_CONTROL: the console connection that may set the foreground.
    pub fn console_control(&mut self) -> Result<Slot, Error> {
        let r = self.client.call(procmgr::CONSOLE_CONTROL, [0; 4])?;
        let caps: Vec<Slot> = r.caps.slots().collect();
        match (ipc::status(&r), caps.first()) {
            (Ok(_), Some(&c)) => {
                for &extra in &caps[1..] {
                    let _ = sys::cap_delete(extra);
                }
                Ok(c)
            }
            (Ok(_), None) => Err(Error::NotFound),
            (Err(e), _) => {
                for c in caps {
                    let _ = sys::cap_delete(c);
                }
                Err(e)
            }
        }
    }

    /// The process list, raw.
    pub fn ps_text(&mut self) -> Result<String, Error> {
        let (r, payload) = self.client.call_bulk(procmgr::PS, [0; 3], &[])?;
        ipc::status(&r)?;
        String::from_utf8(payload).map_err(|_| Error::Invalid)
    }
}

/// The name service, through the `namesrv` capability.
pub struct Namesrv {
    client: Client,
}

impl Namesrv {
    pub fn from_startup(startup: &Startup) -> Option<Self> {
        startup.cap("namesrv").map(|s| Self { client: Client::new(s) })
    }

    pub fn slot(&self) -> Slot {
        self.client.slot()
    }

    /// Publishes `conn` as `name`.
    pub fn register(&self, name: &str, conn: Slot) -> Result<(), Error> {
        let r = self.client.call_with_caps(namesrv::REGISTER, pack_name(name)?, &[conn])?;
        ipc::status(&r).map(|_| ())
    }

    /// A connection capability for `name`.
    pub fn lookup(&self, name: &str) -> Result<Slot, Error> {
        let r = self.client.call(namesrv::LOOKUP, pack_name(name)?)?;
        let caps: Vec<Slot> = r.caps.slots().collect();
        if let Err(e) = ipc::status(&r) {
            for c in caps {
                let _ = sys::cap_delete(c);
            }
            return Err(e);
        }
        let mut caps = caps.into_iter();
        let conn = caps.next().ok_or(Error::NotFound)?;
        for extra in caps {
            let _ = sys::cap_delete(extra);
        }
        Ok(conn)
    }

    /// Looks `name` up until it is registered, for up to `timeout_ms`. Gives up early with
    /// `PeerDied` if `server` (the process expected to register it) exits.
    pub fn wait_for(&self, name: &str, server: Option<Slot>, timeout_ms: u64) -> Result<Slot, Error> {
        let mut waited = 0;
        loop {
            match self.lookup(name) {
                Err(Error::NotFound) if waited < timeout_ms => {}
                other => return other,
            }
            if let Some(p) = server {
                if sys::process_info(p).is_ok_and(|i| !i.running) {
                    return Err(Error::PeerDied);
                }
            }
            sys::sleep_ns(10_000_000);
            waited += 10;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_payloads_are_nul_separated() {
        assert_eq!(spawn_payload("/bin/ktest", &["ipc-server", "x"]), b"/bin/ktest\0ipc-server\0x");
        assert_eq!(spawn_payload("/bin/ktest", &[]), b"/bin/ktest");
    }

    #[test]
    fn process_lists_parse() {
        let ps = parse_ps("1\tinit\trunning\t120\n7\t/bin/namesrv\trunning\t64\n\n9\tktest\texited(-9)\t0\n").unwrap();
        assert_eq!(ps.len(), 3);
        assert_eq!(ps[1], PsEntry { pid: 7, name: "/bin/namesrv".into(), state: "running".into(), mem_kib: 64, quota: 0 });
        assert!(ps[1].is_program("namesrv"));
        assert!(!ps[1].is_program("srv"));
        assert!(ps[0].is_running());
        assert!(!ps[2].is_running());
    }

    #[test]
    fn malformed_process_lists_are_errors() {
        assert!(parse_ps("1 init running 5\n").is_err());
        assert!(parse_ps("x\tinit\trunning\t5\n").is_err());
        assert!(parse_ps("1\tinit\trunning\n").is_err());
        assert_eq!(parse_ps(""), Ok(Vec::new()));
    }
}
