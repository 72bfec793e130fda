//! The backend process: maps the guest's RAM, serves the monitor's forwarded register accesses
//! on one thread and the doorbells on another, and raises the device's interrupt line.

use crate::backend::{Backend, Kind};
use crate::entropy::{Rndr, Seeded, Source};
use alloc::boxed::Box;
use alloc::string::String;
use keel_rt::fs;
use keel_rt::ipc::{self, Reply, Request};
use keel_rt::proto::{net, vdev};
use alloc::vec::Vec;
use keel_rt::startup::Startup;
use keel_rt::sync::Mutex;
use keel_rt::vm::SharedMemory;
use keel_rt::{Error, Slot, println, sys, thread};
use keel_virtio::blk::{Blk, Storage, StorageError};
use keel_virtio::{GuestMemory, MemError};

/// Raises the device's interrupt (an edge: virtio-mmio interrupts are edge-triggered in the
/// guest's device tree) with the interrupt status bits it is for, which the kernel keeps and
/// the guest reads without an exit. Called with the device locked, so a guest that sees the
/// device's new state in a forwarded register (Status says NEEDS_RESET) finds the bits set.
fn raise(d: &mut Device, irq: Slot) {
    let bits = d.take_interrupt_status();
    let _ = sys::vm_irq_raise(irq, bits);
}

/// The guest's RAM as mapped here: guest physical `base` is offset 0 of the mapping.
pub struct GuestRam {
    base: u64,
    shared: SharedMemory,
}

impl GuestRam {
    fn offset(&self, addr: u64, len: u64) -> Result<u64, MemError> {
        addr.checked_sub(self.base).filter(|&o| self.shared.contains(o, len)).ok_or(MemError { addr, len })
    }
}

impl GuestMemory for GuestRam {
    fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), MemError> {
        let o = self.offset(addr, out.len() as u64)?;
        self.shared.read(o, out).then_some(()).ok_or(MemError { addr, len: out.len() as u64 })
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let o = self.offset(addr, data.len() as u64)?;
        self.shared.write(o, data).then_some(()).ok_or(MemError { addr, len: data.len() as u64 })
    }
    fn contains(&self, addr: u64, len: u64) -> bool {
        self.offset(addr, len).is_ok()
    }
}

type Device = Backend<GuestRam>;

/// A disk kept in a file of Keel's file system, reached through the file service.
pub struct FileStorage {
    fd: fs::Fd,
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        let _ = fs::close(self.fd);
    }
}

impl Storage for FileStorage {
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        let mut done = 0;
        while done < out.len() {
            match fs::pread(self.fd, &mut out[done..], offset + done as u64) {
                Ok(0) | Err(_) => return Err(StorageError),
                Ok(n) => done += n,
            }
        }
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let mut done = 0;
        while done < data.len() {
            match fs::pwrite(self.fd, &data[done..], offset + done as u64) {
                Ok(0) | Err(_) => return Err(StorageError),
                Ok(n) => done += n,
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        fs::fsync(self.fd).map_err(|_| StorageError)
    }
}

/// A disk that is a whole block device, reached through its driver (`proto::blk`).
pub struct BlockStorage {
    client: ipc::Client,
}

impl BlockStorage {
    /// The device model and the storage of block device `name` behind `cap`: its capacity, and
    /// for a writable disk this backend as its only writer (`EBUSY` when another client, the
    /// file service with it mounted, say, is; `EROFS` for a read-only device).
    fn open(cap: Slot, name: &str, read_only: bool) -> Result<(Blk, BlockStorage), keel_rt::errno::Errno> {
        use keel_rt::errno::Errno;
        use keel_rt::proto::{blk, errno_status};
        let mut client = ipc::Client::new(cap);
        let info = errno_status(&client.call(blk::INFO, [0; 4]).map_err(|_| Errno::Io)?)?;
        if info.data[1] & blk::READ_ONLY != 0 && !read_only {
            return Err(Errno::RoFs);
        }
        // A bulk call first: the driver then sees this process exit (and drops its claim).
        let (r, _) = client.call_bulk(blk::READ, [0, 1, 0], &[]).map_err(|_| Errno::Io)?;
        errno_status(&r)?;
        if !read_only {
            errno_status(&client.call(blk::OPEN_WRITE, [0; 4]).map_err(|_| Errno::Io)?)?;
        }
        let mut id = [0u8; 20];
        id[..name.len().min(20)].copy_from_slice(&name.as_bytes()[..name.len().min(20)]);
        Ok((Blk { capacity: info.data[0], read_only, id }, BlockStorage { client }))
    }

