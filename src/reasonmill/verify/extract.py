"""Find the final answer in a model response.

Why our own extractor next to math-verify's: we need to say *how* an answer was found (for
the ledger and for debugging bad verdicts), to know when there is no answer at all
(``no_answer_extracted`` is a different failure from a wrong answer), and to cover shapes
math-verify does not anchor on (GSM8K ``#### 42``, ``<answer>`` tags).

Order of preference: the ``<answer>`` part narrows the text first; then the last
``\\boxed{}``/``\\fbox{}``; then ``#### x``; then "final answer is …"; then
"the answer is …"/"Answer: …"; then a short whole answer; then the last plain number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*(\{|\s+(?=\S))")
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_SOLUTION_TAG_RE = re.compile(r"<\|begin_of_solution\|>(.*?)(?:<\|end_of_solution\|>|$)", re.DOTALL)
_GSM8K_RE = re.compile(r"####\s*([^\n]+)")
_FINAL_RE = re.compile(r"final\s+answer\s*(?:is|:)\s*:?\s*", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"(?:the\s+answer\s+is|\banswer\s*:)\s*:?\s*", re.IGNORECASE)
_NUMBER_RE = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:/\d+)?|\.\d+)(?:\s*%)?(?![\d])"
)
#: Responses shorter than this are never considered truncated.
SHORT_RESPONSE_CHARS = 300
#: How far from the end the last-number fallback looks.
LAST_NUMBER_WINDOW = 600
#: Longest text accepted as "the whole answer is the answer" (e.g. an ``<answer>`` part).
SHORT_ANSWER_CHARS = 80


@dataclass(frozen=True)
class Extraction:
    """An answer string and how it was found.

    ``method`` is one of ``boxed``, ``gsm8k``, ``final_answer``, ``answer_is``, ``whole``,
    ``last_number``. ``all_boxed`` lists every boxed answer of the last group when a
    response boxes several answers (``\\boxed{1}, \\boxed{2}``).
    """

    text: str
    method: str
    all_boxed: tuple[str, ...] = ()
    scope: str = "answer"  # "full" when found outside the answer region


def _brace_content(text: str, start: int) -> tuple[str, int] | None:
    """Content of the ``{...}`` group opening at ``text[start]`` (nested braces, ``\\{``
    escapes kept); None when it never closes (a truncated response)."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return None


def find_boxed(text: str) -> list[tuple[str, int, int]]:
    """Every complete ``\\boxed{…}``/``\\fbox{…}`` (also ``\\boxed 5``): (content, start, end)."""
    out = []
    for m in _BOX_RE.finditer(text):
        if m.group(1) == "{":
            got = _brace_content(text, m.end() - 1)
            if got is None:
                continue
            content, end = got
        else:  # "\boxed 5": up to the next whitespace or $
            tail = re.match(r"[^\s$]+", text[m.end() :])
            if not tail:
                continue
            content, end = tail.group(0), m.end() + tail.end()
        out.append((content.strip(), m.start(), end))
    return out


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{}``, or None."""
    found = find_boxed(text)
    return found[-1][0] if found else None


_GLUE_WORDS = {"and", "or", "for", "part", "parts", "a", "b", "c", "d", "respectively", "the", "answers", "are"}


def _is_glue(text: str) -> bool:
    """True when the text between two boxes only separates them (``, ``, ``\\quad and``)."""
    t = re.sub(r"[a-zA-Z]\w*(?:_\{?\w+\}?)?\s*=", " ", text)  # "y_2 = " before the next box
    t = re.sub(r"\\(?:text|mathrm|textbf)\s*\{([^{}]*)\}", r" \1 ", t)
    t = re.sub(r"\\[a-zA-Z]+|\\.|[{}$,;.:()\[\]\s]", " ", t)
    words = t.lower().split()
    return len(words) <= 6 and all(w in _GLUE_WORDS for w in words)


def _boxed_group(text: str, boxes: list[tuple[str, int, int]]) -> list[str]:
    """The last run of boxed answers joined only by glue: ``\\boxed{1} and \\boxed{2}``."""
    group = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        if not _is_glue(text[prev[2] : group[0][1]]):
            break
        group.insert(0, prev)
    return [b[0] for b in group]


def answer_region(text: str) -> str:
    """The part of a response that holds the final answer: the ``<answer>`` or
    ``<|begin_of_solution|>`` part when present, else everything."""
    for rx in (_ANSWER_TAG_RE, _SOLUTION_TAG_RE):
        found = rx.findall(text)
        if found and found[-1].strip():
            return found[-1].strip()
    return text


def _clean_sentence(s: str) -> str:
    """Cut an anchored answer at the end of its sentence and drop ``$`` and trailing dots."""
    s = s.strip()
    for a, b in (("\\[", "\\]"), ("$$", "$$"), ("\\(", "\\)")):
        if s.startswith(a):  # a display block may span lines
            j = s.find(b, len(a))
            if j != -1:
                return s[len(a) : j].strip().rstrip(".").strip()
    s = s.split("\n")[0]
    # stop at "I hope it is correct." style trailers
    s = re.split(r"(?<=[^\d\\])\.\s+(?=[A-Z])|\.\s*$", s)[0]
    s = s.strip().rstrip(".").strip()
    if s.count("$") == 2 and s.startswith("$") and s.endswith("$"):
        s = s[1:-1]
    s = re.sub(r"^\\\(|\\\)$", "", s).strip()
    return s.rstrip(".").strip()


def _last_match(rx: re.Pattern, text: str) -> re.Match | None:
    last = None
    for m in rx.finditer(text):
        last = m
    return last


_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
_LATEX_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname|begin|end)\s*\{[^{}]*\}|\\[a-zA-Z]+")


def is_prose(s: str) -> bool:
    """Words outside LaTeX commands ("Jane started 3 hours ago"): wrapping such text in
    ``\\boxed{}`` would turn it into a product of symbols, so math-verify extracts instead."""
    return len(_PROSE_WORD.findall(_LATEX_TEXT.sub(" ", s))) >= 2


def _balanced(s: str) -> bool:
    """Delimiters all closed: a short text cut off mid-formula is not an answer."""
    depth = 0
    for c in re.sub(r"\\[{}]", "", s):
        depth += c == "{"
        depth -= c == "}"
        if depth < 0:
            return False
    return (
        depth == 0
        and s.count("\\(") == s.count("\\)")
        and s.count("\\[") == s.count("\\]")
    )


def looks_truncated(text: str) -> bool:
    """True when the text stops mid-sentence (no final punctuation or closing delimiter),
    as a response cut off by the token limit does."""
    t = _SPECIAL_TAIL.sub("", text).rstrip()
    if len(t) < SHORT_RESPONSE_CHARS:  # a short reply ("it is 1,000.99€") is not cut off
        return not t
    return not (re.search(r"[.!?)\]}$*]$", t) or re.search(r"\d$", t)) or not _balanced(t.rsplit("\n\n", 1)[-1])


_SPECIAL_TAIL = re.compile(r"(?:\s*<\|[a-z_]+\|>\s*(?:user|assistant|system)?)+\s*$")


def _extract_from(text: str) -> Extraction | None:
    text = _SPECIAL_TAIL.sub("", text)
    boxed = find_boxed(text)
    # Candidates as (position, priority, Extraction); the one stated last wins, because a
    # response that boxes an intermediate result and then says "The final answer is 12"
    # means 12. Ties go to the lower priority number.
    cands: list[tuple[int, int, Extraction]] = []
    if boxed:
        cands.append((boxed[-1][1], 0, Extraction(boxed[-1][0], "boxed", tuple(_boxed_group(text, boxed)))))
    m = _last_match(_GSM8K_RE, text)
    if m and m.group(1).strip():
        cands.append((m.start(), 1, Extraction(m.group(1).strip().rstrip(".").replace(",", "").strip(), "gsm8k")))
    for prio, (rx, method) in enumerate(((_FINAL_RE, "final_answer"), (_ANSWER_IS_RE, "answer_is")), start=2):
        m = _last_match(rx, text)
        if m:
            ans = _clean_sentence(text[m.end() :])
            if ans and _balanced(ans):
                cands.append((m.start(), prio, Extraction(ans, method)))
    if cands:
        cands.sort(key=lambda c: (-c[0], c[1]))
        return cands[0][2]
    stripped = text.strip()
    if len(stripped) <= SHORT_ANSWER_CHARS and "\n" not in stripped and _balanced(stripped) and not is_prose(stripped):
        whole = stripped.rstrip(".").strip()
        if whole.count("$") == 2 and whole.startswith("$") and whole.endswith("$"):
            whole = whole[1:-1].strip()
        return Extraction(whole, "whole")
    if looks_truncated(text):
        return None
    # Unanchored but complete ("... so there are 12 of them. I think that's right."):
    # the last number near the end, as the Qwen2.5-Math grader does.
    tail = text[-LAST_NUMBER_WINDOW:]
    last = _last_match(_NUMBER_RE, tail)
    if last is not None:
        return Extraction(last.group(0).strip(), "last_number")
    return None


def extract_answer(response: str | None) -> Extraction | None:
    """The final answer of a response, or None when it has none we can find.

    The answer region (``<answer>``/solution part) is searched first; when it has no
    answer (e.g. a solution part cut off by the token limit) the whole response is, and
    the extraction is marked ``scope="full"``.
    """
    if not response or not response.strip():
        return None
    region = answer_region(response)
    found = _extract_from(region)
    if found is None and region != response:
        # e.g. the solution part was cut off: use what the thinking concluded
        idx = response.rfind(region)
        before = response[:idx] if idx > 0 else response
        found = _extract_from(before)
        if found is not None:
            found = Extraction(found.text, found.method, found.all_boxed, "full")
    return found
