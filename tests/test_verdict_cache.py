"""Verdict cache keys never go stale (issue 11): a cached verdict is reused only when the
verifier, its version and settings, the libraries deciding it and every field it reads
are unchanged. Real stage runs over a real SQLite cache; code runs in the real sandbox."""

from __future__ import annotations

import copy

import pytest

from reasonmill.records import new_record, new_response
from reasonmill.stages.base import StageContext
from reasonmill.stages.verify import Verify
from reasonmill.verify import math as math_mod
from reasonmill.verify.choice import ChoiceVerifier
from reasonmill.verify.code import CodeVerifier
from reasonmill.verify.format import FormatVerifier
from reasonmill.verify.math import MathVerifier


def _run(tmp_path, records: list[dict], settings: dict | None = None) -> dict:
    """One fresh stage over copies of ``records`` sharing the cache dir; returns its stats."""
    stage = Verify(dict(settings or {}), StageContext(cache_dir=str(tmp_path / "cache")))
    try:
        return stage.process(copy.deepcopy(records)).stats
    finally:
        stage.close()


def _choice_records(n: int = 3) -> list[dict]:
    problem = "Which gas do plants absorb?\n(A) Oxygen\n(B) Carbon dioxide\n(C) Helium\n(D) Neon"
    return [
        new_record(source="sci", problem=problem + f" [{i}]", category="science", reference_answer="B",
                   responses=[new_response("<think>photosynthesis</think>The answer is (B).")])
        for i in range(n)
    ]  # fmt: skip


def test_a_rerun_hits_the_cache_and_unrelated_edits_keep_it(tmp_path):
    records = _choice_records()
    first = _run(tmp_path, records)
    assert (first["verdicts_computed"], first["verdict_cache_hits"]) == (6, 0)  # choice + format per response
    again = _run(tmp_path, records)
    assert (again.get("verdicts_computed", 0), again["verdict_cache_hits"]) == (0, 6)
    for r in records:  # fields no verifier reads
        r["difficulty"] = 0.3
        r["meta"] = {"note": "x"}
        r["responses"][0]["model"] = "other-name"
    assert _run(tmp_path, records).get("verdicts_computed", 0) == 0


def test_changing_a_setting_reverifies_only_that_verifier(tmp_path):
    records = _choice_records()
    _run(tmp_path, records)
    changed = _run(tmp_path, records, {"format": {"max_chars": 10_000}})
    # format again, choice cached
    assert (changed["verdicts_computed"], changed["verdict_cache_hits"]) == (3, 3)
    off = _run(tmp_path, records, {"format": {"per_source": {"sci": {"check_language": False}}}})
    assert off["verdicts_computed"] == 3


def test_bumping_a_verifier_version_invalidates_its_verdicts(tmp_path, monkeypatch):
    records = _choice_records()
    _run(tmp_path, records)
    monkeypatch.setattr(ChoiceVerifier, "version", ChoiceVerifier.version + "-bumped")
    bumped = _run(tmp_path, records)
    # choice again, format cached
    assert (bumped["verdicts_computed"], bumped["verdict_cache_hits"]) == (3, 3)
    monkeypatch.setattr(FormatVerifier, "version", FormatVerifier.version + "-bumped")
    assert _run(tmp_path, records)["verdicts_computed"] == 3


def test_changing_a_field_the_choice_verifier_reads_reverifies(tmp_path):
    records = _choice_records(1)
    _run(tmp_path, records)
    records[0]["reference_answer"] = "C"
    stats = _run(tmp_path, records)
    assert stats["verdicts_computed"] == 1 and stats.get("choice_passed", 0) == 0


def _fn_record(fn_name: str | None, starter: str | None) -> dict:
    answer = "```python\ndef add(a, b):\n    return a + b\n```"
    return new_record(
        source="lcb", problem="Add two numbers.", category="code", starter_code=starter,
        tests=[{"input": "1\n2", "output": "3", "kind": "functional"}],
        meta={"fn_name": fn_name} if fn_name else {},
        responses=[new_response(f"<think>easy</think>{answer}")],
    )  # fmt: skip


def test_code_verdicts_follow_fn_name_and_starter_code(tmp_path):
    settings = {"code": {"workers": 1, "limits": {"wall_timeout": 10, "cpu_seconds": 5}}, "format": False}
    records = [_fn_record("add", None)]
    first = _run(tmp_path, records, settings)
    assert (first["verdicts_computed"], first["code_passed"]) == (1, 1)
    assert _run(tmp_path, records, settings)["verdict_cache_hits"] == 1
    records[0]["meta"] = {"fn_name": "plus"}  # the function under test changes: verdict changes
    renamed = _run(tmp_path, records, settings)
    assert renamed["verdicts_computed"] == 1 and renamed.get("code_passed", 0) == 0
    records = [_fn_record(None, "def add(a, b):\n    pass\n")]  # the name now comes from starter_code
    starter = _run(tmp_path, records, settings)
    assert (starter["verdicts_computed"], starter["code_passed"]) == (1, 1)
    records[0]["starter_code"] = "def plus(a, b):\n    pass\n"
    assert _run(tmp_path, records, settings)["verdicts_computed"] == 1
    # workers do not decide a verdict: no re-run
    more_workers = dict(settings, code={**settings["code"], "workers": 2})
    assert _run(tmp_path, records, more_workers)["verdict_cache_hits"] == 1
    limits = dict(settings, code={**settings["code"], "limits": {"wall_timeout": 9, "cpu_seconds": 5}})
    assert _run(tmp_path, records, limits)["verdicts_computed"] == 1


