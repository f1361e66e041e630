"""In-sandbox test harness for Python: two processes, so that tests cannot be faked.

Run as ``python -I harness.py SOLUTION LIB_DIR RESULT_FD [sortedcontainers]`` with the
spec (JSON: ``fn_name``, ``timeout``, ``tests``) on stdin. Standard library only: this
file is copied into the sandbox next to ``_wire.py``.

- The **supervisor** (this process) reads the spec, runs the tests' own code (``assert``
  lines, ``check``) and reports on ``RESULT_FD``. It never runs a line of the solution.
- The **worker** is forked before the spec is read, so the tests never exist in its
  memory. It closes every fd but its two pipes (stdin becomes ``/dev/null``), loads the
  solution and answers the supervisor's requests: call this, read that attribute.
- What the worker sends back is decoded by :mod:`_wire` into fresh objects of builtin
  types, so an ``__eq__`` that always returns True, an ``int`` subclass or a patched
  builtin cannot reach a comparison. An object the tests only pass around (an instance of
  a solution's class, MBPP's ``Node``) stays in the worker behind a :class:`Remote`, whose
  ``==`` is identity. A function's return value must be a builtin value; else it fails.
- Functional tests: the supervisor reports the returned value and the host compares it
  with the expected output, which never enters the sandbox.
- The supervisor makes itself non-dumpable (``PR_SET_DUMPABLE 0``), so the worker (same
  uid) cannot read its memory through ``/proc`` or ``ptrace``; the worker never holds the
  result fd, so whatever it writes anywhere, only the supervisor's verdicts count.
- A solution defining a name the tests use to check (``len``, ``sorted``, ``is_same_tree``)
  does not replace it for the tests; only the name a test is about (``assert sum(1, 2) ==
  3``, ``check(add)``) may be a builtin's or prelude's name. The host lists both in the
  spec (``subjects``, ``names``; see ``reasonmill.sandbox.testnames``).

Events on ``RESULT_FD``, one JSON line each: ``start`` (test ``i`` began; ``-1`` is the
load), ``alive`` (still within its timeout on a loaded machine), ``done`` (status
``passed``/``failed``/``error``/``timeout``/``crashed``/``unsupported``, or ``returned``
with the encoded ``value`` of a functional test) and ``load_failed``. After a test that
killed or hung the worker the supervisor exits; the host reruns the remaining tests.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import sys
import time

sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # ``-I`` leaves the script's dir out
import _wire  # noqa: E402

MSG_CAP = 2000
MAX_MESSAGE = 64 << 20  # bytes of one reply from the worker
SORTED_NAMES = ("SortedList", "SortedKeyList", "SortedDict", "SortedSet")


class TestTimeout(BaseException):
    """Raised by the per-test timer; BaseException so ``except Exception`` cannot eat it."""


class WorkerGone(BaseException):
    """The worker died, hung or broke the protocol; the test cannot go on."""


class SolutionError(Exception):
    """An exception of the solution that is not a builtin exception type."""


def _short(text: object) -> str:
    s = text if isinstance(text, str) else repr(text)
    return s if len(s) <= MSG_CAP else s[:MSG_CAP] + f"...[{len(s) - MSG_CAP} more chars]"


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _emit(fd: int, obj: dict) -> None:
    _write_all(fd, (json.dumps(obj) + "\n").encode())


def _run_delay(path: str) -> float | None:
    """Seconds a thread has spent runnable but waiting for a CPU (``schedstat``), or None."""
    try:
        with open(path, "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class LoadAwareTimer:
    """The per-test timeout, on the time a test would take on an idle machine: wall time
    minus the time the supervisor and the worker waited for a CPU while others ran.

    Why: on a loaded machine a test that needs 2.6 s of CPU can take 10 s of wall time,
    and a plain wall clock fails a correct solution (MBPP 123). Sleeping or blocked time
    still counts. When the timer fires early because of load it is re-armed for the rest
    and an ``alive`` line tells the host the run is not stuck; the wall time never
    stretches past ``MAX_STRETCH`` times the timeout. ``fired`` stays set when a test
    swallowed the timeout (``except:``), so the test still times out.
    """

    MAX_STRETCH = 10.0

    def __init__(self, fd: int, timeout: float, worker_pid: int) -> None:
        self.fd, self.timeout = fd, timeout
        self.paths = ("/proc/thread-self/schedstat", f"/proc/{worker_pid}/schedstat")
        self.i, self.t0, self.delay0, self.fired = -1, time.monotonic(), None, False
        signal.signal(signal.SIGALRM, self._on_alarm)

    def _delay(self) -> float | None:
        parts = [_run_delay(p) for p in self.paths]
        return None if None in parts else sum(parts)

    def start(self, i: int) -> None:
        self.i, self.t0, self.delay0, self.fired = i, time.monotonic(), self._delay(), False
        signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def used(self) -> float:
        wall = time.monotonic() - self.t0
        delay = self._delay()
        return wall if self.delay0 is None or delay is None else wall - (delay - self.delay0)

    def _on_alarm(self, signum, frame):  # noqa: ARG002
        left = self.timeout - self.used()
        if left > 0.01 and time.monotonic() - self.t0 < self.timeout * self.MAX_STRETCH:
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.05))
            _emit(self.fd, {"event": "alive", "i": self.i})
            return
        self.fired = True
        raise TestTimeout()


# --- the worker: the solution's process ------------------------------------------------


def _duck_node(obj) -> str | None:
    """``"T"`` for a tree node, ``"L"`` for a list node (any class: solutions often define
    their own ``TreeNode``), else None."""
    d = getattr(obj, "__dict__", None)
    if type(d) is not dict or "val" not in d:
        return None
    if "left" in d and "right" in d:
        return "T"
    return "L" if "next" in d else None


def _close_fds_except(keep: set[int]) -> None:
    try:
        top = min(os.sysconf("SC_OPEN_MAX"), 1 << 16)  # the RLIMIT_NOFILE soft limit
    except (ValueError, OSError):
        top = 1 << 16
    lo = 3
    for fd in sorted(k for k in keep if k >= 3) + [max(top, max(keep) + 1)]:
        os.closerange(lo, fd)
        lo = fd + 1


class _Worker:
    """Runs in the forked child: loads the solution, then serves requests until EOF."""

    def __init__(self, req_fd: int, rep_fd: int, solution: str, prelude) -> None:
        self.req, self.rep_fd, self.solution, self.prelude = os.fdopen(req_fd, "rb"), rep_fd, solution, prelude
        self.ns: dict = {"__name__": "__solution__", "__builtins__": builtins}
        self.handles: list = []
        self.last_args: list = [[], {}]

    def serve(self) -> None:
        real_stdout = sys.stdout
        while True:
            line = self.req.readline()
            if not line:
                return
            sys.stdout = buf = io.StringIO()
            req: dict = {}
            try:
                req = json.loads(line)
                reply = {"ok": self.handle(req)}
            except BaseException as e:  # noqa: BLE001 - the solution's own errors, SystemExit included
                reply = {"exc": [type(e).__name__, _short(str(e))]}
            finally:
                sys.stdout = real_stdout
            reply["out"] = _short(buf.getvalue())
            reply["s"] = req.get("s")
            try:
                data = _wire.dumps(reply)
            except (TypeError, ValueError) as e:
                data = _wire.dumps({"exc": ["TypeError", _short(f"unencodable reply: {e}")], "out": "", "s": req.get("s")})
            _write_all(self.rep_fd, data)

    def _resolve(self, ref):
        if type(ref) is list and len(ref) == 2 and ref[0] == "n" and type(ref[1]) is str:
            if ref[1] not in self.ns:
                raise NameError(f"name {ref[1]!r} is not defined by the solution")
            return self.ns[ref[1]]
        if type(ref) is list and len(ref) == 2 and ref[0] == "h" and type(ref[1]) is int:
            return self.handles[ref[1]]
        raise ValueError(f"bad ref {ref!r}")

    def _handle(self, obj) -> dict:
        self.handles.append(obj)
        return {"v": {"$": "ref", "v": ["h", len(self.handles) - 1]}, "n": []}

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "load":
            return self.load()
        if op == "entry":
            return self._handle(_resolve_function(self.ns, req["a"]))
        if op == "after":  # the arguments of the last call, as it left them
            return _wire.Encoder(node_kind=_duck_node).message(self.last_args)
        target = self._resolve(req.get("f"))
        if op == "get":
            value = target if req.get("a") is None else getattr(target, req["a"])
            try:
                return _wire.Encoder().message(value)
            except _wire.WireError:
                return self._handle(value)
        decoder = _wire.Decoder(self.prelude.TreeNode, self.prelude.ListNode, self._resolve)
        if op == "set":
            setattr(target, req["a"], decoder.message(req["v"]))
            return {"v": None, "n": []}
        if op == "call":
            args, kwargs = decoder.message(req["v"])
            self.last_args = [args, kwargs]
            result = target(*args, **kwargs)
            if isinstance(target, type):
                return self._handle(result)  # a constructor: the instance stays here
            try:
                return _wire.Encoder(node_kind=_duck_node).message(result)
            except _wire.WireError as e:
                raise TypeError(f"the solution returned a value that is not a builtin type: {e}") from None
        raise ValueError(f"unknown request {op!r}")

    def load(self) -> dict:
        src = open(self.solution, encoding="utf-8").read()
        exec(compile(src, "solution.py", "exec"), self.ns)
        names = []
        missing = object()
        for name, obj in list(self.ns.items()):
            if name.startswith("__") and name.endswith("__") or obj is getattr(self.prelude, name, missing):
                continue
            if type(obj).__name__ == "module":
                names.append([name, "module", getattr(obj, "__name__", None)])
            elif callable(obj):
                mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
                origin = [mod, qual] if type(mod) is str and type(qual) is str and mod != "__solution__" else None
                names.append([name, "callable", origin])
            else:
                names.append([name, "other", None])
        return {"v": names, "n": []}


def _resolve_function(ns: dict, fn_name: str):
    sol = ns.get("Solution")
    if isinstance(sol, type) and hasattr(sol, fn_name):
        return getattr(sol(), fn_name)
    if callable(ns.get(fn_name)):
        return ns[fn_name]
    raise NameError(f"no method Solution.{fn_name} and no function {fn_name} in the solution")


def _start_worker(solution: str, prelude) -> tuple[int, int, int]:
    """Fork the worker; returns (pid, request fd, reply fd) on the supervisor's side."""
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 70
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            _close_fds_except({0, 1, 2, req_r, rep_w})
            sys.stdin = io.StringIO("")
            _Worker(req_r, rep_w, solution, prelude).serve()
            code = 0
        finally:
            os._exit(code)
    os.close(req_r)
    os.close(rep_w)
    return pid, req_w, rep_r


