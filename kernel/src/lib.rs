//! Keel: a capability microkernel for ARM64 that runs at EL2 and is also the hypervisor.
//!
//! This crate is the kernel. Arch-neutral logic (memory layout, frame accounting, page-table
//! building, command line, log formatting, ESR decoding, the boot report) builds for the host and
//! is unit-tested there; everything that touches the CPU lives in `arch::aarch64` and is built
//! only for the bare-metal target. Outside `arch::aarch64`, `unsafe` is forbidden (except one
//! block in the host-test fake of the HAL, which hands out fake page-table frames).
#![cfg_attr(target_os = "none", no_std)]
#![deny(unsafe_code)]

extern crate alloc;
// Strong memcpy/memmove/memset for the bare-metal build (replacing compiler-builtins' weak ones).
use keel_mem as _;

#[allow(unsafe_code)]
pub mod arch;
pub mod boot_report;
pub mod cap;
pub mod census;
pub mod cmdline;
pub mod failpoint;
pub mod hal;
pub mod idmap;
pub mod ipc;
pub mod kernel;
pub mod klog;
pub mod loader;
pub mod mm;
pub mod object;
pub mod percpu;
pub mod sched;
pub mod syscall;
pub mod trap;
pub mod virt;

#[cfg(test)]
mod atomic_tests;
#[cfg(test)]
mod quota_tests;
#[cfg(test)]
mod tests;
#[cfg(target_os = "none")]
pub mod scenario;

#[cfg(target_os = "none")]
mod panic {
    use crate::arch::aarch64::{console, cpu, psci};

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        let cpu = cpu::cpu_id();
        match info.location() {
            Some(loc) => console::print_panic(format_args!(
                "\nkeel: PANIC on cpu{cpu} at {}:{}: {}\n",
                loc.file(),
                loc.line(),
                info.message()
            )),
            None => console::print_panic(format_args!("\nkeel: PANIC on cpu{cpu}: {}\n", info.message())),
        }
        console::print_panic(format_args!("keel: powering off after panic\n"));
        psci::system_off()
    }
}
