from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = REPO.parent / "shared" / "data"

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not found at {SHARED_DATA}: these tests need ../shared/data beside the repo")
    return SHARED_DATA


def planted_math_edits(
    first: int, min_words: int, keep: int, n_edits: int, seed: int, suffix: str = ""
) -> tuple[list[str], list[str], list[int]]:
    """Real MATH test problems plus near-duplicates of some (one word dropped, "carefully"
    inserted, ``suffix`` appended): (problems, texts = problems + copies, truth index per
    text). Skips when ../shared/data is absent."""
    import json
    import random

    path = SHARED_DATA / "math_test_full" / "math_test_5000.jsonl"
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (needs ../shared/data beside the repo)")
    with open(path, encoding="utf-8") as fh:
        problems = [json.loads(line)["problem"] for line in fh][:first]
    problems = [p for p in problems if len(p.split()) >= min_words][:keep]
    rng = random.Random(seed)
    texts, truth = list(problems), list(range(len(problems)))
    for i in rng.sample(range(len(problems)), n_edits):
        w = problems[i].split(" ")
        del w[rng.randrange(len(w))]
        w.insert(rng.randrange(len(w)), "carefully")
        texts.append(" ".join(w) + suffix)
        truth.append(i)
    return problems, texts, truth
