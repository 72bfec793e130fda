//! `syscalls`: every system call with bad input returns the documented error and changes
//! nothing; every call number is made (counted by `keel_rt::sys::tally`, checked at the end:
//! all of them but process_exit, which ends the process), the VM calls also with good
//! arguments on a tiny guest.
//!
//! The core is [`refusals`], a battery of calls that must all fail (bad and empty slots, wrong
//! object types, missing rights, unaligned, out-of-range and kernel addresses, unmapped buffers,
//! huge lengths, unknown call numbers, bad states). It runs twice: the second run must not change
//! this process's resident pages (`process_info`; the machine-wide free-frame count is not used:
//! other processes may touch new pages meanwhile), and between groups the lowest
//! free slot and the test object's contents are checked unchanged. Other groups need an object
//! made for them (a mapping to collide with, an empty child process, a full slot table, a
//! thread, an IRQ) and check both the refusals and that the state is what it was afterwards.

use super::{MS, SEC};
use crate::check::Checks;
use crate::echo;
use crate::worker;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::abi::ipc::{CapList, Message};
use keel_rt::abi::{
    MAX_COPY, ObjectKind, PAGE_SIZE, PmoKind, STARTUP_VA, USER_MAX_VA, perm, rights, slots, syscall as nr,
};
use keel_rt::startup::Startup;
use keel_rt::sys::{self, Regs};
use keel_rt::{Error, Slot, vm};

/// A slot beyond every table, the largest slot number, and a valid slot that stays empty.
const OUT_OF_RANGE: Slot = 4096;
const MAX_SLOT: Slot = 0xFFFF_FFFF;
const EMPTY: Slot = 4095;
/// Addresses user space may never name.
const KERNEL_VA: u64 = 0xffff_0000_0000_0000;
const KERNEL_VA_HIGH: u64 = 0xffff_ff80_0000_0000;
/// Bytes of the test PMO.
const PMO_SIZE: u64 = 2 * PAGE_SIZE;
/// An intid the kernel lets user space claim (virtio-mmio slot 0 on QEMU virt).
const CLAIMABLE_INTID: u64 = 48;
/// RAM on QEMU virt starts here.
const RAM_BASE: u64 = 0x4000_0000;
/// The PL011 UART (device memory) on QEMU virt.
const UART_BASE: u64 = 0x0900_0000;

/// A system call with arbitrary registers; x0 decoded as a status.
fn raw(nr: u64, args: &[u64]) -> Result<Regs, Error> {
    let mut a = [0u64; 8];
    a[..args.len()].copy_from_slice(args);
    let r = sys::raw::syscall(nr, a);
    let status = r[0] as i64;
    if status < 0 { Err(Error::from_code(status).unwrap_or(Error::Invalid)) } else { Ok(r) }
}

/// The objects the checks use.
struct Fixture {
    /// An anonymous PMO of PMO_SIZE holding `contents` at offset 0 (all rights).
    pmo: Slot,
    contents: Vec<u8>,
    notif: Slot,
    conn: Slot,
    control: Option<Slot>,
    /// A copy with only READ | MAP.
    pmo_ro: Slot,
    /// A copy with only WRITE.
    pmo_wo: Slot,
    /// A copy with only SERVE.
    conn_serve: Slot,
    /// A copy with only CALL.
    conn_call: Slot,
    /// A copy with only SIGNAL.
    notif_signal: Slot,
    /// A copy with only WAIT.
    notif_wait: Slot,
    /// A copy with only SIGNAL | WAIT.
    notif_nogrant: Slot,
    /// A copy with only READ | WAIT.
    self_nomanage: Slot,
    /// A copy with only WAIT | MANAGE.
    self_noread: Slot,
    /// A copy with only READ | MANAGE.
    self_nowait: Slot,
    /// A copy with only READ.
    vmspace_nomap: Slot,
    /// A copy with only READ.
    control_weak: Option<Slot>,
    /// A mapped read-write buffer of one page; the page after it is unmapped (a guard).
    buf: u64,
    /// Four pages of address space nothing is mapped in.
    hole: u64,
    /// The top of a mapped stack for threads that should never be created.
    stray_stack: u64,
}

/// Where threads that must not be created would start: they would only park.
extern "C" fn stray_thread(_arg: u64) -> ! {
    loop {
        sys::sleep_ns(SEC);
    }
}

/// The address of [`stray_thread`].
fn stray_entry() -> u64 {
    stray_thread as extern "C" fn(u64) -> ! as usize as u64
}

fn copy(c: &mut Checks, src: Slot, r: u32) -> Slot {
    c.expect_ok(format_args!("cap_copy(slot {src}, rights {r:#x})"), sys::cap_copy(src, None, r, 0)).unwrap_or(EMPTY)
}

impl Fixture {
    fn new(c: &mut Checks, startup: &Startup) -> Option<Self> {
        let pmo = c.expect_ok("pmo_create(anonymous, 2 pages)", sys::pmo_create(PmoKind::Anonymous, PMO_SIZE))?;
        let contents = echo::pattern(64, 0x5eed);
        c.expect_ok("pmo_write(test pmo, 0, 64 bytes)", sys::pmo_write(pmo, 0, &contents))?;
        let notif = c.expect_ok("notif_create", sys::notif_create())?;
        let conn = c.expect_ok("conn_create", sys::conn_create())?;
        let control = startup.cap("control");
        if control.is_none() {
            c.fail("no 'control' capability in the startup block: the control checks are skipped");
        }
        let buf = c.expect_ok("map_anonymous(1 page)", vm::map_anonymous(PAGE_SIZE))?.0;
        let stray_stack = c.expect_ok("map_anonymous(stack)", vm::map_anonymous(16 * PAGE_SIZE))?.0 + 16 * PAGE_SIZE;
        Some(Self {
            pmo,
            contents,
            notif,
            conn,
            control,
            pmo_ro: copy(c, pmo, rights::READ | rights::MAP),
            pmo_wo: copy(c, pmo, rights::WRITE),
            conn_serve: copy(c, conn, rights::SERVE),
            conn_call: copy(c, conn, rights::CALL),
            notif_signal: copy(c, notif, rights::SIGNAL),
            notif_wait: copy(c, notif, rights::WAIT),
            notif_nogrant: copy(c, notif, rights::SIGNAL | rights::WAIT),
            self_nomanage: copy(c, slots::SELF_PROCESS, rights::READ | rights::WAIT),
            self_noread: copy(c, slots::SELF_PROCESS, rights::WAIT | rights::MANAGE),
            self_nowait: copy(c, slots::SELF_PROCESS, rights::READ | rights::MANAGE),
            vmspace_nomap: copy(c, slots::SELF_VMSPACE, rights::READ),
            control_weak: control.map(|s| copy(c, s, rights::READ)),
            buf,
            hole: vm::reserve(4 * PAGE_SIZE),
            stray_stack,
        })
    }

    /// Checks the test PMO still holds its contents.
    fn check_contents(&self, c: &mut Checks, after: &str) {
        let mut now = alloc::vec![0u8; self.contents.len()];
        if c.expect_ok(format_args!("pmo_read(test pmo) after {after}"), sys::pmo_read(self.pmo, 0, &mut now)).is_some()
        {
            c.check(now == self.contents, || format!("test pmo contents changed by {after}"));
        }
    }
}

/// The slot the next new capability would get.
fn lowest_free() -> Result<Slot, Error> {
    let n = sys::notif_create()?;
    sys::cap_delete(n)?;
    Ok(n)
}

pub fn run(startup: &Startup) -> i32 {
    sys::tally::start();
    let mut c = Checks::new("syscalls");
    let Some(fx) = Fixture::new(&mut c, startup) else { return c.finish("") };
    let free_slot = lowest_free();

    object_kinds(&mut c, &fx);
    super::memops::run(&mut c);
    // First run of the battery (also touches every page it uses), then the measured run.
    refusals(&mut c, &fx);
    let pages = || sys::process_info(keel_rt::abi::slots::SELF_PROCESS).map(|i| i.pages);
    let before = pages();
    let mut again = Checks::new("syscalls");
    refusals(&mut again, &fx);
    let after = pages();
    if again.failures() > 0 {
        c.fail(format_args!("the second run of the refusals failed {} checks", again.failures()));
    }
    match (before, after) {
        (Ok(b), Ok(a)) => {
            c.expect_eq("resident pages after the refusals (only failing calls)", a, b);
        }
        (b, a) => c.fail(format_args!("process_info: before {b:?}, after {a:?}")),
    }
    c.expect_eq("lowest free slot after the refusals", lowest_free(), free_slot);
    fx.check_contents(&mut c, "the refusals");

    mappings(&mut c, &fx);
    caps(&mut c, &fx);
    notifications(&mut c, &fx);
    child_process(&mut c, &fx);
    threads(&mut c, &fx);
    irqs(&mut c, &fx);
    table_full(&mut c);
    ipc_refusals(&mut c, &fx);
    vm_calls(&mut c, &fx);
    scheduling_calls(&mut c);
    fault_injection(&mut c, &fx);
    c.expect_eq("lowest free slot at the end", lowest_free(), free_slot);
    fx.check_contents(&mut c, "every group");

    let made = check_every_call_made(&mut c, &sys::tally::stop());
    let n = c.count();
    c.finish(format!("{n} checks; {made} of {} call numbers made (process_exit ends it)", nr::COUNT))
}

