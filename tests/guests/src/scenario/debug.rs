//! `guest=debug`: the guest's self-hosted debug is its own and stays inside the VM.
//!
//! Checks, each from the Arm ARM (DDI 0487, chapter D2 "AArch64 Self-hosted Debug"):
//! - the OS lock is set out of reset (D2.5, OSLSR_EL1.OSLK resets to 1 on a cold reset) and
//!   OSLAR_EL1 clears it;
//! - `brk #imm` is taken at EL1 with EC 0x3C and the immediate in ISS (D2.9);
//! - every hardware breakpoint ID_AA64DFR0_EL1.BRPs advertises fires at its address with
//!   EC 0x31, ELR = the address (D2.8), with MDSCR_EL1.MDE and KDE set and PSTATE.D clear
//!   (D2.4, debug exceptions at the debug target EL);
//! - every watchpoint (WRPs) fires on a load and a store with EC 0x35, FAR in the watched
//!   doubleword and ISS.WnR right (D2.10);
//! - software step (D2.12): with MDSCR_EL1.SS and SPSR_EL1.SS set, each instruction of a
//!   sequence that exits to the hypervisor (an MMIO load the VM monitor answers, an `hvc`, a
//!   `wfe`, a trapped ID-register read) is stepped once, in order: the step exception comes with
//!   ELR = the next instruction, whatever the hypervisor did in between;
//! - host isolation: with every breakpoint and watchpoint programmed to match at all ELs
//!   (HMC = 1, PMC = 0b11) on addresses a host uses (Keel's kernel image, user programs at
//!   0x40_0000, the whole low 2 GiB by watchpoint mask), MDSCR_EL1.SS/KDE/MDE set and PSTATE.D
//!   masked so none fires in the guest, the guest exits 100 times each by MMIO, `hvc`, WFI and a
//!   stage-2 fault; afterwards its debug registers still read what it wrote (they are its
//!   context, not the CPU's);
//! - the PMU: if ID_AA64DFR0_EL1.PMUVer advertises none, PMCR_EL0 and PMCCNTR_EL0 are UNDEFINED
//!   (D13, the PMU registers exist only with FEAT_PMUv3); if it advertises one, the cycle
//!   counter counts.
//!
//! Everything ends with the OS lock set and MDSCR_EL1, every BCR and WCR clear.

use super::Outcome;
use crate::arch::mmio;
use crate::arch::trap::{self, EC_BREAKPOINT_CUR, EC_BRK, EC_STEP_CUR, EC_UNKNOWN, EC_WATCHPOINT_CUR, TrapFrame};
use crate::machine::{HOLE, UART_BASE};
use crate::runtime::Guest;
use crate::{arch, gic, percpu, psci, timer};
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::SeqCst;

/// MDSCR_EL1: SS (software step), KDE (debug exceptions at the debug target EL), MDE
/// (breakpoints and watchpoints).
const MDSCR_SS: u64 = 1 << 0;
const MDSCR_KDE: u64 = 1 << 13;
const MDSCR_MDE: u64 = 1 << 15;
/// SPSR_EL1.SS.
const SPSR_SS: u64 = 1 << 21;
/// DBGBCR/DBGWCR: enable; privilege (PMC/PAC) EL1 and EL0; byte-address select (all bytes).
const CR_E: u64 = 1;
const CR_EL1_EL0: u64 = 0b11 << 1;
const CR_HMC: u64 = 1 << 13;
const BCR_BAS: u64 = 0xf << 5;
const WCR_BAS: u64 = 0xff << 5;
/// DBGWCR.LSC: loads and stores.
const WCR_LSC: u64 = 0b11 << 3;
/// DBGWCR.MASK = 31: the watchpoint covers 2 GiB.
const WCR_MASK_2G: u64 = 31 << 24;
/// Keel's kernel image base (linker.ld) and where its user programs are linked.
const HOST_KERNEL: u64 = 0xFFFF_FF80_0000_0000;
const HOST_USER: u64 = 0x40_0000;
/// BRK immediates of this scenario.
const BRK_PLAIN: u64 = 0x42;
const BRK_STEP_START: u64 = 0x51;
const BRK_STEP_STOP: u64 = 0x52;
/// Exit rounds of the isolation check.
const ROUNDS: u32 = 100;
/// Keel's vendor test call, answered by the VM monitor.
const KEEL_TEST_CALL: u32 = 0xC600_0001;

