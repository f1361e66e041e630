"""Semantic near-duplicates: embeddings → nearest neighbours above a cosine threshold.

Pipeline: embed (cached by text hash) → centre + remove the top principal components →
candidate links with cosine ≥ ``threshold`` → a cheap lexical check of each candidate →
connected components (vectorised union-find); callers pick representatives.

Search (``search: auto``): exact blocked matrix products below ``exact_below`` vectors,
else SemDeDup-style cells: spherical k-means (numpy, on a sample) into ``nlist`` ≈ 2·√n
cells, every vector is stored in its nearest cell and queries its ``nprobe`` (3) nearest
cells, and each cell is searched exactly by one float32 matrix product (BLAS). A pair is
found when either member's probes reach the other's cell. Why not faiss IVF any more:
its inverted-list scan is not a matrix product; at a million rows it took ~330 s on 2
cores where the cell products take ~30 s, with 99.4% of the exact search's pairs at 200k.
(``search: ivf`` keeps the faiss index for comparison.)

Candidate check (``min_word_jaccard``, default 0.75): a link with cosine below
``accept_cosine`` (0.97) must also share a word-set Jaccard ≥ 0.75 (whitespace tokens,
lower-cased, trailing punctuation stripped, digits masked; Jaccard of the two word
sets). Why: a static (bag-of-token) embedding cannot tell an edited copy from two
different problems that share a long block (an [asy] figure, a sample-input section, a
template); cosine alone peaked at F1 0.93 on the issue-5 corpus at 200k and fell with
corpus size, while an edited copy keeps most of its words. Candidates therefore come
from a lower cosine (``candidate_threshold`` 0.87, i.e. more recall) and the word check restores precision
(F1 0.97 at 200k, bench/results/dedup.md). Pairs at cosine ≥ ``accept_cosine`` need no
word check, so paraphrases the embedding is sure about are still merged. The check uses
per-text sorted word-hash sets (≈ 4 bytes per distinct word), never texts.
``min_word_jaccard: 0`` restores the pure cosine rule: cosine ≥ ``threshold`` (0.93);
``grouped_pairs`` (no word sets) also applies that rule.

Numbers: ``numbers: strict`` (default) requires the same multiset of numbers ("3, 4, 5"
vs "5, 12, 13" stay apart, even above ``accept_cosine``): on the labelled real pairs of
issue 12 (bench/bench_dedup_decisions.py) it took precision from 0.77 to 0.98 at the same
recall (0.80), with the stage's answer check and star clusters. ``mask`` masks digits in
the word check, so template siblings that differ only in numbers can merge (the old
default).

Embeddings come from ``reasonmill.embed`` (default: the static MiniLM distillation with
log term frequencies), with the on-disk cache keyed by text hash, so a re-run embeds
nothing twice. The cached rows are raw; centring and removing the top principal
components happen per run, on the texts being deduplicated.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Iterable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..embed import Embedder, get_embedder, l2_normalize
from .unionfind import connected_components

#: semantic dedup's default embedder (see ``reasonmill.embed.static.StaticEmbedder``)
DEFAULT_SEMANTIC_EMBEDDER = "static-minilm-logtf"


class SemanticSettings(BaseModel):
    """Knobs of semantic dedup (also the YAML settings of ``dedup.semantic``)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(
        0.93, gt=0, le=1,
        description="cosine (after centring and removing top components) that alone makes duplicates when no "
        "word check runs (min_word_jaccard 0, or grouped_pairs called without word sets)",
    )
    candidate_threshold: float = Field(
        0.87, gt=0, le=1, description="with the word check: cosine of candidate links (checked by words below accept_cosine)"
    )
    min_word_jaccard: float = Field(
        0.75, ge=0, le=1, description="links below accept_cosine must share this Jaccard of word sets (0: off)"
    )
    accept_cosine: float = Field(0.97, gt=0, le=1.0001, description="links at or above this cosine skip the word check")
    numbers: Literal["mask", "keep", "strict"] = Field(
        "strict", description="word check: mask digits | keep them | strict: also the same multiset of numbers"
    )
    embedder: str = DEFAULT_SEMANTIC_EMBEDDER
    cache: bool = Field(True, description="on-disk embedding cache keyed by text hash")
    cache_dir: str | None = Field(None, description="default: $REASONMILL_CACHE or ~/.cache/reasonmill")
    batch_size: int = Field(4096, ge=1)
    chunk_size: int = Field(50_000, ge=1, description="texts embedded per step (bounds memory)")
    search: Literal["auto", "exact", "cells", "ivf"] = "auto"
    exact_below: int = Field(50_000, description="'auto' searches exactly below this many vectors, else by cells")
    nlist: int | None = Field(None, description="k-means cells (cells / IVF); default ≈ 2·√n")
    nprobe: int = Field(3, ge=1, description="nearest cells each vector queries")
    workers: int = Field(1, ge=1, description="processes embedding chunks (static embedder) and faiss threads")
    center: bool = Field(
        True, description="subtract the mean embedding of the texts being deduplicated, then renormalise"
    )
    center_min: int = Field(1000, ge=2, description="center only groups at least this large (a small mean is noise)")
    remove_components: int = Field(
        2, ge=0, le=32, description="with center: also project out this many top principal components (SIF)"
    )

    @property
    def check_words(self) -> bool:
        return self.min_word_jaccard > 0 or self.numbers == "strict"