/// cap_info reports what each new capability is.
fn object_kinds(c: &mut Checks, fx: &Fixture) {
    let all = rights::ALL;
    for (what, slot, kind, r) in [
        ("self process", slots::SELF_PROCESS, ObjectKind::CapGroup, all),
        ("self vmspace", slots::SELF_VMSPACE, ObjectKind::VmSpace, all),
        ("new pmo", fx.pmo, ObjectKind::Pmo, all),
        ("new notification", fx.notif, ObjectKind::Notification, all),
        ("new connection", fx.conn, ObjectKind::Connection, all),
        ("READ|MAP pmo copy", fx.pmo_ro, ObjectKind::Pmo, rights::READ | rights::MAP),
    ] {
        c.expect_eq(format_args!("cap_info({what}, slot {slot})"), sys::cap_info(slot), Ok((kind as u64, r, 0)));
    }
    if let Some(ctl) = fx.control {
        let got = sys::cap_info(ctl).map(|(k, _, _)| k);
        c.expect_eq(format_args!("cap_info(control) kind"), got, Ok(ObjectKind::Control as u64));
    }
    match sys::mem_info() {
        Ok((total, free)) => {
            c.check(total > 0 && free > 0 && free <= total, || format!("mem_info: total {total}, free {free}"));
        }
        Err(e) => c.fail(format_args!("mem_info: {e:?}")),
    }
    // The CPU page: ID_AA64PFR0_EL1.EL0 says AArch64 (1 or 2) on every CPU Keel runs on.
    match sys::cpu_features() {
        Ok(f) => {
            c.check(matches!(f.pfr0 & 0xf, 1 | 2) && f.mmfr0 & 0xf <= 5, || format!("mem_info(CPU): {f:x?}"));
        }
        Err(e) => c.fail(format_args!("mem_info(CPU): {e:?}")),
    }
    // The idle page: its total only grows.
    match (sys::all_idle_ticks(), sys::all_idle_ticks()) {
        (Ok(a), Ok(b)) => {
            c.check(a <= b, || format!("mem_info(IDLE): {a} then {b}"));
        }
        (a, b) => c.fail(format_args!("mem_info(IDLE): {a:?}, {b:?}")),
    }
    c.expect_err("mem_info(page 5)", raw(nr::MEM_INFO, &[5]), Error::Invalid);
}

/// Calls that must all fail. No call here may succeed or allocate anything.
fn refusals(c: &mut Checks, fx: &Fixture) {
    bad_slots(c, fx);
    wrong_types(c, fx);
    missing_rights(c, fx);
    bad_addresses(c, fx);
    bad_values(c, fx);
    no_such_calls(c);
    bad_states(c, fx);
}

fn bad_slots(c: &mut Checks, fx: &Fixture) {
    let buf = fx.buf;
    for s in [OUT_OF_RANGE, MAX_SLOT, EMPTY] {
        let bs = Error::BadSlot;
        let s64 = s as u64;
        c.expect_err(format_args!("cap_info(slot {s})"), sys::cap_info(s), bs);
        c.expect_err(format_args!("cap_delete(slot {s})"), sys::cap_delete(s), bs);
        c.expect_err(format_args!("cap_revoke(slot {s})"), sys::cap_revoke(s), bs);
        c.expect_err(format_args!("cap_copy(slot {s})"), sys::cap_copy(s, None, rights::READ, 0), bs);
        c.expect_err(format_args!("cap_move(slot {s})"), sys::cap_move(s, None), bs);
        if s != MAX_SLOT {
            // MAX_SLOT as the destination means "my own table".
            c.expect_err(
                format_args!("cap_copy(notif, dest slot {s})"),
                sys::cap_copy(fx.notif, Some(s), rights::READ, 0),
                bs,
            );
            c.expect_err(format_args!("cap_move(notif, dest slot {s})"), sys::cap_move(fx.notif, Some(s)), bs);
        }
        c.expect_err(format_args!("pmo_write(slot {s})"), sys::pmo_write(s, 0, &[1]), bs);
        c.expect_err(format_args!("pmo_read(slot {s})"), raw(nr::PMO_READ, &[s64, 0, buf, 1]), bs);
        c.expect_err(format_args!("pmo_phys(slot {s})"), sys::pmo_phys(s), bs);
        c.expect_err(
            format_args!("vmspace_map(vmspace slot {s})"),
            sys::vmspace_map(s, fx.pmo, fx.hole, PAGE_SIZE, 0, perm::READ),
            bs,
        );
        c.expect_err(
            format_args!("vmspace_map(pmo slot {s})"),
            sys::vmspace_map(slots::SELF_VMSPACE, s, fx.hole, PAGE_SIZE, 0, perm::READ),
            bs,
        );
        c.expect_err(format_args!("vmspace_unmap(slot {s})"), sys::vmspace_unmap(s, fx.hole, PAGE_SIZE), bs);
        c.expect_err(format_args!("process_wait(slot {s})"), sys::process_wait(s), bs);
        c.expect_err(format_args!("process_kill(slot {s})"), sys::process_kill(s), bs);
        c.expect_err(format_args!("process_info(slot {s})"), sys::process_info(s), bs);
        c.expect_err(format_args!("process_watch(slot {s})"), sys::process_watch(s, fx.notif, 1), bs);
        c.expect_err(format_args!("conn_owner(slot {s}, self)"), sys::conn_owner(s, slots::SELF_PROCESS), bs);
        c.expect_err(format_args!("conn_owner(conn, process slot {s})"), sys::conn_owner(fx.conn, s), bs);
        c.expect_err(
            format_args!("process_watch(self, notif slot {s})"),
            sys::process_watch(slots::SELF_PROCESS, s, 1),
            bs,
        );
        c.expect_err(
            format_args!("thread_create(slot {s})"),
            sys::thread_create(s, stray_entry(), fx.stray_stack, 0, 32, 0),
            bs,
        );
        c.expect_err(format_args!("thread_set_sched(slot {s})"), sys::thread_set_sched(s, 32, 0), bs);
        c.expect_err(format_args!("ipc_call(slot {s})"), sys::ipc_call(s, &Message::default(), CapList::EMPTY), bs);
        c.expect_err(format_args!("ipc_recv(slot {s})"), sys::ipc_recv(s), bs);
        c.expect_err(format_args!("notif_signal(slot {s})"), sys::notif_signal(s, 1), bs);
        c.expect_err(format_args!("notif_wait(slot {s})"), sys::notif_wait(s, MS), bs);
        c.expect_err(format_args!("irq_bind(slot {s})"), sys::irq_bind(s, fx.notif, 1), bs);
        c.expect_err(format_args!("irq_ack(slot {s})"), sys::irq_ack(s), bs);
        c.expect_err(format_args!("irq_create(control slot {s})"), raw(nr::IRQ_CREATE, &[s64, CLAIMABLE_INTID]), bs);
        c.expect_err(format_args!("device_pmo(control slot {s})"), sys::device_pmo(s, UART_BASE, PAGE_SIZE), bs);
        c.expect_err(format_args!("power_off(control slot {s})"), sys::power_off(s, false), bs);
        c.expect_err(format_args!("quota_create(slot {s})"), sys::quota_create(s), bs);
        c.expect_err(format_args!("quota_set(slot {s})"), sys::quota_set(s, 0, 1), bs);
        c.expect_err(format_args!("quota_stat(slot {s})"), sys::quota_stat(s, 0), bs);
        c.expect_err(format_args!("quota_move(slot {s}, self)"), sys::quota_move(s, slots::SELF_PROCESS), bs);
        c.expect_err(format_args!("pmo_create(billed to slot {s})"), sys::pmo_create_for(PmoKind::Anonymous, PAGE_SIZE, s), bs);
        c.expect_err(format_args!("process_create(in slot {s})"), sys::process_create_in("x", s), bs);
        c.expect_err(format_args!("bill_create(payer slot {s})"), sys::bill_create(s), bs);
        c.expect_err(format_args!("bill_charge(slot {s})"), sys::bill_charge(s, 1), bs);
        c.expect_err(format_args!("bill_refund(slot {s})"), sys::bill_refund(s, 1), bs);
    }
    // A slot number does not wrap: the high half of the register is part of it.
    for high in [1u64 << 32, 0xFFFF_FFFF_0000_0000] {
        let s = high | slots::SELF_PROCESS as u64;
        c.expect_err(format_args!("cap_info(slot {s:#x})"), raw(nr::CAP_INFO, &[s]), Error::BadSlot);
        c.expect_err(format_args!("process_info(slot {s:#x})"), raw(nr::PROCESS_INFO, &[s]), Error::BadSlot);
        let n = high | fx.notif as u64;
        c.expect_err(format_args!("notif_wait(slot {n:#x})"), raw(nr::NOTIF_WAIT, &[n, MS]), Error::BadSlot);
    }
    // A slot freed a moment ago is empty.
    if let Ok(n) = sys::notif_create() {
        let _ = sys::cap_delete(n);
        c.expect_err(format_args!("cap_info(just-deleted slot {n})"), sys::cap_info(n), Error::BadSlot);
        c.expect_err(format_args!("notif_signal(just-deleted slot {n})"), sys::notif_signal(n, 1), Error::BadSlot);
    }
}

