"""The SQLite cache applies each event once, atomically with its cursor; a rebuild equals the live cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.api.app import CACHE_FILE
from actors.api.cache import GetCursor
from actors.api.cache_store import SqliteCache
from actors.api.rebuild import rebuild_cache
from core.envelope import new_event_id
from core.events import (
    AccountCreated,
    AccountDeleted,
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
)
from tests.api.harness import FakeConnector, eventually, fast_settings, publish_event, running_api
from tests.support.fake_bus import FakeBus

AID = "8d3c8c57-7f54-4c44-9a43-6c1bd41d1a11"
CREATED = AccountCreated(AID, "acme", "Acme", "a@acme.io", "acc-acme", "2026-01-01T00:00:00.000000Z")
AT = "2026-01-01T00:00:01.000000Z"


@pytest.fixture
def cache(tmp_path: Path) -> Any:
    store = SqliteCache(tmp_path / "cache.sqlite3")
    yield store
    store.close()


def test_event_applied_twice_changes_nothing(cache: SqliteCache) -> None:
    event_id = new_event_id()
    assert cache.apply(event_id, None, CREATED, AT)
    before = cache.dump()
    assert not cache.apply(event_id, None, CREATED, AT)
    assert not cache.apply(event_id, 1, CREATED, AT)  # the broker's redelivery of the same event
    assert cache.dump() == before
    assert cache.cursor() == 1


def test_delivery_at_or_below_the_cursor_is_skipped(cache: SqliteCache) -> None:
    assert cache.apply(new_event_id(), 5, CREATED, AT)
    report = NamespaceProvisioned(AID, "a", "acc-acme", "uid", "1")
    assert not cache.apply(new_event_id(), 5, report, AT)
    assert not cache.apply(new_event_id(), 3, report, AT)
    assert cache.reports([AID]) == {AID: []}
    assert cache.cursor() == 5


def test_failed_apply_leaves_neither_the_effect_nor_the_cursor(
    cache: SqliteCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.apply(new_event_id(), 1, CREATED, AT)

    def crash(*_args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(cache, "_report", crash)
    event_id = new_event_id()
    report = NamespaceProvisioned(AID, "a", "acc-acme", "uid", "1")
    with pytest.raises(OSError, match="disk gone"):
        cache.apply(event_id, 2, report, AT)
    monkeypatch.undo()
    assert cache.cursor() == 1
    assert cache.apply(event_id, 2, report, AT), "the same event applies once it can"
    assert [r.state for r in cache.reports([AID])[AID]] == ["created"]


def test_late_created_report_does_not_revive_a_deleted_namespace(cache: SqliteCache) -> None:
    cache.apply(new_event_id(), 1, CREATED, AT)
    cache.apply(new_event_id(), 2, AccountDeleted(AID, "acme", "acc-acme", AT), AT)
    cache.apply(new_event_id(), 3, NamespaceDeleted(AID, "a", "acc-acme"), AT)
    cache.apply(new_event_id(), 4, NamespaceProvisioned(AID, "a", "acc-acme", "uid", "1"), AT)
    assert [r.state for r in cache.reports([AID])[AID]] == ["deleted"]


async def test_rebuild_from_the_log_equals_the_live_cache(pg_dsn: str, tmp_path: Path) -> None:
    bus = FakeBus()
    bus.set_online("cluster:a", True)
    connector = FakeConnector(bus)
    settings = fast_settings(pg_dsn, tmp_path / "live")
    async with running_api(settings, connector) as api:
        ids = []
        for i in range(6):
            account = await api.result("account.create", {"name": f"Rebuild {i}", "owner_email": "r@x.io"})
            ids.append(account["id"])
            ns = account["namespace"]
            if i % 3 == 0:
                await publish_event(bus, NamespaceProvisioned(account["id"], "a", ns, f"u{i}", "1"))
            elif i % 3 == 1:
                await publish_event(bus, NamespaceProvisionFailed(account["id"], "b", ns, "quota"))
        await api.result("account.delete", {"id": ids[0]})
        await publish_event(bus, NamespaceDeleted(ids[0], "a", "acc-rebuild-0"))

        async def caught_up() -> bool:
            expected = 6 + 1 + 5  # creates + delete relayed, plus the daemons' reports
            cursor: int = await api.handles.cache.ask(GetCursor())
            return len(bus.log) == expected and cursor == expected

        await eventually(caught_up, timeout=10, message="live cache caught up with the log")
    live = SqliteCache(settings.state_dir / CACHE_FILE)
    try:
        expected = live.dump()
    finally:
        live.close()
    rebuilt_path = tmp_path / "rebuilt" / CACHE_FILE
    rebuilt_path.parent.mkdir()
    cursor = await rebuild_cache(connector, rebuilt_path, consumer="cache-rebuild")
    assert cursor == len(bus.log)
    rebuilt = SqliteCache(rebuilt_path)
    try:
        assert rebuilt.dump() == expected
        assert len(expected["accounts"]) == 6  # type: ignore[arg-type]
    finally:
        rebuilt.close()


def test_sqlite_cache_implements_the_cache_port(tmp_path: Path) -> None:
    from core.cache import AccountCache

    port: AccountCache = SqliteCache(tmp_path / "port.sqlite3")  # mypy checks the protocol here
    try:
        assert port.cursor() == 0
        assert port.get_by_slug("nobody") is None
        assert port.list_after(None, 10) == []
        assert port.known_clusters() == []
    finally:
        assert isinstance(port, SqliteCache)
        port.close()
