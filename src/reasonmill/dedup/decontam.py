"""Decontamination against evaluation benchmarks, in layers, with evidence for every hit.

Why layers: each check catches a different kind of leak at a different cost.

1. ``exact``: the normalized texts are equal (a hash lookup).
2. ``ngram``: the share of the benchmark item that n-grams shared with the text cover,
   each n-gram weighted by its rarity (IDF over the benchmark items, the corpus being
   checked and optional background texts). A match needs substantive coverage *of the
   item*: a prompt frame ("the input is given from standard input in the following
   format"), a definition ("a substring is a contiguous non-empty sequence of characters")
   or a stock phrase ("m and n are relatively prime positive integers") is common in the
   corpus or across a benchmark's items, so it weighs ~0 and never makes a match on its
   own, however long it is. Numbers, LaTeX commands and math symbols are tokens, and the
   numbers must agree, so arcsin(1/sqrt 2) is not arcsin(-1/2).
3. ``embedding``: cosine of sentence embeddings, for paraphrases. A paraphrase keeps the
   problem's numbers and notation; a different problem on the same topic does not. So a
   cosine hit is contamination only when the numbers, LaTeX commands and minus signs are
   the same (``embedding_cosine``), or when the
   cosine is so high that nothing else can differ (``embedding_cosine_any``).
4. ``judge`` (off by default): candidates go to an LLM over an OpenAI-compatible endpoint,
   which answers whether the two texts are the same problem (as NeMo-Skills does).

*Template siblings* (the same wording with other numbers, e.g. "a circle of radius 3" vs
"radius 4") are the main source of false positives of n-gram and embedding rules. They are
reported as their own category (``template_sibling``) and not dropped, unless
``siblings_are_contamination`` is set.

The benchmark side is built once into a :class:`BenchmarkIndex`: sorted n-gram hash arrays
with item ids and n-gram weights, an embedding matrix and per-item number lists.
Thresholds can differ per benchmark (``per_benchmark``). It holds hashes, not texts
(texts are kept only when the judge needs them), so it pickles small and never stores
a protected benchmark such as GPQA in plain text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .prompt_frames import PROMPT_FRAMES

# --- normalization --------------------------------------------------------------------

_ASY = re.compile(r"\[asy\].*?(?:\[/asy\]|$)", re.S | re.I)
#: LaTeX that only formats: spacing, sizing and text-mode wrappers (their content stays)
_LATEX_FORMAT = re.compile(r"\\(?:left|right|big+l?|big+r?|displaystyle|textstyle|text|mathrm|mbox|quad|qquad"
                           r"|[,;:! ])(?![a-z])")
#: thousands separators: 1,000 / 1{,}000 / 1\,000 / 1\!000 are all 1000 (not inside a list: [100,200])
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\{,\}|\\[,!;: ])\d{3})+(?!\d)"
                        r"|(?<![\d.,\[(])\d{1,3}(?:,\d{3})+(?!\d|,\d)")
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\\[a-z]+|[^\W\d_]+"
                    r"|\d+(?:\.\d+)?|\.\d+|[-+=<>/^*|\u221a\u03c0\u221e\u2264\u2265\u2260\u00d7\u00f7]"
                    r"|(?<=[\d)}])!|(?<=\b[a-z])!")  # "!" only as a factorial: 5!, n!, (n+1)!
_NUM_TOKEN = "\x00#"
#: longest run of unmatched text tokens between shared n-grams counted as an insertion into
#: the item; longer runs are other text around or between copied parts
INSERT_GAP = 12
#: instruction words a copy may change freely ("Compute" -> "Calculate"): never distinctive
INSTRUCTION_WORDS = frozenset(
    "find compute calculate determine evaluate simplify solve what which whats how give express write show "
    "prove state enter list answer".split())
#: tokens that carry a problem's mathematics: numbers, LaTeX commands, symbols and
#: one-letter names (not the words "a" and "i"); they must agree for an embedding hit
_MATH_TOKEN = re.compile(r"[\d\\\W]|[b-hj-z]$")


def normalize_text(text: str, *, strip_asy: bool = True, boilerplate: re.Pattern | None = None) -> str:
    """Lowercase NFKC text without Asymptote diagrams, prompt boilerplate, LaTeX formatting
    commands and thousands separators.

    Diagrams are dropped because their drawing commands are shared by unrelated problems;
    formatting (``\\left(``, ``\\,``, ``\\dfrac`` vs ``\\frac``, ``1{,}000``) because a
    reformatted copy must stay a copy.
    """
    text = unicodedata.normalize("NFKC", text or "").lower()
    if strip_asy:
        text = _ASY.sub(" ", text)
    if boilerplate is not None:
        text = boilerplate.sub(" ", text)
    text = _THOUSANDS.sub(lambda m: re.sub(r"\D", "", m.group(0)), text)
    text = _LATEX_FORMAT.sub(" ", text)
    return re.sub(r"\\[dt]frac(?![a-z])", r"\\frac", text)


def tokenize(normalized: str) -> list[str]:
    """Words, canonical numbers, LaTeX commands (``\\sqrt``) and math symbols (``-``, ``=``,
    ``/``); other punctuation goes; CJK per character.

    Symbols and commands are tokens because they tell problems apart: arcsin(1/sqrt(2)) and
    arcsin(-1/2) have the same numbers.
    """
    return [_canon_number(t) if _is_number(t) else t for t in _TOKEN.findall(normalized)]


def _is_number(token: str) -> bool:
    return token[0].isdigit() or (token[0] == "." and len(token) > 1)


def mask_numbers(tokens: list[str]) -> list[str]:
    return [_NUM_TOKEN if _is_number(t) else t for t in tokens]


def numbers_of(tokens: list[str]) -> tuple[str, ...]:
    """The sorted multiset of numbers: what tells a template sibling from the same problem."""
    return tuple(sorted(t for t in tokens if _is_number(t)))


def math_signature(tokens: list[str]) -> tuple[str, ...]:
    """The sorted multiset of numbers, LaTeX commands, math symbols and one-letter names: a
    paraphrase rewords the text around the mathematics and keeps this."""
    return tuple(sorted(t for t in tokens if _MATH_TOKEN.match(t)))


def numbers_compatible(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """True when the numbers of the text with fewer numbers all occur in the other one.

    A copy wrapped in extra text ("Problem 3 (10 points): ...") keeps every number of the
    original; a template sibling changes some of them.
    """
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    return not (Counter(small) - Counter(big))


def _canon_number(token: str) -> str:
    """007 -> 7, 0.50 -> 0.5, .5 -> 0.5, 5.0 -> 5: a reformatted number stays the same token."""
    whole, _, frac = token.partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def _h64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


_P = np.uint64(0x100000001B3)


def ngram_hashes(tokens: list[str], n: int) -> np.ndarray:
    """Stable 64-bit hashes of every word n-gram (process-independent, unlike ``hash()``)."""
    if len(tokens) < n:
        return np.zeros(0, dtype=np.uint64)
    th = np.fromiter((_h64(t) for t in tokens), dtype=np.uint64, count=len(tokens))
    m = len(tokens) - n + 1
    out = np.zeros(m, dtype=np.uint64)
    for k in range(n):
        out = out * _P + th[k : k + m]  # uint64 arithmetic wraps mod 2**64, as intended
    return out


def text_hash(tokens: list[str]) -> int:
    return _h64("\x1f".join(tokens))


# --- settings -------------------------------------------------------------------------


class JudgeSettings(BaseModel):
    """An LLM judge over an OpenAI-compatible chat endpoint, asked "same problem?"."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    base_url: str = "http://localhost:8000/v1"
    model: str = "default"
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    max_tokens: int = 16
    #: retries of a failing request (exponential backoff from ``backoff`` seconds); then the run stops
    max_retries: int = Field(5, ge=0)
    backoff: float = Field(0.5, gt=0)
    #: which candidates go to the judge: hits of the layers, template siblings, and
    #: embedding neighbours above this cosine that no layer flagged
    candidate_cosine: float = 0.75
    #: the judge's verdict decides (a "no" keeps the record), or only annotates evidence
    decides: bool = True


class BenchmarkThresholds(BaseModel):
    """Thresholds for one benchmark, overriding the settings' own (None: keep them)."""

    model_config = ConfigDict(extra="forbid")

    ngram_coverage: float | None = Field(None, gt=0, le=1)
    embedding_cosine: float | None = Field(None, ge=-1, le=1)


class DecontamSettings(BaseModel):
    """Layers and thresholds. Defaults tuned on bench/bench_decontam_decisions.py (labelled
    real train/test pairs: LiveCodeBench, MATH, AIME) and checked on its held-out half."""

    model_config = ConfigDict(extra="forbid")

    exact: bool = True
    ngram: bool = True
    #: n of the n-grams of the coverage rule
    ngram_n_cover: int = Field(3, ge=2)
    #: share of the benchmark item's n-gram *weight* that n-grams shared with the checked text
    #: must cover for a hit (with compatible numbers). Weight = IDF over the benchmark items,
    #: the background texts and the corpus being checked, so a prompt frame ("the input is
    #: given from standard input in the following format") or a stock phrase ("m and n are
    #: relatively prime positive integers") weighs ~0 and never makes a match on its own,
    #: while a copy covers ~1 of its item however much text surrounds it.
    ngram_coverage: float = Field(0.5, gt=0, le=1)
    #: share of the item's distinctive words (not numbers, not ``INSTRUCTION_WORDS``, not
    #: common: see ``common_word_df``), and of its ``math_signature`` tokens (numbers, LaTeX
    #: commands, symbols, one-letter names: "(x+y)(y+z)" is not "(x+y)/(xyz)")
    #: that may be absent from the text. A light edit changes a common word ("Find" ->
    #: "Compute"); a problem built on the same stem asks about another object ("the word
    #: ELLIPSE" / "RADII", "the area of quadrilateral DBEF" / "of triangle DBC"), so its
    #: distinctive words are missing even when the shared stem covers most of the item
    missing_words: float = Field(0.05, ge=0, le=1)
    #: text tokens inserted inside the item's wording (short gaps between shared n-grams) a
    #: copy may have, as a share of the item's tokens (at least 2 always): "5 red shirts, 5
    #: green shirts, ..." adds conditions to "5 shirts, ..." and is another problem
    inserted_tokens: float = Field(0.1, ge=0)
    #: a word in at least this share of the documents (benchmark items, background and
    #: corpus) is common: it may differ between a copy and its item
    common_word_df: float = Field(0.05, gt=0, le=1)
    #: items whose n-grams weigh less than this in total (pure boilerplate) are left to the
    #: exact layer: their coverage would be a ratio of noise
    min_item_weight: float = Field(0.5, ge=0)
    #: n-grams for the template-sibling rule (number-masked coverage of the shorter text):
    #: ``ngram_n``, or ``ngram_n_short`` when either text has fewer than ``short_tokens`` tokens
    ngram_n: int = Field(13, ge=2)
    ngram_n_short: int = Field(8, ge=2)
    short_tokens: int = Field(100, ge=1)
    embedding: bool = True
    embedder: str = "static-minilm"
    #: cosine for a hit when both texts carry the same non-empty numbers, LaTeX commands,
    #: math symbols and one-letter names (``math_signature``: a paraphrase keeps them, while
    #: arcsin(1/sqrt 2) and arcsin(-1/2) differ); tuned
    #: for the default static-minilm embedder, whose cosines run high
    embedding_cosine: float = Field(0.95, ge=-1, le=1)
    #: cosine for a hit whatever the numbers (off: a changed number makes another problem)
    embedding_cosine_any: float | None = Field(None, ge=-1, le=1)
    template_siblings: bool = True
    #: masked-number n-gram coverage (numbers differing) for a template sibling, which must
    #: also reach half the item's ``ngram_coverage``; an item covered but with other numbers
    #: or missing distinctive words is a sibling too
    sibling_coverage: float = Field(0.5, gt=0, le=1)
    #: embedding cosine (numbers differing) for a template sibling; off by default, since
    #: same-topic problems reach high cosines and the category would lose its meaning
    sibling_cosine: float | None = Field(None, ge=-1, le=1)
    siblings_are_contamination: bool = False
    strip_asy: bool = True
    boilerplate: list[str] = Field(default_factory=lambda: list(PROMPT_FRAMES))
    #: candidate items per record examined by the pairwise checks
    top_k: int = Field(5, ge=1)
    #: per benchmark name: thresholds that replace the ones above for that benchmark's items
    per_benchmark: dict[str, BenchmarkThresholds] = Field(default_factory=dict)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)


