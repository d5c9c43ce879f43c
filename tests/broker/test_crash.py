"""A real bin/broker SIGKILLed again and again, cleaning rounds included, while a producer and a
consumer keep working: the newest confirmed record of every key survives, in order."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import pytest

from actors.broker.records import Scanner
from core.bus import BusUnavailable, Delivery, PublishReceipt
from core.envelope import Envelope
from tests.broker.helpers import envelope, read_log
from tests.support.broker import restart_broker, start_broker_process
from tests.support.keys import api_keys, consumer_keys
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until
from transport.client import BrokerEndpoints, Publisher, Subscriber
from transport.sockets import Context, close_context, new_context

pytestmark = pytest.mark.processes

KILLS = 5
KEYS = 15
# Small segments, a small dedup window (so dropped records leave few stubs) and frequent checks:
# cleaning rounds run all the time, so kills land in them. Re-sends stay well inside the window.
COMPACTING = ("--segment-bytes", "1500", "--clean-interval", "0.02", "--dedup-window", "300")
RESEND_FROM = 30  # the last batches (of at most 5 records)


class Producer:
    """Publishes small batches of keyed updates with confirmation, retrying each batch (same ids)
    until confirmed; now and then re-sends an old batch, as an outbox relay after a crash does."""

    def __init__(self) -> None:
        self.confirmed: dict[str, int] = {}
        self.order: dict[str, list[str]] = defaultdict(list)  # key -> event ids, publish order
        self.newest: dict[str, Envelope] = {}
        self.stop = asyncio.Event()
        self.batches: list[list[Envelope]] = []
        self.duplicates = 0

    async def run(self, ctx: Context, endpoints: BrokerEndpoints) -> None:
        rng = random.Random(1)
        n = 0
        async with Publisher(ctx, endpoints, keys=api_keys(), timeout=1.0) as pub:
            while not self.stop.is_set():
                batch: list[Envelope] = []
                for _ in range(rng.randrange(1, 6)):
                    n += 1
                    batch.append(envelope(n, key=n % KEYS, tombstone=n % 37 == 0))
                for env in batch:
                    self.order[env.key].append(env.event_id)
                for receipt in await self._publish(pub, batch):
                    self.confirmed[receipt.event_id] = receipt.seq
                self.newest.update((env.key, env) for env in batch)
                if self.batches and rng.random() < 0.2:
                    for receipt in await self._publish(pub, rng.choice(self.batches[-RESEND_FROM:])):
                        assert receipt.duplicate
                        assert receipt.seq == self.confirmed[receipt.event_id]
                        self.duplicates += 1
                self.batches.append(batch)

    async def _publish(self, pub: Publisher, batch: list[Envelope]) -> list[PublishReceipt]:
        while True:
            try:
                return list(await pub.publish(batch))
            except BusUnavailable:
                await asyncio.sleep(0.05)


async def _consume(ctx: Context, endpoints: BrokerEndpoints, into: list[Delivery]) -> None:
    async with Subscriber(
        ctx, endpoints, keys=consumer_keys("cluster:k"), consumer="cluster:k", key_prefix="account:",
        heartbeat_interval=0.1, timeout=0.5,
    ) as sub:
        async for batch in sub.batches():
            into.extend(batch.deliveries)
            await sub.ack(batch.position)


async def test_the_newest_confirmed_record_of_every_key_survives_sigkills_in_cleaning_and_torn_tails(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    proc, endpoints = await start_broker_process(procs, tmp_path / "broker", *COMPACTING)
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
            target = len(producer.confirmed) + rng.randrange(50, 200)
            await wait_until(
                lambda t=target: len(producer.confirmed) >= t,  # type: ignore[misc]
                timeout=30,
                message="publishing progresses between kills",
            )
            await procs.kill(proc)
            if kill % 2:
                # A torn tail: garbage (maybe after zeros) where the next record would have
                # gone, inside the preallocated space or past the end of the file.
                newest = sorted((tmp_path / "broker" / "log").glob("*.seg"))[-1]
                with Scanner(newest.read_bytes()) as scan:
                    for _record in scan:
                        pass
                with newest.open("r+b") as f:
                    _ = f.seek(scan.valid_end)
                    _ = f.write(bytes(rng.randrange(0, 2048)) + rng.randbytes(300))
            proc = await restart_broker(procs, proc)
        await wait_until(
            lambda: len(producer.confirmed) >= 100 + len(deliveries) // 2,
            timeout=30,
            message="publishing progresses after the last restart",
        )
        producer.stop.set()
        await tasks[0]
        newest_ids = {env.event_id for env in producer.newest.values()}
        await wait_until(
            lambda: newest_ids <= {d.envelope.event_id for d in deliveries},
            timeout=30,
            message="the newest record of every key delivered",
        )
        retained = await read_log(ctx, endpoints)
    finally:
        producer.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        close_context(ctx)

    for delivery in deliveries:  # a seq always names the same event
        assert producer.confirmed[delivery.envelope.event_id] == delivery.seq
    last_seen: dict[str, str] = {}
    first_seen: dict[str, list[str]] = defaultdict(list)
    for delivery in deliveries:
        env = delivery.envelope
        last_seen[env.key] = env.event_id
        if env.event_id not in first_seen[env.key]:
            first_seen[env.key].append(env.event_id)
    for key, published in producer.order.items():  # delivered in publish order, maybe skipping
        positions = [published.index(event_id) for event_id in first_seen[key]]
        assert positions == sorted(positions), f"order of {key}"
    assert last_seen == {key: env.event_id for key, env in producer.newest.items()}
    newest_retained = {env.key: env.event_id for _seq, env in retained}
    assert newest_retained == last_seen
    assert len(retained) < len(producer.confirmed) / 3  # compacted, not history
    logs = "".join(p.log_text() for p in procs.procs)
    assert logs.count('"log_tail_truncated"') >= KILLS // 2
    assert logs.count('"log_cleaned"') >= 2  # rounds ran between the kills (how many is timing)
    assert producer.duplicates > 0
