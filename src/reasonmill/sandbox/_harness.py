"""In-sandbox test harness for Python: runs many tests of one solution in ONE process.

This file is copied into the sandbox and run by the sandboxed interpreter, so it must use
the standard library only and must not import ``reasonmill``. The host also imports it
for :func:`values_equal`, so the comparison rules live in exactly one place.

Protocol: ``python harness.py SPEC_JSON RESULT_FD``. The spec holds the solution path,
the function name (functional tests), the per-test timeout and the tests. For each test
the harness writes a JSON line ``{"event": "start", "i": i}`` and then
``{"event": "done", "i": i, "status": ..., "message": ...}`` on ``RESULT_FD``. The host
uses the ``start`` lines to know which test a crashed or hung process was running, so it
can blame that test alone and rerun the rest in a fresh process. ``{"event": "alive"}``
lines say a test is still within its timeout on a loaded machine (see
:class:`LoadAwareTimer`); they only keep the host's stall detector quiet.

A solution runs in the same process as this harness; a solution written to attack the
harness (writing fake lines on the result fd) can forge results. Stdin tests, which run
the program alone, are immune.
"""

from __future__ import annotations

import builtins
import io
import json
import math
import os
import signal
import sys
import time

MSG_CAP = 2000


class TestTimeout(BaseException):
    """Raised by the per-test timer; BaseException so ``except Exception`` cannot eat it."""


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def floats_close(a: float, b: float, tol: float = 1e-6) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol or abs(a - b) <= tol * max(abs(a), abs(b))


