"""The tolerance policy for numeric answers, and the precision a problem asks for.

Why: references of physics- and engineering-flavoured problems are rounded (``6630``
for 6630.65, ``\\frac{600}{7}`` answered as ``85.71``), and the graders people trust
accept a small relative difference. Contest answers (AIME, integers) must stay exact.

The policy, applied only when both sides are single real numbers and math-verify said no:

1. Both integers: equal only when identical (an AIME ``204`` never matches ``205``). An
   integer reference below 1000 takes only that integer (``25.001`` is not ``25``) unless
   the problem states a precision (rule 2).
2. The problem fixes the precision ("to 2 decimal places", "nearest tenth", "three
   significant figures"): equal when the answer is within half a unit of that place.
3. The reference is a decimal, or a number in scientific notation, with at least 3
   significant figures: equal when the answer is within half a unit of the reference's
   last digit (``3.14`` vs ``3.1416``, ``6.02\\times 10^{23}`` vs ``6.022\\times 10^{23}``).
4. Otherwise: equal when the relative difference is at most ``rel_tol`` (default 1e-4).
"""

from __future__ import annotations

import math
import re

#: an integer reference below this is a contest answer: only the same integer matches it, unless
#: the problem states a precision (rule 2). From 1000 on, an integer reference may be a rounded
#: measurement (``6630`` nm for 6630.65) and rule 4 applies
CONTEST_INTEGER_BELOW = 1000

_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
_PLACES = {"whole number": 0, "integer": 0, "tenth": 1, "hundredth": 2, "thousandth": 3, "ten-thousandth": 4}
_N = r"(\d|one|two|three|four|five|six|seven|eight)"
_DP = re.compile(_N + r"\s+decimal\s+(?:places?|digits?)", re.IGNORECASE)
_SF = re.compile(_N + r"\s+significant\s+(?:figures?|digits?)", re.IGNORECASE)
_NEAREST = re.compile(
    r"nearest\s+(whole number|integer|ten-thousandth|tenth|hundredth|thousandth)s?", re.IGNORECASE
)
_DECIMAL = re.compile(r"^-?(\d*)\.(\d+)$")


def _count(word: str) -> int:
    return int(word) if word.isdigit() else _WORDS[word.lower()]


def precision_hint(problem: str | None) -> tuple[str, int] | None:
    """``("dp", n)`` or ``("sf", n)`` when the problem fixes the precision, else None."""
    if not problem:
        return None
    if m := _SF.search(problem):
        return ("sf", _count(m.group(1)))
    if m := _DP.search(problem):
        return ("dp", _count(m.group(1)))
    if m := _NEAREST.search(problem):
        return ("dp", _PLACES[m.group(1).lower()])
    return None


def reference_decimals(text: str) -> int | None:
    """Decimal places of a reference written as a decimal with ≥ 3 significant figures
    (``3.14`` -> 2, ``0.036`` -> None: two figures say too little)."""
    m = _DECIMAL.match(text.strip())
    if not m:
        return None
    digits = (m.group(1) + m.group(2)).lstrip("0")
    return len(m.group(2)) if len(digits) >= 3 else None


_SCIENTIFIC = re.compile(r"^(-?\d*\.\d+)(?:[eE]([+-]?\d+)|(?:\\times|\\cdot|×|\*)10\^\{?([+-]?\d+)\}?)$")


def reference_half_unit(text: str) -> float | None:
    """Half a unit of the last digit a reference shows, when it shows at least 3
    significant figures: ``3.14`` -> 0.005, ``6.02\\times 10^{23}`` and ``6.02e23`` ->
    0.005e23 (an answer 6.022e23 rounds to the reference); ``0.036`` or ``1.5e-3`` -> None."""
    t = re.sub(r"\s+|\\[,;:! ]|~", "", text)
    if (places := reference_decimals(t)) is not None:
        return 0.5 * 10.0**-places
    m = _SCIENTIFIC.match(t)
    if not m:
        return None
    exponent = int(m.group(2) or m.group(3))
    places = reference_decimals(m.group(1))
    return None if places is None or abs(exponent) > 300 else 0.5 * 10.0 ** (exponent - places)


def _half_unit(gold: float, hint: tuple[str, int]) -> float:
    kind, n = hint
    if kind == "dp":
        return 0.5 * 10.0**-n
    if gold == 0:
        return 0.0
    return 0.5 * 10.0 ** (math.floor(math.log10(abs(gold))) - n + 1)


def _finite(x: float) -> bool:
    return isinstance(x, int) or math.isfinite(x)


def numbers_match(
    gold: float,
    pred: float,
    *,
    gold_is_int: bool,
    pred_is_int: bool,
    gold_text: str = "",
    hint: tuple[str, int] | None = None,
    rel_tol: float = 1e-4,
) -> str | None:
    """Which rule of the policy accepts ``pred`` for ``gold`` (``"exact"``, ``"precision"``,
    ``"reference_digits"``, ``"relative"``), or None when none does."""
    if not (_finite(gold) and _finite(pred)):
        return None
    if gold_is_int and pred_is_int:
        return "exact" if gold == pred else None  # ints compare exactly, at any size
    # the binary floating point of the decimal texts: relative, so that 0 never falls
    # within the slack of 1.6e-19
    slack = 1e-9 * abs(gold)
    if hint is not None and abs(pred - gold) <= _half_unit(gold, hint) + slack:
        return "precision"
    half_unit = reference_half_unit(gold_text)
    if half_unit is not None and abs(pred - gold) <= half_unit + slack:
        return "reference_digits"
    if gold_is_int and abs(gold) < CONTEST_INTEGER_BELOW:
        return None  # a contest answer (AIME's 0-999): 25.001 is not 25, whatever rel_tol says
    if gold != 0 and abs(pred - gold) <= rel_tol * abs(gold):
        return "relative"
    return None
