"""Fenced-block extraction: the linear scan gives the former regex's blocks, in linear time.

The former pattern of ``verify/code.py`` is kept here as the reference: on real texts and
on seeded random fence soup both must give the same ``(tag, body)`` lists; on a looping
model's 160 KB of repeated or unclosed fences the scan must take well under a second
(the regex took 199 s).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from reasonmill.verify.code import CodeVerifier, extract_code
from reasonmill.verify.fences import fenced_blocks

#: the regex that ``verify/code.py`` used until the scan replaced it (the reference)
OLD_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([^\s`]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*\r?$", re.M | re.S)

#: real files with fenced blocks in model outputs, problem statements or prompts
REAL_FILES = [
    "reasoning_traces_skythought/gemma-2-27b-it_olympiadbench.jsonl",
    "reasoning_traces_skythought/sky-t1-math-correct-5k-27b_math500.jsonl",
    "reasoning_traces_skythought/qwen2.5-32b-instruct_still2-sys_math500.json",
    "reasoning_traces_skythought/sky-t1-math-reflection-1.0-32b_amc23.jsonl",
    "model_outputs_qwen_math/math_cot_100_rm_maj_example.jsonl",
    "star1_r1_safety_traces/STAR-1_shared_800.json",
    "livecodebench/qwq_livecodebench_v5_prompts.jsonl",
    "leetcode_rllm/leetcode_test_rllm.json",
    "leetcode_rllm/leetcode_train_rllm.json",
]


def old_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(2), m.group(3)) for m in OLD_FENCE.finditer(text)]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _documents(path: Path) -> Iterator[object]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line)
    else:
        yield json.loads(text)


# --- exact blocks on hand-made cases ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("intro\n```python\nprint(1)\n```\nafter", [("python", "print(1)\n")]),
        ("```\nplain\n```", [("", "plain\n")]),
        ("```py extra words\na\n```\n~~~cpp\nb\n~~~\n", [("py", "a\n"), ("cpp", "b\n")]),
        ("  ``` python \nx\n\t```  \r\ny", [("python", "x\n")]),  # indents, CRLF closing line
        ("````\n```\ninner\n```\n````\n", [("", "```\ninner\n```\n")]),  # longer fence holds a shorter one
        ("````python\nx\n```\n", [("", "x\n")]),  # closed by a shorter run: rest of the run, empty tag
        ("~~~~py\nx\n~~~\n", [("~py", "x\n")]),  # tildes: the leftover tilde joins the tag
        ("```python\nnever closed\n", []),
        ("```python\nx\n```` \n", []),  # a longer run does not close
        ("```\n```", [("", "")]),  # empty body
        ("```", []),  # an opening line needs its newline
        ("```a\n1\n```\n```b\n2\n```", [("a", "1\n"), ("b", "2\n")]),
        ("```a\n```\n```\n", [("a", "")]),  # the closing line never reopens
        ("text ```python\nx\n```\n", []),  # a fence must start its line
        ("```py`thon\nx\n```\n", [("py", "x\n")]),
    ],
)
def test_blocks(text: str, expected: list[tuple[str, str]]) -> None:
    assert fenced_blocks(text) == expected
    assert old_blocks(text) == expected


# --- same blocks as the former regex ------------------------------------------------------

_SOUP = ["```", "````", "`````", "~~~", "~~~~", "``", "~~", "`", "~", "\n", "\n", "\n", " ", "\t", "\r",
         "py", "python", "x", "~py", "\u00a0", "\x0c", "a b", "#"]  # fmt: skip


def test_same_blocks_as_the_regex_on_random_fence_soup() -> None:
    rng = random.Random(20261206)
    differ = []
    for _ in range(20_000):
        text = "".join(rng.choice(_SOUP) for _ in range(rng.randint(0, 40)))
        if fenced_blocks(text) != old_blocks(text):
            differ.append(text)
    assert differ == []


def _real_texts(shared_data: Path) -> Iterator[str]:
    """Every string of the real files (skips the test when one is missing)."""
    for name in REAL_FILES:
        path = shared_data / name
        if not path.exists():
            pytest.skip(f"{path} not found")
        for doc in _documents(path):
            yield from _strings(doc)


def test_same_blocks_as_the_regex_on_real_texts(shared_data: Path) -> None:
    checked = with_blocks = 0
    for text in _real_texts(shared_data):
        if "```" not in text and "~~~" not in text:
            continue
        assert fenced_blocks(text) == old_blocks(text), text[:300]
        checked += 1
        with_blocks += bool(old_blocks(text))
    assert checked > 1000  # 2,000+ texts with fences in these files
    assert with_blocks > 500


def test_extract_code_on_real_texts(shared_data: Path) -> None:
    """The code verifier's choice on every string of the real files (model outputs,
    statements, reference solutions). The counts are those of the former regex-based
    ``extract_code`` on the same files (measured before the change: identical outputs)."""
    counts: Counter = Counter()
    for text in _real_texts(shared_data):
        code, lang, how = extract_code(text)
        counts[how] += 1
        if how == "answer_block":
            assert code in [body for _, body in old_blocks(text)]
    assert counts == {"answer_block": 2397, "no_code_block": 22101, "whole_answer": 4178}


# --- adversarial input: linear time -------------------------------------------------------

ADVERSARIAL = {
    "repeated unclosed openings": "```python\nprint('again')\n" * 7000,
    "repeated long runs": "`" * 40 + "\n" * 1 + ("`" * 39 + "\n") * 4000,
    "alternating lengths": "```python\nx\n````\n~~~~\n" * 7000,
    "one huge run": "`" * 160_000 + "\n" + "```\n" * 10,
    "tilde tags": ("~" * 30 + "py\n~~~\n") * 4500,
    "no newline": "```" * 53_000,
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_fences_are_fast(name: str) -> None:
    text = ADVERSARIAL[name]
    assert len(text) >= 150_000
    t0 = time.perf_counter()
    blocks = fenced_blocks(text)
    code = extract_code(text, text)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, f"{name}: {elapsed:.2f}s"
    if name == "repeated unclosed openings":
        assert blocks == [] and code[2] == "no_code_block"
    if name == "alternating lengths":  # ```` and ~~~~ lines pair up; ```python never closes
        assert len(blocks) == 4666
        assert blocks[:2] == [("", "~~~~\n```python\nx\n"), ("", "```python\nx\n````\n")]


def test_adversarial_matches_the_regex_on_a_small_copy() -> None:
    """The same shapes, small enough for the regex: identical blocks."""
    for name, text in ADVERSARIAL.items():
        small = text[:3000]
        assert fenced_blocks(small) == old_blocks(small), name


def test_whole_answer_detection_is_linear_and_survives_deep_nesting() -> None:
    """Outside fences: a long run of blank lines (the former ``^\\s*`` search was
    quadratic: 3 s at 20,000 lines) and code nested too deep for the parser."""
    blank = "\n" * 160_000 + "x = 1"
    t0 = time.perf_counter()
    assert extract_code(blank) == (None, "python", "no_code_block")
    assert extract_code(blank + "\nimport os") == (blank + "\nimport os", "python", "whole_answer")
    assert time.perf_counter() - t0 < 0.5
    for deep in ("-" * 200_000 + "1", "not " * 100_000 + "x", "x" + "[0]" * 100_000):
        assert extract_code(deep) == (None, "python", "no_code_block")  # refused by the parser, no crash


def test_code_nested_too_deep_is_a_syntax_error_not_a_crash() -> None:
    """The parser's MemoryError/RecursionError on such code is the verdict, found on the
    host before any sandbox starts."""
    record = {"tests": [{"input": "", "output": "1\n", "testtype": "stdin"}]}
    for deep in ("-" * 200_000 + "1", "x" + "[0]" * 100_000):
        verdict = CodeVerifier().verify(record, {"answer": f"```python\nprint({deep})\n```"})
        assert (verdict.passed, verdict.reason) == (False, "syntax_error")
        assert verdict.details["message"].split(":")[0] in ("MemoryError", "RecursionError")
