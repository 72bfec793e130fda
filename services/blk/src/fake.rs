//! Host-only stand-ins for the hardware: DMA memory as a byte vector, and a virtio-blk device
//! model behind virtio-mmio registers (legacy or modern) that serves requests from a disk held
//! in memory, with faults to inject. The model reads the rings the way a device does, so the
//! driver's layout, chains and ring handling are tested end to end.

use crate::device::{Interrupt, Wait};
use crate::dma::DmaMemory;
use crate::regs::{Registers, reg};
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use keel_rt::errno::Errno;

/// DMA memory: `len` bytes at bus address `bus`.
pub struct FakeMemory {
    bus: u64,
    bytes: RefCell<Vec<u8>>,
}

impl FakeMemory {
    pub fn new(bus: u64, len: usize) -> Self {
        Self { bus, bytes: RefCell::new(vec![0; len]) }
    }

    pub fn bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        self.bytes.borrow()[offset..offset + len].to_vec()
    }

    pub fn put(&self, offset: usize, data: &[u8]) {
        self.bytes.borrow_mut()[offset..offset + data.len()].copy_from_slice(data);
    }

    /// The offset of bus address `addr` with `len` bytes behind it, if inside the region.
    fn offset_of(&self, addr: u64, len: usize) -> Option<usize> {
        let off = usize::try_from(addr.checked_sub(self.bus)?).ok()?;
        (off.checked_add(len)? <= self.bytes.borrow().len()).then_some(off)
    }
}

impl DmaMemory for FakeMemory {
    fn bus_address(&self) -> u64 {
        self.bus
    }
    fn size(&self) -> usize {
        self.bytes.borrow().len()
    }
    fn read32(&self, offset: usize) -> u32 {
        assert_eq!(offset % 4, 0, "unaligned DMA word read at {offset:#x}");
        u32::from_le_bytes(self.bytes(offset, 4).try_into().unwrap())
    }
    fn write32(&self, offset: usize, value: u32) {
        assert_eq!(offset % 4, 0, "unaligned DMA word write at {offset:#x}");
        self.put(offset, &value.to_le_bytes());
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), Errno> {
        out.copy_from_slice(&self.bytes.borrow()[offset..offset + out.len()]);
        Ok(())
    }
    fn write_bytes(&self, offset: usize, bytes: &[u8]) -> Result<(), Errno> {
        self.put(offset, bytes);
        Ok(())
    }
    fn barrier(&self) {}
}

impl DmaMemory for Rc<FakeMemory> {
    fn bus_address(&self) -> u64 {
        (**self).bus_address()
    }
    fn size(&self) -> usize {
        (**self).size()
    }
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        (**self).write32(offset, value)
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), Errno> {
        (**self).read_bytes(offset, out)
    }
    fn write_bytes(&self, offset: usize, bytes: &[u8]) -> Result<(), Errno> {
        (**self).write_bytes(offset, bytes)
    }
    fn barrier(&self) {}
}

/// Misbehaviour the device model can be told to show on the next requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Takes requests but never completes them.
    NoCompletion,
    /// Returns a used element with an id that is not the chain's head.
    BadUsedId,
    /// Claims to have written more bytes than the chain can take.
    LongLen,
    /// Claims a successful read wrote fewer bytes than asked.
    ShortLen,
    /// Completes with this status byte.
    Status(u8),
    /// Completes without writing the status byte.
    NoStatus,
    /// Advances the used index by 3 for one request.
    IndexJump,
    /// Sets DEVICE_NEEDS_RESET and raises a configuration interrupt instead of completing.
    NeedsReset,
    /// Completes requests only when the driver waits for the interrupt (a slow device).
    Deferred,
}

/// One request the model served: (type, sector, data bytes, data descriptors).
pub type Served = (u32, u64, usize, usize);

/// The device model's registers and state.
pub struct FakeState {
    pub magic: u32,
    pub version: u32,
    pub device_id: u32,
    pub offered: u64,
    pub driver_features: u64,
    dev_sel: u32,
    drv_sel: u32,
    pub status: u32,
    /// Clear FEATURES_OK when the driver sets it.
    pub refuse_features: bool,
    pub page_size: u32,
    pub queue_num_max: u32,
    pub queue_num: u32,
    pub queue_align: u32,
    pub queue_pfn: u32,
    pub queue_ready: u32,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    pub interrupt_status: u32,
    pub size_max: u32,
    pub seg_max: u32,
    pub blk_size: u32,
    pub config_generation: u32,
    pub disk: Vec<u8>,
    last_avail: u16,
    used_idx: u16,
    pub fault: Fault,
    pub served: Vec<Served>,
    pub notifies: u32,
}

