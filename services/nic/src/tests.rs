//! The driver against a fake virtio-net device: registers kept in a table, rings and buffers in
//! a fake DMA region the test plays the device on.

use crate::device::{Broken, NetDevice, dma_layout};
use core::cell::RefCell;
use keel_blk::dma::DmaMemory;
use keel_blk::regs::{Registers, reg};
use keel_rt::errno::Errno;

const BUS: u64 = 0x4000_0000;

struct Mem(RefCell<Vec<u8>>);

impl DmaMemory for &Mem {
    fn bus_address(&self) -> u64 {
        BUS
    }
    fn size(&self) -> usize {
        self.0.borrow().len()
    }
    fn read32(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.0.borrow()[o..o + 4].try_into().unwrap())
    }
    fn write32(&self, o: usize, v: u32) {
        self.0.borrow_mut()[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn read_bytes(&self, o: usize, out: &mut [u8]) -> Result<(), Errno> {
        out.copy_from_slice(self.0.borrow().get(o..o + out.len()).ok_or(Errno::Io)?);
        Ok(())
    }
    fn write_bytes(&self, o: usize, b: &[u8]) -> Result<(), Errno> {
        self.0.borrow_mut().get_mut(o..o + b.len()).ok_or(Errno::Io)?.copy_from_slice(b);
        Ok(())
    }
    fn barrier(&self) {}
}

#[derive(Default)]
struct Regs {
    version: u32,
    offered: u64,
    status: u32,
    features_sel: u32,
    driver_features: u64,
    driver_sel: u32,
    queue_sel: u32,
    /// Per queue: QueueNum, the three ring addresses (bus), ready.
    queues: [(u32, [u64; 3], bool); 2],
    pfn: [u32; 2],
    notified: Vec<u32>,
    interrupt: u32,
}

struct Fake(RefCell<Regs>);

impl Registers for &Fake {
    fn read(&self, o: u32) -> u32 {
        let r = self.0.borrow();
        match o {
            reg::MAGIC => keel_blk::regs::MAGIC_VALUE,
            reg::VERSION => r.version,
            reg::DEVICE_ID => 1,
            reg::DEVICE_FEATURES => (r.offered >> (32 * r.features_sel)) as u32,
            reg::QUEUE_NUM_MAX => 256,
            reg::QUEUE_READY => u32::from(r.queues[r.queue_sel as usize].2),
            reg::QUEUE_PFN => r.pfn[r.queue_sel as usize],
            reg::STATUS => r.status,
            reg::INTERRUPT_STATUS => r.interrupt,
            reg::CONFIG => u32::from_le_bytes([0x52, 0x54, 0, 0x12]),
            o if o == reg::CONFIG + 4 => u32::from_le_bytes([0x34, 0x56, 1, 0]),
            _ => 0,
        }
    }
    fn write(&self, o: u32, v: u32) {
        let mut r = self.0.borrow_mut();
        let q = r.queue_sel as usize;
        match o {
            reg::STATUS => r.status = v,
            reg::DEVICE_FEATURES_SEL => r.features_sel = v,
            reg::DRIVER_FEATURES_SEL => r.driver_sel = v,
            reg::DRIVER_FEATURES => {
                let shift = 32 * r.driver_sel;
                r.driver_features = (r.driver_features & !(0xffff_ffff << shift)) | (u64::from(v) << shift);
            }
            reg::QUEUE_SEL => r.queue_sel = v,
            reg::QUEUE_NUM => r.queues[q].0 = v,
            reg::QUEUE_READY => r.queues[q].2 = v != 0,
            reg::QUEUE_PFN => r.pfn[q] = v,
            reg::QUEUE_NOTIFY => r.notified.push(v),
            reg::INTERRUPT_ACK => r.interrupt &= !v,
            o if (reg::QUEUE_DESC_LOW..=reg::QUEUE_DEVICE_HIGH).contains(&o) => {
                let (part, high) = (((o - reg::QUEUE_DESC_LOW) / 0x10) as usize, (o & 4) != 0);
                let a = &mut r.queues[q].1[part];
                *a = if high { (*a & 0xffff_ffff) | (u64::from(v) << 32) } else { (*a & !0xffff_ffff) | u64::from(v) };
            }
            _ => {}
        }
    }
}

/// The device's side of queue `q` (modern: the addresses the driver wrote).
struct Side<'a> {
    mem: &'a Mem,
    desc: usize,
    avail: usize,
    used: usize,
    size: u16,
}

impl Side<'_> {
    fn of<'a>(fake: &Fake, mem: &'a Mem, q: usize) -> Side<'a> {
        let r = fake.0.borrow();
        let (num, [d, a, u], _) = r.queues[q];
        Side { mem, desc: (d - BUS) as usize, avail: (a - BUS) as usize, used: (u - BUS) as usize, size: num as u16 }
    }
    fn u16_at(&self, o: usize) -> u16 {
        u16::from_le_bytes(self.mem.0.borrow()[o..o + 2].try_into().unwrap())
    }
    fn avail_idx(&self) -> u16 {
        self.u16_at(self.avail + 2)
    }
    /// The chain at available slot `n`: (head, buffer offset in the region, length).
    fn take(&self, n: u16) -> (u16, usize, u32) {
        let head = self.u16_at(self.avail + 4 + 2 * usize::from(n % self.size));
        let d = self.desc + 16 * usize::from(head);
        let m = &self.mem;
        let addr = u64::from(m.read32(d)) | (u64::from(m.read32(d + 4)) << 32);
        (head, (addr - BUS) as usize, m.read32(d + 8))
    }
    fn give_back(&self, n: u16, head: u16, len: u32) {
        let e = self.used + 4 + 8 * usize::from(n % self.size);
        (&self.mem).write32(e, u32::from(head));
        (&self.mem).write32(e + 4, len);
        let w = (&self.mem).read32(self.used) & 0xffff;
        (&self.mem).write32(self.used, w | (u32::from(n.wrapping_add(1)) << 16));
    }
}

