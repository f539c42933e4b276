#!/usr/bin/env python3
"""prefix_symbols.py - rename C identifiers by a list, for the naming rule
(docs/architecture.md, "Names": every exported symbol carries its module's
prefix). Mechanical and re-runnable: a name already renamed is not in the
list the next time.

Usage: prefix_symbols.py LIST FILE...
LIST holds one "old new" pair a line. In .c/.h files every identifier token
`old` outside string and character literals is replaced; inside comments
only tokens that contain '_' or are followed by '(' (so the English word
"poison" in a comment stays a word) and are not file names (cmd_tail.c).
In other files (Markdown) the same, inside `backtick` spans only. A token
after '.' or '->' is a struct member and stays. Files are rewritten in place only when
they change; the files changed are printed.
"""
import re
import sys

IDENT = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')


def load(path):
    pairs = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0] != parts[1]:
                pairs[parts[0]] = parts[1]
    return pairs


def sub_idents(text, pairs, prose):
    def rep(m):
        name, s, a, b = m.group(0), m.string, m.start(), m.end()
        new = pairs.get(name)
        if new is None:
            return name
        if s[max(0, a - 1):a] == '.' or s[max(0, a - 2):a] == '->':
            return name          # a struct member, not the symbol
        if prose:
            if re.match(r'\.[A-Za-z]', s[b:b + 2]):
                return name      # a file name: cmd_tail.c
            if '_' not in name and s[b:b + 1] != '(':
                return name      # an English word
        return new

    return IDENT.sub(rep, text)


def rename_c(src, pairs):
    out, i, n = [], 0, len(src)
    code_start = 0
    while i < n:
        c = src[i]
        if c in '"\'':
            out.append(sub_idents(src[code_start:i], pairs, False))
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == '\\' else 1
            out.append(src[i:j + 1])
            i = code_start = j + 1
        elif src.startswith('/*', i) or src.startswith('//', i):
            out.append(sub_idents(src[code_start:i], pairs, False))
            end = src.find('*/', i + 2) + 2 if src[i + 1] == '*' else src.find('\n', i)
            if end < i + 2:
                end = n
            out.append(sub_idents(src[i:end], pairs, True))
            i = code_start = end
        elif IDENT.match(src, i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == '_')):
            i = IDENT.match(src, i).end()   # skip whole identifiers (e.g. u8"...")
        else:
            i += 1
    out.append(sub_idents(src[code_start:], pairs, False))
    return ''.join(out)


def rename_prose(src, pairs):
    return re.sub(r'`[^`\n]+`', lambda m: sub_idents(m.group(0), pairs, True), src)


def main():
    if len(sys.argv) < 3:
        sys.exit('usage: prefix_symbols.py LIST FILE...')
    pairs = load(sys.argv[1])
    for path in sys.argv[2:]:
        with open(path) as f:
            src = f.read()
        new = rename_c(src, pairs) if path.endswith(('.c', '.h')) else rename_prose(src, pairs)
        if new != src:
            with open(path, 'w') as f:
                f.write(new)
            print(path)


if __name__ == '__main__':
    main()
