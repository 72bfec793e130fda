//! PSCI 1.1 and SMCCC calls from guests, decoded into what the kernel must do.
//!
//! Pure: [`decode`] turns the guest's x0..x3 into a [`Call`]; the kernel (`virt::exit`) carries it
//! out against its vCPU state and returns the PSCI status codes defined here. Function IDs outside
//! the PSCI and SMCCC-architecture ranges are not decided here: vendor hypervisor calls go to the
//! VM monitor and every other unknown ID returns NOT_SUPPORTED. One vendor hypervisor call is the
//! kernel's own: [`KEEL_YIELD`].

/// PSCI return codes (PSCI 1.1, table 6).
pub const SUCCESS: i64 = 0;
pub const NOT_SUPPORTED: i64 = -1;
pub const INVALID_PARAMETERS: i64 = -2;
pub const DENIED: i64 = -3;
pub const ALREADY_ON: i64 = -4;
pub const ON_PENDING: i64 = -5;
pub const INVALID_ADDRESS: i64 = -9;

/// AFFINITY_INFO results.
pub const AFFINITY_ON: i64 = 0;
pub const AFFINITY_OFF: i64 = 1;
pub const AFFINITY_ON_PENDING: i64 = 2;

/// PSCI_VERSION: 1.1.
pub const VERSION_1_1: i64 = 0x0001_0001;
/// SMCCC_VERSION: 1.1.
pub const SMCCC_VERSION_1_1: i64 = 0x0001_0001;
/// MIGRATE_INFO_TYPE: no Trusted OS that needs migration.
pub const MIGRATE_NOT_REQUIRED: i64 = 2;

const PSCI_VERSION: u32 = 0x8400_0000;
const CPU_SUSPEND: u32 = 0x8400_0001;
const CPU_OFF: u32 = 0x8400_0002;
const CPU_ON: u32 = 0x8400_0003;
const AFFINITY_INFO: u32 = 0x8400_0004;
const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
const SYSTEM_OFF: u32 = 0x8400_0008;
const SYSTEM_RESET: u32 = 0x8400_0009;
const PSCI_FEATURES: u32 = 0x8400_000A;
const SYSTEM_RESET2: u32 = 0x8400_0012;
const SMCCC_VERSION: u32 = 0x8000_0000;
const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// Keel's yield hypercall (vendor-specific hypervisor service, fast call, both conventions:
/// 0x8600_0100 and 0xC600_0100): the calling vCPU gives up its host CPU to the next thread of
/// its priority there, like a host thread's `yield`, and returns SUCCESS. For a guest that spins
/// on something another vCPU or VM must do (and for measuring switches between VMs).
pub const KEEL_YIELD: u32 = 0x8600_0100;

/// A decoded call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Answer with this value in x0 at once (VERSION, FEATURES, MIGRATE_INFO_TYPE, unknown
    /// functions in the PSCI and SMCCC-architecture ranges).
    Value(i64),
    /// CPU_ON: start the vCPU with affinity `target` at `entry` with x0 = `context`.
    CpuOn { target: u64, entry: u64, context: u64 },
    /// CPU_OFF: stop the calling vCPU.
    CpuOff,
    /// CPU_SUSPEND: a standby request; the kernel treats it as WFI and returns SUCCESS.
    CpuSuspend,
    /// AFFINITY_INFO for the vCPU with affinity `target` (level 0 only).
    AffinityInfo { target: u64 },
    SystemOff,
    SystemReset,
    /// [`KEEL_YIELD`]: give up the host CPU, then return SUCCESS.
    Yield,
    /// Not PSCI or SMCCC architecture: the caller decides (monitor or NOT_SUPPORTED).
    Other,
}

/// Whether the function ID is an SMC64/HVC64 call (bit 30), which takes 64-bit arguments.
fn is_64(fid: u64) -> bool {
    fid & (1 << 30) != 0
}

/// Decodes a call from the guest's x0..x3.
pub fn decode(x: [u64; 4]) -> Call {
    // Bits 63:32 of the function ID must be zero (SMCCC 1.1, 2.5); such IDs are unknown.
    let Ok(fid) = u32::try_from(x[0]) else { return Call::Value(NOT_SUPPORTED) };
    let arg = |i: usize| if is_64(x[0]) { x[i] } else { x[i] & 0xffff_ffff };
    let base = fid & !(1 << 30); // the SMC32 form of calls that have both
    match (fid, base) {
        (PSCI_VERSION, _) => Call::Value(VERSION_1_1),
        (_, CPU_SUSPEND) => Call::CpuSuspend,
        (CPU_OFF, _) => Call::CpuOff,
        (_, CPU_ON) => Call::CpuOn { target: arg(1), entry: arg(2), context: arg(3) },
        (_, AFFINITY_INFO) => {
            if arg(2) != 0 {
                Call::Value(INVALID_PARAMETERS)
            } else {
                Call::AffinityInfo { target: arg(1) }
            }
        }
        (MIGRATE_INFO_TYPE, _) => Call::Value(MIGRATE_NOT_REQUIRED),
        (SYSTEM_OFF, _) => Call::SystemOff,
        (SYSTEM_RESET, _) => Call::SystemReset,
        (PSCI_FEATURES, _) => Call::Value(features(x[1] & 0xffff_ffff)),
        (SMCCC_VERSION, _) => Call::Value(SMCCC_VERSION_1_1),
        (SMCCC_ARCH_FEATURES, _) => Call::Value(arch_features(x[1] & 0xffff_ffff)),
        (_, KEEL_YIELD) => Call::Yield,
        _ if is_psci_range(fid) || is_arch_range(fid) => Call::Value(NOT_SUPPORTED),
        _ if base == SYSTEM_RESET2 => Call::Value(NOT_SUPPORTED),
        _ => Call::Other,
    }
}

