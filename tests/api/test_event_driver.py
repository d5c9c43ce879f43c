"""The event driver and the cache rebuild: one consumer loop, a store before every ack, no leftovers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from actors.api.app import CACHE_FILE
from actors.api.cache import CacheActor, CacheMessage, FindAccount, NeedsReplay
from actors.api.cache_store import SqliteCache
from actors.api.driver import CACHE_CONSUMER, EventDriverActor, GetApplied
from actors.api.metrics import ApiMetrics
from actors.api.rebuild import REBUILD_CONSUMER, rebuild_cache
from actors.runtime import ActorRef, ActorSystem
from core.bus import Batch, EventSubscription
from core.cache import Change
from core.envelope import Envelope
from core.events import NamespaceProvisioned, to_envelope
from tests.api.harness import eventually, fast_settings, publish_event, running_api
from tests.api.test_cache import AID, STORY
from tests.support.fake_bus import FakeBus, FakeConnector
from tests.support.wait import wait_until


def _envelopes(changes: Sequence[Change]) -> list[Envelope]:
    return [to_envelope(c.event, correlation_id="t", occurred_at=c.occurred_at) for c in changes]


async def _dump(path: Path) -> dict[str, Any]:
    store = await SqliteCache.open(path)
    try:
        return dict(await store.dump())
    finally:
        await store.close()


async def _reference(changes: Sequence[Change]) -> dict[str, Any]:
    store = await SqliteCache.open(":memory:")
    try:
        _ = await store.apply(changes)
        return dict(await store.dump())
    finally:
        await store.close()


def _on_file(path: Path) -> Callable[[], CacheActor]:
    return lambda: CacheActor(lambda: SqliteCache.open(path))


async def _consumer_names(bus: FakeBus) -> set[str]:
    return {c.name for c in await bus.consumers()}


@asynccontextmanager
async def drivers(bus: FakeBus, path: Path, count: int = 1) -> AsyncIterator[list[ActorRef[Any]]]:
    """`count` cache actors on the one file, each fed by its own event driver on `cache`."""
    async with ActorSystem(stop_timeout=5.0) as system:
        refs: list[ActorRef[Any]] = []
        for i in range(count):
            cache: ActorRef[CacheMessage] = system.spawn(_on_file(path), name=f"cache-{i}")
            refs += [system.spawn(_driver(bus, cache), name=f"driver-{i}"), cache]
        yield refs


def _driver(bus: FakeBus, cache: ActorRef[CacheMessage]) -> Callable[[], EventDriverActor]:
    return lambda: EventDriverActor(bus.connector(), cache, ApiMetrics(), backoff_max=0.2)


async def _caught_up(bus: FakeBus) -> bool:
    return CACHE_CONSUMER in await _consumer_names(bus) and bus.acked_seq(CACHE_CONSUMER) == bus.head


async def test_competing_drivers_on_the_cache_consumer_end_in_the_in_order_state(
    tmp_path: Path,
) -> None:
    bus = FakeBus(compacting=False, batch_size=2)
    path = tmp_path / CACHE_FILE
    async with drivers(bus, path, count=2):
        for start in range(0, len(STORY), 3):
            await bus.publish(_envelopes(STORY[start : start + 3]))
        await bus.publish(_envelopes(STORY[1:4]))  # a daemon's redo after the dedup window
        await eventually(lambda: _caught_up(bus), timeout=10, message="both drivers caught up")
    assert await _dump(path) == await _reference(STORY)


class _AckLost:
    """A subscription whose first ack is lost with the connection: applied, never acked."""

    def __init__(self, inner: EventSubscription, connector: _LosingConnector) -> None:
        self._inner = inner
        self._connector = connector

    @property
    def consumer(self) -> str:
        return self._inner.consumer

    def batches(self) -> AsyncIterator[Batch]:
        return self._inner.batches()

    async def ack(self, seq: int) -> None:
        if self._connector.lose > 0:
            self._connector.lose -= 1
            raise ConnectionError("killed between apply and ack")
        await self._inner.ack(seq)


class _LosingConnector(FakeConnector):
    def __init__(self, bus: FakeBus, lose: int) -> None:
        super().__init__(bus)
        self.lose = lose

    @asynccontextmanager
    async def subscription(
        self, consumer: str, *, key_prefix: str = ""
    ) -> AsyncIterator[EventSubscription]:
        async with super().subscription(consumer, key_prefix=key_prefix) as inner:
            yield _AckLost(inner, self)


async def test_batches_applied_but_never_acked_are_redelivered_and_change_nothing_twice(
    tmp_path: Path,
) -> None:
    bus = FakeBus(compacting=False, batch_size=3)
    await bus.publish(_envelopes(STORY))
    path = tmp_path / CACHE_FILE
    connector = _LosingConnector(bus, lose=2)
    async with ActorSystem(stop_timeout=5.0) as system:
        cache: ActorRef[CacheMessage] = system.spawn(_on_file(path), name="cache")
        driver = system.spawn(
            lambda: EventDriverActor(connector, cache, ApiMetrics(), backoff_max=0.05),
            name="driver",
        )
        await eventually(lambda: _caught_up(bus), timeout=10, message="caught up after the losses")
        assert connector.lose == 0
        # Each event changed the cache once; the redeliveries changed nothing.
        assert await driver.ask(GetApplied()) == len(STORY)
    assert await _dump(path) == await _reference(STORY)
    rebuilt = tmp_path / "rebuilt.sqlite3"
    await rebuild_cache(bus.connector(), rebuilt)
    assert await _dump(rebuilt) == await _dump(path)


async def test_a_fresh_cache_resets_the_cache_consumer_and_reads_the_log_from_the_start(
    tmp_path: Path,
) -> None:
    bus = FakeBus(compacting=False)
    await bus.publish(_envelopes(STORY))
    # The consumer had passed all of it for a cache file that is now lost.
    await bus.subscribe(CACHE_CONSUMER).ack(bus.head)
    path = tmp_path / CACHE_FILE
    with capture_logs() as logs:
        async with drivers(bus, path) as (driver, cache):

            async def replayed() -> bool:
                return not await cache.ask(NeedsReplay())

            await eventually(replayed, timeout=10, message="the fresh cache replayed the log")
            assert (await cache.ask(FindAccount(account_id=AID))).records
            assert await driver.ask(GetApplied()) == len(STORY)
    resets = [e for e in logs if e["event"] == "cache_consumer_reset"]
    assert [(e["consumer"], e["removed"]) for e in resets] == [(CACHE_CONSUMER, True)]
    assert await _dump(path) == await _reference(STORY)
    # A replayed cache that restarts keeps its consumer's position: no second replay.
    with capture_logs() as logs:
        async with drivers(bus, path) as (driver, _cache):
            await wait_until(
                lambda: any(e["event"] == "consumer_subscribed" for e in logs), timeout=10,
                message="subscribed again",
            )
            await eventually(lambda: _caught_up(bus), timeout=10, message="caught up again")
            assert await driver.ask(GetApplied()) == 0
    assert not [e for e in logs if e["event"] == "cache_consumer_reset"]


async def test_rebuild_reads_the_whole_log_swaps_the_file_and_removes_its_consumer(
    tmp_path: Path,
) -> None:
    bus = FakeBus(compacting=False)
    await bus.publish(_envelopes(STORY))
    # A rebuild that died midway left its consumer behind: this one must not start there.
    await bus.subscribe(REBUILD_CONSUMER).ack(3)
    path = tmp_path / CACHE_FILE
    stale = await SqliteCache.open(path)
    _ = await stale.apply(STORY[:1])
    await stale.close()
    position = await rebuild_cache(bus.connector(), path)
    assert position == bus.head
    assert REBUILD_CONSUMER not in await _consumer_names(bus)
    assert await _dump(path) == await _reference(STORY)
    replaced = await SqliteCache.open(path)
    try:
        assert not await replaced.needs_replay(), "the event driver goes on from its own position"
    finally:
        await replaced.close()


async def test_rebuild_from_the_compacted_log_shows_every_live_account_as_the_live_cache_does(
    pg_dsn: str, tmp_path: Path
) -> None:
    bus = FakeBus()  # compacting: a rebuild gets the newest record of each key only
    bus.set_online("cluster:a", True)
    settings = fast_settings(pg_dsn, tmp_path / "live")
    async with running_api(settings, bus.connector()) as api:
        accounts = [
            await api.result("account.create", {"name": f"Rebuild {i}", "owner_email": "r@x.io"})
            for i in range(4)
        ]
        for i, account in enumerate(accounts):
            report = NamespaceProvisioned(account["id"], "a", account["namespace"], f"u{i}", "1", 1)
            await publish_event(bus, report)
            await publish_event(bus, report)  # the same state twice: the log keeps one
        await api.result("account.delete", {"id": accounts[0]["id"]})
        await wait_until(lambda: bus.head == 4 + 8 + 1, timeout=10, message="all relayed")
        await eventually(lambda: _caught_up(bus), timeout=10, message="live cache caught up")
        live = (await api.result("account.list", {}))["items"]
    rebuilt_path = tmp_path / "rebuilt" / CACHE_FILE
    rebuilt_path.parent.mkdir()
    await rebuild_cache(bus.connector(), rebuilt_path)
    live_dump, rebuilt_dump = await _dump(settings.state_dir / CACHE_FILE), await _dump(rebuilt_path)
    assert rebuilt_dump["reports"] == live_dump["reports"]
    # The deleted account's creation was compacted away; its tombstone carries its last
    # state, so the rebuilt cache shows it deleted, as the live one does.
    assert rebuilt_dump["accounts"] == live_dump["accounts"]
    rebuilt = await SqliteCache.open(rebuilt_path)
    try:
        shown = {r.id: r for r in await rebuilt.list_after(None, 100)}
    finally:
        await rebuilt.close()
    assert set(shown) == {a["id"] for a in live}
    assert shown[accounts[0]["id"]].deleted_at is not None
