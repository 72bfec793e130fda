//! One virtio-net device on a virtio-mmio transport (virtio 1.2 §5.1; legacy and modern
//! transports): its two queues (0 receive, 1 transmit), fixed buffers of [`BUFFER`] bytes in one
//! DMA region, and frames in and out with the `virtio_net_hdr` added and stripped. Only the MAC
//! feature is taken (and VERSION_1 on a modern transport): no offloads, no mergeable buffers, so
//! every frame fits one buffer. What the device writes is checked: a used entry that breaks the
//! ring protocol, or a length that does not fit the buffer, marks the device broken.

use alloc::vec::Vec;
use keel_blk::dma::DmaMemory;
use keel_blk::regs::{MAGIC_VALUE, Registers, TransportVersion, accept_features, interrupt, offered_features, reg, status};
use keel_blk::virtqueue::{Buffer, QueueLayout, SplitQueue, UsedError};

/// Virtio device ID of a network card.
pub const DEVICE_ID_NET: u32 = 1;
/// Most entries per queue this driver uses (as many buffers each way).
pub const QUEUE_SIZE_MAX: u16 = 64;
/// Bytes per buffer: a header and the longest frame fit.
pub const BUFFER: usize = 2048;
/// The shortest and longest frames passed on: the switch's.
pub use keel_rt::proto::net::{MAX_FRAME, MIN_FRAME};
const PAGE: usize = 4096;
const RESET_POLLS: u32 = 1000;
const RECEIVE: u32 = 0;
const TRANSMIT: u32 = 1;
const F_MAC: u64 = 1 << 5;
const F_VERSION_1: u64 = 1 << 32;

/// Where things are in the DMA region.
pub mod dma_layout {
    use super::{BUFFER, QUEUE_SIZE_MAX};
    /// Each queue's rings (a legacy layout of 64 entries takes two pages).
    pub const QUEUE_BYTES: usize = 8192;
    pub const RX_QUEUE: usize = 0;
    pub const TX_QUEUE: usize = QUEUE_BYTES;
    pub const RX_BUFFERS: usize = 2 * QUEUE_BYTES;
    pub const TX_BUFFERS: usize = RX_BUFFERS + QUEUE_SIZE_MAX as usize * BUFFER;
    pub const TOTAL: usize = TX_BUFFERS + QUEUE_SIZE_MAX as usize * BUFFER;
}

/// Why a device could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    NotNet,
    ResetStuck,
    /// A modern transport whose device does not offer VERSION_1.
    NoVersion1,
    FeaturesRefused,
    /// A queue that is missing, already live, or too small.
    BadQueue(u32),
    BadDmaRegion,
}

/// Why the device is no longer used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    Used(UsedError),
    /// A used entry for a buffer not in the device's hands, or longer than it.
    BadBuffer,
    NeedsReset,
}

/// A set-up virtio-net device.
pub struct NetDevice<R, M> {
    regs: R,
    mem: M,
    rx: SplitQueue,
    tx: SplitQueue,
    /// Per descriptor (head) in the device's hands: which buffer it is.
    rx_held: Vec<Option<usize>>,
    tx_held: Vec<Option<usize>>,
    /// Transmit buffers free for a frame.
    tx_free: Vec<usize>,
    header: usize,
    mac: [u8; 6],
    broken: Option<Broken>,
}

/// Sets up queue `n` at `at` in `mem`; its queue.
fn setup_queue(regs: &impl Registers, mem: &impl DmaMemory, modern: bool, n: u32, at: usize) -> Result<SplitQueue, InitError> {
    regs.write(reg::QUEUE_SEL, n);
    let in_use = if modern { regs.read(reg::QUEUE_READY) != 0 } else { regs.read(reg::QUEUE_PFN) != 0 };
    let max = regs.read(reg::QUEUE_NUM_MAX);
    if in_use || max < 2 {
        return Err(InitError::BadQueue(n));
    }
    let size = 1u16 << (31 - max.min(u32::from(QUEUE_SIZE_MAX)).leading_zeros());
    let layout = QueueLayout::new(size, PAGE).ok_or(InitError::BadQueue(n))?;
    if layout.total > dma_layout::QUEUE_BYTES {
        return Err(InitError::BadQueue(n));
    }
    let bus = mem.bus_address() + at as u64;
    regs.write(reg::QUEUE_NUM, u32::from(size));
    // The rings are zeroed before the device learns where they are.
    let queue = SplitQueue::new(layout, at, mem);
    mem.barrier();
    if modern {
        for (low, off) in [(reg::QUEUE_DESC_LOW, layout.desc), (reg::QUEUE_DRIVER_LOW, layout.avail), (reg::QUEUE_DEVICE_LOW, layout.used)] {
            let addr = bus + off as u64;
            regs.write(low, addr as u32);
            regs.write(low + 4, (addr >> 32) as u32);
        }
        regs.write(reg::QUEUE_READY, 1);
    } else {
        if !bus.is_multiple_of(PAGE as u64) {
            return Err(InitError::BadDmaRegion);
        }
        regs.write(reg::QUEUE_ALIGN, PAGE as u32);
        regs.write(reg::QUEUE_PFN, u32::try_from(bus / PAGE as u64).map_err(|_| InitError::BadDmaRegion)?);
    }
    Ok(queue)
}

