"""Reads valgrind memcheck logs and fails on any error of our extension
modules: an invalid read, write or free, or a decision on uninitialised
memory, made by ``avatarkit_fast``'s compiled code, or on memory our code
allocated or freed. An error is ours when one of our frames comes before the
first interpreter frame (``_PyEval_EvalFrameDefault``) of its stack, or of
the stack that allocated or freed the address. The interpreter's own reports
(CPython under valgrind has a few, with or without us further down the stack)
and those of other libraries are counted and shown, not failed on.

    python scripts/memcheck_report.py memcheck-logs/*.log
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter

HEAD = re.compile(r"^==\d+== (Invalid (?:read|write|free)|Mismatched free|Conditional jump|Use of uninitialised"
                  r"|Syscall param|Source and destination overlap)")
OURS = re.compile(r"avatarkit_fast|_[a-z]+_c\.c:|_[a-z]+_c\.cpython")
EVAL = re.compile(r"_PyEval_EvalFrame|PyEval_EvalCode")
BLANK = re.compile(r"^==\d+==\s*$")


def blocks(lines):
    """Valgrind error records: a head line up to the next bare ``==PID==`` line."""
    cur = None
    for line in lines:
        if HEAD.match(line):
            if cur:
                yield cur
            cur = [line]
        elif cur is not None:
            if BLANK.match(line):
                yield cur
                cur = None
            else:
                cur.append(line)
    if cur:
        yield cur


def _ours(block: list[str]) -> bool:
    """One of our frames before the first interpreter frame, in the error's
    stack or in the stack that allocated or freed its address."""
    stacks, cur = [], []
    for line in block:
        if "Address 0x" in line or "Block was alloc'd" in line:
            stacks.append(cur)
            cur = []
        cur.append(line)
    stacks.append(cur)
    for stack in stacks:
        for line in stack:
            if EVAL.search(line):
                break
            if OURS.search(line):
                return True
    return False


def main(paths: list[str]) -> int:
    lines = []
    for path in paths:
        with open(path, errors="replace") as f:
            lines += f.read().splitlines()
    ours, theirs = [], Counter()
    for b in blocks(lines):
        kind = HEAD.match(b[0]).group(1)
        if _ours(b):
            ours.append(b)
        else:
            theirs[kind] += 1
    summaries = [x.split("== ", 1)[-1] for x in lines if "ERROR SUMMARY" in x]
    print(json.dumps({"logs": len(paths), "errors_in_our_modules": len(ours), "other_errors": dict(theirs),
                      "valgrind_summaries": summaries}))
    for b in ours[:20]:
        print("\n".join(b), file=sys.stderr)
        print(file=sys.stderr)
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
