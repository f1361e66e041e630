"""Format and quality rules for one response (SPEC §1 item 7, "Format and quality rules").

Each rule is a plain function ``(record, response, settings) -> RuleFailure | None`` with
its own reason code, so a ledger entry says exactly what was wrong:

============== =============================================================
reason         meaning
============== =============================================================
truncated      the generation stopped on the token limit (finish_reason length)
missing_think  an empty think part, or none where one is required (``require_think``)
empty_answer   no answer after the think part
too_short      under ``min_chars`` / ``min_tokens`` (think + answer)
too_long       over ``max_chars`` / ``max_tokens``
repetition     a high repeated-n-gram ratio, or a loop at the end of the trace
language_mismatch  a Chinese problem answered in another language, or the reverse
no_boxed       a math answer without ``\\boxed{}``
============== =============================================================

``FormatVerifier`` runs the enabled rules in that order and returns the first failure;
``details["failures"]`` lists every failure, so one pass shows all that is wrong.

The think part (``require_think``): ``true`` requires a non-empty think part in every
response, ``false`` never checks it, and ``auto`` (the default) fails an empty think part
always but a missing one only in responses the pipeline generated (``source ==
"generate"``): our teacher was asked for ``<think>…</think>``, so a reply without it broke
the format, while a replayed response without one comes from a source that has none
(short-CoT model outputs, reference solutions) and is not malformed. A replayed reasoning
source can still require it: ``per_source: {openr1: {require_think: true}}``.

Rules can differ per source: ``per_source`` maps a record's ``source`` (the name in the
pipeline's ``sources``) to the settings that differ for it; the rest come from the top level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from reasonmill.verify.base import Verdict
from reasonmill.verify.boilerplate import ngram_hashes
from reasonmill.verify.keys import verdict_key

#: ``response["source"]`` of responses the pipeline's own teacher generated
GENERATED_SOURCE = "generate"


class FormatRules(BaseModel):
    """The rule settings; every rule can be switched off on its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    check_truncated: bool = True
    #: true | false | auto (see the module docstring)
    require_think: bool | Literal["auto"] = "auto"
    require_answer: bool = True
    # length of think + answer; tokens use ``response["tokens"]`` when set, else an estimate
    min_chars: int = 1
    max_chars: int | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    # repeated word n-grams: 1 - distinct/total over think + answer
    repetition_ngram: int = 20
    repetition_max_ratio: float = 0.5
    repetition_min_ngrams: int = 50  # too few n-grams say nothing about repetition
    # a loop at the end: the last ``loop_window_chars`` repeat a period at least
    # ``loop_min_repeats`` times, covering at least ``loop_min_span_chars``
    check_tail_loop: bool = True
    loop_window_chars: int = 6000
    loop_min_repeats: int = 3
    loop_min_span_chars: int = 200
    # language: the share of CJK characters among letters (LaTeX and code removed)
    check_language: bool = True
    language_part: Literal["answer", "think", "both"] = "answer"
    zh_problem_min_cjk: float = 0.2  # a problem with at least this share is Chinese
    zh_answer_min_cjk: float = 0.1  # ... and its answer must have at least this share
    non_zh_answer_max_cjk: float = 0.5  # a non-Chinese problem's answer may have at most this
    # \boxed{} required in the answer for these categories
    require_boxed_for: list[str] = ["math"]


class FormatSettings(FormatRules):
    """``verify.format`` in the pipeline YAML: the rules, and the ones that differ per source.

    ``per_source: {skythought: {require_think: false, max_chars: 60000}}``: records whose
    ``source`` is ``skythought`` use those two values and the top-level ones for the rest."""

    per_source: dict[str, FormatRules] = {}

    def for_source(self, source: str | None) -> FormatRules:
        """The rules that apply to a record of ``source``."""
        override = self.per_source.get(source) if source is not None else None
        base = self.model_dump(exclude={"per_source"})
        if override is None:
            return FormatRules(**base)
        return FormatRules(**(base | {k: getattr(override, k) for k in override.model_fields_set}))


@dataclass(frozen=True)
class RuleFailure:
    reason: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message, **self.evidence}


Rule = Callable[[dict, dict, FormatRules], "RuleFailure | None"]


# --- helpers ----------------------------------------------------------------------------

_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\w+|[^\w\s]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u0400-\u04ff]")
_STRIP_FOR_LANG = re.compile(
    r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)|\\[A-Za-z]+", re.S
)


def tokens_of(text: str) -> list[str]:
    """Word tokens: CJK characters one by one, words, single punctuation marks."""
    return _WORD.findall(text)


def estimate_tokens(text: str) -> int:
    """A model-free token count estimate (≈ BPE tokens for English and Chinese)."""
    return len(_WORD.findall(text))


