#!/bin/sh
# run.sh - orchestrator benchmark: one private nats-server (free port,
# temp store), streams applied with runctl, one rs-orchestrator, then
# bench-orchestrator raw / runs alternately ROUNDS times (default 3) on the
# same server, one watched runs pass and the timers pass; prints a table.
# This machine's speed drifts by a quarter from minute to minute (shared
# cores): each round's ratio pairs a raw figure with the runs figure taken
# right after it, and the median of the rounds is the figure reported.
# PIN=1 puts nats-server on CPU 0 and everything else on CPU 1 (taskset):
# the server then has one core to itself, as it would in production.
#   bench/orchestrator/run.sh [build-dir] [runs N] [timers N]
# Processes it starts are stopped by pid on exit.
set -eu
BUILD=${1:-build}
RUNS=${2:-20000}
TIMERS=${3:-10000}
RAW=${RAW:-200000}
ROUNDS=${ROUNDS:-3}
BENCH_BIN=$BUILD/bench/orchestrator/bench-orchestrator
ORCH_BIN=$BUILD/services/orchestrator/rs-orchestrator
RUNCTL=$BUILD/runctl/runctl
DIR=$(mktemp -d /tmp/rs-bench-orch.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
OPS=$(free_port)
NATS_PID=; ORCH_PID=
cleanup() {
	[ -n "$ORCH_PID" ] && kill "$ORCH_PID" 2>/dev/null || true
	[ -n "$NATS_PID" ] && kill "$NATS_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	[ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

export RS_NATS_URL=nats://127.0.0.1:$PORT
SRV_CPU=; CLI_CPU=
if [ -n "${PIN:-}" ]; then SRV_CPU="taskset -c 0"; CLI_CPU="taskset -c 1"; fi
$SRV_CPU nats-server -a 127.0.0.1 -p "$PORT" -js -sd "$DIR/js" > "$DIR/nats.log" 2>&1 &
NATS_PID=$!
for i in $(seq 50); do "$RUNCTL" streams apply > /dev/null 2>&1 && break; sleep 0.1; done

bench() { $CLI_CPU "$BENCH_BIN" "$@"; }
start_orch() {
	RS_ORCHESTRATOR_OPS_PORT=$OPS LD_PRELOAD=${ORCH_PRELOAD:-} RS_LOG_LEVEL=warn $CLI_CPU "$ORCH_BIN" 2> "$DIR/orch.log" &
	ORCH_PID=$!
	for i in $(seq 100); do curl -sf "http://127.0.0.1:$OPS/readyz" > /dev/null && return; sleep 0.05; done
	echo "orchestrator not ready"; cat "$DIR/orch.log"; exit 1
}
stop_orch() { kill "$ORCH_PID"; wait "$ORCH_PID" || true; ORCH_PID=; }

start_orch
for r in $(seq "$ROUNDS"); do
	bench raw "$RAW" > "$DIR/raw$r.txt"
	bench runs "$RUNS" > "$DIR/runs$r.txt"
done
curl -s "http://127.0.0.1:$OPS/metrics" > "$DIR/metrics-runs.txt"
BENCH_WATCH=live bench runs "$RUNS" | sed 's/^/watched_/' > "$DIR/runs-watched.txt"
bench timers "$TIMERS" > "$DIR/timers.txt"
curl -s "http://127.0.0.1:$OPS/metrics" > "$DIR/metrics-timers.txt"
stop_orch

v() { awk -v k="$1" '$1 == k { print $2 }' "$DIR"/*.txt | head -1; }
vr() { awk -v k="$1" '$1 == k { print $2 }' "$DIR/$2"; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }
printf '| round | raw js_PublishAsync, 250-byte msgs, msg/s | run.start injection, cmd/s | runs/s | events/s appended (counted on RUNS) | events/s vs raw | runs checked complete |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
: > "$DIR/ratios"
for r in $(seq "$ROUNDS"); do
	RAWRATE=$(vr raw_rate "raw$r.txt"); EVS=$(vr events_per_s "runs$r.txt")
	awk -v a="$EVS" -v b="$RAWRATE" 'BEGIN { printf "%.4f %s %s\n", a / b, a, b }' >> "$DIR/ratios"
	printf '| %s | %s | %s | %s | %s | %s | %s of %s |\n' "$r" "$RAWRATE" \
		"$(vr inject_rate "runs$r.txt")" "$(vr runs_per_s "runs$r.txt")" "$EVS" \
		"$(pct "$EVS" "$RAWRATE")" "$(vr runs_completed "runs$r.txt")" "$(vr runs "runs$r.txt")"
done
# The median round by ratio (the middle one of an odd number of rounds).
MED=$(sort -n "$DIR/ratios" | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }')
EVS=$(echo "$MED" | awk '{ print $2 }'); RAWRATE=$(echo "$MED" | awk '{ print $3 }')
printf '\n| metric | value |\n| --- | --- |\n'
printf '| median round: events/s vs raw publish | %s (%s vs %s) |\n' "$(pct "$EVS" "$RAWRATE")" "$EVS" "$RAWRATE"
WEVS=$(v watched_events_per_s)
printf '| same with one live watcher (ordered consumer on RUNS, as the api has): events/s, runs seen completed | %s (%s), %s of %s |\n' \
	"$WEVS" "$(pct "$WEVS" "$RAWRATE")" \
	"$(v watched_live_completed)" "$(v watched_runs)"
printf '| timers fired | %s of %s |\n' "$(v timers_fired)" "$(v timers)"
printf '| timer lateness p50 / p99 / max (timer.fired time - due_at) | %s / %s / %s ms |\n' \
	"$(v lateness_event_p50_ms)" "$(v lateness_event_p99_ms)" "$(v lateness_event_max_ms)"
printf '| timer lateness p50 / p99 / max (observed by a watcher) | %s / %s / %s ms |\n' \
	"$(v lateness_observed_p50_ms)" "$(v lateness_observed_p99_ms)" "$(v lateness_observed_max_ms)"
grep -E "^rs_orch_(conflicts_total|append_latency_seconds_(sum|count)) " "$DIR/metrics-runs.txt" | sed "s/^/# /"
grep -E "^rs_orch_timer_lag_seconds_(bucket|count|sum)" "$DIR/metrics-timers.txt" | sed "s/^/# /"
