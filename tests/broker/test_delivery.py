"""Delivery semantics against an embedded broker: catch-up, late joiners on a compacted log,
dedup within its window, cumulative acks, filtered subscriptions, overflow, lost acks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import structlog.testing

from actors.broker.settings import DedupSetting
from core.bus import Batch, BusRejected, BusUnavailable, Delivery
from core.envelope import Envelope
from tests.broker.helpers import envelope, publish, read_log
from tests.support.broker import embedded_broker, new_endpoints
from tests.support.keys import api_keys, consumer_keys
from tests.support.wait import wait_until
from transport import codec, protocol
from transport.client import BrokerEndpoints, Directory, Publisher, Subscriber
from transport.sockets import Context, Socket, connect_dealer, connect_sub


async def _consume(
    ctx: Context,
    endpoints: BrokerEndpoints,
    consumer: str,
    count: int,
    *,
    key_prefix: str = "account:",
) -> tuple[list[Delivery], int]:
    """Read batches (acking each) until `count` deliveries and caught up; returns them and the
    final position, once the broker has recorded it."""
    got: list[Delivery] = []
    async with Subscriber(
        ctx, endpoints, keys=consumer_keys(consumer), consumer=consumer, key_prefix=key_prefix,
        heartbeat_interval=0.1,
    ) as sub:
        async with asyncio.timeout(20):
            async for batch in sub.batches():
                got += batch.deliveries
                await sub.ack(batch.position)
                if len(got) >= count and batch.caught_up:
                    position = batch.position
                    break
        await _wait_acked(ctx, endpoints, consumer, position)
    return got, position


async def _wait_acked(ctx: Context, endpoints: BrokerEndpoints, consumer: str, seq: int) -> None:
    async with Directory(ctx, endpoints, keys=api_keys()) as directory:

        async def acked() -> bool:
            return any(i.name == consumer and i.acked_seq >= seq for i in await directory.consumers())

        _ = await wait_until(acked, timeout=10, message=f"{consumer} acked {seq}")


async def _publish(ctx: Context, endpoints: BrokerEndpoints, events: list[Envelope]) -> list[int]:
    return await publish(ctx, endpoints, events)


async def test_an_offline_consumer_catches_up_from_its_position_when_it_returns(
    ctx: Context, tmp_path: Path
) -> None:
    events = [envelope(i) for i in range(30)]
    async with embedded_broker(tmp_path) as endpoints:
        await _publish(ctx, endpoints, events[:10])
        first, position = await _consume(ctx, endpoints, "cluster:a", 10)
        await _publish(ctx, endpoints, events[10:])  # while cluster:a is away
        second, _ = await _consume(ctx, endpoints, "cluster:a", 20)
    assert position == 10
    assert [d.envelope for d in first + second] == events
    assert [d.seq for d in second] == list(range(11, 31))


async def test_positions_and_the_dedup_window_survive_a_broker_restart(ctx: Context, tmp_path: Path) -> None:
    events = [envelope(i) for i in range(20)]
    async with embedded_broker(tmp_path) as endpoints:
        await _publish(ctx, endpoints, events[:12])
        await _consume(ctx, endpoints, "cache", 12)
        await _publish(ctx, endpoints, events[12:])
    async with embedded_broker(tmp_path) as endpoints:
        rest, _ = await _consume(ctx, endpoints, "cache", 8)
        async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
            again = await pub.publish(events[:3])
    assert [d.envelope for d in rest] == events[12:]
    assert [(r.seq, r.duplicate) for r in again] == [(1, True), (2, True), (3, True)]


async def test_a_consumer_registered_later_gets_the_newest_record_of_every_live_key(
    ctx: Context, tmp_path: Path
) -> None:
    keys, rounds = 20, 15
    events = [envelope(r * keys + k, key=k) for r in range(rounds) for k in range(keys)]
    newest = {e.key: e for e in events}
    async with embedded_broker(tmp_path, segment_bytes=4000) as endpoints:
        for i in range(0, len(events), 50):
            await _publish(ctx, endpoints, events[i : i + 50])

        async def compacted() -> bool:
            return len(await read_log(ctx, endpoints)) == keys

        _ = await wait_until(compacted, timeout=20, message="the log compacted to one record per key")
        late, position = await _consume(ctx, endpoints, "cluster:late", keys)
    assert sorted((d.envelope.key, d.envelope.event_id) for d in late) == sorted(
        (e.key, e.event_id) for e in newest.values()
    )
    assert position == len(events)
    assert [d.seq for d in late] == sorted(d.seq for d in late)


async def test_duplicate_publishes_of_one_event_id_are_stored_once(ctx: Context, tmp_path: Path) -> None:
    one, two = envelope(1), envelope(2)
    async with embedded_broker(tmp_path) as endpoints:
        async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
            first = await pub.publish([one, one, two])
            again = await asyncio.gather(*(pub.publish([one]) for _ in range(5)))
            three = await pub.publish([envelope(3)])
        got, _ = await _consume(ctx, endpoints, "cache", 3)
    assert [(r.seq, r.duplicate) for r in first] == [(1, False), (1, True), (2, False)]
    assert all(r == [first[0].__class__(one.event_id, 1, True)] for r in again)
    assert three[0].seq == 3
    assert [d.envelope.event_id for d in got] == [one.event_id, two.event_id, three[0].event_id]


async def test_a_duplicate_from_beyond_the_dedup_window_is_stored_again(ctx: Context, tmp_path: Path) -> None:
    events = [envelope(i) for i in range(5)]
    async with embedded_broker(tmp_path, dedup=DedupSetting(count=3)) as endpoints:
        await _publish(ctx, endpoints, events)
        async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
            inside = await pub.publish([events[3]])
            beyond = await pub.publish([events[0]])
    assert [(r.seq, r.duplicate) for r in inside + beyond] == [(4, True), (6, False)]


async def test_a_filtered_subscription_moves_past_filtered_records_and_its_lag_goes_to_zero(
    ctx: Context, tmp_path: Path
) -> None:
    accounts = [envelope(i) for i in range(6)]
    outcomes = [envelope(100 + i, key=f"outcome:east:{i}") for i in range(6)]
    async with embedded_broker(tmp_path) as endpoints:
        mixed = [e for pair in zip(accounts[:3], outcomes[:3], strict=True) for e in pair]
        await _publish(ctx, endpoints, mixed)
        await _publish(ctx, endpoints, outcomes[3:])  # a catch-up page ending in filtered records
        got: list[Delivery] = []
        batches: list[Batch] = []
        async with Subscriber(
            ctx, endpoints, keys=consumer_keys("cluster:east"), consumer="cluster:east",
            key_prefix="account:", heartbeat_interval=0.1,
        ) as sub:
            stream = sub.batches()
            async with asyncio.timeout(20):
                while not batches or batches[-1].position < 9:
                    batches.append(await anext(stream))
                more = [envelope(200, key="outcome:east:x"), envelope(201, key="outcome:west:x")]
                await _publish(ctx, endpoints, [accounts[3], *more, accounts[4]])  # live
                while batches[-1].position < 13:
                    batches.append(await anext(stream))
            got = [d for b in batches for d in b.deliveries]
            await sub.ack(batches[-1].position)
            async with Directory(ctx, endpoints, keys=api_keys()) as directory:

                async def lag_zero() -> bool:
                    (info,) = await directory.consumers()
                    return (info.acked_seq, info.lag) == (13, 0)

                _ = await wait_until(lag_zero, timeout=10, message="position past filtered records")
            await stream.aclose()  # type: ignore[attr-defined]
    assert [d.envelope for d in got] == accounts[:5]
    assert [d.seq for d in got] == [1, 3, 5, 10, 13]
    assert all(b.caught_up for b in batches[-2:])


async def test_a_family_subscriber_is_sent_its_family_alone_and_still_reaches_the_head(
    ctx: Context, tmp_path: Path
) -> None:
    """A daemon's live stream carries `account:` records and its family's heartbeats, never
    the outcomes every cluster publishes; the heartbeats move its position past them."""
    async with embedded_broker(tmp_path, heartbeat_interval=0.1) as endpoints, Subscriber(
        ctx, endpoints, keys=consumer_keys("cluster:east"), consumer="cluster:east",
        key_prefix="account:", heartbeat_interval=0.1,
    ) as sub:
        stream = sub.batches()
        async with asyncio.timeout(20):
            first = await anext(stream)  # caught up on the empty log: the family is registered
            assert first.caught_up
            raw = connect_sub(ctx, endpoints.events, api_keys(), protocol.live_topics("account:"))
            try:
                await _publish(ctx, endpoints, [envelope(1, key="outcome:west:1")])
                heard = await _heartbeat_at(raw, head=1)  # the SUB is connected by now
                accounts = [envelope(i) for i in range(3)]
                outcomes = [envelope(100 + i, key=f"outcome:west:{i}") for i in range(3)]
                mixed = [e for pair in zip(accounts, outcomes, strict=True) for e in pair]
                tail = [envelope(200 + i, key=f"outcome:east:{i}") for i in range(3)]
                await _publish(ctx, endpoints, [*mixed, *tail])  # seqs 2..10
                heard += await _heartbeat_at(raw, head=10)
            finally:
                raw.close()
            batches = [first]
            while batches[-1].position < 10:
                batches.append(await anext(stream))
        await stream.aclose()  # type: ignore[attr-defined]
    live = [protocol.parse_live(frames) for frames in heard]
    sent = [seq for m in live if isinstance(m, protocol.LiveEvents) for seq, _env in m.events]
    assert sent == [2, 4, 6]  # the account records, and nothing else
    assert all(m.family_head is not None for m in live if isinstance(m, protocol.Heartbeat))
    assert [d.seq for b in batches for d in b.deliveries] == [2, 4, 6]
    assert batches[-1].position == 10
    assert batches[-1].caught_up


async def _heartbeat_at(sock: Socket, *, head: int) -> list[list[bytes]]:
    """What `sock` receives until a heartbeat with `head`, that heartbeat included."""
    heard: list[list[bytes]] = []
    while True:
        frames = await sock.recv()
        heard.append(frames)
        message = protocol.parse_live(frames)
        if isinstance(message, protocol.Heartbeat) and message.head >= head:
            return heard


async def test_a_removed_consumer_is_forgotten(ctx: Context, tmp_path: Path) -> None:
    async with embedded_broker(tmp_path) as endpoints:
        await _publish(ctx, endpoints, [envelope(1)])
        await _consume(ctx, endpoints, "cluster:gone", 1)
        async with Directory(ctx, endpoints, keys=api_keys()) as directory:
            assert [i.name for i in await directory.consumers()] == ["cluster:gone"]
            assert await directory.remove("cluster:gone")
            assert await directory.consumers() == []
            assert not await directory.remove("cluster:gone")
            assert not await directory.remove("not a valid name!")


@pytest.mark.parametrize("key_prefix", ["", "account:"], ids=["every key", "one family"])
async def test_a_subscriber_that_overflows_its_live_buffer_refetches_without_loss(
    ctx: Context, tmp_path: Path, key_prefix: str
) -> None:
    events = [envelope(i) for i in range(300)]
    async with embedded_broker(tmp_path) as endpoints:
        got: list[Delivery] = []
        async with Subscriber(
            ctx, endpoints, keys=api_keys(), consumer="cache", heartbeat_interval=0.1, live_buffer=2,
            key_prefix=key_prefix,
        ) as sub:
            stream = sub.batches()
            async with Publisher(ctx, endpoints, keys=api_keys()) as pub:
                publishing = asyncio.gather(*(pub.publish([e]) for e in events))
                async with asyncio.timeout(20):
                    async for batch in stream:
                        got += batch.deliveries
                        await asyncio.sleep(0)  # a slow consumer
                        if batch.position == len(events):
                            break
                receipts = await publishing
    seq_of = {r[0].event_id: r[0].seq for r in receipts}
    assert [d.seq for d in got] == list(range(1, 301))
    assert all(seq_of[d.envelope.event_id] == d.seq for d in got)


async def test_an_invalid_envelope_is_rejected_and_nothing_of_its_batch_is_stored(
    ctx: Context, tmp_path: Path
) -> None:
    bad = Envelope("not-a-uuid", "account.created", 2, "a", "account:a", False, "t", "c", {})
    async with embedded_broker(tmp_path) as endpoints, Publisher(ctx, endpoints, keys=api_keys()) as pub:
        with pytest.raises(BusRejected, match="event_id"):
            await pub.publish([envelope(1), bad])
        ok = await pub.publish([envelope(2)])
    assert ok[0].seq == 1


async def test_publish_raises_bus_unavailable_when_no_broker_answers(ctx: Context) -> None:
    async with Publisher(ctx, new_endpoints(), keys=api_keys(), timeout=0.3) as pub:
        with pytest.raises(BusUnavailable):
            await pub.publish([envelope(1)])


async def test_a_silent_consumer_is_listed_offline_after_the_timeout(ctx: Context, tmp_path: Path) -> None:
    async with embedded_broker(tmp_path, consumer_timeout=0.3) as endpoints:
        await _publish(ctx, endpoints, [envelope(1)])
        await _consume(ctx, endpoints, "cluster:gone", 1)
        async with Directory(ctx, endpoints, keys=api_keys()) as directory:

            async def offline() -> bool:
                (info,) = await directory.consumers()
                return not info.online and info.last_seen is not None and info.acked_seq == 1

            _ = await wait_until(offline, timeout=10, message="consumer offline")


async def test_a_broker_that_was_not_reading_lists_online_a_consumer_whose_ping_queued_behind_the_list(
    ctx: Context, tmp_path: Path
) -> None:
    """A broker whose loop stalled (a slow disk, a busy machine) finds requests queued: a PING
    read after a LIST in the same batch still counts, so a live consumer does not flap offline."""
    async with embedded_broker(tmp_path, consumer_timeout=0.3) as endpoints:
        sock = connect_dealer(ctx, endpoints.control, api_keys())
        try:

            async def exchange(*requests: list[bytes]) -> dict[bytes, protocol.ControlReply]:
                for frames in requests:
                    assert sock.send_nowait(frames)
                replies = [protocol.parse_reply(await sock.recv()) for _ in requests]
                return {r.req_id: r for r in replies}

            def online(reply: protocol.ControlReply) -> dict[str, bool]:
                assert isinstance(reply, protocol.ConsumerList)
                return {i["name"]: i["online"] for i in codec.decode(reply.body)}

            await exchange(protocol.build_ping(b"ping-001", "cache"))

            async def offline() -> bool:
                listed = await exchange(protocol.build_list(b"list-001"))
                return online(listed[b"list-001"]) == {"cache": False}

            _ = await wait_until(offline, timeout=10, message="the cache consumer offline")
            # One connection keeps its order: the LIST is read before the PING. The broker runs
            # on this test's loop, so blocking the loop is the broker not reading while both
            # arrive (delivered to its socket by libzmq's I/O thread).
            assert sock.send_nowait(protocol.build_list(b"list-002"))
            assert sock.send_nowait(protocol.build_ping(b"ping-002", "cache"))
            time.sleep(0.5)  # noqa: ASYNC251 - the stall itself, deliberately blocking the loop
            replies = {}
            for _ in range(2):
                reply = protocol.parse_reply(await sock.recv())
                replies[reply.req_id] = reply
            assert online(replies[b"list-002"]) == {"cache": True}
        finally:
            sock.close()


async def test_clients_started_before_the_broker_connect_once_it_is_up(ctx: Context, tmp_path: Path) -> None:
    endpoints = new_endpoints()
    event = envelope(1)
    async with (
        Subscriber(
            ctx, endpoints, keys=consumer_keys("cluster:early"), consumer="cluster:early",
            key_prefix="account:", heartbeat_interval=0.1, timeout=0.3,
        ) as sub,
        Publisher(ctx, endpoints, keys=api_keys(), timeout=0.3) as pub,
    ):
        with pytest.raises(BusUnavailable):
            await pub.publish([event])
        stream = sub.batches()
        first = asyncio.ensure_future(anext(stream))
        async with embedded_broker(tmp_path, endpoints=endpoints):
            async with asyncio.timeout(20):
                empty = await first  # caught up on an empty log
                while True:
                    try:
                        receipt = (await pub.publish([event]))[0]
                        break
                    except BusUnavailable:
                        # This publisher's short timeout (for the absent broker above) can
                        # end before a slow disk's first fdatasync: resent, as the relay does.
                        continue
                batch = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
    assert (empty.deliveries, empty.position, empty.caught_up) == ([], 0, True)
    assert receipt.seq == 1  # a resend of a stored try is a duplicate of it, not a second record
    assert [d.envelope for d in batch.deliveries] == [event]


async def test_a_position_the_broker_lost_in_a_crash_is_restored_by_the_live_subscriber(
    ctx: Context, tmp_path: Path
) -> None:
    endpoints = new_endpoints()
    events = [envelope(i) for i in range(10)]
    async with Subscriber(
        ctx, endpoints, keys=consumer_keys("cluster:c"), consumer="cluster:c", key_prefix="account:",
        heartbeat_interval=0.1, timeout=0.3,
    ) as sub:
        stream = sub.batches()
        async with embedded_broker(tmp_path, endpoints=endpoints):
            await _publish(ctx, endpoints, events)
            position = 0
            while position < 10:
                position = (await anext(stream)).position
                await sub.ack(position)
            await _wait_acked(ctx, endpoints, "cluster:c", 10)
            # White-box: wait until a pong has confirmed position 10 to the subscriber, so
            # the restore below must come from that confirmation, not from a pending re-send.
            _ = await wait_until(lambda: sub._confirmed >= 10, timeout=10, message="pong confirmed")
        # The broker comes back having lost the saved positions (as if killed before saving).
        (tmp_path / "consumers.json").write_text('{"consumers": {}}')
        with structlog.testing.capture_logs() as logs:
            async with embedded_broker(tmp_path, endpoints=endpoints):
                await _wait_acked(ctx, endpoints, "cluster:c", 10)
        await stream.aclose()  # type: ignore[attr-defined]
    assert any(entry["event"] == "acks_restored" for entry in logs)
