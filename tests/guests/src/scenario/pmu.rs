//! `guest=pmu`: the PMUv3 as a guest at EL1 sees it behaves as the Arm ARM says (DDI 0487,
//! chapter D13 "The Performance Monitors Extension", the register descriptions in D24.5 and the
//! required events in D14.6; section numbers are those of issue M.a.a, older issues number some
//! differently). Each check cites its section; none is written from what a hypervisor does.
//!
//! - No PMU advertised (ID_AA64DFR0_EL1.PMUVer 0 or 0xF): PMCR_EL0 and PMCCNTR_EL0 are UNDEFINED
//!   (D24.5.8, D24.5.2: "present only when FEAT_PMUv3 is implemented").
//! - PMCR_EL0.E resets to 0, P and C are WO/RAZ (D24.5.8); every event counter below PMCR.N, its
//!   type register, the cycle counter and its filter read back what was written (32 or 64 bits,
//!   D13.1, D24.5.10); counters at and above N are UNDEFINED when FEAT_FGT is implemented
//!   (D13.11, R_SRPKH); the set/clear register pairs hold one bit per implemented counter and
//!   ignore the others (D13.11.1, I_DXWRB); PMCEID0 advertises SW_INCR and CPU_CYCLES (D14.6).
//! - Counting: the cycle counter counts only with PMCR.E and PMCNTENSET.C (D13.5.1); PMCR.C
//!   resets only the cycle counter, PMCR.P only the event counters, neither touches the
//!   overflow flags (D13.5.3, D24.5.8); SW_INCR counts every PMSWINC write exactly, two writes
//!   without a context synchronization count twice (D13.7.3.2); INST_RETIRED, where PMCEID0
//!   says it is implemented, counts a straight-line loop accurately (D13.2.2).
//! - Filtering: PMEVTYPER<n>.P / PMCCFILTR.P = 1 stops counting at EL1 and U = 1 does not
//!   (D13.7, D24.5.12, D24.5.1; NSK stays 0, so with EL3 present non-secure EL1 follows P too).
//! - Overflow (D13.3): a 32-bit overflow (LP = 0) and, with FEAT_PMUv3p5, a 64-bit one (LP = 1)
//!   set PMOVSSET; the cycle counter with LC = 1 overflows at 64 bits. The overflow interrupt
//!   (D13.3.1) is a level-sensitive request, asserted exactly while PMCR.E, PMINTENSET[n] and
//!   PMOVSSET[n] are all 1: it is taken (PPI 7, INTID 23) and, once the handler clears the flag,
//!   not again.
//! - PMSELR_EL0.SEL with PMXEVCNTR_EL0/PMXEVTYPER_EL0 reaches PMEVCNTR<n>/PMEVTYPER<n>, and
//!   SEL = 31 with PMXEVTYPER_EL0 reaches PMCCFILTR_EL0 (D24.5.22, D24.5.27, D24.5.28).
//!
//! The scenario owns the PMU while it runs and leaves it off: PMCR.E = 0, every counter and
//! overflow interrupt disabled, every overflow flag clear, every event type and filter 0, INTID
//! 23 disabled at the GIC.

use super::Outcome;
use crate::arch::trap::{self, EC_UNKNOWN};
use crate::runtime::Guest;
use crate::text::Text;
use crate::{arch, gic, percpu, psci, timer, wait};
use core::sync::atomic::Ordering::SeqCst;

/// PMCR_EL0 (D24.5.8): enable, event counter reset, cycle counter reset, long cycle counter,
/// long event counters (FEAT_PMUv3p5), N.
const PMCR_E: u64 = 1 << 0;
const PMCR_P: u64 = 1 << 1;
const PMCR_C: u64 = 1 << 2;
const PMCR_LC: u64 = 1 << 6;
const PMCR_LP: u64 = 1 << 7;
const PMCR_N_SHIFT: u64 = 11;
/// PMEVTYPER<n>_EL0 and PMCCFILTR_EL0: P (do not count at EL1), U (do not count at EL0).
const FILTER_P: u64 = 1 << 31;
const FILTER_U: u64 = 1 << 30;
/// The fields every PMUv3 implements in PMEVTYPER<n>_EL0: P, U and evtCount[15:0] (evtCount
/// in 0..0x40 reads back as written even when the event is not implemented, D24.5.12).
const EVTYPER_CHECKED: u64 = FILTER_P | FILTER_U | 0xffff;
/// Bit C (the cycle counter) of PMCNTENSET/CLR, PMINTENSET/CLR and PMOVSSET/CLR.
const CYCLE: u64 = 1 << 31;
/// Common events (D14.3).
const SW_INCR: u64 = 0x00;
const INST_RETIRED: u64 = 0x08;
const CPU_CYCLES: u64 = 0x11;
/// ID_AA64DFR0_EL1.PMUVer of FEAT_PMUv3p5 (64-bit event counters, PMCR.LP).
const PMUVER_V3P5: u64 = 6;

/// Turns of the busy loop in the counting checks (two instructions each).
const SPIN: u64 = 100_000;
/// Attempts of the across-exits comparison (host noise only ever inflates one sample).
const ACROSS_EXITS_ATTEMPTS: usize = 5;
/// Turns of the INST_RETIRED loop and its instructions per turn.
const RETIRED_TURNS: u64 = 10_000;
const RETIRED_PER_TURN: u64 = 5;
/// How long the interrupt line may take to follow the PMU state (the GIC's propagation; under
/// a hypervisor, an exit). Generous: the host may be loaded.
const SETTLE_MS: u64 = 100;
/// How long a line that must stay low is watched.
const QUIET_MS: u64 = 5;

type Check = Result<(), Text>;

macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(Text::format(format_args!($($arg)*)));
        }
    };
}

/// A PMU register read and write, each write followed by an ISB so its effect is visible to
/// what follows (PMU registers are not self-synchronizing).
macro_rules! pmu_reg {
    ($get:ident, $set:ident, $name:literal) => {
        fn $get() -> u64 {
            // SAFETY: reading a PMU register has no side effects; the scenario only calls this
            // once PMUVer says the PMU exists.
            unsafe { read_sysreg!($name) }
        }
        fn $set(value: u64) {
            // SAFETY: the scenario owns the PMU; it only counts, and its interrupt is handled.
            unsafe { write_sysreg!($name, value) }
            arch::isb();
        }
    };
}

