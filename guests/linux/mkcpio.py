#!/usr/bin/env python3
"""Writes an uncompressed newc cpio archive from a gen_init_cpio-style list, without root:
device nodes are written as entries, not made on the host. Reproducible: owner 0:0, mtime 0,
entries in list order.

usage: mkcpio.py LIST OUT.cpio
LIST lines (# comments):  dir NAME MODE | file NAME SRC MODE | slink NAME TARGET | nod NAME MODE c|b MAJ MIN
"""
import sys


def entry(name, mode, data=b"", ino=0, rdev=(0, 0)):
    name_b = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0]
    out = b"070701" + b"".join(b"%08x" % f for f in fields) + name_b
    out += b"\0" * (-len(out) % 4) + data
    return out + b"\0" * (-len(out) % 4)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out = bytearray()
    for ino, line in enumerate(open(sys.argv[1]), start=1):
        w = line.split("#", 1)[0].split()
        if not w:
            continue
        kind, name = w[0], w[1].lstrip("/")
        if kind == "dir":
            out += entry(name, 0o040000 | int(w[2], 8), ino=ino)
        elif kind == "file":
            out += entry(name, 0o100000 | int(w[3], 8), open(w[2], "rb").read(), ino=ino)
        elif kind == "slink":
            out += entry(name, 0o120777, w[2].encode(), ino=ino)
        elif kind == "nod":
            typ = {"c": 0o020000, "b": 0o060000}[w[3]]
            out += entry(name, typ | int(w[2], 8), ino=ino, rdev=(int(w[4]), int(w[5])))
        else:
            sys.exit(f"mkcpio: bad line: {line.strip()}")
    out += entry("TRAILER!!!", 0)
    out += b"\0" * (-len(out) % 512)
    with open(sys.argv[2], "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
