//! Host tests: every system call that creates objects or installs caps does all of its work or
//! none. Each call is made once per allocation point with that point failing (through
//! `fault_inject`, as user space would), and with a bad capability in each capability argument in
//! turn; after every refused call the object census, the caller's slot count and the free frames
//! must be what they were.

use crate::cap::Rights;
use crate::census::Census;
use crate::object::{Id, ObjRef};
use crate::tests::World;
use keel_abi::ipc::CapList;
use keel_abi::vm::map;
use keel_abi::{Error, NO_SLOT, PmoKind, perm, rights, syscall as nr};

/// What must not change when a call is refused.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    census: Census,
    caller_caps: usize,
}

fn snapshot(w: &World, pid: Id) -> Snapshot {
    Snapshot { census: w.k.census(), caller_caps: w.k.caps.count(pid).unwrap() }
}

/// A process with a running thread, a control cap and the objects the calls need as arguments.
struct Bench {
    w: World,
    pid: Id,
    control: u64,
    notif: u64,
    pmo: u64,
    contig: u64,
    conn: u64,
    vm: u64,
    child: u64,
    /// A server thread blocked in ipc_recv on `conn` (in another process).
    server: Id,
}

fn ok(r: [u64; 8]) -> [u64; 8] {
    World::status(r).unwrap_or_else(|e| panic!("setup call failed: {e:?}"))
}

impl Bench {
    fn new() -> Self {
        let mut w = World::new();
        let (spid, st) = w.process("server");
        let (pid, tid) = w.process("caller");
        w.run(st);
        let sconn = ok(w.syscall(nr::CONN_CREATE, &[]))[1] as u32;
        let obj = w.k.caps.get(spid, sconn).unwrap().object;
        let conn = w.k.caps.copy((spid, sconn), pid, Rights::ALL, None).unwrap() as u64;
        w.k.inc_ref(obj);
        w.syscall(nr::IPC_RECV, &[sconn as u64]);
        w.run(tid);
        let control = u64::from(w.give(pid, ObjRef::Control, Rights::ALL));
        let notif = ok(w.syscall(nr::NOTIF_CREATE, &[]))[1];
        let pmo = ok(w.syscall(nr::PMO_CREATE, &[PmoKind::Anonymous as u64, 16 << 12]))[1];
        let contig = ok(w.syscall(nr::PMO_CREATE, &[PmoKind::Contiguous as u64, 4 << 12]))[1];
        // A mapped buffer (already touched) for names and copies.
        ok(w.syscall(nr::VMSPACE_MAP, &[1, pmo, 0x10_0000, 4 << 12, 0, perm::READ | perm::WRITE]));
        w.k.copy_to_user(pid, 0x10_0000, &[b'x'; 4 << 12]).unwrap();
        let vm = ok(w.syscall(nr::VM_CREATE, &[control, 2]))[1];
        let child = ok(w.syscall(nr::PROCESS_CREATE, &[0x10_0000, 5]))[1];
        Self { w, pid, control, notif, pmo, contig, conn, vm, child, server: st }
    }

    fn call(&mut self, n: u64, args: &[u64]) -> Result<[u64; 8], Error> {
        World::status(self.w.syscall(n, args))
    }

    /// Makes call `n` failing at each of its allocation points in turn (each refused call must
    /// change nothing), then lets it succeed; returns how many points it has and its result.
    fn each_point(&mut self, what: &str, n: u64, args: &[u64]) -> (u64, [u64; 8]) {
        for nth in 1.. {
            let before = snapshot(&self.w, self.pid);
            self.call(nr::FAULT_INJECT, &[self.control, nth]).unwrap();
            let result = self.call(n, args);
            let report = self.call(nr::FAULT_INJECT, &[self.control, 0]).unwrap();
            if report[1] == 0 {
                let r = result.unwrap_or_else(|e| panic!("{what}: fails with {e:?} when no point fails"));
                assert!(nth > 1, "{what}: passed no allocation point at all");
                return (nth - 1, r);
            }
            assert_eq!(result, Err(Error::NoMemory), "{what}: allocation point {nth} of {} failed", report[2]);
            assert_eq!(snapshot(&self.w, self.pid), before, "{what}: allocation point {nth} failed and left something behind");
        }
        unreachable!()
    }

