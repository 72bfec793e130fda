//! One virtio-mmio device as its backend keeps it: the transport, the device model, the guest
//! RAM it may touch, and its counters. The monitor's forwarded register accesses come in as
//! [`Backend::read`] and [`Backend::write`], doorbells as [`Backend::notified`]; each says
//! whether the guest must be interrupted now (the caller raises the line).

use crate::entropy::Source;
use alloc::boxed::Box;
use keel_virtio::GuestMemory;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use keel_virtio::blk::{self, Blk, Storage};
use keel_virtio::console::{self, Console};
use keel_virtio::mmio::{Effect, Transport};
use keel_virtio::net::{self, Net};
use keel_virtio::rng::{self, Rng};

/// The devices a backend can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// virtio-rng: an entropy source.
    Rng,
    /// virtio-blk: a disk.
    Blk,
    /// virtio-console: the guest's console (hvc0).
    Console,
    /// virtio-net: a port of a virtual switch.
    Net,
}

impl Kind {
    /// The kind named `name` on the command line (`rng`, `blk`).
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "rng" => Some(Kind::Rng),
            "blk" => Some(Kind::Blk),
            "console" => Some(Kind::Console),
            "net" => Some(Kind::Net),
            _ => None,
        }
    }
}

/// What the device did, for `vm stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests (descriptor chains) completed.
    pub requests: u64,
    /// Bytes moved to or from guest buffers.
    pub bytes: u64,
    /// Times the backend woke for doorbells (several doorbells can make one wake-up).
    pub notifications: u64,
    /// Interrupts raised.
    pub interrupts: u64,
    /// Malformed queues (each left the device needing a reset) and failed requests.
    pub errors: u64,
}

/// Most console input kept waiting for the guest's receive buffers.
pub const MAX_INPUT: usize = 4096;
/// Most frames kept waiting for the guest's receive buffers (the switch keeps more).
pub const MAX_RX_FRAMES: usize = 128;

/// The storage of a disk after `stop`: every request fails.
struct Closed;

impl Storage for Closed {
    fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), blk::StorageError> {
        Err(blk::StorageError)
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), blk::StorageError> {
        Err(blk::StorageError)
    }
    fn flush(&mut self) -> Result<(), blk::StorageError> {
        Err(blk::StorageError)
    }
}

enum Model {
    Rng(Transport<Rng>, Box<dyn Source + Send>),
    Blk(Transport<Blk>, Box<dyn Storage + Send>),
    /// The console, its input not yet taken by the guest and its output not yet passed on.
    Console(Transport<Console>, VecDeque<u8>, Vec<u8>),
    /// A network port: frames for the guest not yet in its buffers, frames it sent not yet
    /// passed to the switch.
    Net(Transport<Net>, VecDeque<Vec<u8>>, Vec<Vec<u8>>),
}

/// A device and the guest memory it serves.
pub struct Backend<M> {
    mem: M,
    model: Model,
    /// Its counters.
    pub stats: Stats,
}

impl<M: GuestMemory> Backend<M> {
    /// An entropy device in its reset state over guest RAM `mem`, its bytes from `source`.
    pub fn rng(mem: M, source: Box<dyn Source + Send>) -> Self {
        Self { mem, model: Model::Rng(Transport::new(Rng), source), stats: Stats::default() }
    }

    /// A disk in its reset state over guest RAM `mem`, kept in `storage`.
    pub fn blk(mem: M, disk: Blk, storage: Box<dyn Storage + Send>) -> Self {
        Self { mem, model: Model::Blk(Transport::new(disk), storage), stats: Stats::default() }
    }

    /// A console in its reset state over guest RAM `mem`.
    pub fn console(mem: M) -> Self {
        Self { mem, model: Model::Console(Transport::new(Console), VecDeque::new(), Vec::new()), stats: Stats::default() }
    }

    /// A network device in its reset state over guest RAM `mem`, with address `mac`.
    pub fn net(mem: M, mac: [u8; 6]) -> Self {
        Self { mem, model: Model::Net(Transport::new(Net { mac }), VecDeque::new(), Vec::new()), stats: Stats::default() }
    }

    /// The frames a network device's guest sent since the last call (none for other devices).
    pub fn take_transmitted(&mut self) -> Vec<Vec<u8>> {
        match &mut self.model {
            Model::Net(_, _, out) => core::mem::take(out),
            _ => Vec::new(),
        }
    }

    /// Whether the guest has sent frames still in its transmit queue (the last serve stopped
    /// at a batch's end); serving again takes them.
    pub fn more_to_transmit(&mut self) -> bool {
        match &mut self.model {
            Model::Net(t, ..) => net::more_to_take(t, &self.mem),
            _ => false,
        }
    }

    /// Whether a network device has frames from its guest to pass on.
    pub fn has_transmitted(&mut self) -> bool {
        match &mut self.model {
            Model::Net(t, _, out) => !out.is_empty() || net::more_to_take(t, &self.mem),
            _ => false,
        }
    }

    /// Frames a network device may take for its guest now.
    pub fn receive_room(&self) -> usize {
        match &self.model {
            Model::Net(_, rx, _) => MAX_RX_FRAMES.saturating_sub(rx.len()),
            _ => 0,
        }
    }

