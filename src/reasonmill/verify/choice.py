"""Multiple-choice verification: find the chosen letter (A–J) and compare it to the key.

Why a dedicated extractor: reasoning models state their choice in many shapes
("Answer: (C)", "**C**", "\\boxed{C}", "the answer is C", a last line "(C) 42"), and
prose is full of the word "A" ("A careful analysis shows…"). A naive "last capital
letter" rule therefore both misses and invents answers. Here the patterns go from the
most explicit to the least, each anchored so that a bare letter only counts when nothing
but punctuation follows it, and letters outside the item's option range are ignored.

``mc_to_fill_in`` rewrites an item to fill-in-the-blank form (SPEC §1 item 2), so the
same problem can be verified by exact answer instead of by letter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from reasonmill.verify.base import Verdict
from reasonmill.verify.keys import verdict_key

LETTERS = "ABCDEFGHIJ"

# --- option parsing ------------------------------------------------------------------

# An option marker at the start of a line: "(A) ...", "A. ...", "A) ...", "A: ...", "**A.** ...".
_LINE_OPTION = re.compile(r"^[ \t]*(?:\*\*)?[(\[]?([A-J])(?:[)\].:]|\s*\))(?:\*\*)?[ \t]+(\S.*)$", re.M)
# Inline options on one line: "(A) 1 (B) 2 (C) 3 (D) 4".
_INLINE_OPTION = re.compile(r"\(([A-J])\)\s*")


@dataclass(frozen=True)
class ParsedChoices:
    """A multiple-choice problem split into its stem and its options (letter → text)."""

    stem: str
    options: dict[str, str]


def _consecutive_from_a(letters: Sequence[str]) -> bool:
    return len(letters) >= 2 and list(letters) == list(LETTERS[: len(letters)])


def parse_choices(problem: str) -> ParsedChoices | None:
    """Split ``problem`` into stem and options, or None when it has no A, B, … option list.

    Options must run A, B, C… without gaps; the last such run in the text wins, so a stem
    that mentions "(A)" in passing does not confuse it. Multi-line option texts keep only
    their first line (options in benchmarks are one line).
    """
    matches = list(_LINE_OPTION.finditer(problem))
    # find the last run A, B, C, ... of line options
    best: list[re.Match] = []
    run: list[re.Match] = []
    for m in matches:
        letter = m.group(1)
        if letter == "A":
            run = [m]
        elif run and ord(letter) == ord(run[-1].group(1)) + 1:
            run.append(m)
        else:
            continue
        if len(run) >= 2:
            best = list(run)
    if best:
        stem = problem[: best[0].start()].rstrip()
        return ParsedChoices(stem, {m.group(1): m.group(2).strip() for m in best})
    # inline "(A) x (B) y" on a single line
    for line in reversed(problem.splitlines()):
        parts = _INLINE_OPTION.split(line)
        if len(parts) < 5:
            continue
        letters = parts[1::2]
        if _consecutive_from_a(letters):
            texts = [t.strip().rstrip(",;") for t in parts[2::2]]
            head = parts[0]
            idx = problem.rfind(line)
            stem = (problem[:idx] + head).rstrip()
            return ParsedChoices(stem, dict(zip(letters, texts)))
    return None


def choices_from_meta(choices: Any) -> dict[str, str] | None:
    """``meta.choices`` as letter → text: accepts a list (A, B, … order) or a dict."""
    if not choices:
        return None
    if isinstance(choices, Mapping):
        out = {}
        for k, v in choices.items():
            key = str(k).strip().strip("()").upper()
            if len(key) == 1 and key in LETTERS:
                out[key] = str(v)
        return out or None
    if isinstance(choices, (list, tuple)):
        return {LETTERS[i]: str(v) for i, v in enumerate(choices[: len(LETTERS)])}
    return None


# --- normalization of option texts ---------------------------------------------------

_LATEX_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|operatorname)\{([^{}]*)\}")


@lru_cache(maxsize=8192)
def _norm_text(s: str) -> str:
    s = _LATEX_WRAP.sub(r"\1", s)
    s = s.replace("$", "").replace("\\,", "").replace("\\ ", " ")
    s = re.sub(r"\s+", " ", s).strip().strip(".").strip()
    return s.lower()


def _letter_for_text(text: str, options: Mapping[str, str]) -> str | None:
    """The unique option whose normalized text equals ``text``."""
    t = _norm_text(text)
    if not t:
        return None
    hits = [k for k, v in options.items() if _norm_text(v) == t]
    if len(hits) > 1:  # options that differ only in markup: fall back to the exact text
        hits = [k for k in hits if options[k].strip() == text.strip()]
    return hits[0] if len(hits) == 1 else None


# --- letter extraction ---------------------------------------------------------------

# What may follow a bare letter for it to count as an answer: end, punctuation, a newline,
# a closing markup, or a dash/colon introducing the option text.
_BARE_END = r"(?=\s*$|\s*[.,;:!?)\]}*$]|\s*\n|\s+[-–—:=(])"


def _letter_token(letters: str) -> str:
    """A regex matching one answer token over ``letters``, capturing the letter in one group."""
    L = f"[{letters}]"
    return (
        r"(?:"
        rf"\*\*\s*\(?({L})\)?[.:]?\s*\*\*"  # **C**, **(C)**, **C.**
        rf"|\(({L})\)"  # (C)
        rf"|\[({L})\]"  # [C]
        rf"|\\text(?:bf)?\{{\s*\(?({L})\)?\s*\}}"  # \text{C}
        rf"|({L}){_BARE_END}"  # C followed by nothing but punctuation
        r")"
    )


def _first_group(m: re.Match) -> str:
    return next(g for g in m.groups() if g)


_BOXED = re.compile(r"\\boxed\s*\{")


def _boxed_contents(text: str) -> list[str]:
    out = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


_KEYWORD = (
    r"(?:final\s+answer|correct\s+answer|the\s+answer|answer|correct\s+(?:option|choice)"
    r"|best\s+(?:option|choice|answer)|my\s+(?:choice|pick)|(?:i\s+(?:would|will|'d|'ll)\s+)?(?:choose|pick|select|go\s+with|opt\s+for)"
    r"|答案|选)"
)
_LINK = (
    r"(?:\s*\*\*)?\s*(?:is|would\s+be|should\s+be|must\s+be|will\s+be|=|:|：|为|是)?\s*"
    r"(?:\*\*\s*)?(?:[:：]\s*)?(?:option\s+|choice\s+)?(?:\*\*\s*)?"
)


_LETTER_ONLY = re.compile(r"\(?[A-J]\)?[.:]?")
_ANSWER_PREFIX = re.compile(
    r"^(?:(?:so|thus|therefore|hence),?\s+)?(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:\*\*)?\s*(?:is|:|：)\s*", re.I
)


@dataclass(frozen=True)
class Extraction:
    letter: str | None
    method: str


class ChoiceExtractor:
    """Finds the chosen letter in a response; ``letters`` limits the valid option letters."""

    def __init__(self, letters: str = LETTERS):
        self.letters = letters
        tok = _letter_token(letters)
        self._keyword = re.compile("(?i:" + _KEYWORD + _LINK + ")" + tok)
        self._is_correct = re.compile(
            rf"(?:(?i:option|choice)\s*)?\(?\b([{letters}])\)?\s+(?i:is\s+(?:the\s+)?(?:correct|right|best))\b"
        )
        self._boxed_inner = re.compile(rf"^\s*(?:\\text(?:bf)?\{{)?\s*\(?([{letters}])\)?[.:]?\s*\}}?(?:\s.*)?$", re.S)
        # a last line that is only a choice: "C", "C.", "**C**", "(C) 42", "C) 42", "C. 42"
        self._line = re.compile(
            rf"^\s*(?:\*\*)?\s*(?:\(([{letters}])\)|([{letters}])\)|([{letters}])[.:]?(?=\s*(?:\*\*)?\s*$)"
            rf"|([{letters}])[.:]\s+\S)",
        )
        self._choice_word_line = re.compile(r"^\s*(?:\*\*)?\s*(?:answer|final answer)\s*[:：]?\s*(?:\*\*)?\s*$", re.I)

    @staticmethod
    def _option_text_line(text: str, options: Mapping[str, str]) -> str | None:
        lines = [ln for ln in text.strip().split("\n") if ln.strip()]
        if not lines:
            return None
        last = lines[-1].strip("* ")
        for cand in (last, _ANSWER_PREFIX.sub("", last).strip("* ")):
            if _LETTER_ONLY.fullmatch(cand):
                continue  # "D" is the letter D even if some option's text is "D"
            letter = _letter_for_text(cand, options)
            if letter:
                return letter
        return None

    def extract(self, text: str, options: Mapping[str, str] | None = None) -> Extraction:
        if not text or not text.strip():
            return Extraction(None, "empty")
        # 0. the last line states one option's exact text ("Answer: A = 2, B = 3" is an
        #    option text here, not the letter A)
        if options:
            letter = self._option_text_line(text, options)
            if letter:
                return Extraction(letter, "option_text")
        # 1. \boxed{C} (last box wins)
        for content in reversed(_boxed_contents(text)):
            m = self._boxed_inner.match(content)
            if m:
                return Extraction(m.group(1), "boxed")
            if options:
                letter = _letter_for_text(content, options)
                if letter:
                    return Extraction(letter, "boxed_text")
        # 2. "answer is C", "Answer: (C)", "Final answer: **C**" (last mention wins)
        hits = list(self._keyword.finditer(text))
        if hits:
            return Extraction(_first_group(hits[-1]), "keyword")
        # 3. "(C) is correct" / "C is the correct answer"
        hits = list(self._is_correct.finditer(text))
        if hits:
            return Extraction(hits[-1].group(1), "is_correct")
        # 4. the last non-empty line alone names a choice
        lines = [ln for ln in text.strip().split("\n") if ln.strip()]
        for ln in reversed(lines[-2:]):
            m = self._line.match(ln)
            if m:
                return Extraction(_first_group(m), "last_line")
            if self._choice_word_line.match(ln):
                continue
            break
        return Extraction(None, "not_found")


@lru_cache(maxsize=64)
def extractor(letters: str = LETTERS) -> ChoiceExtractor:
    """A shared extractor per letter range (compiling the patterns costs more than using them)."""
    return ChoiceExtractor(letters)


def extract_choice(text: str, options: Mapping[str, str] | None = None, letters: str | None = None) -> str | None:
    """The chosen letter in ``text`` or None. ``letters`` defaults to the option letters."""
    if letters is None:
        letters = "".join(sorted(options)) if options else LETTERS
    return extractor(letters).extract(text, options).letter


def reference_letter(reference: Any, options: Mapping[str, str] | None) -> str | None:
    """The key as a letter: "C", "(C)", "C." or, with options, the text of the right option."""
    if reference is None:
        return None
    ref = str(reference).strip()
    m = re.fullmatch(r"\(?\s*([A-Ja-j])\s*\)?\.?", ref)
    if m:
        return m.group(1).upper()
    if options:
        return _letter_for_text(ref, options)
    return None


class ChoiceSettings(BaseModel):
    """``verify.choice`` in the pipeline YAML. The verifier has no options yet; the model
    exists so that a misspelt key is an error rather than ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ChoiceVerifier:
    """Verifier for multiple-choice items (category ``science`` with options).

    The options come from ``record["meta"]["choices"]`` (list or dict) or are parsed from
    the problem text; they bound the valid letters and let a reference given as text be
    matched. Only the answer part is read: the think part discusses every option.
    """

    name: ClassVar[str] = "choice"
    #: bump when a verdict can change for the same inputs (see reasonmill.verify.keys)
    version: ClassVar[str] = "1"

    def __init__(self, settings: ChoiceSettings | None = None, **options: Any) -> None:
        self.settings = settings if settings is not None else ChoiceSettings(**options)

    def cache_key(self, record: dict, response: dict) -> str:
        """The problem (options are parsed from it), ``meta.choices``, the reference, the
        answer part, and ``raw`` when there is no think part (the answer's fallback)."""
        meta = record.get("meta") or {}
        fields = [record.get("problem"), meta.get("choices") if isinstance(meta, dict) else None,
                  record.get("reference_answer"), response.get("answer"),
                  response.get("think") is None and response.get("raw")]  # fmt: skip
        return verdict_key(self.name, self.version, self.settings.model_dump(), {}, fields)

    def verify(self, record: dict, response: dict) -> Verdict:
        meta = record.get("meta") or {}
        options = choices_from_meta(meta.get("choices"))
        if options is None:
            parsed = parse_choices(record.get("problem") or "")
            options = parsed.options if parsed else None
        ref = reference_letter(record.get("reference_answer"), options)
        if ref is None:
            return Verdict(
                0.0,
                False,
                "no_reference",
                {"reference_answer": record.get("reference_answer"), "hint": "set reference_answer to a letter A-J"},
                self.name,
            )
        letters = "".join(sorted(options)) if options else LETTERS
        if ref not in letters:
            letters = LETTERS
        text = response.get("answer")
        if not (text or "").strip() and response.get("think") is None:
            text = response.get("raw") or ""
        ex = extractor(letters).extract(text or "", options)
        details = {"extracted": ex.letter, "method": ex.method, "reference": ref}
        if ex.letter is None:
            return Verdict(0.0, False, "no_choice_found", details, self.name)
        ok = ex.letter == ref
        return Verdict(1.0 if ok else 0.0, ok, "choice_correct" if ok else "wrong_choice", details, self.name)


