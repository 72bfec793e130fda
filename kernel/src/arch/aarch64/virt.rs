//! The CPU side of running guests at EL2 with VHE: per-CPU set-up (VTCR_EL2, the GIC's virtual
//! interface), loading and saving a vCPU's EL1 state through the `*_EL12` aliases, the list
//! registers, the virtual timer, exception injection registers and stage-2 TLB maintenance.
//!
//! While a vCPU is loaded, HCR_EL2 holds [`GUEST_HCR`] (TGE clear): a trap from a lower EL then
//! comes from the guest, which is how the vectors tell guest exits from user traps
//! ([`in_guest`]). Everything else restores the host's view before the CPU runs host code at EL0.

use super::gic;
use super::sysreg::*;
use crate::hal::{GuestContext, GuestLoad, GuestTimer, PASSED_PPIS};
use crate::virt::syndrome::{self, GuestExit};
use aarch64_cpu::asm::barrier;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// HCR_EL2 for host code: E2H (VHE), TGE (EL0 in the EL2&0 regime), RW.
const HOST_HCR: u64 = (1 << 34) | (1 << 27) | (1 << 31);

/// HCR_EL2 while a guest runs: VM (stage 2), SWIO, FMO/IMO/AMO (physical interrupts to EL2,
/// virtual ones to the guest), FB + BSU inner shareable (broadcast maintenance), TWI/TWE (trap
/// WFI/WFE), TID3 (ID registers), TSC (SMC), TIDCP (IMPLEMENTATION DEFINED registers: UNDEFINED
/// for guests), TACR (ACTLR), RW (AArch64 EL1), E2H, APK/API
/// (pointer authentication used freely; keys are switched per vCPU).
pub const GUEST_HCR: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 9)
    | (1 << 10)
    | (1 << 13)
    | (1 << 14)
    | (1 << 18)
    | (1 << 19)
    | (1 << 20)
    | (1 << 21)
    | (1 << 31)
    | (1 << 34)
    | (1 << 40)
    | (1 << 41);

/// ICH_HCR_EL2: En, and UIE (maintenance interrupt when the list registers run low).
const ICH_EN: u64 = 1;
const ICH_UIE: u64 = 1 << 1;

/// The GIC maintenance interrupt.
pub const MAINTENANCE_PPI: u32 = 25;

static IPA_BITS: AtomicU32 = AtomicU32::new(0);
static VMID_COUNT: AtomicU32 = AtomicU32::new(256);
static LR_COUNT: AtomicU32 = AtomicU32::new(0);
static HAS_PAUTH: AtomicBool = AtomicBool::new(false);
/// MDCR_EL2 bits: TPMCR, TPM (every PMU register), TDA (debug registers, MDSCR_EL1 among
/// them), TDOSA (the OS lock and power-down registers), TDRA (MDRAR_EL1), TPMS (SPE), TTRF
/// (the trace filter). TDE stays clear: a guest's own debug exceptions go to its EL1.
const MDCR_TPMCR: u64 = 1 << 5;
const MDCR_TPM: u64 = 1 << 6;
const MDCR_TDA: u64 = 1 << 9;
const MDCR_TDOSA: u64 = 1 << 10;
const MDCR_TDRA: u64 = 1 << 11;
const MDCR_TPMS: u64 = 1 << 14;
const MDCR_TTRF: u64 = 1 << 19;
/// HPMD (FEAT_PMUv3p1): event counters do not count at EL2; HCCD (FEAT_PMUv3p5): nor does the
/// cycle counter. A guest's counters then count only the guest, never Keel's exit handling.
const MDCR_HPMD: u64 = 1 << 17;
const MDCR_HCCD: u64 = 1 << 23;
const MDCR_PMU_TRAPS: u64 = MDCR_TPMCR | MDCR_TPM;
const MDCR_DEBUG_TRAPS: u64 = MDCR_TDA | MDCR_TDOSA | MDCR_TDRA;
/// MDCR_EL2 for the host (HPMN: every PMU counter is the host's) and while a guest runs (all
/// the traps above; the profiling and trace buffers, E2PB/E2TB = 0, stay owned by EL2).
static MDCR_HOST: AtomicU64 = AtomicU64::new(0);
static MDCR_GUEST: AtomicU64 = AtomicU64::new(MDCR_TPMCR | MDCR_TPM | MDCR_DEBUG_TRAPS);
/// The PMU's event counters (PMCR_EL0.N); none without FEAT_PMUv3 (then `HAS_PMU` is false).
static PMU_COUNTERS: AtomicU32 = AtomicU32::new(0);
static HAS_PMU: AtomicBool = AtomicBool::new(false);
/// The breakpoints and watchpoints the CPU has (ID_AA64DFR0_EL1.BRPs + 1, WRPs + 1).
static BREAKPOINTS: AtomicU32 = AtomicU32::new(0);
static WATCHPOINTS: AtomicU32 = AtomicU32::new(0);
/// Per CPU: the passed-through PPIs whose physical interrupt is held off (disabled at the
/// redistributor), a bit per INTID.
static PPIS_HELD: [AtomicU32; crate::percpu::MAX_CPUS] = [const { AtomicU32::new(0) }; crate::percpu::MAX_CPUS];

