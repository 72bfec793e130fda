//! Decoding: the registers of a system call become a typed [`Call`]. Every capability argument
//! has been looked up in the caller's table and names an object of the right kind with the
//! rights the call needs; every plain argument is in range. Decoding reads the kernel and
//! changes nothing, so a call that fails here fails with no effect.

use super::caps::{bill, billed_quota, conn, control, irq, managed_quota, notif, pmo, process, quota, thread, vmspace};
use super::vm::{self, VmCall};
use super::{Result, ns_to_ticks, slot};
use crate::cap::Rights;
use crate::hal;
use crate::kernel::{Kernel, cap_error};
use crate::object::{Id, ObjRef};
use crate::sched::runqueue::{CpuSet, PRIORITIES, SchedParams};
use keel_abi::ipc::{CapList, Message};
use keel_abi::{Error, NO_SLOT, PAGE_SIZE, PmoKind, perm, syscall as nr};

/// A decoded system call. `Id`s are objects the caller holds a capability to, with the rights
/// the call needs; slots (`u32`) are arguments whose capability the call itself reads.
#[derive(Clone, Copy, Debug)]
pub enum Call {
    Null,
    DebugWrite { va: u64, len: u64 },
    Yield,
    ThreadExit,
    ProcessExit { code: i64 },
    CapInfo { slot: u32 },
    /// `dest`: the table the copy goes to (the caller's own, or a process it manages).
    CapCopy { src: u32, dest: Id, rights: Rights, badge: Option<u64> },
    CapMove { src: u32, dest: Id },
    CapDelete { slot: u32 },
    CapRevoke { slot: u32 },
    /// `quota`: the quota the new process is in.
    ProcessCreate { name_va: u64, name_len: u64, quota: Id },
    ThreadCreate { process: Id, entry: u64, stack: u64, arg: u64, params: SchedParams },
    /// `quota`: the quota its frames are charged to.
    PmoCreate { kind: PmoKind, size: u64, quota: Id },
    PmoWrite { pmo: Id, offset: u64, va: u64, len: u64 },
    PmoRead { pmo: Id, offset: u64, va: u64, len: u64 },
    PmoPhys { pmo: Id },
    VmspaceMap { vmspace: Id, pmo: Id, va: u64, size: u64, offset: u64, perms: u64 },
    VmspaceUnmap { vmspace: Id, va: u64, size: u64 },
    ProcessWait { process: Id },
    ProcessKill { process: Id, code: i64 },
    ProcessInfo { process: Id },
    ProcessWatch { process: Id, notif: Id, bits: u64 },
    ConnCreate,
    IpcCall { conn: Id, badge: u64, msg: Message, caps: CapList },
    /// The connection now dies when `process` exits (instead of its creator).
    ConnOwner { conn: Id, process: Id },
    IpcRecv { conn: Id },
    /// `recv`: with `ipc_reply_recv`, the connection to wait on next.
    IpcReply { msg: Message, caps: CapList, recv: Option<Id> },
    NotifCreate,
    NotifSignal { notif: Id, bits: u64 },
    NotifWait { notif: Id, deadline: Option<u64> },
    IrqCreate { intid: u32 },
    IrqBind { intid: u32, notif: Id, bits: u64 },
    IrqAck { intid: u32 },
    DevicePmo { phys: u64, size: u64 },
    MemInfo { page: u64 },
    FaultInject { n: u64 },
    PowerOff { reset: bool },
    ThreadSetSched { thread: Id, params: SchedParams },
    Sleep { deadline: u64 },
    QuotaCreate { parent: Id },
    QuotaSet { quota: Id, resource: u64, limit: u64 },
    /// `cpu.max`: `quota_ns` (NO_LIMIT: none) of run time per `period_ns`.
    QuotaSetCpu { quota: Id, quota_ns: u64, period_ns: u64 },
    QuotaSetWeight { quota: Id, weight: u64 },
    QuotaStatCpu { quota: Id },
    QuotaStat { quota: Id, resource: u64 },
    /// Move `process` (and its threads and page tables' charges) into `quota`.
    QuotaMove { quota: Id, process: Id },
    /// Move one live thread (its count, record and CPU time) into `quota`.
    QuotaMoveThread { quota: Id, thread: Id },
    /// A bill on which the caller charges `payer` for memory it keeps for it.
    BillCreate { payer: Id },
    BillCharge { bill: Id, bytes: u64 },
    BillRefund { bill: Id, bytes: u64 },
    Vm(VmCall),
}

