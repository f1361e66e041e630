"""One source of the pipeline YAML: where the raw rows live and how they map to records.

A ``SourceSpec`` is validated once, when the pipeline is loaded, so that a typo in a key
or a preset name fails before any data is read, with a message that names the bad key and
the valid ones.
"""

from __future__ import annotations

import difflib
import glob as globmod
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from reasonmill.io.presets import (
    Context,
    MappingError,
    detect_shape,
    get_preset,
    no_shape_message,
    original_id,
)
from reasonmill.io.readers import (
    MAX_RECORD_BYTES,
    IngestError,
    IngestErrorItem,
    read_file,
    skip_hint,
    snippet,
)
from reasonmill.records import CATEGORIES, stable_id

PRESET_NAMES = (
    "auto",
    "gsm8k",
    "math",
    "problem_answer",
    "messages",
    "sharegpt",
    "qwen_eval",
    "openr1",
    "code_stdin",
    "code_functional",
    "am",
)

# Targets of a column map (``columns: {target: raw_field}``). Dotted raw names reach into
# nested dicts, e.g. ``response: model_prediction.proof``.
COLUMN_TARGETS = (
    "problem",
    "reference_answer",
    "solution",  # reference answer = last \boxed{} of it (unless reference_answer is mapped)
    "id",
    "category",
    "language",
    "difficulty",
    "tests",
    "starter_code",
    "responses",  # list of strings or of {content, correctness} dicts
    "labels",  # list of upstream correctness labels aligned with responses
    "response",  # one response string
    "think",  # the reasoning part of ``response`` (a ``reasoning_content`` field)
    "label",  # upstream correctness label of ``response``
    "model",  # model name of the responses
    "messages",  # OpenAI chat list holding problem and responses
    "conversations",  # ShareGPT list holding problem and responses
    "system",
)

FORMATS = ("auto", "jsonl", "json", "parquet", "csv")
COMPRESSIONS = ("auto", "none", "gz", "zst")


class SourceConfigError(ValueError):
    """A source entry of the pipeline YAML is invalid; the message says how to fix it."""


class SourceSpec(BaseModel):
    """One source: local files (``path``) or a Hugging Face dataset (``hf``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str = Field(description="label written to every record's `source` field")
    path: str | list[str] | None = Field(
        None, description="file, glob, or list of them (relative to the YAML)"
    )
    hf: str | None = Field(
        None, description="Hugging Face dataset name, e.g. openai/gsm8k, or json/parquet/csv"
    )
    split: str = "train"
    subset: str | None = Field(None, validation_alias=AliasChoices("subset", "config"))
    revision: str | None = None
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    streaming: bool = True
    format: Literal["auto", "jsonl", "json", "parquet", "csv"] = "auto"
    compression: Literal["auto", "none", "gz", "zst"] = "auto"
    preset: str | None = None
    columns: dict[str, str] | None = None
    category: str | None = None
    model: str | None = Field(None, description="model name given to responses found in the input")
    limit: int | None = Field(None, ge=0)
    on_error: Literal["fail", "skip"] = "fail"
    max_record_bytes: int = Field(
        MAX_RECORD_BYTES,
        ge=1,
        description="longest record read (bytes): a JSONL line, CSV line or Parquet row (a Hub row: "
        "its text); a longer one is a ledger row (`on_error: skip`) or an error, and is never held "
        "in memory whole (a Hub row is, by `datasets`, but goes no further)",
    )
    rank: int | None = None
    meta_fields: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name must be a non-empty label")
        return v

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESET_NAMES:
            raise ValueError(
                f"unknown preset {v!r}{_did_you_mean(v, PRESET_NAMES)}; valid presets: {', '.join(PRESET_NAMES)}"
            )
        return v

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        for key in v:
            if key not in COLUMN_TARGETS:
                raise ValueError(
                    f"unknown column target {key!r}{_did_you_mean(key, COLUMN_TARGETS)}; "
                    f"valid targets: {', '.join(COLUMN_TARGETS)}"
                )
        if not ({"problem", "messages", "conversations"} & v.keys()):
            raise ValueError("a column map needs `problem` (or `messages` / `conversations`)")
        return v

    @field_validator("category")
    @classmethod
    def _known_category(cls, v: str | None) -> str | None:
        if v is not None and v not in CATEGORIES:
            raise ValueError(f"unknown category {v!r}; valid categories: {', '.join(CATEGORIES)}")
        return v

    @model_validator(mode="after")
    def _one_origin(self) -> SourceSpec:
        if (self.path is None) == (self.hf is None):
            raise ValueError("give exactly one of `path` (local files) or `hf` (a Hugging Face dataset)")
        if self.preset is not None and self.columns is not None:
            raise ValueError("give either `preset` or `columns`, not both")
        return self

    @property
    def mapping(self) -> str:
        """The preset name in effect (``columns`` when a column map is given)."""
        if self.columns is not None:
            return "columns"
        return self.preset or "auto"

    @classmethod
    def parse(cls, data: Any, where: str = "source") -> SourceSpec:
        """Validate one YAML entry; errors name ``where``, the bad key and the valid keys."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SourceConfigError(explain(exc, where)) from None


