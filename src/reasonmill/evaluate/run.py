"""One evaluation from settings to files: load, (cross-check), sample, score, measure, write.

A killed run is resumed by running the same command: the samples received before the
kill come from the response cache, only the missing ones are asked for, and the scores
equal those of an uninterrupted run (the verifiers are deterministic).
"""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import reasonmill
from reasonmill.benchmarks.registry import BenchmarkError
from reasonmill.llm.client import redact

from . import outputs
from .contamination import cross_check
from .items import Benchmark, load_eval_benchmark
from .metrics import benchmark_metrics, run_metrics
from .protocol import EvalConfig
from .responses import load_responses
from .sampling import sample_all
from .scoring import ToScore, as_sample, score


@dataclass
class EvalRun:
    out: Path
    results: dict
    rows: list[dict]


def load_all(cfg: EvalConfig) -> list[Benchmark]:
    """Every benchmark of the run; names must differ, since samples and results are keyed by them."""
    date_from, date_to = cfg.lcb_dates()
    benchmarks = [load_eval_benchmark(e, n=cfg.n, system_prompt=cfg.system_prompt, seed=cfg.seed, limit=cfg.limit,
                                      date_from=date_from, date_to=date_to) for e in cfg.benchmarks]
    names = [b.name for b in benchmarks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BenchmarkError(f"benchmark {twice[0]!r} is listed twice; give one of them another name (NAME=PATH)")
    return benchmarks


def measure(rows: list[dict], order: dict[str, list[str]], reps: int, seed: int) -> tuple[dict, dict]:
    """Per-benchmark metrics and the run's, from scored rows; ``order`` gives each benchmark's item ids."""
    by_item: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_item.setdefault((r["benchmark"], r["item_id"]), []).append(r)
    per_bench: dict[str, dict] = {}
    rates: dict[str, np.ndarray] = {}
    for name, ids in order.items():
        items = [[as_sample(r) for r in sorted(by_item[(name, i)], key=lambda r: r["sample_index"])] for i in ids]
        per_bench[name] = benchmark_metrics(items, reps, seed)
        rates[name] = np.array([sum(s.passed for s in it) / len(it) for it in items])
    return per_bench, run_metrics(per_bench, rates, reps, seed)


def evaluate(cfg: EvalConfig, progress: Callable[[int, int], None] | None = None,
             warn: Callable[[str], None] | None = None) -> EvalRun:
    """Sample the model on every benchmark, score, and write the run's files to ``cfg.out``."""
    if not cfg.model or not cfg.base_url:
        raise ValueError("eval needs --model and --base-url (or --responses FILE to score existing outputs)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    benchmarks = load_all(cfg)
    contamination = _contamination(cfg, benchmarks, warn)
    samples, accounting = sample_all(cfg, benchmarks, cfg.cache_path(), progress)
    todo = [ToScore(b.name, item.item_id, s, b.protocol.kind, item.record(), samples[(b.name, i, s)])
            for b in benchmarks for i, item in enumerate(b.items) for s in range(b.protocol.n)]
    rows = score(todo, workers=cfg.workers)
    per_bench, run = measure(rows, {b.name: [it.item_id for it in b.items] for b in benchmarks}, cfg.bootstrap, cfg.seed)
    results = {"model": cfg.model, "benchmarks": per_bench, "run": run, "accounting": accounting}
    if contamination is not None:
        results["contamination"] = contamination
    manifest = _manifest(cfg, benchmarks, started)
    outputs.write_samples(out / outputs.SAMPLES, rows)
    outputs.write_json(out / outputs.MANIFEST, manifest)
    outputs.write_json(out / outputs.RESULTS, results)
    return EvalRun(out, results, rows)


def score_responses(cfg: EvalConfig, path: str | Path, preset: str = "auto",
                    warn: Callable[[str], None] | None = None) -> EvalRun:
    """``--responses``: score a file of existing outputs; the results have the same shape."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    name, todo, bad = load_responses(path, preset=preset)
    if bad and warn:
        warn(f"{bad} rows of {path} could not be read and were skipped")
    order: dict[str, list[str]] = {name: list(dict.fromkeys(t.item_id for t in todo))}
    rows = score(todo, workers=cfg.workers)
    per_bench, run = measure(rows, order, cfg.bootstrap, cfg.seed)
    labelled = [r for r in rows if "upstream_passed" in r]
    upstream = None
    if labelled:
        upstream = {
            "labelled_samples": len(labelled),
            "upstream_pass@1": sum(r["upstream_passed"] for r in labelled) / len(labelled),
            "disagreements": sum(r["disagreement"] for r in labelled),
            "we_pass_they_fail": sum(r["passed"] and not r["upstream_passed"] for r in labelled),
            "we_fail_they_pass": sum(r["upstream_passed"] and not r["passed"] for r in labelled),
        }
        per_bench[name]["upstream"] = upstream
    results = {"model": None, "responses": str(Path(path).resolve()), "benchmarks": per_bench, "run": run}
    manifest = {"responses": str(Path(path).resolve()), "file_sha256": _sha256(Path(path)),
                "reasonmill_version": reasonmill.__version__, "seed": cfg.seed, "bootstrap": cfg.bootstrap,
                "started": started, "finished": time.time(), "argv": sys.argv}
    outputs.write_samples(out / outputs.SAMPLES, rows)
    outputs.write_json(out / outputs.MANIFEST, manifest)
    outputs.write_json(out / outputs.RESULTS, results)
    return EvalRun(out, results, rows)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _contamination(cfg: EvalConfig, benchmarks: list[Benchmark], warn: Callable[[str], None] | None) -> dict | None:
    if not cfg.training_data:
        return None
    report = cross_check(benchmarks, cfg.training_data)
    if warn:
        for name, count in report["contaminated_items"].items():
            if count:
                warn(f"{count} items of {name} appear in the training data {cfg.training_data}: "
                     "its score overstates the model (see results.json → contamination)")
    return report


def _manifest(cfg: EvalConfig, benchmarks: list[Benchmark], started: float) -> dict:
    return {
        "model": cfg.model,
        "endpoint": redact(cfg.base_url or ""),
        "sampling": cfg.sampling(),
        "system_prompt": cfg.system_prompt,
        "seed": cfg.seed,
        "bootstrap": cfg.bootstrap,
        "lcb_window": [str(d) if d else None for d in cfg.lcb_dates()],
        "benchmarks": {
            b.name: {"content_hash": b.content_hash, "source": b.source, "items": len(b.items), "n": b.protocol.n,
                     "kind": b.protocol.kind, "template": b.protocol.template,
                     "system_prompt": cfg.system_prompt if cfg.system_prompt is not None else b.protocol.system_prompt}
            for b in benchmarks
        },
        "reasonmill_version": reasonmill.__version__,
        "python": platform.python_version(),
        "started": started,
        "finished": time.time(),
        "argv": sys.argv,
    }