    /// Makes call `n` with `args`, each listed argument index replaced in turn by each bad cap
    /// (an empty slot, a slot beyond the table, a register that is no slot number, and the caps of
    /// the wrong kind given for that argument); every one must be refused and change nothing.
    fn each_bad_cap(&mut self, what: &str, n: u64, args: &[u64], cap_args: &[(usize, &[u64])]) {
        for &(i, wrong_kind) in cap_args {
            for bad in [4000, 4096, u64::from(NO_SLOT) + 1].iter().chain(wrong_kind).copied() {
                let mut a = args.to_vec();
                a[i] = bad;
                let before = snapshot(&self.w, self.pid);
                if let Ok(res) = self.call(n, &a) {
                    panic!("{what}: argument {i} = slot {bad:#x} was accepted ({res:?})");
                }
                assert_eq!(snapshot(&self.w, self.pid), before, "{what}: argument {i} = slot {bad:#x} left something behind");
            }
        }
    }

    /// Deletes a cap the successful call returned.
    fn drop_cap(&mut self, slot: u64) {
        self.call(nr::CAP_DELETE, &[slot]).unwrap();
    }
}

#[test]
fn process_create_is_all_or_nothing() {
    let mut b = Bench::new();
    let before = snapshot(&b.w, b.pid);
    let (points, r) = b.each_point("process_create", nr::PROCESS_CREATE, &[0x10_0000, 5]);
    assert!(points >= 3, "process_create has the heap, an ASID and a root table to allocate (found {points})");
    assert_eq!(b.w.k.census().processes, before.census.processes + 1);
    b.call(nr::PROCESS_KILL, &[r[1], 0]).unwrap();
    b.drop_cap(r[2]);
    b.drop_cap(r[1]);
    assert_eq!(snapshot(&b.w, b.pid), before, "a created and killed process left something behind");
}

#[test]
fn thread_create_is_all_or_nothing_and_refuses_a_bad_process_cap() {
    let mut b = Bench::new();
    let args = [b.child, 0x40_0000, 0x40_0000_0000, 0, 32, 0];
    let (_, r) = b.each_point("thread_create", nr::THREAD_CREATE, &args);
    assert_eq!(b.w.k.threads[&r[2]].state, crate::object::thread::ThreadState::Ready, "the new thread is queued");
    let wrong = [b.notif, b.pmo, 1];
    b.each_bad_cap("thread_create", nr::THREAD_CREATE, &args, &[(0, &wrong)]);
    // A thread refused at its cap never ran: the table is full.
    let before = snapshot(&b.w, b.pid);
    let free = crate::kernel::PROCESS_SLOTS as usize - b.w.k.caps.count(b.pid).unwrap();
    let mut filler = Vec::new();
    for _ in 0..free {
        filler.push(b.call(nr::CAP_COPY, &[b.notif, u64::from(NO_SLOT), u64::from(rights::ALL), 0]).unwrap()[1]);
    }
    let threads = b.w.k.threads.len();
    assert_eq!(b.call(nr::THREAD_CREATE, &args), Err(Error::TableFull));
    assert_eq!(b.w.k.threads.len(), threads);
    for s in filler {
        b.drop_cap(s);
    }
    assert_eq!(snapshot(&b.w, b.pid), before);
}