/// Sets this CPU up for guests: stage-2 control, the GIC virtual interface off until a vCPU is
/// loaded, and the virtual timer and maintenance interrupts enabled at the host GIC.
pub fn init_cpu(cpu: usize) {
    use aarch64_cpu::registers::{ID_AA64ISAR1_EL1, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1, MIDR_EL1, Readable};
    let parange = ID_AA64MMFR0_EL1.get() & 0xf;
    let pa_bits = match parange {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        _ => 48,
    };
    let ps = parange.min(5);
    let vmid16 = (ID_AA64MMFR1_EL1.get() >> 4) & 0xf == 2;
    // T0SZ for the IPA size, start at level 0 (SL0 = 2), inner/outer write-back, inner
    // shareable, 4 KiB granule, PS, 16-bit VMIDs when the CPU has them, RES1 bit 31.
    let t0sz = 64 - pa_bits;
    let vtcr = t0sz | (2 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (ps << 16) | (u64::from(vmid16) << 19) | (1 << 31);
    vtcr_el2::write(vtcr);
    IPA_BITS.store(pa_bits as u32, Ordering::Relaxed);
    VMID_COUNT.store(if vmid16 { 1 << 16 } else { 256 }, Ordering::Relaxed);
    LR_COUNT.store(((ich_vtr_el2::read() & 0x1f) + 1) as u32, Ordering::Relaxed);
    // Their reset value is UNKNOWN; from here on every guest_put leaves them zero, which is
    // what lets guest_lrs_write skip list registers no vCPU has used since.
    for i in 0..guest_lr_count() {
        write_lr(i, 0);
    }
    let isar1 = ID_AA64ISAR1_EL1.get();
    // APA, API (bits 11:4) or GPA/GPI: the key registers exist.
    HAS_PAUTH.store(isar1 & 0xff0 != 0 || (isar1 >> 24) & 0xff != 0, Ordering::Relaxed);
    vpidr_el2::write(MIDR_EL1.get());
    init_debug();
    super::sve::init_cpu();
    ich_hcr_el2::write(0);
    barrier::isb(barrier::SY);
    for intid in PASSED_PPIS {
        gic::enable_private(cpu, intid);
    }
    gic::enable_private(cpu, MAINTENANCE_PPI);
}

/// Debug and PMU ownership: the host keeps every PMU counter (HPMN = PMCR_EL0.N) and runs with
/// the OS lock set and MDSCR_EL1 clear, so no breakpoint, watchpoint or step a guest left in a
/// register can fire in host code; guests trap on every debug, PMU, SPE and trace-filter
/// register until Keel gives them their own.
fn init_debug() {
    let dfr0 = id_aa64dfr0_el1::read();
    BREAKPOINTS.store(((dfr0 >> 12) & 0xf) as u32 + 1, Ordering::Relaxed);
    WATCHPOINTS.store(((dfr0 >> 20) & 0xf) as u32 + 1, Ordering::Relaxed);
    let pmu = (dfr0 >> 8) & 0xf;
    let has_pmu = pmu != 0 && pmu != 0xf;
    let hpmn = if has_pmu { (pmcr_el0::read() >> 11) & 0x1f } else { 0 };
    HAS_PMU.store(has_pmu, Ordering::Relaxed);
    PMU_COUNTERS.store(hpmn as u32, Ordering::Relaxed);
    // HPMN = N: while a guest runs, every event counter is its own (the host counts nothing).
    let mut guest = hpmn | MDCR_PMU_TRAPS | MDCR_DEBUG_TRAPS;
    if has_pmu && pmu >= 4 {
        guest |= MDCR_HPMD;
    }
    if has_pmu && pmu >= 6 {
        guest |= MDCR_HCCD;
    }
    if has_pmu {
        // Nothing counts, interrupts or is readable from host EL0 until a guest loads its own.
        pmu_quiesce();
    }
    if (dfr0 >> 32) & 0xf != 0 {
        guest |= MDCR_TPMS;
    }
    if (dfr0 >> 40) & 0xf != 0 {
        guest |= MDCR_TTRF;
    }
    MDCR_HOST.store(hpmn, Ordering::Relaxed);
    MDCR_GUEST.store(guest, Ordering::Relaxed);
    mdcr_el2::write(hpmn);
    mdscr_el1::write(0);
    oslar_el1::write(1);
}

macro_rules! debug_access {
    ($($n:literal),* $(,)?) => {
        /// Reads breakpoint/watchpoint register `n` of kind `op2`: 4 DBGBVR, 5 DBGBCR, 6 DBGWVR,
        /// 7 DBGWCR (`n` below the count the CPU has).
        fn read_debug(n: usize, op2: u8) -> u64 {
            let v: u64;
            match (n, op2) {
                // SAFETY: reading a debug register has no memory effect.
                $(($n, 4) => unsafe { core::arch::asm!(concat!("mrs {}, S2_0_C0_C", stringify!($n), "_4"), out(reg) v, options(nomem, nostack)) },
                ($n, 5) => unsafe { core::arch::asm!(concat!("mrs {}, S2_0_C0_C", stringify!($n), "_5"), out(reg) v, options(nomem, nostack)) },
                ($n, 6) => unsafe { core::arch::asm!(concat!("mrs {}, S2_0_C0_C", stringify!($n), "_6"), out(reg) v, options(nomem, nostack)) },
                ($n, 7) => unsafe { core::arch::asm!(concat!("mrs {}, S2_0_C0_C", stringify!($n), "_7"), out(reg) v, options(nomem, nostack)) },)*
                _ => v = 0,
            }
            v
        }
        fn write_debug(n: usize, op2: u8, v: u64) {
            match (n, op2) {
                // SAFETY: the debug registers hold the loaded guest's breakpoints (or none).
                $(($n, 4) => unsafe { core::arch::asm!(concat!("msr S2_0_C0_C", stringify!($n), "_4, {}"), in(reg) v, options(nostack)) },
                ($n, 5) => unsafe { core::arch::asm!(concat!("msr S2_0_C0_C", stringify!($n), "_5, {}"), in(reg) v, options(nostack)) },
                ($n, 6) => unsafe { core::arch::asm!(concat!("msr S2_0_C0_C", stringify!($n), "_6, {}"), in(reg) v, options(nostack)) },
                ($n, 7) => unsafe { core::arch::asm!(concat!("msr S2_0_C0_C", stringify!($n), "_7, {}"), in(reg) v, options(nostack)) },)*
                _ => {}
            }
        }
    };
}

debug_access!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

/// Gives the loaded vCPU its own breakpoint, watchpoint and OS-lock registers and stops
/// trapping them; false if they were loaded already.
pub fn guest_debug_load(c: &mut GuestContext) -> bool {
    if c.debug_live {
        return false;
    }
    let d = &c.debug;
    for n in 0..BREAKPOINTS.load(Ordering::Relaxed) as usize {
        write_debug(n, 4, d.bvr[n]);
        write_debug(n, 5, d.bcr[n]);
    }
    for n in 0..WATCHPOINTS.load(Ordering::Relaxed) as usize {
        write_debug(n, 6, d.wvr[n]);
        write_debug(n, 7, d.wcr[n]);
    }
    oslar_el1::write(u64::from(d.os_lock));
    mdcr_el2::write(mdcr_el2::read() & !MDCR_DEBUG_TRAPS);
    barrier::isb(barrier::SY);
    c.debug_live = true;
    true
}

/// Whether the saved debug registers have a breakpoint or watchpoint enabled (DBGBCR/DBGWCR.E).
fn guest_debug_armed(c: &GuestContext) -> bool {
    let d = &c.debug;
    let (b, w) = (BREAKPOINTS.load(Ordering::Relaxed) as usize, WATCHPOINTS.load(Ordering::Relaxed) as usize);
    d.bcr[..b].iter().any(|r| r & 1 != 0) || d.wcr[..w].iter().any(|r| r & 1 != 0)
}

/// Saves the guest's debug registers if it used them, and leaves none of its debug state
/// enabled: breakpoints and watchpoints off, OS lock set, MDSCR_EL1 clear.
fn guest_debug_put(c: &mut GuestContext) {
    c.mdscr = mdscr_el1::read();
    mdscr_el1::write(0);
    if core::mem::take(&mut c.debug_live) {
        let d = &mut c.debug;
        for n in 0..BREAKPOINTS.load(Ordering::Relaxed) as usize {
            d.bvr[n] = read_debug(n, 4);
            d.bcr[n] = read_debug(n, 5);
            write_debug(n, 5, 0);
        }
        for n in 0..WATCHPOINTS.load(Ordering::Relaxed) as usize {
            d.wvr[n] = read_debug(n, 6);
            d.wcr[n] = read_debug(n, 7);
            write_debug(n, 7, 0);
        }
        d.os_lock = oslsr_el1::read() & 2 != 0;
        oslar_el1::write(1);
    }
    mdcr_el2::write(MDCR_HOST.load(Ordering::Relaxed));
}

macro_rules! pmu_counter_access {
    ($($n:literal => $cntr:literal, $typer:literal);* $(;)?) => {
        /// Event counter `n`'s value (`typer` false) or event type (`typer` true).
        fn read_pmu_counter(n: usize, typer: bool) -> u64 {
            let v: u64;
            match (n, typer) {
                // SAFETY: reading a PMU counter or event type register has no memory effect.
                $(($n, false) => unsafe { core::arch::asm!(concat!("mrs {}, ", $cntr), out(reg) v, options(nomem, nostack)) },
                ($n, true) => unsafe { core::arch::asm!(concat!("mrs {}, ", $typer), out(reg) v, options(nomem, nostack)) },)*
                _ => v = 0,
            }
            v
        }
        fn write_pmu_counter(n: usize, typer: bool, v: u64) {
            match (n, typer) {
                // SAFETY: the PMU counters hold the loaded guest's state (or none).
                $(($n, false) => unsafe { core::arch::asm!(concat!("msr ", $cntr, ", {}"), in(reg) v, options(nostack)) },
                ($n, true) => unsafe { core::arch::asm!(concat!("msr ", $typer, ", {}"), in(reg) v, options(nostack)) },)*
                _ => {}
            }
        }
    };
}

pmu_counter_access!(
    0 => "S3_3_C14_C8_0", "S3_3_C14_C12_0"; 1 => "S3_3_C14_C8_1", "S3_3_C14_C12_1";
    2 => "S3_3_C14_C8_2", "S3_3_C14_C12_2"; 3 => "S3_3_C14_C8_3", "S3_3_C14_C12_3";
    4 => "S3_3_C14_C8_4", "S3_3_C14_C12_4"; 5 => "S3_3_C14_C8_5", "S3_3_C14_C12_5";
    6 => "S3_3_C14_C8_6", "S3_3_C14_C12_6"; 7 => "S3_3_C14_C8_7", "S3_3_C14_C12_7";
    8 => "S3_3_C14_C9_0", "S3_3_C14_C13_0"; 9 => "S3_3_C14_C9_1", "S3_3_C14_C13_1";
    10 => "S3_3_C14_C9_2", "S3_3_C14_C13_2"; 11 => "S3_3_C14_C9_3", "S3_3_C14_C13_3";
    12 => "S3_3_C14_C9_4", "S3_3_C14_C13_4"; 13 => "S3_3_C14_C9_5", "S3_3_C14_C13_5";
    14 => "S3_3_C14_C9_6", "S3_3_C14_C13_6"; 15 => "S3_3_C14_C9_7", "S3_3_C14_C13_7";
    16 => "S3_3_C14_C10_0", "S3_3_C14_C14_0"; 17 => "S3_3_C14_C10_1", "S3_3_C14_C14_1";
    18 => "S3_3_C14_C10_2", "S3_3_C14_C14_2"; 19 => "S3_3_C14_C10_3", "S3_3_C14_C14_3";
    20 => "S3_3_C14_C10_4", "S3_3_C14_C14_4"; 21 => "S3_3_C14_C10_5", "S3_3_C14_C14_5";
    22 => "S3_3_C14_C10_6", "S3_3_C14_C14_6"; 23 => "S3_3_C14_C10_7", "S3_3_C14_C14_7";
    24 => "S3_3_C14_C11_0", "S3_3_C14_C15_0"; 25 => "S3_3_C14_C11_1", "S3_3_C14_C15_1";
    26 => "S3_3_C14_C11_2", "S3_3_C14_C15_2"; 27 => "S3_3_C14_C11_3", "S3_3_C14_C15_3";
    28 => "S3_3_C14_C11_4", "S3_3_C14_C15_4"; 29 => "S3_3_C14_C11_5", "S3_3_C14_C15_5";
    30 => "S3_3_C14_C11_6", "S3_3_C14_C15_6";
);

/// Every counter: the cycle counter (bit 31) and the event counters.
fn pmu_all_counters() -> u64 {
    (1 << 31) | ((1u64 << PMU_COUNTERS.load(Ordering::Relaxed)) - 1)
}

/// Leaves the PMU counting nothing: counters, overflow interrupts and flags off, PMCR.E clear,
/// no EL0 access.
fn pmu_quiesce() {
    let all = pmu_all_counters();
    pmcntenclr_el0::write(all);
    pmintenclr_el1::write(all);
    pmovsclr_el0::write(all);
    pmcr_el0::write(pmcr_el0::read() & !1);
    pmuserenr_el0::write(0);
}

/// Gives the loaded vCPU its own PMU registers and stops trapping them; false if they were
/// loaded already or the CPU has no PMU (the access is then UNDEFINED for the guest).
pub fn guest_pmu_load(c: &mut GuestContext) -> bool {
    if c.pmu_live || !HAS_PMU.load(Ordering::Relaxed) {
        return false;
    }
    let p = &c.pmu;
    let all = pmu_all_counters();
    pmcntenclr_el0::write(all);
    for n in 0..PMU_COUNTERS.load(Ordering::Relaxed) as usize {
        write_pmu_counter(n, true, p.evtyper[n]);
        write_pmu_counter(n, false, p.evcntr[n]);
    }
    pmccfiltr_el0::write(p.ccfiltr);
    pmccntr_el0::write(p.ccntr);
    pmselr_el0::write(p.selr);
    pmuserenr_el0::write(p.userenr);
    pmovsclr_el0::write(all);
    pmovsset_el0::write(p.ovs & all);
    pmintenclr_el1::write(all);
    pmintenset_el1::write(p.inten & all);
    // Without P and C (they reset counters when written as 1).
    pmcr_el0::write(p.pmcr & !0b110);
    pmcntenset_el0::write(p.cnten & all);
    mdcr_el2::write(mdcr_el2::read() & !MDCR_PMU_TRAPS);
    barrier::isb(barrier::SY);
    c.pmu_live = true;
    true
}

/// Whether the saved PMU has a counter counting: PMCR_EL0.E and a PMCNTENSET bit (D13.5.1).
fn guest_pmu_counting(c: &GuestContext) -> bool {
    HAS_PMU.load(Ordering::Relaxed) && c.pmu.pmcr & 1 != 0 && c.pmu.cnten & pmu_all_counters() != 0
}

/// Saves the guest's PMU if it used it and leaves the PMU counting nothing for the host.
fn guest_pmu_put(c: &mut GuestContext) {
    if !core::mem::take(&mut c.pmu_live) {
        return;
    }
    let all = pmu_all_counters();
    let p = &mut c.pmu;
    p.cnten = pmcntenset_el0::read();
    pmcntenclr_el0::write(all);
    p.inten = pmintenset_el1::read();
    p.ovs = pmovsset_el0::read();
    p.pmcr = pmcr_el0::read();
    p.selr = pmselr_el0::read();
    p.userenr = pmuserenr_el0::read();
    p.ccfiltr = pmccfiltr_el0::read();
    p.ccntr = pmccntr_el0::read();
    for n in 0..PMU_COUNTERS.load(Ordering::Relaxed) as usize {
        p.evtyper[n] = read_pmu_counter(n, true);
        p.evcntr[n] = read_pmu_counter(n, false);
    }
    pmu_quiesce();
}

/// Whether the loaded guest's PMU asserts its overflow interrupt: an overflow flag whose
/// interrupt is enabled (Arm ARM D13.1.4), in the CPU if its PMU is loaded, else as saved.
pub fn guest_pmu_asserts(c: &GuestContext) -> bool {
    if !c.pmu_live {
        return c.pmu.ovs & c.pmu.inten & pmu_all_counters() != 0;
    }
    HAS_PMU.load(Ordering::Relaxed) && pmovsset_el0::read() & pmintenset_el1::read() & pmu_all_counters() != 0
}

/// Whether the exception just taken from a lower EL came from a guest.
#[inline]
pub fn in_guest() -> bool {
    hcr_el2::read() & (1 << 27) == 0
}

/// Decodes the synchronous exit just taken from the guest.
pub fn decode_guest_exit() -> GuestExit {
    syndrome::decode(esr_el2::read(), far_el2::read(), hpfar_el2::read())
}

pub fn guest_fault_address() -> u64 {
    far_el2::read()
}

pub fn stage2_limits() -> (u32, u32) {
    (IPA_BITS.load(Ordering::Relaxed).max(32), VMID_COUNT.load(Ordering::Relaxed))
}

pub fn guest_lr_count() -> usize {
    LR_COUNT.load(Ordering::Relaxed).clamp(1, 16) as usize
}

/// Holds passed-through PPI `intid`'s physical interrupt off on this CPU (disabled at the
/// redistributor) or lets it through again.
pub fn guest_ppi_hold(intid: u32, hold: bool) {
    let cpu = super::cpu::cpu_id();
    let bit = 1u32 << (intid & 31);
    let was = PPIS_HELD[cpu].load(Ordering::Relaxed) & bit != 0;
    if was == hold {
        return;
    }
    PPIS_HELD[cpu].store(PPIS_HELD[cpu].load(Ordering::Relaxed) ^ bit, Ordering::Relaxed);
    if hold {
        gic::disable_private(cpu, intid);
    } else {
        gic::enable_private(cpu, intid);
    }
}

/// Loads a vCPU's state into this CPU and switches HCR_EL2 to the guest's configuration.
pub fn guest_load(c: &mut GuestContext, l: GuestLoad) {
    vttbr_el2::write(l.vttbr);
    vmpidr_el2::write(l.vmpidr);
    cntvoff_el2::write(l.cntvoff);
    sctlr_el12::write(c.sctlr);
    cpacr_el12::write(c.cpacr);
    ttbr0_el12::write(c.ttbr0);
    ttbr1_el12::write(c.ttbr1);
    tcr_el12::write(c.tcr);
    esr_el12::write(c.esr);
    afsr0_el12::write(c.afsr0);
    afsr1_el12::write(c.afsr1);
    far_el12::write(c.far);
    mair_el12::write(c.mair);
    amair_el12::write(c.amair);
    vbar_el12::write(c.vbar);
    contextidr_el12::write(c.contextidr);
    cntkctl_el12::write(c.cntkctl);
    spsr_el12::write(c.spsr);
    elr_el12::write(c.elr);
    sp_el1::write(c.sp_el1);
    tpidr_el1::write(c.tpidr_el1);
    tpidr_el0::write(c.tpidr_el0);
    tpidrro_el0::write(c.tpidrro_el0);
    par_el1::write(c.par);
    csselr_el1::write(c.csselr);
    mdscr_el1::write(c.mdscr);
    debug_assert!(!c.debug_live && !c.pmu_live);
    mdcr_el2::write(MDCR_GUEST.load(Ordering::Relaxed));
    // Debug and PMU registers are loaded on first access (a trap), except when the guest left
    // them doing something: an enabled breakpoint or watchpoint must fire, an enabled counter
    // must count, whether or not the guest touches those registers again after this exit.
    if guest_debug_armed(c) {
        guest_debug_load(c);
    }
    if guest_pmu_counting(c) {
        guest_pmu_load(c);
    }
    if HAS_PAUTH.load(Ordering::Relaxed) {
        let k = &c.pauth;
        apiakeylo_el1::write(k[0]);
        apiakeyhi_el1::write(k[1]);
        apibkeylo_el1::write(k[2]);
        apibkeyhi_el1::write(k[3]);
        apdakeylo_el1::write(k[4]);
        apdakeyhi_el1::write(k[5]);
        apdbkeylo_el1::write(k[6]);
        apdbkeyhi_el1::write(k[7]);
        apgakeylo_el1::write(k[8]);
        apgakeyhi_el1::write(k[9]);
    }
    cntv_cval_el02::write(c.cntv_cval);
    cntv_ctl_el02::write(c.cntv_ctl);
    cntp_cval_el02::write(c.cntp_cval);
    cntp_ctl_el02::write(c.cntp_ctl);
    ich_vmcr_el2::write(c.vmcr);
    ich_ap0r0_el2::write(c.ap0r0);
    ich_ap1r0_el2::write(c.ap1r0);
    for intid in PASSED_PPIS {
        guest_ppi_hold(intid, l.held_ppis & (1 << intid) != 0);
    }
    if c.sve_used {
        super::sve::load(c);
    }
    hcr_el2::write(GUEST_HCR);
    barrier::isb(barrier::SY);
}

/// Saves the loaded vCPU's state and gives the CPU back to the host: timer off, virtual
/// interface off, list registers cleared, HCR_EL2 and CNTVOFF_EL2 as the host has them.
pub fn guest_put(c: &mut GuestContext) {
    c.sctlr = sctlr_el12::read();
    c.cpacr = cpacr_el12::read();
    c.ttbr0 = ttbr0_el12::read();
    c.ttbr1 = ttbr1_el12::read();
    c.tcr = tcr_el12::read();
    c.esr = esr_el12::read();
    c.afsr0 = afsr0_el12::read();
    c.afsr1 = afsr1_el12::read();
    c.far = far_el12::read();
    c.mair = mair_el12::read();
    c.amair = amair_el12::read();
    c.vbar = vbar_el12::read();
    c.contextidr = contextidr_el12::read();
    c.cntkctl = cntkctl_el12::read();
    c.spsr = spsr_el12::read();
    c.elr = elr_el12::read();
    c.sp_el1 = sp_el1::read();
    c.tpidr_el1 = tpidr_el1::read();
    c.tpidr_el0 = tpidr_el0::read();
    c.tpidrro_el0 = tpidrro_el0::read();
    c.par = par_el1::read();
    c.csselr = csselr_el1::read();
    guest_debug_put(c);
    guest_pmu_put(c);
    if c.sve_used {
        super::sve::put(c);
    }
    if HAS_PAUTH.load(Ordering::Relaxed) {
        c.pauth = [
            apiakeylo_el1::read(),
            apiakeyhi_el1::read(),
            apibkeylo_el1::read(),
            apibkeyhi_el1::read(),
            apdakeylo_el1::read(),
            apdakeyhi_el1::read(),
            apdbkeylo_el1::read(),
            apdbkeyhi_el1::read(),
            apgakeylo_el1::read(),
            apgakeyhi_el1::read(),
        ];
    }
    c.cntv_ctl = cntv_ctl_el02::read();
    c.cntv_cval = cntv_cval_el02::read();
    cntv_ctl_el02::write(0);
    c.cntp_ctl = cntp_ctl_el02::read();
    c.cntp_cval = cntp_cval_el02::read();
    cntp_ctl_el02::write(0);
    c.vmcr = ich_vmcr_el2::read();
    c.ap0r0 = ich_ap0r0_el2::read();
    c.ap1r0 = ich_ap1r0_el2::read();
    ich_hcr_el2::write(0);
    for i in 0..guest_lr_count() {
        write_lr(i, 0);
    }
    tpidr_el0::write(0);
    tpidrro_el0::write(0);
    for intid in PASSED_PPIS {
        guest_ppi_hold(intid, false);
    }
    hcr_el2::write(HOST_HCR);
    cntvoff_el2::write(0);
    barrier::isb(barrier::SY);
}

macro_rules! lr_access {
    ($($n:literal => $enc:literal),* $(,)?) => {
        fn read_lr(i: usize) -> u64 {
            let v: u64;
            match i {
                // SAFETY: reading a list register has no memory effect.
                $($n => unsafe { core::arch::asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nomem, nostack)) },)*
                _ => v = 0,
            }
            v
        }
        fn write_lr(i: usize, v: u64) {
            match i {
                // SAFETY: list registers hold virtual interrupt state for the guest only.
                $($n => unsafe { core::arch::asm!(concat!("msr ", $enc, ", {}"), in(reg) v, options(nostack)) },)*
                _ => {}
            }
        }
    };
}

