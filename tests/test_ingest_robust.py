"""Inputs that never lose records (issue 13, part 4, the input side).

Each case is a real file written here (real zstandard, gzip and pyarrow; real GSM8K rows
from ../shared/data where it matters) that used to lose records without a word:

- a ``.zst`` cut inside its 6th frame of 14 gave 500 of 1,319 rows and exit 0;
- a truncated ``.gz``, a damaged Parquet page: errors that named no file;
- one byte that is not UTF-8 in a 1,000-record JSON array turned the whole file into one
  ledger row ("expected a JSON object, got list") with ``on_error: skip``;
- ``preset: auto`` decided from the first row only: a bad first row failed the file even
  with ``skip``, and rows of another shape were mapped by the wrong preset;
- a 1 GB line was read whole (11 GB of RAM with 2 workers).
"""

from __future__ import annotations

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
import yaml
import zstandard

from reasonmill import Pipeline
from reasonmill.io.readers import IngestError, IngestErrorItem, open_binary, read_file
from reasonmill.io.sources import SourceConfigError, SourceSpec, iter_source

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def gsm8k_lines(shared_data: Path) -> list[bytes]:
    """The 1,319 lines of the real GSM8K test file."""
    lines = (shared_data / "gsm8k" / "gsm8k_test.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == 1319
    return lines


def _frames(lines: list[bytes], per_frame: int = 100) -> list[bytes]:
    """One zstd frame per ``per_frame`` lines, as `zstd` of concatenated chunks gives."""
    cctx = zstandard.ZstdCompressor(write_checksum=True)
    return [cctx.compress(b"".join(lines[i : i + per_frame])) for i in range(0, len(lines), per_frame)]


def _pipeline(tmp_path: Path, source: dict, workers: int) -> Pipeline:
    cfg = {
        "name": "robust",
        "workdir": str(tmp_path / f"work{workers}"),
        "workers": workers,
        "shard_size": 250,
        "sources": [source],
        "stages": [],
        "exports": [],
    }
    return Pipeline.from_dict(cfg, base_dir=tmp_path)


def _ingested(tmp_path: Path, source: dict, workers: int) -> tuple[list[dict], list[dict]]:
    """(records, ledger rows) of the ingest stage of a real run."""
    _pipeline(tmp_path, source, workers).run(fresh=True)
    stage = tmp_path / f"work{workers}" / "00-ingest"
    records = [r for p in sorted(stage.glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    ledger = [r for p in sorted(stage.glob("ledger-*.parquet")) for r in pq.read_table(p).to_pylist()]
    return records, ledger


# --- truncated and damaged files --------------------------------------------------------------


def test_complete_multi_frame_zst_reads_every_row(tmp_path, gsm8k_lines):
    frames = _frames(gsm8k_lines)
    assert len(frames) == 14
    path = tmp_path / "gsm8k.jsonl.zst"
    # a skippable frame (as `zstd --patch-from`/seekable writers leave) must not confuse the check
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    path.write_bytes(b"".join(frames[:7]) + skippable + b"".join(frames[7:]))
    assert sum(1 for _ in read_file(path)) == 1319


@pytest.mark.parametrize("workers", [1, 2])
def test_zst_cut_inside_a_frame_is_an_error_naming_the_file(tmp_path, gsm8k_lines, workers):
    frames = _frames(gsm8k_lines)
    path = tmp_path / "gsm8k.jsonl.zst"
    path.write_bytes(b"".join(frames[:5]) + frames[5][: len(frames[5]) // 2])
    with pytest.raises(IngestError, match=r"gsm8k\.jsonl\.zst: truncated zstd file: it ends inside a frame"):
        list(read_file(path))
    source = {"name": "gsm8k", "path": "gsm8k.jsonl.zst", "on_error": "skip"}
    with pytest.raises(IngestError, match=r"gsm8k\.jsonl\.zst: truncated zstd"):
        _pipeline(tmp_path, source, workers).run(fresh=True)


def test_zst_cut_inside_the_last_checksum_is_an_error(tmp_path, gsm8k_lines):
    path = tmp_path / "one.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(b"".join(gsm8k_lines))[:-2])
    with pytest.raises(IngestError, match=r"one\.jsonl\.zst: truncated zstd file"):
        list(read_file(path))


def test_cli_run_on_a_truncated_zst_exits_non_zero_naming_the_file(tmp_path, gsm8k_lines):
    frames = _frames(gsm8k_lines)
    (tmp_path / "gsm8k.jsonl.zst").write_bytes(b"".join(frames[:5]) + frames[5][:300])
    cfg = {"name": "t", "workdir": "work", "sources": [{"name": "g", "path": "gsm8k.jsonl.zst"}], "stages": []}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), COLUMNS="300")
    run = subprocess.run(
        [sys.executable, "-m", "reasonmill.cli", "run", "p.yaml", "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode != 0
    assert "gsm8k.jsonl.zst: truncated zstd file" in " ".join(run.stderr.split())


@pytest.mark.parametrize("workers", [1, 2])
def test_truncated_gz_is_an_error_naming_the_file(tmp_path, gsm8k_lines, workers):
    data = gzip.compress(b"".join(gsm8k_lines))
    (tmp_path / "gsm8k.jsonl.gz").write_bytes(data[: len(data) * 2 // 3])
    source = {"name": "gsm8k", "path": "gsm8k.jsonl.gz", "on_error": "skip"}
    with pytest.raises(IngestError, match=r"gsm8k\.jsonl\.gz: truncated gzip file"):
        _pipeline(tmp_path, source, workers).run(fresh=True)


def test_not_gzip_and_unreadable_paths_are_named(tmp_path):
    (tmp_path / "x.jsonl.gz").write_bytes(b'{"problem": "plain text under a .gz name"}\n')
    with pytest.raises(IngestError, match=r"x\.jsonl\.gz: cannot read it as gzip \(Not a gzipped file"):
        list(read_file(tmp_path / "x.jsonl.gz"))
    (tmp_path / "x.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 40)
    with pytest.raises(IngestError, match=r"x\.jsonl\.zst: (cannot read it as zstd|truncated zstd)"):
        list(read_file(tmp_path / "x.jsonl.zst"))
    (tmp_path / "adir").mkdir()
    with pytest.raises(IngestError, match=r"adir: cannot open the file: Is a directory"):
        open_binary(tmp_path / "adir", "none")
    with pytest.raises(IngestError, match=r"gone\.jsonl: file not found"):
        list(read_file(tmp_path / "gone.jsonl"))


def test_corrupt_and_foreign_zst_and_empty_compressed_files_are_named(tmp_path, gsm8k_lines):
    """zstd's own errors name the file, as gzip's do; a 0-byte ``.gz`` or ``.zst`` (an
    interrupted download) is an error, not an empty input."""
    data = bytearray(zstandard.ZstdCompressor().compress(b"".join(gsm8k_lines[:50])))
    data[6] ^= 0xFF  # in the first block's header
    (tmp_path / "corrupt.jsonl.zst").write_bytes(bytes(data))
    with pytest.raises(IngestError, match=r"corrupt\.jsonl\.zst: cannot read it as zstd \(zstd decompress error: Data corr"):
        list(read_file(tmp_path / "corrupt.jsonl.zst", on_error="skip"))
    (tmp_path / "foreign.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd\xff" + b"x" * 100)
    with pytest.raises(IngestError, match=r"foreign\.jsonl\.zst: cannot read it as zstd \(zstd decompress error"):
        list(read_file(tmp_path / "foreign.jsonl.zst"))
    for name in ("empty.jsonl.gz", "empty.jsonl.zst"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(IngestError, match=rf"{name.replace('.', '[.]')}: the file is empty \(0 bytes\)"):
            list(read_file(tmp_path / name))
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert list(read_file(tmp_path / "empty.jsonl")) == []  # a plain empty file is an empty input


def test_csv_unclosed_quote_is_a_bad_row_naming_its_lines_not_a_merged_record(tmp_path):
    """An unclosed quote used to make one field of the next rows (exit 0, one record
    short, one answer wrong). Now the rows it took in are one bad row naming their lines."""
    text = (
        'problem,answer\n"What is 1 plus 1?",2\n"What is 2 plus 2?,4\n'
        '"What is 3 plus 3?",6\n"What is 4 plus 4?",8\n'
    )
    (tmp_path / "q.csv").write_text(text)
    items = list(read_file(tmp_path / "q.csv", on_error="skip", label="q.csv"))
    kept = [i[0] for i in items if type(i) is tuple]
    assert kept == [{"problem": "What is 1 plus 1?", "answer": "2"}, {"problem": "What is 4 plus 4?", "answer": "8"}]
    [bad] = [i for i in items if isinstance(i, IngestErrorItem)]
    assert bad.location == "q.csv:3" and "lines 3-4" in bad.error and "quote" in bad.error
    with pytest.raises(IngestError, match=r"q\.csv:3: invalid CSV"):
        list(read_file(tmp_path / "q.csv", on_error="fail", label="q.csv"))


def test_csv_byte_order_mark_and_duplicate_header_names(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffproblem,answer\nWhat is 1 plus 1?,2\n".encode())
    assert list(read_file(tmp_path / "bom.csv", label="bom.csv")) == [({"problem": "What is 1 plus 1?", "answer": "2"}, "bom.csv:2")]
    (tmp_path / "dup.csv").write_text("problem,answer,problem\nWhat is 3 plus 3?,6,note\n")
    with pytest.raises(IngestError, match=r"dup\.csv:1: the header names 'problem' more than once"):
        list(read_file(tmp_path / "dup.csv", on_error="skip", label="dup.csv"))


def test_a_csv_byte_that_is_not_utf8_is_a_bad_row_not_a_changed_text(tmp_path):
    (tmp_path / "l1.csv").write_bytes(b"problem,answer\nWhat is 1 plus 1?,2\nCaf\xe9 problem,3\nok,4\n")
    items = list(read_file(tmp_path / "l1.csv", on_error="skip", label="l1.csv"))
    assert [i[0]["problem"] for i in items if type(i) is tuple] == ["What is 1 plus 1?", "ok"]
    [bad] = [i for i in items if isinstance(i, IngestErrorItem)]
    assert bad.location == "l1.csv:3" and bad.error.startswith("invalid UTF-8 byte 0xe9 at line 3")
    (tmp_path / "h.csv").write_bytes(b"probl\xe8me,answer\nx,1\n")
    with pytest.raises(IngestError, match=r"h\.csv:1: invalid UTF-8 byte 0xe8 at line 1 \(the header\)"):
        list(read_file(tmp_path / "h.csv", on_error="skip", label="h.csv"))


def test_space_before_a_record_of_a_streamed_array_is_not_counted_as_its_size(tmp_path, monkeypatch):
    """Records of 60 bytes under a 100-byte limit, 500 spaces before each, read in pieces
    of 64 bytes: every record is kept."""
    from reasonmill.io import readers

    monkeypatch.setattr(readers, "_WHOLE_JSON_BYTES", 0)
    monkeypatch.setattr(readers, "_ARRAY_PIECE", 64)
    rows = [{"problem": f"p{i:03d}" + "x" * 30, "answer": str(i)} for i in range(40)]
    body = (",".join(" " * 500 + json.dumps(r) for r in rows)).encode()
    (tmp_path / "ws.json").write_bytes(b"[" + body + b" " * 500 + b"]")
    got = list(read_file(tmp_path / "ws.json", on_error="skip", label="ws.json", max_record_bytes=100))
    assert got == [(r, f"ws.json[{i}]") for i, r in enumerate(rows)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_named(tmp_path):
    path = tmp_path / "secret.jsonl"
    path.write_text('{"problem": "p", "answer": "1"}\n')
    path.chmod(0)
    with pytest.raises(IngestError, match=r"secret\.jsonl: cannot open the file: Permission denied"):
        list(read_file(path))


def test_damaged_parquet_page_and_truncated_parquet_are_named(tmp_path, gsm8k_lines):
    rows = [json.loads(line) for line in gsm8k_lines]
    path = tmp_path / "g.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=200, compression="zstd")
    data = bytearray(path.read_bytes())
    col = pq.ParquetFile(path).metadata.row_group(3).column(0)
    mid = col.data_page_offset + col.total_compressed_size // 2
    for i in range(mid, mid + 64):  # scramble the middle of a compressed data page
        data[i] ^= 0x5A
    (tmp_path / "damaged.parquet").write_bytes(bytes(data))
    with pytest.raises(IngestError, match=r"damaged\.parquet#\d+: damaged Parquet data from row \d+ on"):
        list(read_file(tmp_path / "damaged.parquet"))
    (tmp_path / "cut.parquet").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(IngestError, match=r"cut\.parquet: not a readable Parquet file \(Parquet magic bytes"):
        list(read_file(tmp_path / "cut.parquet"))


# --- a JSON document with a bad byte ------------------------------------------------------


def _array_with_bad_byte(gsm8k_lines: list[bytes], at_record: int, pretty: bool) -> tuple[bytes, list[dict], int]:
    """1,000 real GSM8K records as a JSON array, one byte of record ``at_record`` replaced
    by 0xff: (file bytes, records, offset of the bad byte)."""
    rows = [json.loads(line) for line in gsm8k_lines[:1000]]
    data = json.dumps(rows, indent=1 if pretty else None, ensure_ascii=False).encode()
    key = rows[at_record]["question"][:40].encode()
    assert data.count(key) == 1
    k = data.index(key) + 12
    return data[:k] + b"\xff" + data[k + 1 :], rows, k


def test_bad_byte_in_json_array_fails_with_byte_line_and_fix(tmp_path, gsm8k_lines):
    data, _, k = _array_with_bad_byte(gsm8k_lines, 500, pretty=True)
    (tmp_path / "gsm.json").write_bytes(data)
    line = data.count(b"\n", 0, k) + 1
    with pytest.raises(IngestError) as err:
        list(iter_source(SourceSpec(name="g", path="gsm.json"), tmp_path))
    msg = str(err.value)
    assert msg.startswith("gsm.json[500] (line ")
    assert f"invalid UTF-8 byte 0xff at byte {k:,} (line {line}) of the file" in msg
    assert "iconv" in msg and "on_error: skip" in msg


@pytest.mark.parametrize("pretty", [True, False])
@pytest.mark.parametrize("workers", [1, 2])
def test_bad_byte_in_json_array_with_skip_keeps_999_and_ledgers_one(tmp_path, gsm8k_lines, pretty, workers):
    data, rows, k = _array_with_bad_byte(gsm8k_lines, 731, pretty)
    (tmp_path / "gsm.json").write_bytes(data)
    records, ledger = _ingested(tmp_path, {"name": "g", "path": "gsm.json", "on_error": "skip"}, workers)
    assert len(records) == 999 and len(ledger) == 1
    assert [r["problem"] for r in records] == [r["question"] for i, r in enumerate(rows) if i != 731]
    assert json.loads(records[731]["meta"])["origin"] == "gsm.json[732]"
    row = ledger[0]
    assert row["reason"] == "malformed" and row["message"].startswith("gsm.json[731] (line ")
    assert f"0xff at byte {k:,}" in row["message"]
    raw = json.loads(row["record"])["raw"]
    assert rows[731]["answer"][:60] in raw  # the bad record's text is kept, the bad byte as U+FFFD
    assert "\ufffd" in raw


def test_bad_byte_in_wrapped_and_keyed_json_documents(tmp_path, gsm8k_lines):
    rows = [json.loads(line) for line in gsm8k_lines[:20]]
    for name, doc, where in [
        ("wrapped.json", {"data": rows}, "wrapped.json['data'][7]"),
        ("keyed.json", {r["question"]: r for r in rows}, "keyed.json[7]"),
    ]:
        data = json.dumps(doc).encode()
        k = data.index(rows[7]["answer"][:30].encode()) + 5
        (tmp_path / name).write_bytes(data[:k] + b"\xfe" + data[k + 1 :])
        items = list(read_file(tmp_path / name, on_error="skip", label=name))
        bad = [i for i in items if isinstance(i, IngestErrorItem)]
        assert len(items) == 20 and len(bad) == 1 and bad[0].location.startswith(where + " (line 1, byte ")
        assert [i[0]["question"] for i in items if type(i) is tuple] == [r["question"] for r in rows if r is not rows[7]]


@pytest.mark.parametrize("how", ["parsed whole", "read in pieces"])
def test_json_document_that_cannot_be_split_fails_with_the_place(tmp_path, monkeypatch, how):
    from reasonmill.io import readers

    head = b'[\n{"problem": "a", "answer": "1"},\n{"problem": "b'
    (tmp_path / "broken.json").write_bytes(head + b'\xff", "answer": [1, 2}\n]')  # "[1, 2}": unbalanced
    if how == "parsed whole":
        match = rf"broken\.json: invalid UTF-8 byte 0xff at byte {len(head)} \(line 3\).*cannot be split"
    else:  # as for a file over 32 MiB
        monkeypatch.setattr(readers, "_WHOLE_JSON_BYTES", 0)
        match = (rf"broken\.json: a bracket that does not match at byte {len(head) + 19} \(line 3\), in the record "
                 rf"that starts at byte 35 \(line 3\); invalid UTF-8 byte 0xff at byte {len(head)} \(line 3\).*"
                 r"cannot be split")  # fmt: skip
    with pytest.raises(IngestError, match=match):
        list(read_file(tmp_path / "broken.json", on_error="skip", label="broken.json"))


# --- a JSON array is read a piece at a time ---------------------------------------------------


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_a_json_array_read_in_pieces_gives_every_record_as_a_whole_parse(shared_data, monkeypatch, piece):
    """LiveCodeBench's array (1.1 MB, long strings full of escapes and brackets), read in
    pieces of 1, 7 and 4096 bytes so that strings, escapes and numbers straddle them."""
    from reasonmill.io import readers

    path = shared_data / "livecodebench" / "lcb_test_2408-2501_with_private_tests.json"
    want = json.loads(path.read_bytes())
    monkeypatch.setattr(readers, "_ARRAY_PIECE", piece)
    monkeypatch.setattr(readers, "_WHOLE_JSON_BYTES", 0)  # as for a file over 32 MiB
    got = list(read_file(path, on_error="fail", label="lcb.json"))
    assert [obj for obj, _ in got] == want
    assert [loc for _, loc in got] == [f"lcb.json[{i}]" for i in range(len(want))]


def test_a_json_array_holds_one_record_in_memory_and_skips_an_oversized_one(tmp_path, monkeypatch):
    """A 16 MB record (its string full of escaped quotes) under a 1 MB
    ``max_record_bytes``, read in 64 KiB pieces: it becomes an ``oversized`` row without
    ever being held whole (the traced peak stays a few times ``max_record_bytes``), and
    the records around it are kept."""
    import tracemalloc

    from reasonmill.io import readers

    big = {"problem": "x" * (12 << 20) + '\\"' * (1 << 20), "answer": "1"}
    rows = [{"problem": "a", "answer": "1"}, big, {"problem": "b", "answer": "2"}]
    path = tmp_path / "big.json"
    path.write_bytes(json.dumps(rows, indent=1).encode())
    del big, rows
    monkeypatch.setattr(readers, "_ARRAY_PIECE", 1 << 16)
    monkeypatch.setattr(readers, "_WHOLE_JSON_BYTES", 1 << 16)
    tracemalloc.start()
    try:
        items = list(read_file(path, on_error="skip", label="big.json", max_record_bytes=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [i[0]["problem"] for i in items if type(i) is tuple] == ["a", "b"]
    [bad] = [i for i in items if isinstance(i, IngestErrorItem)]
    assert bad.reason == "oversized" and bad.location.startswith("big.json[1] (line 6, byte ")
    assert "bytes, over `max_record_bytes` (1,048,576)" in bad.error
    assert path.stat().st_size > 16 << 20 and peak < 6 << 20, peak


def test_a_truncated_json_array_names_the_place_after_the_records_before_it(tmp_path, monkeypatch):
    from reasonmill.io import readers

    monkeypatch.setattr(readers, "_WHOLE_JSON_BYTES", 64)
    rows = [{"problem": f"p{i}", "answer": str(i)} for i in range(50)]
    data = json.dumps(rows).encode()
    path = tmp_path / "cut.json"
    path.write_bytes(data[: len(data) // 2])
    got = []
    with pytest.raises(IngestError, match=r"cut\.json: the file ends inside the array \(truncated\?\) at byte [\d,]+ \(line 1\)"):
        for item in read_file(path, on_error="skip", label="cut.json"):
            got.append(item)
    assert 20 <= len(got) < 50 and all(type(i) is tuple for i in got)


# --- preset: auto checks every row -------------------------------------------------------------


def _mixed_lines(gsm8k_lines: list[bytes], shared_data: Path) -> tuple[list[bytes], list[int]]:
    """A bad first row, 300 GSM8K rows, 20 MATH-500 rows (another shape) in the middle:
    (lines, indexes of the rows that do not fit)."""
    math = (shared_data / "math500" / "math500_test.jsonl").read_bytes().splitlines(keepends=True)[:20]
    lines = [b'{"title": "no problem text here", "idx": "bad-first"}\n'] + gsm8k_lines[:150] + math + gsm8k_lines[150:300]
    return lines, [0] + list(range(151, 171))


@pytest.mark.parametrize("workers", [1, 2])
def test_auto_preset_ledgers_rows_of_no_or_another_shape(tmp_path, gsm8k_lines, shared_data, workers):
    lines, bad = _mixed_lines(gsm8k_lines, shared_data)
    (tmp_path / "mixed.jsonl").write_bytes(b"".join(lines))
    records, ledger = _ingested(tmp_path, {"name": "m", "path": "mixed.jsonl", "on_error": "skip"}, workers)
    assert len(records) == 300 and len(ledger) == 21
    assert all(r["category"] == "math" and r["reference_answer"] for r in records)  # mapped by gsm8k
    assert [row["id"] for row in ledger] == [f"m@mixed.jsonl:{i + 1}" for i in bad]
    assert all(row["reason"] == "unmappable" for row in ledger)
    assert "cannot detect a preset" in ledger[0]["message"] and "upstream id 'bad-first'" in ledger[0]["message"]
    assert "shape of preset 'math', the file's first rows that of 'gsm8k'" in ledger[1]["message"]
    assert "upstream id 'test/precalculus/807.json'" in ledger[1]["message"]


def test_auto_preset_fails_at_the_first_row_that_does_not_fit(tmp_path, gsm8k_lines, shared_data):
    lines, _ = _mixed_lines(gsm8k_lines, shared_data)
    (tmp_path / "mixed.jsonl").write_bytes(b"".join(lines[1:]))
    with pytest.raises(IngestError) as err:
        list(iter_source(SourceSpec(name="m", path="mixed.jsonl"), tmp_path))
    msg = str(err.value)
    assert msg.startswith("mixed.jsonl:151 (upstream id 'test/precalculus/807.json'): source 'm': the row has the shape")
    assert "set `preset:`" in msg and "on_error: skip" in msg
    # the same rows with the preset given: the MATH rows are mapped by gsm8k on purpose
    given = list(iter_source(SourceSpec(name="m", path="mixed.jsonl", preset="gsm8k"), tmp_path))
    assert len(given) == 320


def test_auto_preset_checks_rows_of_json_documents_too(tmp_path, gsm8k_lines, shared_data):
    lines, bad = _mixed_lines(gsm8k_lines, shared_data)
    (tmp_path / "mixed.json").write_text(json.dumps([json.loads(x) for x in lines]))
    items = list(iter_source(SourceSpec(name="m", path="mixed.json", on_error="skip"), tmp_path))
    assert [i for i, x in enumerate(items) if isinstance(x, IngestErrorItem)] == bad


# --- max_record_bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_line_over_max_record_bytes_is_a_ledger_row_or_an_error(tmp_path, gsm8k_lines, workers):
    big = json.dumps({"question": "Long? " + "x" * 300_000, "answer": "#### 1"}).encode() + b"\n"
    (tmp_path / "g.jsonl").write_bytes(b"".join(gsm8k_lines[:100]) + big + b"".join(gsm8k_lines[100:200]))
    source = {"name": "g", "path": "g.jsonl", "on_error": "skip", "max_record_bytes": 100_000}
    records, ledger = _ingested(tmp_path, source, workers)
    assert len(records) == 200 and len(ledger) == 1
    assert ledger[0]["reason"] == "oversized" and ledger[0]["id"] == "g@g.jsonl:101"
    assert f"the line is {len(big) - 1:,} bytes, over `max_record_bytes` (100,000)" in ledger[0]["message"]
    assert json.loads(ledger[0]["record"])["raw"].startswith('{"question": "Long? xxx')
    del source["on_error"]
    with pytest.raises(IngestError, match=rf"g\.jsonl:101: the line is {len(big) - 1:,} bytes, over `max_record_bytes`"):
        _pipeline(tmp_path, source, workers).run(fresh=True)


def test_max_record_bytes_is_validated():
    with pytest.raises(SourceConfigError, match="max_record_bytes"):
        SourceSpec.parse({"name": "g", "path": "g.jsonl", "max_record_bytes": 0})


def test_csv_line_over_max_record_bytes_is_an_error_with_its_line(tmp_path):
    (tmp_path / "t.csv").write_text("problem,answer\nshort,1\n" + "long" * 1000 + ",2\nafter,3\n")
    with pytest.raises(IngestError, match=r"t\.csv:3: a line longer than `max_record_bytes` \(500\)"):
        list(iter_source(SourceSpec(name="c", path="t.csv", on_error="skip", max_record_bytes=500), tmp_path))


def test_csv_limit_counts_bytes_not_characters(tmp_path):
    """400 characters of 3-byte CJK are 1,200 bytes: over a 500-byte limit, though under
    500 characters; 150 of them (450 bytes) are within it."""
    (tmp_path / "t.csv").write_text("problem,answer\n" + "数" * 150 + ",1\n" + "学" * 400 + ",2\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r"t\.csv:3: a line of 1,202 bytes, longer than `max_record_bytes` \(500\)"):
        list(iter_source(SourceSpec(name="c", path="t.csv", on_error="skip", max_record_bytes=500), tmp_path))
    spec = SourceSpec(name="c", path="t.csv", on_error="skip", max_record_bytes=1300)
    assert [r["problem"] for r in iter_source(spec, tmp_path)] == ["数" * 150, "学" * 400]


def test_a_gigabyte_line_is_never_held_in_memory(tmp_path):
    """A 1 GiB line (zstd-compressed to a few dozen KB) between two good rows: read past in
    bounded pieces, so the reading process stays far below the line's size. (Peak RSS
    from VmHWM: ru_maxrss would carry the forking test process's own peak over exec.)"""
    cctx = zstandard.ZstdCompressor(level=3)
    buf = io.BytesIO()
    with cctx.stream_writer(buf, closefd=False) as w:
        w.write(b'{"problem": "before", "answer": "1"}\n{"problem": "')
        chunk = b"y" * (1 << 24)
        for _ in range(64):
            w.write(chunk)
        w.write(b'", "answer": "2"}\n{"problem": "after", "answer": "3"}\n')
    (tmp_path / "huge.jsonl.zst").write_bytes(buf.getvalue())
    code = (
        "from pathlib import Path\n"
        "from reasonmill.io.sources import SourceSpec, iter_source\n"
        "spec = SourceSpec(name='h', path='huge.jsonl.zst', on_error='skip', max_record_bytes=8 << 20)\n"
        "items = list(iter_source(spec, Path('.')))\n"
        "hwm = next(x for x in open('/proc/self/status') if x.startswith('VmHWM')).split()[1]\n"
        "print([type(i).__name__ for i in items], items[1].error[:60], int(hwm) // 1024)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    kinds, rest = run.stdout.rsplit("]", 1)
    assert kinds == "['dict', 'IngestErrorItem', 'dict'"
    size = len(b'{"problem": "') + (1 << 30) + len(b'", "answer": "2"}')
    assert f"the line is {size:,} bytes, over `max_record_bytes`" in rest
    peak_mib = int(rest.split()[-1])
    assert peak_mib < 300, f"peak RSS {peak_mib} MiB while reading past a 1 GiB line"


@pytest.mark.parametrize("buffer_size", [16, 64, 1 << 20])
def test_line_blocks_split_exactly_like_lines_whatever_the_buffer(buffer_size):
    """Lines of random lengths (blank ones, one without a final newline) come back exactly,
    each longer than ``max_bytes`` as an OversizedLine of its true size, wherever the
    buffer boundaries fall."""
    import random

    from reasonmill.io.readers import OversizedLine, read_line_block

    rng = random.Random(13)
    lines = [b"x" * rng.choice([0, 1, 5, 39, 40, 41, 200]) + b"\n" for _ in range(400)] + [b"tail"]
    data = b"".join(lines)
    for max_bytes in (40, 1000):
        fh = io.BufferedReader(io.BytesIO(data), buffer_size)
        got: list[bytes] = []
        while block := read_line_block(fh, max_bytes, hint=256):
            got += block
        want = [len(x.rstrip(b"\n")) if len(x.rstrip(b"\n")) > max_bytes else x for x in lines]
        assert [g.size if type(g) is OversizedLine else g for g in got] == want


def test_parquet_row_over_max_record_bytes_is_a_bad_row(tmp_path, gsm8k_lines):
    rows = [json.loads(line) for line in gsm8k_lines[:300]]
    rows[123] = {"question": "Huge? " + "z" * 2_000_000, "answer": "#### 1"}
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "g.parquet", row_group_size=100)
    spec = {"name": "g", "path": "g.parquet", "max_record_bytes": 1 << 20}
    items = list(iter_source(SourceSpec(**spec, on_error="skip"), tmp_path))
    bad = [i for i, x in enumerate(items) if isinstance(x, IngestErrorItem)]
    assert bad == [123] and items[123].reason == "oversized" and items[123].location == "g.parquet#123"
    assert [x["problem"] for x in items if isinstance(x, dict)] == [r["question"] for r in rows if r is not rows[123]]
    with pytest.raises(IngestError, match=r"g\.parquet#123: the row takes 2,000,\d+ bytes, over `max_record_bytes`"):
        list(iter_source(SourceSpec(**spec), tmp_path))


def test_json_arrays_with_brackets_escapes_and_unicode_in_strings_split_at_any_piece_size(tmp_path, monkeypatch):
    """Seeded random arrays whose strings hold quotes, backslashes, brackets, commas,
    colons and non-ASCII text, pretty-printed or not, read in pieces of 1 to 64 bytes:
    the same records, in order, at the same indexes, as a whole parse."""
    import random

    from reasonmill.io import readers

    rng = random.Random(11)
    alphabet = ["a", "\\", '"', "\n", "[", "]", "{", "}", ",", ":", "\u00e9", "\u2713", " "]

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))

    def value(depth: int = 0):
        r = rng.random()
        if depth > 3 or r < 0.3:
            return rng.choice([1, -2.5, True, None, text(), "x" * rng.randint(0, 50)])
        if r < 0.6:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {text(): value(depth + 1) for _ in range(rng.randint(0, 4))}

    monkeypatch.setattr(readers, "_WHOLE_JSON_BYTES", 0)
    path = tmp_path / "a.json"
    for _ in range(150):
        rows = [{"id": i, "v": value()} for i in range(rng.randint(0, 15))]
        path.write_text(json.dumps(rows, indent=rng.choice([None, 1]), ensure_ascii=rng.random() < 0.5), encoding="utf-8")
        monkeypatch.setattr(readers, "_ARRAY_PIECE", rng.choice([1, 2, 3, 7, 64]))
        got = list(read_file(path, on_error="fail", label="a.json"))
        assert got == [(row, f"a.json[{i}]") for i, row in enumerate(rows)]


@pytest.mark.parametrize("workers", [1, 2])
def test_integers_beyond_64_bits_are_read_exactly(tmp_path, workers):
    """orjson reads 123456789012345678901234567890 as a float (1.2345678901234568e+29): an
    answer silently changed, which then matched a wrong response. Such records are read
    again exactly, in JSONL (serial and parallel ingest) and JSON documents."""
    big, neg = 123456789012345678901234567890, -9223372036854775809
    lines = [json.dumps({"problem": f"p{i}", "answer": v}) for i, v in enumerate([big, neg, 7, 1.5e30])]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    got = [obj["answer"] for obj, _ in read_file(tmp_path / "a.jsonl")]
    assert got == [big, neg, 7, 1.5e30] and type(got[0]) is int and type(got[1]) is int
    (tmp_path / "b.json").write_text(json.dumps([{"problem": "p", "answer": big}]))
    assert [obj["answer"] for obj, _ in read_file(tmp_path / "b.json")] == [big]
    records, _ = _ingested(tmp_path, {"name": "s", "path": "a.jsonl"}, workers)
    assert [r["reference_answer"] for r in records][:2] == [str(big), str(neg)]


def test_a_json_file_holding_one_chat_is_one_record(tmp_path):
    chat = {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}
    (tmp_path / "chat.json").write_text(json.dumps(chat))
    assert list(read_file(tmp_path / "chat.json", label="chat.json")) == [(chat, "chat.json[0]")]
    wrapped = {"data": [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "2"}]}
    (tmp_path / "data.json").write_text(json.dumps(wrapped))
    assert [o for o, _ in read_file(tmp_path / "data.json")] == wrapped["data"]


def test_a_directory_given_as_an_input_file_is_named_as_one(tmp_path):
    (tmp_path / "data.jsonl").mkdir()
    with pytest.raises(IngestError, match=r"data\.jsonl: a directory, not a file"):
        list(read_file(tmp_path / "data.jsonl"))
    with pytest.raises(SourceConfigError if False else IngestError, match=r"is a directory; name its files, or a pattern"):
        list(iter_source(SourceSpec(name="s", path="data.jsonl"), tmp_path))
