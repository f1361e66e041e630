"""Dataset-level boilerplate filter (SPEC §1 item 7).

Drop responses that share a 20-token n-gram occurring in more than 20 responses: such
n-grams are canned refusals, templated disclaimers or copied preambles, and training on
them teaches the model to emit them everywhere.

Memory: texts are never held. Pass 1 turns each text into the set of its n-gram hashes
(64-bit, a rolling polynomial hash over token hashes, in numpy) and counts in how many
texts each hash occurs; pass 2 re-reads the texts and flags those holding a frequent
hash. Counts live in two numpy arrays (16 bytes per distinct n-gram); with
``partitions=k`` each pass only keeps hashes with ``h % k == p``, so peak memory drops by
``k`` at the price of ``k`` reads. Counting is per text: one response that repeats a
passage 30 times is the repetition rule's business, not this one's.

Token hashes use Python's ``hash`` (salted per process), so both passes must run in the
same process, which ``find_boilerplate`` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import chain
from typing import Iterable, Iterator

import numpy as np

_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\w+|[^\w\s]")
_P = np.uint64(0x100000001B3)  # odd multiplier of the rolling hash
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads the polynomial hash over all 64 bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def ngram_hashes(text: str, n: int) -> tuple[np.ndarray, int]:
    """The uint64 hash of every ``n``-token window of ``text`` (in order), and the token count."""
    toks = _TOKEN.findall(text)
    m = len(toks) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64), len(toks)
    h = np.fromiter(map(hash, toks), dtype=np.int64, count=len(toks)).view(np.uint64)
    return _rolling(h, n), len(toks)


def _rolling(h: np.ndarray, n: int) -> np.ndarray:
    """Hash of every window of ``n`` consecutive token hashes (uint64 arithmetic wraps)."""
    m = len(h) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    acc = h[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            acc *= _P
            acc += h[j : j + m]
        return _mix(acc)


def _iter_unique_hashes(texts: Iterable[str], n: int, chunk: int = 256) -> Iterator[np.ndarray]:
    """Per text, its distinct n-gram hashes. Texts are hashed ``chunk`` at a time in one
    numpy pass over their concatenated tokens (windows that straddle two texts are cut
    out), which removes most of numpy's per-call overhead on short texts."""
    buf: list[str] = []

    def flush() -> Iterator[np.ndarray]:
        toks = [_TOKEN.findall(t or "") for t in buf]
        lens = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
        flat = np.fromiter(map(hash, chain.from_iterable(toks)), dtype=np.int64, count=int(lens.sum())).view(np.uint64)
        acc = _rolling(flat, n)
        start = 0
        for L in lens.tolist():
            if L >= n:
                yield np.unique(acc[start : start + L - n + 1])
            else:
                yield np.empty(0, dtype=np.uint64)
            start += L
        buf.clear()

    for t in texts:
        buf.append(t)
        if len(buf) >= chunk:
            yield from flush()
    if buf:
        yield from flush()


@dataclass
class BoilerplateResult:
    """``flagged``: indexes of texts to drop; ``evidence[i]``: the most shared n-gram of text i."""

    flagged: set[int] = field(default_factory=set)
    evidence: dict[int, dict] = field(default_factory=dict)
    n: int = 20
    max_count: int = 20
    texts: int = 0
    distinct_ngrams: int = 0


class _Counter:
    """Counts hashes with sorted numpy arrays, merging buffered chunks."""

    def __init__(self, chunk: int = 4_000_000):
        self.keys = np.empty(0, dtype=np.uint64)
        self.counts = np.empty(0, dtype=np.int64)
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self.chunk = chunk

    def add(self, unique_hashes: np.ndarray) -> None:
        self._buf.append(unique_hashes)
        self._buffered += len(unique_hashes)
        if self._buffered >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        new_keys, new_counts = np.unique(np.concatenate(self._buf), return_counts=True)
        self._buf, self._buffered = [], 0
        if len(self.keys) == 0:
            self.keys, self.counts = new_keys, new_counts.astype(np.int64)
            return
        keys = np.concatenate([self.keys, new_keys])
        counts = np.concatenate([self.counts, new_counts])
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        uniq, start = np.unique(keys, return_index=True)
        self.keys, self.counts = uniq, np.add.reduceat(counts, start)