# --- the index ------------------------------------------------------------------------


@dataclass
class _Postings:
    """n-gram hash → item ids, as two parallel arrays sorted by hash (compact, picklable)."""

    keys: np.ndarray
    items: np.ndarray

    @classmethod
    def build(cls, per_item: list[np.ndarray]) -> "_Postings":
        if not per_item:
            return cls(np.zeros(0, np.uint64), np.zeros(0, np.int32))
        keys = np.concatenate([np.unique(h) for h in per_item]) if per_item else np.zeros(0, np.uint64)
        items = np.concatenate([np.full(len(np.unique(h)), i, np.int32) for i, h in enumerate(per_item)])
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], items[order])

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``hashes``, item id) for every posting that matches."""
        if len(hashes) == 0 or len(self.keys) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        lo = np.searchsorted(self.keys, hashes, "left")
        hi = np.searchsorted(self.keys, hashes, "right")
        counts = hi - lo
        if not counts.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        pos = np.repeat(np.arange(len(hashes)), counts)
        starts = np.repeat(lo, counts)
        offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return pos, self.items[starts + offs]


@dataclass
class BenchmarkIndex:
    """Everything the checks need about the benchmarks, built once by :func:`build_index`."""

    settings: DecontamSettings
    benchmarks: list[str]
    item_bench: np.ndarray  # int16 index into ``benchmarks``
    item_ids: list[str]
    answers: list[str | None]
    lengths: np.ndarray  # tokens per item
    numbers: list[tuple[str, ...]]
    signatures: list[tuple[str, ...]]  # numbers, LaTeX commands and minus signs (math_signature)
    exact: dict[int, list[int]]
    grams: dict[tuple[int, bool], _Postings]  # (n, masked) → postings
    gram_counts: dict[tuple[int, bool], np.ndarray]  # distinct n-grams per item
    #: weight (IDF) of each distinct benchmark ``ngram_n_cover``-gram, aligned with
    #: ``cover_keys`` (sorted), and the total weight of each item's distinct n-grams
    cover_keys: np.ndarray
    cover_weight: np.ndarray
    item_weight: np.ndarray
    #: per item: hashes of its distinctive words (not numbers, in < ``common_word_df`` of the
    #: documents); hashes, so the index still holds no benchmark text
    item_words: list[frozenset[int]]
    #: per item: the coverage and cosine thresholds of its benchmark (per_benchmark applied)
    coverage_min: np.ndarray
    cosine_min: np.ndarray
    #: documents beyond the benchmark items that gave document frequencies
    background_docs: int = 0
    embeddings: np.ndarray | None = None
    texts: list[str] | None = None  # only when the judge is on
    embedder_name: str | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    def describe(self, i: int) -> str:
        return f"{self.benchmarks[self.item_bench[i]]}:{self.item_ids[i]}"

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.benchmarks[b] for b in self.item_bench))


def _compile_boilerplate(settings: DecontamSettings) -> re.Pattern | None:
    if not settings.boilerplate:
        return None
    return re.compile("|".join(f"(?:{p})" for p in settings.boilerplate))


@dataclass
class _Prepared:
    tokens: list[str]
    masked: list[str]
    numbers: tuple[str, ...]
    signature: tuple[str, ...]
    clean: str  # normalized text (for the embedder)

    @cached_property
    def word_hashes(self) -> set[int]:
        return {_h64(t) for t in set(self.tokens)}


def _prepare(text: str, settings: DecontamSettings, boiler: re.Pattern | None) -> _Prepared:
    norm = normalize_text(text, strip_asy=settings.strip_asy, boilerplate=boiler)
    tokens = tokenize(norm)
    return _Prepared(tokens, mask_numbers(tokens), numbers_of(tokens), math_signature(tokens),
                     " ".join(norm.split()))


def _ngram_weights(prepared: list[_Prepared], background: Iterable[str], n: int, s: DecontamSettings,
                   boiler: re.Pattern | None) -> tuple[np.ndarray, np.ndarray, int, list[frozenset[int]]]:
    """IDF of every distinct benchmark n-gram over benchmark items + background documents.

    The background is the corpus being checked and any extra texts like it: a prompt frame
    or a stock phrase is common there even when a benchmark has it once. Only the
    benchmark's n-grams can ever be shared, so only they are counted. Background texts equal
    to a benchmark item (a verbatim copy, or the full MATH test set around MATH-500) are
    skipped: a leak must not make its own item's n-grams look common.
    """
    per_item = [np.unique(ngram_hashes(p.tokens, n)) for p in prepared]
    words = [frozenset(t for t in p.tokens if not _is_number(t) and t not in INSTRUCTION_WORDS)
             for p in prepared]
    word_df = Counter(w for ws in words for w in ws)
    keys = np.unique(np.concatenate(per_item)) if per_item else np.zeros(0, np.uint64)
    df = np.zeros(len(keys), dtype=np.int64)
    for h in per_item:
        df[np.searchsorted(keys, h)] += 1
    docs = len(prepared)
    seen = {text_hash(p.tokens) for p in prepared if p.tokens}
    found: list[np.ndarray] = []
    for text in background:
        toks = tokenize(normalize_text(text, strip_asy=s.strip_asy, boilerplate=boiler))
        if not toks or text_hash(toks) in seen:
            continue
        docs += 1
        word_df.update(w for w in set(toks) if w in word_df)
        h = np.unique(ngram_hashes(toks, n))
        if len(keys) and len(h):
            pos = np.minimum(np.searchsorted(keys, h), len(keys) - 1)
            found.append(pos[keys[pos] == h])
        if len(found) >= 4096:  # bounded memory on a large corpus
            df += np.bincount(np.concatenate(found), minlength=len(keys))
            found = []
    if found:
        df += np.bincount(np.concatenate(found), minlength=len(keys))
    # scaled so that an n-gram of a single document weighs 1 and one of every document ~0
    idf = np.log((docs + 1) / np.maximum(df, 1)) / np.log(docs + 1)
    common = max(3.0, s.common_word_df * docs)  # in a handful of documents nothing is common
    distinctive = [frozenset(_h64(w) for w in ws if word_df[w] < common) for ws in words]
    return keys, np.clip(idf, 0, 1).astype(np.float32), docs - len(prepared), distinctive


def build_index(items: list[dict], settings: DecontamSettings | dict | None = None, embedder: Any = None,
                background: Iterable[str] | None = None) -> BenchmarkIndex:
    """Build the benchmark index from items ``{benchmark, item_id, text, answer}``.

    ``embedder`` (anything with ``encode(texts) -> normalized rows``) defaults to
    ``reasonmill.embed.get_embedder(settings.embedder)`` when the embedding layer is on.
    ``background``: texts that only supply document frequencies for the n-gram weights: the
    corpus that will be checked (the stage passes it) and problems like it; without them the
    frequencies come from the benchmark items alone.
    """
    s = settings if isinstance(settings, DecontamSettings) else DecontamSettings(**(settings or {}))
    boiler = _compile_boilerplate(s)
    benchmarks: list[str] = []
    bench_of: dict[str, int] = {}
    prepared = [_prepare(it["text"], s, boiler) for it in items]
    exact: dict[int, list[int]] = {}
    for i, p in enumerate(prepared):
        if p.tokens:
            exact.setdefault(text_hash(p.tokens), []).append(i)
    for it in items:
        bench_of.setdefault(it["benchmark"], len(benchmarks))
        if len(benchmarks) < len(bench_of):
            benchmarks.append(it["benchmark"])
    unknown = sorted(set(s.per_benchmark) - set(benchmarks))
    if unknown and items:
        raise ValueError(f"decontamination: per-benchmark thresholds for {unknown}, which are not among the "
                         f"benchmarks {benchmarks}; fix the name")
    grams: dict[tuple[int, bool], _Postings] = {}
    gram_counts: dict[tuple[int, bool], np.ndarray] = {}
    keys = {(s.ngram_n_cover, False)}
    if s.template_siblings:
        keys |= {(s.ngram_n, True), (s.ngram_n_short, True)}
    for n, masked in sorted(keys):
        per_item = [ngram_hashes(p.masked if masked else p.tokens, n) for p in prepared]
        grams[(n, masked)] = _Postings.build(per_item)
        gram_counts[(n, masked)] = np.array([len(np.unique(h)) for h in per_item], dtype=np.int32)
    cover_keys, cover_weight, background_docs, item_words = _ngram_weights(
        prepared, background or [], s.ngram_n_cover, s, boiler)
    item_weight = np.array([float(cover_weight[np.searchsorted(cover_keys, np.unique(ngram_hashes(p.tokens,
                            s.ngram_n_cover)))].sum()) for p in prepared], dtype=np.float32)
    item_bench = np.array([bench_of[it["benchmark"]] for it in items], dtype=np.int16)
    cov_by_bench = np.array([_threshold(s, b, "ngram_coverage") for b in benchmarks], dtype=np.float32)
    cos_by_bench = np.array([_threshold(s, b, "embedding_cosine") for b in benchmarks], dtype=np.float32)
    index = BenchmarkIndex(
        settings=s,
        benchmarks=benchmarks,
        item_bench=item_bench,
        item_ids=[str(it["item_id"]) for it in items],
        answers=[it.get("answer") for it in items],
        lengths=np.array([len(p.tokens) for p in prepared], dtype=np.int32),
        numbers=[p.numbers for p in prepared],
        signatures=[p.signature for p in prepared],
        exact=exact,
        grams=grams,
        gram_counts=gram_counts,
        cover_keys=cover_keys,
        cover_weight=cover_weight,
        item_weight=item_weight,
        item_words=item_words,
        coverage_min=cov_by_bench[item_bench] if len(items) else np.zeros(0, np.float32),
        cosine_min=cos_by_bench[item_bench] if len(items) else np.zeros(0, np.float32),
        background_docs=background_docs,
        texts=[it["text"] for it in items] if s.judge.enabled else None,
    )
    if s.embedding and items:
        if embedder is None:
            from reasonmill.embed import get_embedder

            embedder = get_embedder(s.embedder)
        index.embeddings = np.asarray(embedder.encode([p.clean for p in prepared]), dtype=np.float32)
        index.embedder_name = getattr(embedder, "name", s.embedder)
    return index


def _threshold(s: DecontamSettings, benchmark: str, name: str) -> float:
    own = s.per_benchmark.get(benchmark)
    value = getattr(own, name) if own is not None else None
    return float(getattr(s, name) if value is None else value)


# --- checking ---------------------------------------------------------------------------

Category = Literal["contaminated", "template_sibling"]


@dataclass
class Hit:
    """One benchmark item a text matched, and the evidence."""

    category: Category
    layer: str  # exact | ngram | embedding | template | judge
    benchmark: str
    item_id: str
    field: str = "problem"  # which part of the record matched (problem, response[i])
    ngram: str | None = None  # the rarest shared n-gram, as words of the checked text
    ngram_n: int | None = None
    #: share of the benchmark item's n-gram weight covered by n-grams shared with the text
    coverage: float | None = None
    masked_coverage: float | None = None
    cosine: float | None = None
    numbers_match: bool | None = None
    signature_match: bool | None = None  # same math_signature: numbers, commands, symbols, names
    missing_words: int | None = None  # how many distinctive words of the item the text lacks
    missing_math: int | None = None  # how many of the item's math_signature tokens the text lacks
    inserted_tokens: int | None = None  # text tokens inserted inside the item's wording
    threshold: float | None = None  # the threshold the deciding value met (per benchmark)
    answer_match: bool | None = None  # the record's reference answer equals the item's answer
    judge: dict | None = None

    def evidence(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def describe(self) -> str:
        parts = [f"{self.benchmark} item {self.item_id} ({self.layer}"]
        if self.coverage is not None and self.layer in ("ngram", "template"):
            parts.append(f", weighted {self.ngram_n}-gram coverage of the item {self.coverage:.2f}")
        if self.masked_coverage is not None and self.layer == "template":
            parts.append(f", number-masked {self.masked_coverage:.2f}")
        if self.cosine is not None:
            parts.append(f", cosine {self.cosine:.3f}")
        if self.ngram:
            parts.append(f", shared {self.ngram!r}")
        return "".join(parts) + ")"


@dataclass
class _Pair:
    item: int
    coverage: float = 0.0  # weighted coverage of the item
    gram_pos: int = -1  # position in the text of the rarest shared n-gram
    inserted: int = 0  # text tokens inserted inside the item's wording (Decontaminator._inserted)
    masked_coverage: float = 0.0
    cosine: float | None = None


@dataclass
class _Shared:
    """The n-grams a text shares with the benchmark items: weighted coverage per item, the raw
    lookup (text position, item) and the distinct (item, n-gram) pairs with weight and position."""

    cover: np.ndarray
    pos: np.ndarray
    items: np.ndarray
    pair_item: np.ndarray
    pair_weight: np.ndarray
    pair_pos: np.ndarray

    def rarest(self, item: int) -> int:
        """Text position of the rarest n-gram shared with ``item`` (the evidence)."""
        sel = self.pair_item == item
        return int(self.pair_pos[sel][int(np.argmax(self.pair_weight[sel]))])


def _masked_coverage(index: BenchmarkIndex, p: _Prepared, n: int, hashes: np.ndarray, pos: np.ndarray,
                     items: np.ndarray, item: int) -> float:
    """Share of the shorter text covered by number-masked n-grams shared with ``item``."""
    sel = items == item
    if not sel.any():
        return 0.0
    hit_pos = np.unique(pos[sel])
    covered = np.zeros(len(p.tokens), dtype=bool)
    for k in range(n):
        covered[hit_pos + k] = True
    own = covered.sum() / max(1, len(p.tokens))
    # the benchmark side: distinct shared n-grams over the item's distinct n-grams (the
    # item's token positions are not stored; this is its coverage up to repeated n-grams)
    shared = len(np.unique(hashes[hit_pos]))
    other = min(1.0, (shared + n - 1) / max(1, index.gram_counts[(n, True)][item] + n - 1))
    return float(own if len(p.tokens) <= index.lengths[item] else other)


class Decontaminator:
    """Checks texts against a :class:`BenchmarkIndex` (cheap to build; reuse per shard)."""

    def __init__(self, index: BenchmarkIndex, embedder: Any = None, judge: Any = None):
        self.index = index
        self.s = index.settings
        self._boiler = _compile_boilerplate(self.s)
        self._embedder = embedder
        self._judge = judge

    def _get_embedder(self) -> Any:
        if self._embedder is None:
            from reasonmill.embed import get_embedder

            self._embedder = get_embedder(self.s.embedder)
        name = getattr(self._embedder, "name", None)
        if self.index.embedder_name and name and name != self.index.embedder_name:
            raise ValueError(f"decontamination: the benchmark index was embedded with {self.index.embedder_name!r} "
                             f"but texts are embedded with {name!r}; use the same embedder (settings.embedder)")
        return self._embedder

    def _get_judge(self) -> Any:
        if self._judge is None:
            self._judge = LLMJudge(self.s.judge)
        return self._judge

    def check(self, texts: list[str], field: str = "problem") -> list[list[Hit]]:
        """All hits per text (empty list when clean), contaminated hits first."""
        prepared = [_prepare(t, self.s, self._boiler) for t in texts]
        cos_top: list[list[tuple[int, float]]] = [[] for _ in texts]
        idx = self.index
        if self.s.embedding and idx.embeddings is not None and len(idx) and texts:
            vecs = np.asarray(self._get_embedder().encode([p.clean for p in prepared]), dtype=np.float32)
            sims = vecs @ idx.embeddings.T
            k = min(self.s.top_k, sims.shape[1])
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            for r in range(len(texts)):
                cos_top[r] = sorted(((int(j), float(sims[r, j])) for j in top[r]), key=lambda x: -x[1])
        out = []
        for r, p in enumerate(prepared):
            hits = self._check_one(p, cos_top[r], field)
            if self.s.judge.enabled and texts[r]:
                hits = self._ask_judge(texts[r], p, hits, cos_top[r], field)
            hits.sort(key=lambda h: h.category != "contaminated")
            out.append(hits)
        return out

    def _weighted_coverage(self, p: _Prepared) -> _Shared:
        """Weighted coverage of every item by the n-grams it shares with the text (a repeated
        n-gram counts once on both sides), and the lookup behind it."""
        idx, n = self.index, self.s.ngram_n_cover
        h = ngram_hashes(p.tokens, n)
        pos, items = idx.grams[(n, False)].lookup(h)
        cover = np.zeros(len(idx))
        if len(items) == 0:
            return _Shared(cover, pos, items, items, np.zeros(0, np.float32), pos)
        keys = h[pos]
        w = idx.cover_weight[np.searchsorted(idx.cover_keys, keys)]
        order = np.lexsort((keys, items))
        it, ky, ww, ps = items[order], keys[order], w[order], pos[order]
        first = np.ones(len(it), dtype=bool)
        first[1:] = (it[1:] != it[:-1]) | (ky[1:] != ky[:-1])
        it, ww, ps = it[first], ww[first], ps[first]
        shared = np.bincount(it, weights=ww, minlength=len(idx))
        ok = (shared > 0) & (idx.item_weight >= self.s.min_item_weight)
        cover[ok] = np.minimum(1.0, shared[ok] / idx.item_weight[ok])
        return _Shared(cover, pos, items, it, ww, ps)

    def _inserted(self, p: _Prepared, pos: np.ndarray, items: np.ndarray, item: int) -> int:
        """Text tokens inside the copy of ``item`` that the item lacks: uncovered gaps of at
        most ``INSERT_GAP`` tokens between runs of shared n-grams. A copy wrapped in other
        text has none (the wrapping is outside); a problem that adds conditions in the
        middle of the item's wording ("5 red shirts, 5 green shirts") has many."""
        n = self.s.ngram_n_cover
        hit = np.unique(pos[items == item])
        if len(hit) < 2:
            return 0
        covered = np.zeros(len(p.tokens), dtype=bool)
        for k in range(n):
            covered[hit + k] = True
        gaps = np.diff(np.flatnonzero(covered)) - 1  # uncovered tokens between covered ones
        return int(gaps[(gaps > 0) & (gaps <= INSERT_GAP)].sum())

    def _pairs(self, p: _Prepared, cos_top: list[tuple[int, float]]) -> dict[int, _Pair]:
        """Candidate items with their weighted coverage, masked coverage and cosine: every item
        at or above its coverage threshold, the best covered, the best masked-n-gram matches
        (siblings) and the nearest embeddings."""
        s, idx = self.s, self.index
        shared = self._weighted_coverage(p) if s.ngram else None
        cands: list[int] = []
        if shared is not None:
            cover = shared.cover
            best = np.argsort(-cover)[: s.top_k]
            cands = [*np.flatnonzero(cover >= idx.coverage_min).tolist(), *best[cover[best] > 0].tolist()]
        masked = {}
        if s.template_siblings:
            for key in ((s.ngram_n, True), (s.ngram_n_short, True)):
                h = ngram_hashes(p.masked, key[0])
                masked[key] = (h, *idx.grams[key].lookup(h))
            votes = Counter(masked[(s.ngram_n_short, True)][2].tolist())
            cands += [j for j, _ in votes.most_common(s.top_k)]
        cands += [j for j, _ in cos_top]
        pairs: dict[int, _Pair] = {}
        for j in dict.fromkeys(cands):
            pair = pairs[j] = _Pair(item=j)
            if shared is not None and shared.cover[j] > 0:
                pair.coverage, pair.gram_pos = float(shared.cover[j]), shared.rarest(j)
                if pair.coverage >= idx.coverage_min[j]:
                    pair.inserted = self._inserted(p, shared.pos, shared.items, j)
            if masked:
                short = min(len(p.tokens), int(idx.lengths[j])) < s.short_tokens
                n = s.ngram_n_short if short else s.ngram_n
                pair.masked_coverage = _masked_coverage(idx, p, n, *masked[(n, True)], j)
        for j, c in cos_top:
            pairs[j].cosine = c
        return pairs

    def _check_one(self, p: _Prepared, cos_top: list[tuple[int, float]], field: str) -> list[Hit]:
        s, idx = self.s, self.index
        if not p.tokens:
            return []
        hits: list[Hit] = []
        if s.exact:
            for j in idx.exact.get(text_hash(p.tokens), []):
                hits.append(self._hit("contaminated", "exact", j, field, coverage=1.0, numbers_match=True))
        if hits:
            return hits
        n = s.ngram_n_cover
        for j, pair in self._pairs(p, cos_top).items():
            same_numbers = numbers_compatible(p.numbers, idx.numbers[j])
            same_signature = bool(p.signature) and p.signature == idx.signatures[j]
            at = pair.gram_pos
            ev = dict(ngram=" ".join(p.tokens[at: at + n]) if at >= 0 else None,
                      ngram_n=n if at >= 0 else None, coverage=round(pair.coverage, 4),
                      masked_coverage=round(pair.masked_coverage, 4) if s.template_siblings else None,
                      cosine=None if pair.cosine is None else round(pair.cosine, 4), numbers_match=same_numbers,
                      signature_match=same_signature)
            missing = len(idx.item_words[j] - p.word_hashes) if pair.coverage else 0
            # numbers are judged by numbers_compatible (off with template_siblings: false)
            item_math = Counter(t for t in idx.signatures[j] if not _is_number(t))
            missing_math = sum((item_math - Counter(p.signature)).values()) if pair.coverage else 0
            if missing:
                ev["missing_words"] = missing
            if missing_math:
                ev["missing_math"] = missing_math
            covered = s.ngram and pair.coverage >= idx.coverage_min[j]
            same_words = (missing <= s.missing_words * len(idx.item_words[j])
                          and missing_math <= s.missing_words * sum(item_math.values())
                          and pair.inserted <= max(2, s.inserted_tokens * int(idx.lengths[j])))
            if pair.inserted:
                ev["inserted_tokens"] = pair.inserted
            if covered and same_words and (same_numbers or not s.template_siblings):
                hits.append(self._hit("contaminated", "ngram", j, field,
                                      threshold=round(float(idx.coverage_min[j]), 4), **ev))
            elif s.embedding and pair.cosine is not None and (
                (s.embedding_cosine_any is not None and pair.cosine >= s.embedding_cosine_any)
                or (same_signature and pair.cosine >= idx.cosine_min[j])
            ):
                hits.append(self._hit("contaminated", "embedding", j, field,
                                      threshold=round(float(idx.cosine_min[j]), 4), **ev))
            elif s.template_siblings and (covered or not same_numbers and (
                # same wording, other numbers: the masked n-grams match, and the unmasked ones
                # still cover a good part of the item (a shared frame alone does not)
                (pair.masked_coverage >= s.sibling_coverage and pair.coverage >= idx.coverage_min[j] / 2)
                or (s.embedding and s.sibling_cosine is not None and pair.cosine is not None
                    and pair.cosine >= s.sibling_cosine)
            )):
                category: Category = "contaminated" if s.siblings_are_contamination else "template_sibling"
                hits.append(self._hit(category, "template", j, field, **ev))
        return hits

    def _hit(self, category: Category, layer: str, j: int, field: str, **ev: Any) -> Hit:
        idx = self.index
        return Hit(category=category, layer=layer, benchmark=idx.benchmarks[idx.item_bench[j]],
                   item_id=idx.item_ids[j], field=field, **ev)

    def _ask_judge(self, text: str, p: _Prepared, hits: list[Hit], cos_top: list[tuple[int, float]],
                   field: str) -> list[Hit]:
        """Send every hit, and near neighbours no layer flagged, to the judge."""
        idx = self.index
        if idx.texts is None:
            raise RuntimeError("the decontamination judge needs benchmark texts: rebuild the index with "
                               "judge.enabled: true")
        judge = self._get_judge()
        by_item = {(h.benchmark, h.item_id): h for h in hits}
        for j, c in cos_top:
            key = (idx.benchmarks[idx.item_bench[j]], idx.item_ids[j])
            if key not in by_item and c >= self.s.judge.candidate_cosine:
                by_item[key] = self._hit("template_sibling", "judge", j, field, cosine=round(c, 4),
                                         numbers_match=numbers_compatible(p.numbers, idx.numbers[j]))
                by_item[key].category = "candidate"  # type: ignore[assignment]
        pos = {(idx.benchmarks[idx.item_bench[j]], idx.item_ids[j]): j for j in range(len(idx))} if by_item else {}
        out = []
        for key, hit in by_item.items():
            verdict = judge.same_problem(text, idx.texts[pos[key]])
            hit.judge = verdict
            if self.s.judge.decides and verdict.get("same") is not None:
                if verdict["same"]:
                    if hit.category != "contaminated":
                        hit.layer = "judge"
                    hit.category = "contaminated"
                elif hit.category == "contaminated" and hit.layer != "exact":
                    hit.category = "template_sibling" if hit.layer == "template" else "cleared"  # type: ignore
            if hit.category in ("contaminated", "template_sibling"):
                out.append(hit)
        return out


