//! Files, the libc way: `open`/`read`/`write`/`lseek`/`close`, `stat`, directories, links.
//!
//! Every call goes to the file service (`fs`, found through namesrv at the first call). The
//! service keeps this process's descriptor table and credentials (one session per process; the
//! runtime ends it when the program returns). Errors are [`Errno`] values. Relative paths are
//! taken from the working directory ([`chdir`]), which lives here, in the process.
//!
//! Reads and writes larger than one IPC buffer are split; `read` returns fewer bytes only at the
//! end of the file.

use crate::errno::Errno;
use crate::ipc::BULK_SIZE;
use crate::reconnect::{Retry, ServiceClient};
use crate::proto::{self, fs as p};
use crate::sync::Mutex;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use keel_abi::{Error, Slot};

pub use crate::proto::fs::{Stat, StatFs};

/// A file descriptor.
pub type Fd = i32;

/// `open` flags (Linux's values).
pub mod flags {
    pub const O_RDONLY: u32 = 0;
    pub const O_WRONLY: u32 = 1;
    pub const O_RDWR: u32 = 2;
    pub const O_ACCMODE: u32 = 3;
    pub const O_CREAT: u32 = 0o100;
    pub const O_EXCL: u32 = 0o200;
    pub const O_TRUNC: u32 = 0o1000;
    pub const O_APPEND: u32 = 0o2000;
    pub const O_DIRECTORY: u32 = 0o200000;
    pub const O_NOFOLLOW: u32 = 0o400000;
    /// Every flag the file service understands.
    pub const ALL: u32 = O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_DIRECTORY | O_NOFOLLOW;
}

/// `lseek` origins.
pub mod whence {
    pub const SET: u32 = 0;
    pub const CUR: u32 = 1;
    pub const END: u32 = 2;
}

/// One directory entry from [`readdir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    /// `proto::fs::KIND_*`.
    pub kind: u8,
    pub name: String,
}

struct State {
    namesrv: Option<Slot>,
    client: Option<ServiceClient>,
    cwd: String,
}

static STATE: Mutex<State> = Mutex::new(State { namesrv: None, client: None, cwd: String::new() });

/// Tells the library where namesrv is (the runtime does, from the startup block).
pub fn set_namesrv(slot: Option<Slot>) {
    STATE.lock().namesrv = slot;
}

/// Uses `conn`, a connection to the file service someone gave this program, instead of looking
/// the service up in namesrv (a program given no namesrv: a device backend). Should the file
/// service restart, calls fail rather than find it again.
pub fn set_connection(conn: Slot) {
    STATE.lock().client = Some(ServiceClient::from_slot(keel_abi::NO_SLOT, "fs", conn).paying());
}

fn transport(e: Error) -> Errno {
    match e {
        Error::NoMemory => Errno::NoMem,
        Error::NotFound => Errno::NoSys,
        // The file service died during a call that is not repeated (a write, a rename ...).
        Error::PeerDied => Errno::ConnReset,
        _ => Errno::Io,
    }
}

/// Whether a request may be sent again if the file service restarts while handling it: calls
/// that change nothing, or set a state that a second time leaves the same (the descriptor-based
/// ones then fail with EBADF, since the session went with the old service, which is the truth).
fn retry_of(label: u64, words: &[u64]) -> Retry {
    match label {
        p::STAT | p::FSTAT | p::READLINK | p::READDIR | p::SYNC | p::STATFS | p::MOUNTS | p::CHMOD | p::CHOWN | p::CHDIR
        | p::TRUNCATE | p::FTRUNCATE | p::FSYNC | p::PREAD | p::PWRITE | p::SHUTDOWN => Retry::Idempotent,
        p::OPEN if words.first().is_some_and(|&f| f as u32 & flags::O_EXCL == 0) => Retry::Idempotent,
        _ => Retry::Once,
    }
}

