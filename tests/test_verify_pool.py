"""VerifyPool: timeouts enforced from outside, a supervisor that never blocks, memory
limits, crashes survived, order kept, thread-safe, workers that die with the driver.

Real worker processes, real SIGKILLs, real rlimits; nothing is mocked.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reasonmill.verify.pool import DEFAULT_MEMORY_LIMIT, PoolError, VerifyPool

SRC = Path(__file__).resolve().parents[1] / "src"
MIB = 1 << 20

# --- worker functions (module level: spawned workers import them by name) ---------------


def square(x: int) -> int:
    return x * x


def sleepy(item: tuple[str, float]) -> str:
    """Sleeps ``item[1]`` seconds; ``inf`` means forever (a stuck item)."""
    name, seconds = item
    if seconds == float("inf"):
        while True:
            time.sleep(3600)
    time.sleep(seconds)
    return name


def busy_forever(x: int) -> int:
    """A CPU loop that never returns and never sleeps (no signal point needed)."""
    if x < 0:
        while True:
            pass
    return x + 1


def boom(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def whoami(x: int) -> int:
    return os.getpid()


def suicide(x: int) -> int:
    """Dies like an OOM-killed worker on item 7, every time."""
    if x == 7:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def failing_init() -> None:
    raise RuntimeError("initializer exploded")


def hang_or_zero(it: tuple[str, str]) -> int:
    """The issue's repro: a stuck item, then items larger than any pipe buffer."""
    if it[0] == "hang":
        while True:
            pass
    return 0


def length(it: tuple[str, str]) -> int:
    return len(it[1])


def hog(item: tuple[str, int]) -> int:
    """``("block", n)`` allocates n bytes at once; ``("grow", n)`` grows a list 1 MiB at a
    time up to n bytes (the way a runaway sympy expression grows); else returns n."""
    kind, n = item
    if kind == "block":
        return len(bytearray(n))
    if kind == "grow":
        chunks = []
        while len(chunks) * MIB < n:
            chunks.append(bytearray(MIB))
        return len(chunks)
    if kind == "swallow":  # as math-verify and sympy do: every Exception becomes "no result"
        try:
            return hog(("grow", n))
        except Exception:
            return -1
    return n


def address_space_limit(_: object) -> int:
    return resource.getrlimit(resource.RLIMIT_AS)[0]


def hog_init() -> None:
    bytearray(512 * MIB)


# --- tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool():
    with VerifyPool(workers=2, timeout=2.0) as p:
        yield p


def test_map_keeps_order_and_values(pool):
    results = pool.map(square, range(50))
    assert [r.status for r in results] == ["ok"] * 50
    assert [r.value for r in results] == [i * i for i in range(50)]
    assert pool.map(square, []) == []


def test_stuck_item_is_killed_and_others_finish(pool):
    before = pool.killed_timeouts
    items = [("a", 0.01), ("stuck", float("inf")), ("b", 0.01), ("c", 0.01), ("d", 0.01)]
    t0 = time.monotonic()
    results = pool.map(sleepy, items, timeout=1.0)
    elapsed = time.monotonic() - t0
    assert [r.status for r in results] == ["ok", "timeout", "ok", "ok", "ok"]
    assert [r.value for r in results if r.ok] == ["a", "b", "c", "d"]
    assert "killed" in results[1].error
    assert pool.killed_timeouts == before + 1
    # a fresh worker replaced the killed one: the pool keeps working at full size
    assert elapsed < 15
    assert [r.value for r in pool.map(square, [2, 3])] == [4, 9]
    assert len(set(pool.pids())) == 2


def test_slow_item_does_not_stall_the_other_worker(pool):
    """One worker is busy in a CPU loop; the other drains the queue meanwhile."""
    items = [-1] + list(range(40))
    t0 = time.monotonic()
    results = pool.map(busy_forever, items, timeout=1.5)
    assert results[0].status == "timeout"
    assert [r.value for r in results[1:]] == [i + 1 for i in range(40)]
    assert time.monotonic() - t0 < 15


def test_exception_is_a_per_item_error(pool):
    results = pool.map(boom, range(6))
    assert [r.status for r in results] == ["ok", "ok", "ok", "error", "ok", "ok"]
    assert "three is not allowed" in results[3].error


def test_worker_killed_from_outside_is_replaced(pool):
    pids = pool.pids()
    os.kill(pids[0], signal.SIGKILL)  # an idle worker, killed like `kill -9`
    time.sleep(0.2)
    results = pool.map(square, range(20))
    assert [r.value for r in results] == [i * i for i in range(20)]
    assert pids[0] not in pool.pids()


