"""Which names a test's code uses, and which of them the test is about (host side).

The harness builds the tests' namespace from these (see ``_harness.Supervisor``): only
names the tests use are fetched from the solution, and a solution's name replaces a
builtin or prelude name only when the test is about it. Why: MBPP asks for functions
called ``sum``, ``gcd`` or ``merge``, HumanEval for ``add``; but a solution defining
``len`` or ``is_same_tree`` must not change how ``assert len(f(x)) == 2`` checks.

Computed on the host (which parses anyway) so the sandboxed harness need not import
``ast`` for every run.
"""

from __future__ import annotations

import ast
import builtins
import warnings

from reasonmill.sandbox import _box_prelude

#: Names the tests' namespace has before the solution's: builtins and the prelude's.
BASE_NAMES = frozenset(dir(builtins)) | {n for n in dir(_box_prelude) if not n.startswith("_")}


def _parse(text: str, mode: str) -> ast.AST | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes in test strings
        try:
            return ast.parse(text, mode=mode)
        except (SyntaxError, ValueError):
            return None


def _root_name(expr: ast.AST) -> str | None:
    while isinstance(expr, (ast.Attribute, ast.Call, ast.Subscript)):
        expr = expr.func if isinstance(expr, ast.Call) else expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def used_names(code: str, target: str = "") -> set[str]:
    """Every identifier the test's code (and ``check`` target) reads or writes."""
    names: set[str] = set()
    for text, mode in ((code, "exec"), (target.strip(), "eval")):
        tree = _parse(text, mode) if text else None
        if tree is not None:
            names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return names


def _calls_the_solution(node: ast.AST) -> bool:
    """Whether ``node`` contains a call of something that is not a builtin or prelude name
    (``f(x)``, ``Solution().g(x)``; not ``len(x)``, ``math.sqrt(x)``, ``"a".upper()``)."""
    for c in ast.walk(node):
        if isinstance(c, ast.Call):
            root = _root_name(c.func)
            if root is not None and root not in BASE_NAMES:
                return True
    return False


def subjects(code: str, target: str = "") -> set[str]:
    """The names a test is about: the root of a ``check`` target (``add``, ``Solution``),
    and a function an ``assert`` calls directly (``assert f(1) == 2``, ``assert not
    f(1)``, ``assert f(1)``) when neither its arguments nor the other side of the
    comparison call anything but builtins and prelude helpers. A name that anywhere wraps
    such a call is a checker, never a subject: in ``assert len(f(1)) == 2`` and ``assert
    set([1]) == set(f(1))`` the solution's ``len``/``set`` must not be used."""
    out: set[str] = set()
    tree = _parse(target.strip(), "eval") if target.strip() else None
    if tree is not None and (root := _root_name(tree.body)):
        out.add(root)
    tree = _parse(code, "exec") if code else None
    if tree is None:
        return out
    found: set[str] = set()
    checkers: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if any(_calls_the_solution(a) for a in [*node.args, *node.keywords]):
                checkers.add(node.func.id)
        if not isinstance(node, ast.Assert):
            continue
        e, others = node.test, []
        while isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not):
            e = e.operand
        if isinstance(e, ast.Compare):
            e, others = e.left, e.comparators
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and not any(_calls_the_solution(o) for o in others):
            if not any(_calls_the_solution(a) for a in [*e.args, *e.keywords]):
                found.add(e.func.id)
    return out | (found - checkers)
