"""Decontamination against evaluation benchmarks, in layers, with evidence for every hit.

Why layers: each check catches a different kind of leak at a different cost.

1. ``exact``: the normalized texts are equal (a hash lookup).
2. ``ngram``: long shared word n-grams on normalized text (13-grams, 8-grams when either
   text is short, SPEC §1 item 4). One shared n-gram is too weak here: MATH-style problems
   share stock phrases ("what is the probability that the sum of the numbers"), so a hit
   needs the shared n-grams to cover a share of the shorter text (``ngram_coverage``).
   A second, rarity-aware rule (``rare_mass``) sums the IDF weights of the distinct
   ``rare_n``-grams a text shares with one item: a long shared passage of rare wording is a
   hit even when it covers little of a long text, while stock phrases ("express your answer
   as a common fraction") weigh almost nothing. Document frequencies come from the
   benchmark items plus an optional background corpus (``build_index(background=...)``).
3. ``embedding``: cosine of sentence embeddings, for paraphrases. A paraphrase keeps the
   problem's numbers; a different problem on the same topic does not. So a cosine hit is
   contamination only when the numbers are the same (``embedding_cosine``), or when the
   cosine is so high that nothing else can differ (``embedding_cosine_any``).
4. ``judge`` (off by default): candidates go to an LLM over an OpenAI-compatible endpoint,
   which answers whether the two texts are the same problem (as NeMo-Skills does).

*Template siblings* (the same wording with other numbers, e.g. "a circle of radius 3" vs
"radius 4") are the main source of false positives of n-gram and embedding rules. They are
reported as their own category (``template_sibling``) and not dropped, unless
``siblings_are_contamination`` is set.

The benchmark side is built once into a :class:`BenchmarkIndex`: sorted n-gram hash arrays
with item ids, an embedding matrix and per-item number lists. It holds hashes, not texts
(texts are kept only when the judge needs them), so it pickles small and never stores
a protected benchmark such as GPQA in plain text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# --- normalization --------------------------------------------------------------------

#: prompt boilerplate that datasets wrap around problems; it would otherwise create shared
#: n-grams between unrelated problems (lowercased, matched after NFKC)
DEFAULT_BOILERPLATE = (
    r"return your final response within \\boxed\{\}\.?",
    r"let'?s think step by step and output the final answer within \\boxed\{\}\.?",
    r"please reason step by step, and put your final answer within \\boxed\{\}\.?",
    r"you will be given a question \(problem specification\) and will generate a correct python program"
    r" that matches the specification and passes all tests\.",
    r"you will use the following starter code to write the solution to the problem and enclose your code"
    r" within delimiters\.",
    r"read the inputs from stdin solve the problem and write the answer to stdout \(do not directly test on"
    r" the sample inputs\)\. enclose your code within delimiters as follows\. ensure that when the python"
    r" program runs, it reads the inputs, runs the algorithm and writes output to stdout\.",
)
_ASY = re.compile(r"\[asy\].*?(?:\[/asy\]|$)", re.S | re.I)
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W\d_]+|\d+(?:\.\d+)?")
_NUM_TOKEN = "\x00#"


def normalize_text(text: str, *, strip_asy: bool = True, boilerplate: re.Pattern | None = None) -> str:
    """Lowercase NFKC text without Asymptote diagrams and prompt boilerplate.

    Diagrams are dropped because their drawing commands are shared by unrelated problems.
    """
    text = unicodedata.normalize("NFKC", text or "").lower()
    if strip_asy:
        text = _ASY.sub(" ", text)
    if boilerplate is not None:
        text = boilerplate.sub(" ", text)
    return text


def tokenize(normalized: str) -> list[str]:
    """Words and numbers (LaTeX commands become words, punctuation goes); CJK per character."""
    return _TOKEN.findall(normalized)


def _is_number(token: str) -> bool:
    return token[0].isdigit()


def mask_numbers(tokens: list[str]) -> list[str]:
    return [_NUM_TOKEN if _is_number(t) else t for t in tokens]


def numbers_of(tokens: list[str]) -> tuple[str, ...]:
    """The sorted multiset of numbers: what tells a template sibling from the same problem."""
    return tuple(sorted(_canon_number(t) for t in tokens if _is_number(t)))


def numbers_compatible(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """True when the numbers of the text with fewer numbers all occur in the other one.

    A copy wrapped in extra text ("Problem 3 (10 points): ...") keeps every number of the
    original; a template sibling changes some of them.
    """
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    return not (Counter(small) - Counter(big))


def _canon_number(token: str) -> str:
    if "." in token:
        token = token.rstrip("0").rstrip(".") or "0"
    return token.lstrip("0") or "0"


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


class DecontamSettings(BaseModel):
    """Layers and thresholds. Defaults tuned on part of the contamination-audit pairs
    (bench/bench_decontam.py) and checked on the rest."""

    model_config = ConfigDict(extra="forbid")

    exact: bool = True
    ngram: bool = True
    ngram_n: int = Field(13, ge=2)
    ngram_n_short: int = Field(8, ge=2)
    #: texts (the shorter of the pair) with fewer tokens than this use ``ngram_n_short``
    short_tokens: int = Field(100, ge=1)
    #: share of the shorter text's tokens covered by shared n-grams for an n-gram hit
    ngram_coverage: float = Field(0.6, gt=0, le=1)
    #: n of the rarity-aware n-gram rule
    rare_n: int = Field(5, ge=2)
    #: IDF mass of the distinct ``rare_n``-grams shared with one item for a hit (null: rule
    #: off). Weight = ln((N+1)/(df+1)) / ln((N+1)/2) over N benchmark items + background
    #: texts: 1 for an n-gram of one document, ~0 for a stock phrase; so 10 reads "ten rare
    #: shared 5-grams" (~14 words of rare wording). Template siblings stay siblings.
    rare_mass: float | None = Field(10.0, gt=0)
    embedding: bool = True
    embedder: str = "static-minilm"
    #: cosine for a hit when the two texts carry exactly the same (non-empty) numbers (a
    #: paraphrase keeps them); tuned for the default static-minilm embedder, whose cosines
    #: run high. Texts without numbers are left to the lexical layers.
    embedding_cosine: float = Field(0.93, ge=-1, le=1)
    #: cosine for a hit whatever the numbers (off: a changed number makes another problem)
    embedding_cosine_any: float | None = Field(None, ge=-1, le=1)
    template_siblings: bool = True
    #: masked-number n-gram coverage (numbers differing) for a template sibling
    sibling_coverage: float = Field(0.5, gt=0, le=1)
    #: embedding cosine (numbers differing) for a template sibling; off by default, since
    #: same-topic problems reach high cosines and the category would lose its meaning
    sibling_cosine: float | None = Field(None, ge=-1, le=1)
    siblings_are_contamination: bool = False
    strip_asy: bool = True
    boilerplate: list[str] = Field(default_factory=lambda: list(DEFAULT_BOILERPLATE))
    #: candidate items per record examined by the pairwise checks
    top_k: int = Field(5, ge=1)
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
    exact: dict[int, list[int]]
    grams: dict[tuple[int, bool], _Postings]  # (n, masked) → postings
    gram_counts: dict[tuple[int, bool], np.ndarray]  # distinct n-grams per item
    #: IDF of each distinct benchmark ``rare_n``-gram, aligned with ``rare_keys`` (sorted)
    rare_keys: np.ndarray | None = None
    rare_idf: np.ndarray | None = None
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
    clean: str  # normalized text (for the embedder)


def _prepare(text: str, settings: DecontamSettings, boiler: re.Pattern | None) -> _Prepared:
    norm = normalize_text(text, strip_asy=settings.strip_asy, boilerplate=boiler)
    tokens = tokenize(norm)
    return _Prepared(tokens, mask_numbers(tokens), numbers_of(tokens), " ".join(norm.split()))


def _rare_idf(prepared: list[_Prepared], background: list[str] | None, n: int, s: DecontamSettings,
              boiler: re.Pattern | None) -> tuple[np.ndarray, np.ndarray, int]:
    """IDF of every distinct benchmark n-gram over benchmark items + background documents.

    Only the benchmark's n-grams can ever be shared, so only they are kept. Background texts
    equal to a benchmark item (e.g. the full MATH test set around MATH-500) are skipped, so
    they do not count the item twice.
    """
    per_item = [np.unique(ngram_hashes(p.tokens, n)) for p in prepared]
    keys = np.unique(np.concatenate(per_item)) if per_item else np.zeros(0, np.uint64)
    df = np.zeros(len(keys), dtype=np.int64)
    for h in per_item:
        df[np.searchsorted(keys, h)] += 1
    docs = len(prepared)
    seen = {text_hash(p.tokens) for p in prepared if p.tokens}
    found: list[np.ndarray] = []
    for text in background or []:
        toks = tokenize(normalize_text(text, strip_asy=s.strip_asy, boilerplate=boiler))
        if not toks or text_hash(toks) in seen:
            continue
        docs += 1
        h = np.unique(ngram_hashes(toks, n))
        if len(keys) and len(h):
            pos = np.minimum(np.searchsorted(keys, h), len(keys) - 1)
            found.append(pos[keys[pos] == h])
    if found:
        df += np.bincount(np.concatenate(found), minlength=len(keys))
    # scaled so that an n-gram of a single document weighs 1: the mass then reads as "this
    # many rare n-grams" whatever the corpus size
    idf = np.log((docs + 1) / (df + 1)) / np.log((docs + 1) / 2)
    return keys, np.clip(idf, 0, 1).astype(np.float32), docs - len(prepared)


def build_index(items: list[dict], settings: DecontamSettings | dict | None = None, embedder: Any = None,
                background: list[str] | None = None) -> BenchmarkIndex:
    """Build the benchmark index from items ``{benchmark, item_id, text, answer}``.

    ``embedder`` (anything with ``encode(texts) -> normalized rows``) defaults to
    ``reasonmill.embed.get_embedder(settings.embedder)`` when the embedding layer is on.
    ``background``: extra texts (problems like the ones checked, e.g. a benchmark's training
    split) that only supply document frequencies for the rarity-aware n-gram rule; without
    them the frequencies come from the benchmark items alone.
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
    grams: dict[tuple[int, bool], _Postings] = {}
    gram_counts: dict[tuple[int, bool], np.ndarray] = {}
    keys = {(s.ngram_n, False), (s.ngram_n_short, False)}
    if s.ngram and s.rare_mass is not None:
        keys.add((s.rare_n, False))
    if s.template_siblings:
        keys |= {(s.ngram_n, True), (s.ngram_n_short, True)}
    for n, masked in sorted(keys):
        per_item = [ngram_hashes(p.masked if masked else p.tokens, n) for p in prepared]
        grams[(n, masked)] = _Postings.build(per_item)
        gram_counts[(n, masked)] = np.array([len(np.unique(h)) for h in per_item], dtype=np.int32)
    index = BenchmarkIndex(
        settings=s,
        benchmarks=benchmarks,
        item_bench=np.array([bench_of[it["benchmark"]] for it in items], dtype=np.int16),
        item_ids=[str(it["item_id"]) for it in items],
        answers=[it.get("answer") for it in items],
        lengths=np.array([len(p.tokens) for p in prepared], dtype=np.int32),
        numbers=[p.numbers for p in prepared],
        exact=exact,
        grams=grams,
        gram_counts=gram_counts,
        texts=[it["text"] for it in items] if s.judge.enabled else None,
    )
    if s.ngram and s.rare_mass is not None:
        index.rare_keys, index.rare_idf, index.background_docs = _rare_idf(prepared, background, s.rare_n, s, boiler)
    if s.embedding and items:
        if embedder is None:
            from reasonmill.embed import get_embedder

            embedder = get_embedder(s.embedder)
        index.embeddings = np.asarray(embedder.encode([p.clean for p in prepared]), dtype=np.float32)
        index.embedder_name = getattr(embedder, "name", s.embedder)
    return index


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
    ngram: str | None = None  # a shared n-gram, as words of the checked text
    ngram_n: int | None = None
    coverage: float | None = None
    masked_coverage: float | None = None
    rare_mass: float | None = None  # IDF mass of the distinct shared rare_n-grams
    cosine: float | None = None
    numbers_match: bool | None = None
    answer_match: bool | None = None  # the record's reference answer equals the item's answer
    judge: dict | None = None

    def evidence(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def describe(self) -> str:
        parts = [f"{self.benchmark} item {self.item_id} ({self.layer}"]
        if self.coverage is not None and self.layer in ("ngram", "template"):
            parts.append(f", {self.ngram_n}-gram coverage {self.coverage:.2f}")
        if self.rare_mass is not None and self.layer == "ngram":
            parts.append(f", rare-n-gram mass {self.rare_mass:.0f}")
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
    n: int = 0
    coverage: float = 0.0
    masked_coverage: float = 0.0
    gram_pos: int = -1
    cosine: float | None = None
    rare_mass: float = 0.0
    rare_pos: int = -1


def _coverage(index: BenchmarkIndex, p: _Prepared, masked: bool, n: int, hashes: np.ndarray,
              pos: np.ndarray, items: np.ndarray, item: int) -> tuple[float, int]:
    """Share of the shorter text covered by n-grams shared with ``item`` (either side)."""
    sel = items == item
    if not sel.any():
        return 0.0, -1
    hit_pos = np.unique(pos[sel])
    covered = np.zeros(len(p.tokens), dtype=bool)
    for k in range(n):
        covered[hit_pos + k] = True
    own = covered.sum() / max(1, len(p.tokens))
    # the benchmark side: distinct shared n-grams over the item's distinct n-grams (the
    # item's token positions are not stored; this is its coverage up to repeated n-grams)
    shared = len(np.unique(hashes[hit_pos]))
    other = min(1.0, (shared + n - 1) / max(1, index.gram_counts[(n, masked)][item] + n - 1))
    shorter_is_own = len(p.tokens) <= index.lengths[item]
    return float(own if shorter_is_own else other), int(hit_pos[0])


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

    def _pairs(self, p: _Prepared, cos_top: list[tuple[int, float]]) -> dict[int, _Pair]:
        """Candidate items with their n-gram coverages (unmasked and masked) and cosines."""
        s, idx = self.s, self.index
        pairs: dict[int, _Pair] = {}
        lookups = {}
        for key in idx.grams:
            n, masked = key
            toks = p.masked if masked else p.tokens
            h = ngram_hashes(toks, n)
            pos, items = idx.grams[key].lookup(h)
            lookups[key] = (h, pos, items)
        # candidates: items sharing the most n-grams (masked ones find siblings too), and the
        # items with the largest rare-n-gram mass
        votes: Counter = Counter()
        for (n, masked), (_, _, items) in lookups.items():
            if n == s.ngram_n_short:
                votes.update(items.tolist())
        mass: dict[int, tuple[float, int]] = {}
        if s.ngram and s.rare_mass is not None and idx.rare_keys is not None and (s.rare_n, False) in lookups:
            mass = self._rare_mass(*lookups[(s.rare_n, False)])
        cands = [j for j, _ in votes.most_common(s.top_k)] + [j for j, _ in cos_top]
        cands += sorted(mass, key=lambda j: -mass[j][0])[: s.top_k]
        for j in dict.fromkeys(cands):
            n = s.ngram_n if min(len(p.tokens), int(idx.lengths[j])) >= s.short_tokens else s.ngram_n_short
            pair = _Pair(item=j, n=n)
            if (n, False) in lookups:
                h, pos, items = lookups[(n, False)]
                pair.coverage, pair.gram_pos = _coverage(idx, p, False, n, h, pos, items, j)
            if (n, True) in lookups:
                h, pos, items = lookups[(n, True)]
                pair.masked_coverage, _ = _coverage(idx, p, True, n, h, pos, items, j)
            pairs[j] = pair
            if j in mass:
                pair.rare_mass, pair.rare_pos = mass[j]
        for j, c in cos_top:
            pairs[j].cosine = c
        return pairs

    def _rare_mass(self, h: np.ndarray, pos: np.ndarray, items: np.ndarray) -> dict[int, tuple[float, int]]:
        """Per item: IDF mass of the distinct shared n-grams, and the position of the rarest."""
        idx = self.index
        if len(items) == 0:
            return {}
        keys = h[pos]
        w = idx.rare_idf[np.searchsorted(idx.rare_keys, keys)]
        # distinct (item, n-gram) pairs: a repeated n-gram counts once
        order = np.lexsort((keys, items))
        it, ky, ww, ps = items[order], keys[order], w[order], pos[order]
        first = np.ones(len(it), dtype=bool)
        first[1:] = (it[1:] != it[:-1]) | (ky[1:] != ky[:-1])
        it, ww, ps = it[first], ww[first], ps[first]
        out: dict[int, tuple[float, int]] = {}
        for j in np.unique(it):
            sel = it == j
            k = int(np.argmax(ww[sel]))
            out[int(j)] = (float(ww[sel].sum()), int(ps[sel][k]))
        return out

    def _check_one(self, p: _Prepared, cos_top: list[tuple[int, float]], field: str) -> list[Hit]:
        s, idx = self.s, self.index
        if not p.tokens:
            return []
        hits: list[Hit] = []
        if s.exact:
            for j in idx.exact.get(text_hash(p.tokens), []):
                hits.append(self._hit("contaminated", "exact", j, field, coverage=1.0,
                                      numbers_match=True))
        if hits:
            return hits
        for j, pair in self._pairs(p, cos_top).items():
            same_numbers = numbers_compatible(p.numbers, idx.numbers[j])
            ngram = None
            if pair.gram_pos >= 0:
                ngram = " ".join(p.tokens[pair.gram_pos : pair.gram_pos + pair.n])
            ev = dict(ngram=ngram, ngram_n=pair.n if ngram else None, coverage=round(pair.coverage, 4),
                      masked_coverage=round(pair.masked_coverage, 4) if s.template_siblings else None,
                      cosine=None if pair.cosine is None else round(pair.cosine, 4), numbers_match=same_numbers,
                      rare_mass=round(pair.rare_mass, 2) if pair.rare_mass else None)
            sibling = s.template_siblings and not same_numbers and pair.masked_coverage >= s.sibling_coverage
            rare_hit = (s.ngram and s.rare_mass is not None and pair.rare_mass >= s.rare_mass and not sibling)
            if rare_hit and ngram is None and pair.rare_pos >= 0:
                ev["ngram"] = " ".join(p.tokens[pair.rare_pos : pair.rare_pos + s.rare_n])
                ev["ngram_n"] = s.rare_n
            if rare_hit or (s.ngram and pair.coverage >= s.ngram_coverage
                            and (same_numbers or not s.template_siblings)):
                hits.append(self._hit("contaminated", "ngram", j, field, **ev))
            elif s.embedding and pair.cosine is not None and (
                (s.embedding_cosine_any is not None and pair.cosine >= s.embedding_cosine_any)
                or (p.numbers and p.numbers == idx.numbers[j] and pair.cosine >= s.embedding_cosine)
            ):
                hits.append(self._hit("contaminated", "embedding", j, field, **ev))
            elif s.template_siblings and not same_numbers and (
                pair.masked_coverage >= s.sibling_coverage
                or (s.ngram and pair.coverage >= s.ngram_coverage)
                or (s.embedding and s.sibling_cosine is not None and pair.cosine is not None
                    and pair.cosine >= s.sibling_cosine)
            ):
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
