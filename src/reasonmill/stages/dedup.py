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
    build_columns = ("id", "source", "category", "problem", "reference_answer", "tests", "difficulty", "responses")
    reads = ("id",)
    writes = ()

    def build(self, shards: Iterable[list[dict]]) -> dict[str, tuple[str, int]]:
        """Index: dropped record id → (representative id, text hash). Texts are not kept."""
        rank = {name: i for i, name in enumerate(self.settings.source_rank)}
        best: dict[int, tuple] = {}
        members: list[tuple[int, str]] = []
        for records in shards:
            for r in records:
                h = _text_hash(r, self.settings)
                key = priority_key(r, rank)
                members.append((h, r["id"]))
                cur = best.get(h)
                if cur is None or key < cur:
                    best[h] = key
        # priority_key ends with the record id
        return {rid: (best[h][-1], h) for h, rid in members if best[h][-1] != rid}

    def process(self, records: list[dict], index: dict[str, tuple[str, int]] | None = None) -> StageOutput:
        out = StageOutput()
        index = index or {}
        for r in records:
            hit = index.get(r["id"])
            if hit is None:
                out.kept.append(r)
            else:
                rep, h = hit
                out.drop(
                    r,
                    "duplicate_of",
                    f"exact duplicate (normalized text) of {rep}",
                    representative=rep,
                    text_hash=f"{h:016x}",
                )
        return out
