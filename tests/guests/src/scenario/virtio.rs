//! `guest=virtio`: a virtio driver, as small as one can be. Lists the devices on the board's 32
//! virtio-mmio slots, then drives the first entropy device (virtio-rng, device ID 4) through the
//! modern interface (virtio 1.2, 3.1.1 and 4.2.3): reset, ACKNOWLEDGE and DRIVER, only
//! `VIRTIO_F_VERSION_1` accepted, FEATURES_OK read back, queue 0 of 8 entries placed in the
//! guest's RAM, DRIVER_OK; then one 64-byte device-writable buffer made available and notified,
//! and the used ring polled until the device returns it. Checks the returned length and that the
//! bytes changed, acknowledges the interrupt status and resets the device. FAILs when there is
//! no entropy device or it is a legacy (version 1) transport.
//!
//! On plain QEMU: `-device virtio-rng-device -global virtio-mmio.force-legacy=false` (QEMU's
//! virtio-mmio transports are legacy by default). The rings live in a page of the guest image;
//! the guest runs with its MMU off, so every access to them is a plain aligned one.

use super::Outcome;
use crate::arch::mmio;
use crate::runtime::Guest;
use crate::timer;
use core::ptr::{addr_of_mut, read_volatile, write_volatile};

const SLOT0: u64 = 0x0a00_0000;
const SLOT_SIZE: u64 = 0x200;
const SLOTS: u64 = 32;
const ENTROPY: u32 = 4;

const MAGIC_VALUE: u64 = 0x000;
const VERSION: u64 = 0x004;
const DEVICE_ID: u64 = 0x008;
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM_MAX: u64 = 0x034;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const INTERRUPT_STATUS: u64 = 0x060;
const INTERRUPT_ACK: u64 = 0x064;
const STATUS: u64 = 0x070;
const QUEUE_DESC: u64 = 0x080;
const QUEUE_DRIVER: u64 = 0x090;
const QUEUE_DEVICE: u64 = 0x0a0;

const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
/// VIRTIO_F_VERSION_1 is bit 32: bit 0 of the high feature word.
const VERSION_1_HIGH: u32 = 1;
const DESC_F_WRITE: u16 = 2;

const QUEUE_SIZE: u16 = 8;
const BUFFER_LEN: usize = 64;
/// Where things are in the ring page.
const DESC_OFF: usize = 0;
const AVAIL_OFF: usize = 0x100;
const USED_OFF: usize = 0x200;
const BUFFER_OFF: usize = 0x400;
const TIMEOUT_MS: u64 = 2000;

/// The descriptor table, the rings and the buffer, in one page of guest RAM.
#[repr(C, align(4096))]
struct RingPage([u8; 4096]);

static mut PAGE: RingPage = RingPage([0; 4096]);

fn base() -> *mut u8 {
    addr_of_mut!(PAGE).cast()
}

/// The ring page's guest physical address plus `off` (the MMU is off: addresses are physical).
fn phys(off: usize) -> u64 {
    base() as u64 + off as u64
}

fn put<T: Copy>(off: usize, v: T) {
    // SAFETY: `off` is inside PAGE and aligned for T (the layout constants above); only this
    // scenario uses PAGE, on one CPU.
    unsafe { write_volatile(base().add(off).cast::<T>(), v) }
}

fn get<T: Copy>(off: usize) -> T {
    // SAFETY: as for `put`.
    unsafe { read_volatile(base().add(off).cast::<T>()) }
}

fn reg(slot: u64, off: u64) -> u32 {
    // SAFETY: virtio-mmio registers of the board's slots; the ones read here have no side effect.
    unsafe { mmio::read32(SLOT0 + slot * SLOT_SIZE + off) }
}

fn set(slot: u64, off: u64, v: u32) {
    // SAFETY: a virtio-mmio register of a slot this scenario drives.
    unsafe { mmio::write32(SLOT0 + slot * SLOT_SIZE + off, v) }
}

fn barrier() {
    // SAFETY: a full-system data barrier; no memory is touched.
    unsafe { core::arch::asm!("dsb sy", options(nostack)) }
}

