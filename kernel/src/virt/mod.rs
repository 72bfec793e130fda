//! The CPU side of virtualization: virtual machines (stage-2 address spaces), virtual CPUs,
//! the in-kernel vGICv3 and PSCI. Arch-neutral and host-tested; the arch layer
//! (`arch::aarch64::virt`) enters and leaves guests and saves their system registers.
#![forbid(unsafe_code)]

pub mod exit;
pub mod idregs;
pub mod psci;
pub mod syndrome;
pub mod vcpu;
pub mod vgic;
pub mod vm;
