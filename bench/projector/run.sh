#!/bin/sh
# bench/projector/run.sh - projector events/s beside raw COPY of the same rows
# into the same Postgres (bench.mjs). Usage: bench/projector/run.sh [build dir]
# Env: RUNS_N (default 20000 runs, ~10.5 events each), RS_PROJECTOR_BATCH.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-${RS_BUILD_DIR:-$src/build}}
case $build in /*) ;; *) build=$src/$build ;; esac
ninja -C "$build" services/projector/rs-projector runctl/runctl >/dev/null
cd "$src/tests"
RS_BUILD_DIR=$build RS_SRC_DIR=$src exec node "$here/bench.mjs"
