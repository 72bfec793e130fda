//! The device side of virtio 1.2 for Keel's virtual device backends, as a library with no
//! dependencies and no unsafe code, tested on the host against a mock guest memory.
//!
//! - [`mem`]: how a backend reaches guest RAM ([`GuestMemory`]); every access is checked against
//!   the RAM the backend was given, so no guest-made address reaches anything else.
//! - [`queue`]: split virtqueues: descriptor chains (direct and indirect) taken from the
//!   available ring, used buffers returned, and whether the driver wants an interrupt
//!   (`VIRTIO_F_EVENT_IDX` or the ring flags).
//! - [`mmio`]: the virtio-mmio version 2 register block (modern only) around a [`mmio::Device`].
//! - [`rng`]: the entropy device, the first device model.
//! - [`blk`]: the block device model, against a [`blk::Storage`].
//! - [`console`]: the console device model (one port).
//! - [`net`]: the network device model (one queue pair; frames in and out, no offloads).
//!
//! The guest is hostile: everything read from guest memory or written by the guest to the
//! registers is checked before it is used. A malformed ring or descriptor chain is a
//! [`QueueError`]; the transport then sets `DEVICE_NEEDS_RESET` and stops using the queue. No
//! input makes this crate panic, loop without bound, or touch memory outside the guest's RAM.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod mem;
pub mod mmio;
pub mod queue;
pub mod blk;
pub mod console;
pub mod net;
pub mod rng;
#[cfg(test)]
mod tests;

pub use mem::{GuestMemory, MemError};

/// What serving a queue did (the entropy and console devices; the block device counts errors
/// too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Buffers returned.
    pub requests: u64,
    /// Bytes moved to or from them.
    pub bytes: u64,
    /// Whether the driver wants an interrupt for them.
    pub interrupt: bool,
}
pub use queue::{Chain, Descriptor, Queue, QueueError};

/// Feature bits the transport and queues know about (virtio 1.2, section 6).
pub mod features {
    /// Descriptors may point to tables of descriptors.
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// The `used_event` and `avail_event` fields suppress notifications.
    pub const EVENT_IDX: u64 = 1 << 29;
    /// A modern (non-legacy) device; a version-2 virtio-mmio device must offer it.
    pub const VERSION_1: u64 = 1 << 32;
}
