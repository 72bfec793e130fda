//! The queue and the transport against a mock driver writing rings into a mock guest RAM.

use crate::features::{EVENT_IDX, INDIRECT_DESC, VERSION_1};
use crate::mem::{GuestMemory, MemError, Ram};
use crate::mmio::{Device, Effect, Transport, interrupt, status};
use crate::queue::{Descriptor, MAX_INDIRECT, Queue, QueueError};

const BASE: u64 = 0x4000_0000;
const RAM: usize = 1 << 20;
/// Where the mock driver puts buffers and indirect tables.
const DATA: u64 = BASE + 0x8_0000;
const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;

/// A driver's side of one split queue in guest RAM.
struct Driver {
    mem: Ram<Vec<u8>>,
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    avail_idx: u16,
}

impl Driver {
    fn new(size: u16) -> Self {
        let desc = BASE;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4);
        Self { mem: Ram::new(BASE, vec![0; RAM]), size, desc, avail, used, avail_idx: 0 }
    }

    /// The device's queue, configured as this driver laid it out, enabled with `features`.
    fn queue(&self, features: u64) -> Queue {
        let mut q = Queue::new(self.size);
        (q.size, q.desc, q.avail, q.used) = (self.size, self.desc, self.avail, self.used);
        q.enable(&self.mem, features).expect("a well-formed queue");
        q
    }

    fn set_desc_at(&mut self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = table + 16 * u64::from(i);
        self.mem.write(at, &addr.to_le_bytes()).unwrap();
        self.mem.write_u32(at + 8, len).unwrap();
        self.mem.write_u16(at + 12, flags).unwrap();
        self.mem.write_u16(at + 14, next).unwrap();
    }

    fn set_desc(&mut self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        self.set_desc_at(self.desc, i, addr, len, flags, next);
    }

    /// Makes the chain at `head` available.
    fn publish(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        self.mem.write_u16(self.avail + 4 + 2 * slot, head).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.write_u16(self.avail + 2, self.avail_idx).unwrap();
    }

    fn used_idx(&self) -> u16 {
        self.mem.read_u16(self.used + 2).unwrap()
    }

    fn used_entry(&self, i: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(i % self.size);
        (self.mem.read_u32(at).unwrap(), self.mem.read_u32(at + 4).unwrap())
    }

    fn set_used_event(&mut self, v: u16) {
        self.mem.write_u16(self.avail + 4 + 2 * u64::from(self.size), v).unwrap();
    }
}

#[test]
fn a_chain_comes_out_whole_and_goes_back_used() {
    let mut d = Driver::new(8);
    d.mem.write(DATA, b"hello, ").unwrap();
    d.mem.write(DATA + 0x100, b"world").unwrap();
    d.set_desc(3, DATA, 7, NEXT, 5);
    d.set_desc(5, DATA + 0x100, 5, NEXT, 1);
    d.set_desc(1, DATA + 0x200, 16, WRITE, 0);
    d.publish(3);
    let mut q = d.queue(0);
    let chain = q.pop(&mut d.mem).unwrap().expect("a chain");
    assert_eq!(chain.head, 3);
    assert_eq!(
        chain.descriptors,
        [
            Descriptor { addr: DATA, len: 7, writable: false },
            Descriptor { addr: DATA + 0x100, len: 5, writable: false },
            Descriptor { addr: DATA + 0x200, len: 16, writable: true },
        ]
    );
    assert_eq!((chain.readable_len(), chain.writable_len()), (12, 16));
    let mut text = [0u8; 20];
    assert_eq!(chain.read_at(&d.mem, 0, &mut text), Ok(12), "reads stop at the readable part's end");
    assert_eq!(&text[..12], b"hello, world");
    let mut mid = [0u8; 4];
    assert_eq!(chain.read_at(&d.mem, 5, &mut mid), Ok(4), "a read across two buffers");
    assert_eq!(&mid, b", wo");
    assert_eq!(chain.write_at(&mut d.mem, 10, b"0123456789"), Ok(6), "writes stop at the writable part's end");
    let mut back = [0u8; 6];
    d.mem.read(DATA + 0x200 + 10, &mut back).unwrap();
    assert_eq!(&back, b"012345");
    assert_eq!(q.pop(&mut d.mem), Ok(None), "nothing more available");
    q.add_used(&mut d.mem, chain.head, 16).unwrap();
    assert_eq!(d.used_idx(), 1);
    assert_eq!(d.used_entry(0), (3, 16));
}

#[test]
fn indices_wrap_around_sixteen_bits() {
    let mut d = Driver::new(4);
    d.set_desc(2, DATA, 8, 0, 0);
    let mut q = d.queue(0);
    for i in 0..70_000u32 {
        d.publish(2);
        let c = q.pop(&mut d.mem).unwrap().unwrap_or_else(|| panic!("round {i}: no chain"));
        q.add_used(&mut d.mem, c.head, 0).unwrap();
        assert_eq!(d.used_idx(), (i + 1) as u16);
    }
}

#[test]
fn indirect_tables_when_negotiated_and_well_formed() {
    let mut d = Driver::new(8);
    let table = DATA + 0x1000;
    d.set_desc_at(table, 0, DATA, 10, NEXT, 2);
    d.set_desc_at(table, 2, DATA + 0x40, 20, WRITE | NEXT, 1);
    d.set_desc_at(table, 1, DATA + 0x80, 30, WRITE, 0);
    d.set_desc(0, table, 3 * 16, INDIRECT, 0);
    d.publish(0);
    let mut q = d.queue(INDIRECT_DESC);
    let c = q.pop(&mut d.mem).unwrap().unwrap();
    assert_eq!(c.head, 0);
    assert_eq!(c.descriptors.len(), 3);
    assert_eq!((c.readable_len(), c.writable_len()), (10, 50));
    // Not negotiated: refused.
    d.publish(0);
    let mut plain = d.queue(0);
    assert_eq!(plain.pop(&mut d.mem), Err(QueueError::IndirectNotNegotiated));
}