pmu_reg!(pmcr, set_pmcr, "pmcr_el0");
pmu_reg!(pmccntr, set_pmccntr, "pmccntr_el0");
pmu_reg!(pmccfiltr, set_pmccfiltr, "pmccfiltr_el0");
pmu_reg!(pmcntenset, set_pmcntenset, "pmcntenset_el0");
pmu_reg!(pmcntenclr, set_pmcntenclr, "pmcntenclr_el0");
pmu_reg!(pmintenset, set_pmintenset, "pmintenset_el1");
pmu_reg!(pmintenclr, set_pmintenclr, "pmintenclr_el1");
pmu_reg!(pmovsset, set_pmovsset, "pmovsset_el0");
pmu_reg!(pmovsclr, set_pmovsclr, "pmovsclr_el0");
pmu_reg!(pmselr, set_pmselr, "pmselr_el0");
pmu_reg!(pmxevcntr, set_pmxevcntr, "pmxevcntr_el0");
pmu_reg!(pmxevtyper, set_pmxevtyper, "pmxevtyper_el0");

/// Writes PMSWINC_EL0 (write-only).
fn swinc(bits: u64) {
    // SAFETY: a software increment only counts on counters the scenario configured.
    unsafe { write_sysreg!("pmswinc_el0", bits) }
    arch::isb();
}

macro_rules! event_regs {
    ($($n:literal),*) => {
        /// Reads PMEVCNTR<n>_EL0 (`typer` false) or PMEVTYPER<n>_EL0 (`typer` true), n below 31.
        fn read_event(n: usize, typer: bool) -> u64 {
            let v: u64;
            // SAFETY: reading a PMU register has no side effects (an access the PE does not
            // implement is UNDEFINED, which the caller catches).
            unsafe {
                match (n, typer) {
                    $(($n, false) => core::arch::asm!(concat!("mrs {}, pmevcntr", stringify!($n), "_el0"), out(reg) v, options(nostack, preserves_flags)),
                    ($n, true) => core::arch::asm!(concat!("mrs {}, pmevtyper", stringify!($n), "_el0"), out(reg) v, options(nostack, preserves_flags)),)*
                    _ => panic!("PMU event counters are numbered below 31"),
                }
            }
            v
        }
        /// Writes PMEVCNTR<n>_EL0 or PMEVTYPER<n>_EL0, n below 31, then an ISB.
        fn write_event(n: usize, typer: bool, v: u64) {
            // SAFETY: the scenario owns the PMU's counters.
            unsafe {
                match (n, typer) {
                    $(($n, false) => core::arch::asm!(concat!("msr pmevcntr", stringify!($n), "_el0, {}"), in(reg) v, options(nostack, preserves_flags)),
                    ($n, true) => core::arch::asm!(concat!("msr pmevtyper", stringify!($n), "_el0, {}"), in(reg) v, options(nostack, preserves_flags)),)*
                    _ => panic!("PMU event counters are numbered below 31"),
                }
            }
            arch::isb();
        }
    };
}

event_regs!(
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30
);

fn evcntr(n: usize) -> u64 {
    read_event(n, false)
}

fn set_evcntr(n: usize, value: u64) {
    write_event(n, false, value)
}

fn evtyper(n: usize) -> u64 {
    read_event(n, true)
}

fn set_evtyper(n: usize, value: u64) {
    write_event(n, true, value)
}

/// Runs `turns` (at least 1) turns of a two-instruction register-only loop at EL1.
fn spin(turns: u64) {
    // SAFETY: a counted loop on one register.
    unsafe {
        core::arch::asm!(
            "2:",
            "subs {i}, {i}, #1",
            "b.ne 2b",
            i = inout(reg) turns.max(1) => _,
            options(nostack, nomem),
        )
    }
}

/// What the PMU advertises.
#[derive(Clone, Copy)]
struct Pmu {
    /// ID_AA64DFR0_EL1.PMUVer.
    version: u64,
    /// PMCR_EL0.N: event counters accessible at EL1.
    counters: usize,
    /// PMCEID0_EL0: common events 0..32 (bit n = event n) and 0x4000..0x4020.
    events: u64,
    /// ID_AA64MMFR0_EL1.FGT != 0.
    fgt: bool,
}

impl Pmu {
    /// The enable/overflow/interrupt bits of the event counters.
    fn counter_bits(&self) -> u64 {
        (1u64 << self.counters) - 1
    }

    /// Every implemented counter's bit, the cycle counter's included.
    fn all_bits(&self) -> u64 {
        self.counter_bits() | CYCLE
    }

    /// The bits an event counter holds: 64 with FEAT_PMUv3p5, else 32 (D13.1).
    fn width_mask(&self) -> u64 {
        if self.long_counters() { u64::MAX } else { 0xffff_ffff }
    }

    fn long_counters(&self) -> bool {
        self.version >= PMUVER_V3P5
    }

    fn has_event(&self, event: u64) -> bool {
        event < 32 && self.events & (1 << event) != 0
    }

    /// Everything off: PMCR.E = 0 (LC = 1, the other controls 0), counters and interrupts
    /// disabled, flags clear, event types and the cycle filter 0, PMSELR 0.
    fn quiesce(&self) {
        set_pmcr(PMCR_LC);
        set_pmcntenclr(self.all_bits());
        set_pmintenclr(self.all_bits());
        set_pmovsclr(self.all_bits());
        set_pmccfiltr(0);
        for n in 0..self.counters {
            set_evtyper(n, 0);
        }
        set_pmselr(0);
    }
}

