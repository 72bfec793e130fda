//! `kill-during-copy:<service>` (`scenario=kill-during-copy:blk` on the kernel command line: init
//! starts ktest with its rights to kill services, which a program the shell runs does not have):
//! a service is killed while a copy into /disk is running, not between two commands.
//!
//! A worker thread writes [`CHUNKS`] chunks of a known pattern to `/disk/copy.dat`, calling
//! `fsync` after every [`SYNC_EVERY`]; the main thread waits until [`KILL_AT`] chunks are written,
//! kills `<service>` through procmgr while the worker goes on writing, and waits for init to start
//! a new one. The copy must then finish, or get a clear error and recover the way a program
//! would (reopen the file, go back to the last `fsync` it saw succeed, write again), and the
//! whole file must read back as written. What each service's death may show the copy:
//! - `blk`, `namesrv`: nothing (fs keeps its dirty blocks and reconnects to the block service;
//!   fs's connection to namesrv is not on the copy's path);
//! - `fs`: its session went with it, so a call in flight fails with ECONNRESET or, retried on the
//!   new service, EBADF, and opening the file again gives EAGAIN until the new fs has mounted
//!   the disk; nothing the copy saw `fsync`ed may be lost.
//!
//! The test harness (tests/tests/restart.rs) then powers off and reads `/copy.dat` on the disk
//! image with the host's debugfs.

use super::{MS, procmgr};
use crate::check::Checks;
use crate::services::{PsEntry, Procmgr, parse_ps};
use crate::worker;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use keel_rt::errno::Errno;
use keel_rt::fs::{self, Fd, flags};
use keel_rt::startup::Startup;
use keel_rt::sys;

/// The file the copy writes.
pub const PATH: &str = "/disk/copy.dat";
/// Chunks written, each [`CHUNK`] bytes.
pub const CHUNKS: u64 = 512;
pub const CHUNK: usize = 1024;
/// The copy calls `fsync` after this many chunks.
const SYNC_EVERY: u64 = 32;
/// The service is killed once this many chunks are written.
const KILL_AT: u64 = 64;
/// How long the copy may take in all, and the restart.
const COPY_TIMEOUT_MS: u64 = 120_000;
const RESTART_TIMEOUT_MS: u64 = 10_000;
const POLL_MS: u64 = 5;
/// Errors the copy may recover from before it gives up.
const MAX_RECOVERIES: u32 = 8;

/// Byte `j` of chunk `i`: differs between chunks and within one, so a chunk written at the wrong
/// offset or twice over another shows.
pub fn pattern_byte(i: u64, j: usize) -> u8 {
    (i.wrapping_mul(131).wrapping_add(j as u64).wrapping_mul(7) % 251) as u8
}

fn chunk(i: u64) -> Vec<u8> {
    (0..CHUNK).map(|j| pattern_byte(i, j)).collect()
}

