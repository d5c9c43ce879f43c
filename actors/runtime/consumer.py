"""The one consumer loop: every bus consumer in Fabric (event driver, daemon, cache rebuild) runs it.

Level-triggered, as an informer feeds a store: for each batch the subscription
yields, the sink stores the decoded events in its own durable local state
(the cache's database, the daemon's desired-state store) and returns; only
then is the batch's position acked, in order, so the consumer's position is
one integer and a crash anywhere means a harmless redelivery (the sink's
store is guarded by generation). Work that follows from the state (the
daemon's reconciles) runs off the sink's store, never inside this loop, so
one slow or failing account never holds the position back.

An envelope that is not one of our events is logged (`event_skipped`) and
passed over: it can never be applied, and holding it would stall the
consumer. A broken subscription is reopened with the shared backoff.
`caught_up()` is called after each batch past which the bus knows of
nothing durable (a store's "has synced"); `consume(..., until_caught_up=True)`
returns then, which is how a rebuild knows it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import structlog

from core.backoff import Backoff, Retry
from core.bus import Batch, EventSubscription
from core.envelope import Envelope, InvalidEnvelope
from core.events import DomainEvent, from_envelope


@dataclass(frozen=True, slots=True)
class Received:
    seq: int
    envelope: Envelope
    event: DomainEvent


class Sink(Protocol):
    async def store(self, events: Sequence[Received]) -> None:
        """Make the events part of the consumer's durable state; raise to have them redelivered."""
        ...

    async def caught_up(self) -> None: ...


SubscriptionOpener = Callable[[], AbstractAsyncContextManager[EventSubscription]]


def decode(batch: Batch, log: structlog.stdlib.BoundLogger) -> list[Received]:
    out: list[Received] = []
    for delivery in batch.deliveries:
        env = delivery.envelope
        try:
            out.append(Received(delivery.seq, env, from_envelope(env)))
        except InvalidEnvelope as exc:
            log.error(
                "event_skipped", event_id=env.event_id, account_id=env.aggregate_id,
                seq=delivery.seq, type=env.type, reason=str(exc),
            )
    return out


async def consume(
    open_subscription: SubscriptionOpener,
    sink: Sink,
    *,
    backoff: Backoff,
    log: structlog.stdlib.BoundLogger,
    until_caught_up: bool = False,
) -> int:
    """Run until cancelled (or, with `until_caught_up`, until caught up: returns the position)."""
    retry = Retry(backoff)
    while True:
        acked = 0
        try:
            async with open_subscription() as subscription:
                log.info("consumer_subscribed", consumer=subscription.consumer)
                async for batch in subscription.batches():
                    events = decode(batch, log)
                    if events:
                        await sink.store(events)
                    if batch.position > acked:
                        await subscription.ack(batch.position)
                        acked = batch.position
                    retry.reset()
                    if batch.caught_up:
                        await sink.caught_up()
                        if until_caught_up:
                            return acked
            log.warning("subscription_ended")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = retry.next_delay()
            log.warning("consumer_backed_off", error=repr(exc), retry_in=round(delay, 3))
            await asyncio.sleep(delay)
            continue
        await asyncio.sleep(retry.next_delay())
