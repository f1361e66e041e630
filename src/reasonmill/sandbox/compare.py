"""Comparison on the host: functional return values and stdin/stdout outputs.

Both run outside the sandbox, on values the host decoded itself (see ``_wire``), so
nothing the tested program defines takes part in a comparison.

Return values: deep equality where tuples equal lists and floats match to 1e-6
(relative or absolute).

Outputs, token-wise, like most competitive-programming checkers: whitespace (spaces,
tabs, line breaks, ``\\r``) only separates tokens; two tokens match when they are equal
strings or both parse as finite numbers within 1e-6 (relative or absolute). So ``3\\r\\n``
matches ``3``, and ``0.3333333`` matches ``0.33333333``. Line structure is not checked.
"""

from __future__ import annotations

import json
import math


def floats_close(a: float, b: float, tol: float = 1e-6) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol or abs(a - b) <= tol * max(abs(a), abs(b))


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def values_equal(got: object, expected: object, tol: float = 1e-6) -> bool:
    """Deep equality where tuples equal lists and floats match to ``tol`` (rel or abs)."""
    if got == expected and type(got) is type(expected):
        return True
    if _number(got) and _number(expected):
        if isinstance(got, int) and isinstance(expected, int):
            return got == expected
        return floats_close(float(got), float(expected), tol)
    if isinstance(got, (list, tuple)) and isinstance(expected, (list, tuple)):
        return len(got) == len(expected) and all(values_equal(g, e, tol) for g, e in zip(got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(values_equal(got[k], expected[k], tol) for k in got)
    return got == expected


def returned_matches(got: object, expected: object) -> bool:
    """A functional test's verdict: the value as JSON would carry it (a tuple is a list,
    a Counter a dict) or as returned, equal to the expected JSON value."""
    try:
        as_json = json.loads(json.dumps(got))
    except (TypeError, ValueError):
        as_json = got
    return values_equal(as_json, expected) or values_equal(got, expected)


def _as_float(token: str) -> float | None:
    try:
        x = float(token)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def tokens_match(got: str, expected: str, tol: float = 1e-6) -> bool:
    if got == expected:
        return True
    a, b = _as_float(got), _as_float(expected)
    return a is not None and b is not None and floats_close(a, b, tol)


def outputs_match(got: str, expected: str, tol: float = 1e-6) -> bool:
    g, e = got.split(), expected.split()
    return len(g) == len(e) and all(tokens_match(x, y, tol) for x, y in zip(g, e))