/// Queue errors, each from a fresh driver set up by `setup`, popped with `features`.
fn pop_error(features: u64, setup: impl FnOnce(&mut Driver)) -> QueueError {
    let mut d = Driver::new(8);
    setup(&mut d);
    let mut q = d.queue(features);
    match q.pop(&mut d.mem) {
        Err(e) => e,
        Ok(c) => panic!("accepted {c:?}"),
    }
}

#[test]
fn malformed_chains_are_refused() {
    let table = DATA + 0x1000;
    // A loop: 0 -> 1 -> 0.
    assert_eq!(
        pop_error(0, |d| {
            d.set_desc(0, DATA, 1, NEXT, 1);
            d.set_desc(1, DATA, 1, NEXT, 0);
            d.publish(0);
        }),
        QueueError::ChainTooLong
    );
    // A loop inside an indirect table.
    assert_eq!(
        pop_error(INDIRECT_DESC, |d| {
            d.set_desc_at(table, 0, DATA, 1, NEXT, 0);
            d.set_desc(0, table, 16, INDIRECT, 0);
            d.publish(0);
        }),
        QueueError::ChainTooLong
    );
    assert_eq!(pop_error(0, |d| d.publish(8)), QueueError::HeadOutOfRange(8));
    assert_eq!(
        pop_error(0, |d| {
            d.set_desc(0, DATA, 1, NEXT, 9);
            d.publish(0);
        }),
        QueueError::NextOutOfRange(9)
    );
    assert_eq!(
        pop_error(INDIRECT_DESC, |d| {
            d.set_desc_at(table, 0, DATA, 1, NEXT, 2);
            d.set_desc(0, table, 32, INDIRECT, 0);
            d.publish(0);
        }),
        QueueError::NextOutOfRange(2),
        "next beyond an indirect table"
    );
    assert_eq!(
        pop_error(INDIRECT_DESC, |d| {
            d.set_desc_at(table, 0, table, 16, INDIRECT, 0);
            d.set_desc(0, table, 16, INDIRECT, 0);
            d.publish(0);
        }),
        QueueError::MisplacedIndirect,
        "an indirect table in an indirect table"
    );
    assert_eq!(
        pop_error(INDIRECT_DESC, |d| {
            d.set_desc(0, table, 16, INDIRECT | NEXT, 1);
            d.publish(0);
        }),
        QueueError::MisplacedIndirect,
        "INDIRECT with NEXT"
    );
    assert_eq!(
        pop_error(INDIRECT_DESC, |d| {
            d.set_desc(0, DATA, 4, NEXT, 1);
            d.set_desc(1, table, 16, INDIRECT, 0);
            d.publish(0);
        }),
        QueueError::MisplacedIndirect,
        "an indirect descriptor after a direct one"
    );
    for len in [0, 15, 17, (MAX_INDIRECT + 1) * 16] {
        assert_eq!(
            pop_error(INDIRECT_DESC, |d| {
                d.set_desc(0, table, len, INDIRECT, 0);
                d.publish(0);
            }),
            QueueError::BadIndirectLength(len)
        );
    }
    assert_eq!(
        pop_error(0, |d| {
            d.set_desc(0, DATA, 4, WRITE | NEXT, 1);
            d.set_desc(1, DATA, 4, 0, 0);
            d.publish(0);
        }),
        QueueError::ReadableAfterWritable
    );
    // 4,097 buffers of the whole 1 MiB RAM: more than 4 GiB.
    let mut d = Driver::new(8192);
    for i in 0..4097 {
        d.set_desc(i, BASE, RAM as u32, NEXT, i + 1);
    }
    d.publish(0);
    assert_eq!(d.queue(0).pop(&mut d.mem), Err(QueueError::TooLarge));
}

#[test]
fn nothing_outside_guest_ram_is_ever_touched() {
    let end = BASE + RAM as u64;
    for (addr, len) in [(end - 4, 8), (BASE - 1, 1), (u64::MAX - 2, 8), (0, 1), (end, 1)] {
        assert_eq!(
            pop_error(0, |d| {
                d.set_desc(0, addr, len, 0, 0);
                d.publish(0);
            }),
            QueueError::Memory(MemError { addr, len: u64::from(len) }),
            "a buffer at {addr:#x}"
        );
    }
    assert_eq!(
        pop_error(INDIRECT_DESC, |d| {
            d.set_desc(0, end - 16, 32, INDIRECT, 0);
            d.publish(0);
        }),
        QueueError::Memory(MemError { addr: end - 16, len: 32 }),
        "an indirect table past the end"
    );
    // A zero-length buffer at the very end is inside.
    let mut d = Driver::new(8);
    d.set_desc(0, end, 0, 0, 0);
    d.publish(0);
    assert!(d.queue(0).pop(&mut d.mem).unwrap().is_some());
}

#[test]
fn an_available_index_that_jumps_is_refused() {
    let mut d = Driver::new(8);
    let mut q = d.queue(0);
    d.mem.write_u16(d.avail + 2, 9).unwrap();
    assert_eq!(q.pop(&mut d.mem), Err(QueueError::AvailIndexJump { avail: 9, next: 0 }));
}

