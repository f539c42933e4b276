#!/bin/sh
# bench/projector/lag.sh - projector lag while the orchestrator benchmark's
# load runs (lag.mjs: nats + Postgres + rs-orchestrator + rs-projector,
# bench-orchestrator injects runs). Usage: bench/projector/lag.sh [build dir]
# Env: RUNS_N (default 20000 runs, ~9 events each).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-${RS_BUILD_DIR:-$src/build}}
case $build in /*) ;; *) build=$src/$build ;; esac
ninja -C "$build" services/projector/rs-projector services/orchestrator/rs-orchestrator \
	bench/orchestrator/bench-orchestrator runctl/runctl >/dev/null
cd "$src/tests"
RS_BUILD_DIR=$build RS_SRC_DIR=$src exec node "$here/lag.mjs"
