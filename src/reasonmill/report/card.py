"""The dataset card written beside the exports (SPEC §1 item 9).

Counts per source, category, language and difficulty of what was exported; drop reasons
per stage; length histograms of think and answer parts; and what dedup and
decontamination removed, per source and per benchmark, read back from the ledger.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

LENGTH_BINS = (0, 256, 1024, 4096, 16384, 65536)


def _bin(n: int) -> str:
    for lo, hi in zip(LENGTH_BINS, LENGTH_BINS[1:]):
        if n < hi:
            return f"{lo}–{hi}"
    return f"≥{LENGTH_BINS[-1]}"


@dataclass
class CardStats:
    """Accumulated while exporting, so the card costs no extra pass over the data."""

    records: int = 0
    responses: int = 0
    #: records without any response: the AM format still writes a user-only row for each
    no_response: int = 0
    by_source: Counter = field(default_factory=Counter)
    by_category: Counter = field(default_factory=Counter)
    by_language: Counter = field(default_factory=Counter)
    by_difficulty: Counter = field(default_factory=Counter)
    think_chars: Counter = field(default_factory=Counter)
    answer_chars: Counter = field(default_factory=Counter)

    def merge(self, other: "CardStats") -> None:
        """Add another shard's counts (parallel export)."""
        self.records += other.records
        self.responses += other.responses
        self.no_response += other.no_response
        for name in ("by_source", "by_category", "by_language", "by_difficulty", "think_chars", "answer_chars"):
            getattr(self, name).update(getattr(other, name))

    def add_many(self, records: list[dict]) -> None:
        """``add`` for a batch: the counts are taken by ``Counter.update`` (C speed)."""
        self.records += len(records)
        self.by_source.update([r.get("source") or "?" for r in records])
        self.by_category.update([r.get("category") or "unlabelled" for r in records])
        self.by_language.update([r.get("language") or "unlabelled" for r in records])
        self.by_difficulty.update(
            ["unlabelled" if r.get("difficulty") is None else f"{round(r['difficulty'])}" for r in records]
        )
        for r in records:
            if not r.get("responses"):
                self.no_response += 1
            for resp in r.get("responses") or []:
                self.responses += 1
                self.think_chars[_bin(len(resp.get("think") or ""))] += 1
                self.answer_chars[_bin(len(resp.get("answer") or ""))] += 1

    def add(self, record: dict) -> None:
        self.records += 1
        self.by_source[record.get("source") or "?"] += 1
        self.by_category[record.get("category") or "unlabelled"] += 1
        self.by_language[record.get("language") or "unlabelled"] += 1
        d = record.get("difficulty")
        self.by_difficulty["unlabelled" if d is None else f"{round(d)}"] += 1
        if not record.get("responses"):
            self.no_response += 1
        for resp in record.get("responses") or []:
            self.responses += 1
            self.think_chars[_bin(len(resp.get("think") or ""))] += 1
            self.answer_chars[_bin(len(resp.get("answer") or ""))] += 1

    def expected_rows(self, fmt: str) -> int:
        """Rows an export in ``fmt`` must hold: one per response, and in AM also one
        user-only row per record without a response (``io.formats``)."""
        return self.responses + (self.no_response if fmt == "am" else 0)

    def count_mismatches(self, exports: list[dict]) -> list[str]:
        """Exports whose row count differs from what these counts imply (empty: all agree)."""
        return [f"{Path(e['path']).name}: {e['rows']} rows, the card counts {self.expected_rows(e['format'])}"
                for e in exports if e["format"] != "card" and e["rows"] != self.expected_rows(e["format"])]


DEDUP_STAGES = ("dedup", "decontaminate")


def removal_report(ledger_rows: Iterable[dict]) -> dict:
    """What dedup and decontamination removed, per stage × source, and per benchmark."""
    import orjson

    per_source: dict[str, Counter] = defaultdict(Counter)
    per_benchmark: Counter = Counter()
    for row in ledger_rows:
        stage = row["stage"]
        if not stage.startswith(DEDUP_STAGES) or row["kind"] != "record":
            continue
        try:
            source = orjson.loads(row["record"] or "{}").get("source") or "?"
        except orjson.JSONDecodeError:
            source = "?"
        per_source[stage][source] += 1
        if stage.startswith("decontaminate"):
            per_benchmark[orjson.loads(row["evidence"] or "{}").get("benchmark") or "?"] += 1
    return {"per_source": {k: dict(v) for k, v in per_source.items()}, "per_benchmark": dict(per_benchmark)}


def removal_report_of(workdir: "Path | object") -> dict:
    """``removal_report`` over a run's ledger, reading only the dedup/decontamination
    stages' ledger files and only the columns it needs (the full ledger can hold
    millions of records)."""
    return merge_removals(removal_counts(str(p)) for p in dedup_ledger_paths(workdir))