# ----------------------------------------------------------------------------- word sets
@dataclass
class WordSets:
    """Sorted distinct word hashes of every text (CSR), plus a number-multiset hash."""

    hashes: np.ndarray  # uint32 [total]
    offsets: np.ndarray  # int64 [n + 1]
    numbers: np.ndarray  # uint64 [n]; 0 = no number (only filled in "strict" mode)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @staticmethod
    def concat(parts: list["WordSets"]) -> "WordSets":
        if len(parts) == 1:
            return parts[0]
        sizes = [int(p.offsets[-1]) for p in parts]
        shift = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        offsets = np.concatenate([[0]] + [p.offsets[1:] + k for p, k in zip(parts, shift)]).astype(np.int64)
        return WordSets(
            np.concatenate([p.hashes for p in parts]), offsets, np.concatenate([p.numbers for p in parts])
        )


def word_sets(texts: list[str], numbers: str = "mask", step: int = 8192) -> WordSets:
    """Distinct whitespace words of each text (lower-cased, trailing punctuation stripped)."""
    if len(texts) > step:  # the tokeniser holds ~40 bytes per character: bound it
        return WordSets.concat([word_sets(texts[i : i + step], numbers, step) for i in range(0, len(texts), step)])
    from .minhash import shingle_hashes

    ch = shingle_hashes(texts, 1, numbers, "whitespace", True)  # type: ignore[arg-type]
    n = len(texts)
    counts = np.diff(ch.offsets.astype(np.int64))
    doc = np.repeat(np.arange(n, dtype=np.uint64), counts)
    keys = np.sort((doc << np.uint64(32)) | (ch.hashes & np.uint64(0xFFFFFFFF)))
    if len(keys):  # distinct (not np.unique: its hash-table path is ~10x slower here)
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=n), out=offsets[1:])
    return WordSets((keys & np.uint64(0xFFFFFFFF)).astype(np.uint32), offsets, ch.numbers)


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for every (s, l)."""
    total = int(lens.sum())
    firsts = np.cumsum(lens) - lens
    return np.arange(total, dtype=np.int64) - np.repeat(firsts - starts, lens)


def word_jaccard(ws: WordSets, a: np.ndarray, b: np.ndarray, block: int = 32768) -> np.ndarray:
    """Exact Jaccard of the word sets of rows ``a[k]`` and ``b[k]`` (1.0 for two empty sets)."""
    out = np.empty(len(a), np.float32)
    off = ws.offsets
    for i in range(0, len(a), block):
        aa, bb = a[i : i + block], b[i : i + block]
        la, lb = off[aa + 1] - off[aa], off[bb + 1] - off[bb]
        m = len(aa)
        pair = np.arange(m, dtype=np.uint64) << np.uint64(32)
        # keys (pair, word) are sorted: pairs increase, each set is sorted
        ka = np.repeat(pair, la) | ws.hashes[_ranges(off[aa], la)]
        kb = np.repeat(pair, lb) | ws.hashes[_ranges(off[bb], lb)]
        pos = np.minimum(np.searchsorted(kb, ka), max(len(kb) - 1, 0))
        hit = kb[pos] == ka if len(kb) else np.zeros(len(ka), bool)
        inter = np.bincount((ka[hit] >> np.uint64(32)).astype(np.int64), minlength=m)
        union = la + lb - inter
        out[i : i + block] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return out


# ----------------------------------------------------------------------------- embedding
@functools.lru_cache(maxsize=4)
def _worker_embedder(name: str, cache: bool, cache_dir: str | None) -> Embedder:
    return get_embedder(name, cache=cache, cache_dir=cache_dir)


def _embed_job(args: tuple[list[str], str, bool, str | None, int, str | None]) -> tuple[np.ndarray, WordSets | None]:
    texts, name, cache, cache_dir, batch, numbers = args
    x = _worker_embedder(name, cache, cache_dir).encode(texts, batch_size=batch)
    return x, (word_sets(texts, numbers) if numbers else None)


def embed_and_words(
    texts_iter: Iterable[str], settings: SemanticSettings, embedder: Embedder | None = None
) -> tuple[np.ndarray, WordSets | None]:
    """Embed in chunks (optionally in worker processes) into one float32 matrix; with the
    word check on, also the texts' word sets (so no text is kept for the check)."""
    it = iter(texts_iter)
    chunks = iter(lambda: list(itertools.islice(it, settings.chunk_size)), [])
    numbers = settings.numbers if settings.check_words else None
    parts: list[tuple[np.ndarray, WordSets | None]] = []
    if embedder is None and settings.workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        jobs = ((c, settings.embedder, settings.cache, settings.cache_dir, settings.batch_size, numbers) for c in chunks)
        with ctx.Pool(settings.workers) as pool:
            parts.extend(pool.imap(_embed_job, jobs))
    else:
        if embedder is None:
            embedder = get_embedder(settings.embedder, cache=settings.cache, cache_dir=settings.cache_dir)
        for c in chunks:
            parts.append((embedder.encode(c, batch_size=settings.batch_size), word_sets(c, numbers) if numbers else None))
    if not parts:
        return np.empty((0, 0), np.float32), (word_sets([], numbers) if numbers else None)
    from .minhash import _merge_chunks

    words = WordSets.concat([p[1] for p in parts]) if numbers else None  # type: ignore[misc]
    vecs = [p[0] for p in parts]
    del parts
    return _merge_chunks(vecs), words  # frees each chunk as it is copied: no second n×d matrix


