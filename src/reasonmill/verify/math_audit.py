"""Reference audit: which reference answers look wrong, from the verdicts of their responses.

Why: the verifier trusts the reference. A reference that does not parse, or that the
responses of several teachers agree against, more often means a wrong reference than wrong
responses (AM-Thinking-v1 repaired references where the teachers' majority agreed on another
answer). This module only *flags*, with the evidence; what to do with a flagged record
(drop it with ledger reason ``reference_suspect``, or mark it) is the caller's policy.

Input: for one record, the math verdicts of its responses (``Verdict.details`` as
:func:`reasonmill.verify.math.check` writes them). Cheap: no parsing, only the strings the
verifier already extracted, compared loosely.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from reasonmill.verify.base import Verdict

#: responses that must agree on one answer, different from the reference, to flag it
MIN_AGREEING = 3
_LOOSE = re.compile(r"\\[,;:! ]|\\left|\\right|~|\$|\s|\\text\{|\}|\{")


@dataclass(frozen=True)
class ReferenceFlag:
    """Why a record's reference is suspect, with the evidence."""

    reason: str  # "reference_unparsed" or "majority_disagrees"
    reference: str
    majority_answer: str | None = None
    agreeing: int = 0
    responses: int = 0
    evidence: dict = field(default_factory=dict)


def _key(answer: str) -> str:
    return _LOOSE.sub("", answer).lower().rstrip(".")


def audit_reference(verdicts: Iterable[Verdict], min_agreeing: int = MIN_AGREEING) -> ReferenceFlag | None:
    """A flag when the reference did not parse, or when at least ``min_agreeing``
    responses that the verifier judged wrong give one and the same answer (and more of
    them than any answer judged right); else None."""
    verdicts = [v for v in verdicts if v.verifier == "math"]
    if not verdicts:
        return None
    reference = str(verdicts[0].details.get("gold") or "")
    if any(v.details.get("gold_unparsed") for v in verdicts):
        return ReferenceFlag("reference_unparsed", reference, responses=len(verdicts))
    wrong = Counter(_key(v.details["pred"]) for v in verdicts if not v.passed and v.details.get("pred"))
    right = sum(v.passed for v in verdicts)
    if not wrong:
        return None
    answer_key, n = wrong.most_common(1)[0]
    if n < min_agreeing or n <= right:
        return None
    shown = next(
        v.details["pred"] for v in verdicts if not v.passed and _key(v.details.get("pred") or "") == answer_key
    )
    evidence = {"passed": right, "answers": dict(wrong.most_common(5))}
    return ReferenceFlag("majority_disagrees", reference, shown, n, len(verdicts), evidence)
