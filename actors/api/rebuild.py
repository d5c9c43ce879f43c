"""Rebuild the query cache from the bus: read the compacted log into a fresh file, then swap.

The replay runs the one consumer loop with `until_caught_up=True` as its own
durable consumer (removed first, so a leftover of a rebuild that died does
not make it start midway), into a new file next to the cache with the same
generation-guarded `apply` the event driver uses. The fresh file replaces
the old one only when caught up, so a failed rebuild leaves the old cache in
place. Then the temporary consumer is removed through the directory: a
registered consumer holds tombstones back, so a rebuild leaves none behind.
Run before the cache actor opens the file (`bin/api --rebuild-cache`); the
`cache` consumer keeps its position (events after it reach the new file by
the event driver; those before it are already in the rebuilt file).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import structlog

from actors.api.cache_store import SqliteCache, remove_files
from actors.runtime.consumer import Received, consume
from actors.runtime.files import fsync_dir
from core.backoff import Backoff, Retry
from core.bus import BusConnector
from core.cache import Change

REBUILD_CONSUMER = "cache-rebuild"

log = structlog.get_logger()


class _StoreSink:
    def __init__(self, store: SqliteCache) -> None:
        self._store = store

    async def store(self, events: Sequence[Received]) -> None:
        self._store.apply([Change(r.event, r.envelope.occurred_at) for r in events])

    async def caught_up(self) -> None:
        self._store.mark_replayed()


async def rebuild_cache(
    connector: BusConnector,
    path: Path,
    *,
    consumer: str = REBUILD_CONSUMER,
    backoff: Backoff | None = None,
) -> int:
    """Replace the cache at `path` by one read from the whole log; return the position reached."""
    backoff = backoff or Backoff(initial=0.05, cap=2.0)
    fresh = path.with_name(path.name + ".rebuild")
    remove_files(fresh)
    log.info("cache_rebuild_started", consumer=consumer)
    await _remove_consumer(connector, consumer, backoff)
    store = SqliteCache(fresh)
    try:
        position = await consume(
            lambda: connector.subscription(consumer), _StoreSink(store),
            backoff=backoff, log=log.bind(consumer=consumer), until_caught_up=True,
        )
        store.checkpoint()  # everything in the main file: it alone is moved
    finally:
        store.close()
    for stale in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    os.replace(fresh, path)
    fsync_dir(path.parent)
    await _remove_consumer(connector, consumer, backoff)
    log.info("cache_rebuilt", position=position, consumer=consumer)
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