def _reiterable(texts: Iterable[str]) -> Iterable[str]:
    if iter(texts) is texts:  # a one-shot iterator: it must be held to be read twice
        return list(texts)
    return texts


def find_boilerplate(
    texts: Iterable[str], n: int = 20, max_count: int = 20, partitions: int = 1, cache_mb: float = 256
) -> BoilerplateResult:
    """Flag every text holding an ``n``-token n-gram found in more than ``max_count`` texts.

    ``texts`` is read twice per partition; pass a list, or any re-iterable (a one-shot
    iterator is materialized). Pass 1 keeps each text's distinct hashes while they fit in
    ``cache_mb`` so pass 2 need not re-tokenize; past the budget it re-reads the texts.
    Returns the flagged indexes and, for each, the evidence ``{"ngram": text, "count": texts_holding_it, "hash": hex}``.
    """
    if n < 1 or max_count < 1 or partitions < 1:
        raise ValueError(f"find_boilerplate: n, max_count and partitions must be >= 1 (got {n}, {max_count}, {partitions})")
    texts = _reiterable(texts)
    result = BoilerplateResult(n=n, max_count=max_count)
    best: dict[int, tuple[int, int]] = {}  # index -> (count, hash)
    k = np.uint64(partitions)
    budget = cache_mb * 2**20 if partitions == 1 else 0
    for part in range(partitions):
        counter = _Counter()
        cache: list[np.ndarray] | None = []
        cached_bytes = 0
        n_texts = 0
        for h in _iter_unique_hashes(texts, n):
            if partitions > 1:
                h = h[h % k == np.uint64(part)]
            if len(h):
                counter.add(h)
            if cache is not None:
                cached_bytes += h.nbytes + 100
                cache.append(h)
                if cached_bytes > budget:
                    cache = None  # over budget: pass 2 re-reads the texts instead
            n_texts += 1
        counter.flush()
        result.texts = n_texts
        result.distinct_ngrams += len(counter.keys)
        frequent = counter.counts > max_count
        fkeys, fcounts = counter.keys[frequent], counter.counts[frequent]
        del counter
        if len(fkeys) == 0:
            continue
        second = cache if cache is not None else _iter_unique_hashes(texts, n)
        for i, h in enumerate(second):
            if partitions > 1:
                h = h[h % k == np.uint64(part)]
            if not len(h):
                continue
            pos = np.searchsorted(fkeys, h)
            pos[pos >= len(fkeys)] = 0
            hit = fkeys[pos] == h
            if not hit.any():
                continue
            counts = np.where(hit, fcounts[pos], 0)
            j = int(np.argmax(counts))
            cand = (int(counts[j]), int(h[j]))
            if i not in best or cand[0] > best[i][0]:
                best[i] = cand
    if best:
        wanted = {h for _, h in best.values()}
        text_of = _ngram_texts(texts, n, wanted, set(best))
        for i, (count, h) in best.items():
            result.flagged.add(i)
            result.evidence[i] = {"ngram": text_of.get(h, ""), "count": count, "hash": f"{h:016x}"}
    return result


def _ngram_texts(texts: Iterable[str], n: int, wanted: set[int], indexes: set[int]) -> dict[int, str]:
    """The original text of each wanted n-gram hash, read from the flagged texts only."""
    out: dict[int, str] = {}
    for i, text in enumerate(texts):
        if i not in indexes or len(out) == len(wanted):
            continue
        h, _ = ngram_hashes(text, n)
        spans = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
        for j in np.nonzero(np.isin(h, np.fromiter(wanted, dtype=np.uint64)))[0]:
            key = int(h[j])
            if key not in out:
                out[key] = text[spans[j][0] : spans[j + n - 1][1]]
    return out


def iter_unflagged(texts: Iterable[str], result: BoilerplateResult) -> Iterator[tuple[int, str]]:
    """The texts that survive the filter, with their indexes."""
    for i, t in enumerate(texts):
        if i not in result.flagged:
            yield i, t
