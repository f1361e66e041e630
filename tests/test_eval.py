"""``reasonmill eval`` end to end against a real HTTP server that answers as planned.

The server (tests/eval_server.py) answers each real AIME 2024 / MATH-500 question right,
wrong, without an answer or cut off, sample by sample, so every metric the run reports
can be computed by hand from the plan; the expectations below are written out from the
plans, not derived by the code under test.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from eval_server import EvalServer, plan_from_counts
from process_checks import wait_until

from reasonmill.cli import main
from reasonmill.evaluate.metrics import Sample, majority_correct, pass_at_k

SRC = Path(__file__).resolve().parents[1] / "src"


def rows_of(path: Path, k: int) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh][:k]


def cached_keys(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {k for (k,) in db.execute("SELECT key FROM responses")}
    finally:
        db.close()


def eval_cli(*args: str) -> int:
    return main(["eval", "--model", "planned", *args])


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


# --- metrics on their own --------------------------------------------------------------


def test_pass_at_k_is_the_codex_estimator():
    for n in (1, 4, 8, 16):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
    assert pass_at_k(16, 1, 1) == pytest.approx(1 / 16)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 8)


def test_majority_vote_groups_right_answers_and_breaks_ties_by_first_sample():
    def s(passed: bool, answer: str | None) -> Sample:
        return Sample(passed, answer)

    assert majority_correct([s(True, "1/2"), s(True, "0.5"), s(False, "3"), s(False, "3")]) is True  # R first in a tie
    assert majority_correct([s(False, "3"), s(True, "1/2"), s(True, "0.5"), s(False, "3")]) is False
    assert majority_correct([s(False, "3"), s(False, None), s(False, None), s(True, "2")]) is False
    assert majority_correct([s(False, None), s(False, None), s(True, "2")]) is True  # no answer never votes
    assert majority_correct([s(False, None)]) is False
    # wrong answers that differ only in LaTeX spacing or \dfrac vote together
    assert majority_correct([s(True, "0.5"), s(False, "\\dfrac{1}{3}"), s(False, "\\frac {1}{3}.")]) is False


# --- end to end ------------------------------------------------------------------------

AIME_N = 8
#: per AIME item: right samples, and what the others do
AIME_PLAN = [(0, "W"), (1, "W"), (3, "W"), (4, "W"), (5, "W"), (8, "W"), (0, "N"), (1, "N"), (2, "T"), (7, "T")]
#: maj@8 by hand: W tails all give the same wrong answer (R first wins a 4-4 tie); N/T tails never vote
AIME_MAJ = [0, 0, 0, 1, 1, 1, 0, 1, 1, 1]
#: MATH-500, n = 4: explicit outcome lists and the majority by hand
MATH_PLAN = [
    ["R", "R", "R", "R"],
    ["W:5", "R", "R", "W:5"],  # 2-2 tie, the wrong answer came first
    ["R", "W:1", "W:2", "W:3"],  # four groups of one: the first (right) wins
    ["W:7", "W:7", "R", "N"],
    ["N", "N", "N", "R"],
    ["T", "T", "R", "R"],
    ["W:9", "W:8", "W:9", "T"],
    ["R", "N", "T", "W:11"],
    ["R", "R", "W:4", "N"],
    ["W:2", "W:2", "W:2", "R"],
]
MATH_MAJ = [1, 0, 1, 0, 1, 1, 0, 1, 1, 0]


def planned_server(data: Path, delay: float = 0.0) -> EvalServer:
    plans = {}
    for row, (c, tail) in zip(rows_of(data / "aime24/aime24_test.jsonl", 10), AIME_PLAN):
        plans[row["problem"]] = (str(row["answer"]), plan_from_counts(AIME_N, c, tail=tail))
    for row, outcomes in zip(rows_of(data / "math500/math500_test.jsonl", 10), MATH_PLAN):
        plans[row["problem"]] = (row["answer"], outcomes)
    return EvalServer(plans, delay=delay)


def bench_args(data: Path, out: Path, url: str) -> list[str]:
    return ["--base-url", url, "--out", str(out), "--limit", "10",
            "--benchmarks", f"aime24={data}/aime24/aime24_test.jsonl,math500={data}/math500/math500_test.jsonl"]


def expected_aime() -> dict:
    rates = [c / AIME_N for c, _ in AIME_PLAN]
    no_answer = sum(AIME_N - c for c, tail in AIME_PLAN if tail in "NT")
    truncated = sum(AIME_N - c for c, tail in AIME_PLAN if tail == "T")
    return {
        "pass@1": sum(rates) / 10,
        "pass@1_stderr": statistics.stdev(rates) / math.sqrt(10),
        "pass@k": {str(k): sum(1 - math.comb(AIME_N - c, k) / math.comb(AIME_N, k) for c, _ in AIME_PLAN) / 10
                   for k in (1, 2, 4, 8)},
        "maj@n": sum(AIME_MAJ) / 10,
        "no_answer_rate": no_answer / 80,
        "truncation_rate": truncated / 80,
        "mean_completion_tokens": 100 + 3.5,
    }


def expected_math() -> dict:
    cs = [o.count("R") for o in MATH_PLAN]
    flat = [x for o in MATH_PLAN for x in o]
    return {
        "pass@1": sum(cs) / 40,
        "pass@1_stderr": statistics.stdev([c / 4 for c in cs]) / math.sqrt(10),
        "pass@k": {str(k): sum(1 - math.comb(4 - c, k) / math.comb(4, k) for c in cs) / 10 for k in (1, 2, 4)},
        "maj@n": sum(MATH_MAJ) / 10,
        "no_answer_rate": sum(x in ("N", "T") for x in flat) / 40,
        "truncation_rate": flat.count("T") / 40,
        "mean_completion_tokens": 100 + 1.5,
    }


def check_metrics(got: dict, want: dict) -> None:
    for key, value in want.items():
        if key == "pass@k":
            assert got[key] == pytest.approx(value, abs=1e-12), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key
    lo, hi = got["pass@1_ci95"]
    assert lo <= got["pass@1"] <= hi and lo < hi


def test_eval_metrics_equal_the_planted_rates_and_a_rerun_sends_nothing(shared_data, tmp_path):
    out = tmp_path / "run"
    with planned_server(shared_data) as srv:
        assert eval_cli(*bench_args(shared_data, out, srv.url), "--n", "8") == 0
        first = results(out)
        assert srv.requests == 10 * 8 + 10 * 8
    aime, math500 = first["benchmarks"]["aime24"], first["benchmarks"]["math500"]
    assert aime["items"] == 10 and aime["n"] == 8 and aime["samples"] == 80
    check_metrics(aime, expected_aime())
    assert math500["n"] == 8  # MATH_PLAN repeats every 4 samples: the rates are the n = 4 ones
    for key in ("pass@1", "maj@n", "no_answer_rate", "truncation_rate"):
        assert math500[key] == pytest.approx(expected_math()[key], abs=1e-12), key

    # the run line: each benchmark counts once
    assert first["run"]["pass@1"] == pytest.approx((aime["pass@1"] + math500["pass@1"]) / 2)

    # a second run of the same command pays for nothing and reports the same numbers
    with planned_server(shared_data) as srv:
        assert eval_cli(*bench_args(shared_data, out, srv.url), "--n", "8") == 0
        assert srv.requests == 0
    again = results(out)
    assert again["benchmarks"] == first["benchmarks"] and again["run"] == first["run"]
    assert again["accounting"]["requests_sent"] == 0 and again["accounting"]["cache_hits"] == 160


def test_eval_default_protocol_samples_and_files(shared_data, tmp_path):
    out = tmp_path / "run"
    with planned_server(shared_data) as srv:
        assert eval_cli(*bench_args(shared_data, out, srv.url)) == 0
        assert srv.requests == 10 * 16 + 10 * 4  # AIME 16 samples, MATH-500 4
    res = results(out)
    math500 = res["benchmarks"]["math500"]
    check_metrics(math500, expected_math())
    assert res["benchmarks"]["aime24"]["pass@1"] == pytest.approx(expected_aime()["pass@1"])  # 8-cycle plan, n=16
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 200
    second = [r for r in samples if r["item_id"] == "test/intermediate_algebra/1994.json"]
    assert [(r["sample_index"], r["answer"], r["passed"]) for r in second] == [
        (0, "5", False), (1, "p - q", True), (2, "p - q", True), (3, "5", False)]
    assert second[0]["reason"] == "math_not_equal" and second[0]["finish_reason"] == "stop"
    assert second[0]["tokens"] == 100 and second[3]["tokens"] == 103
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sampling"] == {"temperature": 0.6, "top_p": 0.95, "max_tokens": 32768}
    assert manifest["benchmarks"]["aime24"]["n"] == 16 and manifest["benchmarks"]["math500"]["n"] == 4
    assert len(manifest["benchmarks"]["aime24"]["content_hash"]) == 64
    assert manifest["benchmarks"]["aime24"]["source"]["file_sha256"]
    assert manifest["endpoint"] == srv.url and manifest["system_prompt"] is None
    assert manifest["reasonmill_version"]


def test_kill_9_mid_eval_then_resume_asks_each_sample_once(shared_data, tmp_path):
    out, ref = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with planned_server(shared_data, delay=0.02) as srv:
        args = [sys.executable, "-m", "reasonmill.cli", "eval", "--model", "planned", "--concurrency", "2",
                *bench_args(shared_data, out, srv.url), "--n", "8"]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_until(lambda: srv.requests >= 60, timeout=60)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        before = srv.requests
        committed = cached_keys(out / "llm_cache.sqlite")
        assert 0 < len(committed) < 160 and not (out / "results.json").exists()
        assert eval_cli(*bench_args(shared_data, out, srv.url), "--n", "8") == 0
        keys = [r["key"] for r in srv.log]
        # a sample committed before the kill is never asked again; only those in flight at
        # the kill (at most --concurrency) are
        assert not committed & {r["key"] for r in srv.log[before:]}
        assert len(set(keys)) == 160 and len(keys) - 160 <= 2
    with planned_server(shared_data) as srv:
        assert eval_cli(*bench_args(shared_data, ref, srv.url), "--n", "8") == 0
    assert results(out)["benchmarks"] == results(ref)["benchmarks"]
    killed = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    whole = [json.loads(x) for x in (ref / "samples.jsonl").read_text().splitlines()]
    assert [(r["item_id"], r["sample_index"], r["passed"], r["answer"]) for r in killed] == \
           [(r["item_id"], r["sample_index"], r["passed"], r["answer"]) for r in whole]


def test_compare_two_runs_reports_the_paired_difference(shared_data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with planned_server(shared_data) as srv:
        assert eval_cli(*bench_args(shared_data, a, srv.url), "--n", "8") == 0
        # B: every AIME item gains 2 right samples (capped at 8)
        for row, (c, tail) in zip(rows_of(shared_data / "aime24/aime24_test.jsonl", 10), AIME_PLAN):
            srv.plans[row["problem"]] = (str(row["answer"]), plan_from_counts(AIME_N, min(8, c + 2), tail=tail))
        assert main(["eval", "--model", "planned-b", *bench_args(shared_data, b, srv.url), "--n", "8"]) == 0
    from reasonmill.evaluate.compare import compare

    cmp = compare(a, b)
    gains = [min(8, c + 2) - c for c, _ in AIME_PLAN]
    aime = cmp["benchmarks"]["aime24"]
    assert aime["paired_items"] == 10
    assert aime["diff"] == pytest.approx(sum(gains) / 80)
    lo, hi = aime["diff_ci95"]
    assert 0 < lo <= aime["diff"] <= hi and aime["significant"]
    assert cmp["benchmarks"]["math500"]["diff"] == 0 and cmp["benchmarks"]["math500"]["diff_ci95"] == [0, 0]
    assert main(["eval", "--compare", str(a), str(b)]) == 0


def test_custom_benchmark_with_choices_uses_the_choice_verifier(tmp_path):
    rows = [{"id": f"q{i}", "problem": f"Which planet is number {i}?", "choices": ["Mercury", "Venus", "Earth", "Mars"],
             "answer": "ABCD"[i % 4]} for i in range(4)]
    path = tmp_path / "planets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plans = {r["problem"]: (r["choices"]["ABCD".index(r["answer"])], ["R", "N"] if i < 2 else ["N", "N"])
             for i, r in enumerate(rows)}
    out = tmp_path / "run"
    with EvalServer(plans) as srv:
        assert eval_cli("--base-url", srv.url, "--out", str(out), "--benchmarks", f"planets={path}", "--n", "2") == 0
    m = results(out)["benchmarks"]["planets"]
    assert m["pass@1"] == pytest.approx(0.25) and m["pass@k"]["2"] == pytest.approx(0.5) and m["maj@n"] == 0.5
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["verifier"] for s in samples} == {"choice"}
    assert [s["answer"] for s in samples if s["passed"]] == ["A", "B"]


def test_custom_benchmark_with_other_field_names_and_repeated_ids(tmp_path):
    rows = [{"id": 1, "question": "What is 6 times 7?", "final_answer": 42},
            {"id": 1, "question": "What is 2 to the 10th power?", "final_answer": "1024"},
            {"question": "Simplify 2/4.", "final_answer": "\\frac{1}{2}"}]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plans = {r["question"]: (str(r["final_answer"]), ["R", "R", "W:3"] if i != 1 else ["W:3", "R", "W:3"])
             for i, r in enumerate(rows)}
    out = tmp_path / "run"
    with EvalServer(plans) as srv:
        assert eval_cli("--base-url", srv.url, "--out", str(out), "--benchmarks", f"mixed={path}", "--n", "3") == 0
    m = results(out)["benchmarks"]["mixed"]
    assert m["items"] == 3 and m["pass@1"] == pytest.approx((2 + 1 + 2) / 9) and m["maj@n"] == pytest.approx(2 / 3)
    ids = {json.loads(x)["item_id"] for x in (out / "samples.jsonl").read_text().splitlines()}
    assert ids == {"1", "1~2", "mixed#2"}


def test_bad_benchmark_is_a_settings_error(tmp_path):
    assert eval_cli("--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path), "--benchmarks",
                    f"x={tmp_path}/missing.jsonl") == 2
    easy = tmp_path / "easy.jsonl"
    easy.write_text(json.dumps({"problem": "What is 1 + 1?", "answer": "2"}) + "\n")
    assert eval_cli("--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path), "--benchmarks",
                    f"x={easy},x={easy}") == 2


def test_gpqa_choices_are_shuffled_by_seed_and_scored_by_letter(shared_data, tmp_path):
    from reasonmill.benchmarks.registry import load_benchmark
    from reasonmill.evaluate.items import load_eval_benchmark

    zip_path = shared_data / "gpqa_diamond" / "gpqa_diamond.zip"
    rows = load_benchmark({"name": "gpqa_diamond", "path": str(zip_path)}, keep_row=True)[:12]
    # the server knows the right option's text only: it must find the letter in the prompt
    plans = {r["text"]: (str(r["row"]["Correct Answer"]).strip(), ["R", "R", "N", "W:Z"] if i % 2 else ["N"] * 4)
             for i, r in enumerate(rows)}
    out = tmp_path / "run"
    with EvalServer(plans) as srv:
        assert eval_cli("--base-url", srv.url, "--out", str(out), "--limit", "12",
                        "--benchmarks", f"gpqa_diamond={zip_path}") == 0
        assert srv.requests == 12 * 4
    m = results(out)["benchmarks"]["gpqa_diamond"]
    assert m["n"] == 4 and m["pass@1"] == pytest.approx(0.25) and m["maj@n"] == pytest.approx(0.5)
    assert m["no_answer_rate"] == pytest.approx((6 * 4 + 6 * 2) / 48)  # "Z" is no option: no choice found
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    right = [s["answer"] for s in samples if s["passed"]]
    assert len(right) == 12 and len(set(right)) > 1  # the right answer is not always "A"

    def letters(seed: int) -> list[str]:
        b = load_eval_benchmark(f"gpqa_diamond={zip_path}", seed=seed, limit=12)
        return [it.reference for it in b.items]

    assert letters(0) == letters(0) and letters(0) != letters(1)
    assert [s["answer"] for s in samples if s["passed"]][::2] == letters(0)[1::2]
    b0 = load_eval_benchmark(f"gpqa_diamond={zip_path}", seed=0, limit=12)
    for item, row in zip(b0.items, rows):
        assert item.choices[item.reference] == str(row["row"]["Correct Answer"]).strip()
        assert sorted(item.choices.values()) == sorted(
            str(row["row"][k]).strip() for k in ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                                                  "Incorrect Answer 3"))


LEAP = "```python\nY = int(input())\nprint(366 if (Y % 4 == 0 and Y % 100 != 0) or Y % 400 == 0 else 365)\n```"
SECOND = ("```python\nn = int(input())\na = list(map(int, input().split()))\n"
          "print(a.index(sorted(a)[-2]) + 1)\n```")
BUGGY = "```python\nprint(1)\n```"


def test_livecodebench_date_window_and_sandboxed_tests(shared_data, tmp_path):
    lcb = shared_data / "livecodebench"
    problems = json.loads((lcb / "lcb_test_2408-2501_with_private_tests.json").read_text())[:20]
    meta = rows_of(lcb / "qwq_livecodebench_v5_prompts.jsonl", 20)
    assert all(p["problem"][:200] in m["prompt"] for p, m in zip(problems, meta))  # the two files share the order
    joined = tmp_path / "lcb.jsonl"
    joined.write_text("".join(json.dumps({**p, "question_id": m["question_id"], "contest_date": m["contest_date"]}) + "\n"
                              for p, m in zip(problems, meta)))
    by_id = {m["question_id"]: p["problem"] for p, m in zip(problems, meta)}
    plans = {by_id["abc365_a"]: (LEAP, ["R", "R"]), by_id["abc365_b"]: (SECOND, ["R", "W"]),
             by_id["abc365_c"]: (BUGGY, ["R", "R"])}
    out = tmp_path / "run"
    with EvalServer(plans) as srv:
        assert eval_cli("--base-url", srv.url, "--out", str(out), "--n", "2", "--benchmarks", f"livecodebench={joined}",
                        "--lcb-window", "2024-08-03:2024-08-03") == 0
    in_window = sum(m["contest_date"].startswith("2024-08-03") for m in meta)
    m = results(out)["benchmarks"]["livecodebench"]
    assert m["items"] == in_window == 10
    assert m["pass@1"] == pytest.approx((1 + 0.5) / 10) and m["pass@k"]["2"] == pytest.approx(2 / 10)
    samples = {(s["item_id"], s["sample_index"]): s for s in
               (json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines())}
    ok = samples[("abc365_a", 0)]
    assert ok["passed"] and ok["reason"] == "all_passed" and ok["details"]["n_tests"] == ok["details"]["n_available"] == 4  # every stdin test ran
    assert samples[("abc365_c", 0)]["reason"] == "tests_failed" and samples[("abc365_b", 1)]["reason"] == "no_code_block"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lcb_window"] == ["2024-08-03", "2024-08-03"]


def test_training_data_cross_check_reports_the_leaked_items_before_the_scores(shared_data, tmp_path, capsys):
    aime = rows_of(shared_data / "aime24/aime24_test.jsonl", 10)
    train = json.loads((shared_data / "math_train/math_train_rllm.json").read_text())[:40]
    leaked = [aime[1], aime[4]]
    edited = dict(aime[7], problem=aime[7]["problem"].replace("Find", "Compute", 1))
    rows = [{"problem": r["problem"], "answer": str(r["answer"])} for r in train] + \
           [{"problem": r["problem"], "answer": str(r["answer"])} for r in (*leaked, edited)]
    export = tmp_path / "export" / "train.jsonl"
    export.parent.mkdir()
    export.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    plans = {r["problem"]: (str(r["answer"]), ["R"]) for r in aime}
    with EvalServer(plans) as srv:
        assert eval_cli("--base-url", srv.url, "--out", str(out), "--limit", "10", "--n", "1",
                        "--benchmarks", f"aime24={shared_data}/aime24/aime24_test.jsonl",
                        "--training-data", str(export.parent)) == 0
    report = results(out)["contamination"]
    assert report["training_records"] == 43
    assert report["contaminated_items"] == {"aime24": 3}
    assert [e["item_id"] for e in report["items"]] == sorted(str(r["id"]) for r in (*leaked, edited))
    assert all(e["evidence"][0]["layer"] in ("exact", "ngram", "embedding") for e in report["items"])
    err = capsys.readouterr()
    assert "3 items of aime24 appear in the training data" in err.err


def test_responses_rescore_skythought_and_qwen_outputs_without_an_endpoint(shared_data, tmp_path):
    sky = shared_data / "reasoning_traces_skythought" / "sky-t1-math-correct-5k-14b_aime24.jsonl"
    out = tmp_path / "sky"
    assert main(["eval", "--responses", str(sky), "--out", str(out)]) == 0
    m = results(out)["benchmarks"]["sky-t1-math-correct-5k-14b_aime24"]
    # SkyThought published acc 20.0 for this run (its *_metrics.json); the file's score fields agree
    assert m["items"] == 30 and m["n"] == 1 and m["pass@1"] == pytest.approx(0.2)
    assert m["upstream"] == {"labelled_samples": 30, "upstream_pass@1": pytest.approx(0.2), "disagreements": 0,
                             "we_pass_they_fail": 0, "we_fail_they_pass": 0}

    qwen = shared_data / "model_outputs_qwen_math" / "math_cot_100_rm_maj_example.jsonl"
    rows = rows_of(qwen, 100)
    out = tmp_path / "qwen"
    assert main(["eval", "--responses", str(qwen), "--out", str(out)]) == 0
    m = results(out)["benchmarks"]["math_cot_100_rm_maj_example"]
    assert m["items"] == 100 and m["n"] == 8 and set(m["pass@k"]) == {"1", "2", "4", "8"}
    upstream = sum(sum(r["score"]) for r in rows) / 800
    assert m["upstream"]["upstream_pass@1"] == pytest.approx(upstream)
    assert abs(m["pass@1"] - upstream) <= m["upstream"]["disagreements"] / 800
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert sum(s["disagreement"] for s in samples) == m["upstream"]["disagreements"]


def test_endpoint_down_stops_with_exit_1_and_a_resume_hint(tmp_path, capsys):
    from process_checks import free_port

    easy = tmp_path / "easy.jsonl"
    easy.write_text(json.dumps({"problem": "What is 1 + 1?", "answer": "2"}) + "\n")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"model: m\nbase_url: http://127.0.0.1:{free_port()}/v1\nbenchmarks: ['easy={easy}']\n"
                   f"max_retries: 0\nn: 1\nout: {tmp_path / 'run'}\n")
    assert main(["eval", "--config", str(cfg)]) == 1
    assert "run the same command again to resume" in capsys.readouterr().err


def test_livecodebench_hub_rows_decode_private_tests_and_refuse_code():
    import base64
    import pickle
    import zlib

    from reasonmill.evaluate.items import lcb_row

    private = [{"input": "3\n", "output": "6\n", "testtype": "stdin"}]
    packed = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(private)))).decode()
    row = {"question_content": "Double it.", "starter_code": "", "metadata": "{}",
           "public_test_cases": json.dumps([{"input": "1\n", "output": "2\n", "testtype": "stdin"}]),
           "private_test_cases": packed}
    out = lcb_row(row)
    assert out["problem"] == "Double it." and [t["input"] for t in out["tests"]] == ["1\n", "3\n"]

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = dict(row, private_test_cases=base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode())
    with pytest.raises(pickle.UnpicklingError):
        lcb_row(bad)


@pytest.mark.parametrize("rel", ["omni_math_500/omni_math_num_500.jsonl", "olymmath/OlymMATH-ZH-EASY.jsonl"])
def test_random_planted_rates_on_other_sets_are_recovered_exactly(shared_data, tmp_path, rel):
    """Sets the harness has no defaults for, planted with seeded random outcomes."""
    from collections import Counter
    import random

    rng = random.Random(7)
    n, k_items = 6, 25
    rows = rows_of(shared_data / rel, k_items)
    plans, votes = {}, []
    for row in rows:
        outcomes = [rng.choice(["R", "R", "W:1001", "W:1002", "N", "T"]) for _ in range(n)]
        plans[row["problem"]] = (str(row["answer"]), outcomes)
        counted = Counter(o for o in outcomes if o not in ("N", "T"))
        votes.append(bool(counted) and counted.most_common(1)[0][0] == "R")
    out = tmp_path / "run"
    with EvalServer(plans) as srv:
        assert eval_cli("--base-url", srv.url, "--out", str(out), "--n", str(n), "--benchmarks", f"planted={shared_data / rel}",
                        "--limit", str(k_items)) == 0
    m = results(out)["benchmarks"]["planted"]
    outcomes = [o for _, o in plans.values()]
    assert m["pass@1"] == pytest.approx(sum(o.count("R") for o in outcomes) / (n * k_items), abs=1e-12)
    assert m["maj@n"] == pytest.approx(sum(votes) / k_items, abs=1e-12)
    assert m["no_answer_rate"] == pytest.approx(sum(o.count("N") + o.count("T") for o in outcomes) / (n * k_items))
