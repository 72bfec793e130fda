//! One virtio-mmio device as its backend keeps it: the transport, the device model, the guest
//! RAM it may touch, and its counters. The monitor's forwarded register accesses come in as
//! [`Backend::read`] and [`Backend::write`], doorbells as [`Backend::notified`]; each says
//! whether the guest must be interrupted now (the caller raises the line).

use crate::entropy::Source;
use keel_virtio::GuestMemory;
use keel_virtio::mmio::{Effect, Transport};
use keel_virtio::rng::{self, Rng};

/// The devices a backend can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// virtio-rng: an entropy source.
    Rng,
}

impl Kind {
    /// The kind named `name` on the command line (`rng`).
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "rng" => Some(Kind::Rng),
            _ => None,
        }
    }

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rng => "rng",
        }
    }

    /// The virtio device ID.
    pub fn device_id(self) -> u32 {
        match self {
            Kind::Rng => rng::DEVICE_ID,
        }
    }

    /// How many queues it has (the monitor registers a doorbell for each).
    pub fn queues(self) -> u16 {
        match self {
            Kind::Rng => 1,
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
    /// Doorbells rung by the driver.
    pub notifications: u64,
    /// Interrupts raised.
    pub interrupts: u64,
    /// Malformed queues or requests (each left the device needing a reset).
    pub errors: u64,
}

enum Model<S> {
    Rng(Transport<Rng>, S),
}

/// A device and the guest memory it serves.
pub struct Backend<M, S> {
    mem: M,
    model: Model<S>,
    /// Its counters.
    pub stats: Stats,
}

impl<M: GuestMemory, S: Source> Backend<M, S> {
    /// A device of `kind` in its reset state over guest RAM `mem`; `source` gives an entropy
    /// device its bytes.
    pub fn new(kind: Kind, mem: M, source: S) -> Self {
        let model = match kind {
            Kind::Rng => Model::Rng(Transport::new(Rng), source),
        };
        Self { mem, model, stats: Stats::default() }
    }

    /// The guest RAM it serves.
    pub fn memory(&mut self) -> &mut M {
        &mut self.mem
    }

    /// A guest load of `size` bytes at `offset` in the device's window.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        match &self.model {
            Model::Rng(t, _) => t.read(offset, size),
        }
    }

    /// The device status register (for `vm stat`).
    pub fn status(&self) -> u32 {
        match &self.model {
            Model::Rng(t, _) => t.status(),
        }
    }

    /// Whether an entropy device's bytes come from hardware.
    pub fn hardware_entropy(&self) -> bool {
        match &self.model {
            Model::Rng(_, s) => s.hardware(),
        }
    }

    /// A guest store at `offset` in the window; whether to raise the interrupt.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> bool {
        let effect = match &mut self.model {
            Model::Rng(t, _) => t.write(offset, size, value, &self.mem),
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

    /// Doorbells rang (bit `n`: queue `n`); whether to raise the interrupt.
    pub fn notified(&mut self, bits: u64) -> bool {
        self.stats.notifications += u64::from(bits.count_ones());
        self.serve()
    }

    /// Serves every available buffer; whether to raise the interrupt.
    fn serve(&mut self) -> bool {
        match &mut self.model {
            Model::Rng(t, source) => match rng::serve(t, &mut self.mem, |buf| source.fill(buf)) {
                Ok(served) => {
                    self.stats.requests += served.requests;
                    self.stats.bytes += served.bytes;
                    served.interrupt && self.interrupt()
                }
                Err(_) => {
                    // Buffers already returned were counted by no one: the error is what matters.
                    t.fail();
                    self.stats.errors += 1;
                    self.interrupt()
                }
            },
        }
    }

    fn interrupt(&mut self) -> bool {
        self.stats.interrupts += 1;
        true
    }
}
