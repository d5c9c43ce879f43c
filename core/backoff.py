"""Capped exponential backoff with full jitter, for every retry loop of the daemon.

Attempt 0 waits about `initial`; each further attempt doubles the ceiling up to
`cap`; the actual wait is drawn uniformly from [initial/2, ceiling] so many
accounts failing together do not retry in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float
    cap: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.initial * (2 ** min(attempt, 32)))
        low = min(self.initial / 2, ceiling)
        return (rng or random).uniform(low, ceiling)
