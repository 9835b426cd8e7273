#!/bin/sh
# tests/loaded.sh — `make test` RUNS times in a row (default 5) while LOAD processes (default 1,
# on top of whatever else runs) keep CPUs busy: shows the timing bounds hold on a loaded machine.
# Stops at the first failure. Not in CI: it takes RUNS times as long as `make test` and more.
set -u
runs=${RUNS:-5}
load=${LOAD:-1}
hogs=""
log_dir=${BUILD:-build}/test-output/loaded
mkdir -p "$log_dir"

stop_hogs() { [ -n "$hogs" ] && kill $hogs 2>/dev/null; }
trap stop_hogs EXIT INT TERM

i=0
while [ "$i" -lt "$load" ]; do
	sh -c 'while :; do :; done' &
	hogs="$hogs $!"
	i=$((i + 1))
done

n=1
while [ "$n" -le "$runs" ]; do
	start=$(date +%s)
	if make test > "$log_dir/run-$n.log" 2>&1; then rc=0; else rc=$?; fi
	took=$(( $(date +%s) - start ))
	summary=$(grep -E "[0-9]+ passed, [0-9]+ failed" "$log_dir/run-$n.log" | tail -n 1)
	echo "run $n/$runs ($load busy loops, $(cut -d' ' -f1-3 /proc/loadavg) load): ${summary:-no summary} in ${took} s"
	if [ "$rc" -ne 0 ]; then
		echo "run $n failed: see $log_dir/run-$n.log"
		exit 1
	fi
	n=$((n + 1))
done
echo "$runs runs in a row passed with $load busy loops"