lr_access!(
    0 => "S3_4_C12_C12_0", 1 => "S3_4_C12_C12_1", 2 => "S3_4_C12_C12_2", 3 => "S3_4_C12_C12_3",
    4 => "S3_4_C12_C12_4", 5 => "S3_4_C12_C12_5", 6 => "S3_4_C12_C12_6", 7 => "S3_4_C12_C12_7",
    8 => "S3_4_C12_C13_0", 9 => "S3_4_C12_C13_1", 10 => "S3_4_C12_C13_2", 11 => "S3_4_C12_C13_3",
    12 => "S3_4_C12_C13_4", 13 => "S3_4_C12_C13_5", 14 => "S3_4_C12_C13_6", 15 => "S3_4_C12_C13_7",
);

/// The list registers in `mask` that exist and fit in a file of `len`, lowest first.
fn lrs_in(mask: u16, len: usize) -> impl Iterator<Item = usize> {
    let n = len.min(guest_lr_count());
    let mut mask = mask & if n >= 16 { u16::MAX } else { (1 << n) - 1 };
    core::iter::from_fn(move || {
        let i = (mask != 0).then(|| mask.trailing_zeros() as usize)?;
        mask &= mask - 1;
        Some(i)
    })
}

/// Reads the list registers in `mask` back after the guest ran (the others keep their values
/// in `lrs`), and turns the virtual interface off so a maintenance interrupt that asked for this
/// exit stops asserting.
pub fn guest_lrs_read(lrs: &mut [u64], mask: u16) {
    for i in lrs_in(mask, lrs.len()) {
        lrs[i] = read_lr(i);
    }
    ich_hcr_el2::write(0);
}

