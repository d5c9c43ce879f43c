"""The daemon's client-side timeout (`kube.Deadlines`): a hung API server's request ends as a
temporary error within the timeout and one sweep; the caller's own cancellation stays a
cancellation; requests that answer are never cut short, however many run at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from actors.daemon import metrics
from actors.daemon.kube import Deadlines, KubeCluster, load_configuration
from core.tenancy import ObjectRef, TemporaryKubeError
from tests.support.kube import KubeEndpoint, start_kube_emulator
from tests.support.processes import ProcessGroup

TIMEOUT = 0.4


def namespace(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


@pytest.fixture
async def kube(procs: ProcessGroup, tmp_path: Path) -> KubeEndpoint:
    return await start_kube_emulator(procs, tmp_path / "kube")


async def test_a_request_the_server_holds_ends_as_a_temporary_error_within_the_timeout(
    kube: KubeEndpoint,
) -> None:
    cluster = "deadline-hung"
    await kube.inject_fault("timeout", count=1, method="POST", seconds=30)
    cfg = await load_configuration(kube.kubeconfig)
    async with KubeCluster(cfg, timeout=TIMEOUT, metrics=metrics.for_cluster(cluster)) as api:
        started = time.monotonic()
        with pytest.raises(TemporaryKubeError, match="timed out after"):
            await api.create(namespace("acc-hung"))
        took = time.monotonic() - started
        # The next request on the same client is not touched by the first one's deadline.
        created = await api.create(namespace("acc-after"))
    assert TIMEOUT <= took < TIMEOUT * (1 + 1 / Deadlines.SWEEPS) + 2.0
    assert created["metadata"]["name"] == "acc-after"
    errors = metrics.REGISTRY.get_sample_value(
        "fabric_daemon_kube_errors_total",
        {"cluster": cluster, "verb": "POST", "resource": "namespaces", "code": "timeout"},
    )
    assert errors == 1


async def test_the_callers_cancellation_is_not_taken_for_a_timeout(kube: KubeEndpoint) -> None:
    await kube.inject_fault("timeout", count=1, method="POST", seconds=30)
    cfg = await load_configuration(kube.kubeconfig)
    async with KubeCluster(cfg, timeout=30.0) as api:
        call = asyncio.create_task(api.create(namespace("acc-cancelled")))
        done, _ = await asyncio.wait({call}, timeout=0.3)
        assert not done  # the server holds it
        _ = call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call


async def test_requests_that_answer_are_never_cut_short(kube: KubeEndpoint) -> None:
    # Many requests, each well within the timeout, over several sweeps: none may be cancelled
    # (a sweep that measured from the client's first request, not each request's own start,
    # would cut them).
    cfg = await load_configuration(kube.kubeconfig)
    async with KubeCluster(cfg, timeout=TIMEOUT) as api:
        deadline = time.monotonic() + TIMEOUT * 3

        async def reader(n: int) -> int:
            reads = 0
            while time.monotonic() < deadline:
                assert await api.read(ObjectRef("Namespace", f"acc-none-{n}")) is None
                reads += 1
            return reads

        counts = await asyncio.gather(*(reader(n) for n in range(4)))
    assert all(count > 0 for count in counts)
