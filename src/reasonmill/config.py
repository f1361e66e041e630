"""The pipeline YAML, validated with pydantic, with errors that name the key, file and fix.

```yaml
name: quickstart
sources:
  - {name: gsm8k, path: ../examples/gsm8k.jsonl, preset: gsm8k}
stages:
  - clean: {min_chars: 20}
  - dedup.exact
  - verify: {math: {timeout: 5}}
  - select: {threshold: 0.99}
exports:
  - {path: ../out/quickstart/am.jsonl, format: am}
```
Relative paths are resolved against the YAML file's folder.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reasonmill.io.sources import SourceSpec
from reasonmill.stages.base import get_stage, registered_stages


class ConfigError(ValueError):
    """A pipeline file is wrong; the message says where and how to fix it."""


class ExportSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: a local file; or, with ``hf:``, nothing (the Parquet file is staged in the workdir)
    path: str | None = None
    format: Literal["am", "messages", "sharegpt"] = "am"
    #: validate every AM row before writing; invalid rows go to the ledger
    validate_rows: bool = Field(True, alias="validate")
    #: ``org/name``: upload the export as Parquet with its card to this Hub dataset repo,
    #: after the release check (``io.hub_release``)
    hf: str | None = None
    private: bool = True
    token_env: str = "HF_TOKEN"
    #: another Hub endpoint (a mirror, or a local test server); default: huggingface_hub's
    endpoint: str | None = None

    @field_validator("path")
    @classmethod
    def _known_suffix(cls, v: str | None) -> str | None:
        if v is not None and not v.endswith((".jsonl", ".jsonl.zst", ".jsonl.gz", ".parquet")):
            raise ValueError(f"export path {v!r} must end in .jsonl, .jsonl.zst, .jsonl.gz or .parquet")
        return v

    @model_validator(mode="after")
    def _path_or_hub(self) -> "ExportSpec":
        if (self.path is None) == (self.hf is None):
            raise ValueError("an export needs either `path:` (a local file) or `hf: org/name` (a Hub dataset repo)")
        return self

    def local_path(self, base_dir: Path, workdir: Path) -> Path:
        """Where the file is written: ``path`` (relative to the YAML), or for a Hub export
        ``WORKDIR/export/hub/<org>--<name>/<format>.parquet``."""
        if self.path is not None:
            return (base_dir / self.path).resolve()
        return workdir.resolve() / "export" / "hub" / self.hf.replace("/", "--") / f"{self.format}.parquet"


class StageSpec(BaseModel):
    """One stage entry after parsing: the registered name, an optional label, settings."""

    name: str
    label: str
    settings: dict[str, Any] = {}


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "pipeline"
    workdir: str | None = None
    shard_size: int = Field(10_000, ge=1)
    workers: int | None = Field(None, ge=1, description="process-pool size; default: CPU count")
    cache_dir: str | None = None
    #: Python modules to import first: they register custom stages with ``@stage``
    plugins: list[str] = []
    sources: list[SourceSpec]
    stages: list[Any] = []
    exports: list[ExportSpec] = []

    # filled by load_pipeline
    base_dir: Path = Field(default=Path("."), exclude=True)
    stage_specs: list[StageSpec] = Field(default=[], exclude=True)


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_validation(err: ValidationError, where: str, model: type[BaseModel], prefix: str = "") -> str:
    """One line per error: ``file: stages[4].verify.math: unknown key 'timeuot' (did you
    mean 'timeout'?); valid keys: ...``; ``prefix`` is the path of ``model`` itself."""
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not _is_union_tag(p))
        if e["type"] == "extra_forbidden":
            key = str(loc[-1])
            valid = _valid_keys(model, loc[:-1])
            path = _path(prefix, loc[:-1])
            lines.append(
                f"{where}: {path}: unknown key {key!r}{_suggest(key, valid)}; "
                + (f"valid keys: {', '.join(valid)}" if valid else "this section takes no keys")
            )
        else:
            lines.append(f"{where}: {_path(prefix, loc)}: {e['msg']}")
    return "\n".join(lines)


def _is_union_tag(part: Any) -> bool:
    """pydantic puts the union member's name in the location (``math.MathSettings.x``)."""
    return isinstance(part, str) and (part[:1].isupper() or "[" in part)


