"""The clean stage's vectorized screen: which rows could any rule fire on?

The clean rules are Python (regexes and string scans, ~40 µs a record). Most records
break no rule, so the stage first asks Arrow compute, over the whole shard at once, for
each rule's *might fire* condition: a superset of the rows the rule can drop. Rows where
no condition holds are kept without entering Python, and their language is detected
here, vectorized, with the same result as :func:`reasonmill.text.detect_language`. Every
other row goes through the exact Python rules, so the output is identical to running the
rules on every record (tests compare both paths on real data).

Only ASCII problems are screened: non-ASCII text (mojibake, unusual characters, CJK
language detection) always takes the Python path. ASCII control characters do too,
since Python and Arrow disagree on whether ``\\x1c``–``\\x1f`` are whitespace.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reasonmill.text import (
    _ASCII_TABLE_RE,
    _DANGLING_CHARS,
    _DANGLING_WORDS,
    _EN_STOPWORDS,
    _HTML_TABLE_RE,
    _IMAGE_MARKER_RE,
    _IMAGE_PHRASE_RE,
    _LATEX_TABLE_RE,
    _MD_TABLE_RE,
    _OTHER_STOPWORDS,
    _TLD_SLASH,
)

if TYPE_CHECKING:  # pragma: no cover
    from reasonmill.stages.clean import Clean

_CONTROL = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_EN = pa.array(sorted(_EN_STOPWORDS))
_OTHER = pa.array(sorted(w for w in _OTHER_STOPWORDS if w.isascii()))
# one of those words as a whole whitespace-separated token (Arrow's ASCII whitespace,
# the separators of ascii_split_whitespace)
_OTHER_WORD_PATTERN = (
    r"(?:^|[ \t\n\v\f\r])(?:"
    + "|".join(re.escape(w) for w in sorted(w for w in _OTHER_STOPWORDS if w.isascii()))
    + r")(?:[ \t\n\v\f\r]|$)"
)
_DANGLING_LAST = pa.array(sorted(c for c in _DANGLING_CHARS if c.isascii()))
_DANGLING_WORD_ARR = pa.array(sorted(_DANGLING_WORDS))
# The Python rules' own regexes, run by RE2 over the whole column (same syntax here; on
# ASCII text \b and \d mean the same in both engines). A match is necessary for the
# rule to fire, so the screen stays a superset.
_IMAGE_MARKER_PATTERN = _IMAGE_MARKER_RE.pattern
_IMAGE_ANY_PATTERN = f"{_IMAGE_MARKER_RE.pattern}|{_IMAGE_PHRASE_RE.pattern}"
_TABLE_PATTERN = "|".join(
    [f"(?m:{_MD_TABLE_RE.pattern})", f"(?i:{_HTML_TABLE_RE.pattern})", f"(?m:{_ASCII_TABLE_RE.pattern})"]
)
_NULL_ANSWER_RE = r"^[ \t\n\r\f]*(none|null|nan|n/a|na|-|\?)?[ \t\n\r\f]*$"


def _np(mask: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, nulls as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


# (Arrow's regex kernels are several times faster here than its plain-substring ones.)
def _contains(text: pa.ChunkedArray, *subs: str) -> np.ndarray:
    """Rows containing any of ``subs``."""
    return _np(pc.match_substring_regex(text, "|".join(re.escape(s) for s in subs)))


def _count(text: pa.ChunkedArray, sub: str) -> np.ndarray:
    return pc.fill_null(pc.count_substring_regex(text, re.escape(sub)), 0).to_numpy(zero_copy_only=False)


def detect_language_ascii(text: pa.ChunkedArray) -> np.ndarray:
    """``detect_language`` for ASCII texts, vectorized: "en" or "other" (object array).

    Same steps: the first 500 characters lower-cased; no letter → "other"; else English
    when English function words are at least as many as other languages' ones (and
    some), "other" when only the latter are present, "en" when there are none. So a
    text with letters and none of the other languages' words is English: words are
    split and counted only for the rows where one regex finds such a word."""
    sample = pc.ascii_lower(pc.utf8_slice_codeunits(text, 0, 500))
    has_letter = _np(pc.match_substring_regex(sample, "[a-z']"))
    lang = np.where(has_letter, "en", "other").astype(object)
    rows = np.flatnonzero(has_letter & _np(pc.match_substring_regex(sample, _OTHER_WORD_PATTERN)))
    if len(rows):
        words = pc.ascii_split_whitespace(sample.take(pa.array(rows, type=pa.int64())))
        if isinstance(words, pa.ChunkedArray):
            words = words.combine_chunks()
        flat = pc.list_flatten(words)
        parents = pc.list_parent_indices(words).to_numpy(zero_copy_only=False)
        en = np.bincount(parents, weights=_np(pc.is_in(flat, value_set=_EN)), minlength=len(rows))
        other = np.bincount(parents, weights=_np(pc.is_in(flat, value_set=_OTHER)), minlength=len(rows))
        lang[rows] = np.where((en > 0) & (en >= other), "en", "other")
    return lang


def screen(stage: "Clean", table: pa.Table) -> tuple[np.ndarray, dict[str, pa.Array]] | None:
    """(rows that need the Python rules, {"language": the language column for the rest})."""
    s = stage.settings
    n = table.num_rows
    if n == 0 or stage._single_all or stage._single_cats:
        return None  # proof/multi-question rules: every row goes through Python
    text = table.column("problem")
    ascii_ = _np(pc.string_is_ascii(text))  # null problems: False → Python ("empty")
    need = ~ascii_
    need |= _np(pc.match_substring_regex(text, _CONTROL))
    length = pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
    stripped = pc.ascii_rtrim_whitespace(text)
    need |= pc.fill_null(pc.utf8_length(stripped), 0).to_numpy(zero_copy_only=False) == 0
    need |= length < s.min_chars
    if s.max_chars is not None:
        need |= length > s.max_chars
    if s.truncated:
        last = pc.utf8_slice_codeunits(stripped, -1)
        need |= _np(pc.is_in(last, value_set=_DANGLING_LAST))
        tail = pc.struct_field(pc.extract_regex(pc.utf8_slice_codeunits(stripped, -12), "(?P<w>[A-Za-z]+)$"), [0])
        need |= _np(pc.is_in(pc.ascii_lower(tail), value_set=_DANGLING_WORD_ARR))
        need |= _count(text, "\\begin{") > _count(text, "\\end{")
        opened = _count(text, "{") - _count(text, "\\{")
        closed = _count(text, "}") - _count(text, "\\}")
        need |= (opened - closed >= 1) & ~_np(pc.equal(last, "}"))
        odd = (_count(text, "$") - _count(text, "\\$")) % 2 == 1
        after = pc.struct_field(pc.extract_regex(text, r"\$(?P<a>[^$]*)$"), [0])  # after the last $
        need |= odd & _np(pc.match_substring_regex(after, r"\\[A-Za-z]|[{}]"))
    if s.url:
        # "/" in text and a TLD followed by "/": every _TLD_SLASH holds the "/"
        need |= _contains(text, "://", "www.", *_TLD_SLASH)
    if s.image_ref:
        pattern = _IMAGE_ANY_PATTERN if s.image_ref_phrases else _IMAGE_MARKER_PATTERN
        need |= _np(pc.match_substring_regex(pc.ascii_lower(text), pattern))  # on lower case, as Python
    if s.asy_figure:
        need |= _np(pc.match_substring_regex(text, r"\[asy\]", ignore_case=True))
    if s.table:
        need |= _np(pc.match_substring_regex(text, _TABLE_PATTERN))
        if s.table_latex:
            need |= _np(pc.match_substring_regex(text, _LATEX_TABLE_RE.pattern))
    if stage._answer_cats:
        need |= ~_has_reference(table)
    detected = detect_language_ascii(text)
    existing = table.column("language") if "language" in table.column_names else None
    if existing is not None and not s.overwrite_language:
        have = pc.fill_null(existing, "").to_numpy(zero_copy_only=False).astype(object)
        language = np.where(have != "", have, detected)
    else:
        language = detected
    if stage._languages is not None:
        need |= ~np.isin(language, list(stage._languages))
    return need, {"language": pa.array(language, type=pa.string())}


def _has_reference(table: pa.Table) -> np.ndarray:
    """Rows that certainly have a usable reference (tests, or a non-null answer); rows
    with characters Python and Arrow might strip differently count as unknown (False)."""
    has = np.zeros(table.num_rows, dtype=bool)
    if "tests" in table.column_names:
        has |= pc.fill_null(pc.list_value_length(table.column("tests")), 0).to_numpy(zero_copy_only=False) > 0
    if "reference_answer" in table.column_names:
        ref = table.column("reference_answer")
        plain = ~_np(pc.match_substring_regex(ref, "[^\x20-\x7e\t\n\r\x0c]")) & _np(pc.is_valid(ref))
        null_like = _np(pc.match_substring_regex(ref, _NULL_ANSWER_RE, ignore_case=True))
        has |= plain & ~null_like
    return has
