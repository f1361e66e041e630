"""Exact dedup: hash of the normalized problem text, one representative per cluster.

The index holds 64-bit hashes, not texts: for every hash seen more than once, the id of
the representative chosen by the keep-priority policy (``dedup.priority``).
"""

from __future__ import annotations

import hashlib
from typing import Iterable

from reasonmill.dedup.priority import priority_key
from reasonmill.stages.base import Stage, StageOutput, StageSettings, stage
from reasonmill.text import normalize_for_hash


class ExactDedupSettings(StageSettings):
    #: record fields whose normalized text makes the key
    fields: list[str] = ["problem"]
    #: dedup only within the same category
    per_category: bool = False
    #: source names, best first, for the keep-priority policy
    source_rank: list[str] = []


def _text_hash(record: dict, settings: ExactDedupSettings) -> int:
    parts = [normalize_for_hash(str(record.get(f) or "")) for f in settings.fields]
    if settings.per_category:
        parts.append(record.get("category") or "")
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@stage("dedup.exact")
class ExactDedup(Stage):
    kind = "global"
    Settings = ExactDedupSettings

    def build(self, shards: Iterable[list[dict]]) -> dict[int, str]:
        rank = {name: i for i, name in enumerate(self.settings.source_rank)}
        best: dict[int, tuple] = {}
        counts: dict[int, int] = {}
        for records in shards:
            for r in records:
                h = _text_hash(r, self.settings)
                key = priority_key(r, rank)
                cur = best.get(h)
                if cur is None:
                    best[h] = key
                else:
                    counts[h] = counts.get(h, 1) + 1
                    if key < cur:
                        best[h] = key
        # priority_key ends with the record id: keep only the hashes that have duplicates
        return {h: best[h][-1] for h in counts}

    def process(self, records: list[dict], index: dict[int, str] | None = None) -> StageOutput:
        out = StageOutput()
        index = index or {}
        for r in records:
            h = _text_hash(r, self.settings)
            rep = index.get(h)
            if rep is None or rep == r["id"]:
                out.kept.append(r)
            else:
                out.drop(
                    r,
                    "duplicate_of",
                    f"exact duplicate (normalized text) of {rep}",
                    representative=rep,
                    text_hash=f"{h:016x}",
                )
        return out
