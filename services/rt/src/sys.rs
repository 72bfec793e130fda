//! One function per system call (numbers and registers: docs/ABI.md). Results are
//! `Result<_, Error>`; a negative x0 becomes the `Error`.

use keel_abi::ipc::{CapList, Message};
use keel_abi::{Error, NO_SLOT, PmoKind, Slot, slots, syscall as nr};

/// Registers x0..x7 after a call.
pub type Regs = [u64; 8];

pub mod raw {
    use super::Regs;

    /// Makes system call `nr` with `args` in x0..x7; returns x0..x7.
    #[cfg(target_os = "none")]
    #[inline(always)]
    pub fn syscall(nr: u64, args: [u64; 8]) -> Regs {
        super::tally::note(nr);
        let mut r = args;
        // SAFETY: `svc #0` enters the kernel, which reads x0..x8 and writes x0..x7; it touches our
        // memory only through pointers we passed explicitly, as the ABI documents.
        unsafe {
            core::arch::asm!("svc #0",
                inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
                inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
                in("x8") nr, options(nostack))
        };
        r
    }

    /// On the host there is no kernel.
    #[cfg(not(target_os = "none"))]
    pub fn syscall(_nr: u64, _args: [u64; 8]) -> Regs {
        let mut r = [0; 8];
        r[0] = keel_abi::Error::NoSys.code() as u64;
        r
    }
}

/// Counts of the system calls this process makes, by number, while [`tally::start`] has it on
/// (the `syscalls` test checks with it that it made every call). Off, it costs one relaxed load
/// per call.
pub mod tally {
    use core::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

    /// Buckets: one per call number below `BUCKETS - 1`; the last counts every higher number.
    pub const BUCKETS: usize = 64;
    static ON: AtomicBool = AtomicBool::new(false);
    static COUNTS: [AtomicU32; BUCKETS] = [const { AtomicU32::new(0) }; BUCKETS];

    #[inline(always)]
    pub(crate) fn note(nr: u64) {
        if ON.load(Relaxed) {
            COUNTS[(nr as usize).min(BUCKETS - 1)].fetch_add(1, Relaxed);
        }
    }

    /// Starts counting from zero (every thread of this process).
    pub fn start() {
        for c in &COUNTS {
            c.store(0, Relaxed);
        }
        ON.store(true, Relaxed);
    }

    /// Stops counting; the counts since [`start`].
    pub fn stop() -> [u32; BUCKETS] {
        ON.store(false, Relaxed);
        core::array::from_fn(|i| COUNTS[i].load(Relaxed))
    }
}

fn call(nr: u64, args: [u64; 8]) -> Result<Regs, Error> {
    let r = raw::syscall(nr, args);
    let status = r[0] as i64;
    if status < 0 { Err(Error::from_code(status).unwrap_or(Error::Invalid)) } else { Ok(r) }
}

fn a(x: &[u64]) -> [u64; 8] {
    let mut v = [0; 8];
    v[..x.len()].copy_from_slice(x);
    v
}

pub fn null() -> Result<(), Error> {
    call(nr::NULL, [0; 8]).map(|_| ())
}

pub fn debug_write(bytes: &[u8]) -> Result<usize, Error> {
    call(nr::DEBUG_WRITE, a(&[bytes.as_ptr() as u64, bytes.len() as u64])).map(|r| r[1] as usize)
}

pub fn yield_now() {
    let _ = call(nr::YIELD, [0; 8]);
}

pub fn thread_exit() -> ! {
    let _ = call(nr::THREAD_EXIT, [0; 8]);
    loop {
        core::hint::spin_loop();
    }
}

pub fn process_exit(code: i64) -> ! {
    let _ = call(nr::PROCESS_EXIT, a(&[code as u64]));
    loop {
        core::hint::spin_loop();
    }
}

/// (kind, rights, badge) of a capability.
pub fn cap_info(slot: Slot) -> Result<(u64, u32, u64), Error> {
    call(nr::CAP_INFO, a(&[slot as u64])).map(|r| (r[1], r[2] as u32, r[3]))
}

/// Copies a cap into our own table (`dest = None`) or into a process we manage; the new slot.
pub fn cap_copy(src: Slot, dest: Option<Slot>, rights: u32, badge: u64) -> Result<Slot, Error> {
    call(nr::CAP_COPY, a(&[src as u64, dest.unwrap_or(NO_SLOT) as u64, rights as u64, badge])).map(|r| r[1] as Slot)
}

