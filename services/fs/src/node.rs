//! The interface between the VFS and one file system (tmpfs, ext2).
//!
//! A file system names its files by inode number and knows nothing of paths, mounts, open files or
//! permissions: the VFS resolves paths, checks permission bits, keeps open-file state, and calls
//! these operations with names of single components. Every method takes `&mut self`; the VFS
//! serializes the calls into one file system.

use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::errno::Errno;

/// An inode number, unique within one file system.
pub type Ino = u64;

/// The longest name of one directory entry, in bytes.
pub const NAME_MAX: usize = 255;

/// Checks one name component: not empty, `.` or `..`, no `/` or NUL, at most [`NAME_MAX`]
/// bytes.
pub fn check_name(name: &str) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        return Err(Errno::NameTooLong);
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(Errno::Inval);
    }
    Ok(())
}

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Device nodes, FIFOs, sockets: listed and stat'ed, not opened.
    Other,
}

impl Kind {
    /// The `S_IFMT` bits of a mode.
    pub fn mode_bits(self) -> u32 {
        match self {
            Kind::File => 0o100000,
            Kind::Dir => 0o040000,
            Kind::Symlink => 0o120000,
            Kind::Other => 0,
        }
    }
}

/// An inode's attributes (what `stat` shows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    /// Permission bits (0o7777: setuid, setgid, sticky, rwx for user, group, other).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes (a symlink: its target's length).
    pub size: u64,
    /// 512-byte units allocated, metadata blocks included.
    pub blocks: u64,
    /// Seconds since the epoch.
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
}

/// Attribute changes for [`FileSystem::setattr`]; `None` leaves one alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<u64>,
    pub mtime: Option<u64>,
}

/// One directory entry (never `.` or `..`: the VFS adds those).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub ino: Ino,
    pub kind: Kind,
}

/// What `df` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u32,
    pub blocks: u64,
    pub free_blocks: u64,
    pub files: u64,
    pub free_files: u64,
    pub name_max: u32,
}

/// Who creates an inode: the new inode's owner and permission bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewNode {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

/// One mounted file system.
///
/// Contract with the VFS:
/// - names are single components: not empty, not `.` or `..`, no `/` or NUL, at most
///   [`NAME_MAX`] bytes (the VFS checks; a file system may check again);
/// - the VFS checks permissions, read-only mounts, and that a rename does not move a directory
///   into itself;
/// - `unlink`, `rmdir` and `rename` only remove names: an inode whose link count reaches zero is
///   returned and stays readable until the VFS calls [`evict`](Self::evict) (when nobody has it
///   open any more);
/// - errors: `NoEnt`, `Exist`, `NotDir`, `IsDir`, `NotEmpty`, `NoSpc`, `FBig`, `NameTooLong`,
///   `Io` (the device failed), `Corrupt` (the on-disk structures are inconsistent; never a panic).
pub trait FileSystem: Send {
    /// The type name `mount` shows ("tmpfs", "ext2").
    fn fs_type(&self) -> &'static str;
    /// Only administrators may change it (the cgroup files), whatever its permission bits say.
    fn admin_only(&self) -> bool {
        false
    }
    /// The bytes of memory file `ino`'s data holds in this service (what a client who owns it
    /// pays for, crate::billing); None when its data is not in memory (a disk's) or it is not a
    /// file.
    fn allocated(&self, _ino: Ino) -> Option<u64> {
        None
    }
    fn root(&self) -> Ino;
    /// The clock for timestamps, seconds since the epoch; the VFS sets it before operations.
    fn set_time(&mut self, now: u64);
    fn statfs(&mut self) -> Result<StatFs, Errno>;

    fn getattr(&mut self, ino: Ino) -> Result<Attr, Errno>;
    fn setattr(&mut self, ino: Ino, set: &SetAttr) -> Result<Attr, Errno>;
    /// The inode `name` in directory `dir`.
    fn lookup(&mut self, dir: Ino, name: &str) -> Result<Ino, Errno>;
    /// Every entry of `dir` but `.` and `..`, in the file system's order.
    fn readdir(&mut self, dir: Ino) -> Result<Vec<DirEntry>, Errno>;

    /// Reads at `offset`; fewer bytes at the end of the file, 0 at or past it.
    fn read(&mut self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno>;
    /// Writes all of `data` at `offset`, growing the file (a hole before `offset` reads as
    /// zeros); returns `data.len()`. On `NoSpc`/`FBig` part of the data may have been written,
    /// the size covers only what was, and the file system stays consistent.
    fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize, Errno>;
    /// Sets the size: cuts (freeing blocks) or extends with zeros.
    fn truncate(&mut self, ino: Ino, size: u64) -> Result<(), Errno>;

    /// Creates a regular file (`Kind::File`) or a directory (`Kind::Dir`) named `name` in `dir`.
    fn create(&mut self, dir: Ino, name: &str, kind: Kind, new: NewNode) -> Result<Ino, Errno>;
    fn symlink(&mut self, dir: Ino, name: &str, target: &str, new: NewNode) -> Result<Ino, Errno>;
    fn readlink(&mut self, ino: Ino) -> Result<String, Errno>;
    /// A hard link to the non-directory `ino` as `name` in `dir`.
    fn link(&mut self, dir: Ino, name: &str, ino: Ino) -> Result<(), Errno>;
    /// Removes the non-directory `name` from `dir`; the inode if its link count reached zero.
    fn unlink(&mut self, dir: Ino, name: &str) -> Result<Option<Ino>, Errno>;
    /// Removes the empty directory `name` from `dir`; its inode (now without links).
    fn rmdir(&mut self, dir: Ino, name: &str) -> Result<Option<Ino>, Errno>;
    /// Moves `from_dir/from` to `to_dir/to`, replacing an existing `to` as POSIX rename does (a
    /// file replaces a file, a directory an empty directory); the replaced inode if its link
    /// count reached zero. Renaming a name onto itself (or onto a hard link of the same inode)
    /// does nothing.
    fn rename(
        &mut self,
        from_dir: Ino,
        from: &str,
        to_dir: Ino,
        to: &str,
    ) -> Result<Option<Ino>, Errno>;
    /// Frees an inode without links once nobody has it open.
    fn evict(&mut self, ino: Ino) -> Result<(), Errno>;

    /// Makes one file's data and metadata durable (data first).
    fn fsync(&mut self, ino: Ino) -> Result<(), Errno>;
    /// Writes back everything and flushes the device.
    fn sync(&mut self) -> Result<(), Errno>;
    /// Whether [`FileSystem::sync`] has anything to write (the periodic write-back leaves clean
    /// file systems alone). A file system in memory has nothing to write.
    fn needs_sync(&self) -> bool {
        false
    }
    /// The last call before the file system is dropped: write back everything and leave the
    /// medium in its clean, unmounted state.
    fn unmount(&mut self) -> Result<(), Errno> {
        self.sync()
    }
}
