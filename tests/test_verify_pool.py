"""VerifyPool: timeouts enforced from outside, crashes survived, order kept, thread-safe.

Real worker processes, real SIGKILLs; nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from reasonmill.verify.pool import PoolError, VerifyPool

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
