//! Split virtqueues (virtio 1.2, section 2.7), device side.
//!
//! The driver (the guest) owns three areas of its RAM: the descriptor table (16 bytes per
//! descriptor: address, length, flags, next), the available ring (flags, index, then one head
//! index per slot, then `used_event`) and the used ring (flags, index, one {id, len} pair per
//! slot, then `avail_event`). [`Queue::pop`] takes the next available descriptor chain, checked
//! whole before the backend sees it; [`Queue::add_used`] returns a chain with the bytes written
//! into it; [`Queue::needs_interrupt`] says whether the driver asked to be interrupted for it.
//!
//! Everything read from the rings is untrusted: an index that jumps, a head or `next` beyond the
//! table, a chain that loops or is longer than the queue, an indirect table that is empty, huge,
//! nested or not negotiated, a buffer outside guest RAM, a readable buffer after a writable one,
//! or buffers adding up to more than 4 GiB, is a [`QueueError`] (the transport then marks the
//! device as needing a reset).

use crate::mem::{GuestMemory, MemError};
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{Ordering, fence};

/// The largest queue size virtio allows.
pub const MAX_SIZE: u16 = 32768;
/// The most descriptors an indirect table may hold here (QEMU's limit on a request's buffers).
pub const MAX_INDIRECT: u32 = 1024;

/// Descriptor flags.
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;
/// Available ring flag: the driver needs no interrupt (without `EVENT_IDX`).
const AVAIL_F_NO_INTERRUPT: u16 = 1;
const DESC_SIZE: u64 = 16;

/// Why a queue cannot be used any more (until the driver resets the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is not enabled (QueueReady 0) or not configured.
    NotReady,
    /// The configuration the driver wrote is unusable (size, alignment, or a ring outside RAM).
    BadConfig(&'static str),
    /// A ring, table or buffer access fell outside guest RAM.
    Memory(MemError),
    /// The available index moved by more than the queue size.
    AvailIndexJump {
        /// The index the driver published.
        avail: u16,
        /// The next one the device expected to take.
        next: u16,
    },
    /// A chain's head is not a descriptor of the table.
    HeadOutOfRange(u16),
    /// A descriptor's `next` is not a descriptor of its table.
    NextOutOfRange(u16),
    /// The chain is longer than its table allows (or loops).
    ChainTooLong,
    /// An indirect descriptor although `VIRTIO_F_INDIRECT_DESC` was not negotiated.
    IndirectNotNegotiated,
    /// An indirect descriptor that is not the chain's only one, has `NEXT` set, or sits in an
    /// indirect table.
    MisplacedIndirect,
    /// An indirect table whose length is 0, not a multiple of 16 or above [`MAX_INDIRECT`]
    /// descriptors.
    BadIndirectLength(u32),
    /// A device-readable buffer after a device-writable one.
    ReadableAfterWritable,
    /// The chain's buffers add up to more than `u32::MAX` bytes.
    TooLarge,
}

impl From<MemError> for QueueError {
    fn from(e: MemError) -> Self {
        QueueError::Memory(e)
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReady => f.write_str("the queue is not ready"),
            Self::BadConfig(why) => write!(f, "unusable queue configuration: {why}"),
            Self::Memory(e) => write!(f, "{e}"),
            Self::AvailIndexJump { avail, next } => write!(f, "available index {avail} is more than a queue ahead of {next}"),
            Self::HeadOutOfRange(h) => write!(f, "chain head {h} is beyond the descriptor table"),
            Self::NextOutOfRange(n) => write!(f, "descriptor next {n} is beyond its table"),
            Self::ChainTooLong => f.write_str("descriptor chain longer than its table (a loop?)"),
            Self::IndirectNotNegotiated => f.write_str("indirect descriptor without VIRTIO_F_INDIRECT_DESC"),
            Self::MisplacedIndirect => f.write_str("indirect descriptor that is not a chain's only one"),
            Self::BadIndirectLength(l) => write!(f, "indirect table of {l} bytes"),
            Self::ReadableAfterWritable => f.write_str("device-readable buffer after a device-writable one"),
            Self::TooLarge => f.write_str("buffers add up to more than 4 GiB"),
        }
    }
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Guest physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// The device writes it (the driver reads it back); otherwise the device reads it.
    pub writable: bool,
}

/// A descriptor chain taken from the available ring: the device-readable buffers, then the
/// device-writable ones, each checked to lie in guest RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The head index, which the used ring gives back.
    pub head: u16,
    /// The buffers in chain order.
    pub descriptors: Vec<Descriptor>,
}