# --- the supervisor ----------------------------------------------------------------------


class Remote:
    """An object that stays in the worker (a function, class or instance of the solution).
    Calling it and reading or writing its attributes are requests to the worker; nothing
    else is: its ``==`` and ``hash`` are identity, and it has no truth value (else a class
    posing as a function would pass ``assert f(x)``)."""

    __slots__ = ("_link", "_ref")

    def __init__(self, link: Link, ref: list) -> None:
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_ref", ref)

    def __call__(self, *args, **kwargs):
        value = self._link.request({"op": "call", "f": self._ref}, [list(args), kwargs])
        if value is None and any(type(a) in _MUTABLE for a in [*args, *kwargs.values()]):
            # ``nums = [3, 1]; f(nums); assert nums == [1, 3]``: an in-place function's
            # changes to list/dict/set arguments come back into the test's own objects.
            after = self._link.request({"op": "after"})
            if type(after) is list and len(after) == 2 and type(after[0]) is list and type(after[1]) is dict:
                for orig, new in [*zip(args, after[0]), *((v, after[1].get(k)) for k, v in kwargs.items())]:
                    _write_back(orig, new)
        return value

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._link.request({"op": "get", "f": self._ref, "a": name})

    def __setattr__(self, name: str, value) -> None:
        self._link.request({"op": "set", "f": self._ref, "a": name}, value)

    def __bool__(self) -> bool:
        raise TypeError("a solution object has no truth value here: `assert f(x)` must get a builtin value")

    def __repr__(self) -> str:
        return f"<solution object {self._ref[1]!r}>"


