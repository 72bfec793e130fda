#!/usr/bin/env python3
"""Builds Keel's initrd: a newc cpio archive of the user programs (bin/<name>), the boot manifest
(etc/manifest) and any extra host files (given as SRC or SRC:DEST).

usage: mkinitrd.py OUT.cpio --bin DIR NAME... [--manifest FILE] [--extra SRC[:DEST]...]
"""
import argparse
import os
import sys


PAGE = 4096


def newc_entry(name: str, mode: int, data: bytes, ino: int, at: int = 0) -> bytes:
    """One entry, to be written at offset `at` of the archive. A file of a page or more gets its
    name padded with NULs so that its data starts on a page boundary (as dracut-cpio's
    --data-align does): init then maps a program's read-only segments straight from the initrd
    instead of copying them, and readers take the name up to its first NUL."""
    name_b = name.encode() + b"\0"
    if len(data) >= PAGE:
        name_b += b"\0" * (-(at + 110 + len(name_b)) % PAGE)
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0]
    header = b"070701" + b"".join(b"%08x" % f for f in fields)
    out = header + name_b
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--bin", nargs="+", required=True, metavar=("DIR", "NAME"))
    p.add_argument("--manifest")
    p.add_argument("--extra", nargs="*", default=[])
    a = p.parse_args()
    bindir, names = a.bin[0], a.bin[1:]
    entries = [("bin", 0o40755, b""), ("etc", 0o40755, b"")]
    for n in names:
        path = os.path.join(bindir, n)
        if not os.path.exists(path):
            sys.exit(f"mkinitrd: {path} does not exist")
        entries.append((f"bin/{n}", 0o100755, open(path, "rb").read()))
    if a.manifest:
        entries.append(("etc/manifest", 0o100644, open(a.manifest, "rb").read()))
    for spec in a.extra:
        src, _, dest = spec.partition(":")
        if not os.path.isfile(src):
            sys.exit(f"mkinitrd: extra file {src} does not exist")
        dest = dest or os.path.basename(src)
        entries.append((dest.lstrip("/"), 0o100644, open(src, "rb").read()))
    blob = bytearray()
    for i, (n, m, d) in enumerate(entries):
        blob += newc_entry(n, m, d, i + 1, len(blob))
    blob += newc_entry("TRAILER!!!", 0, b"", 0)
    blob += b"\0" * (-len(blob) % 512)
    # Written aside and renamed: a QEMU already reading the old archive (another `make run`)
    # never sees half of the new one.
    tmp = f"{a.out}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
