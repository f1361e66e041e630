"""The sandbox runner: ``run(code, tests, limits, language) -> list[TestResult]``.

Python: functional/assert/check tests of one response run in ONE sandbox
(``_harness.py``: a supervisor that runs the tests' code and a worker that runs the
solution), which streams per-test results on a pipe only the supervisor holds; a test
that crashes or hangs the solution is blamed alone and the remaining tests continue in a
fresh sandbox. The tests reach the sandbox on the supervisor's stdin, never as a file;
functional tests carry no expected output at all: the returned value comes back and is
compared here. Stdin tests run one process each; their output is compared here. C++:
compiled once (``g++ -O2``) in the sandbox, then one process per stdin test.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from reasonmill.sandbox import _box_prelude, _wire, bytecode, prelude, testnames
from reasonmill.sandbox.backends import BwrapBackend, RlimitBackend, Wrapped
from reasonmill.sandbox.compare import outputs_match, returned_matches
from reasonmill.sandbox.limits import Limits, TestResult
from reasonmill.sandbox.process import ExecResult, execute
from reasonmill.sandbox.zygote import HARNESS

log = logging.getLogger(__name__)

BATCH_KINDS = ("functional", "assert", "check")
TEXT_CAP = 2000
MAX_BATCH_RESTARTS = 8

Backend = BwrapBackend | RlimitBackend


def _text(data: bytes | str, cap: int = TEXT_CAP) -> str:
    s = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return s if len(s) <= cap else s[:cap] + f"...[{len(s) - cap} more chars]"


def fn_name_from_starter(starter_code: str | None) -> str | None:
    """The method LiveCodeBench calls: the first ``def`` in the starter code (skipping
    ``__init__``)."""
    for m in re.finditer(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", starter_code or "", re.M):
        if m.group(1) != "__init__":
            return m.group(1)
    return None


def _signal_status(rc: int | None, limit_hit: str | None = None) -> tuple[str, str]:
    """Status for a non-zero exit. bubblewrap reports a child killed by signal N as
    exit code 128+N, a direct child shows -N. ``limit_hit``: the box (cgroup or watcher)
    ended the run for its processes' memory or CPU together, which the signal alone
    cannot tell."""
    if limit_hit == "memory":
        return "crashed", "killed: the run's processes together went over its memory limit"
    if limit_hit == "cpu":
        return "timeout", "CPU time limit exceeded by the run's processes together (SIGXCPU)"
    sig = None
    if rc is not None and rc < 0:
        sig = -rc
    elif rc is not None and 128 < rc <= 128 + 64:
        sig = rc - 128
    if sig is not None:
        if sig == 9:
            return "crashed", "killed (SIGKILL): memory, process or CPU limit"
        if sig == 24:
            return "timeout", "CPU time limit exceeded (SIGXCPU)"
        if sig == 25:
            return "error", "file size limit exceeded (SIGXFSZ)"
        if sig == 11:
            return "crashed", "segmentation fault"
        return "crashed", f"killed by signal {sig}"
    return "error", f"exit code {rc}"


class Runner:
    """Runs code against tests with one backend. Thread-safe: every run has its own
    temporary box directory and its own throwaway uid."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def name(self) -> str:
        return self.backend.name

    # --- public ---------------------------------------------------------------------

    def run(
        self,
        code: str,
        tests: list[dict],
        limits: Limits | None = None,
        language: Literal["python", "cpp"] | str = "python",
        *,
        fn_name: str | None = None,
        starter_code: str | None = None,
    ) -> list[TestResult]:
        """One ``TestResult`` per test, in order. Never raises for bad code or tests."""
        limits = limits or Limits()
        language = normalize_language(language)
        fn_name = fn_name or fn_name_from_starter(starter_code)
        box = tempfile.mkdtemp(prefix=f"reasonmill-box-{os.getpid()}-")  # owner pid: see engine/leftovers.py
        try:
            os.chmod(box, 0o755)
            if language == "python":
                results = self._run_python(code, tests, limits, box, fn_name)
            elif language == "cpp":
                results = self._run_cpp(code, tests, limits, box)
            else:
                results = [
                    self._result(i, t, "unsupported", f"language {language!r} is not supported") for i, t in enumerate(tests)
                ]
        finally:
            shutil.rmtree(box, ignore_errors=True)
        return results

    # --- helpers --------------------------------------------------------------------

    def _result(self, i: int, test: dict, status: str, message: str = "", **kw) -> TestResult:
        return TestResult(
            index=i,
            kind=str(test.get("kind")),
            status=status,
            passed=status == "passed",
            message=message,
            backend=self.backend.name,
            warning=self.backend.warning,
            **kw,
        )

    def _exec(self, cmd: list[str], limits: Limits, box: str, *, stdin: bytes = b"", cpu: float, wall: float,
              memory_mb: int | None = None, build_writable: bool = False, result_fd: bool = False,
              progress_timeout: float | None = None) -> ExecResult:  # fmt: skip
        w: Wrapped = self.backend.wrap(
            cmd, limits, box, cpu=cpu, memory_mb=memory_mb or limits.memory_mb, wall=wall, build_writable=build_writable
        )
        try:
            res = execute(
                w.argv,
                stdin=stdin,
                wall_timeout=wall,
                output_cap=limits.output_cap_bytes,
                result_fd=result_fd,
                progress_timeout=progress_timeout,
                cwd=w.cwd,
                env=w.env,
                waiting=w.waiting,
            )
        finally:
            self.backend.after_run(w)
        if w.box is not None:
            res.limit_hit = w.box.limit_hit
        return res

    def _forked(self, mode: str, program: str, argv: list[str], limits: Limits, *, stdin: bytes, cpu: float,
                wall: float, progress_timeout: float | None = None) -> ExecResult | None:  # fmt: skip
        """A Python run forked by the backend's zygote, or None (then it starts a box)."""
        if not isinstance(self.backend, BwrapBackend):
            return None
        return self.backend.run_in_zygote(mode, program, argv, limits, stdin=stdin, cpu=cpu, wall=wall,
                                          progress_timeout=progress_timeout)  # fmt: skip

    def _stdin_result(self, i: int, test: dict, res: ExecResult) -> TestResult:
        kw = {"stdout": _text(res.stdout), "stderr": _text(res.stderr), "duration_s": round(res.duration_s, 4)}
        if res.output_capped:
            return self._result(i, test, "output_limit", "output exceeded the cap; killed", **kw)
        if res.timed_out:
            return self._result(i, test, "timeout", "wall-clock timeout; process group killed", **kw)
        if res.returncode != 0:
            status, msg = _signal_status(res.returncode, res.limit_hit)
            return self._result(i, test, status, msg, **kw)
        expected = test.get("output") or ""
        if outputs_match(res.stdout.decode("utf-8", errors="replace"), expected):
            return self._result(i, test, "passed", **kw)
        return self._result(i, test, "failed", f"expected {_text(expected, 300)!r}", **kw)

    # --- python ---------------------------------------------------------------------

    def _run_python(self, code: str, tests: list[dict], limits: Limits, box: str, fn_name: str | None) -> list[TestResult]:
        lay = self.backend.layout(box)
        wants_sorted = prelude.names_sortedcontainers(code, *(str(t.get("input") or "") for t in tests))
        has_sorted = prelude.write_lib(box, sortedcontainers=wants_sorted)
        program = prelude.program(code, f"{lay.box}/{prelude.LIB_DIR}", sortedcontainers=has_sorted)
        Path(box, "solution.py").write_text(program, encoding="utf-8")
        os.chmod(os.path.join(box, "solution.py"), 0o644)
        results: dict[int, TestResult] = {}
        py = self.backend.python
        batch = [(i, t) for i, t in enumerate(tests) if t.get("kind") in BATCH_KINDS]
        for i, t in enumerate(tests):
            kind = t.get("kind")
            if kind == "stdin":
                stdin = (t.get("input") or "").encode()
                res = self._forked("script", program, [f"{lay.box}/solution.py"], limits, stdin=stdin,
                                   cpu=limits.cpu_seconds, wall=limits.wall_timeout)  # fmt: skip
                if res is None:
                    res = self._exec([py, "-I", f"{lay.box}/solution.py"], limits, box, stdin=stdin,
                                     cpu=limits.cpu_seconds, wall=limits.wall_timeout)  # fmt: skip
                results[i] = self._stdin_result(i, t, res)
            elif kind not in BATCH_KINDS:
                results[i] = self._result(i, t, "unsupported", f"unknown test kind {kind!r}")
        if batch:
            placed = bytecode.copy_into(self.backend.python, box, {HARNESS: "harness", Path(_wire.__file__): "_wire"})
            results.update(self._run_batch(batch, limits, box, fn_name, has_sorted, placed[HARNESS], program))
        return [results[i] for i in range(len(tests))]

    def _run_batch(self, batch: list[tuple[int, dict]], limits: Limits, box: str, fn_name: str | None,
                   has_sorted: bool, harness: str, program: str) -> dict[int, TestResult]:  # fmt: skip
        """Run batch tests in one sandbox; restart after the test that killed it.
        ``program``: the solution file's text, for a zygote's box (``zygote.py``)."""
        lay = self.backend.layout(box)
        argv = [self.backend.python, "-I", f"{lay.box}/{harness}", f"{lay.box}/solution.py",
                f"{lay.box}/{prelude.LIB_DIR}", "{RESULT_FD}"] + (["sortedcontainers"] if has_sorted else [])  # fmt: skip
        out: dict[int, TestResult] = {}
        pending = list(batch)
        restarts = 0
        while pending:
            spec = _spec(pending, fn_name, limits)
            n = len(pending)
            cpu, wall = limits.cpu_seconds * (n + 1), limits.wall_timeout * (n + 1) + 2.0
            stdin, progress = json.dumps(spec).encode(), limits.wall_timeout + 2.0
            res = self._forked("harness", program, ["harness", *argv[3:5], *argv[6:]], limits, stdin=stdin,
                               cpu=cpu, wall=wall, progress_timeout=progress)  # fmt: skip
            if res is None:
                res = self._exec(argv, limits, box, stdin=stdin, cpu=cpu, wall=wall, result_fd=True,
                                 progress_timeout=progress)  # fmt: skip
            by_index = dict(pending)
            running: int | None = None
            load_failure: dict | None = None
            progressed = False
            for line in res.events:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "start":
                    running = ev.get("i")
                elif ev.get("event") == "done" and ev.get("i") in by_index and ev["i"] not in out:
                    i = ev["i"]
                    out[i] = self._batch_result(i, by_index[i], ev)
                    running, progressed = None, True
                elif ev.get("event") == "load_failed":
                    load_failure = ev
            if load_failure is not None:
                for i, t in pending:
                    out.setdefault(i, self._result(i, t, load_failure.get("status", "error"),
                                                   str(load_failure.get("message", ""))[:TEXT_CAP],
                                                   stderr=_text(res.stderr)))  # fmt: skip
                break
            pending = [(i, t) for i, t in pending if i not in out]
            if not pending:
                break
            restarts += 1
            if running is None and progressed and restarts <= MAX_BATCH_RESTARTS:
                continue  # the harness reported the test that broke the solution and stopped
            # The process ended before finishing: blame the test that was running.
            if res.output_capped:
                status, msg = "output_limit", "output exceeded the cap; killed"
            elif res.timed_out or res.stalled:
                status, msg = "timeout", "wall-clock timeout; process group killed"
            else:
                status, msg = _signal_status(res.returncode, res.limit_hit)
                if res.returncode == 0:
                    status, msg = "error", "the program exited before this test finished (exit code 0)"
            blamed = [running] if running is not None and running in by_index else []
            if running == -1 or not blamed:
                blamed = [i for i, _ in pending]  # died while loading, or no progress at all
            for i in blamed:
                out[i] = self._result(i, by_index[i], status, msg, stdout=_text(res.stdout), stderr=_text(res.stderr))
            pending = [(i, t) for i, t in pending if i not in out]
            if restarts > MAX_BATCH_RESTARTS:
                for i, t in pending:
                    out[i] = self._result(i, t, "crashed", "not run: too many crashes of the test process")
                break
        return out

    def _batch_result(self, i: int, test: dict, ev: dict) -> TestResult:
        """A ``done`` event as a result. A functional test's value is decoded and
        compared here; the harness never saw the expected output."""
        status, message = ev.get("status"), str(ev.get("message", ""))[:TEXT_CAP]
        kw = {"stdout": _text(ev.get("stdout", "")), "duration_s": float(ev.get("duration_s") or 0.0)}
        functional = test.get("kind") == "functional"
        if status == "returned" and functional:
            try:
                got = _wire.Decoder(_box_prelude.TreeNode, _box_prelude.ListNode).message(ev.get("value"))
                expected = json.loads(test.get("output") or "null")
            except (ValueError, TypeError, RecursionError) as e:
                return self._result(i, test, "error", f"cannot compare the return value: {e}"[:TEXT_CAP], **kw)
            if returned_matches(got, expected):
                return self._result(i, test, "passed", **kw)
            return self._result(i, test, "failed", f"expected {_text(test.get('output') or '', 300)}, got {_text(repr(got), 300)}",
                                **kw)  # fmt: skip
        if status not in ("failed", "error", "timeout", "crashed", "unsupported") and not (status == "passed" and not functional):
            status, message = "error", f"harness reported {status!r}"
        return self._result(i, test, status, message, **kw)

    # --- c++ ------------------------------------------------------------------------

    def _run_cpp(self, code: str, tests: list[dict], limits: Limits, box: str) -> list[TestResult]:
        lay = self.backend.layout(box)
        Path(box, "solution.cpp").write_text(code, encoding="utf-8")
        os.chmod(os.path.join(box, "solution.cpp"), 0o644)
        build = os.path.join(box, "build")
        os.mkdir(build)
        os.chmod(build, 0o777)  # the compiler runs as the throwaway uid
        gxx = shutil.which("g++")
        if not gxx:
            return [self._result(i, t, "compile_error", "g++ not found on this machine") for i, t in enumerate(tests)]
        comp = self._exec(
            [gxx, "-O2", "-std=gnu++17", "-o", f"{lay.build}/a.out", f"{lay.box}/solution.cpp"], limits, box,
            cpu=limits.compile_timeout, wall=limits.compile_timeout, memory_mb=limits.compile_memory_mb,
            build_writable=True,
        )  # fmt: skip
        if comp.returncode != 0 or not os.path.exists(os.path.join(build, "a.out")):
            msg = "compile timed out" if comp.timed_out else "g++ failed"
            err = _text(comp.stderr, 4000)
            return [self._result(i, t, "compile_error", msg, stderr=err) for i, t in enumerate(tests)]
        os.chmod(build, 0o755)
        results = []
        for i, t in enumerate(tests):
            if t.get("kind") != "stdin":
                results.append(self._result(i, t, "unsupported", f"C++ runs stdin tests only, not {t.get('kind')!r}"))
                continue
            res = self._exec(
                [f"{lay.build}/a.out"], limits, box,
                stdin=(t.get("input") or "").encode(), cpu=limits.cpu_seconds, wall=limits.wall_timeout,
            )  # fmt: skip
            results.append(self._stdin_result(i, t, res))
        return results


