"""Ingest in parallel: the driver cuts the input into shards, workers parse and map them.

The driver reads each JSONL file (plain, .gz or .zst) as raw lines and cuts them, with
the rows of other formats (Parquet, CSV, JSON documents, the Hub), into chunks of
``shard_size`` items. A worker parses and maps one chunk with the source's preset and
returns an Arrow table plus ledger rows for bad lines. The driver then makes ids unique
in input order, exactly as a serial read would (per source: ``stable_id(source,
"<id>#<n>")`` with ``meta.duplicate_id_of``; across sources: a ``~N`` suffix), and writes
the shard. The shard layout does not depend on the number of workers, and the output
equals a serial ``iter_source`` read (tests compare them).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from reasonmill.engine.workdir import gc_paused
from reasonmill.io.presets import detect_shape, get_preset
from reasonmill.io.readers import (
    IngestErrorItem,
    detect_format,
    open_binary,
    parse_jsonl_line,
    read_file,
    read_line_block,
)
from reasonmill.io.sources import (
    SourceSpec,
    _disambiguate_id,
    _id_key,
    _label,
    iter_raw,
    map_row,
    shape_error,
    resolve_paths,
    source_context,
)
from reasonmill.records import to_table


@dataclass
class Piece:
    """Consecutive items of one file: raw JSONL lines (``lines``, blank ones included,
    the first being line ``first_line``) or rows already read (``rows``: (raw dict,
    location) tuples or ``IngestErrorItem``). With ``auto`` (``preset: auto``), ``preset``
    is the file's, and every row's shape is checked against it."""

    source: int
    preset: str | None
    keep_origin: bool
    auto: bool = False
    label: str = ""
    first_line: int = 1
    lines: list[bytes] = field(default_factory=list)
    rows: list[Any] = field(default_factory=list)


def error_row(spec_name: str, item: IngestErrorItem) -> dict:
    """The ledger row of a row that could not be read or mapped (its raw text kept)."""
    return {
        "stage": "ingest",
        "id": f"{spec_name}@{item.location}",
        "kind": "record",
        "response_index": None,
        "reason": getattr(item, "reason", "malformed"),
        "message": f"{item.location}: {item.error}",
        "evidence": json.dumps({"location": item.location, "error": item.error}),
        "record": json.dumps({"raw": item.raw}, ensure_ascii=False),
    }


# --- worker side ---------------------------------------------------------------------------


def map_chunk(pieces: list[Piece], specs: list[SourceSpec]) -> tuple[pa.Table, list[dict], list, list, int]:
    """Parse and map one chunk (in a worker). Returns (records table, ledger rows, source
    index of every record, id set keys of the records, items in)."""
    records: list[dict] = []
    origins: list[int] = []
    ledger: list[dict] = []
    n_in = 0
    for piece in pieces:
        spec = specs[piece.source]
        ctx = source_context(spec)
        preset = get_preset(piece.preset) if piece.preset else None
        auto, file_preset = piece.auto, piece.preset
        items: Iterator[Any]
        if piece.lines:
            label, on_error, name = piece.label, spec.on_error, spec.name
            items = (
                parse_jsonl_line(line, lineno, label, on_error, name)
                for lineno, line in enumerate(piece.lines, piece.first_line)
                if not line.isspace()
            )
        else:
            items = iter(piece.rows)
        for item in items:
            n_in += 1
            if type(item) is tuple:
                if auto and ((shape := detect_shape(item[0])) is None or shape != file_preset):
                    item = shape_error(item[0], item[1], file_preset, spec)
                else:
                    item = map_row(item[0], item[1], preset, spec, ctx, piece.keep_origin)
            if type(item) is dict:
                records.append(item)
                origins.append(piece.source)
            else:
                ledger.append(error_row(spec.name, item))
    keys = [_id_key(r["id"]) for r in records]
    return to_table(records), ledger, origins, keys, n_in


def _map_task(args: tuple) -> tuple:
    with gc_paused():
        return map_chunk(*args)


# --- driver side ---------------------------------------------------------------------------


def _jsonl_file(spec: SourceSpec, path: Path) -> str | None:
    """The compression of a file read as raw lines, or None when it must be read whole
    (not JSONL, or a pretty-printed JSON document)."""
    fmt, comp = detect_format(path, spec.format, spec.compression)
    if fmt != "jsonl":
        return None
    with open_binary(path, comp) as fh:
        line = fh.readline(16)
    if line.strip() in (b"{", b"["):
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
    return comp


def _first_known_shape(spec: SourceSpec, path: Path, comp: str, label: str) -> str | None:
    """``preset: auto`` for a JSONL file: the preset of its first row of a known shape, as
    a serial read decides it; None when there is none (every row then goes to the ledger
    or fails, in a worker, in order)."""
    with open_binary(path, comp) as fh:
        lineno = 0
        while block := read_line_block(fh, spec.max_record_bytes):
            for line in block:
                lineno += 1
                item = parse_jsonl_line(line, lineno, label, "skip", spec.name)
                if type(item) is tuple:
                    name = detect_shape(item[0])
                    if name is not None:
                        return name
    return None


def plan_chunks(specs: list[SourceSpec], base_dir: Path, shard_size: int) -> Iterator[list[Piece]]:
    """Cut every source, in order, into chunks of ``shard_size`` items (a chunk may span
    files and sources, as the shards of a serial read do)."""
    chunk: list[Piece] = []
    count = 0
    yielded = False
    for k, spec in enumerate(specs):
        mapping = spec.mapping
        limit = spec.limit
        taken = 0
        if limit == 0:
            continue
        files: list[tuple[Path | None, str | None, str, Iterator | None]] = []
        if spec.hf is None:
            for path in resolve_paths(spec, base_dir):
                comp = _jsonl_file(spec, path)
                files.append((path, comp, _label(path, base_dir), None))
        else:
            files = [(None, None, label, rows) for rows, label in iter_raw(spec, base_dir)]
        for path, comp, label, rows in files:
            if taken == limit:
                break
            if comp is not None and path is not None:  # JSONL: raw lines to the workers
                auto = mapping == "auto"
                name = _first_known_shape(spec, path, comp, label) if auto else mapping
                piece = Piece(k, name, name != "am", auto, label, 1)
                lineno = 1  # of the next line to read
                with open_binary(path, comp) as fh:
                    while taken != limit:
                        block = read_line_block(fh, spec.max_record_bytes)
                        if not block:
                            break
                        while block:
                            room = shard_size - count
                            if limit is not None:
                                room = min(room, limit - taken)
                            blanks = sum(map(bytes.isspace, block))
                            if len(block) - blanks <= room:
                                cut = len(block)
                            else:  # where the room-th non-blank line ends
                                cut, seen_items = 0, 0
                                while seen_items < room:
                                    if not block[cut].isspace():
                                        seen_items += 1
                                    cut += 1
                            part = block[:cut] if cut < len(block) else block
                            items = len(part) - (blanks if cut == len(block) else sum(map(bytes.isspace, part)))
                            piece.lines.extend(part)
                            count += items
                            taken += items
                            lineno += len(part)
                            block = block[cut:] if cut < len(block) else []
                            if count >= shard_size:
                                chunk.append(piece)
                                yield chunk
                                chunk, count, yielded = [], 0, True
                                piece = Piece(k, name, name != "am", auto, label, lineno)
                            if taken == limit:
                                break
                if piece.lines:
                    chunk.append(piece)
                continue
            # other formats: rows read here (already parsed), mapped by the workers
            if rows is None:
                rows = read_file(
                    path, spec.format, spec.compression, spec.on_error, spec.name, label,
                    spec.max_record_bytes,
                )
            auto = mapping == "auto"
            name = None if auto else mapping
            piece = Piece(k, name, name != "am", auto)
            for item in rows:
                if auto and piece.preset is None and type(item) is tuple and (found := detect_shape(item[0])):
                    name = found  # the file's first known shape; rows before it fail in the worker
                    if piece.rows:
                        chunk.append(piece)
                    piece = Piece(k, name, name != "am", auto)
                piece.rows.append(item)
                count += 1
                taken += 1
                if count >= shard_size:
                    chunk.append(piece)
                    yield chunk
                    chunk, count, yielded = [], 0, True
                    piece = Piece(k, name, name != "am", auto)
                if taken == limit:
                    break
            if piece.rows:
                chunk.append(piece)
    if chunk or not yielded:
        yield chunk  # the last chunk; an empty one when there was no input at all


def unique_id(rid: str, seen: set[str]) -> str:
    """``rid``, or ``rid~N`` (the first N ≥ 2 not given yet) when ``rid`` was given
    before; the result is added to ``seen``. Across sources, repeats keep their input
    order this way."""
    if rid in seen:
        n = 2
        while f"{rid}~{n}" in seen:
            n += 1
        rid = f"{rid}~{n}"
    seen.add(rid)
    return rid


class IdAssigner:
    """Makes ids unique in input order, as ``iter_source`` (per source) and the serial
    engine (across sources) do."""

    def __init__(self, specs: list[SourceSpec]):
        self.specs = specs
        self.per_source: list[set] = [set() for _ in specs]
        self.seen: set[str] = set()

    def fix(self, table: pa.Table, origins: list, keys: list) -> pa.Table:
        """``table`` with ids made unique (and ``meta.duplicate_id_of`` where changed)."""
        if table.num_rows == 0:
            return table
        ids: list | None = None
        dup_of: dict[int, str] = {}
        first = origins[0]
        if origins[-1] == first and origins.count(first) == len(origins):  # one source
            sset = self.per_source[first]
            if sset.isdisjoint(keys) and len(set(keys)) == len(keys):
                sset.update(keys)  # no repeat: the common case, at C speed
            else:
                ids = table.column("id").to_pylist()
                self._per_source_loop(ids, keys, origins, dup_of)
        else:
            ids = table.column("id").to_pylist()
            self._per_source_loop(ids, keys, origins, dup_of)
        changed = bool(dup_of)
        if len(self.specs) > 1:  # across sources: a "~N" suffix on ids given before
            if ids is None:
                ids = table.column("id").to_pylist()
            seen = self.seen
            if seen.isdisjoint(ids) and len(set(ids)) == len(ids):
                seen.update(ids)
            else:
                for i, rid in enumerate(ids):
                    new = unique_id(rid, seen)
                    if new != rid:
                        ids[i] = new
                        changed = True
        if not changed:
            return table
        table = table.set_column(table.schema.get_field_index("id"), "id", pa.array(ids, type=pa.string()))
        if dup_of:
            metas = table.column("meta").to_pylist()
            for i, base in dup_of.items():
                meta = orjson.loads(metas[i]) if metas[i] else {}
                origin = meta.pop("origin", None)
                meta["duplicate_id_of"] = base
                if origin is not None:
                    meta["origin"] = origin
                metas[i] = orjson.dumps(meta, option=orjson.OPT_NON_STR_KEYS).decode()
            table = table.set_column(table.schema.get_field_index("meta"), "meta", pa.array(metas, type=pa.string()))
        return table

    def _per_source_loop(self, ids: list, keys: list, origins: list, dup_of: dict) -> None:
        """Input order, one row at a time: a repeated id becomes ``<id>#<n>``'s id."""
        per_source, specs = self.per_source, self.specs
        for i, key in enumerate(keys):
            sset = per_source[origins[i]]
            if key in sset:
                rid = ids[i]
                new, key = _disambiguate_id(rid, sset, specs[origins[i]].name)
                dup_of[i] = rid
                ids[i] = new
            sset.add(key)


def run_chunks(
    chunks: Iterator[list[Piece]],
    specs: list[SourceSpec],
    submit: Callable[[tuple], Any] | None,
    window: int,
) -> Iterator[tuple[pa.Table, list[dict], list, list, int]]:
    """Map chunks (through ``submit`` → futures, or inline when None) and yield their
    results in input order, with at most ``window`` chunks in flight."""
    if submit is None:
        for chunk in chunks:
            yield _map_task((chunk, specs))
        return
    pending: deque = deque()
    try:
        for chunk in chunks:
            pending.append(submit((chunk, specs)))
            while len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
