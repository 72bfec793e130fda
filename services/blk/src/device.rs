//! One virtio-blk device on a virtio-mmio transport: probing a slot, the initialisation sequence
//! for both transport versions (virtio 1.2 §3.1.1, §4.2.3, and the legacy §4.2.4), and
//! synchronous requests (one in flight) that complete by interrupt.
//!
//! It reaches the device only through [`Registers`], [`DmaMemory`] and [`Interrupt`], so the
//! same code runs against the fake device on the host. Invariants: a request's buffers belong to
//! the device from notify until its chain comes back in the used ring; when the device breaks
//! the protocol (a bad used entry, no completion within the timeout, DEVICE_NEEDS_RESET) the
//! buffers may still be in its hands, so the device is marked broken and every later request
//! fails with EIO instead of reusing them.

use crate::dma::DmaMemory;
use crate::features::{self, FeatureError, Features, bit};
use crate::regs::{DEVICE_ID_BLOCK, MAGIC_VALUE, Registers, TransportVersion, blk_config, interrupt, reg, status};
use crate::request::{self, DATA_MAX, RequestType, SECTOR, dma_layout};
use crate::virtqueue::{Buffer, QueueLayout, SplitQueue, UsedError};
use alloc::vec::Vec;
use core::fmt;
use keel_rt::errno::Errno;

/// The largest queue the driver sets up (one request is in flight at a time, so a few
/// descriptors would do; this leaves room for devices with small `size_max`).
pub const QUEUE_SIZE_MAX: u16 = 128;
/// Smallest usable queue: header, one data segment, status (rounded up to a power of two).
const QUEUE_SIZE_MIN: u16 = 4;
/// The page size told to a legacy device, and the used ring's alignment.
const PAGE: usize = 4096;
/// Interrupt waits that may time out in a row before the device is given up.
pub const MAX_TIMEOUTS: u32 = 10;
/// Reads of the status register while waiting for a modern device to finish its reset.
const RESET_POLLS: u32 = 1000;
/// Attempts at a consistent read of the configuration space.
const CONFIG_ATTEMPTS: u32 = 16;

/// What a transport slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// No virtio magic: not a virtio-mmio transport.
    NotVirtio,
    /// A transport version this driver does not know.
    UnknownVersion(u32),
    /// A transport with no device behind it (QEMU's unused slots).
    Empty,
    /// Some other kind of virtio device.
    Other(u32),
    Block(TransportVersion),
}

/// Looks at a slot's identification registers (no side effects).
pub fn probe(regs: &impl Registers) -> Probe {
    if regs.read(reg::MAGIC) != MAGIC_VALUE {
        return Probe::NotVirtio;
    }
    let version = match regs.read(reg::VERSION) {
        1 => TransportVersion::Legacy,
        2 => TransportVersion::Modern,
        v => return Probe::UnknownVersion(v),
    };
    match regs.read(reg::DEVICE_ID) {
        0 => Probe::Empty,
        DEVICE_ID_BLOCK => Probe::Block(version),
        id => Probe::Other(id),
    }
}

/// The block devices among `slots` transport slots, highest slot first (QEMU fills slots from
/// the top, so this is command-line order: the first `-device` becomes blk0).
pub fn scan<R: Registers>(slots: u32, regs_of: impl Fn(u32) -> R) -> Vec<(u32, TransportVersion)> {
    (0..slots)
        .rev()
        .filter_map(|n| match probe(&regs_of(n)) {
            Probe::Block(v) => Some((n, v)),
            _ => None,
        })
        .collect()
}

/// Why a device could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    NotBlock(Probe),
    /// A modern device still reports a non-zero status after being reset.
    ResetStuck,
    Features(FeatureError),
    /// A modern device cleared FEATURES_OK: it refuses the features we accepted.
    FeaturesRefused,
    /// Queue 0 does not exist (QueueNumMax is 0).
    NoQueue,
    /// Queue 0 is already set up (the device was not reset properly).
    QueueInUse,
    /// QueueNumMax leaves no power of two ≥ 4.
    QueueTooSmall(u32),
    /// The DMA region is too small or, for a legacy device, above what QueuePFN can name.
    BadDmaRegion,
    /// `size_max` is smaller than a sector.
    SegmentTooSmall(u32),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::NotBlock(p) => write!(f, "not a virtio-blk device ({p:?})"),
            Self::ResetStuck => f.write_str("device does not finish its reset"),
            Self::Features(FeatureError::NoVersion1) => f.write_str("modern transport without VERSION_1"),
            Self::FeaturesRefused => f.write_str("device refused the accepted features (FEATURES_OK cleared)"),
            Self::NoQueue => f.write_str("queue 0 not available"),
            Self::QueueInUse => f.write_str("queue 0 already in use"),
            Self::QueueTooSmall(n) => write!(f, "queue 0 holds only {n} entries"),
            Self::BadDmaRegion => f.write_str("DMA region too small or not addressable by the device"),
            Self::SegmentTooSmall(n) => write!(f, "size_max {n} is below one sector"),
        }
    }
}

