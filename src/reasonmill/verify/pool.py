"""A process pool whose per-item timeouts are enforced from outside.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot cancel a running task, so one
pathological sympy expression stalls a worker forever, and a worker killed by the OOM
killer breaks the whole executor. Why not SIGALRM (math-verify's own timeout): signals only
work in the main thread, and a C-level loop inside sympy may not even see them.

Here every worker is a plain ``multiprocessing.Process`` with its own duplex pipe. The
parent (any thread; no signal handlers are installed) hands one item at a time to each idle
worker and waits on all pipes and process sentinels with a deadline. A worker that overruns
its item's deadline is SIGKILLed and replaced; the item gets a ``timeout`` result. A worker
that dies on its own (``kill -9`` from outside, a segfault, the OOM killer) is replaced and
its item is retried once before it is reported as ``crashed``. Other items keep flowing.

Workers are reused across items and across ``map`` calls, and run an optional
``initializer`` once at start-up (e.g. to import sympy and warm math-verify's caches).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

Status = Literal["ok", "error", "timeout", "crashed"]

#: Seconds a fresh worker may take to import its modules and run the initializer.
DEFAULT_STARTUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class PoolResult:
    """Outcome of one item.

    ``status`` is ``ok`` (``value`` holds the return value), ``error`` (the function raised;
    ``error`` holds the formatted exception), ``timeout`` (the worker was killed after
    ``timeout`` seconds) or ``crashed`` (the worker died twice on this item).
    """

    status: Status
    value: Any = None
    error: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class PoolError(RuntimeError):
    """The pool itself failed (workers cannot start), as opposed to one item failing."""


def _set_parent_death_signal() -> None:
    """Linux: have the kernel SIGKILL this worker when its parent dies, so no orphan
    keeps burning CPU on a stuck item after the pipeline is gone. Best effort."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def _worker_main(conn: Connection, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    """Worker loop: receive ``(task_id, fn_key, fn_bytes, item)``, reply ``(task_id, ok, payload)``.

    The function is sent pickled once per worker and cached by key, so a verifier object
    with settings is not re-pickled for every item.
    """
    _set_parent_death_signal()
    try:
        if initializer is not None:
            initializer(*initargs)
    except BaseException:
        conn.send(("init_error", traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    functions: dict[int, Callable[[Any], Any]] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # parent closed the pipe or died
        if msg is None:
            return
        task_id, fn_key, fn_bytes, item = msg
        try:
            if fn_bytes is not None:
                functions[fn_key] = pickle.loads(fn_bytes)
            value = functions[fn_key](item)
            reply = (task_id, True, value)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported per item
            reply = (task_id, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send((task_id, False, f"result is not picklable: {exc}"))
        except (EOFError, OSError, BrokenPipeError):
            return


class _Worker:
    """One child process and the parent's end of its pipe."""

    def __init__(self, ctx: mp.context.BaseContext, initializer, initargs) -> None:
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_worker_main, args=(child_conn, initializer, initargs), daemon=True, name="reasonmill-verify"
        )
        self.proc.start()
        child_conn.close()
        self.conn = parent_conn
        self.ready = False
        self.started = time.monotonic()
        self.known_fns: set[int] = set()
        #: indices of the items sent and not answered yet, in the order the worker runs them;
        #: the first one is running, the others wait in the pipe (pipelining saves a
        #: parent round trip per item, which dominates on a loaded machine)
        self.tasks: deque[int] = deque()
        self.head_started = 0.0  # when the first item of ``tasks`` started running

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL and reap. SIGKILL because a worker stuck in C code ignores SIGTERM."""
        try:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(timeout=5)
        finally:
            self.conn.close()

    def stop(self) -> None:
        """Polite shutdown: ask the loop to end, then kill if it does not."""
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(timeout=1)
        self.kill()


class VerifyPool:
    """Run a picklable function over items in worker processes, with outside timeouts.

    >>> with VerifyPool(workers=2, timeout=5.0) as pool:
    ...     results = pool.map(some_module.fn, items)   # list[PoolResult], input order

    ``fn`` must be picklable (a module-level function or an instance of a module-level
    class with ``__call__``). ``map`` may be called from any thread; calls are serialized.
    ``mp_context`` defaults to ``spawn`` because forking a parent that runs threads (an
    async client, a progress bar) can deadlock the child.
    """

    def __init__(
        self,
        workers: int = 2,
        timeout: float = 5.0,
        *,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple = (),
        mp_context: str = "spawn",
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        crash_retries: int = 1,
        prefetch: int = 4,
    ) -> None:
        if workers < 1:
            raise ValueError(f"VerifyPool: workers must be >= 1, got {workers}")
        if timeout <= 0:
            raise ValueError(f"VerifyPool: timeout must be > 0 seconds, got {timeout}")
        self.workers = workers
        self.timeout = float(timeout)
        self.startup_timeout = float(startup_timeout)
        self.crash_retries = crash_retries
        self.prefetch = max(1, prefetch)
        self._ctx = mp.get_context(mp_context)
        self._initializer = initializer
        self._initargs = initargs
        self._pool: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        #: Counters, useful in tests and progress output.
        self.killed_timeouts = 0
        self.replaced_crashes = 0

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> VerifyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for w in self._pool:
                w.stop()
            self._pool.clear()

    def __del__(self) -> None:  # best effort; close() is the real API
        try:
            for w in self._pool:
                w.kill()
        except Exception:
            pass

    def __getstate__(self) -> dict:
        raise TypeError("VerifyPool holds processes and cannot be pickled; create one per process")

    def pids(self) -> list[int]:
        """Process ids of the live workers (starts them if needed)."""
        with self._lock:
            self._ensure_workers()
            self._wait_ready([w for w in self._pool if not w.ready])
            return [w.pid for w in self._pool if w.pid is not None]

    def _spawn(self) -> _Worker:
        return _Worker(self._ctx, self._initializer, self._initargs)

    def _ensure_workers(self) -> None:
        if self._closed:
            raise PoolError("VerifyPool is closed")
        self._pool = [w for w in self._pool if w.proc.is_alive() or w.tasks]
        while len(self._pool) < self.workers:
            self._pool.append(self._spawn())

    def _wait_ready(self, pending: list[_Worker]) -> None:
        """Block until the given workers said ``ready`` (used by ``pids``)."""
        end = time.monotonic() + self.startup_timeout
        while pending:
            ready = wait([w.conn for w in pending] + [w.proc.sentinel for w in pending], timeout=end - time.monotonic())
            if not ready:
                raise PoolError(f"verify workers did not start within {self.startup_timeout:.0f}s")
            for w in list(pending):
                if w.conn in ready or w.proc.sentinel in ready:
                    self._handle_startup(w)
                    pending.remove(w)

    def _handle_startup(self, w: _Worker) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            raise PoolError(
                f"verify worker pid {w.pid} died during start-up (exit code {w.proc.exitcode}); "
                "check that the initializer imports work in a fresh interpreter, and that a script "
                "using the pool guards its top-level code with `if __name__ == '__main__':` "
                "(workers are spawned and re-import the main module)"
            ) from None
        if msg[0] == "init_error":
            raise PoolError(f"verify worker initializer failed:\n{msg[1]}")
        w.ready = True

    # -- the supervisor ----------------------------------------------------------------

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], timeout: float | None = None) -> list[PoolResult]:
        """Apply ``fn`` to every item; results in input order, one ``PoolResult`` each.

        Never raises for a bad item: errors, timeouts and crashes are per-item results.
        Raises ``PoolError`` only if workers cannot be started at all.
        """
        items = list(items)
        if not items:
            return []
        limit = self.timeout if timeout is None else float(timeout)
        try:
            fn_bytes = pickle.dumps(fn)
        except Exception as exc:
            raise TypeError(f"VerifyPool.map: {fn!r} is not picklable ({exc}); use a module-level function") from exc
        fn_key = hash(fn_bytes)
        with self._lock:
            return self._run(fn_bytes, fn_key, items, limit)

    def _run(self, fn_bytes: bytes, fn_key: int, items: Sequence[Any], limit: float) -> list[PoolResult]:
        results: list[PoolResult | None] = [None] * len(items)
        attempts = [0] * len(items)
        todo = list(range(len(items) - 1, -1, -1))  # stack, popped from the end: input order
        remaining = len(items)

        def finish(i: int, result: PoolResult) -> None:
            nonlocal remaining
            if results[i] is None:
                results[i] = result
                remaining -= 1

        def requeue(w: _Worker) -> None:
            """Items that waited in a dead worker's pipe go back to the queue, uncharged."""
            while w.tasks:
                i = w.tasks.pop()
                if results[i] is None:
                    todo.append(i)

        self._ensure_workers()
        while remaining:
            # hand work to ready workers, up to ``prefetch`` items each
            for w in self._pool:
                while w.ready and todo and len(w.tasks) < self.prefetch:
                    i = todo.pop()
                    send_fn = None if fn_key in w.known_fns else fn_bytes
                    try:
                        w.conn.send((i, fn_key, send_fn, items[i]))
                    except (OSError, BrokenPipeError):
                        todo.append(i)  # the worker is dead; its sentinel fires below
                        w.ready = False
                        break
                    except Exception as exc:  # the item itself cannot be pickled
                        finish(i, PoolResult("error", error=f"item is not picklable: {exc}"))
                        continue
                    w.known_fns.add(fn_key)
                    if not w.tasks:
                        w.head_started = time.monotonic()
                    w.tasks.append(i)
            if not remaining:
                break
            deadlines = [w.head_started + limit for w in self._pool if w.tasks]
            deadlines += [w.started + self.startup_timeout for w in self._pool if not w.ready]
            wait_for = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            handles: dict[Any, _Worker] = {}
            for w in self._pool:
                handles[w.conn] = w
                handles[w.proc.sentinel] = w
            ready = wait(list(handles), timeout=wait_for)
            seen: set[int] = set()
            replace: list[_Worker] = []
            for h in ready:
                w = handles[h]
                if id(w) in seen:
                    continue
                seen.add(id(w))
                if not w.ready:
                    try:
                        self._handle_startup(w)
                    except PoolError:
                        if not any(x.ready for x in self._pool if x is not w):
                            raise
                        replace.append(w)
                    continue
                broken = False
                while w.tasks:  # drain every result that is already there
                    try:
                        if not w.conn.poll():
                            break
                        task_id, ok, payload = w.conn.recv()
                    except (EOFError, OSError):
                        broken = True
                        break
                    except Exception as exc:  # a result that cannot be unpickled here
                        task_id, ok, payload = w.tasks[0], False, f"cannot unpickle result: {exc}"
                    now = time.monotonic()
                    i = w.tasks.popleft()
                    elapsed = now - w.head_started
                    w.head_started = now
                    if task_id != i:  # protocol broken: never trust this worker again
                        w.tasks.appendleft(i)
                        broken = True
                        break
                    finish(i, PoolResult("ok", value=payload, elapsed=elapsed) if ok else PoolResult(
                        "error", error=payload, elapsed=elapsed))
                if not broken and w.proc.is_alive():
                    continue
                # the worker died (sentinel fired or the pipe broke): charge the running item
                self.replaced_crashes += 1
                replace.append(w)
                if w.tasks:
                    i = w.tasks.popleft()
                    attempts[i] += 1
                    if attempts[i] > self.crash_retries:
                        finish(i, PoolResult(
                            "crashed", error=f"worker pid {w.pid} died (exit code {w.proc.exitcode}) on this item, twice"
                        ))
                    elif results[i] is None:
                        todo.append(i)
                    requeue(w)
            # enforce deadlines from outside
            now = time.monotonic()
            for w in self._pool:
                if w in replace:
                    continue
                if w.tasks and now >= w.head_started + limit:
                    i = w.tasks.popleft()
                    self.killed_timeouts += 1
                    replace.append(w)
                    finish(i, PoolResult(
                        "timeout", error=f"no result after {limit:g}s; worker pid {w.pid} killed", elapsed=now - w.head_started
                    ))
                    requeue(w)
                elif not w.ready and now >= w.started + self.startup_timeout:
                    replace.append(w)
                    if not any(x.ready for x in self._pool if x is not w):
                        for x in replace:
                            x.kill()
                        self._pool = [x for x in self._pool if x not in replace]
                        raise PoolError(f"verify workers did not start within {self.startup_timeout:.0f}s")
            for w in replace:
                w.kill()
            if replace:
                self._pool = [w for w in self._pool if w not in replace]
                self._ensure_workers()
        return [r if r is not None else PoolResult("error", error="lost") for r in results]
