#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a fixed number of inputs from a deterministic seed
# corpus (fuzz/make-seeds.sh). Exits non-zero if any target crashes, naming the target and the
# input that did it (kept in target/fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh                 each target its default number of runs (~1-2 min in all per
#                                   target on a 2-core machine)
#   scripts/fuzz.sh --runs N        N inputs per target
#   scripts/fuzz.sh --quick         a smoke check: 2,000 inputs per target
#   scripts/fuzz.sh [opts] T1 T2    only these targets
#   scripts/fuzz.sh --check         only type-check every target (cargo check, no cargo-fuzz, no
#                                   libFuzzer, no C++ compiler; seconds once built) and that
#                                   each is registered, has seeds and a run count: `make test`
#                                   and `make test-host` run this so a target cannot rot unseen
#   scripts/fuzz.sh --syscalls N    the kernel's system-call fuzzer (ktest scenario sysfuzz, booted
#                                   in QEMU from KEEL_IMAGE/KEEL_INITRD) makes N random calls
#                                   (default 1,000,000; 0 skips it; it runs after the parsers and
#                                   only when no target is named)
#   scripts/fuzz.sh --leaks N       ktest scenario leaks:N: N VM create/run/destroy cycles and 10N
#                                   process spawn/exit cycles leave the kernel census as it was
#                                   (default 1,000; 0 skips it; like --syscalls, only when no
#                                   target is named)
#   scripts/fuzz.sh --hostile N     the hostile test guest makes N random MMIO, HVC/SMC,
#                                   system-register and stage-2 accesses in a VM under Keel
#                                   (tests/tests/vm.rs, ignored in make test); Keel must stay up and
#                                   count the exits (default 1,000,000; 0 skips it; only when no
#                                   target is named)
#
# cargo-fuzz comes from crates.io (`cargo install cargo-fuzz --locked`) into target/tools when
# missing. It builds with Debian's toolchain (/usr/bin/cargo, RUSTC_BOOTSTRAP=1 for the -Z flags)
# and without a sanitizer (`-s none`): Debian's rustc ships no AddressSanitizer runtime
# (librustc-*_rt.asan.a), and the parsers forbid `unsafe` anyway (platform/ aside), so what ASan
# would add is little; overflow checks and debug assertions are on.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

runs=""
check=0
syscalls=1000000
leaks=1000
hostile=1000000
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        --runs=*) runs=${1#--runs=}; shift ;;
        --quick) runs=2000; syscalls=20000; leaks=100; hostile=20000; shift ;;
        --syscalls) syscalls=${2:?--syscalls needs a number}; shift 2 ;;
        --leaks) leaks=${2:?--leaks needs a number}; shift 2 ;;
        --hostile) hostile=${2:?--hostile needs a number}; shift 2 ;;
        --check) check=1; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        -*) echo "fuzz: unknown option $1 (try --help)" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
