//! The backend against a mock driver in a mock guest RAM: bring-up through forwarded register
//! writes, doorbells, interrupts, counters, and a hostile driver.

use crate::backend::{Backend, Kind};
use crate::entropy::{Rndr, Seeded, Source};
use crate::service::{Args, parse_args};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use keel_virtio::mem::{GuestMemory, Ram};
use keel_virtio::mmio::{reg, status};

const BASE: u64 = 0x4000_0000;
const DESC: u64 = BASE;
const AVAIL: u64 = BASE + 0x1000;
const USED: u64 = BASE + 0x2000;
const BUF: u64 = BASE + 0x8000;
const QSIZE: u16 = 8;

type Rng = Backend<Ram<Vec<u8>>>;

fn rng() -> Rng {
    Backend::rng(Ram::new(BASE, alloc::vec![0; 1 << 20]), alloc::boxed::Box::new(Seeded::new(1)))
}

/// A Linux-like bring-up through 32-bit register writes; whether any write asked for an
/// interrupt.
fn bring_up(b: &mut Rng) -> bool {
    let mut irq = false;
    let mut w = |off: u64, v: u64| irq |= b.write(off, 4, v);
    w(reg::STATUS, u64::from(status::ACKNOWLEDGE | status::DRIVER));
    w(reg::DRIVER_FEATURES_SEL, 1);
    w(reg::DRIVER_FEATURES, 1); // VERSION_1
    w(reg::STATUS, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK));
    w(reg::QUEUE_SEL, 0);
    w(reg::QUEUE_NUM, u64::from(QSIZE));
    w(reg::QUEUE_DESC_LOW, DESC & 0xffff_ffff);
    w(reg::QUEUE_DRIVER_LOW, AVAIL & 0xffff_ffff);
    w(reg::QUEUE_DEVICE_LOW, USED & 0xffff_ffff);
    w(reg::QUEUE_READY, 1);
    w(reg::STATUS, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK));
    irq
}

/// Puts a device-writable buffer of `len` bytes at `addr` in descriptor `i` and makes it
/// available as the `n`th request.
fn offer(b: &mut Rng, i: u16, addr: u64, len: u32, n: u16) {
    let m = mem(b);
    let at = DESC + 16 * u64::from(i);
    m.write(at, &addr.to_le_bytes()).unwrap();
    m.write_u32(at + 8, len).unwrap();
    m.write_u16(at + 12, 2).unwrap(); // WRITE
    m.write_u16(AVAIL + 4 + 2 * u64::from(n % QSIZE), i).unwrap();
    m.write_u16(AVAIL + 2, n + 1).unwrap();
}

fn mem(b: &mut Rng) -> &mut Ram<Vec<u8>> {
    b.memory()
}

#[test]
fn an_entropy_device_reads_as_one_and_comes_up() {
    let mut b = rng();
    assert_eq!(b.read(reg::MAGIC_VALUE, 4), 0x7472_6976);
    assert_eq!(b.read(reg::VERSION, 4), 2);
    assert_eq!(b.read(reg::DEVICE_ID, 4), 4);
    assert!(!bring_up(&mut b), "no interrupt before any buffer");
    assert_eq!(b.status() & status::DRIVER_OK, status::DRIVER_OK);
    assert_eq!(b.stats.errors, 0);
}

#[test]
fn a_doorbell_fills_the_buffer_and_interrupts() {
    let mut b = rng();
    bring_up(&mut b);
    offer(&mut b, 0, BUF, 64, 0);
    assert!(b.notified(1), "the driver wants an interrupt");
    let m = mem(&mut b);
    assert_eq!(m.read_u16(USED + 2).unwrap(), 1, "one used entry");
    assert_eq!(m.read_u32(USED + 8).unwrap(), 64, "64 bytes written");
    let mut bytes = [0u8; 64];
    m.read(BUF, &mut bytes).unwrap();
    assert!(bytes.iter().any(|&x| x != 0), "random bytes arrived");
    assert_eq!(b.read(reg::INTERRUPT_STATUS, 4), 1, "USED_BUFFER");
    b.write(reg::INTERRUPT_ACK, 4, 1);
    assert_eq!(b.read(reg::INTERRUPT_STATUS, 4), 0);
    assert_eq!((b.stats.requests, b.stats.bytes, b.stats.notifications, b.stats.interrupts), (1, 64, 1, 1));
}

