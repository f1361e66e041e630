"""Multiple-choice extraction, checked on GPQA-Diamond.

GPQA's authors ask that its questions never appear in plain text online, so the items
are read from the encrypted zip in memory only: nothing is written to disk, and failure
messages name item ids and answer styles, never question or option text.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest

from reasonmill.records import new_record, new_response
from reasonmill.verify.choice import (
    ChoiceVerifier,
    extract_choice,
    mc_to_fill_in,
    parse_choices,
    reference_letter,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GPQA_ZIP = DATA / "gpqa_diamond" / "gpqa_diamond.zip"
GPQA_PASSWORD = b"deserted-untie-orchid"  # the password GPQA publishes for its own zip


def _gpqa() -> tuple[list[dict], list[dict]]:
    if not GPQA_ZIP.exists():
        pytest.skip(f"GPQA-Diamond zip not found at {GPQA_ZIP}; see ../shared/data/SOURCES.md")
    with zipfile.ZipFile(GPQA_ZIP) as z:
        diamond = json.loads(z.read("gpqa_diamond/gpqa_diamond_manusearch.json", pwd=GPQA_PASSWORD))
        raw = z.read("gpqa_diamond/gpqa_diamond_limo_mc.jsonl", pwd=GPQA_PASSWORD).decode("utf-8")
    # split on "\n" only: the texts contain U+2028, which str.splitlines would split on
    limo = [json.loads(line) for line in raw.split("\n") if line.strip()]
    return diamond, limo


# --- answer styles, as reasoning models write them -----------------------------------

PROSE = (
    "A careful look at each option is needed. A reaction like this one is A-typical, and "
    "a quick estimate gives a value near the middle.\n\n"
)


def styles(letter: str, text: str) -> dict[str, str]:
    return {
        "answer_paren": f"{PROSE}Answer: ({letter})",
        "bold": f"{PROSE}**{letter}**",
        "the_answer_is": f"{PROSE}So the answer is {letter}",
        "boxed": f"{PROSE}The final answer is $\\boxed{{{letter}}}$.",
        "boxed_text": f"{PROSE}\\[\\boxed{{\\text{{({letter})}}}}\\]",
        "paren_text_last_line": f"{PROSE}The right option is therefore:\n\n({letter}) {text}",
        "final_answer_colon": f"{PROSE}Final answer: {letter}",
        "letter_dot_alone": f"{PROSE}\n{letter}.",
        "correct_is_bold_paren": f"{PROSE}The correct answer is **({letter})**.",
        "r1_summary": f"**Step 1.** A first check.\n\n**Answer:** {letter}) {text}",
        "answer_text_only": f"{PROSE}Answer: {text}",
        "go_with": f"{PROSE}After weighing everything, I'll go with {letter}.",
        "option_is_correct": f"{PROSE}Option {letter} is correct.",
        "chinese": f"经过分析，答案：{letter}",
        "final_answer_header_boxed": f"{PROSE}**Final Answer**\n\\boxed{{{letter}}}",
        "discuss_then_answer": (
            "(A) fails the symmetry test.\n(B) is too large.\n(C) ignores the solvent.\n"
            f"(D) is close.\n\nTherefore the answer is ({letter})."
        ),
    }


def test_gpqa_extraction_accuracy_over_answer_styles():
    diamond, _ = _gpqa()
    total, wrong = 0, []
    for item in diamond:
        parsed = parse_choices(item["Question"])
        letter = item["Correct Choice"]
        options = parsed.options if parsed else None
        text = options[letter] if options and letter in options else item["Correct Answer"]
        for style, response in styles(letter, text).items():
            got = extract_choice(response, options)
            total += 1
            if got != letter:
                wrong.append((item["id"], style, got, letter))
    accuracy = 1 - len(wrong) / total
    print(f"GPQA-Diamond choice extraction: {total - len(wrong)}/{total} = {accuracy:.4f}")
    assert total == 198 * 16
    assert accuracy >= 0.995, wrong[:20]


def test_gpqa_no_false_hits_in_prose_without_an_answer():
    diamond, _ = _gpqa()
    hits = []
    for item in diamond:
        options = (parse_choices(item["Question"]) or None) and parse_choices(item["Question"]).options
        for response in (
            PROSE,
            PROSE + "A final decision needs more data.",
            "I cannot decide between the options. A longer analysis would be needed.",
        ):
            got = extract_choice(response, options)
            if got is not None:
                hits.append((item["id"], got))
    assert hits == []


def test_gpqa_verifier_end_to_end_and_wrong_letters_fail():
    diamond, _ = _gpqa()
    verifier = pickle.loads(pickle.dumps(ChoiceVerifier()))
    passed = failed_wrong = 0
    for item in diamond:
        rec = new_record(source="gpqa", problem=item["Question"], original_id=item["id"],
                         category="science", reference_answer=item["Correct Choice"])
        good = new_response(f"<think>\nA or B? Maybe (A).\n</think>\nThe answer is ({item['Correct Choice']}).")
        wrong_letter = "ABCD"[("ABCD".index(item["Correct Choice"]) + 1) % 4]
        bad = new_response(f"<think>\nThe answer is ({item['Correct Choice']}).\n</think>\nAnswer: {wrong_letter}")
        v_good, v_bad = verifier.verify(rec, good), verifier.verify(rec, bad)
        passed += v_good.passed and v_good.reason == "choice_correct" and v_good.verifier == "choice"
        failed_wrong += (not v_bad.passed) and v_bad.reason == "wrong_choice"
    assert passed == 198
    # the think part names the right letter, but only the answer part counts
    assert failed_wrong == 198


def test_gpqa_reference_given_as_text_is_mapped_through_choices():
    diamond, _ = _gpqa()
    ok = 0
    consistent = 0
    for item in diamond:
        parsed = parse_choices(item["Question"])
        if parsed is None or parsed.options.get(item["Correct Choice"], "").strip() != item["Correct Answer"].strip():
            continue
        consistent += 1
        choices = [parsed.options[k] for k in sorted(parsed.options)]
        rec = new_record(source="gpqa", problem=item["Question"], original_id=item["id"], category="science",
                         reference_answer=item["Correct Answer"], meta={"choices": choices})
        v = ChoiceVerifier().verify(rec, new_response(f"Answer: **{item['Correct Choice']}**"))
        ok += v.passed
    assert consistent >= 190  # 195 of 198 items list the key text verbatim after its marker
    assert ok >= consistent - 2  # an option text may repeat in another option


def test_gpqa_limo_format_parses_and_rewrites_to_fill_in():
    diamond, limo = _gpqa()
    parsed_ok = [r["id"] for r in limo if (p := parse_choices(r["question"])) and sorted(p.options) == list("ABCD")]
    assert len(parsed_ok) >= 197
    rewritten = bad = 0
    for item in diamond:
        out = mc_to_fill_in(item["Question"], None, item["Correct Choice"])
        if out is None:
            continue
        rewritten += 1
        problem, answer = out
        # the options are gone from the problem, and the answer is the key's text
        still_listed = sum(f"({k})" in problem for k in "ABCD")
        if still_listed >= 3 or answer.strip() != item["Correct Answer"].strip():
            bad += 1
    print(f"GPQA-Diamond mc_to_fill_in: {rewritten}/198 rewritten, {bad} inconsistent")
    assert rewritten >= 180
    assert bad <= 3


# --- small synthetic cases that read like the feature's documentation ------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Answer: (C)", "C"),
        ("**C**", "C"),
        ("the answer is C", "C"),
        ("\\boxed{C}", "C"),
        ("Let me summarise.\n(C) 42", "C"),
        ("Final answer: C", "C"),
        ("C.", "C"),
        ("答案：B", "B"),
        ("Option B is correct.", "B"),
        ("(C) is correct, while option (A) is not.", "C"),
        # the word "A" in prose is not an answer
        ("A careful analysis is needed. A bit more work remains.", None),
        ("The answer is A bit complicated to state", None),
        ("the answer is a.", None),
        ("", None),
    ],
)
def test_extract_choice_styles(text, expected):
    assert extract_choice(text, {"A": "7", "B": "12", "C": "42", "D": "none"}) == expected


def test_letters_outside_the_option_range_are_ignored():
    options = {"A": "1", "B": "2", "C": "3", "D": "4"}
    assert extract_choice("I. Introduction\n\nAnswer: (B)", options) == "B"
    assert extract_choice("Final answer: I", options) is None
    assert extract_choice("Final answer: I") == "I"  # A-J when no options are known


def test_answer_stated_as_option_text():
    options = {"A": "$3.5\\ \\text{eV}$", "B": "2 eV"}
    assert extract_choice("The answer is 3.5 eV.", options) == "A"


def test_reference_letter_forms():
    opts = {"A": "red", "B": "blue"}
    assert [reference_letter(r, opts) for r in ("B", "(b)", "B.", "blue", "green", None)] == [
        "B", "B", "B", "B", None, None,
    ]


def test_verifier_reasons():
    rec = new_record(source="t", problem="Which?\n(A) red\n(B) blue\n(C) green", reference_answer="C")
    v = ChoiceVerifier()
    assert v.verify(rec, new_response("<think>x</think>\nI think so.")).reason == "no_choice_found"
    assert v.verify(rec, new_response("<think>x</think>\nAnswer: green")).reason == "choice_correct"
    no_ref = dict(rec, reference_answer=None)
    assert v.verify(no_ref, new_response("Answer: C")).reason == "no_reference"


def test_mc_to_fill_in_synthetic():
    problem = "What colour is the sky on a clear day?\n(A) red\n(B) blue\n(C) green\n(D) All of the above"
    assert mc_to_fill_in(problem, None, "B") == (
        "What colour is the sky on a clear day?\n\nGive the answer itself, not an option letter.",
        "blue",
    )
    assert mc_to_fill_in(problem, None, "D") is None  # needs the other options
    assert mc_to_fill_in("No options here.", None, "A") is None
    assert mc_to_fill_in("Pick one.", ["4", "5"], "5")[1] == "5"
    inline = "Compute 2+2. (A) 3 (B) 4 (C) 5 (D) 6"
    assert mc_to_fill_in(inline, None, "(B)") == ("Compute 2+2.\n\nGive the answer itself, not an option letter.", "4")


def test_cache_key_follows_the_answer_not_the_think():
    rec = new_record(source="t", problem="Which?\n(A) red\n(B) blue", reference_answer="B")
    v = ChoiceVerifier()
    a = new_response("<think>maybe A</think>\nAnswer: B")
    assert v.cache_key(rec, a) == v.cache_key(rec, dict(a, think="maybe B"))
    assert v.cache_key(rec, a) != v.cache_key(rec, dict(a, answer="Answer: A"))
    assert v.cache_key(rec, a) != v.cache_key(dict(rec, reference_answer="A"), a)