    /// Frames for a network device's guest (beyond [`Backend::receive_room`] they are
    /// dropped and counted); whether to raise the interrupt.
    pub fn receive<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]>) -> bool {
        if let Model::Net(_, rx, _) = &mut self.model {
            for f in frames {
                if rx.len() < MAX_RX_FRAMES {
                    rx.push_back(f.to_vec());
                } else {
                    self.stats.errors += 1;
                }
            }
        }
        self.serve()
    }

    /// A console's output the guest wrote since the last call (empty for other devices).
    pub fn take_output(&mut self) -> Vec<u8> {
        match &mut self.model {
            Model::Console(_, _, out) => core::mem::take(out),
            _ => Vec::new(),
        }
    }

    /// Input for a console (the rest of what its queue cannot hold yet waits, up to
    /// [`MAX_INPUT`] bytes; more is dropped); whether to raise the interrupt.
    pub fn input(&mut self, bytes: &[u8]) -> bool {
        if let Model::Console(_, input, _) = &mut self.model {
            let room = MAX_INPUT.saturating_sub(input.len());
            input.extend(bytes.iter().take(room));
        }
        self.serve()
    }

    /// The guest RAM it serves.
    pub fn memory(&mut self) -> &mut M {
        &mut self.mem
    }

    /// A guest load of `size` bytes at `offset` in the device's window.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        match &self.model {
            Model::Rng(t, _) => t.read(offset, size),
            Model::Blk(t, _) => t.read(offset, size),
            Model::Console(t, ..) => t.read(offset, size),
            Model::Net(t, ..) => t.read(offset, size),
        }
    }

    /// The interrupt status bits raised since the last call (the kernel keeps the register).
    pub fn take_interrupt_status(&mut self) -> u32 {
        match &mut self.model {
            Model::Rng(t, _) => t.take_interrupt_status(),
            Model::Blk(t, _) => t.take_interrupt_status(),
            Model::Console(t, ..) => t.take_interrupt_status(),
            Model::Net(t, ..) => t.take_interrupt_status(),
        }
    }

    /// The device status register (for `vm stat`).
    pub fn status(&self) -> u32 {
        match &self.model {
            Model::Rng(t, _) => t.status(),
            Model::Blk(t, _) => t.status(),
            Model::Console(t, ..) => t.status(),
            Model::Net(t, ..) => t.status(),
        }
    }

    /// Whether an entropy device's bytes come from hardware (None: not an entropy device).
    pub fn hardware_entropy(&self) -> Option<bool> {
        match &self.model {
            Model::Rng(_, s) => Some(s.hardware()),
            _ => None,
        }
    }

    /// A guest store at `offset` in the window; whether to raise the interrupt.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> bool {
        let effect = match &mut self.model {
            Model::Rng(t, _) => t.write(offset, size, value, &self.mem),
            Model::Blk(t, _) => t.write(offset, size, value, &self.mem),
            Model::Console(t, ..) => t.write(offset, size, value, &self.mem),
            Model::Net(t, ..) => t.write(offset, size, value, &self.mem),
        };
        match effect {
            Effect::None | Effect::Reset => false,
            Effect::NeedsReset(_) => {
                self.stats.errors += 1;
                self.interrupt()
            }
            // A doorbell that came as a forwarded write (it missed the ioevent: a narrow write,
            // say) is served as one.
            Effect::Notify(_) => {
                self.stats.notifications += 1;
                self.serve()
            }
            // Buffers made available before DRIVER_OK are served now.
            Effect::Activated(_) => self.serve(),
        }
    }

    /// The VM is ending: a disk flushes its storage and lets it go (requests after this fail).
    /// Whether the flush worked.
    pub fn stop(&mut self) -> bool {
        match &mut self.model {
            Model::Rng(..) | Model::Console(..) | Model::Net(..) => true,
            Model::Blk(_, storage) => {
                let ok = storage.flush().is_ok();
                *storage = Box::new(Closed);
                ok
            }
        }
    }

    /// Doorbells rang (bit `n`: queue `n`); whether to raise the interrupt.
    pub fn notified(&mut self, bits: u64) -> bool {
        self.stats.notifications += u64::from(bits.count_ones());
        self.serve()
    }

    /// Serves every available request; whether to raise the interrupt.
    fn serve(&mut self) -> bool {
        let result = match &mut self.model {
            Model::Rng(t, source) => rng::serve(t, &mut self.mem, |buf| source.fill(buf)).map(|s| (s.requests, s.bytes, 0, s.interrupt)),
            Model::Blk(t, storage) => blk::serve(t, &mut self.mem, storage.as_mut()).map(|s| (s.requests, s.bytes, s.errors, s.interrupt)),
            Model::Console(t, input, out) => console::take_output(t, &mut self.mem, out).and_then(|o| {
                let i = console::give_input(t, &mut self.mem, input)?;
                Ok((o.requests + i.requests, o.bytes + i.bytes, 0, o.interrupt || i.interrupt))
            }),
            Model::Net(t, rx, out) => net::take_frames(t, &mut self.mem, out).and_then(|o| {
                let i = net::give_frames(t, &mut self.mem, rx)?;
                Ok((o.frames + i.frames, o.bytes + i.bytes, o.dropped + i.dropped, o.interrupt || i.interrupt))
            }),
        };
        match result {
            Ok((requests, bytes, errors, interrupt)) => {
                self.stats.requests += requests;
                self.stats.bytes += bytes;
                self.stats.errors += errors;
                interrupt && self.interrupt()
            }
            Err(_) => {
                match &mut self.model {
                    Model::Rng(t, _) => t.fail(),
                    Model::Blk(t, _) => t.fail(),
                    Model::Console(t, ..) => t.fail(),
                    Model::Net(t, ..) => t.fail(),
                }
                self.stats.errors += 1;
                self.interrupt()
            }
        }
    }

    fn interrupt(&mut self) -> bool {
        self.stats.interrupts += 1;
        true
    }
}
