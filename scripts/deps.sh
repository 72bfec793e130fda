#!/usr/bin/env bash
# Installs what building, running and testing Keel needs, from Debian's archive only.
# Idempotent: does nothing when everything is present. Uses sudo when not root.
# Needs no stdin (CI runs it non-interactively).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# Packages from bookworm itself.
BASE_PKGS=(rustc-web cargo-web rust-web-src lld-19 gdb-multiarch device-tree-compiler
           e2fsprogs cpio python3 make)
# Packages that must come from bookworm-backports (QEMU 10: SMMUv3 stage 2, recent -cpu max).
BACKPORT_PKGS=(qemu-system-arm ipxe-qemu)

missing=()
for p in "${BASE_PKGS[@]}" "${BACKPORT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# An old QEMU (bookworm's 7.2) counts as missing.
if command -v qemu-system-aarch64 >/dev/null; then
    major=$(qemu-system-aarch64 --version | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p')
    if [ "${major:-0}" -lt 10 ]; then missing+=(qemu-system-arm); fi
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "deps: installing ${missing[*]}"

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
bp_list=/etc/apt/sources.list.d/keel-backports.sources
if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deps: adding ${codename}-backports to apt sources ($bp_list)"
    $SUDO tee "$bp_list" >/dev/null <<EOT
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${codename}-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${BASE_PKGS[@]}"
$SUDO apt-get install -y -q --no-install-recommends -t "${codename}-backports" "${BACKPORT_PKGS[@]}"

# The Debian toolchain must be the one with aarch64 library sources.
/usr/bin/rustc --version
qemu-system-aarch64 --version | head -1
