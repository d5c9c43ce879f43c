"""An account's life after its create, seen from outside with real processes (`fabric up`, two
clusters, the cluster objects read with kubectl):

- a plan change shows up in every cluster's ResourceQuota, exactly as `plan.list` says;
- suspend and resume round-trip the quota and the network policies, and leave the tenant's
  own objects alone;
- a cluster offline during two updates catches up to the latest generation only;
- two racing updates both land, and every cluster converges to the later one;
- a cluster that refuses the account (a foreign namespace in the way, or a 403) shows
  `failed` with the reason; once fixed, `account.retry` makes the account ready.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

import aiohttp
import pytest

from tests.support.kube import kubectl_path
from tests.system.harness import FabricUp, call_ok, create_account, eventually, rpc

pytestmark = pytest.mark.processes
# Their subject is not the bus: the zmq bus is enough (tests/system/conftest.py).
BUSES = ["zmq"]

CLUSTERS = ["a", "b"]
ALLOW = {"default-deny", "allow-same-namespace", "allow-dns"}
DENY = {"default-deny", "suspended-deny-all"}
WAIT_SECONDS = 60


async def kubectl(up: FabricUp, cluster: str, *args: str) -> Any:
    """Run kubectl against one cluster; the parsed `-o json` answer (or None without -o)."""
    cache = up.state_dir.parent / "kubectl-cache"
    proc = await asyncio.create_subprocess_exec(
        kubectl_path(), "--cache-dir", str(cache), "--kubeconfig", str(up.kubeconfig(cluster)),
        *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "HOME": str(cache)},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (args, err.decode())
    return json.loads(out) if "json" in args else None


async def inject_fault(up: FabricUp, cluster: str, fault: dict[str, Any]) -> None:
    api = up.endpoints["clusters"][cluster]["api"]
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.post(
            f"{api}/_emulator/faults", json=fault,
            headers={"Authorization": f"Bearer {up.kube_token(cluster)}"},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as resp,
    ):
        assert resp.status < 300, await resp.text()


async def hard(up: FabricUp, cluster: str, namespace: str) -> dict[str, str]:
    quota = await kubectl(
        up, cluster, "get", "resourcequota", "tenant-quota", "-n", namespace, "-o", "json"
    )
    return dict(quota["spec"]["hard"])


async def network_policies(up: FabricUp, cluster: str, namespace: str) -> set[str]:
    found = await kubectl(up, cluster, "get", "networkpolicies", "-n", namespace, "-o", "json")
    return {item["metadata"]["name"] for item in found["items"]}


async def plans(up: FabricUp) -> dict[str, dict[str, Any]]:
    return {plan["name"]: plan for plan in await call_ok(up, "plan.list", {})}


async def wait(
    up: FabricUp, account: dict[str, Any], status: str, *, clusters: list[str] = CLUSTERS
) -> dict[str, Any]:
    """`account.wait` for the account's generation; it must end converged in `clusters`."""
    params = {"id": account["id"], "generation": account["generation"], "timeout": WAIT_SECONDS}
    async with aiohttp.ClientSession(trust_env=False) as session:
        out = await rpc(
            session, up.api_url, up.admin_key, "account.wait", params, timeout=WAIT_SECONDS + 10
        )
    assert out.kind == "ok", out
    got: dict[str, Any] = out.result
    assert got["status"] == status, got
    for name in clusters:
        cell = got["clusters"][name]
        assert (cell["state"], cell["observed_generation"]) == ("created", got["generation"]), got
    return got


@pytest.mark.timeout(240)
async def test_a_plan_change_shows_up_in_every_clusters_resource_quota(up: FabricUp) -> None:
    up.start()
    await up.wait_ready()
    account = await wait(up, await create_account(up, "grow"), "ready")
    standard = (await plans(up))["standard"]["quota"]
    for cluster in CLUSTERS:
        assert await hard(up, cluster, account["namespace"]) == standard

    updated = await call_ok(up, "account.update", {"id": account["id"], "plan": "large"})
    assert (updated["plan"], updated["generation"]) == ("large", 2)
    await wait(up, updated, "ready")
    large = (await plans(up))["large"]["quota"]
    assert large != standard
    for cluster in CLUSTERS:
        assert await hard(up, cluster, account["namespace"]) == large
    assert up.stop() == 0


@pytest.mark.timeout(240)
async def test_suspend_and_resume_round_trip_the_quota_and_the_policies(up: FabricUp) -> None:
    up.start()
    await up.wait_ready()
    account = await wait(up, await create_account(up, "pause"), "ready")
    ns = account["namespace"]
    standard = (await plans(up))["standard"]["quota"]
    for cluster in CLUSTERS:
        # The tenant's own object: suspension deletes nothing but the allow policies.
        await kubectl(up, cluster, "create", "serviceaccount", "tenant-bot", "-n", ns)
        assert await network_policies(up, cluster, ns) == ALLOW

    suspended = await call_ok(up, "account.suspend", {"id": account["id"]})
    assert suspended["generation"] == 2
    await wait(up, suspended, "suspended")
    for cluster in CLUSTERS:
        assert await hard(up, cluster, ns) == {**standard, "pods": "0", "services": "0"}
        assert await network_policies(up, cluster, ns) == DENY
        await kubectl(up, cluster, "get", "serviceaccount", "tenant-bot", "-n", ns, "-o", "json")

    resumed = await call_ok(up, "account.resume", {"id": account["id"]})
    assert resumed["generation"] == 3
    await wait(up, resumed, "ready")
    for cluster in CLUSTERS:
        assert await hard(up, cluster, ns) == standard
        assert await network_policies(up, cluster, ns) == ALLOW
        await kubectl(up, cluster, "get", "serviceaccount", "tenant-bot", "-n", ns, "-o", "json")
    assert up.stop() == 0


