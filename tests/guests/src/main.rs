//! Keel's in-tree test guests: one bare-metal EL1 program, packed as an arm64 Linux `Image`,
//! that runs the scenario named by `guest=<name>` in `/chosen/bootargs` and reports
//! `guest: <name>: PASS` or `guest: <name>: FAIL <why>` on the PL011, then PSCI SYSTEM_OFF.
//! The scenarios exercise what a hypervisor must get right for a guest: PSCI and SMCCC calls,
//! MMIO emulation, abort and UNDEF injection, the virtual timer, WFI/WFE, SMP bring-up, SGIs,
//! and survival of a hostile or crashing guest. See README.md.
//!
//! On the host the binary is an empty stub; the arch-neutral modules (DTB reader, command line,
//! messages, SMCCC policy, system-register space, hostile planner) are unit-tested there.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

mod cmdline;
mod dtb;
mod hostile_plan;
mod machine;
mod smccc;
mod sysreg_space;
mod text;

#[cfg(target_os = "none")]
#[macro_use]
mod console;
#[cfg(target_os = "none")]
#[macro_use]
mod arch;
#[cfg(target_os = "none")]
mod gic;
#[cfg(target_os = "none")]
mod percpu;
#[cfg(target_os = "none")]
mod psci;
#[cfg(target_os = "none")]
mod runtime;
#[cfg(target_os = "none")]
mod scenario;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod timer;
#[cfg(target_os = "none")]
mod wait;

/// On the host this binary does nothing; `cargo test` runs the arch-neutral unit tests.
#[cfg(not(target_os = "none"))]
fn main() {}
