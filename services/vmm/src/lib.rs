//! vmm: the VM monitor (placeholder; being written).
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
