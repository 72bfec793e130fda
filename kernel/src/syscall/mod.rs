//! System calls (numbers and registers: docs/ABI.md), in three steps:
//!
//! 1. **Decode** (`decode.rs`): the registers become a typed [`Call`]; every capability argument
//!    is looked up with the rights the call needs, every plain argument checked. Nothing changes.
//! 2. **Invoke** (below, and `vm.rs` for the virtual-machine calls): the call acts on its objects
//!    and says what its caller gets, an [`Outcome`]. A call either does all of its work or fails
//!    with no effect.
//! 3. **Finish** ([`dispatch`]): the result is written into the caller's registers, once: x0 = 0
//!    and the result words, or x0 = the negative error code. A caller that blocked (or runs its
//!    guest, or exited) gets its result when it wakes, written into its saved registers by
//!    whoever wakes it.

mod caps;
mod decode;
mod quota;
pub mod vm;

use decode::Call;

use crate::cap::Rights;
use crate::hal;
use crate::kernel::{Kernel, cap_error};
use crate::object::pmo::Pmo;
use crate::object::process::ProcState;
use crate::object::thread::{Block, Outcome, UserRegs, set_return};
use crate::object::vmspace::{Access, FaultError};
use crate::object::{Id, ObjRef};
use crate::object::ipc::{Connection, Notification};
use alloc::vec::Vec;
use keel_abi::{Error, PAGE_SIZE, PmoKind};

type Result<T = ()> = core::result::Result<T, Error>;

/// Handles the system call in `frame` made by the current thread of `cpu`.
pub fn dispatch(k: &mut Kernel, cpu: usize, frame: &mut UserRegs) {
    let Some(tid) = k.current[cpu] else { return };
    // A thread killed from another CPU while it trapped here makes no call: it is dropped at
    // the reschedule its kill asked for (a call could block it, and a blocked thread would
    // later run again in a process that has ended).
    if k.cpus[cpu].need_resched && k.threads.get(&tid).is_none_or(|t| t.state == crate::object::thread::ThreadState::Dead) {
        return;
    }
    let pid = k.cpus[cpu].pid;
    debug_assert_eq!(k.threads.get(&tid).map(|t| t.pid), Some(pid), "cpu{cpu}: the cached pid of the current thread is stale");
    crate::failpoint::begin(tid);
    let result = match decode::decode(k, pid, &frame.x) {
        Ok(call) => invoke(k, cpu, tid, pid, frame, call),
        Err(e) => Err(e),
    };
    crate::failpoint::end();
    match result {
        Ok(Outcome::Done) => frame.x[0] = 0,
        Ok(Outcome::Return(words)) => set_return(frame, 0, words.as_slice()),
        Ok(Outcome::ReturnAfterYield) => {
            set_return(frame, 0, &[]);
            k.yield_current(cpu, frame);
        }
        Ok(Outcome::Suspended) => {}
        Err(e) => {
            log::trace!("process {pid} thread {tid}: system call {} failed: {e:?}", frame.x[8]);
            frame.x[0] = e.code() as u64;
        }
    }
}

/// A slot argument. Slots are 32 bits: a register with any high bit set names no slot (it must
/// not name the slot of its low half).
fn slot(v: u64) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::BadSlot)
}

