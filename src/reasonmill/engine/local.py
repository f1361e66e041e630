"""The local engine: streams shards through the stages on one machine.

- Ingest reads the sources once, in order, into Parquet shards of ``shard_size`` records.
- Map stages run shard by shard in a process pool (``Resources.executor == "pool"``) or in
  the driver (``"inline"``: stages with their own pools, sandboxes or network I/O).
- Global stages build their index once (persisted as ``index.pkl``), then map.
- Each stage's fingerprint chains its settings, its code version and its input's
  fingerprint; a matching complete stage is skipped, completed shards of an interrupted
  stage are kept, and a changed stage is redone with everything after it.
- A run holds the workdir's lock (``engine.lock``) from start to end, sweeps what dead
  runs left (``engine.leftovers``) and redoes damaged shards (``Workdir.repair``, and
  once more when a read finds a checksum mismatch).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import pickle
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

import reasonmill
from reasonmill.config import ConfigError, PipelineConfig, StageSpec
from reasonmill.engine.code_deps import closure_fingerprint
from reasonmill.engine.ledger import drop_to_row
from reasonmill.engine.leftovers import die_with_driver, sweep
from reasonmill.engine.lock import WorkdirLock
from reasonmill.engine.workdir import (
    DamagedShard,
    StageDir,
    Workdir,
    atomic_write_bytes,
    fingerprint,
    gc_paused,
    keep_freed_memory,
)
from reasonmill.io.sources import source_fingerprint
from reasonmill.records import from_table
from reasonmill.errors import ServiceFailure, StopRun
from reasonmill.stages.base import Stage, StageContext, get_stage


class EngineError(RuntimeError):
    pass


@dataclass
class StageReport:
    label: str
    records_in: int = 0
    kept: int = 0
    dropped: int = 0
    dropped_responses: int = 0
    reasons: Counter = field(default_factory=Counter)
    stats: dict[str, float] = field(default_factory=dict)
    skipped: bool = False
    resumed_shards: int = 0
    seconds: float = 0.0
    #: the stage's own account of its stats (``Stage.summary``): counts per reason, warnings
    summary: str = ""

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["reasons"] = dict(self.reasons)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StageReport":
        d = dict(d)
        d["reasons"] = Counter(d.get("reasons") or {})
        return cls(**d)


@dataclass
class RunResult:
    workdir: Path
    stages: list[StageReport]
    exports: list[dict]
    #: why the run stopped on purpose (a spent budget): resumable, exit code 3
    stopped: str | None = None
    #: why the run failed (a service down, a key refused): exit code 1, the re-run resumes
    failed: str | None = None
    #: what the run repaired or cleaned up first: damaged shards redone, leftovers removed
    notes: list[str] = field(default_factory=list)

    @property
    def all_skipped(self) -> bool:
        return all(s.skipped for s in self.stages)


def code_version(cls: type) -> str:
    """reasonmill's version, the class's ``version`` and a hash of every module its module
    imports (transitively, see ``code_deps``): editing a helper re-runs the stage."""
    return fingerprint(reasonmill.__version__, getattr(cls, "version", "1"), closure_fingerprint(cls.__module__))


def _accumulate(report: StageReport, stats: dict) -> None:
    report.records_in += stats["in"]
    report.kept += stats["kept"]
    report.dropped += stats["dropped"]
    report.dropped_responses += stats.get("dropped_responses", 0)
    report.reasons.update(stats.get("reasons", {}))
    for k, v in (stats.get("extra") or {}).items():
        report.stats[k] = report.stats.get(k, 0) + v


# --- worker side --------------------------------------------------------------------

_WORKER_CACHE: dict[str, Any] = {}


def _load_index(path: str | None) -> Any:
    if path is None:
        return None
    if _WORKER_CACHE.get("index_path") != path:
        with open(path, "rb") as fh:
            _WORKER_CACHE["index"] = pickle.load(fh)
        _WORKER_CACHE["index_path"] = path
    return _WORKER_CACHE["index"]


def run_shard(
    stage: Stage, label: str, in_dir: Path, out_dir: Path, shard: str, index: Any
) -> dict:
    if type(stage).executor_for(stage.settings) == "inline":  # long network/sandbox work:
        return _run_shard(stage, label, in_dir, out_dir, shard, index)  # keep the collector
    with gc_paused():
        return _run_shard(stage, label, in_dir, out_dir, shard, index)


def _run_shard(
    stage: Stage, label: str, in_dir: Path, out_dir: Path, shard: str, index: Any
) -> dict:
    """Process one shard and write its output, ledger and done marker. Returns its stats.

    Stages that declare ``reads``/``writes`` get partial records (only those fields) and
    their output is the input table filtered to the kept rows, with only the written
    columns rebuilt: no full Python round trip for filter-like stages."""
    src, dst = StageDir(in_dir), StageDir(out_dir)
    reads, writes = stage.reads, stage.writes
    fast = reads is not None and writes is not None
    screened = None
    if fast:
        table = src.read_table(shard)
        screened = stage.screen(table, index)
        partial = table.select(list(reads))
        if screened is not None:  # only the rows the vectorized screen could not settle
            partial = partial.take(pa.array(np.flatnonzero(screened[0]), type=pa.int64()))
        records = from_table(partial)
    else:
        records = src.read_shard(shard)
    out = stage.process(records, index)
    record_drops = sum(1 for d in out.dropped if d.response_index is None)
    if len(out.kept) + record_drops != len(records):
        raise EngineError(
            f"stage {label!r} broke the ledger invariant on shard {shard}: "
            f"{len(records)} in, {len(out.kept)} kept, {record_drops} dropped"
        )
    n_in = len(records)
    kept_count = len(out.kept)
    if fast:
        n_in = table.num_rows
        position = {rid: i for i, rid in enumerate(table.column("id").to_pylist())}
        # the ledger keeps the whole record, not the partial one (one take for all drops)
        whole = [d for d in out.dropped if d.response_index is None and d.id in position]
        if whole:
            rows_of = from_table(table.take(pa.array([position[d.id] for d in whole], type=pa.int64())))
            for d, full_record in zip(whole, rows_of):
                d.record = full_record
        kept_pos = [position[r["id"]] for r in out.kept]
        if screened is not None:
            kept_pos = sorted(kept_pos + np.flatnonzero(~screened[0]).tolist())
            kept_count = len(kept_pos)
        kept_table = table.take(pa.array(kept_pos, type=pa.int64()))
        for col in writes:
            i = kept_table.schema.get_field_index(col)
            if screened is None:
                values = [r.get(col) for r in out.kept]
            else:
                filled = screened[1].get(col)
                full = (table.column(col) if filled is None else filled).to_pylist()
                for r in out.kept:
                    full[position[r["id"]]] = r.get(col)
                values = [full[p] for p in kept_pos]
            kept_table = kept_table.set_column(i, col, pa.array(values, type=kept_table.schema.field(col).type))
    rows = [drop_to_row(label, d) for d in out.dropped]
    stats = {
        "in": n_in,
        "kept": kept_count,
        "dropped": record_drops,
        "dropped_responses": len(out.dropped) - record_drops,
        "reasons": dict(Counter(d.reason for d in out.dropped)),
        "extra": out.stats,
    }
    if fast:
        dst.write_shard_table(shard, kept_table, rows, stats)
    else:
        dst.write_shard(shard, out.kept, rows, stats)
    return stats


def _build_map_task(args: tuple) -> Any:
    cls, settings, ctx, in_dir, shard = args
    with gc_paused():
        return StageDir(Path(in_dir)).build_part(cls(settings, ctx), shard)


def _pool_task(args: tuple) -> dict:
    cls, settings, ctx, label, in_dir, out_dir, shard, index_path = args
    key = f"stage:{label}:{id(cls)}"
    stage = _WORKER_CACHE.get(key)
    if stage is None:
        stage = cls(settings, ctx)
        _WORKER_CACHE[key] = stage
    return run_shard(stage, label, Path(in_dir), Path(out_dir), shard, _load_index(index_path))


# --- driver side --------------------------------------------------------------------


class LocalEngine:
    def __init__(
        self,
        config: PipelineConfig,
        workdir: str | Path,
        *,
        workers: int | None = None,
        progress: "Progress | None" = None,
    ):
        self.config = config
        self.workdir = Workdir(workdir)
        self.workers = workers or config.workers or os.cpu_count() or 1
        self.progress = progress or NullProgress()
        self._pool: cf.ProcessPoolExecutor | None = None
        cache = config.cache_dir
        self.cache_dir = (config.base_dir / cache) if cache else self.workdir.root / "cache"

    # pool shared by every map stage of the run
    def pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            keep_freed_memory()  # before the fork server starts: the workers inherit it
            ctx = mp.get_context("forkserver")
            # the fork server dies with the driver (if this call starts it; "__main__" is the default)
            ctx.set_forkserver_preload(["__main__", "reasonmill.engine.forkserver_guard"])
            self._pool = cf.ProcessPoolExecutor(
                self.workers,
                mp_context=ctx,
                initializer=die_with_driver,  # no worker outlives a killed driver
                initargs=(os.getpid(),),
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def context(self, label: str) -> StageContext:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return StageContext(
            workdir=str(self.workdir.root),
            cache_dir=str(self.cache_dir),
            label=label,
            extra={"base_dir": str(self.config.base_dir)},
        )

    def run(self, fresh: bool = False, redo: str | None = None) -> RunResult:
        """Run every stage not already complete, then the exports.

        ``redo`` names a stage to run again with every stage after it. Before any stage
        runs, every model server the pending stages name is checked (``preflight``).
        A ``StopRun`` (a spent budget) or a ``ServiceFailure`` ends the run with the
        finished shards kept and the stage unfinished; ``RunResult.stopped`` /
        ``RunResult.failed`` say why. Another run on the same workdir raises
        ``WorkdirBusy`` at once."""
        self.workdir.root.mkdir(parents=True, exist_ok=True)
        with WorkdirLock(self.workdir.root):
            return self._run_locked(fresh, redo)

    def _run_locked(self, fresh: bool, redo: str | None) -> RunResult:
        """The run, holding the workdir lock (the hook the Ray engine wraps in its connection)."""
        wd = self.workdir
        dirs = [wd.root, wd.root / "export", *(sd.path for sd in wd.stage_dirs())]
        notes = [f"removed {p} (left by a run that died)" for p in sweep(dirs)]
        if fresh and wd.root.exists():
            wd.remove_from(0)
            wd.export_manifest.unlink(missing_ok=True)
        if redo is not None:
            self.redo_from(redo)
        notes += wd.repair()
        self.check_export_paths()
        self.preflight()
        forgotten: set[str] = set()
        while True:
            try:
                result = self._run_stages()
                break
            except DamagedShard as exc:  # found by its checksum while reading: redo it
                if exc.path in forgotten:  # redone and damaged again: the disk, not the run
                    raise
                forgotten.add(exc.path)
                notes.append(wd.forget(exc))
        result.notes = notes
        summary = {
            "stages": [r.to_dict() for r in result.stages],
            "exports": result.exports,
            "stopped": result.stopped,
            "failed": result.failed,
            "notes": notes,
        }
        atomic_write_bytes(wd.summary_path, json.dumps(summary, indent=2, default=str).encode())
        return result

    def _run_stages(self) -> RunResult:
        reports: list[StageReport] = []
        stopped = failed = None
        exports: list[dict] = []
        try:
            report, prev_dir, prev_fp = self.run_ingest()
            reports.append(report)
            for i, spec in enumerate(self.config.stage_specs, start=1):
                try:
                    report, prev_dir, prev_fp = self.run_stage(i, spec, prev_dir, prev_fp)
                except StopRun as exc:
                    stopped = f"{spec.label}: {exc}"
                except ServiceFailure as exc:
                    failed = f"{spec.label}: {exc}"
                if stopped or failed:
                    reports.append(StageReport(label=spec.label))
                    break
                reports.append(report)
            if not (stopped or failed):
                exports = self.run_exports(prev_dir, prev_fp, reports)
        finally:
            self.close()
        return RunResult(self.workdir.root, reports, exports, stopped, failed)

    # planning -------------------------------------------------------------------------

    def ingest_fingerprint(self) -> str:
        cfg = self.config
        specs = [s.model_dump(mode="json") for s in cfg.sources]
        fps = [source_fingerprint(s, cfg.base_dir) for s in cfg.sources]
        # every engine writes the same ingest shards, so a run started on one engine
        # resumes on another
        code = closure_fingerprint("reasonmill.engine.ingest")
        return fingerprint("ingest", specs, fps, cfg.shard_size, reasonmill.__version__, code)

    @staticmethod
    def stage_fingerprint(spec: StageSpec, prev_fp: str) -> str:
        cls = get_stage(spec.name)
        settings = cls.Settings(**spec.settings)
        return fingerprint(spec.name, settings.model_dump(mode="json"), prev_fp, code_version(cls))

    def pending_stages(self) -> list[StageSpec]:
        """The stages this run will execute: those without a complete output of the same
        fingerprint (fingerprints chain, so they are known before anything runs)."""
        fp = self.ingest_fingerprint()
        pending = []
        for i, spec in enumerate(self.config.stage_specs, start=1):
            fp = self.stage_fingerprint(spec, fp)
            manifest = self.workdir.stage_dir(i, spec.label).manifest()
            if not (manifest and manifest.get("fingerprint") == fp and manifest.get("status") == "complete"):
                pending.append(spec)
        return pending

    def check_export_paths(self) -> None:
        """An export path that is a directory fails now, not after every stage has run."""
        for i, spec in enumerate(self.config.exports):
            path = spec.local_path(self.config.base_dir, self.workdir.root)
            if path.is_dir():
                raise ConfigError(f"exports[{i}].path: {path} is a directory; give the file to write, e.g. {path / 'am.jsonl'}")

    def preflight(self) -> None:
        """Check every model server a pending stage will call; raise ``ServiceFailure``
        listing every problem (server down, key variable unset, key refused)."""
        from reasonmill.llm.preflight import preflight

        endpoints = []
        for spec in self.pending_stages():
            cls = get_stage(spec.name)
            endpoints += cls.endpoints(cls.Settings(**spec.settings))
        problems = preflight(endpoints)
        if problems:
            raise ServiceFailure("preflight failed, no stage was run:\n  " + "\n  ".join(problems))

    def redo_from(self, label: str) -> None:
        """Discard the outputs of stage ``label`` and every stage after it."""
        labels = ["ingest", *(s.label for s in self.config.stage_specs)]
        if label == "export":
            self.workdir.export_manifest.unlink(missing_ok=True)
            return
        if label not in labels:
            raise ConfigError(f"--redo {label!r}: no such stage in this pipeline; stages: {', '.join(labels)}, export")
        self.workdir.remove_from(labels.index(label))
        self.workdir.export_manifest.unlink(missing_ok=True)

    # ingest ---------------------------------------------------------------------------

    def run_ingest(self) -> tuple[StageReport, StageDir, str]:
        cfg = self.config
        sd = self.workdir.stage_dir(0, "ingest")
        specs = [s.model_dump(mode="json") for s in cfg.sources]
        fp = self.ingest_fingerprint()
        manifest = sd.manifest()
        if manifest and manifest.get("fingerprint") == fp and manifest.get("status") == "complete":
            report = StageReport.from_dict(manifest["report"])
            report.skipped = True
            self.progress.skipped(report)
            return report, sd, fp
        # same sources, same code: the shards already written are the ones this pass
        # would write (a crashed ingest, or damaged shards forgotten by repair)
        keep = set(sd.done_shards()) if manifest and manifest.get("fingerprint") == fp else set()
        if not keep:
            self.workdir.remove_from(0)
            sd.reset()
        sd.write_manifest({"stage": "ingest", "fingerprint": fp, "status": "running", "sources": specs})
        report = StageReport(label="ingest", resumed_shards=len(keep))
        start = time.monotonic()
        task = self.progress.start("ingest", total=None)
        from reasonmill.engine.ingest import IdAssigner, _map_task, plan_chunks, run_chunks

        sources = list(cfg.sources)
        chunks = plan_chunks(sources, cfg.base_dir, cfg.shard_size)
        submit = (lambda args: self.pool().submit(_map_task, args)) if self.workers > 1 else None
        ids = IdAssigner(sources)
        written: list[str] = []
        for shard_no, (table, ledger, origins, keys, n_in) in enumerate(
            run_chunks(chunks, sources, submit, window=2 * self.workers)
        ):
            table = ids.fix(table, origins, keys)
            stats = {
                "in": n_in,
                "kept": table.num_rows,
                "dropped": len(ledger),
                "reasons": dict(Counter(r["reason"] for r in ledger)),
            }
            shard = f"{shard_no:05d}"
            if shard not in keep:
                sd.write_shard_table(shard, table, ledger, stats)
            written.append(shard)
            _accumulate(report, stats)
            self.progress.advance(task, stats["in"], report)
        for stale in keep.difference(written):
            sd.forget_shard(stale)
        report.seconds = time.monotonic() - start
        sd.write_manifest(
            {
                "stage": "ingest",
                "fingerprint": fp,
                "status": "complete",
                "sources": specs,
                "shards": written,
                "report": report.to_dict(),
            }
        )
        self.progress.finish(task, report)
        return report, sd, fp

    # stages ---------------------------------------------------------------------------

    def run_stage(self, i: int, spec: StageSpec, prev: StageDir, prev_fp: str) -> tuple[StageReport, StageDir, str]:
        cls = get_stage(spec.name)
        settings = cls.Settings(**spec.settings)
        fp = self.stage_fingerprint(spec, prev_fp)
        sd = self.workdir.stage_dir(i, spec.label)
        manifest = sd.manifest()
        if manifest and manifest.get("fingerprint") == fp and manifest.get("status") == "complete":
            report = StageReport.from_dict(manifest["report"])
            report.skipped = True
            self.progress.skipped(report)
            return report, sd, fp
        if not manifest or manifest.get("fingerprint") != fp:
            self.workdir.remove_from(i)
            sd.reset()
        sd.write_manifest(
            {
                "stage": spec.name,
                "label": spec.label,
                "fingerprint": fp,
                "input_fingerprint": prev_fp,
                "code_version": code_version(cls),
                "settings": settings.model_dump(mode="json"),
                "status": "running",
            }
        )
        report = StageReport(label=spec.label)
        done = sd.done_shards()
        for stats in done.values():
            _accumulate(report, stats)
        report.resumed_shards = len(done)
        shards = prev.shards()
        todo = [s for s in shards if s not in done]
        ctx = self.context(spec.label)
        start = time.monotonic()
        total = sum(json.loads(prev.done_path(s).read_text())["kept"] for s in shards)
        task = self.progress.start(spec.label, total=total, completed=report.records_in)

        index_path: str | None = None
        index: Any = None
        if cls.kind == "global":
            index, index_path = self._global_index(cls, settings, ctx, prev, sd)

        self._execute_shards(cls, settings, ctx, spec.label, prev, sd, todo, index, index_path, report, task)
        report.seconds = time.monotonic() - start
        if cls.summary is not Stage.summary:
            reporter = cls(settings, ctx)
            report.summary = reporter.summary(report.stats)
            close = getattr(reporter, "close", None)
            if callable(close):
                close()
        manifest = sd.manifest() or {}
        manifest.update(status="complete", shards=shards, report=report.to_dict())
        sd.write_manifest(manifest)
        self.progress.finish(task, report)
        return report, sd, fp

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
        """Run ``todo`` shards of one stage, accumulating their stats into ``report``.

        The hook other engines override (the Ray engine runs them as Ray Data tasks);
        every implementation writes each shard with :func:`run_shard`, so the workdir is
        the same whichever engine ran it.
        """
        inline = cls.executor_for(settings) == "inline"
        if inline or self.workers == 1 or len(todo) <= 1:
            stage = cls(settings, ctx)
            ctx.progress = lambda n: self.progress.advance(task, n, None)
            try:
                for shard in todo:
                    stats = run_shard(stage, label, prev.path, sd.path, shard, index)
                    _accumulate(report, stats)
                    if not inline:
                        self.progress.advance(task, stats["in"], report)
                    else:
                        self.progress.update(task, report)
            finally:
                close = getattr(stage, "close", None)
                if callable(close):
                    close()
        else:
            pool = self.pool()
            futures = [
                pool.submit(_pool_task, (cls, settings, ctx, label, str(prev.path), str(sd.path), s, index_path))
                for s in todo
            ]
            try:
                for fut in cf.as_completed(futures):
                    stats = fut.result()
                    _accumulate(report, stats)
                    self.progress.advance(task, stats["in"], report)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def _global_index(
        self, cls: type[Stage], settings: Any, ctx: StageContext, prev: StageDir, sd: StageDir
    ) -> tuple[Any, str]:
        if sd.index_path.exists():
            try:
                with sd.index_path.open("rb") as fh:
                    return pickle.load(fh), str(sd.index_path)
            except Exception:  # a damaged index (truncated pickle) is rebuilt from the shards
                sd.index_path.unlink()
        task = self.progress.start(f"{ctx.label} (index)", total=None)
        index = self._build_index(cls, settings, ctx, prev)
        atomic_write_bytes(sd.index_path, pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
        self.progress.finish(task, None)
        return index, str(sd.index_path)

    def _build_index(self, cls: type[Stage], settings: Any, ctx: StageContext, prev: StageDir) -> Any:
        """Build a global stage's index from the previous stage's shards (engine hook)."""
        builder = cls(settings, ctx)
        shards = prev.shards()
        parallel = self.workers > 1 and len(shards) > 1
        if cls.parallel_build() and (parallel or cls.build is Stage.build):
            if parallel:
                args = [(cls, settings, ctx, str(prev.path), s) for s in shards]
                parts = list(self.pool().map(_build_map_task, args))
            else:
                parts = [prev.build_part(builder, s) for s in shards]
            with gc_paused():
                return builder.build_reduce(parts)
        return builder.build(prev.read_shard(s, cls.build_columns) for s in shards)

    # exports --------------------------------------------------------------------------

    def run_exports(self, last: StageDir, last_fp: str, reports: list[StageReport]) -> list[dict]:
        from reasonmill.io.writers import export_records

        specs = self.config.exports
        if not specs:
            return []
        paths = [e.local_path(self.config.base_dir, self.workdir.root) for e in specs]
        fp = fingerprint([e.model_dump(mode="json") for e in specs], [str(p) for p in paths], last_fp)
        mpath = self.workdir.export_manifest
        try:
            manifest = json.loads(mpath.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            manifest = None
        if manifest and manifest.get("fingerprint") == fp and all(p.exists() for p in paths):
            report = StageReport.from_dict(manifest["report"])
            report.skipped = True
            self.progress.skipped(report)
            reports.append(report)
            return manifest["exports"]
        import yaml

        from reasonmill.report.card import CardStats, removal_report_of, write_card

        task = self.progress.start("export", total=None)
        start = time.monotonic()
        card = CardStats()
        shards = last.shards()
        if self.workers > 1 and len(shards) > 1:
            exports, report, removals = self._export_parallel(last, shards, specs, paths, card, task)
        else:
            exports, report = export_records(last.iter_records, specs, paths, self.workdir.root / "export", card)
            removals = removal_report_of(self.workdir)
        report.seconds = time.monotonic() - start
        reports.append(report)
        card_path = paths[0].parent / "DATASET_CARD.md"
        # the settings that shape the data; where and how fast it ran (workdir, workers) are left out
        spec = self.config.model_dump(mode="json", exclude={"workdir", "workers", "cache_dir"})
        pipeline_yaml = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
        exports.append(write_card(card_path, self.config.name, card, reports, removals, exports, pipeline_yaml))
        for spec, info in zip(specs, exports):
            if spec.hf:  # after the local files and card are complete; a failed upload fails the run
                from reasonmill.io.hub_release import push_hub_export

                info["hub"] = push_hub_export(spec, info, self.config.name, card, reports, removals, pipeline_yaml)
        mpath.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            mpath,
            json.dumps({"fingerprint": fp, "exports": exports, "report": report.to_dict()}, indent=2).encode(),
        )
        self.progress.finish(task, report)
        return exports

    def _export_parallel(
        self, last: StageDir, shards: list[str], specs: list, paths: list[Path], card: Any, task: Any
    ) -> tuple:
        """Each shard exported to part files by the pool and stitched, in shard order, as
        the parts arrive. Returns (export infos, report, removal report): the removal
        report's ledger reading is queued behind the exports, so it runs in the pool
        while the last parts are stitched."""
        import shutil

        from reasonmill.io.writers import PartStitcher
        from reasonmill.report.card import dedup_ledger_paths, merge_removals, removal_counts

        parts_dir = self.workdir.root / "export" / "parts"
        shutil.rmtree(parts_dir, ignore_errors=True)
        parts_dir.mkdir(parents=True)
        args = [(str(last.path), s, specs, [str(p) for p in paths], str(parts_dir)) for s in shards]
        stitcher = PartStitcher(specs, paths, self.workdir.root / "export", card)
        pool = self.pool()
        futures = [pool.submit(_export_task, a) for a in args]
        futures += [pool.submit(removal_counts, str(p)) for p in dedup_ledger_paths(self.workdir)]
        try:
            for fut in futures[: len(args)]:
                res = fut.result()
                stitcher.add(res)
                self.progress.advance(task, res["report"]["records_in"], None)
            exports, report = stitcher.close()
            return exports, report, merge_removals(f.result() for f in futures[len(args) :])
        except BaseException:
            for f in futures:
                f.cancel()
            stitcher.discard()
            raise
        finally:
            shutil.rmtree(parts_dir, ignore_errors=True)


def _export_task(args: tuple) -> dict:
    from reasonmill.io.writers import export_part

    in_dir, shard, specs, paths, parts_dir = args
    with gc_paused():
        records = StageDir(Path(in_dir)).read_shard(shard)
        return export_part(records, specs, [Path(p) for p in paths], Path(parts_dir), shard)


class NullProgress:
    """Progress sink that shows nothing (library use, tests)."""

    def start(self, label: str, total: int | None, completed: int = 0) -> Any:
        return label

    def advance(self, task: Any, n: int, report: StageReport | None) -> None:
        pass

    def update(self, task: Any, report: StageReport | None) -> None:
        pass

    def finish(self, task: Any, report: StageReport | None) -> None:
        pass

    def skipped(self, report: StageReport) -> None:
        pass


Progress = NullProgress
ProgressFactory = Callable[[], NullProgress]
