"""Streaming readers for local files: JSONL, JSON, Parquet and CSV, plain, gzip or zstd.

Every reader yields ``(raw_dict, location)`` pairs, or an ``IngestErrorItem`` for a row
that cannot be parsed when the caller asked to skip bad rows. ``location`` tells a user
where to look: ``file:line`` (JSONL, CSV), ``file[index]`` (JSON documents) or
``file#row`` (Parquet). Nothing is dropped silently: a malformed line either stops the
run with an ``IngestError`` naming ``file:line`` and the fix, or comes back as an error
item the engine writes to the ledger with its raw text.

Reading itself never fails without a path: a missing or unreadable file, a truncated
``.gz`` or ``.zst``, a corrupt Parquet page all raise ``IngestError`` naming the file.
A line longer than ``max_record_bytes`` is never held in memory: it is read past in
bounded pieces and stands in the stream as an ``OversizedLine``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Literal

import orjson

OnError = Literal["fail", "skip"]
Item = tuple[dict, str]

_SNIPPET = 160
_PARQUET_BATCH = 4096
MAX_RECORD_BYTES = 64 << 20  # default bound on one JSONL line / CSV row
_SKIP_PIECE = 1 << 20  # how much of an oversized line is read at a time
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


class _NamedStream(io.RawIOBase):
    """A raw stream over ``inner`` whose read errors name ``path``, and whose end is
    checked by ``at_eof`` (a zstd file cut inside a frame reads as a clean end otherwise)."""

    def __init__(self, inner: IO[bytes], path: Path, kind: str, at_eof: object = None,
                 errors: tuple[type[Exception], ...] = ()):  # fmt: skip
        """``errors``: the decompressor's own exception types, besides OSError and zlib's."""
        self._inner, self._path, self._kind, self._at_eof = inner, path, kind, at_eof
        self._errors = (OSError, zlib.error, ValueError, *errors)
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def, override]
        try:
            n = self._inner.readinto(buf)  # type: ignore[attr-defined]
        except EOFError as exc:  # gzip: "Compressed file ended before the end-of-stream marker"
            raise IngestError(f"{self._path}: truncated {self._kind} file ({exc}); {_REFETCH}") from None
        except self._errors as exc:  # BadGzipFile, corrupt data, zstd errors
            raise IngestError(f"{self._path}: cannot read it as {self._kind} ({exc}); {_CHECK}") from None
        self._read += n
        if not n and not self._read and self._kind != "a plain" and _size(self._path) == 0:
            raise IngestError(
                f"{self._path}: the file is empty (0 bytes), so not {self._kind} data; {_REFETCH}"
            )
        if not n and self._at_eof is not None:
            check, self._at_eof = self._at_eof, None
            try:
                problem = check(self._path)  # type: ignore[operator]
            except OSError as exc:
                raise IngestError(f"{self._path}: cannot check the end of the file ({exc})") from None
            if problem:
                raise IngestError(f"{self._path}: truncated {self._kind} file: {problem}; {_REFETCH}")
        return n

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


_REFETCH = "the file was cut short (an interrupted download or copy?): fetch or write it again"
_CHECK = "check that it is what `format:` and `compression:` say, and not damaged"


def open_binary(path: Path, compression: str) -> IO[bytes]:
    """A buffered binary stream over the decompressed bytes. Every error while opening
    or reading names ``path``; a truncated ``.gz`` or ``.zst`` is an error at its end."""
    path = Path(path)
    try:
        raw = open(path, "rb", buffering=0)
    except OSError as exc:
        raise IngestError(f"{path}: cannot open the file: {exc.strerror or exc}") from None
    inner: IO[bytes]
    if compression == "gz":
        inner = gzip.GzipFile(fileobj=raw, mode="rb")
        stream = _NamedStream(_Closing(inner, raw), path, "gzip")
    elif compression == "zst":
        import zstandard

        dctx = zstandard.ZstdDecompressor()
        inner = dctx.stream_reader(raw, closefd=True, read_across_frames=True)  # type: ignore[assignment]
        stream = _NamedStream(inner, path, "zstd", zstd_truncation, (zstandard.ZstdError,))
    else:
        stream = _NamedStream(raw, path, "a plain")
    return io.BufferedReader(stream, buffer_size=1 << 20)  # type: ignore[return-value]


class _Closing:
    """``inner`` whose ``close`` also closes ``raw`` (GzipFile leaves a given fileobj open)."""

    def __init__(self, inner: IO[bytes], raw: IO[bytes]):
        self._inner, self._raw = inner, raw

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        return self._inner.readinto(buf)  # type: ignore[attr-defined]

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._raw.close()


_ZSTD_MAGIC = 0xFD2FB528


def zstd_truncation(path: Path) -> str | None:
    """Why a zstd file ends inside a frame, or None when every frame is complete.

    ``zstandard``'s stream reader returns a clean end of data when the file stops in the
    middle of a frame, so a cut file would lose its tail without a word. This walks the
    frame and block headers (RFC 8878 §3.1), seeking over the block contents: a few
    bytes read per 128 KiB block, no decompression."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        pos = 0
        while pos < size:
            fh.seek(pos)
            head = fh.read(5)
            magic = int.from_bytes(head[:4], "little")
            if len(head) >= 4 and magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame
                fh.seek(pos + 4)
                n = fh.read(4)
                if len(n) < 4:
                    break
                pos += 8 + int.from_bytes(n, "little")
                continue
            if magic != _ZSTD_MAGIC or len(head) < 5:
                return None if len(head) >= 4 else f"{size - pos} stray bytes after the last frame"
            fhd = head[4]
            single = fhd >> 5 & 1
            pos += 5 + (1 - single) + (0, 1, 2, 4)[fhd & 3] + (single, 2, 4, 8)[fhd >> 6]
            while True:
                fh.seek(pos)
                block = fh.read(3)
                if len(block) < 3:
                    return f"it ends inside a frame at byte {size} (a block header was due at byte {pos})"
                h = int.from_bytes(block, "little")
                pos += 3 + (1 if (h >> 1 & 3) == 1 else h >> 3)
                if h & 1:
                    break
            pos += 4 * (fhd >> 2 & 1)
        if pos > size:
            return f"it ends inside a frame: {size} bytes, but the last frame needs {pos}"
    return None


