//! `guest=abort`: accesses to guest-physical addresses where nothing is (the hole at 0x2000_0000,
//! just past the end of RAM) must come back as synchronous external aborts taken at EL1 (data
//! abort EC 0x25 or instruction abort EC 0x21, fault status 0x10) — reads, writes and
//! instruction fetches — and IMPLEMENTATION DEFINED system registers must be UNDEFINED (EC 0x0). Each probe runs under `trap::catching`, which skips the faulting
//! instruction (or, for the branch into the hole, returns to the instruction after the `blr`).
//!
//! On plain QEMU (`guest.plain`) 0x2000_0000 is inside `virt`'s PCIe window, which reads as
//! all-ones and ignores writes, and QEMU's `max` CPU may implement the IMPDEF register; those
//! probes are then reported and not required.

use super::Outcome;
use crate::arch::mmio;
use crate::arch::trap::{self, Caught, EC_DABT_CUR, EC_IABT_CUR, EC_UNKNOWN, FSC_EXTERNAL};
use crate::hostile_plan::Width;
use crate::machine::HOLE;
use crate::runtime::Guest;
use crate::text::Text;
use core::fmt::{self, Write};

const SENTINEL: u64 = 0x0bad_0bad_0bad_0bad;

/// What a probe is expected to raise.
#[derive(Clone, Copy)]
enum Expect {
    DataAbort { write: bool },
    InstructionAbort,
    Undefined,
}

/// Checks `caught` against `expect` for a probe of `addr`; the error says what differed.
fn check(caught: Option<Caught>, expect: Expect, addr: Option<u64>) -> Result<Caught, Text> {
    let Some(c) = caught else {
        fail!("no exception")
    };
    let mut why = Text::new();
    let _ = match expect {
        Expect::DataAbort { write } => {
            if c.ec() != EC_DABT_CUR {
                write!(
                    why,
                    "EC {:#x}, want {EC_DABT_CUR:#x} (data abort, same EL)",
                    c.ec()
                )
            } else if c.fsc() != FSC_EXTERNAL {
                write!(
                    why,
                    "DFSC {:#x}, want {FSC_EXTERNAL:#x} (synchronous external abort)",
                    c.fsc()
                )
            } else if c.write() != write {
                write!(why, "WnR {}, want {}", c.write() as u8, write as u8)
            } else {
                Ok(())
            }
        }
        Expect::InstructionAbort => {
            if c.ec() != EC_IABT_CUR {
                write!(
                    why,
                    "EC {:#x}, want {EC_IABT_CUR:#x} (instruction abort, same EL)",
                    c.ec()
                )
            } else if c.fsc() != FSC_EXTERNAL {
                write!(
                    why,
                    "IFSC {:#x}, want {FSC_EXTERNAL:#x} (synchronous external abort)",
                    c.fsc()
                )
            } else {
                Ok(())
            }
        }
        Expect::Undefined => {
            if c.ec() != EC_UNKNOWN {
                write!(why, "EC {:#x}, want 0 (UNDEFINED)", c.ec())
            } else {
                Ok(())
            }
        }
    };
    if why.is_empty() {
        if let (Some(addr), true) = (addr, c.far_valid()) {
            if c.far != addr && !matches!(expect, Expect::Undefined) {
                fail!("FAR {:#x}, want {addr:#x}", c.far);
            }
        }
        if c.count != 1 {
            fail!("{} exceptions, want 1", c.count);
        }
        Ok(c)
    } else {
        Err(why)
    }
}

/// One probe: an access and the exception it must raise.
#[derive(Clone, Copy)]
enum Access {
    Read(u64),
    Write(u64),
    Fetch(u64),
    /// `mrs S3_1_C15_C2_0` (Cortex-A57's CPUACTLR_EL1, which QEMU's `max` CPU implements).
    ImpdefUsed,
    /// `mrs S3_6_C15_C15_7` (no CPU model defines it).
    ImpdefUnused,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Read(a) => write!(f, "read at {a:#x}"),
            Access::Write(a) => write!(f, "write at {a:#x}"),
            Access::Fetch(a) => write!(f, "instruction fetch at {a:#x}"),
            Access::ImpdefUsed => write!(f, "mrs S3_1_C15_C2_0 (IMPDEF)"),
            Access::ImpdefUnused => write!(f, "mrs S3_6_C15_C15_7 (IMPDEF, unused)"),
        }
    }
}

