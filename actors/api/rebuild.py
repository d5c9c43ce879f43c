"""Rebuild the query cache from the broker log: replay every event into a fresh cache, then swap.

The replay reads as a new durable consumer (so it starts at the beginning of
the log), applies each event exactly as the event driver does (same store,
same idempotent `apply`), and stops once that consumer has no lag left. The
fresh file replaces the old one only when complete, so a failed rebuild
leaves the old cache in place. Run before the cache actor opens the file
(`bin/api --rebuild-cache`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import structlog

from actors.api.bus import BusConnector
from actors.api.cache_store import SqliteCache
from core.envelope import InvalidEnvelope
from core.events import from_envelope

log = structlog.get_logger()


async def replay_into(
    connector: BusConnector, path: Path, *, consumer: str, check_every: float = 0.2
) -> int:
    """Apply the whole log to the cache at `path`; return the cursor reached."""
    store = SqliteCache(path)
    progress = {"seq": 0}

    async def consume() -> None:
        async with connector.subscription(consumer) as subscription:
            async for delivery in subscription.deliveries():
                try:
                    event = from_envelope(delivery.envelope)
                except InvalidEnvelope:
                    store.set_cursor(delivery.seq)
                else:
                    env = delivery.envelope
                    store.apply(env.event_id, delivery.seq, event, env.occurred_at)
                progress["seq"] = delivery.seq
                await subscription.ack(delivery.seq)

    task = asyncio.get_running_loop().create_task(consume(), name=f"rebuild:{consumer}")
    try:
        async with connector.directory() as directory:
            while True:
                done, _ = await asyncio.wait({task}, timeout=check_every)
                if done:
                    task.result()  # the subscription ended: surface why
                    raise RuntimeError("the log subscription ended before the replay caught up")
                infos = {c.name: c for c in await directory.consumers()}
                me = infos.get(consumer)
                if me is not None and me.lag == 0 and me.acked_seq <= progress["seq"]:
                    break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        cursor = store.cursor()
        store.close()
    return cursor


async def rebuild_cache(connector: BusConnector, path: Path, *, consumer: str) -> int:
    fresh = path.with_name(path.name + ".rebuild")
    for leftover in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
        leftover.unlink(missing_ok=True)
    log.info("cache_rebuild_started", consumer=consumer)
    cursor = await replay_into(connector, fresh, consumer=consumer)
    for stale in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    os.replace(fresh, path)
    log.info("cache_rebuilt", cursor=cursor)
    return cursor
