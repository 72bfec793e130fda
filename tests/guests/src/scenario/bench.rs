//! `guest=bench`: what a guest pays for the hypervisor's hot paths, in counter ticks (under
//! `-icount shift=0` one tick is one instruction executed by any CPU, so these are path lengths;
//! `make bench` runs it). Each figure is printed as the median, minimum and maximum of at least
//! 100 samples taken after a warm-up, each sample one operation timed alone (the counter reads
//! around it cost a few instructions), so a sample a host tick or another thread disturbed shows
//! in the maximum and does not move the median. The operations are those of the
//! kvm-unit-tests arm micro-bench, which DESIGN.md's KVM anchors were measured with:
//!
//! - `hvc round trip`: PSCI_VERSION through `hvc` (answered by the hypervisor itself);
//! - `mmio round trip`: a PL011 UARTCR load (answered by the user-space VM monitor);
//! - `vgic distributor read`: a GICD_TYPER load (the in-kernel vGIC);
//! - `eoi`: an ICC_EOIR1_EL1 write for an acknowledged SGI (no exit expected);
//! - `ipi round trip`: an SGI to the other vCPU and one back, each side sleeping in WFI;
//! - `timer`: how long after its CVAL a 10 ms virtual timer's interrupt reaches its handler
//!   while the CPU waits in WFI (the other vCPU idles in WFI meanwhile).
//!
//! Needs 2 vCPUs (`--vcpus 2`) for the IPI.

use super::Outcome;
use crate::arch::mmio;
use crate::machine::{GICD_BASE, UART_BASE};
use crate::runtime::Guest;
use crate::{arch, gic, percpu, psci, smp, timer, wait};
use core::sync::atomic::Ordering::SeqCst;

/// Samples of the fast operations (hvc, MMIO, vGIC read), after `WARM_UP` untimed runs.
const FAST_SAMPLES: usize = 200;
const WARM_UP: usize = 10;
/// Samples of the slower ones (EOI, IPI, timer), each timed alone.
const SAMPLES: usize = 100;
const SGI: u32 = 2;
const TIMEOUT_MS: u64 = 2000;

/// `FAST_SAMPLES` single runs of `op` timed alone, after `WARM_UP` untimed ones. `name` is the
/// benchmark's name in scripts/bench.py: built with KEEL_PROFILE=<name> (`make profile`), the
/// runs are the profiling window.
fn sampled(name: &str, mut op: impl FnMut()) -> [u64; FAST_SAMPLES] {
    let profile = option_env!("KEEL_PROFILE") == Some(name);
    if profile {
        arch::profile_mark(true);
    }
    for _ in 0..WARM_UP {
        op();
    }
    let mut samples = [0u64; FAST_SAMPLES];
    for sample in samples.iter_mut() {
        let start = timer::now();
        op();
        *sample = timer::now() - start;
    }
    if profile {
        arch::profile_mark(false);
    }
    samples
}

/// (min, median, max) of `samples` (sorted in place; not empty).
pub fn stats(samples: &mut [u64]) -> (u64, u64, u64) {
    samples.sort_unstable();
    (samples[0], samples[samples.len() / 2], samples[samples.len() - 1])
}

/// Prints `<what>: <median> ticks<suffix> (min <min>, max <max>, <n> samples)`, the line
/// `make bench` reads; the median.
pub fn report(what: &str, suffix: &str, samples: &mut [u64]) -> u64 {
    let (min, median, max) = stats(samples);
    say!("{what}: {median} ticks{suffix} (min {min}, max {max}, {} samples)", samples.len());
    median
}

/// Where the other vCPU sends its answers (Aff0 of the measuring vCPU).
static ANSWER_TO: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The job on the other vCPU: GIC up, IRQs on, then answer each SGI with one back, sleeping in
/// WFI in between, until `rounds` are done. Returns the rounds answered.
fn job_answer(rounds: u64) -> u64 {
    let me = percpu::this();
    if gic::init_this_cpu().is_err() {
        return u64::MAX;
    }
    gic::enable_private(SGI);
    arch::unmask_irqs();
    me.ready.store(1, SeqCst);
    arch::sev();
    let base = me.sgi_count.load(SeqCst);
    let to = ANSWER_TO.load(SeqCst) as usize;
    for round in 0..rounds {
        if !wait::irq_until(|| me.sgi_count.load(SeqCst) - base > round, timer::ms(TIMEOUT_MS), false) {
            me.ready.store(0, SeqCst);
            return round;
        }
        gic::send_sgi(SGI, to);
    }
    // Then idle as an OS would, in WFI, until one more SGI says the measurements are over.
    let _ = wait::irq_until(|| me.sgi_count.load(SeqCst) - base > rounds, timer::ms(60_000), false);
    me.ready.store(0, SeqCst);
    rounds
}

