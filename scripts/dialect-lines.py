#!/usr/bin/env python3
"""Counts the scheduler store's dialect-specific Rust: the lines of
services/scheduler/src/store/{postgres,sqlite} at a revision, all and
without blanks and `//` comments. The figure issue 18 tracks (rules and
statements written once shrink it).

Usage: scripts/dialect-lines.py [REV ...]   (default: HEAD)
"""

import subprocess
import sys

DIRS = ["services/scheduler/src/store/postgres", "services/scheduler/src/store/sqlite"]


def count(rev: str) -> tuple[int, int]:
    names = subprocess.check_output(["git", "ls-tree", "-r", "--name-only", rev, *DIRS], text=True)
    total = code = 0
    for name in names.split():
        if not name.endswith(".rs"):
            continue
        text = subprocess.check_output(["git", "show", f"{rev}:{name}"], text=True)
        for line in text.splitlines():
            total += 1
            stripped = line.strip()
            if stripped and not stripped.startswith("//"):
                code += 1
    return code, total


def main() -> None:
    for rev in sys.argv[1:] or ["HEAD"]:
        code, total = count(rev)
        print(f"{rev}: {code} code lines, {total} in all")


if __name__ == "__main__":
    main()
