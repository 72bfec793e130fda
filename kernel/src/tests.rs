//! Host tests of the kernel's object, syscall and IPC logic, through the fake HAL.
//!
//! Each test builds a `Kernel` for one CPU and drives it the way the arch layer does: a trap
//! frame, `user_trap(Syscall)`, and a look at which thread the frame holds afterwards.

use crate::cap::Rights;
use crate::kernel::Kernel;
use crate::mm::frame::FRAMES;
use crate::object::thread::{ThreadState, UserRegs};
use crate::object::{Id, ObjRef};
use crate::trap::UserTrap;
use keel_abi::ipc::CapList;
use keel_abi::{Error, PmoKind, perm, syscall as nr};
use std::sync::Once;

static RAM: Once = Once::new();

/// Gives the global frame allocator 256 MiB of fake RAM (once for all tests).
fn ram() {
    RAM.call_once(|| FRAMES.lock().add_region(keel_platform::dtb::Region { base: 0x4000_0000, size: 256 << 20 }));
}

/// Tests share the global frame allocator and failure injection; they run one at a time so frame
/// counts are exact.
use crate::failpoint::TEST_LOCK as SERIAL;

pub(crate) struct World {
    pub k: Kernel,
    pub frame: UserRegs,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl World {
    pub fn new() -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        ram();
        Self { k: Kernel::new(1), frame: UserRegs::default(), _serial: serial }
    }

    /// A process with one thread; returns (pid, tid).
    pub fn process(&mut self, name: &str) -> (Id, Id) {
        let pid = self.k.create_process(name).unwrap();
        let params = self.k.default_params();
        let tid = self.k.create_thread(pid, 0x40_0000, 0x40_0000_0000, 0, params).unwrap();
        (pid, tid)
    }

    /// Runs the scheduler on CPU 0 until `tid` is current (switching out whatever ran).
    pub fn run(&mut self, tid: Id) {
        for _ in 0..16 {
            if self.k.current[0] == Some(tid) {
                return;
            }
            if self.k.current[0].is_some() {
                self.k.yield_current(0, &mut self.frame);
            } else {
                self.k.schedule(0, &mut self.frame);
            }
        }
        assert_eq!(self.k.current[0], Some(tid), "thread {tid} never got the CPU");
    }

    /// Makes system call `n` with `args` as the current thread; returns x0..x7 of the frame after.
    pub fn syscall(&mut self, n: u64, args: &[u64]) -> [u64; 8] {
        // As keel-rt does: unused argument registers are zero (pmo_create's x2 = 0 bills the
        // caller's own quota).
        self.frame.x[8] = n;
        self.frame.x[..8].fill(0);
        for (i, a) in args.iter().enumerate() {
            self.frame.x[i] = *a;
        }
        self.k.user_trap(0, &mut self.frame, UserTrap::Syscall);
        let mut out = [0; 8];
        out.copy_from_slice(&self.frame.x[..8]);
        out
    }

    pub fn status(r: [u64; 8]) -> Result<[u64; 8], Error> {
        let s = r[0] as i64;
        if s < 0 { Err(Error::from_code(s).unwrap()) } else { Ok(r) }
    }

    pub fn give(&mut self, pid: Id, obj: ObjRef, rights: Rights) -> u32 {
        self.k.insert_cap(pid, obj, rights).unwrap()
    }
}

#[test]
fn null_and_unknown_syscalls() {
    let mut w = World::new();
    let (_, t) = w.process("a");
    w.run(t);
    assert_eq!(w.syscall(nr::NULL, &[])[0], 0);
    assert_eq!(World::status(w.syscall(100, &[])), Err(Error::NoSys));
    assert_eq!(World::status(w.syscall(u64::MAX, &[])), Err(Error::NoSys));
}

#[test]
fn bad_slots_wrong_types_and_missing_rights_are_errors() {
    let mut w = World::new();
    let (pid, t) = w.process("a");
    w.run(t);
    assert_eq!(World::status(w.syscall(nr::CAP_INFO, &[4095])), Err(Error::BadSlot));
    assert_eq!(World::status(w.syscall(nr::CAP_INFO, &[4096])), Err(Error::BadSlot));
    assert_eq!(World::status(w.syscall(nr::CAP_INFO, &[u32::MAX as u64])), Err(Error::BadSlot));
    let n = World::status(w.syscall(nr::NOTIF_CREATE, &[])).unwrap()[1];
    assert_eq!(World::status(w.syscall(nr::PMO_WRITE, &[n, 0, 0x1000, 8])), Err(Error::WrongType));
    let p = World::status(w.syscall(nr::PMO_CREATE, &[PmoKind::Anonymous as u64, 8192])).unwrap()[1];
    let ro = World::status(w.syscall(nr::CAP_COPY, &[p, u32::MAX as u64, keel_abi::rights::READ as u64, 0])).unwrap()[1];
    assert_eq!(World::status(w.syscall(nr::PMO_WRITE, &[ro, 0, 0x1000, 8])), Err(Error::NoRights));
    assert_eq!(
        World::status(w.syscall(nr::CAP_COPY, &[ro, u32::MAX as u64, keel_abi::rights::ALL as u64, 0])),
        Err(Error::Escalation)
    );
    assert_eq!(World::status(w.syscall(nr::POWER_OFF, &[p, 0])), Err(Error::WrongType), "a PMO is not the control cap");
    assert_eq!(World::status(w.syscall(nr::POWER_OFF, &[4000, 0])), Err(Error::BadSlot));
    assert!(!crate::hal::fake::MACHINE.with(|m| m.borrow().powered_off));
    let _ = pid;
}

#[test]
fn a_contiguous_pmo_mapping_that_runs_out_of_table_frames_leaves_nothing_mapped() {
    let mut w = World::new();
    let (pid, t) = w.process("a");
    w.run(t);
    let vs = w.k.processes[&pid].vmspace;
    // 64 contiguous pages across a leaf table's boundary: at least two leaf tables.
    let p = World::status(w.syscall(nr::PMO_CREATE, &[PmoKind::Contiguous as u64, 64 * 4096])).unwrap()[1];
    let va = 0x1f_0000;
    let mut refused = 0;
    // With 0, 1, 2, ... frames left for tables, the one map call fails part of the way until it
    // has what it needs; each failure must leave no page, no region and a right page count.
    for spare in 0..8 {
        let mut held = Vec::new();
        while FRAMES.lock().free_frames() > spare {
            held.push(FRAMES.lock().alloc(1).unwrap());
        }
        let r = World::status(w.syscall(nr::VMSPACE_MAP, &[1, p, va, 64 * 4096, 0, perm::READ]));
        for pa in held {
            FRAMES.lock().free(pa, 1);
        }
        let space = &w.k.vmspaces[&vs];
        match r {
            Err(e) => {
                assert_eq!(e, Error::NoMemory, "with {spare} frames spare");
                assert_eq!(space.mapped_pages, 0, "with {spare} frames spare");
                assert!((0..64).all(|page| space.table.translate(&mut crate::object::vmspace::UserTables::new(0), va + page * 4096).is_none()));
                refused += 1;
            }
            Ok(_) => {
                assert_eq!(space.mapped_pages, 64);
                assert!(refused > 0, "the first attempt had no frame for a table, yet it mapped");
                return;
            }
        }
    }
    panic!("8 spare frames were not enough for a 64-page mapping's tables");
}

