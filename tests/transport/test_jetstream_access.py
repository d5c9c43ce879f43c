"""NATS identities on the bus: each user does only its own part, and a refusal is one clear
error, never a silent wait."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.bus import BusRejected
from tests.broker.helpers import envelope
from tests.support.nats import NatsServer, nats_server
from transport.access import BusRefused
from transport.jetstream.connection import Connection
from transport.jetstream.consumer import consumer_state
from transport.jetstream.stream import last_seq
from transport.jetstream.subjects import STREAM, next_subject

VIOLATION = re.compile("permissions violation", re.IGNORECASE)  # nats-py lowercases the error


def _conn(server: NatsServer, identity: str) -> Connection:
    return Connection([server.url], user=identity, password=server.passwords[identity],
                      timeout=2.0, name="probe")


async def test_a_cluster_cannot_report_for_another_cluster_and_nothing_is_stored(tmp_path: Path) -> None:
    async with nats_server(tmp_path) as server:
        await server.connector("api").prepare_stream()
        async with server.connector("cluster-b").publisher() as pub:
            with pytest.raises(BusRejected, match=VIOLATION):
                await pub.publish([envelope(1, key="outcome:a:x")])
            (own,) = await pub.publish([envelope(2, key="outcome:b:x")])
        async with server.connector("api").publisher() as pub:
            with pytest.raises(BusRejected, match=VIOLATION):
                await pub.publish([envelope(3, key="outcome:a:y")])
        async with _conn(server, "api") as conn:
            head = await last_seq(conn, STREAM)
    assert (own.seq, head) == (1, 1)


async def test_a_cluster_cannot_read_or_ack_another_clusters_consumer(tmp_path: Path) -> None:
    async with nats_server(tmp_path) as server:
        api = server.connector("api")
        await api.prepare_stream()
        async with api.publisher() as pub:
            _ = await pub.publish([envelope(1)])
        assert await server.connector("cluster-a").check_access("cluster:a")
        with pytest.raises(BusRefused, match="cluster-b") as refused:
            await server.connector("cluster-b").check_access("cluster:a")
        assert "\n" not in str(refused.value)
        async with server.connector("cluster-b").subscription("cluster:a", key_prefix="account:") as sub:
            with pytest.raises(BusRejected, match=VIOLATION):
                await anext(sub.batches())
        async with _conn(server, "cluster-b") as conn:
            with pytest.raises(BusRejected, match=VIOLATION):
                await conn.request(next_subject("cluster_a"), {"batch": 1, "no_wait": True})
            with pytest.raises(BusRejected, match=VIOLATION):
                # A forged AckAll of cluster_a's first delivery.
                await conn.guarded("$JS.ACK.FABRIC.cluster_a.1.1.1.0.0",
                                   conn.nc.request("$JS.ACK.FABRIC.cluster_a.1.1.1.0.0", b"+ACK", timeout=2))
        async with server.connector("cluster-b").directory() as directory:
            with pytest.raises(BusRejected, match=VIOLATION):
                await directory.remove("cluster:a")
            assert not await directory.remove("cluster:b")  # its own: allowed (and unknown)
        async with _conn(server, "api") as conn:
            state = await consumer_state(conn, STREAM, "cluster_a")
    assert state is None or state.ack_floor == 0


async def test_a_wrong_password_is_refused_with_one_line(tmp_path: Path) -> None:
    async with nats_server(tmp_path) as server:
        bad = server.connector("cluster-a", password="not-the-password")
        with pytest.raises(BusRefused, match="refused user 'cluster-a'") as refused:
            await bad.check_access("cluster:a", wait=10)
        with pytest.raises(BusRefused):
            async with bad.publisher():
                pass
    assert "\n" not in str(refused.value)


async def test_access_cannot_be_checked_without_a_server(tmp_path: Path) -> None:
    server = NatsServer(tmp_path, passwords={"api": "x"})  # never started
    assert not await server.connector("api").check_access("cache", wait=0.5)
