"""Publish with confirmation, durable subscribe and ack through a real bin/broker process."""

from __future__ import annotations

from pathlib import Path

from core.bus import Delivery
from tests.broker.helpers import envelope
from tests.support.broker import start_broker
from tests.support.keys import api_keys
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until
from transport.client import Directory, Publisher, Subscriber
from transport.sockets import close_context, new_context


async def test_published_events_reach_a_durable_subscriber_in_order(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints = await start_broker(procs, tmp_path / "broker")
    ctx = new_context()
    try:
        events = [envelope(i) for i in range(50)]
        async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
            receipts = await pub.publish(events[:20])
            for env in events[20:]:
                receipts += await pub.publish([env])
        assert [r.seq for r in receipts] == list(range(1, 51))
        assert not any(r.duplicate for r in receipts)
        got: list[Delivery] = []
        async with Subscriber(
            ctx, endpoints, keys=api_keys(), consumer="cache", heartbeat_interval=0.2
        ) as sub:
            async for batch in sub.batches():
                got += batch.deliveries
                await sub.ack(batch.position)
                if batch.position == 50:
                    break
            async with Directory(ctx, endpoints, keys=api_keys()) as directory:

                async def acked() -> bool:
                    infos = await directory.consumers()
                    return [(i.name, i.acked_seq, i.lag, i.online) for i in infos] == [("cache", 50, 0, True)]

                _ = await wait_until(acked, timeout=10, message="acks recorded")
        assert [d.envelope for d in got] == events
        assert [d.seq for d in got] == list(range(1, 51))
    finally:
        close_context(ctx)
