//! The VFS: one tree made of mounted file systems, the clients' open files, and the checks.
//!
//! It owns:
//! - the mount table: mount 0 is the root file system; every other mount covers a directory of
//!   an earlier one, and path walks cross into its root;
//! - path resolution: absolute paths only (clients join relative paths to their working
//!   directory), `.` and `..` (`..` at a mount's root goes to the directory under the mount
//!   point, never above `/`), symbolic links with at most [`MAX_SYMLINKS`] expansions per walk;
//! - permission checks: the owner, group and other `rwx` bits against the session's credentials
//!   (uid 0 may read and write anything and search any directory, as in Unix), the sticky bit of
//!   directories, read-only mounts;
//! - sessions (one per client process): credentials and a table of open files (descriptors);
//! - open-count bookkeeping: a file unlinked while open stays readable through its descriptors
//!   and is freed at the last close.
//!
//! A file system never sees a path or a credential; the VFS never sees a disk block.

use crate::billing::{Billing, FD_COST, Ledger, Lookup, NoBilling, Owned, Payer};
use crate::node::{Attr, DirEntry, FileSystem, Ino, Kind, NAME_MAX, NewNode, SetAttr, StatFs};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use keel_rt::errno::Errno;

/// Expansions of symbolic links one path walk may make (Linux's limit).
pub const MAX_SYMLINKS: u32 = 40;
/// The longest path accepted, in bytes.
pub const PATH_MAX: usize = 4096;
/// Open files one session may hold.
pub const MAX_FDS: usize = 256;
/// Sessions (client processes) at once.
pub const MAX_SESSIONS: usize = 4096;
/// The first descriptor handed out (0, 1 and 2 are left to the standard streams' convention).
pub const FIRST_FD: i32 = 3;

/// `open` flags and `lseek` origins (Linux's values), shared with the client library.
pub use keel_rt::fs::{flags, whence};

/// Who a session acts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
    /// May change what an administrators-only file system holds (the cgroup files): the
    /// service found out its client is an administrator (procmgr's ADMIN right). Root alone is
    /// not enough: every client starts as root in the file service.
    pub admin: bool,
}

impl Cred {
    pub const ROOT: Cred = Cred { uid: 0, gid: 0, admin: true };
    /// Root, not (yet) known to be an administrator: how a session starts.
    pub const CLIENT: Cred = Cred { uid: 0, gid: 0, admin: false };

    /// `uid`/`gid` as a session with `self` may become (SETUID): administrator only as root.
    pub fn become_user(self, uid: u32, gid: u32) -> Cred {
        Cred { uid, gid, admin: self.admin && uid == 0 }
    }
}

/// A session: one client's identity and descriptor table.
pub type SessionId = u64;
pub type Fd = i32;

/// Access wanted from the permission bits.
const R: u16 = 4;
const W: u16 = 2;
const X: u16 = 1;

/// Where an inode is: which mount, which inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Loc {
    mount: usize,
    ino: Ino,
}

struct Mount {
    point: String,
    source: String,
    fs: Box<dyn FileSystem>,
    read_only: bool,
    root: Ino,
    /// The directory this mount hides (None for the root mount).
    covers: Option<Loc>,
}

struct OpenFile {
    /// Charged [`FD_COST`] for it.
    payer: Option<Payer>,
    loc: Loc,
    readable: bool,
    writable: bool,
    append: bool,
    offset: u64,
    /// A directory's entries, read at the first `readdir` (with `.` and `..`).
    listing: Option<Vec<DirEntry>>,
    /// The inode `..` lists.
    parent: Ino,
}

struct Session {
    cred: Cred,
    fds: BTreeMap<Fd, OpenFile>,
    /// `cred.admin` was looked up ([`Vfs::set_admin`]).
    admin_known: bool,
    /// Who pays for what the session keeps (None: the service), once known.
    payer: Option<Payer>,
    payer_known: bool,
}

/// What `stat` returns: the inode's attributes and the mount it is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub attr: Attr,
}

/// One line of the mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    pub point: String,
    pub source: String,
    pub fs_type: &'static str,
    pub read_only: bool,
}

/// A walk's result: the directories from `/` down, and the last component's location.
struct Walk {
    /// The locations from the root to the parent of the last component.
    dirs: Vec<Loc>,
    /// The last component and what it names (None: it does not exist).
    name: String,
    target: Option<Loc>,
}

/// The VFS.
pub struct Vfs {
    mounts: Vec<Option<Mount>>,
    /// Directories hidden by a mount → that mount.
    covered: BTreeMap<Loc, usize>,
    sessions: BTreeMap<SessionId, Session>,
    /// Open descriptors per inode.
    open: BTreeMap<Loc, u32>,
    /// Inodes without links still open somewhere: freed at their last close.
    orphans: BTreeSet<Loc>,
    /// Directories a mount is on its way to (the disk at boot): nothing may go into them until
    /// it lands ([`Vfs::expect_mount`]), or what went in would be hidden by it.
    pending: BTreeSet<Loc>,
    now: u64,
    /// Who pays for what (the billing module).
    ledger: Ledger,
    /// Files whose data in memory a client pays for.
    owners: BTreeMap<Loc, Owned>,
}

impl Vfs {
    /// A tree whose root is `root`.
    pub fn new(root: Box<dyn FileSystem>, source: &str) -> Self {
        let ino = root.root();
        let m = Mount {
            point: "/".to_string(),
            source: source.to_string(),
            fs: root,
            read_only: false,
            root: ino,
            covers: None,
        };
        Vfs {
            mounts: alloc::vec![Some(m)],
            covered: BTreeMap::new(),
            sessions: BTreeMap::new(),
            open: BTreeMap::new(),
            orphans: BTreeSet::new(),
            pending: BTreeSet::new(),
            now: 0,
            ledger: Ledger::new(Box::new(NoBilling)),
            owners: BTreeMap::new(),
        }
    }

