//! The VM's virtio devices as the monitor sees them: each is served by its own backend process
//! (`/bin/vdev`), which this module starts with only the capabilities its device needs, to which
//! it forwards the guest's register accesses (all but the doorbells, which the kernel's ioevents
//! deliver to the backend directly), and which it stops with the VM.
//!
//! A backend that dies (killed, or crashed) takes only its own device with it: the monitor
//! notices at the next forwarded access, says so once, and from then on answers the slot itself
//! as a device that needs a reset (`virtio_slot::read_failed`), with a configuration-change
//! interrupt so the guest's driver learns of it; the VM and its other devices go on.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use keel_rt::abi::{Error, Slot, rights, slots};
use keel_rt::abi::ipc::{CapList, Message};
use keel_rt::process::{self, Grant, Sched};
use keel_rt::proto::vdev;
use keel_rt::sys;
use keel_rt::sync::Mutex;
use keel_vmm::config::VirtioDevice;
use keel_vmm::layout::{RAM_BASE, VIRTIO_MMIO_FIRST_SPI, virtio_mmio};

/// QueueNotify's and InterruptStatus's offsets in a virtio-mmio window (virtio 1.2, 4.2.2).
const QUEUE_NOTIFY: u64 = 0x050;
const INTERRUPT_STATUS: u64 = 0x060;
/// How long a backend told to stop has to exit before it is killed.
const STOP_WAIT_NS: u64 = 5_000_000_000;
/// InterruptStatus's configuration-change bit.
const CONFIG_CHANGE: u32 = 2;
/// A backend's exit code when its disk has another writer (EBUSY).
const BUSY: i64 = 16;

/// This monitor's session with the switch service (`net`), made at the first network device.
static NET: Mutex<Option<keel_rt::ipc::Client>> = Mutex::new(None);

/// A call to the switch service, looked up again once if it restarted since the last.
fn net_call<R>(namesrv: Slot, f: impl Fn(&mut keel_rt::ipc::Client) -> Result<R, Error>) -> Result<R, Error> {
    let mut net = NET.lock();
    for attempt in 0..2 {
        let client = match net.as_mut() {
            Some(c) => c,
            None => net.insert(keel_rt::ipc::Client::new(keel_rt::ipc::lookup(namesrv, "net", 20, 50_000_000)?)),
        };
        match f(client) {
            Err(Error::PeerDied) if attempt == 0 => {
                let _ = sys::cap_delete(client.slot());
                *net = None;
            }
            r => return r,
        }
    }
    Err(Error::PeerDied)
}

/// The address of the network device in `slot` of VM `id`: locally administered, `02:4b:65`
/// ("Ke"), then the VM's number and the slot.
pub fn mac_of(id: u32, slot: u32) -> [u8; 6] {
    [0x02, 0x4b, 0x65, (id >> 8) as u8, id as u8, slot as u8]
}

/// Opens a port for VM `id`'s device with address `mac` on `switch`: (its number, the
/// capability its backend calls with).
fn open_port(namesrv: Slot, switch: &str, id: u32, mac: [u8; 6]) -> Result<(u64, Slot), Error> {
    net_call(namesrv, |net| {
        let (r, _) = net.call_bulk(keel_rt::proto::net::OPEN, [u64::from(id), keel_rt::proto::net::mac_word(mac), 0], switch.as_bytes())?;
        keel_rt::ipc::status(&r)?;
        let cap = r.caps.slots().next().ok_or(Error::Invalid)?;
        Ok((r.msg.data[0], cap))
    })
}

fn close_port(namesrv: Slot, port: u64) {
    let _ = net_call(namesrv, |net| keel_rt::ipc::status(&net.call(keel_rt::proto::net::CLOSE, [port, 0, 0, 0])?).map(|_| ()));
}