#[test]
fn pmo_write_copies_from_user_pages_into_object_pages_whole_or_not_at_all() {
    let mut w = World::new();
    let (pid, t) = w.process("a");
    w.run(t);
    // A 3-page user buffer whose bytes are their offsets (mod 251), written into through a PMO.
    let src = World::status(w.syscall(nr::PMO_CREATE, &[0, 3 * 4096])).unwrap()[1];
    let pattern: Vec<u8> = (0..3 * 4096).map(|i| (i % 251) as u8).collect();
    let src_id = match w.k.caps.get(pid, src as u32).unwrap().object { ObjRef::Pmo(id) => id, _ => unreachable!() };
    w.k.pmos.get_mut(&src_id).unwrap().write(0, &pattern).unwrap();
    World::status(w.syscall(nr::VMSPACE_MAP, &[1, src, 0x10_0000, 3 * 4096, 0, perm::READ])).unwrap();
    // The target already holds a page with data in it (page 1); pages 0 and 2 are new.
    let dst = World::status(w.syscall(nr::PMO_CREATE, &[0, 4 * 4096])).unwrap()[1];
    let dst_id = match w.k.caps.get(pid, dst as u32).unwrap().object { ObjRef::Pmo(id) => id, _ => unreachable!() };
    w.k.pmos.get_mut(&dst_id).unwrap().write(4096, &[0xee; 4096]).unwrap();
    // 6,000 bytes from an unaligned source into an unaligned offset: three pieces of the user
    // buffer, spread over three pages of the object.
    let (va, offset, len) = (0x10_0000 + 100, 3000u64, 6000u64);
    assert_eq!(World::status(w.syscall(nr::PMO_WRITE, &[dst, offset, va, len])).unwrap()[1], len);
    let mut got = vec![0u8; 4 * 4096];
    w.k.pmos.get_mut(&dst_id).unwrap().read(0, &mut got).unwrap();
    assert!(got[..3000].iter().all(|&b| b == 0), "a new page's bytes before the write are zero");
    assert_eq!(&got[3000..9000], &pattern[100..6100]);
    assert!(got[9000..].iter().all(|&b| b == 0));
    // A write of whole pages into new ones (their zeroing skipped) reads back exactly.
    assert_eq!(World::status(w.syscall(nr::PMO_WRITE, &[dst, 3 * 4096, 0x10_0000 + 4096, 4096])).unwrap()[1], 4096);
    w.k.pmos.get_mut(&dst_id).unwrap().read(3 * 4096, &mut got[..4096]).unwrap();
    assert_eq!(&got[..4096], &pattern[4096..8192]);
    // A source that runs off its mapping writes nothing and allocates nothing.
    let fresh = World::status(w.syscall(nr::PMO_CREATE, &[0, 4 * 4096])).unwrap()[1];
    let fresh_id = match w.k.caps.get(pid, fresh as u32).unwrap().object { ObjRef::Pmo(id) => id, _ => unreachable!() };
    assert_eq!(World::status(w.syscall(nr::PMO_WRITE, &[fresh, 0, 0x10_0000 + 4096, 3 * 4096])), Err(Error::BadAddress));
    assert_eq!(w.k.pmos[&fresh_id].resident_frames(), 0);
    // Past the object's end: nothing either.
    assert_eq!(World::status(w.syscall(nr::PMO_WRITE, &[fresh, 3 * 4096 + 1, 0x10_0000, 4096])), Err(Error::Invalid));
    assert_eq!(w.k.pmos[&fresh_id].resident_frames(), 0);
    assert_eq!(World::status(w.syscall(nr::PMO_WRITE, &[fresh, 0, 0x10_0000, keel_abi::MAX_COPY + 1])), Err(Error::Invalid));
}

#[test]
fn user_pointers_must_be_mapped_user_memory() {
    let mut w = World::new();
    let (_, t) = w.process("a");
    w.run(t);
    assert_eq!(World::status(w.syscall(nr::DEBUG_WRITE, &[0xffff_0000_0000_0000, 8])), Err(Error::BadAddress));
    assert_eq!(World::status(w.syscall(nr::DEBUG_WRITE, &[0x1000, 8])), Err(Error::BadAddress));
    assert_eq!(World::status(w.syscall(nr::DEBUG_WRITE, &[0x1000, 1 << 20])), Err(Error::Invalid));
    // Map a page, write text into it through a PMO, print it.
    let p = World::status(w.syscall(nr::PMO_CREATE, &[0, 4096])).unwrap()[1];
    assert_eq!(World::status(w.syscall(nr::VMSPACE_MAP, &[1, p, 0x10_0000, 4096, 0, perm::READ | perm::WRITE])).map(|_| ()), Ok(()));
    assert_eq!(World::status(w.syscall(nr::VMSPACE_MAP, &[1, p, 0x10_0000, 4096, 0, perm::READ])), Err(Error::Exists));
    assert_eq!(World::status(w.syscall(nr::VMSPACE_MAP, &[1, p, 0x20_0001, 4096, 0, perm::READ])), Err(Error::Unaligned));
    assert_eq!(
        World::status(w.syscall(nr::VMSPACE_MAP, &[1, p, 0x30_0000, 4096, 0, perm::ALL])),
        Err(Error::Invalid),
        "W+X mappings are refused"
    );
    let pid = w.k.threads[&t].pid;
    w.k.copy_to_user(pid, 0x10_0000, b"hello").unwrap();
    crate::hal::fake::MACHINE.with(|m| m.borrow_mut().console.clear());
    assert_eq!(World::status(w.syscall(nr::DEBUG_WRITE, &[0x10_0000, 5])).unwrap()[1], 5);
    assert_eq!(crate::hal::fake::MACHINE.with(|m| m.borrow().console.clone()), b"hello");
}

/// A server process blocked in recv, a client process holding a CALL cap; returns
/// (client tid, server tid, client's conn slot, server's conn slot).
fn client_server(w: &mut World) -> (Id, Id, u32, u32) {
    let (spid, st) = w.process("server");
    let (cpid, ct) = w.process("client");
    w.run(st);
    let sconn = World::status(w.syscall(nr::CONN_CREATE, &[])).unwrap()[1] as u32;
    let obj = w.k.caps.get(spid, sconn).unwrap().object;
    let cconn = w.k.caps.copy((spid, sconn), cpid, Rights::CALL.union(Rights::GRANT), Some(77)).unwrap();
    w.k.inc_ref(obj);
    // The server waits for calls: it blocks and the CPU idles or runs the client.
    w.syscall(nr::IPC_RECV, &[sconn as u64]);
    assert!(matches!(w.k.threads[&st].state, ThreadState::Blocked(_)));
    (ct, st, cconn, sconn)
}

#[test]
fn call_hands_the_cpu_to_the_server_and_reply_hands_it_back() {
    let mut w = World::new();
    let (ct, st, cconn, sconn) = client_server(&mut w);
    w.run(ct);
    w.syscall(nr::IPC_CALL, &[cconn as u64, 5, 10, 20, 30, 40, 0, CapList::EMPTY.0]);
    assert_eq!(w.k.current[0], Some(st), "the call runs the server at once");
    assert_eq!(&w.frame.x[..8], &[0, 5, 10, 20, 30, 40, 77, CapList::EMPTY.0], "label, data and badge delivered");
    // Reply and wait for the next call: the client runs again with the reply.
    w.syscall(nr::IPC_REPLY_RECV, &[sconn as u64, 6, 11, 21, 31, 41, 0, CapList::EMPTY.0]);
    assert_eq!(w.k.current[0], Some(ct));
    assert_eq!(&w.frame.x[..6], &[0, 6, 11, 21, 31, 41]);
}

#[test]
fn ipc_calls_that_fail_to_decode_change_nothing() {
    let mut w = World::new();
    let (ct, st, cconn, sconn) = client_server(&mut w);
    w.run(ct);
    let notif = World::status(w.syscall(nr::NOTIF_CREATE, &[])).unwrap()[1];
    let msg = [1, 2, 3, 4, 5, 0, CapList::EMPTY.0];
    let call = |w: &mut World, conn: u64| World::status(w.syscall(nr::IPC_CALL, &[&[conn][..], &msg[..]].concat()));
    assert_eq!(call(&mut w, notif), Err(Error::WrongType), "a notification is no connection");
    assert_eq!(call(&mut w, (1 << 32) | u64::from(cconn)), Err(Error::BadSlot));
    assert_eq!(call(&mut w, 4000), Err(Error::BadSlot));
    let no_call = World::status(w.syscall(nr::CAP_COPY, &[u64::from(cconn), u64::from(u32::MAX), keel_abi::rights::GRANT as u64, 0])).unwrap()[1];
    assert_eq!(call(&mut w, no_call), Err(Error::NoRights), "a copy without CALL cannot call");
    assert_eq!(w.k.current[0], Some(ct), "the client still runs");
    assert!(matches!(w.k.threads[&st].state, ThreadState::Blocked(_)), "the server still waits");
    // A reply_recv naming no connection to wait on fails before the reply goes anywhere.
    w.syscall(nr::IPC_CALL, &[&[u64::from(cconn)][..], &msg[..]].concat());
    assert_eq!(w.k.current[0], Some(st));
    let reply = [9, 9, 9, 9, 9, 0, CapList::EMPTY.0];
    let snotif = World::status(w.syscall(nr::NOTIF_CREATE, &[])).unwrap()[1];
    assert_eq!(World::status(w.syscall(nr::IPC_REPLY_RECV, &[&[snotif][..], &reply[..]].concat())), Err(Error::WrongType));
    assert_eq!(w.k.threads[&ct].state, ThreadState::Blocked(crate::object::thread::Block::Reply { server: st }), "the client still waits for its reply");
    assert_eq!(w.k.current[0], Some(st));
    w.syscall(nr::IPC_REPLY_RECV, &[&[u64::from(sconn)][..], &reply[..]].concat());
    assert_eq!(w.k.current[0], Some(ct), "the reply goes through once the call is right");
    assert_eq!(&w.frame.x[..6], &[0, 9, 9, 9, 9, 9]);
}