/// A virtio-blk device on a virtio-mmio transport, over shared fake DMA memory.
pub struct FakeBlk {
    pub state: RefCell<FakeState>,
    mem: Rc<FakeMemory>,
    /// Register accesses so far (to check that probing writes nothing).
    pub writes: Cell<u32>,
}

impl FakeBlk {
    /// A `sectors`-sector disk on a transport of `version` (1 legacy, 2 modern) offering
    /// `offered` features (VERSION_1 is added for version 2).
    pub fn new(version: u32, sectors: usize, offered: u64, mem: Rc<FakeMemory>) -> Rc<Self> {
        let offered = if version == 2 { offered | 1 << 32 } else { offered };
        Rc::new(Self {
            state: RefCell::new(FakeState {
                magic: crate::regs::MAGIC_VALUE,
                version,
                device_id: crate::regs::DEVICE_ID_BLOCK,
                offered,
                driver_features: 0,
                dev_sel: 0,
                drv_sel: 0,
                status: 0,
                refuse_features: false,
                page_size: 0,
                queue_num_max: 256,
                queue_num: 0,
                queue_align: 0,
                queue_pfn: 0,
                queue_ready: 0,
                desc: 0,
                driver: 0,
                device: 0,
                interrupt_status: 0,
                size_max: 0,
                seg_max: 126,
                blk_size: 512,
                config_generation: 0,
                disk: (0..sectors * 512).map(|i| (i / 512) as u8 ^ (i % 251) as u8).collect(),
                last_avail: 0,
                used_idx: 0,
                fault: Fault::None,
                served: Vec::new(),
                notifies: 0,
            }),
            mem,
            writes: Cell::new(0),
        })
    }

    /// An empty transport slot or another device: only the identification registers.
    pub fn slot(magic: u32, version: u32, device_id: u32) -> Rc<Self> {
        let d = Self::new(version, 0, 0, Rc::new(FakeMemory::new(0, 0)));
        {
            let mut s = d.state.borrow_mut();
            s.magic = magic;
            s.device_id = device_id;
        }
        d
    }

    pub fn set_fault(&self, f: Fault) {
        self.state.borrow_mut().fault = f;
    }

    /// The rings' offsets in the DMA region: (desc, avail, used, size).
    fn rings(&self) -> Option<(usize, usize, usize, u16)> {
        let s = self.state.borrow();
        let num = s.queue_num as usize;
        if num == 0 {
            return None;
        }
        let (desc, avail, used) = if s.version == 1 {
            let base = u64::from(s.queue_pfn) * u64::from(s.page_size);
            let desc = base;
            let avail = desc + 16 * num as u64;
            let align = u64::from(s.queue_align);
            let used = (avail + 6 + 2 * num as u64).next_multiple_of(align);
            (desc, avail, used)
        } else {
            (s.desc, s.driver, s.device)
        };
        let m = &self.mem;
        Some((m.offset_of(desc, 16 * num)?, m.offset_of(avail, 6 + 2 * num)?, m.offset_of(used, 6 + 8 * num)?, num as u16))
    }

    fn live(&self) -> bool {
        let s = self.state.borrow();
        s.status & crate::regs::status::DRIVER_OK != 0 && (s.version == 1 && s.queue_pfn != 0 || s.queue_ready != 0)
    }