#[test]
fn a_forwarded_queue_notify_is_served_as_a_doorbell() {
    let mut b = rng();
    bring_up(&mut b);
    offer(&mut b, 0, BUF, 16, 0);
    assert!(b.write(reg::QUEUE_NOTIFY, 4, 0));
    assert_eq!(b.stats.requests, 1);
}

#[test]
fn buffers_offered_before_driver_ok_are_served_at_driver_ok() {
    let mut b = rng();
    offer(&mut b, 0, BUF, 32, 0);
    assert!(bring_up(&mut b), "DRIVER_OK served the waiting buffer");
    assert_eq!(b.stats.bytes, 32);
}

#[test]
fn a_hostile_buffer_fails_the_device_and_touches_nothing_else() {
    let mut b = rng();
    bring_up(&mut b);
    // Half the buffer is beyond the end of guest RAM.
    offer(&mut b, 0, BASE + (1 << 20) - 8, 64, 0);
    let before: Vec<u8> = mem(&mut b).bytes().to_vec();
    assert!(b.notified(1), "the driver learns of the failure by interrupt");
    assert_eq!(b.stats.errors, 1);
    assert_ne!(b.status() & status::NEEDS_RESET, 0);
    assert_eq!(b.read(reg::INTERRUPT_STATUS, 4) & 2, 2, "CONFIG_CHANGE");
    let after = mem(&mut b).bytes();
    assert_eq!(&before[..(1 << 20) - 8], &after[..(1 << 20) - 8], "nothing written");
    // Until the driver resets the device, doorbells do nothing.
    assert!(!b.notified(1));
    assert_eq!(b.stats.requests, 0);
    b.write(reg::STATUS, 4, 0);
    assert_eq!(b.status(), 0);
    // A driver lays its rings out afresh after a reset.
    mem(&mut b).write_u16(AVAIL + 2, 0).unwrap();
    assert!(!bring_up(&mut b));
    offer(&mut b, 1, BUF, 8, 0);
    assert!(b.notified(1), "after a reset the device works again");
    assert_eq!(b.stats.requests, 1);
}

#[test]
fn a_bad_queue_address_needs_a_reset_at_queue_ready() {
    let mut b = rng();
    let mut w = |off: u64, v: u64| b.write(off, 4, v);
    w(reg::STATUS, 3);
    w(reg::DRIVER_FEATURES_SEL, 1);
    w(reg::DRIVER_FEATURES, 1);
    w(reg::STATUS, 11);
    w(reg::QUEUE_NUM, 8);
    w(reg::QUEUE_DESC_LOW, 0x1000); // below guest RAM
    w(reg::QUEUE_DRIVER_LOW, AVAIL);
    w(reg::QUEUE_DEVICE_LOW, USED);
    assert!(w(reg::QUEUE_READY, 1), "the failure is announced");
    assert_eq!(b.stats.errors, 1);
}

#[test]
fn every_register_write_of_every_size_is_harmless() {
    let mut b = rng();
    for off in (0..0x200).step_by(1) {
        for size in [1, 2, 4, 8] {
            b.write(off, size, u64::MAX);
            b.read(off, size);
        }
    }
    b.notified(u64::MAX >> 1);
    assert_eq!(b.stats.requests, 0);
}

