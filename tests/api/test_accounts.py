"""Account methods per the contract, over real HTTP, with a real PostgreSQL and the in-memory bus."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

from actors.api.driver import GetApplied
from actors.legacy import db
from core.envelope import new_event_id
from core.events import (
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
    to_envelope,
)
from tests.api.harness import (
    RunningApi,
    eventually,
    fast_settings,
    publish_event,
    running_api,
)
from tests.support.fake_bus import FakeBus, FakeConnector
from tests.support.wait import wait_until


async def _create(api: RunningApi, name: str, email: str = "owner@example.com", **extra: str) -> Any:
    return await api.result("account.create", {"name": name, "owner_email": email, **extra})


async def _status(api: RunningApi, account_id: str) -> str:
    return str((await api.result("account.get", {"id": account_id}))["status"])


async def test_create_returns_the_contract_account_shape(api: RunningApi) -> None:
    account = await _create(api, "Acme Corp", "Owner@Example.com")
    assert set(account) == {
        "id", "slug", "name", "owner_email", "plan", "namespace", "created_at", "updated_at",
        "generation", "status", "clusters",
    }
    assert account["plan"] == "standard"
    assert str(uuid.UUID(account["id"])) == account["id"]
    assert account["slug"] == "acme-corp"
    assert account["name"] == "Acme Corp"
    assert account["owner_email"] == "owner@example.com"
    assert account["namespace"] == "acc-acme-corp"
    assert account["created_at"].endswith("Z")
    assert account["updated_at"] == account["created_at"]
    assert account["generation"] == 1
    assert account["status"] == "provisioning"
    # The online cluster is listed from the very first answer, pending until it reports.
    assert account["clusters"] == {
        "a": {"state": "pending", "observed_generation": 0, "online": True, "updated_at": None}
    }


async def test_get_right_after_create_finds_it_by_id_and_by_slug(api: RunningApi) -> None:
    for i in range(10):
        account = await _create(api, f"Quick {i}")
        assert await api.result("account.get", {"id": account["id"]}) == account
        assert await api.result("account.get", {"slug": account["slug"]}) == account


async def test_create_writes_the_legacy_rows_and_outbox_event_in_one_go(
    api: RunningApi, pg_dsn: str
) -> None:
    account = await _create(api, "Legacy Shop", "boss@shop.io", slug="shop")
    conn = await db.connect(pg_dsn)
    try:
        org = await conn.fetchrow("SELECT * FROM organizations WHERE id = $1", account["id"])
        assert org["slug"] == "shop"
        assert org["namespace"] == "acc-shop"
        role = await conn.fetchval(
            "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.organization_id = $1 AND u.email = 'boss@shop.io'", account["id"],
        )
        assert role == "owner"
        assert await conn.fetchval(
            "SELECT slug FROM projects WHERE organization_id = $1", account["id"]
        ) == "default"
        envelope = json.loads(await conn.fetchval(
            "SELECT envelope::text FROM fabric_outbox WHERE aggregate_id = $1", account["id"]
        ))
        assert envelope["type"] == "account.created"
        assert envelope["payload"]["namespace"] == "acc-shop"
        assert envelope["payload"]["generation"] == 1
        assert (envelope["key"], envelope["tombstone"]) == (f"account:{account['id']}", False)
        assert org["generation"] == 1
    finally:
        await db.close_connection(conn)


async def test_same_owner_email_reuses_the_legacy_user(api: RunningApi, pg_dsn: str) -> None:
    await _create(api, "First", "same@example.com")
    await _create(api, "Second", "SAME@example.com")
    conn = await db.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 1
        assert await conn.fetchval("SELECT count(*) FROM memberships") == 2
    finally:
        await db.close_connection(conn)


async def test_taken_slug_is_a_conflict_naming_the_slug(api: RunningApi) -> None:
    await _create(api, "Dup", slug="dup")
    reply = await api.call("account.create", {"name": "Other", "owner_email": "o@x.io", "slug": "dup"})
    assert reply["error"]["code"] == -32010
    assert reply["error"]["data"] == {"slug": "dup"}


async def test_database_enforces_slug_uniqueness_when_the_cache_has_not_seen_it(
    api: RunningApi, pg_dsn: str, tmp_path: Path
) -> None:
    await _create(api, "Twin", slug="twin")
    # A second API replica with its own, empty cache and no relay: only PostgreSQL knows.
    settings = fast_settings(pg_dsn, tmp_path / "replica", relay_enabled=False)
    async with running_api(settings, FakeConnector(FakeBus())) as replica:
        reply = await replica.call("account.create", {"name": "Twin", "owner_email": "t@x.io"})
    assert reply["error"]["code"] == -32010
    assert reply["error"]["data"] == {"slug": "twin"}
    conn = await db.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM organizations") == 1
        assert await conn.fetchval("SELECT count(*) FROM fabric_outbox") == 1
    finally:
        await db.close_connection(conn)


async def test_hostile_strings_are_stored_literally(api: RunningApi, pg_dsn: str) -> None:
    name = "Robert'); DROP TABLE organizations;--"
    account = await _create(api, name)
    assert account["name"] == name
    assert account["slug"] == "robert-drop-table-organizations"
    assert (await api.result("account.get", {"id": account["id"]}))["name"] == name
    conn = await db.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT name FROM organizations") == name
    finally:
        await db.close_connection(conn)


async def test_relay_publishes_each_created_account_to_the_bus_once(
    api: RunningApi, bus: FakeBus, pg_dsn: str
) -> None:
    ids = [(await _create(api, f"Pub {i}"))["id"] for i in range(5)]

    def published() -> bool:
        return sorted(e.aggregate_id for e in bus.history) == sorted(ids)

    await wait_until(published, timeout=10, message="every account.created on the bus")
    assert [e.type for e in bus.history] == ["account.created"] * 5
    conn = await db.connect(pg_dsn)
    try:
        await eventually(
            lambda: _unpublished(conn), timeout=10, message="outbox rows marked published"
        )
    finally:
        await db.close_connection(conn)


async def _unpublished(conn: Any) -> bool:
    return bool(await conn.fetchval("SELECT count(*) = 0 FROM fabric_outbox WHERE published_at IS NULL"))


async def test_status_follows_cluster_reports(api: RunningApi, bus: FakeBus) -> None:
    bus.set_online("cluster:b", False)
    account = await _create(api, "Status")
    aid, ns = account["id"], account["namespace"]
    await eventually(lambda: _clusters(api, aid, {"a", "b"}), timeout=5, message="both clusters known")
    await publish_event(bus, NamespaceProvisioned(aid, "a", ns, "uid-1", "1", 1))

    async def status_is(expected: str) -> bool:
        return await _status(api, aid) == expected

    # Only cluster a is online, and it has the namespace: ready.
    await eventually(lambda: status_is("ready"), timeout=5, message="ready")
    got = await api.result("account.get", {"id": aid})
    assert got["clusters"]["a"]["state"] == "created"
    assert got["clusters"]["b"]["state"] == "pending"
    # Cluster b comes online without it: provisioning again until it reports.
    bus.set_online("cluster:b", True)
    await eventually(lambda: status_is("provisioning"), timeout=5, message="provisioning")
    await publish_event(bus, NamespaceProvisionFailed(aid, "b", ns, "forbidden", 1, 3))
    await eventually(lambda: status_is("degraded"), timeout=5, message="degraded")
    got = await api.result("account.get", {"id": aid})
    assert got["clusters"]["b"] == {
        "state": "failed", "observed_generation": 1, "online": True,
        "updated_at": got["clusters"]["b"]["updated_at"], "error": "forbidden", "attempts": 3,
    }


async def _clusters(api: RunningApi, aid: str, names: set[str]) -> bool:
    return set((await api.result("account.get", {"id": aid}))["clusters"]) == names


async def test_delete_is_deleting_until_every_cluster_that_had_it_reports_deleted(
    api: RunningApi, bus: FakeBus
) -> None:
    account = await _create(api, "Doomed")
    aid, ns = account["id"], account["namespace"]
    await publish_event(bus, NamespaceProvisioned(aid, "a", ns, "uid-1", "1", 1))
    await eventually(lambda: _is(api, aid, "ready"), timeout=5, message="ready")
    deleted = await api.result("account.delete", {"id": aid})
    assert deleted["status"] == "deleting"
    assert deleted["generation"] == 2
    assert deleted["updated_at"] > deleted["created_at"]
    # Cluster a has not observed generation 2 yet: it still has the namespace.
    assert deleted["clusters"]["a"]["state"] == "deleting"
    assert deleted["clusters"]["a"]["observed_generation"] == 1
    again = await api.result("account.delete", {"id": aid})
    assert (again["status"], again["generation"]) == ("deleting", 2)
    await publish_event(bus, NamespaceDeleted(aid, "a", ns, 2))
    await eventually(lambda: _is(api, aid, "deleted"), timeout=5, message="deleted")
    gone = await api.result("account.get", {"id": aid})
    assert gone["clusters"]["a"]["observed_generation"] == 2

    def kinds() -> list[str]:
        return [e.type for e in bus.history if e.aggregate_id == aid]

    await wait_until(lambda: "account.deleted" in kinds(), timeout=5, message="deletion relayed")
    assert kinds().count("account.deleted") == 1
    assert kinds().count("account.created") == 1
    tombstone = bus.newest(f"account:{aid}")
    assert tombstone is not None
    assert (tombstone.type, tombstone.tombstone, tombstone.payload["generation"]) == (
        "account.deleted", True, 2
    )


async def _is(api: RunningApi, aid: str, status: str) -> bool:
    return await _status(api, aid) == status


async def test_list_pages_in_creation_order_with_opaque_cursors(api: RunningApi) -> None:
    created = [(await _create(api, f"Page {i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = await api.result("account.list", params)
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert "." in cursor
        assert not cursor.isdigit()
    assert seen == created
    assert pages == 3
    default = await api.result("account.list", {})
    assert [i["id"] for i in default["items"]] == created
    assert default["next_cursor"] is None


async def test_tampered_cursor_is_rejected(api: RunningApi) -> None:
    for i in range(3):
        await _create(api, f"Tamper {i}")
    cursor = (await api.result("account.list", {"limit": 1}))["next_cursor"]
    head, mac = cursor.split(".")
    forged = f"{'Mg'}.{mac}"  # position 2 with the MAC of another position
    reply = await api.call("account.list", {"limit": 1, "cursor": forged})
    assert reply["error"]["code"] == -32602
    assert "cursor" in reply["error"]["data"]["fields"]
    assert head != "Mg"


async def test_cluster_list_shows_cluster_consumers_only(api: RunningApi, bus: FakeBus) -> None:
    bus.set_online("cluster:b", False)

    async def listed() -> Any:
        clusters = await api.result("cluster.list", {})
        return clusters if len(clusters) == 2 else None

    clusters = await eventually(listed, timeout=5, message="two clusters listed")
    assert [c["name"] for c in clusters] == ["a", "b"]
    assert [c["status"] for c in clusters] == ["online", "offline"]
    assert set(clusters[0]) == {"name", "status", "last_seen", "acked_seq", "lag"}


async def test_cluster_remove_forgets_an_offline_cluster_and_refuses_an_online_one(
    api: RunningApi, bus: FakeBus
) -> None:
    bus.set_online("cluster:b", False)

    async def listed() -> Any:
        clusters = await api.result("cluster.list", {})
        return clusters if len(clusters) == 2 else None

    await eventually(listed, timeout=5, message="two clusters listed")
    assert await api.result("cluster.remove", {"name": "b"}) == {"name": "b", "removed": True}
    assert [c.name for c in await bus.consumers() if c.name.startswith("cluster:")] == [
        "cluster:a"
    ]
    assert [c["name"] for c in await api.result("cluster.list", {})] == ["a"]
    refused = await api.call("cluster.remove", {"name": "a"})
    assert refused["error"]["code"] == -32021, refused
    assert refused["error"]["data"] == {"status": "online"}
    assert "cluster:a" in {c.name for c in await bus.consumers()}
    assert await api.result("cluster.remove", {"name": "zz"}) == {"name": "zz", "removed": False}


async def test_the_drivers_apply_of_the_domains_own_event_and_repeats_change_nothing(
    api: RunningApi, bus: FakeBus
) -> None:
    bus.hold()  # the event reaches the driver only after the create has answered
    account = await _create(api, "Twice")
    aid, ns = account["id"], account["namespace"]
    bus.release()

    async def consumed() -> bool:
        return bus.acked_seq("cache") == bus.head

    await wait_until(lambda: bus.head == 1, timeout=5, message="account.created relayed")
    await eventually(consumed, timeout=5, message="the driver consumed it")
    # Read-your-writes applied it already: the driver's apply changed nothing.
    assert await api.handles.driver.ask(GetApplied()) == 0
    report = to_envelope(NamespaceProvisioned(aid, "a", ns, "uid-1", "1", 1), correlation_id="t")
    await bus.publish([report])
    await eventually(lambda: _driver_applied(api, 1), timeout=5, message="report applied")
    before = await api.result("account.list", {})
    # The same report again (a daemon's redo after the bus's duplicate window): no change.
    again = dataclasses.replace(report, event_id=new_event_id())
    await bus.publish([again])
    await eventually(consumed, timeout=5, message="the driver consumed the repeat")
    assert await api.handles.driver.ask(GetApplied()) == 1
    after = await api.result("account.list", {})
    assert after == before
    assert after["items"][0]["status"] == "ready"


async def _driver_applied(api: RunningApi, count: int) -> bool:
    applied: int = await api.handles.driver.ask(GetApplied())
    return applied >= count


async def test_health_readiness_and_metrics_endpoints(api: RunningApi) -> None:
    await _create(api, "Metered")
    async with api.http.get(api.url + "/healthz") as response:
        assert response.status == 200

    async def ready() -> bool:
        async with api.http.get(api.url + "/readyz") as response:
            return response.status == 200

    await eventually(ready, timeout=5, message="ready")
    async with api.http.get(api.url + "/metrics") as response:
        text = await response.text()
    assert 'fabric_rpc_requests_total{code="0",method="account.create"} 1.0' in text
    assert "fabric_rpc_request_seconds_bucket" in text
    assert "fabric_outbox_backlog" in text
    assert "fabric_cache_lag" in text


async def test_broker_silence_is_named_by_readyz_and_cluster_list_but_creates_go_on(
    pg_dsn: str, tmp_path: Path, bus: FakeBus
) -> None:
    connector = FakeConnector(bus)
    connector.directory_down = True
    async with running_api(fast_settings(pg_dsn, tmp_path / "s"), connector) as api:

        async def down() -> Any:
            async with api.http.get(api.url + "/readyz") as response:
                return await response.json() if response.status == 503 else None

        body = await eventually(down, timeout=5, message="503 naming the broker")
        assert body["down"] == ["broker"]
        reply = await api.call("cluster.list", {})
        assert reply["error"]["code"] == -32020
        assert reply["error"]["data"] == {"dependency": "broker"}
        # Creates and reads do not need the broker.
        account = await _create(api, "Brokerless")
        assert (await api.result("account.get", {"id": account["id"]}))["slug"] == "brokerless"


async def test_create_and_publish_are_logged_with_event_and_account_ids(
    pg_dsn: str, tmp_path: Path, bus: FakeBus
) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        async with running_api(fast_settings(pg_dsn, tmp_path / "s"), FakeConnector(bus)) as api:
            account = await _create(api, "Logged")
            await eventually(
                lambda: _has_event(logs, "event_published"), timeout=5, message="published log"
            )
    created = [e for e in logs if e["event"] == "account_created"]
    assert len(created) == 1
    assert created[0]["account_id"] == account["id"]
    event_id = created[0]["event_id"]
    published = [e for e in logs if e["event"] == "event_published"]
    assert [(e["event_id"], e["account_id"]) for e in published] == [(event_id, account["id"])]
    written = [e for e in logs if e["event"] == "legacy_account_written"]
    assert written[0]["event_id"] == event_id


async def _has_event(logs: list[Any], name: str) -> bool:
    return any(e["event"] == name for e in logs)