class OversizedLine(bytes):
    """Stands in the line stream for a line longer than ``max_record_bytes``: the line's
    first bytes (for the ledger), ``size`` (the line's length) and ``limit``. The line
    itself was never held in memory. Not JSON, not blank: parsing it gives an error item."""

    size: int
    limit: int


def read_line_block(fh: io.BufferedReader, max_bytes: int, hint: int = 1 << 22) -> list[bytes]:
    """The next lines of ``fh`` (with their ``\n``), about ``hint`` bytes of them; empty
    at the end. No line longer than ``max_bytes`` is ever read whole: such a line is read
    past in pieces and comes back as an ``OversizedLine``.

    Fast path: the complete lines already in ``fh``'s buffer are split off at C speed
    (``readlines`` up to the buffer's last newline); they cannot be longer than the buffer.
    Only a line that runs past the buffer is read with a bounded ``readline``."""
    cap = max_bytes + 1
    lines: list[bytes] = []
    total = 0
    while total < hint:
        buffered = fh.peek(1)
        if not buffered:
            break
        k = buffered.rfind(b"\n")
        if 0 < k < cap:  # every complete line in the buffer is within max_bytes
            lines += fh.readlines(k)  # stops after the line that takes it past k bytes: at k
            total += k + 1
            continue
        line = fh.readline(cap)
        if not line:
            break
        if len(line) == cap and line[-1] != 10:  # no "\n" within max_bytes + 1 bytes
            line = _skip_rest(fh, line, max_bytes)
        lines.append(line)
        total += len(line)
    return lines


def _skip_rest(fh: IO[bytes], head: bytes, limit: int) -> OversizedLine:
    """Read past the rest of a line begun by ``head``, a piece at a time."""
    size = len(head)
    piece = head
    while piece and piece[-1] != 10:
        piece = fh.readline(_SKIP_PIECE)
        size += len(piece)
    marker = OversizedLine(b"\x00" + head[: 4 * _SNIPPET])
    marker.size = size - (1 if piece else 0)  # without its "\n"
    marker.limit = limit
    return marker


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


PRETTY = object()  # marker: line 1 opens a pretty-printed JSON document, not JSONL


