//! `guest=smp`: PSCI CPU management. CPU_ON error cases (a target that does not exist, an entry
//! point outside RAM), bring-up of every CPU the DTB lists (each prints `guest: cpu N up`),
//! AFFINITY_INFO for each, ALREADY_ON for a CPU that is on, then an off/on cycle: one CPU does
//! CPU_OFF, AFFINITY_INFO must say OFF, and it is switched on again — with four or more CPUs by
//! two CPUs racing to CPU_ON it at once (exactly one SUCCESS, the other ALREADY_ON or ON_PENDING).

use super::Outcome;
use crate::machine::MAX_CPUS;
use crate::runtime::{Guest, cpu_index_of};
use crate::smccc::*;
use crate::text::Text;
use crate::{arch, percpu, psci, smp, timer, wait};
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering::SeqCst};

/// How long a CPU may take to switch off or finish a job.
const TIMEOUT_MS: u64 = 5000;

/// Set by the primary to release the racing CPUs at once.
static RACE_GO: AtomicU32 = AtomicU32::new(0);

/// Job: switch this CPU off. Returns (CPU_OFF's error) only if CPU_OFF failed.
fn job_cpu_off(_: u64) -> u64 {
    say!("cpu {} calling CPU_OFF", arch::cpu_index());
    psci::cpu_off() as u64
}

/// Job: wait for `RACE_GO`, then CPU_ON the CPU with MPIDR `mpidr`; the PSCI result.
fn job_race_cpu_on(mpidr: u64) -> u64 {
    let me = percpu::this();
    me.ready.store(1, SeqCst);
    arch::sev();
    while RACE_GO.load(SeqCst) == 0 {
        core::hint::spin_loop();
    }
    let result = smp::cpu_on(mpidr, cpu_index_of(mpidr));
    me.ready.store(0, SeqCst);
    result as u64
}

fn affinity(mpidr: u64) -> i64 {
    psci::affinity_info(mpidr)
}

fn affinity_name(state: i64) -> &'static str {
    match state {
        AFFINITY_ON => "ON",
        AFFINITY_OFF => "OFF",
        AFFINITY_ON_PENDING => "ON_PENDING",
        _ => result_name(state),
    }
}

pub fn run(guest: &Guest) -> Outcome {
    let mut others = [(0usize, 0u64); MAX_CPUS];
    let mut n = 0;
    for cpu in guest.others() {
        others[n] = cpu;
        n += 1;
    }
    let others = &others[..n];
    ensure!(
        !others.is_empty(),
        "needs at least 2 CPUs; the DTB lists {}",
        guest.listed_cpus
    );
    let mut skipped = Text::new();

    // A target that does not exist.
    let absent = (0..=0xffu64)
        .rev()
        .find(|a| !guest.cpus().iter().any(|&m| m & 0xff_00ff_ffff == *a));
    if let Some(absent) = absent {
        let r = smp::cpu_on(absent, 0);
        say!(
            "smp: CPU_ON of absent MPIDR {absent:#x} = {r} ({})",
            result_name(r)
        );
        ensure!(
            r == INVALID_PARAMETERS,
            "CPU_ON of absent MPIDR {absent:#x} returned {r}, want INVALID_PARAMETERS (-2)"
        );
    }

    // Every other CPU is off before the guest starts it.
    for &(i, mpidr) in others {
        let state = affinity(mpidr);
        ensure!(
            state == AFFINITY_OFF,
            "AFFINITY_INFO(cpu {i}) before CPU_ON = {state} ({}), want OFF",
            affinity_name(state)
        );
    }

    // An entry point outside RAM.
    let (first, first_mpidr) = others[0];
    if guest.plain {
        let _ = write!(
            skipped,
            " INVALID_ADDRESS check (QEMU does not validate entry points);"
        );
        say!(
            "smp: skipping CPU_ON with an entry point outside RAM: plain QEMU would start the CPU there"
        );
    } else {
        let bad_entry = guest.ram.end();
        let r = psci::cpu_on(first_mpidr, bad_entry, first as u64);
        say!(
            "smp: CPU_ON cpu {first} at {bad_entry:#x} (outside RAM) = {r} ({})",
            result_name(r)
        );
        ensure!(
            r == INVALID_ADDRESS,
            "CPU_ON with entry {bad_entry:#x} outside RAM returned {r}, want INVALID_ADDRESS (-9)"
        );
        let state = affinity(first_mpidr);
        ensure!(
            state == AFFINITY_OFF,
            "cpu {first} is {} after a refused CPU_ON",
            affinity_name(state)
        );
    }

    // Bring-up.
    for &(i, mpidr) in others {
        smp::start(mpidr, i)?;
    }
    for &mpidr in guest.cpus() {
        let state = affinity(mpidr);
        say!(
            "smp: AFFINITY_INFO(MPIDR {mpidr:#x}) = {state} ({})",
            affinity_name(state)
        );
        ensure!(
            state == AFFINITY_ON,
            "AFFINITY_INFO(MPIDR {mpidr:#x}) = {state}, want ON (0)"
        );
    }
    for &(i, _) in others {
        let context = percpu::of(i).context_id.load(SeqCst);
        ensure!(
            context == i as u64,
            "cpu {i} started with context_id {context:#x}, want {i}"
        );
    }
    let r = smp::cpu_on(first_mpidr, first);
    say!(
        "smp: CPU_ON of running cpu {first} = {r} ({})",
        result_name(r)
    );
    ensure!(
        r == ALREADY_ON,
        "CPU_ON of running cpu {first} returned {r}, want ALREADY_ON (-4)"
    );

    // Off/on cycle: cpu 3 raced by cpus 1 and 2 when there are four CPUs, else the last CPU.
    let (target, target_mpidr) = others
        .iter()
        .copied()
        .find(|&(i, _)| i == 3)
        .unwrap_or(others[n - 1]);
    let racers: [(usize, u64); 2] = {
        let mut it = others.iter().copied().filter(|&(i, _)| i != target);
        match (it.next(), it.next()) {
            (Some(a), Some(b)) if guest.cpus().len() >= 4 => [a, b],
            _ => [(usize::MAX, 0); 2],
        }
    };
    let target_cpu = percpu::of(target);
    let done_before = smp::post(target, job_cpu_off, 0);
    let off = wait::until(
        || {
            affinity(target_mpidr) == AFFINITY_OFF
                || target_cpu.jobs_done.load(SeqCst) > done_before
        },
        timer::ms(TIMEOUT_MS),
    );
    if target_cpu.jobs_done.load(SeqCst) > done_before {
        let r = target_cpu.job_result.load(SeqCst) as i64;
        fail!("CPU_OFF on cpu {target} returned {r} ({})", result_name(r));
    }
    ensure!(
        off,
        "cpu {target} called CPU_OFF but AFFINITY_INFO never said OFF"
    );
    say!("smp: cpu {target} is OFF");

    let boots = target_cpu.boots.load(SeqCst);
    if racers[0].0 == usize::MAX {
        let _ = write!(
            skipped,
            " CPU_ON race (needs 4 CPUs, have {});",
            guest.cpus().len()
        );
        say!(
            "smp: skipping the CPU_ON race: it needs 4 CPUs, the guest has {}",
            guest.cpus().len()
        );
        let r = smp::cpu_on(target_mpidr, target);
        ensure!(
            r == SUCCESS,
            "CPU_ON of cpu {target} after CPU_OFF returned {r} ({})",
            result_name(r)
        );
    } else {
        if !race(target, target_mpidr, racers, guest.plain)? {
            let _ = write!(
                skipped,
                " one-winner CPU_ON race check (QEMU lets both win);"
            );
        }
    }
    smp::wait_boot(target, boots)?;
    let state = affinity(target_mpidr);
    ensure!(
        state == AFFINITY_ON,
        "cpu {target} came back but AFFINITY_INFO says {}",
        affinity_name(state)
    );
    say!("smp: cpu {target} is ON again");

    if skipped.is_empty() {
        Ok(Text::new())
    } else {
        super::note(format_args!("(skipped:{skipped})"))
    }
}

