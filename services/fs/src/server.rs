//! The file service's protocol (`keel_rt::proto::fs`): decode a request, run it on the VFS,
//! encode the reply.
//!
//! Every request is decoded here, once: a path that is not UTF-8, a missing second path, a
//! descriptor that does not fit an `i32`, flags or modes out of range all become `EINVAL`
//! before the VFS is touched. Each client badge is a session, made (as root) at its first
//! request. Disks come from a [`Disks`] source: the virtio-blk service under Keel, memory
//! disks in the tests.
//!
//! Sessions of clients that die: `keel_rt::ipc::serve` watches every client's process (sent
//! with its bulk-buffer setup) and, when one exits, hands us `LABEL_CLIENT_GONE` with its badge;
//! the session and its open files are closed then, as END_SESSION would have (a client that
//! crashes or is killed never sends that). Clients cannot send that label themselves.

use crate::node::{FileSystem, Kind};
use crate::vfs::{Cred, Fd, Stat as VStat, Vfs, entry_size};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use keel_rt::abi::ipc::Message;
use keel_rt::errno::Errno;
use keel_rt::ipc::BULK_SIZE;
use keel_rt::proto::{self, fs as p};

/// Where the file systems on disks come from.
pub trait Disks {
    /// The file system on block device `device` (`blk0`), ready to mount.
    fn attach(&mut self, device: &str, read_only: bool) -> Result<Box<dyn FileSystem>, Errno>;
}

/// Who among the clients is an administrator (may change the cgroup files).
pub trait Admins: Send {
    fn is_admin(&mut self, sid: u64) -> bool;
}

/// Every client is: the file service as a library, and tests that are not about it.
pub struct EveryoneAdmin;

impl Admins for EveryoneAdmin {
    fn is_admin(&mut self, _sid: u64) -> bool {
        true
    }
}

/// Whether a request may change the tree (a session is asked whether it is an administrator
/// before its first such request).
fn changes(label: u64) -> bool {
    matches!(
        label,
        p::OPEN | p::MKDIR | p::RMDIR | p::UNLINK | p::RENAME | p::SYMLINK | p::LINK | p::TRUNCATE | p::FTRUNCATE | p::CHMOD | p::CHOWN | p::SETUID
    )
}

/// The service state: the tree and where disks come from.
pub struct Server<D: Disks> {
    pub vfs: Vfs,
    pub disks: D,
    /// Who may change the cgroup files.
    pub admins: Box<dyn Admins>,
    /// Bytes of tmpfs capacity not yet given to a mount: every tmpfs's data together stays
    /// within what the service's heap can hold beside everything else.
    pub tmpfs_free: u64,
    /// The size of a tmpfs mounted without one.
    pub tmpfs_default: u64,
}

/// Inodes of a tmpfs mounted with MOUNT.
pub const TMPFS_INODES: u64 = 65536;

/// A tmpfs's default size for a machine with `ram` bytes: an eighth of RAM, at most `most`, at
/// least 1 MiB.
pub fn default_tmpfs_size(ram: u64, most: u64) -> u64 {
    (ram / 8).min(most).max(1 << 20)
}

/// A kind as the protocol numbers it.
pub fn wire_kind(kind: Kind) -> u8 {
    match kind {
        Kind::File => p::KIND_FILE,
        Kind::Dir => p::KIND_DIR,
        Kind::Symlink => p::KIND_SYMLINK,
        Kind::Other => p::KIND_OTHER,
    }
}

/// `stat` as the protocol carries it.
pub fn stat_record(s: &VStat) -> p::Stat {
    let a = &s.attr;
    p::Stat {
        dev: s.dev,
        ino: a.ino,
        kind: wire_kind(a.kind),
        perm: a.perm & 0o7777,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
    }
}

fn path(payload: &[u8]) -> Result<&str, Errno> {
    let s = core::str::from_utf8(payload).map_err(|_| Errno::Inval)?;
    if s.is_empty() || s.contains('\0') {
        return Err(Errno::Inval);
    }
    Ok(s)
}

