"""The compacted log on JetStream: one record per key, dedup by event id, tombstones that
expire, and a new consumer that reads the current state, not the history."""

from __future__ import annotations

from pathlib import Path

from tests.broker.helpers import envelope
from tests.support.nats import nats_server
from tests.support.wait import wait_until
from tests.transport.jetstream_helpers import read_all
from transport.jetstream.connection import Connection
from transport.jetstream.stream import last_seq
from transport.jetstream.subjects import STREAM, key_subject, prefix_filter, stream_api


async def _messages(conn: Connection) -> int:
    info = await conn.request(stream_api("INFO", STREAM))
    return int(info["state"]["messages"])


def test_keys_map_to_subjects_one_to_one() -> None:
    assert key_subject("account:abc") == "fabric.account.abc"
    assert key_subject("outcome:east:abc") == "fabric.outcome.east.abc"
    assert key_subject("outcome:a.b:c") != key_subject("outcome:a:b.c")
    assert prefix_filter("") == "fabric.>"
    assert prefix_filter("account:") == "fabric.account.>"


async def test_a_republished_event_id_is_a_duplicate_and_stored_once(tmp_path: Path) -> None:
    one = envelope(1)
    async with nats_server(tmp_path) as server:
        api = server.connector("api")
        await api.prepare_stream()
        async with api.publisher() as pub:
            (first,) = await pub.publish([one])
            (again,) = await pub.publish([one])
        async with Connection([server.url], user="api", password=server.passwords["api"],
                              timeout=2.0, name="probe") as conn:
            stored = await _messages(conn)
    assert (first.duplicate, again.duplicate, again.seq) == (False, True, first.seq)
    assert stored == 1


async def test_the_log_keeps_only_the_newest_record_of_each_key(tmp_path: Path) -> None:
    versions = [envelope(i, key=7) for i in range(3)]  # three events of one account
    other = envelope(9)
    async with nats_server(tmp_path) as server:
        api = server.connector("api")
        await api.prepare_stream()
        async with api.publisher() as pub:
            receipts = await pub.publish([*versions, other])
        got = await read_all(api, "cache")
        async with Connection([server.url], user="api", password=server.passwords["api"],
                              timeout=2.0, name="probe") as conn:
            stored = await _messages(conn)
    assert [d.envelope for d in got] == [versions[-1], other]
    assert [d.seq for d in got] == [receipts[2].seq, receipts[3].seq]
    assert stored == 2


async def test_a_new_consumer_sees_current_state_and_tombstones_expire(tmp_path: Path) -> None:
    live, gone = envelope(1), envelope(2)
    tombstone = envelope(3, key=2, tombstone=True)
    async with nats_server(tmp_path) as server:
        api = server.connector("api", tombstone_ttl=1.0)
        await api.prepare_stream()
        async with api.publisher() as pub:
            _ = await pub.publish([live, gone, tombstone])
        # Before the retention: the deletion is there for a reader to see.
        assert [d.envelope for d in await read_all(api, "cache")] == [live, tombstone]
        async with Connection([server.url], user="api", password=server.passwords["api"],
                              timeout=2.0, name="probe") as conn:

            async def expired() -> bool:
                return await _messages(conn) == 1

            _ = await wait_until(expired, timeout=10, message="tombstone expired")
            head = await last_seq(conn, STREAM)
        fresh = await read_all(server.connector("cluster-a"), "cluster:a", key_prefix="account:")
    assert [d.envelope for d in fresh] == [live]
    assert head >= 3
