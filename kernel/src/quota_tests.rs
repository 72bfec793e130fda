//! Host tests of quotas as user space sees them: the quota calls, what process and thread
//! creation, memory objects, page faults and moves charge, and the refusals.

use crate::cap::Rights;
use crate::kernel::{PROCESS_RECORD, THREAD_RECORD};
use crate::object::ObjRef;
use crate::object::thread::ThreadState;
use crate::object::vmspace::Access;
use crate::tests::World;
use crate::trap::UserTrap;
use keel_abi::quota::{MEMORY, NO_LIMIT, PROCESSES, QuotaStat, RESOURCES, THREADS};
use keel_abi::{EXIT_OOM, Error, PAGE_SIZE, PmoKind, perm, syscall as nr};

fn ok(r: [u64; 8]) -> [u64; 8] {
    World::status(r).unwrap_or_else(|e| panic!("call failed: {e:?}"))
}

fn stat(w: &mut World, quota: u64, resource: u64) -> QuotaStat {
    QuotaStat::from_words(&ok(w.syscall(nr::QUOTA_STAT, &[quota, resource]))[1..8])
}

/// A world whose running process holds the root quota's cap; (world, pid, root slot, child slot).
fn with_child_quota() -> (World, crate::object::Id, u64, u64) {
    let mut w = World::new();
    let (pid, t) = w.process("resmgr");
    w.run(t);
    let root = w.k.root_quota;
    let root_slot = u64::from(w.give(pid, ObjRef::Quota(root), Rights::ALL));
    let child = ok(w.syscall(nr::QUOTA_CREATE, &[root_slot]))[1];
    (w, pid, root_slot, child)
}

fn create_process(w: &mut World, name: &'static str, quota: u64) -> Result<[u64; 8], Error> {
    World::status(w.syscall(nr::PROCESS_CREATE, &[name.as_ptr() as u64, 0, quota]))
}

#[test]
fn a_process_limit_stops_creation_at_exactly_the_limit_and_exits_give_the_count_back() {
    let (mut w, _, root, child) = with_child_quota();
    ok(w.syscall(nr::QUOTA_SET, &[child, PROCESSES, 3]));
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(create_process(&mut w, "p", child).unwrap());
    }
    assert_eq!(create_process(&mut w, "p", child), Err(Error::Limit));
    let s = stat(&mut w, child, PROCESSES);
    assert_eq!((s.usage, s.limit, s.refused), (3, 3, 1));
    // Their records are charged as memory, in the child and in the root.
    assert_eq!(stat(&mut w, child, MEMORY).usage % PAGE_SIZE, (3 * PROCESS_RECORD) % PAGE_SIZE);
    assert!(stat(&mut w, root, MEMORY).usage >= stat(&mut w, child, MEMORY).usage);
    // A process elsewhere is not affected.
    create_process(&mut w, "outside", 0).unwrap();
    for r in &made {
        ok(w.syscall(nr::PROCESS_KILL, &[r[1], 0]));
    }
    assert_eq!(stat(&mut w, child, PROCESSES).usage, 0);
    for r in &made {
        ok(w.syscall(nr::CAP_DELETE, &[r[1]]));
        ok(w.syscall(nr::CAP_DELETE, &[r[2]]));
    }
    assert_eq!(stat(&mut w, child, MEMORY).usage, 0, "every record and page table is given back");
    assert_eq!(stat(&mut w, child, PROCESSES).peak, 3);
}