/// Decodes the call in `a` (x0..x30) made by process `pid`.
#[inline(always)]
pub fn decode(k: &Kernel, pid: Id, a: &[u64; 31]) -> Result<Call> {
    Ok(match a[8] {
        nr::NULL => Call::Null,
        nr::DEBUG_WRITE => {
            if a[1] > 4096 {
                return Err(Error::Invalid);
            }
            Call::DebugWrite { va: a[0], len: a[1] }
        }
        nr::YIELD => Call::Yield,
        nr::THREAD_EXIT => Call::ThreadExit,
        nr::PROCESS_EXIT => Call::ProcessExit { code: a[0] as i64 },
        nr::CAP_INFO => Call::CapInfo { slot: slot(a[0])? },
        nr::CAP_COPY => {
            let src = slot(a[0])?;
            slot(a[1])?;
            let bits = u32::try_from(a[2]).map_err(|_| Error::Invalid)?;
            let dest = dest_table(k, pid, a[1])?;
            let rights = Rights::from_bits(bits).ok_or(Error::Invalid)?;
            Call::CapCopy { src, dest, rights, badge: (a[3] != 0).then_some(a[3]) }
        }
        nr::CAP_MOVE => Call::CapMove { src: slot(a[0])?, dest: dest_table(k, pid, a[1])? },
        nr::CAP_DELETE => Call::CapDelete { slot: slot(a[0])? },
        nr::CAP_REVOKE => Call::CapRevoke { slot: slot(a[0])? },
        nr::PROCESS_CREATE => {
            if a[1] > 64 {
                return Err(Error::Invalid);
            }
            Call::ProcessCreate { name_va: a[0], name_len: a[1], quota: billed_quota(k, pid, a[2])? }
        }
        nr::THREAD_CREATE => {
            let process = process(k, pid, a[0], Rights::MANAGE)?;
            let (entry, stack) = (a[1], a[2]);
            if !(keel_abi::USER_MIN_VA..keel_abi::USER_MAX_VA).contains(&entry) || entry % 4 != 0 {
                return Err(Error::BadAddress);
            }
            if stack % 16 != 0 || stack > keel_abi::USER_MAX_VA {
                return Err(Error::BadAddress);
            }
            Call::ThreadCreate { process, entry, stack, arg: a[3], params: sched_params(k, a[4], a[5])? }
        }
        nr::PMO_CREATE => {
            let size = a[1].checked_next_multiple_of(PAGE_SIZE).ok_or(Error::Invalid)?;
            if size == 0 || size > keel_abi::PMO_MAX_SIZE {
                return Err(Error::Invalid);
            }
            let kind = match a[0] {
                0 => PmoKind::Anonymous,
                1 if size <= keel_abi::PMO_MAX_CONTIGUOUS => PmoKind::Contiguous,
                _ => return Err(Error::Invalid),
            };
            Call::PmoCreate { kind, size, quota: billed_quota(k, pid, a[2])? }
        }
        nr::PMO_WRITE => Call::PmoWrite { pmo: pmo(k, pid, a[0], Rights::WRITE)?, offset: a[1], va: a[2], len: a[3] },
        nr::PMO_READ => Call::PmoRead { pmo: pmo(k, pid, a[0], Rights::READ)?, offset: a[1], va: a[2], len: a[3] },
        nr::PMO_PHYS => Call::PmoPhys { pmo: pmo(k, pid, a[0], Rights::MANAGE)? },
        nr::VMSPACE_MAP => vmspace_map(k, pid, a)?,
        nr::VMSPACE_UNMAP => Call::VmspaceUnmap { vmspace: vmspace(k, pid, a[0], Rights::MAP)?, va: a[1], size: a[2] },
        nr::PROCESS_WAIT => Call::ProcessWait { process: process(k, pid, a[0], Rights::WAIT)? },
        nr::PROCESS_KILL => Call::ProcessKill { process: process(k, pid, a[0], Rights::MANAGE)?, code: a[1] as i64 },
        nr::PROCESS_INFO => Call::ProcessInfo { process: process(k, pid, a[0], Rights::READ)? },
        nr::PROCESS_WATCH => {
            let process = process(k, pid, a[0], Rights::WAIT)?;
            let notif = notif(k, pid, a[1], Rights::SIGNAL)?;
            Call::ProcessWatch { process, notif, bits: nonzero(a[2])? }
        }
        nr::CONN_CREATE => Call::ConnCreate,
        nr::CONN_OWNER => Call::ConnOwner { conn: conn(k, pid, a[0], Rights::MANAGE)?, process: process(k, pid, a[1], Rights::WAIT)? },
        nr::IPC_CALL => {
            let cap = k.caps.lookup(pid, slot(a[0])?, Rights::CALL).map_err(cap_error)?;
            let ObjRef::Conn(conn) = cap.object else { return Err(Error::WrongType) };
            let caps = grantable(k, pid, a[7])?;
            Call::IpcCall { conn, badge: cap.badge, msg: message(a), caps }
        }
        nr::IPC_RECV => Call::IpcRecv { conn: conn(k, pid, a[0], Rights::SERVE)? },
        nr::IPC_REPLY_RECV => Call::IpcReply { msg: message(a), caps: CapList(a[7]), recv: Some(conn(k, pid, a[0], Rights::SERVE)?) },
        nr::IPC_REPLY => Call::IpcReply { msg: message(a), caps: CapList(a[7]), recv: None },
        nr::NOTIF_CREATE => Call::NotifCreate,
        nr::NOTIF_SIGNAL => Call::NotifSignal { notif: notif(k, pid, a[0], Rights::SIGNAL)?, bits: nonzero(a[1])? },
        nr::NOTIF_WAIT => {
            let notif = notif(k, pid, a[0], Rights::WAIT)?;
            let deadline = (a[1] != 0).then(|| after_ns(a[1]));
            Call::NotifWait { notif, deadline }
        }
        nr::IRQ_CREATE => {
            control(k, pid, a[0])?;
            let intid = u32::try_from(a[1]).map_err(|_| Error::Invalid)?;
            if !k.claimable_irqs.contains(&intid) {
                return Err(Error::Invalid);
            }
            Call::IrqCreate { intid }
        }
        nr::IRQ_BIND => {
            let intid = irq(k, pid, a[0], Rights::MANAGE)?;
            let notif = notif(k, pid, a[1], Rights::SIGNAL)?;
            Call::IrqBind { intid, notif, bits: nonzero(a[2])? }
        }
        nr::IRQ_ACK => Call::IrqAck { intid: irq(k, pid, a[0], Rights::MANAGE)? },
        nr::DEVICE_PMO => {
            control(k, pid, a[0])?;
            let (phys, size) = (a[1], a[2]);
            if phys % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
                return Err(Error::Unaligned);
            }
            let end = phys.checked_add(size).ok_or(Error::Invalid)?;
            if size == 0 || end > (1 << 48) {
                return Err(Error::Invalid);
            }
            // Device memory only: never RAM (that would hand out the kernel and other processes).
            if k.ram.iter().any(|&(base, len)| phys < base + len && base < end) {
                return Err(Error::Invalid);
            }
            Call::DevicePmo { phys, size }
        }
        nr::MEM_INFO => Call::MemInfo { page: a[0] },
        nr::FAULT_INJECT => {
            control(k, pid, a[0])?;
            Call::FaultInject { n: a[1] }
        }
        nr::POWER_OFF => {
            control(k, pid, a[0])?;
            Call::PowerOff { reset: a[1] != 0 }
        }
        nr::THREAD_SET_SCHED => Call::ThreadSetSched { thread: thread(k, pid, a[0], Rights::MANAGE)?, params: sched_params(k, a[1], a[2])? },
        nr::SLEEP => Call::Sleep { deadline: after_ns(a[0]) },
        nr::QUOTA_CREATE => Call::QuotaCreate { parent: quota(k, pid, a[0], Rights::MANAGE)? },
        nr::QUOTA_SET => {
            let q = quota(k, pid, a[0], Rights::MANAGE)?;
            match a[1] {
                keel_abi::quota::CPU => {
                    let (quota_ns, period_ns) = (a[2], a[3]);
                    if !keel_abi::quota::CPU_PERIOD_NS.contains(&period_ns) {
                        return Err(Error::Invalid);
                    }
                    // cgroup v2's smallest quota: 1 ms.
                    if quota_ns != keel_abi::quota::NO_LIMIT && quota_ns < 1_000_000 {
                        return Err(Error::Invalid);
                    }
                    Call::QuotaSetCpu { quota: q, quota_ns, period_ns }
                }
                keel_abi::quota::CPU_WEIGHT if keel_abi::quota::CPU_WEIGHTS.contains(&a[2]) => Call::QuotaSetWeight { quota: q, weight: a[2] },
                keel_abi::quota::CPU_WEIGHT => return Err(Error::Invalid),
                r => Call::QuotaSet { quota: q, resource: resource(r)?, limit: a[2] },
            }
        }
        nr::QUOTA_STAT => {
            let q = quota(k, pid, a[0], Rights::READ)?;
            match a[1] {
                keel_abi::quota::CPU => Call::QuotaStatCpu { quota: q },
                r => Call::QuotaStat { quota: q, resource: resource(r)? },
            }
        }
        nr::QUOTA_MOVE => {
            let quota = managed_quota(k, pid, a[0])?;
            match k.caps.lookup(pid, slot(a[1])?, Rights::MANAGE).map_err(cap_error)?.object {
                ObjRef::Process(process) => match k.processes.get(&process) {
                    Some(p) if p.state == crate::object::process::ProcState::Running => Call::QuotaMove { quota, process },
                    _ => return Err(Error::BadState),
                },
                ObjRef::Thread(thread) => match k.threads.get(&thread) {
                    Some(t) if t.counted => Call::QuotaMoveThread { quota, thread },
                    _ => return Err(Error::BadState),
                },
                _ => return Err(Error::WrongType),
            }
        }
        nr::BILL_CREATE => Call::BillCreate { payer: billed_quota(k, pid, a[0])? },
        nr::BILL_CHARGE => Call::BillCharge { bill: bill(k, pid, a[0], Rights::MANAGE)?, bytes: a[1] },
        nr::BILL_REFUND => Call::BillRefund { bill: bill(k, pid, a[0], Rights::MANAGE)?, bytes: a[1] },
        _ => Call::Vm(vm::decode(k, pid, a)?),
    })
}

