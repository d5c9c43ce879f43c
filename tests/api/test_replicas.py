"""Several API replicas on one PostgreSQL query cache: they serve the same accounts.

In process: two writers applying the same batches in opposite orders
converge (and never deadlock); a cache actor wakes its waiters when another
replica applies; a server that goes away makes the cache unavailable, and it
(and its listener) recovers when it is back; `--rebuild-cache` on a
PostgreSQL cache replaces it with one read from the log and tells the
listening replicas. As real processes (bin/api
twice, bin/broker, PostgreSQL): what one replica answered the other reads;
`account.wait` on one wakes when either applies the outcome; SIGKILL either
and the other keeps serving, nothing lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from actors.api.cache import (
    Applied,
    ApplyEvents,
    CacheActor,
    CacheMessage,
    FindAccount,
    WatchAccount,
)
from actors.api.cache_pg import LISTENER_NAME, PgCache, PgRebuild
from actors.api.driver import EventDriverActor
from actors.api.metrics import ApiMetrics
from actors.api.rebuild import REBUILD_CONSUMER, rebuild_cache
from actors.legacy import db
from actors.runtime import ActorRef, ActorSystem
from core.backoff import Backoff
from core.bus import EventSubscription
from core.cache import Change
from core.errors import DependencyUnavailable
from core.events import (
    ACCOUNT_KEY_PREFIX,
    AccountCreated,
    NamespaceProvisioned,
    from_envelope,
    to_envelope,
)
from tests.api.caches import PgCaches, dump
from tests.api.fake_daemon import FakeDaemon
from tests.api.processes import Client, read_log, start_api_process
from tests.api.test_cache import AID, CREATED, PROVISIONED_A, STORY, T0, T1
from tests.support.broker import start_broker_process
from tests.support.fake_bus import FakeBus, FakeConnector
from tests.support.keys import client_keys
from tests.support.ports import free_port
from tests.support.postgres import EmbeddedServer, server_base
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until
from transport.connector import BrokerConnector
from transport.endpoints import BrokerEndpoints

GHOST = Change(AccountCreated("0f0f0f0f-0000-4000-8000-00000000beef", "ghost", "Ghost",
                              "g@x.io", "acc-ghost", T0, 1), T0)


class _FeedCounter:
    """Open `cache` subscriptions across the replicas, and how many each replica opened."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0
        self.opened: dict[str, int] = {}

    def connector(self, bus: FakeBus, replica: str) -> FakeConnector:
        counter = self

        class Counting(FakeConnector):
            @asynccontextmanager
            async def subscription(
                self, consumer: str, *, key_prefix: str = ""
            ) -> AsyncIterator[EventSubscription]:
                counter.open += 1
                counter.most = max(counter.most, counter.open)
                counter.opened[replica] = counter.opened.get(replica, 0) + 1
                try:
                    async with super().subscription(consumer, key_prefix=key_prefix) as sub:
                        yield sub
                finally:
                    counter.open -= 1

        return Counting(bus)


async def test_one_replica_feeds_a_shared_cache_at_a_time_and_a_standby_takes_over(
    cache_dsn: str,
) -> None:
    bus = FakeBus(compacting=False, batch_size=2)
    counter = _FeedCounter()
    envelopes = [to_envelope(c.event, correlation_id="t", occurred_at=c.occurred_at) for c in STORY]
    _ = await bus.publish(envelopes[:3])

    def replica(system: ActorSystem, name: str) -> None:
        cache: ActorRef[CacheMessage] = system.spawn(
            lambda: CacheActor(lambda: PgCache.open(cache_dsn, keepalive=0.2)), name="cache"
        )
        system.spawn(
            lambda: EventDriverActor(counter.connector(bus, name), cache, ApiMetrics(),
                                     backoff_max=0.05),
            name="event-driver",
        )

    def caught_up() -> bool:
        return bus.acked_seq("cache") == bus.head

    async with ActorSystem(stop_timeout=5.0) as second:
        async with ActorSystem(stop_timeout=5.0) as first:
            replica(first, "first")
            await wait_until(caught_up, timeout=10, message="the first replica fed the cache")
            replica(second, "second")
            _ = await bus.publish(envelopes[3:5])
            await wait_until(caught_up, timeout=10, message="the feeder applied the new events")
            assert counter.opened == {"first": 1}, "the standby holds no subscription"
        # The feeder stopped: its session ended with its lease, and the standby takes over.
        _ = await bus.publish(envelopes[5:])
        await wait_until(caught_up, timeout=10, message="the standby took over the feed")
        assert counter.opened.get("second") == 1
        assert counter.most == 1, "never two subscriptions on the shared cache's consumer"
    live, reference = await PgCache.open(cache_dsn), PgCaches(cache_dsn)
    try:
        assert await dump(live) == await reference.state(STORY)
    finally:
        await live.close()
        await reference.close()


