//! The kernel's whole mutable state, behind the big kernel lock: capability space, objects,
//! scheduler and what each CPU runs. Arch-neutral: the arch layer hands it trap frames and
//! events; it touches hardware only through [`hal`](crate::hal), so it is tested on the host.
//!
//! Invariants:
//! - `current[cpu] == Some(t)` exactly when `t`'s registers are live in that CPU's trap frame;
//!   then `threads[t].state == Running(cpu)` (or `Dead` if it was killed from another CPU).
//! - A thread is in the scheduler's queues exactly when its state is `Ready`.
//! - An object is destroyed when its reference count drops to zero, never before.

use crate::cap::{CapSpace, Rights};
use crate::hal;
use crate::object::pmo::Pmo;
use crate::object::process::{ProcState, Process};
use crate::object::thread::{Block, Thread, ThreadState, UserRegs};
use crate::object::vmspace::VmSpace;
use crate::virt::vcpu::VCpu;
use crate::virt::vm::Vm;
use crate::idmap::IdMap;
use crate::object::{Id, ObjRef};
use crate::object::ipc::{Connection, Notification};
use crate::object::quota::{self, QUOTAS};
use core::sync::atomic::Ordering::Relaxed;
use keel_abi::quota::{MEMORY, PROCESSES, THREADS};
use crate::percpu::MAX_CPUS;
use crate::sched::runqueue::{CpuSet, SchedId, SchedParams, Scheduler};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use keel_abi::Error;

/// The kernel state behind the big kernel lock. Taken on every entry from user space and by
/// interrupt handlers; never held with interrupts unmasked. A test-and-set lock, not a ticket
/// lock: under an emulator or hypervisor a ticket lock hands the lock to one particular waiting
/// vCPU, and when that vCPU is not running every CPU stalls (measured: IPC ran at ~100 calls/s
/// with 4 vCPUs on 2 host cores); a test-and-set lock goes to whichever CPU is running. Its
/// waiters spin with the `yield` hint ([`hal::Relax`]) so an emulator runs the holder.
pub static KERNEL: hal::Mutex<Option<Kernel>> = hal::Mutex::new(None);

/// Heap bytes the kernel keeps in reserve: work that would allocate is refused (`NoMemory`)
/// below this, so running out of kernel heap is an error for the asking process, never a panic.
pub const HEAP_RESERVE: usize = 512 * 1024;

/// `CpuSlot::bill_since` of an idle CPU.
pub const BILL_IDLE: u64 = u64::MAX;

/// Slots in every process's capability table.
pub const PROCESS_SLOTS: u32 = 4096;
/// Default priority of new threads.
pub const DEFAULT_PRIORITY: u8 = 32;

/// Bytes of kernel memory a process's records are charged as (its record and its address
/// space's; object/quota.rs).
pub const PROCESS_RECORD: u64 = (core::mem::size_of::<Process>() + core::mem::size_of::<VmSpace>()) as u64;
/// Bytes a thread's records are charged as (its record and its FP/SIMD save area).
pub const THREAD_RECORD: u64 =
    (core::mem::size_of::<Thread>() + core::mem::size_of::<crate::hal::FpState>()) as u64;

/// An interrupt line handed to user space.
pub struct IrqLine {
    pub intid: u32,
    pub bound: Option<(Id, u64)>,
    pub refs: u32,
}

/// Per-CPU state the kernel keeps.
#[derive(Clone, Copy, Default)]
pub struct CpuSlot {
    pub online: bool,
    /// Reschedule at the next return: a thread that outranks the running one was queued here,
    /// or the running one was killed (then it is no longer `Running`).
    pub need_resched: bool,
    /// The process of the thread `current` names here, kept by `load` (stale once `current` is
    /// None): the system-call path needs it without a thread-table lookup.
    pub pid: Id,
    /// Address space currently installed in TTBR0 (0 = none).
    pub vmspace: Id,
    /// The vCPU whose state is live on this CPU (0 = none).
    pub vcpu: Id,
    /// Its VM had ioevents when it was loaded: only then do its MMIO writes try the fast exit
    /// path (a hint; the full path handles every ioevent).
    pub guest_ioevents: bool,
    /// The loaded VM has interrupt status registers the kernel answers.
    pub guest_status_regs: bool,
    /// The quota this CPU's time is charged to (0: none yet): the running thread's, and through
    /// an IPC hand-off still its caller's (a server's handler runs on its client's time). It has
    /// run since the counter value `bill_since` ([`BILL_IDLE`] while the CPU idles), and
    /// `bill_pending` ticks before that are not yet charged: they go to the quota table when the
    /// quota changes or the timer ticks, so a CPU that idles between two calls of one client
    /// takes no lock for it.
    pub bill: Id,
    pub bill_since: u64,
    pub bill_pending: u64,
    /// When `bill`'s CPU budget for its period runs out (`cpu.max`; u64::MAX: no limit).
    pub budget_until: u64,
}

impl CpuSlot {
    /// Adds the time run since `bill_since` to what is pending for `bill`, up to `now`.
    fn accrue(&mut self, now: u64) {
        if self.bill_since != BILL_IDLE {
            self.bill_pending += now.saturating_sub(self.bill_since);
        }
    }
}

pub struct Kernel {
    pub caps: CapSpace<ObjRef>,
    pub processes: IdMap<Process>,
    pub threads: IdMap<Thread>,
    pub vmspaces: IdMap<VmSpace>,
    pub pmos: IdMap<Pmo>,
    pub conns: IdMap<Connection>,
    pub notifs: IdMap<Notification>,
    pub irqs: BTreeMap<u32, IrqLine>,
    pub vms: IdMap<Vm>,
    pub vcpus: IdMap<VCpu>,
    pub vm_irq_lines: BTreeMap<Id, crate::virt::vm::VmIrqLine>,
    pub vm_ioevents: BTreeMap<Id, crate::virt::vm::VmIoEvent>,
    pub sched: Scheduler<Id>,
    pub current: [Option<Id>; MAX_CPUS],
    pub cpus: [CpuSlot; MAX_CPUS],
    pub ncpus: usize,
    /// (deadline, thread) of sleeping or timed-waiting threads.
    pub sleepers: BTreeSet<(u64, Id)>,
    /// Interrupt IDs user space may claim (device SPIs from the DTB).
    pub claimable_irqs: Vec<u32>,
    /// RAM banks (base, size): never handed out as device memory.
    pub ram: Vec<(u64, u64)>,
    /// The quota every other quota descends from; processes the kernel starts are in it.
    pub root_quota: Id,
    /// Threads waiting for their quota's next CPU period (`Block::Throttled`), and the earliest
    /// time one of them may run again (u64::MAX: none).
    pub throttled: Vec<Id>,
    pub unthrottle_at: u64,
    next_id: Id,
    free_asids: Vec<u16>,
    next_asid: u16,
    asid_limit: u32,
    free_vmids: Vec<u16>,
    next_vmid: u16,
}

