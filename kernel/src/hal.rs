//! The hardware the arch-neutral kernel needs, as plain functions: physical memory through the
//! direct map, TLB maintenance, address-space and FP/SIMD switching, IPIs, interrupt masking,
//! the console and power.
//!
//! On the bare-metal target these are `arch::aarch64::hal`; in host tests they are a fake that
//! keeps physical memory in a map of boxed frames and records what would have been done, so the
//! object, IPC and syscall logic is tested on the host.

#[cfg(target_os = "none")]
pub use crate::arch::aarch64::hal::*;

#[cfg(not(target_os = "none"))]
pub use fake::*;

/// A spin lock whose waiters [`Relax`].
pub type Mutex<T> = spin::mutex::Mutex<T, Relax>;
/// Its guard.
pub type MutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T, Relax>;

/// A thread's (or a vCPU's) general registers; the same layout as the trap frame `vectors.S` saves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UserRegs {
    pub x: [u64; 31],
    pub sp: u64,
    pub pc: u64,
    pub pstate: u64,
}

const _: () = assert!(core::mem::size_of::<UserRegs>() == 272);

/// FP/SIMD registers of a thread (V0-V31, FPCR, FPSR).
#[derive(Clone, Debug)]
#[repr(C, align(16))]
pub struct FpState {
    pub v: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

impl FpState {
    pub const fn new() -> Self {
        Self { v: [0; 32], fpcr: 0, fpsr: 0 }
    }
}

impl Default for FpState {
    fn default() -> Self {
        Self::new()
    }
}

/// A guest vCPU's EL1 system registers, virtual timer and vGIC CPU-interface state while it is
/// not loaded on a CPU (the arch layer saves and restores them through the `*_EL12` aliases).
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct GuestContext {
    pub sctlr: u64,
    pub cpacr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub esr: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub far: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub cntkctl: u64,
    pub spsr: u64,
    pub elr: u64,
    pub sp_el1: u64,
    pub tpidr_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub par: u64,
    pub csselr: u64,
    pub mdscr: u64,
    /// The breakpoint, watchpoint and OS-lock registers, loaded on first use (see `debug_live`).
    pub debug: DebugRegs,
    /// `debug` is in the CPU (from the guest's first debug-register access until the vCPU is put).
    pub debug_live: bool,
    /// APIA, APIB, APDA, APDB, APGA key pairs (lo, hi).
    pub pauth: [u64; 10],
    /// The SVE registers and ZCR_EL1, live with the vCPU once it has used SVE (`sve_used`).
    pub sve: SveRegs,
    /// The guest executed an SVE instruction since its reset: its SVE state is switched with it.
    pub sve_used: bool,
    /// The PMU's registers, loaded on first use (see `pmu_live`).
    pub pmu: PmuRegs,
    /// `pmu` is in the CPU (from the guest's first PMU-register access until the vCPU is put).
    pub pmu_live: bool,
    pub cntv_ctl: u64,
    pub cntv_cval: u64,
    /// The EL1 physical timer (CNTP_CTL, CNTP_CVAL): the guest's own, as the virtual one is.
    pub cntp_ctl: u64,
    pub cntp_cval: u64,
    /// ICH_VMCR_EL2, ICH_AP0R0_EL2, ICH_AP1R0_EL2.
    pub vmcr: u64,
    pub ap0r0: u64,
    pub ap1r0: u64,
}

/// A vCPU's self-hosted debug registers: DBGBVR/DBGBCR and DBGWVR/DBGWCR (as many as
/// ID_AA64DFR0_EL1 gives, up to 16 each) and the OS lock.
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct DebugRegs {
    pub bvr: [u64; 16],
    pub bcr: [u64; 16],
    pub wvr: [u64; 16],
    pub wcr: [u64; 16],
    /// OSLSR_EL1.OSLK: debug exceptions other than BRK are off while it is set.
    pub os_lock: bool,
}

/// A vCPU's SVE registers at the guests' vector length (at most 4 quadwords, 512 bits): Z0-Z31,
/// P0-P15, FFR, and its ZCR_EL1.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct SveRegs {
    pub z: [u8; 32 * 64],
    pub p: [u8; 16 * 8],
    pub ffr: [u8; 8],
    pub zcr: u64,
}