_MUTABLE = (list, dict, set)


def _write_back(orig, new) -> None:
    """Give ``orig`` (a list, dict or set the test passed) the contents of ``new``."""
    if type(orig) is list and type(new) is list:
        orig[:] = new
    elif type(orig) in (dict, set) and type(new) is type(orig):
        orig.clear()
        orig.update(new)


_NOT_RAISED = (StopIteration, StopAsyncIteration)


def _exception(name: object, message: object) -> Exception:
    """The worker's exception, rebuilt as a builtin exception type (or SolutionError)."""
    cls = getattr(builtins, name, None) if isinstance(name, str) else None
    if isinstance(cls, type) and issubclass(cls, Exception) and cls not in _NOT_RAISED:
        try:
            return cls(str(message))
        except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
            pass
    return SolutionError(f"{name}: {message}")


def _exit_status(status: int) -> tuple[str, str]:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL:
            return "crashed", "the solution's process was killed (SIGKILL): memory, process or CPU limit"
        if sig == signal.SIGXCPU:
            return "timeout", "CPU time limit exceeded (SIGXCPU)"
        if sig == signal.SIGSEGV:
            return "crashed", "segmentation fault"
        return "crashed", f"the solution's process was killed by signal {sig}"
    return "error", f"the solution's process exited (code {os.WEXITSTATUS(status)}) during the test"


