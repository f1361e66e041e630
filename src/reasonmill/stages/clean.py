"""The clean stage: drop problems that cannot make good training data, saying why.

Each rule of SPEC §1 item 2 has its own reason code and its own switch or threshold:

========================  =======================================================
reason                    dropped when
========================  =======================================================
``empty``                 the problem is missing or whitespace
``mojibake``              wrong decoding: ``Ã©``, ``â€™``, U+FFFD, C1 controls
``unusual_unicode``       share of unusual characters > ``max_unusual_ratio``
``too_short``/``too_long`` length outside ``min_chars``..``max_chars``
``truncated``             cut off: dangling word, open brace/environment/math
``url``                   a URL that is a reference, not data (quotes, code, examples)
``image_ref``             a missing picture (``![](…)``, ``<image>``, image URL);
                          with ``image_ref_phrases`` also "as shown", "the figure below"
``asy_figure``            draws its figure in Asymptote (off by default)
``table``                 a markdown/HTML/ASCII (optionally LaTeX) table
``language``              language not in ``languages``
``no_reference_answer``   category in ``require_reference_answer_for`` and no answer
``proof_only``            asks only for a proof, when a single answer is required
``multi_question``        several asking sub-questions, when a single answer is required
========================  =======================================================

The first rule that fires decides the reason (the order above: cheap encoding checks
first). The language is always labelled on kept records. Rules can be switched off per
category with ``exempt`` (by default code problems keep their tables, which are sample
data, and are not checked for truncation, since statements end with sample output), and
per category for records that carry tests with ``exempt_when_tested`` (by default a code
problem with tests keeps its URLs and pictures: the tests define the task, and the
pictures illustrate its examples).

Everything is precompiled in :mod:`reasonmill.text`; the per-record cost is a handful
of C-level regex scans, so the stage runs at tens of thousands of records per second.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from reasonmill.records import CATEGORIES
from reasonmill.stages.base import Stage, StageOutput, StageSettings, stage
from reasonmill.stages.label import classify_category
from reasonmill.text import (
    count_subquestions,
    detect_language,
    find_image_ref,
    find_mojibake,
    find_table,
    find_unusual_chars,
    find_url,
    has_asy_figure,
    is_proof_only,
    truncation_reason,
    unusual_char_ratio,
)

Language = Literal["zh", "en", "other"]
RULES = (
    "empty",
    "mojibake",
    "unusual_unicode",
    "too_short",
    "too_long",
    "truncated",
    "url",
    "image_ref",
    "asy_figure",
    "table",
    "language",
    "no_reference_answer",
    "proof_only",
    "multi_question",
)
_NULL_ANSWERS = frozenset(("", "none", "null", "nan", "n/a", "na", "-", "?"))


class CleanSettings(StageSettings):
    min_chars: int = Field(10, ge=0, description="shorter problems are dropped (too_short)")
    max_chars: int | None = Field(32000, description="longer problems are dropped (too_long); null disables")
    truncated: bool = True
    url: bool = True
    #: URLs containing one of these strings are not references that make a problem
    #: incomplete (Codeforces links Wikipedia for the definition of XOR or GCD)
    url_allow: list[str] = Field(default_factory=lambda: ["wikipedia.org"])
    #: ignore the target of a markdown link ``[text](url)`` (its text carries the meaning)
    url_ignore_markdown_links: bool = True
    image_ref: bool = True
    #: also drop problems that only *mention* a figure ("as shown", "in the diagram"):
    #: off by default, since on real data most of them are complete without it
    image_ref_phrases: bool = False
    #: Asymptote ``[asy]`` figures: the drawing is in the text, so kept by default
    asy_figure: bool = False
    table: bool = True
    #: count LaTeX ``tabular``/``array`` as tables (MATH states data tables that way)
    table_latex: bool = False
    mojibake: bool = True
    #: maximum share of unusual characters; null disables the rule
    max_unusual_ratio: float | None = Field(0.05, ge=0.0, le=1.0)
    #: allowed languages; null keeps every language (the language is labelled anyway)
    languages: list[Language] | None = None
    #: replace a language the record already has with the detected one
    overwrite_language: bool = False
    #: categories whose problems need a reference answer (tests count for code)
    require_reference_answer_for: list[str] = Field(default_factory=list)
    #: drop proof-only and multi-question problems: true for all, or a list of categories
    require_single_answer: bool | list[str] = False
    #: ``multi_question`` fires when more than this many labelled parts ask something
    max_subquestions: int = Field(1, ge=1)
    #: rules switched off per category, e.g. ``{code: [table, truncated]}``
    exempt: dict[str, list[str]] = Field(default_factory=lambda: {"code": ["table", "truncated"]})
    #: rules switched off per category for records that carry tests
    exempt_when_tested: dict[str, list[str]] = Field(default_factory=lambda: {"code": ["url", "image_ref"]})

    @field_validator("require_reference_answer_for")
    @classmethod
    def _categories(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in CATEGORIES]
        if bad:
            raise ValueError(f"unknown categories {bad}; valid: {', '.join(CATEGORIES)}")
        return v

    @field_validator("require_single_answer")
    @classmethod
    def _single(cls, v: bool | list[str]) -> bool | list[str]:
        if isinstance(v, list):
            cls._categories(v)
        return v

    @field_validator("exempt", "exempt_when_tested")
    @classmethod
    def _exempt(cls, v: dict[str, list[str]], info: ValidationInfo) -> dict[str, list[str]]:
        for cat, rules in v.items():
            if cat not in CATEGORIES:
                valid = ", ".join(CATEGORIES)
                raise ValueError(f"{info.field_name}: unknown category {cat!r}; valid: {valid}")
            bad = [r for r in rules if r not in RULES]
            if bad:
                raise ValueError(f"{info.field_name}.{cat}: unknown rules {bad}; valid: {', '.join(RULES)}")
        return v


@stage("clean")
class Clean(Stage):
    """Rule-based problem filter with one reason code per rule; labels the language."""

    Settings = CleanSettings
    version = "1"

    def __init__(self, settings: Any = None, context: Any = None):
        super().__init__(settings, context)
        s = self.settings
        self._exempt = {cat: frozenset(rules) for cat, rules in s.exempt.items()}
        self._exempt_tested = {cat: frozenset(rules) for cat, rules in s.exempt_when_tested.items()}
        self._single_all = s.require_single_answer is True
        self._single_cats = (
            frozenset(s.require_single_answer) if isinstance(s.require_single_answer, list) else frozenset()
        )
        self._answer_cats = frozenset(s.require_reference_answer_for)
        self._url_allow = tuple(a.lower() for a in s.url_allow)
        self._languages = frozenset(s.languages) if s.languages is not None else None

    # fields the rules (and the rule-based category) look at; only ``language`` is written
    reads = (
        "id",
        "source",
        "problem",
        "category",
        "language",
        "reference_answer",
        "tests",
        "starter_code",
        "meta",
    )
    writes = ("language",)

    def screen(self, table: Any, index: Any = None) -> Any:
        from reasonmill.stages.clean_screen import screen

        return screen(self, table)

    def process(self, records: list[dict], index: Any = None) -> StageOutput:
        out = StageOutput()
        check = self._check
        for record in records:
            r = dict(record)
            verdict = check(r)
            if verdict is None:
                out.kept.append(r)
            else:
                reason, message, evidence = verdict
                out.drop(r, reason, message, **evidence)
        return out

    def _exempted(self, r: dict, rule: str, cat: list) -> bool:
        """True when ``rule`` is switched off for the record's category (computed lazily),
        or for its category when it carries tests."""
        tested = self._exempt_tested if r.get("tests") else None
        if not self._exempt and not tested:
            return False
        category = self._category(r, cat)
        rules = self._exempt.get(category)
        if rules is not None and rule in rules:
            return True
        rules = tested.get(category) if tested else None
        return rules is not None and rule in rules

    def _category(self, r: dict, cat: list) -> str:
        if not cat:
            cat.append(r.get("category") or classify_category(r))
        return cat[0]

    def _check(self, r: dict) -> tuple[str, str, dict] | None:
        s = self.settings
        text = r.get("problem")
        if not isinstance(text, str) or not text.strip():
            return "empty", "the problem text is empty", {"problem": text}
        cat: list = []  # lazily computed category, shared by the rules below
        n = len(text)
        ascii_only = text.isascii()
        if s.mojibake and not ascii_only:
            bad = find_mojibake(text)
            if bad is not None and not self._exempted(r, "mojibake", cat):
                return (
                    "mojibake",
                    f"looks wrongly decoded near {bad!r}; re-read the source with the right encoding",
                    {"snippet": bad},
                )
        if s.max_unusual_ratio is not None:
            ratio = unusual_char_ratio(text)
            if ratio > s.max_unusual_ratio and not self._exempted(r, "unusual_unicode", cat):
                return (
                    "unusual_unicode",
                    f"{ratio:.1%} of characters are unusual (max {s.max_unusual_ratio:.1%})",
                    {"ratio": round(ratio, 4), "max": s.max_unusual_ratio, "chars": find_unusual_chars(text)},
                )
        if n < s.min_chars and not self._exempted(r, "too_short", cat):
            return (
                "too_short",
                f"{n} characters (min_chars {s.min_chars})",
                {"length": n, "min_chars": s.min_chars},
            )
        if s.max_chars is not None and n > s.max_chars and not self._exempted(r, "too_long", cat):
            return (
                "too_long",
                f"{n} characters (max_chars {s.max_chars})",
                {"length": n, "max_chars": s.max_chars},
            )
        if s.truncated:
            why = truncation_reason(text)
            if why is not None and not self._exempted(r, "truncated", cat):
                return "truncated", f"the problem looks cut off ({why})", {"signal": why, "tail": text[-60:]}
        if s.url:
            url = find_url(text, self._url_allow, s.url_ignore_markdown_links)
            if url is not None and not self._exempted(r, "url", cat):
                return "url", f"the problem refers to a URL: {url}", {"url": url}
        if s.image_ref:
            ref = find_image_ref(text, s.image_ref_phrases)
            if ref is not None and not self._exempted(r, "image_ref", cat):
                return (
                    "image_ref",
                    f"the problem refers to a figure it does not contain: {ref!r}",
                    {"match": ref},
                )
        if s.asy_figure and "[" in text and has_asy_figure(text) and not self._exempted(r, "asy_figure", cat):
            return "asy_figure", "the problem draws its figure in Asymptote ([asy])", {}
        if s.table:
            kind = find_table(text, latex=s.table_latex)
            if kind is not None and not self._exempted(r, "table", cat):
                return "table", f"the problem contains a {kind} table", {"kind": kind}
        language = r.get("language")
        if not language or s.overwrite_language:
            language = detect_language(text)
            r["language"] = language
        if (
            self._languages is not None
            and language not in self._languages
            and not self._exempted(r, "language", cat)
        ):
            return (
                "language",
                f"language {language!r} is not in languages {sorted(self._languages)}",
                {"language": language, "allowed": sorted(self._languages)},
            )
        if self._answer_cats:
            category = self._category(r, cat)
            if (
                category in self._answer_cats
                and not _has_reference(r)
                and not self._exempted(r, "no_reference_answer", cat)
            ):
                return (
                    "no_reference_answer",
                    f"a {category} problem without a usable reference answer (require_reference_answer_for)",
                    {"category": category, "reference_answer": r.get("reference_answer")},
                )
        if self._single_all or self._single_cats:
            category = self._category(r, cat)
            if self._single_all or category in self._single_cats:
                if is_proof_only(text) and not self._exempted(r, "proof_only", cat):
                    return (
                        "proof_only",
                        "the problem asks only for a proof: no checkable answer",
                        {"category": category},
                    )
                parts = count_subquestions(text)
                if parts > s.max_subquestions and not self._exempted(r, "multi_question", cat):
                    return (
                        "multi_question",
                        f"the problem has {parts} sub-questions; a single checkable answer is required",
                        {"subquestions": parts, "max_subquestions": s.max_subquestions},
                    )
        return None


def _has_reference(r: dict) -> bool:
    """A usable reference: a non-null answer, or tests for code problems."""
    if r.get("tests"):
        return True
    answer = r.get("reference_answer")
    if answer is None:
        return False
    return str(answer).strip().lower() not in _NULL_ANSWERS
