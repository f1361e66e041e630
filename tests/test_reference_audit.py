"""The reference audit wired into the verify stage (issue 14 item 3): ``verify.audit`` marks
(``meta.reference_suspect``) or drops (ledger reason ``reference_suspect``) a math record
whose reference does not parse or is outvoted by its responses. Real stage runs, a real
``reasonmill run`` on a YAML pipeline, and the real SkyThought traces."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from reasonmill.cli import main as cli_main
from reasonmill.config import ConfigError, config_from_dict
from reasonmill.engine.workdir import Workdir
from reasonmill.errors import EXIT_OK
from reasonmill.records import new_record, new_response
from reasonmill.stages.base import StageContext
from reasonmill.stages.verify import REFERENCE_SUSPECT, Verify, VerifySettings
from reasonmill.verify.math import check
from reasonmill.verify.math_audit import AuditSettings, audit_reference

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRACES = DATA / "reasoning_traces_skythought"
QWEN8 = DATA / "model_outputs_qwen_math" / "math_cot_100_rm_maj_example.jsonl"


def _resp(answer: str, i: int = 0) -> dict:
    return new_response(f"<think>step {i}</think>So the answer is $\\boxed{{{answer}}}$.")


def _records() -> list[dict]:
    """An outvoted reference (the 27B file's ``(+5)(b+2)``, its ``a`` lost), a fine one, a
    malformed one, and a chat record the audit never looks at."""
    return [
        new_record(source="s", original_id="outvoted", problem="Factor the expression $ab+5b+2a+10$.",
                   category="math", reference_answer="(+5)(b+2)",
                   responses=[_resp("(a+5)(b+2)", i) for i in range(4)] + [_resp("(a+2)(b+5)")]),
        new_record(source="s", original_id="fine", problem="What is 5+7?", category="math", reference_answer="12",
                   responses=[_resp("12"), _resp("12", 1), _resp("13")], meta={REFERENCE_SUSPECT: {"stale": 1}}),
        new_record(source="s", original_id="broken", problem="Determine $q$ in terms of $a$ and $b$.",
                   category="math", reference_answer="\\frac{}{2}", responses=[_resp("\\frac{ab}{2}")]),
        new_record(source="s", original_id="chat", problem="Say hello.", category="chat",
                   responses=[new_response("<think>greet</think>Hello!")]),
    ]  # fmt: skip


#: the name of each built record, by its id
NAMES = dict(zip((r["id"] for r in _records()), ("outvoted", "fine", "broken", "chat")))


def _name(record: dict) -> str:
    return NAMES[record["id"]]


def _process(records: list[dict], audit) -> tuple:
    stage = Verify({"audit": audit, "format": False, "math": {"workers": 1}}, StageContext())
    try:
        out = stage.process(records)
        return out, stage.summary(out.stats)
    finally:
        stage.close()


@pytest.fixture(scope="module")
def runs() -> dict:
    return {mode: (recs := _records(), *_process(recs, mode)) for mode in ("off", "mark", "drop")}


def test_drop_puts_the_flag_in_the_ledger_with_its_evidence(runs):
    records, out, summary = runs["drop"]
    by_id = {_name(d.record): d for d in out.dropped}
    assert sorted(by_id) == ["broken", "outvoted"]
    assert [_name(r) for r in out.kept] == ["fine", "chat"]
    outvoted = by_id["outvoted"]
    assert (outvoted.reason, outvoted.response_index) == (REFERENCE_SUSPECT, None)
    assert outvoted.evidence == {
        "reason": "majority_disagrees", "reference": "(+5)(b+2)", "majority_answer": "(a+5)(b+2)",
        "agreeing": 4, "responses": 5, "passed": 0, "answers": {"(a+5)(b+2)": 4, "(a+2)(b+5)": 1},
    }  # fmt: skip
    assert "4 of 5 responses agree on '(a+5)(b+2)'" in outvoted.message
    broken = by_id["broken"]
    assert broken.evidence["reason"] == "reference_unparsed" and broken.evidence["malformed"] == "empty argument"
    assert "does not parse as math (empty argument)" in broken.message
    assert out.stats[REFERENCE_SUSPECT] == 2
    assert out.stats[f"{REFERENCE_SUSPECT}:majority_disagrees"] == out.stats[f"{REFERENCE_SUSPECT}:reference_unparsed"] == 1
    assert "reference_suspect 2 (dropped): majority_disagrees 1, reference_unparsed 1" in summary


def test_mark_keeps_every_record_and_writes_the_flag_to_meta(runs):
    records, out, summary = runs["mark"]
    assert out.dropped == [] and len(out.kept) == 4
    by_id = {_name(r): r for r in out.kept}
    _, dropped, _ = runs["drop"]
    evidence = {_name(d.record): d.evidence for d in dropped.dropped}
    assert by_id["outvoted"]["meta"][REFERENCE_SUSPECT] == evidence["outvoted"]  # the same dict as the ledger's
    assert by_id["broken"]["meta"][REFERENCE_SUSPECT]["reason"] == "reference_unparsed"
    assert REFERENCE_SUSPECT not in by_id["fine"]["meta"]  # a stale mark of an earlier run is removed
    assert REFERENCE_SUSPECT not in (by_id["chat"].get("meta") or {})
    assert "reference_suspect 2 (marked in meta.reference_suspect)" in summary


def test_the_audit_changes_no_verdict(runs):
    verdicts = {
        mode: [(resp["passed"], resp["verify_score"], resp["verdicts"]) for r in recs for resp in r["responses"]]
        for mode, (recs, _, _) in runs.items()
    }
    assert verdicts["off"] == verdicts["mark"] == verdicts["drop"]
    assert [resp["passed"] for resp in runs["off"][0][0]["responses"]] == [False] * 5  # outvoted: all judged wrong
    _, off, _ = runs["off"]
    assert REFERENCE_SUSPECT not in off.stats and len(off.kept) == 4
    assert runs["off"][0][1]["meta"] == {REFERENCE_SUSPECT: {"stale": 1}}  # off: meta untouched


def test_min_agreeing_sets_how_many_must_agree():
    recs = _records()[:1]
    out, _ = _process(recs, {"mode": "drop", "min_agreeing": 5})
    assert out.dropped == [] and out.stats[REFERENCE_SUSPECT] == 0  # only 4 agree


@pytest.mark.parametrize(
    "reference, malformed",
    [
        ("\\frac{}{2}", "empty argument"),  # OlympiadBench copies that lost letters
        ("\\frac{}{2k(-k)!}", "empty argument"),
        ("=2,=-6-4\\sqrt{2}", "nothing before '='"),
        ("1\\\\sqrt{19}", "row break outside a matrix"),  # the 27B file's \pm
        ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", None),
        ("x = 3", None),
        ("a=1, b=2", None),
        ("5\\text{ }cm", None),
        ("\\{\\}", None),
    ],
)
def test_malformed_reference_shapes(reference, malformed):
    flag = audit_reference([check(reference, "\\boxed{7}")])
    if malformed is None:
        assert flag is None or "malformed" not in flag.evidence, flag
    else:
        assert flag is not None and (flag.reason, flag.evidence["malformed"]) == ("reference_unparsed", malformed)


def _load(settings: dict) -> VerifySettings:
    cfg = config_from_dict({"sources": [], "stages": [{"verify": settings}]})
    return VerifySettings(**cfg.stage_specs[0].settings)


def test_audit_settings_from_yaml():
    assert VerifySettings().audit == AuditSettings(mode="mark", min_agreeing=3)
    assert _load(yaml.safe_load("audit: drop")).audit.mode == "drop"
    assert _load(yaml.safe_load("audit: off")).audit.mode == "off"  # YAML reads off as false
    assert _load(yaml.safe_load("audit: {mode: off, min_agreeing: 4}")).audit == AuditSettings(mode="off", min_agreeing=4)
    with pytest.raises(ConfigError, match="audit.mode"):
        _load({"audit": {"mode": "delete"}})
    with pytest.raises(ConfigError, match="did you mean 'min_agreeing'"):
        _load({"audit": {"min_agreing": 3}})
    with pytest.raises(ConfigError, match="audit.min_agreeing"):
        _load({"audit": {"min_agreeing": 1}})


def test_resample_marks_instead_of_dropping():
    """Resample keeps every record (it returns the input's records); its own verify run must
    not drop one silently, so ``audit: drop`` marks there and the verify stage drops."""
    from reasonmill.stages.resample import Resample

    teacher = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": None}
    stage = Resample({"generate": teacher, "verify": {"audit": {"mode": "drop", "min_agreeing": 4}}})
    try:
        assert stage.verifier.settings.audit == AuditSettings(mode="mark", min_agreeing=4)
        recs = _records()[:1]
        out = stage.verifier.process(recs)
        assert out.dropped == [] and out.kept[0]["meta"][REFERENCE_SUSPECT]["agreeing"] == 4
    finally:
        stage.close()


def _pipeline(tmp_path: Path, audit: str) -> Path:
    """A qwen_eval file (question, gt, code = responses) through verify and select."""
    rows = [
        {"idx": 0, "question": "Factor the expression $ab+5b+2a+10$.", "gt": "(+5)(b+2)",
         "code": [f"Grouping gives $\\boxed{{(a+5)(b+2)}}$.{' ' * i}" for i in range(3)], "score": [True] * 3},
        {"idx": 1, "question": "What is 5+7?", "gt": "12", "code": ["$\\boxed{12}$", "$\\boxed{13}$"],
         "score": [True, False]},
    ]  # fmt: skip
    data = tmp_path / "traces.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pipeline = {
        "name": "audit", "workdir": str(tmp_path / f"work-{audit}"), "workers": 1,
        "sources": [{"name": "sky", "path": str(data), "preset": "qwen_eval"}],
        "stages": [{"verify": {"audit": audit, "format": False, "math": {"workers": 1}}}, "select"],
        "exports": [{"path": str(tmp_path / f"out-{audit}" / "am.jsonl"), "format": "am"}],
    }  # fmt: skip
    path = tmp_path / f"pipe-{audit}.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    return path


def _stage_dir(tmp_path: Path, audit: str, name: str):
    return next(sd for sd in Workdir(tmp_path / f"work-{audit}").stage_dirs() if sd.path.name.endswith(name))


def test_reasonmill_run_drops_with_reference_suspect_in_the_ledger(tmp_path):
    assert cli_main(["run", str(_pipeline(tmp_path, "drop")), "--quiet"]) == EXIT_OK
    rows = list(_stage_dir(tmp_path, "drop", "verify").iter_ledger())
    assert [(r["kind"], r["reason"]) for r in rows] == [("record", REFERENCE_SUSPECT)]
    evidence = json.loads(rows[0]["evidence"])
    assert (evidence["reason"], evidence["reference"], evidence["majority_answer"], evidence["agreeing"],
            evidence["responses"]) == ("majority_disagrees", "(+5)(b+2)", "(a+5)(b+2)", 3, 3)  # fmt: skip
    assert json.loads(rows[0]["record"])["reference_answer"] == "(+5)(b+2)"
    exported = [json.loads(x) for x in (tmp_path / "out-drop" / "am.jsonl").read_text().splitlines()]
    assert len(exported) == 1 and "5+7" in json.dumps(exported[0])  # the 12 record, its passing response


def test_reasonmill_run_marks_and_select_still_decides(tmp_path):
    assert cli_main(["run", str(_pipeline(tmp_path, "mark")), "--quiet"]) == EXIT_OK
    assert list(_stage_dir(tmp_path, "mark", "verify").iter_ledger()) == []
    kept = {r["reference_answer"]: r for r in _stage_dir(tmp_path, "mark", "verify").iter_records()}
    meta = kept["(+5)(b+2)"]["meta"]
    meta = json.loads(meta) if isinstance(meta, str) else meta
    assert meta[REFERENCE_SUSPECT]["reason"] == "majority_disagrees" and meta[REFERENCE_SUSPECT]["agreeing"] == 3
    select = {r["kind"]: r for r in _stage_dir(tmp_path, "mark", "select").iter_ledger()}
    record = select["record"]  # marked, not dropped: select drops it for its verdicts, with the mark
    assert record["reason"] == "no_passing_response" and "the reference is suspect" in record["message"]
    assert json.loads(record["evidence"])[REFERENCE_SUSPECT] == meta[REFERENCE_SUSPECT]


# --- real data ----------------------------------------------------------------------------


def _trace_rows(path: Path) -> list[dict]:
    if path.suffix == ".json":  # keyed by problem, responses["0.0"] = {content, correctness}
        return [{"problem": p, "gt": row["answer"], "solution": row.get("solution") or "",
                 "responses": [row["responses"]["0.0"]["content"]]}
                for p, row in json.loads(path.read_text()).items()]  # fmt: skip
    rows = []
    for line in path.open(encoding="utf-8"):
        row = json.loads(line)
        rows.append({"problem": row["question"], "gt": row["gt"], "solution": row.get("gt_cot") or "",
                     "responses": list(row["code"])})  # fmt: skip
    return rows


def skythought_records(traces: Path = TRACES, benchmarks: tuple[str, ...] | None = None) -> list[dict]:
    """One math record per (benchmark, problem, reference version) with the responses of
    every trace file of that benchmark (``response.source`` = the file). The files of one
    benchmark answer the same problems with different models; where their references differ
    beyond spacing (the 27B file lost backslash escapes), each version is its own record with
    all the problem's responses."""
    by_problem: dict[tuple[str, str], dict] = {}
    for path in sorted(traces.iterdir()):
        bench = path.stem.rsplit("_", 1)[-1]
        if path.suffix not in (".json", ".jsonl") or (benchmarks and bench not in benchmarks):
            continue
        for row in _trace_rows(path):
            key = (bench, re.sub(r"\s+", " ", row["problem"]).strip())
            entry = by_problem.setdefault(key, {"problem": row["problem"], "refs": {}, "responses": []})
            gt = row["gt"] if isinstance(row["gt"], str) else json.dumps(row["gt"], ensure_ascii=False)
            entry["refs"].setdefault(re.sub(r"\s+", "", gt), (gt, row["solution"]))
            entry["responses"] += [(path.name, text) for text in row["responses"]]
    records = []
    for (bench, key), entry in by_problem.items():
        for n, (gt, solution) in enumerate(entry["refs"].values()):
            rec = new_record(source=bench, original_id=f"{key[:200]}#{n}", problem=entry["problem"],
                             reference_answer=gt, category="math",
                             meta={"solution": solution[-300:], "reference_versions": len(entry["refs"])})  # fmt: skip
            rec["responses"] = [new_response(text, source=src) for src, text in entry["responses"]]
            records.append(rec)
    return records


def qwen8_records(path: Path = QWEN8) -> list[dict]:
    """The Qwen2.5-Math file with 8 samples per problem: one record per problem."""
    out = []
    for line in path.open(encoding="utf-8"):
        row = json.loads(line)
        rec = new_record(source="qwen8", original_id=row["idx"], problem=row["question"], reference_answer=row["gt"],
                         category="math", meta={"solution": (row.get("gt_cot") or "")[-300:]})  # fmt: skip
        rec["responses"] = [new_response(text, source="qwen8") for text in row["code"]]
        out.append(rec)
    return out


def test_real_math500_traces_flag_the_references_the_27b_file_damaged():
    """MATH-500 answered by three models (three files). The flags at the default k=3 are
    exactly the three references the 27B file's escaping bug damaged (measured 2026-12-07,
    bench/results/math.md "Reference audit"); the intact versions of the same problems are
    not flagged."""
    if not TRACES.exists():
        pytest.skip(f"{TRACES} not found: the shared data directory ../shared/data is absent")
    records = skythought_records(benchmarks=("math500",))
    assert len(records) == 558 and {len(r["responses"]) for r in records} == {3}
    out, _ = _process(copy.deepcopy(records), "drop")
    flagged = {d.evidence["reference"]: d.evidence for d in out.dropped}
    assert set(flagged) == {"(+5)(b+2)", "1\\\\sqrt{19}", "{1\\\\sqrt{5},-2}"}
    assert flagged["(+5)(b+2)"]["reason"] == "majority_disagrees" and flagged["(+5)(b+2)"]["agreeing"] == 3
    assert {flagged[k]["malformed"] for k in ("1\\\\sqrt{19}", "{1\\\\sqrt{5},-2}")} == {"row break outside a matrix"}
    kept = {r["reference_answer"] for r in out.kept}
    assert {"(a+5)(b+2)", "1 \\pm \\sqrt{19}", "\\{1\\pm\\sqrt{5},-2\\}"} <= kept


def test_real_time_answers_are_times_not_ratios():
    """The Qwen2.5-Math file's reference ``4:30p..`` (``\\text{4:30 p.m.}`` mangled): all 8
    samples answer ``4:30``. Read as the ratio 4/30 they failed and outvoted the reference;
    as times they pass and nothing is flagged."""
    if not QWEN8.exists():
        pytest.skip(f"{QWEN8} not found: the shared data directory ../shared/data is absent")
    records = [r for r in qwen8_records() if r["reference_answer"] == "4:30p.."]
    assert len(records) == 1 and len(records[0]["responses"]) == 8
    out, _ = _process(records, "mark")
    assert [resp["passed"] for resp in out.kept[0]["responses"]] == [True] * 8
    assert REFERENCE_SUSPECT not in out.kept[0]["meta"] and out.stats[REFERENCE_SUSPECT] == 0
