"""Global near-duplicate stages: ``dedup.minhash`` and ``dedup.semantic``.

``build`` streams the shards once and keeps, per record, only compact info: the id, the
keep-priority key (``reasonmill.dedup.priority.priority_key``) and the category, next to
the MinHash band hashes / signatures or the embeddings. It returns the index
``{record_id: (representative_id, evidence)}`` for the records to drop; ``process`` then
drops them from each shard with the reason ``near_duplicate`` / ``semantic_duplicate``.
The member of each cluster with the smallest priority key is kept.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterable

import numpy as np
import xxhash
from pydantic import Field

from ..dedup.minhash import MinHashIndex, MinHashSettings, NumbersMode, TokensMode
from ..dedup.priority import priority_key
from ..dedup.semantic import DEFAULT_SEMANTIC_EMBEDDER, SemanticSettings, embed_and_words, semantic_links
from ..dedup.unionfind import connected_components
from .base import Resources, Stage, StageOutput, StageSettings, stage

DropIndex = dict[str, tuple[str, dict[str, Any]]]


class _Common(StageSettings):
    field: str = Field("problem", description="record field holding the text to compare")
    per_category: bool = Field(False, description="only records of the same category can be duplicates")
    source_rank: list[str] = Field(default_factory=list, description="source names, best first (keep priority)")


def _text(record: dict, field: str) -> str:
    value = record.get(field)
    return value if isinstance(value, str) else ""


def _category_hash(category: Any) -> int:
    return xxhash.xxh3_64_intdigest(str(category or "").encode("utf-8"))


class _Compact:
    """Per-record info kept by ``build``: ids, priority keys, categories (no texts)."""

    def __init__(self, source_rank: list[str]):
        self.rank = {name: i for i, name in enumerate(source_rank)}
        self.ids: list[str] = []
        self.keys: list[tuple] = []
        self.categories: list[str | None] = []

    def add(self, record: dict) -> None:
        self.ids.append(str(record["id"]))
        self.keys.append(priority_key(record, self.rank))
        self.categories.append(record.get("category"))


def _drop_index(
    compact: _Compact,
    labels: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    sim: np.ndarray,
    metric: str,
    extra: tuple[str, np.ndarray] | None = None,
) -> DropIndex:
    """Pick each cluster's representative by priority key; evidence for every other member."""
    n = len(labels)
    if n == 0:
        return {}
    sizes = np.bincount(labels, minlength=n)
    # best similarity each member has to any cluster-mate it was linked with, and to the rep
    pair_sim: dict[tuple[int, int], float] = {}
    pair_extra: dict[tuple[int, int], float] = {}
    if extra is not None:
        pair_extra = dict(zip(zip(a.tolist(), b.tolist()), extra[1].tolist()))
    best = np.full(n, np.nan, np.float32)
    for x, y, s in zip(a.tolist(), b.tolist(), sim.tolist()):
        pair_sim[(x, y)] = s
        if not best[x] >= s:
            best[x] = s
        if not best[y] >= s:
            best[y] = s
    members: dict[int, list[int]] = {}
    for i in np.nonzero(sizes[labels] > 1)[0].tolist():
        members.setdefault(int(labels[i]), []).append(i)
    out: DropIndex = {}
    for group in members.values():
        rep = min(group, key=lambda i: compact.keys[i])
        for i in group:
            if i == rep:
                continue
            direct = pair_sim.get((min(i, rep), max(i, rep)))
            evidence: dict[str, Any] = {
                "representative": compact.ids[rep],
                "cluster_size": len(group),
                metric: None if direct is None or np.isnan(direct) else round(float(direct), 4),
                f"best_{metric}": None if np.isnan(best[i]) else round(float(best[i]), 4),
            }
            if extra is not None:
                value = pair_extra.get((min(i, rep), max(i, rep)))
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
        threshold: float = Field(0.55, gt=0, lt=1, description="Jaccard similarity of the n-gram sets")
        ngram: int = Field(3, ge=1)
        num_perm: int = Field(128, ge=8, le=1024)
        bands: int | None = None
        rows: int | None = None
        verify: bool = True
        lsh_recall: float = Field(0.95, gt=0, lt=1)
        numbers: NumbersMode = "mask"
        tokens: TokensMode = "whitespace"
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
        compact = _Compact(s.source_rank)
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
        return _drop_index(compact, labels, a, b, jac, "jaccard")

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
        numbers: str = Field("mask", pattern="^(mask|keep|strict)$", description="word check: strict = same numbers")
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
        compact = _Compact(s.source_rank)

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
