//! The VFS over tmpfs: paths, mounts, permissions, descriptors.

use keel_fs::Errno;
use keel_fs::node::Kind;
use keel_fs::tmpfs::Tmpfs;
use keel_fs::vfs::{Cred, Vfs, flags::*, whence};

const ROOT: u64 = 1;
const USER: u64 = 2;

fn tree() -> Vfs {
    let mut v = Vfs::new(Box::new(Tmpfs::new(1 << 24, 10_000)), "rootfs");
    v.open_session(ROOT, Cred::ROOT).unwrap();
    v.open_session(
        USER,
        Cred::ROOT.become_user(1000, 1000),
    )
    .unwrap();
    v
}

fn put(v: &mut Vfs, sid: u64, path: &str, data: &[u8]) {
    let fd = v
        .open(sid, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        .unwrap();
    assert_eq!(v.write(sid, fd, data).unwrap(), data.len());
    v.close(sid, fd).unwrap();
}

fn get(v: &mut Vfs, sid: u64, path: &str) -> Result<Vec<u8>, Errno> {
    let fd = v.open(sid, path, O_RDONLY, 0)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 7]; // odd size: several reads
    loop {
        let n = v.read(sid, fd, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    v.close(sid, fd)?;
    Ok(out)
}

fn names(v: &mut Vfs, sid: u64, path: &str, budget: usize) -> Vec<String> {
    let fd = v.open(sid, path, O_RDONLY | O_DIRECTORY, 0).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = v.readdir(sid, fd, budget).unwrap();
        if batch.is_empty() {
            break;
        }
        out.extend(batch.into_iter().map(|e| e.name));
    }
    v.close(sid, fd).unwrap();
    out
}

#[test]
fn paths_resolve_dot_dotdot_and_symlinks() {
    let mut v = tree();
    v.mkdir(ROOT, "/a", 0o755).unwrap();
    v.mkdir(ROOT, "/a/b", 0o755).unwrap();
    put(&mut v, ROOT, "/a/b/f", b"hello");
    assert_eq!(get(&mut v, ROOT, "//a/./b/../b//f").unwrap(), b"hello");
    assert_eq!(get(&mut v, ROOT, "/../../a/b/f").unwrap(), b"hello"); // `..` stops at /
    v.symlink(ROOT, "b/f", "/a/rel").unwrap();
    v.symlink(ROOT, "/a/b", "/abs").unwrap();
    assert_eq!(get(&mut v, ROOT, "/a/rel").unwrap(), b"hello");
    assert_eq!(get(&mut v, ROOT, "/abs/f").unwrap(), b"hello");
    assert_eq!(get(&mut v, ROOT, "/abs/../b/f").unwrap(), b"hello"); // `..` of the link's target
    assert_eq!(v.readlink(ROOT, "/a/rel").unwrap(), "b/f");
    assert_eq!(
        v.stat(ROOT, "/a/rel", false).unwrap().attr.kind,
        Kind::Symlink
    );
    assert_eq!(v.stat(ROOT, "/a/rel", true).unwrap().attr.kind, Kind::File);
    v.symlink(ROOT, "/loop2", "/loop1").unwrap();
    v.symlink(ROOT, "/loop1", "/loop2").unwrap();
    assert_eq!(v.open(ROOT, "/loop1", O_RDONLY, 0), Err(Errno::Loop));
    v.symlink(ROOT, "/nowhere", "/dangling").unwrap();
    assert_eq!(v.open(ROOT, "/dangling", O_RDONLY, 0), Err(Errno::NoEnt));
    assert_eq!(v.open(ROOT, "/a/b/f/x", O_RDONLY, 0), Err(Errno::NotDir));
    assert_eq!(v.open(ROOT, "relative", O_RDONLY, 0), Err(Errno::Inval));
    assert_eq!(
        v.stat(ROOT, &format!("/{}", "x".repeat(256)), true),
        Err(Errno::NameTooLong)
    );
    // O_NOFOLLOW refuses a final symlink; O_CREAT through a dangling link creates its target.
    assert_eq!(
        v.open(ROOT, "/a/rel", O_RDONLY | O_NOFOLLOW, 0),
        Err(Errno::Loop)
    );
    let fd = v
        .open(ROOT, "/dangling", O_WRONLY | O_CREAT, 0o600)
        .unwrap();
    v.close(ROOT, fd).unwrap();
    assert!(v.stat(ROOT, "/nowhere", true).is_ok());
    assert_eq!(
        v.open(ROOT, "/a/rel", O_WRONLY | O_CREAT | O_EXCL, 0o600),
        Err(Errno::Exist)
    );
}

#[test]
fn descriptors_track_offsets_append_and_seek() {
    let mut v = tree();
    put(&mut v, ROOT, "/f", b"0123456789");
    let fd = v.open(ROOT, "/f", O_RDWR, 0).unwrap();
    let mut b = [0u8; 4];
    v.read(ROOT, fd, &mut b).unwrap();
    assert_eq!(&b, b"0123");
    assert_eq!(v.lseek(ROOT, fd, -2, whence::END).unwrap(), 8);
    v.write(ROOT, fd, b"XYZ").unwrap();
    assert_eq!(v.fstat(ROOT, fd).unwrap().attr.size, 11);
    assert_eq!(v.lseek(ROOT, fd, -20, whence::CUR), Err(Errno::Inval));
    assert_eq!(v.lseek(ROOT, fd, 0, 7), Err(Errno::Inval));
    assert_eq!(v.pread(ROOT, fd, 1, &mut b).unwrap(), 4);
    assert_eq!(&b, b"1234");
    v.close(ROOT, fd).unwrap();
    assert_eq!(v.close(ROOT, fd), Err(Errno::BadF));
    let fd = v.open(ROOT, "/f", O_WRONLY | O_APPEND, 0).unwrap();
    v.write(ROOT, fd, b"!").unwrap();
    let mut r = [0u8; 1];
    assert_eq!(v.read(ROOT, fd, &mut r), Err(Errno::BadF)); // write-only
    v.close(ROOT, fd).unwrap();
    assert_eq!(get(&mut v, ROOT, "/f").unwrap(), b"01234567XYZ!");
    let fd = v.open(ROOT, "/f", O_RDONLY, 0).unwrap();
    assert_eq!(v.write(ROOT, fd, b"no"), Err(Errno::BadF));
    assert_eq!(v.ftruncate(ROOT, fd, 0), Err(Errno::Inval));
    v.close(ROOT, fd).unwrap();
    v.truncate(ROOT, "/f", 3).unwrap();
    assert_eq!(get(&mut v, ROOT, "/f").unwrap(), b"012");
    assert_eq!(v.open(ROOT, "/f", 0o77777777, 0), Err(Errno::Inval));
    assert_eq!(v.read(99, 3, &mut b), Err(Errno::BadF)); // no such session
}

#[test]
fn descriptor_table_is_per_session_and_bounded() {
    let mut v = tree();
    put(&mut v, ROOT, "/f", b"x");
    let fd = v.open(ROOT, "/f", O_RDONLY, 0).unwrap();
    assert_eq!(fd, 3);
    let mut b = [0u8; 1];
    assert_eq!(v.read(USER, fd, &mut b), Err(Errno::BadF)); // another session's descriptor
    let mut fds = vec![fd];
    loop {
        match v.open(ROOT, "/f", O_RDONLY, 0) {
            Ok(fd) => fds.push(fd),
            Err(e) => {
                assert_eq!(e, Errno::MFile);
                break;
            }
        }
    }
    assert_eq!(fds.len(), keel_fs::vfs::MAX_FDS);
    v.close(ROOT, 10).unwrap();
    assert_eq!(v.open(ROOT, "/f", O_RDONLY, 0).unwrap(), 10); // the lowest free number
    v.close_session(ROOT);
    assert_eq!(v.open_count(ROOT), 0);
}

#[test]
fn unlinked_open_files_stay_readable_until_closed() {
    let mut v = tree();
    put(&mut v, ROOT, "/f", &[7u8; 5000]);
    let before = v.statfs(ROOT, "/").unwrap().free_blocks;
    let fd = v.open(ROOT, "/f", O_RDONLY, 0).unwrap();
    v.unlink(ROOT, "/f").unwrap();
    assert_eq!(v.stat(ROOT, "/f", true), Err(Errno::NoEnt));
    let mut b = vec![0u8; 6000];
    assert_eq!(v.read(ROOT, fd, &mut b).unwrap(), 5000);
    assert_eq!(v.statfs(ROOT, "/").unwrap().free_blocks, before);
    v.close(ROOT, fd).unwrap();
    assert_eq!(v.statfs(ROOT, "/").unwrap().free_blocks, before + 2);
}

#[test]
fn permission_bits_are_honoured() {
    let mut v = tree();
    v.mkdir(ROOT, "/home", 0o755).unwrap();
    put(&mut v, ROOT, "/secret", b"s");
    v.chmod(ROOT, "/secret", 0o600).unwrap();
    assert_eq!(get(&mut v, USER, "/secret"), Err(Errno::Acces));
    assert_eq!(
        v.open(USER, "/home/x", O_WRONLY | O_CREAT, 0o644),
        Err(Errno::Acces)
    ); // dir not writable
    assert_eq!(v.unlink(USER, "/secret"), Err(Errno::Acces));
    assert_eq!(v.chmod(USER, "/secret", 0o777), Err(Errno::Perm));
    assert_eq!(v.chown(USER, "/secret", 1000, 1000), Err(Errno::Perm));
    v.mkdir(ROOT, "/home/u", 0o700).unwrap();
    v.chown(ROOT, "/home/u", 1000, 1000).unwrap();
    put(&mut v, USER, "/home/u/mine", b"m");
    let st = v.stat(USER, "/home/u/mine", true).unwrap().attr;
    assert_eq!((st.uid, st.gid, st.perm), (1000, 1000, 0o644));
    v.mkdir(ROOT, "/closed", 0o700).unwrap();
    put(&mut v, ROOT, "/closed/f", b"c");
    assert_eq!(v.stat(USER, "/closed/f", true), Err(Errno::Acces)); // no search permission
    // Sticky /tmp: users remove only their own files.
    v.mkdir(ROOT, "/tmp", 0o1777).unwrap();
    put(&mut v, ROOT, "/tmp/roots", b"r");
    v.chmod(ROOT, "/tmp/roots", 0o666).unwrap();
    assert_eq!(v.unlink(USER, "/tmp/roots"), Err(Errno::Perm));
    put(&mut v, USER, "/tmp/users", b"u");
    v.unlink(USER, "/tmp/users").unwrap();
    // A session may drop root but never regain it.
    v.set_user(ROOT, 5, 5).unwrap();
    assert_eq!(v.set_cred(ROOT, Cred::ROOT), Err(Errno::Perm));
    assert_eq!(get(&mut v, ROOT, "/secret"), Err(Errno::Acces));
}

#[test]
fn directories_list_in_batches_and_rename_checks_hold() {
    let mut v = tree();
    v.mkdir(ROOT, "/d", 0o755).unwrap();
    for i in 0..50 {
        put(&mut v, ROOT, &format!("/d/file{i:02}"), b"");
    }
    let listed = names(&mut v, ROOT, "/d", 64);
    assert_eq!(listed.len(), 52);
    assert_eq!(&listed[..2], &[".", ".."]);
    assert!(listed.contains(&"file49".to_string()));
    v.mkdir(ROOT, "/d/sub", 0o755).unwrap();
    assert_eq!(v.rename(ROOT, "/d", "/d/sub/d"), Err(Errno::Inval)); // into itself
    assert_eq!(v.rmdir(ROOT, "/d"), Err(Errno::NotEmpty));
    assert_eq!(v.rmdir(ROOT, "/d/file00"), Err(Errno::NotDir));
    assert_eq!(v.unlink(ROOT, "/d/sub"), Err(Errno::IsDir));
    assert_eq!(v.mkdir(ROOT, "/d/sub", 0o755), Err(Errno::Exist));
    v.rename(ROOT, "/d/file00", "/d/sub/moved").unwrap();
    assert_eq!(
        v.stat(ROOT, "/d/sub/moved", true).unwrap().attr.kind,
        Kind::File
    );
    assert_eq!(v.rename(ROOT, "/d/missing", "/x"), Err(Errno::NoEnt));
    assert_eq!(v.rename(ROOT, "/", "/x"), Err(Errno::Busy));
    v.link(ROOT, "/d/file01", "/hard").unwrap();
    assert_eq!(v.stat(ROOT, "/hard", true).unwrap().attr.nlink, 2);
    assert_eq!(v.link(ROOT, "/d", "/dirlink"), Err(Errno::Perm));
    assert_eq!(v.open(ROOT, "/d", O_WRONLY, 0), Err(Errno::IsDir));
    assert_eq!(
        v.open(ROOT, "/hard", O_RDONLY | O_DIRECTORY, 0),
        Err(Errno::NotDir)
    );
}

#[test]
fn mounts_are_crossed_both_ways_and_guarded() {
    let mut v = tree();
    v.mkdir(ROOT, "/mnt", 0o755).unwrap();
    put(&mut v, ROOT, "/mnt/hidden", b"under");
    v.mount("/mnt", Box::new(Tmpfs::new(1 << 20, 100)), "second", false)
        .unwrap();
    assert_eq!(v.stat(ROOT, "/mnt/hidden", true), Err(Errno::NoEnt));
    put(&mut v, ROOT, "/mnt/on", b"top");
    assert_eq!(get(&mut v, ROOT, "/mnt/../mnt/on").unwrap(), b"top");
    assert_ne!(
        v.stat(ROOT, "/mnt/on", true).unwrap().dev,
        v.stat(ROOT, "/", true).unwrap().dev
    );
    assert_eq!(v.rename(ROOT, "/mnt/on", "/on"), Err(Errno::XDev));
    assert_eq!(v.link(ROOT, "/mnt/on", "/on"), Err(Errno::XDev));
    assert_eq!(v.rmdir(ROOT, "/mnt"), Err(Errno::Busy));
    assert_eq!(
        v.mount("/mnt", Box::new(Tmpfs::new(1, 1)), "third", false),
        Err(Errno::Busy)
    );
    let m = v.mounts();
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[1].point.as_str(), m[1].source.as_str(), m[1].fs_type),
        ("/mnt", "second", "tmpfs")
    );
    let fd = v.open(ROOT, "/mnt/on", O_RDONLY, 0).unwrap();
    assert!(v.unmount("/mnt").is_err()); // busy
    v.close(ROOT, fd).unwrap();
    v.unmount("/mnt").unwrap();
    assert_eq!(get(&mut v, ROOT, "/mnt/hidden").unwrap(), b"under");
    // Read-only mounts refuse every change.
    v.mount("/mnt", Box::new(Tmpfs::new(1 << 20, 100)), "ro", true)
        .unwrap();
    assert_eq!(
        v.open(ROOT, "/mnt/x", O_WRONLY | O_CREAT, 0o644),
        Err(Errno::RoFs)
    );
    assert_eq!(v.mkdir(ROOT, "/mnt/d", 0o755), Err(Errno::RoFs));
    assert_eq!(v.chmod(ROOT, "/mnt", 0o700), Err(Errno::RoFs));
}

