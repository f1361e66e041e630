"""The embedder contract shared by semantic dedup and decontamination.

An embedder turns texts into L2-normalised float32 rows, so a dot product is a cosine.
Everything else (caching, batching, which model) hides behind ``encode``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """What callers rely on: a stable ``name`` (it keys the cache), ``dim`` and ``encode``."""

    name: str
    dim: int

    def encode(self, texts: list[str], batch_size: int = 1024) -> np.ndarray:
        """Return an ``(len(texts), dim)`` float32 array of L2-normalised rows."""
        ...


def default_cache_dir() -> Path:
    """``$REASONMILL_CACHE`` or ``~/.cache/reasonmill``: where derived models and caches live."""
    env = os.environ.get("REASONMILL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "reasonmill"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Normalise rows in place (float32); all-zero rows (empty texts) stay zero."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        np.divide(x, norms, out=x, where=norms > 0)
        return x
    # einsum: no n×d temporary (np.linalg.norm squares a copy: +1 GB at a million rows)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    np.divide(x, norms, out=x, where=norms > 0)
    return x