/// What a device did (`vm stat`), read from its backend.
#[derive(Clone, Copy, Default)]
pub struct DeviceStats {
    pub requests: u64,
    pub bytes: u64,
    /// Times the backend woke for doorbells (several doorbells can make one wake-up; the
    /// doorbells themselves are the VM's `ioevent` exits).
    pub notifications: u64,
    pub interrupts: u64,
    pub errors: u64,
    pub status: u32,
    /// An entropy device's bytes come from RNDR.
    pub hardware: bool,
    /// The figures were read from the backend at least once (else all are 0: unknown).
    pub known: bool,
}

/// What became of a device's backend.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Running,
    /// It died while its VM ran.
    Gone,
    /// The monitor stopped it when its VM ended.
    Ended,
}

/// One virtio device of a VM and the process serving it.
pub struct Device {
    pub kind: VirtioDevice,
    pub slot: u32,
    pub pid: u64,
    /// The backend process (all rights: to kill it).
    process: Slot,
    /// The client side of the connection the backend serves.
    conn: Slot,
    /// The device's interrupt line (the backend has its own copy).
    line: Slot,
    notif: Slot,
    ioevents: Vec<Slot>,
    /// The same connection for calls with a payload (console input), badged.
    bulk: Mutex<keel_rt::ipc::Client>,
    bulk_slot: Slot,
    /// The backend is gone; the monitor answers the slot itself.
    dead: AtomicBool,
    /// The monitor stopped the backend with its VM.
    ended: AtomicBool,
    /// The last figures read from the backend (kept for `vm stat` after it is gone).
    last: Mutex<DeviceStats>,
    /// A network device's port on its switch, and namesrv (to reach the switch service).
    port: Mutex<Option<(u64, Slot)>>,
}

