"""A second, independent math checker: the grading rules of the Qwen2.5-Math evaluation
(``math_equal``), written anew, plus a numeric test of expressions at random points.

Why a second checker: math-verify decides, but where two methods that fail differently
disagree, one of them is wrong; listing those cases (``details["second"]`` and
``details["disagreement"]`` in every math verdict) is a triage queue for people. It
shares no code path with math-verify's comparison: its own string normalization, plain
float parsing, and ``latex2sympy`` only as a parser, never math-verify's ``verify``.

Rules, first that says "equal" wins (all cheap):

1. the normalized strings are equal (spaces, ``\\left``/``\\right``, ``\\text{}``
   units, ``^\\circ``, ``\\%``, ``dfrac``, a leading ``x =`` dropped);
2. both are numbers (``3/4``, ``\\frac{3}{4}``, ``50\\%``, ``1{,}000``): relative
   difference at most 1e-4 (the Qwen grader's ``isclose``);
3. both are lists of the same length: each item matches one item of the other side;
4. both parse as expressions: equal at five seeded random points of their free symbols
   (closed-form numbers are just evaluated).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache

#: points at which two expressions are compared; the seed keeps verdicts reproducible
POINTS = 5
SEED = 1234
REL_TOL = 1e-4
_EVAL_TOL = 1e-6


@dataclass(frozen=True)
class SecondOpinion:
    passed: bool
    via: str  # which rule decided: "string", "number", "items", "points", or "none"


_TEXT = re.compile(r"\\(?:text|mathrm|mbox|textbf)\s*\{([^{}]*)\}")
_UNIT_WORDS = re.compile(r"(?<=\d)\s*(?:[a-zA-Z]{1,3}\b|[a-zA-Z]+s)\s*$")


def normalize(s: str) -> str:
    """The Qwen-grader style string form of an answer."""
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |~|\\displaystyle", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\%", "").replace("%", "").replace("{,}", "")
    s = _TEXT.sub(r"\1", s)
    if re.match(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*=", s) and s.count("=") == 1:
        s = s.split("=", 1)[1]
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    return s.rstrip(".")


_NUM = re.compile(r"^-?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)$")
_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}$")
_SLASH = re.compile(r"^(-?\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)$")


def to_number(s: str) -> float | None:
    """A plain number, fraction or percentage, else None (no symbolic parsing here)."""
    s = _UNIT_WORDS.sub("", s)
    if _NUM.match(s):
        return float(s.replace(",", ""))
    if m := _FRAC.match(s):
        den = float(m.group(3))
        return None if den == 0 else (-1 if m.group(1) else 1) * float(m.group(2)) / den
    if m := _SLASH.match(s):
        den = float(m.group(2))
        return None if den == 0 else float(m.group(1)) / den
    return None


def _split(s: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        depth += c in "([{"
        depth -= c in ")]}"
        if c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


@lru_cache(maxsize=256)
def _expr(s: str):
    """``s`` parsed by latex2sympy (each distinct string once: lists compare item pairs)."""
    from latex2sympy2_extended import latex2sympy

    try:
        return latex2sympy(s)
    except Exception:
        return None


def _points_equal(a: str, b: str) -> bool:
    import sympy

    ea, eb = _expr(a), _expr(b)
    if not (isinstance(ea, sympy.Expr) and isinstance(eb, sympy.Expr)):
        return False
    symbols = sorted(ea.free_symbols | eb.free_symbols, key=str)
    rng = random.Random(SEED)
    for _ in range(POINTS if symbols else 1):
        values = {x: rng.uniform(0.5, 2.0) for x in symbols}
        try:
            va = complex(ea.evalf(subs=values))
            vb = complex(eb.evalf(subs=values))
        except (TypeError, ValueError, ArithmeticError):
            return False
        if not (math.isfinite(va.real) and math.isfinite(vb.real)):
            return False
        if abs(va - vb) > _EVAL_TOL * max(1.0, abs(va), abs(vb)):
            return False
    return True


def _tuple_items(s: str) -> list[str] | None:
    if len(s) > 1 and s[0] == "(" and s[-1] == ")":
        items = _split(s[1:-1])
        return items if len(items) > 1 else None
    return None


def _one(gold: str, pred: str) -> str | None:
    if gold == pred:
        return "string"
    g_tuple, p_tuple = _tuple_items(gold), _tuple_items(pred)
    if g_tuple is not None or p_tuple is not None:  # (a, b) against (c, d): component by component
        if g_tuple is None or p_tuple is None or len(g_tuple) != len(p_tuple):
            return None
        return "items" if all(_one(a, b) for a, b in zip(g_tuple, p_tuple)) else None
    g, p = to_number(gold), to_number(pred)
    if g is not None and p is not None:
        return "number" if math.isclose(g, p, rel_tol=REL_TOL, abs_tol=1e-12) else None
    if _points_equal(gold, pred):
        return "points"
    return None


def second_opinion(gold: str, pred: str) -> SecondOpinion:
    """The second checker's verdict on an extracted answer against the reference."""
    g, p = normalize(gold), normalize(pred)
    if not g or not p:
        return SecondOpinion(False, "none")
    g_items, p_items = _split(g), _split(p)
    if len(g_items) > 1 or len(p_items) > 1:
        if len(g_items) != len(p_items):
            return SecondOpinion(g == p, "string" if g == p else "none")
        left = list(p_items)
        for item in g_items:
            hit = next((q for q in left if _one(item, q)), None)
            if hit is None:
                return SecondOpinion(False, "none")
            left.remove(hit)
        return SecondOpinion(True, "items")
    via = _one(g, p)
    return SecondOpinion(via is not None, via or "none")
