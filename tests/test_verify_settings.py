"""The verify stage's typed settings (issue 11), per-source format rules and the
unverified general responses (issue 12): real stage runs, real select, real AM rows."""

from __future__ import annotations

import pytest

from reasonmill.config import ConfigError, config_from_dict
from reasonmill.io.formats import to_am
from reasonmill.records import new_record, new_response
from reasonmill.stages.select import Select
from reasonmill.stages.verify import Verify, VerifySettings, format_warnings
from reasonmill.verify.format import FormatSettings, FormatVerifier


def _load_verify(settings: dict) -> VerifySettings:
    cfg = config_from_dict({"sources": [], "stages": [{"verify": settings}]})
    return VerifySettings(**cfg.stage_specs[0].settings)


def test_misspelt_nested_key_names_the_key_and_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        _load_verify({"math": {"timeuot": 5}})
    msg = str(err.value)
    assert "math" in msg and "timeuot" in msg and "did you mean 'timeout'" in msg
    valid = "allow_set_relation_comp, decide, float_rounding, max_answer_chars, memory_limit_mb, mp_context, numeric_precision, rel_tol, second_checker, strict, timeout, workers"
    assert f"valid keys: {valid}" in msg


@pytest.mark.parametrize(
    "settings, path, bad, valid",
    [
        ({"code": {"limits": {"wall_timout": 5}}}, "code.limits", "wall_timout", "wall_timeout"),
        ({"code": {"max_test": 5}}, "code", "max_test", "max_tests"),
        ({"format": {"require_thnik": True}}, "format", "require_thnik", "require_think"),
        ({"format": {"per_source": {"sky": {"max_char": 9}}}}, "format.per_source.sky", "max_char", "max_chars"),
        ({"reward": {"base_url": "http://x", "model": "rm", "treshold": 1}}, "reward", "treshold", "thresholds"),
        ({"judge": {"base_url": "http://x", "model": "j", "temprature": 0}}, "judge", "temprature",
         "temperature"),
    ],
)
def test_every_verifier_section_rejects_unknown_keys(settings, path, bad, valid):
    with pytest.raises(ConfigError) as err:
        _load_verify(settings)
    where, _, valid_keys = str(err.value).partition("valid keys:")
    assert path in where and repr(bad) in where or f"{path}.{bad}" in where
    assert valid in [k.strip() for k in valid_keys.split(",")]


def test_wrong_value_types_fail_at_load_time():
    with pytest.raises(ConfigError, match="math.timeout"):
        _load_verify({"math": {"timeout": "soon"}})
    with pytest.raises(ConfigError, match="format.require_think"):
        _load_verify({"format": {"require_think": "sometimes"}})


def test_removed_rules_only_score_says_what_replaced_it():
    with pytest.raises(ConfigError, match="rules_only_score was removed.*keep_unverified"):
        _load_verify({"rules_only_score": 0.5})


def test_format_switch_stays_yaml_compatible():
    assert _load_verify({"format": False}).format is None
    assert _load_verify({"format": True}).format == FormatSettings()
    assert _load_verify({}).format.require_think == "auto"


def test_judge_settings_build_both_judges_without_unknown_keywords():
    """temperature/concurrency/thresholds belong to the general judge only; the math
    judge is built from the keys it accepts (this raised TypeError with raw dicts)."""
    judge = {"base_url": "http://127.0.0.1:9", "model": "j", "temperature": 0.3, "concurrency": 2}
    s = _load_verify({"judge": judge})
    stage = Verify(s)
    try:
        assert stage.verifier("math").judge is not None
        assert stage.verifier("math").judge_key["model"] == "j"
        assert stage.verifier("general").name == "judge"
    finally:
        stage.close()


# --- format rules per source ------------------------------------------------------------------


def _rec(source: str, answer: str, think: str | None, generated: bool = False) -> dict:
    resp = new_response(answer=answer, think=think, source="generate" if generated else source)
    return new_record(source=source, problem=f"Compute {answer}.", category="math", reference_answer="4",
                      responses=[resp])  # fmt: skip


def test_per_source_overrides_only_the_keys_given():
    v = FormatVerifier(
        {"require_think": True, "max_chars": 50, "per_source": {"qwen": {"require_think": False}}}
    )
    assert v.rules_for({"source": "qwen"}).require_think is False
    assert v.rules_for({"source": "qwen"}).max_chars == 50  # inherited from the top level
    assert v.rules_for({"source": "sky"}).require_think is True
    qwen, sky = _rec("qwen", "$\\boxed{4}$", None), _rec("sky", "$\\boxed{4}$", None)
    assert v.verify(qwen, qwen["responses"][0]).passed
    assert v.verify(sky, sky["responses"][0]).reason == "missing_think"
    resp = qwen["responses"][0]
    assert v.cache_key(qwen, resp) != v.cache_key(dict(qwen, source="sky"), resp)