fn wrong_types(c: &mut Checks, fx: &Fixture) {
    let wt = Error::WrongType;
    let (n, p, k, vs, me) = (fx.notif, fx.pmo, fx.conn, slots::SELF_VMSPACE, slots::SELF_PROCESS);
    c.expect_err("pmo_write(notification)", sys::pmo_write(n, 0, &[1]), wt);
    c.expect_err("pmo_read(connection)", raw(nr::PMO_READ, &[k as u64, 0, fx.buf, 1]), wt);
    c.expect_err("pmo_phys(notification)", sys::pmo_phys(n), wt);
    c.expect_err("pmo_phys(anonymous pmo)", sys::pmo_phys(p), wt);
    c.expect_err("vmspace_map(vmspace = pmo)", sys::vmspace_map(p, p, fx.hole, PAGE_SIZE, 0, perm::READ), wt);
    c.expect_err("vmspace_map(pmo = notification)", sys::vmspace_map(vs, n, fx.hole, PAGE_SIZE, 0, perm::READ), wt);
    c.expect_err("vmspace_map(pmo = vmspace)", sys::vmspace_map(vs, vs, fx.hole, PAGE_SIZE, 0, perm::READ), wt);
    c.expect_err("vmspace_unmap(process)", sys::vmspace_unmap(me, fx.hole, PAGE_SIZE), wt);
    c.expect_err("process_wait(notification)", sys::process_wait(n), wt);
    c.expect_err("process_kill(pmo)", sys::process_kill(p), wt);
    c.expect_err("process_info(vmspace)", sys::process_info(vs), wt);
    c.expect_err("process_watch(connection)", sys::process_watch(k, n, 1), wt);
    c.expect_err("process_watch(self, notif = pmo)", sys::process_watch(me, p, 1), wt);
    c.expect_err("conn_owner(notification, self)", sys::conn_owner(n, me), wt);
    c.expect_err("conn_owner(connection, process = notification)", sys::conn_owner(k, n), wt);
    c.expect_err("thread_create(pmo)", sys::thread_create(p, stray_entry(), fx.stray_stack, 0, 32, 0), wt);
    c.expect_err("thread_set_sched(notification)", sys::thread_set_sched(n, 32, 0), wt);
    c.expect_err("thread_set_sched(process)", sys::thread_set_sched(me, 32, 0), wt);
    c.expect_err("ipc_call(notification)", sys::ipc_call(n, &Message::default(), CapList::EMPTY), wt);
    c.expect_err("ipc_call(process)", sys::ipc_call(me, &Message::default(), CapList::EMPTY), wt);
    c.expect_err("ipc_recv(pmo)", sys::ipc_recv(p), wt);
    c.expect_err("notif_signal(pmo)", sys::notif_signal(p, 1), wt);
    c.expect_err("notif_wait(connection)", sys::notif_wait(k, MS), wt);
    c.expect_err("irq_bind(notification)", sys::irq_bind(n, n, 1), wt);
    c.expect_err("irq_ack(pmo)", sys::irq_ack(p), wt);
    c.expect_err("cap_copy(notif, dest = pmo)", sys::cap_copy(n, Some(p), rights::SIGNAL, 0), wt);
    c.expect_err("cap_move(notif, dest = connection)", sys::cap_move(n, Some(k)), wt);
    // The control object is the only key to these; a notification (with every right) is not it.
    c.expect_err("power_off(notification)", sys::power_off(n, false), wt);
    c.expect_err("irq_create(notification)", raw(nr::IRQ_CREATE, &[n as u64, CLAIMABLE_INTID]), wt);
    c.expect_err("device_pmo(pmo)", sys::device_pmo(p, UART_BASE, PAGE_SIZE), wt);
    c.expect_err("device_pmo(process)", sys::device_pmo(me, UART_BASE, PAGE_SIZE), wt);
    // Quotas: only a quota cap is one; memory and processes are billed to a quota or a process.
    c.expect_err("quota_create(process)", sys::quota_create(me), wt);
    c.expect_err("quota_set(notification)", sys::quota_set(n, 0, 1), wt);
    c.expect_err("quota_stat(pmo)", sys::quota_stat(p, 0), wt);
    c.expect_err("quota_move(notification, self)", sys::quota_move(n, me), wt);
    c.expect_err("pmo_create(billed to a notification)", sys::pmo_create_for(PmoKind::Anonymous, PAGE_SIZE, n), wt);
    c.expect_err("process_create(in a connection)", sys::process_create_in("x", k), wt);
    c.expect_err("bill_create(payer = notification)", sys::bill_create(n), wt);
    c.expect_err("bill_charge(pmo)", sys::bill_charge(p, 1), wt);
    c.expect_err("bill_refund(process)", sys::bill_refund(me, 1), wt);
    // A bill on ourselves charges and lends within one quota: nothing moves, the amount counts.
    if let Some((b, same)) = c.expect_ok("bill_create(self)", sys::bill_create(me)) {
        c.check(same, || "bill_create(self): the payer's quota is ours".into());
        let charged = sys::bill_charge(b, 4096);
        c.check(charged == Ok(4096), || format!("bill_charge(self bill, 4096): {charged:?}, expected Ok(4096)"));
        c.expect_err("bill_refund(self bill, more than it has)", sys::bill_refund(b, 8192), Error::Invalid);
        let left = sys::bill_refund(b, 4096);
        c.check(left == Ok(0), || format!("bill_refund(self bill, 4096): {left:?}, expected Ok(0)"));
        let _ = sys::cap_delete(b);
    }
}

fn missing_rights(c: &mut Checks, fx: &Fixture) {
    let nr_ = Error::NoRights;
    let vs = slots::SELF_VMSPACE;
    c.expect_err("pmo_write(READ|MAP copy)", sys::pmo_write(fx.pmo_ro, 0, &[1]), nr_);
    c.expect_err("pmo_phys(READ|MAP copy)", sys::pmo_phys(fx.pmo_ro), nr_);
    c.expect_err(
        "vmspace_map(READ|MAP copy, read-write)",
        sys::vmspace_map(vs, fx.pmo_ro, fx.hole, PAGE_SIZE, 0, perm::READ | perm::WRITE),
        nr_,
    );
    c.expect_err(
        "vmspace_map(READ|MAP copy, read-exec)",
        sys::vmspace_map(vs, fx.pmo_ro, fx.hole, PAGE_SIZE, 0, perm::READ | perm::EXEC),
        nr_,
    );
    c.expect_err("pmo_read(WRITE copy)", raw(nr::PMO_READ, &[fx.pmo_wo as u64, 0, fx.buf, 1]), nr_);
    c.expect_err(
        "vmspace_map(WRITE copy, read)",
        sys::vmspace_map(vs, fx.pmo_wo, fx.hole, PAGE_SIZE, 0, perm::READ),
        nr_,
    );
    c.expect_err(
        "ipc_call(SERVE-only connection)",
        sys::ipc_call(fx.conn_serve, &Message::default(), CapList::EMPTY),
        nr_,
    );
    c.expect_err("ipc_recv(CALL-only connection)", sys::ipc_recv(fx.conn_call), nr_);
    c.expect_err("notif_wait(SIGNAL-only notification)", sys::notif_wait(fx.notif_signal, MS), nr_);
    c.expect_err("notif_signal(WAIT-only notification)", sys::notif_signal(fx.notif_wait, 1), nr_);
    c.expect_err(
        "process_watch(self, WAIT-only notification)",
        sys::process_watch(slots::SELF_PROCESS, fx.notif_wait, 1),
        nr_,
    );
    c.expect_err("irq_bind(notification without MANAGE)", sys::irq_bind(fx.notif_signal, fx.notif, 1), Error::NoRights);
    c.expect_err(
        "thread_create(self without MANAGE)",
        sys::thread_create(fx.self_nomanage, stray_entry(), fx.stray_stack, 0, 32, 0),
        nr_,
    );
    c.expect_err("process_kill(self without MANAGE)", sys::process_kill(fx.self_nomanage), nr_);
    c.expect_err("pmo_create(billed to self without MANAGE)", sys::pmo_create_for(PmoKind::Anonymous, PAGE_SIZE, fx.self_nomanage), nr_);
    c.expect_err("process_create(in self without MANAGE)", sys::process_create_in("x", fx.self_nomanage), nr_);
    c.expect_err(
        "cap_copy(notif, dest = self without MANAGE)",
        sys::cap_copy(fx.notif, Some(fx.self_nomanage), rights::SIGNAL, 0),
        nr_,
    );
    c.expect_err("process_info(self without READ)", sys::process_info(fx.self_noread), nr_);
    c.expect_err("process_wait(self without WAIT)", sys::process_wait(fx.self_nowait), nr_);
    c.expect_err("process_watch(self without WAIT)", sys::process_watch(fx.self_nowait, fx.notif, 1), nr_);
    c.expect_err("conn_owner(connection without MANAGE)", sys::conn_owner(fx.conn_call, slots::SELF_PROCESS), nr_);
    c.expect_err("conn_owner(connection, self without WAIT)", sys::conn_owner(fx.conn, fx.self_nowait), nr_);
    c.expect_err(
        "vmspace_map(vmspace without MAP)",
        sys::vmspace_map(fx.vmspace_nomap, fx.pmo, fx.hole, PAGE_SIZE, 0, perm::READ),
        nr_,
    );
    c.expect_err("vmspace_unmap(vmspace without MAP)", sys::vmspace_unmap(fx.vmspace_nomap, fx.buf, PAGE_SIZE), nr_);
    if let Some(weak) = fx.control_weak {
        c.expect_err("power_off(control without MANAGE)", sys::power_off(weak, false), nr_);
        c.expect_err("irq_create(control without MANAGE)", raw(nr::IRQ_CREATE, &[weak as u64, CLAIMABLE_INTID]), nr_);
        c.expect_err("device_pmo(control without MANAGE)", sys::device_pmo(weak, UART_BASE, PAGE_SIZE), nr_);
    }
    // Copies only shrink rights; a badge is set once.
    let esc = Error::Escalation;
    c.expect_err(
        "cap_copy(READ|MAP copy -> READ|WRITE)",
        sys::cap_copy(fx.pmo_ro, None, rights::READ | rights::WRITE, 0),
        esc,
    );
    c.expect_err("cap_copy(READ|MAP copy -> ALL)", sys::cap_copy(fx.pmo_ro, None, rights::ALL, 0), esc);
    c.expect_err(
        "cap_copy(SIGNAL copy -> SIGNAL|GRANT)",
        sys::cap_copy(fx.notif_signal, None, rights::SIGNAL | rights::GRANT, 0),
        esc,
    );
}