async def test_rebuild_replaces_a_postgres_cache_by_the_log_and_wakes_the_replicas(
    cache_dsn: str,
) -> None:
    bus = FakeBus(compacting=False)
    await bus.publish([to_envelope(c.event, correlation_id="t", occurred_at=c.occurred_at)
                       for c in STORY])
    live = await PgCache.open(cache_dsn)
    heard: list[Sequence[str] | None] = []
    listening = asyncio.create_task(live.listen(heard.append), name="listen")
    try:
        _ = await wait_until(lambda: heard == [None], timeout=10, message="listening")
        _ = await live.apply([GHOST, *STORY[:2]])  # a row no event explains, and a stale state
        position = await rebuild_cache(bus.connector(), PgRebuild(cache_dsn))
        assert position == bus.head
        assert REBUILD_CONSUMER not in {c.name for c in await bus.consumers()}
        _ = await wait_until(lambda: heard.count(None) == 2, timeout=10, message="told of it")
        reference = PgCaches(cache_dsn)
        try:
            assert await dump(live) == await reference.state(STORY)
        finally:
            await reference.close()
        assert await live.get_by_id(GHOST.event.account_id) is None
        assert not await live.needs_replay(), "the event driver goes on from its own position"
        record = await live.get_by_id(AID)
        assert record is not None
        assert record.deleted_at is not None
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await live.close()


# PostgreSQL: replicas sharing one database ------------------------------------------------------


async def test_two_replicas_applying_the_same_batches_in_opposite_orders_converge(
    cache_dsn: str,
) -> None:
    caches = PgCaches(cache_dsn)
    try:
        one = await caches.fresh()
        two = await caches.another(one)
        accounts = [
            Change(AccountCreated(f"{AID[:-2]}{i:02d}", f"s{i}", "N", "n@x.io", f"acc-s{i}", T0, 1), T0)
            for i in range(20)
        ]
        reports = [
            Change(NamespaceProvisioned(c.event.account_id, "a", "ns", "u", "1", 1), T1)
            for c in accounts
        ]
        forward = [x for pair in zip(accounts, reports, strict=True) for x in pair]
        for _ in range(5):
            answers = await asyncio.gather(one.apply(forward), two.apply(forward[::-1]))
            assert all(len(a) == len(forward) for a in answers)
        assert await dump(one) == await caches.state(forward)
    finally:
        await caches.close()


async def _listeners(dsn: str) -> int:
    """How many cache listeners have sent their LISTEN (and nothing since) on this database."""
    conn = await db.connect(dsn)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
            "AND datname = current_database() AND query LIKE 'LISTEN%'", LISTENER_NAME,
        ))
    finally:
        await db.close_connection(conn)


async def test_a_cache_actor_wakes_its_waiters_when_another_replica_applies(
    cache_dsn: str,
) -> None:
    async with ActorSystem(stop_timeout=5.0) as system:
        one, two = (
            system.spawn(lambda: CacheActor(lambda: PgCache.open(cache_dsn)), name=f"cache-{i}")
            for i in (1, 2)
        )
        _ = await one.ask(ApplyEvents([Applied(CREATED, "e1")]))

        async def both_listening() -> bool:
            return await _listeners(cache_dsn) == 2

        _ = await wait_until(both_listening, timeout=10, message="both replicas listening")
        changed = await two.ask(WatchAccount(AID))
        assert not changed.done()
        _ = await one.ask(ApplyEvents([Applied(PROVISIONED_A, "e2")]))
        async with asyncio.timeout(5):
            await changed  # woken by replica 1's NOTIFY: replica 2 applied nothing
        snapshot = await two.ask(FindAccount(account_id=AID))
        assert snapshot.clusters == ["a"]


