"""Verify: give every response a verify_score, routing each to the verifier that fits.

Routing (first match): code (category code, or tests present) → sandboxed tests; science
with a letter answer → choice; math (or any record with a reference answer) → math-verify;
everything else → the reward model, else the LLM judge. The format and quality rules run
on every response; a failed rule sets ``passed=False``.

A general response with neither a reward model nor a judge is *unverified*: nothing
scored it, so ``verify_score`` stays None and ``passed`` is False (reason ``unverified``),
or None with ``keep_unverified: true`` (select then keeps it, counted apart, and exports
carry no score). It is never passed as if it had been checked.

Verdicts are cached in ``<cache_dir>/verdicts.sqlite`` under each verifier's own
``cache_key`` (name, version, settings, library versions and every field it reads; see
:mod:`reasonmill.verify.keys`), so a re-run verifies nothing twice and never reuses a
verdict whose inputs changed. The stage runs inline: its verifiers own their process
pools and sandboxes, and timeouts are enforced by killing those workers, never by signals.

Reference audit (``verify.audit``, :class:`~reasonmill.verify.math_audit.AuditSettings`):
once a math record's responses are verified, :func:`~reasonmill.verify.math_audit.audit_reference`
reads their verdicts; a reference that does not parse, or that ``min_agreeing`` wrong
responses outvote with one same answer, is *marked* (``meta.reference_suspect``, the
default) or *dropped* (ledger reason ``reference_suspect``, the flag as evidence). The
audit never changes a verdict. It lives here, not in ``verify.math``, because it is a
policy over a record's responses, and ``verify.math`` is part of every verdict's cache
key: changing the audit must not re-verify anything.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from reasonmill.stages.base import Drop, Resources, Stage, StageOutput, StageSettings, stage
from reasonmill.verify.base import Verdict, cacheable
from reasonmill.verify.choice import ChoiceSettings, ChoiceVerifier
from reasonmill.verify.code import CodeVerifier, CodeVerifierSettings
from reasonmill.verify.format import FormatSettings, FormatVerifier
from reasonmill.verify.math import MathSettings, MathVerifier
from reasonmill.verify.math_audit import AuditSettings, ReferenceFlag, audit_reference
from reasonmill.verify.reward import (
    JUDGE_SYSTEM,
    MATH_JUDGE_PROMPT,
    JudgeScorer,
    JudgeSettings,
    MathJudge,
    RewardSettings,
    RewardVerifier,
    math_judge,
)

_LETTER = re.compile(r"^\(?([A-J])\)?$")

#: the reason of the verdict given to a general response that nothing scored
UNVERIFIED = "unverified"
#: ledger reason of a record dropped by the reference audit, and its ``meta`` key with ``audit: mark``
REFERENCE_SUSPECT = "reference_suspect"
#: a rule failing at least this share of one source's responses is reported in the summary
WARN_SHARE = 0.9
#: ... when the source has at least this many responses
WARN_MIN_RESPONSES = 10
#: the setting to look at when a rule removes (almost) a whole source
_RULE_SETTING = {
    "truncated": "check_truncated: false",
    "missing_think": "require_think: false",
    "empty_answer": "require_answer: false",
    "too_short": "min_chars / min_tokens",
    "too_long": "max_chars / max_tokens",
    "repetition": "repetition_max_ratio / check_tail_loop: false",
    "language_mismatch": "check_language: false",
    "no_boxed": "require_boxed_for: []",
}


class VerifySettings(StageSettings):
    """``verify`` in the pipeline YAML; each verifier's options are its own settings model."""

    math: MathSettings = Field(default_factory=MathSettings)
    code: CodeVerifierSettings = Field(default_factory=CodeVerifierSettings)
    choice: ChoiceSettings = Field(default_factory=ChoiceSettings)
    #: reward model for general categories (answer part only); none → the judge, else unverified
    reward: RewardSettings | None = None
    #: LLM judge (0–5 rubric) for general categories, and math-verify's fallback for math
    judge: JudgeSettings | None = None
    #: format/quality rules; false (or null) turns them off
    format: FormatSettings | None = Field(default_factory=FormatSettings)
    #: reference audit of math records: off / mark (meta.reference_suspect) / drop (ledger reason reference_suspect)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    #: keep general responses that nothing scored (verify_score None, passed None) instead of failing them
    keep_unverified: bool = False
    #: cache verdicts in <cache_dir>/verdicts.sqlite
    cache: bool = True

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rules_only_score" in data:
            raise ValueError(
                "rules_only_score was removed: a general response that no reward model or judge scored is "
                "unverified (verify_score null); set verify.reward or verify.judge, or keep_unverified: true"
            )
        return data

    @field_validator("format", mode="before")
    @classmethod
    def _format_switch(cls, v: Any) -> Any:
        """YAML ``format: false`` turns the rules off, ``format: true`` means the defaults."""
        if v is False:
            return None
        return {} if v is True else v


