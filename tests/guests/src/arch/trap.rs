//! Exception vectors and what the guest does with each exception.
//!
//! Every vector saves a [`TrapFrame`] on the current stack and calls [`handle_trap`]. A
//! synchronous exception is recorded in this CPU's [`PerCpu`](crate::percpu::PerCpu) (ESR, FAR,
//! ELR, count) and then either
//! - skipped, while the CPU runs inside [`catching`]: ELR += 4, or — for an instruction abort or
//!   any exception whose ELR lies outside the guest's own code (the guest branched somewhere
//!   strange) — ELR = x30, the return address of the `blr` that went there; or
//! - fatal: the guest prints what happened, FAILs the scenario and switches the machine off.
//!
//! IRQs go to the GIC driver; SErrors are counted and ignored (a storm is fatal); FIQs and
//! exceptions from the wrong vector (SP_EL0, lower ELs) are fatal.

use crate::percpu::{self, bump};
use core::sync::atomic::Ordering::SeqCst;

/// Registers saved on exception entry (layout shared with the assembly below).
#[repr(C)]
pub struct TrapFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// ELR_EL1: where `eret` returns to.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    _pad: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(
    FRAME_SIZE == 272,
    "the vector assembly assumes a 272-byte frame"
);

/// SErrors tolerated before the guest gives up (a level-held physical SError would never stop).
const SERROR_LIMIT: u64 = 1000;