fn bad_addresses(c: &mut Checks, fx: &Fixture) {
    let ba = Error::BadAddress;
    let p = fx.pmo as u64;
    // The last 4 bytes of the buffer, then the unmapped guard page.
    let straddle = fx.buf + PAGE_SIZE - 4;
    for (what, va) in [
        ("kernel address", KERNEL_VA),
        ("high kernel address", KERNEL_VA_HIGH),
        ("address 0", 0),
        ("unmapped address", fx.hole),
        ("buffer running into a guard page", straddle),
        ("buffer crossing the top of user space", USER_MAX_VA - 4),
        ("buffer wrapping around", u64::MAX - 3),
    ] {
        c.expect_err(format_args!("debug_write({what} {va:#x}, 8)"), raw(nr::DEBUG_WRITE, &[va, 8]), ba);
        c.expect_err(format_args!("pmo_read(into {what} {va:#x}, 8)"), raw(nr::PMO_READ, &[p, 0, va, 8]), ba);
        c.expect_err(format_args!("pmo_write(from {what} {va:#x}, 8)"), raw(nr::PMO_WRITE, &[p, 0, va, 8]), ba);
        c.expect_err(format_args!("process_create(name at {what} {va:#x})"), raw(nr::PROCESS_CREATE, &[va, 8]), ba);
    }
    // The startup block is mapped read-only: reading it is fine, writing into it is not.
    c.expect_err("pmo_read(into the read-only startup block)", raw(nr::PMO_READ, &[p, 0, STARTUP_VA, 8]), ba);
    let entry = stray_entry();
    for (what, e, stack) in [
        ("kernel entry", 0xffff_0000_0008_0000, fx.stray_stack),
        ("high kernel entry", KERNEL_VA_HIGH, fx.stray_stack),
        ("entry 0", 0, fx.stray_stack),
        ("entry at the top of user space", USER_MAX_VA, fx.stray_stack),
        ("unaligned entry", entry + 2, fx.stray_stack),
        ("unaligned stack", entry, fx.stray_stack - 8),
        ("kernel stack", entry, KERNEL_VA),
    ] {
        c.expect_err(
            format_args!("thread_create({what} {e:#x}, stack {stack:#x})"),
            sys::thread_create(slots::SELF_PROCESS, e, stack, 0, 32, 0),
            ba,
        );
    }
}

fn bad_values(c: &mut Checks, fx: &Fixture) {
    let inv = Error::Invalid;
    let (p, buf, vs) = (fx.pmo as u64, fx.buf, slots::SELF_VMSPACE);
    // Lengths.
    for len in [4097, MAX_COPY + 1, u64::MAX] {
        c.expect_err(format_args!("debug_write(len {len:#x})"), raw(nr::DEBUG_WRITE, &[buf, len]), inv);
    }
    for len in [MAX_COPY + 1, u64::MAX] {
        c.expect_err(format_args!("pmo_read(len {len:#x})"), raw(nr::PMO_READ, &[p, 0, buf, len]), inv);
        c.expect_err(format_args!("pmo_write(len {len:#x})"), raw(nr::PMO_WRITE, &[p, 0, buf, len]), inv);
    }
    // Offsets outside the object.
    c.expect_err("pmo_write(across the end)", raw(nr::PMO_WRITE, &[p, PMO_SIZE - 4, buf, 8]), inv);
    c.expect_err("pmo_write(offset u64::MAX)", raw(nr::PMO_WRITE, &[p, u64::MAX, buf, 8]), inv);
    c.expect_err("pmo_read(at the end)", raw(nr::PMO_READ, &[p, PMO_SIZE, buf, 1]), inv);
    c.expect_err("pmo_read(offset wraps)", raw(nr::PMO_READ, &[p, u64::MAX - 2, buf, 8]), inv);
    // Object sizes and kinds.
    for (what, kind, size) in [
        ("anonymous, size 0", PmoKind::Anonymous as u64, 0),
        ("anonymous, PMO_MAX_SIZE + 1", PmoKind::Anonymous as u64, keel_rt::abi::PMO_MAX_SIZE + 1),
        ("anonymous, size u64::MAX", PmoKind::Anonymous as u64, u64::MAX),
        (
            "contiguous, PMO_MAX_CONTIGUOUS + 1 page",
            PmoKind::Contiguous as u64,
            keel_rt::abi::PMO_MAX_CONTIGUOUS + PAGE_SIZE,
        ),
        ("kind 2", 2, PAGE_SIZE),
        ("kind u64::MAX", u64::MAX, PAGE_SIZE),
    ] {
        c.expect_err(format_args!("pmo_create({what})"), raw(nr::PMO_CREATE, &[kind, size]), inv);
    }
    // Mappings: permissions, sizes, ranges.
    let map = |va: u64, size: u64, off: u64, perms: u64| sys::vmspace_map(vs, fx.pmo, va, size, off, perms);
    let h = fx.hole;
    for (what, va, size, off, perms) in [
        ("perms 0", h, PAGE_SIZE, 0, 0),
        ("write-only", h, PAGE_SIZE, 0, perm::WRITE),
        ("unknown perm bit", h, PAGE_SIZE, 0, perm::READ | 8),
        ("write+exec (W^X)", h, PAGE_SIZE, 0, perm::ALL),
        ("size 0", h, 0, 0, perm::READ),
        ("larger than the pmo", h, PMO_SIZE + PAGE_SIZE, 0, perm::READ),
        ("offset + size beyond the pmo", h, PMO_SIZE, PAGE_SIZE, perm::READ),
        ("offset wraps", h, PAGE_SIZE, u64::MAX - PAGE_SIZE + 1, perm::READ),
        ("at address 0", 0, PAGE_SIZE, 0, perm::READ),
        ("at a kernel address", KERNEL_VA, PAGE_SIZE, 0, perm::READ),
        ("across the top of user space", USER_MAX_VA, PAGE_SIZE, 0, perm::READ),
        ("wrapping around", 0xFFFF_FFFF_FFFF_F000, PAGE_SIZE, 0, perm::READ),
    ] {
        c.expect_err(
            format_args!("vmspace_map({what}: va {va:#x} size {size:#x} offset {off:#x} perms {perms:#x})"),
            map(va, size, off, perms),
            inv,
        );
    }
    let un = Error::Unaligned;
    c.expect_err("vmspace_map(va hole + 1)", map(h + 1, PAGE_SIZE, 0, perm::READ), un);
    c.expect_err("vmspace_map(va 0x1001)", map(0x1001, PAGE_SIZE, 0, perm::READ), un);
    c.expect_err("vmspace_map(size 0x1001)", map(h, PAGE_SIZE + 1, 0, perm::READ), un);
    c.expect_err("vmspace_map(offset 0x800)", map(h, PAGE_SIZE, 0x800, perm::READ), un);
    c.expect_err("vmspace_unmap(va hole + 1)", sys::vmspace_unmap(vs, h + 1, PAGE_SIZE), un);
    c.expect_err("vmspace_unmap(size 100)", sys::vmspace_unmap(vs, h, 100), un);
    c.expect_err("vmspace_unmap(nothing mapped)", sys::vmspace_unmap(vs, h, PAGE_SIZE), Error::NotFound);
    c.expect_err("vmspace_unmap(part of a mapping)", sys::vmspace_unmap(vs, fx.buf, 2 * PAGE_SIZE), Error::Invalid);
    // Rights and badges.
    c.expect_err("cap_copy(rights with an unknown bit)", sys::cap_copy(fx.notif, None, rights::ALL + 1, 0), inv);
    c.expect_err("cap_copy(rights u32::MAX)", sys::cap_copy(fx.notif, None, u32::MAX, 0), inv);
    // Names.
    let long = [b'n'; 65];
    c.expect_err(
        "process_create(name of 65 bytes)",
        sys::process_create(core::str::from_utf8(&long).unwrap_or("")),
        inv,
    );
    let not_utf8: [u8; 2] = [0xff, 0xfe];
    c.expect_err("process_create(name not UTF-8)", raw(nr::PROCESS_CREATE, &[not_utf8.as_ptr() as u64, 2]), inv);
    // Scheduling parameters.
    let entry = stray_entry();
    for (what, prio, aff) in
        [("priority 64", 64, 0), ("priority u64::MAX", u64::MAX, 0), ("affinity beyond the CPUs", 32, 1u64 << 40)]
    {
        c.expect_err(
            format_args!("thread_create({what})"),
            raw(nr::THREAD_CREATE, &[slots::SELF_PROCESS as u64, entry, fx.stray_stack, 0, prio, aff]),
            inv,
        );
    }
    // Zero bits.
    c.expect_err("notif_signal(0 bits)", sys::notif_signal(fx.notif, 0), inv);
    c.expect_err("process_watch(0 bits)", sys::process_watch(slots::SELF_PROCESS, fx.notif, 0), inv);
    // Control: interrupts and device memory.
    if let Some(ctl) = fx.control {
        let ctl64 = ctl as u64;
        for intid in [0, 27, 30, 1023, (1 << 32) + CLAIMABLE_INTID, u64::MAX] {
            c.expect_err(format_args!("irq_create(intid {intid:#x})"), raw(nr::IRQ_CREATE, &[ctl64, intid]), inv);
        }
        for (what, phys, size, want) in [
            ("over RAM", RAM_BASE, PAGE_SIZE, inv),
            ("ending in RAM", RAM_BASE - PAGE_SIZE, 2 * PAGE_SIZE, inv),
            ("size 0", UART_BASE, 0, inv),
            ("above 2^48", 1 << 48, PAGE_SIZE, inv),
            ("wrapping around", 0xFFFF_FFFF_FFFF_F000, PAGE_SIZE, inv),
            ("unaligned address", UART_BASE + 1, PAGE_SIZE, un),
            ("unaligned size", UART_BASE, 100, un),
        ] {
            c.expect_err(
                format_args!("device_pmo({what}: {phys:#x} size {size:#x})"),
                sys::device_pmo(ctl, phys, size),
                want,
            );
        }
    }
}