    /// Charges clients for what is kept for them through `billing` (crate::billing).
    pub fn set_billing(&mut self, billing: Box<dyn Billing>) {
        self.ledger.billing = billing;
    }

    /// Payers with something charged (their sessions, files they own).
    pub fn payers(&self) -> usize {
        self.ledger.payers()
    }

    /// Who pays for session `sid`, asked of the billing until it knows.
    fn session_payer(&mut self, sid: SessionId) -> Option<Payer> {
        let s = self.sessions.get(&sid)?;
        if s.payer_known {
            return s.payer;
        }
        let (payer, known) = match self.ledger.billing.payer(sid) {
            Lookup::Pays(p) => (Some(p), true),
            Lookup::DoesNot => (None, true),
            Lookup::NotYet => (None, false),
        };
        if let Some(p) = payer {
            self.ledger.hold(p);
        }
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.payer = payer;
            s.payer_known = known;
        }
        payer
    }

    /// The bytes file `loc`'s data holds in memory, if its file system charges for them.
    fn allocated(&mut self, loc: Loc) -> Option<u64> {
        self.fs(loc.mount).ok()?.allocated(loc.ino)
    }

    /// Charges file `loc`'s owner for what its data holds now.
    fn settle(&mut self, loc: Loc) {
        let Some(mut owned) = self.owners.get(&loc).copied() else { return };
        let allocated = self.allocated(loc).unwrap_or(0);
        self.ledger.settle(&mut owned, allocated);
        self.owners.insert(loc, owned);
    }

    /// File `loc` is freed: its owner pays no more.
    fn disown(&mut self, loc: Loc) {
        if let Some(o) = self.owners.remove(&loc) {
            self.ledger.billing.refund(o.payer, o.charged);
            self.ledger.drop_ref(o.payer);
        }
    }

    /// Writes `data` at `offset` of file `loc` for session `sid`, its owner (or `sid`'s payer,
    /// for a file nobody pays for yet) charged first for every chunk the write may fill, then
    /// settled to what it did.
    fn write_billed(&mut self, sid: SessionId, loc: Loc, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        if data.is_empty() || self.allocated(loc).is_none() {
            return self.fs(loc.mount)?.write(loc.ino, offset, data);
        }
        let owned = match self.owners.get(&loc) {
            Some(o) => Some(*o),
            None => self.session_payer(sid).map(|payer| {
                self.ledger.hold(payer);
                Owned { payer, charged: 0 }
            }),
        };
        let Some(owned) = owned else { return self.fs(loc.mount)?.write(loc.ino, offset, data) };
        let charged = self.owners.entry(loc).or_insert(owned);
        let chunk = crate::chunks::CHUNK as u64;
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::FBig)?;
        let bound = ((end - 1) / chunk - offset / chunk + 1) * chunk;
        self.ledger.billing.charge(owned.payer, bound).map_err(|_| Errno::NoMem)?;
        charged.charged += bound;
        let r = self.fs(loc.mount)?.write(loc.ino, offset, data);
        self.settle(loc);
        r
    }

    /// The clock for timestamps (seconds since the epoch).
    pub fn set_time(&mut self, now: u64) {
        self.now = now;
    }

    fn mount_at(&self, m: usize) -> Result<&Mount, Errno> {
        self.mounts
            .get(m)
            .and_then(Option::as_ref)
            .ok_or(Errno::NoEnt)
    }

    fn fs(&mut self, m: usize) -> Result<&mut dyn FileSystem, Errno> {
        let now = self.now;
        let mount = self
            .mounts
            .get_mut(m)
            .and_then(Option::as_mut)
            .ok_or(Errno::NoEnt)?;
        mount.fs.set_time(now);
        Ok(mount.fs.as_mut())
    }

    fn getattr(&mut self, loc: Loc) -> Result<Attr, Errno> {
        self.fs(loc.mount)?.getattr(loc.ino)
    }

    fn root_loc(&self) -> Loc {
        Loc {
            mount: 0,
            ino: self.mounts[0].as_ref().map_or(0, |m| m.root),
        }
    }

    /// `loc`, or the root of the mount sitting on it.
    fn cross(&self, mut loc: Loc) -> Loc {
        while let Some(&m) = self.covered.get(&loc) {
            loc = Loc {
                mount: m,
                ino: self.mounts[m].as_ref().map_or(loc.ino, |x| x.root),
            };
        }
        loc
    }

    /// `Again` while a mount is expected on `loc`: its contents are not there yet.
    fn not_pending(&self, loc: Loc) -> Result<(), Errno> {
        if self.pending.contains(&loc) {
            Err(Errno::Again)
        } else {
            Ok(())
        }
    }

    /// May `cred` change what mount `m` holds: not read-only, and an administrator for a file
    /// system that asks for one.
    fn writable_mount(&self, m: usize, cred: Cred) -> Result<(), Errno> {
        let mount = self.mount_at(m)?;
        if mount.read_only {
            Err(Errno::RoFs)
        } else if mount.fs.admin_only() && !cred.admin {
            Err(Errno::Acces)
        } else {
            Ok(())
        }
    }

    // ---- sessions ----

    /// Starts a session acting as `cred`; an existing one is replaced (its files closed).
    pub fn open_session(&mut self, sid: SessionId, cred: Cred) -> Result<(), Errno> {
        self.close_session(sid);
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(Errno::NFile);
        }
        self.sessions.insert(
            sid,
            Session {
                cred,
                fds: BTreeMap::new(),
                admin_known: false,
                payer: None,
                payer_known: false,
            },
        );
        Ok(())
    }

    /// Ends a session, closing its files.
    pub fn close_session(&mut self, sid: SessionId) {
        if let Some(s) = self.sessions.remove(&sid) {
            for f in s.fds.into_values() {
                self.close_file(f);
            }
            if let Some(p) = s.payer {
                self.ledger.drop_ref(p);
            }
        }
    }

    /// A descriptor goes: its charge is refunded, its inode released.
    fn close_file(&mut self, f: OpenFile) {
        if let Some(p) = f.payer {
            self.ledger.billing.refund(p, FD_COST);
        }
        self.release(f.loc);
    }

    /// Ends every session (before power-off: nothing may keep a disk busy).
    pub fn close_all_sessions(&mut self) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for sid in ids {
            self.close_session(sid);
        }
    }

    pub fn has_session(&self, sid: SessionId) -> bool {
        self.sessions.contains_key(&sid)
    }

    pub fn cred(&self, sid: SessionId) -> Result<Cred, Errno> {
        self.sessions.get(&sid).map(|s| s.cred).ok_or(Errno::BadF)
    }

    /// Changes the session's identity: only root may (and then it cannot come back).
    pub fn set_cred(&mut self, sid: SessionId, cred: Cred) -> Result<(), Errno> {
        let s = self.sessions.get_mut(&sid).ok_or(Errno::BadF)?;
        if s.cred.uid != 0 && s.cred != cred {
            return Err(Errno::Perm);
        }
        s.cred = cred;
        Ok(())
    }

    /// Becomes uid/gid (SETUID): only root may; administrator only while root.
    pub fn set_user(&mut self, sid: SessionId, uid: u32, gid: u32) -> Result<(), Errno> {
        let now = self.cred(sid)?;
        self.set_cred(sid, now.become_user(uid, gid))
    }

    /// Whether the session's administrator right has been looked up ([`Self::set_admin`]).
    pub fn admin_known(&self, sid: SessionId) -> bool {
        self.sessions.get(&sid).is_none_or(|s| s.admin_known)
    }

    /// Records what the service found out about the session's client: an administrator or not
    /// (never more than root: a session that gave up root stays without).
    pub fn set_admin(&mut self, sid: SessionId, admin: bool) {
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.cred.admin = admin && s.cred.uid == 0;
            s.admin_known = true;
        }
    }

    /// Open descriptors of a session.
    pub fn open_count(&self, sid: SessionId) -> usize {
        self.sessions.get(&sid).map_or(0, |s| s.fds.len())
    }

    fn release(&mut self, loc: Loc) {
        let left = match self.open.get_mut(&loc) {
            Some(n) => {
                *n -= 1;
                *n
            }
            None => return,
        };
        if left == 0 {
            self.open.remove(&loc);
            if self.orphans.remove(&loc) {
                self.disown(loc);
                if let Ok(fs) = self.fs(loc.mount) {
                    let _ = fs.evict(loc.ino);
                }
            }
        }
    }

    /// An inode lost its last link: free it now or at its last close.
    fn unlinked(&mut self, loc: Loc) -> Result<(), Errno> {
        if self.open.contains_key(&loc) {
            self.orphans.insert(loc);
            Ok(())
        } else {
            self.disown(loc);
            self.fs(loc.mount)?.evict(loc.ino)
        }
    }

    // ---- path walks ----

    /// Resolves `path` for `cred`: the directories down to the last component's parent and what
    /// the last component is. `follow` expands a symlink in the last component.
    fn walk(&mut self, cred: Cred, path: &str, follow: bool) -> Result<Walk, Errno> {
        if path.len() > PATH_MAX {
            return Err(Errno::NameTooLong);
        }
        if !path.starts_with('/') || path.contains('\0') {
            return Err(Errno::Inval);
        }
        let mut todo: VecDeque<String> = components(path);
        let mut stack: Vec<Loc> = alloc::vec![self.root_loc()];
        let mut links = 0;
        loop {
            let Some(name) = todo.pop_front() else {
                // The path names a directory on the stack ("/", "/a/..", "/a/.").
                let target = stack.pop();
                if stack.is_empty() {
                    stack.push(self.root_loc());
                }
                return Ok(Walk {
                    dirs: stack,
                    name: ".".to_string(),
                    target,
                });
            };
            let last = todo.is_empty();
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                if last {
                    todo.push_back(".".to_string());
                }
                continue;
            }
            if name == "." {
                if last {
                    let target = stack.pop();
                    if stack.is_empty() {
                        stack.push(self.root_loc());
                    }
                    self.search(cred, *stack.last().unwrap_or(&self.root_loc()))?;
                    return Ok(Walk {
                        dirs: stack,
                        name,
                        target,
                    });
                }
                continue;
            }
            if name.len() > NAME_MAX {
                return Err(Errno::NameTooLong);
            }
            let dir = *stack.last().unwrap_or(&self.root_loc());
            self.search(cred, dir)?;
            let found = match self.fs(dir.mount)?.lookup(dir.ino, &name) {
                Ok(ino) => Some(self.cross(Loc {
                    mount: dir.mount,
                    ino,
                })),
                Err(Errno::NoEnt) => None,
                Err(e) => return Err(e),
            };
            let Some(loc) = found else {
                if last {
                    return Ok(Walk {
                        dirs: stack,
                        name,
                        target: None,
                    });
                }
                return Err(Errno::NoEnt);
            };
            if !last {
                self.not_pending(loc)?;
            }
            let attr = self.getattr(loc)?;
            if attr.kind == Kind::Symlink && (!last || follow) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::Loop);
                }
                let target = self.fs(loc.mount)?.readlink(loc.ino)?;
                if target.is_empty() {
                    return Err(Errno::NoEnt);
                }
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                let mut expanded = components(&target);
                if expanded.is_empty() {
                    expanded.push_back(".".to_string());
                }
                while let Some(c) = expanded.pop_back() {
                    todo.push_front(c);
                }
                continue;
            }
            if last {
                return Ok(Walk {
                    dirs: stack,
                    name,
                    target: Some(loc),
                });
            }
            if attr.kind != Kind::Dir {
                return Err(Errno::NotDir);
            }
            stack.push(loc);
        }
    }

    /// The location `path` names (following a final symlink if `follow`).
    fn resolve(&mut self, cred: Cred, path: &str, follow: bool) -> Result<Loc, Errno> {
        self.walk(cred, path, follow)?.target.ok_or(Errno::NoEnt)
    }

    /// The parent directory of `path`'s last component, its name, and what it names now; for
    /// operations that create or remove names (`.` and `..` are refused).
    fn walk_parent(
        &mut self,
        cred: Cred,
        path: &str,
    ) -> Result<(Vec<Loc>, String, Option<Loc>), Errno> {
        let w = self.walk(cred, path, false)?;
        if w.name == "." || w.name == ".." {
            return Err(if w.target.is_some() {
                Errno::Busy
            } else {
                Errno::Inval
            });
        }
        // A directory waiting for its mount is not renamed or removed from under it.
        if w.target.is_some_and(|t| self.pending.contains(&t)) {
            return Err(Errno::Busy);
        }
        Ok((w.dirs, w.name, w.target))
    }

    // ---- permissions ----

    fn may(&mut self, cred: Cred, loc: Loc, want: u16) -> Result<Attr, Errno> {
        let a = self.getattr(loc)?;
        if permitted(cred, &a, want) {
            Ok(a)
        } else {
            Err(Errno::Acces)
        }
    }

    fn search(&mut self, cred: Cred, dir: Loc) -> Result<(), Errno> {
        let a = self.getattr(dir)?;
        if a.kind != Kind::Dir {
            return Err(Errno::NotDir);
        }
        if permitted(cred, &a, X) {
            Ok(())
        } else {
            Err(Errno::Acces)
        }
    }

    /// May `cred` add or remove names in `dir` (write + search, and a writable mount)?
    fn may_change(&mut self, cred: Cred, dir: Loc) -> Result<Attr, Errno> {
        self.writable_mount(dir.mount, cred)?;
        let a = self.may(cred, dir, W | X)?;
        if a.kind != Kind::Dir {
            return Err(Errno::NotDir);
        }
        Ok(a)
    }

    /// The sticky bit: in such a directory only the owner of the entry or of the directory
    /// (or root) may remove or rename it.
    fn sticky_ok(&mut self, cred: Cred, dir: &Attr, victim: Loc) -> Result<(), Errno> {
        if dir.perm & 0o1000 == 0 || cred.uid == 0 || cred.uid == dir.uid {
            return Ok(());
        }
        if self.getattr(victim)?.uid == cred.uid {
            Ok(())
        } else {
            Err(Errno::Perm)
        }
    }

    fn session(&mut self, sid: SessionId) -> Result<&mut Session, Errno> {
        self.sessions.get_mut(&sid).ok_or(Errno::BadF)
    }

    fn file(&mut self, sid: SessionId, fd: Fd) -> Result<&mut OpenFile, Errno> {
        self.session(sid)?.fds.get_mut(&fd).ok_or(Errno::BadF)
    }

    // ---- operations on paths ----

    /// Opens (and with O_CREAT creates, with `mode`'s permission bits) the file at `path`. The
    /// descriptor is charged to the session's payer ([`FD_COST`]; `NoMem` past its limits), and
    /// so is a file it creates, for its data.
    pub fn open(
        &mut self,
        sid: SessionId,
        path: &str,
        oflags: u32,
        mode: u16,
    ) -> Result<Fd, Errno> {
        self.cred(sid)?;
        let payer = self.session_payer(sid);
        if let Some(p) = payer {
            self.ledger.billing.charge(p, FD_COST)?;
        }
        let opened = self.open_for(sid, path, oflags, mode, payer);
        if let (Err(_), Some(p)) = (&opened, payer) {
            self.ledger.billing.refund(p, FD_COST);
        }
        opened
    }

    fn open_for(
        &mut self,
        sid: SessionId,
        path: &str,
        oflags: u32,
        mode: u16,
        payer: Option<Payer>,
    ) -> Result<Fd, Errno> {
        use flags::*;
        let cred = self.cred(sid)?;
        if oflags & !ALL != 0 || oflags & O_ACCMODE == 3 {
            return Err(Errno::Inval);
        }
        if self.sessions.get(&sid).map_or(0, |s| s.fds.len()) >= MAX_FDS {
            return Err(Errno::MFile);
        }
        let readable = oflags & O_ACCMODE != O_WRONLY;
        let writable = oflags & O_ACCMODE != O_RDONLY;
        let follow = oflags & O_NOFOLLOW == 0 && oflags & (O_CREAT | O_EXCL) != (O_CREAT | O_EXCL);
        let w = self.walk(cred, path, follow)?;
        let parent = w.dirs.last().copied().unwrap_or(self.root_loc());
        let loc = match w.target {
            Some(_) if oflags & (O_CREAT | O_EXCL) == (O_CREAT | O_EXCL) => {
                return Err(Errno::Exist);
            }
            Some(loc) => loc,
            None if oflags & O_CREAT != 0 => {
                if path.ends_with('/') {
                    return Err(Errno::IsDir);
                }
                let dir = self.may_change(cred, parent)?;
                let gid = if dir.perm & 0o2000 != 0 {
                    dir.gid
                } else {
                    cred.gid
                };
                let new = NewNode {
                    perm: mode & 0o7777,
                    uid: cred.uid,
                    gid,
                };
                let ino = self
                    .fs(parent.mount)?
                    .create(parent.ino, &w.name, Kind::File, new)?;
                let loc = Loc {
                    mount: parent.mount,
                    ino,
                };
                // Its creator pays for its data.
                if let Some(payer) = payer.filter(|_| self.allocated(loc).is_some()) {
                    self.ledger.hold(payer);
                    self.owners.insert(loc, Owned { payer, charged: 0 });
                }
                loc
            }
            None => return Err(Errno::NoEnt),
        };
        self.not_pending(loc)?;
        let attr = self.getattr(loc)?;
        match attr.kind {
            Kind::Symlink => return Err(Errno::Loop),
            Kind::Dir if writable => return Err(Errno::IsDir),
            Kind::File if oflags & O_DIRECTORY != 0 => return Err(Errno::NotDir),
            Kind::Other => return Err(Errno::NoSys),
            _ => {}
        }
        if (readable && !permitted(cred, &attr, R)) || (writable && !permitted(cred, &attr, W)) {
            return Err(Errno::Acces);
        }
        if writable || oflags & O_TRUNC != 0 {
            self.writable_mount(loc.mount, cred)?;
        }
        if oflags & O_TRUNC != 0 && writable && attr.kind == Kind::File && attr.size != 0 {
            self.fs(loc.mount)?.truncate(loc.ino, 0)?;
            self.settle(loc);
        }
        let file = OpenFile {
            payer,
            loc,
            readable,
            writable,
            append: oflags & O_APPEND != 0,
            offset: 0,
            listing: None,
            parent: if w.name == "." {
                w.dirs.last().map_or(loc.ino, |p| p.ino)
            } else {
                parent.ino
            },
        };
        let s = self.session(sid)?;
        let fd = (FIRST_FD..)
            .find(|fd| !s.fds.contains_key(fd))
            .ok_or(Errno::MFile)?;
        s.fds.insert(fd, file);
        *self.open.entry(loc).or_insert(0) += 1;
        Ok(fd)
    }

    /// `stat` (`follow`) or `lstat`.
    pub fn stat(&mut self, sid: SessionId, path: &str, follow: bool) -> Result<Stat, Errno> {
        let cred = self.cred(sid)?;
        let loc = self.resolve(cred, path, follow)?;
        Ok(Stat {
            dev: loc.mount as u64,
            attr: self.getattr(loc)?,
        })
    }

    pub fn mkdir(&mut self, sid: SessionId, path: &str, mode: u16) -> Result<(), Errno> {
        let cred = self.cred(sid)?;
        let (dirs, name, target) = self.walk_parent(cred, path)?;
        if target.is_some() {
            return Err(Errno::Exist);
        }
        let parent = *dirs.last().ok_or(Errno::Inval)?;
        let dir = self.may_change(cred, parent)?;
        let (gid, setgid) = if dir.perm & 0o2000 != 0 {
            (dir.gid, 0o2000)
        } else {
            (cred.gid, 0)
        };
        let new = NewNode {
            perm: (mode & 0o7777) | setgid,
            uid: cred.uid,
            gid,
        };
        self.fs(parent.mount)?
            .create(parent.ino, &name, Kind::Dir, new)
            .map(|_| ())
    }

    pub fn rmdir(&mut self, sid: SessionId, path: &str) -> Result<(), Errno> {
        let cred = self.cred(sid)?;
        let (dirs, name, target) = self.walk_parent(cred, path)?;
        let victim = target.ok_or(Errno::NoEnt)?;
        let parent = *dirs.last().ok_or(Errno::Inval)?;
        if victim.mount != parent.mount {
            return Err(Errno::Busy); // a mount point
        }
        if self.getattr(victim)?.kind != Kind::Dir {
            return Err(Errno::NotDir);
        }
        let dir = self.may_change(cred, parent)?;
        self.sticky_ok(cred, &dir, victim)?;
        if let Some(ino) = self.fs(parent.mount)?.rmdir(parent.ino, &name)? {
            self.unlinked(Loc {
                mount: parent.mount,
                ino,
            })?;
        }
        Ok(())
    }

    pub fn unlink(&mut self, sid: SessionId, path: &str) -> Result<(), Errno> {
        let cred = self.cred(sid)?;
        let (dirs, name, target) = self.walk_parent(cred, path)?;
        let victim = target.ok_or(Errno::NoEnt)?;
        let parent = *dirs.last().ok_or(Errno::Inval)?;
        if victim.mount != parent.mount || self.getattr(victim)?.kind == Kind::Dir {
            return Err(Errno::IsDir);
        }
        let dir = self.may_change(cred, parent)?;
        self.sticky_ok(cred, &dir, victim)?;
        if let Some(ino) = self.fs(parent.mount)?.unlink(parent.ino, &name)? {
            self.unlinked(Loc {
                mount: parent.mount,
                ino,
            })?;
        }
        Ok(())
    }

    pub fn rename(&mut self, sid: SessionId, from: &str, to: &str) -> Result<(), Errno> {
        let cred = self.cred(sid)?;
        let (fdirs, fname, ftarget) = self.walk_parent(cred, from)?;
        let src = ftarget.ok_or(Errno::NoEnt)?;
        let (tdirs, tname, ttarget) = self.walk_parent(cred, to)?;
        let (fparent, tparent) = (
            *fdirs.last().ok_or(Errno::Inval)?,
            *tdirs.last().ok_or(Errno::Inval)?,
        );
        if fparent.mount != tparent.mount {
            return Err(Errno::XDev);
        }
        if src.mount != fparent.mount || ttarget.is_some_and(|t| t.mount != tparent.mount) {
            return Err(Errno::Busy); // a mount point
        }
        let src_attr = self.getattr(src)?;
        // A directory may not move under itself.
        if src_attr.kind == Kind::Dir && tdirs.contains(&src) {
            return Err(Errno::Inval);
        }
        let fdir = self.may_change(cred, fparent)?;
        self.sticky_ok(cred, &fdir, src)?;
        let tdir = self.may_change(cred, tparent)?;
        if let Some(t) = ttarget {
            self.sticky_ok(cred, &tdir, t)?;
        }
        // A directory that changes parent rewrites its `..`: it must be writable.
        if src_attr.kind == Kind::Dir && fparent != tparent && !permitted(cred, &src_attr, W) {
            return Err(Errno::Acces);
        }
        if let Some(ino) =
            self.fs(fparent.mount)?
                .rename(fparent.ino, &fname, tparent.ino, &tname)?
        {
            self.unlinked(Loc {
                mount: fparent.mount,
                ino,
            })?;
        }
        Ok(())
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, sid: SessionId, target: &str, path: &str) -> Result<(), Errno> {
        let cred = self.cred(sid)?;
        if target.is_empty() || target.len() > PATH_MAX || target.contains('\0') {
            return Err(Errno::Inval);
        }
        let (dirs, name, existing) = self.walk_parent(cred, path)?;
        if existing.is_some() {
            return Err(Errno::Exist);
        }
        let parent = *dirs.last().ok_or(Errno::Inval)?;
        self.may_change(cred, parent)?;
        let new = NewNode {
            perm: 0o777,
            uid: cred.uid,
            gid: cred.gid,
        };
        self.fs(parent.mount)?
            .symlink(parent.ino, &name, target, new)
            .map(|_| ())
    }

    pub fn readlink(&mut self, sid: SessionId, path: &str) -> Result<String, Errno> {
        let cred = self.cred(sid)?;
        let loc = self.resolve(cred, path, false)?;
        self.fs(loc.mount)?.readlink(loc.ino)
    }

    /// A hard link `new` to the file `old`.
    pub fn link(&mut self, sid: SessionId, old: &str, new: &str) -> Result<(), Errno> {
        let cred = self.cred(sid)?;
        let src = self.resolve(cred, old, false)?;
        let (dirs, name, existing) = self.walk_parent(cred, new)?;
        if existing.is_some() {
            return Err(Errno::Exist);
        }
        let parent = *dirs.last().ok_or(Errno::Inval)?;
        if parent.mount != src.mount {
            return Err(Errno::XDev);
        }
        if self.getattr(src)?.kind == Kind::Dir {
            return Err(Errno::Perm);
        }
        self.may_change(cred, parent)?;
        self.fs(parent.mount)?.link(parent.ino, &name, src.ino)
    }

    pub fn truncate(&mut self, sid: SessionId, path: &str, size: u64) -> Result<(), Errno> {
        let cred = self.cred(sid)?;
        let loc = self.resolve(cred, path, true)?;
        let a = self.may(cred, loc, W)?;
        self.set_size(loc, &a, size, cred)
    }

    fn set_size(&mut self, loc: Loc, a: &Attr, size: u64, cred: Cred) -> Result<(), Errno> {
        match a.kind {
            Kind::Dir => return Err(Errno::IsDir),
            Kind::File => {}
            _ => return Err(Errno::Inval),
        }
        self.writable_mount(loc.mount, cred)?;
        self.fs(loc.mount)?.truncate(loc.ino, size)?;
        self.settle(loc);
        Ok(())
    }

    /// Changes permission bits: the owner or root.
    pub fn chmod(&mut self, sid: SessionId, path: &str, mode: u16) -> Result<(), Errno> {
        let cred = self.cred(sid)?;
        let loc = self.resolve(cred, path, true)?;
        let a = self.getattr(loc)?;
        if cred.uid != 0 && cred.uid != a.uid {
            return Err(Errno::Perm);
        }
        self.writable_mount(loc.mount, cred)?;
        self.fs(loc.mount)?
            .setattr(
                loc.ino,
                &SetAttr {
                    perm: Some(mode & 0o7777),
                    ..SetAttr::default()
                },
            )
            .map(|_| ())
    }

    /// Changes the owner: root only.
    pub fn chown(&mut self, sid: SessionId, path: &str, uid: u32, gid: u32) -> Result<(), Errno> {
        let cred = self.cred(sid)?;
        let loc = self.resolve(cred, path, true)?;
        if cred.uid != 0 {
            return Err(Errno::Perm);
        }
        self.writable_mount(loc.mount, cred)?;
        self.fs(loc.mount)?
            .setattr(
                loc.ino,
                &SetAttr {
                    uid: Some(uid),
                    gid: Some(gid),
                    ..SetAttr::default()
                },
            )
            .map(|_| ())
    }

    /// Checks that `path` is a directory the session may search (for a client's `chdir`).
    pub fn check_dir(&mut self, sid: SessionId, path: &str) -> Result<(), Errno> {
        let cred = self.cred(sid)?;
        let loc = self.resolve(cred, path, true)?;
        self.not_pending(loc)?;
        self.search(cred, loc)
    }

    pub fn statfs(&mut self, sid: SessionId, path: &str) -> Result<StatFs, Errno> {
        let cred = self.cred(sid)?;
        let loc = self.resolve(cred, path, true)?;
        self.fs(loc.mount)?.statfs()
    }

    // ---- operations on descriptors ----

    pub fn close(&mut self, sid: SessionId, fd: Fd) -> Result<(), Errno> {
        let f = self.session(sid)?.fds.remove(&fd).ok_or(Errno::BadF)?;
        self.close_file(f);
        Ok(())
    }

    /// Reads at the descriptor's offset and advances it.
    pub fn read(&mut self, sid: SessionId, fd: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
        let f = self.file(sid, fd)?;
        if !f.readable {
            return Err(Errno::BadF);
        }
        let (loc, offset) = (f.loc, f.offset);
        let n = self.fs(loc.mount)?.read(loc.ino, offset, buf)?;
        self.file(sid, fd)?.offset = offset + n as u64;
        Ok(n)
    }

    /// Reads at `offset` without moving the descriptor's offset.
    pub fn pread(
        &mut self,
        sid: SessionId,
        fd: Fd,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        let f = self.file(sid, fd)?;
        if !f.readable {
            return Err(Errno::BadF);
        }
        let loc = f.loc;
        self.fs(loc.mount)?.read(loc.ino, offset, buf)
    }

    /// Writes at the descriptor's offset (at the end with O_APPEND) and advances it.
    pub fn write(&mut self, sid: SessionId, fd: Fd, data: &[u8]) -> Result<usize, Errno> {
        let f = self.file(sid, fd)?;
        if !f.writable {
            return Err(Errno::BadF);
        }
        let (loc, append, mut offset) = (f.loc, f.append, f.offset);
        if append {
            offset = self.getattr(loc)?.size;
        }
        let n = self.write_billed(sid, loc, offset, data)?;
        self.file(sid, fd)?.offset = offset + n as u64;
        Ok(n)
    }

    /// Writes at `offset` without moving the descriptor's offset.
    pub fn pwrite(
        &mut self,
        sid: SessionId,
        fd: Fd,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, Errno> {
        let f = self.file(sid, fd)?;
        if !f.writable {
            return Err(Errno::BadF);
        }
        let loc = f.loc;
        self.write_billed(sid, loc, offset, data)
    }

    /// Moves the offset; the new offset.
    pub fn lseek(
        &mut self,
        sid: SessionId,
        fd: Fd,
        offset: i64,
        whence: u32,
    ) -> Result<u64, Errno> {
        let loc = self.file(sid, fd)?.loc;
        let base = match whence {
            whence::SET => 0,
            whence::CUR => self.file(sid, fd)?.offset as i64,
            whence::END => self.getattr(loc)?.size as i64,
            _ => return Err(Errno::Inval),
        };
        let new = base
            .checked_add(offset)
            .filter(|&n| n >= 0)
            .ok_or(Errno::Inval)?;
        let f = self.file(sid, fd)?;
        f.offset = new as u64;
        if f.listing.is_some() && new == 0 {
            f.listing = None; // rewinddir
        }
        Ok(new as u64)
    }

    pub fn fstat(&mut self, sid: SessionId, fd: Fd) -> Result<Stat, Errno> {
        let loc = self.file(sid, fd)?.loc;
        Ok(Stat {
            dev: loc.mount as u64,
            attr: self.getattr(loc)?,
        })
    }

    pub fn ftruncate(&mut self, sid: SessionId, fd: Fd, size: u64) -> Result<(), Errno> {
        let f = self.file(sid, fd)?;
        if !f.writable {
            return Err(Errno::Inval);
        }
        let loc = f.loc;
        let a = self.getattr(loc)?;
        let cred = self.cred(sid)?;
        self.set_size(loc, &a, size, cred)
    }

    pub fn fsync(&mut self, sid: SessionId, fd: Fd) -> Result<(), Errno> {
        let loc = self.file(sid, fd)?.loc;
        self.fs(loc.mount)?.fsync(loc.ino)
    }

    /// The next directory entries of an open directory, as many as fit in `budget` bytes of
    /// [`entry_size`]; empty at the end. The listing is taken at the first call (and again
    /// after a seek to 0).
    pub fn readdir(
        &mut self,
        sid: SessionId,
        fd: Fd,
        budget: usize,
    ) -> Result<Vec<DirEntry>, Errno> {
        let f = self.file(sid, fd)?;
        let (loc, parent) = (f.loc, f.parent);
        if f.listing.is_none() {
            if self.getattr(loc)?.kind != Kind::Dir {
                return Err(Errno::NotDir);
            }
            let mut all = alloc::vec![
                DirEntry {
                    name: ".".to_string(),
                    ino: loc.ino,
                    kind: Kind::Dir
                },
                DirEntry {
                    name: "..".to_string(),
                    ino: parent,
                    kind: Kind::Dir
                },
            ];
            all.extend(self.fs(loc.mount)?.readdir(loc.ino)?);
            let f = self.file(sid, fd)?;
            f.listing = Some(all);
            f.offset = 0;
        }
        let f = self.file(sid, fd)?;
        let list = f.listing.as_deref().unwrap_or(&[]);
        let mut out = Vec::new();
        let mut used = 0;
        let mut i = f.offset as usize;
        while let Some(e) = list.get(i) {
            let size = entry_size(&e.name);
            if used + size > budget {
                if out.is_empty() {
                    return Err(Errno::Inval); // not even one entry fits
                }
                break;
            }
            used += size;
            out.push(e.clone());
            i += 1;
        }
        f.offset = i as u64;
        Ok(out)
    }

    // ---- the whole tree ----

    /// Whether some file system has data not yet written back.
    pub fn needs_sync(&self) -> bool {
        self.mounts.iter().flatten().any(|m| m.fs.needs_sync())
    }

    /// Writes back every file system.
    pub fn sync(&mut self) -> Result<(), Errno> {
        let mut result = Ok(());
        for m in 0..self.mounts.len() {
            if self.mounts[m].is_some() {
                if let Err(e) = self.fs(m).and_then(|fs| fs.sync()) {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Says a mount is coming on the directory `path` (the disk, while the block service starts):
    /// until [`Vfs::mount`] or [`Vfs::cancel_mount`] for it, walking into it, opening it or
    /// entering it fails with `Again`, so nothing is written where the mount would hide it.
    pub fn expect_mount(&mut self, path: &str) -> Result<(), Errno> {
        let loc = self.resolve(Cred::ROOT, path, true)?;
        if self.getattr(loc)?.kind != Kind::Dir {
            return Err(Errno::NotDir);
        }
        self.pending.insert(loc);
        Ok(())
    }

    /// The mount expected on `path` will not come: the directory is usable again.
    pub fn cancel_mount(&mut self, path: &str) {
        if let Ok(loc) = self.resolve(Cred::ROOT, path, true) {
            self.pending.remove(&loc);
        }
    }

    /// How many expected mounts have not landed yet (0: the tree is complete).
    pub fn pending_mounts(&self) -> usize {
        self.pending.len()
    }

    /// Mounts `fs` on the directory `path` (as root: mounting is an administrator's act).
    pub fn mount(
        &mut self,
        path: &str,
        fs: Box<dyn FileSystem>,
        source: &str,
        read_only: bool,
    ) -> Result<(), Errno> {
        let loc = self.resolve(Cred::ROOT, path, true)?;
        if self.getattr(loc)?.kind != Kind::Dir {
            return Err(Errno::NotDir);
        }
        // One mount per directory: no mounting on a mount's root (stacking) either.
        if self.covered.contains_key(&loc) || self.mount_at(loc.mount)?.root == loc.ino {
            return Err(Errno::Busy);
        }
        self.pending.remove(&loc);
        let point = keel_rt::fs::normalize(path);
        let root = fs.root();
        let m = Mount {
            point,
            source: source.to_string(),
            fs,
            read_only,
            root,
            covers: Some(loc),
        };
        let index = match self.mounts.iter().position(Option::is_none) {
            Some(i) => {
                self.mounts[i] = Some(m);
                i
            }
            None => {
                self.mounts.push(Some(m));
                self.mounts.len() - 1
            }
        };
        self.covered.insert(loc, index);
        Ok(())
    }

    /// Unmounts the file system mounted at `path` and hands it back (synced), so its owner can
    /// finish it (ext2 marks itself clean). `Busy` while files are open on it or something is
    /// mounted inside it.
    pub fn unmount(&mut self, path: &str) -> Result<Box<dyn FileSystem>, Errno> {
        let loc = self.resolve(Cred::ROOT, path, true)?;
        let m = loc.mount;
        if m == 0 || self.mount_at(m)?.root != loc.ino {
            return Err(Errno::Inval);
        }
        if self.open.keys().any(|l| l.mount == m) || self.covered.keys().any(|l| l.mount == m) {
            return Err(Errno::Busy);
        }
        self.fs(m)?.sync()?;
        let mount = self.mounts[m].take().ok_or(Errno::Inval)?;
        if let Some(c) = mount.covers {
            self.covered.remove(&c);
        }
        self.orphans.retain(|l| l.mount != m);
        let owned: Vec<Loc> = self.owners.keys().filter(|l| l.mount == m).copied().collect();
        for l in owned {
            self.disown(l);
        }
        Ok(mount.fs)
    }

    /// The mount table, in mount order.
    pub fn mounts(&self) -> Vec<MountInfo> {
        self.mounts
            .iter()
            .flatten()
            .map(|m| MountInfo {
                point: m.point.clone(),
                source: m.source.clone(),
                fs_type: m.fs.fs_type(),
                read_only: m.read_only,
            })
            .collect()
    }

    /// The mount points, deepest first (the order to unmount them in).
    pub fn mount_points(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .mounts
            .iter()
            .flatten()
            .skip(1)
            .map(|m| m.point.clone())
            .collect();
        v.sort_by_key(|p| core::cmp::Reverse(p.matches('/').count()));
        v
    }
}

/// The bytes an entry takes in a `readdir` reply (`keel_rt::proto::fs::put_entry`).
pub fn entry_size(name: &str) -> usize {
    keel_rt::proto::fs::ENTRY_HEADER + name.len()
}

fn components(path: &str) -> VecDeque<String> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

/// Unix permission check: root reads and writes anything and searches any directory; it may
/// execute a file only if some execute bit is set.
fn permitted(cred: Cred, a: &Attr, want: u16) -> bool {
    if cred.uid == 0 {
        return want & X == 0 || a.kind == Kind::Dir || a.perm & 0o111 != 0;
    }
    let bits = if cred.uid == a.uid {
        a.perm >> 6
    } else if cred.gid == a.gid {
        a.perm >> 3
    } else {
        a.perm
    } & 7;
    bits & want == want
}
