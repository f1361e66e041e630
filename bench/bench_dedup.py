#!/usr/bin/env python3
"""Dedup benchmark: our MinHash and semantic dedup against datatrove, semhash, bare rensa.

Usage (from the repo root):
  .venv/bin/python bench/bench_dedup.py --n 100000                 # quick
  .venv/bin/python bench/bench_dedup.py --n 1000000                # the issue's benchmark
  .venv/bin/python bench/bench_dedup.py --n 100000 --methods ours-minhash,ours-semantic

The corpus comes from ../shared/bench/make_dedup_corpus.py (seeded) and is generated
under bench/_work/dedup/ (gitignored). Every method runs in its own subprocess, reads
the JSONL itself (that time counts; ours stream it, as the stages stream shards, unless
``--no-stream``), writes one cluster label per row; we report wall
time, peak RSS (ru_maxrss of the method's process, and the largest of its worker
processes) and pairwise precision/recall/F1 against the ground-truth ``cluster`` field.

Peers run from a separate virtualenv (bench/_work/dedup/peers, created with
``python3.11 -m venv`` + ``pip install datatrove semhash``) so their pins never touch
the project's venv. semhash gets a model2vec StaticModel built from *our* static
MiniLM vectors (no hub download is possible here), i.e. the same embedding.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "dedup"
SHARED = ROOT.parent / "shared"
PEERS_PY = WORK / "peers" / "bin" / "python"

METHODS = ("ours-minhash", "ours-semantic", "rensa-bare", "datatrove", "semhash")


# ----------------------------------------------------------------------------- metrics
def pair_count(counts: np.ndarray) -> int:
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def pairwise_f1(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Precision/recall/F1 over same-cluster pairs via contingency counts (no pair lists)."""
    pred = np.unique(pred, return_inverse=True)[1].astype(np.int64)
    truth = np.unique(truth, return_inverse=True)[1].astype(np.int64)
    pred_pairs = pair_count(np.bincount(pred))
    true_pairs = pair_count(np.bincount(truth))
    _, joint = np.unique(pred * (truth.max() + 1) + truth, return_counts=True)
    tp = pair_count(joint)
    p = tp / pred_pairs if pred_pairs else 1.0
    r = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4),
            "removed": int(len(pred) - len(np.unique(pred))), "true_removable": int(len(truth) - len(np.unique(truth)))}


