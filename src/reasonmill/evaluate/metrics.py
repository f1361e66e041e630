"""Evaluation metrics from per-sample verdicts; pure functions, no I/O.

- mean pass@1: per item, the share of its n samples that pass; averaged over items. The
  standard error treats items as the sampling unit (the questions are what varies between
  benchmarks of the same kind); the 95 % interval is a percentile bootstrap over items
  with a fixed seed, so two runs of the same samples report the same interval.
- pass@k: the unbiased estimator of the Codex paper, 1 - C(n-c, k) / C(n, k) per item,
  for k = 1, 2, 4, ... up to n.
- maj@n: the most frequent extracted answer of an item's n samples is the vote; answers
  that passed are one group (each equals the reference, so they equal each other); a tie
  goes to the group whose first sample came first (the order of ``Counter.most_common``).
  Wrong answers are grouped by their text with LaTeX spacing, ``\\left``/``\\right``,
  ``\\dfrac``/``\\tfrac`` and a trailing period ignored. Samples with no answer do not vote.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: the vote key of every passing sample
CORRECT = "\x00correct"
_LATEX_NOISE = re.compile(r"\s+|\$|\\left|\\right|\\[!,;:]|\.$")


def vote_key(answer: str) -> str:
    """The text a wrong answer votes with: ``\\dfrac{1}{2}`` and ``\\frac {1}{2}`` are one answer."""
    return _LATEX_NOISE.sub("", answer.strip().rstrip(".")).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


@dataclass
class Sample:
    """One scored sample: whether it passed, its answer (None: none found), its cost."""

    passed: bool
    answer: str | None
    truncated: bool = False
    tokens: int | None = None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) passes."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, have {n}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_correct(samples: Sequence[Sample]) -> bool:
    """Whether the majority vote of one item's samples is right (see the module doc)."""
    counts: dict[str, int] = {}
    for s in samples:
        if s.passed:
            key = CORRECT
        elif s.answer is None:
            continue
        else:
            key = vote_key(s.answer)
        counts[key] = counts.get(key, 0) + 1  # dicts keep first-seen order: ties go to the first
    if not counts:
        return False
    best = max(counts.values())
    return next(k for k, v in counts.items() if v == best) == CORRECT


def ks_for(n: int) -> list[int]:
    """1, 2, 4, ... up to n."""
    return [2**i for i in range(int(math.log2(n)) + 1)] if n >= 1 else []


def bootstrap_ci(values: np.ndarray, reps: int, seed: int) -> tuple[float, float]:
    """Percentile 95 % interval of the mean, resampling the values with replacement."""
    if len(values) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def stderr(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def benchmark_metrics(items: Sequence[Sequence[Sample]], reps: int = 2000, seed: int = 0) -> dict:
    """The metrics of one benchmark from its items' samples (every item has n samples)."""
    if not items:
        raise ValueError("no items to score")
    ns = {len(s) for s in items}
    n = min(ns)
    rates = np.array([sum(s.passed for s in samples) / len(samples) for samples in items])
    flat = [s for samples in items for s in samples]
    tokens = [s.tokens for s in flat if s.tokens is not None]
    lo, hi = bootstrap_ci(rates, reps, seed)
    return {
        "items": len(items),
        "n": n if len(ns) == 1 else sorted(ns),
        "samples": len(flat),
        "pass@1": float(rates.mean()),
        "pass@1_stderr": stderr(rates),
        "pass@1_ci95": [lo, hi],
        "pass@k": {str(k): float(np.mean([pass_at_k(len(s), sum(x.passed for x in s), k) for s in items]))
                   for k in ks_for(n)},
        "maj@n": float(np.mean([majority_correct(s) for s in items])),
        "no_answer_rate": sum(s.answer is None for s in flat) / len(flat),
        "truncation_rate": sum(s.truncated for s in flat) / len(flat),
        "mean_completion_tokens": float(np.mean(tokens)) if tokens else None,
    }


def run_metrics(per_benchmark: dict[str, dict], per_item_rates: dict[str, np.ndarray], reps: int = 2000,
                seed: int = 0) -> dict:
    """The run's line: each metric averaged over benchmarks (each benchmark counts once, as
    in a report's "average" column); the interval bootstraps items within each benchmark."""
    names = list(per_benchmark)
    if not names:
        return {}
    out: dict = {"benchmarks": len(names)}
    for key in ("pass@1", "maj@n", "no_answer_rate", "truncation_rate"):
        out[key] = float(np.mean([per_benchmark[b][key] for b in names]))
    out["pass@1_stderr"] = math.sqrt(sum(per_benchmark[b]["pass@1_stderr"] ** 2 for b in names)) / len(names)
    rng = np.random.default_rng(seed)
    means = np.zeros(reps)
    for b in names:
        v = per_item_rates[b]
        means += v[rng.integers(0, len(v), size=(reps, len(v)))].mean(axis=1)
    lo, hi = np.percentile(means / len(names), [2.5, 97.5])
    out["pass@1_ci95"] = [float(lo), float(hi)]
    tokens = [per_benchmark[b]["mean_completion_tokens"] for b in names if per_benchmark[b]["mean_completion_tokens"] is not None]
    out["mean_completion_tokens"] = float(np.mean(tokens)) if tokens else None
    return out