def test_worker_killed_mid_item_is_retried(pool):
    """kill -9 while an item runs: the item is retried once on a fresh worker."""
    items = [(f"s{i}", 0.6) for i in range(4)]
    victims = pool.pids()

    def killer() -> None:
        time.sleep(0.3)
        os.kill(victims[0], signal.SIGKILL)

    t = threading.Thread(target=killer)
    t.start()
    results = pool.map(sleepy, items, timeout=10)
    t.join()
    assert [r.value for r in results] == [f"s{i}" for i in range(4)]
    assert victims[0] not in pool.pids()


def test_item_that_always_kills_its_worker_is_reported_crashed(pool):
    results = pool.map(suicide, range(10))
    assert results[7].status == "crashed"
    assert [r.value for i, r in enumerate(results) if i != 7] == [i for i in range(10) if i != 7]


def test_usable_from_a_thread_without_signals():
    """No SIGALRM and no signal handlers: map works from a non-main thread."""
    handler_before = signal.getsignal(signal.SIGALRM)
    out: dict = {}

    def run() -> None:
        with VerifyPool(workers=2, timeout=1.0) as p:
            out["results"] = p.map(sleepy, [("x", 0.01), ("stuck", float("inf")), ("y", 0.01)])

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive()
    assert [r.status for r in out["results"]] == ["ok", "timeout", "ok"]
    assert signal.getsignal(signal.SIGALRM) == handler_before


def test_workers_are_reused(pool):
    pids = {r.value for r in pool.map(whoami, range(30))}
    assert pids <= set(pool.pids())
    assert 1 <= len(pids) <= 2


def test_close_stops_workers():
    p = VerifyPool(workers=2, timeout=1.0)
    pids = p.pids()
    p.close()
    time.sleep(0.2)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(PoolError):
        p.map(square, [1])


def test_initializer_failure_is_a_clear_error():
    with VerifyPool(workers=1, timeout=1.0, initializer=failing_init) as p:
        with pytest.raises(PoolError, match="initializer exploded"):
            p.map(square, [1])


def test_bad_arguments():
    with pytest.raises(ValueError):
        VerifyPool(workers=0)
    with pytest.raises(ValueError):
        VerifyPool(timeout=0)
    with VerifyPool(workers=1) as p, pytest.raises(TypeError, match="not picklable"):
        p.map(lambda x: x, [1])


# --- a supervisor that never blocks (issue 13) ----------------------------------------------


