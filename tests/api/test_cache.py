"""Both query caches hold state, not history: generation-guarded, so order and repeats never matter.

Every test of the port runs against SQLite and PostgreSQL (`caches` ids
`sqlite`, `postgres`); the schema-file tests are SQLite's. PostgreSQL's own
(several writers, LISTEN/NOTIFY, a server that goes away) are in
tests/api/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from actors.api.cache_store import SCHEMA_VERSION, SqliteCache
from core.account import STATUSES, Status, account_view, status_hint
from core.cache import AccountCache, Change
from core.errors import DependencyUnavailable
from core.events import (
    AccountCreated,
    AccountDeleted,
    AccountUpdated,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
)
from tests.api.caches import Caches, PgCaches, SqliteCaches, dump, feed
from tests.support.postgres import PgAdmin
from tests.support.wait import wait_until

AID = "8d3c8c57-7f54-4c44-9a43-6c1bd41d1a11"
T0, T1, T2, T3, T4 = (f"2026-01-01T00:00:0{i}.000000Z" for i in range(5))

CREATED = Change(AccountCreated(AID, "acme", "Acme", "a@acme.io", "acc-acme", T0, 1), T0)
DELETED = Change(AccountDeleted(AID, "acme", "acc-acme", T2, 2, "Acme", "a@acme.io", T0), T2)
FAILED_A = Change(NamespaceProvisionFailed(AID, "a", "acc-acme", "quota", 1, 1), T1)
PROVISIONED_A = Change(NamespaceProvisioned(AID, "a", "acc-acme", "uid", "7", 1), T1)
GONE_A = Change(NamespaceDeleted(AID, "a", "acc-acme", 2), T3)
PROVISIONED_B = Change(NamespaceProvisioned(AID, "b", "acc-acme", "uid-b", "8", 1), T1)
REFUSED_B = Change(NamespaceProvisionFailed(AID, "b", "acc-acme", "forbidden", 2, 2), T4)
# The story in the order it happened: create, a fails then succeeds, b succeeds, delete,
# a removes the namespace, b's removal is refused (twice).
STORY = (CREATED, FAILED_A, PROVISIONED_A, PROVISIONED_B, DELETED, GONE_A, REFUSED_B)


@pytest.fixture(params=["sqlite", "postgres"])
async def caches(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Caches]:
    if request.param == "sqlite":
        sqlite = SqliteCaches(tmp_path)
        yield sqlite
        await sqlite.close()
        return
    admin: PgAdmin = request.getfixturevalue("pg_admin")  # sync: it may start the server
    dsn = await admin.fresh_database(migrated=False)
    pg = PgCaches(dsn)
    try:
        yield pg
    finally:
        await pg.close()
        await admin.drop_database(dsn)


@pytest.fixture
async def cache(caches: Caches) -> AccountCache:
    return await caches.fresh()


def _every(caches: Caches, orders: list[tuple[Change, ...]]) -> list[tuple[Change, ...]]:
    """All of them on SQLite; an evenly spread twentieth on PostgreSQL (round trips per event)."""
    return orders if caches.kind == "sqlite" else orders[::20]


async def test_in_order_the_story_ends_deleted_at_generation_2_with_every_clusters_last_word(
    cache: AccountCache,
) -> None:
    await feed(cache, STORY)
    record = await cache.get_by_id(AID)
    assert record is not None
    assert (record.name, record.generation, record.deleted_at, record.updated_at) == (
        "Acme", 2, T2, T2
    )
    reports = {r.cluster: r for r in (await cache.reports([AID]))[AID]}
    assert (reports["a"].state, reports["a"].observed_generation) == ("deleted", 2)
    assert (reports["b"].state, reports["b"].observed_generation) == ("failed", 2)
    assert (reports["b"].error, reports["b"].attempts) == ("forbidden", 2)
    view = account_view(record, (await cache.reports([AID]))[AID], ["a", "b"], ["a", "b"]).to_json()
    assert view["status"] == "deleting"  # b still has the namespace and keeps trying
    assert view["clusters"]["b"]["state"] == "deleting"
    assert view["clusters"]["b"]["error"] == "forbidden"
    assert await cache.known_clusters() == ["a", "b"]


async def test_every_order_of_the_events_with_repeats_ends_in_the_in_order_state(
    caches: Caches,
) -> None:
    in_order = (CREATED, FAILED_A, PROVISIONED_A, DELETED, GONE_A, REFUSED_B)
    expected = await caches.state(in_order)
    for order in _every(caches, list(itertools.permutations(in_order))):
        # Each order, then the first half of it again (a redelivery after a crash).
        replayed = order + order[: len(order) // 2]
        assert await caches.state(replayed) == expected, [type(c.event).__name__ for c in order]


@pytest.mark.parametrize("batch", [1, 2, 3, len(STORY) * 2])
async def test_caches_fed_the_stream_in_different_batchings_converge(
    caches: Caches, batch: int
) -> None:
    stream = STORY + STORY[2:5]  # a redelivered stretch in the middle of the stream
    assert await caches.state(stream, batch) == await caches.state(STORY)


async def test_a_batch_answers_per_change_in_its_order_whatever_rows_it_touches(
    cache: AccountCache,
) -> None:
    # PostgreSQL applies a batch in lock order (reports after their account); the answers
    # are still those of the batch's own order.
    batch = [PROVISIONED_B, DELETED, CREATED, PROVISIONED_A, FAILED_A, DELETED]
    assert await cache.apply(batch) == [True, True, False, True, False, False]
    record = await cache.get_by_id(AID)
    assert record is not None
    assert (record.name, record.deleted_at, record.generation) == ("Acme", T2, 2)


@pytest.mark.parametrize(
    "late",
    [PROVISIONED_A, FAILED_A, CREATED],
    ids=["provisioned-g1", "failed-g1", "created-g1"],
)
async def test_a_late_older_event_does_not_revive_a_deleted_account_or_namespace(
    cache: AccountCache, late: Change
) -> None:
    await feed(cache, (CREATED, PROVISIONED_A, DELETED, GONE_A))
    before = await dump(cache)
    assert await cache.apply([late]) == [False]
    assert await dump(cache) == before
    [report] = (await cache.reports([AID]))[AID]
    assert (report.state, report.observed_generation) == ("deleted", 2)


async def test_a_deleted_account_stays_listed_as_deleted_with_its_generation(
    cache: AccountCache,
) -> None:
    _ = await cache.apply([CREATED, DELETED])
    [listed] = await cache.list_after(None, 10)
    assert (listed.id, listed.deleted_at, listed.generation) == (AID, T2, 2)
    found = await cache.get_by_slug("acme")
    assert found is not None
    assert account_view(found, [], [], []).status == "deleted"


async def test_a_tombstone_alone_shows_the_deleted_account_and_guards_its_generation(
    cache: AccountCache,
) -> None:
    # A reader of the compacted log may get the tombstone first or only: it carries the
    # account's last state, so a fresh cache shows what the live one shows.
    assert await cache.apply([DELETED]) == [True]
    record = await cache.get_by_id(AID)
    assert record is not None
    assert (record.name, record.owner_email, record.deleted_at, record.generation) == (
        "Acme", "a@acme.io", T2, 2,
    )
    assert [r.id for r in await cache.list_after(None, 10)] == [AID]
    assert await cache.apply([CREATED]) == [False], "an older create changes nothing"
    assert await cache.get_by_id(AID) == record


async def test_a_tombstone_without_the_last_state_stays_hidden_until_the_create_arrives(
    cache: AccountCache,
) -> None:
    bare = Change(AccountDeleted(AID, "acme", "acc-acme", T2, 2, "", "", ""), T2)
    assert await cache.apply([bare]) == [True]
    assert await cache.get_by_id(AID) is None, "nothing but the id is known: not shown"
    assert await cache.list_after(None, 10) == []
    assert await cache.apply([CREATED]) == [True]  # fills in the details, keeps the deletion
    record = await cache.get_by_id(AID)
    assert record is not None
    assert (record.name, record.deleted_at, record.generation) == ("Acme", T2, 2)
    assert await cache.apply([CREATED]) == [False]


async def test_a_failed_batch_applies_none_of_it_and_says_the_cache_is_unavailable(
    caches: Caches, cache: AccountCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ = await cache.apply([CREATED])
    caches.break_reports(cache, monkeypatch)
    with pytest.raises(DependencyUnavailable) as raised:
        _ = await cache.apply([DELETED, PROVISIONED_A])
    assert raised.value.dependency == "cache"
    monkeypatch.undo()
    record = await cache.get_by_id(AID)
    assert record is not None
    assert (record.generation, record.deleted_at) == (1, None), "the deletion was rolled back"
    assert await cache.known_clusters() == []
    assert await cache.apply([DELETED, PROVISIONED_A]) == [True, True], "applies once it can"
    assert await cache.known_clusters() == ["a"]


async def test_reports_of_one_generation_keep_the_furthest_state(cache: AccountCache) -> None:
    retried = Change(NamespaceProvisionFailed(AID, "a", "acc-acme", "quota", 1, 2), T2)
    _ = await cache.apply([CREATED, PROVISIONED_A, FAILED_A, retried])
    [report] = (await cache.reports([AID]))[AID]
    assert report.state == "created", "a success is not undone by a failure of the same generation"
    _ = await cache.apply([Change(NamespaceProvisioned(AID, "a", "acc-acme", "uid-2", "9", 1), T4)])
    [report] = (await cache.reports([AID]))[AID]
    assert report.updated_at == T4, "the same state reported later (a re-created namespace) wins"


async def test_a_new_cache_implements_the_port_empty_and_asking_for_a_replay(
    cache: AccountCache,
) -> None:
    assert await cache.needs_replay()
    assert await cache.get_by_slug("nobody") is None
    assert await cache.list_after(None, 10) == []
    assert await cache.reports([]) == {}
    assert await cache.known_clusters() == []
    await cache.ping()
    await cache.mark_replayed()
    assert not await cache.needs_replay()


async def test_find_and_page_read_accounts_with_their_reports_and_the_known_clusters(
    cache: AccountCache,
) -> None:
    other = Change(AccountCreated(AID[:-1] + "2", "beta", "Beta", "b@x.io", "acc-beta", T1, 1), T1)
    _ = await cache.apply([CREATED, PROVISIONED_B, FAILED_A, other])
    by_id = await cache.find(AID, None)
    by_slug = await cache.find(None, "acme")
    assert by_id == by_slug
    assert [r.id for r in by_id.records] == [AID]
    assert [(r.cluster, r.state) for r in by_id.reports[AID]] == [("a", "failed"), ("b", "created")]
    assert by_id.clusters == ["a", "b"]
    bare = await cache.find(other.event.account_id, None)
    assert (len(bare.records), bare.reports, bare.clusters) == (1, {other.event.account_id: []},
                                                                ["a", "b"])
    assert (await cache.find(None, "nobody")).records == []
    first = await cache.page(None, 1)
    rest = await cache.page(first.records[0].position, 10)
    assert [r.id for r in first.records + rest.records] == [AID, other.event.account_id]
    assert rest.reports == {other.event.account_id: []}


def _fleet() -> tuple[dict[str, str], list[Change]]:
    """One account in each status (with clusters a and b online), by name; their events."""
    ids = {name: f"8d3c8c57-7f54-4c44-9a43-6c1bd41d1a{i:02d}" for i, name in enumerate(
        ["ready", "bare", "half", "degraded", "updating", "suspended", "deleted", "deleting"])}

    def created(name: str, generation: int = 1, suspended: bool = False) -> Change:
        kind = AccountCreated if generation == 1 else AccountUpdated
        return Change(kind(ids[name], name, name, f"{name}@x.io", f"acc-{name}", T0, generation,
                           suspended=suspended), T1)

    def made(name: str, cluster: str, generation: int = 1) -> Change:
        return Change(NamespaceProvisioned(ids[name], cluster, f"acc-{name}", "u", "1", generation), T2)

    def deleted(name: str) -> Change:
        return Change(AccountDeleted(ids[name], name, f"acc-{name}", T3, 2, name, f"{name}@x.io", T0), T3)

    changes = [
        created("ready"), made("ready", "a"), made("ready", "b"),
        created("bare"),
        created("half"), made("half", "a"),
        created("degraded"), made("degraded", "b"),
        Change(NamespaceProvisionFailed(ids["degraded"], "a", "acc-degraded", "quota", 1, 1), T2),
        created("updating", 2), made("updating", "a"), made("updating", "b", 2),
        created("suspended", 2, suspended=True), made("suspended", "a", 2), made("suspended", "b", 2),
        created("deleted"), deleted("deleted"),
        Change(NamespaceDeleted(ids["deleted"], "a", "acc-deleted", 2), T4),
        Change(NamespaceDeleted(ids["deleted"], "b", "acc-deleted", 2), T4),
        created("deleting"), made("deleting", "a"), deleted("deleting"),
    ]
    return ids, changes


@pytest.mark.parametrize("online", [(), ("a",), ("a", "b"), ("a", "b", "c")], ids=repr)
async def test_a_page_by_status_hint_keeps_every_account_with_that_status(
    cache: AccountCache, online: tuple[str, ...]
) -> None:
    ids, changes = _fleet()
    _ = await cache.apply(changes)
    everything = await cache.page(None, 100)
    known = set(everything.clusters) | set(online)
    status_of = {
        r.id: account_view(r, everything.reports.get(r.id, []), known, online).status
        for r in everything.records
    }
    for status in STATUSES:
        kept = await cache.page(None, 100, status_hint(status, online))
        with_status = {a for a, s in status_of.items() if s == status}
        assert with_status <= {r.id for r in kept.records}, (status, online)
        assert all(r.id in kept.reports for r in kept.records)
    if online == ("a", "b"):  # the store does skip: what it keeps, exactly
        names = {v: k for k, v in ids.items()}
        # A status added to core.account needs an account here, or its hint goes untested.
        assert set(status_of.values()) == set(STATUSES)
        assert {names[a]: s for a, s in status_of.items()} == {
            "ready": "ready", "bare": "provisioning", "half": "provisioning",
            "degraded": "degraded", "updating": "updating", "suspended": "suspended",
            "deleted": "deleted", "deleting": "deleting"}

        async def kept_names(status: Status) -> set[str]:
            page = await cache.page(None, 100, status_hint(status, online))
            return {names[r.id] for r in page.records}

        assert await kept_names("provisioning") == {"bare", "half", "degraded", "updating"}
        assert await kept_names("ready") == {"ready", "suspended"}
        assert await kept_names("deleted") == {"deleted", "deleting"}
        # Paging through what it keeps moves past the skipped accounts.
        first = await cache.page(None, 1, status_hint("provisioning", online))
        rest = await cache.page(first.records[0].position, 10, status_hint("provisioning", online))
        assert [names[r.id] for r in first.records + rest.records] == [
            "bare", "half", "degraded", "updating"]


async def test_known_clusters_include_those_another_writer_of_the_store_added(
    caches: Caches, cache: AccountCache
) -> None:
    other = await caches.another(cache)
    _ = await cache.apply([CREATED, PROVISIONED_A])
    assert await cache.known_clusters() == ["a"]
    assert await other.known_clusters() == ["a"]
    _ = await other.apply([PROVISIONED_B])

    async def sees_b() -> bool:
        # SQLite sees it on the next read; PostgreSQL once the NOTIFY arrived (not listening
        # here: it reads the table each time).
        return await cache.known_clusters() == ["a", "b"]

    _ = await wait_until(sees_b, timeout=5, message="the other writer's cluster")
    assert await other.known_clusters() == ["a", "b"]


UPDATED = Change(
    AccountUpdated(AID, "acme", "Acme Two", "b@acme.io", "acc-acme", T0, 2, "large", True), T3
)
RESUMED = Change(
    AccountUpdated(AID, "acme", "Acme Two", "b@acme.io", "acc-acme", T0, 3, "large", False), T4
)
PROVISIONED_A_2 = Change(NamespaceProvisioned(AID, "a", "acc-acme", "uid", "9", 2), T4)


async def test_an_update_is_the_whole_state_at_its_generation_with_its_time_as_updated_at(
    cache: AccountCache,
) -> None:
    assert await cache.apply([CREATED, UPDATED]) == [True, True]
    record = await cache.get_by_id(AID)
    assert record is not None
    assert (record.name, record.owner_email, record.plan, record.suspended) == (
        "Acme Two", "b@acme.io", "large", True
    )
    assert (record.generation, record.created_at, record.updated_at) == (2, T0, T3)
    assert await cache.apply([UPDATED, CREATED]) == [False, False], "equal or older: no change"
    assert await cache.apply([RESUMED]) == [True]
    resumed = await cache.get_by_id(AID)
    assert resumed is not None
    assert (resumed.suspended, resumed.generation, resumed.updated_at) == (False, 3, T4)


async def test_every_order_of_updates_and_reports_ends_in_the_newest_state(
    caches: Caches,
) -> None:
    changes = (CREATED, UPDATED, RESUMED, PROVISIONED_A, PROVISIONED_A_2)
    expected = await caches.state(changes)
    for order in _every(caches, list(itertools.permutations(changes))):
        assert await caches.state(order) == expected, [type(c.event).__name__ for c in order]


async def test_both_caches_end_in_the_same_state(tmp_path: Path, cache_dsn: str) -> None:
    sqlite, pg = SqliteCaches(tmp_path), PgCaches(cache_dsn)
    try:
        stream = (*STORY, UPDATED, RESUMED, PROVISIONED_A_2)
        assert await sqlite.state(stream, 3) == await pg.state(stream, 3)
    finally:
        await pg.close()


# SQLite: its file and its thread ------------------------------------------------------------


def _old_schema_file(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE accounts (position INTEGER PRIMARY KEY, id TEXT, slug TEXT);"
        "CREATE TABLE applied (event_id TEXT PRIMARY KEY);"
        "CREATE TABLE cursor (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);"
        "INSERT INTO cursor VALUES (1, 40); INSERT INTO accounts VALUES (1, 'x', 'old');"
    )
    db.close()


def _schema_2_file(path: Path) -> None:
    """A cache of schema 2: accounts without plan or suspension."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE accounts (position INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
        "slug TEXT NOT NULL, name TEXT, owner_email TEXT, namespace TEXT NOT NULL, created_at TEXT, "
        "deleted_at TEXT, generation INTEGER NOT NULL, updated_at TEXT NOT NULL);"
        "CREATE TABLE meta (id INTEGER PRIMARY KEY, needs_replay INTEGER NOT NULL);"
        "INSERT INTO meta VALUES (1, 0);"
        "PRAGMA user_version = 2;"
    )
    db.execute(
        "INSERT INTO accounts (id, slug, name, owner_email, namespace, created_at, generation, "
        "updated_at) VALUES (?, 'acme', 'Acme', 'a@acme.io', 'acc-acme', ?, 1, ?)",
        (AID, T0, T0),
    )
    db.commit()
    db.close()


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


