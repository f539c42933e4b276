#!/usr/bin/env python3
"""golden.py - runctl's golden-output and error-path tests.

    golden.py RUNCTL FIXTURES_DIR GOLDEN_DIR [--update]

Runs runctl on the recorded histories in tests/fixtures/ (and on servers
that are not there: the environment points NATS, Postgres and the API at
port 1) and checks the exit code, stdout byte for byte against
GOLDEN_DIR/<case>.out where a case has one, and stderr against a pattern.
stdout is a pipe and NO_COLOR is set, so the output has no colour.
--update rewrites the golden files (review the diff before committing).
"""
import os
import re
import subprocess
import sys
import tempfile

RUNCTL, FX, GOLDEN = (os.path.abspath(a) for a in sys.argv[1:4])
UPDATE = '--update' in sys.argv
RUN = '0190f5e4-7a3b-7c1d-8e2f-0000000000ff'


def fx(name):
    # Relative to FX (the cwd while cases run): output that names a file
    # is then the same wherever the tree is checked out.
    return name


TMP = tempfile.mkdtemp(prefix='runctl-golden-')


def tmp(name):
    return os.path.join(TMP, name)


# Derived inputs, made here so the fixtures stay as recorded.
os.chdir(FX)
with open(fx('completed.ndjson')) as f:
    lines = f.read().splitlines(True)
with open(tmp('no-header.ndjson'), 'w') as f:
    f.writelines(lines[1:])
with open(tmp('agent.json'), 'w') as f:
    import json
    f.write(json.dumps(json.loads(lines[0])['agent']))
with open(tmp('other-agent.json'), 'w') as f:
    f.write('{"name":"order-check","steps":[{"id":"a","kind":"sleep","duration_ms":1}]}')
with open(tmp('corrupt.ndjson'), 'w') as f:
    f.writelines(lines[:3] + ['{"specversion":"1.0","type":"runstream.run.started"}\n'])
with open(fx('llm-tools.ndjson')) as f:
    llm_lines = f.read().splitlines(True)
with open(tmp('llm-no-header.ndjson'), 'w') as f:
    f.writelines(llm_lines[1:])
with open(tmp('bad-agent.json'), 'w') as f:
    f.write('{"name":"x","steps":[{"id":"a","kind":"teleport"}]}')

