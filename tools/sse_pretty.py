#!/usr/bin/env python3
"""sse_pretty.py - print a Runstream SSE stream (stdin) one event per line:
runseq, event type, and the interesting fields of the CloudEvent's data."""
import json
import sys

KEYS = ("step_id", "attempt", "tool", "device_id", "purpose", "due_at", "output", "error")


def main():
    ev = {}
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line.startswith("id: "):
            ev["id"] = line[4:]
        elif line.startswith("event: "):
            ev["type"] = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:]).get("data", {})
            summary = ", ".join("%s=%s" % (k, json.dumps(data[k])) for k in KEYS if k in data)
            print("  #%3s  %-22s %s" % (ev.get("id", "?"), ev.get("type", "?"), summary), flush=True)
            ev = {}


if __name__ == "__main__":
    main()