impl Default for SveRegs {
    fn default() -> Self {
        Self { z: [0; 32 * 64], p: [0; 16 * 8], ffr: [0; 8], zcr: 0 }
    }
}

/// A vCPU's PMUv3 state (Arm ARM D13): control, enables, overflow flags, the cycle counter and
/// as many event counters and their event types as the CPU has (up to 31).
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct PmuRegs {
    /// PMCR_EL0 (its N field is read-only).
    pub pmcr: u64,
    pub selr: u64,
    pub userenr: u64,
    /// PMCNTENSET_EL0, PMINTENSET_EL1, PMOVSSET_EL0: counter enables, interrupt enables,
    /// overflow flags (bit n: event counter n; bit 31: the cycle counter).
    pub cnten: u64,
    pub inten: u64,
    pub ovs: u64,
    pub ccfiltr: u64,
    pub ccntr: u64,
    pub evcntr: [u64; 31],
    pub evtyper: [u64; 31],
}

impl GuestContext {
    /// The architectural reset state of a vCPU entering with the MMU and caches off (the OS
    /// lock is set by a cold reset: Arm ARM D2.5, OSLSR_EL1.OSLK).
    pub fn reset() -> Self {
        Self { sctlr: 0x30D0_0800, debug: DebugRegs { os_lock: true, ..DebugRegs::default() }, ..Self::default() }
    }
}

/// What loading a vCPU onto a CPU needs besides its saved context.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestLoad {
    /// VTTBR_EL2: stage-2 root and VMID.
    pub vttbr: u64,
    pub vmpidr: u64,
    pub cntvoff: u64,
    /// The passed-through PPIs (bit per INTID: the timers, the PMU) whose physical interrupt
    /// is held off because the guest's line is asserted in the vGIC.
    pub held_ppis: u32,
}

/// The PMU's overflow interrupt (PPI 7), the same INTID for the host and the guest.
pub const PMU_INTID: u32 = keel_abi::vm::layout::PMU_INTID;

/// The PPIs of the guest's own CPU devices that the host passes through: both EL1 timers and
/// the PMU.
pub const PASSED_PPIS: [u32; 3] = [GuestTimer::Virtual.intid(), GuestTimer::Physical.intid(), PMU_INTID];

/// The two EL1 timers a guest owns (Arm ARM D12, the Generic Timer): the virtual timer counts
/// the VM's virtual counter (CNTVCT = physical count - CNTVOFF), the physical timer the physical
/// counter. The host schedules on the EL2 timers, so both EL1 timers are the guest's alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestTimer {
    Virtual = 0,
    Physical = 1,
}

impl GuestTimer {
    pub const ALL: [GuestTimer; 2] = [GuestTimer::Virtual, GuestTimer::Physical];

    /// The timer's PPI, the same INTID for the host's GIC and the guest's vGIC.
    pub const fn intid(self) -> u32 {
        match self {
            GuestTimer::Virtual => keel_abi::vm::layout::VTIMER_INTID,
            GuestTimer::Physical => keel_abi::vm::layout::PTIMER_INTID,
        }
    }

    /// The timer's (CTL, CVAL) as saved in `ctx` (the vCPU not loaded).
    pub fn saved(self, ctx: &GuestContext) -> (u64, u64) {
        match self {
            GuestTimer::Virtual => (ctx.cntv_ctl, ctx.cntv_cval),
            GuestTimer::Physical => (ctx.cntp_ctl, ctx.cntp_cval),
        }
    }

    /// The timer whose PPI is `intid`.
    pub fn from_intid(intid: u32) -> Option<GuestTimer> {
        GuestTimer::ALL.into_iter().find(|t| t.intid() == intid)
    }
}

