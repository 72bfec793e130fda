#!/usr/bin/env python3
"""The kernel modules the guest loads at boot, with everything they depend on, in load order
(scripts/mkguest.sh puts them into the initramfs; the guest's /init insmods them in this order).

    modules.py MODDIR NAME...

MODDIR is a kernel package's /lib/modules/<version>/kernel extracted; each NAME a module name
(`virtio_mmio`, `virtio-rng`: '-' and '_' are the same). Dependencies come from each module's
own `.modinfo` section (`depends=`), so no depmod is needed. Prints one path per line, relative
to MODDIR, every module after the ones it depends on. Exits 1 naming a module not in MODDIR.
"""
import os
import struct
import sys

from needed import read_elf


def norm(name):
    return name.replace("-", "_")


def modinfo(path):
    """The key=value strings of a 64-bit little-endian ELF module's .modinfo section."""
    data = read_elf(path)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = sections[shstrndx]
    for s in sections:
        name_at = strtab[4] + s[0]
        name = data[name_at:data.index(b"\0", name_at)]
        if name == b".modinfo":
            raw = data[s[4]:s[4] + s[5]]
            return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)
    return {}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    moddir, wanted = sys.argv[1], sys.argv[2:]
    paths = {}
    for root, _dirs, files in os.walk(moddir):
        for f in files:
            if f.endswith(".ko"):
                paths[norm(f[:-3])] = os.path.relpath(os.path.join(root, f), moddir)
    order, state = [], {}

    def visit(name, chain):
        name = norm(name)
        if state.get(name) == "done":
            return
        if name in chain:
            sys.exit(f"modules.py: dependency loop: {' -> '.join(chain + [name])}")
        if name not in paths:
            sys.exit(f"modules.py: no module {name} in {moddir}" + (f" (needed by {chain[-1]})" if chain else ""))
        deps = modinfo(os.path.join(moddir, paths[name])).get("depends", "")
        for d in filter(None, deps.split(",")):
            visit(d, chain + [name])
        state[name] = "done"
        order.append(paths[name])

    for w in wanted:
        visit(w, [])
    print("\n".join(order))


if __name__ == "__main__":
    main()
