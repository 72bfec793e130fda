//! The running init: start services, supervise them, serve the process-manager protocol.

use crate::access::{self, KillRefused, Lineage};
use crate::pidns::{self, NsId, PidNamespaces};
use crate::policy::{next_delay_ms, should_restart};
use crate::request::{parse_initrd_arg, parse_spawn, program_name, ps_line};
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use keel_formats::cpio::{Archive, Index};
use keel_formats::manifest::{self, Restart};
use keel_rt::abi::{Error, Slot, rights, slots};
use keel_rt::ipc::{Reply, Request};
use keel_rt::process::{Grant, Sched, Source, spawn_in};
use keel_rt::proto::procmgr;
use keel_rt::startup::Startup;
use keel_rt::sync::Mutex;
use keel_rt::{println, sys, thread, vm};

/// The exit-notification bit of programs started by SPAWN (services use bits 0..63 by index).
const CHILD_EXITED: u64 = 1 << 63;
/// QEMU virt's PL031 real-time clock (one page of registers).
const PL031_BASE: u64 = 0x0901_0000;
const PL031_SIZE: u64 = 0x1000;
/// Services the manifest may list (one exit bit each, below CHILD_EXITED).
const MAX_SERVICES: usize = 63;

/// A service from the manifest.
struct Service {
    name: String,
    path: String,
    args: Vec<String>,
    restart: Restart,
    sched: Sched,
    delay_ms: u64,
    started_at: u64,
    /// Times it was started before (namesrv learns its generation from this).
    starts: u64,
    /// What it asked init to keep for its next start (STATE_SAVE).
    saved: Vec<u8>,
    /// The procmgr badge of its running instance, set before it starts (so its first call is
    /// recognised even before its process record exists).
    badge: Option<u64>,
}

/// A process init started.
struct Proc {
    pid: u64,
    name: String,
    cap: Slot,
    service: Option<usize>,
    /// The badge of its capability to procmgr: who is calling, and its rights bits
    /// ([`access`]).
    badge: u64,
    /// The badge of the process that SPAWNed it (None: init started it).
    parent: Option<u64>,
}

struct State {
    procs: Vec<Proc>,
    services: Vec<Service>,
    next_badge: u64,
    /// Copies of namesrv's registrations (name, connection), for a restarted namesrv.
    names: Vec<(String, Slot)>,
    /// The badge of the running namesrv's calls (set before it starts, so its first call is
    /// recognised even before its process record exists).
    namesrv_badge: Option<u64>,
    /// Pid namespaces: which processes each caller sees, and by which numbers.
    pidns: PidNamespaces,
}

impl State {
    /// The pid namespace of the caller with `badge` (the root for init's own and services').
    fn ns_of_caller(&self, badge: u64) -> NsId {
        self.procs.iter().find(|p| p.badge == badge).map_or(pidns::ROOT, |p| self.pidns.ns_of(p.pid))
    }

    /// The kernel pid of the process the caller with `badge` numbers `pid` (None: it cannot see
    /// one by that number).
    fn global_pid(&self, badge: u64, pid: u64) -> Option<u64> {
        self.pidns.global(self.ns_of_caller(badge), pid)
    }

    /// Whether `badge` is the name service's (only it may save and restore registrations).
    fn is_namesrv(&self, badge: u64) -> bool {
        self.namesrv_badge == Some(badge)
    }
}

/// What every spawn needs.
struct Env {
    /// The initrd's files, walked once at start-up (a spawn looks its program up here).
    archive: Index<'static>,
    procmgr: Slot,
    namesrv: Slot,
    control: Slot,
    uart_arg: String,
    exits: Slot,
    /// The initrd (read-only) and its `initrd=<offset>:<size>` argument, for the VM monitor.
    /// Programs' read-only segments are mapped from it (`initrd_base`: where init maps it).
    initrd: Slot,
    initrd_base: usize,
    initrd_arg: String,
    /// The real-time clock's registers (read-only), for the file service's timestamps.
    rtc: Option<Slot>,
    /// The root of the quota tree (the kernel gives it to init), for resmgr.
    quota: Option<Slot>,
    /// resmgr's connection: it serves it; the shell, ktest and fs call it.
    resmgr: Option<Slot>,
}