#[test]
fn unusable_configurations_are_refused() {
    let d = Driver::new(8);
    let try_enable = |f: &dyn Fn(&mut Queue)| {
        let mut q = Queue::new(8);
        (q.size, q.desc, q.avail, q.used) = (8, d.desc, d.avail, d.used);
        f(&mut q);
        q.enable(&d.mem, 0)
    };
    assert_eq!(try_enable(&|_| {}), Ok(()));
    assert_eq!(try_enable(&|q| q.size = 0), Err(QueueError::BadConfig("size")));
    assert_eq!(try_enable(&|q| q.size = 6), Err(QueueError::BadConfig("size")));
    assert_eq!(try_enable(&|q| q.size = 16), Err(QueueError::BadConfig("size")), "above the maximum");
    assert_eq!(try_enable(&|q| q.desc += 8), Err(QueueError::BadConfig("alignment")));
    assert_eq!(try_enable(&|q| q.avail += 1), Err(QueueError::BadConfig("alignment")));
    assert_eq!(try_enable(&|q| q.used += 2), Err(QueueError::BadConfig("alignment")));
    assert_eq!(try_enable(&|q| q.used = BASE + RAM as u64 - 16), Err(QueueError::BadConfig("ring outside guest RAM")));
    assert_eq!(try_enable(&|q| q.desc = 0), Err(QueueError::BadConfig("ring outside guest RAM")));
    let mut off = Queue::new(8);
    assert_eq!(off.pop(&mut Ram::new(BASE, vec![0u8; 64])), Err(QueueError::NotReady));
}

#[test]
fn interrupts_follow_the_drivers_wishes() {
    // Without EVENT_IDX: the NO_INTERRUPT flag.
    let mut d = Driver::new(8);
    d.set_desc(0, DATA, 1, 0, 0);
    let mut q = d.queue(0);
    q.add_used(&mut d.mem, 0, 0).unwrap();
    assert_eq!(q.needs_interrupt(&d.mem), Ok(true));
    d.mem.write_u16(d.avail, 1).unwrap();
    q.add_used(&mut d.mem, 0, 0).unwrap();
    assert_eq!(q.needs_interrupt(&d.mem), Ok(false));
    // With EVENT_IDX: when the used index passes used_event.
    let mut d = Driver::new(8);
    let mut q = d.queue(EVENT_IDX);
    d.set_used_event(0);
    q.add_used(&mut d.mem, 0, 0).unwrap();
    assert_eq!(q.needs_interrupt(&d.mem), Ok(true), "the first one always");
    q.add_used(&mut d.mem, 0, 0).unwrap();
    assert_eq!(q.needs_interrupt(&d.mem), Ok(false), "used_event 0 was passed already");
    d.set_used_event(2);
    q.add_used(&mut d.mem, 0, 0).unwrap();
    assert_eq!(q.needs_interrupt(&d.mem), Ok(true), "used index 3 passed used_event 2");
    // The device asks to be notified of the next available chain.
    d.set_desc(0, DATA, 1, 0, 0);
    d.publish(0);
    q.pop(&mut d.mem).unwrap().unwrap();
    assert_eq!(d.mem.read_u16(d.used + 4 + 8 * 8), Ok(1), "avail_event");
}

/// Random guest memory and queue placement: the queue never panics, never loops, and every
/// chain it accepts lies inside RAM and is no longer than its table allows.
#[test]
fn random_rings_are_either_refused_or_checked_whole() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let size = 4096usize;
    let mut accepted = 0;
    for round in 0..3000 {
        let mut bytes: Vec<u8> = (0..size).map(|_| next() as u8).collect();
        // Many descriptors point back into the RAM, so chains do form.
        for i in (0..size).step_by(16) {
            if next() % 2 == 0 {
                let addr = BASE + next() % size as u64;
                bytes[i..i + 8].copy_from_slice(&addr.to_le_bytes());
                bytes[i + 8..i + 12].copy_from_slice(&((next() % 64) as u32).to_le_bytes());
                bytes[i + 12] &= 7;
                bytes[i + 14..i + 16].copy_from_slice(&((next() % 16) as u16).to_le_bytes());
            }
        }
        let mut mem = Ram::new(BASE, bytes);
        let mut q = Queue::new(16);
        q.size = 1 << (next() % 5);
        q.desc = BASE + (next() % 256) * 16;
        q.avail = BASE + (next() % 1024) * 2;
        q.used = BASE + (next() % 1024) * 4;
        if q.enable(&mem, INDIRECT_DESC | EVENT_IDX).is_err() {
            continue;
        }
        // A few chains available, their heads inside the table (most of the time).
        let _ = mem.write_u16(q.avail + 2, (next() % 4 + 1) as u16);
        for slot in 0..u64::from(q.size) {
            let _ = mem.write_u16(q.avail + 4 + 2 * slot, (next() % (u64::from(q.size) + 1)) as u16);
        }
        for _ in 0..4 {
            match q.pop(&mut mem) {
                Ok(Some(c)) => {
                    accepted += 1;
                    assert!(c.descriptors.len() <= MAX_INDIRECT as usize, "round {round}: chain of {}", c.descriptors.len());
                    for d in &c.descriptors {
                        assert!(mem.contains(d.addr, u64::from(d.len)), "round {round}: {d:?} outside RAM");
                    }
                    let _ = q.add_used(&mut mem, c.head, 0);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    assert!(accepted > 100, "only {accepted} random chains were well formed: the test does not reach the checks");
}

/// A device with two queues and 12 bytes of configuration space.
struct Model {
    config: [u8; 12],
}

impl Device for Model {
    fn id(&self) -> u32 {
        2
    }
    fn features(&self) -> u64 {
        1 << 5 | INDIRECT_DESC
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[8, 4]
    }
    fn read_config(&self, offset: u64, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            *b = usize::try_from(offset).ok().and_then(|o| self.config.get(o + i)).copied().unwrap_or(0);
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let Some(c) = usize::try_from(offset).ok().and_then(|o| self.config.get_mut(o + i)) {
                *c = *b;
            }
        }
    }
}

fn transport() -> Transport<Model> {
    Transport::new(Model { config: [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc] })
}

/// Brings `t` to DRIVER_OK with queue 0 set up as `d` laid it out; returns the Activated effect.
fn bring_up<D: Device>(t: &mut Transport<D>, d: &Driver, features: u64) -> Effect {
    let m = &d.mem;
    t.write(0x070, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER), m);
    t.write(0x024, 4, 0, m);
    t.write(0x020, 4, features & 0xffff_ffff, m);
    t.write(0x024, 4, 1, m);
    t.write(0x020, 4, features >> 32, m);
    t.write(0x070, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK), m);
    t.write(0x030, 4, 0, m);
    t.write(0x038, 4, u64::from(d.size), m);
    for (low, v) in [(0x080, d.desc), (0x090, d.avail), (0x0a0, d.used)] {
        t.write(low, 4, v & 0xffff_ffff, m);
        t.write(low + 4, 4, v >> 32, m);
    }
    assert_eq!(t.write(0x044, 4, 1, m), Effect::None);
    t.write(0x070, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK), m)
}

