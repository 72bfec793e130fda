//! `blk`: the virtio-blk driver end to end through its IPC protocol. With a disk attached it
//! looks up `blk0`, checks INFO, writes a pattern to ranges spread over the disk (the first
//! sector, a MAX_SECTORS request in the middle, the last sector, a short odd range), flushes,
//! reads everything back and compares, then checks that malformed requests get their errno.
//! Only a scratch disk (one carrying [`SCRATCH_LABEL`] in [`SCRATCH_SECTOR`]) is ever written;
//! on any other disk the scenario writes nothing and, if the file service mounted it, checks
//! that blk refuses a second writer. Without a disk the blk service exits 0 and `blk0` never appears: that is the expected outcome
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
use keel_rt::{Error, Slot, fs, println, sys};

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
/// The sector of a scratch disk that holds [`SCRATCH_LABEL`] (tests/tests/blk.rs writes it into
/// the images it makes). The scenario writes no disk without it: ext2 leaves this sector (in
/// its boot block) alone, and no user's disk has these bytes there.
pub const SCRATCH_SECTOR: u64 = 1;
pub const SCRATCH_LABEL: &[u8] = b"KEEL-BLK-TEST-SCRATCH-DISK: the blk test may overwrite this disk\n";

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
    Some(ps.iter().any(|p| p.is_program("blk") && p.is_running()))
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
    let before = c.failures();
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
    if c.failures() == before {
        println!("ktest: blk: ok: INFO: {capacity} sectors, writable, {} sectors per request", info[2]);
    }

    // Only a disk the test made for this is written: anything else may be a user's disk.
    match call(&mut client, blk::READ, [SCRATCH_SECTOR, 1, 0], &[]) {
        Ok((_, label)) if is_scratch(&label) => c.pass(),
        Ok(_) => {
            let _ = sys::cap_delete(conn);
            return check_foreign_disk(c, &ns);
        }
        Err(e) => {
            c.fail(format_args!("blk0 READ of sector {SCRATCH_SECTOR} (the scratch label): expected Ok, got {e}"));
            return c.finish("");
        }
    }
    println!("ktest: blk: ok: blk0 carries the scratch label in sector {SCRATCH_SECTOR}: it may be written");

    // The file service tries to mount blk0 at start (and holds it for writing while it tries):
    // wait until it has given up on this disk.
    if !wait_for_fs(&mut c) {
        return c.finish("");
    }

    // One writer at a time: we open blk0 for writing; a second client may read it only.
    let before = c.failures();
    c.expect_eq("blk0 OPEN_WRITE (first client)", call(&mut client, blk::OPEN_WRITE, [0; 3], &[]).map(|_| ()), Ok(()));
    match ns.lookup("blk0") {
        Ok(second) => {
            let mut other = Client::new(second);
            check_second_writer_refused(&mut c, &mut other, "second client while the first writes blk0");
            c.expect_eq("blk0 RELEASE (first client)", call(&mut client, blk::RELEASE, [0; 3], &[]).map(|_| ()), Ok(()));
            let open = call(&mut other, blk::OPEN_WRITE, [0; 3], &[]).map(|_| ());
            c.expect_eq("blk0 OPEN_WRITE (second client, after the first released)", open, Ok(()));
            let refused = call(&mut client, blk::OPEN_WRITE, [0; 3], &[]).map(|_| ());
            c.expect_eq("blk0 OPEN_WRITE (first client while the second writes)", refused, Err(Errno::Busy));
            c.expect_eq("blk0 RELEASE (second client)", call(&mut other, blk::RELEASE, [0; 3], &[]).map(|_| ()), Ok(()));
            let _ = sys::cap_delete(second);
        }
        Err(e) => c.fail(format_args!("namesrv LOOKUP blk0 (second client): {e:?}")),
    }
    c.expect_eq("blk0 OPEN_WRITE (first client, again)", call(&mut client, blk::OPEN_WRITE, [0; 3], &[]).map(|_| ()), Ok(()));
    if c.failures() == before {
        println!("ktest: blk: ok: one writer: a second client's OPEN_WRITE and WRITE get EBUSY, its READ works, RELEASE hands over");
    }

    // Write, flush, read back.
    let before = c.failures();
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
                let want = pattern(sector, count);
                let first_bad = back.iter().zip(&want).position(|(a, b)| a != b);
                let same = c.expect_eq(format_args!("blk0 READ {count} at {sector}: payload length"), data[3], count * SECTOR)
                    & c.check(back.len() == want.len() && first_bad.is_none(), || {
                        format!("blk0 READ {count} at {sector}: data differs from what was written (first at byte {first_bad:?})")
                    });
                if same {
                    sectors += count;
                }
            }
            Err(e) => c.fail(format_args!("blk0 READ {count} at {sector}: expected Ok, got {e}")),
        }
    }
    if c.failures() == before {
        let list: Vec<String> = written.iter().map(|(s, n)| format!("{s}+{n}")).collect();
        println!("ktest: blk: ok: wrote, flushed and read back sectors {}", list.join(", "));
    }

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
    let mut refused = 0;
    for (what, label, words, payload, want) in &bad {
        let got = call(&mut client, *label, *words, payload).map(|_| ());
        if c.expect_eq(format_args!("blk0 {what}"), got, Err(*want)) {
            refused += 1;
        }
    }
    if refused == bad.len() {
        println!("ktest: blk: ok: {refused} malformed requests refused with their errno");
    }

    // Time a 64 KiB read.
    let start = sys::counter();
    let mut timed = 0;
    for _ in 0..TIMED_READS {
        let r = call(&mut client, blk::READ, [capacity / 2, blk::MAX_SECTORS, 0], &[]);
        if r.is_err() {
            c.fail(format_args!("timed blk0 READ: {r:?}"));
            break;
        }
        timed += 1;
    }
    if timed == TIMED_READS {
        let ticks = sys::counter().wrapping_sub(start) / TIMED_READS;
        let us = ticks * 1_000_000 / sys::counter_freq().max(1);
        println!("ktest: blk: ok: 64 KiB READ takes {us} us ({ticks} counter ticks) on average over {TIMED_READS}");
    }
    c.expect_eq("blk0 RELEASE", call(&mut client, blk::RELEASE, [0; 3], &[]).map(|_| ()), Ok(()));
    let _ = sys::cap_delete(conn);
    let second = check_read_only_blk1(&mut c, &ns);
    c.finish(format!("blk0: {capacity} sectors, {sectors} sectors written and read back, {refused} bad requests refused{second}"))
}