/// A quota resource number.
fn resource(r: u64) -> Result<u64> {
    if r < keel_abi::quota::RESOURCES { Ok(r) } else { Err(Error::Invalid) }
}

fn nonzero(bits: u64) -> Result<u64> {
    if bits == 0 { Err(Error::Invalid) } else { Ok(bits) }
}

/// The counter value `ns` nanoseconds from now (at least one tick away).
fn after_ns(ns: u64) -> u64 {
    hal::now_ticks().saturating_add(ns_to_ticks(ns).max(1))
}

/// A message from registers x1..x5.
fn message(a: &[u64; 31]) -> Message {
    Message { label: a[1], data: [a[2], a[3], a[4], a[5]] }
}

/// The cap list in `reg` when the caller may grant every cap it names.
#[inline]
fn grantable(k: &Kernel, pid: Id, reg: u64) -> Result<CapList> {
    let caps = CapList(reg);
    if caps.is_empty() {
        return Ok(caps);
    }
    for s in caps.slots() {
        k.caps.lookup(pid, s, Rights::GRANT).map_err(cap_error)?;
    }
    Ok(caps)
}

/// The table a cap goes to: the caller's own (`NO_SLOT`) or a running process it manages.
fn dest_table(k: &Kernel, pid: Id, reg: u64) -> Result<Id> {
    if slot(reg)? == NO_SLOT {
        return Ok(pid);
    }
    let dest = process(k, pid, reg, Rights::MANAGE)?;
    match k.processes.get(&dest) {
        Some(p) if p.state == crate::object::process::ProcState::Running => Ok(dest),
        _ => Err(Error::BadState),
    }
}