#[test]
fn a_thread_limit_counts_every_thread_of_the_group() {
    let (mut w, _, _, child) = with_child_quota();
    ok(w.syscall(nr::QUOTA_SET, &[child, THREADS, 2]));
    let p = create_process(&mut w, "p", child).unwrap()[1];
    let mut slots = Vec::new();
    for _ in 0..2 {
        slots.push(ok(w.syscall(nr::THREAD_CREATE, &[p, 0x40_0000, 0x40_0000, 0, 32, 0]))[1]);
    }
    assert_eq!(World::status(w.syscall(nr::THREAD_CREATE, &[p, 0x40_0000, 0x40_0000, 0, 32, 0])), Err(Error::Limit));
    let m = stat(&mut w, child, MEMORY).usage;
    assert_eq!(stat(&mut w, child, THREADS).usage, 2);
    ok(w.syscall(nr::PROCESS_KILL, &[p, 0]));
    assert_eq!(stat(&mut w, child, THREADS).usage, 0, "killed threads give their count back at once");
    assert!(stat(&mut w, child, MEMORY).usage <= m, "their records stay charged while caps name them");
    let before = stat(&mut w, child, MEMORY).usage;
    for s in slots {
        ok(w.syscall(nr::CAP_DELETE, &[s]));
    }
    assert_eq!(stat(&mut w, child, MEMORY).usage, before - 2 * THREAD_RECORD);
}

#[test]
fn memory_objects_are_charged_to_the_quota_they_bill_and_a_limit_refuses_frames() {
    let (mut w, pid, _, child) = with_child_quota();
    ok(w.syscall(nr::QUOTA_SET, &[child, MEMORY, 16 * PAGE_SIZE]));
    // Contiguous memory is charged at once: over the limit it is refused, and nothing stays.
    assert_eq!(World::status(w.syscall(nr::PMO_CREATE, &[PmoKind::Contiguous as u64, 32 * PAGE_SIZE, child])), Err(Error::NoMemory));
    let c = ok(w.syscall(nr::PMO_CREATE, &[PmoKind::Contiguous as u64, 8 * PAGE_SIZE, child]))[1];
    assert_eq!(stat(&mut w, child, MEMORY).usage, 8 * PAGE_SIZE);
    // Anonymous memory is charged page by page as it is written.
    let a = ok(w.syscall(nr::PMO_CREATE, &[PmoKind::Anonymous as u64, 64 * PAGE_SIZE, child]))[1];
    let p = w.k.caps.lookup(pid, a as u32, Rights::NONE).unwrap().object;
    let ObjRef::Pmo(pmo) = p else { panic!("not a pmo") };
    for page in 0..8 {
        w.k.pmos.get_mut(&pmo).unwrap().write(page * PAGE_SIZE, &[1]).unwrap();
    }
    assert_eq!(stat(&mut w, child, MEMORY).usage, 16 * PAGE_SIZE);
    assert_eq!(w.k.pmos.get_mut(&pmo).unwrap().write(8 * PAGE_SIZE, &[1]), Err(Error::NoMemory));
    assert_eq!(stat(&mut w, child, MEMORY).refused, 2);
    // The caller's own quota (the root) saw only its share through the child.
    ok(w.syscall(nr::CAP_DELETE, &[c]));
    ok(w.syscall(nr::CAP_DELETE, &[a]));
    assert_eq!(stat(&mut w, child, MEMORY).usage, 0, "freed frames return to the quota");
    // Billing needs MANAGE on the quota, and a slot of the right kind.
    let weak = ok(w.syscall(nr::CAP_COPY, &[child, u64::from(keel_abi::NO_SLOT), Rights::READ.bits() as u64]))[1];
    assert_eq!(World::status(w.syscall(nr::PMO_CREATE, &[0, PAGE_SIZE, weak])), Err(Error::NoRights));
    let n = ok(w.syscall(nr::NOTIF_CREATE, &[]))[1];
    assert_eq!(World::status(w.syscall(nr::PMO_CREATE, &[0, PAGE_SIZE, n])), Err(Error::WrongType));
    assert_eq!(World::status(w.syscall(nr::PMO_CREATE, &[0, PAGE_SIZE, 4000])), Err(Error::BadSlot));
}

