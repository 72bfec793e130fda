//! System-call decoding and dispatch (numbers and registers: docs/ABI.md).
//!
//! Each call first decodes: the slots exist, name the right kind of object with the needed
//! rights, addresses and sizes are aligned and inside user space, user buffers are mapped with the
//! needed access. Only then does it act. Errors come back as negative codes in x0 and change
//! nothing. A call that blocks or switches threads leaves `frame` holding another thread's
//! registers, so it returns `Ok` and writes no result itself.

use crate::cap::Rights;
use crate::hal;
use crate::kernel::{Kernel, cap_error};
use crate::object::pmo::Pmo;
use crate::object::process::ProcState;
use crate::object::thread::{Block, UserRegs, set_return};
use crate::object::vmspace::{Access, FaultError};
use crate::object::{Id, ObjRef};
use crate::ipc::{Connection, Notification, message_from};
use crate::sched::runqueue::{CpuSet, SchedParams};
use alloc::vec::Vec;
use keel_abi::ipc::CapList;
use keel_abi::{Error, NO_SLOT, PAGE_SIZE, PmoKind, perm, syscall as nr};

type Result<T = ()> = core::result::Result<T, Error>;

/// Handles the system call in `frame` made by the current thread of `cpu`.
pub fn dispatch(k: &mut Kernel, cpu: usize, frame: &mut UserRegs) {
    let Some(tid) = k.current[cpu] else { return };
    let pid = k.cpus[cpu].pid;
    debug_assert_eq!(k.threads.get(&tid).map(|t| t.pid), Some(pid), "cpu{cpu}: the cached pid of the current thread is stale");
    let number = frame.x[8];
    crate::failpoint::begin(tid);
    let result = invoke(k, cpu, tid, pid, frame);
    crate::failpoint::end();
    if let Err(e) = result {
        log::trace!("process {pid} thread {tid}: system call {number} failed: {e:?}");
        frame.x[0] = e.code() as u64;
    }
}

/// A slot argument. Slots are 32 bits: a register with any high bit set names no slot (it must
/// not name the slot of its low half).
pub(crate) fn slot(v: u64) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::BadSlot)
}