/// CNT*_CTL bits: ENABLE, IMASK, ISTATUS.
pub const TIMER_ENABLE: u64 = 1 << 0;
pub const TIMER_IMASK: u64 = 1 << 1;
pub const TIMER_ISTATUS: u64 = 1 << 2;

/// Whether a timer with control register `ctl` asserts its interrupt: enabled, its condition
/// met (ISTATUS) and not masked (Arm ARM D12.2.4: the interrupt is asserted exactly then; it
/// is level-sensitive).
pub const fn timer_asserts(ctl: u64) -> bool {
    ctl & (TIMER_ENABLE | TIMER_IMASK | TIMER_ISTATUS) == TIMER_ENABLE | TIMER_ISTATUS
}

#[cfg(not(target_os = "none"))]
pub mod fake {
    //! Host stand-ins. Physical frames are boxed pages keyed by address; the frames come from
    //! `mm::frame::FRAMES`, which tests fill with a fake RAM range.
    use super::FpState;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct FakeMachine {
        pub frames: BTreeMap<u64, Box<[u64; 512]>>,
        pub console: Vec<u8>,
        pub ipis: Vec<usize>,
        pub tlb_flushes: usize,
        pub powered_off: bool,
        pub enabled_irqs: Vec<u32>,
        pub now: u64,
        pub heap_free: Option<usize>,
        /// Deadlines the kernel asked the timer to fire by (`timer_wake_by`).
        pub wake_by: Vec<u64>,
    }

    thread_local! {
        pub static MACHINE: RefCell<FakeMachine> = RefCell::new(FakeMachine::default());
    }

    fn with_frame<R>(pa: u64, f: impl FnOnce(&mut [u64; 512]) -> R) -> R {
        MACHINE.with(|m| {
            let mut m = m.borrow_mut();
            let frame = m.frames.entry(pa & !0xfff).or_insert_with(|| Box::new([0; 512]));
            f(frame)
        })
    }

    pub fn zero_frame(pa: u64) {
        with_frame(pa, |f| f.fill(0));
    }