#[test]
fn caps_travel_with_a_call_only_with_grant() {
    let mut w = World::new();
    let (ct, st, cconn, sconn) = client_server(&mut w);
    w.run(ct);
    let cpid = w.k.threads[&ct].pid;
    let spid = w.k.threads[&st].pid;
    let p = World::status(w.syscall(nr::PMO_CREATE, &[0, 4096])).unwrap()[1] as u32;
    w.k.pmos.get_mut(&match w.k.caps.get(cpid, p).unwrap().object { ObjRef::Pmo(id) => id, _ => unreachable!() }).unwrap().write(0, b"bulk").unwrap();
    let no_grant = World::status(w.syscall(nr::CAP_COPY, &[p as u64, u32::MAX as u64, keel_abi::rights::READ as u64, 0])).unwrap()[1] as u32;
    let before = w.k.caps.count(spid).unwrap();
    let list = CapList::from_slots(&[no_grant]).unwrap();
    assert_eq!(World::status(w.syscall(nr::IPC_CALL, &[cconn as u64, 1, 0, 0, 0, 0, 0, list.0])), Err(Error::NoRights));
    assert_eq!(w.k.caps.count(spid).unwrap(), before, "nothing reached the server");
    let list = CapList::from_slots(&[p]).unwrap();
    w.syscall(nr::IPC_CALL, &[cconn as u64, 1, 0, 0, 0, 0, 0, list.0]);
    assert_eq!(w.k.current[0], Some(st));
    let got = CapList(w.frame.x[7]).slots().next().expect("one cap received");
    let mut buf = [0u8; 4];
    let obj = w.k.caps.get(spid, got).unwrap().object;
    let ObjRef::Pmo(id) = obj else { panic!("received {obj:?}") };
    w.k.pmos.get_mut(&id).unwrap().read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"bulk");
    let _ = sconn;
}

#[test]
fn a_server_dying_mid_call_fails_the_call_instead_of_hanging() {
    let mut w = World::new();
    let (ct, st, cconn, _) = client_server(&mut w);
    w.run(ct);
    w.syscall(nr::IPC_CALL, &[cconn as u64, 1, 0, 0, 0, 0, 0, CapList::EMPTY.0]);
    assert_eq!(w.k.current[0], Some(st));
    let spid = w.k.threads[&st].pid;
    // The server faults while handling the call.
    w.k.user_trap(0, &mut w.frame, UserTrap::Fatal { class: "test", esr: 0 });
    assert!(!w.k.processes.get(&spid).is_some_and(|p| p.state == crate::object::process::ProcState::Running));
    w.run(ct);
    assert_eq!(w.frame.x[0] as i64, Error::PeerDied.code(), "the client's call returns PeerDied");
}

#[test]
fn a_client_dying_mid_call_makes_the_reply_fail() {
    let mut w = World::new();
    let (ct, st, cconn, sconn) = client_server(&mut w);
    w.run(ct);
    w.syscall(nr::IPC_CALL, &[cconn as u64, 1, 0, 0, 0, 0, 0, CapList::EMPTY.0]);
    let cpid = w.k.threads[&ct].pid;
    w.k.exit_process(cpid, keel_abi::EXIT_KILLED);
    assert_eq!(w.k.current[0], Some(st));
    assert_eq!(World::status(w.syscall(nr::IPC_REPLY, &[0, 1, 0, 0, 0, 0, 0, CapList::EMPTY.0])), Err(Error::PeerDied));
    let _ = sconn;
}

#[test]
fn calls_queue_while_no_server_waits_and_a_dead_connection_fails_them() {
    let mut w = World::new();
    let (spid, st) = w.process("server");
    let (cpid, ct) = w.process("client");
    w.run(st);
    let sconn = World::status(w.syscall(nr::CONN_CREATE, &[])).unwrap()[1] as u32;
    let obj = w.k.caps.get(spid, sconn).unwrap().object;
    let cconn = w.k.caps.copy((spid, sconn), cpid, Rights::CALL, Some(1)).unwrap();
    w.k.inc_ref(obj);
    w.run(ct);
    w.syscall(nr::IPC_CALL, &[cconn as u64, 9, 0, 0, 0, 0, 0, CapList::EMPTY.0]);
    assert!(matches!(w.k.threads[&ct].state, ThreadState::Blocked(_)), "the client waits for a server");
    // The owner of the connection exits: the queued call fails.
    w.k.exit_process(spid, 0);
    assert_eq!(w.k.threads[&ct].state, ThreadState::Ready);
    w.run(ct);
    assert_eq!(w.frame.x[0] as i64, Error::PeerDied.code());
}

#[test]
fn a_connection_given_to_its_server_dies_with_that_server() {
    let mut w = World::new();
    let (mpid, mt) = w.process("monitor");
    let (bpid, _bt) = w.process("backend");
    w.run(mt);
    let conn = World::status(w.syscall(nr::CONN_CREATE, &[])).unwrap()[1] as u32;
    let backend = w.give(mpid, ObjRef::Process(bpid), Rights::WAIT);
    let weak = w.give(mpid, ObjRef::Process(bpid), Rights::READ);
    let call_only = World::status(w.syscall(nr::CAP_COPY, &[conn as u64, u32::MAX as u64, keel_abi::rights::CALL as u64, 0])).unwrap()[1];
    assert_eq!(World::status(w.syscall(nr::CONN_OWNER, &[call_only, backend as u64])), Err(Error::NoRights), "MANAGE on the connection");
    assert_eq!(World::status(w.syscall(nr::CONN_OWNER, &[conn as u64, weak as u64])), Err(Error::NoRights), "WAIT on the process");
    assert_eq!(World::status(w.syscall(nr::CONN_OWNER, &[conn as u64, backend as u64])).map(|_| ()), Ok(()));
    // A call waits for a server; the backend dies before serving: the call fails.
    w.syscall(nr::IPC_CALL, &[conn as u64, 9, 0, 0, 0, 0, 0, CapList::EMPTY.0]);
    assert!(matches!(w.k.threads[&mt].state, ThreadState::Blocked(_)));
    w.k.exit_process(bpid, 0);
    w.run(mt);
    assert_eq!(w.frame.x[0] as i64, Error::PeerDied.code());
    assert_eq!(World::status(w.syscall(nr::IPC_CALL, &[conn as u64, 9, 0, 0, 0, 0, 0, CapList::EMPTY.0])), Err(Error::PeerDied), "and so does every later call");
    assert_eq!(World::status(w.syscall(nr::CONN_OWNER, &[conn as u64, backend as u64])), Err(Error::PeerDied));
    // Given to a process that already exited, a connection dies at once.
    let conn2 = World::status(w.syscall(nr::CONN_CREATE, &[])).unwrap()[1];
    assert_eq!(World::status(w.syscall(nr::CONN_OWNER, &[conn2, backend as u64])).map(|_| ()), Ok(()));
    assert_eq!(World::status(w.syscall(nr::IPC_CALL, &[conn2, 9, 0, 0, 0, 0, 0, CapList::EMPTY.0])), Err(Error::PeerDied));
}

