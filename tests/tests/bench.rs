//! `make bench` cannot rot: the quick benchmark run (`scripts/bench.py --quick`: the `bench-quick`
//! scenario under icount, few iterations) must boot, produce a figure within a plausible range
//! for every benchmark (only the ones that boot Linux are left to `make bench`) and exit 0, and
//! the hot paths' minima may not rise more than 25% over the committed bench/baseline-quick.json.

use std::process::Command;

#[test]
fn the_quick_benchmark_run_produces_a_plausible_figure_for_every_benchmark() {
    let image = std::env::var("KEEL_IMAGE")
        .expect("KEEL_IMAGE is not set: run the QEMU tests with `make test` (it builds the image first)");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = std::env::temp_dir().join(format!("keel-bench-quick-{}.json", std::process::id()));
    let run = Command::new("python3")
        .current_dir(root)
        .args(["scripts/bench.py", "--quick", "--timeout", "300", "--image", &image])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("cannot run python3");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "scripts/bench.py --quick failed ({:?})\n{stdout}\n{stderr}", run.status);
    let json = std::fs::read_to_string(&out).expect("bench.py wrote no JSON file");
    let _ = std::fs::remove_file(&out);
    let results = parse_results(&json);
    // Every benchmark with a plausible range for its median: implemented ones may not fall back
    // to "not available", and each figure is a real min <= median <= max.
    const PLAUSIBLE: &[(&str, u64, u64)] = &[
        ("null_syscall", 50, 100_000),
        ("ipc_call_reply_same_cpu", 200, 1_000_000),
        ("ipc_call_reply_cross_cpu", 200, 10_000_000),
        ("notif_signal_wake_same_cpu", 100, 1_000_000),
        ("notif_signal_wake_cross_cpu", 100, 10_000_000),
        ("page_fault_anon_first_touch", 200, 10_000_000),
        ("process_spawn_exit_wait", 10_000, 1_000_000_000),
        ("context_switch", 100, 1_000_000),
        ("guest_hvc_round_trip", 50, 1_000_000),
        ("guest_mmio_read_user", 100, 10_000_000),
        // An exit, a signal and the return; an MMIO exit to the monitor would be thousands.
        ("guest_ioevent_doorbell", 100, 10_000_000),
        ("vgic_dist_read", 50, 1_000_000),
        // A doorbell, a cross-CPU wake of the backend process, its lock and queue work, and the
        // guest's polling: thousands; an MMIO exit per register would be tens of thousands.
        ("virtio_rng_request_round_trip", 1_000, 100_000_000),
        // An EOI that does not exit costs a few instructions (0 after the counter reads).
        ("guest_eoi", 0, 1_000),
        ("virtual_ipi_round_trip", 500, 100_000_000),
        ("virtual_timer_irq", 1, 100_000_000),
        ("vcpu_switch_round_trip", 500, 100_000_000),
        ("vcpu_switch_round_trip_sve_pmu", 500, 100_000_000),
        // Two yield exits and two switches; a yield that found no other vCPU to run would be a
        // few hundred.
        ("vcpu_yield_round_trip_same_vm", 1_000, 100_000_000),
        ("vcpu_yield_round_trip_two_vms", 1_000, 100_000_000),
        ("fs_tmpfs_write_16m", 10, 10_000_000),
        ("fs_tmpfs_read_16m", 10, 10_000_000),
        ("fs_tmpfs_create_stat_unlink", 1_000, 100_000_000),
        ("fs_ext2_write_16m", 10, 100_000_000),
        ("fs_ext2_read_16m", 10, 100_000_000),
        ("fs_ext2_create_stat_unlink", 1_000, 1_000_000_000),
        // A COMMAND to resmgr is at least an IPC round trip to another process (~1,600) with a
        // bulk payload each way; through the file service, open, read or write, and close are
        // three calls to it, each asking resmgr at least once.
        ("cgroup_read_resmgr", 2_000, 10_000_000),
        ("cgroup_write_resmgr", 2_000, 10_000_000),
        ("cgroup_read_file", 10_000, 100_000_000),
        ("cgroup_write_file", 10_000, 100_000_000),
        ("boot_to_ready", 100_000, 10_000_000_000),
        ("boot_to_shell_prompt", 100_000, 1_000_000_000_000),
        ("kernel_memory_after_boot", 1 << 20, 1 << 32),
    ];
    // Measured by `make bench` only (they boot Linux): the quick run leaves them out.
    const FULL_ONLY: &[&str] = &[
        "linux_boot_ratio",
        "linux_boot_ratio_quiet",
        "linux_boot_ratio_hvc0",
        "linux_perf_instructions_ratio",
        "virtio_blk_write_per_mib",
        "virtio_blk_read_per_mib",
        "virtio_blk_monitor_exits_per_request",
        "net_vm_to_vm_ping_round_trip",
        "net_vm_to_vm_tcp_per_mib",
    ];
    for &(name, lo, hi) in PLAUSIBLE {
        let r = results.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("{name} missing from the results\n{stdout}"));
        let (Some(min), Some(median), Some(max)) = (r.min, r.median, r.max) else {
            panic!("{name} has no figure (min {:?}, median {:?}, max {:?})\n{stdout}", r.min, r.median, r.max);
        };
        assert!(min <= median && median <= max, "{name}: min {min}, median {median}, max {max} are out of order\n{stdout}");
        assert!((lo as f64..=hi as f64).contains(&median), "{name}: median {median} is not within the plausible {lo}..={hi}\n{stdout}");
    }
    for r in &results {
        assert!(
            PLAUSIBLE.iter().any(|p| p.0 == r.name) || FULL_ONLY.contains(&r.name.as_str()),
            "{} is a benchmark this test does not check: give it a plausible range\n{stdout}",
            r.name
        );
    }
    for name in FULL_ONLY {
        assert!(results.iter().any(|r| r.name == *name), "{name} missing from the results\n{stdout}");
    }
    // No hot path slower than the committed baseline allows.
    let baseline = std::fs::read_to_string(format!("{root}/bench/baseline-quick.json")).expect("bench/baseline-quick.json is missing");
    let slower = regressions(&results, &parse_results(&baseline));
    assert!(slower.is_empty(), "hot paths slower than bench/baseline-quick.json allows:\n{}\n{stdout}", slower.join("\n"));
}

