"""The verifier contract: ``(record, response) -> Verdict``.

Verifiers are pure functions of their inputs and picklable, so any worker process can run
them. Timeouts are never enforced with signals inside the verifier: the caller runs it in
a worker that is killed from outside when it overruns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True)
class Verdict:
    score: float  # in [0, 1]
    passed: bool
    reason: str  # short machine-readable code, e.g. "math_equal", "wrong_answer", "timeout"
    details: dict[str, Any] = field(default_factory=dict)
    verifier: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: A verdict that says nothing about the response: the verifier's worker died on it twice
#: (killed from outside, e.g. by the OOM killer). It drops the record for this run but is
#: never cached, so the next run verifies it again.
VERIFIER_CRASHED = "verifier_crashed"


def cacheable(verdict: Verdict) -> bool:
    """Whether a verdict is about the response (worth keeping for the next run)."""
    return verdict.reason != VERIFIER_CRASHED


class Verifier(Protocol):
    """One kind of check. ``name`` appears in verdicts and in the ledger."""

    name: ClassVar[str]

    def verify(self, record: dict, response: dict) -> Verdict: ...
