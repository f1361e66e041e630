"""Select: keep responses whose verify_score passes the category threshold (SPEC §1 item 8).

Responses below the threshold go to the ledger one by one (with their verdicts as
evidence); a problem left with no passing response is dropped as ``no_passing_response``.
Optionally only problems whose scores vary across samples are kept (DeepDistill).

Unverified responses (general categories with no reward model or judge, see the verify
stage) are dropped as ``unverified``, or, with ``verify.keep_unverified``, kept with no
score and counted apart (``unverified_kept``): exports then carry ``verify_score: null``,
never a score that no verifier gave.

A record the verify stage's reference audit marked (``meta.reference_suspect``) is
selected like any other; when it is dropped as ``no_passing_response`` the mark goes
into the evidence, so the triage sees that the reference, not the responses, may be wrong.
"""

from __future__ import annotations

import statistics

from reasonmill.stages.base import Stage, StageOutput, StageSettings, stage
from reasonmill.stages.verify import REFERENCE_SUSPECT, UNVERIFIED

DEFAULT_THRESHOLDS = {"math": 0.99, "code": 0.99, "science": 0.99, "instruction": 0.7, "chat": 0.7, "other": 0.7}


class SelectSettings(StageSettings):
    #: one global threshold; when set it overrides the per-category ones
    threshold: float | None = None
    #: per-category thresholds: a response is kept when verify_score >= threshold
    thresholds: dict[str, float] = DEFAULT_THRESHOLDS
    #: keep at most this many passing responses per problem
    max_responses: int | None = None
    #: DeepDistill: keep only problems whose scores vary (coefficient of variation > this)
    min_score_cv: float | None = None


@stage("select")
class Select(Stage):
    Settings = SelectSettings

    def threshold(self, category: str | None) -> float:
        if self.settings.threshold is not None:
            return self.settings.threshold
        return self.settings.thresholds.get(category or "other", self.settings.thresholds.get("other", 0.7))

    def process(self, records: list[dict], index=None) -> StageOutput:
        out = StageOutput()
        s = self.settings
        for r in records:
            th = self.threshold(r.get("category"))
            responses = r.get("responses") or []
            scores = [resp.get("verify_score") for resp in responses]
            if s.min_score_cv is not None:
                vals = [x or 0.0 for x in scores]
                mean = statistics.fmean(vals) if vals else 0.0
                cv = statistics.pstdev(vals) / mean if mean > 0 and len(vals) > 1 else 0.0
                if cv <= s.min_score_cv:
                    out.drop(r, "low_score_variance", f"score CV {cv:.3f} <= {s.min_score_cv}", cv=cv, scores=scores)
                    continue
            kept = []
            for i, resp in enumerate(responses):
                score = resp.get("verify_score")
                reasons = [v.get("reason") for v in resp.get("verdicts") or [] if not v.get("passed")]
                if UNVERIFIED in reasons and (resp.get("passed") is not None or len(reasons) > 1):
                    also = [x for x in reasons if x != UNVERIFIED]
                    out.drop_response(
                        r, i, resp, UNVERIFIED,
                        f"no reward model or judge scored this {r.get('category')} response"
                        + (f" (and it failed {', '.join(also)})" if also else "")
                        + "; set verify.reward or verify.judge, or verify.keep_unverified: true",
                        failed=reasons,
                    )
                elif UNVERIFIED in reasons:  # kept unscored by verify.keep_unverified
                    if s.max_responses is not None and len(kept) >= s.max_responses:
                        out.drop_response(r, i, resp, "over_max_responses", f"already kept {s.max_responses}")
                    else:
                        kept.append(resp)
                        out.stats["unverified_kept"] = out.stats.get("unverified_kept", 0) + 1
                elif score is None:
                    out.drop_response(
                        r, i, resp, UNVERIFIED, "no verify_score: add a verify stage before select"
                    )
                elif score < th or resp.get("passed") is False:
                    disagreement = _checker_disagreement(resp)
                    out.drop_response(
                        r, i, resp, "below_threshold",
                        f"verify_score {score:.3f} < {th} ({', '.join(reasons) or 'failed'})"
                        + (" — the two math checkers disagree: checker_disagreement" if disagreement else ""),
                        score=score, threshold=th, failed=reasons,
                        **({"checker_disagreement": disagreement} if disagreement else {}),
                    )
                elif s.max_responses is not None and len(kept) >= s.max_responses:
                    out.drop_response(r, i, resp, "over_max_responses", f"already kept {s.max_responses}")
                else:
                    kept.append(resp)
            unscored = sum(1 for resp in responses if resp.get("verify_score") is None)
            if not kept and responses and unscored == len(responses):
                out.drop(  # never scored, not failed: say so, not "no passing response"
                    r, UNVERIFIED,
                    f"none of {len(responses)} responses was scored by a verifier; "
                    "set verify.reward or verify.judge, or verify.keep_unverified: true",
                    responses=len(responses),
                )
            elif not kept:
                suspect = (r.get("meta") or {}).get(REFERENCE_SUSPECT)  # marked by verify's reference audit
                out.drop(
                    r, "no_passing_response",
                    f"none of {len(responses)} responses passed (threshold {th})"
                    + (f"; the reference is suspect: {suspect.get('reason')}" if suspect else ""),
                    responses=len(responses), scores=scores,
                    **({REFERENCE_SUSPECT: suspect} if suspect else {}),
                )
            else:
                r["responses"] = kept
                out.kept.append(r)
        return out


def _checker_disagreement(response: dict) -> dict | None:
    """Both math checkers' verdicts when they differ on this response (the evidence a
    triage of the drop needs), else None."""
    for verdict in response.get("verdicts") or []:
        details = verdict.get("details") or {}
        if details.get("disagreement"):
            return {
                "math_verify": details.get("math_reason") or verdict.get("reason"),
                "second_checker": details.get("second"),
                "answer": details.get("answer") or details.get("pred"),
                "reference": details.get("gold"),
            }
    return None
