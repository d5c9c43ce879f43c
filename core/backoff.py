"""Capped exponential backoff with full jitter: the one retry delay of every loop in Fabric.

Attempt 0 waits about `initial`; each further attempt doubles the ceiling up to
`cap`; the actual wait is drawn uniformly from [initial/2, ceiling] so many
retriers failing together do not retry in lockstep. `Retry` is the small
stateful companion a loop keeps: `next_delay()` after a failure, `reset()`
after a success.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float
    cap: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.initial * (2 ** min(attempt, 32)))
        low = min(self.initial / 2, ceiling)
        return (rng or random).uniform(low, ceiling)


@dataclass(slots=True)
class Retry:
    """One retry loop's attempt counter over a `Backoff`."""

    backoff: Backoff
    attempt: int = field(default=0)

    def next_delay(self) -> float:
        delay = self.backoff.delay(self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