#[test]
fn object_creating_calls_are_all_or_nothing() {
    let mut b = Bench::new();
    for (what, n, args) in [
        ("pmo_create(anonymous)", nr::PMO_CREATE, vec![PmoKind::Anonymous as u64, 8 << 12]),
        ("pmo_create(contiguous)", nr::PMO_CREATE, vec![PmoKind::Contiguous as u64, 8 << 12]),
        ("conn_create", nr::CONN_CREATE, vec![]),
        ("notif_create", nr::NOTIF_CREATE, vec![]),
        ("device_pmo", nr::DEVICE_PMO, vec![b.control, 0x0900_0000, 4096]),
        ("cap_copy", nr::CAP_COPY, vec![b.notif, u64::from(NO_SLOT), u64::from(rights::SIGNAL), 5]),
        ("vm_create", nr::VM_CREATE, vec![b.control, 1]),
        ("vcpu_create", nr::VCPU_CREATE, vec![b.vm, 1]),
        ("vm_irq_line_create", nr::VM_IRQ_LINE_CREATE, vec![b.vm, 40, 0, 0]),
    ] {
        let before = snapshot(&b.w, b.pid);
        let (_, r) = b.each_point(what, n, &args);
        b.drop_cap(r[1]);
        assert_eq!(snapshot(&b.w, b.pid), before, "{what}: made and deleted, something stayed");
    }
}

#[test]
fn mapping_and_writing_calls_are_all_or_nothing() {
    let mut b = Bench::new();
    let (pmo, contig, vm, child) = (b.pmo, b.contig, b.vm, b.child);
    // Eager mapping of a contiguous object: page tables are allocated and must all go back.
    let before = snapshot(&b.w, b.pid);
    let args = [1, contig, 0x2000_0000, 4 << 12, 0, perm::READ | perm::WRITE];
    b.each_point("vmspace_map(contiguous)", nr::VMSPACE_MAP, &args);
    b.call(nr::VMSPACE_UNMAP, &[1, 0x2000_0000, 4 << 12]).unwrap();
    assert_eq!(snapshot(&b.w, b.pid), before);
    // A write over four untouched pages: all are allocated or none.
    let args = [pmo, 8 << 12, 0x10_0000, 4 << 12];
    b.each_point("pmo_write(4 new pages)", nr::PMO_WRITE, &args);
    b.each_point("vm_map", nr::VM_MAP, &[vm, pmo, 0x4000_0000, 16 << 12, 0, map::READ | map::WRITE]);
    b.each_point("process_watch", nr::PROCESS_WATCH, &[child, b.notif, 1]);
    b.each_point("cap_move", nr::CAP_MOVE, &[b.notif, u64::from(NO_SLOT)]);
}

#[test]
fn a_call_carrying_caps_is_all_or_nothing() {
    let mut b = Bench::new();
    let spid = b.w.k.threads[&b.server].pid;
    let caps = CapList::from_slots(&[b.notif as u32, b.pmo as u32]).unwrap();
    let server_caps = b.w.k.caps.count(spid).unwrap();
    for nth in 1.. {
        let before = snapshot(&b.w, b.pid);
        b.call(nr::FAULT_INJECT, &[b.control, nth]).unwrap();
        let r = b.w.syscall(nr::IPC_CALL, &[b.conn, 1, 0, 0, 0, 0, 0, caps.0]);
        if b.w.k.current[0] == Some(b.server) {
            // Delivered: the server runs with both caps.
            assert_eq!(b.w.k.caps.count(spid).unwrap(), server_caps + 2);
            assert!(nth > 1);
            break;
        }
        assert_eq!(World::status(r), Err(Error::NoMemory));
        assert_eq!(b.call(nr::FAULT_INJECT, &[b.control, 0]).unwrap()[1], 1, "point {nth} fired");
        assert_eq!(snapshot(&b.w, b.pid), before, "ipc_call failing at point {nth} left something");
        assert_eq!(b.w.k.caps.count(spid).unwrap(), server_caps, "a cap reached the server");
    }
}

