"""Token buckets: `rate` tokens a second, at most `burst` saved up, one bucket per key.

    limiter = Limiter(rate=200.0, burst=400, clock=time.monotonic)
    wait = limiter.take("key-id", cost=3)   # 0.0: taken; else seconds until it would be

A refused take costs nothing. A cost above `burst` is charged as `burst`, so
every request can pass eventually. Buckets are created on first use; past
`max_buckets` the full ones (those that forgot everything) are dropped, then
the oldest, so a flood of new keys (remote addresses) cannot grow memory.
`retry_after` turns a wait into whole seconds for the `Retry-After` header.
The clock is injected, so tests drive time by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


def retry_after(wait: float) -> int:
    """Whole seconds, at least 1, for `Retry-After`."""
    return max(1, math.ceil(wait))


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    stamp: float

    def wait(self, cost: float, now: float) -> float:
        """Seconds until `cost` tokens are there (0.0: now); refills, takes nothing."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        missing = min(cost, self.burst) - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, cost: float, now: float) -> float:
        wait = self.wait(cost, now)
        if wait == 0.0:
            self.tokens -= min(cost, self.burst)
        return wait

    def full(self, now: float) -> bool:
        return self.tokens + max(0.0, now - self.stamp) * self.rate >= self.burst


class Limiter:
    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float], *, max_buckets: int = 10_000
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_buckets
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, cost: float = 1) -> float:
        """Take `cost` tokens from `key`'s bucket: 0.0, or the seconds to wait (nothing taken)."""
        now = self._clock()
        return self._bucket(key, now).take(cost, now)

    def wait(self, key: str, cost: float = 1) -> float:
        """Seconds until `key` could take `cost` (0.0: now); takes nothing."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait(cost, self._clock())

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.burst, now)
        return bucket

    def _prune(self, now: float) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
        if len(self._buckets) >= self._max:
            # All busy (a flood of distinct keys): forget the older half.
            keep = list(self._buckets.items())[len(self._buckets) // 2 :]
            self._buckets = dict(keep)