/// Writes the list registers in `mask` from `lrs` and enables the virtual interface (with the
/// underflow maintenance interrupt when interrupts are waiting for a free list register).
pub fn guest_lrs_write(lrs: &[u64], mask: u16, underflow: bool) {
    for i in lrs_in(mask, lrs.len()) {
        write_lr(i, lrs[i]);
    }
    ich_hcr_el2::write(ICH_EN | if underflow { ICH_UIE } else { 0 });
}

/// The loaded guest's `timer` as it is now (CTL with a live ISTATUS, CVAL).
pub fn guest_timer(timer: GuestTimer) -> (u64, u64) {
    match timer {
        GuestTimer::Virtual => (cntv_ctl_el02::read(), cntv_cval_el02::read()),
        GuestTimer::Physical => (cntp_ctl_el02::read(), cntp_cval_el02::read()),
    }
}

/// Writes the loaded guest's exception registers for an injected exception; returns VBAR_EL1.
pub fn guest_exception(elr: u64, spsr: u64, esr: u64, far: u64) -> u64 {
    elr_el12::write(elr);
    spsr_el12::write(spsr);
    esr_el12::write(esr);
    far_el12::write(far);
    vbar_el12::read()
}

macro_rules! id_regs {
    ($crm:ident, $op2:ident; $(($c:literal, $o:literal) => $enc:literal),* $(,)?) => {
        match ($crm, $op2) {
            $(($c, $o) => {
                let v: u64;
                // SAFETY: ID registers are read-only and exist on every Armv8 CPU (unallocated
                // ones in this space read as zero).
                unsafe { core::arch::asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nomem, nostack)) };
                v
            })*
            _ => 0,
        }
    };
}

