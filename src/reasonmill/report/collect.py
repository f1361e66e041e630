"""What the HTML report shows, read from a workdir: aggregates and bounded samples only.

The report must stay small (≤ 5 MB for a 1M-record run) and build in one pass per
question, so every aggregate is a DuckDB query over the completed shards in place
(``part-*.parquet`` and ``ledger-*.parquet`` whose ``.done`` marker exists), and every
list of examples is capped. The result is plain JSON-able data; ``report.html`` draws it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonmill.engine.workdir import StageDir, Workdir

#: examples kept per list (drop reason, decontamination, dedup clusters, disagreements)
SAMPLES_PER_REASON = 3
MAX_MATCHES = 40
MAX_CLUSTERS = 25
MAX_DISAGREEMENTS = 20
#: characters of any text shown in an example
TEXT_CHARS = 1500
#: length histogram bin edges (characters), log-spaced
LENGTH_EDGES = [0, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 1 << 40]
SCORE_BINS = 10


def clip(text: Any, n: int = TEXT_CHARS) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= n else text[:n] + f" … [{len(text) - n} more characters]"


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


@dataclass
class StageFiles:
    """One stage's completed shard and ledger files."""

    dir: StageDir
    parts: list[Path]
    ledgers: list[Path]

    @property
    def label(self) -> str:
        return self.dir.path.name[3:]  # "NN-<label>"

    @classmethod
    def of(cls, sd: StageDir) -> "StageFiles":
        shards = sd.shards()
        return cls(
            dir=sd,
            parts=[sd.shard_path(s) for s in shards if sd.shard_path(s).exists()],
            ledgers=[sd.ledger_path(s) for s in shards if sd.ledger_path(s).exists()],
        )

    @property
    def records(self) -> str:
        return f"read_parquet({_sql_list(self.parts)})"

    @property
    def ledger(self) -> str:
        return f"read_parquet({_sql_list(self.ledgers)})"


def stage_files(workdir: Workdir) -> list[StageFiles]:
    return [StageFiles.of(sd) for sd in workdir.stage_dirs()]