class Link:
    """The supervisor's end of the worker: one request, one reply. Once the worker is
    gone (died, hung, broke the protocol) every later request raises WorkerGone."""

    def __init__(self, pid: int, req_fd: int, rep_fd: int, prelude) -> None:
        self.pid, self.req_fd, self.prelude = pid, req_fd, prelude
        self.rep = os.fdopen(rep_fd, "rb")
        self.broken: tuple[str, str] | None = None
        self.out: list[str] = []
        self.seq = 0

    def encoder(self) -> _wire.Encoder:
        p = self.prelude
        return _wire.Encoder(
            node_kind=lambda o: "T" if type(o) is p.TreeNode else "L" if type(o) is p.ListNode else None,
            ref_of=lambda o: o._ref if type(o) is Remote else None,
        )

    def _ref(self, ref) -> Remote:
        if type(ref) is not list or len(ref) != 2 or ref[0] != "h" or type(ref[1]) is not int:
            raise _wire.WireError("a bad ref from the worker")
        return Remote(self, ref)

    def request(self, req: dict, *payload):
        """Send ``req`` (with ``payload[0]`` encoded as its ``v``), return the decoded reply."""
        if self.broken is not None:
            raise WorkerGone()
        if payload:
            try:
                req["v"] = self.encoder().message(payload[0])
            except _wire.WireError as e:
                raise TypeError(f"cannot pass this value to the solution: {e}") from None
        self.seq += 1
        req["s"] = self.seq
        try:
            _write_all(self.req_fd, _wire.dumps(req))
            line = self.rep.readline(MAX_MESSAGE + 1)
        except TestTimeout:
            self.kill(("timeout", "test timed out inside the solution"))
            raise
        except OSError:
            line = b""
        if not line.endswith(b"\n"):
            big = len(line) > MAX_MESSAGE
            self.kill(("error", f"the solution sent a value of more than {MAX_MESSAGE} bytes") if big else None)
            raise WorkerGone()
        try:
            reply = json.loads(line)
            if reply.get("s") != self.seq:
                raise ValueError("out of sequence")
            exc = reply.get("exc")
            value = None
            if exc is None:
                value = _wire.Decoder(self.prelude.TreeNode, self.prelude.ListNode, self._ref).message(reply.get("ok"))
        except (ValueError, AttributeError, TypeError, RecursionError) as e:
            self.kill(("error", _short(f"a garbled reply from the solution's process: {e}")))
            raise WorkerGone() from None
        out = reply.get("out")
        if isinstance(out, str) and out:
            self.out.append(out)
        if exc is not None:
            raise _exception(*(exc if type(exc) is list and len(exc) == 2 else ("Error", exc)))
        return value

    def kill(self, why: tuple[str, str] | None) -> None:
        """Kill and reap the worker; ``why`` None means it died by itself."""
        if self.broken is not None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            status = 0
        self.broken = why or _exit_status(status)


