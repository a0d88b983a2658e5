#!/usr/bin/env bash
# vm-guest.sh — prepare what the vm backend boots:
#
#   scripts/vm-guest.sh BUILD_DIR    writes BUILD_DIR/vm/{vmlinux,initramfs.cpio,release}
#
# The kernel is Debian's generic one (the cloud kernel has no 9p), the
# current versioned dependency of linux-image-amd64, fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into
# BUILD_DIR/vm-kernel/ — never installed on the host: installing a kernel
# package repoints the host's /vmlinuz and pulls initramfs-tools.
#
# QEMU's microvm boots an uncompressed ELF vmlinux through PVH, but Debian
# ships only the bzImage: like the kernel's scripts/extract-vmlinux, find the
# compressed payload's magic in it and decompress from there. The initramfs
# holds /init (aegis-guest, static), the few modules the guest loads itself
# and the merged-/usr links (/bin → usr/bin, ...). The guest's /usr and the
# allowlisted /etc come from the host as read-only 9p shares when a run's
# request arrives (docs/vm.md); nothing else of the host is in the guest.
set -euo pipefail

build=${1:?usage: vm-guest.sh BUILD_DIR}
build=$(cd "$build" && pwd)	# absolute: the download runs in another directory
guest=$build/aegis-guest
[ -x "$guest" ] || { echo "vm-guest.sh: $guest not built (run make build)" >&2; exit 1; }

# AEGIS_VM_KERNEL_PKG names the package (tests, or a pinned kernel);
# otherwise whatever linux-image-amd64 depends on now.
pkg=${AEGIS_VM_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
	[ -n "$pkg" ] || { echo "vm-guest.sh: apt-cache knows no linux-image-amd64 (apt-get update?)" >&2; exit 1; }
fi
release=${pkg#linux-image-}
cache=$build/vm-kernel/$release
if [ ! -f "$cache/boot/vmlinuz-$release" ]; then
	command -v dpkg-deb >/dev/null || { echo "vm-guest.sh: dpkg-deb missing (scripts/deps.sh vm)" >&2; exit 1; }
	dl=$(mktemp -d "$build/vm-kernel.XXXXXX")
	chmod 0755 "$dl"	# apt's _apt user writes the download there
	(cd "$dl" && apt-get download -q "$pkg" >"$dl/log" 2>&1) ||
		{ cat "$dl/log" >&2; rm -rf "$dl"; echo "vm-guest.sh: apt-get download $pkg failed" >&2; exit 1; }
	mkdir -p "$dl/x"
	dpkg-deb -x "$dl"/*.deb "$dl/x"
	mkdir -p "$build/vm-kernel"
	rm -rf "$cache"
	mv "$dl/x" "$cache"
	rm -rf "$dl"
fi
bz=$cache/boot/vmlinuz-$release
moddir=$cache/lib/modules/$release

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
# sorted by name, so the names carry the order). Each costs ~15 ms under
# TCG: only what the channel, the 9p shares, the overlay workspace and an
# image root need.
mkdir -p "$tmp/root/modules" "$tmp/root/dev" "$tmp/root/proc" "$tmp/root/sys" "$tmp/root/tmp" \
	"$tmp/root/usr" "$tmp/root/etc" "$tmp/root/mnt"
install -m 0755 "$guest" "$tmp/root/init"
n=10
# virtio_blk, crc32c_generic, libcrc32c and erofs: an image root's EROFS
# block image (libcrc32c asks the crypto API for crc32c, which nothing
# else loads in here).
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio drivers/char/virtio_console \
	drivers/block/virtio_blk fs/netfs/netfs fs/fscache/fscache net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p \
	fs/overlayfs/overlay crypto/crc32c_generic lib/libcrc32c fs/erofs/erofs; do
	n=$((n + 1))
	src=$moddir/kernel/$m.ko
	[ -f "$src" ] || { echo "vm-guest.sh: $src missing from $pkg" >&2; exit 1; }
	cp "$src" "$tmp/root/modules/$n-$(basename "$m").ko"
done
# The host's merged-/usr links, so the engine in the guest finds /bin,
# /lib, ... as it does on the host (they point into the /usr share).
for d in bin sbin lib lib32 lib64 libx32; do
	if [ -L "/$d" ]; then
		ln -s "$(readlink "/$d")" "$tmp/root/$d"
	fi
done

(cd "$tmp/root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$tmp/initramfs.cpio"

mkdir -p "$out"
mv "$tmp/vmlinux" "$out/vmlinux"
mv "$tmp/initramfs.cpio" "$out/initramfs.cpio"
echo "$release" >"$out/release"
