//! The Keel kernel binary: links the `keel_kernel` library, whose boot.S `_start` is the entry.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[used]
static ENTRY: unsafe extern "C" fn() = {
    unsafe extern "C" {
        fn _start();
    }
    _start
};

/// On the host the kernel is a library under test; this binary does nothing there.
#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
use keel_kernel as _;
