"""Global near-duplicate stages: ``dedup.minhash`` and ``dedup.semantic``.

``build`` streams the shards once and keeps, per record, only compact info: the id, the
keep-priority key (``reasonmill.dedup.priority.priority_key``) and the category, next to
the MinHash band hashes / signatures or the embeddings. It returns the index
``{record_id: (representative_id, evidence)}`` for the records to drop; ``process`` then
drops them from each shard with the reason ``near_duplicate`` / ``semantic_duplicate``.

How links become drops (``_drop_index``), and why:

* ``conflicts`` (default on): a link between two records that both have a reference
  answer, or both have tests, and whose answers / test sets differ is dropped
  (``reasonmill.dedup.conflict``): template siblings share words, not answers.
* ``clustering: star`` (default): no chaining. Members are visited best keep-priority
  first; an unassigned member becomes a representative and takes the unassigned members
  it is *directly* linked to (a verified similarity to the representative itself, not to
  some neighbour). A~B~C with A !~ C never drops C for A. ``components`` is the old
  behaviour (connected components of all links), kept for comparison.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Literal

import numpy as np
import xxhash
from pydantic import Field

from ..dedup.conflict import conflicts, record_keys
from ..dedup.minhash import MinHashIndex, MinHashSettings, NumbersMode, TokensMode
from ..dedup.priority import priority_key
from ..dedup.semantic import DEFAULT_SEMANTIC_EMBEDDER, SemanticSettings, embed_and_words, semantic_links
from ..dedup.unionfind import connected_components
from .base import Resources, Stage, StageOutput, StageSettings, stage

DropIndex = dict[str, tuple[str, dict[str, Any]]]
#: (rows a, rows b) -> similarity of each pair, NaN where it is no duplicate by the stage's test
PairCheck = Callable[[np.ndarray, np.ndarray], np.ndarray]


class _Common(StageSettings):
    field: str = Field("problem", description="record field holding the text to compare")
    per_category: bool = Field(False, description="only records of the same category can be duplicates")
    source_rank: list[str] = Field(default_factory=list, description="source names, best first (keep priority)")
    conflicts: bool = Field(
        True, description="different reference answers / tests (both present) block a merge"
    )
    clustering: Literal["star", "components"] = Field(
        "star", description="star: each dropped record is linked to its representative directly (no chaining)"
    )


def _text(record: dict, field: str) -> str:
    value = record.get(field)
    return value if isinstance(value, str) else ""


def _category_hash(category: Any) -> int:
    return xxhash.xxh3_64_intdigest(str(category or "").encode("utf-8"))


class _Compact:
    """Per-record info kept by ``build``: ids, priority keys, categories, answer / tests
    hashes (no texts), and how links become clusters (``conflicts``, ``clustering``)."""

    def __init__(self, source_rank: list[str], conflicts: bool = True, clustering: str = "star"):
        self.rank = {name: i for i, name in enumerate(source_rank)}
        self.conflicts = conflicts
        self.clustering = clustering
        self.ids: list[str] = []
        self.keys: list[tuple] = []
        self.categories: list[str | None] = []
        self.answers: list[int] = []
        self.tests: list[int] = []

    @classmethod
    def for_settings(cls, settings: _Common) -> "_Compact":
        return cls(settings.source_rank, settings.conflicts, settings.clustering)

    def add(self, record: dict) -> None:
        self.ids.append(str(record["id"]))
        self.keys.append(priority_key(record, self.rank))
        self.categories.append(record.get("category"))
        answer, tests = record_keys(record) if self.conflicts else (0, 0)
        self.answers.append(answer)
        self.tests.append(tests)

    def extend(self, other: "_Compact") -> None:
        """Append the rows of another shard's compact info (distributed builds)."""
        for name in ("ids", "keys", "categories", "answers", "tests"):
            getattr(self, name).extend(getattr(other, name))

    def conflicting(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Mask of links whose two records have different answers or different tests."""
        if not self.conflicts or not len(a):
            return np.zeros(len(a), bool)
        answers = np.fromiter(self.answers, np.uint64, len(self.answers))
        tests = np.fromiter(self.tests, np.uint64, len(self.tests))
        return conflicts(answers, tests, a, b)


#: two-hop members verified per representative (see ``_star_groups``)
_MAX_TWO_HOP = 4096


def _star_groups(
    keys: list[tuple],
    members: list[int],
    adjacent: dict[int, set[int]],
    verify: PairCheck | None = None,
    found: dict[tuple[int, int], float] | None = None,
) -> list[list[int]]:
    """Split one linked component into stars: best priority first, a free member becomes a
    representative and takes the free members linked to it directly ([rep, *members]).

    LSH links every bucket member to the bucket's first row, not to each other, so the
    representative is often two links away from its copies; ``verify(rep, others)`` then
    checks those two-hop members against the representative itself (their similarity is
    added to ``found``), at most ``_MAX_TWO_HOP`` per representative so that a hub with
    thousands of links cannot make this quadratic (the rest are tried by the next
    representatives)."""
    groups: list[list[int]] = []
    free = set(members)
    for m in sorted(members, key=keys.__getitem__):
        if m not in free:
            continue
        free.discard(m)
        near = adjacent.get(m, set())
        taken = sorted(near & free)
        if verify is not None:
            reach: set[int] = set()
            for x in near:
                reach |= adjacent.get(x, set()) & free
            two_hop = sorted(reach - near)[:_MAX_TWO_HOP]
            if two_hop:
                sims = verify(np.full(len(two_hop), m, np.int64), np.array(two_hop, np.int64)).tolist()
                accepted = [(y, s) for y, s in zip(two_hop, sims) if s == s]  # s == s: not NaN
                if found is not None:
                    found.update(((min(m, y), max(m, y)), s) for y, s in accepted)
                taken = sorted(taken + [y for y, _ in accepted])
        free.difference_update(taken)
        if taken:
            groups.append([m, *taken])
    return groups


def _drop_index(
    compact: _Compact,
    labels: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    sim: np.ndarray,
    metric: str,
    extra: tuple[str, np.ndarray] | None = None,
    verify: PairCheck | None = None,
) -> DropIndex:
    """Links → clusters → the records to drop, with evidence.

    ``labels`` are the connected components of the links (they bound the work: only
    components with two or more members are visited). Conflicting links are removed
    first; then each component is split into stars (``clustering: star``) or kept whole
    (``components``), and every member but the best-priority one of its group is dropped.
    ``verify`` (optional) tests pairs that were not linked directly (see ``_star_groups``).
    """
    n = len(labels)
    if n == 0:
        return {}
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    extra_values = extra[1] if extra is not None else None
    blocked = compact.conflicting(a, b)
    if blocked.any():
        keep = ~blocked
        a, b, sim = a[keep], b[keep], sim[keep]
        extra_values = extra_values[keep] if extra_values is not None else None
        labels = connected_components(n, a, b)
    sizes = np.bincount(labels, minlength=n)
    pair_sim: dict[tuple[int, int], float] = {}
    pair_extra: dict[tuple[int, int], float] = {}
    if extra_values is not None:
        pair_extra = dict(zip(zip(a.tolist(), b.tolist()), extra_values.tolist()))
    best = np.full(n, np.nan, np.float32)
    adjacent: dict[int, set[int]] = {}
    for x, y, s in zip(a.tolist(), b.tolist(), sim.tolist()):
        pair_sim[(min(x, y), max(x, y))] = s
        adjacent.setdefault(x, set()).add(y)
        adjacent.setdefault(y, set()).add(x)
        if not best[x] >= s:
            best[x] = s
        if not best[y] >= s:
            best[y] = s
    components: dict[int, list[int]] = {}
    for i in np.nonzero(sizes[labels] > 1)[0].tolist():
        components.setdefault(int(labels[i]), []).append(i)
    checked: PairCheck | None = None
    if verify is not None:

        def checked(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            sims = np.asarray(verify(x, y), np.float32).copy()
            sims[compact.conflicting(x, y)] = np.nan
            return sims

    groups: list[list[int]] = []
    for members in components.values():
        if compact.clustering == "star":
            groups += _star_groups(compact.keys, members, adjacent, checked, pair_sim)
        else:
            rep = min(members, key=compact.keys.__getitem__)
            groups.append([rep, *(i for i in members if i != rep)])
    out: DropIndex = {}
    for rep, *dropped in groups:
        for i in dropped:
            direct = pair_sim.get((min(i, rep), max(i, rep)))
            evidence: dict[str, Any] = {
                "representative": compact.ids[rep],
                "cluster_size": len(dropped) + 1,
                metric: None if direct is None or np.isnan(direct) else round(float(direct), 4),
                f"best_{metric}": None if np.isnan(best[i]) else round(float(best[i]), 4),
            }
            if extra is not None:
                value = pair_extra.get((i, rep)) if (i, rep) in pair_extra else pair_extra.get((rep, i))
                evidence[extra[0]] = None if value is None or np.isnan(value) else round(float(value), 4)
            if compact.categories[i] is not None:
                evidence["category"] = compact.categories[i]
            out[compact.ids[i]] = (compact.ids[rep], evidence)
    return out


def _apply(records: list[dict], index: DropIndex, reason: str, what: str) -> StageOutput:
    out = StageOutput()
    for record in records:
        hit = index.get(str(record["id"])) if index else None
        if hit is None:
            out.kept.append(record)
            continue
        rep, evidence = hit
        out.drop(record, reason, f"{what} of {rep} (cluster of {evidence.get('cluster_size')})", **evidence)
    return out


@stage("dedup.minhash")
class MinHashDedup(Stage):
    """Near-duplicates by MinHash LSH over word n-grams; keeps the best record per cluster."""

    kind: ClassVar = "global"
    resources: ClassVar[Resources] = Resources(cpus=2, memory_mb=2048, executor="inline")

    class Settings(_Common):
        threshold: float = Field(0.5, gt=0, lt=1, description="Jaccard similarity of the n-gram sets")
        ngram: int = Field(2, ge=1)
        num_perm: int = Field(128, ge=8, le=1024)
        bands: int | None = None
        rows: int | None = None
        verify: bool = True
        lsh_recall: float = Field(0.95, gt=0, lt=1)
        numbers: NumbersMode = "strict"
        tokens: TokensMode = "math"
        strip_punct: bool = True
        seed: int = 1
        chunk_size: int = Field(20_000, ge=1)
        workers: int = Field(1, ge=1)

    def _minhash_settings(self) -> MinHashSettings:
        s = self.settings
        return MinHashSettings(
            ngram=s.ngram, num_perm=s.num_perm, threshold=s.threshold, bands=s.bands, rows=s.rows,
            verify=s.verify, lsh_recall=s.lsh_recall, numbers=s.numbers, tokens=s.tokens,
            strip_punct=s.strip_punct, seed=s.seed, chunk_size=s.chunk_size,
            workers=s.workers,
        )

    def build(self, shards: Iterable[list[dict]]) -> DropIndex:
        s = self.settings
        index = MinHashIndex(self._minhash_settings())
        compact = _Compact.for_settings(s)
        buf_texts: list[str] = []
        buf_groups: list[int] = []

        def flush() -> None:
            groups = np.array(buf_groups, dtype=np.uint64) if s.per_category else None
            index.add(buf_texts, group=groups)
            buf_texts.clear()
            buf_groups.clear()

        for shard in shards:
            for record in shard:
                compact.add(record)
                buf_texts.append(_text(record, s.field))
                buf_groups.append(_category_hash(record.get("category")))
                if len(buf_texts) >= s.chunk_size:
                    flush()
        if buf_texts:
            flush()
        a, b, jac = index.edges()
        if s.per_category and len(a):  # band hashes already separate categories; be explicit
            same = np.array([compact.categories[x] == compact.categories[y] for x, y in zip(a.tolist(), b.tolist())], bool)
            a, b, jac = a[same], b[same], jac[same]
        labels = connected_components(len(compact.ids), a, b)
        return _drop_index(compact, labels, a, b, jac, "jaccard", verify=index.pair_check)

    def process(self, records: list[dict], index: DropIndex | None = None) -> StageOutput:
        return _apply(records, index or {}, "near_duplicate", "near-duplicate (MinHash)")


@stage("dedup.semantic")
class SemanticDedup(Stage):
    """Semantic duplicates: embeddings + nearest neighbours above a cosine threshold."""

    kind: ClassVar = "global"
    resources: ClassVar[Resources] = Resources(cpus=2, memory_mb=4096, executor="inline")

    class Settings(_Common):
        threshold: float = Field(
            0.93, gt=0, le=1, description="cosine that alone makes duplicates without the word check (see dedup.semantic)"
        )
        candidate_threshold: float = Field(0.87, gt=0, le=1, description="with the word check: cosine of candidate links")
        min_word_jaccard: float = Field(0.75, ge=0, le=1, description="word-set Jaccard needed below accept_cosine (0: off)")
        accept_cosine: float = Field(0.97, gt=0, le=1.0001, description="links at or above skip the word check")
        numbers: str = Field("strict", pattern="^(mask|keep|strict)$", description="word check: strict = same numbers")
        embedder: str = DEFAULT_SEMANTIC_EMBEDDER
        cache: bool = True
        cache_dir: str | None = None
        batch_size: int = Field(4096, ge=1)
        chunk_size: int = Field(50_000, ge=1)
        search: str = Field("auto", pattern="^(auto|exact|cells|ivf)$")
        nlist: int | None = Field(None, ge=1)
        nprobe: int = Field(3, ge=1)
        workers: int = Field(1, ge=1)
        center: bool = True
        remove_components: int = Field(2, ge=0, le=32)

    #: tests and callers may inject an embedder object (e.g. to count encoder calls)
    embedder_override: Any = None

    def _semantic_settings(self) -> SemanticSettings:
        s = self.settings
        cache_dir = s.cache_dir or self.context.cache_dir
        return SemanticSettings(
            threshold=s.threshold, candidate_threshold=s.candidate_threshold, min_word_jaccard=s.min_word_jaccard,
            accept_cosine=s.accept_cosine, numbers=s.numbers, embedder=s.embedder, cache=s.cache, cache_dir=cache_dir,
            batch_size=s.batch_size, chunk_size=s.chunk_size, search=s.search, nlist=s.nlist, nprobe=s.nprobe,
            workers=s.workers,
            center=s.center, remove_components=s.remove_components,
        )

    def build(self, shards: Iterable[list[dict]]) -> DropIndex:
        s = self.settings
        compact = _Compact.for_settings(s)

        def texts() -> Iterable[str]:
            for shard in shards:
                for record in shard:
                    compact.add(record)
                    yield _text(record, s.field)

        x, words = embed_and_words(texts(), self._semantic_settings(), self.embedder_override)
        groups = None
        if s.per_category:
            _, groups = np.unique(np.array([str(c) for c in compact.categories]), return_inverse=True)
        a, b, cos, wj = semantic_links(x, words, self._semantic_settings(), groups, inplace=True)
        labels = connected_components(len(compact.ids), a, b)
        return _drop_index(compact, labels, a, b, cos, "cosine", ("word_jaccard", wj) if words is not None else None)

    def process(self, records: list[dict], index: DropIndex | None = None) -> StageOutput:
        return _apply(records, index or {}, "semantic_duplicate", "semantic duplicate")
