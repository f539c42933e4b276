#!/bin/sh
# bench/api/run.sh - API benchmarks on one local nats-server (file storage):
#  1. raw JetStream publish rate (bench_api_jspub: async window and sync),
#  2. POST /v1/runs with wrk (keep-alive, 2 threads, $CONNS connections),
#  3. SSE fan-out: 10,000 watchers across 1,000 runs (sse_fanout.mjs).
# usage: bench/api/run.sh [build dir]   (default: build)
# env: DURATION (wrk seconds, 15), CONNS (64), WATCHERS (10000), RUNS (1000),
#      RATE (SSE appends/s, 1000 = 10,000 deliveries/s), ONLY (post | sse),
#      RS_API_EVENT_LIB (libev | poll) is passed to rs-api; SSE_NO_TERMINAL=1
#      makes the last event non-terminal (no stream closes: isolates their cost).
set -eu
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
DURATION=${DURATION:-15}
CONNS=${CONNS:-64}
WATCHERS=${WATCHERS:-10000}
RUNS=${RUNS:-1000}
RATE=${RATE:-1000}
ONLY=${ONLY:-all}
TMP=$(mktemp -d /tmp/rs-bench-api.XXXXXX)
NPORT=$((20000 + $$ % 10000))
APORT=$((NPORT + 1))
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

nats-server -a 127.0.0.1 -p "$NPORT" -js -sd "$TMP/js" >"$TMP/nats.log" 2>&1 &
PIDS="$PIDS $!"
export RS_NATS_URL="nats://127.0.0.1:$NPORT"
i=0; until "$BUILD/runctl/runctl" streams apply >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.1; done
KEY=$("$BUILD/runctl/runctl" keys create --tenant bench | tail -1)

# One key opens every watcher: the per-key/tenant limits are off here.
RS_API_PORT=$APORT RS_LOG_LEVEL=warn RS_PG_URL=postgresql://127.0.0.1:1/none \
	RS_API_MAX_WATCHERS_PER_KEY=0 RS_API_MAX_WATCHERS_PER_TENANT=0 RS_API_MAX_WAITS_PER_KEY=0 RS_API_MAX_WAITS_PER_TENANT=0 \
	"$BUILD/services/api/rs-api" >"$TMP/api.log" 2>&1 &
API_PID=$!
PIDS="$API_PID $PIDS"
i=0; until curl -sf "http://127.0.0.1:$APORT/readyz" >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || { cat "$TMP/api.log"; exit 1; }; sleep 0.1; done
curl -sf -H "Authorization: Bearer $KEY" -d '{"name":"bench","steps":[{"id":"s1","kind":"transform","value":{"x":1}}]}' \
	"http://127.0.0.1:$APORT/v1/agents" >/dev/null

if [ "$ONLY" != sse ]; then
	echo "== raw JetStream publish (same server, run.start-sized messages with Nats-Msg-Id)"
	"$BUILD/bench/api/bench_api_jspub" "$RS_NATS_URL" 200000 async
	"$BUILD/bench/api/bench_api_jspub" "$RS_NATS_URL" 20000 sync
	echo "== POST /v1/runs: wrk -t2 -c$CONNS -d${DURATION}s (keep-alive); each = 2 durable JetStream publishes"
	RS_BENCH_KEY=$KEY wrk -t2 -c"$CONNS" -d2s -s "$SRC/bench/api/post.lua" "http://127.0.0.1:$APORT/v1/runs" >/dev/null
	RS_BENCH_KEY=$KEY wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$SRC/bench/api/post.lua" \
		"http://127.0.0.1:$APORT/v1/runs"
	curl -s "http://127.0.0.1:$APORT/metrics" | grep -E '^rs_api_requests_total|^rs_api_runs_created_total|^rs_api_request_seconds'
fi
if [ "$ONLY" != post ]; then
	echo "== SSE fan-out: $WATCHERS watchers across $RUNS runs, 5 events per run at $RATE appends/s"
	node --expose-gc "$SRC/bench/api/sse_fanout.mjs" \
		"http://127.0.0.1:$APORT" "$KEY" "$RS_NATS_URL" "$API_PID" "$WATCHERS" "$RUNS" 5 "$RATE"
fi
# graceful stop: rs-api must exit 0 on SIGTERM
kill -TERM "$API_PID"; wait "$API_PID" && echo "rs-api: clean exit on SIGTERM"
