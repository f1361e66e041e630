"""Text rewrites of math answers that math-verify does not do, as cheap linear scans.

Why: real references and answers come in shapes math-verify's LaTeX parser reads wrongly or
not at all: ``1e-5`` (read as Euler's ``e`` times ...), ``x(t) = …`` and ``\\frac{dM}{dt}=…``
equations, ``a = -2, b = -2`` for the pair ``-2,-2``, ``\\text{Yes, } 4``, conditions after
the answer (``…, \\quad \\text{for } \\omega^2 \\neq 4``), Unicode ``x²``. Each function here
turns one such shape into the plain form; :mod:`reasonmill.verify.math` tries them only
after the direct comparison failed, so a rewrite can only turn a "no" into a "yes" when the
rewritten sides verify as equal.

Also :func:`same_clock_time` (``4:30`` is a time of day, not the ratio ``2/15``),
:func:`same_ratio` (``1:2:3`` is not ``(1/2)/3``) and
:func:`too_complex`: a guard that rejects power towers and huge exponents before
sympy tries to evaluate them (``9^{9^{9^{9}}}`` never finishes).
"""

from __future__ import annotations

import re

_E_NOTATION = re.compile(r"(?<![\w.\\^{])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d{1,4})(?![\w.])")
_UNICODE = {
    "²": "^{2}", "³": "^{3}", "¹": "^{1}", "⁴": "^{4}", "−": "-", "–": "-", "×": "\\times ", "·": "\\cdot ",
    "√": "\\sqrt ", "π": "\\pi ", "∞": "\\infty ", "≤": "\\le ", "≥": "\\ge ", "°": "^{\\circ}", "θ": "\\theta ",
}  # fmt: skip
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))
_OPEN = "([{"
_CLOSE = ")]}"


def e_notation(s: str) -> str:
    """``2.45e6`` -> ``2.45\\times 10^{6}``: a number in e-notation, not Euler's number."""
    return _E_NOTATION.sub(lambda m: f"{m.group(1)}\\times 10^{{{m.group(2)}}}", s)


_COMMAND_SUBSCRIPT = re.compile(r"_(?:\{\\([a-zA-Z]+)\}|\\([a-zA-Z]+))")


_ANGLE = re.compile(r"(?:\\left\s*)?(?:\\langle|⟨)|(?:\\right\s*)?(?:\\rangle|⟩)")


def plain_unicode(s: str) -> str:
    """``x² − 2x`` -> ``x^{2} - 2x``; ``L_{\\odot}`` / ``L_\\odot`` -> ``L_{odot}`` (a command
    as a subscript is only a name, and latex2sympy cannot parse it); a vector
    ``\\langle 1, 2, 3 \\rangle`` -> ``(1, 2, 3)``, the tuple it names."""
    s = _COMMAND_SUBSCRIPT.sub(lambda m: "_{" + (m.group(1) or m.group(2)) + "}", s)
    if "angle" in s or "⟨" in s or "⟩" in s:
        s = _ANGLE.sub(lambda m: "(" if m.group(0).endswith(("langle", "⟨")) else ")", s)
    return _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], s)


def split_top(s: str, sep: str = ",") -> list[str]:
    """``s`` split at ``sep`` outside brackets and braces (``(1,2), 3`` -> 2 parts)."""
    parts, depth, start = [], 0, 0
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(0, depth - 1)
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


_RELATION = re.compile(r"\\(?:le|ge|leq|geq|neq|ne|lt|gt|approx|sim|equiv)(?![a-zA-Z])|[<>≈]")
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|~")


_NAME = re.compile(
    r"(?:\\[a-zA-Z]+\s*)?[A-Za-z]{0,4}(?:_\{?[\w\\]{1,12}\}?)?(?:'{1,2})?(?:\^\{?\w{1,3}\}?)?\s*"
    r"(?:(?:\\left)?\([^()=]{1,20}(?:\\right)?\))?"
    r"|\\frac\{d\^?\{?\d?\}?\s*[A-Za-z](?:_\{?\w+\}?)?\}\{d[A-Za-z](?:\^\{?\d\}?)?\}"
)


