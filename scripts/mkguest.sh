#!/usr/bin/env bash
# Builds Keel's Linux guest from Debian's archive (guests/linux/README.md):
#   OUTDIR/Image        uncompressed arm64 Linux Image (bookworm's linux-image-<abi>-arm64)
#   OUTDIR/initrd.cpio  uncompressed newc initramfs: busybox-static:arm64 + guests/linux/init +
#                       the virtio drivers (and ext4) from the kernel package, in /lib/modules
#   OUTDIR/linux.conf   the VM config for Keel's vm service
#   OUTDIR/initrd-perf.cpio, OUTDIR/linux-perf.conf  the same initramfs with Debian's perf
#                       (linux-perf:arm64 and the shared libraries it loads) appended; the guest
#                       `vm run linux-perf` boots, where `perf stat` works
#   (and OUTDIR/kernel.config, the kernel's build config; OUTDIR/versions, the packages used)
# usage: scripts/mkguest.sh [OUTDIR]     (default: cache/guest in the repository)
# Does nothing when the outputs are newer than this script and guests/linux/*. The .debs are kept
# in OUTDIR/debs and reused while they are the archive's current versions. KEEL_GUEST_KERNEL=
# linux-image-<abi>-arm64 picks a kernel package other than the one linux-image-arm64 depends on.
# Uses sudo only when not root; needs no stdin.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$REPO/cache/guest}
GUEST_SRC=$REPO/guests/linux
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)   # absolute: some steps run in other directories
INPUTS=("${BASH_SOURCE[0]}" "$GUEST_SRC/init" "$GUEST_SRC/udhcpc.script" "$GUEST_SRC/mkcpio.py" "$GUEST_SRC/needed.py" "$GUEST_SRC/modules.py")
# The drivers of the virtio devices Keel gives guests (Debian builds them as modules), and ext4
# for a virtio disk; modules.py adds what they depend on.
MODULES=(virtio_mmio virtio-rng virtio_blk virtio_console virtio_net ext4 crc32c_generic)
OUTPUTS=("$OUT/Image" "$OUT/initrd.cpio" "$OUT/linux.conf" "$OUT/initrd-perf.cpio" "$OUT/linux-perf.conf")
# panic=-1: a guest kernel panic resets (ends) the VM at once instead of hanging. cryptomgr.notests:
# skips the crypto self-tests, 0.6 s of virtual time under icount (init at 0.18 s instead of 0.78 s).
APPEND="console=ttyAMA0 earlycon=pl011,0x09000000 panic=-1 cryptomgr.notests"

die() { echo "mkguest: error: $*" >&2; exit 1; }
log() { echo "mkguest: $*"; }

# Up to date: every output exists and is newer than every input.
uptodate=1
for o in "${OUTPUTS[@]}"; do
    [ -s "$o" ] || { uptodate=0; break; }
    for i in "${INPUTS[@]}"; do [ "$o" -nt "$i" ] || uptodate=0; done
done
if [ "$uptodate" = 1 ]; then exit 0; fi

for t in apt-get apt-cache dpkg dpkg-deb gzip python3; do
    command -v "$t" >/dev/null || die "$t not found (a Debian machine is needed)"
done
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot add arm64 to dpkg or update apt"
    SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-q -o Acquire::Retries=2)
# As root, apt's download sandbox user (_apt) cannot write into OUTDIR: say root to skip the warning.
if [ "$(id -u)" = 0 ]; then APT_OPTS+=(-o APT::Sandbox::User=root); fi

updated=0
apt_update() {
    log "apt-get update (arm64 package lists)"
    if ! $SUDO apt-get "${APT_OPTS[@]}" -o APT::Update::Error-Mode=any update >"$OUT/apt-update.log" 2>&1; then
        tail -n 5 "$OUT/apt-update.log" >&2
        die "apt-get update failed: Debian's archive unreachable? (full log: $OUT/apt-update.log)"
    fi
    updated=1
}