#[test]
fn the_register_block_reads_as_a_version_2_device() {
    let t = transport();
    assert_eq!(t.read(0x000, 4), 0x7472_6976);
    assert_eq!(t.read(0x004, 4), 2);
    assert_eq!(t.read(0x008, 4), 2);
    assert_eq!(t.read(0x00c, 4), u64::from(crate::mmio::VENDOR));
    assert_eq!(t.read(0x010, 4), (1 << 5) | INDIRECT_DESC, "features 31:0");
    assert_eq!(t.read(0x034, 4), 8, "queue 0's maximum size");
    assert_eq!(t.read(0x0b0, 4), 0xffff_ffff, "no shared memory");
    assert_eq!(t.read(0x002, 2), 0, "a narrow read of a control register");
    assert_eq!(t.read(0x001, 4), 0, "a misaligned read");
    assert_eq!(t.read(0x100, 1), 0x11);
    assert_eq!(t.read(0x102, 2), 0x4433);
    assert_eq!(t.read(0x104, 4), 0x8877_6655);
    assert_eq!(t.read(0x104, 8), 0xccbb_aa99_8877_6655);
    assert_eq!(t.read(0x10a, 4), 0xccbb, "past the configuration's end reads 0");
    assert_eq!(t.read(0x100, 3), 0, "a 3-byte access");
}

#[test]
fn features_are_negotiated_and_version_1_is_required() {
    let mut t = transport();
    let m = Ram::new(BASE, vec![0u8; 64]);
    t.write(0x014, 4, 1, &m);
    assert_eq!(t.read(0x010, 4), 1, "features 63:32: VERSION_1");
    // Without VERSION_1: no FEATURES_OK.
    t.write(0x070, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER), &m);
    t.write(0x020, 4, 1 << 5, &m);
    t.write(0x070, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK), &m);
    assert_eq!(t.status() & status::FEATURES_OK, 0);
    // A feature never offered: no FEATURES_OK either.
    t.write(0x024, 4, 1, &m);
    t.write(0x020, 4, 1 | 2, &m);
    t.write(0x070, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK), &m);
    assert_eq!(t.status() & status::FEATURES_OK, 0);
    // DRIVER_OK without FEATURES_OK does not stick.
    assert_eq!(t.write(0x070, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK), &m), Effect::None);
    assert!(!t.live());
    let d = Driver::new(8);
    let mut t = transport();
    assert_eq!(bring_up(&mut t, &d, VERSION_1 | INDIRECT_DESC), Effect::Activated(VERSION_1 | INDIRECT_DESC));
    assert!(t.live());
    assert_eq!(t.negotiated(), VERSION_1 | INDIRECT_DESC);
    assert_eq!(t.read(0x044, 4), 1, "queue 0 ready");
}

#[test]
fn notifications_requests_and_interrupts_through_the_transport() {
    let mut d = Driver::new(8);
    let mut t = transport();
    assert_eq!(t.write(0x050, 4, 0, &d.mem), Effect::None, "a notify before DRIVER_OK");
    bring_up(&mut t, &d, VERSION_1);
    assert_eq!(t.write(0x050, 4, 1, &d.mem), Effect::None, "queue 1 is not ready");
    assert_eq!(t.write(0x050, 4, 7, &d.mem), Effect::None, "there is no queue 7");
    d.set_desc(0, DATA, 4, 0, 0);
    d.publish(0);
    assert_eq!(t.write(0x050, 4, 0, &d.mem), Effect::Notify(0));
    let c = t.pop(0, &mut d.mem).unwrap().unwrap();
    assert_eq!(t.complete(0, &mut d.mem, c.head, 0), Ok(true));
    assert_eq!(t.read(0x060, 4), u64::from(interrupt::USED_BUFFER));
    t.write(0x064, 4, u64::from(interrupt::USED_BUFFER), &d.mem);
    assert_eq!(t.read(0x060, 4), 0, "acknowledged");
    // Queue registers cannot change under a live queue.
    t.write(0x038, 4, 2, &d.mem);
    t.write(0x080, 4, 0x1000, &d.mem);
    assert_eq!((t.read(0x038, 4), t.read(0x080, 4)), (8, d.desc & 0xffff_ffff));
    // Config writes reach the device.
    t.write(0x100, 2, 0xbeef, &d.mem);
    assert_eq!(t.read(0x100, 2), 0xbeef);
}

