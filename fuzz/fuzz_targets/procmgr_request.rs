//! procmgr's decisions on SPAWN and KILL requests (`keel_init::access` with
//! `keel_init::request::{parse_spawn, program_name}`), composed as `handle` and `start` in
//! `services/init/src/procmgr.rs` compose them. (That module makes system calls and builds only
//! for Keel, so its request handling is not reachable here; these are the pure functions it
//! decides with. The SPAWN payload alone is `procmgr_spawn`'s target.)
//!
//! A process table starts with the boot services and grows by SPAWN requests from its members;
//! processes exit; arbitrary records (duplicate badges, parent loops) are mixed in. Checked:
//! - SPAWN is privileged exactly for an ADMIN caller that did not ask for SPAWN_UNPRIVILEGED,
//!   and a child never gets a rights bit its caller lacks;
//! - KILL (`may_kill`) agrees with the documented rule, walked without a bound but with loop
//!   detection: no such pid is NoSuchProcess; KILL_ANY may kill anything else; otherwise only
//!   what the caller spawned and their descendants. So `may_kill`'s bounded walk stops neither
//!   early nor never.
//!
//! Input: operations until the input ends (at most 64), by their first byte modulo 5:
//! `0|1 caller flags len payload[len]` SPAWN, `2 caller pid` KILL, `3 index` exit,
//! `4 pid badge parent rights` an arbitrary record. `caller`, `index`: a table row (modulo its
//! length); KILL's `pid`: with its top bit, the pid of row `pid & 0x7f`, else its low 5 bits.
//! Boot rows 0-5: namesrv, console, blk, fs, vmm, shell (pids 10-15); SPAWNed ones from pid 101.
#![no_main]

use keel_init::access::{ADMIN, KILL_ANY, KillRefused, Lineage, RIGHTS, may_kill, program_rights, spawn_privileged};
use keel_init::request::{parse_spawn, program_name};
use keel_rt::proto::procmgr::SPAWN_UNPRIVILEGED;
use libfuzzer_sys::fuzz_target;

/// The manifest's services, started by init with their privileges.
const BOOT: [&str; 6] = ["namesrv", "console", "blk", "fs", "vmm", "shell"];

fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = input.split_at(n.min(input.len()));
    *input = tail;
    head
}

fn byte(input: &mut &[u8]) -> u8 {
    take(input, 1).first().copied().unwrap_or(0)
}

/// The rule KILL documents, walked until the chain ends or loops.
fn model_kill(caller: u64, pid: u64, procs: &[Lineage]) -> Result<(), KillRefused> {
    let target = procs.iter().find(|p| p.pid == pid).ok_or(KillRefused::NoSuchProcess)?;
    if caller & KILL_ANY != 0 {
        return Ok(());
    }
    let mut seen = Vec::new();
    let mut parent = target.parent;
    while let Some(b) = parent {
        if b == caller {
            return Ok(());
        }
        if seen.contains(&b) {
            break;
        }
        seen.push(b);
        // The first record with that badge, as procmgr's table lookup finds it.
        parent = procs.iter().find(|p| p.badge == b).and_then(|p| p.parent);
    }
    Err(KillRefused::NotYours)
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mut next_id = 0u64;
    let mut next_pid = 100u64;
    let mut procs: Vec<Lineage> = BOOT
        .iter()
        .enumerate()
        .map(|(i, name)| {
            next_id += 1;
            Lineage { pid: 10 + i as u64, badge: next_id | program_rights(name), parent: None }
        })
        .collect();
    for _ in 0..64 {
        if input.is_empty() || procs.is_empty() {
            break;
        }
        match byte(&mut input) % 5 {
            0 | 1 => {
                let caller = procs[byte(&mut input) as usize % procs.len()].badge;
                let flags = byte(&mut input) as u64;
                let n = byte(&mut input) as usize;
                let Ok(req) = parse_spawn(take(&mut input, n)) else { continue };
                let unprivileged = flags & SPAWN_UNPRIVILEGED != 0;
                let privileged = spawn_privileged(caller, unprivileged);
                assert_eq!(privileged, caller & ADMIN != 0 && !unprivileged, "caller {caller:#x}, flags {flags:#x}");
                let rights = if privileged { program_rights(program_name(&req.path)) } else { 0 };
                assert_eq!(rights & !RIGHTS, 0, "{:?}: rights {rights:#x} outside RIGHTS", req.path);
                assert_eq!(rights & !caller, 0, "{:?} spawned by {caller:#x} got rights {rights:#x} its caller lacks", req.path);
                next_id += 1;
                next_pid += 1;
                procs.push(Lineage { pid: next_pid, badge: next_id | rights, parent: Some(caller) });
            }
            2 => {
                let caller = procs[byte(&mut input) as usize % procs.len()].badge;
                let b = byte(&mut input);
                let pid = if b & 0x80 != 0 { procs[(b & 0x7f) as usize % procs.len()].pid } else { (b & 0x1f) as u64 };
                assert_eq!(may_kill(caller, pid, &procs), model_kill(caller, pid, &procs), "caller {caller:#x} kills pid {pid} in {procs:?}");
            }
            3 => {
                let i = byte(&mut input) as usize % procs.len();
                procs.remove(i);
            }
            _ => {
                let pid = (byte(&mut input) & 0x1f) as u64;
                let (b, p) = (byte(&mut input), byte(&mut input));
                // Rights as a boot service of some name has them, or another row's badge whole.
                let rights = program_rights(["shell", "console", "fs"][byte(&mut input) as usize % 3]);
                let row = |x: u8| procs[x as usize % procs.len()].badge;
                let badge = if b & 0x80 != 0 { row(b & 0x7f) } else { (b & 0x0f) as u64 | rights };
                let parent = match p >> 6 {
                    0 => None,
                    1 => Some((p & 0x0f) as u64),
                    _ => Some(row(p)),
                };
                procs.push(Lineage { pid, badge, parent });
            }
        }
    }
});
