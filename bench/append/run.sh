#!/bin/sh
# bench/append/run.sh - what one decision's K events cost to append
# (issue 22): bench-appendk against one nats-server and then a 3-node
# cluster (R3), both on free loopback ports, started and stopped by pid by
# tests/lib/stack.mjs. Prints a Markdown table (see docs/benchmarks.md,
# "Fewer hops per run").
#
# Usage: bench/append/run.sh [BUILD_DIR] [--quick] [--rounds=N] [--fixture=FILE] [--only=single|cluster] [--floor-runs=N]
# Environment: ROUNDS (300; QUICK=1: 100), FIXTURE (tests/fixtures/completed.ndjson),
# ONLY (both), APPENDK_KMIN (2), APPENDK_KMAX (6), FLOOR_RUNS (5000; QUICK=1: 1000):
# the raw async publish of a run's appends, 21 messages against 7 batches.
# Not a test.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$src/build
case ${1:-} in
'' | --*) ;;
*) build=$1; shift ;;
esac
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
ninja -C "$build" runctl/runctl bench/append/bench-appendk bench/e2e/bench-e2e-floor >/dev/null
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-append.XXXXXX")
trap '[ "${RS_KEEP_TMP:-0}" = 1 ] || rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
cd "$src/tests"
rc=0
TMPDIR=$tmp RS_BUILD_DIR=$build RS_SRC_DIR=$src NODE_PATH=$src/tests/node_modules \
	node "$here/run.mjs" "$@" || rc=$?
exit $rc