async def test_a_postgres_cache_whose_server_is_down_is_unavailable_and_recovers(
    pg_pristine: Path,
) -> None:
    with server_base() as base:
        server = EmbeddedServer.from_pristine(pg_pristine, base / "data", free_port())
        server.start()
        fast = {"backoff": Backoff(initial=0.05, cap=0.3), "timeout": 2.0}
        cache, other = await PgCache.open(server.dsn(), **fast), await PgCache.open(server.dsn())
        heard: list[list[str] | None] = []
        listening = asyncio.create_task(
            cache.listen(lambda ids: heard.append(None if ids is None else list(ids))), name="listen"
        )
        try:
            _ = await wait_until(lambda: heard == [None], timeout=10, message="listening")
            assert await cache.apply([CREATED]) == [True]
            await asyncio.to_thread(server.stop)
            with pytest.raises(DependencyUnavailable) as raised:
                _ = await cache.get_by_id(AID)
            assert raised.value.dependency == "cache"
            with pytest.raises(DependencyUnavailable):
                _ = await cache.apply([PROVISIONED_A])
            await asyncio.to_thread(server.start)

            async def reads_again() -> bool:
                try:
                    return await cache.get_by_id(AID) is not None
                except DependencyUnavailable:
                    return False

            _ = await wait_until(reads_again, timeout=20, message="reads work again")
            # The listener reconnected and said it may have missed changes ...
            _ = await wait_until(lambda: heard.count(None) == 2, timeout=20, message="relistened")
            # ... and hears another writer's commits again.
            assert await other.apply([PROVISIONED_A]) == [True]
            _ = await wait_until(lambda: heard[-1] == [AID], timeout=10, message="notified")
            assert await cache.known_clusters() == ["a"]
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            await cache.close()
            await other.close()
            server.kill()


# Real processes -----------------------------------------------------------------------------


@asynccontextmanager
async def cluster_daemon(
    endpoints: BrokerEndpoints, cluster: str, go: asyncio.Event
) -> AsyncIterator[None]:
    """Cluster `cluster`'s daemon over the real broker: it reports on account events once `go`."""
    connector = BrokerConnector(endpoints, keys=client_keys(f"cluster-{cluster}"), timeout=2.0)
    reporter = FakeDaemon(FakeBus(), cluster)

    async def run() -> None:
        async with connector.subscription(f"cluster:{cluster}", key_prefix=ACCOUNT_KEY_PREFIX) as sub, \
                connector.publisher() as publisher:
            async for batch in sub.batches():
                await go.wait()
                outcomes = [reporter.report(from_envelope(d.envelope)) for d in batch.deliveries]
                await publisher.publish(
                    [to_envelope(o, correlation_id="daemon") for o in outcomes if o is not None]
                )
                await sub.ack(batch.position)

    task = asyncio.create_task(run(), name=f"daemon-{cluster}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.processes
async def test_two_replicas_on_one_postgres_cache_serve_the_same_accounts_and_survive_a_kill(
    procs: ProcessGroup, pg_dsn: str, cache_dsn: str, tmp_path: Path
) -> None:
    _broker, endpoints = await start_broker_process(procs, tmp_path / "broker")
    shared = ("--cache-dsn", cache_dsn)
    api1, url1 = await start_api_process(procs, dsn=pg_dsn, endpoints=endpoints,
                                         state_dir=tmp_path / "s1", name="api-1", extra=shared)
    api2, url2 = await start_api_process(procs, dsn=pg_dsn, endpoints=endpoints,
                                         state_dir=tmp_path / "s2", name="api-2", extra=shared)
    go = asyncio.Event()
    async with aiohttp.ClientSession() as http, cluster_daemon(endpoints, "t", go):
        one, two = Client(http, url1), Client(http, url2)

        async def online() -> bool:
            return [c["status"] for c in await two.result("cluster.list", {})] == ["online"]

        _ = await wait_until(online, timeout=20, message="cluster t online")
        created = await one.result("account.create", {"name": "Shared", "owner_email": "s@x.io"})
        # Answered by replica 1, readable at once on replica 2: the cache is one database.
        seen = await two.result("account.get", {"id": created["id"]})
        assert (seen["slug"], seen["status"]) == ("shared", "provisioning")
        waiting = asyncio.create_task(
            two.result("account.wait", {"id": created["id"], "timeout": 20}), name="wait"
        )
        go.set()  # the daemon reports; whichever replica's driver applies it, replica 2 wakes
        assert (await waiting)["status"] == "ready"

        await procs.kill(api1)
        after = await two.result("account.create", {"name": "After", "owner_email": "a@x.io"})
        assert (await two.result("account.wait", {"id": after["id"], "timeout": 20}))["status"] == "ready"
        _api1, url1 = await start_api_process(
            procs, dsn=pg_dsn, endpoints=endpoints, state_dir=tmp_path / "s1",
            port=int(url1.rsplit(":", 1)[1]), name="api-1b", extra=shared,
        )
        await procs.kill(api2)
        listed = (await Client(http, url1).result("account.list", {}))["items"]
        assert {(a["slug"], a["status"]) for a in listed} == {("shared", "ready"), ("after", "ready")}
    created_events = [e.aggregate_id for e in await read_log(endpoints) if e.type == "account.created"]
    assert sorted(created_events) == sorted([created["id"], after["id"]]), "each published once"