pub fn cap_move(src: Slot, dest: Option<Slot>) -> Result<Slot, Error> {
    call(nr::CAP_MOVE, a(&[src as u64, dest.unwrap_or(NO_SLOT) as u64])).map(|r| r[1] as Slot)
}

pub fn cap_delete(slot: Slot) -> Result<(), Error> {
    call(nr::CAP_DELETE, a(&[slot as u64])).map(|_| ())
}

/// Deletes every copy derived from `slot`; how many were deleted.
pub fn cap_revoke(slot: Slot) -> Result<u64, Error> {
    call(nr::CAP_REVOKE, a(&[slot as u64])).map(|r| r[1])
}

/// A new process: (process slot, its vmspace slot, its pid).
/// A new process in our own quota: (process slot, vmspace slot, pid).
pub fn process_create(name: &str) -> Result<(Slot, Slot, u64), Error> {
    process_create_in(name, slots::SELF_PROCESS)
}

/// A new process in the quota `quota` names (a quota, or a process whose quota it joins; MANAGE),
/// or ours for [`slots::SELF_PROCESS`].
pub fn process_create_in(name: &str, quota: Slot) -> Result<(Slot, Slot, u64), Error> {
    call(nr::PROCESS_CREATE, a(&[name.as_ptr() as u64, name.len() as u64, quota as u64])).map(|r| (r[1] as Slot, r[2] as Slot, r[3]))
}

/// A new thread in `process` (0 affinity = any CPU): (thread slot, tid).
pub fn thread_create(process: Slot, entry: u64, stack: u64, arg: u64, priority: u8, affinity: u64) -> Result<(Slot, u64), Error> {
    call(nr::THREAD_CREATE, a(&[process as u64, entry, stack, arg, priority as u64, affinity])).map(|r| (r[1] as Slot, r[2]))
}

pub fn thread_set_sched(thread: Slot, priority: u8, affinity: u64) -> Result<(), Error> {
    call(nr::THREAD_SET_SCHED, a(&[thread as u64, priority as u64, affinity])).map(|_| ())
}

/// A memory object charged to our own quota.
pub fn pmo_create(kind: PmoKind, size: u64) -> Result<Slot, Error> {
    pmo_create_for(kind, size, slots::SELF_PROCESS)
}

/// A memory object charged to the quota `bill` names (a quota, or a process: its quota; MANAGE).
pub fn pmo_create_for(kind: PmoKind, size: u64, bill: Slot) -> Result<Slot, Error> {
    call(nr::PMO_CREATE, a(&[kind as u64, size, bill as u64])).map(|r| r[1] as Slot)
}

/// A child of quota `parent` (MANAGE), with no limits of its own; its slot (every right).
pub fn quota_create(parent: Slot) -> Result<Slot, Error> {
    call(nr::QUOTA_CREATE, a(&[parent as u64])).map(|r| r[1] as Slot)
}

/// Sets `quota`'s limit of `resource` (`keel_abi::quota::MEMORY`, ...; `NO_LIMIT` for none).
pub fn quota_set(quota: Slot, resource: u64, limit: u64) -> Result<(), Error> {
    call(nr::QUOTA_SET, a(&[quota as u64, resource, limit])).map(|_| ())
}

/// Usage, limit, peak and events of `quota`'s `resource` (READ).
pub fn quota_stat(quota: Slot, resource: u64) -> Result<keel_abi::quota::QuotaStat, Error> {
    call(nr::QUOTA_STAT, a(&[quota as u64, resource])).map(|r| keel_abi::quota::QuotaStat::from_words(&r[1..8]))
}

/// Sets `quota`'s CPU limit (cgroup v2's `cpu.max`): `quota_ns` of run time per `period_ns`
/// (`NO_LIMIT` for none; the period 1 ms to 1 s, the quota at least 1 ms).
pub fn quota_set_cpu(quota: Slot, quota_ns: u64, period_ns: u64) -> Result<(), Error> {
    call(nr::QUOTA_SET, a(&[quota as u64, keel_abi::quota::CPU, quota_ns, period_ns])).map(|_| ())
}

