#!/usr/bin/env python3
"""Ray engine vs local engine on the 1M-record dedup benchmark (exact + MinHash).

The corpus is ``../shared/bench/make_dedup_corpus.py --n N`` (seeded, real problems plus
planted near-duplicates), built once under ``bench/_work/``. The same pipeline YAML
(ingest → dedup.exact → dedup.minhash) runs twice, each in its own ``reasonmill run``
process:

1. ``--engine local``: ingest, then both dedup stages;
2. ``--engine ray`` (a fresh local Ray instance, ``--ray-cpus`` CPUs) on a workdir
   whose ingest stage is copied from run 1: the fingerprints match, so Ray skips ingest
   (cross-engine resume) and only the dedup stages are compared.

It checks both engines keep exactly the same ids, and prints per-stage seconds, wall
time (with Ray start-up), peak RSS of each process tree and the Ray/local ratios.

    python bench/bench_ray.py --n 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "_work"
MAKE_CORPUS = REPO.parent / "shared" / "bench" / "make_dedup_corpus.py"


def corpus(n: int) -> Path:
    for name in (f"corpus_{n // 1000}k.jsonl", f"corpus_{n // 1_000_000}m.jsonl", f"ray_corpus_{n // 1_000_000}m.jsonl"):
        p = WORK / name
        if p.exists() and (n % 1_000_000 == 0 or "k." in name):
            return p
    out = WORK / f"ray_corpus_{n}.jsonl"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        subprocess.run([sys.executable, str(MAKE_CORPUS), "--n", str(n), "--out", str(tmp)], check=True)
        tmp.rename(out)
    return out


from bench_scale import tree_rss_mb  # noqa: E402  (same folder: the process-tree RSS sampler)


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, float]:
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_mb(proc.pid))
            time.sleep(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    rc = proc.wait()
    done.set()
    t.join()
    if rc != 0:
        raise SystemExit(f"{cmd} failed with exit code {rc}")
    return time.monotonic() - start, peak


def kept_ids(stage_dir: Path) -> list[str]:
    ids: list[str] = []
    for p in sorted(stage_dir.glob("part-*.parquet")):
        ids += pq.read_table(p, columns=["id"]).column("id").to_pylist()
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--shard-size", type=int, default=50_000)
    ap.add_argument("--ray-cpus", type=int, default=2)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    data = corpus(args.n)
    root = WORK / f"ray_{args.n}"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    cfg = {
        "name": "bench_ray",
        "shard_size": args.shard_size,
        "sources": [{"name": "corpus", "path": str(data), "columns": {"problem": "text"}}],
        "stages": ["dedup.exact", "dedup.minhash"],
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    cli = [sys.executable, "-m", "reasonmill.cli", "run", "pipeline.yaml", "--quiet"]

    local_wall, local_rss = run_measured([*cli, "--workdir", "local"], root)
    shutil.copytree(root / "local" / "00-ingest", root / "ray" / "00-ingest")
    ray_cmd = [
        sys.executable, "-c",
        "import ray, sys; ray.init(num_cpus=%d, include_dashboard=False, log_to_driver=False);"
        "from reasonmill.cli import main; sys.exit(main(sys.argv[1:]))" % args.ray_cpus,
        "run", "pipeline.yaml", "--quiet", "--workdir", "ray", "--engine", "ray",
    ]
    ray_wall, ray_rss = run_measured(ray_cmd, root)

    local = {s["label"]: s for s in json.loads((root / "local" / "summary.json").read_text())["stages"]}
    on_ray = {s["label"]: s for s in json.loads((root / "ray" / "summary.json").read_text())["stages"]}
    assert on_ray["ingest"]["skipped"], "Ray should resume the local engine's ingest"
    same = all(
        kept_ids(root / "local" / d) == kept_ids(root / "ray" / d) for d in ("01-dedup.exact", "02-dedup.minhash")
    )
    local_dedup = local["dedup.exact"]["seconds"] + local["dedup.minhash"]["seconds"]
    ray_dedup = on_ray["dedup.exact"]["seconds"] + on_ray["dedup.minhash"]["seconds"]
    print(f"corpus {data.name}: {args.n} records, shard_size {args.shard_size}, Ray num_cpus={args.ray_cpus}")
    print(f"{'stage':<14}{'local s':>10}{'ray s':>10}{'ray/local':>11}{'kept':>10}")
    for label in ("dedup.exact", "dedup.minhash"):
        a, b = local[label], on_ray[label]
        print(f"{label:<14}{a['seconds']:>10.1f}{b['seconds']:>10.1f}{b['seconds'] / a['seconds']:>11.2f}{b['kept']:>10}")
    print(f"{'dedup total':<14}{local_dedup:>10.1f}{ray_dedup:>10.1f}{ray_dedup / local_dedup:>11.2f}")
    print(f"ingest (local only, reused by Ray): {local['ingest']['seconds']:.1f} s")
    ray_overhead = ray_wall - ray_dedup
    print(f"wall: local {local_wall:.1f} s (incl. ingest) | ray {ray_wall:.1f} s "
          f"(incl. Ray start-up and driver overhead {ray_overhead:.1f} s)")
    print(f"peak RSS of the process tree: local {local_rss:.0f} MB | ray {ray_rss:.0f} MB")
    print(f"same kept ids on both engines: {same}")
    print(f"RESULT overhead ratio (ray/local, dedup stages) = {ray_dedup / local_dedup:.2f}")


if __name__ == "__main__":
    main()