fn fail(msg: core::fmt::Arguments) -> i32 {
    println!("init: {msg}");
    1
}

pub fn main(startup: &Startup) -> i32 {
    let (Some(control), Some(initrd)) = (startup.cap("control"), startup.cap("initrd")) else {
        return fail(format_args!("started without the control and initrd capabilities"));
    };
    let Some((offset, size)) = startup.arg_value("initrd").and_then(parse_initrd_arg) else {
        return fail(format_args!("no usable initrd=<offset>:<size> argument"));
    };
    let initrd_bytes = match vm::map_readonly(initrd, offset + size) {
        Ok(b) => b,
        Err(e) => return fail(format_args!("cannot map the initrd: {e}")),
    };
    let archive = match Archive::new(&initrd_bytes[offset as usize..]).and_then(|a| a.index()) {
        Ok(index) => index,
        Err(e) => return fail(format_args!("the initrd is not a valid archive: {e}")),
    };
    let manifest_text = archive.find("etc/manifest").map_or("", |e| core::str::from_utf8(e.data).unwrap_or(""));
    let specs = match manifest::parse(manifest_text) {
        Ok(s) => s,
        Err(e) => return fail(format_args!("etc/manifest: {e}")),
    };
    let scenario = startup.arg_value("scenario").map(String::from);
    let services: Vec<Service> = specs
        .iter()
        .filter(|s| scenario.is_none() || s.name != "shell")
        .take(MAX_SERVICES)
        .map(|s| Service {
            name: s.name.to_string(),
            path: s.path.to_string(),
            args: s.args.clone(),
            restart: s.restart,
            sched: Sched { priority: s.priority, affinity: s.cpu.map_or(0, |c| 1u64 << c) },
            delay_ms: 0,
            started_at: 0,
            starts: 0,
            saved: Vec::new(),
            badge: None,
        })
        .collect();
    let (Ok(procmgr_conn), Ok(namesrv_conn), Ok(exits)) = (sys::conn_create(), sys::conn_create(), sys::notif_create()) else {
        return fail(format_args!("cannot create its connections"));
    };
    // The cgroup service's connection: made and kept here, so only the programs given it below
    // may change limits, and a restarted resmgr serves the same one.
    let resmgr_conn = sys::conn_create().ok();
    let env = Arc::new(Env {
        archive,
        procmgr: procmgr_conn,
        namesrv: namesrv_conn,
        control,
        uart_arg: startup.args.iter().find(|a| a.starts_with("uart=")).cloned().unwrap_or_default(),
        exits,
        initrd,
        initrd_base: initrd_bytes.as_ptr() as usize,
        initrd_arg: alloc::format!("initrd={offset:#x}:{size:#x}"),
        rtc: sys::device_pmo(control, PL031_BASE, PL031_SIZE).ok(),
        quota: startup.cap("quota"),
        resmgr: resmgr_conn,
    });
    // init's own file calls (the shutdown before power-off) find the file service through here.
    keel_rt::fs::set_namesrv(Some(env.namesrv));
    let state = Arc::new(Mutex::new(State { procs: Vec::new(), services, next_badge: 1, names: Vec::new(), namesrv_badge: None, pidns: PidNamespaces::new() }));

    {
        let (env, state) = (env.clone(), state.clone());
        if thread::spawn_with(50, 0, move || keel_rt::ipc::serve(env.procmgr, |req| handle(&env, &state, req))).is_err() {
            return fail(format_args!("cannot start its server thread"));
        }
    }
    let count = state.lock().services.len();
    for i in 0..count {
        start_service(&env, &state, i);
    }
    match scenario {
        None => supervise(&env, &state),
        Some(name) => {
            {
                let (env, state) = (env.clone(), state.clone());
                let _ = thread::spawn_with(50, 0, move || supervise(&env, &state));
            }
            run_scenario(&env, &state, &name)
        }
    }
}

/// Powers off (or resets) after the file service has written back and unmounted its disks.
fn power_off(env: &Env, state: &Mutex<State>, reset: bool) -> Result<(), Error> {
    if let Err(e) = shutdown_fs(state) {
        println!("init: the file service did not shut down cleanly: {e}");
    }
    sys::power_off(env.control, reset)
}

