"""The account lifecycle over real HTTP, a real PostgreSQL and the in-memory bus.

update, suspend, resume, retry, wait, plan.list and the status filter of
account.list, with a fake daemon (tests/api/fake_daemon.py) reporting where
a cluster has to answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from structlog.testing import capture_logs

from actors.legacy import db
from core.events import (
    NamespaceDeleted,
    NamespaceProvisioned,
    NamespaceProvisionFailed,
)
from core.plans import PLANS
from tests.api.fake_daemon import fake_daemon
from tests.api.harness import RunningApi, eventually, publish_event
from tests.support.fake_bus import FakeBus
from tests.support.wait import wait_until

STATE_CONFLICT = -32021


async def _create(api: RunningApi, name: str, **extra: str) -> Any:
    return await api.result("account.create", {"name": name, "owner_email": "o@example.com", **extra})


async def _get(api: RunningApi, aid: str) -> Any:
    return await api.result("account.get", {"id": aid})


async def _wait(api: RunningApi, aid: str, timeout: float = 10, **extra: int) -> Any:
    return await api.result("account.wait", {"id": aid, "timeout": timeout, **extra})


def _account_events(bus: FakeBus, aid: str) -> list[dict[str, Any]]:
    """Every account event the relay published for `aid`: type and payload."""
    return [
        {"type": e.type, **e.payload} for e in bus.history
        if e.aggregate_id == aid and e.key.startswith("account:")
    ]


async def _outbox(pg_dsn: str, aid: str) -> list[dict[str, Any]]:
    conn = await db.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT envelope::text AS e FROM fabric_outbox WHERE aggregate_id = $1 ORDER BY id", aid
        )
    finally:
        await db.close_connection(conn)
    return [json.loads(r["e"])["payload"] for r in rows]


async def test_update_moves_to_the_next_generation_and_publishes_the_whole_state(
    api: RunningApi, bus: FakeBus, pg_dsn: str
) -> None:
    account = await _create(api, "Growing", slug="growing")
    aid = account["id"]
    updated = await api.result(
        "account.update", {"id": aid, "plan": "large", "name": "Grown", "owner_email": "New@X.io"}
    )
    assert (updated["generation"], updated["plan"], updated["name"]) == (2, "large", "Grown")
    assert updated["owner_email"] == "new@x.io"
    assert updated["updated_at"] > updated["created_at"] == account["created_at"]
    assert updated["status"] == "updating", "cluster a has not observed generation 2"
    assert await _get(api, aid) == updated
    await wait_until(lambda: len(_account_events(bus, aid)) == 2, timeout=5, message="relayed")
    assert _account_events(bus, aid)[1] == {
        "type": "account.updated", "account_id": aid, "slug": "growing", "name": "Grown",
        "owner_email": "new@x.io", "namespace": "acc-growing",
        "created_at": account["created_at"], "generation": 2, "plan": "large", "suspended": False,
    }
    conn = await db.connect(pg_dsn)
    try:
        org = await conn.fetchrow("SELECT * FROM organizations WHERE id = $1", aid)
        roles = dict(await conn.fetch(
            "SELECT lower(u.email), m.role FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.organization_id = $1", aid,
        ))
    finally:
        await db.close_connection(conn)
    assert (org["plan"], org["name"], org["generation"], org["suspended_at"]) == (
        "large", "Grown", 2, None
    )
    assert roles == {"new@x.io": "owner", "o@example.com": "admin"}, "the old owner stays, demoted"


async def test_an_update_that_changes_nothing_keeps_the_generation_and_publishes_nothing(
    api: RunningApi, pg_dsn: str
) -> None:
    account = await _create(api, "Steady")
    aid = account["id"]
    for params in ({}, {"name": "Steady"}, {"plan": "standard", "owner_email": "O@example.com"}):
        same = await api.result("account.update", {"id": aid, **params})
        assert same == account, params
    assert len(await _outbox(pg_dsn, aid)) == 1, "only the account.created"


async def test_concurrent_updates_all_land_in_order_and_the_last_committed_wins(
    api: RunningApi, bus: FakeBus, pg_dsn: str
) -> None:
    async with fake_daemon(bus, "a"):
        account = await _create(api, "Raced")
        aid = account["id"]
        names = [f"Racer {i}" for i in range(6)]
        results = await asyncio.gather(*(
            api.result("account.update", {"id": aid, "name": name, "plan": plan})
            for name, plan in zip(names, ["small", "large"] * 3, strict=True)
        ))
        assert sorted(r["generation"] for r in results) == list(range(2, 8)), "each one landed"
        last = max(results, key=lambda r: r["generation"])
        final = await _wait(api, aid)
        assert (final["status"], final["generation"]) == ("ready", 7)
        assert (final["name"], final["plan"]) == (last["name"], last["plan"])
        assert final["clusters"]["a"]["observed_generation"] == 7
    payloads = await _outbox(pg_dsn, aid)
    assert [p["generation"] for p in payloads] == list(range(1, 8)), "committed in order"
    assert {p["name"] for p in payloads[1:]} == set(names)
    assert (payloads[-1]["name"], payloads[-1]["plan"]) == (last["name"], last["plan"])


async def test_suspend_and_resume_round_trip_through_their_statuses(
    api: RunningApi, bus: FakeBus
) -> None:
    async with fake_daemon(bus, "a") as daemon:
        aid = (await _create(api, "Napper"))["id"]
        assert (await _wait(api, aid))["status"] == "ready"
        suspended = await api.result("account.suspend", {"id": aid})
        assert suspended["generation"] == 2
        assert suspended["status"] in ("updating", "suspended")
        assert (await _wait(api, aid))["status"] == "suspended"
        again = await api.result("account.suspend", {"id": aid})
        assert (again["generation"], again["status"]) == (2, "suspended"), "a no-op"
        resumed = await api.result("account.resume", {"id": aid})
        assert resumed["generation"] == 3
        ready = await _wait(api, aid)
        assert (ready["status"], ready["generation"], ready["plan"]) == ("ready", 3, "standard")
        assert (await api.result("account.resume", {"id": aid}))["generation"] == 3
        await wait_until(lambda: len(daemon.seen) == 3, timeout=5, message="three states seen")
    flags = [(e["generation"], e["suspended"]) for e in _account_events(bus, aid)]
    assert flags == [(1, False), (2, True), (3, False)]


async def test_retry_moves_the_generation_on_only_when_a_cluster_failed(
    api: RunningApi, bus: FakeBus
) -> None:
    async with fake_daemon(bus, "a") as daemon:
        daemon.refuse = lambda event: "Forbidden: namespaces is forbidden"
        aid = (await _create(api, "Stubborn"))["id"]
        failed = await _wait(api, aid)
        assert failed["status"] == "degraded"
        assert failed["clusters"]["a"]["state"] == "failed"
        assert failed["clusters"]["a"]["error"] == "Forbidden: namespaces is forbidden"
        unknown = await api.call("account.retry", {"id": aid, "cluster": "nowhere"})
        assert unknown["error"]["code"] == -32011
        assert unknown["error"]["data"] == {"cluster": "nowhere"}
        daemon.refuse = lambda event: None  # the operator fixed the cluster
        retried = await api.result("account.retry", {"id": aid, "cluster": "a"})
        assert retried["generation"] == 2
        assert retried["status"] in ("updating", "ready"), "a failure at generation 1 is old news"
        ready = await _wait(api, aid)
        assert (ready["status"], ready["generation"]) == ("ready", 2)
        assert "error" not in ready["clusters"]["a"]
        again = await api.result("account.retry", {"id": aid})
        assert again["generation"] == 2, "nothing failed: nothing to retry"
    retry_event = _account_events(bus, aid)[1]
    assert (retry_event["type"], retry_event["generation"], retry_event["plan"]) == (
        "account.updated", 2, "standard"
    )


async def test_wait_returns_as_soon_as_every_online_cluster_has_observed_the_generation(
    api: RunningApi, bus: FakeBus
) -> None:
    account = await _create(api, "Patient")
    aid, ns = account["id"], account["namespace"]
    with capture_logs() as logs:
        started = time.monotonic()
        waiting = asyncio.create_task(_wait(api, aid, timeout=30))
        await wait_until(
            lambda: any(e["event"] == "account_wait_parked" for e in logs), timeout=5,
            message="the wait is parked",
        )
        await publish_event(bus, NamespaceProvisioned(aid, "a", ns, "uid", "1", 1))
        ready = await waiting
    assert time.monotonic() - started < 10, "woken by the report, not by its timeout"
    assert ready["status"] == "ready"
    assert ready["clusters"]["a"]["observed_generation"] == 1
    [ended] = [e for e in logs if e["event"] == "account_wait_ended"]
    assert (ended["converged"], ended["wakes"]) == (True, 1)
    # A generation already observed answers at once.
    assert (await _wait(api, aid, generation=1))["status"] == "ready"


async def test_wait_returns_at_its_timeout_with_the_status_it_reached(api: RunningApi) -> None:
    aid = (await _create(api, "Never"))["id"]
    started = time.monotonic()
    reply = await api.call("account.wait", {"id": aid, "timeout": 0.3})
    assert time.monotonic() - started >= 0.3
    assert reply["result"]["status"] == "provisioning", "not an error: the status says it"
    assert reply["result"]["clusters"]["a"]["state"] == "pending"
    later = await api.call("account.wait", {"id": aid, "generation": 5, "timeout": 0})
    assert later["result"]["generation"] == 1


async def test_a_cluster_going_offline_ends_a_wait_that_only_it_held_up(
    api: RunningApi, bus: FakeBus
) -> None:
    bus.subscribe("cluster:b", "account:")  # b's daemon connects (and is seen), then stalls
    account = await _create(api, "Halfway")
    aid, ns = account["id"], account["namespace"]
    await eventually(lambda: _cluster_known(api, aid, "b"), timeout=5, message="b listed")
    await publish_event(bus, NamespaceProvisioned(aid, "a", ns, "uid", "1", 1))
    with capture_logs() as logs:
        waiting = asyncio.create_task(_wait(api, aid, timeout=30))
        await wait_until(
            lambda: any(e["event"] == "account_wait_parked" for e in logs), timeout=5,
            message="the wait is parked",
        )
        bus.set_online("cluster:b", False)
        done = await waiting
    assert done["status"] == "ready"
    assert done["clusters"]["b"]["online"] is False
    assert done["clusters"]["b"]["state"] == "pending", "offline, not failed"
    assert done["clusters"]["b"]["last_seen"].endswith("Z")


async def _cluster_known(api: RunningApi, aid: str, cluster: str) -> bool:
    return cluster in (await _get(api, aid))["clusters"]


async def test_wait_on_a_deleted_account_returns_once_every_cluster_reports_it_deleted(
    api: RunningApi, bus: FakeBus
) -> None:
    async with fake_daemon(bus, "a"):
        aid = (await _create(api, "Leaving"))["id"]
        assert (await _wait(api, aid))["status"] == "ready"
    # No daemon while the delete is answered: an in-memory one could report the namespace
    # gone before the answer is read from the cache.
    deleting = await api.result("account.delete", {"id": aid})
    assert deleting["status"] == "deleting"
    async with fake_daemon(bus, "a"):
        gone = await _wait(api, aid)
    assert (gone["status"], gone["generation"]) == ("deleted", 2)
    assert gone["clusters"]["a"]["state"] == "deleted"


async def test_changes_of_a_deleted_account_are_refused_with_its_status(
    api: RunningApi, bus: FakeBus, pg_dsn: str
) -> None:
    account = await _create(api, "Late")
    aid, ns = account["id"], account["namespace"]
    await api.result("account.delete", {"id": aid})
    changes = [
        ("account.update", {"id": aid, "plan": "large"}), ("account.suspend", {"id": aid}),
        ("account.resume", {"id": aid}), ("account.retry", {"id": aid}),
    ]
    for method, params in changes:
        reply = await api.call(method, params)
        assert reply["error"]["code"] == STATE_CONFLICT, method
        assert reply["error"]["data"] == {"status": "deleting"}, method
    await publish_event(bus, NamespaceDeleted(aid, "a", ns, 2))
    await eventually(lambda: _status_is(api, aid, "deleted"), timeout=5, message="deleted")
    reply = await api.call("account.update", {"id": aid, "name": "Later"})
    assert reply["error"]["data"] == {"status": "deleted"}
    assert len(await _outbox(pg_dsn, aid)) == 2, "created and deleted only"


async def _status_is(api: RunningApi, aid: str, status: str) -> bool:
    return bool((await _get(api, aid))["status"] == status)


async def test_list_filters_by_status_across_pages(api: RunningApi, bus: FakeBus) -> None:
    ids = [(await _create(api, f"Filter {i}"))["id"] for i in range(6)]
    for i, aid in enumerate(ids):
        ns = f"acc-filter-{i}"
        if i % 3 == 0:
            await publish_event(bus, NamespaceProvisioned(aid, "a", ns, "uid", "1", 1))
        elif i % 3 == 1:
            await publish_event(bus, NamespaceProvisionFailed(aid, "a", ns, "Forbidden", 1, 1))
    await eventually(lambda: _listed(api, "degraded", ids[1::3]), timeout=5, message="reports in")
    for status, expected in (("ready", ids[0::3]), ("provisioning", ids[2::3]), ("suspended", [])):
        assert await _listed(api, status, expected), status
    # Page by page: the store's hint for provisioning keeps the degraded accounts between
    # them too (neither is settled), which the list must step over.
    for status, expected in (("ready", ids[0::3]), ("provisioning", ids[2::3])):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"status": status, "limit": 1}
            if cursor is not None:
                params["cursor"] = cursor
            page = await api.result("account.list", params)
            seen += [a["id"] for a in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == expected, status
    bad = await api.call("account.list", {"status": "sleeping"})
    assert bad["error"]["code"] == -32602
    assert set(bad["error"]["data"]["fields"]) == {"status"}


async def _listed(api: RunningApi, status: str, expected: list[str]) -> bool:
    page = await api.result("account.list", {"status": status})
    return [a["id"] for a in page["items"]] == expected and all(
        a["status"] == status for a in page["items"]
    )


async def test_plan_list_answers_every_plan_with_its_quota_and_limits(api: RunningApi) -> None:
    plans = await api.result("plan.list", {})
    assert [p["name"] for p in plans] == list(PLANS)
    for plan in plans:
        assert plan["quota"] == dict(PLANS[plan["name"]].quota)
        assert plan["limits"] == {k: dict(v) for k, v in PLANS[plan["name"]].limits.items()}


async def test_create_takes_a_plan_and_refuses_an_unknown_one(api: RunningApi, bus: FakeBus) -> None:
    small = await _create(api, "Tiny", plan="small")
    assert small["plan"] == "small"
    await wait_until(lambda: bool(_account_events(bus, small["id"])), timeout=5, message="relayed")
    assert _account_events(bus, small["id"])[0]["plan"] == "small"
    reply = await api.call("account.create", {"name": "Gold", "owner_email": "g@x.io", "plan": "gold"})
    assert reply["error"]["code"] == -32602
    assert set(reply["error"]["data"]["fields"]) == {"plan"}