fn pair(payload: &[u8]) -> Result<(&str, &str), Errno> {
    p::split_pair(payload).ok_or(Errno::Inval)
}

fn fd(word: u64) -> Result<Fd, Errno> {
    i32::try_from(word).map_err(|_| Errno::BadF)
}

fn mode(word: u64) -> Result<u16, Errno> {
    u16::try_from(word)
        .ok()
        .filter(|&m| m <= 0o7777)
        .ok_or(Errno::Inval)
}

fn id(word: u64) -> Result<u32, Errno> {
    u32::try_from(word).map_err(|_| Errno::Inval)
}

fn len(word: u64) -> usize {
    word.min(BULK_SIZE) as usize
}

impl<D: Disks> Server<D> {
    pub fn new(vfs: Vfs, disks: D) -> Self {
        Server {
            vfs,
            disks,
            admins: Box::new(EveryoneAdmin),
            tmpfs_free: 0,
            tmpfs_default: 0,
        }
    }

    /// With `budget` bytes for tmpfs mounts (beyond the root), `default` for one given no size.
    pub fn with_tmpfs(mut self, budget: u64, default: u64) -> Self {
        self.tmpfs_free = budget;
        self.tmpfs_default = default;
        self
    }

    /// Mounts a new tmpfs of `size` bytes (0: the default) at `point`: `NoMem` if that is more
    /// than the tmpfs budget has left.
    pub fn mount_tmpfs(&mut self, point: &str, size: u64, read_only: bool) -> Result<(), Errno> {
        // Whole pages, as statfs counts it (and gives it back at unmount).
        let size = if size == 0 {
            self.tmpfs_default.min(self.tmpfs_free)
        } else {
            size.checked_next_multiple_of(4096).ok_or(Errno::NoMem)?
        };
        if size == 0 || size > self.tmpfs_free {
            return Err(Errno::NoMem);
        }
        self.vfs.mount(
            point,
            Box::new(crate::tmpfs::Tmpfs::new(size, TMPFS_INODES)),
            "tmpfs",
            read_only,
        )?;
        self.tmpfs_free -= size;
        Ok(())
    }