#[test]
fn unmapping_a_region_with_runs_of_entered_pages_removes_them_all_and_frees_the_tables() {
    let mut w = World::new();
    let (pid, t) = w.process("p");
    w.run(t);
    let p = World::status(w.syscall(nr::PMO_CREATE, &[0, 64 * 4096, 0, 0, 0, 0])).unwrap()[1];
    // Warm up: the first mapping and unmapping (the vmspace's own tables below the root).
    World::status(w.syscall(nr::VMSPACE_MAP, &[1, p, 0x40_0000, 4096, 0, perm::READ | perm::WRITE])).unwrap();
    w.k.copy_to_user(pid, 0x40_0000, &[1]).unwrap();
    World::status(w.syscall(nr::VMSPACE_UNMAP, &[1, 0x40_0000, 4096, 0, 0, 0])).unwrap();
    let before = FRAMES.lock().free_frames();
    // 64 pages across a leaf table's boundary (0x1f0000..0x230000), entered in three runs.
    let va = 0x1f_0000;
    World::status(w.syscall(nr::VMSPACE_MAP, &[1, p, va, 64 * 4096, 0, perm::READ | perm::WRITE])).unwrap();
    for page in (0..5).chain(9..40).chain([63]) {
        w.k.copy_to_user(pid, va + page * 4096, &[7]).unwrap();
    }
    let vs = w.k.processes[&pid].vmspace;
    assert_eq!(w.k.vmspaces[&vs].mapped_pages, 37);
    World::status(w.syscall(nr::VMSPACE_UNMAP, &[1, va, 64 * 4096, 0, 0, 0])).unwrap();
    let space = &w.k.vmspaces[&vs];
    assert_eq!(space.mapped_pages, 0);
    assert!((0..64).all(|page| space.table.translate(&mut crate::object::vmspace::UserTables::new(0), va + page * 4096).is_none()));
    // The PMO keeps the 36 data frames entered since `before` (its first page was entered by the
    // warm-up); every table the 64 pages needed is free again.
    assert_eq!(FRAMES.lock().free_frames(), before - 36, "the leaf tables are freed");
}

#[test]
fn exiting_processes_give_every_frame_back() {
    let mut w = World::new();
    // Warm up allocations that persist (e.g. the allocator's own bookkeeping).
    let (pid, t) = w.process("warm");
    w.k.exit_process(pid, 0);
    let _ = t;
    let before = FRAMES.lock().free_frames();
    for i in 0..50 {
        let (pid, t) = w.process("p");
        w.run(t);
        let p = World::status(w.syscall(nr::PMO_CREATE, &[0, 64 * 1024])).unwrap()[1];
        World::status(w.syscall(nr::VMSPACE_MAP, &[1, p, 0x10_0000, 64 * 1024, 0, perm::READ | perm::WRITE])).unwrap();
        w.k.copy_to_user(pid, 0x10_0000 + i * 100, &[1; 5000]).unwrap();
        w.k.exit_process(pid, 0);
        w.k.schedule(0, &mut w.frame);
    }
    assert_eq!(FRAMES.lock().free_frames(), before, "no frame leaked across 50 processes");
}

#[test]
fn a_kernel_heap_down_to_its_reserve_refuses_work_instead_of_panicking() {
    let mut w = World::new();
    let (pid, t) = w.process("a");
    w.run(t);
    let p = World::status(w.syscall(nr::PMO_CREATE, &[0, 64 * 1024])).unwrap()[1];
    World::status(w.syscall(nr::VMSPACE_MAP, &[1, p, 0x10_0000, 64 * 1024, 0, perm::READ | perm::WRITE])).unwrap();
    crate::hal::fake::MACHINE.with(|m| m.borrow_mut().heap_free = Some(1024));
    assert_eq!(World::status(w.syscall(nr::NOTIF_CREATE, &[])), Err(Error::NoMemory));
    assert_eq!(World::status(w.syscall(nr::PMO_CREATE, &[0, 4096])), Err(Error::NoMemory));
    assert_eq!(World::status(w.syscall(nr::CONN_CREATE, &[])), Err(Error::NoMemory));
    assert_eq!(World::status(w.syscall(nr::PROCESS_CREATE, &[0x10_0000, 1])), Err(Error::NoMemory));
    // A first touch of a page would need heap: the faulting process dies, the kernel goes on.
    w.k.user_trap(0, &mut w.frame, UserTrap::Abort { addr: 0x10_0000, access: crate::object::vmspace::Access::Write, translation: true, class: "data abort", status: "translation fault" });
    assert!(w.k.processes.get(&pid).is_none_or(|p| p.state != crate::object::process::ProcState::Running));
    crate::hal::fake::MACHINE.with(|m| m.borrow_mut().heap_free = None);
}

/// A VM with `vcpus` vCPUs and 16 MiB of RAM at 0x4000_0000, made through the system calls by the
/// current thread of `pid`; (vm slot, ram pmo slot, vcpu slots).
fn vm_setup(w: &mut World, pid: Id, vcpus: u64) -> (u64, u64, Vec<u64>) {
    use keel_abi::vm::map;
    let control = w.give(pid, ObjRef::Control, Rights::ALL);
    let vm = World::status(w.syscall(nr::VM_CREATE, &[u64::from(control), vcpus])).unwrap()[1];
    let ram = World::status(w.syscall(nr::PMO_CREATE, &[PmoKind::Anonymous as u64, 16 << 20])).unwrap()[1];
    World::status(w.syscall(nr::VM_MAP, &[vm, ram, 0x4000_0000, 16 << 20, 0, map::READ | map::WRITE | map::EXEC])).unwrap();
    World::status(w.syscall(nr::VM_MAP, &[vm, 0, 0x0900_0000, 0x1000, 0, map::MMIO])).unwrap();
    let slots = (0..vcpus).map(|i| World::status(w.syscall(nr::VCPU_CREATE, &[vm, i])).unwrap()[1]).collect();
    (vm, ram, slots)
}

#[test]
fn vm_calls_check_their_arguments() {
    use keel_abi::vm::map;
    let mut w = World::new();
    let (pid, tid) = w.process("vmm");
    w.run(tid);
    let control = w.give(pid, ObjRef::Control, Rights::ALL);
    assert_eq!(World::status(w.syscall(nr::VM_CREATE, &[u64::from(control), 0])), Err(Error::Invalid));
    assert_eq!(World::status(w.syscall(nr::VM_CREATE, &[u64::from(control), 9])), Err(Error::Invalid));
    assert_eq!(World::status(w.syscall(nr::VM_CREATE, &[1, 1])), Err(Error::WrongType)); // own vmspace
    let (vm, ram, vcpus) = vm_setup(&mut w, pid, 2);
    // Overlapping RAM, the vGIC's range, misaligned or outside the IPA space: refused.
    assert_eq!(World::status(w.syscall(nr::VM_MAP, &[vm, ram, 0x4000_0000, 4096, 0, map::READ])), Err(Error::Exists));
    assert_eq!(World::status(w.syscall(nr::VM_MAP, &[vm, ram, 0x0800_0000, 4096, 0, map::READ])), Err(Error::Exists));
    assert_eq!(World::status(w.syscall(nr::VM_MAP, &[vm, ram, 0x5000_0001, 4096, 0, map::READ])), Err(Error::Unaligned));
    assert_eq!(World::status(w.syscall(nr::VM_MAP, &[vm, ram, 1 << 52, 4096, 0, map::READ])), Err(Error::Invalid));
    assert_eq!(World::status(w.syscall(nr::VM_MAP, &[vm, ram, 0x5000_0000, 4096, 0, 0x100])), Err(Error::Invalid));
    // A vCPU index twice or out of range.
    assert_eq!(World::status(w.syscall(nr::VCPU_CREATE, &[vm, 1])), Err(Error::Exists));
    assert_eq!(World::status(w.syscall(nr::VCPU_CREATE, &[vm, 2])), Err(Error::Invalid));
    // Irq lines only for SPIs the vGIC has; a line drives its SPI, a VM cap is not a line.
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &[vm, 31, 0, 0])), Err(Error::Invalid));
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &[vm, 96, 0, 0])), Err(Error::Invalid));
    let line = World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &[vm, 33, 0, 0])).unwrap()[1];
    assert!(World::status(w.syscall(nr::VM_IRQ_LINE, &[line, 1, 0])).is_ok());
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE, &[line, 4, 0])), Err(Error::Invalid));
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE, &[line, 2, 1 << 32])), Err(Error::Invalid), "status bits past 32");
    // A status register only in an MMIO region, 4-aligned, one per address.
    for bad in [0x4000_0000, 0x0800_0000, 0x0900_0062] {
        assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &[vm, 34, bad, 0])), Err(Error::Invalid), "{bad:#x}");
    }
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE, &[vm, 1])), Err(Error::WrongType));
    assert_eq!(World::status(w.syscall(nr::VCPU_STAT, &[vcpus[0], keel_abi::vm::COUNTERS as u64])), Err(Error::Invalid));
    assert_eq!(World::status(w.syscall(nr::VCPU_INIT, &[vcpus[0], 0x4008_0000, 0, 2])), Err(Error::Invalid));
}