def valid_keys() -> list[str]:
    """Every key a source entry accepts (aliases included)."""
    keys = list(SourceSpec.model_fields)
    keys.insert(keys.index("subset") + 1, "config")
    return keys


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def explain(exc: ValidationError, where: str = "source") -> str:
    """Turn a pydantic error into lines a user can act on."""
    keys = valid_keys()
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            bad = str(err["loc"][-1])
            lines.append(
                f"{where}: unknown key {bad!r}{_did_you_mean(bad, keys)}; valid keys: {', '.join(keys)}"
            )
        elif err["type"] == "missing":
            lines.append(f"{where}: missing required key {loc!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {loc + ': ' if loc else ''}{msg}")
    return "\n".join(lines)


# --- reading a source -----------------------------------------------------------------------

# Bump when a preset maps the same input differently, so resumed runs re-ingest.
MAPPING_VERSION = "3"  # 2: `preset: auto` checks every row; bad JSON records split out
# 3: OpenR1 rows (`generations`) map to preset openr1, all generations kept (was: messages, one)

_GLOB_CHARS = ("*", "?", "[")


def resolve_paths(spec: SourceSpec, base_dir: Path) -> list[Path]:
    """The files of a ``path:`` source, in a stable order: patterns in the order given,
    the matches of each glob sorted. Relative paths are relative to ``base_dir``."""
    patterns = [spec.path] if isinstance(spec.path, str) else list(spec.path or [])
    files: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        p = Path(pattern).expanduser()
        full = p if p.is_absolute() else base_dir / p
        if any(c in pattern for c in _GLOB_CHARS):
            anchor = Path(full.anchor)
            matches = sorted(x for x in anchor.glob(str(full.relative_to(anchor))) if x.is_file())
            if not matches:
                raise IngestError(
                    f"source {spec.name!r}: no file matches {pattern!r} (looked in {full.parent})"
                )
        else:
            if full.is_dir():
                raise IngestError(
                    f"source {spec.name!r}: {full} is a directory; name its files, or a pattern such as "
                    f"{str(Path(pattern) / '*.jsonl')!r}"
                )
            if not full.is_file():
                raise IngestError(f"source {spec.name!r}: file not found: {full}")
            matches = [full]
        for m in matches:
            if m not in seen:
                seen.add(m)
                files.append(m)
    return files


def _label(path: Path, base_dir: Path) -> str:
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path)


