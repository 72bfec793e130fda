//! `ipc`: 4 CPUs × 100,000 calls between two processes, every reply word checked.
//!
//! The server is `ktest ipc-server ktest-echo 0,1,2,3` (one server thread pinned to each CPU),
//! spawned through the process manager and found through the name service. Each client thread is
//! pinned to its CPU and has its own connection capability from its own lookup, so its own badge:
//! the reply function mixes the badge in, which checks the kernel delivered the right one. Then
//! one client is left blocked in a call the server never answers, the server is killed, and
//! both that call and a new one must end with `PeerDied`.
//!
//! Meanwhile a canary thread of the same priority, pinned to CPU 0, sleeps 10 ms at a time: the
//! client/server pair ping-ponging on CPU 0 must still leave it the CPU now and then (at least
//! once per two seconds on average), or IPC hand-offs starve other threads.

use super::{EchoProcess, MS, SEC, namesrv, procmgr, start_echo_server};
use crate::check::Checks;
use crate::echo;
use crate::worker::{self, cpu_mask};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use keel_rt::abi::ipc::{CapList, Message};
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, sys};

const NAME: &str = "ktest-echo";
const CPUS: u32 = 4;
const CALLS: u64 = 100_000;

/// Calls each client has made so far (for the report if one does not finish).
static PROGRESS: [AtomicU64; CPUS as usize] = [const { AtomicU64::new(0) }; CPUS as usize];
/// The longest the clients may take, and the slice after which no progress at all is a stall.
const TIMEOUT_S: u64 = 600;
const SLICE_S: u64 = 10;

/// Canary wake-ups, and the flag that stops it.
static CANARY: AtomicU64 = AtomicU64::new(0);
static CANARY_STOP: AtomicBool = AtomicBool::new(false);

fn canary() -> u64 {
    while !CANARY_STOP.load(Ordering::Relaxed) {
        sys::sleep_ns(10 * MS);
        CANARY.fetch_add(1, Ordering::Relaxed);
    }
    CANARY.load(Ordering::Relaxed)
}

fn progress(client: usize) -> u64 {
    PROGRESS.get(client).map_or(0, |p| p.load(Ordering::Relaxed))
}

/// What one client thread saw.
#[derive(Debug, Default)]
struct ClientRun {
    verified: u64,
    mismatches: u64,
    first_mismatch: Option<String>,
    error: Option<(u64, Error)>,
    ticks: u64,
}