/// Counter ticks in `ns` nanoseconds. In 128 bits: `ns * ticks_per_second` overflows 64 bits for
/// waits beyond ~18 s at 1 GHz, which would cut them short.
fn ns_to_ticks(ns: u64) -> u64 {
    let ticks = u128::from(ns) * u128::from(hal::ticks_per_second()) / 1_000_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Decodes and runs the call in `frame`.
fn invoke(k: &mut Kernel, cpu: usize, tid: Id, pid: Id, frame: &mut UserRegs) -> Result {
    let a = frame.x;
    match a[8] {
        nr::NULL => ok(frame, &[]),
        nr::DEBUG_WRITE => debug_write(k, pid, frame, a[0], a[1]),
        nr::YIELD => {
            set_return(frame, 0, &[]);
            k.yield_current(cpu, frame);
            Ok(())
        }
        nr::THREAD_EXIT => {
            k.exit_thread(tid);
            Ok(())
        }
        nr::PROCESS_EXIT => {
            k.exit_process(pid, a[0] as i64);
            Ok(())
        }
        nr::CAP_INFO => cap_info(k, pid, frame, slot(a[0])?),
        nr::CAP_COPY => cap_copy(k, pid, frame, slot(a[0])?, slot(a[1])?, u32::try_from(a[2]).map_err(|_| Error::Invalid)?, a[3]),
        nr::CAP_MOVE => cap_move(k, pid, frame, slot(a[0])?, slot(a[1])?),
        nr::CAP_DELETE => cap_delete(k, pid, frame, slot(a[0])?),
        nr::CAP_REVOKE => cap_revoke(k, pid, frame, slot(a[0])?),
        nr::PROCESS_CREATE => process_create(k, pid, frame, a[0], a[1]),
        nr::THREAD_CREATE => thread_create(k, pid, frame, &a),
        nr::PMO_CREATE => pmo_create(k, pid, frame, a[0], a[1]),
        nr::PMO_WRITE => pmo_write(k, pid, frame, slot(a[0])?, a[1], a[2], a[3]),
        nr::PMO_READ => pmo_read(k, pid, frame, slot(a[0])?, a[1], a[2], a[3]),
        nr::PMO_PHYS => pmo_phys(k, pid, frame, slot(a[0])?),
        nr::VMSPACE_MAP => vmspace_map(k, pid, frame, &a),
        nr::VMSPACE_UNMAP => vmspace_unmap(k, pid, frame, slot(a[0])?, a[1], a[2]),
        nr::PROCESS_WAIT => process_wait(k, cpu, pid, frame, slot(a[0])?),
        nr::PROCESS_KILL => process_kill(k, pid, frame, slot(a[0])?, a[1] as i64),
        nr::PROCESS_INFO => process_info(k, pid, frame, slot(a[0])?),
        nr::PROCESS_WATCH => process_watch(k, pid, frame, slot(a[0])?, slot(a[1])?, a[2]),
        nr::CONN_CREATE => conn_create(k, pid, frame),
        nr::IPC_CALL => {
            let msg = message_from(frame);
            k.ipc_call(cpu, frame, slot(a[0])?, msg, CapList(a[7]))
        }
        nr::IPC_RECV => k.ipc_recv(cpu, frame, slot(a[0])?),
        nr::IPC_REPLY_RECV => {
            let msg = message_from(frame);
            k.ipc_reply(cpu, frame, msg, CapList(a[7]), Some(slot(a[0])?))
        }
        nr::IPC_REPLY => {
            let msg = message_from(frame);
            k.ipc_reply(cpu, frame, msg, CapList(a[7]), None)
        }
        nr::NOTIF_CREATE => notif_create(k, pid, frame),
        nr::NOTIF_SIGNAL => notif_signal(k, pid, frame, slot(a[0])?, a[1]),
        nr::NOTIF_WAIT => notif_wait(k, cpu, pid, frame, slot(a[0])?, a[1]),
        nr::IRQ_CREATE => irq_create(k, pid, frame, slot(a[0])?, a[1]),
        nr::IRQ_BIND => irq_bind(k, pid, frame, slot(a[0])?, slot(a[1])?, a[2]),
        nr::IRQ_ACK => irq_ack(k, pid, frame, slot(a[0])?),
        nr::DEVICE_PMO => device_pmo(k, pid, frame, slot(a[0])?, a[1], a[2]),
        nr::MEM_INFO => {
            let words = k.census().page(a[0]).ok_or(Error::Invalid)?;
            ok(frame, &words)
        }
        nr::FAULT_INJECT => {
            control(k, pid, slot(a[0])?)?;
            let report = crate::failpoint::arm(tid, a[1]);
            ok(frame, &[u64::from(report.fired), report.passed])
        }
        nr::POWER_OFF => power_off(k, pid, frame, slot(a[0])?, a[1]),
        nr::THREAD_SET_SCHED => thread_set_sched(k, pid, frame, slot(a[0])?, a[1], a[2]),
        nr::SLEEP => {
            let deadline = hal::now_ticks().saturating_add(ns_to_ticks(a[0]).max(1));
            k.sleep_current(cpu, frame, deadline, Block::Sleep);
            Ok(())
        }
        _ => crate::virt::syscalls::dispatch(k, cpu, tid, pid, frame).unwrap_or(Err(Error::NoSys)),
    }
}

fn ok(frame: &mut UserRegs, results: &[u64]) -> Result {
    set_return(frame, 0, results);
    Ok(())
}

pub(crate) fn lookup(k: &Kernel, pid: Id, slot: u32, need: Rights) -> Result<ObjRef> {
    k.caps.lookup(pid, slot, need).map(|c| c.object).map_err(cap_error)
}

fn process_of(k: &Kernel, pid: Id, slot: u32, need: Rights) -> Result<Id> {
    match lookup(k, pid, slot, need)? {
        ObjRef::Process(p) => Ok(p),
        _ => Err(Error::WrongType),
    }
}

fn pmo_of(k: &Kernel, pid: Id, slot: u32, need: Rights) -> Result<Id> {
    match lookup(k, pid, slot, need)? {
        ObjRef::Pmo(p) => Ok(p),
        _ => Err(Error::WrongType),
    }
}

fn notif_of(k: &Kernel, pid: Id, slot: u32, need: Rights) -> Result<Id> {
    match lookup(k, pid, slot, need)? {
        ObjRef::Notif(n) => Ok(n),
        _ => Err(Error::WrongType),
    }
}

fn control(k: &Kernel, pid: Id, slot: u32) -> Result {
    match lookup(k, pid, slot, Rights::MANAGE)? {
        ObjRef::Control => Ok(()),
        _ => Err(Error::WrongType),
    }
}

impl Kernel {
    /// Copies `len` bytes from user address `va` of process `pid`.
    pub fn copy_from_user(&mut self, pid: Id, va: u64, len: u64) -> Result<Vec<u8>> {
        let mut out = self.copy_buffer(len)?;
        self.user_copy(pid, va, len, Access::Read, |pa, range| hal::copy_from_phys(pa, &mut out[range]))?;
        Ok(out)
    }

    /// Copies `bytes` to user address `va` of process `pid`.
    pub fn copy_to_user(&mut self, pid: Id, va: u64, bytes: &[u8]) -> Result {
        if bytes.len() as u64 > keel_abi::MAX_COPY {
            return Err(Error::Invalid);
        }
        self.user_copy(pid, va, bytes.len() as u64, Access::Write, |pa, range| hal::copy_to_phys(pa, &bytes[range]))
    }

    /// Walks [va, va+len) page by page, faulting pages in, and calls `f` with each piece's
    /// physical address and its range within the buffer. Checks the whole range before copying.
    fn user_copy(&mut self, pid: Id, va: u64, len: u64, access: Access, mut f: impl FnMut(u64, core::ops::Range<usize>)) -> Result {
        let end = va.checked_add(len).ok_or(Error::BadAddress)?;
        if len > 0 && (va < keel_abi::USER_MIN_VA || end > keel_abi::USER_MAX_VA) {
            return Err(Error::BadAddress);
        }
        let vs_id = self.processes.get(&pid).ok_or(Error::BadState)?.vmspace;
        let mut pieces = Vec::new();
        let mut pos = va;
        while pos < end {
            let n = (PAGE_SIZE - pos % PAGE_SIZE).min(end - pos);
            // Device registers are not in the kernel's direct map: the kernel never copies
            // through a mapping of a device PMO (user space reads it itself).
            let device = self.vmspaces.get(&vs_id).and_then(|vs| vs.region_at(pos)).and_then(|(_, r)| self.pmos.get(&r.pmo)).is_some_and(|p| p.is_device());
            if device {
                return Err(Error::BadAddress);
            }
            let pa = self.fault_in(vs_id, pos, access).map_err(|e| match e {
                FaultError::NoMemory => Error::NoMemory,
                FaultError::Unmapped | FaultError::Forbidden => Error::BadAddress,
            })?;
            pieces.push((pa, (pos - va) as usize..(pos - va + n) as usize));
            pos += n;
        }
        for (pa, range) in pieces {
            f(pa, range);
        }
        Ok(())
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

    /// Gives up the CPU: the current thread goes to the back of its run queue.
    pub fn yield_current(&mut self, cpu: usize, frame: &mut UserRegs) {
        if let Some(tid) = self.current[cpu] {
            self.save_current(cpu, frame);
            self.sched.stop_running(cpu);
            self.make_ready(tid, cpu);
            self.schedule(cpu, frame);
        }
    }
}

fn debug_write(k: &mut Kernel, pid: Id, frame: &mut UserRegs, va: u64, len: u64) -> Result {
    if len > 4096 {
        return Err(Error::Invalid);
    }
    let bytes = k.copy_from_user(pid, va, len)?;
    hal::console_write(&bytes);
    ok(frame, &[len])
}

fn cap_info(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32) -> Result {
    let cap = k.caps.get(pid, slot).map_err(cap_error)?;
    let (kind, rights, badge) = (cap.object.kind() as u64, cap.rights.bits() as u64, cap.badge);
    ok(frame, &[kind, rights, badge])
}

/// The table a cap goes to: the caller's own (NO_SLOT) or a process it manages.
fn dest_table(k: &Kernel, pid: Id, dest_slot: u32) -> Result<Id> {
    if dest_slot == NO_SLOT {
        return Ok(pid);
    }
    let dest = process_of(k, pid, dest_slot, Rights::MANAGE)?;
    match k.processes.get(&dest) {
        Some(p) if p.state == ProcState::Running => Ok(dest),
        _ => Err(Error::BadState),
    }
}

fn cap_copy(k: &mut Kernel, pid: Id, frame: &mut UserRegs, src: u32, dest_slot: u32, rights: u32, badge: u64) -> Result {
    k.check_heap()?;
    let dest = dest_table(k, pid, dest_slot)?;
    let rights = Rights::from_bits(rights).ok_or(Error::Invalid)?;
    let obj = k.caps.get(pid, src).map_err(cap_error)?.object;
    let badge = (badge != 0).then_some(badge);
    let slot = k.caps.copy((pid, src), dest, rights, badge).map_err(cap_error)?;
    k.inc_ref(obj);
    ok(frame, &[slot as u64])
}

fn cap_move(k: &mut Kernel, pid: Id, frame: &mut UserRegs, src: u32, dest_slot: u32) -> Result {
    k.check_heap()?;
    let dest = dest_table(k, pid, dest_slot)?;
    let slot = k.caps.move_cap((pid, src), dest).map_err(cap_error)?;
    ok(frame, &[slot as u64])
}

fn cap_delete(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32) -> Result {
    let obj = k.caps.delete(pid, slot).map_err(cap_error)?;
    k.dec_ref(obj);
    ok(frame, &[])
}

fn cap_revoke(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32) -> Result {
    let objs = k.caps.revoke(pid, slot).map_err(cap_error)?;
    let n = objs.len() as u64;
    k.drop_caps(objs);
    ok(frame, &[n])
}

fn process_create(k: &mut Kernel, pid: Id, frame: &mut UserRegs, name_va: u64, name_len: u64) -> Result {
    if name_len > 64 {
        return Err(Error::Invalid);
    }
    let name = k.copy_from_user(pid, name_va, name_len)?;
    let name = core::str::from_utf8(&name).map_err(|_| Error::Invalid)?;
    if k.caps.count(pid).map_err(cap_error)? + 2 > crate::kernel::PROCESS_SLOTS as usize {
        return Err(Error::TableFull);
    }
    // All or nothing: the child and both caps, or (after undoing what was made) an error.
    let child = k.create_process(name)?;
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
    ok(frame, &[pslot as u64, vslot as u64, child])
}

/// Decodes a priority and an affinity mask (0 = every CPU).
fn sched_params(k: &Kernel, priority: u64, affinity: u64) -> Result<SchedParams> {
    if priority >= crate::sched::runqueue::PRIORITIES as u64 {
        return Err(Error::Invalid);
    }
    let all = CpuSet::all(k.ncpus);
    let set = if affinity == 0 { all } else { CpuSet::from_bits(affinity & all.bits()) };
    if set.is_empty() {
        return Err(Error::Invalid);
    }
    Ok(SchedParams { priority: priority as u8, affinity: set })
}

fn thread_create(k: &mut Kernel, pid: Id, frame: &mut UserRegs, a: &[u64; 31]) -> Result {
    let target = process_of(k, pid, slot(a[0])?, Rights::MANAGE)?;
    let (entry, stack, arg) = (a[1], a[2], a[3]);
    if !(keel_abi::USER_MIN_VA..keel_abi::USER_MAX_VA).contains(&entry) || entry % 4 != 0 {
        return Err(Error::BadAddress);
    }
    if stack % 16 != 0 || stack > keel_abi::USER_MAX_VA {
        return Err(Error::BadAddress);
    }
    let params = sched_params(k, a[4], a[5])?;
    if k.caps.count(pid).map_err(cap_error)? >= crate::kernel::PROCESS_SLOTS as usize {
        return Err(Error::TableFull);
    }
    // All or nothing: the thread runs only once its cap is in place.
    let tid = k.add_thread(target, entry, stack, arg, params)?;
    match k.install_cap(pid, ObjRef::Thread(tid), Rights::ALL) {
        Ok(slot) => {
            k.make_ready(tid, hal::this_cpu());
            ok(frame, &[slot as u64, tid])
        }
        Err(e) => {
            k.discard_thread(tid);
            Err(e)
        }
    }
}

fn pmo_create(k: &mut Kernel, pid: Id, frame: &mut UserRegs, kind: u64, size: u64) -> Result {
    k.check_heap()?;
    let size = size.checked_next_multiple_of(PAGE_SIZE).ok_or(Error::Invalid)?;
    if size == 0 || size > keel_abi::PMO_MAX_SIZE {
        return Err(Error::Invalid);
    }
    let pmo = match kind {
        k if k == PmoKind::Anonymous as u64 => Pmo::anonymous(size),
        k if k == PmoKind::Contiguous as u64 => {
            if size > keel_abi::PMO_MAX_CONTIGUOUS {
                return Err(Error::Invalid);
            }
            Pmo::contiguous(size)?
        }
        _ => return Err(Error::Invalid),
    };
    let id = k.new_id();
    k.pmos.insert(id, pmo);
    match k.install_cap(pid, ObjRef::Pmo(id), Rights::ALL) {
        Ok(slot) => ok(frame, &[slot as u64]),
        Err(e) => {
            if let Some(mut p) = k.pmos.remove(&id) {
                p.release();
            }
            Err(e)
        }
    }
}

fn pmo_write(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32, offset: u64, va: u64, len: u64) -> Result {
    let id = pmo_of(k, pid, slot, Rights::WRITE)?;
    let bytes = k.copy_from_user(pid, va, len)?;
    k.pmos.get_mut(&id).ok_or(Error::PeerDied)?.write(offset, &bytes)?;
    ok(frame, &[len])
}

fn pmo_read(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32, offset: u64, va: u64, len: u64) -> Result {
    let id = pmo_of(k, pid, slot, Rights::READ)?;
    let mut buf = k.copy_buffer(len)?;
    k.pmos.get_mut(&id).ok_or(Error::PeerDied)?.read(offset, &mut buf)?;
    k.copy_to_user(pid, va, &buf)?;
    ok(frame, &[len])
}

fn pmo_phys(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32) -> Result {
    let id = pmo_of(k, pid, slot, Rights::MANAGE)?;
    match k.pmos.get(&id).map(|p| &p.backing) {
        Some(crate::object::pmo::Backing::Contiguous { base, .. }) => ok(frame, &[*base]),
        Some(_) => Err(Error::WrongType),
        None => Err(Error::PeerDied),
    }
}

fn vmspace_map(k: &mut Kernel, pid: Id, frame: &mut UserRegs, a: &[u64; 31]) -> Result {
    let vs_id = match lookup(k, pid, slot(a[0])?, Rights::MAP)? {
        ObjRef::VmSpace(v) => v,
        _ => return Err(Error::WrongType),
    };
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
    let pmo_id = pmo_of(k, pid, slot(a[1])?, need)?;
    if offset % PAGE_SIZE != 0 {
        return Err(Error::Unaligned);
    }
    let pmo_size = k.pmos.get(&pmo_id).ok_or(Error::PeerDied)?.size;
    match offset.checked_add(size) {
        Some(end) if end <= pmo_size => {}
        _ => return Err(Error::Invalid),
    }
    k.check_heap()?;
    let vs = k.vmspaces.get_mut(&vs_id).ok_or(Error::PeerDied)?;
    vs.check_free_range(va, size)?;
    let pmo = k.pmos.get_mut(&pmo_id).ok_or(Error::PeerDied)?;
    vs.add_region(va, size, pmo_id, pmo, offset, perms)?;
    k.inc_ref(ObjRef::Pmo(pmo_id));
    ok(frame, &[])
}

fn vmspace_unmap(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32, va: u64, size: u64) -> Result {
    let vs_id = match lookup(k, pid, slot, Rights::MAP)? {
        ObjRef::VmSpace(v) => v,
        _ => return Err(Error::WrongType),
    };
    let pmo = k.vmspaces.get_mut(&vs_id).ok_or(Error::PeerDied)?.unmap_region(va, size)?;
    k.dec_ref(ObjRef::Pmo(pmo));
    ok(frame, &[])
}

fn process_wait(k: &mut Kernel, cpu: usize, pid: Id, frame: &mut UserRegs, slot: u32) -> Result {
    let target = process_of(k, pid, slot, Rights::WAIT)?;
    match k.processes.get(&target).map(|p| p.state) {
        Some(ProcState::Exited(code)) => ok(frame, &[code as u64]),
        Some(ProcState::Running) if target == pid => Err(Error::BadState),
        Some(ProcState::Running) => {
            k.block_current(cpu, frame, Block::ProcessExit { pid: target });
            Ok(())
        }
        None => Err(Error::PeerDied),
    }
}

fn process_kill(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32, code: i64) -> Result {
    let target = process_of(k, pid, slot, Rights::MANAGE)?;
    if k.processes.get(&target).map(|p| p.state) != Some(ProcState::Running) {
        return Err(Error::BadState);
    }
    let name = k.processes[&target].name.clone();
    log::info!("process {target} ({name}) killed by process {pid}");
    if target != pid {
        set_return(frame, 0, &[]);
    }
    k.exit_process(target, if code == 0 { keel_abi::EXIT_KILLED } else { code });
    Ok(())
}

fn process_info(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32) -> Result {
    let target = process_of(k, pid, slot, Rights::READ)?;
    let p = k.processes.get(&target).ok_or(Error::PeerDied)?;
    let (state, code) = match p.state {
        ProcState::Running => (keel_abi::ProcessState::Running as u64, 0),
        ProcState::Exited(c) => (keel_abi::ProcessState::Exited as u64, c as u64),
    };
    let pages = if p.holds_vmspace { k.vmspaces.get(&p.vmspace).map_or(0, |v| v.mapped_pages as u64) } else { 0 };
    ok(frame, &[state, code, pages, p.threads.len() as u64, target])
}

fn process_watch(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32, notif_slot: u32, bits: u64) -> Result {
    let target = process_of(k, pid, slot, Rights::WAIT)?;
    let notif = notif_of(k, pid, notif_slot, Rights::SIGNAL)?;
    if bits == 0 {
        return Err(Error::Invalid);
    }
    k.check_heap()?;
    match k.processes.get(&target).map(|p| p.state) {
        Some(ProcState::Running) => {
            k.processes.get_mut(&target).ok_or(Error::PeerDied)?.watchers.push((notif, bits));
            k.inc_ref(ObjRef::Notif(notif));
        }
        Some(ProcState::Exited(_)) => k.signal(notif, bits),
        None => return Err(Error::PeerDied),
    }
    ok(frame, &[])
}

fn conn_create(k: &mut Kernel, pid: Id, frame: &mut UserRegs) -> Result {
    k.check_heap()?;
    let id = k.new_id();
    k.conns.insert(id, Connection::new(pid));
    match k.install_cap(pid, ObjRef::Conn(id), Rights::ALL) {
        Ok(slot) => ok(frame, &[slot as u64]),
        Err(e) => {
            k.conns.remove(&id);
            Err(e)
        }
    }
}

fn notif_create(k: &mut Kernel, pid: Id, frame: &mut UserRegs) -> Result {
    k.check_heap()?;
    let id = k.new_id();
    k.notifs.insert(id, Notification::new());
    match k.install_cap(pid, ObjRef::Notif(id), Rights::ALL) {
        Ok(slot) => ok(frame, &[slot as u64]),
        Err(e) => {
            k.notifs.remove(&id);
            Err(e)
        }
    }
}

fn notif_signal(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32, bits: u64) -> Result {
    let n = notif_of(k, pid, slot, Rights::SIGNAL)?;
    if bits == 0 {
        return Err(Error::Invalid);
    }
    set_return(frame, 0, &[]);
    k.signal(n, bits);
    Ok(())
}

fn notif_wait(k: &mut Kernel, cpu: usize, pid: Id, frame: &mut UserRegs, slot: u32, timeout_ns: u64) -> Result {
    let n = notif_of(k, pid, slot, Rights::WAIT)?;
    let deadline = (timeout_ns != 0).then(|| {
        hal::now_ticks().saturating_add(ns_to_ticks(timeout_ns).max(1))
    });
    k.notif_wait(cpu, frame, n, deadline)
}

fn irq_create(k: &mut Kernel, pid: Id, frame: &mut UserRegs, control_slot: u32, intid: u64) -> Result {
    control(k, pid, control_slot)?;
    let intid = u32::try_from(intid).map_err(|_| Error::Invalid)?;
    if !k.claimable_irqs.contains(&intid) {
        return Err(Error::Invalid);
    }
    if k.irqs.contains_key(&intid) {
        return Err(Error::Exists);
    }
    k.check_heap()?;
    k.irqs.insert(intid, crate::kernel::IrqLine { intid, bound: None, refs: 0 });
    match k.install_cap(pid, ObjRef::Irq(intid), Rights::ALL) {
        Ok(slot) => ok(frame, &[slot as u64]),
        Err(e) => {
            k.irqs.remove(&intid);
            Err(e)
        }
    }
}

fn irq_of(k: &Kernel, pid: Id, slot: u32) -> Result<u32> {
    match lookup(k, pid, slot, Rights::MANAGE)? {
        ObjRef::Irq(i) => Ok(i),
        _ => Err(Error::WrongType),
    }
}

fn irq_bind(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32, notif_slot: u32, bits: u64) -> Result {
    let intid = irq_of(k, pid, slot)?;
    let notif = notif_of(k, pid, notif_slot, Rights::SIGNAL)?;
    if bits == 0 {
        return Err(Error::Invalid);
    }
    let old = k.irqs.get_mut(&intid).ok_or(Error::PeerDied)?.bound.replace((notif, bits));
    k.inc_ref(ObjRef::Notif(notif));
    if let Some((n, _)) = old {
        k.dec_ref(ObjRef::Notif(n));
    }
    hal::irq_enable(intid);
    ok(frame, &[])
}

fn irq_ack(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32) -> Result {
    let intid = irq_of(k, pid, slot)?;
    if k.irqs.get(&intid).is_some_and(|l| l.bound.is_some()) {
        hal::irq_unmask(intid);
    }
    ok(frame, &[])
}

fn device_pmo(k: &mut Kernel, pid: Id, frame: &mut UserRegs, control_slot: u32, phys: u64, size: u64) -> Result {
    control(k, pid, control_slot)?;
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
    k.check_heap()?;
    let id = k.new_id();
    k.pmos.insert(id, Pmo::device(phys, size));
    match k.install_cap(pid, ObjRef::Pmo(id), Rights::ALL.difference(Rights::EXEC)) {
        Ok(slot) => ok(frame, &[slot as u64]),
        Err(e) => {
            k.pmos.remove(&id);
            Err(e)
        }
    }
}

fn power_off(k: &mut Kernel, pid: Id, frame: &mut UserRegs, control_slot: u32, reset: u64) -> Result {
    control(k, pid, control_slot)?;
    log::info!("process {pid} asked to power {}", if reset != 0 { "cycle" } else { "off" });
    hal::power_off(reset != 0);
    ok(frame, &[])
}

fn thread_set_sched(k: &mut Kernel, pid: Id, frame: &mut UserRegs, slot: u32, priority: u64, affinity: u64) -> Result {
    let tid = match lookup(k, pid, slot, Rights::MANAGE)? {
        ObjRef::Thread(t) => t,
        _ => return Err(Error::WrongType),
    };
    let params = sched_params(k, priority, affinity)?;
    let t = k.threads.get_mut(&tid).ok_or(Error::PeerDied)?;
    t.params = params;
    // A queued thread moves to its new queue; a running or blocked one uses the new parameters next time.
    if k.sched.is_queued(tid) {
        let _ = k.sched.remove(tid);
        k.make_ready(tid, hal::this_cpu());
    }
    ok(frame, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

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
