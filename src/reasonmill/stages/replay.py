"""Replay teacher: responses already present in the input become the problem's responses.

The reference reused about 0.5M existing responses (SPEC §1 item 6). Ingest presets put
them in ``record["responses"]``; this stage labels them, caps how many are kept per
problem, and optionally drops problems that have none (when nothing generates later).
"""

from __future__ import annotations

from reasonmill.stages.base import Stage, StageOutput, StageSettings, stage


class ReplaySettings(StageSettings):
    #: model name for responses that carry none
    model: str | None = None
    #: keep at most this many existing responses per problem (None: all)
    max_responses: int | None = None
    #: drop problems with no existing response (set false when a generate stage follows)
    drop_without_response: bool = True


@stage("replay")
class Replay(Stage):
    Settings = ReplaySettings

    def process(self, records: list[dict], index=None) -> StageOutput:
        out = StageOutput()
        s = self.settings
        replayed = 0
        for r in records:
            responses = r.get("responses") or []
            if s.max_responses is not None:
                for i, resp in enumerate(responses[s.max_responses :], start=s.max_responses):
                    out.drop_response(r, i, resp, "over_max_responses", f"kept the first {s.max_responses} responses")
                responses = responses[: s.max_responses]
            for resp in responses:
                resp["model"] = resp.get("model") or s.model or "replay"
                resp["source"] = resp.get("source") or f"replay:{r.get('source')}"
            r["responses"] = responses
            replayed += len(responses)
            if not responses and s.drop_without_response:
                out.drop(r, "no_existing_response", "no response in the input to replay (add a generate stage)")
            else:
                out.kept.append(r)
        out.stats["responses_replayed"] = replayed
        return out