#[test]
fn a_directory_waiting_for_its_mount_takes_nothing_in_until_it_lands() {
    let mut v = tree();
    v.mkdir(ROOT, "/disk", 0o755).unwrap();
    v.expect_mount("/disk").unwrap();
    assert_eq!(v.pending_mounts(), 1);
    // Nothing can be put where the mount would hide it, by any path to it.
    assert_eq!(
        v.open(ROOT, "/disk/early", O_WRONLY | O_CREAT, 0o644),
        Err(Errno::Again)
    );
    assert_eq!(
        v.open(ROOT, "/./disk/../disk/early", O_WRONLY | O_CREAT, 0o644),
        Err(Errno::Again)
    );
    v.symlink(ROOT, "/disk", "/d").unwrap();
    assert_eq!(v.mkdir(ROOT, "/d/sub", 0o755), Err(Errno::Again));
    assert_eq!(
        v.open(ROOT, "/disk", O_RDONLY | O_DIRECTORY, 0),
        Err(Errno::Again)
    );
    assert_eq!(v.check_dir(ROOT, "/disk"), Err(Errno::Again));
    assert_eq!(v.rmdir(ROOT, "/disk"), Err(Errno::Busy));
    assert_eq!(v.rename(ROOT, "/disk", "/elsewhere"), Err(Errno::Busy));
    // The directory itself is still seen (ls / works).
    assert!(v.stat(ROOT, "/disk", true).is_ok());
    assert!(names(&mut v, ROOT, "/", 4096).contains(&"disk".to_string()));
    v.mount("/disk", Box::new(Tmpfs::new(1 << 20, 100)), "blk0", false)
        .unwrap();
    assert_eq!(v.pending_mounts(), 0);
    put(&mut v, ROOT, "/disk/late", b"kept");
    assert_eq!(get(&mut v, ROOT, "/d/late").unwrap(), b"kept");
    // A mount that does not come gives the directory back.
    v.mkdir(ROOT, "/mnt", 0o755).unwrap();
    v.expect_mount("/mnt").unwrap();
    assert_eq!(
        v.open(ROOT, "/mnt/x", O_WRONLY | O_CREAT, 0o644),
        Err(Errno::Again)
    );
    v.cancel_mount("/mnt");
    assert_eq!(v.pending_mounts(), 0);
    put(&mut v, ROOT, "/mnt/x", b"root tmpfs");
    assert_eq!(v.expect_mount("/mnt/x"), Err(Errno::NotDir));
}

