#!/usr/bin/env bash
# bench/policy.sh: what a realistic policy and the exec audit cost.
#   1. cold start `aegis run -- /bin/true` with and without bench/policy.json
#      (command allowlist and denylist, argv rule, file rules, limits; the
#      exec watch is always on) — target: the policy costs at most 20%.
#   2. a shell loop of 1000 execs of /bin/true inside the sandbox (every exec
#      goes through the exec watch) against the same loop on the host — the
#      difference per exec bounds what exec audit adds — target: < 100 µs.
# Env: AEGIS_BIN (default <repo>/build/aegis), BENCH_RUNS (default 200).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AEGIS_BIN=${AEGIS_BIN:-$ROOT/build/aegis}
RUNS=${BENCH_RUNS:-200}
TMP=$(mktemp -d /tmp/aegis-bench-policy.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

[[ -x $AEGIS_BIN ]] || { echo "bench: aegis binary not found at $AEGIS_BIN" >&2; exit 1; }
gcc -O2 -Wall -Wextra -Werror -o "$TMP/timeit" "$ROOT/bench/timeit.c"

median_of() { "$TMP/timeit" "$RUNS" 10 "$@" | awk '{print $1}'; }

plain=$(median_of "$AEGIS_BIN" run -- /bin/true)
policy=$(median_of "$AEGIS_BIN" run --policy "$ROOT/bench/policy.json" -- /bin/true)

LOOP='i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done'
loop_ms() {	# median wall time of 5 runs, in ms
	for _ in 1 2 3 4 5; do
		s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
		echo $(((e - s) / 1000))
	done | sort -n | sed -n 3p
}
inside=$(loop_ms "$AEGIS_BIN" run --execs 2000 -- sh -c "$LOOP")
outside=$(loop_ms sh -c "$LOOP")

echo "# Aegis policy and exec-audit bench"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), kernel $(uname -r), nproc $(nproc)"
echo
echo "| measurement | value |"
echo "|---|---:|"
echo "| aegis run -- /bin/true, median µs | $plain |"
echo "| same with bench/policy.json, median µs | $policy |"
echo "| policy overhead | $(awk -v a="$plain" -v b="$policy" 'BEGIN{printf "%+.1f%%", (b-a)*100/a}') |"
echo "| 1000 execs in the sandbox (exec watch on), µs | $inside |"
echo "| 1000 execs on the host, µs | $outside |"
echo "| added per exec, µs | $(( (inside - outside) / 1000 )) |"
echo
awk -v a="$plain" -v b="$policy" 'BEGIN{print "- policy overhead <= 20%: " ((b-a)*100/a <= 20 ? "PASS" : "MISS")}'
echo "- exec audit < 100 µs per exec: $([ $(( (inside - outside) / 1000 )) -lt 100 ] && echo PASS || echo MISS)"
