#!/usr/bin/env bash
# tests/run-tests.sh — runs every suite against the programs in BUILD and ends with one line,
# "N passed, M failed", counting every test of every suite; the line before it gives each
# suite's wall time.
#   tests/run-tests.sh BUILD               unit tests (cmocka) and integration tests (pytest)
#   tests/run-tests.sh --unit-only BUILD   unit tests only
#   tests/run-tests.sh --valgrind BUILD    unit tests under valgrind (any error fails the test)
# The suites are independent and spend most of their time waiting (on the emulator's latency,
# on deletions due seconds later), so they run side by side: the unit tests beside the
# integration suite's SQLite pass and its Redis pass, each pass spread over OTP_TEST_WORKERS
# pytest-xdist workers (every test starts a stack of its own, on free ports, in a directory of
# its own). The tests marked `serial` (conftest.py) cannot share the machine: they run last,
# alone, one at a time. Each suite's output is shown whole when it ends.
set -uo pipefail

mode=all
case ${1:-} in --unit-only) mode=unit; shift ;; --valgrind) mode=valgrind; shift ;; esac
build=$(cd "${1:?usage: run-tests.sh [--unit-only|--valgrind] BUILD}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
workers=${OTP_TEST_WORKERS:-4}
results=$(mktemp -d /tmp/otp-run-tests-XXXXXX)
trap 'rm -rf "$results"' EXIT

# count OUT RC NAME: adds a cmocka binary's counts (from its output OUT and exit status RC) to
# passed and failed; a binary that fails without saying how many tests failed counts as one.
count() {
	local p f
	p=$(printf '%s\n' "$1" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	f=$(printf '%s\n' "$1" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	if [ "$2" -ne 0 ] && [ -z "$f" ]; then
		echo "FAILED: $3 exited $2" >&2
		failed=$((failed + 1))
	fi
}

# run_binary NAME BINARY [ENV=VALUE...]: one cmocka binary, under valgrind in that mode
run_binary() {
	local name=$1 t=$2 out rc
	shift 2
	if [ "$mode" = valgrind ]; then
		out=$(env "$@" valgrind -q --error-exitcode=99 --leak-check=full \
			--errors-for-leak-kinds=definite "$t" 2>&1)
	else
		out=$(env "$@" "$t" 2>&1)
	fi
	rc=$?
	printf '%s\n' "$out"
	count "$out" "$rc" "$name"
}

run_unit() {
	local t
	for t in "$build"/tests/test_*; do
		[ -x "$t" ] || continue
		run_binary "$(basename "$t")" "$t"
	done
}

# The unit tests built on store_fixture.h (they run against whichever store it opens) again,
# against a real redis-server on a unix socket of its own: both backends pass the same tests.
run_unit_redis() {
	local dir sock pid src t
	command -v redis-server >/dev/null || { echo "FAILED: redis-server is not installed" >&2; failed=$((failed + 1)); return; }
	dir=$(mktemp -d /tmp/otp-unit-redis-XXXXXX)
	sock=$dir/redis.sock
	redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --save '' \
		--appendonly no --dir "$dir" --logfile "$dir/redis.log" &
	pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	for src in $(grep -l '^#include "store_fixture.h"' "$root"/tests/unit/test_*.c); do
		t=$build/tests/$(basename "$src" .c)
		[ -x "$t" ] || continue
		echo "== $(basename "$t") against Redis"
		run_binary "$(basename "$t") against Redis" "$t" "OTP_TEST_REDIS=redis+unix://$sock"
	done
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rm -rf "$dir"
}

# run_integration STORE [serial]: the integration suite with every gateway on STORE
# (OTP_TEST_STORE, conftest.py: the Redis pass runs only the tests whose gateways it changes);
# the tests marked serial alone, one at a time, or the others over the workers.
run_integration() {
	local xml="$build/integration-results-$1${2:+-$2}.xml" counts
	local -a args=(-m "not serial" -n "$workers")
	[ "${2:-}" = serial ] && args=(-m serial -p no:xdist)
	OTP_TEST_STORE=$1 OTP_BUILD_DIR=$build /usr/bin/python3 -m pytest \
		-p no:cacheprovider -q -rfE --junitxml="$xml" "${args[@]}" "$root/tests/integration"
	# a pass that ran no test failed, unless it is the serial one (which may have none)
	counts=$(/usr/bin/python3 - "$xml" "${2:-}" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 1"); sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skip = sum(int(s.get("skipped", 0)) for s in suites)
print(t - bad - skip, bad if t > 0 or sys.argv[2] == "serial" else 1)
PY
)
	passed=$((passed + ${counts% *}))
	failed=$((failed + ${counts#* }))
}

# start NAME FUNCTION [ARGS...]: runs a suite in the background, its output, counts and wall
# time into $results/NAME.*
started=()
start() {
	local name=$1
	shift
	(
		passed=0 failed=0 t0=$(date +%s)
		"$@" >"$results/$name.log" 2>&1
		echo "$passed $failed $(($(date +%s) - t0))" >"$results/$name.counts"
	) &
	started+=("$name:$!")
}

# finish: waits for the started suites in order, shows their output, adds up their counts
passed=0
failed=0
times=()
finish() {
	local s name p f secs
	for s in "${started[@]}"; do
		name=${s%%:*}
		wait "${s#*:}"
		echo "== $name"
		cat "$results/$name.log"
		if read -r p f secs <"$results/$name.counts" 2>/dev/null; then
			passed=$((passed + p))
			failed=$((failed + f))
			times+=("$name $((secs / 60))m$((secs % 60))s")
		else
			echo "FAILED: the $name suite ended without its counts" >&2
			failed=$((failed + 1))
		fi
	done
	started=()
}

t0=$(date +%s)
start unit run_unit
start unit-redis run_unit_redis
if [ "$mode" = all ]; then
	start integration-sqlite run_integration sqlite
	start integration-redis run_integration redis
fi
finish
if [ "$mode" = all ]; then
	start serial-sqlite run_integration sqlite serial
	finish
	start serial-redis run_integration redis serial
	finish
fi
echo
secs=$(($(date +%s) - t0))
echo "wall time: $(IFS=,; echo "${times[*]}" | sed 's/,/, /g'); in all $((secs / 60))m$((secs % 60))s"
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