/// Waits until the file service's start-up mount of /disk has landed or given up.
fn wait_for_fs(c: &mut Checks) -> bool {
    match fs::wait_for_mounts((WAIT_MS / POLL_MS) as u32, POLL_MS * MS) {
        Ok(true) => true,
        Ok(false) => {
            c.fail(format_args!("the file service's mount of /disk still pending after {WAIT_MS} ms"));
            false
        }
        Err(e) => {
            c.fail(format_args!("fs PENDING_MOUNTS: {e}"));
            false
        }
    }
}

/// Whether `sector` (the first bytes of [`SCRATCH_SECTOR`]) carries [`SCRATCH_LABEL`].
pub fn is_scratch(sector: &[u8]) -> bool {
    sector.starts_with(SCRATCH_LABEL)
}

/// `client` may read blk0 but neither open it for writing nor write it (someone else writes
/// it). The WRITE puts back what the READ found, so even a wrongly accepted write changes nothing.
fn check_second_writer_refused(c: &mut Checks, client: &mut Client, who: &str) {
    let open = call(client, blk::OPEN_WRITE, [0; 3], &[]).map(|_| ());
    c.expect_eq(format_args!("blk0 OPEN_WRITE ({who})"), open, Err(Errno::Busy));
    match call(client, blk::READ, [0, 1, 0], &[]) {
        Ok((data, sector0)) => {
            c.expect_eq(format_args!("blk0 READ of sector 0 ({who}): payload length"), data[3], SECTOR);
            let write = call(client, blk::WRITE, [0, 1, 0], &sector0).map(|_| ());
            c.expect_eq(format_args!("blk0 WRITE of sector 0 ({who})"), write, Err(Errno::Busy));
        }
        Err(e) => c.fail(format_args!("blk0 READ of sector 0 ({who}): expected Ok, got {e}")),
    }
}

/// blk0 is not a scratch disk: never write it. If the file service mounted it (a user's disk
/// on /disk), check that a second writer is refused; otherwise refuse to go on.
fn check_foreign_disk(mut c: Checks, ns: &Namesrv) -> i32 {
    if !wait_for_fs(&mut c) {
        return c.finish("");
    }
    match fs::mounts().map(|m| m.lines().any(|l| l.starts_with("blk0 /disk "))) {
        Ok(true) => {}
        Ok(false) => {
            c.fail(format_args!(
                "blk0 has no scratch label in sector {SCRATCH_SECTOR} and the file service has not mounted it: \
                 not a disk this test may write; refusing to touch it"
            ));
            return c.finish("");
        }
        Err(e) => {
            c.fail(format_args!("fs MOUNTS: {e}"));
            return c.finish("");
        }
    }
    let before = c.failures();
    match ns.lookup("blk0") {
        Ok(conn) => {
            let mut client = Client::new(conn);
            check_second_writer_refused(&mut c, &mut client, "while fs has blk0 mounted on /disk");
            let _ = sys::cap_delete(conn);
        }
        Err(e) => c.fail(format_args!("namesrv LOOKUP blk0: {e:?}")),
    }
    if c.failures() == before {
        println!("ktest: blk: ok: blk0 is mounted by fs: another client's OPEN_WRITE and WRITE get EBUSY, its READ works");
    }
    c.finish("blk0: not a scratch disk, mounted by fs, not written")
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
