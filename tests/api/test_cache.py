"""The SQLite cache holds state, not history: generation-guarded, so order and repeats never matter."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from actors.api.cache_store import SCHEMA_VERSION, SqliteCache
from core.account import account_view
from core.cache import AccountCache, Change
from core.events import (
    AccountCreated,
    AccountDeleted,
    AccountUpdated,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
)

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


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[SqliteCache]:
    store = SqliteCache(tmp_path / "cache.sqlite3")
    yield store
    store.close()


def _fed(changes: Sequence[Change], batch: int = 1) -> SqliteCache:
    store = SqliteCache(":memory:")
    for start in range(0, len(changes), batch):
        store.apply(changes[start : start + batch])
    return store


def _state(changes: Sequence[Change], batch: int = 1) -> dict[str, object]:
    store = _fed(changes, batch)
    try:
        return dict(store.dump())
    finally:
        store.close()


def test_in_order_the_story_ends_deleted_at_generation_2_with_every_clusters_last_word() -> None:
    store = _fed(STORY)
    try:
        record = store.get_by_id(AID)
        assert record is not None
        assert (record.name, record.generation, record.deleted_at, record.updated_at) == (
            "Acme", 2, T2, T2
        )
        reports = {r.cluster: r for r in store.reports([AID])[AID]}
        assert (reports["a"].state, reports["a"].observed_generation) == ("deleted", 2)
        assert (reports["b"].state, reports["b"].observed_generation) == ("failed", 2)
        assert (reports["b"].error, reports["b"].attempts) == ("forbidden", 2)
        view = account_view(record, store.reports([AID])[AID], ["a", "b"], ["a", "b"]).to_json()
        assert view["status"] == "deleting"  # b still has the namespace and keeps trying
        assert view["clusters"]["b"]["state"] == "deleting"
        assert view["clusters"]["b"]["error"] == "forbidden"
    finally:
        store.close()


def test_every_order_of_the_events_with_repeats_ends_in_the_in_order_state() -> None:
    in_order = (CREATED, FAILED_A, PROVISIONED_A, DELETED, GONE_A, REFUSED_B)
    expected = _state(in_order)
    for order in itertools.permutations(in_order):
        # Each order, then the first half of it again (a redelivery after a crash).
        replayed = order + order[: len(order) // 2]
        assert _state(replayed) == expected, [type(c.event).__name__ for c in order]


@pytest.mark.parametrize("batch", [1, 2, 3, len(STORY) * 2])
def test_caches_fed_the_stream_in_different_batchings_converge(batch: int) -> None:
    stream = STORY + STORY[2:5]  # a redelivered stretch in the middle of the stream
    assert _state(stream, batch) == _state(STORY)


@pytest.mark.parametrize(
    "late",
    [PROVISIONED_A, FAILED_A, CREATED],
    ids=["provisioned-g1", "failed-g1", "created-g1"],
)
def test_a_late_older_event_does_not_revive_a_deleted_account_or_namespace(late: Change) -> None:
    store = _fed((CREATED, PROVISIONED_A, DELETED, GONE_A))
    try:
        before = store.dump()
        assert store.apply([late]) == [False]
        assert store.dump() == before
        [report] = store.reports([AID])[AID]
        assert (report.state, report.observed_generation) == ("deleted", 2)
    finally:
        store.close()


def test_a_deleted_account_stays_listed_as_deleted_with_its_generation(cache: SqliteCache) -> None:
    cache.apply([CREATED, DELETED])
    [listed] = cache.list_after(None, 10)
    assert (listed.id, listed.deleted_at, listed.generation) == (AID, T2, 2)
    found = cache.get_by_slug("acme")
    assert found is not None
    assert account_view(found, [], [], []).status == "deleted"


def test_a_tombstone_alone_shows_the_deleted_account_and_guards_its_generation(
    cache: SqliteCache,
) -> None:
    # A reader of the compacted log may get the tombstone first or only: it carries the
    # account's last state, so a fresh cache shows what the live one shows.
    assert cache.apply([DELETED]) == [True]
    record = cache.get_by_id(AID)
    assert record is not None
    assert (record.name, record.owner_email, record.deleted_at, record.generation) == (
        "Acme", "a@acme.io", T2, 2,
    )
    assert [r.id for r in cache.list_after(None, 10)] == [AID]
    assert cache.apply([CREATED]) == [False], "an older create changes nothing"
    assert cache.get_by_id(AID) == record


def test_a_tombstone_without_the_last_state_stays_hidden_until_the_create_arrives(
    cache: SqliteCache,
) -> None:
    bare = Change(AccountDeleted(AID, "acme", "acc-acme", T2, 2, "", "", ""), T2)
    assert cache.apply([bare]) == [True]
    assert cache.get_by_id(AID) is None, "nothing but the id is known: not shown"
    assert cache.list_after(None, 10) == []
    assert cache.apply([CREATED]) == [True]  # fills in the details, keeps the deletion
    record = cache.get_by_id(AID)
    assert record is not None
    assert (record.name, record.deleted_at, record.generation) == ("Acme", T2, 2)
    assert cache.apply([CREATED]) == [False]


def test_a_failed_batch_applies_none_of_it(
    cache: SqliteCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.apply([CREATED])

    def crash(*_args: object) -> bool:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(cache, "_report", crash)
    with pytest.raises(sqlite3.OperationalError):
        cache.apply([DELETED, PROVISIONED_A])
    monkeypatch.undo()
    record = cache.get_by_id(AID)
    assert record is not None
    assert (record.generation, record.deleted_at) == (1, None), "the deletion was rolled back"
    assert cache.apply([DELETED, PROVISIONED_A]) == [True, True], "applies once it can"


def test_reports_of_one_generation_keep_the_furthest_state(cache: SqliteCache) -> None:
    retried = Change(NamespaceProvisionFailed(AID, "a", "acc-acme", "quota", 1, 2), T2)
    cache.apply([CREATED, PROVISIONED_A, FAILED_A, retried])
    [report] = cache.reports([AID])[AID]
    assert report.state == "created", "a success is not undone by a failure of the same generation"
    cache.apply([Change(NamespaceProvisioned(AID, "a", "acc-acme", "uid-2", "9", 1), T4)])
    [report] = cache.reports([AID])[AID]
    assert report.updated_at == T4, "the same state reported later (a re-created namespace) wins"


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


@pytest.mark.parametrize("old", ["schema-1", "schema-2", "not-a-database"])
def test_an_old_schema_file_is_recreated_empty_and_asks_for_a_replay(
    tmp_path: Path, old: str
) -> None:
    path = tmp_path / "cache.sqlite3"
    if old == "schema-1":
        _old_schema_file(path)
    elif old == "schema-2":
        _schema_2_file(path)
    else:
        path.write_bytes(b"these sixteen bytes are not sqlite at all" * 100)
    store = SqliteCache(path)
    try:
        assert store.recreated
        assert store.needs_replay()
        assert store.list_after(None, 10) == []
        store.apply([CREATED])
        store.mark_replayed()
    finally:
        store.close()
    again = SqliteCache(path)
    try:
        assert not again.recreated
        assert not again.needs_replay(), "a replayed cache is kept as it is"
        assert again.get_by_id(AID) is not None
        user_version = again._db.execute("PRAGMA user_version").fetchone()[0]
        assert user_version == SCHEMA_VERSION
    finally:
        again.close()


def test_sqlite_cache_implements_the_cache_port(tmp_path: Path) -> None:
    port: AccountCache = SqliteCache(tmp_path / "port.sqlite3")  # mypy checks the protocol here
    try:
        assert port.needs_replay()
        assert port.get_by_slug("nobody") is None
        assert port.list_after(None, 10) == []
        assert port.known_clusters() == []
    finally:
        assert isinstance(port, SqliteCache)
        port.close()


UPDATED = Change(
    AccountUpdated(AID, "acme", "Acme Two", "b@acme.io", "acc-acme", T0, 2, "large", True), T3
)
RESUMED = Change(
    AccountUpdated(AID, "acme", "Acme Two", "b@acme.io", "acc-acme", T0, 3, "large", False), T4
)
PROVISIONED_A_2 = Change(NamespaceProvisioned(AID, "a", "acc-acme", "uid", "9", 2), T4)


def test_an_update_is_the_whole_state_at_its_generation_with_its_time_as_updated_at(
    cache: SqliteCache,
) -> None:
    assert cache.apply([CREATED, UPDATED]) == [True, True]
    record = cache.get_by_id(AID)
    assert record is not None
    assert (record.name, record.owner_email, record.plan, record.suspended) == (
        "Acme Two", "b@acme.io", "large", True
    )
    assert (record.generation, record.created_at, record.updated_at) == (2, T0, T3)
    assert cache.apply([UPDATED, CREATED]) == [False, False], "equal or older: no change"
    assert cache.apply([RESUMED]) == [True]
    resumed = cache.get_by_id(AID)
    assert resumed is not None
    assert (resumed.suspended, resumed.generation, resumed.updated_at) == (False, 3, T4)


def test_every_order_of_updates_and_reports_ends_in_the_newest_state() -> None:
    changes = (CREATED, UPDATED, RESUMED, PROVISIONED_A, PROVISIONED_A_2)
    expected = _state(changes)
    for order in itertools.permutations(changes):
        assert _state(order) == expected, [type(c.event).__name__ for c in order]
