#!/usr/bin/env python3
"""Fails when a production function is longer than 80 lines.

Production code is every .rs file under services/ and proto/ but test
modules (`tests.rs`, `tests/`), up to its first top-level `#[cfg(test)]`. A function is measured from its `fn` line to the
closing brace at its own indentation (rustfmt's layout), signature
included. Functions that are mostly SQL or a table may be the exception
the style allows; none is today, so none is exempt.
"""
import os
import re
import sys

LIMIT = 80
FN = re.compile(r"^(\s*)(pub(\([^)]*\))? )?(async )?(const )?(unsafe )?fn (\w+)")


def functions(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        # A test module ends the production code; a single item marked
        # `#[cfg(test)]` inside it is measured with it (stricter, harmless).
        if line.startswith("#[cfg(test)]"):
            return
        m = FN.match(line)
        if not m:
            continue
        indent, name = m.group(1), m.group(7)
        j = i
        while j < len(lines) and not lines[j].rstrip().endswith(("{", ";")):
            j += 1
        if j == len(lines) or lines[j].rstrip().endswith(";"):
            continue
        k = j + 1
        while k < len(lines) and lines[k] != indent + "}":
            k += 1
        yield name, i + 1, k - i + 1


def main():
    # From the repository root, wherever it is run from.
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    long = []
    for top in ("services", "proto"):
        for root, _, files in os.walk(top):
            for file in sorted(files):
                # `tests.rs` files are test modules declared elsewhere
                # (`#[cfg(test)] mod tests;`).
                if file.endswith(".rs") and file != "tests.rs" and "/tests" not in root:
                    path = os.path.join(root, file)
                    for name, line, length in functions(path):
                        if length > LIMIT:
                            long.append(f"{path}:{line}: {name} is {length} lines")
    for entry in long:
        print(entry)
    if long:
        print(f"{len(long)} functions over {LIMIT} lines: split them into named steps")
        sys.exit(1)


if __name__ == "__main__":
    main()