#[test]
fn a_fault_the_quota_cannot_pay_for_kills_the_faulting_process_and_counts_an_oom_kill() {
    let (mut w, _, root, child) = with_child_quota();
    let r = create_process(&mut w, "hog", child).unwrap();
    let (pslot, vslot, hog) = (r[1], r[2], r[3]);
    let tid = ok(w.syscall(nr::THREAD_CREATE, &[pslot, 0x40_0000, 0x40_0000, 0, 32, 0]))[2];
    let used = stat(&mut w, child, MEMORY).usage;
    ok(w.syscall(nr::QUOTA_SET, &[child, MEMORY, used + 4 * PAGE_SIZE]));
    let a = ok(w.syscall(nr::PMO_CREATE, &[0, 64 * PAGE_SIZE, pslot]))[1];
    ok(w.syscall(nr::VMSPACE_MAP, &[vslot, a, 0x1000_0000, 64 * PAGE_SIZE, 0, perm::READ | perm::WRITE]));
    w.run(tid);
    let fault = |w: &mut World, page: u64| {
        let trap = UserTrap::Abort { addr: 0x1000_0000 + page * PAGE_SIZE, access: Access::Write, translation: true, class: "data abort", status: "translation" };
        w.k.user_trap(0, &mut w.frame, trap);
    };
    let mut page = 0;
    while w.k.threads.get(&tid).is_some_and(|t| t.state == ThreadState::Running(0)) && page < 64 {
        fault(&mut w, page);
        page += 1;
    }
    assert!(page > 1 && page < 64, "the hog got some pages and was stopped ({page})");
    assert!(w.k.current[0] != Some(tid));
    let s = stat(&mut w, child, MEMORY);
    assert_eq!(s.oom_kills, 1);
    assert!(s.usage <= s.limit);
    assert_eq!(stat(&mut w, root, MEMORY).oom_kills, 1, "counted up the tree");
    assert_eq!(
        w.k.processes[&hog].state,
        crate::object::process::ProcState::Exited(EXIT_OOM),
        "the process that faulted is the one killed"
    );
}

#[test]
fn a_move_takes_counts_records_and_page_tables_but_leaves_memory_objects() {
    let (mut w, _, root, a) = with_child_quota();
    let b = ok(w.syscall(nr::QUOTA_CREATE, &[root]))[1];
    let r = create_process(&mut w, "mover", a).unwrap();
    let (pslot, vslot) = (r[1], r[2]);
    let t1 = ok(w.syscall(nr::THREAD_CREATE, &[pslot, 0x40_0000, 0x40_0000, 0, 32, 0]))[1];
    let m = ok(w.syscall(nr::PMO_CREATE, &[0, 4 * PAGE_SIZE, pslot]))[1];
    ok(w.syscall(nr::VMSPACE_MAP, &[vslot, m, 0x1000_0000, 4 * PAGE_SIZE, 0, perm::READ | perm::WRITE]));
    let pid = r[3];
    w.k.copy_to_user(pid, 0x1000_0000, &[1]).unwrap();
    let before = stat(&mut w, a, MEMORY).usage;
    // b is full: a move is still allowed (cgroup v2), new work is not.
    ok(w.syscall(nr::QUOTA_SET, &[b, PROCESSES, 0]));
    ok(w.syscall(nr::QUOTA_MOVE, &[b, pslot]));
    assert_eq!((stat(&mut w, a, PROCESSES).usage, stat(&mut w, b, PROCESSES).usage), (0, 1));
    assert_eq!((stat(&mut w, a, THREADS).usage, stat(&mut w, b, THREADS).usage), (0, 1));
    let (ma, mb) = (stat(&mut w, a, MEMORY).usage, stat(&mut w, b, MEMORY).usage);
    assert_eq!(ma, PAGE_SIZE, "the memory object's page stays where it was charged");
    assert_eq!(ma + mb, before, "nothing is lost or made up in a move");
    assert_eq!(create_process(&mut w, "new", b), Err(Error::Limit));
    let t2 = ok(w.syscall(nr::THREAD_CREATE, &[pslot, 0x40_0000, 0x40_0000, 0, 32, 0]))[1];
    assert_eq!(stat(&mut w, b, THREADS).usage, 2);
    ok(w.syscall(nr::PROCESS_KILL, &[pslot, 0]));
    ok(w.syscall(nr::CAP_DELETE, &[t1]));
    ok(w.syscall(nr::CAP_DELETE, &[t2]));
    ok(w.syscall(nr::CAP_DELETE, &[pslot]));
    ok(w.syscall(nr::CAP_DELETE, &[vslot]));
    ok(w.syscall(nr::CAP_DELETE, &[m]));
    for q in [a, b] {
        for r in 0..RESOURCES {
            assert_eq!(stat(&mut w, q, r).usage, 0, "quota slot {q} resource {r}");
        }
    }
}

