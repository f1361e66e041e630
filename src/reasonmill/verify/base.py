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


class Verifier(Protocol):
    """One kind of check. ``name`` appears in verdicts and in the ledger."""

    name: ClassVar[str]

    def verify(self, record: dict, response: dict) -> Verdict: ...
