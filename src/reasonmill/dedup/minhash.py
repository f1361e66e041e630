"""Near-duplicate clusters with MinHash LSH over word n-grams (SPEC §1 item 3).

Pipeline, chunk by chunk so a million texts fit in well under 2 GB:

1. *Shingles, vectorised.* A chunk of texts becomes one UTF-8 byte buffer; numpy finds
   the tokens (default ``tokens="math"``: letter runs, digit runs and operators, layout
   ignored; or ``whitespace``: runs of non-blank characters), lower-cases ASCII and
   hashes each token with a polynomial prefix hash. n-gram hashes combine consecutive
   token hashes of the same text. No Python object per shingle.
2. *Signatures* with rensa's R-MinHash from the flat hash buffer (uint32, ``num_perm``).
3. *Bands.* Each signature is cut into ``bands × rows`` and each band is hashed to a
   uint64. With verification on (default), bands and rows are the cheapest banding that
   still proposes ≥ ``lsh_recall`` (95%) of the pairs *at* the threshold; the classic
   choice (balance the false positive and
   false negative areas) centres the S-curve on the threshold and so misses about half
   of the pairs near it, which cost 1–2 points of recall here. The global index keeps only these arrays (and, for
   verification, the signatures): never texts.
4. *Candidates → clusters.* For each band, rows sharing a band hash are linked to the
   first row of their bucket; links are optionally verified by the Jaccard estimated
   from the signatures, then clustered with a vectorised union-find.

Defaults, and why (measured on 657 hand-labelled pairs of real problems, issue 12,
bench/bench_dedup_decisions.py; the older synthetic word-edit corpus rewards merging
template siblings, so it no longer decides the defaults):

* ``tokens="math"``: letter runs, digit runs and operators; layout (blanks, braces,
  brackets, ``$``, backslashes, quotes, markdown, sentence punctuation) makes no token,
  so re-typeset copies of a problem have the same tokens. 2-grams, threshold 0.5.
* ``numbers="strict"``: two texts are linked only when their multisets of numbers,
  operators, opening parentheses, LaTeX command names and a few words that flip the
  question (odd/even, smallest/largest, sum/product/difference, ...) and capitalised words
  of the prose ("RADII" vs "CEASE") are
  equal. Different problems that share a template share most words, but not these:
  "f(x)f(y)" vs "f(x)+f(y)", "find f(6)" vs "find f(5)", "\\heartsuit" vs "\\spadesuit".
  With the old defaults (whitespace tokens, digits masked, 3-grams at 0.55) precision on
  the labelled pairs was 0.50 at recall 0.70; with these and the answer check of the stage
  it is 0.993 at recall 0.975.
* Clusters are built by the stage (``stages.near_dedup``): links with conflicting
  answers/tests are removed and components are split into stars, so a cluster never
  grows by chaining; ``clusters()`` here stays plain connected components.

Numbers modes: ``mask`` maps every digit to "0" (with ``tokens="words"``, every digit run
to one token), so problems that differ only in their numbers cluster; ``keep`` hashes
digits as written; ``strict`` is described above (with other tokenisations: numbers only).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .prompt_frames import strip_prompt_frames
from .unionfind import connected_components

NumbersMode = Literal["mask", "keep", "strict"]
TokensMode = Literal["whitespace", "words", "alnum", "math"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_P = np.uint64(0x100000001B3)  # odd multiplier for the polynomial word hash
_K = np.uint64(0x9E3779B97F4A7C15)  # n-gram combiner
_DIGIT_TOKEN = np.uint64(0xD1617D1617D16170)  # every number in "mask" mode
_PAREN_TOKEN = np.uint64(0x28282828A5A5A5A5)  # an opening parenthesis in the strict signature


class MinHashSettings(BaseModel):
    """Knobs of the MinHash LSH dedup (also the YAML settings of ``dedup.minhash``)."""

    model_config = ConfigDict(extra="forbid")

    ngram: int = Field(2, ge=1, description="token n-gram (shingle) size")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations")
    threshold: float = Field(
        0.5, gt=0, lt=1, description="Jaccard similarity of the n-gram sets (see the module docstring)"
    )
    bands: int | None = Field(None, description="LSH bands; derived from threshold when unset")
    rows: int | None = Field(None, description="rows per band; derived from threshold when unset")
    verify: bool = Field(True, description="check candidate pairs by the Jaccard estimated from signatures")
    lsh_recall: float = Field(
        0.95, gt=0, lt=1, description="with verify: derive bands so pairs at the threshold become candidates this often"
    )
    numbers: NumbersMode = "strict"
    tokens: TokensMode = Field(
        "math",
        description="math: letter/digit runs + operators, layout ignored; whitespace: runs of non-blank "
        "characters; words: letter/digit runs + symbols",
    )
    strip_punct: bool = Field(True, description="whitespace tokens: drop trailing , . ; : ! ? (\"x,\" = \"x\")")
    seed: int = 1
    chunk_size: int = Field(20_000, ge=1)
    workers: int = Field(1, ge=1, description="processes computing signatures")


def candidate_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """P(two texts with this Jaccard share at least one band) = 1 - (1 - s^r)^b."""
    return 1 - (1 - np.asarray(similarity, dtype=np.float64) ** rows) ** bands


@functools.lru_cache(maxsize=64)
def optimal_bands_rows(
    threshold: float, num_perm: int, fp_weight: float = 0.5, min_recall: float | None = None
) -> tuple[int, int]:
    """(bands, rows) with bands·rows ≤ num_perm.

    Without ``min_recall`` (LSH is the whole decision): minimise the weighted areas of
    false positives (the candidate probability over [0, t]) and false negatives (1 - it
    over [t, 1]), as datasketch does. That puts the S-curve's midpoint near ``t``, so
    about half of the pairs *at* the threshold are missed.

    With ``min_recall`` (candidates are verified afterwards): LSH only proposes, so the
    right banding is the cheapest one (smallest false-positive area, i.e. fewest
    candidates to verify) that still proposes at least ``min_recall`` of the pairs whose
    Jaccard equals the threshold; pairs above it are found even more often.
    """
    lo = np.linspace(0.0, threshold, 256)
    hi = np.linspace(threshold, 1.0, 256)
    if min_recall is not None:
        options = [(num_perm // r, r) for r in range(1, num_perm + 1)]
        ok = [(b, r) for b, r in options if candidate_probability(threshold, b, r) >= min_recall]
        if not ok:  # even one row per band is not enough: take the most sensitive banding
            return max(options, key=lambda br: candidate_probability(threshold, *br))
        return min(ok, key=lambda br: float(np.trapezoid(candidate_probability(lo, *br), lo)))
    best, best_cost = (1, num_perm), math.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(candidate_probability(lo, b, r), lo)
            fn = np.trapezoid(1 - candidate_probability(hi, b, r), hi)
            cost = fp_weight * fp + (1 - fp_weight) * fn
            if cost < best_cost:
                best, best_cost = (b, r), cost
    return best


# byte classes for ``tokens="words"``: 0 = separator, 1 = letter (ASCII letters, any
# non-ASCII byte), 2 = digit, 3 = ASCII symbol (each its own token)
_CLASS = np.zeros(256, np.uint8)
_CLASS[[c for c in range(33, 127) if not chr(c).isalnum()]] = 3
_CLASS[ord("a") : ord("z") + 1] = 1
_CLASS[ord("A") : ord("Z") + 1] = 1
_CLASS[0x80:] = 1
_CLASS[ord("0") : ord("9") + 1] = 2
# ``tokens="whitespace"``: every run of non-blank bytes is one token ("$x^2$," stays whole)
_WS_CLASS = np.zeros(256, np.uint8)
_WS_CLASS[33:] = 1
_WS_CLASS[127] = 0
# ``tokens="alnum"``: letter runs and digit runs; symbols are separators (like ``\\w+``)
_ALNUM_CLASS = _CLASS.copy()
_ALNUM_CLASS[_ALNUM_CLASS == 3] = 0
# ``tokens="math"``: letter runs, digit runs and operators; layout is no token: blanks,
# brackets, ``$``, backslashes, quotes, markdown ``*``/``#`` and sentence punctuation
# ("$x^{2}$," = "\\(x^2\\)"), so reformatting changes no token; operators stay tokens
_MATH_CLASS = _CLASS.copy()
_MATH_CLASS[[ord(c) for c in "{}()[]$\\,.;:!?\"'`~*#"]] = 0
# sentence punctuation that ``strip_punct`` removes at the end of a whitespace token
_TRAIL = np.zeros(256, bool)
_TRAIL[[ord(c) for c in ",.;:!?"]] = True
_LOWER = np.arange(256, dtype=np.uint64)
_LOWER[ord("A") : ord("Z") + 1] += 32
_LOWER_MASKED = _LOWER.copy()
_LOWER_MASKED[ord("0") : ord("9") + 1] = ord("0")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads polynomial hashes over all 64 bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass
class ShingleChunk:
    """Flat n-gram hashes of a chunk of texts (CSR layout) and per-text side info."""

    hashes: np.ndarray  # uint64 [S]
    offsets: np.ndarray  # uint64 [n + 1]
    empty: np.ndarray  # bool [n]: no word at all
    numbers: np.ndarray  # uint64 [n]: order-free hash of the multiset of numbers (0 = none)


_POWERS: list[np.ndarray] = []


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i (mod 2^64) for i < n, computed once per process and grown as needed
    (chunks are similar in size, so this saves two cumulative products per chunk)."""
    if not _POWERS or len(_POWERS[0]) < n:
        size = max(n, int(len(_POWERS[0]) * 1.25) if _POWERS else n)
        with np.errstate(over="ignore"):
            powers = np.full(size, _P, dtype=np.uint64)
            powers[:1] = 1
            np.cumprod(powers, out=powers)
            inv = np.full(size, pow(int(_P), -1, 1 << 64), dtype=np.uint64)
            inv[:1] = 1
            np.cumprod(inv, out=inv)
        _POWERS[:] = [powers, inv]
    return _POWERS[0][:n], _POWERS[1][:n]