case "$syscalls" in ''|*[!0-9]*) echo "fuzz: --syscalls takes a number, not '$syscalls'" >&2; exit 2 ;; esac
case "$leaks" in ''|*[!0-9]*) echo "fuzz: --leaks takes a number, not '$leaks'" >&2; exit 2 ;; esac
case "$hostile" in ''|*[!0-9]*) echo "fuzz: --hostile takes a number, not '$hostile'" >&2; exit 2 ;; esac
[ ${#targets[@]} -eq 0 ] || { syscalls=0; leaks=0; hostile=0; }
case "$runs" in ''|*[!0-9]*) [ -z "$runs" ] || { echo "fuzz: --runs takes a number, not '$runs'" >&2; exit 2; } ;; esac

# Default inputs per target: about a minute each here (they differ by 1000x in speed).
declare -A default_runs=(
    [dtb]=2000000 [elf]=4000000 [cpio]=2000000 [manifest]=2000000 [startup]=2000000
    [ext2_image]=30000 [fs_request]=300000 [blk_request]=4000000 [vmm_command]=2000000
    [vmm_image]=4000000 [vmm_saved]=2000000 [procmgr_spawn]=4000000 [namesrv_name]=4000000 [shell_line]=2000000
    [kernel_cmdline]=2000000 [console_request]=1000000 [procmgr_request]=8000000 [shell_ps]=1000000
    [virtqueue]=4000000 [virtio_blk]=4000000
)
# Largest input per target (bytes): each format's seeds plus room to grow.
declare -A max_len=([ext2_image]=262144 [dtb]=16384 [elf]=8192 [cpio]=4096 [virtqueue]=8192 [virtio_blk]=8192)

export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO=/usr/bin/cargo
export PATH="/usr/bin:$PATH"   # cargo-fuzz runs `cargo`: Debian's, not rustup's

# The targets: each [[bin]] of fuzz/Cargo.toml (the package's own name aside).
all=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^keel-fuzz$' || true)
[ -n "$all" ] || { echo "fuzz: no targets found in fuzz/Cargo.toml" >&2; exit 2; }

if [ "$check" = 1 ]; then
    # Every file in fuzz_targets is a registered target (an unregistered one would never
    # be built), and every target has seeds in make-seeds.sh and a run count here.
    bad=0
    for f in fuzz/fuzz_targets/*.rs; do
        t=$(basename "$f" .rs)
        grep -qx "$t" <<<"$all" || { echo "fuzz: $f is not a [[bin]] of fuzz/Cargo.toml" >&2; bad=1; }
    done
    for t in $all; do
        grep -qE "seed[ (]\"?$t\"?[ ,]" fuzz/make-seeds.sh || { echo "fuzz: target $t has no seeds in fuzz/make-seeds.sh" >&2; bad=1; }
        [ -n "${default_runs[$t]:-}" ] || { echo "fuzz: target $t has no default_runs entry in scripts/fuzz.sh" >&2; bad=1; }
    done
    # As cargo fuzz compiles them (--cfg fuzzing), but without libFuzzer's C++ (the `libfuzzer`
    # feature) and without linking: a check needs only Debian's rustc and the crates in
    # fuzz/Cargo.lock. Its own target directory, so cargo fuzz's instrumented build stays as is.
    RUSTFLAGS="--cfg fuzzing" /usr/bin/cargo check --quiet --manifest-path fuzz/Cargo.toml \
        --no-default-features --bins --target-dir "$root/target/fuzz-check" || bad=1
    [ "$bad" = 0 ] || { echo "fuzz: check failed" >&2; exit 1; }
    echo "fuzz: $(wc -w <<<"$all") targets build"
    exit 0
fi

tools="$root/target/tools"
fuzz_bin="$tools/bin/cargo-fuzz"
if [ ! -x "$fuzz_bin" ]; then
    echo "fuzz: installing cargo-fuzz into $tools"
    /usr/bin/cargo install cargo-fuzz --locked --root "$tools"
fi

if [ ${#targets[@]} -eq 0 ]; then
    read -r -a targets <<<"$(echo $all)"
fi
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$all" || { echo "fuzz: no target '$t' (targets: $(echo $all))" >&2; exit 2; }
done

work="$root/target/fuzz"
seeds="$work/seeds"
fuzz/make-seeds.sh "$seeds" 2>&1 | grep -v -e "128-byte inodes" -e "^Creating regular file"
"$fuzz_bin" build --fuzz-dir fuzz --target-dir "$work" -s none

failed=()
for t in "${targets[@]}"; do
    n=${runs:-${default_runs[$t]:-1000000}}
    # The corpus grows from the seeds on each run; it starts from the seeds alone every time,
    # so a run is reproducible.
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t"
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    # A target without seeds would start from nothing: fuzz/make-seeds.sh must write some.
    [ -d "$seeds/$t" ] || { echo "fuzz: $t: no seeds in $seeds/$t (fuzz/make-seeds.sh)" >&2; exit 2; }
    cp "$seeds/$t"/* "$corpus/"
    log="$work/logs/$t.log"
    mkdir -p "$(dirname "$log")"
    opts=(-runs="$n" -seed=1 -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts/")
    [ -n "${max_len[$t]:-}" ] && opts+=(-max_len="${max_len[$t]}")
    start=$(date +%s)
    if "$fuzz_bin" run --fuzz-dir fuzz --target-dir "$work" -s none "$t" "$corpus" -- "${opts[@]}" >"$log" 2>&1; then
        # libFuzzer's last line says how many inputs ran: fewer than asked is no pass.
        ran=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$log" | tail -1)
        if [ "${ran:-0}" -ge "$n" ] && [ "${ran:-0}" -gt 0 ]; then
            echo "fuzz: $t: $ran inputs, no crash ($(( $(date +%s) - start ))s)"
        else
            echo "fuzz: $t: libFuzzer exited 0 after ${ran:-no} runs of $n; see $log" >&2
            failed+=("$t")
        fi
    else
        input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        why=$(grep -m1 -E "panicked at|ERROR: libFuzzer" "$log" || true)
        echo "fuzz: $t: CRASH after $(( $(date +%s) - start ))s: ${why:-see $log}" >&2
        grep -A2 -m1 "panicked at" "$log" | tail -n +2 >&2 || true
        echo "fuzz: $t: input ${input:-unknown} (replay: $fuzz_bin run --fuzz-dir fuzz --target-dir $work -s none $t ${input:-<input>}); log $log" >&2
        failed+=("$t")
    fi
done
# Kernel scenarios booted in QEMU: run_scenario <name:count> <timeout s> <what it checked>.
run_scenario() {
    local scenario=$1 limit=$2 what=$3 name=${1%%:*}
    local image=${KEEL_IMAGE:-$root/target/keel.Image} initrd=${KEEL_INITRD:-$root/target/initrd.cpio}
    [ -f "$image" ] && [ -f "$initrd" ] || { echo "fuzz: no $image or $initrd (run make image initrd)" >&2; exit 2; }
    local log="$work/logs/$name.log" start
    mkdir -p "$(dirname "$log")"
    start=$(date +%s)
    timeout "$limit" "${QEMU:-qemu-system-aarch64}" -machine virt,virtualization=on,gic-version=3,iommu=smmuv3 \
        -global arm-smmuv3.stage=2 -cpu max -smp 4 -m 2G -display none -monitor none -serial stdio -nic none -no-reboot \
        -kernel "$image" -initrd "$initrd" -append "scenario=$scenario" </dev/null >"$log" 2>&1 || true
    if grep -q "ktest: $name: ok (" "$log" && grep -q "init: scenario $scenario finished with code 0" "$log" \
        && ! grep -q -e PANIC -e "$name: FAILED" "$log"; then
        echo "fuzz: $what ($(( $(date +%s) - start ))s)"
    else
        echo "fuzz: $scenario: FAILED after $(( $(date +%s) - start ))s; see $log:" >&2
        grep -e PANIC -e FAILED "$log" | head -20 >&2 || tail -20 "$log" >&2
        failed+=("$name")
    fi
}
# The kernel's system calls: ktest's sysfuzz scenario with the count on the kernel command line.
# The kernel must not panic and its object census must be the same after the fuzzer exited.
# About 50 us a call on a loaded 2-core machine: an hour is far more than 1M calls need.
if [ "$syscalls" -gt 0 ]; then
    run_scenario "sysfuzz:$syscalls" $(( 300 + syscalls / 500 )) \
        "kernel system calls: $syscalls random calls, no panic, census unchanged"
fi
# Leak loops: about 4 ms a VM cycle and 25 ms a process cycle; allow ten times that.
if [ "$leaks" -gt 0 ]; then
    run_scenario "leaks:$leaks" $(( 300 + leaks * 3 )) \
        "leak loops: $leaks VM and $(( leaks * 10 )) process cycles, census unchanged"
fi
# The hostile guest: a QEMU test of its own (it types at Keel's shell and reads vm stat).
if [ "$hostile" -gt 0 ]; then
    log="$work/logs/hostile.log"
    start=$(date +%s)
    if KEEL_HOSTILE_OPS=$hostile KEEL_IMAGE=${KEEL_IMAGE:-$root/target/keel.Image} \
        KEEL_INITRD=${KEEL_INITRD:-$root/target/initrd.cpio} /usr/bin/cargo test -q -p keel-tests --test vm \
        a_hostile_guest_at_fuzz_scale_leaves_keel_healthy -- --ignored --exact >"$log" 2>&1 \
        && grep -q "^test result: ok\. 1 passed; 0 failed" "$log"; then
        # (--exact of a renamed test runs nothing and passes: the log must show it ran.)
        echo "fuzz: hostile guest: $hostile operations, Keel healthy, exits counted ($(( $(date +%s) - start ))s)"
    else
        echo "fuzz: hostile guest: FAILED after $(( $(date +%s) - start ))s; see $log:" >&2
        tail -30 "$log" >&2
        failed+=("hostile")
    fi
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} of ${#targets[@]} targets crashed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets clean"