def _spec(tests: list[tuple[int, dict]], fn_name: str | None, limits: Limits) -> dict:
    """What the harness gets: each test's code or arguments (never an expected output),
    the names the tests use and the names they are about (see ``testnames``)."""
    spec_tests, names, subjects = [], set(), set()
    for i, t in tests:
        entry = {"i": i, "kind": t.get("kind"), "input": t.get("input")}
        if t.get("kind") == "check":
            entry["target"] = t.get("output")  # the candidate expression, e.g. Solution().f
        if t.get("kind") in ("assert", "check"):
            code, target = str(t.get("input") or ""), str(entry.get("target") or "")
            names |= testnames.used_names(code, target)
            subjects |= testnames.subjects(code, target)
        spec_tests.append(entry)
    return {"fn_name": fn_name, "timeout": limits.wall_timeout, "tests": spec_tests,
            "names": sorted(names), "subjects": sorted(subjects)}  # fmt: skip


def normalize_language(language: str | None) -> str:
    """Canonical language name: ``python``, ``cpp`` or the lowered input."""
    lang = (language or "python").strip().lower()
    if lang in ("python", "python3", "py", "py3", ""):
        return "python"
    if lang == "c" or re.fullmatch(r"(c\+\+|cpp|cxx|cc|gnu\+\+)\d*", lang):
        return "cpp"
    return lang


