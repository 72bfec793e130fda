//! One split virtqueue (virtio 1.2 §2.7) driven from the driver side: the layout of the
//! descriptor table, available ring and used ring in DMA memory, building descriptor chains from
//! a free list, publishing them, and consuming the used ring with wrap-around.
//!
//! Invariants: the free list and the chains in flight are kept in this struct (`next`,
//! `in_flight`), never read back from the descriptor table, so a device that scribbles over
//! the table cannot corrupt them. Everything the device writes (used index, used elements) is
//! checked before use: an element naming a descriptor that is not the head of a chain in
//! flight, a length longer than the chain's writable bytes, or a used index that claims more
//! completions than are outstanding is a [`UsedError`], never a panic or an out-of-range index.

use crate::dma::DmaMemory;
use alloc::vec;
use alloc::vec::Vec;

/// Bytes per descriptor.
const DESC_SIZE: usize = 16;
/// Descriptor flags.
const DESC_F_NEXT: u32 = 1;
const DESC_F_WRITE: u32 = 2;
/// Largest queue the spec allows.
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Where the three parts of a queue of `size` entries lie, relative to the queue's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    pub size: u16,
    pub desc: usize,
    pub avail: usize,
    pub used: usize,
    /// Bytes the whole queue takes, rounded up to `align`.
    pub total: usize,
}

impl QueueLayout {
    /// The legacy layout (§2.7 "Legacy Interfaces"): table, then available ring, then the used
    /// ring at the next multiple of `align`. A modern device accepts it too (it needs only 16-,
    /// 2- and 4-byte alignment). `size` must be a power of two; `align` a power of two ≥ 4.
    pub fn new(size: u16, align: usize) -> Option<Self> {
        if size == 0 || size > MAX_QUEUE_SIZE || !size.is_power_of_two() || !align.is_power_of_two() || align < 4 {
            return None;
        }
        let n = usize::from(size);
        let avail = DESC_SIZE * n;
        let avail_len = 6 + 2 * n;
        let used = (avail + avail_len).next_multiple_of(align);
        let used_len = 6 + 8 * n;
        Some(Self { size, desc: 0, avail, used, total: (used + used_len).next_multiple_of(align) })
    }
}

/// One buffer of a chain: a bus address range and who writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub addr: u64,
    pub len: u32,
    /// The device writes this buffer (else it only reads it).
    pub device_writes: bool,
}

/// Why a chain could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// No buffers given.
    Empty,
    /// Fewer free descriptors than buffers.
    Full,
}

/// A used-ring entry that breaks the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsedError {
    /// The used index moved further than the number of chains in flight.
    IndexJump { from: u16, to: u16, in_flight: u16 },
    /// The element names a descriptor that is no chain head in flight.
    NotInFlight { id: u32 },
    /// The device claims to have written more bytes than the chain's writable buffers hold.
    LengthTooLong { id: u16, len: u32, writable: u32 },
}

/// A chain the device returned: its head and the bytes the device says it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    pub head: u16,
    pub len: u32,
}

/// A chain the device holds.
#[derive(Clone, Copy, Debug, Default)]
struct Chain {
    /// Descriptors in the chain (0: this descriptor heads no chain in flight).
    count: u16,
    /// Bytes in its device-writable buffers.
    writable: u32,
}

/// The driver's side of one split virtqueue placed at `base` in a DMA region.
#[derive(Debug)]
pub struct SplitQueue {
    layout: QueueLayout,
    /// Offset of the queue in the DMA region.
    base: usize,
    /// Free descriptors, linked through `next`.
    free_head: u16,
    num_free: u16,
    /// Our copy of each descriptor's `next` link (free list and chains alike).
    next: Vec<u16>,
    /// Per head descriptor: the chain in flight it starts.
    in_flight: Vec<Chain>,
    chains_in_flight: u16,
    /// Our copy of the available ring (written to memory a whole 32-bit word at a time).
    avail_ring: Vec<u16>,
    avail_idx: u16,
    last_used: u16,
}