def rhs(item: str) -> str:
    """The value of ``name = value`` (``x(t) = 3e^{-t}``, ``\\frac{dM}{dt}=…``, ``A = 5``,
    ``(x)=…`` whose name was lost): the last side when every other side is a name; the
    text itself otherwise (``7 = 11a+c`` is an equation, not a named value)."""
    if "=" not in item or _RELATION.search(item):
        return item
    sides = split_top(item, "=")
    if len(sides) < 2 or not sides[-1] or not all(_NAME.fullmatch(s) for s in sides[:-1] if s):
        return item
    return sides[-1]


def drop_names(s: str) -> str:
    """``a = -2, b = -2`` -> ``-2, -2``: each top-level item's left-hand name dropped."""
    return ", ".join(rhs(p) for p in split_top(s))


_CONDITION = re.compile(
    r"(?:,|\\q?quad|\\[,;:! ]|\s)*\\(?:text|mathrm|textbf)\s*\{\s*(?:for|if|when|where|with)\b", re.IGNORECASE
)
_YES_NO = re.compile(
    r"^\s*\\(?:text|textbf|mathrm)\s*\{\s*(?:yes|no)\b[^{}]*\}\s*,?\s*|^\s*(?:yes|no)\s*,\s*", re.IGNORECASE
)


def drop_condition(s: str) -> str:
    """``A = \\frac{1}{4-\\omega^2}, \\quad \\text{for } \\omega^2 \\neq 4`` -> ``A = \\frac{1}{4-\\omega^2}``:
    the condition after the answer is dropped."""
    m = _CONDITION.search(s)
    return s[: m.start()].strip() if m and m.start() > 0 else s


def drop_yes_no(s: str) -> str:
    """``\\text{Yes, } 4`` -> ``4``: the number after a yes/no is the answer."""
    out = _YES_NO.sub("", s, count=1)
    return out if out.strip() else s


_UNIT_TAIL = re.compile(
    r"^(-?\d[\d,]*(?:\.\d+)?)(?:\s|\\[,;:! ]|~)*(?:\\(?:text|mathrm)\s*\{\s*)?"
    r"((?:[a-zA-Z]{2,}|[a-zA-Z](?=\s*/)|\\mu\s*\\(?:text|mathrm)\s*\{\s*[a-zA-Z])(?:[a-zA-Z /]|\^\{?-?\d\}?)*)"
    r"\}?(?:\^\{?-?\d\}?)?\.?$"
)
_NOT_UNIT = re.compile(r"\b(?:and|or|to|from|between|than|times|of)\b", re.IGNORECASE)


def number_before_words(s: str) -> str | None:
    """``3 bushels`` / ``36 \\text{ mL}`` / ``6 m/s`` / ``3.8\\,\\mu\\text{m}`` -> ``3`` / ``36`` / ``6`` /
    ``3.8``: a number followed only by a unit (a word of 2+ letters, a letter before ``/``,
    or a micro prefix before a unit in ``\\text``; never ``2 x^2`` nor ``3\\mu g``)."""
    m = _UNIT_TAIL.match(s.strip())
    if not m or _NOT_UNIT.search(m.group(2)):
        return None
    return m.group(1).replace(",", "")


_UNIT_VALUE = re.compile(
    r"=\s*(-?\d[\d,]*(?:\.\d+)?)\s*(?:\\(?:text|mathrm)\s*\{[ ~]*)?[a-zA-Z]{1,6}\}?\s*(?==|$)"
)


def unit_chain(line: str) -> list[str]:
    """The values of a conversion chain ending a response, ``V = 0.036 L = 36 mL`` ->
    ``["0.036", "36"]``: every side after the first is a number with a unit, so all name
    the same quantity. Empty when the line is not such a chain."""
    sides = line.split("=")
    if len(sides) < 3 or len(line) > 200:
        return []
    values = [m.group(1).replace(",", "") for m in _UNIT_VALUE.finditer(line)]
    return values if len(values) == len(sides) - 1 else []


_NUMBER_WORD = r"-?\\?\$?\d[\d.,]*(?:\s*[a-zA-Z%\\{}]{1,12})?"
_RANGE = re.compile(
    rf"\bbetween\s+{_NUMBER_WORD}\s+and\s+-?\\?\$?\d"
    rf"|\bfrom\s+{_NUMBER_WORD}\s+to\s+-?\\?\$?\d"
    r"|\d\s*\\sim\s*-?\d",
    re.IGNORECASE,
)


