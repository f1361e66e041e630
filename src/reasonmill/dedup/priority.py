"""Which record of a duplicate cluster to keep (SPEC §1 item 3).

Order, best first: it has responses (traces); it has a reference answer or tests; it has
an already verified (passing) response; it is harder; its source ranks higher; then the
smaller id, so the choice is deterministic whatever order the records arrive in.

Why responses come first: ``replay`` drops records without responses. Keeping a copy
without traces over one with traces lost both (40 records on real data, issue 12).
"""

from __future__ import annotations

from typing import Mapping


def priority_key(record: Mapping, source_rank: Mapping[str, int] | None = None) -> tuple:
    """Sort key: the record with the smallest key is the cluster's representative.

    ``source_rank`` maps source name → rank (0 = best); unknown sources rank last.
    """
    has_responses = bool(record.get("responses"))
    has_reference = bool(record.get("reference_answer")) or bool(record.get("tests"))
    verified = any(bool(r.get("passed")) for r in record.get("responses") or [])
    difficulty = record.get("difficulty")
    rank = (source_rank or {}).get(record.get("source") or "", len(source_rank or {}))
    return (
        0 if has_responses else 1,
        0 if has_reference else 1,
        0 if verified else 1,
        -(difficulty if difficulty is not None else -1.0),
        rank,
        record.get("id") or "",
    )
