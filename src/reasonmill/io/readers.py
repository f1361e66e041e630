"""Streaming readers for local files: JSONL, JSON, Parquet and CSV, plain, gzip or zstd.

Every reader yields ``(raw_dict, location)`` pairs, or an ``IngestErrorItem`` for a row
that cannot be parsed when the caller asked to skip bad rows. ``location`` tells a user
where to look: ``file:line`` (JSONL, CSV), ``file[index]`` (JSON documents) or
``file#row`` (Parquet). Nothing is dropped silently: a malformed line either stops the
run with an ``IngestError`` naming ``file:line`` and the fix, or comes back as an error
item the engine writes to the ledger with its raw text.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import orjson

OnError = Literal["fail", "skip"]
Item = tuple[dict, str]

_SNIPPET = 160
_PARQUET_BATCH = 4096
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}
_COMPRESSIONS = {".gz": "gz", ".gzip": "gz", ".zst": "zst", ".zstd": "zst"}


class IngestError(Exception):
    """A source cannot be read; the message names the location and the fix."""


@dataclass(frozen=True, slots=True)
class IngestErrorItem:
    """A row that could not be read or mapped, kept so the engine can ledger it.

    ``reason`` is ``malformed`` (the row does not parse) or ``unmappable`` (it parses,
    but the preset finds no problem text in it). ``raw`` is the row's text as read.
    """

    location: str
    raw: str
    error: str
    reason: str = "malformed"
    source: str | None = None


def snippet(text: str, n: int = _SNIPPET) -> str:
    text = text.strip()
    return text if len(text) <= n else text[:n] + "…"


def skip_hint(source: str | None) -> str:
    who = f" of source {source!r}" if source else ""
    return f"Fix the input, or set `on_error: skip`{who} to send bad rows to the ledger and go on."


def detect_format(path: str | Path, fmt: str = "auto", compression: str = "auto") -> tuple[str, str]:
    """(format, compression) from the file name unless given: ``x.jsonl.zst`` → (jsonl, zst)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    comp = compression
    if comp == "auto":
        comp = _COMPRESSIONS.get(suffixes[-1], "none") if suffixes else "none"
    if fmt == "auto":
        core = suffixes[:-1] if suffixes and suffixes[-1] in _COMPRESSIONS else suffixes
        fmt = _EXTENSIONS.get(core[-1]) if core else None  # type: ignore[assignment]
        if fmt is None:
            raise IngestError(
                f"{path}: cannot tell the format from the file name; set `format:` to one of "
                "jsonl, json, parquet, csv (and `compression:` to none, gz or zst if needed)"
            )
    return fmt, comp


def open_binary(path: Path, compression: str) -> IO[bytes]:
    """A buffered binary stream over the decompressed bytes."""
    if compression == "gz":
        return gzip.open(path, "rb")
    if compression == "zst":
        import zstandard

        raw = open(path, "rb")
        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True, read_across_frames=True)
        return io.BufferedReader(reader, buffer_size=1 << 20)  # type: ignore[arg-type]
    return open(path, "rb", buffering=1 << 20)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


PRETTY = object()  # marker: line 1 opens a pretty-printed JSON document, not JSONL