impl Device {
    /// Starts the backend of `kind` in virtio-mmio `slot` of `vm` (VM number `id` in
    /// messages), giving it guest RAM (`ram`, `ram_bytes` at `RAM_BASE`), the slot's interrupt
    /// line, a notification its doorbells signal, a connection to serve and a watch on this
    /// monitor. Everything made is given back if any step fails.
    /// `adopt` puts the backend in procmgr's process list (`ps`, `kill`); `namesrv` finds the
    /// file service for a disk's backend (which gets that connection, not namesrv); `output`:
    /// for a console, the badged connection its output goes to the monitor by, for a network
    /// device the one it asks for a new port by (`proto::vmm::PORT_LOST`). The backend process
    /// is charged to `quota` (the VM's cgroup, or `SELF_PROCESS` for the monitor's).
    #[allow(clippy::too_many_arguments)]
    pub fn start(elf: &[u8], kind: &VirtioDevice, slot: u32, vm: Slot, id: u32, ram: Slot, ram_bytes: u64, namesrv: Slot, output: Option<Slot>, quota: Slot, adopt: &dyn Fn(Slot, &str) -> Result<(), Error>) -> Result<Device, String> {
        let mut made: Vec<Slot> = Vec::new();
        let r = Self::start_with(elf, kind, slot, vm, id, ram, ram_bytes, namesrv, output, quota, &mut made);
        if let Ok(d) = &r
            && let Err(e) = adopt(d.process, &alloc::format!("vdev-{}", kind.name()))
        {
            keel_rt::println!("vmm: vm {id}: the virtio-{} backend (pid {}) is not in the process list: {e}", kind.name(), d.pid);
        }
        if r.is_err() {
            for s in made.into_iter().rev() {
                let _ = sys::cap_delete(s);
            }
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn start_with(elf: &[u8], kind: &VirtioDevice, slot: u32, vm: Slot, id: u32, ram: Slot, ram_bytes: u64, namesrv: Slot, output: Option<Slot>, quota: Slot, made: &mut Vec<Slot>) -> Result<Device, String> {
        let what = |step: &str, e: Error| alloc::format!("virtio-{} in slot {slot}: {step}: {e}", kind.name());
        let window = virtio_mmio(slot).ok_or_else(|| alloc::format!("no virtio-mmio slot {slot}"))?;
        let keep = |made: &mut Vec<Slot>, r: Result<Slot, Error>, step: &str| {
            r.map(|s| {
                made.push(s);
                s
            })
            .map_err(|e| what(step, e))
        };
        let conn = keep(made, sys::conn_create(), "cannot create its connection")?;
        // Calls with a payload need a badged capability (the server keys its buffers by badge).
        let bulk = keep(made, sys::cap_copy(conn, None, rights::CALL | rights::GRANT, 1), "cannot copy its connection")?;
        let notif = keep(made, sys::notif_create(), "cannot create its notification")?;
        // The kernel keeps the slot's InterruptStatus: the guest's reads and acknowledgements of
        // it (two per interrupt for Linux) never reach this monitor or the backend.
        let line = keep(made, sys::vm_virtio_irq_line(vm, 32 + VIRTIO_MMIO_FIRST_SPI + slot, window.start + INTERRUPT_STATUS), "cannot create its interrupt line")?;
        let mut ioevents = Vec::new();
        for q in 0..kind.queues() {
            let ev = keep(made, sys::vm_ioevent(vm, notif, window.start + QUEUE_NOTIFY, 4, Some(u64::from(q)), 1 << q), "cannot register its doorbell")?;
            ioevents.push(ev);
        }
        let ram_arg = alloc::format!("ram={RAM_BASE:#x}:{ram_bytes:#x}");
        let vm_arg = alloc::format!("vm={id}");
        let mut grants = alloc::vec![
            Grant { slot: ram, rights: rights::MAP | rights::READ | rights::WRITE, badge: 0, name: "ram" },
            Grant { slot: line, rights: rights::SIGNAL, badge: 0, name: "irq" },
            // A network device's backend passes a signal-only copy to its switch.
            Grant { slot: notif, rights: rights::WAIT | rights::SIGNAL | if matches!(kind, VirtioDevice::Net { .. }) { rights::GRANT } else { 0 }, badge: 0, name: "notif" },
            Grant { slot: conn, rights: rights::SERVE, badge: 0, name: "conn" },
            Grant { slot: slots::SELF_PROCESS, rights: rights::WAIT, badge: 0, name: "monitor" },
        ];
        let mut args: Vec<String> = ["vdev", kind.name(), &ram_arg, &vm_arg].iter().map(|s| String::from(*s)).collect();
        if let Some(output) = output {
            // A console's output goes there; a network device asks there for a new port.
            let name = if matches!(kind, VirtioDevice::Net { .. }) { "vmm" } else { "output" };
            grants.push(Grant { slot: output, rights: rights::CALL | rights::GRANT, badge: 0, name });
        }
        let mut port = None;
        let mut port_cap = None;
        if let VirtioDevice::Net { switch } = kind {
            let mac = mac_of(id, slot);
            let (number, cap) = open_port(namesrv, switch, id, mac).map_err(|e| match e {
                Error::Exists => alloc::format!("--net {switch}: address {} is in use on it", keel_vmm::config::mac_text(&mac)),
                e => alloc::format!("--net {switch}: the switch service cannot open a port: {e}"),
            })?;
            made.push(cap);
            port_cap = Some(cap);
            port = Some((number, namesrv));
            grants.push(Grant { slot: cap, rights: rights::CALL | rights::GRANT, badge: 0, name: "port" });
            args.push(alloc::format!("mac={}", keel_vmm::config::mac_text(&mac)));
        }
        let close = |port: Option<(u64, Slot)>| {
            if let Some((number, namesrv)) = port {
                close_port(namesrv, number);
            }
        };
        if let Some(dev) = kind.block_device() {
            // A whole block device: a session with its driver (a fresh badge), nothing else.
            let blk = keep(made, keel_rt::ipc::lookup(namesrv, dev, 1, 0), "cannot reach the block device")?;
            grants.push(Grant { slot: blk, rights: rights::CALL | rights::GRANT, badge: 0, name: "blk" });
            args.push(alloc::format!("dev={dev}"));
            if let VirtioDevice::Disk { read_only: true, .. } = kind {
                args.push(String::from("ro"));
            }
        } else if let VirtioDevice::Disk { path, read_only } = kind {
            // Its own session with the file service (a fresh badge from namesrv), and nothing
            // else of namesrv's.
            let fs = keep(made, keel_rt::ipc::lookup(namesrv, "fs", 1, 0), "cannot reach the file service").inspect_err(|_| close(port))?;
            grants.push(Grant { slot: fs, rights: rights::CALL | rights::GRANT, badge: 0, name: "fs" });
            args.push(alloc::format!("file={path}"));
            if *read_only {
                args.push(String::from("ro"));
            }
        }
        let name = alloc::format!("vdev-{}", kind.name());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = process::spawn_in(quota, &name, elf, None, &argv, &grants, Sched::default()).map_err(|e| {
            close(port);
            what("cannot start its backend /bin/vdev", e)
        })?;
        made.push(child.process);
        // The backend has its copy of the port.
        if let Some(cap) = port_cap {
            let _ = sys::cap_delete(cap);
            made.retain(|&s| s != cap);
        }
        // The connection dies with the backend: a forwarded access then fails (PeerDied)
        // instead of waiting for a server that will never come.
        if let Err(e) = sys::conn_owner(conn, child.process) {
            let _ = sys::process_kill(child.process);
            close(port);
            return Err(what("cannot tie its connection to its backend", e));
        }
        // The backend serves once its device is ready (its disk opened, its port attached); one
        // that cannot exits, and the call fails (the connection dies with it).
        if sys::ipc_call(conn, &Message::new(vdev::STATS, [0; 4]), CapList::EMPTY).is_err() {
            close(port);
            let code = sys::process_wait(child.process).unwrap_or(1);
            return Err(match (kind, code) {
                (VirtioDevice::Disk { path, .. }, BUSY) => alloc::format!("--disk {path}: another client writes it (the file service, if it is mounted: umount it, or give {path}:ro)"),
                _ => alloc::format!("virtio-{} in slot {slot}: its backend could not start (exit code {code}; its message is above)", kind.name()),
            });
        }
        Ok(Device {
            kind: kind.clone(),
            slot,
            pid: child.pid,
            process: child.process,
            conn,
            line,
            notif,
            ioevents,
            bulk: Mutex::new(keel_rt::ipc::Client::new(bulk)),
            bulk_slot: bulk,
            dead: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            last: Mutex::new(DeviceStats::default()),
            port: Mutex::new(port),
        })
    }

    /// The guest's access at `offset` in the device's window: the value a load returns (0 for
    /// a store). `Err` once, with the message to print, when the backend is found gone.
    pub fn access(&self, write: bool, offset: u64, size: u8, value: u64) -> Result<u64, String> {
        if self.dead.load(Ordering::Acquire) {
            return Ok(if write { 0 } else { keel_vmm::virtio_slot::read_failed(offset, size, self.kind.device_id()) });
        }
        let msg = if write { Message::new(vdev::MMIO_WRITE, [offset, u64::from(size), value, 0]) } else { Message::new(vdev::MMIO_READ, [offset, u64::from(size), 0, 0]) };
        match sys::ipc_call(self.conn, &msg, CapList::EMPTY) {
            Ok(r) if r.msg.label == 0 => Ok(r.msg.data[0]),
            // The backend refused the access (a size it does not take): a load reads 0.
            Ok(_) => Ok(0),
            Err(e) => {
                if self.dead.swap(true, Ordering::AcqRel) {
                    return Ok(0);
                }
                // The guest's driver hears of it by interrupt (a configuration change); the status
                // says NEEDS_RESET.
                let _ = sys::vm_irq_raise(self.line, CONFIG_CHANGE);
                Err(alloc::format!("the virtio-{} backend (pid {}) is gone ({e}): the device now reports DEVICE_NEEDS_RESET", self.kind.name(), self.pid))
            }
        }
    }

    /// A network device's port died with its switch service: opens one again (VM `id`) and
    /// returns the capability for its backend.
    pub fn reopen_port(&self, id: u32) -> Result<Slot, Error> {
        let VirtioDevice::Net { switch } = &self.kind else { return Err(Error::Invalid) };
        let mut port = self.port.lock();
        let Some((old, namesrv)) = *port else { return Err(Error::Invalid) };
        // Gone with the old service, or (a backend that was wrong about it) closed now.
        close_port(namesrv, old);
        let (number, cap) = open_port(namesrv, switch, id, mac_of(id, self.slot))?;
        *port = Some((number, namesrv));
        Ok(cap)
    }

    /// Input typed for a console device.
    pub fn input(&self, bytes: &[u8]) -> Result<(), Error> {
        if self.dead.load(Ordering::Acquire) {
            return Err(Error::PeerDied);
        }
        let (r, _) = self.bulk.lock().call_bulk(vdev::INPUT, [0; 3], bytes)?;
        keel_rt::ipc::status(&r).map(|_| ())
    }

    /// Its figures (fresh from the backend while it runs, else the last ones read) and what
    /// became of the backend.
    pub fn stats(&self) -> (DeviceStats, Backend) {
        if self.ended.load(Ordering::Acquire) {
            return (*self.last.lock(), Backend::Ended);
        }
        match self.read_stats() {
            (s, true) => (s, Backend::Running),
            (s, false) => (s, Backend::Gone),
        }
    }

    fn read_stats(&self) -> (DeviceStats, bool) {
        let alive = !self.dead.load(Ordering::Acquire);
        if alive {
            let a = sys::ipc_call(self.conn, &Message::new(vdev::STATS, [0; 4]), CapList::EMPTY);
            let b = sys::ipc_call(self.conn, &Message::new(vdev::STATE, [0; 4]), CapList::EMPTY);
            if let (Ok(a), Ok(b)) = (a, b) {
                let (s, t) = (a.msg.data, b.msg.data);
                *self.last.lock() = DeviceStats { requests: s[0], bytes: s[1], notifications: s[2], interrupts: s[3], errors: t[0], status: t[1] as u32, hardware: t[2] != 0, known: true };
                return (*self.last.lock(), true);
            }
        }
        (*self.last.lock(), false)
    }

    /// Stops the backend and gives back every capability of the device (the VM is ending).
    pub fn release(&self) {
        // A backend that died before keeps saying so. (No vCPU runs now: nothing else calls it.)
        let mut exited = false;
        if self.read_stats().1 {
            self.ended.store(true, Ordering::Release);
            // A disk's writes made durable and its file closed; then the backend exits by
            // itself. Waited for (a bounded time) so its VM's memory is free when `vm run
            // --wait` returns; killed if it does not.
            let watch = sys::notif_create();
            if let Ok(n) = watch {
                let _ = sys::process_watch(self.process, n, 1);
            }
            let _ = sys::ipc_call(self.conn, &Message::new(vdev::STOP, [0; 4]), CapList::EMPTY);
            if let Ok(n) = watch {
                exited = sys::notif_wait(n, STOP_WAIT_NS).is_ok_and(|bits| bits & 1 != 0);
                let _ = sys::cap_delete(n);
            }
        }
        self.dead.store(true, Ordering::Release);
        if !exited {
            let _ = sys::process_kill(self.process);
        }
        if let Some((number, namesrv)) = *self.port.lock() {
            close_port(namesrv, number);
        }
        for &s in self.ioevents.iter().chain([&self.line, &self.notif, &self.bulk_slot, &self.conn, &self.process]) {
            let _ = sys::cap_delete(s);
        }
    }
}