@dataclass
class Collector:
    """Runs the report's queries against one workdir."""

    workdir: Workdir
    con: Any = field(default=None)

    def __post_init__(self) -> None:
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET enable_progress_bar = false")  # it would draw on the terminal
        self.stages = stage_files(self.workdir)
        self._responses_of: str | None = None

    def q(self, sql: str, *params: Any) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()

    # --- the funnel ------------------------------------------------------------------

    def funnel(self) -> list[dict]:
        """Per stage: records in, kept, dropped records and responses, and the reasons.
        Kept is counted from the shards' Parquet metadata, drops from the ledger."""
        import pyarrow.parquet as pq

        out = []
        for st in self.stages:
            kept = sum(pq.ParquetFile(p).metadata.num_rows for p in st.parts)
            reasons: dict[str, dict[str, int]] = {}
            if st.ledgers:
                for kind, reason, n in self.q(f"SELECT kind, reason, count(*) FROM {st.ledger} GROUP BY ALL ORDER BY 3 DESC"):
                    reasons.setdefault(reason, {"records": 0, "responses": 0})[
                        "records" if kind == "record" else "responses"] += n
            dropped = sum(r["records"] for r in reasons.values())
            out.append({
                "label": st.label, "records_in": kept + dropped, "kept": kept, "dropped": dropped,
                "dropped_responses": sum(r["responses"] for r in reasons.values()), "reasons": reasons,
            })
        export = self._export_funnel()
        if export:
            out.append(export)
        return out

    def _export_funnel(self) -> dict | None:
        try:
            manifest = json.loads(self.workdir.export_manifest.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        rep = manifest["report"]
        reasons = {k: {"records": v, "responses": 0} for k, v in (rep.get("reasons") or {}).items()}
        return {"label": "export", "records_in": rep["records_in"], "kept": rep["kept"], "dropped": rep["dropped"],
                "dropped_responses": 0, "reasons": reasons, "files": manifest.get("exports", [])}

    # --- what was kept -------------------------------------------------------------

    def final_stage(self) -> StageFiles | None:
        return next((s for s in reversed(self.stages) if s.parts), None)

    def verify_stage(self) -> StageFiles | None:
        return next((s for s in reversed(self.stages) if s.label.startswith("verify") and s.parts), None)

    def counts(self, st: StageFiles) -> dict[str, list[tuple[str, int]]]:
        """Records per source, category, language and difficulty in the final stage."""
        cols = {
            "source": "coalesce(source, '?')",
            "category": "coalesce(category, 'unlabelled')",
            "language": "coalesce(language, 'unlabelled')",
            "difficulty": "coalesce(CAST(round(difficulty) AS INTEGER)::VARCHAR, 'unlabelled')",
        }
        out = {}
        for name, expr in cols.items():
            rows = self.q(f"SELECT {expr} AS k, count(*) FROM {st.records} GROUP BY k ORDER BY 2 DESC, 1")
            out[name] = [(str(k), int(n)) for k, n in rows]
        rows = self.q(f"SELECT count(*), coalesce(sum(len(responses)), 0) FROM {st.records}")
        out["totals"] = [("records", int(rows[0][0])), ("responses", int(rows[0][1]))]
        return out

    def lengths(self, st: StageFiles) -> dict[str, dict[str, list[int]]]:
        """Histograms (``LENGTH_EDGES``) of think and answer characters per teacher model,
        both from one scan of the responses."""
        edges = LENGTH_EDGES[1:-1]
        bins = {part: " + ".join(f"(coalesce(length(x.{part}), 0) >= {e})::INTEGER" for e in edges)
                for part in ("think", "answer")}
        rows = self.q(f"""
            WITH r AS (SELECT unnest(responses) AS x FROM {st.records})
            SELECT coalesce(x.model, '?'), {bins['think']} AS bt, {bins['answer']} AS ba, count(*) FROM r GROUP BY ALL""")
        out: dict[str, dict[str, list[int]]] = {}
        for model, bt, ba, n in rows:
            hists = out.setdefault(model, {p: [0] * (len(LENGTH_EDGES) - 1) for p in ("think", "answer")})
            hists["think"][bt] += n
            hists["answer"][ba] += n
        return out

    def _responses(self, st: StageFiles) -> str:
        """A temporary table of the verify stage's responses without their texts (one scan
        shared by the pass rates and the disagreements)."""
        if self._responses_of != st.label:
            self.con.execute(f"""
                CREATE OR REPLACE TEMP TABLE resp AS
                SELECT id, coalesce(category, 'unlabelled') AS category, coalesce(x.model, '?') AS model,
                       x.passed AS passed, x.verify_score AS score, x.verdicts AS verdicts, k
                FROM (SELECT id, category, unnest(responses) AS x, generate_subscripts(responses, 1) - 1 AS k
                      FROM {st.records})""")
            self._responses_of = st.label
        return "resp"

    def pass_rates(self, st: StageFiles) -> dict:
        """Responses passed / scored per category and per model, per verifier, and the
        histogram of verify scores (from the verify stage's output, before selection)."""
        resp = self._responses(st)
        out: dict[str, Any] = {}
        for name, key in (("by_category", "category"), ("by_model", "model")):
            rows = self.q(f"SELECT {key}, count_if(passed), count_if(passed IS NOT NULL) FROM {resp} GROUP BY 1 ORDER BY 3 DESC")
            out[name] = [(str(k), int(p), int(t)) for k, p, t in rows]
        rows = self.q(f"""WITH v AS (SELECT unnest(CAST(json(verdicts) AS JSON[])) AS j FROM {resp}
                                     WHERE verdicts IS NOT NULL AND verdicts <> '')
                          SELECT coalesce(j->>'verifier', '?') AS k,
                                 count_if(CAST(j->>'passed' AS BOOLEAN)), count(*) FROM v GROUP BY k ORDER BY 3 DESC""")
        out["by_verifier"] = [(str(k), int(p), int(t)) for k, p, t in rows]
        rows = self.q(f"""SELECT least(CAST(floor(score * {SCORE_BINS}) AS INTEGER), {SCORE_BINS - 1}), count(*)
                          FROM {resp} WHERE score IS NOT NULL GROUP BY 1 ORDER BY 1""")
        hist = [0] * SCORE_BINS
        for b, n in rows:
            hist[max(0, int(b))] += n
        out["score_hist"] = hist
        return out

    def disagreements(self, st: StageFiles) -> dict:
        """Responses whose verifiers did not agree: some verdict passed and another failed
        (counted per passing → failing verifiers), or one verdict's own checkers differ
        (``details.disagreement``, the math verifier's second checker); a few shown whole.
        Only the responses whose verdicts show a disagreement are parsed."""
        resp = self._responses(st)
        rows = self.q(f"""SELECT verdicts, count(*) FROM {resp}
                          WHERE {_DISAGREE} GROUP BY 1""")
        pairs: dict[str, int] = {}
        for verdicts, n in rows:
            for key in _disagreements(json.loads(verdicts)):
                pairs[key] = pairs.get(key, 0) + n
        examples = []
        picked = self.q(f"""SELECT id, k FROM {resp}
                            WHERE {_DISAGREE} ORDER BY id, k LIMIT {MAX_DISAGREEMENTS}""")
        if picked:
            ids = sorted({i for i, _ in picked})
            found = {(rid, int(k)): (source, problem, x) for rid, source, problem, k, x in self.q(f"""
                SELECT id, source, problem, k, x FROM (
                    SELECT id, source, problem, unnest(responses) AS x, generate_subscripts(responses, 1) - 1 AS k
                    FROM {st.records} WHERE list_contains(?, id))""", ids)}
            for rid, k in picked:
                source, problem, x = found[(rid, int(k))]
                vs = json.loads(x["verdicts"])
                examples.append({"id": rid, "source": source, "response_index": int(k), "problem": clip(problem, 600),
                                 "answer": clip(x["answer"], 600), "verdicts": [_short_verdict(v) for v in vs]})
        return {"pairs": sorted(pairs.items(), key=lambda kv: -kv[1]), "examples": examples}

    # --- drops -----------------------------------------------------------------------

    def drop_samples(self) -> list[dict]:
        """Up to ``SAMPLES_PER_REASON`` ledger rows per (stage, kind, reason)."""
        out = []
        for st in self.stages:
            if not st.ledgers:
                continue
            rows = self.q(f"""
                SELECT stage, kind, reason, id, response_index, message, evidence, record FROM (
                  SELECT *, row_number() OVER (PARTITION BY kind, reason ORDER BY id) AS i FROM {st.ledger})
                WHERE i <= {SAMPLES_PER_REASON} ORDER BY kind, reason, id""")
            for stage, kind, reason, rid, k, message, evidence, record in rows:
                out.append({"stage": stage, "kind": kind, "reason": reason, "id": rid, "response_index": k,
                            "message": clip(message, 400), "evidence": clip(evidence, 800),
                            "record": _record_view(record, k)})
        return out

    def kept_samples(self, st: StageFiles, n: int = 5) -> list[dict]:
        rows = self.q(f"SELECT id, source, category, problem, responses FROM {st.records} USING SAMPLE {n} ROWS (reservoir, 7)")
        return [{"id": rid, "source": s, "category": c, "problem": clip(p),
                 "responses": [_response_view(x) for x in (resp or [])[:2]]} for rid, s, c, p, resp in rows]

    def decontamination(self) -> dict:
        """Each decontamination drop beside its benchmark item's text."""
        matches, per_benchmark = [], {}
        for st in self.stages:
            if not st.label.startswith("decontaminate") or not st.ledgers:
                continue
            for bench, n in self.q(f"SELECT coalesce(json_extract_string(evidence, '$.benchmark'), '?'), count(*) "
                                   f"FROM {st.ledger} GROUP BY 1 ORDER BY 2 DESC"):
                per_benchmark[bench] = per_benchmark.get(bench, 0) + n
            items = _benchmark_items(self.workdir, st)
            rows = self.q(f"SELECT id, kind, response_index, message, evidence, record FROM {st.ledger} "
                          f"ORDER BY json_extract_string(evidence, '$.layer') = 'exact', id LIMIT {MAX_MATCHES - len(matches)}")
            for rid, kind, k, message, evidence, record in rows:
                ev = json.loads(evidence or "{}")
                rec = json.loads(record or "{}")
                ours = rec.get("problem") if kind == "record" else _response_text(rec)
                item = items.get((ev.get("benchmark"), str(ev.get("item_id"))))
                matches.append({
                    "stage": st.label, "id": rid, "kind": kind, "response_index": k, "message": clip(message, 400),
                    "benchmark": ev.get("benchmark"), "item_id": ev.get("item_id"), "ours": clip(ours),
                    "theirs": clip(item) if item is not None else None,
                    "evidence": {k2: v for k2, v in ev.items() if k2 not in ("benchmark", "item_id", "other_hits")},
                })
        return {"per_benchmark": sorted(per_benchmark.items(), key=lambda kv: -kv[1]), "matches": matches}

    def dedup_clusters(self) -> dict:
        """Dedup drops grouped by the record they duplicate: the kept one and the dropped."""
        clusters: list[dict] = []
        per_stage = {}
        for i, st in enumerate(self.stages):
            if not st.label.startswith("dedup") or not st.ledgers:
                continue
            rep_expr = "coalesce(json_extract_string(evidence, '$.representative'), json_extract_string(evidence, '$.kept'))"
            per_stage[st.label] = self.q(f"SELECT count(*), count(DISTINCT {rep_expr}) FROM {st.ledger} WHERE kind = 'record'")[0]
            rows = self.q(f"""
                WITH d AS (SELECT {rep_expr} AS rep, id, message, evidence, record FROM {st.ledger} WHERE kind = 'record'),
                     top AS (SELECT rep, count(*) AS n FROM d WHERE rep IS NOT NULL GROUP BY rep
                             ORDER BY n DESC, rep LIMIT {max(0, MAX_CLUSTERS - len(clusters))})
                SELECT d.rep, top.n, d.id, d.message, d.evidence, d.record FROM d JOIN top USING (rep)
                ORDER BY top.n DESC, d.rep, d.id""")
            by_rep: dict[str, dict] = {}
            for rep, n, rid, message, evidence, record in rows:
                c = by_rep.setdefault(rep, {"stage": st.label, "kept": {"id": rep, "text": None}, "size": n + 1, "dropped": []})
                if len(c["dropped"]) < 5:
                    c["dropped"].append({"id": rid, "message": clip(message, 300), "evidence": clip(evidence, 400),
                                         "text": clip(json.loads(record or "{}").get("problem"), 600)})
            if by_rep and st.parts:
                # the kept record's text, from the stage's own output (where it survived)
                ids = list(by_rep)
                for rid, problem in self.q(f"SELECT id, problem FROM {st.records} WHERE list_contains(?, id)", ids):
                    by_rep[rid]["kept"]["text"] = clip(problem, 600)
            clusters += list(by_rep.values())
        return {"per_stage": {k: {"dropped": int(a), "clusters": int(b)} for k, (a, b) in per_stage.items()},
                "clusters": clusters}


# verdict JSON (orjson, compact) that shows a disagreement: a pass beside a fail, or a marked one
_DISAGREE = ("""((verdicts LIKE '%"passed":true%' AND verdicts LIKE '%"passed":false%')"""
             """ OR verdicts LIKE '%"disagreement":true%')""")


def _disagreements(vs: list[dict]) -> list[str]:
    out = []
    ok = sorted({v.get("verifier", "?") for v in vs if v.get("passed")})
    bad = sorted({v.get("verifier", "?") for v in vs if v.get("passed") is False})
    if ok and bad:
        out.append(f"{'+'.join(ok)} passed, {'+'.join(bad)} failed")
    for v in vs:
        details = v.get("details") or {}
        if isinstance(details, dict) and details.get("disagreement"):
            second = details.get("second") or {}
            verdict = "passed" if v.get("passed") else "failed"
            other = "passed" if second.get("passed") else "failed"
            out.append(f"{v.get('verifier', '?')}: its checkers differ (verdict {verdict}, second checker {other})")
    return out


def _short_verdict(v: dict) -> dict:
    return {"verifier": v.get("verifier"), "passed": v.get("passed"), "score": v.get("score"),
            "reason": v.get("reason"), "details": clip(json.dumps(v.get("details") or {}, ensure_ascii=False), 400)}


def _response_view(x: dict) -> dict:
    verdicts = x.get("verdicts")
    try:
        vs = json.loads(verdicts) if isinstance(verdicts, str) else (verdicts or [])
    except json.JSONDecodeError:
        vs = []
    return {"model": x.get("model"), "passed": x.get("passed"), "score": x.get("verify_score"),
            "think": clip(x.get("think"), 800), "answer": clip(x.get("answer"), 800),
            "verdicts": [_short_verdict(v) for v in vs if isinstance(v, dict)]}


def _response_text(rec: dict) -> str:
    """A dropped response's ledger record is the response itself (or a record holding it)."""
    if "think" in rec or "answer" in rec:
        return f"{rec.get('think') or ''}\n{rec.get('answer') or ''}".strip()
    return rec.get("problem") or ""


def _record_view(record_json: str | None, response_index: int | None) -> dict:
    try:
        rec = json.loads(record_json or "{}")
    except json.JSONDecodeError:
        return {"problem": clip(record_json, 600), "responses": []}
    if not isinstance(rec, dict):
        return {"problem": clip(str(rec), 600), "responses": []}
    if "think" in rec or "answer" in rec:  # a dropped response
        return {"problem": "", "responses": [_response_view(rec)]}
    return {"problem": clip(rec.get("problem")), "source": rec.get("source"),
            "responses": [_response_view(x) for x in (rec.get("responses") or [])[:2] if isinstance(x, dict)]}


def _benchmark_items(workdir: Workdir, st: StageFiles) -> dict[tuple[str, str], str]:
    """(benchmark, item id) → text, loaded again from the benchmark files the stage's
    manifest names (relative paths are tried against the workdir's parent and the current
    folder). A benchmark that cannot be loaded is left out: its matches show the evidence only."""
    from reasonmill.benchmarks.registry import BenchmarkError, load_benchmark

    manifest = st.dir.manifest() or {}
    out: dict[tuple[str, str], str] = {}
    for spec in (manifest.get("settings") or {}).get("benchmarks") or []:
        for base in (Path.cwd(), workdir.root.parent, workdir.root):
            try:
                items = load_benchmark(spec, base)
            except (BenchmarkError, OSError, ValueError):
                continue
            out.update({(it["benchmark"], str(it["item_id"])): it["text"] for it in items})
            break
    return out


def collect(workdir: str | Path) -> dict:
    """Everything the report shows, as JSON-able data."""
    wd = Workdir(workdir)
    c = Collector(wd)
    final, verify = c.final_stage(), c.verify_stage()
    summary = None
    try:
        summary = json.loads(wd.summary_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    return {
        "name": wd.root.name,
        "final_stage": final.label if final else None,
        "verify_stage": verify.label if verify else None,
        "funnel": c.funnel(),
        "summary_stages": [s["label"] for s in (summary or {}).get("stages", [])],
        "counts": c.counts(final) if final else {},
        "lengths": c.lengths(final) if final else {},
        "pass_rates": c.pass_rates(verify) if verify else None,
        "disagreements": c.disagreements(verify) if verify else None,
        "decontamination": c.decontamination(),
        "dedup": c.dedup_clusters(),
        "drop_samples": c.drop_samples(),
        "kept_samples": c.kept_samples(final) if final else [],
    }
