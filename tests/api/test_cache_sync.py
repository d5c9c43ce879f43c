"""A batch the cache applied is visible, and wakes its waiters, before it is durable; the
event driver is answered (and acks the bus) only once the store's `sync` is done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from actors.api.cache import (
    Applied,
    ApplyEvents,
    CacheActor,
    CacheMessage,
    FindAccount,
    WatchAccount,
)
from actors.api.cache_store import SqliteCache
from actors.runtime import ActorRef, ActorSystem
from core.cache import AccountCache, Change
from core.events import AccountCreated

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


@asynccontextmanager
async def gated_cache(tmp_path: Path) -> AsyncIterator[tuple[ActorRef[CacheMessage], GatedSync]]:
    """A cache actor over a real SQLite cache whose `sync` waits for the test."""
    store = GatedSync(await SqliteCache.open(tmp_path / "cache.sqlite3"))

    async def opened() -> AccountCache:
        return cast(AccountCache, store)

    async with ActorSystem(stop_timeout=5.0) as system:
        yield system.spawn(lambda: CacheActor(opened), name="cache"), store


async def test_readers_see_a_batch_before_its_sync_and_the_driver_is_answered_after(tmp_path: Path) -> None:
    async with gated_cache(tmp_path) as (cache, store):
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
    async with gated_cache(tmp_path) as (cache, store):
        async with asyncio.timeout(10):
            changed = await cache.ask(ApplyEvents([Applied(Change(EVENT, AT), "e-1")], durable=False))
        assert changed == [True]
        assert not store.syncing.is_set()