impl Chain {
    /// Bytes the device may read.
    pub fn readable_len(&self) -> u64 {
        self.descriptors.iter().filter(|d| !d.writable).map(|d| u64::from(d.len)).sum()
    }

    /// Bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        self.descriptors.iter().filter(|d| d.writable).map(|d| u64::from(d.len)).sum()
    }

    /// Copies the readable bytes from `offset` on into `out`; how many there were (fewer than
    /// `out.len()` at the end of the readable part).
    pub fn read_at(&self, mem: &impl GuestMemory, offset: u64, out: &mut [u8]) -> Result<usize, MemError> {
        let mut done = 0;
        for (addr, skip, n) in pieces(self.descriptors.iter().filter(|d| !d.writable), offset, out.len()) {
            mem.read(addr + skip, &mut out[done..done + n])?;
            done += n;
        }
        Ok(done)
    }

    /// Copies `data` into the writable bytes from `offset` on; how many fitted.
    pub fn write_at(&self, mem: &mut impl GuestMemory, offset: u64, data: &[u8]) -> Result<usize, MemError> {
        let mut done = 0;
        for (addr, skip, n) in pieces(self.descriptors.iter().filter(|d| d.writable), offset, data.len()) {
            mem.write(addr + skip, &data[done..done + n])?;
            done += n;
        }
        Ok(done)
    }
}

/// The (buffer address, offset into it, bytes) pieces covering `len` bytes from `offset` of the
/// concatenated `buffers`.
fn pieces<'a>(buffers: impl Iterator<Item = &'a Descriptor>, offset: u64, len: usize) -> impl Iterator<Item = (u64, u64, usize)> {
    let (mut skip, mut left) = (offset, len);
    buffers.filter_map(move |d| {
        let dlen = u64::from(d.len);
        if left == 0 || skip >= dlen {
            skip = skip.saturating_sub(dlen);
            return None;
        }
        let n = ((dlen - skip) as usize).min(left);
        let piece = (d.addr, skip, n);
        skip = 0;
        left -= n;
        Some(piece)
    })
}

/// One split virtqueue as the device keeps it.
#[derive(Clone, Debug)]
pub struct Queue {
    /// The largest size the device accepts (QueueNumMax).
    pub max_size: u16,
    /// The size the driver chose (QueueNum).
    pub size: u16,
    /// Guest addresses of the descriptor table, the available ring and the used ring.
    pub desc: u64,
    /// See `desc`.
    pub avail: u64,
    /// See `desc`.
    pub used: u64,
    ready: bool,
    event_idx: bool,
    indirect: bool,
    next_avail: u16,
    next_used: u16,
    /// The used index at the last interrupt the driver asked for (`EVENT_IDX`).
    signalled_used: Option<u16>,
}