def reconciled_generations(up: FabricUp, cluster: str, account_id: str) -> list[int]:
    """The generations the cluster's daemon applied to the account, from its log (all runs)."""
    found = []
    log = up.state_dir / "logs" / f"daemon-{cluster}.log"
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("account_id") == account_id and re.fullmatch(
            "namespace_(created|updated)", str(entry.get("event"))
        ):
            found.append(int(entry["generation"]))
    return found


@pytest.mark.timeout(300)
async def test_a_cluster_offline_during_an_update_catches_up_to_the_latest_generation_only(
    up: FabricUp,
) -> None:
    up.start()
    await up.wait_ready()
    account = await wait(up, await create_account(up, "away"), "ready")
    assert up.stop() == 0

    up.start(["a"])  # b's daemon is away
    await up.wait_ready()
    await call_ok(up, "account.update", {"id": account["id"], "plan": "large"})
    latest = await call_ok(up, "account.update", {"id": account["id"], "plan": "small"})
    assert latest["generation"] == 3
    await wait(up, latest, "ready", clusters=["a"])  # every online cluster has seen 3

    async def b_offline() -> bool:
        view = await call_ok(up, "account.get", {"id": account["id"]})
        cell = view["clusters"]["b"]
        assert (cell["online"], cell["observed_generation"]) == (False, 1), view
        return True

    await eventually(b_offline, timeout=20, message="b shown offline at generation 1")
    assert up.stop() == 0

    up.start(CLUSTERS)
    await up.wait_ready()
    await wait(up, latest, "ready")
    small = (await plans(up))["small"]["quota"]
    for cluster in CLUSTERS:
        assert await hard(up, cluster, account["namespace"]) == small
    # b went from generation 1 straight to 3: it never applied the superseded 2.
    assert reconciled_generations(up, "b", account["id"])[-1] == 3
    assert 2 not in reconciled_generations(up, "b", account["id"])
    assert up.stop() == 0


@pytest.mark.timeout(240)
async def test_two_racing_updates_converge_to_the_later_one_everywhere(up: FabricUp) -> None:
    up.start()
    await up.wait_ready()
    account = await wait(up, await create_account(up, "race"), "ready")
    answers = await asyncio.gather(
        call_ok(up, "account.update", {"id": account["id"], "plan": "small"}),
        call_ok(up, "account.update", {"id": account["id"], "plan": "large"}),
    )
    # Both land, in some order: one at generation 2, the other at 3, which wins.
    assert sorted(a["generation"] for a in answers) == [2, 3]
    later = max(answers, key=lambda a: a["generation"])
    got = await wait(up, later, "ready")
    assert got["plan"] == later["plan"]
    quota = (await plans(up))[later["plan"]]["quota"]
    for cluster in CLUSTERS:
        assert await hard(up, cluster, account["namespace"]) == quota
    assert up.stop() == 0


@pytest.mark.timeout(240)
@pytest.mark.parametrize("obstacle", ["foreign namespace", "403"])
async def test_a_failed_cluster_shows_the_reason_and_retry_makes_the_account_ready(
    up: FabricUp, obstacle: str
) -> None:
    # No resync: only the retry may try the refused account again.
    up.start(extra_env={"FABRIC_RESYNC_SECONDS": "3600"})
    await up.wait_ready()
    if obstacle == "foreign namespace":
        await kubectl(up, "b", "create", "namespace", "acc-blocked")
        words = "refusing to adopt"
    else:
        fault = {"mode": "status", "status": 403, "count": 1,
                 "match": {"method": "POST", "path_prefix": "/api/v1/namespaces"}}
        await inject_fault(up, "b", fault)
        words = "403"
    account = await create_account(up, "blocked")

    async def failed_in_b() -> dict[str, Any]:
        view: dict[str, Any] = await call_ok(up, "account.get", {"id": account["id"]})
        cell = view["clusters"]["b"]
        assert cell["state"] == "failed", view
        assert words in json.dumps(cell["error"]), cell
        assert cell["attempts"] >= 1, cell
        assert view["clusters"]["a"]["state"] == "created", view
        assert view["status"] != "ready", view
        return view

    await eventually(failed_in_b, timeout=40, message="failed in b with the reason")
    if obstacle == "foreign namespace":  # the operator removes what was in the way
        await kubectl(up, "b", "delete", "namespace", "acc-blocked", "--wait=true")

    retried = await call_ok(up, "account.retry", {"id": account["id"]})
    assert retried["generation"] == account["generation"] + 1
    await wait(up, retried, "ready")
    ns = await kubectl(up, "b", "get", "namespace", "acc-blocked", "-o", "json")
    assert ns["metadata"]["labels"]["fabric.dev/account-id"] == account["id"]
    assert up.stop() == 0