def iter_raw(spec: SourceSpec, base_dir: Path) -> Iterator[tuple[Iterator, str]]:
    """(row iterator, file label) per file of the source, or one for an ``hf:`` source."""
    if spec.hf is not None:
        from reasonmill.io.hub import iter_hub

        rows = iter_hub(
            spec.hf,
            subset=spec.subset,
            split=spec.split,
            streaming=spec.streaming,
            data_files=spec.data_files,
            revision=spec.revision,
            base_dir=base_dir,
            source=spec.name,
            on_error=spec.on_error,
            max_record_bytes=spec.max_record_bytes,
        )
        yield rows, f"hf:{spec.hf}"
        return
    for path in resolve_paths(spec, base_dir):
        label = _label(path, base_dir)
        yield read_file(
            path, spec.format, spec.compression, spec.on_error, spec.name, label, spec.max_record_bytes
        ), label


def iter_source(spec: SourceSpec, base_dir: Path) -> Iterator[dict | IngestErrorItem]:
    """Records of one source, in input order, each with ``meta["origin"]`` = its location.

    Rows that do not parse or do not map come back as ``IngestErrorItem`` when
    ``on_error: skip`` (reason ``malformed`` / ``unmappable`` / ``oversized``); with
    ``on_error: fail`` they raise ``IngestError`` naming ``file:line`` and the fix.
    ``limit`` counts rows read, bad ones included. ``preset: auto`` checks every row: the
    first row of a known shape sets the file's preset, and a row of no known shape or of
    another one is a bad row (see ``shape_error``).
    """
    ctx = source_context(spec)
    mapping = spec.mapping
    limit = spec.limit
    auto = mapping == "auto"
    keep_origin = mapping != "am"  # AM rows round-trip exactly; origin would add to meta
    seen = 0
    ids: set[int | str] = set()  # the ids given so far (as ints): upstream ids and texts repeat
    ids_add = ids.add
    if limit == 0:
        return
    for rows, file_label in iter_raw(spec, Path(base_dir)):
        preset = None if auto else get_preset(mapping)
        file_preset: str | None = None
        for item in rows:
            if type(item) is tuple:
                raw, loc = item
                if auto and ((shape := detect_shape(raw)) is None or shape != file_preset):
                    if file_preset is None and shape is not None:  # the file's first known shape
                        file_preset, preset, keep_origin = shape, get_preset(shape), shape != "am"
                    else:
                        item = shape_error(raw, loc, file_preset, spec)
                if type(item) is tuple:
                    item = map_row(raw, loc, preset, spec, ctx, keep_origin)
                if type(item) is dict:
                    key = _id_key(item["id"])
                    if key in ids:
                        key = _disambiguate(item, ids, spec.name)
                    ids_add(key)
            yield item
            if limit is not None:
                seen += 1
                if seen >= limit:
                    return


def source_context(spec: SourceSpec) -> Context:
    return Context(spec.name, spec.category, spec.model, tuple(spec.meta_fields), dict(spec.columns or {}))


def shape_error(raw: dict, loc: str, file_preset: str | None, spec: SourceSpec) -> IngestErrorItem:
    """``preset: auto`` met a row whose shape is not the file's (``file_preset``, set by
    the file's first row of a known shape; None before it): no known shape, or another
    one, whose rows the file's preset would map wrongly without a word. An
    ``IngestErrorItem`` (``on_error: skip``), or an ``IngestError`` naming the place and
    the row's upstream id (``fail``)."""
    name = detect_shape(raw)
    if name is None:
        error = no_shape_message(raw)
    else:
        error = (
            f"the row has the shape of preset {name!r}, the file's first rows that of {file_preset!r}; "
            "rows of two shapes in one file are not mapped by guess: split the file, or set `preset:`"
        )
    rid = original_id(raw)
    what = f" (upstream id {rid!r})" if rid is not None else ""
    if spec.on_error == "fail":
        raise IngestError(f"{loc}{what}: source {spec.name!r}: {error}. {skip_hint(spec.name)}")
    error = f"preset auto: {error}{what}"
    return IngestErrorItem(location=loc, raw=_dump(raw), error=error, reason="unmappable", source=spec.name)