/// What the copy went through.
#[derive(Default)]
struct CopyReport {
    /// Each error it recovered from: the call, the chunk, the errno.
    errors: Vec<(&'static str, u64, Errno)>,
    /// Set when the copy gave up: why.
    failed: Option<String>,
}

fn open_for_copy(truncate: bool) -> Result<Fd, Errno> {
    let trunc = if truncate { flags::O_TRUNC } else { 0 };
    fs::open(PATH, flags::O_WRONLY | flags::O_CREAT | trunc, 0o644)
}

/// Writes the file chunk by chunk, publishing progress in `written`; on an error, reopens the
/// file and goes back to the last chunk an `fsync` covered.
fn copy(written: &AtomicU64) -> CopyReport {
    let mut report = CopyReport::default();
    let mut fd = match open_for_copy(true) {
        Ok(fd) => fd,
        Err(e) => {
            report.failed = Some(format!("open {PATH}: {e}"));
            return report;
        }
    };
    let mut synced = 0u64;
    let mut i = 0u64;
    while i < CHUNKS {
        let step = fs::pwrite(fd, &chunk(i), i * CHUNK as u64).and_then(|n| if n == CHUNK { Ok(()) } else { Err(Errno::Io) });
        let step = step.map_err(|e| ("pwrite", e)).and_then(|()| {
            let end = i + 1 >= CHUNKS;
            if (i + 1) % SYNC_EVERY == 0 || end { fs::fsync(fd).map_err(|e| ("fsync", e)) } else { Ok(()) }
        });
        match step {
            Ok(()) => {
                i += 1;
                if i % SYNC_EVERY == 0 || i == CHUNKS {
                    synced = i;
                }
                written.store(i, Ordering::Release);
            }
            Err((call, e)) => {
                report.errors.push((call, i, e));
                if report.errors.len() as u32 > MAX_RECOVERIES {
                    report.failed = Some(format!("gave up after {} errors, the last {call} of chunk {i}: {e}", report.errors.len()));
                    return report;
                }
                // What a program does when its file service restarted: the descriptor is gone,
                // so open the file again and write again from what was last made durable.
                let _ = fs::close(fd);
                fd = match reopen(&mut report, i) {
                    Ok(fd) => fd,
                    Err(e) => {
                        report.failed = Some(format!("reopening {PATH} after {call} of chunk {i} failed: {e}"));
                        return report;
                    }
                };
                i = synced;
            }
        }
    }
    if let Err(e) = fs::close(fd) {
        report.errors.push(("close", CHUNKS, e));
    }
    report
}

/// Opens the file again after an error; a restarted file service answers EAGAIN for /disk until
/// it has mounted the disk again, so wait for its mounts then.
fn reopen(report: &mut CopyReport, chunk: u64) -> Result<Fd, Errno> {
    loop {
        match open_for_copy(false) {
            Err(Errno::Again) if (report.errors.len() as u32) < MAX_RECOVERIES => {
                report.errors.push(("open", chunk, Errno::Again));
                let _ = fs::wait_for_mounts(200, 50 * MS);
            }
            other => return other,
        }
    }
}

/// The first chunk of the file that differs from the pattern, if any (or a read error).
fn verify() -> Result<(), String> {
    let fd = fs::open(PATH, flags::O_RDONLY, 0).map_err(|e| format!("open {PATH} to read it back: {e}"))?;
    let mut buf = vec![0u8; CHUNK];
    let mut result = Ok(());
    for i in 0..CHUNKS {
        match fs::pread(fd, &mut buf, i * CHUNK as u64) {
            Ok(n) if n == CHUNK && buf == chunk(i) => {}
            Ok(n) if n < CHUNK => {
                result = Err(format!("{PATH} ends in chunk {i} ({} bytes, not {})", i * CHUNK as u64 + n as u64, CHUNKS * CHUNK as u64));
                break;
            }
            Ok(_) => {
                result = Err(format!("chunk {i} of {PATH} differs from what was written"));
                break;
            }
            Err(e) => {
                result = Err(format!("reading chunk {i} of {PATH}: {e}"));
                break;
            }
        }
    }
    let _ = fs::close(fd);
    result.and_then(|()| match fs::stat(PATH) {
        Ok(st) if st.size == CHUNKS * CHUNK as u64 => Ok(()),
        Ok(st) => Err(format!("{PATH} is {} bytes, not {}", st.size, CHUNKS * CHUNK as u64)),
        Err(e) => Err(format!("stat {PATH}: {e}")),
    })
}

fn running(pm: &mut Procmgr, service: &str) -> Vec<u64> {
    let ps: Vec<PsEntry> = pm.ps_text().ok().and_then(|t| parse_ps(&t).ok()).unwrap_or_default();
    ps.iter().filter(|p| p.is_program(service) && p.is_running()).map(|p| p.pid).collect()
}

/// The services whose death the copy is meant to survive.
pub const SERVICES: [&str; 3] = ["blk", "fs", "namesrv"];

pub fn run(service: &str, startup: &Startup) -> i32 {
    let mut c = Checks::new("kill-during-copy");
    if !SERVICES.contains(&service) {
        c.fail(format_args!("no copy test for '{service}' (one of {SERVICES:?})"));
        return c.finish("");
    }
    let Some(mut pm) = procmgr(&mut c, startup) else { return c.finish("") };
    match fs::wait_for_mounts(200, 50 * MS) {
        Ok(true) => {}
        other => {
            c.fail(format_args!("the start-up mounts did not finish: {other:?}"));
            return c.finish("");
        }
    }
    let old = match running(&mut pm, service).as_slice() {
        [one] => *one,
        found => {
            c.fail(format_args!("procmgr PS: expected one running {service}, found {found:?}"));
            return c.finish("");
        }
    };
    let written = Arc::new(AtomicU64::new(0));
    let progress = written.clone();
    let Some(copier) = c.expect_ok("start the copying thread", worker::start(0, move || copy(&progress))) else {
        return c.finish("");
    };
    // Wait for the copy to be under way (or over, if it failed early).
    let mut waited = 0;
    while written.load(Ordering::Acquire) < KILL_AT && !copier.is_finished() && waited < COPY_TIMEOUT_MS {
        sys::sleep_ns(POLL_MS * MS);
        waited += POLL_MS;
    }
    let at_kill = written.load(Ordering::Acquire);
    c.expect_ok(format_args!("procmgr KILL {service} (pid {old})"), pm.kill(old));
    c.check(at_kill >= KILL_AT && at_kill < CHUNKS && !copier.is_finished(), || {
        format!("the kill did not land during the copy: {at_kill} of {CHUNKS} chunks written")
    });
    let mut waited = 0;
    let new = loop {
        if let Some(&pid) = running(&mut pm, service).iter().find(|&&p| p != old) {
            break Some(pid);
        }
        if waited >= RESTART_TIMEOUT_MS {
            break None;
        }
        sys::sleep_ns(50 * MS);
        waited += 50;
    };
    if new.is_none() {
        c.fail(format_args!("no new {service} running {RESTART_TIMEOUT_MS} ms after killing pid {old}"));
    }
    let report = match copier.join(COPY_TIMEOUT_MS * MS) {
        Ok(r) => r,
        Err(e) => {
            c.fail(format_args!("the copy did not finish within {} s of the kill: {e:?} ({} of {CHUNKS} chunks written)", COPY_TIMEOUT_MS / 1000, written.load(Ordering::Acquire)));
            return c.finish("");
        }
    };
    if let Some(why) = &report.failed {
        c.fail(format_args!("the copy failed: {why}"));
    }
    // Only fs's death may show through, and only as the errors that say the session is gone.
    for &(call, i, e) in &report.errors {
        let expected = service == "fs" && matches!(e, Errno::ConnReset | Errno::BadF | Errno::Again);
        c.check(expected, || format!("{call} of chunk {i} failed with {e} after {service} was killed"));
    }
    match verify() {
        Ok(()) => c.pass(),
        Err(why) => c.fail(why),
    }
    let seen = match report.errors.as_slice() {
        [] => String::from("the copy saw no error"),
        errs => {
            let list: Vec<String> = errs.iter().map(|(call, i, e)| format!("{call} of chunk {i}: {e}")).collect();
            format!("the copy reopened the file after {} and wrote again from its last fsync", list.join(", "))
        }
    };
    c.finish(format_args!(
        "{service} pid {old} killed at chunk {at_kill} of {CHUNKS}, restarted as pid {}; {seen}; {} KiB read back whole",
        new.unwrap_or(0),
        CHUNKS * CHUNK as u64 / 1024
    ))
}