    pub fn copy_to_phys(pa: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let a = pa + i as u64;
            with_frame(a, |f| {
                let word = &mut f[((a & 0xfff) / 8) as usize];
                let shift = (a % 8) * 8;
                *word = (*word & !(0xff << shift)) | (u64::from(*b) << shift);
            });
        }
    }

    pub fn copy_from_phys(pa: u64, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            let a = pa + i as u64;
            *b = with_frame(a, |f| (f[((a & 0xfff) / 8) as usize] >> ((a % 8) * 8)) as u8);
        }
    }

    pub fn copy_phys(dst: u64, src: u64, len: usize) {
        let mut bytes = std::vec![0; len];
        copy_from_phys(src, &mut bytes);
        copy_to_phys(dst, &bytes);
    }

    /// The table frame at `pa`. The fake leaks a pointer into the boxed frame, which stays put.
    pub fn phys_table(pa: u64) -> &'static mut [u64; 512] {
        let ptr = with_frame(pa, |f| f as *mut [u64; 512]);
        // SAFETY (test only): frames are boxed and never removed while a test runs.
        #[allow(unsafe_code)]
        unsafe {
            &mut *ptr
        }
    }

    pub fn tlb_flush_asid(_asid: u16) {
        MACHINE.with(|m| m.borrow_mut().tlb_flushes += 1);
    }

    pub fn tlb_flush_page(_asid: u16, _va: u64) {
        MACHINE.with(|m| m.borrow_mut().tlb_flushes += 1);
    }

    pub fn set_user_space(_ttbr0: u64, _asid: u16) {}

    pub fn fp_save(_fp: &mut FpState) {}

    pub fn copy_regs(dst: &mut super::UserRegs, src: &super::UserRegs) {
        *dst = *src;
    }

    pub fn fp_restore(_fp: &FpState) {}

    pub fn send_ipi(cpu: usize) {
        MACHINE.with(|m| m.borrow_mut().ipis.push(cpu));
    }

    pub fn irq_enable(intid: u32) {
        MACHINE.with(|m| m.borrow_mut().enabled_irqs.push(intid));
    }

    pub fn irq_unmask(intid: u32) {
        MACHINE.with(|m| m.borrow_mut().enabled_irqs.push(intid));
    }

    pub fn irq_mask(intid: u32) {
        MACHINE.with(|m| m.borrow_mut().enabled_irqs.retain(|&i| i != intid));
    }

    pub fn console_write(bytes: &[u8]) {
        MACHINE.with(|m| m.borrow_mut().console.extend_from_slice(bytes));
    }

    pub fn power_off(_reset: bool) {
        MACHINE.with(|m| m.borrow_mut().powered_off = true);
    }

    pub fn now_ticks() -> u64 {
        MACHINE.with(|m| m.borrow().now)
    }

    pub fn ticks_per_second() -> u64 {
        1_000_000_000
    }

    pub fn this_cpu() -> usize {
        0
    }

    /// Spin-lock waiting on the host: the ordinary spin hint.
    pub struct Relax;

    impl spin::RelaxStrategy for Relax {
        fn relax() {
            core::hint::spin_loop();
        }
    }

    pub fn timer_wake_by(deadline: u64) {
        MACHINE.with(|m| m.borrow_mut().wake_by.push(deadline));
    }

    pub fn guest_load(_ctx: &mut super::GuestContext, _load: super::GuestLoad) {}

    pub fn guest_put(ctx: &mut super::GuestContext) {
        ctx.debug_live = false;
    }

    pub fn guest_debug_load(ctx: &mut super::GuestContext) -> bool {
        !core::mem::replace(&mut ctx.debug_live, true)
    }

    pub fn guest_lr_count() -> usize {
        4
    }

    pub fn guest_lrs_read(_lrs: &mut [u64], _mask: u16) {}

    pub fn guest_lrs_write(_lrs: &[u64], _mask: u16, _underflow: bool) {}

    /// The live timer (CTL, CVAL) of the loaded vCPU.
    pub fn guest_timer(_timer: super::GuestTimer) -> (u64, u64) {
        (0, 0)
    }

    pub fn guest_ppi_hold(_intid: u32, _hold: bool) {}

    /// Whether the loaded vCPU's PMU asserts its overflow interrupt (live or as saved).
    pub fn guest_pmu_asserts(ctx: &super::GuestContext) -> bool {
        ctx.pmu.ovs & ctx.pmu.inten != 0
    }

    /// The loaded vCPU's first SVE use; false if SVE is not to be had.
    pub fn guest_sve_first_use(ctx: &mut super::GuestContext, _fp: &mut super::FpState) -> bool {
        !core::mem::replace(&mut ctx.sve_used, true)
    }

    /// Gives the loaded vCPU its own PMU registers; false if they were loaded already.
    pub fn guest_pmu_load(ctx: &mut super::GuestContext) -> bool {
        !core::mem::replace(&mut ctx.pmu_live, true)
    }

    /// Writes the loaded vCPU's exception registers; returns its VBAR_EL1.
    pub fn guest_exception(_elr: u64, _spsr: u64, _esr: u64, _far: u64) -> u64 {
        0
    }

    /// FAR_EL2 of the current guest abort.
    pub fn guest_fault_address() -> u64 {
        0
    }

    pub fn guest_id_reg(_op1: u8, _crn: u8, _crm: u8, _op2: u8) -> u64 {
        0
    }

    pub fn tlb_flush_vmid(_vmid: u16) {
        MACHINE.with(|m| m.borrow_mut().tlb_flushes += 1);
    }

    /// IPA bits and VMID count of the host CPU.
    pub fn stage2_limits() -> (u32, u32) {
        (48, 256)
    }

    /// Tests set `heap_free` to see the kernel refuse work when its heap runs low.
    pub fn kernel_heap_free() -> usize {
        MACHINE.with(|m| m.borrow().heap_free.unwrap_or(usize::MAX))
    }

    /// The fake heap's size (only the census reports it).
    pub fn kernel_heap_total() -> usize {
        64 << 20
    }
}