/// `calls` echo calls with client number `client`'s data, each reply checked.
fn client_loop(conn: Slot, client: u64, badge: u64, calls: u64) -> ClientRun {
    let mut run = ClientRun::default();
    let start = sys::counter();
    for seq in 0..calls {
        if let Some(p) = PROGRESS.get(client as usize) {
            p.store(seq, Ordering::Relaxed);
        }
        let msg = echo::request(client, seq);
        match sys::ipc_call(conn, &msg, CapList::EMPTY) {
            Ok(r) => {
                let want = echo::reply_to(&msg, badge);
                if r.msg == want && r.badge == 0 && r.caps.is_empty() {
                    run.verified += 1;
                } else {
                    run.mismatches += 1;
                    if run.first_mismatch.is_none() {
                        run.first_mismatch = Some(format!(
                            "call {seq}: sent {msg:?}, expected {want:?}, got {:?} badge {:#x} caps {:#x}",
                            r.msg, r.badge, r.caps.0
                        ));
                    }
                }
            }
            Err(e) => {
                run.error = Some((seq, e));
                break;
            }
        }
    }
    run.ticks = sys::counter().wrapping_sub(start);
    run
}

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("ipc");
    let (Some(mut pm), Some(ns)) = (procmgr(&mut c, startup), namesrv(&mut c, startup)) else { return c.finish("") };
    let cpus: Vec<u32> = (0..CPUS).collect();
    let Some(server) = start_echo_server(&mut c, &mut pm, &ns, NAME, &cpus) else { return c.finish("") };

    // One connection capability (and badge) per client.
    let mut conns = Vec::new();
    for cpu in 0..CPUS {
        let Some(conn) = c.expect_ok(format_args!("namesrv LOOKUP {NAME} for client {cpu}"), ns.lookup(NAME)) else {
            break;
        };
        let badge = sys::cap_info(conn).map(|i| i.2).unwrap_or(0);
        conns.push((conn, badge));
    }
    let mut badges: Vec<u64> = conns.iter().map(|&(_, b)| b).collect();
    badges.sort_unstable();
    badges.dedup();
    c.check(badges.len() == conns.len() && !badges.contains(&0), || {
        format!("lookups should give distinct nonzero badges, got {conns:?}")
    });

    let canary = c.expect_ok("start the canary thread on CPU 0", worker::start(cpu_mask(0), canary));
    let start = sys::counter();
    let mut workers = Vec::new();
    for (cpu, &(conn, badge)) in conns.iter().enumerate() {
        let w = worker::start(cpu_mask(cpu as u32), move || client_loop(conn, cpu as u64, badge, CALLS));
        if let Some(w) = c.expect_ok(format_args!("start client thread on CPU {cpu}"), w) {
            workers.push((cpu, w));
        }
    }
    // Wait in slices, so that a stall (no client made progress for a whole slice) ends the wait
    // early and shows where each client was.
    let freq = sys::counter_freq();
    let deadline = start + TIMEOUT_S * freq;
    let mut last: Vec<u64> = (0..CPUS as usize).map(progress).collect();
    let mut last_t = start;
    while let Some((_, w)) = workers.iter().find(|(_, w)| !w.is_finished()) {
        let _ = w.wait(SEC);
        let now_t = sys::counter();
        if now_t > deadline {
            break;
        }
        if now_t - last_t >= SLICE_S * freq {
            let now: Vec<u64> = (0..CPUS as usize).map(progress).collect();
            keel_rt::println!("ktest: ipc: calls made so far per client: {now:?}");
            if now == last {
                c.fail(format_args!("no client made progress in {SLICE_S} s (calls made per client: {now:?})"));
                break;
            }
            (last, last_t) = (now, now_t);
        }
    }
    let mut total = 0;
    for (cpu, w) in workers {
        match w.take() {
            Ok(run) => {
                total += run.verified;
                c.expect_eq(format_args!("client on CPU {cpu}: calls answered correctly"), run.verified, CALLS);
                if let Some(m) = run.first_mismatch {
                    c.fail(format_args!("client on CPU {cpu}: {} wrong replies; first: {m}", run.mismatches));
                }
                if let Some((seq, e)) = run.error {
                    c.fail(format_args!("client on CPU {cpu}: ipc_call {seq} failed: {e:?}"));
                }
                keel_rt::println!("ktest: ipc: client on CPU {cpu}: {} calls in {} ticks", run.verified, run.ticks);
            }
            Err(e) => c.fail(format_args!(
                "client on CPU {cpu} did not finish in {TIMEOUT_S} s ({e:?}); it had made {} calls",
                progress(cpu)
            )),
        }
    }
    let elapsed = sys::counter().wrapping_sub(start);
    let during = CANARY.load(Ordering::Relaxed);
    CANARY_STOP.store(true, Ordering::Relaxed);
    if let Some(w) = canary {
        c.expect_ok("canary thread ends", w.join(5 * SEC));
    }
    let seconds = elapsed / freq.max(1);
    c.check(during >= seconds / 2, || {
        format!("the canary thread pinned to CPU 0 (same priority as the clients) woke only {during} times in {seconds} s of IPC load: the ping-pong starves it")
    });

    let conn = conns.first().map(|&(s, _)| s).unwrap_or(server.conn);
    kill_with_a_call_held(&mut c, &server, conn);

    for (s, _) in conns {
        let _ = sys::cap_delete(s);
    }
    server.release();
    let per_call = if total > 0 { elapsed * CPUS as u64 / total } else { 0 };
    c.finish(format!(
        "{total} calls from {CPUS} CPUs verified in {elapsed} ticks ({per_call} ticks per call per CPU); canary on CPU 0 woke {during} times; held and later calls to the killed server: PeerDied"
    ))
}

/// Leaves a call blocked in the server (HOLD), kills the server, and checks that the held call
/// and a new one both fail with PeerDied instead of hanging.
fn kill_with_a_call_held(c: &mut Checks, server: &EchoProcess, conn: Slot) {
    let count = |c: &mut Checks| {
        let r = sys::ipc_call(conn, &Message::new(echo::COUNT, [0; 4]), CapList::EMPTY);
        c.expect_ok("COUNT call", r).map(|r| r.msg.data[0])
    };
    let Some(before) = count(c) else { return };
    let held =
        worker::start(0, move || sys::ipc_call(conn, &Message::new(echo::HOLD, [0; 4]), CapList::EMPTY).map(|r| r.msg));
    let Some(held) = c.expect_ok("start the holding client", held) else { return };
    // Wait until the server has the HOLD call (its count then includes HOLD and this COUNT).
    let mut delivered = false;
    for _ in 0..500 {
        match count(c) {
            Some(n) if n >= before + 2 => {
                delivered = true;
                break;
            }
            Some(_) => sys::sleep_ns(2 * MS),
            None => break,
        }
    }
    c.check(delivered, || String::from("the HOLD call never reached the server"));
    server.kill(c);
    c.expect_eq("the call held by the server when it was killed", held.join(10 * SEC), Ok(Err(Error::PeerDied)));
    let after = worker::start(0, move || sys::ipc_call(conn, &echo::request(9, 9), CapList::EMPTY).map(|r| r.msg));
    match after {
        Ok(w) => {
            c.expect_eq("ipc_call to the killed server", w.join(10 * SEC), Ok(Err(Error::PeerDied)));
        }
        Err(e) => c.fail(format_args!("start the last client: {e:?}")),
    }
}
