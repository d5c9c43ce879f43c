"""State, not history, seen from outside with real processes (`fabric up`):

- a cluster added after creates and deletes receives the current state: it makes
  no Kubernetes call at all for an account deleted before it joined (the kube
  emulator's request log says so), and ends with exactly the live namespaces;
- one account a cluster keeps refusing (500 on its quota) delays no other account,
  that cluster's lag returns to 0 while the account shows `failed` with the
  Kubernetes reason and the attempts, and it heals once the fault clears.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.system.harness import FabricUp, call_ok, create_account, eventually, list_accounts, namespaces

pytestmark = pytest.mark.processes


async def emulator(up: FabricUp, cluster: str, method: str, path: str, body: object = None) -> Any:
    api = up.endpoints["clusters"][cluster]["api"]
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.request(
            method, f"{api}{path}", json=body,
            headers={"Authorization": f"Bearer {up.kube_token(cluster)}"},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json(content_type=None)


async def statuses(up: FabricUp) -> dict[str, dict[str, Any]]:
    return {a["slug"]: a for a in await list_accounts(up)}


@pytest.mark.timeout(240)
async def test_a_cluster_added_later_makes_no_call_for_accounts_deleted_before_it_joined(
    up: FabricUp,
) -> None:
    up.start(["a"])
    await up.wait_ready()
    accounts = [await create_account(up, f"late-{i:02d}") for i in range(12)]
    deleted = accounts[::2]
    for account in deleted:
        await call_ok(up, "account.delete", {"id": account["id"]})
    live = sorted(f"acc-{a['slug']}" for a in accounts[1::2])

    async def a_converged() -> bool:
        assert await namespaces(up, "a") == live
        found = await statuses(up)
        assert {found[a["slug"]]["status"] for a in deleted} == {"deleted"}, found
        return True

    await eventually(a_converged, timeout=40, message="cluster a converged")
    assert up.stop() == 0

    up.start(["a", "c"])
    await up.wait_ready()

    async def c_converged() -> bool:
        assert await namespaces(up, "c") == live
        found = await statuses(up)
        for account in accounts[1::2]:
            assert found[account["slug"]]["clusters"]["c"]["state"] == "created", found
        return True

    await eventually(c_converged, timeout=40, message="cluster c got every live account")
    requests = await emulator(up, "c", "GET", "/_emulator/requests")
    gone = [f"acc-{a['slug']}" for a in deleted]
    touched = [r for r in requests if any(f"/namespaces/{ns}" in r["path"] for ns in gone)]
    assert touched == [], touched
    creates = [r for r in requests if r["method"] == "POST" and r["path"] == "/api/v1/namespaces"]
    assert len(creates) == len(live), creates
    assert up.stop() == 0


@pytest.mark.timeout(240)
async def test_an_account_a_cluster_keeps_refusing_delays_no_other_and_heals(up: FabricUp) -> None:
    up.start(["a", "b"])
    await up.wait_ready()
    await emulator(
        up, "a", "POST", "/_emulator/faults",
        {"mode": "error500", "count": 100000,
         "match": {"path_prefix": "/api/v1/namespaces/acc-stuck/resourcequotas"}},
    )
    stuck = await create_account(up, "stuck")
    others = [await create_account(up, f"fine-{i}") for i in range(4)]

    async def others_ready_and_stuck_failed() -> bool:
        found = await statuses(up)
        for account in others:
            assert found[account["slug"]]["status"] == "ready", found[account["slug"]]
        view = found["stuck"]
        assert view["status"] == "degraded", view
        cell = view["clusters"]["a"]
        assert cell["state"] == "failed", cell
        assert "InternalError" in cell["error"] or "500" in cell["error"], cell
        assert cell["attempts"] >= 2, cell
        assert view["clusters"]["b"]["state"] == "created", view
        return True

    await eventually(others_ready_and_stuck_failed, timeout=40, message="others ready, stuck failed")

    async def lag_zero() -> bool:
        clusters = {c["name"]: c for c in await call_ok(up, "cluster.list", {})}
        assert clusters["a"]["lag"] == 0, clusters
        return True

    await eventually(lag_zero, timeout=20, message="cluster a lag back to 0")
    await emulator(up, "a", "DELETE", "/_emulator/faults")

    async def healed() -> bool:
        view = (await statuses(up))["stuck"]
        assert view["status"] == "ready", view
        assert view["clusters"]["a"]["observed_generation"] == stuck["generation"], view
        return True

    await eventually(healed, timeout=40, message="stuck account healed")
    assert "acc-stuck" in await namespaces(up, "a")
    assert up.stop() == 0