/// A priority and an affinity mask (0 = every CPU).
fn sched_params(k: &Kernel, priority: u64, affinity: u64) -> Result<SchedParams> {
    if priority >= PRIORITIES as u64 {
        return Err(Error::Invalid);
    }
    let all = CpuSet::all(k.ncpus);
    let set = if affinity == 0 { all } else { CpuSet::from_bits(affinity & all.bits()) };
    if set.is_empty() {
        return Err(Error::Invalid);
    }
    Ok(SchedParams { priority: priority as u8, affinity: set })
}

fn vmspace_map(k: &Kernel, pid: Id, a: &[u64; 31]) -> Result<Call> {
    let vmspace = vmspace(k, pid, a[0], Rights::MAP)?;
    let (va, size, offset, perms) = (a[2], a[3], a[4], a[5]);
    if perms & !perm::ALL != 0 || perms & perm::READ == 0 {
        return Err(Error::Invalid);
    }
    if perms & perm::WRITE != 0 && perms & perm::EXEC != 0 {
        return Err(Error::Invalid); // W^X
    }
    let mut need = Rights::MAP.union(Rights::READ);
    if perms & perm::WRITE != 0 {
        need = need.union(Rights::WRITE);
    }
    if perms & perm::EXEC != 0 {
        need = need.union(Rights::EXEC);
    }
    let pmo = pmo(k, pid, a[1], need)?;
    if offset % PAGE_SIZE != 0 {
        return Err(Error::Unaligned);
    }
    let pmo_size = k.pmos.get(&pmo).ok_or(Error::PeerDied)?.size;
    match offset.checked_add(size) {
        Some(end) if end <= pmo_size => {}
        _ => return Err(Error::Invalid),
    }
    Ok(Call::VmspaceMap { vmspace, pmo, va, size, offset, perms })
}