# name, args, exit code, golden stdout?, stderr pattern
CASES = [
    # timelines of every recorded history
    ('timeline-completed', ['replay', '--file', fx('completed.ndjson')], 0, True, None),
    ('timeline-failed-retries', ['replay', '--file', fx('failed-retries.ndjson')], 0, True, None),
    ('timeline-forked', ['replay', '--file', fx('forked.ndjson')], 0, True, None),
    ('timeline-gated', ['replay', '--file', fx('gated.ndjson')], 0, True, None),
    ('timeline-scheduled', ['replay', '--file', fx('scheduled.ndjson')], 0, True, None),
    ('timeline-cancelled', ['replay', '--file', fx('cancelled.ndjson')], 0, True, None),
    ('timeline-timed-out', ['replay', '--file', fx('timed-out.ndjson')], 0, True, None),
    ('timeline-signal', ['replay', '--file', fx('signal.ndjson')], 0, True, None),
    ('timeline-json', ['replay', '--json', '--file', fx('failed-retries.ndjson')], 0, True, None),
    ('timeline-no-header', ['replay', '--file', tmp('no-header.ndjson')], 0, 'timeline-completed', None),
    ('timeline-llm-tools', ['replay', '--file', fx('llm-tools.ndjson')], 0, True, None),
    ('timeline-llm-json', ['replay', '--json', '--file', fx('llm-tools.ndjson')], 0, True, None),
    ('timeline-http-retry', ['replay', '--file', fx('http-retry.ndjson')], 0, True, None),
    ('timeline-http-effect-error', ['replay', '--file', fx('http-effect-error.ndjson')], 0, True, None),
    # state after an event
    ('at-completed-6', ['replay', '--file', fx('completed.ndjson'), '--at', '6'], 0, True, None),
    ('at-retries-9', ['replay', '--file', fx('failed-retries.ndjson'), '--at', '9'], 0, True, None),
    ('at-signal-json', ['replay', '--file', fx('signal.ndjson'), '--at', '4', '--json'], 0, True, None),
    ('at-llm-14', ['replay', '--file', fx('llm-tools.ndjson'), '--at', '14'], 0, True, None),
    ('at-llm-json-20', ['replay', '--file', fx('llm-tools.ndjson'), '--at', '20', '--json'], 0, True, None),
    ('at-http-retry-9', ['replay', '--file', fx('http-retry.ndjson'), '--at', '9'], 0, True, None),
    ('at-http-effect-error-8', ['replay', '--file', fx('http-effect-error.ndjson'), '--at', '8'], 0, True, None),
    ('at-past-end', ['replay', '--file', fx('signal.ndjson'), '--at', '999'], 3, False, r'past its end'),
    ('at-bad', ['replay', '--file', fx('signal.ndjson'), '--at', 'x'], 2, False, r'--at needs'),
    # --check against today's decide
    ('check-completed', ['replay', '--file', fx('completed.ndjson'), '--check'], 0, True, None),
    ('check-completed-hold', ['replay', '--file', fx('completed-hold.ndjson'), '--check'], 0, True, None),
    ('check-failed-retries', ['replay', '--file', fx('failed-retries.ndjson'), '--check'], 0, True, None),
    ('check-forked', ['replay', '--file', fx('forked.ndjson'), '--check'], 0, True, None),
    ('check-gated', ['replay', '--file', fx('gated.ndjson'), '--check'], 0, True, None),
    ('check-scheduled', ['replay', '--file', fx('scheduled.ndjson'), '--check'], 0, True, None),
    ('check-cancelled', ['replay', '--file', fx('cancelled.ndjson'), '--check'], 0, True, None),
    ('check-timed-out', ['replay', '--file', fx('timed-out.ndjson'), '--check'], 0, True, None),
    ('check-signal', ['replay', '--file', fx('signal.ndjson'), '--check'], 0, True, None),
    # children runs (issue 17): a parent with two branches, and a child
    # checked in its scope (run.created.scope) with the parent's definition
    ('timeline-parallel', ['replay', '--file', fx('parallel.ndjson')], 0, True, None),
    ('check-parallel', ['replay', '--file', fx('parallel.ndjson'), '--check'], 0, True, None),
    ('check-parallel-child', ['replay', '--file', fx('parallel-child.ndjson'), '--check'], 0, True, None),
    ('at-parallel-6', ['replay', '--file', fx('parallel.ndjson'), '--at', '6'], 0, True, None),
    ('check-llm-tools', ['replay', '--file', fx('llm-tools.ndjson'), '--check'], 0, True, None),
    ('check-http-retry', ['replay', '--file', fx('http-retry.ndjson'), '--check'], 0, True, None),
    ('check-http-effect-error', ['replay', '--file', fx('http-effect-error.ndjson'), '--check'], 0, True, None),
    ('check-llm-agent-file', ['replay', '--file', tmp('llm-no-header.ndjson'), '--check', '--agent-file',
                              fx('agents/weather-assistant.json')], 0, 'check-llm-tools', None),
    ('check-llm-diverged', ['replay', '--file', fx('llm-diverged.ndjson'), '--check'], 1, True, None),
    ('check-llm-diverged-json', ['replay', '--json', '--file', fx('llm-diverged.ndjson'), '--check'], 1, True, None),
    ('check-diverged', ['replay', '--file', fx('completed-diverged.ndjson'), '--check'], 1, True, None),
    ('check-diverged-json', ['replay', '--json', '--file', fx('completed-diverged.ndjson'), '--check'], 1, True, None),
    ('check-agent-file', ['replay', '--file', tmp('no-header.ndjson'), '--check', '--agent-file',
                          tmp('agent.json')], 0, 'check-completed', None),
    ('check-agent-wrong-version', ['replay', '--file', tmp('no-header.ndjson'), '--check',
                                   '--agent-file', tmp('other-agent.json')], 1, False, r'pinned to order-check@'),
    ('check-no-agent-offline', ['replay', '--file', tmp('no-header.ndjson'), '--check'], 4, False,
     r'cannot reach NATS'),
    ('check-and-at', ['replay', '--file', fx('signal.ndjson'), '--check', '--at', '2'], 2, False, r'do not go together'),
    # export -> replay round trip (from a file: the server path is in the integration test)
    ('export-roundtrip', ['export', '--file', fx('completed.ndjson')], 0, 'FILE:completed.ndjson', r'17 events'),
    # diff
    ('diff-paths', ['diff', fx('completed.ndjson'), fx('completed-hold.ndjson')], 1, True, None),
    ('diff-same', ['diff', fx('completed.ndjson'), fx('completed.ndjson')], 0, True, None),
    ('diff-json', ['diff', fx('completed.ndjson'), fx('failed-retries.ndjson'), '--json'], 1, True, None),
    ('diff-http', ['diff', fx('http-retry.ndjson'), fx('http-effect-error.ndjson')], 1, True, None),
    ('diff-one-arg', ['diff', RUN], 2, False, r'give two runs'),
    # error paths: files
    ('replay-missing-file', ['replay', '--file', tmp('nope.ndjson')], 3, False, r'cannot open .*nope'),
    ('replay-corrupt', ['replay', '--file', tmp('corrupt.ndjson')], 1, False,
     r'corrupt.ndjson:4: not a Runstream event'),
    # error paths: usage
    ('no-command', [], 2, False, r'usage: runctl'),
    ('unknown-command', ['frobnicate'], 2, False, r"unknown command 'frobnicate'"),
    ('replay-no-run', ['replay'], 2, False, r'give a run id'),
    ('replay-unknown-flag', ['replay', RUN, '--bogus'], 2, False, r"unknown option '--bogus'"),
    ('replay-flag-no-value', ['replay', '--file'], 2, False, r'needs a value'),
    ('replay-help', ['replay', '--help'], 0, False, None),
    ('agents-help', ['agents', 'push', '--help'], 0, False, None),
    ('agents-no-verb', ['agents'], 2, False, r'usage: runctl agents'),
    ('agents-push-no-tenant', ['agents', 'push', tmp('agent.json')], 2, False, r'--tenant'),
    ('agents-push-invalid', ['agents', 'push', tmp('bad-agent.json'), '--tenant', 'acme'], 1, False,
     r'not a valid agent: steps\[0\]\.kind'),
    ('agents-validate-ok', ['agents', 'validate', tmp('agent.json')], 0, False, None),
    ('agents-validate-invalid', ['agents', 'validate', tmp('bad-agent.json')], 2, False,
     r'is not a valid agent: steps\[0\]\.kind'),
    ('agents-validate-no-file', ['agents', 'validate', tmp('nope.json')], 3, False, r'cannot read'),
    ('version', ['--version'], 0, False, None),
    ('runs-ls-limit', ['runs', 'ls', '--limit', '101'], 2, False, r'between 1 and 100'),
    ('runs-ls-bad-after', ['runs', 'ls', '--after', 'a b'], 2, False, r'--after must be'),
    ('keys-revoke-bad-id', ['keys', 'revoke', 'xyz', '--tenant', 'acme'], 2, False, r'give a key id'),
    ('devices-revoke-no-device', ['devices', 'revoke', '--tenant', 'acme'], 2, False, r'usage'),
    ('agents-push-no-file', ['agents', 'push', tmp('nope.json'), '--tenant', 'acme'], 3, False, r'cannot read'),
    ('runs-start-bad-input', ['runs', 'start', 'demo', '--input', '{'], 2, False, r'--input must be a JSON object'),
    ('runs-show-bad-id', ['runs', 'show', 'not-a-run'], 2, False, r'give a run id'),
    ('runs-signal-no-name', ['runs', 'signal', RUN], 2, False, r'usage'),
    ('dlq-show-bad-seq', ['dlq', 'show', 'abc'], 2, False, r'DLQ sequence number'),
    ('dlq-retry-nothing', ['dlq', 'retry'], 2, False, r'DLQ sequence number'),
    ('tail-bad-type', ['tail', '--type', 'run.exploded'], 2, False, r'not an event type'),
    # error paths: servers down (NATS, Postgres and the API point at port 1)
    ('replay-nats-down', ['replay', RUN], 4, False, r'cannot reach NATS at nats://127.0.0.1:1'),
    ('replay-pg-down', ['replay', RUN, '--from-pg'], 4, False, r'cannot reach Postgres'),
    ('export-nats-down', ['export', RUN], 4, False, r'cannot reach NATS'),
    ('diff-nats-down', ['diff', RUN, RUN], 4, False, r'cannot reach NATS'),
    ('tail-nats-down', ['tail'], 4, False, r'cannot reach NATS'),
    ('agents-push-nats-down', ['agents', 'push', tmp('agent.json'), '--tenant', 'acme'], 4, False, r'cannot reach NATS'),
    ('agents-ls-nats-down', ['agents', 'ls', '--tenant', 'acme'], 4, False, r'cannot reach NATS'),
    ('agents-show-nats-down', ['agents', 'show', 'x', '--tenant', 'acme'], 4, False, r'cannot reach NATS'),
    ('runs-start-api-down', ['runs', 'start', 'demo', '--input', '{}'], 4, False, r'cannot reach the API'),
    ('runs-ls-api-down', ['runs', 'ls'], 4, False, r'cannot reach the API'),
    ('runs-show-api-down', ['runs', 'show', RUN], 4, False, r'cannot reach the API'),
    ('runs-cancel-api-down', ['runs', 'cancel', RUN], 4, False, r'cannot reach the API'),
    ('runs-signal-api-down', ['runs', 'signal', RUN, 'approve'], 4, False, r'cannot reach the API'),
    ('dlq-ls-nats-down', ['dlq', 'ls'], 4, False, r'cannot reach NATS'),
    ('dlq-show-nats-down', ['dlq', 'show', '1'], 4, False, r'cannot reach NATS'),
    ('dlq-retry-nats-down', ['dlq', 'retry', '1'], 4, False, r'cannot reach NATS'),
]