impl Kernel {
    pub fn new(ncpus: usize) -> Self {
        let mut sched = Scheduler::new(ncpus);
        for cpu in 0..ncpus {
            sched.set_online(cpu, true);
        }
        let mut cpus = [CpuSlot::default(); MAX_CPUS];
        for c in cpus.iter_mut().take(ncpus) {
            c.online = true;
        }
        for c in cpus.iter_mut() {
            c.budget_until = u64::MAX;
            c.bill_since = BILL_IDLE;
        }
        Self {
            caps: CapSpace::new(),
            processes: IdMap::new(),
            threads: IdMap::new(),
            vmspaces: IdMap::new(),
            pmos: IdMap::new(),
            conns: IdMap::new(),
            notifs: IdMap::new(),
            irqs: BTreeMap::new(),
            vms: IdMap::new(),
            vcpus: IdMap::new(),
            vm_irq_lines: BTreeMap::new(),
            vm_ioevents: BTreeMap::new(),
            sched,
            current: [None; MAX_CPUS],
            cpus,
            ncpus,
            sleepers: BTreeSet::new(),
            claimable_irqs: Vec::new(),
            ram: Vec::new(),
            root_quota: QUOTAS.lock().create_root(),
            throttled: Vec::new(),
            unthrottle_at: u64::MAX,
            next_id: 1,
            free_asids: Vec::new(),
            next_asid: 1,
            asid_limit: 1 << 16,
            free_vmids: Vec::new(),
            next_vmid: 1,
        }
    }

    /// `NoMemory` when the kernel heap is down to its reserve. One check admits the bounded heap
    /// use of one system call (a few map nodes and records, well under the reserve), so a call
    /// checks once, before it changes anything. An allocation point ([`crate::failpoint`]).
    pub fn check_heap(&self) -> Result<(), Error> {
        if crate::failpoint::hit() || hal::kernel_heap_free() < HEAP_RESERVE { Err(Error::NoMemory) } else { Ok(()) }
    }

