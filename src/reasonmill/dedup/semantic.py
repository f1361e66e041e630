"""Semantic near-duplicates: embeddings → nearest neighbours above a cosine threshold.

Why IVF (SemDeDup-style k-means + exact search inside the probed cells) rather than
HNSW: on 2 cores, building HNSW over a million 256-d vectors takes minutes, while
k-means on a sample plus an inverted-file range search takes seconds, and duplicates at
cosine ≥ 0.9 almost always fall in the same or a neighbouring cell (``nprobe`` cells are
searched). Small inputs use exact blocked search. Links above the threshold are
clustered with the vectorised union-find; callers pick representatives.

Embeddings come from ``reasonmill.embed`` (default: the static MiniLM distillation with
log term frequencies), with the on-disk cache keyed by text hash, so a re-run embeds
nothing twice. The cached rows are raw; centring and removing the top principal
components happen per run, on the texts being deduplicated.

Why the default threshold is 0.93, not the SPEC's 0.95: the SPEC's value is for
transformer embeddings. Cosines of static embeddings after centring and removing two
components have another scale; on the issue-5 corpus (40k rows, planted edits of real
problems) pairwise F1 is 0.94 / 0.958 / 0.953 / 0.940 / 0.914 at 0.90 / 0.93 / 0.94 /
0.95 / 0.96 (bench/results/dedup.md). Set ``threshold`` again for another embedder.
"""

from __future__ import annotations

import functools
import itertools
from typing import Iterable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..embed import Embedder, get_embedder, l2_normalize

#: semantic dedup's default embedder (see ``reasonmill.embed.static.StaticEmbedder``)
DEFAULT_SEMANTIC_EMBEDDER = "static-minilm-logtf"
from .unionfind import connected_components


