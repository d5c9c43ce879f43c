"""bin/daemon as a real process against bin/broker and bin/kube-emulator, with injected faults."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from core.envelope import Envelope
from core.events import AccountCreated, AccountDeleted, outcome_key, to_envelope
from core.tenancy import TenancyPolicy
from tests.daemon.rig import (
    Emulator,
    EventReader,
    consumer_info,
    publish,
    start_daemon,
    start_emulator,
    write_kubeconfig,
)
from tests.support.broker import new_endpoints, start_broker, start_broker_process
from tests.support.ports import free_port
from tests.support.processes import ProcessGroup
from tests.support.wait import wait_until
from transport.endpoints import BrokerEndpoints

pytestmark = pytest.mark.processes

POLICY = TenancyPolicy()
NS_PATH = "/api/v1/namespaces"
CONSUMER = "cluster:east"


def account(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def created(n: int, generation: int = 1) -> Envelope:
    event = AccountCreated(
        account(n), f"t{n}", f"T {n}", "o@example.com", f"acc-t{n}", "now", generation
    )
    return to_envelope(event, correlation_id=f"req-{n}")


def deleted(n: int, generation: int = 2) -> Envelope:
    event = AccountDeleted(
        account(n), f"t{n}", f"acc-t{n}", "now", generation, f"T{n}", "o@example.com", "t0"
    )
    return to_envelope(event, correlation_id="d")


def payload(env: Envelope) -> dict[str, Any]:
    return dict(env.payload)


def report(reader: EventReader, n: int, wire_name: str, generation: int = 1) -> dict[str, Any]:
    """This cluster's newest report on account n, if it is `wire_name` at `generation`."""
    env = reader.latest(outcome_key("east", account(n)))
    if env is None or env.type != wire_name or env.payload["observed_generation"] != generation:
        return {}
    return payload(env)


async def setup(procs: ProcessGroup, tmp_path: Path) -> tuple[BrokerEndpoints, Emulator]:
    endpoints = await start_broker(procs, tmp_path / "broker")
    kube = await start_emulator(procs, tmp_path / "kube")
    return endpoints, kube


async def lag_is_zero(endpoints: BrokerEndpoints) -> bool:
    info = await consumer_info(endpoints, CONSUMER)
    return info is not None and info.lag == 0


async def test_500s_and_timeouts_are_retried_until_the_namespace_exists(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    await kube.fault("error500", count=2, method="POST", path_prefix=NS_PATH)
    await kube.fault("timeout", count=1, method="POST", path_prefix=NS_PATH, seconds=5)
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints,
                       "--request-timeout", "0.5")
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1))
        provisioned = await wait_until(
            lambda: report(reader, 1, "namespace.provisioned"), timeout=30, message="provisioned"
        )
    ns = await kube.namespace("acc-t1")
    assert ns is not None
    assert provisioned["uid"] == ns["metadata"]["uid"]
    assert provisioned["cluster"] == "east"
    assert await kube.pending_faults() == []
    assert len(await kube.children("acc-t1")) == 6


async def test_a_response_lost_after_the_write_applied_gives_one_namespace_and_success(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    await kube.fault("drop_after_apply", count=1, method="POST", path_prefix=NS_PATH)
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1))
        provisioned = await wait_until(
            lambda: report(reader, 1, "namespace.provisioned"), timeout=30, message="provisioned"
        )
        assert reader.of_type("namespace.provision_failed") == []
    ns = await kube.namespace("acc-t1")
    assert ns is not None
    assert provisioned["uid"] == ns["metadata"]["uid"]


async def test_a_permanent_403_reports_failed_at_once_with_the_kubernetes_reason(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    await kube.fault("status", status=403, count=1, method="POST", path_prefix=NS_PATH)
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1), created(2))
        [failed] = await wait_until(
            lambda: reader.of_type("namespace.provision_failed"), timeout=30, message="failed"
        )
        await wait_until(lambda: reader.of_type("namespace.provisioned"), timeout=30,
                         message="the other account provisioned")
    assert payload(failed)["reason"].startswith("403 Forbidden")
    assert payload(failed)["attempts"] == 1
    assert await kube.namespace(payload(failed)["namespace"]) is None


async def test_a_stuck_account_is_reported_failed_delays_no_other_and_heals(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    # Account 1's namespace is created, but every object in it fails with 500.
    await kube.fault("error500", count=100_000, method="POST", path_prefix=f"{NS_PATH}/acc-t1/")
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1), created(2), created(3))
        await wait_until(
            lambda: report(reader, 2, "namespace.provisioned")
            and report(reader, 3, "namespace.provisioned"),
            timeout=30, message="the others provisioned",
        )
        failed = await wait_until(
            lambda: report(reader, 1, "namespace.provision_failed"), timeout=30,
            message="the stuck account reported failed",
        )
        assert failed["attempts"] == 3  # --failed-after 3 in the rig
        assert failed["reason"].startswith("500")
        _ = await wait_until(lambda: lag_is_zero(endpoints), timeout=30, message="lag back to 0")
        await kube.clear_faults()
        await wait_until(lambda: report(reader, 1, "namespace.provisioned"), timeout=30,
                         message="healed")
    assert len(await kube.children("acc-t1")) == 6