impl Queue {
    /// A queue of at most `max_size` entries, not configured.
    pub fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            desc: 0,
            avail: 0,
            used: 0,
            ready: false,
            event_idx: false,
            indirect: false,
            next_avail: 0,
            next_used: 0,
            signalled_used: None,
        }
    }

    /// Back to the state after [`Queue::new`] (a device reset).
    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// Whether the queue is enabled.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Enables the queue as configured, with the negotiated `features`; refuses a
    /// configuration that cannot work: a size that is 0, not a power of two or above
    /// `max_size`, misaligned areas, or areas outside guest RAM.
    pub fn enable(&mut self, mem: &impl GuestMemory, features: u64) -> Result<(), QueueError> {
        let n = u64::from(self.size);
        if self.size == 0 || !self.size.is_power_of_two() || self.size > self.max_size || self.size > MAX_SIZE {
            return Err(QueueError::BadConfig("size"));
        }
        if !self.desc.is_multiple_of(16) || !self.avail.is_multiple_of(2) || !self.used.is_multiple_of(4) {
            return Err(QueueError::BadConfig("alignment"));
        }
        if !mem.contains(self.desc, n * DESC_SIZE) || !mem.contains(self.avail, 6 + 2 * n) || !mem.contains(self.used, 6 + 8 * n) {
            return Err(QueueError::BadConfig("ring outside guest RAM"));
        }
        self.event_idx = features & crate::features::EVENT_IDX != 0;
        self.indirect = features & crate::features::INDIRECT_DESC != 0;
        self.next_avail = 0;
        self.next_used = 0;
        self.signalled_used = None;
        self.ready = true;
        Ok(())
    }

    /// Whether the driver has made chains available that [`Queue::pop`] has not taken.
    pub fn pending(&self, mem: &impl GuestMemory) -> Result<bool, QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        Ok(mem.read_u16(self.avail + 2)? != self.next_avail)
    }

    /// The next available chain, or `None` when the driver has made none available.
    pub fn pop(&mut self, mem: &mut impl GuestMemory) -> Result<Option<Chain>, QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        let avail = mem.read_u16(self.avail + 2)?;
        let pending = avail.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(QueueError::AvailIndexJump { avail, next: self.next_avail });
        }
        // The ring entry and the descriptors were written before the index.
        fence(Ordering::Acquire);
        let slot = u64::from(self.next_avail & (self.size - 1));
        let head = mem.read_u16(self.avail + 4 + 2 * slot)?;
        let chain = self.walk(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        if self.event_idx {
            // avail_event: notify the device again as soon as anything new is available.
            mem.write_u16(self.used + 4 + 8 * u64::from(self.size), self.next_avail)?;
        }
        Ok(Some(chain))
    }

    /// Reads and checks the chain starting at descriptor `head`.
    fn walk(&self, mem: &impl GuestMemory, head: u16) -> Result<Chain, QueueError> {
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange(head));
        }
        let mut descriptors = Vec::new();
        let (mut table, mut count, mut index) = (self.desc, u32::from(self.size), head);
        // Descriptors left before the chain is longer than its table.
        let mut budget = count;
        let mut in_indirect = false;
        let mut total = 0u64;
        loop {
            if budget == 0 {
                return Err(QueueError::ChainTooLong);
            }
            budget -= 1;
            let at = table + DESC_SIZE * u64::from(index);
            let (addr, len, flags, next) = (mem.read_u64(at)?, mem.read_u32(at + 8)?, mem.read_u16(at + 12)?, mem.read_u16(at + 14)?);
            if flags & F_INDIRECT != 0 {
                if !self.indirect {
                    return Err(QueueError::IndirectNotNegotiated);
                }
                if in_indirect || !descriptors.is_empty() || flags & F_NEXT != 0 {
                    return Err(QueueError::MisplacedIndirect);
                }
                if len == 0 || len % DESC_SIZE as u32 != 0 || len / DESC_SIZE as u32 > MAX_INDIRECT {
                    return Err(QueueError::BadIndirectLength(len));
                }
                if !mem.contains(addr, u64::from(len)) {
                    return Err(QueueError::Memory(MemError { addr, len: u64::from(len) }));
                }
                (table, count, index, budget, in_indirect) = (addr, len / DESC_SIZE as u32, 0, len / DESC_SIZE as u32, true);
                continue;
            }
            let writable = flags & F_WRITE != 0;
            if !writable && descriptors.last().is_some_and(|d: &Descriptor| d.writable) {
                return Err(QueueError::ReadableAfterWritable);
            }
            total += u64::from(len);
            if total > u64::from(u32::MAX) {
                return Err(QueueError::TooLarge);
            }
            if !mem.contains(addr, u64::from(len)) {
                return Err(QueueError::Memory(MemError { addr, len: u64::from(len) }));
            }
            descriptors.push(Descriptor { addr, len, writable });
            if flags & F_NEXT == 0 {
                return Ok(Chain { head, descriptors });
            }
            if u32::from(next) >= count {
                return Err(QueueError::NextOutOfRange(next));
            }
            index = next;
        }
    }

    /// Returns the chain with head `head` to the driver, `len` bytes written into it.
    pub fn add_used(&mut self, mem: &mut impl GuestMemory, head: u16, len: u32) -> Result<(), QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        let slot = u64::from(self.next_used & (self.size - 1));
        let entry = self.used + 4 + 8 * slot;
        mem.write_u32(entry, u32::from(head))?;
        mem.write_u32(entry + 4, len)?;
        self.next_used = self.next_used.wrapping_add(1);
        // The entry is visible before the index that publishes it.
        fence(Ordering::Release);
        mem.write_u16(self.used + 2, self.next_used)?;
        Ok(())
    }

    /// Whether the driver wants an interrupt for the chains used since the last one it got:
    /// with `EVENT_IDX`, when the used index passed its `used_event`; otherwise unless it set
    /// `NO_INTERRUPT` in the available ring's flags.
    pub fn needs_interrupt(&mut self, mem: &impl GuestMemory) -> Result<bool, QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        // The used index is written before the driver's wishes are read.
        fence(Ordering::SeqCst);
        if !self.event_idx {
            return Ok(mem.read_u16(self.avail)? & AVAIL_F_NO_INTERRUPT == 0);
        }
        let used_event = mem.read_u16(self.avail + 4 + 2 * u64::from(self.size))?;
        let new = self.next_used;
        let need = match self.signalled_used.replace(new) {
            None => true,
            // vring_need_event: did `new` pass `used_event` since `old`?
            Some(old) => new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old),
        };
        Ok(need)
    }
}