/// How a request's data is cut into descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes in one data descriptor (a multiple of [`SECTOR`]).
    pub segment_bytes: usize,
    /// Most data descriptors in one request.
    pub segments: usize,
}

impl Limits {
    /// From the negotiated `size_max` / `seg_max` (None: not offered) and the queue size (two
    /// descriptors of every chain are the header and the status).
    pub fn new(size_max: Option<u32>, seg_max: Option<u32>, queue_size: u16) -> Result<Self, InitError> {
        let segment_bytes = match size_max {
            Some(s) if (s as usize) < SECTOR => return Err(InitError::SegmentTooSmall(s)),
            Some(s) => (s as usize).min(DATA_MAX) / SECTOR * SECTOR,
            None => DATA_MAX,
        };
        let by_queue = usize::from(queue_size).saturating_sub(2).max(1);
        let segments = seg_max.map_or(by_queue, |s| (s as usize).clamp(1, by_queue));
        Ok(Self { segment_bytes, segments })
    }

    /// Most data bytes in one device request.
    pub fn request_bytes(self) -> usize {
        self.segment_bytes.saturating_mul(self.segments).min(DATA_MAX)
    }
}

/// What the driver learnt about a device during setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub version: TransportVersion,
    pub features: Features,
    /// Disk size in 512-byte sectors.
    pub capacity: u64,
    pub read_only: bool,
    /// The device takes FLUSH requests (it may cache writes).
    pub flush: bool,
    /// The logical block size, if the device reports one.
    pub block_size: Option<u32>,
    pub queue_size: u16,
    pub limits: Limits,
}

/// The outcome of waiting for the device's interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Signalled,
    TimedOut,
}

/// The device's interrupt line as the driver sees it.
pub trait Interrupt {
    /// Waits (with a timeout) for the interrupt.
    fn wait(&mut self) -> Wait;
    /// Re-enables the line after the device's interrupt status was acknowledged.
    fn rearm(&mut self);
}

/// Why the device is no longer used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    Used(UsedError),
    NoCompletion,
    NeedsReset,
    /// The queue had no room for a chain although nothing was in flight.
    QueueFull,
}

/// A set-up virtio-blk device.
pub struct BlkDevice<R, M> {
    regs: R,
    mem: M,
    queue: SplitQueue,
    info: DeviceInfo,
    broken: Option<Broken>,
}

impl<R: Registers, M: DmaMemory> BlkDevice<R, M> {
    /// Resets and sets up the device behind `regs` with its queue and buffers in `mem` (which
    /// must hold [`dma_layout::TOTAL`] bytes); the device is live (DRIVER_OK) on success, and
    /// marked FAILED on an error after the reset.
    pub fn init(regs: R, mem: M) -> Result<Self, InitError> {
        let version = match probe(&regs) {
            Probe::Block(v) => v,
            other => return Err(InitError::NotBlock(other)),
        };
        if mem.size() < dma_layout::TOTAL {
            return Err(InitError::BadDmaRegion);
        }
        regs.write(reg::STATUS, 0);
        if version == TransportVersion::Modern && !(0..RESET_POLLS).any(|_| regs.read(reg::STATUS) == 0) {
            return Err(InitError::ResetStuck);
        }
        let mut dev_status = status::ACKNOWLEDGE;
        regs.write(reg::STATUS, dev_status);
        dev_status |= status::DRIVER;
        regs.write(reg::STATUS, dev_status);
        match Self::setup(&regs, &mem, version, dev_status) {
            Ok((queue, info)) => Ok(Self { regs, mem, queue, info, broken: None }),
            Err(e) => {
                regs.write(reg::STATUS, regs.read(reg::STATUS) | status::FAILED);
                Err(e)
            }
        }
    }

