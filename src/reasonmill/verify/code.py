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
import hashlib
import re
import shutil
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

import reasonmill.sandbox
from reasonmill.sandbox import Limits, Runner, TestResult, fn_name_from_starter, get_runner, normalize_language
from reasonmill.sandbox.backends import default_python
from reasonmill.verify.base import Verdict
from reasonmill.verify.fences import fenced_blocks
from reasonmill.verify.keys import verdict_key

#: a line that starts Python code; ``[^\S\n]*`` (not ``\s*``) keeps the search linear on
#: long runs of blank lines, with the same verdict (a match's last line start also matches)
_PYTHON_LINE = re.compile(r"^[^\S\n]*(def |class |import |from |print\()", re.M)
_SUPPORTED = ("python", "cpp")
_NON_CODE_TAGS = {"text", "txt", "plaintext", "output", "console", "shell", "bash", "sh", "json", "yaml", "markdown", "md", "latex", "math"}
DETAIL_TEXT_CAP = 500


def extract_code(answer: str | None, raw: str | None = None) -> tuple[str | None, str, str]:
    """(code, language, how) where ``how`` is ``answer_block``, ``raw_block``,
    ``whole_answer``; ``code`` is None with ``how`` = a reason code when none is found."""
    for text, how in ((answer or "", "answer_block"), (raw or "", "raw_block")):
        blocks = fenced_blocks(text)
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
            if _PYTHON_LINE.search(answer):
                return answer, "python", "whole_answer"
    return None, "python", "no_code_block"


def _parses(code: str) -> Exception | None:
    """Parse on the host to report syntax errors without starting a sandbox (quietly:
    model code is full of invalid escape sequences). Nesting too deep for the parser
    (``-`` or ``not`` repeated 100,000 times) raises MemoryError or RecursionError; Python
    could not run that code either, so it counts as a syntax error, not a crash."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(code)
        except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
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


class CodeVerifierSettings(BaseModel):
    """``verify.code`` in the pipeline YAML: every option of :class:`CodeVerifier`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limits: Limits = Field(default_factory=Limits)
    max_tests: int = Field(10, gt=0, description="run the first N tests of a record")
    workers: int = Field(2, gt=0, description="responses verified at once")
    backend: Literal["auto", "bwrap", "rlimit"] = "auto"
    python: str | None = Field(None, description="interpreter for sandboxed code; default: system python3")
    reuse_interpreter: bool = Field(
        True, description="bwrap with cgroups: Python runs fork from a long-lived box per worker (same verdicts)"
    )

    def build(self) -> CodeVerifier:
        return CodeVerifier(settings=self)


# --- what decides a code verdict besides the code and the tests (cache-key inputs) --------


@lru_cache(maxsize=None)
def interpreter_version(python: str) -> str | None:
    """``sys.version`` of the interpreter that runs sandboxed code (asked once per path)."""
    try:
        run = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True,
                             timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() or None


@lru_cache(maxsize=None)
def compiler_version() -> str | None:
    """``g++ --version``'s first line, or None without a compiler."""
    gxx = shutil.which("g++")
    if gxx is None:
        return None
    try:
        run = subprocess.run([gxx, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (run.stdout.splitlines() or [""])[0] or None


@lru_cache(maxsize=None)
def sandbox_fingerprint() -> str:
    """Hash of the sandbox package's sources: its harness and output comparison decide
    pass/fail, so any edit there re-runs the code verdicts."""
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(Path(reasonmill.sandbox.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class CodeVerifier:
    """``(record, response) -> Verdict`` by running the record's tests in the sandbox.

    ``CodeVerifier(limits, max_tests=10, ...)`` or ``CodeVerifier(settings=...)``: the
    options are :class:`CodeVerifierSettings`' fields. Picklable: the runner is created
    lazily in each process that uses it.
    """

    name: ClassVar[str] = "code"
    #: bump when a verdict can change for the same inputs (see reasonmill.verify.keys)
    version: ClassVar[str] = "1"

    def __init__(self, limits: Limits | None = None, *, settings: CodeVerifierSettings | None = None,
                 **options: Any) -> None:  # fmt: skip
        if settings is not None and (options or limits is not None):
            raise TypeError("give CodeVerifier either settings or limits/keyword options, not both")
        if settings is None:
            settings = CodeVerifierSettings(limits=limits or Limits(), **options)
        self.settings = settings
        self._runner: Runner | None = None

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    @property
    def max_tests(self) -> int:
        return self.settings.max_tests

    @property
    def workers(self) -> int:
        return self.settings.workers

    @property
    def backend(self) -> str:
        return self.settings.backend

    @property
    def python(self) -> str | None:
        return self.settings.python

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_runner"] = None
        return state

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = get_runner(self.backend, python=self.python,  # type: ignore[arg-type]
                                      reuse_interpreter=self.settings.reuse_interpreter)
        return self._runner

    def cache_key(self, record: dict, response: dict) -> str:
        """Everything the verdict depends on: settings (not ``workers`` nor
        ``reuse_interpreter``: how many runs at once, how a run starts), the sandbox's
        sources, the interpreter and compiler versions, the record's tests, ``meta.fn_name``
        and ``starter_code`` (they name the function under test), the answer and ``raw``."""
        meta = record.get("meta") or {}
        fields = [record.get("tests") or [], meta.get("fn_name") if isinstance(meta, dict) else None,
                  record.get("starter_code"), response.get("answer"), response.get("raw")]  # fmt: skip
        libraries = {
            "sandbox": sandbox_fingerprint(),
            "python": interpreter_version(self.python or default_python()),
            "g++": compiler_version(),
        }
        settings = self.settings.model_dump(exclude={"workers", "reuse_interpreter"})
        return verdict_key(self.name, self.version, settings, libraries, fields)

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
