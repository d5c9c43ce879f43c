"""Delivery semantics against an embedded broker: catch-up, late joiners, dedup, acks, gaps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog.testing

from core.bus import BusRejected, BusUnavailable, Delivery
from core.envelope import Envelope
from tests.broker.helpers import envelope
from tests.support.broker import embedded_broker, new_endpoints
from tests.support.wait import wait_until
from transport.client import BrokerEndpoints, Directory, Publisher, Subscriber
from transport.sockets import Context


async def _consume(
    ctx: Context,
    endpoints: BrokerEndpoints,
    consumer: str,
    count: int,
    *,
    ack: bool = True,
) -> list[Delivery]:
    got: list[Delivery] = []
    async with Subscriber(ctx, endpoints, consumer=consumer, heartbeat_interval=0.1) as sub:
        async with asyncio.timeout(20):
            async for delivery in sub.deliveries():
                got.append(delivery)
                if ack:
                    await sub.ack(delivery.seq)
                if len(got) == count:
                    break
        await _wait_acked(ctx, endpoints, consumer, got[-1].seq if ack and got else None)
    return got


async def _wait_acked(ctx: Context, endpoints: BrokerEndpoints, consumer: str, seq: int | None) -> None:
    if seq is None:
        return
    async with Directory(ctx, endpoints) as directory:

        async def acked() -> bool:
            return any(i.name == consumer and i.acked_seq >= seq for i in await directory.consumers())

        _ = await wait_until(acked, timeout=10, message=f"{consumer} acked {seq}")


async def _publish(ctx: Context, endpoints: BrokerEndpoints, events: list[Envelope]) -> None:
    async with Publisher(ctx, endpoints) as pub:
        await pub.publish(events)


async def test_an_offline_consumer_catches_up_from_its_last_ack_when_it_returns(
    ctx: Context, tmp_path: Path
) -> None:
    events = [envelope(i) for i in range(30)]
    async with embedded_broker(tmp_path) as endpoints:
        await _publish(ctx, endpoints, events[:10])
        first = await _consume(ctx, endpoints, "cluster:a", 10)
        await _publish(ctx, endpoints, events[10:])  # while cluster:a is away
        second = await _consume(ctx, endpoints, "cluster:a", 20)
    assert [d.envelope for d in first + second] == events
    assert [d.seq for d in second] == list(range(11, 31))


async def test_consumer_positions_survive_a_broker_restart(ctx: Context, tmp_path: Path) -> None:
    events = [envelope(i) for i in range(20)]
    async with embedded_broker(tmp_path) as endpoints:
        await _publish(ctx, endpoints, events)
        await _consume(ctx, endpoints, "cache", 12)
    async with embedded_broker(tmp_path) as endpoints:
        rest = await _consume(ctx, endpoints, "cache", 8)
        async with Publisher(ctx, endpoints) as pub:
            again = await pub.publish(events[:3])
    assert [d.envelope for d in rest] == events[12:]
    assert [(r.seq, r.duplicate) for r in again] == [(1, True), (2, True), (3, True)]


async def test_a_consumer_registered_later_receives_everything_retained(ctx: Context, tmp_path: Path) -> None:
    events = [envelope(i) for i in range(1200)]
    async with embedded_broker(tmp_path) as endpoints:
        await _publish(ctx, endpoints, events)
        await _consume(ctx, endpoints, "cluster:early", 1200)
        late = await _consume(ctx, endpoints, "cluster:late", 1200)
    assert [d.envelope for d in late] == events


async def test_duplicate_publishes_of_one_event_id_are_stored_once(ctx: Context, tmp_path: Path) -> None:
    one, two = envelope(1), envelope(2)
    async with embedded_broker(tmp_path) as endpoints:
        async with Publisher(ctx, endpoints) as pub:
            first = await pub.publish([one, one, two])
            again = await asyncio.gather(*(pub.publish([one]) for _ in range(5)))
            three = await pub.publish([envelope(3)])
        got = await _consume(ctx, endpoints, "cache", 3)
    assert [(r.seq, r.duplicate) for r in first] == [(1, False), (1, True), (2, False)]
    assert all(r == [first[0].__class__(one.event_id, 1, True)] for r in again)
    assert three[0].seq == 3
    assert [d.envelope.event_id for d in got] == [one.event_id, two.event_id, three[0].event_id]


async def test_out_of_order_acks_keep_a_contiguous_watermark_and_skip_acked_on_redelivery(
    ctx: Context, tmp_path: Path
) -> None:
    events = [envelope(i) for i in range(6)]
    async with embedded_broker(tmp_path) as endpoints:
        await _publish(ctx, endpoints, events)
        async with Subscriber(ctx, endpoints, consumer="cluster:b", heartbeat_interval=0.1) as sub:
            seen = []
            async for delivery in sub.deliveries():
                seen.append(delivery.seq)
                if len(seen) == 6:
                    break
            for seq in (2, 4, 5):
                await sub.ack(seq)
            async with Directory(ctx, endpoints) as directory:

                async def lag_is_three() -> bool:
                    (info,) = await directory.consumers()
                    return info.acked_seq == 0 and info.lag == 3

                _ = await wait_until(lag_is_three, timeout=10, message="acks above a hole recorded")
        redelivered = await _consume(ctx, endpoints, "cluster:b", 3)
    assert [d.seq for d in redelivered] == [1, 3, 6]


async def test_a_subscriber_that_overflows_its_live_buffer_refetches_without_loss(
    ctx: Context, tmp_path: Path
) -> None:
    events = [envelope(i) for i in range(300)]
    async with embedded_broker(tmp_path) as endpoints:
        got: list[Delivery] = []
        async with Subscriber(ctx, endpoints, consumer="cache", heartbeat_interval=0.1, live_buffer=2) as sub:
            stream = sub.deliveries()
            async with Publisher(ctx, endpoints) as pub:
                publishing = asyncio.gather(*(pub.publish([e]) for e in events))
                async with asyncio.timeout(20):
                    async for delivery in stream:
                        got.append(delivery)
                        await asyncio.sleep(0)  # a slow consumer
                        if len(got) == len(events):
                            break
                receipts = await publishing
    seq_of = {r[0].event_id: r[0].seq for r in receipts}
    assert [d.seq for d in got] == list(range(1, 301))
    assert all(seq_of[d.envelope.event_id] == d.seq for d in got)


async def test_an_invalid_envelope_is_rejected_and_nothing_of_its_batch_is_stored(
    ctx: Context, tmp_path: Path
) -> None:
    bad = Envelope("not-a-uuid", "account.created", 1, "a", "t", "c", {})
    async with embedded_broker(tmp_path) as endpoints, Publisher(ctx, endpoints) as pub:
        with pytest.raises(BusRejected, match="event_id"):
            await pub.publish([envelope(1), bad])
        ok = await pub.publish([envelope(2)])
    assert ok[0].seq == 1


async def test_publish_raises_bus_unavailable_when_no_broker_answers(ctx: Context) -> None:
    async with Publisher(ctx, new_endpoints(), timeout=0.3) as pub:
        with pytest.raises(BusUnavailable):
            await pub.publish([envelope(1)])


async def test_a_silent_consumer_is_listed_offline_after_the_timeout(ctx: Context, tmp_path: Path) -> None:
    async with embedded_broker(tmp_path, consumer_timeout=0.3) as endpoints:
        await _publish(ctx, endpoints, [envelope(1)])
        await _consume(ctx, endpoints, "cluster:gone", 1)
        async with Directory(ctx, endpoints) as directory:

            async def offline() -> bool:
                (info,) = await directory.consumers()
                return not info.online and info.last_seen is not None and info.acked_seq == 1

            _ = await wait_until(offline, timeout=10, message="consumer offline")


async def test_clients_started_before_the_broker_connect_once_it_is_up(ctx: Context, tmp_path: Path) -> None:
    endpoints = new_endpoints()
    event = envelope(1)
    async with (
        Subscriber(ctx, endpoints, consumer="cluster:early", heartbeat_interval=0.1, timeout=0.3) as sub,
        Publisher(ctx, endpoints, timeout=0.3) as pub,
    ):
        with pytest.raises(BusUnavailable):
            await pub.publish([event])
        stream = sub.deliveries()
        first = asyncio.ensure_future(anext(stream))
        async with embedded_broker(tmp_path, endpoints=endpoints):
            receipt = (await pub.publish([event]))[0]
            async with asyncio.timeout(20):
                delivery = await first
        await stream.aclose()  # type: ignore[attr-defined]
    assert (receipt.seq, receipt.duplicate) == (1, False)
    assert delivery.envelope == event


async def test_acks_the_broker_lost_in_a_crash_are_restored_by_the_live_subscriber(
    ctx: Context, tmp_path: Path
) -> None:
    endpoints = new_endpoints()
    events = [envelope(i) for i in range(10)]
    async with Subscriber(ctx, endpoints, consumer="cluster:c", heartbeat_interval=0.1, timeout=0.3) as sub:
        stream = sub.deliveries()
        async with embedded_broker(tmp_path, endpoints=endpoints):
            await _publish(ctx, endpoints, events)
            for _ in events:
                await sub.ack((await anext(stream)).seq)
            await _wait_acked(ctx, endpoints, "cluster:c", 10)
            # White-box: wait until a pong has confirmed watermark 10 to the subscriber, so
            # the restore below must come from that confirmation, not from pending re-sends.
            _ = await wait_until(
                lambda: sub._confirmed >= 10 and not sub._unconfirmed,
                timeout=10,
                message="pong confirmed the acks",
            )
        # The broker comes back having lost the saved positions (as if killed before saving).
        (tmp_path / "consumers.json").write_text('{"consumers": {}}')
        with structlog.testing.capture_logs() as logs:
            async with embedded_broker(tmp_path, endpoints=endpoints):
                await _wait_acked(ctx, endpoints, "cluster:c", 10)
        await stream.aclose()  # type: ignore[attr-defined]
    assert any(entry["event"] == "acks_restored" for entry in logs)