#[test]
fn the_service_protocol_decodes_once_and_shutdown_leaves_ext2_clean() {
    use keel_fs::block::MemDisk;
    use keel_fs::ext2::{Ext2, MountOptions};
    use keel_fs::node::FileSystem;
    use keel_fs::server::{Disks, Server};
    use keel_rt::abi::ipc::Message;
    use keel_rt::proto::{errno_label, fs as p};

    /// Disks: one fresh ext2 image made by mke2fs, kept so the test can look at it afterwards.
    struct OneDisk(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>, MemDisk);
    impl keel_fs::block::BlockDevice for Shared {
        fn size(&self) -> u64 {
            self.1.size()
        }
        fn read_at(&mut self, o: u64, b: &mut [u8]) -> Result<(), Errno> {
            self.1.read_at(o, b)
        }
        fn write_at(&mut self, o: u64, d: &[u8]) -> Result<(), Errno> {
            self.1.write_at(o, d)
        }
        fn flush(&mut self) -> Result<(), Errno> {
            *self.0.lock().unwrap() = self.1.bytes.clone();
            Ok(())
        }
    }
    impl Disks for OneDisk {
        fn attach(&mut self, device: &str, read_only: bool) -> Result<Box<dyn FileSystem>, Errno> {
            if device != "blk0" {
                return Err(Errno::NoEnt);
            }
            let bytes = self.0.lock().unwrap().clone();
            let fs = Ext2::mount(
                Box::new(Shared(self.0.clone(), MemDisk::new(bytes))),
                MountOptions {
                    read_only,
                    ..Default::default()
                },
            )?;
            Ok(Box::new(fs))
        }
    }
    let path = std::env::temp_dir().join(format!("keel-vfs-server-{}.img", std::process::id()));
    let ok = std::process::Command::new("/usr/sbin/mke2fs")
        .args(["-q", "-t", "ext2"])
        .arg(&path)
        .arg("4M")
        .status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "mke2fs failed (make deps installs e2fsprogs)"
    );
    let image = std::sync::Arc::new(std::sync::Mutex::new(std::fs::read(&path).unwrap()));
    let mut s = Server::new(tree(), OneDisk(image.clone()));
    let mut out = Vec::new();
    let mut call =
        |s: &mut Server<OneDisk>, sid: u64, label: u64, data: [u64; 4], payload: &[u8]| {
            s.handle(sid, &Message::new(label, data), payload, &mut out)
        };
    let m = call(&mut s, 9, p::MKDIR, [0o755, 0, 0, 0], b"/mnt");
    assert_eq!(m.label, 0);
    assert_eq!(call(&mut s, 9, p::MOUNT, [0; 4], b"blk0\0/mnt").label, 0);
    assert_eq!(
        call(&mut s, 9, p::MOUNT, [0; 4], b"blk0").label,
        errno_label(Errno::Inval)
    );
    assert_eq!(
        call(
            &mut s,
            9,
            p::OPEN,
            [(O_WRONLY | O_CREAT) as u64, 0o644, 0, 0],
            &[0xff]
        )
        .label,
        errno_label(Errno::Inval)
    );
    assert_eq!(
        call(
            &mut s,
            9,
            p::OPEN,
            [(O_WRONLY | O_CREAT) as u64, 0o70000, 0, 0],
            b"/mnt/f"
        )
        .label,
        errno_label(Errno::Inval)
    );
    assert_eq!(
        call(&mut s, 9, p::READ, [1 << 40, 10, 0, 0], b"").label,
        errno_label(Errno::BadF)
    );
    assert_eq!(
        call(&mut s, 9, 4242, [0; 4], b"").label,
        errno_label(Errno::NoSys)
    );
    let m = call(
        &mut s,
        9,
        p::OPEN,
        [(O_WRONLY | O_CREAT) as u64, 0o644, 0, 0],
        b"/mnt/f",
    );
    assert_eq!(m.label, 0);
    assert_eq!(
        call(&mut s, 9, p::WRITE, [m.data[0], 0, 0, 0], b"on ext2").data[0],
        7
    );
    // Power-off: every session closed, every disk unmounted clean (the open file does not stop it).
    assert_eq!(
        call(&mut s, 9, p::SHUTDOWN, [0; 4], b"").label,
        errno_label(Errno::Perm),
        "a root client shut fs down"
    );
    assert_eq!(
        call(&mut s, p::SHUTDOWN_BADGE, p::SHUTDOWN, [0; 4], b"").label,
        0
    );
    std::fs::write(&path, &*image.lock().unwrap()).unwrap();
    let fsck = std::process::Command::new("/usr/sbin/e2fsck")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&fsck.stdout).to_string();
    let _ = std::fs::remove_file(&path);
    // Without -f, e2fsck skips a clean file system: "clean" proves the superblock was marked so.
    assert!(
        fsck.status.success() && text.contains("clean"),
        "e2fsck -n: {text}"
    );
}

