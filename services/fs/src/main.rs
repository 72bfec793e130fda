//! fs: the file-system service (see the library; the Keel-only parts are in `service.rs`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod resmgr_link;
#[cfg(target_os = "none")]
mod service;

#[cfg(target_os = "none")]
keel_rt::entry!(service::main);

#[cfg(not(target_os = "none"))]
fn main() {}