core::arch::global_asm!(
    r#"
.macro VECTOR kind
.balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       trap_save
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    VECTOR 0    // current EL, SP_EL0: sync
    VECTOR 1    //                     irq
    VECTOR 2    //                     fiq
    VECTOR 3    //                     serror
    VECTOR 4    // current EL, SP_EL1: sync
    VECTOR 5    //                     irq
    VECTOR 6    //                     fiq
    VECTOR 7    //                     serror
    VECTOR 8    // lower EL, AArch64
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12   // lower EL, AArch32
    VECTOR 13
    VECTOR 14
    VECTOR 15

trap_save:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #240]
    mrs     x1, spsr_el1
    str     x1, [sp, #256]
    mov     x1, x0
    mov     x0, sp
    bl      {handler}
    ldr     x1, [sp, #256]
    msr     spsr_el1, x1
    ldp     x30, x1, [sp, #240]
    msr     elr_el1, x1
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #{frame}
    eret
"#,
    frame = const FRAME_SIZE,
    handler = sym handle_trap,
);

/// One recorded synchronous exception.
#[derive(Debug, Clone, Copy)]
pub struct Caught {
    /// How many synchronous exceptions were taken (the fields below describe the last one).
    pub count: u64,
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1.
    pub far: u64,
    /// ELR_EL1 at the exception.
    pub elr: u64,
}

/// ESR_EL1.EC: unknown reason (UNDEF).
pub const EC_UNKNOWN: u64 = 0x00;
/// ESR_EL1.EC: instruction abort taken without a change in EL.
pub const EC_IABT_CUR: u64 = 0x21;
/// ESR_EL1.EC: data abort taken without a change in EL.
pub const EC_DABT_CUR: u64 = 0x25;
/// ESR_EL1.EC: hardware breakpoint taken without a change in EL.
pub const EC_BREAKPOINT_CUR: u64 = 0x31;
/// ESR_EL1.EC: software step taken without a change in EL.
pub const EC_STEP_CUR: u64 = 0x33;
/// ESR_EL1.EC: watchpoint taken without a change in EL.
pub const EC_WATCHPOINT_CUR: u64 = 0x35;
/// ESR_EL1.EC: BRK instruction (AArch64).
pub const EC_BRK: u64 = 0x3c;

/// A handler for the debug exceptions above: gets the frame (it may change ELR and SPSR), ESR
/// and FAR.
pub type DebugHook = fn(&mut TrapFrame, u64, u64);

static DEBUG_HOOK: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Sends debug exceptions (BRK, breakpoints, watchpoints, software step) taken at EL1 to `hook`
/// instead of the catching/fatal path, until [`clear_debug_hook`].
pub fn set_debug_hook(hook: DebugHook) {
    DEBUG_HOOK.store(hook as usize, SeqCst);
}

/// Debug exceptions are handled like any other synchronous exception again.
pub fn clear_debug_hook() {
    DEBUG_HOOK.store(0, SeqCst);
}

/// Data/instruction fault status: synchronous external abort, not on a table walk.
pub const FSC_EXTERNAL: u64 = 0x10;

impl Caught {
    /// Exception class.
    pub fn ec(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }
    /// Data/instruction fault status code (ISS[5:0]).
    pub fn fsc(&self) -> u64 {
        self.esr & 0x3f
    }
    /// Data abort: the access was a write (ISS.WnR).
    pub fn write(&self) -> bool {
        self.esr & (1 << 6) != 0
    }
    /// Abort: FAR holds the faulting address (ISS.FnV = 0).
    pub fn far_valid(&self) -> bool {
        self.esr & (1 << 10) == 0
    }
}

/// Runs `f` with synchronous exceptions skipped instead of fatal, and reports the exceptions
/// taken meanwhile.
pub fn catching<R>(f: impl FnOnce() -> R) -> (R, Option<Caught>) {
    let cpu = percpu::this();
    let before = cpu.sync_count.load(SeqCst);
    let was_catching = cpu.catch_sync.load(SeqCst);
    cpu.catch_sync.store(true, SeqCst);
    let result = f();
    cpu.catch_sync.store(was_catching, SeqCst);
    let count = cpu.sync_count.load(SeqCst) - before;
    let caught = (count > 0).then(|| Caught {
        count,
        esr: cpu.last_esr.load(SeqCst),
        far: cpu.last_far.load(SeqCst),
        elr: cpu.last_elr.load(SeqCst),
    });
    (result, caught)
}

fn guest_text() -> core::ops::Range<u64> {
    unsafe extern "C" {
        static __image_start: u8;
        static __text_end: u8;
    }
    // Linker symbols: only their addresses are used.
    (&raw const __image_start) as u64..(&raw const __text_end) as u64
}

extern "C" fn handle_trap(frame: &mut TrapFrame, kind: u64) {
    let cpu = percpu::this();
    let depth = cpu.trap_depth.load(SeqCst);
    cpu.trap_depth.store(depth + 1, SeqCst);
    match kind {
        4 => handle_sync(frame, depth),
        5 => crate::gic::handle_irq(),
        7 => {
            // SAFETY: reading ESR_EL1 has no side effects.
            let esr = unsafe { read_sysreg!("esr_el1") };
            cpu.last_serror_esr.store(esr, SeqCst);
            bump(&cpu.serror_count);
            if cpu.serror_count.load(SeqCst) > SERROR_LIMIT {
                fatal("SError storm", frame, esr);
            }
        }
        _ => {
            // SAFETY: reading ESR_EL1 has no side effects.
            let esr = unsafe { read_sysreg!("esr_el1") };
            fatal(vector_name(kind), frame, esr);
        }
    }
    cpu.trap_depth.store(depth, SeqCst);
}

fn handle_sync(frame: &mut TrapFrame, depth: u32) {
    let cpu = percpu::this();
    // SAFETY: reading the syndrome registers has no side effects.
    let (esr, far) = unsafe { (read_sysreg!("esr_el1"), read_sysreg!("far_el1")) };
    cpu.last_esr.store(esr, SeqCst);
    cpu.last_far.store(far, SeqCst);
    cpu.last_elr.store(frame.elr, SeqCst);
    bump(&cpu.sync_count);
    let ec = (esr >> 26) & 0x3f;
    if depth == 0 && matches!(ec, EC_BREAKPOINT_CUR | EC_STEP_CUR | EC_WATCHPOINT_CUR | EC_BRK) {
        let hook = DEBUG_HOOK.load(SeqCst);
        if hook != 0 {
            // SAFETY: only `set_debug_hook` stores here, and it stores a `DebugHook`.
            let hook: DebugHook = unsafe { core::mem::transmute::<usize, DebugHook>(hook) };
            hook(frame, esr, far);
            return;
        }
    }
    if depth > 0 || !cpu.catch_sync.load(SeqCst) {
        fatal("synchronous exception", frame, esr);
    }
    if ec == 0x20 || ec == EC_IABT_CUR || !guest_text().contains(&frame.elr) {
        frame.elr = frame.x[30];
    } else {
        frame.elr += 4;
    }
}

fn vector_name(kind: u64) -> &'static str {
    match kind {
        0..=3 => "exception on SP_EL0",
        6 => "FIQ",
        8..=15 => "exception from a lower EL",
        _ => "exception",
    }
}

fn fatal(what: &str, frame: &TrapFrame, esr: u64) -> ! {
    let cpu = percpu::this();
    if cpu.trap_depth.load(SeqCst) >= 2 {
        // Reporting itself faulted: switch off without printing.
        crate::psci::system_off();
    }
    // SAFETY: reading FAR_EL1 has no side effects.
    let far = unsafe { read_sysreg!("far_el1") };
    say!(
        "unexpected {what} on cpu {}: ESR {esr:#x} (EC {:#x}) FAR {far:#x} ELR {:#x} SPSR {:#x}",
        crate::arch::cpu_index(),
        (esr >> 26) & 0x3f,
        frame.elr,
        frame.spsr
    );
    crate::runtime::fail_and_power_off(format_args!("unexpected {what}"))
}