#[test]
fn a_vm_and_its_memory_go_when_the_monitor_exits() {
    let mut w = World::new();
    let free_before = FRAMES.lock().free_frames();
    let (pid, tid) = w.process("vmm");
    w.run(tid);
    let (_vm, _ram, _vcpus) = vm_setup(&mut w, pid, 2);
    assert_eq!(w.k.vms.len(), 1);
    assert_eq!(w.k.vcpus.len(), 2);
    w.k.exit_process(pid, 0);
    assert!(w.k.vms.is_empty() && w.k.vcpus.is_empty() && w.k.vm_irq_lines.is_empty());
    w.k.schedule(0, &mut w.frame);
    assert_eq!(FRAMES.lock().free_frames(), free_before, "frames leaked");
}

/// A monitor thread that made a VM of `vcpus` vCPUs and runs vCPU 0: now in guest mode on CPU 0,
/// its frame the guest's (entered at 0x4008_0000 with x0 = 0x4800_0000). The world, the monitor
/// thread and the vCPU caps.
fn guest_running(vcpus: u64) -> (World, Id, Vec<u64>) {
    use keel_abi::vm::VCPU_POWER_ON;
    let mut w = World::new();
    let (pid, tid) = w.process("vmm");
    w.run(tid);
    let (_vm, _ram, caps) = vm_setup(&mut w, pid, vcpus);
    World::status(w.syscall(nr::VCPU_INIT, &[caps[0], 0x4008_0000, 0x4800_0000, VCPU_POWER_ON])).unwrap();
    w.frame.x[8] = nr::VCPU_RUN;
    w.frame.x[0] = caps[0];
    w.k.user_trap(0, &mut w.frame, UserTrap::Syscall);
    (w, tid, caps)
}

#[test]
fn a_guest_yield_lets_the_next_thread_run_and_resumes_the_guest_after() {
    use crate::virt::syndrome::GuestExit;
    let (mut w, tid, _) = guest_running(1);
    let (_, other) = w.process("other");
    let pc = w.frame.pc;
    w.frame.x[0] = u64::from(crate::virt::psci::KEEL_YIELD);
    w.k.guest_trap(0, &mut w.frame, GuestExit::Hvc);
    w.k.finish_trap(0, &mut w.frame);
    assert_eq!(w.k.current[0], Some(other), "the other thread runs");
    assert!(w.k.loaded_vcpu(0).is_none(), "the guest's state is put away");
    assert_eq!(w.k.threads[&tid].state, ThreadState::Ready);
    w.syscall(nr::YIELD, &[]);
    assert_eq!(w.k.current[0], Some(tid), "the vCPU thread runs again");
    assert!(w.k.loaded_vcpu(0).is_some(), "in guest mode");
    assert_eq!((w.frame.x[0], w.frame.pc), (0, pc), "the hypercall returned SUCCESS after the hvc");
}

#[test]
fn a_guest_yield_with_nothing_else_to_run_stays_in_the_guest() {
    use crate::virt::syndrome::GuestExit;
    let (mut w, tid, _) = guest_running(1);
    let pc = w.frame.pc;
    w.frame.x[0] = u64::from(crate::virt::psci::KEEL_YIELD);
    w.k.guest_trap(0, &mut w.frame, GuestExit::Hvc);
    w.k.finish_trap(0, &mut w.frame);
    assert_eq!(w.k.current[0], Some(tid));
    assert_eq!(w.k.threads[&tid].state, ThreadState::Running(0));
    assert!(w.k.loaded_vcpu(0).is_some(), "the guest's state stays loaded");
    assert_eq!((w.frame.x[0], w.frame.pc), (0, pc), "the hypercall returned SUCCESS after the hvc");
    // A lower-priority thread does not take the CPU either; an equal one does.
    let pid = w.k.create_process("low").unwrap();
    let low = crate::sched::runqueue::SchedParams { priority: 1, ..w.k.default_params() };
    let low = w.k.create_thread(pid, 0x40_0000, 0x40_0000_0000, 0, low).unwrap();
    w.frame.x[0] = u64::from(crate::virt::psci::KEEL_YIELD);
    w.k.guest_trap(0, &mut w.frame, GuestExit::Hvc);
    w.k.finish_trap(0, &mut w.frame);
    assert_eq!(w.k.current[0], Some(tid), "thread {low} has a lower priority");
    let (_, other) = w.process("other");
    w.frame.x[0] = u64::from(crate::virt::psci::KEEL_YIELD);
    w.k.guest_trap(0, &mut w.frame, GuestExit::Hvc);
    w.k.finish_trap(0, &mut w.frame);
    assert_eq!(w.k.current[0], Some(other));
}