#[test]
fn a_malformed_queue_needs_a_reset_and_a_reset_clears_it() {
    let mut d = Driver::new(8);
    let mut t = transport();
    bring_up(&mut t, &d, VERSION_1);
    d.set_desc(0, DATA, 1, NEXT, 0);
    d.publish(0);
    assert_eq!(t.pop(0, &mut d.mem), Err(QueueError::ChainTooLong));
    assert_ne!(t.status() & status::NEEDS_RESET, 0);
    assert_ne!(t.interrupt_status() & interrupt::CONFIG_CHANGE, 0);
    assert!(!t.live());
    assert_eq!(t.pop(0, &mut d.mem), Ok(None), "nothing is served until the reset");
    assert_eq!(t.write(0x050, 4, 0, &d.mem), Effect::None);
    assert_eq!(t.write(0x070, 4, 0, &d.mem), Effect::Reset);
    assert_eq!((t.status(), t.read(0x044, 4), t.interrupt_status()), (0, 0, 0));
    // Enabling a queue placed outside RAM: the device needs a reset at once.
    let mut t = transport();
    let mut bad = Driver::new(8);
    bad.used = BASE + RAM as u64;
    let m = &bad.mem;
    t.write(0x070, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER), m);
    t.write(0x024, 4, 1, m);
    t.write(0x020, 4, 1, m);
    t.write(0x070, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK), m);
    t.write(0x0a0, 4, bad.used & 0xffff_ffff, m);
    t.write(0x0a4, 4, bad.used >> 32, m);
    assert_eq!(t.write(0x044, 4, 1, m), Effect::NeedsReset(QueueError::BadConfig("ring outside guest RAM")));
    assert_eq!(t.read(0x044, 4), 0);
    assert_ne!(t.status() & status::NEEDS_RESET, 0);
}

#[test]
fn the_entropy_device_fills_every_available_buffer() {
    use crate::rng::{self, MAX_PER_REQUEST, Rng};
    let mut d = Driver::new(8);
    let mut t = Transport::new(Rng);
    assert_eq!(t.read(0x008, 4), 4, "device ID 4");
    assert_eq!(bring_up(&mut t, &d, VERSION_1), Effect::Activated(VERSION_1));
    // Two buffers: 16 bytes in one descriptor, and 10 + 30 bytes in a chain of two.
    d.set_desc(0, DATA, 16, WRITE, 0);
    d.set_desc(1, DATA + 0x100, 10, WRITE | NEXT, 2);
    d.set_desc(2, DATA + 0x200, 30, WRITE, 0);
    d.publish(0);
    d.publish(1);
    let mut next = 0u8;
    let served = rng::serve(&mut t, &mut d.mem, |b| {
        for x in b {
            next = next.wrapping_add(1);
            *x = next;
        }
    })
    .unwrap();
    assert_eq!(served, rng::Served { requests: 2, bytes: 56, interrupt: true });
    assert_eq!((d.used_idx(), d.used_entry(0), d.used_entry(1)), (2, (0, 16), (1, 40)));
    let mut got = [0u8; 40];
    d.mem.read(DATA + 0x100, &mut got[..10]).unwrap();
    d.mem.read(DATA + 0x200, &mut got[10..]).unwrap();
    assert_eq!(got[0], 17, "the second request's bytes follow the first's");
    assert!(got.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "one stream across the chain's two buffers");
    // A huge buffer gets at most MAX_PER_REQUEST bytes; a readable one gets none.
    d.set_desc(3, DATA, 0x1_0000, WRITE, 0);
    d.set_desc(4, DATA, 8, 0, 0);
    d.publish(3);
    d.publish(4);
    let served = rng::serve(&mut t, &mut d.mem, |b| b.fill(7)).unwrap();
    assert_eq!(served.bytes, MAX_PER_REQUEST as u64);
    assert_eq!((d.used_entry(2), d.used_entry(3)), ((3, MAX_PER_REQUEST as u32), (4, 0)));
    // A malformed chain: an error, and the device needs a reset.
    d.publish(9);
    assert_eq!(rng::serve(&mut t, &mut d.mem, |b| b.fill(7)), Err(QueueError::HeadOutOfRange(9)));
    assert_ne!(t.status() & status::NEEDS_RESET, 0);
}

/// A disk in memory: what was written, and what a flush made durable (a power cut loses the
/// rest). `fail` makes every storage call fail.
struct MemDisk {
    data: Vec<u8>,
    durable: Vec<u8>,
    fail: bool,
    flushes: u32,
}

impl MemDisk {
    fn new(sectors: u64) -> Self {
        let data: Vec<u8> = (0..sectors * 512).map(|i| (i / 512) as u8).collect();
        Self { durable: data.clone(), data, fail: false, flushes: 0 }
    }
}

impl crate::blk::Storage for MemDisk {
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), crate::blk::StorageError> {
        let at = offset as usize;
        if self.fail || at + out.len() > self.data.len() {
            return Err(crate::blk::StorageError);
        }
        out.copy_from_slice(&self.data[at..at + out.len()]);
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), crate::blk::StorageError> {
        let at = offset as usize;
        if self.fail || at + data.len() > self.data.len() {
            return Err(crate::blk::StorageError);
        }
        self.data[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), crate::blk::StorageError> {
        if self.fail {
            return Err(crate::blk::StorageError);
        }
        self.durable.clone_from(&self.data);
        self.flushes += 1;
        Ok(())
    }
}

const HDR: u64 = DATA;
const STATUS_BYTE: u64 = DATA + 0x100;
const BUF: u64 = DATA + 0x1000;

/// A disk of `sectors` at DRIVER_OK, the driver's queue of 16 ready.
fn disk(sectors: u64, read_only: bool) -> (Driver, Transport<crate::blk::Blk>, MemDisk) {
    let d = Driver::new(16);
    let mut t = Transport::new(crate::blk::Blk { capacity: sectors, read_only, id: *b"keel-disk-0\0\0\0\0\0\0\0\0\0" });
    let features = VERSION_1 | crate::blk::feature::FLUSH | if read_only { crate::blk::feature::RO } else { 0 };
    assert_eq!(bring_up(&mut t, &d, features), Effect::Activated(features));
    (d, t, MemDisk::new(sectors))
}

