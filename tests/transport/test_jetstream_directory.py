"""The consumer directory on JetStream: a pulling consumer is online with its lag; one that stops
pulling (a stopped daemon) goes offline while the directory keeps answering; remove forgets it."""

from __future__ import annotations

from pathlib import Path

from core.bus import ConsumerInfo
from tests.broker.helpers import envelope
from tests.support.nats import nats_server
from tests.support.wait import wait_until


async def test_a_consumer_that_stops_pulling_goes_offline_and_can_be_removed(tmp_path: Path) -> None:
    async with nats_server(tmp_path) as server:
        api = server.connector("api", offline_after=1.0)
        await api.prepare_stream()
        async with api.publisher() as pub:
            receipts = await pub.publish([envelope(i) for i in range(3)])
        cluster = server.connector("cluster-a", poll=0.2)
        async with (
            api.directory() as directory,
            cluster.subscription("cluster:a", key_prefix="account:") as sub,
        ):

            async def info() -> ConsumerInfo | None:
                return {i.name: i for i in await directory.consumers()}.get("cluster:a")

            batches = sub.batches()
            batch = await anext(batches)
            while not batch.caught_up:
                batch = await anext(batches)
            await sub.ack(receipts[0].seq)
            # Suspended at a yield, it sends no pull request: as a SIGSTOPped daemon.
            online = await wait_until(info, timeout=10, message="listed")
            assert online is not None
            assert online.online
            assert online.last_seen is not None

            async def offline() -> ConsumerInfo | None:
                found = await info()
                return found if found is not None and not found.online else None

            stopped = await wait_until(offline, timeout=10, message="offline")
            assert stopped is not None
            await batches.aclose()  # type: ignore[attr-defined]
            assert await directory.remove("cluster:a")
            assert await info() is None
            assert not await directory.remove("cluster:a")
            assert not await directory.remove("not a name")
    assert (stopped.acked_seq, stopped.lag) == (receipts[0].seq, 2)
