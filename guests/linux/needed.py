#!/usr/bin/env python3
"""The shared libraries an ELF program needs, all the way down (scripts/mkguest.sh uses it to put
Debian's perf into the guest's initramfs with nothing more than it loads).

    needed.py ROOT PROGRAM...

ROOT is a directory the Debian packages were extracted into; each PROGRAM is a path inside it.
Prints one line per library, `SONAME PATH` (PATH inside ROOT, symlinks followed), the dynamic
loader included. Exits 1 naming each library no file in ROOT provides, 2 on a file that is not a
64-bit little-endian ELF. Reads the dynamic section itself (no binutils needed).
"""
import os
import struct
import sys

DT_NULL, DT_NEEDED, DT_STRTAB = 0, 1, 5
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3


def read_elf(path):
    """The bytes of a 64-bit little-endian ELF file (ValueError for anything else)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    return data


def elf_info(path):
    """(NEEDED sonames, PT_INTERP path or None) of a 64-bit little-endian ELF file."""
    data = read_elf(path)
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic, interp = [], None, None
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, _memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
        elif p_type == PT_INTERP:
            interp = data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    if dynamic is None:
        return [], interp

    def file_offset(vaddr):
        for v, off, size in loads:
            if v <= vaddr < v + size:
                return vaddr - v + off
        raise ValueError(f"{path}: address {vaddr:#x} is in no loaded segment")

    needed, strtab = [], None
    off, size = dynamic
    for i in range(size // 16):
        tag, val = struct.unpack_from("<qQ", data, off + 16 * i)
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed.append(val)
        elif tag == DT_STRTAB:
            strtab = file_offset(val)
    if needed and strtab is None:
        raise ValueError(f"{path}: DT_NEEDED without DT_STRTAB")

    def string(i):
        end = data.index(b"\0", strtab + i)
        return data[strtab + i:end].decode()

    return [string(i) for i in needed], interp


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    root, programs = sys.argv[1], sys.argv[2:]
    index = {}
    for d, _dirs, files in os.walk(root):
        for name in files:
            if ".so" in name:
                index.setdefault(name, os.path.join(d, name))
    found, missing = {}, []
    todo = [os.path.join(root, p.lstrip("/")) for p in programs]
    while todo:
        path = os.path.realpath(todo.pop())
        try:
            needed, interp = elf_info(path)
        except (OSError, ValueError) as e:
            print(f"needed.py: {e}", file=sys.stderr)
            sys.exit(2)
        if interp:
            needed = needed + [os.path.basename(interp)]
        for soname in needed:
            if soname in found or soname in missing:
                continue
            lib = index.get(soname)
            if lib is None:
                missing.append(soname)
                continue
            found[soname] = os.path.realpath(lib)
            todo.append(lib)
    if missing:
        print("needed.py: no file in " + root + " provides " + ", ".join(sorted(missing)), file=sys.stderr)
        sys.exit(1)
    for soname in sorted(found):
        print(soname, os.path.relpath(found[soname], root))


if __name__ == "__main__":
    main()
