//! AArch64 at EL2 with VHE (HCR_EL2.E2H=1, TGE=1).
//!
//! Owns the boot path (`boot.S`), the exception vectors (`vectors.S`), system-register access and
//! the CPU-local devices. Under VHE the `*_EL1` register names used here reach the EL2 registers;
//! the one exception is the refusal path, where the same code runs at EL1 only to print why Keel
//! cannot run and power off.

core::arch::global_asm!(include_str!("boot.S"), options(raw));
core::arch::global_asm!(include_str!("vectors.S"), options(raw));

pub mod console;
pub mod cpu;
pub mod entry;
pub mod exception;
pub mod fp;
pub mod gic;
pub mod irq;
pub mod kspace;
pub mod psci;
pub mod smp;
pub mod sve;
pub mod sysreg;
pub mod timer;
pub mod user;
pub mod virt;
pub mod hal;
