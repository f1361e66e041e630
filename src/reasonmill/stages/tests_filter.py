"""Drop test cases that cannot belong to the problem they are attached to.

Scraped code sets sometimes glue the same tests onto every problem (LiveCodeBench's
private-test dump appends 12 identical functional tests to all 279 problems), and a
verifier would then fail every correct solution. A test (input, output, kind) found in
more than ``max_share`` of a source's code problems is set aside in
``meta.dropped_tests``; a problem left with no test is dropped as ``no_tests`` when
``require_tests`` is set. A global stage: it counts tests across the source first.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterable

from reasonmill.stages.base import Stage, StageOutput, StageSettings, stage


class TestsFilterSettings(StageSettings):
    #: a test shared by more than this share of a source's problems is dropped
    max_share: float = 0.2
    #: sources with fewer problems that have tests are left alone
    min_problems: int = 20
    #: drop code problems left without tests
    require_tests: bool = False


def _key(source: str, test: dict) -> str:
    raw = "\x1f".join((source, test.get("kind") or "", test.get("input") or "", test.get("output") or ""))
    return hashlib.blake2b(raw.encode("utf-8"), digest_size=8).hexdigest()


@stage("clean.tests")
class TestsFilter(Stage):
    kind = "global"
    Settings = TestsFilterSettings
    build_columns = ("source", "tests")

    def build(self, shards: Iterable[list[dict]]) -> set[str]:
        per_test: Counter = Counter()  # (source, test key) -> problems holding it
        per_source: Counter = Counter()  # source -> problems with tests
        for records in shards:
            for r in records:
                tests = r.get("tests") or []
                if not tests:
                    continue
                src = r.get("source") or ""
                per_source[src] += 1
                per_test.update({(src, _key(src, t)) for t in tests})
        s = self.settings
        return {
            key
            for (src, key), n in per_test.items()
            if n > 1 and per_source[src] >= s.min_problems and n > s.max_share * per_source[src]
        }

    def process(self, records: list[dict], index: set[str] | None = None) -> StageOutput:
        out = StageOutput()
        shared = index or set()
        set_aside = 0
        for r in records:
            tests = r.get("tests") or []
            keep = [t for t in tests if _key(r.get("source") or "", t) not in shared]
            if len(keep) != len(tests):
                r.setdefault("meta", {})["dropped_tests"] = [t for t in tests if t not in keep]
                set_aside += len(tests) - len(keep)
                r["tests"] = keep
            if self.settings.require_tests and r.get("category") == "code" and not keep:
                out.drop(r, "no_tests", "no test left to verify this code problem", set_aside=len(tests) - len(keep))
            else:
                out.kept.append(r)
        out.stats["tests_set_aside"] = set_aside
        return out
