//! Secondary CPUs: starting them with PSCI CPU_ON, the code they run, and the job mailbox
//! through which the primary gives them work.
//!
//! A secondary announces itself (`guest: cpu N up`), counts the boot in `PerCpu::boots`, then
//! serves jobs forever: it waits (WFE) for `PerCpu::job`, clears it, runs it, stores the result
//! and bumps `jobs_done`. A job may end with CPU_OFF; a later CPU_ON starts the CPU afresh.

use crate::percpu::{self, bump};
use crate::text::Text;
use crate::{arch, psci, runtime, smccc, timer, wait};
use core::sync::atomic::Ordering::SeqCst;

/// Work for a secondary: takes the posted argument, returns the result.
pub type Job = fn(u64) -> u64;

/// How long a CPU may take to come up after CPU_ON (TCG on a busy host is slow).
const BOOT_TIMEOUT_MS: u64 = 5000;

/// The physical address CPU_ON must start secondaries at.
pub fn entry_point() -> u64 {
    arch::boot::secondary_entry as *const () as u64
}

/// CPU_ON for CPU `index` (MPIDR from the DTB) at the guest's entry point, context ID = `index`.
pub fn cpu_on(mpidr: u64, index: usize) -> i64 {
    psci::cpu_on(mpidr, entry_point(), index as u64)
}

/// Starts CPU `index` and waits until it runs Rust.
pub fn start(mpidr: u64, index: usize) -> Result<(), Text> {
    let boots = percpu::of(index).boots.load(SeqCst);
    let result = cpu_on(mpidr, index);
    if result != smccc::SUCCESS {
        return Err(Text::format(format_args!(
            "CPU_ON cpu {index} (MPIDR {mpidr:#x}) returned {result} ({})",
            smccc::result_name(result)
        )));
    }
    wait_boot(index, boots)
}

/// Waits until CPU `index` has booted more than `boots_before` times.
pub fn wait_boot(index: usize, boots_before: u64) -> Result<(), Text> {
    let cpu = percpu::of(index);
    if !wait::until(
        || cpu.boots.load(SeqCst) > boots_before,
        timer::ms(BOOT_TIMEOUT_MS),
    ) {
        return Err(Text::format(format_args!(
            "cpu {index} did not come up within {BOOT_TIMEOUT_MS} ms"
        )));
    }
    Ok(())
}

/// Posts `job(arg)` to CPU `index`; returns its `jobs_done` count before, for [`wait_done`].
pub fn post(index: usize, job: Job, arg: u64) -> u64 {
    let cpu = percpu::of(index);
    assert!(
        cpu.job.load(SeqCst) == 0,
        "a job is posted only to a CPU without one"
    );
    let done_before = cpu.jobs_done.load(SeqCst);
    cpu.job_arg.store(arg, SeqCst);
    cpu.job.store(job as usize, SeqCst);
    arch::sev();
    done_before
}

/// Waits up to `timeout` ticks for CPU `index` to finish the job posted when `jobs_done` was
/// `done_before`; its result.
pub fn wait_done(index: usize, done_before: u64, timeout: u64) -> Option<u64> {
    let cpu = percpu::of(index);
    wait::until(|| cpu.jobs_done.load(SeqCst) > done_before, timeout)
        .then(|| cpu.job_result.load(SeqCst))
}

/// Rust entry of a secondary CPU (from `secondary_entry`, x0 = context ID).
pub extern "C" fn secondary_main(context: u64, index: usize) -> ! {
    runtime::cpu_init();
    let me = percpu::this();
    me.context_id.store(context, SeqCst);
    if context == index as u64 {
        say!("cpu {index} up");
    } else {
        say!("cpu {index} up, but context_id is {context:#x}");
    }
    bump(&me.boots);
    arch::sev();
    loop {
        while me.job.load(SeqCst) == 0 {
            arch::wfe();
        }
        let job = me.job.load(SeqCst);
        let arg = me.job_arg.load(SeqCst);
        me.job.store(0, SeqCst);
        // SAFETY: `post` is the only writer of a nonzero `job`, and it stores a `Job`.
        let job: Job = unsafe { core::mem::transmute::<usize, Job>(job) };
        let result = job(arg);
        me.job_result.store(result, SeqCst);
        bump(&me.jobs_done);
        arch::sev();
    }
}
