"""Find the final answer in a model response.

Why our own extractor next to math-verify's: we need to say *how* an answer was found (for
the ledger and for debugging bad verdicts), to know when there is no answer at all
(``no_answer_extracted`` is a different failure from a wrong answer), and to cover shapes
math-verify does not anchor on (GSM8K ``#### 42``, ``<answer>`` tags, "Final answer for
Subproblem 1:", a closing list of subproblem answers).

Order of preference: the ``<answer>`` part narrows the text first; then the last
``\\boxed{}``/``\\fbox{}``; then ``#### x``; then "final answer is …"; then
"the answer is …"/"Answer: …"; then a short whole answer; then the last plain number.

Every step is a linear scan (no regex that can backtrack over a long run of spaces, no
rescan per unclosed ``\\boxed{``): responses are untrusted and often megabytes long when
a model loops.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from reasonmill.verify.format import tail_loop

_BOX_RE = re.compile(r"\\(?:boxed|fbox)")
_SPACES = re.compile(r"\s*")
_BARE_BOX_ARG = re.compile(r"[^\s$]+")
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]+)")
_FINAL_RE = re.compile(
    r"final\s{1,20}answer(?:\s{1,20}(?:for|to|of)\s[^:\n*]{1,40})?"
    r"\s{0,20}(?:is\b|:)(?:\s{0,20}\*\*)?\s{0,20}:?\s{0,20}",
    re.IGNORECASE,
)
_ANSWER_IS_RE = re.compile(
    r"(?:the\s{1,20}answer\s{1,20}is|\banswer\s{0,20}:)\s{0,20}:?\s{0,20}", re.IGNORECASE
)
#: a number; ``4:30`` and ``3:2`` are one (a time, a ratio), never their last part ``30``
_NUMBER_RE = re.compile(
    r"(?<![\w.:])-?(?:\d+(?::\d+)+|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:/\d+)?|\.\d+)(?:[ \t]{0,3}%)?(?![\d])"
)
_SUBPROBLEM_RE = re.compile(r"subproblem\s{0,5}(\d+)", re.IGNORECASE)
#: Responses shorter than this are never considered truncated.
SHORT_RESPONSE_CHARS = 300
#: How far from the end the last-number fallback looks.
LAST_NUMBER_WINDOW = 600
#: Longest text accepted as "the whole answer is the answer" (e.g. an ``<answer>`` part).
SHORT_ANSWER_CHARS = 80
#: Text between two boxes longer than this never joins them into one answer.
_GLUE_MAX_CHARS = 200
#: Most boxes joined into one answer (a looping model may print thousands).
_GROUP_MAX = 50
#: How far from the end a closing list of subproblem answers is looked for.
_SUBPROBLEM_WINDOW = 2000


@dataclass(frozen=True)
class Extraction:
    """An answer string and how it was found.

    ``method`` is one of ``boxed``, ``gsm8k``, ``final_answer``, ``answer_is``, ``whole``,
    ``last_number``, ``subproblem``. ``all_boxed`` lists every boxed answer of the last
    group when a response boxes several answers (``\\boxed{1}, \\boxed{2}``).
    """

    text: str
    method: str
    all_boxed: tuple[str, ...] = ()
    scope: str = "answer"  # "full" when found outside the answer region


def _brace_pairs(text: str, start: int) -> dict[int, int]:
    """Index of every ``{`` at or after ``start`` that closes -> index of its ``}``.

    One pass over the braces (``\\{`` escapes skipped) with a stack: linear however many
    groups are left open, where scanning forward from each ``\\boxed{`` was quadratic."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_TOKEN.finditer(text, start):
        tok = m.group(0)
        if tok == "{":
            stack.append(m.start())
        elif tok == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


def find_boxed(text: str) -> list[tuple[str, int, int]]:
    """Every complete ``\\boxed{…}``/``\\fbox{…}`` (also ``\\boxed 5``): (content, start, end)."""
    out = []
    pairs: dict[int, int] | None = None
    for m in _BOX_RE.finditer(text):
        pos = _SPACES.match(text, m.end()).end()
        if pos < len(text) and text[pos] == "{":
            if pairs is None:
                pairs = _brace_pairs(text, m.start())
            close = pairs.get(pos)
            if close is None:  # never closes: a truncated response
                continue
            content, end = text[pos + 1 : close], close + 1
        elif pos > m.end():  # "\boxed 5": up to the next whitespace or $
            tail = _BARE_BOX_ARG.match(text, pos)
            if not tail:
                continue
            content, end = tail.group(0), tail.end()
        else:  # "\boxedx": another command
            continue
        out.append((content.strip(), m.start(), end))
    return out


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{}``, or None."""
    found = find_boxed(text)
    return found[-1][0] if found else None


_GLUE_WORDS = {"and", "or", "for", "part", "parts", "a", "b", "c", "d", "respectively", "the", "answers", "are"}


def _is_glue(text: str) -> bool:
    """True when the text between two boxes only separates them (``, ``, ``\\quad and``)."""
    if len(text) > _GLUE_MAX_CHARS:
        return False
    t = re.sub(r"[a-zA-Z]\w*(?:_\{?\w+\}?)?\s*=", " ", text)  # "y_2 = " before the next box
    t = re.sub(r"\\(?:text|mathrm|textbf)\s*\{([^{}]*)\}", r" \1 ", t)
    t = re.sub(r"\\[a-zA-Z]+|\\.|[{}$,;.:()\[\]\s]", " ", t)
    words = t.lower().split()
    return len(words) <= 6 and all(w in _GLUE_WORDS for w in words)


def _boxed_group(text: str, boxes: list[tuple[str, int, int]]) -> list[str]:
    """The last run of boxed answers joined only by glue: ``\\boxed{1} and \\boxed{2}``."""
    group = [boxes[-1]]
    for prev in reversed(boxes[-_GROUP_MAX:-1]):
        if not _is_glue(text[prev[2] : group[0][1]]):
            break
        group.insert(0, prev)
    return [b[0] for b in group]


def _tag_part(text: str, folded: str, open_tag: str, close_tag: str) -> str | None:
    """The content of the last ``open_tag`` (to its close tag, or to the end)."""
    start = folded.rfind(open_tag)
    if start == -1:
        return None
    start += len(open_tag)
    end = folded.find(close_tag, start)
    return text[start : end if end != -1 else len(text)]


def answer_region(text: str) -> str:
    """The part of a response that holds the final answer: the ``<answer>`` or
    ``<|begin_of_solution|>`` part when present, else everything."""
    folded = text.lower() if "<answer>" in text.lower() else text
    for open_tag, close_tag in (("<answer>", "</answer>"), ("<|begin_of_solution|>", "<|end_of_solution|>")):
        part = _tag_part(text, folded, open_tag, close_tag)
        if part is not None and part.strip():
            return part.strip()
    return text


def _clean_sentence(s: str) -> str:
    """Cut an anchored answer at the end of its sentence and drop ``$`` and trailing dots."""
    s = s.strip()
    for a, b in (("\\[", "\\]"), ("$$", "$$"), ("\\(", "\\)")):
        if s.startswith(a):  # a display block may span lines
            j = s.find(b, len(a))
            if j != -1:
                return s[len(a) : j].strip().rstrip(".").strip()
    s = s.split("\n", 1)[0]
    # stop at "I hope it is correct." style trailers
    s = re.split(r"(?<=[^\d\\])\.[ \t]+(?=[A-Z])", s)[0]
    s = s.strip().strip("*").strip().rstrip(".").strip()
    if s.count("$") == 2 and s.startswith("$") and s.endswith("$"):
        s = s[1:-1]
    if s.startswith("\\("):
        s = s[2:]
    if s.endswith("\\)"):
        s = s[:-2]
    return s.strip().rstrip(".").strip()


def _last_match(rx: re.Pattern, text: str) -> re.Match | None:
    last = None
    for m in rx.finditer(text):
        last = m
    return last


_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
_LATEX_TEXT = re.compile(
    r"\\(?:text|mathrm|textbf|mbox|operatorname|begin|end)\s*\{[^{}]*\}|\\[a-zA-Z]+|_\{[^{}]*\}"
)


def is_prose(s: str) -> bool:
    """Words outside LaTeX commands and subscripts ("Jane started 3 hours ago"): wrapping such text in
    ``\\boxed{}`` would turn it into a product of symbols, so math-verify extracts instead."""
    return len(_PROSE_WORD.findall(_LATEX_TEXT.sub(" ", s))) >= 2


def _balanced(s: str) -> bool:
    """Delimiters all closed: a short text cut off mid-formula is not an answer."""
    depth = 0
    for m in _BRACE_TOKEN.finditer(s):
        tok = m.group(0)
        depth += tok == "{"
        depth -= tok == "}"
        if depth < 0:
            return False
    return depth == 0 and s.count("\\(") == s.count("\\)") and s.count("\\[") == s.count("\\]")


_ROLE_WORDS = ("user", "assistant", "system")
_VALUE_WITH_UNIT = re.compile(r"=[ \t]*-?\d[\d.,]*[ \t]*(?:\\(?:text|mathrm)\{[ ~]*)?[a-zA-Z]{1,6}\}?$")
_UNIT_LINE_CHARS = 60


def _rstrip_at(text: str, end: int) -> int:
    while end > 0 and text[end - 1].isspace():
        end -= 1
    return end


def strip_special_tail(text: str) -> str:
    """Drop chat-template tokens at the end (``<|im_end|>``, ``<|im_start|>user``) and
    trailing whitespace, scanning back from the end with an index (a ``$``-anchored regex,
    or re-slicing per token, is quadratic on long runs of spaces or tokens)."""
    end = _rstrip_at(text, len(text))
    while True:
        stop = end
        for word in _ROLE_WORDS:
            if text.endswith(word, 0, stop) and text.endswith("|>", 0, _rstrip_at(text, stop - len(word))):
                stop = _rstrip_at(text, stop - len(word))
                break
        if not text.endswith("|>", 0, stop):
            return text[:end]
        start = text.rfind("<|", max(0, stop - 40), stop)
        name = text[start + 2 : stop - 2] if start != -1 else ""
        if not name or not all(c.islower() or c == "_" for c in name):
            return text[:end]
        end = _rstrip_at(text, start)


def looks_truncated(text: str) -> bool:
    """True when the text stops mid-sentence (no final punctuation or closing delimiter),
    or announces an answer that never comes ("… the value is:"), as a response cut off by
    the token limit does."""
    t = strip_special_tail(text).rstrip()
    if len(t) < SHORT_RESPONSE_CHARS:  # a short reply ("it is 1,000.99€") is not cut off
        return not t
    if t.rstrip("*").rstrip().endswith(":"):
        return True
    if _VALUE_WITH_UNIT.search(t[-_UNIT_LINE_CHARS:]):  # "V = 0.036 L = 36 mL": a finished result
        return False
    return not (t[-1] in ".!?)]}$*" or t[-1].isdigit()) or not _balanced(t.rsplit("\n\n", 1)[-1])


def asked_subproblem(problem: str | None) -> str | None:
    """The number of the subproblem a multi-part problem asks now: Minerva-style prompts
    list the solved subproblems first and end with the one to answer."""
    if not problem:
        return None
    last = _last_match(_SUBPROBLEM_RE, problem)
    return last.group(1) if last else None


def _subproblem_part(text: str, asked: str) -> str | None:
    """The answer given for subproblem ``asked`` in a closing list that answers several
    ("- Subproblem 0: … - Subproblem 2: 671.02 nm"); None when there is no such list."""
    base = max(0, len(text) - _SUBPROBLEM_WINDOW)
    marks = list(_SUBPROBLEM_RE.finditer(text, base))
    if len({m.group(1) for m in marks}) < 2:
        return None
    part = None
    for i, m in enumerate(marks):
        if m.group(1) == asked:
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            part = text[m.end() : end]
    if part is None:
        return None
    part = part.lstrip(" \t*:)").strip()
    return part or None


def _extract_from(text: str) -> Extraction | None:
    text = strip_special_tail(text)
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


def _from_subproblem(region: str, asked: str | None) -> Extraction | None:
    """The answer to the asked subproblem when the response ends with a list of several."""
    if asked is None:
        return None
    part = _subproblem_part(region, asked)
    if part is None:
        return None
    found = _extract_from(part)
    if found is not None and found.method != "last_number":
        return Extraction(found.text, "subproblem", found.all_boxed)
    line = _clean_sentence(part)
    if not line or not _balanced(line) or is_prose(line) or not any(c.isdigit() for c in line):
        return None  # "Subproblem 2: Using the result of Subproblem 1, …": no listed answer here
    return Extraction(line, "subproblem")


_FINAL_HEADING = re.compile(r"final\s{1,5}answers?\s{0,5}(?:\*\*|#+|:)?[ \t]*\n", re.IGNORECASE)
_CLAUSE_SPLIT = re.compile(r";|\n|,?\s+and\s+(?=the\b)|\.\s+", re.IGNORECASE)
_VALUE_AT = re.compile(r"(?:\bis\b|\bare\b|=|:)\s*", re.IGNORECASE)
_WORD = re.compile(r"[a-zA-Z]{3,}")
_STOP = {"the", "and", "are", "for", "that", "this", "with", "what", "find", "compute", "determine", "value",
         "final", "answer", "calculate", "given", "its", "from", "into", "then", "which", "your"}  # fmt: skip
_PARAGRAPH_CHARS = 600


def _words(s: str) -> set[str]:
    return {w.lower().rstrip("s") for w in _WORD.findall(s)} - _STOP


def _from_final_paragraph(region: str, problem: str | None) -> Extraction | None:
    """A "**Final Answer**" heading followed by a paragraph that names several quantities
    ("The speed is 5 m/s and the time is 3 s"): the one whose name shares most words with
    the problem's last sentence (the question asked)."""
    m = _last_match(_FINAL_HEADING, region[-(_PARAGRAPH_CHARS * 2) :])
    if m is None:
        return None
    para = region[-(_PARAGRAPH_CHARS * 2) :][m.end() :][:_PARAGRAPH_CHARS]
    named: list[tuple[str, str]] = []  # (name part, value)
    for clause in _CLAUSE_SPLIT.split(para):
        at = _last_match(_VALUE_AT, clause)
        if at is None:
            continue
        value = _clean_sentence(clause[at.end() :])
        if value and any(c.isdigit() for c in value) and _balanced(value):
            named.append((clause[: at.start()], value))
    if not named:
        return None
    if len(named) == 1:
        return Extraction(named[0][1], "final_paragraph")
    question = (problem or "")[-_PARAGRAPH_CHARS:].strip() + " "
    sentences = [x for x in re.split(r"[.?!]\s", question) if x.strip()]
    asked = _words(sentences[-1]) if sentences else set()
    scores = [len(_words(name) & asked) for name, _ in named]
    best = max(scores)
    if best == 0 or scores.count(best) > 1:
        return None
    return Extraction(named[scores.index(best)][1], "final_paragraph")


def extract_answer(response: str | None, problem: str | None = None) -> Extraction | None:
    """The final answer of a response, or None when it has none we can find.

    The answer region (``<answer>``/solution part) is searched first; when it has no
    answer (e.g. a solution part cut off by the token limit) the whole response is, and
    the extraction is marked ``scope="full"``. With the ``problem``, a closing list of
    subproblem answers yields the one the problem asks.
    """
    if not response or not response.strip():
        return None
    region = answer_region(response)
    found = _from_subproblem(region, asked_subproblem(problem)) or _extract_from(region)
    if found is None or found.method == "last_number":
        found = _from_final_paragraph(region, problem) or found
    if found is None and region != response:
        # e.g. the solution part was cut off: use what the thinking concluded
        idx = response.rfind(region)
        before = response[:idx] if idx > 0 else response
        found = _extract_from(before)
        if found is not None:
            found = Extraction(found.text, found.method, found.all_boxed, "full")
    return found


#: a loop at the end of a response: this many repeats covering at least this many chars
LOOP_MIN_REPEATS = 8
LOOP_MIN_SPAN = 400
#: the same boxed answer this many times is a model stuck in a loop, not an answer
MAX_SAME_BOXED = 30


def degenerate(text: str) -> dict | None:
    """Why a response is degenerate (never correct, whatever it boxes), or None:
    its end loops (one unit repeated back to back), or it boxes the same answer dozens of
    times. Returns details for the verdict."""
    text = strip_special_tail(text)  # padding tokens repeated at the end are not a loop
    loop = tail_loop(text, min_repeats=LOOP_MIN_REPEATS, min_span=LOOP_MIN_SPAN)
    if loop is not None:
        return {"kind": "tail_loop", "period": loop["period"], "repeats": loop["repeats"]}
    if text.count("\\boxed") >= MAX_SAME_BOXED or text.count("\\fbox") >= MAX_SAME_BOXED:
        contents = [b[0] for b in find_boxed(text)]
        if contents:
            top, n = Counter(contents).most_common(1)[0]
            if n >= MAX_SAME_BOXED:
                return {"kind": "repeated_boxed", "boxed": top[:100], "repeats": n}
    return None