#: orjson reads an integer literal beyond 64 bits as a float (123456789012345678901234567890
#: becomes 1.2345678901234568e+29, an answer silently changed); such a record is read again
#: by the standard library, which keeps it exact. Checked on the top-level values only
#: (answers, ids), where it matters and costs nothing.
_BEYOND_INT64 = 2.0**63


def _has_rounded_int(obj: dict) -> bool:
    return any(type(v) is float and abs(v) >= _BEYOND_INT64 and v.is_integer() for v in obj.values())


def _exact(obj: object, text: bytes | str) -> object:
    """``obj`` parsed from ``text`` by orjson, or parsed again exactly when it holds a
    rounded integer (see ``_BEYOND_INT64``)."""
    if type(obj) is dict and _has_rounded_int(obj):
        return json.loads(text)
    return obj


def parse_jsonl_line(
    line: bytes, lineno: int, label: str, on_error: OnError = "fail", source: str | None = None
) -> Item | IngestErrorItem | object | None:
    """One line of a JSONL file: ``(obj, "label:lineno")``, an ``IngestErrorItem`` (or an
    ``IngestError`` with ``on_error: fail``), None for a blank line, or ``PRETTY`` when
    line 1 is a lone ``{`` / ``[`` (the file is a pretty-printed JSON document)."""
    try:
        obj = _exact(orjson.loads(line), line)
    except orjson.JSONDecodeError as exc:
        if type(line) is OversizedLine:
            return _bad(
                f"{label}:{lineno}",
                _decode(line[1:]),
                f"the line is {line.size:,} bytes, over `max_record_bytes` ({line.limit:,}); it was "
                "not read into memory. Raise `max_record_bytes` of the source if such rows are meant",
                on_error,
                source,
                reason="oversized",
            )
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
        return _bad(f"{label}:{lineno}", _decode(line), _json_error(line, exc), on_error, source)
    if type(obj) is dict:
        return obj, f"{label}:{lineno}"
    return _bad(
        f"{label}:{lineno}",
        _decode(line),
        f"expected a JSON object, got {type(obj).__name__}",
        on_error,
        source,
    )


def _json_error(text: bytes, exc: Exception) -> str:
    """What is wrong with a line: orjson's message, or for a byte that is not UTF-8 (orjson
    then says "line 1 column 1") the byte, its offset and the fix."""
    bad = utf8_error(text)
    if bad is None:
        return f"invalid JSON: {exc}"
    return _utf8_message(bad[1], f"byte {bad[0]:,} of the line")


def _utf8_message(byte: int, where: str) -> str:
    return (
        f"invalid UTF-8 byte 0x{byte:02x} at {where}; the file is not UTF-8 there: re-encode it "
        "(e.g. `iconv -f latin1 -t utf-8`) or fix that byte"
    )