/// Makes a request (header, `len` bytes of data at BUF, status) available as descriptors 0..3
/// and serves it; (status byte, used length).
fn blk_request(d: &mut Driver, t: &mut Transport<crate::blk::Blk>, s: &mut MemDisk, kind: u32, sector: u64, len: u32) -> (u8, u32) {
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&kind.to_le_bytes());
    header[8..].copy_from_slice(&sector.to_le_bytes());
    d.mem.write(HDR, &header).unwrap();
    d.mem.write(STATUS_BYTE, &[0xff]).unwrap();
    let data_flags = if kind == crate::blk::request::OUT { 0 } else { WRITE };
    d.set_desc(0, HDR, 16, NEXT, 1);
    d.set_desc(1, BUF, len, data_flags | NEXT, 2);
    d.set_desc(2, STATUS_BYTE, 1, WRITE, 0);
    d.publish(0);
    let idx = d.used_idx();
    crate::blk::serve(t, &mut d.mem, s).expect("a well-formed ring");
    assert_eq!(d.used_idx(), idx.wrapping_add(1), "one request completed");
    let mut st = [0u8];
    d.mem.read(STATUS_BYTE, &mut st).unwrap();
    (st[0], d.used_entry(idx).1)
}

#[test]
fn a_disk_says_its_size_and_features() {
    use crate::blk::{Blk, feature};
    let t = Transport::new(Blk { capacity: 0x1_0000_0002, read_only: true, id: [0; 20] });
    assert_eq!(t.read(0x008, 4), 2, "device ID 2");
    assert_eq!(t.read(0x100, 8), 0x1_0000_0002, "capacity in sectors");
    assert_eq!(t.read(0x104, 4), 1);
    assert_eq!(t.read(0x10c, 4), u64::from(crate::blk::SEG_MAX));
    assert_eq!(t.read(0x114, 4), 512, "blk_size");
    assert_eq!(t.read(0x1fc, 4), 0);
    let offered = t.offered();
    assert_ne!(offered & feature::RO, 0);
    assert_ne!(offered & feature::FLUSH, 0);
    assert_eq!(Transport::new(Blk { capacity: 8, read_only: false, id: [0; 20] }).offered() & feature::RO, 0);
}

#[test]
fn writes_read_back_and_a_flush_makes_them_durable() {
    use crate::blk::{request, status as st};
    let (mut d, mut t, mut s) = disk(64, false);
    d.mem.write(BUF, &[0xab; 1024]).unwrap();
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::OUT, 3, 1024), (st::OK, 1));
    assert_eq!(&s.data[3 * 512..5 * 512], &[0xab; 1024][..]);
    assert_ne!(&s.durable[3 * 512..5 * 512], &[0xab; 1024][..], "not durable before a flush");
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::FLUSH, 0, 0).0, st::OK);
    assert_eq!(&s.durable[3 * 512..5 * 512], &[0xab; 1024][..], "durable after it");
    d.mem.write(BUF, &[0; 2048]).unwrap();
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::IN, 2, 2048), (st::OK, 2049), "data and status written");
    let mut got = [0u8; 2048];
    d.mem.read(BUF, &mut got).unwrap();
    assert_eq!(got[..512], [2u8; 512], "sector 2 as it was");
    assert_eq!(got[512..1536], [0xab; 1024], "sectors 3 and 4 as written");
    assert_eq!(got[1536..], [5u8; 512]);
}

#[test]
fn bad_requests_complete_with_an_error_and_the_device_goes_on() {
    use crate::blk::{request, status as st};
    let (mut d, mut t, mut s) = disk(64, false);
    let before = s.data.clone();
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::IN, 63, 1024).0, st::IOERR, "past the end");
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::OUT, u64::MAX / 2, 512).0, st::IOERR, "sector * 512 overflows");
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::OUT, 0, 100).0, st::IOERR, "not whole sectors");
    assert_eq!(blk_request(&mut d, &mut t, &mut s, 77, 0, 512).0, st::UNSUPP, "unknown type");
    s.fail = true;
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::OUT, 0, 512).0, st::IOERR, "the storage failed");
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::FLUSH, 0, 0).0, st::IOERR);
    s.fail = false;
    assert_eq!(s.data, before, "nothing was written");
    // A header of 8 bytes; then a chain with no writable byte at all (nowhere for a status).
    d.set_desc(0, HDR, 8, NEXT, 1);
    d.set_desc(1, STATUS_BYTE, 1, WRITE, 0);
    d.publish(0);
    d.set_desc(2, HDR, 16, 0, 0);
    d.publish(2);
    let served = crate::blk::serve(&mut t, &mut d.mem, &mut s).unwrap();
    assert_eq!((served.requests, served.errors), (2, 2));
    let mut status = [0u8];
    d.mem.read(STATUS_BYTE, &mut status).unwrap();
    assert_eq!(status[0], st::IOERR);
    assert_eq!(t.status() & status::NEEDS_RESET, 0, "bad requests do not fail the device");
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::IN, 0, 512), (st::OK, 513), "and it still works");
}

#[test]
fn a_read_only_disk_refuses_writes_and_gives_its_id() {
    use crate::blk::{request, status as st};
    let (mut d, mut t, mut s) = disk(8, true);
    d.mem.write(BUF, &[9; 512]).unwrap();
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::OUT, 0, 512).0, st::IOERR);
    assert_eq!(s.data[0], 0, "unchanged");
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::IN, 0, 512).0, st::OK);
    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::GET_ID, 0, 20), (st::OK, 21));
    let mut id = [0u8; 20];
    d.mem.read(BUF, &mut id).unwrap();
    assert_eq!(&id[..11], b"keel-disk-0");
}

