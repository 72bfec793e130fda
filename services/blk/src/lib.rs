//! blk: the virtio-blk driver service. It finds QEMU virt's virtio-blk devices on the
//! virtio-mmio transports (legacy version 1 and modern version 2), drives each through one split
//! virtqueue in a physically contiguous DMA region with completion by interrupt, and serves each
//! disk as `blk0`, `blk1`, ... over the `keel_rt::proto::blk` protocol (INFO, READ, WRITE,
//! FLUSH; errors as negative errno labels).
//!
//! The driver logic (register sequences, virtqueue layout and rings, request encoding, feature
//! negotiation, slot scanning, IPC decoding) is generic over [`regs::Registers`],
//! [`dma::DmaMemory`] and [`device::Interrupt`] and is tested on the host against a device
//! model (`fake`). Only `hw` and `service` make system calls or touch registers. It never trusts
//! what a device writes: bad used-ring entries or a device that stops answering give EIO.
//! Startup: caps `control` and `namesrv`. Exits 0 when there is no virtio-blk device.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod device;
pub mod dma;
pub mod features;
pub mod hw;
pub mod protocol;
pub mod regs;
pub mod request;
pub mod service;
pub mod virtqueue;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use alloc::string::String;
use core::fmt;
use device::{DeviceInfo, InitError};
use keel_rt::Error;
use keel_rt::startup::Startup;

/// Why the service could not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// A startup capability is missing; its name.
    MissingCap(&'static str),
    /// A system call failed during setup: what was being done, and the error.
    Sys(&'static str, Error),
    Init(InitError),
    /// namesrv refused a registration: the name and the error.
    Register(String, Error),
    /// Devices were found but none could be set up.
    NoUsableDevice,
}

impl BlkError {
    /// The exit code: 2 for a bad startup block, 1 for a failure at run time.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::MissingCap(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::MissingCap(name) => write!(f, "no '{name}' capability in the startup block"),
            Self::Sys(what, e) => write!(f, "{what} failed: {e:?}"),
            Self::Init(e) => write!(f, "{e}"),
            Self::Register(name, e) => write!(f, "cannot register '{name}' with namesrv: {e:?}"),
            Self::NoUsableDevice => f.write_str("no virtio-blk device could be set up"),
        }
    }
}

/// A size for people: whole GiB, MiB or KiB (rounded down).
pub fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    match bytes {
        b if b >= KIB * KIB * KIB => alloc::format!("{} GiB", b / (KIB * KIB * KIB)),
        b if b >= KIB * KIB => alloc::format!("{} MiB", b / (KIB * KIB)),
        b => alloc::format!("{} KiB", b / KIB),
    }
}

/// The line printed for each disk at start.
pub fn describe(name: &str, slot: u32, info: &DeviceInfo) -> String {
    let mut line = alloc::format!(
        "blk: {name} = virtio-blk at slot {slot} (virtio-mmio v{}), {} sectors ({})",
        info.version.number(),
        info.capacity,
        human_size(info.capacity.saturating_mul(512))
    );
    if info.flush {
        line.push_str(", flush");
    }
    if info.read_only {
        line.push_str(", read-only");
    }
    line
}

pub fn main(startup: &Startup) -> i32 {
    match service::run(startup) {
        Ok(()) => 0,
        Err(e) => {
            keel_rt::println!("blk: {e}");
            e.exit_code()
        }
    }
}