def parse_jsonl_line(
    line: bytes, lineno: int, label: str, on_error: OnError = "fail", source: str | None = None
) -> Item | IngestErrorItem | object | None:
    """One line of a JSONL file: ``(obj, "label:lineno")``, an ``IngestErrorItem`` (or an
    ``IngestError`` with ``on_error: fail``), None for a blank line, or ``PRETTY`` when
    line 1 is a lone ``{`` / ``[`` (the file is a pretty-printed JSON document)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if not line.strip():
            return None
        if lineno == 1:
            if line.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
                try:
                    obj = orjson.loads(line[3:])
                except orjson.JSONDecodeError:
                    pass
                else:
                    if type(obj) is dict:
                        return obj, f"{label}:{lineno}"
            if line.strip() in (b"{", b"["):
                return PRETTY
        return _bad(f"{label}:{lineno}", _decode(line), f"invalid JSON: {exc}", on_error, source)
    if type(obj) is dict:
        return obj, f"{label}:{lineno}"
    return _bad(
        f"{label}:{lineno}",
        _decode(line),
        f"expected a JSON object, got {type(obj).__name__}",
        on_error,
        source,
    )


def read_jsonl(
    path: Path,
    compression: str,
    on_error: OnError = "fail",
    source: str | None = None,
    label: str | None = None,
) -> Iterator[Item | IngestErrorItem]:
    """One JSON object per line. Blank lines are skipped; a file that turns out to hold
    pretty-printed objects (first line ``{`` alone) is read as a JSON document instead."""
    label = label or str(path)
    parse = parse_jsonl_line
    with open_binary(path, compression) as fh:
        for lineno, line in enumerate(fh, 1):
            item = parse(line, lineno, label, on_error, source)
            if item is None:
                continue
            if item is PRETTY:
                break
            yield item  # type: ignore[misc]
        else:
            return
    yield from read_json(path, compression, on_error, source, label)


def _bad(
    location: str, raw: str, error: str, on_error: OnError, source: str | None, reason: str = "malformed"
) -> IngestErrorItem:
    if on_error == "fail":
        raise IngestError(f"{location}: {error}: {snippet(raw)!r}. {skip_hint(source)}")
    return IngestErrorItem(location=location, raw=raw, error=error, reason=reason, source=source)


def read_json(
    path: Path,
    compression: str,
    on_error: OnError = "fail",
    source: str | None = None,
    label: str | None = None,
) -> Iterator[Item | IngestErrorItem]:
    """A JSON document: an array of records, a dict of records keyed by anything (e.g.
    SkyThought's file keyed by problem text), a ``{"data": [...]}`` wrapper, a single
    object, or several pretty-printed objects one after another. Files that are really
    JSONL under a ``.json`` name are read line by line.

    The document is parsed whole (JSON arrays cannot be split without a streaming
    parser); use JSONL or Parquet for inputs larger than memory.
    """
    label = label or str(path)
    with open_binary(path, compression) as fh:
        data = fh.read()
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if _first_line_is_object(data):  # really JSONL under a .json name
            del data
            yield from read_jsonl(path, compression, on_error, source, label)
            return
        docs = _split_documents(data)
        if docs is None:
            line = getattr(exc, "lineno", "?")
            raise IngestError(
                f"{label}:{line}: not valid JSON ({exc}). A JSON document cannot be split into records "
                "around the error, so `on_error: skip` does not apply; fix the file or convert it to JSONL."
            ) from None
        for i, (obj, text, lineno) in enumerate(docs):
            if type(obj) is dict:
                yield obj, f"{label}:{lineno}"
            else:
                yield _bad(
                    f"{label}:{lineno}",
                    _decode(text),
                    f"expected a JSON object, got {type(obj).__name__}",
                    on_error,
                    source,
                )
        return
    del data
    yield from _records_of(doc, label, on_error, source)


def _records_of(
    doc: object, label: str, on_error: OnError, source: str | None
) -> Iterator[Item | IngestErrorItem]:
    if isinstance(doc, list):
        for i, obj in enumerate(doc):
            if type(obj) is dict:
                yield obj, f"{label}[{i}]"
            else:
                yield _bad(
                    f"{label}[{i}]",
                    orjson.dumps(obj).decode(),
                    f"expected a JSON object, got {type(obj).__name__}",
                    on_error,
                    source,
                )
        return
    if isinstance(doc, dict):
        values = list(doc.values())
        if (
            len(values) == 1
            and isinstance(values[0], list)
            and values[0]
            and all(type(v) is dict for v in values[0])
        ):
            key = next(iter(doc))
            yield from _records_of(values[0], f"{label}[{key!r}]", on_error, source)
            return
        if len(values) > 1 and all(type(v) is dict for v in values) and _same_shape(values):
            for i, obj in enumerate(values):
                yield obj, f"{label}[{i}]"
            return
        yield doc, f"{label}[0]"
        return
    yield _bad(
        f"{label}[0]",
        orjson.dumps(doc).decode(),
        f"expected JSON records, got {type(doc).__name__}",
        on_error,
        source,
    )


def _first_line_is_object(data: bytes) -> bool:
    for line in data.split(b"\n", 50)[:50]:
        if line.strip():
            try:
                return type(orjson.loads(line)) is dict
            except orjson.JSONDecodeError:
                return False
    return False


def _same_shape(values: list[dict]) -> bool:
    """A dict whose values are dicts with the same keys is a dict of records."""
    first = set(values[0])
    return all(set(v) == first for v in values[: min(len(values), 50)])


def _split_documents(data: bytes) -> list[tuple[object, bytes, int]] | None:
    """Concatenated JSON values (pretty-printed objects back to back), or None."""
    import json

    text = _decode(data)
    decoder = json.JSONDecoder()
    out: list[tuple[object, bytes, int]] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            return out or None
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError:
            return None
        out.append((obj, text[pos:end].encode(), text.count("\n", 0, pos) + 1))
        pos = end


def read_csv(
    path: Path,
    compression: str,
    on_error: OnError = "fail",
    source: str | None = None,
    label: str | None = None,
) -> Iterator[Item | IngestErrorItem]:
    """A header row then records; cells are strings (empty cell → None)."""
    label = label or str(path)
    if csv.field_size_limit() < sys.maxsize // 2:  # reasoning traces exceed the 128 KiB default
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open_binary(path, compression) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise IngestError(f"{label}:1: unreadable CSV header ({exc})") from None
        width = len(header)
        prev = reader.line_num
        while True:
            start = prev + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                prev = reader.line_num
                yield _bad(f"{label}:{start}", "", f"invalid CSV: {exc}", on_error, source)
                continue
            prev = reader.line_num
            if not row:
                continue
            if len(row) != width:
                raw = ",".join(row)
                yield _bad(
                    f"{label}:{start}",
                    raw,
                    f"row has {len(row)} fields, the header has {width}",
                    on_error,
                    source,
                )
                continue
            yield {k: (v if v != "" else None) for k, v in zip(header, row)}, f"{label}:{start}"


def read_parquet(
    path: Path,
    compression: str,
    on_error: OnError = "fail",
    source: str | None = None,
    label: str | None = None,
) -> Iterator[Item | IngestErrorItem]:
    """Row-group batches, never the whole file at once. A compressed Parquet file is first
    decompressed to a temporary file, because Parquet needs random access."""
    import pyarrow.parquet as pq

    label = label or str(path)
    tmp = None
    try:
        if compression != "none":
            tmp = tempfile.TemporaryFile()
            with open_binary(path, compression) as fh:
                shutil.copyfileobj(fh, tmp, 1 << 20)
            tmp.seek(0)
        try:
            pf = pq.ParquetFile(tmp if tmp is not None else path)
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for bad files
            raise IngestError(
                f"{label}: not a readable Parquet file ({exc}); check `format:` and `compression:`"
            ) from None
        row = 0
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH):
            for obj in batch.to_pylist():
                yield obj, f"{label}#{row}"
                row += 1
    finally:
        if tmp is not None:
            tmp.close()


READERS = {"jsonl": read_jsonl, "json": read_json, "csv": read_csv, "parquet": read_parquet}


def read_file(
    path: Path,
    fmt: str = "auto",
    compression: str = "auto",
    on_error: OnError = "fail",
    source: str | None = None,
    label: str | None = None,
) -> Iterator[Item | IngestErrorItem]:
    """Read one file of any supported format; see the module docstring for what comes out."""
    fmt, comp = detect_format(path, fmt, compression)
    if not Path(path).is_file():
        raise IngestError(f"{path}: file not found")
    return READERS[fmt](Path(path), comp, on_error, source, label)
