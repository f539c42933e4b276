#!/usr/bin/env bash
# demo.sh - the end-to-end demonstration run by `./run demo` once the stack is
# up: push an agent, start a run over HTTP, stream its events over SSE,
# replay it with runctl. Steps appear here as the services land.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. .run/env
step() { printf '\n\033[1;36m### %s\033[0m\n' "$*"; }

step "Stack"
./run status || true

step "Streams (JetStream)"
build/runctl/runctl streams apply

if [ ! -x build/services/api/rs-api ]; then
	echo "(the API service is not built yet: nothing more to show)"
	exit 0
fi