/// What the debug hook saw (one CPU runs this scenario; load and store only).
static EVENTS: AtomicU64 = AtomicU64::new(0);
static LAST_EC: AtomicU64 = AtomicU64::new(0);
static LAST_ISS: AtomicU64 = AtomicU64::new(0);
static LAST_ELR: AtomicU64 = AtomicU64::new(0);
static LAST_FAR: AtomicU64 = AtomicU64::new(0);
/// The breakpoint or watchpoint armed (its CR is cleared when it fires).
static ARMED: AtomicU64 = AtomicU64::new(u64::MAX);
/// Software step: the BRK that started it and the ELRs of the steps.
static STEP_BASE: AtomicU64 = AtomicU64::new(0);
static STEPS: AtomicU64 = AtomicU64::new(0);
static STEP_ELR: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

macro_rules! debug_regs {
    ($($n:literal),*) => {
        /// Writes DBGBVR (op2 4), DBGBCR (5), DBGWVR (6) or DBGWCR (7) number `n`.
        fn write_dbg(n: usize, op2: u32, v: u64) {
            // SAFETY: the debug registers only arm debug exceptions this scenario handles.
            unsafe {
                match (n, op2) {
                    $(($n, 4) => core::arch::asm!(concat!("msr S2_0_C0_C", stringify!($n), "_4, {}"), in(reg) v, options(nostack, preserves_flags)),
                    ($n, 5) => core::arch::asm!(concat!("msr S2_0_C0_C", stringify!($n), "_5, {}"), in(reg) v, options(nostack, preserves_flags)),
                    ($n, 6) => core::arch::asm!(concat!("msr S2_0_C0_C", stringify!($n), "_6, {}"), in(reg) v, options(nostack, preserves_flags)),
                    ($n, 7) => core::arch::asm!(concat!("msr S2_0_C0_C", stringify!($n), "_7, {}"), in(reg) v, options(nostack, preserves_flags)),)*
                    _ => {}
                }
            }
        }
        /// Reads what [`write_dbg`] writes.
        fn read_dbg(n: usize, op2: u32) -> u64 {
            // SAFETY: reading a debug register has no side effects.
            unsafe {
                match (n, op2) {
                    $(($n, 4) => { let v: u64; core::arch::asm!(concat!("mrs {}, S2_0_C0_C", stringify!($n), "_4"), out(reg) v, options(nostack, preserves_flags)); v },
                    ($n, 5) => { let v: u64; core::arch::asm!(concat!("mrs {}, S2_0_C0_C", stringify!($n), "_5"), out(reg) v, options(nostack, preserves_flags)); v },
                    ($n, 6) => { let v: u64; core::arch::asm!(concat!("mrs {}, S2_0_C0_C", stringify!($n), "_6"), out(reg) v, options(nostack, preserves_flags)); v },
                    ($n, 7) => { let v: u64; core::arch::asm!(concat!("mrs {}, S2_0_C0_C", stringify!($n), "_7"), out(reg) v, options(nostack, preserves_flags)); v },)*
                    _ => 0,
                }
            }
        }
    };
}

debug_regs!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

fn mdscr() -> u64 {
    // SAFETY: reading MDSCR_EL1 has no side effects.
    unsafe { read_sysreg!("mdscr_el1") }
}

fn set_mdscr(v: u64) {
    // SAFETY: MDSCR_EL1 enables debug exceptions this scenario handles.
    unsafe { write_sysreg!("mdscr_el1", v) }
    arch::isb();
}

fn os_locked() -> bool {
    // SAFETY: reading OSLSR_EL1 has no side effects.
    let oslsr = unsafe { read_sysreg!("oslsr_el1") };
    oslsr & 2 != 0
}

fn set_os_lock(locked: bool) {
    // SAFETY: the OS lock only gates debug exceptions.
    unsafe { write_sysreg!("oslar_el1", u64::from(locked)) }
    arch::isb();
}

/// PSTATE.D: debug exceptions at EL1 masked (true) or not.
fn mask_debug(masked: bool) {
    // SAFETY: PSTATE.D only gates debug exceptions, which this scenario handles.
    unsafe {
        if masked {
            core::arch::asm!("msr daifset, #8", "isb", options(nostack, preserves_flags));
        } else {
            core::arch::asm!("msr daifclr, #8", "isb", options(nostack, preserves_flags));
        }
    }
}