/// Hot paths whose minimum under icount repeats to the instruction from run to run (the others
/// wait on QEMU's disk, the host's timing or another CPU waking).
const GATED: &[&str] = &[
    "null_syscall",
    "ipc_call_reply_same_cpu",
    "ipc_call_reply_cross_cpu",
    "notif_signal_wake_same_cpu",
    "page_fault_anon_first_touch",
    "process_spawn_exit_wait",
    "context_switch",
    "guest_hvc_round_trip",
    "guest_mmio_read_user",
    "vgic_dist_read",
    "virtual_ipi_round_trip",
    "virtual_timer_irq",
    "vcpu_switch_round_trip",
    "vcpu_switch_round_trip_sve_pmu",
    "boot_to_ready",
];

/// How much a gated minimum may rise over the baseline's.
const ALLOWED_RISE: f64 = 1.25;

/// The gated benchmarks whose minimum in `now` is more than [`ALLOWED_RISE`] times the
/// baseline's (or that lost their figure), one line each. The baseline is the quick run's JSON
/// at the commit the last deliberate update names (bench/README.md); raising it is a commit of
/// its own that says why.
fn regressions(now: &[Figure], baseline: &[Figure]) -> Vec<String> {
    let min = |set: &[Figure], name: &str| set.iter().find(|r| r.name == name).and_then(|r| r.min);
    GATED
        .iter()
        .filter_map(|&name| match (min(now, name), min(baseline, name)) {
            (Some(n), Some(b)) if n <= b * ALLOWED_RISE => None,
            (Some(n), Some(b)) => Some(format!("{name}: minimum {n} is over {ALLOWED_RISE} x the baseline's {b}")),
            (None, Some(_)) => Some(format!("{name}: no figure (the baseline has one)")),
            (_, None) => Some(format!("{name}: the baseline has no figure for it")),
        })
        .collect()
}

