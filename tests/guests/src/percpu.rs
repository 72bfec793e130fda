//! Per-CPU state, indexed by MPIDR_EL1.Aff0: exception records, interrupt counters, timer mode,
//! and the job mailbox secondaries serve.
//!
//! Invariant: every field has exactly one writer, named in its doc comment ("this CPU" means the
//! CPU the slot belongs to, in thread or handler context; its handlers never interrupt an update
//! of the same field). So plain loads and stores suffice, and the guest needs no exclusives or
//! atomic read-modify-write instructions, which are IMPLEMENTATION DEFINED on the Device memory
//! that every access is with the MMU off. [`bump`] is a load and a store, not a `fetch_add`.

use crate::machine::MAX_CPUS;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};

/// One CPU's state.
pub struct PerCpu {
    /// Whether synchronous exceptions are skipped (inside `trap::catching`) or fatal. This CPU.
    pub catch_sync: AtomicBool,
    /// Nesting depth of the trap handler. This CPU's handler.
    pub trap_depth: AtomicU32,
    /// Synchronous exceptions taken. This CPU's handler.
    pub sync_count: AtomicU64,
    /// ESR_EL1 of the last synchronous exception. This CPU's handler.
    pub last_esr: AtomicU64,
    /// FAR_EL1 of the last synchronous exception. This CPU's handler.
    pub last_far: AtomicU64,
    /// ELR_EL1 of the last synchronous exception. This CPU's handler.
    pub last_elr: AtomicU64,
    /// SErrors taken. This CPU's handler.
    pub serror_count: AtomicU64,
    /// ESR_EL1 of the last SError. This CPU's handler.
    pub last_serror_esr: AtomicU64,
    /// IRQs acknowledged (any INTID below 1020). This CPU's handler.
    pub irq_count: AtomicU64,
    /// Virtual-timer interrupts. This CPU's handler.
    pub timer_irqs: AtomicU64,
    /// Physical-timer interrupts. This CPU's handler.
    pub ptimer_irqs: AtomicU64,
    /// Timer interrupts (either timer) the handler takes without touching the timer, so a
    /// level-sensitive line still asserted is taken again after its EOI; at 0 the handler
    /// switches the timer off. This CPU (thread context, IRQs masked; handler after).
    pub timer_storm_left: AtomicU64,
    /// SGIs received. This CPU's handler.
    pub sgi_count: AtomicU64,
    /// Interrupts other than the timer and SGIs. This CPU's handler.
    pub other_irqs: AtomicU64,
    /// PMU overflow interrupts (INTID 23). This CPU's handler.
    pub pmu_irqs: AtomicU64,
    /// PMOVSSET_EL0 as the last PMU overflow interrupt found it (the flags it then cleared).
    /// This CPU's handler.
    pub pmu_overflow_flags: AtomicU64,
    /// Periodic-timer interval in ticks (0 = one-shot). This CPU, timer off.
    pub timer_interval: AtomicU64,
    /// Periodic-timer re-arms left. This CPU (thread context with the timer off; handler after).
    pub timer_rearms_left: AtomicU64,
    /// This CPU's redistributor RD_base (0 = GIC not set up on this CPU). This CPU.
    pub redistributor: AtomicU64,
    /// Times this CPU entered Rust (1 + re-entries after CPU_OFF/CPU_ON). This CPU.
    pub boots: AtomicU64,
    /// The context ID the last CPU_ON passed in x0. This CPU.
    pub context_id: AtomicU64,
    /// The job posted to this CPU (a `smp::Job` as usize; 0 = none). The poster sets it, this CPU
    /// clears it when it takes the job.
    pub job: AtomicUsize,
    /// The posted job's argument. The poster, before `job`.
    pub job_arg: AtomicU64,
    /// The last job's result. This CPU, before `jobs_done`.
    pub job_result: AtomicU64,
    /// Jobs finished. This CPU.
    pub jobs_done: AtomicU64,
    /// A job's "I am in position" flag (the racing CPU_ON). This CPU.
    pub ready: AtomicU32,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            catch_sync: AtomicBool::new(false),
            trap_depth: AtomicU32::new(0),
            sync_count: AtomicU64::new(0),
            last_esr: AtomicU64::new(0),
            last_far: AtomicU64::new(0),
            last_elr: AtomicU64::new(0),
            serror_count: AtomicU64::new(0),
            last_serror_esr: AtomicU64::new(0),
            irq_count: AtomicU64::new(0),
            timer_irqs: AtomicU64::new(0),
            ptimer_irqs: AtomicU64::new(0),
            timer_storm_left: AtomicU64::new(0),
            sgi_count: AtomicU64::new(0),
            other_irqs: AtomicU64::new(0),
            pmu_irqs: AtomicU64::new(0),
            pmu_overflow_flags: AtomicU64::new(0),
            timer_interval: AtomicU64::new(0),
            timer_rearms_left: AtomicU64::new(0),
            redistributor: AtomicU64::new(0),
            boots: AtomicU64::new(0),
            context_id: AtomicU64::new(0),
            job: AtomicUsize::new(0),
            job_arg: AtomicU64::new(0),
            job_result: AtomicU64::new(0),
            jobs_done: AtomicU64::new(0),
            ready: AtomicU32::new(0),
        }
    }
}

static CPUS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// The calling CPU's state.
pub fn this() -> &'static PerCpu {
    &CPUS[crate::arch::cpu_index()]
}

/// CPU `index`'s state.
pub fn of(index: usize) -> &'static PerCpu {
    assert!(index < MAX_CPUS, "per-CPU state is indexed below MAX_CPUS");
    &CPUS[index]
}

/// Adds one to a counter that only the calling CPU writes (see the module invariant).
pub fn bump(counter: &AtomicU64) {
    counter.store(counter.load(SeqCst).wrapping_add(1), SeqCst);
}
