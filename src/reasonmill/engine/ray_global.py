"""Global indexes built from Ray primitives: a hash shuffle over the shards.

Each builder here returns exactly the index its stage's ``build()`` returns on the local
engine (tests compare them), but computes it in Ray tasks:

1. *map*: one task per shard reads the stage's ``build_columns`` from the shared workdir
   and emits compact keys (64-bit hashes, priority keys; never texts), split into
   ``P`` partitions by hash (``num_returns=P``: the partitions go to the object store);
2. *reduce*: one task per partition gathers its slice from every map task (Ray moves the
   objects between nodes) and groups by key;
3. the driver merges the small per-partition results.

Other stages that split their build into ``build_map``/``build_reduce`` run the maps as
Ray tasks and the reduce on the driver; the rest call their own ``build()`` in the driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from reasonmill.engine.workdir import StageDir
from reasonmill.stages.base import Stage, StageContext

Builder = Callable[..., Any]


def distributed_builder(cls: type[Stage]) -> Builder | None:
    """A shuffle-based builder for this stage, else the generic map/reduce one when the
    stage splits its build (``build_map``/``build_reduce``), else None (driver ``build``)."""
    builder = _BUILDERS.get(cls.name)
    if builder is not None:
        return builder
    parallel = getattr(cls, "parallel_build", None)
    return build_map_reduce if callable(parallel) and parallel() else None


def _as_list(refs: Any, n: int) -> list:
    return [refs] if n == 1 else list(refs)


def _remote(ray: Any, fn: Callable, **options: Any) -> Any:
    """``ray.remote`` applied at call time, so this module imports without Ray."""
    return ray.remote(**options)(fn) if options else ray.remote(fn)


# --- exact dedup -------------------------------------------------------------------------


def _exact_map(cls: type[Stage], settings: Any, ctx: StageContext, in_dir: str, shard: str, parts: int) -> Any:
    """The stage's own ``build_map`` on one shard, split into partitions by text hash."""
    hashes, keys, ids = StageDir(Path(in_dir)).build_part(cls(settings, ctx), shard)
    part = (hashes % np.uint64(parts)).astype(np.int64)
    out = [(hashes[part == p], keys[part == p], ids[part == p]) for p in range(parts)]
    return out if parts > 1 else out[0]


def _exact_reduce(cls: type[Stage], settings: Any, ctx: StageContext, *slices: tuple) -> dict:
    """The stage's own ``build_reduce`` on one hash partition: every member of a hash
    group is in the same partition, so the partial indexes are disjoint."""
    return cls(settings, ctx).build_reduce([s for s in slices if len(s[0])])


def build_exact(
    ray: Any, cls: type[Stage], settings: Any, ctx: StageContext, prev: StageDir, partitions: int
) -> dict[str, tuple[str, int]]:
    """``ExactDedup`` index as map (hash + priority key per record) → shuffle by hash
    (``num_returns=P``: partitions stay in the object store) → ``build_reduce`` per
    partition in parallel → the driver merges the disjoint partial indexes."""
    shards = prev.shards()
    if not shards:
        return {}
    mapper = _remote(ray, _exact_map, num_returns=partitions)
    reducer = _remote(ray, _exact_reduce)
    maps = [
        _as_list(mapper.remote(cls, settings, ctx, str(prev.path), s, partitions), partitions) for s in shards
    ]
    reduces = [reducer.remote(cls, settings, ctx, *[m[p] for m in maps]) for p in range(partitions)]
    index: dict[str, tuple[str, int]] = {}
    for part in ray.get(reduces):
        index.update(part)
    return index


def _generic_map(cls: type[Stage], settings: Any, ctx: StageContext, in_dir: str, shard: str) -> Any:
    return StageDir(Path(in_dir)).build_part(cls(settings, ctx), shard)


def build_map_reduce(
    ray: Any, cls: type[Stage], settings: Any, ctx: StageContext, prev: StageDir, partitions: int
) -> Any:
    """Any stage with ``build_map``/``build_reduce``: the maps as Ray tasks next to the
    shards, the reduce on the driver over their compact outputs."""
    mapper = _remote(ray, _generic_map)
    parts = ray.get([mapper.remote(cls, settings, ctx, str(prev.path), s) for s in prev.shards()])
    return cls(settings, ctx).build_reduce(parts)


# --- MinHash: LSH band keys → groupby band key → connected components ---------------------

#: what the near-dedup stages read from a shard: the text field, priority key fields, category
_COMPACT_COLUMNS = ("id", "source", "category", "reference_answer", "tests", "difficulty", "responses")


