"""Global indexes built from Ray primitives: a hash shuffle over the shards.

Each builder here returns exactly the index its stage's ``build()`` returns on the local
engine (tests compare them), but computes it in Ray tasks:

1. *map*: one task per shard reads the stage's ``build_columns`` from the shared workdir
   and emits compact keys (64-bit hashes, priority keys; never texts), split into
   ``P`` partitions by hash (``num_returns=P``: the partitions go to the object store);
2. *reduce*: one task per partition gathers its slice from every map task (Ray moves the
   objects between nodes) and groups by key;
3. the driver merges the small per-partition results.

Stages without a builder here fall back to their own ``build()`` in the driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from reasonmill.engine.workdir import StageDir
from reasonmill.stages.base import Stage, StageContext

Builder = Callable[..., Any]


def distributed_builder(stage_name: str) -> Builder | None:
    return _BUILDERS.get(stage_name)


def _as_list(refs: Any, n: int) -> list:
    return [refs] if n == 1 else list(refs)


def _remote(ray: Any, fn: Callable, **options: Any) -> Any:
    """``ray.remote`` applied at call time, so this module imports without Ray."""
    return ray.remote(**options)(fn) if options else ray.remote(fn)


# --- exact dedup -------------------------------------------------------------------------


def _exact_map(settings: Any, in_dir: str, shard: str, columns: tuple | None, parts: int) -> list:
    from reasonmill.dedup.priority import priority_key
    from reasonmill.stages.dedup import _text_hash

    rank = {name: i for i, name in enumerate(settings.source_rank)}
    out: list[tuple[list[int], list[tuple]]] = [([], []) for _ in range(parts)]
    for r in StageDir(Path(in_dir)).read_shard(shard, columns):
        h = _text_hash(r, settings)
        hs, keys = out[h % parts]
        hs.append(h)
        keys.append(priority_key(r, rank))
    packed = [(np.asarray(hs, dtype=np.uint64), keys) for hs, keys in out]
    return packed if parts > 1 else packed[0]


def _exact_reduce(*slices: tuple[np.ndarray, list[tuple]]) -> dict[str, tuple[str, int]]:
    best: dict[int, tuple] = {}
    for hs, keys in slices:
        for h, key in zip(hs.tolist(), keys):
            cur = best.get(h)
            if cur is None or key < cur:
                best[h] = key
    dropped: dict[str, tuple[str, int]] = {}
    for hs, keys in slices:
        for h, key in zip(hs.tolist(), keys):
            rep = best[h][-1]  # priority_key ends with the record id
            if rep != key[-1]:
                dropped[key[-1]] = (rep, h)
    return dropped


def build_exact(
    ray: Any, cls: type[Stage], settings: Any, ctx: StageContext, prev: StageDir, partitions: int
) -> dict[str, tuple[str, int]]:
    """``ExactDedup.build`` as map (hash + priority key) → shuffle by hash → min per hash."""
    shards = prev.shards()
    if not shards:
        return {}
    mapper = _remote(ray, _exact_map, num_returns=partitions)
    reducer = _remote(ray, _exact_reduce)
    maps = [
        _as_list(mapper.remote(settings, str(prev.path), s, cls.build_columns, partitions), partitions)
        for s in shards
    ]
    reduces = [reducer.remote(*[m[p] for m in maps]) for p in range(partitions)]
    index: dict[str, tuple[str, int]] = {}
    for part in ray.get(reduces):
        index.update(part)
    return index


_BUILDERS: dict[str, Builder] = {"dedup.exact": build_exact}
