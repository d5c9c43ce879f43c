"""The event driver: the durable bus consumer `cache` that keeps the query cache up to date.

It runs the one consumer loop (`actors.runtime.consumer.consume`): each batch
is applied by the cache actor in one transaction, and only then acked, so a
crash anywhere means a redelivery, which the cache's generation guard turns
into no change. Events that changed the cache are logged `event_applied`
(info) and counted; the others (the domain applied its own event already, a
redelivery, an older state) `event_already_applied` (debug).

A cache created empty (first start, a lost file, an old schema replaced)
needs the whole log, but the `cache` consumer's position may be ahead of it:
before its first subscription the driver then removes the consumer through
the directory, so the new subscription starts at the beginning of the log,
and tells the cache it is replayed once that catch-up is done. A crash in
between repeats both, harmlessly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import assert_never

from actors.api.cache import Applied, ApplyEvents, CacheMessage, MarkReplayed, NeedsReplay
from actors.api.metrics import ApiMetrics
from actors.runtime import Actor, ActorRef, Request
from actors.runtime.consumer import Received, consume
from core.backoff import Backoff
from core.bus import BusConnector, EventSubscription
from core.cache import Change

CACHE_CONSUMER = "cache"


@dataclass(frozen=True, slots=True)
class GetApplied(Request[int]):
    """How many events changed the cache since this driver started."""


DriverMessage = GetApplied


class EventDriverActor(Actor[DriverMessage]):
    def __init__(
        self,
        connector: BusConnector,
        cache: ActorRef[CacheMessage],
        metrics: ApiMetrics,
        *,
        consumer: str = CACHE_CONSUMER,
        backoff_max: float = 2.0,
        timeout: float = 30.0,
    ) -> None:
        self._connector = connector
        self._cache = cache
        self._metrics = metrics
        self._consumer = consumer
        self._backoff = Backoff(initial=0.05, cap=backoff_max)
        self._timeout = timeout
        self._applied = 0
        self._replaying = False
        self._reset = False

    async def started(self) -> None:
        self._task = self.start_task(self._run(), name="consume")

    async def receive(self, message: DriverMessage) -> object:
        match message:
            case GetApplied():
                return self._applied
            case _:
                assert_never(message)

    async def _run(self) -> None:
        self._replaying = await self._cache.ask(NeedsReplay(), timeout=self._timeout)
        await consume(self._open, self, backoff=self._backoff, log=self.log)

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[EventSubscription]:
        if self._replaying and not self._reset:
            async with self._connector.directory() as directory:
                removed = await directory.remove(self._consumer)
            self._reset = True
            self.log.info("cache_consumer_reset", consumer=self._consumer, removed=removed)
        async with self._connector.subscription(self._consumer) as subscription:
            yield subscription

    # the consumer loop's sink -----------------------------------------------------------
    async def store(self, events: Sequence[Received]) -> None:
        items = [
            Applied(Change(r.event, r.envelope.occurred_at), r.envelope.event_id, r.seq)
            for r in events
        ]
        changed = await self._cache.ask(ApplyEvents(items), timeout=self._timeout)
        for received, did in zip(events, changed, strict=True):
            env = received.envelope
            fields = {
                "event_id": env.event_id, "account_id": received.event.account_id,
                "seq": received.seq, "type": env.type,
            }
            if did:
                self._applied += 1
                self._metrics.events_applied.inc()
                self.log.info("event_applied", **fields)
            else:
                self.log.debug("event_already_applied", **fields)

    async def caught_up(self) -> None:
        if self._replaying:
            await self._cache.ask(MarkReplayed(), timeout=self._timeout)
            self._replaying = False
            self.log.info("cache_replayed", consumer=self._consumer)