impl<R: Registers, M: DmaMemory> NetDevice<R, M> {
    /// Resets and sets up the device behind `regs` with its queues and buffers in `mem` (at
    /// least [`dma_layout::TOTAL`] bytes), and gives it every receive buffer; the device is
    /// live (DRIVER_OK) on success and marked FAILED on an error after the reset.
    pub fn init(regs: R, mem: M) -> Result<Self, InitError> {
        if regs.read(reg::MAGIC) != MAGIC_VALUE || regs.read(reg::DEVICE_ID) != DEVICE_ID_NET {
            return Err(InitError::NotNet);
        }
        let version = match regs.read(reg::VERSION) {
            1 => TransportVersion::Legacy,
            2 => TransportVersion::Modern,
            _ => return Err(InitError::NotNet),
        };
        if mem.size() < dma_layout::TOTAL {
            return Err(InitError::BadDmaRegion);
        }
        regs.write(reg::STATUS, 0);
        let modern = version == TransportVersion::Modern;
        if modern && !(0..RESET_POLLS).any(|_| regs.read(reg::STATUS) == 0) {
            return Err(InitError::ResetStuck);
        }
        regs.write(reg::STATUS, status::ACKNOWLEDGE);
        regs.write(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        match Self::setup(&regs, &mem, modern) {
            Ok((rx, tx, mac, header)) => {
                let (rs, ts) = (usize::from(rx.layout().size), usize::from(tx.layout().size));
                let mut dev = Self { regs, mem, rx, tx, rx_held: alloc::vec![None; rs], tx_held: alloc::vec![None; ts], tx_free: (0..ts).rev().collect(), header, mac, broken: None };
                for i in 0..rs {
                    dev.post_rx(i);
                }
                dev.regs.write(reg::QUEUE_NOTIFY, RECEIVE);
                Ok(dev)
            }
            Err(e) => {
                regs.write(reg::STATUS, regs.read(reg::STATUS) | status::FAILED);
                Err(e)
            }
        }
    }

    fn setup(regs: &R, mem: &M, modern: bool) -> Result<(SplitQueue, SplitQueue, [u8; 6], usize), InitError> {
        let offered = offered_features(regs, modern);
        if modern && offered & F_VERSION_1 == 0 {
            return Err(InitError::NoVersion1);
        }
        let features = offered & (F_MAC | if modern { F_VERSION_1 } else { 0 });
        let dev_status = accept_features(regs, modern, features, status::ACKNOWLEDGE | status::DRIVER, PAGE as u32).ok_or(InitError::FeaturesRefused)?;
        let rx = setup_queue(regs, mem, modern, RECEIVE, dma_layout::RX_QUEUE)?;
        let tx = setup_queue(regs, mem, modern, TRANSMIT, dma_layout::TX_QUEUE)?;
        let mac = if features & F_MAC != 0 {
            let (a, b) = (regs.read(reg::CONFIG).to_le_bytes(), regs.read(reg::CONFIG + 4).to_le_bytes());
            [a[0], a[1], a[2], a[3], b[0], b[1]]
        } else {
            // Locally administered, Keel's prefix, all ones for "the uplink".
            [0x02, 0x4b, 0x65, 0xff, 0xff, 0x00]
        };
        regs.write(reg::STATUS, dev_status | status::DRIVER_OK);
        // The header: 12 bytes for a modern device (num_buffers is always there), 10 for legacy.
        Ok((rx, tx, mac, if modern { 12 } else { 10 }))
    }

    /// The device's address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Why the device was given up, if it was.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    fn post_rx(&mut self, buffer: usize) {
        let addr = self.mem.bus_address() + (dma_layout::RX_BUFFERS + buffer * BUFFER) as u64;
        if let Ok(head) = self.rx.add(&[Buffer { addr, len: BUFFER as u32, device_writes: true }], &self.mem) {
            self.rx_held[usize::from(head)] = Some(buffer);
        }
    }