def _shard_rows(prev: StageDir) -> tuple[list[str], np.ndarray]:
    """Shard names and each shard's first global row (rows are numbered in shard order)."""
    import json

    shards = prev.shards()
    counts = [json.loads(prev.done_path(s).read_text())["kept"] for s in shards]
    starts = np.zeros(len(shards) + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    return shards, starts


def _compact_of(records: list[dict], field: str, settings: Any) -> tuple[Any, list[str]]:
    from reasonmill.stages.near_dedup import _Compact, _text

    compact = _Compact.for_settings(settings)
    for r in records:
        compact.add(r)
    return compact, [_text(r, field) for r in records]


def _minhash_map(mh_settings: Any, field: str, settings: Any, per_category: bool,
                 in_dir: str, shard: str, start: int, parts: int) -> list:
    """One shard → per partition (band, band hash, global row) triples; then signatures
    (for verification) and the compact per-row info as the last two returns."""
    from reasonmill.dedup.minhash import MinHashIndex
    from reasonmill.stages.near_dedup import _category_hash

    records = StageDir(Path(in_dir)).read_shard(shard, tuple(dict.fromkeys((*_COMPACT_COLUMNS, field))))
    compact, texts = _compact_of(records, field, settings)
    cats = compact.categories
    index = MinHashIndex(mh_settings)
    for lo in range(0, len(texts), mh_settings.chunk_size):
        chunk = texts[lo : lo + mh_settings.chunk_size]
        groups = (
            np.array([_category_hash(c) for c in cats[lo : lo + len(chunk)]], np.uint64) if per_category else None
        )
        index.add(chunk, group=groups)
    n = len(texts)
    if n:
        bands = np.concatenate(index._band_chunks)
        empty = np.concatenate(index._empty_chunks)
        numbers = np.concatenate(index._num_chunks)
        sig = np.concatenate(index._sig_chunks) if index._sig_chunks else None
    else:
        bands = np.empty((0, index.bands), np.uint64)
        empty, numbers, sig = np.empty(0, bool), np.empty(0, np.uint64), None
    alive = np.nonzero(~empty)[0]
    rows = np.repeat(alive + start, index.bands)
    band_no = np.tile(np.arange(index.bands, dtype=np.int64), len(alive))
    hashes = bands[alive].reshape(-1)
    part = (hashes % np.uint64(parts)).astype(np.int64)
    out: list[Any] = [(band_no[part == p], hashes[part == p], rows[part == p]) for p in range(parts)]
    out.append(sig)
    out.append((compact, numbers))
    return out


def _minhash_reduce(*slices: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Group (band, hash) buckets; link each member to the bucket's first (smallest) row,
    exactly as ``MinHashIndex.candidate_edges`` does on one machine."""
    band = np.concatenate([s[0] for s in slices])
    h = np.concatenate([s[1] for s in slices])
    row = np.concatenate([s[2] for s in slices])
    if not len(row):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.lexsort((row, h, band))
    band, h, row = band[order], h[order], row[order]
    new = np.empty(len(row), bool)
    new[0] = True
    new[1:] = (band[1:] != band[:-1]) | (h[1:] != h[:-1])
    head = np.maximum.accumulate(np.where(new, np.arange(len(row)), 0))
    member = ~new
    return row[head[member]], row[member]


def _jaccard_task(
    a: np.ndarray, b: np.ndarray, starts: np.ndarray, sig_refs: list, blocks: dict | None = None
) -> np.ndarray:
    """Estimated Jaccard of edges whose ``a`` rows lie in one shard; fetches only the
    signature blocks of the shards its edges touch (into ``blocks``, when given, so that
    repeated calls on the driver fetch each block once)."""
    import ray

    need = np.unique(np.concatenate([np.searchsorted(starts, a, "right") - 1, np.searchsorted(starts, b, "right") - 1]))
    blocks = {} if blocks is None else blocks
    missing = [i for i in need.tolist() if i not in blocks]
    blocks.update(zip(missing, ray.get([sig_refs[i] for i in missing])))

    def rows_of(x: np.ndarray) -> np.ndarray:
        shard = np.searchsorted(starts, x, "right") - 1
        out = np.empty((len(x), next(iter(blocks.values())).shape[1]), np.uint32)
        for s in np.unique(shard).tolist():
            sel = shard == s
            out[sel] = blocks[s][x[sel] - starts[s]]
        return out

    return (rows_of(a) == rows_of(b)).mean(axis=1).astype(np.float32)


def build_minhash(
    ray: Any, cls: type[Stage], settings: Any, ctx: StageContext, prev: StageDir, partitions: int
) -> dict:
    """``MinHashDedup.build`` distributed: signatures and LSH band keys per shard (map),
    shuffle by band key, bucket heads → candidate edges (reduce), Jaccard verification in
    tasks next to the signatures, then connected components and the keep-priority choice
    on the driver over compact arrays."""
    from reasonmill.dedup.unionfind import connected_components
    from reasonmill.stages.near_dedup import _Compact, _drop_index

    stage = cls(settings, ctx)
    mh = stage._minhash_settings()
    shards, starts = _shard_rows(prev)
    n = int(starts[-1])
    if not shards or n == 0:
        return {}
    mapper = _remote(ray, _minhash_map, num_returns=partitions + 2)
    maps = [
        mapper.remote(mh, settings.field, settings, settings.per_category, str(prev.path), s,
                      int(starts[i]), partitions)
        for i, s in enumerate(shards)
    ]
    reducer = _remote(ray, _minhash_reduce, num_returns=2)
    pairs = [reducer.remote(*[m[p] for m in maps]) for p in range(partitions)]
    metas = ray.get([m[-1] for m in maps])
    compact = _Compact.for_settings(settings)
    numbers_parts = []
    for part, numbers in metas:
        compact.extend(part)
        numbers_parts.append(numbers)
    a = np.concatenate([ray.get(p[0]) for p in pairs])
    b = np.concatenate([ray.get(p[1]) for p in pairs])
    if len(a):
        key = np.unique(np.minimum(a, b) * np.int64(n) + np.maximum(a, b))
        a, b = key // n, key % n
    nums = np.concatenate(numbers_parts)
    sig_refs = [m[-2] for m in maps]
    if mh.numbers == "strict" and len(a):
        same = nums[a] == nums[b]
        a, b = a[same], b[same]
    if mh.verify and len(a):
        shard_of_a = np.searchsorted(starts, a, "right") - 1
        bounds = np.searchsorted(shard_of_a, np.arange(len(shards) + 1))
        jac_task = _remote(ray, _jaccard_task)
        futures = [
            jac_task.remote(a[lo:hi], b[lo:hi], starts, sig_refs)
            for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()) if hi > lo
        ]
        jac = np.concatenate(ray.get(futures))
        ok = jac >= mh.threshold
        a, b, jac = a[ok], b[ok], jac[ok]
    else:
        jac = np.full(len(a), np.nan, np.float32)
    if settings.per_category and len(a):
        cats = compact.categories
        same = np.array([cats[x] == cats[y] for x, y in zip(a.tolist(), b.tolist())], bool)
        a, b, jac = a[same], b[same], jac[same]

    fetched: dict[int, np.ndarray] = {}

    def pair_check(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``MinHashIndex.pair_check`` on the driver: signature rows fetched from the shards."""
        if not mh.verify:
            return np.full(len(x), np.nan, np.float32)
        jac = _jaccard_task(x, y, starts, sig_refs, fetched)
        fail = jac < mh.threshold
        if mh.numbers == "strict":
            fail |= nums[x] != nums[y]
        jac[fail] = np.nan
        return jac

    labels = connected_components(n, a, b)
    return _drop_index(compact, labels, a, b, jac, "jaccard", verify=pair_check)


# --- semantic dedup: sharded embedding, then neighbour search ------------------------------


def _embed_map(sem_settings: Any, field: str, settings: Any, in_dir: str, shard: str) -> tuple:
    from reasonmill.dedup.semantic import _worker_embedder, word_sets

    records = StageDir(Path(in_dir)).read_shard(shard, tuple(dict.fromkeys((*_COMPACT_COLUMNS, field))))
    compact, texts = _compact_of(records, field, settings)
    embedder = _worker_embedder(sem_settings.embedder, sem_settings.cache, sem_settings.cache_dir)
    x = embedder.encode(texts, batch_size=sem_settings.batch_size) if texts else None
    words = word_sets(texts, sem_settings.numbers) if texts and sem_settings.check_words else None
    return x, words, compact


def build_semantic(
    ray: Any, cls: type[Stage], settings: Any, ctx: StageContext, prev: StageDir, partitions: int
) -> dict:
    """``SemanticDedup.build`` with the embedding sharded over Ray tasks (the expensive
    part: one task per shard, each worker keeps its embedder, the embedding cache lives in
    the shared cache dir); the neighbour search runs where the vectors meet (exact blocks
    or faiss IVF, as on one machine)."""
    from reasonmill.dedup.semantic import WordSets, semantic_links
    from reasonmill.dedup.unionfind import connected_components
    from reasonmill.stages.near_dedup import _Compact, _drop_index

    stage = cls(settings, ctx)
    if getattr(stage, "embedder_override", None) is not None:
        return stage.build(prev.read_shard(s) for s in prev.shards())
    sem = stage._semantic_settings()
    shards = prev.shards()
    task = _remote(ray, _embed_map, num_cpus=1)
    results = ray.get([task.remote(sem, settings.field, settings, str(prev.path), s) for s in shards])
    compact = _Compact.for_settings(settings)
    parts, word_parts = [], []
    for x, words, part in results:
        compact.extend(part)
        if x is not None:
            parts.append(x)
            if words is not None:
                word_parts.append(words)
    if not parts:
        return {}
    x = np.concatenate(parts)
    groups = None
    if settings.per_category:
        _, groups = np.unique(np.array([str(c) for c in compact.categories]), return_inverse=True)
    words = WordSets.concat(word_parts) if word_parts else None
    a, b, cos, wj = semantic_links(x, words, sem, groups)
    labels = connected_components(len(compact.ids), a, b)
    return _drop_index(compact, labels, a, b, cos, "cosine", ("word_jaccard", wj) if words is not None else None)


_BUILDERS: dict[str, Builder] = {
    "dedup.exact": build_exact,
    "dedup.minhash": build_minhash,
    "dedup.semantic": build_semantic,
}