/// The power-cut test: a write/flush sequence with the power cut after every step in turn;
/// every write whose FLUSH completed before the cut is on the durable disk, whole.
#[test]
fn every_flushed_write_survives_a_power_cut_at_any_point() {
    use crate::blk::{request, status as st};
    // (sector, byte) writes, with a flush after every second one.
    let steps: Vec<Option<(u64, u8)>> = (0..12u8).flat_map(|i| {
        let w = Some((u64::from(i % 5) * 2, 0x40 + i));
        if i % 2 == 1 { vec![w, None] } else { vec![w] }
    }).collect();
    for cut in 0..=steps.len() {
        let (mut d, mut t, mut s) = disk(16, false);
        let mut flushed: Vec<(u64, u8)> = Vec::new();
        let mut pending: Vec<(u64, u8)> = Vec::new();
        for step in &steps[..cut] {
            match *step {
                Some((sector, byte)) => {
                    d.mem.write(BUF, &[byte; 1024]).unwrap();
                    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::OUT, sector, 1024).0, st::OK);
                    pending.push((sector, byte));
                }
                None => {
                    assert_eq!(blk_request(&mut d, &mut t, &mut s, request::FLUSH, 0, 0).0, st::OK);
                    flushed.append(&mut pending);
                }
            }
        }
        // The power goes: only `durable` is left. The last flushed write of each sector is there.
        for &(sector, _) in &flushed {
            let last = flushed.iter().rev().find(|(s2, _)| *s2 == sector).map(|&(_, b)| b).unwrap();
            let at = (sector * 512) as usize;
            let got = &s.durable[at..at + 1024];
            assert!(got.iter().all(|&b| b == last), "cut after step {cut}: sector {sector} lost its flushed write");
        }
    }
}

#[test]
fn a_console_takes_whole_output_buffers_and_fills_input_buffers() {
    use crate::console::{self, Console};
    // Two drivers' views of one RAM: the receive queue's rings at the Driver's addresses, the
    // transmit queue's 0x4000 above them.
    let mut d = Driver::new(8);
    let (mut t, tx) = two_queues_up(Console, &d);
    assert_eq!(t.read(0x008, 4), 3, "device ID 3");
    // Output: "hello " and "world\n" in two transmit buffers.
    d.mem.write(DATA, b"hello ").unwrap();
    d.mem.write(DATA + 0x100, b"world\n").unwrap();
    d.set_desc_at(tx.0, 0, DATA, 6, 0, 0);
    d.set_desc_at(tx.0, 1, DATA + 0x100, 6, 0, 0);
    d.mem.write_u16(tx.1 + 4, 0).unwrap();
    d.mem.write_u16(tx.1 + 6, 1).unwrap();
    d.mem.write_u16(tx.1 + 2, 2).unwrap();
    let mut out = Vec::new();
    let s = console::take_output(&mut t, &mut d.mem, &mut out).unwrap();
    assert_eq!(out, b"hello world\n");
    assert_eq!((s.requests, s.bytes), (2, 12));
    assert_eq!(d.mem.read_u16(tx.2 + 2).unwrap(), 2, "both buffers returned");
    // Input: "ab\n" into a 2-byte and an 8-byte receive buffer.
    d.set_desc(0, DATA + 0x200, 2, WRITE, 0);
    d.set_desc(1, DATA + 0x300, 8, WRITE, 0);
    d.publish(0);
    d.publish(1);
    let mut input: alloc::collections::VecDeque<u8> = b"ab\n".iter().copied().collect();
    let s = console::give_input(&mut t, &mut d.mem, &mut input).unwrap();
    assert!(input.is_empty());
    assert_eq!((s.requests, s.bytes), (2, 3));
    assert_eq!((d.used_entry(0), d.used_entry(1)), ((0, 2), (1, 1)));
    let mut got = [0u8; 3];
    d.mem.read(DATA + 0x200, &mut got[..2]).unwrap();
    d.mem.read(DATA + 0x300, &mut got[2..]).unwrap();
    assert_eq!(&got, b"ab\n");
    // More input than buffers: it waits for the next ones.
    input.extend(b"xyz");
    assert_eq!(console::give_input(&mut t, &mut d.mem, &mut input).unwrap().requests, 0);
    assert_eq!(input.len(), 3);
}

/// A net device live with both queues: see [`two_queues_up`].
fn net_up(d: &Driver) -> (Transport<crate::net::Net>, (u64, u64, u64)) {
    two_queues_up(crate::net::Net { mac: [2, 0x4b, 0x65, 0, 1, 0] }, d)
}

/// `device` live with two queues of size 8 (VERSION_1 only): queue 0 at the Driver's rings,
/// queue 1 0x4000 above them; returns queue 1's rings (desc, avail, used).
fn two_queues_up<D: Device>(device: D, d: &Driver) -> (Transport<D>, (u64, u64, u64)) {
    let mut t = Transport::new(device);
    let tx = (d.desc + 0x4000, d.avail + 0x4000, d.used + 0x4000);
    let m = &d.mem;
    t.write(0x070, 4, 3, m);
    t.write(0x024, 4, 1, m);
    t.write(0x020, 4, 1, m);
    t.write(0x070, 4, 11, m);
    for (q, (desc, avail, used)) in [(0u64, (d.desc, d.avail, d.used)), (1, tx)] {
        t.write(0x030, 4, q, m);
        t.write(0x038, 4, 8, m);
        for (low, v) in [(0x080, desc), (0x090, avail), (0x0a0, used)] {
            t.write(low, 4, v & 0xffff_ffff, m);
            t.write(low + 4, 4, v >> 32, m);
        }
        t.write(0x044, 4, 1, m);
    }
    assert!(matches!(t.write(0x070, 4, 15, m), Effect::Activated(_)));
    (t, tx)
}