async def test_a_foreign_namespace_is_not_adopted(procs: ProcessGroup, tmp_path: Path) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    before = await kube.create_namespace("acc-t1", {"team": "someone-else"})
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1))
        failed = await wait_until(
            lambda: report(reader, 1, "namespace.provision_failed"), timeout=30, message="failed"
        )
    assert "refusing to adopt" in failed["reason"]
    after = await kube.namespace("acc-t1")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert POLICY.account_label not in after["metadata"]["labels"]
    assert await kube.children("acc-t1") == []


async def test_a_daemon_killed_while_a_request_hangs_redoes_it_without_a_duplicate(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    # The namespace is created, then the daemon hangs on its first child object: kill it there.
    await kube.fault("timeout", count=1, method="POST", path_prefix=f"{NS_PATH}/acc-t1/",
                     seconds=60)
    daemon = await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints,
                                "--request-timeout", "60")
    await publish(endpoints, created(1))
    first: dict[str, Any] | None = await wait_until(
        lambda: kube.namespace("acc-t1"), timeout=30, message="created"
    )
    assert first is not None
    _ = await wait_until(lambda: _no_faults(kube), timeout=10, message="daemon hung on a child")
    await procs.kill(daemon)
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    async with EventReader(endpoints) as reader:
        provisioned = await wait_until(
            lambda: report(reader, 1, "namespace.provisioned"), timeout=30,
            message="provisioned after restart",
        )
        assert len(reader.of_type("namespace.provisioned")) == 1
    again = await kube.namespace("acc-t1")
    assert again is not None
    assert again["metadata"]["uid"] == first["metadata"]["uid"] == provisioned["uid"]
    assert len(await kube.children("acc-t1")) == 6


async def cluster_state(kube: Emulator, names: list[str]) -> dict[str, Any]:
    """What a run leaves in the cluster: per namespace, its owner label and its objects."""
    state: dict[str, Any] = {}
    for name in names:
        ns = await kube.namespace(name)
        if ns is not None and not ns["metadata"].get("deletionTimestamp"):
            state[name] = (ns["metadata"]["labels"][POLICY.account_label],
                           await kube.children(name))
    return state


@pytest.mark.parametrize("point", [None, "after_store", "after_create", "after_publish"])
async def test_a_daemon_killed_at_any_point_ends_in_the_state_of_an_uninterrupted_run(
    procs: ProcessGroup, tmp_path: Path, point: str | None
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    crash = ("--crash-at", point) if point else ()
    daemon = await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints, *crash)
    await publish(endpoints, created(1), created(2), created(3))
    if point is not None:
        assert await asyncio.wait_for(daemon.process.wait(), 60) == -9
        assert "crash_point_reached" in daemon.log_text()
        # Restarted as a supervisor would, same flags: the crash point fires once per state dir.
        await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints, *crash)
    async with EventReader(endpoints) as reader:
        _ = await wait_until(lambda: report(reader, 2, "namespace.provisioned"), timeout=30,
                             message="account 2 provisioned")
        await publish(endpoints, deleted(2))
        await wait_until(
            lambda: report(reader, 1, "namespace.provisioned")
            and report(reader, 3, "namespace.provisioned")
            and report(reader, 2, "namespace.deleted", 2),
            timeout=30, message="every account reported",
        )
        _ = await wait_until(lambda: lag_is_zero(endpoints), timeout=30, message="lag back to 0")
        for n in (1, 3):
            ns = await kube.namespace(f"acc-t{n}")
            assert ns is not None
            assert report(reader, n, "namespace.provisioned")["uid"] == ns["metadata"]["uid"]
    names = ["acc-t1", "acc-t2", "acc-t3"]
    policy_objects = ["limitranges/tenant-defaults", "networkpolicies/allow-dns",
                      "networkpolicies/allow-same-namespace", "networkpolicies/default-deny",
                      "resourcequotas/tenant-quota", "rolebindings/tenant-admin"]
    expected = {"acc-t1": (account(1), policy_objects), "acc-t3": (account(3), policy_objects)}

    async def settled() -> bool:
        state = await cluster_state(kube, names)
        assert state == expected
        return await kube.namespace("acc-t2") is None

    _ = await wait_until(settled, timeout=30, message="the cluster in the uninterrupted state")


