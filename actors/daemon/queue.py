"""The daemon's work queue, keyed by account id, after client-go's rate-limited work queue.

Contract:

- Deduplicated. A key is in at most one of three places: waiting (a timer
  will add it), queued, or in progress. `add` of a queued key does nothing;
  `add` of a key in progress marks it dirty, and `done` queues it once more,
  so a change that arrives while its account is being worked is never lost
  and never worked twice at once. `add` of a waiting key cancels the timer
  and queues it now (a new desired state is not held back by an old backoff).
- Fair and bounded: keys come out of `get` in the order they were queued;
  parallelism is the number of workers calling `get` (one key each at a time).
- Rate limited: `add_rate_limited` waits the key's next backoff (per-key
  exponential with jitter, `core.backoff.Retry`) before queueing it again;
  `failures` is how many times in a row that happened; `forget` (after a
  success) starts the key's backoff over. `add_after` waits without counting.
- Time comes from a `Clock` (the running loop by default) so tests drive the
  timers with a fake one.

One event loop, no locks: every method but `get` is synchronous.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

from core.backoff import Backoff, Retry


class QueueShutDown(Exception):
    """The queue was shut down; workers stop."""


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...


class LoopClock:
    """The running event loop's timers."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)


class WorkQueue:
    def __init__(self, backoff: Backoff, *, clock: Clock | None = None) -> None:
        self._backoff = backoff
        self._clock = clock or LoopClock()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()  # queued, or to be queued again once done
        self._processing: set[str] = set()
        self._waiting: dict[str, TimerHandle] = {}
        self._retries: dict[str, Retry] = {}
        self._wakeup = asyncio.Event()
        self._shut_down = False

    def __len__(self) -> int:
        """Keys queued now (not counting ones in progress or waiting)."""
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shut_down:
            return
        timer = self._waiting.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wakeup.set()

    def add_after(self, key: str, delay: float) -> None:
        """Queue `key` once `delay` has passed, unless something queues it earlier."""
        if self._shut_down or key in self._dirty:
            return
        old = self._waiting.pop(key, None)
        if old is not None:
            old.cancel()
        self._waiting[key] = self._clock.call_later(delay, lambda: self._fire(key))

    def add_rate_limited(self, key: str) -> float:
        """Queue `key` again after its next backoff; return that delay."""
        delay = self._retries.setdefault(key, Retry(self._backoff)).next_delay()
        self.add_after(key, delay)
        return delay

    def failures(self, key: str) -> int:
        retry = self._retries.get(key)
        return 0 if retry is None else retry.attempt

    def forget(self, key: str) -> None:
        self._retries.pop(key, None)

    def in_progress(self, key: str) -> bool:
        return key in self._processing

    def pending(self, key: str) -> bool:
        """Queued, in progress or waiting: some work for `key` is already on its way."""
        return key in self._dirty or key in self._processing or key in self._waiting

    async def get(self) -> str:
        while not self._queue:
            if self._shut_down:
                raise QueueShutDown()
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        if self._queue:
            self._wakeup.set()  # more for other workers
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shut_down:
            self._queue.append(key)
            self._wakeup.set()

    def shut_down(self) -> None:
        self._shut_down = True
        for timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        self._queue.clear()
        self._wakeup.set()

    def _fire(self, key: str) -> None:
        if self._waiting.pop(key, None) is not None:
            self.add(key)