def _public(module) -> dict:
    return {n: getattr(module, n) for n in dir(module) if not n.startswith("_")}


def _trusted(origin) -> object | None:
    """The object ``module.qualname`` as the supervisor imports it itself, or None."""
    if not (type(origin) is list and len(origin) == 2 and all(type(x) is str for x in origin)):
        return None
    obj = _trusted_module(origin[0])
    if obj is None:
        return None
    try:
        for part in origin[1].split("."):
            obj = getattr(obj, part)
    except Exception:  # noqa: BLE001 - not importable here: the name stays remote
        return None
    return obj


def _trusted_module(name: object) -> object | None:
    """The module ``name`` when it is in the standard library (or already imported here):
    never a file the solution could have written."""
    if type(name) is not str:
        return None
    if name in sys.modules:
        return sys.modules[name]
    try:
        import importlib.util
        import sysconfig

        stdlib = tuple({sysconfig.get_paths()[k] + os.sep for k in ("stdlib", "platstdlib")})
        spec = importlib.util.find_spec(name)
        if spec is None or not (spec.origin in ("built-in", "frozen") or (spec.origin or "").startswith(stdlib)):
            return None
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - not importable here (or made up by the solution)
        return None


class Supervisor:
    def __init__(self, fd: int, spec: dict, link: Link, base: dict) -> None:
        self.fd, self.spec, self.link, self.base = fd, spec, link, base
        self.timeout = float(spec.get("timeout", 5.0))

    def namespace(self, names: list) -> dict:
        """The tests' globals: builtins, the prelude, and the solution's names the tests
        use (as remote objects, or as the supervisor's own module/stdlib object)."""
        ns = {"__name__": "__test__", "__builtins__": builtins, **self.base}
        protected = set(ns) | set(dir(builtins)) | {"check", "candidate"}
        allowed, used = set(self.spec.get("subjects") or ()), set(self.spec.get("names") or ())
        for entry in names:
            if not (type(entry) is list and len(entry) == 3 and type(entry[0]) is str):
                continue
            name, kind, info = entry
            if name not in used or (name in protected and name not in allowed):
                continue
            if kind == "module":
                obj = _trusted_module(info)
                if obj is not None:
                    ns[name] = obj
            elif kind == "callable":
                # A name the tests are about is always the solution's own code: a function
                # claiming ``__module__ = "math"`` must not be swapped for the real math.gcd.
                obj = None if name in allowed else _trusted(info)
                ns[name] = obj if obj is not None else Remote(self.link, ["n", name])
            else:
                ns[name] = self.link.request({"op": "get", "f": ["n", name], "a": None})
        return ns

    def run_test(self, ns: dict, test: dict) -> tuple[str, str, dict]:
        kind = test.get("kind")
        if kind == "functional":
            fn_name = self.spec.get("fn_name")
            if not fn_name:
                return "error", "functional test but no function name (meta.fn_name or starter code)", {}
            fn = self.link.request({"op": "entry", "a": fn_name})
            args = [json.loads(line) for line in (test.get("input") or "").split("\n") if line.strip()]
            got = fn(*args)
            try:
                value = self.link.encoder().message(got)
            except _wire.WireError as e:
                return "error", f"the return value cannot be checked: {e}", {}
            return "returned", "", {"value": value}
        if kind == "assert":
            exec(compile(test.get("input") or "", "<test>", "exec"), ns)
            return "passed", "", {}
        if kind == "check":
            exec(compile(test.get("input") or "", "<test>", "exec"), ns)
            target = (test.get("target") or "").strip()
            if target:
                eval(compile(f"check({target})", "<test>", "eval"), ns)
            return "passed", "", {}
        return "unsupported", f"test kind {kind!r} is not run by the Python harness", {}

    def run(self) -> int:
        link, fd = self.link, self.fd
        clock = LoadAwareTimer(fd, self.timeout, link.pid)
        real_stdout = sys.stdout
        _emit(fd, {"event": "start", "i": -1})
        failure = None
        try:
            clock.start(-1)
            ns = self.namespace(link.request({"op": "load"}))
        except TestTimeout:
            link.kill(("timeout", "loading the solution timed out"))
            failure = link.broken
        except WorkerGone:
            failure = link.broken
        except BaseException as e:  # noqa: BLE001 - any failure to load fails every test
            failure = ("error", _short(f"{type(e).__name__}: {e}"))
        finally:
            clock.stop()
        if failure is not None:
            _emit(fd, {"event": "load_failed", "status": failure[0], "message": failure[1]})
            link.kill(("error", "done"))
            return 0
        for test in self.spec["tests"]:
            i = test["i"]
            _emit(fd, {"event": "start", "i": i})
            sys.stdout = buf = io.StringIO()
            link.out = []
            extra: dict = {}
            t0 = time.perf_counter()
            try:
                clock.start(i)
                status, message, extra = self.run_test(ns, test)
            except TestTimeout:
                status, message = "timeout", f"test exceeded {self.timeout:g}s"
            except AssertionError as e:
                status, message = "failed", _short(f"AssertionError: {e}")
            except BaseException as e:  # noqa: BLE001 - SystemExit, MemoryError, RecursionError ...
                status, message = "error", _short(f"{type(e).__name__}: {e}")
            finally:
                clock.stop()
                sys.stdout = real_stdout
            if link.broken is not None:  # even when the test caught the error itself
                status, message = link.broken
                extra = {}
            elif clock.fired:
                status, message, extra = "timeout", f"test exceeded {self.timeout:g}s", {}
            _emit(fd, {"event": "done", "i": i, "status": status, "message": message, **extra,
                       "stdout": _short("".join(link.out) + buf.getvalue()),
                       "duration_s": round(time.perf_counter() - t0, 4)})  # fmt: skip
            if link.broken is not None:
                return 0  # the host reruns the remaining tests in a fresh sandbox
        os.kill(link.pid, signal.SIGKILL)  # not reaped: the sandbox's end does that, sooner
        return 0


