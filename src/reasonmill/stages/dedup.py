"""Exact dedup: hash of the normalized problem text, one representative per cluster.

The index holds 64-bit hashes, not texts: for every hash seen more than once, the id of
the representative chosen by the keep-priority policy (``dedup.priority``).
"""

from __future__ import annotations

import hashlib

import numpy as np
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

    def build_map(self, records: list[dict]) -> tuple:
        """One shard → compact arrays: text hash, priority-key parts, ids (no texts)."""
        rank = {name: i for i, name in enumerate(self.settings.source_rank)}
        n = len(records)
        hashes = np.empty(n, dtype=np.uint64)
        keys = np.empty((n, 4), dtype=np.float64)
        ids = []
        for i, r in enumerate(records):
            hashes[i] = _text_hash(r, self.settings)
            key = priority_key(r, rank)
            keys[i] = key[:4]
            ids.append(key[4])
        return hashes, keys, np.array(ids, dtype=object)

    def build_reduce(self, parts: list[tuple]) -> dict[str, tuple[str, int]]:
        """Index: dropped record id → (representative id, text hash)."""
        if not parts:
            return {}
        hashes = np.concatenate([p[0] for p in parts])
        keys = np.concatenate([p[1] for p in parts])
        ids = np.concatenate([p[2] for p in parts])
        # ids sort as the last tiebreak: rank them so lexsort stays numeric
        id_rank = np.argsort(np.argsort(ids.astype(str), kind="stable"), kind="stable")
        order = np.lexsort((id_rank, keys[:, 3], keys[:, 2], keys[:, 1], keys[:, 0], hashes))
        sorted_h = hashes[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_h[1:] != sorted_h[:-1]
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
        index: dict[str, tuple[str, int]] = {}
        for pos in np.flatnonzero(~first):
            rep = ids[order[group_start[pos]]]
            index[ids[order[pos]]] = (rep, int(sorted_h[pos]))
        return index

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
