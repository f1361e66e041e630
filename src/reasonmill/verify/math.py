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
from reasonmill.verify.base import VERIFIER_CRASHED, Verdict
from reasonmill.verify.extract import Extraction, answer_region, degenerate, extract_answer, is_prose
from reasonmill.verify.keys import package_versions, verdict_key
from reasonmill.verify.math_forms import (
    clashing_names,
    drop_condition,
    drop_names,
    drop_yes_no,
    e_notation,
    inequality_as_interval,
    is_range,
    magnitude_value,
    number_before_words,
    outer_parens,
    plain_unicode,
    rhs,
    same_clock_time,
    same_ratio,
    split_top,
    too_complex,
    unit_chain,
)
from reasonmill.verify.math_numeric import numbers_match, precision_hint
from reasonmill.verify.math_second import second_opinion
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
    memory_limit_mb: int | None = Field(
        2048, ge=64, description="address space a pool worker may add; an item over it gets resource_limit"
    )
    float_rounding: int = Field(6, ge=0)
    numeric_precision: int = Field(15, ge=1)
    strict: bool = True
    allow_set_relation_comp: bool = False
    rel_tol: float = Field(1e-4, ge=0, description="relative tolerance for non-integer numeric answers")
    second_checker: bool = Field(
        True, description="also run the independent checker; disagreements are marked"
    )
    decide: Literal["math_verify", "both_must_pass", "either"] = Field(
        "math_verify", description="which verdict counts when the two checkers disagree"
    )
    max_answer_chars: int = Field(
        2000, ge=1, description="longer answers or references are rejected (answer_too_large) before parsing"
    )


# --- math-verify wrappers (imported lazily: sympy costs ~1 s to import) -------------------


