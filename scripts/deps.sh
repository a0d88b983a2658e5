#!/usr/bin/env bash
# deps.sh — make sure the Debian packages Aegis needs are installed.
#
#   scripts/deps.sh build   what `make` needs
#   scripts/deps.sh test    plus what `make check` needs
#   scripts/deps.sh vm      what the vm backend boots (docs/vm.md): QEMU, a
#                           Debian kernel, and what scripts/vm-guest.sh uses
#   scripts/deps.sh bench   plus the peers `make bench` compares against
#
# As root, missing packages are installed with apt-get; otherwise the
# missing ones are listed and the script fails.
set -euo pipefail

# e2fsprogs: mkfs.ext4 for size-limited workspaces (aegis workspace create --size)
build=(meson ninja-build pkg-config gcc libc6-dev libseccomp-dev libcap-dev libjansson-dev libssl-dev
	libmicrohttpd-dev e2fsprogs libcurl4-openssl-dev libarchive-dev)
test=(python3 python3-pytest procps iproute2 util-linux passwd clang libclang-rt-14-dev
	curl git openssl iputils-ping diffutils skopeo umoci docker-registry zstd python3-jwt
	python3-cryptography attr busybox-static)
bench=(bubblewrap runc)
# The guest kernel is not installed: scripts/vm-guest.sh fetches Debian's
# generic kernel package (it has 9p) with apt-get download and unpacks it
# with dpkg-deb (in dpkg itself) into the build directory. lz4/xz/zstd: its
# bzImage payload; cpio: the initramfs; erofs-utils: mkfs.erofs, an image
# root's block image (src/vm/erofs.c)
vm=(qemu-system-x86 lz4 xz-utils zstd cpio file erofs-utils)

want=("${build[@]}")
case "${1:-build}" in
build) ;;
test) want+=("${test[@]}" "${vm[@]}") ;;
vm) want+=("${vm[@]}") ;;
bench) want+=("${test[@]}" "${vm[@]}" "${bench[@]}") ;;
*) echo "deps.sh: unknown set '$1' (build, test, vm or bench)" >&2; exit 2 ;;
esac

missing=()
for pkg in "${want[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$pkg")
done
# node and npm for the MCP tests' client (tests/mcp): Debian's packages,
# unless a node with its npm is already there (NodeSource's nodejs ships
# npm inside and conflicts with Debian's npm package)
if [ "${1:-build}" != build ] && ! { command -v node && command -v npm; } >/dev/null; then
	missing+=(nodejs npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "aegis: missing Debian packages: ${missing[*]}" >&2
	echo "aegis: install them with: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
echo "aegis: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
