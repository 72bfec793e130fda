//! The running file service: the root tmpfs from the initrd, ext2 disks through the virtio-blk
//! service, and the IPC loop.
//!
//! Startup capabilities: `namesrv`, `initrd` (read-only, with the `initrd=<offset>:<size>`
//! argument) and, optionally, `rtc` (the PL031 real-time clock's registers, for timestamps) and
//! `resmgr` (the cgroup service's connection, for `/sys/fs/cgroup`).
//! At start it mounts the cgroup v2 files (`cgroup2`) on `/sys/fs/cgroup` (asking resmgr
//! nothing until they are used) and registers `fs` at once (the root is ready), then, in the
//! background, waits for the block service's `blk0` and mounts its ext2 file system on `/disk`.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use keel_formats::startup::parse_initrd_arg;
use keel_fs::block::BlockDevice;
use keel_fs::cgroupfs::CgroupFs;
use keel_fs::cgroupfs::resmgr::Resmgr;
use keel_fs::ext2::{Ext2, MountOptions};
use keel_fs::node::{FileSystem, Kind, NewNode};
use keel_fs::server::{Disks, Server};
use keel_fs::tmpfs::Tmpfs;
use keel_fs::vfs::Vfs;
use keel_rt::abi::{Slot, perm};
use keel_rt::errno::Errno;
use keel_rt::ipc::{self, Reply, Request};
use keel_rt::startup::Startup;
use keel_rt::sync::Mutex;
use keel_rt::{println, sys, thread, vm};

/// The root tmpfs's limits: file data written at run time (the initrd's files cost nothing
/// until changed) and inodes.
/// The most the root tmpfs holds (its size is an eighth of RAM up to this), and the most all
/// tmpfs data together may take of fs's 256 MiB heap (the rest is for disk caches and sessions).
const ROOT_MOST: u64 = 64 << 20;
const TMPFS_TOTAL: u64 = 160 << 20;
const ROOT_INODES: u64 = 65536;
/// Blocks each ext2 mount caches.
const CACHE_BLOCKS: usize = 2048;
/// How long the background mount waits for the block service to register `blk0`.
/// Dirty data is written back at most this long after it was written (as Linux's default
/// `dirty_writeback_centisecs`), so if fs dies, what it loses is the last few seconds' writes
/// that nobody synced, not everything since the last `sync`.
const WRITEBACK_NS: u64 = 5_000_000_000;
const BLK_ATTEMPTS: u32 = 100;
const BLK_PAUSE_NS: u64 = 20_000_000;
/// PL031 data register: seconds since the epoch.
const RTC_DR: u64 = 0;
/// Where the cgroup v2 files are, as on Linux.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// Wall-clock seconds: the RTC at start plus the counter since.
#[derive(Clone, Copy)]
struct Clock {
    epoch_at_start: u64,
    counter_at_start: u64,
}

impl Clock {
    fn new(rtc: Option<Slot>) -> Self {
        let epoch = rtc
            .and_then(|pmo| vm::map_pmo(pmo, 4096, perm::READ).ok())
            .map_or(0, |va| keel_rt::mmio::read32(va + RTC_DR) as u64);
        Clock {
            epoch_at_start: epoch,
            counter_at_start: sys::counter(),
        }
    }

    fn now(&self) -> u64 {
        let ticks = sys::counter().saturating_sub(self.counter_at_start);
        self.epoch_at_start + ticks / sys::counter_freq().max(1)
    }
}

/// ext2 on the block service's disks.
struct BlkDisks {
    namesrv: Slot,
    clock: Clock,
}

impl BlkDisks {
    fn open(
        &self,
        device: &str,
        read_only: bool,
        attempts: u32,
    ) -> Result<Box<dyn FileSystem>, Errno> {
        let mut disk =
            keel_fs::block::RemoteDisk::open(self.namesrv, device, attempts, BLK_PAUSE_NS)?;
        if !read_only && !disk.read_only() {
            if let Err(e) = disk.claim_for_writing() {
                println!("fs: cannot open {device} for writing: {e} (another client writes it)");
                return Err(e);
            }
        }
        let opts = MountOptions {
            read_only,
            cache_blocks: CACHE_BLOCKS,
            now: self.clock.now(),
        };
        match Ext2::mount(Box::new(disk), opts) {
            Ok(fs) => {
                if let Some(what) = fs.recounted() {
                    println!("fs: {device} was not unmounted cleanly: free counts set from the bitmaps ({what})");
                }
                if let Some(why) = fs.degraded() {
                    println!(
                        "fs: {device} is inconsistent ({why}): mounted read-only; run e2fsck on the image"
                    );
                }
                Ok(Box::new(fs))
            }
            Err(e) => {
                println!("fs: cannot mount {device}: {e}");
                Err(e.errno)
            }
        }
    }
}

