"""The Ray Data task that runs shards of a map (or global) stage.

Why a function task and not an actor pool: Ray keeps its worker processes warm between
tasks, so after the first stage a shard costs no process start or import, whereas each
Ray Data actor pool starts new processes for every stage (seconds each). What an actor
would have kept, a worker process keeps here: the stage is built once per process per
stage, and a global stage's index is fetched once per process from the object store,
where the driver put it once (``ray.put``: the broadcast index, e.g. decontamination's
benchmark index). Only the latest stage is cached, so memory stays bounded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from reasonmill.engine.local import run_shard
from reasonmill.stages.base import Stage, StageContext

#: per worker process: (stage key, stage object, index) of the latest stage run here
_CURRENT: dict[str, Any] = {}


def _stage_and_index(key: str, cls: type[Stage], settings: Any, ctx: StageContext, index_ref: Any) -> tuple:
    if _CURRENT.get("key") != key:
        import ray

        _CURRENT.clear()  # drop the previous stage's index before fetching this one
        index = ray.get(index_ref) if isinstance(index_ref, ray.ObjectRef) else index_ref
        _CURRENT.update(key=key, stage=cls(settings, ctx), index=index)
    return _CURRENT["stage"], _CURRENT["index"]


def run_shards(
    batch: pa.Table,
    *,
    key: str,
    cls: type[Stage],
    settings: Any,
    ctx: StageContext,
    label: str,
    in_dir: str,
    out_dir: str,
    index_ref: list,
) -> pa.Table:
    """One Ray Data batch = shard names; each shard is read, processed and written to the
    shared workdir by :func:`run_shard`; the batch returned holds each shard's stats."""
    stage, index = _stage_and_index(key, cls, settings, ctx, index_ref[0])
    shards = batch.column("shard").to_pylist()
    stats = [json.dumps(run_shard(stage, label, Path(in_dir), Path(out_dir), s, index)) for s in shards]
    return pa.table({"shard": shards, "stats": stats})
