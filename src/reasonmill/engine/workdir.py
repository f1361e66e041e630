"""The workdir: one folder per stage with Parquet shards, ledger shards and a manifest.

```
workdir/
  00-ingest/part-00000.parquet  ledger-00000.parquet  part-00000.done  manifest.json
  01-clean/...
  export/manifest.json
```

A shard is complete when its ``.done`` marker exists; the marker is written after the
data and ledger files were renamed into place, so a crash leaves either a complete shard
or one that is redone. A stage whose manifest fingerprint matches is skipped.

The marker also records each file's size and XXH3-128 checksum (hashing costs ~0.1 ms
per MB, next to ~10 ms per MB to encode and write), and a complete stage's manifest
lists its shards. A damaged shard (truncated, overwritten, its marker lost) is found
on resume: sizes by :meth:`Workdir.repair` before the run, checksums whenever a shard
is read (:class:`DamagedShard`, naming the file). Either way the shard is forgotten and
redone from its input; nothing downstream of it changes, since a redone shard is the
same shard.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from reasonmill.io.oserrors import naming
from reasonmill.records import from_table, to_table

LEDGER_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("id", pa.string()),
        ("kind", pa.string()),  # "record" or "response"
        ("response_index", pa.int64()),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("evidence", pa.string()),  # JSON
        ("record", pa.string()),  # JSON of what was dropped, so nothing is lost
    ]
)


def fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:24]


class DamagedShard(RuntimeError):
    """A shard file does not match its ``.done`` marker, or cannot be read as Parquet."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(str(path), problem)  # both in args: the error crosses process pools
        self.path, self.problem = str(path), problem

    def __str__(self) -> str:
        return f"damaged shard {self.path}: {self.problem}"


def checksum(data: Any) -> str:
    """XXH3-128 of a bytes-like object (a shard file's content)."""
    return xxhash.xxh3_128_hexdigest(data)