pub fn run(_guest: &Guest) -> Outcome {
    // SAFETY: reading ID registers has no side effects.
    let (dfr0, mmfr0) = unsafe { (read_sysreg!("id_aa64dfr0_el1"), read_sysreg!("id_aa64mmfr0_el1")) };
    let version = (dfr0 >> 8) & 0xf;
    if version == 0 || version == 0xf {
        say!("pmu: ID_AA64DFR0_EL1 = {dfr0:#x}: PMUVer {version}: no PMUv3 advertised");
        absent(version)?;
        return super::note(format_args!("(no PMU advertised)"));
    }
    let pmcr_at_reset = pmcr();
    let pmu = Pmu {
        version,
        counters: ((pmcr_at_reset >> PMCR_N_SHIFT) & 0x1f) as usize,
        // SAFETY: reading PMCEID0_EL0 has no side effects.
        events: unsafe { read_sysreg!("pmceid0_el0") },
        fgt: (mmfr0 >> 56) & 0xf != 0,
    };
    say!(
        "pmu: PMUVer {version}, PMCR_EL0 = {pmcr_at_reset:#x}: N = {} event counters ({}-bit), PMCEID0_EL0 = {:#x}",
        pmu.counters,
        if pmu.long_counters() { 64 } else { 32 },
        pmu.events
    );
    gic::init_distributor()?;
    gic::init_this_cpu()?;
    arch::mask_irqs();

    let mut checks = 0u32;
    let mut failed = 0u32;
    let mut skipped = 0u32;
    let mut record = |name: &str, result: Check| {
        checks += 1;
        // Whatever the check left behind, the next one starts from a quiet PMU.
        pmu.quiesce();
        match result {
            Ok(()) => say!("pmu: {name}: ok"),
            Err(why) => {
                failed += 1;
                say!("pmu: {name}: FAILED: {why}");
            }
        }
    };
    let mut skip = |name: &str, why: &str| {
        skipped += 1;
        say!("pmu: {name}: skipped: {why}");
    };
    let counters = pmu.counters > 0;
    const NO_COUNTERS: &str = "PMCR_EL0.N = 0, no event counter";

    record("PMCR_EL0: E is 0 out of reset, P and C read as 0", reset_state(pmcr_at_reset));
    pmu.quiesce();
    record("every counter, event type and filter reads back what was written", read_back(&pmu));
    if pmu.counters == 31 {
        skip("event counters at and above N are UNDEFINED", "all 31 event counters are implemented");
    } else if !pmu.fgt {
        skip("event counters at and above N are UNDEFINED", "without FEAT_FGT the access is CONSTRAINED UNPREDICTABLE");
    } else {
        record("event counters at and above N are UNDEFINED", beyond_n(&pmu));
    }
    record("set/clear pairs hold one bit per implemented counter", set_clear_pairs(&pmu));
    if counters {
        record("PMCEID0_EL0 advertises the required SW_INCR and CPU_CYCLES", required_events(&pmu));
    } else {
        skip("PMCEID0_EL0 advertises the required SW_INCR and CPU_CYCLES", NO_COUNTERS);
    }
    record("the cycle counter counts only with PMCR.E and PMCNTENSET.C", cycle_enable(&pmu));
    record("the cycle counter goes on counting across exits to the hypervisor", across_exits(&pmu));
    record("PMCR.C resets only the cycle counter, PMCR.P only the event counters", resets(&pmu));
    if counters {
        record("SW_INCR counts exactly the PMSWINC_EL0 writes", software_increment(&pmu));
    } else {
        skip("SW_INCR counts exactly the PMSWINC_EL0 writes", NO_COUNTERS);
    }
    if !counters {
        skip("INST_RETIRED counts a known loop", NO_COUNTERS);
    } else if !pmu.has_event(INST_RETIRED) {
        skip("INST_RETIRED counts a known loop", "PMCEID0_EL0 bit 8 says INST_RETIRED is not implemented");
    } else {
        record("INST_RETIRED counts a known loop", instructions_retired());
    }
    record("filtering: P = 1 stops counting at EL1, U = 1 does not", filtering(&pmu));
    if counters {
        record("an event counter overflows at 32 bits with PMCR.LP = 0", overflow_32(&pmu));
    } else {
        skip("an event counter overflows at 32 bits with PMCR.LP = 0", NO_COUNTERS);
    }
    if !counters {
        skip("an event counter overflows at 64 bits with PMCR.LP = 1", NO_COUNTERS);
    } else if !pmu.long_counters() {
        skip(
            "an event counter overflows at 64 bits with PMCR.LP = 1",
            "PMUVer below FEAT_PMUv3p5: 32-bit event counters, no PMCR.LP",
        );
    } else {
        record("an event counter overflows at 64 bits with PMCR.LP = 1", overflow_64(&pmu));
    }
    record("the cycle counter overflows at 64 bits with PMCR.LC = 1", cycle_overflow(&pmu));
    if counters {
        record("the overflow interrupt request needs PMCR.E, PMINTENSET and PMOVSSET", interrupt_level(&pmu));
        record("an overflow interrupt is taken once and not after the flag is cleared", interrupt_taken(&pmu));
    } else {
        skip("the overflow interrupt request needs PMCR.E, PMINTENSET and PMOVSSET", NO_COUNTERS);
        skip("an overflow interrupt is taken once and not after the flag is cleared", NO_COUNTERS);
    }
    record("PMSELR_EL0 with PMXEVCNTR/PMXEVTYPER reaches the selected counter", selected_counter(&pmu));

    pmu.quiesce();
    gic::disable_private(gic::PMU_INTID);
    arch::unmask_irqs();
    ensure!(failed == 0, "{failed} of {checks} PMU checks failed");
    if skipped > 0 {
        super::note(format_args!("({checks} checks, {skipped} skipped, {} event counters)", pmu.counters))
    } else {
        super::note(format_args!("({checks} checks, {} event counters)", pmu.counters))
    }
}

/// No PMUv3: its registers are UNDEFINED (D24.5.8, D24.5.2).
fn absent(version: u64) -> Result<(), Text> {
    // SAFETY: reading the PMU registers has no side effects (or is UNDEFINED, caught here).
    let (_, pmcr) = trap::catching(|| unsafe { read_sysreg!("pmcr_el0") });
    let (_, ccnt) = trap::catching(|| unsafe { read_sysreg!("pmccntr_el0") });
    for (name, caught) in [("PMCR_EL0", pmcr), ("PMCCNTR_EL0", ccnt)] {
        let Some(c) = caught else { fail!("{name} is readable with PMUVer {version} (no PMU): want UNDEFINED") };
        ensure!(c.ec() == EC_UNKNOWN, "{name} with no PMU: EC {:#x}, want 0 (UNDEFINED)", c.ec());
    }
    say!("pmu: PMCR_EL0 and PMCCNTR_EL0 are UNDEFINED: ok");
    Ok(())
}