    /// Serves every request in the available ring, as a device does on a notify.
    fn process(&self) {
        if !self.live() {
            return;
        }
        let Some((desc, avail, used, num)) = self.rings() else { return };
        let m = &self.mem;
        loop {
            let avail_idx = (m.read32(avail) >> 16) as u16;
            let last = self.state.borrow().last_avail;
            if last == avail_idx {
                break;
            }
            let fault = self.state.borrow().fault;
            if fault == Fault::NoCompletion || fault == Fault::Deferred {
                return;
            }
            if fault == Fault::NeedsReset {
                let mut s = self.state.borrow_mut();
                s.status |= crate::regs::status::DEVICE_NEEDS_RESET;
                s.interrupt_status |= crate::regs::interrupt::CONFIG_CHANGE;
                return;
            }
            let slot = usize::from(last % num);
            let word = m.read32(avail + 4 + 2 * (slot & !1));
            let head = if slot & 1 == 0 { word as u16 } else { (word >> 16) as u16 };
            // The chain: (bus address, len, device-writable).
            let mut chain = Vec::new();
            let mut id = head;
            for _ in 0..num {
                let d = desc + 16 * usize::from(id);
                let addr = u64::from(m.read32(d)) | (u64::from(m.read32(d + 4)) << 32);
                let len = m.read32(d + 8) as usize;
                let fl = m.read32(d + 12);
                chain.push((addr, len, fl & 2 != 0));
                if fl & 1 == 0 {
                    break;
                }
                id = (fl >> 16) as u16;
            }
            assert!(chain.len() >= 2, "a virtio-blk chain has a header and a status");
            let (haddr, hlen, hw) = chain[0];
            assert!(hlen == 16 && !hw, "header: 16 device-readable bytes");
            let (saddr, slen, sw) = *chain.last().unwrap();
            assert!(slen == 1 && sw, "status: 1 device-writable byte");
            let hoff = m.offset_of(haddr, 16).expect("header in DMA memory");
            let kind = m.read32(hoff);
            let sector = u64::from(m.read32(hoff + 8)) | (u64::from(m.read32(hoff + 12)) << 32);
            let data = &chain[1..chain.len() - 1];
            let total: usize = data.iter().map(|d| d.1).sum();
            let mut status = crate::request::STATUS_OK;
            let mut written = 1;
            {
                let mut s = self.state.borrow_mut();
                let start = sector as usize * 512;
                let in_range = start + total <= s.disk.len();
                match kind {
                    0 | 1 if !in_range => status = crate::request::STATUS_IOERR,
                    0 => {
                        let mut at = start;
                        for &(a, l, w) in data {
                            assert!(w, "read buffers are device-writable");
                            m.put(m.offset_of(a, l).expect("data in DMA memory"), &s.disk[at..at + l]);
                            at += l;
                        }
                        written = total + 1;
                    }
                    1 => {
                        if s.offered & (1 << crate::features::bit::BLK_RO) != 0 {
                            status = crate::request::STATUS_IOERR;
                        } else {
                            let mut at = start;
                            for &(a, l, w) in data {
                                assert!(!w, "write buffers are device-readable");
                                let bytes = m.bytes(m.offset_of(a, l).expect("data in DMA memory"), l);
                                s.disk[at..at + l].copy_from_slice(&bytes);
                                at += l;
                            }
                        }
                    }
                    4 => {}
                    _ => status = crate::request::STATUS_UNSUPP,
                }
                s.served.push((kind, sector, total, data.len()));
            }
            let mut id_out = u32::from(head);
            let mut step = 1u16;
            match fault {
                Fault::BadUsedId => id_out = u32::from(head) + 1,
                Fault::LongLen => written += 1000,
                Fault::ShortLen => written = 1,
                Fault::Status(b) => status = b,
                Fault::IndexJump => step = 3,
                _ => {}
            }
            if fault != Fault::NoStatus {
                let soff = m.offset_of(saddr, 1).expect("status in DMA memory");
                m.put(soff, &[status]);
            }
            let mut s = self.state.borrow_mut();
            let e = used + 4 + 8 * usize::from(s.used_idx % num);
            m.write32(e, id_out);
            m.write32(e + 4, written as u32);
            s.used_idx = s.used_idx.wrapping_add(step);
            m.write32(used, u32::from(s.used_idx) << 16);
            s.last_avail = last.wrapping_add(1);
            s.interrupt_status |= crate::regs::interrupt::USED_BUFFER;
        }
    }
}