/// Sends SHUTDOWN to the file service, found in init's own copy of the registrations, so it
/// works whether namesrv is running or not (its restart waits for this thread, which serves
/// procmgr). While fs itself is restarting (its registration is a dead connection), waits
/// with a bounded back-off for it to register again.
fn shutdown_fs(state: &Mutex<State>) -> Result<(), keel_rt::errno::Errno> {
    use keel_rt::errno::Errno;
    let mut last = Errno::NoSys;
    for pause in core::iter::once(0).chain(keel_rt::reconnect::Backoff::RESTART.pauses()) {
        sys::sleep_ns(pause);
        let conn = state.lock().names.iter().find(|(n, _)| n == "fs").map(|&(_, c)| c);
        let Some(conn) = conn else {
            last = Errno::NoSys;
            continue;
        };
        let Ok(copy) = sys::cap_copy(conn, None, rights::CALL, keel_rt::proto::fs::SHUTDOWN_BADGE) else { return Err(Errno::NoMem) };
        let r = keel_rt::ipc::Client::new(copy).call(keel_rt::proto::fs::SHUTDOWN, [0; 4]);
        let _ = sys::cap_delete(copy);
        match r {
            Ok(r) => return keel_rt::proto::errno_status(&r).map(|_| ()),
            Err(Error::PeerDied) => last = Errno::ConnReset,
            Err(_) => return Err(Errno::Io),
        }
    }
    Err(last)
}

/// Runs `/bin/ktest <scenario>`, reports its exit and powers off.
fn run_scenario(env: &Env, state: &Mutex<State>, name: &str) -> ! {
    let args = [String::from(name)];
    let code = match start(env, state, "/bin/ktest", &args, None, Sched::default(), None, true, slots::SELF_PROCESS) {
        Ok((_, cap)) => sys::process_wait(cap).unwrap_or(-1),
        Err(e) => {
            println!("init: cannot start /bin/ktest: {e}");
            -1
        }
    };
    println!("init: scenario {name} finished with code {code}");
    let _ = power_off(env, state, false);
    sys::process_exit(code)
}

fn start_service(env: &Env, state: &Mutex<State>, index: usize) {
    let (path, mut args, sched, name, starts) = {
        let mut st = state.lock();
        let s = &mut st.services[index];
        s.started_at = sys::counter();
        s.starts += 1;
        (s.path.clone(), s.args.clone(), s.sched, s.name.clone(), s.starts - 1)
    };
    if program_name(&path) == "namesrv" {
        args.insert(0, alloc::format!("generation={starts}"));
    }
    match start(env, state, &path, &args, Some(index), sched, None, true, slots::SELF_PROCESS) {
        Ok((pid, cap)) => {
            if let Err(e) = sys::process_watch(cap, env.exits, 1 << index) {
                println!("init: cannot watch {name} (pid {pid}): {e}");
            }
            let _ = sys::cap_delete(cap);
        }
        Err(e) => println!("init: cannot start service {name} ({path}): {e}"),
    }
}

