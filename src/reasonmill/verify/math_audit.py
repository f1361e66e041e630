"""Reference audit: which reference answers look wrong, from the verdicts of their responses.

Why: the verifier trusts the reference. A reference that does not parse, or that the
responses of several teachers agree against, more often means a wrong reference than wrong
responses (AM-Thinking-v1 repaired references where the teachers' majority agreed on another
answer). This module only *flags*, with the evidence; what to do with a flagged record
(drop it with ledger reason ``reference_suspect``, or mark it) is the caller's policy.

Input: for one record, the math verdicts of its responses (``Verdict.details`` as
:func:`reasonmill.verify.math.check` writes them). Cheap: no parsing, only the strings the
verifier already extracted, compared loosely.

The verify stage runs it per record after verification (``verify.audit``, see
:class:`AuditSettings`); it never changes a verdict.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonmill.verify.base import Verdict

#: responses that must agree on one answer, different from the reference, to flag it
MIN_AGREEING = 3
_LOOSE = re.compile(r"\\[,;:! ]|\\left|\\right|~|\$|\s|\\text\{|\}|\{")
#: shapes no intact reference has: an empty command argument (``\frac{}{2}``, the letters
#: lost to an escaping bug), a leading ``=`` (``=2,=-6`` lost its ``a``), a row break
#: ``\\`` outside an environment (``1\\sqrt{19}`` lost its ``\pm``)
_MALFORMED = (
    (re.compile(r"\\[a-zA-Z]+\{\}"), "empty argument"),
    (re.compile(r"^\s*=|,\s*="), "nothing before '='"),
    (re.compile(r"^(?!.*\\begin).*\\\\", re.DOTALL), "row break outside a matrix"),
)


@dataclass(frozen=True)
class ReferenceFlag:
    """Why a record's reference is suspect, with the evidence."""

    reason: str  # "reference_unparsed" or "majority_disagrees"
    reference: str
    majority_answer: str | None = None
    agreeing: int = 0
    responses: int = 0
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The flag as one flat JSON-able dict: the ledger evidence of a ``reference_suspect``
        drop and the ``meta.reference_suspect`` mark are this dict."""
        out = asdict(self)
        return {**{k: v for k, v in out.items() if k != "evidence"}, **out["evidence"]}


class AuditSettings(BaseModel):
    """``verify.audit`` in the pipeline YAML: what the verify stage does with a record whose
    reference the audit flags.

    ``mode``: ``off`` runs no audit; ``mark`` (the default) keeps the record and writes the
    flag to ``meta.reference_suspect``; ``drop`` drops it with ledger reason
    ``reference_suspect`` and the flag as evidence. The default is ``mark`` because the
    audit is a vote of the responses, not a proof: with few samples from one teacher, a
    shared mistake of that teacher outvotes a right reference (see the "Reference audit"
    measurements in bench/results/math.md), and dropping would also lose the responses that
    matched the reference. Marking costs nothing, shows up in the stage stats, and a
    pipeline with several teachers per problem can switch to ``drop``.

    ``min_agreeing``: the responses judged wrong that must give one same answer (and
    outnumber the responses judged right) to flag the reference as outvoted.

    YAML shorthand: ``audit: drop`` means ``audit: {mode: drop}``; ``audit: false`` means off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["off", "mark", "drop"] = "mark"
    min_agreeing: int = Field(MIN_AGREEING, ge=2, description="wrong responses that must agree on one answer")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``audit: drop`` / ``audit: false`` / ``audit: true``; YAML reads a bare ``off``
        as false, so ``mode: off`` arrives as False too."""
        if data is False or data is None:
            return {"mode": "off"}
        if data is True:
            return {}
        if isinstance(data, str):
            return {"mode": data}
        if isinstance(data, dict) and data.get("mode") is False:
            return {**data, "mode": "off"}
        return data


def _key(answer: str) -> str:
    return _LOOSE.sub("", answer).lower().rstrip(".")


def audit_reference(verdicts: Iterable[Verdict], min_agreeing: int = MIN_AGREEING) -> ReferenceFlag | None:
    """A flag when the reference did not parse (or has a shape no intact reference has,
    ``\\frac{}{2}``), or when at least ``min_agreeing`` responses that the verifier judged
    wrong give one and the same answer (and more of them than any answer judged right);
    else None."""
    verdicts = [v for v in verdicts if v.verifier == "math"]
    if not verdicts:
        return None
    reference = str(verdicts[0].details.get("gold") or "")
    malformed = next((why for rx, why in _MALFORMED if rx.search(reference)), None)
    if malformed:
        return ReferenceFlag("reference_unparsed", reference, responses=len(verdicts), evidence={"malformed": malformed})
    unparsed = [v for v in verdicts if v.details.get("gold_unparsed")]
    if unparsed:
        evidence = {"parsed_gold": unparsed[0].details.get("parsed_gold")}
        return ReferenceFlag("reference_unparsed", reference, responses=len(verdicts), evidence=evidence)
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