def dedup_ledger_paths(workdir: "Path | object") -> list[Path]:
    """The ledger files of the stages ``removal_report`` counts (by their labels)."""
    paths = []
    for sd in workdir.stage_dirs():  # type: ignore[attr-defined]
        if not sd.path.name[3:].startswith(DEDUP_STAGES):  # "NN-<label>"; the ledger's stage is the label
            continue
        paths += [p for p in map(sd.ledger_path, sd.shards()) if p.exists()]
    return paths


def removal_counts(path: str) -> dict:
    """``removal_report`` of one ledger file (a pool task in parallel export)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read(columns=["stage", "kind", "record", "evidence"])
    stage = table.column("stage")
    dedup_stage = pc.or_(*[pc.starts_with(stage, prefix) for prefix in DEDUP_STAGES])
    keep = pc.and_(dedup_stage, pc.equal(table.column("kind"), "record"))
    table = table.filter(keep)
    if not any(s.startswith("decontaminate") for s in pc.unique(table.column("stage")).to_pylist()):
        table = table.select(["stage", "kind", "record"])  # the evidence is read for decontamination only
    return removal_report(table.to_pylist())


def merge_removals(parts: Iterable[dict]) -> dict:
    """Sum of ``removal_report`` results (in order: first occurrences keep their place)."""
    per_source: dict[str, Counter] = defaultdict(Counter)
    per_benchmark: Counter = Counter()
    for part in parts:
        for stage, counts in part["per_source"].items():
            per_source[stage].update(counts)
        per_benchmark.update(part["per_benchmark"])
    return {"per_source": {k: dict(v) for k, v in per_source.items()}, "per_benchmark": dict(per_benchmark)}


def _table(title: str, counts: Counter) -> str:
    if not counts:
        return ""
    lines = [f"### {title}", "", "| value | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.most_common()]
    return "\n".join(lines) + "\n"


def card_markdown(name: str, stats: CardStats, stage_reports: list, removals: dict, exports: list[dict],
                  pipeline_yaml: str | None = None) -> str:
    """The dataset card: YAML front matter naming the files (one config per format, one
    ``train`` split), counts of rows, problems and responses, what was dropped, the
    decontamination summary, length histograms and the pipeline that built it. The same
    text goes beside local exports and to the Hub."""
    import yaml

    files = [e for e in exports if e["format"] != "card"]
    front = {"configs": [{"config_name": e["format"], "data_files": [{"split": "train", "path": Path(e["path"]).name}]}
                         for e in files],
             "tags": ["reasoning", "reasonmill"]}
    parts = [
        "---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
        f"# {name}: dataset card",
        "",
        f"Built with reasonmill: {stats.records} problems with {stats.responses} responses"
        + (f" ({stats.no_response} problems without a response)" if stats.no_response else "") + ". "
        "Each file holds one row per response"
        + (" (the AM format adds a user-only row per problem without one)" if stats.no_response else "") + ".",
        "",
        "## Files",
        "",
        "| file | format | rows | problems | responses |",
        "|---|---|---|---|---|",
        *[f"| `{Path(e['path']).name}` | {e['format']} | {e['rows']} | {stats.records} | {stats.responses} |" for e in files],
        "",
        "## Contents",
        "",
        _table("Per source", stats.by_source),
        _table("Per category", stats.by_category),
        _table("Per language", stats.by_language),
        _table("Per difficulty", stats.by_difficulty),
        _table("Think length (characters)", stats.think_chars),
        _table("Answer length (characters)", stats.answer_chars),
        "## What was dropped, per stage",
        "",
        "| stage | in | kept | dropped | reasons |",
        "|---|---|---|---|---|",
    ]
    for r in stage_reports:
        reasons = ", ".join(f"{k} {v}" for k, v in Counter(r.reasons).most_common())
        parts.append(f"| {r.label} | {r.records_in} | {r.kept} | {r.dropped} | {reasons} |")
    parts.append("")
    if removals["per_source"]:
        parts += ["## Dedup and decontamination, per source", ""]
        for stage, counts in removals["per_source"].items():
            parts.append(_table(stage, Counter(counts)))
    if removals["per_benchmark"]:
        parts += ["## Decontamination, per benchmark", "", _table("removed per benchmark", Counter(removals["per_benchmark"]))]
    if pipeline_yaml:
        parts += ["## Pipeline", "", "Run it again with `reasonmill run pipeline.yaml`:", "", "```yaml",
                  pipeline_yaml.rstrip(), "```", ""]
    return "\n".join(p for p in parts if p is not None)


def write_card(path: Path, name: str, stats: CardStats, stage_reports: list, removals: dict, exports: list[dict],
               pipeline_yaml: str | None = None) -> dict:
    """Write the card beside the exports; returns its export entry. The card's counts are
    checked against the files' first: a mismatch is a bug, and raises."""
    wrong = stats.count_mismatches(exports)
    if wrong:
        raise ValueError("dataset card counts disagree with the exported files: " + "; ".join(wrong))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(card_markdown(name, stats, stage_reports, removals, exports, pipeline_yaml), encoding="utf-8")
    return {"path": str(path), "format": "card", "rows": None, "problems": stats.records, "responses": stats.responses}
