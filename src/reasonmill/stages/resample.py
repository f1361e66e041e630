"""Resample until pass: the generate → verify loop (issue 6 item 5, SPEC §1 item 6).

Runs after ``verify``. A problem with no passing response gets ``per_round`` more
samples from the teacher (sample indexes continue after its existing ones, so a killed
loop resumes from the request cache), which are verified at once; this repeats for up to
``rounds`` rounds and never past ``max_samples`` responses per problem. Verdicts of the
responses already verified come from the verdict cache, so nothing is verified twice.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from reasonmill.records import is_unverified
from reasonmill.stages.base import Resources, Stage, StageOutput, StageSettings, stage
from reasonmill.stages.generate import Generate, GenerateSettings
from reasonmill.stages.verify import Verify, VerifySettings


class ResampleSettings(StageSettings):
    #: the teacher, as in the generate stage
    generate: GenerateSettings
    #: the verifiers, as in the verify stage
    verify: VerifySettings = Field(default_factory=VerifySettings)
    #: stop asking once a problem holds this many responses
    max_samples: int = Field(8, ge=1)
    #: extra samples per failing problem per round
    per_round: int = Field(2, ge=1)
    rounds: int = Field(3, ge=1)


@stage("resample")
class Resample(Stage):
    Settings = ResampleSettings
    resources = Resources(executor="inline")

    def __init__(self, settings: Any = None, context: Any = None):
        super().__init__(settings, context)
        self.generator = Generate(self.settings.generate, self.context)
        verify = self.settings.verify
        if verify.audit.mode == "drop":  # resample keeps every record: a suspect reference is marked here
            verify = verify.model_copy(update={"audit": verify.audit.model_copy(update={"mode": "mark"})})
        self.verifier = Verify(verify, self.context)

    @classmethod
    def endpoints(cls, settings: ResampleSettings) -> list:
        return Generate.endpoints(settings.generate) + Verify.endpoints(settings.verify)

    def process(self, records: list[dict], index: Any = None) -> StageOutput:
        s = self.settings
        current = {r["id"]: r for r in records}
        asked = 0
        rescued = 0

        def passing(r: dict) -> bool:
            """Passed, or beyond any verifier (unverified: more samples cannot help)."""
            responses = r.get("responses") or []
            unverified = bool(responses) and all(is_unverified(resp) for resp in responses)
            return unverified or any(resp.get("passed") for resp in responses)

        for _ in range(s.rounds):
            extra = {
                rid: min(s.per_round, s.max_samples - len(r.get("responses") or []))
                for rid, r in current.items()
                if not passing(r) and len(r.get("responses") or []) < s.max_samples
            }
            if not extra:
                break
            generated = self.generator.resample([current[rid] for rid in extra], extra).kept
            verified = self.verifier.process(generated).kept
            for r in verified:
                current[r["id"]] = r
            asked += sum(extra.values())
            rescued += sum(1 for r in verified if passing(r))
        out = StageOutput(kept=[current[r["id"]] for r in records])
        out.stats = {"samples_requested": asked, "problems_rescued": rescued}
        return out

    def close(self) -> None:
        self.generator.close()
        self.verifier.close()
