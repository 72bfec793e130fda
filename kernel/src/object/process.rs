//! Processes (ChCore's CapGroup): a slot table, an address space, threads, and an exit status.
//!
//! A process is `Running` until its last thread exits, it calls `process_exit`, it is killed, or it
//! faults; then it is `Exited` with a code and every resource it held is released. The record
//! itself stays while capabilities name it, so parents can still read its exit code.

use super::Id;
use alloc::string::String;
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcState {
    Running,
    Exited(i64),
}

pub struct Process {
    pub pid: Id,
    pub name: String,
    pub vmspace: Id,
    pub threads: Vec<Id>,
    pub state: ProcState,
    /// Notifications signalled when the process exits (notification id, bits).
    pub watchers: Vec<(Id, u64)>,
    /// Threads of this process still running on some CPU after it exited: the address space is
    /// released when the last of them is dropped.
    pub running_after_exit: usize,
    /// Whether the process still holds its address-space reference.
    pub holds_vmspace: bool,
    /// References: caps to this process.
    pub refs: u32,
    /// The quota it is in (object/quota.rs): its count while it runs, its record, its threads
    /// and its page tables are charged there.
    pub quota: Id,
}

impl Process {
    pub fn new(pid: Id, name: String, vmspace: Id, quota: Id) -> Self {
        Self {
            pid,
            name,
            vmspace,
            threads: Vec::new(),
            state: ProcState::Running,
            watchers: Vec::new(),
            running_after_exit: 0,
            holds_vmspace: true,
            refs: 0,
            quota,
        }
    }
}
