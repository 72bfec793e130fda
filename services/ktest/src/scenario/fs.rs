//! `fs`: the file service through the libc-like client (`keel_rt::fs`), as a program uses it.
//!
//! On the root tmpfs (`/tmp`) and, when a disk is mounted, on ext2 (`/disk`): open/read/write/
//! lseek/close, stat/fstat, mkdir/rmdir/unlink/rename/readdir/truncate/fsync and their errno
//! errors; descriptor tables that belong to one session (a second connection cannot use the
//! first one's descriptors); sessions that gave up root meeting permission bits; two sessions
//! writing at once from two CPUs; malformed requests refused with EINVAL/EBADF/ENOSYS.

use super::{SEC, namesrv};
use crate::check::Checks;
use crate::worker::{self, cpu_mask};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::errno::Errno;
use keel_rt::fs::{self, flags::*, whence};
use keel_rt::ipc::Client;
use keel_rt::proto::{self, fs as p};
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, ipc};

/// Bytes of the large file: crosses ext2's direct, indirect and (1 KiB blocks) double-indirect
/// ranges, and several IPC buffers.
const LARGE: usize = 300 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 10) as u8).collect()
}

fn errno_ok<T>(c: &mut Checks, what: &str, r: Result<T, Errno>) -> Option<T> {
    match r {
        Ok(v) => {
            c.pass();
            Some(v)
        }
        Err(e) => {
            c.fail(format_args!("{what}: {e}"));
            None
        }
    }
}

fn errno_is<T: core::fmt::Debug>(c: &mut Checks, what: &str, r: Result<T, Errno>, want: Errno) {
    match r {
        Err(e) if e == want => c.pass(),
        other => c.fail(format_args!("{what}: got {other:?}, want {}", want.name())),
    }
}

/// Everything a program does with files, under `dir`.
fn exercise(c: &mut Checks, dir: &str) {
    let d = |rest: &str| format!("{dir}/{rest}");
    let _ = fs::mkdir(&d("ktest"), 0o755);
    let base = d("ktest");
    let f = format!("{base}/large");
    let data = pattern(LARGE, 7);
    if let Some(fd) = errno_ok(c, "creat large", fs::creat(&f, 0o644)) {
        c.expect_eq(format_args!("write {LARGE} bytes"), fs::write(fd, &data), Ok(LARGE));
        errno_ok(c, "fsync", fs::fsync(fd));
        errno_ok(c, "close", fs::close(fd));
    }
    c.expect_eq("read back the large file", fs::read_file(&f).ok().as_deref() == Some(&data[..]), true);
    if let Some(fd) = errno_ok(c, "open rdwr", fs::open(&f, O_RDWR, 0)) {
        c.expect_eq("lseek end", fs::lseek(fd, 0, whence::END), Ok(LARGE as u64));
        c.expect_eq("lseek set", fs::lseek(fd, 70_000, whence::SET), Ok(70_000));
        let mut buf = [0u8; 10];
        c.expect_eq("read at 70000", fs::read(fd, &mut buf), Ok(10));
        c.expect_eq("bytes at 70000", &buf[..], &data[70_000..70_010]);
        c.expect_eq("pwrite", fs::pwrite(fd, b"XYZ", 5), Ok(3));
        c.expect_eq("fstat size", fs::fstat(fd).map(|s| s.size), Ok(LARGE as u64));
        errno_ok(c, "ftruncate", fs::ftruncate(fd, 4096));
        errno_is(c, "lseek before 0", fs::lseek(fd, -1, whence::SET), Errno::Inval);
        errno_ok(c, "close", fs::close(fd));
    }
    c.expect_eq("truncated size", fs::stat(&f).map(|s| s.size), Ok(4096));
    let head = fs::read_file(&f).unwrap_or_default();
    c.expect_eq("pwrite landed", head.get(5..8), Some(&b"XYZ"[..]));
    errno_ok(c, "truncate up", fs::truncate(&f, 10_000));
    let grown = fs::read_file(&f).unwrap_or_default();
    c.expect_eq("truncate up reads zeros", grown.len() == 10_000 && grown[4096..].iter().all(|&b| b == 0), true);

    // Directories, renames, links.
    errno_ok(c, "mkdir sub", fs::mkdir(&d("ktest/sub"), 0o755));
    errno_is(c, "mkdir again", fs::mkdir(&d("ktest/sub"), 0o755), Errno::Exist);
    errno_ok(c, "rename into sub", fs::rename(&f, &d("ktest/sub/moved")));
    errno_is(c, "old name gone", fs::stat(&f), Errno::NoEnt);
    errno_is(c, "rmdir non-empty", fs::rmdir(&d("ktest/sub")), Errno::NotEmpty);
    errno_is(c, "rename dir into itself", fs::rename(&d("ktest/sub"), &d("ktest/sub/x")), Errno::Inval);
    errno_ok(c, "symlink", fs::symlink("sub/moved", &d("ktest/link")));
    c.expect_eq("readlink", fs::readlink(&d("ktest/link")).as_deref(), Ok("sub/moved"));
    c.expect_eq("stat through link", fs::stat(&d("ktest/link")).map(|s| s.size), Ok(10_000));
    c.expect_eq("lstat of link", fs::lstat(&d("ktest/link")).map(|s| s.kind), Ok(p::KIND_SYMLINK));
    errno_ok(c, "hard link", fs::link(&d("ktest/sub/moved"), &d("ktest/hard")));
    c.expect_eq("two links", fs::stat(&d("ktest/hard")).map(|s| s.nlink), Ok(2));
    for i in 0..40 {
        let _ = fs::write_file(&d(&format!("ktest/sub/n{i:02}")), b"x");
    }
    let names: Vec<String> = fs::read_dir(&d("ktest/sub")).unwrap_or_default().into_iter().map(|e| e.name).collect();
    c.expect_eq("readdir count (40 + moved + . + ..)", names.len(), 43);
    c.expect_eq("readdir has n39", names.iter().any(|n| n == "n39"), true);

    // An unlinked file stays readable through an open descriptor.
    if let Some(fd) = errno_ok(c, "open hard", fs::open(&d("ktest/hard"), O_RDONLY, 0)) {
        errno_ok(c, "unlink hard", fs::unlink(&d("ktest/hard")));
        errno_ok(c, "unlink moved", fs::unlink(&d("ktest/sub/moved")));
        let mut buf = [0u8; 8];
        c.expect_eq("read unlinked", fs::read(fd, &mut buf), Ok(8));
        errno_ok(c, "close unlinked", fs::close(fd));
    }
    errno_is(c, "read closed fd", fs::read(99, &mut [0u8; 4]), Errno::BadF);
    errno_is(c, "open missing", fs::open(&d("ktest/none"), O_RDONLY, 0), Errno::NoEnt);
    errno_is(c, "open dir for write", fs::open(&base, O_WRONLY, 0), Errno::IsDir);
    errno_is(c, "dangling symlink", fs::stat(&d("ktest/link")), Errno::NoEnt);
    errno_is(c, "file as dir", fs::stat(&d("ktest/sub/n00/x")), Errno::NotDir);

    // Clean up, as a program should.
    for i in 0..40 {
        let _ = fs::unlink(&d(&format!("ktest/sub/n{i:02}")));
    }
    errno_ok(c, "unlink link", fs::unlink(&d("ktest/link")));
    errno_ok(c, "rmdir sub", fs::rmdir(&d("ktest/sub")));
    errno_ok(c, "rmdir base", fs::rmdir(&base));
}