/// Runs `f` with the connection (looked up at the first call, found again when the file
/// service restarts); `f`'s outer error is a failed IPC.
fn with_client<T>(retry: Retry, mut f: impl FnMut(&mut ServiceClient, Retry) -> Result<Result<T, Errno>, Error>) -> Result<T, Errno> {
    let mut st = STATE.lock();
    if st.client.is_none() {
        let ns = st.namesrv.ok_or(Errno::NoSys)?;
        // The file service charges what it keeps for us (open files, file data) to our quota.
        st.client = Some(ServiceClient::new(ns, "fs").paying());
    }
    let client = st.client.as_mut().ok_or(Errno::Io)?;
    f(client, retry).map_err(transport)?
}

/// A call with a short message.
fn call(label: u64, data: [u64; 4]) -> Result<[u64; 4], Errno> {
    with_client(retry_of(label, &data), |c, retry| Ok(proto::errno_status(&c.call(retry, label, data)?).map(|m| m.data)))
}

/// A call with a payload; the reply's words and payload.
fn call_bulk(label: u64, words: [u64; 3], payload: &[u8]) -> Result<([u64; 4], Vec<u8>), Errno> {
    if payload.len() as u64 > BULK_SIZE {
        return Err(Errno::NameTooLong);
    }
    with_client(retry_of(label, &words), |c, retry| {
        let (r, out) = c.call_bulk(retry, label, words, payload)?;
        Ok(proto::errno_status(&r).map(|m| (m.data, out)))
    })
}

/// `path` made absolute against the working directory.
pub fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    let st = STATE.lock();
    let cwd = if st.cwd.is_empty() { "/" } else { st.cwd.as_str() };
    let mut s = String::with_capacity(cwd.len() + 1 + path.len());
    s.push_str(cwd);
    if !s.ends_with('/') {
        s.push('/');
    }
    s.push_str(path);
    s
}

fn path_call(label: u64, path: &str, words: [u64; 3]) -> Result<([u64; 4], Vec<u8>), Errno> {
    call_bulk(label, words, absolute(path).as_bytes())
}

fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(a.len() + b.len() + 1);
    v.extend_from_slice(a.as_bytes());
    v.push(0);
    v.extend_from_slice(b.as_bytes());
    v
}

fn fd_word(fd: Fd) -> Result<u64, Errno> {
    u64::try_from(fd).map_err(|_| Errno::BadF)
}

pub fn open(path: &str, oflags: u32, mode: u16) -> Result<Fd, Errno> {
    let (d, _) = path_call(p::OPEN, path, [oflags as u64, mode as u64, 0])?;
    i32::try_from(d[0]).map_err(|_| Errno::Io)
}

/// Creates (or truncates) a file for writing: `open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)`.
pub fn creat(path: &str, mode: u16) -> Result<Fd, Errno> {
    open(path, flags::O_WRONLY | flags::O_CREAT | flags::O_TRUNC, mode)
}

pub fn close(fd: Fd) -> Result<(), Errno> {
    call(p::CLOSE, [fd_word(fd)?, 0, 0, 0]).map(|_| ())
}

/// Reads up to `buf.len()` bytes; fewer only at the end of the file.
pub fn read(fd: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
    read_chunks(fd, buf, None)
}

/// Writes all of `data` (or fails).
pub fn write(fd: Fd, data: &[u8]) -> Result<usize, Errno> {
    write_chunks(fd, data, None)
}

/// Reads at `offset` without moving the file offset.
pub fn pread(fd: Fd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    read_chunks(fd, buf, Some(offset))
}

/// Writes at `offset` without moving the file offset.
pub fn pwrite(fd: Fd, data: &[u8], offset: u64) -> Result<usize, Errno> {
    write_chunks(fd, data, Some(offset))
}

