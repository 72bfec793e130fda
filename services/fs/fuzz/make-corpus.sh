#!/bin/sh
# Seed corpus for the ext2_image target: small real images (not committed; regenerate with this).
set -eu
cd "$(dirname "$0")"
out=corpus/ext2_image
mkdir -p "$out"
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/a/b"
printf 'hello\n' > "$tree/small"
head -c 20000 /dev/urandom > "$tree/a/ind"
printf 'leaf\n' > "$tree/a/b/leaf"
ln -s a/b/leaf "$tree/fast"
ln -s "$(printf 'x%.0s' $(seq 1 80))" "$tree/slow"
ln "$tree/small" "$tree/hard"
for spec in "64 1024 128" "128 1024 256" "128 2048 128" "256 4096 256"; do
    set -- $spec
    /usr/sbin/mke2fs -q -F -t ext2 -b "$2" -I "$3" -N 32 -d "$tree" "$out/ext2-$1k-b$2-i$3.img" "$1k"
done
/usr/sbin/mke2fs -q -F -t ext2 -b 1024 -r 0 -N 32 "$out/ext2-rev0.img" 64k
ls -l "$out"
