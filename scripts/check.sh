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
# The suites of `aegis run` and of instances once more with the vm backend
# (TCG here: a test mode). conftest sets AEGIS_BACKEND=vm for every aegis
# and aegisd they start, and sandboxed() adds --backend vm. Left out: the
# vm's own suites (test_vm*, run above), and those with no backend in them
# (image pulls, the relay's host side). The guest is built from the
# normal build's static programs.
echo "== integration tests, vm backend ($build)"
scripts/vm-guest.sh "$build" || status=1
AEGIS_BIN="$build/aegis" AEGIS_PROBE="$build/tests/probe/aegis-probe" AEGIS_TEST_BACKEND=vm \
	AEGIS_VM_ACCEL="${AEGIS_VM_ACCEL:-tcg}" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
	tests/integration/test_run.py tests/integration/test_hostile.py tests/integration/test_policy.py \
	tests/integration/test_policy_enforce.py tests/integration/test_limits.py \
	tests/integration/test_artifacts.py tests/integration/test_audit.py \
	tests/integration/test_secrets.py tests/integration/test_network.py \
	tests/integration/test_daemon.py tests/integration/test_workspaces.py tests/integration/test_api_abuse.py \
	tests/integration/test_rootless.py tests/integration/test_image_run.py \
	tests/integration/test_instances.py tests/integration/test_logs.py tests/integration/test_exec.py \
	tests/integration/test_expose.py tests/integration/test_recovery.py \
	tests/integration/test_secrets_daemon.py tests/integration/test_mcp.py || status=1
exit $status
