//! Who may ask the process manager for what.
//!
//! Every process reaches procmgr through a capability init badged when it started the process.
//! The badge says who is calling (a number unique to the process) and, in its top bits, what it
//! may do beyond the calls anyone may make (SPAWN, PS, KILL of its own descendants):
//! - [`KILL_ANY`]: KILL any process but init (the shell, and the console for Ctrl-C);
//! - [`MOVE_ANY`]: MOVE any process but init between quotas (resmgr, for `cgroup.procs`);
//! - [`ADMIN`]: POWER_OFF, CONSOLE_CONTROL (the capability that sets the console's foreground),
//!   and SPAWN of a service program with that program's privileges (its device and initrd
//!   capabilities and its own rights bits).
//!
//! A badge cannot be changed by its holder (the kernel refuses to re-badge a badged capability),
//! so these rights come from the capability, not from knowing the endpoint.

/// May kill any process except init.
pub use keel_rt::proto::procmgr::KILL_ANY;
/// May power off, take console control, spawn privileged programs and change cgroup files.
pub use keel_rt::proto::procmgr::ADMIN;
/// May move any process except init into another quota.
pub use keel_rt::proto::procmgr::MOVE_ANY;
/// The rights bits of a badge; the rest identifies the process.
pub const RIGHTS: u64 = KILL_ANY | ADMIN | MOVE_ANY;

/// The rights bits a program started with its privileges gets, by program name.
pub fn program_rights(name: &str) -> u64 {
    match name {
        "shell" | "ktest" => KILL_ANY | ADMIN,
        // Ctrl-C kills the foreground program, whoever started it.
        "console" => KILL_ANY,
        // The cgroup service moves processes between groups (`echo PID > cgroup.procs`).
        "resmgr" => MOVE_ANY,
        _ => 0,
    }
}

/// Whether a SPAWN by a caller with `caller_badge` starts its program with the program's
/// privileges (`unprivileged`: the caller asked for none).
pub fn spawn_privileged(caller_badge: u64, unprivileged: bool) -> bool {
    caller_badge & ADMIN != 0 && !unprivileged
}

/// Why a KILL is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillRefused {
    /// No process with that pid is known.
    NoSuchProcess,
    /// It exists but the caller did not start it (directly or through its children) and may
    /// not kill any process.
    NotYours,
}

/// A process as KILL's check sees it: its pid, its badge, and the badge of whoever SPAWNed it
/// (`None` for services init started itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lineage {
    pub pid: u64,
    pub badge: u64,
    pub parent: Option<u64>,
}

/// Whether the caller with `caller_badge` may kill `pid` among `procs`: any process with
/// [`KILL_ANY`], else only those it spawned or that descend from those.
/// Whether a caller may MOVE process `pid` into another quota: as it may kill it, or any
/// process with [`MOVE_ANY`] (init is refused before this).
pub fn may_move(caller_badge: u64, pid: u64, procs: &[Lineage]) -> Result<(), KillRefused> {
    if caller_badge & MOVE_ANY != 0 {
        return procs.iter().any(|p| p.pid == pid).then_some(()).ok_or(KillRefused::NoSuchProcess);
    }
    may_kill(caller_badge, pid, procs)
}

pub fn may_kill(caller_badge: u64, pid: u64, procs: &[Lineage]) -> Result<(), KillRefused> {
    let target = procs.iter().find(|p| p.pid == pid).ok_or(KillRefused::NoSuchProcess)?;
    if caller_badge & KILL_ANY != 0 {
        return Ok(());
    }
    let mut parent = target.parent;
    // A chain longer than the table would be a loop; badges are never reused, so it cannot be.
    for _ in 0..=procs.len() {
        match parent {
            Some(b) if b == caller_badge => return Ok(()),
            Some(b) => parent = procs.iter().find(|p| p.badge == b).and_then(|p| p.parent),
            None => break,
        }
    }
    Err(KillRefused::NotYours)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHELL: u64 = 2 | KILL_ANY | ADMIN;

    fn procs() -> [Lineage; 5] {
        [
            Lineage { pid: 3, badge: 3, parent: None },      // a service
            Lineage { pid: 7, badge: SHELL, parent: None },  // the shell
            Lineage { pid: 10, badge: 10, parent: Some(SHELL) }, // run by the shell
            Lineage { pid: 11, badge: 11, parent: Some(10) },    // run by 10
            Lineage { pid: 12, badge: 12, parent: Some(SHELL) }, // 10's sibling
        ]
    }

    #[test]
    fn a_process_may_kill_what_it_spawned_and_their_children_only() {
        let p = procs();
        assert_eq!(may_kill(10, 11, &p), Ok(()));
        assert_eq!(may_kill(SHELL, 11, &p), Ok(()));
        assert_eq!(may_kill(10, 12, &p), Err(KillRefused::NotYours));
        assert_eq!(may_kill(11, 10, &p), Err(KillRefused::NotYours));
        assert_eq!(may_kill(10, 10, &p), Err(KillRefused::NotYours));
        assert_eq!(may_kill(10, 3, &p), Err(KillRefused::NotYours));
        assert_eq!(may_kill(10, 99, &p), Err(KillRefused::NoSuchProcess));
    }

    #[test]
    fn kill_any_reaches_services_too() {
        let p = procs();
        assert_eq!(may_kill(SHELL, 3, &p), Ok(()));
        assert_eq!(may_kill(5 | KILL_ANY, 7, &p), Ok(()));
        assert_eq!(may_kill(5 | ADMIN, 3, &p), Err(KillRefused::NotYours));
    }

    #[test]
    fn the_cgroup_service_moves_any_process_but_kills_none() {
        let p = procs();
        assert_eq!(may_move(5 | MOVE_ANY, 3, &p), Ok(()));
        assert_eq!(may_move(5 | MOVE_ANY, 999, &p), Err(KillRefused::NoSuchProcess));
        assert_eq!(may_kill(5 | MOVE_ANY, 3, &p), Err(KillRefused::NotYours));
        assert_eq!(may_move(10, 11, &p), Ok(()), "a parent moves its own children");
        assert_eq!(may_move(10, 12, &p), Err(KillRefused::NotYours));
        assert_eq!(program_rights("resmgr"), MOVE_ANY);
    }

    #[test]
    fn only_admins_spawn_with_privileges_and_only_when_they_ask() {
        assert!(spawn_privileged(SHELL, false));
        assert!(!spawn_privileged(SHELL, true));
        assert!(!spawn_privileged(10 | KILL_ANY, false));
        assert_eq!(program_rights("console"), KILL_ANY);
        assert_eq!(program_rights("hello"), 0);
        assert_eq!(program_rights("fs"), 0);
    }
}
