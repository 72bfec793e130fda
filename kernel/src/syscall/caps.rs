//! Typed capability lookups for decoding: the object a slot argument names, checked for its kind
//! and for the rights a call needs.

use super::{Result, slot};
use crate::cap::Rights;
use crate::kernel::{Kernel, cap_error};
use crate::object::pmo::Backing;
use crate::object::{Id, ObjRef};
use keel_abi::Error;

/// The object slot `reg` names in `pid`'s table, if its cap has `need`.
fn object(k: &Kernel, pid: Id, reg: u64, need: Rights) -> Result<ObjRef> {
    k.caps.lookup(pid, slot(reg)?, need).map(|c| c.object).map_err(cap_error)
}

/// Defines `fn name(k, pid, reg, need) -> Result<T>`: the object of kind `Variant` that slot
/// `reg` names with `need`, or `WrongType`.
macro_rules! typed_lookups {
    ($($name:ident => $variant:ident: $t:ty),* $(,)?) => {$(
        pub(super) fn $name(k: &Kernel, pid: Id, reg: u64, need: Rights) -> Result<$t> {
            match object(k, pid, reg, need)? {
                ObjRef::$variant(id) => Ok(id),
                _ => Err(Error::WrongType),
            }
        }
    )*};
}

typed_lookups! {
    process => Process: Id,
    thread => Thread: Id,
    vmspace => VmSpace: Id,
    pmo => Pmo: Id,
    conn => Conn: Id,
    notif => Notif: Id,
    irq => Irq: u32,
    vm => Vm: Id,
    vcpu => VCpu: Id,
    vm_irq_line => VmIrqLine: Id,
    quota => Quota: Id,
    bill => Bill: Id,
}

/// The quota a new object or process is charged to: slot `reg` names a quota or a process (its
/// quota), with MANAGE or BILL; slot 0, the caller's own process, is the caller's quota.
pub(super) fn billed_quota(k: &Kernel, pid: Id, reg: u64) -> Result<Id> {
    named_quota(k, pid, reg, true)
}

/// A quota to move something into: as [`billed_quota`], but MANAGE only (slot 0: a thread
/// moving back home).
pub(super) fn managed_quota(k: &Kernel, pid: Id, reg: u64) -> Result<Id> {
    named_quota(k, pid, reg, false)
}

/// The quota slot `reg` names: a quota, a process's quota, or (slot 0) the caller's; the cap
/// needs MANAGE, or with `bill_ok` BILL instead.
fn named_quota(k: &Kernel, pid: Id, reg: u64, bill_ok: bool) -> Result<Id> {
    let of_process = |p: Id| k.processes.get(&p).map(|p| p.quota).ok_or(Error::PeerDied);
    if reg == u64::from(keel_abi::slots::SELF_PROCESS) {
        return of_process(pid);
    }
    let cap = k.caps.lookup(pid, slot(reg)?, Rights::NONE).map_err(cap_error)?;
    if !cap.rights.contains(Rights::MANAGE) && !(bill_ok && cap.rights.contains(Rights::BILL)) {
        return Err(Error::NoRights);
    }
    match cap.object {
        ObjRef::Quota(q) => Ok(q),
        ObjRef::Process(p) => of_process(p),
        _ => Err(Error::WrongType),
    }
}

/// The machine's control cap (MANAGE).
pub(super) fn control(k: &Kernel, pid: Id, reg: u64) -> Result {
    match object(k, pid, reg, Rights::MANAGE)? {
        ObjRef::Control => Ok(()),
        _ => Err(Error::WrongType),
    }
}

/// The size of `pmo`, if it can back guest RAM (device memory cannot).
pub(super) fn guest_ram_capable(k: &Kernel, pmo: Id) -> Result<u64> {
    let p = k.pmos.get(&pmo).ok_or(Error::BadState)?;
    if matches!(p.backing, Backing::Phys { .. }) {
        return Err(Error::Invalid);
    }
    Ok(p.size)
}
