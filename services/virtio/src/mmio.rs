//! The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): the register block a guest
//! finds at a virtio-mmio slot, around a [`Device`] and its queues.
//!
//! Only the modern interface: version 2, `VIRTIO_F_VERSION_1` always offered and required
//! (a driver that does not accept it never gets `FEATURES_OK`). Control registers take aligned
//! 32-bit accesses only (others read as 0 and are ignored, as the spec allows a device to);
//! the configuration space from 0x100 takes 1-, 2-, 4- and 8-byte accesses. A queue that turns
//! out to be malformed sets `DEVICE_NEEDS_RESET` and raises the configuration-change interrupt;
//! nothing is served until the driver resets the device.

use crate::features::VERSION_1;
use crate::mem::GuestMemory;
use crate::queue::{Chain, Queue, QueueError};
use alloc::vec::Vec;

/// "virt", little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// "KEEL", little-endian (the vendor ID Keel's devices report).
pub const VENDOR: u32 = 0x4c45_454b;

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready: the device may serve.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error it cannot recover from until reset.
    pub const NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
}

/// Interrupt status bits.
pub mod interrupt {
    /// A queue has used buffers.
    pub const USED_BUFFER: u32 = 1;
    /// The configuration (or `DEVICE_NEEDS_RESET`) changed.
    pub const CONFIG_CHANGE: u32 = 2;
}

/// Register offsets in the window (virtio 1.2, section 4.2.2), named as the spec names them.
#[allow(missing_docs)]
pub mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// The size of one virtio-mmio slot's window.
pub const WINDOW: u64 = 0x200;

/// What a device model provides to the transport.
pub trait Device {
    /// The virtio device ID (1 net, 2 block, 3 console, 4 entropy).
    fn id(&self) -> u32;
    /// Feature bits the device offers; the transport adds `VIRTIO_F_VERSION_1`.
    fn features(&self) -> u64;
    /// The largest size of each queue; their number is the slice's length.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads `out.len()` bytes of configuration space at `offset` (bytes beyond it read as 0).
    fn read_config(&self, offset: u64, out: &mut [u8]);
    /// A driver write to configuration space; ignored unless the device has writable fields.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
}

/// What a guest write asks the backend to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond the register change.
    None,
    /// The driver notified queue `n`: it has made buffers available.
    Notify(u16),
    /// The driver set `DRIVER_OK` with these features: the device is live.
    Activated(u64),
    /// The driver reset the device (status 0): every queue is disabled and forgotten.
    Reset,
    /// The device needs a reset now (a queue the driver enabled is unusable): raise the
    /// interrupt, whose status says `CONFIG_CHANGE`.
    NeedsReset(QueueError),
}

/// A virtio-mmio register block around a device model.
pub struct Transport<D: Device> {
    /// The device model.
    pub device: D,
    queues: Vec<Queue>,
    status: u32,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    interrupt_status: u32,
    config_generation: u32,
}

impl<D: Device> Transport<D> {
    /// A transport in its reset state around `device`.
    pub fn new(device: D) -> Self {
        let queues = device.queue_max_sizes().iter().map(|&n| Queue::new(n)).collect();
        Self {
            device,
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            interrupt_status: 0,
            config_generation: 0,
        }
    }

    /// Every feature bit offered.
    pub fn offered(&self) -> u64 {
        self.device.features() | VERSION_1
    }