#[test]
fn a_thread_moves_alone_and_a_vm_bills_its_tables_where_its_monitor_says() {
    // A monitor (in a) runs a VM in group b: the VM's stage-2 tables, its RAM and its vCPU
    // thread are charged to b, the monitor's own threads stay in a.
    let (mut w, me, root, a) = with_child_quota();
    let b = ok(w.syscall(nr::QUOTA_CREATE, &[root]))[1];
    let r = create_process(&mut w, "vmm", a).unwrap();
    let pslot = r[1];
    let main = ok(w.syscall(nr::THREAD_CREATE, &[pslot, 0x40_0000, 0x40_0000, 0, 32, 0]))[1];
    let vcpu = ok(w.syscall(nr::THREAD_CREATE, &[pslot, 0x40_0000, 0x40_0000, 0, 32, 0]))[1];
    let a_mem = stat(&mut w, a, MEMORY).usage;
    ok(w.syscall(nr::QUOTA_MOVE, &[b, vcpu]));
    assert_eq!((stat(&mut w, a, THREADS).usage, stat(&mut w, b, THREADS).usage), (1, 1));
    assert_eq!(stat(&mut w, b, MEMORY).usage, THREAD_RECORD, "the thread's record goes with it");
    assert_eq!(stat(&mut w, a, MEMORY).usage, a_mem - THREAD_RECORD);
    // A move of the process leaves the thread that moved alone where it is.
    let c = ok(w.syscall(nr::QUOTA_CREATE, &[root]))[1];
    ok(w.syscall(nr::QUOTA_MOVE, &[c, pslot]));
    assert_eq!((stat(&mut w, a, THREADS).usage, stat(&mut w, b, THREADS).usage, stat(&mut w, c, THREADS).usage), (0, 1, 1));
    // Slot 0 names the caller's own quota (here the root): a thread moves there and back.
    ok(w.syscall(nr::QUOTA_MOVE, &[0, vcpu]));
    assert_eq!(stat(&mut w, b, THREADS).usage, 0);
    ok(w.syscall(nr::QUOTA_MOVE, &[b, vcpu]));
    assert_eq!(stat(&mut w, b, THREADS).usage, 1);
    // The process reports its quota by the number quota_stat gives.
    let info = ok(w.syscall(nr::PROCESS_INFO, &[pslot]));
    assert_eq!(info[6], stat(&mut w, c, MEMORY).id);
    assert_ne!(stat(&mut w, b, MEMORY).id, stat(&mut w, c, MEMORY).id);
    // A VM billed to b: its stage-2 root table is b's from the start.
    let b_before = stat(&mut w, b, MEMORY).usage;
    let ctl = u64::from(w.give(me, ObjRef::Control, Rights::ALL));
    let vm = ok(w.syscall(nr::VM_CREATE, &[ctl, 1, b]))[1];
    assert_eq!(stat(&mut w, b, MEMORY).usage, b_before + PAGE_SIZE, "the stage-2 root table");
    assert_eq!(World::status(w.syscall(nr::VM_CREATE, &[ctl, 1, vcpu])), Err(Error::WrongType), "a thread bills nothing");
    ok(w.syscall(nr::CAP_DELETE, &[vm]));
    assert_eq!(stat(&mut w, b, MEMORY).usage, b_before);
    // room: the least headroom up the tree.
    ok(w.syscall(nr::QUOTA_SET, &[root, MEMORY, u64::MAX - 1]));
    ok(w.syscall(nr::QUOTA_SET, &[b, MEMORY, b_before + 10 * PAGE_SIZE]));
    assert_eq!(stat(&mut w, b, MEMORY).room, 10 * PAGE_SIZE);
    let d = ok(w.syscall(nr::QUOTA_CREATE, &[b]))[1];
    assert_eq!(stat(&mut w, d, MEMORY).room, 10 * PAGE_SIZE, "a parent's limit binds its child");
    ok(w.syscall(nr::QUOTA_SET, &[d, MEMORY, 2 * PAGE_SIZE]));
    assert_eq!(stat(&mut w, d, MEMORY).room, 2 * PAGE_SIZE);
    ok(w.syscall(nr::QUOTA_SET, &[root, MEMORY, NO_LIMIT]));
    ok(w.syscall(nr::QUOTA_SET, &[b, MEMORY, NO_LIMIT]));
    assert_eq!(stat(&mut w, b, MEMORY).room, NO_LIMIT);
    // A dead thread cannot move; everything goes back when the process goes.
    ok(w.syscall(nr::PROCESS_KILL, &[pslot, 0]));
    assert_eq!(World::status(w.syscall(nr::QUOTA_MOVE, &[a, vcpu])), Err(Error::BadState));
    for s in [main, vcpu, pslot, r[2]] {
        ok(w.syscall(nr::CAP_DELETE, &[s]));
    }
    for q in [a, b, c] {
        for r in 0..RESOURCES {
            assert_eq!(stat(&mut w, q, r).usage, 0, "quota slot {q} resource {r}");
        }
    }
}

