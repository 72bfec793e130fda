//! Board support for Keel: everything the kernel learns about the machine and the register maps
//! of the devices it drives itself.
//!
//! `dtb` turns a flattened device tree into a typed [`dtb::Machine`] (the only source of board
//! addresses); `pl011` and `gicv3` are `tock-registers` maps of the UART and the GICv3
//! distributor/redistributor. Nothing here allocates: the DTB is read before the kernel heap exists.
#![cfg_attr(not(test), no_std)]

pub mod bounded;
pub mod dtb;
pub mod gicv3;
pub mod pl011;