    /// The features the driver accepted (valid once `FEATURES_OK` is set).
    pub fn negotiated(&self) -> u64 {
        self.driver_features
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The interrupt status register (what a raised interrupt is for).
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// The interrupt status bits raised since the last call, cleared here: for a backend whose
    /// InterruptStatus register the kernel keeps (it passes them with the interrupt). Until
    /// then they also read in [`Transport::read`], as without the kernel's register.
    pub fn take_interrupt_status(&mut self) -> u32 {
        core::mem::take(&mut self.interrupt_status)
    }

    /// Whether the driver is ready and the device has not failed: queues may be served.
    pub fn live(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::NEEDS_RESET == 0
    }

    /// Queue `n`, if the device has it.
    pub fn queue(&mut self, n: u16) -> Option<&mut Queue> {
        self.queues.get_mut(usize::from(n))
    }

    /// The next chain of queue `n`, if the device is live and the driver made one available.
    /// A malformed queue marks the device as needing a reset (and returns the error, for the
    /// backend to raise the interrupt and count it).
    pub fn pop(&mut self, n: u16, mem: &mut impl GuestMemory) -> Result<Option<Chain>, QueueError> {
        if !self.live() {
            return Ok(None);
        }
        let q = self.queues.get_mut(usize::from(n)).ok_or(QueueError::NotReady)?;
        let r = q.pop(mem);
        if let Err(e) = r {
            self.fail();
            return Err(e);
        }
        r
    }

    /// Returns a chain of queue `n` with `len` bytes written; whether to interrupt the driver
    /// (then the interrupt status says `USED_BUFFER`).
    pub fn complete(&mut self, n: u16, mem: &mut impl GuestMemory, head: u16, len: u32) -> Result<bool, QueueError> {
        if !self.live() {
            return Ok(false);
        }
        let q = self.queues.get_mut(usize::from(n)).ok_or(QueueError::NotReady)?;
        let r = q.add_used(mem, head, len).and_then(|()| q.needs_interrupt(mem));
        match r {
            Ok(true) => {
                self.interrupt_status |= interrupt::USED_BUFFER;
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                self.fail();
                Err(e)
            }
        }
    }

    /// The device cannot go on: `DEVICE_NEEDS_RESET`, announced by a configuration-change
    /// interrupt.
    pub fn fail(&mut self) {
        self.status |= status::NEEDS_RESET;
        self.interrupt_status |= interrupt::CONFIG_CHANGE;
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// A guest load of `size` bytes at `offset` in the window.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        if offset >= reg::CONFIG {
            if !matches!(size, 1 | 2 | 4 | 8) {
                return 0;
            }
            let mut b = [0u8; 8];
            self.device.read_config(offset - reg::CONFIG, &mut b[..usize::from(size)]);
            return u64::from_le_bytes(b);
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return 0;
        }
        let q = self.queues.get(self.queue_sel as usize);
        let half = |v: u64, sel: u32| match sel {
            0 => v & 0xffff_ffff,
            1 => v >> 32,
            _ => 0,
        };
        u64::from(match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => 2,
            reg::DEVICE_ID => self.device.id(),
            reg::VENDOR_ID => VENDOR,
            reg::DEVICE_FEATURES => half(self.offered(), self.device_features_sel) as u32,
            reg::QUEUE_NUM_MAX => q.map_or(0, |q| u32::from(q.max_size)),
            reg::QUEUE_NUM => q.map_or(0, |q| u32::from(q.size)),
            reg::QUEUE_READY => q.map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::QUEUE_DESC_LOW => q.map_or(0, |q| q.desc as u32),
            reg::QUEUE_DESC_HIGH => q.map_or(0, |q| (q.desc >> 32) as u32),
            reg::QUEUE_DRIVER_LOW => q.map_or(0, |q| q.avail as u32),
            reg::QUEUE_DRIVER_HIGH => q.map_or(0, |q| (q.avail >> 32) as u32),
            reg::QUEUE_DEVICE_LOW => q.map_or(0, |q| q.used as u32),
            reg::QUEUE_DEVICE_HIGH => q.map_or(0, |q| (q.used >> 32) as u32),
            // No shared memory regions: their length reads as all ones.
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH => u32::MAX,
            reg::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        })
    }

    /// A guest store of `size` bytes of `value` at `offset` in the window; `mem` is the guest's
    /// RAM, against which a queue is checked when the driver enables it.
    pub fn write(&mut self, offset: u64, size: u8, value: u64, mem: &impl GuestMemory) -> Effect {
        if offset >= reg::CONFIG {
            if matches!(size, 1 | 2 | 4 | 8) {
                self.device.write_config(offset - reg::CONFIG, &value.to_le_bytes()[..usize::from(size)]);
            }
            return Effect::None;
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return Effect::None;
        }
        let v = value as u32;
        // Queue registers change only while the queue is disabled and the driver not ready.
        let configurable = self.status & status::DRIVER_OK == 0;
        let set_half = |old: u64, high: bool| if high { (old & 0xffff_ffff) | u64::from(v) << 32 } else { (old & !0xffff_ffff) | u64::from(v) };
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES
                if self.status & status::FEATURES_OK == 0 && self.driver_features_sel < 2 => {
                    self.driver_features = set_half(self.driver_features, self.driver_features_sel == 1);
                }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => {
                if let Some(q) = self.selected().filter(|q| configurable && !q.ready()) {
                    q.size = u16::try_from(v).unwrap_or(0);
                }
            }
            reg::QUEUE_DESC_LOW | reg::QUEUE_DESC_HIGH | reg::QUEUE_DRIVER_LOW | reg::QUEUE_DRIVER_HIGH | reg::QUEUE_DEVICE_LOW | reg::QUEUE_DEVICE_HIGH => {
                if let Some(q) = self.selected().filter(|q| configurable && !q.ready()) {
                    let high = offset & 4 != 0;
                    match offset & !4 {
                        reg::QUEUE_DESC_LOW => q.desc = set_half(q.desc, high),
                        reg::QUEUE_DRIVER_LOW => q.avail = set_half(q.avail, high),
                        _ => q.used = set_half(q.used, high),
                    }
                }
            }
            reg::QUEUE_READY => {
                let features = self.driver_features;
                let Some(q) = self.selected() else { return Effect::None };
                match v {
                    0 => q.reset_ready(),
                    _ if q.ready() || !configurable => {}
                    _ => {
                        if let Err(e) = q.enable(mem, features) {
                            self.fail();
                            return Effect::NeedsReset(e);
                        }
                    }
                }
            }
            reg::QUEUE_NOTIFY
                if self.live() && self.queues.get(v as usize).is_some_and(Queue::ready) => {
                    return Effect::Notify(v as u16);
                }
            reg::INTERRUPT_ACK => self.interrupt_status &= !v,
            reg::STATUS => return self.write_status(v),
            _ => {}
        }
        Effect::None
    }

    /// A write of the status register: 0 resets; otherwise bits are only ever added, and
    /// `FEATURES_OK` sticks only for an acceptable feature set.
    fn write_status(&mut self, v: u32) -> Effect {
        if v == 0 {
            self.queues.iter_mut().for_each(Queue::reset);
            self.status = 0;
            self.driver_features = 0;
            self.device_features_sel = 0;
            self.driver_features_sel = 0;
            self.queue_sel = 0;
            self.interrupt_status = 0;
            return Effect::Reset;
        }
        let mut new = self.status | (v & !status::NEEDS_RESET);
        if new & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            let ok = self.driver_features & !self.offered() == 0 && self.driver_features & VERSION_1 != 0;
            if !ok {
                new &= !status::FEATURES_OK;
            }
        }
        // DRIVER_OK counts only after FEATURES_OK.
        if new & status::FEATURES_OK == 0 {
            new &= !status::DRIVER_OK;
        }
        let activated = new & status::DRIVER_OK != 0 && self.status & status::DRIVER_OK == 0;
        self.status = new;
        if activated && self.status & status::FAILED == 0 { Effect::Activated(self.driver_features) } else { Effect::None }
    }
}

impl Queue {
    /// QueueReady 0: the queue stops and forgets its configuration's use (not its addresses).
    fn reset_ready(&mut self) {
        let (size, desc, avail, used) = (self.size, self.desc, self.avail, self.used);
        self.reset();
        (self.size, self.desc, self.avail, self.used) = (size, desc, avail, used);
    }
}
