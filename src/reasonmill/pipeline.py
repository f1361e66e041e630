"""The library entry point: load a pipeline and run it on an engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasonmill.config import PipelineConfig, config_from_dict, load_pipeline


class Pipeline:
    def __init__(self, config: PipelineConfig):
        self.config = config

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Pipeline":
        return cls(load_pipeline(path))

    @classmethod
    def from_dict(cls, raw: dict, base_dir: str | Path = ".") -> "Pipeline":
        return cls(config_from_dict(raw, base_dir=Path(base_dir)))

    def default_workdir(self) -> Path:
        if self.config.workdir:
            return (self.config.base_dir / self.config.workdir).resolve()
        return Path("runs") / self.config.name

    def run(
        self,
        workdir: str | Path | None = None,
        *,
        fresh: bool = False,
        redo: str | None = None,
        engine: str = "local",
        workers: int | None = None,
        progress: Any = None,
        address: str | None = None,
    ):
        """Run every stage (skipping completed ones) and the exports. Returns a RunResult.

        ``redo``: a stage label to run again, with every stage after it."""
        workdir = Path(workdir) if workdir else self.default_workdir()
        if engine == "local":
            from reasonmill.engine.local import LocalEngine

            return LocalEngine(self.config, workdir, workers=workers, progress=progress).run(fresh=fresh, redo=redo)
        if engine == "ray":
            from reasonmill.engine.ray import RayEngine

            return RayEngine(self.config, workdir, address=address, progress=progress).run(fresh=fresh, redo=redo)
        raise ValueError(f"unknown engine {engine!r}: use 'local' or 'ray'")
