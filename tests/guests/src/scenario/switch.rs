//! `guest=switch` (2 vCPUs, run with both vCPU threads on one host CPU: `vm run ... --vcpus 2
//! --cpu N`): what a switch between two vCPUs costs. The vCPUs play SGI ping-pong, each sleeping
//! in WFI until the other's SGI comes (WFE would be cheaper to wait on, but QEMU never traps
//! it), so one round trip is two vCPU switches, two SGI exits and two WFI exits on the one host
//! CPU. With `guest.heavy` both vCPUs first make their SVE and PMU state live, so every switch
//! also saves and restores those. Prints `switch: <median> ticks per round trip (min <min>, max
//! <max>, 100 samples)`: 100 single round trips timed after 10 of warm-up.

use super::Outcome;
use crate::runtime::Guest;
use crate::{arch, gic, percpu, smp, timer, wait};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// Round trips timed (the last of `ROUNDS`).
const SAMPLES: usize = 100;

/// Where the other vCPU sends its answers (Aff0 of the measuring vCPU).
static ANSWER_TO: AtomicU64 = AtomicU64::new(0);
const SGI: u32 = 3;
const ROUNDS: u64 = SAMPLES as u64 + 10;
const TIMEOUT_MS: u64 = 2000;

/// SVE and the PMU's cycle counter in use, so their state is live on this vCPU.
fn make_heavy() {
    // SAFETY: CPACR_EL1 FPEN/ZEN for EL1, one SVE instruction, and the PMU's cycle counter
    // enabled (PMCR.E, PMCNTENSET.C); nothing else depends on them in this scenario.
    unsafe {
        let cpacr = read_sysreg!("cpacr_el1");
        write_sysreg!("cpacr_el1", cpacr | (3 << 20) | (3 << 16));
        arch::isb();
        core::arch::asm!(".arch_extension sve", "mov z1.d, #7", "ptrue p1.b", options(nostack, nomem));
        write_sysreg!("pmcr_el0", 1);
        write_sysreg!("pmcntenset_el0", 1 << 31);
    }
}

fn job_partner(heavy: u64) -> u64 {
    let me = percpu::this();
    if gic::init_this_cpu().is_err() {
        return u64::MAX;
    }
    gic::enable_private(SGI);
    if heavy != 0 {
        make_heavy();
    }
    arch::unmask_irqs();
    me.ready.store(1, SeqCst);
    arch::sev();
    let base = me.sgi_count.load(SeqCst);
    let to = ANSWER_TO.load(SeqCst) as usize;
    for round in 0..ROUNDS {
        if !wait::irq_until(|| me.sgi_count.load(SeqCst) - base > round, timer::ms(TIMEOUT_MS), false) {
            return round;
        }
        gic::send_sgi(SGI, to);
    }
    // Sleep (WFI) until the measuring vCPU has taken its samples: returning now would leave
    // this vCPU waiting for its next job in WFE, which never exits, so on the shared host CPU
    // it would hold off the other vCPU's last wake-up for a whole time slice.
    if !wait::irq_until(|| me.sgi_count.load(SeqCst) - base > ROUNDS, timer::ms(TIMEOUT_MS), false) {
        return ROUNDS + 1;
    }
    ROUNDS
}

pub fn run(guest: &Guest) -> Outcome {
    let Some((peer, peer_mpidr)) = guest.others().next() else {
        fail!("needs 2 vCPUs (--vcpus 2); the DTB lists {}", guest.listed_cpus);
    };
    // SAFETY: reading ID registers has no side effects.
    let (pfr0, dfr0) = unsafe { (read_sysreg!("id_aa64pfr0_el1"), read_sysreg!("id_aa64dfr0_el1")) };
    let (sve, pmu) = ((pfr0 >> 32) & 0xf, (dfr0 >> 8) & 0xf);
    let heavy = guest.heavy && sve != 0 && pmu != 0 && pmu != 0xf;
    ensure!(!guest.heavy || heavy, "guest.heavy needs SVE and a PMU; the ID registers show SVE {sve}, PMUVer {pmu}");
    gic::init_distributor()?;
    gic::init_this_cpu()?;
    gic::enable_private(SGI);
    if heavy {
        make_heavy();
    }
    smp::start(peer_mpidr, peer)?;
    ANSWER_TO.store(arch::cpu_index() as u64, SeqCst);
    let peer_cpu = percpu::of(peer);
    let done_before = smp::post(peer, job_partner, u64::from(heavy));
    ensure!(wait::until(|| peer_cpu.ready.load(SeqCst) == 1, timer::ms(TIMEOUT_MS)), "cpu {peer} did not set up its GIC interface");
    let cpu = percpu::this();
    let base = cpu.sgi_count.load(SeqCst);
    let mut trips = [0u64; ROUNDS as usize];
    for (round, trip) in trips.iter_mut().enumerate() {
        let start = timer::now();
        gic::send_sgi(SGI, peer);
        let back = wait::irq_until(|| cpu.sgi_count.load(SeqCst) - base > round as u64, timer::ms(TIMEOUT_MS), false);
        ensure!(back, "round {round}: no SGI back from cpu {peer} within {TIMEOUT_MS} ms");
        *trip = timer::now() - start;
    }
    // The samples are taken: let the other vCPU finish.
    gic::send_sgi(SGI, peer);
    ensure!(smp::wait_done(peer, done_before, timer::ms(TIMEOUT_MS)) == Some(ROUNDS), "cpu {peer} did not answer every SGI");
    // The first rounds warm up (the other vCPU's first WFI, lazily loaded state).
    let timed = &mut trips[(ROUNDS as usize - SAMPLES)..];
    let suffix = if heavy { " per round trip with SVE and PMU state live" } else { " per round trip" };
    let median = super::bench::report("switch", suffix, timed);
    super::note(format_args!("({median} ticks per round trip)"))
}