/// D24.5.8: PMCR_EL0.E resets to 0 on a warm reset; P and C are WO/RAZ.
fn reset_state(at_reset: u64) -> Check {
    check!(at_reset & PMCR_E == 0, "PMCR_EL0 = {at_reset:#x} at entry: E is 1, want 0 out of reset");
    set_pmcr(PMCR_LC | PMCR_P | PMCR_C);
    let after = pmcr();
    check!(after & (PMCR_P | PMCR_C) == 0, "PMCR_EL0 reads {after:#x} after writing P and C: they are WO/RAZ");
    check!(after & PMCR_LC != 0, "PMCR_EL0.LC reads 0 after writing 1 (it is RW or RES1)");
    Ok(())
}

/// D24.5.10, D24.5.12, D24.5.2, D24.5.1: the counters, types and filters hold what is written
/// (event counters 32 or 64 bits wide, D13.1), each its own.
fn read_back(pmu: &Pmu) -> Check {
    // Bits [63:32] only where they exist: without FEAT_PMUv3p5 they are RES0, which software
    // writes as 0 (a RES0 bit may hold what is written).
    let count = |n: usize| (0x0000_00a5_5a00_003c ^ ((n as u64) << 40) ^ ((n as u64) << 8)) & pmu.width_mask();
    // P and U in all four combinations, and a common event below 0x40 (D24.5.12: such a value
    // reads back as written even if the event is not implemented).
    let typer = |n: usize| ((n as u64 & 3) << 30) | ((n as u64 * 7 + 1) & 0x3f);
    for n in 0..pmu.counters {
        set_evcntr(n, count(n));
        set_evtyper(n, typer(n));
    }
    let cycles = 0x0123_4567_89ab_cdef;
    set_pmccntr(cycles);
    set_pmccfiltr(FILTER_P | FILTER_U);
    // Read everything after writing everything: no register aliases another.
    for n in 0..pmu.counters {
        let got = evcntr(n);
        check!(got == count(n), "PMEVCNTR{n}_EL0 reads {got:#x}, {:#x} was written", count(n));
        let got = evtyper(n) & EVTYPER_CHECKED;
        check!(got == typer(n), "PMEVTYPER{n}_EL0 reads {got:#x} in P, U and evtCount, {:#x} was written", typer(n));
    }
    let got = pmccntr();
    check!(got == cycles, "PMCCNTR_EL0 reads {got:#x}, {cycles:#x} was written (counter disabled)");
    let got = pmccfiltr() & (FILTER_P | FILTER_U);
    check!(got == FILTER_P | FILTER_U, "PMCCFILTR_EL0 reads {got:#x} in P and U, both were written 1");
    Ok(())
}

/// D13.11 (R_SRPKH) and D24.5.10/12: with FEAT_FGT, PMEVCNTR<n> and PMEVTYPER<n> for n at or
/// above the accessible counters are UNDEFINED.
fn beyond_n(pmu: &Pmu) -> Check {
    let n = pmu.counters;
    let probes: [(&str, bool, bool); 4] = [
        ("read of PMEVCNTR", false, false),
        ("write of PMEVCNTR", false, true),
        ("read of PMEVTYPER", true, false),
        ("write of PMEVTYPER", true, true),
    ];
    for (what, typer, write) in probes {
        let (_, caught) = trap::catching(|| {
            if write {
                write_event(n, typer, 0);
            } else {
                core::hint::black_box(read_event(n, typer));
            }
        });
        let Some(c) = caught else { fail!("{what}{n}_EL0 (N = {n}) completed: want UNDEFINED") };
        check!(c.ec() == EC_UNKNOWN, "{what}{n}_EL0 (N = {n}): EC {:#x}, want 0 (UNDEFINED)", c.ec());
    }
    Ok(())
}

