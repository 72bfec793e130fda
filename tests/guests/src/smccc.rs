//! SMC Calling Convention and PSCI numbers the guest uses, and the one policy decision about
//! them: which calls the `hostile` scenario must never make (they would switch the guest off or
//! start a CPU at an address the fuzzer made up). Arch-neutral: the call itself is in
//! `arch::call`.

/// PSCI_VERSION (returns major << 16 | minor).
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// CPU_OFF: powers the calling CPU down; returns only on failure.
pub const PSCI_CPU_OFF: u32 = 0x8400_0002;
/// CPU_ON, SMC64: x1 = target MPIDR, x2 = entry point (physical), x3 = context ID.
pub const PSCI_CPU_ON: u32 = 0xC400_0003;
/// AFFINITY_INFO, SMC64: x1 = target MPIDR, x2 = lowest affinity level.
pub const PSCI_AFFINITY_INFO: u32 = 0xC400_0004;
/// SYSTEM_OFF: never returns.
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
/// PSCI_FEATURES: x1 = a PSCI function ID; 0 (or feature flags) if implemented.
pub const PSCI_FEATURES: u32 = 0x8400_000A;
/// SMCCC_VERSION (SMCCC 1.1+; returns major << 16 | minor, or NOT_SUPPORTED).
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// Keel's test hypercall, answered by the VM monitor: returns x1 + 1. A fast SMC64 call in the
/// vendor-specific hypervisor service range (owner 6).
pub const KEEL_VENDOR_TEST: u32 = 0xC600_0001;

/// PSCI 1.1, the version Keel implements.
pub const PSCI_1_1: u64 = 0x0001_0001;

/// AFFINITY_INFO: the CPU is on.
pub const AFFINITY_ON: i64 = 0;
/// AFFINITY_INFO: the CPU is off.
pub const AFFINITY_OFF: i64 = 1;
/// AFFINITY_INFO: the CPU is being switched on.
pub const AFFINITY_ON_PENDING: i64 = 2;

/// PSCI/SMCCC return codes.
pub const SUCCESS: i64 = 0;
/// Function not implemented (also SMCCC's "unknown function").
pub const NOT_SUPPORTED: i64 = -1;
/// A parameter is invalid (e.g. a target CPU that does not exist).
pub const INVALID_PARAMETERS: i64 = -2;
/// CPU_ON: the target is already on.
pub const ALREADY_ON: i64 = -4;
/// CPU_ON: the target is already being switched on.
pub const ON_PENDING: i64 = -5;
/// CPU_ON: the entry point is not a valid physical address.
pub const INVALID_ADDRESS: i64 = -9;

/// A readable name for a PSCI return code.
pub fn result_name(code: i64) -> &'static str {
    match code {
        0 => "SUCCESS",
        -1 => "NOT_SUPPORTED",
        -2 => "INVALID_PARAMETERS",
        -3 => "DENIED",
        -4 => "ALREADY_ON",
        -5 => "ON_PENDING",
        -6 => "INTERNAL_FAILURE",
        -7 => "NOT_PRESENT",
        -8 => "DISABLED",
        -9 => "INVALID_ADDRESS",
        _ => "other",
    }
}

/// Owning entity of a function ID (bits 29:24).
pub fn owner(id: u32) -> u32 {
    (id >> 24) & 0x3f
}

/// Standard secure service calls (PSCI lives here).
pub const OWNER_STANDARD_SECURE: u32 = 4;

/// Whether `id` is a PSCI call that switches a CPU or the system off, suspends, resets, freezes,
/// migrates or starts a CPU — anything the `hostile` fuzzer must not make with random arguments.
/// Matched on the owner and the low 16 bits only, so IDs with stray bits in 23:16 (which SMCCC
/// says are unknown functions) are avoided too, in case a hypervisor decodes them loosely.
pub fn changes_power_state(id: u32) -> bool {
    owner(id) == OWNER_STANDARD_SECURE
        && matches!(
            id & 0xffff,
            0x01 // CPU_SUSPEND
            | 0x02 // CPU_OFF
            | 0x03 // CPU_ON (a random entry point would run garbage)
            | 0x05 // MIGRATE
            | 0x08 // SYSTEM_OFF
            | 0x09 // SYSTEM_RESET
            | 0x0b // CPU_FREEZE
            | 0x0c // CPU_DEFAULT_SUSPEND
            | 0x0e // SYSTEM_SUSPEND
            | 0x12 // SYSTEM_RESET2
            | 0x13 // MEM_PROTECT
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_state_calls_are_denied_in_both_conventions() {
        for id in [
            0x8400_0001,
            0xC400_0001,
            PSCI_CPU_OFF,
            0x8400_0003,
            PSCI_CPU_ON,
            PSCI_SYSTEM_OFF,
            0x8400_0009,
            0x8400_0012,
            0xC400_0012,
            0xC400_000E,
            0x8400_000B,
            0x8412_0008,
        ] {
            assert!(changes_power_state(id), "{id:#x}");
        }
    }

    #[test]
    fn harmless_calls_are_allowed() {
        for id in [
            PSCI_VERSION,
            PSCI_FEATURES,
            PSCI_AFFINITY_INFO,
            SMCCC_VERSION,
            KEEL_VENDOR_TEST,
            0xC200_1234,
            0x8600_0008,
            0x8000_0008,
        ] {
            assert!(!changes_power_state(id), "{id:#x}");
        }
    }
}