/// Counter ticks in `ns` nanoseconds. In 128 bits: `ns * ticks_per_second` overflows 64 bits for
/// waits beyond ~18 s at 1 GHz, which would cut them short.
fn ns_to_ticks(ns: u64) -> u64 {
    let ticks = u128::from(ns) * u128::from(hal::ticks_per_second()) / 1_000_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Nanoseconds in `ticks` counter ticks.
fn ticks_to_ns(ticks: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(hal::ticks_per_second().max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Runs a decoded call made by thread `tid` of process `pid`, current on `cpu` (its registers
/// in `frame`).
#[inline(always)]
fn invoke(k: &mut Kernel, cpu: usize, tid: Id, pid: Id, frame: &mut UserRegs, call: Call) -> Result<Outcome> {
    match call {
        Call::Null => Ok(Outcome::Done),
        Call::DebugWrite { va, len } => {
            let bytes = k.copy_from_user(pid, va, len)?;
            hal::console_write(&bytes);
            Ok(Outcome::words(&[len]))
        }
        Call::Yield => Ok(Outcome::ReturnAfterYield),
        Call::ThreadExit => {
            k.exit_thread(tid);
            Ok(Outcome::Suspended)
        }
        Call::ProcessExit { code } => {
            k.exit_process(pid, code);
            Ok(Outcome::Suspended)
        }
        Call::CapInfo { slot } => {
            let cap = k.caps.get(pid, slot).map_err(cap_error)?;
            Ok(Outcome::words(&[cap.object.kind() as u64, cap.rights.bits() as u64, cap.badge]))
        }
        Call::CapCopy { src, dest, rights, badge } => {
            k.check_heap()?;
            let obj = k.caps.get(pid, src).map_err(cap_error)?.object;
            let slot = k.caps.copy((pid, src), dest, rights, badge).map_err(cap_error)?;
            k.inc_ref(obj);
            Ok(Outcome::words(&[slot as u64]))
        }
        Call::CapMove { src, dest } => {
            k.check_heap()?;
            let slot = k.caps.move_cap((pid, src), dest).map_err(cap_error)?;
            Ok(Outcome::words(&[slot as u64]))
        }
        Call::CapDelete { slot } => {
            let obj = k.caps.delete(pid, slot).map_err(cap_error)?;
            k.dec_ref(obj);
            Ok(Outcome::Done)
        }
        Call::CapRevoke { slot } => {
            let objs = k.caps.revoke(pid, slot).map_err(cap_error)?;
            let n = objs.len() as u64;
            k.drop_caps(objs);
            Ok(Outcome::words(&[n]))
        }
        Call::ProcessCreate { name_va, name_len, quota } => process_create(k, pid, name_va, name_len, quota),
        Call::ThreadCreate { process, entry, stack, arg, params } => {
            if k.caps.count(pid).map_err(cap_error)? >= crate::kernel::PROCESS_SLOTS as usize {
                return Err(Error::TableFull);
            }
            // All or nothing: the thread runs only once its cap is in place.
            let tid = k.add_thread(process, entry, stack, arg, params)?;
            match k.install_cap(pid, ObjRef::Thread(tid), Rights::ALL) {
                Ok(slot) => {
                    k.make_ready(tid, hal::this_cpu());
                    Ok(Outcome::words(&[slot as u64, tid]))
                }
                Err(e) => {
                    k.discard_thread(tid);
                    Err(e)
                }
            }
        }
        Call::PmoCreate { kind, size, quota } => {
            k.check_heap()?;
            let pmo = match kind {
                PmoKind::Anonymous => Pmo::anonymous(size, quota),
                PmoKind::Contiguous => Pmo::contiguous(size, quota)?,
            };
            let id = k.new_id();
            k.pmos.insert(id, pmo);
            install_new(k, pid, ObjRef::Pmo(id), Rights::ALL, |k| {
                if let Some(mut p) = k.pmos.remove(&id) {
                    p.release();
                }
            })
        }
        Call::PmoWrite { pmo, offset, va, len } => {
            // Straight from the caller's pages into the object's: no kernel buffer.
            if len > keel_abi::MAX_COPY {
                return Err(Error::Invalid);
            }
            k.check_heap()?;
            let sources = k.user_pieces(pid, va, len, Access::Read)?;
            k.pmos.get_mut(&pmo).ok_or(Error::PeerDied)?.write_from_phys(offset, &sources)?;
            Ok(Outcome::words(&[len]))
        }
        Call::PmoRead { pmo, offset, va, len } => {
            let mut buf = k.copy_buffer(len)?;
            k.pmos.get_mut(&pmo).ok_or(Error::PeerDied)?.read(offset, &mut buf)?;
            k.copy_to_user(pid, va, &buf)?;
            Ok(Outcome::words(&[len]))
        }
        Call::PmoPhys { pmo } => match k.pmos.get(&pmo).map(|p| &p.backing) {
            Some(crate::object::pmo::Backing::Contiguous { base, .. }) => Ok(Outcome::words(&[*base])),
            Some(_) => Err(Error::WrongType),
            None => Err(Error::PeerDied),
        },
        Call::VmspaceMap { vmspace, pmo, va, size, offset, perms } => {
            k.check_heap()?;
            let vs = k.vmspaces.get_mut(&vmspace).ok_or(Error::PeerDied)?;
            vs.check_free_range(va, size)?;
            let p = k.pmos.get_mut(&pmo).ok_or(Error::PeerDied)?;
            vs.add_region(va, size, pmo, p, offset, perms)?;
            k.inc_ref(ObjRef::Pmo(pmo));
            Ok(Outcome::Done)
        }
        Call::VmspaceUnmap { vmspace, va, size } => {
            let pmo = k.vmspaces.get_mut(&vmspace).ok_or(Error::PeerDied)?.unmap_region(va, size)?;
            k.dec_ref(ObjRef::Pmo(pmo));
            Ok(Outcome::Done)
        }
        Call::ProcessWait { process } => match k.processes.get(&process).map(|p| p.state) {
            Some(ProcState::Exited(code)) => Ok(Outcome::words(&[code as u64])),
            Some(ProcState::Running) if process == pid => Err(Error::BadState),
            Some(ProcState::Running) => {
                k.block_current(cpu, frame, Block::ProcessExit { pid: process });
                Ok(Outcome::Suspended)
            }
            None => Err(Error::PeerDied),
        },
        Call::ProcessKill { process, code } => {
            if k.processes.get(&process).map(|p| p.state) != Some(ProcState::Running) {
                return Err(Error::BadState);
            }
            log::info!("process {process} ({}) killed by process {pid}", k.processes[&process].name);
            k.exit_process(process, if code == 0 { keel_abi::EXIT_KILLED } else { code });
            Ok(if process == pid { Outcome::Suspended } else { Outcome::Done })
        }
        Call::ProcessInfo { process } => {
            let p = k.processes.get(&process).ok_or(Error::PeerDied)?;
            let (state, code) = match p.state {
                ProcState::Running => (keel_abi::ProcessState::Running as u64, 0),
                ProcState::Exited(c) => (keel_abi::ProcessState::Exited as u64, c as u64),
            };
            let pages = if p.holds_vmspace { k.vmspaces.get(&p.vmspace).map_or(0, |v| v.mapped_pages as u64) } else { 0 };
            Ok(Outcome::words(&[state, code, pages, p.threads.len() as u64, process, p.quota]))
        }
        Call::ProcessWatch { process, notif, bits } => {
            k.check_heap()?;
            match k.processes.get(&process).map(|p| p.state) {
                Some(ProcState::Running) => {
                    k.processes.get_mut(&process).ok_or(Error::PeerDied)?.watchers.push((notif, bits));
                    k.inc_ref(ObjRef::Notif(notif));
                }
                Some(ProcState::Exited(_)) => k.signal(notif, bits),
                None => return Err(Error::PeerDied),
            }
            Ok(Outcome::Done)
        }
        Call::ConnCreate => {
            k.check_heap()?;
            let id = k.new_id();
            k.conns.insert(id, Connection::new(pid));
            install_new(k, pid, ObjRef::Conn(id), Rights::ALL, |k| {
                k.conns.remove(&id);
            })
        }
        Call::ConnOwner { conn, process } => {
            let running = k.processes.get(&process).is_some_and(|p| p.state == ProcState::Running);
            let c = k.conns.get_mut(&conn).ok_or(Error::PeerDied)?;
            if c.dead {
                return Err(Error::PeerDied);
            }
            c.owner = process;
            // Given to a process that has already gone: it dies now, as it would have then.
            if !running {
                k.kill_connection(conn);
            }
            Ok(Outcome::Done)
        }
        Call::IpcCall { conn, badge, msg, caps } => k.ipc_call(cpu, frame, conn, badge, msg, caps),
        Call::IpcRecv { conn } => k.ipc_recv(cpu, frame, conn),
        Call::IpcReply { msg, caps, recv } => k.ipc_reply(cpu, frame, msg, caps, recv),
        Call::NotifCreate => {
            k.check_heap()?;
            let id = k.new_id();
            k.notifs.insert(id, Notification::new());
            install_new(k, pid, ObjRef::Notif(id), Rights::ALL, |k| {
                k.notifs.remove(&id);
            })
        }
        Call::NotifSignal { notif, bits } => {
            k.signal(notif, bits);
            Ok(Outcome::Done)
        }
        Call::NotifWait { notif, deadline } => k.notif_wait(cpu, frame, notif, deadline),
        Call::IrqCreate { intid } => {
            if k.irqs.contains_key(&intid) {
                return Err(Error::Exists);
            }
            k.check_heap()?;
            k.irqs.insert(intid, crate::kernel::IrqLine { intid, bound: None, refs: 0 });
            install_new(k, pid, ObjRef::Irq(intid), Rights::ALL, |k| {
                k.irqs.remove(&intid);
            })
        }
        Call::IrqBind { intid, notif, bits } => {
            let old = k.irqs.get_mut(&intid).ok_or(Error::PeerDied)?.bound.replace((notif, bits));
            k.inc_ref(ObjRef::Notif(notif));
            if let Some((n, _)) = old {
                k.dec_ref(ObjRef::Notif(n));
            }
            hal::irq_enable(intid);
            Ok(Outcome::Done)
        }
        Call::IrqAck { intid } => {
            if k.irqs.get(&intid).is_some_and(|l| l.bound.is_some()) {
                hal::irq_unmask(intid);
            }
            Ok(Outcome::Done)
        }
        Call::DevicePmo { phys, size } => {
            k.check_heap()?;
            let id = k.new_id();
            k.pmos.insert(id, Pmo::device(phys, size, k.root_quota));
            install_new(k, pid, ObjRef::Pmo(id), Rights::ALL.difference(Rights::EXEC), |k| {
                k.pmos.remove(&id);
            })
        }
        Call::MemInfo { page: keel_abi::syscall::mem_info::CPU } => Ok(Outcome::words(&cpu_features())),
        Call::MemInfo { page: keel_abi::syscall::mem_info::IDLE } => {
            let now = hal::now_ticks();
            let (ticks, stretches) = crate::sched::idle::ALL_IDLE.total(now);
            Ok(Outcome::words(&[ticks, stretches, now]))
        }
        Call::MemInfo { page } => Ok(Outcome::words(&k.census().page(page).ok_or(Error::Invalid)?)),
        Call::FaultInject { n } => {
            let report = crate::failpoint::arm(tid, n);
            Ok(Outcome::words(&[u64::from(report.fired), report.passed]))
        }
        Call::PowerOff { reset } => {
            log::info!("process {pid} asked to power {}", if reset { "cycle" } else { "off" });
            hal::power_off(reset);
            Ok(Outcome::Done)
        }
        Call::ThreadSetSched { thread, params } => {
            let t = k.threads.get_mut(&thread).ok_or(Error::PeerDied)?;
            t.params = params;
            // A queued thread moves to its new queue; a running or blocked one uses the new
            // parameters next time.
            if k.sched.is_queued(t.sched) {
                let _ = k.sched.remove(t.sched);
                k.make_ready(thread, hal::this_cpu());
            }
            Ok(Outcome::Done)
        }
        Call::Sleep { deadline } => {
            k.sleep_current(cpu, frame, deadline, Block::Sleep);
            Ok(Outcome::Suspended)
        }
        Call::QuotaCreate { parent } => quota::create(k, pid, parent),
        Call::QuotaSet { quota, resource, limit } => {
            crate::object::quota::QUOTAS.lock().set_limit(quota, resource, limit)?;
            Ok(Outcome::Done)
        }
        Call::QuotaStat { quota, resource } => {
            let stat = crate::object::quota::QUOTAS.lock().stat(quota, resource)?;
            Ok(Outcome::words(&stat.to_words()))
        }
        Call::QuotaSetCpu { quota, quota_ns, period_ns } => {
            let limit = if quota_ns == keel_abi::quota::NO_LIMIT { quota_ns } else { ns_to_ticks(quota_ns) };
            crate::object::quota::QUOTAS.lock().set_cpu_max(quota, limit, ns_to_ticks(period_ns), hal::now_ticks())?;
            Ok(Outcome::Done)
        }
        Call::QuotaSetWeight { quota, weight } => {
            crate::object::quota::QUOTAS.lock().set_cpu_weight(quota, weight)?;
            Ok(Outcome::Done)
        }
        Call::QuotaStatCpu { quota } => {
            let now = hal::now_ticks();
            // What the CPUs have run and not charged yet (a CPU whose quota this uses up finds
            // out at its budget deadline, which stays armed).
            for c in 0..k.ncpus {
                k.flush_bill(c, now);
            }
            let c = crate::object::quota::QUOTAS.lock().cpu_stat(quota, now)?;
            let stat = keel_abi::quota::CpuStat {
                usage_ns: ticks_to_ns(c.usage),
                quota_ns: if c.quota == keel_abi::quota::NO_LIMIT { c.quota } else { ticks_to_ns(c.quota) },
                period_ns: if c.period == 0 { keel_abi::quota::DEFAULT_CPU_PERIOD_NS } else { ticks_to_ns(c.period) },
                nr_periods: c.nr_periods,
                nr_throttled: c.nr_throttled,
                throttled_ns: ticks_to_ns(c.throttled),
                weight: c.weight,
            };
            Ok(Outcome::words(&stat.to_words()))
        }
        Call::QuotaMove { quota, process } => {
            quota::move_process(k, process, quota);
            Ok(Outcome::Done)
        }
        Call::QuotaMoveThread { quota, thread } => {
            quota::move_thread(k, thread, quota);
            Ok(Outcome::Done)
        }
        Call::BillCreate { payer } => quota::bill_create(k, pid, payer),
        Call::BillCharge { bill, bytes } => {
            let amount = crate::object::quota::QUOTAS.lock().bill_charge(bill, bytes)?;
            Ok(Outcome::words(&[amount]))
        }
        Call::BillRefund { bill, bytes } => {
            let amount = crate::object::quota::QUOTAS.lock().bill_refund(bill, bytes)?;
            Ok(Outcome::words(&[amount]))
        }
        Call::Vm(call) => vm::invoke(k, cpu, tid, pid, frame, call),
    }
}

/// Installs a cap to a new object in `pid`'s table and returns its slot; if the table cannot
/// take it, `undo` removes the object (all or nothing).
fn install_new(k: &mut Kernel, pid: Id, obj: ObjRef, rights: Rights, undo: impl FnOnce(&mut Kernel)) -> Result<Outcome> {
    match k.install_cap(pid, obj, rights) {
        Ok(slot) => Ok(Outcome::words(&[slot as u64])),
        Err(e) => {
            undo(k);
            Err(e)
        }
    }
}

fn process_create(k: &mut Kernel, pid: Id, name_va: u64, name_len: u64, quota: Id) -> Result<Outcome> {
    let name = k.copy_from_user(pid, name_va, name_len)?;
    let name = core::str::from_utf8(&name).map_err(|_| Error::Invalid)?;
    if k.caps.count(pid).map_err(cap_error)? + 2 > crate::kernel::PROCESS_SLOTS as usize {
        return Err(Error::TableFull);
    }
    // All or nothing: the child and both caps, or (after undoing what was made) an error.
    let child = k.create_process_in(name, quota)?;
    let vs = k.processes[&child].vmspace;
    let pslot = match k.install_cap(pid, ObjRef::Process(child), Rights::ALL) {
        Ok(s) => s,
        Err(e) => {
            k.abandon_process(child);
            return Err(e);
        }
    };
    let vslot = match k.install_cap(pid, ObjRef::VmSpace(vs), Rights::ALL) {
        Ok(s) => s,
        Err(e) => {
            k.uninstall_cap(pid, pslot);
            k.abandon_process(child);
            return Err(e);
        }
    };
    Ok(Outcome::words(&[pslot as u64, vslot as u64, child]))
}

impl Kernel {
    /// Copies `len` bytes from user address `va` of process `pid`.
    pub fn copy_from_user(&mut self, pid: Id, va: u64, len: u64) -> Result<Vec<u8>> {
        let mut out = self.copy_buffer(len)?;
        let mut at = 0;
        for (pa, n) in self.user_pieces(pid, va, len, Access::Read)? {
            hal::copy_from_phys(pa, &mut out[at..at + n]);
            at += n;
        }
        Ok(out)
    }

    /// Copies `bytes` to user address `va` of process `pid`.
    pub fn copy_to_user(&mut self, pid: Id, va: u64, bytes: &[u8]) -> Result {
        if bytes.len() as u64 > keel_abi::MAX_COPY {
            return Err(Error::Invalid);
        }
        let mut at = 0;
        for (pa, n) in self.user_pieces(pid, va, bytes.len() as u64, Access::Write)? {
            hal::copy_to_phys(pa, &bytes[at..at + n]);
            at += n;
        }
        Ok(())
    }

    /// The user buffer [va, va+len) of process `pid` as RAM: (physical address, length) pieces
    /// in order, one per page, each faulted in for `access`. Checks the whole range (mapped,
    /// allowed, not device registers) before the caller copies a byte.
    pub fn user_pieces(&mut self, pid: Id, va: u64, len: u64, access: Access) -> Result<Vec<(u64, usize)>> {
        let end = va.checked_add(len).ok_or(Error::BadAddress)?;
        if len > 0 && (va < keel_abi::USER_MIN_VA || end > keel_abi::USER_MAX_VA) {
            return Err(Error::BadAddress);
        }
        let vs_id = self.processes.get(&pid).ok_or(Error::BadState)?.vmspace;
        let mut pieces = Vec::new();
        let mut pos = va;
        while pos < end {
            let n = (PAGE_SIZE - pos % PAGE_SIZE).min(end - pos);
            // A new page costs heap (the PMO's page map): refuse it before the heap runs dry.
            self.check_heap()?;
            let vs = self.vmspaces.get_mut(&vs_id).ok_or(Error::BadAddress)?;
            let pmo_id = vs.region_at(pos).ok_or(Error::BadAddress)?.1.pmo;
            let pmo = self.pmos.get_mut(&pmo_id).ok_or(Error::BadAddress)?;
            // Device registers are not in the kernel's direct map: the kernel never copies
            // through a mapping of a device PMO (user space reads it itself).
            if pmo.is_device() {
                return Err(Error::BadAddress);
            }
            let pa = vs.fault_in(pos, access, pmo).map_err(|e| match e {
                FaultError::NoMemory => Error::NoMemory,
                FaultError::Unmapped | FaultError::Forbidden => Error::BadAddress,
            })?;
            pieces.push((pa, n as usize));
            pos += n;
        }
        Ok(pieces)
    }

    /// Makes `va` in address space `vs_id` accessible for `access`; its physical address.
    pub fn fault_in(&mut self, vs_id: Id, va: u64, access: Access) -> core::result::Result<u64, FaultError> {
        // A new page costs heap (the PMO's page map): refuse it before the heap runs dry.
        if self.check_heap().is_err() {
            return Err(FaultError::NoMemory);
        }
        let vs = self.vmspaces.get_mut(&vs_id).ok_or(FaultError::Unmapped)?;
        let (_, region) = vs.region_at(va).ok_or(FaultError::Unmapped)?;
        let pmo = self.pmos.get_mut(&region.pmo).ok_or(FaultError::Unmapped)?;
        vs.fault_in(va, access, pmo)
    }
}

/// `mem_info` page CPU: the feature registers a guest would read (virt::idregs), which are also
/// what Keel lets its own processes use.
fn cpu_features() -> [u64; 7] {
    const REGS: [(u8, u8); 7] = [(6, 0), (6, 1), (6, 2), (4, 0), (4, 1), (7, 0), (4, 4)];
    REGS.map(|(crm, op2)| crate::virt::idregs::sanitize(0, crm, op2, hal::guest_id_reg(0, 0, crm, op2)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_abi::NO_SLOT;

    #[test]
    fn slot_arguments_with_high_bits_name_no_slot() {
        assert_eq!(slot(5), Ok(5));
        assert_eq!(slot(u64::from(NO_SLOT)), Ok(NO_SLOT));
        assert_eq!(slot((1 << 32) | 5), Err(Error::BadSlot));
        assert_eq!(slot(u64::MAX), Err(Error::BadSlot));
    }

    #[test]
    fn long_timeouts_are_not_cut_short() {
        let tps = hal::ticks_per_second();
        assert_eq!(ns_to_ticks(600_000_000_000), 600 * tps);
        assert_eq!(ns_to_ticks(1_000_000_000), tps);
        // At 1 GHz (the fake HAL) a tick is a nanosecond, all the way up.
        assert_eq!(ns_to_ticks(u64::MAX), u64::MAX);
    }
}