/// D24.5.6/7, D24.5.17/18, D24.5.20/21 and D13.11.1 (I_DXWRB): the set and clear registers of
/// each pair read the same state; bits of counters that are not implemented are RAZ/WI.
fn set_clear_pairs(pmu: &Pmu) -> Check {
    type Pair = (&'static str, fn(u64), fn(u64), fn() -> u64, fn() -> u64);
    let pairs: [Pair; 3] = [
        ("PMCNTEN", set_pmcntenset, set_pmcntenclr, pmcntenset, pmcntenclr),
        ("PMINTEN", set_pmintenset, set_pmintenclr, pmintenset, pmintenclr),
        ("PMOVS", set_pmovsset, set_pmovsclr, pmovsset, pmovsclr),
    ];
    // PMCR.E = 0 all along: nothing counts and no interrupt is requested.
    let all = pmu.all_bits();
    for (name, set, clear, read_set, read_clear) in pairs {
        set(0xffff_ffff);
        let (s, c) = (read_set() & 0xffff_ffff, read_clear() & 0xffff_ffff);
        clear(0xffff_ffff);
        check!(
            s == all && c == all,
            "{name}SET written all ones: {name}SET reads {s:#x}, {name}CLR {c:#x}, want {all:#x} (N = {})",
            pmu.counters
        );
        let (s, c) = (read_set() & 0xffff_ffff, read_clear() & 0xffff_ffff);
        check!(s == 0 && c == 0, "{name}CLR written all ones: {name}SET reads {s:#x}, {name}CLR {c:#x}, want 0");
        // One bit at a time, through the set register, cleared through the clear register.
        let one = if pmu.counters > 1 { 1 << (pmu.counters - 1) } else { CYCLE };
        set(one);
        let s = read_set() & 0xffff_ffff;
        clear(one);
        check!(s == one, "{name}SET written {one:#x}: reads {s:#x}");
        check!(read_set() & 0xffff_ffff == 0, "{name}CLR written {one:#x}: the bit stays set");
    }
    Ok(())
}

/// D14.6: with at least one event counter, SW_INCR (0x00) and CPU_CYCLES (0x11) are implemented.
fn required_events(pmu: &Pmu) -> Check {
    check!(pmu.has_event(SW_INCR), "PMCEID0_EL0 = {:#x}: bit 0 (SW_INCR) clear", pmu.events);
    check!(pmu.has_event(CPU_CYCLES), "PMCEID0_EL0 = {:#x}: bit 17 (CPU_CYCLES) clear", pmu.events);
    Ok(())
}

/// Reads `read` around a busy loop: (before, after).
fn across_spin(read: impl Fn() -> u64) -> (u64, u64) {
    let before = read();
    spin(SPIN);
    arch::isb();
    (before, read())
}

/// D13.5.1.2: the cycle counter counts when PMCR.E and PMCNTENSET.C are both 1, and only then.
fn cycle_enable(_pmu: &Pmu) -> Check {
    set_pmccfiltr(0);
    set_pmccntr(0);
    set_pmcntenset(CYCLE);
    set_pmcr(PMCR_LC | PMCR_E);
    let (a, b) = across_spin(pmccntr);
    check!(b > a, "PMCR.E = 1, PMCNTENSET.C = 1: PMCCNTR_EL0 did not count over {SPIN} loop turns ({a} -> {b})");
    set_pmcntenclr(CYCLE);
    let (a, b) = across_spin(pmccntr);
    check!(b == a, "PMCNTENCLR.C written: PMCCNTR_EL0 still counted over {SPIN} loop turns ({a} -> {b})");
    check!(pmcntenset() & CYCLE == 0, "PMCNTENCLR.C written: PMCNTENSET.C still reads 1");
    set_pmcntenset(CYCLE);
    set_pmcr(PMCR_LC);
    let (a, b) = across_spin(pmccntr);
    check!(b == a, "PMCR.E = 0: PMCCNTR_EL0 still counted over {SPIN} loop turns ({a} -> {b})");
    set_pmcr(PMCR_LC | PMCR_E);
    let (a, b) = across_spin(pmccntr);
    check!(b > a, "PMCR.E = 1 again: PMCCNTR_EL0 did not count ({a} -> {b})");
    Ok(())
}

/// D13.2.2 (counts are accurate under normal operating conditions): the cycle counter counts
/// the guest's loop turns just as well when hvc exits to the hypervisor split them, though the
/// guest touches no PMU register between its two reads (a PMU that is the guest's only after a
/// PMU access would stop at the first exit).
fn across_exits(_pmu: &Pmu) -> Check {
    set_pmccfiltr(0);
    set_pmccntr(0);
    set_pmcntenset(CYCLE);
    set_pmcr(PMCR_LC | PMCR_E);
    // Without icount QEMU's cycle counter follows the host's clock while the vCPU runs, so a
    // host that deschedules QEMU inflates a sample, never shrinks it: the fewest cycles of the
    // plain loops is the loop's cost, the most of the split ones what counting across exits
    // gives. A counter that stops at an exit counts a fraction of the loop in every attempt.
    let (mut plain, mut split) = (u64::MAX, 0);
    for _ in 0..ACROSS_EXITS_ATTEMPTS {
        let (a, b) = across_spin(pmccntr);
        plain = plain.min(b.wrapping_sub(a));
        let a = pmccntr();
        for _ in 0..8 {
            core::hint::black_box(psci::version());
            spin(SPIN / 8);
        }
        arch::isb();
        split = split.max(pmccntr().wrapping_sub(a));
        if split >= plain / 2 {
            return Ok(());
        }
    }
    check!(
        split >= plain / 2,
        "{SPIN} loop turns split by 8 hvc exits: PMCCNTR_EL0 counted at most {split} in {ACROSS_EXITS_ATTEMPTS} attempts; the same turns without exits: at least {plain}"
    );
    Ok(())
}

/// D13.5.3, D24.5.8: PMCR.C zeroes PMCCNTR only, PMCR.P zeroes every accessible event counter
/// only; neither changes the overflow flags. Counters are disabled, so values stay put.
fn resets(pmu: &Pmu) -> Check {
    let cycles = 0x0000_7777_0000_1234;
    let count = |n: usize| 0x1000 + n as u64;
    let fill = || {
        set_pmccntr(cycles);
        for n in 0..pmu.counters {
            set_evcntr(n, count(n));
        }
    };
    fill();
    // An overflow flag set by software (PMOVSSET) must survive both resets.
    let flags = CYCLE | 1;
    set_pmovsset(flags & pmu.all_bits());
    set_pmcr(PMCR_LC | PMCR_C);
    let got = pmccntr();
    check!(got == 0, "PMCR.C written: PMCCNTR_EL0 reads {got:#x}, want 0");
    for n in 0..pmu.counters {
        let got = evcntr(n);
        check!(got == count(n), "PMCR.C written: PMEVCNTR{n}_EL0 reads {got:#x}, want {:#x} (untouched)", count(n));
    }
    fill();
    set_pmcr(PMCR_LC | PMCR_P);
    for n in 0..pmu.counters {
        let got = evcntr(n);
        check!(got == 0, "PMCR.P written: PMEVCNTR{n}_EL0 reads {got:#x}, want 0");
    }
    let got = pmccntr();
    check!(got == cycles, "PMCR.P written: PMCCNTR_EL0 reads {got:#x}, want {cycles:#x} (untouched)");
    let got = pmovsset() & 0xffff_ffff;
    check!(
        got == flags & pmu.all_bits(),
        "PMCR.C and P written: PMOVSSET_EL0 reads {got:#x}, want {:#x} (resets keep the overflow flags)",
        flags & pmu.all_bits()
    );
    Ok(())
}

/// Five writes of `bits` to PMSWINC_EL0 back to back, with no context synchronization between
/// them (D13.7.3.2: each one counts).
fn swinc_five(bits: u64) {
    // SAFETY: software increments only count on counters the scenario configured.
    unsafe {
        core::arch::asm!(
            "msr pmswinc_el0, {b}",
            "msr pmswinc_el0, {b}",
            "msr pmswinc_el0, {b}",
            "msr pmswinc_el0, {b}",
            "msr pmswinc_el0, {b}",
            "isb",
            b = in(reg) bits,
            options(nostack, preserves_flags),
        )
    }
}

/// D13.7.3.2 and D24.5.24: an enabled counter on SW_INCR counts every PMSWINC write to its bit,
/// exactly, and nothing while it or the PMU is disabled; other bits do not touch it.
fn software_increment(pmu: &Pmu) -> Check {
    set_evtyper(0, SW_INCR);
    set_evcntr(0, 0);
    set_pmcntenset(1);
    set_pmcr(PMCR_LC | PMCR_E);
    swinc_five(1);
    let got = evcntr(0);
    check!(got == 5, "5 PMSWINC_EL0 writes of bit 0: PMEVCNTR0_EL0 = {got}, want 5");
    set_pmcntenclr(1);
    swinc(1);
    swinc(1);
    let got = evcntr(0);
    check!(got == 5, "counter 0 disabled (PMCNTENCLR): 2 more writes made PMEVCNTR0_EL0 {got}, want 5");
    set_pmcntenset(1);
    set_pmcr(PMCR_LC);
    swinc(1);
    let got = evcntr(0);
    check!(got == 5, "PMCR.E = 0: a write made PMEVCNTR0_EL0 {got}, want 5");
    set_pmcr(PMCR_LC | PMCR_E);
    if pmu.counters >= 2 {
        set_evtyper(1, SW_INCR);
        set_evcntr(1, 0);
        set_pmcntenset(2);
        swinc(2);
        swinc(2);
        swinc(2);
        let (c0, c1) = (evcntr(0), evcntr(1));
        check!(c0 == 5 && c1 == 3, "3 writes of bit 1: PMEVCNTR0 = {c0} (want 5), PMEVCNTR1 = {c1} (want 3)");
        swinc(3);
        let (c0, c1) = (evcntr(0), evcntr(1));
        check!(c0 == 6 && c1 == 4, "a write of bits 0 and 1: PMEVCNTR0 = {c0} (want 6), PMEVCNTR1 = {c1} (want 4)");
    }
    Ok(())
}

/// Counts, on counter 0 (set up by the caller), `RETIRED_TURNS` turns of a
/// `RETIRED_PER_TURN`-instruction loop: the difference between two reads of PMEVCNTR0_EL0
/// around it (the loop, a `mov` and an `isb` lie between them).
fn count_retired() -> u64 {
    let (before, after): (u64, u64);
    // SAFETY: reads of PMEVCNTR0_EL0 around a counted loop on two scratch registers.
    unsafe {
        core::arch::asm!(
            "isb",
            "mrs {before}, pmevcntr0_el0",
            "mov {i}, {turns}",
            "2:",
            "add {a}, {a}, #1",
            "add {a}, {a}, #1",
            "add {a}, {a}, #1",
            "subs {i}, {i}, #1",
            "b.ne 2b",
            "isb",
            "mrs {after}, pmevcntr0_el0",
            before = out(reg) before,
            after = out(reg) after,
            i = out(reg) _,
            a = inout(reg) 0u64 => _,
            turns = in(reg) RETIRED_TURNS,
            options(nostack, nomem),
        )
    }
    after.wrapping_sub(before)
}

/// D13.2.2: under normal operating conditions the counters present an accurate count. An
/// INST_RETIRED counter over a straight-line loop counts at least every instruction of it and
/// at most a few more (the `mov`, the `isb`, the reads themselves; 1% for a stray boundary).
fn instructions_retired() -> Check {
    set_evtyper(0, INST_RETIRED);
    set_evcntr(0, 0);
    set_pmcntenset(1);
    set_pmcr(PMCR_LC | PMCR_E);
    let got = count_retired();
    let want = RETIRED_TURNS * RETIRED_PER_TURN;
    let slack = 32 + want / 100;
    check!(
        (want..=want + slack).contains(&got),
        "{RETIRED_TURNS} turns of {RETIRED_PER_TURN} instructions: INST_RETIRED counted {got}, want {want}..={}",
        want + slack
    );
    say!("pmu: INST_RETIRED counted {got} for {want} loop instructions (+{} around them)", got - want);
    Ok(())
}

/// D13.7.1, D24.5.12 (P, U), D24.5.1 (PMCCFILTR), D13.7.3.2: with P = 1 nothing the guest does
/// at EL1 is counted, by the cycle counter, a CPU_CYCLES counter, an INST_RETIRED counter or a
/// SW_INCR counter; with only U = 1 (EL0 excluded) each still counts at EL1.
fn filtering(pmu: &Pmu) -> Check {
    set_pmcr(PMCR_LC | PMCR_E);
    // The cycle counter.
    set_pmccfiltr(FILTER_P);
    set_pmcntenset(CYCLE);
    let (a, b) = across_spin(pmccntr);
    check!(b == a, "PMCCFILTR_EL0.P = 1: PMCCNTR_EL0 counted at EL1 ({a} -> {b})");
    set_pmccfiltr(FILTER_U);
    let (a, b) = across_spin(pmccntr);
    check!(b > a, "PMCCFILTR_EL0.U = 1 (P = 0): PMCCNTR_EL0 did not count at EL1 ({a} -> {b})");
    set_pmcntenclr(CYCLE);
    if pmu.counters == 0 {
        return Ok(());
    }
    set_pmcntenset(1);
    // Events that count by themselves.
    for (event, name) in [(CPU_CYCLES, "CPU_CYCLES"), (INST_RETIRED, "INST_RETIRED")] {
        if !pmu.has_event(event) {
            say!("pmu: filtering: {name} not in PMCEID0_EL0, not checked");
            continue;
        }
        set_evtyper(0, FILTER_P | event);
        set_evcntr(0, 0);
        let (a, b) = across_spin(|| evcntr(0));
        check!(b == a, "PMEVTYPER0_EL0 = {name} with P = 1: PMEVCNTR0_EL0 counted at EL1 ({a} -> {b})");
        set_evtyper(0, FILTER_U | event);
        let (a, b) = across_spin(|| evcntr(0));
        check!(b > a, "PMEVTYPER0_EL0 = {name} with U = 1 (P = 0): PMEVCNTR0_EL0 did not count at EL1 ({a} -> {b})");
    }
    // Software increments, filtered by the EL of the write (D13.7.3.2).
    set_evtyper(0, FILTER_P | SW_INCR);
    set_evcntr(0, 0);
    swinc_five(1);
    let got = evcntr(0);
    check!(got == 0, "SW_INCR with P = 1: 5 writes at EL1 counted {got}, want 0");
    set_evtyper(0, FILTER_U | SW_INCR);
    swinc_five(1);
    let got = evcntr(0);
    check!(got == 5, "SW_INCR with U = 1 (P = 0): 5 writes at EL1 counted {got}, want 5");
    Ok(())
}

/// D13.3 (R_QZJKS), D24.5.8 (LP): with LP = 0 an event counter overflows when bits [31:0] wrap;
/// the flag shows in PMOVSSET and PMOVSCLR, and with 64-bit counters bits [63:0] still
/// increment (I_FYVTD).
fn overflow_32(pmu: &Pmu) -> Check {
    set_evtyper(0, SW_INCR);
    set_evcntr(0, 0xffff_fffe);
    set_pmcntenset(1);
    set_pmcr(PMCR_LC | PMCR_E);
    swinc(1);
    check!(pmovsset() & 1 == 0, "PMEVCNTR0_EL0 0xfffffffe -> {:#x}: overflow flag set without an overflow", evcntr(0));
    swinc(1);
    let got = evcntr(0);
    let want = 0x1_0000_0000 & pmu.width_mask();
    check!(got == want, "PMEVCNTR0_EL0 0xffffffff + 1 reads {got:#x}, want {want:#x}");
    let (s, c) = (pmovsset(), pmovsclr());
    check!(s & 1 != 0, "PMEVCNTR0_EL0 wrapped bits [31:0] (LP = 0): PMOVSSET_EL0 = {s:#x}, bit 0 clear");
    check!(c & 1 != 0, "PMOVSSET_EL0 bit 0 set but PMOVSCLR_EL0 = {c:#x} (both read the flags)");
    set_pmovsclr(1);
    check!(pmovsset() & 1 == 0, "PMOVSCLR_EL0 bit 0 written: the flag stays set");
    Ok(())
}

/// D13.3, D24.5.8 (LP = 1, FEAT_PMUv3p5): an event counter overflows only when bits [63:0] wrap.
fn overflow_64(_pmu: &Pmu) -> Check {
    set_evtyper(0, SW_INCR);
    set_pmcntenset(1);
    set_pmcr(PMCR_LC | PMCR_LP | PMCR_E);
    check!(pmcr() & PMCR_LP != 0, "PMCR_EL0.LP reads 0 after writing 1 with FEAT_PMUv3p5");
    set_evcntr(0, 0xffff_ffff);
    swinc(1);
    let got = evcntr(0);
    check!(got == 0x1_0000_0000, "LP = 1: PMEVCNTR0_EL0 0xffffffff + 1 reads {got:#x}, want 0x100000000");
    check!(pmovsset() & 1 == 0, "LP = 1: bits [31:0] wrapped and PMOVSSET_EL0 bit 0 was set (want only at 64 bits)");
    set_evcntr(0, u64::MAX);
    swinc(1);
    let got = evcntr(0);
    check!(got == 0, "LP = 1: PMEVCNTR0_EL0 0xffffffffffffffff + 1 reads {got:#x}, want 0");
    check!(pmovsset() & 1 != 0, "LP = 1: bits [63:0] wrapped and PMOVSSET_EL0 bit 0 is clear");
    Ok(())
}

/// D13.3 (R_NTZHW), D24.5.8 (LC): with LC = 1 the cycle counter overflows when bits [63:0]
/// wrap and sets PMOVSSET.C; the flag is updated with the counter (R_HTPDY), so once a read
/// sees the wrapped count, a later read of PMOVSSET sees the flag. (Exactly when the flag rises
/// around the wrap is not checked: D13.2.2 allows some inaccuracy in detecting overflow.)
/// Preset 10,000 below the top, the counter wraps within the wait.
fn cycle_overflow(_pmu: &Pmu) -> Check {
    set_pmccfiltr(0);
    let preset = u64::MAX - 10_000;
    set_pmccntr(preset);
    set_pmcntenset(CYCLE);
    set_pmcr(PMCR_LC | PMCR_E);
    let wrapped = wait::until(|| pmccntr() < preset, timer::ms(SETTLE_MS));
    // Orders the flag read after the counter read that saw the wrap.
    arch::isb();
    let flags = pmovsset();
    set_pmcr(PMCR_LC);
    let got = pmccntr();
    check!(wrapped, "PMCCNTR_EL0 preset {preset:#x} did not wrap within {SETTLE_MS} ms (now {got:#x})");
    check!(flags & CYCLE != 0, "PMCCNTR_EL0 wrapped bits [63:0] (LC = 1, now {got:#x}): PMOVSSET.C clear");
    Ok(())
}

/// Whether INTID 23 becomes (or stays) `pending` at this CPU's redistributor: a rising line
/// within `SETTLE_MS`, a low line for all of `QUIET_MS`.
fn line_is(pending: bool) -> bool {
    if pending {
        wait::until(|| gic::private_pending(gic::PMU_INTID), timer::ms(SETTLE_MS))
    } else {
        // Give a late level change time to arrive, then require it low throughout.
        let dropped = wait::until(|| !gic::private_pending(gic::PMU_INTID), timer::ms(SETTLE_MS));
        dropped && !wait::until(|| gic::private_pending(gic::PMU_INTID), timer::ms(QUIET_MS))
    }
}

/// D13.3.1 and the CheckForPMUOverflow() pseudocode: the request for event counter n is
/// asserted exactly while PMCR.E, PMOVSSET[n] and PMINTENSET[n] are all 1, and it is
/// level-sensitive: it drops when the flag or the interrupt enable is cleared. Seen at the GIC
/// with IRQs masked. PMCR.E is changed only while the flag is clear (plain QEMU re-evaluates
/// the request on PMINTEN and PMOVS writes and on overflows, not on PMCR writes).
fn interrupt_level(_pmu: &Pmu) -> Check {
    arch::mask_irqs();
    gic::enable_private(gic::PMU_INTID);
    let irqs = percpu::this().pmu_irqs.load(SeqCst);
    set_pmcr(PMCR_LC);
    set_pmintenset(1);
    set_pmovsset(1);
    check!(line_is(false), "PMOVSSET[0] and PMINTENSET[0] set, PMCR.E = 0: INTID 23 pending");
    set_pmovsclr(1);
    set_pmcr(PMCR_LC | PMCR_E);
    check!(line_is(false), "PMCR.E and PMINTENSET[0] set, no overflow flag: INTID 23 pending");
    set_pmovsset(1);
    check!(line_is(true), "PMCR.E, PMINTENSET[0] set, then PMOVSSET[0]: INTID 23 not pending within {SETTLE_MS} ms");
    set_pmintenclr(1);
    check!(line_is(false), "PMINTENCLR[0] written: INTID 23 still pending (the request is level-sensitive)");
    set_pmintenset(1);
    check!(line_is(true), "PMINTENSET[0] written again: INTID 23 not pending within {SETTLE_MS} ms");
    set_pmovsclr(1);
    check!(line_is(false), "PMOVSCLR[0] written: INTID 23 still pending (the request is level-sensitive)");
    set_pmintenclr(1);
    set_pmcr(PMCR_LC);
    // The line is low: unmasking takes nothing.
    arch::unmask_irqs();
    arch::mask_irqs();
    gic::disable_private(gic::PMU_INTID);
    let taken = percpu::this().pmu_irqs.load(SeqCst) - irqs;
    check!(taken == 0, "{taken} PMU interrupt(s) taken after the request was dropped with IRQs masked");
    Ok(())
}

/// D13.3.1: an event counter overflow with PMINTENSET set raises the PMU interrupt; the handler
/// (gic.rs) clears the flag, which drops the level-sensitive request, so it is taken once.
fn interrupt_taken(_pmu: &Pmu) -> Check {
    let cpu = percpu::this();
    arch::mask_irqs();
    gic::enable_private(gic::PMU_INTID);
    cpu.pmu_overflow_flags.store(0, SeqCst);
    let irqs = cpu.pmu_irqs.load(SeqCst);
    set_evtyper(0, SW_INCR);
    set_evcntr(0, 0xffff_ffff);
    set_pmcntenset(1);
    set_pmintenset(1);
    set_pmcr(PMCR_LC | PMCR_E);
    check!(line_is(false), "PMINTENSET[0] set before any overflow: INTID 23 pending");
    swinc(1);
    let flagged = pmovsset() & 1 != 0;
    let pending = line_is(true);
    arch::unmask_irqs();
    let taken = wait::until(|| cpu.pmu_irqs.load(SeqCst) != irqs, timer::ms(SETTLE_MS));
    // Let a re-assertion (a request that did not drop) come in.
    let deadline = timer::now() + timer::ms(QUIET_MS);
    while timer::now() < deadline {
        core::hint::spin_loop();
    }
    arch::mask_irqs();
    let count = cpu.pmu_irqs.load(SeqCst) - irqs;
    let flags = cpu.pmu_overflow_flags.load(SeqCst);
    check!(flagged, "PMEVCNTR0_EL0 0xffffffff + 1: PMOVSSET_EL0 bit 0 clear");
    check!(pending, "overflow with PMINTENSET[0] and PMCR.E set: INTID 23 not pending within {SETTLE_MS} ms");
    check!(taken, "INTID 23 pending, IRQs unmasked: no PMU interrupt within {SETTLE_MS} ms");
    check!(count == 1, "the handler cleared the overflow flag: {count} PMU interrupts taken, want 1");
    check!(flags & 1 != 0, "the PMU interrupt handler found PMOVSSET_EL0 = {flags:#x}, bit 0 clear");
    check!(pmovsset() & 1 == 0, "PMOVSSET_EL0 bit 0 still set after the handler wrote PMOVSCLR_EL0");
    check!(line_is(false), "the handler cleared the flag: INTID 23 still pending");
    Ok(())
}

/// D24.5.22, D24.5.27, D24.5.28: PMSELR_EL0.SEL = n makes PMXEVCNTR_EL0 and PMXEVTYPER_EL0
/// PMEVCNTR<n>_EL0 and PMEVTYPER<n>_EL0 (both ways); SEL = 31 makes PMXEVTYPER_EL0
/// PMCCFILTR_EL0.
fn selected_counter(pmu: &Pmu) -> Check {
    for n in 0..pmu.counters {
        set_pmselr(n as u64);
        let sel = pmselr() & 0x1f;
        check!(sel == n as u64, "PMSELR_EL0 written {n}: reads {sel}");
        let count = 0x0bad_0000 | n as u64;
        set_pmxevcntr(count);
        let got = evcntr(n);
        check!(got == count, "SEL = {n}: PMXEVCNTR_EL0 written {count:#x}, PMEVCNTR{n}_EL0 reads {got:#x}");
        set_evcntr(n, count + 1);
        let got = pmxevcntr();
        check!(got == count + 1, "SEL = {n}: PMEVCNTR{n}_EL0 written {:#x}, PMXEVCNTR_EL0 reads {got:#x}", count + 1);
        let typer = FILTER_U | ((n as u64 + 3) & 0x3f);
        set_pmxevtyper(typer);
        let got = evtyper(n) & EVTYPER_CHECKED;
        check!(got == typer, "SEL = {n}: PMXEVTYPER_EL0 written {typer:#x}, PMEVTYPER{n}_EL0 reads {got:#x}");
        set_evtyper(n, FILTER_P | SW_INCR);
        let got = pmxevtyper() & EVTYPER_CHECKED;
        check!(got == FILTER_P, "SEL = {n}: PMEVTYPER{n}_EL0 written {FILTER_P:#x}, PMXEVTYPER_EL0 reads {got:#x}");
        // The counters beside n are not touched.
        if n > 0 {
            let prev = evcntr(n - 1);
            check!(prev == 0x0bad_0000 | (n as u64 - 1) + 1, "SEL = {n}: PMEVCNTR{}_EL0 changed to {prev:#x}", n - 1);
        }
    }
    set_pmselr(31);
    set_pmxevtyper(FILTER_U);
    let got = pmccfiltr() & (FILTER_P | FILTER_U);
    check!(got == FILTER_U, "SEL = 31: PMXEVTYPER_EL0 written U, PMCCFILTR_EL0 reads {got:#x}");
    set_pmccfiltr(FILTER_P);
    let got = pmxevtyper() & (FILTER_P | FILTER_U);
    check!(got == FILTER_P, "SEL = 31: PMCCFILTR_EL0 written P, PMXEVTYPER_EL0 reads {got:#x}");
    Ok(())
}
