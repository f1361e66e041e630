"""The ledger: every dropped record or response, with the stage, reason, message, evidence.

Ledger rows are written by the engine next to each stage's shards; this module turns
``Drop`` objects into rows and reads them back for ``reasonmill inspect`` and reports.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Iterable, Iterator

from reasonmill.engine.workdir import DamagedShard, Workdir
from reasonmill.records import _dump
from reasonmill.stages.base import Drop


def drop_to_row(stage: str, drop: Drop) -> dict:
    return {
        "stage": stage,
        "id": drop.id,
        "kind": "response" if drop.response_index is not None else "record",
        "response_index": drop.response_index,
        "reason": drop.reason,
        "message": drop.message,
        "evidence": _dump(drop.evidence),
        "record": _dump(drop.record),
    }


def reason_counts(rows: Iterable[dict]) -> Counter:
    return Counter(r["reason"] for r in rows)


def iter_ledger(workdir: Workdir) -> Iterator[dict]:
    for sd in workdir.stage_dirs():
        yield from sd.iter_ledger()
    export_ledger = workdir.root / "export" / "ledger.jsonl"
    if export_ledger.exists():
        with export_ledger.open(encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, start=1):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DamagedShard(export_ledger, f"line {n} is not JSON ({exc})") from None


def find_drops(workdir: Workdir, record_id: str) -> list[dict]:
    return [row for row in iter_ledger(workdir) if row["id"] == record_id]
