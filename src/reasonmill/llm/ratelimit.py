"""Request- and token-per-minute limits as asyncio token buckets.

Why buckets and not a fixed sleep: hosted APIs enforce RPM and TPM over a sliding
minute and allow bursts up to the limit, so a bucket that refills continuously at
``limit / 60`` per second and holds at most ``limit`` reaches the allowed rate without
tripping 429s. Token use is not known before a request, so the caller takes an
estimate (prompt tokens + max_tokens) and gives back the unused part afterwards.
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """A bucket of ``capacity`` units refilled at ``rate`` units per second."""

    def __init__(self, per_minute: float, clock=time.monotonic):
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be positive, got {per_minute}")
        self.capacity = float(per_minute)
        self.rate = float(per_minute) / 60.0
        self._clock = clock
        self._level = self.capacity
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` units are available and take them.

        A request bigger than the whole bucket is clipped to the capacity, so one huge
        prompt waits for a full minute's budget instead of deadlocking.
        """
        amount = min(float(amount), self.capacity)
        async with self._lock:  # FIFO: callers are served in arrival order
            while True:
                self._refill()
                if self._level >= amount:
                    self._level -= amount
                    return
                await asyncio.sleep((amount - self._level) / self.rate)

    def refund(self, amount: float) -> None:
        """Give back units that were reserved but not used."""
        if amount > 0:
            self._refill()
            self._level = min(self.capacity, self._level + amount)


class RateLimiter:
    """RPM and TPM limits together; either may be None (unlimited)."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None):
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None

    async def acquire(self, estimated_tokens: int) -> None:
        if self.requests is not None:
            await self.requests.acquire(1)
        if self.tokens is not None:
            await self.tokens.acquire(estimated_tokens)

    def settle(self, estimated_tokens: int, used_tokens: int | None) -> None:
        """Refund the difference between the estimate and the real use, once known."""
        if self.tokens is not None and used_tokens is not None:
            self.tokens.refund(estimated_tokens - used_tokens)


def estimate_tokens(messages: list[dict]) -> int:
    """A cheap prompt-size estimate (4 characters per token) for TPM reservations."""
    return sum(len(str(m.get("content") or "")) for m in messages) // 4 + 4 * len(messages)