impl Disks for BlkDisks {
    fn attach(&mut self, device: &str, read_only: bool) -> Result<Box<dyn FileSystem>, Errno> {
        self.open(device, read_only, 1)
    }
}

fn fail(msg: core::fmt::Arguments) -> i32 {
    println!("fs: {msg}");
    1
}

pub fn main(startup: &Startup) -> i32 {
    let (Some(namesrv), Some(initrd)) = (startup.cap("namesrv"), startup.cap("initrd")) else {
        return fail(format_args!(
            "started without the namesrv and initrd capabilities"
        ));
    };
    let Some((offset, size)) = startup.arg_value("initrd").and_then(parse_initrd_arg) else {
        return fail(format_args!("no usable initrd=<offset>:<size> argument"));
    };
    let archive = match vm::map_readonly(initrd, offset + size) {
        Ok(b) => &b[offset as usize..],
        Err(e) => return fail(format_args!("cannot map the initrd: {e}")),
    };
    let clock = Clock::new(startup.cap("rtc"));
    let ram = sys::mem_info().map_or(0, |(total, _)| total * keel_rt::abi::PAGE_SIZE);
    let root_size = keel_fs::server::default_tmpfs_size(ram, ROOT_MOST);
    let mut root = Tmpfs::new(root_size, ROOT_INODES);
    root.set_time(clock.now());
    let filled = match keel_fs::boot::populate(&mut root, archive) {
        Ok(p) => p,
        Err(e) => return fail(format_args!("cannot read the initrd: {e}")),
    };
    let top = root.root();
    for (dir, mode) in [("disk", 0o755), ("tmp", 0o1777)] {
        let _ = root.create(
            top,
            dir,
            Kind::Dir,
            NewNode {
                perm: mode,
                uid: 0,
                gid: 0,
            },
        );
    }
    let cgroup_dir = keel_fs::boot::make_dirs(&mut root, CGROUP_MOUNT);
    let disks = BlkDisks { namesrv, clock };
    let mut vfs = Vfs::new(Box::new(root), "rootfs");
    if let Err(e) = cgroup_dir {
        println!("fs: cannot make {CGROUP_MOUNT}: {e}; the cgroup files are not mounted");
    } else {
        mount_cgroup(&mut vfs, startup.cap("resmgr"), clock.now());
    }
    // Until the disk is mounted (or known absent), /disk takes nothing: a file put there
    // would vanish under the mount.
    if let Err(e) = vfs.expect_mount("/disk") {
        println!("fs: /disk is not a directory ({e}); the disk will not be mounted there");
    }
    let tmpfs_default = keel_fs::server::default_tmpfs_size(ram, ROOT_MOST);
    let server = Arc::new(Mutex::new(
        Server::new(vfs, disks).with_tmpfs(TMPFS_TOTAL - root_size, tmpfs_default),
    ));
    let conn = match sys::conn_create() {
        Ok(c) => c,
        Err(e) => return fail(format_args!("cannot create its connection: {e}")),
    };
    if let Some(pm) = startup.cap("procmgr") {
        server.lock().admins = Box::new(ProcmgrAdmins { conn, procmgr: ipc::Client::new(pm) });
    }
    server.lock().vfs.set_billing(Box::new(KernelBilling { conn }));
    if let Err(e) = ipc::register_service(namesrv, "fs", conn) {
        return fail(format_args!("cannot register with namesrv: {e}"));
    }
    println!(
        "fs: root is a tmpfs with {} files, {} directories from the initrd",
        filled.files, filled.dirs
    );
    {
        let server = server.clone();
        let _ = thread::spawn(move || mount_disk(&server, BlkDisks { namesrv, clock }));
    }
    {
        let server = server.clone();
        let _ = thread::spawn(move || write_back(&server));
    }
    let mut out = Vec::new();
    ipc::serve(conn, move |req: &mut Request| {
        let mut s = server.lock();
        s.vfs.set_time(clock.now());
        let msg = s.handle(req.badge, &req.msg, req.payload(), &mut out);
        drop(s);
        let n = req.reply_payload(&out);
        let mut data = msg.data;
        if msg.label == 0 {
            data[3] = n;
        }
        Reply {
            msg: keel_rt::abi::ipc::Message::new(msg.label, data),
            caps: Vec::new(),
        }
    })
}