#[test]
fn irq_create_is_all_or_nothing() {
    let mut b = Bench::new();
    b.w.k.claimable_irqs = vec![48, 49];
    let before = snapshot(&b.w, b.pid);
    let (_, r) = b.each_point("irq_create", nr::IRQ_CREATE, &[b.control, 48]);
    assert_eq!(b.w.k.census().irqs, before.census.irqs + 1);
    // The line is taken now: a second claim is refused and changes nothing.
    let taken = snapshot(&b.w, b.pid);
    assert_eq!(b.call(nr::IRQ_CREATE, &[b.control, 48]), Err(Error::Exists));
    assert_eq!(snapshot(&b.w, b.pid), taken);
    b.drop_cap(r[1]);
    assert_eq!(snapshot(&b.w, b.pid), before, "an irq claimed and released left something behind");
    // Lines nobody may claim, and a control cap that is not one.
    for intid in [0, 27, 50, 1020, u64::from(u32::MAX) + 49] {
        assert_eq!(b.call(nr::IRQ_CREATE, &[b.control, intid]), Err(Error::Invalid), "intid {intid}");
    }
    let (me, n, p) = (0, b.notif, b.pmo);
    b.each_bad_cap("irq_create", nr::IRQ_CREATE, &[b.control, 49], &[(0, &[me, n, p])]);
    assert_eq!(snapshot(&b.w, b.pid), before);
    // A full table: the line stays free for the next claim.
    let free = crate::kernel::PROCESS_SLOTS as usize - b.w.k.caps.count(b.pid).unwrap();
    let filler: Vec<u64> =
        (0..free).map(|_| b.call(nr::CAP_COPY, &[b.notif, u64::from(NO_SLOT), u64::from(rights::ALL), 0]).unwrap()[1]).collect();
    assert_eq!(b.call(nr::IRQ_CREATE, &[b.control, 49]), Err(Error::TableFull));
    for s in filler {
        b.drop_cap(s);
    }
    assert_eq!(snapshot(&b.w, b.pid), before);
    let r = b.call(nr::IRQ_CREATE, &[b.control, 49]).expect("the line a full table refused is still free");
    b.drop_cap(r[1]);
}

#[test]
fn a_reply_carrying_caps_is_all_or_nothing_and_the_caller_keeps_waiting() {
    let mut b = Bench::new();
    let caller = b.w.k.current[0].unwrap();
    let spid = b.w.k.threads[&b.server].pid;
    // The call reaches the server, which runs now.
    b.w.syscall(nr::IPC_CALL, &[b.conn, 7, 0, 0, 0, 0, 0, CapList::EMPTY.0]);
    assert_eq!(b.w.k.current[0], Some(b.server));
    // The server's own objects to send back, and its control cap for fault injection.
    let control = u64::from(b.w.give(spid, ObjRef::Control, Rights::ALL));
    let notif = ok(b.w.syscall(nr::NOTIF_CREATE, &[]))[1] as u32;
    let pmo = ok(b.w.syscall(nr::PMO_CREATE, &[PmoKind::Anonymous as u64, 1 << 12]))[1] as u32;
    let caps = CapList::from_slots(&[notif, pmo]).unwrap();
    let caller_caps = b.w.k.caps.count(b.pid).unwrap();
    // A bad cap in the reply: refused, and the server may still reply.
    let bad = CapList::from_slots(&[notif, 4000]).unwrap();
    let before = b.w.k.census();
    assert_eq!(World::status(b.w.syscall(nr::IPC_REPLY, &[0, 1, 0, 0, 0, 0, 0, bad.0])), Err(Error::BadSlot));
    assert_eq!(b.w.k.census(), before);
    assert_eq!(b.w.k.caps.count(b.pid).unwrap(), caller_caps, "a cap of a refused reply reached the caller");
    for nth in 1.. {
        let before = b.w.k.census();
        ok(b.w.syscall(nr::FAULT_INJECT, &[control, nth]));
        let r = b.w.syscall(nr::IPC_REPLY, &[0, 1, 0, 0, 0, 0, 0, caps.0]);
        let report = ok(b.w.syscall(nr::FAULT_INJECT, &[control, 0]));
        if report[1] == 0 {
            World::status(r).expect("the reply fails when no point fails");
            assert!(nth > 1, "a reply with caps passed no allocation point");
            break;
        }
        assert_eq!(World::status(r), Err(Error::NoMemory), "reply allocation point {nth}");
        assert_eq!(b.w.k.census(), before, "a reply failing at point {nth} left something behind");
        assert_eq!(b.w.k.caps.count(b.pid).unwrap(), caller_caps, "a cap of a failed reply reached the caller");
        assert_eq!(
            b.w.k.threads[&caller].state,
            crate::object::thread::ThreadState::Blocked(crate::object::thread::Block::Reply { server: b.server }),
            "the caller stops waiting for a reply that failed at point {nth}"
        );
    }
    // Delivered: the caller has both caps, and its reply registers name them.
    assert_eq!(b.w.k.caps.count(b.pid).unwrap(), caller_caps + 2);
    let got = CapList(b.w.k.threads[&caller].regs.x[7]);
    assert_eq!(got.len(), 2);
    for s in got.slots() {
        assert!(b.w.k.caps.get(b.pid, s).is_ok(), "reply cap slot {s} is not in the caller's table");
    }
}

