"""Keys that tell two near-duplicate texts apart: the reference answer and the tests.

Why: MinHash and embeddings see *texts*. Template siblings ("f(x+y)=f(x)f(y), find f(6)"
vs "f(x+y)=f(x)+f(y), find f(5)") share most of their words, but they have different
reference answers, and code problems sharing a prompt frame have different tests. When
both records carry an answer (or both carry tests) and these differ, they are different
problems, whatever the text similarity says.

The keys are 64-bit hashes (0 = the record has none), so the global index stays compact.
Normalisation is deliberately modest and one-way safe: it only maps spellings of *the
same* value together ("1/2", "\\frac{1}{2}", "\\dfrac12", "0.5", "$\\frac{1}{2}$"); two
answers it cannot prove equal count as different. A missed equivalence costs a merge
(recall), never a false merge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import xxhash

_WRAPPERS = re.compile(r"\\(?:boxed|fbox|mathrm|textbf|mathbf|text|operatorname)\s*\{")
_DROP = re.compile(
    r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |~|\$|\\displaystyle|\\limits|\^\s*\{?\\circ\}?|\\%|%|\s+"
)
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_FRAC_SHORT = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)")
_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3})((?:,\d{3})+)(?![\d])")
_ASSIGNED = re.compile(r"^\s*[A-Za-z]\s*=\s*(?=\S)(?!.*=)")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:/(?:\d+(?:\.\d*)?|\.\d+))?")


def _unwrap(text: str) -> str:
    """``\\boxed{x}`` / ``\\text{x}`` → ``x`` (brace-balanced, repeatedly)."""
    while True:
        m = _WRAPPERS.search(text)
        if not m:
            return text
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        text = text[: m.start()] + text[m.end() : i - 1] + text[i:]


def normalize_answer(answer: Any) -> str:
    """Canonical spelling of a reference answer (see the module docstring)."""
    if answer is None:
        return ""
    text = str(answer).strip()
    if text.isdigit() and text.isascii():  # the common case, without the regexes
        return f"{int(text)}/1"
    if text.startswith("[") and text.endswith("]") and "'" in text:  # "['2']" (OlympiadBench lists)
        text = text[1:-1].replace("'", "")
    text = _unwrap(text)
    text = _ASSIGNED.sub("", text)  # "b=4" -> "4": the asked variable named in the answer
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("−", "-")
    text = _DROP.sub("", text)
    text = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), text)
    for _ in range(3):
        text = _FRAC_SHORT.sub(r"\1/\2", _FRAC.sub(r"(\1)/(\2)", text))
    text = text.rstrip(".").lower()
    if _NUMBER.fullmatch(text.replace("(", "").replace(")", "")):
        try:
            value = Fraction(text.replace("(", "").replace(")", ""))
            return f"{value.numerator}/{value.denominator}"
        except (ValueError, ZeroDivisionError):
            pass
    return text


def answer_hash(answer: Any) -> int:
    """64-bit key of the normalized answer; 0 when there is none."""
    text = normalize_answer(answer)
    return xxhash.xxh3_64_intdigest(text.encode("utf-8")) | 1 if text else 0


def _test_items(tests: Iterable[Any]) -> set[str]:
    """Tests as a set of normalized strings: order, blank runs and duplicates do not count.

    Code tests (``assert`` / ``check`` kinds) are split into lines, so the same asserts in
    another order or with other indentation are the same tests."""
    items: set[str] = set()
    for t in tests:
        if isinstance(t, Mapping):
            kind = str(t.get("kind") or "")
            inp, out = str(t.get("input") or ""), str(t.get("output") or "")
            if kind in ("assert", "check"):
                items.update(f"{kind}:{' '.join(line.split())}" for line in inp.splitlines() if line.strip())
                if out.strip():
                    items.add(f"{kind}>{' '.join(out.split())}")
            else:
                items.add(f"{kind}:{' '.join(inp.split())}->{' '.join(out.split())}")
        elif t is not None:
            items.update(" ".join(line.split()) for line in str(t).splitlines() if line.strip())
    return items


def tests_hash(tests: Any) -> int:
    """64-bit key of the normalized test set; 0 when there are none."""
    if not tests:
        return 0
    items = _test_items(tests if isinstance(tests, (list, tuple)) else [tests])
    if not items:
        return 0
    return xxhash.xxh3_64_intdigest("\x1e".join(sorted(items)).encode("utf-8")) | 1


def record_keys(record: Mapping) -> tuple[int, int]:
    """(answer hash, tests hash) of a record; 0 where the record has none."""
    return answer_hash(record.get("reference_answer")), tests_hash(record.get("tests"))


def conflicts(answers: np.ndarray, tests: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mask of the pairs (a[i], b[i]) whose answers or tests both exist and differ."""
    ans_a, ans_b = answers[a], answers[b]
    tst_a, tst_b = tests[a], tests[b]
    return ((ans_a != 0) & (ans_b != 0) & (ans_a != ans_b)) | ((tst_a != 0) & (tst_b != 0) & (tst_a != tst_b))