fn hook(frame: &mut TrapFrame, esr: u64, far: u64) {
    let ec = (esr >> 26) & 0x3f;
    let iss = esr & 0x1ff_ffff;
    EVENTS.store(EVENTS.load(SeqCst) + 1, SeqCst);
    LAST_EC.store(ec, SeqCst);
    LAST_ISS.store(iss, SeqCst);
    LAST_ELR.store(frame.elr, SeqCst);
    LAST_FAR.store(far, SeqCst);
    match ec {
        EC_BRK => {
            match iss & 0xffff {
                BRK_STEP_START => {
                    STEP_BASE.store(frame.elr, SeqCst);
                    STEPS.store(0, SeqCst);
                    set_mdscr(mdscr() | MDSCR_SS);
                    frame.spsr |= SPSR_SS;
                }
                BRK_STEP_STOP => {
                    set_mdscr(mdscr() & !MDSCR_SS);
                    frame.spsr &= !SPSR_SS;
                }
                _ => {}
            }
            // The preferred return address of BRK is the BRK itself.
            frame.elr += 4;
        }
        EC_STEP_CUR => {
            let n = STEPS.load(SeqCst);
            if let Some(slot) = STEP_ELR.get(n as usize) {
                slot.store(frame.elr, SeqCst);
            }
            STEPS.store(n + 1, SeqCst);
            if n + 1 >= STEP_ELR.len() as u64 {
                // Runaway stepping: stop it (the check reports the count).
                set_mdscr(mdscr() & !MDSCR_SS);
                frame.spsr &= !SPSR_SS;
            } else {
                frame.spsr |= SPSR_SS;
            }
        }
        EC_BREAKPOINT_CUR => write_dbg(ARMED.load(SeqCst) as usize, 5, 0),
        EC_WATCHPOINT_CUR => write_dbg(ARMED.load(SeqCst) as usize, 7, 0),
        _ => {}
    }
}

/// A function for breakpoints: its first instruction is where they are set.
#[inline(never)]
extern "C" fn breakpoint_target(x: u64) -> u64 {
    core::hint::black_box(x) * 3 + 1
}

/// A doubleword for watchpoints (8-byte aligned).
static WATCHED: AtomicU64 = AtomicU64::new(7);

fn events() -> u64 {
    EVENTS.load(SeqCst)
}

pub fn run(guest: &Guest) -> Outcome {
    // SAFETY: reading an ID register has no side effects.
    let dfr0 = unsafe { read_sysreg!("id_aa64dfr0_el1") };
    let brps = ((dfr0 >> 12) & 0xf) as usize + 1;
    let wrps = ((dfr0 >> 20) & 0xf) as usize + 1;
    let pmuver = (dfr0 >> 8) & 0xf;
    say!("debug: ID_AA64DFR0_EL1 = {dfr0:#x}: DebugVer {}, {brps} breakpoints, {wrps} watchpoints, PMUVer {pmuver}", dfr0 & 0xf);
    ensure!(dfr0 & 0xf >= 6, "DebugVer {} is below 6 (Armv8 debug)", dfr0 & 0xf);

    // D2.5: the OS lock is set by a cold reset.
    ensure!(os_locked(), "OSLSR_EL1.OSLK reads 0 out of reset, want 1");
    set_os_lock(false);
    ensure!(!os_locked(), "OSLSR_EL1.OSLK still reads 1 after OSLAR_EL1 = 0");
    trap::set_debug_hook(hook);
    let result = checks(guest, brps, wrps);
    // Leave nothing armed, whatever failed.
    mask_debug(true);
    set_mdscr(0);
    for n in 0..brps {
        write_dbg(n, 5, 0);
    }
    for n in 0..wrps {
        write_dbg(n, 7, 0);
    }
    set_os_lock(true);
    trap::clear_debug_hook();
    let note = result?;
    pmu(pmuver)?;
    super::note(format_args!("({note})"))
}

