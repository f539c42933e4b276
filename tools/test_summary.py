#!/usr/bin/env python3
"""test_summary.py LOG... - print meson's summary of each test run and one
closing line `N passed, M failed` over all of them.

Meson prints `Ok: N  Fail: N ...` per build directory; the closing line is
what CI reads. A skipped test counts as a failure under CI=true: a missing
server must never pass silently.
"""
import re
import os
import sys

FIELDS = ('Ok', 'Expected Fail', 'Fail', 'Unexpected Pass', 'Skipped', 'Timeout')


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
        fails = [l for l in text.splitlines() if re.search(r'\s(FAIL|TIMEOUT)\s', l)]
        name = os.path.basename(path).replace('.txt', '')
        print(f'--- {name}: ' + '  '.join(f'{k}: {v}' for k, v in counts.items()))
        for line in fails:
            print('    ' + line.strip())
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