def embed_texts(texts_iter: Iterable[str], settings: SemanticSettings, embedder: Embedder | None = None) -> np.ndarray:
    """Embed in chunks (optionally in worker processes) into one float32 matrix."""
    return embed_and_words(texts_iter, settings.model_copy(update={"min_word_jaccard": 0.0, "numbers": "mask"}), embedder)[0]


# ----------------------------------------------------------------------------- search
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


def spherical_kmeans(x: np.ndarray, k: int, iters: int = 10, sample: int = 32, seed: int = 0) -> np.ndarray:
    """Unit-norm centroids of ``k`` cells, trained on ≤ ``sample``·k rows (float32 BLAS)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    rows = x if n <= sample * k else x[np.sort(rng.choice(n, size=sample * k, replace=False))]
    cent = rows[rng.choice(len(rows), size=k, replace=False)].copy()
    for _ in range(iters):
        assign = np.empty(len(rows), np.int64)
        for i in range(0, len(rows), 16384):
            assign[i : i + 16384] = np.argmax(rows[i : i + 16384] @ cent.T, axis=1)
        new = np.zeros_like(cent)
        _scatter_add(new, assign, rows)
        empty = ~np.any(new != 0, axis=1)
        if empty.any():  # re-seed empty cells with random rows
            new[empty] = rows[rng.choice(len(rows), size=int(empty.sum()), replace=False)]
        cent = l2_normalize(new)
    return cent.astype(np.float32)


def _scatter_add(out: np.ndarray, idx: np.ndarray, rows: np.ndarray) -> None:
    order = np.argsort(idx, kind="stable")
    sidx = idx[order]
    starts = np.nonzero(np.r_[True, sidx[1:] != sidx[:-1]])[0]
    out[sidx[starts]] += np.add.reduceat(rows[order], starts, axis=0)


def _top_cells(x: np.ndarray, cent: np.ndarray, p: int, block: int = 8192) -> np.ndarray:
    """Indices of each row's ``p`` nearest centroids, nearest first (p argmax passes)."""
    top = np.empty((len(x), p), np.int32)
    for i in range(0, len(x), block):
        sc = x[i : i + block] @ cent.T
        rows = np.arange(len(sc))
        for j in range(p):
            best = np.argmax(sc, axis=1)
            top[i : i + block, j] = best
            sc[rows, best] = -np.inf
    return top