#[test]
fn the_seeded_generator_is_deterministic_and_rndr_falls_back() {
    let (mut a, mut c) = (Seeded::new(7), Seeded::new(7));
    let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
    a.fill(&mut x);
    c.fill(&mut y);
    assert_eq!(x, y);
    assert_ne!(x, [0; 13]);
    assert!(!a.hardware());
    let mut r = Rndr::new(|| None, Seeded::new(7));
    let mut z = [0u8; 13];
    r.fill(&mut z);
    assert_eq!(z, x, "failed RNDR reads come from the fallback");
    assert_eq!(r.fallbacks, 2);
    assert!(r.hardware());
    let mut r = Rndr::new(|| Some(0x0102_0304_0506_0708), Seeded::new(7));
    r.fill(&mut z[..8]);
    assert_eq!(z[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
}

#[test]
fn arguments() {
    let args = |s: &str| ["vdev"].into_iter().chain(s.split(' ')).map(ToString::to_string).collect::<Vec<String>>();
    let rng = Args { kind: Kind::Rng, ram_base: 0x4000_0000, ram_size: 0x800_0000, vm: 3, file: None, device: None, read_only: false, mac: None };
    assert_eq!(parse_args(&args("rng ram=0x40000000:0x8000000 vm=3")), Some(rng));
    let disk = parse_args(&args("blk ram=0x40000000:0x8000000 file=/disk/a.img ro")).unwrap();
    assert_eq!((disk.kind, disk.file.as_deref(), disk.read_only), (Kind::Blk, Some("/disk/a.img"), true));
    assert_eq!(parse_args(&args("rng")), None, "no RAM");
    assert_eq!(parse_args(&args("disk ram=0:1")), None);
    assert_eq!(parse_args(&args("rng ram=0x40000000 vm=1")), None);
    assert_eq!(parse_args(&args("rng ram=1:2 color=red")), None);
    assert_eq!(parse_args(&args("rng rng ram=1:2")), None);
    assert_eq!(parse_args(&args("blk ram=1:2")), None, "a disk needs its file");
    assert_eq!(parse_args(&args("rng ram=1:2 file=/x")), None, "only a disk has one");
    assert_eq!(parse_args(&args("rng ram=1:2 ro")), None);
    let dev = parse_args(&args("blk ram=1:2 dev=blk1 ro")).unwrap();
    assert_eq!((dev.device.as_deref(), dev.file, dev.read_only), (Some("blk1"), None, true));
    assert_eq!(parse_args(&args("blk ram=1:2 dev=blk1 file=/x")), None, "a file or a device, not both");
    assert_eq!(parse_args(&args("rng ram=1:2 dev=blk1")), None);
    let nic = parse_args(&args("net ram=1:2 mac=02:4b:65:00:01:0a")).unwrap();
    assert_eq!((nic.kind, nic.mac), (Kind::Net, Some([2, 0x4b, 0x65, 0, 1, 10])));
    assert_eq!(parse_args(&args("net ram=1:2")), None, "a network device needs its address");
    assert_eq!(parse_args(&args("rng ram=1:2 mac=02:4b:65:00:01:0a")), None, "only it has one");
    for bad in ["02:4b:65:00:01", "02:4b:65:00:01:0a:0b", "2:4b:65:00:01:0a", "02:4b:65:00:01:zz"] {
        assert_eq!(parse_args(&args(&format!("net ram=1:2 mac={bad}"))), None, "{bad}");
    }
}

/// A disk backend over memory, as the guest's driver would use it.
#[test]
fn a_disk_backend_serves_reads_and_writes_and_counts_them() {
    use keel_virtio::blk::{Blk, Storage, StorageError};
    struct Mem(Vec<u8>);
    impl Storage for Mem {
        fn read(&mut self, o: u64, out: &mut [u8]) -> Result<(), StorageError> {
            out.copy_from_slice(&self.0[o as usize..o as usize + out.len()]);
            Ok(())
        }
        fn write(&mut self, o: u64, d: &[u8]) -> Result<(), StorageError> {
            self.0[o as usize..o as usize + d.len()].copy_from_slice(d);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), StorageError> {
            Ok(())
        }
    }
    let mut b = Backend::blk(Ram::new(BASE, alloc::vec![0; 1 << 20]), Blk { capacity: 16, read_only: false, id: [0; 20] }, alloc::boxed::Box::new(Mem(alloc::vec![7; 16 * 512])));
    assert_eq!(b.read(reg::DEVICE_ID, 4), 2);
    assert_eq!(b.read(reg::CONFIG, 4), 16, "capacity");
    assert!(!bring_up(&mut b));
    // A read of sector 1: header at BUF, data at BUF + 0x100, status at BUF + 0x400.
    let m = b.memory();
    m.write(BUF, &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    for (i, (addr, len, flags, next)) in [(BUF, 16u32, 1u16, 1u16), (BUF + 0x100, 512, 3, 2), (BUF + 0x400, 1, 2, 0)].into_iter().enumerate() {
        let at = DESC + 16 * i as u64;
        m.write(at, &addr.to_le_bytes()).unwrap();
        m.write_u32(at + 8, len).unwrap();
        m.write_u16(at + 12, flags).unwrap();
        m.write_u16(at + 14, next).unwrap();
    }
    m.write_u16(AVAIL + 4, 0).unwrap();
    m.write_u16(AVAIL + 2, 1).unwrap();
    assert!(b.notified(1));
    let mut data = [0u8; 512];
    b.memory().read(BUF + 0x100, &mut data).unwrap();
    assert_eq!(data, [7; 512]);
    assert_eq!(b.memory().read_u16(USED + 2).unwrap(), 1);
    assert_eq!((b.stats.requests, b.stats.bytes, b.stats.errors), (1, 512, 0));
    assert_eq!(b.hardware_entropy(), None);
}

/// A network backend: frames from the switch wait for the guest's receive buffers, frames the
/// guest sends come out without their header, and the backend holds only so many.
#[test]
fn a_network_backend_moves_frames_and_bounds_what_it_holds() {
    use crate::backend::MAX_RX_FRAMES;
    const TX: u64 = 0x10000;
    let mut b = Backend::net(Ram::new(BASE, alloc::vec![0; 1 << 20]), [2, 0x4b, 0x65, 0, 1, 0]);
    assert_eq!(b.read(reg::DEVICE_ID, 4), 1);
    assert_eq!(b.read(reg::CONFIG, 4), 0x0065_4b02, "the MAC");
    let w = |b: &mut Rng, off: u64, v: u64| b.write(off, 4, v);
    w(&mut b, reg::STATUS, 3);
    w(&mut b, reg::DRIVER_FEATURES_SEL, 1);
    w(&mut b, reg::DRIVER_FEATURES, 1);
    w(&mut b, reg::STATUS, 11);
    for (q, off) in [(0, 0), (1, TX)] {
        w(&mut b, reg::QUEUE_SEL, q);
        w(&mut b, reg::QUEUE_NUM, u64::from(QSIZE));
        w(&mut b, reg::QUEUE_DESC_LOW, (DESC + off) & 0xffff_ffff);
        w(&mut b, reg::QUEUE_DRIVER_LOW, (AVAIL + off) & 0xffff_ffff);
        w(&mut b, reg::QUEUE_DEVICE_LOW, (USED + off) & 0xffff_ffff);
        w(&mut b, reg::QUEUE_READY, 1);
    }
    w(&mut b, reg::STATUS, 15);
    // Two frames from the switch before the guest has buffers: held.
    let frame = |fill: u8| alloc::vec![fill; 60];
    assert!(!b.receive([&frame(1)[..], &frame(2)[..]].into_iter()));
    assert_eq!(b.receive_room(), MAX_RX_FRAMES - 2);
    // One receive buffer: the first frame goes in (12-byte header first), the interrupt is due.
    offer(&mut b, 0, BUF, 2048, 0);
    assert!(b.notified(1));
    let mut got = [0u8; 72];
    mem(&mut b).read(BUF, &mut got).unwrap();
    assert_eq!((got[10], &got[12..]), (1, &frame(1)[..]), "num_buffers 1, then the frame");
    assert_eq!(b.receive_room(), MAX_RX_FRAMES - 1);
    // The guest sends a 100-byte frame after its header.
    let m = mem(&mut b);
    m.write(BUF + 0x1000 + 12, &[9; 100]).unwrap();
    m.write(DESC + TX, &(BUF + 0x1000).to_le_bytes()).unwrap();
    m.write_u32(DESC + TX + 8, 112).unwrap();
    m.write_u16(AVAIL + TX + 4, 0).unwrap();
    m.write_u16(AVAIL + TX + 2, 1).unwrap();
    assert!(b.has_transmitted());
    b.notified(2);
    assert_eq!(b.take_transmitted(), [alloc::vec![9u8; 100]]);
    assert!(!b.has_transmitted());
    assert_eq!((b.stats.requests, b.stats.bytes), (2, 160));
    // More than it may hold: the rest is dropped and counted.
    let many: Vec<Vec<u8>> = (0..MAX_RX_FRAMES + 5).map(|i| frame(i as u8)).collect();
    b.receive(many.iter().map(Vec::as_slice));
    assert_eq!(b.receive_room(), 0);
    assert_eq!(b.stats.errors, 6, "one frame was still held from before");
}