    fn check(r: Result<(ipc::Received, Vec<u8>), Error>) -> Result<Vec<u8>, StorageError> {
        match r {
            Ok((r, payload)) if r.msg.label == 0 => Ok(payload),
            _ => Err(StorageError),
        }
    }
}

impl Storage for BlockStorage {
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        const SECTOR: u64 = keel_virtio::blk::SECTOR;
        if !offset.is_multiple_of(SECTOR) || !(out.len() as u64).is_multiple_of(SECTOR) {
            return Err(StorageError);
        }
        for (i, chunk) in out.chunks_mut((keel_rt::proto::blk::MAX_SECTORS * SECTOR) as usize).enumerate() {
            let sector = offset / SECTOR + i as u64 * keel_rt::proto::blk::MAX_SECTORS;
            let data = Self::check(self.client.call_bulk(keel_rt::proto::blk::READ, [sector, chunk.len() as u64 / SECTOR, 0], &[]))?;
            if data.len() != chunk.len() {
                return Err(StorageError);
            }
            chunk.copy_from_slice(&data);
        }
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        const SECTOR: u64 = keel_virtio::blk::SECTOR;
        if !offset.is_multiple_of(SECTOR) || !(data.len() as u64).is_multiple_of(SECTOR) {
            return Err(StorageError);
        }
        for (i, chunk) in data.chunks((keel_rt::proto::blk::MAX_SECTORS * SECTOR) as usize).enumerate() {
            let sector = offset / SECTOR + i as u64 * keel_rt::proto::blk::MAX_SECTORS;
            Self::check(self.client.call_bulk(keel_rt::proto::blk::WRITE, [sector, 0, 0], chunk))?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        match self.client.call(keel_rt::proto::blk::FLUSH, [0; 4]) {
            Ok(r) if r.msg.label == 0 => Ok(()),
            _ => Err(StorageError),
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub kind: Kind,
    pub ram_base: u64,
    pub ram_size: u64,
    pub vm: u64,
    /// A disk's file.
    pub file: Option<String>,
    /// A disk that is a whole block device (`blk0`, ...), reached through capability `blk`.
    pub device: Option<String>,
    /// A read-only disk.
    pub read_only: bool,
    /// A network device's address.
    pub mac: Option<[u8; 6]>,
}

struct Caps {
    ram: Slot,
    irq: Slot,
    notif: Slot,
    conn: Slot,
    monitor: Slot,
}

/// The parsed command line (after the program's name): `KIND ram=BASE:SIZE [vm=ID]`, for a
/// disk `file=PATH [ro]` or `dev=blkN [ro]`, for a network device `mac=XX:XX:XX:XX:XX:XX`.
pub fn parse_args(args: &[String]) -> Option<Args> {
    let mut kind = None;
    let mut ram = None;
    let mut vm = 0;
    let mut file = None;
    let mut read_only = false;
    let mut mac = None;
    let mut device = None;
    for a in args.iter().skip(1) {
        match a.split_once('=') {
            Some(("ram", v)) => {
                let (base, size) = v.split_once(':')?;
                ram = Some((parse_number(base)?, parse_number(size)?));
            }
            Some(("vm", v)) => vm = parse_number(v)?,
            Some(("file", v)) if !v.is_empty() => file = Some(String::from(v)),
            Some(("mac", v)) => mac = Some(parse_mac(v)?),
            Some(("dev", v)) if !v.is_empty() => device = Some(String::from(v)),
            Some(_) => return None,
            None if a == "ro" => read_only = true,
            None if kind.is_none() => kind = Some(Kind::parse(a)?),
            None => return None,
        }
    }
    let (ram_base, ram_size) = ram?;
    let kind = kind?;
    // A disk has a file; nothing else has one, or is read-only.
    // A network device has an address; nothing else has one.
    // A disk has a file or a block device (one of them).
    if (kind == Kind::Blk) != (file.is_some() != device.is_some()) || (kind != Kind::Blk && (read_only || file.is_some() || device.is_some())) || (kind == Kind::Net) != mac.is_some() {
        return None;
    }
    Some(Args { kind, ram_base, ram_size, vm, file, device, read_only, mac })
}

/// `02:4b:65:00:01:00`.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

pub fn main(startup: &Startup) -> i32 {
    let caps = (|| Some(Caps { ram: startup.cap("ram")?, irq: startup.cap("irq")?, notif: startup.cap("notif")?, conn: startup.cap("conn")?, monitor: startup.cap("monitor")? }))();
    let Some(caps) = caps else {
        println!("vdev: started without its ram, irq, notif, conn and monitor capabilities");
        return 1;
    };
    let Some(args) = parse_args(&startup.args) else {
        println!("vdev: usage: vdev rng|blk|console|net ram=BASE:SIZE [vm=ID] [file=PATH|dev=blkN [ro]] [mac=MAC]");
        return 1;
    };
    let (base, size, vm) = (args.ram_base, args.ram_size, args.vm);
    // A disk's file, through the file service connection the monitor gave (no namesrv).
    if let Some(conn) = startup.cap("fs") {
        fs::set_connection(conn);
    }
    // A console's output goes to the monitor over this connection (its badge names the VM).
    let output = startup.cap("output").map(|c| &*Box::leak(Box::new(Mutex::new(ipc::Client::new(c)))));
    if args.kind == Kind::Console && output.is_none() {
        println!("vdev: vm {vm}: a console needs its output capability");
        return 1;
    }
    // A network device's port on its switch.
    let monitor = startup.cap("vmm").map(ipc::Client::new);
    let port = startup.cap("port").map(|c| &*Box::leak(Box::new(Mutex::new(Port { client: ipc::Client::new(c), vm, notif: caps.notif, monitor, lost: None, told: false }))));
    if args.kind == Kind::Net && port.is_none() {
        println!("vdev: vm {vm}: a network device needs its port capability");
        return 1;
    }
    let shared = match SharedMemory::map(caps.ram, size) {
        Ok(s) => s,
        Err(e) => {
            println!("vdev: vm {vm}: cannot map the guest's RAM: {e}");
            return 1;
        }
    };
    // Told when the monitor goes, so a VM it lost does not keep its device (and RAM) alive.
    if let Err(e) = sys::process_watch(caps.monitor, caps.notif, vdev::MONITOR_GONE) {
        println!("vdev: vm {vm}: cannot watch the monitor: {e}");
        return 1;
    }
    let ram = GuestRam { base, shared };
    let backend = match args.kind {
        Kind::Rng => {
            let seed = sys::counter() ^ (vm << 48) ^ base;
            // RNDR when the CPU has it, else the seeded generator.
            let entropy: Box<dyn Source + Send> = match sys::cpu_features() {
                Ok(f) if f.rndr() => Box::new(Rndr::new(keel_rt::random::rndr, Seeded::new(seed))),
                _ => Box::new(Seeded::new(seed)),
            };
            Backend::rng(ram, entropy)
        }
        Kind::Console => Backend::console(ram),
        Kind::Net => Backend::net(ram, args.mac.unwrap_or_default()),
        Kind::Blk if args.device.is_some() => {
            let name = args.device.as_deref().unwrap_or("");
            let Some(cap) = startup.cap("blk") else {
                println!("vdev: vm {vm}: disk {name}: started without its blk capability");
                return 1;
            };
            match BlockStorage::open(cap, name, args.read_only) {
                Ok((disk, storage)) => Backend::blk(ram, disk, Box::new(storage)),
                // Another writer: the monitor says so itself (exit code 16, EBUSY).
                Err(keel_rt::errno::Errno::Busy) => return 16,
                Err(e) => {
                    println!("vdev: vm {vm}: disk {name}: {e}");
                    return 1;
                }
            }
        }
        Kind::Blk => {
            let path = args.file.as_deref().unwrap_or("");
            match open_disk(path, args.read_only) {
                Ok((disk, storage)) => Backend::blk(ram, disk, Box::new(storage)),
                Err(e) => {
                    println!("vdev: vm {vm}: disk {path}: {e}");
                    return 1;
                }
            }
        }
    };
    let device: &'static Mutex<Device> = Box::leak(Box::new(Mutex::new(backend)));
    let (irq, notif) = (caps.irq, caps.notif);
    if let Some(port) = port
        && let Err(e) = port.lock().attach()
    {
        println!("vdev: vm {vm}: cannot attach to its switch port: {e}");
        return 1;
    }
    if let Err(e) = thread::spawn_with(32, 0, move || doorbells(device, notif, irq, output, port)) {
        println!("vdev: vm {vm}: cannot start its doorbell thread: {e}");
        return 1;
    }
    ipc::serve(caps.conn, |req| handle(device, irq, notif, output, port.is_some(), req))
}

/// Opens a disk's file: the device model (its capacity the file's whole sectors) and its
/// storage.
fn open_disk(path: &str, read_only: bool) -> Result<(Blk, FileStorage), keel_rt::errno::Errno> {
    let flags = if read_only { fs::flags::O_RDONLY } else { fs::flags::O_RDWR };
    let fd = fs::open(path, flags, 0)?;
    let st = fs::fstat(fd)?;
    let mut id = [0u8; 20];
    // The ID the guest sees (/sys/block/vda/serial): the file's name, cut to 20 bytes.
    let name = path.rsplit('/').next().unwrap_or(path).as_bytes();
    id[..name.len().min(20)].copy_from_slice(&name[..name.len().min(20)]);
    Ok((Blk { capacity: st.size / keel_virtio::blk::SECTOR, read_only, id }, FileStorage { fd }))
}

/// Bits of the notification below these are doorbells (bit `n`: queue `n`).
const DOORBELLS: u64 = (1 << 32) - 1;
/// The bit the switch signals when frames wait for this port.
const SWITCH_FRAMES: u64 = 1 << 62;
/// The bit the serving thread signals when a forwarded write left frames to pass on.
const PUMP: u64 = 1 << 61;

/// A network device's port on its switch (`proto::net`).
struct Port {
    client: ipc::Client,
    /// The VM (for the notices).
    vm: u64,
    /// The notification the switch signals.
    notif: Slot,
    /// The monitor, which opens a new port when the switch service restarted.
    monitor: Option<ipc::Client>,
    /// The switch service died and no new port came yet (when it was last asked for, on the
    /// counter): frames are dropped meanwhile, and a new port is asked for again at most once a
    /// second, at a frame or after a second of waiting.
    lost: Option<u64>,
    /// The notice that frames are being dropped has been printed (once per loss).
    told: bool,
}

impl Port {
    /// Tells the switch which notification to signal, and sets up the bulk buffer (so the
    /// switch notices this process's exit from now on).
    fn attach(&mut self) -> Result<(), Error> {
        let signal = sys::cap_copy(self.notif, None, keel_rt::abi::rights::SIGNAL | keel_rt::abi::rights::GRANT, 0)?;
        let r = self.client.call_with_caps(net::ATTACH, [SWITCH_FRAMES, 0, 0, 0], &[signal]);
        let _ = sys::cap_delete(signal);
        ipc::status(&r?)?;
        let (r, _) = self.client.call_bulk(net::RECV, [0; 3], &[])?;
        ipc::status(&r).map(|_| ())
    }

    /// Passes `frames` to the switch, as many per call as a bulk buffer holds.
    fn send(&mut self, frames: &[Vec<u8>]) {
        let mut payload = Vec::new();
        for f in frames {
            if !net::push_frame(&mut payload, f, ipc::BULK_SIZE as usize) {
                self.call_send(&payload);
                payload.clear();
                net::push_frame(&mut payload, f, ipc::BULK_SIZE as usize);
            }
        }
        if !payload.is_empty() {
            self.call_send(&payload);
        }
    }

    fn call_send(&mut self, payload: &[u8]) {
        if !self.ready() {
            return;
        }
        if let Err(e) = self.client.call_bulk(net::SEND, [0; 3], payload) {
            // Sent again on a new port (frames are not lost with the old switch).
            if self.lost(e) {
                let _ = self.client.call_bulk(net::SEND, [0; 3], payload);
            }
        }
    }

    /// The port died (`PeerDied`: the switch service with it): asks the monitor for a port on
    /// the restarted service and attaches to it; whether that worked. If it did not (the
    /// service is not back yet: init restarts it, and on a loaded machine that can take
    /// seconds), says so once and asks again later ([`Port::ready`]).
    fn lost(&mut self, e: Error) -> bool {
        if e != Error::PeerDied {
            return false;
        }
        let reply = self.monitor.as_ref().map(|m| m.call(keel_rt::proto::vmm::PORT_LOST, [0; 4]));
        if let Some(Ok(r)) = reply
            && r.msg.label == 0
            && let Some(cap) = r.caps.slots().next()
        {
            let _ = sys::cap_delete(self.client.slot());
            self.client = ipc::Client::new(cap);
            if self.attach().is_ok() {
                self.lost = None;
                self.told = false;
                return true;
            }
        }
        self.lost = Some(sys::counter());
        if !self.told {
            self.told = true;
            println!("vdev: vm {}: the switch service is gone ({e}) and no new port came yet: this network device drops its frames until it is back", self.vm);
        }
        false
    }

    /// Whether the port can carry frames now: true unless it is lost, in which case a new one
    /// is asked for if the last try was a second ago or more.
    fn ready(&mut self) -> bool {
        match self.lost {
            None => true,
            Some(at) if sys::counter().wrapping_sub(at) >= sys::counter_freq() => self.lost(Error::PeerDied),
            Some(_) => false,
        }
    }

    /// Up to `max` frames waiting at the switch: (records, frames still waiting there).
    fn recv(&mut self, max: usize) -> (Vec<u8>, u64) {
        if !self.ready() {
            return (Vec::new(), 0);
        }
        match self.client.call_bulk(net::RECV, [max as u64, 0, 0], &[]) {
            Ok((r, payload)) if r.msg.label == 0 => (payload, r.msg.data[1]),
            Ok(_) => (Vec::new(), 0),
            Err(e) => {
                // A new port starts empty.
                self.lost(e);
                (Vec::new(), 0)
            }
        }
    }
}

/// The doorbell thread: serves the queues each time the guest rings (and a network device's
/// frames each time the switch has some), until the monitor exits.
fn doorbells(device: &Mutex<Device>, notif: Slot, irq: Slot, output: Option<&Mutex<ipc::Client>>, port: Option<&Mutex<Port>>) {
    // Frames wait at the switch that this port has not taken (no room for them yet).
    let mut waiting = false;
    loop {
        // A lost port is asked for again after a second even if nothing rings.
        let lost = port.is_some_and(|p| p.lock().lost.is_some());
        let bits = match sys::notif_wait(notif, if lost { 1_000_000_000 } else { 0 }) {
            Ok(bits) => bits,
            Err(Error::TimedOut) => {
                waiting = true;
                0
            }
            Err(_) => sys::process_exit(1),
        };
        if bits & vdev::MONITOR_GONE != 0 {
            sys::process_exit(0);
        }
        {
            let mut d = device.lock();
            if d.notified(bits & DOORBELLS) {
                raise(&mut d, irq);
            }
        }
        pass_output(device, output);
        if let Some(port) = port {
            waiting |= bits & SWITCH_FRAMES != 0;
            pump(device, port, irq, &mut waiting);
        }
    }
}

/// Moves frames between the guest's queues and the switch until neither side has more that
/// can move now.
fn pump(device: &Mutex<Device>, port: &Mutex<Port>, irq: Slot, waiting: &mut bool) {
    loop {
        let mut moved = false;
        let out = {
            let mut d = device.lock();
            // Frames past the last batch's end are taken first.
            if d.more_to_transmit() && d.notified(0) {
                raise(&mut d, irq);
            }
            d.take_transmitted()
        };
        if !out.is_empty() {
            port.lock().send(&out);
            moved = true;
        }
        let room = device.lock().receive_room();
        if *waiting && room > 0 {
            let (payload, left) = port.lock().recv(room);
            *waiting = left > 0;
            if !payload.is_empty() {
                moved = true;
                let mut d = device.lock();
                if d.receive(net::frames(&payload)) {
                    raise(&mut d, irq);
                }
            }
        }
        if !moved && !device.lock().more_to_transmit() {
            return;
        }
    }
}

/// Gives the monitor what a console's guest wrote (outside the device's lock: the monitor may
/// be busy writing Keel's console).
fn pass_output(device: &Mutex<Device>, output: Option<&Mutex<ipc::Client>>) {
    let Some(output) = output else { return };
    let bytes = device.lock().take_output();
    if bytes.is_empty() {
        return;
    }
    let mut client = output.lock();
    for chunk in bytes.chunks(ipc::BULK_SIZE as usize) {
        let _ = client.call_bulk(keel_rt::proto::vmm::CONSOLE_OUTPUT, [0; 3], chunk);
    }
}

fn handle(device: &Mutex<Device>, irq: Slot, notif: Slot, output: Option<&Mutex<ipc::Client>>, networked: bool, req: &mut Request) -> Reply {
    let [a, b, c, _] = req.msg.data;
    match req.msg.label {
        vdev::MMIO_READ => match u8::try_from(b) {
            Ok(size @ (1 | 2 | 4 | 8)) => Reply::ok([device.lock().read(a, size), 0, 0, 0]),
            _ => Reply::err(Error::Invalid),
        },
        vdev::MMIO_WRITE => match u8::try_from(b) {
            Ok(size @ (1 | 2 | 4 | 8)) => {
                {
                    let mut d = device.lock();
                    if d.write(a, size, c) {
                        raise(&mut d, irq);
                    }
                }
                pass_output(device, output);
                // Frames the write made the device take go to the switch from the doorbell
                // thread (the only one that calls the port).
                if networked && device.lock().has_transmitted() {
                    let _ = sys::notif_signal(notif, PUMP);
                }
                Reply::ok([0; 4])
            }
            _ => Reply::err(Error::Invalid),
        },
        vdev::STATS => {
            let s = device.lock().stats;
            Reply::ok([s.requests, s.bytes, s.notifications, s.interrupts])
        }
        vdev::STATE => {
            let d = device.lock();
            Reply::ok([d.stats.errors, u64::from(d.status()), u64::from(d.hardware_entropy() == Some(true)), 0])
        }
        vdev::INPUT => {
            let bytes = req.payload().to_vec();
            {
                let mut d = device.lock();
                if d.input(&bytes) {
                    raise(&mut d, irq);
                }
            }
            Reply::ok([0; 4])
        }
        vdev::STOP => {
            let flushed = device.lock().stop();
            // The file is closed: end the session too, so the file service has nothing to tidy
            // up (or report) when this process ends.
            fs::end_session();
            // Then end: the doorbell thread exits the process as it does when the monitor goes.
            let _ = sys::notif_signal(notif, vdev::MONITOR_GONE);
            if flushed { Reply::ok([0; 4]) } else { Reply::err(Error::BadState) }
        }
        _ => Reply::err(Error::NoSys),
    }
}
