//! Invoking the quota calls: a new child quota, and moving a process or a thread between quotas. (Setting
//! a limit and reading usage are one call each on the quota table, in `mod.rs`.)

use super::{Outcome, Result, install_new};
use crate::cap::Rights;
use crate::kernel::{Kernel, PROCESS_RECORD, THREAD_RECORD};
use crate::object::quota::QUOTAS;
use crate::object::{Id, ObjRef};
use keel_abi::quota::{MEMORY, PROCESSES, THREADS};

/// A child of `parent`, with no limits of its own, as a new cap with every right.
pub(super) fn create(k: &mut Kernel, pid: Id, parent: Id) -> Result<Outcome> {
    k.check_heap()?;
    let child = QUOTAS.lock().create_child(parent)?;
    install_new(k, pid, ObjRef::Quota(child), Rights::ALL, |_| QUOTAS.lock().forget_if_unused(child))
}

/// Moves running process `pid` into `to`: from now on its count, its record, its threads' counts
/// and records, and its page tables are charged there. Never refused (cgroup v2: a move may take
/// a group over its limits; limits stop new work). Memory objects stay charged where they were.
pub(super) fn move_process(k: &mut Kernel, pid: Id, to: Id) {
    let Some(p) = k.processes.get_mut(&pid) else { return };
    let from = p.quota;
    if from == to {
        return;
    }
    p.quota = to;
    let vs = p.vmspace;
    let threads = p.threads.clone();
    {
        let mut quotas = QUOTAS.lock();
        quotas.join(to);
        quotas.transfer(from, to, PROCESSES, 1);
        quotas.transfer(from, to, MEMORY, PROCESS_RECORD);
        for tid in threads {
            // A thread carries its own charge: move those that are where the process was.
            if let Some(t) = k.threads.get_mut(&tid).filter(|t| t.quota == from) {
                t.quota = to;
                if t.counted {
                    quotas.transfer(from, to, THREADS, 1);
                }
                quotas.transfer(from, to, MEMORY, THREAD_RECORD);
            }
        }
    }
    if let Some(v) = k.vmspaces.get_mut(&vs) {
        v.tables.move_to(to);
    }
    QUOTAS.lock().leave(from);
}

/// A bill on which the caller's quota (the holder) charges `payer` for memory it keeps for the
/// payer, as a new cap with every right; x2 is 1 when payer and holder are one quota (charges on
/// it change nothing: the caller may as well not make them).
pub(super) fn bill_create(k: &mut Kernel, pid: Id, payer: Id) -> Result<Outcome> {
    k.check_heap()?;
    let holder = k.processes.get(&pid).map(|p| p.quota).ok_or(keel_abi::Error::PeerDied)?;
    let bill = QUOTAS.lock().bill_create(payer, holder)?;
    let slot = k.install_cap(pid, ObjRef::Bill(bill), Rights::ALL).inspect_err(|_| QUOTAS.lock().bill_remove(bill))?;
    Ok(Outcome::words(&[u64::from(slot), u64::from(payer == holder)]))
}

/// Moves live thread `tid` alone into `to` (a VM's vCPU thread into the VM's group, say): from
/// now on its count, its record and its CPU time are charged there; a later move of its process
/// leaves it where it is. Never refused by limits, as a process's move. Its record's charge keeps
/// `to` alive while the thread is.
pub(super) fn move_thread(k: &mut Kernel, tid: Id, to: Id) {
    let Some(t) = k.threads.get_mut(&tid) else { return };
    let from = t.quota;
    if from == to {
        return;
    }
    t.quota = to;
    let mut quotas = QUOTAS.lock();
    if t.counted {
        quotas.transfer(from, to, THREADS, 1);
    }
    quotas.transfer(from, to, MEMORY, THREAD_RECORD);
}