fn checks(guest: &Guest, brps: usize, wrps: usize) -> Result<crate::text::Text, crate::text::Text> {
    // D2.9: BRK is taken whatever MDSCR_EL1 and PSTATE.D say.
    let before = events();
    // SAFETY: the hook skips the BRK.
    unsafe { core::arch::asm!("brk #0x42", options(nostack)) };
    ensure!(events() == before + 1, "brk #0x42 took {} exceptions, want 1", events() - before);
    ensure!(
        LAST_EC.load(SeqCst) == EC_BRK && LAST_ISS.load(SeqCst) & 0xffff == BRK_PLAIN,
        "brk #0x42 gave EC {:#x} ISS {:#x}, want EC 0x3c ISS 0x42",
        LAST_EC.load(SeqCst),
        LAST_ISS.load(SeqCst)
    );
    say!("debug: brk #0x42: EC 0x3c, ISS 0x42 at EL1");

    set_mdscr(MDSCR_KDE | MDSCR_MDE);
    mask_debug(false);

    // D2.8: every breakpoint, one at a time, at the target's first instruction.
    let target = breakpoint_target as *const () as u64;
    for n in 0..brps {
        ARMED.store(n as u64, SeqCst);
        write_dbg(n, 4, target);
        write_dbg(n, 5, BCR_BAS | CR_EL1_EL0 | CR_E);
        arch::isb();
        let before = events();
        let r = breakpoint_target(n as u64);
        ensure!(r == n as u64 * 3 + 1, "the breakpointed function returned {r}");
        ensure!(events() == before + 1, "breakpoint {n} at {target:#x} took {} exceptions, want 1", events() - before);
        ensure!(
            LAST_EC.load(SeqCst) == EC_BREAKPOINT_CUR && LAST_ELR.load(SeqCst) == target,
            "breakpoint {n}: EC {:#x} ELR {:#x}, want EC 0x31 ELR {target:#x}",
            LAST_EC.load(SeqCst),
            LAST_ELR.load(SeqCst)
        );
        write_dbg(n, 4, 0);
    }
    say!("debug: {brps} breakpoints each fired once at {target:#x} (EC 0x31)");

    // D2.8 again, with exits in between: a breakpoint and a watchpoint armed before an hvc and an
    // MMIO access (each an exit to the hypervisor and back) still fire after them, though the
    // guest did not touch a debug register since.
    ARMED.store(0, SeqCst);
    write_dbg(0, 4, target);
    write_dbg(0, 5, BCR_BAS | CR_EL1_EL0 | CR_E);
    arch::isb();
    core::hint::black_box(psci::version());
    // SAFETY: UARTFR is a read-only status register.
    core::hint::black_box(unsafe { mmio::read32(UART_BASE + 0x18) });
    let before = events();
    core::hint::black_box(breakpoint_target(9));
    ensure!(events() == before + 1, "a breakpoint armed before an hvc and an MMIO exit took {} exceptions after them, want 1", events() - before);
    write_dbg(0, 4, 0);
    let addr = WATCHED.as_ptr() as u64;
    write_dbg(0, 6, addr);
    write_dbg(0, 7, WCR_BAS | WCR_LSC | CR_EL1_EL0 | CR_E);
    arch::isb();
    core::hint::black_box(psci::version());
    // SAFETY: as above.
    core::hint::black_box(unsafe { mmio::read32(UART_BASE + 0x18) });
    let before = events();
    core::hint::black_box(WATCHED.load(SeqCst));
    ensure!(events() == before + 1, "a watchpoint armed before an hvc and an MMIO exit took {} exceptions after them, want 1", events() - before);
    write_dbg(0, 6, 0);
    say!("debug: a breakpoint and a watchpoint armed before hvc and MMIO exits fired after them");

    // D2.10: every watchpoint, on a load and then on a store.
    let addr = WATCHED.as_ptr() as u64;
    for n in 0..wrps {
        for store in [false, true] {
            ARMED.store(n as u64, SeqCst);
            write_dbg(n, 6, addr);
            write_dbg(n, 7, WCR_BAS | WCR_LSC | CR_EL1_EL0 | CR_E);
            arch::isb();
            let before = events();
            if store {
                WATCHED.store(n as u64, SeqCst);
            } else {
                core::hint::black_box(WATCHED.load(SeqCst));
            }
            ensure!(events() == before + 1, "watchpoint {n} on a {} took {} exceptions, want 1", if store { "store" } else { "load" }, events() - before);
            let (ec, iss, far) = (LAST_EC.load(SeqCst), LAST_ISS.load(SeqCst), LAST_FAR.load(SeqCst));
            ensure!(ec == EC_WATCHPOINT_CUR, "watchpoint {n}: EC {ec:#x}, want 0x35");
            ensure!(far & !7 == addr, "watchpoint {n}: FAR {far:#x}, want within {addr:#x}..+8");
            ensure!((iss >> 6) & 1 == u64::from(store), "watchpoint {n}: WnR {} on a {}", (iss >> 6) & 1, if store { "store" } else { "load" });
            write_dbg(n, 6, 0);
        }
    }
    ensure!(WATCHED.load(SeqCst) == wrps as u64 - 1, "the watched store did not happen after its watchpoint");
    say!("debug: {wrps} watchpoints each fired on a load and a store (EC 0x35, FAR, WnR)");

    step()?;

    isolation(guest, brps, wrps)?;
    Ok(crate::text::Text::format(format_args!(
        "{brps} breakpoints, {wrps} watchpoints, step through MMIO/hvc/wfe/sysreg exits, {ROUNDS} rounds of exits with host-matching debug state"
    )))
}

