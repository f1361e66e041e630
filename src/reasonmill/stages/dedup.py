"""Exact dedup: hash of the normalized problem text, one representative per cluster.

The index holds 64-bit hashes, not texts: for every hash seen more than once, the id of
the representative chosen by the keep-priority policy (``dedup.priority``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reasonmill.dedup.exact_hash import column_hashes
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


def _np(mask: Any) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _text_hash(record: dict, settings: ExactDedupSettings) -> int:
    parts = [normalize_for_hash(str(record.get(f) or "")) for f in settings.fields]
    if settings.per_category:
        parts.append(record.get("category") or "")
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _string_rank(values: np.ndarray) -> np.ndarray:
    """Rank of every string of an object array, in Python's string order."""
    as_list = values.tolist()
    if "\x00" in "".join(as_list):  # numpy's fixed-width strings drop trailing NULs
        rank = np.empty(len(as_list), dtype=np.int64)
        rank[sorted(range(len(as_list)), key=as_list.__getitem__)] = np.arange(len(as_list))
        return rank
    return np.argsort(np.argsort(np.array(as_list, dtype=str), kind="stable"), kind="stable")


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
        keys = np.empty((n, 5), dtype=np.float64)
        ids = []
        for i, r in enumerate(records):
            hashes[i] = _text_hash(r, self.settings)
            key = priority_key(r, rank)
            keys[i] = key[:-1]
            ids.append(key[-1])
        return hashes, keys, np.array(ids, dtype=object)

    def build_map_table(self, table: pa.Table) -> tuple:
        """``build_map`` on the Arrow table: the priority-key parts are computed by column
        (no response or test is turned into Python objects); only the key text is."""
        from reasonmill.records import from_table

        s = self.settings
        n = table.num_rows
        ids = np.array(table.column("id").to_pylist(), dtype=object)
        columns = []
        for f in s.fields:
            col = table.column(f) if f in table.column_names else None
            if col is None or not pa.types.is_string(col.type):
                # a structured field: its text is the Python form, as in ``build_map``
                rows = from_table(table.select([f])) if col is not None else [{}] * n
                col = pa.array([str(r.get(f) or "") for r in rows], type=pa.string())
            columns.append(col)
        extra = table.column("category").to_pylist() if s.per_category else None
        hashes = column_hashes(columns, extra, normalize_for_hash)
        ref = table.column("reference_answer")
        has_ref = _np(pc.greater(pc.utf8_length(ref), 0))
        has_ref |= pc.fill_null(pc.list_value_length(table.column("tests")), 0).to_numpy(zero_copy_only=False) > 0
        responses = table.column("responses")
        verified = np.zeros(n, dtype=bool)
        if isinstance(responses, pa.ChunkedArray):
            responses = responses.combine_chunks()
        has_responses = pc.fill_null(pc.list_value_length(responses), 0).to_numpy(zero_copy_only=False) > 0
        flat = pc.list_flatten(responses)
        if len(flat):
            passed = _np(pc.struct_field(flat, "passed"))
            parents = pc.list_parent_indices(responses).to_numpy(zero_copy_only=False)
            verified = np.bincount(parents, weights=passed, minlength=n) > 0
        difficulty = pc.fill_null(table.column("difficulty"), -1.0).to_numpy(zero_copy_only=False)
        rank = {name: i for i, name in enumerate(s.source_rank)}
        sources = table.column("source").to_pylist()
        keys = np.empty((n, 5), dtype=np.float64)
        keys[:, 0] = np.where(has_responses, 0, 1)
        keys[:, 1] = np.where(has_ref, 0, 1)
        keys[:, 2] = np.where(verified, 0, 1)
        keys[:, 3] = -difficulty
        keys[:, 4] = [rank.get(src or "", len(rank)) for src in sources]
        return hashes, keys, ids

    def build_reduce(self, parts: list[tuple]) -> dict[str, tuple[str, int]]:
        """Index: dropped record id → (representative id, text hash).

        The representative of a group of equal hashes is its member with the best
        priority key, and among members tied on the whole key, the smallest id. Rows
        are sorted by hash alone; only the rows of groups with duplicates are then
        sorted by (group, key, id), so that each group's first row is its representative."""
        if not parts:
            return {}
        hashes = np.concatenate([p[0] for p in parts])
        n = len(hashes)
        order = np.argsort(hashes)
        sorted_h = hashes[order]
        first = np.ones(n, dtype=bool)
        first[1:] = sorted_h[1:] != sorted_h[:-1]
        group = np.cumsum(first) - 1
        in_dup = (np.diff(np.append(np.flatnonzero(first), n)) > 1)[group]
        rows = np.flatnonzero(in_dup)
        if not len(rows):
            return {}
        src = order[rows]  # rows of groups with duplicates, as indices into the parts
        keys = np.concatenate([p[1] for p in parts])[src]
        ids = np.concatenate([p[2] for p in parts])[src]
        g = group[rows]
        o = np.lexsort((_string_rank(ids), *(keys[:, j] for j in reversed(range(keys.shape[1]))), g))
        g, h = g[o], sorted_h[rows][o]
        lead = np.ones(len(g), dtype=bool)
        lead[1:] = g[1:] != g[:-1]
        member = np.flatnonzero(~lead)
        rep_of = o[np.flatnonzero(lead)][np.cumsum(lead)[member] - 1]
        return dict(zip(ids[o[member]].tolist(), zip(ids[rep_of].tolist(), h[member].tolist())))

    def screen(self, table: pa.Table, index: Any = None) -> tuple[np.ndarray, dict] | None:
        """Only the rows whose id is in the index (the duplicates) go through ``process``."""
        if index is None:
            return None
        keys = self._index_keys
        if keys is None or self._index_ref is not index:
            keys = self._index_keys = pa.array(list(index), type=pa.string())
            self._index_ref = index
        return _np(pc.is_in(table.column("id"), value_set=keys)), {}

    _index_keys: Any = None
    _index_ref: Any = None

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