#[test]
fn quota_calls_check_their_caps_and_arguments() {
    let (mut w, pid, root, child) = with_child_quota();
    let n = ok(w.syscall(nr::NOTIF_CREATE, &[]))[1];
    assert_eq!(World::status(w.syscall(nr::QUOTA_SET, &[n, MEMORY, 1])), Err(Error::WrongType));
    assert_eq!(World::status(w.syscall(nr::QUOTA_SET, &[child, RESOURCES, 1])), Err(Error::Invalid));
    assert_eq!(World::status(w.syscall(nr::QUOTA_STAT, &[child, 99])), Err(Error::Invalid));
    assert_eq!(World::status(w.syscall(nr::QUOTA_CREATE, &[4000])), Err(Error::BadSlot));
    let read_only = ok(w.syscall(nr::CAP_COPY, &[child, u64::from(keel_abi::NO_SLOT), Rights::READ.bits() as u64]))[1];
    assert_eq!(stat(&mut w, read_only, MEMORY).limit, NO_LIMIT, "READ is enough to look");
    assert_eq!(World::status(w.syscall(nr::QUOTA_SET, &[read_only, MEMORY, 1])), Err(Error::NoRights));
    assert_eq!(World::status(w.syscall(nr::QUOTA_CREATE, &[read_only])), Err(Error::NoRights));
    assert_eq!(World::status(w.syscall(nr::QUOTA_MOVE, &[read_only, 0])), Err(Error::NoRights));
    assert_eq!(World::status(w.syscall(nr::QUOTA_MOVE, &[child, n])), Err(Error::WrongType));
    // A tree deeper than the kernel keeps is refused.
    let mut at = root;
    let mut depth = 0;
    loop {
        match World::status(w.syscall(nr::QUOTA_CREATE, &[at])) {
            Ok(r) => {
                at = r[1];
                depth += 1;
            }
            Err(e) => {
                assert_eq!(e, Error::Limit);
                break;
            }
        }
    }
    assert_eq!(depth, keel_abi::quota::MAX_DEPTH);
    // Deleting the caps removes the quotas (nothing else holds them).
    let before = crate::object::quota::QUOTAS.lock().len();
    ok(w.syscall(nr::CAP_DELETE, &[at]));
    assert_eq!(crate::object::quota::QUOTAS.lock().len(), before - 1);
    let _ = pid;
}

