//! netsw: Keel's virtual Ethernet switches, one service for all of them (registered as `net`,
//! protocol [`keel_rt::proto::net`]). The VM monitor opens a port for each virtio-net device
//! (`vm run --net sw0`) and gives the port's capability to the device's backend, which sends
//! the guest's frames to the switch and takes the frames waiting for it; the switch learns
//! which port each source address is behind and forwards a frame to that port only, floods
//! what it does not know (and broadcasts) to every other port of the switch, and forgets a
//! port's addresses when the port goes (its backend exited, or the monitor closed it).
//!
//! Frames are copied, not handed over as pages: from the guest's buffer into the backend's bulk
//! buffer, into the switch's queue for the destination port, out to that port's backend, into
//! the other guest's buffer. Each port queues at most [`switch::QUEUE_FRAMES`] frames; more are
//! dropped and counted, as a switch with a full output buffer does.
//!
//! [`switch`] is the forwarding logic, tested on the host; [`service`] the system-call glue.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod service;
pub mod switch;
