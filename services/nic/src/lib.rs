//! nic: the virtio-net driver service. It drives the first virtio-net device QEMU offers on the
//! virtio-mmio transports (`-device virtio-net-device,netdev=...`; `make run` attaches one on
//! QEMU's user networking) and plugs it into a virtual switch of the `net` service as its
//! uplink port: frames from the VMs on that switch that are not for another port go out of
//! QEMU's network, frames from it come in to the switch. Argument: `switch=NAME` (default
//! `sw0`). Startup caps: `control` (the device's registers, its interrupt, DMA memory) and
//! `namesrv`. Exits 0 when there is no virtio-net device.
//!
//! The device logic ([`device`]) is generic over the register and DMA-memory traits of the
//! virtio-blk driver (`keel_blk`), whose split virtqueue it shares, and is tested on the host
//! against a fake device; [`service`] is the system-call glue.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod device;
pub mod service;

#[cfg(test)]
mod tests;
