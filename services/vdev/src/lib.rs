//! vdev: a virtual device backend. The VM monitor starts one `vdev` process per virtio device of
//! a VM and gives it these capabilities only: the guest's RAM (`ram`, mapped whole), the
//! interrupt line of the device's SPI (`irq`), a notification (`notif`) that the device's
//! QueueNotify ioevents signal (bit `n` for queue `n`) and that the monitor's exit signals
//! ([`keel_rt::proto::vdev::MONITOR_GONE`]), a connection to serve (`conn`: the monitor
//! forwards the device window's other register accesses over it, `proto::vdev`), and the
//! monitor's process (`monitor`, WAIT only: to notice its exit); a disk also gets a session
//! with the file service (`fs`), a console a badged connection to the monitor for its output
//! (`output`). It owns the whole
//! virtio-mmio transport ([`keel_virtio::mmio::Transport`]): queue state lives here alone;
//! doorbells reach it without the monitor, and it raises the interrupt itself.
//!
//! Arguments: the device kind (`blk`, `console`, `rng`), `ram=BASE:SIZE` (the guest physical
//! range of `ram`), `vm=ID` (for messages), and for a disk `file=PATH` and `ro`.
//!
//! The device logic ([`backend`]) is generic over guest memory (storage and entropy are trait
//! objects) and is
//! tested on the host; [`service`] is the system-call glue. A hostile guest can make its own
//! device fail (`DEVICE_NEEDS_RESET`, counted as an error) and nothing else: every guest address
//! is checked against the RAM the backend was given.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod backend;
pub mod entropy;
pub mod service;

#[cfg(test)]
mod tests;
