"""Group commit in the emulator's store: replies wait for the write that holds what they saw."""

from __future__ import annotations

import asyncio

import pytest

from actors.kube_emulator.durability import Durability
from actors.kube_emulator.messages import WatchEvent
from actors.kube_emulator.resources import NAMESPACES
from actors.kube_emulator.watch_hub import WatchHub


async def _waiting(durability: Durability) -> asyncio.Task[None]:
    """A reply that has started waiting (a task runs up to its first await once scheduled)."""
    reply = asyncio.ensure_future(durability.settled())
    await asyncio.sleep(0)
    return reply


async def test_a_reply_waits_until_the_group_holding_its_change_is_written() -> None:
    durability = Durability()
    durability.mark()
    first = await _waiting(durability)
    durability.begin()
    durability.mark()  # a change made while the first group is being written
    second = await _waiting(durability)
    assert not first.done()
    durability.end()
    await first
    assert not second.done()  # its change is in the next group
    durability.begin()
    durability.end()
    await second


async def test_a_reply_with_nothing_unwritten_does_not_wait() -> None:
    await asyncio.wait_for(Durability().settled(), timeout=5)


async def test_a_lost_write_fails_every_reply_that_saw_it_or_came_after() -> None:
    durability = Durability()
    durability.mark()
    first = await _waiting(durability)
    durability.begin()
    durability.mark()
    second = await _waiting(durability)
    durability.fail_all(OSError("disk full"))
    for reply in (first, second):
        with pytest.raises(OSError, match="disk full"):
            await reply
    await asyncio.wait_for(durability.settled(), timeout=5)  # the next change starts afresh


def _event(rv: int) -> WatchEvent:
    obj = {"metadata": {"name": f"ns-{rv}", "resourceVersion": str(rv)}}
    return WatchEvent("ADDED", rv, NAMESPACES, obj, None)


def test_watchers_get_only_written_events_and_none_twice() -> None:
    hub = WatchHub(history=100)
    early = hub.open(NAMESPACES, None, None, [], 0)
    hub.record(_event(1))
    hub.record(_event(2))
    # Opened while 1 and 2 are still being written: its initial state already holds them.
    late = hub.open(NAMESPACES, None, "0", [_event(1).object, _event(2).object], 2)
    hub.record(_event(3))
    hub.publish(through=2)  # 3 is not written yet
    assert [early.queue.get_nowait().rv for _ in range(early.queue.qsize())] == [1, 2]
    assert late.queue.empty()
    hub.publish(through=3)
    assert early.queue.get_nowait().rv == 3
    assert late.queue.get_nowait().rv == 3