/// The kernel's bills: a client that set up its buffer with a BILL-carrying process capability
/// (`keel_rt::fs` does) gets a bill, and pays on it; others do not pay.
struct KernelBilling {
    conn: Slot,
}

impl keel_fs::billing::Billing for KernelBilling {
    fn payer(&mut self, sid: u64) -> keel_fs::billing::Lookup {
        use keel_fs::billing::Lookup;
        let Some(process) = ipc::client_process(self.conn, sid) else { return Lookup::NotYet };
        match sys::bill_create(process) {
            // A client in our own group: charging it would change nothing, so skip the calls.
            Ok((bill, true)) => {
                let _ = sys::cap_delete(bill);
                Lookup::DoesNot
            }
            Ok((bill, false)) => Lookup::Pays(u64::from(bill)),
            Err(keel_rt::Error::NoRights) => Lookup::DoesNot,
            Err(e) => {
                println!("fs: client {sid:#x} cannot be billed ({e}); the file service pays for it");
                Lookup::DoesNot
            }
        }
    }
    fn charge(&mut self, payer: u64, bytes: u64) -> Result<(), Errno> {
        sys::bill_charge(payer as Slot, bytes).map(|_| ()).map_err(|_| Errno::NoMem)
    }
    fn refund(&mut self, payer: u64, bytes: u64) {
        let _ = sys::bill_refund(payer as Slot, bytes);
    }
    fn release(&mut self, payer: u64) {
        let _ = sys::cap_delete(payer as Slot);
    }
}

/// A client is an administrator when procmgr says the process behind its badge has the ADMIN
/// right (the process capability comes with the client's bulk-buffer setup; a client without
/// one is not).
struct ProcmgrAdmins {
    conn: Slot,
    procmgr: ipc::Client,
}

impl keel_fs::server::Admins for ProcmgrAdmins {
    fn is_admin(&mut self, sid: u64) -> bool {
        let Some(pid) = ipc::client_process(self.conn, sid).and_then(|p| sys::process_info(p).ok()).map(|i| i.pid) else { return false };
        let r = self.procmgr.call(keel_rt::proto::procmgr::RIGHTS_OF, [pid, 0, 0, 0]);
        r.ok().and_then(|r| ipc::status(&r).ok().map(|m| m.data[0])).is_some_and(|bits| bits & keel_rt::proto::procmgr::ADMIN != 0)
    }
}

/// Mounts the cgroup v2 files on [`CGROUP_MOUNT`], forwarded to resmgr through `conn` (without
/// it they are there but answer EIO).
fn mount_cgroup(vfs: &mut Vfs, conn: Option<Slot>, now: u64) {
    if conn.is_none() {
        println!("fs: started without the resmgr capability: {CGROUP_MOUNT} answers EIO");
    }
    let link = conn.map(|c| Box::new(crate::resmgr_link::ResmgrLink::new(c)) as Box<dyn Resmgr>);
    if let Err(e) = vfs.mount(
        CGROUP_MOUNT,
        Box::new(CgroupFs::new(link, now)),
        "cgroup2",
        false,
    ) {
        println!("fs: cannot mount cgroup2 on {CGROUP_MOUNT}: {e}");
    }
}

/// Every [`WRITEBACK_NS`], writes back the file systems that have dirty data. A failure is
/// said once until a write-back succeeds again (the data stays dirty and is tried again).
fn write_back(server: &Mutex<Server<BlkDisks>>) -> ! {
    let mut failing = false;
    loop {
        sys::sleep_ns(WRITEBACK_NS);
        let mut s = server.lock();
        if !s.vfs.needs_sync() {
            continue;
        }
        match s.vfs.sync() {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                println!("fs: periodic write-back failed: {e}; will try again");
            }
            Err(_) => {}
        }
    }
}

/// Waits for `blk0` and mounts it on /disk (the disk is read outside the lock); whatever
/// happens, /disk stops being pending.
fn mount_disk(server: &Mutex<Server<BlkDisks>>, disks: BlkDisks) {
    let opened = disks.open("blk0", false, BLK_ATTEMPTS);
    let mut s = server.lock();
    match opened {
        Ok(fs) => match s.vfs.mount("/disk", fs, "blk0", false) {
            Ok(()) => println!("fs: mounted blk0 (ext2) on /disk"),
            Err(e) => println!("fs: cannot mount blk0 on /disk: {e}"),
        },
        Err(Errno::NoEnt) => println!("fs: no disk (blk0); /disk is a directory of the root tmpfs"),
        Err(e) => println!("fs: blk0 not mounted: {e}; /disk is a directory of the root tmpfs"),
    }
    s.vfs.cancel_mount("/disk");
}