/// A second connection to the service: its own session, as another process would have.
fn session(ns: Slot) -> Option<Client> {
    ipc::lookup(ns, "fs", 50, 20_000_000).ok().map(Client::new)
}

fn raw_open(cl: &mut Client, path: &str, flags: u32, mode: u64) -> Result<u64, Errno> {
    let (r, _) = cl.call_bulk(p::OPEN, [flags as u64, mode, 0], path.as_bytes()).map_err(|_| Errno::Io)?;
    proto::errno_status(&r).map(|m| m.data[0])
}

fn raw(cl: &Client, label: u64, data: [u64; 4]) -> Result<[u64; 4], Errno> {
    let r = cl.call(label, data).map_err(|_| Errno::Io)?;
    proto::errno_status(&r).map(|m| m.data)
}

fn sessions_and_permissions(c: &mut Checks, ns: Slot) {
    let Some(mut a) = session(ns) else { return c.fail("a second session: lookup of fs failed") };
    let Some(mut b) = session(ns) else { return c.fail("a third session: lookup of fs failed") };
    let Some(fd) = errno_ok(c, "session a: open", raw_open(&mut a, "/tmp/shared", O_RDWR | O_CREAT, 0o600)) else { return };
    errno_is(c, "session b cannot use a's descriptor", raw(&b, p::CLOSE, [fd, 0, 0, 0]), Errno::BadF);
    errno_ok(c, "session b drops root", raw(&b, p::SETUID, [1000, 1000, 0, 0]).map(|_| ()));
    errno_is(c, "uid 1000 reading a 0600 root file", raw_open(&mut b, "/tmp/shared", O_RDONLY, 0), Errno::Acces);
    errno_is(c, "uid 1000 cannot become root again", raw(&b, p::SETUID, [0, 0, 0, 0]), Errno::Perm);
    errno_is(c, "uid 1000 cannot mount", b.call_bulk(p::MOUNT, [0; 3], b"blk0\0/tmp").map_err(|_| Errno::Io).and_then(|(r, _)| proto::errno_status(&r)), Errno::Perm);
    errno_ok(c, "uid 1000 creates in sticky /tmp", raw_open(&mut b, "/tmp/users", O_WRONLY | O_CREAT, 0o644).map(|_| ()));
    // Malformed requests.
    errno_is(c, "unknown label", raw(&a, 999, [0; 4]), Errno::NoSys);
    errno_is(c, "fd out of range", raw(&a, p::CLOSE, [u64::MAX, 0, 0, 0]), Errno::BadF);
    errno_is(c, "mode out of range", a.call_bulk(p::MKDIR, [0o177777, 0, 0], b"/tmp/m").map_err(|_| Errno::Io).and_then(|(r, _)| proto::errno_status(&r)), Errno::Inval);
    errno_is(c, "path not UTF-8", a.call_bulk(p::STAT, [1, 0, 0], &[0x2f, 0xff, 0xfe]).map_err(|_| Errno::Io).and_then(|(r, _)| proto::errno_status(&r)), Errno::Inval);
    errno_is(c, "relative path", a.call_bulk(p::STAT, [1, 0, 0], b"tmp").map_err(|_| Errno::Io).and_then(|(r, _)| proto::errno_status(&r)), Errno::Inval);
    errno_is(c, "rename with one path", a.call_bulk(p::RENAME, [0; 3], b"/tmp/shared").map_err(|_| Errno::Io).and_then(|(r, _)| proto::errno_status(&r)), Errno::Inval);
    // Ending session a closes its descriptor.
    errno_ok(c, "end session a", raw(&a, p::END_SESSION, [0; 4]).map(|_| ()));
    errno_is(c, "a's descriptor is gone", raw(&a, p::CLOSE, [fd, 0, 0, 0]), Errno::BadF);
    let _ = fs::unlink("/tmp/shared");
    let _ = fs::unlink("/tmp/users");
}

