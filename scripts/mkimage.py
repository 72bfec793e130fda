#!/usr/bin/env python3
"""Packs the kernel ELF into an arm64 Linux `Image`: the loadable segments laid out flat from the
first one's address. Checks the header magic ("ARM\\x64" at 0x38) so a broken link fails here,
not in QEMU."""
import struct
import sys


def main(elf_path: str, out_path: str) -> None:
    data = open(elf_path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"mkimage: {elf_path} is not a little-endian ELF64 file")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    segments = []
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, _memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and p_filesz > 0:  # PT_LOAD with file contents
            segments.append((p_vaddr, data[p_offset:p_offset + p_filesz]))
    if not segments:
        sys.exit(f"mkimage: {elf_path} has no loadable segments")
    segments.sort()
    base = segments[0][0]
    end = max(vaddr + len(blob) for vaddr, blob in segments)
    image = bytearray(end - base)
    for vaddr, blob in segments:
        image[vaddr - base:vaddr - base + len(blob)] = blob
    if image[0x38:0x3c] != b"ARM\x64":
        sys.exit("mkimage: no arm64 Image magic at offset 0x38: is boot.S's header first in .text?")
    open(out_path, "wb").write(image)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: mkimage.py KERNEL.elf Image")
    main(sys.argv[1], sys.argv[2])
