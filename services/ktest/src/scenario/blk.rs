//! `blk`: the virtio-blk driver end to end through its IPC protocol. With a disk attached it
//! looks up `blk0`, checks INFO, writes a pattern to ranges spread over the disk (the first
//! sector, a MAX_SECTORS request in the middle, the last sector, a short odd range), flushes,
//! reads everything back and compares, then checks that malformed requests get their errno.
//! Without a disk the blk service exits 0 and `blk0` never appears: that is the expected outcome
//! when the blk service is no longer running.
//!
//! The host test (tests/tests/blk.rs) checks the image file for the same pattern at the same
//! offsets, so [`ranges`] and [`pattern_byte`] are the contract between the two.

use super::{MS, namesrv, procmgr};
use crate::check::Checks;
use crate::services::{Namesrv, Procmgr, parse_ps};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use keel_rt::errno::Errno;
use keel_rt::ipc::Client;
use keel_rt::proto::{blk, errno_status};
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, println, sys};

const SECTOR: u64 = 512;
/// How long the blk service may take to register `blk0`.
const WAIT_MS: u64 = 10_000;
const POLL_MS: u64 = 50;
/// Polls in a row without a running blk service before concluding there is no disk.
const ABSENT_POLLS: u32 = 4;
/// Smallest disk the scenario's ranges fit on.
const MIN_SECTORS: u64 = 1024;
/// 64 KiB reads timed.
const TIMED_READS: u64 = 32;

/// The byte at offset `i` of sector `sector` in the pattern the scenario writes.
pub fn pattern_byte(sector: u64, i: usize) -> u8 {
    (sector as u8).wrapping_mul(31) ^ (i as u8).wrapping_add((sector >> 8) as u8) ^ ((i >> 8) as u8) ^ 0xa5
}

/// The (first sector, sectors) ranges written on a disk of `capacity` sectors.
pub fn ranges(capacity: u64) -> [(u64, u64); 4] {
    [(0, 1), (capacity / 2, blk::MAX_SECTORS), (capacity - 1, 1), (capacity / 3, 3)]
}

fn pattern(sector: u64, count: u64) -> Vec<u8> {
    (0..count).flat_map(|s| (0..SECTOR as usize).map(move |i| pattern_byte(sector + s, i))).collect()
}

