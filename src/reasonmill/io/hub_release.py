"""Publishing exported files and their dataset card to the Hugging Face Hub, after a release check.

A team once uploaded a dataset identical to an earlier one, and its rows shipped with
malformed fields. So before any upload:

- every row of every file passes the schema (AM rows: ``validate_am_row``; messages and
  ShareGPT rows: one user and one assistant turn, non-empty);
- the card's row counts equal the files' (the card's "Files" table);
- sha256 checksums are computed and uploaded as ``checksums.sha256``;
- an upload identical to the current revision of the target repo is refused (compared
  file by file: the Hub's LFS sha256, or its git blob id for regular files).

The upload itself is ``huggingface_hub``'s ``create_repo`` + ``create_commit``; ``endpoint``
points it at another server (tests run a local one that speaks those endpoints).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CHECKSUMS = "checksums.sha256"


class ReleaseError(ValueError):
    """The release check failed: nothing was uploaded."""


@dataclass
class ReleaseFile:
    path: Path | None
    name: str  # its path in the repo
    rows: int | None  # None for the card and the checksums
    sha256: str
    git_sha1: str  # the git blob id, which the Hub reports for regular (non-LFS) files
    content: bytes | None = None  # made here (the checksums), not read from a file

    @classmethod
    def of_bytes(cls, path: Path | None, name: str, data: bytes, rows: int | None) -> "ReleaseFile":
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return cls(path, name, rows, hashlib.sha256(data).hexdigest(), blob, None if path else data)


def iter_rows(path: Path) -> Iterator[dict]:
    """The rows of an exported file (JSONL, optionally .gz/.zst, or Parquet)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=2000):
            yield from batch.to_pylist()
        return
    from reasonmill.io.writers import open_text

    with open_text(path, "rt") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReleaseError(f"{path.name}:{lineno}: not JSON ({exc})") from None


def row_errors(row: dict, fmt: str) -> list[str]:
    if fmt == "am":
        from reasonmill.io.formats import validate_am_row

        return validate_am_row(row)
    key, role_key, text_key, roles = (("messages", "role", "content", ("user", "assistant")) if fmt == "messages"
                                      else ("conversations", "from", "value", ("human", "gpt")))
    turns = row.get(key)
    if not isinstance(turns, list) or [t.get(role_key) for t in turns if isinstance(t, dict)] != list(roles):
        return [f"{key} must be one {roles[0]} turn then one {roles[1]} turn"]
    return [f"empty {t[role_key]} turn" for t in turns if not str(t.get(text_key) or "").strip()]


def card_rows(card_text: str) -> dict[str, int]:
    """File name → rows, from the card's "Files" table (``report.card``)."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| `([^`]+)` \| \w+ \| (\d+) \|", card_text, re.M)}


def release_check(files: list[tuple[Path, str]], card: Path) -> list[ReleaseFile]:
    """Check ``files`` (path, format) and the card; returns what to upload (the card as
    ``README.md``, the files, ``checksums.sha256``). Raises ``ReleaseError`` naming every problem."""
    problems: list[str] = []
    out: list[ReleaseFile] = []
    declared = card_rows(card.read_text(encoding="utf-8"))
    for path, fmt in files:
        n = 0
        bad = 0
        for n, row in enumerate(iter_rows(path), 1):
            errs = row_errors(row, fmt)
            if errs:
                bad += 1
                if bad <= 3:
                    problems.append(f"{path.name} row {n}: " + "; ".join(errs))
        if bad > 3:
            problems.append(f"{path.name}: {bad} rows fail the {fmt} schema in all")
        if declared.get(path.name) != n:
            problems.append(f"{path.name}: the card says {declared.get(path.name, 'nothing')} rows, the file holds {n}")
        out.append(ReleaseFile.of_bytes(path, path.name, path.read_bytes(), n))
    if problems:
        raise ReleaseError("release check failed, nothing uploaded: " + " | ".join(problems))
    out.insert(0, ReleaseFile.of_bytes(card, "README.md", card.read_bytes(), None))
    sums = "".join(f"{f.sha256}  {f.name}\n" for f in out).encode()
    out.append(ReleaseFile.of_bytes(None, CHECKSUMS, sums, None))
    return out


def same_as_remote(local: list[ReleaseFile], siblings: list) -> bool:
    """True when the repo's current revision holds exactly these files with these contents."""
    remote = {}
    for s in siblings:
        lfs = getattr(s, "lfs", None)
        remote[s.rfilename] = (lfs.sha256 if lfs is not None else None, getattr(s, "blob_id", None))
    remote.pop(".gitattributes", None)
    if set(remote) != {f.name for f in local}:
        return False
    return all(remote[f.name][0] == f.sha256 or remote[f.name][1] == f.git_sha1 for f in local)


def push_release(files: list[tuple[Path, str]], card: Path, repo_id: str, *, token: str | None = None,
                 private: bool = True, endpoint: str | None = None, message: str | None = None) -> str:
    """Run the release check, then upload; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    release = release_check(files, card)
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.dataset_info(repo_id, files_metadata=True)
    if same_as_remote(release, info.siblings or []):
        raise ReleaseError(f"refused: {repo_id} at {info.sha} already holds these exact files (checksums match)")
    ops = [CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=f.content if f.content is not None else str(f.path))
           for f in release]
    commit = api.create_commit(repo_id, ops, repo_type="dataset",
                               commit_message=message or f"reasonmill release ({len(files)} files)")
    return commit.commit_url


def push_hub_export(spec, export: dict, name: str, stats, stage_reports: list, removals: dict, pipeline_yaml: str) -> str:
    """An ``exports: - {hf: org/name}`` entry (``config.ExportSpec``): its staged Parquet file
    gets its own card (``README.md``, the same content as the local card, for this file) and
    is pushed with ``push_release``. Returns the commit URL."""
    import os

    from reasonmill.report.card import write_card

    path = Path(export["path"])
    card = path.parent / "README.md"
    write_card(card, name, stats, stage_reports, removals, [export], pipeline_yaml)
    token = os.environ.get(spec.token_env) or None
    return push_release([(path, spec.format)], card, spec.hf, token=token, private=spec.private, endpoint=spec.endpoint)
