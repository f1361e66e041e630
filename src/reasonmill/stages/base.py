"""The stage contract shared by every engine.

A stage is a small class with a pydantic ``Settings`` model. Two shapes:

- ``kind = "map"``: ``process(records) -> StageOutput``. No global state, so the local
  engine runs it in a process pool and the Ray engine in ``map_batches``.
- ``kind = "global"``: ``build(shards)`` sees every record once (for example to find
  duplicate clusters) and returns a picklable *index*; then ``process(records, index)``
  maps each shard. Engines persist the index so a resumed run does not rebuild it.

Stages never write files themselves: they return kept records and ``Drop`` rows, and the
engine writes the shards and the ledger. That keeps stages engine-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict

from reasonmill.errors import ServiceFailure, StopRun  # noqa: F401  (part of the stage contract)

if TYPE_CHECKING:
    from reasonmill.llm.preflight import Endpoint


class StageSettings(BaseModel):
    """Base for stage settings: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Drop:
    """One dropped record (or response) with the reason why.

    ``reason`` is a short code (``url``, ``duplicate_of``, ``no_passing_response``);
    ``message`` is for humans; ``evidence`` is JSON-able proof (the matched text, the
    cluster representative, the verdicts). ``response_index`` is set when a single
    response, not the whole record, was dropped.
    """

    id: str
    reason: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    record: dict | None = None
    response_index: int | None = None


@dataclass
class StageOutput:
    kept: list[dict] = field(default_factory=list)
    dropped: list[Drop] = field(default_factory=list)
    #: numbers the stage wants in the run summary (summed over shards), e.g. verified counts
    stats: dict[str, float] = field(default_factory=dict)

    def drop(self, record: dict, reason: str, message: str, **evidence: Any) -> None:
        self.dropped.append(Drop(record["id"], reason, message, evidence, record))

    def drop_response(
        self, record: dict, index: int, response: dict, reason: str, message: str, **evidence: Any
    ) -> None:
        self.dropped.append(
            Drop(record["id"], reason, message, evidence, {"id": record["id"], "response": response}, index)
        )


@dataclass(frozen=True)
class Resources:
    """What one task of the stage needs; engines size pools and Ray tasks from it.

    ``executor``: ``pool`` runs shards in worker processes; ``inline`` runs them in the
    driver (for stages that manage their own pools, sandboxes or network I/O).
    """

    cpus: float = 1.0
    memory_mb: int = 512
    concurrency: int | None = None
    executor: Literal["pool", "inline"] = "pool"


class Stage:
    name: ClassVar[str]
    kind: ClassVar[Literal["map", "global"]] = "map"
    Settings: ClassVar[type[StageSettings]] = StageSettings
    resources: ClassVar[Resources] = Resources()
    resumable: ClassVar[bool] = True
    #: global stages: the record fields ``build`` needs (engines read only these columns);
    #: None reads whole records
    build_columns: ClassVar[tuple[str, ...] | None] = None
    #: map phase: the fields ``process`` reads and the fields it may change. When both are
    #: set, engines pass partial records and rebuild only the written columns (a fast path
    #: for filter-like stages); None means whole records.
    reads: ClassVar[tuple[str, ...] | None] = None
    writes: ClassVar[tuple[str, ...] | None] = None
    #: bump when the stage's logic changes so cached outputs are recomputed
    version: ClassVar[str] = "1"

    def __init__(self, settings: StageSettings | dict | None = None, context: "StageContext | None" = None):
        if settings is None:
            settings = self.Settings()
        elif isinstance(settings, dict):
            settings = self.Settings(**settings)
        self.settings = settings
        self.context = context or StageContext()

    # map stages
    def process(self, records: list[dict], index: Any = None) -> StageOutput:
        raise NotImplementedError

    # global stages: either ``build`` over every shard, or the parallel pair
    # ``build_map`` (one shard → a compact partial, run in workers) and ``build_reduce``
    def build(self, shards: Iterable[list[dict]]) -> Any:
        if type(self).build_map is not Stage.build_map:
            return self.build_reduce([self.build_map(records) for records in shards])
        raise NotImplementedError

    def build_map(self, records: list[dict]) -> Any:
        raise NotImplementedError

    def build_reduce(self, parts: list[Any]) -> Any:
        raise NotImplementedError

    @classmethod
    def parallel_build(cls) -> bool:
        return cls.build_map is not Stage.build_map

    def screen(self, table: Any, index: Any = None) -> tuple[Any, dict[str, Any]] | None:
        """Optional vectorized fast path, for stages that declare ``reads``/``writes``.

        Given the shard's Arrow table, return ``(need, filled)``: ``need`` a numpy bool
        mask of the rows that must go through :meth:`process`; every other row is kept
        as is, except the ``writes`` columns, taken from ``filled`` (full-length Arrow
        arrays). The result must equal running ``process`` on every row. None (the
        default) sends every row through ``process``."""
        return None

    def summary(self, output_stats: dict) -> str:
        return ""

    @classmethod
    def endpoints(cls, settings: StageSettings) -> list["Endpoint"]:
        """The model servers these settings will call. The engine checks each one before
        any stage runs (it answers; its key variable is set and accepted), so a teacher
        that is down fails the run in seconds, not after ingest and dedup."""
        return []

    @classmethod
    def input_files(cls, settings: StageSettings, base_dir: Path) -> list[Path]:
        """Files these settings name (benchmarks, models); checked when the pipeline loads."""
        return []

    @classmethod
    def executor_for(cls, settings: StageSettings) -> str:
        """Where shards run for these settings: ``pool`` or ``inline`` (see Resources)."""
        return cls.resources.executor


@dataclass
class StageContext:
    """What the engine tells a stage about the run (paths, cache dir, the stage's label)."""

    workdir: str | None = None
    cache_dir: str | None = None
    label: str = ""
    progress: Callable[[int], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, type[Stage]] = {}


def stage(name: str) -> Callable[[type[Stage]], type[Stage]]:
    """Register a stage class under the name that pipeline YAML uses."""

    def register(cls: type[Stage]) -> type[Stage]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


def get_stage(name: str) -> type[Stage]:
    _load_builtin_stages()
    if name not in _REGISTRY:
        raise KeyError(name)
    return _REGISTRY[name]


def registered_stages() -> list[str]:
    _load_builtin_stages()
    return sorted(_REGISTRY)


def _load_builtin_stages() -> None:
    import importlib

    for module in BUILTIN_STAGE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # a stage whose optional extra is not installed stays unregistered; a missing
            # reasonmill module other than the stage itself is a real bug
            if exc.name == module or not (exc.name or "").startswith("reasonmill"):
                continue
            raise


BUILTIN_STAGE_MODULES = (
    "reasonmill.stages.clean",
    "reasonmill.stages.tests_filter",
    "reasonmill.stages.dedup",
    "reasonmill.stages.near_dedup",
    "reasonmill.stages.replay",
    "reasonmill.stages.verify",
    "reasonmill.stages.boilerplate",
    "reasonmill.stages.select",
    "reasonmill.stages.label",
    "reasonmill.stages.generate",
    "reasonmill.stages.resample",
    "reasonmill.stages.decontaminate",
)


def iter_chunks(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for r in records:
        chunk.append(r)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
