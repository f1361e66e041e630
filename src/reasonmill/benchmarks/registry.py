"""The registry of evaluation sets that decontamination checks against.

A benchmark is named in YAML either by a built-in name (``math500``) or by a mapping
(``{name: my_eval, path: evals/my.jsonl, field: problem}``). Built-in names map to a Hugging
Face dataset id, read lazily and in streaming mode through ``datasets``; ``path:`` overrides
the Hub with a local copy (JSONL, JSON, Parquet, CSV, optionally gzip/zstd, or a zip, which
is read in memory only, so a password-protected set such as GPQA never touches the disk in
plain text).

Every loader returns items ``{benchmark, item_id, text, answer}``; the decontamination index
is built from them.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: the password the GPQA authors publish for their dataset zip (not a secret; it only keeps
#: the questions out of plain-text web crawls)
GPQA_PASSWORD = "deserted-untie-orchid"


class BenchmarkError(ValueError):
    """A benchmark cannot be loaded; the message names the benchmark, the file and the fix."""


class BenchmarkSpec(BaseModel):
    """Where one evaluation set comes from and which fields hold its text, answer and id.

    ``field``/``answer_field``/``id_field`` accept a list of candidates: the first one present
    in a row wins, which lets one built-in spec read both the Hub copy and common local copies.
    ``date_field`` with ``date_from``/``date_to`` (inclusive, ISO dates) keeps only the items
    in a window, as LiveCodeBench's dated releases need.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    hf: str | None = None
    subset: str | None = None
    split: str = "test"
    revision: str | None = None
    path: str | None = None
    member: str | None = None
    password: str | None = None
    field: list[str] = ["problem"]
    answer_field: list[str] = ["answer"]
    id_field: list[str] = ["id", "unique_id"]
    date_field: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    #: decontamination thresholds for this benchmark's items (None: the stage's own)
    ngram_coverage: float | None = Field(None, gt=0, le=1)
    embedding_cosine: float | None = Field(None, ge=-1, le=1)

    @field_validator("field", "answer_field", "id_field", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


BUILTIN: dict[str, dict[str, Any]] = {
    "math500": dict(hf="HuggingFaceH4/MATH-500", split="test", field=["problem"],
                    answer_field=["answer"], id_field=["unique_id", "id"]),
    "aime24": dict(hf="HuggingFaceH4/aime_2024", split="train", field=["problem"],
                   answer_field=["answer"], id_field=["id", "ID"]),
    "aime25": dict(hf="math-ai/aime25", split="test", field=["problem"],
                   answer_field=["answer"], id_field=["id", "ID"]),
    "gpqa_diamond": dict(hf="Idavidrein/gpqa", subset="gpqa_diamond", split="train",
                         field=["Question"], answer_field=["Correct Answer"],
                         id_field=["Record ID", "id"], password=GPQA_PASSWORD),
    "livecodebench": dict(hf="livecodebench/code_generation_lite", split="test",
                          field=["question_content", "problem", "prompt"], answer_field=[],
                          id_field=["question_id", "id"], date_field="contest_date"),
}
ALIASES = {"math-500": "math500", "aime2024": "aime24", "aime_2024": "aime24", "aime2025": "aime25",
           "aime_2025": "aime25", "gpqa": "gpqa_diamond", "gpqa-diamond": "gpqa_diamond", "lcb": "livecodebench"}


def resolve_spec(entry: str | dict | BenchmarkSpec) -> BenchmarkSpec:
    """A YAML entry → a full spec: built-in defaults, overridden by the keys the user gave.

    A spec object counts only the fields set on it, so a built-in benchmark keeps its field
    names and zip password when ``path:`` points at a local copy, however the entry came.
    """
    if isinstance(entry, BenchmarkSpec):
        entry = entry.model_dump(exclude_unset=True)
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or "name" not in entry:
        raise BenchmarkError(f"benchmark entry {entry!r}: expected a name (e.g. math500) or a mapping "
                             "with at least `name:` and `path:` or `hf:`")
    name = str(entry["name"])
    key = ALIASES.get(name.lower(), name.lower())
    base = dict(BUILTIN.get(key, {}))
    if entry.get("path") and "hf" not in entry:
        base.pop("hf", None)  # a local override never falls back to the Hub
    merged = {**base, **entry, "name": key if key in BUILTIN else name}
    if not merged.get("hf") and not merged.get("path"):
        known = ", ".join(sorted(BUILTIN))
        raise BenchmarkError(f"benchmark {name!r} is not built in ({known}); give it `path:` (a local "
                             "jsonl/json/parquet/csv/zip file) or `hf:` (a Hugging Face dataset id)")
    try:
        return BenchmarkSpec(**merged)
    except Exception as exc:
        raise BenchmarkError(f"benchmark {name!r}: bad settings: {exc}") from None


def _first(row: dict, names: list[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in row and row[name] is not None and row[name] != "":
            return name, row[name]
    return None, None


def _as_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return date.fromisoformat(text[:10])


def _answer_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def items_from_rows(spec: BenchmarkSpec, rows: Iterable[tuple[dict, str]], keep_row: bool = False) -> list[dict]:
    """Map raw rows to benchmark items, applying the date window; errors name the row.

    ``keep_row`` adds the raw row as ``row`` (evaluation needs the choices and tests)."""
    items: list[dict] = []
    for i, (row, location) in enumerate(rows):
        _, text = _first(row, spec.field)
        if text is None:
            raise BenchmarkError(f"benchmark {spec.name!r}, {location}: no text field among {spec.field} "
                                 f"(row has {sorted(row)[:12]}); set `field:` to the column holding the problem")
        if spec.date_field and (spec.date_from or spec.date_to):
            try:
                when = _as_date(row.get(spec.date_field))
            except ValueError:
                raise BenchmarkError(f"benchmark {spec.name!r}, {location}: {spec.date_field}="
                                     f"{row.get(spec.date_field)!r} is not an ISO date") from None
            if when is None:
                raise BenchmarkError(f"benchmark {spec.name!r}, {location}: the date window needs "
                                     f"{spec.date_field!r}, which this row lacks; drop date_from/date_to "
                                     "or set `date_field:`")
            if (spec.date_from and when < spec.date_from) or (spec.date_to and when > spec.date_to):
                continue
        _, item_id = _first(row, spec.id_field)
        _, answer = _first(row, spec.answer_field) if spec.answer_field else (None, None)
        item = {
            "benchmark": spec.name,
            "item_id": str(item_id) if item_id is not None else f"{spec.name}#{i}",
            "text": str(text),
            "answer": _answer_text(answer),
        }
        if keep_row:
            item["row"] = row
        items.append(item)
    return items


def _zip_rows(spec: BenchmarkSpec, path: Path) -> Iterator[tuple[dict, str]]:
    """Rows of the data files inside a zip, decrypted in memory only (nothing is extracted)."""
    pwd = spec.password.encode() if spec.password else None
    with zipfile.ZipFile(path) as zf:
        names = [spec.member] if spec.member else [
            n for n in zf.namelist() if n.rsplit(".", 1)[-1].lower() in ("json", "jsonl", "parquet")]
        if spec.member and spec.member not in zf.namelist():
            raise BenchmarkError(f"benchmark {spec.name!r}: {path} has no member {spec.member!r} "
                                 f"(members: {zf.namelist()})")
        found = False
        for name in names:
            try:
                data = zf.read(name, pwd=pwd)
            except RuntimeError as exc:  # encrypted and no/wrong password
                raise BenchmarkError(f"benchmark {spec.name!r}: cannot decrypt {path}!{name}: {exc}; "
                                     "set `password:`") from None
            rows = list(_rows_of_bytes(data, name, f"{path}!{name}"))
            # without an explicit member, skip files of another shape (e.g. a formatted copy)
            if not spec.member and rows and _first(rows[0][0], spec.field)[0] is None:
                continue
            found = True
            yield from rows
        if not found:
            raise BenchmarkError(f"benchmark {spec.name!r}: no member of {path} has a field among "
                                 f"{spec.field}; set `member:` and `field:`")


def _rows_of_bytes(data: bytes, name: str, label: str) -> Iterator[tuple[dict, str]]:
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(io.BytesIO(data)).to_pylist()):
            yield row, f"{label}#{i}"
        return
    text = data.decode("utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("["):
        doc = json.loads(text)
        for i, row in enumerate(doc):
            yield row, f"{label}[{i}]"
        return
    for lineno, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 is not a row end
        if line.strip():
            try:
                yield json.loads(line), f"{label}:{lineno}"
            except json.JSONDecodeError as exc:
                raise BenchmarkError(f"{label}:{lineno}: not JSON ({exc})") from None


def local_path(spec: BenchmarkSpec, base_dir: str | Path = ".") -> Path | None:
    """The local file a spec reads (``path:`` against ``base_dir``), or None for the Hub."""
    if not spec.path:
        return None
    path = Path(spec.path).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def _local_rows(spec: BenchmarkSpec, base_dir: Path) -> Iterator[tuple[dict, str]]:
    path = local_path(spec, base_dir)
    assert path is not None
    if not path.is_file():
        raise BenchmarkError(f"benchmark {spec.name!r}: file {path} not found; fix `path:`")
    if path.suffix.lower() == ".zip":
        yield from _zip_rows(spec, path)
        return
    from reasonmill.io.readers import IngestError, read_file

    try:
        yield from read_file(path, source=f"benchmark:{spec.name}")  # type: ignore[misc]
    except IngestError as exc:
        raise BenchmarkError(f"benchmark {spec.name!r}: {exc}") from None


def _hub_rows(spec: BenchmarkSpec) -> Iterator[tuple[dict, str]]:
    from reasonmill.io.hub import iter_hub
    from reasonmill.io.readers import IngestError

    try:
        yield from iter_hub(spec.hf or "", subset=spec.subset, split=spec.split, streaming=True,
                            revision=spec.revision, source=f"benchmark:{spec.name}")
    except IngestError as exc:
        raise BenchmarkError(f"benchmark {spec.name!r}: {exc}") from None


def iter_rows(spec: BenchmarkSpec, base_dir: str | Path = ".") -> Iterator[tuple[dict, str]]:
    """The raw rows of a spec with their locations: the local ``path:`` if set, else the Hub."""
    return _local_rows(spec, Path(base_dir)) if spec.path else _hub_rows(spec)


def load_benchmark(entry: str | dict | BenchmarkSpec, base_dir: str | Path = ".", keep_row: bool = False) -> list[dict]:
    """Load one benchmark's items: the local ``path:`` if set, else the Hugging Face Hub."""
    spec = resolve_spec(entry)
    items = items_from_rows(spec, iter_rows(spec, base_dir), keep_row)
    if not items:
        raise BenchmarkError(f"benchmark {spec.name!r} has no items (check `path:`/`hf:` and the date window)")
    return items


def load_benchmarks(entries: Iterable[str | dict | BenchmarkSpec], base_dir: str | Path = ".") -> list[dict]:
    """Load several benchmarks; names must be unique so evidence is unambiguous."""
    out: list[dict] = []
    seen: set[str] = set()
    for entry in entries:
        spec = resolve_spec(entry)
        if spec.name in seen:
            raise BenchmarkError(f"benchmark {spec.name!r} is listed twice; give one of them another `name:`")
        seen.add(spec.name)
        out.extend(load_benchmark(spec, base_dir))
    return out
