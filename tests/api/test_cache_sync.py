"""A batch the cache applied is visible, and wakes its waiters, before it is durable; the
event driver is answered (and acks the bus) only once the store's `sync` is done, and
later writes do not wait for it. Batches that arrive together share one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from actors.api.cache import (
    Applied,
    ApplyEvents,
    CacheActor,
    CacheMessage,
    FindAccount,
    WatchAccount,
)
from actors.api.cache_store import SqliteCache
from actors.runtime import ActorRef, ActorStopped, ActorSystem
from core.cache import AccountCache, Change
from core.errors import DependencyUnavailable
from core.events import AccountCreated
from tests.support.wait import wait_until

AT = "2026-01-01T00:00:00Z"
ACCOUNT = "5f0c3f7e-3c1a-4c55-9d3e-111111111111"


class GatedSync:
    """A real SQLite cache whose `sync` waits until the test opens the gate."""

    def __init__(self, store: SqliteCache) -> None:
        self._store = store
        self.gate = asyncio.Event()
        self.syncing = asyncio.Event()
        self.synced = 0

    async def sync(self) -> None:
        self.syncing.set()
        await self.gate.wait()
        await self._store.sync()
        self.synced += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


EVENT = AccountCreated(ACCOUNT, "acme", "Acme", "ops@acme.example", "acc-acme", AT, 1)


Store = TypeVar("Store", bound="GatedSync | CountedApplies")


@asynccontextmanager
async def cache_over(
    store: Store, stop_timeout: float = 5.0
) -> AsyncIterator[tuple[ActorRef[CacheMessage], Store]]:
    """A cache actor over `store` (a real SQLite cache the test steers)."""

    async def opened() -> AccountCache:
        return cast(AccountCache, store)

    async with ActorSystem(stop_timeout=stop_timeout) as system:
        yield system.spawn(lambda: CacheActor(opened), name="cache"), store


async def gated_store(tmp_path: Path) -> GatedSync:
    """A real SQLite cache whose `sync` waits for the test."""
    return GatedSync(await SqliteCache.open(tmp_path / "cache.sqlite3"))


async def test_readers_see_a_batch_before_its_sync_and_the_driver_is_answered_after(tmp_path: Path) -> None:
    async with cache_over(await gated_store(tmp_path)) as (cache, store):
        woken = await cache.ask(WatchAccount(ACCOUNT))
        applying = asyncio.ensure_future(cache.ask(ApplyEvents([Applied(Change(EVENT, AT), "e-1", 1)])))
        async with asyncio.timeout(10):
            await store.syncing.wait()
            await woken  # the waiter is woken while the fsync has not even started
            seen = await cache.ask(FindAccount(account_id=ACCOUNT))  # the mailbox is not held
        assert [r.slug for r in seen.records] == ["acme"]
        assert not applying.done()
        assert store.synced == 0
        store.gate.set()
        async with asyncio.timeout(10):
            assert await applying == [True]
        assert store.synced == 1


async def test_the_domains_own_apply_is_answered_without_waiting_for_a_sync(tmp_path: Path) -> None:
    # The event driver brings the same event again from the bus and syncs then.
    async with cache_over(await gated_store(tmp_path)) as (cache, store):
        async with asyncio.timeout(10):
            changed = await cache.ask(ApplyEvents([Applied(Change(EVENT, AT), "e-1")], durable=False))
        assert changed == [True]
        assert not store.syncing.is_set()


OTHER = AccountCreated(
    "5f0c3f7e-3c1a-4c55-9d3e-222222222222", "beta", "Beta", "ops@beta.example", "acc-beta", AT, 1
)


async def test_a_write_does_not_wait_for_the_sync_in_flight(tmp_path: Path) -> None:
    async with cache_over(await gated_store(tmp_path)) as (cache, store):
        durable = asyncio.ensure_future(cache.ask(ApplyEvents([Applied(Change(EVENT, AT), "e-1", 1)])))
        async with asyncio.timeout(10):
            await store.syncing.wait()
            # The domain's apply of another account is answered while the fsync is held.
            changed = await cache.ask(ApplyEvents([Applied(Change(OTHER, AT), "e-2")], durable=False))
        assert changed == [True]
        assert not durable.done()
        store.gate.set()
        async with asyncio.timeout(10):
            assert await durable == [True]


class CountedApplies:
    """A real SQLite cache that counts its `apply` calls (transactions), can fail the next
    one, and holds each until `gate` is set (it is, unless the test clears it)."""

    def __init__(self, store: SqliteCache) -> None:
        self._store = store
        self.batches: list[int] = []
        self.fail_next = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def apply(self, changes: Sequence[Change]) -> list[bool]:
        self.batches.append(len(changes))
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise DependencyUnavailable("cache", "disk I/O error")
        return await self._store.apply(changes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def counted_store(tmp_path: Path) -> CountedApplies:
    return CountedApplies(await SqliteCache.open(tmp_path / "cache.sqlite3"))


def apply(event: AccountCreated, event_id: str, *, durable: bool) -> ApplyEvents:
    return ApplyEvents([Applied(Change(event, AT), event_id)], durable=durable)


async def test_batches_that_arrive_together_share_one_transaction(tmp_path: Path) -> None:
    async with cache_over(await counted_store(tmp_path)) as (cache, store):
        async with asyncio.timeout(10):
            assert await cache.ask(apply(EVENT, "e-0", durable=False)) == [True]
            answers = await asyncio.gather(
                cache.ask(apply(OTHER, "e-1", durable=False)),
                cache.ask(apply(EVENT, "e-2", durable=True)),  # the same generation again
                cache.ask(ApplyEvents([
                    Applied(Change(OTHER, AT), "e-3"), Applied(Change(EVENT, AT), "e-4")
                ], durable=True)),
            )
            seen = await cache.ask(FindAccount(account_id=OTHER.account_id))
        assert store.batches == [1, 4]  # the three asks in one apply
        assert list(answers) == [[True], [False], [False, False]]  # each asker its own part
        assert [r.slug for r in seen.records] == ["beta"]


async def test_a_failed_transaction_fails_every_batch_in_it_and_the_next_one_applies(
    tmp_path: Path,
) -> None:
    async with cache_over(await counted_store(tmp_path)) as (cache, store):
        store.fail_next = True
        async with asyncio.timeout(10):
            outcomes = await asyncio.gather(
                cache.ask(apply(EVENT, "e-1", durable=False)),
                cache.ask(apply(OTHER, "e-2", durable=True)),
                return_exceptions=True,
            )
            assert all(isinstance(o, DependencyUnavailable) for o in outcomes), outcomes
            assert await cache.ask(apply(OTHER, "e-3", durable=True)) == [True]
            seen = await cache.ask(FindAccount(account_id=EVENT.account_id))
        assert store.batches == [2, 1]
        assert seen.records == []  # nothing of the failed transaction was applied


async def test_a_stop_during_a_transaction_answers_every_batch_in_it(tmp_path: Path) -> None:
    store = await counted_store(tmp_path)
    store.gate.clear()  # the transaction never ends: the stop has to cancel it
    async with cache_over(store, stop_timeout=0.2) as (cache, _):
        asked = [asyncio.ensure_future(cache.ask(apply(event, f"e-{n}", durable=durable),
                                                 timeout=60))
                 for n, (event, durable) in enumerate([(EVENT, False), (OTHER, True)])]
        await wait_until(lambda: store.batches == [2], message="the transaction begun")
    async with asyncio.timeout(10):  # not the asks' own 60 s
        outcomes = await asyncio.gather(*asked, return_exceptions=True)
    assert all(isinstance(o, ActorStopped) for o in outcomes), outcomes