#[test]
fn a_thread_whose_quota_used_its_cpu_budget_waits_for_the_next_period() {
    let set_now = |now: u64| crate::hal::fake::MACHINE.with(|m| m.borrow_mut().now = now);
    set_now(1_000_000);
    let (mut w, _, _, child) = with_child_quota();
    // 20 ms per 100 ms (the fake counter runs at 1 GHz: ticks are ns).
    ok(w.syscall(nr::QUOTA_SET, &[child, keel_abi::quota::CPU, 20_000_000, 100_000_000]));
    let r = create_process(&mut w, "spinner", child).unwrap();
    let spinner = ok(w.syscall(nr::THREAD_CREATE, &[r[1], 0x40_0000, 0x40_0000, 0, 32, 0]))[2];
    // The caller blocks (waits on a notification), so the spinner runs alone.
    let n = ok(w.syscall(nr::NOTIF_CREATE, &[]))[1];
    w.syscall(nr::NOTIF_WAIT, &[n, 0]);
    assert_eq!(w.k.current[0], Some(spinner));
    assert_eq!(w.k.cpus[0].budget_until, 1_000_000 + 20_000_000, "armed for the end of its budget");
    // Ticks every 10 ms: after 20 ms it is parked.
    let mut now = 1_000_000;
    for _ in 0..2 {
        now += 10_000_000;
        set_now(now);
        if w.k.timer_fired(0, now, true) || w.k.cpus[0].need_resched {
            w.k.schedule(0, &mut w.frame);
        }
    }
    assert_eq!(w.k.current[0], None, "throttled: nothing else to run");
    assert_eq!(w.k.threads[&spinner].state, ThreadState::Blocked(crate::object::thread::Block::Throttled));
    assert_eq!(w.k.next_deadline(0), Some(101_000_000), "woken for the next period");
    // The next period: it runs again.
    now = 101_000_000;
    set_now(now);
    w.k.timer_fired(0, now, false);
    w.k.schedule(0, &mut w.frame);
    assert_eq!(w.k.current[0], Some(spinner));
}

#[test]
fn a_throttled_process_can_be_killed_and_its_quota_goes() {
    let set_now = |now: u64| crate::hal::fake::MACHINE.with(|m| m.borrow_mut().now = now);
    set_now(5_000_000);
    let (mut w, _, _, child) = with_child_quota();
    ok(w.syscall(nr::QUOTA_SET, &[child, keel_abi::quota::CPU, 1_000_000, 100_000_000]));
    let r = create_process(&mut w, "spinner", child).unwrap();
    let spinner = ok(w.syscall(nr::THREAD_CREATE, &[r[1], 0x40_0000, 0x40_0000, 0, 32, 0]))[1];
    let n = ok(w.syscall(nr::NOTIF_CREATE, &[]))[1];
    let me = w.k.current[0].unwrap();
    w.syscall(nr::NOTIF_WAIT, &[n, 0]);
    set_now(7_000_000);
    assert!(w.k.timer_fired(0, 7_000_000, true));
    w.k.schedule(0, &mut w.frame);
    assert_eq!(w.k.current[0], None);
    assert_eq!(w.k.throttled.len(), 1);
    // Our thread is woken and kills the parked process; its quota's count goes.
    ok_signal(&mut w, me, n);
    ok(w.syscall(nr::PROCESS_KILL, &[r[1], 0]));
    assert_eq!(stat(&mut w, child, PROCESSES).usage, 0);
    for s in [spinner, r[1], r[2]] {
        ok(w.syscall(nr::CAP_DELETE, &[s]));
    }
    set_now(200_000_000);
    w.k.timer_fired(0, 200_000_000, true);
    assert!(w.k.throttled.is_empty(), "the dead thread left the throttled list");
    assert_eq!(stat(&mut w, child, MEMORY).usage, 0);
    let c = keel_abi::quota::CpuStat::from_words(&ok(w.syscall(nr::QUOTA_STAT, &[child, keel_abi::quota::CPU]))[1..8]);
    assert!(c.usage_ns >= 1_000_000 && c.nr_throttled == 1, "{c:?}");
}

/// Wakes `tid` (blocked on notification `slot`) by signalling it from the kernel side and runs it.
fn ok_signal(w: &mut World, tid: crate::object::Id, slot: u64) {
    let ObjRef::Notif(id) = w.k.caps.lookup(w.k.threads[&tid].pid, slot as u32, Rights::NONE).unwrap().object else { panic!("not a notification") };
    w.k.signal(id, 1);
    w.run(tid);
}

