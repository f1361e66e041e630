"""Check that every row of an AM-format export passes the schema check.

``python -m reasonmill.tools.check_export out/quickstart/am.jsonl`` exits non-zero and
names the line of the first bad rows; ``make demo`` runs it after the quickstart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reasonmill.io.formats import validate_am_row
from reasonmill.io.writers import open_text


def check(path: Path) -> tuple[int, list[str]]:
    problems: list[str] = []
    n = 0
    with open_text(path, "rt") as fh:
        for lineno, line in enumerate(fh, 1):
            n += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{lineno}: not JSON ({exc})")
                continue
            for err in validate_am_row(row):
                problems.append(f"{path}:{lineno}: {err}")
    return n, problems


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    status = 0
    for p in args:
        n, problems = check(Path(p))
        if problems:
            status = 1
            print("\n".join(problems[:20]))
        print(f"{p}: {n} rows, {len(problems)} schema problems")
    if not args:
        print("usage: python -m reasonmill.tools.check_export FILE.jsonl [...]")
        return 2
    if status == 0 and all(check(Path(p))[0] == 0 for p in args):
        print("error: no rows exported")
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
