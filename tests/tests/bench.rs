//! `make bench` cannot rot: the quick benchmark run (`scripts/bench.py --quick`: the `bench-quick`
//! scenario under icount, few iterations) must boot, produce every available figure and exit 0.

use std::process::Command;

#[test]
fn the_quick_benchmark_run_produces_every_available_figure() {
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
    for name in ["null_syscall", "ipc_call_reply_same_cpu", "context_switch", "process_spawn_exit_wait", "guest_hvc_round_trip"] {
        assert!(json.contains(&format!("\"name\": \"{name}\"")), "{name} missing from the results\n{json}");
    }
    assert!(stdout.contains("not available"), "hypervisor benchmarks must be listed as not available\n{stdout}");
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
