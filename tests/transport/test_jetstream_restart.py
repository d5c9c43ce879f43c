"""A nats-server killed (SIGKILL) and restarted on the same port and store: confirmed records and
acked positions survive, and a running subscription carries on without a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from core.bus import Batch, BusUnavailable, ConsumerInfo, Delivery, PublishReceipt
from core.envelope import Envelope
from tests.broker.helpers import envelope
from tests.support.nats import NatsServer, nats_server
from tests.support.wait import wait_until


async def _read_until(batches: AsyncIterator[Batch], position: int) -> list[Delivery]:
    got: list[Delivery] = []
    while True:
        batch = await anext(batches)
        got += batch.deliveries
        if batch.position >= position:
            return got


async def _publish_when_back(server: NatsServer, events: list[Envelope]) -> list[PublishReceipt]:
    async with server.connector("api").publisher() as pub:

        async def published() -> list[PublishReceipt] | None:
            try:
                return await pub.publish(events)  # the same event ids each try, as the relay does
            except BusUnavailable:
                return None

        receipts = await wait_until(published, timeout=30, message="publish after restart")
        assert receipts is not None
        return receipts


async def _acked(server: NatsServer, name: str) -> ConsumerInfo:
    async with server.connector("api").directory() as directory:

        async def info() -> ConsumerInfo | None:
            try:
                found = {i.name: i for i in await directory.consumers()}
            except BusUnavailable:
                return None
            return found.get(name)

        found = await wait_until(info, timeout=30, message=f"{name} listed")
        assert found is not None
        return found


async def test_a_subscription_survives_a_server_restart_and_nothing_acked_is_lost(tmp_path: Path) -> None:
    before = [envelope(i) for i in range(5)]
    after = [envelope(i) for i in range(5, 8)]
    async with nats_server(tmp_path) as server:
        await server.connector("api").prepare_stream()
        async with server.connector("api").publisher() as pub:
            first = await pub.publish(before)
        cluster = server.connector("cluster-a")
        async with cluster.subscription("cluster:a", key_prefix="account:") as sub:
            batches = sub.batches()
            seen = await _read_until(batches, first[-1].seq)
            await sub.ack(first[2].seq)

            async def ack_recorded() -> bool:
                return (await _acked(server, "cluster:a")).acked_seq == first[2].seq

            _ = await wait_until(ack_recorded, timeout=10, message="ack recorded")
            await server.kill()
            await server.restart()
            second = await _publish_when_back(server, after)
            seen += await _read_until(batches, second[-1].seq)
            await batches.aclose()  # type: ignore[attr-defined]
        info = await _acked(server, "cluster:a")
        async with cluster.subscription("cluster:a", key_prefix="account:") as sub:
            batches = sub.batches()
            resumed = await _read_until(batches, second[-1].seq)
            await batches.aclose()  # type: ignore[attr-defined]
    assert [d.envelope for d in seen] == before + after
    assert info.acked_seq == first[2].seq
    assert [d.envelope for d in resumed] == before[3:] + after


async def test_a_running_consumer_that_was_removed_comes_back_from_its_ack(tmp_path: Path) -> None:
    events = [envelope(i) for i in range(3)]
    late = envelope(9)
    async with nats_server(tmp_path) as server:
        api = server.connector("api")
        await api.prepare_stream()
        async with api.publisher() as pub:
            first = await pub.publish(events)
        async with server.connector("cluster-a").subscription("cluster:a", key_prefix="account:") as sub:
            batches = sub.batches()
            _ = await _read_until(batches, first[-1].seq)
            await sub.ack(first[1].seq)
            async with api.directory() as directory:
                assert await directory.remove("cluster:a")
            async with api.publisher() as pub:
                (second,) = await pub.publish([late])
            again = await _read_until(batches, second.seq)
            await batches.aclose()  # type: ignore[attr-defined]
        info = await _acked(server, "cluster:a")
    assert [d.envelope for d in again] == [events[2], late]
    assert info.acked_seq >= first[1].seq