/// Two sessions on two CPUs writing their own files at once; both read back intact.
fn concurrent_writers(c: &mut Checks, ns: Slot, dir: &'static str) {
    let mut workers = Vec::new();
    for (cpu, seed) in [(0u32, 1u8), (1, 2)] {
        let w = worker::start(cpu_mask(cpu), move || -> Result<bool, Error> {
            let mut cl = session(ns).ok_or(Error::NotFound)?;
            let path = format!("{dir}/writer{seed}");
            let fd = raw_open(&mut cl, &path, O_WRONLY | O_CREAT | O_TRUNC, 0o644).map_err(|_| Error::Invalid)?;
            let data = pattern(200 * 1024, seed);
            for chunk in data.chunks(8192) {
                let (r, _) = cl.call_bulk(p::WRITE, [fd, 0, 0], chunk)?;
                if proto::errno_status(&r).is_err() {
                    return Ok(false);
                }
            }
            raw(&cl, p::CLOSE, [fd, 0, 0, 0]).map_err(|_| Error::Invalid)?;
            Ok(true)
        });
        if let Some(w) = c.expect_ok(format_args!("start writer {seed}"), w) {
            workers.push(w);
        }
    }
    for w in workers {
        let r = w.join(120 * SEC);
        c.expect_eq("writer finished", matches!(r, Ok(Ok(true))), true);
    }
    for seed in [1u8, 2] {
        let path = format!("{dir}/writer{seed}");
        c.expect_eq(format_args!("{path} intact"), fs::read_file(&path).ok() == Some(pattern(200 * 1024, seed)), true);
        let _ = fs::unlink(&path);
    }
}

/// Whether `/disk` is mounted: if the block service has a `blk0`, waits (up to 10 s) for the
/// file service's background mount.
pub(crate) fn disk_mounted(ns: Slot) -> bool {
    let mounted = || fs::mounts().map(|m| m.lines().any(|l| l.split(' ').nth(1) == Some("/disk"))).unwrap_or(false);
    if ipc::lookup(ns, "blk0", 10, 20_000_000).is_err() {
        return false;
    }
    for _ in 0..100 {
        if mounted() {
            return true;
        }
        keel_rt::sys::sleep_ns(100_000_000);
    }
    false
}

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("fs");
    let Some(ns) = namesrv(&mut c, startup) else { return c.finish("no namesrv") };
    let ns = ns.slot();
    exercise(&mut c, "/tmp");
    let disk = disk_mounted(ns);
    if disk {
        exercise(&mut c, "/disk");
        concurrent_writers(&mut c, ns, "/disk");
    }
    concurrent_writers(&mut c, ns, "/tmp");
    sessions_and_permissions(&mut c, ns);
    errno_ok(&mut c, "sync", fs::sync());
    c.finish(if disk { "tmpfs and ext2 on /disk" } else { "tmpfs only (no disk)" })
}