#[test]
fn an_ioevent_turns_a_guest_write_into_a_signal_without_an_exit() {
    use crate::virt::syndrome::{GuestExit, MmioAccess};
    use keel_abi::vm::{Counter, ExitReason, ioevent::MATCH};
    let (mut w, tid, vcpus) = guest_running(1);
    let counter = |w: &World, c: Counter| w.k.vcpus.values().next().map_or(0, |v| v.counters[c as usize]);
    let store = |reg: u8, size: u8| MmioAccess { size, write: true, reg, sign_extend: false, sixty_four: size == 8 };
    let doorbell = |size: u8| GuestExit::DataAbort { ipa: 0x0900_0050, access: Some(store(3, size)), write: true, s1ptw: false, fsc: 0 };
    // The monitor's caps: its VM and a notification for the doorbells.
    let pid = w.k.threads[&tid].pid;
    let vm_slot = (0..64).find(|&s| matches!(w.k.caps.get(pid, s).map(|c| c.object), Ok(ObjRef::Vm(_)))).expect("the VM's slot");
    let notif_id = w.k.new_id();
    w.k.notifs.insert(notif_id, crate::object::ipc::Notification::new());
    let notif = w.give(pid, ObjRef::Notif(notif_id), Rights::ALL);
    // Out of guest mode to make calls: a vendor hypercall exits to the monitor.
    w.frame.x[0] = 0xC600_0001;
    w.k.guest_trap(0, &mut w.frame, GuestExit::Hvc);
    let reg = |w: &mut World, ipa: u64, len: u64, data: Option<u64>, bits: u64| {
        let flags = len | if data.is_some() { MATCH } else { 0 };
        World::status(w.syscall(nr::VM_IOEVENT, &[u64::from(vm_slot), u64::from(notif), ipa, flags, data.unwrap_or(0), bits]))
    };
    assert_eq!(reg(&mut w, 0x0900_0050, 3, None, 1), Err(Error::Invalid), "3 bytes");
    assert_eq!(reg(&mut w, 0x0900_0052, 4, None, 1), Err(Error::Unaligned));
    assert_eq!(reg(&mut w, 0x4000_0000, 4, None, 1), Err(Error::Invalid), "guest RAM");
    assert_eq!(reg(&mut w, 0x0800_0000, 4, None, 1), Err(Error::Invalid), "the vGIC");
    assert_eq!(reg(&mut w, 0x0900_0ffc, 8, None, 1), Err(Error::Unaligned));
    assert_eq!(reg(&mut w, 0x0900_0050, 4, None, 0), Err(Error::Invalid), "no bits");
    assert_eq!(reg(&mut w, 0x0900_0050, 4 | 0x200, None, 1), Err(Error::Invalid), "an unknown flag");
    assert_eq!(reg(&mut w, 0x0900_0050, 4, Some(1 << 32), 1), Err(Error::Invalid), "a value wider than the write");
    assert_eq!(reg(&mut w, 0x0900_0051, 1, Some(0x100), 1), Err(Error::Invalid), "a value wider than one byte");
    assert_eq!(World::status(w.syscall(nr::VM_IOEVENT, &[u64::from(notif), u64::from(notif), 0x0900_0050, 4, 0, 1])), Err(Error::WrongType));
    assert_eq!(World::status(w.syscall(nr::VM_IOEVENT, &[u64::from(vm_slot), u64::from(vm_slot), 0x0900_0050, 4, 0, 1])), Err(Error::WrongType));
    let q1 = reg(&mut w, 0x0900_0050, 4, Some(1), 0b10).unwrap()[1];
    assert_eq!(reg(&mut w, 0x0900_0050, 4, Some(1), 1), Err(Error::Exists), "the same write twice");
    assert_eq!(reg(&mut w, 0x0900_0050, 4, None, 1), Err(Error::Exists), "any value overlaps value 1");
    // Back into the guest, which writes queue indices to the doorbell.
    w.syscall(nr::VCPU_RUN, &[vcpus[0], 0, 0, 0, 0]);
    assert!(w.k.loaded_vcpu(0).is_some());
    // The fast exit path finishes a matching write; it declines another value, changing nothing.
    let pc = w.frame.pc;
    w.frame.x[3] = 1;
    assert!(w.k.guest_fast_exit(0, &mut w.frame, &doorbell(4)));
    assert_eq!((w.frame.pc, w.k.notifs[&notif_id].bits), (pc + 4, 0b10));
    w.k.notifs.get_mut(&notif_id).unwrap().bits = 0;
    w.frame.x[3] = 0;
    assert!(!w.k.guest_fast_exit(0, &mut w.frame, &doorbell(4)));
    assert_eq!((w.frame.pc, w.k.notifs[&notif_id].bits), (pc + 4, 0));
    // So does the full path.
    let pc = w.frame.pc;
    w.frame.x[3] = 1;
    w.k.guest_trap(0, &mut w.frame, doorbell(4));
    assert!(w.k.loaded_vcpu(0).is_some(), "no exit to the monitor");
    assert_eq!(w.frame.pc, pc + 4, "the store is done");
    assert_eq!(w.k.notifs[&notif_id].bits, 0b10, "the doorbell signalled");
    assert_eq!((counter(&w, Counter::IoEvent), counter(&w, Counter::MmioUser)), (2, 0));
    // Another value, or another size, goes to the monitor as before.
    w.frame.x[3] = 0;
    w.k.guest_trap(0, &mut w.frame, doorbell(4));
    assert!(w.k.loaded_vcpu(0).is_none());
    assert_eq!((w.frame.x[1], w.frame.x[2], w.frame.x[4]), (ExitReason::Mmio as u64, 0x0900_0050, 0));
    assert_eq!(counter(&w, Counter::MmioUser), 1);
    // Deleting the cap unregisters it; the notification and the VM lose its references.
    World::status(w.syscall(nr::CAP_DELETE, &[q1])).unwrap();
    assert!(w.k.vms.values().all(|v| v.ioevents.is_empty()) && w.k.vm_ioevents.is_empty());
    w.syscall(nr::VCPU_RUN, &[vcpus[0], 0, 0, 0, 0]);
    w.frame.x[3] = 1;
    w.k.guest_trap(0, &mut w.frame, doorbell(4));
    assert!(w.k.loaded_vcpu(0).is_none(), "an unregistered doorbell exits");
    // The most a VM may have.
    for i in 0..keel_abi::vm::ioevent::MAX_PER_VM as u64 {
        reg(&mut w, 0x0900_0000 + 8 * i, 8, None, 1).unwrap();
    }
    assert_eq!(reg(&mut w, 0x0900_0800, 4, None, 1), Err(Error::TableFull));
}

#[test]
fn the_kernel_answers_a_backends_interrupt_status_and_its_acknowledgement() {
    use crate::virt::syndrome::{GuestExit, MmioAccess};
    use keel_abi::vm::Counter;
    let (mut w, tid, vcpus) = guest_running(1);
    let counter = |w: &World, c: Counter| w.k.vcpus.values().next().map_or(0, |v| v.counters[c as usize]);
    let access = |write: bool, size: u8| MmioAccess { size, write, reg: 5, sign_extend: false, sixty_four: false };
    let at = |ipa: u64, write: bool, size: u8| GuestExit::DataAbort { ipa, access: Some(access(write, size)), write, s1ptw: false, fsc: 0 };
    let pid = w.k.threads[&tid].pid;
    let vm_slot = (0..64).find(|&s| matches!(w.k.caps.get(pid, s).map(|c| c.object), Ok(ObjRef::Vm(_)))).expect("the VM's slot");
    w.frame.x[0] = 0xC600_0001;
    w.k.guest_trap(0, &mut w.frame, GuestExit::Hvc);
    let line = World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &[u64::from(vm_slot), 48, 0x0900_0060, 0])).unwrap()[1];
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &[u64::from(vm_slot), 49, 0x0900_0060, 0])), Err(Error::Invalid), "the same register twice");
    // The backend raises the line with USED_BUFFER.
    World::status(w.syscall(nr::VM_IRQ_LINE, &[line, 2, 1])).unwrap();
    w.syscall(nr::VCPU_RUN, &[vcpus[0], 0, 0, 0, 0]);
    // The guest reads the status (fast path), acknowledges it, reads 0: no exit to the monitor.
    let pc = w.frame.pc;
    assert!(w.k.guest_fast_exit(0, &mut w.frame, &at(0x0900_0060, false, 4)));
    assert_eq!((w.frame.x[5], w.frame.pc), (1, pc + 4));
    w.frame.x[5] = 1;
    assert!(w.k.guest_fast_exit(0, &mut w.frame, &at(0x0900_0064, true, 4)));
    w.k.guest_trap(0, &mut w.frame, at(0x0900_0060, false, 4));
    assert!(w.k.loaded_vcpu(0).is_some(), "the full path answers it too");
    assert_eq!((w.frame.x[5], w.frame.pc), (0, pc + 12));
    assert_eq!((counter(&w, Counter::MmioKernel), counter(&w, Counter::MmioUser)), (3, 0));
    // Another size, or the register beside it, goes to the monitor.
    assert!(!w.k.guest_fast_exit(0, &mut w.frame, &at(0x0900_0060, false, 2)));
    w.k.guest_trap(0, &mut w.frame, at(0x0900_0068, false, 4));
    assert!(w.k.loaded_vcpu(0).is_none());
    assert_eq!(counter(&w, Counter::MmioUser), 1);
    // A value register (a device's flags): loads of 1, 2 or 4 bytes read what the line's owner
    // set last (level 3, the line untouched); a store next to it is no acknowledge. (The
    // monitor has the CPU again after the exit above.)
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &[u64::from(vm_slot), 50, 0x0900_0018, 2])), Err(Error::Invalid), "flags 2");
    let flags = World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &[u64::from(vm_slot), 50, 0x0900_0018, 1])).unwrap()[1];
    World::status(w.syscall(nr::VM_IRQ_LINE, &[flags, 3, 0x90])).unwrap();
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE, &[flags, 4, 0])), Err(Error::Invalid));
    w.syscall(nr::VCPU_RUN, &[vcpus[0], 0, 0, 0, 0]);
    assert!(w.k.guest_fast_exit(0, &mut w.frame, &at(0x0900_0018, false, 2)));
    assert_eq!(w.frame.x[5], 0x90);
    assert!(!w.k.guest_fast_exit(0, &mut w.frame, &at(0x0900_001c, true, 4)), "no acknowledge register");
    // The line's cap goes: so does its register.
    World::status(w.syscall(nr::CAP_DELETE, &[line])).unwrap();
    World::status(w.syscall(nr::CAP_DELETE, &[flags])).unwrap();
    assert!(w.k.vms.values().all(|v| v.status_regs.is_empty()));
}

