#!/usr/bin/env bash
# Writes the seed corpus of every fuzz target into $1 (default fuzz/seeds), deterministically:
# the same tools and sources give the same bytes (no random data, fixed times and UUIDs).
# Needs dtc (device-tree-compiler), cpio, mke2fs (e2fsprogs) and python3: scripts/deps.sh
# installs them all; a missing one is an error, not a smaller corpus.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$here/seeds}
for tool in dtc cpio python3; do
    command -v "$tool" >/dev/null || { echo "make-seeds: $tool not installed (run scripts/deps.sh)" >&2; exit 1; }
done
MKE2FS=$(command -v mke2fs || echo /usr/sbin/mke2fs)
DEBUGFS=$(command -v debugfs || echo /usr/sbin/debugfs)
for t in "$MKE2FS" "$DEBUGFS"; do
    [ -x "$t" ] || { echo "make-seeds: $t not installed (e2fsprogs; run scripts/deps.sh)" >&2; exit 1; }
done

rm -rf "$out"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
seed() { mkdir -p "$out/$1"; cat >"$out/$1/$2"; }

# DTB: QEMU 10's own blobs (platform/tests/fixtures, made by its regen.sh with
# `-machine virt,...,dumpdtb=`) and the hand-written fixtures, re-packed by dtc without QEMU's
# 1 MiB of padding so the fuzzer's inputs stay small.
for f in "$root"/platform/tests/fixtures/*.dtb; do
    dtc -q -I dtb -O dtb -o "$tmp/packed.dtb" "$f"
    seed dtb "$(basename "$f")" <"$tmp/packed.dtb"
done

# cpio: GNU cpio over a small tree with fixed times, plus the committed GNU fixture.
mkdir -p "$tmp/tree/bin" "$tmp/tree/etc"
printf 'init\n' >"$tmp/tree/bin/init"
printf 'service a /bin/init\n' >"$tmp/tree/etc/manifest"
ln -s init "$tmp/tree/bin/link"
find "$tmp/tree" -exec touch -h -d @0 {} +
for fmt in newc crc; do
    (cd "$tmp/tree" && printf '.\nbin\nbin/init\nbin/link\netc\netc/manifest\n' |
        cpio -o -H "$fmt" --quiet --reproducible --owner=0:0) | seed cpio "tree-$fmt.cpio"
done
seed cpio gnu-newc.cpio <"$root/services/formats/tests/fixtures/gnu-newc.cpio"

# ext2: mke2fs images of one small tree (the former services/fs/fuzz seeds), fixed UUID, hash
# seed and clock.
rm -rf "$tmp/e2"
mkdir -p "$tmp/e2/a/b"
printf 'hello\n' >"$tmp/e2/small"
python3 -c 'import sys; sys.stdout.buffer.write(bytes((i * 7 + 3) & 255 for i in range(20000)))' >"$tmp/e2/a/ind"
printf 'leaf\n' >"$tmp/e2/a/b/leaf"
ln -s a/b/leaf "$tmp/e2/fast"
ln -s "$(printf 'x%.0s' $(seq 1 80))" "$tmp/e2/slow"
ln "$tmp/e2/small" "$tmp/e2/hard"
find "$tmp/e2" -exec touch -h -d @0 {} +
export E2FSPROGS_FAKE_TIME=1 SOURCE_DATE_EPOCH=0
uuid=4b65656c-0000-4000-8000-000000000001
for spec in "64 1024 128" "128 1024 256" "128 2048 128" "256 4096 256"; do
    set -- $spec
    "$MKE2FS" -q -F -t ext2 -b "$2" -I "$3" -N 32 -U "$uuid" -E hash_seed="$uuid" -d "$tmp/e2" \
        "$tmp/img" "$1k"
    # mke2fs -d copies the source files' change and access times (reading them moves the latter): zero them.
    for ino in $(seq 2 32); do for f in atime atime_extra ctime ctime_extra crtime crtime_extra; do echo "set_inode_field <$ino> $f 0"; done; done >"$tmp/ctime.cmd"
    "$DEBUGFS" -w -f "$tmp/ctime.cmd" "$tmp/img" >/dev/null 2>&1
    seed ext2_image "ext2-$1k-b$2-i$3.img" <"$tmp/img"
done
"$MKE2FS" -q -F -t ext2 -b 1024 -r 0 -N 32 -U "$uuid" -E hash_seed="$uuid" "$tmp/img" 64k
seed ext2_image ext2-rev0.img <"$tmp/img"

# Everything else is small and written here.
seed manifest boot <"$root/services/init/manifest"
printf 'service a /bin/a restart=on-failure priority=10 cpu=1 after=b -- x y\nservice b /bin/b\n' | seed manifest options
printf 'keel-startup 1\narg /bin/fs\narg initrd=0x0:0x44ac00\ncap serve 5\ncap namesrv 3\n' | seed startup fs
printf '0x1000:0x20' | seed startup initrd
printf 'console=ttyAMA0 loglevel=debug scenario=smp quiet' | seed kernel_cmdline qemu
printf 'ls -l /disk\n' | tr -d '\n' | seed shell_line ls
printf "echo 'two words' \"and more\" > /tmp/out" | seed shell_line redirect
printf 'vm run linux --vcpus 2 --mem 256M --wait' | seed shell_line vm
printf '/bin/shell\0-x\0arg' | seed procmgr_spawn shell
printf 'console' | seed namesrv_name console
printf 'run\0/vm/linux.cfg\0--vcpus\0002\0--attach\377name = linux\nkernel = /boot/vmlinuz\ninitrd = /boot/initrd\nappend = "console=ttyAMA0"\nvcpus = 2\nmem = 256M\n' | seed vmm_command config
printf 'run\0tiny\0--kernel\0/bin/guest\0--raw\0--load\0000x40080000\0--mem\00032M' | seed vmm_command inline

python3 - "$out" <<'PY'
import os, struct, sys
out = sys.argv[1]
def seed(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    open(os.path.join(out, target, name), "wb").write(data)

# ELF: the layout of services/formats/tests/elf.rs's valid() file: text R+X at 0x400000 covering
# the headers, a GNU_STACK header, data R+W at 0x410000 (0x10 file bytes, then bss).
def elf(phdrs, length, entry=0x400100):
    body = bytearray((i * 7) & 255 for i in range(max(length, 64 + 56 * len(phdrs))))
    body[0:64] = (b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
                  + struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, entry, 64, 0, 0, 64, 56, len(phdrs), 0, 0, 0))
    for i, (ptype, flags, off, vaddr, filesz, memsz) in enumerate(phdrs):
        body[64 + 56 * i:120 + 56 * i] = struct.pack("<IIQQQQQQ", ptype, flags, off, vaddr, vaddr, filesz, memsz, 0x1000)
    return bytes(body)
seed("elf", "static", elf([(1, 5, 0, 0x400000, 0x400, 0x400), (0x6474e551, 4, 0, 0, 0, 0),
                           (1, 6, 0x1000, 0x410000, 0x10, 0x2000)], 0x1010))
seed("elf", "text-only", elf([(1, 5, 0, 0x400000, 0x200, 0x200)], 0x200))

# arm64 Image header: branch, text_offset, image_size, flags (LE, 4K, anywhere), "ARM\x64".
hdr = struct.pack("<IIQQQQQQII", 0x14000010, 0, 0, 0x200000, 0xa, 0, 0, 0, 0x644d5241, 0)
seed("vmm_image", "image", hdr + bytes(64))

# vmm's saved VM list (services/vmm/src/saved.rs): magic, version, next id, count, then per VM
# id, vcpus, mem, name, state, words (strings: u32 length + bytes).
def s32(b):
    return struct.pack("<I", len(b)) + b
vm = struct.pack("<IIQ", 1, 2, 256 << 20) + s32(b"linux") + s32(b"running") + struct.pack("<I", 2) + s32(b"linux") + s32(b"--attach")
seed("vmm_saved", "one", b"KVMS" + struct.pack("<III", 1, 2, 1) + vm)

# blk: label, data[4], flags (bit 0: bulk buffer, bit 1: read-only), bulk length, capacity.
def blk(label, data, flags, bulk, cap):
    return struct.pack("<8Q", label, *data, flags, bulk, cap)
seed("blk_request", "read", blk(2, [8, 4, 0, 0], 1, 65536, 2048))
seed("blk_request", "write", blk(3, [8, 0, 0, 1024], 1, 65536, 2048))
seed("blk_request", "info", blk(1, [0, 0, 0, 0], 0, 0, 2048))

# console: operations (fuzz_targets/console_request.rs): 0 len bytes (UART input, in pieces of
# at most 255 bytes), 4 READ_LINE, 5 READ_LINE INTERRUPT_ONLY, 6 READ_LINE timed out,
# 7 pid SET_FOREGROUND.
def rx(b):
    return b"".join(bytes([0, len(b[i:i + 255])]) + b[i:i + 255] for i in range(0, len(b), 255)) or b"\0\0"
READ, INTR, TIMEOUT = b"\4", b"\5", b"\6"
def fg(pid):
    return bytes([7, pid])
seed("console_request", "typing", rx(b"ls -l\r\nps\n") + READ + READ + READ)
seed("console_request", "ctrl-c", READ + fg(9) + rx(b"slee\x03") + READ + fg(0) + rx(b"pwd\n") + READ)
seed("console_request", "editing", rx("lx\bs\x7f \x15cat\x1b[A\x1bOP /etc/é€\x7f\n".encode()) + READ)
seed("console_request", "full", rx(b"x\n" * 66) + READ + rx(b"") + INTR + TIMEOUT + rx(b"\x03") + INTR + READ)
seed("console_request", "long-line", rx(b"y" * 1030 + b"\n") + READ + rx(b"y" * 1023 + "é\n".encode()) + READ)

# procmgr: operations (fuzz_targets/procmgr_request.rs): 0 caller flags len payload SPAWN,
# 2 caller pid KILL (pid | 0x80: row pid's process), 3 row exit, 4 pid badge parent rights a
# record. Rows 0-5 are the boot services (5: shell).
def spawn(caller, flags, payload):
    return bytes([0, caller, flags, len(payload)]) + payload
def kill(caller, pid):
    return bytes([2, caller, pid])
seed("procmgr_request", "shell", spawn(5, 0, b"/bin/ktest\0ipc") + spawn(5, 2, b"/bin/shell") + spawn(7, 0, b"/bin/hello")
     + kill(7, 0x88) + kill(8, 0x87) + kill(7, 0x80) + kill(6, 3) + bytes([3, 7]) + kill(5, 0x87) + kill(1, 0x87))
# Two records whose parents are each other (badges 10 and 11, no rights), killed by namesrv.
seed("procmgr_request", "loop", bytes([4, 20, 10, 0x40 | 11, 2, 4, 21, 11, 0x40 | 10, 2]) + kill(0, 20) + kill(0, 21))

# ps: procmgr's PS payload (keel_init::request::ps_line), and a malformed line.
seed("shell_ps", "boot", b"3\tinit\trunning\t36136\n18\tnamesrv\trunning\t120\n27\tconsole\trunning\t148\n"
     b"72\tshell\trunning\t156\n90\tcrash\texited(-11)\t0\n")
seed("shell_ps", "malformed", b"1\tinit\trunning\t4\n\nx\tbad\trunning\t1\n2\tonly-three\trunning\n 5 \t a b \trunning\t 8 \r\n")

# fs: records of label, session, four words (0x00-0x7f: small; 0x80 + u16; 0xc0 + u64),
# payload length, payload (fuzz_targets/fs_request.rs).
def req(label, words, payload=b"", sid=0):
    b = bytes([label, sid])
    for w in words:
        b += bytes([w]) if w < 0x80 else b"\xc0" + struct.pack("<Q", w)
    return b + bytes([len(payload)]) + payload
O_WRONLY, O_CREAT = 1, 0o100
seed("fs_request", "files", b"".join([
    req(8, [0o755, 0, 0, 0], b"/d"),
    req(1, [O_WRONLY | O_CREAT, 0o644, 0, 0], b"/d/f"),
    req(4, [3, 0, 0, 0], b"hello"),
    req(6, [0, 0, 0, 0], b"/d/f"),
    req(1, [0, 0, 0, 0], b"/d"),
    req(15, [4, 0, 0, 0]),
    req(26, [3, 64, 0, 0]),
    req(11, [0, 0, 0, 0], b"/d/f\0/d/g"),
    req(12, [0, 0, 0, 0], b"/d/g\0/l"),
    req(13, [0, 0, 0, 0], b"/l"),
    req(20, [0, 0, 0, 0], b"/"),
    req(25, [100, 100, 0, 0], sid=1),
    req(10, [0, 0, 0, 0], b"/d/g", sid=1),
]))
# virtqueue: a size-8 queue (INDIRECT_DESC and EVENT_IDX) in 4 KiB of guest RAM: descriptor
# table at 0, available ring at 128, used ring at 152; two chains available, a direct one
# (readable, then writable) and an indirect one.
BASE = 0x4000_0000
ram = bytearray(4096)
def desc(table, i, addr, length, flags, nxt):
    struct.pack_into("<QIHH", ram, table + 16 * i, addr, length, flags, nxt)
desc(0, 0, BASE + 0x400, 16, 1, 1)
desc(0, 1, BASE + 0x500, 32, 2, 0)
desc(0, 2, BASE + 0x600, 32, 4, 0)
desc(0x600, 0, BASE + 0x700, 8, 1, 1)
desc(0x600, 1, BASE + 0x800, 8, 2, 0)
struct.pack_into("<HHHH", ram, 128, 0, 2, 0, 2)
seed("virtqueue", "two-chains", bytes([3, 3]) + struct.pack("<HHH", 0, 64, 38) + bytes(ram))
# virtio_blk: a size-16 queue, descriptor table at 0, available ring at 0x200, used ring at
# 0x300; three requests: a write of sector 1, a read of sector 1 (header, data at 0x800, status
# at 0x700 + i) and a flush (header, status).
ram = bytearray(4096)
d = 0
for i, (kind, sector, data_flags) in enumerate([(1, 1, 0), (0, 1, 2), (4, 0, None)]):
    struct.pack_into("<IIQ", ram, 0x400 + 16 * i, kind, 0, sector)
    head = d
    desc(0, d, BASE + 0x400 + 16 * i, 16, 1, d + 1)
    d += 1
    if data_flags is not None:
        desc(0, d, BASE + 0x800, 512, data_flags | 1, d + 1)
        d += 1
    desc(0, d, BASE + 0x700 + i, 1, 2, 0)
    d += 1
    struct.pack_into("<H", ram, 0x204 + 2 * i, head)
struct.pack_into("<HH", ram, 0x200, 0, 3)
seed("virtio_blk", "write-read-flush", bytes([4, 0]) + struct.pack("<HHH", 0, 0x100, 0xc0) + bytes(ram))
PY
echo "make-seeds: $(find "$out" -type f | wc -l) seeds in $out"
