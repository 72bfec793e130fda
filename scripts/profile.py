#!/usr/bin/env python3
"""Where a benchmark's instructions go: one benchmark run under QEMU with scripts/profile/keel-prof.c.

    make profile BENCH=<name> [OPS=<operations in the window>] [TOP=<rows>] [USER_BINS=init,ktest]

`make profile` builds the image and initrd with KEEL_PROFILE=<name>: the benchmark code (ktest's
`measure`, the test guest's `profiled`) then brackets that benchmark's whole run, warm-up
included, with the profiling window's hint instructions. This script compiles the plugin, runs
the quick benchmark (kernel benchmarks: `scenario=bench-quick`; guest ones: the guest session of
scripts/bench.py) under icount with the plugin, and prints the instructions executed in the
window per function of the kernel (its ELF's symbols), lower-EL code (user space or a guest) as
one row. With OPS, the figures are divided by it (for the quick batch benchmarks the window
holds 200 operations; the guest ones 210): a per-operation flame.

With USER_BINS (`--user`), lower-EL code is named too, from the symbols of those user programs
(`make profile` builds them unstripped). Every program is linked at the same address and the
plugin cannot tell address spaces apart, so a row names the function at that address in each
program listed ("init:f | ktest:g"); the reader knows which one ran.
"""
import argparse
import bisect
import collections
import os
import re
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROOT = bench.ROOT
PLUGIN_SRC = os.path.join(ROOT, "scripts", "profile", "keel-prof.c")
OUT_DIR = os.path.join(ROOT, "target", "profile")
KERNEL_ELF = os.path.join(ROOT, "target", "aarch64-unknown-none-softfloat", "release", "keel")


def build_plugin():
    so = os.path.join(OUT_DIR, "keel-prof.so")
    if os.path.exists(so) and os.path.getmtime(so) >= os.path.getmtime(PLUGIN_SRC):
        return so
    try:
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-o", so, PLUGIN_SRC], check=True)
    except FileNotFoundError:
        sys.exit("profile: needs a C compiler for the QEMU plugin (apt-get install gcc)")
    return so


def elf_functions(path):
    """(address, name) of every function symbol of a 64-bit little-endian ELF, sorted."""
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        sys.exit(f"profile: {path} is not a 64-bit ELF")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out = []
    for name, kind, _, _, off, size, link, _, _, entsize in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        strtab = sections[link]
        for i in range(size // entsize):
            st_name, info, _, shndx, value, _ = struct.unpack_from("<IBBHQQ", data, off + i * entsize)
            # STT_NOTYPE (assembly labels) and STT_FUNC, defined in a section (not .equ constants).
            if info & 0xF not in (0, 2) or value == 0 or shndx == 0 or shndx >= 0xFF00:
                continue
            start = strtab[4] + st_name
            name = data[start:data.index(b"\0", start)].decode(errors="replace")
            if name and not name.startswith(("$", ".L")):  # mapping symbols, local labels
                out.append((value, demangle(name)))
    out.sort()
    return out


def demangle(sym):
    """A readable path from a Rust v0 symbol: its identifiers in order (`a::b::c`), generic
    arguments and hashes left out. Not a full demangler; other names come back unchanged."""
    if not sym.startswith("_R"):
        return sym
    sym = re.sub(r"(?<=[CM])s[0-9A-Za-z]*_", "", sym)  # crate hashes and impl disambiguators
    words, i = [], 2
    while i < len(sym):
        m = re.compile(r"(\d+)_?").match(sym, i)
        if m and not sym[i - 1].isdigit():
            n = int(m.group(1))
            ident = sym[m.end():m.end() + n]
            if n and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ident):
                words.append(ident)
                i = m.end() + n
                continue
            i = m.end()
            continue
        i += 1
    return "::".join(words) or sym


def run(args):
    os.makedirs(OUT_DIR, exist_ok=True)
    plugin = build_plugin()
    out = os.path.join(OUT_DIR, f"{args.bench}.txt")
    if os.path.exists(out):
        os.remove(out)
    bench.QEMU_ARGS += ["-plugin", f"{plugin},out={out}"]
    source = next((s for n, _, _, s in bench.CATALOG if n == args.bench), None)
    if source == bench.KERNEL:
        bench.boot(args.qemu, args.image, args.initrd, "bench-quick", args.timeout)
    elif source == bench.GUEST:
        bench.guest_figures(args.qemu, args.image, args.initrd, args.timeout)
    else:
        sys.exit(f"profile: {args.bench} is not a kernel or tiny-guest benchmark of scripts/bench.py")
    lines = open(out).read().splitlines()
    windows = int(lines[0].split()[-1]) if lines and lines[0].startswith("# windows") else 0
    if windows == 0:
        sys.exit(f"profile: no profiling window opened: build with KEEL_PROFILE={args.bench} (make profile does)")
    funcs = elf_functions(KERNEL_ELF)
    starts = [a for a, _ in funcs]
    user = []
    for name in filter(None, (args.user or "").split(",")):
        path = os.path.join(ROOT, "target", "aarch64-unknown-none", "user", name)
        table = elf_functions(path)
        if not table:
            sys.exit(f"profile: {path} has no symbols (make profile builds user programs unstripped)")
        user.append((name, [a for a, _ in table], table))
    by = collections.Counter()
    for line in lines[1:]:
        pc, n = line.split()
        pc, n = int(pc, 16), int(n)
        if pc < 1 << 63 and user:
            names = []
            for name, ustarts, table in user:
                i = bisect.bisect_right(ustarts, pc) - 1
                names.append(f"{name}:{table[i][1] if i >= 0 else '?'}")
            by["user " + " | ".join(names)] += n
        elif pc < 1 << 63:
            by["(lower EL: user space or guest)"] += n
        else:
            i = bisect.bisect_right(starts, pc) - 1
            by[funcs[i][1] if i >= 0 else "?"] += n
    total = sum(by.values())
    ops = args.ops or 1
    unit = "per operation" if args.ops else "in the window"
    print(f"{args.bench}: {total / ops:,.0f} instructions {unit} ({windows} window(s))")
    for name, n in by.most_common(args.top):
        print(f"{n / ops:10,.1f}  {100 * n / total:5.1f}%  {name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True)
    ap.add_argument("--ops", type=int, default=0)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--user", help="user programs whose symbols name lower-EL code, e.g. init,ktest")
    ap.add_argument("--image", default=os.path.join(ROOT, "target", "keel.Image"))
    ap.add_argument("--initrd", default=os.path.join(ROOT, "target", "initrd.cpio"))
    ap.add_argument("--qemu", default=os.environ.get("QEMU", "qemu-system-aarch64"))
    ap.add_argument("--timeout", type=int, default=900)
    try:
        run(ap.parse_args())
    except bench.Failure as e:
        sys.exit(f"profile: {e}")


if __name__ == "__main__":
    main()
