"""Full transformer embedders through sentence-transformers (lazy import).

``minilm`` is the packaged all-MiniLM-L6-v2 (offline); any other name is passed to
``SentenceTransformer`` as is (a local path or a Hugging Face id such as ``BAAI/bge-m3``,
which needs the model in the local HF cache or network access, and a GPU to be fast).
"""

from __future__ import annotations

import numpy as np

from .base import l2_normalize


class SentenceTransformerEmbedder:
    def __init__(self, model: str, device: str | None = None, name: str | None = None):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RuntimeError(
                f"embedder {model!r} needs sentence-transformers: pip install sentence-transformers "
                "torch==2.13.0 (the CPU build; a plain 'torch' pulls GBs of CUDA)"
            ) from exc
        self.model = SentenceTransformer(model, device=device)
        self.dim = int(self.model.get_sentence_embedding_dimension() or 0)
        self.name = name or model.replace("/", "__")

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        vecs = self.model.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
            show_progress_bar=False,
        )
        return l2_normalize(np.asarray(vecs, dtype=np.float32))
