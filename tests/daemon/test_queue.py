"""The work queue with fake time: deduplication, bounded workers, per-account rate limiting."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from actors.daemon.queue import QueueShutDown, WorkQueue
from core.backoff import Backoff
from tests.support.wait import wait_until

BACKOFF = Backoff(initial=1.0, cap=8.0)


@dataclass
class _Timer:
    at: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeClock:
    now: float = 0.0
    timers: list[_Timer] = field(default_factory=list)

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = sorted((t for t in self.timers if t.at <= self.now), key=lambda t: t.at)
        self.timers = [t for t in self.timers if t.at > self.now]
        for timer in due:
            if not timer.cancelled:
                timer.callback()

    @property
    def pending(self) -> list[_Timer]:
        return [t for t in self.timers if not t.cancelled]


def new_queue() -> tuple[WorkQueue, FakeClock]:
    clock = FakeClock()
    return WorkQueue(BACKOFF, clock=clock), clock


async def test_a_key_added_many_times_is_queued_once() -> None:
    queue, _ = new_queue()
    for key in ("a", "b", "a", "a", "b", "c"):
        queue.add(key)
    assert len(queue) == 3
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_a_key_added_while_in_progress_comes_back_once_after_done() -> None:
    queue, _ = new_queue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0  # never handed to a second worker while the first has it
    assert queue.in_progress("a")
    queue.done("a")
    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_parallel_workers_never_hold_the_same_key_at_once() -> None:
    queue, _ = new_queue()
    holding: set[str] = set()
    worked: list[str] = []

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            assert key not in holding
            holding.add(key)
            await asyncio.sleep(0)  # the work itself yields to the other workers
            worked.append(key)
            if len(worked) < 30:
                queue.add(key)  # a change while in progress
                queue.add(random.choice("abc"))
            holding.discard(key)
            queue.done(key)

    for key in "abc":
        queue.add(key)
    workers = [asyncio.create_task(worker()) for _ in range(4)]
    await wait_until(
        lambda: len(worked) >= 30 and not len(queue) and not holding, message="queue drained"
    )
    queue.shut_down()
    await asyncio.gather(*workers)
    assert set(worked) == {"a", "b", "c"}


async def test_rate_limited_requeues_back_off_exponentially_per_key_with_jitter_and_a_cap() -> None:
    queue, clock = new_queue()
    delays = []
    for _ in range(6):
        delays.append(queue.add_rate_limited("a"))
        clock.advance(delays[-1])
        assert await queue.get() == "a"
        queue.done("a")
    for attempt, delay in enumerate(delays):
        ceiling = min(BACKOFF.cap, BACKOFF.initial * 2**attempt)
        assert BACKOFF.initial / 2 <= delay <= ceiling
    assert queue.failures("a") == 6
    assert queue.failures("b") == 0  # per key
    queue.forget("a")
    assert queue.failures("a") == 0
    assert queue.add_rate_limited("a") <= BACKOFF.initial


async def test_a_rate_limited_key_is_not_queued_before_its_delay() -> None:
    queue, clock = new_queue()
    delay = queue.add_rate_limited("a")
    assert len(queue) == 0
    clock.advance(delay * 0.99)
    assert len(queue) == 0
    assert queue.pending("a")
    clock.advance(delay * 0.02)
    assert len(queue) == 1


async def test_an_add_cancels_the_wait_so_a_new_state_is_not_held_back() -> None:
    queue, clock = new_queue()
    queue.add_rate_limited("a")
    queue.add("a")
    assert len(queue) == 1
    assert clock.pending == []
    assert await queue.get() == "a"
    queue.done("a")
    clock.advance(100)
    assert len(queue) == 0  # the cancelled timer does not queue it a second time


async def test_a_later_wait_replaces_an_earlier_one_for_the_same_key() -> None:
    queue, clock = new_queue()
    queue.add_after("a", 1.0)
    queue.add_after("a", 5.0)
    clock.advance(1.0)
    assert len(queue) == 0
    clock.advance(4.0)
    assert len(queue) == 1
    assert len(clock.pending) == 0


async def test_a_wait_for_a_key_in_progress_requeues_it_after_done() -> None:
    queue, clock = new_queue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add_after("a", 1.0)
    clock.advance(1.0)
    assert len(queue) == 0
    queue.done("a")
    assert await queue.get() == "a"


async def test_shut_down_wakes_workers_and_drops_timers() -> None:
    queue, clock = new_queue()
    getter = asyncio.create_task(queue.get())
    queue.add_after("a", 1.0)
    queue.shut_down()
    with pytest.raises(QueueShutDown):
        await getter
    assert clock.pending == []
    queue.add("b")
    assert len(queue) == 0