def _path(prefix: str, loc: tuple) -> str:
    """``stages[4].verify`` + ``("math", "limits")`` -> ``stages[4].verify.math.limits``."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Walk the model along ``loc`` to list the keys valid at that position."""
    current: Any = model
    key_part = False  # the next part is a key of a dict[str, Model] field
    for part in loc:
        if isinstance(part, int) or current is None or key_part:
            key_part = False
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            current = None
            break
        ann = field.annotation
        key_part = getattr(ann, "__origin__", None) is dict
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            for c in args:
                inner = getattr(c, "__args__", ())
                current = next((i for i in inner if isinstance(i, type) and issubclass(i, BaseModel)), None)
                if current:
                    break
    if current is None:
        return []
    return sorted(f.alias or name for name, f in current.model_fields.items() if not f.exclude)


def label_problem(label: Any) -> str | None:
    """Why ``label`` cannot name a stage, or ``None``. A label becomes the folder
    ``WORKDIR/NN-LABEL``: a separator or ``..`` would put a stage's files elsewhere."""
    if not isinstance(label, str) or not label.strip():
        return "is empty or not a string"
    if "/" in label or "\\" in label:
        return "contains a path separator"
    if ".." in label:
        return "contains '..'"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in label):
        return "contains a control character"
    if len(label.encode("utf-8")) > 200:
        return "is longer than 200 bytes (a folder name)"
    return None


def parse_stage_entry(entry: Any, file: str, path: str) -> StageSpec:
    """``- clean``, ``- clean: {..}`` or ``- {stage: clean, as: clean2, ...}``; ``file`` and
    ``path`` (``stages[4]``) locate it in error messages."""
    where = f"{file}: {path}"
    if isinstance(entry, str):
        name, settings, label = entry, {}, entry
    elif isinstance(entry, dict) and "stage" in entry:
        settings = {k: v for k, v in entry.items() if k not in ("stage", "as")}
        name, label = entry["stage"], entry.get("as", entry["stage"])
    elif isinstance(entry, dict) and len(entry) == 1:
        name, settings = next(iter(entry.items()))
        settings = settings or {}
        label = name
    else:
        raise ConfigError(f"{where}: a stage is `- name`, `- name: {{settings}}` or `- {{stage: name, ...}}`; got {entry!r}")
    valid = registered_stages()
    try:
        cls = get_stage(name)
    except KeyError:
        raise ConfigError(f"{where}: unknown stage {name!r}{_suggest(name, valid)}; valid stages: {', '.join(valid)}") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: settings of stage {name!r} must be a mapping, got {settings!r}")
    problem = label_problem(label)
    if problem:
        hint = "use letters, digits, '.', '-' and '_'"
        raise ConfigError(f"{where}: stage label `as: {label!r}` {problem}; {hint}")
    try:
        cls.Settings(**settings)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, file, cls.Settings, prefix=f"{path}.{name}")) from None
    return StageSpec(name=name, label=label, settings=settings)


def load_pipeline(path: str | Path) -> PipelineConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"pipeline file not found: {path} (check the path; run from the folder it is relative to)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with sources, stages and exports")
    return config_from_dict(raw, base_dir=path.resolve().parent, where=str(path))


def config_from_dict(raw: dict, base_dir: Path | str = ".", where: str = "<pipeline>") -> PipelineConfig:
    try:
        cfg = PipelineConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, where, PipelineConfig)) from None
    cfg.base_dir = Path(base_dir).resolve()
    for module in cfg.plugins:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"{where}: plugin {module!r} cannot be imported ({exc}); is it on PYTHONPATH?") from None
    specs = [parse_stage_entry(e, where, f"stages[{i}]") for i, e in enumerate(cfg.stages)]
    labels = [s.label for s in specs]
    dupes = {label for label in labels if labels.count(label) > 1}
    if dupes:
        raise ConfigError(f"{where}: stage names must be unique; give repeats a label with `as:` ({', '.join(sorted(dupes))})")
    cfg.stage_specs = specs
    for i, src in enumerate(cfg.sources):
        for p in _source_paths(src):
            if not any(ch in p for ch in "*?[") and not (cfg.base_dir / p).exists():
                raise ConfigError(f"{where}: sources[{i}] ({src.name}): file not found: {cfg.base_dir / p}")
    for i, spec in enumerate(specs):
        cls = get_stage(spec.name)
        for p in cls.input_files(cls.Settings(**spec.settings), cfg.base_dir):
            if not Path(p).exists():
                raise ConfigError(f"{where}: stages[{i}].{spec.name}: file not found: {p}")
    return cfg


def _source_paths(src: SourceSpec) -> list[str]:
    path = getattr(src, "path", None)
    if path is None:
        return []
    return [path] if isinstance(path, str) else list(path)
