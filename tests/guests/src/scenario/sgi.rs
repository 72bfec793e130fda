//! `guest=sgi`: 100 SGI ping-pongs between cpu 0 and cpu 1 through ICC_SGI1R_EL1 (INTID 1). Each
//! side sleeps in WFI until the other's SGI arrives, then answers; the virtual timer is a
//! watchdog so a lost SGI fails the scenario instead of hanging it.

use super::Outcome;
use crate::runtime::Guest;
use crate::text::Text;
use crate::{arch, gic, percpu, smp, timer, wait};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

const SGI: u32 = 1;
const ROUNDS: u64 = 100;
/// Per-SGI watchdog.
const TIMEOUT_MS: u64 = 2000;

/// The primary's CPU index, for the pong side to answer (Aff0).
static PING_FROM: AtomicU64 = AtomicU64::new(0);

/// Job on the pong CPU: set up the GIC, report ready, then answer `rounds` SGIs. Returns the
/// rounds completed, or `u64::MAX` if the GIC setup failed.
fn job_pong(rounds: u64) -> u64 {
    let me = percpu::this();
    if let Err(why) = gic::init_this_cpu() {
        say!("sgi: cpu {}: {why}", arch::cpu_index());
        return u64::MAX;
    }
    gic::enable_private(SGI);
    gic::enable_private(timer::VTIMER_INTID); // the watchdog
    arch::unmask_irqs();
    me.ready.store(1, SeqCst);
    arch::sev();
    let base = me.sgi_count.load(SeqCst);
    let ping_from = PING_FROM.load(SeqCst) as usize;
    for round in 0..rounds {
        if !wait::irq_until(
            || me.sgi_count.load(SeqCst) - base > round,
            timer::ms(TIMEOUT_MS),
            true,
        ) {
            me.ready.store(0, SeqCst);
            return round;
        }
        gic::send_sgi(SGI, ping_from);
    }
    me.ready.store(0, SeqCst);
    rounds
}

pub fn run(guest: &Guest) -> Outcome {
    let Some((peer, peer_mpidr)) = guest.others().next() else {
        fail!("needs at least 2 CPUs; the DTB lists {}", guest.listed_cpus);
    };
    let me = arch::cpu_index();
    gic::init_distributor()?;
    gic::init_this_cpu()?;
    gic::enable_private(SGI);
    gic::enable_private(timer::VTIMER_INTID);
    arch::unmask_irqs();

    smp::start(peer_mpidr, peer)?;
    PING_FROM.store(me as u64, SeqCst);
    let done_before = smp::post(peer, job_pong, ROUNDS);
    let peer_cpu = percpu::of(peer);
    let ready = wait::until(
        || peer_cpu.ready.load(SeqCst) == 1 || peer_cpu.jobs_done.load(SeqCst) > done_before,
        timer::ms(TIMEOUT_MS),
    );
    ensure!(
        ready && peer_cpu.ready.load(SeqCst) == 1,
        "cpu {peer} did not set up its GIC interface"
    );

    let cpu = percpu::this();
    let base = cpu.sgi_count.load(SeqCst);
    let start = timer::now();
    for round in 0..ROUNDS {
        gic::send_sgi(SGI, peer);
        if !wait::irq_until(
            || cpu.sgi_count.load(SeqCst) - base > round,
            timer::ms(TIMEOUT_MS),
            true,
        ) {
            fail!("round {round}: no SGI back from cpu {peer} within {TIMEOUT_MS} ms");
        }
    }
    let elapsed = timer::now() - start;
    let Some(answered) = smp::wait_done(peer, done_before, timer::ms(TIMEOUT_MS)) else {
        fail!("cpu {peer} did not finish");
    };
    let received = cpu.sgi_count.load(SeqCst) - base;
    let peer_received = peer_cpu.sgi_count.load(SeqCst);
    say!(
        "sgi: cpu {me} sent {ROUNDS} and received {received}; cpu {peer} answered {answered}, received {peer_received}; {} ticks per round trip",
        elapsed / ROUNDS
    );
    ensure!(
        answered == ROUNDS,
        "cpu {peer} answered {answered} of {ROUNDS} SGIs"
    );
    ensure!(
        received == ROUNDS,
        "cpu {me} received {received} SGIs, want {ROUNDS}"
    );
    Ok(Text::format(format_args!(
        "({ROUNDS} SGI round trips between cpu {me} and cpu {peer})"
    )))
}