def _configs(units: bool = True):
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    if units:
        return [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    norm = NormalizationConfig(
        basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all"
    )
    return [LatexExtractionConfig(boxed_match_priority=0, normalization_config=norm), ExprExtractionConfig()]


def _parse(text: str, units: bool = True) -> list:
    from math_verify import parse

    return parse(text, _configs(units), parsing_timeout=None)


def _has_expr(parsed: list) -> bool:
    """True when math-verify got a sympy object, not just the fallback string."""
    return any(not isinstance(p, str) for p in parsed)


def _verify(gold: list, pred: list, settings: MathSettings) -> bool:
    from math_verify import verify

    equal = bool(
        gold
        and pred
        and verify(
            gold,
            pred,
            float_rounding=settings.float_rounding,
            numeric_precision=settings.numeric_precision,
            strict=settings.strict,
            allow_set_relation_comp=settings.allow_set_relation_comp,
            timeout_seconds=None,
        )
    )
    if equal and (g := _number(gold)) and (p := _number(pred)):
        return _same_at_any_scale(g[0], p[0], settings)
    return equal


#: below this magnitude math-verify's rounding (``float_rounding`` = 6 decimals) keeps
#: fewer than 3 significant digits: 1.602e-19 and 0 both round to 0.0
_TINY = 1e-3


def _same_at_any_scale(gold: float, pred: float, settings: MathSettings) -> bool:
    """Confirm math-verify's "equal" for two plain numbers. Integers are compared exactly
    (not as floats: 2^64 + 1 is not 2^64). Tiny numbers are held to ``rel_tol`` as large
    ones are, not to 6 decimal places, where any two of them are equal."""
    if gold == pred:
        return True
    if isinstance(gold, int) and isinstance(pred, int):
        return False
    if max(abs(gold), abs(pred)) >= _TINY:
        return True
    return abs(pred - gold) <= settings.rel_tol * abs(gold)


def warmup() -> None:
    """Worker initializer: import sympy/math-verify and fill their caches once, and
    silence math-verify's "timeout is disabled" warning (we enforce timeouts outside)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    for g, p in (("\\frac{1}{2}", "0.5"), ("[1,2)", "[1, 2)"), ("x=3", "3"), ("\\sqrt{2}", "1.41")):
        _verify(_parse(f"\\boxed{{{g}}}"), _parse(f"\\boxed{{{p}}}"), MathSettings())
    _parse("\\boxed{\\frac{37}{4}m}", units=False)


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


def _plain(s: str) -> str:
    """What both sides get before parsing: ``\\$18.90`` -> ``18.90`` (an escaped dollar is
    a unit and breaks parsing), ``1e-5`` -> ``1\\times 10^{-5}``, ``x²`` -> ``x^{2}``."""
    return e_notation(plain_unicode(_CURRENCY.sub("", s)))


def parse_gold(reference: str) -> list:
    """Parse the reference; wrapped in ``\\boxed{}`` unless it already carries delimiters."""
    reference = _plain(reference)
    if "\\boxed" in reference or "\\fbox" in reference:
        return _parse(reference)
    inner = _strip_math_delims(reference)
    if "$" in inner:  # several math spans: let math-verify join them
        return _parse(reference)
    parsed = _parse(f"\\boxed{{{inner}}}")
    if not _has_expr(parsed):
        parsed = parsed + [p for p in _parse(reference) if not isinstance(p, str)]
    return parsed


def _fragment(parsed: list, source: str) -> bool:
    """True when math-verify parsed nothing, or only a piece of ``source`` (``\\lambda_{``
    out of ``\\lambda_{\\text{red}}/\\sqrt{2}``): such a parse must never decide a verdict.
    (The matched text math-verify returns is normalized, units dropped, so its length
    says nothing; an unclosed brace does.)"""
    if not _has_expr(parsed):
        return True
    matched = next((p for p in parsed if isinstance(p, str)), "")
    return matched.count("{") != matched.count("}")


_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
#: what the extracted answer is parsed from when nothing anchors it: the end of the region
_REGION_TAIL = 2000


def _answer_text(ext: Extraction) -> str:
    if ext.method == "boxed" and len(ext.all_boxed) > 1:
        return ", ".join(ext.all_boxed)
    return ext.text


def parse_prediction(region: str, ext: Extraction) -> tuple[list, str]:
    """Parse the extracted answer; returns (parsed, the string that was parsed).

    Tries, in order, and keeps the first that yields a sympy object: the extracted answer
    wrapped in ``\\boxed{}`` (several boxed answers joined with ", "), the extracted text
    as-is, then math-verify's own extraction over the end of the answer region.

    Prose in a box (``\\boxed{\\text{between 25 and 75 cents}}``) is not parsed for a
    stray number: only ``Yes, 4`` / ``3 bushels`` shapes give their number; the rest is
    compared as text.
    """
    pred = _plain(_answer_text(ext))
    if is_range(pred):
        return [], pred
    if ext.method in ("boxed", "subproblem") and is_prose(pred):
        simpler = number_before_words(drop_yes_no(pred)) or drop_yes_no(pred)
        if is_prose(simpler) or is_range(simpler):
            return [], pred
        pred = simpler
    attempts: list[tuple[str, str]] = []  # (text to parse, label)
    if ext.method == "last_number":  # no anchor: math-verify's last-expression logic on the end
        attempts.append((region[-300:], "region"))
    if not _UNESCAPED_DOLLAR.search(pred) and not is_prose(pred):
        attempts.append((f"\\boxed{{{pred}}}", "pred"))
    attempts.append((pred, "pred"))
    if ext.method not in ("last_number", "boxed"):
        attempts.append((region[-_REGION_TAIL:], "region"))
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
_SUB_BRACE = re.compile(r"_\{(\w)\}")


def _loose(s: str) -> str:
    """Loose text form for the last-resort string comparison (``\\text{Evelyn}`` = ``Evelyn``,
    ``E_{1},E_{2}`` = ``E_1, E_2``).

    Row separators ``\\\\`` are dropped too: references whose backslashes were lost to an
    escaping bug (``\\begin{pmatrix}-2-14-7\\end{pmatrix}`` in the SkyThought 27B file)
    still match the correct column vector."""
    s = _TEXT_RE.sub(r"\1", s).replace("\\\\", "")
    s = (
        s.replace("\\left", "")
        .replace("\\right", "")
        .replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
    )
    s = _SUB_BRACE.sub(r"_\1", s)
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


# --- second chances: shapes math-verify misreads, tried only after it said no -------------


def _number(parsed: list) -> tuple[float, bool] | None:
    """(value, is an integer) when the first parse is one real number, else None. An
    integer is a Python ``int``, exact at any size."""
    import sympy

    expr = parsed[0] if parsed and not isinstance(parsed[0], str) else None
    if not isinstance(expr, sympy.Expr) or expr.free_symbols or not expr.is_number:
        return None
    if expr.is_integer:  # also an unevaluated one: 2^{64} + 1
        exact = expr if expr.is_Integer else expr.doit()
        if exact.is_Integer:
            return int(exact), True
    try:
        value = complex(expr.evalf())
    except (TypeError, ValueError, ArithmeticError):
        return None
    if value.imag != 0:
        return None
    return value.real, bool(expr.is_Integer)


def _boxed_parse(text: str, units: bool = True) -> list:
    return _parse(f"\\boxed{{{_plain(text)}}}", units)


def _ordered_items(gold: str, pred: str, settings: MathSettings) -> bool:
    """``-2,-2`` against ``(-2, -2)`` or ``a = -2, b = -2``: the same values in the same
    order, item by item (never an interval: ``(1,3)`` is not the pair ``1,3``)."""
    g_items = split_top(gold)
    if len(g_items) < 2 or outer_parens(gold) is not None:
        return False
    inner = outer_parens(pred)
    p_items = split_top(inner if inner is not None else pred)
    if len(p_items) != len(g_items):
        return False
    if inner is not None and len(p_items) == 2 and pred.strip().startswith(("(", "\\left(")):
        lo, hi = (_number(_boxed_parse(x)) for x in p_items)
        if lo and hi and lo[0] < hi[0]:
            return False  # reads as an open interval
    return all(
        _verify(_boxed_parse(rhs(g)), _boxed_parse(rhs(p)), settings) for g, p in zip(g_items, p_items)
    )


#: expressions larger than this (sympy operation count, both sides) are not simplified
_REWRITE_MAX_OPS = 60


def _rewrite_equal(g_parsed: list, p_parsed: list) -> bool:
    """``\\frac{\\sinh(at)}{a}`` against ``\\frac{1}{2a}(e^{at}-e^{-at})``: equal once both
    are written with ``exp``."""
    import sympy

    g, p = g_parsed[0], p_parsed[0]
    if not (isinstance(g, sympy.Expr) and isinstance(p, sympy.Expr)) or not (
        g.free_symbols or p.free_symbols
    ):
        return False
    kinds = (sympy.exp, sympy.sinh, sympy.cosh, sympy.tanh, sympy.sin, sympy.cos, sympy.tan)
    if not (g.has(*kinds) or p.has(*kinds)) or sympy.count_ops(g) + sympy.count_ops(p) > _REWRITE_MAX_OPS:
        return False  # nothing to rewrite, or too big to simplify within a worker's timeout
    diff = (g - p).rewrite(sympy.exp)
    return sympy.simplify(diff) == 0


def second_chance(
    gold: str, g_parsed: list, pred: str, p_parsed: list, settings: MathSettings, problem: str | None
) -> str | None:
    """Which rewrite makes the sides equal after math-verify said no, or None.

    In order: the numeric tolerance policy (:mod:`reasonmill.verify.math_numeric`);
    equations and named values reduced to their values (``x(t) = …``, ``b = m``, conditions
    and yes/no dropped); item-by-item lists; units not stripped (``\\frac{37}{4}m`` is a
    variable ``m``); hyperbolic and trigonometric forms rewritten with ``exp``; an
    inequality answer read as the interval it describes."""
    g_num, p_num = _number(g_parsed), _number(p_parsed)
    if g_num and not p_num and (value := number_before_words(pred)):  # "671.02 nm", "3 bushels"
        p_num = _number(_boxed_parse(value))
    if g_num and p_num:
        rule = numbers_match(
            g_num[0],
            p_num[0],
            gold_is_int=g_num[1],
            pred_is_int=p_num[1],
            gold_text=_plain(_strip_math_delims(gold)),
            hint=precision_hint(problem),
            rel_tol=settings.rel_tol,
        )
        return f"numeric_{rule}" if rule else None
    g_form = drop_names(drop_condition(_strip_math_delims(gold)))
    p_form = drop_names(drop_condition(drop_yes_no(pred)))
    if clashing_names(_plain(_strip_math_delims(gold)), _plain(pred)):
        return None  # "y = 3" does not answer "x = 3", nor "g(x) = 2x" "f(x) = 2x"
    if (g_form, p_form) != (_strip_math_delims(gold), pred):
        g2, p2 = _boxed_parse(g_form), _boxed_parse(p_form)
        if not _fragment(g2, g_form) and _verify(g2, p2, settings):
            return "value_of_equation"
    if _ordered_items(_strip_math_delims(gold), pred, settings):
        return "ordered_items"
    g3, p3 = _boxed_parse(g_form, units=False), _boxed_parse(p_form, units=False)
    if not _fragment(g3, g_form) and _verify(g3, p3, settings):
        return "units_kept"
    if _has_expr(g3) and _has_expr(p3) and _rewrite_equal(g3, p3):
        return "rewrite_exp"
    interval = inequality_as_interval(pred)
    if (
        interval is not None
        and not _fragment(g_parsed, gold)
        and _verify(g_parsed, _boxed_parse(interval), settings)
    ):
        return "interval_of_inequality"
    return None


def _verdict(passed: bool, reason: str, details: dict[str, Any]) -> Verdict:
    return Verdict(1.0 if passed else 0.0, passed, reason, details, NAME)


def check(
    reference: Any,
    response_text: str | None,
    settings: MathSettings = MathSettings(),
    raw: str | None = None,
    problem: str | None = None,
) -> Verdict:
    """The verdict for one answer against one reference, in this process (no timeout).

    Pure and picklable; ``MathVerifier.verify_many`` runs it in the pool. ``raw`` is the
    whole response: searched when ``response_text`` (the answer part) holds no answer,
    e.g. a solution part cut off by the token limit after the thinking concluded. The
    ``problem`` names the subproblem asked and the precision it wants.

    With ``settings.second_checker``, every comparison also gets the independent
    checker's verdict (:mod:`reasonmill.verify.math_second`) in ``details["second"]``;
    ``details["disagreement"]`` marks where the two differ, and ``settings.decide`` says
    which counts (math-verify's by default).
    """
    verdict = _primary(reference, response_text, settings, raw, problem)
    if not settings.second_checker or verdict.reason not in ("math_equal", "math_not_equal", "parse_error"):
        return verdict
    if verdict.details.get("compared_as") == "time":  # the second checker reads 4:30 as a ratio too
        return verdict
    details = dict(verdict.details)
    gold, pred = normalize_reference(reference) or "", details.get("answer") or details.get("pred")
    if not pred:
        return verdict
    try:
        second = second_opinion(_plain(gold), _plain(str(pred)))
    except Exception as exc:  # the second opinion must never cost the first
        details["second"] = {"error": f"{type(exc).__name__}: {_short(exc)}"}
        return Verdict(verdict.score, verdict.passed, verdict.reason, details, NAME)
    details["second"] = {"passed": second.passed, "via": second.via}
    if second.passed == verdict.passed:
        return Verdict(verdict.score, verdict.passed, verdict.reason, details, NAME)
    details["disagreement"] = True
    passed = {"math_verify": verdict.passed, "both_must_pass": False, "either": True}[settings.decide]
    if passed == verdict.passed:
        return Verdict(verdict.score, verdict.passed, verdict.reason, details, NAME)
    details["math_reason"] = verdict.reason
    return _verdict(passed, "second_checker_equal" if passed else "second_checker_not_equal", details)


def _asks_percent(problem: str | None) -> bool:
    """Whether the problem asks for a percentage (unknown problem: assume it may)."""
    return problem is None or bool(re.search(r"percent|%", problem, re.IGNORECASE))


def _named_values(gold: str, pred: str) -> tuple[str, str] | None:
    """The values of ``name = value`` on both sides, when both are one such equation.

    math-verify compares equations by their solutions, so ``\\frac{dM}{dt} = A M^6`` and
    ``\\frac{dM}{dt} = A M^5`` (both solved by ``M = 0``) come out equal."""
    g, p = _plain(_strip_math_delims(gold)), _plain(pred)
    if "," in g or "," in p:
        return None
    g_value, p_value = rhs(g), rhs(p)
    if g_value == g or p_value == p:
        return None
    g_name, p_name = g[: g.rfind(g_value)], p[: p.rfind(p_value)]
    return (
        (g_value, p_value) if _loose(g_name) == _loose(p_name) else None
    )  # y = 2x+1 vs x = (y-1)/2: math-verify


def _values_by_name(gold: str, pred: str) -> list[tuple[str, str]] | None:
    """``a = 1, b = 2`` against ``b = 2, a = 1``: the (reference, answer) value of each
    name, when both sides are lists of two or more ``name = value`` items naming the same
    names once each; else None. Why: compared as plain lists, the names dropped, ``a = 2,
    b = 1`` would pass for ``a = 1, b = 2``."""
    sides = []
    for text in (_plain(_strip_math_delims(gold)), _plain(pred)):
        items = split_top(text)
        if len(items) < 2:
            return None
        named = {}
        for item in items:
            value = rhs(item)
            if value == item:
                return None
            named[_loose(item[: item.rfind(value)].rstrip().rstrip("="))] = value
        if len(named) != len(items):
            return None
        sides.append(named)
    g, p = sides
    if set(g) != set(p):
        return None
    return [(g[name], p[name]) for name in g]


def _primary(
    reference: Any, response_text: str | None, settings: MathSettings, raw: str | None, problem: str | None
) -> Verdict:
    """math-verify's verdict with our extraction, guards and second chances."""
    gold = normalize_reference(reference)
    if gold is None:
        return _verdict(False, "no_reference", {"gold": None})
    text = response_text or ""
    if len(gold) > settings.max_answer_chars:
        return _verdict(
            False, "answer_too_large", {"gold": _short(gold), "side": "reference", "chars": len(gold)}
        )
    loop = degenerate(text)
    if loop is not None:
        return _verdict(False, "degenerate", {"gold": _short(gold), **loop})
    ext = extract_answer(text, problem)
    if ext is None and raw and raw != response_text:
        text = raw
        ext = extract_answer(raw, problem)
        if ext is not None:
            ext = Extraction(ext.text, ext.method, ext.all_boxed, "full")
    if ext is None:
        return _verdict(False, "no_answer_extracted", {"gold": gold, "pred": None, "method": None})
    details: dict[str, Any] = {"gold": _short(gold), "pred": _short(ext.text), "method": ext.method}
    if ext.scope != "answer":
        details["scope"] = ext.scope
    answer = _answer_text(ext)
    if answer != ext.text:
        details["answer"] = _short(answer)
    if len(answer) > settings.max_answer_chars:
        return _verdict(False, "answer_too_large", details | {"side": "answer", "chars": len(answer)})
    if ext.method != "last_number" and _loose(gold) and _loose(gold) == _loose(answer):
        return _verdict(
            True, "math_equal", details | {"pred": _short(answer), "via": "text"}
        )  # no parsing needed
    clock = same_clock_time(gold, answer, problem)
    if clock is not None:  # "4:30" is a time, which math-verify would read as the ratio 2/15
        details |= {"pred": _short(answer), "compared_as": "time"} | ({"via": "time"} if clock else {})
        return _verdict(clock, "math_equal" if clock else "math_not_equal", details)
    ratio = same_ratio(gold, answer)
    if ratio is not None:  # "1:3:2" would be (1/3)/2, equal to 1:2:3 as an expression
        details |= {"pred": _short(answer), "compared_as": "ratio"} | ({"via": "ratio"} if ratio else {})
        return _verdict(ratio, "math_equal" if ratio else "math_not_equal", details)
    why = too_complex(_plain(answer)) or too_complex(_plain(gold))
    if why:
        return _verdict(False, "answer_too_complex", details | {"error": why})
    try:
        gold_parsed = parse_gold(gold)
        gold_whole = not _fragment(gold_parsed, gold)
        pred_parsed, pred = parse_prediction(answer_region(text), ext)
        if (scaled := magnitude_value(pred, problem)) is not None:  # "5 \text{ million}" is not 5
            details["magnitude"] = _short(pred)
            pred, pred_parsed = scaled, _boxed_parse(scaled)
        details["pred"] = _short(pred)
        details["parsed_gold"] = _short(gold_parsed[0]) if gold_parsed else None
        details["parsed_pred"] = _short(pred_parsed[0]) if pred_parsed else None
        if not gold_whole:
            details["gold_unparsed"] = True
        by_name = _values_by_name(gold, pred)
        if by_name is not None:
            equal = all(_verify(_boxed_parse(g), _boxed_parse(p), settings) for g, p in by_name)
            return _verdict(
                equal, "math_equal" if equal else "math_not_equal", details | {"compared_as": "names"}
            )
        named = _named_values(gold, pred)
        if named is not None:  # "y(t) = A" vs "y(t) = B": compare A and B, never the equations
            equal = _verify(_boxed_parse(named[0]), _boxed_parse(named[1]), settings)
        else:
            equal = gold_whole and _verify(gold_parsed, pred_parsed, settings)
        if not equal and pred_parsed and "%" in pred and "%" not in gold and _asks_percent(problem):
            # "what percent ...": gold 17.5 and answer 17.5\% mean the same (a probability
            # 0.5 and 0.5\% do not: only when the problem asks for a percentage)
            no_pct = _boxed_parse(re.sub(r"\\?%", "", pred))
            if gold_whole and _verify(gold_parsed, no_pct, settings):
                equal, details["via"] = True, "percent"
        if not equal and _loose(gold) and _loose(gold) == _loose(pred):
            equal, details["via"] = True, "text"
        if not equal and _same_choice(gold, pred):
            equal, details["via"] = True, "choice"
        if not equal and (pred_parsed or not is_prose(pred)):  # "x(t) = …" may parse only as its value
            via = second_chance(gold, gold_parsed, pred, pred_parsed, settings, problem)
            if via:
                equal, details["via"] = True, via
        if not equal and ext.method == "last_number" and gold_whole:
            last_line = answer_region(text).rstrip().rsplit("\n", 1)[-1]
            for value in unit_chain(last_line)[:-1]:  # the last one was compared above
                if second_chance(gold, gold_parsed, value, _boxed_parse(value), settings, problem):
                    equal, details["via"], details["pred"] = True, "unit_chain", value
                    break
    except Exception as exc:  # math-verify swallows most errors; sympy may still raise
        details["error"] = f"{type(exc).__name__}: {_short(exc)}"
        return _verdict(False, "parse_error", details)
    if equal:
        return _verdict(True, "math_equal", details)
    if not pred_parsed:
        details["error"] = "math-verify could not parse the extracted answer"
        return _verdict(False, "parse_error", details)
    return _verdict(False, "math_not_equal", details)


@dataclass(frozen=True)
class _Task:
    """What a worker runs: small and picklable (never the whole record)."""

    settings: MathSettings

    def __call__(self, item: tuple[Any, str, str | None, str | None]) -> Verdict:
        reference, text, raw, problem = item
        return check(reference, text, self.settings, raw, problem)


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
    #: bump when a verdict can change for the same inputs (see reasonmill.verify.keys);
    #: 3: clock times (``4:30``) are compared as times
    version: ClassVar[str] = "3"

    def __init__(
        self,
        settings: MathSettings | None = None,
        judge: Judge | None = None,
        *,
        judge_key: Any = None,
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
            self._pool = VerifyPool(
                s.workers, s.timeout, initializer=warmup, mp_context=s.mp_context,
                memory_limit=s.memory_limit_mb << 20 if s.memory_limit_mb else None,
            )  # fmt: skip
        return self._pool

    def cache_key(self, record: dict, response: dict) -> str:
        """Everything the verdict depends on: settings (not the pool size), the judge,
        math-verify/sympy versions, the reference, the answer part and the raw fallback;
        with a judge also the problem and the reference as the judge sees it."""
        fields: list[Any] = [normalize_reference(record.get("reference_answer")), response_text(response),
                             _raw_fallback(response), record.get("problem")]  # fmt: skip
        if self.judge is not None:
            fields.append(str(record.get("reference_answer")))
        settings = self.settings.model_dump(exclude={"workers", "mp_context"})
        libraries = package_versions(*LIBRARIES)
        return verdict_key(NAME, self.version, [settings, self.judge_key], libraries, fields)

    def verify(self, record: dict, response: dict) -> Verdict:
        verdict = check(
            record.get("reference_answer"),
            response_text(response),
            self.settings,
            _raw_fallback(response),
            record.get("problem"),
        )
        return self._maybe_judge(record, response, verdict)

    def verify_many(self, pairs: Iterable[tuple[dict, dict]]) -> list[Verdict]:
        """Verdicts for many ``(record, response)`` pairs, in order, through the pool."""
        pairs = list(pairs)
        items = [
            (r.get("reference_answer"), response_text(resp), _raw_fallback(resp), r.get("problem"))
            for r, resp in pairs
        ]
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
        if res.status in ("timeout", "resource_limit"):  # the worker was killed or ran out of memory
            return Verdict(0.0, False, res.status, details, NAME)
        if (
            res.status == "crashed"
        ):  # died twice, killed from outside (the OOM killer?): not the answer's fault
            return Verdict(0.0, False, VERIFIER_CRASHED, details | {"status": res.status}, NAME)
        return Verdict(0.0, False, "parse_error", details | {"status": res.status}, NAME)

    def _maybe_judge(self, record: dict, response: dict, verdict: Verdict) -> Verdict:
        """Ask the judge only when math-verify said no (not when there is no answer)."""
        if self.judge is None or verdict.reason not in ("math_not_equal", "parse_error"):
            return verdict
        details = dict(verdict.details)
        try:
            ok, reasoning = self.judge(
                record.get("problem") or "", str(record.get("reference_answer")), response_text(response)
            )
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