@pytest.mark.parametrize("old", ["schema-1", "schema-2", "not-a-database"])
async def test_an_old_schema_file_is_recreated_empty_and_asks_for_a_replay(
    tmp_path: Path, old: str
) -> None:
    path = tmp_path / "cache.sqlite3"
    if old == "schema-1":
        _old_schema_file(path)
    elif old == "schema-2":
        _schema_2_file(path)
    else:
        path.write_bytes(b"these sixteen bytes are not sqlite at all" * 100)
    store = await SqliteCache.open(path)
    try:
        assert store.recreated
        assert await store.needs_replay()
        assert await store.list_after(None, 10) == []
        _ = await store.apply([CREATED])
        await store.mark_replayed()
    finally:
        await store.close()
    again = await SqliteCache.open(path)
    try:
        assert not again.recreated
        assert not await again.needs_replay(), "a replayed cache is kept as it is"
        assert await again.get_by_id(AID) is not None
    finally:
        await again.close()
    assert _user_version(path) == SCHEMA_VERSION


async def test_a_schema_3_file_keeps_its_accounts_and_learns_its_clusters(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    store = await SqliteCache.open(path)
    try:
        await feed(store, (CREATED, PROVISIONED_A, PROVISIONED_B))
        await store.mark_replayed()
    finally:
        await store.close()
    db = sqlite3.connect(path)  # back to schema 3: no clusters table
    db.executescript("DROP TABLE clusters; PRAGMA user_version = 3;")
    db.close()
    again = await SqliteCache.open(path)
    try:
        assert not again.recreated
        assert not await again.needs_replay(), "no replay: the file was upgraded in place"
        assert await again.known_clusters() == ["a", "b"]
        assert await again.get_by_id(AID) is not None
    finally:
        await again.close()
    assert _user_version(path) == SCHEMA_VERSION


async def test_sqlite_reads_are_answered_while_the_writers_thread_is_busy(tmp_path: Path) -> None:
    # Reads use a connection of their own on the loop's thread: a write in progress (a long
    # batch, a checkpoint) does not queue them, and they see every commit made before them.
    store = await SqliteCache.open(tmp_path / "cache.sqlite3")
    busy, release = threading.Event(), threading.Event()

    def hold() -> None:
        busy.set()
        release.wait(30)

    try:
        await feed(store, STORY, 2)
        holding = asyncio.get_running_loop().run_in_executor(store._executor, hold)
        await asyncio.to_thread(busy.wait, 10)
        view = await asyncio.wait_for(store.find(AID, None), timeout=5)
        assert [r.id for r in view.records] == [AID]
        assert await asyncio.wait_for(store.known_clusters(), timeout=5)
        release.set()
        await holding
    finally:
        release.set()
        await store.close()


async def test_a_sqlite_read_that_fails_is_a_cache_outage_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await SqliteCache.open(tmp_path / "cache.sqlite3")
    try:
        await feed(store, STORY, 2)
        assert store._reader is not None

        def broken(*_args: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store._reader, "get_by_id", broken)
        with pytest.raises(DependencyUnavailable, match="disk I/O error"):
            await store.find(AID, None)
        monkeypatch.undo()
        assert [r.id for r in (await store.find(AID, None)).records] == [AID]
    finally:
        await store.close()