def route(record: dict) -> str:
    category = record.get("category")
    ref = (record.get("reference_answer") or "").strip()
    if category == "code" or record.get("tests"):
        return "code"
    if category == "science" and _LETTER.match(ref):
        return "choice"
    if category == "math" or (ref and category in (None, "", "science")):
        return "math"
    return "general"


class VerdictCache:
    """Content-addressed verdict store (SQLite, WAL): key → verdict JSON."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, verdict TEXT NOT NULL)")

    def get_many(self, keys: list[str]) -> dict[str, Verdict]:
        found: dict[str, Verdict] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, verdict FROM verdicts WHERE key IN ({','.join('?' * len(chunk))})"
            for key, text in self.db.execute(q, chunk):
                found[key] = Verdict(**json.loads(text))
        return found

    def put_many(self, items: list[tuple[str, Verdict]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT OR REPLACE INTO verdicts VALUES (?, ?)",
            [(k, json.dumps(v.to_dict(), default=str)) for k, v in items],
        )
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def _suspect_message(flag: ReferenceFlag) -> str:
    """The ledger message of a ``reference_suspect`` drop: what a person checks first."""
    if flag.reason == "reference_unparsed":
        why = f" ({flag.evidence['malformed']})" if flag.evidence.get("malformed") else ""
        return f"the reference {flag.reference!r} does not parse as math{why}: no response can be judged against it"
    return (
        f"{flag.agreeing} of {flag.responses} responses agree on {flag.majority_answer!r}, not the reference "
        f"{flag.reference!r} ({flag.evidence.get('passed', 0)} matched the reference)"
    )


def format_warnings(stats: dict[str, float]) -> list[str]:
    """One line per (source, rule) where the rule fails ≥ ``WARN_SHARE`` of the source's
    responses: usually the rule does not fit the data, not 90 % bad data."""
    out = []
    for key, failed in sorted(stats.items()):
        if not key.startswith("format_rule:"):
            continue
        reason, _, source = key[len("format_rule:") :].partition("@")
        total = stats.get(f"responses@{source}", 0)
        if total >= WARN_MIN_RESPONSES and failed / total >= WARN_SHARE:
            out.append(
                f"format rule {reason} fails {failed:g} of the {total:g} responses of source {source!r} "
                f"({failed / total:.0%}); if the source is right as it is, set "
                f"verify.format.per_source.{source}: {{{_RULE_SETTING.get(reason, '...')}}}"
            )
    return out


@stage("verify")
class Verify(Stage):
    Settings = VerifySettings
    #: 2: the reference audit marks or drops records
    version = "2"
    resources = Resources(cpus=2, executor="inline")
    settings: VerifySettings

    def __init__(self, settings=None, context=None):
        super().__init__(settings, context)
        self._verifiers: dict[str, Any] = {}
        self._cache: VerdictCache | None = None
        if self.settings.cache and self.context.cache_dir:
            self._cache = VerdictCache(Path(self.context.cache_dir) / "verdicts.sqlite")

    # verifier construction is lazy: a pipeline without code never starts a sandbox
    def verifier(self, kind: str) -> Any:
        if kind not in self._verifiers:
            self._verifiers[kind] = self._build(kind)
        return self._verifiers[kind]

    def _build(self, kind: str) -> Any:
        s = self.settings
        if kind == "math":
            if s.judge is None:
                return MathVerifier(s.math)
            accepted = set(inspect.signature(MathJudge).parameters)
            options = s.judge.model_dump(include=accepted)
            judge_key = {"prompt": MATH_JUDGE_PROMPT,
                         **{k: options.get(k) for k in ("base_url", "model", "max_tokens")}}  # fmt: skip
            return MathVerifier(s.math, math_judge(**options, cache_path=self._llm_cache_path()), judge_key=judge_key)
        if kind == "code":
            return CodeVerifier(settings=s.code)
        if kind == "choice":
            return ChoiceVerifier(s.choice)
        if kind == "general":
            if s.reward is not None:
                return RewardVerifier.from_settings(s.reward, self._llm_cache_path())
            if s.judge is not None:
                return JudgeScorer.from_settings(s.judge, self._llm_cache_path())
            return None
        if kind == "format":
            return FormatVerifier(s.format)
        raise ValueError(f"unknown verifier kind {kind!r}")

    @classmethod
    def endpoints(cls, settings: VerifySettings) -> list:
        """The reward model and judge these settings call (for the preflight)."""
        from reasonmill.llm.preflight import endpoints_of

        pairs = []
        if settings.reward is not None:
            pairs += endpoints_of("verify.reward", RewardVerifier.endpoints(settings.reward))
        if settings.judge is not None:
            pairs += endpoints_of("verify.judge", JudgeScorer.endpoints(settings.judge))
        return pairs

    def _llm_cache_path(self) -> Path | None:
        """The LLM response cache shared with generate: a re-run pays for no judge or reward call twice."""
        from reasonmill.llm.sync_client import llm_cache_path

        return llm_cache_path(self.context.cache_dir)

    def _general_scope(self) -> Any:
        """What the reward/judge verdict depends on beyond their own ``cache_key`` (which
        leaves out the thresholds, the sampling knobs and the judge's system prompt).
        Remove once reasonmill.verify.reward's keys hold them."""
        s = self.settings
        operational = {"batch_size", "concurrency", "timeout", "max_retries", "backoff", "api_key_env"}
        if s.reward is not None:
            return ["reward", s.reward.model_dump(exclude=operational)]
        if s.judge is not None:
            return ["judge", s.judge.model_dump(exclude=operational), JUDGE_SYSTEM]
        return None

    def key(self, kind: str, verifier: Any, record: dict, response: dict) -> str:
        """The cache key of one verdict: the verifier's own ``cache_key`` plus what routing
        read (the kind and the category, which also picks reward/judge thresholds)."""
        parts = [kind, record.get("category"), verifier.cache_key(record, response)]
        if kind == "general":
            parts.append(self._general_scope())
        payload = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
        return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()

    def _run(self, kind: str, pairs: list[tuple[dict, dict]], stats: Counter) -> list[Verdict] | None:
        """Verdicts for ``pairs`` from the cache, computing only the missing ones; None
        when no verifier is configured for ``kind`` (general without reward or judge)."""
        verifier = self.verifier(kind)
        if verifier is None:
            return None
        if not pairs:
            return []
        keys = [self.key(kind, verifier, r, resp) for r, resp in pairs]
        cached = self._cache.get_many(keys) if self._cache else {}
        todo = [i for i, k in enumerate(keys) if k not in cached]
        fresh: dict[int, Verdict] = {}
        if todo:
            batch = [pairs[i] for i in todo]
            many = getattr(verifier, "verify_many", None)
            results = many(batch) if many else [verifier.verify(r, resp) for r, resp in batch]
            fresh = dict(zip(todo, results))
            kept = [(keys[i], v) for i, v in fresh.items() if cacheable(v)]
            if len(kept) < len(fresh):
                stats["verdicts_not_cached"] += len(fresh) - len(kept)  # a crashed verifier: redone next run
            if self._cache:
                self._cache.put_many(kept)
        stats["verdict_cache_hits"] += len(pairs) - len(todo)
        stats["verdicts_computed"] += len(todo)
        return [fresh[i] if i in fresh else cached[k] for i, k in enumerate(keys)]

    def _unverified(self, record: dict) -> Verdict:
        return Verdict(
            0.0, False, UNVERIFIED,
            {"message": f"no reward model or judge is configured for category {record.get('category')!r}",
             "hint": "set verify.reward or verify.judge, or verify.keep_unverified: true to keep it unscored",
             "kept": self.settings.keep_unverified},
            "none",
        )  # fmt: skip

    def process(self, records: list[dict], index=None) -> StageOutput:
        out = StageOutput()
        stats: Counter = Counter()
        groups: dict[str, list[tuple[dict, dict]]] = {}
        all_pairs: list[tuple[dict, dict]] = []
        for r in records:
            kind = route(r)
            for resp in r.get("responses") or []:
                groups.setdefault(kind, []).append((r, resp))
                all_pairs.append((r, resp))
        main: dict[int, Verdict | None] = {}
        for kind, pairs in groups.items():
            verdicts = self._run(kind, pairs, stats)
            for (r, resp), verdict in zip(pairs, verdicts or [None] * len(pairs)):
                main[id(resp)] = verdict
        formats = self._run("format", all_pairs, stats) if self.settings.format is not None else None
        for i, (r, resp) in enumerate(all_pairs):
            self._settle(r, resp, main[id(resp)], formats[i] if formats else None, stats)
        for r in records:
            flag = self._audit(r, main, stats)
            if flag is not None and self.settings.audit.mode == "drop":
                out.dropped.append(Drop(r["id"], REFERENCE_SUSPECT, _suspect_message(flag), flag.to_dict(), r))
            else:
                out.kept.append(r)
        out.stats = dict(stats)
        out.stats.setdefault("verdict_cache_hits", 0)
        if self.settings.audit.mode != "off":
            out.stats.setdefault(REFERENCE_SUSPECT, 0)
        if self.context.progress:
            self.context.progress(len(records))
        return out

    def _audit(self, r: dict, main: dict[int, Verdict | None], stats: Counter) -> ReferenceFlag | None:
        """The reference audit of one math record (None when off, not math, or not suspect).
        With ``mark`` the flag goes to ``meta.reference_suspect``; a mark left by an
        earlier verify run is removed when the record is no longer suspect."""
        audit = self.settings.audit
        if audit.mode == "off" or route(r) != "math":
            return None
        verdicts = [v for resp in r.get("responses") or [] if (v := main.get(id(resp))) is not None]
        flag = audit_reference(verdicts, audit.min_agreeing)
        meta = r.get("meta") or {}
        if flag is None:
            if REFERENCE_SUSPECT in meta:
                r["meta"] = {k: v for k, v in meta.items() if k != REFERENCE_SUSPECT}
            return None
        stats[REFERENCE_SUSPECT] += 1
        stats[f"{REFERENCE_SUSPECT}:{flag.reason}"] += 1
        if audit.mode == "mark":
            r["meta"] = {**meta, REFERENCE_SUSPECT: flag.to_dict()}
        return flag

    def _settle(
        self, r: dict, resp: dict, verdict: Verdict | None, fmt: Verdict | None, stats: Counter
    ) -> None:
        """Write one response's verdicts, score and pass flag, and count them."""
        kind = route(r)
        stats[f"{kind}_responses"] += 1
        fmt_ok = fmt is None or fmt.passed
        if verdict is None:  # nothing can score it: unverified, never passed
            verdict = self._unverified(r)
            resp["verify_score"] = None
            resp["passed"] = None if (self.settings.keep_unverified and fmt_ok) else False
            stats[f"{kind}_unverified"] += 1
        else:
            resp["verify_score"] = float(verdict.score) if fmt_ok else 0.0
            resp["passed"] = verdict.passed and fmt_ok
            stats[f"{kind}_passed"] += int(resp["passed"])
            if verdict.details.get("disagreement"):  # math-verify and the second checker differ
                stats[f"{kind}_checker_disagreements"] += 1
        resp["verdicts"] = [verdict.to_dict()] + ([fmt.to_dict()] if fmt is not None else [])
        if fmt is None:
            return
        source = r.get("source") or "?"
        stats[f"responses@{source}"] += 1
        if resp.get("think") is None:
            stats[f"no_think@{source}"] += 1
        if not fmt.passed:
            stats["format_failed"] += 1
            stats[f"format_failed:{fmt.reason}"] += 1
            for reason in {f["reason"] for f in fmt.details.get("failures") or [{"reason": fmt.reason}]}:
                stats[f"format_rule:{reason}@{source}"] += 1

    def summary(self, output_stats: dict) -> str:
        """Failed format rules by reason, unverified counts, and a warning for each rule
        that removes ≥ 90 % of a source's responses."""
        parts = []
        reasons = {k.split(":", 1)[1]: v for k, v in output_stats.items() if k.startswith("format_failed:")}
        if reasons:
            ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            parts.append("format_failed: " + ", ".join(f"{k} {v:g}" for k, v in ranked))
        unverified = output_stats.get("general_unverified", 0)
        if unverified:
            fate = "kept unscored (keep_unverified)" if self.settings.keep_unverified else "failed"
            parts.append(f"general_unverified {unverified:g} ({fate}: no reward model or judge)")
        no_think = {k.split("@", 1)[1]: v for k, v in output_stats.items() if k.startswith("no_think@") and v}
        if no_think:
            totals = {src: output_stats.get(f"responses@{src}", 0) for src in no_think}
            shares = [f"{src} {n:g}/{totals[src]:g}" for src, n in sorted(no_think.items())]
            parts.append("responses without a think part: " + ", ".join(shares))
        suspect = output_stats.get(REFERENCE_SUSPECT, 0)
        if suspect:
            fate = {"mark": "marked in meta.reference_suspect", "drop": "dropped"}.get(self.settings.audit.mode, "")
            why = {k.split(":", 1)[1]: v for k, v in output_stats.items() if k.startswith(f"{REFERENCE_SUSPECT}:")}
            parts.append(
                f"{REFERENCE_SUSPECT} {suspect:g} ({fate}): " + ", ".join(f"{k} {v:g}" for k, v in sorted(why.items()))
            )
        parts += [f"WARNING: {w}" for w in format_warnings(output_stats)]
        return "\n".join(parts)

    def close(self) -> None:
        for v in self._verifiers.values():
            close = getattr(v, "close", None)
            if callable(close):
                close()
        if self._cache:
            self._cache.close()
