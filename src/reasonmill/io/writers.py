"""Export writers: AM / messages / ShareGPT rows as JSONL (plain, .gz, .zst) or Parquet.

Every AM row is checked with ``validate_am_row`` before it is written; a record none of
whose rows is valid goes to the export ledger instead, so the invariant holds at export
too. Parquet files carry a declared schema (no inference), because a published dataset
with a mis-declared schema is one of the failures SPEC §4 lists. Every write names its
file when it fails (``io.oserrors.naming``): a full disk says which file.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import IO, Any, Callable, Iterable

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from reasonmill.io.formats import EXPORT_FORMATS, validate_am_row
from reasonmill.io.oserrors import naming

_MSG = pa.struct([("role", pa.string()), ("content", pa.string()), ("info", pa.string())])
_CONV = pa.struct([("from", pa.string()), ("value", pa.string())])
_LABELS = [
    ("id", pa.string()),
    ("source", pa.string()),
    ("category", pa.string()),
    ("language", pa.string()),
    ("difficulty", pa.float64()),
    ("verify_score", pa.float64()),
    ("model", pa.string()),
]
PARQUET_SCHEMAS = {
    "am": pa.schema([("messages", pa.list_(_MSG))]),
    "messages": pa.schema([("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))] + _LABELS),
    "sharegpt": pa.schema([("conversations", pa.list_(_CONV))] + _LABELS),
}


def open_text(path: Path, mode: str = "wt") -> IO[str]:
    """Open a text file, compressing by suffix (.gz, .zst/.zstd)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8")
    if path.suffix in (".zst", ".zstd"):
        import zstandard

        raw = open(path, mode.replace("t", "b"))
        if "w" in mode:
            stream = zstandard.ZstdCompressor(level=6).stream_writer(raw, closefd=True)
        else:
            stream = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        import io

        return io.TextIOWrapper(stream, encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def open_binary_out(path: Path) -> IO[bytes]:
    """A binary file for writing, compressing by suffix (.gz, .zst/.zstd)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        return gzip.open(path, "wb")  # type: ignore[return-value]
    if path.suffix in (".zst", ".zstd"):
        import zstandard

        return zstandard.ZstdCompressor(level=6).stream_writer(open(path, "wb"), closefd=True)  # type: ignore[return-value]
    return open(path, "wb", buffering=1 << 20)


def _json_line(row: dict) -> bytes:
    try:
        return orjson.dumps(row)
    except TypeError:
        return json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")


class _JsonlSink:
    def __init__(self, path: Path):
        self.tmp = path.with_name(path.name + ".partial" + "".join(path.suffixes[-1:]))
        self.path = path
        self.fh = open_binary_out(self.tmp)

    def write(self, rows: list[dict]) -> None:
        if rows:
            with naming(self.tmp):
                self.fh.write(b"\n".join(map(_json_line, rows)) + b"\n")

    def close(self) -> None:
        with naming(self.tmp):
            self.fh.close()
        self.tmp.replace(self.path)


class _ParquetSink:
    def __init__(self, path: Path, fmt: str, batch: int = 5000):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fmt = fmt
        self.schema = PARQUET_SCHEMAS[fmt]
        self.tmp = path.with_name(path.name + ".partial")
        self.path = path
        with naming(self.tmp):
            self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        self.buffer: list[dict] = []
        self.batch = batch

    def write(self, rows: list[dict]) -> None:
        for row in rows:
            if self.fmt == "am":
                row = {
                    "messages": [
                        {"role": m["role"], "content": m["content"], "info": json.dumps(m.get("info"), ensure_ascii=False)}
                        for m in row["messages"]
                    ]
                }
            self.buffer.append(row)
        if len(self.buffer) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            with naming(self.tmp):
                self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def close(self) -> None:
        self._flush()
        with naming(self.tmp):
            self.writer.close()
        self.tmp.replace(self.path)


def _sink(path: Path, fmt: str) -> Any:
    return _ParquetSink(path, fmt) if path.suffix == ".parquet" else _JsonlSink(path)


def export_records(
    records: Callable[[], Iterable[dict]], specs: list, paths: list[Path], ledger_dir: Path, card: Any = None
) -> tuple[list[dict], Any]:
    """Write every export in one pass over the records. Returns (export infos, report).

    ``card`` (a ``report.card.CardStats``) accumulates the dataset card's counts."""
    from reasonmill.engine.local import StageReport

    sinks = [_sink(p, s.format) for s, p in zip(specs, paths)]
    counts = [0] * len(specs)
    report = StageReport(label="export")
    ledger_dir.mkdir(parents=True, exist_ok=True)
    reasons: Counter = Counter()
    carded: list[dict] = []  # kept records not yet counted in the card (batches of 1000)
    ledger_path = ledger_dir / "ledger.jsonl"
    ledger_tmp = ledger_dir / "ledger.jsonl.partial"  # renamed when complete: never a torn ledger
    with naming(ledger_tmp), open(ledger_tmp, "w", encoding="utf-8") as ledger:
        for record in records():
            report.records_in += 1
            am_rows = list(EXPORT_FORMATS["am"](record))
            errors = [e for row in am_rows for e in validate_am_row(row)]
            if errors:
                reasons["schema_invalid"] += 1
                ledger.write(
                    json.dumps(
                        {
                            "stage": "export",
                            "id": record["id"],
                            "kind": "record",
                            "response_index": None,
                            "reason": "schema_invalid",
                            "message": "; ".join(sorted(set(errors))),
                            "evidence": json.dumps({"errors": errors}),
                            "record": json.dumps(record, ensure_ascii=False, default=str),
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                continue
            report.kept += 1
            if card is not None:
                carded.append(record)
                if len(carded) >= 1000:
                    card.add_many(carded)
                    carded = []
            for k, (spec, sink) in enumerate(zip(specs, sinks)):
                rows = am_rows if spec.format == "am" else list(EXPORT_FORMATS[spec.format](record))
                sink.write(rows)
                counts[k] += len(rows)
    if card is not None and carded:
        card.add_many(carded)
    for sink in sinks:
        sink.close()
    ledger_tmp.replace(ledger_path)
    report.dropped = sum(reasons.values())
    report.reasons = reasons
    exports = [{"path": str(p), "format": s.format, "rows": n} for s, p, n in zip(specs, paths, counts)]
    return exports, report


# --- parallel export: one part per shard, stitched in shard order -----------------------


def _part_path(path: Path, parts_dir: Path, shard: str, k: int) -> Path:
    """Where shard ``shard``'s rows for export ``k`` go. ``.zst`` parts are plain JSONL
    (the driver compresses them into one frame); ``.gz`` parts stay gzip members, which
    concatenate into a valid gzip file; Parquet parts are Parquet."""
    if path.suffix in (".zst", ".zstd"):
        return parts_dir / f"{shard}-{k}.jsonl"
    if path.suffix == ".gz":
        return parts_dir / f"{shard}-{k}.jsonl.gz"
    if path.suffix == ".parquet":
        return parts_dir / f"{shard}-{k}.parquet"
    return parts_dir / f"{shard}-{k}.jsonl"


def export_part(records: Iterable[dict], specs: list, paths: list[Path], parts_dir: Path, shard: str) -> dict:
    """Export one shard's records into part files (run in a worker). Returns what the
    driver needs to stitch: part paths, row counts, the report and the card counts."""
    from reasonmill.report.card import CardStats

    card = CardStats()
    part_paths = [_part_path(p, parts_dir, shard, k) for k, p in enumerate(paths)]
    ledger_dir = parts_dir / f"{shard}-ledger"
    exports, report = export_records(lambda: records, specs, part_paths, ledger_dir, card)
    return {
        "parts": [str(p) for p in part_paths],
        "rows": [e["rows"] for e in exports],
        "ledger": str(ledger_dir / "ledger.jsonl"),
        "report": report.to_dict(),
        "card": card,
    }


class PartStitcher:
    """Appends the parts of ``export_part``, in shard order, to the final files and ledger
    as they arrive (so the copying overlaps the export of later shards); ``close``
    renames the files into place and returns (export infos, report) like
    ``export_records``."""

    def __init__(self, specs: list, paths: list[Path], ledger_dir: Path, card: Any):
        from reasonmill.engine.local import StageReport

        self.specs, self.paths, self.card = specs, paths, card
        self.report = StageReport(label="export")
        self.rows = [0] * len(specs)
        ledger_dir.mkdir(parents=True, exist_ok=True)
        self.ledger_path = ledger_dir / "ledger.jsonl"
        self.ledger_tmp = ledger_dir / "ledger.jsonl.partial"
        self.ledger = open(self.ledger_tmp, "wb")
        self.tmps: list[Path] = []
        self.outs: list[Any] = []
        for spec, path in zip(specs, paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".partial")
            with naming(tmp):
                if path.suffix == ".parquet":
                    out: Any = pq.ParquetWriter(tmp, PARQUET_SCHEMAS[spec.format], compression="zstd")
                elif path.suffix in (".zst", ".zstd"):
                    import zstandard

                    out = zstandard.ZstdCompressor(level=6).stream_writer(open(tmp, "wb"), closefd=True)
                else:
                    out = open(tmp, "wb")
            self.tmps.append(tmp)
            self.outs.append(out)

    def add(self, res: dict) -> None:
        """One shard's parts (a result of ``export_part``); each part file is removed once copied."""
        import shutil

        from reasonmill.engine.local import StageReport

        part = StageReport.from_dict(res["report"])
        self.report.records_in += part.records_in
        self.report.kept += part.kept
        self.report.dropped += part.dropped
        self.report.reasons.update(part.reasons)
        if self.card is not None:
            self.card.merge(res["card"])
        with naming(self.ledger_tmp), open(res["ledger"], "rb") as fh:
            shutil.copyfileobj(fh, self.ledger)
        for k, (path, out, tmp) in enumerate(zip(self.paths, self.outs, self.tmps)):
            self.rows[k] += res["rows"][k]
            src = Path(res["parts"][k])
            with naming(tmp):
                if path.suffix == ".parquet":
                    out.write_table(pq.ParquetFile(src).read())
                else:
                    with open(src, "rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 20)
            src.unlink()

    def close(self) -> tuple[list[dict], Any]:
        with naming(self.ledger_tmp):
            self.ledger.close()
        for out, tmp, path in zip(self.outs, self.tmps, self.paths):
            with naming(tmp):
                out.close()
            tmp.replace(path)
        self.ledger_tmp.replace(self.ledger_path)
        self.outs = []
        rows = zip(self.specs, self.paths, self.rows)
        exports = [{"path": str(p), "format": s.format, "rows": n} for s, p, n in rows]
        return exports, self.report

    def discard(self) -> None:
        """After a failure: close the files and remove the unfinished ones."""
        self.ledger.close()
        self.ledger_tmp.unlink(missing_ok=True)
        for out, tmp in zip(self.outs, self.tmps):
            out.close()
            tmp.unlink(missing_ok=True)
        self.outs = []