def _token_hashes(
    buf: np.ndarray, doc_start: np.ndarray, tokens: TokensMode, lower: np.ndarray, strip_punct: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(uint64 hash, text index, is-digit-run, start byte, end byte) of every token of the
    byte buffer."""
    table = {"whitespace": _WS_CLASS, "words": _CLASS, "alnum": _ALNUM_CLASS, "math": _MATH_CLASS}[tokens]
    cls = table[buf]
    if strip_punct and tokens == "whitespace":
        # "x," / "x." / "x?!" -> "x": a dropped comma or full stop changes no token
        trail = _TRAIL[buf]
        for _ in range(3):
            nxt0 = np.empty_like(cls)
            nxt0[-1:] = 0
            nxt0[:-1] = cls[1:]
            cut = trail & (nxt0 == 0) & (cls != 0)
            if not cut.any():
                break
            cls[cut] = 0
    prev = np.empty_like(cls)
    prev[:1] = 0
    prev[1:] = cls[:-1]
    nxt = np.empty_like(cls)
    nxt[-1:] = 0
    nxt[:-1] = cls[1:]
    single = cls == 3
    starts = np.nonzero((cls != 0) & ((cls != prev) | single))[0]
    ends = np.nonzero((cls != 0) & ((cls != nxt) | single))[0] + 1
    # polynomial prefix hash: H[i] = sum_{j<i} c_j P^j, token = (H[e]-H[s]) * P^-s
    powers, inv = _powers(len(buf))
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(buf) + 1, dtype=np.uint64)
        np.cumsum(lower[buf] * powers, out=prefix[1:])
        words = _mix((prefix[ends] - prefix[starts]) * inv[starts] + (ends - starts).astype(np.uint64))
    word_doc = np.searchsorted(doc_start, starts, side="right") - 1
    is_num = (_CLASS[buf[starts]] == 2) if tokens != "whitespace" else np.zeros(len(starts), bool)
    return words, word_doc, is_num, starts, ends


_FOLD = str.maketrans(
    {"\u2212": "-", "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u00b7": "*", "\u3002": ".",
     "\u3001": ","}
)


def fold_unicode(text: str) -> str:
    """NFKC plus a few look-alikes, for non-ASCII texts only (ASCII ones are returned as
    they are, which keeps this cheap): full-width punctuation, NBSP, Unicode minus and
    quotes are how re-typed and machine-translated copies of a problem differ."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text).translate(_FOLD)


# "24,\\!000" / "1,000" -> "24000" / "1000": how copies of a problem write one number; and
# forum markup ("[i]Norwegian[/i]") that copies scraped from AoPS carry
_LAYOUT_TEXT = re.compile(r"(?<=\d),(?:\\!)?(?=\d{3}(?!\d))|\[/?[a-z]\]")
# ``numbers="strict"`` with math tokens: besides the numbers, these operators and the LaTeX
# command names must agree ("f(x)f(y)" vs "f(x)+f(y)", "\\heartsuit" vs "\\spadesuit",
# "\\rho" vs "z"); layout commands do not count and spellings of one symbol are one name
_SIGNATURE_OPERATORS = np.zeros(256, bool)
_SIGNATURE_OPERATORS[[ord(c) for c in "+=<>^/|"]] = True
_LAYOUT_COMMANDS = (
    "boxed left right big bigg text mathrm textbf mathbf textit emph displaystyle limits quad qquad mbox "
    "operatorname begin end hline newline label tag nonumber mathit rm bf it textrm cal mathcal overline"
).split()
_COMMAND_ALIASES = {
    "dfrac": "frac", "tfrac": "frac", "over": "frac", "dbinom": "binom", "tbinom": "binom", "choose": "binom",
    "le": "leq", "leqslant": "leq", "ge": "geq", "geqslant": "geq", "ne": "neq",
    "cdots": "ldots", "dots": "ldots", "dotsb": "ldots", "dotsc": "ldots", "dotsm": "ldots",
    "to": "rightarrow", "lvert": "vert", "rvert": "vert",
    "pmod": "bmod", "mod": "bmod",
}


# words that flip what is asked while sharing every other word ("odd"/"even", "smallest"/
# "largest", "sum"/"product"): their multiset is part of the strict signature; synonyms
# share a class ("greatest" = "largest" = "maximum"). Not "first"/"last", "positive",
# "not", "lowest": copies add or drop them ("the first 50 integers", "lowest terms")
_ASKED_WORD_CLASSES = {
    "max": "largest greatest maximum maximal biggest most",
    "min": "smallest least minimum minimal fewest",
    "odd": "odd", "even": "even",
    "increasing": "increasing", "decreasing": "decreasing",
    "sum": "sum", "product": "product", "difference": "difference", "quotient": "quotient",
}


def _hashes(names: list[str]) -> np.ndarray:
    """Token hashes of single words, as ``tokens="math"`` computes them."""
    encoded = [n.encode() for n in names]
    buf = np.frombuffer(b"\x00".join(encoded), dtype=np.uint8)
    doc_start = np.zeros(len(names), np.int64)
    np.cumsum(np.array([len(e) + 1 for e in encoded[:-1]], np.int64), out=doc_start[1:])
    return _token_hashes(buf, doc_start, "math", _LOWER)[0]


@functools.lru_cache(maxsize=1)
def _asked_word_table() -> tuple[np.ndarray, np.ndarray]:
    """(sorted word hashes, their class hashes)."""
    words = [(w, cls) for cls, ws in _ASKED_WORD_CLASSES.items() for w in ws.split()]
    hashes = _hashes([w for w, _ in words])
    classes = _hashes([f"class{cls}" for _, cls in words]) ^ np.uint64(0xA5C1A55)
    order = np.argsort(hashes)
    return hashes[order], classes[order]


@functools.lru_cache(maxsize=1)
def _command_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted hashes of layout commands, sorted alias hashes, their canonical hashes)."""
    layout = np.sort(_hashes(_LAYOUT_COMMANDS))
    alias, canonical = _hashes(list(_COMMAND_ALIASES)), _hashes(list(_COMMAND_ALIASES.values()))
    order = np.argsort(alias)
    return layout, alias[order], canonical[order]


def _inside_math(buf: np.ndarray, doc_start: np.ndarray, starts: np.ndarray, word_doc: np.ndarray) -> np.ndarray:
    """Mask of the tokens inside ``$..$`` / ``$$..$$`` (odd ``$`` count before them in their
    text) or inside ``\\(..\\)`` / ``\\[..\\]`` (more openers than closers before them)."""
    after_backslash = np.zeros(len(buf), bool)
    after_backslash[1:] = buf[:-1] == ord("\\")
    opens = after_backslash & ((buf == ord("(")) | (buf == ord("[")))
    closes = after_backslash & ((buf == ord(")")) | (buf == ord("]")))
    dollars = np.zeros(len(buf) + 1, np.int64)
    np.cumsum(buf == ord("$"), out=dollars[1:])
    depth = np.zeros(len(buf) + 1, np.int64)
    np.cumsum(opens.astype(np.int64) - closes, out=depth[1:])
    text_start = doc_start[word_doc]
    return ((dollars[starts] - dollars[text_start]) % 2 == 1) | (depth[starts] - depth[text_start] > 0)


def _math_signature_tokens(
    buf: np.ndarray,
    doc_start: np.ndarray,
    words: np.ndarray,
    word_doc: np.ndarray,
    is_num: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(hash, text index) of the tokens whose multiset must be equal in ``strict`` mode:
    numbers, the operators ``+ = < > ^ / |``, LaTeX command names (aliases folded),
    opening parentheses that are not ``\\(`` ("f(f(f(x)))" vs "f(f(x))"), the words that
    flip what is asked (``_ASKED_WORD_CLASSES``) and capitalised words of two or more
    letters in the prose (outside ``$..$``): the word whose letters are arranged ("RADII"
    vs "CEASE"), a code word. Copies keep such words; siblings of one template change them.
    Inside math they are mostly vertex names, which a copy adds ("square $ABCD$" vs "a
    square"), so they do not count there."""
    first = buf[starts]
    after_backslash = np.zeros(len(starts), bool)
    after_backslash[starts > 0] = buf[starts[starts > 0] - 1] == ord("\\")
    command = after_backslash & (_CLASS[first] == 1)
    layout, alias, canonical = _command_tables()
    h = words.copy()
    cmd = h[command]
    pos = np.minimum(np.searchsorted(alias, cmd), len(alias) - 1)
    cmd = np.where(alias[pos] == cmd, canonical[pos], cmd)
    h[command] = cmd
    lpos = np.minimum(np.searchsorted(layout, cmd), len(layout) - 1)
    command[np.nonzero(command)[0][layout[lpos] == cmd]] = False
    words_at, classes = _asked_word_table()
    wpos = np.minimum(np.searchsorted(words_at, h), len(words_at) - 1)
    asked = (words_at[wpos] == h) & ~after_backslash & (_CLASS[first] == 1)
    h[asked] = classes[wpos[asked]]
    upper = np.zeros(len(buf) + 1, np.int64)
    np.cumsum((buf >= ord("A")) & (buf <= ord("Z")), out=upper[1:])
    in_math = _inside_math(buf, doc_start, starts, word_doc)
    capitalised = (ends - starts >= 2) & (upper[ends] - upper[starts] == ends - starts)
    capitalised &= ~after_backslash & ~in_math
    keep = is_num | command | asked | capitalised | (_SIGNATURE_OPERATORS[first] & ~after_backslash)
    paren = np.nonzero(buf == ord("("))[0]
    paren = paren[(paren == 0) | (buf[np.maximum(paren - 1, 0)] != ord("\\"))]
    paren_doc = np.searchsorted(doc_start, paren, side="right") - 1
    return (np.concatenate([h[keep], np.full(len(paren), _PAREN_TOKEN)]),
            np.concatenate([word_doc[keep], paren_doc]))


