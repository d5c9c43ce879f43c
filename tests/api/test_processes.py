"""`bin/api` as a real process with bin/broker and PostgreSQL: faults between commit and publish.

Each test kills something with SIGKILL (or stops PostgreSQL) at the point the
issue names, then checks the outside promises: an answered create is in the
database and its event reaches the broker log exactly once; a create refused
with -32020 left nothing behind; the API recovers by itself.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from actors.api.app import CACHE_FILE
from actors.api.cache_store import SqliteCache
from actors.api.rebuild import REBUILD_CONSUMER, rebuild_cache
from actors.legacy import db
from core.events import NamespaceProvisioned, to_envelope
from tests.api.processes import Client, consumers, read_log, start_api_process
from tests.support.broker import new_endpoints, restart_broker, start_broker_process
from tests.support.keys import api_keys, client_keys
from tests.support.ports import free_port
from tests.support.postgres import EmbeddedServer, PgAdmin, server_base
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until
from transport.connector import BrokerConnector

pytestmark = pytest.mark.processes


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _count(dsn: str, sql: str) -> int:
    conn = await db.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await db.close_connection(conn)


async def test_help_and_bad_settings(procs: ProcessGroup, tmp_path: Path) -> None:
    helped = await procs.start("api", "--help", name="help")
    assert await helped.process.wait() == 0
    assert "--legacy-dsn" in helped.log_text()
    bad = await procs.start(
        "api", "--listen", "nowhere", "--legacy-dsn", "postgresql://x", "--broker", "a,b,c",
        "--state-dir", str(tmp_path / "unused"), name="bad",
    )
    assert await bad.process.wait() == 2
    lines = [line for line in bad.log_text().splitlines() if line.strip()]
    assert "--listen" in lines[-1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = await procs.start(
            "api", "--listen", f"127.0.0.1:{port}", "--legacy-dsn", "postgresql://x/y",
            "--broker", "tcp://127.0.0.1:1,tcp://127.0.0.1:2,tcp://127.0.0.1:3",
            "--state-dir", str(tmp_path / "unused"), name="busy",
        )
        assert await busy.process.wait() == 2
    assert "in use" in busy.log_text().strip().splitlines()[-1]


async def test_event_committed_while_the_broker_is_dead_is_delivered_once_after_restart(
    pg_dsn: str, procs: ProcessGroup, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    broker, endpoints = await start_broker_process(procs, tmp_path / "broker")
    api, url = await start_api_process(procs, dsn=pg_dsn, endpoints=endpoints, state_dir=tmp_path / "s")
    client = Client(http, url)
    before = (await client.call("account.create", {"name": "Before", "owner_email": "b@x.io"}))["result"]
    await procs.kill(broker)
    # Committed to PostgreSQL with its outbox row; the relay cannot publish it now.
    during = (await client.call("account.create", {"name": "During", "owner_email": "d@x.io"}))["result"]
    assert (await client.call("account.get", {"id": during["id"]}))["result"]["id"] == during["id"]
    await restart_broker(procs, broker)

    async def drained() -> bool:
        return await _count(pg_dsn, "SELECT count(*) FROM fabric_outbox WHERE published_at IS NULL") == 0

    _ = await wait_until(drained, timeout=20, message="outbox drained after the broker restart")
    events = await read_log(endpoints)
    created = [e.aggregate_id for e in events if e.type == "account.created"]
    assert sorted(created) == sorted([before["id"], during["id"]])
    assert api.running


async def test_event_of_a_relay_killed_before_publishing_is_delivered_once(
    pg_dsn: str, procs: ProcessGroup, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    endpoints = new_endpoints()  # the broker is not up yet: the relay cannot publish
    state = tmp_path / "s"
    port = free_port()
    api, url = await start_api_process(procs, dsn=pg_dsn, endpoints=endpoints, state_dir=state, port=port)
    client = Client(http, url)
    account = (await client.call("account.create", {"name": "Orphan", "owner_email": "o@x.io"}))["result"]
    await procs.kill(api)  # SIGKILL between commit and publish
    assert await _count(pg_dsn, "SELECT count(*) FROM fabric_outbox WHERE published_at IS NULL") == 1
    _broker, _ = await start_broker_process(procs, tmp_path / "broker", endpoints=endpoints)
    _api2, url = await start_api_process(
        procs, dsn=pg_dsn, endpoints=endpoints, state_dir=state, port=port, name="api-2"
    )

    async def in_log() -> bool:
        return any(e.aggregate_id == account["id"] for e in await read_log(endpoints))

    _ = await wait_until(in_log, timeout=20, message="the orphaned event in the broker log")
    events = [e for e in await read_log(endpoints) if e.aggregate_id == account["id"]]
    assert len(events) == 1
    got = await Client(http, url).call("account.get", {"id": account["id"]})
    assert got["result"]["slug"] == "orphan"


async def test_postgres_down_gives_32020_writes_nothing_and_the_api_recovers(
    procs: ProcessGroup, pg_pristine: Path, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    with server_base() as base:
        server = EmbeddedServer.from_pristine(pg_pristine, base / "data", free_port())
        server.start()
        try:
            admin = PgAdmin(server.dsn())
            await asyncio.to_thread(admin.prepare_template)
            dsn = await admin.fresh_database()
            _broker, endpoints = await start_broker_process(procs, tmp_path / "broker")
            api, url = await start_api_process(procs, dsn=dsn, endpoints=endpoints, state_dir=tmp_path / "s")
            client = Client(http, url)
            first = await client.call("account.create", {"name": "Kept", "owner_email": "k@x.io"})
            assert "result" in first
            await asyncio.to_thread(server.stop)
            for i in range(3):
                reply = await client.call("account.create", {"name": f"Lost {i}", "owner_email": "l@x.io"})
                assert reply["error"]["code"] == -32020, reply
                assert reply["error"]["data"] == {"dependency": "legacy"}
            # Reads still come from the cache.
            kept = await client.call("account.get", {"id": first["result"]["id"]})
            assert kept["result"]["slug"] == "kept"
            async with http.get(url + "/readyz") as response:
                assert response.status == 503
                assert "legacy" in (await response.json())["down"]
            await asyncio.to_thread(server.start)

            async def creates_again() -> bool:
                reply = await client.call("account.create", {"name": "Back", "owner_email": "b@x.io"})
                return "result" in reply

            _ = await wait_until(creates_again, timeout=20, message="creates work again")
            slugs = await _slugs(dsn)
            assert slugs == ["back", "kept"], "nothing of the refused creates was written"
            assert await _count(dsn, "SELECT count(*) FROM fabric_outbox") == 2

            async def relayed() -> bool:
                unpublished = "SELECT count(*) FROM fabric_outbox WHERE published_at IS NULL"
                return await _count(dsn, unpublished) == 0

            _ = await wait_until(relayed, timeout=20, message="the relay recovered too")
            created = [e.aggregate_id for e in await read_log(endpoints)]
            assert len(created) == 2
            assert api.running
            assert await procs.stop(api) == 0
        finally:
            server.kill()


async def _slugs(dsn: str) -> list[str]:
    conn = await db.connect(dsn)
    try:
        return [r["slug"] for r in await conn.fetch("SELECT slug FROM organizations ORDER BY slug")]
    finally:
        await db.close_connection(conn)


async def test_sigterm_stops_the_api_cleanly(
    pg_dsn: str, procs: ProcessGroup, tmp_path: Path
) -> None:
    _broker, endpoints = await start_broker_process(procs, tmp_path / "broker")
    api, _url = await start_api_process(procs, dsn=pg_dsn, endpoints=endpoints, state_dir=tmp_path / "s")
    assert await procs.stop(api) == 0
    events = [json.loads(line)["event"] for line in api.log_text().splitlines() if line.startswith("{")]
    assert "process_stopped" in events


@pytest.mark.parametrize(
    "extra", [("--rebuild-cache",), ()], ids=["rebuild-flag", "fresh-cache-replays"]
)
async def test_a_lost_cache_is_restored_from_the_log_and_no_consumer_is_left_behind(
    pg_dsn: str, procs: ProcessGroup, tmp_path: Path, http: aiohttp.ClientSession,
    extra: tuple[str, ...],
) -> None:
    _broker, endpoints = await start_broker_process(procs, tmp_path / "broker")
    state = tmp_path / "s"
    api, url = await start_api_process(procs, dsn=pg_dsn, endpoints=endpoints, state_dir=state)
    client = Client(http, url)
    ids = [
        (await client.call("account.create", {"name": f"Kept {i}", "owner_email": "k@x.io"}))["result"]["id"]
        for i in range(3)
    ]

    async def consumed() -> bool:
        infos = await consumers(endpoints)
        return "cache" in infos and (infos["cache"].acked_seq, infos["cache"].lag) == (3, 0)

    _ = await wait_until(consumed, timeout=20, message="the cache consumer passed all three")
    assert await procs.stop(api) == 0
    for path in state.glob("cache.sqlite3*"):
        path.unlink()  # the cache is lost; the `cache` consumer has acked everything already
    _api2, url = await start_api_process(
        procs, dsn=pg_dsn, endpoints=endpoints, state_dir=state, name="api-restored", extra=extra,
    )

    async def restored() -> bool:
        listed = (await Client(http, url).call("account.list", {}))["result"]
        return sorted(item["id"] for item in listed["items"]) == sorted(ids)

    _ = await wait_until(restored, timeout=20, message="every account back in the cache")
    names = set(await consumers(endpoints))
    assert REBUILD_CONSUMER not in names
    assert not any(name.startswith("cache-audit-") for name in names)


async def test_cache_killed_mid_stream_ends_equal_to_a_rebuild_from_the_log(
    pg_dsn: str, procs: ProcessGroup, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    _broker, endpoints = await start_broker_process(procs, tmp_path / "broker")
    state = tmp_path / "s"
    port = free_port()
    api, url = await start_api_process(procs, dsn=pg_dsn, endpoints=endpoints, state_dir=state, port=port)
    client = Client(http, url)
    accounts = [
        (await client.call("account.create", {"name": f"Burst {i}", "owner_email": "b@x.io"}))["result"]
        for i in range(20)
    ]
    reports = [
        to_envelope(
            NamespaceProvisioned(a["id"], "t", a["namespace"], f"u{i}", "1", 1), correlation_id="d"
        )
        for i, a in enumerate(accounts)
    ]
    connector = BrokerConnector(endpoints, keys=api_keys())
    async with BrokerConnector(endpoints, keys=client_keys("cluster-t")).publisher() as publisher:
        await publisher.publish(reports)  # cluster t's reports
    await procs.kill(api)  # SIGKILL while the event driver applies and acks the burst
    _api2, url = await start_api_process(
        procs, dsn=pg_dsn, endpoints=endpoints, state_dir=state, port=port, name="api-2"
    )

    async def cache_caught_up() -> bool:
        # All 40 events stored (the restarted relay may still owe a create the killed one
        # committed but never published) and all of them in the cache.
        infos = await consumers(endpoints)
        return "cache" in infos and (infos["cache"].acked_seq, infos["cache"].lag) == (40, 0)

    _ = await wait_until(cache_caught_up, timeout=30, message="the cache consumer caught up")
    assert await procs.stop(_api2) == 0
    live = await SqliteCache.open(state / CACHE_FILE)
    try:
        expected = await live.dump()
    finally:
        await live.close()
    rebuilt = tmp_path / "rebuilt.sqlite3"
    await rebuild_cache(connector, rebuilt, consumer="cache-check")
    replayed = await SqliteCache.open(rebuilt)
    try:
        assert await replayed.dump() == expected
    finally:
        await replayed.close()
    assert len(expected["reports"]) == 20
    assert "cache-check" not in await consumers(endpoints), "the rebuild removed its consumer"