def _map_in_thread(pool: VerifyPool, fn, items, wait_s: float = 90.0) -> tuple[list, float]:
    """Run ``map`` in a thread so a regression fails the test instead of hanging it."""
    out: dict = {}

    def run() -> None:
        t0 = time.monotonic()
        out["results"] = pool.map(fn, items)
        out["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(wait_s)
    if t.is_alive():  # the daemonic workers are terminated at exit
        pytest.fail(f"VerifyPool.map did not return within {wait_s:.0f}s")
    return out["results"], out["elapsed"]


def test_stuck_item_ahead_of_large_items_does_not_block_the_supervisor():
    """The issue's repro: with the former blocking send, a 200 KB item queued behind a
    stuck one filled the pipe and the supervisor never checked the deadline again."""
    items = [("hang", "")] + [("ok", "x" * 200_000)] * 6
    with VerifyPool(workers=1, timeout=2) as p:
        p.pids()  # started and warm: what follows is the map alone
        results, elapsed = _map_in_thread(p, hang_or_zero, items)
    assert [r.status for r in results] == ["timeout"] + ["ok"] * 6
    assert [r.value for r in results[1:]] == [0] * 6
    assert 2.0 <= elapsed < 2.0 + 10  # the deadline, plus starting one fresh worker (loaded machine)


def test_large_items_behind_stuck_items_on_two_workers():
    """Both workers stuck, each with megabytes waiting in its pipe: both are killed on time,
    and every waiting item is answered by fresh workers, in order."""
    big = [("ok", str(i) * 1_000_000) for i in range(8)]
    items = [("hang", ""), ("hang", "")] + big
    with VerifyPool(workers=2, timeout=1.5) as p:
        killed = p.pids()
        results, elapsed = _map_in_thread(p, hang_or_zero, items)
        assert [r.status for r in results] == ["timeout", "timeout"] + ["ok"] * 8
        assert elapsed < 1.5 + 12
        sizes, _ = _map_in_thread(p, length, big)
        assert [r.value for r in sizes] == [1_000_000] * 8
        # the killed workers' sender threads ended (they were blocked writing megabytes)
        names = {t.name for t in threading.enumerate()}
        assert not {f"reasonmill-verify-send-{pid}" for pid in killed} & names
        assert {f"reasonmill-verify-send-{pid}" for pid in p.pids()} <= names


# --- memory limit ---------------------------------------------------------------------------


def test_workers_run_under_an_address_space_limit():
    with VerifyPool(workers=1, timeout=10, memory_limit=300 * MIB) as p:
        (r,) = p.map(address_space_limit, [None])
    assert 300 * MIB < r.value < 300 * MIB + 1024 * MIB  # the limit plus the worker's size at start
    with VerifyPool(workers=1, timeout=10, memory_limit=None) as p:
        (r,) = p.map(address_space_limit, [None])
    assert r.value == resource.RLIM_INFINITY
    assert VerifyPool().memory_limit == DEFAULT_MEMORY_LIMIT == 2 << 30


def test_item_over_the_memory_limit_gets_resource_limit_and_the_rest_go_on():
    items = [("n", 1), ("block", 600 * MIB), ("n", 2), ("grow", 2000 * MIB), ("n", 3)]
    items += [("n", i) for i in range(4, 12)]
    with VerifyPool(workers=1, timeout=30, memory_limit=256 * MIB) as p:
        pid_before = p.pids()
        results = p.map(hog, items)
        assert [r.status for r in results] == ["ok", "resource_limit", "ok", "resource_limit"] + ["ok"] * 9
        assert [r.value for r in results if r.ok] == [1, 2, 3] + list(range(4, 12))
        assert "MemoryError" in results[1].error and "0.25 GiB" in results[1].error
        assert p.resource_limits == 2 and p.replaced_crashes == 0
        assert p.pids() != pid_before  # the worker that ran out was replaced
        # a block well under the limit still fits
        assert p.map(hog, [("block", 100 * MIB)])[0].value == 100 * MIB
        # a MemoryError the function catches itself is still an overrun
        results = p.map(hog, [("swallow", 2000 * MIB), ("n", 5)])
        assert [r.status for r in results] == ["resource_limit", "ok"] and results[1].value == 5


def test_an_initializer_over_the_memory_limit_is_a_clear_error():
    with VerifyPool(workers=1, timeout=5, initializer=hog_init, memory_limit=128 * MIB) as p:
        with pytest.raises(PoolError, match="memory_limit"):
            p.map(square, [1])


# --- workers die with the driver ------------------------------------------------------------

DRIVER = """
from reasonmill.verify.pool import VerifyPool
from test_verify_pool import busy_forever
if __name__ == "__main__":
    pool = VerifyPool(workers=2, timeout=600)
    print(" ".join(map(str, pool.pids())), flush=True)
    pool.map(busy_forever, [-1, -1])  # both workers spin (a closed pipe would not stop them)
"""


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name ([0] = state, [11] = utime)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()
    except FileNotFoundError:
        return ["X"]


def _alive(pid: int) -> bool:
    return _stat(pid)[0] not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_workers_die_when_the_driver_is_killed(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(Path(__file__).parent)]))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pids = [int(x) for x in driver.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        cpu = [int(_stat(p)[11]) for p in pids]
        end = time.monotonic() + 30
        while not all(int(_stat(p)[11]) > c for p, c in zip(pids, cpu)) and time.monotonic() < end:
            time.sleep(0.1)  # until both are busy in their loops
        driver.kill()  # SIGKILL: no atexit, no finally, no close()
        driver.wait(timeout=10)
        end = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids)
    finally:
        driver.kill()


def test_workers_outlive_the_thread_that_started_them():
    """The parent-death signal follows the starting *thread*: a pool first used from a
    short-lived thread must keep its workers once that thread has ended."""
    with VerifyPool(workers=2, timeout=5) as p:
        box: dict = {}
        t = threading.Thread(target=lambda: box.update(pids=p.pids()))
        t.start()
        t.join()
        time.sleep(0.5)
        assert all(_alive(pid) for pid in box["pids"])
        assert [r.value for r in p.map(square, range(10))] == [i * i for i in range(10)]
        assert sorted(p.pids()) == sorted(box["pids"])
        assert p.replaced_crashes == 0