pub fn run(guest: &Guest) -> Outcome {
    gic::init_distributor()?;
    gic::init_this_cpu()?;
    let cpu = percpu::this();

    let hvc = report("hvc round trip", "", &mut sampled("guest_hvc_round_trip", || {
        let _ = psci::version();
    }));
    // SAFETY: reading UARTCR and GICD_TYPER has no side effect. (UARTCR: the monitor answers
    // it; UARTFR the kernel answers now.)
    let mmio = report("mmio round trip", "", &mut sampled("guest_mmio_read_user", || {
        let _ = unsafe { mmio::read32(UART_BASE + 0x30) };
    }));
    // SAFETY: as above.
    let dist = report("vgic distributor read", "", &mut sampled("vgic_dist_read", || {
        let _ = unsafe { mmio::read32(GICD_BASE + 0x4) };
    }));

    // EOI: a self-SGI acknowledged with IRQs masked, then the EOI alone timed; the cost of the
    // two counter reads around it is measured the same way and taken off.
    gic::enable_private(SGI);
    arch::mask_irqs();
    let mut eois = [0u64; SAMPLES];
    let mut empty = [0u64; SAMPLES];
    let me = arch::cpu_index();
    for i in 0..SAMPLES {
        gic::send_sgi(SGI, me);
        let Some(intid) = ack_within(timer::ms(TIMEOUT_MS)) else {
            arch::unmask_irqs();
            fail!("a self-SGI never became pending");
        };
        ensure!(intid == SGI, "acknowledged INTID {intid}, want the self-SGI {SGI}");
        let t0 = timer::now();
        // SAFETY: ends the SGI acknowledged above (EOImode 0: drop and deactivate).
        unsafe { write_sysreg!("icc_eoir1_el1", u64::from(SGI)) };
        let t1 = timer::now();
        let t2 = timer::now();
        eois[i] = t1 - t0;
        empty[i] = t2 - t1;
    }
    arch::unmask_irqs();
    // Each EOI sample less the median cost of two back-to-back counter reads.
    let (_, reads, _) = stats(&mut empty);
    for e in eois.iter_mut() {
        *e = e.saturating_sub(reads);
    }
    let eoi = report("eoi", "", &mut eois);

    // IPI round trip: an SGI to the other vCPU, which sleeps in WFI and answers with an SGI
    // back, while this one sleeps in WFI too (under icount a spinning sender would time the
    // emulator's round-robin between CPUs, not the hypervisor).
    let Some((peer, peer_mpidr)) = guest.others().next() else {
        fail!("needs 2 vCPUs for the IPI (--vcpus 2); the DTB lists {}", guest.listed_cpus);
    };
    smp::start(peer_mpidr, peer)?;
    ANSWER_TO.store(me as u64, SeqCst);
    let peer_cpu = percpu::of(peer);
    let rounds = (WARM_UP + SAMPLES) as u64;
    let done_before = smp::post(peer, job_answer, rounds);
    ensure!(
        wait::until(|| peer_cpu.ready.load(SeqCst) == 1, timer::ms(TIMEOUT_MS)),
        "cpu {peer} did not set up its GIC interface"
    );
    let mut ipis = [0u64; WARM_UP + SAMPLES];
    let base = cpu.sgi_count.load(SeqCst);
    let profile = option_env!("KEEL_PROFILE") == Some("virtual_ipi_round_trip");
    if profile {
        arch::profile_mark(true);
    }
    for (round, ipi) in ipis.iter_mut().enumerate() {
        let start = timer::now();
        gic::send_sgi(SGI, peer);
        let back = wait::irq_until(|| cpu.sgi_count.load(SeqCst) - base > round as u64, timer::ms(TIMEOUT_MS), false);
        ensure!(back, "round {round}: no SGI back from cpu {peer} within {TIMEOUT_MS} ms");
        *ipi = timer::now() - start;
    }
    if profile {
        arch::profile_mark(false);
    }
    let ipi = report("ipi round trip", "", &mut ipis[WARM_UP..]);

    // A 10 ms virtual timer, waited for in WFI: ticks from CVAL to the handler.
    gic::enable_private(timer::VTIMER_INTID);
    let mut lates = [0u64; SAMPLES];
    let profile = option_env!("KEEL_PROFILE") == Some("virtual_timer_irq");
    if profile {
        arch::profile_mark(true);
    }
    for late in lates.iter_mut() {
        let before = cpu.timer_irqs.load(SeqCst);
        let cval = timer::now() + timer::ms(10);
        timer::one_shot(cval - timer::now());
        let cval = timer_cval();
        let ok = wait::irq_until(|| cpu.timer_irqs.load(SeqCst) != before, timer::ms(TIMEOUT_MS), false);
        let taken = timer::now();
        ensure!(ok, "a 10 ms timer did not fire within {TIMEOUT_MS} ms");
        *late = taken.saturating_sub(cval);
    }
    if profile {
        arch::profile_mark(false);
    }
    gic::send_sgi(SGI, peer);
    ensure!(smp::wait_done(peer, done_before, timer::ms(TIMEOUT_MS)) == Some(rounds), "cpu {peer} did not answer every SGI");
    let timer_late = report("timer", " after CVAL", &mut lates);
    super::note(format_args!("(hvc {hvc}, mmio {mmio}, vgic {dist}, eoi {eoi}, ipi round trip {ipi}, timer {timer_late} ticks)"))
}

/// CNTV_CVAL_EL0 as armed.
fn timer_cval() -> u64 {
    // SAFETY: reading the virtual timer's compare value has no side effects.
    unsafe { read_sysreg!("cntv_cval_el0") }
}

/// Acknowledges the highest-priority pending interrupt within `timeout` ticks (IRQs masked).
fn ack_within(timeout: u64) -> Option<u32> {
    let deadline = timer::now() + timeout;
    loop {
        // SAFETY: acknowledging an interrupt with IRQs masked; the caller ends it.
        let intid = unsafe { read_sysreg!("icc_iar1_el1") } as u32 & 0xff_ffff;
        if intid < 1020 {
            return Some(intid);
        }
        if timer::now() > deadline {
            return None;
        }
    }
}