/// A malformed request: what it is, its label, words and payload, and the errno it must get.
type BadRequest = (&'static str, u64, [u64; 3], Vec<u8>, Errno);

/// How the wait for `blk0` ended.
enum Found {
    Disk(Slot),
    /// The blk service is not running and never registered `blk0`.
    NoDisk,
    Failed(String),
}

fn blk_running(pm: &mut Procmgr) -> Option<bool> {
    let ps = parse_ps(&pm.ps_text().ok()?).ok()?;
    Some(ps.iter().any(|p| p.is_program("blk") && p.is_alive()))
}

fn find_blk0(ns: &Namesrv, pm: &mut Procmgr) -> Found {
    let (mut waited, mut absent) = (0, 0);
    loop {
        match ns.lookup("blk0") {
            Ok(conn) => return Found::Disk(conn),
            Err(Error::NotFound) => {}
            Err(e) => return Found::Failed(format!("namesrv LOOKUP blk0: {e:?}")),
        }
        absent = if blk_running(pm) == Some(false) { absent + 1 } else { 0 };
        if absent >= ABSENT_POLLS {
            return Found::NoDisk;
        }
        if waited >= WAIT_MS {
            return Found::Failed(format!("blk0 not registered within {WAIT_MS} ms while the blk service runs"));
        }
        sys::sleep_ns(POLL_MS * MS);
        waited += POLL_MS;
    }
}

/// A call's outcome as the protocol defines it: the reply message and payload, or an errno.
fn call(client: &mut Client, label: u64, words: [u64; 3], payload: &[u8]) -> Result<([u64; 4], Vec<u8>), Errno> {
    match client.call_bulk(label, words, payload) {
        Ok((r, data)) => errno_status(&r).map(|m| (m.data, data)),
        // The call itself failed (the server died): no errno says that, so EIO.
        Err(_) => Err(Errno::Io),
    }
}

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("blk");
    let (Some(mut pm), Some(ns)) = (procmgr(&mut c, startup), namesrv(&mut c, startup)) else { return c.finish("") };
    let conn = match find_blk0(&ns, &mut pm) {
        Found::Disk(conn) => conn,
        Found::NoDisk => {
            println!("ktest: blk: no blk0: the blk service is not running (it found no virtio-blk device)");
            return c.finish("no disk");
        }
        Found::Failed(why) => {
            c.fail(why);
            return c.finish("");
        }
    };
    c.pass();
    let mut client = Client::new(conn);

    // INFO.
    let info = match call(&mut client, blk::INFO, [0; 3], &[]) {
        Ok((info, _)) => info,
        Err(e) => {
            c.fail(format_args!("blk0 INFO: expected Ok, got {e}"));
            return c.finish("");
        }
    };
    let capacity = info[0];
    c.expect_eq("blk0 INFO read-only flag", info[1], 0);
    c.expect_eq("blk0 INFO sectors per request", info[2], blk::MAX_SECTORS);
    if !c.check(capacity >= MIN_SECTORS, || format!("blk0 has {capacity} sectors; the scenario needs {MIN_SECTORS}")) {
        return c.finish("");
    }
    println!("ktest: blk: ok: INFO: {capacity} sectors, writable, {} sectors per request", info[2]);

    // Write, flush, read back.
    let written = ranges(capacity);
    for &(sector, count) in &written {
        let r = call(&mut client, blk::WRITE, [sector, count, 0], &pattern(sector, count));
        c.expect_eq(format_args!("blk0 WRITE {count} sectors at {sector}"), r.map(|_| ()), Ok(()));
    }
    c.expect_eq("blk0 FLUSH", call(&mut client, blk::FLUSH, [0; 3], &[]).map(|_| ()), Ok(()));
    let mut sectors = 0;
    for &(sector, count) in &written {
        match call(&mut client, blk::READ, [sector, count, 0], &[]) {
            Ok((data, back)) => {
                c.expect_eq(format_args!("blk0 READ {count} at {sector}: payload length"), data[3], count * SECTOR);
                let want = pattern(sector, count);
                let first_bad = back.iter().zip(&want).position(|(a, b)| a != b);
                c.check(back.len() == want.len() && first_bad.is_none(), || {
                    format!("blk0 READ {count} at {sector}: data differs from what was written (first at byte {first_bad:?})")
                });
                sectors += count;
            }
            Err(e) => c.fail(format_args!("blk0 READ {count} at {sector}: expected Ok, got {e}")),
        }
    }
    let list: Vec<String> = written.iter().map(|(s, n)| format!("{s}+{n}")).collect();
    println!("ktest: blk: ok: wrote, flushed and read back sectors {}", list.join(", "));

    // Malformed requests.
    let bad: [BadRequest; 9] = [
        ("READ past the end", blk::READ, [capacity, 1, 0], vec![], Errno::Inval),
        ("READ across the end", blk::READ, [capacity - 1, 2, 0], vec![], Errno::Inval),
        ("READ with sector overflow", blk::READ, [u64::MAX, 2, 0], vec![], Errno::Inval),
        ("READ of 0 sectors", blk::READ, [0, 0, 0], vec![], Errno::Inval),
        ("READ of MAX_SECTORS + 1", blk::READ, [0, blk::MAX_SECTORS + 1, 0], vec![], Errno::Inval),
        ("WRITE of 700 bytes", blk::WRITE, [0, 0, 0], vec![0; 700], Errno::Inval),
        ("WRITE past the end", blk::WRITE, [capacity, 1, 0], vec![0; 512], Errno::Inval),
        ("WRITE with a count that disagrees with the payload", blk::WRITE, [0, 3, 0], vec![0; 512], Errno::Inval),
        ("unknown label 99", 99, [0; 3], vec![], Errno::NoSys),
    ];
    for (what, label, words, payload, want) in &bad {
        let got = call(&mut client, *label, *words, payload).map(|_| ());
        c.expect_eq(format_args!("blk0 {what}"), got, Err(*want));
    }
    println!("ktest: blk: ok: {} malformed requests refused with their errno", bad.len());

    // Time a 64 KiB read.
    let start = sys::counter();
    for _ in 0..TIMED_READS {
        let r = call(&mut client, blk::READ, [capacity / 2, blk::MAX_SECTORS, 0], &[]);
        if r.is_err() {
            c.fail(format_args!("timed blk0 READ: {r:?}"));
            break;
        }
    }
    let ticks = sys::counter().wrapping_sub(start) / TIMED_READS;
    let us = ticks * 1_000_000 / sys::counter_freq().max(1);
    println!("ktest: blk: ok: 64 KiB READ takes {us} us ({ticks} counter ticks) on average over {TIMED_READS}");
    let _ = sys::cap_delete(conn);
    let second = check_read_only_blk1(&mut c, &ns);
    c.finish(format!("blk0: {capacity} sectors, {sectors} sectors written and read back, {} bad requests refused{second}", bad.len()))
}

/// A second disk, if attached, must be read-only (tests/tests/blk.rs attaches one so): INFO
/// says so, reads work, writes get EROFS. blk registers every disk before it serves any, so
/// once blk0 answered, a missing blk1 means there is no second disk.
fn check_read_only_blk1(c: &mut Checks, ns: &Namesrv) -> String {
    let conn = match ns.lookup("blk1") {
        Ok(conn) => conn,
        Err(Error::NotFound) => return String::new(),
        Err(e) => {
            c.fail(format_args!("namesrv LOOKUP blk1: {e:?}"));
            return String::new();
        }
    };
    let mut client = Client::new(conn);
    let out = match call(&mut client, blk::INFO, [0; 3], &[]) {
        Ok((info, _)) => {
            let capacity = info[0];
            c.expect_eq("blk1 INFO read-only flag", info[1], blk::READ_ONLY);
            let read = call(&mut client, blk::READ, [capacity.saturating_sub(1), 1, 0], &[]).map(|(d, _)| d[3]);
            c.expect_eq("blk1 READ of its last sector", read, Ok(SECTOR));
            let write = call(&mut client, blk::WRITE, [0, 1, 0], &[0; 512]).map(|_| ());
            c.expect_eq("blk1 WRITE (read-only disk)", write, Err(Errno::RoFs));
            println!("ktest: blk: ok: blk1: {capacity} sectors, read-only: reads work, writes get EROFS");
            format!("; blk1: {capacity} sectors, read-only")
        }
        Err(e) => {
            c.fail(format_args!("blk1 INFO: expected Ok, got {e}"));
            String::new()
        }
    };
    let _ = sys::cap_delete(conn);
    out
}