/// Spawns a program from the initrd with the standard capabilities; (pid, our process cap).
/// `spawner`: the badge of the process that asked (None: init itself); `privileged`: whether the
/// program gets the capabilities and rights its name calls for (init's own starts, and SPAWNs
/// by an [`access::ADMIN`] caller that did not ask for none).
fn start(
    env: &Env,
    state: &Mutex<State>,
    path: &str,
    args: &[String],
    service: Option<usize>,
    sched: Sched,
    spawner: Option<u64>,
    privileged: bool,
    quota: Slot,
) -> Result<(u64, Slot), Error> {
    let name = program_name(path);
    let elf = env.archive.find(path).ok_or(Error::NotFound)?.data;
    let id = {
        let mut st = state.lock();
        st.next_badge += 1;
        if name == "namesrv" && service.is_some() {
            st.namesrv_badge = Some(st.next_badge);
        }
        st.next_badge
    };
    let badge = id | if privileged { access::program_rights(name) } else { 0 };
    if let Some(index) = service {
        state.lock().services[index].badge = Some(badge);
    }
    let call = rights::CALL | rights::GRANT;
    let mut grants = alloc::vec![
        Grant { slot: env.procmgr, rights: call, badge, name: "procmgr" },
        Grant { slot: env.namesrv, rights: call, badge: id, name: "namesrv" },
    ];
    let mut argv: Vec<&str> = alloc::vec![name];
    match name {
        // An unprivileged program gets the two capabilities above and nothing else.
        _ if !privileged => {}
        "namesrv" => grants.push(Grant { slot: env.namesrv, rights: rights::ALL, badge: 0, name: "serve" }),
        "console" => {
            grants.push(Grant { slot: env.control, rights: rights::ALL, badge: 0, name: "control" });
            argv.push(env.uart_arg.as_str());
        }
        "ktest" => {
            grants.push(Grant { slot: env.control, rights: rights::ALL, badge: 0, name: "control" });
            if let Some(quota) = env.quota {
                grants.push(Grant { slot: quota, rights: rights::ALL, badge: 0, name: "quota" });
            }
            if let Some(conn) = env.resmgr {
                grants.push(Grant { slot: conn, rights: call, badge: id, name: "resmgr" });
            }
        }
        "shell" => {
            if let Some(conn) = env.resmgr {
                grants.push(Grant { slot: conn, rights: call, badge: id, name: "resmgr" });
            }
        }
        // The cgroup service keeps the quota tree below the root init was given.
        "resmgr" => {
            if let (Some(quota), Some(conn)) = (env.quota, env.resmgr) {
                grants.push(Grant { slot: quota, rights: rights::ALL, badge: 0, name: "quota" });
                grants.push(Grant { slot: conn, rights: rights::ALL, badge: 0, name: "serve" });
            }
        }
        // The block driver maps its device's registers, claims its interrupt and does DMA.
        "blk" => grants.push(Grant { slot: env.control, rights: rights::ALL, badge: 0, name: "control" }),
        // So does the network driver (the uplink of a virtual switch).
        "nic" => grants.push(Grant { slot: env.control, rights: rights::ALL, badge: 0, name: "control" }),
        // The file service copies the initrd's files into its root tmpfs and reads the clock.
        "fs" => {
            grants.push(Grant { slot: env.initrd, rights: rights::READ | rights::MAP, badge: 0, name: "initrd" });
            if let Some(rtc) = env.rtc {
                grants.push(Grant { slot: rtc, rights: rights::READ | rights::MAP, badge: 0, name: "rtc" });
            }
            // /sys/fs/cgroup forwards to resmgr (which never calls fs).
            if let Some(conn) = env.resmgr {
                grants.push(Grant { slot: conn, rights: call, badge: id, name: "resmgr" });
            }
            argv.push(env.initrd_arg.as_str());
        }
        // The monitor creates VMs (control) and reads guest images from the initrd.
        "vmm" => {
            grants.push(Grant { slot: env.control, rights: rights::ALL, badge: 0, name: "control" });
            grants.push(Grant { slot: env.initrd, rights: rights::READ | rights::MAP, badge: 0, name: "initrd" });
            argv.push(env.initrd_arg.as_str());
            // For `vm run --cgroup`: the group's quota, to charge the VM to.
            if let Some(conn) = env.resmgr {
                grants.push(Grant { slot: conn, rights: call, badge: id, name: "resmgr" });
            }
        }
        _ => {}
    }
    argv.extend(args.iter().map(String::as_str));
    let source = Source { pmo: env.initrd, offset: (elf.as_ptr() as usize - env.initrd_base) as u64 };
    let child = spawn_in(quota, name, elf, Some(source), &argv, &grants, sched)?;
    // The caller's own capability, made before the record is visible: once it is, the pruning
    // of exited children may delete the record's capability at any moment (a child that exits
    // at once would otherwise leave the caller an empty slot: BadSlot).
    let own = match sys::cap_copy(child.process, None, rights::ALL, 0) {
        Ok(own) => own,
        Err(e) => {
            let _ = sys::process_kill(child.process);
            let _ = sys::cap_delete(child.process);
            return Err(e);
        }
    };
    state.lock().procs.push(Proc { pid: child.pid, name: name.to_string(), cap: child.process, service, badge, parent: spawner });
    Ok((child.pid, own))
}