impl Access {
    fn expect(self) -> Expect {
        match self {
            Access::Read(_) => Expect::DataAbort { write: false },
            Access::Write(_) => Expect::DataAbort { write: true },
            Access::Fetch(_) => Expect::InstructionAbort,
            Access::ImpdefUsed | Access::ImpdefUnused => Expect::Undefined,
        }
    }

    fn address(self) -> Option<u64> {
        match self {
            Access::Read(a) | Access::Write(a) | Access::Fetch(a) => Some(a),
            Access::ImpdefUsed | Access::ImpdefUnused => None,
        }
    }

    /// Makes the access with synchronous exceptions caught; what a load returned, if it loads.
    fn run(self) -> (Option<u64>, Option<Caught>) {
        let (loaded, caught) = trap::catching(|| match self {
            // SAFETY: a load from an address where no device or RAM is expected; an abort is
            // caught and skipped.
            Access::Read(a) => Some(unsafe { mmio::load(a, Width::B32, SENTINEL) }),
            Access::Write(a) => {
                // SAFETY: a store to an address where no device or RAM is expected.
                unsafe { mmio::store(a, Width::B32, 0xdead_beef) };
                None
            }
            Access::Fetch(a) => {
                // SAFETY: branches into a hole; the abort handler resumes at the return address
                // in x30. Everything a called function may clobber is declared clobbered.
                unsafe {
                    core::arch::asm!("blr {a}", a = in(reg) a, clobber_abi("C"), options(nostack))
                };
                None
            }
            Access::ImpdefUsed => {
                let mut v = SENTINEL;
                // SAFETY: reads an IMPDEF register; the expected UNDEF is caught and skipped.
                unsafe {
                    core::arch::asm!("mrs {v}, S3_1_C15_C2_0", v = inout(reg) v, options(nostack))
                };
                Some(v)
            }
            Access::ImpdefUnused => {
                let mut v = SENTINEL;
                // SAFETY: as above.
                unsafe {
                    core::arch::asm!("mrs {v}, S3_6_C15_C15_7", v = inout(reg) v, options(nostack))
                };
                Some(v)
            }
        });
        (loaded, caught)
    }
}

pub fn run(guest: &Guest) -> Outcome {
    let past_ram = guest.ram.end();
    // (probe, whether plain QEMU answers it differently: the hole is its PCIe window, and its
    // `max` CPU implements the A57 IMPDEF register)
    let probes = [
        (Access::Read(HOLE), true),
        (Access::Write(HOLE), true),
        (Access::Read(past_ram), false),
        (Access::Write(past_ram), false),
        (Access::Fetch(past_ram), false),
        (Access::Fetch(HOLE), true),
        (Access::ImpdefUsed, true),
        (Access::ImpdefUnused, false),
    ];
    let mut tolerated = 0;
    for (access, plain_differs) in probes {
        let (loaded, caught) = access.run();
        match check(caught, access.expect(), access.address()) {
            Ok(c) => say!(
                "abort: {access}: ESR {:#x} (EC {:#x}, FSC {:#x}) FAR {:#x} ELR {:#x}",
                c.esr,
                c.ec(),
                c.fsc(),
                c.far,
                c.elr
            ),
            Err(why) if plain_differs && guest.plain => {
                tolerated += 1;
                match loaded {
                    Some(v) => {
                        say!("abort: {access}: {why} (loaded {v:#x}); tolerated on plain QEMU")
                    }
                    None => say!("abort: {access}: {why}; tolerated on plain QEMU"),
                }
            }
            Err(why) => fail!("{access}: {why}"),
        }
    }
    if tolerated > 0 {
        super::note(format_args!(
            "({tolerated} probes answered differently by plain QEMU)"
        ))
    } else {
        Ok(Text::new())
    }
}