/// READ (or PREAD at `offset`) one bulk buffer at a time until `buf` is full or the file ends.
fn read_chunks(fd: Fd, buf: &mut [u8], offset: Option<u64>) -> Result<usize, Errno> {
    let fdw = fd_word(fd)?;
    let mut done = 0;
    while done < buf.len() {
        let want = (buf.len() - done).min(BULK_SIZE as usize);
        let (_, bytes) = match offset {
            None => call_bulk(p::READ, [fdw, want as u64, 0], &[])?,
            Some(at) => call_bulk(p::PREAD, [fdw, want as u64, at + done as u64], &[])?,
        };
        let n = bytes.len().min(want);
        buf[done..done + n].copy_from_slice(&bytes[..n]);
        done += n;
        if n < want {
            break;
        }
    }
    Ok(done)
}

/// WRITE (or PWRITE at `offset`) one bulk buffer at a time; every byte or an error.
fn write_chunks(fd: Fd, data: &[u8], offset: Option<u64>) -> Result<usize, Errno> {
    let fdw = fd_word(fd)?;
    let mut done = 0u64;
    for chunk in data.chunks(BULK_SIZE as usize) {
        let (d, _) = match offset {
            None => call_bulk(p::WRITE, [fdw, 0, 0], chunk)?,
            Some(at) => call_bulk(p::PWRITE, [fdw, 0, at + done], chunk)?,
        };
        if d[0] != chunk.len() as u64 {
            return Err(Errno::Io);
        }
        done += chunk.len() as u64;
    }
    Ok(data.len())
}

pub fn lseek(fd: Fd, offset: i64, whence: u32) -> Result<u64, Errno> {
    call(p::LSEEK, [fd_word(fd)?, offset as u64, whence as u64, 0]).map(|d| d[0])
}

fn decode_stat(bytes: &[u8]) -> Result<Stat, Errno> {
    Stat::decode(bytes).ok_or(Errno::Io)
}

/// The attributes of what `path` names (following symlinks).
pub fn stat(path: &str) -> Result<Stat, Errno> {
    path_call(p::STAT, path, [1, 0, 0]).and_then(|(_, b)| decode_stat(&b))
}

/// Like [`stat`], but a final symlink is described itself.
pub fn lstat(path: &str) -> Result<Stat, Errno> {
    path_call(p::STAT, path, [0, 0, 0]).and_then(|(_, b)| decode_stat(&b))
}

pub fn fstat(fd: Fd) -> Result<Stat, Errno> {
    call_bulk(p::FSTAT, [fd_word(fd)?, 0, 0], &[]).and_then(|(_, b)| decode_stat(&b))
}

pub fn mkdir(path: &str, mode: u16) -> Result<(), Errno> {
    path_call(p::MKDIR, path, [mode as u64, 0, 0]).map(|_| ())
}

pub fn rmdir(path: &str) -> Result<(), Errno> {
    path_call(p::RMDIR, path, [0; 3]).map(|_| ())
}

pub fn unlink(path: &str) -> Result<(), Errno> {
    path_call(p::UNLINK, path, [0; 3]).map(|_| ())
}

pub fn rename(old: &str, new: &str) -> Result<(), Errno> {
    call_bulk(p::RENAME, [0; 3], &pair(&absolute(old), &absolute(new))).map(|_| ())
}

/// A symbolic link at `path` pointing to `target` (kept as given: relative targets are
/// resolved from the link's directory).
pub fn symlink(target: &str, path: &str) -> Result<(), Errno> {
    call_bulk(p::SYMLINK, [0; 3], &pair(target, &absolute(path))).map(|_| ())
}

pub fn readlink(path: &str) -> Result<String, Errno> {
    let (_, b) = path_call(p::READLINK, path, [0; 3])?;
    String::from_utf8(b).map_err(|_| Errno::Io)
}

/// A hard link `new` to `old`.
pub fn link(old: &str, new: &str) -> Result<(), Errno> {
    call_bulk(p::LINK, [0; 3], &pair(&absolute(old), &absolute(new))).map(|_| ())
}

