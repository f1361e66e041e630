"""Hugging Face Hub datasets, read lazily through ``datasets`` in streaming mode.

``datasets`` is imported only when a source uses ``hf:``, so the rest of reasonmill
works without it. The same function also reads local files through ``datasets``'
builders (``hf: json`` / ``parquet`` / ``csv`` with ``data_files``), which is how the code
path is tested on a machine that cannot reach the Hub.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reasonmill.io.readers import MAX_RECORD_BYTES, IngestError, IngestErrorItem, OnError, skip_hint

_LOCAL_BUILDERS = ("json", "parquet", "csv", "text", "arrow")


def resolve_data_files(data_files: Any, base_dir: Path) -> Any:
    """Relative local ``data_files`` are taken relative to the pipeline YAML's folder."""

    def fix(p: str) -> str:
        if "://" in p or p.startswith("hf://"):
            return p
        path = Path(p).expanduser()
        return str(path if path.is_absolute() else (base_dir / path))

    if data_files is None:
        return None
    if isinstance(data_files, str):
        return fix(data_files)
    if isinstance(data_files, list):
        return [fix(p) for p in data_files]
    if isinstance(data_files, dict):
        return {k: resolve_data_files(v, base_dir) for k, v in data_files.items()}
    return data_files


def _help(name: str, exc: BaseException) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
    return (
        f"cannot load Hugging Face dataset {name!r}: {type(exc).__name__}: {str(exc).strip()[:400]}. "
        + (
            "Offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), so only datasets already in the "
            "local cache can load; unset it to reach the Hub. "
            if offline
            else "If the Hub is unreachable, set HF_HUB_OFFLINE=1 (and HF_DATASETS_OFFLINE=1) to use the local "
            "cache. "
        )
        + "For gated or private datasets set HF_TOKEN (or run `huggingface-cli login`). "
        "Or download the files and point `path:` at them."
    )


def iter_hub(
    name: str,
    *,
    subset: str | None = None,
    split: str = "train",
    streaming: bool = True,
    data_files: Any = None,
    revision: str | None = None,
    base_dir: Path = Path("."),
    source: str | None = None,
    on_error: OnError = "fail",
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Iterator[tuple[dict, str] | IngestErrorItem]:
    """Yield ``(row, "hf:name/split#i")`` from ``datasets.load_dataset(..., streaming=True)``.

    A row whose text passes ``max_record_bytes`` is a bad row (``oversized``), as in the
    file readers, so the limit means the same for every source. ``datasets`` has read it
    by then; what the limit spares is every later stage holding it."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dev/hf extra
        raise IngestError(
            f"source {source!r} reads the Hugging Face dataset {name!r}, which needs the `datasets` "
            "package: pip install 'reasonmill[hf]'"
        ) from None
    files = resolve_data_files(data_files, base_dir)
    if name in _LOCAL_BUILDERS and files is None:
        raise IngestError(f"source {source!r}: `hf: {name}` reads local files and needs `data_files:`")
    kwargs: dict[str, Any] = {"split": split, "streaming": streaming}
    if files is not None:
        kwargs["data_files"] = files
    if revision:
        kwargs["revision"] = revision
    label = f"hf:{name}" + (f"/{subset}" if subset else "") + f"/{split}"
    try:
        ds = datasets.load_dataset(name, subset, **kwargs)
    except Exception as exc:  # network, auth, missing config/split: all need the same advice
        raise IngestError(f"source {source!r}: " + _help(name, exc)) from None
    i = 0
    it = iter(ds)
    while True:
        try:
            row = next(it)
        except StopIteration:
            return
        except Exception as exc:
            raise IngestError(
                f"{label}#{i}: reading failed: {type(exc).__name__}: {str(exc)[:400]}. "
                "Check the dataset files, or read them with `path:` to get line-level errors "
                "and `on_error: skip`."
            ) from None
        size = row_bytes(row, max_record_bytes)
        if size > max_record_bytes:
            error = (f"the row holds over {max_record_bytes:,} bytes of text, over `max_record_bytes`; "
                     "raise `max_record_bytes` of the source if such rows are meant")  # fmt: skip
            if on_error == "fail":
                raise IngestError(f"{label}#{i}: {error}. {skip_hint(source)}")
            yield IngestErrorItem(location=f"{label}#{i}", raw="", error=error, reason="oversized", source=source)
        else:
            yield row, f"{label}#{i}"
        i += 1


def row_bytes(value: Any, limit: int) -> int:
    """The UTF-8 bytes of the text in a row (strings, bytes, in nested lists and dicts,
    keys included), counted until they pass ``limit``. A string's UTF-8 size is at most 4
    bytes per character, so short strings are not encoded."""
    total = 0
    todo = [value]
    while todo and total <= limit:
        v = todo.pop()
        if isinstance(v, str):
            total += len(v) if len(v) * 4 <= limit - total else len(v.encode("utf-8", "surrogatepass"))
        elif isinstance(v, (bytes, bytearray)):
            total += len(v)
        elif isinstance(v, dict):
            todo.extend(v.keys())
            todo.extend(v.values())
        elif isinstance(v, (list, tuple)):
            todo.extend(v)
        else:
            total += 8
    return total
