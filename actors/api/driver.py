"""The event driver: the durable broker consumer `cache` that keeps the query cache up to date.

For each delivery: decode the event, have the cache actor apply it in one
transaction with the cursor (a redelivered or already-applied event changes
nothing), and only then ack. An envelope that is not one of our events is
logged and acked (it can never be applied; holding it would stall the
consumer). A broken subscription is reopened with capped backoff.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import assert_never

from actors.api.bus import BusConnector
from actors.api.cache import ApplyEvent, CacheMessage
from actors.api.metrics import ApiMetrics
from actors.runtime import Actor, ActorRef, Request
from core.bus import Delivery, EventSubscription
from core.envelope import InvalidEnvelope
from core.events import from_envelope

CACHE_CONSUMER = "cache"


@dataclass(frozen=True, slots=True)
class GetApplied(Request[int]):
    pass


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
    ) -> None:
        self._connector = connector
        self._cache = cache
        self._metrics = metrics
        self._consumer = consumer
        self._backoff_max = backoff_max
        self._applied = 0

    async def started(self) -> None:
        self._task = self.start_task(self._run(), name="consume")

    async def receive(self, message: DriverMessage) -> object:
        match message:
            case GetApplied():
                return self._applied
            case _:
                assert_never(message)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                async with self._connector.subscription(self._consumer) as subscription:
                    self.log.info("cache_consumer_subscribed", consumer=self._consumer)
                    async for delivery in subscription.deliveries():
                        await self._handle(subscription, delivery)
                        backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("cache_consumer_backed_off", error=repr(exc), retry_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    async def _handle(self, subscription: EventSubscription, delivery: Delivery) -> None:
        envelope = delivery.envelope
        try:
            event = from_envelope(envelope)
        except InvalidEnvelope as exc:
            self.log.error(
                "event_skipped", event_id=envelope.event_id, seq=delivery.seq, reason=str(exc)
            )
            await subscription.ack(delivery.seq)
            return
        applied = await self._cache.ask(
            ApplyEvent(envelope.event_id, delivery.seq, event, envelope.occurred_at)
        )
        if applied:
            self._applied += 1
            self._metrics.events_applied.inc()
            self.log.info(
                "event_applied", event_id=envelope.event_id, account_id=event.account_id,
                seq=delivery.seq, type=envelope.type,
            )
        else:
            # Already in the cache (the domain applies its own events at once, for
            # read-your-writes): logged so the event's journey is still traceable here.
            self.log.debug(
                "event_already_applied", event_id=envelope.event_id, account_id=event.account_id,
                seq=delivery.seq, type=envelope.type,
            )
        await subscription.ack(delivery.seq)