def shingle_hashes(
    texts: list[str],
    ngram: int = 3,
    numbers: NumbersMode = "mask",
    tokens: "TokensMode" = "whitespace",
    strip_punct: bool = False,
) -> ShingleChunk:
    """Word n-gram hashes of each text; see the module docstring for the tokenisation."""
    n = len(texts)
    if tokens == "math":
        texts = [_LAYOUT_TEXT.sub("", strip_prompt_frames(fold_unicode(t))) if isinstance(t, str) else "" for t in texts]
    encoded = [t.encode("utf-8", "surrogatepass") if isinstance(t, str) else b"" for t in texts]
    lens = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    buf = np.frombuffer(b"\x00".join(encoded), dtype=np.uint8)
    doc_start = np.zeros(n, dtype=np.int64)
    np.cumsum(lens[:-1] + 1, out=doc_start[1:])
    lower = _LOWER_MASKED if numbers == "mask" else _LOWER
    words, word_doc, is_num, starts, ends = _token_hashes(buf, doc_start, tokens, lower, strip_punct)
    num_hash = np.zeros(n, dtype=np.uint64)
    if numbers == "strict":
        if tokens == "math":
            nh, nd = _math_signature_tokens(buf, doc_start, words, word_doc, is_num, starts, ends)
        elif tokens != "whitespace":
            nh, nd = words[is_num], word_doc[is_num]
        else:
            h, d, isn, _, _ = _token_hashes(buf, doc_start, "words", _LOWER)
            nh, nd = h[isn], d[isn]
        np.add.at(num_hash, nd, nh)
    if numbers == "mask" and tokens != "whitespace":
        words[is_num] = _DIGIT_TOKEN
    counts = np.bincount(word_doc, minlength=n)
    # n-grams inside one text
    w = len(words)
    if w >= ngram:
        m = w - ngram + 1
        with np.errstate(over="ignore"):
            sh = words[:m].copy()
            for j in range(1, ngram):
                sh = sh * _K + words[j : j + m]
        sh = _mix(sh)
        sh_doc = word_doc[:m]
        valid = sh_doc == word_doc[ngram - 1 :]
        sh, sh_doc = sh[valid], sh_doc[valid]
    else:
        sh, sh_doc = np.empty(0, np.uint64), np.empty(0, np.int64)
    short = np.nonzero((counts > 0) & (counts < ngram))[0]
    if len(short):  # texts with fewer words than the n-gram: one shingle of all their words
        first = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=first[1:])
        extra = np.empty(len(short), np.uint64)
        with np.errstate(over="ignore"):
            for k, d in enumerate(short):
                acc = np.uint64(0)
                for x in words[first[d] : first[d + 1]]:
                    acc = acc * _K + x
                extra[k] = acc
        sh = np.concatenate([sh, _mix(extra)])
        sh_doc = np.concatenate([sh_doc, short])
        order = np.argsort(sh_doc, kind="stable")
        sh, sh_doc = sh[order], sh_doc[order]
    offsets = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(np.bincount(sh_doc, minlength=n), out=offsets[1:])
    return ShingleChunk(sh, offsets, counts == 0, num_hash)


