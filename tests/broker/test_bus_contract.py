"""The `core.bus` port's semantics, checked on the real broker, on NATS JetStream (a real
nats-server) and on the in-memory fake the unit tests use, so neither the second bus nor the
fake can drift from what they stand in for.

A connector is one identity (on the real broker, one CURVE key; on NATS, one user): `api` publishes account
events and lists consumers, `cluster-NAME` reads `cluster:NAME` and reports outcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from core.bus import Batch, BusConnector, PublishReceipt
from tests.broker.helpers import envelope
from tests.support.broker import embedded_broker
from tests.support.fake_bus import FakeBus
from tests.support.keys import client_keys
from tests.support.nats import nats_server
from tests.support.wait import wait_until
from transport.connector import BrokerConnector

Bus = Callable[[str], BusConnector]  # identity -> a connector acting as it


@asynccontextmanager
async def _bus(kind: str, tmp_path: Path) -> AsyncIterator[Bus]:
    if kind == "fake":
        fake = FakeBus().connector()
        yield lambda _identity: fake
        return
    if kind == "jetstream":
        async with nats_server(tmp_path / "nats") as server:
            await server.connector("api").prepare_stream()  # as bin/api does when it starts
            yield server.connector
        return
    async with embedded_broker(tmp_path) as endpoints:
        yield lambda identity: BrokerConnector(endpoints, keys=client_keys(identity), timeout=2.0)


BUSES = pytest.mark.parametrize("kind", ["broker", "jetstream", "fake"])


async def _until(batches: AsyncIterator[Batch], position: int) -> list[Batch]:
    got = [await anext(batches)]
    while got[-1].position < position:
        got.append(await anext(batches))
    return got


@BUSES
async def test_publish_confirms_each_envelope_and_knows_a_duplicate_by_its_event_id(
    kind: str, tmp_path: Path
) -> None:
    one, two = envelope(1), envelope(2)
    async with _bus(kind, tmp_path) as bus, bus("api").publisher() as pub:
        first = await pub.publish([one, two])
        again = await pub.publish([two, envelope(3)])
    assert [(r.event_id, r.duplicate) for r in first] == [(one.event_id, False), (two.event_id, False)]
    assert first[0].seq < first[1].seq
    assert (again[0].seq, again[0].duplicate) == (first[1].seq, True)
    assert again[1].seq > first[1].seq


@BUSES
async def test_a_new_consumer_is_told_it_is_caught_up_even_on_an_empty_bus(kind: str, tmp_path: Path) -> None:
    async with (
        _bus(kind, tmp_path) as bus,
        bus("cluster-a").subscription("cluster:a", key_prefix="account:") as sub,
    ):
        batches = sub.batches()
        batch = await anext(batches)
        await batches.aclose()  # type: ignore[attr-defined]
    assert (list(batch.deliveries), batch.position, batch.caught_up) == ([], 0, True)


@BUSES
async def test_a_filtered_subscription_gets_its_keys_in_order_and_acks_past_the_rest(
    kind: str, tmp_path: Path
) -> None:
    accounts = [envelope(i) for i in range(3)]
    outcome = envelope(9, key="outcome:east:x")
    other = envelope(8, key="outcome:west:y")
    async with _bus(kind, tmp_path) as bus:
        receipts: list[PublishReceipt] = []
        for identity, events in (
            ("api", [accounts[0]]), ("cluster-east", [outcome]), ("api", accounts[1:]),
            ("cluster-west", [other]),
        ):
            async with bus(identity).publisher() as pub:
                receipts += await pub.publish(events)
        head = receipts[-1].seq
        async with bus("cluster-east").subscription("cluster:east", key_prefix="account:") as sub:
            batches = sub.batches()
            got = await _until(batches, head)
            await sub.ack(got[-1].position)
            async with bus("api").directory() as directory:

                async def lag_zero() -> bool:
                    infos = {i.name: i for i in await directory.consumers()}
                    return (infos["cluster:east"].acked_seq, infos["cluster:east"].lag) == (head, 0)

                _ = await wait_until(lag_zero, timeout=10, message="acked past the filtered records")
                assert await directory.remove("cluster:east")
                assert "cluster:east" not in {i.name for i in await directory.consumers()}
                assert not await directory.remove("cluster:nobody")
            await batches.aclose()  # type: ignore[attr-defined]
    deliveries = [d for b in got for d in b.deliveries]
    assert [d.envelope for d in deliveries] == accounts
    assert got[-1].caught_up


@BUSES
async def test_a_consumer_resumes_after_its_acked_position(kind: str, tmp_path: Path) -> None:
    events = [envelope(i) for i in range(6)]
    async with _bus(kind, tmp_path) as bus:
        async with bus("api").publisher() as pub:
            receipts = await pub.publish(events)
        async with bus("api").subscription("cache") as sub:
            batches = sub.batches()
            await _until(batches, receipts[-1].seq)
            await sub.ack(receipts[2].seq)
            async with bus("api").directory() as directory:

                async def acked() -> bool:
                    (info,) = await directory.consumers()
                    return info.acked_seq == receipts[2].seq

                _ = await wait_until(acked, timeout=10, message="ack recorded")
            await batches.aclose()  # type: ignore[attr-defined]
        async with bus("api").subscription("cache") as sub:
            batches = sub.batches()
            again = await _until(batches, receipts[-1].seq)
            await batches.aclose()  # type: ignore[attr-defined]
    assert [d.envelope for b in again for d in b.deliveries] == events[3:]