# --- rewriting to fill-in-the-blank --------------------------------------------------

_REFERS_TO_OTHERS = re.compile(
    r"\b(?:all|none|both|neither)\s+of\s+(?:the\s+)?(?:above|these|them)\b|\babove\b"
    r"|\b(?:options?|choices?)\s+\(?[A-J]\)?|\(?\b[A-J]\)?\s+(?:and|or)\s+\(?[A-J]\b\)?",
    re.I,
)


def mc_to_fill_in(
    problem: str, choices: Sequence[str] | Mapping[str, str] | None, answer: str
) -> tuple[str, str] | None:
    """Rewrite a multiple-choice item as an open question: ``(problem, answer_text)``.

    ``choices`` may be None, in which case the options are parsed from ``problem``;
    ``answer`` is a letter or the right option's text. Returns None when the item cannot
    stand without its options: no option list found, an unknown answer, or a right option
    that refers to the others ("All of the above", "Both A and B").
    """
    options = choices_from_meta(choices) if choices else None
    parsed = parse_choices(problem)
    stem = parsed.stem if parsed else problem.rstrip()
    if options is None:
        if parsed is None:
            return None
        options = parsed.options
    letter = reference_letter(answer, options)
    if letter is None or letter not in options:
        return None
    text = options[letter].strip()
    if not text or _REFERS_TO_OTHERS.search(text):
        return None
    # drop a trailing "Choose one:" style line left after the options were cut
    stem = re.sub(r"\n[^\n]*(?:choose|select|pick)[^\n]*(?:following|options?|one)[^\n]*[:.]?\s*$", "", stem, flags=re.I)
    stem = stem.rstrip()
    if not stem:
        return None
    return stem + "\n\nGive the answer itself, not an option letter.", text
