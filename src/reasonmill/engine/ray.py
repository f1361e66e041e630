"""The Ray engine: the same pipeline YAML, the same workdir, on a Ray cluster.

It is the local engine with two hooks replaced, so everything a run leaves behind (stage
folders, Parquet and ledger shards, ``.done`` markers, manifests and their fingerprints,
``index.pkl``, ``summary.json``, exports) is byte-for-byte the same layout, and a run
started on one engine resumes on the other:

- **map shards** (``LocalEngine._execute_shards``): the shards still to do become a Ray
  Data dataset of shard names; ``map_batches(batch_size=1)`` runs each one as a task
  (:func:`~reasonmill.engine.ray_worker.run_shards`) sized from the stage's declared
  ``Resources`` (``num_cpus``, ``memory``, ``concurrency`` as the task-pool size). A
  warm worker process builds the stage once, fetches a global stage's index once from
  the object store (``ray.put``: the broadcast index), and writes each shard with
  :func:`reasonmill.engine.local.run_shard` into the shared workdir. Per-shard ``.done``
  markers keep resume exact.
  ``executor="inline"`` stages (verify, generate) run in the driver, as on the local
  engine: they own their sandboxes, process pools or async HTTP clients.
- **global indexes** (``LocalEngine._build_index``): stages with a distributed builder in
  :mod:`reasonmill.engine.ray_global` (exact dedup, MinHash) build their index from Ray
  tasks with a hash shuffle; any other global stage calls its own ``build()`` in the
  driver over the shards. Either way the index is the one the local engine builds.

The workdir must be on a filesystem every node mounts at the same path (NFS, a cluster
FS, or one machine): workers read and write shards there directly. See ``docs/ray.md``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from reasonmill.config import PipelineConfig
from reasonmill.engine.local import EngineError, LocalEngine, RunResult, StageReport, _accumulate
from reasonmill.engine.workdir import DamagedShard, StageDir
from reasonmill.errors import ServiceFailure, StopRun
from reasonmill.stages.base import Stage, StageContext

INSTALL_HINT = "the Ray engine needs Ray: pip install 'reasonmill[ray]' (or pip install 'ray[data]>=2.10')"


def import_ray() -> Any:
    """Import Ray or fail with the install command (Ray is an optional extra)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise EngineError(f"{INSTALL_HINT} ({exc})") from None
    return ray


