"""The column-wise exact-dedup hash equals ``normalize_for_hash`` + blake2b row by row."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pyarrow as pa
import pytest

from reasonmill.dedup.exact_hash import column_hashes, normalize_ascii
from reasonmill.text import normalize_for_hash


def _row_hash(*fields: str) -> int:
    key = "\x1f".join(fields).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def _normalized(col: pa.Array | pa.ChunkedArray) -> list[str]:
    data, offsets = normalize_ascii(col)
    return [data[offsets[i] : offsets[i + 1]].decode("ascii") for i in range(len(offsets) - 1)]


def _random_ascii(rng: random.Random, n: int) -> list[str | None]:
    every = [chr(i) for i in range(128)]
    dense = list(" \t\n\r\x0b\x0c\x1c\x1f,.;()[]$\\aAzZ09_-")  # whitespace and punctuation next to each other
    out: list[str | None] = []
    for _ in range(n):
        pool = every if rng.random() < 0.4 else dense
        out.append("".join(rng.choice(pool) for _ in range(rng.randint(0, 14))))
    return out + [None, "", " ", "   ", "a", " a ", "a , b", "( ( x ) )", ", ,", "A\tB\n\nC", "x_ y", "x -y"]


def test_every_ascii_row_normalizes_like_python():
    rng = random.Random(7)
    values = _random_ascii(rng, 30000)
    col = pa.array(values, type=pa.string())
    assert _normalized(col) == [normalize_for_hash(v or "") for v in values]
    # a slice (non-zero array offset) and a chunked column give the same rows
    assert _normalized(col.slice(5, 777)) == [normalize_for_hash(v or "") for v in values[5:782]]
    chunked = pa.chunked_array([col.slice(0, 100), col.slice(100, 50), col.slice(150)])
    assert _normalized(chunked) == _normalized(col)


def test_an_empty_or_all_blank_column():
    assert _normalized(pa.array([], type=pa.string())) == []
    assert _normalized(pa.array([None, "", "  \n"], type=pa.string())) == ["", "", ""]
    assert column_hashes([pa.array(["", None], type=pa.string())], None, normalize_for_hash).tolist() == [_row_hash("")] * 2


@pytest.mark.parametrize("with_extra", [False, True])
def test_hashes_with_non_ascii_rows_several_fields_and_an_extra(with_extra):
    rng = random.Random(3)
    a = _random_ascii(rng, 500) + ["Ｃｏｍｐｕｔｅ 3 + 5 .", "求 x 的值 ，其中 x+1=2", "naïve  café , ok", "a\u00a0b", "x\u2028y"]
    b = list(reversed(a))
    extra = [rng.choice(["math", None, "code", "é"]) for _ in a] if with_extra else None
    got = column_hashes([pa.array(a, type=pa.string()), pa.array(b, type=pa.string())], extra, normalize_for_hash)
    want = [
        _row_hash(normalize_for_hash(x or ""), normalize_for_hash(y or ""), *([e or ""] if with_extra else []))
        for x, y, e in zip(a, b, extra or [None] * len(a))
    ]
    assert got.dtype == np.uint64 and got.tolist() == want


def test_real_problems_hash_like_python(shared_data):
    texts = []
    for rel, field in [
        ("math_train/math_train_rllm.json", "problem"),
        ("gsm8k/gsm8k_train.jsonl", "question"),
        ("livecodebench/lcb_train_pre2408.json", "problem"),
        ("olympiadbench/olympiadbench_test.jsonl", "question"),
        ("math_test_full/math_test_5000.jsonl", "problem"),
    ]:
        path = shared_data / rel
        if not path.exists():
            continue
        rows = json.loads(path.read_text()) if path.suffix == ".json" else [json.loads(line) for line in path.open()]
        texts += [r.get(field) for r in rows[:6000]]
    assert len(texts) > 12000
    col = pa.array(texts, type=pa.string())
    got = column_hashes([col], None, normalize_for_hash)
    assert got.tolist() == [_row_hash(normalize_for_hash(t or "")) for t in texts]
