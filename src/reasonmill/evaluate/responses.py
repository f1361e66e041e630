"""``--responses FILE``: score outputs someone else generated, with no endpoint.

The file is read through the ingest presets, so every shape ``reasonmill verify`` reads
works here: Qwen2.5-Math / SkyThought evaluation outputs (``question``, ``gt``, ``code``
= the n responses, ``score`` = the upstream verdicts), SkyThought's ``responses`` by
temperature, chat ``messages``, AM rows... Each record is one item; its responses are
its samples. An upstream verdict, when present, is kept beside ours so every
disagreement can be looked at.
"""

from __future__ import annotations

from pathlib import Path

from reasonmill.io.sources import SourceSpec, iter_source
from reasonmill.verify.choice import parse_choices

from .scoring import ToScore


def load_responses(path: str | Path, name: str | None = None, preset: str = "auto") -> tuple[str, list[ToScore], int]:
    """(benchmark name, the samples to score, rows that could not be read)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"--responses: {path} not found")
    name = name or bench_name(path)
    spec = SourceSpec(name=name, path=str(path), preset=None if preset == "auto" else preset, on_error="skip")
    out: list[ToScore] = []
    bad = 0
    for rec in iter_source(spec, path.parent):
        if not isinstance(rec, dict):
            bad += 1
            continue
        kind = _kind(rec)
        item_id = str(rec.get("original_id") if rec.get("original_id") is not None else rec["id"])
        for i, resp in enumerate(rec.get("responses") or []):
            out.append(ToScore(name, item_id, i, kind, rec, resp))
    if not out:
        raise ValueError(f"--responses {path}: no responses found ({bad} rows could not be read)")
    return name, out, bad


def bench_name(path: Path) -> str:
    """The file's name without its data suffixes (``qwen2.5-7b_math500.jsonl.gz`` → ``qwen2.5-7b_math500``)."""
    name = path.name
    for suffix in (".gz", ".zst", ".jsonl", ".json", ".parquet"):
        name = name.removesuffix(suffix)
    return name


def _kind(record: dict) -> str:
    if record.get("category") == "code" and record.get("tests"):
        return "code"
    meta = record.get("meta") or {}
    ref = str(record.get("reference_answer") or "").strip().strip("()")
    if (meta.get("choices") or parse_choices(record.get("problem") or "")) and len(ref) == 1 and ref.isalpha():
        return "choice"
    return "math"