/// Waits for services to exit and restarts them per policy. Never returns.
fn supervise(env: &Env, state: &Mutex<State>) -> ! {
    loop {
        let Ok(bits) = sys::notif_wait(env.exits, 0) else { continue };
        if bits & CHILD_EXITED != 0 {
            forget_exited_children(state);
        }
        for index in (0..MAX_SERVICES).filter(|i| bits & (1 << i) != 0) {
            let (name, pid, code, restart, delay) = {
                let mut st = state.lock();
                let Some(pos) = st.procs.iter().position(|p| p.service == Some(index)) else { continue };
                let p = st.procs.remove(pos);
                let code = sys::process_info(p.cap).map_or(-1, |i| i.exit_code);
                let _ = sys::cap_delete(p.cap);
                let s = &mut st.services[index];
                let ran_ms = sys::counter().saturating_sub(s.started_at) * 1000 / sys::counter_freq();
                s.delay_ms = next_delay_ms(s.delay_ms, ran_ms);
                (s.name.clone(), p.pid, code, s.restart, s.delay_ms)
            };
            if should_restart(restart, code) {
                println!("init: service {name} (pid {pid}) exited with code {code}; restarting it in {delay} ms");
                sys::sleep_ns(delay * 1_000_000);
                start_service(env, state, index);
            } else {
                println!("init: service {name} (pid {pid}) exited with code {code}");
            }
        }
    }
}

/// Drops init's record and capability of every SPAWNed program that has exited (whoever spawned it
/// holds its own capability to read the exit code).
/// A namespace whose pid 1 exited loses the rest of its processes (killed here; their own exits
/// come back through this function).
fn forget_exited_children(state: &Mutex<State>) {
    let mut st = state.lock();
    let mut ended = Vec::new();
    st.procs.retain(|p| {
        if p.service.is_some() || sys::process_info(p.cap).is_ok_and(|i| i.running) {
            return true;
        }
        let _ = sys::cap_delete(p.cap);
        ended.push(p.pid);
        false
    });
    for pid in ended {
        for victim in st.pidns.leave(pid) {
            if let Some(p) = st.procs.iter().find(|p| p.pid == victim) {
                let _ = sys::process_kill(p.cap);
            }
        }
    }
}