def utf8_error(data: bytes) -> tuple[int, int] | None:
    """(offset, value) of the first byte of ``data`` that is not valid UTF-8, or None."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start, data[exc.start]
    return None


def read_jsonl(
    path: Path,
    compression: str,
    on_error: OnError = "fail",
    source: str | None = None,
    label: str | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[Item | IngestErrorItem]:
    """One JSON object per line. Blank lines are skipped; a file that turns out to hold
    pretty-printed objects (first line ``{`` alone) is read as a JSON document instead."""
    label = label or str(path)
    parse, loads, JSONDecodeError = parse_jsonl_line, orjson.loads, orjson.JSONDecodeError
    cap = max_record_bytes + 1
    with open_binary(path, compression) as fh:
        for lineno, line in enumerate(iter(partial(fh.readline, cap), b""), 1):  # a C loop
            if len(line) == cap and line[-1] != 10:  # no "\n" within max_record_bytes + 1
                line = _skip_rest(fh, line, max_record_bytes)
            try:  # the common case inline; anything else is parse_jsonl_line's
                obj = loads(line)
            except JSONDecodeError:
                obj = None
            if type(obj) is dict and not _has_rounded_int(obj):
                yield obj, f"{label}:{lineno}"
                continue
            item = parse(line, lineno, label, on_error, source)
            if item is None:
                continue
            if item is PRETTY:
                break
            yield item  # type: ignore[misc]
        else:
            return
    yield from read_json(path, compression, on_error, source, label, max_record_bytes)


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
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[Item | IngestErrorItem]:
    """A JSON document: an array of records, a dict of records keyed by anything (e.g.
    SkyThought's file keyed by problem text), a ``{"data": [...]}`` wrapper, a single
    object, or several pretty-printed objects one after another. Files that are really
    JSONL under a ``.json`` name are read line by line.

    A document up to 32 MiB is parsed whole. A larger array is read a piece at a time
    (``_stream_array``): only the record being read is in memory, and a record over
    ``max_record_bytes`` is skipped unread. A larger document of another shape is parsed
    whole; use JSONL or Parquet for such inputs larger than memory. A document that does not
    parse (a byte that is not UTF-8, a broken record) is split into its records by a scan
    of its brackets and strings, so that a bad record is one ledger row (``skip``) or an
    error naming its byte and line (``fail``), never the whole file.
    """
    label = label or str(path)
    with open_binary(path, compression) as fh:
        head = fh.read(_WHOLE_JSON_BYTES + 1)
        if len(head) > _WHOLE_JSON_BYTES and _starts_array(head):
            yield from _stream_array(fh, head, label, on_error, source, max_record_bytes)
            return
        data = head + fh.read()
    try:
        doc = orjson.loads(data)
        if any(type(r) is dict and _has_rounded_int(r) for r in (doc if isinstance(doc, list) else [doc])):
            doc = json.loads(data)
    except orjson.JSONDecodeError as exc:
        if _first_line_is_object(data):  # really JSONL under a .json name
            del data
            yield from read_jsonl(path, compression, on_error, source, label, max_record_bytes)
            return
        yield from _salvage(data, exc, label, on_error, source)
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
            and not all("role" in v and "content" in v for v in values[0])  # one {"messages": [...]} chat
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


# --- a JSON document that does not parse: split it into records and judge each ----------

# A JSON string (escapes included) or one structural character; a lone quote means an
# unterminated string. Possessive quantifiers: linear, never backtracking.
_TOKEN = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|["\[\]{},:]', re.S)
_CLOSE = {ord("]"): ord("["), ord("}"): ord("{")}
_BOM = b"\xef\xbb\xbf"


def _salvage(
    data: bytes, exc: Exception, label: str, on_error: OnError, source: str | None
) -> Iterator[Item | IngestErrorItem]:
    """Records of a document orjson rejects: the top-level values are found by a scan of
    brackets and strings, then each record is parsed alone. A record that does not parse
    is an error item (or ``IngestError``) naming its index, byte and line; the others are
    kept. A document whose brackets do not balance cannot be split: ``IngestError``."""
    lines = _LineCounter(data)
    values = _top_values(data)
    if values is None:
        bad = utf8_error(data)
        if bad is not None:
            at, byte = bad
            what = f"invalid UTF-8 byte 0x{byte:02x} at byte {at:,} (line {lines.at(at)})"
        else:
            what = f"not valid JSON ({exc})"
        raise IngestError(
            f"{label}: {what}, and the document cannot be split into records around it (its "
            "brackets or quotes do not balance), so `on_error: skip` cannot apply. Fix the file "
            "there, or convert it to JSONL (one record per line) so a bad record costs one line."
        )
    if len(values) > 1:  # pretty-printed objects back to back
        for start, end in values:
            yield _one_record(data, start, end, f"{label}:{lines.at(start)}", lines, on_error, source)
        return
    start, end = values[0]
    members = _members(data, start, end)
    if data[start] == ord("["):
        for i, (s, e, _) in enumerate(members):
            yield _one_record(data, s, e, f"{label}[{i}]", lines, on_error, source)
        return
    if len(members) == 1 and members[0][2] > 0:  # {"key": [records]}: a wrapper
        s, e, colon = members[0]
        value = _skip_space(data, colon + 1, e)
        if data[value] == ord("["):
            key = _decode(data[s:colon]).strip()
            try:
                key = repr(orjson.loads(key))
            except orjson.JSONDecodeError:
                pass
            for i, (ms, me, _) in enumerate(_members(data, value, e)):
                yield _one_record(data, ms, me, f"{label}[{key}][{i}]", lines, on_error, source)
            return
    if len(members) > 1:  # a dict of records keyed by anything
        for i, (s, e, colon) in enumerate(members):
            where = f"{label}[{i}]"
            if colon < 0:
                yield _one_bad(data, s, e, where, 'expected `"key": record`', lines, on_error, source)
            else:
                yield _one_record(data, _skip_space(data, colon + 1, e), e, where, lines, on_error, source)
        return
    yield _one_record(data, start, end, f"{label}[0]", lines, on_error, source)


def _one_record(
    data: bytes,
    start: int,
    end: int,
    location: str,
    lines: _LineCounter | _PieceLines,
    on_error: OnError,
    source: str | None,
    offset: int = 0,
) -> Item | IngestErrorItem:
    """``data[start:end]`` as a record; ``offset``: the file position of ``data[0]``."""
    text = data[start:end]
    try:
        obj = _exact(orjson.loads(text), text)
    except orjson.JSONDecodeError as exc:
        where = f"{location} (line {lines.at(start)}, byte {offset + start:,})"
        bad = utf8_error(text)
        if bad is None:
            error = f"invalid JSON: {exc}"
        else:
            at = start + bad[0]
            error = _utf8_message(bad[1], f"byte {offset + at:,} (line {lines.at(at)}) of the file")
        return _bad(where, _decode(text), error, on_error, source)
    if type(obj) is dict:
        return obj, location
    error = f"expected a JSON object, got {type(obj).__name__}"
    return _one_bad(data, start, end, location, error, lines, on_error, source, offset)


def _one_bad(
    data: bytes,
    start: int,
    end: int,
    location: str,
    error: str,
    lines: _LineCounter | _PieceLines,
    on_error: OnError,
    source: str | None,
    offset: int = 0,
) -> IngestErrorItem:
    where = f"{location} (line {lines.at(start)}, byte {offset + start:,})"
    return _bad(where, _decode(data[start:end]), error, on_error, source)


class _LineCounter:
    """Line numbers of byte offsets, asked in increasing order (counted incrementally)."""

    def __init__(self, data: bytes):
        self.data, self.pos, self.line = data, 0, 1

    def at(self, offset: int) -> int:
        if offset < self.pos:
            self.pos, self.line = 0, 1
        self.line += self.data.count(b"\n", self.pos, offset)
        self.pos = offset
        return self.line


def _skip_space(data: bytes, pos: int, end: int) -> int:
    while pos < end and data[pos] in b" \t\r\n":
        pos += 1
    return pos


def _top_values(data: bytes) -> list[tuple[int, int]] | None:
    """(start, end) of each top-level array or object, or None when the brackets and
    quotes do not balance or something else stands between the values."""
    out: list[tuple[int, int]] = []
    stack: list[int] = []
    pos = len(_BOM) if data.startswith(_BOM) else 0
    start = 0
    for m in _TOKEN.finditer(data, pos):
        c = data[m.start()]
        if not stack:
            if c not in b"[{" or data[pos : m.start()].strip():
                return None
            start = m.start()
        if c in b"[{":
            stack.append(c)
        elif c in b"]}":
            if not stack or stack.pop() != _CLOSE[c]:
                return None
            if not stack:
                out.append((start, m.end()))
                pos = m.end()
        elif c == ord('"') and m.end() - m.start() == 1:
            return None  # an unterminated string
    if stack or data[pos:].strip():
        return None
    return out or None


def _members(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(start, end, colon or -1) of each member of the array or object spanning
    ``data[start:end]`` (balanced, as ``_top_values`` found it); empty members dropped."""
    out: list[tuple[int, int, int]] = []
    depth = 0
    begin, colon = start + 1, -1

    def close(stop: int) -> None:
        s = _skip_space(data, begin, stop)
        e = stop
        while e > s and data[e - 1] in b" \t\r\n":
            e -= 1
        if e > s:
            out.append((s, e, colon))

    for m in _TOKEN.finditer(data, start + 1, end - 1):
        c = data[m.start()]
        if c in b"[{":
            depth += 1
        elif c in b"]}":
            depth -= 1
        elif depth == 0 and c == ord(","):
            close(m.start())
            begin, colon = m.end(), -1
        elif depth == 0 and c == ord(":") and colon < 0:
            colon = m.start()
    close(end - 1)
    return out


# --- a top-level JSON array, read a piece at a time ---------------------------------------

#: bytes read at a time from a JSON array (more while one record needs more)
_ARRAY_PIECE = 1 << 20
#: a JSON document up to this size is parsed whole (twice as fast as the scan of
#: ``_stream_array`` on LiveCodeBench's records); a larger array is read a piece at a time
_WHOLE_JSON_BYTES = 32 << 20
# the rest of a JSON string whose opening quote came in an earlier piece
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)


def _starts_array(head: bytes) -> bool:
    i = _skip_space(head, len(_BOM) if head.startswith(_BOM) else 0, len(head))
    return i < len(head) and head[i] == ord("[")


class _PieceLines:
    """Line numbers of offsets in the piece of a file held now (``data``), given the
    line number of its first byte."""

    def __init__(self) -> None:
        self.data, self.first_line = b"", 1

    def at(self, offset: int) -> int:
        return self.first_line + self.data.count(b"\n", 0, offset)


def _stream_array(
    fh: IO[bytes], head: bytes, label: str, on_error: OnError, source: str | None, max_record_bytes: int
) -> Iterator[Item | IngestErrorItem]:
    """The records of a document that is one JSON array, with only the record being read
    in memory (plus one piece of the file). Members are found by a scan of brackets and
    strings, as ``_salvage`` does, and parsed one by one: a bad member is one error item
    naming its index, byte and line; a member over ``max_record_bytes`` is skipped
    unread (reason ``oversized``); a file that ends inside the array is an
    ``IngestError`` naming where."""
    buf, base, lines = head, 0, _PieceLines()  # base: the file offset of buf[0]
    while True:  # up to the "[" (``head`` holds it when read_json calls; a short one may not)
        pos = _skip_space(buf, len(_BOM) if buf.startswith(_BOM) else 0, len(buf))
        if (len(buf) > len(_BOM) and pos < len(buf)) or not (more := fh.read(_ARRAY_PIECE)):
            break
        buf += more
    pos += 1  # after "["
    begin, index, stack = pos, 0, []
    in_string = False  # a string opened in what was read goes on past it
    skipping: tuple[int, int, bytes] | None = None  # an oversized member: its file offset, line, head
    eof = False

    def member(end: int) -> Item | IngestErrorItem | None:
        nonlocal index, skipping
        lines.data = buf
        where = f"{label}[{index}]"
        if skipping is not None:
            at, line, first = skipping
            skipping = None
            index += 1
            return _bad(f"{where} (line {line}, byte {at:,})", _decode(first), _oversized(base + end - at, max_record_bytes),
                        on_error, source, reason="oversized")  # fmt: skip
        s, e = _skip_space(buf, begin, end), end
        while e > s and buf[e - 1] in b" \t\r\n":
            e -= 1
        if e <= s:
            return None  # "[]", or a comma too many
        index += 1
        if e - s > max_record_bytes:
            return _bad(f"{where} (line {lines.at(s)}, byte {base + s:,})", _decode(buf[s : s + 4 * _SNIPPET]),
                        _oversized(e - s, max_record_bytes), on_error, source, reason="oversized")  # fmt: skip
        return _one_record(buf, s, e, where, lines, on_error, source, base)

    def broken(what: str, at: int) -> IngestError:
        """The array cannot be split past file offset ``at``: say where, and name an
        invalid UTF-8 byte in the record there, the usual cause of a broken string."""
        lines.data = buf
        line = lines.at(min(max(at - base, 0), len(buf)))
        also = ""
        if skipping is not None:
            start, start_line = skipping[0], skipping[1]
        else:
            held = _skip_space(buf, begin, len(buf))
            start, start_line = base + held, lines.at(held)
            bad = utf8_error(buf[held:])
            if bad is not None:
                at_bad = held + bad[0]
                also = f"; {_utf8_message(bad[1], f'byte {base + at_bad:,} (line {lines.at(at_bad)})')}"
        return IngestError(
            f"{label}: {what} at byte {at:,} (line {line}), in the record that starts at byte {start:,} "
            f"(line {start_line}){also}. The array cannot be split into records past it, so `on_error: skip` "
            "cannot apply; the records before it were read. Fix the file there, or convert it to JSONL (one "
            "record per line) so a bad record costs one line."
        )

    while True:
        if in_string:
            m = _STRING_REST.match(buf, pos)
            if m is not None:
                pos, in_string = m.end(), False
            else:  # resume at a byte no backslash escapes: before the trailing backslashes
                end = len(buf)
                while end > pos and buf[end - 1] == 0x5C:
                    end -= 1
                pos = end
        if not in_string:
            for m in _TOKEN.finditer(buf, pos):
                c = buf[m.start()]
                if c == 0x22 and m.end() - m.start() == 1:  # a string that goes on past this piece
                    in_string, pos = True, m.start() + 1
                    break
                if c in b"[{":
                    stack.append(c)
                elif c in b"]}":
                    if stack:
                        if stack.pop() != _CLOSE[c]:
                            raise broken("a bracket that does not match", base + m.start())
                    elif c == 0x5D:  # the array's own "]"
                        item = member(m.start())
                        if item is not None:
                            yield item
                        _expect_end(fh, buf[m.end() :], label, base + m.end())
                        return
                    else:
                        raise broken("a bracket that does not match", base + m.start())
                elif c == 0x2C and not stack:
                    item = member(m.start())
                    if item is not None:
                        yield item
                    begin = m.end()
            else:
                pos = len(buf)
        if eof:
            raise broken("the file ends inside the array (truncated?)", base + len(buf))
        if skipping is None:
            begin = _skip_space(buf, begin, pos)  # the space around a record is not part of it
            end = len(buf)
            while end > begin and buf[end - 1] in b" \t\r\n":
                end -= 1
            if end - begin > max_record_bytes:
                lines.data = buf
                skipping = (base + begin, lines.at(begin), buf[begin : begin + 4 * _SNIPPET])
        keep = pos if skipping is not None else begin  # what is still needed starts there
        if keep > 0:
            lines.first_line += buf.count(b"\n", 0, keep)
            buf, base = buf[keep:], base + keep
            pos, begin = pos - keep, begin - keep
        piece = fh.read(max(_ARRAY_PIECE, len(buf)))
        eof = not piece
        buf += piece


def _oversized(size: int, limit: int) -> str:
    return (f"the record is {size:,} bytes, over `max_record_bytes` ({limit:,}); it was not read into "
            "memory. Raise `max_record_bytes` of the source if such records are meant")  # fmt: skip


def _expect_end(fh: IO[bytes], rest: bytes, label: str, at: int) -> None:
    """Only whitespace may follow the array."""
    while True:
        if rest.strip():
            raise IngestError(f"{label}: something follows the JSON array at byte {at + len(rest) - len(rest.lstrip()):,}; "
                              "a JSON document holds one array. Remove it, or convert the file to JSONL")  # fmt: skip
        at += len(rest)
        rest = fh.read(_ARRAY_PIECE)
        if not rest:
            return


def read_csv(
    path: Path,
    compression: str,
    on_error: OnError = "fail",
    source: str | None = None,
    label: str | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[Item | IngestErrorItem]:
    """A header row then records; cells are strings (empty cell → None). A field longer
    than ``max_record_bytes`` is a bad row; a physical line longer than that stops the
    read with its line number (a CSV row cannot be skipped without parsing it)."""
    label = label or str(path)
    if csv.field_size_limit() != max_record_bytes:
        csv.field_size_limit(max_record_bytes)
    with open_binary(path, compression) as fh:
        # surrogateescape: a byte that is not UTF-8 stays visible (as U+DC80-U+DCFF), so
        # its row becomes a bad row instead of text silently changed to U+FFFD
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
        # strict: an unclosed quote is an error where it breaks the quoting, never a field
        # that silently swallows the rows after it
        reader = csv.reader(_bounded_lines(text, max_record_bytes, label), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise IngestError(f"{label}:1: unreadable CSV header ({exc})") from None
        if header:
            header[0] = header[0].removeprefix("\ufeff")  # a UTF-8 byte-order mark
        if (m := _ESCAPED_BYTE.search(",".join(header))) is not None:
            raise IngestError(f"{label}:1: {_utf8_message(ord(m.group()) - 0xDC00, 'line 1 (the header)')}")
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:
            raise IngestError(
                f"{label}:1: the header names {', '.join(map(repr, twice))} more than once, so one column would "
                "overwrite the other. Rename the columns in the file"
            )
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
                span = f"line {start}" if prev <= start else f"lines {start}-{prev}"
                yield _bad(f"{label}:{start}", "", f"invalid CSV: {exc} ({span}: a quote that does not close where "
                           "it should takes in the lines after it; fix the quoting there)", on_error, source)  # fmt: skip
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
            for cell in row:
                if (m := _ESCAPED_BYTE.search(cell)) is not None:
                    raw = ",".join(row).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    error = _utf8_message(ord(m.group()) - 0xDC00, f"line {start} (in a field)")
                    yield _bad(f"{label}:{start}", raw, error, on_error, source)
                    break
            else:
                yield {k: (v if v != "" else None) for k, v in zip(header, row)}, f"{label}:{start}"


#: a byte that is not UTF-8, as ``surrogateescape`` decodes it
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _bounded_lines(text: io.TextIOWrapper, max_bytes: int, label: str) -> Iterator[str]:
    """The lines of ``text``, none over ``max_bytes`` of UTF-8 (its newline aside). A
    line is read at most ``max_bytes + 1`` characters at a time, so one without an end is
    never held whole; a shorter one of wide characters is measured in bytes."""
    readline = text.readline
    cap = max_bytes + 1
    lineno = 0
    while line := readline(cap):
        lineno += 1
        if len(line) == cap and not line.endswith("\n"):
            raise IngestError(
                f"{label}:{lineno}: a line longer than `max_record_bytes` ({max_bytes:,}); it was not "
                "read into memory. Raise `max_record_bytes` of the source if such rows are meant."
            )
        if (
            len(line) * 4 > max_bytes
            and (size := len(line.rstrip("\r\n").encode("utf-8", "surrogatepass"))) > max_bytes
        ):
            raise IngestError(
                f"{label}:{lineno}: a line of {size:,} bytes, longer than `max_record_bytes` ({max_bytes:,}). "
                "Raise `max_record_bytes` of the source if such rows are meant."
            )
        yield line


def read_parquet(
    path: Path,
    compression: str,
    on_error: OnError = "fail",
    source: str | None = None,
    label: str | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[Item | IngestErrorItem]:
    """Row-group batches, never the whole file at once. A compressed Parquet file is first
    decompressed to a temporary file, because Parquet needs random access. A damaged
    file or page is an ``IngestError`` naming the file and the first row not read. A row
    over ``max_record_bytes`` (its Arrow size) is a bad row, never turned into a dict."""
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
                f"{label}: not a readable Parquet file ({exc}); check `format:` and `compression:`, "
                "or whether the file was cut short"
            ) from None
        row = 0
        batches = pf.iter_batches(batch_size=_PARQUET_BATCH)
        while True:
            try:
                batch = next(batches, None)
            except Exception as exc:  # a corrupt page: ArrowInvalid, OSError, ...
                raise IngestError(
                    f"{label}#{row}: damaged Parquet data from row {row} on ({type(exc).__name__}: {exc}); "
                    "the file is corrupt: write or fetch it again"
                ) from None
            if batch is None:
                return
            for part in _within(batch, max_record_bytes):
                if part.num_rows == 1 and part.nbytes > max_record_bytes:
                    yield _bad(
                        f"{label}#{row}",
                        "",
                        f"the row takes {part.nbytes:,} bytes, over `max_record_bytes` ({max_record_bytes:,}); "
                        "it was not converted. Raise `max_record_bytes` of the source if such rows are meant",
                        on_error,
                        source,
                        reason="oversized",
                    )
                    row += 1
                    continue
                for obj in part.to_pylist():
                    yield obj, f"{label}#{row}"
                    row += 1
    finally:
        if tmp is not None:
            tmp.close()


def _within(batch, limit: int) -> list:  # type: ignore[no-untyped-def]
    """``batch`` cut (zero-copy) into slices whose Arrow size is at most ``limit``, or
    single rows over it: a batch within the limit holds no row over it."""
    if batch.nbytes <= limit or batch.num_rows == 1:
        return [batch]
    half = batch.num_rows // 2
    return _within(batch.slice(0, half), limit) + _within(batch.slice(half), limit)


READERS = {"jsonl": read_jsonl, "json": read_json, "csv": read_csv, "parquet": read_parquet}


def read_file(
    path: Path,
    fmt: str = "auto",
    compression: str = "auto",
    on_error: OnError = "fail",
    source: str | None = None,
    label: str | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[Item | IngestErrorItem]:
    """Read one file of any supported format; see the module docstring for what comes out."""
    fmt, comp = detect_format(path, fmt, compression)
    if Path(path).is_dir():
        raise IngestError(f"{path}: a directory, not a file: name a file in it")
    if not Path(path).is_file():
        raise IngestError(f"{path}: file not found")
    return READERS[fmt](Path(path), comp, on_error, source, label, max_record_bytes)
