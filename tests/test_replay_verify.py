"""Replay + math verification on real SkyThought traces agrees with the upstream labels."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reasonmill import Pipeline

MATH500_TRACES = [
    "sky-t1-math-correct-5k-32b-short_math500.jsonl",
    "sky-t1-math-correct-5k-27b_math500.jsonl",
]


@pytest.mark.parametrize("name", MATH500_TRACES)
def test_replay_and_math_verification_agree_with_upstream_labels(shared_data, tmp_path, name):
    path = shared_data / "reasoning_traces_skythought" / name
    cfg = {
        "name": "sky",
        "workdir": str(tmp_path / "work"),
        "sources": [{"name": "sky", "path": str(path), "preset": "qwen_eval"}],
        "stages": ["replay", {"verify": {"math": {"workers": 2, "timeout": 10}}}],
    }
    result = Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    assert result.stages[0].kept == 500
    records = list(__import__("reasonmill.engine.workdir", fromlist=["Workdir"]).Workdir(tmp_path / "work").stage_dirs()[-1].iter_records())
    pairs = [
        (resp["meta"]["upstream_label"], resp["verdicts"][0]["passed"])
        for r in records
        for resp in r["responses"]
    ]
    assert len(pairs) == 500
    agreement = sum(a == b for a, b in pairs) / len(pairs)
    assert agreement >= 0.95, f"agreement {agreement:.3f}"


def _verify_cli(path, out) -> None:
    """``reasonmill verify FILE --out DIR`` in a subprocess; it must exit 0."""
    run = subprocess.run(
        [sys.executable, "-m", "reasonmill.cli", "verify", str(path), "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stderr


def test_verify_command_writes_verdicts_and_agreement(shared_data, tmp_path):
    path = shared_data / "reasoning_traces_skythought" / "sky-t1-math-correct-5k-14b_amc23.jsonl"
    _verify_cli(path, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["records"] == 40 and summary["math_responses"] == 40
    assert summary["agreement_with_upstream"] >= 0.9
    lines = [json.loads(x) for x in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    assert len(lines) == 40 and {"verify_score", "passed", "correct", "verdicts"} <= set(lines[0])
    # each verdict names its input line, so it joins back to the row and its upstream score
    assert [v["origin"] for v in lines] == [f"{path.name}:{n}" for n in range(1, 41)]
    rows = path.read_text(encoding="utf-8").splitlines()
    assert all(json.loads(rows[n])["score"][0] == v["upstream_label"] for n, v in enumerate(lines))
    assert summary["reference_suspects"] == len((tmp_path / "reference_suspects.jsonl").read_text().splitlines())


def test_verify_command_lists_checker_disagreements_with_both_verdicts(shared_data, tmp_path):
    """Issue 14: every response where math-verify and the second checker differ is a line of
    ``disagreements.jsonl`` with both verdicts, and the summary counts them."""
    path = shared_data / "reasoning_traces_skythought" / "sky-t1-math-correct-5k-27b_math500.jsonl"
    _verify_cli(path, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    lines = [json.loads(x) for x in (tmp_path / "disagreements.jsonl").read_text().splitlines()]
    assert summary["math_checker_disagreements"] == len(lines) > 0
    for line in lines:
        assert line["math_verify"]["passed"] != line["second_checker"]["passed"], line
        assert line["reference"] and line["extracted"] and line["verdict"]["passed"] == line["math_verify"]["passed"]


def test_format_rules_fit_replayed_sources_without_think(shared_data, tmp_path):
    """Issue 12: SkyThought and Qwen2.5-Math outputs carry no <think> part (all of the
    32B-short checkpoint and Qwen-Math, 210/500 of the 27B one). ``require_think: auto``
    keeps them; the old strict default removed them, and the stage then warns per source."""
    sky = shared_data / "reasoning_traces_skythought"
    qwen = shared_data / "model_outputs_qwen_math" / "math_cot_100_rm_maj_example.jsonl"
    sources = [
        {"name": "sky27b", "path": str(sky / "sky-t1-math-correct-5k-27b_math500.jsonl"),
         "preset": "qwen_eval", "limit": 120},
        {"name": "qwenmath", "path": str(qwen), "preset": "qwen_eval", "limit": 15},
    ]  # fmt: skip

    def run(verify: dict):
        stages = ["replay", {"verify": {"math": {"workers": 2, "timeout": 10}, **verify}}]
        cfg = {"name": "fmt", "workdir": str(tmp_path / "work"), "sources": sources, "stages": stages}
        return Pipeline.from_dict(cfg, base_dir=tmp_path).run().stages[-1].stats

    from reasonmill.stages.verify import Verify

    auto = run({})
    assert auto["responses@qwenmath"] == auto["no_think@qwenmath"] == 120
    assert 30 <= auto["no_think@sky27b"] <= 90 and auto["responses@sky27b"] == 120
    assert "format_failed:missing_think" not in auto
    assert "WARNING" not in Verify().summary(auto)

    strict = run({"format": {"require_think": True}})
    assert strict["format_failed:missing_think"] == 120 + auto["no_think@sky27b"]
    assert strict["verdict_cache_hits"] >= 240  # the math verdicts were reused, only the rules ran again
    summary = Verify().summary(strict)
    assert "WARNING: format rule missing_think fails 120 of the 120 responses of source 'qwenmath'" in summary
    assert "'sky27b'" not in summary.split("WARNING", 1)[1]  # under 90 %: no warning

    relaxed = run({"format": {"require_think": True, "per_source": {"qwenmath": {"require_think": False}}}})
    assert relaxed["format_failed:missing_think"] == auto["no_think@sky27b"]


def test_a_response_dropped_where_the_checkers_disagree_carries_both_verdicts(tmp_path):
    """The ledger evidence of a ``below_threshold`` drop names the disagreement, so a triage
    of the drops finds it without re-running anything."""
    from reasonmill.records import new_record, new_response
    from reasonmill.stages.base import StageContext
    from reasonmill.stages.select import Select
    from reasonmill.stages.verify import Verify

    record = new_record(source="t", problem="Simplify $-2x \\cdot 1$.", reference_answer="-2x", category="math")
    record["responses"] = [new_response(answer="So the result is $\\boxed{-2}$.", think="-2 times 1")]
    verify = Verify({"math": {"workers": 1}}, StageContext(cache_dir=str(tmp_path / "cache"), label="verify"))
    try:
        verified = verify.process([record]).kept
    finally:
        verify.close()
    out = Select({}).process(verified)
    assert not out.kept
    drop = next(d for d in out.dropped if d.reason == "below_threshold")
    evidence = drop.evidence["checker_disagreement"]
    assert evidence["math_verify"] == "math_not_equal" and evidence["second_checker"]["passed"] is True
    assert "two math checkers disagree" in drop.message
