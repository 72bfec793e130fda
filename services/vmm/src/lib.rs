//! The VM monitor's host-testable core: everything the EL0 VMM decides about a guest before and
//! while it runs, without touching the kernel.
//!
//! The VMM owns building guests (decoding the `vm run` command line and config files in
//! [`config`], planning where the kernel, initrd and DTB go in [`image`], writing the guest's
//! device tree in [`dtb`] with the [`fdt`] writer, all for the fixed board of [`layout`]) and
//! emulating their devices ([`pl011`], the empty [`virtio_slot`]s). It never touches host memory it was not given: this
//! crate reads only the byte slices passed in and hands back owned values, and the VMM main maps
//! nothing but the guest RAM and device windows the kernel grants it. Everything a guest or a
//! user can reach (MMIO accesses, kernel and initrd files, config text, command-line words)
//! returns a [`VmmError`] or a defined register value; nothing on those paths panics, and nothing
//! grows without bound.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod config;
pub mod dtb;
mod error;
pub mod fdt;
pub mod image;
pub mod layout;
pub mod pl011;
pub mod saved;
pub mod virtio_slot;

pub use error::VmmError;
