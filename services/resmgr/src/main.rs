//! resmgr: see the library for what it does.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
keel_rt::entry!(keel_resmgr::service::main);

#[cfg(not(target_os = "none"))]
fn main() {}
