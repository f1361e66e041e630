"""Math answers checked for equivalence with math-verify, in an outside-killed process pool.

Why this shape:

- math-verify's ``parse``/``verify`` are called with their SIGALRM timeouts disabled
  (``parsing_timeout=None``, ``timeout_seconds=None``): alarms only work in the main thread
  and do not interrupt sympy's C-level loops. ``verify_many`` runs the checks in a
  :class:`~reasonmill.verify.pool.VerifyPool`, which SIGKILLs a worker that overruns.
- Our own extractor (:mod:`reasonmill.verify.extract`) finds the answer first, so a missing
  answer (``no_answer_extracted``) is told apart from a wrong one and the ledger shows
  what was compared and how it was found.
- The gold answer is given as plain text (``\\frac{1}{2}``, ``42``, ``[1,2)``, ``x=3``),
  sometimes with ``\\boxed{}``, ``$…$`` or as an OlympiadBench JSON list; it is wrapped in
  ``\\boxed{}`` so math-verify's boxed normalization (units, ``\\text{}``, degrees) applies.
- An optional judge (an LLM behind any callable) is asked only when math-verify says no.

Reason codes: ``math_equal``, ``math_not_equal``, ``no_answer_extracted``,
``no_reference``, ``timeout``, ``parse_error``, and ``judge_equal`` (math-verify said no,
the judge said yes).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonmill.errors import ServiceFailure
from reasonmill.verify.base import Verdict
from reasonmill.verify.extract import Extraction, answer_region, extract_answer, is_prose
from reasonmill.verify.keys import package_versions, verdict_key
from reasonmill.verify.pool import PoolResult, VerifyPool

#: ``judge(problem, reference, answer) -> (is_correct, reasoning)``
Judge = Callable[[str, str, str], tuple[bool, str]]

NAME = "math"
_MAX_DETAIL = 300


#: the distributions whose behaviour decides a math verdict (part of every cache key)
LIBRARIES = ("math-verify", "latex2sympy2_extended", "sympy")


class MathSettings(BaseModel):
    """``verify.math`` in the pipeline YAML: every option of :class:`MathVerifier`.

    The comparison knobs are math-verify's (see ``math_verify.verify``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(5.0, gt=0, description="seconds per response; the worker is killed past it")
    workers: int = Field(2, ge=1, description="worker processes of the verify pool")
    mp_context: Literal["spawn", "forkserver", "fork"] = "spawn"
    float_rounding: int = Field(6, ge=0)
    numeric_precision: int = Field(15, ge=1)
    strict: bool = True
    allow_set_relation_comp: bool = False


# --- math-verify wrappers (imported lazily: sympy costs ~1 s to import) -------------------


def _configs():
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


def _parse(text: str, configs=None) -> list:
    from math_verify import parse

    return parse(text, configs or _configs(), parsing_timeout=None)


def _has_expr(parsed: list) -> bool:
    """True when math-verify got a sympy object, not just the fallback string."""
    return any(not isinstance(p, str) for p in parsed)