#[test]
fn the_kernel_buffers_a_transmit_register_and_hands_the_bytes_to_the_monitor_in_order() {
    use crate::virt::syndrome::{GuestExit, MmioAccess};
    use keel_abi::vm::{Counter, ExitReason, TX_BUFFER};
    let (mut w, tid, vcpus) = guest_running(1);
    let counter = |w: &World, c: Counter| w.k.vcpus.values().next().map_or(0, |v| v.counters[c as usize]);
    let store = |size: u8| MmioAccess { size, write: true, reg: 5, sign_extend: false, sixty_four: false };
    let dr = |size: u8| GuestExit::DataAbort { ipa: 0x0900_0000, access: Some(store(size)), write: true, s1ptw: false, fsc: 0 };
    let pid = w.k.threads[&tid].pid;
    let vm_slot = u64::from((0..64).find(|&s| matches!(w.k.caps.get(pid, s).map(|c| c.object), Ok(ObjRef::Vm(_)))).expect("the VM's slot"));
    // Back with the monitor (a vendor hypercall), which makes the UART's line.
    w.frame.x[0] = 0xC600_0001;
    w.k.guest_trap(0, &mut w.frame, GuestExit::Hvc);
    for (why, args) in [
        ("a transmit register needs a value register", [vm_slot, 50, 0x0900_0018, 0, 0x0900_0000]),
        ("... and a value register's IPA", [vm_slot, 50, 0, 1, 0x0900_0000]),
        ("unaligned", [vm_slot, 50, 0x0900_0018, 1, 0x0900_0002]),
        ("the value register itself", [vm_slot, 50, 0x0900_0018, 1, 0x0900_0018]),
        ("outside MMIO", [vm_slot, 50, 0x0900_0018, 1, 0x4000_0000]),
    ] {
        assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &args)), Err(Error::Invalid), "{why}");
    }
    let line = World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &[vm_slot, 50, 0x0900_0018, 1, 0x0900_0000])).unwrap()[1];
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE_CREATE, &[vm_slot, 51, 0x0900_0118, 1, 0x0900_0100])), Err(Error::Exists), "one per VM");
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE, &[line, 3, 0x90, 2])), Err(Error::Invalid), "gate 2");
    assert_eq!(World::status(w.syscall(nr::VM_IRQ_LINE, &[line, 1, 0, 1])), Err(Error::Invalid), "a gate with a level");
    // A buffer in the monitor's memory for the bytes.
    let p = World::status(w.syscall(nr::PMO_CREATE, &[0, 4096, 0, 0, 0, 0])).unwrap()[1];
    World::status(w.syscall(nr::VMSPACE_MAP, &[1, p, 0x10_0000, 4096, 0, perm::READ | perm::WRITE])).unwrap();
    w.syscall(nr::VCPU_RUN, &[vcpus[0], 0, 0, 0, 0]);
    // Closed (as made): a store exits as before.
    w.frame.x[5] = u64::from(b'a');
    assert!(!w.k.guest_fast_exit(0, &mut w.frame, &dr(4)), "closed");
    w.k.guest_trap(0, &mut w.frame, dr(4));
    assert_eq!((w.frame.x[1], w.frame.x[4], w.frame.x[5]), (ExitReason::Mmio as u64, u64::from(b'a'), 0));
    // Open: "hi" stays in the kernel (fast path and full path), the newline exits with the
    // count, and the monitor takes the bytes oldest first.
    World::status(w.syscall(nr::VM_IRQ_LINE, &[line, 3, 0x90, 1])).unwrap();
    w.syscall(nr::VCPU_RUN, &[vcpus[0], 0, 0, 0, 0]);
    let pc = w.frame.pc;
    w.frame.x[5] = 0xFF00 | u64::from(b'h');
    assert!(w.k.guest_fast_exit(0, &mut w.frame, &dr(2)));
    w.frame.x[5] = u64::from(b'i');
    w.k.guest_trap(0, &mut w.frame, dr(1));
    assert!(w.k.loaded_vcpu(0).is_some(), "the full path buffers too");
    assert_eq!(w.frame.pc, pc + 8);
    w.frame.x[5] = u64::from(b'\n');
    assert!(!w.k.guest_fast_exit(0, &mut w.frame, &dr(4)), "a newline exits");
    w.k.guest_trap(0, &mut w.frame, dr(4));
    assert_eq!((w.frame.x[1], w.frame.x[4], w.frame.x[5]), (ExitReason::Mmio as u64, u64::from(b'\n'), 2));
    assert_eq!(World::status(w.syscall(nr::VM_TX_TAKE, &[line, 0x10_0000, 0])), Err(Error::Invalid), "no room");
    assert_eq!(World::status(w.syscall(nr::VM_TX_TAKE, &[line, 0x7000_0000, 1])), Err(Error::BadAddress));
    assert_eq!(World::status(w.syscall(nr::VM_TX_TAKE, &[line, 0x10_0000, 1])).unwrap()[1], 1);
    assert_eq!(World::status(w.syscall(nr::VM_TX_TAKE, &[line, 0x10_0001, 64])).unwrap()[1], 1);
    assert_eq!(World::status(w.syscall(nr::VM_TX_TAKE, &[line, 0x10_0002, 64])).unwrap()[1], 0);
    assert_eq!(w.k.copy_from_user(pid, 0x10_0000, 2).unwrap(), b"hi");
    assert_eq!((counter(&w, Counter::MmioKernel), counter(&w, Counter::MmioUser)), (2, 2));
    // Full: the store that finds no room exits.
    w.syscall(nr::VCPU_RUN, &[vcpus[0], 0, 0, 0, 0]);
    for i in 0..TX_BUFFER {
        w.frame.x[5] = 0x20 + (i % 64) as u64;
        assert!(w.k.guest_fast_exit(0, &mut w.frame, &dr(1)));
    }
    assert!(!w.k.guest_fast_exit(0, &mut w.frame, &dr(1)), "full");
    // A guest that waits (WFI) with bytes buffered goes back to the monitor first, so does one an
    // interrupt takes out of the guest.
    w.k.guest_trap(0, &mut w.frame, GuestExit::Wfi);
    assert_eq!((w.frame.x[1], w.frame.x[2]), (ExitReason::Transmit as u64, TX_BUFFER as u64));
    assert_eq!(World::status(w.syscall(nr::VM_TX_TAKE, &[line, 0x10_0000, 256])).unwrap()[1], TX_BUFFER as u64);
    w.syscall(nr::VCPU_RUN, &[vcpus[0], 0, 0, 0, 0]);
    w.k.guest_interrupted(0, &mut w.frame);
    assert!(w.k.loaded_vcpu(0).is_some(), "nothing buffered: the guest stays");
    w.frame.x[5] = u64::from(b'$');
    assert!(w.k.guest_fast_exit(0, &mut w.frame, &dr(4)));
    w.k.guest_interrupted(0, &mut w.frame);
    assert_eq!((w.frame.x[1], w.frame.x[2]), (ExitReason::Transmit as u64, 1));
    // Only the line's holder takes the bytes; deleting the line removes the buffer.
    assert_eq!(World::status(w.syscall(nr::VM_TX_TAKE, &[vm_slot, 0x10_0000, 1])), Err(Error::WrongType));
    World::status(w.syscall(nr::CAP_DELETE, &[line, 0, 0, 0, 0])).unwrap();
    assert!(w.k.vms.values().all(|v| v.tx.is_none() && v.status_regs.is_empty()));
}

#[test]
fn vcpu_run_enters_the_guest_and_a_vendor_hypercall_returns_to_the_monitor() {
    use crate::virt::syndrome::GuestExit;
    use keel_abi::vm::ExitReason;
    let (mut w, tid, vcpus) = guest_running(1);
    // The frame now holds the guest, entered per the boot protocol.
    assert_eq!(w.frame.pc, 0x4008_0000);
    assert_eq!(w.frame.x[0], 0x4800_0000);
    assert_eq!(w.frame.pstate, 0x3c5);
    assert!(w.k.loaded_vcpu(0).is_some());
    // PSCI_VERSION is answered in the kernel; the guest keeps running.
    w.frame.x[0] = 0x8400_0000;
    w.k.guest_trap(0, &mut w.frame, GuestExit::Hvc);
    assert_eq!(w.frame.x[0], 0x1_0001);
    assert!(w.k.loaded_vcpu(0).is_some());
    // A vendor hypercall goes back to the monitor with the guest's x0..x3.
    w.frame.x[0] = 0xC600_0001;
    w.frame.x[1] = 0x1234;
    w.k.guest_trap(0, &mut w.frame, GuestExit::Hvc);
    assert!(w.k.loaded_vcpu(0).is_none());
    assert_eq!(w.frame.x[0], 0);
    assert_eq!(w.frame.x[1], ExitReason::Hypercall as u64);
    assert_eq!((w.frame.x[2], w.frame.x[3]), (0xC600_0001, 0x1234));
    // Its answer reaches the guest's x0 at the next run, and the thread is in guest mode again.
    let r = w.syscall(nr::VCPU_RUN, &[vcpus[0], 0x1235, 0x1234, 0, 0]);
    assert_eq!(r[0], 0x1235, "the guest's x0 is the monitor's answer");
    assert!(w.k.vcpus.values().all(|v| v.runner == Some(tid)));
}