/// The next entries of an open directory (`open(dir, O_RDONLY | O_DIRECTORY)`); empty at the end.
pub fn readdir(fd: Fd) -> Result<Vec<DirEntry>, Errno> {
    let (_, b) = call_bulk(p::READDIR, [fd_word(fd)?, 0, 0], &[])?;
    decode_entries(&b).ok_or(Errno::Io)
}

/// Decodes a READDIR reply payload.
pub fn decode_entries(mut b: &[u8]) -> Option<Vec<DirEntry>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let h = p::ENTRY_HEADER;
        if b.len() < h {
            return None;
        }
        let ino = u64::from_le_bytes(b[..8].try_into().ok()?);
        let (kind, len) = (b[8], b[9] as usize);
        let name = core::str::from_utf8(b.get(h..h + len)?).ok()?;
        out.push(DirEntry { ino, kind, name: name.to_string() });
        b = &b[h + len..];
    }
    Some(out)
}

/// Every entry of the directory at `path` (with `.` and `..`).
pub fn read_dir(path: &str) -> Result<Vec<DirEntry>, Errno> {
    let fd = open(path, flags::O_RDONLY | flags::O_DIRECTORY, 0)?;
    let mut all = Vec::new();
    let r = loop {
        match readdir(fd) {
            Ok(batch) if batch.is_empty() => break Ok(all),
            Ok(batch) => all.extend(batch),
            Err(e) => break Err(e),
        }
    };
    let _ = close(fd);
    r
}

pub fn truncate(path: &str, size: u64) -> Result<(), Errno> {
    path_call(p::TRUNCATE, path, [size, 0, 0]).map(|_| ())
}

pub fn ftruncate(fd: Fd, size: u64) -> Result<(), Errno> {
    call(p::FTRUNCATE, [fd_word(fd)?, size, 0, 0]).map(|_| ())
}

/// Makes the file's data and metadata durable.
pub fn fsync(fd: Fd) -> Result<(), Errno> {
    call(p::FSYNC, [fd_word(fd)?, 0, 0, 0]).map(|_| ())
}

/// Writes back every file system.
pub fn sync() -> Result<(), Errno> {
    call(p::SYNC, [0; 4]).map(|_| ())
}

pub fn statfs(path: &str) -> Result<StatFs, Errno> {
    let (_, b) = path_call(p::STATFS, path, [0; 3])?;
    StatFs::decode(&b).ok_or(Errno::Io)
}

/// How many of the mounts the file service makes at start (the disk on /disk) are still on
/// their way; their directories answer `Again` until they land.
pub fn pending_mounts() -> Result<u64, Errno> {
    call(p::PENDING_MOUNTS, [0; 4]).map(|d| d[0])
}

/// Waits until the file service's start-up mounts have landed (or given up), polling every
/// `pause_ns` at most `attempts` times; false if they were still pending at the end.
pub fn wait_for_mounts(attempts: u32, pause_ns: u64) -> Result<bool, Errno> {
    for _ in 0..attempts {
        if pending_mounts()? == 0 {
            return Ok(true);
        }
        crate::sys::sleep_ns(pause_ns);
    }
    Ok(pending_mounts()? == 0)
}

/// The mount table: one line per mount, `source point type rw|ro`.
pub fn mounts() -> Result<String, Errno> {
    let (_, b) = call_bulk(p::MOUNTS, [0; 3], &[])?;
    String::from_utf8(b).map_err(|_| Errno::Io)
}

pub fn chmod(path: &str, mode: u16) -> Result<(), Errno> {
    path_call(p::CHMOD, path, [mode as u64, 0, 0]).map(|_| ())
}

pub fn chown(path: &str, uid: u32, gid: u32) -> Result<(), Errno> {
    path_call(p::CHOWN, path, [uid as u64, gid as u64, 0]).map(|_| ())
}

/// Changes the working directory (checked with the file service).
pub fn chdir(path: &str) -> Result<(), Errno> {
    let abs = normalize(&absolute(path));
    call_bulk(p::CHDIR, [0; 3], abs.as_bytes())?;
    STATE.lock().cwd = abs;
    Ok(())
}

