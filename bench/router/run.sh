#!/bin/sh
# bench/router/run.sh - tool-router benchmark: tool-call round trip
# (TOOLCALLS -> router -> C example device -> tool.result on CMDS) at
# concurrency 1 and 64 beside a core NATS request-reply on the same server,
# then 10,000 idle devices and the router's resident memory per device.
# Usage: bench/router/run.sh [build-dir]   (default: build)
# Env: BENCH_CALLS (2000), BENCH_IDLE (10000). Prints a Markdown report.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
# 10k sockets on each side of the router, plus NATS.
ulimit -n 65536 2>/dev/null || ulimit -n 32768 2>/dev/null || true
cd "$src/tests"
RS_BUILD_DIR="$build" RS_SRC_DIR="$src" NODE_PATH="$src/tests/node_modules" \
  exec node "$here/driver.mjs"
