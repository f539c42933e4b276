#!/bin/sh
# bench/e2e/run.sh - the whole stack, start -> result, the way a user sees
# it (issue 22): nats-server (a user per service), Postgres, rs-orchestrator,
# rs-projector, rs-executor, rs-api, rs-tool-router and one Node device
# offering `inc`, all on free loopback ports; closed-loop clients start
# 3-step runs with `Prefer: wait=30` at C=1 and C=64 and check every answer;
# latency, runs/s, CPU per run of every process tree, host busy %, the raw
# floor of the same path on the same server, and a cold start. Prints a
# Markdown table and writes JSON (bench/e2e/last.json). Everything it
# starts is stopped by pid at exit (tests/lib/stack.mjs).
#
# Usage: bench/e2e/run.sh [BUILD_DIR] [--quick] [--cluster] [--n1=N] [--n64=N] [--warmup=N]
#                         [--cold-s=S] [--c-high=C] [--floor-runs=N] [--pg-sample-ms=MS] [--out=FILE]
# The same settings as environment variables: QUICK=1, CLUSTER=1, N1 (300), N64 (3000),
# WARMUP (200), COLD_S (60), C_HIGH (64), FLOOR_RUNS (10000), PG_SAMPLE_MS (20;
# 0 = no sampling of Postgres backends), OUT (bench/e2e/last.json; last-cluster.json).
# --cluster: a 3-node JetStream cluster on loopback, every stream and bucket
# R3, the services given all three URLs; the floor is measured on it too.
# QUICK=1: N1=30, N64=300, WARMUP=20, COLD_S=2, FLOOR_RUNS=1000 (< 1 minute).
# Not a test: it fails (exit 1) only when the stack cannot be brought up or
# the first run is wrong; errors under load are counted and reported.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$src/build
case ${1:-} in
'' | --*) ;;
*) build=$1; shift ;;
esac
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
ninja -C "$build" services/orchestrator/rs-orchestrator services/projector/rs-projector \
	services/executor/rs-executor services/api/rs-api services/tool-router/rs-tool-router \
	runctl/runctl bench/e2e/bench-e2e-floor >/dev/null
# C=64 keep-alive connections, the services' sockets, Postgres backends.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true
# The stores, clusters and logs go to a directory of our own (TMPDIR, which
# tests/lib/stack.mjs follows), not straight into /tmp: on a shared machine
# a clean-up of /tmp/rs-* by someone else once deleted the JetStream store
# and the Postgres cluster under a running benchmark. Traversable (0711):
# Postgres runs as the `postgres` user in a directory below it.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-e2e.XXXXXX")
chmod 0711 "$tmp"
trap '[ "${RS_KEEP_TMP:-0}" = 1 ] || rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
cd "$src/tests"
rc=0
TMPDIR=$tmp RS_BUILD_DIR=$build RS_SRC_DIR=$src NODE_PATH=$src/tests/node_modules \
	node "$here/bench.mjs" "$@" || rc=$?
exit $rc