def is_range(s: str) -> bool:
    """``between 25 and 75 cents``, ``from 3 to 5``, ``67\\sim75``: a range, not a value."""
    return bool(_RANGE.search(s))


def outer_parens(s: str) -> str | None:
    """The inside of ``(…)``/``\\left(…\\right)`` around the whole text, else None."""
    t = s.strip().replace("\\left(", "(").replace("\\right)", ")")
    if not (t.startswith("(") and t.endswith(")")):
        return None
    depth = 0
    for i, c in enumerate(t):
        depth += c in _OPEN
        depth -= c in _CLOSE
        if depth == 0 and i < len(t) - 1:
            return None  # "(1,2),(3,4)": two groups, not one
    return t[1:-1]


# --- clock times -----------------------------------------------------------------------------

_TIME_WRAP = re.compile(r"\\(?:text|mathrm|textrm|mbox)\s*\{([^{}]*)\}")
_TIME_SPACE = re.compile(r"\\[,;:! ]|~|\$|\s")
_TIME = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?(?:([ap])\.?(?:m\.?)?)?\.*", re.IGNORECASE)
_RATIO_CONTEXT = re.compile(r"\bratios?\b|\bproportions?\b|\bscale\b|(?<![\w\\])[a-z]\s*:\s*[a-z](?!\w)", re.IGNORECASE)


def clock_time(s: str) -> tuple[frozenset[int], int] | None:
    """``4:30``, ``04:30``, ``4:30 p.m.``, ``\\text{16:30}`` as a time of day: (the hours
    of the day it can mean, minutes*60 + seconds); None when ``s`` is not ``H:MM``.

    Two-digit minutes (00–59) make it a time, so a ratio ``3:2`` is never one. Without
    a.m./p.m., hours 1–12 mean either half of the day (``4:30`` may be ``16:30``)."""
    t = _TIME_SPACE.sub("", _TIME_WRAP.sub(r"\1", s))
    m = _TIME.fullmatch(t)
    if not m or int(m.group(1)) > 24:
        return None
    hour, half = int(m.group(1)), (m.group(4) or "").lower()
    if half:
        if not 1 <= hour <= 12:
            return None
        hours = frozenset({hour % 12 + (12 if half == "p" else 0)})
    else:
        hours = frozenset({hour % 12, hour % 12 + 12}) if 1 <= hour <= 12 else frozenset({hour % 24})
    return hours, int(m.group(2)) * 60 + int(m.group(3) or 0)


def same_clock_time(gold: str, pred: str, problem: str | None = None) -> bool | None:
    """Whether two answers name the same time of day, when either one is a time (``4:30``
    equals ``04:30`` and ``4:30 p.m.``; it is not the ratio ``2:15`` nor the number
    ``2/15``, which is what math-verify reads ``4:30`` as). None when neither side is a
    time, when the problem asks for a ratio (``19:60``, "in the form $a:b$"), or when the
    reference uses a colon that is not a time (``V_{1}:V_{2}=11:21``): then the colon is a
    ratio and the usual comparison applies."""
    if problem and _RATIO_CONTEXT.search(problem):
        return None
    g, p = clock_time(gold), clock_time(pred)
    if g is None and (p is None or ":" in gold):
        return None
    return g is not None and p is not None and g[1] == p[1] and bool(g[0] & p[0])


# --- inequalities as intervals -----------------------------------------------------------------

_LESS = {"<": False, "\\lt": False, "\\le": True, "\\leq": True, "\\leqslant": True}
_MORE = {">": False, "\\gt": False, "\\ge": True, "\\geq": True, "\\geqslant": True}
_REL = r"(<|>|\\l(?:eq?slant|eq?|t)\b|\\g(?:eq?slant|eq?|t)\b)"
_BOUND = r"([-+]?[^<>=,\\]*?(?:\\(?:frac|dfrac|sqrt|pi|infty)[^<>=,]*?)?)"
_CHAIN = re.compile(rf"^{_BOUND}\s*{_REL}\s*([a-zA-Z])\s*{_REL}\s*{_BOUND}$")
_ONE_SIDE = re.compile(rf"^([a-zA-Z])\s*{_REL}\s*{_BOUND}$")
_OR = re.compile(r"\\text\s*\{\s*or\s*\}|\\(?:cup|vee|lor)\b|\bor\b")


