"""Code verifier: run a response's code against the record's tests in the sandbox.

The code is the LAST fenced code block of ``response["answer"]`` (models often show an
example or a first attempt before the final program); if the answer has none, the last
block of ``response["raw"]``; if neither has one and the answer parses as Python, the
whole answer. The fence tag picks the language (python by default; cpp/c++/cc/c).

Score = fraction of the first ``max_tests`` tests passed; ``passed`` only when all pass.
Reason codes: ``all_passed``, ``tests_failed``, ``timeout`` (every failing test timed
out), ``compile_error``, ``syntax_error``, ``no_code_block``, ``no_tests``,
``unsupported_language``.
"""

from __future__ import annotations

import ast
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from reasonmill.sandbox import Limits, Runner, TestResult, fn_name_from_starter, get_runner, normalize_language
from reasonmill.verify.base import Verdict

_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([^\s`]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*\r?$", re.M | re.S)
_SUPPORTED = ("python", "cpp")
_NON_CODE_TAGS = {"text", "txt", "plaintext", "output", "console", "shell", "bash", "sh", "json", "yaml", "markdown", "md", "latex", "math"}
DETAIL_TEXT_CAP = 500


def extract_code(answer: str | None, raw: str | None = None) -> tuple[str | None, str, str]:
    """(code, language, how) where ``how`` is ``answer_block``, ``raw_block``,
    ``whole_answer``; ``code`` is None with ``how`` = a reason code when none is found."""
    for text, how in ((answer or "", "answer_block"), (raw or "", "raw_block")):
        blocks = [(m.group(2), m.group(3)) for m in _FENCE.finditer(text)]
        if not blocks:
            continue
        # Prefer the last block tagged with a language we run; an untagged block counts
        # only when no tagged one exists (an untagged last block is often sample output).
        tagged = [(normalize_language(t), b) for t, b in blocks if t and normalize_language(t) in _SUPPORTED]
        untagged = [("python", b) for t, b in blocks if not t]
        chosen = tagged or untagged
        if chosen:
            lang, body = chosen[-1]
            return body, lang, how
        last_lang = normalize_language(blocks[-1][0])
        if last_lang not in _NON_CODE_TAGS:
            return None, last_lang, "unsupported_language"
    if answer and answer.strip():
        if _parses(answer) is None:
            if re.search(r"^\s*(def |class |import |from |print\()", answer, re.M):
                return answer, "python", "whole_answer"
    return None, "python", "no_code_block"


def _parses(code: str) -> SyntaxError | ValueError | None:
    """Parse on the host to report syntax errors without starting a sandbox (quietly:
    model code is full of invalid escape sequences)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(code)
        except (SyntaxError, ValueError) as e:
            return e
    return None


def _short(s: str) -> str:
    return s if len(s) <= DETAIL_TEXT_CAP else s[:DETAIL_TEXT_CAP] + "...[truncated]"


def _test_detail(r: TestResult) -> dict[str, Any]:
    d = {"index": r.index, "kind": r.kind, "status": r.status, "duration_s": r.duration_s}
    for k in ("message", "stdout", "stderr"):
        v = getattr(r, k)
        if v:
            d[k] = _short(v)
    return d


class CodeVerifier:
    """``(record, response) -> Verdict`` by running the record's tests in the sandbox.

    Picklable: the runner is created lazily in each process that uses it.
    """

    name: ClassVar[str] = "code"

    def __init__(self, limits: Limits | None = None, max_tests: int = 10, workers: int = 2,
                 backend: str = "auto", python: str | None = None) -> None:  # fmt: skip
        self.limits = limits or Limits()
        self.max_tests = max_tests
        self.workers = max(1, workers)
        self.backend = backend
        self.python = python
        self._runner: Runner | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_runner"] = None
        return state

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = get_runner(self.backend, python=self.python)  # type: ignore[arg-type]
        return self._runner

    def _verdict(self, score: float, reason: str, **details: Any) -> Verdict:
        return Verdict(score=score, passed=score >= 1.0 and reason == "all_passed", reason=reason,
                       details=details, verifier=self.name)  # fmt: skip

    def verify(self, record: dict, response: dict) -> Verdict:
        tests = list(record.get("tests") or [])[: self.max_tests]
        n_available = len(record.get("tests") or [])
        code, language, how = extract_code(response.get("answer"), response.get("raw"))
        if code is None:
            return self._verdict(0.0, how, language=language)
        if language not in _SUPPORTED:
            return self._verdict(0.0, "unsupported_language", language=language)
        if not tests:
            return self._verdict(0.0, "no_tests", language=language, code_from=how)
        if language == "python":
            e = _parses(code)
            if e is not None:
                return self._verdict(0.0, "syntax_error", language=language, code_from=how,
                                     message=_short(f"{type(e).__name__}: {e}"), n_tests=len(tests))  # fmt: skip
        meta = record.get("meta") or {}
        fn_name = meta.get("fn_name") if isinstance(meta, dict) else None
        results = self.runner.run(
            code, tests, self.limits, language,
            fn_name=fn_name or fn_name_from_starter(record.get("starter_code")),
        )  # fmt: skip
        n_pass = sum(r.passed for r in results)
        score = n_pass / len(results)
        failing = [r for r in results if not r.passed]
        if not failing:
            reason = "all_passed"
        elif all(r.status == "compile_error" for r in failing):
            reason = "compile_error"
        elif all(r.status == "timeout" for r in failing):
            reason = "timeout"
        else:
            reason = "tests_failed"
        details: dict[str, Any] = {
            "language": language,
            "code_from": how,
            "n_tests": len(results),
            "n_passed": n_pass,
            "n_available": n_available,
            "backend": self.runner.name,
            "tests": [_test_detail(r) for r in results],
        }
        warning = self.runner.backend.warning
        if warning:
            details["isolation_warning"] = warning
        return self._verdict(score, reason, **details)

    def verify_many(self, items: Iterable[tuple[dict, dict]]) -> list[Verdict]:
        """Verify ``(record, response)`` pairs, ``workers`` at a time, in input order.
        Threads suffice: the work happens in sandboxed child processes."""
        items = list(items)
        _ = self.runner  # probe the backend once, before the threads start
        if self.workers == 1 or len(items) <= 1:
            return [self.verify(rec, resp) for rec, resp in items]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda it: self.verify(*it), items))


class CodeVerifierSettings(BaseModel):
    """YAML settings for the code verifier (``verify.code`` in a pipeline config)."""

    model_config = ConfigDict(extra="forbid")

    limits: Limits = Field(default_factory=Limits)
    max_tests: int = Field(10, gt=0)
    workers: int = Field(2, gt=0)
    backend: Literal["auto", "bwrap", "rlimit"] = "auto"
    python: str | None = None

    def build(self) -> CodeVerifier:
        return CodeVerifier(self.limits, self.max_tests, self.workers, self.backend, self.python)