/// Two CPUs CPU_ON `target` at once: exactly one SUCCESS, the other ALREADY_ON or ON_PENDING.
/// `Ok(false)` when both won and `plain` tolerates it: QEMU's PSCI (target/arm/arm-powerctl.c)
/// checks for ON_PENDING but never enters that state, so a second CPU_ON before the target has
/// run also succeeds.
fn race(
    target: usize,
    target_mpidr: u64,
    racers: [(usize, u64); 2],
    plain: bool,
) -> Result<bool, Text> {
    RACE_GO.store(0, SeqCst);
    let mut done_before = [0u64; 2];
    for (slot, &(i, _)) in racers.iter().enumerate() {
        done_before[slot] = smp::post(i, job_race_cpu_on, target_mpidr);
    }
    let ready = wait::until(
        || {
            racers
                .iter()
                .all(|&(i, _)| percpu::of(i).ready.load(SeqCst) == 1)
        },
        timer::ms(TIMEOUT_MS),
    );
    ensure!(
        ready,
        "racing cpus {} and {} did not get ready",
        racers[0].0,
        racers[1].0
    );
    RACE_GO.store(1, SeqCst);
    arch::sev();
    let mut results = [0i64; 2];
    for (slot, &(i, _)) in racers.iter().enumerate() {
        let Some(r) = smp::wait_done(i, done_before[slot], timer::ms(TIMEOUT_MS)) else {
            fail!("racing cpu {i} never finished its CPU_ON");
        };
        results[slot] = r as i64;
    }
    RACE_GO.store(0, SeqCst);
    say!(
        "smp: race for cpu {target}: cpu {} got {} ({}), cpu {} got {} ({})",
        racers[0].0,
        results[0],
        result_name(results[0]),
        racers[1].0,
        results[1],
        result_name(results[1])
    );
    let winners = results.iter().filter(|&&r| r == SUCCESS).count();
    let losers_ok = results
        .iter()
        .all(|&r| r == SUCCESS || r == ALREADY_ON || r == ON_PENDING);
    if plain && winners == 2 {
        say!(
            "smp: both CPU_ONs succeeded: QEMU's PSCI has no ON_PENDING state; tolerated on plain QEMU"
        );
        return Ok(false);
    }
    ensure!(
        winners == 1 && losers_ok,
        "CPU_ON race results {results:?}: want one SUCCESS and ALREADY_ON/ON_PENDING"
    );
    Ok(true)
}