def cjk_share(text: str) -> float:
    """Share of CJK characters among letters, after removing code, LaTeX and formulas."""
    text = _STRIP_FOR_LANG.sub(" ", text or "")
    cjk = len(_CJK.findall(text))
    latin_words = len(re.findall(r"[A-Za-z]{2,}", text))  # a Latin word weighs like one CJK char
    total = cjk + latin_words
    return cjk / total if total else 0.0


def repeated_ngram_ratio(text: str, n: int) -> tuple[float, int]:
    """``1 - distinct/total`` over ``n``-token n-grams (64-bit hashes), and the number of n-grams."""
    hashes, _ = ngram_hashes(text, n)
    total = len(hashes)
    if total == 0:
        return 0.0, 0
    return 1 - len(np.unique(hashes)) / total, total


def tail_loop(text: str, window: int = 6000, min_repeats: int = 3, min_span: int = 200) -> dict | None:
    """Detect a trace whose end loops: its tail is one unit repeated back to back.

    Candidate periods are the distances back to earlier copies of the last few characters
    (nearest first, so the shortest period wins); a period counts when the unit repeats at
    least ``min_repeats`` times and the repeats cover at least ``min_span`` characters.
    Returns the period, the repeat count and the unit (cut to 200 chars), or None.
    """
    s = text.rstrip()[-window:]
    n = len(s)
    if n < min_span:
        return None
    probe_len = max(1, min(32, n // (2 * min_repeats)))
    probe = s[n - probe_len :]
    pos = s.rfind(probe, 0, n - 1)
    while pos != -1:
        p = n - probe_len - pos
        if p * min_repeats > n:
            break  # longer periods cannot repeat often enough inside the window
        unit = s[n - p :]
        k = 1
        while (k + 1) * p <= n and s[n - (k + 1) * p : n - k * p] == unit:
            k += 1
        if k >= min_repeats and k * p >= min_span:
            return {"period": p, "repeats": k, "unit": unit[:200]}
        pos = s.rfind(probe, 0, pos + probe_len - 1)
    return None


def _body(response: dict) -> str:
    return f"{response.get('think') or ''}\n{response.get('answer') or ''}"


def _token_count(response: dict) -> tuple[int, str]:
    if isinstance(response.get("tokens"), int) and response["tokens"] > 0:
        return response["tokens"], "response.tokens"
    return estimate_tokens(_body(response)), "estimate"


# --- rules -----------------------------------------------------------------------------


def rule_truncated(record: dict, response: dict, s: FormatRules) -> RuleFailure | None:
    if s.check_truncated and response.get("finish_reason") == "length":
        return RuleFailure("truncated", "generation stopped at the token limit (finish_reason=length)")
    return None


def rule_missing_think(record: dict, response: dict, s: FormatRules) -> RuleFailure | None:
    if s.require_think is False:
        return None
    think = response.get("think")
    if think is None:
        if s.require_think == "auto" and response.get("source") != GENERATED_SOURCE:
            return None  # replayed from a source without think parts: not malformed
        return RuleFailure("missing_think", "no <think>…</think> part in the response")
    if not think.strip():
        return RuleFailure("missing_think", "the <think> part is empty")
    return None


def rule_empty_answer(record: dict, response: dict, s: FormatRules) -> RuleFailure | None:
    if s.require_answer and not (response.get("answer") or "").strip():
        return RuleFailure("empty_answer", "nothing after the think part")
    return None


def rule_length(record: dict, response: dict, s: FormatRules) -> RuleFailure | None:
    n_chars = len(_body(response).strip())
    if s.min_chars and n_chars < s.min_chars:
        return RuleFailure("too_short", f"{n_chars} chars < min_chars {s.min_chars}", {"chars": n_chars})
    if s.max_chars is not None and n_chars > s.max_chars:
        return RuleFailure("too_long", f"{n_chars} chars > max_chars {s.max_chars}", {"chars": n_chars})
    if s.min_tokens is None and s.max_tokens is None:
        return None
    n_tok, how = _token_count(response)
    if s.min_tokens is not None and n_tok < s.min_tokens:
        return RuleFailure("too_short", f"{n_tok} tokens < min_tokens {s.min_tokens}", {"tokens": n_tok, "counted": how})
    if s.max_tokens is not None and n_tok > s.max_tokens:
        return RuleFailure("too_long", f"{n_tok} tokens > max_tokens {s.max_tokens}", {"tokens": n_tok, "counted": how})
    return None


def rule_repetition(record: dict, response: dict, s: FormatRules) -> RuleFailure | None:
    body = _body(response)
    if s.check_tail_loop:
        loop = tail_loop(body, s.loop_window_chars, s.loop_min_repeats, s.loop_min_span_chars)
        if loop:
            return RuleFailure(
                "repetition",
                f"the trace ends in a loop: a {loop['period']}-char unit repeated {loop['repeats']} times",
                {"kind": "tail_loop", **loop},
            )
    if s.repetition_max_ratio < 1:
        ratio, total = repeated_ngram_ratio(body, s.repetition_ngram)
        if total >= s.repetition_min_ngrams and ratio > s.repetition_max_ratio:
            return RuleFailure(
                "repetition",
                f"{ratio:.2f} of the {s.repetition_ngram}-grams repeat (max {s.repetition_max_ratio})",
                {"kind": "ngram_ratio", "ratio": round(ratio, 4), "ngrams": total},
            )
    return None


def rule_language(record: dict, response: dict, s: FormatRules) -> RuleFailure | None:
    if not s.check_language:
        return None
    lang = (record.get("language") or "").lower()
    problem_share = cjk_share(record.get("problem") or "")
    is_zh = lang.startswith("zh") if lang else problem_share >= s.zh_problem_min_cjk
    part = {
        "answer": response.get("answer") or "",
        "think": response.get("think") or "",
        "both": _body(response),
    }.get(s.language_part, response.get("answer") or "")
    if record.get("category") == "code" and "```" not in part:
        return None  # a bare program (a replayed reference solution): its comments are no language
    share = cjk_share(part)
    if not part.strip() or (share == 0 and not re.search(r"[A-Za-z]{2,}", _STRIP_FOR_LANG.sub(" ", part))):
        return None  # nothing language-bearing (a bare number or formula)
    if is_zh and share < s.zh_answer_min_cjk:
        return RuleFailure(
            "language_mismatch", f"Chinese problem, {s.language_part} has CJK share {share:.2f}",
            {"problem_language": "zh", "cjk_share": round(share, 3)},
        )
    if not is_zh and share > s.non_zh_answer_max_cjk:
        return RuleFailure(
            "language_mismatch", f"non-Chinese problem, {s.language_part} has CJK share {share:.2f}",
            {"problem_language": lang or "non-zh", "cjk_share": round(share, 3)},
        )
    return None


def rule_boxed(record: dict, response: dict, s: FormatRules) -> RuleFailure | None:
    if record.get("category") in s.require_boxed_for and "\\boxed" not in (response.get("answer") or ""):
        return RuleFailure("no_boxed", f"a {record.get('category')} answer without \\boxed{{}}")
    return None


RULES: tuple[tuple[str, Rule], ...] = (
    ("truncated", rule_truncated),
    ("missing_think", rule_missing_think),
    ("empty_answer", rule_empty_answer),
    ("length", rule_length),
    ("repetition", rule_repetition),
    ("language", rule_language),
    ("boxed", rule_boxed),
)


class FormatVerifier:
    """All enabled format rules; the first failure is the verdict's reason."""

    name: ClassVar[str] = "format"
    #: bump when a verdict can change for the same inputs (see reasonmill.verify.keys)
    version: ClassVar[str] = "2"

    def __init__(self, settings: FormatSettings | dict | None = None):
        if settings is None:
            settings = FormatSettings()
        elif isinstance(settings, dict):
            settings = FormatSettings(**settings)
        self.settings = settings
        self._default = settings.for_source(None)
        self._per_source = {src: settings.for_source(src) for src in settings.per_source}
        self._dumps = {src: r.model_dump() for src, r in self._per_source.items()}
        self._default_dump = self._default.model_dump()

    def rules_for(self, record: dict) -> FormatRules:
        """The rules for ``record``: the top level with its source's ``per_source`` applied."""
        return self._per_source.get(record.get("source"), self._default)  # type: ignore[arg-type]

    def cache_key(self, record: dict, response: dict) -> str:
        """The rules for the record's source, and the fields they read: the problem, its
        language and category; think, answer, finish_reason, tokens, and whether the
        response was generated (``require_think: auto``)."""
        rules = self._dumps.get(record.get("source"), self._default_dump)  # type: ignore[arg-type]
        fields = [record.get("problem"), record.get("language"), record.get("category"),
                  [response.get(k) for k in ("think", "answer", "finish_reason", "tokens")],
                  response.get("source") == GENERATED_SOURCE]  # fmt: skip
        return verdict_key(self.name, self.version, rules, {}, fields)

    def failures(self, record: dict, response: dict) -> list[RuleFailure]:
        rules = self.rules_for(record)
        out = []
        for _, rule in RULES:
            f = rule(record, response, rules)
            if f is not None:
                out.append(f)
        return out

    def verify(self, record: dict, response: dict) -> Verdict:
        fails = self.failures(record, response)
        if not fails:
            return Verdict(1.0, True, "format_ok", {}, self.name)
        return Verdict(
            0.0, False, fails[0].reason,
            {"message": fails[0].message, "failures": [f.to_dict() for f in fails]},
            self.name,
        )
