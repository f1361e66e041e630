"""The ``decontaminate`` stage: drop records that overlap an evaluation benchmark.

A global stage whose index does not depend on the data: ``build`` loads the benchmarks
(``reasonmill.benchmarks``) and builds the :class:`~reasonmill.dedup.decontam.BenchmarkIndex`
once; the engine persists it, so a resumed run does not rebuild it. ``process`` checks each
shard's problems (and, with ``apply_to: problem+responses``, each response) and drops hits
with reason ``contaminated``; the evidence names the benchmark item, the layer and the
matched n-gram or cosine. Template siblings are kept, and noted in ``meta.decontam``.

YAML::

    - decontaminate:
        benchmarks: [math500, aime24, {name: gpqa_diamond, path: evals/gpqa_diamond.zip},
                     {name: my_eval, path: evals/mine.jsonl, field: question, ngram_coverage: 0.7}]
        apply_to: problem+responses
        ngram_coverage: 0.5          # share of an item's n-gram weight a match must cover
        corpus_frequencies: true     # n-gram weights also count the records being checked
        background: [{name: math_train, path: data/math_train.jsonl, field: problem}]
        embedding_cosine: 0.95
        dry_run: false               # true: record matches in meta.decontam, drop nothing
        judge: {enabled: true, base_url: http://localhost:8000/v1, model: qwen2.5-7b-instruct}

Thresholds set on a benchmark entry (``ngram_coverage``, ``embedding_cosine``) apply to its
items only. With ``dry_run: true`` every record is kept; each match (the evidence a drop
would carry) goes to ``meta.decontam.matches`` and the counts to the stage stats
(``decontam_would_drop``, ``decontam_would_drop_responses``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from pydantic import Field, field_validator

from reasonmill.benchmarks import BenchmarkSpec, load_benchmarks, resolve_spec
from reasonmill.benchmarks.registry import local_path
from reasonmill.dedup.decontam import (
    BenchmarkIndex,
    Decontaminator,
    DecontamSettings,
    Hit,
    LLMJudge,
    build_index,
)
from reasonmill.llm.sync_client import llm_cache_path
from reasonmill.stages.base import Resources, Stage, StageOutput, stage


class DecontaminateSettings(DecontamSettings):
    #: built-in names (math500, aime24, aime25, gpqa_diamond, livecodebench) or mappings
    #: {name, path | hf, field, answer_field, id_field, date_field, date_from, date_to, ...}
    benchmarks: list[str | BenchmarkSpec] = Field(default_factory=lambda: ["math500", "aime24", "aime25",
                                                                           "gpqa_diamond", "livecodebench"])
    #: check the problem only, or also every response (a response quoting a benchmark
    #: problem is dropped on its own; the record stays)
    apply_to: Literal["problem", "problem+responses"] = "problem"
    #: add the template siblings found to ``meta.decontam`` of kept records
    note_siblings: bool = True
    #: texts that only supply n-gram document frequencies for the rarity-aware rule
    #: (``rare_mass``): problems like the ones checked, e.g. a benchmark's training split
    #: ({name, path, field} mappings as in ``benchmarks``); they are never matched against
    background: list[str | BenchmarkSpec] = Field(default_factory=list)
    #: count n-gram document frequencies over the records being checked too (their problems,
    #: read once by ``build``): the corpus's own prompt frames and stock phrases then weigh ~0
    corpus_frequencies: bool = True
    #: keep every record; put the matches (with their evidence) in ``meta.decontam.matches``
    dry_run: bool = False

    @field_validator("benchmarks", "background", mode="before")
    @classmethod
    def _resolve(cls, entries: Any) -> Any:
        """Built-in defaults (field names, zip password) merged in now: errors show at load."""
        if not isinstance(entries, list):
            return entries
        return [resolve_spec(e) for e in entries]


def _response_text(resp: dict) -> str:
    think, answer = resp.get("think") or "", resp.get("answer") or ""
    return f"{think}\n{answer}" if (think or answer) else resp.get("raw") or ""


@stage("decontaminate")
class Decontaminate(Stage):
    kind = "global"
    Settings = DecontaminateSettings
    build_columns = ("id", "problem")
    resources = Resources(cpus=1.0, memory_mb=1024)
    version = "3"  # 3: weighted item coverage with corpus frequencies (the index format changed)

    @classmethod
    def input_files(cls, settings: DecontaminateSettings | dict, base_dir: str | Path = ".") -> list[Path]:
        """Every local file the settings name (benchmarks and background), resolved against
        ``base_dir``, so a config loader can check them before the run starts."""
        if not isinstance(settings, DecontaminateSettings):
            settings = DecontaminateSettings(**(settings or {}))
        paths = (local_path(resolve_spec(e), base_dir) for e in [*settings.benchmarks, *settings.background])
        return [p for p in paths if p is not None]

    @classmethod
    def endpoints(cls, settings: DecontaminateSettings) -> list:
        from reasonmill.llm.preflight import endpoints_of

        return endpoints_of("decontaminate judge", LLMJudge.endpoints(settings.judge))

    def _decontam_settings(self) -> DecontamSettings:
        data = self.settings.model_dump(exclude={"benchmarks", "apply_to", "note_siblings", "background",
                                                 "corpus_frequencies", "dry_run"})
        per = dict(data.pop("per_benchmark"))
        for spec in self.settings.benchmarks:
            spec = resolve_spec(spec)
            own = {k: getattr(spec, k) for k in ("ngram_coverage", "embedding_cosine")
                   if getattr(spec, k) is not None}
            if own:
                per[spec.name] = {**per.get(spec.name, {}), **own}
        return DecontamSettings(**data, per_benchmark=per)

    def build(self, shards: Iterable[list[dict]]) -> BenchmarkIndex:
        """Load the benchmarks and index them; the records' problems only supply n-gram
        document frequencies (``corpus_frequencies``)."""
        base_dir = Path(self.context.extra.get("base_dir", "."))
        items = load_benchmarks(self.settings.benchmarks, base_dir=base_dir)
        background = [it["text"] for it in load_benchmarks(self.settings.background, base_dir=base_dir)]
        corpus: Iterable[str] = ()
        if self.settings.corpus_frequencies:
            corpus = (r.get("problem") or "" for records in shards for r in records)
        return build_index(items, self._decontam_settings(), embedder=self._embedder(),
                           background=_chain(background, corpus))

    def _embedder(self) -> Any:
        if not self.settings.embedding:
            return None
        from reasonmill.embed import get_embedder

        return get_embedder(self.settings.embedder, cache_dir=self.context.cache_dir)

    def process(self, records: list[dict], index: BenchmarkIndex | None = None) -> StageOutput:
        if index is None:
            index = self.build([])
        out = StageOutput()
        judge = None
        if index.settings.judge.enabled:  # its replies go to the run's LLM cache: a re-run asks nothing twice
            judge = LLMJudge(index.settings.judge, llm_cache_path(self.context.cache_dir))
        embedder = self._embedder() if index.embeddings is not None else None
        checker = Decontaminator(index, embedder=embedder, judge=judge)
        problem_hits = checker.check([r.get("problem") or "" for r in records])
        response_hits: dict[tuple[int, int], list[Hit]] = {}
        if self.settings.apply_to == "problem+responses":
            where, texts = [], []
            for i, r in enumerate(records):
                for k, resp in enumerate(r.get("responses") or []):
                    where.append((i, k))
                    texts.append(_response_text(resp))
            if texts:
                # responses are long: only the lexical layers make sense against problems
                lexical = Decontaminator(_lexical_view(index))
                for key, hits in zip(where, lexical.check(texts, field="response")):
                    response_hits[key] = hits
        for i, r in enumerate(records):
            hits = problem_hits[i]
            bad = [h for h in hits if h.category == "contaminated"]
            if bad:
                h = bad[0]
                _add_answer_match(h, r, index)
                out.drop(r, "contaminated", f"problem matches {h.describe()}", layer=h.layer,
                         **_evidence(h), other_hits=[x.evidence() for x in bad[1:4]])
                continue
            siblings = [h for h in hits if h.category == "template_sibling"]
            kept_responses = []
            dropped_any = False
            for k, resp in enumerate(r.get("responses") or []):
                rhits = [h for h in response_hits.get((i, k), []) if h.category == "contaminated"]
                if rhits:
                    h = rhits[0]
                    h.field = f"responses[{k}]"
                    out.drop_response(r, k, resp, "contaminated", f"response {k} contains {h.describe()}",
                                      layer=h.layer, **_evidence(h))
                    dropped_any = True
                else:
                    kept_responses.append(resp)
            if siblings and self.settings.note_siblings or dropped_any:
                r = dict(r)
                if dropped_any:
                    r["responses"] = kept_responses
                if siblings and self.settings.note_siblings:
                    meta = dict(r.get("meta") or {})
                    meta["decontam"] = {"template_siblings": [h.evidence() for h in siblings[:5]]}
                    r["meta"] = meta
            out.kept.append(r)
        return _as_dry_run(records, out) if self.settings.dry_run else out

    def summary(self, output_stats: dict) -> str:
        return ""


def _as_dry_run(records: list[dict], out: StageOutput) -> StageOutput:
    """Every record kept whole; the drops become ``meta.decontam.matches`` (message and
    evidence, with ``response_index`` for a response) and counts in the stats."""
    matches: dict[str, list[dict]] = {}
    for d in out.dropped:
        where = {} if d.response_index is None else {"response_index": d.response_index}
        matches.setdefault(d.id, []).append({"message": d.message, **where, **d.evidence})
    noted = {r["id"]: r.get("meta") for r in out.kept}  # template siblings noted on kept records
    dry = StageOutput(stats={
        "decontam_would_drop": float(sum(d.response_index is None for d in out.dropped)),
        "decontam_would_drop_responses": float(sum(d.response_index is not None for d in out.dropped)),
    })
    for r in records:
        found = matches.get(r["id"])
        if found or noted.get(r["id"]) is not r.get("meta"):
            r = dict(r)
            meta = dict(noted.get(r["id"]) or r.get("meta") or {})
            if found:
                meta["decontam"] = {**(meta.get("decontam") or {}), "matches": found}
            r["meta"] = meta
        dry.kept.append(r)
    return dry


def _chain(*parts: Iterable[str]) -> Iterator[str]:
    for part in parts:
        yield from part


def _evidence(h: Hit) -> dict:
    ev = h.evidence()
    ev.pop("layer", None)
    return ev


def _add_answer_match(h: Hit, record: dict, index: BenchmarkIndex) -> None:
    """Note whether the record's reference answer equals the benchmark item's answer."""
    ref = record.get("reference_answer")
    if ref is None:
        return
    try:
        j = index.item_ids.index(h.item_id)
    except ValueError:
        return
    ans = index.answers[j]
    if ans is not None:
        h.answer_match = "".join(str(ref).split()) == "".join(str(ans).split())


def _lexical_view(index: BenchmarkIndex) -> BenchmarkIndex:
    """The same index with the embedding layer off (and no judge), for long response texts."""
    from dataclasses import replace

    s = index.settings.model_copy(update={"embedding": False, "template_siblings": False,
                                          "judge": index.settings.judge.model_copy(update={"enabled": False})})
    return replace(index, settings=s, embeddings=None)