    fn setup(regs: &R, mem: &M, version: TransportVersion, mut dev_status: u32) -> Result<(SplitQueue, DeviceInfo), InitError> {
        let modern = version == TransportVersion::Modern;
        // Features.
        let offered = crate::regs::offered_features(regs, modern);
        let features = features::negotiate(offered, version).map_err(InitError::Features)?;
        dev_status = crate::regs::accept_features(regs, modern, features.0, dev_status, PAGE as u32).ok_or(InitError::FeaturesRefused)?;

        // Queue 0.
        regs.write(reg::QUEUE_SEL, 0);
        let in_use = if modern { regs.read(reg::QUEUE_READY) != 0 } else { regs.read(reg::QUEUE_PFN) != 0 };
        if in_use {
            return Err(InitError::QueueInUse);
        }
        let max = regs.read(reg::QUEUE_NUM_MAX);
        if max == 0 {
            return Err(InitError::NoQueue);
        }
        let fit = max.min(u32::from(QUEUE_SIZE_MAX));
        let size = 1u16 << (31 - fit.leading_zeros());
        if size < QUEUE_SIZE_MIN {
            return Err(InitError::QueueTooSmall(max));
        }
        let layout = QueueLayout::new(size, PAGE).ok_or(InitError::QueueTooSmall(max))?;
        let queue_bus = mem.bus_address() + dma_layout::QUEUE as u64;
        if modern {
            regs.write(reg::QUEUE_NUM, u32::from(size));
            let parts = [
                (reg::QUEUE_DESC_LOW, layout.desc),
                (reg::QUEUE_DRIVER_LOW, layout.avail),
                (reg::QUEUE_DEVICE_LOW, layout.used),
            ];
            for (low, off) in parts {
                let addr = queue_bus + off as u64;
                regs.write(low, addr as u32);
                regs.write(low + 4, (addr >> 32) as u32);
            }
        } else {
            let pfn = u32::try_from(queue_bus / PAGE as u64).map_err(|_| InitError::BadDmaRegion)?;
            if !queue_bus.is_multiple_of(PAGE as u64) {
                return Err(InitError::BadDmaRegion);
            }
            regs.write(reg::QUEUE_NUM, u32::from(size));
            regs.write(reg::QUEUE_ALIGN, PAGE as u32);
            // The rings must be zeroed before the device learns where they are.
            let queue = SplitQueue::new(layout, dma_layout::QUEUE, mem);
            mem.barrier();
            regs.write(reg::QUEUE_PFN, pfn);
            return Self::finish(regs, queue, version, features, dev_status);
        }
        let queue = SplitQueue::new(layout, dma_layout::QUEUE, mem);
        mem.barrier();
        regs.write(reg::QUEUE_READY, 1);
        Self::finish(regs, queue, version, features, dev_status)
    }