def _interval(part: str) -> tuple[str, str] | None:
    """One inequality in one variable as (interval, variable), or None."""
    part = part.strip().strip("$").strip()
    if m := _CHAIN.match(part):
        lo, r1, var, r2, hi = (g.strip() for g in m.groups())
        if r1 in _LESS and r2 in _LESS and lo and hi:
            return f"{'[' if _LESS[r1] else '('}{lo}, {hi}{']' if _LESS[r2] else ')'}", var
        if r1 in _MORE and r2 in _MORE and lo and hi:
            return f"{'[' if _MORE[r2] else '('}{hi}, {lo}{']' if _MORE[r1] else ')'}", var
        return None
    if m := _ONE_SIDE.match(part):
        var, rel, bound = (g.strip() for g in m.groups())
        if not bound:
            return None
        if rel in _LESS:
            return f"(-\\infty, {bound}{']' if _LESS[rel] else ')'}", var
        return f"{'[' if _MORE[rel] else '('}{bound}, \\infty)", var
    return None


def inequality_as_interval(s: str) -> str | None:
    """``-1 \\le x \\le 3`` -> ``[-1, 3]``, ``x < -1 \\text{ or } x > 3`` ->
    ``(-\\infty, -1) \\cup (3, \\infty)``: inequalities in one variable as the interval
    (or union) they describe; None for anything else. Why: math-verify compares an interval
    reference with an inequality answer only the other way round."""
    if not any(c in s for c in "<>") and "\\l" not in s and "\\g" not in s:
        return None
    parts = [_interval(p) for p in _OR.split(s)]
    if not parts or any(p is None for p in parts) or len({p[1] for p in parts}) != 1:  # type: ignore[index]
        return None
    return " \\cup ".join(p[0] for p in parts)  # type: ignore[index]


# --- ratios of three or more terms ------------------------------------------------------------

_RATIO_TERM = re.compile(r"(-?\d+(?:\.\d+)?)(?:/(\d+(?:\.\d+)?))?")
_RATIO_FRAC = re.compile(r"\\[dt]?frac\{(-?\d+(?:\.\d+)?)\}\{(\d+(?:\.\d+)?)\}")


def ratio_terms(s: str) -> list[float] | None:
    """``1:2:3``, ``\\text{2 : 4 : 6}``, ``1:\\frac{1}{2}:3`` as its terms; None unless it
    has at least three colon-separated terms that are all numbers."""
    t = _TIME_SPACE.sub("", _TIME_WRAP.sub(r"\1", s)).replace("\\colon", ":")
    parts = split_top(t, ":")
    if len(parts) < 3:
        return None
    terms = []
    for part in parts:
        m = _RATIO_FRAC.fullmatch(part) or _RATIO_TERM.fullmatch(part)
        if not m:
            return None
        den = float(m.group(2)) if m.group(2) else 1.0
        if den == 0:
            return None
        terms.append(float(m.group(1)) / den)
    return terms


def same_ratio(gold: str, pred: str) -> bool | None:
    """Whether two ratios of three or more numbers are the same ratio (``1:2:3`` equals
    ``2:4:6``, not ``1:3:2``); None when the reference is not such a ratio. Why: read as
    an expression, ``a:b:c`` is ``(a/b)/c``, so ``1:3:2`` would equal ``1:2:3`` (both 1/6)
    and ``2:4:6`` would not. An answer of another shape (``1/6``) is not that ratio."""
    g = ratio_terms(gold)
    if g is None:
        return None
    p = ratio_terms(pred)
    if p is None or len(p) != len(g) or not any(g):
        return False
    k = next(i for i, x in enumerate(g) if x)
    if not p[k]:
        return False
    scale = p[k] / g[k]
    return all(abs(pi - gi * scale) <= 1e-9 * max(1.0, abs(pi), abs(gi * scale)) for gi, pi in zip(g, p))


# --- guard against expressions sympy cannot finish ------------------------------------------