/// A bank for the billing tests: what each payer is charged, its limit, who was released.
#[derive(Default)]
struct Bank {
    charged: std::collections::BTreeMap<u64, u64>,
    limit: std::collections::BTreeMap<u64, u64>,
    /// Session → payer (sessions not listed do not pay).
    payers: std::collections::BTreeMap<u64, u64>,
    released: Vec<u64>,
}

struct FakeBilling(std::sync::Arc<std::sync::Mutex<Bank>>);

impl keel_fs::billing::Billing for FakeBilling {
    fn payer(&mut self, sid: u64) -> keel_fs::billing::Lookup {
        match self.0.lock().unwrap().payers.get(&sid) {
            Some(&p) => keel_fs::billing::Lookup::Pays(p),
            None => keel_fs::billing::Lookup::DoesNot,
        }
    }
    fn charge(&mut self, payer: u64, bytes: u64) -> Result<(), Errno> {
        let mut b = self.0.lock().unwrap();
        let now = b.charged.get(&payer).copied().unwrap_or(0);
        if now + bytes > b.limit.get(&payer).copied().unwrap_or(u64::MAX) {
            return Err(Errno::NoMem);
        }
        b.charged.insert(payer, now + bytes);
        Ok(())
    }
    fn refund(&mut self, payer: u64, bytes: u64) {
        let mut b = self.0.lock().unwrap();
        let now = b.charged.get(&payer).copied().unwrap_or(0);
        assert!(now >= bytes, "payer {payer}: {bytes} refunded, {now} charged");
        b.charged.insert(payer, now - bytes);
    }
    fn release(&mut self, payer: u64) {
        let mut b = self.0.lock().unwrap();
        assert_eq!(b.charged.get(&payer).copied().unwrap_or(0), 0, "payer {payer} released with a charge");
        b.released.push(payer);
    }
}