    /// Reads the configuration and sets DRIVER_OK.
    fn finish(
        regs: &R,
        queue: SplitQueue,
        version: TransportVersion,
        features: Features,
        dev_status: u32,
    ) -> Result<(SplitQueue, DeviceInfo), InitError> {
        let (capacity, size_max, seg_max, block_size) = read_config(regs, version, features);
        let queue_size = queue.layout().size;
        let limits = Limits::new(size_max, seg_max, queue_size)?;
        regs.write(reg::STATUS, dev_status | status::DRIVER_OK);
        let info = DeviceInfo {
            version,
            features,
            capacity,
            read_only: features.has(bit::BLK_RO),
            flush: features.has(bit::BLK_FLUSH),
            block_size,
            queue_size,
            limits,
        };
        Ok((queue, info))
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Why the device was given up, if it was.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// Checks that `bytes` at `sector` are whole sectors inside the disk.
    fn check_range(&self, sector: u64, bytes: usize) -> Result<(), Errno> {
        if bytes == 0 || !bytes.is_multiple_of(SECTOR) {
            return Err(Errno::Inval);
        }
        let end = sector.checked_add((bytes / SECTOR) as u64).ok_or(Errno::Inval)?;
        if end > self.info.capacity { Err(Errno::Inval) } else { Ok(()) }
    }

    /// Reads `out.len()` bytes (whole sectors) from `sector` on.
    pub fn read(&mut self, sector: u64, out: &mut [u8], irq: &mut impl Interrupt) -> Result<(), Errno> {
        self.check_range(sector, out.len())?;
        let step = self.info.limits.request_bytes();
        for (i, chunk) in out.chunks_mut(step).enumerate() {
            let at = sector + (i * step / SECTOR) as u64;
            self.transfer(RequestType::In, at, chunk.len(), irq)?;
            self.mem.read_bytes(dma_layout::DATA, chunk)?;
        }
        Ok(())
    }

    /// Writes `data` (whole sectors) from `sector` on.
    pub fn write(&mut self, sector: u64, data: &[u8], irq: &mut impl Interrupt) -> Result<(), Errno> {
        self.check_range(sector, data.len())?;
        if self.info.read_only {
            return Err(Errno::RoFs);
        }
        let step = self.info.limits.request_bytes();
        for (i, chunk) in data.chunks(step).enumerate() {
            let at = sector + (i * step / SECTOR) as u64;
            self.mem.write_bytes(dma_layout::DATA, chunk)?;
            self.transfer(RequestType::Out, at, chunk.len(), irq)?;
        }
        Ok(())
    }

    /// Makes every completed write durable (nothing to do for a write-through device).
    pub fn flush(&mut self, irq: &mut impl Interrupt) -> Result<(), Errno> {
        if !self.info.flush {
            return if self.broken.is_some() { Err(Errno::Io) } else { Ok(()) };
        }
        self.transfer(RequestType::Flush, 0, 0, irq)
    }

    /// Sends one request with `len` bytes of data in the data buffer and waits for it.
    fn transfer(&mut self, kind: RequestType, sector: u64, len: usize, irq: &mut impl Interrupt) -> Result<(), Errno> {
        if self.broken.is_some() {
            return Err(Errno::Io);
        }
        debug_assert!(len <= self.info.limits.request_bytes());
        for (i, w) in request::header_words(kind, sector).into_iter().enumerate() {
            self.mem.write32(dma_layout::HEADER + 4 * i, w);
        }
        self.mem.write32(dma_layout::STATUS, u32::from(request::STATUS_UNWRITTEN));
        let bus = self.mem.bus_address();
        let mut chain: Vec<Buffer> = Vec::with_capacity(2 + self.info.limits.segments);
        chain.push(Buffer { addr: bus + dma_layout::HEADER as u64, len: 16, device_writes: false });
        let seg = self.info.limits.segment_bytes;
        for start in (0..len).step_by(seg) {
            let n = seg.min(len - start);
            let addr = bus + (dma_layout::DATA + start) as u64;
            chain.push(Buffer { addr, len: n as u32, device_writes: kind == RequestType::In });
        }
        chain.push(Buffer { addr: bus + dma_layout::STATUS as u64, len: 1, device_writes: true });
        let head = match self.queue.add(&chain, &self.mem) {
            Ok(h) => h,
            Err(_) => return Err(self.give_up(Broken::QueueFull)),
        };
        self.regs.write(reg::QUEUE_NOTIFY, 0);

        let mut timeouts = 0;
        let used = loop {
            match self.queue.pop_used(&self.mem) {
                Ok(Some(u)) if u.head == head => break u,
                // Only one chain is ever in flight, and pop_used accepts only chains in flight.
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return Err(self.give_up(Broken::Used(e))),
            }
            if irq.wait() == Wait::TimedOut {
                timeouts += 1;
                if timeouts >= MAX_TIMEOUTS {
                    return Err(self.give_up(Broken::NoCompletion));
                }
            }
            let pending = self.regs.read(reg::INTERRUPT_STATUS);
            if pending != 0 {
                self.regs.write(reg::INTERRUPT_ACK, pending);
            }
            irq.rearm();
            if pending & interrupt::CONFIG_CHANGE != 0 && self.regs.read(reg::STATUS) & status::DEVICE_NEEDS_RESET != 0 {
                return Err(self.give_up(Broken::NeedsReset));
            }
        };
        request::status_result(self.mem.read32(dma_layout::STATUS) as u8)?;
        // A read must have filled the whole buffer and the status byte.
        if kind == RequestType::In && (used.len as usize) < len + 1 {
            return Err(Errno::Io);
        }
        Ok(())
    }

    fn give_up(&mut self, why: Broken) -> Errno {
        self.broken = Some(why);
        Errno::Io
    }
}

/// Reads (capacity, size_max, seg_max, blk_size) from the configuration space, retrying until
/// a read is consistent (the generation counter on a modern device; the capacity's high word
/// on a legacy one, which has no counter).
fn read_config(regs: &impl Registers, version: TransportVersion, f: Features) -> (u64, Option<u32>, Option<u32>, Option<u32>) {
    let cfg = |off: u32| regs.read(reg::CONFIG + off);
    let opt = |b: u32, off: u32| f.has(b).then(|| cfg(off));
    let mut last = (0, None, None, None);
    for _ in 0..CONFIG_ATTEMPTS {
        let gen_before = (version == TransportVersion::Modern).then(|| regs.read(reg::CONFIG_GENERATION));
        let high = cfg(blk_config::CAPACITY + 4);
        let low = cfg(blk_config::CAPACITY);
        let values = (
            (u64::from(high) << 32) | u64::from(low),
            opt(bit::BLK_SIZE_MAX, blk_config::SIZE_MAX),
            opt(bit::BLK_SEG_MAX, blk_config::SEG_MAX),
            opt(bit::BLK_BLK_SIZE, blk_config::BLK_SIZE),
        );
        let stable = match gen_before {
            Some(g) => regs.read(reg::CONFIG_GENERATION) == g,
            None => cfg(blk_config::CAPACITY + 4) == high,
        };
        last = values;
        if stable {
            break;
        }
    }
    last
}
