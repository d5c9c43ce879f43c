"""Rebuild the query cache from the bus: read the compacted log into a fresh cache, then swap.

The replay runs the one consumer loop with `until_caught_up=True` as its own
durable consumer (removed first, so a leftover of a rebuild that died does
not make it start midway), into a fresh cache beside the live one (a new
SQLite file, or a new PostgreSQL schema) with the same generation-guarded
`apply` the event driver uses. The fresh cache replaces the live one only
when caught up, so a failed rebuild leaves the old cache in place.

Other API replicas sharing a PostgreSQL cache keep applying events to the
old one while the rebuild reads; what they applied between our catch-up and
the swap is not in the fresh one. So after the swap the same consumer reads
on, from where it stopped, until caught up again, into the live cache
(harmless repeats: the apply is guarded by generation). Then the temporary
consumer is removed through the directory: a registered consumer holds
tombstones back, so a rebuild leaves none behind.

Run before the cache actor opens the cache (`bin/api --rebuild-cache`); the
`cache` consumer keeps its position (events after it reach the new cache by
the event driver; those before it are already in the rebuilt one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import structlog

from actors.api.cache_store import SqliteRebuild
from actors.runtime.consumer import Received, consume
from core.backoff import Backoff, Retry
from core.bus import BusConnector
from core.cache import AccountCache, Change

REBUILD_CONSUMER = "cache-rebuild"

log = structlog.get_logger()


class RebuildTarget(Protocol):
    """A cache that can be built afresh beside the live one and swapped in."""

    async def open_fresh(self) -> AccountCache:
        """An empty cache beside the live one (a leftover of a failed rebuild is dropped)."""
        ...

    async def promote(self) -> None:
        """Close the fresh cache and make it the live one, replacing the old one at once."""
        ...

    async def open_live(self) -> AccountCache: ...


class _StoreSink:
    def __init__(self, store: AccountCache, *, mark: bool) -> None:
        self._store = store
        self._mark = mark

    async def store(self, events: Sequence[Received]) -> None:
        _ = await self._store.apply([Change(r.event, r.envelope.occurred_at) for r in events])
        await self._store.sync()

    async def caught_up(self) -> None:
        if self._mark:
            await self._store.mark_replayed()


async def rebuild_cache(
    connector: BusConnector,
    target: RebuildTarget | Path,
    *,
    consumer: str = REBUILD_CONSUMER,
    backoff: Backoff | None = None,
) -> int:
    """Replace the cache at `target` (a SQLite path, or a target) by one read from the whole log.

    Returns the position reached."""
    where = SqliteRebuild(target) if isinstance(target, Path) else target
    backoff = backoff or Backoff(initial=0.05, cap=2.0)
    bound = log.bind(consumer=consumer)
    bound.info("cache_rebuild_started")
    await _remove_consumer(connector, consumer, backoff)
    position = await _fill_fresh(connector, where, consumer, backoff)
    live = await where.open_live()
    try:
        # What other writers applied to the old cache meanwhile (see the module docstring).
        position = await consume(
            lambda: connector.subscription(consumer), _StoreSink(live, mark=False),
            backoff=backoff, log=bound, until_caught_up=True,
        )
    finally:
        await live.close()
    await _remove_consumer(connector, consumer, backoff)
    bound.info("cache_rebuilt", position=position)
    return position


async def _fill_fresh(
    connector: BusConnector, where: RebuildTarget, consumer: str, backoff: Backoff
) -> int:
    fresh = await where.open_fresh()
    try:
        position = await consume(
            lambda: connector.subscription(consumer), _StoreSink(fresh, mark=True),
            backoff=backoff, log=log.bind(consumer=consumer), until_caught_up=True,
        )
    except BaseException:
        await fresh.close()
        raise
    await where.promote()
    return position


async def _remove_consumer(connector: BusConnector, consumer: str, backoff: Backoff) -> None:
    retry = Retry(backoff)
    while True:
        try:
            async with connector.directory() as directory:
                await directory.remove(consumer)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = retry.next_delay()
            log.warning("cache_rebuild_backed_off", consumer=consumer, error=repr(exc),
                        retry_in=round(delay, 3))
            await asyncio.sleep(delay)
