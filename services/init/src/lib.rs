//! init / procmgr: the first process.
//!
//! It reads the boot manifest (`etc/manifest` in the initrd), starts each service with the
//! capabilities it needs, restarts services that exit (per their `restart=` policy, with a
//! bounded back-off), and serves the process-manager protocol (`keel_rt::proto::procmgr`):
//! spawn a program from the initrd, kill, ps, power off. With `scenario=<name>` on the kernel
//! command line it starts the core services and runs `/bin/ktest <name>` instead of the shell,
//! then powers off.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod access;
pub mod pidns;
pub mod policy;
pub mod request;

#[cfg(target_os = "none")]
mod procmgr;

#[cfg(target_os = "none")]
pub use procmgr::main;

#[cfg(not(target_os = "none"))]
pub fn main(_startup: &keel_rt::startup::Startup) -> i32 {
    0
}
