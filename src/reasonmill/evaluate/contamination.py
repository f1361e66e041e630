"""``--training-data``: which benchmark items appear in the data the model was trained on.

Why here: a score on a benchmark whose items the model saw in training measures recall,
not reasoning. The check is the decontamination stage's own (exact, rarity-weighted
n-gram coverage, embeddings; see :mod:`reasonmill.dedup.decontam`), run the other way
round: the benchmark items under evaluation are the index, the training export is
checked against it, and each hit keeps the stage's evidence. The report comes before the
scores, so nobody reads a number without the warning.
"""

from __future__ import annotations

from pathlib import Path

from reasonmill.dedup.decontam import Decontaminator, DecontamSettings, build_index
from reasonmill.io.sources import SourceSpec, iter_source

from .items import Benchmark

#: the file types a training export may come in, when a directory is given
EXPORT_SUFFIXES = (".jsonl", ".json", ".parquet", ".gz", ".zst")


def training_texts(path: str | Path) -> list[tuple[str, str]]:
    """(record id, problem) of every record of a training export (a file or a directory)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in EXPORT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"--training-data {path}: no .jsonl/.json/.parquet files found")
    out: list[tuple[str, str]] = []
    for f in files:
        spec = SourceSpec(name=f.stem, path=str(f), on_error="skip")
        for rec in iter_source(spec, f.parent):
            if isinstance(rec, dict) and rec.get("problem"):
                out.append((f"{f.name}:{rec['id']}", rec["problem"]))
    return out


def cross_check(benchmarks: list[Benchmark], training: str | Path, settings: DecontamSettings | None = None) -> dict:
    """Every benchmark item found in the training data, with the evidence of each match."""
    settings = settings or DecontamSettings()
    items = [{"benchmark": b.name, "item_id": it.item_id, "text": it.problem, "answer": it.reference}
             for b in benchmarks for it in b.items]
    texts = training_texts(training)
    index = build_index(items, settings, background=[t for _, t in texts])
    hits = Decontaminator(index).check([t for _, t in texts])
    found: dict[tuple[str, str], dict] = {}
    for (record_id, _), record_hits in zip(texts, hits):
        for h in record_hits:
            if h.category != "contaminated":
                continue
            entry = found.setdefault((h.benchmark, h.item_id), {"benchmark": h.benchmark, "item_id": h.item_id,
                                                                 "training_records": [], "evidence": []})
            entry["training_records"].append(record_id)
            entry["evidence"].append(h.evidence())
    per_bench = {b.name: sum(1 for (name, _) in found if name == b.name) for b in benchmarks}
    return {"training_data": str(training), "training_records": len(texts), "contaminated_items": per_bench,
            "items": sorted(found.values(), key=lambda e: (e["benchmark"], e["item_id"]))}