def values_equal(got: object, expected: object, tol: float = 1e-6) -> bool:
    """Deep equality where tuples equal lists and floats match to ``tol`` (rel or abs)."""
    if got == expected and type(got) is type(expected):
        return True
    if _number(got) and _number(expected):
        if isinstance(got, int) and isinstance(expected, int):
            return got == expected
        return floats_close(float(got), float(expected), tol)
    if isinstance(got, (list, tuple)) and isinstance(expected, (list, tuple)):
        return len(got) == len(expected) and all(values_equal(g, e, tol) for g, e in zip(got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(values_equal(got[k], expected[k], tol) for k in got)
    return got == expected


def _short(text: object) -> str:
    s = text if isinstance(text, str) else repr(text)
    return s if len(s) <= MSG_CAP else s[:MSG_CAP] + f"...[{len(s) - MSG_CAP} more chars]"


def _emit(fd: int, obj: dict) -> None:
    data = (json.dumps(obj) + "\n").encode()
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _run_delay() -> float | None:
    """Seconds this thread has spent runnable but waiting for a CPU, or None when the
    kernel does not report it (no schedstat)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class LoadAwareTimer:
    """The per-test timeout, on the time a test would take on an idle machine: wall time
    minus the time the process waited for a CPU while other processes ran.

    Why: on a loaded machine (a verify run with many workers, or CI) a test that needs
    2.6 s of CPU can take 10 s of wall time, and a plain wall-clock timer fails a correct
    solution (MBPP 123). Sleeping or blocked time still counts, so ``time.sleep(30)``
    times out as before. When the timer fires early because of load, it is re-armed for
    the rest and an ``alive`` line tells the host the process is not stuck; the wall time
    never stretches past ``MAX_STRETCH`` times the timeout.
    """

    MAX_STRETCH = 10.0

    def __init__(self, fd: int, timeout: float) -> None:
        self.fd, self.timeout = fd, timeout
        self.i = -1
        self.t0 = time.monotonic()
        self.delay0: float | None = None
        signal.signal(signal.SIGALRM, self._on_alarm)

    def start(self, i: int) -> None:
        self.i, self.t0, self.delay0 = i, time.monotonic(), _run_delay()
        signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def used(self) -> float:
        """Seconds the current test has used, not counting waits for a CPU."""
        wall = time.monotonic() - self.t0
        delay = _run_delay()
        if self.delay0 is None or delay is None:
            return wall
        return wall - (delay - self.delay0)

    def _on_alarm(self, signum, frame):  # noqa: ARG002
        left = self.timeout - self.used()
        if left > 0.01 and time.monotonic() - self.t0 < self.timeout * self.MAX_STRETCH:
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.05))
            _emit(self.fd, {"event": "alive", "i": self.i})
            return
        raise TestTimeout()


def _resolve_function(ns: dict, fn_name: str):
    sol = ns.get("Solution")
    if isinstance(sol, type) and hasattr(sol, fn_name):
        return getattr(sol(), fn_name)
    if callable(ns.get(fn_name)):
        return ns[fn_name]
    raise NameError(f"no method Solution.{fn_name} and no function {fn_name} in the solution")


def _run_test(ns: dict, test: dict, fn_name: str | None) -> tuple[str, str]:
    kind = test.get("kind")
    if kind == "functional":
        if not fn_name:
            return "error", "functional test but no function name (meta.fn_name or starter code)"
        fn = _resolve_function(ns, fn_name)
        raw_args = test.get("input") or ""
        args = [json.loads(line) for line in raw_args.split("\n") if line.strip()]
        expected = json.loads(test.get("output") or "null")
        got = fn(*args)
        try:
            got_norm = json.loads(json.dumps(got))
        except (TypeError, ValueError):
            got_norm = got
        if values_equal(got_norm, expected) or values_equal(got, expected):
            return "passed", ""
        return "failed", f"expected {_short(test.get('output'))}, got {_short(got)}"
    if kind == "assert":
        exec(compile(test.get("input") or "", "<test>", "exec"), ns)
        return "passed", ""
    if kind == "check":
        exec(compile(test.get("input") or "", "<test>", "exec"), ns)
        target = (test.get("output") or "").strip()
        if target:
            eval(compile(f"check({target})", "<test>", "eval"), ns)
        return "passed", ""
    return "unsupported", f"test kind {kind!r} is not run by the Python harness"


def main(argv: list[str]) -> int:
    spec = json.loads(open(argv[1], encoding="utf-8").read())
    fd = int(argv[2])
    timeout = float(spec.get("timeout", 5.0))
    clock = LoadAwareTimer(fd, timeout)
    real_stdout = sys.stdout
    sys.stdin = io.StringIO("")
    ns: dict = {"__name__": "__solution__", "__builtins__": builtins}
    # Loading the solution counts as test -1: a crash there is blamed on the load.
    _emit(fd, {"event": "start", "i": -1})
    sys.stdout = io.StringIO()
    try:
        clock.start(-1)
        src = open(spec["solution"], encoding="utf-8").read()
        exec(compile(src, "solution.py", "exec"), ns)
        clock.stop()
    except TestTimeout:
        _emit(fd, {"event": "load_failed", "status": "timeout", "message": "loading the solution timed out"})
        return 0
    except BaseException as e:  # noqa: BLE001 - any failure to load fails every test
        clock.stop()
        _emit(fd, {"event": "load_failed", "status": "error", "message": _short(f"{type(e).__name__}: {e}")})
        return 0
    finally:
        sys.stdout = real_stdout
    for test in spec["tests"]:
        i = test["i"]
        _emit(fd, {"event": "start", "i": i})
        sys.stdout = buf = io.StringIO()
        t0 = time.perf_counter()
        try:
            clock.start(i)
            status, message = _run_test(ns, test, spec.get("fn_name"))
        except TestTimeout:
            status, message = "timeout", f"test exceeded {timeout:g}s"
        except AssertionError as e:
            status, message = "failed", _short(f"AssertionError: {e}")
        except BaseException as e:  # noqa: BLE001 - SystemExit, MemoryError, RecursionError ...
            status, message = "error", _short(f"{type(e).__name__}: {e}")
        finally:
            clock.stop()
            sys.stdout = real_stdout
        _emit(fd, {"event": "done", "i": i, "status": status, "message": message,
                   "stdout": _short(buf.getvalue()), "duration_s": round(time.perf_counter() - t0, 4)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