def warmup() -> None:
    """Worker initializer: import sympy/math-verify and fill their caches once, and
    silence math-verify's "timeout is disabled" warning (we enforce timeouts outside)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import verify

    for g, p in (("\\frac{1}{2}", "0.5"), ("[1,2)", "[1, 2)"), ("x=3", "3"), ("\\sqrt{2}", "1.41")):
        verify(_parse(f"\\boxed{{{g}}}"), _parse(f"\\boxed{{{p}}}"), timeout_seconds=None)


# --- gold and prediction ------------------------------------------------------------------


def normalize_reference(reference: Any) -> str | None:
    """The reference as one string: a list (OlympiadBench ``final_answer``) or a JSON list
    of strings is joined with ", "; ``$…$`` around the whole is dropped. None when empty."""
    if reference is None:
        return None
    if isinstance(reference, (list, tuple)):
        parts = [str(x).strip() for x in reference if str(x).strip()]
        reference = ", ".join(parts)
    ref = str(reference).strip()
    if ref.startswith('["') and ref.endswith("]"):
        try:
            items = json.loads(ref)
        except ValueError:
            items = None
        if isinstance(items, list) and all(isinstance(x, str) for x in items):
            return normalize_reference(items)
    if not ref:
        return None
    return ref


def _strip_math_delims(s: str) -> str:
    s = s.strip()
    for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(a) and s.endswith(b) and len(s) > len(a) + len(b):
            inner = s[len(a) : -len(b)]
            if a == "$" and "$" in inner:  # "$1$ and $2$": not one math span
                return s
            return inner.strip()
    return s


_CURRENCY = re.compile(r"\\\$\s*")


def _drop_currency(s: str) -> str:
    """``\\$18.90`` -> ``18.90``: an escaped dollar sign is a unit, and it breaks parsing."""
    return _CURRENCY.sub("", s)


def parse_gold(reference: str) -> list:
    """Parse the reference; wrapped in ``\\boxed{}`` unless it already carries delimiters."""
    reference = _drop_currency(reference)
    if "\\boxed" in reference or "\\fbox" in reference:
        return _parse(reference)
    inner = _strip_math_delims(reference)
    if "$" in inner:  # several math spans: let math-verify join them
        return _parse(reference)
    parsed = _parse(f"\\boxed{{{inner}}}")
    if not _has_expr(parsed):
        parsed = parsed + [p for p in _parse(reference) if not isinstance(p, str)]
    return parsed


_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
def parse_prediction(region: str, ext: Extraction) -> tuple[list, str]:
    """Parse the extracted answer; returns (parsed, the string that was parsed).

    Tries, in order, and keeps the first that yields a sympy object: the extracted answer
    wrapped in ``\\boxed{}`` (several boxed answers joined with ", "), the extracted text
    as-is, then math-verify's own extraction over the whole answer region.
    """
    if ext.method == "boxed" and len(ext.all_boxed) > 1:
        pred = ", ".join(ext.all_boxed)
    else:
        pred = ext.text
    pred = _drop_currency(pred)
    attempts: list[tuple[str, str]] = []  # (text to parse, label)
    if ext.method == "last_number":  # no anchor: math-verify's last-expression logic on the end
        attempts.append((region[-300:], "region"))
    if not _UNESCAPED_DOLLAR.search(pred) and not is_prose(pred):
        attempts.append((f"\\boxed{{{pred}}}", "pred"))
    attempts.append((pred, "pred"))
    if ext.method != "last_number":
        attempts.append((region, "region"))
    first: tuple[list, str] | None = None
    for text, label in attempts:
        parsed = _parse(text)
        shown = pred if label == "pred" else (parsed[-1] if parsed and isinstance(parsed[-1], str) else pred)
        if _has_expr(parsed):
            return parsed, shown
        if parsed and first is None:
            first = (parsed, shown)
    return first or ([], pred)


_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")


def _loose(s: str) -> str:
    """Loose text form for the last-resort string comparison (``\\text{Evelyn}`` = ``Evelyn``).

    Row separators ``\\\\`` are dropped too: references whose backslashes were lost to an
    escaping bug (``\\begin{pmatrix}-2-14-7\\end{pmatrix}`` in the SkyThought 27B file)
    still match the correct column vector."""
    s = _TEXT_RE.sub(r"\1", s).replace("\\\\", "")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\\[,;:! ]|~|\$|\s", "", s)
    return s.lower().rstrip(".")


_CHOICE = re.compile(r"^\(?([a-e])\)?(?![a-z0-9])")


def _same_choice(gold: str, pred: str) -> bool:
    """Gold ``(C)`` and answer ``\\text{(C) Plane}``: the same multiple-choice option."""
    g, p = _loose(gold), _loose(pred)
    mg = _CHOICE.match(g)
    if not mg or mg.end() != len(g):
        return False
    mp = _CHOICE.match(p)
    return bool(mp and mp.group(1) == mg.group(1) and (len(p) == mp.end() or p.startswith("(")))


def _short(x: Any) -> str:
    s = str(x)
    return s if len(s) <= _MAX_DETAIL else s[:_MAX_DETAIL] + "…"


def check(
    reference: Any, response_text: str | None, settings: MathSettings = MathSettings(), raw: str | None = None
) -> Verdict:
    """The verdict for one answer against one reference, in this process (no timeout).

    Pure and picklable; ``MathVerifier.verify_many`` runs it in the pool. ``raw`` is the
    whole response: searched when ``response_text`` (the answer part) holds no answer,
    e.g. a solution part cut off by the token limit after the thinking concluded.
    """
    from math_verify import verify

    gold = normalize_reference(reference)
    if gold is None:
        return Verdict(0.0, False, "no_reference", {"gold": None}, NAME)
    ext = extract_answer(response_text or "")
    if ext is None and raw and raw != response_text:
        response_text = raw
        ext = extract_answer(raw)
        if ext is not None:
            ext = Extraction(ext.text, ext.method, ext.all_boxed, "full")
    if ext is None:
        return Verdict(0.0, False, "no_answer_extracted", {"gold": gold, "pred": None, "method": None}, NAME)
    details: dict[str, Any] = {"gold": _short(gold), "pred": _short(ext.text), "method": ext.method}
    if ext.scope != "answer":
        details["scope"] = ext.scope
    try:
        gold_parsed = parse_gold(gold)
        if not gold_parsed:
            details["error"] = "math-verify could not parse the reference"
            return Verdict(0.0, False, "parse_error", details, NAME)
        pred_parsed, pred = parse_prediction(answer_region(response_text or ""), ext)
        details["pred"] = _short(pred)
        details["parsed_gold"] = _short(gold_parsed[0])
        details["parsed_pred"] = _short(pred_parsed[0]) if pred_parsed else None
        equal = bool(
            pred_parsed
            and verify(
                gold_parsed,
                pred_parsed,
                float_rounding=settings.float_rounding,
                numeric_precision=settings.numeric_precision,
                strict=settings.strict,
                allow_set_relation_comp=settings.allow_set_relation_comp,
                timeout_seconds=None,
            )
        )
        if not equal and pred_parsed and "%" in pred and "%" not in gold:
            # "what percent ...": gold 17.5 and answer 17.5\% mean the same
            no_pct = _parse("\\boxed{" + re.sub(r"\\?%", "", pred) + "}")
            if no_pct and verify(gold_parsed, no_pct, float_rounding=settings.float_rounding, timeout_seconds=None):
                equal, details["via"] = True, "percent"
        if not equal and _loose(gold) and _loose(gold) == _loose(pred):
            equal, details["via"] = True, "text"
        if not equal and _same_choice(gold, pred):
            equal, details["via"] = True, "choice"
    except Exception as exc:  # math-verify swallows most errors; sympy may still raise
        details["error"] = f"{type(exc).__name__}: {_short(exc)}"
        return Verdict(0.0, False, "parse_error", details, NAME)
    if equal:
        return Verdict(1.0, True, "math_equal", details, NAME)
    if not pred_parsed:
        details["error"] = "math-verify could not parse the extracted answer"
        return Verdict(0.0, False, "parse_error", details, NAME)
    return Verdict(0.0, False, "math_not_equal", details, NAME)


@dataclass(frozen=True)
class _Task:
    """What a worker runs: small and picklable (never the whole record)."""

    settings: MathSettings

    def __call__(self, item: tuple[Any, str, str | None]) -> Verdict:
        reference, text, raw = item
        return check(reference, text, self.settings, raw)


def response_text(response: dict) -> str:
    """``response["answer"]``, or ``response["raw"]`` when the answer part is empty."""
    answer = response.get("answer")
    if isinstance(answer, str) and answer.strip():
        return answer
    return response.get("raw") or ""


def _raw_fallback(response: dict) -> str | None:
    """The raw response when it holds more than the answer part (else None: nothing new)."""
    raw = response.get("raw")
    return raw if isinstance(raw, str) and raw.strip() and raw != response_text(response) else None


class MathVerifier:
    """Verifier for ``category == "math"``: ``verify(record, response) -> Verdict``.

    ``verify`` runs in the calling process with no timeout (the contract: the caller's
    worker is killed from outside). ``verify_many`` runs through a lazily started
    :class:`VerifyPool` of ``workers`` processes with a ``timeout`` per response.
    Use as a context manager, or call ``close()``, to stop the workers.
    """

    name: ClassVar[str] = NAME
    #: bump when a verdict can change for the same inputs (see reasonmill.verify.keys)
    version: ClassVar[str] = "1"

    def __init__(
        self, settings: MathSettings | None = None, judge: Judge | None = None, *, judge_key: Any = None,
        **options: Any,
    ) -> None:
        """``settings``, or its fields as keywords (``MathVerifier(timeout=10)``).

        ``judge_key`` identifies the judge in cache keys (its model and prompt); a judge
        given without one is identified by its type only."""
        if settings is not None and options:
            raise TypeError("give MathVerifier either settings or keyword options, not both")
        self.settings = settings if settings is not None else MathSettings(**options)
        self.judge = judge
        self.judge_key = judge_key if judge_key is not None or judge is None else type(judge).__qualname__
        self._pool: VerifyPool | None = None

    # pickling: workers never need the pool or the judge
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pool"] = None
        state["judge"] = None
        return state

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def pool(self) -> VerifyPool:
        if self._pool is None:
            s = self.settings
            self._pool = VerifyPool(s.workers, s.timeout, initializer=warmup, mp_context=s.mp_context)
        return self._pool

    def cache_key(self, record: dict, response: dict) -> str:
        """Everything the verdict depends on: settings (not the pool size), the judge,
        math-verify/sympy versions, the reference, the answer part and the raw fallback;
        with a judge also the problem and the reference as the judge sees it."""
        fields: list[Any] = [normalize_reference(record.get("reference_answer")), response_text(response),
                             _raw_fallback(response)]  # fmt: skip
        if self.judge is not None:
            fields += [record.get("problem"), str(record.get("reference_answer"))]
        settings = self.settings.model_dump(exclude={"workers", "mp_context"})
        libraries = package_versions(*LIBRARIES)
        return verdict_key(NAME, self.version, [settings, self.judge_key], libraries, fields)

    def verify(self, record: dict, response: dict) -> Verdict:
        verdict = check(record.get("reference_answer"), response_text(response), self.settings, _raw_fallback(response))
        return self._maybe_judge(record, response, verdict)

    def verify_many(self, pairs: Iterable[tuple[dict, dict]]) -> list[Verdict]:
        """Verdicts for many ``(record, response)`` pairs, in order, through the pool."""
        pairs = list(pairs)
        items = [(r.get("reference_answer"), response_text(resp), _raw_fallback(resp)) for r, resp in pairs]
        results = self.pool.map(_Task(self.settings), items)
        out = []
        for (record, response), res in zip(pairs, results):
            out.append(self._maybe_judge(record, response, self._from_pool(res, record)))
        return out

    def _from_pool(self, res: PoolResult, record: dict) -> Verdict:
        if res.ok:
            return res.value
        gold = normalize_reference(record.get("reference_answer"))
        details = {"gold": _short(gold), "error": res.error, "elapsed": round(res.elapsed, 3)}
        if res.status == "timeout":
            return Verdict(0.0, False, "timeout", details, NAME)
        return Verdict(0.0, False, "parse_error", details | {"status": res.status}, NAME)

    def _maybe_judge(self, record: dict, response: dict, verdict: Verdict) -> Verdict:
        """Ask the judge only when math-verify said no (not when there is no answer)."""
        if self.judge is None or verdict.reason not in ("math_not_equal", "parse_error"):
            return verdict
        details = dict(verdict.details)
        try:
            ok, reasoning = self.judge(record.get("problem") or "", str(record.get("reference_answer")), response_text(response))
        except ServiceFailure:
            raise  # a judge that is down: the run fails, no verdict is cached without it
        except Exception as exc:  # a judge bug must not lose the math verdict
            details["judge_error"] = f"{type(exc).__name__}: {_short(exc)}"
            return Verdict(verdict.score, verdict.passed, verdict.reason, details, NAME)
        details["judge_passed"] = bool(ok)
        details["judge_reasoning"] = reasoning
        details["math_reason"] = verdict.reason
        if ok:
            return Verdict(1.0, True, "judge_equal", details, NAME)
        return Verdict(0.0, False, verdict.reason, details, NAME)