impl Registers for Rc<FakeBlk> {
    fn read(&self, offset: u32) -> u32 {
        let s = self.state.borrow();
        let cfg = |v: u64, at: u32| (v >> (8 * (offset - reg::CONFIG - at))) as u32;
        match offset {
            reg::MAGIC => s.magic,
            reg::VERSION => s.version,
            reg::DEVICE_ID => s.device_id,
            reg::VENDOR_ID => 0x554d_4551,
            reg::DEVICE_FEATURES => (s.offered >> (32 * s.dev_sel.min(1))) as u32 * u32::from(s.dev_sel < 2),
            reg::QUEUE_NUM_MAX => s.queue_num_max,
            reg::QUEUE_PFN => s.queue_pfn,
            reg::QUEUE_READY => s.queue_ready,
            reg::INTERRUPT_STATUS => s.interrupt_status,
            reg::STATUS => s.status,
            reg::CONFIG_GENERATION => s.config_generation,
            o if (reg::CONFIG..reg::CONFIG + 8).contains(&o) => cfg((s.disk.len() / 512) as u64, 0),
            o if o == reg::CONFIG + 8 => s.size_max,
            o if o == reg::CONFIG + 12 => s.seg_max,
            o if o == reg::CONFIG + 20 => s.blk_size,
            _ => 0,
        }
    }

    fn write(&self, offset: u32, value: u32) {
        self.writes.set(self.writes.get() + 1);
        let notify = {
            let mut return_notify = false;
            let mut s = self.state.borrow_mut();
            let set64 = |v: &mut u64, high: bool| {
                *v = if high { (*v & 0xffff_ffff) | (u64::from(value) << 32) } else { (*v & !0xffff_ffff) | u64::from(value) }
            };
            match offset {
                reg::DEVICE_FEATURES_SEL => s.dev_sel = value,
                reg::DRIVER_FEATURES_SEL => s.drv_sel = value,
                reg::DRIVER_FEATURES => {
                    let high = s.drv_sel == 1;
                    set64(&mut s.driver_features, high)
                }
                reg::GUEST_PAGE_SIZE => s.page_size = value,
                reg::QUEUE_NUM => s.queue_num = value,
                reg::QUEUE_ALIGN => s.queue_align = value,
                reg::QUEUE_PFN => s.queue_pfn = value,
                reg::QUEUE_READY => s.queue_ready = value,
                reg::QUEUE_DESC_LOW | reg::QUEUE_DESC_HIGH => set64(&mut s.desc, offset == reg::QUEUE_DESC_HIGH),
                reg::QUEUE_DRIVER_LOW | reg::QUEUE_DRIVER_HIGH => set64(&mut s.driver, offset == reg::QUEUE_DRIVER_HIGH),
                reg::QUEUE_DEVICE_LOW | reg::QUEUE_DEVICE_HIGH => set64(&mut s.device, offset == reg::QUEUE_DEVICE_HIGH),
                reg::INTERRUPT_ACK => s.interrupt_status &= !value,
                reg::STATUS => {
                    if value == 0 {
                        // Reset.
                        s.driver_features = 0;
                        s.queue_pfn = 0;
                        s.queue_ready = 0;
                        s.queue_num = 0;
                        s.last_avail = 0;
                        s.used_idx = 0;
                        s.interrupt_status = 0;
                    }
                    let accepted_ok = s.driver_features & !s.offered == 0 && !s.refuse_features;
                    s.status = if value & crate::regs::status::FEATURES_OK != 0 && !accepted_ok {
                        value & !crate::regs::status::FEATURES_OK
                    } else {
                        value
                    };
                }
                reg::QUEUE_NOTIFY => {
                    s.notifies += 1;
                    return_notify = true;
                }
                _ => {}
            }
            return_notify
        };
        if notify {
            self.process();
        }
    }
}

/// The interrupt line of a [`FakeBlk`]: pending while its interrupt status is non-zero.
pub struct FakeIrq {
    pub dev: Rc<FakeBlk>,
    pub waits: u32,
    pub timeouts: u32,
    pub rearms: u32,
}

impl FakeIrq {
    pub fn new(dev: &Rc<FakeBlk>) -> Self {
        Self { dev: dev.clone(), waits: 0, timeouts: 0, rearms: 0 }
    }
}

impl Interrupt for FakeIrq {
    fn wait(&mut self) -> Wait {
        self.waits += 1;
        if self.dev.state.borrow().fault == Fault::Deferred {
            self.dev.set_fault(Fault::None);
            self.dev.process();
            self.dev.set_fault(Fault::Deferred);
        }
        if self.dev.state.borrow().interrupt_status != 0 {
            Wait::Signalled
        } else {
            self.timeouts += 1;
            Wait::TimedOut
        }
    }
    fn rearm(&mut self) {
        self.rearms += 1;
    }
}