class SemanticSettings(BaseModel):
    """Knobs of semantic dedup (also the YAML settings of ``dedup.semantic``)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(
        0.93, gt=0, le=1, description="cosine (after centring and removing top components) that makes duplicates"
    )
    embedder: str = DEFAULT_SEMANTIC_EMBEDDER
    cache: bool = Field(True, description="on-disk embedding cache keyed by text hash")
    cache_dir: str | None = Field(None, description="default: $REASONMILL_CACHE or ~/.cache/reasonmill")
    batch_size: int = Field(4096, ge=1)
    chunk_size: int = Field(50_000, ge=1, description="texts embedded per step (bounds memory)")
    search: Literal["auto", "exact", "ivf"] = "auto"
    exact_below: int = Field(50_000, description="'auto' searches exactly below this many vectors")
    nlist: int | None = Field(None, description="IVF cells; default ≈ 2·√n")
    nprobe: int = Field(6, ge=1, description="IVF cells searched per query")
    workers: int = Field(1, ge=1, description="processes embedding chunks (static embedder) and faiss threads")
    center: bool = Field(
        True, description="subtract the mean embedding of the texts being deduplicated, then renormalise"
    )
    center_min: int = Field(1000, ge=2, description="center only groups at least this large (a small mean is noise)")
    remove_components: int = Field(
        2, ge=0, le=32, description="with center: also project out this many top principal components (SIF)"
    )


@functools.lru_cache(maxsize=4)
def _worker_embedder(name: str, cache: bool, cache_dir: str | None) -> Embedder:
    return get_embedder(name, cache=cache, cache_dir=cache_dir)


def _embed_job(args: tuple[list[str], str, bool, str | None, int]) -> np.ndarray:
    texts, name, cache, cache_dir, batch = args
    return _worker_embedder(name, cache, cache_dir).encode(texts, batch_size=batch)


def embed_texts(texts_iter: Iterable[str], settings: SemanticSettings, embedder: Embedder | None = None) -> np.ndarray:
    """Embed in chunks (optionally in worker processes) into one float32 matrix."""
    it = iter(texts_iter)
    chunks = iter(lambda: list(itertools.islice(it, settings.chunk_size)), [])
    parts: list[np.ndarray] = []
    if embedder is None and settings.workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        jobs = ((c, settings.embedder, settings.cache, settings.cache_dir, settings.batch_size) for c in chunks)
        with ctx.Pool(settings.workers) as pool:
            parts.extend(pool.imap(_embed_job, jobs))
    else:
        if embedder is None:
            embedder = get_embedder(settings.embedder, cache=settings.cache, cache_dir=settings.cache_dir)
        for c in chunks:
            parts.append(embedder.encode(c, batch_size=settings.batch_size))
    if not parts:
        return np.empty((0, 0), np.float32)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _exact_edges(x: np.ndarray, threshold: float, block: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ea, eb, es = [], [], []
    for i in range(0, len(x), block):
        sims = x[i : i + block] @ x[i:].T  # only pairs (p, q) with q ≥ p's block start
        r, c = np.nonzero(sims >= threshold)
        rows, cols = r + i, c + i
        keep = cols > rows
        ea.append(rows[keep])
        eb.append(cols[keep])
        es.append(sims[r[keep], c[keep]])
    if not ea:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(ea), np.concatenate(eb), np.concatenate(es)


def _ivf_edges(x: np.ndarray, settings: SemanticSettings, block: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(settings.workers)
    n, d = x.shape
    # Why 2·√n cells, 32 training points per cell and 10 k-means iterations: training is
    # O(sample · nlist · iterations); at a million rows 4·√n cells with 40 points and
    # faiss' 25 iterations took minutes on 2 cores, while the search cost (≈ n · nprobe ·
    # n/nlist dot products) stays ~10 s with these settings.
    nlist = settings.nlist or max(16, int(2 * np.sqrt(n)))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    index.cp.max_points_per_centroid = 32
    rng = np.random.default_rng(0)
    sample = x[np.sort(rng.choice(n, size=min(n, nlist * 32), replace=False))]
    index.train(sample)
    index.add(x)
    index.nprobe = min(settings.nprobe, nlist)
    ea, eb, es = [], [], []
    for i in range(0, n, block):
        lims, dist, ids = index.range_search(x[i : i + block], settings.threshold)
        rows = np.repeat(np.arange(i, i + len(lims) - 1), np.diff(lims).astype(np.int64))
        keep = ids > rows
        ea.append(rows[keep])
        eb.append(ids[keep])
        es.append(dist[keep])
    return np.concatenate(ea), np.concatenate(eb), np.concatenate(es)


def _remove_top_components(x: np.ndarray, k: int, sample: int = 20_000) -> np.ndarray:
    """Project out the top ``k`` principal directions (estimated on a fixed sample).

    Why: after removing the mean, a few directions still carry "this is a word problem" /
    "this is code" and dominate the cosine of long texts (SIF's common component,
    "all-but-the-top"). Two components raised F1 on the issue-5 corpus from 0.955 to 0.958
    and widened the good threshold range (≥ 0.94 from 0.90 to 0.95).
    """
    rng = np.random.default_rng(0)
    rows = x if len(x) <= sample else x[np.sort(rng.choice(len(x), size=sample, replace=False))]
    _, _, vt = np.linalg.svd(rows.astype(np.float64), full_matrices=False)
    v = vt[:k].astype(np.float32)
    for i in range(0, len(x), 65536):  # in place, by blocks: no second n×d matrix at 1M rows
        blk = x[i : i + 65536]
        blk -= (blk @ v.T) @ v
    return x


def similar_pairs(
    x: np.ndarray, settings: SemanticSettings, inplace: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (a < b) with cosine ≥ threshold, plus the cosine; zero rows never match.

    ``inplace=True`` lets centring overwrite ``x`` when no row is zero (saves one n×d
    copy, 1 GB at a million 256-d rows); callers pass it when ``x`` is theirs alone.
    """
    alive = np.nonzero(np.any(x != 0, axis=1))[0]
    if inplace and len(alive) == len(x) and x.dtype == np.float32 and x.flags.c_contiguous:
        sub = x
    else:
        sub = np.ascontiguousarray(x[alive], dtype=np.float32)
    if settings.center and len(sub) >= settings.center_min:
        # Why: static (and many transformer) embeddings share a common component, so
        # long unrelated texts reach cosine 0.9+. Removing the corpus mean (SIF's common
        # component) restores contrast; the cached raw embeddings are unchanged.
        sub -= sub.mean(axis=0, dtype=np.float64).astype(np.float32)
        if settings.remove_components:
            sub = _remove_top_components(sub, settings.remove_components)
        sub = l2_normalize(sub)
    if len(sub) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    exact = settings.search == "exact" or (settings.search == "auto" and len(sub) < settings.exact_below)
    a, b, s = _exact_edges(sub, settings.threshold) if exact else _ivf_edges(sub, settings)
    return alive[a].astype(np.int64), alive[b].astype(np.int64), s.astype(np.float32)


def grouped_pairs(
    x: np.ndarray, settings: SemanticSettings, groups: np.ndarray | None = None, inplace: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``similar_pairs`` run separately inside each group (e.g. per category)."""
    if groups is None:
        return similar_pairs(x, settings, inplace=inplace)
    ea, eb, es = [], [], []
    for g in np.unique(groups):
        rows = np.nonzero(groups == g)[0]
        a, b, s = similar_pairs(x[rows], settings)
        ea.append(rows[a])
        eb.append(rows[b])
        es.append(s)
    if not ea:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(ea), np.concatenate(eb), np.concatenate(es)


def semantic_clusters(
    texts_iter: Iterable[str],
    settings: SemanticSettings | dict | None = None,
    embedder: Embedder | None = None,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster label per text (smallest row index of its semantic-duplicate cluster)."""
    if not isinstance(settings, SemanticSettings):
        settings = SemanticSettings(**(settings or {}))
    x = embed_texts(texts_iter, settings, embedder)
    a, b, _ = grouped_pairs(x, settings, groups, inplace=True)
    return connected_components(len(x), a, b)