    /// A zeroed buffer of `len` bytes for a copy to or from user space (at most `MAX_COPY`), or
    /// `NoMemory` when the heap cannot spare it above its reserve. An allocation point.
    pub fn copy_buffer(&self, len: u64) -> Result<Vec<u8>, Error> {
        if len > keel_abi::MAX_COPY {
            return Err(Error::Invalid);
        }
        let len = len as usize;
        if crate::failpoint::hit() || hal::kernel_heap_free() < HEAP_RESERVE.saturating_add(len) {
            return Err(Error::NoMemory);
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(len).map_err(|_| Error::NoMemory)?;
        buf.resize(len, 0);
        Ok(buf)
    }

    pub fn new_id(&mut self) -> Id {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Limits ASIDs to what the CPU supports (256 or 65,536).
    pub fn set_asid_limit(&mut self, count: u32) {
        self.asid_limit = count.min(1 << 16);
    }

    fn alloc_asid(&mut self) -> Result<u16, Error> {
        if crate::failpoint::hit() {
            return Err(Error::NoMemory);
        }
        if let Some(a) = self.free_asids.pop() {
            return Ok(a);
        }
        if u32::from(self.next_asid) + 1 >= self.asid_limit {
            return Err(Error::NoMemory);
        }
        let a = self.next_asid;
        self.next_asid += 1;
        Ok(a)
    }

    /// A VMID for a new VM (VMID 0 is never used: it is the host's).
    pub fn alloc_vmid(&mut self) -> Result<u16, Error> {
        if crate::failpoint::hit() {
            return Err(Error::NoMemory);
        }
        if let Some(v) = self.free_vmids.pop() {
            return Ok(v);
        }
        let (_, limit) = hal::stage2_limits();
        if u32::from(self.next_vmid) + 1 >= limit {
            return Err(Error::NoMemory);
        }
        let v = self.next_vmid;
        self.next_vmid += 1;
        Ok(v)
    }

    /// Returns a VMID whose TLB entries have been invalidated.
    pub fn free_vmid(&mut self, vmid: u16) {
        self.free_vmids.push(vmid);
    }

    /// Tears down a VM: its stage-2 tables and TLB entries, its VMID, its RAM references.
    pub fn destroy_vm(&mut self, id: Id) {
        if let Some(vm) = self.vms.remove(&id) {
            let pmos = vm.region_pmos();
            let vmid = vm.vmid;
            vm.destroy();
            self.free_vmid(vmid);
            for p in pmos {
                self.dec_ref(ObjRef::Pmo(p));
            }
        }
    }

    pub fn default_params(&self) -> SchedParams {
        SchedParams { priority: DEFAULT_PRIORITY, affinity: CpuSet::all(self.ncpus) }
    }

    // ---- object creation -------------------------------------------------------------------

    /// A new, empty address space (not yet referenced) whose tables are charged to `quota`.
    pub fn create_vmspace(&mut self, quota: Id) -> Result<Id, Error> {
        self.check_heap()?;
        let asid = self.alloc_asid()?;
        let vs = match VmSpace::new(asid, quota) {
            Ok(v) => v,
            Err(e) => {
                self.free_asids.push(asid);
                return Err(e);
            }
        };
        let id = self.new_id();
        self.vmspaces.insert(id, vs);
        Ok(id)
    }

    /// A new process with its own empty address space and slot table; slots 0 and 1 of its table
    /// hold caps to itself and its address space. All or nothing: on an error nothing of it is
    /// left. Checks the heap once (through `create_vmspace`), so the caller may install caps to it
    /// with [`Self::install_cap`] without another check.
    pub fn create_process(&mut self, name: &str) -> Result<Id, Error> {
        self.create_process_in(name, self.root_quota)
    }

    /// [`Self::create_process`] in `quota`: `Limit` when the quota allows no more processes,
    /// `NoMemory` when it has no room for the records.
    pub fn create_process_in(&mut self, name: &str, quota: Id) -> Result<Id, Error> {
        {
            let mut quotas = QUOTAS.lock();
            quotas.charge_object(quota, PROCESSES, PROCESS_RECORD)?;
            quotas.join(quota);
        }
        let undo_charges = |_: &mut Self| {
            let mut quotas = QUOTAS.lock();
            quotas.uncharge(quota, PROCESSES, 1);
            quotas.uncharge(quota, MEMORY, PROCESS_RECORD);
            quotas.leave(quota);
        };
        let vs = match self.create_vmspace(quota) {
            Ok(vs) => vs,
            Err(e) => {
                undo_charges(self);
                return Err(e);
            }
        };
        let pid = self.new_id();
        if self.caps.create_table(pid, PROCESS_SLOTS).is_err() {
            self.destroy_vmspace(vs);
            undo_charges(self);
            return Err(Error::NoMemory);
        }
        let mut name = String::from(name);
        name.truncate(31);
        log::trace!("process {pid} ({name}) created");
        // From here the record carries the charges: exit returns the count, removal the rest.
        self.processes.insert(pid, Process::new(pid, name, vs, quota));
        self.inc_ref(ObjRef::VmSpace(vs)); // the process's own reference
        let own = self
            .install_cap_at(pid, keel_abi::slots::SELF_PROCESS, ObjRef::Process(pid), Rights::ALL)
            .and_then(|()| self.install_cap_at(pid, keel_abi::slots::SELF_VMSPACE, ObjRef::VmSpace(vs), Rights::ALL));
        if let Err(e) = own {
            self.abandon_process(pid);
            return Err(e);
        }
        Ok(pid)
    }

    /// Undoes a process that never ran (a failed `process_create` or spawn): as if it exited, so
    /// its table, address space and record go.
    pub fn abandon_process(&mut self, pid: Id) {
        self.exit_process(pid, keel_abi::EXIT_KILLED);
    }

    /// A new thread of `pid`, made runnable.
    pub fn create_thread(&mut self, pid: Id, entry: u64, stack: u64, arg: u64, params: SchedParams) -> Result<Id, Error> {
        let tid = self.add_thread(pid, entry, stack, arg, params)?;
        self.make_ready(tid, hal::this_cpu());
        Ok(tid)
    }

    /// A new thread of `pid`, recorded but not yet queued (its state says `Ready`: the caller
    /// either queues it with `make_ready` or takes it back with [`Self::discard_thread`] before
    /// anything else runs). Checks the heap once.
    pub fn add_thread(&mut self, pid: Id, entry: u64, stack: u64, arg: u64, params: SchedParams) -> Result<Id, Error> {
        let (vs, quota) = match self.processes.get(&pid) {
            Some(p) if p.state == ProcState::Running => (p.vmspace, p.quota),
            Some(_) => return Err(Error::BadState),
            None => return Err(Error::NotFound),
        };
        let space = self.vmspaces.get(&vs).map(|v| (vs, v.root(), v.asid)).ok_or(Error::BadState)?;
        self.check_heap()?;
        QUOTAS.lock().charge_object(quota, THREADS, THREAD_RECORD)?;
        let tid = self.new_id();
        let sched = self.sched.add(tid);
        let mut thread = Thread::new(tid, pid, entry, stack, arg, params, sched, space);
        thread.quota = quota;
        thread.counted = true;
        self.threads.insert(tid, thread);
        if let Some(p) = self.processes.get_mut(&pid) {
            p.threads.push(tid);
        }
        Ok(tid)
    }

    /// Takes back a thread [`Self::add_thread`] made that was never queued.
    pub fn discard_thread(&mut self, tid: Id) {
        if let Some(t) = self.remove_thread(tid) {
            if let Some(p) = self.processes.get_mut(&t.pid) {
                p.threads.retain(|&x| x != tid);
            }
        }
    }

    // ---- capabilities and references ----------------------------------------------------------

    /// A new original cap in the lowest free slot of `pid`'s table, after a heap check.
    pub fn insert_cap(&mut self, pid: Id, obj: ObjRef, rights: Rights) -> Result<u32, Error> {
        self.check_heap()?;
        self.install_cap(pid, obj, rights)
    }

    /// [`Self::insert_cap`] without the heap check, for a call that has checked once already.
    pub fn install_cap(&mut self, pid: Id, obj: ObjRef, rights: Rights) -> Result<u32, Error> {
        let slot = self.caps.insert_original(pid, obj, rights, 0).map_err(cap_error)?;
        self.inc_ref(obj);
        Ok(slot)
    }

    pub fn install_cap_at(&mut self, pid: Id, slot: u32, obj: ObjRef, rights: Rights) -> Result<(), Error> {
        self.caps.insert_original_at(pid, slot, obj, rights, 0).map_err(cap_error)?;
        self.inc_ref(obj);
        Ok(())
    }

    /// Deletes a cap a failing call installed a moment ago (dropping its reference).
    pub fn uninstall_cap(&mut self, pid: Id, slot: u32) {
        if let Ok(obj) = self.caps.delete(pid, slot) {
            self.dec_ref(obj);
        }
    }

    pub fn inc_ref(&mut self, obj: ObjRef) {
        match self.refs_mut(obj) {
            Some(r) => *r += 1,
            None => self.quota_ref(obj, true),
        }
    }

    /// A quota's or a bill's references are counted in the quota table (which removes it).
    #[cold]
    fn quota_ref(&mut self, obj: ObjRef, inc: bool) {
        let mut quotas = QUOTAS.lock();
        match obj {
            ObjRef::Quota(id) if inc => quotas.inc_ref(id),
            ObjRef::Quota(id) => quotas.dec_ref(id),
            ObjRef::Bill(id) if inc => quotas.bill_inc_ref(id),
            ObjRef::Bill(id) => quotas.bill_dec_ref(id),
            _ => {}
        }
    }

    /// Drops one reference; destroys the object when it was the last.
    pub fn dec_ref(&mut self, obj: ObjRef) {
        let Some(r) = self.refs_mut(obj) else { return self.quota_ref(obj, false) };
        *r = r.saturating_sub(1);
        if *r == 0 {
            self.destroy_object(obj);
        } else if let ObjRef::Process(pid) = obj {
            if self.process_unreachable(pid) {
                self.abandon_process(pid);
            }
        }
    }

    /// A process with no threads whose only caps are in its own table (its slot 0): nothing can
    /// ever run in it or reach it, so it is ended like a killed one instead of staying forever.
    fn process_unreachable(&self, pid: Id) -> bool {
        let Some(p) = self.processes.get(&pid) else { return false };
        if p.state != ProcState::Running || !p.threads.is_empty() {
            return false;
        }
        let own = self.caps.iter(pid).map_or(0, |caps| caps.filter(|(_, c)| c.object == ObjRef::Process(pid)).count());
        p.refs as usize == own
    }

    /// Drops the references of caps that were deleted.
    pub fn drop_caps(&mut self, objs: Vec<ObjRef>) {
        for o in objs {
            self.dec_ref(o);
        }
    }

    fn refs_mut(&mut self, obj: ObjRef) -> Option<&mut u32> {
        match obj {
            ObjRef::Process(id) => self.processes.get_mut(&id).map(|o| &mut o.refs),
            ObjRef::Thread(id) => self.threads.get_mut(&id).map(|o| &mut o.refs),
            ObjRef::VmSpace(id) => self.vmspaces.get_mut(&id).map(|o| &mut o.refs),
            ObjRef::Pmo(id) => self.pmos.get_mut(&id).map(|o| &mut o.refs),
            ObjRef::Conn(id) => self.conns.get_mut(&id).map(|o| &mut o.refs),
            ObjRef::Notif(id) => self.notifs.get_mut(&id).map(|o| &mut o.refs),
            ObjRef::Irq(intid) => self.irqs.get_mut(&intid).map(|o| &mut o.refs),
            ObjRef::Vm(id) => self.vms.get_mut(&id).map(|o| &mut o.refs),
            ObjRef::VCpu(id) => self.vcpus.get_mut(&id).map(|o| &mut o.refs),
            ObjRef::VmIrqLine(id) => self.vm_irq_lines.get_mut(&id).map(|o| &mut o.refs),
            ObjRef::VmIoEvent(id) => self.vm_ioevents.get_mut(&id).map(|o| &mut o.refs),
            ObjRef::Control | ObjRef::Quota(_) | ObjRef::Bill(_) => None,
        }
    }

    fn destroy_object(&mut self, obj: ObjRef) {
        match obj {
            ObjRef::Process(pid) => self.maybe_remove_process(pid),
            ObjRef::Thread(tid) => {
                if matches!(self.threads.get(&tid).map(|t| t.state), Some(ThreadState::Dead)) && !self.is_current_anywhere(tid) {
                    self.remove_thread(tid);
                }
            }
            ObjRef::VmSpace(id) => self.destroy_vmspace(id),
            ObjRef::Pmo(id) => {
                if let Some(mut p) = self.pmos.remove(&id) {
                    p.release();
                }
            }
            ObjRef::Conn(id) => {
                self.kill_connection(id);
                self.conns.remove(&id);
            }
            ObjRef::Notif(id) => {
                if let Some(n) = self.notifs.remove(&id) {
                    for t in n.waiters {
                        self.wake_with(t, Error::PeerDied.code(), &[]);
                    }
                }
                for irq in self.irqs.values_mut() {
                    if irq.bound.is_some_and(|(n, _)| n == id) {
                        irq.bound = None;
                    }
                }
            }
            ObjRef::Irq(intid) => {
                hal::irq_mask(intid);
                if let Some(line) = self.irqs.remove(&intid) {
                    if let Some((n, _)) = line.bound {
                        self.dec_ref(ObjRef::Notif(n));
                    }
                }
            }
            ObjRef::Vm(id) => self.destroy_vm(id),
            ObjRef::VCpu(id) => {
                if let Some(v) = self.vcpus.remove(&id) {
                    if let Some(vm) = self.vms.get_mut(&v.vm) {
                        if let Some(slot) = vm.vcpus.get_mut(v.index) {
                            *slot = None;
                        }
                    }
                    self.dec_ref(ObjRef::Vm(v.vm));
                }
            }
            ObjRef::VmIrqLine(id) => {
                if let Some(line) = self.vm_irq_lines.remove(&id) {
                    if let Some(vm) = self.vms.get_mut(&line.vm) {
                        vm.status_regs.retain(|r| r.line != id);
                        if vm.tx.as_ref().is_some_and(|t| t.line == id) {
                            vm.tx = None;
                        }
                    }
                    self.dec_ref(ObjRef::Vm(line.vm));
                }
            }
            ObjRef::VmIoEvent(id) => {
                if let Some(e) = self.vm_ioevents.remove(&id) {
                    if let Some(vm) = self.vms.get_mut(&e.vm) {
                        vm.ioevents.retain(|x| x.id != id);
                    }
                    self.dec_ref(ObjRef::Notif(e.notif));
                    self.dec_ref(ObjRef::Vm(e.vm));
                }
            }
            ObjRef::Control | ObjRef::Quota(_) | ObjRef::Bill(_) => {}
        }
    }

    fn destroy_vmspace(&mut self, id: Id) {
        if let Some(vs) = self.vmspaces.remove(&id) {
            let pmos: Vec<Id> = vs.regions.values().map(|r| r.pmo).collect();
            let asid = vs.asid;
            // Other CPUs cannot be using it (their threads of it were dropped first); this one
            // may still have it in TTBR0: switch to the empty table before the tables are freed,
            // so no walk can reach a freed (and soon reused) frame.
            let here = hal::this_cpu();
            if self.cpus[here].vmspace == id {
                hal::set_user_space(0, 0);
            }
            for cpu in self.cpus.iter_mut() {
                if cpu.vmspace == id {
                    cpu.vmspace = 0;
                }
            }
            vs.destroy();
            self.free_asids.push(asid);
            for p in pmos {
                self.dec_ref(ObjRef::Pmo(p));
            }
        }
    }

    /// Drops thread `tid`'s object and its scheduler record.
    fn remove_thread(&mut self, tid: Id) -> Option<Thread> {
        let t = self.threads.remove(&tid)?;
        self.sched.forget(t.sched);
        let mut quotas = QUOTAS.lock();
        if t.counted {
            quotas.uncharge(t.quota, THREADS, 1);
        }
        quotas.uncharge(t.quota, MEMORY, THREAD_RECORD);
        drop(quotas);
        Some(t)
    }

    fn is_current_anywhere(&self, tid: Id) -> bool {
        self.current.iter().any(|c| *c == Some(tid))
    }

    // ---- scheduling ------------------------------------------------------------------------------

    /// Puts a thread in a run queue; IPIs the CPU it lands on if that CPU should look.
    pub fn make_ready(&mut self, tid: Id, hint: usize) {
        let Some(t) = self.threads.get_mut(&tid) else { return };
        t.state = ThreadState::Ready;
        t.deadline = None;
        let (id, params) = (t.sched, t.params);
        self.enqueue(tid, id, params, hint);
    }

    /// Queues a thread marked ready (see [`Self::make_ready`]) and tells the CPU it lands on.
    fn enqueue(&mut self, tid: Id, id: SchedId, params: SchedParams, hint: usize) {
        match self.sched.enqueue(id, params, hint) {
            Ok(e) => {
                let here = hal::this_cpu();
                if e.cpu != here {
                    if self.current[e.cpu].is_none() || e.preempt {
                        hal::send_ipi(e.cpu);
                    }
                } else if e.preempt {
                    self.cpus[here].need_resched = true;
                }
            }
            Err(e) => log::error!("thread {tid}: cannot be queued ({e:?}); it will not run"),
        }
    }

    /// Wakes a blocked thread with a system-call result.
    pub fn wake_with(&mut self, tid: Id, status: i64, results: &[u64]) {
        let Some(t) = self.threads.get_mut(&tid) else { return };
        if !matches!(t.state, ThreadState::Blocked(_)) {
            return;
        }
        t.set_return(status, results);
        if let Some(d) = t.deadline.take() {
            self.sleepers.remove(&(d, tid));
        }
        self.make_ready(tid, hal::this_cpu());
    }

    /// Saves the running thread of `cpu` out of `frame` (it stops being current).
    pub fn save_current(&mut self, cpu: usize, frame: &UserRegs) {
        let Some(tid) = self.current[cpu].take() else { return };
        // The common case in one lookup: a live thread in user mode.
        if let Some(t) = self.threads.get_mut(&tid)
            && t.guest.is_none()
            && t.state != ThreadState::Dead
        {
            t.save_user(frame);
            return;
        }
        // A thread in guest mode (its vCPU is saved), or one that died here.
        let guest = self.threads.get(&tid).and_then(|t| t.guest);
        if guest.is_some() {
            self.put_guest(cpu, frame);
        }
        if let Some(t) = self.threads.get_mut(&tid)
            && t.state == ThreadState::Dead
        {
            if let Some(v) = t.guest.take() {
                self.detach_runner(v);
            }
            self.reap_dead_thread(tid);
        }
    }

    /// Makes `tid` current on `cpu`: its registers into `frame`, its address space into TTBR0.
    pub fn load(&mut self, cpu: usize, frame: &mut UserRegs, tid: Id) {
        self.switch_in(cpu, frame, tid, false);
    }

    /// A direct hand-off (IPC): `tid`, just taken from a blocked state, runs on `cpu` at once
    /// in the current thread's place (already saved) if its affinity allows; false if not (the
    /// caller queues it).
    pub fn hand_off_to(&mut self, cpu: usize, frame: &mut UserRegs, tid: Id) -> bool {
        self.switch_in(cpu, frame, tid, true)
    }

    /// [`Self::load`], and with `hand_off` the scheduler's hand-off first, in one lookup.
    #[inline(always)]
    fn switch_in(&mut self, cpu: usize, frame: &mut UserRegs, tid: Id, hand_off: bool) -> bool {
        let Some(t) = self.threads.get_mut(&tid) else { return false };
        if hand_off {
            if !t.params.affinity.contains(cpu) || self.current[cpu].is_some() {
                return false;
            }
            self.sched.hand_off(cpu, t.sched, t.params);
        }
        t.state = ThreadState::Running(cpu);
        let (pid, (vs, root, asid), quota) = (t.pid, t.space, t.quota);
        match t.guest {
            Some(vcpu) => self.load_guest(cpu, frame, vcpu),
            None => {
                t.restore_user(frame);
            }
        }
        self.current[cpu] = Some(tid);
        self.cpus[cpu].pid = pid;
        if self.cpus[cpu].vmspace != vs {
            debug_assert!(self.vmspaces.contains_key(&vs), "a runnable thread's address space ({vs}) is alive");
            hal::set_user_space(root, asid);
            self.cpus[cpu].vmspace = vs;
        }
        if !hand_off {
            // A thread the scheduler chose runs on its own quota's time (a hand-off keeps the
            // caller's), for a slice its quota's CPU weight sizes.
            let slot = &mut self.cpus[cpu];
            if slot.bill == quota && quota::CPU_POLICIES.load(Relaxed) == 0 {
                // The same quota again (a server waking for its next call): only a CPU coming
                // out of idle restarts its clock.
                if slot.bill_since == BILL_IDLE {
                    slot.bill_since = hal::now_ticks();
                }
            } else {
                self.bill_and_slice(cpu, quota);
            }
        }
        true
    }

    /// The slow half of [`Self::switch_in`]: a change of the quota billed, or CPU limits or
    /// weights in force somewhere.
    #[inline(never)]
    fn bill_and_slice(&mut self, cpu: usize, quota: Id) {
        self.bill_to(cpu, quota, hal::now_ticks());
        if quota::CPU_WEIGHTED.load(Relaxed) != 0 {
            let slice = self.weighted_slice(quota);
            self.sched.set_slice(cpu, slice);
        }
    }

    /// `cpu` runs a thread of `quota` from `now`: the time since the last change is added to
    /// what the quota billed so far has pending; when the quota changes, that is charged to it
    /// (under CPU limits always, and then the CPU's timer is armed for when `quota`'s budget for
    /// this period runs out).
    #[inline(never)]
    pub fn bill_to(&mut self, cpu: usize, quota: Id, now: u64) {
        let limited = quota::CPU_LIMITED.load(Relaxed) != 0;
        let slot = &mut self.cpus[cpu];
        slot.accrue(now);
        slot.bill_since = now;
        if quota == slot.bill && !limited {
            return;
        }
        let (old, pending) = (slot.bill, core::mem::take(&mut slot.bill_pending));
        slot.bill = quota;
        slot.budget_until = u64::MAX;
        let mut quotas = QUOTAS.lock();
        if old != 0 && pending != 0 {
            quotas.charge_cpu(old, pending, now);
        }
        if limited {
            if let Some(left) = quotas.cpu_remaining(quota, now) {
                drop(quotas);
                let until = now.saturating_add(left.max(1));
                self.cpus[cpu].budget_until = until;
                hal::timer_wake_by(until);
            }
        }
    }

    /// `cpu` goes idle at `now`: its time stops counting (no lock taken).
    #[inline]
    fn bill_pause(&mut self, cpu: usize, now: u64) {
        let slot = &mut self.cpus[cpu];
        slot.accrue(now);
        slot.bill_since = BILL_IDLE;
        slot.budget_until = u64::MAX;
    }

    /// Charges what `cpu` has run for its billed quota up to `now`; the end of that quota's
    /// period if its CPU budget is now used up.
    pub fn flush_bill(&mut self, cpu: usize, now: u64) -> Option<u64> {
        let slot = &mut self.cpus[cpu];
        if slot.bill_since != BILL_IDLE {
            slot.accrue(now);
            slot.bill_since = now;
        }
        let (q, pending) = (slot.bill, core::mem::take(&mut slot.bill_pending));
        if q == 0 || pending == 0 {
            return None;
        }
        QUOTAS.lock().charge_cpu(q, pending, now)
    }

    /// Charges the time the billed quota has run on `cpu` so far (a timer interrupt). True if its
    /// CPU budget for the period is used up: the running thread must make way. Otherwise the
    /// budget's end is worked out again (a new period may have begun since it was armed), so
    /// `budget_until` is never left in the past.
    fn charge_running(&mut self, cpu: usize, now: u64) -> bool {
        if self.flush_bill(cpu, now).is_some() {
            // Out of budget: the thread is parked at the reschedule this asks for. The deadline
            // is spent (left armed in the past, the timer would fire again at once, forever).
            self.cpus[cpu].budget_until = u64::MAX;
            return true;
        }
        let q = self.cpus[cpu].bill;
        let left = if q != 0 && quota::CPU_LIMITED.load(Relaxed) != 0 { QUOTAS.lock().cpu_remaining(q, now) } else { None };
        self.cpus[cpu].budget_until = u64::MAX;
        match left {
            // Used up by its threads elsewhere: what runs here for it must make way too (an
            // idle CPU needs no deadline: a deadline of now + 1 would fire back to back).
            Some(0) => self.current[cpu].is_some(),
            Some(l) if self.current[cpu].is_some() => {
                self.cpus[cpu].budget_until = now.saturating_add(l);
                false
            }
            _ => false,
        }
    }

    /// The slice of a thread of `quota`: the default scaled by the quota's CPU weight over the
    /// default weight (cgroup v2's `cpu.weight`), so threads of equal priority share a CPU in
    /// proportion to their quotas' weights. At least one tick, at most 100.
    #[cold]
    #[inline(never)]
    fn weighted_slice(&self, quota: Id) -> u32 {
        let weight = QUOTAS.lock().cpu_weight(quota);
        let ticks = u64::from(self.sched.timeslice()) * weight / keel_abi::quota::DEFAULT_CPU_WEIGHT;
        ticks.clamp(1, 100) as u32
    }

    /// Parks `next` (just chosen to run on `cpu`) and each later choice whose quota has used up
    /// its CPU time for this period (see [`Self::park_if_throttled`]); what runs.
    #[cold]
    #[inline(never)]
    fn skip_throttled(&mut self, cpu: usize, frame: &mut UserRegs, running: &mut Option<(Id, SchedId, SchedParams)>, mut next: Option<Id>) -> Option<Id> {
        while let Some(n) = next {
            if !self.park_if_throttled(cpu, frame, running, n) {
                break;
            }
            next = self.sched.pick_next(cpu, None);
        }
        next
    }

    /// Parks `n` (just chosen to run on `cpu`) if its quota has used up its CPU time for this
    /// period: it waits in the throttled list, and the timer is armed for the next period. `running`
    /// is what ran here (saved first if it is `n`). True if parked.
    #[cold]
    #[inline(never)]
    fn park_if_throttled(&mut self, cpu: usize, frame: &mut UserRegs, running: &mut Option<(Id, SchedId, SchedParams)>, n: Id) -> bool {
        let now = hal::now_ticks();
        let Some(q) = self.threads.get(&n).map(|t| t.quota) else { return false };
        let Some(until) = QUOTAS.lock().cpu_throttled_until(q, now) else { return false };
        if running.is_some_and(|(cur, _, _)| cur == n) {
            self.save_current(cpu, frame);
            *running = None;
        }
        self.sched.stop_running(cpu);
        if let Some(t) = self.threads.get_mut(&n) {
            t.state = ThreadState::Blocked(Block::Throttled);
        }
        self.throttled.push(n);
        self.unthrottle_at = self.unthrottle_at.min(until);
        hal::timer_wake_by(until);
        true
    }

    /// Requeues the throttled threads whose quota has CPU time again.
    #[cold]
    #[inline(never)]
    fn unthrottle(&mut self, cpu: usize, now: u64) {
        self.unthrottle_at = u64::MAX;
        for tid in core::mem::take(&mut self.throttled) {
            let Some(q) = self.threads.get(&tid).filter(|t| t.state == ThreadState::Blocked(Block::Throttled)).map(|t| t.quota) else {
                continue;
            };
            match QUOTAS.lock().cpu_throttled_until(q, now) {
                Some(until) => {
                    self.throttled.push(tid);
                    self.unthrottle_at = self.unthrottle_at.min(until);
                }
                None => self.make_ready(tid, cpu),
            }
        }
    }

    /// Blocks the current thread of `cpu` (saving `frame`) for `why`.
    pub fn block_current(&mut self, cpu: usize, frame: &UserRegs, why: Block) {
        let Some(tid) = self.current[cpu] else { return };
        match self.threads.get_mut(&tid) {
            // The common case (every IPC call and receive) in one lookup: a thread in user mode
            // is saved as `save_current` would.
            Some(t) if t.guest.is_none() => {
                t.state = ThreadState::Blocked(why);
                t.save_user(frame);
                self.current[cpu] = None;
            }
            Some(t) => {
                t.state = ThreadState::Blocked(why);
                self.save_current(cpu, frame);
            }
            None => self.save_current(cpu, frame),
        }
        self.sched.stop_running(cpu);
    }

    /// Gives up the CPU: the current thread goes to the back of its run queue. With no thread of
    /// its priority or above queued on this CPU it would be picked again at once, so it just
    /// goes on (no save, no load: a spinning thread or a guest's WFE costs one trap).
    pub fn yield_current(&mut self, cpu: usize, frame: &mut UserRegs) {
        let Some(tid) = self.current[cpu] else { return };
        if let Some(t) = self.threads.get_mut(&tid) {
            if !self.sched.queued_at_or_above(cpu, t.params.priority) {
                return;
            }
            // The common case (a thread in user mode) saved, marked ready and queued in this one
            // lookup, as save_current and make_ready would.
            if t.guest.is_none() && t.state != ThreadState::Dead {
                t.save_user(frame);
                t.state = ThreadState::Ready;
                t.deadline = None;
                let (id, params) = (t.sched, t.params);
                self.current[cpu] = None;
                self.sched.stop_running(cpu);
                self.enqueue(tid, id, params, cpu);
                self.schedule(cpu, frame);
                return;
            }
        }
        self.save_current(cpu, frame);
        self.sched.stop_running(cpu);
        self.make_ready(tid, cpu);
        self.schedule(cpu, frame);
    }

    /// Chooses what runs on `cpu` now and loads it into `frame`. Leaves `current[cpu]` None when
    /// nothing is runnable (the arch layer then idles and calls this again).
    pub fn schedule(&mut self, cpu: usize, frame: &mut UserRegs) {
        self.cpus[cpu].need_resched = false;
        let mut running = self.current[cpu].and_then(|tid| {
            let t = self.threads.get(&tid)?;
            matches!(t.state, ThreadState::Running(_)).then_some((tid, t.sched, t.params))
        });
        if running.is_none() && self.current[cpu].is_some() {
            // The current thread died while running here.
            self.save_current(cpu, frame);
        }
        let mut next = self.sched.pick_next(cpu, running.map(|(_, id, params)| (id, params)));
        if quota::CPU_LIMITED.load(Relaxed) != 0 {
            next = self.skip_throttled(cpu, frame, &mut running, next);
        }
        match (running, next) {
            (Some((cur, _, _)), Some(n)) if n == cur => {}
            (Some((cur, sched, _)), next) => {
                if let Some(t) = self.threads.get_mut(&cur) {
                    // pick_next requeued it unless it returned it.
                    t.state = if self.sched.is_queued(sched) { ThreadState::Ready } else { t.state };
                }
                self.save_current(cpu, frame);
                if let Some(n) = next {
                    self.load(cpu, frame, n);
                }
            }
            (None, Some(n)) => self.load(cpu, frame, n),
            (None, None) => {}
        }
        if self.current[cpu].is_none() && self.cpus[cpu].vmspace != 0 {
            hal::set_user_space(0, 0);
            self.cpus[cpu].vmspace = 0;
        }
        if self.current[cpu].is_none() && self.cpus[cpu].bill_since != BILL_IDLE {
            self.bill_pause(cpu, hal::now_ticks());
        }
    }

    /// The timer fired on `cpu` at `now`: wakes the sleepers whose time has come and, when the
    /// interrupt was the periodic tick (`tick`), balances the run queues (CPU 0) and counts the
    /// running thread's slice. True if the running thread should be preempted. Returns with the
    /// earliest remaining deadline in [`Kernel::next_deadline`] for the caller to arm.
    pub fn timer_fired(&mut self, cpu: usize, now: u64, tick: bool) -> bool {
        // CPU time: the running quota's so far; a quota out of budget makes way, and threads
        // whose quota has a new period run again.
        if (tick || now >= self.cpus[cpu].budget_until) && self.charge_running(cpu, now) {
            self.cpus[cpu].need_resched = true;
        }
        if now >= self.unthrottle_at {
            self.unthrottle(cpu, now);
        }
        while let Some(&(deadline, tid)) = self.sleepers.first() {
            if deadline > now {
                break;
            }
            self.sleepers.remove(&(deadline, tid));
            if let Some(t) = self.threads.get_mut(&tid) {
                t.deadline = None;
            }
            match self.threads.get(&tid).map(|t| t.state) {
                Some(ThreadState::Blocked(Block::Sleep)) => self.wake_with(tid, 0, &[]),
                Some(ThreadState::Blocked(Block::GuestWfi { vcpu })) => {
                    self.guest_timers_due(vcpu, now);
                    self.make_ready(tid, cpu);
                }
                Some(ThreadState::Blocked(Block::Notif { notif })) => {
                    if let Some(n) = self.notifs.get_mut(&notif) {
                        n.waiters.retain(|&w| w != tid);
                    }
                    self.wake_with(tid, Error::TimedOut.code(), &[]);
                }
                _ => {}
            }
        }
        if !tick {
            return self.cpus[cpu].need_resched;
        }
        if cpu == 0 {
            for (_, _, to) in self.sched.balance() {
                if self.current[to].is_none() {
                    hal::send_ipi(to);
                }
            }
        }
        match self.current[cpu] {
            Some(tid) => self.sched.tick(cpu, tid) || self.cpus[cpu].need_resched,
            None => false,
        }
    }

    /// The earliest deadline `cpu`'s timer must fire for: a sleeper's, a throttled quota's new
    /// period, or the end of the CPU budget of the quota running on `cpu`.
    pub fn next_deadline(&self, cpu: usize) -> Option<u64> {
        let d = self.sleepers.first().map_or(u64::MAX, |&(d, _)| d).min(self.unthrottle_at).min(self.cpus[cpu].budget_until);
        (d != u64::MAX).then_some(d)
    }

    /// Adds sleeper `tid` with `deadline`, and arms this CPU's timer for it if that is earlier
    /// than what the CPU is armed for. A CPU whose armed deadline fires takes on the earliest
    /// one left (the arch timer's `rearm`), so every sleeper has a CPU armed at or before its
    /// deadline; a sleeper woken early leaves one spurious interrupt, which passes it on.
    pub fn add_sleeper(&mut self, tid: Id, deadline: u64) {
        if let Some(t) = self.threads.get_mut(&tid) {
            t.deadline = Some(deadline);
        }
        self.sleepers.insert((deadline, tid));
        hal::timer_wake_by(deadline);
    }

    /// Blocks the current thread until `deadline` (counter ticks).
    pub fn sleep_current(&mut self, cpu: usize, frame: &mut UserRegs, deadline: u64, why: Block) {
        if let Some(tid) = self.current[cpu] {
            self.add_sleeper(tid, deadline);
            frame.x[0] = 0;
            self.block_current(cpu, frame, why);
        }
    }

    /// A device interrupt user space owns fired (the line is already masked).
    pub fn irq_fired(&mut self, intid: u32) {
        if let Some((notif, bits)) = self.irqs.get(&intid).and_then(|l| l.bound) {
            self.signal(notif, bits);
        }
    }

    // ---- process lifecycle -----------------------------------------------------------------------

    /// Ends process `pid` with `code`: stops its threads, releases its capabilities and address
    /// space, and wakes whoever waits for it. `cpu` is the CPU doing it (its current thread may be
    /// one of the process's).
    pub fn exit_process(&mut self, pid: Id, code: i64) {
        let Some(p) = self.processes.get_mut(&pid) else { return };
        if p.state != ProcState::Running {
            return;
        }
        p.state = ProcState::Exited(code);
        QUOTAS.lock().uncharge(p.quota, PROCESSES, 1);
        log::debug!("process {pid} ({}) exited with code {code}", p.name);
        let threads = core::mem::take(&mut p.threads);
        let watchers = core::mem::take(&mut p.watchers);
        let mut running_elsewhere = 0;
        for tid in threads {
            if self.kill_thread(tid) {
                running_elsewhere += 1;
            }
        }
        // Connections this process serves die with it.
        let owned: Vec<Id> = self.conns.iter().filter(|(_, c)| c.owner == pid).map(|(&id, _)| id).collect();
        for id in owned {
            self.kill_connection(id);
        }
        // Release the slot table (its caps' objects lose a reference each).
        if let Ok(objs) = self.caps.destroy_table(pid) {
            self.drop_caps(objs);
        }
        // Waiters and watchers.
        let waiters: Vec<Id> = self
            .threads
            .iter()
            .filter(|(_, t)| t.state == ThreadState::Blocked(Block::ProcessExit { pid }))
            .map(|(&tid, _)| tid)
            .collect();
        for w in waiters {
            self.wake_with(w, 0, &[code as u64]);
        }
        for (notif, bits) in watchers {
            self.signal(notif, bits);
            self.dec_ref(ObjRef::Notif(notif));
        }
        if let Some(p) = self.processes.get_mut(&pid) {
            p.running_after_exit = running_elsewhere;
        }
        if running_elsewhere == 0 {
            self.release_process_vmspace(pid);
        }
        self.maybe_remove_process(pid);
    }

    /// Removes a process record once it has exited, released its address space, and no cap names it.
    fn maybe_remove_process(&mut self, pid: Id) {
        if self
            .processes
            .get(&pid)
            .is_some_and(|p| matches!(p.state, ProcState::Exited(_)) && p.refs == 0 && !p.holds_vmspace)
        {
            if let Some(p) = self.processes.remove(&pid) {
                let mut quotas = QUOTAS.lock();
                quotas.uncharge(p.quota, MEMORY, PROCESS_RECORD);
                quotas.leave(p.quota);
            }
        }
    }

    fn release_process_vmspace(&mut self, pid: Id) {
        let Some(p) = self.processes.get_mut(&pid) else { return };
        if !p.holds_vmspace {
            return;
        }
        p.holds_vmspace = false;
        let vs = p.vmspace;
        self.dec_ref(ObjRef::VmSpace(vs));
    }

    /// Stops one thread wherever it is. Returns true if it is running on another CPU right now
    /// (that CPU drops it at its next kernel entry).
    fn kill_thread(&mut self, tid: Id) -> bool {
        let Some(t) = self.threads.get_mut(&tid) else { return false };
        let (state, sched) = (t.state, t.sched);
        if core::mem::take(&mut t.counted) {
            // A dead thread no longer counts; its record is charged until it goes.
            QUOTAS.lock().uncharge(t.quota, THREADS, 1);
        }
        t.state = ThreadState::Dead;
        let caller = t.ipc.caller.take();
        if let Some(d) = t.deadline.take() {
            self.sleepers.remove(&(d, tid));
        }
        if let Some(c) = caller {
            // A client waiting on this server thread gets an error, not a hang.
            self.wake_with(c, Error::PeerDied.code(), &[]);
        }
        let mut running_elsewhere = false;
        match state {
            ThreadState::Ready => {
                let _ = self.sched.remove(sched);
            }
            ThreadState::Running(cpu) => {
                // It stays current there until that CPU reschedules (finish_trap relies on it).
                self.cpus[cpu].need_resched = true;
                if cpu != hal::this_cpu() {
                    running_elsewhere = true;
                    hal::send_ipi(cpu);
                }
            }
            ThreadState::Blocked(Block::Call { conn }) | ThreadState::Blocked(Block::Recv { conn }) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.pending.retain(|&x| x != tid);
                    c.servers.retain(|&x| x != tid);
                }
            }
            ThreadState::Blocked(Block::Reply { server }) => {
                if let Some(s) = self.threads.get_mut(&server) {
                    if s.ipc.caller == Some(tid) {
                        s.ipc.caller = None;
                        s.ipc.badge = u64::MAX; // the server's reply will get PeerDied
                    }
                }
            }
            ThreadState::Blocked(Block::Notif { notif }) => {
                if let Some(n) = self.notifs.get_mut(&notif) {
                    n.waiters.retain(|&x| x != tid);
                }
            }
            _ => {}
        }
        // A guest-mode thread that is not on a CPU lets go of its vCPU now; one on a CPU does
        // when that CPU saves it.
        if !matches!(state, ThreadState::Running(_)) {
            if let Some(v) = self.threads.get_mut(&tid).and_then(|t| t.guest.take()) {
                self.detach_runner(v);
            }
        }
        if !running_elsewhere && !self.is_current_anywhere(tid) {
            if self.threads.get(&tid).is_some_and(|t| t.refs == 0) {
                self.remove_thread(tid);
            }
        }
        running_elsewhere
    }