impl SplitQueue {
    /// An empty queue; zeroes its rings in `mem`.
    pub fn new(layout: QueueLayout, base: usize, mem: &impl DmaMemory) -> Self {
        let n = usize::from(layout.size);
        for off in (0..layout.total).step_by(4) {
            mem.write32(base + off, 0);
        }
        Self {
            layout,
            base,
            free_head: 0,
            num_free: layout.size,
            next: (1..=layout.size).map(|i| i % layout.size).collect(),
            in_flight: vec![Chain::default(); n],
            chains_in_flight: 0,
            avail_ring: vec![0; n.max(2)],
            avail_idx: 0,
            last_used: 0,
        }
    }

    pub fn layout(&self) -> QueueLayout {
        self.layout
    }

    /// Free descriptors.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Writes `buffers` as one chain and publishes it in the available ring; its head. The
    /// caller notifies the device afterwards (after `mem.barrier()`, which this does before
    /// publishing the new index).
    pub fn add(&mut self, buffers: &[Buffer], mem: &impl DmaMemory) -> Result<u16, AddError> {
        if buffers.is_empty() {
            return Err(AddError::Empty);
        }
        if buffers.len() > usize::from(self.num_free) {
            return Err(AddError::Full);
        }
        let head = self.free_head;
        let mut id = head;
        let mut writable = 0u32;
        for (i, b) in buffers.iter().enumerate() {
            let last = i + 1 == buffers.len();
            let next = self.next[usize::from(id)];
            let mut flags = if b.device_writes { DESC_F_WRITE } else { 0 };
            if !last {
                flags |= DESC_F_NEXT;
            }
            if b.device_writes {
                writable = writable.saturating_add(b.len);
            }
            let d = self.base + self.layout.desc + DESC_SIZE * usize::from(id);
            mem.write32(d, b.addr as u32);
            mem.write32(d + 4, (b.addr >> 32) as u32);
            mem.write32(d + 8, b.len);
            mem.write32(d + 12, flags | (u32::from(if last { 0 } else { next }) << 16));
            if !last {
                id = next;
            }
        }
        self.free_head = self.next[usize::from(id)];
        self.num_free -= buffers.len() as u16;
        self.in_flight[usize::from(head)] = Chain { count: buffers.len() as u16, writable };
        self.chains_in_flight += 1;

        let slot = usize::from(self.avail_idx % self.layout.size);
        self.avail_ring[slot] = head;
        let pair = slot & !1;
        let word = u32::from(self.avail_ring[pair]) | (u32::from(self.avail_ring[pair + 1]) << 16);
        mem.write32(self.base + self.layout.avail + 4 + 2 * pair, word);
        // The descriptors and ring entry must be visible before the index that publishes them.
        mem.barrier();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // flags = 0: we want an interrupt for every used buffer.
        mem.write32(self.base + self.layout.avail, u32::from(self.avail_idx) << 16);
        mem.barrier();
        Ok(head)
    }

    /// The device's current used index.
    fn used_idx(&self, mem: &impl DmaMemory) -> u16 {
        (mem.read32(self.base + self.layout.used) >> 16) as u16
    }

    /// Takes the next chain the device returned, if any, and frees its descriptors.
    pub fn pop_used(&mut self, mem: &impl DmaMemory) -> Result<Option<Used>, UsedError> {
        let idx = self.used_idx(mem);
        let pending = idx.wrapping_sub(self.last_used);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.chains_in_flight {
            return Err(UsedError::IndexJump { from: self.last_used, to: idx, in_flight: self.chains_in_flight });
        }
        // The element is read only after the index that says it is there.
        mem.barrier();
        let elem = self.base + self.layout.used + 4 + 8 * usize::from(self.last_used % self.layout.size);
        let id = mem.read32(elem);
        let len = mem.read32(elem + 4);
        let chain = match self.in_flight.get(id as usize) {
            Some(c) if c.count > 0 => *c,
            _ => return Err(UsedError::NotInFlight { id }),
        };
        let head = id as u16;
        if len > chain.writable {
            return Err(UsedError::LengthTooLong { id: head, len, writable: chain.writable });
        }
        self.last_used = self.last_used.wrapping_add(1);
        self.release(head, chain.count);
        Ok(Some(Used { head, len }))
    }