    /// Acknowledges the device's interrupt; false (and the device broken) when it says it
    /// needs a reset.
    pub fn acknowledge(&mut self) -> bool {
        let why = self.regs.read(reg::INTERRUPT_STATUS);
        self.regs.write(reg::INTERRUPT_ACK, why);
        if why & interrupt::CONFIG_CHANGE != 0 && self.regs.read(reg::STATUS) & status::DEVICE_NEEDS_RESET != 0 {
            self.broken = Some(Broken::NeedsReset);
        }
        self.broken.is_none()
    }

    /// Appends the frames the device received to `out` (headers stripped; runts and giants
    /// dropped) and gives their buffers back to it; the number dropped.
    pub fn receive(&mut self, out: &mut Vec<Vec<u8>>) -> u64 {
        let mut dropped = 0;
        let mut reposted = false;
        while self.broken.is_none() {
            let used = match self.rx.pop_used(&self.mem) {
                Ok(Some(u)) => u,
                Ok(None) => break,
                Err(e) => {
                    self.broken = Some(Broken::Used(e));
                    break;
                }
            };
            let Some(buffer) = self.rx_held.get_mut(usize::from(used.head)).and_then(Option::take) else {
                self.broken = Some(Broken::BadBuffer);
                break;
            };
            let len = used.len as usize;
            let frame = len.checked_sub(self.header).filter(|n| (MIN_FRAME..=MAX_FRAME).contains(n));
            match frame {
                Some(n) => {
                    let mut f = alloc::vec![0u8; n];
                    if self.mem.read_bytes(dma_layout::RX_BUFFERS + buffer * BUFFER + self.header, &mut f).is_ok() {
                        out.push(f);
                    } else {
                        dropped += 1;
                    }
                }
                None => dropped += 1,
            }
            self.post_rx(buffer);
            reposted = true;
        }
        if reposted {
            self.regs.write(reg::QUEUE_NOTIFY, RECEIVE);
        }
        dropped
    }

    /// Takes back the transmit buffers the device is done with.
    fn reclaim(&mut self) {
        while self.broken.is_none() {
            match self.tx.pop_used(&self.mem) {
                Ok(Some(u)) => match self.tx_held.get_mut(usize::from(u.head)).and_then(Option::take) {
                    Some(b) => self.tx_free.push(b),
                    None => self.broken = Some(Broken::BadBuffer),
                },
                Ok(None) => break,
                Err(e) => self.broken = Some(Broken::Used(e)),
            }
        }
    }

    /// Frames [`NetDevice::send`] can queue now.
    pub fn send_room(&mut self) -> usize {
        self.reclaim();
        if self.broken.is_some() { 0 } else { self.tx_free.len() }
    }

    /// Queues `frame` for the device (call [`NetDevice::kick`] after a batch); false when it
    /// is malformed or there is no free buffer.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        if self.broken.is_some() || !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
            return false;
        }
        let Some(buffer) = self.tx_free.pop() else { return false };
        let at = dma_layout::TX_BUFFERS + buffer * BUFFER;
        let zero = [0u8; 12];
        if self.mem.write_bytes(at, &zero[..self.header]).is_err() || self.mem.write_bytes(at + self.header, frame).is_err() {
            self.tx_free.push(buffer);
            return false;
        }
        let addr = self.mem.bus_address() + at as u64;
        match self.tx.add(&[Buffer { addr, len: (self.header + frame.len()) as u32, device_writes: false }], &self.mem) {
            Ok(head) => {
                self.tx_held[usize::from(head)] = Some(buffer);
                true
            }
            Err(_) => {
                self.tx_free.push(buffer);
                false
            }
        }
    }

    /// Tells the device frames are waiting to go.
    pub fn kick(&self) {
        self.regs.write(reg::QUEUE_NOTIFY, TRANSMIT);
    }
}
