//! Shared helpers of the ext2 host tests: e2fsprogs, temporary images, an in-memory disk whose
//! bytes survive `unmount`, and a seeded generator.
#![allow(dead_code)]

use keel_fs::Errno;
use keel_fs::block::{BlockDevice, check_range};
use keel_fs::ext2::{Ext2, MountOptions};
use keel_fs::node::{FileSystem, Ino, Kind, NewNode};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The path of an e2fsprogs tool; panics with how to install them.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} not found: the ext2 tests need e2fsprogs (mke2fs, e2fsck, debugfs); `make deps` installs them"
    );
}

/// A file in the temp directory, removed when dropped.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(test: &str, suffix: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("keel-ext2-{}-{test}{suffix}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs mke2fs: an ext2 image of `kib` KiB with `block_size` blocks, populated from `root`.
pub fn mkfs(image: &Path, kib: u64, block_size: u32, extra: &[&str], root: Option<&Path>) {
    let _ = std::fs::remove_file(image);
    let mut cmd = Command::new(tool("mke2fs"));
    cmd.args(["-q", "-F", "-t", "ext2", "-b", &block_size.to_string()]);
    cmd.args(extra);
    if let Some(r) = root {
        cmd.arg("-d").arg(r);
    }
    cmd.arg(image).arg(format!("{kib}k"));
    cmd.env("MKE2FS_CONFIG", "/etc/mke2fs.conf")
        .env("E2FSPROGS_FAKE_TIME", "1700000000");
    let out = cmd.output().expect("run mke2fs");
    assert!(
        out.status.success(),
        "mke2fs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `e2fsck -fn`: exit code and output.
pub fn fsck(image: &Path) -> (i32, String) {
    fsck_with(image, "-fn")
}

pub fn fsck_with(image: &Path, flags: &str) -> (i32, String) {
    let out = Command::new(tool("e2fsck"))
        .arg(flags)
        .arg(image)
        .output()
        .expect("run e2fsck");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

pub fn assert_fsck_clean(image: &Path) {
    let (code, text) = fsck(image);
    assert_eq!(code, 0, "e2fsck -fn found problems:\n{text}");
}

/// `debugfs -R cmd image`: its standard output.
pub fn debugfs(image: &Path, cmd: &str) -> Vec<u8> {
    let out = Command::new(tool("debugfs"))
        .arg("-R")
        .arg(cmd)
        .arg(image)
        .output()
        .expect("run debugfs");
    out.stdout
}

/// A memory disk whose bytes stay reachable after the file system consumed it.
#[derive(Clone)]
pub struct SharedDisk {
    pub bytes: Arc<Mutex<Vec<u8>>>,
    pub read_only: bool,
}

impl SharedDisk {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes: Arc::new(Mutex::new(bytes)),
            read_only: false,
        }
    }
    pub fn from_file(p: &Path) -> Self {
        Self::new(std::fs::read(p).expect("read image"))
    }
    pub fn save(&self, p: &Path) {
        std::fs::write(p, &*self.bytes.lock().unwrap()).expect("write image");
    }
}

impl BlockDevice for SharedDisk {
    fn size(&self) -> u64 {
        self.bytes.lock().unwrap().len() as u64 / 512 * 512
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        check_range(self.size(), offset, buf.len())?;
        let b = self.bytes.lock().unwrap();
        buf.copy_from_slice(&b[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if self.read_only {
            return Err(Errno::RoFs);
        }
        check_range(self.size(), offset, data.len())?;
        let mut b = self.bytes.lock().unwrap();
        b[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Errno> {
        Ok(())
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
}

pub fn opts() -> MountOptions {
    MountOptions {
        read_only: false,
        cache_blocks: 128,
        now: 1_700_000_000,
    }
}

/// Mounts the image file read-write; the disk to save after unmount.
pub fn mount_rw(image: &Path) -> (Ext2, SharedDisk) {
    let disk = SharedDisk::from_file(image);
    let fs = Ext2::mount(Box::new(disk.clone()), opts())
        .unwrap_or_else(|e| panic!("mount {}: {e}", image.display()));
    (fs, disk)
}

/// Unmounts and writes the image back to its file.
pub fn unmount_to(fs: Ext2, disk: &SharedDisk, image: &Path) {
    fs.unmount().expect("unmount");
    disk.save(image);
}

pub const WHO: NewNode = NewNode {
    perm: 0o644,
    uid: 1000,
    gid: 100,
};

/// The inode at `path` (components separated by '/', no symlinks followed).
pub fn resolve(fs: &mut Ext2, path: &str) -> Result<Ino, Errno> {
    let mut ino = fs.root();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = fs.lookup(ino, c)?;
    }
    Ok(ino)
}

/// Reads a whole file.
pub fn read_all(fs: &mut Ext2, ino: Ino) -> Vec<u8> {
    let size = fs.getattr(ino).expect("getattr").size as usize;
    let mut buf = vec![0u8; size];
    let mut off = 0;
    while off < size {
        let n = fs.read(ino, off as u64, &mut buf[off..]).expect("read");
        assert!(n > 0, "short read at {off} of {size}");
        off += n;
    }
    buf
}

/// Creates (or opens) a file and writes `data` at `offset`.
pub fn write_file(fs: &mut Ext2, dir: Ino, name: &str, offset: u64, data: &[u8]) -> Ino {
    let ino = match fs.lookup(dir, name) {
        Ok(i) => i,
        Err(_) => fs.create(dir, name, Kind::File, WHO).expect("create"),
    };
    assert_eq!(fs.write(ino, offset, data).expect("write"), data.len());
    ino
}

/// Seeded xorshift64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Deterministic file contents.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).bytes(len)
}