def not_dumpable() -> str | None:
    """``prctl(PR_SET_DUMPABLE, 0)``: no same-uid process may read our memory or fds."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(4, 0, 0, 0, 0) != 0:
            return f"prctl(PR_SET_DUMPABLE, 0) failed: errno {ctypes.get_errno()}"
    except (ImportError, OSError, AttributeError) as e:
        return f"prctl(PR_SET_DUMPABLE, 0) unavailable: {e}"
    return None


def main(argv: list[str]) -> int:
    solution, lib, fd = argv[1], argv[2], int(argv[3])
    sys.path.append(lib)
    import _box_prelude as prelude  # the supervisor's own copy, loaded before any solution code

    base = _public(prelude)
    if "sortedcontainers" in argv[4:]:
        import sortedcontainers

        base.update({n: getattr(sortedcontainers, n) for n in SORTED_NAMES})
    problem = not_dumpable()
    if problem is not None:
        _emit(fd, {"event": "load_failed", "status": "error", "message": f"harness: {problem}; refusing to run"})
        return 0
    pid, req_fd, rep_fd = _start_worker(solution, prelude)
    link = Link(pid, req_fd, rep_fd, prelude)
    spec = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    sys.stdin = io.StringIO("")  # the tests' own input() sees an empty stream
    return Supervisor(fd, spec, link, base).run()


def exit_now(code: int) -> None:
    """Flush and leave without the interpreter's finalization: every verdict is already
    written (unbuffered, on the result fd), and tearing down the modules of two processes'
    worth of imports cost ~6 ms of CPU per sandboxed run."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv))
