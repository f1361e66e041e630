"""Parallel ingest writes exactly the shards a serial read (``iter_source``) gives.

Same records in the same shards, same ids (repeats made unique per source and across
sources), same ledger rows for bad lines, whatever the number of workers; on hand-made
files of every format and on real data.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from reasonmill import Pipeline
from reasonmill.config import config_from_dict
from reasonmill.engine.ingest import error_row, unique_id
from reasonmill.engine.workdir import StageDir
from reasonmill.io.sources import iter_source
from reasonmill.records import to_table


def reference(raw_config: dict, base_dir: Path) -> list[tuple[pa.Table, list[dict]]]:
    """The shards of a serial read: ``iter_source`` per source, ``~N`` across sources."""
    cfg = config_from_dict(raw_config, base_dir=base_dir)
    seen: set[str] = set()
    shards, buf, led = [], [], []
    for spec in cfg.sources:
        for item in iter_source(spec, cfg.base_dir):
            if isinstance(item, dict):
                item["id"] = unique_id(item["id"], seen)
                buf.append(item)
            else:
                led.append(error_row(spec.name, item))
            if len(buf) + len(led) >= cfg.shard_size:
                shards.append((to_table(buf), led))
                buf, led = [], []
    if buf or led or not shards:
        shards.append((to_table(buf), led))
    return shards


def ingested(raw_config: dict, base_dir: Path, workers: int, tmp: Path) -> list[tuple[pa.Table, list[dict]]]:
    cfg = dict(raw_config, workers=workers, workdir=str(tmp / f"w{workers}"), stages=[], exports=[])
    Pipeline.from_dict(cfg, base_dir=base_dir).run(fresh=True)
    sd = StageDir(tmp / f"w{workers}" / "00-ingest")
    return [(sd.read_table(s), pq.read_table(sd.ledger_path(s)).to_pylist()) for s in sd.shards()]


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (ta, la), (tb, lb) in zip(a, b):
        assert ta.to_pylist() == tb.to_pylist()
        assert la == lb


def _write_inputs(d: Path) -> None:
    rows = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(12)]
    rows += rows[:3]  # repeated texts → repeated ids within the source
    lines = [json.dumps(r) for r in rows]
    lines.insert(4, "")  # blank line
    lines.insert(6, "{not json")  # malformed
    lines.insert(9, "[1, 2]")  # not an object
    (d / "a.jsonl").write_text("\n".join(lines) + "\n")
    (d / "b.jsonl.gz").write_bytes(gzip.compress(("\ufeff" + "\n".join(lines[:7]) + "\n").encode()))
    (d / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))
    (d / "d.jsonl").write_text(json.dumps(rows[:4], indent=2))  # a pretty-printed document
    (d / "e.json").write_text(json.dumps(rows[2:9]))
    pq.write_table(pa.Table.from_pylist(rows[:5]), d / "f.parquet")
    (d / "g.csv").write_text("problem,answer\n" + "".join(f'"Compute {i} * 3.",{3 * i}\n' for i in range(6)))
    gsm = [{"question": f"Tom has {i} apples and buys {i} more. How many now?", "answer": f"... #### {2 * i}"} for i in range(5)]
    (d / "gsm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gsm))
    (d / "bad_first.jsonl").write_text("oops\n" + "".join(json.dumps(r) + "\n" for r in gsm))


def _config(shard_size: int) -> dict:
    return {
        "name": "ingest-parallel",
        "shard_size": shard_size,
        "sources": [
            {"name": "mix", "path": ["a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.jsonl", "e.json", "f.parquet", "g.csv"],
             "on_error": "skip"},
            {"name": "mix2", "path": "a.jsonl", "preset": "problem_answer", "on_error": "skip", "limit": 9},
            {"name": "gsm", "path": ["gsm.jsonl", "bad_first.jsonl"], "on_error": "skip"},
            {"name": "mix", "path": "*.parquet"},  # the same source name again: ids repeat across sources
        ],
    }


@pytest.mark.parametrize("shard_size", [1, 4, 7, 1000])
def test_parallel_ingest_equals_serial_read(tmp_path, shard_size):
    data = tmp_path / "data"
    data.mkdir()
    _write_inputs(data)
    raw = _config(shard_size)
    expected = reference(raw, data)
    assert sum(t.num_rows for t, _ in expected) > 50 and sum(len(l) for _, l in expected) >= 6
    for workers in (1, 2):
        assert_same(ingested(raw, data, workers, tmp_path), expected)


def test_an_empty_input_still_writes_one_shard(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    raw = {"name": "empty", "shard_size": 10, "sources": [{"name": "e", "path": "empty.jsonl"}]}
    got = ingested(raw, tmp_path, 2, tmp_path)
    assert len(got) == 1 and got[0][0].num_rows == 0
    assert_same(got, reference(raw, tmp_path))


def test_a_bad_line_fails_with_its_location_in_parallel(tmp_path):
    good = "".join(json.dumps({"problem": f"Find {i}.", "answer": str(i)}) + "\n" for i in range(50))
    (tmp_path / "x.jsonl").write_text(good + "{broken\n" + good)
    raw = {"name": "bad", "shard_size": 10, "workers": 2, "workdir": str(tmp_path / "w"),
           "sources": [{"name": "x", "path": "x.jsonl"}]}
    with pytest.raises(Exception, match=r"x.jsonl:51"):
        Pipeline.from_dict(raw, base_dir=tmp_path).run()


def test_parallel_ingest_equals_serial_read_on_real_data(shared_data, tmp_path):
    raw = {
        "name": "real",
        "shard_size": 3000,
        "sources": [
            {"name": "gsm8k", "path": str(shared_data / "gsm8k" / "gsm8k_train.jsonl"), "preset": "gsm8k"},
            {"name": "math500", "path": str(shared_data / "math500" / "*.jsonl")},
            {"name": "lcb", "path": str(shared_data / "livecodebench" / "lcb_test_2408-2501_with_private_tests.json"),
             "preset": "code_stdin"},
            {"name": "humaneval", "path": str(shared_data / "humaneval" / "*")},
        ],
    }
    expected = reference(raw, tmp_path)
    assert sum(t.num_rows for t, _ in expected) > 8000
    assert_same(ingested(raw, tmp_path, 2, tmp_path), expected)


def test_one_source_with_repeated_ids(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_inputs(data)
    raw = dict(_config(5), sources=_config(5)["sources"][:1])
    expected = reference(raw, data)
    got = ingested(raw, data, 2, tmp_path)
    assert_same(got, expected)
    metas = [m for t, _ in got for m in t.column("meta").to_pylist() if "duplicate_id_of" in m]
    assert len(metas) >= 3


@pytest.mark.parametrize("shard_size", [2, 3, 100])
def test_repeated_ids_whose_renamed_id_is_given_too(tmp_path, shard_size):
    """A repeat is renamed to the id of ``<id>#1``; when that id is also given in the same
    input (before or after), the result must still be the serial one (the fast path for
    repeats steps aside for the row-by-row loop)."""
    from reasonmill.records import stable_id

    a = stable_id("s", "A")
    renamed = f"{a}#1"  # the original id whose stable id is A's first rename
    ids = ["A", "B", renamed, "A", "A", "B", "C", "A", renamed, "C", "D"]
    rows = [{"id": rid, "problem": f"Problem {i}: find x.", "answer": str(i)} for i, rid in enumerate(ids)]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = {"name": "ids", "shard_size": shard_size, "sources": [{"name": "s", "path": "s.jsonl"}]}
    expected = reference(raw, tmp_path)
    got = ingested(raw, tmp_path, 2, tmp_path)
    assert_same(got, expected)
    out = [r for t, _ in got for r in t.to_pylist()]
    assert len({r["id"] for r in out}) == len(ids)
    assert sum("duplicate_id_of" in r["meta"] for r in out) == 6