def test_code_key_holds_interpreter_and_sandbox():
    rec = _fn_record("add", None)
    v = CodeVerifier(max_tests=3)
    key = v.cache_key(rec, rec["responses"][0])
    assert key == CodeVerifier(max_tests=3, workers=7).cache_key(rec, rec["responses"][0])
    assert key != CodeVerifier(max_tests=4).cache_key(rec, rec["responses"][0])
    assert key != CodeVerifier(max_tests=3, python="/usr/bin/env").cache_key(rec, rec["responses"][0])


def test_math_key_holds_settings_judge_and_library_versions(monkeypatch):
    rec = new_record(source="m", problem="1+1?", category="math", reference_answer="2")
    resp = new_response("<think>..</think>\\boxed{2}")
    key = MathVerifier().cache_key(rec, resp)
    assert key == MathVerifier(workers=5, timeout=5.0).cache_key(rec, resp)  # pool size: no effect
    assert key != MathVerifier(timeout=9.0).cache_key(rec, resp)
    assert key != MathVerifier(float_rounding=3).cache_key(rec, resp)
    judged = MathVerifier(judge=lambda p, r, a: (True, ""), judge_key={"model": "a"})
    assert judged.cache_key(rec, resp) != key
    other_judge = MathVerifier(judge=judged.judge, judge_key={"model": "b"})
    assert judged.cache_key(rec, resp) != other_judge.cache_key(rec, resp)
    assert judged.cache_key(rec, resp) != judged.cache_key(dict(rec, problem="one plus one?"), resp)
    # the problem is read even without a judge: it names the subproblem and the precision asked
    assert key != MathVerifier().cache_key(dict(rec, problem="one plus one?"), resp)
    monkeypatch.setattr(math_mod, "package_versions", lambda *names: {n: "0.0-other" for n in names})
    assert MathVerifier().cache_key(rec, resp) != key


def test_settings_are_validated_where_verifiers_are_built():
    with pytest.raises(Exception, match="timeuot"):
        MathVerifier(timeuot=3)
    with pytest.raises(Exception, match="max_test"):
        CodeVerifier(max_test=3)
    with pytest.raises(Exception, match="letters"):
        ChoiceVerifier(letters="AB")


def test_judge_verdicts_follow_thresholds_and_the_math_judge_runs_from_yaml_settings(tmp_path):
    """A real judge server: general verdicts are cached, a threshold change re-asks the
    judge; the same ``judge`` section (with general-only keys) also drives math's fallback."""
    from reward_server import RewardServer

    chat = [new_record(source="chat", problem="Explain why the ocean is salty.", category="chat",
                       responses=[new_response(answer=f"Rivers carry salt to the ocean {i}.", think="t")])
            for i in range(3)]  # fmt: skip
    wrong = new_response(answer="The product is \\boxed{41}.", think="t")
    math = [new_record(source="m", problem="Compute 6*7.", category="math", reference_answer="42",
                       responses=[wrong])]
    with RewardServer() as server:
        judge = {"base_url": server.url, "model": "judge-plain", "temperature": 0.0, "concurrency": 2}
        settings = {"judge": judge, "format": False, "math": {"workers": 1}}
        first = _run(tmp_path, chat, settings)
        assert first["verdicts_computed"] == 3 and len(server.requests) == 3
        assert _run(tmp_path, chat, settings)["verdict_cache_hits"] == 3 and len(server.requests) == 3
        stricter = {**settings, "judge": {**judge, "thresholds": {"default": 0.95}}}
        # new thresholds: new verdicts, but the judge's replies come from the LLM cache
        assert _run(tmp_path, chat, stricter)["verdicts_computed"] == 3 and len(server.requests) == 3
        math_judge = {**settings, "judge": {**judge, "model": "math-judge"}}
        stats = _run(tmp_path, math, math_judge)
        # math-verify says no, so the judge is asked (and agrees)
        assert (stats["math_responses"], stats.get("math_passed", 0), len(server.requests)) == (1, 0, 4)
        assert server.requests[-1]["body"]["model"] == "math-judge"


def _kill_own_worker_on_marked_answer(reference, text, settings, raw=None, problem=None):
    """``check`` as a worker runs it, except that the answer "KILLME" kills the worker (as
    the OOM killer would): a death that says nothing about the answer."""
    import os
    import signal

    if "KILLME" in text:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_check(reference, text, settings, raw, problem)


_real_check = math_mod.check


def test_a_verdict_of_a_crashed_worker_is_not_cached(tmp_path, monkeypatch):
    """A worker killed twice on an item gives ``verifier_crashed`` for this run (not a
    wrong answer, and not cached): the next run verifies it again; the other verdict is
    reused."""
    monkeypatch.setattr(math_mod, "check", _kill_own_worker_on_marked_answer)  # forked workers inherit it
    records = [
        new_record(source="m", problem="1+1?", category="math", reference_answer="2",
                   responses=[new_response("<think>add</think>\\boxed{2}")]),
        new_record(source="m", problem="2+2?", category="math", reference_answer="4",
                   responses=[new_response("<think>KILLME</think>KILLME \\boxed{4}")]),
    ]  # fmt: skip
    settings = {"math": {"workers": 1, "mp_context": "fork"}, "format": None}
    first = _run(tmp_path, records, settings)
    assert first["verdicts_not_cached"] == 1
    again = _run(tmp_path, records, settings)
    assert again["verdicts_computed"] == 1 and again["verdicts_not_cached"] == 1  # only the crashed one again
    stage = Verify(settings, StageContext(cache_dir=str(tmp_path / "cache")))
    try:
        out = stage.process(copy.deepcopy(records))
    finally:
        stage.close()
    reasons = {r["problem"]: [v["reason"] for resp in r["responses"] for v in resp["verdicts"]] for r in out.kept}
    assert reasons == {"1+1?": ["math_equal"], "2+2?": ["verifier_crashed"]}
