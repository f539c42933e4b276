#!/bin/sh
# bench/llm/run.sh - watcher-visible latency of streamed model text: from a
# chunk leaving the (scripted) model server to the llm.delta carrying it
# reaching an SSE client of rs-api, with N concurrent streaming runs
# (bench.mjs); then keep-alive: KA_CALLS model calls in waves of KA_WAVE
# concurrent runs, and the TCP connections the model server accepted for
# them ("connections_per_100_calls"; 100 would mean no reuse).
# Usage: bench/llm/run.sh [build dir]
# Env: RUNS (100), CHUNKS per run (40), CHUNK_GAP_MS between chunks (30),
#      RS_EXECUTOR_CHUNK_MS (50), RS_EXECUTOR_WORKERS (128), KA_CALLS (100),
#      KA_WAVE (10).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-${RS_BUILD_DIR:-$src/build}}
case $build in /*) ;; *) build=$src/$build ;; esac
ninja -C "$build" services/executor/rs-executor services/orchestrator/rs-orchestrator \
	services/api/rs-api runctl/runctl >/dev/null
cd "$src/tests"
RS_BUILD_DIR=$build RS_SRC_DIR=$src NODE_PATH=$src/tests/node_modules exec node "$here/bench.mjs"
