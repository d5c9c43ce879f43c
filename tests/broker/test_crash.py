"""A real bin/broker SIGKILLed again and again while a producer and a consumer keep working."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import pytest

from core.bus import BusUnavailable, Delivery
from core.envelope import Envelope
from tests.broker.helpers import envelope
from tests.support.broker import restart_broker, start_broker_process
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until
from transport.client import BrokerEndpoints, Publisher, Subscriber
from transport.sockets import Context, close_context, new_context

pytestmark = pytest.mark.processes

KILLS = 5


class Producer:
    """Publishes small batches with confirmation, retrying each batch (same ids) until confirmed."""

    def __init__(self) -> None:
        self.confirmed: dict[str, int] = {}
        self.order: dict[str, list[str]] = defaultdict(list)
        self.stop = asyncio.Event()
        self.batches: list[list[Envelope]] = [[envelope(-1)]]
        self.duplicates = 0

    async def run(self, ctx: Context, endpoints: BrokerEndpoints) -> None:
        rng = random.Random(1)
        n = 0
        async with Publisher(ctx, endpoints, timeout=1.0) as pub:
            await self._first(pub)
            while not self.stop.is_set():
                batch: list[Envelope] = [envelope(n + i) for i in range(rng.randrange(1, 6))]
                n += len(batch)
                for env in batch:
                    self.order[env.aggregate_id].append(env.event_id)
                while True:
                    try:
                        receipts = await pub.publish(batch)
                        break
                    except BusUnavailable:
                        await asyncio.sleep(0.05)
                for receipt in receipts:
                    self.confirmed[receipt.event_id] = receipt.seq
                if rng.random() < 0.2:  # an outbox relay re-sending something stored long ago
                    await self._resend(pub, rng.choice(self.batches))
                self.batches.append(batch)

    async def _first(self, pub: Publisher) -> None:
        (receipt,) = await pub.publish(self.batches[0])
        self.confirmed[receipt.event_id] = receipt.seq
        self.order[self.batches[0][0].aggregate_id].append(receipt.event_id)

    async def _resend(self, pub: Publisher, batch: list[Envelope]) -> None:
        while True:
            try:
                receipts = await pub.publish(batch)
                break
            except BusUnavailable:
                await asyncio.sleep(0.05)
        for receipt in receipts:
            assert receipt.duplicate
            assert receipt.seq == self.confirmed[receipt.event_id]
            self.duplicates += 1


async def _consume(ctx: Context, endpoints: BrokerEndpoints, into: list[Delivery]) -> None:
    async with Subscriber(ctx, endpoints, consumer="cluster:k", heartbeat_interval=0.1, timeout=0.5) as sub:
        async for delivery in sub.deliveries():
            into.append(delivery)
            await sub.ack(delivery.seq)


async def test_every_confirmed_event_is_delivered_in_order_across_repeated_sigkills_and_torn_tails(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    proc, endpoints = await start_broker_process(procs, tmp_path / "broker")
    ctx = new_context()
    producer = Producer()
    deliveries: list[Delivery] = []
    tasks = [
        asyncio.create_task(producer.run(ctx, endpoints), name="producer"),
        asyncio.create_task(_consume(ctx, endpoints, deliveries), name="consumer"),
    ]
    rng = random.Random(2)
    try:
        for kill in range(KILLS):
            target = len(producer.confirmed) + rng.randrange(20, 120)
            await wait_until(
                lambda t=target: len(producer.confirmed) >= t,  # type: ignore[misc]
                timeout=30,
                message="publishing progresses between kills",
            )
            await procs.kill(proc)
            if kill % 2:
                # The "inode grew, blocks not written" case: garbage after the last whole record.
                newest = sorted((tmp_path / "broker" / "log").iterdir())[-1]
                with newest.open("ab") as f:
                    f.write(rng.choice([bytes(rng.randrange(1, 4096)), rng.randbytes(300)]))
            proc = await restart_broker(procs, proc)
        await wait_until(
            lambda: len(producer.confirmed) >= 50 + len(deliveries) // 2,
            timeout=30,
            message="publishing progresses after the last restart",
        )
        producer.stop.set()
        await tasks[0]
        await wait_until(
            lambda: {d.envelope.event_id for d in deliveries} >= set(producer.confirmed),
            timeout=30,
            message="every confirmed event delivered",
        )
    finally:
        producer.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        close_context(ctx)

    delivered_ids = {d.envelope.event_id for d in deliveries}
    assert len(delivered_ids) == len(producer.confirmed)
    for delivery in deliveries:  # a seq always names the same event
        assert producer.confirmed[delivery.envelope.event_id] == delivery.seq
    first_seen: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for delivery in deliveries:
        event_id = delivery.envelope.event_id
        if event_id not in seen:
            seen.add(event_id)
            first_seen[delivery.envelope.aggregate_id].append(event_id)
    for aggregate, published in producer.order.items():
        assert first_seen[aggregate] == published, f"order of aggregate {aggregate}"
    assert sorted(producer.confirmed.values()) == list(range(1, len(producer.confirmed) + 1))
    truncations = sum(p.log_text().count('"log_tail_truncated"') for p in procs.procs)
    assert truncations >= KILLS // 2
    assert producer.duplicates > 0