#: exponents larger than this (in absolute value) are not evaluated
MAX_EXPONENT = 10_000
#: factorial arguments larger than this are not evaluated
MAX_FACTORIAL = 2_000
_POWER = re.compile(r"(?:\^|\*\*)\s*(\{|\(|-?\d+)")
_FACTORIAL = re.compile(r"(\d+|[})])\s*!")


def _group_end(s: str, start: int) -> int:
    """Index after the group opened at ``s[start]`` (``{``/``(``), or len(s)."""
    depth = 0
    for i in range(start, len(s)):
        depth += s[i] in "{("
        depth -= s[i] in "})"
        if depth == 0:
            return i + 1
    return len(s)


def too_complex(s: str) -> str | None:
    """Why sympy must not evaluate ``s`` (a power tower, an exponent or factorial too large
    to compute), or None. Linear in ``len(s)`` plus the exponent groups' lengths."""
    for m in _POWER.finditer(s):
        arg = m.group(1)
        if arg in "{(":
            inner = s[m.end() : _group_end(s, m.end() - 1) - 1]
            if "^" in inner or "**" in inner:
                return "power tower"
            digits = inner.strip().lstrip("-").strip()
            if digits.isdigit() and len(digits) > 6 or (digits.isdigit() and int(digits) > MAX_EXPONENT):
                return f"exponent {digits[:20]} too large"
        elif len(arg.lstrip("-")) > 6 or abs(int(arg)) > MAX_EXPONENT:
            return f"exponent {arg[:20]} too large"
    for m in _FACTORIAL.finditer(s):
        if not m.group(1).isdigit():
            return "factorial of an expression"
        if len(m.group(1)) > 6 or int(m.group(1)) > MAX_FACTORIAL:
            return f"factorial {m.group(1)[:20]}! too large"
    return None


def names_of(s: str) -> list[str]:
    """The left-hand names of the top-level ``name = value`` items of ``s`` (an item
    without one gives "")."""
    out = []
    for item in split_top(s):
        value = rhs(item)
        out.append(item[: item.rfind(value)].rstrip().rstrip("=").strip() if value != item else "")
    return out


_PROPER_NAME = re.compile(r"[A-Za-z\\]")


def clashing_names(gold: str, pred: str) -> bool:
    """``x = 3`` against ``y = 3``, ``f(x) = 2x`` against ``g(x) = 2x``: both sides name
    what they give, and the names differ. A name that was lost (``(x) = …``) or is
    missing on one side does not clash."""
    g, p = names_of(gold), names_of(pred)
    if len(g) != len(p):
        return False
    return any(
        a and b and _PROPER_NAME.match(a) and _PROPER_NAME.match(b) and re.sub(r"\s+", "", a) != re.sub(r"\s+", "", b)
        for a, b in zip(g, p)
    )


_MAGNITUDES = {
    "dozen": (12, 0), "hundred": (1, 2), "thousand": (1, 3), "million": (1, 6), "billion": (1, 9),
    "trillion": (1, 12), "tenth": (1, -1), "hundredth": (1, -2), "thousandth": (1, -3),
}  # fmt: skip
_MAGNITUDE = re.compile(
    r"^\s*(?P<num>-?\d+(?:\.\d+)?)\s*(?:\\[,;:! ]\s*)*(?:\\(?:text|mathrm|textbf)\s*\{\s*)?"
    r"(?P<word>dozen|hundred|thousand|million|billion|trillion|tenth|hundredth|thousandth)s?\b",
    re.IGNORECASE,
)


def magnitude_value(pred: str, problem: str | None) -> str | None:
    """``5 \\text{ million}`` -> ``5 \\times 10^{6}``, ``2 dozen`` -> ``2 \\times 12``: the
    number a magnitude word makes of the answer (math-verify drops the word as a unit, so
    ``5 million`` passed for 5). None when there is no such word, or when the problem
    counts in that word ("in millions", "how many dozen"): then the number alone is meant."""
    m = _MAGNITUDE.match(pred)
    if m is None:
        return None
    word = m.group("word").lower()
    if problem and re.search(rf"\b{word}s?\b", problem, re.IGNORECASE):
        return m.group("num")
    factor, exponent = _MAGNITUDES[word]
    scaled = m.group("num") + (f" \\times {factor}" if factor != 1 else "")
    return scaled + (f" \\times 10^{{{exponent}}}" if exponent else "")
