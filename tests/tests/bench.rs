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
