"""What the shard checksums in ``.done`` markers cost: writing and reading real shards with
and without them.

Ingests real reasoning traces (``../shared/data/reasoning_traces_skythought``) into shards,
then writes and reads each shard table many times:

- write, before: ``pq.write_table`` to a temp path, then rename;
- write, now: ``engine.workdir.write_table`` (encode in memory, XXH3-128, write, rename);
- read, before: ``pq.ParquetFile(path).read()``;
- read, now: ``engine.workdir.read_parquet`` (read the bytes, check size and XXH3, parse).

    PYTHONPATH=src python bench/bench_shard_checksum.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from reasonmill import Pipeline
from reasonmill.engine.workdir import SHARD_COMPRESSION, StageDir, read_parquet, write_table

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "reasoning_traces_skythought"


def _old_write(path: Path, table) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    columns = [c for c in ("source", "category", "language", "stage", "kind", "reason") if c in table.column_names]
    pq.write_table(table, tmp, compression=SHARD_COMPRESSION, use_dictionary=columns, write_statistics=False)
    os.replace(tmp, path)


def _time(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    files = sorted(DATA.glob("*.jsonl"))
    if not files:
        print(f"no data at {DATA}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        sources = [{"name": f.stem, "path": str(f), "preset": "auto"} for f in files]
        Pipeline.from_dict({"name": "b", "shard_size": 500, "sources": sources}).run(Path(tmp) / "w", workers=1)
        sd = StageDir(Path(tmp) / "w" / "00-ingest")
        shards = sd.shards()
        tables = [sd.read_table(s) for s in shards]
        mb = sum((sd.shard_path(s).stat().st_size for s in shards)) / 1e6
        out = Path(tmp) / "out"
        out.mkdir()
        paths = [out / f"part-{s}.parquet" for s in shards]

        old_w = _time(lambda: [_old_write(p, t) for p, t in zip(paths, tables)], args.repeat)
        marks = []
        new_w = _time(lambda: marks.__setitem__(slice(None), [write_table(p, t) for p, t in zip(paths, tables)]), args.repeat)
        old_r = _time(lambda: [pq.ParquetFile(p).read() for p in paths], args.repeat)
        new_r = _time(lambda: [read_parquet(p, m) for p, m in zip(paths, marks)], args.repeat)
    rows = sum(t.num_rows for t in tables)
    print(f"{len(shards)} shards, {rows} records, {mb:.1f} MB of Parquet ({SHARD_COMPRESSION})")
    print(f"write: before {old_w * 1e3:.0f} ms, with checksums {new_w * 1e3:.0f} ms ({new_w / old_w:.2f}x)")
    print(f"read:  before {old_r * 1e3:.0f} ms, verified       {new_r * 1e3:.0f} ms ({new_r / old_r:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