fn no_such_calls(c: &mut Checks) {
    let garbage = [0x1111, 0x2222, 0x3333, 0x4444, 0x5555, 0x6666, 0x7777, 0x8888];
    for n in [nr::COUNT, 100, 0xFFFF, 1 << 32, u64::MAX] {
        let r = sys::raw::syscall(n, garbage);
        c.expect_eq(format_args!("system call {n:#x}: x0"), r[0] as i64, Error::NoSys.code());
        c.expect_eq(format_args!("system call {n:#x}: x1..x7 unchanged"), &r[1..], &garbage[1..]);
    }
}

fn bad_states(c: &mut Checks, fx: &Fixture) {
    let bs = Error::BadState;
    c.expect_err("ipc_reply(no caller)", sys::ipc_reply(&Message::default(), CapList::EMPTY), bs);
    c.expect_err("ipc_reply_recv(no caller)", sys::ipc_reply_recv(fx.conn, &Message::default(), CapList::EMPTY), bs);
    c.expect_err("process_wait(self)", sys::process_wait(slots::SELF_PROCESS), bs);
    c.expect_err("notif_wait(nothing pending, 1 ms)", sys::notif_wait(fx.notif, MS), Error::TimedOut);
}

/// Mapping over a mapping, unmapping what is not there, and that a refused map leaves the range free.
fn mappings(c: &mut Checks, fx: &Fixture) {
    let vs = slots::SELF_VMSPACE;
    let h = fx.hole + PAGE_SIZE;
    let rw = perm::READ | perm::WRITE;
    if c.expect_ok("vmspace_map(pmo at hole)", sys::vmspace_map(vs, fx.pmo, h, PMO_SIZE, 0, rw)).is_none() {
        return;
    }
    c.expect_err("vmspace_map(same range again)", sys::vmspace_map(vs, fx.pmo, h, PMO_SIZE, 0, rw), Error::Exists);
    c.expect_err(
        "vmspace_map(overlapping from below)",
        sys::vmspace_map(vs, fx.pmo, h - PAGE_SIZE, PMO_SIZE, 0, rw),
        Error::Exists,
    );
    c.expect_err(
        "vmspace_map(overlapping the last page)",
        sys::vmspace_map(vs, fx.pmo, h + PAGE_SIZE, PAGE_SIZE, 0, rw),
        Error::Exists,
    );
    c.expect_err(
        "vmspace_map(over our own code)",
        sys::vmspace_map(vs, fx.pmo, (stray_entry()) & !(PAGE_SIZE - 1), PAGE_SIZE, 0, perm::READ),
        Error::Exists,
    );
    // The mapping shows the object: the kernel reads it for debug_write... and writes it for pmo_read.
    let mut back = alloc::vec![0u8; 64];
    c.expect_ok("pmo_read(test pmo into its own mapping)", raw(nr::PMO_READ, &[fx.pmo as u64, 0, h + PAGE_SIZE, 64]));
    c.expect_ok("pmo_read(test pmo, page 1)", sys::pmo_read(fx.pmo, PAGE_SIZE, &mut back));
    c.check(back == fx.contents, || String::from("bytes copied through a mapping of the pmo did not land in the pmo"));
    c.expect_err("vmspace_unmap(wrong size)", sys::vmspace_unmap(vs, h, PAGE_SIZE), Error::Invalid);
    c.expect_err("vmspace_unmap(not the start)", sys::vmspace_unmap(vs, h + PAGE_SIZE, PAGE_SIZE), Error::NotFound);
    c.expect_ok("vmspace_unmap(the mapping)", sys::vmspace_unmap(vs, h, PMO_SIZE));
    c.expect_err("vmspace_unmap(again)", sys::vmspace_unmap(vs, h, PMO_SIZE), Error::NotFound);
    c.expect_err("pmo_read(into the unmapped range)", raw(nr::PMO_READ, &[fx.pmo as u64, 0, h, 8]), Error::BadAddress);
    // A READ|MAP copy maps read-only; writing through that mapping is refused.
    if c.expect_ok("vmspace_map(READ|MAP copy, read-only)", sys::vmspace_map(vs, fx.pmo_ro, h, PMO_SIZE, 0, perm::READ))
        .is_some()
    {
        // The kernel reads through it: page 0 of the mapping into page 1 of the object.
        c.expect_ok("pmo_write(from the read-only mapping)", raw(nr::PMO_WRITE, &[fx.pmo as u64, PAGE_SIZE, h, 64]));
        let mut back = alloc::vec![0u8; 64];
        c.expect_ok("pmo_read(test pmo, page 1, again)", sys::pmo_read(fx.pmo, PAGE_SIZE, &mut back));
        c.check(back == fx.contents, || String::from("bytes the kernel read through a read-only mapping are wrong"));
        c.expect_err(
            "pmo_read(into a read-only mapping)",
            raw(nr::PMO_READ, &[fx.pmo as u64, 0, h, 8]),
            Error::BadAddress,
        );
        c.expect_ok("vmspace_unmap(read-only mapping)", sys::vmspace_unmap(vs, h, PMO_SIZE));
    }
    // Restore page 1 (the pmo_read above filled it).
    let _ = sys::pmo_write(fx.pmo, PAGE_SIZE, &[0u8; 64]);
}

/// Copies, badges, moves, deletes and revocation.
fn caps(c: &mut Checks, fx: &Fixture) {
    let Some(b7) = c.expect_ok("cap_copy(notif, SIGNAL, badge 7)", sys::cap_copy(fx.notif, None, rights::SIGNAL, 7))
    else {
        return;
    };
    c.expect_eq("cap_info(badged copy)", sys::cap_info(b7), Ok((ObjectKind::Notification as u64, rights::SIGNAL, 7)));
    c.expect_err("cap_copy(badged copy, new badge 8)", sys::cap_copy(b7, None, rights::SIGNAL, 8), Error::Escalation);
    if let Some(again) =
        c.expect_ok("cap_copy(badged copy, badge 0 = keep)", sys::cap_copy(b7, None, rights::SIGNAL, 0))
    {
        c.expect_eq("cap_info(copy of the badged copy)", sys::cap_info(again).map(|i| i.2), Ok(7));
        if let Some(moved) = c.expect_ok("cap_move(copy, own table)", sys::cap_move(again, None)) {
            c.expect_err("cap_info(moved-from slot)", sys::cap_info(again), Error::BadSlot);
            c.expect_eq(
                "cap_info(moved-to slot)",
                sys::cap_info(moved),
                Ok((ObjectKind::Notification as u64, rights::SIGNAL, 7)),
            );
            c.expect_ok("cap_delete(moved copy)", sys::cap_delete(moved));
        }
    }
    c.expect_ok("cap_delete(badged copy)", sys::cap_delete(b7));
    c.expect_err("cap_delete(again)", sys::cap_delete(b7), Error::BadSlot);
    // A wrapped rights word must not turn into the rights of its low half.
    match raw(nr::CAP_COPY, &[fx.notif as u64, keel_rt::abi::NO_SLOT as u64, (1 << 32) | rights::SIGNAL as u64, 0]) {
        Err(Error::Invalid) => c.pass(),
        other => {
            c.fail(format_args!(
                "cap_copy(rights {:#x}): expected Err(Invalid), got {other:?}",
                (1u64 << 32) | rights::SIGNAL as u64
            ));
            if let Ok(r) = other {
                let _ = sys::cap_delete(r[1] as Slot);
            }
        }
    }
    // Revoke: every copy derived from a cap goes, the cap itself stays.
    let Some(base) = c.expect_ok("notif_create(for revoke)", sys::notif_create()) else { return };
    let a = sys::cap_copy(base, None, rights::ALL, 0);
    let b = a.and_then(|a| sys::cap_copy(a, None, rights::SIGNAL, 0));
    if let (Some(a), Some(b)) = (c.expect_ok("cap_copy(base)", a), c.expect_ok("cap_copy(copy of base)", b)) {
        c.expect_eq("cap_revoke(base): caps deleted", sys::cap_revoke(base), Ok(2));
        c.expect_err("cap_info(revoked copy)", sys::cap_info(a), Error::BadSlot);
        c.expect_err("cap_info(revoked copy of copy)", sys::cap_info(b), Error::BadSlot);
        c.expect_eq("cap_info(revoked base)", sys::cap_info(base).map(|i| i.0), Ok(ObjectKind::Notification as u64));
    }
    c.expect_ok("cap_delete(base)", sys::cap_delete(base));
}

