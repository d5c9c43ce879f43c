"""Least privilege, checked against the daemon's real traffic (`fabric up`, real processes):

the daemon goes through its whole life cycle against the kube emulator (accounts created,
a namespace's label changed by hand and repaired by the resync, a namespace deleted by hand
and re-created, an account deleted, resyncs all along), while the test reads the emulator's
request log (a ring of the last 500) at every poll and keeps the union. Then, for
deploy/rbac.yaml's ClusterRole:

- every request the daemon made is allowed by it (tests/support/rbac.py decides as
  Kubernetes RBAC does);
- every (group, resource, verb) it grants was used by at least one request, except `bind`,
  which the API server checks when a RoleBinding is written rather than as a request of
  its own: the ClusterRole named by every RoleBinding the daemon wrote is exactly the
  bind rule's resourceNames.

The daemon's requests are told apart by their User-Agent (the daemon's kube client sets
its own); every other request in the log is from an aiohttp client (this test's, and
`fabric up`'s readiness probe).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from actors.daemon.kube import USER_AGENT
from tests.support.processes import ROOT
from tests.support.rbac import (
    Attributes,
    Rule,
    allowed,
    allows,
    cluster_role_rules,
    load_manifests,
    may_bind,
    request_attributes,
)
from tests.system.harness import FabricUp, call_ok, eventually, kube_request, list_accounts

pytestmark = pytest.mark.processes
# Their subject is not the bus: the zmq bus is enough (tests/system/conftest.py).
BUSES = ["zmq"]

CLUSTER = "a"
MANIFEST = ROOT / "deploy" / "rbac.yaml"
RBAC_GROUP = "/apis/rbac.authorization.k8s.io/v1"
LOG_SIZE = 500  # the emulator keeps this many recent requests
ENFORCE = "pod-security.kubernetes.io/enforce"
CLUSTERS = [CLUSTER]  # what the `up` fixture starts by default


class RequestLog:
    """The union of every read of the emulator's request ring: (method, path, query, agent)."""

    def __init__(self, up: FabricUp) -> None:
        self._up = up
        self.seen: set[tuple[str, str, str, str]] = set()
        self.reads = 0

    async def read(self) -> None:
        api = self._up.endpoints["clusters"][CLUSTER]["api"]
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.get(
                f"{api}/_emulator/requests",
                headers={"Authorization": f"Bearer {self._up.kube_token(CLUSTER)}"},
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
            entries: list[dict[str, Any]] = await resp.json()
        assert len(entries) <= LOG_SIZE
        self.reads += 1
        self.seen.update(
            (e["method"], e["path"], e.get("query") or "", e.get("user_agent") or "")
            for e in entries
        )

    def daemon(self) -> set[tuple[str, str, str]]:
        return {(m, p, q) for m, p, q, agent in self.seen if agent == USER_AGENT}

    def others(self) -> set[str]:
        return {agent for _, _, _, agent in self.seen if agent != USER_AGENT}


async def accounts_by_slug(up: FabricUp) -> dict[str, dict[str, Any]]:
    return {a["slug"]: a for a in await list_accounts(up)}


async def namespace(up: FabricUp, name: str) -> dict[str, Any] | None:
    status, body = await kube_request(up, CLUSTER, "GET", f"/api/v1/namespaces/{name}")
    assert status in (200, 404), body
    return body if status == 200 else None


async def patch_namespace(up: FabricUp, name: str, patch: dict[str, Any]) -> None:
    api = up.endpoints["clusters"][CLUSTER]["api"]
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.patch(
            f"{api}/api/v1/namespaces/{name}",
            json=patch,
            headers={
                "Authorization": f"Bearer {up.kube_token(CLUSTER)}",
                "Content-Type": "application/merge-patch+json",
            },
            timeout=aiohttp.ClientTimeout(total=5),
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def drive_the_daemon_through_its_life_cycle(up: FabricUp, log: RequestLog) -> None:
    slugs = ("rbac-keep", "rbac-redo", "rbac-gone")
    created = {
        slug: await call_ok(
            up, "account.create", {"name": slug, "owner_email": f"{slug}@example.com", "slug": slug}
        )
        for slug in slugs
    }

    async def ready(slug: str, generation: int) -> bool:
        await log.read()
        account = (await accounts_by_slug(up))[slug]
        assert account["status"] == "ready", account
        assert account["clusters"][CLUSTER]["observed_generation"] == generation, account
        return True

    async def all_ready() -> bool:
        return all([await ready(slug, created[slug]["generation"]) for slug in slugs])

    await eventually(all_ready, timeout=40, interval=0.2, message="every account ready")

    # Drift by hand: the resync sees our namespace's Pod Security label changed; the repair's
    # create answers AlreadyExists, so the namespace is read, checked and patched, and so is
    # every policy object in it.
    await patch_namespace(up, "acc-rbac-keep", {"metadata": {"labels": {ENFORCE: "privileged"}}})

    async def repaired() -> bool:
        await log.read()
        now = await namespace(up, "acc-rbac-keep")
        assert now is not None
        assert now["metadata"]["labels"][ENFORCE] == "restricted", now["metadata"]
        return True

    await eventually(repaired, timeout=30, interval=0.2, message="drift repaired")

    # A namespace deleted by hand comes back with the next resync.
    before = await namespace(up, "acc-rbac-redo")
    assert before is not None
    status, body = await kube_request(up, CLUSTER, "DELETE", "/api/v1/namespaces/acc-rbac-redo")
    assert status == 200, body

    async def recreated() -> bool:
        await log.read()
        now = await namespace(up, "acc-rbac-redo")
        assert now is not None, "not re-created yet"
        assert now["metadata"]["uid"] != before["metadata"]["uid"], "still the old namespace"
        assert not now["metadata"].get("deletionTimestamp"), "old one still terminating"
        return True

    await eventually(recreated, timeout=30, interval=0.2, message="namespace re-created")

    # An account deleted: its namespace is found by label and deleted.
    await call_ok(up, "account.delete", {"id": created["rbac-gone"]["id"]})

    async def deleted() -> bool:
        await log.read()
        account = (await accounts_by_slug(up))["rbac-gone"]
        assert account["status"] == "deleted", account
        assert await namespace(up, "acc-rbac-gone") is None
        return True

    await eventually(deleted, timeout=30, interval=0.2, message="account deleted")

    async def converged() -> bool:
        await log.read()
        assert await ready("rbac-redo", created["rbac-redo"]["generation"])
        assert await ready("rbac-keep", created["rbac-keep"]["generation"])
        clusters = {c["name"]: c for c in await call_ok(up, "cluster.list", {})}
        assert clusters[CLUSTER]["lag"] == 0, clusters
        return True

    await eventually(converged, timeout=30, interval=0.2, message="converged")


async def bound_cluster_roles(up: FabricUp) -> set[tuple[str, str, str]]:
    """(namespace, roleRef kind, roleRef name) of every RoleBinding in the daemon's namespaces."""
    found: set[tuple[str, str, str]] = set()
    for ns in ("acc-rbac-keep", "acc-rbac-redo"):
        status, body = await kube_request(up, CLUSTER, "GET", f"{RBAC_GROUP}/namespaces/{ns}/rolebindings")
        assert status == 200, body
        assert body["items"], f"no RoleBinding in {ns}"
        found |= {(ns, rb["roleRef"]["kind"], rb["roleRef"]["name"]) for rb in body["items"]}
    return found


def unused_grants(rules: list[Rule], requests: set[Attributes]) -> list[Rule]:
    return [
        cell
        for rule in rules
        if "bind" not in rule.verbs
        for cell in rule.cells()
        if not any(allows(cell, attrs) for attrs in requests)
    ]


@pytest.mark.timeout(240)
async def test_the_cluster_role_allows_every_daemon_request_and_grants_nothing_unused(
    up: FabricUp,
) -> None:
    rules = cluster_role_rules(load_manifests(MANIFEST))
    up.start([CLUSTER])
    await up.wait_ready()
    log = RequestLog(up)
    await log.read()
    await drive_the_daemon_through_its_life_cycle(up, log)

    assert log.daemon(), f"no request from {USER_AGENT!r}; agents seen: {log.others()}"
    assert all("aiohttp" in agent for agent in log.others()), log.others()
    requests = {request_attributes(method, path, query) for method, path, query in log.daemon()}

    denied = sorted(attrs.describe() for attrs in requests if not allowed(rules, attrs))
    assert denied == [], f"deploy/rbac.yaml does not allow: {denied}"

    unused = [
        f"{cell.verbs[0]} {cell.api_groups[0] or 'core'} {cell.resources[0]}"
        for cell in unused_grants(rules, requests)
    ]
    assert unused == [], f"deploy/rbac.yaml grants what the daemon never used: {unused}"

    # `bind`: the daemon did write RoleBindings, and each names the one role it may bind.
    binds = [rule for rule in rules if "bind" in rule.verbs]
    assert [(b.verbs, b.resources) for b in binds] == [(("bind",), ("clusterroles",))]
    assert any(
        a.resource == "rolebindings" and a.verb in ("create", "patch") for a in requests
    ), sorted(a.describe() for a in requests)
    bound = await bound_cluster_roles(up)
    assert {(kind, name) for _, kind, name in bound} == {
        ("ClusterRole", name) for name in binds[0].resource_names
    }, bound
    assert all(may_bind(rules, name, ns) for ns, _, name in bound)
    assert up.stop() == 0
