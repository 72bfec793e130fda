//! The Keel user runtime: what every EL0 program links.
//!
//! - `sys`: one safe function per system call (`sys::raw` holds the `svc` itself);
//! - the program entry (`entry!`), the heap, `print!`/`println!`, and the panic handler;
//! - `startup`: the arguments and named capabilities the creator passed;
//! - `ipc`: typed client/server helpers with a per-connection shared buffer for bulk data;
//! - `reconnect`: a client of a named service that finds it again after it restarts;
//! - `fs`: files through the file service, libc-style (open/read/write/stat/readdir ...);
//! - `process`: loading a program from an ELF image into a new process (spawn) and waiting.
//!
//! On the host the system calls return `Error::NoSys`, so logic built on this crate is unit-tested
//! there. This crate is to user programs what `arch` is to the kernel: the `unsafe` of user space
//! lives here (system calls, the entry and heap, device registers, shared IPC buffers, deliberate
//! faults), each block with its SAFETY reason; programs themselves forbid `unsafe`.
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;
// Strong memcpy/memmove/memset for the bare-metal build (replacing compiler-builtins' weak ones).
use keel_mem as _;

pub mod io;
pub mod errno;
pub mod fault;
pub mod fs;
pub mod ipc;
pub mod mmio;
pub mod process;
pub mod proto;
pub mod random;
pub mod reconnect;
pub mod startup;
pub mod sync;
pub mod sys;
pub mod thread;
pub mod vm;

#[cfg(target_os = "none")]
mod runtime;

pub use keel_abi as abi;
pub use keel_abi::{Error, Slot};

/// Declares the program's main function: `keel_rt::entry!(main);` with `fn main(s: &Startup) -> i32`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[unsafe(no_mangle)]
        pub fn keel_main(startup: &$crate::startup::Startup) -> i32 {
            $main(startup)
        }
    };
}