#[test]
fn the_fast_exit_path_answers_queries_and_vgic_reads_and_declines_everything_else() {
    use crate::virt::syndrome::{GuestExit, MmioAccess};
    use keel_abi::vm::Counter;
    let (mut w, _tid, _vcpus) = guest_running(2);
    let vcpu = w.k.loaded_vcpu(0).expect("the guest is loaded");
    let counter = |w: &World, c: Counter| w.k.vcpus[&vcpu].counters[c as usize];
    let pc = w.frame.pc;
    // PSCI_VERSION over hvc and an unknown SMCCC call over smc: answered, the guest stays.
    w.frame.x[0] = 0x8400_0000;
    assert!(w.k.guest_fast_exit(0, &mut w.frame, &GuestExit::Hvc));
    assert_eq!((w.frame.x[0], w.frame.pc), (0x1_0001, pc));
    w.frame.x[0] = 0x8200_ff00;
    assert!(w.k.guest_fast_exit(0, &mut w.frame, &GuestExit::Smc));
    assert_eq!((w.frame.x[0] as i64, w.frame.pc), (-1, pc + 4), "NOT_SUPPORTED, and the smc is skipped");
    assert_eq!((counter(&w, Counter::Hvc), counter(&w, Counter::Smc), counter(&w, Counter::Psci)), (1, 1, 1));
    // Calls that change something take the full path: CPU_ON, SYSTEM_OFF, a vendor call.
    for id in [0xC400_0003u64, 0x8400_0008, 0xC600_0001] {
        w.frame.x[0] = id;
        assert!(!w.k.guest_fast_exit(0, &mut w.frame, &GuestExit::Hvc), "call {id:#x} taken on the fast path");
        assert_eq!(w.frame.x[0], id, "a declined call changed x0");
    }
    // A GICD_TYPER read: answered from the vGIC, the load skipped.
    let read = |reg: u8| MmioAccess { size: 4, write: false, reg, sign_extend: false, sixty_four: false };
    let typer = GuestExit::DataAbort { ipa: 0x0800_0004, access: Some(read(5)), write: false, s1ptw: false, fsc: 0 };
    let pc = w.frame.pc;
    assert!(w.k.guest_fast_exit(0, &mut w.frame, &typer));
    assert_eq!(w.frame.pc, pc + 4);
    assert_ne!(w.frame.x[5], 0, "GICD_TYPER reads as zero");
    // Writes, MMIO outside the vGIC and RAM faults are not for the fast path.
    let write = GuestExit::DataAbort { ipa: 0x0800_0000, access: Some(MmioAccess { write: true, ..read(5) }), write: true, s1ptw: false, fsc: 0 };
    let uart = GuestExit::DataAbort { ipa: 0x0900_0018, access: Some(read(5)), write: false, s1ptw: false, fsc: 0 };
    let ram = GuestExit::DataAbort { ipa: 0x4000_1000, access: None, write: false, s1ptw: false, fsc: 0x07 };
    for exit in [write, uart, ram, GuestExit::Wfi] {
        assert!(!w.k.guest_fast_exit(0, &mut w.frame, &exit), "{exit:?} taken on the fast path");
    }
    // Nothing is taken while a reschedule or a kick waits, or a passed-through PPI is held.
    w.frame.x[0] = 0x8400_0000;
    w.k.cpus[0].need_resched = true;
    assert!(!w.k.guest_fast_exit(0, &mut w.frame, &GuestExit::Hvc));
    w.k.cpus[0].need_resched = false;
    w.k.vcpus.get_mut(&vcpu).unwrap().kick = true;
    assert!(!w.k.guest_fast_exit(0, &mut w.frame, &GuestExit::Hvc));
    w.k.vcpus.get_mut(&vcpu).unwrap().kick = false;
    w.k.vcpus.get_mut(&vcpu).unwrap().held_ppis = 1 << 27;
    assert!(!w.k.guest_fast_exit(0, &mut w.frame, &GuestExit::Hvc));
    w.k.vcpus.get_mut(&vcpu).unwrap().held_ppis = 0;
    assert!(w.k.guest_fast_exit(0, &mut w.frame, &GuestExit::Hvc));
}

#[test]
fn a_sleeper_arms_the_timer_for_its_deadline_and_wakes_between_ticks() {
    let mut w = World::new();
    let (_, t) = w.process("a");
    w.run(t);
    let set_now = |now: u64| crate::hal::fake::MACHINE.with(|m| m.borrow_mut().now = now);
    set_now(1_000);
    crate::hal::fake::MACHINE.with(|m| m.borrow_mut().wake_by.clear());
    w.syscall(nr::SLEEP, &[5_000_000]);
    let deadline = 1_000 + 5_000_000;
    assert!(matches!(w.k.threads[&t].state, ThreadState::Blocked(_)), "sleep did not block");
    assert_eq!(crate::hal::fake::MACHINE.with(|m| m.borrow().wake_by.clone()), [deadline], "the timer was not armed for the deadline");
    assert_eq!(w.k.next_deadline(0), Some(deadline));
    // An early interrupt (not a tick) before the deadline wakes no one.
    w.k.timer_fired(0, deadline - 1, false);
    assert!(matches!(w.k.threads[&t].state, ThreadState::Blocked(_)), "woken before its deadline");
    // One at the deadline wakes it, without waiting for the next tick.
    w.k.timer_fired(0, deadline, false);
    assert_eq!(w.k.threads[&t].state, ThreadState::Ready, "not woken at its deadline");
    assert_eq!(w.k.next_deadline(0), None, "the sleeper is still listed");
}

#[test]
fn a_vcpu_woken_at_its_timer_deadline_enters_with_the_timer_line_raised() {
    use crate::hal::{TIMER_ENABLE, TIMER_IMASK};
    use crate::object::thread::Block;
    use crate::virt::syndrome::GuestExit;
    use keel_abi::vm::Counter;
    for (ctl, raised) in [(TIMER_ENABLE, true), (TIMER_ENABLE | TIMER_IMASK, false), (0, false)] {
        let (mut w, tid, _vcpus) = guest_running(1);
        let vcpu = w.k.loaded_vcpu(0).expect("the guest is loaded");
        // WFI with no timer armed in the (fake) CPU: the vCPU blocks and is saved.
        w.k.guest_trap(0, &mut w.frame, GuestExit::Wfi);
        assert!(matches!(w.k.threads[&tid].state, ThreadState::Blocked(Block::GuestWfi { .. })));
        let cntvoff = w.k.vms[&w.k.vcpus[&vcpu].vm].cntvoff;
        let v = w.k.vcpus.get_mut(&vcpu).unwrap();
        (v.ctx.cntv_ctl, v.ctx.cntv_cval) = (ctl, 5_000);
        let deadline = 5_000 + cntvoff;
        w.k.add_sleeper(tid, deadline);
        w.k.timer_fired(0, deadline, false);
        assert_eq!(w.k.threads[&tid].state, ThreadState::Ready, "ctl {ctl:#x}: not woken at the deadline");
        let v = &w.k.vcpus[&vcpu];
        assert_eq!(v.held_ppis & (1 << 27) != 0, raised, "ctl {ctl:#x}: virtual timer line held");
        assert_eq!(v.counters[Counter::Timer as usize], u64::from(raised), "ctl {ctl:#x}: timer interrupts counted");
    }
}