def signatures(texts: list[str], settings: MinHashSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint32 signatures [n, num_perm], empty mask [n], number-multiset hash [n])."""
    import rensa

    chunk = shingle_hashes(texts, settings.ngram, settings.numbers, settings.tokens, settings.strip_punct)
    if len(texts) == 0:
        return np.empty((0, settings.num_perm), np.uint32), chunk.empty, chunk.numbers
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        chunk.hashes, chunk.offsets, settings.num_perm, settings.seed
    )
    rows = matrix.to_rows()
    sig = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.uint32, count=len(texts) * settings.num_perm)
    return sig.reshape(len(texts), settings.num_perm), chunk.empty, chunk.numbers


def _signature_job(args: tuple[list[str], dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    texts, settings = args
    return signatures(texts, MinHashSettings(**settings))


@dataclass
class MinHashIndex:
    """The global index: band hashes and signatures as numpy arrays, never texts.

    ``add(texts, group=...)`` appends a chunk; ``group`` (e.g. a category hash) is mixed
    into the band hashes so rows of different groups never become candidates.
    """

    settings: MinHashSettings
    bands: int = 0
    rows: int = 0
    _band_chunks: list[np.ndarray] = field(default_factory=list)
    _sig_chunks: list[np.ndarray] = field(default_factory=list)
    _empty_chunks: list[np.ndarray] = field(default_factory=list)
    _num_chunks: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        if s.bands and s.rows:
            if s.bands * s.rows > s.num_perm:
                raise ValueError(f"minhash: bands×rows = {s.bands}×{s.rows} exceeds num_perm={s.num_perm}")
            self.bands, self.rows = s.bands, s.rows
        else:
            min_recall = s.lsh_recall if s.verify else None
            self.bands, self.rows = optimal_bands_rows(s.threshold, s.num_perm, min_recall=min_recall)

    def __len__(self) -> int:
        return sum(len(c) for c in self._band_chunks)

    def add_signatures(
        self, sig: np.ndarray, empty: np.ndarray, numbers: np.ndarray, group: np.ndarray | None = None
    ) -> None:
        b, r = self.bands, self.rows
        with np.errstate(over="ignore"):
            cut = sig[:, : b * r].reshape(len(sig), b, r).astype(np.uint64)
            h = cut[:, :, 0].copy()
            for j in range(1, r):
                h = h * _K + cut[:, :, j]
            h = _mix(h + np.arange(b, dtype=np.uint64) * _P)
            if group is not None:
                h = _mix(h ^ np.asarray(group, dtype=np.uint64)[:, None])
        self._band_chunks.append(h)
        if self.settings.verify:
            self._sig_chunks.append(sig)
        self._empty_chunks.append(np.asarray(empty, bool))
        self._num_chunks.append(np.asarray(numbers, np.uint64))

    def add(self, texts: list[str], group: np.ndarray | None = None) -> None:
        self.add_signatures(*signatures(texts, self.settings), group=group)

    def candidate_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (first row of a bucket, other row) over all bands, deduplicated."""
        if not self._band_chunks:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        bands = _merge_chunks(self._band_chunks)
        self._band_chunks = [bands]
        empty = np.concatenate(self._empty_chunks)
        alive = np.nonzero(~empty)[0]
        n = np.uint64(len(bands))

        def band_keys(j: int) -> np.ndarray:
            col = bands[alive, j]
            order = np.argsort(col, kind="stable")
            sc = col[order]
            del col
            new_group = np.empty(len(sc), bool)
            new_group[:1] = True
            new_group[1:] = sc[1:] != sc[:-1]
            head = np.maximum.accumulate(np.where(new_group, np.arange(len(sc)), 0))
            member = ~new_group
            a = alive[order[head[member]]].astype(np.uint64)
            b = alive[order[member]].astype(np.uint64)
            return np.minimum(a, b) * n + np.maximum(a, b)

        def group_keys(js: range) -> np.ndarray:  # 8 bands merged: a pair recurs in many
            return _sorted_unique(np.concatenate([band_keys(j) for j in js]))

        groups = [range(g, min(g + 8, self.bands)) for g in range(0, self.bands, 8)]
        # numpy sorts and element-wise kernels release the GIL: two threads use both cores
        with ThreadPoolExecutor(max(1, min(self.settings.workers, 2))) as pool:
            parts = list(pool.map(group_keys, groups))
        key = _sorted_unique(np.concatenate(parts)) if parts else np.empty(0, np.uint64)
        return (key // n).astype(np.int64), (key % n).astype(np.int64)

    def estimated_jaccard(self, a: np.ndarray, b: np.ndarray, block: int = 65536) -> np.ndarray:
        sig = _merge_chunks(self._sig_chunks)
        self._sig_chunks = [sig]
        out = np.empty(len(a), np.float32)
        for i in range(0, len(a), block):
            out[i : i + block] = (sig[a[i : i + block]] == sig[b[i : i + block]]).mean(axis=1)
        return out

    def pair_check(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Estimated Jaccard of pairs (a[i], b[i]) LSH did not link directly, NaN where the
        pair fails the link test (other numbers in ``strict`` mode, below the threshold, or
        no signatures kept because ``verify`` is off: then only LSH links may merge)."""
        if not self._sig_chunks:
            return np.full(len(a), np.nan, np.float32)
        jac = self.estimated_jaccard(a, b)
        fail = jac < self.settings.threshold
        if self.settings.numbers == "strict":
            nums = _merge_chunks(self._num_chunks)
            self._num_chunks = [nums]
            fail |= nums[a] != nums[b]
        jac[fail] = np.nan
        return jac

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Accepted links (a, b, estimated Jaccard; NaN when not verified)."""
        a, b = self.candidate_edges()
        if self.settings.numbers == "strict" and len(a):
            nums = np.concatenate(self._num_chunks)
            same = nums[a] == nums[b]
            a, b = a[same], b[same]
        if self.settings.verify and len(a):
            j = self.estimated_jaccard(a, b)
            ok = j >= self.settings.threshold
            return a[ok], b[ok], j[ok]
        return a, b, np.full(len(a), np.nan, np.float32)

    def clusters(self) -> np.ndarray:
        """Cluster label per row: the smallest row index of its component."""
        a, b, _ = self.edges()
        return connected_components(len(self), a, b)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """``np.unique`` for uint64 keys by sorting (the sort releases the GIL)."""
    x = np.sort(x)
    keep = np.empty(len(x), bool)
    keep[:1] = True
    keep[1:] = x[1:] != x[:-1]
    return x[keep]


def _merge_chunks(chunks: list[np.ndarray]) -> np.ndarray:
    """Concatenate row chunks, freeing each as it is copied (peak: total + one chunk).

    Why: at a million rows the signatures are 0.5 GB; ``np.concatenate`` would hold the
    chunks and the result at once.
    """
    if len(chunks) == 1:
        return chunks[0]
    out = np.empty((sum(len(c) for c in chunks),) + chunks[0].shape[1:], dtype=chunks[0].dtype)
    pos = 0
    while chunks:
        c = chunks.pop(0)
        out[pos : pos + len(c)] = c
        pos += len(c)
        del c
    return out


def iter_text_chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def minhash_clusters(texts_iter: Iterable[str], settings: MinHashSettings | dict | None = None) -> np.ndarray:
    """Cluster label per input text (smallest row index of its near-duplicate cluster).

    Texts are consumed in chunks of ``settings.chunk_size``; with ``workers > 1`` the
    signatures of successive chunks are computed in a process pool.
    """
    if not isinstance(settings, MinHashSettings):
        settings = MinHashSettings(**(settings or {}))
    index = MinHashIndex(settings)
    chunks = iter_text_chunks(texts_iter, settings.chunk_size)
    if settings.workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        payload = settings.model_dump()
        with ctx.Pool(settings.workers) as pool:
            for result in pool.imap(_signature_job, ((c, payload) for c in chunks)):
                index.add_signatures(*result)
    else:
        for c in chunks:
            index.add(c)
    return index.clusters()