class RayEngine(LocalEngine):
    """Runs a pipeline on Ray. ``address``: ``None`` starts (or reuses) a local Ray
    instance, ``"auto"`` joins the cluster this node belongs to, ``"ray://head:10001"``
    connects through Ray Client."""

    def __init__(
        self,
        config: PipelineConfig,
        workdir: str | Path,
        *,
        address: str | None = None,
        workers: int | None = None,
        progress: Any = None,
        num_cpus: int | None = None,
    ):
        self.ray = import_ray()
        # workers on other nodes open these paths: make them absolute
        super().__init__(config, Path(workdir).resolve(), workers=workers, progress=progress)
        self.cache_dir = self.cache_dir.resolve()
        self.address = address
        self.num_cpus = num_cpus
        self._started_ray = False

    # connection -----------------------------------------------------------------------

    def connect(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": True, "include_dashboard": False}
            if self.address:
                kwargs["address"] = self.address
            elif self.num_cpus:
                kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise EngineError(
                    f"cannot reach the Ray cluster at {self.address!r}: {exc}; start one with "
                    "`ray start --head` or pass --address auto / ray://HEAD:10001"
                ) from None
            self._started_ray = True
        self._ship_plugins()
        data_ctx = ray.data.DataContext.get_current()
        data_ctx.enable_progress_bars = False  # reasonmill shows its own per-stage bar
        data_ctx.print_on_execution_start = False

    def _ship_plugins(self) -> None:
        """Pickle plugin stage classes by value: workers on other nodes need not import them."""
        from ray import cloudpickle

        for name in self.config.plugins:
            module = sys.modules.get(name)
            if module is not None and not name.startswith("reasonmill."):
                cloudpickle.register_pickle_by_value(module)

    def disconnect(self) -> None:
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False

    def _run_locked(self, fresh: bool, redo: str | None) -> RunResult:
        # joined only once the workdir lock is held: a refused run never starts Ray
        self.connect()
        try:
            return super()._run_locked(fresh, redo)
        finally:
            self.disconnect()

    def cluster_cpus(self) -> float:
        return float(self.ray.cluster_resources().get("CPU", 1.0))

    # map shards -----------------------------------------------------------------------

    def _execute_shards(
        self,
        cls: type[Stage],
        settings: Any,
        ctx: StageContext,
        label: str,
        prev: StageDir,
        sd: StageDir,
        todo: list[str],
        index: Any,
        index_path: str | None,
        report: StageReport,
        task: Any,
    ) -> None:
        if cls.executor_for(settings) == "inline" or not todo:
            # stages that manage their own pools/sandboxes/HTTP concurrency run in the driver
            return super()._execute_shards(
                cls, settings, ctx, label, prev, sd, todo, index, index_path, report, task
            )
        from reasonmill.engine.ray_worker import run_shards

        ray = self.ray
        res = cls.resources
        index_ref = ray.put(index) if index is not None else None
        ds = ray.data.from_items([{"shard": s} for s in todo], override_num_blocks=len(todo))
        ds = ds.map_batches(
            run_shards,
            fn_kwargs={
                # the stage's output dir is unique per run of a stage: the worker cache key
                "key": f"{sd.path}:{id(index_ref)}:{time.time_ns()}",
                "cls": cls,
                "settings": settings,
                "ctx": ctx,
                "label": label,
                "in_dir": str(prev.path),
                "out_dir": str(sd.path),
                # wrapped in a list so Ray hands the task the reference, fetched once per worker
                "index_ref": [index_ref],
            },
            batch_size=1,
            batch_format="pyarrow",
            num_cpus=res.cpus,
            memory=res.memory_mb * 1024 * 1024,
            compute=ray.data.TaskPoolStrategy(size=res.concurrency) if res.concurrency else None,
        )
        try:
            for row in ds.iter_rows():
                stats = json.loads(row["stats"])
                _accumulate(report, stats)
                self.progress.advance(task, stats["in"], report)
        except Exception as exc:
            cause = _user_cause(exc)
            if isinstance(cause, (EngineError, StopRun, ServiceFailure, DamagedShard)):
                raise cause from None
            raise EngineError(f"stage {label!r} failed on Ray:\n{_worker_trace(exc)}") from exc

    # global indexes -------------------------------------------------------------------

    def _build_index(self, cls: type[Stage], settings: Any, ctx: StageContext, prev: StageDir) -> Any:
        from reasonmill.engine.ray_global import distributed_builder

        builder = distributed_builder(cls)
        if builder is None:
            return super()._build_index(cls, settings, ctx, prev)
        return builder(self.ray, cls, settings, ctx, prev, partitions=self.partitions(len(prev.shards())))

    def partitions(self, shards: int) -> int:
        """Shuffle partitions for global builders: a few per CPU, never more than shards."""
        return max(1, min(shards, int(self.cluster_cpus() * 2)))


def _worker_trace(exc: BaseException, limit: int = 4000) -> str:
    """The worker-side traceback Ray puts in the exception text, without Ray's preamble."""
    text = str(exc)
    for marker in ("Traceback (most recent call last)",):
        at = text.find(marker)
        if at >= 0:
            text = text[at:]
    return text[-limit:]


def _user_cause(exc: BaseException) -> BaseException:
    """The stage's own exception inside Ray's wrappers (RayTaskError, UserCodeException)."""
    seen = 0
    while seen < 8:
        seen += 1
        inner = getattr(exc, "cause", None) or exc.__cause__
        if inner is None or inner is exc:
            break
        exc = inner
    return exc