/// D2.12: a stepped sequence through instructions that exit to the hypervisor.
fn step() -> Result<(), crate::text::Text> {
    let fr = UART_BASE + 0x18;
    // SAFETY: BRK 0x51/0x52 start and stop stepping in the hook; the MMIO load reads UARTFR,
    // the hvc is PSCI_VERSION (x0..x17 clobbered as SMCCC allows), wfe is a hint.
    unsafe {
        core::arch::asm!(
            "brk #0x51",
            "nop",
            "ldr w9, [{fr}]",
            "movz x0, #0x8400, lsl #16",
            "hvc #0",
            "wfe",
            "mrs x10, id_aa64dfr0_el1",
            "nop",
            "brk #0x52",
            fr = in(reg) fr,
            out("x0") _, out("x1") _, out("x2") _, out("x3") _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    let base = STEP_BASE.load(SeqCst);
    let steps = STEPS.load(SeqCst);
    // brk, nop, ldr, movz, hvc, wfe, mrs, nop, brk: the nop after the first brk runs with SS
    // set, and a step exception comes before each of the next seven instructions.
    const NAMES: [&str; 7] = ["ldr (MMIO)", "movz", "hvc", "wfe", "mrs (ID register)", "nop", "brk"];
    for (i, name) in NAMES.iter().enumerate() {
        let elr = STEP_ELR[i].load(SeqCst);
        let want = base + 8 + 4 * i as u64;
        ensure!(
            i < steps as usize && elr == want,
            "software step {}: ELR {elr:#x}, want {want:#x} (before the {name}); {steps} steps taken",
            i + 1
        );
    }
    ensure!(steps == NAMES.len() as u64, "{steps} software steps, want {}", NAMES.len());
    ensure!(mdscr() & MDSCR_SS == 0, "MDSCR_EL1.SS still set after the stepped sequence");
    say!("debug: software step: 7 steps in order through an MMIO load, hvc, wfe and an ID-register read");
    Ok(())
}

/// Debug state that would fire everywhere in a host, left set across exits of every kind.
fn isolation(_guest: &Guest, brps: usize, wrps: usize) -> Result<(), crate::text::Text> {
    mask_debug(true);
    let all_els = CR_HMC | CR_EL1_EL0 | CR_E;
    for n in 0..brps {
        let at = if n % 2 == 0 { HOST_KERNEL } else { HOST_USER } + 4 * n as u64;
        write_dbg(n, 4, at);
        write_dbg(n, 5, BCR_BAS | all_els);
    }
    for n in 0..wrps {
        let at = if n % 2 == 0 { 0 } else { HOST_KERNEL };
        write_dbg(n, 6, at);
        write_dbg(n, 7, WCR_MASK_2G | WCR_BAS | WCR_LSC | all_els);
    }
    set_mdscr(MDSCR_SS | MDSCR_KDE | MDSCR_MDE);
    let mut written = [[0u64; 4]; 16];
    for (n, regs) in written.iter_mut().enumerate() {
        for (k, r) in regs.iter_mut().enumerate() {
            if (k < 2 && n < brps) || (k >= 2 && n < wrps) {
                *r = read_dbg(n, 4 + k as u32);
            }
        }
    }
    let mdscr_set = mdscr();

    gic::init_distributor()?;
    gic::init_this_cpu()?;
    gic::enable_private(timer::VTIMER_INTID);
    arch::unmask_irqs();
    let cpu = percpu::this();
    let before = events();
    for _ in 0..ROUNDS {
        // SAFETY: UARTFR is a read-only status register.
        core::hint::black_box(unsafe { mmio::read32(UART_BASE + 0x18) });
        // SAFETY: Keel's test call only answers x1 + 1 (plain QEMU returns NOT_SUPPORTED).
        core::hint::black_box(unsafe { arch::call::hvc(KEEL_TEST_CALL, 1, 0, 0) });
        core::hint::black_box(psci::version());
        // WFI with IRQs masked, so a timer that fires before it still wakes it (see wait.rs).
        let irqs = cpu.timer_irqs.load(SeqCst);
        arch::mask_irqs();
        timer::one_shot(timer::ms(1));
        while cpu.timer_irqs.load(SeqCst) == irqs {
            arch::wfi();
            arch::unmask_irqs();
            arch::mask_irqs();
        }
        arch::unmask_irqs();
        // SAFETY: nothing is at HOLE: the read aborts (Keel) or reads the PCIe window (plain QEMU).
        let _ = trap::catching(|| core::hint::black_box(unsafe { mmio::read32(HOLE) }));
    }
    timer::stop();
    arch::mask_irqs();
    ensure!(events() == before, "{} debug exceptions in the guest with PSTATE.D masked", events() - before);
    ensure!(mdscr() == mdscr_set, "MDSCR_EL1 reads {:#x} after the exits, the guest wrote {mdscr_set:#x}", mdscr());
    for (n, regs) in written.iter().enumerate() {
        for (k, &w) in regs.iter().enumerate() {
            if (k < 2 && n < brps) || (k >= 2 && n < wrps) {
                let now = read_dbg(n, 4 + k as u32);
                let name = ["DBGBVR", "DBGBCR", "DBGWVR", "DBGWCR"][k];
                ensure!(now == w, "{name}{n}_EL1 reads {now:#x} after the exits, {w:#x} before");
            }
        }
    }
    say!("debug: {ROUNDS} rounds of MMIO, hvc, WFI and stage-2-fault exits with every breakpoint and watchpoint on host addresses: none fired, all still the guest's");
    Ok(())
}

/// The PMU is either absent and UNDEFINED, or counts.
fn pmu(pmuver: u64) -> Result<(), crate::text::Text> {
    if pmuver == 0 || pmuver == 0xf {
        // SAFETY: reading the PMU registers has no side effects (or is UNDEFINED).
        let (_, pmcr) = trap::catching(|| unsafe { read_sysreg!("pmcr_el0") });
        let (_, ccnt) = trap::catching(|| unsafe { read_sysreg!("pmccntr_el0") });
        for (name, caught) in [("PMCR_EL0", pmcr), ("PMCCNTR_EL0", ccnt)] {
            let Some(c) = caught else { fail!("{name} is readable with PMUVer {pmuver} (no PMU): want UNDEFINED") };
            ensure!(c.ec() == EC_UNKNOWN, "{name} with no PMU: EC {:#x}, want 0 (UNDEFINED)", c.ec());
        }
        say!("debug: no PMU advertised (PMUVer {pmuver}): PMCR_EL0 and PMCCNTR_EL0 are UNDEFINED");
        return Ok(());
    }
    // SAFETY: this scenario owns the PMU: enable it and the cycle counter, counting EL1 and EL0.
    let (c0, c1) = unsafe {
        write_sysreg!("pmccfiltr_el0", 0);
        write_sysreg!("pmcntenset_el0", 1 << 31);
        write_sysreg!("pmcr_el0", 1 | (1 << 2));
        arch::isb();
        let c0 = read_sysreg!("pmccntr_el0");
        for i in 0..1000u64 {
            core::hint::black_box(i);
        }
        arch::isb();
        let c1 = read_sysreg!("pmccntr_el0");
        write_sysreg!("pmcr_el0", 0);
        write_sysreg!("pmcntenclr_el0", 1 << 31);
        (c0, c1)
    };
    ensure!(c1 > c0, "PMCCNTR_EL0 did not count over 1000 loop iterations ({c0} -> {c1})");
    say!("debug: PMUVer {pmuver}: the cycle counter counted {} over 1000 iterations", c1 - c0);
    Ok(())
}