/// Sets `quota`'s CPU weight (1 to 10,000; default 100).
pub fn quota_set_weight(quota: Slot, weight: u64) -> Result<(), Error> {
    call(nr::QUOTA_SET, a(&[quota as u64, keel_abi::quota::CPU_WEIGHT, weight])).map(|_| ())
}

/// `quota`'s CPU time, limit and weight (READ).
pub fn quota_stat_cpu(quota: Slot) -> Result<keel_abi::quota::CpuStat, Error> {
    call(nr::QUOTA_STAT, a(&[quota as u64, keel_abi::quota::CPU])).map(|r| keel_abi::quota::CpuStat::from_words(&r[1..8]))
}

/// Moves running `process` (MANAGE) into `quota` (MANAGE); given a thread instead, that thread
/// alone (its count, record and CPU time).
pub fn quota_move(quota: Slot, process: Slot) -> Result<(), Error> {
    call(nr::QUOTA_MOVE, a(&[quota as u64, process as u64])).map(|_| ())
}

/// A bill on which we charge `payer` (a process or quota cap with BILL or MANAGE) for memory we
/// keep for it: "the client pays" (docs/ABI.md "Quotas"). With it, whether the payer's quota is
/// ours (then charging on the bill changes nothing).
pub fn bill_create(payer: Slot) -> Result<(Slot, bool), Error> {
    call(nr::BILL_CREATE, a(&[payer as u64])).map(|r| (r[1] as Slot, r[2] != 0))
}

/// Charges `bytes` more to the bill's payer (`NoMemory` past its limits); the bill's amount.
pub fn bill_charge(bill: Slot, bytes: u64) -> Result<u64, Error> {
    call(nr::BILL_CHARGE, a(&[bill as u64, bytes])).map(|r| r[1])
}

/// Gives `bytes` of the bill back to the payer; the bill's amount.
pub fn bill_refund(bill: Slot, bytes: u64) -> Result<u64, Error> {
    call(nr::BILL_REFUND, a(&[bill as u64, bytes])).map(|r| r[1])
}

pub fn pmo_write(pmo: Slot, offset: u64, bytes: &[u8]) -> Result<(), Error> {
    call(nr::PMO_WRITE, a(&[pmo as u64, offset, bytes.as_ptr() as u64, bytes.len() as u64])).map(|_| ())
}

pub fn pmo_read(pmo: Slot, offset: u64, out: &mut [u8]) -> Result<(), Error> {
    call(nr::PMO_READ, a(&[pmo as u64, offset, out.as_mut_ptr() as u64, out.len() as u64])).map(|_| ())
}

pub fn pmo_phys(pmo: Slot) -> Result<u64, Error> {
    call(nr::PMO_PHYS, a(&[pmo as u64])).map(|r| r[1])
}

pub fn vmspace_map(vmspace: Slot, pmo: Slot, va: u64, size: u64, pmo_offset: u64, perms: u64) -> Result<(), Error> {
    call(nr::VMSPACE_MAP, a(&[vmspace as u64, pmo as u64, va, size, pmo_offset, perms])).map(|_| ())
}

pub fn vmspace_unmap(vmspace: Slot, va: u64, size: u64) -> Result<(), Error> {
    call(nr::VMSPACE_UNMAP, a(&[vmspace as u64, va, size])).map(|_| ())
}

/// Blocks until the process exits; its exit code.
pub fn process_wait(process: Slot) -> Result<i64, Error> {
    call(nr::PROCESS_WAIT, a(&[process as u64])).map(|r| r[1] as i64)
}

pub fn process_kill(process: Slot) -> Result<(), Error> {
    call(nr::PROCESS_KILL, a(&[process as u64, 0])).map(|_| ())
}

/// What `process_info` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub running: bool,
    pub exit_code: i64,
    pub pages: u64,
    pub threads: u64,
    pub pid: u64,
    /// The number of the quota it is charged to (`QuotaStat::id`: how `ps` finds its cgroup).
    pub quota: u64,
}

pub fn process_info(process: Slot) -> Result<ProcessInfo, Error> {
    call(nr::PROCESS_INFO, a(&[process as u64]))
        .map(|r| ProcessInfo { running: r[1] == 0, exit_code: r[2] as i64, pages: r[3], threads: r[4], pid: r[5], quota: r[6] })
}

