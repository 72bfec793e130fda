//! The backend process: maps the guest's RAM, serves the monitor's forwarded register accesses
//! on one thread and the doorbells on another, and raises the device's interrupt line.

use crate::backend::{Backend, Kind};
use crate::entropy::{Rndr, Seeded, Source};
use alloc::boxed::Box;
use keel_rt::ipc::{self, Reply, Request};
use keel_rt::proto::vdev;
use keel_rt::startup::Startup;
use keel_rt::sync::Mutex;
use keel_rt::vm::SharedMemory;
use keel_rt::{Error, Slot, println, sys, thread};
use keel_virtio::{GuestMemory, MemError};

/// Level argument of `vm_irq_line`: one rising edge (virtio-mmio interrupts are edge-triggered
/// in the guest's device tree).
const EDGE: u64 = 2;

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

/// RNDR when the CPU has it, else the seeded generator.
pub enum Entropy {
    Hardware(Rndr),
    Seeded(Seeded),
}

impl Source for Entropy {
    fn fill(&mut self, out: &mut [u8]) {
        match self {
            Entropy::Hardware(r) => r.fill(out),
            Entropy::Seeded(s) => s.fill(out),
        }
    }
    fn hardware(&self) -> bool {
        matches!(self, Entropy::Hardware(_))
    }
}

type Device = Backend<GuestRam, Entropy>;

struct Caps {
    ram: Slot,
    irq: Slot,
    notif: Slot,
    conn: Slot,
    monitor: Slot,
}

/// The parsed command line (after the program's name): the device kind, guest RAM's base and
/// size, the VM's id.
pub fn parse_args(args: &[alloc::string::String]) -> Option<(Kind, u64, u64, u64)> {
    let mut kind = None;
    let mut ram = None;
    let mut vm = 0;
    for a in args.iter().skip(1) {
        match a.split_once('=') {
            Some(("ram", v)) => {
                let (base, size) = v.split_once(':')?;
                ram = Some((parse_number(base)?, parse_number(size)?));
            }
            Some(("vm", v)) => vm = parse_number(v)?,
            Some(_) => return None,
            None if kind.is_none() => kind = Some(Kind::parse(a)?),
            None => return None,
        }
    }
    let (base, size) = ram?;
    Some((kind?, base, size, vm))
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
    let Some((kind, base, size, vm)) = parse_args(&startup.args) else {
        println!("vdev: usage: vdev rng ram=BASE:SIZE [vm=ID]");
        return 1;
    };
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
    let seed = sys::counter() ^ (vm << 48) ^ base;
    let entropy = match sys::cpu_features() {
        Ok(f) if f.rndr() => Entropy::Hardware(Rndr::new(keel_rt::random::rndr, Seeded::new(seed))),
        _ => Entropy::Seeded(Seeded::new(seed)),
    };
    let device: &'static Mutex<Device> = Box::leak(Box::new(Mutex::new(Backend::new(kind, GuestRam { base, shared }, entropy))));
    let (irq, notif) = (caps.irq, caps.notif);
    if let Err(e) = thread::spawn_with(32, 0, move || doorbells(device, notif, irq)) {
        println!("vdev: vm {vm}: cannot start its doorbell thread: {e}");
        return 1;
    }
    ipc::serve(caps.conn, |req| handle(device, irq, req))
}

/// The doorbell thread: serves the queues each time the guest rings, until the monitor exits.
fn doorbells(device: &Mutex<Device>, notif: Slot, irq: Slot) {
    loop {
        let bits = match sys::notif_wait(notif, 0) {
            Ok(bits) => bits,
            Err(_) => sys::process_exit(1),
        };
        if bits & vdev::MONITOR_GONE != 0 {
            sys::process_exit(0);
        }
        let raise = device.lock().notified(bits);
        if raise {
            let _ = sys::vm_irq_line(irq, EDGE);
        }
    }
}

fn handle(device: &Mutex<Device>, irq: Slot, req: &mut Request) -> Reply {
    let [a, b, c, _] = req.msg.data;
    match req.msg.label {
        vdev::MMIO_READ => match u8::try_from(b) {
            Ok(size @ (1 | 2 | 4 | 8)) => Reply::ok([device.lock().read(a, size), 0, 0, 0]),
            _ => Reply::err(Error::Invalid),
        },
        vdev::MMIO_WRITE => match u8::try_from(b) {
            Ok(size @ (1 | 2 | 4 | 8)) => {
                let raise = device.lock().write(a, size, c);
                if raise {
                    let _ = sys::vm_irq_line(irq, EDGE);
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
            Reply::ok([d.stats.errors, u64::from(d.status()), u64::from(d.hardware_entropy()), 0])
        }
        _ => Reply::err(Error::NoSys),
    }
}