fn handle(env: &Env, state: &Mutex<State>, req: &mut Request) -> Reply {
    match req.msg.label {
        procmgr::SPAWN => {
            let given = req.caps;
            let drop_given = || {
                for c in given.slots() {
                    let _ = sys::cap_delete(c);
                }
            };
            let r = match parse_spawn(req.payload()) {
                Ok(r) if given.slots().nth(1).is_none() => r,
                _ => {
                    drop_given();
                    return Reply::err(Error::Invalid);
                }
            };
            // The child's quota: the one the caller gave, else the caller's own (a child starts
            // in its parent's group, as in cgroups), else init's.
            let quota = given.slots().next().unwrap_or_else(|| {
                let st = state.lock();
                st.procs.iter().find(|p| p.badge == req.badge).map_or(slots::SELF_PROCESS, |p| p.cap)
            });
            let privileged = access::spawn_privileged(req.badge, req.msg.data[0] & procmgr::SPAWN_UNPRIVILEGED != 0);
            let started = start(env, state, &r.path, &r.args, None, Sched::default(), Some(req.badge), privileged, quota);
            drop_given();
            // Its pid namespace: the spawner's, or a new one below it whose pid 1 it is. (This
            // one thread serves procmgr, so the child's first call comes after this.)
            let entered = started.and_then(|(pid, cap)| {
                let mut st = state.lock();
                let ns = st.ns_of_caller(req.badge);
                match st.pidns.enter(ns, req.msg.data[0] & procmgr::SPAWN_NEW_PID_NS != 0, pid) {
                    Ok(_) => Ok((st.pidns.local(ns, pid).unwrap_or(pid), cap)),
                    Err(e) => {
                        let _ = sys::process_kill(cap);
                        let _ = sys::cap_delete(cap);
                        Err(e)
                    }
                }
            });
            match entered {
                Ok((pid, cap)) => {
                    let copy = sys::process_watch(cap, env.exits, CHILD_EXITED)
                        .and_then(|()| sys::cap_copy(cap, None, rights::READ | rights::WAIT | rights::MANAGE | rights::GRANT, 0));
                    let _ = sys::cap_delete(cap);
                    match copy {
                        Ok(copy) => Reply { msg: keel_rt::abi::ipc::Message::new(0, [pid, 0, 0, 0]), caps: alloc::vec![copy] },
                        Err(e) => Reply::err(e),
                    }
                }
                Err(e) => Reply::err(e),
            }
        }
        procmgr::ADOPT => {
            let caps: Vec<Slot> = req.caps.slots().collect();
            let name = keel_rt::proto::unpack_name(&req.msg.data);
            let info = caps.first().map(|&c| sys::process_info(c));
            let (&[cap], Ok(name), Some(Ok(info))) = (caps.as_slice(), name, info) else {
                for s in caps {
                    let _ = sys::cap_delete(s);
                }
                return Reply::err(Error::Invalid);
            };
            if !info.running || sys::process_watch(cap, env.exits, CHILD_EXITED).is_err() {
                let _ = sys::cap_delete(cap);
                return Reply::err(Error::Invalid);
            }
            let mut st = state.lock();
            st.next_badge += 1;
            // A badge of its own (no rights, never given to it): the caller is its parent.
            let badge = st.next_badge;
            st.procs.push(Proc { pid: info.pid, name, cap, service: None, badge, parent: Some(req.badge) });
            Reply::ok([0; 4])
        }
        procmgr::KILL => {
            // The caller names processes by its pid namespace's numbers.
            let Some(pid) = state.lock().global_pid(req.badge, req.msg.data[0]) else { return Reply::err(Error::NotFound) };
            if sys::process_info(slots::SELF_PROCESS).is_ok_and(|me| me.pid == pid) {
                // init supervises everything else; without it nothing restarts or powers off.
                return Reply::err(Error::BadState);
            }
            let allowed = {
                let st = state.lock();
                let lineage: Vec<Lineage> = st.procs.iter().map(|p| Lineage { pid: p.pid, badge: p.badge, parent: p.parent }).collect();
                access::may_kill(req.badge, pid, &lineage).map(|()| st.procs.iter().find(|p| p.pid == pid).map(|p| p.cap))
            };
            match allowed {
                Ok(Some(cap)) => match sys::process_kill(cap) {
                    Ok(()) => Reply::ok([0; 4]),
                    Err(Error::BadState) => Reply::err(Error::NotFound),
                    Err(e) => Reply::err(e),
                },
                Ok(None) | Err(KillRefused::NoSuchProcess) => Reply::err(Error::NotFound),
                Err(KillRefused::NotYours) => Reply::err(Error::NoRights),
            }
        }
        procmgr::MOVE => {
            let pid = state.lock().global_pid(req.badge, req.msg.data[0]).unwrap_or(0);
            let mut given = req.caps.slots();
            let (quota, owned) = match (given.next(), given.next(), req.msg.data[1]) {
                (Some(q), None, 0) => (q, true),
                (None, None, procmgr::MOVE_TO_ROOT) if env.quota.is_some() => (env.quota.unwrap_or(0), false),
                _ => {
                    for c in req.caps.slots() {
                        let _ = sys::cap_delete(c);
                    }
                    return Reply::err(Error::Invalid);
                }
            };
            let reply = if sys::process_info(slots::SELF_PROCESS).is_ok_and(|me| me.pid == pid) {
                // init stays in the root group: a limit on it would stop everything.
                Reply::err(Error::BadState)
            } else {
                let allowed = {
                    let st = state.lock();
                    let lineage: Vec<Lineage> = st.procs.iter().map(|p| Lineage { pid: p.pid, badge: p.badge, parent: p.parent }).collect();
                    access::may_move(req.badge, pid, &lineage).map(|()| st.procs.iter().find(|p| p.pid == pid).map(|p| p.cap))
                };
                match allowed {
                    Ok(Some(cap)) => match sys::quota_move(quota, cap) {
                        Ok(()) => Reply::ok([0; 4]),
                        Err(Error::BadState) => Reply::err(Error::NotFound),
                        Err(e) => Reply::err(e),
                    },
                    Ok(None) | Err(KillRefused::NoSuchProcess) => Reply::err(Error::NotFound),
                    Err(KillRefused::NotYours) => Reply::err(Error::NoRights),
                }
            };
            if owned {
                let _ = sys::cap_delete(quota);
            }
            reply
        }
        procmgr::RIGHTS_OF => {
            let pid = req.msg.data[0];
            let st = state.lock();
            let bits = st.procs.iter().find(|p| p.pid == pid).map_or(0, |p| p.badge & access::RIGHTS);
            Reply::ok([bits, 0, 0, 0])
        }
        procmgr::PS => {
            // The running processes the caller's pid namespace holds, by its numbers. Exited
            // ones are forgotten first (as the supervisor does, ending namespaces whose pid 1
            // went): a caller that saw its child exit finds it gone from the list.
            forget_exited_children(state);
            let mut out = String::new();
            let st = state.lock();
            let ns = st.ns_of_caller(req.badge);
            if let (Ok(me), pidns::ROOT) = (sys::process_info(slots::SELF_PROCESS), ns) {
                out.push_str(&ps_line(me.pid, "init", true, 0, me.pages, me.quota));
            }
            for p in &st.procs {
                let Some(pid) = st.pidns.local(ns, p.pid) else { continue };
                if let Ok(i) = sys::process_info(p.cap) && i.running {
                    out.push_str(&ps_line(pid, &p.name, true, 0, i.pages, i.quota));
                }
            }
            drop(st);
            let n = req.reply_payload(out.as_bytes());
            Reply::ok([0, 0, 0, n])
        }
        procmgr::NAMES_SAVE => {
            let mut st = state.lock();
            let conn = req.caps.slots().next();
            let (true, Some(conn), Ok(name)) = (st.is_namesrv(req.badge), conn, keel_rt::proto::unpack_name(&req.msg.data)) else {
                drop(st);
                for s in req.caps.slots() {
                    let _ = sys::cap_delete(s);
                }
                return Reply::err(Error::NoRights);
            };
            match st.names.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => {
                    let _ = sys::cap_delete(core::mem::replace(&mut entry.1, conn));
                }
                None => st.names.push((name, conn)),
            }
            Reply::ok([0; 4])
        }
        procmgr::NAMES_RESTORE => {
            let st = state.lock();
            if !st.is_namesrv(req.badge) {
                return Reply::err(Error::NoRights);
            }
            let Some((name, conn)) = st.names.get(req.msg.data[0] as usize) else { return Reply::err(Error::NotFound) };
            let (Ok(words), Ok(copy)) = (keel_rt::proto::pack_name(name), sys::cap_copy(*conn, None, rights::CALL | rights::GRANT, 0)) else {
                return Reply::err(Error::NoMemory);
            };
            Reply { msg: keel_rt::abi::ipc::Message::new(0, words), caps: alloc::vec![copy] }
        }
        procmgr::STATE_SAVE | procmgr::STATE_LOAD => {
            let mut st = state.lock();
            let Some(index) = st.services.iter().position(|s| s.badge == Some(req.badge)) else {
                return Reply::err(Error::NoRights);
            };
            if req.msg.label == procmgr::STATE_SAVE {
                let data = req.payload();
                if data.len() > procmgr::MAX_SAVED {
                    return Reply::err(Error::Invalid);
                }
                let saved = &mut st.services[index].saved;
                saved.clear();
                if saved.try_reserve(data.len()).is_err() {
                    return Reply::err(Error::NoMemory);
                }
                saved.extend_from_slice(data);
                Reply::ok([0; 4])
            } else {
                let n = req.reply_payload(&st.services[index].saved);
                Reply::ok([0, 0, 0, n])
            }
        }
        procmgr::POWER_OFF if req.badge & access::ADMIN == 0 => Reply::err(Error::NoRights),
        procmgr::POWER_OFF => match power_off(env, state, req.msg.data[0] == 1) {
            Ok(()) => Reply::ok([0; 4]),
            Err(e) => Reply::err(e),
        },
        procmgr::CONSOLE_CONTROL if req.badge & access::ADMIN == 0 => Reply::err(Error::NoRights),
        procmgr::CONSOLE_CONTROL => {
            let conn = state.lock().names.iter().find(|(n, _)| n == "console").map(|&(_, c)| c);
            let Some(conn) = conn else { return Reply::err(Error::NotFound) };
            match sys::cap_copy(conn, None, rights::CALL | rights::GRANT, keel_rt::proto::console::CONTROL_BADGE) {
                Ok(copy) => Reply { msg: keel_rt::abi::ipc::Message::new(0, [0; 4]), caps: alloc::vec![copy] },
                Err(e) => Reply::err(e),
            }
        }
        _ => Reply::err(Error::NoSys),
    }
}
