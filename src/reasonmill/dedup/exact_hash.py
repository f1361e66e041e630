"""Exact-dedup hashes of a whole Arrow column at once.

:func:`reasonmill.text.normalize_for_hash` costs ~14 µs a record in Python, most of it in
one regex. For ASCII texts the same normalization is a few passes of numpy over the
column's UTF-8 bytes: lower case, whitespace runs collapsed to one space and trimmed,
spaces next to punctuation removed. Only the hashing stays a Python loop (~1 µs a row).
Rows with non-ASCII text (NFKC, Unicode whitespace and word characters) go through
``normalize_for_hash`` itself, so every hash equals the record-by-record one (tests
compare them on real data and on every ASCII character).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# str.split() whitespace among ASCII characters (\x1c-\x1f are separators to Python)
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
# characters that are neither a word character (\w on ASCII) nor a space: "punctuation"
_PUNCT = np.ones(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ ":
    _PUNCT[_c] = False


def _bytes_and_offsets(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string column (nulls as empty) and its row offsets from 0."""
    arr = pc.fill_null(col, "")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return data, offsets - offsets[0]


def normalize_ascii(col: pa.ChunkedArray | pa.Array) -> tuple[bytes, np.ndarray]:
    """``normalize_for_hash`` of every row of a string column, valid for its ASCII rows:
    (the normalized texts' bytes back to back, their row offsets).

    Every run of whitespace inside a row becomes one space, unless the character before
    or after the run is punctuation (then it goes); runs at the start or the end of a row
    go too."""
    data, offsets = _bytes_and_offsets(pc.ascii_lower(col))
    size = len(data)
    if not size:
        return b"", offsets
    ws = _WS[data]
    row_start = np.zeros(size + 1, dtype=bool)
    row_start[offsets[:-1]] = True  # (empty rows mark the next row's start, harmlessly)
    row_start[size] = True
    # runs of whitespace, cut at row boundaries: first and last byte of each
    first = ws.copy()
    first[1:] &= ~ws[:-1] | row_start[1:size]
    last = ws.copy()
    last[:-1] &= ~ws[1:] | row_start[1:size]
    starts, ends = np.flatnonzero(first), np.flatnonzero(last)
    # a run stays (as one space) between two characters of its row, neither punctuation
    inner = ~row_start[starts] & ~row_start[ends + 1]
    starts, ends = starts[inner], ends[inner]
    stay = starts[~(_PUNCT[data[starts - 1]] | _PUNCT[data[ends + 1]])]
    keep = ~ws
    keep[stay] = True
    out = np.where(ws, np.uint8(32), data)[keep]
    return out.tobytes(), np.searchsorted(np.flatnonzero(keep), offsets).astype(np.int64)


def column_hashes(
    columns: list[pa.ChunkedArray | pa.Array],
    extra: list | None,
    normalize: Callable[[str], str],
) -> np.ndarray:
    """The 64-bit blake2b hash (little-endian) of ``"\x1f".join(normalized fields [+ extra])``
    for every row, as ``_text_hash`` computes it: ASCII rows vectorized, the others with
    ``normalize``. ``extra`` holds one more (not normalized) string per row, or is None."""
    ascii_rows = np.ones(len(columns[0]), dtype=bool)
    fields = []  # per column, every row's normalized bytes
    for col in columns:
        ascii_rows &= np.asarray(pc.string_is_ascii(pc.fill_null(col, "")), dtype=bool)
        data, offsets = normalize_ascii(col)
        view = memoryview(data)
        fields.append([view[a:b] for a, b in pairwise(offsets.tolist())])
    if extra is not None:
        fields.append([(e or "").encode("utf-8") for e in extra])
    keys = fields[0] if len(fields) == 1 else [b"\x1f".join(parts) for parts in zip(*fields)]
    slow = np.flatnonzero(~ascii_rows).tolist()
    if slow:
        rows = pa.array(slow, type=pa.int64())
        values = [col.take(rows).to_pylist() for col in columns]
        for k, i in enumerate(slow):
            texts = [normalize(str(v[k] or "")) for v in values]
            if extra is not None:
                texts.append(extra[i] or "")
            keys[i] = "\x1f".join(texts).encode("utf-8")
    blake = hashlib.blake2b
    digests = b"".join([blake(key, digest_size=8).digest() for key in keys])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)