#[test]
fn a_net_device_says_its_address_and_link() {
    let t = Transport::new(crate::net::Net { mac: [2, 0x4b, 0x65, 0, 7, 1] });
    assert_eq!(t.read(0x008, 4), 1, "device ID 1");
    assert_eq!(t.read(0x010, 4) & (1 << 5 | 1 << 16), 1 << 5 | 1 << 16, "MAC and STATUS offered");
    assert_eq!(t.read(0x100, 4), 0x0065_4b02);
    assert_eq!(t.read(0x104, 1), 7);
    assert_eq!(t.read(0x105, 1), 1);
    assert_eq!(t.read(0x106, 2), 1, "link up");
    assert_eq!(t.read(0x108, 4), 0, "nothing after the status");
}

#[test]
fn a_net_device_moves_frames_both_ways_and_drops_bad_ones() {
    use crate::net::{self, HEADER};
    let mut d = Driver::new(8);
    let (mut t, tx) = net_up(&d);
    // Transmit: a 60-byte frame after its header in one buffer, a 100-byte one split over two
    // descriptors, a runt (header and 4 bytes), and one too long.
    let frame = |n: usize, fill: u8| (0..n).map(|i| fill ^ i as u8).collect::<Vec<u8>>();
    d.mem.write(DATA + HEADER as u64, &frame(60, 1)).unwrap();
    d.set_desc_at(tx.0, 0, DATA, (HEADER + 60) as u32, 0, 0);
    d.mem.write(DATA + 0x1000, &frame(100, 2)).unwrap();
    d.set_desc_at(tx.0, 1, DATA + 0x1000 - HEADER as u64, HEADER as u32, NEXT, 2);
    d.set_desc_at(tx.0, 2, DATA + 0x1000, 100, 0, 0);
    d.set_desc_at(tx.0, 3, DATA + 0x2000, (HEADER + 4) as u32, 0, 0);
    d.set_desc_at(tx.0, 4, DATA + 0x3000, (HEADER + net::MAX_FRAME + 1) as u32, 0, 0);
    for (i, head) in [0u16, 1, 3, 4].iter().enumerate() {
        d.mem.write_u16(tx.1 + 4 + 2 * i as u64, *head).unwrap();
    }
    d.mem.write_u16(tx.1 + 2, 4).unwrap();
    let mut out = Vec::new();
    let s = net::take_frames(&mut t, &mut d.mem, &mut out).unwrap();
    assert_eq!(out, [frame(60, 1), frame(100, 2)]);
    assert_eq!((s.frames, s.bytes, s.dropped), (2, 160, 2));
    assert_eq!(d.mem.read_u16(tx.2 + 2).unwrap(), 4, "every buffer returned, the dropped ones too");
    assert!(!net::more_to_take(&mut t, &d.mem));
    // Receive: two frames into a 1526-byte buffer and a 32-byte one; the second is too long
    // for its buffer and dropped; the third waits for a buffer.
    d.set_desc(0, DATA + 0x4000, (HEADER + net::MAX_FRAME) as u32, WRITE, 0);
    d.set_desc(1, DATA + 0x5000, 32, WRITE, 0);
    d.publish(0);
    d.publish(1);
    let mut frames: alloc::collections::VecDeque<Vec<u8>> = [frame(64, 3), frame(64, 4), frame(64, 5)].into_iter().collect();
    let s = net::give_frames(&mut t, &mut d.mem, &mut frames).unwrap();
    assert_eq!((s.frames, s.bytes, s.dropped), (1, 64, 1));
    assert_eq!(frames.len(), 1);
    assert_eq!((d.used_entry(0), d.used_entry(1)), ((0, (HEADER + 64) as u32), (1, 0)));
    let mut got = vec![0u8; HEADER + 64];
    d.mem.read(DATA + 0x4000, &mut got).unwrap();
    assert_eq!(&got[..HEADER], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "a zero header, num_buffers 1");
    assert_eq!(&got[HEADER..], &frame(64, 3)[..]);
}

#[test]
fn a_net_driver_using_one_direction_leaves_the_other_queue_alone() {
    use crate::net::{self, Net};
    // Only the transmit queue set up: frames for the guest wait, nothing fails.
    let d = Driver::new(8);
    let mut t = Transport::new(Net { mac: [2, 0, 0, 0, 0, 1] });
    let m = &d.mem;
    t.write(0x070, 4, 3, m);
    t.write(0x024, 4, 1, m);
    t.write(0x020, 4, 1, m);
    t.write(0x070, 4, 11, m);
    t.write(0x030, 4, 1, m);
    t.write(0x038, 4, 8, m);
    for (low, v) in [(0x080, d.desc), (0x090, d.avail), (0x0a0, d.used)] {
        t.write(low, 4, v & 0xffff_ffff, m);
        t.write(low + 4, 4, v >> 32, m);
    }
    t.write(0x044, 4, 1, m);
    assert!(matches!(t.write(0x070, 4, 15, m), Effect::Activated(_)));
    let mut mem = d.mem;
    let mut frames: alloc::collections::VecDeque<Vec<u8>> = [vec![0xffu8; 60]].into_iter().collect();
    assert_eq!(net::give_frames(&mut t, &mut mem, &mut frames).unwrap().frames, 0);
    assert_eq!(frames.len(), 1, "the frame waits");
    assert_eq!(t.status() & status::NEEDS_RESET, 0);
}
