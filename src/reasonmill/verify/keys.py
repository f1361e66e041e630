"""Verdict cache keys: a cached verdict is reused only when nothing that decided it changed.

Every verifier's ``cache_key(record, response)`` is ``verdict_key(...)`` over:

- its ``name`` and its ``version`` class attribute;
- its settings (the pydantic model, dumped; knobs that cannot change a verdict, such as
  the number of workers, may be left out);
- the versions of the libraries and programs that decide it (``package_versions``);
- every record and response field it reads, and nothing else (an unrelated edit of the
  record must not re-run a sandbox).

Bump rule for ``version``: bump it in the commit that changes what a verifier returns for
the same inputs and settings (extraction, comparison, reason codes, scores, details that
later stages read). Refactors, speedups and docs do not bump it. A bump re-verifies every
response that verifier has seen; the old rows stay in the SQLite file, unused.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import metadata
from typing import Any


def verdict_key(name: str, version: str, settings: Any, libraries: Any, fields: Any) -> str:
    """128-bit hex digest of the JSON of everything a verdict depends on."""
    payload = json.dumps(
        {"verifier": name, "version": version, "settings": settings, "libraries": libraries,
         "fields": fields},
        ensure_ascii=False, sort_keys=True, default=str,
    )
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()


@lru_cache(maxsize=None)
def package_versions(*names: str) -> dict[str, str | None]:
    """Installed distribution versions (None when a package is absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
