//! The service: find the virtio-net device, set it up, open the uplink port on the switch, and
//! move frames both ways on one thread, woken by the device's interrupt and by the switch.

use crate::device::{NetDevice, dma_layout};
use alloc::string::String;
use alloc::vec::Vec;
use keel_blk::hw::{ContiguousDma, SlotRegisters};
use keel_blk::regs::Registers;
use keel_blk::service::{FIRST_INTID, SLOTS, WINDOW_BASE, WINDOW_SIZE};
use keel_rt::abi::{perm, rights};
use keel_rt::ipc::{self, Client};
use keel_rt::proto::net;
use keel_rt::startup::Startup;
use keel_rt::{Error, println, sys, vm};

/// How long the uplink waits for work before it checks that its switch is still there.
const LIVENESS_NS: u64 = 1_000_000_000;
/// Notification bits: the device's interrupt, and frames waiting at the switch.
const IRQ: u64 = 1;
const SWITCH_FRAMES: u64 = 2;

pub fn main(startup: &Startup) -> i32 {
    match run(startup) {
        Ok(()) => 0,
        Err(e) => {
            println!("nic: {e}");
            1
        }
    }
}

fn sys_err(what: &str, e: Error) -> String {
    alloc::format!("{what}: {e}")
}

fn run(startup: &Startup) -> Result<(), String> {
    let (Some(control), Some(namesrv)) = (startup.cap("control"), startup.cap("namesrv")) else {
        return Err(String::from("started without its control and namesrv capabilities"));
    };
    let mut switch = String::from("sw0");
    for a in startup.args.iter().skip(1) {
        match a.strip_prefix("switch=") {
            Some(s) if net::valid_switch_name(s) => switch = String::from(s),
            _ => return Err(alloc::format!("usage: nic [switch=NAME] (not {a})")),
        }
    }
    let window = sys::device_pmo(control, WINDOW_BASE, WINDOW_SIZE).map_err(|e| sys_err("device_pmo", e))?;
    let va = vm::map_pmo(window, WINDOW_SIZE, perm::READ | perm::WRITE).map_err(|e| sys_err("map virtio-mmio", e))?;
    let _ = sys::cap_delete(window);
    // The first network device (QEMU fills slots from the top: the first -device is the highest).
    let Some(slot) = (0..SLOTS).rev().find(|&n| {
        let r = SlotRegisters::new(va, n);
        r.read(keel_blk::regs::reg::MAGIC) == keel_blk::regs::MAGIC_VALUE && r.read(keel_blk::regs::reg::DEVICE_ID) == crate::device::DEVICE_ID_NET
    }) else {
        println!("nic: no virtio-net device");
        return Ok(());
    };
    let dma = ContiguousDma::create(dma_layout::TOTAL).map_err(|(what, e)| sys_err(what, e))?;
    let notif = sys::notif_create().map_err(|e| sys_err("notif_create", e))?;
    let irq = sys::irq_create(control, FIRST_INTID + slot).map_err(|e| sys_err("irq_create", e))?;
    sys::irq_bind(irq, notif, IRQ).map_err(|e| sys_err("irq_bind", e))?;
    let mut dev = NetDevice::init(SlotRegisters::new(va, slot), dma).map_err(|e| alloc::format!("virtio-net at slot {slot}: cannot set it up: {e:?}"))?;
    let mac = dev.mac();
    let mac_text = mac.iter().map(|b| alloc::format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let mut first = true;
    loop {
        let (mut port, number) = connect(namesrv, &switch, mac, notif)?;
        if first {
            println!("nic: virtio-net at slot {slot} ({mac_text}), the uplink of switch {switch} (port {number})");
        } else {
            println!("nic: the switch service restarted; the uplink of {switch} is port {number} again");
        }
        first = false;
        let mut waiting = true;
        // Until the switch service dies (then a new port on the restarted one). A port that
        // has nothing to do is asked once a second whether its switch is still there: the VMs'
        // ports come back at their next frame, the uplink must come back by itself.
        loop {
            let bits = match sys::notif_wait(notif, LIVENESS_NS) {
                Ok(bits) => bits,
                Err(_) if matches!(port.call(ipc::LABEL_PING, [0; 4]), Err(Error::PeerDied)) => {
                    let _ = sys::cap_delete(port.slot());
                    break;
                }
                Err(_) => 0,
            };
            if bits & IRQ != 0 {
                let alive = dev.acknowledge();
                let _ = sys::irq_ack(irq);
                if !alive {
                    return Err(alloc::format!("virtio-net at slot {slot}: the device needs a reset; the uplink is down"));
                }
            }
            waiting |= bits & SWITCH_FRAMES != 0;
            let lost = pump(&mut dev, &mut port, &mut waiting).is_err();
            if let Some(why) = dev.broken() {
                return Err(alloc::format!("virtio-net at slot {slot}: {why:?}; the uplink is down"));
            }
            if lost {
                let _ = sys::cap_delete(port.slot());
                break;
            }
        }
    }
}

/// Opens the uplink's port on `switch` (as "VM 0", with the device's address) and attaches
/// `notif` to it; the port and its number.
fn connect(namesrv: keel_rt::Slot, switch: &str, mac: [u8; 6], notif: keel_rt::Slot) -> Result<(Client, u64), String> {
    let net_conn = ipc::lookup(namesrv, "net", 40, 50_000_000).map_err(|e| sys_err("cannot reach the switch service", e))?;
    let mut opener = Client::new(net_conn);
    let opened = opener.call_bulk(net::OPEN, [0, net::mac_word(mac), 0], switch.as_bytes());
    // The session is not needed again (the port stays open while this process lives).
    let _ = sys::cap_delete(net_conn);
    let (r, _) = opened.map_err(|e| sys_err("cannot open the uplink port", e))?;
    ipc::status(&r).map_err(|e| sys_err("the switch refused the uplink port", e))?;
    let number = r.msg.data[0];
    let port = r.caps.slots().next().ok_or_else(|| String::from("the switch gave no port"))?;
    let port = Client::new(port);
    let signal = sys::cap_copy(notif, None, rights::SIGNAL | rights::GRANT, 0).map_err(|e| sys_err("cap_copy", e))?;
    let attached = port.call_with_caps(net::ATTACH, [SWITCH_FRAMES, 0, 0, 0], &[signal]);
    let _ = sys::cap_delete(signal);
    ipc::status(&attached.map_err(|e| sys_err("attach", e))?).map_err(|e| sys_err("attach", e))?;
    Ok((port, number))
}

/// Frames from the device to the switch, then from the switch to the device, until neither
/// side has more that can move now.
/// `Err` when the port died (the switch service with it).
fn pump<R: Registers, M: keel_blk::dma::DmaMemory>(dev: &mut NetDevice<R, M>, port: &mut Client, waiting: &mut bool) -> Result<(), Error> {
    let dead = |r: &Result<(ipc::Received, Vec<u8>), Error>| matches!(r, Err(Error::PeerDied));
    loop {
        let mut moved = false;
        let mut frames = Vec::new();
        dev.receive(&mut frames);
        if !frames.is_empty() {
            moved = true;
            let mut payload = Vec::new();
            for f in &frames {
                if !net::push_frame(&mut payload, f, ipc::BULK_SIZE as usize) {
                    if dead(&port.call_bulk(net::SEND, [0; 3], &payload)) {
                        return Err(Error::PeerDied);
                    }
                    payload.clear();
                    net::push_frame(&mut payload, f, ipc::BULK_SIZE as usize);
                }
            }
            if dead(&port.call_bulk(net::SEND, [0; 3], &payload)) {
                return Err(Error::PeerDied);
            }
        }
        let room = dev.send_room();
        if *waiting && room > 0 {
            match port.call_bulk(net::RECV, [room as u64, 0, 0], &[]) {
                Ok((r, payload)) if r.msg.label == 0 => {
                    *waiting = r.msg.data[1] > 0;
                    let mut sent = 0;
                    for f in net::frames(&payload) {
                        sent += usize::from(dev.send(f));
                    }
                    if sent > 0 {
                        dev.kick();
                        moved = true;
                    }
                }
                Err(Error::PeerDied) => return Err(Error::PeerDied),
                _ => *waiting = false,
            }
        }
        if !moved {
            return Ok(());
        }
    }
}
