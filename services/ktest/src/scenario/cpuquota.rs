//! `cpuquota` (run under icount, so time is instructions and the shares are exact to a tick):
//!
//! - bandwidth: a spinner in a quota with `cpu.max` 20 ms per 100 ms is charged 20% ± 2% of a CPU
//!   over 2 s, and is throttled in (nearly) every period;
//! - weight: two spinners pinned to one CPU, in quotas of weight 100 and 300, are charged 1:3 ± 5%
//!   of it over 2 s.
//!
//! The shares are read from the kernel's account (`quota_stat(CPU)`: cgroup v2's `cpu.stat`).

use super::{SEC, procmgr};
use crate::check::Checks;
use crate::services::{KTEST_PATH, Procmgr, Spawned};
use alloc::format;
use keel_rt::startup::Startup;
use keel_rt::{Error, Slot, sys};

const MS: u64 = 1_000_000;
/// The measuring window.
const WINDOW: u64 = 2 * SEC;

pub fn run(startup: &Startup) -> i32 {
    let mut c = Checks::new("cpuquota");
    let Some(mut pm) = procmgr(&mut c, startup) else { return c.finish("") };
    let Some(root) = startup.cap("quota") else {
        c.fail("no 'quota' capability in the startup block");
        return c.finish("");
    };
    let bandwidth = bandwidth(&mut c, &mut pm, root);
    let weights = weights(&mut c, &mut pm, root);
    c.finish(format!("cpu.max 20000 100000: {bandwidth}; cpu.weight 100 and 300 on one CPU: {weights}"))
}

/// Usage (ns) of `quota` over the window, from a moment after its spinners started.
fn usage_over_window(quotas: &[Slot]) -> Result<alloc::vec::Vec<u64>, Error> {
    // Let the spinners start and settle into their periods.
    sys::sleep_ns(200 * MS);
    let before: alloc::vec::Vec<u64> = quotas.iter().map(|&q| sys::quota_stat_cpu(q).map(|s| s.usage_ns)).collect::<Result<_, _>>()?;
    sys::sleep_ns(WINDOW);
    let after: alloc::vec::Vec<u64> = quotas.iter().map(|&q| sys::quota_stat_cpu(q).map(|s| s.usage_ns)).collect::<Result<_, _>>()?;
    Ok(before.iter().zip(after).map(|(b, a)| a.saturating_sub(*b)).collect())
}

fn stop(pm: &mut Procmgr, s: Spawned) {
    let _ = sys::process_kill(s.process);
    let _ = super::wait_exit(s.process, 10 * SEC);
    let _ = sys::cap_delete(s.process);
    let _ = pm.ps_text();
}

fn bandwidth(c: &mut Checks, pm: &mut Procmgr, root: Slot) -> alloc::string::String {
    let Some(q) = c.expect_ok("quota_create", sys::quota_create(root)) else { return "not run".into() };
    c.expect_ok("quota_set_cpu(20 ms per 100 ms)", sys::quota_set_cpu(q, 20 * MS, 100 * MS));
    let Some(spinner) = c.expect_ok("SPAWN spin in the quota", pm.spawn_in(q, KTEST_PATH, &["spin"])) else { return "not run".into() };
    let used = usage_over_window(&[q]);
    let throttled = sys::quota_stat_cpu(q);
    stop(pm, spinner);
    let _ = sys::cap_delete(q);
    let Some(used) = c.expect_ok("the quota's CPU usage over 2 s", used) else { return "not run".into() };
    let share = used[0] as f64 / WINDOW as f64;
    c.check((0.18..=0.22).contains(&share), || format!("a spinner under cpu.max 20000 100000 got {:.1}% of a CPU (want 20% +- 2)", share * 100.0));
    if let Ok(t) = throttled {
        c.check(t.nr_throttled >= 15 && t.nr_periods >= 18, || format!("throttled in {} of {} periods (want nearly all)", t.nr_throttled, t.nr_periods));
    }
    format!("{:.1}% of a CPU", share * 100.0)
}

fn weights(c: &mut Checks, pm: &mut Procmgr, root: Slot) -> alloc::string::String {
    let (Some(light), Some(heavy)) = (c.expect_ok("quota_create", sys::quota_create(root)), c.expect_ok("quota_create", sys::quota_create(root))) else {
        return "not run".into();
    };
    c.expect_ok("quota_set_weight(300)", sys::quota_set_weight(heavy, 300));
    c.expect_err("quota_set_weight(0)", sys::quota_set_weight(heavy, 0), Error::Invalid);
    c.expect_err("quota_set_weight(10001)", sys::quota_set_weight(heavy, 10_001), Error::Invalid);
    c.expect_err("quota_set_cpu(period 0.5 ms)", sys::quota_set_cpu(light, 10 * MS, MS / 2), Error::Invalid);
    c.expect_err("quota_set_cpu(quota 0.5 ms)", sys::quota_set_cpu(light, MS / 2, 100 * MS), Error::Invalid);
    // Both on CPU 1 (the scenario runs with 4), where nothing else is pinned.
    let a = c.expect_ok("SPAWN spin (weight 100)", pm.spawn_in(light, KTEST_PATH, &["spin", "1"]));
    let b = c.expect_ok("SPAWN spin (weight 300)", pm.spawn_in(heavy, KTEST_PATH, &["spin", "1"]));
    let used = usage_over_window(&[light, heavy]);
    for s in [a, b].into_iter().flatten() {
        stop(pm, s);
    }
    let _ = sys::cap_delete(light);
    let _ = sys::cap_delete(heavy);
    let Some(used) = c.expect_ok("the two quotas' CPU usage over 2 s", used) else { return "not run".into() };
    let ratio = used[1] as f64 / used[0].max(1) as f64;
    let total = (used[0] + used[1]) as f64 / WINDOW as f64;
    c.check((2.85..=3.15).contains(&ratio), || format!("weights 100 and 300 on one CPU got {} and {} ns (ratio {ratio:.2}, want 3 +- 5%)", used[0], used[1]));
    c.check(total > 0.95, || format!("the two spinners used {:.1}% of their CPU (want all of it)", total * 100.0));
    format!("{:.2} to 1", ratio)
}

/// The `spin` helper: burns CPU until killed, on a thread pinned to `cpu` if given.
pub fn spin(cpu: Option<u32>) -> i32 {
    match cpu {
        None => loop {
            core::hint::spin_loop();
        },
        Some(cpu) => {
            if keel_rt::thread::spawn_with(32, 1u64 << cpu, || loop {
                core::hint::spin_loop();
            })
            .is_err()
            {
                return crate::EXIT_FAILED;
            }
            loop {
                sys::sleep_ns(1000 * SEC);
            }
        }
    }
}
