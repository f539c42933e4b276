#!/usr/bin/env bash
# demo.sh - the end-to-end demonstration run by `./run demo` once the stack is
# up: push an agent that calls a device tool, sleeps on a durable timer and
# branches; start a run over HTTP; print its events live from SSE; show the
# read model; replay it with runctl. Leaves the stack running.
#
# Safe under `set -o pipefail`: no pipe ends in a reader that may stop early
# (head, grep -q, ...), which would kill the writer with SIGPIPE and fail the
# pipeline (a `python3 -m json.tool | head -40` once made `./run demo` exit 32).
# Output to be shortened is written to a file under .run/ and then shown;
# the only pipe left (SSE into sse_pretty.py) reads its input to the end.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .run/env
B="build"
step() { printf '\n\033[1;36m### %s\033[0m\n' "$*"; }
auth=(-H "Authorization: Bearer $RS_API_KEY")

step "1. The stack (./run status)"
./run status || true

step "2. Push an agent definition (POST /v1/agents)"
cat >.run/demo-agent.json <<'EOF'
{
  "name": "demo-greeter",
  "description": "Greets through a device tool, waits on a durable timer, then branches.",
  "timeout_s": 120,
  "steps": [
    {"id": "greet", "kind": "tool", "tool": "echo", "capability": true,
     "args": {"message": "Hello, {{input.name}}!"}, "timeout_s": 10,
     "retry": {"max_attempts": 3, "initial_backoff_ms": 200, "max_backoff_ms": 2000, "multiplier": 2}},
    {"id": "pause", "kind": "sleep", "duration_ms": 1500},
    {"id": "route", "kind": "branch",
     "when": [{"if": {"path": "input.vip", "equals": true}, "goto": "vip"}], "else": "regular"},
    {"id": "vip", "kind": "transform", "value": {"greeting": "{{steps.greet.output.message}}", "tier": "vip"}, "next": "end"},
    {"id": "regular", "kind": "transform", "value": {"greeting": "{{steps.greet.output.message}}", "tier": "regular"}}
  ]
}
EOF
cat .run/demo-agent.json
curl -sS "${auth[@]}" -H 'Content-Type: application/json' --data-binary @.run/demo-agent.json \
	"$RS_API_URL/v1/agents"
echo

step "3. Start a run (POST /v1/runs, with an Idempotency-Key)"
key="demo-$(date +%s)"
resp="$(curl -sS "${auth[@]}" -H 'Content-Type: application/json' -H "Idempotency-Key: $key" \
	--data '{"agent":"demo-greeter","input":{"name":"Ada","vip":true}}' "$RS_API_URL/v1/runs")"
echo "$resp"
run_id="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["run_id"])' "$resp")"
again="$(curl -sS "${auth[@]}" -H 'Content-Type: application/json' -H "Idempotency-Key: $key" \
	--data '{"agent":"demo-greeter","input":{"name":"Ada","vip":true}}' "$RS_API_URL/v1/runs")"
echo "same request again -> $again  (same run_id: no second run)"

step "4. Watch it live (GET /v1/runs/$run_id/stream, Server-Sent Events)"
# The example device (build/device/rs-device-example) answers the echo call.
# sse_pretty.py reads to EOF (the API closes the stream after the terminal
# event), so curl is never cut off; --max-time bounds a run that hangs.
curl -sS -N --max-time 180 "${auth[@]}" "$RS_API_URL/v1/runs/$run_id/stream" \
	| python3 -u tools/sse_pretty.py

step "5. The run as the read model shows it (GET /v1/runs/$run_id)"
# To a file first, then the first 40 lines of it: `| head -40` would
# SIGPIPE json.tool on a long answer (exit 120/141 under pipefail).
curl -sS -o .run/demo-run.json "${auth[@]}" "$RS_API_URL/v1/runs/$run_id"
python3 -m json.tool .run/demo-run.json >.run/demo-run.pretty.json
head -n 40 .run/demo-run.pretty.json
lines=$(wc -l <.run/demo-run.pretty.json)
if [ "$lines" -gt 40 ]; then
	echo "  ... ($lines lines in all: .run/demo-run.pretty.json)"
fi

step "6. Replay it from the log (runctl replay $run_id), then re-check it against this build's state machine"
"$B/runctl/runctl" replay "$run_id" || true
"$B/runctl/runctl" replay "$run_id" --check || true

step "7. Tenant secrets: stored sealed, named by agents, never readable back (PUT/GET /v1/secrets)"
curl -sS "${auth[@]}" -X PUT -H 'Content-Type: application/json' \
	--data '{"value":"demo-webhook-signing-key"}' "$RS_API_URL/v1/secrets/DEMO_HOOK_KEY"
echo
curl -sS "${auth[@]}" "$RS_API_URL/v1/secrets"
echo
echo '(an http step signs with it: "hmac": {"secret": "DEMO_HOOK_KEY"}; a header may say'
echo ' "Authorization": "Bearer {{secrets.DEMO_HOOK_KEY}}"; events record the name, never the value)'

step "Done. The stack is still running."
cat <<EOF
  source .run/env                          # settings, API key, device token
  curl -N -H "Authorization: Bearer \$RS_API_KEY" \$RS_API_URL/v1/runs/<run_id>/stream
  build/runctl/runctl runs start demo-greeter --input '{"name":"Grace"}' --watch
  build/runctl/runctl tail --tenant $RS_TENANT    # follow every event live
  build/runctl/runctl secrets set --tenant $RS_TENANT OPENAI_KEY   # value from stdin
  build/runctl/runctl replay <run_id> --check      # re-check a run against today's code
  ./run status                                      # what is running
  ./run down                                        # stop everything
EOF

# The viewer (docs/viewer.md), served by rs-api: the demo run open.
step "The run viewer: open it in a browser (sign in with RS_API_KEY from .run/env)"
echo "  $RS_API_URL/ui/#/runs/$run_id"