fn notifications(c: &mut Checks, fx: &Fixture) {
    c.expect_ok("notif_signal(bits 0b101)", sys::notif_signal(fx.notif, 0b101));
    c.expect_ok("notif_signal(SIGNAL copy, bits 0b010)", sys::notif_signal(fx.notif_signal, 0b010));
    c.expect_eq("notif_wait(WAIT copy): bits", sys::notif_wait(fx.notif_wait, SEC), Ok(0b111));
    c.expect_err("notif_wait(after taking the bits, 1 ms)", sys::notif_wait(fx.notif, MS), Error::TimedOut);
}

/// An empty process made with process_create: copies into it, then killing, waiting and what a
/// dead process refuses.
fn child_process(c: &mut Checks, fx: &Fixture) {
    let Some((proc_, vs, _pid)) = c.expect_ok("process_create(\"ktest-empty\")", sys::process_create("ktest-empty"))
    else {
        return;
    };
    match sys::process_info(proc_) {
        Ok(i) => {
            c.check(i.running && i.threads == 0, || format!("process_info(new empty process): {i:?}"));
        }
        Err(e) => c.fail(format_args!("process_info(new empty process): {e:?}")),
    }
    c.expect_err(
        "cap_copy(notif without GRANT, dest = child)",
        sys::cap_copy(fx.notif_nogrant, Some(proc_), rights::SIGNAL, 0),
        Error::NoRights,
    );
    c.expect_ok("cap_copy(notif, dest = child)", sys::cap_copy(fx.notif, Some(proc_), rights::SIGNAL, 0));
    c.expect_ok("process_watch(child, notif, 0x100)", sys::process_watch(proc_, fx.notif, 0x100));
    // A connection given to the child dies with it.
    let served = c.expect_ok("conn_create(for the child)", sys::conn_create());
    if let Some(k) = served {
        c.expect_ok("conn_owner(connection, child)", sys::conn_owner(k, proc_));
    }
    c.expect_ok("vmspace_map(child's vmspace)", sys::vmspace_map(vs, fx.pmo, 0x10000, PAGE_SIZE, 0, perm::READ));
    c.expect_ok("process_kill(child)", sys::process_kill(proc_));
    c.expect_eq("notif_wait(child's watch)", sys::notif_wait(fx.notif, SEC), Ok(0x100));
    c.expect_err("process_kill(dead child)", sys::process_kill(proc_), Error::BadState);
    c.expect_eq("process_wait(dead child)", sys::process_wait(proc_), Ok(keel_rt::abi::EXIT_KILLED));
    match sys::process_info(proc_) {
        Ok(i) => {
            c.check(!i.running && i.exit_code == keel_rt::abi::EXIT_KILLED && i.threads == 0, || {
                format!("process_info(dead child): {i:?}")
            });
        }
        Err(e) => c.fail(format_args!("process_info(dead child): {e:?}")),
    }
    c.expect_err(
        "thread_create(dead child)",
        sys::thread_create(proc_, stray_entry(), fx.stray_stack, 0, 32, 0),
        Error::BadState,
    );
    c.expect_err(
        "cap_copy(notif, dest = dead child)",
        sys::cap_copy(fx.notif, Some(proc_), rights::SIGNAL, 0),
        Error::BadState,
    );
    c.expect_ok("process_watch(dead child): signals at once", sys::process_watch(proc_, fx.notif, 0x200));
    if let Some(k) = served {
        c.expect_err("ipc_call(connection its owner child took down)", sys::ipc_call(k, &Message::default(), CapList::EMPTY), Error::PeerDied);
        c.expect_err("conn_owner(dead connection, self)", sys::conn_owner(k, slots::SELF_PROCESS), Error::PeerDied);
        c.expect_ok("cap_delete(dead connection)", sys::cap_delete(k));
    }
    if let Some(k) = c.expect_ok("conn_create(for a dead child)", sys::conn_create()) {
        c.expect_ok("conn_owner(connection, dead child): dies at once", sys::conn_owner(k, proc_));
        c.expect_err("ipc_call(connection given to a dead child)", sys::ipc_call(k, &Message::default(), CapList::EMPTY), Error::PeerDied);
        c.expect_ok("cap_delete(that connection)", sys::cap_delete(k));
    }
    c.expect_eq("notif_wait(watch of a dead child)", sys::notif_wait(fx.notif, SEC), Ok(0x200));
    c.expect_ok("cap_delete(child's vmspace)", sys::cap_delete(vs));
    c.expect_ok("cap_delete(child)", sys::cap_delete(proc_));
    // The longest name is fine.
    let name = "n".repeat(64);
    if let Some((p, v, _)) = c.expect_ok("process_create(name of 64 bytes)", sys::process_create(&name)) {
        let _ = sys::process_kill(p);
        let _ = sys::cap_delete(v);
        let _ = sys::cap_delete(p);
    }
}

/// Scheduling parameters of a live thread.
fn threads(c: &mut Checks, _fx: &Fixture) {
    let Ok(gate) = sys::notif_create() else { return c.fail("notif_create(gate)") };
    let before = sys::process_info(slots::SELF_PROCESS).map(|i| i.threads);
    let spawned = keel_rt::thread::spawn(move || {
        let _ = sys::notif_wait(gate, 10 * SEC);
    });
    if let Some(t) = c.expect_ok("thread spawn", spawned) {
        c.expect_eq("cap_info(thread) kind", sys::cap_info(t).map(|i| i.0), Ok(ObjectKind::Thread as u64));
        c.expect_eq(
            "process_info(self).threads after a spawn",
            sys::process_info(slots::SELF_PROCESS).map(|i| i.threads),
            before.map(|n| n + 1),
        );
        c.expect_err("thread_set_sched(priority 64)", sys::thread_set_sched(t, 64, 0), Error::Invalid);
        c.expect_err(
            "thread_set_sched(affinity beyond the CPUs)",
            sys::thread_set_sched(t, 32, 1 << 40),
            Error::Invalid,
        );
        if let Some(weak) = c.expect_ok("cap_copy(thread, READ)", sys::cap_copy(t, None, rights::READ, 0)) {
            c.expect_err(
                "thread_set_sched(thread without MANAGE)",
                sys::thread_set_sched(weak, 32, 0),
                Error::NoRights,
            );
            let _ = sys::cap_delete(weak);
        }
        c.expect_ok("thread_set_sched(priority 33, CPU 0)", sys::thread_set_sched(t, 33, 1));
        c.expect_ok("notif_signal(gate)", sys::notif_signal(gate, 1));
        // The thread exits; the count goes back.
        let mut left = false;
        for _ in 0..200 {
            if sys::process_info(slots::SELF_PROCESS).map(|i| i.threads) == before {
                left = true;
                break;
            }
            sys::sleep_ns(5 * MS);
        }
        c.check(left, || String::from("process_info(self).threads did not go back after the thread exited"));
        let _ = sys::cap_delete(t);
    }
    let _ = sys::cap_delete(gate);
}

fn irqs(c: &mut Checks, fx: &Fixture) {
    let Some(ctl) = fx.control else { return };
    let Some(irq) = c.expect_ok("irq_create(intid 48)", sys::irq_create(ctl, CLAIMABLE_INTID as u32)) else { return };
    c.expect_eq("cap_info(irq) kind", sys::cap_info(irq).map(|i| i.0), Ok(ObjectKind::Irq as u64));
    c.expect_err("irq_create(intid 48 again)", sys::irq_create(ctl, CLAIMABLE_INTID as u32), Error::Exists);
    c.expect_err("irq_bind(0 bits)", sys::irq_bind(irq, fx.notif, 0), Error::Invalid);
    c.expect_err("irq_bind(notif = pmo)", sys::irq_bind(irq, fx.pmo, 1), Error::WrongType);
    c.expect_err("irq_bind(notif without SIGNAL)", sys::irq_bind(irq, fx.notif_wait, 1), Error::NoRights);
    c.expect_ok("irq_ack(unbound irq)", sys::irq_ack(irq));
    c.expect_ok("cap_delete(irq)", sys::cap_delete(irq));
    // Deleting the only capability released the line.
    if let Some(again) = c.expect_ok("irq_create(intid 48 after release)", sys::irq_create(ctl, CLAIMABLE_INTID as u32))
    {
        let _ = sys::cap_delete(again);
    }
}

/// Fills the slot table with copies: every call that would add a cap fails with TableFull; a
/// revoke empties it again.
fn table_full(c: &mut Checks) {
    let Some(base) = c.expect_ok("notif_create(for the full table)", sys::notif_create()) else { return };
    let mut copies = 0u64;
    let last = loop {
        match sys::cap_copy(base, None, rights::ALL, 0) {
            Ok(_) => copies += 1,
            Err(e) => break e,
        }
        if copies > 5000 {
            break Error::Invalid;
        }
    };
    c.expect_eq(format_args!("cap_copy after {copies} copies"), last, Error::TableFull);
    c.expect_err("notif_create(full table)", sys::notif_create(), Error::TableFull);
    c.expect_err("conn_create(full table)", sys::conn_create(), Error::TableFull);
    c.expect_err("pmo_create(full table)", sys::pmo_create(PmoKind::Anonymous, PAGE_SIZE), Error::TableFull);
    c.expect_err("process_create(full table)", sys::process_create("ktest-full"), Error::TableFull);
    c.expect_err(
        "thread_create(full table)",
        sys::thread_create(slots::SELF_PROCESS, stray_entry(), 0x1000, 0, 32, 0),
        Error::TableFull,
    );
    c.expect_eq("cap_revoke(base of the full table)", sys::cap_revoke(base), Ok(copies));
    c.expect_ok("cap_delete(base of the full table)", sys::cap_delete(base));
}