mkdir -p "$OUT/debs"
if ! dpkg --print-foreign-architectures | grep -qx arm64 && [ "$(dpkg --print-architecture)" != arm64 ]; then
    log "dpkg --add-architecture arm64"
    $SUDO dpkg --add-architecture arm64
    apt_update
fi
# Each apt-cache run reads every package list (~2 s here: no pkgcache), so ask for all at once.
# show_arm64 PKG...: the candidate "Package Version Depends" lines of the arm64 packages.
show_arm64() {
    apt-cache show --no-all-versions "${@/%/:arm64}" 2>/dev/null |
        awk -F': ' '/^Package:/ { p = $2; v = d = "" } /^Version:/ { v = $2 } /^Depends:/ { d = $2 }
                    /^$/ && p != "" { print p, v, d; p = "" } END { if (p != "") print p, v, d }'
}

# resolve: KPKG KVER BVER, the candidates; the kernel is the package the linux-image-arm64
# metapackage depends on (e.g. linux-image-6.1.0-35-arm64).
resolve() {
    local info
    info=$(show_arm64 linux-image-arm64 busybox-static)
    if [ "$updated" = 0 ] && [ "$(wc -l <<<"$info")" != 2 ]; then
        apt_update
        info=$(show_arm64 linux-image-arm64 busybox-static)
    fi
    [ "$(wc -l <<<"$info")" = 2 ] || die "linux-image-arm64:arm64 or busybox-static:arm64 unknown to apt"
    KPKG=${KEEL_GUEST_KERNEL:-$(awk '$1 == "linux-image-arm64" { sub(/,$/, "", $3); print $3 }' <<<"$info")}
    [[ "$KPKG" == linux-image-*-arm64 ]] || die "cannot resolve the kernel package linux-image-arm64 depends on"
    KVER=$(show_arm64 "$KPKG" | awk '{ print $2 }')
    [ -n "$KVER" ] || die "$KPKG:arm64 not found in the apt lists"
    BVER=$(awk '$1 == "busybox-static" { print $2 }' <<<"$info")
    KDEB="$OUT/debs/${KPKG}_${KVER//:/%3a}_arm64.deb"
    BDEB="$OUT/debs/busybox-static_${BVER//:/%3a}_arm64.deb"
}
# fetch PKG VERSION DEB: download DEB unless it is already there.
fetch() {
    [ -s "$3" ] && return 0
    log "apt-get download $1:arm64=$2"
    (cd "$OUT/debs" && apt-get "${APT_OPTS[@]}" download "$1:arm64=$2") && [ -s "$3" ]
}
resolve
if ! { fetch "$KPKG" "$KVER" "$KDEB" && fetch busybox-static "$BVER" "$BDEB"; }; then
    [ "$updated" = 0 ] || die "apt-get download failed: Debian's archive unreachable?"
    # Stale lists (the archive dropped that version) fail the same way: update and try again.
    apt_update
    resolve
    fetch "$KPKG" "$KVER" "$KDEB" && fetch busybox-static "$BVER" "$BDEB" ||
        die "apt-get download failed: Debian's archive unreachable?"
fi

WORK=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log "extracting /boot/vmlinuz-* and the guest's modules from $(basename "$KDEB") and /bin/busybox from $(basename "$BDEB")"
mkdir -p "$WORK/kernel"
# Only /boot and the module directories the MODULES come from: dpkg-deb -x would also write
# ~400 MB of modules the guest does not need (three times slower).
dpkg-deb --fsys-tarfile "$KDEB" | tar -x -C "$WORK/kernel" --wildcards './boot/vmlinuz-*' './boot/config-*' \
    './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/char/*' \
    './lib/modules/*/kernel/drivers/block/*' './lib/modules/*/kernel/drivers/net/*' \
    './lib/modules/*/kernel/net/core/*' './lib/modules/*/kernel/fs/*' \
    './lib/modules/*/kernel/crypto/*' './lib/modules/*/kernel/lib/*'