/// The working directory.
pub fn getcwd() -> String {
    let st = STATE.lock();
    if st.cwd.is_empty() { "/".to_string() } else { st.cwd.clone() }
}

/// Drops root: the session acts as `uid`/`gid` from now on.
pub fn setuid(uid: u32, gid: u32) -> Result<(), Errno> {
    call(p::SETUID, [uid as u64, gid as u64, 0, 0]).map(|_| ())
}

/// Mounts the ext2 file system on block device `device` (`blk0`) at `path`.
pub fn mount(device: &str, path: &str, read_only: bool) -> Result<(), Errno> {
    call_bulk(p::MOUNT, [read_only as u64, 0, 0], &pair(device, &absolute(path))).map(|_| ())
}

/// Mounts a new tmpfs of `size` bytes (0: the file service's default) at `path`.
pub fn mount_tmpfs(path: &str, size: u64, read_only: bool) -> Result<(), Errno> {
    call_bulk(p::MOUNT, [read_only as u64, size, 0], &pair("tmpfs", &absolute(path))).map(|_| ())
}

pub fn unmount(path: &str) -> Result<(), Errno> {
    path_call(p::UNMOUNT, path, [0; 3]).map(|_| ())
}

/// Writes back and unmounts every disk (before power-off).
pub fn shutdown() -> Result<(), Errno> {
    call(p::SHUTDOWN, [0; 4]).map(|_| ())
}

/// Ends this process's session (closing its files), if it has one. The runtime calls it at exit.
pub fn end_session() {
    let mut st = STATE.lock();
    if let Some(mut c) = st.client.take() {
        if let Some(conn) = c.connection() {
            let _ = conn.call(p::END_SESSION, [0; 4]);
        }
        c.disconnect();
    }
}

/// The whole file at `path`.
pub fn read_file(path: &str) -> Result<Vec<u8>, Errno> {
    let fd = open(path, flags::O_RDONLY, 0)?;
    let r = (|| {
        let size = fstat(fd)?.size;
        let mut buf = alloc::vec![0u8; usize::try_from(size).map_err(|_| Errno::FBig)?];
        let n = read(fd, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    })();
    let _ = close(fd);
    r
}

/// Replaces (or creates, mode 0644) the file at `path` with `data`.
pub fn write_file(path: &str, data: &[u8]) -> Result<(), Errno> {
    let fd = creat(path, 0o644)?;
    let r = write(fd, data).map(|_| ());
    let c = close(fd);
    r.and(c)
}

/// `path` without `.`, `..` and repeated slashes (textually; symlinks are not looked at).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut s = String::new();
    for c in parts {
        s.push('/');
        s.push_str(c);
    }
    if s.is_empty() { "/".to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute_and_normalized() {
        assert_eq!(absolute("/x"), "/x");
        assert_eq!(absolute("x"), "/x");
        assert_eq!(normalize("/a/./b//../c/"), "/a/c");
        assert_eq!(normalize("/.."), "/");
    }

    #[test]
    fn directory_entries_decode_and_garbage_is_refused() {
        let mut b = Vec::new();
        b.extend_from_slice(&7u64.to_le_bytes());
        b.push(proto::fs::KIND_DIR);
        b.push(3);
        b.extend_from_slice(b"abc");
        assert_eq!(decode_entries(&b), Some(alloc::vec![DirEntry { ino: 7, kind: 1, name: "abc".into() }]));
        b.push(1);
        assert_eq!(decode_entries(&b), None);
        assert_eq!(decode_entries(&b[..12]), None);
    }

    #[test]
    fn without_the_service_calls_fail_cleanly() {
        assert_eq!(open("/x", 0, 0), Err(Errno::NoSys));
        assert_eq!(close(-1), Err(Errno::BadF));
    }
}