/// IPC refusals. A kernel that wrongly accepted one of these calls would block forever (nobody
/// serves this connection), so they run on a worker thread with a timeout.
fn ipc_refusals(c: &mut Checks, fx: &Fixture) {
    let (conn, nogrant) = (fx.conn, fx.notif_nogrant);
    let w = worker::start(0, move || {
        let msg = Message::new(1, [1, 2, 3, 4]);
        let list = |s: &[Slot]| CapList::from_slots(s).unwrap_or(CapList::EMPTY);
        let results: Vec<(&'static str, Result<sys::Received, Error>, Error)> = alloc::vec![
            ("ipc_call(caps: notif without GRANT)", sys::ipc_call(conn, &msg, list(&[nogrant])), Error::NoRights),
            ("ipc_call(caps: empty slot)", sys::ipc_call(conn, &msg, list(&[EMPTY])), Error::BadSlot),
            ("ipc_call(caps: slot 4096)", sys::ipc_call(conn, &msg, list(&[OUT_OF_RANGE])), Error::BadSlot),
            (
                "ipc_call(caps: a good cap, then one without GRANT)",
                sys::ipc_call(conn, &msg, list(&[conn, nogrant])),
                Error::NoRights
            ),
            (
                "ipc_call(caps list 0x0001_0fff_ffff_ffff: none, none, empty slot, vmspace)",
                sys::ipc_call(conn, &msg, CapList(0x0001_0fff_ffff_ffff)),
                Error::BadSlot
            ),
        ];
        results
    });
    match w.map(|w| w.join(5 * SEC)) {
        Ok(Ok(results)) => {
            for (what, got, want) in results {
                c.expect_err(what, got.map(|r| r.msg), want);
            }
        }
        Ok(Err(e)) => c.fail(format_args!(
            "ipc refusals: the worker did not finish in 5 s ({e:?}): an ipc_call that should fail blocked"
        )),
        Err(e) => c.fail(format_args!("ipc refusals: worker start: {e:?}")),
    }
}

/// The guest of [`vm_calls`], AArch64 code entered at [`GUEST_RAM`] with its MMU off: a vendor
/// hypercall carrying the x0 `vcpu_init` gave it, a store of the hypercall's result (what the
/// monitor passed back) to the monitor's MMIO region, then PSCI SYSTEM_OFF.
pub(super) const GUEST_CODE: [u32; 7] = [
    0xD400_0002, // hvc #0                      -> Hypercall exit, x2 = guest x0
    0xD2A2_0001, // movz x1, #0x1000, lsl #16   x1 = GUEST_MMIO
    0xF900_0020, // str x0, [x1]                -> Mmio exit: 8-byte write of guest x0
    0xD280_0100, // movz x0, #8
    0xF2B0_8000, // movk x0, #0x8400, lsl #16   x0 = PSCI SYSTEM_OFF
    0xD400_0002, // hvc #0                      -> SystemOff exit
    0x1400_0000, // b .
];
pub(super) const GUEST_RAM: u64 = 0x4000_0000;
pub(super) const GUEST_MMIO: u64 = 0x1000_0000;
/// A vendor-specific hypervisor call (SMCCC owning entity 6): the kernel forwards it.
pub(super) const GUEST_HVC: u64 = 0x8600_0042;
/// What the "monitor" answers it; the guest then stores it to GUEST_MMIO.
pub(super) const HVC_RESULT: u64 = 0xabcd_1234;
/// An SPI the guest's vGIC has.
const GUEST_SPI: u64 = 40;