moddir=$(ls -d "$WORK"/kernel/lib/modules/*/kernel 2>/dev/null | head -n 1)
[ -n "$moddir" ] || die "no /lib/modules/*/kernel in $KDEB"
python3 "$GUEST_SRC/modules.py" "$moddir" "${MODULES[@]}" >"$WORK/load.list" ||
    die "the guest's modules are not all in $KDEB"
dpkg-deb -x "$BDEB" "$WORK/busybox"

# Image: /boot/vmlinuz-* is either a gzip-compressed Image or (the signed bookworm packages) the
# plain Image, a PE/COFF file that is also a valid arm64 Image.
vmlinuz=$(ls "$WORK"/kernel/boot/vmlinuz-* 2>/dev/null | head -n 1)
[ -n "$vmlinuz" ] || die "no /boot/vmlinuz-* in $KDEB"
if gzip -t "$vmlinuz" 2>/dev/null; then gzip -dc "$vmlinuz" >"$WORK/Image"; else cp "$vmlinuz" "$WORK/Image"; fi
cp "$WORK"/kernel/boot/config-* "$WORK/kernel.config"
magic=$(od -An -tx1 -j56 -N4 "$WORK/Image" | tr -d ' \n')
[ "$magic" = 41524d64 ] || die "$vmlinuz is no arm64 Image (magic at 0x38: $magic, want ARM\\x64)"

# initrd.cpio: busybox (applet links made at boot by busybox --install -s), /init, a few dirs.
bb="$WORK/busybox/bin/busybox"
[ -x "$bb" ] || die "no /bin/busybox in $BDEB"
[ "$(od -An -tx1 -j18 -N2 "$bb" | tr -d ' \n')" = b700 ] || die "$bb is no aarch64 binary"
cat >"$WORK/list" <<EOT
dir /bin 755
dir /sbin 755
dir /usr 755
dir /usr/bin 755
dir /usr/sbin 755
dir /dev 755
nod /dev/console 600 c 5 1
nod /dev/null 666 c 1 3
dir /proc 555
dir /sys 555
dir /tmp 1777
dir /root 700
dir /etc 755
file /bin/busybox $bb 755
slink /bin/sh busybox
file /init $GUEST_SRC/init 755
file /etc/udhcpc.script $GUEST_SRC/udhcpc.script 755
dir /lib 755
dir /lib/modules 755
EOT
# The modules, flat in /lib/modules, and their load order (the guest's /init reads it).
while read -r m; do
    echo "file /lib/modules/$(basename "$m") $moddir/$m 644"
    basename "$m" >&3
done <"$WORK/load.list" 3>"$WORK/load-flat.list" >>"$WORK/list"
echo "file /lib/modules/load.list $WORK/load-flat.list 644" >>"$WORK/list"
python3 "$GUEST_SRC/mkcpio.py" "$WORK/list" "$WORK/initrd.cpio"

# initrd-perf.cpio: initrd.cpio with a second archive appended (Linux unpacks every archive of a
# concatenated initramfs in turn) holding /usr/bin/perf, the dynamic loader and every library perf
# loads, found by reading the ELF files' DT_NEEDED (needed.py), not from package names. The
# packages: linux-perf and the arm64 library packages it depends on, all the way down (perl and
# python themselves are not needed: perf only links their libraries).
perf_pkgs() {
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances linux-perf:arm64 2>/dev/null |
        sed -n 's/^\([a-z0-9][a-z0-9.+-]*\):arm64$/\1/p' |
        grep -E '^(lib|zlib)' | grep -vE -- '-(stdlib|minimal|modules|common|bin)$' | sort -u
}
PDEBS="$OUT/debs/perf"
rm -rf "$PDEBS" && mkdir -p "$PDEBS"
mapfile -t perf_libs < <(perf_pkgs)
[ ${#perf_libs[@]} -gt 5 ] || die "apt-cache finds no library packages under linux-perf:arm64"
log "apt-get download linux-perf:arm64 and ${#perf_libs[@]} library packages under it"
if ! (cd "$PDEBS" && apt-get "${APT_OPTS[@]}" download linux-perf:arm64 "${perf_libs[@]/%/:arm64}" >"$OUT/apt-perf.log" 2>&1); then
    tail -n 5 "$OUT/apt-perf.log" >&2
    die "apt-get download of linux-perf:arm64 and its libraries failed (log: $OUT/apt-perf.log)"
fi
mkdir -p "$WORK/perf"
for deb in "$PDEBS"/*.deb; do dpkg-deb -x "$deb" "$WORK/perf"; done
[ -x "$WORK/perf/usr/bin/perf" ] || die "no /usr/bin/perf in linux-perf:arm64"
[ "$(od -An -tx1 -j18 -N2 "$WORK/perf/usr/bin/perf" | tr -d ' \n')" = b700 ] || die "/usr/bin/perf of linux-perf:arm64 is no aarch64 binary"
python3 "$GUEST_SRC/needed.py" "$WORK/perf" /usr/bin/perf >"$WORK/perf-libs" ||
    die "a library perf needs is in none of the downloaded packages (see above)"
{
    echo "dir /lib 755"
    echo "dir /lib/aarch64-linux-gnu 755"
    echo "file /usr/bin/perf $WORK/perf/usr/bin/perf 755"
    # The loader where PT_INTERP names it; the libraries in its default search directory.
    while read -r soname path; do
        if [[ "$soname" == ld-linux-* ]]; then
            echo "file /lib/$soname $WORK/perf/$path 755"
        else
            echo "file /lib/aarch64-linux-gnu/$soname $WORK/perf/$path 644"
        fi
    done <"$WORK/perf-libs"
} >"$WORK/perf-list"
python3 "$GUEST_SRC/mkcpio.py" "$WORK/perf-list" "$WORK/perf.cpio"
cat "$WORK/initrd.cpio" "$WORK/perf.cpio" >"$WORK/initrd-perf.cpio"
PVER=$(dpkg-deb -f "$PDEBS"/linux-perf_*_arm64.deb Version)

cat >"$WORK/linux-perf.conf" <<EOT
name = linux-perf
kernel = /guest/linux/Image
initrd = /guest/linux/initrd-perf.cpio
append = $APPEND
vcpus = 2
mem = 256M
EOT

cat >"$WORK/linux.conf" <<EOT
name = linux
kernel = /guest/linux/Image
initrd = /guest/linux/initrd.cpio
append = $APPEND
vcpus = 2
mem = 256M
EOT

printf '%s %s\n' "$KPKG" "$KVER" busybox-static "$BVER" linux-perf "$PVER" >"$OUT/versions"
mv -f "$WORK/Image" "$OUT/Image"
mv -f "$WORK/initrd.cpio" "$OUT/initrd.cpio"
mv -f "$WORK/kernel.config" "$OUT/kernel.config"
mv -f "$WORK/linux.conf" "$OUT/linux.conf"
mv -f "$WORK/initrd-perf.cpio" "$OUT/initrd-perf.cpio"
mv -f "$WORK/linux-perf.conf" "$OUT/linux-perf.conf"
log "built $OUT: Image ($KPKG $KVER, $(stat -c %s "$OUT/Image") bytes)," \
    "initrd.cpio (busybox-static $BVER, $(stat -c %s "$OUT/initrd.cpio") bytes), linux.conf," \
    "initrd-perf.cpio (linux-perf $PVER and $(wc -l <"$WORK/perf-libs") libraries, $(stat -c %s "$OUT/initrd-perf.cpio") bytes), linux-perf.conf"
