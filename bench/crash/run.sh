#!/usr/bin/env bash
# bench/crash/run.sh - the crash test of tests/integration/crash.test.mjs,
# longer: ITER iterations of RUNS runs in flight while the orchestrator is
# killed with SIGKILL KILLS times (once with two instances running), each
# with its own seed. Prints, per iteration and in total: runs, kills, events,
# runs damaged (the test fails on the first), seconds.
#
#   bench/crash/run.sh [BUILD_DIR]        ITER=10 RUNS=300 KILLS=20 by default
#
# Not a test: minutes long. docs/benchmarks.md has its figures.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
ITER="${ITER:-10}" RUNS="${RUNS:-300}" KILLS="${KILLS:-20}"
cd "$ROOT/tests"
export RS_BUILD_DIR="$BUILD" RS_SRC_DIR="$ROOT" NODE_PATH="$ROOT/tests/node_modules"
total_runs=0 total_kills=0 total_events=0 failed=0 t0=$(date +%s)
for i in $(seq 1 "$ITER"); do
	seed=$((RANDOM * 32768 + RANDOM))
	s=$(date +%s)
	out=$(RS_CRASH_RUNS=$RUNS RS_CRASH_KILLS=$KILLS RS_CRASH_SEED=$seed \
		node --test --test-force-exit --test-reporter=spec integration/crash.test.mjs 2>&1) && ok=1 || ok=0
	line=$(grep -E '^# [0-9]+ runs, ' <<<"$out" | tail -1 || true)
	events=$(sed -nE 's/^# [0-9]+ runs, [0-9]+ kills, ([0-9]+) events.*/\1/p' <<<"$line")
	printf 'iteration %d seed %d: %s %s (%ds)\n' "$i" "$seed" "$([ $ok = 1 ] && echo ok || echo FAILED)" \
		"${line#\# }" "$(( $(date +%s) - s ))"
	if [ "$ok" = 1 ]; then
		total_runs=$((total_runs + RUNS)); total_kills=$((total_kills + KILLS))
		total_events=$((total_events + ${events:-0}))
	else
		failed=$((failed + 1))
		grep -E 'Error|run [0-9a-f-]+:' <<<"$out" | head -20
	fi
done
printf 'crash bench: %d iterations, %d failed; %d runs completed exactly once through %d kills (%d events) in %ds\n' \
	"$ITER" "$failed" "$total_runs" "$total_kills" "$total_events" "$(( $(date +%s) - t0 ))"
[ "$failed" = 0 ]