/// The VM calls (38..46, 48): a one-vCPU VM running [`GUEST_CODE`] through each kind of exit, each
/// call also with bad capabilities and arguments; everything made is deleted again.
fn vm_calls(c: &mut Checks, fx: &Fixture) {
    use keel_rt::abi::vm::{COUNTERS, Counter, ExitReason, MmioInfo, VCPU_POWER_ON, map};
    let Some(ctl) = fx.control else { return };
    let (wt, inv, nrt) = (Error::WrongType, Error::Invalid, Error::NoRights);
    let weak = fx.control_weak.unwrap_or(EMPTY);
    c.expect_err("vm_create(notification)", sys::vm_create(fx.notif, 1), wt);
    c.expect_err("vm_create(control without MANAGE)", sys::vm_create(weak, 1), nrt);
    c.expect_err("vm_create(empty slot)", sys::vm_create(EMPTY, 1), Error::BadSlot);
    c.expect_err("vm_create(control, 0 vCPUs)", sys::vm_create(ctl, 0), inv);
    c.expect_err("vm_create(control, 9 vCPUs)", sys::vm_create(ctl, 9), inv);
    let Some(vm) = c.expect_ok("vm_create(control, 1 vCPU)", sys::vm_create(ctl, 1)) else { return };
    let made = |c: &mut Checks, what: &str, r: Result<Slot, Error>| c.expect_ok(what, r).unwrap_or(EMPTY);

    // Guest RAM: one page holding the code.
    let ram = made(c, "pmo_create(guest RAM)", sys::pmo_create(PmoKind::Anonymous, PAGE_SIZE));
    let code: Vec<u8> = GUEST_CODE.iter().flat_map(|w| w.to_le_bytes()).collect();
    c.expect_ok("pmo_write(guest code)", sys::pmo_write(ram, 0, &code));
    let rwx = map::READ | map::WRITE | map::EXEC;
    c.expect_err("vm_map(pmo as the vm)", sys::vm_map(fx.pmo, ram, GUEST_RAM, PAGE_SIZE, 0, rwx), wt);
    c.expect_err("vm_map(notification as the pmo)", sys::vm_map(vm, fx.notif, GUEST_RAM, PAGE_SIZE, 0, rwx), wt);
    c.expect_err("vm_map(READ|MAP pmo)", sys::vm_map(vm, fx.pmo_ro, GUEST_RAM, PAGE_SIZE, 0, rwx), nrt);
    c.expect_err("vm_map(unknown flag 16)", sys::vm_map(vm, ram, GUEST_RAM, PAGE_SIZE, 0, 16), inv);
    c.expect_err("vm_map(unaligned IPA)", sys::vm_map(vm, ram, GUEST_RAM + 8, PAGE_SIZE, 0, rwx), Error::Unaligned);
    c.expect_err("vm_map(size 0)", sys::vm_map(vm, ram, GUEST_RAM, 0, 0, rwx), inv);
    c.expect_err("vm_map(past the pmo's end)", sys::vm_map(vm, ram, GUEST_RAM, 2 * PAGE_SIZE, 0, rwx), inv);
    c.expect_err("vm_map(over the vGIC)", sys::vm_map(vm, ram, 0x0800_0000, PAGE_SIZE, 0, rwx), Error::Exists);
    c.expect_ok("vm_map(guest RAM)", sys::vm_map(vm, ram, GUEST_RAM, PAGE_SIZE, 0, rwx));
    c.expect_err("vm_map(guest RAM again)", sys::vm_map(vm, ram, GUEST_RAM, PAGE_SIZE, 0, rwx), Error::Exists);
    c.expect_ok("vm_map(MMIO region)", sys::vm_map(vm, EMPTY, GUEST_MMIO, PAGE_SIZE, 0, map::MMIO));

    // The vCPU.
    c.expect_err("vcpu_create(pmo)", sys::vcpu_create(fx.pmo, 0), wt);
    c.expect_err("vcpu_create(vm, index 1 of 1)", sys::vcpu_create(vm, 1), inv);
    let vcpu = made(c, "vcpu_create(vm, 0)", sys::vcpu_create(vm, 0));
    c.expect_err("vcpu_create(vm, 0 again)", sys::vcpu_create(vm, 0), Error::Exists);
    c.expect_err("vcpu_init(vm as the vcpu)", sys::vcpu_init(vm, GUEST_RAM, 0, VCPU_POWER_ON), wt);
    c.expect_err("vcpu_init(unknown flag 2)", sys::vcpu_init(vcpu, GUEST_RAM, 0, 2), inv);
    c.expect_ok("vcpu_init(vcpu, guest RAM, x0, power on)", sys::vcpu_init(vcpu, GUEST_RAM, GUEST_HVC, VCPU_POWER_ON));

    // Run it through its three exits.
    c.expect_err("vcpu_run(vm as the vcpu)", sys::vcpu_run(vm, [0; 4]), wt);
    c.expect_err("vcpu_run(empty slot)", sys::vcpu_run(EMPTY, [0; 4]), Error::BadSlot);
    let exit = sys::vcpu_run(vcpu, [0; 4]).map(|e| (e.reason, e.details[0]));
    c.expect_eq("vcpu_run: hypercall exit carrying guest x0", exit, Ok((ExitReason::Hypercall as u64, GUEST_HVC)));
    let exit = sys::vcpu_run(vcpu, [HVC_RESULT, 0, 0, 0]).map(|e| (e.reason, e.details[0], MmioInfo::decode(e.details[1]), e.details[2]));
    let store = MmioInfo { size: 8, write: true, reg: 0, sign_extend: false };
    c.expect_eq(
        "vcpu_run: MMIO exit, the guest storing the hypercall's result",
        exit,
        Ok((ExitReason::Mmio as u64, GUEST_MMIO, store, HVC_RESULT)),
    );
    let exit = sys::vcpu_run(vcpu, [0; 4]).map(|e| e.reason);
    c.expect_eq("vcpu_run: PSCI SYSTEM_OFF exit", exit, Ok(ExitReason::SystemOff as u64));

    // Kick: the next run returns at once.
    c.expect_err("vcpu_kick(notification)", sys::vcpu_kick(fx.notif), wt);
    c.expect_ok("vcpu_kick(vcpu)", sys::vcpu_kick(vcpu));
    let exit = sys::vcpu_run(vcpu, [0; 4]).map(|e| e.reason);
    c.expect_eq("vcpu_run after vcpu_kick", exit, Ok(ExitReason::Kicked as u64));

    // Exit counters.
    c.expect_err("vcpu_stat(vm as the vcpu)", sys::vcpu_stat(vm, 0), wt);
    c.expect_err(format_args!("vcpu_stat(vcpu, first {COUNTERS})"), sys::vcpu_stat(vcpu, COUNTERS), inv);
    match sys::vcpu_stat(vcpu, 0) {
        Ok(s) => {
            c.expect_eq("vcpu_stat: hvc exits", s[Counter::Hvc as usize], 2);
            c.expect_eq("vcpu_stat: PSCI calls", s[Counter::Psci as usize], 1);
        }
        Err(e) => c.fail(format_args!("vcpu_stat(vcpu, 0): expected Ok, got {e:?}")),
    }
    let user_mmio = sys::vcpu_stat(vcpu, Counter::MmioUser as usize).map(|s| s[0]);
    c.expect_eq("vcpu_stat: MMIO exits to the monitor", user_mmio, Ok(1));

    // An ioevent: the guest's store of the hypercall's result signals a notification in the
    // kernel instead of exiting to the monitor.
    let bell = made(c, "notif_create(doorbell)", sys::notif_create());
    let bits = 0b100;
    c.expect_err("vm_ioevent(pmo as the vm)", sys::vm_ioevent(fx.pmo, bell, GUEST_MMIO, 8, None, bits), wt);
    c.expect_err("vm_ioevent(pmo as the notification)", sys::vm_ioevent(vm, fx.pmo, GUEST_MMIO, 8, None, bits), wt);
    c.expect_err("vm_ioevent(3 bytes)", sys::vm_ioevent(vm, bell, GUEST_MMIO, 3, None, bits), inv);
    c.expect_err("vm_ioevent(misaligned)", sys::vm_ioevent(vm, bell, GUEST_MMIO + 4, 8, None, bits), Error::Unaligned);
    c.expect_err("vm_ioevent(guest RAM)", sys::vm_ioevent(vm, bell, GUEST_RAM, 8, None, bits), inv);
    c.expect_err("vm_ioevent(no bits)", sys::vm_ioevent(vm, bell, GUEST_MMIO, 8, None, 0), inv);
    c.expect_err("vm_ioevent(a value wider than 4 bytes)", sys::vm_ioevent(vm, bell, GUEST_MMIO, 4, Some(1 << 32), bits), inv);
    let doorbell = made(c, "vm_ioevent(8 bytes of the result at the MMIO region)", sys::vm_ioevent(vm, bell, GUEST_MMIO, 8, Some(HVC_RESULT), bits));
    c.expect_err("vm_ioevent(the same write again)", sys::vm_ioevent(vm, bell, GUEST_MMIO, 8, None, bits), Error::Exists);
    c.expect_ok("vcpu_init(vcpu, guest RAM, x0, power on) again", sys::vcpu_init(vcpu, GUEST_RAM, GUEST_HVC, VCPU_POWER_ON));
    let exit = sys::vcpu_run(vcpu, [0; 4]).map(|e| e.reason);
    c.expect_eq("vcpu_run: the hypercall exit again", exit, Ok(ExitReason::Hypercall as u64));
    let exit = sys::vcpu_run(vcpu, [HVC_RESULT, 0, 0, 0]).map(|e| e.reason);
    c.expect_eq("vcpu_run: the store signalled the ioevent; the next exit is SYSTEM_OFF", exit, Ok(ExitReason::SystemOff as u64));
    c.expect_eq("notif_wait(doorbell)", sys::notif_wait(bell, SEC), Ok(bits));
    let user_mmio = sys::vcpu_stat(vcpu, Counter::MmioUser as usize).map(|s| s[0]);
    c.expect_eq("vcpu_stat: MMIO exits to the monitor, still", user_mmio, Ok(1));
    let signalled = sys::vcpu_stat(vcpu, Counter::IoEvent as usize).map(|s| s[0]);
    c.expect_eq("vcpu_stat: ioevents signalled", signalled, Ok(1));
    c.expect_ok("cap_delete(ioevent)", sys::cap_delete(doorbell));
    c.expect_ok("cap_delete(doorbell notification)", sys::cap_delete(bell));

    // An SPI line for a device backend.
    c.expect_err("vm_irq_line_create(pmo)", sys::vm_irq_line_create(fx.pmo, GUEST_SPI as u32), wt);
    c.expect_err("vm_irq_line_create(vm, INTID 31)", sys::vm_irq_line_create(vm, 31), inv);
    c.expect_err("vm_irq_line_create(vm, INTID 96)", sys::vm_irq_line_create(vm, 96), inv);
    let line = made(c, "vm_irq_line_create(vm, SPI 40)", sys::vm_irq_line_create(vm, GUEST_SPI as u32));
    c.expect_err("vm_irq_line(notification)", sys::vm_irq_line(fx.notif, 1), wt);
    c.expect_err("vm_irq_line(line, level 4)", sys::vm_irq_line(line, 4), inv);
    for level in [1, 0, 2] {
        c.expect_ok(format_args!("vm_irq_line(line, {level})"), sys::vm_irq_line(line, level));
    }
    // A console line: a flags register and a transmit register the kernel buffers.
    let mut buf = [0u8; keel_rt::abi::vm::TX_BUFFER];
    c.expect_err("vm_tx_take(line without a transmit register)", sys::vm_tx_take(line, &mut buf), wt);
    c.expect_err("vm_tx_take(vm)", sys::vm_tx_take(vm, &mut buf), wt);
    c.expect_err("vm_console_irq_line(transmit register unaligned)", sys::vm_console_irq_line(vm, GUEST_SPI as u32 + 1, GUEST_MMIO + 0x18, GUEST_MMIO + 1), inv);
    c.expect_err("vm_console_irq_line(transmit register in RAM)", sys::vm_console_irq_line(vm, GUEST_SPI as u32 + 1, GUEST_MMIO + 0x18, GUEST_RAM), inv);
    let console = made(c, "vm_console_irq_line(vm)", sys::vm_console_irq_line(vm, GUEST_SPI as u32 + 1, GUEST_MMIO + 0x18, GUEST_MMIO));
    c.expect_err("vm_console_irq_line(a second one)", sys::vm_console_irq_line(vm, GUEST_SPI as u32 + 2, GUEST_MMIO + 0x28, GUEST_MMIO + 0x20), Error::Exists);
    c.expect_ok("vm_irq_line_value(console, open)", sys::vm_irq_line_value(console, 0x90, true));
    c.expect_err("vm_tx_take(no room)", sys::vm_tx_take(console, &mut []), inv);
    c.expect_err("vm_tx_take(more than the buffer)", sys::vm_tx_take(console, &mut [0; keel_rt::abi::vm::TX_BUFFER + 1]), inv);
    c.expect_eq("vm_tx_take(empty buffer)", sys::vm_tx_take(console, &mut buf), Ok(0));
    c.expect_ok("cap_delete(console line)", sys::cap_delete(console));

    for (what, s) in [("irq line", line), ("vcpu", vcpu), ("guest RAM", ram), ("vm", vm)] {
        c.expect_ok(format_args!("cap_delete({what})"), sys::cap_delete(s));
    }
}

/// null, yield and sleep do what they say.
fn scheduling_calls(c: &mut Checks) {
    c.expect_ok("null", sys::null());
    c.expect_ok("yield", raw(nr::YIELD, &[]));
    let freq = sys::counter_freq().max(1);
    let start = sys::counter();
    c.expect_ok("sleep(5 ms)", raw(nr::SLEEP, &[5 * MS]));
    let slept_ns = sys::counter().wrapping_sub(start) as u128 * 1_000_000_000 / freq as u128;
    c.check(slept_ns >= u128::from(5 * MS), || format!("sleep(5 ms) returned after {slept_ns} ns"));
}

/// Every call number below `nr::COUNT` this process made since `tally::start`; process_exit
/// ends the process, so it is made last and cannot be counted here. Returns how many numbers
/// were made.
fn check_every_call_made(c: &mut Checks, counts: &[u32; sys::tally::BUCKETS]) -> u64 {
    let missing: Vec<&str> =
        (0..nr::COUNT).filter(|&n| n != nr::PROCESS_EXIT && counts[n as usize] == 0).map(nr::name).collect();
    c.check(missing.is_empty(), || format!("system calls never made by the scenario: {}", missing.join(", ")));
    (0..nr::COUNT).filter(|&n| counts[n as usize] > 0).count() as u64
}

/// fault_inject: only the control cap arms it; an armed failure makes the next call fail with
/// NoMemory and leave nothing behind, and disarming says it fired.
fn fault_injection(c: &mut Checks, fx: &Fixture) {
    let Some(ctl) = fx.control else { return };
    c.expect_err("fault_inject(notification)", sys::fault_inject(fx.notif, 1), Error::WrongType);
    c.expect_err("fault_inject(control without MANAGE)", sys::fault_inject(fx.control_weak.unwrap_or(EMPTY), 1), Error::NoRights);
    let free = lowest_free();
    c.expect_ok("fault_inject(control, 1)", sys::fault_inject(ctl, 1));
    c.expect_err("notif_create with its first allocation failing", sys::notif_create(), Error::NoMemory);
    c.expect_eq("fault_inject(control, 0): the armed failure fired", sys::fault_inject(ctl, 0).map(|(fired, _)| fired), Ok(true));
    c.expect_eq("lowest free slot after the injected failure", lowest_free(), free);
}
