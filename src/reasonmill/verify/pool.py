"""A process pool whose per-item timeouts and memory limits are enforced from outside.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot cancel a running task, so one
pathological sympy expression stalls a worker forever, and a worker killed by the OOM
killer breaks the whole executor. Why not SIGALRM (math-verify's own timeout): signals only
work in the main thread, and a C-level loop inside sympy may not even see them.

Here every worker is a plain ``multiprocessing.Process`` with its own duplex pipe. The
supervisor (``map``, in any thread; no signal handlers are installed) never blocks on a
worker: items are written to the pipe by a sender thread per worker, so an item larger
than the pipe buffer, queued behind a stuck item, blocks only that thread, and the
supervisor keeps checking deadlines. It waits on all pipes and process sentinels with a
deadline. A worker that overruns its item's deadline is SIGKILLed (which also ends its
sender thread's write) and replaced; the item gets a ``timeout`` result. Items queued
behind it go to other workers.

Each worker runs under an address-space limit (``RLIMIT_AS``, ``memory_limit`` bytes above
its size at start). An item that goes over it raises MemoryError in the worker, or (when
the function swallows that) leaves the worker's peak size near the limit; either way the
worker exits and is replaced, and the item gets a ``resource_limit`` result. A worker
that dies on its own (``kill -9`` from outside, a segfault, the OOM killer) is replaced
and its item is retried once before it is reported as ``crashed``. Other items keep
flowing.

Workers die with the pool's process: each asks the kernel for SIGKILL when its parent
goes (``PR_SET_PDEATHSIG``). That signal follows the *thread* that started the worker,
so workers are started from one pool-owned thread that lives until ``close()``.

Workers are reused across items and across ``map`` calls, and run an optional
``initializer`` once at start-up (e.g. to import sympy and warm math-verify's caches).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import queue
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Literal

Status = Literal["ok", "error", "timeout", "resource_limit", "crashed"]

#: Seconds a fresh worker may take to import its modules and run the initializer.
DEFAULT_STARTUP_TIMEOUT = 120.0
#: Address space a worker may add to its size at start: 2 GiB. Verifying a real answer
#: needs a few hundred MB at most; a pathological one (a 1 MB LaTeX answer, a power tower)
#: otherwise grows until the host's OOM killer steps in (17 GB was seen).
DEFAULT_MEMORY_LIMIT = 2 << 30
#: Exit code of a worker whose item raised MemoryError (the worker is not reused).
EXIT_MEMORY = 3


@dataclass(frozen=True)
class PoolResult:
    """Outcome of one item.

    ``status`` is ``ok`` (``value`` holds the return value), ``error`` (the function raised;
    ``error`` holds the formatted exception), ``timeout`` (the worker was killed after
    ``timeout`` seconds), ``resource_limit`` (the item went over the worker's memory limit)
    or ``crashed`` (the worker died twice on this item).
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


# --- the worker process ---------------------------------------------------------------------


def _die_with_parent(parent_pid: int | None) -> None:
    """Linux: have the kernel SIGKILL this worker when its parent dies, so no orphan
    keeps burning CPU or memory on a stuck item after the pipeline is gone. If the parent
    (``parent_pid``; None under forkserver, whose server is the parent and dies with the
    pool's process) died before the request took effect, exit now. Best effort elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)


def _address_space(field: str = "VmSize", status_fd: int | None = None) -> int:
    """Bytes of address space this process uses now (``VmSize``) or has ever used
    (``VmPeak``); 0 where /proc is missing. ``status_fd``: /proc/self/status kept open,
    read again from offset 0 (half the cost of opening it for every item)."""
    try:
        if status_fd is None:
            with open("/proc/self/status", "rb") as fh:
                text = fh.read()
        else:
            text = os.pread(status_fd, 16384, 0)
        at = text.index(field.encode() + b":") + len(field) + 1
        return int(text[at : text.index(b"kB", at)]) * 1024
    except (OSError, ValueError):
        return 0


def _limit_address_space(extra: int | None) -> int | None:
    """Set ``RLIMIT_AS`` to the current size + ``extra`` and return the size at which an
    item counts as over the limit (None: no limit). Relative, so a worker forked from a
    large parent (which inherits its mappings) gets the same headroom as a spawned one.

    The threshold is 5% of ``extra`` (plus glibc's top pad) below the limit: libraries that catch every
    Exception (math-verify, sympy) swallow the MemoryError, so the worker also checks its
    peak size after each item; an item that grew the worker to within that margin of the
    limit is over it, whatever the function returned."""
    if not extra:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    else:
        limit = soft
    # glibc asks the kernel for MALLOC_TOP_PAD_ more than it needs (the engine sets 64 MiB,
    # workdir.py): a refused, padded request fails that far below the limit
    pad = os.environ.get("MALLOC_TOP_PAD_", "")
    return limit - extra // 20 - (int(pad) if pad.isdigit() else 0)


def _worker_main(
    conn: Connection, initializer: Callable[..., Any] | None, initargs: tuple, memory_limit: int | None,
    parent_pid: int | None,
) -> None:  # fmt: skip
    """Worker loop: receive ``(task_id, fn_key, fn_bytes, item)``, reply ``(task_id, ok, payload)``.

    The function is sent pickled once per worker and cached by key, so a verifier object
    with settings is not re-pickled for every item. On MemoryError anywhere in the loop,
    or when an item took the worker's peak size near its limit, the worker exits with
    ``EXIT_MEMORY`` without replying: its heap may be left fragmented, and the exit code
    tells the supervisor which reason to give the item.
    """
    _die_with_parent(parent_pid)
    try:
        over = _limit_address_space(memory_limit)
        if initializer is not None:
            initializer(*initargs)
        status_fd = None
        if over and os.path.exists("/proc/self/status"):
            status_fd = os.open("/proc/self/status", os.O_RDONLY)
            if _address_space("VmPeak", status_fd) >= over:
                raise MemoryError(f"the initializer grew the worker to {_address_space('VmPeak') >> 20} MiB")
    except BaseException:
        conn.send(("init_error", traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    functions: dict[int, Callable[[Any], Any]] = {}
    while True:
        try:
            msg = conn.recv()
            if msg is None:
                return
            task_id, fn_key, fn_bytes, item = msg
            del msg
            try:
                if fn_bytes is not None:
                    functions[fn_key] = pickle.loads(fn_bytes)
                reply = (task_id, True, functions[fn_key](item))
            except MemoryError:
                raise
            except BaseException as exc:  # noqa: BLE001 - every failure is reported per item
                reply = (task_id, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
            del item
            if over and status_fd is not None and _address_space("VmPeak", status_fd) >= over:
                raise MemoryError  # caught and swallowed inside the function, or nearly there
            try:
                conn.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                conn.send((task_id, False, f"result is not picklable: {exc}"))
        except MemoryError:
            os._exit(EXIT_MEMORY)
        except (EOFError, OSError):
            return  # parent closed the pipe or died


# --- the supervisor's view of one worker ----------------------------------------------------


class _Worker:
    """One child process, the parent's end of its pipe, and the thread that writes to it.

    The supervisor only ever ``post``s: the sender thread does the blocking writes. Killing
    the process (and shutting the socket down) ends a write in progress, so the thread
    never outlives its worker.
    """

    def __init__(self, proc: mp.process.BaseProcess, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.ready = False
        self.started = time.monotonic()
        self.known_fns: set[int] = set()
        #: indices of the items posted and not answered yet, in the order the worker runs
        #: them; the first one is running, the others wait in the pipe (pipelining saves a
        #: parent round trip per item, which dominates on a loaded machine)
        self.tasks: deque[int] = deque()
        self.head_started = 0.0  # when the first item of ``tasks`` started running
        self._outbox: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._sender = threading.Thread(
            target=self._send_loop, daemon=True, name=f"reasonmill-verify-send-{proc.pid}"
        )
        self._sender.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def post(self, message: memoryview) -> None:
        """Queue one pickled message for the worker; never blocks."""
        self._outbox.put(message)

    def _send_loop(self) -> None:
        while True:
            message = self._outbox.get()
            if message is None:
                return
            try:
                self.conn.send_bytes(message)
            except (OSError, ValueError):
                return  # the worker is gone; the supervisor sees its sentinel

    def kill(self) -> None:
        """SIGKILL and reap (SIGKILL because a worker stuck in C code ignores SIGTERM),
        then end the sender thread and close the pipe."""
        try:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(timeout=5)
        finally:
            self._close_pipe()

    def stop(self) -> None:
        """Polite shutdown: ask the loop to end, then kill if it does not."""
        self.post(ForkingPickler.dumps(None))
        self.proc.join(timeout=1)
        self.kill()

    def _close_pipe(self) -> None:
        # Shut the socket down (through a duplicate: shutdown acts on the socket, not the
        # descriptor) so a write blocked in the sender thread fails now; close the
        # descriptor only once that thread is gone, or its next write could hit a reused one.
        try:
            with socket.socket(fileno=os.dup(self.conn.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass
        self._outbox.put(None)
        self._sender.join(timeout=5)
        if not self._sender.is_alive():
            self.conn.close()


# --- the pool -------------------------------------------------------------------------------


class VerifyPool:
    """Run a picklable function over items in worker processes, with outside timeouts.

    >>> with VerifyPool(workers=2, timeout=5.0) as pool:
    ...     results = pool.map(some_module.fn, items)   # list[PoolResult], input order

    ``fn`` must be picklable (a module-level function or an instance of a module-level
    class with ``__call__``). An item over the memory limit is ``resource_limit`` when
    ``fn`` raises MemoryError, and also when ``fn`` swallows it after growing the worker
    to near the limit; a single huge request refused at once and swallowed by ``fn``
    leaves no trace and gives ``fn``'s own result. ``map`` may be called from
    any thread; calls are serialized. ``mp_context`` defaults to ``spawn`` because forking
    a parent that runs threads (an async client, a progress bar) can deadlock the child.
    ``memory_limit`` is the address space (bytes) each worker may add to its size at
    start; ``None`` or 0 for no limit.
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
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        if workers < 1:
            raise ValueError(f"VerifyPool: workers must be >= 1, got {workers}")
        if timeout <= 0:
            raise ValueError(f"VerifyPool: timeout must be > 0 seconds, got {timeout}")
        if memory_limit is not None and memory_limit < 0:
            raise ValueError(f"VerifyPool: memory_limit must be >= 0 bytes or None, got {memory_limit}")
        self.workers = workers
        self.timeout = float(timeout)
        self.startup_timeout = float(startup_timeout)
        self.crash_retries = crash_retries
        self.prefetch = max(1, prefetch)
        self.memory_limit = memory_limit or None
        self._ctx = mp.get_context(mp_context)
        self._initializer = initializer
        self._initargs = initargs
        self._pool: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        #: the one thread that starts workers (see the module docstring: parent-death signal)
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="reasonmill-verify-start")
        #: Counters, useful in tests and progress output.
        self.killed_timeouts = 0
        self.replaced_crashes = 0
        self.resource_limits = 0

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
            self._starter.shutdown(wait=False)

    def __del__(self) -> None:  # best effort; close() is the real API
        try:
            for w in self._pool:
                w.kill()
            self._starter.shutdown(wait=False)
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

    def _start_process(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        parent_pid = None if self._ctx.get_start_method() == "forkserver" else os.getpid()
        proc = self._ctx.Process(
            target=_worker_main, daemon=True, name="reasonmill-verify",
            args=(child_conn, self._initializer, self._initargs, self.memory_limit, parent_pid),
        )  # fmt: skip
        try:
            proc.start()
        finally:
            child_conn.close()
        return _Worker(proc, parent_conn)

    def _spawn(self) -> _Worker:
        return self._starter.submit(self._start_process).result()

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
            hint = ""
            if "MemoryError" in msg[1] and self.memory_limit:
                gib = self.memory_limit / 2**30
                hint = f"\n(the initializer ran out of the workers' memory_limit of {gib:.2f} GiB)"
            raise PoolError(f"verify worker initializer failed:\n{msg[1]}{hint}")
        w.ready = True

    # -- the supervisor ----------------------------------------------------------------

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], timeout: float | None = None) -> list[PoolResult]:
        """Apply ``fn`` to every item; results in input order, one ``PoolResult`` each.

        Never raises for a bad item: errors, timeouts, memory overruns and crashes are
        per-item results. Raises ``PoolError`` only if workers cannot be started at all.
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

        def dispatch(w: _Worker) -> None:
            """Post items to a ready worker, up to ``prefetch`` in its pipe. Never blocks."""
            while w.ready and todo and len(w.tasks) < self.prefetch:
                i = todo.pop()
                send_fn = None if fn_key in w.known_fns else fn_bytes
                try:
                    message = ForkingPickler.dumps((i, fn_key, send_fn, items[i]))
                except Exception as exc:  # the item itself cannot be pickled
                    finish(i, PoolResult("error", error=f"item is not picklable: {exc}"))
                    continue
                w.known_fns.add(fn_key)
                if not w.tasks:
                    w.head_started = time.monotonic()
                w.tasks.append(i)
                w.post(message)

        def drain(w: _Worker) -> bool:
            """Read every reply already there; False when the pipe is closed (the worker
            is gone) or the worker broke the protocol."""
            while True:
                try:
                    if not w.conn.poll():
                        return True
                    if not w.tasks:
                        return False  # end of file, or a message nobody asked for
                    task_id, ok, payload = w.conn.recv()
                except (EOFError, OSError):
                    return False
                except Exception as exc:  # a result that cannot be unpickled here
                    task_id, ok, payload = w.tasks[0], False, f"cannot unpickle result: {exc}"
                now = time.monotonic()
                i = w.tasks.popleft()
                elapsed = now - w.head_started
                w.head_started = now
                if task_id != i:  # never trust this worker again
                    w.tasks.appendleft(i)
                    return False
                finish(i, PoolResult("ok", value=payload, elapsed=elapsed) if ok else PoolResult(
                    "error", error=payload, elapsed=elapsed))  # fmt: skip

        def charge_death(w: _Worker) -> None:
            """The worker died (sentinel fired or the pipe broke): charge its running item."""
            if not w.tasks:
                self.replaced_crashes += 1
                return
            i = w.tasks.popleft()
            elapsed = time.monotonic() - w.head_started
            w.proc.join(timeout=1)  # reap, so the exit code is known
            if w.proc.exitcode == EXIT_MEMORY:
                self.resource_limits += 1
                gib = (self.memory_limit or 0) / 2**30
                finish(i, PoolResult("resource_limit", elapsed=elapsed, error=(
                    f"MemoryError: over the {gib:.2f} GiB address-space limit (memory_limit); "
                    f"worker pid {w.pid} replaced")))  # fmt: skip
            else:
                self.replaced_crashes += 1
                attempts[i] += 1
                if attempts[i] > self.crash_retries:
                    finish(i, PoolResult("crashed", elapsed=elapsed, error=(
                        f"worker pid {w.pid} died (exit code {w.proc.exitcode}) on this item, "
                        f"{attempts[i]} times")))  # fmt: skip
                elif results[i] is None:
                    todo.append(i)
            requeue(w)

        stale = [w for w in self._pool if w.tasks]  # items of a map that raised PoolError
        for w in stale:
            w.kill()
        self._pool = [w for w in self._pool if w not in stale]
        self._ensure_workers()
        while remaining:
            for w in self._pool:
                dispatch(w)
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
                if drain(w) and w.proc.is_alive():
                    continue
                replace.append(w)
                charge_death(w)
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
                    ))  # fmt: skip
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
