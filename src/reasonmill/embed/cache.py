"""An on-disk embedding cache keyed by text hash, so a re-run embeds nothing twice.

Layout: ``<dir>/seg-<uuid>.keys.npy`` (sorted uint64 xxh3 hashes of the UTF-8 text) and
``seg-<uuid>.vecs.npy`` (float32 rows in the same order). Segments are append-only and
written atomically (temporary name, then rename; the keys file is renamed last, so a
segment without keys is incomplete and ignored). Several processes may share a cache
without locks: each writes its own segments. With 64-bit keys the chance of a collision
among 10M texts is ~3e-6, which we accept.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import xxhash

from .base import Embedder

#: merge segments when a cache directory holds more than this many
COMPACT_AFTER = 64


def text_keys(texts: list[str]) -> np.ndarray:
    """xxh3-64 of each text's UTF-8 bytes, as uint64."""
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(t.encode("utf-8", "surrogatepass")) for t in texts), dtype=np.uint64, count=len(texts))


class EmbeddingCache:
    """Segment store: ``lookup(keys)`` → (found mask, rows); ``add(keys, vecs)`` → new segment."""

    def __init__(self, directory: str | Path, dim: int):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._keys: np.ndarray | None = None  # sorted uint64
        self._where: np.ndarray | None = None  # (segment index << 32) | row, aligned with _keys
        self._vecs: list[np.ndarray] = []
        self._seen: set[str] = set()

    def _segment_names(self) -> list[str]:
        return sorted(p.name[: -len(".keys.npy")] for p in self.dir.glob("seg-*.keys.npy"))

    def _refresh(self) -> None:
        """Load segments written since the last look (also by other processes)."""
        names = [n for n in self._segment_names() if n not in self._seen]
        if not names and self._keys is not None:
            return
        if len(self._seen) + len(names) > COMPACT_AFTER and not self._seen:
            names = self._compact(names)
        keys = [] if self._keys is None else [self._keys]
        where = [] if self._where is None else [self._where]
        for name in names:
            try:
                k = np.load(self.dir / f"{name}.keys.npy")
                v = np.load(self.dir / f"{name}.vecs.npy", mmap_mode="r")
            except (OSError, ValueError):
                continue  # removed by a concurrent compaction, or unreadable: skip it
            if v.ndim != 2 or v.shape[1] != self.dim or len(v) != len(k):
                raise ValueError(
                    f"embedding cache segment {self.dir / name}.vecs.npy has shape {v.shape}, expected "
                    f"({len(k)}, {self.dim}); delete {self.dir} to rebuild the cache"
                )
            seg = len(self._vecs)
            self._vecs.append(v)
            self._seen.add(name)
            keys.append(k.astype(np.uint64, copy=False))
            where.append((np.uint64(seg) << np.uint64(32)) | np.arange(len(k), dtype=np.uint64))
        if keys:
            allk = np.concatenate(keys)
            allw = np.concatenate(where)
            order = np.argsort(allk, kind="stable")
            self._keys, self._where = allk[order], allw[order]
        else:
            self._keys = np.empty(0, np.uint64)
            self._where = np.empty(0, np.uint64)

    def _compact(self, names: list[str]) -> list[str]:
        """Merge many small segments into one so lookups stay cheap; best effort."""
        ks, vs = [], []
        for name in names:
            try:
                ks.append(np.load(self.dir / f"{name}.keys.npy"))
                vs.append(np.load(self.dir / f"{name}.vecs.npy"))
            except (OSError, ValueError):
                return names
        k = np.concatenate(ks)
        k, first = np.unique(k, return_index=True)
        new = self._write(k, np.concatenate(vs)[first])
        for name in names:
            for suffix in (".keys.npy", ".vecs.npy"):
                try:
                    os.unlink(self.dir / f"{name}{suffix}")
                except OSError:
                    pass
        return [new]

    def _write(self, keys: np.ndarray, vecs: np.ndarray) -> str:
        name = f"seg-{uuid.uuid4().hex}"
        order = np.argsort(keys, kind="stable")
        for suffix, arr in ((".vecs.npy", vecs[order]), (".keys.npy", keys[order])):
            tmp = self.dir / f".tmp-{name}{suffix}"
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(arr))
            os.replace(tmp, self.dir / f"{name}{suffix}")
        return name

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (found bool mask, float32 rows; rows of missing keys are zero)."""
        self._refresh()
        assert self._keys is not None and self._where is not None
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        if len(self._keys) == 0 or len(keys) == 0:
            return np.zeros(len(keys), bool), out
        pos = np.searchsorted(self._keys, keys)
        pos_c = np.minimum(pos, len(self._keys) - 1)
        found = self._keys[pos_c] == keys
        idx = np.nonzero(found)[0]
        w = self._where[pos_c[idx]]
        segs = (w >> np.uint64(32)).astype(np.int64)
        rows = (w & np.uint64(0xFFFFFFFF)).astype(np.int64)
        for s in np.unique(segs):
            sel = segs == s
            r = rows[sel]
            order = np.argsort(r)
            out[idx[sel][order]] = self._vecs[s][r[order]]
        return found, out

    def add(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        if len(keys) == 0:
            return
        self._refresh()
        keys, first = np.unique(keys, return_index=True)
        name = self._write(keys, np.asarray(vecs, dtype=np.float32)[first])
        self._seen.add(name)
        seg = len(self._vecs)
        self._vecs.append(np.load(self.dir / f"{name}.vecs.npy", mmap_mode="r"))
        assert self._keys is not None and self._where is not None
        allk = np.concatenate([self._keys, keys])
        allw = np.concatenate([self._where, (np.uint64(seg) << np.uint64(32)) | np.arange(len(keys), dtype=np.uint64)])
        order = np.argsort(allk, kind="stable")
        self._keys, self._where = allk[order], allw[order]

    def __len__(self) -> int:
        self._refresh()
        return 0 if self._keys is None else len(self._keys)


class CachedEmbedder:
    """Wraps an embedder: looks texts up by hash, encodes only the misses, stores them.

    ``texts_encoded`` and ``encode_calls`` count work actually done by the inner model, so
    tests (and progress reports) can prove a re-run re-embedded nothing.
    """

    def __init__(self, inner: Embedder, directory: str | Path):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.cache = EmbeddingCache(directory, inner.dim)
        self.texts_encoded = 0
        self.encode_calls = 0

    def encode(self, texts: list[str], batch_size: int = 1024) -> np.ndarray:
        keys = text_keys(texts)
        found, out = self.cache.lookup(keys)
        miss = np.nonzero(~found)[0]
        if len(miss):
            # encode each distinct missing text once
            mkeys, first, inverse = np.unique(keys[miss], return_index=True, return_inverse=True)
            todo = [texts[miss[i]] for i in first]
            vecs = np.asarray(self.inner.encode(todo, batch_size=batch_size), dtype=np.float32)
            self.encode_calls += 1
            self.texts_encoded += len(todo)
            self.cache.add(mkeys, vecs)
            out[miss] = vecs[inverse.reshape(-1)]
        return out
