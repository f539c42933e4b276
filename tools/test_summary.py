#!/usr/bin/env python3
"""test_summary.py LOG... - print meson's summary of each test run and one
closing line `N passed, M failed` over all of them.

CI shows only what this prints, so for each failed test it also prints the
lines of its log that say why (failed assertions, errors, sanitizer reports),
bounded, and the last lines of the log.

Meson prints `Ok: N  Fail: N ...` per build directory; the closing line is
what CI reads. A skipped test counts as a failure under CI=true: a missing
server must never pass silently.
"""
import re
import os
import sys

WHY = re.compile(r'not ok|Error|error|ERROR|failed|FAIL|timed out|exited with|expected|actual|'
                 r'runtime error|SUMMARY|Assertion|stuck|lost|violation|^\s+at ', re.I)
FIELDS = ('Ok', 'Expected Fail', 'Fail', 'Unexpected Pass', 'Skipped', 'Timeout')


def why(lines, start, keep=40, tail=15):
    """Lines saying why the test whose status line is lines[start] failed:
    its log runs until the next test's status line or meson's summary."""
    end = start + 1
    while end < len(lines) and not re.match(r'^\s*\d+/\d+ \S', lines[end]) \
            and not lines[end].startswith('Summary of Failures'):
        end += 1
    block = lines[start + 1:end]
    hits = [l for l in block if WHY.search(l) and not re.match(r'^(\s*ok \d|>>> )', l)]
    out = hits[:keep]
    if len(hits) > keep:
        out.append(f'... {len(hits) - keep} more')
    out.append('--- last lines:')
    out += [l for l in block[-tail:] if l.strip() and not l.startswith('\u2015')]
    return out


def main():
    total_ok = total_bad = 0
    for path in sys.argv[1:]:
        try:
            text = open(path, encoding='utf-8', errors='replace').read()
        except OSError as e:
            print(f'{path}: {e}')
            total_bad += 1
            continue
        counts = {}
        for f in FIELDS:
            m = re.findall(r'^%s:\s+(\d+)' % re.escape(f), text, re.M)
            counts[f] = int(m[-1]) if m else 0
        if not any(counts.values()):
            print(f'{path}: no meson summary (build or setup failed?)')
            print('\n'.join(text.splitlines()[-30:]))
            total_bad += 1
            continue
        lines = text.splitlines()
        fails = [i for i, l in enumerate(lines) if re.search(r'\s(FAIL|TIMEOUT)\s', l)]
        seen = set()
        name = os.path.basename(path).replace('.txt', '')
        print(f'--- {name}: ' + '  '.join(f'{k}: {v}' for k, v in counts.items()))
        for i in fails:
            status = lines[i].strip()
            if status in seen:
                continue  # meson repeats it under "Summary of Failures"
            seen.add(status)
            print('    ' + status)
            for l in why(lines, i):
                print('      | ' + l.rstrip()[:300])
        bad = counts['Fail'] + counts['Timeout'] + counts['Unexpected Pass']
        if os.environ.get('CI') == 'true':
            bad += counts['Skipped']
        if bad:
            print(f'    details: {path}')
        total_ok += counts['Ok'] + counts['Expected Fail']
        total_bad += bad
    print(f'{total_ok} passed, {total_bad} failed')
    return 1 if total_bad else 0


if __name__ == '__main__':
    sys.exit(main())