    /// Handles one request from session `sid`; the reply message (label 0 or `-errno`) with its
    /// payload in `out`.
    pub fn handle(
        &mut self,
        sid: u64,
        msg: &Message,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Message {
        out.clear();
        if msg.label == p::END_SESSION {
            self.vfs.close_session(sid);
            return Message::new(0, [0; 4]);
        }
        if msg.label == keel_rt::ipc::LABEL_CLIENT_GONE {
            if self.vfs.has_session(sid) {
                let open = self.vfs.open_count(sid);
                self.vfs.close_session(sid);
                keel_rt::println!(
                    "fs: client {sid:#x} exited; closed its session and {open} open files"
                );
            }
            return Message::new(0, [0; 4]);
        }
        if !self.vfs.has_session(sid) {
            if let Err(e) = self.vfs.open_session(sid, Cred::CLIENT) {
                return Message::new(proto::errno_label(e), [0; 4]);
            }
        }
        // Whether the client is an administrator, asked once, at its first call that may change
        // something (init's shutdown call never asks: procmgr, which would answer, is waiting
        // for it).
        if changes(msg.label) && !self.vfs.admin_known(sid) {
            let admin = self.admins.is_admin(sid);
            self.vfs.set_admin(sid, admin);
        }
        match self.dispatch(sid, msg, payload, out) {
            Ok(data) => Message::new(0, data),
            Err(e) => {
                out.clear();
                Message::new(proto::errno_label(e), [0; 4])
            }
        }
    }

    fn dispatch(
        &mut self,
        sid: u64,
        msg: &Message,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<[u64; 4], Errno> {
        let d = msg.data;
        let v = &mut self.vfs;
        const OK: [u64; 4] = [0; 4];
        match msg.label {
            p::OPEN => {
                let flags = u32::try_from(d[0]).map_err(|_| Errno::Inval)?;
                v.open(sid, path(payload)?, flags, mode(d[1])?)
                    .map(|fd| [fd as u64, 0, 0, 0])
            }
            p::CLOSE => v.close(sid, fd(d[0])?).map(|_| OK),
            p::READ | p::PREAD => {
                let fd = fd(d[0])?;
                out.resize(len(d[1]), 0);
                let n = if msg.label == p::READ {
                    v.read(sid, fd, out)?
                } else {
                    v.pread(sid, fd, d[2], out)?
                };
                out.truncate(n);
                Ok([0, 0, 0, n as u64])
            }
            p::WRITE => v
                .write(sid, fd(d[0])?, payload)
                .map(|n| [n as u64, 0, 0, 0]),
            p::PWRITE => v
                .pwrite(sid, fd(d[0])?, d[2], payload)
                .map(|n| [n as u64, 0, 0, 0]),
            p::LSEEK => {
                let whence = u32::try_from(d[2]).map_err(|_| Errno::Inval)?;
                v.lseek(sid, fd(d[0])?, d[1] as i64, whence)
                    .map(|o| [o, 0, 0, 0])
            }
            p::STAT => self.reply_stat(|v| v.stat(sid, path(payload)?, d[0] == 1), out),
            p::FSTAT => self.reply_stat(|v| v.fstat(sid, fd(d[0])?), out),
            p::MKDIR => v.mkdir(sid, path(payload)?, mode(d[0])?).map(|_| OK),
            p::RMDIR => v.rmdir(sid, path(payload)?).map(|_| OK),
            p::UNLINK => v.unlink(sid, path(payload)?).map(|_| OK),
            p::RENAME => pair(payload)
                .and_then(|(a, b)| v.rename(sid, a, b))
                .map(|_| OK),
            p::SYMLINK => pair(payload)
                .and_then(|(t, l)| v.symlink(sid, t, l))
                .map(|_| OK),
            p::LINK => pair(payload)
                .and_then(|(a, b)| v.link(sid, a, b))
                .map(|_| OK),
            p::READLINK => {
                let target = v.readlink(sid, path(payload)?)?;
                out.extend_from_slice(target.as_bytes());
                Ok([0, 0, 0, out.len() as u64])
            }
            p::READDIR => {
                for e in v.readdir(sid, fd(d[0])?, BULK_SIZE as usize)? {
                    debug_assert!(out.len() + entry_size(&e.name) <= BULK_SIZE as usize);
                    p::put_entry(out, e.ino, wire_kind(e.kind), &e.name);
                }
                Ok([0, 0, 0, out.len() as u64])
            }
            p::TRUNCATE => v.truncate(sid, path(payload)?, d[0]).map(|_| OK),
            p::FTRUNCATE => v.ftruncate(sid, fd(d[0])?, d[1]).map(|_| OK),
            p::FSYNC => v.fsync(sid, fd(d[0])?).map(|_| OK),
            p::SYNC => v.sync().map(|_| OK),
            p::PENDING_MOUNTS => Ok([v.pending_mounts() as u64, 0, 0, 0]),
            p::STATFS => {
                let s = v.statfs(sid, path(payload)?)?;
                let rec = p::StatFs {
                    block_size: s.block_size as u64,
                    blocks: s.blocks,
                    free_blocks: s.free_blocks,
                    files: s.files,
                    free_files: s.free_files,
                    name_max: s.name_max as u64,
                };
                out.extend_from_slice(&rec.encode());
                Ok([0, 0, 0, out.len() as u64])
            }
            p::MOUNTS => {
                let mut text = String::new();
                for m in v.mounts() {
                    let _ = writeln!(
                        text,
                        "{} {} {} {}",
                        m.source,
                        m.point,
                        m.fs_type,
                        if m.read_only { "ro" } else { "rw" }
                    );
                }
                out.extend_from_slice(text.as_bytes());
                Ok([0, 0, 0, out.len() as u64])
            }
            p::CHMOD => v.chmod(sid, path(payload)?, mode(d[0])?).map(|_| OK),
            p::CHOWN => v
                .chown(sid, path(payload)?, id(d[0])?, id(d[1])?)
                .map(|_| OK),
            p::CHDIR => v.check_dir(sid, path(payload)?).map(|_| OK),
            p::SETUID => v.set_user(sid, id(d[0])?, id(d[1])?).map(|_| OK),
            p::MOUNT => {
                let (device, point) = pair(payload)?;
                self.root_only(sid)?;
                if device == "tmpfs" {
                    self.mount_tmpfs(point, d[1], d[0] == 1).map(|_| OK)
                } else {
                    self.mount_disk(device, point, d[0] == 1).map(|_| OK)
                }
            }
            p::UNMOUNT => {
                self.root_only(sid)?;
                self.unmount(path(payload)?).map(|_| OK)
            }
            // Only init (which holds the connection with this badge), whatever uid a client has.
            p::SHUTDOWN if sid != p::SHUTDOWN_BADGE => Err(Errno::Perm),
            p::SHUTDOWN => self.shutdown().map(|_| OK),
            _ => Err(Errno::NoSys),
        }
    }

    fn reply_stat(
        &mut self,
        f: impl FnOnce(&mut Vfs) -> Result<VStat, Errno>,
        out: &mut Vec<u8>,
    ) -> Result<[u64; 4], Errno> {
        let s = f(&mut self.vfs)?;
        out.extend_from_slice(&stat_record(&s).encode());
        Ok([0, 0, 0, out.len() as u64])
    }

    fn root_only(&self, sid: u64) -> Result<(), Errno> {
        if self.vfs.cred(sid)?.uid == 0 {
            Ok(())
        } else {
            Err(Errno::Perm)
        }
    }

    /// Mounts the file system on `device` at `point`.
    pub fn mount_disk(&mut self, device: &str, point: &str, read_only: bool) -> Result<(), Errno> {
        let fs = self.disks.attach(device, read_only)?;
        self.vfs.mount(point, fs, device, read_only)
    }

    /// Unmounts `point`, leaving its medium clean.
    pub fn unmount(&mut self, point: &str) -> Result<(), Errno> {
        let mut fs = self.vfs.unmount(point)?;
        if fs.fs_type() == "tmpfs" {
            if let Ok(st) = fs.statfs() {
                self.tmpfs_free += st.blocks * u64::from(st.block_size);
            }
        }
        fs.unmount()
    }

    /// Before power-off: ends every session (closing all files), then unmounts every disk,
    /// deepest first; the first error, after trying them all.
    pub fn shutdown(&mut self) -> Result<(), Errno> {
        self.vfs.close_all_sessions();
        let mut result = self.vfs.sync();
        for point in self.vfs.mount_points() {
            if let Err(e) = self.unmount(&point) {
                result = result.and(Err(e));
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tmpfs::Tmpfs;
    use crate::vfs::flags::{O_CREAT, O_RDWR};
    use keel_rt::proto::errno_label;

    struct NoDisks;
    impl Disks for NoDisks {
        fn attach(&mut self, _: &str, _: bool) -> Result<Box<dyn FileSystem>, Errno> {
            Err(Errno::NoEnt)
        }
    }

    #[test]
    fn a_dead_clients_session_and_open_files_are_freed_and_others_kept() {
        let mut s = Server::new(
            Vfs::new(Box::new(Tmpfs::new(1 << 20, 100)), "rootfs"),
            NoDisks,
        );
        let mut out = Vec::new();
        let open = |s: &mut Server<NoDisks>, sid: u64, path: &[u8], out: &mut Vec<u8>| {
            s.handle(
                sid,
                &Message::new(p::OPEN, [(O_RDWR | O_CREAT) as u64, 0o644, 0, 0]),
                path,
                out,
            )
        };
        let (dead, alive) = (0x1_0000_0007, 0x1_0000_0008);
        assert_eq!(open(&mut s, dead, b"/a", &mut out).label, 0);
        assert_eq!(open(&mut s, dead, b"/b", &mut out).label, 0);
        let kept = open(&mut s, alive, b"/c", &mut out);
        assert_eq!(kept.label, 0);
        // An unlinked file the dead client still held open goes once its session does.
        assert_eq!(
            s.handle(alive, &Message::new(p::UNLINK, [0; 4]), b"/a", &mut out)
                .label,
            0
        );
        assert_eq!(s.vfs.open_count(dead), 2);
        let gone = Message::new(keel_rt::ipc::LABEL_CLIENT_GONE, [0; 4]);
        assert_eq!(s.handle(dead, &gone, &[], &mut out).label, 0);
        assert!(!s.vfs.has_session(dead));
        assert_eq!(s.vfs.open_count(dead), 0);
        // The other client's session and descriptor are untouched; a second notice is harmless.
        assert_eq!(s.vfs.open_count(alive), 1);
        assert_eq!(
            s.handle(
                alive,
                &Message::new(p::WRITE, [kept.data[0], 0, 0, 0]),
                b"xyz",
                &mut out
            )
            .data[0],
            3
        );
        assert_eq!(s.handle(dead, &gone, &[], &mut out).label, 0);
        assert!(!s.vfs.has_session(dead));
    }

    #[test]
    fn tmpfs_mounts_share_a_budget_that_unmounting_gives_back() {
        let mut s = Server::new(
            Vfs::new(Box::new(Tmpfs::new(1 << 20, 100)), "rootfs"),
            NoDisks,
        )
        .with_tmpfs(3 << 20, 2 << 20);
        let mut out = Vec::new();
        let mut call = |s: &mut Server<NoDisks>, label: u64, data: [u64; 4], payload: &[u8]| {
            s.handle(7, &Message::new(label, data), payload, &mut out)
                .label
        };
        for d in [&b"/a"[..], b"/b"] {
            assert_eq!(call(&mut s, p::MKDIR, [0o755, 0, 0, 0], d), 0);
        }
        assert_eq!(
            call(&mut s, p::MOUNT, [0; 4], b"tmpfs\0/a"),
            0,
            "the default size (2 MiB) fits"
        );
        assert_eq!(
            call(&mut s, p::MOUNT, [0, 2 << 20, 0, 0], b"tmpfs\0/b"),
            errno_label(Errno::NoMem),
            "1 MiB is left"
        );
        assert_eq!(call(&mut s, p::MOUNT, [0, 1 << 20, 0, 0], b"tmpfs\0/b"), 0);
        assert_eq!(s.tmpfs_free, 0);
        // The new tmpfs holds 1 MiB: a bigger write is ENOSPC and leaves the file as it was.
        let fd = s
            .handle(
                7,
                &Message::new(p::OPEN, [(O_RDWR | O_CREAT) as u64, 0o644, 0, 0]),
                b"/b/f",
                &mut out,
            )
            .data[0];
        let chunk = alloc::vec![5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            let m = s.handle(7, &Message::new(p::WRITE, [fd, 0, 0, 0]), &chunk, &mut out);
            if m.label != 0 {
                assert_eq!(m.label, errno_label(Errno::NoSpc));
                break;
            }
            written += m.data[0];
        }
        assert_eq!(written, 1 << 20);
        assert_eq!(
            s.handle(7, &Message::new(p::CLOSE, [fd, 0, 0, 0]), b"", &mut out)
                .label,
            0
        );
        assert_eq!(
            s.handle(7, &Message::new(p::UNMOUNT, [0; 4]), b"/a", &mut out)
                .label,
            0
        );
        assert_eq!(s.tmpfs_free, 2 << 20, "unmounting /a gave its 2 MiB back");
        assert_eq!(
            s.handle(
                7,
                &Message::new(p::MOUNT, [0, 5000, 0, 0]),
                b"tmpfs\0/a",
                &mut out
            )
            .label,
            0
        );
        assert_eq!(
            s.tmpfs_free,
            (2 << 20) - 8192,
            "5000 bytes take two whole pages"
        );
    }
}
