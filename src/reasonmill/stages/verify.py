"""Verify: give every response a verify_score, routing each to the verifier that fits.

Routing (first match): code (category code, or tests present) → sandboxed tests; science
with a letter answer → choice; math (or any record with a reference answer) → math-verify;
everything else → the reward model when one is configured, otherwise the rules alone.
The format and quality rules run on every response; a failed rule sets ``passed=False``.

Verdicts are cached by content hash in ``<cache_dir>/verdicts.sqlite``, so a re-run
verifies nothing twice. The stage runs inline: its verifiers own their process pools and
sandboxes, and timeouts are enforced by killing those workers, never by signals.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from reasonmill.stages.base import Resources, Stage, StageOutput, StageSettings, stage
from reasonmill.verify.base import Verdict

_LETTER = re.compile(r"^\(?([A-J])\)?$")


class VerifySettings(StageSettings):
    #: MathVerifier options, e.g. {timeout: 5, workers: 2}
    math: dict[str, Any] = {}
    #: CodeVerifier options, e.g. {max_tests: 10, workers: 2, backend: auto, limits: {wall_timeout: 6}}
    code: dict[str, Any] = {}
    #: ChoiceVerifier options
    choice: dict[str, Any] = {}
    #: reward-model scorer for general categories: {base_url, model, api}; none → rules only
    reward: dict[str, Any] | None = None
    #: LLM judge (0–5 rubric) for general categories: {base_url, model}
    judge: dict[str, Any] | None = None
    #: format/quality rules options; false turns them off
    format: dict[str, Any] | bool = {}
    #: score given by rules alone when no reward model or judge is configured
    rules_only_score: float = 1.0
    #: cache verdicts by content hash
    cache: bool = True


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


def content_key(kind: str, settings: Any, record: dict, response: dict) -> str:
    payload = json.dumps(
        [
            kind,
            settings,
            record.get("problem"),
            record.get("reference_answer"),
            record.get("tests"),
            record.get("category"),
            response.get("think"),
            response.get("answer"),
            response.get("finish_reason"),
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()


@stage("verify")
class Verify(Stage):
    Settings = VerifySettings
    resources = Resources(cpus=2, executor="inline")

    def __init__(self, settings=None, context=None):
        super().__init__(settings, context)
        self._verifiers: dict[str, Any] = {}
        self._cache: VerdictCache | None = None
        if self.settings.cache and self.context.cache_dir:
            self._cache = VerdictCache(Path(self.context.cache_dir) / "verdicts.sqlite")

    # verifier construction is lazy: a pipeline without code never starts a sandbox
    def verifier(self, kind: str) -> Any:
        if kind not in self._verifiers:
            s = self.settings
            if kind == "math":
                from reasonmill.verify.math import MathVerifier

                judge = None
                if s.judge:
                    from reasonmill.verify.reward import math_judge

                    judge = math_judge(**s.judge, cache_path=self._llm_cache_path())
                self._verifiers[kind] = MathVerifier(judge=judge, **s.math)
            elif kind == "code":
                from reasonmill.sandbox.limits import Limits
                from reasonmill.verify.code import CodeVerifier

                opts = dict(s.code)
                limits = Limits(**(opts.pop("limits", None) or {}))
                self._verifiers[kind] = CodeVerifier(limits=limits, **opts)
            elif kind == "choice":
                from reasonmill.verify.choice import ChoiceVerifier

                self._verifiers[kind] = ChoiceVerifier(**s.choice)
            elif kind == "general":
                if s.reward:
                    from reasonmill.verify.reward import RewardVerifier

                    cache_path = self._llm_cache_path()
                    self._verifiers[kind] = RewardVerifier.from_settings(dict(s.reward), cache_path)
                elif s.judge:
                    from reasonmill.verify.reward import JudgeScorer

                    self._verifiers[kind] = JudgeScorer.from_settings(dict(s.judge), self._llm_cache_path())
                else:
                    self._verifiers[kind] = None
            elif kind == "format":
                from reasonmill.verify.format import FormatVerifier

                opts = s.format if isinstance(s.format, dict) else {}
                self._verifiers[kind] = FormatVerifier(opts)
        return self._verifiers[kind]

    def _llm_cache_path(self) -> Path | None:
        """The LLM response cache shared with generate: a re-run pays for no judge or reward call twice."""
        from reasonmill.llm.sync_client import llm_cache_path

        return llm_cache_path(self.context.cache_dir)

    def _run(self, kind: str, pairs: list[tuple[dict, dict]]) -> list[Verdict]:
        """Verdicts for ``pairs`` from the cache, computing only the missing ones."""
        if not pairs:
            return []
        verifier = self.verifier(kind)
        if verifier is None:  # rules only: the format verdict decides
            return [
                Verdict(self.settings.rules_only_score, True, "rules_only", {}, "rules") for _ in pairs
            ]
        settings_key = getattr(self.settings, kind, None) if kind != "general" else (self.settings.reward or self.settings.judge)
        keys = [content_key(kind, settings_key, r, resp) for r, resp in pairs]
        cached = self._cache.get_many(keys) if self._cache else {}
        todo = [i for i, k in enumerate(keys) if k not in cached]
        fresh: dict[int, Verdict] = {}
        if todo:
            batch = [pairs[i] for i in todo]
            many = getattr(verifier, "verify_many", None)
            results = many(batch) if many else [verifier.verify(r, resp) for r, resp in batch]
            fresh = dict(zip(todo, results))
            if self._cache:
                self._cache.put_many([(keys[i], v) for i, v in fresh.items()])
        self.cache_hits = getattr(self, "cache_hits", 0) + len(pairs) - len(todo)
        return [cached[k] if i not in fresh else fresh[i] for i, k in enumerate(keys)]

    def process(self, records: list[dict], index=None) -> StageOutput:
        out = StageOutput()
        groups: dict[str, list[tuple[dict, dict]]] = {}
        all_pairs: list[tuple[dict, dict]] = []
        for r in records:
            kind = route(r)
            for resp in r.get("responses") or []:
                groups.setdefault(kind, []).append((r, resp))
                all_pairs.append((r, resp))
        main: dict[int, Verdict] = {}
        for kind, pairs in groups.items():
            for (r, resp), verdict in zip(pairs, self._run(kind, pairs)):
                main[id(resp)] = verdict
        formats = self._run("format", all_pairs) if self.settings.format is not False else [None] * len(all_pairs)
        stats: dict[str, float] = {}
        for (r, resp), fmt in zip(all_pairs, formats):
            verdict = main[id(resp)]
            verdicts = [verdict] + ([fmt] if fmt is not None else [])
            passed = all(v.passed for v in verdicts)
            resp["verdicts"] = [v.to_dict() for v in verdicts]
            resp["verify_score"] = float(verdict.score) if (fmt is None or fmt.passed) else 0.0
            resp["passed"] = passed
            kind = route(r)
            stats[f"{kind}_responses"] = stats.get(f"{kind}_responses", 0) + 1
            stats[f"{kind}_passed"] = stats.get(f"{kind}_passed", 0) + int(passed)
            if fmt is not None and not fmt.passed:
                stats["format_failed"] = stats.get("format_failed", 0) + 1
        out.kept = list(records)
        out.stats = stats
        out.stats["verdict_cache_hits"] = getattr(self, "cache_hits", 0)
        self.cache_hits = 0
        if self.context.progress:
            self.context.progress(len(records))
        return out

    def close(self) -> None:
        for v in self._verifiers.values():
            close = getattr(v, "close", None)
            if callable(close):
                close()
        if self._cache:
            self._cache.close()