/// Signals `bits` on `notif` when `process` exits.
pub fn process_watch(process: Slot, notif: Slot, bits: u64) -> Result<(), Error> {
    call(nr::PROCESS_WATCH, a(&[process as u64, notif as u64, bits])).map(|_| ())
}

pub fn conn_create() -> Result<Slot, Error> {
    call(nr::CONN_CREATE, [0; 8]).map(|r| r[1] as Slot)
}

/// From now on `conn` dies when `process` exits, not when its creator does (a connection made
/// for another process to serve: its clients then learn of that server's death).
pub fn conn_owner(conn: Slot, process: Slot) -> Result<(), Error> {
    call(nr::CONN_OWNER, a(&[conn as u64, process as u64])).map(|_| ())
}

/// A received message: the message, the sender's badge, and the caps that came with it.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub msg: Message,
    pub badge: u64,
    pub caps: CapList,
}

fn received(r: Regs) -> Received {
    Received { msg: Message::new(r[1], [r[2], r[3], r[4], r[5]]), badge: r[6], caps: CapList(r[7]) }
}

fn msg_args(slot: Slot, msg: &Message, caps: CapList) -> [u64; 8] {
    [slot as u64, msg.label, msg.data[0], msg.data[1], msg.data[2], msg.data[3], 0, caps.0]
}

/// Calls a server and waits for its reply.
pub fn ipc_call(conn: Slot, msg: &Message, caps: CapList) -> Result<Received, Error> {
    call(nr::IPC_CALL, msg_args(conn, msg, caps)).map(received)
}

pub fn ipc_recv(conn: Slot) -> Result<Received, Error> {
    call(nr::IPC_RECV, a(&[conn as u64])).map(received)
}

/// Replies to the current caller and waits for the next call.
pub fn ipc_reply_recv(conn: Slot, reply: &Message, caps: CapList) -> Result<Received, Error> {
    call(nr::IPC_REPLY_RECV, msg_args(conn, reply, caps)).map(received)
}

pub fn ipc_reply(reply: &Message, caps: CapList) -> Result<(), Error> {
    call(nr::IPC_REPLY, msg_args(0, reply, caps)).map(|_| ())
}

pub fn notif_create() -> Result<Slot, Error> {
    call(nr::NOTIF_CREATE, [0; 8]).map(|r| r[1] as Slot)
}

pub fn notif_signal(notif: Slot, bits: u64) -> Result<(), Error> {
    call(nr::NOTIF_SIGNAL, a(&[notif as u64, bits])).map(|_| ())
}

/// Waits for bits (0 timeout = forever); the bits that were pending.
pub fn notif_wait(notif: Slot, timeout_ns: u64) -> Result<u64, Error> {
    call(nr::NOTIF_WAIT, a(&[notif as u64, timeout_ns])).map(|r| r[1])
}

pub fn irq_create(control: Slot, intid: u32) -> Result<Slot, Error> {
    call(nr::IRQ_CREATE, a(&[control as u64, intid as u64])).map(|r| r[1] as Slot)
}

pub fn irq_bind(irq: Slot, notif: Slot, bits: u64) -> Result<(), Error> {
    call(nr::IRQ_BIND, a(&[irq as u64, notif as u64, bits])).map(|_| ())
}

pub fn irq_ack(irq: Slot) -> Result<(), Error> {
    call(nr::IRQ_ACK, a(&[irq as u64])).map(|_| ())
}

pub fn device_pmo(control: Slot, phys: u64, size: u64) -> Result<Slot, Error> {
    call(nr::DEVICE_PMO, a(&[control as u64, phys, size])).map(|r| r[1] as Slot)
}

/// (total, free) physical frames.
pub fn mem_info() -> Result<(u64, u64), Error> {
    call(nr::MEM_INFO, [0; 8]).map(|r| (r[1], r[2]))
}

/// Counter ticks during which every CPU waited at once since user space started (`mem_info`
/// page IDLE): under icount the counter counts instructions except across those.
pub fn all_idle_ticks() -> Result<u64, Error> {
    call(nr::MEM_INFO, [keel_abi::syscall::mem_info::IDLE, 0, 0, 0, 0, 0, 0, 0]).map(|r| r[1])
}

/// The CPU's feature registers as Keel lets programs use them (`mem_info` page CPU, docs/ABI.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub isar0: u64,
    pub isar1: u64,
    pub isar2: u64,
    pub pfr0: u64,
    pub pfr1: u64,
    pub mmfr0: u64,
    pub zfr0: u64,
}