#[test]
fn a_memory_object_keeps_its_quota_after_the_quotas_last_cap_goes() {
    let (mut w, pid, _, child) = with_child_quota();
    let before = crate::object::quota::QUOTAS.lock().len();
    let a = ok(w.syscall(nr::PMO_CREATE, &[PmoKind::Anonymous as u64, 4 * PAGE_SIZE, child]))[1];
    ok(w.syscall(nr::CAP_DELETE, &[child]));
    assert_eq!(crate::object::quota::QUOTAS.lock().len(), before, "the object holds the quota");
    // A page allocated now is charged to the (dying) quota, not refused and not a panic.
    let ObjRef::Pmo(pmo) = w.k.caps.lookup(pid, a as u32, Rights::NONE).unwrap().object else { panic!("not a pmo") };
    w.k.pmos.get_mut(&pmo).unwrap().write(0, &[1]).unwrap();
    ok(w.syscall(nr::CAP_DELETE, &[a]));
    assert_eq!(crate::object::quota::QUOTAS.lock().len(), before - 1, "and goes with its last object");
}

#[test]
fn a_process_touching_a_full_groups_buffer_pays_for_the_page_itself_and_lives() {
    // A client's group is full; a "server" (this process, in the root) maps the client's buffer
    // and touches it: the page is charged to the server's quota, nobody is killed, and the
    // charge goes back there when the buffer goes.
    let (mut w, pid, root, client) = with_child_quota();
    let buf = ok(w.syscall(nr::PMO_CREATE, &[PmoKind::Anonymous as u64, 4 * PAGE_SIZE, client]))[1];
    ok(w.syscall(nr::QUOTA_SET, &[client, MEMORY, 0]));
    ok(w.syscall(nr::VMSPACE_MAP, &[1, buf, 0x2000_0000, 4 * PAGE_SIZE, 0, perm::READ | perm::WRITE]));
    let root_before = stat(&mut w, root, MEMORY).usage;
    let trap = UserTrap::Abort { addr: 0x2000_0000, access: Access::Write, translation: true, class: "data abort", status: "translation" };
    let tid = w.k.current[0].unwrap();
    w.k.user_trap(0, &mut w.frame, trap);
    assert_eq!(w.k.current[0], Some(tid), "the toucher was not killed");
    assert_eq!(stat(&mut w, client, MEMORY).usage, 0);
    assert_eq!(stat(&mut w, client, MEMORY).refused, 1, "the owner's limit refused it first");
    assert!(stat(&mut w, root, MEMORY).usage >= root_before + PAGE_SIZE, "the toucher's quota paid");
    ok(w.syscall(nr::VMSPACE_UNMAP, &[1, 0x2000_0000, 4 * PAGE_SIZE]));
    ok(w.syscall(nr::CAP_DELETE, &[buf]));
    assert!(stat(&mut w, root, MEMORY).usage <= root_before, "and got it back");
    let _ = pid;
}