    /// A CPU dropped a dead thread it was running: finish its process's teardown if it was the last.
    fn reap_dead_thread(&mut self, tid: Id) {
        let Some(t) = self.threads.get(&tid) else { return };
        let pid = t.pid;
        if t.refs == 0 {
            self.remove_thread(tid);
        }
        let Some(p) = self.processes.get_mut(&pid) else { return };
        if p.running_after_exit > 0 {
            p.running_after_exit -= 1;
            if p.running_after_exit == 0 {
                self.release_process_vmspace(pid);
                self.maybe_remove_process(pid);
            }
        }
    }

    /// Ends one thread; the process ends with code 0 when it was the last.
    pub fn exit_thread(&mut self, tid: Id) {
        let Some(pid) = self.threads.get(&tid).map(|t| t.pid) else { return };
        let last = self.processes.get(&pid).is_some_and(|p| p.threads.len() == 1 && p.threads[0] == tid);
        if last {
            self.exit_process(pid, 0);
            return;
        }
        if let Some(p) = self.processes.get_mut(&pid) {
            p.threads.retain(|&t| t != tid);
        }
        self.kill_thread(tid);
    }
}

/// The ABI error for a capability-space error.
pub fn cap_error(e: crate::cap::CapError) -> Error {
    use crate::cap::CapError as C;
    match e {
        C::NoSuchTable => Error::BadState,
        C::AlreadyExists => Error::Exists,
        C::InvalidSlot => Error::BadSlot,
        C::SlotInUse => Error::Exists,
        C::TableFull => Error::TableFull,
        C::RightsEscalation => Error::Escalation,
        C::NoGrantRight => Error::NoRights,
        C::AlreadyBadged => Error::Escalation,
        C::MissingRights => Error::NoRights,
    }
}
