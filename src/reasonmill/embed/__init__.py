"""Sentence embedders for semantic dedup and decontamination.

``get_embedder(name)`` returns an object with ``name``, ``dim`` and
``encode(texts, batch_size) -> float32 array of L2-normalised rows``, wrapped by default in
an on-disk cache keyed by text hash (``<cache_dir>/embeddings/<embedder name>/``).

Names:

- ``static-minilm`` (default): static model derived once from all-MiniLM-L6-v2
  (``static-minilm-128`` etc. choose the PCA dimension); ~10k+ sentences/s on 2 cores.
- ``static-minilm-logtf`` (``static-minilm-128-logtf``): the same vectors, each token
  weighted by 1 + log(count) instead of its count; the default of semantic dedup.
- ``minilm``: the full all-MiniLM-L6-v2 via sentence-transformers (needs torch).
- anything else: a sentence-transformers model name or local path (e.g. ``BAAI/bge-m3``).
"""

from __future__ import annotations

from pathlib import Path

from .base import Embedder, default_cache_dir, l2_normalize
from .cache import CachedEmbedder, EmbeddingCache, text_keys

DEFAULT_EMBEDDER = "static-minilm"

__all__ = [
    "DEFAULT_EMBEDDER",
    "CachedEmbedder",
    "Embedder",
    "EmbeddingCache",
    "default_cache_dir",
    "get_embedder",
    "l2_normalize",
    "text_keys",
]


def get_embedder(
    name: str = DEFAULT_EMBEDDER,
    *,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    device: str | None = None,
) -> Embedder:
    """Build an embedder by name; ``cache=True`` adds the on-disk embedding cache.

    ``cache_dir`` defaults to ``$REASONMILL_CACHE`` or ``~/.cache/reasonmill``; derived
    static models always live in the default cache dir, so tests with a temporary
    ``cache_dir`` do not re-derive them.
    """
    inner: Embedder
    if name == "static-minilm" or name.startswith("static-minilm-"):
        from .static import StaticEmbedder

        suffix = name[len("static-minilm-") :] if name != "static-minilm" else "256"
        tf = "mean"
        if suffix == "logtf" or suffix.endswith("-logtf"):
            tf, suffix = "log", (suffix[: -len("-logtf")] if suffix != "logtf" else "256")
        if not suffix.isdigit():
            raise ValueError(
                f"embedder {name!r}: expected static-minilm[-<dim>][-logtf], e.g. static-minilm-128 or static-minilm-logtf"
            )
        inner = StaticEmbedder(dim=int(suffix), tf=tf)
    elif name == "minilm":
        from .sentence import SentenceTransformerEmbedder
        from .static import minilm_model_dir

        inner = SentenceTransformerEmbedder(str(minilm_model_dir()), device=device, name="all-MiniLM-L6-v2")
    else:
        from .sentence import SentenceTransformerEmbedder

        inner = SentenceTransformerEmbedder(name, device=device)
    if not cache:
        return inner
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    return CachedEmbedder(inner, base / "embeddings" / inner.name)
