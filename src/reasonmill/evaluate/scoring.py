"""Score samples with the verifiers that filter the training data.

Why the same verifiers: a model trained on data kept by the math verifier, the choice
verifier and the sandboxed code runner is then measured by the same rules, so a score
moves with the model and not with an answer-extraction difference (the most common
cause of irreproducible numbers between evaluation harnesses).

Each sample comes back as one ``samples.jsonl`` row: the extracted answer, the verdict
(passed, reason, details), truncation and token count, and, when the input carried an
upstream verdict (``--responses``), that verdict and whether we disagree with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from reasonmill.llm.client import Failure
from reasonmill.verify.base import Verdict
from reasonmill.verify.choice import ChoiceVerifier
from reasonmill.verify.code import CodeVerifier, extract_code
from reasonmill.verify.math import MathVerifier

from .metrics import Sample

#: LiveCodeBench's protocol runs every public and private test: a program passes only if all do
LCB_ALL_TESTS = 1_000_000


@dataclass
class ToScore:
    """One sample to verify: the benchmark's kind, the item as a verifier record, the reply."""

    benchmark: str
    item_id: str
    sample_index: int
    kind: str
    record: dict
    response: dict | Failure


def _answer(kind: str, verdict: Verdict, response: dict) -> str | None:
    """The answer the sample gave, as the verifier found it (None: it gave none)."""
    d = verdict.details
    if kind == "math":
        return None if verdict.reason in ("no_answer_extracted",) else d.get("pred")
    if kind == "choice":
        return d.get("extracted")
    code, _, _ = extract_code(response.get("answer"), response.get("raw"))
    return hashlib.sha256(code.strip().encode()).hexdigest()[:16] if code else None


def score(samples: Sequence[ToScore], workers: int = 2, code: CodeVerifier | None = None) -> list[dict]:
    """Verify every sample, in order; a request the server refused scores as no answer."""
    verdicts: list[Verdict | None] = [None] * len(samples)
    by_kind: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        if isinstance(s.response, Failure):
            verdicts[i] = Verdict(0.0, False, f"request_failed:{s.response.reason}",
                                  {"message": s.response.message}, "request")
        else:
            by_kind.setdefault(s.kind, []).append(i)
    if by_kind.get("math"):
        with MathVerifier(workers=workers) as math:
            idx = by_kind["math"]
            for i, v in zip(idx, math.verify_many((samples[i].record, samples[i].response) for i in idx)):
                verdicts[i] = v
    if by_kind.get("choice"):
        choice = ChoiceVerifier()
        for i in by_kind["choice"]:
            verdicts[i] = choice.verify(samples[i].record, samples[i].response)  # type: ignore[arg-type]
    if by_kind.get("code"):
        code = code or CodeVerifier(workers=workers, max_tests=LCB_ALL_TESTS)
        idx = by_kind["code"]
        for i, v in zip(idx, code.verify_many((samples[i].record, samples[i].response) for i in idx)):
            verdicts[i] = v
    return [_row(s, v) for s, v in zip(samples, verdicts)]  # type: ignore[arg-type]


def _row(s: ToScore, v: Verdict) -> dict:
    resp = s.response if isinstance(s.response, dict) else {}
    upstream = (resp.get("meta") or {}).get("upstream_label")
    row = {
        "benchmark": s.benchmark,
        "item_id": s.item_id,
        "sample_index": s.sample_index,
        "answer": _answer(s.kind, v, resp) if resp else None,
        "passed": bool(v.passed),
        "score": v.score,
        "reason": v.reason,
        "verifier": v.verifier,
        "details": v.details,
        "finish_reason": resp.get("finish_reason"),
        "truncated": resp.get("finish_reason") == "length",
        "tokens": resp.get("tokens"),
        "cache_key": (resp.get("meta") or {}).get("cache_key"),
        "response": resp.get("raw"),
    }
    if upstream is not None:
        row["upstream_answer"] = (resp.get("meta") or {}).get("upstream_pred")
        row["upstream_passed"] = bool(upstream)
        row["disagreement"] = bool(upstream) != bool(v.passed)
    return row


def as_sample(row: dict) -> Sample:
    return Sample(passed=row["passed"], answer=row["answer"], truncated=row["truncated"], tokens=row["tokens"])
