//! `guest=hvc`: PSCI and SMCCC discovery calls, an unknown SiP call, Keel's vendor test
//! hypercall to the VM monitor, and the cost of a PSCI_VERSION round trip.

use super::Outcome;
use crate::runtime::Guest;
use crate::smccc::*;
use crate::text::Text;
use crate::{psci, timer};

/// An unallocated PSCI function number.
const PSCI_UNKNOWN: u32 = 0x8400_00ff;
/// A SiP-service fast SMC64 call nobody implements.
const SIP_UNKNOWN: u32 = 0xC200_1234;
/// Calls timed for the round-trip figure.
const ROUNDS: u64 = 1000;

pub fn run(guest: &Guest) -> Outcome {
    let version = psci::version();
    say!(
        "hvc: PSCI_VERSION = {version:#x} ({}.{})",
        version >> 16,
        version & 0xffff
    );
    ensure!(
        version == PSCI_1_1,
        "PSCI_VERSION returned {version:#x}, want {PSCI_1_1:#x} (PSCI 1.1)"
    );

    for (id, name) in [
        (PSCI_VERSION, "PSCI_VERSION"),
        (PSCI_CPU_ON, "CPU_ON"),
        (PSCI_SYSTEM_OFF, "SYSTEM_OFF"),
    ] {
        let r = psci::features(id);
        say!("hvc: PSCI_FEATURES({name} {id:#x}) = {r}");
        ensure!(
            r >= 0,
            "PSCI_FEATURES({name}) returned {r} ({}), want implemented",
            result_name(r)
        );
    }
    let r = psci::features(PSCI_UNKNOWN);
    say!("hvc: PSCI_FEATURES({PSCI_UNKNOWN:#x}) = {r}");
    ensure!(
        r == NOT_SUPPORTED,
        "PSCI_FEATURES of an unknown function returned {r}, want NOT_SUPPORTED (-1)"
    );

    let smccc = psci::call(SMCCC_VERSION, 0, 0, 0) as i64;
    if smccc == NOT_SUPPORTED {
        say!("hvc: SMCCC_VERSION = NOT_SUPPORTED (SMCCC 1.0)");
    } else {
        say!(
            "hvc: SMCCC_VERSION = {smccc:#x} ({}.{})",
            smccc >> 16,
            smccc & 0xffff
        );
        ensure!(
            smccc >= 0x1_0000,
            "SMCCC_VERSION returned {smccc:#x}, want >= 0x10000 or NOT_SUPPORTED"
        );
    }

    let r = psci::call(SIP_UNKNOWN, 1, 2, 3) as i64;
    say!("hvc: unknown SiP call {SIP_UNKNOWN:#x} = {r}");
    ensure!(
        r == NOT_SUPPORTED,
        "unknown SiP call {SIP_UNKNOWN:#x} returned {r}, want -1"
    );

    let r = psci::call(KEEL_VENDOR_TEST, 0x1234, 0, 0);
    say!("hvc: Keel vendor test call {KEEL_VENDOR_TEST:#x}(0x1234) = {r:#x}");
    if r as i64 == NOT_SUPPORTED && guest.plain {
        say!("hvc: no VM monitor answers vendor calls on plain QEMU (guest.plain): -1 accepted");
    } else {
        ensure!(
            r == 0x1235,
            "vendor test call returned {r:#x}, want 0x1235 (x1 + 1 from the VM monitor)"
        );
    }

    let start = timer::now();
    for _ in 0..ROUNDS {
        let v = psci::version();
        if v != version {
            return Err(Text::format(format_args!(
                "PSCI_VERSION changed to {v:#x} during the loop"
            )));
        }
    }
    let ticks = (timer::now() - start) / ROUNDS;
    say!("hvc round trip: {ticks} ticks");

    // The in-kernel vGIC: a distributor register read (GICD_TYPER) round trip.
    let start = timer::now();
    for _ in 0..ROUNDS {
        // SAFETY: GICD_TYPER is a read-only register of the distributor the machine provides.
        let _ = unsafe { crate::arch::mmio::read32(crate::machine::GICD_BASE + 0x4) };
    }
    let dist = (timer::now() - start) / ROUNDS;
    say!("vgic distributor read: {dist} ticks");
    super::note(format_args!(
        "({ticks} ticks per PSCI_VERSION, {} ns)",
        timer::to_us(ticks * 1000)
    ))
}
