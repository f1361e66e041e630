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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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


def write_table(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    columns = [c for c in _DICTIONARY_COLUMNS if c in table.column_names]
    pq.write_table(table, tmp, compression=SHARD_COMPRESSION, use_dictionary=columns, write_statistics=False)
    os.replace(tmp, path)


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
            except json.JSONDecodeError:
                continue  # torn marker: redo the shard
        return done

    def shards(self) -> list[str]:
        """Completed shard names in order."""
        return sorted(self.done_shards())

    def write_shard(self, shard: str, kept: list[dict], ledger_rows: list[dict], stats: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_table(self.shard_path(shard), to_table(kept))
        write_table(self.ledger_path(shard), pa.Table.from_pylist(ledger_rows, schema=LEDGER_SCHEMA))
        atomic_write_json(self.done_path(shard), stats)

    def read_table(self, shard: str, columns: tuple[str, ...] | None = None) -> pa.Table:
        return pq.ParquetFile(self.shard_path(shard)).read(columns=list(columns) if columns else None)

    def build_part(self, stage: Any, shard: str) -> Any:
        """A global stage's ``build_map`` on one shard; stages with ``build_map_table`` get
        the Arrow table of their ``build_columns`` instead of records (vectorized builds)."""
        if hasattr(stage, "build_map_table"):
            return stage.build_map_table(self.read_table(shard, stage.build_columns))
        return stage.build_map(self.read_shard(shard, stage.build_columns))

    def write_shard_table(self, shard: str, table: pa.Table, ledger_rows: list[dict], stats: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_table(self.shard_path(shard), table)
        write_table(self.ledger_path(shard), pa.Table.from_pylist(ledger_rows, schema=LEDGER_SCHEMA))
        atomic_write_json(self.done_path(shard), stats)

    def read_shard(self, shard: str, columns: tuple[str, ...] | None = None) -> list[dict]:
        """Records of one shard; with ``columns``, partial records holding only those fields."""
        # ParquetFile.read avoids pyarrow.dataset, whose import pulls in pandas (~2 s/worker)
        table = pq.ParquetFile(self.shard_path(shard)).read(columns=list(columns) if columns else None)
        return from_table(table)

    def iter_records(self) -> Iterator[dict]:
        for shard in self.shards():
            yield from self.read_shard(shard)

    def iter_ledger(self) -> Iterator[dict]:
        for shard in self.shards():
            p = self.ledger_path(shard)
            if p.exists():
                yield from pq.ParquetFile(p).read().to_pylist()

    def reset(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)


class Workdir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def stage_dir(self, index: int, label: str) -> StageDir:
        return StageDir(self.root / f"{index:02d}-{label}")

    def stage_dirs(self) -> list[StageDir]:
        if not self.root.exists():
            return []
        return [StageDir(p) for p in sorted(self.root.iterdir()) if p.is_dir() and p.name[:2].isdigit()]

    def remove_from(self, index: int) -> None:
        """Drop the outputs of stage ``index`` and every later stage."""
        for sd in self.stage_dirs():
            if int(sd.path.name[:2]) >= index:
                shutil.rmtree(sd.path)

    @property
    def export_manifest(self) -> Path:
        return self.root / "export" / "manifest.json"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"