def get_runner(backend: Literal["auto", "bwrap", "rlimit"] = "auto", *, python: str | None = None,
               extra_ro_binds: tuple[str, ...] = (), reuse_interpreter: bool = True) -> Runner:  # fmt: skip
    """A runner with the named backend. ``auto`` takes bubblewrap when it is installed and
    a trial run works, else the rlimit fallback (which logs a warning).
    ``reuse_interpreter``: see :class:`BwrapBackend`."""
    if backend not in ("auto", "bwrap", "rlimit"):
        raise ValueError(f"sandbox backend {backend!r}: use 'auto', 'bwrap' or 'rlimit'")
    if backend in ("auto", "bwrap"):
        try:
            b = BwrapBackend(python=python, extra_ro_binds=extra_ro_binds, reuse_interpreter=reuse_interpreter)
            err = b.probe()
            if err is None:
                return Runner(b)
            problem = f"bubblewrap is installed but a trial run failed: {err}"
        except RuntimeError as e:
            problem = str(e)
        if backend == "bwrap":
            raise RuntimeError(f"sandbox backend 'bwrap' unavailable: {problem}")
        log.warning("sandbox: %s; falling back to the weaker rlimit backend", problem)
    return Runner(RlimitBackend(python=python))


def run(code: str, tests: list[dict], limits: Limits | None = None, language: str = "python", *,
        fn_name: str | None = None, starter_code: str | None = None,
        backend: Literal["auto", "bwrap", "rlimit"] = "auto") -> list[TestResult]:  # fmt: skip
    """Convenience one-shot: ``get_runner(backend).run(...)`` (probes the backend each
    call; keep a ``Runner`` for many runs)."""
    return get_runner(backend).run(code, tests, limits, language, fn_name=fn_name, starter_code=starter_code)
