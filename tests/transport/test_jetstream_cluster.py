"""A three-node JetStream cluster with a replicated stream: a node killed (SIGKILL) and restarted
while events are published loses no confirmed record."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.bus import BusUnavailable, PublishReceipt
from core.envelope import Envelope
from tests.broker.helpers import envelope
from tests.support.nats import nats_cluster
from tests.support.wait import wait_until
from tests.transport.jetstream_helpers import read_all

EVENTS = 60


async def test_every_confirmed_publish_survives_a_node_kill_and_restart(tmp_path: Path) -> None:
    confirmed: dict[str, Envelope] = {}
    async with nats_cluster(tmp_path, size=3) as cluster:
        api = cluster.connector("api", replicas=3, timeout=3.0)

        async def stream_placed() -> bool:
            # Every node answers /healthz before the meta leader counts all three as online
            # peers; until then a three-replica stream has nowhere to go (BusUnavailable, which
            # wait_until takes as "not yet").
            await api.prepare_stream()
            return True

        _ = await wait_until(stream_placed, timeout=30, message="the stream placed on 3 peers")
        killed = asyncio.Event()

        async def publish_all() -> None:
            async with api.publisher() as pub:
                for i in range(EVENTS):
                    event = envelope(i)

                    async def once(event: Envelope = event) -> list[PublishReceipt] | None:
                        try:
                            return await pub.publish([event])  # retried with the same id
                        except BusUnavailable:
                            return None

                    _ = await wait_until(once, timeout=60, message=f"event {i} confirmed")
                    confirmed[event.event_id] = event
                    if i == EVENTS // 3:
                        killed.set()

        async def kill_and_restart() -> None:
            await killed.wait()
            await cluster.kill(0)
            await wait_until(lambda: len(confirmed) >= 2 * EVENTS // 3, timeout=60,
                             message="publishing went on with a node down")
            await cluster.restart(0)

        async with asyncio.TaskGroup() as tasks:
            _ = tasks.create_task(publish_all())
            _ = tasks.create_task(kill_and_restart())
        got = await read_all(cluster.connector("api", replicas=3), "cache")
    assert {d.envelope.event_id for d in got} == set(confirmed)
