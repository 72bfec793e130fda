//! The service around the driver: find the virtio-blk devices, set each up with its DMA region
//! and interrupt, register `blk0`, `blk1`, ... with namesrv and serve each on its own thread.
//! One thread per device means one request at a time per device: the thread owns its device, so
//! no lock is needed to keep requests apart.

use crate::device::{self, BlkDevice};
use crate::hw::{ContiguousDma, IrqLine, SlotRegisters};
use crate::request::dma_layout;
use crate::{BlkError, describe};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use keel_rt::abi::perm;
use keel_rt::startup::Startup;
use keel_rt::{Slot, ipc, println, sys, thread, vm};

/// QEMU virt's virtio-mmio transports: 32 slots of 0x200 bytes from here (one 16 KiB window).
pub const WINDOW_BASE: u64 = 0x0a00_0000;
pub const WINDOW_SIZE: u64 = 0x4000;
pub const SLOTS: u32 = 32;
/// Slot n interrupts on SPI 16 + n.
pub const FIRST_INTID: u32 = 48;
/// Priority of the serving threads (the manifest's for the service).
const PRIORITY: u8 = 40;

/// A device ready to serve.
struct Disk {
    name: String,
    dev: BlkDevice<SlotRegisters, ContiguousDma>,
    irq: IrqLine,
    conn: Slot,
    claim: crate::protocol::WriteClaim,
}

/// Runs the service; Ok when there is nothing to drive (no device), else serves forever.
pub fn run(startup: &Startup) -> Result<(), BlkError> {
    let cap = |name: &'static str| startup.cap(name).ok_or(BlkError::MissingCap(name));
    let (control, namesrv) = (cap("control")?, cap("namesrv")?);
    let window = sys::device_pmo(control, WINDOW_BASE, WINDOW_SIZE).map_err(|e| BlkError::Sys("device_pmo", e))?;
    let va = vm::map_pmo(window, WINDOW_SIZE, perm::READ | perm::WRITE).map_err(|e| BlkError::Sys("map virtio-mmio", e))?;
    // The mapping keeps the device object alive.
    let _ = sys::cap_delete(window);

    let found = device::scan(SLOTS, |n| SlotRegisters::new(va, n));
    if found.is_empty() {
        println!("blk: no virtio-blk devices");
        return Ok(());
    }
    let mut disks = Vec::new();
    for (slot, _) in found {
        let name = format!("blk{}", disks.len());
        match start(control, va, slot, name) {
            Ok(d) => {
                println!("{}", describe(&d.name, slot, d.dev.info()));
                ipc::register_service(namesrv, &d.name, d.conn).map_err(|e| BlkError::Register(d.name.clone(), e))?;
                disks.push(d);
            }
            Err(e) => println!("blk: virtio-blk at slot {slot}: {e}; not used"),
        }
    }
    let Some(last) = disks.pop() else { return Err(BlkError::NoUsableDevice) };
    for d in disks {
        let name = d.name.clone();
        match thread::spawn_with(PRIORITY, 0, move || serve(d)) {
            Ok(t) => {
                let _ = sys::cap_delete(t);
            }
            Err(e) => println!("blk: {name}: cannot start its thread: {e}"),
        }
    }
    serve(last)
}

/// Sets up the device in `slot`.
fn start(control: Slot, window_va: u64, slot: u32, name: String) -> Result<Disk, BlkError> {
    let dma = ContiguousDma::create(dma_layout::TOTAL).map_err(|(what, e)| BlkError::Sys(what, e))?;
    let irq = IrqLine::claim(control, FIRST_INTID + slot).map_err(|(what, e)| BlkError::Sys(what, e))?;
    let dev = BlkDevice::init(SlotRegisters::new(window_va, slot), dma).map_err(BlkError::Init)?;
    let conn = sys::conn_create().map_err(|e| BlkError::Sys("conn_create", e))?;
    Ok(Disk { name, dev, irq, conn, claim: Default::default() })
}

fn serve(mut d: Disk) -> ! {
    ipc::serve(d.conn, |req| crate::protocol::handle(&mut d.dev, &mut d.irq, &mut d.claim, req))
}
