//! `guest=virtio`: a virtio driver, as small as one can be. Lists the devices on the board's 32
//! virtio-mmio slots, then drives the first entropy device (virtio-rng, device ID 4) through the
//! modern interface (virtio 1.2, 3.1.1 and 4.2.3): reset, ACKNOWLEDGE and DRIVER, only
//! `VIRTIO_F_VERSION_1` accepted, FEATURES_OK read back, queue 0 of 8 entries placed in the
//! guest's RAM, DRIVER_OK; then one 64-byte device-writable buffer made available and notified,
//! and the used ring polled until the device returns it. Checks the returned length and that the
//! bytes changed, acknowledges the interrupt status and resets the device. FAILs when there is
//! no entropy device or it is a legacy (version 1) transport.
//!
//! `guest=virtio-hostile` drives the same device as a hostile driver would: a buffer outside
//! RAM, a descriptor loop, an available index that jumps, a queue placed outside RAM, a storm of
//! doorbells with nothing available, and stores of every size to every register; after each
//! malformed ring the device must say `DEVICE_NEEDS_RESET` (and, reset, work again), and at the
//! end one good request must still be served. `guest=virtio-loop` requests entropy over and
//! over (saying so once it has been served a few times) until a request goes unanswered or the
//! device says `DEVICE_NEEDS_RESET`, and PASSes when the device then reports needing a reset:
//! what a guest sees when its backend dies.
//!
//! With `guest.net` the hostile scenario drives a network device (ID 1) instead: its transmit
//! queue (1) alone, with device-readable buffers; a good request is a 60-byte broadcast frame
//! after its 12-byte header, returned with 0 bytes written.
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
const NETWORK: u32 = 1;

/// The network variant (`guest.net`): device 1, queue 1, device-readable buffers.
static NET: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn net() -> bool {
    NET.load(core::sync::atomic::Ordering::Relaxed)
}

/// The queue the scenario drives.
fn queue() -> u32 {
    if net() { 1 } else { 0 }
}

/// The flags of a buffer the device fills (entropy) or reads (a frame to send).
fn data() -> u16 {
    if net() { 0 } else { DESC_F_WRITE }
}

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

const CONFIG: u64 = 0x100;

const ACKNOWLEDGE: u32 = 1;
const NEEDS_RESET: u32 = 0x40;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
/// VIRTIO_F_VERSION_1 is bit 32: bit 0 of the high feature word.
const VERSION_1_HIGH: u32 = 1;
const DESC_F_NEXT: u16 = 1;
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

/// The first entropy device: its slot. FAILs when there is none or it is a legacy transport.
fn find_entropy(quiet: bool) -> Result<u64, crate::text::Text> {
    let mut entropy = None;
    for slot in 0..SLOTS {
        let (magic, version, id) = (reg(slot, MAGIC_VALUE), reg(slot, VERSION), reg(slot, DEVICE_ID));
        ensure!(magic == 0x7472_6976, "slot {slot}: MagicValue {magic:#x}, want 0x74726976");
        if id != 0 {
            if !quiet {
                say!("virtio: slot {slot} at {:#x}: device {id}, version {version}", SLOT0 + slot * SLOT_SIZE);
            }
            if id == if net() { NETWORK } else { ENTROPY } && entropy.is_none() {
                entropy = Some((slot, version));
            }
        }
    }
    let Some((slot, version)) = entropy else {
        if net() {
            fail!("no network device (virtio device ID 1) on any slot")
        }
        fail!("no entropy device (virtio device ID 4) on any slot")
    };
    ensure!(version == 2, "slot {slot}: a legacy transport (version {version}); this driver is modern only");
    Ok(slot)
}

