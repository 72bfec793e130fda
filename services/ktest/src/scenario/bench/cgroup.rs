//! The cgroup files, read and written the two ways a client reaches them, in a group the
//! benchmark makes (`mkdir`) and removes (`rmdir`) through resmgr:
//!
//! - `cgroup_read_resmgr`: one COMMAND `cat GROUP memory.current` to resmgr and its reply (the
//!   bulk buffer's copy in and out, resmgr's parse, one `quota_stat`, the number formatted);
//! - `cgroup_write_resmgr`: one COMMAND `set GROUP pids.max N`, N alternating between two values
//!   (the parse and one `quota_set`);
//! - `cgroup_read_file`: open + read + close of `/sys/fs/cgroup/GROUP/memory.current` through the
//!   file service, which asks resmgr for every step it cannot answer itself (the lookups of the
//!   group and the file check names against resmgr's listings, the read is a `cat`);
//! - `cgroup_write_file`: open(O_WRONLY | O_TRUNC) + write `N\n` + close of `pids.max` (the
//!   truncation does nothing; the write is a `set`).
//!
//! Each sample is one operation timed on its own with the counter: every step is a synchronous
//! call, so some CPU runs the path from the first counter read to the second, and no all-idle
//! stretch (which icount would skip, not count) falls inside a sample. The counter counts every
//! CPU, so the file service's and resmgr's instructions are in. After the writes, resmgr must
//! read back the last value written, and every read must be a number.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::errno::Errno;
use keel_rt::fs::{self, flags::*};
use keel_rt::ipc::{self, Client};
use keel_rt::proto::resmgr;
use keel_rt::{Slot, sys};

/// The group the benchmarks work in (below the root: resmgr's paths are absolute).
const GROUP: &str = "/ktest-bench";
/// The same group through the file service.
const GROUP_DIR: &str = "/sys/fs/cgroup/ktest-bench";
/// The two values the writes alternate between (a write of the value already set would still
/// set it, but alternating shows each write landed).
const PIDS_MAX: [u64; 2] = [50, 51];

/// Untimed operations before, and timed operations of, each benchmark.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub warmup: usize,
    pub samples: usize,
}

/// The four benchmarks' names, in the order [`measure`] returns their costs.
pub const NAMES: [&str; 4] = ["cgroup_read_resmgr", "cgroup_write_resmgr", "cgroup_read_file", "cgroup_write_file"];

/// Runs the four benchmarks in a fresh group and removes it: the costs of each, in [`NAMES`]'s
/// order, or what went wrong.
pub fn measure(conn: Slot, n: Counts) -> Result<[Vec<u64>; 4], String> {
    let mut rm = Client::new(conn);
    // A group left by an earlier run of the scenario in the same boot would fail the mkdir.
    let _ = command(&mut rm, &["rmdir", GROUP]);
    command(&mut rm, &["mkdir", GROUP])?;
    let costs = all(&mut rm, n);
    let removed = command(&mut rm, &["rmdir", GROUP]);
    let costs = costs?;
    removed?;
    Ok(costs)
}

fn all(rm: &mut Client, n: Counts) -> Result<[Vec<u64>; 4], String> {
    let read_rm = samples(n, |_| read_resmgr(rm))?;
    let write_rm = samples(n, |i| set_resmgr(rm, PIDS_MAX[i % 2]))?;
    expect_pids_max(rm, PIDS_MAX[(n.warmup + n.samples - 1) % 2], "set over resmgr")?;
    let read_file = samples(n, |_| read_file())?;
    // Start from the value the last resmgr write did not leave, so the file's first write changes it.
    let write_file = samples(n, |i| write_file(PIDS_MAX[(i + n.warmup + n.samples) % 2]))?;
    expect_pids_max(rm, PIDS_MAX[(2 * (n.warmup + n.samples) - 1) % 2], "written through the file service")?;
    Ok([read_rm, write_rm, read_file, write_file])
}

/// `warmup` untimed runs of `op`, then `samples` timed ones (each given its run's index, counting
/// the warm-up); the cost of each timed one.
fn samples(n: Counts, mut op: impl FnMut(usize) -> Result<(), String>) -> Result<Vec<u64>, String> {
    let mut costs = Vec::with_capacity(n.samples);
    for i in 0..n.warmup + n.samples {
        let start = sys::counter();
        op(i)?;
        let end = sys::counter();
        if i >= n.warmup {
            costs.push(end.wrapping_sub(start));
        }
    }
    Ok(costs)
}

/// One COMMAND to resmgr: the text it answers, or its error message.
fn command(rm: &mut Client, words: &[&str]) -> Result<String, String> {
    let payload = words.join("\0");
    let (r, text) = resmgr::call(rm, resmgr::COMMAND, payload.as_bytes()).map_err(|e| format!("resmgr {words:?}: {e}"))?;
    ipc::status(&r).map_err(|e| format!("resmgr {words:?}: {e}"))?;
    let text = String::from_utf8_lossy(&text).into_owned();
    if r.msg.data[1] == 0 { Ok(text) } else { Err(format!("resmgr {words:?}: {text}")) }
}

/// A control file's text as a number (`N\n`).
fn number(text: &str, what: &str) -> Result<u64, String> {
    text.strip_suffix('\n').and_then(|t| t.parse().ok()).ok_or_else(|| format!("{what}: {text:?} is not a number and a newline"))
}

fn read_resmgr(rm: &mut Client) -> Result<(), String> {
    let text = command(rm, &["cat", GROUP, "memory.current"])?;
    number(&text, "memory.current from resmgr").map(|_| ())
}

fn set_resmgr(rm: &mut Client, value: u64) -> Result<(), String> {
    command(rm, &["set", GROUP, "pids.max", &format!("{value}")]).map(|_| ())
}

fn expect_pids_max(rm: &mut Client, want: u64, how: &str) -> Result<(), String> {
    let got = number(&command(rm, &["cat", GROUP, "pids.max"])?, "pids.max")?;
    if got == want { Ok(()) } else { Err(format!("pids.max {how} reads {got}, not the last value written, {want}")) }
}

fn read_file() -> Result<(), String> {
    let path = format!("{GROUP_DIR}/memory.current");
    let why = |e: Errno| format!("{path}: {e}");
    let fd = fs::open(&path, O_RDONLY, 0).map_err(why)?;
    let mut buf = [0u8; 32];
    let read = fs::read(fd, &mut buf);
    fs::close(fd).map_err(why)?;
    let n = read.map_err(why)?;
    number(&String::from_utf8_lossy(&buf[..n]), &path).map(|_| ())
}

fn write_file(value: u64) -> Result<(), String> {
    let path = format!("{GROUP_DIR}/pids.max");
    let why = |e: Errno| format!("{path}: {e}");
    let text = format!("{value}\n");
    let fd = fs::open(&path, O_WRONLY | O_TRUNC, 0).map_err(why)?;
    let wrote = fs::write(fd, text.as_bytes());
    fs::close(fd).map_err(why)?;
    match wrote.map_err(why)? {
        n if n == text.len() => Ok(()),
        n => Err(format!("{path}: wrote {n} of {} bytes", text.len())),
    }
}