    /// Returns a chain's descriptors to the free list (following our own links).
    fn release(&mut self, head: u16, count: u16) {
        let mut tail = head;
        for _ in 1..count {
            tail = self.next[usize::from(tail)];
        }
        self.next[usize::from(tail)] = self.free_head;
        self.free_head = head;
        self.num_free += count;
        self.in_flight[usize::from(head)] = Chain::default();
        self.chains_in_flight -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeMemory;

    fn buf(addr: u64, len: u32, device_writes: bool) -> Buffer {
        Buffer { addr, len, device_writes }
    }

    /// Plays the device: takes the chain at available slot `n`, returns (head, descriptors).
    fn device_take(q: &SplitQueue, mem: &FakeMemory, n: u16) -> (u16, Vec<(u64, u32, u32)>) {
        let l = q.layout();
        let slot = usize::from(n % l.size);
        let word = mem.read32(l.avail + 4 + 2 * (slot & !1));
        let head = if slot & 1 == 0 { word as u16 } else { (word >> 16) as u16 };
        let mut out = Vec::new();
        let mut id = head;
        loop {
            let d = l.desc + 16 * usize::from(id);
            let addr = u64::from(mem.read32(d)) | (u64::from(mem.read32(d + 4)) << 32);
            let len = mem.read32(d + 8);
            let fl = mem.read32(d + 12);
            out.push((addr, len, fl & 0xffff));
            if fl & 1 == 0 {
                break;
            }
            id = (fl >> 16) as u16;
        }
        (head, out)
    }

    fn device_use(q: &SplitQueue, mem: &FakeMemory, used_idx: u16, id: u32, len: u32) {
        let l = q.layout();
        let e = l.used + 4 + 8 * usize::from(used_idx % l.size);
        mem.write32(e, id);
        mem.write32(e + 4, len);
        mem.write32(l.used, u32::from(used_idx.wrapping_add(1)) << 16);
    }

    #[test]
    fn layouts_follow_the_legacy_formula() {
        let l = QueueLayout::new(128, 4096).unwrap();
        assert_eq!((l.desc, l.avail, l.used, l.total), (0, 2048, 4096, 8192));
        let l = QueueLayout::new(256, 4096).unwrap();
        assert_eq!((l.avail, l.used, l.total), (4096, 8192, 12288));
        let l = QueueLayout::new(4, 4).unwrap();
        assert_eq!((l.avail, l.used, l.total), (64, 80, 120));
        assert_eq!(QueueLayout::new(0, 4096), None);
        assert_eq!(QueueLayout::new(96, 4096), None);
        assert_eq!(QueueLayout::new(64, 3), None);
    }

    #[test]
    fn a_chain_is_written_linked_and_published() {
        let mem = FakeMemory::new(0x4000_0000, 8192);
        let mut q = SplitQueue::new(QueueLayout::new(8, 4096).unwrap(), 0, &mem);
        let head = q.add(&[buf(0x1000, 16, false), buf(0x2000, 512, true), buf(0x3000, 1, true)], &mem).unwrap();
        assert_eq!(mem.read32(q.layout().avail) >> 16, 1, "avail idx");
        let (h, descs) = device_take(&q, &mem, 0);
        assert_eq!(h, head);
        assert_eq!(descs, vec![(0x1000, 16, 1), (0x2000, 512, 3), (0x3000, 1, 2)]);
        assert_eq!(q.num_free(), 5);
    }

    #[test]
    fn used_chains_free_their_descriptors_and_indices_wrap() {
        let mem = FakeMemory::new(0, 8192);
        let mut q = SplitQueue::new(QueueLayout::new(4, 16).unwrap(), 0, &mem);
        // 70000 requests: both 16-bit indices wrap, and every descriptor is reused many times.
        for n in 0..70_000u32 {
            let n16 = n as u16;
            let head = q.add(&[buf(0x10, 16, false), buf(0x20, 8, true)], &mem).unwrap();
            let (h, descs) = device_take(&q, &mem, n16);
            assert_eq!((h, descs.len()), (head, 2));
            assert_eq!(q.pop_used(&mem), Ok(None));
            device_use(&q, &mem, n16, u32::from(head), 8);
            assert_eq!(q.pop_used(&mem), Ok(Some(Used { head, len: 8 })));
            assert_eq!(q.num_free(), 4);
        }
    }

    #[test]
    fn several_chains_in_flight_complete_out_of_order() {
        let mem = FakeMemory::new(0, 8192);
        let mut q = SplitQueue::new(QueueLayout::new(8, 16).unwrap(), 0, &mem);
        let a = q.add(&[buf(1, 1, false), buf(2, 1, true)], &mem).unwrap();
        let b = q.add(&[buf(3, 1, false), buf(4, 1, false), buf(5, 1, true)], &mem).unwrap();
        let c = q.add(&[buf(6, 1, true)], &mem).unwrap();
        assert_eq!(q.num_free(), 2);
        assert_eq!(q.add(&[buf(7, 1, true), buf(8, 1, true), buf(9, 1, true)], &mem), Err(AddError::Full));
        assert_eq!(q.add(&[], &mem), Err(AddError::Empty));
        device_use(&q, &mem, 0, u32::from(b), 1);
        assert_eq!(q.pop_used(&mem).unwrap().map(|u| u.head), Some(b));
        device_use(&q, &mem, 1, u32::from(c), 0);
        device_use(&q, &mem, 2, u32::from(a), 1);
        assert_eq!(q.pop_used(&mem).unwrap().map(|u| u.head), Some(c));
        assert_eq!(q.pop_used(&mem).unwrap().map(|u| u.head), Some(a));
        assert_eq!(q.num_free(), 8);
        // Every descriptor is usable again: one chain of all eight.
        let all = [buf(0, 1, true); 8];
        let d = q.add(&all, &mem).unwrap();
        let (_, descs) = device_take(&q, &mem, 3);
        assert_eq!((descs.len(), q.num_free()), (8, 0));
        device_use(&q, &mem, 3, u32::from(d), 8);
        assert_eq!(q.pop_used(&mem).unwrap(), Some(Used { head: d, len: 8 }));
    }

    #[test]
    fn a_lying_device_gives_errors() {
        let mem = FakeMemory::new(0, 8192);
        let mut q = SplitQueue::new(QueueLayout::new(8, 16).unwrap(), 0, &mem);
        let head = q.add(&[buf(1, 16, false), buf(2, 512, true), buf(3, 1, true)], &mem).unwrap();
        // An id out of range, then one in range that is not a chain head in flight.
        device_use(&q, &mem, 0, 99, 1);
        assert_eq!(q.pop_used(&mem), Err(UsedError::NotInFlight { id: 99 }));
        device_use(&q, &mem, 0, u32::from(head) + 1, 1);
        assert_eq!(q.pop_used(&mem), Err(UsedError::NotInFlight { id: u32::from(head) + 1 }));
        // More bytes than the writable buffers hold.
        device_use(&q, &mem, 0, u32::from(head), 514);
        assert_eq!(q.pop_used(&mem), Err(UsedError::LengthTooLong { id: head, len: 514, writable: 513 }));
        // The index jumps past what is in flight.
        mem.write32(q.layout().used, 5 << 16);
        assert_eq!(q.pop_used(&mem), Err(UsedError::IndexJump { from: 0, to: 5, in_flight: 1 }));
        // The queue state is untouched by the bad entries: a correct completion still works.
        device_use(&q, &mem, 0, u32::from(head), 513);
        assert_eq!(q.pop_used(&mem), Ok(Some(Used { head, len: 513 })));
        // And a repeat of the same element (index moved again) is refused.
        device_use(&q, &mem, 1, u32::from(head), 1);
        assert!(q.pop_used(&mem).is_err());
    }
}