fn frame(n: usize, fill: u8) -> Vec<u8> {
    (0..n).map(|i| fill ^ i as u8).collect()
}

#[test]
fn a_modern_device_gets_its_queues_and_frames_go_both_ways() {
    let mem = Mem(RefCell::new(vec![0; dma_layout::TOTAL]));
    // Offers CSUM (bit 0), MAC, STATUS, EVENT_IDX and VERSION_1; only MAC and VERSION_1 taken.
    let fake = Fake(RefCell::new(Regs { version: 2, offered: 1 | 1 << 5 | 1 << 16 | 1 << 29 | 1 << 32, ..Default::default() }));
    let mut dev = NetDevice::init(&fake, &mem).unwrap();
    assert_eq!(dev.mac(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    assert_eq!(fake.0.borrow().driver_features, 1 << 5 | 1 << 32);
    assert_eq!(fake.0.borrow().status & 0xf, 0xf, "ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK");
    let rx = Side::of(&fake, &mem, 0);
    assert_eq!((rx.size, rx.avail_idx()), (64, 64), "every receive buffer given to the device");
    assert_eq!(fake.0.borrow().notified, [0]);
    // The device receives a 60-byte frame into the first buffer, then a runt into the second.
    let (head, at, len) = rx.take(0);
    assert_eq!(len, 2048);
    (&mem).write_bytes(at, &[0; 12]).unwrap();
    (&mem).write_bytes(at + 12, &frame(60, 1)).unwrap();
    rx.give_back(0, head, 72);
    let (head2, _, _) = rx.take(1);
    rx.give_back(1, head2, 12 + 4);
    let mut got = Vec::new();
    assert_eq!(dev.receive(&mut got), 1, "the runt is dropped");
    assert_eq!(got, [frame(60, 1)]);
    assert_eq!(rx.avail_idx(), 66, "both buffers given back");
    // Sending: header then frame in one device-readable buffer; kick notifies queue 1.
    assert_eq!(dev.send_room(), 64);
    assert!(dev.send(&frame(100, 2)));
    assert!(!dev.send(&frame(13, 0)), "a runt is refused");
    dev.kick();
    let tx = Side::of(&fake, &mem, 1);
    assert_eq!(tx.avail_idx(), 1);
    let (head, at, len) = tx.take(0);
    assert_eq!(len, 112);
    let mut sent = vec![0; 112];
    (&mem).read_bytes(at, &mut sent).unwrap();
    assert_eq!((&sent[..12], &sent[12..]), (&[0u8; 12][..], &frame(100, 2)[..]));
    assert_eq!(fake.0.borrow().notified.last(), Some(&1));
    assert_eq!(dev.send_room(), 63);
    tx.give_back(0, head, 0);
    assert_eq!(dev.send_room(), 64, "the buffer came back");
}

#[test]
fn a_device_that_breaks_the_ring_protocol_is_given_up() {
    let mem = Mem(RefCell::new(vec![0; dma_layout::TOTAL]));
    let fake = Fake(RefCell::new(Regs { version: 2, offered: 1 << 5 | 1 << 32, ..Default::default() }));
    let mut dev = NetDevice::init(&fake, &mem).unwrap();
    let rx = Side::of(&fake, &mem, 0);
    // One good used entry, then one naming a descriptor no chain starts at.
    let (head, _, _) = rx.take(0);
    rx.give_back(0, head, 20);
    rx.give_back(1, 999, 20);
    let mut got = Vec::new();
    dev.receive(&mut got);
    assert!(matches!(dev.broken(), Some(Broken::Used(_))), "{:?}", dev.broken());
    assert!(!dev.send(&frame(60, 0)));
    assert_eq!(dev.send_room(), 0);
}

#[test]
fn a_modern_device_without_version_1_and_a_legacy_one() {
    let mem = Mem(RefCell::new(vec![0; dma_layout::TOTAL]));
    let fake = Fake(RefCell::new(Regs { version: 2, offered: 1 << 5, ..Default::default() }));
    assert_eq!(NetDevice::init(&fake, &mem).err(), Some(crate::device::InitError::NoVersion1));
    assert_eq!(fake.0.borrow().status & 0x80, 0x80, "marked FAILED");
    // Legacy: page-number queue addresses, a 10-byte header, no MAC offered (Keel's own).
    let fake = Fake(RefCell::new(Regs { version: 1, offered: 0, ..Default::default() }));
    let mut dev = NetDevice::init(&fake, &mem).unwrap();
    assert_eq!(fake.0.borrow().pfn, [(BUS / 4096) as u32, ((BUS + dma_layout::TX_QUEUE as u64) / 4096) as u32]);
    assert_eq!(dev.mac(), [0x02, 0x4b, 0x65, 0xff, 0xff, 0x00]);
    assert!(dev.send(&frame(60, 3)));
    let mut buf = vec![0; 70];
    // The first free buffer is the lowest-numbered one.
    (&mem).read_bytes(dma_layout::TX_BUFFERS, &mut buf).unwrap();
    assert_eq!((&buf[..10], &buf[10..]), (&[0u8; 10][..], &frame(60, 3)[..]));
}
