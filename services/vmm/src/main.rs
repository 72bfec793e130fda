//! vmm: the VM monitor service. The guest-building logic is the `keel_vmm` library; this binary
//! is the system-call glue (`monitor`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod backend;
#[cfg(target_os = "none")]
mod monitor;

#[cfg(target_os = "none")]
keel_rt::entry!(monitor::main);

#[cfg(not(target_os = "none"))]
fn main() {}
