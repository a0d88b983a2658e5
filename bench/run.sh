#!/usr/bin/env bash
# bench/run.sh: cold-start latency of `aegis run -- /bin/true` side by side with
# bwrap, unshare, runc, a bare clone()+exec and plain /bin/true, in one run.
# Prints a markdown table and PASS/MISS for the two latency targets.
#
# Env: AEGIS_BIN (default <repo>/build/aegis), BENCH_RUNS (default 200),
#      BENCH_WARMUPS (default 10), BENCH_SKIP_AEGIS=1 (testing only).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
AEGIS_BIN=${AEGIS_BIN:-$ROOT/build/aegis}
RUNS=${BENCH_RUNS:-200}
WARMUPS=${BENCH_WARMUPS:-10}
SKIP_AEGIS=${BENCH_SKIP_AEGIS:-0}

die() { echo "bench: $*" >&2; exit 1; }

# --- tools ------------------------------------------------------------------
# bwrap and runc come from Debian (scripts/deps.sh bench installs them as root).
"$ROOT/scripts/deps.sh" bench || die "missing peers (see above)"
for t in gcc unshare; do command -v "$t" >/dev/null || die "missing tool: $t"; done
if [[ $SKIP_AEGIS != 1 ]]; then
	[[ -x $AEGIS_BIN ]] || die "aegis binary not found at $AEGIS_BIN (set AEGIS_BIN or build it)"
fi

TMP=$(mktemp -d /tmp/aegis-bench.XXXXXX)
CID="aegis-bench-$$"
cleanup() { runc delete -f "$CID" >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT

# --- helpers ----------------------------------------------------------------
CFLAGS=(-O2 -Wall -Wextra -Werror)
gcc "${CFLAGS[@]}" -o "$TMP/timeit" "$BENCH/timeit.c"
gcc "${CFLAGS[@]}" -o "$TMP/bare_clone" "$BENCH/bare_clone.c"

# runc bundle: minimal rootfs holding /bin/true and the libraries it needs,
# default `runc spec` config (pid, network, ipc, uts, mount namespaces) with
# terminal off and args set to /bin/true. `runc run` (not detached) deletes
# the container on exit, so one id is reused for every iteration.
BUNDLE="$TMP/runc-bundle"
mkdir -p "$BUNDLE/rootfs/bin"
cp -L /bin/true "$BUNDLE/rootfs/bin/true"
for lib in $(ldd /bin/true | grep -o '/[^ ]*'); do
	cp -L --parents "$lib" "$BUNDLE/rootfs"
done
(cd "$BUNDLE" && runc spec)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"\/bin\/true"/' "$BUNDLE/config.json"
if ! grep -q '"terminal": false' "$BUNDLE/config.json" || ! grep -q '"/bin/true"' "$BUNDLE/config.json"; then
	die "could not patch runc config.json"
fi

# --- machine info -----------------------------------------------------------
echo "# Aegis cold-start bench"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- kernel: $(uname -sr), nproc: $(nproc)"
if [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]; then cg=v2; else cg=v1; fi
echo "- cgroup: $cg"
echo "- runs: $RUNS per subject after $WARMUPS warmups (wall time, spawn to reap)"
echo

# --- subjects ---------------------------------------------------------------
names=()
declare -A med p10 p90
subject() { # name, command...
	local n=$1 out; shift
	echo "running: $n" >&2
	out=$("$TMP/timeit" "$RUNS" "$WARMUPS" "$@") || die "subject '$n' failed"
	names+=("$n")
	read -r "med[$n]" "p10[$n]" "p90[$n]" <<<"$out"
}
[[ $SKIP_AEGIS == 1 ]] || subject "aegis run" "$AEGIS_BIN" run -- /bin/true
subject "bwrap" bwrap --unshare-all --die-with-parent --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp /bin/true
subject "unshare" unshare --fork --pid --mount --net --ipc --uts --mount-proc /bin/true
subject "runc run" runc run --bundle "$BUNDLE" "$CID"
subject "bare clone+exec" "$TMP/bare_clone"
subject "/bin/true" /bin/true

# --- report -----------------------------------------------------------------
A=${med[aegis run]:-}
ratio() { [[ -n $A ]] && awk -v m="$1" -v a="$A" 'BEGIN { printf "%.2f×", m / a }' || echo "n/a"; }

echo "| subject | median µs | p10 µs | p90 µs | ratio to aegis |"
echo "|---|---:|---:|---:|---:|"
for n in "${names[@]}"; do
	echo "| $n | ${med[$n]} | ${p10[$n]} | ${p90[$n]} | $(ratio "${med[$n]}") |"
done
echo

target() { # label, factor, reference name
	local ref=${med[$3]}
	if [[ -z $A ]]; then echo "- $1: SKIPPED (aegis not run)"; return; fi
	local r=MISS
	awk -v a="$A" -v f="$2" -v b="$ref" 'BEGIN { exit !(a <= f * b) }' && r=PASS
	echo "- $1: aegis $A µs vs $2 × $ref µs → **$r**"
}
target "(a) aegis median ≤ 0.5 × bwrap median" 0.5 "bwrap"
target "(b) aegis median ≤ 2 × bare clone median" 2 "bare clone+exec"