#[test]
fn the_client_pays_for_its_open_files_and_the_data_of_files_it_made() {
    use keel_fs::billing::FD_COST;
    let bank = std::sync::Arc::new(std::sync::Mutex::new(Bank::default()));
    let mut v = tree();
    v.mkdir(ROOT, "/tmp", 0o1777).unwrap();
    v.set_billing(Box::new(FakeBilling(bank.clone())));
    const BUSY: u64 = 7;
    const IDLE: u64 = 8;
    {
        let mut b = bank.lock().unwrap();
        b.payers.insert(BUSY, 100);
        b.payers.insert(IDLE, 200);
    }
    v.open_session(BUSY, Cred::ROOT).unwrap();
    v.open_session(IDLE, Cred::ROOT).unwrap();
    let charged = |p: u64| bank.lock().unwrap().charged.get(&p).copied().unwrap_or(0);
    // An open descriptor costs its session's payer until it is closed.
    let fd = v.open(BUSY, "/tmp/big", O_WRONLY | O_CREAT, 0o644).unwrap();
    assert_eq!(charged(100), FD_COST);
    // The data: what its chunks hold.
    v.write(BUSY, fd, &[7u8; 10_000]).unwrap();
    assert_eq!(charged(100), FD_COST + 10_000);
    v.close(BUSY, fd).unwrap();
    assert_eq!(charged(100), 10_000, "the data stays charged after the close");
    // Another client writing into the file does not pay for it: the owner does.
    let fd = v.open(IDLE, "/tmp/big", O_WRONLY | O_APPEND, 0).unwrap();
    v.write(IDLE, fd, &[1u8; 4096]).unwrap();
    v.close(IDLE, fd).unwrap();
    assert_eq!((charged(100), charged(200)), (14_096, 0), "the owner pays");
    // A write past the owner's limit fails before anything is written.
    let room = charged(100) + 4096;
    bank.lock().unwrap().limit.insert(100, room);
    let fd = v.open(BUSY, "/tmp/big", O_WRONLY | O_APPEND, 0).unwrap();
    let size = v.stat(BUSY, "/tmp/big", true).unwrap().attr.size;
    assert_eq!(v.write(BUSY, fd, &[2u8; 3 * 4096]), Err(Errno::NoMem));
    assert_eq!(v.stat(BUSY, "/tmp/big", true).unwrap().attr.size, size, "nothing was written");
    v.close(BUSY, fd).unwrap();
    bank.lock().unwrap().limit.remove(&100);
    // The client goes; its file still costs it. Cutting the file refunds, removing it ends it.
    v.close_session(BUSY);
    assert!(bank.lock().unwrap().released.is_empty(), "the file still holds the payer");
    v.truncate(ROOT, "/tmp/big", 4096).unwrap();
    assert_eq!(charged(100), 4096);
    v.unlink(ROOT, "/tmp/big").unwrap();
    assert_eq!(charged(100), 0);
    assert_eq!(bank.lock().unwrap().released, [100]);
    // A session that does not pay (root here) charges nobody.
    put(&mut v, ROOT, "/tmp/roots", &[0; 9000]);
    assert_eq!(charged(200), 0);
    // A file open when it is removed is refunded at its last close.
    let fd = v.open(IDLE, "/tmp/open", O_RDWR | O_CREAT, 0o644).unwrap();
    v.write(IDLE, fd, &[3u8; 5000]).unwrap();
    v.unlink(IDLE, "/tmp/open").unwrap();
    assert_eq!(charged(200), FD_COST + 5000, "still open");
    v.close(IDLE, fd).unwrap();
    assert_eq!(charged(200), 0);
    v.close_session(IDLE);
    assert_eq!(bank.lock().unwrap().released, [100, 200]);
    assert_eq!(v.payers(), 0);
}
