#!/usr/bin/env python3
"""Keel's benchmarks: boot the benchmark scenarios under QEMU icount and report instruction counts.

    scripts/bench.py [--quick] [--image P] [--initrd P] [--qemu Q] [--out P]
    scripts/bench.py compare A.json B.json

Under `-icount shift=0,align=off,sleep=off` the virtual counter advances once per instruction, so
every figure is a path length that any host reproduces. Each scenario is one QEMU boot; ktest
prints one `bench: <name> <min> <median> <max> instructions` line per micro-benchmark, and the
kernel's boot report gives the whole-system figures. The script prints one table (benchmark,
median, min, max, target, met?) and writes the figures as JSON (`target/bench/results.json`, or
`results-quick.json` with --quick).

Exit status: 0 when every available benchmark produced its figures (a missed target is reported,
not a failure); 1 when a scenario crashed, timed out, failed its checks or left a benchmark out.
docs/PERFORMANCE.md says what each benchmark measures.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The reference machine (docs/ARCHITECTURE.md, tests/src/lib.rs) under icount. `-seed 1`: QEMU's
# random numbers (RNDR, the DTB's kaslr-seed and rng-seed) come from a seeded generator, so a
# Linux guest boots the same way each run (without it, Linux booted directly moved by 1-2% from
# run to run; with it, to the instruction).
QEMU_ARGS = [
    "-machine", "virt,virtualization=on,gic-version=3,iommu=smmuv3", "-global", "arm-smmuv3.stage=2",
    "-cpu", "max", "-smp", "4", "-m", "2G",
    "-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot",
    "-icount", "shift=0,align=off,sleep=off", "-seed", "1",
]

GUEST = "guest"
LINUX = "linux"
DISK = "disk"
NET = "net"
PROMPT = "prompt"

# Every benchmark of the issue, in table order: (name, target, unit, source). The source is the
# scenario whose `bench:` line carries it, "boot" for the boot report, or a "not available" note.
KERNEL = "kernel"
CATALOG = [
    # Targets from the fast-paths issue (docs/PERFORMANCE.md); the virtual IPI's is two IPIs
    # of 1,500 each, since the benchmark is a round trip.
    ("null_syscall", 150, "instructions", KERNEL),
    ("ipc_call_reply_same_cpu", 400, "instructions", KERNEL),
    ("ipc_call_reply_cross_cpu", 1500, "instructions", KERNEL),
    ("notif_signal_wake_same_cpu", None, "instructions", KERNEL),
    ("notif_signal_wake_cross_cpu", None, "instructions", KERNEL),
    ("page_fault_anon_first_touch", None, "instructions", KERNEL),
    ("process_spawn_exit_wait", 300000, "instructions", KERNEL),
    ("context_switch", 300, "instructions", KERNEL),
    ("guest_hvc_round_trip", 250, "instructions", GUEST),
    ("guest_mmio_read_user", 1500, "instructions", GUEST),
    ("guest_ioevent_doorbell", None, "instructions", KERNEL),
    ("virtio_rng_request_round_trip", None, "instructions", GUEST),
    ("vgic_dist_read", 400, "instructions", GUEST),
    ("guest_eoi", None, "instructions", GUEST),
    ("virtual_ipi_round_trip", 3000, "instructions", GUEST),
    ("virtual_timer_irq", 1500, "instructions", GUEST),
    ("vcpu_switch_round_trip", None, "instructions", GUEST),
    ("vcpu_switch_round_trip_sve_pmu", None, "instructions", GUEST),
    ("vcpu_yield_round_trip_same_vm", None, "instructions", KERNEL),
    ("vcpu_yield_round_trip_two_vms", None, "instructions", KERNEL),
    ("linux_boot_ratio", 1.30, "ratio", LINUX),
    ("linux_boot_ratio_quiet", 1.10, "ratio", LINUX),
    ("linux_boot_ratio_hvc0", 1.10, "ratio", LINUX),
    ("linux_perf_instructions_ratio", None, "ratio", LINUX),
    ("virtio_blk_write_per_mib", None, "instructions/MiB", DISK),
    ("virtio_blk_read_per_mib", None, "instructions/MiB", DISK),
    ("virtio_blk_monitor_exits_per_request", None, "exits/request", DISK),
    ("net_vm_to_vm_ping_round_trip", None, "instructions", NET),
    ("net_vm_to_vm_tcp_per_mib", None, "instructions/MiB", NET),
    ("fs_tmpfs_write_16m", None, "instructions/KiB", KERNEL),
    ("fs_tmpfs_read_16m", None, "instructions/KiB", KERNEL),
    ("fs_tmpfs_create_stat_unlink", None, "instructions/file", KERNEL),
    ("fs_ext2_write_16m", None, "instructions/KiB", KERNEL),
    ("fs_ext2_read_16m", 20000, "instructions/KiB", KERNEL),
    ("fs_ext2_create_stat_unlink", None, "instructions/file", KERNEL),
    # The cgroup files (issue 16), over resmgr's connection and through the file service.
    ("cgroup_read_resmgr", None, "instructions", KERNEL),
    ("cgroup_write_resmgr", None, "instructions", KERNEL),
    ("cgroup_read_file", None, "instructions", KERNEL),
    ("cgroup_write_file", None, "instructions", KERNEL),
    ("boot_to_ready", None, "instructions", "boot"),
    ("boot_to_shell_prompt", None, "instructions", PROMPT),
    ("kernel_memory_after_boot", None, "bytes", "boot"),
]

# The tiny test guest's own measurements (guest=bench, tests/guests/src/scenario/bench.rs;
# counter ticks = instructions), with what each one is.
GUEST_LINES = {
    "guest_hvc_round_trip": ("hvc round trip", "", "PSCI_VERSION over hvc"),
    "vgic_dist_read": ("vgic distributor read", "", "GICD_TYPER load"),
    "virtio_rng_request_round_trip": ("virtio request round trip", "",
                                      "guest=virtio-bench (--rng): a 64-byte virtio-rng request made available, its doorbell "
                                      "(a kernel ioevent), the backend process woken on another CPU, the buffer filled and "
                                      "returned and its interrupt taken by the guest waiting in WFI (interrupt status not read)"),
    "guest_mmio_read_user": ("mmio round trip", "", "PL011 UARTCR load answered by the user-space monitor"),
    "guest_eoi": ("eoi", "", "ICC_EOIR1_EL1 write for an acknowledged SGI, less two counter reads"),
    "virtual_ipi_round_trip": ("ipi round trip", "", "SGI to the other vCPU and one back, both sleeping in WFI"),
    "virtual_timer_irq": ("timer", " after CVAL", "a 10 ms virtual timer waited for in WFI: CVAL to its handler"),
    "vcpu_switch_round_trip": ("switch", " per round trip",
                               "guest=switch: SGI ping-pong between two vCPUs whose threads share host CPU 1, "
                               "each waiting in WFI (two vCPU switches, two SGI and two WFI exits)"),
    "vcpu_switch_round_trip_sve_pmu": ("switch", " per round trip with SVE and PMU state live",
                                       "the same with both vCPUs' SVE and PMU state live (switched at every switch)"),
}
# A guest figure's line: `guest: <what>: <median> ticks<suffix> (min <min>, max <max>, <n> samples)`.
GUEST_LINE = re.compile(r"^guest: (.+?): (\d+) ticks(.*) \(min (\d+), max (\d+), (\d+) samples\)$")
GUEST_INPUT = (b"vm run bench --kernel /guest/test.Image --append guest=bench --vcpus 2 --wait\n"
               b"vm run switch --kernel /guest/test.Image --append guest=switch --vcpus 2 --cpu 1 --wait\n"
               b"vm run heavy --kernel /guest/test.Image --append \"guest=switch guest.heavy\" --vcpus 2 --cpu 1 --wait\n"
               b"vm run vbench --kernel /guest/test.Image --append guest=virtio-bench --rng --wait\n"
               b"poweroff\n")
INIT_REACHED = re.compile(r"^guest: init reached at (\d+\.\d+)")
PERF_LINE = re.compile(r"^guest: perf: (\d+) loops: instructions (\d+) cycles (\d+) elapsed-ns (\d+)")
LINUX_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cache", "guest")
LINUX_APPEND = "console=ttyAMA0 earlycon=pl011,0x09000000 panic=-1 cryptomgr.notests keel.check keel.cpus=2"
# The console on virtio-console (hvc0), no earlycon: Debian's driver is a module /init loads,
# so the kernel prints nothing before /init on either side.
HVC0_APPEND = "console=hvc0 panic=-1 cryptomgr.notests keel.check keel.cpus=2"
HVC0_QEMU = ["-serial", "none", "-chardev", "stdio,id=con", "-device", "virtio-serial-device", "-device", "virtconsole,chardev=con"]
# The Debian guest's dd of 64 MiB to and from a virtio disk kept in a tmpfs of Keel's (no CPU
# waits on QEMU's devices, so guest nanoseconds stay instructions), then `vm stat`.
DD_INPUT = (b"mkdir /scratch\n"
            b"mount tmpfs /scratch 80M\n"
            b"truncate -s 64M /scratch/dd.img\n"
            b"vm run dd --kernel /guest/linux/Image --initrd /guest/linux/initrd.cpio "
            b"--append \"console=ttyAMA0 panic=-1 cryptomgr.notests quiet keel.dd\" --disk /scratch/dd.img --wait\n"
            b"vm stat 1\n"
            b"poweroff\n")
DD_LINE = re.compile(r"^guest: dd: (write|read) 64 MiB in (\d+) ns")
# Two Debian guests on one switch: one serves 64 MiB of zeros over HTTP, the other pings it 20
# times and fetches the file into /dev/null (guests/linux/init, keel.net=serve / bench).
NET_INPUT = (b"vm run linux-check --net bench --append \"keel.ip=10.0.0.1/24 keel.net=serve keel.netkib=65536 keel.netzero\"\n"
             b"vm run linux-check --net bench --append \"keel.ip=10.0.0.2/24 keel.net=bench keel.peer=10.0.0.1 keel.netkib=65536\" --wait\n"
             b"vm stat 2\n"
             b"poweroff\n")
NET_RTT = re.compile(r"^guest: net: ping rtt ms (\d+\.\d+) (\d+\.\d+) (\d+\.\d+)")
NET_TCP = re.compile(r"^guest: net: tcp 65536 KiB in (\d+) ns")
FIRST_PROMPT = re.compile(r"^shell: first prompt at (\d+) ticks")
BENCH_LINE = re.compile(r"^bench: (\S+) (\d+) (\d+) (\d+) (\S+)\s*$")
BOOT_TICKS = re.compile(r"^keel: boot took (\d+) ticks from power-on")
KIMAGE = re.compile(r"^keel: memory: .*kernel image (\d+) KiB")
FRAMES = re.compile(r"^keel: frames: (\d+) total, (\d+) free")
FRAME_BYTES = 4096


class Failure(Exception):
    """A scenario that did not give its figures."""


def fresh_disk():
    """A new 128 MiB ext2 image (4 KiB blocks) for the file benchmarks; its path."""
    path = os.path.join(ROOT, "target", "bench", "disk.img")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.remove(path)
    try:
        subprocess.run(["/usr/sbin/mke2fs", "-q", "-t", "ext2", "-b", "4096", path, "128M"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise Failure(f"cannot make the benchmark disk with mke2fs (run `make deps`): {e}")
    return path


def disk_args(disk):
    """The benchmark disk's QEMU arguments. `cache=unsafe`: QEMU ignores the guest's flushes
    (the image is a scratch file). Under `-icount ... sleep=off` the virtual clock jumps to the
    next timer deadline whenever every CPU is idle, so while the CPUs wait for the disk, virtual
    time runs as fast as QEMU can jump; an `fdatasync` of the image on a loaded host then lasts
    long enough in virtual time for the blk driver to give the device up (10 waits of 1 s) and
    the mount to fail with EIO (seen once in a soak beside CPU hogs)."""
    return ["-drive", f"file={disk},format=raw,if=none,id=disk0,cache=unsafe", "-device", "virtio-blk-device,drive=disk0"]


def boot(qemu, image, initrd, scenario, timeout):
    """Boots `scenario=<scenario>` under icount with a fresh ext2 disk; the serial log (raises
    Failure on a bad ending)."""
    disk = fresh_disk()
    cmd = [qemu, *QEMU_ARGS, "-kernel", image, "-initrd", initrd, "-append", f"scenario={scenario}",
           *disk_args(disk)]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        log = (e.stdout or b"").decode(errors="replace").replace("\r", "")
        raise Failure(f"scenario {scenario}: QEMU did not power off within {timeout} s\n{tail(log)}")
    except FileNotFoundError:
        raise Failure(f"cannot run {qemu} (run `make deps`)")
    log = p.stdout.decode(errors="replace").replace("\r", "")
    if p.returncode != 0 or "PANIC" in log:
        raise Failure(f"scenario {scenario}: QEMU exited with {p.returncode}\n{tail(log)}\n{p.stderr.decode(errors='replace')}")
    if f"init: scenario {scenario} finished with code 0" not in log:
        raise Failure(f"scenario {scenario}: ktest did not finish with code 0\n{tail(log)}")
    return log


def boot_to_prompt(qemu, image, initrd, timeout):
    """Counter ticks from power-on to the shell's first prompt: a normal boot (no scenario) under
    icount with a fresh ext2 disk, as `make run` boots (the prompt waits for /disk's mount),
    powered off from the shell."""
    disk = fresh_disk()
    cmd = [qemu, *QEMU_ARGS, "-kernel", image, "-initrd", initrd, "-append", "",
           *disk_args(disk)]
    try:
        p = subprocess.run(cmd, input=b"poweroff\n", capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        log = (e.stdout or b"").decode(errors="replace").replace("\r", "")
        raise Failure(f"normal boot: QEMU did not power off within {timeout} s\n{tail(log)}")
    log = p.stdout.decode(errors="replace").replace("\r", "")
    for line in log.splitlines():
        if m := FIRST_PROMPT.match(line):
            return int(m.group(1))
    raise Failure(f"normal boot: no 'shell: first prompt at' line\n{tail(log)}")


def shell_session(qemu, image, initrd, typed, timeout, what):
    """A normal boot under icount with the lines of `typed` typed into the shell one at a time,
    each at a fresh `keel> ` prompt (no type-ahead: the console's echo of a line typed early
    never lands inside a guest's output); the serial log. Standard input stays open until QEMU
    exits, as a terminal's would."""
    import threading
    cmd = [qemu, *QEMU_ARGS, "-kernel", image, "-initrd", initrd, "-append", ""]
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise Failure(f"cannot run {qemu} (run `make deps`)")
    lines = typed.decode().splitlines(keepends=True)
    out = bytearray()
    grew = threading.Condition()
    def read():
        while chunk := os.read(p.stdout.fileno(), 4096):
            with grew:
                out.extend(chunk)
                grew.notify_all()
        with grew:
            grew.notify_all()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    threading.Thread(target=p.stderr.read, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = 0
    for line in lines:
        with grew:
            while True:
                at = out.find(b"keel> ", seen)
                if at >= 0:
                    seen = at + len(b"keel> ")
                    break
                left = deadline - time.monotonic()
                if left <= 0 or p.poll() is not None:
                    break
                grew.wait(min(left, 1.0))
        try:
            p.stdin.write(line.encode())
            p.stdin.flush()
        except BrokenPipeError:
            break
    try:
        p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        reader.join(5)
        log = bytes(out).decode(errors="replace").replace("\r", "")
        raise Failure(f"{what}: QEMU did not power off within {timeout} s\n{tail(log)}")
    reader.join(5)
    return bytes(out).decode(errors="replace").replace("\r", "")


def guest_figures(qemu, image, initrd, timeout):
    """{name: (min, median, max, samples)} from the tiny guest's bench and switch scenarios run under Keel."""
    log = shell_session(qemu, image, initrd, GUEST_INPUT, timeout, "guest benchmarks")
    out = {}
    for line in log.splitlines():
        m = GUEST_LINE.match(line)
        if not m:
            continue
        for name, (what, suffix, _) in GUEST_LINES.items():
            if m.group(1) == what and m.group(3) == suffix:
                out[name] = (int(m.group(4)), int(m.group(2)), int(m.group(5)), int(m.group(6)))
    missing = [n for n in GUEST_LINES if n not in out]
    if missing:
        raise Failure(f"guest benchmarks: no figure for {', '.join(missing)}\n{tail(log)}")
    return out


def linux_ratio(qemu, image, initrd, timeout):
    """Guest time (= instructions under icount) from the Linux guest's start to its /init under
    Keel, over the same kernel and initramfs booted by QEMU directly at EL1 with 2 CPUs, with
    the verbose console and with `quiet`; and, in the same Keel session, `perf stat` in the
    linux-perf-check guest: ({"verbose": (ratio, d, k), "quiet": (ratio, d, k)}, perf) with
    perf = (instructions, elapsed_ns) of its loop."""
    kernel, rd = os.path.join(LINUX_DIR, "Image"), os.path.join(LINUX_DIR, "initrd.cpio")
    if not os.path.exists(kernel):
        raise Failure("no Linux guest in cache/guest (run make guest)")
    def reached(log, what):
        times = [float(m.group(1)) for m in map(INIT_REACHED.match, log.splitlines()) if m]
        if not times:
            raise Failure(f"{what}: no 'guest: init reached at' line\n{tail(log)}")
        return times
    direct = {}
    for variant, append in (("verbose", LINUX_APPEND), ("quiet", LINUX_APPEND + " quiet"), ("hvc0", HVC0_APPEND)):
        console = HVC0_QEMU if variant == "hvc0" else ["-serial", "stdio"]
        cmd = [qemu, "-machine", "virt,gic-version=3", "-cpu", "max", "-smp", "2", "-m", "256M",
               "-display", "none", "-monitor", "none", *console, "-nic", "none", "-no-reboot",
               "-icount", "shift=0,align=off,sleep=off", "-seed", "1", "-kernel", kernel, "-initrd", rd, "-append", append]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        direct[variant] = reached(p.stdout.decode(errors="replace").replace("\r", ""), f"Linux on QEMU ({variant})")[0]
    klog = shell_session(qemu, image, initrd,
                         b"vm run linux-check --wait\nvm run linux-quiet-check --wait\n"
                         b"vm run hvc0 --kernel /guest/linux/Image --initrd /guest/linux/initrd.cpio --append \""
                         + HVC0_APPEND.encode() + b"\" --vcpus 2 --console virtio --wait\n"
                         b"vm run linux-perf-check --wait\npoweroff\n",
                         timeout, "Linux under Keel")
    times = reached(klog, "Linux under Keel")
    if len(times) < 3:
        raise Failure(f"Linux under Keel: linux-quiet-check or the hvc0 VM printed no 'guest: init reached at' line\n{tail(klog)}")
    ratios = {v: (k / direct[v], direct[v], k) for v, k in zip(("verbose", "quiet", "hvc0"), times)}
    perf = None
    for line in klog.splitlines():
        if m := PERF_LINE.match(line):
            perf = (int(m.group(2)), int(m.group(4)))
    if perf is None:
        raise Failure(f"linux-perf-check: no 'guest: perf:' line\n{tail(klog)}")
    return ratios, perf


def disk_figures(qemu, image, initrd, timeout):
    """{name: value} of the Debian guest's 64 MiB dd to and from a virtio disk under Keel: guest
    nanoseconds (instructions under icount) per MiB each way, and the monitor exits (`mmio-user`
    in `vm stat`, the guest's boot included) per request the disk served."""
    if not os.path.exists(os.path.join(LINUX_DIR, "Image")):
        raise Failure("no Linux guest in cache/guest (run make guest)")
    log = shell_session(qemu, image, initrd, DD_INPUT, timeout, "virtio disk dd")
    ns = {m.group(1): int(m.group(2)) for m in map(DD_LINE.match, log.splitlines()) if m}
    exits = requests = None
    for line in log.splitlines():
        w = line.split()
        if len(w) >= 2 and w[0] == "mmio-user":
            exits = int(w[1])
        elif len(w) >= 2 and w[0].startswith("virtio-blk@"):
            requests = int(w[1])
    if len(ns) != 2 or exits is None or not requests:
        raise Failure(f"virtio disk dd: no dd figures or vm stat rows\n{tail(log)}")
    return {"virtio_blk_write_per_mib": ns["write"] / 64, "virtio_blk_read_per_mib": ns["read"] / 64,
            "virtio_blk_monitor_exits_per_request": exits / requests}, (exits, requests)


def net_figures(qemu, image, initrd, timeout):
    """{name: (min, median, max)} of two Debian guests on one virtual switch: busybox ping's
    round trip over 20 pings (min, avg, max: its milliseconds are 1e6 instructions under icount,
    to the microsecond) and a 64 MiB HTTP transfer's guest nanoseconds per MiB."""
    if not os.path.exists(os.path.join(LINUX_DIR, "Image")):
        raise Failure("no Linux guest in cache/guest (run make guest)")
    log = shell_session(qemu, image, initrd, NET_INPUT, timeout, "VM-to-VM network")
    rtt = tcp = None
    for line in log.splitlines():
        if m := NET_RTT.match(line):
            rtt = tuple(round(float(x) * 1_000_000) for x in m.groups())
        elif m := NET_TCP.match(line):
            tcp = int(m.group(1)) // 64
    if rtt is None or tcp is None or "guest: checks passed" not in log:
        raise Failure(f"VM-to-VM network: no ping or transfer figures, or the guest's checks failed\n{tail(log)}")
    return {"net_vm_to_vm_ping_round_trip": rtt, "net_vm_to_vm_tcp_per_mib": (tcp, tcp, tcp)}


def tail(log, n=30):
    lines = log.splitlines()
    return "--- last lines of the serial log ---\n" + "\n".join(lines[-n:])


def parse_bench_lines(log):
    """{name: (min, median, max, unit)} from the `bench:` lines."""
    out = {}
    for line in log.splitlines():
        m = BENCH_LINE.match(line)
        if m:
            lo, med, hi = int(m.group(2)), int(m.group(3)), int(m.group(4))
            out[m.group(1)] = (lo, med, hi, m.group(5))
    return out


def parse_boot_report(log):
    """{name: value} of the whole-system figures in the kernel's boot report."""
    ticks = kimage = frames = None
    for line in log.splitlines():
        if m := BOOT_TICKS.match(line):
            ticks = int(m.group(1))
        elif m := KIMAGE.match(line):
            kimage = int(m.group(1)) * 1024
        elif m := FRAMES.match(line):
            frames = (int(m.group(1)) - int(m.group(2))) * FRAME_BYTES
    if ticks is None or kimage is None or frames is None:
        raise Failure("the boot report lacks the boot-ticks, kernel-image or frames line")
    return {"boot_to_ready": ticks, "kernel_memory_after_boot": kimage + frames}, {"kimage": kimage, "frames": frames}


def run_all(args):
    scenario = "bench-quick" if args.quick else "bench"
    started = time.monotonic()
    log = boot(args.qemu, args.image, args.initrd, scenario, args.timeout)
    benches = parse_bench_lines(log)
    boot_figures, parts = parse_boot_report(log)
    results, missing, linux, disk, net = [], [], None, None, None
    guests = guest_figures(args.qemu, args.image, args.initrd, args.timeout)
    for name, target, unit, source in CATALOG:
        r = {"name": name, "median": None, "min": None, "max": None, "target": target, "unit": unit}
        if source == KERNEL:
            if name not in benches:
                missing.append(name)
                continue
            lo, med, hi, got_unit = benches[name]
            if got_unit != unit:
                raise Failure(f"{name}: unit {got_unit}, expected {unit}")
            r.update(min=lo, median=med, max=hi)
        elif source == GUEST:
            lo, med, hi, n = guests[name]
            r.update(min=lo, median=med, max=hi)
            r["note"] = (f"measured by the tiny guest (tests/guests, guest=bench, switch or virtio-bench) with its counter: "
                         f"{GUEST_LINES[name][2]}; {n} samples, each one operation timed alone")
        elif source in (LINUX, DISK, NET) and args.quick:
            r["note"] = "not measured by the quick run (make bench measures it)"
        elif source == LINUX:
            if linux is None:
                linux = linux_ratio(args.qemu, args.image, args.initrd, args.timeout)
            ratios, (insns, ns) = linux
            if name.startswith("linux_boot_ratio"):
                variant = "quiet" if name.endswith("_quiet") else "hvc0" if name.endswith("_hvc0") else "verbose"
                ratio, d, k = ratios[variant]
                r.update(min=round(ratio, 3), median=round(ratio, 3), max=round(ratio, 3))
                console = {"quiet": "quiet console (`quiet`)", "verbose": "verbose PL011 console",
                           "hvc0": "console=hvc0 on virtio-console (--console virtio; QEMU's virtconsole), no earlycon: "
                                   "nothing printed before /init loads the driver"}[variant]
                r["note"] = (f"Linux start to /init, {console}: {k:.6f} s guest time under Keel vs {d:.6f} s "
                             f"on QEMU at EL1 (icount: 1 s = 1e9 instructions)")
            else:
                v = round(insns / ns, 4)
                r.update(min=v, median=v, max=v)
                r["note"] = (f"perf stat in the Debian guest (linux-perf-check): {insns} instructions counted by the "
                             f"guest's PMU for a shell loop over the {ns} instructions icount ran meanwhile (its elapsed ns)")
        elif source == DISK:
            if disk is None:
                disk = disk_figures(args.qemu, args.image, args.initrd, args.timeout)
            figures, (exits, requests) = disk
            v = round(figures[name], 2) if name.endswith("_request") else int(figures[name])
            r.update(min=v, median=v, max=v)
            if name.endswith("_request"):
                r["note"] = (f"{exits} monitor exits (mmio-user: Linux reads InterruptStatus and writes InterruptACK for "
                             f"every interrupt, each forwarded to the backend; its boot's probing included) over "
                             f"{requests} requests the disk served")
            else:
                way = "from /dev/zero to /dev/vda" if "write" in name else "from /dev/vda to /dev/null"
                r["note"] = (f"Debian's Linux, dd {way}, 64 KiB O_DIRECT requests, 64 MiB: guest "
                             f"nanoseconds per MiB (instructions under icount); the disk is a file in a tmpfs of "
                             f"Keel's, served by vdev-blk through the file service. No QEMU baseline yet")
        elif source == NET:
            if net is None:
                net = net_figures(args.qemu, args.image, args.initrd, args.timeout)
            lo, med, hi = net[name]
            r.update(min=lo, median=med, max=hi)
            if name.endswith("round_trip"):
                r["note"] = ("busybox ping between two Debian guests on one Keel switch, 20 pings: min, avg (as the "
                             "median) and max of its round trips (ms to the microsecond = instructions the whole "
                             "machine ran under icount): guest, backend, switch, the other backend and guest, and back")
            else:
                r["note"] = ("wget of 64 MiB of zeros from busybox httpd in the other guest on the same switch, into "
                             "/dev/null: guest nanoseconds per MiB (instructions the whole machine ran: both guests, "
                             "both backends and the switch; every frame copied four times). No offloads, MTU 1500")
        elif source == PROMPT:
            v = boot_to_prompt(args.qemu, args.image, args.initrd, args.timeout)
            r.update(min=v, median=v, max=v)
            r["note"] = ("counter ticks from power-on to the shell printing its first prompt (under icount "
                         "with sleep=off, time all CPUs spend idle is skipped, not counted)")
        elif source == "boot":
            v = boot_figures[name]
            r.update(min=v, median=v, max=v)
            if name == "kernel_memory_after_boot":
                r["note"] = (f"kernel image {parts['kimage']} bytes (text, data, BSS) + {parts['frames']} bytes of "
                             f"frames the kernel allocated by its ready line (heap, page tables, stacks)")
            else:
                r["note"] = "counter ticks from power-on to the kernel's ready line (all CPUs)"
        else:
            r["note"] = source
        results.append(r)
    if missing:
        raise Failure(f"scenario {scenario}: no bench line for {', '.join(missing)}\n{tail(log)}")
    return results, time.monotonic() - started


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return f"{v:,}"


def met(r):
    if r["median"] is None:
        return "n/a"
    if r["target"] is None:
        return "-"
    return "yes" if r["median"] <= r["target"] else "no"


def print_table(results):
    head = ("benchmark", "median", "min", "max", "target", "met?", "unit")
    rows = []
    for r in results:
        if r["median"] is None:
            rows.append((r["name"], "not available", "", "", fmt(r["target"]), met(r), r["unit"]))
        else:
            rows.append((r["name"], fmt(r["median"]), fmt(r["min"]), fmt(r["max"]), fmt(r["target"]), met(r), r["unit"]))
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(head))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    notes = [r for r in results if r["median"] is None]
    if notes:
        print()
        for r in notes:
            print(f"{r['name']}: {r['note']}")


def git_commit():
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip() != ""
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return None, None


def load_results(path):
    """A results file written by `make bench`, or exit with one line saying what is wrong with it."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        sys.exit(f"bench-compare: {path}: {e.strerror}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        sys.exit(f"bench-compare: {path}: not a JSON file ({e})")
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or not all(
        isinstance(r, dict) and isinstance(r.get("name"), str) and "median" in r and "unit" in r for r in results
    ):
        sys.exit(f"bench-compare: {path}: not a `make bench` results file (no list of results with name, median, unit)")
    return data


def compare(a_path, b_path):
    """Prints the per-benchmark change of the medians from A to B."""
    a, b = (load_results(p) for p in (a_path, b_path))
    a_res = {r["name"]: r for r in a["results"]}
    b_res = {r["name"]: r for r in b["results"]}
    names = list(a_res) + [n for n in b_res if n not in a_res]
    print(f"A: {a_path} (commit {a.get('commit')})")
    print(f"B: {b_path} (commit {b.get('commit')})")
    head = ("benchmark", "A median", "B median", "change", "unit")
    rows = []
    for n in names:
        ra, rb = a_res.get(n), b_res.get(n)
        ma = ra["median"] if ra else None
        mb = rb["median"] if rb else None
        unit = (rb or ra)["unit"]
        if ma is None or mb is None:
            change = "only in B" if ra is None else "only in A" if rb is None else "n/a"
        elif ma == 0:
            change = f"{mb - ma:+}"
        else:
            change = f"{(mb - ma) / ma * 100:+.1f}%"
        rows.append((n, fmt(ma) if ra else "", fmt(mb) if rb else "", change, unit))
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    for cells in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        if len(sys.argv) != 4:
            sys.exit("usage: scripts/bench.py compare A.json B.json")
        return compare(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description="Keel's instruction-count benchmarks under QEMU icount.")
    ap.add_argument("--quick", action="store_true", help="few iterations (what `make test` runs)")
    ap.add_argument("--image", default=os.environ.get("KEEL_IMAGE", os.path.join(ROOT, "target/keel.Image")))
    ap.add_argument("--initrd", default=os.environ.get("KEEL_INITRD", os.path.join(ROOT, "target/initrd.cpio")))
    ap.add_argument("--qemu", default=os.environ.get("QEMU", "qemu-system-aarch64"))
    ap.add_argument("--out", help="the JSON file (default target/bench/results.json, results-quick.json with --quick)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds one QEMU boot may take")
    args = ap.parse_args()
    for path in (args.image, args.initrd):
        if not os.path.exists(path):
            sys.exit(f"bench: {path} does not exist: build it with `make image initrd`")
    try:
        results, took = run_all(args)
    except Failure as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        return 1
    print_table(results)
    commit, dirty = git_commit()
    out = args.out or os.path.join(ROOT, "target/bench", "results-quick.json" if args.quick else "results.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"commit": commit, "dirty": dirty, "quick": args.quick, "results": results}, f, indent=2)
        f.write("\n")
    print(f"\nbench: {len(results)} benchmarks in {took:.1f} s; figures in {os.path.relpath(out, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