def test_auto_think_rule_fails_generated_responses_only():
    v = FormatVerifier()
    replayed = _rec("qwen", "$\\boxed{4}$", None)
    generated = _rec("qwen", "$\\boxed{4}$", None, generated=True)
    assert v.verify(replayed, replayed["responses"][0]).passed
    assert v.verify(generated, generated["responses"][0]).reason == "missing_think"
    empty = _rec("qwen", "$\\boxed{4}$", "  ")
    assert v.verify(empty, empty["responses"][0]).reason == "missing_think"


def test_stage_counts_format_reasons_and_warns_when_a_rule_removes_a_source():
    records = [_rec("qwen", "$\\boxed{4}$", None) for _ in range(12)]
    records += [_rec("sky", "$\\boxed{4}$", "2+2") for _ in range(12)]
    strict = Verify({"math": {"workers": 1}, "format": {"require_think": True}, "cache": False})
    try:
        out = strict.process([dict(r, responses=[dict(x) for x in r["responses"]]) for r in records])
    finally:
        strict.close()
    assert out.stats["format_failed:missing_think"] == 12
    assert out.stats["format_rule:missing_think@qwen"] == 12 and out.stats["responses@qwen"] == 12
    assert "format_rule:missing_think@sky" not in out.stats
    summary = strict.summary(out.stats)
    assert "format_failed: missing_think 12" in summary
    assert "WARNING: format rule missing_think fails 12 of the 12 responses of source 'qwen'" in summary
    assert "per_source.qwen: {require_think: false}" in summary
    assert "responses without a think part: qwen 12/12" in summary
    # under 90 %: no warning
    assert format_warnings({"format_rule:no_boxed@a": 8, "responses@a": 10}) == []
    assert len(format_warnings({"format_rule:no_boxed@a": 9, "responses@a": 10})) == 1


# --- unverified general responses ------------------------------------------------------------


def _general(n: int = 2) -> dict:
    responses = [new_response(answer=f"Paris is the capital, reason {i}.", think="Recall.", source="chat")
                 for i in range(n)]  # fmt: skip
    return new_record(source="chat", problem="What is the capital of France?", category="chat",
                      responses=responses)  # fmt: skip


def _verify_then_select(settings: dict) -> tuple[dict, object, object]:
    stage = Verify(dict(settings, cache=False))
    try:
        verified = stage.process([_general()])
    finally:
        stage.close()
    return verified.kept[0], verified, Select().process(verified.kept)


def test_general_without_reward_or_judge_is_unverified_and_dropped():
    record, verified, selected = _verify_then_select({})
    resp = record["responses"][0]
    assert resp["verify_score"] is None and resp["passed"] is False
    assert resp["verdicts"][0]["reason"] == "unverified" and resp["verdicts"][0]["verifier"] == "none"
    assert verified.stats["general_unverified"] == 2 and verified.stats.get("general_passed", 0) == 0
    assert "general_unverified 2 (failed" in Verify().summary(verified.stats)
    assert selected.kept == []
    assert [d.reason for d in selected.dropped] == ["unverified", "unverified", "unverified"]
    assert selected.dropped[-1].response_index is None and "none of 2 responses was scored" in selected.dropped[-1].message
    assert "verify.keep_unverified" in selected.dropped[0].message


def test_keep_unverified_keeps_them_unscored_and_counted_apart():
    record, verified, selected = _verify_then_select({"keep_unverified": True})
    assert [r["passed"] for r in record["responses"]] == [None, None]
    assert len(selected.kept) == 1 and selected.stats["unverified_kept"] == 2
    rows = list(to_am(selected.kept[0]))
    assert rows and all(row["messages"][1]["info"]["verify_score"] is None for row in rows)


def test_keep_unverified_still_applies_the_format_rules():
    stage = Verify({"keep_unverified": True, "cache": False})
    rec = _general(1)
    rec["responses"][0]["finish_reason"] = "length"
    try:
        stage.process([rec])
    finally:
        stage.close()
    assert rec["responses"][0]["passed"] is False
    dropped = Select().process([rec]).dropped
    assert dropped[0].reason == "unverified" and "truncated" in dropped[0].message




def test_math_memory_limit_reaches_the_pool_workers():
    """``memory_limit_mb`` is the pool workers' limit (``null`` turns it off), and the
    verifier still answers under it."""
    from reasonmill.records import new_record, new_response
    from reasonmill.verify.math import MathSettings, MathVerifier

    assert MathSettings().memory_limit_mb == 2048
    rec = new_record(source="t", problem="What is 1+1?", reference_answer="2", category="math")
    resp = new_response(answer="$\\boxed{2}$", think="1+1=2")
    with MathVerifier(timeout=30, workers=1, memory_limit_mb=512) as mv:
        assert mv.pool.memory_limit == 512 << 20
        assert mv.verify_many([(rec, resp)])[0].passed
    with MathVerifier(timeout=30, workers=1, memory_limit_mb=None) as mv:
        assert mv.pool.memory_limit is None