def atomic_write_bytes(path: Path, data: Any) -> None:
    """Write ``data`` to ``NAME.tmpPID`` and rename it over ``path`` (the sweep at the next
    start removes the temp file of a writer that died)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with naming(tmp), open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8"))


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while one shard is processed.

    Shard work allocates hundreds of thousands of small dicts and lists that reference
    counting frees; the cyclic collector would traverse them again and again (30–40% of
    the CPU of ingest mapping). Cycles made during the task are collected after it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# glibc malloc: keep freed memory (up to 1 GiB at the heap's top) instead of handing it
# back to the kernel, and serve blocks up to 32 MiB from the heap. Shard work allocates
# and frees tens of MB of arrays and JSON lines per shard; with the defaults each new
# page is a page fault again (~5 µs each on a VM: numpy passes over a shard ran 2x slower).
# Peak memory is unchanged; a process's RSS stays near its own peak.
MALLOC_SETTINGS = {
    "MALLOC_TRIM_THRESHOLD_": 1 << 30,
    "MALLOC_TOP_PAD_": 64 << 20,
    "MALLOC_MMAP_THRESHOLD_": 32 << 20,
}
# their mallopt parameters (M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD in malloc.h)
_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}


def keep_freed_memory() -> None:
    """Apply ``MALLOC_SETTINGS`` to this process (``mallopt``) and, through the environment,
    to the worker processes it starts. Settings the user exported are left alone; on a
    libc without ``mallopt`` (musl, macOS) this does nothing."""
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    for name, value in MALLOC_SETTINGS.items():
        if name in os.environ:
            continue
        os.environ[name] = str(value)
        mallopt(_MALLOPT[name], value)


# Shards are working files read and written by every stage: LZ4 (about 2x faster to read
# and 30% faster to write than zstd, files ~45% larger); exports stay zstd. Dictionary
# encoding only pays for low-cardinality columns; texts and ids skip it, and no column
# statistics are written (nothing reads them).
SHARD_COMPRESSION = "lz4"
_DICTIONARY_COLUMNS = ["source", "category", "language", "stage", "kind", "reason"]


def write_table(path: Path, table: pa.Table) -> dict:
    """Write a shard file atomically; returns its ``{"size", "xxh3"}`` for the marker.

    Encoded in memory first, so the checksum is of the bytes written, with no read back."""
    columns = [c for c in _DICTIONARY_COLUMNS if c in table.column_names]
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=SHARD_COMPRESSION, use_dictionary=columns, write_statistics=False)
    data = sink.getvalue()
    atomic_write_bytes(path, data)
    return {"size": data.size, "xxh3": checksum(data)}


def read_verified(path: Path, expect: dict | None) -> pa.Buffer:
    """A shard file's bytes, checked against its marker entry ``expect`` (size, checksum);
    ``None`` (a marker from before checksums) checks nothing."""
    try:
        with naming(path), open(path, "rb") as fh:
            data = pa.py_buffer(fh.read())
    except FileNotFoundError:
        raise DamagedShard(path, "the file is missing") from None
    if expect is not None:
        if data.size != expect["size"]:
            problem = f"{data.size} bytes, its marker says {expect['size']} (truncated or overwritten)"
            raise DamagedShard(path, problem)
        if checksum(data) != expect["xxh3"]:
            problem = "its checksum does not match its marker (the file was changed after it was written)"
            raise DamagedShard(path, problem)
    return data


def read_parquet(path: Path, expect: dict | None, columns: tuple[str, ...] | None = None) -> pa.Table:
    """Read a verified shard file; a file Parquet cannot parse is a ``DamagedShard`` too."""
    data = read_verified(path, expect)
    try:
        # ParquetFile.read avoids pyarrow.dataset, whose import pulls in pandas (~2 s/worker)
        return pq.ParquetFile(pa.BufferReader(data)).read(columns=list(columns) if columns else None)
    except (pa.ArrowException, OSError) as exc:
        raise DamagedShard(path, f"not readable as Parquet ({exc})") from None


@dataclass
class StageDir:
    """One stage's folder in the workdir."""

    path: Path

    def shard_path(self, shard: str) -> Path:
        return self.path / f"part-{shard}.parquet"

    def ledger_path(self, shard: str) -> Path:
        return self.path / f"ledger-{shard}.parquet"

    def done_path(self, shard: str) -> Path:
        return self.path / f"part-{shard}.done"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def index_path(self) -> Path:
        return self.path / "index.pkl"

    def manifest(self) -> dict | None:
        try:
            return json.loads(self.manifest_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_manifest(self, manifest: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, manifest)

    def done_shards(self) -> dict[str, dict]:
        done = {}
        for p in self.path.glob("part-*.done"):
            try:
                done[p.name[5:-5]] = json.loads(p.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # torn marker: redo the shard
        return done

    def marker(self, shard: str) -> dict:
        try:
            return json.loads(self.done_path(shard).read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            raise DamagedShard(self.done_path(shard), "the shard's .done marker is missing or torn") from None

    def _expected(self, shard: str, path: Path) -> dict | None:
        return (self.marker(shard).get("files") or {}).get(path.name)

    def shard_problem(self, shard: str, marker: dict) -> str | None:
        """What is wrong with a done shard's files by their sizes (cheap: one ``stat``
        each), or ``None``. A marker from before checksums checks nothing."""
        for name, expect in (marker.get("files") or {}).items():
            path = self.path / name
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return f"{path}: the file is missing"
            if size != expect["size"]:
                return f"{path}: {size} bytes, its marker says {expect['size']} (truncated or overwritten)"
        return None

    def forget_shard(self, shard: str) -> None:
        """Remove a shard (marker first, so no crash leaves a marker without its files)
        and mark the stage unfinished, so the next pass of the engine redoes it."""
        self.done_path(shard).unlink(missing_ok=True)
        self.shard_path(shard).unlink(missing_ok=True)
        self.ledger_path(shard).unlink(missing_ok=True)
        manifest = self.manifest()
        if manifest and manifest.get("status") == "complete":
            manifest["status"] = "running"
            self.write_manifest(manifest)

    def repair(self) -> list[str]:
        """Forget every done shard whose files do not match their marker, and every shard
        a complete stage's manifest lists but whose marker is gone. One note per shard."""
        notes = []
        done = self.done_shards()
        for shard, marker in sorted(done.items()):
            problem = self.shard_problem(shard, marker)
            if problem:
                self.forget_shard(shard)
                notes.append(f"{problem}; the shard is redone")
        manifest = self.manifest() or {}
        if manifest.get("status") == "complete":
            lost = [s for s in manifest.get("shards") or [] if s not in done]
            for shard in lost:
                self.forget_shard(shard)
                note = "the marker of a completed shard is gone; the shard is redone"
                notes.append(f"{self.done_path(shard)}: {note}")
        return notes

    def shards(self) -> list[str]:
        """Completed shard names in order."""
        return sorted(self.done_shards())

    def write_shard(self, shard: str, kept: list[dict], ledger_rows: list[dict], stats: dict) -> None:
        self.write_shard_table(shard, to_table(kept), ledger_rows, stats)

    def read_table(self, shard: str, columns: tuple[str, ...] | None = None) -> pa.Table:
        path = self.shard_path(shard)
        return read_parquet(path, self._expected(shard, path), columns)

    def build_part(self, stage: Any, shard: str) -> Any:
        """A global stage's ``build_map`` on one shard; stages with ``build_map_table`` get
        the Arrow table of their ``build_columns`` instead of records (vectorized builds)."""
        if hasattr(stage, "build_map_table"):
            return stage.build_map_table(self.read_table(shard, stage.build_columns))
        return stage.build_map(self.read_shard(shard, stage.build_columns))

    def write_shard_table(self, shard: str, table: pa.Table, ledger_rows: list[dict], stats: dict) -> None:
        """Data and ledger files, then the marker with their sizes and checksums."""
        self.path.mkdir(parents=True, exist_ok=True)
        data, ledger = self.shard_path(shard), self.ledger_path(shard)
        files = {
            data.name: write_table(data, table),
            ledger.name: write_table(ledger, pa.Table.from_pylist(ledger_rows, schema=LEDGER_SCHEMA)),
        }
        atomic_write_json(self.done_path(shard), {**stats, "files": files})

    def read_shard(self, shard: str, columns: tuple[str, ...] | None = None) -> list[dict]:
        """Records of one shard; with ``columns``, partial records holding only those fields."""
        return from_table(self.read_table(shard, columns))

    def iter_records(self) -> Iterator[dict]:
        for shard in self.shards():
            yield from self.read_shard(shard)

    def iter_ledger(self) -> Iterator[dict]:
        for shard in self.shards():
            p = self.ledger_path(shard)
            if p.exists():
                yield from read_parquet(p, self._expected(shard, p)).to_pylist()

    def reset(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)


class Workdir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def stage_dir(self, index: int, label: str) -> StageDir:
        name = f"{index:02d}-{label}"
        if "/" in label or "\\" in label or ".." in label:  # config.py refuses these first
            raise ValueError(f"stage label {label!r} is not a folder name")
        return StageDir(self.root / name)

    def stage_dirs(self) -> list[StageDir]:
        if not self.root.exists():
            return []
        return [StageDir(p) for p in sorted(self.root.iterdir()) if p.is_dir() and p.name[:2].isdigit()]

    def remove_from(self, index: int) -> None:
        """Drop the outputs of stage ``index`` and every later stage."""
        for sd in self.stage_dirs():
            if int(sd.path.name[:2]) >= index:
                shutil.rmtree(sd.path)

    def repair(self) -> list[str]:
        """Size-check every stage's done shards (:meth:`StageDir.repair`); notes per shard."""
        return [note for sd in self.stage_dirs() for note in sd.repair()]

    def forget(self, damaged: DamagedShard) -> str:
        """Forget the shard a ``DamagedShard`` (found by its checksum while reading) names."""
        path = Path(damaged.path)
        shard = path.name.split("-", 1)[-1].split(".", 1)[0]
        StageDir(path.parent).forget_shard(shard)
        return f"{damaged}; the shard is redone"

    @property
    def export_manifest(self) -> Path:
        return self.root / "export" / "manifest.json"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"
