#!/usr/bin/env bash
# tests/run-tests.sh — runs every suite against the programs in BUILD and ends with one line,
# "N passed, M failed", counting every test of every suite.
#   tests/run-tests.sh BUILD               unit tests (cmocka) and integration tests (pytest)
#   tests/run-tests.sh --unit-only BUILD   unit tests only
#   tests/run-tests.sh --valgrind BUILD    unit tests under valgrind (any error fails the test)
set -uo pipefail

mode=all
case ${1:-} in --unit-only) mode=unit; shift ;; --valgrind) mode=valgrind; shift ;; esac
build=$(cd "${1:?usage: run-tests.sh [--unit-only|--valgrind] BUILD}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
passed=0
failed=0

run_unit() {
	local t out rc p f
	for t in "$build"/tests/test_*; do
		[ -x "$t" ] || continue
		if [ "$mode" = valgrind ]; then
			out=$(valgrind -q --error-exitcode=99 --leak-check=full \
				--errors-for-leak-kinds=definite "$t" 2>&1)
		else
			out=$("$t" 2>&1)
		fi
		rc=$?
		printf '%s\n' "$out"
		p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
		f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
		passed=$((passed + ${p:-0}))
		failed=$((failed + ${f:-0}))
		if [ "$rc" -ne 0 ] && [ -z "$f" ]; then
			echo "FAILED: $(basename "$t") exited $rc" >&2
			failed=$((failed + 1))
		fi
	done
}

# The store's unit tests again, against a real redis-server on a unix socket of its own
# (store_fixture.h): both backends pass the same tests.
run_unit_redis() {
	local dir sock pid t out rc p f
	command -v redis-server >/dev/null || { echo "FAILED: redis-server is not installed" >&2; failed=$((failed + 1)); return; }
	dir=$(mktemp -d /tmp/otp-unit-redis-XXXXXX)
	sock=$dir/redis.sock
	redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --save '' \
		--appendonly no --dir "$dir" --logfile "$dir/redis.log" &
	pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	for t in "$build"/tests/test_store "$build"/tests/test_store_claim "$build"/tests/test_store_pool \
		"$build"/tests/test_policy; do
		[ -x "$t" ] || continue
		echo "== $(basename "$t") against Redis"
		if [ "$mode" = valgrind ]; then
			out=$(OTP_TEST_REDIS=redis+unix://$sock valgrind -q --error-exitcode=99 \
				--leak-check=full --errors-for-leak-kinds=definite "$t" 2>&1)
		else
			out=$(OTP_TEST_REDIS=redis+unix://$sock "$t" 2>&1)
		fi
		rc=$?
		printf '%s\n' "$out"
		p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
		f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
		passed=$((passed + ${p:-0}))
		failed=$((failed + ${f:-0}))
		if [ "$rc" -ne 0 ] && [ -z "$f" ]; then
			echo "FAILED: $(basename "$t") against Redis exited $rc" >&2
			failed=$((failed + 1))
		fi
	done
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rm -rf "$dir"
}

# run_integration [redis]: the integration suite; with "redis", every gateway of the black-box
# tests uses a Redis store (OTP_TEST_STORE, conftest.py), and the tests that start Redis servers
# of their own (test_redis.py, test_redis_replies.py, test_clocks.py) are not run twice.
run_integration() {
	local xml="$build/integration-results${1:+-$1}.xml" counts t
	local -a args=("$root/tests/integration")
	[ "${1:-}" = redis ] && for t in test_redis test_redis_replies test_clocks; do
		args+=(--ignore "$root/tests/integration/$t.py")
	done
	OTP_TEST_STORE=${1:-sqlite} OTP_BUILD_DIR=$build /usr/bin/python3 -m pytest \
		-p no:cacheprovider -q -rfE --junitxml="$xml" "${args[@]}"
	counts=$(/usr/bin/python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 1"); sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skip = sum(int(s.get("skipped", 0)) for s in suites)
print(t - bad - skip, bad if t > 0 else 1)
PY
)
	passed=$((passed + ${counts% *}))
	failed=$((failed + ${counts#* }))
}

run_unit
run_unit_redis
[ "$mode" = all ] && run_integration
[ "$mode" = all ] && run_integration redis
echo
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
