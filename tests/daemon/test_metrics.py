"""The daemon's metrics move when the thing they count happens.

Each test uses a cluster name of its own: the daemon's registry is per process
and every series carries the `cluster` label, so tests never see each other's counts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from actors.daemon import metrics
from actors.daemon.kube import KubeCluster, load_configuration
from core.events import (
    NamespaceProvisioned,
    NamespaceProvisionFailed,
    OutcomeEvent,
    from_envelope,
    outcome_key,
)
from core.tenancy import ObjectRef, PermanentKubeError, TemporaryKubeError
from tests.daemon.fake_cluster import FakeCluster
from tests.daemon.inproc import account, created, namespace, running, settings
from tests.support.fake_bus import FakeBus
from tests.support.kube import start_kube_emulator
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def reported(bus: FakeBus, cluster: str, n: int, kind: type[OutcomeEvent]) -> bool:
    env = bus.newest(outcome_key(cluster, account(n)))
    return env is not None and isinstance(from_envelope(env), kind)


async def test_a_provisioned_account_counts_a_created_reconcile_and_the_daemon_is_caught_up(
    tmp_path: Path,
) -> None:
    cluster = "metrics-created"
    bus, fake = FakeBus(), FakeCluster()
    await bus.publish([created(1)])
    cfg = dataclasses.replace(settings(tmp_path), cluster=cluster)
    async with running(bus, fake, cfg):
        await wait_until(lambda: reported(bus, cluster, 1, NamespaceProvisioned), message="provisioned")
        await wait_until(
            lambda: value("fabric_daemon_reconciles_total", cluster=cluster, outcome="created") == 1,
            message="created counted",
        )
        assert value("fabric_daemon_caught_up", cluster=cluster) == 1
        assert value("fabric_daemon_reconcile_seconds_count", cluster=cluster) >= 1
        assert value("fabric_daemon_queue_depth", cluster=cluster) == 0
        assert value("fabric_daemon_failed_accounts", cluster=cluster) == 0


async def test_temporary_failures_count_retries_and_a_refusal_shows_as_a_failed_account(
    tmp_path: Path,
) -> None:
    cluster = "metrics-failed"
    bus, fake = FakeBus(), FakeCluster()
    fake.fail("create", TemporaryKubeError("500 InternalError"), times=2)
    await bus.publish([created(1)])
    cfg = dataclasses.replace(settings(tmp_path), cluster=cluster)
    async with running(bus, fake, cfg):
        await wait_until(lambda: reported(bus, cluster, 1, NamespaceProvisioned), message="provisioned")
        assert value("fabric_daemon_reconciles_total", cluster=cluster, outcome="retry") == 2
        assert value("fabric_daemon_retries_total", cluster=cluster) == 2  # passes 2 and 3
        fake.break_namespace(namespace(2), PermanentKubeError("403 Forbidden: no"))
        await bus.publish([created(2)])
        await wait_until(lambda: reported(bus, cluster, 2, NamespaceProvisionFailed), message="refused")
        await wait_until(
            lambda: value("fabric_daemon_failed_accounts", cluster=cluster) == 1,
            message="one failed account",
        )
        assert value("fabric_daemon_reconciles_total", cluster=cluster, outcome="failed") == 1


async def test_kube_requests_are_timed_and_an_emulator_500_is_counted_by_code(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    cluster = "metrics-kube"
    kube = await start_kube_emulator(procs, tmp_path / "kube")
    cfg = await load_configuration(kube.kubeconfig)
    labels = {"cluster": cluster, "verb": "POST", "resource": "namespaces"}
    await kube.inject_fault("error500", count=1, method="POST", path_prefix="/api/v1/namespaces")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "acc-metrics"}}
    async with KubeCluster(cfg, timeout=5.0, metrics=metrics.for_cluster(cluster)) as api:
        try:
            await api.create(ns)
        except TemporaryKubeError:
            pass
        else:
            raise AssertionError("the injected 500 did not fail the create")
        assert value("fabric_daemon_kube_errors_total", **labels, code="500") == 1
        await api.create(ns)
        assert await api.read(ObjectRef("Namespace", "missing")) is None
    assert value("fabric_daemon_kube_request_seconds_count", **labels) == 2
    assert value("fabric_daemon_kube_errors_total", **labels, code="500") == 1
    get = {"cluster": cluster, "verb": "GET", "resource": "namespaces"}
    assert value("fabric_daemon_kube_errors_total", **get, code="404") == 1
