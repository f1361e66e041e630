"""Ingest: every format × compression, JSON shapes, bad rows, limits, globs, fingerprints,
source validation and the Hugging Face path (on local files, as the Hub is unreachable)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from reasonmill.io.readers import IngestError, IngestErrorItem, detect_format, read_file
from reasonmill.io.sources import SourceConfigError, SourceSpec, iter_source, source_fingerprint

ROWS = [
    {"problem": "What is 1+1?", "answer": "2", "id": 1},
    {"problem": "Compute 3 × 4, then add 1,000.", "answer": "1012", "id": 2},
    {"problem": 'A line with a "quote",\na newline and ü', "answer": "\\frac{1}{2}", "id": 3},
    {"problem": "中文题目：2 的平方是多少？", "answer": "4", "id": 4},
    {"problem": "Last one", "answer": "-7", "id": 5},
]


def _compress(data: bytes, compression: str) -> bytes:
    if compression == "gz":
        return gzip.compress(data)
    if compression == "zst":
        return zstandard.ZstdCompressor().compress(data)
    return data


def _encode(rows: list[dict], fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=1).encode()
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().encode()
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink, row_group_size=2)
    return sink.getvalue()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _records(spec: dict, base: Path) -> list:
    return list(iter_source(SourceSpec.model_validate(spec), base))


@pytest.mark.parametrize("compression", ["none", "gz", "zst"])
@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "csv"])
def test_every_format_and_compression(tmp_path, fmt, compression):
    suffix = "" if compression == "none" else f".{compression}"
    name = f"data.{fmt}{suffix}"
    _write(tmp_path, name, _compress(_encode(ROWS, fmt), compression))
    assert detect_format(name) == (fmt, compression)
    records = _records({"name": "toy", "path": name, "preset": "problem_answer"}, tmp_path)
    assert [r["problem"] for r in records] == [r["problem"].strip() for r in ROWS]
    assert [r["reference_answer"] for r in records] == [r["answer"] for r in ROWS]
    assert {r["source"] for r in records} == {"toy"}
    # ids come from the upstream id (CSV cells are strings, hence str())
    ids = {r["id"] for r in records}
    assert len(ids) == 5
    origins = [r["meta"]["origin"] for r in records]
    if fmt == "jsonl":
        assert origins == [f"{name}:{i}" for i in range(1, 6)]
    elif fmt == "json":
        assert origins == [f"{name}[{i}]" for i in range(5)]
    elif fmt == "parquet":
        assert origins == [f"{name}#{i}" for i in range(5)]
    else:  # CSV: the line where the row starts; row 3 spans two lines
        assert origins == [f"{name}:2", f"{name}:3", f"{name}:4", f"{name}:6", f"{name}:7"]


def test_parquet_reads_in_row_group_batches(tmp_path):
    rows = [{"problem": f"p{i}", "answer": str(i)} for i in range(9000)]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=1000)
    it = read_file(path)
    first = next(it)
    assert first == ({"problem": "p0", "answer": "0"}, f"{path}#0")
    rest = list(it)
    assert len(rest) == 8999 and rest[-1][1] == f"{path}#8999" and rest[-1][0]["answer"] == "8999"


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    text = '{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": "2"}\n{"problem": "c", "ans\n'
    _write(tmp_path, "bad.jsonl", text.encode())
    with pytest.raises(IngestError) as exc:
        _records({"name": "s", "path": "bad.jsonl"}, tmp_path)
    msg = str(exc.value)
    assert "bad.jsonl:3" in msg and '{"problem": "c", "ans' in msg and "on_error: skip" in msg


def test_on_error_skip_yields_malformed_items_with_raw_text(tmp_path):
    text = (
        '{"problem": "a", "answer": "1"}\nnot json at all\n\n["a", "list"]\n{"problem": "d", "answer": "4"}\n'
    )
    _write(tmp_path, "bad.jsonl.zst", _compress(text.encode(), "zst"))
    items = _records(
        {"name": "s", "path": "bad.jsonl.zst", "on_error": "skip", "preset": "problem_answer"}, tmp_path
    )
    assert [type(i).__name__ for i in items] == ["dict", "IngestErrorItem", "IngestErrorItem", "dict"]
    bad = items[1]
    assert isinstance(bad, IngestErrorItem)
    assert bad.location == "bad.jsonl.zst:2" and bad.raw.strip() == "not json at all"
    assert bad.reason == "malformed" and bad.source == "s" and "invalid JSON" in bad.error
    assert items[2].location == "bad.jsonl.zst:4" and "expected a JSON object" in items[2].error
    assert items[3]["problem"] == "d"


def test_unmappable_row_fails_or_goes_to_ledger(tmp_path):
    text = '{"problem": "a", "answer": "1"}\n{"problem": "", "answer": "2"}\n'
    _write(tmp_path, "x.jsonl", text.encode())
    with pytest.raises(IngestError, match=r"x\.jsonl:2: cannot map the row .*no problem text"):
        _records({"name": "s", "path": "x.jsonl", "preset": "problem_answer"}, tmp_path)
    items = _records(
        {"name": "s", "path": "x.jsonl", "preset": "problem_answer", "on_error": "skip"}, tmp_path
    )
    assert isinstance(items[1], IngestErrorItem) and items[1].reason == "unmappable"
    assert json.loads(items[1].raw) == {"problem": "", "answer": "2"}


def test_csv_with_wrong_field_count_is_malformed(tmp_path):
    _write(tmp_path, "c.csv", b"problem,answer\nok,1\ntoo,many,fields\n")
    items = _records({"name": "s", "path": "c.csv", "on_error": "skip", "preset": "problem_answer"}, tmp_path)
    assert items[0]["reference_answer"] == "1"
    assert items[1].location == "c.csv:3" and "3 fields" in items[1].error


def test_csv_cells_holding_json_tests(tmp_path):
    tests = json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["problem", "tests", "starter_code"])
    w.writerow(["Add two numbers read from stdin.", tests, ""])
    _write(tmp_path, "code.csv.gz", gzip.compress(buf.getvalue().encode()))
    (rec,) = _records({"name": "c", "path": "code.csv.gz"}, tmp_path)  # auto → code_stdin
    assert rec["category"] == "code"
    assert rec["tests"] == [{"input": "1 2\n", "output": "3\n", "kind": "stdin"}]
    assert rec["starter_code"] is None


def test_json_shapes(tmp_path):
    keyed = {
        "What is 2+2?": {"problem": "What is 2+2?", "answer": "4"},
        "What is 3+3?": {"problem": "What is 3+3?", "answer": "6"},
    }
    _write(tmp_path, "keyed.json", json.dumps(keyed).encode())
    assert [r["reference_answer"] for r in _records({"name": "k", "path": "keyed.json"}, tmp_path)] == [
        "4",
        "6",
    ]

    single = {"problem": "Only one", "answer": "1", "extra": {"a": 1}}
    _write(tmp_path, "single.jsonl", json.dumps(single, indent=2).encode())  # pretty-printed, .jsonl name
    assert [r["problem"] for r in _records({"name": "s", "path": "single.jsonl"}, tmp_path)] == ["Only one"]

    two = (
        json.dumps({"problem": "p1", "answer": "1"}, indent=2)
        + "\n"
        + json.dumps({"problem": "p2", "answer": "2"}, indent=2)
    )
    _write(tmp_path, "two.json", two.encode())
    recs = _records({"name": "t", "path": "two.json"}, tmp_path)
    assert [r["problem"] for r in recs] == ["p1", "p2"] and recs[1]["meta"]["origin"] == "two.json:5"

    lines = '{"problem": "l1", "answer": "1"}\n{"problem": "l2", "answer": "2"}\n'
    _write(tmp_path, "lines.json", lines.encode())  # JSONL under a .json name (as MATH test upstream)
    assert [r["meta"]["origin"] for r in _records({"name": "l", "path": "lines.json"}, tmp_path)] == [
        "lines.json:1",
        "lines.json:2",
    ]

    wrapped = {"data": [{"problem": "w1", "answer": "1"}]}
    _write(tmp_path, "wrapped.json", json.dumps(wrapped).encode())
    assert _records({"name": "w", "path": "wrapped.json"}, tmp_path)[0]["problem"] == "w1"

    _write(tmp_path, "bom.jsonl", b'\xef\xbb\xbf{"problem": "bom", "answer": "1"}\n')
    assert _records({"name": "b", "path": "bom.jsonl"}, tmp_path)[0]["problem"] == "bom"


def test_broken_json_document_record_is_an_error_with_line(tmp_path):
    """One broken record of a JSON array: an error naming its index and line, or with
    `skip` one ledger row while the other records are kept."""
    _write(tmp_path, "broken.json", b'[\n  {"problem": "a", "answer": "1"},\n  {"problem": "b",,}\n]\n')
    with pytest.raises(IngestError, match=r"broken\.json\[1\] \(line 3, byte 39\): invalid JSON"):
        _records({"name": "s", "path": "broken.json"}, tmp_path)
    items = list(iter_source(SourceSpec(name="s", path="broken.json", on_error="skip"), tmp_path))
    assert items[0]["problem"] == "a" and items[0]["meta"]["origin"] == "broken.json[0]"
    assert isinstance(items[1], IngestErrorItem) and items[1].raw == '{"problem": "b",,}'
    assert len(items) == 2


def test_limit_globs_lists_and_missing_files(tmp_path):
    for i in range(3):
        _write(
            tmp_path,
            f"part-{i}.jsonl",
            _encode([{"problem": f"f{i}-{j}", "answer": "1"} for j in range(4)], "jsonl"),
        )
    recs = _records({"name": "g", "path": "part-*.jsonl"}, tmp_path)
    assert [r["problem"] for r in recs][:5] == ["f0-0", "f0-1", "f0-2", "f0-3", "f1-0"] and len(recs) == 12
    recs = _records({"name": "g", "path": ["part-2.jsonl", "part-*.jsonl"], "limit": 6}, tmp_path)
    assert [r["problem"] for r in recs] == ["f2-0", "f2-1", "f2-2", "f2-3", "f0-0", "f0-1"]
    with pytest.raises(IngestError, match="file not found: .*nope.jsonl"):
        _records({"name": "g", "path": "nope.jsonl"}, tmp_path)
    with pytest.raises(IngestError, match="no file matches 'zzz-\\*.jsonl'"):
        _records({"name": "g", "path": "zzz-*.jsonl"}, tmp_path)
    with pytest.raises(IngestError, match="cannot tell the format"):
        _write(tmp_path, "data.txt", b"x")
        _records({"name": "g", "path": "data.txt"}, tmp_path)


def test_category_override_meta_fields_and_model(tmp_path):
    row = {
        "question": "Why is the sky blue?",
        "response": "<think>light scatters</think>Rayleigh scattering.",
        "label": True,
        "source": "upstream",
        "score": {"a": 1},
        "nested": {"proof": "deep"},
    }
    _write(tmp_path, "r.jsonl", _encode([row], "jsonl"))
    spec = {
        "name": "chat",
        "path": "r.jsonl",
        "category": "science",
        "model": "R1",
        "columns": {"problem": "question", "response": "response", "label": "label"},
        "meta_fields": ["source", "score"],
    }
    (rec,) = _records(spec, tmp_path)
    assert (
        rec["category"] == "science"
        and rec["meta"]["source"] == "upstream"
        and rec["meta"]["score"] == {"a": 1}
    )
    (resp,) = rec["responses"]
    assert resp["think"] == "light scatters" and resp["answer"] == "Rayleigh scattering."
    assert resp["model"] == "R1" and resp["meta"] == {"upstream_label": True}
    spec["columns"] = {"problem": "question", "response": "nested.proof"}
    assert _records(spec, tmp_path)[0]["responses"][0]["answer"] == "deep"


def test_fingerprint_tracks_spec_and_files(tmp_path):
    path = _write(tmp_path, "a.jsonl", _encode(ROWS, "jsonl"))
    spec = SourceSpec(name="a", path="a.jsonl")
    fp = source_fingerprint(spec, tmp_path)
    assert fp == source_fingerprint(SourceSpec(name="a", path="a.jsonl"), tmp_path)
    assert fp != source_fingerprint(SourceSpec(name="a", path="a.jsonl", limit=2), tmp_path)
    assert fp != source_fingerprint(SourceSpec(name="b", path="a.jsonl"), tmp_path)
    path.write_bytes(_encode(ROWS[:3], "jsonl"))
    assert fp != source_fingerprint(spec, tmp_path)


def test_source_spec_errors_name_the_key_and_the_valid_keys():
    with pytest.raises(SourceConfigError) as exc:
        SourceSpec.parse({"name": "x", "path": "a.jsonl", "presett": "gsm8k"}, where="pipe.yaml sources[0]")
    msg = str(exc.value)
    assert "pipe.yaml sources[0]: unknown key 'presett' (did you mean 'preset'?)" in msg
    assert "valid keys: name, path, hf, split, subset, config," in msg
    with pytest.raises(
        SourceConfigError, match="unknown preset 'gsm8kk' \\(did you mean 'gsm8k'\\?\\); valid presets: auto"
    ):
        SourceSpec.parse({"name": "x", "path": "a", "preset": "gsm8kk"})
    with pytest.raises(SourceConfigError, match="unknown column target 'problme'.*valid targets: problem"):
        SourceSpec.parse({"name": "x", "path": "a", "columns": {"problme": "q"}})
    with pytest.raises(SourceConfigError, match="exactly one of `path`"):
        SourceSpec.parse({"name": "x", "path": "a", "hf": "openai/gsm8k"})
    with pytest.raises(SourceConfigError, match="missing required key 'name'"):
        SourceSpec.parse({"path": "a"})
    with pytest.raises(SourceConfigError, match="on_error"):
        SourceSpec.parse({"name": "x", "path": "a", "on_error": "ignore"})
    assert SourceSpec.parse({"name": "x", "hf": "openai/gsm8k", "config": "main"}).subset == "main"


def test_hub_path_streams_local_json_files(tmp_path):
    pytest.importorskip("datasets")
    _write(
        tmp_path,
        "train.jsonl",
        _encode(
            [
                {"question": "Q1 ok?", "answer": "x\n#### 1,234"},
                {"question": "Q2 ok?", "answer": "y\n#### 7"},
            ],
            "jsonl",
        ),
    )
    spec = SourceSpec(name="hub", hf="json", data_files="train.jsonl", preset="gsm8k")
    recs = list(iter_source(spec, tmp_path))
    assert [r["reference_answer"] for r in recs] == ["1234", "7"]
    assert recs[0]["meta"]["origin"] == "hf:json/train#0" and recs[0]["category"] == "math"
    assert len(source_fingerprint(spec, tmp_path)) == 32
    auto = list(iter_source(SourceSpec(name="hub", hf="json", data_files=["train.jsonl"], limit=1), tmp_path))
    assert len(auto) == 1 and auto[0]["reference_answer"] == "1234"


def test_hub_rows_over_max_record_bytes_are_oversized_rows(tmp_path):
    """The size limit means the same for an ``hf:`` source as for a file: a row whose text
    passes it is a bad row (skip) or an error naming the row (fail)."""
    pytest.importorskip("datasets")
    rows = [{"question": "Q1 ok?", "answer": "x\n#### 1"}, {"question": "Q2 " + "é" * 3000, "answer": "y\n#### 2"},
            {"question": "Q3 ok?", "answer": "z\n#### 3"}]  # fmt: skip
    _write(tmp_path, "train.jsonl", _encode(rows, "jsonl"))
    spec = SourceSpec(name="hub", hf="json", data_files="train.jsonl", preset="gsm8k", on_error="skip",
                      max_record_bytes=4000)  # fmt: skip
    got = list(iter_source(spec, tmp_path))
    assert [r["reference_answer"] for r in got if isinstance(r, dict)] == ["1", "3"]
    [bad] = [r for r in got if not isinstance(r, dict)]
    assert (bad.reason, bad.location) == ("oversized", "hf:json/train#1")  # 6,000+ bytes of UTF-8 in 3,000 chars
    with pytest.raises(IngestError, match=r"hf:json/train#1: the row holds over 4,000 bytes"):
        list(iter_source(spec.model_copy(update={"on_error": "fail"}), tmp_path))
    assert len(list(iter_source(spec.model_copy(update={"max_record_bytes": 7000}), tmp_path))) == 3


def test_hub_unreachable_error_names_dataset_and_token():
    pytest.importorskip("datasets")
    code = (
        "from pathlib import Path\n"
        "from reasonmill.io.sources import SourceSpec, iter_source\n"
        "try:\n"
        "    list(iter_source(SourceSpec(name='s', hf='no-such-org/no-such-dataset'), Path('.')))\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=120
    ).stdout
    assert out.startswith("IngestError")
    assert "'no-such-org/no-such-dataset'" in out and "HF_TOKEN" in out and "Offline mode is on" in out
