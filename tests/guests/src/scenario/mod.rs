//! The scenarios, one module each. A scenario runs on the primary CPU, prints what it observes
//! (`guest: <name>: ...` lines), and returns `Ok(note)` for `guest: <name>: PASS[ note]` or
//! `Err(why)` for `guest: <name>: FAIL <why>`; the runtime prints that line and switches off.
//! A scenario never leaves a synchronous exception unhandled outside `trap::catching`: one is
//! fatal (a FAIL line names it).

use crate::runtime::Guest;
use crate::text::Text;
use core::fmt;

/// `Ok(note)`: PASS (with an optional note); `Err(why)`: FAIL.
pub type Outcome = Result<Text, Text>;

/// Returns `Err` with a formatted reason.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::text::Text::format(format_args!($($arg)*)))
    };
}

/// Fails with a formatted reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            fail!($($arg)*);
        }
    };
}

mod abort;
mod bench;
mod crash;
mod debug;
mod hostile;
mod hvc;
mod mmio;
mod pmu;
mod sgi;
mod smp;
mod sve;
mod switch;
mod timer;
mod timers;
mod virtio;
mod wfi;

/// One scenario.
pub struct Scenario {
    /// The name after `guest=`.
    pub name: &'static str,
    /// Runs it on the primary CPU.
    pub run: fn(&Guest) -> Outcome,
}

/// Every scenario, in the order README.md lists them.
pub static ALL: &[Scenario] = &[
    Scenario {
        name: "hvc",
        run: hvc::run,
    },
    Scenario {
        name: "mmio",
        run: mmio::run,
    },
    Scenario {
        name: "abort",
        run: abort::run,
    },
    Scenario {
        name: "timer",
        run: timer::run,
    },
    Scenario {
        name: "timers",
        run: timers::run,
    },
    Scenario {
        name: "wfi",
        run: wfi::run,
    },
    Scenario {
        name: "smp",
        run: smp::run,
    },
    Scenario {
        name: "sgi",
        run: sgi::run,
    },
    Scenario {
        name: "debug",
        run: debug::run,
    },
    Scenario {
        name: "pmu",
        run: pmu::run,
    },
    Scenario {
        name: "bench",
        run: bench::run,
    },
    Scenario {
        name: "sve",
        run: sve::run,
    },
    Scenario {
        name: "switch",
        run: switch::run,
    },
    Scenario {
        name: "hostile",
        run: hostile::run,
    },
    Scenario {
        name: "crash",
        run: crash::run,
    },
    Scenario {
        name: "virtio",
        run: virtio::run,
    },
    Scenario {
        name: "virtio-hostile",
        run: virtio::run_hostile,
    },
    Scenario {
        name: "virtio-loop",
        run: virtio::run_loop,
    },
    Scenario {
        name: "virtio-bench",
        run: virtio::run_bench,
    },
];

/// Displays the scenario names, space-separated.
pub struct Names;

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s.name)?;
        }
        Ok(())
    }
}

/// A PASS note.
fn note(args: fmt::Arguments<'_>) -> Outcome {
    Ok(Text::format(args))
}
