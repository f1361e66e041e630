"""Exports written shard by shard in the pool are byte-for-byte the serial exports."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import zstandard

from reasonmill import Pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _config(tmp: Path, workers: int) -> dict:
    out = tmp / f"out{workers}"
    return {
        "name": "parallel-export",
        "workdir": str(tmp / f"run{workers}"),
        "shard_size": 7,  # several shards from the small examples
        "workers": workers,
        "sources": [
            {"name": "word_problems", "path": str(EXAMPLES / "word_problems.jsonl"), "preset": "gsm8k", "on_error": "skip"},
            {"name": "math_traces", "path": str(EXAMPLES / "math_traces.jsonl"), "preset": "am"},
        ],
        "stages": [{"clean": {"min_chars": 20}}, "dedup.exact"],
        "exports": [
            {"path": str(out / "am.jsonl"), "format": "am"},
            {"path": str(out / "am.jsonl.gz"), "format": "am"},
            {"path": str(out / "msg.parquet"), "format": "messages"},
            {"path": str(out / "sg.jsonl.zst"), "format": "sharegpt"},
        ],
    }


def _read(path: Path) -> list:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".gz":
        text = gzip.open(path, "rt", encoding="utf-8").read()
    elif path.suffix == ".zst":
        with zstandard.ZstdDecompressor().stream_reader(open(path, "rb")) as fh:
            text = fh.read().decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_parallel_export_equals_serial_export(tmp_path):
    serial = Pipeline.from_dict(_config(tmp_path, 1), base_dir=tmp_path).run()
    parallel = Pipeline.from_dict(_config(tmp_path, 2), base_dir=tmp_path).run()
    assert serial.exports[4]["format"] == "card"
    assert serial.stages[-1].kept == parallel.stages[-1].kept > 14
    for a, b in zip(serial.exports[:4], parallel.exports[:4]):
        assert a["rows"] == b["rows"] and a["format"] == b["format"]
        assert _read(Path(a["path"])) == _read(Path(b["path"]))
        assert len(_read(Path(b["path"]))) == b["rows"] > 0
    card_a = (tmp_path / "out1" / "DATASET_CARD.md").read_text()
    card_b = (tmp_path / "out2" / "DATASET_CARD.md").read_text()
    strip = lambda card: [l for l in card.splitlines() if "out1" not in l and "out2" not in l and " s |" not in l]
    assert strip(card_a) == strip(card_b)
    assert not (tmp_path / "run2" / "export" / "parts").exists()


def test_card_counts_in_batches_equal_counts_one_by_one():
    from reasonmill.records import new_record, new_response
    from reasonmill.report.card import CardStats

    records = [
        new_record(source="ab"[i % 2], problem="x", original_id=i, difficulty=None if i % 3 else i / 3,
                   category=["math", None][i % 2], language="en")
        for i in range(50)
    ]
    for r in records[:10]:
        r["responses"] = [new_response("<think>" + "t" * (k * 700) + "</think>a") for k in range(3)]
    one, many = CardStats(), CardStats()
    for r in records:
        one.add(r)
    many.add_many(records[:20])
    many.add_many(records[20:])
    assert one == many and many.records == 50 and many.responses == 30
    assert len(many.think_chars) >= 2 and many.by_difficulty["unlabelled"] == 33


def test_a_discarded_stitch_leaves_no_partial_files(tmp_path):
    from reasonmill.config import ExportSpec
    from reasonmill.io.writers import PartStitcher

    specs = [ExportSpec(path="a.jsonl", format="am"), ExportSpec(path="b.jsonl.zst", format="am"),
             ExportSpec(path="c.parquet", format="messages")]
    paths = [tmp_path / "out" / s.path for s in specs]
    stitcher = PartStitcher(specs, paths, tmp_path / "ledger", None)
    assert len(list((tmp_path / "out").glob("*.partial"))) == 3
    stitcher.discard()
    assert list((tmp_path / "out").iterdir()) == []
    assert not any(p.exists() for p in paths)