impl CpuFeatures {
    /// FEAT_RNG: the RNDR and RNDRRS registers exist (ID_AA64ISAR0_EL1.RNDR, bits 63:60).
    pub fn rndr(&self) -> bool {
        self.isar0 >> 60 != 0
    }
}

pub fn cpu_features() -> Result<CpuFeatures, Error> {
    let r = call(nr::MEM_INFO, a(&[keel_abi::syscall::mem_info::CPU]))?;
    Ok(CpuFeatures { isar0: r[1], isar1: r[2], isar2: r[3], pfr0: r[4], pfr1: r[5], mmfr0: r[6], zfr0: r[7] })
}

pub fn power_off(control: Slot, reset: bool) -> Result<(), Error> {
    call(nr::POWER_OFF, a(&[control as u64, reset as u64])).map(|_| ())
}

pub fn sleep_ns(ns: u64) {
    let _ = call(nr::SLEEP, a(&[ns]));
}

/// Opens (`true`) or closes a profiling window: `hint #0x7e` / `hint #0x7f`, no-ops to the CPU
/// that scripts/profile's QEMU plugin watches for.
#[inline(always)]
pub fn profile_mark(open: bool) {
    #[cfg(target_os = "none")]
    // SAFETY: unallocated hint instructions execute as NOPs.
    unsafe {
        if open {
            core::arch::asm!("hint #0x7e", options(nomem, nostack, preserves_flags));
        } else {
            core::arch::asm!("hint #0x7f", options(nomem, nostack, preserves_flags));
        }
    }
    #[cfg(not(target_os = "none"))]
    let _ = open;
}

/// The virtual counter (CNTVCT_EL0): ticks since boot; under icount, instructions.
#[inline(always)]
pub fn counter() -> u64 {
    #[cfg(target_os = "none")]
    {
        let v: u64;
        // SAFETY: reading the virtual counter has no side effects; EL0 access is enabled by the kernel.
        unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nostack)) };
        v
    }
    #[cfg(not(target_os = "none"))]
    {
        0
    }
}

/// Counter frequency (ticks per second).
pub fn counter_freq() -> u64 {
    #[cfg(target_os = "none")]
    {
        let v: u64;
        // SAFETY: reading CNTFRQ_EL0 has no side effects.
        unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
        v
    }
    #[cfg(not(target_os = "none"))]
    {
        1_000_000_000
    }
}

// ---- Virtual machines (docs/ABI.md, "Virtual machines") ----------------------------------------

/// What `vcpu_run` returned: the reason and its details (x2..x6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuExit {
    pub reason: u64,
    pub details: [u64; 5],
}

pub fn vm_create(control: Slot, vcpus: u32) -> Result<Slot, Error> {
    vm_create_for(control, vcpus, slots::SELF_PROCESS)
}

/// A VM whose stage-2 tables are charged to the quota `bill` names (a quota or a process, MANAGE;
/// [`slots::SELF_PROCESS`]: ours).
pub fn vm_create_for(control: Slot, vcpus: u32, bill: Slot) -> Result<Slot, Error> {
    call(nr::VM_CREATE, a(&[control as u64, u64::from(vcpus), bill as u64])).map(|r| r[1] as Slot)
}

/// Maps `size` bytes of `pmo` (from `pmo_offset`) at guest physical `ipa`; with
/// `keel_abi::vm::map::MMIO` in `flags`, a region whose accesses exit to the monitor instead.
pub fn vm_map(vm: Slot, pmo: Slot, ipa: u64, size: u64, pmo_offset: u64, flags: u64) -> Result<(), Error> {
    call(nr::VM_MAP, a(&[vm as u64, pmo as u64, ipa, size, pmo_offset, flags])).map(|_| ())
}

pub fn vcpu_create(vm: Slot, index: u32) -> Result<Slot, Error> {
    call(nr::VCPU_CREATE, a(&[vm as u64, u64::from(index)])).map(|r| r[1] as Slot)
}

pub fn vcpu_init(vcpu: Slot, pc: u64, x0: u64, flags: u64) -> Result<(), Error> {
    call(nr::VCPU_INIT, a(&[vcpu as u64, pc, x0, flags])).map(|_| ())
}