#[test]
fn a_bad_cap_in_any_argument_is_refused_and_changes_nothing() {
    let mut b = Bench::new();
    let (n, p, c, vm, ch, ctl) = (b.notif, b.pmo, b.contig, b.vm, b.child, b.control);
    let rw = perm::READ | perm::WRITE;
    // Wrong kinds for each argument: the process (slot 0), its vmspace (1), a notification, a
    // PMO, a connection, the control cap, a VM.
    let (me, vs, k) = (0, 1, b.conn);
    b.each_bad_cap("vmspace_map", nr::VMSPACE_MAP, &[1, p, 0x3000_0000, 4096, 0, rw], &[(0, &[me, n, p]), (1, &[me, vs, n, k])]);
    b.each_bad_cap("cap_copy", nr::CAP_COPY, &[n, ch, u64::from(rights::SIGNAL), 0], &[(0, &[]), (1, &[vs, n, p, vm])]);
    b.each_bad_cap("cap_move", nr::CAP_MOVE, &[n, ch], &[(0, &[]), (1, &[vs, n, p, k])]);
    b.each_bad_cap("process_watch", nr::PROCESS_WATCH, &[ch, n, 1], &[(0, &[vs, n, p]), (1, &[me, p, k, vm])]);
    b.each_bad_cap("pmo_write", nr::PMO_WRITE, &[p, 0, 0x10_0000, 8], &[(0, &[me, vs, n, vm])]);
    b.each_bad_cap("vm_map", nr::VM_MAP, &[vm, p, 0x5000_0000, 4096, 0, map::READ | map::WRITE], &[(0, &[me, n, p, ctl]), (1, &[me, n, vm, k])]);
    b.each_bad_cap("vcpu_create", nr::VCPU_CREATE, &[vm, 0], &[(0, &[me, n, p, ctl])]);
    b.each_bad_cap("vm_irq_line_create", nr::VM_IRQ_LINE_CREATE, &[vm, 40, 0, 0], &[(0, &[me, n, ctl])]);
    b.each_bad_cap("vm_create", nr::VM_CREATE, &[ctl, 1], &[(0, &[me, n, vm])]);
    b.each_bad_cap("device_pmo", nr::DEVICE_PMO, &[ctl, 0x0900_0000, 4096], &[(0, &[me, p, vm])]);
    b.each_bad_cap("fault_inject", nr::FAULT_INJECT, &[ctl, 1], &[(0, &[me, n])]);
    b.each_bad_cap("irq_bind", nr::IRQ_BIND, &[n, n, 1], &[(0, &[me, p])]);
    b.each_bad_cap("thread_create", nr::THREAD_CREATE, &[ch, 0x40_0000, 0x40_0000_0000, 0, 32, 0], &[(0, &[vs, n, c])]);
    // The caps an IPC call carries: a bad one in any position fails the whole call.
    for pos in 0..3 {
        for bad in [4000u32, 4095] {
            let mut slots = vec![n as u32, p as u32, n as u32];
            slots[pos] = bad;
            let l = CapList::from_slots(&slots).unwrap();
            let before = snapshot(&b.w, b.pid);
            let r = b.w.syscall(nr::IPC_CALL, &[b.conn, 1, 0, 0, 0, 0, 0, l.0]);
            assert_eq!(World::status(r), Err(Error::BadSlot), "cap {pos} of the call = slot {bad}");
            assert_eq!(snapshot(&b.w, b.pid), before);
        }
    }
}

