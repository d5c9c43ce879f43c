"""The change feed behind the console's live updates (actors/api/watchers.py subscriptions)."""

from __future__ import annotations

from actors.api.watchers import Watchers


async def test_a_subscription_gets_every_changed_key_once_in_order() -> None:
    watchers = Watchers()
    subscription = watchers.subscribe(limit=10)
    for key in ("a", "b", "a", "c"):
        watchers.notify(key)
    assert [await subscription.next() for _ in range(3)] == ["a", "b", "c"]
    watchers.notify("a")  # taken already: pending again
    assert await subscription.next() == "a"


async def test_a_subscriber_that_falls_behind_is_dropped_rather_than_grown() -> None:
    watchers = Watchers()
    slow = watchers.subscribe(limit=3)
    keeping_up = watchers.subscribe(limit=3)
    for i in range(3):
        watchers.notify(f"k{i}")
        assert await keeping_up.next() == f"k{i}"
    watchers.notify("k3")
    assert slow.ended == "overflow"
    assert len(slow) == 0  # its backlog is let go at once
    assert await slow.next() is None
    assert watchers.subscribers == 1
    assert await keeping_up.next() == "k3"


async def test_closing_the_owner_ends_every_subscription_and_wakes_every_waiter() -> None:
    watchers = Watchers()
    subscription = watchers.subscribe(limit=5)
    waiter = watchers.watch("a")
    watchers.close()
    assert subscription.ended == "closed"
    assert await subscription.next() is None
    assert waiter.done()
    assert watchers.subscribers == 0


async def test_a_reader_that_ends_its_subscription_is_forgotten() -> None:
    watchers = Watchers()
    subscription = watchers.subscribe(limit=5)
    subscription.end()
    watchers.notify("a")
    assert watchers.subscribers == 0
    assert await subscription.next() is None


async def test_notify_all_wakes_waiters_but_does_not_end_subscriptions() -> None:
    watchers = Watchers()
    subscription = watchers.subscribe(limit=5)
    watchers.notify_all()
    watchers.notify("a")
    assert subscription.ended is None
    assert await subscription.next() == "a"
