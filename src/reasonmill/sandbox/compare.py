"""Output comparison for stdin/stdout tests.

Token-wise, like most competitive-programming checkers: whitespace (spaces, tabs, line
breaks, ``\\r``) only separates tokens; two tokens match when they are equal strings or
both parse as finite numbers within 1e-6 (relative or absolute). So ``3\\r\\n`` matches
``3``, and ``0.3333333`` matches ``0.33333333``. Line structure is not checked.
"""

from __future__ import annotations

import math

from reasonmill.sandbox._harness import floats_close


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