#[test]
fn fault_inject_needs_the_control_cap_and_counts_no_other_thread() {
    let mut b = Bench::new();
    assert_eq!(b.call(nr::FAULT_INJECT, &[b.notif, 1]), Err(Error::WrongType));
    let weak = b.call(nr::CAP_COPY, &[b.control, u64::from(NO_SLOT), u64::from(rights::READ), 0]).unwrap()[1];
    assert_eq!(b.call(nr::FAULT_INJECT, &[weak, 1]), Err(Error::NoRights));
    // Armed, then a call with no allocation point: nothing fired, nothing counted.
    b.call(nr::FAULT_INJECT, &[b.control, 1]).unwrap();
    b.call(nr::NULL, &[]).unwrap();
    let r = b.call(nr::FAULT_INJECT, &[b.control, 0]).unwrap();
    assert_eq!((r[1], r[2]), (0, 0));
    // Only the next call is armed: the one after it succeeds.
    b.call(nr::FAULT_INJECT, &[b.control, 1]).unwrap();
    assert_eq!(b.call(nr::NOTIF_CREATE, &[]), Err(Error::NoMemory));
    let s = b.call(nr::NOTIF_CREATE, &[]).unwrap()[1];
    b.drop_cap(s);
}

#[test]
fn the_kernel_never_copies_through_a_mapping_of_device_registers() {
    let mut b = Bench::new();
    let dev = b.call(nr::DEVICE_PMO, &[b.control, 0x0900_0000, 4096]).unwrap()[1];
    b.call(nr::VMSPACE_MAP, &[1, dev, 0x3000_0000, 4096, 0, perm::READ | perm::WRITE]).unwrap();
    // Reading from it (debug_write, pmo_write) or writing into it (pmo_read) would make the kernel
    // touch device memory through its direct map, which does not cover it.
    assert_eq!(b.call(nr::DEBUG_WRITE, &[0x3000_0000, 8]), Err(Error::BadAddress));
    assert_eq!(b.call(nr::PMO_WRITE, &[b.pmo, 0, 0x3000_0000, 8]), Err(Error::BadAddress));
    assert_eq!(b.call(nr::PMO_READ, &[b.pmo, 0, 0x3000_0000, 8]), Err(Error::BadAddress));
    assert_eq!(b.call(nr::PROCESS_CREATE, &[0x3000_0000, 4]), Err(Error::BadAddress));
}

#[test]
fn a_threadless_process_whose_last_outside_cap_goes_is_ended() {
    let mut b = Bench::new();
    let before = snapshot(&b.w, b.pid);
    let r = b.call(nr::PROCESS_CREATE, &[0x10_0000, 5]).unwrap();
    b.drop_cap(r[2]);
    b.drop_cap(r[1]);
    assert_eq!(snapshot(&b.w, b.pid), before, "an unreachable empty process stayed");
}