async def test_resync_repairs_drift_and_collects_a_namespace_of_a_deleted_account(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints, "--resync", "1")
    async with EventReader(endpoints) as reader:
        await publish(endpoints, created(1), created(2), created(3))
        await wait_until(lambda: report(reader, 2, "namespace.provisioned"), timeout=30,
                         message="second provisioned")
        await publish(endpoints, deleted(2))
        await wait_until(lambda: report(reader, 2, "namespace.deleted", 2), timeout=30,
                         message="deleted")
        await wait_until(lambda: report(reader, 3, "namespace.provisioned"), timeout=30,
                         message="third provisioned")
        first = await kube.namespace("acc-t1")
        assert first is not None
        await kube.delete_namespace("acc-t1")
        await kube.delete("/apis/networking.k8s.io/v1/namespaces/acc-t3/networkpolicies/allow-dns")
        await kube.create_namespace(
            "acc-t2", {POLICY.managed_by_label: POLICY.managed_by_value,
                       POLICY.account_label: account(2)},
        )

        async def repaired() -> bool:
            ns1, ns2 = await kube.namespace("acc-t1"), await kube.namespace("acc-t2")
            return (ns1 is not None and ns1["metadata"]["uid"] != first["metadata"]["uid"]
                    and not ns1["metadata"].get("deletionTimestamp") and ns2 is None
                    and len(await kube.children("acc-t3")) == 6)

        _ = await wait_until(repaired, timeout=20, message="resync repaired both namespaces")
        renewed = await wait_until(
            lambda: report(reader, 1, "namespace.provisioned").get("uid") != first["metadata"]["uid"]
            and report(reader, 1, "namespace.provisioned"),
            timeout=10, message="re-creation reported",
        )
    assert len(await kube.children("acc-t1")) == 6
    assert renewed["uid"] == (await kube.namespace("acc-t1") or {})["metadata"]["uid"]


async def test_the_daemon_waits_for_a_broker_and_a_kube_api_that_start_later(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints = new_endpoints()
    kube_port = free_port()
    kubeconfig = write_kubeconfig(tmp_path / "late.kubeconfig", kube_port)
    daemon = await start_daemon(procs, tmp_path, "east", kubeconfig, endpoints)
    await start_broker_process(procs, tmp_path / "broker", endpoints=endpoints)
    await publish(endpoints, created(1))
    await wait_until(lambda: "kube_retry_scheduled" in daemon.log_text(), timeout=20,
                     message="daemon retrying against the absent kube API")
    assert daemon.running
    _ = await wait_until(lambda: lag_is_zero(endpoints), timeout=30,
                         message="recorded without the kube API")
    kube = await start_emulator(procs, tmp_path / "kube", port=kube_port)
    _ = await wait_until(
        lambda: kube.namespace("acc-t1"), timeout=30, message="namespace created"
    )
    info = await consumer_info(endpoints, CONSUMER)
    assert info is not None
    assert info.online


async def test_the_daemon_verifies_a_tls_api_server_with_the_ca_from_its_kubeconfig(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints = await start_broker(procs, tmp_path / "broker")
    kube = await start_emulator(procs, tmp_path / "kube", tls=True)
    assert "certificate-authority-data" in kube.kubeconfig.read_text()
    await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    await publish(endpoints, created(1))
    ns = await wait_until(lambda: kube.namespace("acc-t1"), timeout=30, message="created")
    assert ns is not None
    assert ns["metadata"]["labels"][POLICY.account_label] == account(1)


async def test_sigterm_stops_the_daemon_cleanly_and_it_shows_offline(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    daemon = await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    # Consuming, not just started: a fresh daemon first resets its consumer at the broker.
    _ = await wait_until(lambda: "consumer_subscribed" in daemon.log_text(), timeout=20,
                         message="daemon subscribed")
    _ = await wait_until(lambda: _online(endpoints, True), timeout=20, message="listed online")
    assert await procs.stop(daemon) == 0
    assert "process_stopped" in daemon.log_text()
    _ = await wait_until(lambda: _online(endpoints, False), timeout=20, message="listed offline")


async def test_a_second_daemon_on_the_same_state_dir_refuses_to_start(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    endpoints, kube = await setup(procs, tmp_path)
    first = await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    _ = await wait_until(lambda: "daemon_started" in first.log_text(), timeout=20,
                         message="first daemon started")
    second = await start_daemon(procs, tmp_path, "east", kube.kubeconfig, endpoints)
    assert await asyncio.wait_for(second.process.wait(), 30) == 2
    assert "another daemon is running" in second.log_text().strip().splitlines()[-1]
    assert first.running


async def _online(endpoints: BrokerEndpoints, online: bool) -> bool:
    info = await consumer_info(endpoints, CONSUMER)
    return info is not None and info.online == online


async def _no_faults(kube: Emulator) -> bool:
    return await kube.pending_faults() == []
