//! Decoders for the files Keel boots from: the `newc` cpio initrd ([`cpio`]), static AArch64
//! ELF64 executables for EL0 ([`elf`]) and the boot manifest ([`manifest`]).
//!
//! The kernel uses this crate to find and load `init` from the initrd; the init service uses it
//! to load every other program and to read the manifest. All input is untrusted: every decoder
//! validates once, at the boundary, and returns either a typed value or an error that names what
//! is wrong ([`FormatError`] for archives and executables, [`manifest::ManifestError`] for the
//! manifest). Nothing here may panic, loop without bound, overflow arithmetic or read outside its
//! input, whatever the bytes are: offsets and sizes go through checked arithmetic and `get`, and
//! every loop advances through a finite input.
//!
//! Decoders borrow from their input instead of copying it. Only the manifest (owned argument
//! strings) and the cpio writer allocate; the cpio reader and the ELF parser work without a heap.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod cpio;
pub mod elf;
mod error;
pub mod manifest;
pub mod startup;

pub use error::FormatError;