pub fn run(_guest: &Guest) -> Outcome {
    let mut entropy = None;
    for slot in 0..SLOTS {
        let (magic, version, id) = (reg(slot, MAGIC_VALUE), reg(slot, VERSION), reg(slot, DEVICE_ID));
        ensure!(magic == 0x7472_6976, "slot {slot}: MagicValue {magic:#x}, want 0x74726976");
        if id != 0 {
            say!("virtio: slot {slot} at {:#x}: device {id}, version {version}", SLOT0 + slot * SLOT_SIZE);
            if id == ENTROPY && entropy.is_none() {
                entropy = Some((slot, version));
            }
        }
    }
    let Some((slot, version)) = entropy else { fail!("no entropy device (virtio device ID 4) on any slot") };
    ensure!(version == 2, "slot {slot}: a legacy transport (version {version}); this driver is modern only");

    set(slot, STATUS, 0);
    ensure!(reg(slot, STATUS) == 0, "status is {:#x} after a reset", reg(slot, STATUS));
    set(slot, STATUS, ACKNOWLEDGE);
    set(slot, STATUS, ACKNOWLEDGE | DRIVER);
    set(slot, DEVICE_FEATURES_SEL, 1);
    let high = reg(slot, DEVICE_FEATURES);
    ensure!(high & VERSION_1_HIGH != 0, "the device does not offer VIRTIO_F_VERSION_1 (features 63:32 {high:#x})");
    set(slot, DRIVER_FEATURES_SEL, 0);
    set(slot, DRIVER_FEATURES, 0);
    set(slot, DRIVER_FEATURES_SEL, 1);
    set(slot, DRIVER_FEATURES, VERSION_1_HIGH);
    set(slot, STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    ensure!(reg(slot, STATUS) & FEATURES_OK != 0, "FEATURES_OK did not stick (status {:#x})", reg(slot, STATUS));

    set(slot, QUEUE_SEL, 0);
    let max = reg(slot, QUEUE_NUM_MAX);
    ensure!(max >= u32::from(QUEUE_SIZE), "queue 0's maximum size is {max}");
    ensure!(reg(slot, QUEUE_READY) == 0, "queue 0 is ready before it was set up");
    for off in (0..4096).step_by(8) {
        put::<u64>(off, 0);
    }
    set(slot, QUEUE_NUM, u32::from(QUEUE_SIZE));
    for (reg_off, at) in [(QUEUE_DESC, DESC_OFF), (QUEUE_DRIVER, AVAIL_OFF), (QUEUE_DEVICE, USED_OFF)] {
        set(slot, reg_off, phys(at) as u32);
        set(slot, reg_off + 4, (phys(at) >> 32) as u32);
    }
    set(slot, QUEUE_READY, 1);
    ensure!(reg(slot, QUEUE_READY) == 1, "queue 0 is not ready after QueueReady = 1");
    set(slot, STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    ensure!(reg(slot, STATUS) & DRIVER_OK != 0, "DRIVER_OK did not stick (status {:#x})", reg(slot, STATUS));

    // One device-writable buffer: descriptor 0, made available as avail.ring[0], then idx = 1.
    put(DESC_OFF, phys(BUFFER_OFF));
    put(DESC_OFF + 8, BUFFER_LEN as u32);
    put(DESC_OFF + 12, DESC_F_WRITE);
    put(DESC_OFF + 14, 0u16);
    put(AVAIL_OFF + 4, 0u16);
    barrier();
    put(AVAIL_OFF + 2, 1u16);
    barrier();
    set(slot, QUEUE_NOTIFY, 0);
    let deadline = timer::now() + timer::ms(TIMEOUT_MS);
    while get::<u16>(USED_OFF + 2) == 0 {
        ensure!(timer::now() < deadline, "the device returned no buffer within {TIMEOUT_MS} ms");
        core::hint::spin_loop();
    }
    barrier();
    let (id, len) = (get::<u32>(USED_OFF + 4), get::<u32>(USED_OFF + 8));
    ensure!(id == 0, "used ring entry names descriptor {id}, want 0");
    ensure!(len > 0 && len as usize <= BUFFER_LEN, "the device wrote {len} bytes into a {BUFFER_LEN}-byte buffer");
    let nonzero = (0..len as usize).filter(|&i| get::<u8>(BUFFER_OFF + i) != 0).count();
    ensure!(nonzero > 0, "{len} random bytes, all zero");
    let isr = reg(slot, INTERRUPT_STATUS);
    ensure!(isr & 1 != 0, "interrupt status {isr:#x} does not say used buffer");
    set(slot, INTERRUPT_ACK, isr);
    set(slot, STATUS, 0);
    say!("virtio: slot {slot}: entropy device returned {len} bytes ({nonzero} non-zero)");
    super::note(format_args!("({len} random bytes from slot {slot})"))
}