def check_texts(index: BenchmarkIndex, texts: list[str], **kw: Any) -> list[list[Hit]]:
    """Convenience: one-off check of texts against an index."""
    return Decontaminator(index, **kw).check(texts)


# --- the optional LLM judge --------------------------------------------------------------

JUDGE_PROMPT = (
    "Decide whether two problems are the same problem. They are the same if solving one gives "
    "the answer to the other: ignore wording, formatting, names, the order of sentences and "
    "instructions about the answer format. They are NOT the same if any number, quantity, "
    "condition or the question asked differs.\n\n"
    "Problem A:\n{a}\n\nProblem B:\n{b}\n\n"
    "Answer with exactly one word: True if they are the same problem, False otherwise."
)


class LLMJudge:
    """Asks an OpenAI-compatible chat endpoint whether two texts are the same problem.

    It sees only the few candidates the cheap layers found. Requests go through the LLM
    client (``reasonmill.llm.sync_client``): cached in ``cache_path`` (the run's
    ``llm_cache.sqlite``), so a re-run asks nothing twice, and retried with backoff. The
    verdict (with the raw reply) goes into the evidence; an unparsable reply or a request
    the server rejects gives ``same: None`` and leaves the layers' decision in place. An
    unreachable endpoint raises ``ModelEndpointError``: the run stops rather than
    deciding without the judge it was configured with.
    """

    def __init__(self, settings: JudgeSettings, cache_path: Any = None):
        """``cache_path`` (str or Path): the run's ``<cache_dir>/llm_cache.sqlite``; None: no cache."""
        from reasonmill.llm.client import ClientConfig
        from reasonmill.llm.sync_client import SyncModelClient
        from reasonmill.llm.transport import Timeouts

        self.s = settings
        config = ClientConfig(
            base_url=settings.base_url, model=settings.model, temperature=0.0, top_p=1.0,
            max_tokens=settings.max_tokens, concurrency=4, max_retries=settings.max_retries,
            backoff_base=settings.backoff,
            timeouts=Timeouts(connect=min(10.0, settings.timeout), read=settings.timeout),
        )
        # the key is optional here: a local judge needs none
        self._client = SyncModelClient(
            config, cache_path, api_key_env=settings.api_key_env, require_key=False,
            what=f"decontamination judge {settings.model!r}",
            hint="Start the judge server or fix judge.base_url in the decontaminate settings.",
        )

    @staticmethod
    def endpoints(settings: JudgeSettings) -> list[tuple[str, str | None]]:
        """``(base_url, api_key_env)`` the judge calls when enabled (for a preflight check)."""
        return [(settings.base_url, settings.api_key_env)] if settings.enabled else []

    def same_problem(self, text: str, benchmark_text: str) -> dict:
        from reasonmill.llm.client import Failure

        messages = [{"role": "user", "content": JUDGE_PROMPT.format(a=text, b=benchmark_text)}]
        (reply,) = self._client.complete_many([messages])
        if isinstance(reply, Failure):
            return {"same": None, "error": f"{reply.reason}: {reply.message[:200]}", "model": self.s.model}
        answer = (reply.get("answer") or "").strip()
        word = answer.lower()
        same = True if word.startswith(("true", "yes")) else False if word.startswith(("false", "no")) else None
        return {"same": same, "reply": answer[:200], "model": self.s.model}

    def close(self) -> None:
        self._client.close()