def map_row(raw: dict, loc: str, preset: Any, spec: SourceSpec, ctx: Context, keep_origin: bool) -> dict | IngestErrorItem:
    """One raw row → a record (``meta.origin`` = ``loc`` unless AM), or an
    ``IngestErrorItem`` (``on_error: skip``) / ``IngestError`` (``fail``) when the preset
    cannot map it. Ids are not made unique here: see ``iter_source``."""
    try:
        record = preset(raw, ctx)
    except Exception as exc:  # a preset meeting a row of the wrong shape
        msg = str(exc) if isinstance(exc, MappingError) else f"{type(exc).__name__}: {exc}"
        how = f"preset {getattr(preset, '__name__', spec.mapping)!r}"
        if spec.on_error == "fail":
            raise IngestError(
                f"{loc}: cannot map the row with {how}: {msg}. Row: {snippet(_dump(raw))!r}. "
                f"Choose another `preset:` or a `columns:` map. {skip_hint(spec.name)}"
            ) from None
        return IngestErrorItem(location=loc, raw=_dump(raw), error=f"{how}: {msg}", reason="unmappable", source=spec.name)
    if keep_origin:
        record["meta"]["origin"] = loc
    return record


def _id_key(rid: str) -> int | str:
    """A compact set key for an id: our ids are 16 hex digits, so an int of 8 bytes."""
    try:
        return int(rid, 16)
    except (ValueError, TypeError):
        return rid


def _disambiguate(record: dict, ids: set, source: str) -> int | str:
    """A later row whose id was already given gets ``stable_id(source, "<id>#<n>")``, so that
    every record of a source has its own id (the ledger and dedup key on it) and the id
    stays the same from run to run for the same input. ``meta.duplicate_id_of`` keeps the
    id it collided with."""
    base = record["id"]
    record["id"], key = _disambiguate_id(base, ids, source)
    meta = record["meta"]
    origin = meta.pop("origin", None)  # keep "origin" last, as it is added last
    meta["duplicate_id_of"] = base
    if origin is not None:
        meta["origin"] = origin
    return key


def _disambiguate_id(base: str, ids: set, source: str) -> tuple[str, int | str]:
    """(new id, its set key) for a repeated id ``base``: the first free ``<id>#<n>``."""
    n = 1
    while True:
        new = stable_id(source, f"{base}#{n}")
        key = _id_key(new)
        if key not in ids:
            return new, key
        n += 1


def _dump(raw: dict) -> str:
    return orjson.dumps(raw, default=str).decode()


def source_fingerprint(spec: SourceSpec, base_dir: Path) -> str:
    """A hash that changes when the spec, the mapping code version, or any input file
    (path, size, mtime) changes; the engine compares it to decide whether to re-ingest."""
    parts: dict[str, Any] = {"spec": spec.model_dump(mode="json"), "mapping_version": MAPPING_VERSION}
    base_dir = Path(base_dir)
    if spec.hf is not None:
        from reasonmill.io.hub import resolve_data_files

        files = resolve_data_files(spec.data_files, base_dir)
        flat: list[str] = []
        if isinstance(files, str):
            flat = [files]
        elif isinstance(files, list):
            flat = files
        elif isinstance(files, dict):
            for v in files.values():
                flat.extend([v] if isinstance(v, str) else v)
        local = [f for pattern in flat if "://" not in pattern for f in sorted(_expand(pattern))]
        parts["files"] = [_stat(Path(f)) for f in local]
    else:
        parts["files"] = [_stat(p) for p in resolve_paths(spec, base_dir)]
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _expand(pattern: str) -> list[str]:
    if any(c in pattern for c in _GLOB_CHARS):
        return [str(p) for p in globmod.glob(pattern)]
    return [pattern]


def _stat(path: Path) -> list:
    try:
        st = path.stat()
        return [str(path), st.st_size, st.st_mtime_ns]
    except OSError:
        return [str(path), None, None]
