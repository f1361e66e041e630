"""Exact dedup: the vectorized build and the id screen give the same index and output as
the record-by-record path."""

from __future__ import annotations

import numpy as np
import pytest

from reasonmill.engine.local import run_shard
from reasonmill.engine.workdir import StageDir
from reasonmill.records import new_record, new_response, to_table
from reasonmill.stages.dedup import ExactDedup


def _records() -> list[dict]:
    out = []
    texts = ["Find x if 2x = 4.", "find  X if 2x=4 .", "Compute 3 + 5.", "Compute 3+5", "Ｃｏｍｐｕｔｅ 3 + 5.", "Prove it."]
    for i in range(60):
        text = texts[i % len(texts)]
        r = new_record(
            source=["a", "b", "c"][i % 3],
            problem=text,
            original_id=i,
            reference_answer=None if i % 4 == 0 else ("" if i % 7 == 0 else "2"),
            difficulty=None if i % 5 == 0 else float(i % 9),
            category="math" if i % 2 else "code",
        )
        if i % 6 == 1:
            r["tests"] = [{"input": "1", "output": "1", "kind": "stdin"}]
        if i % 4 == 1:
            resp = new_response("<think>t</think>2")
            resp["passed"] = i % 8 == 1
            r["responses"] = [new_response("x"), resp]
        out.append(r)
    return out


@pytest.mark.parametrize(
    "settings",
    [{}, {"per_category": True}, {"source_rank": ["c", "a"]}, {"fields": ["problem", "reference_answer"]}, {"fields": ["tests"]}],
)
def test_vectorized_build_equals_the_record_build(settings):
    records = _records()
    stage = ExactDedup(settings)
    a = stage.build_map([{k: r[k] for k in ExactDedup.build_columns} for r in records])
    b = stage.build_map_table(to_table(records).select(list(ExactDedup.build_columns)))
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    index = stage.build_reduce([b])
    assert index == stage.build_reduce([a]) and len(index) > 0


def test_screened_map_phase_equals_full_process(tmp_path):
    records = _records()
    src = StageDir(tmp_path / "in")
    src.write_shard("00000", records, [], {"in": 60, "kept": 60, "dropped": 0})
    stage = ExactDedup({})
    index = stage.build_reduce([src.build_part(stage, "00000")])

    class NoScreen(ExactDedup):
        def screen(self, table, index=None):
            return None

    a = run_shard(stage, "dedup.exact", src.path, tmp_path / "a", "00000", index)
    b = run_shard(NoScreen({}), "dedup.exact", src.path, tmp_path / "b", "00000", index)
    assert a == b and a["dropped"] == len(index) and a["kept"] == 60 - len(index)
    assert StageDir(tmp_path / "a").read_table("00000").equals(StageDir(tmp_path / "b").read_table("00000"))
    ledger = list(StageDir(tmp_path / "a").iter_ledger())
    assert sorted(r["id"] for r in ledger) == sorted(index)
    assert all('"problem"' in r["record"] for r in ledger)  # the whole record, not the partial one


def _reduce_by_groups(parts: list[tuple]) -> dict:
    """The keep-priority rule written plainly: per hash, the best key wins, and among
    members tied on the whole key, the smallest id."""
    groups: dict[int, list] = {}
    for hashes, keys, ids in parts:
        for h, k, rid in zip(hashes.tolist(), keys.tolist(), ids.tolist()):
            groups.setdefault(h, []).append((tuple(k), rid))
    index = {}
    for h, members in groups.items():
        rep = min(members)[1]
        for _, rid in members:
            if rid != rep:
                index[rid] = (rep, h)
    return index


@pytest.mark.parametrize("seed", range(5))
def test_reduce_picks_the_priority_winner_then_the_smallest_id(seed):
    import random

    rng = random.Random(seed)
    names = [f"id{j}" for j in range(300)] + ["b", "a", "~x", "A", "é", "z\x00", "z", "😀", "a\x00b"]
    for _ in range(60):
        n = rng.randint(1, 60)
        hashes = np.array([rng.choice([1, 2, 3, 2**63 + 5, 2**64 - 1]) for _ in range(n)], dtype=np.uint64)
        keys = np.array(
            [[rng.randint(0, 1), rng.randint(0, 1), -rng.choice([1.0, 2.5, -1.0]), rng.randint(0, 2)] for _ in range(n)],
            dtype=np.float64,
        )
        ids = np.array(rng.sample(names, n), dtype=object)
        cut = rng.randint(0, n)
        parts = [(hashes[:cut], keys[:cut], ids[:cut]), (hashes[cut:], keys[cut:], ids[cut:])]
        assert ExactDedup({}).build_reduce(parts) == _reduce_by_groups(parts)
    assert ExactDedup({}).build_reduce([]) == {}


@pytest.mark.parametrize("vectorized", [False, True])
def test_keep_priority_a_record_with_responses_beats_a_harder_one_with_a_reference(vectorized):
    """Issue 12: ``replay`` drops records without responses; keeping the copy without any
    over the one with traces lost both."""
    bare = new_record(
        source="a", problem="Find x if 2x = 4.", original_id=1, reference_answer="2", difficulty=9.0
    )
    traced = new_record(source="b", problem="find  X if 2x=4 .", original_id=2)
    traced["responses"] = [new_response("<think>2x = 4</think>x = 2")]
    stage = ExactDedup({"source_rank": ["a", "b"]})
    records = [bare, traced]
    parts = [stage.build_map_table(to_table(records)) if vectorized else stage.build_map(records)]
    index = stage.build_reduce(parts)
    assert list(index) == [bare["id"]] and index[bare["id"]][0] == traced["id"]
