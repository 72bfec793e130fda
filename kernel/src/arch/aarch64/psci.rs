//! PSCI (Arm DEN 0022) calls to the firmware — on QEMU with virtualization=on, QEMU itself,
//! reached with `smc #0`. The conduit comes from the DTB.

use core::sync::atomic::{AtomicU8, Ordering};
use keel_platform::dtb::PsciConduit;

const PSCI_VERSION: u64 = 0x8400_0000;
const PSCI_CPU_OFF: u64 = 0x8400_0002;
const PSCI_CPU_ON: u64 = 0xC400_0003;
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
const PSCI_SYSTEM_RESET: u64 = 0x8400_0009;

const CONDUIT_NONE: u8 = 0;
const CONDUIT_SMC: u8 = 1;
const CONDUIT_HVC: u8 = 2;
static CONDUIT: AtomicU8 = AtomicU8::new(CONDUIT_NONE);

/// A PSCI error code (negative return value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciError(pub i64);

/// Selects how PSCI is reached (from the DTB's /psci method).
pub fn set_conduit(conduit: PsciConduit) {
    let c = match conduit {
        PsciConduit::Smc => CONDUIT_SMC,
        PsciConduit::Hvc => CONDUIT_HVC,
    };
    CONDUIT.store(c, Ordering::Relaxed);
}

fn call(fid: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = fid;
    match CONDUIT.load(Ordering::Relaxed) {
        // SAFETY: an SMCCC call to the firmware; it may clobber x0-x17 and touches no memory of ours.
        CONDUIT_SMC => unsafe {
            core::arch::asm!("smc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                out("x15") _, out("x16") _, out("x17") _, options(nostack))
        },
        // SAFETY: as above, through the hypervisor conduit (Keel running at EL1 under QEMU).
        CONDUIT_HVC => unsafe {
            core::arch::asm!("hvc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
                out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                out("x15") _, out("x16") _, out("x17") _, options(nostack))
        },
        _ => return -1,
    }
    x0 as i64
}

/// PSCI version as (major, minor).
pub fn version() -> (u16, u16) {
    let v = call(PSCI_VERSION, 0, 0, 0) as u64;
    ((v >> 16) as u16, v as u16)
}

/// Starts the CPU with affinity `mpidr` at physical address `entry` with `context` in x0.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), PsciError> {
    match call(PSCI_CPU_ON, mpidr, entry, context) {
        0 => Ok(()),
        e => Err(PsciError(e)),
    }
}

/// Powers this CPU off. Returns only if the firmware refuses.
pub fn cpu_off() -> PsciError {
    PsciError(call(PSCI_CPU_OFF, 0, 0, 0))
}

/// Powers the machine off (QEMU exits). Parks the CPU if the firmware does not.
pub fn system_off() -> ! {
    call(PSCI_SYSTEM_OFF, 0, 0, 0);
    super::cpu::halt()
}

/// Resets the machine. Parks the CPU if the firmware does not.
pub fn system_reset() -> ! {
    call(PSCI_SYSTEM_RESET, 0, 0, 0);
    super::cpu::halt()
}