/// Runs the vCPU until an exit the kernel does not finish; `results` completes the previous exit
/// (an MMIO read's value, or a forwarded hypercall's x0..x3).
pub fn vcpu_run(vcpu: Slot, results: [u64; 4]) -> Result<VcpuExit, Error> {
    call(nr::VCPU_RUN, a(&[vcpu as u64, results[0], results[1], results[2], results[3]]))
        .map(|r| VcpuExit { reason: r[1], details: [r[2], r[3], r[4], r[5], r[6]] })
}

pub fn vcpu_kick(vcpu: Slot) -> Result<(), Error> {
    call(nr::VCPU_KICK, a(&[vcpu as u64])).map(|_| ())
}

/// A capability for SPI `intid` of a VM (for a device backend).
pub fn vm_irq_line_create(vm: Slot, intid: u32) -> Result<Slot, Error> {
    call(nr::VM_IRQ_LINE_CREATE, a(&[vm as u64, u64::from(intid)])).map(|r| r[1] as Slot)
}

/// A capability for SPI `intid` of a virtio-mmio device of a VM whose InterruptStatus register
/// (at `status_ipa`, InterruptACK after it) the kernel keeps: [`vm_irq_raise`] sets its bits,
/// the guest reads and acknowledges them without an exit to the monitor.
pub fn vm_virtio_irq_line(vm: Slot, intid: u32, status_ipa: u64) -> Result<Slot, Error> {
    call(nr::VM_IRQ_LINE_CREATE, a(&[vm as u64, u64::from(intid), status_ipa])).map(|r| r[1] as Slot)
}

/// A capability for SPI `intid` of a VM whose device's flags register at `ipa` the kernel
/// answers (loads of 1, 2 or 4 bytes) with the value [`vm_irq_line_value`] set last, without an
/// exit to the monitor (the PL011's UARTFR, read before every byte a guest writes).
pub fn vm_flags_irq_line(vm: Slot, intid: u32, ipa: u64) -> Result<Slot, Error> {
    call(nr::VM_IRQ_LINE_CREATE, a(&[vm as u64, u64::from(intid), ipa, 1])).map(|r| r[1] as Slot)
}

/// As [`vm_flags_irq_line`], and the kernel buffers the guest's stores to the transmit
/// register at `tx_ipa` (the PL011's UARTDR) while [`vm_irq_line_value`] says they may be: the
/// monitor takes them with [`vm_tx_take`] when an exit says some are waiting (an MMIO exit's
/// x5, [`ExitReason::Transmit`](keel_abi::vm::ExitReason::Transmit)).
pub fn vm_console_irq_line(vm: Slot, intid: u32, flags_ipa: u64, tx_ipa: u64) -> Result<Slot, Error> {
    call(nr::VM_IRQ_LINE_CREATE, a(&[vm as u64, u64::from(intid), flags_ipa, 1, tx_ipa])).map(|r| r[1] as Slot)
}

/// Sets the value an irq line's flags register reads (the line itself does not change), and
/// whether its transmit register (if any) buffers the guest's stores from now on: only while a
/// store would change nothing but the device's output.
pub fn vm_irq_line_value(line: Slot, value: u32, tx_open: bool) -> Result<(), Error> {
    call(nr::VM_IRQ_LINE, a(&[line as u64, 3, u64::from(value), u64::from(tx_open)])).map(|_| ())
}

/// Moves the oldest bytes of an irq line's transmit buffer into `buf`; returns how many.
pub fn vm_tx_take(line: Slot, buf: &mut [u8]) -> Result<usize, Error> {
    call(nr::VM_TX_TAKE, a(&[line as u64, buf.as_mut_ptr() as u64, buf.len() as u64])).map(|r| r[1] as usize)
}

/// Raises an irq line (an edge) with `bits` ORed into its interrupt status register first (if
/// the line has one).
pub fn vm_irq_raise(line: Slot, bits: u32) -> Result<(), Error> {
    call(nr::VM_IRQ_LINE, a(&[line as u64, 2, u64::from(bits)])).map(|_| ())
}

/// Sets an irq-line capability's SPI: 0 low, 1 high, 2 an edge.
pub fn vm_irq_line(line: Slot, level: u64) -> Result<(), Error> {
    call(nr::VM_IRQ_LINE, a(&[line as u64, level])).map(|_| ())
}

