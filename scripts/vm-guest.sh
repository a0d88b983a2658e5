#!/usr/bin/env bash
# vm-guest.sh — prepare what the vm backend boots, from the installed
# Debian kernel package and the built aegis-guest:
#
#   scripts/vm-guest.sh BUILD_DIR    writes BUILD_DIR/vm/{vmlinux,initramfs.cpio,release}
#
# QEMU's microvm boots an uncompressed ELF vmlinux through PVH, but Debian
# ships only the bzImage: like the kernel's scripts/extract-vmlinux, find the
# compressed payload's magic in it and decompress from there. The initramfs
# holds /init (aegis-guest, static), busybox-static as the command's
# userland, and the few modules the guest loads
# itself (the cloud kernel builds virtio, virtio-mmio and virtio_console as
# modules); nothing else, so the guest sees no host file.
set -euo pipefail

build=${1:?usage: vm-guest.sh BUILD_DIR}
guest=$build/aegis-guest
[ -x "$guest" ] || { echo "vm-guest.sh: $guest not built (run make build)" >&2; exit 1; }

# The newest installed Debian cloud/generic kernel.
bz=$(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n1 || true)
[ -n "$bz" ] || { echo "vm-guest.sh: no Debian kernel in /boot (scripts/deps.sh vm installs linux-image-cloud-amd64)" >&2; exit 1; }
release=${bz#/boot/vmlinuz-}
moddir=/lib/modules/$release

out=$build/vm
tmp=$(mktemp -d "$build/vm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Try each payload format the kernel can be compressed with; the first
# offset that decompresses to an ELF file wins (extract-vmlinux's logic).
try() { # magic(as grep -P pattern) command...
	local magic=$1; shift
	local off
	for off in $(LC_ALL=C grep -obUaP "$magic" "$bz" | cut -d: -f1); do
		tail -c +$((off + 1)) "$bz" | "$@" >"$tmp/vmlinux" 2>/dev/null || true
		if [ "$(head -c4 "$tmp/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
			return 0
		fi
	done
	return 1
}
try '\x02\x21\x4c\x18' lz4 -dc ||
	try '\xfd\x37\x7a\x58\x5a\x00' xz -dc ||
	try '\x28\xb5\x2f\xfd' zstd -dc ||
	try '\x1f\x8b\x08' gzip -dc ||
	{ echo "vm-guest.sh: no known compressed vmlinux inside $bz" >&2; exit 1; }

# /init and the modules, in load order (aegis-guest loads /modules/*.ko
# sorted by name, so the names carry the order).
mkdir -p "$tmp/root/modules" "$tmp/root/dev" "$tmp/root/proc" "$tmp/root/sys" "$tmp/root/tmp"
install -m 0755 "$guest" "$tmp/root/init"
n=0
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio drivers/char/virtio_console; do
	n=$((n + 1))
	src=$moddir/kernel/$m.ko
	[ -f "$src" ] || { echo "vm-guest.sh: $src missing (is $release's module package installed?)" >&2; exit 1; }
	cp "$src" "$tmp/root/modules/$n-$(basename "$m").ko"
done
# The command's userland for now: busybox-static, as /bin/busybox and one
# link per applet (the guest root is this initramfs until images come).
bb=/bin/busybox
file -b "$bb" 2>/dev/null | grep -q 'statically linked' ||
	{ echo "vm-guest.sh: $bb is not busybox-static (scripts/deps.sh vm installs it)" >&2; exit 1; }
mkdir -p "$tmp/root/bin"
install -m 0755 "$bb" "$tmp/root/bin/busybox"
for applet in $("$bb" --list); do
	[ "$applet" = busybox ] || ln -s busybox "$tmp/root/bin/$applet"
done

(cd "$tmp/root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$tmp/initramfs.cpio"

mkdir -p "$out"
mv "$tmp/vmlinux" "$out/vmlinux"
mv "$tmp/initramfs.cpio" "$out/initramfs.cpio"
echo "$release" >"$out/release"
