"""Dataset-level boilerplate filter (SPEC §1 item 7): drop responses that share a
20-token n-gram with more than 20 other responses across the whole dataset.

A global stage: ``build`` counts n-gram hashes over every response once and returns the
flagged (record id, response index) pairs with their evidence; ``process`` drops those
responses (and a record left with none, as ``no_response_left``).
"""

from __future__ import annotations

from typing import Iterable, Literal

from reasonmill.stages.base import Stage, StageOutput, StageSettings, stage
from reasonmill.verify.boilerplate import find_boilerplate


class BoilerplateSettings(StageSettings):
    n: int = 20
    max_count: int = 20
    #: which part of a response is compared: the answer (default), the think part, or raw
    field: Literal["answer", "think", "raw"] = "answer"
    #: drop a record whose responses were all flagged
    drop_empty_records: bool = True


@stage("filter.boilerplate")
class BoilerplateFilter(Stage):
    kind = "global"
    Settings = BoilerplateSettings
    build_columns = ("id", "responses")

    def build(self, shards: Iterable[list[dict]]) -> dict[tuple[str, int], dict]:
        keys: list[tuple[str, int]] = []
        texts: list[str] = []
        for records in shards:
            for r in records:
                for i, resp in enumerate(r.get("responses") or []):
                    keys.append((r["id"], i))
                    texts.append(resp.get(self.settings.field) or "")
        result = find_boilerplate(texts, n=self.settings.n, max_count=self.settings.max_count)
        return {keys[i]: result.evidence.get(i, {}) for i in result.flagged}

    def process(self, records: list[dict], index=None) -> StageOutput:
        out = StageOutput()
        index = index or {}
        for r in records:
            kept = []
            for i, resp in enumerate(r.get("responses") or []):
                ev = index.get((r["id"], i))
                if ev is None:
                    kept.append(resp)
                else:
                    out.drop_response(
                        r, i, resp, "boilerplate",
                        f"shares a {self.settings.n}-token n-gram with {ev.get('count')} responses",
                        **ev,
                    )
            if not kept and r.get("responses") and self.settings.drop_empty_records:
                out.drop(r, "no_response_left", "every response was boilerplate")
            else:
                r["responses"] = kept
                out.kept.append(r)
        return out
