"""`reasonmill report`: the HTML file opened in headless Chromium shows what the run did.

Checked in the page: every plot is drawn (an SVG laid out with a real size and shapes),
the funnel's counts equal ``summary.json``, and a decontamination match shows our text
beside the benchmark item's. Screenshots are left in the test's tmp folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from chromium import Browser
from reasonmill import Pipeline
from reasonmill.report.html import build_report

REPO = Path(__file__).resolve().parents[1]


def _quickstart(tmp: Path) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    cfg["workdir"] = str(tmp / "run")
    cfg["exports"] = [dict(e, path=str(tmp / "out" / Path(e["path"]).name)) for e in cfg["exports"]]
    Pipeline.from_dict(cfg, base_dir=REPO / "configs").run()
    return tmp / "run"


def test_report_data_of_a_small_run(tmp_path):
    """No browser: the collected numbers against the run's own files."""
    from reasonmill.report.collect import collect

    examples = REPO / "examples"
    cfg = {"name": "small", "workdir": str(tmp_path / "run"), "shard_size": 10,
           "sources": [{"name": "word_problems", "path": str(examples / "word_problems.jsonl"), "preset": "gsm8k",
                        "on_error": "skip"},
                       {"name": "math_traces", "path": str(examples / "math_traces.jsonl"), "preset": "am"}],
           "stages": [{"clean": {"min_chars": 20}}, "dedup.exact", {"replay": {"drop_without_response": True}}]}
    Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    data = collect(tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [(s["label"], s["records_in"], s["kept"], s["dropped"]) for s in data["funnel"]] == \
        [(s["label"], s["records_in"], s["kept"], s["dropped"]) for s in summary["stages"]]
    assert {k: v["records"] for s in data["funnel"] for k, v in s["reasons"].items()} == \
        {k: v for s in summary["stages"] for k, v in s["reasons"].items()}
    totals = dict(data["counts"]["totals"])
    assert totals["records"] == summary["stages"][-1]["kept"] and totals["responses"] >= totals["records"]
    # each dedup cluster: the kept record is the representative the dropped ones name
    clusters = data["dedup"]["clusters"]
    assert len(clusters) == 2 and all(c["kept"]["text"] for c in clusters)
    assert all(c["kept"]["id"] in d["message"] for c in clusters for d in c["dropped"])
    # at most SAMPLES_PER_REASON samples per reason, every reason present
    per_reason = {}
    for x in data["drop_samples"]:
        per_reason[x["reason"]] = per_reason.get(x["reason"], 0) + 1
    assert per_reason == {"unmappable": 1, "image_ref": 1, "url": 1, "truncated": 1, "duplicate_of": 2,
                          "no_existing_response": 3}
    assert data["pass_rates"] is None and data["decontamination"]["matches"] == []  # no verify, no decontaminate
    out = build_report(tmp_path / "run", tmp_path / "r.html")
    assert out["timing"]["bytes"] < 400_000


def _check_page(b: Browser, workdir: Path) -> dict:
    plots = b.js("[...document.querySelectorAll('figure.plot')].map(f => [f.dataset.plot, f.dataset.drawn])")
    assert len(plots) >= 8, plots
    assert all(drawn == "yes" for _, drawn in plots), plots
    funnel = b.js("[...document.querySelectorAll('table.funnel tr[data-stage]')].map(r => "
                  "[r.dataset.stage, +r.dataset.in, +r.dataset.kept, +r.dataset.dropped])")
    summary = json.loads((workdir / "summary.json").read_text())
    assert funnel == [[s["label"], s["records_in"], s["kept"], s["dropped"]] for s in summary["stages"]]
    return {"plots": dict(plots), "funnel": funnel}


@pytest.mark.slow
def test_quickstart_report_in_chromium(tmp_path):
    workdir = _quickstart(tmp_path)
    data = build_report(workdir, tmp_path / "report.html")
    assert data["timing"]["bytes"] < 1_000_000
    html = (tmp_path / "report.html").read_text()
    # nothing is fetched: no external script, style, image or font
    for ref in ('src="http', 'href="http', "<link", "@import", "url(http", "<iframe"):
        assert ref not in html, ref
    with Browser() as b:
        b.goto((tmp_path / "report.html").as_uri())
        seen = _check_page(b, workdir)
        assert {"funnel", "drop_reasons", "count_source", "length_think", "length_answer", "pass_by_verifier",
                "score_hist"} <= set(seen["plots"])
        assert ["dedup.exact", 29, 27, 2] in seen["funnel"]
        # the exact-dedup cluster: the kept record's text beside the dropped copy's
        kept, dropped = b.js("[document.querySelector('.cluster pre.kept').textContent, "
                             "document.querySelector('.cluster pre.dropped').textContent]")
        assert kept and dropped and kept.split()[:3] == dropped.split()[:3]
        # the drop samples name every reason of the funnel, with the dropped record's text
        reasons = b.js("[...document.querySelectorAll('#samples h4')].map(h => h.textContent)")
        assert any(r.startswith("clean · truncated") for r in reasons), reasons
        b.screenshot(tmp_path / "quickstart.png")
    assert (tmp_path / "quickstart.png").stat().st_size > 50_000


@pytest.mark.slow
@pytest.mark.shared_data
def test_report_of_shared_sources_shows_decontamination_matches(tmp_path, shared_data):
    d = shared_data
    cfg = {
        "name": "report-shared", "workdir": str(tmp_path / "run"), "shard_size": 200,
        "sources": [
            {"name": "math_train", "path": str(d / "math_train/math_train_rllm.json"), "preset": "math", "limit": 200},
            {"name": "gsm8k", "path": str(d / "gsm8k/gsm8k_train.jsonl"), "preset": "gsm8k", "limit": 100},
            # MATH-500 questions with Sky-T1 traces: contaminated against math500
            {"name": "sky", "path": str(d / "reasoning_traces_skythought/sky-t1-math-correct-5k-27b_math500.jsonl"),
             "preset": "qwen_eval", "model": "Sky-T1", "limit": 60},
            {"name": "sky_amc", "path": str(d / "reasoning_traces_skythought/sky-t1-math-correct-5k-14b_amc23.jsonl"),
             "preset": "qwen_eval", "model": "Sky-T1"},
            {"name": "qwen_math", "path": str(d / "model_outputs_qwen_math/math_cot_100_rm_maj_example.jsonl"),
             "preset": "qwen_eval", "model": "Qwen2.5-Math-Instruct", "limit": 40},
        ],
        "stages": ["clean", "dedup.exact",
                   {"decontaminate": {"benchmarks": [{"name": "math500", "path": str(d / "math500/math500_test.jsonl")}]}},
                   "replay", "verify", "select"],
        "exports": [{"path": str(tmp_path / "out" / "am.jsonl"), "format": "am"}],
    }
    Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    workdir = tmp_path / "run"
    build_report(workdir, tmp_path / "report.html")
    bench = {json.loads(line)["unique_id"]: json.loads(line)["problem"]
             for line in (d / "math500/math500_test.jsonl").read_text().splitlines()}
    with Browser() as b:
        b.goto((tmp_path / "report.html").as_uri())
        seen = _check_page(b, workdir)
        assert dict((s[0], s[3]) for s in seen["funnel"])["decontaminate"] >= 50
        matches = b.js("[...document.querySelectorAll('.match')].map(m => [m.dataset.id, "
                       "m.querySelector('h4 + pre.ours').textContent, m.querySelector('.theirs-col h4').textContent, "
                       "(m.querySelector('pre.theirs') || {}).textContent])")
        assert len(matches) >= 20
        for _, ours, head, theirs in matches:
            item_id = head.split(" item ", 1)[1]
            assert theirs == bench[item_id][:1500]  # the benchmark's own text, as long as the report shows
            assert ours.strip()
        lengths = set(b.js("[...document.querySelectorAll('figure[data-plot=length_think] text')].map(t => t.textContent)"))
        assert any(t.startswith("Sky-T1") for t in lengths) and any(t.startswith("Qwen2.5-Math") for t in lengths)
        b.js("document.querySelector('#decontamination').scrollIntoView()")
        b.screenshot(tmp_path / "shared.png")


def test_verifier_disagreements_across_verdicts_and_within_one(tmp_path):
    """A pass beside a fail, and a math verdict whose second checker differs
    (``details.disagreement``), are both counted; agreeing verdicts are not."""
    from reasonmill.engine.workdir import Workdir
    from reasonmill.records import new_record, new_response
    from reasonmill.report.collect import collect

    def resp(verdicts: list[dict]) -> dict:
        r = new_response("<think>t</think>\\boxed{1}", model="m")
        r["verdicts"] = verdicts
        r["passed"] = all(v["passed"] for v in verdicts)
        r["verify_score"] = 1.0 if r["passed"] else 0.0
        return r

    math_ok = {"verifier": "math", "passed": True, "score": 1.0, "reason": "math_equal", "details": {}}
    fmt_bad = {"verifier": "format", "passed": False, "score": 0.0, "reason": "no_boxed", "details": {}}
    split = {"verifier": "math", "passed": True, "score": 1.0, "reason": "math_equal",
             "details": {"second": {"passed": False, "via": "numeric"}, "disagreement": True}}
    records = [new_record(source="s", problem=f"problem {i}", original_id=i, responses=[r])
               for i, r in enumerate([resp([math_ok]), resp([math_ok, fmt_bad]), resp([split]), resp([split, fmt_bad])])]
    sd = Workdir(tmp_path).stage_dir(0, "verify")
    sd.write_shard("00000", records, [], {})
    d = collect(tmp_path)["disagreements"]
    assert dict(d["pairs"]) == {"math passed, format failed": 2,
                                "math: its checkers differ (verdict passed, second checker failed)": 2}
    assert sorted(e["problem"] for e in d["examples"]) == ["problem 1", "problem 2", "problem 3"]
