//! Architecture support. `esr` is pure decoding (host-tested); `aarch64` is everything that
//! touches the CPU: boot, vectors, system registers, the MMU, the GIC CPU interface, the timer,
//! PSCI and SMP bring-up. All of the kernel's `unsafe` lives under `aarch64/`.

pub mod esr;

#[cfg(target_os = "none")]
pub mod aarch64;