/// vm_ioevent(vm, notif, ipa, len | flags, data, bits) -> slot: guest writes of `len` bytes at
/// `ipa` in an MMIO region of the VM (with `data`, only of that value) signal `bits` on `notif`
/// in the kernel instead of exiting to the monitor; deleting the slot unregisters them.
pub fn vm_ioevent(vm: Slot, notif: Slot, ipa: u64, len: u8, data: Option<u64>, bits: u64) -> Result<Slot, Error> {
    let flags = u64::from(len) | if data.is_some() { keel_abi::vm::ioevent::MATCH } else { 0 };
    call(nr::VM_IOEVENT, a(&[vm as u64, notif as u64, ipa, flags, data.unwrap_or(0), bits])).map(|r| r[1] as Slot)
}

/// Exit counters `first..first+7` of a vCPU.
pub fn vcpu_stat(vcpu: Slot, first: usize) -> Result<[u64; 7], Error> {
    call(nr::VCPU_STAT, a(&[vcpu as u64, first as u64])).map(|r| [r[1], r[2], r[3], r[4], r[5], r[6], r[7]])
}

/// The kernel object census and memory pools (`mem_info` pages 0-2, docs/ABI.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub frames_total: u64,
    pub frames_free: u64,
    pub heap_pages: u64,
    pub heap_free_pages: u64,
    pub processes: u64,
    pub threads: u64,
    pub vmspaces: u64,
    pub pmos: u64,
    pub connections: u64,
    pub notifications: u64,
    pub irqs: u64,
    pub vms: u64,
    pub vcpus: u64,
    pub vm_irq_lines: u64,
    pub vm_ioevents: u64,
    pub caps: u64,
    pub tables: u64,
    pub pmo_frames: u64,
    pub table_frames: u64,
}

impl Census {
    /// Frames held by the kernel itself: neither free nor in a PMO or a page table (its heap,
    /// boot structures). A frame leaked by the kernel shows here; a live process's heap or page
    /// tables growing does not.
    pub fn kernel_frames(&self) -> u64 {
        self.frames_total.saturating_sub(self.frames_free + self.pmo_frames + self.table_frames)
    }

    /// Frames processes hold, in their memory objects and page tables.
    pub fn process_frames(&self) -> u64 {
        self.pmo_frames + self.table_frames
    }

    /// (name, count) of every kind of kernel object, in a fixed order.
    pub fn objects(&self) -> [(&'static str, u64); 13] {
        [
            ("processes", self.processes),
            ("threads", self.threads),
            ("vmspaces", self.vmspaces),
            ("pmos", self.pmos),
            ("connections", self.connections),
            ("notifications", self.notifications),
            ("irqs", self.irqs),
            ("vms", self.vms),
            ("vcpus", self.vcpus),
            ("vm-irq-lines", self.vm_irq_lines),
            ("vm-ioevents", self.vm_ioevents),
            ("caps", self.caps),
            ("slot-tables", self.tables),
        ]
    }
}

/// The census, read in three calls (other CPUs may change it between them; the frame counts come
/// from one call and agree with each other).
pub fn census() -> Result<Census, Error> {
    use keel_abi::syscall::mem_info as page;
    let m = call(nr::MEM_INFO, a(&[page::MEMORY]))?;
    let o = call(nr::MEM_INFO, a(&[page::OBJECTS]))?;
    let x = call(nr::MEM_INFO, a(&[page::MORE_OBJECTS]))?;
    Ok(Census {
        frames_total: m[1],
        frames_free: m[2],
        heap_pages: m[3],
        heap_free_pages: m[4],
        pmo_frames: m[5],
        table_frames: m[6],
        processes: o[1],
        threads: o[2],
        vmspaces: o[3],
        pmos: o[4],
        connections: o[5],
        notifications: o[6],
        irqs: o[7],
        vms: x[1],
        vcpus: x[2],
        vm_irq_lines: x[3],
        vm_ioevents: x[7],
        caps: x[4],
        tables: x[5],
    })
}

/// Arms the calling thread's next system call to fail its `nth` allocation point (0 disarms);
/// returns (whether the previously armed call's failure fired, allocation points it reached).
pub fn fault_inject(control: Slot, nth: u64) -> Result<(bool, u64), Error> {
    call(nr::FAULT_INJECT, a(&[control as u64, nth])).map(|r| (r[1] != 0, r[2]))
}