#[test]
fn the_baseline_gate_refuses_a_rise_over_25_percent_and_nothing_less() {
    let figure = |name: &str, min: Option<f64>| Figure { name: name.into(), min, median: min, max: min };
    let set = |value: f64| GATED.iter().map(|n| figure(n, Some(value))).collect::<Vec<_>>();
    assert!(regressions(&set(125.0), &set(100.0)).is_empty(), "a 25% rise is allowed");
    let mut now = set(100.0);
    now[0].min = Some(126.0);
    now[2].min = None;
    let found = regressions(&now, &set(100.0));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with(GATED[0]) && found[1].starts_with(GATED[2]), "{found:?}");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/baseline-quick.json")).expect("bench/baseline-quick.json");
    let committed = parse_results(&committed);
    assert!(regressions(&committed, &committed).is_empty(), "the committed baseline lacks a gated figure");
}

/// One entry of bench.py's JSON results (`null` figures are None).
#[derive(Debug)]
struct Figure {
    name: String,
    min: Option<f64>,
    median: Option<f64>,
    max: Option<f64>,
}

/// The `results` entries of bench.py's JSON, read without a JSON library: each entry's `"name"`
/// and the `"min"`, `"median"`, `"max"` fields that follow it.
fn parse_results(json: &str) -> Vec<Figure> {
    let field = |entry: &str, key: &str| -> Option<f64> {
        let at = entry.find(&format!("\"{key}\": "))? + key.len() + 4;
        let rest = &entry[at..];
        let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
        rest[..end].trim().parse().ok()
    };
    json.split("\"name\": \"")
        .skip(1)
        .map(|entry| {
            let name = entry[..entry.find('"').unwrap_or(0)].to_string();
            Figure { name, min: field(entry, "min"), median: field(entry, "median"), max: field(entry, "max") }
        })
        .collect()
}

/// `make bench-compare` with a file that is missing, not JSON, or not a results file says so in
/// one line and exits 1 (it printed a Python traceback); two good files compare.
#[test]
fn bench_compare_names_a_bad_file_in_one_line() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dir = std::env::temp_dir().join(format!("keel-bench-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let good = dir.join("good.json");
    let results = r#"{"commit": "abc", "results": [{"name": "null_syscall", "min": 100, "median": 110, "max": 120, "unit": "instructions"}]}"#;
    std::fs::write(&good, results).expect("write good.json");
    let not_json = dir.join("not-json.json");
    std::fs::write(&not_json, "null_syscall 110\n").expect("write not-json.json");
    let wrong_shape = dir.join("wrong-shape.json");
    std::fs::write(&wrong_shape, r#"{"results": {"null_syscall": 110}}"#).expect("write wrong-shape.json");
    let missing = dir.join("missing.json");
    let compare = |a: &std::path::Path, b: &std::path::Path| {
        Command::new("python3").current_dir(root).arg("scripts/bench.py").arg("compare").arg(a).arg(b).output().expect("cannot run python3")
    };
    for (bad, why) in [(&missing, "No such file"), (&not_json, "not a JSON file"), (&wrong_shape, "not a `make bench` results file")] {
        let out = compare(&good, bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "compare with {} must fail with status 1\n{stderr}", bad.display());
        assert!(!stderr.contains("Traceback"), "a traceback instead of an error for {}\n{stderr}", bad.display());
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("bench-compare: ") && lines[0].contains(&*bad.display().to_string()) && lines[0].contains(why),
            "expected one line naming {} and '{why}', got:\n{stderr}",
            bad.display()
        );
    }
    let out = compare(&good, &good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("null_syscall"), "two good files must compare\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
