"""Shared text utilities for cleaning, dedup and labelling.

Every function here is pure, rule-based and cheap: the clean stage calls most of them on
every record and must sustain tens of thousands of records per second per core. So all
regexes are compiled once at import time, character counting is done with
``len(text) - len(RE.sub("", text))`` (a C loop, no Python-level iteration), and the
language detector looks only at a bounded prefix of the text.

The ``find_*`` functions return the matched evidence (or ``None``) so that a dropped
record can show *why* in the ledger; the ``has_*``/``looks_*`` functions are their
boolean forms.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "cjk_ratio",
    "count_subquestions",
    "detect_language",
    "find_image_ref",
    "find_mojibake",
    "find_table",
    "find_unusual_chars",
    "find_url",
    "has_asy_figure",
    "has_image_ref",
    "has_table",
    "has_url",
    "is_proof_only",
    "looks_mojibake",
    "looks_truncated",
    "mask_quoted_data",
    "normalize_for_hash",
    "truncation_reason",
    "unusual_char_ratio",
]

# --- normalization for exact dedup -------------------------------------------------

# whitespace next to punctuation (but not between word characters): "a , b" == "a, b",
# "( x )" == "(x)". Digits are word characters, so "3,4,5" stays distinct from "5,12,13".
# Only whitespace runs are matched, so a text without such runs costs one scan.
_PUNCT_SPACE_RE = re.compile(r" (?:(?=[^\w ])|(?<=[^\w ] ))")


def normalize_for_hash(text: str | None) -> str:
    """Canonical form for exact-duplicate hashing.

    NFKC folds full-width and compatibility forms (``ＡＢＣ`` → ``abc``, ``①`` → ``1``),
    case is folded, runs of whitespace collapse, and whitespace next to punctuation is
    removed so that spacing variants of the same problem hash alike. Digits and
    punctuation themselves are kept: changing a number changes the problem.
    """
    if not text:
        return ""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = " ".join(text.lower().split())
    return _PUNCT_SPACE_RE.sub("", text)


# --- scripts and language ------------------------------------------------------------

# Han ideographs (with extensions and compatibility), CJK punctuation, kana, hangul.
_CJK_CLASS = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff"
    "\u3200-\u33ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f"
    "\uff00-\uffef\U00020000-\U0002fa1f"
)
_CJK_RE = re.compile(f"[{_CJK_CLASS}]")
_HAN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_KANA_RE = re.compile("[\u3040-\u30ff]")
_HANGUL_RE = re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_SPACE_RE = re.compile(r"\s")
_LATIN_LETTER_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")
# Letters of other alphabetic scripts (Greek is excluded: it is math notation here).
_OTHER_SCRIPT_RE = re.compile("[\u0400-\u052f\u0530-\u058f\u0590-\u06ff\u0900-\u0dff\u0e00-\u0e7f]")
# LaTeX math and commands carry Latin letters that say nothing about the language.
_MATH_SPAN_RE = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)|\\[A-Za-z]+", re.DOTALL)
_WORD_RE = re.compile(r"[a-z']+")  # on lower-cased text
_EN_STOPWORDS = frozenset(
    [
        "the",
        "of",
        "and",
        "a",
        "an",
        "to",
        "in",
        "is",
        "are",
        "be",
        "that",
        "this",
        "it",
        "for",
        "on",
        "with",
        "as",
        "by",
        "at",
        "from",
        "or",
        "if",
        "what",
        "which",
        "how",
        "many",
        "much",
        "find",
        "let",
        "there",
        "their",
        "its",
        "was",
        "were",
        "has",
        "have",
        "not",
        "than",
        "then",
        "each",
        "all",
        "any",
        "given",
        "such",
        "when",
        "where",
        "who",
        "whose",
        "can",
        "will",
        "would",
        "should",
        "number",
        "numbers",
        "your",
        "you",
        "we",
        "our",
        "one",
        "two",
        "integer",
        "integers",
        "value",
        "values",
        "sum",
        "real",
        "positive",
    ]
)
# Frequent function words of other Latin-script languages (fr, de, es, it, pt, nl, id).
_OTHER_STOPWORDS = frozenset(
    [
        "le",
        "la",
        "les",
        "des",
        "du",
        "une",
        "est",
        "et",
        "dans",
        "pour",
        "que",
        "qui",
        "sur",
        "avec",
        "sont",
        "der",
        "die",
        "das",
        "und",
        "ist",
        "nicht",
        "ein",
        "eine",
        "mit",
        "den",
        "dem",
        "zu",
        "von",
        "el",
        "los",
        "las",
        "del",
        "por",
        "con",
        "para",
        "una",
        "es",
        "que",
        "se",
        "lo",
        "il",
        "della",
        "di",
        "che",
        "per",
        "non",
        "sono",
        "gli",
        "da",
        "em",
        "um",
        "uma",
        "os",
        "não",
        "com",
        "het",
        "een",
        "van",
        "zijn",
        "niet",
        "yang",
        "dan",
        "dengan",
        "untuk",
        "adalah",
        "ini",
        "itu",
    ]
)
_LANG_SAMPLE = 1500
_WORDS_SAMPLE = 500


def cjk_ratio(text: str | None) -> float:
    """Share of non-whitespace characters that are CJK (Han, kana, hangul, CJK punctuation)."""
    if not text or text.isascii():
        return 0.0
    visible = len(_SPACE_RE.sub("", text))
    if not visible:
        return 0.0
    return (len(text) - len(_CJK_RE.sub("", text))) / visible


def _count(pattern: re.Pattern, text: str) -> int:
    return len(text) - len(pattern.sub("", text))


def detect_language(text: str | None) -> str:
    """``"zh"``, ``"en"`` or ``"other"``, from scripts and English function words.

    For non-ASCII text, math spans and LaTeX commands are removed before the scripts are
    weighed, so a Chinese problem full of ``$x^2$`` is still Chinese. Japanese (kana)
    and Korean (hangul) are ``other``.
    Latin-script text is English when English function words dominate those of other
    European languages; ASCII text with no function words (a formula) counts as English.
    Text with no letters at all is ``other``.
    """
    if not text:
        return "other"
    sample = text[:_LANG_SAMPLE]
    if sample.isascii():  # the common case: no script to weigh, only function words
        # str.split is a C loop; punctuation glued to a token only hides that token.
        low = sample[:_WORDS_SAMPLE].lower()
        if not _WORD_RE.search(low):
            return "other"
        words = low.split()
        prose = sample
    else:
        prose = _MATH_SPAN_RE.sub(" ", sample)
        han = _count(_HAN_RE, prose)
        if han:
            kana = _count(_KANA_RE, prose)
            if kana * 5 > han:
                return "other"
            latin = _count(_LATIN_LETTER_RE, prose)
            # Chinese words are 1-2 characters, English ones about 5 letters: weigh so.
            if han * 3 >= latin or han >= 20:
                return "zh"
        elif _count(_HANGUL_RE, prose):
            return "other"
        other = _count(_OTHER_SCRIPT_RE, prose)
        if other and other * 2 > _count(_LATIN_LETTER_RE, prose):
            return "other"
        words = _WORD_RE.findall(prose.lower(), 0, _WORDS_SAMPLE)
        if not words:
            # A bare formula, or a code snippet: fall back to the raw text's words.
            words = _WORD_RE.findall(sample.lower(), 0, _WORDS_SAMPLE)
            if not words:
                return "other"
    en = sum(map(_EN_STOPWORDS.__contains__, words))
    other = sum(map(_OTHER_STOPWORDS.__contains__, words))
    if en and en >= other:
        return "en"
    if other:
        return "other"
    # No function words at all (a formula, a title, identifiers): English if ASCII.
    return "en" if prose.isascii() else "other"


# --- unusual characters and mojibake -----------------------------------------------

# Characters that are *usual* in problems: printable ASCII and whitespace, Latin
# (accents, IPA), Greek, Cyrillic, Armenian, Hebrew, Arabic, Indic, Thai, Georgian,
# general punctuation, super/subscripts, currency, letterlike, number forms, arrows,
# mathematical operators, technical symbols, enclosed alphanumerics (①), box drawing,
# geometric shapes, misc symbols (☆ ♠), the math blocks, CJK, full-width forms, and
# the mathematical alphanumeric symbols (𝔽, 𝒜). Everything else (C0/C1 controls,
# private use, U+FFFD, emoji, format characters such as U+202E) is unusual.
_USUAL_CLASS = (
    "\t\n\r\x20-\x7e\u00a0-\u036f\u0370-\u03ff\u0400-\u052f\u0530-\u058f\u0590-\u06ff"
    "\u0900-\u0dff\u0e00-\u0e7f\u10a0-\u10ff\u1100-\u11ff\u1e00-\u1fff\u2000-\u200a"
    "\u2010-\u2027\u2030-\u205e\u2070-\u209f\u20a0-\u20cf\u20d0-\u20ff\u2100-\u23ff"
    "\u2460-\u27ff\u2900-\u2bff" + _CJK_CLASS + "\ufe50-\ufe6f\U0001d400-\U0001d7ff"
)
_UNUSUAL_RE = re.compile(f"[^{_USUAL_CLASS}]")
_ASCII_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# Classic mojibake: UTF-8 read as Latin-1/CP-1252 ("Ã©", "â€™", "Â°"), the UTF-8 bytes
# of U+FFFD read as Latin-1 ("ï¿½"), the GBK rendering of U+FFFD pairs ("锟斤拷"), UTF-8
# punctuation read as GBK ("鈥"), C1 control characters, and U+FFFD itself.
_MOJIBAKE_RE = re.compile(
    "\ufffd|ï¿½|锟斤拷|鈥[檚渭滄攣]|[\u0080-\u009f]"
    "|Ã[\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]"
    "|â€[\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]"
    "|Â[\u00a0-\u00bf]"
)


def unusual_char_ratio(text: str | None) -> float:
    """Share of characters outside the common scripts, punctuation and math symbols.

    LaTeX (ASCII) and math Unicode (≤ ∑ π ℝ 𝔽 ①) are usual; so are CJK and the common
    alphabets. Control characters, private-use code points, U+FFFD and emoji are not.
    """
    if not text:
        return 0.0
    if text.isascii():
        return _count(_ASCII_CONTROL_RE, text) / len(text)
    return _count(_UNUSUAL_RE, text) / len(text)


def find_unusual_chars(text: str, limit: int = 10) -> list[str]:
    """The first distinct unusual characters, as ``U+XXXX`` codes (ledger evidence)."""
    found: list[str] = []
    for m in (_ASCII_CONTROL_RE if text.isascii() else _UNUSUAL_RE).finditer(text):
        code = f"U+{ord(m.group()):04X}"
        if code not in found:
            found.append(code)
            if len(found) >= limit:
                break
    return found


def find_mojibake(text: str | None) -> str | None:
    """The first mojibake sequence with a little context, or None."""
    if not text or text.isascii():
        return None
    m = _MOJIBAKE_RE.search(text)
    if m is None:
        return None
    return text[max(0, m.start() - 15) : m.end() + 15]


def looks_mojibake(text: str | None) -> bool:
    """True when the text shows signs of a wrong decoding (``Ã©``, ``â€™``, U+FFFD)."""
    return find_mojibake(text) is not None


# --- URLs, tables, images --------------------------------------------------------------

_URL_RE = re.compile(
    r"(?<![\w@/.\"'`])(?:https?://|ftp://|www\.)[^\s<>()\[\]{}\"'`]+"
    r"|(?<![\w@/.\"'`-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|org|net|edu|gov|io|ai|cn)/[^\s<>()\"'`]*",
    re.IGNORECASE,
)
_TLD_SLASH = (".com/", ".org/", ".net/", ".edu/", ".gov/", ".io/", ".ai/", ".cn/")
# A URL of a picture: an image reference (reported by find_image_ref), not a link to data.
_IMAGE_URL_RE = re.compile(r"\.(?:png|jpe?g|gif|svg|webp|bmp)(?:[?#]\S*)?$", re.IGNORECASE)

# Data of the problem, not prose: fenced and inline code, one-line string literals
# ("..." always; '...' only between non-word characters, so "Bob's" is no quote), and
# lines of examples or tests (``assert …``, ``>>> …``, ``Input: …``/``Output: …``).
_QUOTED_DATA_RE = re.compile(
    r"```.*?(?:```|$)|`[^`\n]*`|\"[^\"\n]*\"|(?<![\w'])'[^'\n]*'(?![\w'])"
    r"|(?im:^[ \t]*(?:assert\b|>>>|(?:example |sample )?(?:input|output)\s*\d*\s*:).*$)",
    re.DOTALL,
)
_QUOTE_CHARS = ("`", '"', "'", "assert", ">>>", "nput", "utput")


def mask_quoted_data(text: str) -> str:
    """``text`` with code, string literals and example/test lines blanked (same length).

    A URL or a figure marker there is data the problem works on (a URL validator's test
    cases, a sample input), not a reference the problem depends on. Positions are kept,
    so evidence can be cut from the original text.
    """
    if not any(c in text for c in _QUOTE_CHARS):
        return text
    return _QUOTED_DATA_RE.sub(lambda m: " " * len(m.group()), text)


def find_url(text: str | None, allow: tuple[str, ...] = (), markdown_links: bool = False) -> str | None:
    """The first URL that is a *reference*: not data, not a picture.

    URLs inside code, string literals and example/test lines (:func:`mask_quoted_data`)
    are data of the problem ("check that "https://…" is a valid URL"), and so is a URL
    directly after a quote or backtick; e-mail addresses do not count. A URL of an image
    (``….png``, ``[img]…[/img]``) is left to :func:`find_image_ref`: the problem misses
    a picture, not a web page. URLs containing one of the ``allow`` strings (e.g.
    ``wikipedia.org``: Codeforces links the definition of XOR) are skipped. With
    ``markdown_links``, the target of a markdown link ``[text](url)`` is skipped too: its
    text says what it links to (Codeforces statements open with a
    ``[song](https://soundcloud…)`` link that adds nothing).
    """
    if not text:
        return None
    if (
        "://" not in text
        and "www." not in text
        and ("/" not in text or not any(t in text for t in _TLD_SLASH))
    ):
        return None
    for m in _URL_RE.finditer(mask_quoted_data(text)):
        url = m.group().rstrip(".,;:")
        low = url.lower()
        if any(a in low for a in allow):
            continue
        if m.start() >= 2 and text[m.start() - 2 : m.start()] == "](":
            opening = text.rfind("[", 0, m.start() - 2)
            if markdown_links or (opening > 0 and text[opening - 1] == "!"):
                continue  # [text](url): the link text carries the meaning; ![](url) is a picture
        if _IMAGE_URL_RE.search(url) or text[max(0, m.start() - 5) : m.start()].lower() == "[img]":
            continue  # a picture: find_image_ref reports it
        return url
    return None


def has_url(text: str | None, allow: tuple[str, ...] = (), markdown_links: bool = False) -> bool:
    return find_url(text, allow, markdown_links) is not None


_MD_TABLE_RE = re.compile(
    r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)+\|?[ \t]*$", re.MULTILINE
)
_HTML_TABLE_RE = re.compile(r"<table\b|<tr\b|<td\b", re.IGNORECASE)
_ASCII_TABLE_RE = re.compile(r"^[ \t]*\+(?:-{2,}\+){2,}[ \t]*$", re.MULTILINE)
_LATEX_TABLE_RE = re.compile(r"\\begin\{tabular\}")
# A tabular's column spec and body. ``array`` is not a table (piecewise functions,
# matrices, binomials, column arithmetic), and neither is a tabular with one column (a
# list) or mostly empty cells (Pascal's triangle laid out in a grid).
_TABULAR_RE = re.compile(
    r"\\begin\{tabular\}(?:\[\w\]|\s)*\{((?:[^{}]|\{[^{}]*\})*)\}(.*?)\\end\{tabular\}", re.DOTALL
)
_TABULAR_COLUMN_RE = re.compile(r"[lcrpmbX](?:\{[^{}]*\})?")
_TABULAR_ROW_RE = re.compile(
    r"\\\\|\\hline|\\cline\{[^{}]*\}|\\noalign\{[^{}]*\}|\\multicolumn\{[^{}]*\}\{[^{}]*\}"
)


def _is_data_tabular(spec: str, body: str) -> bool:
    """A LaTeX tabular laid out as a table: two or more columns, two or more rows, and at
    most a third of its cells empty."""
    if len(_TABULAR_COLUMN_RE.findall(re.sub(r"@\{[^{}]*\}", "", spec))) < 2:
        return False
    rows = [row for row in _TABULAR_ROW_RE.sub("\n", body).split("\n") if "&" in row]
    cells = [cell.strip() for row in rows for cell in row.split("&")]
    return len(rows) >= 2 and sum(not c for c in cells) * 3 <= len(cells)


def find_table(text: str | None, latex: bool = False) -> str | None:
    """The kind of table found: ``markdown``, ``html``, ``ascii``, ``latex`` or None.

    A LaTeX ``tabular`` only counts when ``latex`` is True (MATH states data tables that
    way, and the text fully carries them), and only when laid out as a table
    (:func:`_is_data_tabular`); ``array`` never counts.
    """
    if not text:
        return None
    if "|" in text or "+" in text or "<" in text:
        if "---" in text and _MD_TABLE_RE.search(text):
            return "markdown"
        if "<" in text and _HTML_TABLE_RE.search(text):
            return "html"
        if "+--" in text and _ASCII_TABLE_RE.search(text):
            return "ascii"
    if latex and "\\begin{tabular}" in text:
        if any(_is_data_tabular(m.group(1), m.group(2)) for m in _TABULAR_RE.finditer(text)):
            return "latex"
    return None


def has_table(text: str | None, latex: bool = False) -> bool:
    return find_table(text, latex) is not None


# A picture that was in the source and is missing here: an image placeholder or an image
# URL. Matched on the lower-cased text, also by the vectorized screen (RE2 syntax).
_IMAGE_MARKER_RE = re.compile(
    r"!\[[^\]]*\]\([^)]*\)|<img\b|<image>|\\includegraphics|\[(?:figure|image|img|diagram)\]"
    r"|(?:https?://|www\.)[^\s<>()\[\]{}\"'`]+\.(?:png|jpe?g|gif|svg|webp|bmp)\b"
)
# Phrases that *mention* a figure. On real data most such problems are complete without
# it ("…, as shown. Find m+n." — AIME, LeetCode, AtCoder samples), so they only count
# with ``phrases=True``. "is/are shown below" alone is not a phrase (the rows of a
# triangle or a list usually follow in the text).
_IMAGE_PHRASE_RE = re.compile(
    r"\bsee (?:also )?(?:the )?(?:figure|fig\.|diagram|picture|image|illustration)"
    r"|\bas (?:shown|illustrated|depicted|pictured)\b|\bpictured\b"
    r"|\b(?:shown|illustrated|depicted|drawn) (?:in|on|below|above) (?:the )?(?:figure|diagram|picture|image|illustration)"
    r"|\b(?:in|on) the (?:figure|diagram|picture|illustration)\b"
    r"|\b(?:following|accompanying|attached|adjacent) (?:figure|diagram|picture|image|illustration)"
    r"|\b(?:the|this) (?:figure|diagram|picture|image|illustration) (?:below|above|shows|on the (?:left|right))"
    r"|\b(?:figure|fig\.) \d"
    r"|如图|见图|下图|上图|图中|图示"
)
_IMAGE_MARKER_KEYS = ("![", "<im", "\\includegraphics", "[figure]", "[image]", "[img]", "[diagram]", ".png",
                      ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".bmp")
_IMAGE_PHRASE_KEYS = (
    "shown", "figure", "fig.", "diagram", "picture", "image", "illustrat", "depicted", "图"
)
_ASY_RE = re.compile(r"\[asy\]", re.IGNORECASE)


def find_image_ref(text: str | None, phrases: bool = True) -> str | None:
    """The image placeholder, image URL or (with ``phrases``) figure phrase, or None.

    Placeholders (``![](…)``, ``<image>``, ``[img]``, ``\\includegraphics``) and image URLs
    mean a picture was part of the problem and is missing. A phrase ("as shown", "in the
    figure below") only mentions one; a problem that draws its figure in Asymptote
    (``[asy]…[/asy]``, as MATH does) carries it, so its phrases do not count (use
    :func:`has_asy_figure` to filter those). Code, string literals and example lines
    are not looked at (:func:`mask_quoted_data`).
    """
    if not text:
        return None
    low = text.lower()
    keys = _IMAGE_MARKER_KEYS + _IMAGE_PHRASE_KEYS if phrases else _IMAGE_MARKER_KEYS
    if not any(key in low for key in keys):
        return None
    low = mask_quoted_data(low)
    m = _IMAGE_MARKER_RE.search(low)
    if m is None and phrases and "[asy]" not in low:
        m = _IMAGE_PHRASE_RE.search(low)
    return None if m is None else text[m.start() : m.end()]


def has_image_ref(text: str | None, phrases: bool = True) -> bool:
    return find_image_ref(text, phrases) is not None


def has_asy_figure(text: str | None) -> bool:
    """True when the problem draws a figure in Asymptote code (``[asy]``)."""
    return bool(text) and _ASY_RE.search(text) is not None


# --- truncation ------------------------------------------------------------------------

_DANGLING_WORDS = frozenset(
    [
        "the",
        "of",
        "a",
        "an",
        "and",
        "or",
        "to",
        "is",
        "are",
        "was",
        "were",
        "be",
        "with",
        "by",
        "for",
        "in",
        "that",
        "if",
        "then",
        "from",
        "as",
        "than",
        "at",
        "on",
        "its",
        "their",
        "which",
        "where",
        "whose",
        "into",
        "let",
    ]
)
_DANGLING_CHARS = frozenset(",([{=+-*/^\\的和与是在为，、")
_LAST_WORD_RE = re.compile(r"[A-Za-z]+$")
_MATH_AFTER_RE = re.compile(r"\\[A-Za-z]+|[{}]")


# The last "Sample Input"/"Example" header: what follows is example data, whose last
# line ("a", ")))(((") says nothing about whether the statement is complete.
_EXAMPLES_RE = re.compile(r"^[ \t]*(?:sample input|example)\b", re.IGNORECASE | re.MULTILINE)


def truncation_reason(text: str | None) -> str | None:
    """Why the text looks cut off, or None.

    Signals, chosen to be near-silent on complete benchmark problems (many of which end
    without punctuation, e.g. a list or a formula): the text ends on a dangling function
    word, comma, operator or opening bracket; a ``\\begin{…}`` is never closed; braces
    are unbalanced on the open side; or the last ``$`` opens a math span that never
    closes and contains LaTeX (so "$5 per apple" money is not a signal).

    A signal must hold on the text and again on its prose: the text with code, string
    literals and test lines blanked (:func:`mask_quoted_data`) and cut before a trailing
    examples section. So ``assert f("{()}[{]")`` or a sample output ending in ``(`` is
    not a truncation, and the verdict is never more than the plain-text signals (which
    the vectorized clean screen relies on).
    """
    why = _truncation_signal(text)
    if why is None:
        return None
    prose = mask_quoted_data(text)
    examples = None
    for examples in _EXAMPLES_RE.finditer(prose):
        pass
    if examples is not None and examples.start() > 0:
        prose = prose[: examples.start()]
    return why if _truncation_signal(prose) is not None else None


def _truncation_signal(text: str | None) -> str | None:
    if not text:
        return None
    stripped = text.rstrip()
    if not stripped:
        return None
    if stripped[-1] in _DANGLING_CHARS:
        return "ends_mid_sentence"
    last = _LAST_WORD_RE.search(stripped[-12:])
    if last is not None and last.group().lower() in _DANGLING_WORDS:
        return "ends_mid_sentence"
    if "\\begin{" in text and text.count("\\begin{") > text.count("\\end{"):
        return "unclosed_environment"
    if "{" in text:
        opened = text.count("{") - text.count("\\{")
        closed = text.count("}") - text.count("\\}")
        if opened - closed >= 1 and stripped[-1] not in "}":
            return "unbalanced_braces"
    if "$" in text and (text.count("$") - text.count("\\$")) % 2:
        after = text[text.rfind("$") + 1 :]
        if after.strip() and _MATH_AFTER_RE.search(after):
            return "unclosed_math"
    return None


def looks_truncated(text: str | None) -> bool:
    return truncation_reason(text) is not None


# --- answerability ---------------------------------------------------------------------

_PROOF_KEYS = ("prove", "show", "demonstrat", "verify", "establish", "justify", "证")
_PROOF_RE = re.compile(
    r"\b(?:prove|show|demonstrate|verify|establish|justify)\b(?: that| the| rigorously|:)?|证明|求证"
)
_TARGET_RE = re.compile(
    r"\b(?:find|compute|calculate|determine|evaluate|what|how many|how much|which|simplify|"
    r"solve|express|give|list|write|enter|estimate|count|sum of|value of|number of|"
    r"maximum|minimum|largest|smallest|greatest|least)\b|\?|求(?!证)|计算|多少|是否|几"
)


def is_proof_only(text: str | None) -> bool:
    """True for a problem that asks only for a proof, with nothing to compute or find.

    "Prove that … and find the minimum" has a checkable target, so it is not proof-only;
    "Determine whether …" counts as a target too (a yes/no answer can be checked).
    """
    if not text:
        return False
    low = text.lower()
    for key in _PROOF_KEYS:
        if key in low:
            break
    else:
        return False
    if _PROOF_RE.search(low) is None:
        return False
    return _TARGET_RE.search(_PROOF_RE.sub(" ", low)) is None


# Sub-question labels: "(a)", "(1)", "(i)", "（1）", "①" anywhere (after a space or
# punctuation, not "f(1)"), and "a)", "1.", "Part 1" at the start of a line. Two
# patterns with a literal first character, so the regex engine skips ahead quickly.
_PAREN_LABEL_RE = re.compile(r"\(([a-h1-9]|i{1,3}|iv|vi{0,3})\)|（([1-9一二三四五六])）|([①-⑨])")
_LINE_LABEL_RE = re.compile(r"\n[ \t]*(?:[Pp]art[ \t]*)?(?:\(([a-h1-9])\)|([a-h1-9])[.)])(?=[ \t])")
_ORDER = {c: i for i, c in enumerate("abcdefgh")}
_ORDER.update({str(i): i - 1 for i in range(1, 10)})
_ORDER.update({r: i for i, r in enumerate(("i", "ii", "iii", "iv", "v", "vi", "vii", "viii"))})
_ORDER.update({c: i for i, c in enumerate("一二三四五六")})
_ORDER.update({chr(0x2460 + i): i for i in range(9)})
# What makes a labelled part a question (on the lower-cased part); relative "which" or
# "what he owes" in a labelled *condition* must not count.
_ASKING_RE = re.compile(
    r"\b(?:find|compute|calculate|determine|evaluate|prove|show that|simplify|solve|express|"
    r"estimate|explain why|is there|are there|what (?:is|are|was|were|will|would|must|should|can|"
    r"do|does)|how (?:many|much|long|far|large|big|small|often)|which (?:is|are|of|one))\b"
    r"|\?|求|证明|计算|多少|判断|是否"
)
_PART_END_RE = re.compile(r"\n")
# A preamble that folds the parts into one answer ("add up the numbers corresponding to
# the questions for which the answer is yes"): a single checkable answer after all.
_ONE_ANSWER_RE = re.compile(
    r"\b(?:numbers|letters|labels) corresponding to the (?:questions|statements|parts)\b"
)


def count_subquestions(text: str | None) -> int:
    """How many labelled parts of the problem each ask something (0 or 1: a single question).

    A run of labels in order — (a) (b) (c), (1) (2), (i) (ii), ①②, "Part 1" — splits
    the text into parts. A part counts only if it asks something (a question mark, or
    find/compute/prove/求…) outside quotes, so labelled *conditions* ("such that (i)
    f(1)=1, (ii) …"), quoted questions a story's characters ask ('1. "Are you a liar?"')
    and answer choices in upper case do not make a problem multi-question; nor do parts
    whose answers the text folds into one ("add up the numbers corresponding to the
    questions…").
    """
    if not text or len(text) < 20:
        return 0
    labels = []
    for m in _PAREN_LABEL_RE.finditer(text):
        start = m.start()
        if start and (text[start - 1].isalnum() or text[start - 1] in "_^\\"):
            continue  # f(1), a_(i): an argument, not a label
        labels.append((start, m.end(), m.group(1) or m.group(2) or m.group(3)))
    if "\n" in text:
        for m in _LINE_LABEL_RE.finditer("\n" + text):
            labels.append((m.start(), m.end() - 1, m.group(1) or m.group(2)))
        labels.sort()
    if len(labels) < 2 or _ONE_ANSWER_RE.search(text[: labels[0][0]].lower()):
        return 0
    best = 0
    run: list[tuple[int, int]] = []  # (start, end) of the labels of the current run
    expected = 0
    for start, end, label in labels:
        order = _ORDER.get(label)
        if order == 0:
            best = max(best, _asking_parts(text, run))
            run, expected = [(start, end)], 1
        elif order == expected and run:
            run.append((start, end))
            expected += 1
    return max(best, _asking_parts(text, run))


def _asking_parts(text: str, run: list[tuple[int, int]]) -> int:
    if len(run) < 2:
        return 0
    asking = 0
    for k, (_, end) in enumerate(run):
        if k + 1 < len(run):
            stop = run[k + 1][0]
        else:  # the last part ends with its line: a common question may follow
            m = _PART_END_RE.search(text, end)
            stop = m.start() + 1 if m else len(text)
        if _ASKING_RE.search(mask_quoted_data(text[end:stop].lower())):
            asking += 1
    return asking
