#!/usr/bin/env bash
# check.sh BUILD ASAN_BUILD FUZZ_BUILD — run the unit and integration tests
# after a bounded run of each fuzz target, against the normal build and then
# the ASan+UBSan build. Any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

build=$1 asan=$2 fuzz=$3
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
status=0

for target in "$fuzz"/fuzz_*; do
	echo "== fuzz $(basename "$target")"
	"$target" -runs=500000 -max_total_time=60 2>&1 | tail -n 1 || status=1
done


for b in "$build" "$asan"; do
	echo "== unit tests ($b)"
	meson test -C "$b" --print-errorlogs || status=1
	echo "== integration tests ($b)"
	AEGIS_BIN="$b/aegis" AEGIS_PROBE="$build/tests/probe/aegis-probe" \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration || status=1
done
exit $status