/// The host's value of ID register (3, op1, 0, crm, op2), for the AArch64 feature registers
/// guests read (others read as zero to the guest).
pub fn guest_id_reg(op1: u8, _crn: u8, crm: u8, op2: u8) -> u64 {
    if op1 != 0 {
        return 0;
    }
    id_regs!(crm, op2;
        (4, 0) => "S3_0_C0_C4_0", (4, 1) => "S3_0_C0_C4_1", (4, 2) => "S3_0_C0_C4_2",
        (5, 0) => "S3_0_C0_C5_0", (5, 1) => "S3_0_C0_C5_1",
        (6, 0) => "S3_0_C0_C6_0", (6, 1) => "S3_0_C0_C6_1", (6, 2) => "S3_0_C0_C6_2",
        (7, 0) => "S3_0_C0_C7_0", (7, 1) => "S3_0_C0_C7_1", (7, 2) => "S3_0_C0_C7_2", (7, 3) => "S3_0_C0_C7_3",
        (1, 0) => "S3_0_C0_C1_0", (1, 1) => "S3_0_C0_C1_1", (1, 2) => "S3_0_C0_C1_2", (1, 3) => "S3_0_C0_C1_3",
        (1, 4) => "S3_0_C0_C1_4", (1, 5) => "S3_0_C0_C1_5", (1, 6) => "S3_0_C0_C1_6", (1, 7) => "S3_0_C0_C1_7",
        (2, 0) => "S3_0_C0_C2_0", (2, 1) => "S3_0_C0_C2_1", (2, 2) => "S3_0_C0_C2_2", (2, 3) => "S3_0_C0_C2_3",
        (2, 4) => "S3_0_C0_C2_4", (2, 5) => "S3_0_C0_C2_5", (2, 6) => "S3_0_C0_C2_6", (2, 7) => "S3_0_C0_C2_7",
        (3, 0) => "S3_0_C0_C3_0", (3, 1) => "S3_0_C0_C3_1", (3, 2) => "S3_0_C0_C3_2", (3, 4) => "S3_0_C0_C3_4",
        (3, 5) => "S3_0_C0_C3_5", (3, 6) => "S3_0_C0_C3_6",
    )
}

/// Drops every TLB entry tagged with `vmid` (stage 1 and 2), on every CPU.
pub fn tlb_flush_vmid(vmid: u16) {
    let saved = vttbr_el2::read();
    vttbr_el2::write(u64::from(vmid) << 48);
    barrier::isb(barrier::SY);
    // SAFETY: TLB maintenance only, for the VMID just installed; the previous VTTBR is restored.
    unsafe { core::arch::asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb", options(nostack)) };
    vttbr_el2::write(saved);
    barrier::isb(barrier::SY);
}