#[test]
fn a_bill_charges_the_client_for_what_a_service_keeps_and_the_service_lends_it() {
    // The running process is a service in group s; a client in group c gives it a BILL-only
    // copy of its process cap (what the file service gets with a session).
    let (mut w, me, root, s) = with_child_quota();
    let c = ok(w.syscall(nr::QUOTA_CREATE, &[root]))[1];
    ok(w.syscall(nr::QUOTA_MOVE, &[s, 0]));
    let client = create_process(&mut w, "client", c).unwrap();
    let bill_only = ok(w.syscall(nr::CAP_COPY, &[client[1], u64::from(keel_abi::NO_SLOT), Rights::BILL.bits() as u64]))[1];
    // The service keeps 4 pages (a heap it touched).
    let m = ok(w.syscall(nr::PMO_CREATE, &[0, 4 * PAGE_SIZE, 0]))[1];
    ok(w.syscall(nr::VMSPACE_MAP, &[1, m, 0x1000_0000, 4 * PAGE_SIZE, 0, perm::READ | perm::WRITE]));
    for i in 0..4 {
        w.k.copy_to_user(me, 0x1000_0000 + i * PAGE_SIZE, &[1]).unwrap();
    }
    let (s0, c0, r0) = (stat(&mut w, s, MEMORY).usage, stat(&mut w, c, MEMORY).usage, stat(&mut w, root, MEMORY).usage);
    let made = ok(w.syscall(nr::BILL_CREATE, &[bill_only]));
    assert_eq!(made[2], 0, "the client's quota is not the service's");
    let bill = made[1];
    let own = ok(w.syscall(nr::BILL_CREATE, &[0]));
    assert_eq!(own[2], 1, "a bill on ourselves changes nothing");
    ok(w.syscall(nr::CAP_DELETE, &[own[1]]));
    assert_eq!(ok(w.syscall(nr::BILL_CHARGE, &[bill, 3 * PAGE_SIZE]))[1], 3 * PAGE_SIZE);
    assert_eq!(stat(&mut w, c, MEMORY).usage, c0 + 3 * PAGE_SIZE, "the client pays");
    assert_eq!(stat(&mut w, s, MEMORY).usage, s0 - 3 * PAGE_SIZE, "the service shows only its own");
    assert_eq!(stat(&mut w, root, MEMORY).usage, r0, "counted once above both");
    // The client's limit binds: a charge past it is refused and changes nothing.
    ok(w.syscall(nr::QUOTA_SET, &[c, MEMORY, c0 + 3 * PAGE_SIZE]));
    assert_eq!(World::status(w.syscall(nr::BILL_CHARGE, &[bill, PAGE_SIZE])), Err(Error::NoMemory));
    assert_eq!(stat(&mut w, c, MEMORY).refused, 1);
    ok(w.syscall(nr::QUOTA_SET, &[c, MEMORY, NO_LIMIT]));
    // No overflow, and no refund of more than the bill has.
    assert_eq!(World::status(w.syscall(nr::BILL_CHARGE, &[bill, u64::MAX])), Err(Error::Invalid));
    assert_eq!(World::status(w.syscall(nr::BILL_REFUND, &[bill, 4 * PAGE_SIZE])), Err(Error::Invalid));
    assert_eq!(ok(w.syscall(nr::BILL_REFUND, &[bill, PAGE_SIZE]))[1], 2 * PAGE_SIZE);
    assert_eq!(stat(&mut w, c, MEMORY).usage, c0 + 2 * PAGE_SIZE);
    // Wrong caps: a bill needs BILL (or MANAGE) on the payer, and MANAGE on the bill.
    let read_only = ok(w.syscall(nr::CAP_COPY, &[client[1], u64::from(keel_abi::NO_SLOT), Rights::READ.bits() as u64]))[1];
    assert_eq!(World::status(w.syscall(nr::BILL_CREATE, &[read_only])), Err(Error::NoRights));
    assert_eq!(World::status(w.syscall(nr::BILL_CREATE, &[m])), Err(Error::WrongType));
    let bill_ro = ok(w.syscall(nr::CAP_COPY, &[bill, u64::from(keel_abi::NO_SLOT), Rights::READ.bits() as u64]))[1];
    assert_eq!(World::status(w.syscall(nr::BILL_CHARGE, &[bill_ro, 1])), Err(Error::NoRights));
    assert_eq!(World::status(w.syscall(nr::BILL_CHARGE, &[m, 1])), Err(Error::WrongType));
    // BILL is also enough to create memory for the client.
    let theirs = ok(w.syscall(nr::PMO_CREATE, &[0, PAGE_SIZE, bill_only]))[1];
    // The client exits: its quota stays while the bill charges it; the bill's last cap gives
    // everything back to the service.
    ok(w.syscall(nr::PROCESS_KILL, &[client[1], 0]));
    for slot in [client[1], client[2], bill_only, read_only, theirs] {
        ok(w.syscall(nr::CAP_DELETE, &[slot]));
    }
    assert_eq!(stat(&mut w, c, MEMORY).usage, 2 * PAGE_SIZE, "only the bill is left on the client");
    ok(w.syscall(nr::CAP_DELETE, &[bill_ro]));
    ok(w.syscall(nr::CAP_DELETE, &[bill]));
    assert_eq!(stat(&mut w, c, MEMORY).usage, 0);
    assert_eq!(stat(&mut w, s, MEMORY).usage, s0, "the service's own again");
    assert_eq!(crate::object::quota::QUOTAS.lock().bills(), 0);
    ok(w.syscall(nr::CAP_DELETE, &[c]));
}