/// PSCI function IDs: 0x8400_0000..=0x8400_001F and the SMC64 forms 0xC400_0000..=0xC400_001F.
fn is_psci_range(fid: u32) -> bool {
    fid & !(1 << 30) & !0x1f == 0x8400_0000
}

/// SMCCC architecture calls: owning entity 0.
fn is_arch_range(fid: u32) -> bool {
    fid & (1 << 31) != 0 && (fid >> 24) & 0x3f == 0
}

/// PSCI_FEATURES: 0 for implemented functions (CPU_SUSPEND reports the original power-state
/// format, flags 0), NOT_SUPPORTED otherwise.
fn features(fid: u64) -> i64 {
    let fid = fid as u32;
    let base = fid & !(1 << 30);
    let known = matches!(fid, PSCI_VERSION | CPU_OFF | MIGRATE_INFO_TYPE | SYSTEM_OFF | SYSTEM_RESET | PSCI_FEATURES | SMCCC_VERSION)
        || matches!(base, CPU_SUSPEND | CPU_ON | AFFINITY_INFO);
    if known { SUCCESS } else { NOT_SUPPORTED }
}

/// SMCCC_ARCH_FEATURES: only the calls themselves; no firmware workarounds are needed under Keel.
fn arch_features(fid: u64) -> i64 {
    match fid as u32 {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => SUCCESS,
        _ => NOT_SUPPORTED,
    }
}

/// The affinity (Aff0) of the vCPU a CPU_ON/AFFINITY_INFO target names, if it names one:
/// MPIDR affinity fields Aff1..Aff3 must be zero (Keel numbers vCPUs in Aff0).
pub fn target_index(target: u64, vcpus: usize) -> Option<usize> {
    if target & !0xff != 0 {
        return None;
    }
    let i = (target & 0xff) as usize;
    (i < vcpus).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_features() {
        assert_eq!(decode([0x8400_0000, 0, 0, 0]), Call::Value(VERSION_1_1));
        assert_eq!(decode([0x8400_000A, 0xC400_0003, 0, 0]), Call::Value(SUCCESS));
        assert_eq!(decode([0x8400_000A, 0x8400_0003, 0, 0]), Call::Value(SUCCESS));
        assert_eq!(decode([0x8400_000A, 0x8400_00FF, 0, 0]), Call::Value(NOT_SUPPORTED));
        assert_eq!(decode([0x8400_000A, 0x8400_0012, 0, 0]), Call::Value(NOT_SUPPORTED));
        assert_eq!(decode([0x8000_0000, 0, 0, 0]), Call::Value(SMCCC_VERSION_1_1));
        assert_eq!(decode([0x8000_0001, 0x8000_8000, 0, 0]), Call::Value(NOT_SUPPORTED));
    }

    #[test]
    fn cpu_on_takes_64_or_32_bit_arguments() {
        assert_eq!(
            decode([0xC400_0003, 1, 0x4008_0000, 0x1_0000_0007]),
            Call::CpuOn { target: 1, entry: 0x4008_0000, context: 0x1_0000_0007 }
        );
        assert_eq!(
            decode([0x8400_0003, 0xffff_ffff_0000_0001, 0xaaaa_aaaa_4008_0000, 7]),
            Call::CpuOn { target: 1, entry: 0x4008_0000, context: 7 }
        );
    }

    #[test]
    fn affinity_info_only_at_level_0() {
        assert_eq!(decode([0xC400_0004, 2, 0, 0]), Call::AffinityInfo { target: 2 });
        assert_eq!(decode([0xC400_0004, 2, 1, 0]), Call::Value(INVALID_PARAMETERS));
    }

    #[test]
    fn unknown_ids() {
        // Unknown PSCI and architecture functions are answered here; anything else is "Other".
        assert_eq!(decode([0x8400_001F, 0, 0, 0]), Call::Value(NOT_SUPPORTED));
        assert_eq!(decode([0xC400_0012, 0, 0, 0]), Call::Value(NOT_SUPPORTED));
        assert_eq!(decode([0x8000_7FFF, 0, 0, 0]), Call::Value(NOT_SUPPORTED));
        assert_eq!(decode([0xC600_0001, 0, 0, 0]), Call::Other);
        assert_eq!(decode([0x8600_0101, 0, 0, 0]), Call::Other);
        assert_eq!(decode([0xC200_1234, 0, 0, 0]), Call::Other);
        assert_eq!(decode([0x1_8400_0000, 0, 0, 0]), Call::Value(NOT_SUPPORTED));
    }

    #[test]
    fn keel_yield_in_both_conventions() {
        assert_eq!(decode([0x8600_0100, 0, 0, 0]), Call::Yield);
        assert_eq!(decode([0xC600_0100, 7, 7, 7]), Call::Yield);
        assert_eq!(decode([0x1_8600_0100, 0, 0, 0]), Call::Value(NOT_SUPPORTED), "bits 63:32 set: no call");
    }

    #[test]
    fn targets() {
        assert_eq!(target_index(1, 2), Some(1));
        assert_eq!(target_index(2, 2), None);
        assert_eq!(target_index(0x100, 4), None);
        assert_eq!(target_index(0x8000_0000, 4), None);
    }
}