def main():
    failed = 0
    for name, args, code, golden, pattern in CASES:
        p = subprocess.run([RUNCTL] + args, capture_output=True, text=True, timeout=60)
        problems = []
        if p.returncode != code:
            problems.append(f'exit {p.returncode}, want {code}')
        if pattern and not re.search(pattern, p.stderr):
            problems.append(f'stderr does not match /{pattern}/')
        if golden:
            if isinstance(golden, str) and golden.startswith('FILE:'):
                path = fx(golden[5:])
            else:
                path = os.path.join(GOLDEN, (golden if isinstance(golden, str) else name) + '.out')
            if UPDATE and golden is True:
                with open(path, 'w') as f:
                    f.write(p.stdout)
            try:
                with open(path) as f:
                    want = f.read()
            except FileNotFoundError:
                want = None
            if want != p.stdout:
                problems.append(f'stdout differs from {path}:\n--- got ---\n{p.stdout}--- want ---\n{want}')
        if problems:
            failed += 1
            print(f'FAIL {name}: runctl {" ".join(args)}')
            for pr in problems:
                print('  ' + pr)
            print('  stderr: ' + p.stderr.strip()[:2000])
        else:
            print(f'ok   {name}')
    # The exported files replay and check like the originals.
    exported = ['signal.ndjson', 'llm-tools.ndjson', 'http-effect-error.ndjson']
    for name in exported:
        p = subprocess.run([RUNCTL, 'export', '--file', fx(name)], capture_output=True, text=True)
        with open(tmp('exported.ndjson'), 'w') as f:
            f.write(p.stdout)
        q = subprocess.run([RUNCTL, 'replay', '--file', tmp('exported.ndjson'), '--check'],
                           capture_output=True, text=True)
        if p.returncode != 0 or q.returncode != 0:
            failed += 1
            print(f'FAIL export-then-check {name}: {p.stderr} {q.stdout} {q.stderr}')
        else:
            print(f'ok   export-then-check {name}')
    total = len(CASES) + len(exported)
    print(f'{total - failed}/{total} passed')
    return 1 if failed else 0


sys.exit(main())