/// Resets the device and brings it up with queue 0 at `desc`, `avail`, `used` (guest physical),
/// the rings cleared. Returns the status register after DRIVER_OK.
fn bring_up_at(slot: u64, desc: u64, avail: u64, used: u64) -> Result<u32, crate::text::Text> {
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

    let q = queue();
    set(slot, QUEUE_SEL, q);
    let max = reg(slot, QUEUE_NUM_MAX);
    ensure!(max >= u32::from(QUEUE_SIZE), "queue {q}'s maximum size is {max}");
    ensure!(reg(slot, QUEUE_READY) == 0, "queue {q} is ready before it was set up");
    for off in (0..4096).step_by(8) {
        put::<u64>(off, 0);
    }
    barrier();
    set(slot, QUEUE_NUM, u32::from(QUEUE_SIZE));
    for (reg_off, at) in [(QUEUE_DESC, desc), (QUEUE_DRIVER, avail), (QUEUE_DEVICE, used)] {
        set(slot, reg_off, at as u32);
        set(slot, reg_off + 4, (at >> 32) as u32);
    }
    set(slot, QUEUE_READY, 1);
    if reg(slot, STATUS) & NEEDS_RESET != 0 {
        return Ok(reg(slot, STATUS));
    }
    ensure!(reg(slot, QUEUE_READY) == 1, "queue {q} is not ready after QueueReady = 1");
    set(slot, STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    ensure!(reg(slot, STATUS) & DRIVER_OK != 0, "DRIVER_OK did not stick (status {:#x})", reg(slot, STATUS));
    Ok(reg(slot, STATUS))
}

/// Brings the device up with its rings in the ring page.
fn bring_up(slot: u64) -> Result<(), crate::text::Text> {
    let status = bring_up_at(slot, phys(DESC_OFF), phys(AVAIL_OFF), phys(USED_OFF))?;
    ensure!(status & NEEDS_RESET == 0, "the device needs a reset right after a good bring-up (status {status:#x})");
    Ok(())
}

/// Sets descriptor `i`.
fn desc(i: usize, addr: u64, len: u32, flags: u16, next: u16) {
    put(DESC_OFF + 16 * i, addr);
    put(DESC_OFF + 16 * i + 8, len);
    put(DESC_OFF + 16 * i + 12, flags);
    put(DESC_OFF + 16 * i + 14, next);
}

/// Makes the chain at `head` available as request number `n` (avail.idx becomes `idx`) and
/// rings the doorbell.
fn offer(slot: u64, n: u16, head: u16, idx: u16) {
    put(AVAIL_OFF + 4 + 2 * usize::from(n % QUEUE_SIZE), head);
    barrier();
    put(AVAIL_OFF + 2, idx);
    barrier();
    set(slot, QUEUE_NOTIFY, queue());
}

/// Waits until the used index reaches `idx` (true), or `ms` pass (false).
fn wait_used(idx: u16, ms: u64) -> bool {
    let deadline = timer::now() + timer::ms(ms);
    while get::<u16>(USED_OFF + 2) != idx {
        if timer::now() >= deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    barrier();
    true
}

/// Waits until the device says it needs a reset (true), or `ms` pass (false).
fn wait_needs_reset(slot: u64, ms: u64) -> bool {
    let deadline = timer::now() + timer::ms(ms);
    while reg(slot, STATUS) & NEEDS_RESET == 0 {
        if timer::now() >= deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Waits until the interrupt status has `bit` (its value), or `ms` pass (the value then). The
/// used ring can be seen a moment before the interrupt is raised with its status bits.
fn wait_status(slot: u64, bit: u32, ms: u64) -> u32 {
    let deadline = timer::now() + timer::ms(ms);
    loop {
        let isr = reg(slot, INTERRUPT_STATUS);
        if isr & bit != 0 || timer::now() >= deadline {
            return isr;
        }
        core::hint::spin_loop();
    }
}

/// One entropy request of `BUFFER_LEN` bytes as request number `n`; the length returned.
fn request(slot: u64, n: u16) -> Result<u32, crate::text::Text> {
    if net() {
        // A broadcast frame from 02:00:00:00:00:01 after a zero header.
        for i in 0..72 {
            put::<u8>(BUFFER_OFF + i, if (12..18).contains(&i) { 0xff } else { 0 });
        }
        put::<u8>(BUFFER_OFF + 18, 2);
        put::<u8>(BUFFER_OFF + 23, 1);
        put::<u8>(BUFFER_OFF + 24, 8);
        desc(0, phys(BUFFER_OFF), 72, 0, 0);
        offer(slot, n, 0, n.wrapping_add(1));
        ensure!(wait_used(n.wrapping_add(1), TIMEOUT_MS), "the device returned no buffer within {TIMEOUT_MS} ms (request {n})");
        let id = get::<u32>(USED_OFF + 4 + 8 * usize::from(n % QUEUE_SIZE));
        ensure!(id == 0, "used ring entry names descriptor {id}, want 0");
        return Ok(60);
    }
    desc(0, phys(BUFFER_OFF), BUFFER_LEN as u32, DESC_F_WRITE, 0);
    offer(slot, n, 0, n.wrapping_add(1));
    ensure!(wait_used(n.wrapping_add(1), TIMEOUT_MS), "the device returned no buffer within {TIMEOUT_MS} ms (request {n})");
    let at = USED_OFF + 4 + 8 * usize::from(n % QUEUE_SIZE);
    let (id, len) = (get::<u32>(at), get::<u32>(at + 4));
    ensure!(id == 0, "used ring entry names descriptor {id}, want 0");
    ensure!(len > 0 && len as usize <= BUFFER_LEN, "the device wrote {len} bytes into a {BUFFER_LEN}-byte buffer");
    Ok(len)
}

pub fn run(_guest: &Guest) -> Outcome {
    let slot = find_entropy(false)?;
    bring_up(slot)?;
    let len = request(slot, 0)?;
    let nonzero = (0..len as usize).filter(|&i| get::<u8>(BUFFER_OFF + i) != 0).count();
    ensure!(nonzero > 0, "{len} random bytes, all zero");
    let isr = wait_status(slot, 1, TIMEOUT_MS);
    ensure!(isr & 1 != 0, "interrupt status {isr:#x} does not say used buffer");
    set(slot, INTERRUPT_ACK, isr);
    set(slot, STATUS, 0);
    say!("virtio: slot {slot}: entropy device returned {len} bytes ({nonzero} non-zero)");
    super::note(format_args!("({len} random bytes from slot {slot})"))
}

/// After a malformed ring: the device must say it needs a reset, and work after one.
fn expect_needs_reset(slot: u64, what: &str) -> Result<(), crate::text::Text> {
    ensure!(wait_needs_reset(slot, TIMEOUT_MS), "{what}: the device did not report DEVICE_NEEDS_RESET (status {:#x})", reg(slot, STATUS));
    let isr = wait_status(slot, 2, TIMEOUT_MS);
    ensure!(isr & 2 != 0, "{what}: interrupt status {isr:#x} does not say configuration change");
    set(slot, INTERRUPT_ACK, isr);
    say!("virtio-hostile: {what}: device needs reset");
    bring_up(slot)?;
    request(slot, 0).map(|_| ())
}

pub fn run_hostile(guest: &Guest) -> Outcome {
    NET.store(guest.net, core::sync::atomic::Ordering::Relaxed);
    let slot = find_entropy(true)?;
    let w = data();
    // A buffer far outside guest RAM.
    bring_up(slot)?;
    desc(0, 0x7f_0000_0000, 64, w, 0);
    offer(slot, 0, 0, 1);
    expect_needs_reset(slot, "buffer outside RAM")?;
    // A buffer that runs off the end of RAM (the device window is not RAM either).
    bring_up(slot)?;
    desc(0, SLOT0, 64, w, 0);
    offer(slot, 0, 0, 1);
    expect_needs_reset(slot, "buffer on the device window")?;
    // A descriptor chain that loops.
    bring_up(slot)?;
    desc(0, phys(BUFFER_OFF), 8, w | DESC_F_NEXT, 1);
    desc(1, phys(BUFFER_OFF + 8), 8, w | DESC_F_NEXT, 0);
    offer(slot, 0, 0, 1);
    expect_needs_reset(slot, "descriptor loop")?;
    // A head beyond the table, then an available index that jumps past the queue size.
    bring_up(slot)?;
    desc(0, phys(BUFFER_OFF), 8, w, 0);
    offer(slot, 0, 200, 1);
    expect_needs_reset(slot, "head beyond the table")?;
    bring_up(slot)?;
    offer(slot, 0, 0, 100);
    expect_needs_reset(slot, "available index jump")?;
    // A zero-length buffer and a huge one.
    bring_up(slot)?;
    desc(0, phys(BUFFER_OFF), u32::MAX, w, 0);
    offer(slot, 0, 0, 1);
    expect_needs_reset(slot, "4 GiB buffer")?;
    // A queue placed outside RAM: refused when it is made ready.
    let status = bring_up_at(slot, 0x7f_0000_0000, phys(AVAIL_OFF), phys(USED_OFF))?;
    ensure!(status & NEEDS_RESET != 0 || wait_needs_reset(slot, TIMEOUT_MS), "a queue outside RAM was accepted (status {status:#x})");
    say!("virtio-hostile: queue outside RAM: device needs reset");
    // Doorbells with nothing available, and to queues that do not exist.
    bring_up(slot)?;
    for i in 0..2000u32 {
        set(slot, QUEUE_NOTIFY, i % 3);
    }
    ensure!(reg(slot, STATUS) & NEEDS_RESET == 0, "a doorbell storm broke the device (status {:#x})", reg(slot, STATUS));
    say!("virtio-hostile: 2000 doorbells with nothing available: device fine");
    // Stores of every size to every register (but Status and QueueNotify's 32-bit form, which
    // the steps above covered), then loads.
    let window = SLOT0 + slot * SLOT_SIZE;
    for off in (0..SLOT_SIZE).step_by(4).filter(|&o| o != STATUS && o < CONFIG || o >= CONFIG) {
        // SAFETY: registers of the device this scenario drives; any value is a legal store.
        unsafe {
            core::ptr::write_volatile((window + off) as *mut u8, 0xa5);
            core::ptr::write_volatile((window + off) as *mut u16, 0xa5a5);
            if off % 8 == 0 {
                core::ptr::write_volatile((window + off) as *mut u64, u64::MAX);
            }
            let _ = core::ptr::read_volatile((window + off) as *const u8);
            if off % 8 == 0 {
                let _ = core::ptr::read_volatile((window + off) as *const u64);
            }
        }
    }
    say!("virtio-hostile: stores of every size to every register: no fault");
    // And still a good device after a reset.
    bring_up(slot)?;
    let len = request(slot, 0)?;
    set(slot, STATUS, 0);
    if net() {
        return super::note(format_args!("(9 kinds of bad input refused; then a {len}-byte frame sent)"));
    }
    super::note(format_args!("(9 kinds of bad input refused; then {len} random bytes)"))
}

pub fn run_loop(_guest: &Guest) -> Outcome {
    const SERVING_AFTER: u32 = 8;
    const DEADLINE_MS: u64 = 600_000;
    let slot = find_entropy(true)?;
    bring_up(slot)?;
    let deadline = timer::now() + timer::ms(DEADLINE_MS);
    let mut n: u16 = 0;
    let mut served = 0u32;
    loop {
        ensure!(timer::now() < deadline, "the device still served after {DEADLINE_MS} ms ({served} requests)");
        desc(0, phys(BUFFER_OFF), BUFFER_LEN as u32, DESC_F_WRITE, 0);
        offer(slot, n, 0, n.wrapping_add(1));
        if !wait_used(n.wrapping_add(1), TIMEOUT_MS) || reg(slot, STATUS) & NEEDS_RESET != 0 {
            break;
        }
        n = n.wrapping_add(1);
        served += 1;
        if served == SERVING_AFTER {
            say!("virtio-loop: serving requests");
        }
    }
    ensure!(served >= SERVING_AFTER, "the device stopped after {served} requests, before the test was ready");
    ensure!(wait_needs_reset(slot, TIMEOUT_MS), "a request went unanswered but the device does not report DEVICE_NEEDS_RESET (status {:#x})", reg(slot, STATUS));
    super::note(format_args!("(the device reports DEVICE_NEEDS_RESET after {served} requests)"))
}

/// `guest=virtio-bench` (`make bench`, with `--rng`): what one virtio request costs end to end,
/// in counter ticks: a 64-byte entropy request made available, its doorbell rung (a kernel
/// ioevent), the backend process woken on another CPU, the buffer filled and returned, the
/// device's interrupt taken by the guest waiting in WFI (as a driver would; a guest spinning on
/// the used ring would, under icount's round-robin CPUs, measure its own time slice). The
/// interrupt status is not read or acknowledged (Linux does both: two more exits). The median,
/// minimum and maximum of 200 requests after 10 untimed ones.
pub fn run_bench(_guest: &Guest) -> Outcome {
    const WARM_UP: u16 = 10;
    const SAMPLES: usize = 200;
    let slot = find_entropy(true)?;
    crate::gic::init_distributor()?;
    crate::gic::init_this_cpu()?;
    crate::gic::enable_spi(32 + 16 + slot as u32);
    bring_up(slot)?;
    let irqs = &crate::percpu::this().other_irqs;
    let mut n: u16 = 0;
    let one = |n: u16| -> Result<u64, crate::text::Text> {
        let before = irqs.load(core::sync::atomic::Ordering::SeqCst);
        let start = timer::now();
        desc(0, phys(BUFFER_OFF), BUFFER_LEN as u32, DESC_F_WRITE, 0);
        offer(slot, n, 0, n.wrapping_add(1));
        let done = crate::wait::irq_until(
            || get::<u16>(USED_OFF + 2) == n.wrapping_add(1) && irqs.load(core::sync::atomic::Ordering::SeqCst) != before,
            timer::ms(TIMEOUT_MS),
            false,
        );
        let took = timer::now() - start;
        ensure!(done, "request {n}: no used buffer and interrupt within {TIMEOUT_MS} ms");
        Ok(took)
    };
    for _ in 0..WARM_UP {
        one(n)?;
        n = n.wrapping_add(1);
    }
    let mut samples = [0u64; SAMPLES];
    for sample in samples.iter_mut() {
        *sample = one(n)?;
        n = n.wrapping_add(1);
    }
    set(slot, STATUS, 0);
    let median = super::bench::report("virtio request round trip", "", &mut samples);
    super::note(format_args!("(virtio request round trip {median} ticks)"))
}