def _cell_edges(
    x: np.ndarray, settings: SemanticSettings, thr: float, qblock: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SemDeDup-style search: k-means cells, exact matrix products inside probed cells."""
    n = len(x)
    k = min(n, settings.nlist or max(16, int(2 * np.sqrt(n))))
    p = min(settings.nprobe, k)
    cent = spherical_kmeans(x, k)
    top = _top_cells(x, cent, p)
    prim = top[:, 0].astype(np.int64)
    dorder = np.argsort(prim, kind="stable")
    dstart = np.searchsorted(prim[dorder], np.arange(k + 1))
    qcell = top.ravel().astype(np.int64)
    del top
    qorder = np.argsort(qcell, kind="stable")
    qstart = np.searchsorted(qcell[qorder], np.arange(k + 1))
    del qcell
    ea, eb, es = [], [], []
    for c in range(k):
        d = dorder[dstart[c] : dstart[c + 1]]
        if len(d) == 0:
            continue
        q = qorder[qstart[c] : qstart[c + 1]] // p  # query rows probing cell c
        xd = x[d]
        for j in range(0, len(q), qblock):
            qq = q[j : j + qblock]
            sims = x[qq] @ xd.T
            r, cc = np.nonzero(sims >= thr)
            a, b = qq[r], d[cc]
            keep = a != b
            ea.append(np.minimum(a[keep], b[keep]))
            eb.append(np.maximum(a[keep], b[keep]))
            es.append(sims[r[keep], cc[keep]])
    if not ea:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    a, b, s = np.concatenate(ea), np.concatenate(eb), np.concatenate(es)
    # a pair is found from both sides when each probes the other's cell: keep it once
    _, first = np.unique(a.astype(np.int64) * n + b, return_index=True)
    return a[first].astype(np.int64), b[first].astype(np.int64), s[first]


def _ivf_edges(
    x: np.ndarray, settings: SemanticSettings, thr: float, block: int = 65536
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """faiss IVF range search (the previous default; kept as ``search: ivf`` for comparison)."""
    import faiss

    faiss.omp_set_num_threads(settings.workers)
    n, d = x.shape
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
        lims, dist, ids = index.range_search(x[i : i + block], thr)
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
    x: np.ndarray, settings: SemanticSettings, inplace: bool = False, threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (a < b) with cosine ≥ ``threshold`` (default ``settings.threshold``), plus
    the cosine; zero rows never match.

    ``inplace=True`` lets centring overwrite ``x`` when no row is zero (saves one n×d
    copy, 1 GB at a million 256-d rows); callers pass it when ``x`` is theirs alone.
    """
    alive = np.nonzero(np.einsum("ij,ij->i", x, x) > 0)[0] if x.ndim == 2 and x.shape[1] else np.arange(0)
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
    mode = settings.search
    if mode == "auto":
        mode = "exact" if len(sub) < settings.exact_below else "cells"
    thr = settings.threshold if threshold is None else threshold
    search = {"exact": lambda: _exact_edges(sub, thr), "cells": lambda: _cell_edges(sub, settings, thr),
              "ivf": lambda: _ivf_edges(sub, settings, thr)}[mode]
    a, b, s = search()
    return alive[a].astype(np.int64), alive[b].astype(np.int64), s.astype(np.float32)


def grouped_pairs(
    x: np.ndarray,
    settings: SemanticSettings,
    groups: np.ndarray | None = None,
    inplace: bool = False,
    threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``similar_pairs`` run separately inside each group (e.g. per category).

    Without ``threshold`` this is the pure cosine rule at ``settings.threshold``;
    ``semantic_links`` adds the word check."""
    if groups is None:
        return similar_pairs(x, settings, inplace=inplace, threshold=threshold)
    ea, eb, es = [], [], []
    for g in np.unique(groups):
        rows = np.nonzero(groups == g)[0]
        a, b, s = similar_pairs(x[rows], settings, threshold=threshold)
        ea.append(rows[a])
        eb.append(rows[b])
        es.append(s)
    if not ea:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(ea), np.concatenate(eb), np.concatenate(es)


def check_links(
    a: np.ndarray, b: np.ndarray, cos: np.ndarray, words: WordSets | None, settings: SemanticSettings
) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, word Jaccard) of candidate links; see the module docstring."""
    if words is None or not settings.check_words or len(a) == 0:
        return np.ones(len(a), bool), np.full(len(a), np.nan, np.float32)
    wj = word_jaccard(words, a, b)
    keep = (cos >= settings.accept_cosine) | (wj >= settings.min_word_jaccard)
    if settings.numbers == "strict":
        keep &= words.numbers[a] == words.numbers[b]
    return keep, wj


def semantic_links(
    x: np.ndarray,
    words: WordSets | None,
    settings: SemanticSettings,
    groups: np.ndarray | None = None,
    inplace: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked links (a, b, cosine, word Jaccard): candidates at ``candidate_threshold``
    then ``check_links``; without word sets (or with the check off), cosine ≥ ``threshold``."""
    if words is None or not settings.check_words:
        a, b, s = grouped_pairs(x, settings, groups, inplace=inplace)
        return a, b, s, np.full(len(a), np.nan, np.float32)
    thr = min(settings.candidate_threshold, settings.accept_cosine)
    a, b, s = grouped_pairs(x, settings, groups, inplace=inplace, threshold=thr)
    keep, wj = check_links(a, b, s, words, settings)
    return a[keep], b[keep], s[keep], wj[keep]


def semantic_clusters(
    texts_iter: Iterable[str],
    settings: SemanticSettings | dict | None = None,
    embedder: Embedder | None = None,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster label per text (smallest row index of its semantic-duplicate cluster)."""
    if not isinstance(settings, SemanticSettings):
        settings = SemanticSettings(**(settings or {}))
    x, words = embed_and_words(texts_iter, settings, embedder)
    a, b, _, _ = semantic_links(x, words, settings, groups, inplace=True)
    return connected_components(len(x), a, b)
