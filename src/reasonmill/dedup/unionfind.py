"""Connected components over integer edge lists, vectorised with numpy.

Why not a Python union-find: LSH on a million texts yields millions of candidate edges,
and a per-edge Python loop costs seconds. This is "hook and jump" (Shiloach–Vishkin
style): hook every edge's larger root under the smaller one, then pointer-jump until
each node points at its root; a few rounds suffice in practice.
"""

from __future__ import annotations

import numpy as np


def _flatten(parent: np.ndarray) -> np.ndarray:
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def connected_components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Label of each node = the smallest node index in its component."""
    parent = np.arange(n, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    while len(a):
        ra, rb = parent[a], parent[b]
        keep = ra != rb
        a, b, ra, rb = a[keep], b[keep], ra[keep], rb[keep]
        if not len(a):
            break
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        np.minimum.at(parent, hi, lo)
        parent = _flatten(parent)
    return _flatten(parent)


class UnionFind:
    """Incremental wrapper: collect edges, then label once (``labels()``)."""

    def __init__(self, n: int = 0):
        self.n = n
        self._a: list[np.ndarray] = []
        self._b: list[np.ndarray] = []

    def grow(self, n: int) -> None:
        self.n = max(self.n, n)

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        self._a.append(np.asarray(a, dtype=np.int64))
        self._b.append(np.asarray(b, dtype=np.int64))

    def labels(self) -> np.ndarray:
        a = np.concatenate(self._a) if self._a else np.empty(0, np.int64)
        b = np.concatenate(self._b) if self._b else np.empty(0, np.int64)
        return connected_components(self.n, a, b)
