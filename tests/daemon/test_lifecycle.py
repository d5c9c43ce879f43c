"""An account's life after its create, in one process (in-memory bus and cluster, the real actor):
plan changes and suspensions applied in place and reported at their generation, racing
generations, and a refused or failing account tried afresh on a new generation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.events import NamespaceProvisioned, NamespaceProvisionFailed
from core.tenancy import PLANS, TemporaryKubeError
from tests.daemon.fake_cluster import FakeCluster
from tests.daemon.inproc import (
    created,
    latest,
    namespace,
    outcomes,
    reported,
    running,
    settings,
    updated,
)
from tests.support.fake_bus import FakeBus
from tests.support.wait import wait_until

STANDARD = dict(PLANS["standard"].quota)
SUSPENDED = {**STANDARD, "pods": "0", "services": "0"}
ALLOW = {"allow-same-namespace", "allow-dns"}


def objects(cluster: FakeCluster, n: int = 1) -> dict[tuple[str, str], Any]:
    return {(o["kind"], o["metadata"]["name"]): o for o in cluster.children(namespace(n))}


def hard(cluster: FakeCluster, n: int = 1) -> dict[str, str] | None:
    quota = objects(cluster, n).get(("ResourceQuota", "tenant-quota"))
    return None if quota is None else dict(quota["spec"]["hard"])


def network_policies(cluster: FakeCluster, n: int = 1) -> set[str]:
    return {name for kind, name in objects(cluster, n) if kind == "NetworkPolicy"}


async def test_a_plan_change_patches_quota_and_limit_range_in_place_and_reports_it(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="generation 1")
        uids = {k: o["metadata"]["uid"] for k, o in objects(cluster).items()}
        await bus.publish([updated(1, 2, plan="large")])
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned, 2), message="generation 2")
    assert hard(cluster) == dict(PLANS["large"].quota)
    [limits] = objects(cluster)[("LimitRange", "tenant-defaults")]["spec"]["limits"]
    assert limits["default"] == dict(PLANS["large"].limits["default"])
    assert limits["defaultRequest"] == dict(PLANS["large"].limits["defaultRequest"])
    assert {k: o["metadata"]["uid"] for k, o in objects(cluster).items()} == uids
    ns = cluster.namespace(namespace(1))
    assert ns is not None
    assert ns["metadata"]["labels"]["fabric.dev/plan"] == "large"


async def test_suspend_replaces_the_allow_policies_and_resume_restores_them(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="created")
        tenant_data = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "tenant-data", "namespace": namespace(1)}, "data": {"k": "v"},
        }
        await cluster.create(tenant_data)
        before = set(objects(cluster))

        await bus.publish([updated(1, 2, suspended=True)])
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned, 2), message="suspended")
        assert hard(cluster) == SUSPENDED
        assert network_policies(cluster) == {"default-deny", "suspended-deny-all"}
        assert set(objects(cluster)) == before - {("NetworkPolicy", n) for n in ALLOW} | {
            ("NetworkPolicy", "suspended-deny-all")
        }

        await bus.publish([updated(1, 3)])
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned, 3), message="resumed")
    assert hard(cluster) == STANDARD
    assert network_policies(cluster) == {"default-deny", *ALLOW}
    assert set(objects(cluster)) == before
    assert objects(cluster)[("ConfigMap", "tenant-data")]["data"] == {"k": "v"}


async def test_two_generations_in_quick_succession_converge_to_the_later(tmp_path: Path) -> None:
    bus, cluster = FakeBus(batch_size=1), FakeCluster()
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="created")
        await bus.publish([updated(1, 2, plan="large", suspended=True)])
        await bus.publish([updated(1, 3, plan="small")])
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned, 3), message="generation 3")
    assert hard(cluster) == dict(PLANS["small"].quota)
    assert network_policies(cluster) == {"default-deny", *ALLOW}
    report = latest(bus, 1)
    assert isinstance(report, NamespaceProvisioned)
    assert report.observed_generation == 3


async def test_a_refused_account_is_tried_again_on_a_new_generation_and_succeeds_once_fixed(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    cluster.put_namespace(namespace(1), {"team": "someone-else"})
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisionFailed), message="refused")
        refused = latest(bus, 1)
        assert isinstance(refused, NamespaceProvisionFailed)
        assert "refusing to adopt" in refused.reason
        assert refused.attempts == 1
        cluster.remove_by_hand(namespace(1))  # the operator fixes it...
        await bus.publish([updated(1, 2)])  # ...and retries: the same state, a new generation
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned, 2), message="provisioned")
    ns = cluster.namespace(namespace(1))
    assert ns is not None
    assert ns["metadata"]["annotations"]["fabric.dev/generation"] == "2"


async def test_a_new_generation_counts_the_attempts_of_a_failing_account_afresh(
    tmp_path: Path,
) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    cluster.break_namespace(namespace(1), TemporaryKubeError("500 InternalError: etcd is sad"))
    await bus.publish([created(1)])
    async with running(bus, cluster, settings(tmp_path, failed_after=2)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisionFailed), message="failed")
        # Retries go on: let the count run past the threshold before the new generation.
        await wait_until(lambda: cluster.calls["create"] >= 6, message="more retries")
        await bus.publish([updated(1, 2)])
        await wait_until(lambda: reported(bus, 1, NamespaceProvisionFailed, 2), message="failed 2")
        cluster.heal_namespace(namespace(1))
        await bus.publish([updated(1, 3)])
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned, 3), message="healed")
    failures = [
        (f.observed_generation, f.attempts)
        for f in outcomes(bus, NamespaceProvisionFailed, 1)
        if isinstance(f, NamespaceProvisionFailed)
    ]
    assert failures == [(1, 2), (2, 2)]


async def test_a_hand_edit_of_the_quota_is_repaired_at_resync(tmp_path: Path) -> None:
    bus, cluster = FakeBus(), FakeCluster()
    await bus.publish([created(1, plan="small")])
    async with running(bus, cluster, settings(tmp_path, resync=0.05)):
        await wait_until(lambda: reported(bus, 1, NamespaceProvisioned), message="created")
        quota = objects(cluster)[("ResourceQuota", "tenant-quota")]
        quota["spec"]["hard"]["pods"] = "9999"
        await wait_until(lambda: hard(cluster) == dict(PLANS["small"].quota), message="repaired")
