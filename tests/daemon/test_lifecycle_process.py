"""bin/daemon as a real process against bin/broker and bin/kube-emulator: a plan change, a
suspension and a resume reach the cluster in place through the real Kubernetes client, each
reported at its generation; the tenant's own objects stay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.envelope import Envelope
from core.events import AccountCreated, AccountUpdated, outcome_key, to_envelope
from core.tenancy import PLANS
from tests.daemon.rig import EventReader, publish, start_daemon, start_emulator
from tests.support.broker import start_broker
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until

pytestmark = pytest.mark.processes

ACCOUNT = "00000000-0000-4000-8000-000000000001"
NS = "acc-life"
QUOTA = f"/api/v1/namespaces/{NS}/resourcequotas/tenant-quota"
LIMITS = f"/api/v1/namespaces/{NS}/limitranges/tenant-defaults"
POLICIES = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"


def state(generation: int, plan: str = "standard", *, suspended: bool = False) -> Envelope:
    kind = AccountCreated if generation == 1 else AccountUpdated
    event = kind(ACCOUNT, "life", "Life", "o@example.com", NS, "now", generation, plan, suspended)
    return to_envelope(event, correlation_id=f"req-{generation}")


def provisioned_at(reader: EventReader, generation: int) -> bool:
    env = reader.latest(outcome_key("east", ACCOUNT))
    return (
        env is not None
        and env.type == "namespace.provisioned"
        and env.payload["observed_generation"] == generation
    )


async def test_plan_suspend_and_resume_reach_the_emulator_in_place(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints = await start_broker(procs, tmp_path / "broker")
    kube = await start_emulator(procs, tmp_path / "kube")
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)

    async def read(path: str) -> dict[str, Any]:
        found = await kube.read(path)
        assert found is not None, path
        return found

    async def policies() -> set[str]:
        return {p["metadata"]["name"] for p in (await read(POLICIES))["items"]}

    async with EventReader(endpoints) as reader:
        await publish(endpoints, state(1))
        await wait_until(lambda: provisioned_at(reader, 1), timeout=30, message="created")
        quota_uid = (await read(QUOTA))["metadata"]["uid"]
        # The tenant's own object: nothing but the allow policies is ever deleted.
        await kube.create(f"/api/v1/namespaces/{NS}/serviceaccounts", {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant-bot"},
        })

        await publish(endpoints, state(2, "large"))
        await wait_until(lambda: provisioned_at(reader, 2), timeout=30, message="large")
        quota = await read(QUOTA)
        assert quota["spec"]["hard"] == dict(PLANS["large"].quota)
        assert quota["metadata"]["uid"] == quota_uid
        limits = (await read(LIMITS))["spec"]["limits"][0]
        assert limits["default"] == dict(PLANS["large"].limits["default"])

        await publish(endpoints, state(3, "large", suspended=True))
        await wait_until(lambda: provisioned_at(reader, 3), timeout=30, message="suspended")
        assert (await read(QUOTA))["spec"]["hard"] == {
            **PLANS["large"].quota, "pods": "0", "services": "0",
        }
        assert await policies() == {"default-deny", "suspended-deny-all"}
        assert await kube.read(f"/api/v1/namespaces/{NS}/serviceaccounts/tenant-bot") is not None

        await publish(endpoints, state(4, "large"))
        await wait_until(lambda: provisioned_at(reader, 4), timeout=30, message="resumed")
        assert (await read(QUOTA))["spec"]["hard"] == dict(PLANS["large"].quota)
        assert await policies() == {"default-deny", "allow-same-namespace", "allow-dns"}
    ns = await read(f"/api/v1/namespaces/{NS}")
    assert ns["metadata"]["labels"]["fabric.dev/plan"] == "large"
    assert ns["metadata"]["labels"]["fabric.dev/suspended"] == "false"
    assert ns["metadata"]["annotations"]["fabric.dev/generation"] == "4"