# ----------------------------------------------------------------------------- corpus
def ensure_corpus(n: int) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    name = f"corpus_{n // 1000}k.jsonl" if n % 1_000_000 else f"corpus_{n // 1_000_000}m.jsonl"
    path = WORK / name
    if not path.exists():
        gen = SHARED / "bench" / "make_dedup_corpus.py"
        if not gen.exists():
            sys.exit(f"missing {gen}: the corpus generator lives in ../shared/bench beside the repo")
        print(f"generating {path} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(gen), "--n", str(n), "--out", str(path)], check=True)
    return path


def read_texts(path: Path) -> list[str]:
    import orjson

    with open(path, "rb") as f:
        return [orjson.loads(line)["text"] for line in f]


def iter_texts(path: Path):
    """Stream the texts (our stages stream shards; they never hold all texts)."""
    import orjson

    with open(path, "rb") as f:
        for line in f:
            yield orjson.loads(line)["text"]


def read_truth(path: Path) -> np.ndarray:
    import orjson

    with open(path, "rb") as f:
        return np.fromiter((orjson.loads(line)["cluster"] for line in f), dtype=np.int64)


# ----------------------------------------------------------------------------- methods (run in a child)
def run_ours_minhash(corpus: Path, args: argparse.Namespace) -> np.ndarray:
    from reasonmill.dedup.minhash import MinHashSettings, minhash_clusters

    overrides = {"ngram": args.ngram, "threshold": args.jaccard, "num_perm": args.num_perm, "numbers": args.numbers}
    settings = MinHashSettings(workers=args.workers, **{k: v for k, v in overrides.items() if v is not None})
    return minhash_clusters(iter_texts(corpus) if args.stream else read_texts(corpus), settings)


def run_ours_semantic(corpus: Path, args: argparse.Namespace) -> np.ndarray:
    from reasonmill.dedup.semantic import SemanticSettings, semantic_clusters

    overrides = {"threshold": args.cosine, "embedder": args.embedder, "min_word_jaccard": args.min_word_jaccard,
                 "candidate_threshold": args.candidate_cosine,
                 "accept_cosine": args.accept_cosine, "search": args.search, "nprobe": args.nprobe, "nlist": args.nlist,
                 "numbers": args.sem_numbers}
    settings = SemanticSettings(workers=args.workers, cache=False, **{k: v for k, v in overrides.items() if v is not None})
    return semantic_clusters(iter_texts(corpus) if args.stream else read_texts(corpus), settings)


def run_rensa_bare(corpus: Path, args: argparse.Namespace) -> np.ndarray:
    """A plain rensa script: per-text 3-gram sets, RMinHashLSH, union-find (no verification)."""
    import re

    import rensa

    from reasonmill.dedup.unionfind import connected_components

    texts = read_texts(corpus)
    word = re.compile(r"\w+")
    a, b = [], []
    lsh = rensa.RMinHashLSH(threshold=0.5, num_perm=128, num_bands=16)
    sets = []
    for t in texts:
        w = word.findall(t.lower())
        sets.append([" ".join(w[i : i + 3]) for i in range(max(1, len(w) - 2))])
    mh = rensa.RMinHash.from_token_sets(sets, 128, 42)
    for i, m in enumerate(mh):
        lsh.insert(i, m)
    for i, m in enumerate(mh):
        for j in lsh.query(m):
            if j != i and mh[i].jaccard(mh[j]) >= 0.5:
                a.append(i)
                b.append(j)
    return connected_components(len(texts), np.array(a, np.int64), np.array(b, np.int64))


PEER_DATATROVE = r'''
# datatrove's 4-step MinHash pipeline, steps 1-3 (signatures, buckets, clusters); step 4
# (re-read the corpus and write the kept documents) is left out, which only favours the
# peer. The corpus is split into T files first so T signature tasks run in parallel.
import os, shutil, struct, sys, time
import numpy as np
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
    MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.utils.hashing import HashConfig
def main():
    corpus, work, out, T = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(f"{work}/input")
    lines = open(corpus, "rb").readlines()
    per = -(-len(lines) // T)
    starts = []
    for k in range(T):
        starts.append(k * per)
        with open(f"{work}/input/{k:03d}.jsonl", "wb") as f:
            f.writelines(lines[k * per:(k + 1) * per])
    n = len(lines)
    del lines
    cfg = MinhashConfig(hash_config=HashConfig(precision=64), n_grams=5, num_buckets=14, hashes_per_bucket=8)
    reader = JsonlReader(f"{work}/input", glob_pattern="*.jsonl", id_key="id", text_key="text")
    quiet = dict(skip_completed=False)
    LocalPipelineExecutor(pipeline=[reader, MinhashDedupSignature(output_folder=f"{work}/sigs", config=cfg)],
        tasks=T, workers=T, logging_dir=f"{work}/logs/s1", **quiet).run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=cfg)],
        tasks=cfg.num_buckets, workers=T, logging_dir=f"{work}/logs/s2", **quiet).run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids",
        config=cfg, save_cluster_id=True)], tasks=1, workers=1, logging_dir=f"{work}/logs/s3", **quiet).run()
    # (file, doc) -> row; every node of a duplicate pair is listed with its cluster id
    labels = np.arange(n, dtype=np.int64)
    for k in range(T):
        path = f"{work}/remove_ids/{k:06d}.clusters"
        if os.path.exists(path):
            arr = np.fromfile(path, dtype="<u4").reshape(-1, 2).astype(np.int64)
            labels[starts[k] + arr[:, 0]] = n + arr[:, 1]
    np.save(out, labels)


if __name__ == "__main__":  # datatrove spawns worker processes
    main()
'''

PEER_SEMHASH = r'''
import json, sys
import numpy as np
from tokenizers import Tokenizer
from model2vec import StaticModel
from semhash import SemHash
corpus, model_dir, threshold, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
texts = [json.loads(l)["text"] for l in open(corpus, encoding="utf-8")]
tok = Tokenizer.from_file(model_dir + "/tokenizer.json")
model = StaticModel(vectors=np.load(model_dir + "/vectors.npy"), tokenizer=tok, normalize=True)
sh = SemHash.from_records(records=texts, model=model)
res = sh.self_deduplicate(threshold=threshold)
# map kept/duplicate records back to rows: duplicates point at the kept text they matched
pos = {}
for i, t in enumerate(texts):
    pos.setdefault(t, i)
labels = np.arange(len(texts))
for rec in res.filtered:  # each removed record names the kept record it duplicates
    dup_of = getattr(rec, "duplicate_of", None)
    if dup_of is None and rec.duplicates:
        dup_of = rec.duplicates[0][0]
    if dup_of is not None:
        labels[pos[rec.record]] = pos[dup_of]
np.save(out, labels)
'''


def run_peer(method: str, corpus: Path, args: argparse.Namespace, out: Path) -> None:
    if not PEERS_PY.exists():
        raise RuntimeError(f"peer venv missing: python3.11 -m venv {WORK/'peers'} && {WORK/'peers/bin/pip'} install datatrove semhash")
    if method == "datatrove":
        script = WORK / "peer_datatrove.py"
        script.write_text(PEER_DATATROVE)
        work = WORK / "datatrove_work"
        subprocess.run([str(PEERS_PY), str(script), str(corpus), str(work), str(out), str(args.workers)], check=True,
                       stdin=subprocess.DEVNULL,  # datatrove's worker pool hangs on an inherited background stdin
                       stdout=subprocess.DEVNULL, stderr=open(WORK / "datatrove.log", "w"))
    else:
        from reasonmill.embed.static import ensure_static_model

        script = WORK / "peer_semhash.py"
        script.write_text(PEER_SEMHASH)
        model_dir = ensure_static_model(256)
        subprocess.run([str(PEERS_PY), str(script), str(corpus), str(model_dir), str(args.semhash_threshold), str(out)],
                       check=True, stderr=open(WORK / "semhash.log", "w"))


def child(method: str, corpus: Path, out: Path, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    if method in ("datatrove", "semhash"):
        run_peer(method, corpus, args, out)
    else:
        labels = {"ours-minhash": run_ours_minhash, "ours-semantic": run_ours_semantic,
                  "rensa-bare": run_rensa_bare}[method](corpus, args)
        np.save(out, labels)
    wall = time.perf_counter() - t0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the method and its workers: unlike wall time, not inflated by other load
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    Path(str(out) + ".json").write_text(json.dumps(
        {"seconds": wall, "cpu_seconds": cpu, "rss_mb": me.ru_maxrss / 1024, "child_rss_mb": kids.ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ngram", type=int, help="default: MinHashSettings' default")
    ap.add_argument("--jaccard", type=float, help="default: MinHashSettings' default")
    ap.add_argument("--num-perm", type=int, help="default: MinHashSettings' default")
    ap.add_argument("--numbers", help="default: MinHashSettings' default")
    ap.add_argument("--cosine", type=float, help="default: SemanticSettings' default")
    ap.add_argument("--embedder", help="default: SemanticSettings' default")
    ap.add_argument("--min-word-jaccard", type=float, help="semantic word check (0: off); default: SemanticSettings'")
    ap.add_argument("--candidate-cosine", type=float, help="semantic: cosine of candidate links (with the word check)")
    ap.add_argument("--accept-cosine", type=float, help="semantic: cosine that skips the word check")
    ap.add_argument("--search", help="semantic search: auto | exact | cells | ivf")
    ap.add_argument("--nprobe", type=int, help="semantic: cells each vector queries")
    ap.add_argument("--nlist", type=int, help="semantic: k-means cells")
    ap.add_argument("--sem-numbers", help="semantic word check: mask | keep | strict")
    ap.add_argument("--semhash-threshold", type=float, default=0.9)
    ap.add_argument("--no-stream", dest="stream", action="store_false",
                    help="ours: read all texts into a list first (the earlier harness; adds ~0.6 GB at 1M to the "
                    "method's RSS, and forked workers inherit it)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.corpus), Path(args.out), args)
        return
    corpus = ensure_corpus(args.n)
    truth = read_truth(corpus)
    passthrough = [f"--workers={args.workers}", f"--semhash-threshold={args.semhash_threshold}"]
    if not args.stream:
        passthrough.append("--no-stream")
    for name in ("ngram", "jaccard", "num_perm", "numbers", "cosine", "embedder", "min_word_jaccard", "candidate_cosine", "accept_cosine",
                 "search", "nprobe", "nlist", "sem_numbers"):
        if getattr(args, name) is not None:
            passthrough.append(f"--{name.replace('_', '-')}={getattr(args, name)}")
    rows = {}
    for method in args.methods.split(","):
        out = WORK / f"labels_{method}_{len(truth)}.npy"
        cmd = [sys.executable, __file__, "--child", method, "--corpus", str(corpus), "--out", str(out), *passthrough]
        proc = subprocess.run(cmd)
        if proc.returncode != 0:
            rows[method] = {"error": f"exit {proc.returncode}"}
            print(f"{method}: FAILED (exit {proc.returncode})", flush=True)
            continue
        stats = json.loads(Path(str(out) + ".json").read_text())
        stats.update(pairwise_f1(np.load(out), truth))
        rows[method] = stats
        print(f"{method:14s} {stats['seconds']:8.1f} s (cpu {stats.get('cpu_seconds', float('nan')):6.1f} s)  rss {stats['rss_mb']:7.0f} MB (workers {stats['child_rss_mb']:6.0f} MB)"
              f"  P {stats['precision']:.3f} R {stats['recall']:.3f} F1 {stats['f1']:.3f}  removed {stats['removed']}/{stats['true_removable']}",
              flush=True)
    for ours, peer in (("ours-minhash", "datatrove"), ("ours-semantic", "semhash"), ("ours-minhash", "rensa-bare")):
        if "seconds" in rows.get(ours, {}) and "seconds" in rows.get(peer, {}):
            print(f"speed-up {ours} vs {peer}: {rows[peer]['seconds'] / rows[ours]['seconds']:.1f}x")
    (WORK / f"results_{len(truth)}.json").write_text(json.dumps({"n": len(truth), "args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
